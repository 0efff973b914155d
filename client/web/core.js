// FlightSim P2P browser client: the decisions, sans IO.
//
// Every rule of the client's behaviour that does not need the network lives here as a pure
// function: the reconnect schedule and when to give up, what a close code or a server error
// means, resume or rejoin, redirects and node rotation, liveness, attempt and request
// deadlines, the control stream's rate, the QUIC/WebSocket race, the direct/TURN/relay path
// of a peer, each peer's link quality (echoes, RTT, loss, grade), the report schedule
// (PROTOCOL.md §14) and following a session that moves to another node make-before-break (§12 rule 10). Time and randomness are inputs
// (`nowMs`, `random`): no timers, no clock, no RTCPeerConnection, no WebSocket here, so the
// rules run under node with simulated time (tests/browser/core.test.mjs). The shell
// (client.js, mesh.js, transports.js) does the I/O and asks these functions what to do.

import { WEBTRANSPORT_PATH, errorName, WEBSOCKET_PATH, ERROR_CODES } from './codec.js';

// ---------------------------------------------------------------------------
// Reconnecting (tested in tests/browser/core.test.mjs)
// ---------------------------------------------------------------------------

/**
 * Reconnect backoff steps (PROTOCOL.md, client behaviour, rule 1; the same in every client):
 * attempt 0 at once, then 250 ms, 500 ms, 1 s, 2 s, and 4 s for attempt 5 and every one after,
 * each with jitter into the step's upper half (backoffDelayMs).
 */
export const RECONNECT_BACKOFF_MS = Object.freeze([0, 250, 500, 1000, 2000, 4000]);

/**
 * Close code of a connection this client abandons in order to resume on a new one. It is
 * not 0 (WebSocket: not 1000), which would leave the session for good (PROTOCOL.md §1, §10);
 * any other code keeps the seat for the resume grace. (WebSocket: 4000 + 999 = 4999.)
 */
export const ABANDON_CLOSE_CODE = 999;

/**
 * Delay before reconnect attempt `attempt` (0-based: attempts made so far), with jitter:
 * `floor(step × (0.5 + 0.5 × r))`, `r` from `random` in [0, 1), so a value in the step's upper
 * half, never above it, and many clients cut at once do not come back in lockstep. Attempt 0
 * never waits.
 * @param {number} attempt
 * @param {() => number} random in [0, 1) (fsp2p.js's export of this function has a default)
 */
export function backoffDelayMs(attempt, random) {
  if (!(attempt > 0)) return 0;
  const step = RECONNECT_BACKOFF_MS[Math.min(attempt, RECONNECT_BACKOFF_MS.length - 1)];
  const r = Math.min(1, Math.max(0, Number(random()) || 0));
  return Math.floor(step * (0.5 + 0.5 * r));
}

/**
 * The server's resume grace when this client has no Welcome to say it (PROTOCOL.md §4): a
 * resume token given as an option is offered for this long.
 */
export const RESUME_GRACE_DEFAULT_MS = 15000;

/** The wait before coming back after a close with 7 `shutting_down` and no `GoingAway` before it. */
export const SHUTTING_DOWN_DELAY_MS = 1000;

/**
 * Errors that end it for good when received before the connection's end (rule 3): the fatal
 * ones of PROTOCOL.md §6 except `shutting_down` (7, come back later) and `slow_consumer` (21,
 * the seat is kept), plus `too_many_join_attempts` (17).
 * @param {number|null} code
 */
export function errorGivesUp(code) {
  if (code === null || code === undefined) return false;
  if (code === 7 || code === 21) return false;
  if (code === 17) return true;
  const e = ERROR_CODES[code];
  return !!(e && e[1]);
}

/**
 * Whether a reconnection attempt refused or closed with `code` is final (`give_up`) or tried
 * again with the backoff (`retry`): final for bad_message, frame_too_large, unsupported_version,
 * protocol_violation, hello_timeout, replaced, token_required, token_invalid, token_revoked and
 * unknown non-zero codes.
 * @param {number|null} code null: unreachable, timed out, ended without a code
 * @returns {'retry'|'give_up'}
 */
export function attemptFailure(code) {
  if (code === null || code === undefined) return 'retry';
  // 23, 24, 27: no token, a refused one, a revoked one will not pass again (§13).
  if ([1, 2, 3, 4, 19, 20, 23, 24, 27].includes(code)) return 'give_up';
  return ERROR_CODES[code] || code === 0 ? 'retry' : 'give_up';
}

/**
 * What the end of a connection means (rule 3; first match wins).
 *
 * - `give_up` (action `close`): the app closed it; resume is off or there was no Welcome yet
 *   (nothing to resume); a normal close (code 0); a final `Error` came before it
 *   (errorGivesUp); any close code not listed below, unknown ones included.
 * - `redirect` (action `reconnect`, at once): it ended after a `Redirect`: follow it.
 * - `resume_after` (action `reconnect` after `delayMs`): a `GoingAway` came before (its delay,
 *   what is left of it), or close code 7 `shutting_down` (1000 ms).
 * - `resume` (action `reconnect`, at once): no close code (network, proxy, idle timeout, no
 *   answer to Pings, WebSocket 1006 or any code that is not 1000 / 4000–4999), or 21
 *   `slow_consumer` / 22 `cluster_unavailable` / 25 `token_expired`.
 *
 * @param {{code: number|null, fatalCode?: number|null, goingAwayInMs?: number|null,
 *   enabled?: boolean, welcomed?: boolean, redirected?: boolean, appClosed?: boolean}} c
 *   code: the protocol close code (0 normal, a §6 code; WebSocket: fromWsCloseCode), null when
 *   the connection ended without one; fatalCode: code of an `Error` the server sent before
 *   (any code: errorGivesUp decides); goingAwayInMs: time left until the `GoingAway` delay is
 *   over (null: no GoingAway)
 * @returns {{action: 'reconnect', verdict: 'resume'|'resume_after'|'redirect', delayMs: number} |
 *   {action: 'close', verdict: 'give_up', why: string}}
 */
export function closeDisposition(c) {
  const {
    code, fatalCode = null, goingAwayInMs = null, enabled = true, welcomed = true, redirected = false, appClosed = false,
  } = c;
  /** @returns {{action: 'close', verdict: 'give_up', why: string}} */
  const giveUp = (why) => ({ action: 'close', verdict: 'give_up', why });
  if (appClosed) return giveUp('closed by the application');
  if (redirected) return { action: 'reconnect', verdict: 'redirect', delayMs: 0 };
  if (!enabled) return giveUp('reconnecting is off');
  if (!welcomed) return giveUp('no Welcome yet: nothing to resume');
  if (code === 0) return giveUp('closed normally by the server');
  if (errorGivesUp(fatalCode)) return giveUp(`fatal server error ${errorName(/** @type {number} */ (fatalCode))}`);
  if (goingAwayInMs !== null && goingAwayInMs !== undefined) {
    return { action: 'reconnect', verdict: 'resume_after', delayMs: Math.max(0, Math.round(goingAwayInMs)) };
  }
  if (code === null || code === undefined) return { action: 'reconnect', verdict: 'resume', delayMs: 0 };
  if (code === 7) return { action: 'reconnect', verdict: 'resume_after', delayMs: SHUTTING_DOWN_DELAY_MS };
  // 25 token_expired: come back with a fresh token (`getToken` is asked again), the seat is kept.
  if (code === 21 || code === 22 || code === 25) return { action: 'reconnect', verdict: 'resume', delayMs: 0 };
  return giveUp(`closed by the server with ${errorName(code)}`);
}

/**
 * The next step of a reconnection that has made `attempt` attempts so far and began
 * `elapsedMs` ago: wait `delayMs` then try again, or give up when that attempt would start more
 * than `giveUpMs` after the loss (0 = never give up).
 * @param {{attempt: number, elapsedMs: number, giveUpMs: number, random: () => number}} s
 * @returns {{action: 'wait', delayMs: number} | {action: 'giveup'}}
 */
export function reconnectStep(s) {
  const delayMs = backoffDelayMs(s.attempt, s.random);
  if (s.giveUpMs > 0 && s.elapsedMs + delayMs > s.giveUpMs) return { action: 'giveup' };
  return { action: 'wait', delayMs };
}

/**
 * The plan of a reconnection (rule 4), one event at a time: `lost` at `atMs` (the first attempt
 * after `delayMs`, the close verdict's delay), `failed` (the current attempt failed at `atMs`:
 * the next after the backoff of the attempts made since the loss or the last redirect, with
 * `random`), `redirected` (attempt 1 again, at once; the grace and the window still count from
 * the loss). An attempt that would start more than max(windowMs, the first delay) after the
 * loss is not made (`give_up`; windowMs 0 = never). One starting before loss + graceMs offers
 * the resume token (`withToken`); later ones rejoin by code.
 * @typedef {{lostAtMs: number, firstDelayMs: number, attempts: number}} ResumePlan
 * @param {ResumePlan|null} plan null before the loss
 * @param {{event: 'lost'|'failed'|'redirected', atMs: number, delayMs?: number, random?: () => number}} ev
 * @param {{graceMs: number, windowMs: number}} o
 * @returns {{plan: ResumePlan, next: {action: 'attempt', attempt: number, startAtMs: number, withToken: boolean} | {action: 'give_up'}}}
 */
export function resumePlanStep(plan, ev, o) {
  let p;
  let startAtMs;
  if (ev.event === 'lost' || !plan) {
    const d = Math.max(0, ev.delayMs || 0);
    p = { lostAtMs: ev.atMs, firstDelayMs: d, attempts: 0 };
    startAtMs = ev.atMs + d;
  } else if (ev.event === 'redirected') {
    p = { ...plan, attempts: 0 };
    startAtMs = ev.atMs;
  } else {
    p = { ...plan };
    startAtMs = ev.atMs + backoffDelayMs(p.attempts, ev.random || (() => 0));
  }
  const since = startAtMs - p.lostAtMs;
  if (o.windowMs > 0 && since > Math.max(o.windowMs, p.firstDelayMs)) return { plan: p, next: { action: 'give_up' } };
  p.attempts += 1;
  return { plan: p, next: { action: 'attempt', attempt: p.attempts, startAtMs, withToken: offersToken(p, startAtMs, o.graceMs) } };
}

/**
 * Whether an attempt starting at `startAtMs` offers the resume token: only before loss + grace
 * (the seat is surely gone after it: the attempt rejoins by code in its first flight instead).
 * @param {ResumePlan} plan @param {number} startAtMs @param {number} graceMs
 */
export function offersToken(plan, startAtMs, graceMs) {
  return startAtMs - plan.lostAtMs < graceMs;
}

/**
 * What a Welcome that ends a reconnection means: `resumed` (the same peer id: the seat was kept,
 * the server puts us back in our session by itself); else the resume came too late (the grace
 * passed, or the server restarted) and everything tied to the old peer id is void: `rejoin` the
 * session by its code and password (the session comes first), else `resend` a create/join still
 * waiting for its answer, else nothing to do (`fresh`).
 * @param {{resumed: boolean, peerId: number, previousPeerId: number, inSession: boolean, pendingRequest: boolean}} s
 *   resumed: the Welcome's flag; inSession: the client was in a session when the connection was
 *   lost; pendingRequest: a CreateSession / JoinSession is still unanswered
 * @returns {'resumed'|'resend'|'rejoin'|'fresh'}
 */
export function afterReconnect(s) {
  if (s.resumed && s.peerId === s.previousPeerId) return 'resumed';
  if (s.inSession) return 'rejoin';
  return s.pendingRequest ? 'resend' : 'fresh';
}

/**
 * How long one reconnect attempt gets (transport up, then the Welcome) before the next
 * one starts: at least 3 s (a busy machine), 2 s + 8 server round trips on a slow path,
 * never more than the connect timeout (0 = no cap); whole ms.
 * @param {number|null} rttMs the smoothed round trip (srtt) of the last connection, if known
 * @param {number} connectTimeoutMs
 */
export function attemptTimeoutMs(rttMs, connectTimeoutMs) {
  const want = Math.max(3000, 2000 + 8 * (rttMs && rttMs > 0 ? rttMs : 0));
  return Math.floor(connectTimeoutMs > 0 ? Math.min(connectTimeoutMs, want) : want);
}

// ---------------------------------------------------------------------------
// Liveness: when the server counts as lost (rule 2)
// ---------------------------------------------------------------------------

/** While connected, a Ping goes to the server this often (ms). */
export const PING_INTERVAL_MS = 500;

/**
 * Probing (rule 2): while a Ping has been unanswered for `probe_after_ms`, a Ping goes out this
 * often (ms) until anything is heard, like QUIC's probe timeout.
 */
export const PROBE_INTERVAL_MS = 100;

/**
 * `probe_after_ms`'s bounds: `beforeSampleMs` before the first RTT sample, then
 * `floor(max(minMs, srtt + 4·rttvar))`.
 */
export const PROBE_AFTER_MS = Object.freeze({ minMs: 250, beforeSampleMs: 1000 });

/**
 * The live timeout's bounds: `initialMs` before the first RTT sample, then
 * `clamp(3 × (srtt + 4·rttvar), minMs, maxMs)`.
 */
export const LIVE_TIMEOUT_MS = Object.freeze({ initialMs: 3000, minMs: 1500, maxMs: 10000 });

/**
 * The server round-trip estimate after one more Ping/Pong sample `sampleMs` (RFC 6298 style):
 * the first sample s gives srtt = s, rttvar = s/2; later ones rttvar = 0.75·rttvar + 0.25·|srtt − s|,
 * then srtt = 0.875·srtt + 0.125·s.
 * @param {{srttMs: number, rttvarMs: number}|null} est null before the first sample
 * @param {number} sampleMs
 * @returns {{srttMs: number, rttvarMs: number}}
 */
export function rttEstimate(est, sampleMs) {
  const s = Math.max(0, sampleMs);
  if (!est) return { srttMs: s, rttvarMs: s / 2 };
  const rttvarMs = 0.75 * est.rttvarMs + 0.25 * Math.abs(est.srttMs - s);
  return { srttMs: 0.875 * est.srttMs + 0.125 * s, rttvarMs };
}

/**
 * How long a Ping may stay unanswered (nothing at all heard from the server) before the server
 * counts as lost: `floor(clamp(3 × (srtt + 4·rttvar), 1500, 10000))`, 3000 before the first sample.
 * @param {{srttMs: number, rttvarMs: number}|null} est
 */
export function liveTimeoutMs(est) {
  if (!est) return LIVE_TIMEOUT_MS.initialMs;
  const want = 3 * (est.srttMs + 4 * est.rttvarMs);
  return Math.floor(Math.min(LIVE_TIMEOUT_MS.maxMs, Math.max(LIVE_TIMEOUT_MS.minMs, want)));
}

/**
 * How long a Ping may stay unanswered before the client probes (a Ping every PROBE_INTERVAL_MS):
 * `floor(max(250, srtt + 4·rttvar))`, 1000 before the first sample.
 * @param {{srttMs: number, rttvarMs: number}|null} est
 */
export function probeAfterMs(est) {
  if (!est) return PROBE_AFTER_MS.beforeSampleMs;
  return Math.floor(Math.max(PROBE_AFTER_MS.minMs, est.srttMs + 4 * est.rttvarMs));
}

/**
 * Whether the server has gone silent: a Ping went out at `awaitingSinceMs` (null = nothing
 * outstanding) and nothing at all (no Pong, no other message, no relay frame) came back
 * for longer than `liveTimeoutMs` (0 = never decide so). Timed from the ping, not from the last
 * message, so that a throttled background tab (timers once a minute) is not taken for dead.
 * @param {number|null} awaitingSinceMs @param {number} nowMs @param {number} liveTimeoutMs
 */
export function serverSilent(awaitingSinceMs, nowMs, liveTimeoutMs) {
  return liveTimeoutMs > 0 && awaitingSinceMs !== null && awaitingSinceMs !== undefined && nowMs - awaitingSinceMs > liveTimeoutMs;
}

/**
 * What the client knows for liveness: the RTT estimate (null before a sample); when the oldest
 * unanswered Ping went out (null: none, or something was heard since); when the last Ping went
 * out (before the first: the Welcome, so that the first Ping goes one interval after it); the
 * Ping interval.
 * @typedef {{rtt: {srttMs: number, rttvarMs: number}|null, awaitingSinceMs: number|null, lastPingAtMs: number, intervalMs: number}} Liveness
 */

/**
 * Liveness of a connection that came up (its Welcome) at `nowMs`: no estimate, nothing
 * outstanding, the first Ping due `intervalMs` later.
 * @param {number} nowMs @param {number} [intervalMs]
 * @returns {Liveness}
 */
export function livenessStart(nowMs, intervalMs = PING_INTERVAL_MS) {
  return { rtt: null, awaitingSinceMs: null, lastPingAtMs: nowMs, intervalMs };
}

/**
 * When the next Ping is due (rule 2): nothing outstanding, `last + interval`; a Ping
 * outstanding, `min(last + interval, max(last + 100, awaiting_since + probe_after_ms))`: once a
 * Ping has been unanswered for probe_after_ms, a Ping every 100 ms until anything is heard.
 * @param {Liveness} s
 */
export function livenessNextPingAt(s) {
  const regular = s.lastPingAtMs + s.intervalMs;
  if (s.awaitingSinceMs === null) return regular;
  return Math.min(regular, Math.max(s.lastPingAtMs + PROBE_INTERVAL_MS, s.awaitingSinceMs + probeAfterMs(s.rtt)));
}

/**
 * Something was heard from the server (any message, a Pong, a relay frame): nothing is
 * outstanding any more (the live timeout is timed from the next Ping, probing stops). With a Pong
 * that answers a Ping, `sampleMs` (now − the Ping's send time) is also an RTT sample.
 * @param {Liveness} s @param {number|null} [sampleMs]
 * @returns {Liveness}
 */
export function livenessHeard(s, sampleMs = null) {
  const rtt = sampleMs === null || sampleMs === undefined ? s.rtt : rttEstimate(s.rtt, sampleMs);
  return { ...s, rtt, awaitingSinceMs: null };
}

/**
 * When the shell must run livenessTick next: the next Ping (livenessNextPingAt), or, while one
 * is outstanding, just after the moment the server would count as lost (oldest + timeout + 1),
 * whichever is first.
 * @param {Liveness} s @param {number} timeoutMs the live timeout in force (0: never lost)
 */
export function livenessWakeAt(s, timeoutMs) {
  const due = livenessNextPingAt(s);
  if (timeoutMs > 0 && s.awaitingSinceMs !== null) return Math.min(due, Math.floor(s.awaitingSinceMs + timeoutMs) + 1);
  return due;
}

/**
 * The liveness timer fires at `nowMs`: the server is `lost` (a Ping outstanding for longer than
 * the live timeout); else a Ping goes out if one is due (livenessNextPingAt; `ping`: the
 * oldest unanswered Ping's time is kept if set, else now; the last Ping now); else `none`.
 * `wakeAtMs`: when to look again (null once lost). `timeoutMs`: a fixed live timeout (0 = never
 * take the server for lost); null/undefined: the adaptive one (liveTimeoutMs of the estimate).
 * `o.intervalMs` (the Ping interval) replaces the state's.
 * @param {Liveness} s @param {number} nowMs
 * @param {{intervalMs?: number, timeoutMs?: number|null}} [o]
 * @returns {{action: 'lost'|'ping'|'none', state: Liveness, silentMs: number, timeoutMs: number, wakeAtMs: number|null,
 *   probeAfterMs: number, nextPingAtMs: number|null}}
 */
export function livenessTick(s, nowMs, o = {}) {
  if (o.intervalMs !== undefined && o.intervalMs !== s.intervalMs) s = { ...s, intervalMs: o.intervalMs };
  const timeoutMs = o.timeoutMs ?? liveTimeoutMs(s.rtt);
  const silentMs = s.awaitingSinceMs === null ? 0 : nowMs - s.awaitingSinceMs;
  const probe = probeAfterMs(s.rtt);
  if (serverSilent(s.awaitingSinceMs, nowMs, timeoutMs)) {
    return { action: 'lost', state: s, silentMs, timeoutMs, wakeAtMs: null, probeAfterMs: probe, nextPingAtMs: null };
  }
  if (nowMs < livenessNextPingAt(s)) {
    return { action: 'none', state: s, silentMs, timeoutMs, wakeAtMs: livenessWakeAt(s, timeoutMs), probeAfterMs: probe, nextPingAtMs: livenessNextPingAt(s) };
  }
  const state = { ...s, awaitingSinceMs: s.awaitingSinceMs ?? nowMs, lastPingAtMs: nowMs };
  return {
    action: 'ping', state, silentMs, timeoutMs, wakeAtMs: livenessWakeAt(state, timeoutMs), probeAfterMs: probe, nextPingAtMs: livenessNextPingAt(state),
  };
}

/**
 * Time left until a `GoingAway`'s delay is over (for closeDisposition), null without one.
 * @param {{at: number, ms: number}|null} goingAway @param {number} nowMs
 */
export function goingAwayLeftMs(goingAway, nowMs) {
  return goingAway ? goingAway.at + goingAway.ms - nowMs : null;
}

// ---------------------------------------------------------------------------
// Requests and the control stream's rate
// ---------------------------------------------------------------------------

/** Whether a server `Error` with this code answers a pending CreateSession / JoinSession. @param {number} code */
export function answersSessionRequest(code) {
  return SESSION_REQUEST_ERRORS.has(code);
}

/**
 * Whether a request sent at `sentAtMs` and still unanswered at `nowMs` has timed out.
 * @param {number} sentAtMs @param {number} nowMs @param {number} timeoutMs
 */
export function requestTimedOut(sentAtMs, nowMs, timeoutMs) {
  return nowMs - sentAtMs >= timeoutMs;
}

/**
 * The control stream's token bucket: the server allows `signalsPerSec` (burst 2×) and drops what
 * is over it, so the client sends at 90 % of it with a burst of 1×. Given the tokens left at
 * `lastMs`, the tokens at `nowMs`, how many of `queued` messages go out now, and when to try
 * again (null: nothing waits, or no limit).
 * @param {{tokens: number, lastMs: number, nowMs: number, signalsPerSec: number, queued: number}} s
 * @returns {{send: number, tokens: number, retryInMs: number|null}}
 */
export function pumpStep(s) {
  const rate = s.signalsPerSec * 0.9;
  if (!rate) return { send: s.queued, tokens: s.tokens, retryInMs: null };
  let tokens = Math.min(rate, s.tokens + ((s.nowMs - s.lastMs) * rate) / 1000);
  let send = 0;
  while (send < s.queued && tokens >= 1) {
    tokens -= 1;
    send++;
  }
  return { send, tokens, retryInMs: send < s.queued ? Math.ceil(1000 / rate) : null };
}

// ---------------------------------------------------------------------------
// The QUIC/WebSocket race (transport 'auto'; AutoSignal runs it)
// ---------------------------------------------------------------------------

/**
 * How the race begins: without WebTransport in the browser, the WebSocket alone at once;
 * else WebTransport, and the WebSocket too if WebTransport is not up within `fallbackDelayMs`.
 * @param {boolean} hasWebTransport @param {number} fallbackDelayMs
 * @returns {{start: 'webtransport'|'websocket', why: string, websocketAfterMs: number|null}}
 */
export function raceStart(hasWebTransport, fallbackDelayMs) {
  if (!hasWebTransport) return { start: 'websocket', why: 'this browser has no WebTransport', websocketAfterMs: null };
  return { start: 'webtransport', why: '', websocketAfterMs: Math.max(0, fallbackDelayMs) };
}

/** Why the WebSocket attempt starts when WebTransport is not up in time. @param {number} fallbackDelayMs */
export function raceSlowReason(fallbackDelayMs) {
  return `WebTransport not ready within ${fallbackDelayMs} ms`;
}

/**
 * An attempt of the race failed: what starts next (the WebSocket after WebTransport failed, with
 * why), and whether the race is lost (every attempt started has failed).
 * @param {'webtransport'|'websocket'} kind @param {string} message the failure's description
 * @param {{kind: string, failed: boolean}[]} attempts every attempt so far, this one marked failed
 * @returns {{start: 'websocket'|null, why: string, lost: boolean}}
 */
export function raceFailed(kind, message, attempts) {
  const start = kind === 'webtransport' && !attempts.some((a) => a.kind === 'websocket') ? 'websocket' : null;
  return {
    start, why: start ? `WebTransport failed: ${message}` : '',
    lost: !start && attempts.every((a) => a.failed),
  };
}

/**
 * Whether a new attempt carries the first request (Hello, create/join) in its URL: only when no
 * other attempt is pending, else both could reach the server and make two peers of one client.
 * @param {{failed: boolean}[]} attempts the attempts started before this one
 */
export function carriesFirst(attempts) {
  return attempts.every((a) => a.failed);
}

/**
 * An attempt connected: the first to connect wins; the other attempts still pending are abandoned.
 * @param {string} kind @param {{kind: string, failed: boolean}[]} attempts every attempt so far
 * @returns {{use: string, abandon: string[]}}
 */
export function raceConnected(kind, attempts) {
  return { use: kind, abandon: attempts.filter((a) => a.kind !== kind && !a.failed).map((a) => a.kind) };
}

// ---------------------------------------------------------------------------
// Paths to peers: direct, TURN or relay (the WebRTC mesh, mesh.js, asks these)
// ---------------------------------------------------------------------------

/**
 * Whether flight data to a peer can go on its DataChannel: not forced onto the relay, the
 * channel open and the connection connected.
 * @param {{forceRelay: boolean, dataChannel: string|null, connection: string|null}} s
 *   readyState of the DataChannel and connectionState of the RTCPeerConnection (null: none)
 */
export function directUsable(s) {
  return !s.forceRelay && s.dataChannel === 'open' && s.connection === 'connected';
}

/**
 * The path a peer is on: its direct kind ('direct' host/srflx, 'turn') when the DataChannel is
 * usable; 'classify' when it is usable but the selected candidate pair is not classified yet
 * (getStats first); 'relay' once it fell back (deadline passed, ICE failed, channel closed) or
 * with forced relay; else 'connecting'.
 * @param {{usable: boolean, directKind: 'direct'|'turn'|null, fallback: boolean, forceRelay: boolean}} s
 * @returns {'direct'|'turn'|'relay'|'connecting'|'classify'}
 */
export function peerPath(s) {
  if (s.usable) return s.directKind || 'classify';
  if (s.fallback || s.forceRelay) return 'relay';
  return 'connecting';
}

/**
 * Whether a path decision is announced (`pathchange`): when it changed; a new peer's first
 * path is announced unless it is 'connecting'.
 * @param {string} previous @param {string} path @param {boolean} initial
 * @returns {'none'|'update'|'announce'} none: nothing changed; update: record it silently; announce: record and emit
 */
export function pathChange(previous, path, initial) {
  if (path === previous && !initial) return 'none';
  return !initial || path !== 'connecting' ? 'announce' : 'update';
}

/**
 * What a peer connection's state means: 'failed' / 'closed' fall back to the relay and retry
 * later; 'disconnected' falls back (ICE may recover by itself, the path then comes back).
 * @param {string} connectionState
 * @returns {{fallback: boolean, retry: boolean}}
 */
export function connectionStateEffect(connectionState) {
  const gone = connectionState === 'failed' || connectionState === 'closed';
  return { fallback: gone || connectionState === 'disconnected', retry: gone };
}

/**
 * Glare (both peers offered): the lower peer id keeps its own offer and ignores the other's.
 * @param {string|null} signalingState mine, null without a connection @param {number} myId @param {number} fromId
 */
export function ignoreOffer(signalingState, myId, fromId) {
  return signalingState === 'have-local-offer' && myId < fromId;
}

/**
 * Whether to schedule a fresh direct attempt after a failure: only the lower peer id retries
 * (one offer, no glare), not with forced relay, not when `directRetryMs` is 0, not twice.
 * @param {{retryMs: number, forceRelay: boolean, myId: number, peerId: number, scheduled: boolean}} s
 */
export function directRetryDue(s) {
  return !!s.retryMs && !s.forceRelay && s.myId <= s.peerId && !s.scheduled;
}

// ---------------------------------------------------------------------------
// Cluster mode (PROTOCOL.md §11; tested in tests/browser/cluster.test.mjs and core.test.mjs)
// ---------------------------------------------------------------------------

/** Redirects followed in a row (until a redirected request is answered) before failing. */
export const MAX_REDIRECTS = 5;

/**
 * The WebSocket URL of a node's HTTP base URL: `{http}/ws` with http → ws, https → wss; '' if none.
 * @param {string} http
 */
export function wsUrlOfHttp(http) {
  const m = /^(https?):\/\/([^/]+)\/*$/.exec(String(http || '').trim());
  if (!m) return '';
  return `${m[1] === 'https' ? 'wss' : 'ws'}://${m[2]}${WEBSOCKET_PATH}`;
}

/**
 * Where a Redirect's node is reached: `url` (WebTransport, `https://{quic}/signal`), `wsUrl`
 * (`{http}/ws`), `certHash` (the pinned hash, null for a CA-signed certificate). An empty address
 * is '' (that transport cannot reach the node).
 * @param {NodeAddr} node
 * @returns {{name: string, url: string, wsUrl: string, certHash: Uint8Array|null}}
 */
export function nodeServer(node) {
  const quic = String(node.quic || '').trim();
  const url = /^(\[[0-9a-fA-F:.]+\]|[^:\[\]/]+):\d{1,5}$/.test(quic) ? `https://${quic}${WEBTRANSPORT_PATH}` : '';
  const hash = node.certSha256 && node.certSha256.length === 32 ? Uint8Array.from(node.certSha256) : null;
  return { name: node.name, url, wsUrl: wsUrlOfHttp(node.http), certHash: hash };
}

/**
 * Whether a server description can be reached with `transport` ('auto', 'webtransport',
 * 'websocket', or a factory: anything with an address).
 * @param {{url: string, wsUrl: string}} server @param {any} transport
 */
export function reachableWith(server, transport) {
  if (transport === 'webtransport') return !!server.url;
  if (transport === 'websocket') return !!server.wsUrl;
  return !!(server.url || server.wsUrl);
}

/**
 * The next redirect, the `count`-th in a row: follow it, or fail (more than `max`).
 * @param {number} count @param {number} [max]
 * @returns {'follow'|'fail'}
 */
export function redirectStep(count, max = MAX_REDIRECTS) {
  return count > max ? 'fail' : 'follow';
}

/**
 * The redirect count and whether a create/join waits for its answer, after one server message
 * (rule 5): a `redirect` counts one more; `session_created` / `session_joined` answer the request
 * (count 0, nothing pending); a `welcome` resets the count when nothing is pending (a resume's
 * redirect); an `error_answering` the request ends the wait but not the run; others change nothing.
 * @param {{count: number, pending: boolean}} s
 * @param {'redirect'|'welcome'|'session_created'|'session_joined'|'error_answering'|string} message
 * @returns {{count: number, pending: boolean}}
 */
export function redirectCount(s, message) {
  switch (message) {
    case 'redirect': return { ...s, count: s.count + 1 };
    case 'session_created':
    case 'session_joined': return { count: 0, pending: false };
    case 'welcome': return s.pending ? s : { ...s, count: 0 };
    case 'error_answering': return { ...s, pending: false };
    default: return s;
  }
}

/**
 * What a Redirect does, the `count`-th in a row. Within the limit: `follow`, to the node if the
 * transport can reach it (`at` names it), else back to the configured servers. Over it: `fail`
 * the client when it has no seat to keep (no Welcome yet, or neither in a session nor connected);
 * else `refuse` (the request fails, the app sees an error), and a client in a session goes back to
 * its configured servers (`reconnect`: the target is dropped, the index kept), one out of a
 * session stays where it is.
 * @param {{count: number, max: number, welcomed: boolean, inSession: boolean, connected: boolean,
 *   at: {index: number, target: any}, target: {url: string, wsUrl: string}, transport: any}} s
 * @returns {{action: 'follow'|'refuse'|'fail', reconnect: boolean, at: {index: number, target: any}}}
 */
export function redirectPlan(s) {
  if (redirectStep(s.count, s.max) === 'fail') {
    if (!s.welcomed || (!s.inSession && !s.connected)) return { action: 'fail', reconnect: false, at: s.at };
    if (!s.inSession) return { action: 'refuse', reconnect: false, at: s.at };
    return { action: 'refuse', reconnect: true, at: rotation(s.at, 'back_to_configured', 1) };
  }
  const target = reachableWith(s.target, s.transport) ? s.target : null;
  return { action: 'follow', reconnect: true, at: { index: s.at.index, target } };
}

/**
 * Where the next reconnect attempt goes after the current server could not be reached: a redirect
 * target is dropped (back to the configured list where it left off), else the next configured
 * server, round robin.
 * @param {{index: number, target: any}} at @param {number} count configured servers (main + fallbacks)
 * @returns {{index: number, target: any}}
 */
export function rotateServer(at, count) {
  return rotation(at, 'unreachable', count);
}

/**
 * Node rotation (rule 5): where the next attempts go after `event`. `unreachable` / `server_lost`
 * (lost by liveness): a redirect target is dropped (back to the list, at the same index), else
 * the next configured server, round robin; `redirected`: `node` becomes the target;
 * `back_to_configured`: the target is dropped; `connection_lost` (any other loss): no change,
 * the same server again.
 * @param {{index: number, target: any}} at
 * @param {'unreachable'|'server_lost'|'connection_lost'|'redirected'|'back_to_configured'} event
 * @param {number} count configured servers (main + fallbacks) @param {any} [node] the redirect's target
 * @returns {{index: number, target: any}}
 */
export function rotation(at, event, count, node = null) {
  switch (event) {
    case 'unreachable':
    case 'server_lost':
      if (at.target) return { index: at.index, target: null };
      return { index: (at.index + 1) % Math.max(1, count), target: null };
    case 'redirected': return { index: at.index, target: node };
    case 'back_to_configured': return { index: at.index, target: null };
    default: return at;
  }
}

/** Errors that answer a CreateSession / JoinSession (PROTOCOL.md §6, §12): not `not_in_session` (14), which answers LeaveSession. */
export const SESSION_REQUEST_ERRORS = new Set([8, 9, 10, 11, 12, 13, 16, 17, 22, 26]);


/** Values of the `transport` option besides a factory. */
export const TRANSPORT_CHOICES = Object.freeze(['auto', 'webtransport', 'websocket']);

// ---------------------------------------------------------------------------
// Connection quality per peer (PROTOCOL.md §14; tested in tests/browser/quality.test.mjs and
// replayed from docs/client-vectors.json's `quality` section)
// ---------------------------------------------------------------------------

/**
 * The quality estimator's constants (the same in every client, and in the vectors' `constants`).
 * Echoes every 500 ms on a direct or TURN path (the DataChannel), every 2000 ms on the relay.
 * Grades: `excellent` when srtt < 100 ms and loss < 2 % and jitter < 20 ms; `good` under 250 / 8 /
 * 50; `poor` otherwise. A better grade than the last one is taken only under its limits × 0.8.
 */
export const QUALITY = Object.freeze({
  echoIntervalMs: 500,
  /** on the relay an echo costs the server two relayed frames each way: one every 2 s there */
  echoIntervalRelayMs: 2000,
  echoTimeoutMs: 2000,
  lossWindow: 20,
  lostAfterMs: 3000,
  hysteresis: 0.8,
  excellent: Object.freeze({ rttMs: 100, lossPct: 2, jitterMs: 20 }),
  good: Object.freeze({ rttMs: 250, lossPct: 8, jitterMs: 50 }),
});

export { GRADES, LINK_PATHS, MILESTONE_KINDS, ICE_FAIL_REASONS } from './codec.js';

/** @param {number} x */
const round1 = (x) => Math.round(x * 10) / 10;

/**
 * Whether srtt / loss / jitter meet a grade's limits, each limit × `factor`.
 * @param {{rttMs: number, lossPct: number, jitterMs: number}} limits
 * @param {number} srtt @param {number} loss @param {number} jitter @param {number} factor
 */
function meets(limits, srtt, loss, jitter, factor) {
  return srtt < limits.rttMs * factor && loss < limits.lossPct * factor && jitter < limits.jitterMs * factor;
}

/**
 * The grade of a link from its estimates (no hysteresis): `excellent`, `good` or `poor`.
 * @param {number} srtt @param {number} loss percent @param {number} jitter
 * @param {typeof QUALITY} [q]
 * @returns {'excellent'|'good'|'poor'}
 */
export function rawGrade(srtt, loss, jitter, q = QUALITY) {
  if (meets(q.excellent, srtt, loss, jitter, 1)) return 'excellent';
  if (meets(q.good, srtt, loss, jitter, 1)) return 'good';
  return 'poor';
}

/**
 * The grade after hysteresis: worse is taken at once; better only as far as the better grade's
 * limits × 0.8 allow (poor → excellent raw, only good's × 0.8 met → good); from `unknown` or
 * `lost` (or nothing) the raw grade as it is.
 * @param {string|null} previous @param {number} srtt @param {number} loss @param {number} jitter
 * @param {typeof QUALITY} [q]
 * @returns {'excellent'|'good'|'poor'}
 */
export function gradeWithHysteresis(previous, srtt, loss, jitter, q = QUALITY) {
  const raw = rawGrade(srtt, loss, jitter, q);
  const rank = { excellent: 1, good: 2, poor: 3 };
  if (!previous || !(previous in rank) || rank[raw] >= rank[previous]) return raw;
  for (const g of /** @type {const} */ (['excellent', 'good'])) {
    if (rank[g] < rank[raw]) continue; // better than raw: not on offer
    if (rank[g] >= rank[previous]) break; // no better than what we have
    if (meets(q[g], srtt, loss, jitter, q.hysteresis)) return g;
  }
  return /** @type {'excellent'|'good'|'poor'} */ (previous);
}

/**
 * A snapshot of one peer's link quality (what `getPeers()` and the `quality` event carry).
 * @typedef {{peer: number, path: string, pathMs: number, rttMs: number|null, lossPct: number,
 *   jitterMs: number|null, fpsIn: number, fpsOut: number, staleDropped: number, grade: string}} QualitySnapshot
 */

/**
 * The per-peer quality tracker (spec Q2), sans IO: every input takes `nowMs` (the shell's clock,
 * or simulated time in tests); no timers. Inputs: `setPath`, `setOnline`, `tick`, `reply`,
 * `frameIn`, `frameOut`, `stale`. Each returns the snapshot when the grade or the path changed
 * (the `quality` event), else null; `tick` returns `{send, event}` where `send` is the id of an
 * echo request to send now (or null). `pollTimeout()` says when to call `tick` next.
 */
export class QualityTracker {
  /**
   * @param {number} peer @param {number} nowMs
   * @param {{path?: string, online?: boolean, q?: typeof QUALITY}} [o]
   */
  constructor(peer, nowMs, o = {}) {
    this.peer = peer;
    this.q = o.q || QUALITY;
    this.createdAt = nowMs;
    this.online = o.online ?? true;
    this.path = 'connecting';
    this.pathSince = nowMs;
    /** the id of the next echo request (counts up from 1 for the tracker's life) */
    this.nextId = 1;
    /** @type {number|null} when the next echo request is due (null: none while connecting) */
    this.nextEchoAt = null;
    /** @type {Map<number, number>} outstanding requests of the current path: id → sent at */
    this.outstanding = new Map();
    /** @type {boolean[]} the last `lossWindow` decided requests, true = lost */
    this.decided = [];
    this.decidedCount = 0;
    /** @type {{srttMs: number, rttvarMs: number}|null} */
    this.rtt = null;
    /** @type {number|null} */
    this.jitter = null;
    /** @type {number|null} */
    this.lastSample = null;
    /** @type {number|null} send time of the first request after the last reply */
    this.unansweredSince = null;
    this.grade = 'unknown';
    this.window = 0;
    this.inCount = 0;
    this.outCount = 0;
    this.fpsIn = 0;
    this.fpsOut = 0;
    this.staleDropped = 0;
    this.lastNow = nowMs;
    if (o.path && o.path !== 'connecting') this._resetPath(o.path, nowMs);
    this.grade = this._grade(nowMs);
  }

  /** Forget the estimates of the old path: a new path starts now, its first echo due at once. */
  _resetPath(path, nowMs) {
    this.path = path;
    this.pathSince = nowMs;
    this._resetEstimator(nowMs);
  }

  /**
   * Forget RTT, jitter, the loss window and the outstanding echoes (replies to them are ignored);
   * the next echo is due at once when echoing. A path change and a peer's going offline or
   * coming back do this (the path's time goes on in the latter).
   */
  _resetEstimator(nowMs) {
    this.outstanding.clear();
    this.decided = [];
    this.decidedCount = 0;
    this.rtt = null;
    this.jitter = null;
    this.lastSample = null;
    this.unansweredSince = null;
    this.nextEchoAt = this.path === 'connecting' ? null : nowMs;
  }

  /** Decide every request unanswered for echoTimeoutMs as lost; roll the frames/s windows. */
  _advance(nowMs) {
    this.lastNow = nowMs;
    for (const [id, sentAt] of this.outstanding) {
      if (nowMs < sentAt + this.q.echoTimeoutMs) continue;
      this.outstanding.delete(id);
      this._decide(true);
    }
    const k = Math.floor((nowMs - this.createdAt) / 1000);
    if (k > this.window) {
      this.fpsIn = k === this.window + 1 ? this.inCount : 0;
      this.fpsOut = k === this.window + 1 ? this.outCount : 0;
      this.inCount = 0;
      this.outCount = 0;
      this.window = k;
    }
  }

  /** @param {boolean} lost */
  _decide(lost) {
    this.decided.push(lost);
    if (this.decided.length > this.q.lossWindow) this.decided.shift();
    this.decidedCount++;
  }

  /** Loss in percent over the window (0 when nothing is decided), unrounded. */
  get lossPct() {
    if (!this.decided.length) return 0;
    return (100 * this.decided.filter(Boolean).length) / this.decided.length;
  }

  /** @param {number} nowMs @returns {string} the grade now, with hysteresis from `this.grade` */
  _grade(nowMs) {
    if (!this.online) return 'lost';
    if (this.unansweredSince !== null && nowMs - this.unansweredSince >= this.q.lostAfterMs) return 'lost';
    if (this.path === 'connecting' || !this.rtt) return 'unknown';
    return gradeWithHysteresis(this.grade, this.rtt.srttMs, this.lossPct, /** @type {number} */ (this.jitter), this.q);
  }

  /** Recompute the grade; the snapshot if it or the path changed, else null. */
  _after(nowMs, pathChanged = false) {
    const g = this._grade(nowMs);
    const changed = g !== this.grade || pathChanged;
    this.grade = g;
    return changed ? this.snapshot(nowMs) : null;
  }

  /** The peer's path changed (connecting, direct, turn, relay). @param {string} path @param {number} nowMs */
  setPath(path, nowMs) {
    this._advance(nowMs);
    if (path === this.path) return this._after(nowMs);
    this._resetPath(path, nowMs);
    return this._after(nowMs, true);
  }

  /** PeerStatus. @param {boolean} online @param {number} nowMs */
  setOnline(online, nowMs) {
    this._advance(nowMs);
    online = !!online;
    // Offline: lost at once, no echoes, the estimates forgotten; back online: measured afresh,
    // the first echo at once (PROTOCOL.md §14).
    if (online !== this.online) this._resetEstimator(nowMs);
    this.online = online;
    return this._after(nowMs);
  }

  /** Whether echo requests go out now (online, on a usable path). */
  get echoing() {
    return this.online && this.path !== 'connecting';
  }

  /**
   * The periodic input: an echo request when one is due (`send`: its id; the shell sends it with
   * `now` as `t`), and the event if the grade changed (a request unanswered too long).
   * @param {number} nowMs @returns {{send: number|null, event: QualitySnapshot|null}}
   */
  tick(nowMs) {
    this._advance(nowMs);
    let send = null;
    if (this.echoing && this.nextEchoAt !== null && nowMs >= this.nextEchoAt) {
      send = this.nextId;
      this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
      this.outstanding.set(send, nowMs);
      if (this.unansweredSince === null) this.unansweredSince = nowMs;
      this.nextEchoAt = nowMs + (this.path === 'relay' ? this.q.echoIntervalRelayMs : this.q.echoIntervalMs);
    }
    return { send, event: this._after(nowMs) };
  }

  /**
   * An echo reply arrived. Counts as heard whatever it answers; an RTT sample and an answered
   * request only for an outstanding id of the current path.
   * @param {number} id @param {number} nowMs
   */
  reply(id, nowMs) {
    this._advance(nowMs);
    this.unansweredSince = null;
    const sentAt = this.outstanding.get(id);
    if (sentAt !== undefined) {
      this.outstanding.delete(id);
      this._decide(false);
      const r = nowMs - sentAt;
      this.rtt = rttEstimate(this.rtt, r);
      this.jitter = this.lastSample === null ? 0 : /** @type {number} */ (this.jitter) + (Math.abs(r - this.lastSample) - /** @type {number} */ (this.jitter)) / 16;
      this.lastSample = r;
    }
    return this._after(nowMs);
  }

  /** A flight frame from this peer (any path). @param {number} nowMs */
  frameIn(nowMs) {
    this._advance(nowMs);
    this.inCount++;
    return this._after(nowMs);
  }

  /** A flight frame to this peer (any path). @param {number} nowMs */
  frameOut(nowMs) {
    this._advance(nowMs);
    this.outCount++;
    return this._after(nowMs);
  }

  /** A flight frame from this peer dropped as not newer. @param {number} nowMs */
  stale(nowMs) {
    this._advance(nowMs);
    this.staleDropped++;
    return this._after(nowMs);
  }

  /**
   * When `tick` is due next: the earliest of the next echo request (while echoing), the next
   * loss decision (oldest outstanding + echoTimeoutMs) and the moment the peer would count as lost
   * (unanswered since + lostAfterMs, while not passed). null: nothing to wait for.
   * @returns {number|null}
   */
  pollTimeout() {
    let t = Infinity;
    if (this.echoing && this.nextEchoAt !== null) t = Math.min(t, this.nextEchoAt);
    for (const sentAt of this.outstanding.values()) t = Math.min(t, sentAt + this.q.echoTimeoutMs);
    if (this.unansweredSince !== null && this.grade !== 'lost') t = Math.min(t, this.unansweredSince + this.q.lostAfterMs);
    return t === Infinity ? null : t;
  }

  /** The snapshot at `nowMs` (rounded as reported). @param {number} nowMs @returns {QualitySnapshot} */
  snapshot(nowMs) {
    if (nowMs > this.lastNow) this._advance(nowMs);
    return {
      peer: this.peer,
      path: this.path,
      pathMs: nowMs - this.pathSince,
      rttMs: this.rtt ? Math.round(this.rtt.srttMs) : null,
      lossPct: round1(this.lossPct),
      jitterMs: this.jitter === null ? null : round1(this.jitter),
      fpsIn: this.fpsIn,
      fpsOut: this.fpsOut,
      staleDropped: this.staleDropped,
      grade: this.grade,
    };
  }

  /** The link as a report carries it (LinkReport): path, grade, RTT and loss buckets. */
  linkReport() {
    return {
      peer: this.peer,
      path: this.path,
      grade: this.grade,
      rttBucket: rttBucket(this.rtt ? Math.round(this.rtt.srttMs) : null),
      lossBucket: lossBucket(this.decided.length ? round1(this.lossPct) : null),
    };
  }
}

// ---------------------------------------------------------------------------
// Quality frames (spec Q1): FF FF FF FF || kind || id u32 LE || t u32 LE, peer to peer
// ---------------------------------------------------------------------------

/** Bytes of a quality frame. */
export const QUALITY_FRAME_BYTES = 13;
export const ECHO_REQUEST = 1;
export const ECHO_REPLY = 2;

/**
 * Whether a flight-path payload is a quality frame (starts FF FF FF FF), valid or not.
 * @param {Uint8Array} b
 */
export function isQualityFrame(b) {
  return b.length >= 4 && b[0] === 0xff && b[1] === 0xff && b[2] === 0xff && b[3] === 0xff;
}

/**
 * A quality frame. @param {number} kind 1 request, 2 reply @param {number} id u32 @param {number} t u32 (mod 2^32)
 * @returns {Uint8Array}
 */
export function encodeQualityFrame(kind, id, t) {
  const out = new Uint8Array(QUALITY_FRAME_BYTES);
  const v = new DataView(out.buffer);
  v.setUint32(0, 0xffffffff, true);
  out[4] = kind;
  v.setUint32(5, id >>> 0, true);
  v.setUint32(9, Math.floor(t) >>> 0, true);
  return out;
}

/**
 * Parse a payload that starts FF FF FF FF: `{kind, id, t}`, or null when it is not exactly 13
 * bytes or its kind is not 1 or 2 (dropped, counted like other bad frames).
 * @param {Uint8Array} b @returns {{kind: number, id: number, t: number}|null}
 */
export function parseQualityFrame(b) {
  if (!isQualityFrame(b) || b.length !== QUALITY_FRAME_BYTES) return null;
  const kind = b[4];
  if (kind !== ECHO_REQUEST && kind !== ECHO_REPLY) return null;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return { kind, id: v.getUint32(5, true), t: v.getUint32(9, true) };
}

// ---------------------------------------------------------------------------
// Reports to the server (spec Q3): buckets and the schedule
// ---------------------------------------------------------------------------

/** rtt_bucket edges (ms): the index of the first edge ≥ rtt, 9 above the last, 255 unknown. */
export const RTT_BUCKET_EDGES_MS = Object.freeze([25, 50, 75, 100, 150, 200, 300, 500, 1000]);
/** loss_bucket edges (%): the index of the first edge ≥ loss, 7 above the last, 255 unknown. */
export const LOSS_BUCKET_EDGES_PCT = Object.freeze([0, 1, 2, 5, 10, 20, 50]);
/** The bucket of an unknown value. */
export const BUCKET_UNKNOWN = 255;

/** @param {readonly number[]} edges @param {number|null} v */
function bucket(edges, v) {
  if (v === null || v === undefined || Number.isNaN(v)) return BUCKET_UNKNOWN;
  const i = edges.findIndex((e) => e >= v);
  return i < 0 ? edges.length : i;
}

/** @param {number|null} rttMs the reported (rounded) RTT, null unknown */
export function rttBucket(rttMs) {
  return bucket(RTT_BUCKET_EDGES_MS, rttMs);
}

/** @param {number|null} lossPct the reported loss, null when no request is decided */
export function lossBucket(lossPct) {
  return bucket(LOSS_BUCKET_EDGES_PCT, lossPct);
}

/** The report schedule's constants. */
export const REPORT = Object.freeze({ intervalMs: 10000, minGapMs: 2000, maxQueued: 16, maxLinks: 64 });

/** Candidate type bits of `candidates`. */
export const CANDIDATE_BITS = Object.freeze({ host: 1, srflx: 2, relay: 4, prflx: 8 });

/**
 * The report schedule's state: when the last report went (-Infinity: none yet), whether a link
 * changed since, the queued milestones and ICE failures (at most 16 each), the candidate types
 * gathered since the last report.
 * @typedef {{lastAt: number, changed: boolean, setup: {kind: string, path: string, ms: number}[],
 *   iceFailures: {reason: string}[], candidates: number}} ReportState
 */

/**
 * The schedule at the Welcome (`nowMs`): the last report counts from there (PROTOCOL.md §14), so
 * what is queued then goes 2 s later, and quiet links are reported 10 s later.
 * @param {number} [nowMs] @returns {ReportState}
 */
export function reportStart(nowMs = -Infinity) {
  return { lastAt: nowMs, changed: false, setup: [], iceFailures: [], candidates: 0 };
}

/**
 * Queue something for the next report: a link's path or grade changed (`change`), a milestone,
 * an ICE failure, a candidate type. Queues hold at most REPORT.maxQueued; more are dropped.
 * @param {ReportState} s
 * @param {{type: 'change'} | {type: 'milestone', kind: string, path: string, ms: number}
 *   | {type: 'ice_failure', reason: string} | {type: 'candidate', candidate: string}} ev
 * @returns {ReportState}
 */
export function reportQueue(s, ev) {
  switch (ev.type) {
    case 'change': return { ...s, changed: true };
    case 'milestone':
      if (s.setup.length >= REPORT.maxQueued) return s;
      return { ...s, setup: [...s.setup, { kind: ev.kind, path: ev.path, ms: Math.max(0, Math.min(0xffffffff, Math.round(ev.ms))) }] };
    case 'ice_failure':
      if (s.iceFailures.length >= REPORT.maxQueued) return s;
      return { ...s, iceFailures: [...s.iceFailures, { reason: ev.reason }] };
    case 'candidate': return { ...s, candidates: s.candidates | (CANDIDATE_BITS[ev.candidate] || 0) };
    default: return s;
  }
}

/**
 * The schedule's rule (spec Q3, the vectors' `report_schedule`): due when there are links and
 * now ≥ last + 10 000, or when a change is pending or something is queued and now ≥ last + 2000.
 * `wakeAtMs`: now when due, else the earliest of those times that applies, null when neither.
 * @param {{nowMs: number, lastReportAtMs: number, hasLinks: boolean, changePending: boolean, queued: boolean}} i
 * @returns {{due: boolean, wakeAtMs: number|null}}
 */
export function reportDue(i) {
  let at = Infinity;
  if (i.hasLinks) at = Math.min(at, i.lastReportAtMs + REPORT.intervalMs);
  if (i.changePending || i.queued) at = Math.min(at, i.lastReportAtMs + REPORT.minGapMs);
  if (at === Infinity) return { due: false, wakeAtMs: null };
  if (i.nowMs >= at) return { due: true, wakeAtMs: i.nowMs };
  return { due: false, wakeAtMs: at };
}

/** Whether anything waits in the queues (milestones, ICE failures). @param {ReportState} s */
function reportQueued(s) {
  return s.setup.length > 0 || s.iceFailures.length > 0;
}

/**
 * When the next report is due (null: none), by reportDue: every REPORT.intervalMs while there is
 * a link; after a change or with something queued, REPORT.minGapMs after the previous one.
 * @param {ReportState} s @param {number} links the links the report would carry
 * @returns {number|null}
 */
export function reportNextAt(s, links) {
  const d = reportDue({ nowMs: -Infinity, lastReportAtMs: s.lastAt, hasLinks: links > 0, changePending: s.changed, queued: reportQueued(s) });
  return d.wakeAtMs;
}

/**
 * Whether a report goes out at `nowMs`; if so, what it carries besides the links (the queues),
 * and the state after it (queues empty, `changed` cleared, `lastAt` now).
 * @param {ReportState} s @param {number} nowMs @param {number} links
 * @returns {{send: boolean, state: ReportState, setup: ReportState['setup'], iceFailures: ReportState['iceFailures'], candidates: number}}
 */
export function reportStep(s, nowMs, links) {
  const d = reportDue({ nowMs, lastReportAtMs: s.lastAt, hasLinks: links > 0, changePending: s.changed, queued: reportQueued(s) });
  if (!d.due) return { send: false, state: s, setup: [], iceFailures: [], candidates: 0 };
  return {
    send: true,
    state: { lastAt: nowMs, changed: false, setup: [], iceFailures: [], candidates: 0 },
    setup: s.setup,
    iceFailures: s.iceFailures,
    candidates: s.candidates,
  };
}

// ---------------------------------------------------------------------------
// Regions (PROTOCOL.md §11 "Regions (version 4)"): which node per region to time, the 1 s
// deadline, the 5-minute cache, and what a CreateSession / JoinSession carries. The shell
// (client.js) does the fetches; everything it decides is here, with the time passed in.
// ---------------------------------------------------------------------------

export const REGIONS = Object.freeze({
  /** all the regions are timed at once, within this of the start; a later answer counts for nothing */
  deadlineMs: 1000,
  /** a measurement (and the node list it came from) is kept this long */
  cacheMs: 5 * 60 * 1000,
  /**
   * timings per node, the best one is the node's RTT: HTTP (the first also opens the connection),
   * or WebTransport handshakes (each a new session)
   */
  tries: 2,
  /** the protocol's bounds on a list (§4): at most 16 entries, names of 1 to 32 `a-z 0-9 -` */
  maxEntries: 16,
  /** how long the node list may take (it is off the critical path, but should not hang around) */
  nodesTimeoutMs: 2000,
});

const REGION_NAME = /^[a-z0-9-]{1,32}$/;

/** The HTTP base (`http(s)://host:port`) of a WebSocket URL (`ws(s)://host:port/ws`); '' if none. */
export function httpOfWsUrl(wsUrl) {
  const m = /^(wss?):\/\/([^/?#]+)/.exec(String(wsUrl || '').trim());
  return m ? `${m[1] === 'wss' ? 'https' : 'http'}://${m[2]}` : '';
}

/**
 * The nodes to time, from a `GET /nodes` answer: one per region, the first listed that has an
 * HTTP address (a node without one is skipped), and none at all unless the list names at least
 * two regions. A region name the server would refuse (§4) is left out, and so are regions past
 * the 16th, so that what is measured can always be sent. `quic` (`host:port`, '' if the node
 * has none or it is malformed) and `certSha256` (hex, null for a CA-signed certificate) say how
 * to reach it by WebTransport (regionProbeKind).
 * @param {any} list the parsed JSON (`{nodes: [{name, region, quic, http, cert_sha256}]}`)
 * @returns {RegionTarget[]}
 */
export function regionTargets(list) {
  const nodes = list && Array.isArray(list.nodes) ? list.nodes : [];
  const regions = new Set();
  for (const n of nodes) if (n && typeof n.region === 'string' && REGION_NAME.test(n.region)) regions.add(n.region);
  if (regions.size < 2) return [];
  const out = [];
  for (const n of nodes) {
    if (!n || typeof n.region !== 'string' || !REGION_NAME.test(n.region)) continue;
    if (out.some((t) => t.region === n.region)) continue;
    const http = String(n.http || '').trim().replace(/\/+$/, '');
    if (!/^https?:\/\/[^/]+$/.test(http)) continue;
    const quic = String(n.quic || '').trim();
    const cert = typeof n.cert_sha256 === 'string' && /^[0-9a-fA-F]{64}$/.test(n.cert_sha256) ? n.cert_sha256.toLowerCase() : null;
    out.push({
      region: n.region, http, name: String(n.name || ''),
      quic: /^(\[[0-9a-fA-F:.]+\]|[^\s/:[\]]+):\d{1,5}$/.test(quic) ? quic : '', certSha256: cert,
    });
    if (out.length === REGIONS.maxEntries) break;
  }
  return out;
}

/**
 * @typedef {{region: string, http: string, name: string, quic: string, certSha256: string|null}} RegionTarget
 *   a node to time: its region, HTTP base, name, and WebTransport address (`host:port`, or '') and pin
 */

/**
 * How to time a node (PROTOCOL.md §11 "Clients measure": a browser times WebTransport or `GET
 * /healthz`): by WebTransport handshakes when this browser has WebTransport and the node a QUIC
 * address, else by HTTP. The shell times HTTP alongside, which counts when no handshake ended in
 * time (UDP blocked: regionResult's fallback).
 * @param {{quic?: string}} target @param {boolean} hasWebTransport
 * @returns {'webtransport'|'http'}
 */
export function regionProbeKind(target, hasWebTransport) {
  return hasWebTransport && !!(target && target.quic) ? 'webtransport' : 'http';
}

/**
 * One WebTransport try's round trip: the time from creating the session to its `ready` holds two of
 * them, the QUIC handshake and the CONNECT request (browsers expose no RTT estimate), so half of
 * it. Comparable with an HTTP try on a warm connection (one round trip).
 * @param {number} readyMs
 */
export function webTransportTryMs(readyMs) {
  return readyMs / 2;
}

/** The key a measurement is cached under: the nodes timed (a node list with the same ones shares it). */
export function regionTargetsKey(targets) {
  return targets.map((t) => `${t.region}=${t.http}`).join(' ');
}

/**
 * A node's RTT from its tries: the best one that ended within the deadline, in whole ms (u32);
 * null if none did.
 * @param {{ms: number, endAtMs: number}[]} tries the timings and when each ended
 * @param {number} startedAtMs when the measurement started
 * @param {number} [deadlineMs]
 */
export function bestRttMs(tries, startedAtMs, deadlineMs = REGIONS.deadlineMs) {
  let best = null;
  for (const t of tries) {
    if (!(t.endAtMs - startedAtMs <= deadlineMs) || !(t.ms >= 0)) continue;
    if (best === null || t.ms < best) best = t.ms;
  }
  return best === null ? null : Math.min(0xffffffff, Math.round(best));
}

/**
 * What a measurement yields: one entry per region whose node answered in time (the others are
 * left out), in the order the node list gave. With `fallbackTries` (HTTP timings taken alongside
 * WebTransport ones), a region's `triesByRegion` count when one of them ended in time, else its
 * fallback ones.
 * @param {{region: string}[]} targets
 * @param {Map<string, {ms: number, endAtMs: number}[]>} triesByRegion
 * @param {number} startedAtMs
 * @param {Map<string, {ms: number, endAtMs: number}[]>|null} [fallbackTries]
 * @returns {{region: string, rttMs: number}[]}
 */
export function regionResult(targets, triesByRegion, startedAtMs, fallbackTries = null) {
  const out = [];
  for (const t of targets) {
    let ms = bestRttMs(triesByRegion.get(t.region) || [], startedAtMs);
    if (ms === null && fallbackTries) ms = bestRttMs(fallbackTries.get(t.region) || [], startedAtMs);
    if (ms !== null) out.push({ region: t.region, rttMs: ms });
  }
  return out;
}

/**
 * @typedef {{base: string, key: string|null, atMs: number, rtts: {region: string, rttMs: number}[]}} RegionCache
 *   a finished measurement: from which server's node list, of which nodes, when it started, what it found
 */

/**
 * Whether a Welcome from the server at `base` (its HTTP base) starts a measurement: not when
 * turned off, not before version 4, not while one runs, and not while the last one (or the last
 * node list fetched from this server) is younger than 5 minutes.
 * @param {{enabled: boolean, version: number, running: boolean, cache: RegionCache|null, base: string, nowMs: number}} s
 */
export function regionsDue(s) {
  if (!s.enabled || s.version < 4 || s.running || !s.base) return false;
  return !(s.cache && s.cache.base === s.base && s.nowMs - s.cache.atMs < REGIONS.cacheMs);
}

/**
 * After the node list came: reuse a fresh measurement of the same nodes (another node of the same
 * cluster lists the same ones), else time them (`probe`), else there is nothing to time (fewer
 * than two regions: an empty result, cached all the same).
 * @param {RegionCache|null} cache @param {{region: string, http: string}[]} targets @param {number} nowMs
 * @returns {'reuse'|'probe'|'none'}
 */
export function regionsAfterList(cache, targets, nowMs) {
  if (targets.length === 0) return 'none';
  if (cache && cache.key === regionTargetsKey(targets) && nowMs - cache.atMs < REGIONS.cacheMs) return 'reuse';
  return 'probe';
}

/**
 * What the next CreateSession / JoinSession carries: the last finished measurement while it is
 * younger than 5 minutes, else nothing (a request never waits for a measurement).
 * @param {RegionCache|null} cache @param {number} nowMs
 * @returns {{region: string, rttMs: number}[]}
 */
export function regionRttsToSend(cache, nowMs) {
  if (!cache || !(nowMs - cache.atMs < REGIONS.cacheMs)) return [];
  return cache.rtts.map((e) => ({ ...e }));
}

// ---------------------------------------------------------------------------
// Moving with the session (PROTOCOL.md §11 "Moving a session (version 5)", §12 rule 10;
// tested in tests/browser/move.test.mjs and the `move` vectors)
// ---------------------------------------------------------------------------

/** The overlap's cap: the old connection is closed (code 999) this long after the redirect at the latest. */
export const MOVE_OLD_CLOSE_AFTER_MS = 10000;

/** The first protocol version whose clients follow a move make-before-break. */
export const MOVE_MIN_VERSION = 5;

/**
 * @typedef {'settled'|'opening'|'overlap'|'old_only'|'new_only_opening'} MovePhase
 * @typedef {{phase: MovePhase, redirectAtMs: number|null}} MoveState
 * @typedef {'redirect'|'new_welcome'|'new_failed'|'new_closed'|'old_closed'|'tick'} MoveEventKind
 * @typedef {{event: MoveEventKind, on?: 'current'|'old'|'new'|null, reason?: string|null, unasked?: boolean|null,
 *   inSession?: boolean|null, version?: number|null, resumed?: boolean|null}} MoveEvent
 * @typedef {'none'|'not_a_move'|'open_new'|'ignore'|'close_old'|'send_on_both'|'use_new'|'reconnect'} MoveAction
 * @typedef {{state: MoveState, action: MoveAction, phase: MovePhase, sendOn: string[], takeFrom: string[],
 *   controlOn: 'current'|'new'|null, wakeAtMs: number|null}} MoveDecision
 */

/** The machine before any move (and after one): one connection, `current`. @returns {MoveState} */
export function moveStart() {
  return { phase: 'settled', redirectAtMs: null };
}

/**
 * Where relay frames go and come from, where control messages go, and when to tick, in a phase
 * (rule 10): settled on `current`; opening and old_only relay on `old`; overlap on both;
 * new_only_opening nowhere. Control goes on `new` from the redirect on (it waits for its
 * Welcome), nowhere in old_only (it waits for the reconnection).
 * @param {MoveState} s
 */
export function moveRoutes(s) {
  switch (s.phase) {
    case 'opening': return { sendOn: ['old'], takeFrom: ['old'], controlOn: /** @type {const} */ ('new'), wakeAtMs: null };
    case 'overlap': return {
      sendOn: ['old', 'new'], takeFrom: ['old', 'new'], controlOn: /** @type {const} */ ('new'),
      wakeAtMs: /** @type {number} */ (s.redirectAtMs) + MOVE_OLD_CLOSE_AFTER_MS,
    };
    // A silent old node must not hold the client: the same 10 s cap as the overlap.
    case 'old_only': return { sendOn: ['old'], takeFrom: ['old'], controlOn: null, wakeAtMs: /** @type {number} */ (s.redirectAtMs) + MOVE_OLD_CLOSE_AFTER_MS };
    case 'new_only_opening': return { sendOn: [], takeFrom: [], controlOn: /** @type {const} */ ('new'), wakeAtMs: null };
    default: return { sendOn: ['current'], takeFrom: ['current'], controlOn: /** @type {const} */ ('current'), wakeAtMs: null };
  }
}

/**
 * Whether a Redirect starts a move (rule 10): reason Placement, unasked, in a session, on a
 * connection whose version is 5 or later. Anything else is followed as before (rules 4 and 5).
 * @param {MoveEvent} ev
 */
export function redirectIsMove(ev) {
  return String(ev.reason || '').toLowerCase() === 'placement' && !!ev.unasked && !!ev.inSession
    && Number(ev.version) >= MOVE_MIN_VERSION;
}

/**
 * One step of the move machine (rule 10, the table of PROTOCOL.md §12): an event in, at `nowMs`;
 * the action for the shell out, with the phase after it and its routes (moveRoutes). Every event
 * the table does not name gives `none` and changes nothing.
 * @param {MoveState} s @param {MoveEvent} ev @param {number} nowMs
 * @returns {MoveDecision}
 */
export function moveStep(s, ev, nowMs) {
  /** @type {MoveAction} */
  let action = 'none';
  let next = s;
  const to = (/** @type {MovePhase} */ phase, redirectAtMs = s.redirectAtMs) => ({ phase, redirectAtMs: phase === 'settled' ? null : redirectAtMs });
  const p = s.phase;
  switch (ev.event) {
    case 'redirect':
      if (p === 'settled') {
        if (redirectIsMove(ev)) {
          action = 'open_new';
          next = to('opening', nowMs);
        } else action = 'not_a_move';
      } else if (ev.on === 'old' && (p === 'opening' || p === 'overlap' || p === 'old_only')) {
        action = 'ignore';
      } else if (ev.on === 'new' && (p === 'opening' || p === 'overlap' || p === 'new_only_opening')) {
        action = 'close_old';
        next = to('settled');
      }
      break;
    case 'new_welcome':
      if (p === 'opening') {
        if (ev.resumed) {
          action = 'send_on_both';
          next = to('overlap');
        } else {
          action = 'close_old';
          next = to('settled');
        }
      } else if (p === 'new_only_opening') {
        action = 'use_new';
        next = to('settled');
      }
      break;
    case 'new_failed':
      if (p === 'opening') next = to('old_only');
      else if (p === 'new_only_opening') {
        action = 'reconnect';
        next = to('settled');
      }
      break;
    case 'new_closed':
      if (p === 'overlap') next = to('old_only');
      break;
    case 'old_closed':
      if (p === 'opening') next = to('new_only_opening');
      else if (p === 'overlap') {
        action = 'use_new';
        next = to('settled');
      } else if (p === 'old_only') {
        action = 'reconnect';
        next = to('settled');
      }
      break;
    case 'tick':
      if ((p === 'overlap' || p === 'old_only') && nowMs >= /** @type {number} */ (s.redirectAtMs) + MOVE_OLD_CLOSE_AFTER_MS) {
        // Overlap: close the old one, the new one carries on. Old only: close it, reconnect.
        action = p === 'overlap' ? 'close_old' : 'reconnect';
        next = to('settled');
      }
      break;
  }
  return { state: next, action, phase: next.phase, ...moveRoutes(next) };
}
