// FlightSim P2P browser client: `FlightSimP2P`, the shell. An EventTarget that wires the
// codec, the transports, the WebRTC mesh and the decisions of core.js together: it owns the
// timers, the clock and the connection objects, and asks core.js what each event means.

import {
  PROTOCOL_VERSION, DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_RELAY_PAYLOAD, ALL_PEERS,
  WEBTRANSPORT_PATH, MAX_NAME_BYTES, FspError, utf8Encoder, encodeClientMsg, decodeServerMsg,
  encodeRelay, decodeRelay, WEBSOCKET_PATH, foldableRequest, toHex, certHashBytes, errorName,
  REPORT_MIN_VERSION, REPORT_LIMITS, reportMsg,
} from './codec.js';
import { FLIGHT_HEADER_BYTES, wrapFlight, unwrapFlight, nextSeq, SeqFilter } from './flight.js';
import { describe, withTimeout, now, WebTransportSignal, WebSocketSignal, AutoSignal } from './transports.js';
import {
  ABANDON_CLOSE_CODE, closeDisposition, attemptTimeoutMs, MAX_REDIRECTS, nodeServer, rotation, TRANSPORT_CHOICES,
  afterReconnect, livenessStart, livenessHeard, livenessTick, livenessNextPingAt, PING_INTERVAL_MS, goingAwayLeftMs, answersSessionRequest, pumpStep, redirectPlan,
  redirectCount, errorGivesUp, attemptFailure, resumePlanStep, offersToken, RESUME_GRACE_DEFAULT_MS,
  backoffDelayMs as coreBackoffDelayMs, reconnectStep as coreReconnectStep,
  ECHO_REQUEST, ECHO_REPLY, isQualityFrame, parseQualityFrame, encodeQualityFrame,
  reportStart, reportQueue, reportNextAt, reportStep,
  REGIONS, httpOfWsUrl, regionTargets, regionTargetsKey, regionResult, regionsDue, regionsAfterList, regionRttsToSend,
  regionProbeKind, webTransportTryMs,
  moveStart, moveStep, moveRoutes,
} from './core.js';
import { PeerLink, installMesh } from './mesh.js';

/**
 * Delay before reconnect attempt `attempt` (core.js's backoffDelayMs; `random` defaults to Math.random).
 * @param {number} attempt @param {() => number} [random] in [0, 1)
 */
export function backoffDelayMs(attempt, random = Math.random) {
  return coreBackoffDelayMs(attempt, random);
}

/**
 * The next step of a reconnection (core.js's reconnectStep; `random` defaults to Math.random).
 * @param {{attempt: number, elapsedMs: number, giveUpMs: number, random?: () => number}} s
 */
export function reconnectStep(s) {
  return coreReconnectStep({ ...s, random: s.random || Math.random });
}

// ---------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------

/**
 * @typedef {Object} FlightSimP2POptions
 * @property {string} [url]             full WebTransport URL; default https://HOST:PORT/signal
 * @property {string} [host]            default location.hostname
 * @property {number} [port]            UDP port of QUIC/WebTransport, default 4433
 * @property {string} [wsUrl]           WebSocket fallback URL; default the page's origin + /ws (ws:// or wss://),
 *                                      outside a page ws://HOST:8080/ws
 * @property {'auto'|'webtransport'|'websocket'|((opts: TransportOptions) => SignalTransport)} [transport]
 *           'auto' (default): happy eyeballs, WebTransport first, WebSocket when it is missing, fails, or is
 *           not ready within fallbackDelayMs; 'webtransport' / 'websocket' force one; or a factory
 * @property {number} [fallbackDelayMs] 'auto': start the WebSocket attempt this long after WebTransport's if that is not ready yet (default 1000)
 * @property {number} [wsMaxBufferedBytes] on WebSocket, drop relay frames while more than this waits to be sent (default 32768)
 * @property {string|ArrayBuffer|ArrayBufferView|null} [certHash]  SHA-256 of a self-signed dev certificate (hex or base64, from /cert-hash); null with a CA certificate
 * @property {string} [name]            display name (≤ 64 UTF-8 bytes)
 * @property {boolean} [forceRelay]     never use WebRTC; all flight data through the server relay
 * @property {RTCIceTransportPolicy} [iceTransportPolicy]  'all' (default) or 'relay' (TURN only)
 * @property {RTCIceServer[]} [iceServers]  override the ICE servers from the Welcome
 * @property {number} [directTimeoutMs] fall back to the relay if a peer is not connected directly by then (default 5000)
 * @property {number} [directRetryMs]   try a direct connection again this long after it failed (default 20000; 0 = never)
 * @property {number} [pingIntervalMs]  Ping period, for liveness and the server RTT (default 500; 0 = off)
 * @property {number} [statsIntervalMs] getStats period for direct/turn and ICE RTT (default 1000)
 * @property {number} [connectTimeoutMs] handshake deadline per transport, and Welcome deadline (default 10000)
 * @property {number} [datagramMaxAgeMs] relay datagrams older than this are dropped, not sent or delivered late (default 100)
 * @property {number} [requestTimeoutMs] create/join/leave answer deadline (default 10000)
 * @property {Uint8Array|null} [resumeToken] from an earlier Welcome, to get the same peer id back
 * @property {boolean} [fastConnect]    send Hello (and a create/join called in the same tick as connect(), and the
 *           resume token) in the connection's URL, answered with the 200/101 (default true; false: the old
 *           sequence, Hello on the control stream, for servers older than PROTOCOL.md's `first` parameter)
 * @property {boolean} [reconnect]      when the connection is lost (not closed by the app or a fatal server error),
 *           reconnect by itself and resume with the same peer id (default true; false: close as before)
 * @property {number} [reconnectTimeoutMs] give up reconnecting after this long (default 60000; 0 = never)
 * @property {number|null} [liveTimeoutMs] take the connection for lost when a Ping got no answer, nor anything else
 *           from the server, for longer than this (default null: adaptive, clamp(3 × (srtt + 4·rttvar), 1500, 10000),
 *           3000 before the first RTT sample; a number fixes it; 0 = only when the transport says so)
 * @property {Array<{url?: string, host?: string, port?: number, wsUrl?: string, certHash?: any}>} [fallbacks]
 *           cluster mode: other nodes, described like the main server (url or host/port, wsUrl, certHash; a
 *           missing certHash is the main one's, null a CA certificate), tried in turn with the reconnect
 *           backoff when the current server cannot be reached; any node redirects to the session's node
 * @property {number} [maxRedirects]    cluster mode: redirects followed in a row before failing (default 5)
 * @property {string|null} [token]      access token (PROTOCOL.md §13) for a server started with --auth: a JWT from the
 *           game's backend, sent in the `access_token` query parameter of every connection's URL (never logged)
 * @property {(() => string|null|Promise<string|null>)|null} [getToken]  called for every connection: the first, each
 *           reconnect (resume) and each redirect, and when the server warns that the token expires soon; a string
 *           it returns wins over `token` (null/empty: `token` is used). If it throws, connect() fails; during a
 *           reconnection the attempt counts as failed and the next one asks again
 * @property {boolean} [telemetry]     send `Report`s (link paths, grades, RTT/loss buckets, setup times, ICE failure
 *           reasons, candidate types; never an address) to a server that takes them (Welcome.version ≥ 3);
 *           default true, false opts out. Per-peer quality (`getPeers()`, `quality`) works either way
 * @property {boolean} [qualityEchoes] send echo requests to measure each peer's link (default true; false: none are
 *           sent, the peers' grades stay `unknown`; this client still answers the peers' echoes)
 * @property {boolean} [measureRegions] after a Welcome of version ≥ 4, time one node per region of the cluster
 *           (`GET /nodes`, then `GET /healthz` on each, within 1 s, at most every 5 min) and send the result with
 *           the next CreateSession / JoinSession, so that a regional cluster can place the session (PROTOCOL.md
 *           §11 "Regions"). Default true; false: nothing is fetched and the lists are empty. See `regionRtts()`.
 * @property {Array<{region: string, rttMs: number}>|null} [injectRegionRtts] FOR TESTS: send these as
 *           `region_rtts` instead of measuring (nothing is fetched), so a test can make a regional cluster place or
 *           move a session on loopback. Default null: measure (as `measureRegions` says).
 */

/** Default WebSocket URL: the page's origin (its scheme mapped to ws/wss), else the usual HTTP port of `host`. */
function defaultWsUrl(hostPart) {
  if (typeof location !== 'undefined' && /^https?:$/.test(location.protocol)) {
    const u = new URL(WEBSOCKET_PATH, location.href);
    u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return u.toString();
  }
  return `ws://${hostPart}:8080${WEBSOCKET_PATH}`;
}

/**
 * FlightSim P2P client: signaling over WebTransport (or its WebSocket fallback), WebRTC
 * DataChannels, relay through the server where a peer has no direct path.
 *
 * Events (all `CustomEvent`s, data in `detail`):
 *   transport {kind, url, fallbackReason, connectMs}; welcome {peerId, resumed, iceServers, limits, transport};
 *   session {session, created}; sessionleft {reason};
 *   peerjoined {peer}; peerleft {peer, reason}; peerstatus {peer, online}; hostchanged {host};
 *   pathchange {peer, path, previous}; message {from, data, path}; rtt {rttMs};
 *   error {code, name, message, fatal, error}; goingaway {reconnectAfterMs, message};
 *   appsignal {from, data}; close {code, reason, error}.
 */
export class FlightSimP2P extends EventTarget {
  /** @param {FlightSimP2POptions} [options] */
  constructor(options = {}) {
    super();
    let host = options.host || (typeof location !== 'undefined' ? location.hostname : '127.0.0.1');
    // Chromium resolves "localhost" to ::1 first and its QUIC does not fall back to
    // 127.0.0.1, where the server listens by default.
    if (host === 'localhost') host = '127.0.0.1';
    const port = options.port || 4433;
    const hostPart = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
    const transport = options.transport ?? 'auto';
    if (typeof transport !== 'function' && !TRANSPORT_CHOICES.includes(transport)) {
      throw new RangeError(`transport must be one of ${TRANSPORT_CHOICES.join(', ')} or a factory, got ${String(transport)}`);
    }
    this.options = {
      url: options.url || `https://${hostPart}:${port}${WEBTRANSPORT_PATH}`,
      wsUrl: options.wsUrl || defaultWsUrl(hostPart),
      certHash: options.certHash ? certHashBytes(options.certHash) : null,
      name: options.name || '',
      forceRelay: !!options.forceRelay,
      iceTransportPolicy: options.iceTransportPolicy || 'all',
      iceServers: options.iceServers,
      directTimeoutMs: options.directTimeoutMs ?? 5000,
      directRetryMs: options.directRetryMs ?? 20000,
      pingIntervalMs: options.pingIntervalMs ?? PING_INTERVAL_MS,
      statsIntervalMs: options.statsIntervalMs ?? 1000,
      connectTimeoutMs: options.connectTimeoutMs ?? 10000,
      datagramMaxAgeMs: options.datagramMaxAgeMs ?? 100,
      requestTimeoutMs: options.requestTimeoutMs ?? 10000,
      resumeToken: options.resumeToken || null,
      transport,
      fallbackDelayMs: options.fallbackDelayMs ?? 1000,
      wsMaxBufferedBytes: options.wsMaxBufferedBytes ?? 32 * 1024,
      fastConnect: options.fastConnect ?? true,
      reconnect: options.reconnect ?? true,
      reconnectTimeoutMs: options.reconnectTimeoutMs ?? 60000,
      liveTimeoutMs: options.liveTimeoutMs ?? null,
      maxRedirects: options.maxRedirects ?? MAX_REDIRECTS,
      token: options.token || null,
      getToken: typeof options.getToken === 'function' ? options.getToken : null,
      telemetry: options.telemetry ?? true,
      qualityEchoes: options.qualityEchoes ?? true,
      measureRegions: options.measureRegions ?? true,
      injectRegionRtts: Array.isArray(options.injectRegionRtts)
        ? options.injectRegionRtts.map((e) => ({ region: String(e.region), rttMs: Math.max(0, Math.round(Number(e.rttMs) || 0)) }))
        : null,
      fallbacks: [],
    };
    const main = { url: this.options.url, wsUrl: this.options.wsUrl, certHash: this.options.certHash };
    this.options.fallbacks = (options.fallbacks || []).map((f) => {
      let h = f.host || host;
      if (h === 'localhost') h = '127.0.0.1';
      const hp = h.includes(':') && !h.startsWith('[') ? `[${h}]` : h;
      return {
        url: f.url || (f.host || f.port ? `https://${hp}:${f.port || 4433}${WEBTRANSPORT_PATH}` : ''),
        wsUrl: f.wsUrl || (f.host ? `ws://${hp}:8080${WEBSOCKET_PATH}` : ''),
        certHash: f.certHash === undefined ? main.certHash : f.certHash ? certHashBytes(f.certHash) : null,
      };
    });
    /** the configured servers: the main one, then the fallbacks */
    this._servers = [main, ...this.options.fallbacks];
    /** where the next connection goes: a redirect's node (`target`), else `_servers[index]` */
    this._at = /** @type {{index: number, target: null|{name: string, url: string, wsUrl: string, certHash: Uint8Array|null}}} */ ({ index: 0, target: null });
    /** redirects in a row since a request was last answered */
    /** redirects in a row, and whether a redirected create/join waits for its answer (core.js redirectCount) */
    this._redirects = { count: 0, pending: false };
    /** the CreateSession / JoinSession of the pending request, to send again where a redirect leads */
    this._pendingMsg = /** @type {ClientMsg|null} */ (null);
    /** the last finished region measurement (core.js RegionCache), and whether one runs */
    this._regionCache = /** @type {import('./core.js').RegionCache|null} */ (null);
    this._regionsRunning = false;
    /** aborts the measurement in progress (close()) */
    this._regionsAbort = /** @type {AbortController|null} */ (null);
    if (utf8Encoder.encode(this.options.name).length > MAX_NAME_BYTES) {
      throw new RangeError(`name must be at most ${MAX_NAME_BYTES} UTF-8 bytes`);
    }
    /** @type {'idle'|'connecting'|'connected'|'reconnecting'|'closed'} */
    this.state = 'idle';
    /** My peer id (0 until the Welcome). */
    this.peerId = 0;
    /** @type {WelcomeMsg|null} */
    this.welcome = null;
    /** @type {SessionInfo|null} current session (peers kept up to date) */
    this.session = null;
    /** Server round-trip time from Ping/Pong, ms: the last sample. */
    this.rttMs = /** @type {number|null} */ (null);
    /** Smoothed server round-trip time (RFC 6298 style, from every Ping/Pong sample), ms. */
    this.srttMs = /** @type {number|null} */ (null);
    /** server clock minus local clock, ms (from Pong) */
    this.serverClockOffsetMs = 0;
    /** @type {Map<number, PeerLink>} */
    this.links = new Map();
    /** Game callback, called for every flight-data message whatever its path. */
    this.onmessage = /** @type {((from: number, data: Uint8Array, path: PeerPath) => void)|null} */ (null);
    this.stats = {
      directSent: 0, directReceived: 0, relaySent: 0, relayFramesSent: 0, relayReceived: 0,
      relayDropped: 0, relayBadFrames: 0, controlSent: 0, controlReceived: 0,
      /** flight-data messages dropped as not newer than the last accepted from their sender (all peers) */
      staleDropped: 0,
      /** flight-data messages too short for the 4-byte envelope */
      flightBadFrames: 0,
      /** of staleDropped: those with the very sequence number last accepted (a move's overlap sends each frame twice) */
      duplicatesDropped: 0,
    };
    /** @type {TransportKind|null} the transport in use once connected: 'webtransport' or 'websocket' */
    this.transport = null;
    /** URL of the transport in use */
    this.transportUrl = '';
    /** with transport 'auto' on the WebSocket: why ('' on WebTransport, or with the WebSocket forced) */
    this.fallbackReason = '';
    /** @type {SignalTransport|null} the transport object (for debugging) */
    this.conn = null;
    /** sequence number of the last flight-data message sent (one counter for all peers and paths) */
    this._txSeq = 0;
    /** last sequence number accepted from each sender */
    this._rxSeq = new SeqFilter();
    /** control message bodies written before Hello (pipelined behind it) */
    this._queue = /** @type {Uint8Array[]} */ ([]);
    /** control message bodies waiting for the rate limit (after Hello) */
    this._outbox = /** @type {Uint8Array[]} */ ([]);
    this._tokens = 0;
    this._tokensAt = 0;
    this._pumpTimer = 0;
    this._helloSent = false;
    this._pending = /** @type {null|{kind: string, resolve: Function, reject: Function, timer: any}} */ (null);
    this._welcomeWaiter = /** @type {null|{resolve: Function, reject: Function}} */ (null);
    this._connectPromise = /** @type {Promise<WelcomeMsg>|null} */ (null);
    this._pings = new Map();
    this._timers = /** @type {any[]} */ ([]);
    /** the liveness timer (Ping, and the moment the server would count as lost) */
    this._liveTimer = /** @type {any} */ (0);
    this._closeEmitted = false;
    /** @type {FspError|null} last fatal server error: the reason for the close that follows */
    this._lastFatal = null;
    /** @type {{at: number, ms: number, timer: any}|null} the server's GoingAway: reconnect after `ms` from `at` */
    this._goingAway = null;
    /** liveness (core.js): the RTT estimate, the oldest unanswered Ping, the last Ping */
    this._live = livenessStart(0);
    /** code and password of the session we are in (to rejoin it if a resume comes too late) */
    this._sessionKey = /** @type {{code: string, password: string|null}|null} */ (null);
    /** password of the create/join request in flight */
    this._requestPassword = /** @type {string|null} */ (null);
    /**
     * An automatic reconnection in progress.
     * @type {null|{startedAt: number, attempt: number, timer: any, welcomeTimer: any, reason: string,
     *   previousPeerId: number, sessionKey: {code: string, password: string|null}|null, onOnline: any,
     *   resend: ClientMsg|null, plan: import('./core.js').ResumePlan, withToken: boolean, rejoinSent: boolean}}
     */
    this._rc = null;
    /** set after a Welcome with a new peer id during a reconnection: rejoin this session */
    this._rejoin = /** @type {null|{previousPeerId: number, code: string}} */ (null);
    /** the access token of the current connection (never logged, never in an event) */
    this._tokenInUse = /** @type {string|null} */ (null);
    /** a fresh token getToken() gave when the server warned of the expiry: the next attempt uses it */
    this._freshToken = /** @type {string|null} */ (null);
    /** a getToken() call for the expiry warning is under way */
    this._refreshing = false;
    /** the report schedule and its queues (core.js reportStart / reportQueue / reportStep) */
    this._report = reportStart();
    /** the one timer of per-peer quality (echo requests, loss and lost deadlines) and reports */
    this._qTimer = /** @type {any} */ (0);
    this._qWakeAt = Infinity;
    /** when the current connect attempt started (milestone welcome) */
    this._attemptAt = /** @type {number|null} */ (null);
    /** Reports sent on this client's connections */
    this.reportsSent = 0;
    /**
     * A session move in progress (PROTOCOL.md §12 rule 10, core.js moveStep), null when settled.
     * `old` carries relay frames only; `this.conn` is the new connection (control) once opened.
     * @type {null|{state: import('./core.js').MoveState, old: SignalTransport|null, neu: SignalTransport|null,
     *   node: any, startedAt: number, timer: any, welcomeTimer: any, previousPeerId: number, welcomed: boolean,
     *   error: FspError|null, reason: string, oldCloseCode: number|null}}
     */
    this._move = null;
    /** session moves followed to the end (settled on the new node), and the node of the last one */
    this.moves = 0;
    this.movedTo = /** @type {string|null} */ (null);
  }

  /**
   * Fetch the dev certificate hash from the server's HTTP port. With a
   * CA-signed certificate (`dev: false`) this resolves to `null`: the browser
   * verifies such a certificate itself and refuses a pinned hash for it.
   * @param {string} [base] URL of the HTTP port (default: this page's origin)
   * @returns {Promise<string|null>} lowercase hex, or null for a CA certificate
   */
  static async fetchCertHash(base) {
    const url = new URL('/cert-hash', base || (typeof location !== 'undefined' ? location.href : 'http://localhost:8080/'));
    let res;
    try {
      res = await fetch(url, { cache: 'no-store' });
    } catch (e) {
      throw new FspError(0, 'cert_hash_unavailable', `Cannot fetch ${url}: ${describe(e)}`, { cause: e });
    }
    if (!res.ok) throw new FspError(0, 'cert_hash_unavailable', `GET ${url} answered ${res.status} (no dev certificate? With a CA certificate pass certHash: null).`);
    const j = await res.json();
    if (j.algorithm && j.algorithm !== 'sha-256') throw new FspError(0, 'cert_hash_unavailable', `unsupported hash algorithm ${j.algorithm}`);
    if (j.dev === false) return null;
    if (typeof j.hex === 'string') return j.hex.toLowerCase();
    if (typeof j.base64 === 'string') return toHex(certHashBytes(j.base64));
    throw new FspError(0, 'cert_hash_unavailable', `${url} has no "hex" field`);
  }

  /** Remote peers with their path: for a peer list UI. */
  getPeers() {
    return [...this.links.values()].map((l) => ({
      id: l.id,
      name: l.name,
      client: l.client,
      online: l.online,
      path: l.path,
      host: !!this.session && this.session.host === l.id,
      iceRttMs: l.iceRttMs,
      candidatePair: l.candidatePair,
      connectionState: l.pc ? l.pc.connectionState : 'none',
      dataChannel: l.dc ? l.dc.readyState : 'none',
      rx: l.rx,
      tx: l.tx,
      ...this._qualityOf(l),
    }));
  }

  /**
   * One peer's link quality (PROTOCOL.md §14): `peer`, `path`, `pathMs` (time on that path),
   * `rttMs` (smoothed, from echoes on the path itself; null before the first), `lossPct` (over the
   * last 20 echoes), `jitterMs`, `fpsIn` / `fpsOut` (flight frames in the last full second),
   * `staleDropped`, `grade` (`unknown`, `excellent`, `good`, `poor`, `lost`). null: no such peer.
   * @param {number} peer
   * @returns {import('./core.js').QualitySnapshot|null}
   */
  qualityOf(peer) {
    const l = this.links.get(peer);
    return l ? l.quality.snapshot(now()) : null;
  }

  /** @param {PeerLink} l */
  _qualityOf(l) {
    const { peer, ...q } = l.quality.snapshot(now());
    return q;
  }

  /** @returns {PeerPath|null} */
  pathOf(peer) {
    const l = this.links.get(peer);
    return l ? l.path : null;
  }

  get maxRelayPayload() {
    return this.welcome ? this.welcome.limits.maxRelayPayload : DEFAULT_MAX_RELAY_PAYLOAD;
  }

  /** Largest payload `send()` can relay: the relay limit minus the 4-byte envelope. */
  get maxFlightPayload() {
    return this.maxRelayPayload - FLIGHT_HEADER_BYTES;
  }

  get forceRelay() {
    return this.options.forceRelay;
  }

  /**
   * Connect (WebTransport, or WebSocket as the `transport` option says) with Hello. Resolves with the Welcome.
   *
   * The transport opens a microtask later: a createSession()/joinSession() called in the same tick
   * rides in the connection's URL with Hello (PROTOCOL.md §1, §10; `fastConnect`), answered with the
   * 200/101. Requests made later are pipelined behind Hello on the control stream.
   *
   * With `{join: {code, password}}` or `{create: {maxPeers, password}}` (the first call on a client):
   * the same in one call; resolves with the SessionInfo, rejects as joinSession/createSession do.
   * @param {{join?: {code: string, password?: string|null}, create?: {maxPeers?: number, password?: string|null}}} [opts]
   * @returns {Promise<any>} WelcomeMsg, or SessionInfo with join/create
   */
  connect(opts = {}) {
    if (opts && (opts.join || opts.create)) {
      if (opts.join && opts.create) throw new TypeError('connect(): join or create, not both');
      if (this.state !== 'idle') {
        return Promise.reject(new FspError(0, 'busy', 'connect({join, create}) must be the first call on a client'));
      }
      // Queued before the transport opens (a microtask from now): folded into the URL.
      return opts.join
        ? this.joinSession(opts.join.code, { password: opts.join.password ?? null })
        : this.createSession(opts.create);
    }
    if (this._connectPromise) return this._connectPromise;
    this.state = 'connecting';
    const o = this.options;
    const welcome = new Promise((resolve, reject) => {
      this._welcomeWaiter = { resolve, reject };
    });
    welcome.catch(() => {});
    const startedAt = now();
    this._attemptAt = startedAt;
    this._connectPromise = (async () => {
      // Let a createSession()/joinSession() called in the same tick be queued first: it
      // then rides in the URL with Hello (PROTOCOL.md §1, §10), answered with the 200/101.
      await null;
      if (this.state === 'closed') throw new FspError(0, 'closed', 'closed while connecting');
      let token;
      try {
        token = await this._accessToken();
      } catch (e) {
        const err = new FspError(0, 'token_unavailable', `getToken() failed: ${describe(e)}`, { cause: e, fatal: true });
        this._fail(err);
        throw err;
      }
      if (this.state === 'closed') throw new FspError(0, 'closed', 'closed while connecting');
      const t = this._makeTransport(token);
      const up = this._attach(t);
      const first = this._firstBodies();
      try {
        await t.open(first);
      } catch (e) {
        const err = e instanceof FspError ? e : new FspError(0, 'connect_failed', `Cannot connect to ${o.url}: ${describe(e)}`, { cause: e });
        this._fail(err);
        throw err;
      }
      if (this.state === 'closed') throw new FspError(0, 'closed', 'closed while connecting');
      this._transportUp(t, startedAt);
      this._helloSent = true;
      const queued = this._queue;
      this._queue = [];
      if (first && t.firstSent) {
        // Hello (and the folded request) went in the URL: the rest follows on the control stream.
        if (first.length > 1) queued.splice(queued.indexOf(first[1]), 1);
        for (const body of queued) this._writeRaw(body);
      } else {
        this._writeMsg(this._hello());
        for (const body of queued) this._writeRaw(body);
      }
      up();
      return withTimeout(welcome, o.connectTimeoutMs, () => {
        const err = new FspError(0, 'timeout', `No Welcome from ${t.url} within ${o.connectTimeoutMs} ms.`);
        this._fail(err);
        return err;
      });
    })();
    this._connectPromise.catch(() => {});
    return this._connectPromise;
  }

  /**
   * Hello, with the resume token of the last Welcome (or of the options); none when a redirect
   * moves a client in no session (it arrives as a new peer, PROTOCOL.md §11). @returns {ClientMsg}
   */
  _hello() {
    // No token for a redirected create/join of a client in no session, nor once the grace is
    // over (the seat is surely gone: the attempt rejoins by code instead, _rejoinInFirst).
    const noToken = !!(this._rc && ((this._rc.resend && !this._rc.sessionKey) || !this._rc.withToken));
    return {
      type: 'Hello', version: PROTOCOL_VERSION, client: 'Browser', relayMode: 'Datagram',
      name: this.options.name, resumeToken: noToken ? null : this.options.resumeToken,
    };
  }

  /** The server the next connection goes to. */
  get server() {
    return this._at.target || this._servers[this._at.index % this._servers.length];
  }

  /**
   * What rides in the URL: Hello (with the resume token, if any) and, if the first message
   * queued is one, the CreateSession / JoinSession. null: the old form (`fastConnect` off).
   * @returns {Uint8Array[]|null}
   */
  _firstBodies() {
    if (!this.options.fastConnect) return null;
    const bodies = [encodeClientMsg(this._hello())];
    if (this.state !== 'reconnecting' && foldableRequest(this._queue[0])) bodies.push(this._queue[0]);
    const rejoin = this._rejoinInFirst();
    if (rejoin) bodies.push(encodeClientMsg(rejoin, PROTOCOL_VERSION));
    return bodies;
  }

  /**
   * The JoinSession of a reconnection attempt past the resume grace (PROTOCOL.md §12, rule 4):
   * no token, the session rejoined by code in the first flight. null otherwise.
   * @returns {ClientMsg|null}
   */
  _rejoinInFirst() {
    const rc = this._rc;
    if (this.state !== 'reconnecting' || !rc || rc.withToken || !rc.sessionKey) return null;
    return { type: 'JoinSession', code: rc.sessionKey.code, password: rc.sessionKey.password, regionRtts: this.regionRtts() };
  }

  /**
   * Make `t` the connection in use; its callbacks count only while it is. Control messages
   * that arrive before the returned function is called (the server answers a first request
   * in the URL at once) wait for it, so that `transport` comes before `welcome`.
   * @param {SignalTransport} t
   * @returns {() => void} call once the transport is up and what had to be written is
   */
  _attach(t) {
    /** @type {Uint8Array[]|null} */
    let early = [];
    t.onControl = (body) => {
      if (this.conn !== t) return;
      if (early) early.push(body);
      else this._onControlMessage(body);
    };
    t.onRelay = (frame) => { if (this.conn === t && !early && this._takesFrom(t)) this._onRelayFrame(frame, t); };
    t.onProtocolError = (e) => { if (this.conn === t) this._protocolError(e); };
    t.onClosed = (info) => { if (this.conn === t) this._onTransportClosed(info); };
    this.conn = t;
    return () => {
      const list = early || [];
      early = null;
      for (const body of list) if (this.conn === t) this._onControlMessage(body);
    };
  }

  /** @param {SignalTransport} t @param {number} startedAt */
  _transportUp(t, startedAt) {
    this.transport = /** @type {TransportKind} */ (t.kind);
    this.transportUrl = t.url;
    // Why we are on the WebSocket when 'auto' chose it; '' on WebTransport (even if a WebSocket attempt lost the race).
    this.fallbackReason = this.transport === 'websocket' ? /** @type {any} */ (t).fallbackReason || '' : '';
    this._emit('transport', {
      kind: this.transport, url: this.transportUrl, fallbackReason: this.fallbackReason, connectMs: now() - startedAt,
      reconnect: this.state === 'reconnecting', move: !!this._move,
    });
  }

  /**
   * The access token for the next connection (PROTOCOL.md §13): the fresh one fetched at the
   * server's expiry warning, else what getToken() gives, else the `token` option; null: none.
   * @returns {Promise<string|null>}
   */
  async _accessToken() {
    const o = this.options;
    let token = null;
    if (this._freshToken) {
      token = this._freshToken;
      this._freshToken = null;
    } else if (o.getToken) {
      const t = await o.getToken();
      if (t !== null && t !== undefined && t !== '') token = String(t);
    }
    return token || o.token || null;
  }

  /**
   * The server warned (Error token_expired without a close) that the token stops being valid
   * soon: ask getToken() for a fresh one now and resume on a new connection with it, before the
   * server closes this one. Nothing fresher (no getToken, the same token, it failed): wait for the
   * close, after which the reconnection asks again.
   */
  async _refreshToken() {
    if (this._refreshing || !this.options.getToken) return;
    this._refreshing = true;
    const conn = this.conn;
    let token = null;
    try {
      const t = await this.options.getToken();
      if (t !== null && t !== undefined && t !== '') token = String(t);
    } catch {
      // the reconnection after the close asks again
    } finally {
      this._refreshing = false;
    }
    if (this.state !== 'connected' || this.conn !== conn || !token || token === this._tokenInUse) return;
    this._freshToken = token;
    this._startReconnect('the access token expires soon: resuming with a fresh one', 0);
  }

  /** @param {string|null} [accessToken] @returns {SignalTransport} */
  _makeTransport(accessToken = null) {
    const o = this.options;
    const at = this.server;
    this._tokenInUse = accessToken;
    /** @type {TransportOptions} */
    const opts = {
      url: at.url, wsUrl: at.wsUrl, certHash: at.certHash, connectTimeoutMs: o.connectTimeoutMs,
      datagramMaxAgeMs: o.datagramMaxAgeMs, fallbackDelayMs: o.fallbackDelayMs, wsMaxBufferedBytes: o.wsMaxBufferedBytes,
      accessToken,
    };
    if (typeof o.transport === 'function') return o.transport(opts);
    if (o.transport === 'webtransport') return new WebTransportSignal(opts);
    if (o.transport === 'websocket') return new WebSocketSignal(opts);
    return new AutoSignal(opts);
  }

  /**
   * Create a session and become its host. May be called right after connect() (pipelined).
   * @param {{maxPeers?: number, password?: string|null}} [opts]
   * @returns {Promise<SessionInfo>}
   */
  createSession(opts = {}) {
    return this._request('create', {
      type: 'CreateSession', maxPeers: opts.maxPeers ?? 0, password: opts.password || null, regionRtts: this.regionRtts(),
    });
  }

  /**
   * Join a session by its code (case, spaces and dashes are forgiven by the server).
   * Rejects with FspError code 10 (unknown_session), 11, 12, ... on failure.
   * @param {string} code
   * @param {{password?: string|null}} [opts]
   * @returns {Promise<SessionInfo>}
   */
  joinSession(code, opts = {}) {
    return this._request('join', {
      type: 'JoinSession', code: String(code), password: opts.password ?? null, regionRtts: this.regionRtts(),
    });
  }

  /**
   * What this client measured to the regions of its cluster (PROTOCOL.md §11 "Regions"), as the
   * next CreateSession / JoinSession will carry it: `[{region, rttMs}]`, empty while nothing was
   * measured (a single server, a cluster without regions, `measureRegions: false`, a measurement
   * still running or older than 5 minutes). A region whose node did not answer within 1 s is absent.
   * @returns {{region: string, rttMs: number}[]}
   */
  regionRtts() {
    if (this.options.injectRegionRtts) return this.options.injectRegionRtts.map((e) => ({ ...e }));
    return regionRttsToSend(this._regionCache, now());
  }

  /**
   * After a Welcome: time the cluster's regions if due (core.js regionsDue), in the background.
   * Never delays anything: requests made meanwhile go without.
   */
  _maybeMeasureRegions() {
    const base = httpOfWsUrl(this.server.wsUrl);
    const due = regionsDue({
      enabled: !!this.options.measureRegions, version: this.welcome ? this.welcome.version : 0,
      running: this._regionsRunning, cache: this._regionCache, base, nowMs: now(),
    });
    if (!due || typeof fetch !== 'function' || this.options.injectRegionRtts) return;
    this._regionsRunning = true;
    const abort = new AbortController();
    this._regionsAbort = abort;
    this._measureRegions(base, abort.signal).then((cache) => {
      if (abort.signal.aborted) return;
      this._regionCache = cache;
      this._emit('regions', { rtts: this.regionRtts() });
    }, () => {}).finally(() => {
      if (this._regionsAbort === abort) this._regionsAbort = null;
      this._regionsRunning = false;
    });
  }

  /**
   * `GET {base}/nodes`, then per region (all at once, within REGIONS.deadlineMs) `GET
   * {node.http}/healthz` twice and, when this browser has WebTransport, two WebTransport handshakes
   * to the node (`https://{quic}/signal`, pinned to its certificate hash; closed at once with code 0,
   * before any Hello): the handshakes' time counts when one ended in time, else the HTTP one. A failed node list counts as a measurement of nothing (not
   * fetched again for 5 minutes).
   * @param {string} base @param {AbortSignal} signal
   * @returns {Promise<import('./core.js').RegionCache>}
   */
  async _measureRegions(base, signal) {
    const listedAt = now();
    let targets = [];
    const listAbort = new AbortController();
    const listTimer = setTimeout(() => listAbort.abort(), REGIONS.nodesTimeoutMs);
    const onListAbort = () => listAbort.abort();
    signal.addEventListener('abort', onListAbort);
    try {
      const res = await fetch(`${base}/nodes`, { cache: 'no-store', signal: listAbort.signal });
      if (res.ok) targets = regionTargets(await res.json());
    } catch {
      targets = [];
    } finally {
      clearTimeout(listTimer);
      signal.removeEventListener('abort', onListAbort);
    }
    if (signal.aborted) throw new Error('closed');
    const plan = regionsAfterList(this._regionCache, targets, now());
    if (plan === 'reuse') return { ...this._regionCache, base };
    if (plan === 'none') return { base, key: null, atMs: listedAt, rtts: [] };
    const startedAt = now();
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), REGIONS.deadlineMs);
    const onAbort = () => deadline.abort();
    signal.addEventListener('abort', onAbort);
    const tries = new Map(targets.map((t) => [t.region, []]));
    const wtTries = new Map(targets.map((t) => [t.region, []]));
    const hasWebTransport = typeof (/** @type {any} */ (globalThis).WebTransport) === 'function';
    const overHttp = async (/** @type {import('./core.js').RegionTarget} */ t) => {
      for (let i = 0; i < REGIONS.tries; i++) {
        const t0 = now();
        try {
          // no-cors: /healthz sends no CORS header; an opaque answer times the round trip all the same.
          await fetch(`${t.http}/healthz`, { cache: 'no-store', mode: 'no-cors', signal: deadline.signal });
        } catch {
          return;
        }
        const t1 = now();
        tries.get(t.region).push({ ms: t1 - t0, endAtMs: t1 });
      }
    };
    const overWebTransport = async (/** @type {import('./core.js').RegionTarget} */ t) => {
      for (let i = 0; i < REGIONS.tries; i++) {
        const t0 = now();
        if (!(await this._probeWebTransport(t, deadline.signal))) return;
        const t1 = now();
        wtTries.get(t.region).push({ ms: webTransportTryMs(t1 - t0), endAtMs: t1 });
      }
    };
    try {
      // Both at once: WebTransport is preferred, HTTP is what counts when it does not answer in
      // time (UDP blocked stalls a handshake until the deadline; it would be too late to start then).
      await Promise.all(targets.map((t) => Promise.all([
        overHttp(t), regionProbeKind(t, hasWebTransport) === 'webtransport' ? overWebTransport(t) : null,
      ])));
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    }
    if (signal.aborted) throw new Error('closed');
    return { base, key: regionTargetsKey(targets), atMs: startedAt, rtts: regionResult(targets, wtTries, startedAt, tries) };
  }

  /**
   * One WebTransport handshake to a node for the region measurement: resolves true once the session
   * is ready (then closed at once with code 0: no Hello, nothing kept by the server), false if it
   * failed or the deadline came first.
   * @param {import('./core.js').RegionTarget} t @param {AbortSignal} signal
   */
  async _probeWebTransport(t, signal) {
    if (signal.aborted) return false;
    /** @type {any} */
    let wt;
    try {
      const W = /** @type {any} */ (globalThis).WebTransport;
      wt = new W(`https://${t.quic}${WEBTRANSPORT_PATH}`,
        t.certSha256 ? { serverCertificateHashes: [{ algorithm: 'sha-256', value: certHashBytes(t.certSha256) }] } : {});
    } catch {
      return false;
    }
    wt.closed.catch(() => {});
    const close = () => {
      try {
        wt.close({ closeCode: 0, reason: 'region probe' });
      } catch {
        // not open (yet): the abort below ends it
      }
    };
    const aborted = new Promise((resolve) => signal.addEventListener('abort', () => resolve(false), { once: true }));
    const ok = await Promise.race([wt.ready.then(() => true, () => false), aborted]);
    close();
    return ok && !signal.aborted;
  }

  /** Leave the session (the connection stays open). */
  leaveSession() {
    return this._request('leave', { type: 'LeaveSession' });
  }

  /**
   * Send flight data to one peer, or to every other peer with peer = 0, over the
   * best path each peer has (DataChannel, else the relay). Best effort.
   *
   * The bytes go out in the flight-data envelope of PROTOCOL.md §5 (a u32
   * little-endian sequence number first, one counter for every peer and path);
   * receivers strip it and drop messages older than one already delivered, so
   * `onmessage` never sees stale state, whichever path it came on.
   * @param {number} peer
   * @param {Uint8Array|ArrayBuffer} data at most `maxFlightPayload` bytes to go through the relay
   * @returns {boolean} false if nothing could be sent (not in a session, unknown peer, too big for the relay)
   */
  send(peer, data) {
    const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
    /** @type {PeerLink[]} */
    let targets;
    if (peer === ALL_PEERS) targets = [...this.links.values()];
    else {
      const l = this.links.get(peer);
      if (!l) return false;
      targets = [l];
    }
    if (targets.length === 0) return false;
    this._txSeq = nextSeq(this._txSeq);
    const frame = wrapFlight(this._txSeq, bytes);
    let ok = true;
    /** @type {number[]} */
    const relay = [];
    for (const l of targets) {
      if (this._directUsable(l)) {
        try {
          /** @type {RTCDataChannel} */ (l.dc).send(frame);
          l.tx++;
          this._qualityEvent(l, l.quality.frameOut(now()));
          this.stats.directSent++;
          continue;
        } catch {
          // fall through to the relay
        }
      }
      if (l.online) relay.push(l.id);
    }
    if (relay.length) {
      // While reconnecting the relay is unreachable (DataChannels keep working): drop, the next state replaces it.
      // During a move: on the connections of rule 10's send_on (both in the overlap, none while
      // only the new one is opening).
      const conns = this._relayConns();
      if (frame.length > this.maxRelayPayload || conns.length === 0 || this.state !== 'connected') {
        this.stats.relayDropped += relay.length;
        return false;
      }
      // Everyone on the relay: one upload, the server fans out.
      const ids = peer === ALL_PEERS && relay.length === this.links.size && relay.length > 1 ? [ALL_PEERS] : relay;
      for (const id of ids) {
        const f = encodeRelay(id, frame);
        let sent = false;
        for (const c of conns) if (c.sendRelay(f)) sent = true;
        if (sent) {
          this.stats.relayFramesSent++;
        } else {
          this.stats.relayDropped++;
          ok = false;
        }
      }
      const t = now();
      for (const id of relay) {
        const l = this.links.get(id);
        if (l) {
          l.tx++;
          this._qualityEvent(l, l.quality.frameOut(t));
        }
      }
      this.stats.relaySent += relay.length;
    }
    return ok;
  }

  /**
   * Send application bytes reliably through the server (Signal::App).
   * @param {number} peer 0 = every other peer
   * @param {Uint8Array} data
   */
  sendApp(peer, data) {
    this._sendMsg({ type: 'Signal', to: peer, signal: { type: 'App', data } });
  }

  /**
   * Switch forced relay on or off at run time. On: all WebRTC connections are
   * closed and flight data goes through the server. Off: direct connections are tried again.
   * @param {boolean} on
   */
  setForceRelay(on) {
    on = !!on;
    if (on === this.options.forceRelay) return;
    this.options.forceRelay = on;
    for (const l of this.links.values()) {
      if (on) {
        this._closePc(l);
        l.fallback = true;
        clearTimeout(l.deadline);
        clearTimeout(l.retry);
        this._evaluate(l);
      } else {
        l.fallback = true;
        this._startDirect(l, true);
        this._evaluate(l);
      }
    }
  }

  /**
   * Leave gracefully: LeaveSession (if in a session), wait for SessionLeft (at most
   * `timeoutMs`), then close(). The others see PeerLeft { Left } at once either way.
   */
  async disconnect(reason = 'bye', timeoutMs = 1000) {
    if (this.state === 'connected' && this.session && !this._pending) {
      await withTimeout(this.leaveSession(), timeoutMs, () => new Error('timeout')).catch(() => {});
    }
    this.close(reason);
  }

  /** Leave for good: close with code 0 (WebSocket: 1000); the server removes my peer at once. */
  close(reason = 'bye') {
    if (this.state === 'closed') return;
    // While reconnecting this is the attempt in progress (if any); the lost connection is gone already.
    const t = this.conn;
    this._teardown();
    if (t) t.close(0, reason);
    this._emitClose(0, reason);
  }

  // --- internals: control stream --------------------------------------------------------

  /**
   * Send a request and wait for its answer (`requestTimeoutMs`). `sent`: it went out already
   * (in a reconnection's first flight): only wait for the answer.
   * @param {string} kind @param {ClientMsg} msg @param {boolean} [sent]
   */
  _request(kind, msg, sent = false) {
    if (this.state === 'closed') return Promise.reject(new FspError(0, 'closed', 'the client is closed'));
    if (this._pending) {
      return Promise.reject(new FspError(0, 'busy', `a ${this._pending.kind} request is still waiting for its answer`));
    }
    if (this.state === 'idle') this.connect();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this._pending && this._pending.timer === timer) {
          this._pending = null;
          reject(new FspError(0, 'timeout', `no answer to ${msg.type} within ${this.options.requestTimeoutMs} ms`));
        }
      }, this.options.requestTimeoutMs);
      this._pending = { kind, resolve, reject, timer };
      this._pendingMsg = kind === 'create' || kind === 'join' ? msg : null;
      if (kind === 'create' || kind === 'join') this._requestPassword = msg.password ?? null;
      if (!sent) this._sendMsg(msg);
    });
  }

  /** Answer the pending request if its kind is one of `kinds` (null: any). */
  _settle(kinds, value, error) {
    const p = this._pending;
    if (!p || (kinds && !kinds.includes(p.kind))) return false;
    this._pending = null;
    this._pendingMsg = null;
    clearTimeout(p.timer);
    if (error) p.reject(error);
    else p.resolve(value);
    return true;
  }

  /** @param {ClientMsg} msg */
  _sendMsg(msg) {
    const body = encodeClientMsg(msg, this._wireVersion());
    const max = this.welcome ? this.welcome.limits.maxFrameBytes : DEFAULT_MAX_FRAME_BYTES;
    if (body.length > max) {
      // The server would close the connection (frame_too_large): refuse locally instead.
      const err = new FspError(0, 'message_too_large', `${msg.type} of ${body.length} bytes exceeds the server's limit of ${max} bytes; not sent`);
      this._emit('error', { code: 0, name: err.codeName, message: err.message, fatal: false, error: err });
      return;
    }
    if (!this._helloSent) this._queue.push(body);
    else {
      this._outbox.push(body);
      this._pump();
    }
  }

  /**
   * Write queued control messages while staying under the server's signals_per_sec
   * (burst 2×): over it the server drops messages (rate_limited), and a dropped ICE
   * candidate can cost a direct connection. Uses 90 % of the rate and a burst of 1×.
   */
  _pump() {
    // While reconnecting, messages wait for the resumed connection (dropped if the resume fails);
    // during a move, for the new connection's Welcome (rule 10: control only on the new one).
    if (this.state === 'reconnecting' || !this._controlReady()) return;
    const signalsPerSec = this.welcome ? this.welcome.limits.signalsPerSec : 0;
    const t = signalsPerSec ? now() : this._tokensAt;
    const step = pumpStep({ tokens: this._tokens, lastMs: this._tokensAt, nowMs: t, signalsPerSec, queued: this._outbox.length });
    if (signalsPerSec) {
      this._tokens = step.tokens;
      this._tokensAt = t;
    }
    for (const body of this._outbox.splice(0, step.send)) this._writeRaw(body);
    if (step.retryInMs !== null && !this._pumpTimer && this.state !== 'closed') {
      this._pumpTimer = setTimeout(() => {
        this._pumpTimer = 0;
        this._pump();
      }, step.retryInMs);
    }
  }

  _writeMsg(msg) {
    this._writeRaw(encodeClientMsg(msg, this._wireVersion()));
  }

  /**
   * The version a control message is encoded at (PROTOCOL.md §4: CreateSession / JoinSession are
   * versioned by the connection): the Welcome's (at most the Hello's) once this connection has one; before it (pipelined
   * behind Hello, in the URL's `first`, or waiting for a resumed connection) the Hello's.
   */
  _wireVersion() {
    return this.state === 'connected' && this.welcome ? Math.min(this.welcome.version, PROTOCOL_VERSION) : PROTOCOL_VERSION;
  }

  /** @param {Uint8Array} body one control message body */
  _writeRaw(body) {
    const t = this.conn;
    if (!t || this.state === 'closed') return;
    this.stats.controlSent++;
    t.sendControl(body).catch((e) => {
      // The connection is gone: the same as the transport saying so (reconnect, or close as before).
      if (this.conn === t) this._onTransportClosed({ code: null, reason: `control stream write failed: ${describe(e)}`, error: e });
    });
  }

  /** @param {Uint8Array} body one control message body from the server */
  _onControlMessage(body) {
    if (this.state === 'closed') return;
    let msg;
    try {
      msg = decodeServerMsg(body);
    } catch (e) {
      this._protocolError(e, body);
      return;
    }
    this.stats.controlReceived++;
    this._live = livenessHeard(this._live);
    try {
      this._onServerMsg(msg);
    } catch (e) {
      console.error('fsp2p: handler failed for', msg.type, e);
    }
  }

  _protocolError(e, body) {
    if (this.state === 'closed') return;
    const hex = body ? ` (body ${toHex(body.subarray(0, 64))}${body.length > 64 ? '…' : ''})` : '';
    const err = new FspError(0, 'decode_failed', `cannot decode a message from the server: ${describe(e)}${hex}`, { fatal: true, cause: e });
    const t = this.conn;
    this._fail(err);
    if (t) t.close(1, 'bad_message');
  }

  /** @param {ServerMsg} m */
  _onServerMsg(m) {
    const mv = this._move;
    if (mv && !mv.welcomed && m.type !== 'Redirect') {
      // The new connection of a move, before its Welcome (the old one's control never gets here).
      if (m.type === 'Welcome') this._moveWelcome(mv, m);
      else if (m.type === 'Error') mv.error = FspError.fromServer(m.code, m.message);
      return;
    }
    switch (m.type) {
      case 'Welcome': {
        const previousPeerId = this.peerId;
        this.welcome = m;
        this.peerId = m.peerId;
        this._tokens = m.limits.signalsPerSec * 0.9;
        this._tokensAt = now();
        const rc = this._rc;
        this.state = 'connected';
        this._lastFatal = null;
        this.options.resumeToken = m.resumeToken;
        this._redirectState('welcome');
        this._startTimers();
        // The report schedule counts from the Welcome (PROTOCOL.md §14): the first report 2 s later.
        this._report = { ...this._report, lastAt: now() };
        if (this._attemptAt !== null) {
          // Milestone welcome: the connect attempt started → its Welcome.
          this._telemetry({ type: 'milestone', kind: 'welcome', path: 'connecting', ms: now() - this._attemptAt });
          this._attemptAt = null;
        }
        this._armQuality();
        this._maybeMeasureRegions();
        this._emit('welcome', {
          peerId: m.peerId, resumed: m.resumed, iceServers: m.iceServers, limits: m.limits, transport: this.transport, welcome: m,
        });
        if (this._welcomeWaiter) {
          this._welcomeWaiter.resolve(m);
          this._welcomeWaiter = null;
        }
        if (rc) this._reconnected(rc, m, previousPeerId);
        break;
      }
      case 'SessionCreated':
      case 'SessionJoined': {
        const created = m.type === 'SessionCreated';
        this._redirectState(created ? 'session_created' : 'session_joined');
        // After a resume the server says SessionJoined on its own: no request of ours.
        const requested = !!this._pending && (this._pending.kind === 'create' || this._pending.kind === 'join');
        const password = requested ? this._requestPassword : (this._sessionKey ? this._sessionKey.password : null);
        this._sessionKey = { code: m.session.code, password };
        // A resume puts us back in our session: keep the links (and their DataChannels, paths,
        // sequence numbers) of the peers still there, drop the others, add the new ones.
        const ids = new Set(m.session.peers.map((p) => p.id));
        for (const l of [...this.links.values()]) if (!ids.has(l.id)) this._dropLink(l);
        this.session = { ...m.session, peers: [...m.session.peers] };
        this._rxSeq.retain(ids);
        const rejoin = this._rejoin;
        this._rejoin = null;
        this._settle(['create', 'join'], this.session, null);
        this._emit('session', { session: this.session, created });
        // The peers already in the session offer to me (PROTOCOL.md §8). After a resume
        // the others still hold connections to my old one: I offer (they replace theirs),
        // except where the DataChannel survived the lost connection.
        const offer = m.type === 'SessionJoined' && !!this.welcome && this.welcome.resumed;
        for (const p of m.session.peers) {
          if (p.id === this.peerId) continue;
          const l = this.links.get(p.id);
          if (!l) {
            this._addLink(p, offer);
            continue;
          }
          l.name = p.name;
          l.client = p.client;
          l.online = true;
          if (offer && !this.options.forceRelay && !this._directUsable(l)) {
            clearTimeout(l.retry);
            l.retry = 0;
            this._startDirect(l, true);
          }
        }
        if (rejoin) this._emit('rejoined', { peerId: this.peerId, previousPeerId: rejoin.previousPeerId, session: this.session });
        break;
      }
      case 'PeerJoined': {
        if (this.session && !this.session.peers.some((p) => p.id === m.peer.id)) this.session.peers.push(m.peer);
        const existing = this.links.get(m.peer.id);
        if (existing) this._dropLink(existing);
        this._rxSeq.reset(m.peer.id);
        this._addLink(m.peer, true);
        this._emit('peerjoined', { peer: m.peer });
        break;
      }
      case 'PeerLeft': {
        if (this.session) this.session.peers = this.session.peers.filter((p) => p.id !== m.peer);
        const l = this.links.get(m.peer);
        if (l) this._dropLink(l);
        this._rxSeq.reset(m.peer);
        this._emit('peerleft', { peer: m.peer, reason: m.reason });
        break;
      }
      case 'PeerStatus': {
        const l = this.links.get(m.peer);
        if (l) {
          l.online = m.online;
          this._qualityEvent(l, l.quality.setOnline(m.online, now()));
          this._armQuality();
        }
        // Back after a lost connection: it may be a restarted client whose counter began again.
        // Not during a move: that is the peer arriving on the new node with us, its counter going
        // on, and its frames still coming on the old connection too (rule 10).
        if (m.online && !this._move) this._rxSeq.reset(m.peer);
        this._emit('peerstatus', { peer: m.peer, online: m.online });
        break;
      }
      case 'HostChanged':
        if (this.session) this.session.host = m.host;
        this._emit('hostchanged', { host: m.host });
        break;
      case 'Signal':
        this._onSignal(m.from, m.signal);
        break;
      case 'Error': {
        const err = FspError.fromServer(m.code, m.message);
        if (answersSessionRequest(m.code)) this._settle(null, null, err);
        this._emit('error', { code: err.code, name: err.codeName, message: err.message, fatal: err.fatal, error: err });
        if (err.fatal && this._welcomeWaiter) {
          this._welcomeWaiter.reject(err);
          this._welcomeWaiter = null;
        }
        // An Error that makes the connection's end final (rule 3), or that refuses an attempt.
        if (errorGivesUp(m.code) || this.state === 'reconnecting') this._lastFatal = err;
        if (m.code === 25) {
          // token_expired (PROTOCOL.md §13). Refusing the first Hello: connect() fails with it
          // (the close follows). In session without a close: the warning that the token stops
          // being valid soon; resume now with a fresh one from getToken().
          if (this.state === 'connecting') {
            this._lastFatal = err;
            if (this._welcomeWaiter) {
              this._welcomeWaiter.reject(err);
              this._welcomeWaiter = null;
            }
          } else if (this.state === 'connected') this._refreshToken();
        }
        if (answersSessionRequest(m.code)) this._redirectState('error_answering');
        // cluster_unavailable before the Welcome of a resume: the node is there, its directory is
        // not; try again after the backoff (the same node), within the grace as usual.
        if (m.code === 22 && this.state === 'reconnecting') this._attemptFailed(err.message);
        break;
      }
      case 'Pong': {
        const sent = this._pings.get(m.clientTimeMs);
        if (sent !== undefined) {
          this._pings.delete(m.clientTimeMs);
          const t = now();
          this.rttMs = t - sent;
          this._live = livenessHeard(this._live, this.rttMs);
          if (this._live.rtt) this.srttMs = this._live.rtt.srttMs;
          this.serverClockOffsetMs = Number(m.serverTimeMs) - (performance.timeOrigin + sent + this.rttMs / 2);
          this._emit('rtt', { rttMs: this.rttMs });
        }
        break;
      }
      case 'SessionLeft':
        this._sessionKey = null;
        for (const l of [...this.links.values()]) this._dropLink(l);
        this._rxSeq.clear();
        this.session = null;
        this._settle(['leave'], m.reason, null);
        this._emit('sessionleft', { reason: m.reason });
        break;
      case 'Redirect':
        this._onRedirect(m);
        break;
      case 'GoingAway': {
        // The server is stopping: come back after the delay (with the resume token). If the
        // connection is still up then, move over by ourselves.
        if (this._goingAway) clearTimeout(this._goingAway.timer);
        const ms = m.reconnectAfterMs;
        const timer = setTimeout(() => {
          if (this.state === 'connected' && this._goingAway && this._goingAway.timer === timer) {
            this._startReconnect(`the server is going away: ${m.message}`, 0);
          }
        }, ms);
        this._goingAway = { at: now(), ms, timer };
        this._emit('goingaway', { reconnectAfterMs: m.reconnectAfterMs, message: m.message });
        break;
      }
    }
  }

  _startTimers() {
    const o = this.options;
    this._stopTimers();
    // A new connection: a new estimate (the last one's srtt stays in srttMs for the attempt
    // timeout), nothing outstanding, the first Ping one interval from now.
    this._live = livenessStart(now(), o.pingIntervalMs);
    if (o.pingIntervalMs > 0) {
      // One timer: core.js says when to Ping (every interval; every 100 ms while probing, once a
      // Ping has been unanswered for probe_after_ms), and when the oldest unanswered Ping makes
      // the server lost (so a dead server is seen at that moment, not at the next Ping).
      const tick = () => {
        this._liveTimer = 0;
        if (this.state !== 'connected') return;
        const t = now();
        const d = livenessTick(this._live, t, { intervalMs: o.pingIntervalMs, timeoutMs: o.liveTimeoutMs });
        if (d.action === 'lost') {
          // Lost by liveness: the server counts as unreachable (the next attempt goes elsewhere).
          this._at = rotation(this._at, 'server_lost', this._servers.length);
          this._onTransportClosed({ code: null, reason: `no answer from the server for ${Math.round(d.silentMs)} ms (live timeout ${Math.round(d.timeoutMs)} ms)` });
          return;
        }
        this._live = d.state;
        if (d.action === 'ping') {
          let v = BigInt(Math.floor(performance.timeOrigin + t));
          while (this._pings.has(v)) v += 1n;
          this._pings.set(v, t);
          // Probing sends a Ping every 100 ms while one is unanswered: keep enough of them that a
          // late Pong still finds its Ping (up to the longest live timeout, 10 s).
          if (this._pings.size > 128) this._pings.delete(this._pings.keys().next().value);
          this._sendMsg({ type: 'Ping', clientTimeMs: v });
        }
        this._liveTimer = setTimeout(tick, Math.max(0, /** @type {number} */ (d.wakeAtMs) - now()));
      };
      this._liveTimer = setTimeout(tick, Math.max(0, livenessNextPingAt(this._live) - now()));
    }
    if (o.statsIntervalMs > 0) this._timers.push(setInterval(() => this._pollStats(), o.statsIntervalMs));
  }

  _stopTimers() {
    for (const t of this._timers) clearInterval(t);
    this._timers = [];
    clearTimeout(this._liveTimer);
    this._liveTimer = 0;
  }

  /**
   * A relay frame from connection `from` (the current one, or during a move the old or the new
   * one: rule 10 takes from both in the overlap; the envelope drops the second copy).
   * @param {Uint8Array} frame @param {SignalTransport|null} [from]
   */
  _onRelayFrame(frame, from = this.conn) {
    let r;
    try {
      r = decodeRelay(frame);
    } catch {
      this.stats.relayBadFrames++;
      return;
    }
    // The old connection of a move gives no liveness verdict, either way (rule 10).
    if (from === this.conn) this._live = livenessHeard(this._live);
    // A quality frame is answered on the relay and goes no further.
    if (this._onQualityFrame(r.peer, r.payload, null, from)) return;
    this.stats.relayReceived++;
    this._deliverFlight(r.peer, r.payload, 'relay');
  }

  /**
   * One flight-data message from `from` on any path: strip the envelope, drop it if
   * it is not newer than the last one accepted from that peer, else hand it to the game.
   * @param {number} from @param {Uint8Array} frame @param {PeerPath} path
   */
  _deliverFlight(from, frame, path) {
    const f = unwrapFlight(frame);
    if (!f) {
      this.stats.flightBadFrames++;
      return;
    }
    const l = this.links.get(from);
    // The same frame again (during a move it comes on the old and the new connection, rule 10):
    // not newer, so dropped as stale like any late frame, never delivered twice; counted apart too.
    const duplicate = this._rxSeq.last.get(from) === f.seq;
    if (!this._rxSeq.accept(from, f.seq)) {
      if (duplicate) this.stats.duplicatesDropped++;
      this.stats.staleDropped++;
      if (l) {
        l.staleDropped++;
        this._qualityEvent(l, l.quality.stale(now()));
      }
      return;
    }
    if (l) {
      l.rx++;
      const t = now();
      this._qualityEvent(l, l.quality.frameIn(t));
      if (!l.seenFrame) {
        // Milestone first_frame: link created → the first flight frame from that peer.
        l.seenFrame = true;
        this._telemetry({ type: 'milestone', kind: 'first_frame', path, ms: t - l.createdAt });
      }
    }
    this._deliver(from, f.payload, path);
  }

  // --- internals: per-peer quality and reports (PROTOCOL.md §14) -------------------------------

  /**
   * A payload on a peer path (DataChannel `dc`, or the relay when null) that starts FF FF FF FF is
   * a quality frame: a request is answered at once on the path it came on, a reply feeds the
   * peer's tracker, a malformed one is counted as a bad frame. Never flight data: not filtered,
   * not counted, not delivered. Returns whether `data` was one. A request that came on the relay is
   * answered on the connection it came on (`conn`; during a move's overlap it comes on both and is
   * answered on both: the requester's tracker takes the first reply only).
   * @param {number} from @param {Uint8Array} data @param {RTCDataChannel|null} dc
   * @param {SignalTransport|null} [conn]
   */
  _onQualityFrame(from, data, dc, conn = this.conn) {
    if (!isQualityFrame(data)) return false;
    const f = parseQualityFrame(data);
    if (!f) {
      this.stats.flightBadFrames++;
      return true;
    }
    if (f.kind === ECHO_REQUEST) {
      const reply = encodeQualityFrame(ECHO_REPLY, f.id, f.t);
      if (dc) {
        try {
          dc.send(reply);
        } catch {
          // the channel closed meanwhile: the requester counts it lost
        }
      } else if (this.state === 'connected') {
        const conns = this._relayConns();
        const on = conn && conns.includes(conn) ? [conn] : conns;
        for (const c of on) c.sendRelay(encodeRelay(from, reply));
      }
      return true;
    }
    const l = this.links.get(from);
    if (l) {
      this._qualityEvent(l, l.quality.reply(f.id, now()));
      this._armQuality();
    }
    return true;
  }

  /**
   * A tracker input's outcome: the `quality` event (grade or path changed) and an early report.
   * @param {PeerLink} l @param {import('./core.js').QualitySnapshot|null} snap
   */
  _qualityEvent(l, snap) {
    if (!snap || this.links.get(l.id) !== l) return;
    this._telemetry({ type: 'change' });
    this._emit('quality', snap);
  }

  /** Queue for the next report (nothing with `telemetry: false`). @param {any} ev */
  _telemetry(ev) {
    if (!this.options.telemetry) return;
    this._report = reportQueue(this._report, ev);
    this._armQuality();
  }

  /** Whether reports go out on this connection: telemetry on, a server that takes them, connected. */
  _reporting() {
    return this.options.telemetry && this.state === 'connected' && !!this.welcome && this.welcome.version >= REPORT_MIN_VERSION;
  }

  /**
   * (Re)arm the one quality timer for the earliest of every tracker's pollTimeout and the next
   * report. Called after inputs that can bring that time forward.
   */
  _armQuality() {
    if (this.state === 'closed') return;
    let at = Infinity;
    for (const l of this.options.qualityEchoes ? this.links.values() : []) {
      const t = l.quality.pollTimeout();
      if (t !== null && t < at) at = t;
    }
    if (this._reporting()) {
      const r = reportNextAt(this._report, Math.min(this.links.size, REPORT_LIMITS.links));
      if (r !== null && r < at) at = r;
    }
    if (at === Infinity) return;
    if (this._qTimer && at >= this._qWakeAt) return;
    clearTimeout(this._qTimer);
    this._qWakeAt = at;
    this._qTimer = setTimeout(() => this._qualityTick(), Math.max(0, Math.ceil(at - now())));
  }

  /** The quality timer: tick every tracker (echo requests go out), send a report if one is due. */
  _qualityTick() {
    this._qTimer = 0;
    this._qWakeAt = Infinity;
    if (this.state === 'closed') return;
    const t = now();
    for (const l of [...this.links.values()]) {
      // Without echoes the tracker is still ticked (frames/s, events) but its requests go nowhere.
      const d = this.options.qualityEchoes ? l.quality.tick(t) : { send: null, event: null };
      if (d.send !== null) this._sendEcho(l, d.send, t);
      this._qualityEvent(l, d.event);
    }
    if (this._reporting()) {
      const links = [...this.links.values()].slice(0, REPORT_LIMITS.links);
      const step = reportStep(this._report, t, links.length);
      if (step.send) {
        this._report = step.state;
        const report = {
          links: links.map((l) => l.quality.linkReport()),
          setup: step.setup,
          iceFailures: step.iceFailures,
          candidates: step.candidates,
        };
        this._sendMsg(reportMsg(report));
        this.reportsSent++;
        this._emit('report', { report });
      }
    }
    this._armQuality();
  }

  /**
   * An echo request to a peer on the path its tracker measures: the DataChannel on direct/turn,
   * the relay on relay (nothing when that path is not usable: the request counts lost).
   * @param {PeerLink} l @param {number} id @param {number} t
   */
  _sendEcho(l, id, t) {
    const frame = encodeQualityFrame(ECHO_REQUEST, id, t);
    const path = l.quality.path;
    if (path === 'direct' || path === 'turn') {
      if (!this._directUsable(l)) return;
      try {
        /** @type {RTCDataChannel} */ (l.dc).send(frame);
      } catch {
        // lost: the tracker decides so after the timeout
      }
    } else if (path === 'relay' && l.online && this.state === 'connected') {
      // During a move's overlap on both connections: the first reply is the sample.
      const f = encodeRelay(l.id, frame);
      for (const c of this._relayConns()) c.sendRelay(f);
    }
  }


  _deliver(from, data, path) {
    if (this.onmessage) {
      try {
        this.onmessage(from, data, path);
      } catch (e) {
        console.error('fsp2p: onmessage threw', e);
      }
    }
    this._emit('message', { from, data, path });
  }

  /** @param {{code: number|null, reason: string, error?: unknown}} info */
  _onTransportClosed(info) {
    if (this.state === 'closed') return;
    if (this._move) {
      // The new connection of a move failed or closed (or went silent): rule 10, not rule 3.
      this._moveNewFailed(this._move, info.reason || 'connection lost');
      return;
    }
    if (this.state === 'reconnecting') {
      // A reconnection attempt refused or closed: tried again with the backoff, or final (rule 3).
      const code = info.code ?? (this._lastFatal ? this._lastFatal.code : null);
      if (code === 25 && !this.options.getToken) {
        // token_expired with no getToken() to ask for a fresh one: the same token would be refused again.
        const err = new FspError(25, 'token_expired', 'the access token expired and there is no getToken() to get a fresh one', { fatal: true, cause: info.error });
        this._teardown(err);
        this._emitClose(25, err.message, err);
        return;
      }
      if (attemptFailure(code) === 'retry') {
        // Nothing from the server: it could not be reached (the next attempt goes elsewhere).
        this._attemptFailed(info.reason || 'connection lost', code === null);
        return;
      }
      const fatal = this._lastFatal;
      const reason = fatal ? fatal.message : `closed by the server with ${errorName(/** @type {number} */ (code))}`;
      const err = fatal || new FspError(code || 0, errorName(/** @type {number} */ (code)), reason, { fatal: true, cause: info.error });
      this._teardown(err);
      this._emitClose(code, reason, err);
      return;
    }
    const ga = this._goingAway;
    const d = closeDisposition({
      code: info.code,
      fatalCode: this._lastFatal ? this._lastFatal.code : null,
      goingAwayInMs: goingAwayLeftMs(ga, now()),
      enabled: this.options.reconnect,
      // A Welcome on this connection or an earlier one: there is a seat to resume.
      welcomed: this.state === 'reconnecting' || (this.state === 'connected' && !!this.welcome),
    });
    if (d.action === 'reconnect') {
      this._startReconnect(info.reason || 'connection lost', d.delayMs);
      return;
    }
    const fatal = this._lastFatal;
    const reason = fatal ? fatal.message : info.reason || 'connection closed';
    const err = fatal || new FspError(0, 'closed', `connection to the server closed: ${reason}`, { cause: info.error });
    this._teardown(err);
    this._emitClose(fatal ? fatal.code : info.code, reason, err);
  }

  // --- internals: cluster mode (PROTOCOL.md §11) ------------------------------------------------

  /**
   * The redirect count after one server message (core.js redirectCount; a create/join waits
   * while `_pendingMsg` is set). Returns the count.
   * @param {string} message
   */
  _redirectState(message) {
    this._redirects = redirectCount({ count: this._redirects.count, pending: !!this._pendingMsg }, message);
    return this._redirects.count;
  }

  /**
   * A node sends us elsewhere: in answer to Hello (instead of Welcome), to a create/join, or
   * unasked (draining, the session moved). Leave this connection (keeping any seat: code 999),
   * connect to the node the same way, Hello (with the resume token if in a session) and the
   * unanswered create/join again. The app sees `redirect`, then `reconnecting` / `reconnected`.
   * @param {{type: 'Redirect', reason: RedirectReason, node: NodeAddr}} m
   */
  _onRedirect(m) {
    // Asked: the answer to a Hello (a new connection not yet welcomed, or a reconnection's) or to
    // a create/join. Unasked: anything else while connected.
    const asked = this.state !== 'connected' || !!this._pendingMsg || !this.welcome || !!(this._move && !this._move.welcomed);
    if (this._move) {
      // Only the new connection's control gets here during a move (the old one's is ignored):
      // the move ends on it (rule 10: close_old), and the redirect is followed from there as usual.
      this._moveEvent({ event: 'redirect', on: 'new', reason: m.reason, unasked: !asked, inSession: !!this.session,
        version: this.welcome ? this.welcome.version : 0, resumed: null });
    }
    const count = this._redirectState('redirect');
    this._emit('redirect', { reason: m.reason, node: m.node, count });
    const plan = redirectPlan({
      count, max: this.options.maxRedirects, welcomed: !!this.welcome, inSession: !!this.session,
      connected: this.state === 'connected', at: this._at, target: nodeServer(m.node), transport: this.options.transport,
    });
    if (plan.action !== 'follow') {
      const err = new FspError(0, 'too_many_redirects',
        `too many redirects (${this.options.maxRedirects} in a row), the last to node ${m.node.name}`, { fatal: !this.welcome });
      this._redirects = { count: 0, pending: false };
      if (plan.action === 'fail') {
        this._fail(err);
        return;
      }
      // Fail the request; a client in a session goes back to its configured servers.
      this._settle(['create', 'join'], null, err);
      this._emit('error', { code: 0, name: err.codeName, message: err.message, fatal: false, error: err });
      if (!plan.reconnect) return;
    }
    // Followed: to the node, or (unreachable as given) back to the configured servers.
    this._at = plan.at;
    const why = `redirected to node ${m.node.name} (${m.reason})`;
    if (plan.action === 'follow' && this.state === 'connected' && this.conn) {
      // Rule 10: an unasked Placement in a session on a v5 connection is a move, make-before-break.
      const d = moveStep(moveStart(), {
        event: 'redirect', on: 'current', reason: m.reason, unasked: !asked, inSession: !!this.session,
        version: this.welcome ? this.welcome.version : 0, resumed: null,
      }, now());
      if (d.action === 'open_new') {
        this._moveOpen(m, d);
        return;
      }
    }
    const resend = this._pendingMsg;
    if (this.state === 'reconnecting' && this._rc) {
      // An attempt was redirected: go again at once, to the node; the backoff starts over
      // (the grace and the window still count from the loss).
      const rc = this._rc;
      rc.resend = resend;
      clearTimeout(rc.welcomeTimer);
      clearTimeout(rc.timer);
      const t = this.conn;
      this.conn = null;
      if (t) this._abandon(t);
      this._schedule(rc, resumePlanStep(rc.plan, { event: 'redirected', atMs: now() }, this._resumeLimits()), why);
      return;
    }
    this._startReconnect(why, 0, resend);
  }

  // --- internals: moving with the session (PROTOCOL.md §11 "Moving a session", §12 rule 10) ----

  /** The connections relay frames go out on now: the current one, or rule 10's send_on during a move. */
  _relayConns() {
    const mv = this._move;
    if (!mv) return this.conn ? [this.conn] : [];
    const { sendOn } = moveRoutes(mv.state);
    const out = [];
    if (sendOn.includes('old') && mv.old) out.push(mv.old);
    if (sendOn.includes('new') && mv.neu) out.push(mv.neu);
    return out;
  }

  /** Whether relay frames from `t` are taken now (rule 10's take_from during a move). @param {SignalTransport} t */
  _takesFrom(t) {
    const mv = this._move;
    if (!mv) return true;
    const { takeFrom } = moveRoutes(mv.state);
    return (takeFrom.includes('old') && t === mv.old) || (takeFrom.includes('new') && t === mv.neu);
  }

  /** Whether control messages may go out: always, but during a move only on the welcomed new connection. */
  _controlReady() {
    const mv = this._move;
    return !mv || (moveRoutes(mv.state).controlOn === 'new' && mv.welcomed && this.conn === mv.neu);
  }

  /**
   * Start a move (rule 10 `open_new`): keep the current connection as `old` for relay frames only
   * (what else it says is ignored, its close is an event of the move, never a reconnection), and
   * open a connection to the node by the same transport choice as a reconnection, Hello with the
   * resume token. The app sees `move` events, then `moved`.
   * @param {{type: 'Redirect', reason: string, node: NodeAddr}} m @param {import('./core.js').MoveDecision} d
   */
  _moveOpen(m, d) {
    const old = /** @type {SignalTransport} */ (this.conn);
    const mv = {
      state: d.state, old, neu: /** @type {SignalTransport|null} */ (null), node: m.node, startedAt: now(), timer: 0,
      welcomeTimer: 0, previousPeerId: this.peerId, welcomed: false, error: /** @type {FspError|null} */ (null),
      reason: '', oldCloseCode: /** @type {number|null} */ (null),
    };
    this._move = mv;
    old.onControl = () => {};
    old.onProtocolError = () => {};
    old.onRelay = (frame) => { if (this._move === mv && mv.old === old && this._takesFrom(old)) this._onRelayFrame(frame, old); };
    old.onClosed = (info) => {
      if (this._move !== mv || mv.old !== old) return;
      mv.old = null;
      // (20 `replaced` when the old node ends the overlap)
      mv.oldCloseCode = info ? info.code : null;
      this._moveEvent({ event: 'old_closed', on: 'old' });
    };
    this.conn = null;
    // No liveness verdict from the old connection; the new one's Welcome starts it again.
    this._stopTimers();
    if (this._goingAway) clearTimeout(this._goingAway.timer);
    this._goingAway = null;
    this._lastFatal = null;
    this._pings.clear();
    this._emit('move', { event: 'redirect', action: d.action, phase: d.phase, node: m.node.name, code: null });
    this._moveConnect(mv);
  }

  /** Open the move's new connection (one attempt, the reconnection's timeout). @param {any} mv */
  async _moveConnect(mv) {
    let token;
    try {
      token = await this._accessToken();
    } catch (e) {
      if (this._move === mv) this._moveNewFailed(mv, `getToken() failed: ${describe(e)}`);
      return;
    }
    if (this._move !== mv || this.state !== 'connected') return;
    const startedAt = now();
    const limit = attemptTimeoutMs(this.srttMs, this.options.connectTimeoutMs);
    /** @type {SignalTransport} */
    let t;
    try {
      t = this._makeTransport(token);
    } catch (e) {
      this._moveNewFailed(mv, describe(e));
      return;
    }
    mv.neu = t;
    this.conn = t;
    const up = this._attach(t);
    const first = this.options.fastConnect ? [encodeClientMsg(this._hello())] : null;
    mv.welcomeTimer = setTimeout(() => {
      if (this._move === mv && mv.neu === t && !mv.welcomed) this._moveNewFailed(mv, `no Welcome within ${limit} ms`);
    }, limit);
    try {
      await withTimeout(t.open(first), limit, () => new Error(`not connected within ${limit} ms`));
    } catch (e) {
      if (this._move === mv && mv.neu === t) this._moveNewFailed(mv, e instanceof Error ? e.message : describe(e));
      return;
    }
    if (this._move !== mv || mv.neu !== t || this.conn !== t) {
      if (this.conn !== t) this._abandon(t);
      return;
    }
    this._transportUp(t, startedAt);
    if (!(first && t.firstSent)) this._writeMsg(this._hello());
    up();
  }

  /** The move's new connection failed (before its Welcome) or closed (after it). @param {any} mv @param {string} reason */
  _moveNewFailed(mv, reason) {
    if (this._move !== mv) return;
    clearTimeout(mv.welcomeTimer);
    mv.reason = mv.error ? mv.error.message : reason;
    this._moveEvent({ event: mv.welcomed ? 'new_closed' : 'new_failed', on: 'new' });
  }

  /**
   * The new connection's Welcome: a step of the move, then the Welcome as on any connection
   * (liveness, token, limits). Not resumed (the seat was gone): rejoin on it (rule 4's after_reconnect).
   * @param {any} mv @param {WelcomeMsg} m
   */
  _moveWelcome(mv, m) {
    mv.welcomed = true;
    clearTimeout(mv.welcomeTimer);
    const resumed = m.resumed && m.peerId === this.peerId;
    this._moveEvent({ event: 'new_welcome', on: 'new', resumed });
    const previousPeerId = this.peerId;
    this._onServerMsg(m);
    if (!resumed && this.state === 'connected') {
      const rc = {
        startedAt: mv.startedAt, attempt: 1, reason: `moved to node ${mv.node.name}`, previousPeerId: mv.previousPeerId,
        sessionKey: this.session ? this._sessionKey : null, resend: null, rejoinSent: false,
      };
      this._reconnected(/** @type {any} */ (rc), m, previousPeerId);
    }
    this._pump();
  }

  /**
   * One event of the move machine (core.js moveStep) and its action: drop the old connection, the
   * new one, or both and reconnect; arm the overlap's cap. @param {import('./core.js').MoveEvent} ev
   */
  _moveEvent(ev) {
    const mv = this._move;
    if (!mv || this.state === 'closed') return null;
    const s0 = mv.state.phase;
    const d = moveStep(mv.state, ev, now());
    mv.state = d.state;
    clearTimeout(mv.timer);
    mv.timer = 0;
    if (d.wakeAtMs !== null) {
      mv.timer = setTimeout(() => {
        if (this._move === mv) this._moveEvent({ event: 'tick', on: null });
      }, Math.max(0, d.wakeAtMs - now()));
    }
    if (d.action === 'ignore' || (d.action === 'none' && d.phase === s0)) return d;
    if ((d.action === 'close_old' || (d.action === 'reconnect' && ev.event === 'tick')) && mv.old) {
      // The cap: the old node never closed it (the overlap), or it went silent (old only).
      const old = mv.old;
      mv.old = null;
      this._abandon(old);
    }
    if (d.phase === 'old_only' && mv.neu) {
      // The new connection failed: stay on the old one until it closes (rule 10).
      const t = mv.neu;
      mv.neu = null;
      clearTimeout(mv.welcomeTimer);
      if (this.conn === t) this.conn = null;
      this._abandon(t);
      this._stopTimers();
    }
    this._emit('move', {
      event: ev.event, action: d.action, phase: d.phase, node: mv.node.name, code: ev.event === 'old_closed' ? mv.oldCloseCode : null,
    });
    if (d.phase === 'settled') {
      this._move = null;
      clearTimeout(mv.welcomeTimer);
      if (d.action === 'reconnect') {
        // Neither connection is left: a lost connection (rule 3's resume, first to the named node).
        this._startReconnect(`moving to node ${mv.node.name} failed: ${mv.reason || 'connection lost'}`, 0);
      } else if (mv.welcomed) {
        this.moves++;
        this.movedTo = mv.node.name;
        this._emit('moved', { node: mv.node.name, transport: this.transport, url: this.transportUrl, ms: now() - mv.startedAt });
        this._pump();
      }
    }
    return d;
  }

  /** End a move at once (a reconnection or the close takes over): let go of its old connection. */
  _moveAbort() {
    const mv = this._move;
    if (!mv) return;
    this._move = null;
    clearTimeout(mv.timer);
    clearTimeout(mv.welcomeTimer);
    if (mv.old) this._abandon(mv.old);
    mv.old = null;
    if (mv.neu && mv.neu !== this.conn) this._abandon(mv.neu);
  }

  // --- internals: reconnecting ---------------------------------------------------------------

  /**
   * The connection is lost, but the server keeps our seat for the resume grace
   * (PROTOCOL.md §4): keep the session, the links (DataChannels keep working), the
   * callbacks, and connect again (the `transport` option decides how; 'auto' races again)
   * with the resume token.
   * @param {string} reason @param {number} delayMs before the first attempt
   * @param {ClientMsg|null} [resend] a redirected create/join, sent again after the Welcome
   */
  _startReconnect(reason, delayMs, resend = null) {
    this._moveAbort();
    const old = this.conn;
    this.conn = null;
    if (old) this._abandon(old);
    this._stopTimers();
    clearTimeout(this._pumpTimer);
    this._pumpTimer = 0;
    if (this._goingAway) clearTimeout(this._goingAway.timer);
    this._goingAway = null;
    this._lastFatal = null;
    this._pings.clear();
    this.state = 'reconnecting';
    /** @type {NonNullable<FlightSimP2P['_rc']>} */
    const startedAt = now();
    const first = resumePlanStep(null, { event: 'lost', atMs: startedAt, delayMs }, this._resumeLimits());
    const rc = {
      startedAt, attempt: 0, timer: 0, welcomeTimer: 0, reason, previousPeerId: this.peerId,
      sessionKey: this.session ? this._sessionKey : null, onOnline: null, resend, plan: first.plan,
      withToken: true, rejoinSent: false,
    };
    this._rc = rc;
    // The browser says the network is back: try now rather than after the backoff.
    const g = /** @type {any} */ (globalThis);
    if (typeof g.addEventListener === 'function') {
      rc.onOnline = () => {
        if (this._rc !== rc || !rc.timer) return;
        clearTimeout(rc.timer);
        rc.timer = 0;
        this._attempt(rc);
      };
      g.addEventListener('online', rc.onOnline);
    }
    this._emit('reconnecting', {
      reason, peerId: this.peerId, session: this.session, graceMs: this.welcome ? this.welcome.limits.resumeGraceMs : 0,
    });
    this._schedule(rc, first, reason);
  }

  /** The grace (from the last Welcome) and the reconnect window of resumePlanStep. */
  _resumeLimits() {
    // No Welcome yet (a token given as an option, redirected before the Welcome): the default grace.
    return { graceMs: this.welcome ? this.welcome.limits.resumeGraceMs : RESUME_GRACE_DEFAULT_MS, windowMs: this.options.reconnectTimeoutMs };
  }

  /**
   * Follow the resume plan's next step: the next attempt at its time (with or without the
   * resume token), or give up.
   * @param {NonNullable<FlightSimP2P['_rc']>} rc
   * @param {ReturnType<typeof resumePlanStep>} step @param {string} reason the last failure
   */
  _schedule(rc, step, reason) {
    rc.plan = step.plan;
    const next = step.next;
    if (next.action === 'give_up') {
      this._fail(new FspError(0, 'reconnect_failed',
        `could not reconnect to the server within ${this.options.reconnectTimeoutMs} ms (${rc.attempt} attempt(s); last: ${reason})`, { fatal: true }));
      return;
    }
    rc.withToken = next.withToken;
    rc.timer = setTimeout(() => {
      rc.timer = 0;
      this._attempt(rc);
    }, Math.max(0, next.startAtMs - now()));
  }

  /** One reconnect attempt: a new transport, then Hello with the resume token. */
  async _attempt(rc) {
    if (this._rc !== rc || this.state !== 'reconnecting') return;
    rc.attempt++;
    this._lastFatal = null;
    // Decided at the actual start (the browser's `online` event may bring it forward).
    rc.withToken = offersToken(rc.plan, now(), this._resumeLimits().graceMs);
    rc.rejoinSent = false;
    // A fresh access token for every attempt (getToken), the resume and a redirect's included.
    let token;
    try {
      token = await this._accessToken();
    } catch (e) {
      if (this._rc === rc && this.state === 'reconnecting' && !this.conn) this._attemptFailed(`getToken() failed: ${describe(e)}`);
      return;
    }
    if (this._rc !== rc || this.state !== 'reconnecting') return;
    const startedAt = now();
    this._attemptAt = startedAt;
    const limit = attemptTimeoutMs(this.srttMs, this.options.connectTimeoutMs);
    /** @type {SignalTransport} */
    let t;
    try {
      t = this._makeTransport(token);
    } catch (e) {
      this._attemptFailed(describe(e));
      return;
    }
    const up = this._attach(t);
    const first = this._firstBodies();
    try {
      await withTimeout(t.open(first), limit, () => new Error(`not connected within ${limit} ms`));
    } catch (e) {
      if (this.conn === t) this._attemptFailed(e instanceof Error ? e.message : describe(e), true);
      return;
    }
    if (this._rc !== rc || this.conn !== t || this.state !== 'reconnecting') {
      // Closed or superseded meanwhile.
      if (this.conn !== t) this._abandon(t);
      return;
    }
    this._transportUp(t, startedAt);
    const rejoin = this._rejoinInFirst();
    if (!(first && t.firstSent)) {
      this._writeMsg(this._hello());
      if (rejoin) this._writeMsg(rejoin);
    }
    rc.rejoinSent = !!rejoin;
    rc.welcomeTimer = setTimeout(() => {
      if (this._rc === rc && this.conn === t) this._attemptFailed(`no Welcome within ${limit} ms`, true);
    }, limit);
    up();
  }

  /**
   * The attempt in progress failed: abandon it, then try again after the backoff (or give up).
   * `unreachable`: the server could not be reached, so the next attempt goes to the next one
   * (a redirect's node is dropped for the configured servers, which rotate).
   */
  _attemptFailed(reason, unreachable = false) {
    const rc = this._rc;
    if (!rc || this.state !== 'reconnecting') return;
    if (unreachable) this._at = rotation(this._at, 'unreachable', this._servers.length);
    clearTimeout(rc.welcomeTimer);
    const t = this.conn;
    this.conn = null;
    if (t) this._abandon(t);
    this._schedule(rc, resumePlanStep(rc.plan, { event: 'failed', atMs: now(), random: Math.random }, this._resumeLimits()), reason);
  }

  /** A Welcome ended the reconnection. @param {WelcomeMsg} m */
  _reconnected(rc, m, previousPeerId) {
    this._endReconnect();
    // A create/join still waiting for its answer (redirected, or sent before the loss).
    const pendingMsg = this._pending ? rc.resend || this._pendingMsg : null;
    const outcome = afterReconnect({
      resumed: m.resumed, peerId: m.peerId, previousPeerId: rc.previousPeerId, inSession: !!rc.sessionKey, pendingRequest: !!pendingMsg,
    });
    const detail = {
      peerId: m.peerId, previousPeerId, resumed: outcome === 'resumed',
      transport: this.transport, attempts: rc.attempt, downtimeMs: now() - rc.startedAt, reason: rc.reason,
    };
    if (detail.resumed) {
      // Same peer id: the server sends SessionJoined by itself; what waited goes out now.
      this._emit('reconnected', detail);
      this._pump();
      return;
    }
    // Too late (the grace passed, or the server restarted): a new peer id. Everything tied
    // to the old one is void; join the session again by its code.
    this._outbox = [];
    for (const l of [...this.links.values()]) this._dropLink(l);
    this._rxSeq.clear();
    this.session = null;
    // An unanswered create/join goes again here; anything else in flight is void.
    const resend = outcome === 'resend' ? pendingMsg : null;
    if (!resend) this._settle(null, null, new FspError(0, 'connection_lost', 'the connection was lost and could not be resumed'));
    this._emit('reconnected', detail);
    if (resend) {
      this._sendMsg(resend);
      return;
    }
    const key = rc.sessionKey;
    if (outcome !== 'rejoin' || !key) {
      this._sessionKey = null;
      return;
    }
    this._rejoin = { previousPeerId: rc.previousPeerId, code: key.code };
    // Past the grace the attempt's first flight carried the JoinSession already: its answer follows.
    this._request('join', { type: 'JoinSession', code: key.code, password: key.password, regionRtts: this.regionRtts() }, rc.rejoinSent).catch((e) => {
      this._rejoin = null;
      this._sessionKey = null;
      if (this.state !== 'closed') this._emit('sessionleft', { reason: 'TimedOut', error: e });
    });
  }

  _endReconnect() {
    const rc = this._rc;
    if (!rc) return;
    this._rc = null;
    clearTimeout(rc.timer);
    clearTimeout(rc.welcomeTimer);
    if (rc.onOnline) /** @type {any} */ (globalThis).removeEventListener('online', rc.onOnline);
  }

  /** Let go of a connection without leaving the session (close code ABANDON_CLOSE_CODE, not 0). */
  _abandon(t) {
    t.onControl = null;
    t.onRelay = null;
    t.onProtocolError = null;
    t.onClosed = null;
    try {
      t.close(ABANDON_CLOSE_CODE, 'reconnecting');
    } catch {
      // closed already
    }
  }

  /** Fail: emit the error, close everything. */
  _fail(err) {
    if (this.state === 'closed') return;
    this._emit('error', { code: err.code, name: err.codeName, message: err.message, fatal: true, error: err });
    const t = this.conn;
    this._teardown(err);
    // Code 0: we do not resume after a failure, so leave for good.
    if (t) t.close(0, err.codeName);
    this._emitClose(err.code || null, err.message, err);
  }

  _teardown(err) {
    this.state = 'closed';
    this._moveAbort();
    this._endReconnect();
    if (this._goingAway) clearTimeout(this._goingAway.timer);
    this._goingAway = null;
    const e = err || new FspError(0, 'closed', 'the client was closed');
    if (this._welcomeWaiter) {
      this._welcomeWaiter.reject(e);
      this._welcomeWaiter = null;
    }
    this._settle(null, null, e);
    this._stopTimers();
    if (this._regionsAbort) this._regionsAbort.abort();
    clearTimeout(this._pumpTimer);
    clearTimeout(this._qTimer);
    this._qTimer = 0;
    this._outbox = [];
    for (const l of [...this.links.values()]) this._dropLink(l);
    this._rxSeq.clear();
  }

  /**
   * @param {number|null} code 0: closed by us (or a normal close); a §6 code: the server's fatal
   *   error (WebTransport close code, or WebSocket close code minus 4000); null when the
   *   connection ended without one
   */
  _emitClose(code, reason, error) {
    if (this._closeEmitted) return;
    this._closeEmitted = true;
    this._emit('close', { code, reason, error: error || null });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

installMesh(FlightSimP2P);
