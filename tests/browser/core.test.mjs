// The decisions of the browser client (client/web/core.js), driven under node with simulated
// time and randomness: no browser, no server, no timers. Each test plays a timeline (inputs at
// times → what the core decides) for one rule: the reconnect schedule, what a close means, the
// redirect limit and node rotation, liveness, the control stream's rate, the QUIC/WebSocket
// race, the direct/TURN/relay path of a peer.
//   node --test tests/browser/core.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

import {
  RECONNECT_BACKOFF_MS, backoffDelayMs, reconnectStep, closeDisposition, attemptTimeoutMs, serverSilent, afterReconnect,
  PING_INTERVAL_MS, PROBE_INTERVAL_MS, PROBE_AFTER_MS, LIVE_TIMEOUT_MS, rttEstimate, liveTimeoutMs, probeAfterMs, livenessStart, livenessHeard,
  livenessTick, livenessNextPingAt, livenessWakeAt, goingAwayLeftMs, answersSessionRequest, requestTimedOut, pumpStep,
  MAX_REDIRECTS, redirectStep, redirectPlan, rotateServer, nodeServer, reachableWith,
  raceStart, raceSlowReason, raceFailed, carriesFirst,
  directUsable, peerPath, pathChange, connectionStateEffect, ignoreOffer, directRetryDue,
} from '../../client/web/core.js';

const CORE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../client/web/core.js');

/** A seeded generator in [0, 1) (xorshift32): the same "random" jitter on every run. */
function seeded(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 2 ** 32;
  };
}

test('core.js is sans IO: no timers, clock, randomness of its own, network or WebRTC; it imports only the codec', () => {
  const src = readFileSync(CORE, 'utf8');
  for (const bad of [/\bsetTimeout\s*\(/, /\bsetInterval\s*\(/, /\bqueueMicrotask\s*\(/, /Date\.now\s*\(/,
    /performance\.(now|timeOrigin)/, /Math\.random/, /new\s+(RTCPeerConnection|WebSocket|WebTransport)\b/,
    /\bfetch\s*\(/, /\b(location|document|window|globalThis)\./, /addEventListener/]) {
    assert.doesNotMatch(src, bad);
  }
  const imports = [...src.matchAll(/^import .* from '([^']+)';$/gms)].map((m) => m[1]);
  assert.deepEqual(imports, ['./codec.js']);
});

// --- reconnecting ---------------------------------------------------------------------------

/**
 * Play a reconnection against a server that stays unreachable: every attempt fails after
 * `failAfterMs`; the core says when the next one starts, until it gives up.
 * @returns {{starts: number[], gaveUpAt: number}}
 */
function playUnreachable({ giveUpMs, failAfterMs, random }) {
  const starts = [];
  let t = 0;
  let attempt = 0;
  let delay = closeDisposition({ code: null }).delayMs; // the connection just ended
  for (;;) {
    t += delay;
    attempt++;
    starts.push(t);
    t += failAfterMs;
    const step = reconnectStep({ attempt, elapsedMs: t, giveUpMs, random });
    if (step.action === 'giveup') return { starts, gaveUpAt: t };
    delay = step.delayMs;
    if (starts.length > 10000) throw new Error('never gives up');
  }
}

test('reconnect schedule: at once, then 250, 500, 1000, 2000, 4000 ms with jitter floor(step × (0.5 + 0.5r)), giving up after reconnectTimeoutMs', () => {
  assert.deepEqual([...RECONNECT_BACKOFF_MS], [0, 250, 500, 1000, 2000, 4000]);
  // Fails at once (no network): the gaps are the backoff itself.
  const hi = playUnreachable({ giveUpMs: 60000, failAfterMs: 0, random: () => 0.999999 });
  assert.deepEqual(hi.starts.slice(0, 8), [0, 249, 748, 1747, 3746, 7745, 11744, 15743]);
  const lo = playUnreachable({ giveUpMs: 60000, failAfterMs: 0, random: () => 0 });
  assert.deepEqual(lo.starts.slice(0, 8), [0, 125, 375, 875, 1875, 3875, 5875, 7875]);
  for (const [run, last] of [[hi, 3999], [lo, 2000]]) {
    // Every attempt starts within the minute; the next one would not.
    assert.ok(run.starts.every((s) => s < 60000));
    assert.equal(run.gaveUpAt, run.starts[run.starts.length - 1]);
    assert.ok(run.gaveUpAt + last >= 60000 && run.gaveUpAt < 60000, `gave up at ${run.gaveUpAt}`);
  }
  // Any jitter: exactly floor(step × (0.5 + 0.5r)), so in the step's upper half, never above it.
  const r = seeded(23);
  for (let i = 0; i < 1000; i++) {
    const attempt = i % 8;
    const step = RECONNECT_BACKOFF_MS[Math.min(attempt, RECONNECT_BACKOFF_MS.length - 1)];
    let drawn = -1;
    const d = backoffDelayMs(attempt, () => (drawn = r()));
    if (attempt === 0) {
      assert.equal(d, 0, 'attempt 0 never waits');
      continue;
    }
    assert.equal(d, Math.floor(step * (0.5 + 0.5 * drawn)), `attempt ${attempt}, r ${drawn}`);
    assert.ok(d <= step && d >= step / 2, `attempt ${attempt}: ${d} ms`);
  }
  // Attempts that time out (a black hole): each gets attemptTimeoutMs, the backoff comes after it.
  const limit = attemptTimeoutMs(null, 10000);
  assert.equal(limit, 3000);
  const slow = playUnreachable({ giveUpMs: 20000, failAfterMs: limit, random: () => 0.999999 });
  assert.deepEqual(slow.starts, [0, 3249, 6748, 10747, 15746]);
  assert.equal(slow.gaveUpAt, 18746); // the next attempt would start at 22745: past 20 s, no other
  // 0 = never give up; attempt 5 and after use the last step.
  assert.deepEqual(reconnectStep({ attempt: 1000, elapsedMs: 1e9, giveUpMs: 0, random: () => 0.5 }), { action: 'wait', delayMs: 3000 });
});

test('the attempt deadline: at least 3 s, 2 s + 8 RTT on a slow path, at most the connect timeout', () => {
  assert.equal(attemptTimeoutMs(20, 10000), 3000);
  assert.equal(attemptTimeoutMs(400, 10000), 5200);
  assert.equal(attemptTimeoutMs(2000, 10000), 10000);
  assert.equal(attemptTimeoutMs(2000, 0), 18000);
});

test('what a close means, by code and by what came before it', () => {
  const table = [
    [{ code: null }, { action: 'reconnect', verdict: 'resume', delayMs: 0 }],
    [{ code: 0 }, 'close'],
    [{ code: 3 }, 'close'], // a §6 error close (unsupported_version, replaced, server_full, ...)
    [{ code: null, fatalCode: 4 }, 'close'],
    [{ code: 19, goingAwayInMs: 1500.4 }, { action: 'reconnect', verdict: 'resume_after', delayMs: 1500 }],
    [{ code: null, goingAwayInMs: -20 }, { action: 'reconnect', verdict: 'resume_after', delayMs: 0 }],
    // A normal close wins over a GoingAway (PROTOCOL.md §12, rule 3: first match wins).
    [{ code: 0, goingAwayInMs: 2500 }, 'close'],
    // shutting_down without a GoingAway: back after 1 s; slow_consumer, cluster_unavailable: at once.
    [{ code: 7 }, { action: 'reconnect', verdict: 'resume_after', delayMs: 1000 }],
    [{ code: 21 }, { action: 'reconnect', verdict: 'resume', delayMs: 0 }],
    [{ code: 22 }, { action: 'reconnect', verdict: 'resume', delayMs: 0 }],
    [{ code: null, fatalCode: 17 }, 'close'], // too_many_join_attempts before the end: final
    [{ code: null, fatalCode: 10 }, { action: 'reconnect', verdict: 'resume', delayMs: 0 }], // not final
    [{ code: null, redirected: true, enabled: false }, { action: 'reconnect', verdict: 'redirect', delayMs: 0 }],
    [{ code: null, redirected: true, appClosed: true }, 'close'],
    [{ code: null, enabled: false }, 'close'],
    [{ code: null, welcomed: false }, 'close'],
  ];
  for (const [input, want] of table) {
    const d = closeDisposition(input);
    if (want === 'close') assert.equal(d.action, 'close', JSON.stringify(input));
    else assert.deepEqual(d, want, JSON.stringify(input));
  }
  // GoingAway at t=1000 for 5000 ms; the connection ends at t=2500: come back at t=6000.
  assert.equal(goingAwayLeftMs({ at: 1000, ms: 5000 }, 2500), 3500);
  assert.equal(goingAwayLeftMs(null, 2500), null);
  // Errors that answer a create/join (the request fails; the connection stays); not_in_session
  // (14) answers a LeaveSession.
  for (const code of [8, 9, 10, 11, 12, 13, 16, 17, 22]) assert.ok(answersSessionRequest(code), String(code));
  for (const code of [0, 1, 3, 4, 7, 14, 15, 19]) assert.ok(!answersSessionRequest(code), String(code));
});

test('resume or rejoin: the same peer id resumes; a new one voids the old seat and rejoins by code', () => {
  const base = { resumed: true, peerId: 4, previousPeerId: 4, inSession: true, pendingRequest: false };
  assert.equal(afterReconnect(base), 'resumed');
  assert.equal(afterReconnect({ ...base, inSession: false }), 'resumed');
  // Within the grace but on a server that restarted (new id despite the flag), or after the grace.
  assert.equal(afterReconnect({ ...base, peerId: 9 }), 'rejoin');
  assert.equal(afterReconnect({ ...base, resumed: false, peerId: 9 }), 'rejoin');
  // In no session: nothing to rejoin; a create/join still waiting for its answer goes again.
  assert.equal(afterReconnect({ ...base, resumed: false, peerId: 9, inSession: false }), 'fresh');
  assert.equal(afterReconnect({ ...base, resumed: false, peerId: 9, inSession: false, pendingRequest: true }), 'resend');
  // A request of a client in a session is not sent again: it rejoins its session (the session comes first).
  assert.equal(afterReconnect({ ...base, resumed: false, peerId: 9, pendingRequest: true }), 'rejoin');
});

test('request timeouts: unanswered for requestTimeoutMs', () => {
  assert.equal(requestTimedOut(1000, 10999, 10000), false);
  assert.equal(requestTimedOut(1000, 11000, 10000), true);
});

// --- liveness -------------------------------------------------------------------------------

/**
 * Play the liveness timer against a server. The shell's one timer fires at the core's `wakeAtMs`
 * (a throttled tab: not before the next multiple of `throttleMs`); each Ping is answered after
 * `rtt(t)` ms (null: lost on the way, either way) until the server dies at `deadAtMs`. Anything
 * arriving is "heard"; a Pong is an RTT sample. Returns when the core declares the server lost
 * (null if never, by `untilMs`), the pings sent, the last timeout.
 */
function playLiveness({ rtt, deadAtMs = Infinity, untilMs, timeoutMs = null, throttleMs = 0, intervalMs = PING_INTERVAL_MS }) {
  // Connected at t = 0: the first Ping is due one interval later.
  let s = livenessStart(0, intervalMs);
  /** @type {{at: number, sample: number}[]} arrivals pending, sorted */
  const arrivals = [];
  let t = livenessNextPingAt(s);
  let pings = 0;
  let lastTimeout = liveTimeoutMs(null);
  while (t <= untilMs) {
    // Everything heard before the timer fires.
    while (arrivals.length && arrivals[0].at <= t) {
      const a = arrivals.shift();
      s = livenessHeard(s, a.sample);
    }
    const d = livenessTick(s, t, { intervalMs, timeoutMs });
    lastTimeout = d.timeoutMs;
    if (d.action === 'lost') return { lostAt: t, silentMs: d.silentMs, pings, timeoutMs: d.timeoutMs };
    assert.notEqual(d.wakeAtMs, null);
    s = d.state;
    if (d.action === 'ping') {
      pings++;
      const r = t < deadAtMs ? rtt(t) : null;
      if (r !== null) {
        arrivals.push({ at: t + r, sample: r });
        arrivals.sort((x, y) => x.at - y.at);
      }
    }
    assert.ok(d.wakeAtMs > t, `the next tick (${d.wakeAtMs}) is after now (${t})`);
    // The timer fires at wakeAtMs (an arrival in between is heard: nothing to decide then).
    let next = /** @type {number} */ (d.wakeAtMs);
    if (throttleMs) next = Math.ceil(next / throttleMs) * throttleMs;
    t = next;
  }
  return { lostAt: null, pings, timeoutMs: lastTimeout };
}

test('liveness: a Ping every 500 ms; the RTT estimate (RFC 6298 style) and the live timeout it gives', () => {
  assert.equal(PING_INTERVAL_MS, 500);
  assert.deepEqual(LIVE_TIMEOUT_MS, { initialMs: 3000, minMs: 1500, maxMs: 10000 });
  // First sample s: srtt = s, rttvar = s/2; then rttvar = ¾·rttvar + ¼·|srtt − s|, srtt = ⅞·srtt + ⅛·s.
  let e = rttEstimate(null, 100);
  assert.deepEqual(e, { srttMs: 100, rttvarMs: 50 });
  e = rttEstimate(e, 300);
  assert.deepEqual(e, { srttMs: 125, rttvarMs: 0.75 * 50 + 0.25 * 200 });
  // 3000 before a sample; clamp(3 × (srtt + 4·rttvar), 1500, 10000) after.
  assert.equal(liveTimeoutMs(null), 3000);
  assert.equal(liveTimeoutMs({ srttMs: 20, rttvarMs: 5 }), 1500);
  assert.equal(liveTimeoutMs({ srttMs: 200, rttvarMs: 100 }), 1800);
  assert.equal(liveTimeoutMs({ srttMs: 2000, rttvarMs: 1000 }), 10000);
  // A Pong is heard and is a sample; any other message is heard only.
  const s = { rtt: null, awaitingSinceMs: 1000, lastPingAtMs: 1000, intervalMs: 500 };
  assert.deepEqual(livenessHeard(s), { rtt: null, awaitingSinceMs: null, lastPingAtMs: 1000, intervalMs: 500 });
  assert.deepEqual(livenessHeard(s, 40), { rtt: { srttMs: 40, rttvarMs: 20 }, awaitingSinceMs: null, lastPingAtMs: 1000, intervalMs: 500 });
  assert.equal(livenessNextPingAt(livenessHeard(s)), 1500);
  // Connected at t: the first Ping one interval later.
  assert.deepEqual(livenessStart(200), { rtt: null, awaitingSinceMs: null, lastPingAtMs: 200, intervalMs: 500 });
  assert.equal(livenessNextPingAt(livenessStart(200)), 700);
});

test('liveness: lost when the oldest unanswered Ping is older than the live timeout; anything heard resets it', () => {
  // Nothing ever answers: the first Ping (t = 500, one interval after connecting) is outstanding;
  // lost just after 3000 ms more (no sample yet). Pings at 500 and 1000, then, the first one
  // unanswered for probe_after_ms (1000 before a sample), a probe every 100 ms from 1500 to 3500.
  assert.deepEqual(playLiveness({ rtt: () => null, untilMs: 60000 }), { lostAt: 3501, silentMs: 3001, pings: 2 + 21, timeoutMs: 3000 });
  // A quiet path (RTT 30 ms), the server killed at t = 10 s: the timeout has settled at 1500; the
  // Ping of t = 10 s goes unanswered and the server is lost at 11.5 s, within 2 s of the kill.
  // 20 Pings up to 10 s; then, unanswered for probe_after_ms (250: srtt + 4·rttvar is below it),
  // a probe every 100 ms from 10.25 s to 11.45 s (13): the detection time does not change.
  const quiet = playLiveness({ rtt: () => 30, deadAtMs: 10000, untilMs: 60000 });
  assert.deepEqual(quiet, { lostAt: 11501, silentMs: 1501, pings: 20 + 13, timeoutMs: 1500 });
  // Killed just after a Pong came back (the worst moment): still within 2 s.
  const worst = playLiveness({ rtt: () => 30, deadAtMs: 9531, untilMs: 60000 });
  assert.equal(worst.lostAt, 11501);
  assert.ok(worst.lostAt - 9531 <= 2000, `${worst.lostAt - 9531} ms after the kill`);
  // A slow server (answers after 2 s) is not lost: its estimate makes the timeout 10 s.
  assert.equal(playLiveness({ rtt: () => 2000, untilMs: 600000 }).lostAt, null);
  // One that takes 5 s from the start is lost before the first sample (3000 then) ...
  assert.equal(playLiveness({ rtt: () => 5000, untilMs: 600000 }).lostAt, 3501);
  // ... unless the app fixed the timeout (the liveTimeoutMs option), and 0 turns the check off.
  assert.equal(playLiveness({ rtt: () => 5000, timeoutMs: 7000, untilMs: 600000 }).lostAt, null);
  assert.equal(playLiveness({ rtt: () => null, timeoutMs: 0, untilMs: 600000 }).lostAt, null);
  // A throttled background tab (its timer fires once a minute) is not taken for dead: the wait is
  // timed from the Ping, and the Pong to it is heard long before the next tick.
  assert.equal(playLiveness({ rtt: () => 200, throttleMs: 60000, untilMs: 3600000 }).lostAt, null);
  // Timed from the oldest unanswered Ping, not the latest: Pings keep going out while one is
  // outstanding, and none of them moves the deadline.
  let st = livenessStart(-500);
  st = livenessTick(st, 0).state;
  const t1 = livenessTick(st, 500);
  assert.equal(t1.action, 'ping');
  assert.equal(t1.state.awaitingSinceMs, 0);
  assert.equal(t1.wakeAtMs, 1000);
  assert.equal(livenessTick(t1.state, 3000).action, 'ping');
  assert.equal(livenessTick(t1.state, 3001).action, 'lost');
  assert.equal(livenessTick(t1.state, 3001).wakeAtMs, null);
  // Between Pings, with nothing outstanding, the timer has nothing to do.
  assert.equal(livenessTick(livenessStart(0), 300).action, 'none');
  assert.equal(serverSilent(null, 1e9, 3000), false);
});

/** One way of the path: 40 ms + uniform(0, 300) ms (the first model of the issue). */
const JITTER_300 = (r) => 40 + 300 * r();
/** One way of the path: 300 ± 300 ms, i.e. uniform(0, 600) ms (the second model). */
const SLOW_300_300 = (r) => 600 * r();

/**
 * Ten-minute runs (seeds 1..runs) on a lossy path: each Ping and each Pong is lost with
 * probability `loss`; each way takes `oneWay(random)` ms (Pongs may overtake each other). Pings
 * alone (relay frames and other messages would only help). Returns the runs that declared the
 * server lost, and the Pings sent per second on average.
 */
function falseAlarms(loss, runs, oneWay = JITTER_300) {
  const alarms = [];
  let pings = 0;
  for (let seed = 1; seed <= runs; seed++) {
    const r = seeded(seed);
    const run = playLiveness({ rtt: () => (r() < loss || r() < loss ? null : oneWay(r) + oneWay(r)), untilMs: 600000 });
    pings += run.pings;
    if (run.lostAt !== null) alarms.push({ seed, lostAt: run.lostAt, timeoutMs: Math.round(run.timeoutMs) });
  }
  return { alarms, pingsPerSec: pings / runs / 600 };
}

test('liveness: no false alarm in 10 minutes at 1 % loss each way and 300 ms jitter (simulated, 20 runs)', () => {
  assert.deepEqual(falseAlarms(0.01, 20).alarms, []);
});

// The 5 % goal (issue 23): 10 minutes of Pings alone at 5 % loss each way, 200 runs per model.
// Rule 2 before probing (a Ping every 500 ms, lost after the live timeout, ≥ 1500 ms) declared the
// server lost when about 3 Pings in a row got no answer:
//   40 ms + uniform(0, 300) each way: 33 of 200 runs (old rule) → 0 of 200 (probing);
//   300 ± 300 ms each way:             1 of 200 runs (old rule) → 0 of 200 (probing).
// (At 1 % loss: 0 of 200 either way.) Probing (a Ping every 100 ms once one has been unanswered
// for probe_after_ms) puts ~10 more Pings into the live timeout when it matters; on average it
// costs 2.18 Pings/s instead of 2 in the first model, 2.03 in the second.
test('liveness: no false alarm in 10 minutes at 5 % loss each way, RTT 40 ms + up to 300 ms each way (simulated, 200 runs)', () => {
  const r = falseAlarms(0.05, 200, JITTER_300);
  assert.deepEqual(r.alarms, []);
  assert.ok(r.pingsPerSec < 2.5, `probing sends ${r.pingsPerSec.toFixed(2)} Pings/s on average`);
});

test('liveness: no false alarm in 10 minutes at 5 % loss each way, 300 ± 300 ms each way (simulated, 200 runs)', () => {
  const r = falseAlarms(0.05, 200, SLOW_300_300);
  assert.deepEqual(r.alarms, []);
  assert.ok(r.pingsPerSec < 2.5, `probing sends ${r.pingsPerSec.toFixed(2)} Pings/s on average`);
});

test('liveness: probing, a Ping every 100 ms once one has been unanswered for probe_after_ms; detection on a quiet path still within 2 s', () => {
  assert.equal(PROBE_INTERVAL_MS, 100);
  assert.deepEqual(PROBE_AFTER_MS, { minMs: 250, beforeSampleMs: 1000 });
  // probe_after_ms = floor(max(250, srtt + 4·rttvar)), 1000 before a sample.
  assert.equal(probeAfterMs(null), 1000);
  assert.equal(probeAfterMs({ srttMs: 30, rttvarMs: 5 }), 250);
  assert.equal(probeAfterMs({ srttMs: 200, rttvarMs: 50.75 }), 403);
  // The next Ping: nothing outstanding, last + 500; outstanding, min(last + 500, max(last + 100, awaiting + probe_after)).
  const est = { srttMs: 40, rttvarMs: 10 }; // probe_after 250
  const base = { rtt: est, awaitingSinceMs: null, lastPingAtMs: 1000, intervalMs: 500 };
  assert.equal(livenessNextPingAt(base), 1500);
  assert.equal(livenessNextPingAt({ ...base, awaitingSinceMs: 1000 }), 1250, 'unanswered for 250 ms: probe');
  assert.equal(livenessNextPingAt({ ...base, awaitingSinceMs: 1000, lastPingAtMs: 1250 }), 1350, 'then every 100 ms');
  assert.equal(livenessNextPingAt({ ...base, awaitingSinceMs: 500, lastPingAtMs: 1000 }), 1100);
  assert.equal(livenessNextPingAt({ ...base, rtt: { srttMs: 300, rttvarMs: 100 }, awaitingSinceMs: 1000 }), 1500, 'probe_after 700: the regular Ping comes first');
  // Heard: probing stops, the next Ping one interval after the last.
  assert.equal(livenessNextPingAt(livenessHeard({ ...base, awaitingSinceMs: 1000, lastPingAtMs: 1350 })), 1850);
  // A tick while probing: the Ping keeps the oldest unanswered Ping's time; wake at the next probe.
  const d = livenessTick({ ...base, awaitingSinceMs: 1000, lastPingAtMs: 1250 }, 1350);
  assert.deepEqual([d.action, d.state.awaitingSinceMs, d.state.lastPingAtMs, d.nextPingAtMs, d.wakeAtMs, d.probeAfterMs, d.timeoutMs],
    ['ping', 1000, 1350, 1450, 1450, 250, 1500]);
  // Last probe before the live timeout: the wake is just after awaiting + timeout.
  const e = livenessTick({ ...base, awaitingSinceMs: 1000, lastPingAtMs: 2350 }, 2450);
  assert.deepEqual([e.action, e.wakeAtMs], ['ping', 2501]);
  assert.equal(livenessWakeAt(e.state, 1500), 2501);
  assert.equal(livenessTick(e.state, 2501).action, 'lost');
  // A lossy stretch: the Ping of 10 s and its first probes are lost, a probe's Pong saves it.
  const saved = playLiveness({ rtt: (t) => (t >= 10000 && t < 10700 ? null : 40), untilMs: 30000 });
  assert.equal(saved.lostAt, null, 'a probe answered in time');
  // The quiet path killed at every moment of a Ping period (1 ms steps): lost within 2 s, and at
  // the same time as before probing (the live timeout is unchanged).
  let worst = 0;
  for (let kill = 9000; kill < 9500; kill++) {
    const q = playLiveness({ rtt: () => 30, deadAtMs: kill, untilMs: 60000 });
    assert.notEqual(q.lostAt, null);
    worst = Math.max(worst, q.lostAt - kill);
  }
  assert.ok(worst <= 2000, `detected ${worst} ms after the kill at worst`);
  // The worst: killed at 9001, just after answering the Ping of 9000; the Ping of 9500 is the
  // first unanswered, lost at 9500 + 1500 + 1 = 11001 (as before probing).
  assert.equal(worst, 2000);
});

// --- the control stream's rate --------------------------------------------------------------

test('the control stream stays under 90 % of signals_per_sec: a burst drains at the rate', () => {
  // signals_per_sec 10: 9 a second, a burst of 9. 30 messages queued at t=0.
  let t = 0;
  let tokens = 9;
  let last = 0;
  let queued = 30;
  const sentAt = [];
  for (let guard = 0; queued > 0 && guard < 1000; guard++) {
    const s = pumpStep({ tokens, lastMs: last, nowMs: t, signalsPerSec: 10, queued });
    for (let i = 0; i < s.send; i++) sentAt.push(t);
    queued -= s.send;
    tokens = s.tokens;
    last = t;
    if (s.retryInMs === null) break;
    assert.equal(s.retryInMs, 112);
    t += s.retryInMs;
  }
  assert.equal(sentAt.length, 30);
  assert.equal(sentAt.filter((x) => x === 0).length, 9);
  // The other 21 at 9 a second: all out within 21/9 s (+ one retry period of rounding).
  const end = sentAt[sentAt.length - 1];
  assert.ok(end >= 2200 && end <= 2500, `last sent at ${end} ms`);
  // After the burst, 9 a second at most (the server allows 10, and a burst of 20).
  for (let i = 9; i + 9 < sentAt.length; i++) assert.ok(sentAt[i + 9] - sentAt[i] >= 888, `9 sends from #${i} in ${sentAt[i + 9] - sentAt[i]} ms`);
  // No limit known (before the Welcome): everything at once.
  assert.deepEqual(pumpStep({ tokens: 0, lastMs: 0, nowMs: 5, signalsPerSec: 0, queued: 4 }), { send: 4, tokens: 0, retryInMs: null });
});

// --- redirects and node rotation ------------------------------------------------------------

const node = (name, quic, http) => nodeServer({ name, quic, http, certSha256: [] });

test('redirect limit: follow up to maxRedirects in a row, then fail, refuse, or go back to the configured servers', () => {
  const b = node('b', '10.0.0.2:4433', 'http://10.0.0.2:8080');
  const base = { max: MAX_REDIRECTS, at: { index: 1, target: null }, target: b, transport: 'auto' };
  // A client being moved from node to node: the first five are followed, to the node.
  for (let count = 1; count <= MAX_REDIRECTS; count++) {
    assert.equal(redirectStep(count), 'follow');
    const p = redirectPlan({ ...base, count, welcomed: true, inSession: true, connected: true });
    assert.deepEqual(p, { action: 'follow', reconnect: true, at: { index: 1, target: b } });
  }
  const sixth = { ...base, count: MAX_REDIRECTS + 1 };
  // No Welcome yet (redirected instead of it): nothing to keep, the client fails.
  assert.equal(redirectPlan({ ...sixth, welcomed: false, inSession: false, connected: false }).action, 'fail');
  // Connected, in no session (a create/join was redirected): the request fails, the client stays.
  assert.deepEqual(redirectPlan({ ...sixth, welcomed: true, inSession: false, connected: true }),
    { action: 'refuse', reconnect: false, at: base.at });
  // In a session: the request fails and the client goes back to its configured servers: the
  // target is dropped, the rotation resumes where it left off (PROTOCOL.md §12, rule 5).
  assert.deepEqual(redirectPlan({ ...sixth, welcomed: true, inSession: true, connected: false }),
    { action: 'refuse', reconnect: true, at: { index: 1, target: null } });
  assert.deepEqual(redirectPlan({ ...sixth, at: { index: 2, target: b }, welcomed: true, inSession: true, connected: true }).at,
    { index: 2, target: null });
  // A node the transport cannot reach: back to the configured servers, where the client was.
  const wsOnly = node('c', '', 'https://c.example');
  assert.equal(wsOnly.url, '');
  assert.equal(wsOnly.wsUrl, 'wss://c.example/ws');
  assert.ok(!reachableWith(wsOnly, 'webtransport') && reachableWith(wsOnly, 'websocket') && reachableWith(wsOnly, 'auto'));
  assert.deepEqual(redirectPlan({ ...base, target: wsOnly, transport: 'webtransport', count: 1, welcomed: true, inSession: true, connected: true }).at,
    { index: 1, target: null });
});

test('node rotation: an unreachable redirect target is dropped, then the configured servers in turn', () => {
  const b = node('b', '10.0.0.2:4433', 'http://10.0.0.2:8080');
  let at = { index: 0, target: b };
  const seen = [];
  for (let i = 0; i < 7; i++) {
    at = rotateServer(at, 3);
    seen.push(at.target ? at.target.name : at.index);
  }
  assert.deepEqual(seen, [0, 1, 2, 0, 1, 2, 0]);
  assert.deepEqual(rotateServer({ index: 0, target: null }, 1), { index: 0, target: null });
});

// --- the QUIC/WebSocket race ----------------------------------------------------------------

test('race: WebTransport first, the WebSocket after the delay or when WebTransport fails; the first request rides alone', () => {
  assert.deepEqual(raceStart(true, 1000), { start: 'webtransport', why: '', websocketAfterMs: 1000 });
  assert.deepEqual(raceStart(true, -5), { start: 'webtransport', why: '', websocketAfterMs: 0 });
  assert.deepEqual(raceStart(false, 1000), { start: 'websocket', why: 'this browser has no WebTransport', websocketAfterMs: null });
  assert.equal(raceSlowReason(1000), 'WebTransport not ready within 1000 ms');
  // WebTransport fails before the delay: the WebSocket at once, with the reason.
  assert.deepEqual(raceFailed('webtransport', 'QUIC handshake failed', [{ kind: 'webtransport', failed: true }]),
    { start: 'websocket', why: 'WebTransport failed: QUIC handshake failed', lost: false });
  // WebTransport fails after the WebSocket started (slow): nothing new, the race goes on.
  assert.deepEqual(raceFailed('webtransport', 'x', [{ kind: 'webtransport', failed: true }, { kind: 'websocket', failed: false }]),
    { start: null, why: '', lost: false });
  // Both failed: lost.
  assert.equal(raceFailed('websocket', 'x', [{ kind: 'webtransport', failed: true }, { kind: 'websocket', failed: true }]).lost, true);
  // The first request (Hello, create/join) rides only in an attempt with no other pending.
  assert.equal(carriesFirst([]), true);
  assert.equal(carriesFirst([{ failed: false }]), false);
  assert.equal(carriesFirst([{ failed: true }]), true);
});

// --- paths to peers -------------------------------------------------------------------------

test('path of a peer: connecting → relay at the deadline → classify → direct or TURN → relay when the link breaks', () => {
  /** A peer link as the mesh holds it, and the events it would announce. */
  const link = { path: 'connecting', fallback: false, directKind: /** @type {any} */ (null), dc: null, pc: null };
  const announced = [];
  const evaluate = (initial = false, forceRelay = false) => {
    const usable = directUsable({ forceRelay, dataChannel: link.dc, connection: link.pc });
    const p = peerPath({ usable, directKind: link.directKind, fallback: link.fallback, forceRelay });
    if (p === 'classify') return 'classify';
    const c = pathChange(link.path, p, initial);
    if (c !== 'none') link.path = p;
    if (c === 'announce') announced.push(p);
    return p;
  };
  // t=0: a new peer: 'connecting', not announced.
  assert.equal(evaluate(true), 'connecting');
  assert.deepEqual(announced, []);
  // t=5 s: the direct deadline passes: relay.
  link.fallback = true;
  evaluate();
  assert.deepEqual(announced, ['relay']);
  // t=6 s: the DataChannel opens on a connected peer connection: classify the candidate pair first.
  link.dc = 'open';
  link.pc = 'connected';
  assert.equal(evaluate(), 'classify');
  link.directKind = 'turn';
  evaluate();
  // getStats later finds a host pair: direct; the same again announces nothing.
  link.directKind = 'direct';
  evaluate();
  evaluate();
  assert.deepEqual(announced, ['relay', 'turn', 'direct']);
  // The connection goes 'disconnected': fall back to the relay; 'failed' also retries later.
  assert.deepEqual(connectionStateEffect('disconnected'), { fallback: true, retry: false });
  assert.deepEqual(connectionStateEffect('failed'), { fallback: true, retry: true });
  assert.deepEqual(connectionStateEffect('closed'), { fallback: true, retry: true });
  assert.deepEqual(connectionStateEffect('connected'), { fallback: false, retry: false });
  link.pc = 'disconnected';
  evaluate();
  assert.deepEqual(announced, ['relay', 'turn', 'direct', 'relay']);
  // Forced relay wins over an open DataChannel.
  link.pc = 'connected';
  assert.equal(evaluate(false, true), 'relay');
  // A new peer that is forced onto the relay announces it at once.
  assert.equal(pathChange('connecting', 'relay', true), 'announce');
  assert.equal(pathChange('connecting', 'connecting', true), 'update');
});

test('glare and retries: the lower peer id keeps its offer and is the one that retries', () => {
  assert.equal(ignoreOffer('have-local-offer', 2, 5), true);
  assert.equal(ignoreOffer('have-local-offer', 5, 2), false);
  assert.equal(ignoreOffer('stable', 2, 5), false);
  assert.equal(ignoreOffer(null, 2, 5), false);
  const s = { retryMs: 20000, forceRelay: false, myId: 2, peerId: 5, scheduled: false };
  assert.equal(directRetryDue(s), true);
  assert.equal(directRetryDue({ ...s, myId: 7 }), false);
  assert.equal(directRetryDue({ ...s, retryMs: 0 }), false);
  assert.equal(directRetryDue({ ...s, forceRelay: true }), false);
  assert.equal(directRetryDue({ ...s, scheduled: true }), false);
});
