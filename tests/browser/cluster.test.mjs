// Cluster mode of client/web/fsp2p.js (PROTOCOL.md §11), without a network or a browser:
// the Redirect codec on the golden vectors, where a NodeAddr leads, the redirect limit,
// the rotation over `fallbacks`, and the client following redirects over fake transports.
//   node --test tests/browser/cluster.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

import {
  decodeClientMsg, decodeServerMsg, encodeServerMsg, fromHex, toHex, FspError, ERROR_CODES,
  FlightSimP2P, ABANDON_CLOSE_CODE, REDIRECT_REASONS,
  MAX_REDIRECTS, wsUrlOfHttp, nodeServer, reachableWith, redirectStep, rotateServer,
} from '../../client/web/fsp2p.js';
import { decodeSent } from './fakes.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const vectors = readFileSync(path.join(root, 'docs/vectors.txt'), 'utf8').split('\n')
  .filter((l) => l && !l.startsWith('#'))
  .map((l) => {
    const [verdict, type, name, hex = ''] = l.split('\t');
    return { ok: verdict === 'ok', type, name, bytes: fromHex(hex) };
  });
const vector = (name) => vectors.find((v) => v.type === 'ServerMsg' && v.name === name);

test('Redirect vectors decode, re-encode byte for byte, and bad ones are refused', () => {
  const pinned = decodeServerMsg(vector('redirect_session_pinned').bytes);
  assert.deepEqual(pinned, {
    type: 'Redirect', reason: 'Session',
    node: { name: 'node-b', quic: '10.0.0.2:4433', http: 'http://10.0.0.2:8080', certSha256: Uint8Array.from({ length: 32 }, (_, i) => i) },
  });
  const ca = decodeServerMsg(vector('redirect_draining_ca').bytes);
  assert.equal(ca.reason, 'Draining');
  assert.equal(ca.node.certSha256, null);
  assert.equal(decodeServerMsg(vector('redirect_moved_ws_only').bytes).node.quic, '');
  assert.equal(decodeServerMsg(vector('redirect_placement').bytes).reason, 'Placement');
  const redirects = vectors.filter((v) => v.ok && v.name.startsWith('redirect_'));
  assert.equal(redirects.length, 4);
  for (const v of redirects) assert.equal(toHex(encodeServerMsg(decodeServerMsg(v.bytes))), toHex(v.bytes));
  for (const name of ['bad_redirect_reason', 'truncated_redirect_cert']) {
    const v = vectors.find((x) => !x.ok && x.name === name);
    assert.ok(v, name);
    assert.throws(() => decodeServerMsg(v.bytes), name);
  }
  assert.deepEqual(REDIRECT_REASONS, ['Session', 'Draining', 'Moved', 'Placement']);
  assert.deepEqual(ERROR_CODES[22], ['cluster_unavailable', false]);
  assert.equal(FspError.fromServer(22, 'later').fatal, false);
});

test('a NodeAddr leads to https://{quic}/signal, {http}/ws (ws/wss) and its pinned hash', () => {
  assert.equal(wsUrlOfHttp('http://10.0.0.2:8080'), 'ws://10.0.0.2:8080/ws');
  assert.equal(wsUrlOfHttp('https://eu-2.example.com/'), 'wss://eu-2.example.com/ws');
  assert.equal(wsUrlOfHttp(''), '');
  assert.equal(wsUrlOfHttp('ftp://x'), '');
  const hash = new Uint8Array(32).fill(7);
  assert.deepEqual(nodeServer({ name: 'b', quic: '10.0.0.2:4433', http: 'http://10.0.0.2:8080', certSha256: hash }), {
    name: 'b', url: 'https://10.0.0.2:4433/signal', wsUrl: 'ws://10.0.0.2:8080/ws', certHash: hash,
  });
  assert.equal(nodeServer({ name: 'v6', quic: '[::1]:4433', http: '', certSha256: null }).url, 'https://[::1]:4433/signal');
  const wsOnly = nodeServer({ name: 'c', quic: '', http: 'https://c.example.com', certSha256: null });
  assert.deepEqual([wsOnly.url, wsOnly.wsUrl, wsOnly.certHash], ['', 'wss://c.example.com/ws', null]);
  // A hash that is not SHA-256 is not pinned.
  assert.equal(nodeServer({ name: 'x', quic: 'h:1', http: '', certSha256: Uint8Array.of(1, 2) }).certHash, null);
  assert.equal(nodeServer({ name: 'x', quic: 'no-port', http: '', certSha256: null }).url, '');
  assert.equal(reachableWith(wsOnly, 'webtransport'), false);
  assert.equal(reachableWith(wsOnly, 'websocket'), true);
  assert.equal(reachableWith(wsOnly, 'auto'), true);
  assert.equal(reachableWith({ url: '', wsUrl: '' }, 'auto'), false);
});

test('the redirect limit and the rotation over the configured servers', () => {
  assert.equal(MAX_REDIRECTS, 5);
  for (let n = 1; n <= 5; n++) assert.equal(redirectStep(n), 'follow');
  assert.equal(redirectStep(6), 'fail');
  assert.equal(redirectStep(2, 1), 'fail');
  let at = { index: 0, target: null };
  at = rotateServer(at, 3);
  assert.deepEqual(at, { index: 1, target: null });
  at = rotateServer(rotateServer(at, 3), 3);
  assert.deepEqual(at, { index: 0, target: null }, 'round robin');
  // A redirect target that fails: back to the list where it left off.
  at = rotateServer({ index: 2, target: { url: 'x' } }, 3);
  assert.deepEqual(at, { index: 2, target: null });
  assert.deepEqual(rotateServer({ index: 0, target: null }, 1), { index: 0, target: null });
});

// --- the client over fake transports --------------------------------------------------------------

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));
const LIMITS = {
  maxFrameBytes: 16384, maxRelayPayload: 1100, relayDatagramsPerSec: 500, relayBytesPerSec: 262144,
  signalsPerSec: 0, maxPeersPerSession: 16, resumeGraceMs: 15000,
};
const TOKEN = Uint8Array.from({ length: 16 }, (_, i) => i + 1);
const peerInfo = (id) => ({ id, name: `p${id}`, client: 'Browser' });
const welcome = (peerId, resumed = false) => ({
  type: 'Welcome', version: 1, peerId, resumeToken: TOKEN, resumed, iceServers: [], limits: LIMITS, serverTimeMs: 0n,
});
const joined = (code, peers) => ({ type: 'SessionJoined', session: { code, host: peers[0], maxPeers: 16, idleTtlSecs: 60, peers: peers.map(peerInfo) } });
const NODE_B = { name: 'b', quic: '10.0.0.2:4433', http: 'http://10.0.0.2:8080', certSha256: new Uint8Array(32).fill(0xbb) };
const redirect = (reason, node = NODE_B) => ({ type: 'Redirect', reason, node });

/** A client whose every transport is a fake recording where it was pointed. */
function clusterClient(extra = {}) {
  const fakes = [];
  const c = new FlightSimP2P({
    host: '127.0.0.1', certHash: 'aa'.repeat(32), forceRelay: true, pingIntervalMs: 0, statsIntervalMs: 0, fastConnect: false,
    transport: (opts) => {
      let settle;
      const f = {
        kind: 'websocket', url: opts.wsUrl, opts, onControl: null, onRelay: null, onProtocolError: null, onClosed: null,
        closed: null, sent: [],
        open() { return new Promise((resolve, reject) => { settle = { resolve, reject }; }); },
        succeed() { settle.resolve(); },
        fail(msg) { settle.reject(new FspError(0, 'connect_failed', msg)); },
        close(code, reason) { f.closed = { code, reason }; if (settle) settle.reject(new FspError(0, 'closed', 'aborted')); },
        sendControl(b) { f.sent.push(b); return Promise.resolve(); },
        sendRelay() { return true; },
        server(m) { f.onControl(encodeServerMsg(m)); },
      };
      fakes.push(f);
      return f;
    },
    ...extra,
  });
  const events = [];
  for (const type of ['redirect', 'reconnecting', 'reconnected', 'session', 'close', 'error']) {
    c.addEventListener(type, (e) => events.push([type, e.detail]));
  }
  return { c, fakes, events };
}
const sent = (f) => f.sent.map((b) => decodeSent(b));

test('a redirected join ends joined on the node it was sent to, with the join sent again', async () => {
  const { c, fakes, events } = clusterClient();
  const p = c.joinSession('7KQ2MX');
  await tick();
  fakes[0].succeed();
  await tick();
  assert.deepEqual(sent(fakes[0]).map((m) => m.type), ['Hello', 'JoinSession']);
  fakes[0].server(welcome(7));
  fakes[0].server(redirect('Session'));
  assert.equal(fakes[0].closed.code, ABANDON_CLOSE_CODE);
  assert.equal(events.find((e) => e[0] === 'redirect')[1].count, 1);
  await tick(5);
  assert.equal(fakes.length, 2);
  // Pointed at node B, with its hash pinned.
  assert.equal(fakes[1].opts.url, 'https://10.0.0.2:4433/signal');
  assert.equal(fakes[1].opts.wsUrl, 'ws://10.0.0.2:8080/ws');
  assert.deepEqual([...fakes[1].opts.certHash], new Array(32).fill(0xbb));
  fakes[1].succeed();
  await tick();
  const hello = sent(fakes[1]);
  assert.equal(hello[0].type, 'Hello');
  assert.equal(hello[0].resumeToken, null, 'in no session: no token, a new peer on B');
  fakes[1].server(welcome(3));
  await tick();
  assert.deepEqual(sent(fakes[1]).map((m) => m.type), ['Hello', 'JoinSession']);
  fakes[1].server(joined('7KQ2MX', [1, 3]));
  const info = await p;
  assert.equal(info.code, '7KQ2MX');
  assert.equal(c.peerId, 3);
  assert.equal(c.state, 'connected');
  assert.ok(!events.some((e) => e[0] === 'close'));
  c.close();
});

test('a Redirect instead of the Welcome: connect() resolves with the Welcome of the node', async () => {
  const { c, fakes } = clusterClient({ resumeToken: TOKEN });
  const w = c.connect();
  await tick();
  fakes[0].succeed();
  await tick();
  fakes[0].server(redirect('Session', { ...NODE_B, certSha256: null }));
  await tick(5);
  assert.equal(fakes[1].opts.certHash, null, 'no hash: a CA certificate');
  fakes[1].succeed();
  await tick();
  assert.deepEqual([...sent(fakes[1])[0].resumeToken], [...TOKEN], 'a resume keeps its token');
  fakes[1].server(welcome(5, true));
  assert.equal((await w).peerId, 5);
  c.close();
});

test('an unasked Draining redirect moves the session: resume token on the new node, same peer id', async () => {
  const { c, fakes, events } = clusterClient();
  const p = c.joinSession('ABCDEF');
  await tick();
  fakes[0].succeed();
  await tick();
  fakes[0].server(welcome(4));
  fakes[0].server(joined('ABCDEF', [1, 4]));
  await p;
  fakes[0].server(redirect('Draining'));
  assert.equal(c.state, 'reconnecting');
  assert.equal(fakes[0].closed.code, ABANDON_CLOSE_CODE, 'the seat is kept');
  await tick(5);
  fakes[1].succeed();
  await tick();
  const hello = sent(fakes[1]);
  assert.deepEqual(hello.map((m) => m.type), ['Hello']);
  assert.deepEqual([...hello[0].resumeToken], [...TOKEN]);
  fakes[1].server(welcome(4, true));
  fakes[1].server(joined('ABCDEF', [1, 4]));
  const rc = events.find((e) => e[0] === 'reconnected')[1];
  assert.equal(rc.resumed, true);
  assert.equal(c.peerId, 4);
  assert.equal(c.session.code, 'ABCDEF');
  assert.ok(!events.some((e) => e[0] === 'error'), 'no error for the app');
  c.close();
});

test('more than maxRedirects in a row fail the join with too_many_redirects', async () => {
  const { c, fakes, events } = clusterClient({ maxRedirects: 2 });
  const p = c.joinSession('LOOPED');
  p.catch(() => {});
  await tick();
  fakes[0].succeed();
  await tick();
  fakes[0].server(welcome(1));
  for (let i = 0; i < 2; i++) {
    fakes[fakes.length - 1].server(redirect('Session', { ...NODE_B, name: `n${i}` }));
    await tick(5);
    fakes[fakes.length - 1].succeed();
    await tick();
    fakes[fakes.length - 1].server(welcome(10 + i));
    await tick();
  }
  fakes[fakes.length - 1].server(redirect('Session', { ...NODE_B, name: 'n2' }));
  await assert.rejects(p, (e) => e.codeName === 'too_many_redirects' && /n2/.test(e.message));
  assert.equal(fakes.length, 3, 'the third redirect is not followed');
  assert.equal(events.filter((e) => e[0] === 'redirect').length, 3);
  c.close();
});

test('fallbacks: an unreachable redirect target, then a dead main server, lead on round robin', async () => {
  const { c, fakes } = clusterClient({
    fallbacks: [{ host: '127.0.0.2', port: 5433, wsUrl: 'ws://127.0.0.2:9080/ws' }, { url: 'https://n3:4433/signal', certHash: null }],
  });
  const p = c.joinSession('ABCDEF');
  await tick();
  fakes[0].succeed();
  await tick();
  assert.equal(fakes[0].opts.url, 'https://127.0.0.1:4433/signal');
  fakes[0].server(welcome(4));
  fakes[0].server(joined('ABCDEF', [1, 4]));
  await p;
  fakes[0].server(redirect('Moved'));
  await tick(5);
  assert.equal(fakes[1].opts.url, 'https://10.0.0.2:4433/signal');
  fakes[1].fail('ECONNREFUSED');
  // The target failed: back to the configured list (the main server first), after the backoff.
  await tick(300);
  assert.equal(fakes[2].opts.url, 'https://127.0.0.1:4433/signal');
  fakes[2].fail('ECONNREFUSED');
  await tick(600);
  assert.equal(fakes[3].opts.url, 'https://127.0.0.2:5433/signal');
  assert.equal(fakes[3].opts.wsUrl, 'ws://127.0.0.2:9080/ws');
  assert.deepEqual([...fakes[3].opts.certHash], new Array(32).fill(0xaa), 'the main hash by default');
  fakes[3].fail('ECONNREFUSED');
  await tick(1100);
  assert.equal(fakes[4].opts.url, 'https://n3:4433/signal');
  assert.equal(fakes[4].opts.certHash, null);
  fakes[4].succeed();
  await tick();
  fakes[4].server(welcome(4, true));
  assert.equal(c.state, 'connected');
  assert.equal(c.peerId, 4);
  c.close();
});

test('cluster_unavailable during a resume: retried on the same node; as an answer it rejects the request', async () => {
  const { c, fakes } = clusterClient({ fallbacks: [{ host: '127.0.0.9' }] });
  const p = c.joinSession('ABCDEF');
  await tick();
  fakes[0].succeed();
  await tick();
  fakes[0].server(welcome(4));
  fakes[0].server(joined('ABCDEF', [1, 4]));
  await p;
  fakes[0].onClosed({ code: null, reason: 'lost' });
  await tick(5);
  fakes[1].succeed();
  await tick();
  fakes[1].server({ type: 'Error', code: 22, message: 'directory unreachable' });
  assert.equal(c.state, 'reconnecting');
  await tick(300);
  assert.equal(fakes.length, 3);
  assert.equal(fakes[2].opts.url, fakes[1].opts.url, 'the same node again');
  fakes[2].succeed();
  await tick();
  fakes[2].server(welcome(4, true));
  assert.equal(c.state, 'connected');
  const q = c.createSession();
  fakes[2].server({ type: 'Error', code: 22, message: 'directory unreachable' });
  await assert.rejects(q, (e) => e.code === 22 && e.fatal === false);
  assert.equal(c.state, 'connected');
  c.close();
});
