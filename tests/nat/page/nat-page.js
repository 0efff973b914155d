// One NAT-test player: the unmodified browser client (client/web/fsp2p.js, served
// next to this page) plus counters the driver (tests/nat/drive.mjs) reads through
// `window.nat`. Everything the game would do goes through the library's public API:
// `new FlightSimP2P(...)`, `connect`, `createSession`/`joinSession`, `send(0, bytes)`,
// `onmessage(from, bytes, path)`, `pathOf`, `getPeers`, events. Only `pairs()` looks
// at the library's RTCPeerConnection (for ICE candidate-pair statistics).
//
// Test frame (inside the library's own flight-data envelope):
//   0      0xA5 magic
//   1      kind: 0 = warm-up (sent from the moment the session has two players), 1 = burst
//   2..5   index, u32 LE
//   6..9   sender peer id, u32 LE
//   10..11 pattern length L, u16 LE (64..463, varies per frame)
//   12..   L pattern bytes, a function of (index, sender)
//   +4     CRC-32 of everything before
// A frame is "intact" when magic, length, pattern and CRC all check.
import * as fsp from './fsp2p.js';

const MAGIC = 0xa5;
const KIND_WARM = 0;
const KIND_BURST = 1;

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes, end) {
  let c = 0xffffffff;
  for (let i = 0; i < end; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const patLen = (idx) => 64 + ((idx * 37) % 400);
const patByte = (idx, sender, j) => (idx * 31 + j * 7 + sender * 13 + (j >> 3)) & 0xff;

function makeFrame(kind, idx, sender) {
  const len = patLen(idx);
  const b = new Uint8Array(12 + len + 4);
  const v = new DataView(b.buffer);
  b[0] = MAGIC;
  b[1] = kind;
  v.setUint32(2, idx, true);
  v.setUint32(6, sender, true);
  v.setUint16(10, len, true);
  for (let j = 0; j < len; j++) b[12 + j] = patByte(idx, sender, j);
  v.setUint32(12 + len, crc32(b, 12 + len), true);
  return b;
}

/** @returns {{kind:number, idx:number, sender:number, intact:boolean}|null} */
function checkFrame(b, from) {
  if (b.length < 16 || b[0] !== MAGIC) return null;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const kind = b[1];
  const idx = v.getUint32(2, true);
  const sender = v.getUint32(6, true);
  const len = v.getUint16(10, true);
  let intact = len === patLen(idx) && b.length === 12 + len + 4 && sender === from;
  if (intact) {
    for (let j = 0; j < len; j++) {
      if (b[12 + j] !== patByte(idx, sender, j)) {
        intact = false;
        break;
      }
    }
  }
  if (intact) intact = v.getUint32(12 + len, true) === crc32(b, 12 + len);
  return { kind, idx, sender, intact };
}

const now = () => performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const S = {
  ready: true,
  /** @type {fsp.FlightSimP2P|null} */
  client: null,
  name: '',
  /** when this page knew the session had both players (joiner: join resolved; host: peerjoined) */
  t0: null,
  tConnectStart: null,
  tJoined: null,
  transport: null,
  fallbackReason: '',
  log: [],
  errors: [],
  pathLog: [],
  warm: { sent: 0, sendFalse: 0, rx: 0, firstAt: null, firstPath: null, firstByPath: {} },
  burst: {
    started: false, sent: 0, sendFalse: 0, doneSending: false, sendMs: null,
    rx: new Set(), intact: 0, corrupt: 0, dup: 0, paths: {}, firstAt: null, lastAt: null,
  },
  warmTimer: 0,
  icePoll: 0,
  /** per peer id: when its RTCPeerConnection first reported connected / failed */
  ice: {},
};

function log(s) {
  const line = `${(now() / 1000).toFixed(3)} ${s}`;
  S.log.push(line);
  if (S.log.length > 400) S.log.shift();
  const el = document.getElementById('log');
  if (el) el.textContent = S.log.slice(-40).join('\n');
}

function onMessage(from, data, path) {
  const f = checkFrame(data, from);
  const t = now();
  if (!f) return;
  if (f.kind === KIND_WARM || f.kind === KIND_BURST) {
    const w = S.warm;
    if (w.firstAt === null) {
      w.firstAt = t;
      w.firstPath = path;
      log(`first frame from ${from} via ${path}`);
    }
    if (w.firstByPath[path] === undefined) w.firstByPath[path] = t;
  }
  if (f.kind === KIND_WARM) {
    S.warm.rx++;
    return;
  }
  const b = S.burst;
  if (b.rx.has(f.idx)) {
    b.dup++;
    return;
  }
  b.rx.add(f.idx);
  if (f.intact) b.intact++;
  else b.corrupt++;
  b.paths[path] = (b.paths[path] || 0) + 1;
  if (b.firstAt === null) b.firstAt = t;
  b.lastAt = t;
}

/** Record when each peer's RTCPeerConnection first reported connected / failed. */
function pollIce() {
  const c = S.client;
  if (!c) return;
  for (const [id, l] of c.links) {
    const pc = l.pc;
    if (!pc) continue;
    const rec = S.ice[id] || (S.ice[id] = { connectedAt: null, failedAt: null, last: '' });
    const st = `${pc.connectionState}/${pc.iceConnectionState}`;
    if (st !== rec.last) {
      rec.last = st;
      log(`ICE with ${id}: connection ${pc.connectionState}, ice ${pc.iceConnectionState}`);
    }
    if (rec.connectedAt === null && pc.connectionState === 'connected') rec.connectedAt = now();
    if (rec.failedAt === null && (pc.connectionState === 'failed' || pc.iceConnectionState === 'failed')) rec.failedAt = now();
  }
}

function startWarmup() {
  if (S.t0 !== null) return;
  S.t0 = now();
  log('session has both players: warm-up frames start');
  let idx = 0;
  S.warmTimer = setInterval(() => {
    const c = S.client;
    if (!c || S.burst.started) return;
    if (c.send(0, makeFrame(KIND_WARM, idx++, c.peerId))) S.warm.sent++;
    else S.warm.sendFalse++;
  }, 20);
}

window.nat = {
  ready: true,
  libraryFeatures() {
    return {
      transportChoices: fsp.TRANSPORT_CHOICES ? [...fsp.TRANSPORT_CHOICES] : null,
      webSocketSignal: typeof fsp.WebSocketSignal === 'function',
    };
  },

  /**
   * Connect and create (code omitted) or join a session.
   * @param {{host: string, port: number, certHash: string, wsUrl: string, name: string, code?: string,
   *          transport?: string, directTimeoutMs?: number}} o
   */
  async start(o) {
    // datagramMaxAgeMs: the default (100 ms) lets Chromium drop relay datagrams that
    // wait longer in its queues; right for flight state, but this test counts every
    // frame on a shared 2-core machine, so it lets them live 5 s.
    const opts = { host: o.host, port: o.port, certHash: o.certHash, name: o.name, datagramMaxAgeMs: 5000 };
    if (o.wsUrl) opts.wsUrl = o.wsUrl;
    if (o.transport) opts.transport = o.transport;
    if (o.directTimeoutMs) opts.directTimeoutMs = o.directTimeoutMs;
    const c = new fsp.FlightSimP2P(opts);
    S.client = c;
    S.name = o.name;
    c.onmessage = onMessage;
    c.addEventListener('transport', (e) => {
      S.transport = e.detail.kind;
      S.fallbackReason = e.detail.fallbackReason || '';
      log(`transport ${e.detail.kind} ${e.detail.url}${S.fallbackReason ? ` (${S.fallbackReason})` : ''}`);
    });
    c.addEventListener('pathchange', (e) => {
      S.pathLog.push({ t: now(), peer: e.detail.peer, path: e.detail.path, previous: e.detail.previous });
      log(`path to ${e.detail.peer}: ${e.detail.previous} -> ${e.detail.path}`);
    });
    c.addEventListener('peerjoined', (e) => {
      log(`peer joined: ${e.detail.peer && e.detail.peer.id}`);
      startWarmup();
    });
    c.addEventListener('error', (e) => {
      S.errors.push(`${e.detail.name}: ${e.detail.message}`);
      log(`error ${e.detail.name}: ${e.detail.message}`);
    });
    c.addEventListener('close', (e) => log(`close ${e.detail.code} ${e.detail.reason}`));
    // Watch the library's RTCPeerConnections (read-only): when ICE connected or failed.
    S.icePoll = setInterval(pollIce, 50);
    S.tConnectStart = now();
    c.connect().catch(() => {});
    const info = o.code ? await c.joinSession(o.code) : await c.createSession({ maxPeers: 4 });
    S.tJoined = now();
    if (!S.transport) S.transport = c.transport || null;
    log(`${o.code ? 'joined' : 'created'} session ${info.code} as peer ${c.peerId} over ${S.transport}`);
    if (c.links.size > 0) startWarmup();
    return { code: info.code, peerId: c.peerId, transport: S.transport, joinMs: S.tJoined - S.tConnectStart };
  },

  state() {
    pollIce();
    const c = S.client;
    const b = S.burst;
    const w = S.warm;
    const rel = (t) => (t === null || t === undefined || S.t0 === null ? null : Math.round(t - S.t0));
    const firstByPath = {};
    for (const [k, v] of Object.entries(w.firstByPath)) firstByPath[k] = rel(v);
    return {
      name: S.name,
      peerId: c ? c.peerId : 0,
      state: c ? c.state : 'none',
      transport: c ? c.transport || S.transport : S.transport,
      fallbackReason: c ? c.fallbackReason || S.fallbackReason : S.fallbackReason,
      peers: c ? c.getPeers() : [],
      stats: c ? { ...c.stats } : null,
      errors: S.errors.slice(),
      pathLog: S.pathLog.map((p) => ({ ...p, t: rel(p.t) })),
      ice: Object.fromEntries(Object.entries(S.ice).map(([k, v]) => [k, { connected: rel(v.connectedAt), failed: rel(v.failedAt), last: v.last }])),
      warm: { sent: w.sent, sendFalse: w.sendFalse, rx: w.rx, first: rel(w.firstAt), firstPath: w.firstPath, firstByPath },
      burst: {
        started: b.started, sent: b.sent, sendFalse: b.sendFalse, doneSending: b.doneSending, sendMs: b.sendMs,
        rx: b.rx.size, intact: b.intact, corrupt: b.corrupt, dup: b.dup, paths: { ...b.paths },
      },
      log: S.log.slice(-60),
    };
  },

  /** Indices of burst frames not received, given how many the peer sent. */
  missing(n) {
    const out = [];
    for (let i = 0; i < n; i++) if (!S.burst.rx.has(i)) out.push(i);
    return out;
  },

  /** ICE candidate pairs of the connection to every peer (from getStats). */
  async pairs() {
    pollIce();
    const c = S.client;
    const out = [];
    if (!c) return out;
    for (const [id, l] of c.links) {
      const pc = l.pc;
      const r = {
        peer: id, path: l.path, candidatePair: l.candidatePair,
        connectionState: pc ? pc.connectionState : 'none',
        iceConnectionState: pc ? pc.iceConnectionState : 'none',
        selected: null, succeeded: [], byState: {}, localTypes: {}, remoteTypes: {},
      };
      if (pc) {
        const st = await pc.getStats();
        let selId = null;
        st.forEach((s) => {
          if (s.type === 'transport' && s.selectedCandidatePairId) selId = s.selectedCandidatePairId;
          if (s.type === 'local-candidate') r.localTypes[s.candidateType] = (r.localTypes[s.candidateType] || 0) + 1;
          if (s.type === 'remote-candidate') r.remoteTypes[s.candidateType] = (r.remoteTypes[s.candidateType] || 0) + 1;
        });
        const desc = (p) => {
          const lc = st.get(p.localCandidateId);
          const rc = st.get(p.remoteCandidateId);
          return `${lc ? lc.candidateType : '?'} ${lc ? lc.address : '?'}:${lc ? lc.port : '?'} <-> ${rc ? rc.candidateType : '?'} ${rc ? rc.address : '?'}:${rc ? rc.port : '?'}`;
        };
        st.forEach((s) => {
          if (s.type !== 'candidate-pair') return;
          r.byState[s.state] = (r.byState[s.state] || 0) + 1;
          if (s.state === 'succeeded') r.succeeded.push(desc(s));
          if (s.id === selId) r.selected = desc(s);
        });
      }
      out.push(r);
    }
    return out;
  },

  /** Stop the warm-up and send `n` burst frames to every peer, one every `intervalMs`. */
  async burst(n, intervalMs) {
    const c = S.client;
    const b = S.burst;
    b.started = true;
    clearInterval(S.warmTimer);
    await sleep(100); // let warm-up frames in flight land first (they would not count anyway)
    const t0 = now();
    let due = t0;
    for (let i = 0; i < n; i++) {
      const wait = due - now();
      if (wait > 0) await sleep(wait);
      // The next frame is due an interval after this one went, not on a fixed grid: after
      // a stall the page does not catch up with a burst of overdue frames (a burst like
      // that can exceed coturn's per-allocation bandwidth cap and lose frames to it).
      due = now() + intervalMs;
      if (c.send(0, makeFrame(KIND_BURST, i, c.peerId))) b.sent++;
      else b.sendFalse++;
    }
    b.doneSending = true;
    b.sendMs = Math.round(now() - t0);
    log(`burst sent: ${b.sent} (send() false: ${b.sendFalse}) in ${b.sendMs} ms`);
    return { sent: b.sent, sendFalse: b.sendFalse, sendMs: b.sendMs };
  },

  async stop() {
    clearInterval(S.warmTimer);
    clearInterval(S.icePoll);
    if (S.client) await S.client.disconnect('test done', 500).catch(() => {});
  },
};
