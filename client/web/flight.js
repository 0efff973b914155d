// FlightSim P2P browser client: the flight-data envelope (PROTOCOL.md §5, "client
// convention"): a u32 sequence number before every flight-data message, and the filter
// that drops messages older than one already delivered. Pure: no I/O, no clock.

import { U32_MAX, checkUint } from './codec.js';

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

/**
 * The sequence number after `seq`: 0xFFFFFFFF is skipped (after 0xFFFFFFFE comes 0), so a flight
 * frame never starts FF FF FF FF, the mark of a quality frame (PROTOCOL.md §14); a stray
 * 0xFFFFFFFF still wraps to 0.
 */
export function nextSeq(seq) {
  const n = (seq + 1) >>> 0;
  return n === 0xffffffff ? 0 : n;
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
