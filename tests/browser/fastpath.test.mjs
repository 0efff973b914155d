// The fast path: Hello and the first create/join in the connection's URL (PROTOCOL.md §1,
// §10), over fake transports. Runs in Node without a server: node --test tests/browser/fastpath.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  decodeClientMsg, FlightSimP2P, FIRST_PARAM,
} from '../../client/web/fsp2p.js';
import {
  tick, TOKEN, peerInfo, welcomeMsg, fastClient, joinedMsg, decodeSent,
} from './fakes.mjs';

test('fast path: connect(); joinSession() in the same tick → Hello and JoinSession in the URL, nothing on the stream', async () => {
  const { c, fakes, events, server } = await fastClient();
  c.connect();
  const joined = c.joinSession('7kq-2mx', { password: 'pw' });
  await tick();
  assert.equal(fakes.length, 1);
  assert.deepEqual(fakes[0].first.map((b) => decodeSent(b).type), ['Hello', 'JoinSession']);
  assert.deepEqual(decodeSent(fakes[0].first[1]), { type: 'JoinSession', code: '7kq-2mx', password: 'pw', regionRtts: [] });
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
  assert.deepEqual(fakes[0].sent.map((b) => decodeSent(b).type), ['LeaveSession']);
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
    assert.deepEqual(fakes[0].first.map((b) => decodeSent(b).type), ['Hello']);
    assert.deepEqual(fakes[0].sent.map((b) => decodeSent(b).type), ['JoinSession']);
    server(welcomeMsg(5, false));
    server(joinedMsg([2, 5]));
    await joined;
    c.close();
  }
  {
    const { c, fakes, server } = await fastClient();
    const p = c.connect({ join: { code: '7KQ2MX', password: 'x' } });
    await tick();
    assert.deepEqual(fakes[0].first.map((b) => decodeSent(b)), [decodeSent(fakes[0].first[0]), { type: 'JoinSession', code: '7KQ2MX', password: 'x', regionRtts: [] }]);
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
    assert.deepEqual(decodeSent(fakes[0].first[1]), { type: 'CreateSession', maxPeers: 4, password: null, regionRtts: [] });
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
    assert.deepEqual(fakes[0].sent.map((b) => decodeSent(b).type), ['Hello', 'JoinSession']);
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
  const hello = decodeSent(fakes[1].first[0]);
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
