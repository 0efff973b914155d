// The flight-data envelope (PROTOCOL.md §5; client/web/flight.js): sequence numbers, the
// stale-message filter, and the client's envelope handling end to end over a fake transport.
// Runs in Node without a server: node --test tests/browser/flight.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  decodeClientMsg, encodeRelay, decodeRelay, toHex, fromHex, FLIGHT_HEADER_BYTES, wrapFlight,
  unwrapFlight, nextSeq, seqNewer, SeqFilter,
} from '../../client/web/fsp2p.js';
import {
  clientInSession,
} from './fakes.mjs';

// --- flight-data envelope (PROTOCOL.md §5) ---------------------------------------------------

test('envelope: u32 little-endian sequence number, then the application bytes', () => {
  const hi = new TextEncoder().encode('hi');
  assert.equal(FLIGHT_HEADER_BYTES, 4);
  assert.equal(toHex(wrapFlight(1, hi)), '010000006869');
  assert.equal(toHex(wrapFlight(0x01020304, hi)), '040302016869');
  // client/tests/CodecTests.cs "envelope layout": SnapshotEnvelope.Wrap(0x01020304, { 9, 8 }).
  assert.equal(toHex(wrapFlight(0x01020304, Uint8Array.of(9, 8))), '040302010908');
  assert.equal(toHex(wrapFlight(0xffffffff, new Uint8Array(0))), 'ffffffff');
  const u = unwrapFlight(fromHex('04030201686869'));
  assert.equal(u.seq, 0x01020304);
  assert.equal(toHex(u.payload), '686869');
  assert.deepEqual(unwrapFlight(fromHex('ffffffff')), { seq: 0xffffffff, payload: new Uint8Array(0) });
  assert.equal(unwrapFlight(fromHex('010203')), null, '3 bytes cannot hold the header');
  assert.equal(unwrapFlight(new Uint8Array(0)), null);
  // Round trip, and the payload is a view (no copy) into the received frame.
  const f = wrapFlight(0xdeadbeef, Uint8Array.from([9, 8, 7]));
  const back = unwrapFlight(f);
  assert.equal(back.seq, 0xdeadbeef);
  assert.deepEqual([...back.payload], [9, 8, 7]);
  assert.equal(back.payload.buffer, f.buffer);
  assert.throws(() => wrapFlight(2 ** 32, hi), RangeError);
  assert.throws(() => wrapFlight(-1, hi), RangeError);
  assert.throws(() => wrapFlight(1, [1, 2]), TypeError);
});

test('envelope: serial-number order wraps around at 2^32', () => {
  assert.equal(nextSeq(0), 1);
  // 0xFFFFFFFF is skipped: a flight frame never starts FF FF FF FF (a quality frame's mark).
  assert.equal(nextSeq(0xfffffffe), 0);
  assert.equal(nextSeq(0xffffffff), 0);
  assert.equal(seqNewer(1, 0), true);
  assert.equal(seqNewer(0, 1), false);
  assert.equal(seqNewer(5, 5), false, 'a duplicate is not newer');
  assert.equal(seqNewer(0, 0xffffffff), true, '0 follows 2^32-1');
  assert.equal(seqNewer(3, 0xfffffffd), true);
  assert.equal(seqNewer(0xffffffff, 0), false);
  // Half the number space ahead is newer, (int32)(seq - last) > 0; exactly 2^31 apart is not (int.MinValue).
  assert.equal(seqNewer(0x7fffffff, 0), true);
  assert.equal(seqNewer(0x80000000, 0), false);
  assert.equal(seqNewer(0x80000001, 0), false);
  assert.equal(seqNewer(0, 0x80000000), false);
  assert.equal(seqNewer(0, 0x80000001), true);
  // Same answers as C#'s unchecked((int)(seq - last)) > 0, computed with BigInt.
  const ref = (seq, last) => BigInt.asIntN(32, BigInt(seq) - BigInt(last)) > 0n;
  let x = 12345;
  const rnd = () => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return (x * 2 + (x & 1)) >>> 0;
  };
  const edge = [0, 1, 2, 0x7ffffffe, 0x7fffffff, 0x80000000, 0x80000001, 0xfffffffe, 0xffffffff];
  for (const a of edge) for (const b of edge) assert.equal(seqNewer(a, b), ref(a, b), `${a} vs ${b}`);
  for (let i = 0; i < 5000; i++) {
    const a = rnd();
    const b = rnd();
    assert.equal(seqNewer(a, b), ref(a, b), `${a} vs ${b}`);
  }
});

test('envelope: the receiver drops frames that are not newer, per sending peer', () => {
  const f = new SeqFilter();
  const run = (peer, seqs) => seqs.map((s) => f.accept(peer, s));
  // The first frame from a peer is accepted whatever its number.
  assert.deepEqual(run(7, [100, 99, 100, 101, 103, 102, 104]), [true, false, false, true, true, false, true]);
  // Another peer has its own state.
  assert.deepEqual(run(8, [5, 6, 1]), [true, true, false]);
  assert.equal(f.dropped, 4);
  // Across the wrap: 2^32-2, 2^32-1, 0, 1 are in order; 2^32-1 after 1 is stale.
  assert.deepEqual(run(9, [0xfffffffe, 0xffffffff, 0, 1, 0xffffffff, 2]), [true, true, true, true, false, true]);
  // A relay → direct switch: the sender's one counter continues on the new path; frames
  // still in flight on the old path arrive late and are dropped.
  assert.deepEqual(run(10, [50, 51, 52 /* direct */, 53, 51 /* late relay */, 52, 54]), [true, true, true, true, false, false, true]);
  assert.equal(f.dropped, 7);
  // reset: the peer's next frame is accepted again (it left and came back, or restarted its counter).
  f.reset(7);
  assert.equal(f.accept(7, 1), true);
  f.retain([7, 9]);
  assert.deepEqual([...f.last.keys()].sort(), [7, 9]);
  assert.equal(f.accept(8, 0), true, 'forgotten by retain');
  f.clear();
  assert.equal(f.last.size, 0);
});

// --- the client's envelope handling, over a fake transport ----------------------------------------

test('client: send() wraps with one counter for all peers; receive strips and drops stale frames per peer', async () => {
  const { c, fake, server, got, events, relayIn } = await clientInSession();
  assert.equal(c.transport, 'websocket');
  assert.deepEqual(events.map((e) => [e.kind, e.url]), [['websocket', 'websocket://fake']]);
  // Hello went first through the transport, as a bare body.
  assert.equal(decodeClientMsg(fake.sent[0]).type, 'Hello');

  // Sending: each send() takes the next number; a send to everyone is one relay frame to peer 0.
  const hi = (s) => new TextEncoder().encode(s);
  assert.equal(c.send(0, hi('a')), true);
  assert.equal(c.send(2, hi('b')), true);
  assert.equal(c.send(0, hi('c')), true);
  const out = fake.relayed.map((f) => {
    const r = decodeRelay(f);
    const u = unwrapFlight(r.payload);
    return [r.peer, u.seq, new TextDecoder().decode(u.payload)];
  });
  assert.deepEqual(out, [[0, 1, 'a'], [2, 2, 'b'], [0, 3, 'c']]);
  // The sender's counter wraps like a u32 and skips 0xFFFFFFFF (a quality frame's mark, PROTOCOL.md §14).
  c._txSeq = 0xfffffffd;
  c.send(3, hi('w1'));
  c.send(3, hi('w2'));
  c.send(3, hi('w3'));
  assert.deepEqual(fake.relayed.slice(3).map((f) => unwrapFlight(decodeRelay(f).payload).seq), [0xfffffffe, 0, 1]);
  // The relay limit counts the envelope: maxRelayPayload - 4 bytes of game data at most.
  assert.equal(c.maxFlightPayload, 1096);
  assert.equal(c.send(2, new Uint8Array(1096)), true);
  assert.equal(c.send(2, new Uint8Array(1097)), false);

  // Receiving: the game gets the bytes without the envelope; stale frames are dropped and counted per peer.
  relayIn(2, 10, 'x10');
  relayIn(2, 9, 'x9');
  relayIn(2, 10, 'x10 again');
  relayIn(3, 1, 'y1'); // another peer: its own numbers
  relayIn(2, 11, 'x11');
  relayIn(3, 0, 'y-stale');
  relayIn(3, 2, 'y2');
  fake.onRelay(encodeRelay(2, fromHex('0102'))); // too short for the envelope
  assert.deepEqual(got, [[2, 'x10', 'relay'], [3, 'y1', 'relay'], [2, 'x11', 'relay'], [3, 'y2', 'relay']]);
  const peers = Object.fromEntries(c.getPeers().map((p) => [p.id, [p.rx, p.staleDropped]]));
  assert.deepEqual(peers, { 2: [2, 2], 3: [2, 1] });
  assert.equal(c.stats.staleDropped, 3);
  assert.equal(c.stats.flightBadFrames, 1);

  // Wrap-around on the receiving side.
  relayIn(3, 0xfffffffe, 'w-stale'); // older than 2
  got.length = 0;
  server({ type: 'PeerLeft', peer: 3, reason: 'Left' }); // forgets peer 3
  relayIn(3, 0xfffffffd, 'z1');
  relayIn(3, 0xfffffffe, 'z2');
  relayIn(3, 0, 'z3');
  relayIn(3, 0xfffffffe, 'z-stale');
  assert.deepEqual(got.map((g) => g[1]), ['z1', 'z2', 'z3']);

  // A peer that comes back online (resumed; maybe a restarted client) starts afresh.
  got.length = 0;
  relayIn(2, 5, 'stale');
  server({ type: 'PeerStatus', peer: 2, online: false });
  server({ type: 'PeerStatus', peer: 2, online: true });
  relayIn(2, 5, 'after resume');
  assert.deepEqual(got.map((g) => g[1]), ['after resume']);
  c.close();
  assert.equal(fake.closed.code, 0);
});
