// FlightSim P2P browser client: the signaling transports, the I/O of the control stream
// and the relay. WebTransportSignal (control stream + datagrams), WebSocketSignal
// (PROTOCOL.md §10) and AutoSignal (happy eyeballs: WebTransport first, WebSocket when it
// is missing, fails or is slow; when to start which is decided by core.js).

import {
  DEFAULT_MAX_FRAME_BYTES, FspError, DecodeError, utf8Encoder, encodeFrame, FrameReader,
  WEBSOCKET_PATH, encodeWsControl, encodeWsRelay, decodeWsMessage, wsCloseCode, fromWsCloseCode,
  connectUrl, toHex,
} from './codec.js';
import { carriesFirst, raceConnected, raceFailed, raceSlowReason, raceStart } from './core.js';

export function describe(e) {
  return redact(describe0(e));
}

/**
 * Hide the first request (join code, password, resume token) and the access token should a URL
 * with them end up in a message.
 */
export function redact(s) {
  return String(s).replace(/([?&](?:first|access_token)=)[A-Za-z0-9._~%+-]*/g, '$1…');
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

export function withTimeout(promise, ms, onTimeout) {
  if (!ms || ms <= 0) return promise;
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(onTimeout()), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export const now = () => performance.now();

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
 *   datagramMaxAgeMs: number, fallbackDelayMs: number, wsMaxBufferedBytes: number, accessToken?: string|null}} TransportOptions
 *   accessToken: the access token of this connection (PROTOCOL.md §13; null without one), for the
 *   URL's `access_token` parameter; a custom transport carries it its own way
 */

/** @implements {SignalTransport} */
export class WebTransportSignal {
  /**
   * @param {{url: string, certHash?: Uint8Array|null, connectTimeoutMs?: number, datagramMaxAgeMs?: number, accessToken?: string|null}} opts
   */
  constructor(opts) {
    this.kind = 'webtransport';
    this.url = opts.url;
    this.certHash = opts.certHash || null;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 10000;
    this.datagramMaxAgeMs = opts.datagramMaxAgeMs ?? 100;
    /** the access token for the CONNECT URL (PROTOCOL.md §13); never logged */
    this.accessToken = opts.accessToken || null;
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
      // The URL with `first` and the access token holds secrets: it is used here and nowhere else.
      wt = new WebTransport(connectUrl(this.url, first, this.accessToken), wtOpts);
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
  /** @param {{wsUrl: string, connectTimeoutMs?: number, wsMaxBufferedBytes?: number, accessToken?: string|null}} opts */
  constructor(opts) {
    this.kind = 'websocket';
    this.url = opts.wsUrl;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 10000;
    this.maxBufferedBytes = opts.wsMaxBufferedBytes ?? 32 * 1024;
    /** the access token for the upgrade URL (PROTOCOL.md §13); never logged */
    this.accessToken = opts.accessToken || null;
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
      // The URL with `first` and the access token holds secrets: it is used here and nowhere else.
      ws = new WebSocket(connectUrl(this.url, first, this.accessToken));
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
        const alone = carriesFirst(attempts);
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
          const won = raceConnected(kind, attempts);
          for (const o of attempts) if (o !== a && won.abandon.includes(o.kind)) o.t.close(0, 'happy eyeballs: the other transport won');
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
          const next = raceFailed(kind, e && e.message ? e.message : describe(e), attempts);
          if (next.start) start(next.start, next.why);
          if (attempts.every((o) => o.failed)) fail();
        });
      };
      const plan = raceStart(typeof WebTransport !== 'undefined', this.fallbackDelayMs);
      start(plan.start, plan.why);
      if (plan.websocketAfterMs !== null && !done) {
        timer = setTimeout(() => start('websocket', raceSlowReason(this.fallbackDelayMs)), plan.websocketAfterMs);
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
