// Regions end to end (PROTOCOL.md §11 "Regions (version 4)"): real Chromium, a real redis-server
// and two real server nodes, "eu" and "us", started with --region. Node us announces its HTTP
// port (--public-http) through a TCP proxy here that holds every chunk 75 ms each way, and its
// QUIC port (--public-quic) through a UDP proxy that holds every datagram 75 ms each way, so a
// page that times WebTransport handshakes (or, without WebTransport, GET /healthz) per region
// finds us ~150 ms away and eu a few ms away — what two regions look like from a player in eu,
// on loopback. Then:
//   - a page connected to us measures both regions (regionRtts()) within its 1 s budget, by
//     WebTransport; a page without WebTransport measures the same over HTTP;
//   - its CreateSession carries them, and us places the session in eu: Redirect(Placement),
//     counted by us's fsp2p_cluster_redirects_total{reason="placement"}, the page ends on eu;
//   - the same create from a page with measureRegions: false stays on us (no placement without
//     a measurement: the check above can fail);
//   - a JoinSession carrying the measurement is accepted (no invalid_argument) and joins.
// Needs redis-server and Chromium; FSP2P_BIN is the server binary.
//   FSP2P_BIN=/path/to/flightsim-p2p node --test tests/browser/regions-e2e.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { launchChromium, parseMetrics } from './support.mjs';
import { processes, freeTcpPort, freeUdpPort, get, waitFor, ROOT, ARTIFACTS } from './harness.mjs';

const BIN = process.env.FSP2P_BIN || path.join(ROOT, 'target/debug/flightsim-p2p');
const DELAY_MS = 75; // each way, on node us's announced HTTP address only
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const harness = processes('regions');
const { start, onCleanup, tempDir } = harness;

/** A TCP proxy to 127.0.0.1:target that holds every chunk `delayMs` in each direction. */
function delayProxy(port, target, delayMs) {
  const server = net.createServer((down) => {
    const up = net.connect(target, '127.0.0.1');
    const pass = (from, to) => {
      from.on('data', (d) => setTimeout(() => { if (!to.destroyed) to.write(d); }, delayMs));
      from.on('end', () => setTimeout(() => to.end(), delayMs));
      from.on('error', () => to.destroy());
    };
    pass(down, up);
    pass(up, down);
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

/** A UDP proxy to 127.0.0.1:target that holds every datagram `delayMs` in each direction. */
async function udpDelayProxy(port, target, delayMs) {
  const { createSocket } = await import('node:dgram');
  const front = createSocket('udp4');
  /** client address → its socket towards the target */
  const ups = new Map();
  front.on('message', (msg, from) => {
    const key = `${from.address}:${from.port}`;
    let up = ups.get(key);
    if (!up) {
      up = createSocket('udp4');
      up.on('message', (back) => setTimeout(() => front.send(back, from.port, from.address, () => {}), delayMs));
      up.on('error', () => {});
      up.bind(0, '127.0.0.1');
      ups.set(key, up);
    }
    setTimeout(() => up.send(msg, target, '127.0.0.1', () => {}), delayMs);
  });
  front.on('error', () => {});
  await new Promise((resolve) => front.bind(port, '127.0.0.1', resolve));
  return { close: () => { for (const u of ups.values()) u.close(); front.close(); } };
}

const placementRedirects = async (port) => {
  const m = parseMetrics((await get(port, '/metrics')).body);
  let n = 0;
  for (const [k, v] of m) if (k.startsWith('fsp2p_cluster_redirects_total{') && k.includes('reason="placement"')) n += v;
  return n;
};

test('regions: a page measures both regions, its create is placed in the nearer one; without a measurement it is not; a join with a measurement is accepted', { timeout: 120000 }, async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  const tmp = tempDir();
  const redisPort = await harness.startRedis();

  const nodes = {};
  for (const name of ['eu', 'us']) nodes[name] = { udp: await freeUdpPort(), http: await freeTcpPort() };
  const proxyPort = await freeTcpPort();
  const proxy = await delayProxy(proxyPort, nodes.us.http, DELAY_MS);
  onCleanup(() => new Promise((r) => proxy.close(r)));
  const udpProxyPort = await freeUdpPort();
  const udpProxy = await udpDelayProxy(udpProxyPort, nodes.us.udp, DELAY_MS);
  onCleanup(() => udpProxy.close());
  for (const name of ['eu', 'us']) {
    const n = nodes[name];
    start(`node-${name}`, [
      BIN, 'serve', '--listen', `127.0.0.1:${n.udp}`, '--http-listen', `127.0.0.1:${n.http}`,
      '--cert-dir', path.join(tmp, `certs-${name}`), '--web-dir', path.join(ROOT, 'client/web'),
      '--redis-url', `redis://127.0.0.1:${redisPort}`, '--node-name', name, '--region', name,
      '--placement', 'on', '--placement-min-gain-ms', '20',
      ...(name === 'us' ? ['--public-http', `http://127.0.0.1:${proxyPort}`, '--public-quic', `127.0.0.1:${udpProxyPort}`] : []),
    ]);
  }
  // Both nodes list both regions (the node itself first, then its directory).
  for (const name of ['eu', 'us']) {
    await waitFor(`node ${name} lists both regions in GET /nodes`, async () => {
      const list = JSON.parse((await get(nodes[name].http, '/nodes')).body).nodes;
      return list.length === 2 && list.map((x) => x.region).sort().join() === 'eu,us';
    });
  }
  const us = JSON.parse((await get(nodes.eu.http, '/nodes')).body).nodes.find((x) => x.region === 'us');
  assert.equal(us.http, `http://127.0.0.1:${proxyPort}`, 'us is announced behind the delaying proxy');
  assert.equal(us.quic, `127.0.0.1:${udpProxyPort}`, 'and its QUIC port behind the delaying UDP proxy');

  const browser = await launchChromium();
  onCleanup(() => browser.close());
  const page = await browser.newPage();
  page.on('console', (m) => { if (m.type() === 'error') console.log('[page]', m.text()); });
  // Every WebTransport this page opens (its clients are on WebSocket: each one is a region probe).
  await page.addInitScript(() => {
    window.__wt = [];
    const Native = window.WebTransport;
    window.WebTransport = class extends Native {
      constructor(url, ...rest) {
        window.__wt.push(new URL(url).host);
        super(url, ...rest);
      }
    };
  });
  // Any page of a node will do: it only imports the client.
  await page.goto(`http://127.0.0.1:${nodes.us.http}/fsp2p.js`);
  await page.evaluate(async () => { window.__m = await import('/fsp2p.js'); window.__c = {}; });

  const mk = (id, http, extra = {}) => page.evaluate(async ({ id, http, extra }) => {
    const c = new window.__m.FlightSimP2P({ transport: 'websocket', wsUrl: `ws://127.0.0.1:${http}/ws`, name: id, ...extra });
    window.__c[id] = c;
    const errors = [];
    c.addEventListener('error', (e) => errors.push(e.detail.name));
    c.__errors = errors;
    await c.connect();
    return c.peerId;
  }, { id, http, extra });
  const rtts = (id) => page.evaluate((id) => window.__c[id].regionRtts(), id);
  const where = (id) => page.evaluate((id) => window.__c[id].transportUrl, id);

  // 0. Without WebTransport (an older browser) the page times GET /healthz instead, through the TCP proxy.
  const plain = await browser.newPage();
  try {
    await plain.addInitScript(() => { delete window.WebTransport; });
    await plain.goto(`http://127.0.0.1:${nodes.us.http}/fsp2p.js`);
    const httpMeasured = await plain.evaluate(async ({ http }) => {
      const m = await import('/fsp2p.js');
      const c = new m.FlightSimP2P({ transport: 'websocket', wsUrl: `ws://127.0.0.1:${http}/ws`, name: 'plain' });
      await c.connect();
      const t0 = performance.now();
      while (c.regionRtts().length < 2 && performance.now() - t0 < 10000) await new Promise((r) => setTimeout(r, 50));
      const r = c.regionRtts();
      c.close();
      return { rtts: r, hasWt: typeof window.WebTransport };
    }, { http: nodes.us.http });
    assert.equal(httpMeasured.hasWt, 'undefined');
    const hb = Object.fromEntries(httpMeasured.rtts.map((e) => [e.region, e.rttMs]));
    console.log(`measured over HTTP: ${JSON.stringify(httpMeasured.rtts)}`);
    assert.ok(hb.eu < 50, `eu over HTTP is on loopback: ${hb.eu} ms`);
    assert.ok(hb.us >= 2 * DELAY_MS - 5 && hb.us < 1000, `us over HTTP is behind ${2 * DELAY_MS} ms of proxy: ${hb.us} ms`);
  } finally {
    await plain.close();
  }

  // 1. A page on us measures both regions, off the critical path, within its budget (WebTransport).
  const t0 = Date.now();
  await mk('creator', nodes.us.http);
  const measured = await waitFor('the page measured both regions', async () => {
    const r = await rtts('creator');
    return r.length === 2 ? r : null;
  }, 10000);
  const by = Object.fromEntries(measured.map((e) => [e.region, e.rttMs]));
  console.log(`measured after ${Date.now() - t0} ms: ${JSON.stringify(measured)}`);
  assert.ok(by.eu < 50, `eu is on loopback: ${by.eu} ms`);
  assert.ok(by.us >= 2 * DELAY_MS - 5 && by.us < 1000, `us is behind ${2 * DELAY_MS} ms of proxy: ${by.us} ms`);
  const probed = await page.evaluate(() => window.__wt);
  assert.ok(probed.includes(`127.0.0.1:${udpProxyPort}`) && probed.includes(`127.0.0.1:${nodes.eu.udp}`),
    `this page timed WebTransport handshakes to both regions: ${JSON.stringify(probed)}`);

  // 2. Its create carries them: us places the session in eu.
  const before = await placementRedirects(nodes.us.http);
  const created = await page.evaluate(async () => {
    const s = await window.__c.creator.createSession({ maxPeers: 4 });
    return { code: s.code, errors: window.__c.creator.__errors };
  });
  assert.equal(await placementRedirects(nodes.us.http) - before, 1, 'us sent one Redirect(Placement)');
  assert.match(await where('creator'), new RegExp(`:${nodes.eu.http}/`), 'the session is on eu');
  assert.deepEqual(created.errors, []);

  // 3. Without a measurement the same create stays on us (placement follows the measurement).
  await mk('blind', nodes.us.http, { measureRegions: false });
  await sleep(1500);
  assert.deepEqual(await rtts('blind'), []);
  const blind = await page.evaluate(async () => (await window.__c.blind.createSession()).code);
  assert.ok(blind);
  assert.equal(await placementRedirects(nodes.us.http) - before, 1, 'no placement without a measurement');
  assert.match(await where('blind'), new RegExp(`:${nodes.us.http}/`), 'stays on us');

  // 4. A JoinSession carrying the measurement is accepted and joins (on eu, where the session is).
  await mk('joiner', nodes.eu.http);
  await waitFor('the joiner measured both regions', async () => (await rtts('joiner')).length === 2, 10000);
  const joined = await page.evaluate(async (code) => {
    const c = window.__c.joiner;
    const s = await c.joinSession(code);
    return { code: s.code, peers: s.peers.length, rtts: c.regionRtts(), errors: c.__errors };
  }, created.code);
  assert.equal(joined.code, created.code);
  assert.equal(joined.peers, 2);
  assert.equal(joined.rtts.length, 2);
  assert.deepEqual(joined.errors, [], 'no invalid_argument');
  await page.evaluate(() => { for (const c of Object.values(window.__c)) c.close(); });
});
