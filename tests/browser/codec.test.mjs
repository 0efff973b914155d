// Codec of the browser client (client/web/codec.js, through fsp2p.js) against the golden
// vectors (docs/vectors.txt) written by the Rust reference implementation: messages,
// framing, relay headers, WebSocket messages (PROTOCOL.md §10) and the first request in
// the URL (§1, §10). Runs in Node without a server:
//   node --test tests/browser/codec.test.mjs
// The rest of what was here moved to files named for what they test: flight.test.mjs
// (envelope), race.test.mjs (happy eyeballs), reconnect.test.mjs, fastpath.test.mjs;
// core.test.mjs drives core.js's decisions with simulated time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

import {
  decodeClientMsg, encodeClientMsg, decodeServerMsg, encodeServerMsg, encodeFrame, FrameReader,
  encodeRelay, decodeRelay, takeVarint, Writer, Reader, DecodeError, FspError, ERROR_CODES,
  errorName, toHex, fromHex, WS_CONTROL, WS_RELAY, encodeWsControl, encodeWsRelay, decodeWsMessage,
  wsCloseCode, fromWsCloseCode, FIRST_PARAM, MAX_FIRST_BYTES, base64url, fromBase64url,
  encodeFirst, urlWithFirst, foldableRequest,
} from '../../client/web/fsp2p.js';
import {
  TOKEN, helloBrowser, join7,
} from './fakes.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const vectorsFile = path.join(root, 'docs/vectors.txt');

/** @returns {{ok: boolean, type: string, name: string, bytes: Uint8Array}[]} */
function loadVectors() {
  const out = [];
  for (const line of readFileSync(vectorsFile, 'utf8').split('\n')) {
    if (!line.trim() || line.startsWith('#')) continue;
    const [ok, type, name, hex = ''] = line.split('\t');
    assert.ok(ok === 'ok' || ok === 'bad', `bad vector line: ${line}`);
    // ClientMsg@v4: read on a connection speaking version 4 (region_rtts, PROTOCOL.md §4, §11).
    assert.ok(type === 'ClientMsg' || type === 'ServerMsg' || type === 'ClientMsg@v4', `bad vector type: ${line}`);
    out.push({ ok: ok === 'ok', type, name, bytes: fromHex(hex.trim()) });
  }
  return out;
}

const vectors = loadVectors();
const codecs = {
  ClientMsg: { decode: decodeClientMsg, encode: encodeClientMsg },
  ServerMsg: { decode: decodeServerMsg, encode: encodeServerMsg },
  'ClientMsg@v4': { decode: (b) => decodeClientMsg(b, 4), encode: (m) => encodeClientMsg(m, 4) },
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

test('every ClientMsg@v4 vector is checked, ok and bad (a version-4 client does not skip them)', () => {
  const v4 = vectors.filter((v) => v.type === 'ClientMsg@v4').map((v) => `${v.ok ? 'ok' : 'bad'} ${v.name}`);
  for (const n of ['ok create_v4_nothing_measured', 'ok create_v4_three_regions', 'ok join_v4_password_one_region',
    'ok join_v4_sixteen_regions_edge_values', 'ok ping_v4', 'ok leave_v4', 'bad create_v4_without_region_rtts',
    'bad join_v4_rtts_past_end', 'bad create_v4_region_name_past_end', 'bad create_v4_trailing_byte']) {
    assert.ok(v4.includes(n), `no vector ${n}`);
  }
});

test('region_rtts: decoded values, the worked example, and versions before 4 without the field', () => {
  const byName = (name) => vectors.find((v) => v.type === 'ClientMsg@v4' && v.name === name);
  assert.deepEqual(decodeClientMsg(byName('create_v4_nothing_measured').bytes, 4),
    { type: 'CreateSession', maxPeers: 0, password: null, regionRtts: [] });
  const three = { type: 'CreateSession', maxPeers: 8, password: null, regionRtts: [
    { region: 'eu', rttMs: 5 }, { region: 'us-east', rttMs: 84 }, { region: 'asia', rttMs: 153 }] };
  assert.deepEqual(decodeClientMsg(byName('create_v4_three_regions').bytes, 4), three);
  // PROTOCOL.md §4's worked example, byte for byte.
  assert.equal(toHex(encodeClientMsg(three, 4)), '01080003026575050775732d656173745404617369619901');
  assert.deepEqual(decodeClientMsg(byName('join_v4_password_one_region').bytes, 4),
    { type: 'JoinSession', code: '7KQ2MX', password: 'pw', regionRtts: [{ region: 'us-east', rttMs: 300 }] });
  const sixteen = decodeClientMsg(byName('join_v4_sixteen_regions_edge_values').bytes, 4).regionRtts;
  assert.equal(sixteen.length, 16);
  assert.equal(sixteen[0].region.length, 32);
  assert.deepEqual(sixteen.slice(0, 2).map((e) => e.rttMs), [0, 0xffffffff]);
  // Before version 4 the field is absent: what is measured is not sent, and a v4 body is refused.
  assert.equal(toHex(encodeClientMsg(three, 3)), '010800');
  assert.throws(() => decodeClientMsg(byName('create_v4_three_regions').bytes, 3), DecodeError);
  // At version 4 an absent list is the empty one.
  assert.equal(toHex(encodeClientMsg({ type: 'CreateSession', maxPeers: 0, password: null }, 4)), '01000000');
});

test('decoded values match the vector names', () => {
  const byName = (type, name) => {
    const v = vectors.find((v) => v.type === type && v.name === name && v.ok);
    assert.ok(v, `${type} ${name} missing`);
    return codecs[type].decode(v.bytes);
  };
  assert.deepEqual(byName('ClientMsg', 'hello_browser_unicode_name'), {
    type: 'Hello', version: 1, client: 'Browser', relayMode: 'Datagram', name: 'Zoë ✈ 機長', resumeToken: null,
    accessToken: null,
  });
  // Hello version 2 carries the access token (PROTOCOL.md §4, §13).
  assert.equal(byName('ClientMsg', 'hello_v2_no_token').accessToken, null);
  const v2 = byName('ClientMsg', 'hello_v2_token_resume');
  assert.equal(v2.version, 2);
  assert.equal(v2.accessToken, 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln');
  assert.equal(v2.resumeToken.length, 16);
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
  assert.equal(errs.length, 27);
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
