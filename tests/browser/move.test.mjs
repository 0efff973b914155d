// Rule 10 (PROTOCOL.md §11 "Moving a session (version 5)", §12): the browser client's move
// machine (client/web/core.js moveStep), pure, under node with injected time; and the envelope
// and echo rules that keep the overlap's duplicates from the application (flight.js SeqFilter,
// core.js QualityTracker); then the shell (client.js) over fake transports: what goes on which
// connection, the failure rows, the 10 s cap. Against real servers and Chromium: move-e2e.test.mjs.
//   node --test tests/browser/move.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  MOVE_OLD_CLOSE_AFTER_MS, MOVE_MIN_VERSION, moveStart, moveStep, moveRoutes, redirectIsMove, QualityTracker,
  ECHO_REQUEST, encodeQualityFrame, parseQualityFrame,
} from '../../client/web/core.js';
import { SeqFilter, wrapFlight, unwrapFlight } from '../../client/web/flight.js';
import { PROTOCOL_VERSION } from '../../client/web/codec.js';

const move = { event: 'redirect', on: 'current', reason: 'Placement', unasked: true, inSession: true, version: 5, resumed: null };

/** Run events through the machine: [[atMs, event], ...] → the decisions. */
function run(steps, s = moveStart()) {
  const out = [];
  for (const [at, ev] of steps) {
    const d = moveStep(s, ev, at);
    out.push(d);
    s = d.state;
  }
  return out;
}

const SETTLED = { sendOn: ['current'], takeFrom: ['current'], controlOn: 'current', wakeAtMs: null };

test('move: constants; the browser client says version 5, the first that moves', () => {
  assert.equal(MOVE_OLD_CLOSE_AFTER_MS, 10000);
  assert.equal(MOVE_MIN_VERSION, 5);
  assert.equal(PROTOCOL_VERSION, 5);
  assert.deepEqual(moveStart(), { phase: 'settled', redirectAtMs: null });
  assert.deepEqual(moveRoutes(moveStart()), SETTLED);
});

test('move: only an unasked Placement redirect in a session on a v5 connection opens a new connection', () => {
  assert.ok(redirectIsMove(move));
  assert.ok(redirectIsMove({ ...move, reason: 'placement', version: 6 }), 'vector spelling, later versions');
  for (const [what, ev] of [
    ['Draining', { ...move, reason: 'Draining' }],
    ['Moved', { ...move, reason: 'Moved' }],
    ['Session', { ...move, reason: 'Session' }],
    ['asked (the answer to a create)', { ...move, unasked: false }],
    ['in no session', { ...move, inSession: false }],
    ['a v4 connection', { ...move, version: 4 }],
  ]) {
    const [d] = run([[100, ev]]);
    assert.equal(d.action, 'not_a_move', what);
    assert.equal(d.phase, 'settled', what);
    assert.deepEqual({ sendOn: d.sendOn, takeFrom: d.takeFrom, controlOn: d.controlOn, wakeAtMs: d.wakeAtMs }, SETTLED, what);
  }
  const [d] = run([[100, move]]);
  assert.deepEqual(d, {
    state: { phase: 'opening', redirectAtMs: 100 }, action: 'open_new', phase: 'opening',
    sendOn: ['old'], takeFrom: ['old'], controlOn: 'new', wakeAtMs: null,
  });
});

test('move: the usual path: opening, resumed → overlap on both, the old one closes → settled on the new one', () => {
  const [, b, c] = run([
    [1000, move],
    [1040, { event: 'new_welcome', on: 'new', resumed: true }],
    [2500, { event: 'old_closed', on: 'old' }],
  ]);
  assert.deepEqual({ a: b.action, p: b.phase, s: b.sendOn, t: b.takeFrom, c: b.controlOn, w: b.wakeAtMs },
    { a: 'send_on_both', p: 'overlap', s: ['old', 'new'], t: ['old', 'new'], c: 'new', w: 11000 });
  assert.deepEqual({ a: c.action, p: c.phase, ...SETTLED },
    { a: 'use_new', p: 'settled', sendOn: c.sendOn, takeFrom: c.takeFrom, controlOn: c.controlOn, wakeAtMs: c.wakeAtMs });
  assert.deepEqual(c.state, moveStart());
});

test('move: the 10 s cap closes the old connection in the overlap, not a millisecond early', () => {
  const [, , early, due] = run([
    [1000, move],
    [1040, { event: 'new_welcome', on: 'new', resumed: true }],
    [10999, { event: 'tick', on: null }],
    [11000, { event: 'tick', on: null }],
  ]);
  assert.equal(early.action, 'none');
  assert.equal(early.phase, 'overlap');
  assert.equal(early.wakeAtMs, 11000);
  assert.equal(due.action, 'close_old');
  assert.equal(due.phase, 'settled');
  assert.equal(due.wakeAtMs, null);
  // A tick elsewhere does nothing (old_only has its own cap: the failures test).
  for (const phase of ['settled', 'opening', 'new_only_opening']) {
    const d = moveStep({ phase, redirectAtMs: phase === 'settled' ? null : 0 }, { event: 'tick' }, 1e9);
    assert.equal(d.action, 'none', phase);
    assert.equal(d.phase, phase, phase);
  }
});

test('move: what the old connection says is ignored; a redirect on the new one ends the move there', () => {
  for (const phase of ['opening', 'overlap', 'old_only']) {
    const s = { phase, redirectAtMs: 0 };
    const d = moveStep(s, { ...move, on: 'old', reason: 'Draining' }, 5);
    assert.equal(d.action, 'ignore', phase);
    assert.equal(d.phase, phase, phase);
    assert.deepEqual(d.state, s, phase);
  }
  for (const phase of ['opening', 'overlap', 'new_only_opening']) {
    const d = moveStep({ phase, redirectAtMs: 0 }, { ...move, on: 'new', reason: 'Session', unasked: false }, 5);
    assert.equal(d.action, 'close_old', phase);
    assert.equal(d.phase, 'settled', phase);
    assert.equal(d.controlOn, 'current', phase);
  }
  // not in the table: none, unchanged
  assert.equal(moveStep({ phase: 'old_only', redirectAtMs: 0 }, { ...move, on: 'new' }, 5).action, 'none');
  assert.equal(moveStep({ phase: 'new_only_opening', redirectAtMs: 0 }, { ...move, on: 'old' }, 5).action, 'none');
});

test('move: failures: the new one fails → old only, then reconnect when the old one closes; the old one goes first → wait, then use or reconnect', () => {
  let r = run([[0, move], [3000, { event: 'new_failed', on: 'new' }], [5000, { event: 'old_closed', on: 'old' }]]);
  assert.deepEqual(r.map((d) => [d.action, d.phase]), [['open_new', 'opening'], ['none', 'old_only'], ['reconnect', 'settled']]);
  assert.deepEqual([r[1].sendOn, r[1].takeFrom, r[1].controlOn, r[1].wakeAtMs], [['old'], ['old'], null, 10000]);
  // The old node goes silent instead: 10 s after the redirect the client closes it and reconnects.
  r = run([[0, move], [3000, { event: 'new_failed', on: 'new' }], [9999, { event: 'tick', on: null }], [10000, { event: 'tick', on: null }]]);
  assert.deepEqual(r.slice(1).map((d) => [d.action, d.phase]), [['none', 'old_only'], ['none', 'old_only'], ['reconnect', 'settled']]);

  r = run([[0, move], [10, { event: 'old_closed', on: 'old' }], [50, { event: 'new_welcome', on: 'new', resumed: true }]]);
  assert.deepEqual(r.map((d) => [d.action, d.phase]), [['open_new', 'opening'], ['none', 'new_only_opening'], ['use_new', 'settled']]);
  assert.deepEqual([r[1].sendOn, r[1].takeFrom, r[1].controlOn], [[], [], 'new']);
  // not resumed there: use it all the same (the shell rejoins on it, rule 4)
  r = run([[0, move], [10, { event: 'old_closed', on: 'old' }], [50, { event: 'new_welcome', on: 'new', resumed: false }]]);
  assert.equal(r[2].action, 'use_new');
  r = run([[0, move], [10, { event: 'old_closed', on: 'old' }], [50, { event: 'new_failed', on: 'new' }]]);
  assert.deepEqual([r[2].action, r[2].phase], ['reconnect', 'settled']);

  // opening, not resumed: drop the old one, rejoin on the new one
  r = run([[0, move], [50, { event: 'new_welcome', on: 'new', resumed: false }]]);
  assert.deepEqual([r[1].action, r[1].phase], ['close_old', 'settled']);
  // overlap, the new one closes: back to the old one alone
  r = run([[0, move], [50, { event: 'new_welcome', on: 'new', resumed: true }], [60, { event: 'new_closed', on: 'new' }],
    [1500, { event: 'old_closed', on: 'old' }]]);
  assert.deepEqual(r.slice(2).map((d) => [d.action, d.phase]), [['none', 'old_only'], ['reconnect', 'settled']]);
});

test('move: events the table does not name change nothing', () => {
  const phases = ['settled', 'opening', 'overlap', 'old_only', 'new_only_opening'];
  const named = new Set([
    'opening/new_welcome', 'opening/new_failed', 'opening/old_closed', 'new_only_opening/new_welcome',
    'new_only_opening/new_failed', 'overlap/old_closed', 'overlap/new_closed', 'old_only/old_closed',
  ]);
  for (const phase of phases) {
    for (const event of ['new_welcome', 'new_failed', 'new_closed', 'old_closed']) {
      if (named.has(`${phase}/${event}`)) continue;
      const s = { phase, redirectAtMs: phase === 'settled' ? null : 7 };
      const d = moveStep(s, { event, on: null, resumed: true }, 9);
      assert.equal(d.action, 'none', `${phase}/${event}`);
      assert.deepEqual(d.state, s, `${phase}/${event}`);
    }
  }
});

test('move: a frame that came on both connections reaches the application once (the envelope), a late one never', () => {
  const f = new SeqFilter();
  const delivered = [];
  // seq 1..6 sent on both; the new path joins at 3 and runs ahead by one frame at 5
  const arrivals = [1, 2, 3, 3, 4, 4, 5, 6, 5, 6];
  for (const seq of arrivals) {
    const u = unwrapFlight(wrapFlight(seq, new Uint8Array([seq])));
    if (f.accept(7, u.seq)) delivered.push(u.payload[0]);
  }
  assert.deepEqual(delivered, [1, 2, 3, 4, 5, 6]);
  assert.equal(f.dropped, 4);
});

test('move: an echo answered on both connections is one RTT sample, and no loss', () => {
  const q = new QualityTracker(7, 0);
  q.setPath('relay', 0);
  let id = null;
  for (let t = 0; t <= 2000 && id === null; t += 50) id = q.tick(t).send;
  assert.notEqual(id, null, 'an echo request went out');
  const req = parseQualityFrame(encodeQualityFrame(ECHO_REQUEST, id, 0));
  assert.equal(req.id, id);
  const sentAt = [...q.outstanding.values()][0];
  q.reply(id, sentAt + 40); // via the new connection
  const after1 = q.snapshot(sentAt + 40);
  q.reply(id, sentAt + 90); // the same request answered via the old one
  const after2 = q.snapshot(sentAt + 90);
  assert.equal(after1.rttMs, 40);
  assert.equal(after2.rttMs, 40, 'the second answer is no sample');
  assert.equal(after2.lossPct, after1.lossPct);
});

// --- the shell (client.js) over fake transports: what goes where during a move ------------------

import { FlightSimP2P, encodeServerMsg, encodeRelay, decodeRelay, FspError, ABANDON_CLOSE_CODE } from '../../client/web/fsp2p.js';
import { decodeSent } from './fakes.mjs';

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));
const LIMITS = {
  maxFrameBytes: 16384, maxRelayPayload: 1100, relayDatagramsPerSec: 500, relayBytesPerSec: 262144,
  signalsPerSec: 0, maxPeersPerSession: 16, resumeGraceMs: 15000,
};
const TOKEN = Uint8Array.from({ length: 16 }, (_, i) => i + 1);
const welcome = (peerId, resumed = false, version = 5) => ({
  type: 'Welcome', version, peerId, resumeToken: TOKEN, resumed, iceServers: [], limits: LIMITS, serverTimeMs: 0n,
});
const joined = (peers) => ({
  type: 'SessionJoined',
  session: { code: 'ABCDEF', host: peers[0], maxPeers: 16, idleTtlSecs: 60, peers: peers.map((id) => ({ id, name: `p${id}`, client: 'Browser' })) },
});
const NODE_US = { name: 'us', quic: '10.0.0.2:4433', http: 'http://10.0.0.2:8080', certSha256: null };
const placement = { type: 'Redirect', reason: 'Placement', node: NODE_US };

/** A client (peer 4) in session ABCDEF with peer 1, on fake transports, at Welcome `version`. */
async function movingClient(version = 5) {
  const fakes = [];
  const c = new FlightSimP2P({
    host: '127.0.0.1', certHash: 'aa'.repeat(32), forceRelay: true, pingIntervalMs: 0, statsIntervalMs: 0, fastConnect: false,
    qualityEchoes: false, telemetry: false, measureRegions: false,
    transport: (opts) => {
      let settle;
      const f = {
        kind: 'websocket', url: opts.wsUrl, opts, onControl: null, onRelay: null, onProtocolError: null, onClosed: null,
        closed: null, sent: [], relayed: [],
        open() { return new Promise((resolve, reject) => { settle = { resolve, reject }; }); },
        succeed() { settle.resolve(); },
        fail(msg) { settle.reject(new FspError(0, 'connect_failed', msg)); },
        close(code, reason) { f.closed = { code, reason }; if (settle) settle.reject(new FspError(0, 'closed', 'aborted')); },
        sendControl(b) { f.sent.push(b); return Promise.resolve(); },
        sendRelay(fr) { f.relayed.push(fr); return true; },
        server(m) { f.onControl(encodeServerMsg(m)); },
        relayIn(from, seq) { f.onRelay(encodeRelay(from, wrapFlight(seq, new Uint8Array([seq & 0xff])))); },
        end(code) { f.onClosed({ code, reason: 'closed by the server' }); },
      };
      fakes.push(f);
      return f;
    },
  });
  const events = [];
  for (const type of ['move', 'moved', 'reconnecting', 'reconnected', 'close', 'error']) {
    c.addEventListener(type, (e) => events.push([type, e.detail]));
  }
  const got = [];
  c.onmessage = (from, data) => got.push([from, data[0]]);
  const p = c.joinSession('ABCDEF');
  await tick();
  fakes[0].succeed();
  await tick();
  fakes[0].server(welcome(4, false, version));
  fakes[0].server(joined([1, 4]));
  await p;
  return { c, fakes, events, got };
}
const types = (f) => f.sent.map((b) => decodeSent(b).type);
const relayedSeqs = (f) => f.relayed.map((fr) => unwrapFlight(decodeRelay(fr).payload).seq);

test('shell: a move relays on both connections, control on the new one only, the old one\'s words ignored, no frame delivered twice', async () => {
  const { c, fakes, events, got } = await movingClient();
  const [old] = fakes;
  c.send(0, new Uint8Array([1]));
  fakes[0].server(placement);
  assert.equal(c.state, 'connected', 'no reconnection');
  assert.equal(old.closed, null, 'the old connection is kept');
  await tick(5);
  assert.equal(fakes.length, 2);
  const neu = fakes[1];
  assert.equal(neu.opts.wsUrl, 'ws://10.0.0.2:8080/ws');
  // opening: relay on the old one only; control waits for the new one's Welcome
  c.send(0, new Uint8Array([2]));
  c.sendApp(1, new Uint8Array([9]));
  neu.succeed();
  await tick();
  assert.deepEqual(types(neu), ['Hello']);
  const hello = decodeSent(neu.sent[0]);
  assert.equal(hello.version, 5);
  assert.deepEqual([...hello.resumeToken], [...TOKEN]);
  old.relayIn(1, 10);
  neu.relayIn(1, 10); // not taken before the new one's Welcome
  // the old one's control is ignored, a Draining redirect there included
  old.server({ type: 'GoingAway', reconnectAfterMs: 0, message: 'stopping' });
  old.server({ type: 'Redirect', reason: 'Draining', node: NODE_US });
  old.server({ type: 'PeerLeft', peer: 1, reason: 'Left' });
  neu.server(welcome(4, true));
  neu.server(joined([1, 4]));
  // the peer arrives on the new node with us: its counter goes on, the filter is kept
  neu.server({ type: 'PeerStatus', peer: 1, online: true });
  await tick();
  assert.deepEqual(types(neu), ['Hello', 'Signal'], 'the control that waited goes on the new one');
  assert.equal(types(old).filter((t) => t !== 'Hello' && t !== 'JoinSession').length, 0, 'no control on the old one');
  c.send(0, new Uint8Array([3]));
  assert.deepEqual(relayedSeqs(old), [1, 2, 3]);
  assert.deepEqual(relayedSeqs(neu), [3]);
  for (const seq of [11, 12]) { old.relayIn(1, seq); neu.relayIn(1, seq); }
  neu.relayIn(1, 13);
  old.relayIn(1, 13);
  old.relayIn(1, 10); // late
  assert.deepEqual(got, [[1, 10], [1, 11], [1, 12], [1, 13]]);
  assert.equal(c.stats.duplicatesDropped, 3);
  assert.equal(c.session.peers.length, 2, 'the old one\'s PeerLeft changed nothing');
  // eu ends the overlap: carry on on the new one, no reconnection
  old.end(20);
  c.send(0, new Uint8Array([4]));
  assert.deepEqual(relayedSeqs(old), [1, 2, 3]);
  assert.deepEqual(relayedSeqs(neu), [3, 4]);
  assert.equal(c.movedTo, 'us');
  assert.equal(c.moves, 1);
  assert.deepEqual(events.filter((e) => e[0] === 'move').map((e) => [e[1].event, e[1].action, e[1].phase, e[1].code]), [
    ['redirect', 'open_new', 'opening', null], ['new_welcome', 'send_on_both', 'overlap', null], ['old_closed', 'use_new', 'settled', 20],
  ]);
  assert.ok(!events.some((e) => ['reconnecting', 'close', 'error'].includes(e[0])));
  assert.equal(fakes.length, 2);
  c.close();
});

test('shell: the new connection fails → stay on the old one until it closes, then reconnect (resume token, first to the named node)', async () => {
  const { c, fakes, events, got } = await movingClient();
  const [old] = fakes;
  old.server(placement);
  await tick(5);
  fakes[1].fail('refused');
  await tick();
  assert.equal(c.state, 'connected');
  c.send(0, new Uint8Array([1]));
  assert.deepEqual(relayedSeqs(old), [1], 'old only');
  old.relayIn(1, 5);
  assert.deepEqual(got, [[1, 5]]);
  old.end(20);
  assert.equal(c.state, 'reconnecting');
  await tick(5);
  assert.equal(fakes.length, 3);
  assert.equal(fakes[2].opts.wsUrl, 'ws://10.0.0.2:8080/ws', 'the first attempt goes to the named node');
  fakes[2].succeed();
  await tick();
  assert.deepEqual([...decodeSent(fakes[2].sent[0]).resumeToken], [...TOKEN]);
  fakes[2].server(welcome(4, true));
  assert.equal(c.state, 'connected');
  assert.deepEqual(events.filter((e) => e[0] === 'move').map((e) => [e[1].action, e[1].phase]),
    [['open_new', 'opening'], ['none', 'old_only'], ['reconnect', 'settled']]);
  assert.ok(events.some((e) => e[0] === 'reconnected' && e[1].resumed));
  c.close();
});

test('shell: the old one closes first → nothing relayed until the new one\'s Welcome; not resumed there → rejoin by code', async () => {
  const { c, fakes, events } = await movingClient();
  const [old] = fakes;
  old.server(placement);
  await tick(5);
  old.end(20);
  assert.equal(c.state, 'connected', 'not a lost connection');
  assert.equal(c.send(0, new Uint8Array([1])), false, 'nowhere to relay');
  fakes[1].succeed();
  await tick();
  fakes[1].server(welcome(9, false));
  await tick();
  assert.deepEqual(types(fakes[1]), ['Hello', 'JoinSession'], 'rejoined by code on the new node');
  assert.deepEqual(events.filter((e) => e[0] === 'move').map((e) => [e[1].action, e[1].phase]),
    [['open_new', 'opening'], ['none', 'new_only_opening'], ['use_new', 'settled']]);
  c.close();
});

test('shell: a v4 connection, a Draining redirect or a redirect with no session is followed as before (no move)', async () => {
  const { c, fakes, events } = await movingClient(4);
  fakes[0].server(placement);
  assert.equal(c.state, 'reconnecting', 'v4: rule 4 as before');
  assert.equal(fakes[0].closed.code, ABANDON_CLOSE_CODE);
  assert.ok(!events.some((e) => e[0] === 'move'));
  c.close();
  const d = await movingClient(5);
  d.fakes[0].server({ type: 'Redirect', reason: 'Draining', node: NODE_US });
  assert.equal(d.c.state, 'reconnecting');
  assert.ok(!d.events.some((e) => e[0] === 'move'));
  d.c.close();
});

test('shell: the overlap\'s cap closes the old connection with 999 after 10 s (real time)', { timeout: 30000 }, async () => {
  const { c, fakes, events } = await movingClient();
  fakes[0].server(placement);
  await tick(5);
  fakes[1].succeed();
  await tick();
  fakes[1].server(welcome(4, true));
  await tick(MOVE_OLD_CLOSE_AFTER_MS - 1000);
  assert.equal(fakes[0].closed, null, 'still in the overlap');
  await tick(1500);
  assert.equal(fakes[0].closed && fakes[0].closed.code, ABANDON_CLOSE_CODE);
  assert.deepEqual(events.filter((e) => e[0] === 'move').map((e) => [e[1].event, e[1].action]).at(-1), ['tick', 'close_old']);
  assert.equal(c.moves, 1);
  c.close();
});
