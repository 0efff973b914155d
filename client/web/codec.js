// FlightSim P2P browser client: the wire codec (docs/PROTOCOL.md).
//
// Constants, errors, postcard (hand-written, strict like the Rust side), the client and
// server messages, control-stream framing, relay frame headers, WebSocket messages (§10)
// and the first request in the URL (§1, §10). Pure: no I/O, no clock. Imported through
// fsp2p.js; the golden vectors of docs/vectors.txt test it (tests/browser/codec.test.mjs).

// ---------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------

/**
 * Protocol version carried in Hello. 3: this client may send `Report` (PROTOCOL.md §14); 4:
 * CreateSession / JoinSession end with `region_rtts` on the connection (§4, §11 "Regions"); 5: this
 * client follows a session that moves to another node make-before-break (§11 "Moving a session", §12 rule 10).
 * The Hello has exactly version 2's fields (the access token option, which this client leaves
 * empty: its token rides in the URL).
 */
export const PROTOCOL_VERSION = 5;
/** The first protocol version whose CreateSession / JoinSession carry `region_rtts`. */
export const REGIONS_MIN_VERSION = 4;
/** The first protocol version whose connections take `Report`. */
export const REPORT_MIN_VERSION = 3;
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
const CLIENT_MSG_TYPES = ['Hello', 'CreateSession', 'JoinSession', 'Signal', 'LeaveSession', 'Ping', 'Report'];
/** Report enums (PROTOCOL.md §14), in wire order. */
export const LINK_PATHS = Object.freeze(['connecting', 'direct', 'turn', 'relay']);
export const GRADES = Object.freeze(['unknown', 'excellent', 'good', 'poor', 'lost']);
export const MILESTONE_KINDS = Object.freeze(['welcome', 'first_signal', 'direct', 'relay', 'first_frame']);
export const ICE_FAIL_REASONS = Object.freeze(['timeout', 'failed', 'disconnected', 'no_candidates', 'other']);
/** Bounds of a ReportV1: links, milestones, ICE failures. */
export const REPORT_LIMITS = Object.freeze({ links: 64, setup: 16, iceFailures: 16 });
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
  // Access control (§13)
  23: ['token_required', true],
  24: ['token_invalid', true],
  25: ['token_expired', false], // closes; come back with a fresh token. Without a close: a warning
  26: ['forbidden', false],
  27: ['token_revoked', true],
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

export const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

const U16_MAX = 0xffff;
export const U32_MAX = 0xffffffff;
const U64_MAX = (1n << 64n) - 1n;

export function checkUint(v, max, what) {
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
 * @typedef {{type: 'Hello', version: number, client: ClientKind, relayMode: RelayMode, name: string, resumeToken: Uint8Array|null, accessToken?: string|null}
 *   | {type: 'CreateSession', maxPeers: number, password: string|null, regionRtts?: RegionRtt[]}
 *   | {type: 'JoinSession', code: string, password: string|null, regionRtts?: RegionRtt[]}
 *   | {type: 'Signal', to: number, signal: Signal}
 *   | {type: 'LeaveSession'}
 *   | {type: 'Ping', clientTimeMs: bigint}
 *   | {type: 'Report', version: number, body: Uint8Array}} ClientMsg
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

/** @typedef {{region: string, rttMs: number}} RegionRtt one measured round trip (PROTOCOL.md §4) */

/** `region_rtts`: a sequence of {region: String, rtt_ms: u32}. The server checks names and counts. */
function writeRegionRtts(w, list) {
  w.varint(list.length);
  for (const e of list) w.string(e.region).u32(e.rttMs);
}

/**
 * Encode a client message body (no length prefix). `version`: the connection's (PROTOCOL.md §4:
 * from version 4 CreateSession / JoinSession end with `region_rtts`, absent in `m` = empty).
 * @param {ClientMsg} m
 * @param {number} [version] the connection's protocol version (default 1: no version-dependent fields)
 * @returns {Uint8Array}
 */
export function encodeClientMsg(m, version = 1) {
  const w = new Writer();
  w.enumTag(CLIENT_MSG_TYPES, m.type, 'ClientMsg');
  switch (m.type) {
    case 'Hello':
      w.u16(m.version).enumTag(CLIENT_KINDS, m.client, 'ClientKind').enumTag(RELAY_MODES, m.relayMode, 'RelayMode');
      w.string(m.name).option(m.resumeToken, (w, v) => w.bytes(v));
      // Version 2 appends the access token (PROTOCOL.md §4: Hello is versioned on the wire).
      if (m.version >= 2) w.option(m.accessToken ?? null, (w, v) => w.string(v));
      break;
    case 'CreateSession':
      w.u32(m.maxPeers).option(m.password, (w, v) => w.string(v));
      if (version >= REGIONS_MIN_VERSION) writeRegionRtts(w, m.regionRtts ?? []);
      break;
    case 'JoinSession':
      w.string(m.code).option(m.password, (w, v) => w.string(v));
      if (version >= REGIONS_MIN_VERSION) writeRegionRtts(w, m.regionRtts ?? []);
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
    case 'Report':
      w.u16(m.version).bytes(m.body);
      break;
  }
  return w.finish();
}

/**
 * Decode exactly one client message body; throws DecodeError on anything the Rust side would refuse.
 * `version`: the connection's (its Hello's); from 4 CreateSession / JoinSession carry `regionRtts`.
 * @param {Uint8Array} bytes
 * @param {number} [version] default 1: no version-dependent fields
 * @returns {ClientMsg}
 */
export function decodeClientMsg(bytes, version = 1) {
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
      // Only a version that has the field carries it (a version-1 Hello ends here).
      const accessToken = version >= 2 ? r.option((r) => r.string()) : null;
      m = { type, version, client, relayMode, name, resumeToken, accessToken };
      break;
    }
    case 'CreateSession':
      m = { type, maxPeers: r.u32(), password: r.option((r) => r.string()) };
      if (version >= REGIONS_MIN_VERSION) m.regionRtts = r.vec((r) => ({ region: r.string(), rttMs: r.u32() }));
      break;
    case 'JoinSession':
      m = { type, code: r.string(), password: r.option((r) => r.string()) };
      if (version >= REGIONS_MIN_VERSION) m.regionRtts = r.vec((r) => ({ region: r.string(), rttMs: r.u32() }));
      break;
    case 'Signal':
      m = { type, to: r.u32(), signal: readSignal(r) };
      break;
    case 'LeaveSession':
      m = { type };
      break;
    case 'Ping':
      m = { type, clientTimeMs: r.u64() };
      break;
    default:
      m = { type: 'Report', version: r.u16(), body: r.bytes() };
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

/**
 * Query parameter of the WebTransport CONNECT / WebSocket upgrade URL that carries the access
 * token (PROTOCOL.md §13; SignalR's name: browsers cannot set headers on either).
 */
export const ACCESS_TOKEN_PARAM = 'access_token';

/**
 * The URL of a connection: `url` with the first request (`first`, if any) and the access token
 * (`access_token`, percent-encoded, if any). The result holds secrets (the token, the join code
 * and password): use it to connect, never log or show it.
 * @param {string} url @param {Uint8Array[]|null} first @param {string|null} [accessToken]
 */
export function connectUrl(url, first, accessToken = null) {
  const u = new URL(first ? urlWithFirst(url, first) : url);
  if (accessToken) u.searchParams.set(ACCESS_TOKEN_PARAM, accessToken);
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
export function certHashBytes(h) {
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

// ---------------------------------------------------------------------------
// Report bodies (PROTOCOL.md §14): ReportV1, the body of `ClientMsg::Report` version 1
// ---------------------------------------------------------------------------

/**
 * @typedef {{peer: number, path: string, grade: string, rttBucket: number, lossBucket: number}} LinkReport
 * @typedef {{kind: string, path: string, ms: number}} Milestone
 * @typedef {{links: LinkReport[], setup: Milestone[], iceFailures: {reason: string}[], candidates: number}} ReportV1
 */

/**
 * postcard(ReportV1): links (≤ 64), setup (≤ 16), ice_failures (≤ 16), candidates (u8 bit set:
 * 1 host, 2 srflx, 4 relay, 8 prflx). Carries no addresses, names or tokens.
 * @param {ReportV1} r @returns {Uint8Array}
 */
export function encodeReportV1(r) {
  if (r.links.length > REPORT_LIMITS.links) throw new RangeError(`at most ${REPORT_LIMITS.links} links`);
  if (r.setup.length > REPORT_LIMITS.setup) throw new RangeError(`at most ${REPORT_LIMITS.setup} milestones`);
  if (r.iceFailures.length > REPORT_LIMITS.iceFailures) throw new RangeError(`at most ${REPORT_LIMITS.iceFailures} ICE failures`);
  const w = new Writer();
  w.varint(r.links.length);
  for (const l of r.links) {
    w.u32(l.peer).enumTag(LINK_PATHS, l.path, 'LinkPath').enumTag(GRADES, l.grade, 'Grade').u8(l.rttBucket).u8(l.lossBucket);
  }
  w.varint(r.setup.length);
  for (const m of r.setup) w.enumTag(MILESTONE_KINDS, m.kind, 'MilestoneKind').enumTag(LINK_PATHS, m.path, 'LinkPath').u32(m.ms);
  w.varint(r.iceFailures.length);
  for (const f of r.iceFailures) w.enumTag(ICE_FAIL_REASONS, f.reason, 'IceFailReason');
  w.u8(r.candidates);
  return w.finish();
}

/**
 * Decode a ReportV1 body, strictly (bounds, enum tags, no trailing bytes), as the server does.
 * @param {Uint8Array} bytes @returns {ReportV1}
 */
export function decodeReportV1(bytes) {
  const r = new Reader(bytes);
  const bounded = (max, what, read) => {
    const n = r.length(`${what} count`);
    if (n > max) throw new DecodeError(`${n} ${what} (at most ${max})`);
    const out = [];
    for (let i = 0; i < n; i++) out.push(read());
    return out;
  };
  const links = bounded(REPORT_LIMITS.links, 'links', () => ({
    peer: r.u32(), path: r.enumTag(LINK_PATHS, 'LinkPath'), grade: r.enumTag(GRADES, 'Grade'), rttBucket: r.u8(), lossBucket: r.u8(),
  }));
  const setup = bounded(REPORT_LIMITS.setup, 'milestones', () => ({
    kind: r.enumTag(MILESTONE_KINDS, 'MilestoneKind'), path: r.enumTag(LINK_PATHS, 'LinkPath'), ms: r.u32(),
  }));
  const iceFailures = bounded(REPORT_LIMITS.iceFailures, 'ICE failures', () => ({ reason: r.enumTag(ICE_FAIL_REASONS, 'IceFailReason') }));
  const candidates = r.u8();
  r.end();
  return { links, setup, iceFailures, candidates };
}

/** `ClientMsg::Report` version 1 carrying `report`. @param {ReportV1} report @returns {ClientMsg} */
export function reportMsg(report) {
  return { type: 'Report', version: 1, body: encodeReportV1(report) };
}
