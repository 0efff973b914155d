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
  RECONNECT_BACKOFF_MS, ABANDON_CLOSE_CODE, backoffDelayMs, closeDisposition, reconnectStep, attemptTimeoutMs, serverSilent,
  FIRST_PARAM, MAX_FIRST_BYTES, base64url, fromBase64url, encodeFirst, urlWithFirst, foldableRequest,
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
    'Signal', 'Error', 'Pong', 'SessionLeft', 'PeerStatus', 'GoingAway', 'Redirect']) {
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
  assert.equal(errs.length, 22);
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

// --- reconnecting: the pure decisions ----------------------------------------------------------

test('reconnect backoff: at once, then 250 ms, 500 ms, and every second at most, with jitter below the schedule', () => {
  assert.deepEqual([...RECONNECT_BACKOFF_MS], [0, 250, 500, 1000]);
  const hi = () => 0.999999;
  const lo = () => 0;
  assert.deepEqual([0, 1, 2, 3, 4, 20].map((a) => backoffDelayMs(a, hi)), [0, 250, 500, 1000, 1000, 1000]);
  assert.deepEqual([0, 1, 2, 3, 4, 20].map((a) => backoffDelayMs(a, lo)), [0, 188, 375, 750, 750, 750]);
  // Never above a second: the connection is back within about 1 s of the network's return.
  for (let a = 0; a < 50; a++) {
    const d = backoffDelayMs(a);
    assert.ok(d >= 0 && d <= 1000, `attempt ${a}: ${d} ms`);
  }
  // A broken random source cannot push it outside the bounds.
  assert.equal(backoffDelayMs(3, () => 7), 1000);
  assert.equal(backoffDelayMs(3, () => -1), 750);
});

test('what a close means: reconnect when the connection just ended or the server is going away, else close for good', () => {
  const d = (c) => closeDisposition(c).action;
  // The connection just ended (1006, QUIC idle timeout, proxy killed, no answer to pings).
  assert.deepEqual(closeDisposition({ code: null }), { action: 'reconnect', delayMs: 0 });
  // Nothing to resume before a Welcome; reconnecting switched off.
  assert.equal(d({ code: null, welcomed: false }), 'close');
  assert.equal(d({ code: null, enabled: false }), 'close');
  // Fatal server errors (PROTOCOL.md §6) end it for good, whatever the close code says.
  for (const code of [1, 2, 3, 4, 6, 7, 17, 19, 20, 21]) {
    assert.equal(d({ code, fatalCode: code }), 'close', `code ${code}`);
    assert.equal(d({ code: null, fatalCode: code }), 'close', `fatal ${code} then a bare end`);
    assert.equal(d({ code }), 'close', `close code ${code} without an Error`);
  }
  assert.match(closeDisposition({ code: 20, fatalCode: 20 }).why, /replaced/);
  // A normal close by the server.
  assert.equal(d({ code: 0 }), 'close');
  // GoingAway: shutting_down then means "come back after reconnectAfterMs" (what is left of it).
  assert.deepEqual(closeDisposition({ code: 7, fatalCode: 7, goingAwayInMs: 1500.4 }), { action: 'reconnect', delayMs: 1500 });
  assert.deepEqual(closeDisposition({ code: null, goingAwayInMs: -20 }), { action: 'reconnect', delayMs: 0 });
  assert.equal(d({ code: 7, fatalCode: 7, goingAwayInMs: 100, enabled: false }), 'close');
});

test('when to give up: after reconnectTimeoutMs (0 = never)', () => {
  const r = () => 0.999999;
  assert.deepEqual(reconnectStep({ attempt: 0, elapsedMs: 0, giveUpMs: 60000, random: r }), { action: 'wait', delayMs: 0 });
  assert.deepEqual(reconnectStep({ attempt: 5, elapsedMs: 30000, giveUpMs: 60000, random: r }), { action: 'wait', delayMs: 1000 });
  assert.deepEqual(reconnectStep({ attempt: 5, elapsedMs: 59000, giveUpMs: 60000, random: r }), { action: 'giveup' });
  assert.deepEqual(reconnectStep({ attempt: 500, elapsedMs: 1e9, giveUpMs: 0, random: r }), { action: 'wait', delayMs: 1000 });
});

test('attempt timeout and a silent server', () => {
  assert.equal(attemptTimeoutMs(null, 10000), 3000);
  assert.equal(attemptTimeoutMs(50, 10000), 3000);
  assert.equal(attemptTimeoutMs(500, 10000), 6000);
  assert.equal(attemptTimeoutMs(5000, 10000), 10000);
  assert.equal(attemptTimeoutMs(null, 1000), 1000);
  assert.equal(serverSilent(0, 1e6, 7000), false, 'no ping outstanding');
  assert.equal(serverSilent(1000, 8000, 7000), false);
  assert.equal(serverSilent(1000, 8001, 7000), true);
  assert.equal(serverSilent(1000, 1e9, 0), false, 'liveness check off');
});

// --- reconnecting: the client over fake transports ---------------------------------------------

const LIMITS = {
  maxFrameBytes: 16384, maxRelayPayload: 1100, relayDatagramsPerSec: 500, relayBytesPerSec: 262144,
  signalsPerSec: 0, maxPeersPerSession: 16, resumeGraceMs: 15000,
};
const TOKEN = Uint8Array.from({ length: 16 }, (_, i) => i + 1);
const peerInfo = (id) => ({ id, name: `p${id}`, client: 'Browser' });
const welcomeMsg = (peerId, resumed) => ({
  type: 'Welcome', version: 1, peerId, resumeToken: TOKEN, resumed, iceServers: [], limits: LIMITS, serverTimeMs: 0n,
});

/** A client in session ABCDEF (password "pw") with peers 2 and 3, each transport a new fake. */
async function reconnectingClient(extra = {}) {
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

const sentTypes = (f) => f.sent.map((b) => decodeClientMsg(b));

test('reconnect: a lost connection resumes with the token on a new transport; same id, links, callbacks; frames flow again', async () => {
  const { c, fakes, log, server, events, got, onmessage } = await reconnectingClient();
  const links = new Map(c.links);
  c.send(0, new TextEncoder().encode('before'));
  assert.equal(fakes[0].relayed.length, 1);

  fakes[0].onClosed({ code: null, reason: 'WebSocket closed with code 1006 (connection lost)' });
  assert.equal(c.state, 'reconnecting');
  const rcEv = events.filter((e) => e[0] === 'reconnecting');
  assert.equal(rcEv.length, 1);
  assert.equal(rcEv[0][1].peerId, 1);
  assert.equal(rcEv[0][1].graceMs, 15000);
  assert.match(rcEv[0][1].reason, /1006/);
  assert.equal(events.some((e) => e[0] === 'close'), false, 'the client did not close');
  // The lost connection is let go of without leaving (not code 0).
  assert.equal(fakes[0].closed.code, ABANDON_CLOSE_CODE);
  // While reconnecting: relay sends are dropped (the game keeps sending; state is replaced), signals wait.
  assert.equal(c.send(0, new TextEncoder().encode('during')), false);
  c.sendApp(2, Uint8Array.of(7));

  // First attempt at once; it fails → next after the backoff.
  await tick(5);
  assert.equal(fakes.length, 2);
  fakes[1].fail('ECONNREFUSED');
  await tick(5);
  assert.equal(fakes.length, 2, 'the second attempt waits for the backoff');
  await tick(300);
  assert.equal(fakes.length, 3);
  fakes[2].succeed();
  await tick();
  const hello = sentTypes(fakes[2]);
  assert.equal(hello[0].type, 'Hello');
  assert.deepEqual([...hello[0].resumeToken], [...TOKEN]);
  assert.equal(hello.length, 1, 'nothing else before the Welcome');

  server({ type: 'Welcome', ...welcomeMsg(1, true) });
  server({ type: 'SessionJoined', session: { code: 'ABCDEF', host: 2, maxPeers: 16, idleTtlSecs: 60, peers: [peerInfo(2), peerInfo(1), peerInfo(3)] } });
  assert.equal(c.state, 'connected');
  assert.equal(c.peerId, 1);
  const done = events.find((e) => e[0] === 'reconnected')[1];
  assert.equal(done.resumed, true);
  assert.equal(done.attempts, 2);
  assert.equal(done.peerId, 1);
  // Same PeerLink objects (path state kept), same callback.
  assert.deepEqual([...c.links.keys()], [...links.keys()]);
  for (const [id, l] of links) assert.equal(c.links.get(id), l);
  assert.equal(c.onmessage, onmessage);
  // The waiting signal went out after the Welcome; relay flows both ways on the new transport.
  assert.deepEqual(sentTypes(fakes[2]).map((m) => m.type), ['Hello', 'Signal']);
  assert.equal(c.send(2, new TextEncoder().encode('after')), true);
  assert.equal(fakes[2].relayed.length, 1);
  fakes[2].onRelay(encodeRelay(3, wrapFlight(77, new TextEncoder().encode('hi'))));
  assert.deepEqual(got, [[3, 'hi', 'relay']]);
  // Frames from the lost connection no longer count.
  fakes[0].onRelay?.(encodeRelay(3, wrapFlight(78, new TextEncoder().encode('ghost'))));
  assert.equal(got.length, 1);
  assert.equal(events.filter((e) => e[0] === 'transport').length, 2, 'one transport event per connection that came up');
  c.close();
  assert.equal(fakes[2].closed.code, 0, "the app's close() leaves for good");
  assert.ok(!log.includes('websocket close 0') || log.indexOf('websocket close 0') > log.indexOf(`websocket close ${ABANDON_CLOSE_CODE}`));
});

test('reconnect: too late for a resume → rejoin the session by code and password, and say so', async () => {
  const { c, fakes, server, events } = await reconnectingClient();
  fakes[0].onClosed({ code: null, reason: 'lost' });
  await tick(5);
  fakes[1].succeed();
  await tick();
  server({ type: 'Error', code: 18, message: 'unknown or expired token' });
  server(welcomeMsg(9, false));
  assert.equal(c.peerId, 9);
  assert.equal(c.links.size, 0, 'links of the old id are gone');
  const join = sentTypes(fakes[1]).find((m) => m.type === 'JoinSession');
  assert.deepEqual(join, { type: 'JoinSession', code: 'ABCDEF', password: 'pw' });
  server({ type: 'SessionJoined', session: { code: 'ABCDEF', host: 2, maxPeers: 16, idleTtlSecs: 60, peers: [peerInfo(2), peerInfo(3), peerInfo(9)] } });
  const rj = events.find((e) => e[0] === 'rejoined');
  assert.ok(rj, 'rejoined event');
  assert.equal(rj[1].peerId, 9);
  assert.equal(rj[1].previousPeerId, 1);
  assert.equal(rj[1].session.code, 'ABCDEF');
  assert.equal(events.find((e) => e[0] === 'reconnected')[1].resumed, false);
  assert.deepEqual([...c.links.keys()].sort(), [2, 3]);

  // And when the session is gone too: sessionleft, still connected.
  fakes[1].onClosed({ code: null, reason: 'lost again' });
  await tick(5);
  fakes[2].succeed();
  await tick();
  server(welcomeMsg(10, false));
  server({ type: 'Error', code: 10, message: 'no such session' });
  await tick();
  const left = events.filter((e) => e[0] === 'sessionleft');
  assert.equal(left.length, 1);
  assert.equal(left[0][1].reason, 'TimedOut');
  assert.equal(c.state, 'connected');
  assert.equal(c.session, null);
  c.close();
});

test('reconnect: a fatal server error, the app closing, or reconnect: false end it for good', async () => {
  {
    const { c, fakes, server, events } = await reconnectingClient();
    server({ type: 'Error', code: 20, message: 'replaced' });
    fakes[0].onClosed({ code: 20, reason: 'replaced' });
    assert.equal(c.state, 'closed');
    assert.equal(events.filter((e) => e[0] === 'reconnecting').length, 0);
    assert.equal(events.find((e) => e[0] === 'close')[1].code, 20);
    await tick(5);
    assert.equal(fakes.length, 1);
  }
  {
    const { c, fakes, events } = await reconnectingClient();
    fakes[0].onClosed({ code: null, reason: 'lost' });
    c.close('user');
    assert.equal(c.state, 'closed');
    await tick(300);
    assert.equal(fakes.length, 1, 'no attempt after close()');
    assert.equal(events.find((e) => e[0] === 'close')[1].code, 0);
  }
  {
    const { c, fakes, events } = await reconnectingClient({ reconnect: false });
    fakes[0].onClosed({ code: null, reason: 'lost' });
    assert.equal(c.state, 'closed');
    assert.equal(events.find((e) => e[0] === 'close')[1].code, null);
  }
  {
    // Attempts keep failing: give up after reconnectTimeoutMs with reconnect_failed.
    const { c, fakes, events } = await reconnectingClient({ reconnectTimeoutMs: 400 });
    const errors = [];
    c.addEventListener('error', (e) => errors.push(e.detail.name));
    fakes[0].onClosed({ code: null, reason: 'lost' });
    for (let i = 0; i < 20 && c.state !== 'closed'; i++) {
      await tick(50);
      const f = fakes[fakes.length - 1];
      if (f !== fakes[0] && !f.closed) f.fail('refused');
    }
    assert.equal(c.state, 'closed');
    assert.deepEqual(errors, ['reconnect_failed']);
    assert.ok(events.find((e) => e[0] === 'close'));
  }
});

test('reconnect: GoingAway → come back after reconnectAfterMs, even if the server has not closed yet', async () => {
  const { c, fakes, server, events } = await reconnectingClient();
  server({ type: 'GoingAway', reconnectAfterMs: 60, message: 'restarting' });
  server({ type: 'Error', code: 7, message: 'shutting down' });
  fakes[0].onClosed({ code: 7, reason: 'shutting_down' });
  assert.equal(c.state, 'reconnecting');
  await tick(20);
  assert.equal(fakes.length, 1, 'waits for reconnectAfterMs');
  await tick(80);
  assert.equal(fakes.length, 2);
  fakes[1].succeed();
  await tick();
  server(welcomeMsg(1, true));
  assert.equal(events.find((e) => e[0] === 'reconnected')[1].resumed, true);
  // GoingAway while the connection stays up: move over after the delay.
  server({ type: 'GoingAway', reconnectAfterMs: 30, message: 'draining' });
  await tick(60);
  assert.equal(fakes[1].closed.code, ABANDON_CLOSE_CODE);
  assert.equal(fakes.length, 3);
  c.close();
});

// --- the first request in the URL (PROTOCOL.md §1, §10) -----------------------------------------

test('base64url: RFC 4648 §5 without padding, as Node encodes it; strict decoding', () => {
  for (let n = 0; n < 70; n++) {
    const b = Uint8Array.from({ length: n }, (_, i) => (i * 151 + n * 7) & 0xff);
    const want = Buffer.from(b).toString('base64url');
    assert.equal(base64url(b), want, `length ${n}`);
    assert.deepEqual([...fromBase64url(want)], [...b]);
  }
  assert.equal(base64url(Uint8Array.of(0xfb, 0xff, 0xbf)), '-_-_');
  for (const bad of ['AB==', 'A+', 'A/', 'A', 'AAAAA', 'AB', 'A B']) {
    assert.throws(() => fromBase64url(bad), DecodeError, bad);
  }
});

const helloBrowser = (resumeToken = null) => encodeClientMsg({
  type: 'Hello', version: 1, client: 'Browser', relayMode: 'Datagram', name: '', resumeToken,
});
const join7 = encodeClientMsg({ type: 'JoinSession', code: '7KQ2MX', password: null });

test('first: control frames exactly as on the stream, base64url in the `first` query parameter', () => {
  // The server's golden vector (crates/protocol/src/first.rs): Hello (browser, datagrams, no name, no token) then JoinSession("7KQ2MX").
  const bytes = encodeFirst([helloBrowser(), join7]);
  assert.equal(toHex(bytes), toHex(new Uint8Array([...encodeFrame(helloBrowser()), ...encodeFrame(join7)])));
  assert.equal(base64url(bytes), 'BgABAgAAAAkCBjdLUTJNWAA');
  assert.equal(FIRST_PARAM, 'first');
  assert.equal(urlWithFirst('https://127.0.0.1:4433/signal', [helloBrowser(), join7]), 'https://127.0.0.1:4433/signal?first=BgABAgAAAAkCBjdLUTJNWAA');
  assert.equal(urlWithFirst('ws://h:8080/ws?x=1', [helloBrowser()]), `ws://h:8080/ws?x=1&first=${base64url(encodeFrame(helloBrowser()))}`);
  // Decodes back into the same frames.
  const frames = new FrameReader().push(fromBase64url(new URL(urlWithFirst('wss://h/ws', [helloBrowser(TOKEN), join7])).searchParams.get('first')));
  assert.deepEqual(frames.map((f) => decodeClientMsg(f).type), ['Hello', 'JoinSession']);
  assert.deepEqual([...decodeClientMsg(frames[0]).resumeToken], [...TOKEN]);
  assert.throws(() => encodeFirst([new Uint8Array(MAX_FIRST_BYTES)]), RangeError);
  // Only a create or join rides behind Hello.
  assert.equal(foldableRequest(join7), true);
  assert.equal(foldableRequest(encodeClientMsg({ type: 'CreateSession', maxPeers: 0, password: null })), true);
  assert.equal(foldableRequest(encodeClientMsg({ type: 'LeaveSession' })), false);
  assert.equal(foldableRequest(encodeClientMsg({ type: 'Ping', clientTimeMs: 1n })), false);
  assert.equal(foldableRequest(undefined), false);
});

/**
 * A fake transport that takes the first request: it records it, and on succeed() the
 * "server" may answer at once, before open() has even resolved (as a real server does).
 */
function fastFake(kind, log) {
  const t = fakeTransport(kind, log);
  const open = t.open;
  t.first = undefined;
  t.open = (first) => {
    t.first = first ?? null;
    return open().then(() => { t.firstSent = !!first; });
  };
  return t;
}

async function fastClient(extra = {}) {
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

const joinedMsg = (peers) => ({ type: 'SessionJoined', session: { code: '7KQ2MX', host: 2, maxPeers: 16, idleTtlSecs: 60, peers: peers.map(peerInfo) } });

test('fast path: connect(); joinSession() in the same tick → Hello and JoinSession in the URL, nothing on the stream', async () => {
  const { c, fakes, events, server } = await fastClient();
  c.connect();
  const joined = c.joinSession('7kq-2mx', { password: 'pw' });
  await tick();
  assert.equal(fakes.length, 1);
  assert.deepEqual(fakes[0].first.map((b) => decodeClientMsg(b).type), ['Hello', 'JoinSession']);
  assert.deepEqual(decodeClientMsg(fakes[0].first[1]), { type: 'JoinSession', code: '7kq-2mx', password: 'pw' });
  // The server answers in the same flight as the 101/200: before open() resolved here.
  server(welcomeMsg(5, false));
  server(joinedMsg([2, 5]));
  fakes[0].succeed();
  const s = await joined;
  assert.equal(s.code, '7KQ2MX');
  assert.equal(c.peerId, 5);
  assert.deepEqual(fakes[0].sent, [], 'nothing sent again on the control stream');
  assert.deepEqual(events.map((e) => e[0]), ['transport', 'welcome', 'session'], 'transport event first');
  // The URL (with the join code) is never what the client reports.
  assert.equal(c.transportUrl, 'websocket://fake');
  assert.ok(!JSON.stringify(events.map((e) => e[1].url || '')).includes(FIRST_PARAM));
  // Later requests go on the control stream as usual.
  c.leaveSession().catch(() => {});
  assert.deepEqual(fakes[0].sent.map((b) => decodeClientMsg(b).type), ['LeaveSession']);
  c.close();
});

test('fast path: a request made later goes on the stream; connect({join}) and connect({create}); fastConnect off', async () => {
  {
    const { c, fakes, server } = await fastClient();
    c.connect();
    await tick();
    const joined = c.joinSession('7KQ2MX');
    fakes[0].succeed();
    await tick();
    assert.deepEqual(fakes[0].first.map((b) => decodeClientMsg(b).type), ['Hello']);
    assert.deepEqual(fakes[0].sent.map((b) => decodeClientMsg(b).type), ['JoinSession']);
    server(welcomeMsg(5, false));
    server(joinedMsg([2, 5]));
    await joined;
    c.close();
  }
  {
    const { c, fakes, server } = await fastClient();
    const p = c.connect({ join: { code: '7KQ2MX', password: 'x' } });
    await tick();
    assert.deepEqual(fakes[0].first.map((b) => decodeClientMsg(b)), [decodeClientMsg(fakes[0].first[0]), { type: 'JoinSession', code: '7KQ2MX', password: 'x' }]);
    fakes[0].succeed();
    await tick();
    server(welcomeMsg(5, false));
    server({ type: 'Error', code: 10, message: 'no such session' });
    await assert.rejects(p, (e) => e.code === 10 && e.codeName === 'unknown_session');
    assert.equal(c.state, 'connected', 'a wrong code leaves the connection usable, as before');
    assert.equal(fakes[0].sent.length, 0);
    c.close();
  }
  {
    const { c, fakes, server } = await fastClient();
    const p = c.connect({ create: { maxPeers: 4, password: null } });
    await tick();
    assert.deepEqual(decodeClientMsg(fakes[0].first[1]), { type: 'CreateSession', maxPeers: 4, password: null });
    fakes[0].succeed();
    await tick();
    server(welcomeMsg(1, false));
    server({ type: 'SessionCreated', session: { code: 'ABCDEF', host: 1, maxPeers: 4, idleTtlSecs: 60, peers: [peerInfo(1)] } });
    assert.equal((await p).code, 'ABCDEF');
    await assert.rejects(c.connect({ join: { code: 'X' } }), (e) => e.codeName === 'busy');
    assert.throws(() => new FlightSimP2P({ host: 'h' }).connect({ join: { code: 'a' }, create: {} }), TypeError);
    c.close();
  }
  {
    const { c, fakes } = await fastClient({ fastConnect: false });
    c.connect();
    c.joinSession('7KQ2MX').catch(() => {});
    await tick();
    assert.equal(fakes[0].first, null);
    fakes[0].succeed();
    await tick();
    assert.deepEqual(fakes[0].sent.map((b) => decodeClientMsg(b).type), ['Hello', 'JoinSession']);
    c.close();
  }
});

test('fast path: the resume Hello (with its token) rides in the URL of the reconnect attempt', async () => {
  const { c, fakes, events, server } = await fastClient();
  const joined = c.connect({ join: { code: '7KQ2MX' } });
  await tick();
  fakes[0].succeed();
  await tick();
  server(welcomeMsg(5, false));
  server(joinedMsg([2, 5]));
  await joined;
  fakes[0].onClosed({ code: null, reason: 'lost' });
  await tick(5);
  assert.equal(fakes.length, 2);
  const hello = decodeClientMsg(fakes[1].first[0]);
  assert.equal(fakes[1].first.length, 1, 'no session request: the resume puts us back');
  assert.deepEqual([...hello.resumeToken], [...TOKEN]);
  server(welcomeMsg(5, true));
  server(joinedMsg([2, 5]));
  fakes[1].succeed();
  await tick();
  assert.deepEqual(fakes[1].sent, [], 'Hello not sent again on the stream');
  assert.equal(events.find((e) => e[0] === 'reconnected')[1].resumed, true);
  assert.equal(c.state, 'connected');
  c.close();
});

test('happy eyeballs with a first request: only an attempt with no other pending carries it', () => withWebTransport(true, async () => {
  const first = [helloBrowser(), join7];
  {
    // WebTransport slow: the WebSocket started alongside goes without it, and wins.
    const log = [];
    const made = {};
    const a = new AutoSignal({ url: 'https://x/signal', wsUrl: 'ws://x/ws', fallbackDelayMs: 5 }, {
      webtransport: () => (made.wt = fastFake('webtransport', log)),
      websocket: () => (made.ws = fastFake('websocket', log)),
    });
    const p = a.open(first);
    await tick(30);
    assert.equal(made.wt.first, first);
    assert.equal(made.ws.first, null);
    made.ws.succeed();
    await p;
    assert.equal(a.kind, 'websocket');
    assert.equal(a.firstSent, false, 'the client must send Hello on the stream');
  }
  {
    // WebTransport fails: the WebSocket is then alone and carries it.
    const log = [];
    const made = {};
    const a = new AutoSignal({ url: 'https://x/signal', wsUrl: 'ws://x/ws', fallbackDelayMs: 10000 }, {
      webtransport: () => (made.wt = fastFake('webtransport', log)),
      websocket: () => (made.ws = fastFake('websocket', log)),
    });
    const p = a.open(first);
    await tick();
    made.wt.fail('refused');
    await tick();
    assert.equal(made.ws.first, first);
    // Its answer may come before it is chosen: kept, then delivered once it is.
    const got = [];
    a.onControl = (b) => got.push(b[0]);
    made.ws.onControl(Uint8Array.of(0));
    made.ws.succeed();
    await p;
    assert.deepEqual(got, []);
    await tick();
    assert.deepEqual(got, [0]);
    assert.equal(a.firstSent, true);
  }
}));
