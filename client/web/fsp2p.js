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

// ---------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------

/** Protocol version carried in Hello. */
export const PROTOCOL_VERSION = 1;
/** Control frame limit a client may assume before the Welcome (PROTOCOL.md §3). */
export const DEFAULT_MAX_FRAME_BYTES = 16384;
/** Relay payload limit a client may assume before the Welcome (PROTOCOL.md §7). */
export const DEFAULT_MAX_RELAY_PAYLOAD = 1100;
/** Peer id meaning "every other peer in my session" in Signal.to and relay headers. */
export const ALL_PEERS = 0;
/** WebTransport path of the signaling endpoint. */
export const WEBTRANSPORT_PATH = '/signal';
/** Longest display name, in UTF-8 bytes. */
export const MAX_NAME_BYTES = 64;
/** Label of the flight-data DataChannel. */
export const DATA_CHANNEL_LABEL = 'flight';

/** @typedef {'Rust'|'DotNet'|'Browser'|'Other'} ClientKind */
/** @typedef {'Datagram'|'Stream'} RelayMode */
/** @typedef {'Left'|'TimedOut'|'SessionExpired'|'ServerShutdown'} LeaveReason */
/** @typedef {'connecting'|'direct'|'turn'|'relay'} PeerPath */
/** @typedef {'Session'|'Draining'|'Moved'|'Placement'} RedirectReason */
/**
 * A cluster node's addresses (PROTOCOL.md §11): `quic` "host:port" ('' if none), `http` base URL ('' if none),
 * `certSha256` the 32-byte hash to pin, or null for a CA-signed certificate.
 * @typedef {{name: string, quic: string, http: string, certSha256: Uint8Array|null}} NodeAddr
 */

/** Variant names in declaration order: the index is the tag on the wire. */
export const CLIENT_KINDS = Object.freeze(/** @type {ClientKind[]} */ (['Rust', 'DotNet', 'Browser', 'Other']));
export const RELAY_MODES = Object.freeze(/** @type {RelayMode[]} */ (['Datagram', 'Stream']));
export const LEAVE_REASONS = Object.freeze(
  /** @type {LeaveReason[]} */ (['Left', 'TimedOut', 'SessionExpired', 'ServerShutdown']),
);
const CLIENT_MSG_TYPES = ['Hello', 'CreateSession', 'JoinSession', 'Signal', 'LeaveSession', 'Ping'];
const SERVER_MSG_TYPES = [
  'Welcome', 'SessionCreated', 'SessionJoined', 'PeerJoined', 'PeerLeft', 'HostChanged',
  'Signal', 'Error', 'Pong', 'SessionLeft', 'PeerStatus', 'GoingAway', 'Redirect',
];
/** Why a cluster node sends a client elsewhere (PROTOCOL.md §11). */
export const REDIRECT_REASONS = Object.freeze(
  /** @type {RedirectReason[]} */ (['Session', 'Draining', 'Moved', 'Placement']),
);
const SIGNAL_TYPES = ['Offer', 'Answer', 'IceCandidate', 'EndOfCandidates', 'App'];

/** Error codes of PROTOCOL.md §6: code → [name, fatal]. */
export const ERROR_CODES = Object.freeze({
  1: ['bad_message', true],
  2: ['frame_too_large', true],
  3: ['unsupported_version', true],
  4: ['protocol_violation', true],
  5: ['rate_limited', false],
  6: ['server_full', true],
  7: ['shutting_down', true],
  8: ['internal', false],
  9: ['invalid_argument', false],
  10: ['unknown_session', false],
  11: ['session_full', false],
  12: ['wrong_password', false],
  13: ['already_in_session', false],
  14: ['not_in_session', false],
  15: ['unknown_peer', false],
  16: ['too_many_sessions', false],
  17: ['too_many_join_attempts', false], // fatal only when a close follows (this connection failed too often)
  18: ['resume_failed', false],
  19: ['hello_timeout', true],
  20: ['replaced', true],
  21: ['slow_consumer', true],
  22: ['cluster_unavailable', false], // cluster mode: the directory is out of reach; retry later
});

/** Name of a server error code ("unknown_session"), or "error_<n>" for a code this client does not know. */
export function errorName(code) {
  const e = ERROR_CODES[code];
  return e ? e[0] : `error_${code}`;
}

/**
 * An error from the server (code 1..21, PROTOCOL.md §6) or from this client
 * (code 0; `name` says what: connect_failed, timeout, closed, decode_failed, ...).
 */
export class FspError extends Error {
  /**
   * @param {number} code server error code, 0 for client-side errors
   * @param {string} codeName snake_case name
   * @param {string} message readable English
   * @param {{fatal?: boolean, cause?: unknown}} [opts]
   */
  constructor(code, codeName, message, opts = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'FspError';
    /** @type {number} */
    this.code = code;
    /** @type {string} */
    this.codeName = codeName;
    /** @type {boolean} */
    this.fatal = !!opts.fatal;
  }

  /** Build from a server `Error { code, message }`. */
  static fromServer(code, message) {
    const e = ERROR_CODES[code];
    const name = errorName(code);
    return new FspError(code, name, `${name} (${code}): ${message}`, { fatal: e ? e[1] : false });
  }
}

/** Thrown by the decoders for malformed bytes. */
export class DecodeError extends Error {
  constructor(message) {
    super(message);
    this.name = 'DecodeError';
  }
}

// ---------------------------------------------------------------------------
// postcard: writer and reader
// ---------------------------------------------------------------------------

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;
const U64_MAX = (1n << 64n) - 1n;

function checkUint(v, max, what) {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw new RangeError(`${what} must be an integer in 0..=${max}, got ${String(v)}`);
  }
  return v;
}

function toU64(v, what) {
  let b;
  if (typeof v === 'bigint') b = v;
  else if (typeof v === 'number' && Number.isSafeInteger(v)) b = BigInt(v);
  else throw new RangeError(`${what} must be a BigInt or a safe integer, got ${String(v)}`);
  if (b < 0n || b > U64_MAX) throw new RangeError(`${what} out of u64 range: ${b}`);
  return b;
}

/** Growable byte buffer with postcard primitives. */
export class Writer {
  constructor(capacity = 64) {
    this.buf = new Uint8Array(capacity);
    this.len = 0;
  }

  _reserve(n) {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  u8(v) {
    checkUint(v, 0xff, 'u8');
    this._reserve(1);
    this.buf[this.len++] = v;
    return this;
  }

  /** Unsigned LEB128 of a number in 0..=2^32-1 (u16 / u32 / enum tags / lengths). */
  varint(v) {
    checkUint(v, U32_MAX, 'varint');
    this._reserve(5);
    while (v >= 0x80) {
      this.buf[this.len++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.len++] = v;
    return this;
  }

  u16(v) {
    return this.varint(checkUint(v, U16_MAX, 'u16'));
  }

  u32(v) {
    return this.varint(checkUint(v, U32_MAX, 'u32'));
  }

  /** @param {bigint|number} v */
  u64(v) {
    let b = toU64(v, 'u64');
    this._reserve(10);
    while (b >= 0x80n) {
      this.buf[this.len++] = Number(b & 0x7fn) | 0x80;
      b >>= 7n;
    }
    this.buf[this.len++] = Number(b);
    return this;
  }

  bool(v) {
    if (typeof v !== 'boolean') throw new TypeError(`bool expected, got ${typeof v}`);
    return this.u8(v ? 1 : 0);
  }

  raw(bytes) {
    this._reserve(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
    return this;
  }

  /** @param {Uint8Array} bytes */
  bytes(bytes) {
    if (!(bytes instanceof Uint8Array)) throw new TypeError('Uint8Array expected');
    return this.varint(bytes.length).raw(bytes);
  }

  /** @param {string} s */
  string(s) {
    if (typeof s !== 'string') throw new TypeError(`string expected, got ${typeof s}`);
    return this.bytes(utf8Encoder.encode(s));
  }

  /**
   * @template T
   * @param {T|null|undefined} v
   * @param {(w: Writer, v: T) => void} write
   */
  option(v, write) {
    if (v === null || v === undefined) return this.u8(0);
    this.u8(1);
    write(this, v);
    return this;
  }

  /**
   * @param {readonly string[]} names
   * @param {string} v
   * @param {string} what
   */
  enumTag(names, v, what) {
    const i = names.indexOf(v);
    if (i < 0) throw new RangeError(`unknown ${what}: ${String(v)}`);
    return this.varint(i);
  }

  /** @returns {Uint8Array} a copy of the written bytes */
  finish() {
    return this.buf.slice(0, this.len);
  }
}

/** Strict postcard reader over one message body. */
export class Reader {
  /** @param {Uint8Array} bytes */
  constructor(bytes) {
    this.b = bytes;
    this.p = 0;
  }

  get remaining() {
    return this.b.length - this.p;
  }

  u8() {
    if (this.p >= this.b.length) throw new DecodeError(`unexpected end of message at byte ${this.p}`);
    return this.b[this.p++];
  }

  /**
   * postcard's varint rules: at most `maxBytes` bytes, and the last allowed byte
   * may only carry the bits that still fit the type.
   */
  _varint(maxBytes, lastMax, what) {
    let out = 0;
    let scale = 1;
    for (let i = 0; i < maxBytes; i++) {
      const byte = this.u8();
      out += (byte & 0x7f) * scale;
      scale *= 0x80;
      if ((byte & 0x80) === 0) {
        if (i === maxBytes - 1 && byte > lastMax) throw new DecodeError(`${what} varint overflows`);
        return out;
      }
    }
    throw new DecodeError(`${what} varint longer than ${maxBytes} bytes`);
  }

  u16() {
    return this._varint(3, 0x03, 'u16');
  }

  u32() {
    return this._varint(5, 0x0f, 'u32');
  }

  /** @returns {bigint} */
  u64() {
    let out = 0n;
    for (let i = 0; i < 10; i++) {
      const byte = this.u8();
      out |= BigInt(byte & 0x7f) << BigInt(7 * i);
      if ((byte & 0x80) === 0) {
        if (i === 9 && byte > 0x01) throw new DecodeError('u64 varint overflows');
        return out;
      }
    }
    throw new DecodeError('u64 varint longer than 10 bytes');
  }

  /** A length or count (postcard's usize, a u64 varint on 64-bit), checked against what is left. */
  length(what = 'length') {
    const n = this.u64();
    if (n > BigInt(this.remaining)) {
      throw new DecodeError(`${what} ${n} runs past the end of the message (${this.remaining} bytes left)`);
    }
    return Number(n);
  }

  bool() {
    const v = this.u8();
    if (v > 1) throw new DecodeError(`bool must be 0 or 1, got ${v}`);
    return v === 1;
  }

  bytes() {
    const n = this.length('byte array length');
    const out = this.b.slice(this.p, this.p + n);
    this.p += n;
    return out;
  }

  string() {
    const n = this.length('string length');
    const view = this.b.subarray(this.p, this.p + n);
    this.p += n;
    try {
      return utf8Decoder.decode(view);
    } catch {
      throw new DecodeError('string is not valid UTF-8');
    }
  }

  /**
   * @template T
   * @param {(r: Reader) => T} read
   * @returns {T|null}
   */
  option(read) {
    const tag = this.u8();
    if (tag === 0) return null;
    if (tag === 1) return read(this);
    throw new DecodeError(`Option tag must be 0 or 1, got ${tag}`);
  }

  /**
   * @template T
   * @param {(r: Reader) => T} read
   * @returns {T[]}
   */
  vec(read) {
    // Every element of our types takes at least one byte, so the count is bounded by what is left.
    const n = this.length('sequence count');
    const out = [];
    for (let i = 0; i < n; i++) out.push(read(this));
    return out;
  }

  /**
   * @param {readonly string[]} names
   * @param {string} what
   */
  enumTag(names, what) {
    const i = this.u32();
    if (i >= names.length) throw new DecodeError(`unknown ${what} variant ${i}`);
    return names[i];
  }

  end() {
    if (this.p !== this.b.length) {
      throw new DecodeError(`${this.b.length - this.p} trailing bytes after the message`);
    }
  }
}

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

/**
 * @typedef {{type: 'Offer', sdp: string}
 *   | {type: 'Answer', sdp: string}
 *   | {type: 'IceCandidate', candidate: string, sdpMid: string|null, sdpMLineIndex: number|null}
 *   | {type: 'EndOfCandidates'}
 *   | {type: 'App', data: Uint8Array}} Signal
 */

/**
 * @typedef {{type: 'Hello', version: number, client: ClientKind, relayMode: RelayMode, name: string, resumeToken: Uint8Array|null}
 *   | {type: 'CreateSession', maxPeers: number, password: string|null}
 *   | {type: 'JoinSession', code: string, password: string|null}
 *   | {type: 'Signal', to: number, signal: Signal}
 *   | {type: 'LeaveSession'}
 *   | {type: 'Ping', clientTimeMs: bigint}} ClientMsg
 */

/** @typedef {{urls: string[], username: string|null, credential: string|null}} IceServer */
/**
 * @typedef {{maxFrameBytes: number, maxRelayPayload: number, relayDatagramsPerSec: number,
 *   relayBytesPerSec: number, signalsPerSec: number, maxPeersPerSession: number, resumeGraceMs: number}} Limits
 */
/** @typedef {{id: number, name: string, client: ClientKind}} PeerInfo */
/** @typedef {{code: string, host: number, maxPeers: number, idleTtlSecs: number, peers: PeerInfo[]}} SessionInfo */
/**
 * @typedef {{type: 'Welcome', version: number, peerId: number, resumeToken: Uint8Array, resumed: boolean,
 *   iceServers: IceServer[], limits: Limits, serverTimeMs: bigint}} WelcomeMsg
 */
/**
 * @typedef {WelcomeMsg
 *   | {type: 'SessionCreated', session: SessionInfo}
 *   | {type: 'SessionJoined', session: SessionInfo}
 *   | {type: 'PeerJoined', peer: PeerInfo}
 *   | {type: 'PeerLeft', peer: number, reason: LeaveReason}
 *   | {type: 'HostChanged', host: number}
 *   | {type: 'Signal', from: number, signal: Signal}
 *   | {type: 'Error', code: number, message: string}
 *   | {type: 'Pong', clientTimeMs: bigint, serverTimeMs: bigint}
 *   | {type: 'SessionLeft', reason: LeaveReason}
 *   | {type: 'PeerStatus', peer: number, online: boolean}
 *   | {type: 'GoingAway', reconnectAfterMs: number, message: string}
 *   | {type: 'Redirect', reason: RedirectReason, node: NodeAddr}} ServerMsg
 */

const LIMIT_FIELDS = [
  'maxFrameBytes', 'maxRelayPayload', 'relayDatagramsPerSec', 'relayBytesPerSec',
  'signalsPerSec', 'maxPeersPerSession', 'resumeGraceMs',
];

/** @param {Writer} w @param {Signal} s */
function writeSignal(w, s) {
  w.enumTag(SIGNAL_TYPES, s.type, 'Signal');
  switch (s.type) {
    case 'Offer':
    case 'Answer':
      w.string(s.sdp);
      break;
    case 'IceCandidate':
      w.string(s.candidate);
      w.option(s.sdpMid, (w, v) => w.string(v));
      w.option(s.sdpMLineIndex, (w, v) => w.u16(v));
      break;
    case 'EndOfCandidates':
      break;
    case 'App':
      w.bytes(s.data);
      break;
  }
}

/** @param {Reader} r @returns {Signal} */
function readSignal(r) {
  const type = r.enumTag(SIGNAL_TYPES, 'Signal');
  switch (type) {
    case 'Offer':
    case 'Answer':
      return { type, sdp: r.string() };
    case 'IceCandidate': {
      const candidate = r.string();
      const sdpMid = r.option((r) => r.string());
      const sdpMLineIndex = r.option((r) => r.u16());
      return { type, candidate, sdpMid, sdpMLineIndex };
    }
    case 'EndOfCandidates':
      return { type };
    default:
      return { type: 'App', data: r.bytes() };
  }
}

/** @param {Writer} w @param {PeerInfo} p */
function writePeerInfo(w, p) {
  w.u32(p.id).string(p.name).enumTag(CLIENT_KINDS, p.client, 'ClientKind');
}

/** @param {Reader} r @returns {PeerInfo} */
function readPeerInfo(r) {
  return { id: r.u32(), name: r.string(), client: /** @type {ClientKind} */ (r.enumTag(CLIENT_KINDS, 'ClientKind')) };
}

/** @param {Writer} w @param {SessionInfo} s */
function writeSessionInfo(w, s) {
  w.string(s.code).u32(s.host).u32(s.maxPeers).u32(s.idleTtlSecs);
  w.varint(s.peers.length);
  for (const p of s.peers) writePeerInfo(w, p);
}

/** @param {Reader} r @returns {SessionInfo} */
function readSessionInfo(r) {
  return {
    code: r.string(),
    host: r.u32(),
    maxPeers: r.u32(),
    idleTtlSecs: r.u32(),
    peers: r.vec(readPeerInfo),
  };
}

/**
 * Encode a client message body (no length prefix).
 * @param {ClientMsg} m
 * @returns {Uint8Array}
 */
export function encodeClientMsg(m) {
  const w = new Writer();
  w.enumTag(CLIENT_MSG_TYPES, m.type, 'ClientMsg');
  switch (m.type) {
    case 'Hello':
      w.u16(m.version).enumTag(CLIENT_KINDS, m.client, 'ClientKind').enumTag(RELAY_MODES, m.relayMode, 'RelayMode');
      w.string(m.name).option(m.resumeToken, (w, v) => w.bytes(v));
      break;
    case 'CreateSession':
      w.u32(m.maxPeers).option(m.password, (w, v) => w.string(v));
      break;
    case 'JoinSession':
      w.string(m.code).option(m.password, (w, v) => w.string(v));
      break;
    case 'Signal':
      w.u32(m.to);
      writeSignal(w, m.signal);
      break;
    case 'LeaveSession':
      break;
    case 'Ping':
      w.u64(m.clientTimeMs);
      break;
  }
  return w.finish();
}

/**
 * Decode exactly one client message body; throws DecodeError on anything the Rust side would refuse.
 * @param {Uint8Array} bytes
 * @returns {ClientMsg}
 */
export function decodeClientMsg(bytes) {
  const r = new Reader(bytes);
  const type = r.enumTag(CLIENT_MSG_TYPES, 'ClientMsg');
  /** @type {ClientMsg} */
  let m;
  switch (type) {
    case 'Hello': {
      const version = r.u16();
      const client = /** @type {ClientKind} */ (r.enumTag(CLIENT_KINDS, 'ClientKind'));
      const relayMode = /** @type {RelayMode} */ (r.enumTag(RELAY_MODES, 'RelayMode'));
      const name = r.string();
      const resumeToken = r.option((r) => r.bytes());
      m = { type, version, client, relayMode, name, resumeToken };
      break;
    }
    case 'CreateSession':
      m = { type, maxPeers: r.u32(), password: r.option((r) => r.string()) };
      break;
    case 'JoinSession':
      m = { type, code: r.string(), password: r.option((r) => r.string()) };
      break;
    case 'Signal':
      m = { type, to: r.u32(), signal: readSignal(r) };
      break;
    case 'LeaveSession':
      m = { type };
      break;
    default:
      m = { type: 'Ping', clientTimeMs: r.u64() };
  }
  r.end();
  return m;
}

/**
 * Encode a server message body (used by tests and tools; the server is in Rust).
 * @param {ServerMsg} m
 * @returns {Uint8Array}
 */
export function encodeServerMsg(m) {
  const w = new Writer();
  w.enumTag(SERVER_MSG_TYPES, m.type, 'ServerMsg');
  switch (m.type) {
    case 'Welcome':
      w.u16(m.version).u32(m.peerId).bytes(m.resumeToken).bool(m.resumed);
      w.varint(m.iceServers.length);
      for (const s of m.iceServers) {
        w.varint(s.urls.length);
        for (const u of s.urls) w.string(u);
        w.option(s.username, (w, v) => w.string(v));
        w.option(s.credential, (w, v) => w.string(v));
      }
      for (const f of LIMIT_FIELDS) w.u32(m.limits[f]);
      w.u64(m.serverTimeMs);
      break;
    case 'SessionCreated':
    case 'SessionJoined':
      writeSessionInfo(w, m.session);
      break;
    case 'PeerJoined':
      writePeerInfo(w, m.peer);
      break;
    case 'PeerLeft':
      w.u32(m.peer).enumTag(LEAVE_REASONS, m.reason, 'LeaveReason');
      break;
    case 'HostChanged':
      w.u32(m.host);
      break;
    case 'Signal':
      w.u32(m.from);
      writeSignal(w, m.signal);
      break;
    case 'Error':
      w.u16(m.code).string(m.message);
      break;
    case 'Pong':
      w.u64(m.clientTimeMs).u64(m.serverTimeMs);
      break;
    case 'SessionLeft':
      w.enumTag(LEAVE_REASONS, m.reason, 'LeaveReason');
      break;
    case 'PeerStatus':
      w.u32(m.peer).bool(m.online);
      break;
    case 'GoingAway':
      w.u32(m.reconnectAfterMs).string(m.message);
      break;
    case 'Redirect':
      w.enumTag(REDIRECT_REASONS, m.reason, 'RedirectReason');
      w.string(m.node.name).string(m.node.quic).string(m.node.http);
      w.option(m.node.certSha256, (w, v) => w.bytes(v));
      break;
  }
  return w.finish();
}

/**
 * Decode exactly one server message body; throws DecodeError on malformed bytes.
 * @param {Uint8Array} bytes
 * @returns {ServerMsg}
 */
export function decodeServerMsg(bytes) {
  const r = new Reader(bytes);
  const type = r.enumTag(SERVER_MSG_TYPES, 'ServerMsg');
  /** @type {ServerMsg} */
  let m;
  switch (type) {
    case 'Welcome': {
      const version = r.u16();
      const peerId = r.u32();
      const resumeToken = r.bytes();
      const resumed = r.bool();
      const iceServers = r.vec((r) => ({
        urls: r.vec((r) => r.string()),
        username: r.option((r) => r.string()),
        credential: r.option((r) => r.string()),
      }));
      /** @type {Limits} */
      const limits = /** @type {any} */ ({});
      for (const f of LIMIT_FIELDS) limits[f] = r.u32();
      m = { type, version, peerId, resumeToken, resumed, iceServers, limits, serverTimeMs: r.u64() };
      break;
    }
    case 'SessionCreated':
    case 'SessionJoined':
      m = { type, session: readSessionInfo(r) };
      break;
    case 'PeerJoined':
      m = { type, peer: readPeerInfo(r) };
      break;
    case 'PeerLeft':
      m = { type, peer: r.u32(), reason: /** @type {LeaveReason} */ (r.enumTag(LEAVE_REASONS, 'LeaveReason')) };
      break;
    case 'HostChanged':
      m = { type, host: r.u32() };
      break;
    case 'Signal':
      m = { type, from: r.u32(), signal: readSignal(r) };
      break;
    case 'Error':
      m = { type, code: r.u16(), message: r.string() };
      break;
    case 'Pong':
      m = { type, clientTimeMs: r.u64(), serverTimeMs: r.u64() };
      break;
    case 'SessionLeft':
      m = { type, reason: /** @type {LeaveReason} */ (r.enumTag(LEAVE_REASONS, 'LeaveReason')) };
      break;
    case 'PeerStatus':
      m = { type, peer: r.u32(), online: r.bool() };
      break;
    case 'GoingAway':
      m = { type, reconnectAfterMs: r.u32(), message: r.string() };
      break;
    default: {
      const reason = /** @type {RedirectReason} */ (r.enumTag(REDIRECT_REASONS, 'RedirectReason'));
      const node = { name: r.string(), quic: r.string(), http: r.string(), certSha256: r.option((r) => r.bytes()) };
      m = { type: 'Redirect', reason, node };
    }
  }
  r.end();
  return m;
}

// ---------------------------------------------------------------------------
// Framing and relay headers
// ---------------------------------------------------------------------------

/**
 * Read a u32 varint (at most 5 bytes, value ≤ 2^32-1) at `offset`.
 * @returns {{value: number, used: number}|null} null when the bytes end before the varint does
 */
export function takeVarint(bytes, offset = 0) {
  let value = 0;
  let scale = 1;
  for (let i = 0; offset + i < bytes.length; i++) {
    if (i >= 5) throw new DecodeError('varint longer than 5 bytes');
    const b = bytes[offset + i];
    value += (b & 0x7f) * scale;
    scale *= 0x80;
    if ((b & 0x80) === 0) {
      if (value > U32_MAX) throw new DecodeError('varint above u32::MAX');
      return { value, used: i + 1 };
    }
  }
  if (bytes.length - offset >= 5) throw new DecodeError('varint longer than 5 bytes');
  return null;
}

/** varint(len) || body. */
export function encodeFrame(body) {
  return new Writer(body.length + 5).varint(body.length).raw(body).finish();
}

/**
 * Incremental splitter for the control stream: push chunks as they arrive and
 * get whole frame bodies back. The declared length is checked against the
 * limit before the body is buffered.
 */
export class FrameReader {
  constructor(maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {
    this.maxFrameBytes = maxFrameBytes;
    this.buf = new Uint8Array(0);
  }

  get buffered() {
    return this.buf.length;
  }

  /**
   * @param {Uint8Array} chunk
   * @returns {Uint8Array[]} whole frame bodies completed by this chunk (possibly none)
   */
  push(chunk) {
    if (chunk.length) {
      if (this.buf.length === 0) {
        this.buf = chunk.slice();
      } else {
        const next = new Uint8Array(this.buf.length + chunk.length);
        next.set(this.buf);
        next.set(chunk, this.buf.length);
        this.buf = next;
      }
    }
    const out = [];
    let at = 0;
    for (;;) {
      const v = takeVarint(this.buf, at);
      if (!v) break;
      if (v.value > this.maxFrameBytes) {
        throw new DecodeError(`frame of ${v.value} bytes exceeds the limit of ${this.maxFrameBytes} bytes`);
      }
      if (this.buf.length - at - v.used < v.value) break;
      const start = at + v.used;
      out.push(this.buf.slice(start, start + v.value));
      at = start + v.value;
    }
    if (at > 0) this.buf = this.buf.slice(at);
    return out;
  }
}

/**
 * Relay frame `varint(peer) || payload`.
 * @param {number} peer destination (client → server; 0 = all) or sender (server → client)
 * @param {Uint8Array} payload
 */
export function encodeRelay(peer, payload) {
  return new Writer(payload.length + 5).u32(peer).raw(payload).finish();
}

/**
 * Split a relay frame. The payload is a view into `frame`.
 * @param {Uint8Array} frame
 * @returns {{peer: number, payload: Uint8Array}}
 */
export function decodeRelay(frame) {
  const v = takeVarint(frame, 0);
  if (!v) throw new DecodeError(frame.length ? 'relay header truncated' : 'relay frame has no header');
  return { peer: v.value, payload: frame.subarray(v.used) };
}

// ---------------------------------------------------------------------------
// Flight-data envelope (PROTOCOL.md §5, "client convention")
// ---------------------------------------------------------------------------

/** Bytes of the flight-data envelope: a u32 little-endian sequence number before the application bytes. */
export const FLIGHT_HEADER_BYTES = 4;

/**
 * `u32le(seq) || payload`: one flight-data message as it goes on the wire, on every
 * path (DataChannel message, or relay payload). Same bytes as the C# client's
 * `SnapshotEnvelope.Wrap`.
 * @param {number} seq 0..=2^32-1
 * @param {Uint8Array} payload application bytes
 * @returns {Uint8Array}
 */
export function wrapFlight(seq, payload) {
  checkUint(seq, U32_MAX, 'sequence number');
  if (!(payload instanceof Uint8Array)) throw new TypeError('Uint8Array expected');
  const out = new Uint8Array(FLIGHT_HEADER_BYTES + payload.length);
  out[0] = seq & 0xff;
  out[1] = (seq >>> 8) & 0xff;
  out[2] = (seq >>> 16) & 0xff;
  out[3] = (seq >>> 24) & 0xff;
  out.set(payload, FLIGHT_HEADER_BYTES);
  return out;
}

/**
 * Split an enveloped flight-data message.
 * @param {Uint8Array} frame
 * @returns {{seq: number, payload: Uint8Array}|null} null when shorter than the header; the payload is a view into `frame`
 */
export function unwrapFlight(frame) {
  if (frame.length < FLIGHT_HEADER_BYTES) return null;
  const seq = (frame[0] | (frame[1] << 8) | (frame[2] << 16) | (frame[3] << 24)) >>> 0;
  return { seq, payload: frame.subarray(FLIGHT_HEADER_BYTES) };
}

/** The sequence number after `seq`: 2^32-1 wraps to 0, as a C# `uint` does. */
export function nextSeq(seq) {
  return (seq + 1) >>> 0;
}

/**
 * Serial-number order (RFC 1982): true when `seq` comes after `last`,
 * i.e. `(int32)(seq - last) > 0`. Both are u32 values.
 */
export function seqNewer(seq, last) {
  return ((seq - last) | 0) > 0;
}

/**
 * The receiver's side of the envelope: per sending peer, the last sequence number
 * accepted; a frame that is not newer (late, duplicate, overtaken on the relay,
 * still in flight on the old path after a relay → direct switch) is dropped, so it
 * never overwrites newer state. The first frame from a peer is always accepted.
 */
export class SeqFilter {
  constructor() {
    /** @type {Map<number, number>} peer id → last accepted sequence number */
    this.last = new Map();
    /** frames refused so far */
    this.dropped = 0;
  }

  /** True if `seq` from `peer` is newer than anything accepted from it (and records it). */
  accept(peer, seq) {
    const last = this.last.get(peer);
    if (last !== undefined && !seqNewer(seq, last)) {
      this.dropped++;
      return false;
    }
    this.last.set(peer, seq);
    return true;
  }

  /** Forget a peer: its next frame is accepted whatever its number (it joined, left, or restarted). */
  reset(peer) {
    this.last.delete(peer);
  }

  /** Forget every peer not in `keep`. @param {Iterable<number>} keep */
  retain(keep) {
    const k = new Set(keep);
    for (const p of [...this.last.keys()]) if (!k.has(p)) this.last.delete(p);
  }

  clear() {
    this.last.clear();
  }
}

// ---------------------------------------------------------------------------
// WebSocket messages (PROTOCOL.md §10)
// ---------------------------------------------------------------------------

/** First byte of a WebSocket message carrying one control message body (no length prefix). */
export const WS_CONTROL = 0x00;
/** First byte of a WebSocket message carrying one relay frame. */
export const WS_RELAY = 0x01;
/** Path of the WebSocket endpoint on the server's HTTP port. */
export const WEBSOCKET_PATH = '/ws';

function typed(type, bytes) {
  const out = new Uint8Array(bytes.length + 1);
  out[0] = type;
  out.set(bytes, 1);
  return out;
}

/** `0x00 || postcard body`: one control message as one WebSocket message. @param {Uint8Array} body */
export function encodeWsControl(body) {
  return typed(WS_CONTROL, body);
}

/** `0x01 || varint(peer) || payload`: one relay frame as one WebSocket message. @param {Uint8Array} frame */
export function encodeWsRelay(frame) {
  return typed(WS_RELAY, frame);
}

/**
 * Split one binary WebSocket message by its type byte. Views into `msg`.
 * @param {Uint8Array} msg
 * @returns {{type: 'control', body: Uint8Array} | {type: 'relay', frame: Uint8Array}}
 */
export function decodeWsMessage(msg) {
  if (msg.length === 0) throw new DecodeError('empty WebSocket message');
  if (msg[0] === WS_CONTROL) return { type: 'control', body: msg.subarray(1) };
  if (msg[0] === WS_RELAY) return { type: 'relay', frame: msg.subarray(1) };
  throw new DecodeError(`unknown WebSocket message type 0x${msg[0].toString(16).padStart(2, '0')}`);
}

/** WebSocket close code for one of ours: 0 (leave for good) → 1000, a §6 error code n → 4000 + n. */
export function wsCloseCode(code) {
  if (!code) return 1000;
  return code > 0 && code < 1000 ? 4000 + code : 4000;
}

/**
 * Our close code for a WebSocket one: 1000 → 0 (normal close), 4000 + n → n (the
 * server's §6 error code), anything else (1006: the connection just ended) → null.
 */
export function fromWsCloseCode(wsCode) {
  if (wsCode === 1000) return 0;
  if (wsCode >= 4000 && wsCode <= 4999) return wsCode - 4000;
  return null;
}

// ---------------------------------------------------------------------------
// The first request in the URL (PROTOCOL.md §1, §10)
// ---------------------------------------------------------------------------

/** Query parameter of the WebTransport CONNECT / WebSocket upgrade URL that carries the first request. */
export const FIRST_PARAM = 'first';
/** The most bytes (decoded) the server takes in `first`. */
export const MAX_FIRST_BYTES = 2048;

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** base64url of bytes, RFC 4648 §5, without padding. @param {Uint8Array} bytes */
export function base64url(bytes) {
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += B64URL[n >> 18] + B64URL[(n >> 12) & 63] + B64URL[(n >> 6) & 63] + B64URL[n & 63];
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i] << 16;
    out += B64URL[n >> 18] + B64URL[(n >> 12) & 63];
  } else if (rest === 2) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += B64URL[n >> 18] + B64URL[(n >> 12) & 63] + B64URL[(n >> 6) & 63];
  }
  return out;
}

/**
 * Bytes of a base64url string without padding; throws DecodeError on anything else
 * (padding, '+', '/', a length of 4n+1, non-zero bits after the last byte).
 * @param {string} s
 */
export function fromBase64url(s) {
  if (s.length % 4 === 1) throw new DecodeError('base64url of impossible length');
  const out = new Uint8Array(Math.floor((s.length * 3) / 4));
  let bits = 0;
  let acc = 0;
  let o = 0;
  for (const ch of s) {
    const v = B64URL.indexOf(ch);
    if (v < 0) throw new DecodeError(`not base64url: ${JSON.stringify(ch)}`);
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  if (acc & ((1 << bits) - 1)) throw new DecodeError('base64url has non-zero trailing bits');
  return out;
}

/**
 * The bytes of `first`: control frames exactly as on the control stream (§3),
 * `varint(len) || body` each, one after the other.
 * @param {Uint8Array[]} bodies postcard(ClientMsg) bodies: Hello, then at most one CreateSession / JoinSession
 */
export function encodeFirst(bodies) {
  const w = new Writer();
  for (const b of bodies) w.varint(b.length).raw(b);
  const bytes = w.finish();
  if (bytes.length > MAX_FIRST_BYTES) throw new RangeError(`first request of ${bytes.length} bytes exceeds ${MAX_FIRST_BYTES}`);
  return bytes;
}

/**
 * `url` with the first request in its `first` query parameter (base64url). The result
 * holds the join code and password: never log or show it.
 * @param {string} url @param {Uint8Array[]} bodies
 */
export function urlWithFirst(url, bodies) {
  const u = new URL(url);
  u.searchParams.set(FIRST_PARAM, base64url(encodeFirst(bodies)));
  return u.toString();
}

/** Whether a control message body can ride behind Hello in `first` (CreateSession or JoinSession). */
export function foldableRequest(body) {
  return !!body && body.length > 0 && (body[0] === 1 || body[0] === 2);
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

/** Lowercase hex of bytes. */
export function toHex(bytes) {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

/** Bytes of a hex string (whitespace and ':' separators allowed). */
export function fromHex(hex) {
  const clean = hex.replace(/[\s:]/g, '');
  if (clean.length % 2 !== 0 || /[^0-9a-fA-F]/.test(clean)) throw new TypeError('not a hex string');
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * Normalize a certificate hash given as hex, base64, or bytes into 32 bytes.
 * @param {string|ArrayBuffer|ArrayBufferView} h
 */
function certHashBytes(h) {
  let out;
  if (typeof h === 'string') {
    const s = h.trim();
    if (/^[0-9a-fA-F:\s]+$/.test(s) && s.replace(/[\s:]/g, '').length === 64) out = fromHex(s);
    else {
      const bin = atob(s);
      out = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    }
  } else if (h instanceof ArrayBuffer) out = new Uint8Array(h);
  else if (ArrayBuffer.isView(h)) out = new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
  else throw new TypeError('certHash must be a hex or base64 string, or bytes');
  if (out.length !== 32) throw new TypeError(`certHash must be a SHA-256 (32 bytes), got ${out.length} bytes`);
  return out;
}

function describe(e) {
  return redact(describe0(e));
}

/** Hide the first request (join code, password, resume token) should a URL with it end up in a message. */
function redact(s) {
  return String(s).replace(/([?&]first=)[A-Za-z0-9_-]*/g, '$1…');
}

function describe0(e) {
  if (e && typeof e === 'object') {
    const parts = [];
    if ('name' in e && e.name && e.name !== 'Error') parts.push(String(e.name));
    if ('message' in e && e.message) parts.push(String(e.message));
    if ('source' in e && e.source) parts.push(`source=${e.source}`);
    if ('streamErrorCode' in e && e.streamErrorCode != null) parts.push(`streamErrorCode=${e.streamErrorCode}`);
    if (parts.length) return parts.join(': ');
  }
  return String(e);
}

function withTimeout(promise, ms, onTimeout) {
  if (!ms || ms <= 0) return promise;
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(onTimeout()), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

const now = () => performance.now();

// ---------------------------------------------------------------------------
// Transports
// ---------------------------------------------------------------------------

/** @typedef {'webtransport'|'websocket'} TransportKind */

/**
 * What FlightSimP2P needs from a signaling transport: an ordered, reliable channel
 * for control messages plus a best-effort channel for relay frames. Implementations:
 * `WebTransportSignal` (control stream + datagrams), `WebSocketSignal` (PROTOCOL.md
 * §10: one binary message per control message or relay frame) and `AutoSignal`
 * (happy eyeballs: WebTransport first, WebSocket when it is missing, fails or is slow).
 *
 * Callbacks fire only after `open()` resolved.
 *
 * @typedef {Object} SignalTransport
 * @property {string} kind       'webtransport' | 'websocket' (AutoSignal: 'auto' until open() resolved, then the winner's kind)
 * @property {string} url        where it connects (AutoSignal: the winner's URL once open)
 * @property {(first?: Uint8Array[]|null) => Promise<void>} open  connect; reject with FspError on failure.
 *           `first`: control message bodies (Hello, then at most one CreateSession / JoinSession) to
 *           send in the connection's URL (PROTOCOL.md §1, §10) instead of on the control stream
 * @property {boolean} [firstSent]                              after open(): true when `first` went in the URL (the
 *           server has it: do not send it again); false or missing: send Hello on the control stream as before
 * @property {(body: Uint8Array) => Promise<void>} sendControl  one control message body, postcard(ClientMsg) without length prefix
 * @property {(frame: Uint8Array) => boolean} sendRelay         one relay frame `varint(peer) || payload`; false if dropped
 * @property {number} maxRelayFrameBytes                        largest relay frame the transport carries
 * @property {(code: number, reason: string) => void} close     0 = leave for good, else a PROTOCOL.md §6 code; also aborts open()
 * @property {((body: Uint8Array) => void)|null} onControl      one control message body from the server
 * @property {((frame: Uint8Array) => void)|null} onRelay       one relay frame from the server
 * @property {((error: Error) => void)|null} onProtocolError    the server's bytes cannot even be split into messages
 * @property {((info: {code: number|null, reason: string, error?: unknown}) => void)|null} onClosed
 *           code: 0 for a normal close, the server's §6 error code for its error close, else null
 */

/**
 * Chromium's datagram defaults suit neither a burst of relay frames nor a busy page:
 * high-water marks of 1 and an outgoing age limit of ~1.25 × RTT (well under a
 * millisecond on a LAN) make it drop datagrams as soon as the sender or the page
 * is a little late. Queue a little more and let state live `maxAgeMs`; stale flight
 * state is still dropped after that.
 */
function tuneDatagrams(dg, maxAgeMs) {
  const set = (k, v) => {
    try {
      if (k in dg) dg[k] = v;
    } catch {
      // not supported by this browser
    }
  };
  set('outgoingMaxAge', maxAgeMs);
  set('incomingMaxAge', maxAgeMs);
  set('outgoingHighWaterMark', 64);
  set('incomingHighWaterMark', 256);
}

/**
 * Options handed to transport constructors and to a custom `transport` factory.
 * @typedef {{url: string, wsUrl: string, certHash: Uint8Array|null, connectTimeoutMs: number,
 *   datagramMaxAgeMs: number, fallbackDelayMs: number, wsMaxBufferedBytes: number}} TransportOptions
 */

/** @implements {SignalTransport} */
export class WebTransportSignal {
  /**
   * @param {{url: string, certHash?: Uint8Array|null, connectTimeoutMs?: number, datagramMaxAgeMs?: number}} opts
   */
  constructor(opts) {
    this.kind = 'webtransport';
    this.url = opts.url;
    this.certHash = opts.certHash || null;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 10000;
    this.datagramMaxAgeMs = opts.datagramMaxAgeMs ?? 100;
    /** @type {any} */
    this.wt = null;
    this.onControl = null;
    this.onRelay = null;
    this.onProtocolError = null;
    this.onClosed = null;
    this._closedFired = false;
    this._writer = null;
    this._dgWriter = null;
    /** The control stream is a byte stream of `varint(len) || body` frames. */
    this._frames = new FrameReader(256 * 1024);
    /** `closed` is reported only after open() succeeded; before that open() rejects. */
    this._opened = false;
    this._aborted = false;
    /** true once open() used the fast form (first request in the URL) */
    this.firstSent = false;
  }

  get maxRelayFrameBytes() {
    return (this.wt && this.wt.datagrams && this.wt.datagrams.maxDatagramSize) || 1200;
  }

  /**
   * Connect. With `first`, the first request rides in the CONNECT URL and the server opens
   * the control stream itself, with Welcome and its answer on it (PROTOCOL.md §1): this side
   * must not open one. Without, this side opens the control stream (the old form).
   * @param {Uint8Array[]|null} [first]
   */
  async open(first = null) {
    if (typeof WebTransport === 'undefined') {
      throw new FspError(0, 'unsupported',
        'This browser has no WebTransport (needs Chromium 97+ or Firefox 114+, in a secure context: https or http://localhost).');
    }
    /** @type {any} */
    const wtOpts = { requireUnreliable: true };
    if (this.certHash) wtOpts.serverCertificateHashes = [{ algorithm: 'sha-256', value: this.certHash }];
    const hint = this.certHash
      ? `Check that the server listens on that UDP port and that the certificate hash (${toHex(this.certHash).slice(0, 16)}…) is the one the server serves at /cert-hash (it changes when the server regenerates its certificate).`
      : 'Check that the server listens on that UDP port and has a certificate the browser trusts (for a self-signed dev certificate pass certHash from /cert-hash).';
    let wt;
    try {
      // The URL with `first` holds the join code: it is used here and nowhere else.
      wt = new WebTransport(first ? urlWithFirst(this.url, first) : this.url, wtOpts);
    } catch (e) {
      throw new FspError(0, 'connect_failed', `Cannot open WebTransport to ${this.url}: ${describe(e)}`, { cause: e });
    }
    this.wt = wt;
    // Never leave these rejections unhandled, whatever happens below.
    wt.closed.then(
      (info) => this._fireClosed({ code: info?.closeCode ?? 0, reason: info?.reason ?? '' }),
      (e) => this._fireClosed({ code: null, reason: describe(e), error: e }),
    );
    let stream;
    try {
      const t0 = now();
      await withTimeout(wt.ready, this.connectTimeoutMs, () => new Error(`no answer within ${this.connectTimeoutMs} ms`));
      if (this._aborted) throw new Error('aborted');
      if (first) {
        // The server's stream comes in the same flight as the 200.
        const streams = wt.incomingBidirectionalStreams.getReader();
        const left = Math.max(1, this.connectTimeoutMs - (now() - t0));
        const r = await withTimeout(streams.read(), left, () => new Error(`the server opened no control stream within ${Math.round(left)} ms`));
        streams.releaseLock();
        if (r.done || !r.value) throw new Error('the session ended before the server opened its control stream');
        stream = r.value;
      } else {
        stream = await wt.createBidirectionalStream();
      }
      if (this._aborted) throw new Error('aborted');
    } catch (e) {
      try { wt.close(); } catch { /* already failed */ }
      if (this._aborted) throw new FspError(0, 'closed', `WebTransport connection to ${this.url} closed while connecting`, { cause: e });
      throw new FspError(0, 'connect_failed',
        `WebTransport connection to ${this.url} failed (${describe(e)}). ${hint}`, { cause: e });
    }
    this._writer = stream.writable.getWriter();
    this.firstSent = !!first;
    const dg = wt.datagrams;
    tuneDatagrams(dg, this.datagramMaxAgeMs);
    const writable = typeof dg.createWritable === 'function' ? dg.createWritable() : dg.writable;
    this._dgWriter = writable.getWriter();
    this._opened = true;
    this._readControl(stream.readable.getReader());
    this._readDatagrams(dg.readable.getReader());
  }

  async _readControl(reader) {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (!value || !value.length) continue;
        let bodies;
        try {
          bodies = this._frames.push(value);
        } catch (e) {
          if (this.onProtocolError) this.onProtocolError(/** @type {Error} */ (e));
          return;
        }
        for (const body of bodies) {
          if (this._closedFired) return;
          if (this.onControl) this.onControl(body);
        }
      }
      this._closeSoon({ code: null, reason: 'the server finished the control stream' });
    } catch (e) {
      this._closeSoon({ code: null, reason: `control stream failed: ${describe(e)}`, error: e });
    }
  }

  /** The control stream ended: give `closed` a moment to report the real close code first. */
  _closeSoon(info) {
    setTimeout(() => this._fireClosed(info), 300);
  }

  async _readDatagrams(reader) {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (value && this.onRelay) this.onRelay(value);
      }
    } catch {
      // The session closed; _readControl or `closed` reports it.
    }
  }

  sendControl(body) {
    if (!this._writer) return Promise.reject(new FspError(0, 'closed', 'transport is not open'));
    return this._writer.write(encodeFrame(body));
  }

  sendRelay(frame) {
    if (!this._dgWriter || this._closedFired) return false;
    this._dgWriter.write(frame).catch(() => {});
    return true;
  }

  close(code = 0, reason = '') {
    if (!this._opened) this._aborted = true;
    if (!this.wt) return;
    try {
      this.wt.close({ closeCode: code, reason });
    } catch {
      // already closed
    }
  }

  _fireClosed(info) {
    if (this._closedFired || !this._opened) return;
    this._closedFired = true;
    if (this.onClosed) this.onClosed(info);
  }
}

/** At most `max` UTF-8 bytes of `s` (WebSocket close reasons are limited to 123 bytes). */
function clipUtf8(s, max) {
  if (utf8Encoder.encode(s).length <= max) return s;
  let out = '';
  for (const ch of s) {
    if (utf8Encoder.encode(out + ch).length > max) break;
    out += ch;
  }
  return out;
}

/**
 * The fallback transport of PROTOCOL.md §10: a WebSocket to `GET /ws` on the
 * server's HTTP port. Every message is binary: `0x00 || control body` or
 * `0x01 || relay frame`. Close code 1000 leaves for good; the server closes
 * with 4000 + its error code.
 *
 * Relay frames share the TCP connection with the control messages, so they are
 * reliable and in order but can queue: a frame is dropped (sendRelay returns
 * false) while more than `wsMaxBufferedBytes` wait in the socket's send buffer,
 * so stale flight state is never sent late.
 * @implements {SignalTransport}
 */
export class WebSocketSignal {
  /** @param {{wsUrl: string, connectTimeoutMs?: number, wsMaxBufferedBytes?: number}} opts */
  constructor(opts) {
    this.kind = 'websocket';
    this.url = opts.wsUrl;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 10000;
    this.maxBufferedBytes = opts.wsMaxBufferedBytes ?? 32 * 1024;
    /** @type {WebSocket|null} */
    this.ws = null;
    this.onControl = null;
    this.onRelay = null;
    this.onProtocolError = null;
    this.onClosed = null;
    this._opened = false;
    this._closedFired = false;
    /** @type {((why: string) => void)|null} rejects a pending open() */
    this._abort = null;
    /** true once open() used the fast form (first request in the upgrade URL) */
    this.firstSent = false;
  }

  /** The server takes messages up to max(max_frame_bytes, max_relay_payload + 5) + 1 bytes. */
  get maxRelayFrameBytes() {
    return DEFAULT_MAX_FRAME_BYTES;
  }

  /**
   * Connect. With `first`, the first request rides in the upgrade URL and the server's first
   * messages are Welcome and its answer (PROTOCOL.md §10).
   * @param {Uint8Array[]|null} [first]
   */
  async open(first = null) {
    if (typeof WebSocket === 'undefined') throw new FspError(0, 'unsupported', 'This environment has no WebSocket.');
    const hint = `Check that the server's HTTP port serves ${WEBSOCKET_PATH} at that address (by default the page's own origin; pass wsUrl otherwise) and that no proxy in between refuses WebSocket upgrades.`;
    let ws;
    try {
      // The URL with `first` holds the join code: it is used here and nowhere else.
      ws = new WebSocket(first ? urlWithFirst(this.url, first) : this.url);
    } catch (e) {
      throw new FspError(0, 'connect_failed', `Cannot open a WebSocket to ${this.url}: ${describe(e)}`, { cause: e });
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    let aborted = false;
    try {
      await new Promise((resolve, reject) => {
        const ms = this.connectTimeoutMs;
        const timer = ms > 0 ? setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms) : 0;
        ws.onopen = () => {
          clearTimeout(timer);
          resolve(undefined);
        };
        // Browsers give no details on the error event; the close event that follows has the code.
        ws.onerror = () => {};
        ws.onclose = (e) => {
          clearTimeout(timer);
          reject(new Error(`closed before it opened (code ${e.code}${e.reason ? `: ${e.reason}` : ''})`));
        };
        this._abort = (why) => {
          aborted = true;
          clearTimeout(timer);
          reject(new Error(why));
        };
      });
    } catch (e) {
      try { ws.close(); } catch { /* not open */ }
      if (aborted) throw new FspError(0, 'closed', `WebSocket connection to ${this.url} closed while connecting`, { cause: e });
      throw new FspError(0, 'connect_failed', `WebSocket connection to ${this.url} failed (${describe(e)}). ${hint}`, { cause: e });
    } finally {
      this._abort = null;
    }
    this._opened = true;
    this.firstSent = !!first;
    ws.onmessage = (e) => this._onMessage(e.data);
    ws.onclose = (e) => this._fireClosed({
      code: fromWsCloseCode(e.code),
      reason: e.reason || `WebSocket closed with code ${e.code}${e.code === 1006 ? ' (connection lost)' : ''}`,
      wsCode: e.code,
    });
  }

  /** @param {ArrayBuffer|string} data */
  _onMessage(data) {
    if (this._closedFired) return;
    let m;
    try {
      if (typeof data === 'string') throw new DecodeError('the server sent a text message');
      m = decodeWsMessage(new Uint8Array(data));
    } catch (e) {
      if (this.onProtocolError) this.onProtocolError(/** @type {Error} */ (e));
      return;
    }
    if (m.type === 'control') {
      if (this.onControl) this.onControl(m.body);
    } else if (this.onRelay) this.onRelay(m.frame);
  }

  _isOpen() {
    return !!this.ws && this._opened && this.ws.readyState === 1; // OPEN
  }

  sendControl(body) {
    if (!this._isOpen()) return Promise.reject(new FspError(0, 'closed', 'WebSocket is not open'));
    try {
      /** @type {WebSocket} */ (this.ws).send(encodeWsControl(body));
    } catch (e) {
      return Promise.reject(e);
    }
    return Promise.resolve();
  }

  sendRelay(frame) {
    if (!this._isOpen() || this._closedFired) return false;
    const ws = /** @type {WebSocket} */ (this.ws);
    if (ws.bufferedAmount > this.maxBufferedBytes) return false;
    try {
      ws.send(encodeWsRelay(frame));
    } catch {
      return false;
    }
    return true;
  }

  close(code = 0, reason = '') {
    if (this._abort) this._abort('aborted');
    if (!this.ws) return;
    try {
      this.ws.close(wsCloseCode(code), clipUtf8(reason, 123));
    } catch {
      // already closed
    }
  }

  _fireClosed(info) {
    if (this._closedFired || !this._opened) return;
    this._closedFired = true;
    if (this.onClosed) this.onClosed(info);
  }
}

/**
 * "Happy eyeballs" over the two transports (PROTOCOL.md §10): WebTransport first;
 * WebSocket at once if this browser has no WebTransport or the WebTransport attempt
 * fails, and in parallel if WebTransport is not ready within `fallbackDelayMs`.
 * Whichever is ready first is used; the other attempt is closed (code 0 / 1000,
 * before any Hello, so the server keeps nothing of it).
 * @implements {SignalTransport}
 */
export class AutoSignal {
  /**
   * @param {TransportOptions} opts
   * @param {{webtransport?: (o: TransportOptions) => SignalTransport, websocket?: (o: TransportOptions) => SignalTransport}} [factories] for tests
   */
  constructor(opts, factories = {}) {
    this.kind = 'auto';
    this.opts = opts;
    this.fallbackDelayMs = opts.fallbackDelayMs ?? 1000;
    this._make = {
      webtransport: factories.webtransport || ((o) => new WebTransportSignal(o)),
      websocket: factories.websocket || ((o) => new WebSocketSignal(o)),
    };
    /** @type {SignalTransport|null} the attempt that won */
    this.chosen = null;
    /** Why the WebSocket was tried; '' when only WebTransport was. */
    this.fallbackReason = '';
    this.onControl = null;
    this.onRelay = null;
    this.onProtocolError = null;
    this.onClosed = null;
    /** @type {{kind: TransportKind, t: SignalTransport, failed: boolean, closedInfo: any, flush?: () => void}[]} */
    this._attempts = [];
    this._closed = false;
  }

  get url() {
    return this.chosen ? this.chosen.url : this.opts.url;
  }

  get maxRelayFrameBytes() {
    return this.chosen ? this.chosen.maxRelayFrameBytes : 1200;
  }

  /** Whether the winner carried the first request in its URL. */
  get firstSent() {
    return !!this.chosen && !!this.chosen.firstSent;
  }

  /**
   * Race the transports. `first` rides only in an attempt started while no other is
   * pending (WebTransport; or the WebSocket once WebTransport failed or is missing): two
   * attempts carrying it could both reach the server and make two peers (or two sessions)
   * of one client. A WebSocket started in parallel with a slow WebTransport goes without
   * it, and the client then sends Hello on it as before (`firstSent` false).
   * @param {Uint8Array[]|null} [first]
   */
  open(first = null) {
    return new Promise((resolve, reject) => {
      let done = false;
      let timer = 0;
      /** @type {Record<string, any>} */
      const errors = {};
      const attempts = this._attempts;
      const settle = () => {
        done = true;
        clearTimeout(timer);
      };
      const fail = () => {
        settle();
        if (this._closed) {
          reject(new FspError(0, 'closed', 'closed while connecting'));
          return;
        }
        const wt = errors.webtransport;
        const ws = errors.websocket;
        if (wt && ws) {
          reject(new FspError(0, 'connect_failed',
            `Neither transport connected. ${wt.message || describe(wt)} — then: ${ws.message || describe(ws)}`, { cause: ws }));
        } else reject(wt || ws);
      };
      /** @param {TransportKind} kind @param {string} why */
      const start = (kind, why) => {
        if (done || this._closed || attempts.some((a) => a.kind === kind)) return;
        const t = this._make[kind](this.opts);
        const alone = attempts.every((o) => o.failed);
        const a = { kind, t, failed: false, closedInfo: null };
        attempts.push(a);
        if (kind === 'websocket') this.fallbackReason = why;
        // Forward callbacks from the winner only. With the first request in the URL the server
        // answers at once: what comes before this attempt is chosen is kept for when it is.
        /** @type {Uint8Array[]} */
        const early = [];
        a.flush = () => {
          for (const b of early.splice(0)) if (this.chosen === t && this.onControl) this.onControl(b);
        };
        t.onControl = (b) => {
          if (this.chosen === t) {
            if (this.onControl) this.onControl(b);
          } else if (!this.chosen) early.push(b);
        };
        t.onRelay = (f) => { if (this.chosen === t && this.onRelay) this.onRelay(f); };
        t.onProtocolError = (e) => { if (this.chosen === t && this.onProtocolError) this.onProtocolError(e); };
        t.onClosed = (info) => {
          if (this.chosen === t) {
            if (this.onClosed) this.onClosed(info);
          } else a.closedInfo = info;
        };
        t.open(alone ? first : null).then(() => {
          if (done || this._closed) {
            t.close(0, 'happy eyeballs: the other transport won');
            return;
          }
          settle();
          for (const o of attempts) if (o !== a && !o.failed) o.t.close(0, 'happy eyeballs: the other transport won');
          this.chosen = t;
          this.kind = t.kind;
          resolve(undefined);
          // After the caller's continuation (queued by resolve): first the messages, then a close.
          queueMicrotask(() => {
            a.flush();
            if (a.closedInfo && this.onClosed) this.onClosed(a.closedInfo);
          });
        }, (e) => {
          a.failed = true;
          errors[kind] = e;
          if (done) return;
          if (kind === 'webtransport') start('websocket', `WebTransport failed: ${e && e.message ? e.message : describe(e)}`);
          if (attempts.every((o) => o.failed)) fail();
        });
      };
      if (typeof WebTransport === 'undefined') {
        start('websocket', 'this browser has no WebTransport');
      } else {
        start('webtransport', '');
        if (!done) {
          timer = setTimeout(() => start('websocket', `WebTransport not ready within ${this.fallbackDelayMs} ms`),
            Math.max(0, this.fallbackDelayMs));
        }
      }
    });
  }

  sendControl(body) {
    if (!this.chosen) return Promise.reject(new FspError(0, 'closed', 'transport is not open'));
    return this.chosen.sendControl(body);
  }

  sendRelay(frame) {
    return !!this.chosen && this.chosen.sendRelay(frame);
  }

  close(code = 0, reason = '') {
    if (this.chosen) {
      this.chosen.close(code, reason);
      return;
    }
    this._closed = true;
    for (const a of this._attempts) if (!a.failed) a.t.close(code, reason);
  }
}

// ---------------------------------------------------------------------------
// Reconnecting: pure decisions (no clock, no I/O; tested in tests/browser/codec.test.mjs)
// ---------------------------------------------------------------------------

/**
 * Delays before reconnect attempts 0, 1, 2, 3 and after: the first attempt at once, then
 * 250 ms, 500 ms, and every second at most, so that the connection is back within about a
 * second of the network's return (PROTOCOL.md §4: the seat is kept for the resume grace).
 */
export const RECONNECT_BACKOFF_MS = Object.freeze([0, 250, 500, 1000]);

/**
 * Close code of a connection this client abandons in order to resume on a new one. It is
 * not 0 (WebSocket: not 1000), which would leave the session for good (PROTOCOL.md §1, §10);
 * any other code keeps the seat for the resume grace. (WebSocket: 4000 + 999 = 4999.)
 */
export const ABANDON_CLOSE_CODE = 999;

/**
 * Delay before reconnect attempt `attempt` (0-based), with jitter: a value in
 * [0.75, 1] × the schedule's delay, never above it, so that many clients cut at
 * once do not come back in lockstep.
 * @param {number} attempt
 * @param {() => number} [random] in [0, 1)
 */
export function backoffDelayMs(attempt, random = Math.random) {
  if (!(attempt > 0)) return 0;
  const base = RECONNECT_BACKOFF_MS[Math.min(attempt, RECONNECT_BACKOFF_MS.length - 1)];
  return Math.round(base * (0.75 + 0.25 * Math.min(1, Math.max(0, random()))));
}

/**
 * What the end of a connection means.
 *
 * - `close`: for good, as the app or the server wanted: reconnecting is off, the client
 *   never had a Welcome (nothing to resume), the server closed with a fatal error
 *   (PROTOCOL.md §6: replaced, server_full, bad_message, ...) or normally (code 0).
 * - `reconnect` after `delayMs`: the connection just ended (code null: network, proxy,
 *   idle timeout, no answer to pings), or the server announced `GoingAway`
 *   (its `shutting_down` close then means "come back after reconnectAfterMs").
 *
 * @param {{code: number|null, fatalCode?: number|null, goingAwayInMs?: number|null,
 *   enabled?: boolean, welcomed?: boolean}} c
 *   code: the close code (0 normal, a §6 code, null when the connection just ended);
 *   fatalCode: code of a fatal `Error` the server sent before closing;
 *   goingAwayInMs: time left until the `GoingAway` delay is over (null: no GoingAway)
 * @returns {{action: 'reconnect', delayMs: number} | {action: 'close', why: string}}
 */
export function closeDisposition(c) {
  const { code, fatalCode = null, goingAwayInMs = null, enabled = true, welcomed = true } = c;
  if (!enabled) return { action: 'close', why: 'reconnecting is off' };
  if (!welcomed) return { action: 'close', why: 'no Welcome yet: nothing to resume' };
  if (goingAwayInMs !== null && goingAwayInMs !== undefined) {
    return { action: 'reconnect', delayMs: Math.max(0, Math.round(goingAwayInMs)) };
  }
  if (fatalCode) return { action: 'close', why: `fatal server error ${errorName(fatalCode)}` };
  if (code === null || code === undefined) return { action: 'reconnect', delayMs: 0 };
  if (code === 0) return { action: 'close', why: 'closed normally by the server' };
  return { action: 'close', why: `closed by the server with ${errorName(code)}` };
}

/**
 * The next step of a reconnection that has made `attempt` attempts so far and began
 * `elapsedMs` ago: wait `delayMs` then try again, or give up once `giveUpMs` would pass
 * (0 = never give up).
 * @param {{attempt: number, elapsedMs: number, giveUpMs: number, random?: () => number}} s
 * @returns {{action: 'wait', delayMs: number} | {action: 'giveup'}}
 */
export function reconnectStep(s) {
  const delayMs = backoffDelayMs(s.attempt, s.random);
  if (s.giveUpMs > 0 && s.elapsedMs + delayMs >= s.giveUpMs) return { action: 'giveup' };
  return { action: 'wait', delayMs };
}

/**
 * How long one reconnect attempt gets (transport up, then the Welcome) before the next
 * one starts: at least 3 s (a busy machine), 2 s + 8 server round trips on a slow path,
 * never more than the connect timeout.
 * @param {number|null} rttMs last server round trip, if known
 * @param {number} connectTimeoutMs
 */
export function attemptTimeoutMs(rttMs, connectTimeoutMs) {
  const want = Math.max(3000, 2000 + 8 * (rttMs && rttMs > 0 ? rttMs : 0));
  return Math.round(connectTimeoutMs > 0 ? Math.min(connectTimeoutMs, want) : want);
}

/**
 * Whether the server has gone silent: a Ping went out at `awaitingSinceMs` (0 = nothing
 * outstanding) and nothing at all (no Pong, no other message, no relay frame) came back
 * within `liveTimeoutMs` (0 = never decide so). Timed from the ping, not from the last
 * message, so that a throttled background tab (timers once a minute) is not taken for dead.
 */
export function serverSilent(awaitingSinceMs, nowMs, liveTimeoutMs) {
  return liveTimeoutMs > 0 && awaitingSinceMs > 0 && nowMs - awaitingSinceMs > liveTimeoutMs;
}

// ---------------------------------------------------------------------------
// Cluster mode: pure decisions (PROTOCOL.md §11; tested in tests/browser/cluster.test.mjs)
// ---------------------------------------------------------------------------

/** Redirects followed in a row (until a redirected request is answered) before failing. */
export const MAX_REDIRECTS = 5;

/**
 * The WebSocket URL of a node's HTTP base URL: `{http}/ws` with http → ws, https → wss; '' if none.
 * @param {string} http
 */
export function wsUrlOfHttp(http) {
  const m = /^(https?):\/\/([^/]+)\/*$/.exec(String(http || '').trim());
  if (!m) return '';
  return `${m[1] === 'https' ? 'wss' : 'ws'}://${m[2]}${WEBSOCKET_PATH}`;
}

/**
 * Where a Redirect's node is reached: `url` (WebTransport, `https://{quic}/signal`), `wsUrl`
 * (`{http}/ws`), `certHash` (the pinned hash, null for a CA-signed certificate). An empty address
 * is '' (that transport cannot reach the node).
 * @param {NodeAddr} node
 * @returns {{name: string, url: string, wsUrl: string, certHash: Uint8Array|null}}
 */
export function nodeServer(node) {
  const quic = String(node.quic || '').trim();
  const url = /^(\[[0-9a-fA-F:.]+\]|[^:\[\]/]+):\d{1,5}$/.test(quic) ? `https://${quic}${WEBTRANSPORT_PATH}` : '';
  const hash = node.certSha256 && node.certSha256.length === 32 ? Uint8Array.from(node.certSha256) : null;
  return { name: node.name, url, wsUrl: wsUrlOfHttp(node.http), certHash: hash };
}

/**
 * Whether a server description can be reached with `transport` ('auto', 'webtransport',
 * 'websocket', or a factory: anything with an address).
 * @param {{url: string, wsUrl: string}} server @param {any} transport
 */
export function reachableWith(server, transport) {
  if (transport === 'webtransport') return !!server.url;
  if (transport === 'websocket') return !!server.wsUrl;
  return !!(server.url || server.wsUrl);
}

/**
 * The next redirect, the `count`-th in a row: follow it, or fail (more than `max`).
 * @param {number} count @param {number} [max]
 * @returns {'follow'|'fail'}
 */
export function redirectStep(count, max = MAX_REDIRECTS) {
  return count > max ? 'fail' : 'follow';
}

/**
 * Where the next reconnect attempt goes after the current server could not be reached: a redirect
 * target is dropped (back to the configured list where it left off), else the next configured
 * server, round robin.
 * @param {{index: number, target: any}} at @param {number} count configured servers (main + fallbacks)
 * @returns {{index: number, target: any}}
 */
export function rotateServer(at, count) {
  if (at.target) return { index: at.index, target: null };
  return { index: (at.index + 1) % Math.max(1, count), target: null };
}

// ---------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------

/** Errors that answer a CreateSession / JoinSession (PROTOCOL.md §6). */
const SESSION_REQUEST_ERRORS = new Set([9, 10, 11, 12, 13, 14, 16, 17, 22]);

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
 * @property {number} [pingIntervalMs]  Ping period for the server RTT (default 2000; 0 = off)
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
 * @property {number} [liveTimeoutMs]   take the connection for lost when a Ping got no answer, nor anything else
 *           from the server, within this long (default 7000; 0 = only when the transport says so)
 * @property {Array<{url?: string, host?: string, port?: number, wsUrl?: string, certHash?: any}>} [fallbacks]
 *           cluster mode: other nodes, described like the main server (url or host/port, wsUrl, certHash; a
 *           missing certHash is the main one's, null a CA certificate), tried in turn with the reconnect
 *           backoff when the current server cannot be reached; any node redirects to the session's node
 * @property {number} [maxRedirects]    cluster mode: redirects followed in a row before failing (default 5)
 */

/** Values of the `transport` option besides a factory. */
export const TRANSPORT_CHOICES = Object.freeze(['auto', 'webtransport', 'websocket']);

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
 * One remote peer of my session and the state of the path to it.
 */
class PeerLink {
  /** @param {PeerInfo} info */
  constructor(info) {
    this.id = info.id;
    this.name = info.name;
    this.client = info.client;
    this.online = true;
    /** @type {RTCPeerConnection|null} */
    this.pc = null;
    /** @type {RTCDataChannel|null} */
    this.dc = null;
    /** @type {PeerPath} */
    this.path = 'connecting';
    /** 'direct' or 'turn' once getStats has classified the selected candidate pair */
    this.directKind = /** @type {'direct'|'turn'|null} */ (null);
    /** true once the relay is in use for this peer (deadline passed, ICE failed, channel closed) */
    this.fallback = false;
    this.deadline = 0;
    this.retry = 0;
    this.iceRttMs = /** @type {number|null} */ (null);
    this.candidatePair = '';
    this.classifying = false;
    /** @type {RTCIceCandidateInit[]} */
    this.pendingCandidates = [];
    /** serializes the async WebRTC operations of this peer */
    this.chain = Promise.resolve();
    /** flight-data messages delivered to the game / sent */
    this.rx = 0;
    this.tx = 0;
    /** flight-data messages from this peer dropped as not newer than the last one accepted */
    this.staleDropped = 0;
  }
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
      pingIntervalMs: options.pingIntervalMs ?? 2000,
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
      liveTimeoutMs: options.liveTimeoutMs ?? 7000,
      maxRedirects: options.maxRedirects ?? MAX_REDIRECTS,
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
    this._redirects = 0;
    /** the CreateSession / JoinSession of the pending request, to send again where a redirect leads */
    this._pendingMsg = /** @type {ClientMsg|null} */ (null);
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
    /** Server round-trip time from Ping/Pong, ms. */
    this.rttMs = /** @type {number|null} */ (null);
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
    this._closeEmitted = false;
    /** @type {FspError|null} last fatal server error: the reason for the close that follows */
    this._lastFatal = null;
    /** @type {{at: number, ms: number, timer: any}|null} the server's GoingAway: reconnect after `ms` from `at` */
    this._goingAway = null;
    /** when the oldest unanswered Ping went out (0: none outstanding, or something arrived since) */
    this._awaitingSince = 0;
    /** code and password of the session we are in (to rejoin it if a resume comes too late) */
    this._sessionKey = /** @type {{code: string, password: string|null}|null} */ (null);
    /** password of the create/join request in flight */
    this._requestPassword = /** @type {string|null} */ (null);
    /**
     * An automatic reconnection in progress.
     * @type {null|{startedAt: number, attempt: number, timer: any, welcomeTimer: any, reason: string,
     *   previousPeerId: number, sessionKey: {code: string, password: string|null}|null, onOnline: any,
     *   resend: ClientMsg|null}}
     */
    this._rc = null;
    /** set after a Welcome with a new peer id during a reconnection: rejoin this session */
    this._rejoin = /** @type {null|{previousPeerId: number, code: string}} */ (null);
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
      staleDropped: l.staleDropped,
    }));
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
    this._connectPromise = (async () => {
      // Let a createSession()/joinSession() called in the same tick be queued first: it
      // then rides in the URL with Hello (PROTOCOL.md §1, §10), answered with the 200/101.
      await null;
      if (this.state === 'closed') throw new FspError(0, 'closed', 'closed while connecting');
      const t = this._makeTransport();
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
    const noToken = !!(this._rc && this._rc.resend && !this._rc.sessionKey);
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
    return bodies;
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
    t.onRelay = (frame) => { if (this.conn === t && !early) this._onRelayFrame(frame); };
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
      reconnect: this.state === 'reconnecting',
    });
  }

  /** @returns {SignalTransport} */
  _makeTransport() {
    const o = this.options;
    const at = this.server;
    /** @type {TransportOptions} */
    const opts = {
      url: at.url, wsUrl: at.wsUrl, certHash: at.certHash, connectTimeoutMs: o.connectTimeoutMs,
      datagramMaxAgeMs: o.datagramMaxAgeMs, fallbackDelayMs: o.fallbackDelayMs, wsMaxBufferedBytes: o.wsMaxBufferedBytes,
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
      type: 'CreateSession', maxPeers: opts.maxPeers ?? 0, password: opts.password || null,
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
    return this._request('join', { type: 'JoinSession', code: String(code), password: opts.password ?? null });
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
      if (frame.length > this.maxRelayPayload || !this.conn || this.state !== 'connected') {
        this.stats.relayDropped += relay.length;
        return false;
      }
      // Everyone on the relay: one upload, the server fans out.
      const ids = peer === ALL_PEERS && relay.length === this.links.size && relay.length > 1 ? [ALL_PEERS] : relay;
      for (const id of ids) {
        if (this.conn.sendRelay(encodeRelay(id, frame))) {
          this.stats.relayFramesSent++;
        } else {
          this.stats.relayDropped++;
          ok = false;
        }
      }
      for (const id of relay) {
        const l = this.links.get(id);
        if (l) l.tx++;
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

  _request(kind, msg) {
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
      this._sendMsg(msg);
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
    const body = encodeClientMsg(msg);
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
    // While reconnecting, messages wait for the resumed connection (dropped if the resume fails).
    if (this.state === 'reconnecting') return;
    const rate = this.welcome ? this.welcome.limits.signalsPerSec * 0.9 : 0;
    if (!rate) {
      for (const body of this._outbox.splice(0)) this._writeRaw(body);
      return;
    }
    const t = now();
    this._tokens = Math.min(rate, this._tokens + ((t - this._tokensAt) * rate) / 1000);
    this._tokensAt = t;
    while (this._outbox.length && this._tokens >= 1) {
      this._tokens -= 1;
      this._writeRaw(/** @type {Uint8Array} */ (this._outbox.shift()));
    }
    if (this._outbox.length && !this._pumpTimer && this.state !== 'closed') {
      this._pumpTimer = setTimeout(() => {
        this._pumpTimer = 0;
        this._pump();
      }, Math.ceil(1000 / rate));
    }
  }

  _writeMsg(msg) {
    this._writeRaw(encodeClientMsg(msg));
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
    this._awaitingSince = 0;
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
    switch (m.type) {
      case 'Welcome': {
        const previousPeerId = this.peerId;
        this.welcome = m;
        this.peerId = m.peerId;
        this._tokens = m.limits.signalsPerSec * 0.9;
        this._tokensAt = now();
        const rc = this._rc;
        this.state = 'connected';
        this.options.resumeToken = m.resumeToken;
        if (!this._pendingMsg) this._redirects = 0;
        this._startTimers();
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
        this._redirects = 0;
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
        if (l) l.online = m.online;
        // Back after a lost connection: it may be a restarted client whose counter began again.
        if (m.online) this._rxSeq.reset(m.peer);
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
        if (SESSION_REQUEST_ERRORS.has(m.code)) this._settle(null, null, err);
        this._emit('error', { code: err.code, name: err.codeName, message: err.message, fatal: err.fatal, error: err });
        if (err.fatal && this._welcomeWaiter) {
          this._welcomeWaiter.reject(err);
          this._welcomeWaiter = null;
        }
        if (err.fatal) this._lastFatal = err;
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
    this._awaitingSince = 0;
    if (o.pingIntervalMs > 0) {
      const ping = () => {
        if (this.state !== 'connected') return;
        const t = now();
        if (serverSilent(this._awaitingSince, t, o.liveTimeoutMs)) {
          this._onTransportClosed({ code: null, reason: `no answer from the server for ${Math.round(t - this._awaitingSince)} ms` });
          return;
        }
        if (!this._awaitingSince) this._awaitingSince = t;
        let v = BigInt(Math.floor(performance.timeOrigin + now()));
        while (this._pings.has(v)) v += 1n;
        this._pings.set(v, now());
        if (this._pings.size > 32) this._pings.delete(this._pings.keys().next().value);
        this._sendMsg({ type: 'Ping', clientTimeMs: v });
      };
      ping();
      this._timers.push(setInterval(ping, o.pingIntervalMs));
    }
    if (o.statsIntervalMs > 0) this._timers.push(setInterval(() => this._pollStats(), o.statsIntervalMs));
  }

  _stopTimers() {
    for (const t of this._timers) clearInterval(t);
    this._timers = [];
  }

  _onRelayFrame(frame) {
    let r;
    try {
      r = decodeRelay(frame);
    } catch {
      this.stats.relayBadFrames++;
      return;
    }
    this.stats.relayReceived++;
    this._awaitingSince = 0;
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
    if (!this._rxSeq.accept(from, f.seq)) {
      this.stats.staleDropped++;
      if (l) l.staleDropped++;
      return;
    }
    if (l) l.rx++;
    this._deliver(from, f.payload, path);
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
    const ga = this._goingAway;
    const d = closeDisposition({
      code: info.code,
      fatalCode: this._lastFatal ? this._lastFatal.code : null,
      goingAwayInMs: ga ? ga.at + ga.ms - now() : null,
      enabled: this.options.reconnect,
      // A Welcome on this connection or an earlier one: there is a seat to resume.
      welcomed: this.state === 'reconnecting' || (this.state === 'connected' && !!this.welcome),
    });
    if (d.action === 'reconnect') {
      const reason = info.reason || 'connection lost';
      if (this.state === 'reconnecting') this._attemptFailed(reason, d.delayMs || null, true);
      else this._startReconnect(reason, d.delayMs);
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
   * A node sends us elsewhere: in answer to Hello (instead of Welcome), to a create/join, or
   * unasked (draining, the session moved). Leave this connection (keeping any seat: code 999),
   * connect to the node the same way, Hello (with the resume token if in a session) and the
   * unanswered create/join again. The app sees `redirect`, then `reconnecting` / `reconnected`.
   * @param {{type: 'Redirect', reason: RedirectReason, node: NodeAddr}} m
   */
  _onRedirect(m) {
    this._redirects++;
    const count = this._redirects;
    this._emit('redirect', { reason: m.reason, node: m.node, count });
    const target = nodeServer(m.node);
    if (redirectStep(count, this.options.maxRedirects) === 'fail') {
      const err = new FspError(0, 'too_many_redirects',
        `too many redirects (${this.options.maxRedirects} in a row), the last to node ${m.node.name}`, { fatal: !this.welcome });
      this._redirects = 0;
      if (!this.welcome || (!this.session && this.state !== 'connected')) {
        this._fail(err);
        return;
      }
      // Fail the request; a client in a session goes back to its configured servers.
      this._settle(['create', 'join'], null, err);
      this._emit('error', { code: 0, name: err.codeName, message: err.message, fatal: false, error: err });
      if (!this.session) return;
      this._at = { index: 0, target: null };
    } else if (reachableWith(target, this.options.transport)) {
      this._at = { index: this._at.index, target };
    } else {
      // Unreachable as given: back to the configured servers.
      this._at = { index: this._at.index, target: null };
    }
    const why = `redirected to node ${m.node.name} (${m.reason})`;
    const resend = this._pendingMsg;
    if (this.state === 'reconnecting' && this._rc) {
      // An attempt was redirected: go again at once, to the node.
      const rc = this._rc;
      rc.resend = resend;
      clearTimeout(rc.welcomeTimer);
      clearTimeout(rc.timer);
      const t = this.conn;
      this.conn = null;
      if (t) this._abandon(t);
      rc.timer = setTimeout(() => {
        rc.timer = 0;
        this._attempt(rc);
      }, 0);
      return;
    }
    this._startReconnect(why, 0, resend);
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
    const rc = {
      startedAt: now(), attempt: 0, timer: 0, welcomeTimer: 0, reason, previousPeerId: this.peerId,
      sessionKey: this.session ? this._sessionKey : null, onOnline: null, resend,
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
    rc.timer = setTimeout(() => {
      rc.timer = 0;
      this._attempt(rc);
    }, delayMs);
  }

  /** One reconnect attempt: a new transport, then Hello with the resume token. */
  async _attempt(rc) {
    if (this._rc !== rc || this.state !== 'reconnecting') return;
    rc.attempt++;
    const startedAt = now();
    const limit = attemptTimeoutMs(this.rttMs, this.options.connectTimeoutMs);
    /** @type {SignalTransport} */
    let t;
    try {
      t = this._makeTransport();
    } catch (e) {
      this._attemptFailed(describe(e));
      return;
    }
    const up = this._attach(t);
    const first = this._firstBodies();
    try {
      await withTimeout(t.open(first), limit, () => new Error(`not connected within ${limit} ms`));
    } catch (e) {
      if (this.conn === t) this._attemptFailed(e instanceof Error ? e.message : describe(e), null, true);
      return;
    }
    if (this._rc !== rc || this.conn !== t || this.state !== 'reconnecting') {
      // Closed or superseded meanwhile.
      if (this.conn !== t) this._abandon(t);
      return;
    }
    this._transportUp(t, startedAt);
    if (!(first && t.firstSent)) this._writeMsg(this._hello());
    rc.welcomeTimer = setTimeout(() => {
      if (this._rc === rc && this.conn === t) this._attemptFailed(`no Welcome within ${limit} ms`, null, true);
    }, limit);
    up();
  }

  /**
   * The attempt in progress failed: abandon it, then try again after the backoff (or give up).
   * `unreachable`: the server could not be reached, so the next attempt goes to the next one
   * (a redirect's node is dropped for the configured servers, which rotate).
   */
  _attemptFailed(reason, delayMs = /** @type {number|null} */ (null), unreachable = false) {
    const rc = this._rc;
    if (!rc || this.state !== 'reconnecting') return;
    if (unreachable) this._at = rotateServer(this._at, this._servers.length);
    clearTimeout(rc.welcomeTimer);
    const t = this.conn;
    this.conn = null;
    if (t) this._abandon(t);
    const step = reconnectStep({ attempt: rc.attempt, elapsedMs: now() - rc.startedAt, giveUpMs: this.options.reconnectTimeoutMs });
    if (step.action === 'giveup') {
      this._fail(new FspError(0, 'reconnect_failed',
        `could not reconnect to the server within ${this.options.reconnectTimeoutMs} ms (${rc.attempt} attempt(s); last: ${reason})`, { fatal: true }));
      return;
    }
    rc.timer = setTimeout(() => {
      rc.timer = 0;
      this._attempt(rc);
    }, delayMs ?? step.delayMs);
  }

  /** A Welcome ended the reconnection. @param {WelcomeMsg} m */
  _reconnected(rc, m, previousPeerId) {
    this._endReconnect();
    const detail = {
      peerId: m.peerId, previousPeerId, resumed: m.resumed && m.peerId === rc.previousPeerId,
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
    // A redirected create/join goes again here; anything else in flight is void.
    const resend = rc.resend && this._pending && !rc.sessionKey ? rc.resend : null;
    if (!resend) this._settle(null, null, new FspError(0, 'connection_lost', 'the connection was lost and could not be resumed'));
    this._emit('reconnected', detail);
    if (resend) {
      this._sendMsg(resend);
      return;
    }
    const key = rc.sessionKey;
    if (!key) {
      this._sessionKey = null;
      return;
    }
    this._rejoin = { previousPeerId: rc.previousPeerId, code: key.code };
    this._request('join', { type: 'JoinSession', code: key.code, password: key.password }).catch((e) => {
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
    clearTimeout(this._pumpTimer);
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

  // --- internals: WebRTC per peer ----------------------------------------------------------

  /** @param {PeerInfo} info @param {boolean} offerer */
  _addLink(info, offerer) {
    const l = new PeerLink(info);
    this.links.set(l.id, l);
    if (this.options.forceRelay) {
      l.fallback = true;
    } else {
      l.deadline = setTimeout(() => {
        if (this.links.get(l.id) !== l) return;
        l.fallback = true;
        this._evaluate(l);
      }, this.options.directTimeoutMs);
      if (offerer) this._startDirect(l, true);
    }
    this._evaluate(l, true);
    return l;
  }

  /** @param {PeerLink} l */
  _dropLink(l) {
    clearTimeout(l.deadline);
    clearTimeout(l.retry);
    this._closePc(l);
    if (this.links.get(l.id) === l) this.links.delete(l.id);
  }

  /** @param {PeerLink} l */
  _closePc(l) {
    const pc = l.pc;
    l.pc = null;
    l.dc = null;
    l.directKind = null;
    l.iceRttMs = null;
    l.candidatePair = '';
    l.pendingCandidates = [];
    if (pc) {
      try {
        pc.close();
      } catch {
        // closed already
      }
    }
  }

  _iceServers() {
    if (this.options.iceServers) return this.options.iceServers;
    const list = this.welcome ? this.welcome.iceServers : [];
    return list.map((s) => {
      /** @type {RTCIceServer} */
      const out = { urls: s.urls };
      if (s.username !== null) out.username = s.username;
      if (s.credential !== null) out.credential = s.credential;
      return out;
    });
  }

  /**
   * New RTCPeerConnection for a peer (replacing any old one).
   * @param {PeerLink} l
   * @param {boolean} offerer
   */
  _startDirect(l, offerer) {
    this._closePc(l);
    const pc = new RTCPeerConnection({
      iceServers: this._iceServers(),
      iceTransportPolicy: this.options.iceTransportPolicy,
    });
    l.pc = pc;
    let endSent = false;
    pc.onicecandidate = (e) => {
      if (l.pc !== pc) return;
      if (!e.candidate) {
        if (!endSent) {
          endSent = true;
          this._sendMsg({ type: 'Signal', to: l.id, signal: { type: 'EndOfCandidates' } });
        }
        return;
      }
      if (!e.candidate.candidate) return; // end of one generation
      this._sendMsg({
        type: 'Signal', to: l.id,
        signal: {
          type: 'IceCandidate',
          candidate: e.candidate.candidate,
          sdpMid: e.candidate.sdpMid ?? null,
          sdpMLineIndex: e.candidate.sdpMLineIndex ?? null,
        },
      });
    };
    pc.onconnectionstatechange = () => {
      if (l.pc !== pc) return;
      const s = pc.connectionState;
      if (s === 'failed' || s === 'closed') {
        l.fallback = true;
        this._scheduleRetry(l);
      }
      if (s === 'disconnected') l.fallback = true;
      this._evaluate(l);
    };
    if (offerer) {
      this._setupChannel(l, pc, pc.createDataChannel(DATA_CHANNEL_LABEL, { ordered: false, maxRetransmits: 0 }));
      this._op(l, async () => {
        const offer = await pc.createOffer();
        if (l.pc !== pc) return;
        await pc.setLocalDescription(offer);
        if (l.pc !== pc) return;
        this._sendMsg({ type: 'Signal', to: l.id, signal: { type: 'Offer', sdp: /** @type {any} */ (pc.localDescription).sdp } });
      });
    } else {
      pc.ondatachannel = (e) => {
        if (l.pc === pc) this._setupChannel(l, pc, e.channel);
      };
    }
    this._evaluate(l);
    return pc;
  }

  /** @param {PeerLink} l @param {RTCPeerConnection} pc @param {RTCDataChannel} dc */
  _setupChannel(l, pc, dc) {
    dc.binaryType = 'arraybuffer';
    l.dc = dc;
    dc.onopen = () => {
      if (l.dc === dc) this._evaluate(l);
    };
    dc.onclose = () => {
      if (l.dc !== dc) return;
      l.fallback = true;
      this._evaluate(l);
      this._scheduleRetry(l);
    };
    dc.onmessage = (e) => {
      const data = typeof e.data === 'string' ? utf8Encoder.encode(e.data) : new Uint8Array(e.data);
      this.stats.directReceived++;
      this._deliverFlight(l.id, data, l.directKind || 'direct');
    };
  }

  /** Run async WebRTC work for one peer in order; errors are reported, not thrown. */
  _op(l, fn) {
    l.chain = l.chain.then(fn).catch((e) => {
      if (this.links.get(l.id) !== l || this.state === 'closed') return;
      console.warn(`fsp2p: WebRTC with peer ${l.id}:`, e);
      l.fallback = true;
      this._evaluate(l);
    });
  }

  /** @param {number} from @param {Signal} s */
  _onSignal(from, s) {
    if (s.type === 'App') {
      this._emit('appsignal', { from, data: s.data });
      return;
    }
    let l = this.links.get(from);
    if (!l) {
      if (!this.session) return;
      l = this._addLink({ id: from, name: '', client: 'Other' }, false);
    }
    if (this.options.forceRelay) return;
    const link = l;
    switch (s.type) {
      case 'Offer': {
        // Glare (both offered): the lower peer id keeps its own offer.
        if (link.pc && link.pc.signalingState === 'have-local-offer' && this.peerId < from) return;
        const pc = this._startDirect(link, false);
        this._op(link, async () => {
          await pc.setRemoteDescription({ type: 'offer', sdp: s.sdp });
          await this._flushCandidates(link, pc);
          const answer = await pc.createAnswer();
          if (link.pc !== pc) return;
          await pc.setLocalDescription(answer);
          if (link.pc !== pc) return;
          this._sendMsg({ type: 'Signal', to: from, signal: { type: 'Answer', sdp: /** @type {any} */ (pc.localDescription).sdp } });
        });
        break;
      }
      case 'Answer': {
        const pc = link.pc;
        if (!pc) return;
        this._op(link, async () => {
          if (link.pc !== pc || pc.signalingState !== 'have-local-offer') return;
          await pc.setRemoteDescription({ type: 'answer', sdp: s.sdp });
          await this._flushCandidates(link, pc);
        });
        break;
      }
      case 'IceCandidate': {
        const c = { candidate: s.candidate, sdpMid: s.sdpMid, sdpMLineIndex: s.sdpMLineIndex };
        const pc = link.pc;
        if (!pc) return;
        this._op(link, async () => {
          if (link.pc !== pc) return;
          if (!pc.remoteDescription) {
            link.pendingCandidates.push(c);
            return;
          }
          await pc.addIceCandidate(c).catch((e) => console.debug('fsp2p: candidate refused', e));
        });
        break;
      }
      case 'EndOfCandidates':
        // Optional hint; ICE finishes on its own timers.
        break;
    }
  }

  async _flushCandidates(l, pc) {
    const list = l.pendingCandidates;
    l.pendingCandidates = [];
    for (const c of list) {
      if (l.pc !== pc) return;
      await pc.addIceCandidate(c).catch((e) => console.debug('fsp2p: candidate refused', e));
    }
  }

  /** After a failure, the lower peer id tries a fresh direct connection later. */
  _scheduleRetry(l) {
    const ms = this.options.directRetryMs;
    if (!ms || this.options.forceRelay || this.peerId > l.id || l.retry) return;
    l.retry = setTimeout(() => {
      l.retry = 0;
      if (this.links.get(l.id) !== l || this.options.forceRelay || this.state === 'closed') return;
      if (this._directUsable(l)) return;
      this._startDirect(l, true);
    }, ms);
  }

  /** @param {PeerLink} l */
  _directUsable(l) {
    return !this.options.forceRelay && !!l.dc && l.dc.readyState === 'open' && !!l.pc && l.pc.connectionState === 'connected';
  }

  /** Recompute a peer's path and announce a change. */
  _evaluate(l, initial = false) {
    /** @type {PeerPath} */
    let path;
    if (this._directUsable(l)) {
      if (!l.directKind) {
        // Classify the selected candidate pair first (host/srflx vs TURN relay).
        this._classify(l);
        return;
      }
      path = l.directKind;
      clearTimeout(l.deadline);
      clearTimeout(l.retry);
      l.retry = 0;
    } else if (l.fallback || this.options.forceRelay) path = 'relay';
    else path = 'connecting';
    if (path === l.path && !initial) return;
    const previous = l.path;
    l.path = path;
    if (!initial || path !== 'connecting') this._emit('pathchange', { peer: l.id, path, previous });
  }

  async _classify(l) {
    const pc = l.pc;
    if (!pc || l.classifying) return;
    l.classifying = true;
    try {
      const info = await pairInfo(pc);
      if (l.pc !== pc) return;
      l.directKind = info && info.turn ? 'turn' : 'direct';
      if (info) {
        l.iceRttMs = info.rttMs;
        l.candidatePair = info.desc;
      }
    } catch {
      if (l.pc === pc) l.directKind = 'direct';
    } finally {
      l.classifying = false;
    }
    if (l.pc === pc) this._evaluate(l);
  }

  async _pollStats() {
    for (const l of this.links.values()) {
      const pc = l.pc;
      if (!pc || !this._directUsable(l)) continue;
      try {
        const info = await pairInfo(pc);
        if (l.pc !== pc || !info) continue;
        l.iceRttMs = info.rttMs;
        l.candidatePair = info.desc;
        const kind = info.turn ? 'turn' : 'direct';
        if (kind !== l.directKind) {
          l.directKind = kind;
          this._evaluate(l);
        }
      } catch {
        // stats are best effort
      }
    }
  }
}

/**
 * The selected candidate pair of a connection: whether it goes through TURN, its RTT.
 * @param {RTCPeerConnection} pc
 */
async function pairInfo(pc) {
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach((r) => {
    if (r.type === 'transport' && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId) || pair;
  });
  if (!pair) {
    stats.forEach((r) => {
      if (!pair && r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') pair = r;
    });
  }
  if (!pair) return null;
  const local = stats.get(pair.localCandidateId);
  const remote = stats.get(pair.remoteCandidateId);
  const lt = local ? local.candidateType : '?';
  const rt = remote ? remote.candidateType : '?';
  return {
    turn: lt === 'relay' || rt === 'relay',
    rttMs: typeof pair.currentRoundTripTime === 'number' ? pair.currentRoundTripTime * 1000 : null,
    desc: `${lt}/${local && local.protocol ? local.protocol : '?'} ↔ ${rt}`,
  };
}
