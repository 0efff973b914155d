// Fakes shared by the browser client's node tests (no browser, no server): a fake
// SignalTransport, and clients in a session over fake transports.
import {
  decodeClientMsg, encodeClientMsg, encodeServerMsg, encodeRelay, FspError, wrapFlight, AutoSignal,
  FlightSimP2P,
} from '../../client/web/fsp2p.js';

// --- transport selection ("happy eyeballs") with fake transports ---------------------------------

/**
 * A fake SignalTransport whose open() resolves or rejects when the test says so.
 * @param {string} kind
 */
export function fakeTransport(kind, log) {
  let settle;
  const t = {
    kind,
    url: `${kind}://fake`,
    maxRelayFrameBytes: 1200,
    onControl: null, onRelay: null, onProtocolError: null, onClosed: null,
    closed: null,
    sent: [],
    relayed: [],
    open() {
      log.push(`${kind} open`);
      return new Promise((resolve, reject) => {
        settle = { resolve, reject };
      });
    },
    succeed() { settle.resolve(); },
    fail(msg) { settle.reject(new FspError(0, 'connect_failed', msg)); },
    close(code, reason) {
      log.push(`${kind} close ${code}`);
      t.closed = { code, reason };
      if (settle) settle.reject(new FspError(0, 'closed', 'aborted'));
    },
    sendControl(b) { t.sent.push(b); return Promise.resolve(); },
    sendRelay(f) { t.relayed.push(f); return true; },
  };
  return t;
}

export const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

/** Run `fn` with globalThis.WebTransport defined (or not). */
export async function withWebTransport(present, fn) {
  const had = Object.prototype.hasOwnProperty.call(globalThis, 'WebTransport');
  const old = globalThis.WebTransport;
  if (present) globalThis.WebTransport = function WebTransport() {};
  else delete globalThis.WebTransport;
  try {
    return await fn();
  } finally {
    if (had) globalThis.WebTransport = old;
    else delete globalThis.WebTransport;
  }
}

export function autoWithFakes(delay) {
  const log = [];
  const made = {};
  const a = new AutoSignal({ url: 'https://x/signal', wsUrl: 'ws://x/ws', fallbackDelayMs: delay }, {
    webtransport: () => (made.wt = fakeTransport('webtransport', log)),
    websocket: () => (made.ws = fakeTransport('websocket', log)),
  });
  return { a, log, made };
}

// --- the client's envelope handling, over a fake transport ----------------------------------------

/** A FlightSimP2P in a session with peers 2 and 3 (forced relay: no WebRTC in Node), over a fake transport. */
export async function clientInSession() {
  const log = [];
  let fake;
  const c = new FlightSimP2P({
    host: '127.0.0.1', forceRelay: true, pingIntervalMs: 0, statsIntervalMs: 0,
    transport: () => (fake = fakeTransport('websocket', log)),
  });
  const events = [];
  c.addEventListener('transport', (e) => events.push(e.detail));
  const connected = c.connect();
  await tick();
  fake.succeed();
  await tick();
  const limits = {
    maxFrameBytes: 16384, maxRelayPayload: 1100, relayDatagramsPerSec: 500, relayBytesPerSec: 262144,
    signalsPerSec: 0, maxPeersPerSession: 16, resumeGraceMs: 15000,
  };
  const server = (m) => fake.onControl(encodeServerMsg(m));
  server({
    type: 'Welcome', version: 1, peerId: 1, resumeToken: new Uint8Array(16), resumed: false,
    iceServers: [], limits, serverTimeMs: 0n,
  });
  await connected;
  const peer = (id) => ({ id, name: `p${id}`, client: 'Browser' });
  server({ type: 'SessionCreated', session: { code: 'ABCDEF', host: 1, maxPeers: 16, idleTtlSecs: 60, peers: [peer(1)] } });
  server({ type: 'PeerJoined', peer: peer(2) });
  server({ type: 'PeerJoined', peer: peer(3) });
  const got = [];
  c.onmessage = (from, data, path) => got.push([from, new TextDecoder().decode(data), path]);
  return { c, fake, server, got, events, relayIn: (from, seq, text) => fake.onRelay(encodeRelay(from, wrapFlight(seq, new TextEncoder().encode(text)))) };
}

// --- reconnecting: the client over fake transports ---------------------------------------------

export const LIMITS = {
  maxFrameBytes: 16384, maxRelayPayload: 1100, relayDatagramsPerSec: 500, relayBytesPerSec: 262144,
  signalsPerSec: 0, maxPeersPerSession: 16, resumeGraceMs: 15000,
};
export const TOKEN = Uint8Array.from({ length: 16 }, (_, i) => i + 1);
export const peerInfo = (id) => ({ id, name: `p${id}`, client: 'Browser' });
export const welcomeMsg = (peerId, resumed) => ({
  type: 'Welcome', version: 1, peerId, resumeToken: TOKEN, resumed, iceServers: [], limits: LIMITS, serverTimeMs: 0n,
});

/** A client in session ABCDEF (password "pw") with peers 2 and 3, each transport a new fake. */
export async function reconnectingClient(extra = {}) {
  const log = [];
  const fakes = [];
  const c = new FlightSimP2P({
    host: '127.0.0.1', forceRelay: true, pingIntervalMs: 0, statsIntervalMs: 0,
    transport: () => { const f = fakeTransport('websocket', log); fakes.push(f); return f; },
    ...extra,
  });
  const events = [];
  for (const type of ['reconnecting', 'reconnected', 'rejoined', 'session', 'sessionleft', 'close', 'transport']) {
    c.addEventListener(type, (e) => events.push([type, e.detail]));
  }
  c.connect();
  const joined = c.joinSession('abc-def', { password: 'pw' });
  await tick();
  fakes[0].succeed();
  await tick();
  const server = (m, i = fakes.length - 1) => fakes[i].onControl(encodeServerMsg(m));
  server(welcomeMsg(1, false));
  server({ type: 'SessionJoined', session: { code: 'ABCDEF', host: 2, maxPeers: 16, idleTtlSecs: 60, peers: [peerInfo(2), peerInfo(1), peerInfo(3)] } });
  await joined;
  const got = [];
  const onmessage = (from, data, path) => got.push([from, new TextDecoder().decode(data), path]);
  c.onmessage = onmessage;
  return { c, fakes, log, server, events, got, onmessage };
}

/**
 * A control body the client sent, decoded at the version it was sent at: what went before the
 * Welcome (pipelined, in `first`) at the Hello's (4: CreateSession / JoinSession end with
 * `region_rtts`), what went after at the fakes' Welcome's (1). The fakes do not track which.
 */
export function decodeSent(b) {
  try {
    return decodeClientMsg(b, 1);
  } catch {
    return decodeClientMsg(b, 4);
  }
}

export const sentTypes = (f) => f.sent.map((b) => decodeSent(b));

export const helloBrowser = (resumeToken = null) => encodeClientMsg({
  type: 'Hello', version: 1, client: 'Browser', relayMode: 'Datagram', name: '', resumeToken,
});
export const join7 = encodeClientMsg({ type: 'JoinSession', code: '7KQ2MX', password: null });

/**
 * A fake transport that takes the first request: it records it, and on succeed() the
 * "server" may answer at once, before open() has even resolved (as a real server does).
 */
export function fastFake(kind, log) {
  const t = fakeTransport(kind, log);
  const open = t.open;
  t.first = undefined;
  t.open = (first) => {
    t.first = first ?? null;
    return open().then(() => { t.firstSent = !!first; });
  };
  return t;
}

export async function fastClient(extra = {}) {
  const log = [];
  const fakes = [];
  const c = new FlightSimP2P({
    host: '127.0.0.1', forceRelay: true, pingIntervalMs: 0, statsIntervalMs: 0, fastConnect: true,
    transport: () => { const f = fastFake('websocket', log); fakes.push(f); return f; },
    ...extra,
  });
  const events = [];
  for (const type of ['transport', 'welcome', 'session', 'reconnected']) c.addEventListener(type, (e) => events.push([type, e.detail]));
  const server = (m, i = fakes.length - 1) => fakes[i].onControl(encodeServerMsg(m));
  return { c, fakes, events, server };
}

export const joinedMsg = (peers) => ({ type: 'SessionJoined', session: { code: '7KQ2MX', host: 2, maxPeers: 16, idleTtlSecs: 60, peers: peers.map(peerInfo) } });
