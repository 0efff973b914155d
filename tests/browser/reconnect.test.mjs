// Reconnecting: the pure decisions (backoff, what a close means, giving up, attempt
// timeout, a silent server) and the client over fake transports (resume, rejoin, fatal
// close, GoingAway). Runs in Node without a server: node --test tests/browser/reconnect.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  encodeRelay, wrapFlight, RECONNECT_BACKOFF_MS, ABANDON_CLOSE_CODE, backoffDelayMs,
  closeDisposition, reconnectStep, attemptTimeoutMs, serverSilent, decodeClientMsg,
} from '../../client/web/fsp2p.js';
import {
  tick, TOKEN, peerInfo, welcomeMsg, reconnectingClient, sentTypes, decodeSent,
} from './fakes.mjs';

// --- reconnecting: the pure decisions ----------------------------------------------------------

test('reconnect backoff: at once, then 250 ms, 500 ms, 1 s, 2 s and 4 s at most, with jitter into the upper half of each step', () => {
  assert.deepEqual([...RECONNECT_BACKOFF_MS], [0, 250, 500, 1000, 2000, 4000]);
  const hi = () => 0.999999;
  const mid = () => 0.5;
  const lo = () => 0;
  const attempts = [0, 1, 2, 3, 4, 5, 6, 20];
  assert.deepEqual(attempts.map((a) => backoffDelayMs(a, hi)), [0, 249, 499, 999, 1999, 3999, 3999, 3999]);
  assert.deepEqual(attempts.map((a) => backoffDelayMs(a, mid)), [0, 187, 375, 750, 1500, 3000, 3000, 3000]);
  assert.deepEqual(attempts.map((a) => backoffDelayMs(a, lo)), [0, 125, 250, 500, 1000, 2000, 2000, 2000]);
  // Never above 4 s, never below half the step (Math.random by default).
  for (let a = 0; a < 50; a++) {
    const d = backoffDelayMs(a);
    const step = RECONNECT_BACKOFF_MS[Math.min(a, RECONNECT_BACKOFF_MS.length - 1)];
    assert.ok(d >= step / 2 && d <= step && d <= 4000, `attempt ${a}: ${d} ms`);
  }
  // A broken random source cannot push it outside the bounds.
  assert.equal(backoffDelayMs(3, () => 7), 1000);
  assert.equal(backoffDelayMs(3, () => -1), 500);
  assert.equal(backoffDelayMs(3, () => NaN), 500);
});

test('what a close means: reconnect when the connection just ended or the server is going away, else close for good', () => {
  const d = (c) => closeDisposition(c).action;
  // The connection just ended (1006, QUIC idle timeout, proxy killed, no answer to pings).
  assert.deepEqual(closeDisposition({ code: null }), { action: 'reconnect', verdict: 'resume', delayMs: 0 });
  // Nothing to resume before a Welcome; reconnecting switched off.
  assert.equal(d({ code: null, welcomed: false }), 'close');
  assert.equal(d({ code: null, enabled: false }), 'close');
  // Fatal server errors (PROTOCOL.md §6) end it for good, whatever the close code says; but
  // shutting_down (7) means "come back later" and slow_consumer (21) keeps the seat (§12, rule 3).
  for (const code of [1, 2, 3, 4, 6, 19, 20]) {
    assert.equal(d({ code, fatalCode: code }), 'close', `code ${code}`);
    assert.equal(d({ code: null, fatalCode: code }), 'close', `fatal ${code} then a bare end`);
    assert.equal(d({ code }), 'close', `close code ${code} without an Error`);
  }
  assert.match(closeDisposition({ code: 20, fatalCode: 20 }).why, /replaced/);
  // A normal close by the server.
  assert.equal(d({ code: 0 }), 'close');
  // GoingAway: shutting_down then means "come back after reconnectAfterMs" (what is left of it).
  assert.deepEqual(closeDisposition({ code: 7, fatalCode: 7, goingAwayInMs: 1500.4 }), { action: 'reconnect', verdict: 'resume_after', delayMs: 1500 });
  assert.deepEqual(closeDisposition({ code: null, goingAwayInMs: -20 }), { action: 'reconnect', verdict: 'resume_after', delayMs: 0 });
  // shutting_down without a GoingAway: back after 1 s; slow_consumer: at once; too_many_join_attempts
  // before the end: final, though not fatal by itself.
  assert.deepEqual(closeDisposition({ code: 7, fatalCode: 7 }), { action: 'reconnect', verdict: 'resume_after', delayMs: 1000 });
  assert.deepEqual(closeDisposition({ code: 21, fatalCode: 21 }), { action: 'reconnect', verdict: 'resume', delayMs: 0 });
  assert.equal(d({ code: null, fatalCode: 17 }), 'close');
  assert.equal(d({ code: 7, fatalCode: 7, goingAwayInMs: 100, enabled: false }), 'close');
});

test('when to give up: after reconnectTimeoutMs (0 = never)', () => {
  const r = () => 0.999999;
  assert.deepEqual(reconnectStep({ attempt: 0, elapsedMs: 0, giveUpMs: 60000, random: r }), { action: 'wait', delayMs: 0 });
  assert.deepEqual(reconnectStep({ attempt: 5, elapsedMs: 30000, giveUpMs: 60000, random: r }), { action: 'wait', delayMs: 3999 });
  // The window is inclusive: an attempt starting exactly at 60 s still goes, one after it does not.
  assert.deepEqual(reconnectStep({ attempt: 5, elapsedMs: 56001, giveUpMs: 60000, random: r }), { action: 'wait', delayMs: 3999 });
  assert.deepEqual(reconnectStep({ attempt: 5, elapsedMs: 56002, giveUpMs: 60000, random: r }), { action: 'giveup' });
  assert.deepEqual(reconnectStep({ attempt: 500, elapsedMs: 1e9, giveUpMs: 0, random: r }), { action: 'wait', delayMs: 3999 });
});

test('attempt timeout and a silent server', () => {
  assert.equal(attemptTimeoutMs(null, 10000), 3000);
  assert.equal(attemptTimeoutMs(50, 10000), 3000);
  assert.equal(attemptTimeoutMs(500, 10000), 6000);
  assert.equal(attemptTimeoutMs(5000, 10000), 10000);
  assert.equal(attemptTimeoutMs(null, 1000), 1000);
  assert.equal(serverSilent(null, 1e6, 3000), false, 'no ping outstanding');
  assert.equal(serverSilent(1000, 4000, 3000), false);
  assert.equal(serverSilent(1000, 4001, 3000), true);
  assert.equal(serverSilent(0, 3001, 3000), true, 'a Ping at time 0 counts');
  assert.equal(serverSilent(1000, 1e9, 0), false, 'liveness check off');
});

// --- reconnecting: the client over fake transports ---------------------------------------------

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

test('reconnect: an attempt past the resume grace sends no token and rejoins by code in its first flight (PROTOCOL.md §12, rule 4)', async () => {
  const { c, fakes, server, events } = await reconnectingClient();
  // As if the server's Welcome had said resumeGraceMs: 100.
  c.welcome.limits.resumeGraceMs = 100;
  fakes[0].onClosed({ code: null, reason: 'lost' });
  await tick(5);
  // Attempt 1 at once, within the grace: the token, nothing else.
  fakes[1].succeed();
  await tick();
  assert.deepEqual(sentTypes(fakes[1]).map((m) => [m.type, m.type === 'Hello' && m.resumeToken !== null]), [['Hello', true]]);
  fakes[1].onClosed({ code: null, reason: 'lost again' });
  // Attempt 2 after the backoff (125–250 ms): past the grace.
  await tick(300);
  assert.equal(fakes.length, 3);
  fakes[2].succeed();
  await tick();
  const sent = sentTypes(fakes[2]);
  assert.deepEqual(sent.map((m) => m.type), ['Hello', 'JoinSession']);
  assert.equal(sent[0].resumeToken, null, 'no token past the grace');
  assert.deepEqual(sent[1], { type: 'JoinSession', code: 'ABCDEF', password: 'pw', regionRtts: [] }, 'at the Hello version (4)');
  server(welcomeMsg(9, false));
  server({ type: 'SessionJoined', session: { code: 'ABCDEF', host: 2, maxPeers: 16, idleTtlSecs: 60, peers: [peerInfo(2), peerInfo(3), peerInfo(9)] } });
  await tick();
  assert.equal(sentTypes(fakes[2]).filter((m) => m.type === 'JoinSession').length, 1, 'the join went once');
  assert.equal(events.find((e) => e[0] === 'reconnected')[1].resumed, false);
  const rj = events.find((e) => e[0] === 'rejoined');
  assert.ok(rj, 'rejoined event');
  assert.deepEqual([rj[1].peerId, rj[1].previousPeerId, rj[1].session.code], [9, 1, 'ABCDEF']);
  assert.equal(c.state, 'connected');
  assert.deepEqual([...c.links.keys()].sort(), [2, 3]);
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

test('liveness in the client: Pings every pingIntervalMs; anything heard keeps the server alive; the oldest unanswered Ping past the adaptive timeout starts a reconnection', async () => {
  const { c, fakes, server, events } = await reconnectingClient({ pingIntervalMs: 500, reconnectTimeoutMs: 0 });
  try {
    const f = fakes[0];
    const pings = [];
    let answer = true;
    const send = f.sendControl;
    f.sendControl = (b) => {
      const m = decodeSent(b);
      if (m.type === 'Ping') {
        pings.push(performance.now());
        if (answer) setTimeout(() => { if (f.onControl) server({ type: 'Pong', clientTimeMs: m.clientTimeMs, serverTimeMs: 0n }, 0); }, 5);
      }
      return send(b);
    };
    // The first Ping goes out one interval after the Welcome, then one every 500 ms, each
    // answered: RTT samples of a few ms settle the timeout at its floor (1500 ms).
    await tick(1800);
    assert.ok(pings.length >= 3 && pings.length <= 4, `${pings.length} pings in 1.8 s`);
    for (let i = 1; i < pings.length; i++) assert.ok(pings[i] - pings[i - 1] >= 490 && pings[i] - pings[i - 1] < 700, `gap ${pings[i] - pings[i - 1]}`);
    assert.ok(c.rttMs !== null && c.srttMs !== null && c.rttMs < 200, `rtt ${c.rttMs}, srtt ${c.srttMs}`);
    // No more Pongs, but relay frames keep coming: anything heard resets the wait.
    answer = false;
    let lastHeard = 0;
    const relay = setInterval(() => {
      f.onRelay(encodeRelay(2, wrapFlight(1, Uint8Array.of(1))));
      lastHeard = performance.now();
    }, 200);
    await tick(2500);
    clearInterval(relay);
    assert.equal(c.state, 'connected', 'relay frames kept the server alive');
    // Silence: the first Ping after the last frame is outstanding; 1500 ms later (the floor) the
    // server is lost: between 1.5 s and 2 s (one Ping interval more) after the last frame.
    const lostAt = await new Promise((resolve) => {
      const iv = setInterval(() => {
        if (c.state !== 'connected') { clearInterval(iv); resolve(performance.now()); }
      }, 10);
    });
    const rc = events.find((e) => e[0] === 'reconnecting');
    assert.ok(rc, 'reconnecting');
    assert.match(rc[1].reason, /no answer from the server for 15\d\d ms \(live timeout 1500 ms\)/);
    const waited = lostAt - lastHeard;
    assert.ok(waited >= 1500 && waited < 2300, `lost ${Math.round(waited)} ms after the last thing heard`);
  } finally {
    c.close();
  }
});
