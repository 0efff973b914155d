// The browser client's decisions (client/web/core.js) replayed against docs/client-vectors.json
// (PROTOCOL.md §12, written by `flightsim-p2p vectors --client`): every case of every section
// whose `clients` name "js", under node, without a browser, a server or a clock. Rust replays the
// same file in cargo and C# under mono, so a behaviour change in one client that the vectors do
// not share fails here. A section that names js but has no replayer below fails too (no skip).
//   node --test tests/browser/vectors.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

import { ERROR_CODES, fromWsCloseCode } from '../../client/web/codec.js';
import {
  RECONNECT_BACKOFF_MS, PING_INTERVAL_MS, PROBE_INTERVAL_MS, PROBE_AFTER_MS, LIVE_TIMEOUT_MS, MAX_REDIRECTS, ABANDON_CLOSE_CODE, SHUTTING_DOWN_DELAY_MS,
  RESUME_GRACE_DEFAULT_MS,
  backoffDelayMs, closeDisposition, errorGivesUp, attemptFailure, answersSessionRequest, afterReconnect,
  resumePlanStep, redirectStep, redirectPlan, redirectCount, rotation, livenessStart, livenessHeard, livenessTick,
  livenessWakeAt, livenessNextPingAt, liveTimeoutMs, probeAfterMs, rttEstimate, attemptTimeoutMs, requestTimedOut, raceStart, raceFailed, carriesFirst,
  raceConnected, directUsable, peerPath, pathChange, connectionStateEffect, ignoreOffer, directRetryDue,
} from '../../client/web/core.js';
import {
  QUALITY, QualityTracker, rttBucket, lossBucket, reportDue, REPORT, RTT_BUCKET_EDGES_MS, LOSS_BUCKET_EDGES_PCT,
} from '../../client/web/core.js';
import { MOVE_OLD_CLOSE_AFTER_MS, moveStart, moveStep } from '../../client/web/core.js';
import { FlightSimP2P } from '../../client/web/client.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const FILE = path.join(ROOT, 'docs/client-vectors.json');
const vectors = JSON.parse(readFileSync(FILE, 'utf8'));

/** A random source that returns `r` (the vectors' injected randomness). */
const fixed = (r) => () => r;
/** The vectors name QUIC (WebTransport in a browser) `quic`; this client says `webtransport`. */
const toJsKind = (k) => (k === 'quic' ? 'webtransport' : k);
const fromJsKind = (k) => (k === 'webtransport' ? 'quic' : k);
const attemptsJs = (attempts) => attempts.map((a) => ({ kind: toJsKind(a.kind), failed: a.failed }));

/** The protocol close code this client's transports report for a transport's close code. */
function protocolCode(transport, code) {
  if (code === null) return null;
  return transport === 'websocket' ? fromWsCloseCode(code) : code;
}

/** The close section's verdict for an input (also used by `errors`' close_action). */
function closeVerdict(input) {
  const d = closeDisposition({
    code: protocolCode(input.transport, input.close_code),
    fatalCode: input.error_before,
    goingAwayInMs: input.going_away_ms,
    enabled: input.auto_resume,
    welcomed: input.welcomed,
    redirected: input.redirected,
    appClosed: input.app_closed,
  });
  return { action: d.verdict, delay_ms: d.action === 'reconnect' ? d.delayMs : null };
}

/** One replayer per section: each case (or scenario) → assertions with its name. */
const SECTIONS = {
  backoff(c) {
    const { attempt, random } = c.input;
    const delay = backoffDelayMs(attempt, fixed(random));
    const bounds = attempt > 0
      ? (() => {
        const step = RECONNECT_BACKOFF_MS[Math.min(attempt, RECONNECT_BACKOFF_MS.length - 1)];
        // The extremes of the injected randomness: 0 and the largest double below 1.
        return { min_ms: backoffDelayMs(attempt, fixed(0)), max_ms: Math.max(step, backoffDelayMs(attempt, fixed(1 - 2 ** -53))) };
      })()
      : { min_ms: 0, max_ms: 0 };
    assert.deepEqual({ delay_ms: delay, ...bounds }, c.expect);
  },

  close(c) {
    assert.deepEqual(closeVerdict(c.input), c.expect);
  },

  errors(c) {
    const { code } = c.input;
    const known = ERROR_CODES[code];
    // A QUIC close with this code, on a connection that had its Welcome, nothing before it.
    const close = closeVerdict({
      transport: 'quic', close_code: code, error_before: null, going_away_ms: null,
      redirected: false, app_closed: false, auto_resume: true, welcomed: true,
    });
    assert.deepEqual({
      name: known ? known[0] : 'unknown',
      fatal: known ? known[1] : false,
      gives_up: errorGivesUp(code),
      answers_request: answersSessionRequest(code),
      close_action: close.action,
      close_delay_ms: close.delay_ms,
      attempt_failure: attemptFailure(code),
    }, c.expect);
  },

  after_reconnect(c) {
    const i = c.input;
    const outcome = afterReconnect({
      resumed: i.resumed, peerId: i.peer_id, previousPeerId: i.previous_peer_id, inSession: i.in_session, pendingRequest: i.pending_request,
    });
    assert.deepEqual({ outcome }, c.expect);
  },

  resume_plan(sc) {
    let plan = null;
    for (const st of sc.steps) {
      const i = st.input;
      const r = resumePlanStep(plan, {
        event: i.event, atMs: st.at_ms, delayMs: i.delay_ms ?? 0, random: i.random === undefined || i.random === null ? undefined : fixed(i.random),
      }, { graceMs: sc.given.grace_ms, windowMs: sc.given.window_ms });
      plan = r.plan;
      const got = r.next.action === 'attempt'
        ? { action: 'attempt', attempt: r.next.attempt, start_at_ms: r.next.startAtMs, with_token: r.next.withToken }
        : { action: 'give_up', attempt: null, start_at_ms: null, with_token: null };
      assert.deepEqual(got, st.expect, `step at ${st.at_ms} ms (${i.event})`);
    }
  },

  redirects(c) {
    const i = c.input;
    if (i.messages) {
      let s = { count: 0, pending: i.pending_request };
      for (const m of i.messages) s = redirectCount(s, m);
      assert.deepEqual({ count: s.count, action: redirectStep(s.count) }, c.expect);
      return;
    }
    // The client's own plan for the count-th redirect: connected, after a Welcome.
    const at = { index: 0, target: { name: 'n' } };
    const target = { name: 'node', url: 'https://n:4433/signal', wsUrl: 'ws://n:8080/ws' };
    const p = redirectPlan({
      count: i.count, max: MAX_REDIRECTS, welcomed: true, inSession: i.in_session, connected: true, at, target, transport: 'auto',
    });
    const then = p.action === 'follow' ? null : p.reconnect ? 'back_to_configured' : 'stop';
    assert.deepEqual({ action: redirectStep(i.count), then }, c.expect);
    assert.equal(p.action === 'follow' ? 'follow' : 'fail', c.expect.action, 'redirectPlan agrees with redirectStep');
    if (then === 'back_to_configured') assert.deepEqual(p.at, rotation(at, 'back_to_configured', 1), 'back to the configured servers');
  },

  rotation(sc) {
    let at = { index: 0, target: null };
    for (const st of sc.steps) {
      const i = st.input;
      at = rotation(at, i.event, sc.given.configured, i.event === 'redirected' ? { name: i.node } : null);
      assert.deepEqual({ configured_index: at.index, redirect_target: at.target ? at.target.name : null }, st.expect,
        `step at ${st.at_ms} ms (${i.event}${i.node ? ` ${i.node}` : ''})`);
    }
  },

  liveness(sc) {
    let s = null;
    let lost = false;
    for (const st of sc.steps) {
      const i = st.input;
      const where = `step at ${st.at_ms} ms (${i.event})`;
      let action = 'none';
      let wake;
      switch (i.event) {
        case 'connected':
          s = livenessStart(st.at_ms);
          break;
        case 'tick': {
          const d = livenessTick(s, st.at_ms);
          action = d.action;
          s = d.state;
          if (d.action === 'lost') lost = true;
          wake = d.wakeAtMs;
          break;
        }
        case 'heard':
          s = livenessHeard(s);
          break;
        case 'pong':
          s = livenessHeard(s, st.at_ms - i.ping_sent_at_ms);
          break;
        case 'rtt_sample':
          s = { ...s, rtt: rttEstimate(s.rtt, i.rtt_ms) };
          break;
        default:
          assert.fail(`${where}: unknown event`);
      }
      const timeout = liveTimeoutMs(s.rtt);
      if (wake === undefined) wake = lost ? null : livenessWakeAt(s, timeout);
      const got = {
        action, live_timeout_ms: timeout, srtt_ms: s.rtt ? s.rtt.srttMs : null, rttvar_ms: s.rtt ? s.rtt.rttvarMs : null, wake_at_ms: wake,
      };
      // Fields of the probing rule, where the vectors state them (every step that has them).
      if ('probe_after_ms' in st.expect) got.probe_after_ms = probeAfterMs(s.rtt);
      if ('next_ping_at_ms' in st.expect) got.next_ping_at_ms = lost ? null : livenessNextPingAt(s);
      assert.deepEqual(got, st.expect, where);
    }
  },

  timeouts(c) {
    const i = c.input;
    if (i.kind === 'attempt') assert.deepEqual({ timeout_ms: attemptTimeoutMs(i.rtt_ms, i.connect_timeout_ms) }, c.expect);
    else if (i.kind === 'request') assert.deepEqual({ timed_out: requestTimedOut(i.sent_at_ms, i.now_ms, i.request_timeout_ms) }, c.expect);
    else assert.fail(`unknown kind ${i.kind}`);
  },

  race(c) {
    const i = c.input;
    switch (i.decision) {
      case 'start': {
        const r = raceStart(i.quic_available, i.fallback_delay_ms);
        assert.deepEqual({ start: fromJsKind(r.start), websocket_after_ms: r.websocketAfterMs }, c.expect);
        break;
      }
      case 'failed': {
        const r = raceFailed(toJsKind(i.failed), 'failed', attemptsJs(i.attempts));
        assert.deepEqual({ start: r.start ? fromJsKind(r.start) : null, lost: r.lost }, c.expect);
        break;
      }
      case 'carries_first':
        assert.deepEqual({ carries_first: carriesFirst(attemptsJs(i.attempts)) }, c.expect);
        break;
      case 'connected': {
        const r = raceConnected(toJsKind(i.connected), attemptsJs(i.attempts));
        assert.deepEqual({ use: fromJsKind(r.use), abandon: r.abandon.map(fromJsKind) }, c.expect);
        break;
      }
      default:
        assert.fail(`unknown decision ${i.decision}`);
    }
  },

  quality(sc) {
    const k = new QualityTracker(1, sc.created_at_ms);
    for (const st of sc.steps) {
      const i = st.input;
      const now = st.at_ms;
      const where = `step at ${now} ms (${i.event}${i.id !== undefined ? ` ${i.id}` : ''}${i.path ? ` ${i.path}` : ''})`;
      let sentId = null;
      let event = false;
      const ev = (e) => { if (e) event = true; };
      switch (i.event) {
        case 'path': ev(k.setPath(i.path, now)); break;
        case 'online': ev(k.setOnline(i.online, now)); break;
        case 'tick': {
          const d = k.tick(now);
          sentId = d.send;
          ev(d.event);
          break;
        }
        case 'reply': ev(k.reply(i.id, now)); break;
        case 'frame_in': for (let n = 0; n < i.count; n++) ev(k.frameIn(now)); break;
        case 'frame_out': for (let n = 0; n < i.count; n++) ev(k.frameOut(now)); break;
        case 'stale': for (let n = 0; n < i.count; n++) ev(k.stale(now)); break;
        default: assert.fail(`${where}: unknown event`);
      }
      const snap = k.snapshot(now);
      const e = st.expect;
      // Unrounded estimates within the vectors' tolerance; the rest exactly.
      const close = (got, want, tol, what) => {
        if (want === null || got === null) assert.equal(got, want, `${where}: ${what}`);
        else assert.ok(Math.abs(got - want) <= tol, `${where}: ${what} ${got}, expected ${want} ± ${tol}`);
      };
      close(k.rtt ? k.rtt.srttMs : null, e.rtt_ms, 0.51, 'srtt');
      close(k.lossPct, e.loss_pct, 0.051, 'loss_pct');
      close(k.jitter, e.jitter_ms, 0.051, 'jitter');
      assert.deepEqual({
        sent_id: sentId, path: snap.path, path_ms: snap.pathMs, grade: snap.grade, fps_in: snap.fpsIn, fps_out: snap.fpsOut,
        stale_dropped: snap.staleDropped, event, wake_at_ms: k.pollTimeout(),
      }, {
        sent_id: e.sent_id, path: e.path, path_ms: e.path_ms, grade: e.grade, fps_in: e.fps_in, fps_out: e.fps_out,
        stale_dropped: e.stale_dropped, event: e.event, wake_at_ms: e.wake_at_ms,
      }, where);
    }
  },

  quality_buckets(c) {
    const i = c.input;
    const bucket = 'rtt_ms' in i ? rttBucket(i.rtt_ms) : lossBucket(i.loss_pct);
    assert.deepEqual({ bucket }, c.expect);
  },

  report_schedule(c) {
    const i = c.input;
    const d = reportDue({ nowMs: i.now_ms, lastReportAtMs: i.last_report_at_ms, hasLinks: i.has_links, changePending: i.change_pending, queued: i.queued });
    assert.deepEqual({ due: d.due, wake_at_ms: d.wakeAtMs }, c.expect);
  },

  paths(c) {
    const i = c.input;
    switch (i.decision) {
      case 'direct_usable':
        assert.deepEqual({ usable: directUsable({ forceRelay: i.force_relay, dataChannel: i.data_channel, connection: i.connection }) }, c.expect);
        break;
      case 'peer_path':
        assert.deepEqual({ path: peerPath({ usable: i.usable, directKind: i.direct_kind, fallback: i.fallback, forceRelay: i.force_relay }) }, c.expect);
        break;
      case 'path_change':
        assert.deepEqual({ change: pathChange(i.previous, i.path, i.initial) }, c.expect);
        break;
      case 'connection_state':
        assert.deepEqual(connectionStateEffect(i.connection_state), c.expect);
        break;
      case 'glare':
        assert.deepEqual({ ignore_offer: ignoreOffer(i.signaling_state, i.my_id, i.from_id) }, c.expect);
        break;
      case 'direct_retry':
        assert.deepEqual({
          due: directRetryDue({ retryMs: i.retry_ms, forceRelay: i.force_relay, myId: i.my_id, peerId: i.peer_id, scheduled: i.scheduled }),
        }, c.expect);
        break;
      default:
        assert.fail(`unknown decision ${i.decision}`);
    }
  },
};

/**
 * Rule 10, `move` (timed scenarios): core.js moveStep from a settled machine, each step at its
 * `at_ms`, its action, phase and routes after it. Step names are the step's index.
 */
SECTIONS.move = (sc) => {
  let s = moveStart();
  sc.steps.forEach((step, n) => {
    const i = step.input;
    const d = moveStep(s, {
      event: i.event, on: i.on, reason: i.reason, unasked: i.unasked, inSession: i.in_session, version: i.version, resumed: i.resumed,
    }, step.at_ms);
    s = d.state;
    assert.deepEqual({
      action: d.action, phase: d.phase, send_on: d.sendOn, take_from: d.takeFrom, control_on: d.controlOn, wake_at_ms: d.wakeAtMs,
    }, step.expect, `step ${n} at ${step.at_ms} ms (${i.event}${i.on ? ` on ${i.on}` : ''})`);
  });
};

/** The constants the file states, against this client's. */
test('client vectors: the constants are this client\'s', () => {
  assert.equal(vectors.version, 1);
  const k = vectors.constants;
  const mine = {
    backoff_steps_ms: [...RECONNECT_BACKOFF_MS],
    ping_interval_ms: PING_INTERVAL_MS,
    probe_interval_ms: PROBE_INTERVAL_MS,
    probe_after_min_ms: PROBE_AFTER_MS.minMs,
    probe_after_before_sample_ms: PROBE_AFTER_MS.beforeSampleMs,
    live_timeout_initial_ms: LIVE_TIMEOUT_MS.initialMs,
    live_timeout_min_ms: LIVE_TIMEOUT_MS.minMs,
    live_timeout_max_ms: LIVE_TIMEOUT_MS.maxMs,
    max_redirects: MAX_REDIRECTS,
    attempt_timeout_floor_ms: attemptTimeoutMs(null, 0),
    shutting_down_delay_ms: SHUTTING_DOWN_DELAY_MS,
    abandon_close_code: ABANDON_CLOSE_CODE,
    abandon_websocket_close_code: 4000 + ABANDON_CLOSE_CODE,
    resume_grace_default_ms: RESUME_GRACE_DEFAULT_MS,
    echo_interval_ms: QUALITY.echoIntervalMs,
    echo_interval_relay_ms: QUALITY.echoIntervalRelayMs,
    echo_timeout_ms: QUALITY.echoTimeoutMs,
    loss_window: QUALITY.lossWindow,
    lost_after_ms: QUALITY.lostAfterMs,
    grade_excellent: { rtt_ms: QUALITY.excellent.rttMs, loss_pct: QUALITY.excellent.lossPct, jitter_ms: QUALITY.excellent.jitterMs },
    grade_good: { rtt_ms: QUALITY.good.rttMs, loss_pct: QUALITY.good.lossPct, jitter_ms: QUALITY.good.jitterMs },
    grade_hysteresis: QUALITY.hysteresis,
    report_interval_ms: REPORT.intervalMs,
    report_min_gap_ms: REPORT.minGapMs,
    report_max_queued: REPORT.maxQueued,
    rtt_bucket_edges_ms: [...RTT_BUCKET_EDGES_MS],
    loss_bucket_edges_pct: [...LOSS_BUCKET_EDGES_PCT],
    move_old_close_after_ms: MOVE_OLD_CLOSE_AFTER_MS,
  };
  for (const [key, value] of Object.entries(mine)) assert.deepEqual(k[key], value, `constants.${key}`);
  // The client's option defaults.
  const o = new FlightSimP2P({ host: 'x', transport: () => ({}) }).options;
  assert.equal(o.connectTimeoutMs, k.connect_timeout_ms, 'connect_timeout_ms');
  assert.equal(o.requestTimeoutMs, k.request_timeout_ms, 'request_timeout_ms');
  assert.equal(o.fallbackDelayMs, k.race_fallback_delay_ms, 'race_fallback_delay_ms');
  assert.equal(o.reconnectTimeoutMs, k.reconnect_window_ms, 'reconnect_window_ms');
  assert.equal(o.pingIntervalMs, k.ping_interval_ms, 'ping_interval_ms');
});

const mine = Object.entries(vectors.sections).filter(([, sec]) => sec.clients.includes('js'));

test('client vectors: every section naming js has a replayer here', () => {
  assert.ok(mine.length > 0, 'no section names js');
  const missing = mine.map(([name]) => name).filter((name) => !SECTIONS[name]);
  assert.deepEqual(missing, [], `sections naming js with no replayer: ${missing.join(', ')}`);
});

for (const [name, sec] of mine) {
  test(`client vectors: ${name} (${sec.rule.slice(0, 80)}${sec.rule.length > 80 ? '…' : ''})`, () => {
    const replay = SECTIONS[name];
    assert.ok(replay, `section ${name} names js but this file cannot replay it`);
    const items = sec.cases || sec.scenarios;
    assert.ok(Array.isArray(items) && items.length > 0, `section ${name} has no cases`);
    const failures = [];
    for (const item of items) {
      try {
        replay(item);
      } catch (e) {
        failures.push(`${name} / ${item.name}: ${e && e.message ? e.message : e}`);
      }
    }
    assert.deepEqual(failures, [], `${failures.length} of ${items.length} failed:\n${failures.join('\n\n')}`);
  });
}
