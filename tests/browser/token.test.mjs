// Access tokens in the browser client (PROTOCOL.md §13, issue 24), over fake transports under
// node: the `token` and `getToken()` options, the token in the URL's `access_token` parameter,
// and what token_required / token_invalid / token_expired / token_revoked / forbidden do.
// The same against a real server started with --auth, in Chromium: e2e.test.mjs, test 13.
//   node --test tests/browser/token.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { FlightSimP2P, connectUrl, ACCESS_TOKEN_PARAM, encodeServerMsg, FspError } from '../../client/web/fsp2p.js';
import { redact, describe } from '../../client/web/transports.js';
import { tick, fakeTransport, welcomeMsg, peerInfo, TOKEN } from './fakes.mjs';

const JWT = 'eyJhbGciOiJIUzI1NiIsImtpZCI6Im1haW4iLCJ0eXAiOiJKV1QifQ.eyJzdWIiOiJhbGljZSJ9.vDEOmFMcN6WIbx5juxopEDyLMbZhwa24hbwYIoPvFSI';

test('the token rides in access_token, percent-encoded, beside first; never in a message', () => {
  assert.equal(ACCESS_TOKEN_PARAM, 'access_token');
  assert.equal(connectUrl('https://h:4433/signal', null, JWT), `https://h:4433/signal?access_token=${JWT}`);
  assert.equal(connectUrl('ws://h:8080/ws', null, null), 'ws://h:8080/ws');
  const withFirst = new URL(connectUrl('ws://h:8080/ws', [Uint8Array.of(0, 1, 0, 0, 0)], 'a b&c=d/é'));
  assert.ok(withFirst.searchParams.get('first'));
  assert.equal(withFirst.searchParams.get('access_token'), 'a b&c=d/é');
  assert.match(withFirst.search, /access_token=a\+b%26c%3Dd%2F%C3%A9$/);
  // Should a URL with it end up in an error message, it is hidden.
  const msg = `failed to connect to ${connectUrl('https://h:4433/signal', [Uint8Array.of(0)], JWT)}: refused`;
  assert.ok(!redact(msg).includes(JWT) && !redact(msg).includes('eyJ'), redact(msg));
  assert.match(redact(msg), /access_token=…: refused$/);
  assert.ok(!describe(new Error(msg)).includes(JWT));
});

/**
 * A client whose every transport is a fake that records the access token it was given.
 * @param {object} extra options
 */
function tokenClient(extra) {
  const log = [];
  const fakes = [];
  const c = new FlightSimP2P({
    host: '127.0.0.1', forceRelay: true, pingIntervalMs: 0, statsIntervalMs: 0, fastConnect: false,
    transport: (opts) => {
      const f = fakeTransport('websocket', log);
      f.accessToken = opts.accessToken;
      fakes.push(f);
      return f;
    },
    ...extra,
  });
  const events = [];
  for (const type of ['error', 'close', 'reconnecting', 'reconnected']) c.addEventListener(type, (e) => events.push([type, e.detail]));
  const server = (m, i = fakes.length - 1) => fakes[i].onControl(encodeServerMsg(m));
  return { c, fakes, events, server };
}

/** Connect and get the Welcome (peer 1) on the first fake. */
/** Wait until `cond()` holds (polling), at most `ms`; whether it does. */
async function until(cond, ms = 10000) {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await tick(20);
  return cond();
}

async function welcomed(k) {
  const p = k.c.connect();
  for (let i = 0; i < 5 && !k.fakes.length; i++) await tick();
  k.fakes[0].succeed();
  await tick();
  k.server(welcomeMsg(1, false));
  await p;
}

test('token: every connection carries it; getToken() is asked on every connect and reconnect and wins over token', async () => {
  const plain = tokenClient({ token: JWT });
  await welcomed(plain);
  assert.equal(plain.fakes[0].accessToken, JWT);
  assert.equal(plain.c.transportUrl.includes(JWT), false);
  plain.c.close();

  let calls = 0;
  const k = tokenClient({ token: 'static', getToken: async () => `fresh-${++calls}` });
  await welcomed(k);
  assert.equal(calls, 1);
  assert.equal(k.fakes[0].accessToken, 'fresh-1');
  // The connection is lost: the resume asks again.
  k.fakes[0].onClosed({ code: null, reason: 'test: lost' });
  for (let i = 0; i < 5 && k.fakes.length < 2; i++) await tick();
  k.fakes[1].succeed();
  await tick();
  k.server({ ...welcomeMsg(1, true) });
  await tick();
  assert.equal(calls, 2);
  assert.equal(k.fakes[1].accessToken, 'fresh-2');
  assert.deepEqual(k.events.map((e) => e[0]), ['reconnecting', 'reconnected']);
  // A redirect: a new connection, a new token.
  k.server({ type: 'Redirect', reason: 'Session', node: { name: 'b', quic: '127.0.0.1:4434', http: 'http://127.0.0.1:8081', certSha256: null } });
  for (let i = 0; i < 5 && k.fakes.length < 3; i++) await tick();
  assert.equal(calls, 3);
  assert.equal(k.fakes[2].accessToken, 'fresh-3');
  k.c.close();

  // getToken() returning nothing: the token option.
  const n = tokenClient({ token: 'static', getToken: () => null });
  await welcomed(n);
  assert.equal(n.fakes[0].accessToken, 'static');
  n.c.close();
});

test('token: getToken() throwing fails connect() clearly; during a reconnection the attempt fails and the next asks again', async () => {
  const k = tokenClient({ getToken: () => { throw new Error('backend down'); } });
  await assert.rejects(k.c.connect(), (e) => e instanceof FspError && e.codeName === 'token_unavailable' && /backend down/.test(e.message));
  assert.equal(k.c.state, 'closed');
  assert.equal(k.fakes.length, 0);

  let fail = false;
  let calls = 0;
  const r = tokenClient({ getToken: () => { calls++; if (fail) throw new Error('down'); return `t${calls}`; } });
  await welcomed(r);
  fail = true;
  r.fakes[0].onClosed({ code: null, reason: 'test: lost' });
  // Attempt 1 at once (fails), attempt 2 after 125-250 ms (fails): waited for, not timed,
  // so a busy machine's late timers cannot fail it.
  assert.ok(await until(() => calls >= 3), `asked ${calls} times`);
  assert.equal(r.fakes.length, 1, 'no transport without a token');
  fail = false;
  assert.ok(await until(() => r.fakes.length >= 2), 'the next attempt, with a token, made a transport');
  assert.equal(r.fakes.length, 2);
  assert.match(r.fakes[1].accessToken, /^t\d+$/);
  r.c.close();
});

for (const [code, name] of [[23, 'token_required'], [24, 'token_invalid'], [27, 'token_revoked'], [25, 'token_expired']]) {
  test(`token: ${name} (${code}) refusing the Hello ends the client with that error, no reconnection`, async () => {
    const k = tokenClient({ token: 'x' });
    const p = k.c.connect();
    await tick();
    k.fakes[0].succeed();
    await tick();
    k.server({ type: 'Error', code, message: 'refused' });
    k.fakes[0].onClosed({ code, reason: 'refused' });
    await assert.rejects(p, (e) => e.code === code && e.codeName === name);
    await tick(300);
    assert.equal(k.c.state, 'closed');
    assert.equal(k.fakes.length, 1, 'no second attempt');
    const close = k.events.find((e) => e[0] === 'close');
    assert.equal(close[1].code, code);
  });
}

for (const [code, name] of [[23, 'token_required'], [24, 'token_invalid'], [27, 'token_revoked']]) {
  test(`token: ${name} (${code}) in session or refusing a resume ends the client`, async () => {
    const k = tokenClient({ getToken: () => 'x' });
    await welcomed(k);
    if (code === 27) {
      // Revoked in session: the Error, then the close.
      k.server({ type: 'Error', code, message: 'revoked' });
      k.fakes[0].onClosed({ code, reason: 'revoked' });
    } else {
      k.fakes[0].onClosed({ code: null, reason: 'test: lost' });
      for (let i = 0; i < 5 && k.fakes.length < 2; i++) await tick();
      k.fakes[1].succeed();
      await tick();
      k.server({ type: 'Error', code, message: 'refused' });
      k.fakes[1].onClosed({ code, reason: 'refused' });
    }
    await tick(300);
    assert.equal(k.c.state, 'closed');
    const close = k.events.find((e) => e[0] === 'close');
    assert.equal(close[1].code, code);
    assert.equal(close[1].error.codeName, name);
  });
}

test('token_expired: the warning resumes at once with a fresh token from getToken(); the same peer id', async () => {
  let calls = 0;
  const k = tokenClient({ getToken: () => `t${++calls}` });
  await welcomed(k);
  // The warning: an Error token_expired without a close.
  k.server({ type: 'Error', code: 25, message: 'the access token expires in 1 s' });
  for (let i = 0; i < 5 && k.fakes.length < 2; i++) await tick();
  assert.equal(calls, 2);
  assert.equal(k.fakes.length, 2, 'a new connection');
  assert.equal(k.fakes[1].accessToken, 't2');
  assert.equal(k.fakes[0].closed.code, 999, 'the old one abandoned, keeping the seat');
  k.fakes[1].succeed();
  await tick();
  k.server(welcomeMsg(1, true));
  await tick();
  assert.equal(k.c.state, 'connected');
  assert.equal(k.c.peerId, 1);
  const err = k.events.find((e) => e[0] === 'error');
  assert.deepEqual([err[1].code, err[1].fatal], [25, false]);
  k.c.close();
});

test('token_expired: the close at the end resumes asking getToken() again; without getToken() the client ends', async () => {
  let calls = 0;
  const k = tokenClient({ getToken: () => (++calls === 2 ? 't1' : `t${calls}`) });
  await welcomed(k);
  // The warning, but getToken() has nothing fresher: wait for the close.
  k.server({ type: 'Error', code: 25, message: 'expires in 1 s' });
  await tick();
  assert.equal(k.fakes.length, 1);
  k.server({ type: 'Error', code: 25, message: 'expired' });
  k.fakes[0].onClosed({ code: 25, reason: 'token_expired' });
  for (let i = 0; i < 5 && k.fakes.length < 2; i++) await tick();
  // (The Error before the close asked too: it cannot tell the warning from the end.)
  assert.equal(k.fakes[1].accessToken, `t${calls}`);
  k.fakes[1].succeed();
  await tick();
  k.server(welcomeMsg(1, true));
  await tick();
  assert.equal(k.c.state, 'connected');
  k.c.close();

  const s = tokenClient({ token: 'static' });
  await welcomed(s);
  s.server({ type: 'Error', code: 25, message: 'expired' });
  s.fakes[0].onClosed({ code: 25, reason: 'token_expired' });
  for (let i = 0; i < 5 && s.fakes.length < 2; i++) await tick();
  s.fakes[1].succeed();
  await tick();
  s.server({ type: 'Error', code: 25, message: 'expired' });
  s.fakes[1].onClosed({ code: 25, reason: 'token_expired' });
  await tick();
  assert.equal(s.c.state, 'closed');
  const close = s.events.find((e) => e[0] === 'close');
  assert.equal(close[1].code, 25);
  assert.match(close[1].reason, /no getToken/);
});

test('forbidden (26) fails the request; the connection stays', async () => {
  const k = tokenClient({ token: 'x' });
  await welcomed(k);
  const p = k.c.createSession();
  await tick();
  k.server({ type: 'Error', code: 26, message: 'this token may not create sessions' });
  await assert.rejects(p, (e) => e.code === 26 && e.codeName === 'forbidden');
  assert.equal(k.c.state, 'connected');
  k.server({ type: 'SessionJoined', session: { code: 'ABCDEF', host: 2, maxPeers: 16, idleTtlSecs: 60, peers: [peerInfo(2), peerInfo(1)] } });
  assert.ok(TOKEN);
  k.c.close();
});
