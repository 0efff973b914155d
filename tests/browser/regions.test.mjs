// Regions in the browser client (PROTOCOL.md §11 "Regions (version 4)"): core.js's pure parts
// (which node per region, the 1 s deadline, the 5-minute cache, what a request carries) with
// simulated time, then the shell (client.js) over a fake transport and a stubbed fetch: the
// measurement starts after a version-4 Welcome, never delays a request, and rides with the next
// CreateSession / JoinSession. Runs in Node without a server or a browser:
//   node --test tests/browser/regions.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  REGIONS, httpOfWsUrl, regionTargets, regionProbeKind, webTransportTryMs, regionTargetsKey, bestRttMs, regionResult, regionsDue, regionsAfterList,
  regionRttsToSend,
} from '../../client/web/core.js';
import { FlightSimP2P, decodeClientMsg, encodeServerMsg } from '../../client/web/fsp2p.js';
import { fakeTransport, tick, LIMITS, TOKEN } from './fakes.mjs';

const node = (name, region, http) => ({ name, region, quic: `${name}:4433`, http, cert_sha256: null });

test('core: a region is timed by WebTransport when the browser has it and the node a QUIC address, else over HTTP; a try is half the handshake', () => {
  assert.equal(regionProbeKind({ quic: '10.0.0.1:4433' }, true), 'webtransport');
  assert.equal(regionProbeKind({ quic: '10.0.0.1:4433' }, false), 'http', 'no WebTransport in this browser (or under node)');
  assert.equal(regionProbeKind({ quic: '' }, true), 'http', 'a node without a QUIC address');
  assert.equal(webTransportTryMs(300), 150, 'the QUIC handshake and the CONNECT: two round trips');
  // The handshakes count where one ended in time; else the HTTP timings taken alongside.
  const targets = [{ region: 'eu' }, { region: 'us' }, { region: 'asia' }];
  const wt = new Map([['eu', [{ ms: 12.4, endAtMs: 30 }]], ['us', []], ['asia', [{ ms: 80, endAtMs: 1200 }]]]);
  const http = new Map([['eu', [{ ms: 5, endAtMs: 10 }]], ['us', [{ ms: 160, endAtMs: 400 }]], ['asia', []]]);
  assert.deepEqual(regionResult(targets, wt, 0, http), [{ region: 'eu', rttMs: 12 }, { region: 'us', rttMs: 160 }]);
});

test('core: one node per region, the first listed with an HTTP address; none below two regions; bad names out', () => {
  const list = { nodes: [
    node('eu-1', 'eu', 'http://10.0.0.1:8080'), node('eu-2', 'eu', 'http://10.0.0.2:8080'),
    node('us-1', 'us', ''), node('us-2', 'us', 'http://10.0.1.2:8080/'), node('x', null, 'http://10.0.9.9:8080'),
    node('bad', 'Bad Region', 'http://10.0.3.1:8080'), node('asia-1', 'asia', 'ftp://nope'),
  ] };
  assert.deepEqual(regionTargets(list).map((t) => [t.region, t.http]),
    [['eu', 'http://10.0.0.1:8080'], ['us', 'http://10.0.1.2:8080']]);
  // One region (or none): nothing to compare, nothing measured.
  assert.deepEqual(regionTargets({ nodes: [node('a', 'eu', 'http://a:1'), node('b', 'eu', 'http://b:1'), node('c', null, 'http://c:1')] }), []);
  assert.deepEqual(regionTargets({ nodes: [node('solo', null, 'http://a:1')] }), []);
  for (const junk of [null, {}, { nodes: 'x' }, { nodes: [null, 5] }]) assert.deepEqual(regionTargets(junk), []);
  // At most 16 regions: what is measured can always be sent (§4).
  const many = { nodes: Array.from({ length: 20 }, (_, i) => node(`n${i}`, `r${i}`, `http://10.0.0.${i}:8080`)) };
  assert.equal(regionTargets(many).length, REGIONS.maxEntries);
  assert.equal(regionTargetsKey(regionTargets(list)), 'eu=http://10.0.0.1:8080 us=http://10.0.1.2:8080');
  assert.equal(httpOfWsUrl('ws://10.0.0.1:8080/ws'), 'http://10.0.0.1:8080');
  // How to reach each by WebTransport: its QUIC address and certificate pin.
  const pinned = regionTargets({ nodes: [
    { name: 'a', region: 'eu', quic: '10.0.0.1:4433', http: 'http://10.0.0.1:8080', cert_sha256: 'AB'.repeat(32) },
    { name: 'b', region: 'us', quic: '', http: 'http://10.0.1.1:8080', cert_sha256: null },
    { name: 'c', region: 'asia', quic: 'no port', http: 'http://10.0.2.1:8080', cert_sha256: 'short' },
    { name: 'd', region: 'sa', quic: '[2001:db8::1]:4433', http: 'http://10.0.3.1:8080', cert_sha256: null },
  ] });
  assert.deepEqual(pinned.map((t) => [t.region, t.quic, t.certSha256]), [
    ['eu', '10.0.0.1:4433', 'ab'.repeat(32)], ['us', '', null], ['asia', '', null], ['sa', '[2001:db8::1]:4433', null],
  ]);
  assert.equal(httpOfWsUrl('wss://a.example/ws'), 'https://a.example');
  assert.equal(httpOfWsUrl(''), '');
});

test('core: the best try within 1 s of the start is the RTT; later answers count for nothing', () => {
  assert.equal(bestRttMs([{ ms: 30.4, endAtMs: 130 }, { ms: 11.6, endAtMs: 142 }], 100), 12);
  assert.equal(bestRttMs([{ ms: 30, endAtMs: 1100 }, { ms: 5, endAtMs: 1101 }], 100), 30, 'the second ended past the deadline');
  assert.equal(bestRttMs([{ ms: 900, endAtMs: 1101 }], 100), null);
  assert.equal(bestRttMs([], 0), null);
  const targets = [{ region: 'eu' }, { region: 'us' }, { region: 'asia' }];
  const tries = new Map([['eu', [{ ms: 5, endAtMs: 6 }, { ms: 3, endAtMs: 9 }]], ['us', [{ ms: 84, endAtMs: 85 }]], ['asia', [{ ms: 1500, endAtMs: 1501 }]]]);
  assert.deepEqual(regionResult(targets, tries, 0), [{ region: 'eu', rttMs: 3 }, { region: 'us', rttMs: 84 }]);
});

test('core: when to measure, reuse, and what a request carries (5-minute cache, never waits)', () => {
  const base = 'http://a:8080';
  const due = (o) => regionsDue({ enabled: true, version: 4, running: false, cache: null, base, nowMs: 0, ...o });
  assert.equal(due({}), true);
  assert.equal(due({ enabled: false }), false, 'measureRegions: false');
  assert.equal(due({ version: 3 }), false, 'a server before version 4 takes no list');
  assert.equal(due({ running: true }), false);
  assert.equal(due({ base: '' }), false);
  const cache = { base, key: 'eu=http://a:8080 us=http://b:8080', atMs: 1000, rtts: [{ region: 'eu', rttMs: 3 }, { region: 'us', rttMs: 80 }] };
  assert.equal(due({ cache, nowMs: 1000 + REGIONS.cacheMs - 1 }), false, 'fresh: no GET /nodes');
  assert.equal(due({ cache, nowMs: 1000 + REGIONS.cacheMs }), true, 'stale after 5 min');
  assert.equal(due({ cache, base: 'http://b:8080', nowMs: 2000 }), true, 'another server: its node list is fetched');
  const targets = [{ region: 'eu', http: 'http://a:8080' }, { region: 'us', http: 'http://b:8080' }];
  assert.equal(regionsAfterList(cache, targets, 2000), 'reuse', 'the same nodes: no new timing');
  assert.equal(regionsAfterList(cache, targets.slice(0, 1).concat([{ region: 'us', http: 'http://c:8080' }]), 2000), 'probe');
  assert.equal(regionsAfterList(cache, targets, 1000 + REGIONS.cacheMs), 'probe');
  assert.equal(regionsAfterList(null, [], 0), 'none');
  assert.deepEqual(regionRttsToSend(null, 0), [], 'nothing measured yet: an empty list');
  assert.deepEqual(regionRttsToSend(cache, 1000 + REGIONS.cacheMs - 1), cache.rtts);
  assert.deepEqual(regionRttsToSend(cache, 1000 + REGIONS.cacheMs), [], 'older than 5 min: not sent');
  assert.notEqual(regionRttsToSend(cache, 1000), cache.rtts, 'a copy');
});

// --- the shell -----------------------------------------------------------------------------------

const welcome4 = (peerId) => encodeServerMsg({
  type: 'Welcome', version: 4, peerId, resumeToken: TOKEN, resumed: false, iceServers: [], limits: LIMITS, serverTimeMs: 0n,
});

/** Stub fetch: /nodes answers `list`, /healthz of a host answers after delays[host] ms (never if absent). */
function stubFetch(list, delays) {
  const calls = [];
  const prev = globalThis.fetch;
  globalThis.fetch = (url, init = {}) => {
    calls.push({ url: String(url), init });
    const u = new URL(String(url));
    if (u.pathname === '/nodes') return Promise.resolve({ ok: true, json: async () => list });
    return new Promise((resolve, reject) => {
      const d = delays[u.host];
      const t = d === undefined ? null : setTimeout(() => resolve({ ok: false, type: 'opaque' }), d);
      init.signal?.addEventListener('abort', () => { clearTimeout(t); reject(new Error('aborted')); });
    });
  };
  return { calls, restore: () => { globalThis.fetch = prev; } };
}

async function welcomed(extra = {}) {
  const fakes = [];
  const c = new FlightSimP2P({
    host: '127.0.0.1', wsUrl: 'ws://eu-1:8080/ws', forceRelay: true, pingIntervalMs: 0, statsIntervalMs: 0, fastConnect: false,
    telemetry: false, transport: () => { const f = fakeTransport('websocket', []); fakes.push(f); return f; }, ...extra,
  });
  const up = c.connect();
  await tick();
  fakes[0].succeed();
  await tick();
  fakes[0].onControl(welcome4(1));
  await up;
  return { c, fake: fakes[0] };
}

const cluster = { nodes: [node('eu-1', 'eu', 'http://eu-1:8080'), node('us-1', 'us', 'http://us-1:8080'), node('asia-1', 'asia', 'http://asia-1:8080')] };

test('shell: after a version-4 Welcome, /nodes then /healthz per region at once; the next create carries it', async () => {
  const f = stubFetch(cluster, { 'eu-1:8080': 5, 'us-1:8080': 60 }); // asia never answers
  try {
    const { c, fake } = await welcomed();
    // A request made at once goes without: a client never waits for the measurement.
    const early = c.createSession({ maxPeers: 4 });
    await tick();
    const m1 = decodeClientMsg(fake.sent.at(-1), 4);
    assert.deepEqual(m1, { type: 'CreateSession', maxPeers: 4, password: null, regionRtts: [] });
    early.catch(() => {});
    fake.onControl(encodeServerMsg({ type: 'Error', code: 9, message: 'x' }));
    await tick();
    assert.equal(f.calls[0].url, 'http://eu-1:8080/nodes');
    const probes = f.calls.slice(1);
    assert.deepEqual([...new Set(probes.map((p) => p.url))].sort(), ['http://asia-1:8080/healthz', 'http://eu-1:8080/healthz', 'http://us-1:8080/healthz']);
    assert.ok(probes.every((p) => p.init.cache === 'no-store'));
    assert.deepEqual(c.regionRtts(), [], 'still measuring');
    await tick(REGIONS.deadlineMs + 150);
    const got = c.regionRtts();
    assert.deepEqual(got.map((e) => e.region), ['eu', 'us'], 'asia did not answer within 1 s: left out');
    assert.ok(got[0].rttMs >= 4 && got[0].rttMs < 60, JSON.stringify(got));
    assert.ok(got[1].rttMs >= 59 && got[1].rttMs < 500, JSON.stringify(got));
    // Each answering node was timed twice (best of 2).
    assert.equal(f.calls.filter((p) => p.url === 'http://us-1:8080/healthz').length, 2);
    const joined = c.joinSession('7KQ2MX');
    await tick();
    assert.deepEqual(decodeClientMsg(fake.sent.at(-1), 4).regionRtts, got);
    joined.catch(() => {});
    c.close();
  } finally {
    f.restore();
  }
});

test('shell: measureRegions false, a server before version 4, or a single region: no timing, empty lists', async () => {
  const f = stubFetch(cluster, { 'eu-1:8080': 1, 'us-1:8080': 1, 'asia-1:8080': 1 });
  try {
    const { c } = await welcomed({ measureRegions: false });
    await tick(50);
    assert.equal(f.calls.length, 0, 'nothing fetched');
    assert.deepEqual(c.regionRtts(), []);
    c.close();
  } finally {
    f.restore();
  }
  const one = stubFetch({ nodes: [node('eu-1', 'eu', 'http://eu-1:8080'), node('eu-2', 'eu', 'http://eu-2:8080')] }, { 'eu-1:8080': 1 });
  try {
    const { c } = await welcomed();
    await tick(50);
    assert.deepEqual(one.calls.map((x) => x.url), ['http://eu-1:8080/nodes'], 'the list only: one region');
    assert.deepEqual(c.regionRtts(), []);
    c.close();
  } finally {
    one.restore();
  }
});

test('shell: a second Welcome within 5 minutes fetches nothing again', async () => {
  const f = stubFetch(cluster, { 'eu-1:8080': 1, 'us-1:8080': 1, 'asia-1:8080': 1 });
  try {
    const { c, fake } = await welcomed();
    await tick(50);
    const n = f.calls.length;
    assert.equal(n, 1 + 3 * REGIONS.tries);
    assert.equal(c.regionRtts().length, 3);
    c._maybeMeasureRegions(); // what the next Welcome does
    fake.onControl(welcome4(1));
    await tick(50);
    assert.equal(f.calls.length, n, 'cached for 5 minutes');
    c.close();
  } finally {
    f.restore();
  }
});
