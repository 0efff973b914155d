// FlightSim P2P browser client: the decisions, sans IO.
//
// Every rule of the client's behaviour that does not need the network lives here as a pure
// function: the reconnect schedule and when to give up, what a close code or a server error
// means, redirects and node rotation, liveness, attempt and request deadlines, the
// QUIC/WebSocket race, the direct/TURN/relay path of a peer. Time and randomness are inputs
// (`nowMs`, `random`): no timers, no clock, no RTCPeerConnection, no WebSocket here, so the
// rules run under node with simulated time (tests/browser/core.test.mjs). The shell
// (client.js, mesh.js, transports.js) does the I/O and asks these functions what to do.

import { WEBTRANSPORT_PATH, errorName, WEBSOCKET_PATH } from './codec.js';

// ---------------------------------------------------------------------------
// Reconnecting: pure decisions (no clock, no I/O; tested in tests/browser/codec.test.mjs)
// ---------------------------------------------------------------------------

/**
 * Delays before reconnect attempts 0, 1, 2, 3 and after: the first attempt at once, then
 * 250 ms, 500 ms, and every second at most, so that the connection is back within about a
 * second of the network's return (PROTOCOL.md §4: the seat is kept for the resume grace).
 */
export const RECONNECT_BACKOFF_MS = Object.freeze([0, 250, 500, 1000]);

/**
 * Close code of a connection this client abandons in order to resume on a new one. It is
 * not 0 (WebSocket: not 1000), which would leave the session for good (PROTOCOL.md §1, §10);
 * any other code keeps the seat for the resume grace. (WebSocket: 4000 + 999 = 4999.)
 */
export const ABANDON_CLOSE_CODE = 999;

/**
 * Delay before reconnect attempt `attempt` (0-based), with jitter: a value in
 * [0.75, 1] × the schedule's delay, never above it, so that many clients cut at
 * once do not come back in lockstep.
 * @param {number} attempt
 * @param {() => number} [random] in [0, 1)
 */
export function backoffDelayMs(attempt, random = Math.random) {
  if (!(attempt > 0)) return 0;
  const base = RECONNECT_BACKOFF_MS[Math.min(attempt, RECONNECT_BACKOFF_MS.length - 1)];
  return Math.round(base * (0.75 + 0.25 * Math.min(1, Math.max(0, random()))));
}

/**
 * What the end of a connection means.
 *
 * - `close`: for good, as the app or the server wanted: reconnecting is off, the client
 *   never had a Welcome (nothing to resume), the server closed with a fatal error
 *   (PROTOCOL.md §6: replaced, server_full, bad_message, ...) or normally (code 0).
 * - `reconnect` after `delayMs`: the connection just ended (code null: network, proxy,
 *   idle timeout, no answer to pings), or the server announced `GoingAway`
 *   (its `shutting_down` close then means "come back after reconnectAfterMs").
 *
 * @param {{code: number|null, fatalCode?: number|null, goingAwayInMs?: number|null,
 *   enabled?: boolean, welcomed?: boolean}} c
 *   code: the close code (0 normal, a §6 code, null when the connection just ended);
 *   fatalCode: code of a fatal `Error` the server sent before closing;
 *   goingAwayInMs: time left until the `GoingAway` delay is over (null: no GoingAway)
 * @returns {{action: 'reconnect', delayMs: number} | {action: 'close', why: string}}
 */
export function closeDisposition(c) {
  const { code, fatalCode = null, goingAwayInMs = null, enabled = true, welcomed = true } = c;
  if (!enabled) return { action: 'close', why: 'reconnecting is off' };
  if (!welcomed) return { action: 'close', why: 'no Welcome yet: nothing to resume' };
  if (goingAwayInMs !== null && goingAwayInMs !== undefined) {
    return { action: 'reconnect', delayMs: Math.max(0, Math.round(goingAwayInMs)) };
  }
  if (fatalCode) return { action: 'close', why: `fatal server error ${errorName(fatalCode)}` };
  if (code === null || code === undefined) return { action: 'reconnect', delayMs: 0 };
  if (code === 0) return { action: 'close', why: 'closed normally by the server' };
  return { action: 'close', why: `closed by the server with ${errorName(code)}` };
}

/**
 * The next step of a reconnection that has made `attempt` attempts so far and began
 * `elapsedMs` ago: wait `delayMs` then try again, or give up once `giveUpMs` would pass
 * (0 = never give up).
 * @param {{attempt: number, elapsedMs: number, giveUpMs: number, random?: () => number}} s
 * @returns {{action: 'wait', delayMs: number} | {action: 'giveup'}}
 */
export function reconnectStep(s) {
  const delayMs = backoffDelayMs(s.attempt, s.random);
  if (s.giveUpMs > 0 && s.elapsedMs + delayMs >= s.giveUpMs) return { action: 'giveup' };
  return { action: 'wait', delayMs };
}

/**
 * How long one reconnect attempt gets (transport up, then the Welcome) before the next
 * one starts: at least 3 s (a busy machine), 2 s + 8 server round trips on a slow path,
 * never more than the connect timeout.
 * @param {number|null} rttMs last server round trip, if known
 * @param {number} connectTimeoutMs
 */
export function attemptTimeoutMs(rttMs, connectTimeoutMs) {
  const want = Math.max(3000, 2000 + 8 * (rttMs && rttMs > 0 ? rttMs : 0));
  return Math.round(connectTimeoutMs > 0 ? Math.min(connectTimeoutMs, want) : want);
}

/**
 * Whether the server has gone silent: a Ping went out at `awaitingSinceMs` (0 = nothing
 * outstanding) and nothing at all (no Pong, no other message, no relay frame) came back
 * within `liveTimeoutMs` (0 = never decide so). Timed from the ping, not from the last
 * message, so that a throttled background tab (timers once a minute) is not taken for dead.
 */
export function serverSilent(awaitingSinceMs, nowMs, liveTimeoutMs) {
  return liveTimeoutMs > 0 && awaitingSinceMs > 0 && nowMs - awaitingSinceMs > liveTimeoutMs;
}

// ---------------------------------------------------------------------------
// Cluster mode: pure decisions (PROTOCOL.md §11; tested in tests/browser/cluster.test.mjs)
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
 * Where the next reconnect attempt goes after the current server could not be reached: a redirect
 * target is dropped (back to the configured list where it left off), else the next configured
 * server, round robin.
 * @param {{index: number, target: any}} at @param {number} count configured servers (main + fallbacks)
 * @returns {{index: number, target: any}}
 */
export function rotateServer(at, count) {
  if (at.target) return { index: at.index, target: null };
  return { index: (at.index + 1) % Math.max(1, count), target: null };
}

/** Errors that answer a CreateSession / JoinSession (PROTOCOL.md §6). */
export const SESSION_REQUEST_ERRORS = new Set([9, 10, 11, 12, 13, 14, 16, 17, 22]);


/** Values of the `transport` option besides a factory. */
export const TRANSPORT_CHOICES = Object.freeze(['auto', 'webtransport', 'websocket']);
