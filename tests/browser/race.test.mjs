// The QUIC/WebSocket race ("happy eyeballs", transport 'auto'; client/web/transports.js with
// core.js's rules) with fake transports, and the `transport` option.
// Runs in Node without a server: node --test tests/browser/race.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  FspError, AutoSignal, FlightSimP2P, TRANSPORT_CHOICES,
} from '../../client/web/fsp2p.js';
import {
  tick, withWebTransport, autoWithFakes, helloBrowser, join7, fastFake,
} from './fakes.mjs';

// --- transport selection ("happy eyeballs") with fake transports ---------------------------------

test('happy eyeballs: WebTransport ready within the delay → no WebSocket attempt', () => withWebTransport(true, async () => {
  const { a, log, made } = autoWithFakes(50);
  const p = a.open();
  await tick();
  made.wt.succeed();
  await p;
  assert.equal(a.kind, 'webtransport');
  assert.equal(a.url, 'webtransport://fake');
  assert.equal(a.fallbackReason, '');
  await tick(80);
  assert.deepEqual(log, ['webtransport open']);
  // Calls and callbacks go to and come from the winner.
  await a.sendControl(Uint8Array.of(4));
  assert.equal(made.wt.sent.length, 1);
  const got = [];
  a.onControl = (b) => got.push(b[0]);
  made.wt.onControl(Uint8Array.of(9));
  assert.deepEqual(got, [9]);
  a.close(0, 'bye');
  assert.deepEqual(made.wt.closed, { code: 0, reason: 'bye' });
}));

test('happy eyeballs: no WebTransport in this browser → WebSocket at once', () => withWebTransport(false, async () => {
  const { a, log, made } = autoWithFakes(1000);
  const p = a.open();
  await tick();
  assert.deepEqual(log, ['websocket open']);
  made.ws.succeed();
  await p;
  assert.equal(a.kind, 'websocket');
  assert.equal(a.fallbackReason, 'this browser has no WebTransport');
}));

test('happy eyeballs: WebTransport fails at once → WebSocket at once, not after the delay', () => withWebTransport(true, async () => {
  const { a, log, made } = autoWithFakes(10000);
  const p = a.open();
  await tick();
  made.wt.fail('handshake failed');
  await tick();
  assert.deepEqual(log, ['webtransport open', 'websocket open']);
  made.ws.succeed();
  await p;
  assert.equal(a.kind, 'websocket');
  assert.equal(a.fallbackReason, 'WebTransport failed: handshake failed');
}));

test('happy eyeballs: WebTransport slow → WebSocket in parallel after the delay; the first ready wins, the other is closed', () => withWebTransport(true, async () => {
  {
    const { a, log, made } = autoWithFakes(30);
    const p = a.open();
    await tick(10);
    assert.deepEqual(log, ['webtransport open']);
    await tick(40);
    assert.deepEqual(log, ['webtransport open', 'websocket open']);
    made.ws.succeed();
    await p;
    assert.equal(a.kind, 'websocket');
    assert.equal(a.fallbackReason, 'WebTransport not ready within 30 ms');
    assert.deepEqual(made.wt.closed, { code: 0, reason: 'happy eyeballs: the other transport won' });
    // Only the winner's callbacks reach the client.
    let closedInfo = null;
    a.onClosed = (i) => { closedInfo = i; };
    made.wt.onClosed({ code: 0, reason: 'loser' });
    assert.equal(closedInfo, null);
    made.ws.onClosed({ code: 4, reason: 'winner' });
    assert.deepEqual(closedInfo, { code: 4, reason: 'winner' });
  }
  {
    // WebTransport comes through after the WebSocket attempt started: it wins, the WebSocket is closed.
    const { a, made } = autoWithFakes(5);
    const p = a.open();
    await tick(30);
    made.wt.succeed();
    await p;
    assert.equal(a.kind, 'webtransport');
    assert.equal(made.ws.closed.code, 0);
  }
}));

test('happy eyeballs: both fail → one error naming both; close() while connecting aborts both', () => withWebTransport(true, async () => {
  {
    const { a, made } = autoWithFakes(5);
    const p = a.open();
    await tick(30);
    made.ws.fail('WebSocket refused');
    await tick();
    made.wt.fail('QUIC timed out');
    await assert.rejects(p, (e) => e instanceof FspError && e.codeName === 'connect_failed'
      && /QUIC timed out/.test(e.message) && /WebSocket refused/.test(e.message));
  }
  {
    const { a, made } = autoWithFakes(5);
    const p = a.open();
    await tick(30);
    a.close(0, 'user');
    await assert.rejects(p, (e) => e.codeName === 'closed');
    assert.equal(made.wt.closed.code, 0);
    assert.equal(made.ws.closed.code, 0);
  }
}));

test('transport option: auto by default, the two kinds, a factory; anything else refused', () => {
  assert.deepEqual([...TRANSPORT_CHOICES], ['auto', 'webtransport', 'websocket']);
  assert.equal(new FlightSimP2P({ host: 'h' }).options.transport, 'auto');
  assert.equal(new FlightSimP2P({ host: 'h' }).options.wsUrl, 'ws://h:8080/ws', 'outside a page: the HTTP port of host');
  assert.equal(new FlightSimP2P({ host: 'h', wsUrl: 'wss://h/ws' }).options.wsUrl, 'wss://h/ws');
  assert.equal(new FlightSimP2P({ transport: 'websocket' }).options.transport, 'websocket');
  assert.throws(() => new FlightSimP2P({ transport: 'quic' }), RangeError);
});

test('happy eyeballs with a first request: only an attempt with no other pending carries it', () => withWebTransport(true, async () => {
  const first = [helloBrowser(), join7];
  {
    // WebTransport slow: the WebSocket started alongside goes without it, and wins.
    const log = [];
    const made = {};
    const a = new AutoSignal({ url: 'https://x/signal', wsUrl: 'ws://x/ws', fallbackDelayMs: 5 }, {
      webtransport: () => (made.wt = fastFake('webtransport', log)),
      websocket: () => (made.ws = fastFake('websocket', log)),
    });
    const p = a.open(first);
    await tick(30);
    assert.equal(made.wt.first, first);
    assert.equal(made.ws.first, null);
    made.ws.succeed();
    await p;
    assert.equal(a.kind, 'websocket');
    assert.equal(a.firstSent, false, 'the client must send Hello on the stream');
  }
  {
    // WebTransport fails: the WebSocket is then alone and carries it.
    const log = [];
    const made = {};
    const a = new AutoSignal({ url: 'https://x/signal', wsUrl: 'ws://x/ws', fallbackDelayMs: 10000 }, {
      webtransport: () => (made.wt = fastFake('webtransport', log)),
      websocket: () => (made.ws = fastFake('websocket', log)),
    });
    const p = a.open(first);
    await tick();
    made.wt.fail('refused');
    await tick();
    assert.equal(made.ws.first, first);
    // Its answer may come before it is chosen: kept, then delivered once it is.
    const got = [];
    a.onControl = (b) => got.push(b[0]);
    made.ws.onControl(Uint8Array.of(0));
    made.ws.succeed();
    await p;
    assert.deepEqual(got, []);
    await tick();
    assert.deepEqual(got, [0]);
    assert.equal(a.firstSent, true);
  }
}));
