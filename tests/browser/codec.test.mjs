// Codec of client/web/fsp2p.js against the golden vectors (docs/vectors.txt),
// written by the Rust reference implementation, plus the client logic that needs
// no network: the flight-data envelope (PROTOCOL.md §5), WebSocket messages (§10),
// transport selection ("happy eyeballs", with fake transports) and the client's
// envelope handling end to end over a fake transport. Runs in Node without a server:
//   node --test tests/browser/codec.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

import {
  decodeClientMsg, encodeClientMsg, decodeServerMsg, encodeServerMsg,
  encodeFrame, FrameReader, encodeRelay, decodeRelay, takeVarint, Writer, Reader,
  DecodeError, FspError, ERROR_CODES, errorName, toHex, fromHex,
  FLIGHT_HEADER_BYTES, wrapFlight, unwrapFlight, nextSeq, seqNewer, SeqFilter,
  WS_CONTROL, WS_RELAY, encodeWsControl, encodeWsRelay, decodeWsMessage, wsCloseCode, fromWsCloseCode,
  AutoSignal, FlightSimP2P, TRANSPORT_CHOICES,
} from '../../client/web/fsp2p.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const vectorsFile = path.join(root, 'docs/vectors.txt');

/** @returns {{ok: boolean, type: string, name: string, bytes: Uint8Array}[]} */
function loadVectors() {
  const out = [];
  for (const line of readFileSync(vectorsFile, 'utf8').split('\n')) {
    if (!line.trim() || line.startsWith('#')) continue;
    const [ok, type, name, hex = ''] = line.split('\t');
    assert.ok(ok === 'ok' || ok === 'bad', `bad vector line: ${line}`);
    assert.ok(type === 'ClientMsg' || type === 'ServerMsg', `bad vector type: ${line}`);
    out.push({ ok: ok === 'ok', type, name, bytes: fromHex(hex.trim()) });
  }
  return out;
}

const vectors = loadVectors();
const codecs = {
  ClientMsg: { decode: decodeClientMsg, encode: encodeClientMsg },
  ServerMsg: { decode: decodeServerMsg, encode: encodeServerMsg },
};

test('the vector file covers every message variant', () => {
  assert.ok(vectors.length >= 70, `only ${vectors.length} vectors`);
  const seen = new Set();
  for (const v of vectors.filter((v) => v.ok)) seen.add(`${v.type}.${codecs[v.type].decode(v.bytes).type}`);
  for (const t of ['Hello', 'CreateSession', 'JoinSession', 'Signal', 'LeaveSession', 'Ping']) {
    assert.ok(seen.has(`ClientMsg.${t}`), `no vector for ClientMsg.${t}`);
  }
  for (const t of ['Welcome', 'SessionCreated', 'SessionJoined', 'PeerJoined', 'PeerLeft', 'HostChanged',
    'Signal', 'Error', 'Pong', 'SessionLeft', 'PeerStatus', 'GoingAway']) {
    assert.ok(seen.has(`ServerMsg.${t}`), `no vector for ServerMsg.${t}`);
  }
});

for (const v of vectors) {
  if (v.ok) {
    test(`ok ${v.type} ${v.name}: decodes and re-encodes byte for byte`, () => {
      const c = codecs[v.type];
      const msg = c.decode(v.bytes);
      assert.equal(toHex(c.encode(msg)), toHex(v.bytes));
      // And a frame of it survives the frame reader.
      const frames = new FrameReader(1 << 20).push(encodeFrame(v.bytes));
      assert.equal(frames.length, 1);
      assert.deepEqual(c.decode(frames[0]), msg);
    });
  } else {
    test(`bad ${v.type} ${v.name}: rejected`, () => {
      assert.throws(() => codecs[v.type].decode(v.bytes), DecodeError);
    });
  }
}

test('decoded values match the vector names', () => {
  const byName = (type, name) => {
    const v = vectors.find((v) => v.type === type && v.name === name && v.ok);
    assert.ok(v, `${type} ${name} missing`);
    return codecs[type].decode(v.bytes);
  };
  assert.deepEqual(byName('ClientMsg', 'hello_browser_unicode_name'), {
    type: 'Hello', version: 1, client: 'Browser', relayMode: 'Datagram', name: 'Zoë ✈ 機長', resumeToken: null,
  });
  const dn = byName('ClientMsg', 'hello_dotnet_stream_resume');
  assert.equal(dn.client, 'DotNet');
  assert.equal(dn.relayMode, 'Stream');
  assert.deepEqual([...dn.resumeToken], [...Array(16).keys()]);
  assert.deepEqual(byName('ClientMsg', 'create_password_max_peers'), {
    type: 'CreateSession', maxPeers: 0xffffffff, password: 'pässwörd',
  });
  assert.deepEqual(byName('ClientMsg', 'join_code_password_empty'), { type: 'JoinSession', code: '7kq-2mx', password: '' });
  assert.equal(byName('ClientMsg', 'ping_max').clientTimeMs, (1n << 64n) - 1n);
  assert.equal(byName('ClientMsg', 'ping_zero').clientTimeMs, 0n);
  const cand = byName('ClientMsg', 'signal_candidate_full');
  assert.equal(cand.signal.type, 'IceCandidate');
  assert.equal(cand.signal.sdpMid, '0');
  assert.equal(cand.signal.sdpMLineIndex, 0xffff);
  const bare = byName('ClientMsg', 'signal_candidate_bare');
  assert.equal(bare.to, 0xffffffff);
  assert.deepEqual(bare.signal, { type: 'IceCandidate', candidate: '', sdpMid: null, sdpMLineIndex: null });
  const app = byName('ClientMsg', 'signal_app_bytes');
  assert.equal(app.signal.data.length, 256);

  const w = byName('ServerMsg', 'welcome_full');
  assert.equal(w.peerId, 42);
  assert.equal(w.resumeToken.length, 16);
  assert.equal(w.iceServers.length, 2);
  assert.deepEqual(w.iceServers[0], { urls: ['stun:turn.example.com:3478'], username: null, credential: null });
  assert.equal(w.iceServers[1].username, '1700003600:42');
  assert.equal(w.limits.maxFrameBytes, 16384);
  assert.equal(w.limits.maxRelayPayload, 1100);
  assert.equal(typeof w.serverTimeMs, 'bigint');
  const sj = byName('ServerMsg', 'session_joined');
  assert.equal(sj.session.code, '7KQ2MX');
  assert.deepEqual(sj.session.peers.map((p) => p.name), ['Ann', 'Bob ✈', '']);
  assert.deepEqual(sj.session.peers.map((p) => p.client), ['Rust', 'Browser', 'DotNet']);
  assert.deepEqual(byName('ServerMsg', 'peer_status_online'), { type: 'PeerStatus', peer: 5, online: true });
  assert.deepEqual(byName('ServerMsg', 'peer_left_3'), { type: 'PeerLeft', peer: 9, reason: 'ServerShutdown' });
  assert.deepEqual(byName('ServerMsg', 'error_unknown_session'), { type: 'Error', code: 10, message: 'unknown_session (10)' });
});

test('every server error vector names its code as in PROTOCOL.md §6', () => {
  const errs = vectors.filter((v) => v.ok && v.name.startsWith('error_'));
  assert.equal(errs.length, 21);
  for (const v of errs) {
    const m = decodeServerMsg(v.bytes);
    assert.equal(`error_${errorName(m.code)}`, v.name);
    assert.equal(m.message, `${errorName(m.code)} (${m.code})`);
    const e = FspError.fromServer(m.code, m.message);
    assert.equal(e.code, m.code);
    assert.equal(e.codeName, ERROR_CODES[m.code][0]);
    assert.equal(e.fatal, ERROR_CODES[m.code][1]);
  }
  assert.equal(errorName(99), 'error_99');
});

test('worked examples of PROTOCOL.md §9 (frames with length prefix)', () => {
  const frame = (m) => toHex(encodeFrame(encodeClientMsg(m)));
  assert.equal(frame({ type: 'Ping', clientTimeMs: 300n }), '0305ac02');
  assert.equal(frame({ type: 'Hello', version: 1, client: 'Browser', relayMode: 'Datagram', name: 'Ann', resumeToken: null }),
    '09000102000341' + '6e6e00');
  assert.equal(frame({ type: 'CreateSession', maxPeers: 0, password: null }), '03010000');
  assert.equal(frame({ type: 'JoinSession', code: '7KQ2MX', password: 'pw' }), '0c0206374b51324d5801027077');
  assert.equal(frame({ type: 'LeaveSession' }), '0104');
  assert.equal(toHex(encodeFrame(encodeServerMsg({ type: 'Error', code: 10, message: 'x' }))), '04070a0178');
  assert.equal(toHex(encodeFrame(encodeServerMsg({ type: 'HostChanged', host: 2 }))), '020502');
  // u64 also accepts safe integers.
  assert.equal(frame({ type: 'Ping', clientTimeMs: 300 }), '0305ac02');
});

test('varint examples and bounds', () => {
  const enc = (v) => toHex(new Writer().varint(v).finish());
  assert.equal(enc(0), '00');
  assert.equal(enc(127), '7f');
  assert.equal(enc(128), '8001');
  assert.equal(enc(300), 'ac02');
  assert.equal(enc(4294967295), 'ffffffff0f');
  assert.deepEqual(takeVarint(fromHex('ffffffff0f')), { value: 4294967295, used: 5 });
  assert.equal(takeVarint(fromHex('8080')), null);
  assert.throws(() => takeVarint(fromHex('8080808010')), DecodeError); // 2^32
  assert.throws(() => takeVarint(fromHex('808080808000')), DecodeError); // 6 bytes
  assert.throws(() => takeVarint(fromHex('8080808080')), DecodeError); // 5 bytes, still continuing
  // postcard accepts a non-minimal varint within the type's length, like the Rust side.
  assert.equal(new Reader(fromHex('8000')).u32(), 0);
  assert.equal(new Reader(fromHex('ffff03')).u16(), 0xffff);
  assert.throws(() => new Reader(fromHex('ffff04')).u16(), DecodeError);
  assert.throws(() => new Reader(fromHex('ffffffff10')).u32(), DecodeError);
  assert.equal(new Reader(fromHex('ffffffffffffffffff01')).u64(), (1n << 64n) - 1n);
  assert.throws(() => new Reader(fromHex('ffffffffffffffffff02')).u64(), DecodeError);
  // Encoders refuse out-of-range values instead of writing garbage.
  assert.throws(() => new Writer().u16(0x10000), RangeError);
  assert.throws(() => new Writer().u32(-1), RangeError);
  assert.throws(() => new Writer().u64(1n << 64n), RangeError);
  assert.throws(() => new Writer().u64(1.5), RangeError);
  assert.throws(() => encodeClientMsg({ type: 'Nope' }), RangeError);
});

test('more malformed inputs are rejected', () => {
  const bad = [
    ['ServerMsg', '00'], // truncated Welcome
    ['ServerMsg', '0203414243'], // SessionInfo cut short
    ['ServerMsg', '07'], // Error without fields
    ['ServerMsg', '0a05'], // PeerStatus without bool
    ['ServerMsg', '07010280ff'], // message not UTF-8 (lone continuation)
    ['ServerMsg', '0701ffffffffffffffffff01'], // length way past the end
    ['ClientMsg', '0001020003416e6e02'], // option tag 2
    ['ClientMsg', '0305'], // Signal without fields
    ['ClientMsg', '050a0b'], // trailing byte after Ping
    ['ClientMsg', '0301018080808080808080808001'], // over-long length
  ];
  for (const [type, hex] of bad) {
    assert.throws(() => codecs[type].decode(fromHex(hex)), DecodeError, `${type} ${hex}`);
  }
});

test('frames split across arbitrary chunks', () => {
  const msgs = [];
  for (let i = 0; i < 60; i++) {
    msgs.push({ type: 'Signal', to: i * 1000, signal: { type: 'Offer', sdp: 'v=0\r\n'.repeat(i * 7) } });
    msgs.push({ type: 'Ping', clientTimeMs: BigInt(i) << 40n });
  }
  const wire = [];
  for (const m of msgs) wire.push(...encodeFrame(encodeClientMsg(m)));
  const bytes = Uint8Array.from(wire);
  // A small deterministic PRNG so a failure is reproducible.
  let seed = 7;
  const rand = (n) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  for (const maxChunk of [1, 2, 3, 7, 40, 1000]) {
    const fr = new FrameReader(16384);
    const out = [];
    for (let at = 0; at < bytes.length;) {
      const n = Math.min(1 + rand(maxChunk), bytes.length - at);
      for (const body of fr.push(bytes.subarray(at, at + n))) out.push(decodeClientMsg(body));
      at += n;
    }
    assert.deepEqual(out, msgs, `chunks of up to ${maxChunk}`);
    assert.equal(fr.buffered, 0);
  }
  // Coalesced: everything in one chunk.
  assert.equal(new FrameReader().push(bytes).length, msgs.length);
});

test('frame reader refuses an oversized frame from its header alone', () => {
  const fr = new FrameReader(100);
  assert.throws(() => fr.push(new Writer().varint(101).finish()), /exceeds the limit/);
  // At the limit is fine, and nothing is returned until the body is complete.
  const ok = new FrameReader(100);
  assert.deepEqual(ok.push(new Writer().varint(100).finish()), []);
  assert.equal(ok.push(new Uint8Array(100)).length, 1);
  assert.throws(() => new FrameReader().push(fromHex('808080808001')), DecodeError);
});

test('relay header examples (PROTOCOL.md §9)', () => {
  const hi = new TextEncoder().encode('hi');
  assert.equal(toHex(encodeRelay(0, hi)), '006869');
  assert.equal(toHex(encodeRelay(300, hi)), 'ac026869');
  assert.equal(toHex(encodeRelay(2, hi)), '026869');
  const r = decodeRelay(fromHex('ac026869'));
  assert.equal(r.peer, 300);
  assert.equal(toHex(r.payload), '6869');
  assert.deepEqual(decodeRelay(fromHex('00')), { peer: 0, payload: new Uint8Array(0) });
  assert.equal(decodeRelay(fromHex('ffffffff0f01')).peer, 0xffffffff);
  assert.throws(() => decodeRelay(new Uint8Array(0)), DecodeError);
  assert.throws(() => decodeRelay(fromHex('80')), DecodeError);
  assert.throws(() => decodeRelay(fromHex('ffffffff1f00')), DecodeError);
  assert.throws(() => encodeRelay(-1, hi), RangeError);
});

test('random bytes never crash the decoders with anything but DecodeError', () => {
  let seed = 42;
  const rand = (n) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  const buf = new Uint8Array(96);
  for (let i = 0; i < 20000; i++) {
    const n = rand(buf.length);
    for (let j = 0; j < n; j++) buf[j] = rand(i % 3 === 0 ? 16 : 256);
    const b = buf.subarray(0, n);
    for (const f of [decodeClientMsg, decodeServerMsg, decodeRelay]) {
      try {
        const m = f(b);
        if (f !== decodeRelay) assert.equal(toHex((f === decodeClientMsg ? encodeClientMsg : encodeServerMsg)(m)).length > 0, true);
      } catch (e) {
        if (!(e instanceof DecodeError)) throw e;
      }
    }
  }
});

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
  assert.equal(nextSeq(0xfffffffe), 0xffffffff);
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

// --- WebSocket messages (PROTOCOL.md §10) -----------------------------------------------------

test('WebSocket messages: type byte, then a control body (no length prefix) or a relay frame', () => {
  assert.equal(WS_CONTROL, 0);
  assert.equal(WS_RELAY, 1);
  // The two examples of §10.
  assert.equal(toHex(encodeWsControl(encodeClientMsg({ type: 'LeaveSession' }))), '0004');
  assert.equal(toHex(encodeWsRelay(encodeRelay(0, new TextEncoder().encode('hi')))), '01006869');
  const hello = encodeClientMsg({ type: 'Hello', version: 1, client: 'Browser', relayMode: 'Datagram', name: 'Ann', resumeToken: null });
  assert.equal(toHex(encodeWsControl(hello)), '00' + '000102000341' + '6e6e00');
  const c = decodeWsMessage(fromHex('0004'));
  assert.equal(c.type, 'control');
  assert.deepEqual(decodeClientMsg(c.body), { type: 'LeaveSession' });
  const r = decodeWsMessage(fromHex('01ac026869'));
  assert.equal(r.type, 'relay');
  assert.deepEqual(decodeRelay(r.frame), { peer: 300, payload: fromHex('6869') });
  assert.throws(() => decodeWsMessage(new Uint8Array(0)), DecodeError);
  assert.throws(() => decodeWsMessage(fromHex('02')), /unknown WebSocket message type 0x02/);
  // Close codes: 1000 leaves for good (our 0); the server's errors are 4000 + code.
  assert.equal(wsCloseCode(0), 1000);
  assert.equal(wsCloseCode(1), 4001);
  assert.equal(fromWsCloseCode(1000), 0);
  assert.equal(fromWsCloseCode(4017), 17);
  assert.equal(fromWsCloseCode(1006), null);
  assert.equal(fromWsCloseCode(1001), null);
});

// --- transport selection ("happy eyeballs") with fake transports ---------------------------------

/**
 * A fake SignalTransport whose open() resolves or rejects when the test says so.
 * @param {string} kind
 */
function fakeTransport(kind, log) {
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

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

/** Run `fn` with globalThis.WebTransport defined (or not). */
async function withWebTransport(present, fn) {
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

function autoWithFakes(delay) {
  const log = [];
  const made = {};
  const a = new AutoSignal({ url: 'https://x/signal', wsUrl: 'ws://x/ws', fallbackDelayMs: delay }, {
    webtransport: () => (made.wt = fakeTransport('webtransport', log)),
    websocket: () => (made.ws = fakeTransport('websocket', log)),
  });
  return { a, log, made };
}

test('happy eyeballs: WebTransport ready within the delay → no WebSocket attempt', () => withWebTransport(true, async () => {
  const { a, log, made } = autoWithFakes(50);
  const p = a.open();
  await tick();
  made.wt.succeed();
  await p;
  assert.equal(a.kind, 'webtransport');
  assert.equal(a.url, 'webtransport://fake');
  assert.equal(a.fallbackReason, '');
  await tick(80);
  assert.deepEqual(log, ['webtransport open']);
  // Calls and callbacks go to and come from the winner.
  await a.sendControl(Uint8Array.of(4));
  assert.equal(made.wt.sent.length, 1);
  const got = [];
  a.onControl = (b) => got.push(b[0]);
  made.wt.onControl(Uint8Array.of(9));
  assert.deepEqual(got, [9]);
  a.close(0, 'bye');
  assert.deepEqual(made.wt.closed, { code: 0, reason: 'bye' });
}));

test('happy eyeballs: no WebTransport in this browser → WebSocket at once', () => withWebTransport(false, async () => {
  const { a, log, made } = autoWithFakes(1000);
  const p = a.open();
  await tick();
  assert.deepEqual(log, ['websocket open']);
  made.ws.succeed();
  await p;
  assert.equal(a.kind, 'websocket');
  assert.equal(a.fallbackReason, 'this browser has no WebTransport');
}));

test('happy eyeballs: WebTransport fails at once → WebSocket at once, not after the delay', () => withWebTransport(true, async () => {
  const { a, log, made } = autoWithFakes(10000);
  const p = a.open();
  await tick();
  made.wt.fail('handshake failed');
  await tick();
  assert.deepEqual(log, ['webtransport open', 'websocket open']);
  made.ws.succeed();
  await p;
  assert.equal(a.kind, 'websocket');
  assert.equal(a.fallbackReason, 'WebTransport failed: handshake failed');
}));

test('happy eyeballs: WebTransport slow → WebSocket in parallel after the delay; the first ready wins, the other is closed', () => withWebTransport(true, async () => {
  {
    const { a, log, made } = autoWithFakes(30);
    const p = a.open();
    await tick(10);
    assert.deepEqual(log, ['webtransport open']);
    await tick(40);
    assert.deepEqual(log, ['webtransport open', 'websocket open']);
    made.ws.succeed();
    await p;
    assert.equal(a.kind, 'websocket');
    assert.equal(a.fallbackReason, 'WebTransport not ready within 30 ms');
    assert.deepEqual(made.wt.closed, { code: 0, reason: 'happy eyeballs: the other transport won' });
    // Only the winner's callbacks reach the client.
    let closedInfo = null;
    a.onClosed = (i) => { closedInfo = i; };
    made.wt.onClosed({ code: 0, reason: 'loser' });
    assert.equal(closedInfo, null);
    made.ws.onClosed({ code: 4, reason: 'winner' });
    assert.deepEqual(closedInfo, { code: 4, reason: 'winner' });
  }
  {
    // WebTransport comes through after the WebSocket attempt started: it wins, the WebSocket is closed.
    const { a, made } = autoWithFakes(5);
    const p = a.open();
    await tick(30);
    made.wt.succeed();
    await p;
    assert.equal(a.kind, 'webtransport');
    assert.equal(made.ws.closed.code, 0);
  }
}));

test('happy eyeballs: both fail → one error naming both; close() while connecting aborts both', () => withWebTransport(true, async () => {
  {
    const { a, made } = autoWithFakes(5);
    const p = a.open();
    await tick(30);
    made.ws.fail('WebSocket refused');
    await tick();
    made.wt.fail('QUIC timed out');
    await assert.rejects(p, (e) => e instanceof FspError && e.codeName === 'connect_failed'
      && /QUIC timed out/.test(e.message) && /WebSocket refused/.test(e.message));
  }
  {
    const { a, made } = autoWithFakes(5);
    const p = a.open();
    await tick(30);
    a.close(0, 'user');
    await assert.rejects(p, (e) => e.codeName === 'closed');
    assert.equal(made.wt.closed.code, 0);
    assert.equal(made.ws.closed.code, 0);
  }
}));

test('transport option: auto by default, the two kinds, a factory; anything else refused', () => {
  assert.deepEqual([...TRANSPORT_CHOICES], ['auto', 'webtransport', 'websocket']);
  assert.equal(new FlightSimP2P({ host: 'h' }).options.transport, 'auto');
  assert.equal(new FlightSimP2P({ host: 'h' }).options.wsUrl, 'ws://h:8080/ws', 'outside a page: the HTTP port of host');
  assert.equal(new FlightSimP2P({ host: 'h', wsUrl: 'wss://h/ws' }).options.wsUrl, 'wss://h/ws');
  assert.equal(new FlightSimP2P({ transport: 'websocket' }).options.transport, 'websocket');
  assert.throws(() => new FlightSimP2P({ transport: 'quic' }), RangeError);
});

// --- the client's envelope handling, over a fake transport ----------------------------------------

/** A FlightSimP2P in a session with peers 2 and 3 (forced relay: no WebRTC in Node), over a fake transport. */
async function clientInSession() {
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
  // The sender's counter wraps like a u32.
  c._txSeq = 0xfffffffe;
  c.send(3, hi('w1'));
  c.send(3, hi('w2'));
  c.send(3, hi('w3'));
  assert.deepEqual(fake.relayed.slice(3).map((f) => unwrapFlight(decodeRelay(f).payload).seq), [0xffffffff, 0, 1]);
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
  relayIn(3, 0xffffffff, 'y-stale');
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
  relayIn(3, 0xfffffffe, 'z1');
  relayIn(3, 0xffffffff, 'z2');
  relayIn(3, 0, 'z3');
  relayIn(3, 0xffffffff, 'z-stale');
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
