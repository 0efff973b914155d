// Rule 10 (PROTOCOL.md §11 "Moving a session (version 5)", §12): the browser client's move
// machine (client/web/core.js moveStep), pure, under node with injected time; and the envelope
// and echo rules that keep the overlap's duplicates from the application (flight.js SeqFilter,
// core.js QualityTracker). The shell against real servers: move-e2e.test.mjs.
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
  // A tick elsewhere does nothing.
  for (const phase of ['settled', 'opening', 'old_only', 'new_only_opening']) {
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
  assert.deepEqual([r[1].sendOn, r[1].takeFrom, r[1].controlOn, r[1].wakeAtMs], [['old'], ['old'], null, null]);

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
