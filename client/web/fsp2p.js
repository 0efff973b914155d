// FlightSim P2P browser client.
//
// A dependency-free ES module: the wire codec for docs/PROTOCOL.md (postcard,
// hand-written, strict like the Rust side), control-stream framing, relay frame
// headers, the flight-data envelope (§5), WebSocket messages (§10), and
// `FlightSimP2P`, a client that signals over WebTransport (or, where that is
// missing, fails or is slow, over the server's WebSocket fallback), connects
// every pair of peers with a WebRTC DataChannel, and falls back per peer to the
// server relay when the direct path does not come up.
//
// Game code only needs:
//
//   import { FlightSimP2P } from './fsp2p.js';
//   const hash = await FlightSimP2P.fetchCertHash();          // dev hash, or null with a CA cert
//   const net = new FlightSimP2P({ host: 'sim.example.com', port: 4433, certHash: hash, name: 'Ann' });
//   net.onmessage = (from, bytes, path) => { ... };             // path: 'direct' | 'turn' | 'relay'
//   net.connect();                                             // opens WebTransport (or WebSocket) a microtask later
//   const session = await net.createSession();                 // or net.joinSession('7KQ-2MX'): in the same tick,
//                                                              // it rides in the URL with Hello (one round trip)
//   // or: await net.connect({ join: { code: '7KQ-2MX' } })  /  net.connect({ create: { maxPeers: 8 } })
//   net.send(0, bytes);                                        // 0 = every other peer; or a peer id
//
// Everything is plain JavaScript with JSDoc types; no build step.
//
// This file is the single import path: it re-exports the public API of the modules beside it,
// loaded by the browser as they are (README.md, "Modules"):
//
//   codec.js       postcard, messages, framing, WebSocket messages, the first request in the URL
//   flight.js      the flight-data envelope (sequence numbers, stale-message filter)
//   core.js        every decision, sans IO: reconnect/backoff, close codes, redirects and node
//                  rotation, liveness, deadlines, the QUIC/WebSocket race, path switching,
//                  per-peer link quality and the report schedule (PROTOCOL.md §14), following a
//                  session that moves to another node (rule 10)
//   transports.js  WebTransport and WebSocket (and the race between them)
//   mesh.js        RTCPeerConnection and DataChannels per peer
//   client.js      FlightSimP2P, the EventTarget shell that wires them

export {
  PROTOCOL_VERSION, DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_RELAY_PAYLOAD, ALL_PEERS,
  WEBTRANSPORT_PATH, MAX_NAME_BYTES, DATA_CHANNEL_LABEL, CLIENT_KINDS, RELAY_MODES, LEAVE_REASONS,
  REDIRECT_REASONS, ERROR_CODES, errorName, FspError, DecodeError, Writer, Reader, encodeClientMsg,
  decodeClientMsg, encodeServerMsg, decodeServerMsg, takeVarint, encodeFrame, FrameReader,
  encodeRelay, decodeRelay, WS_CONTROL, WS_RELAY, WEBSOCKET_PATH, encodeWsControl, encodeWsRelay,
  decodeWsMessage, wsCloseCode, fromWsCloseCode, FIRST_PARAM, MAX_FIRST_BYTES, base64url,
  fromBase64url, encodeFirst, urlWithFirst, ACCESS_TOKEN_PARAM, connectUrl, foldableRequest, toHex, fromHex,
  REPORT_MIN_VERSION, REGIONS_MIN_VERSION, REPORT_LIMITS, LINK_PATHS, GRADES, MILESTONE_KINDS, ICE_FAIL_REASONS, encodeReportV1, decodeReportV1,
  reportMsg,
} from './codec.js';

export {
  FLIGHT_HEADER_BYTES, wrapFlight, unwrapFlight, nextSeq, seqNewer, SeqFilter,
} from './flight.js';

export {
  WebTransportSignal, WebSocketSignal, AutoSignal,
} from './transports.js';

export {
  RECONNECT_BACKOFF_MS, ABANDON_CLOSE_CODE, closeDisposition, attemptTimeoutMs, serverSilent,
  PING_INTERVAL_MS, PROBE_INTERVAL_MS, PROBE_AFTER_MS, LIVE_TIMEOUT_MS, rttEstimate, liveTimeoutMs, probeAfterMs,
  MAX_REDIRECTS, wsUrlOfHttp, nodeServer, reachableWith, redirectStep, rotateServer, TRANSPORT_CHOICES,
  QUALITY, QualityTracker, rawGrade, gradeWithHysteresis, QUALITY_FRAME_BYTES, ECHO_REQUEST, ECHO_REPLY, isQualityFrame,
  encodeQualityFrame, parseQualityFrame, RTT_BUCKET_EDGES_MS, LOSS_BUCKET_EDGES_PCT, BUCKET_UNKNOWN, rttBucket, lossBucket,
  REPORT, CANDIDATE_BITS, reportStart, reportQueue, reportDue, reportNextAt, reportStep,
  REGIONS, httpOfWsUrl, regionTargets, regionProbeKind, webTransportTryMs, regionTargetsKey, bestRttMs, regionResult, regionsDue, regionsAfterList, regionRttsToSend,
  MOVE_OLD_CLOSE_AFTER_MS, MOVE_MIN_VERSION, moveStart, moveStep, moveRoutes, redirectIsMove,
} from './core.js';

export {
  FlightSimP2P, backoffDelayMs, reconnectStep,
} from './client.js';
