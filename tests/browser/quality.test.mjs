// Connection quality of the browser client (PROTOCOL.md §14, issue 25): core.js's per-peer
// tracker with simulated time (echo schedule, RTT, jitter, loss, path reset, lost/unknown,
// grades with hysteresis, frames/s), quality frames, report buckets and the report schedule,
// the Report codec; then the shell over a fake transport (quality frames answered on the path
// they came on and never delivered, getPeers() fields, the `quality` event, Report on a v3
// server only, `telemetry: false`). No browser, no server, no clock in the pure parts.
//   node --test tests/browser/quality.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

import {
  QUALITY, QualityTracker, rawGrade, gradeWithHysteresis, encodeQualityFrame, parseQualityFrame, isQualityFrame,
  rttBucket, lossBucket, reportStart, reportQueue, reportNextAt, reportStep, REPORT,
} from '../../client/web/core.js';
import {
  encodeClientMsg, decodeClientMsg, encodeReportV1, decodeReportV1, reportMsg, toHex, fromHex, encodeServerMsg, encodeRelay,
  decodeRelay, DecodeError, PROTOCOL_VERSION,
} from '../../client/web/codec.js';
import { wrapFlight } from '../../client/web/flight.js';
import { FlightSimP2P } from '../../client/web/client.js';
import { fakeTransport, tick } from './fakes.mjs';

/** A tracker on `path` from `t0`, with helpers that send a request at `at` and answer it `rtt` later. */
function tracker(path = 'relay', t0 = 0, q = QUALITY) {
  const k = new QualityTracker(7, t0, { q });
  if (path !== 'connecting') k.setPath(path, t0);
  return k;
}

/** Send the due request at `at` (asserting one is due), answer it at `at + rtt`; returns the id. */
function echo(k, at, rtt) {
  const d = k.tick(at);
  assert.notEqual(d.send, null, `a request is due at ${at}`);
  if (rtt !== null) k.reply(d.send, at + rtt);
  return d.send;
}

/** Echoes every 500 ms from `from`, all with the same RTT, `n` of them; returns the next free time. */
function steady(k, from, n, rtt) {
  let t = from;
  for (let i = 0; i < n; i++, t += QUALITY.echoIntervalMs) echo(k, t, rtt);
  return t;
}

test('tracker: echo schedule: none while connecting or offline, the first at once on a usable path, then every 500 ms (2000 ms on the relay)', () => {
  const k = new QualityTracker(7, 1000);
  assert.deepEqual(k.tick(1000), { send: null, event: null });
  assert.equal(k.pollTimeout(), null, 'nothing to wait for while connecting');
  const ev = k.setPath('direct', 1200);
  assert.equal(ev.path, 'direct');
  assert.equal(ev.grade, 'unknown');
  assert.equal(k.pollTimeout(), 1200, 'the first request is due at once');
  assert.equal(k.tick(1250).send, 1);
  assert.equal(k.pollTimeout(), 1750, 'next at sent + 500');
  assert.equal(k.tick(1749).send, null);
  assert.equal(k.tick(1750).send, 2);
  k.reply(1, 1760);
  k.reply(2, 1770);
  assert.equal(k.tick(2300).send, 3, 'late tick: sends then, next 500 ms after that');
  assert.equal(k.pollTimeout(), 2800);
  k.setOnline(false, 2400);
  assert.equal(k.tick(2900).send, null, 'offline: no request');
  k.setOnline(true, 3000);
  assert.equal(k.tick(3000).send, 4);
  assert.equal(k.snapshot(3000).pathMs, 1800);
  // On the relay an echo costs the server relayed frames: one every 2000 ms.
  k.setPath('relay', 3100);
  assert.equal(k.tick(3100).send, 5);
  assert.equal(k.pollTimeout(), 5100);
  assert.equal(k.tick(3600).send, null);
  assert.equal(k.tick(5100).send, 6);
});

test('tracker: RTT smoothed as RFC 6298 (PROTOCOL §12 rule 2), jitter as RFC 3550, rounded as reported', () => {
  const k = tracker('direct', 0);
  assert.equal(k.snapshot(0).rttMs, null);
  assert.equal(k.snapshot(0).jitterMs, null);
  echo(k, 0, 40);
  assert.deepEqual([k.rtt.srttMs, k.rtt.rttvarMs, k.jitter], [40, 20, 0]);
  echo(k, 500, 60);
  // rttvar = .75·20 + .25·|40 − 60| = 20; srtt = .875·40 + .125·60 = 42.5; jitter = 0 + (20 − 0)/16
  assert.deepEqual([k.rtt.srttMs, k.rtt.rttvarMs, k.jitter], [42.5, 20, 1.25]);
  echo(k, 1000, 51);
  // jitter = 1.25 + (9 − 1.25)/16 = 1.734375; srtt = .875·42.5 + .125·51 = 43.5625
  assert.equal(k.jitter, 1.734375);
  assert.equal(k.rtt.srttMs, 43.5625);
  const s = k.snapshot(1100);
  assert.equal(s.rttMs, 44);
  assert.equal(s.jitterMs, 1.7);
  assert.equal(s.lossPct, 0);
  assert.equal(s.grade, 'excellent');
});

test('tracker: loss decided 2000 ms after sending, over the last 20 decided; late, unknown and repeated replies ignored', () => {
  const k = tracker('direct', 0);
  const lostId = echo(k, 0, null);
  echo(k, 500, 10);
  echo(k, 1000, 10);
  echo(k, 1500, 10);
  k.frameIn(1999);
  assert.equal(k.decided.length, 3, 'not lost before 2000 ms');
  assert.equal(k.pollTimeout(), 2000, 'the loss deadline (and the next echo)');
  k.frameIn(2000); // any input decides it
  assert.equal(k.snapshot(2000).lossPct, 25, '1 lost of 4 decided');
  const before = JSON.stringify([k.rtt, k.jitter, k.decided]);
  k.reply(lostId, 2100); // already lost
  k.reply(99, 2100); // unknown
  k.reply(3, 2100); // answered before
  assert.equal(JSON.stringify([k.rtt, k.jitter, k.decided]), before, 'ignored replies change nothing');
  // 20 answered requests push the lost one out of the window.
  let t = steady(k, 2100, 16, 10);
  assert.equal(k.snapshot(t).lossPct, 5, '1 lost of the last 20');
  t = steady(k, t, 3, 10); // decided in order: 3 answered before the lost one
  assert.equal(k.snapshot(t).lossPct, 5, 'still in the window');
  t = steady(k, t, 1, 10);
  assert.equal(k.snapshot(t).lossPct, 0, 'out of the window');
  assert.equal(k.decided.length, QUALITY.lossWindow);
});

test('tracker: lost after 3000 ms of unanswered requests (any reply counts as heard), or offline; pollTimeout names the moment', () => {
  const k = tracker('direct', 0);
  echo(k, 0, 20);
  assert.equal(k.grade, 'excellent');
  k.tick(500); // unanswered from 500
  k.tick(1000);
  k.tick(1500);
  assert.equal(k.pollTimeout(), 2000);
  k.tick(2000);
  k.tick(2500); // losses decided at 2500, 3000, ...
  assert.equal(k.grade, 'poor', 'loss over the window makes it poor first');
  k.tick(3000);
  k.tick(3499);
  assert.notEqual(k.grade, 'lost');
  const ev = k.tick(3500).event;
  assert.equal(ev && ev.grade, 'lost', 'unanswered since 500, lost at 3500');
  // A reply to a request already decided lost is ignored for RTT/loss but is heard.
  const ev2 = k.reply(2, 3600);
  assert.notEqual(ev2 && ev2.grade, undefined);
  assert.notEqual(k.grade, 'lost');
  assert.equal(k.setOnline(false, 3700).grade, 'lost', 'offline is lost at once');
  assert.notEqual(k.setOnline(true, 3800).grade, 'lost');
});

test('tracker: grades at their limits, with hysteresis (×0.8 to rise, worse at once)', () => {
  assert.equal(rawGrade(99.9, 1.9, 19.9), 'excellent');
  assert.equal(rawGrade(100, 0, 0), 'good');
  assert.equal(rawGrade(0, 2, 0), 'good');
  assert.equal(rawGrade(0, 0, 20), 'good');
  assert.equal(rawGrade(249.9, 7.9, 49.9), 'good');
  assert.equal(rawGrade(250, 0, 0), 'poor');
  assert.equal(rawGrade(0, 8, 0), 'poor');
  assert.equal(rawGrade(0, 0, 50), 'poor');
  // Rising needs the better grade's limits × 0.8.
  assert.equal(gradeWithHysteresis('good', 85, 0, 0), 'good', 'excellent raw, but not under 80');
  assert.equal(gradeWithHysteresis('good', 79, 0, 0), 'excellent');
  assert.equal(gradeWithHysteresis('good', 50, 1.7, 0), 'good', 'loss not under 1.6');
  assert.equal(gradeWithHysteresis('good', 50, 0, 16), 'good', 'jitter not under 16');
  assert.equal(gradeWithHysteresis('poor', 210, 0, 0), 'poor', 'good raw, but not under 200');
  assert.equal(gradeWithHysteresis('poor', 199, 0, 0), 'good');
  assert.equal(gradeWithHysteresis('poor', 90, 0, 0), 'good', 'excellent raw, only good × 0.8 met: good');
  assert.equal(gradeWithHysteresis('poor', 79, 0, 0), 'excellent');
  assert.equal(gradeWithHysteresis('poor', 150, 6.5, 0), 'poor', 'loss 6.5 not under 6.4');
  // Worse at once; from unknown/lost the raw grade.
  assert.equal(gradeWithHysteresis('excellent', 100, 0, 0), 'good');
  assert.equal(gradeWithHysteresis('excellent', 260, 0, 0), 'poor');
  assert.equal(gradeWithHysteresis('unknown', 90, 0, 0), 'excellent');
  assert.equal(gradeWithHysteresis('lost', 99, 0, 0), 'excellent');
});

/**
 * A timeline through the tracker whose every expectation sits at a constant's edge: run with the
 * real constants it passes; with any one constant changed it must throw (see the next test).
 * @param {typeof QUALITY} q
 */
function edgeTimeline(q) {
  const eq = (a, b, what) => assert.deepEqual(a, b, what);
  // RTT 99 → excellent; 100 → good (not under 100).
  let k = tracker('direct', 0, q);
  echo(k, 0, 99);
  eq(k.grade, 'excellent', 'srtt 99');
  k = tracker('direct', 0, q);
  echo(k, 0, 100);
  eq(k.grade, 'good', 'srtt 100');
  k = tracker('direct', 0, q);
  echo(k, 0, 249);
  eq(k.grade, 'good', 'srtt 249');
  k = tracker('direct', 0, q);
  echo(k, 0, 250);
  eq(k.grade, 'poor', 'srtt 250');
  // Hysteresis: from good, srtt must fall under 80 to rise; first sample 100 (good), then 79s.
  k = tracker('direct', 0, q);
  echo(k, 0, 100);
  let t = 500;
  while (k.rtt.srttMs >= 80.5) t = steady(k, t, 1, 79);
  eq(k.grade, 'good', `srtt ${k.rtt.srttMs} ≥ 80`);
  while (k.rtt.srttMs >= 80) t = steady(k, t, 1, 79);
  eq(k.grade, 'excellent', `srtt ${k.rtt.srttMs} < 80`);
  // Jitter: samples alternating 10/60 raise jitter toward 50; the grade turns poor exactly at 50.
  k = tracker('direct', 0, q);
  t = 0;
  let i = 0;
  while (k.jitter === null || k.jitter < 19.99) t = steady(k, t, 1, i++ % 2 ? 10 : 60);
  eq(k.jitter < 20 ? 'excellent' : 'good', k.grade, `jitter ${k.jitter}`);
  // Loss: one lost in 20 (5 %) is good; 2 in 20 (10 %) is poor; the request is lost at 2000 ms, not before.
  k = tracker('direct', 0, q);
  echo(k, 0, null);
  t = steady(k, 500, 3, 10);
  k.tick(1999);
  eq(k.decided.length, 3, 'nothing lost before 2000 ms');
  k.frameIn(2000);
  eq(k.decided.length, 4, 'lost at 2000 ms');
  t = steady(k, 2000, 16, 10);
  eq([k.lossPct, k.grade], [5, 'good'], '1 of 20 lost');
  // Lost: unanswered for 3000 ms, not 2999.
  k = tracker('turn', 0, q);
  echo(k, 0, 10);
  k.tick(500);
  for (let s = 1000; s < 3500; s += 500) k.tick(s);
  k.frameIn(3499);
  eq(k.grade === 'lost', false, 'not lost at 2999 ms');
  k.frameIn(3500);
  eq(k.grade, 'lost', 'lost at 3000 ms');
  // The schedule: 500 ms apart on the DataChannel, 2000 ms on the relay.
  k = tracker('direct', 0, q);
  k.tick(0);
  eq(k.pollTimeout(), 500, 'next echo 500 ms later');
  k = tracker('relay', 0, q);
  k.tick(0);
  eq(k.pollTimeout(), 2000, 'next relay echo 2000 ms later');
}

test('tracker: a timeline at every limit passes with the spec\'s constants', () => {
  edgeTimeline(QUALITY);
});

test('tracker: that timeline fails when any one constant is changed (the tests can fail)', () => {
  const mutations = {
    'excellent rtt 101': { excellent: { ...QUALITY.excellent, rttMs: 101 } },
    'excellent rtt 99': { excellent: { ...QUALITY.excellent, rttMs: 99 } },
    'excellent jitter 25': { excellent: { ...QUALITY.excellent, jitterMs: 25 } },
    'good rtt 251': { good: { ...QUALITY.good, rttMs: 251 } },
    'good loss 5': { good: { ...QUALITY.good, lossPct: 5 } },
    'hysteresis 0.85': { hysteresis: 0.85 },
    'hysteresis 0.75': { hysteresis: 0.75 },
    'echo timeout 1999': { echoTimeoutMs: 1999 },
    'echo timeout 2001': { echoTimeoutMs: 2001 },
    'lost after 2999': { lostAfterMs: 2999 },
    'lost after 3001': { lostAfterMs: 3001 },
    'echo interval 400': { echoIntervalMs: 400 },
    'relay echo interval 500': { echoIntervalRelayMs: 500 },
    'loss window 19': { lossWindow: 19 },
  };
  for (const [name, m] of Object.entries(mutations)) {
    assert.throws(() => edgeTimeline({ ...QUALITY, ...m }), assert.AssertionError, `mutation "${name}" went unnoticed`);
  }
});

test('tracker: a path change resets the estimator; replies to requests of the old path are ignored; ids keep counting', () => {
  const k = tracker('turn', 0);
  echo(k, 0, 30);
  const old = k.tick(500).send;
  const ev = k.setPath('direct', 600);
  assert.deepEqual([ev.path, ev.grade, ev.rttMs, ev.pathMs], ['direct', 'unknown', null, 0]);
  k.reply(old, 620);
  assert.equal(k.rtt, null, 'the old path\'s reply is no sample');
  assert.equal(k.tick(600).send, old + 1, 'the first request on the new path at once, the ids go on');
  assert.equal(k.setPath('direct', 700), null, 'the same path is no change');
  assert.equal(k.setPath('connecting', 800).grade, 'unknown');
  assert.equal(k.tick(900).send, null);
});

test('tracker: frames/s counted in 1000 ms windows aligned to creation; stale frames counted; quality frames are not inputs', () => {
  const k = new QualityTracker(3, 250);
  for (let t = 250; t < 1250; t += 100) k.frameIn(t); // 10 in window 0
  k.frameOut(1249);
  assert.deepEqual([k.snapshot(1249).fpsIn, k.snapshot(1249).fpsOut], [0, 0], 'window 0 not complete');
  k.frameIn(1250); // window 1
  assert.deepEqual([k.snapshot(1250).fpsIn, k.snapshot(1250).fpsOut], [10, 1]);
  assert.deepEqual([k.snapshot(2250).fpsIn, k.snapshot(2250).fpsOut], [1, 0]);
  assert.equal(k.snapshot(3300).fpsIn, 0, 'an empty window');
  k.stale(3300);
  k.stale(3301);
  assert.equal(k.snapshot(3400).staleDropped, 2);
});

test('tracker: the event fires on grade or path changes only', () => {
  const k = new QualityTracker(3, 0);
  const evs = [];
  const on = (e) => { if (e) evs.push(`${e.path}/${e.grade}`); };
  on(k.setPath('turn', 0));
  on(k.tick(0).event);
  on(k.reply(1, 30));
  on(k.frameIn(40));
  on(k.tick(500).event);
  on(k.reply(2, 530));
  on(k.setPath('relay', 600));
  assert.deepEqual(evs, ['turn/unknown', 'turn/excellent', 'relay/unknown']);
});

test('quality frames: FF FF FF FF || kind || id u32 LE || t u32 LE; anything else that starts FF FF FF FF is refused', () => {
  const f = encodeQualityFrame(1, 0x01020304, 2 ** 32 + 5);
  assert.equal(toHex(f), 'ffffffff01040302010500000' + '0');
  assert.deepEqual(parseQualityFrame(f), { kind: 1, id: 0x01020304, t: 5 });
  assert.deepEqual(parseQualityFrame(encodeQualityFrame(2, 9, 0xffffffff)), { kind: 2, id: 9, t: 0xffffffff });
  assert.equal(parseQualityFrame(fromHex('ffffffff030000000000000000')), null, 'kind 3');
  assert.equal(parseQualityFrame(fromHex('ffffffff0100000000000000')), null, '12 bytes');
  assert.equal(parseQualityFrame(fromHex('ffffffff01000000000000000000')), null, '14 bytes');
  assert.equal(isQualityFrame(fromHex('ffffffff')), true);
  assert.equal(isQualityFrame(wrapFlight(0xfffffffe, new Uint8Array(9))), false);
});

test('buckets: the first edge ≥ the value; above the last; 255 unknown', () => {
  const rtt = [[0, 0], [25, 0], [26, 1], [50, 1], [100, 3], [101, 4], [150, 4], [200, 5], [300, 6], [500, 7], [1000, 8], [1001, 9], [null, 255]];
  for (const [v, b] of rtt) assert.equal(rttBucket(v), b, `rtt ${v}`);
  const loss = [[0, 0], [0.1, 1], [1, 1], [2, 2], [2.1, 3], [5, 3], [10, 4], [20, 5], [50, 6], [50.1, 7], [100, 7], [null, 255]];
  for (const [v, b] of loss) assert.equal(lossBucket(v), b, `loss ${v}`);
  const k = tracker('relay', 0);
  assert.deepEqual(k.linkReport(), { peer: 7, path: 'relay', grade: 'unknown', rttBucket: 255, lossBucket: 255 });
  echo(k, 0, 120);
  assert.deepEqual(k.linkReport(), { peer: 7, path: 'relay', grade: 'good', rttBucket: 4, lossBucket: 0 });
});

test('report schedule: from the Welcome, every 10 s with links, 2 s apart after a change or with something queued, 16 at most', () => {
  let s = reportStart(1000); // the Welcome at 1000
  assert.equal(reportNextAt(s, 0), null, 'nothing to say');
  assert.equal(reportNextAt(s, 1), 11000, 'quiet links: 10 s after the Welcome');
  s = reportQueue(s, { type: 'milestone', kind: 'welcome', path: 'connecting', ms: 120.4 });
  assert.equal(reportNextAt(s, 0), 3000, 'a queued milestone: 2 s after the Welcome');
  assert.equal(reportStep(s, 2999, 0).send, false);
  let r = reportStep(s, 3000, 0);
  assert.equal(r.send, true);
  assert.deepEqual(r.setup, [{ kind: 'welcome', path: 'connecting', ms: 120 }]);
  s = r.state;
  s = reportQueue(s, { type: 'change' });
  assert.equal(reportNextAt(s, 1), 5000, 'a change: not within 2 s of the last');
  assert.equal(reportStep(s, 4999, 1).send, false);
  r = reportStep(s, 5000, 1);
  assert.equal(r.send, true);
  s = r.state;
  assert.equal(reportNextAt(s, 1), 15000, 'then every 10 s');
  s = reportQueue(s, { type: 'milestone', kind: 'first_frame', path: 'relay', ms: 5 });
  assert.equal(reportNextAt(s, 1), 7000, 'queued: at the 2 s floor, links or not');
  for (let i = 0; i < 20; i++) s = reportQueue(s, { type: 'ice_failure', reason: 'timeout' });
  assert.equal(s.iceFailures.length, REPORT.maxQueued);
  for (let i = 0; i < 20; i++) s = reportQueue(s, { type: 'milestone', kind: 'direct', path: 'direct', ms: i });
  assert.equal(s.setup.length, REPORT.maxQueued);
  s = reportQueue(s, { type: 'candidate', candidate: 'host' });
  s = reportQueue(s, { type: 'candidate', candidate: 'relay' });
  s = reportQueue(s, { type: 'candidate', candidate: 'host' });
  r = reportStep(s, 7000, 1);
  assert.equal(r.candidates, 5);
  assert.equal(r.state.candidates, 0, 'since the last report');
  assert.equal(r.state.setup.length + r.state.iceFailures.length, 0);
});

test('Report codec: ClientMsg variant 6 = varint(6) varint(version) varint(len) body; ReportV1 strict', () => {
  const report = {
    links: [{ peer: 300, path: 'turn', grade: 'poor', rttBucket: 9, lossBucket: 255 }],
    setup: [{ kind: 'first_frame', path: 'relay', ms: 1000 }],
    iceFailures: [{ reason: 'no_candidates' }],
    candidates: 15,
  };
  const body = encodeReportV1(report);
  // links: 1, peer 300 = ac 02, turn 2, poor 3, 09, ff; setup: 1, kind 4, relay 3, 1000 = e8 07; ice: 1, 3; candidates 0f
  assert.equal(toHex(body), '01ac020203' + '09ff' + '010403e807' + '0103' + '0f');
  const msg = encodeClientMsg(reportMsg(report));
  assert.equal(toHex(msg), `0601${body.length.toString(16).padStart(2, '0')}${toHex(body)}`);
  const back = decodeClientMsg(msg);
  assert.equal(back.type, 'Report');
  assert.equal(back.version, 1);
  assert.deepEqual(decodeReportV1(back.body), report);
  assert.throws(() => decodeReportV1(fromHex(`${toHex(body)}00`)), DecodeError, 'trailing bytes');
  assert.throws(() => decodeReportV1(fromHex('0001050000' + '00')), DecodeError, 'unknown milestone kind');
  assert.throws(() => encodeReportV1({ ...report, links: Array(65).fill(report.links[0]) }), RangeError);
  assert.ok(PROTOCOL_VERSION >= 3, 'this client may send Report');
});

test('Report codec against docs/vectors.txt: the ReportV1 bodies decode and re-encode byte for byte; an unknown body version stays opaque', () => {
  const file = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../docs/vectors.txt');
  const lines = readFileSync(file, 'utf8').split('\n').map((l) => l.split('\t')).filter((l) => l[1] === 'ClientMsg' && /^report|^hello_v3/.test(l[2]));
  const byName = Object.fromEntries(lines.map(([ok, , name, hex]) => [name, { ok: ok === 'ok', bytes: fromHex(hex.trim()) }]));
  for (const name of ['report_v1_empty', 'report_v1_full']) {
    const m = decodeClientMsg(byName[name].bytes);
    assert.equal(m.type, 'Report', name);
    assert.equal(m.version, 1, name);
    const body = decodeReportV1(m.body);
    assert.equal(toHex(encodeClientMsg(reportMsg(body))), toHex(byName[name].bytes), name);
  }
  const full = decodeReportV1(decodeClientMsg(byName.report_v1_full.bytes).body);
  assert.ok(full.links.length > 0 && full.setup.length > 0 && full.iceFailures.length > 0, JSON.stringify(full));
  const opaque = decodeClientMsg(byName.report_v9_opaque.bytes);
  assert.deepEqual([opaque.version, toHex(opaque.body)], [9, 'dead']);
  assert.throws(() => decodeClientMsg(byName.report_body_past_end.bytes), DecodeError);
  const hello = decodeClientMsg(byName.hello_v3_no_token.bytes);
  assert.equal(hello.version, 3);
  assert.equal(toHex(encodeClientMsg({ ...hello })), toHex(byName.hello_v3_no_token.bytes));
});

// --- the shell over a fake transport ---------------------------------------------------------------

/** A client (forced relay: no WebRTC under node) in session with peers 2 and 3 on a server of `version`. */
async function qualityClient(version, extra = {}) {
  let fake;
  const c = new FlightSimP2P({
    host: '127.0.0.1', forceRelay: true, pingIntervalMs: 0, statsIntervalMs: 0,
    transport: () => (fake = fakeTransport('websocket', [])), ...extra,
  });
  const quality = [];
  c.addEventListener('quality', (e) => quality.push(e.detail));
  const connected = c.connect();
  await tick();
  fake.succeed();
  await tick();
  const server = (m) => fake.onControl(encodeServerMsg(m));
  server({
    type: 'Welcome', version, peerId: 1, resumeToken: new Uint8Array(16), resumed: false, iceServers: [],
    limits: {
      maxFrameBytes: 16384, maxRelayPayload: 1100, relayDatagramsPerSec: 500, relayBytesPerSec: 262144,
      signalsPerSec: 0, maxPeersPerSession: 16, resumeGraceMs: 15000,
    },
    serverTimeMs: 0n,
  });
  await connected;
  const peer = (id) => ({ id, name: `p${id}`, client: 'Browser' });
  server({ type: 'SessionCreated', session: { code: 'ABCDEF', host: 1, maxPeers: 16, idleTtlSecs: 60, peers: [peer(1)] } });
  server({ type: 'PeerJoined', peer: peer(2) });
  server({ type: 'PeerJoined', peer: peer(3) });
  const got = [];
  c.onmessage = (from, data) => got.push([from, data.length]);
  const relayed = () => fake.relayed.map((f) => decodeRelay(f));
  const reports = () => fake.sent.map((b) => decodeClientMsg(b)).filter((m) => m.type === 'Report').map((m) => ({ version: m.version, ...decodeReportV1(m.body) }));
  return { c, fake, server, quality, got, relayed, reports, hello: decodeClientMsg(fake.sent[0]) };
}

test('shell: echo requests on the relay; a request is answered on the relay, never delivered, never counted; replies give the RTT and the quality event', async () => {
  const { c, fake, quality, got, relayed, hello } = await qualityClient(3);
  try {
    assert.equal(hello.version, 5, 'Hello version 5 (moves, PROTOCOL.md §11; regions from 4, Report from 3)');
    await tick(20);
    // One request to each peer, at once on the relay path.
    const reqs = relayed().map((r) => ({ to: r.peer, f: parseQualityFrame(r.payload) })).filter((r) => r.f && r.f.kind === 1);
    assert.deepEqual(reqs.map((r) => [r.to, r.f.id]).sort(), [[2, 1], [3, 1]]);
    // Peer 2 asks us: answered on the relay with the same id and t; not delivered, not counted.
    const n = fake.relayed.length;
    fake.onRelay(encodeRelay(2, encodeQualityFrame(1, 77, 123456)));
    const answer = decodeRelay(fake.relayed[n]);
    assert.equal(answer.peer, 2);
    assert.deepEqual(parseQualityFrame(answer.payload), { kind: 2, id: 77, t: 123456 });
    // A malformed one (12 bytes) is a bad frame.
    fake.onRelay(encodeRelay(2, fromHex('ffffffff0100000000000000')));
    assert.deepEqual(got, []);
    assert.equal(c.stats.flightBadFrames, 1);
    assert.equal(c.stats.relayReceived, 0);
    assert.equal(c.stats.staleDropped, 0);
    // Peer 2 answers our request: an RTT sample, the grade, the event.
    const r2 = reqs.find((r) => r.to === 2);
    fake.onRelay(encodeRelay(2, encodeQualityFrame(2, r2.f.id, r2.f.t)));
    const p2 = c.getPeers().find((p) => p.id === 2);
    assert.equal(typeof p2.rttMs, 'number');
    assert.ok(p2.rttMs >= 0);
    assert.equal(p2.grade, 'excellent');
    for (const k of ['pathMs', 'rttMs', 'lossPct', 'jitterMs', 'fpsIn', 'fpsOut', 'staleDropped', 'grade', 'path']) assert.ok(k in p2, k);
    const ev = quality.filter((e) => e.peer === 2).map((e) => `${e.path}/${e.grade}`);
    assert.deepEqual(ev, ['relay/unknown', 'relay/excellent']);
    // Flight frames still flow and count.
    fake.onRelay(encodeRelay(2, wrapFlight(5, new Uint8Array(3))));
    assert.deepEqual(got, [[2, 3]]);
    assert.equal(c.getPeers().find((p) => p.id === 3).grade, 'unknown');
  } finally {
    c.close();
  }
});

test('shell: Report to a v3 server (welcome milestone first, then the links, no addresses); none with telemetry off or on a v2 server', async () => {
  const a = await qualityClient(3);
  try {
    await tick(REPORT.minGapMs + 300);
    // 2 s after the Welcome: the welcome milestone and the links (they changed since).
    const all = a.reports();
    assert.equal(all.length, 1, `one report within the first 2.3 s: ${JSON.stringify(all)}`);
    assert.equal(all[0].version, 1);
    assert.equal(all[0].setup[0].kind, 'welcome');
    assert.deepEqual(all[0].links.map((l) => [l.peer, l.path]).sort(), [[2, 'relay'], [3, 'relay']]);
    // Nothing address-like in any Report body.
    for (const b of a.fake.sent.map((x) => decodeClientMsg(x)).filter((m) => m.type === 'Report')) {
      assert.ok(!/127\.0|p2|p3|ABCDEF/.test(Buffer.from(b.body).toString('latin1')));
    }
  } finally {
    a.c.close();
  }
  for (const [version, extra, why] of [[3, { telemetry: false }, 'telemetry: false'], [2, {}, 'a v2 server']]) {
    const b = await qualityClient(version, extra);
    try {
      await tick(60);
      assert.deepEqual(b.reports(), [], why);
      // Quality works either way.
      assert.ok(b.relayed().some((r) => isQualityFrame(r.payload)), `echoes with ${why}`);
    } finally {
      b.c.close();
    }
  }
});
