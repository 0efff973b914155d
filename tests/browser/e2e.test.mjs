// End-to-end tests of the browser client (client/web) in real headless Chromium
// against the real server binary:
//
//   cargo build && (cd tests/browser && npm ci) && node --test tests/browser/e2e.test.mjs
//
// Environment:
//   FSP2P_BIN         server binary (default target/debug/flightsim-p2p)
//   CHROMIUM          browser binary (default /usr/bin/chromium)
//   FSP2P_E2E_NETNS=0 do not isolate the run in a network namespace
//
// Network: as root (CI), the server and Chromium run inside a private network
// namespace made for this run: loopback plus a veth pair whose both ends stay
// inside it (198.18.0.1/24, a default route into it so WebRTC gathers a host
// candidate). Nothing can leave the machine. Without root it runs on the host's
// loopback (WebRTC then also uses the host's own interface addresses, which the
// kernel delivers locally).
//
// Screenshots of the demo page go to test-artifacts/browser/, with the server log.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, createWriteStream, chmodSync } from 'node:fs';
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = process.env.FSP2P_BIN || path.join(ROOT, 'target/debug/flightsim-p2p');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = path.join(ROOT, 'test-artifacts/browser');
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-features=WebRtcHideLocalIpsWithMdns',
];
/**
 * The relay is best effort (datagrams; stale state is dropped, never queued), so relay
 * checks accept a small loss; on an idle machine every frame arrives. Direct-path checks
 * (DataChannel on loopback) require every frame.
 */
const RELAY_MIN = 0.9;
/** Test frames start with this byte; the demo's own aircraft frames start with 1 and are ignored here. */
const PROBE = 0xee;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** @type {{nsPath: string|null, holder: import('node:child_process').ChildProcess|null}} */
const net = { nsPath: null, holder: null };
let server = null;
let browser = null;
let tmp = '';
let udpPort = 0;
let httpPort = 0;
let certHex = '';
let serverExit = null;
const openContexts = new Set();

// --- environment ------------------------------------------------------------------------

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** A private network namespace held open by a sleeping process; null if not possible here. */
async function makeNetns() {
  if (process.env.FSP2P_E2E_NETNS === '0') return null;
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return null;
  if (!have('unshare') || !have('nsenter') || !have('ip')) return null;
  const script = [
    'set -e',
    'ip link set lo up',
    'ip link add fsp0 type veth peer name fsp1',
    'ip link set fsp1 up',
    'ip addr add 198.18.0.1/24 dev fsp0',
    'ip link set fsp0 up',
    'ip route add default dev fsp0',
    'echo ready',
    'exec sleep 3600',
  ].join('\n');
  const holder = spawn('unshare', ['--net', '--', 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  holder.stderr.on('data', (d) => { err += d; });
  const ok = await new Promise((resolve) => {
    holder.stdout.on('data', (d) => { if (String(d).includes('ready')) resolve(true); });
    holder.on('exit', () => resolve(false));
    setTimeout(() => resolve(false), 5000);
  });
  if (!ok) {
    holder.kill('SIGKILL');
    console.error(`network namespace not available (${err.trim() || 'timeout'}); running on the host loopback`);
    return null;
  }
  return { holder, nsPath: `/proc/${holder.pid}/ns/net` };
}

/** argv to run a command inside the test's network (namespace or not). */
function inNet(argv) {
  return net.nsPath ? ['nsenter', `--net=${net.nsPath}`, '--', ...argv] : argv;
}

async function freePort(kind) {
  if (net.nsPath) return kind === 'udp' ? 24433 : 28080; // a fresh namespace has every port free
  if (kind === 'tcp') {
    return new Promise((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const { port } = /** @type {any} */ (s.address());
        s.close(() => resolve(port));
      });
    });
  }
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** GET from the server's HTTP port, from inside its network. */
async function httpGet(urlPath) {
  const url = `http://127.0.0.1:${httpPort}${urlPath}`;
  if (!net.nsPath) {
    const r = await fetch(url);
    return { status: r.status, body: await r.text() };
  }
  const code = `fetch(${JSON.stringify(url)}).then(async r => { process.stdout.write(JSON.stringify({status: r.status, body: await r.text()})) }, e => { process.stdout.write(JSON.stringify({status: 0, body: String(e)})) })`;
  const argv = inNet([process.execPath, '-e', code]);
  const out = await new Promise((resolve) => {
    const p = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'ignore'] });
    let s = '';
    p.stdout.on('data', (d) => { s += d; });
    p.on('exit', () => resolve(s));
  });
  try {
    return JSON.parse(out);
  } catch {
    return { status: 0, body: out };
  }
}

before(async () => {
  assert.ok(existsSync(BIN), `server binary not found at ${BIN}: run \`cargo build\` first (or set FSP2P_BIN)`);
  assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM)`);
  mkdirSync(ARTIFACTS, { recursive: true });
  tmp = mkdtempSync(path.join(tmpdir(), 'fsp2p-e2e-'));
  const ns = await makeNetns();
  if (ns) Object.assign(net, ns);
  udpPort = await freePort('udp');
  httpPort = await freePort('tcp');

  const argv = inNet([
    BIN, 'serve',
    '--listen', `127.0.0.1:${udpPort}`,
    '--http-listen', `127.0.0.1:${httpPort}`,
    '--cert-dir', path.join(tmp, 'certs'),
    '--web-dir', path.join(ROOT, 'client/web'),
  ]);
  const logFile = createWriteStream(path.join(ARTIFACTS, 'server.log'));
  server = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', RUST_LOG: process.env.RUST_LOG || 'info' } });
  server.stdout.pipe(logFile);
  server.stderr.pipe(logFile);
  server.on('exit', (code, signal) => { serverExit = { code, signal }; });

  const t0 = Date.now();
  for (;;) {
    if (serverExit) assert.fail(`server exited early (${JSON.stringify(serverExit)}); see ${ARTIFACTS}/server.log`);
    const r = await httpGet('/healthz').catch(() => ({ status: 0 }));
    if (r.status === 200) break;
    if (Date.now() - t0 > 30000) assert.fail('server did not answer GET /healthz with 200 within 30 s');
    await sleep(100);
  }
  const hash = await httpGet('/cert-hash');
  assert.equal(hash.status, 200, `/cert-hash: ${hash.body}`);
  const j = JSON.parse(hash.body);
  assert.match(j.hex, /^[0-9a-f]{64}$/);
  assert.equal(j.algorithm, 'sha-256');
  certHex = j.hex;

  let executablePath = CHROMIUM;
  if (net.nsPath) {
    // Playwright talks to Chromium over inherited pipes, which survive nsenter.
    executablePath = path.join(tmp, 'chromium-in-netns.sh');
    writeFileSync(executablePath, `#!/bin/sh\nexec nsenter --net=${net.nsPath} -- ${CHROMIUM} "$@"\n`);
    chmodSync(executablePath, 0o755);
  }
  browser = await chromium.launch({ executablePath, args: CHROMIUM_ARGS, timeout: 60000 });
  console.log(`server ready in ${Date.now() - t0} ms; Chromium ${browser.version()}; ${net.nsPath ? 'private network namespace' : 'host loopback'}; udp ${udpPort}, http ${httpPort}`);
});

after(async () => {
  for (const ctx of openContexts) await ctx.close().catch(() => {});
  if (browser) await browser.close().catch(() => {});
  if (server && !serverExit) {
    server.kill('SIGTERM');
    const t0 = Date.now();
    while (!serverExit && Date.now() - t0 < 5000) await sleep(50);
    if (!serverExit) server.kill('SIGKILL');
  }
  if (net.holder) net.holder.kill('SIGKILL');
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

// --- page helpers -------------------------------------------------------------------------

/**
 * Open the demo page with query parameters (host/port/certHash are added).
 * @param {Record<string, string|number>} q
 */
async function openDemo(q, label) {
  const ctx = await browser.newContext({ viewport: { width: 1180, height: 860 } });
  openContexts.add(ctx);
  const page = await ctx.newPage();
  page.label = label;
  page.consoleLines = [];
  page.on('console', (m) => page.consoleLines.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => page.consoleLines.push(`[pageerror] ${e.message}`));
  const params = new URLSearchParams({ port: String(udpPort), ...Object.fromEntries(Object.entries(q).map(([k, v]) => [k, String(v)])) });
  await page.goto(`http://localhost:${httpPort}/?${params}`);
  return page;
}

async function closePages(...pages) {
  for (const p of pages) {
    const ctx = p.context();
    openContexts.delete(ctx);
    await ctx.close().catch(() => {});
  }
}

/** Wait for a condition in the page; on timeout, fail with the page's log and console. */
async function waitIn(page, fn, arg, timeout, what) {
  try {
    return await (await page.waitForFunction(fn, arg, { timeout, polling: 50 })).jsonValue();
  } catch (e) {
    const state = await page.evaluate(() => ({
      log: window.fsp2pDemo ? window.fsp2pDemo.log.slice(-20) : [],
      errors: window.fsp2pDemo ? window.fsp2pDemo.errors : [],
      peers: window.fsp2pDemo ? window.fsp2pDemo.peers() : [],
    })).catch(() => ({}));
    assert.fail(`${page.label}: timed out after ${timeout} ms waiting for ${what}\n` +
      `state: ${JSON.stringify(state, null, 1)}\nconsole:\n${page.consoleLines.slice(-20).join('\n')}`);
  }
}

async function sessionCode(page) {
  return waitIn(page, () => window.fsp2pDemo && window.fsp2pDemo.client && window.fsp2pDemo.client.session
    && window.fsp2pDemo.client.session.code, null, 15000, 'the session');
}

/** Wait until the page has `n` peers, all on `path`. */
async function waitPaths(page, path, n, timeout = 15000) {
  return waitIn(page, ([path, n]) => {
    const peers = window.fsp2pDemo.peers();
    return peers.length === n && peers.every((p) => p.path === path) && peers;
  }, [path, n], timeout, `${n} peer(s) on path ${path}`);
}

/** Count probe frames received by the page's current client. */
async function installProbe(page) {
  await page.evaluate((PROBE) => {
    const rx = { count: 0, bad: 0, from: {}, paths: {} };
    window.__probe = rx;
    window.fsp2pDemo.client.addEventListener('message', (e) => {
      const { from, data, path } = e.detail;
      if (data[0] !== PROBE) return;
      const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
      const sender = v.getUint32(1, true);
      const seq = v.getUint32(5, true);
      let ok = sender === from && data.length === 49 + (seq % 200);
      for (let i = 9; ok && i < data.length; i++) if (data[i] !== ((seq * 31 + i * 7 + sender) & 0xff)) ok = false;
      rx.count++;
      if (!ok) rx.bad++;
      const f = (rx.from[from] ??= { seqs: {}, unique: 0 });
      if (!f.seqs[seq]) {
        f.seqs[seq] = 1;
        f.unique++;
      }
      rx.paths[path] = (rx.paths[path] || 0) + 1;
    });
  }, PROBE);
}

async function probeResult(page) {
  return page.evaluate(() => {
    const rx = window.__probe;
    const from = {};
    for (const [k, v] of Object.entries(rx.from)) from[k] = v.unique;
    return { count: rx.count, bad: rx.bad, from, paths: rx.paths };
  });
}

/**
 * Send `n` probe frames to `to` (0 = all), `batch` at a time with `gapMs` between batches.
 * Payload: PROBE | u32 sender | u32 seq | pattern; 49..248 bytes.
 */
async function sendProbes(page, to, n, batch, gapMs) {
  return page.evaluate(async ([PROBE, to, n, batch, gapMs]) => {
    const c = window.fsp2pDemo.client;
    const me = c.peerId;
    let accepted = 0;
    for (let seq = 0; seq < n; seq++) {
      const d = new Uint8Array(49 + (seq % 200));
      const v = new DataView(d.buffer);
      d[0] = PROBE;
      v.setUint32(1, me, true);
      v.setUint32(5, seq, true);
      for (let i = 9; i < d.length; i++) d[i] = (seq * 31 + i * 7 + me) & 0xff;
      if (c.send(to, d)) accepted++;
      if ((seq + 1) % batch === 0) await new Promise((r) => setTimeout(r, gapMs));
    }
    return accepted;
  }, [PROBE, to, n, batch, gapMs]);
}

/** The server's relay counters, one line, for diagnostics. */
async function relayMetrics() {
  const m = await httpGet('/metrics').catch(() => ({ status: 0, body: '' }));
  return m.body.split('\n').filter((l) => /relay/.test(l) && !l.startsWith('#')).join('; ');
}

async function peerId(page) {
  return page.evaluate(() => window.fsp2pDemo.client.peerId);
}

async function screenshot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

async function waitProbes(page, expect, timeout) {
  const t0 = Date.now();
  let r;
  do {
    r = await probeResult(page);
    if (Object.entries(expect).every(([from, n]) => (r.from[from] || 0) >= n)) return r;
    await sleep(50);
  } while (Date.now() - t0 < timeout);
  return r;
}

// --- scenarios ------------------------------------------------------------------------------

test('1. direct: two pages, unordered unreliable DataChannel, 500 frames each way; force-relay button and back', { timeout: 90000 }, async (t) => {
  const t0 = Date.now();
  const a = await openDemo({ create: 1, name: 'Alpha' }, 'Alpha');
  const code = await sessionCode(a);
  const b = await openDemo({ join: code.toLowerCase().replace(/^(...)/, '$1-'), name: 'Bravo' }, 'Bravo');
  assert.equal(await sessionCode(b), code);
  const [ida, idb] = [await peerId(a), await peerId(b)];
  await waitPaths(a, 'direct', 1);
  await waitPaths(b, 'direct', 1);
  t.diagnostic(`session ${code}: direct path up in ${Date.now() - t0} ms`);

  // The flight-data channel is unordered with no retransmits on both sides.
  for (const p of [a, b]) {
    const dc = await p.evaluate(() => {
      const l = [...window.fsp2pDemo.client.links.values()][0];
      return { label: l.dc.label, ordered: l.dc.ordered, maxRetransmits: l.dc.maxRetransmits, state: l.dc.readyState };
    });
    assert.deepEqual(dc, { label: 'flight', ordered: false, maxRetransmits: 0, state: 'open' });
  }

  await installProbe(a);
  await installProbe(b);
  const t1 = Date.now();
  const [sa, sb] = await Promise.all([sendProbes(a, idb, 500, 50, 10), sendProbes(b, 0, 500, 50, 10)]);
  assert.equal(sa, 500);
  assert.equal(sb, 500);
  const ra = await waitProbes(a, { [idb]: 500 }, 10000);
  const rb = await waitProbes(b, { [ida]: 500 }, 10000);
  t.diagnostic(`500 frames each way in ${Date.now() - t1} ms: A got ${ra.from[idb]}, B got ${rb.from[ida]}`);
  assert.equal(ra.from[idb], 500, `Alpha received ${JSON.stringify(ra)}`);
  assert.equal(rb.from[ida], 500, `Bravo received ${JSON.stringify(rb)}`);
  assert.equal(ra.bad + rb.bad, 0, 'corrupted payloads');
  assert.deepEqual(Object.keys(ra.paths), ['direct']);
  assert.deepEqual(Object.keys(rb.paths), ['direct']);

  // The demo's own 60 Hz aircraft state is flowing too.
  await waitIn(b, (id) => {
    const r = window.fsp2pDemo.remote.get(id);
    return r && r.rxRate > 30 && r.rttMs !== null;
  }, ida, 5000, 'aircraft state at ~60 Hz with an RTT');
  await sleep(300);
  await screenshot(a, '1-direct-alpha');
  await screenshot(b, '1-direct-bravo');

  // "Force relay" on Alpha: both sides move to the relay, frames keep arriving.
  await a.click('#force-relay');
  assert.equal(await a.getAttribute('#force-relay', 'aria-pressed'), 'true');
  await waitPaths(a, 'relay', 1, 5000);
  await waitPaths(b, 'relay', 1, 10000);
  await installProbe(a);
  await installProbe(b);
  await Promise.all([sendProbes(a, 0, 100, 20, 100), sendProbes(b, ida, 100, 20, 100)]);
  const ra2 = await waitProbes(a, { [idb]: 100 }, 5000);
  const rb2 = await waitProbes(b, { [ida]: 100 }, 5000);
  t.diagnostic(`forced relay: A got ${ra2.from[idb]}/100, B got ${rb2.from[ida]}/100`);
  assert.ok(ra2.from[idb] >= 100 * RELAY_MIN && rb2.from[ida] >= 100 * RELAY_MIN, `relay delivery ${JSON.stringify([ra2, rb2])}`);
  assert.deepEqual(Object.keys(ra2.paths), ['relay']);
  assert.deepEqual(Object.keys(rb2.paths), ['relay']);
  await screenshot(a, '1-forced-relay-alpha');

  // And back: a new DataChannel comes up and the path switches to direct again.
  const t2 = Date.now();
  await a.click('#force-relay');
  await waitPaths(a, 'direct', 1, 15000);
  await waitPaths(b, 'direct', 1, 15000);
  t.diagnostic(`back to direct in ${Date.now() - t2} ms`);
  const logB = await b.evaluate(() => window.fsp2pDemo.log.filter((l) => l.includes('path to peer')));
  assert.ok(logB.some((l) => l.includes('direct → relay')), logB.join('\n'));
  assert.ok(logB.some((l) => l.includes('relay → direct')), logB.join('\n'));
  await closePages(a, b);
});

test('1b. late direct path: relay first (deadline 1 ms), then switches to direct by itself', { timeout: 60000 }, async (t) => {
  const a = await openDemo({ create: 1, name: 'Charlie', deadline: 1 }, 'Charlie');
  const code = await sessionCode(a);
  const b = await openDemo({ join: code, name: 'Delta', deadline: 1 }, 'Delta');
  await sessionCode(b);
  await waitPaths(a, 'direct', 1);
  await waitPaths(b, 'direct', 1);
  for (const p of [a, b]) {
    const log = await p.evaluate(() => window.fsp2pDemo.log.filter((l) => l.includes('path to peer')));
    t.diagnostic(`${p.label}: ${log.map((l) => l.slice(13)).join(', ')}`);
    assert.ok(log.some((l) => l.includes('connecting → relay')), log.join('\n'));
    assert.ok(log.some((l) => l.includes('relay → direct')), log.join('\n'));
  }
  await closePages(a, b);
});

test('2. forced relay: force-relay option, and ICE that cannot connect → datagram relay', { timeout: 90000 }, async (t) => {
  // 2a: the force-relay option: no RTCPeerConnection at all.
  const a = await openDemo({ create: 1, name: 'Echo', relay: 1 }, 'Echo');
  const code = await sessionCode(a);
  const b = await openDemo({ join: code, name: 'Foxtrot', relay: 1 }, 'Foxtrot');
  await sessionCode(b);
  const [ida, idb] = [await peerId(a), await peerId(b)];
  await waitPaths(a, 'relay', 1, 5000);
  await waitPaths(b, 'relay', 1, 5000);
  for (const p of [a, b]) {
    assert.equal(await p.evaluate(() => [...window.fsp2pDemo.client.links.values()].every((l) => l.pc === null)), true);
  }
  await installProbe(a);
  await installProbe(b);
  const t1 = Date.now();
  // Paced under the server's default 500 relay frames/s per connection (the demo adds 60/s).
  await Promise.all([sendProbes(a, idb, 500, 25, 100), sendProbes(b, 0, 500, 25, 100)]);
  const ra = await waitProbes(a, { [idb]: 500 }, 5000);
  const rb = await waitProbes(b, { [ida]: 500 }, 5000);
  t.diagnostic(`relay, 500 frames each way in ${Date.now() - t1} ms: A got ${ra.from[idb]}, B got ${rb.from[ida]}`);
  assert.ok(ra.from[idb] >= 500 * RELAY_MIN, `Echo received ${JSON.stringify(ra)}`);
  assert.ok(rb.from[ida] >= 500 * RELAY_MIN, `Foxtrot received ${JSON.stringify(rb)}`);
  assert.equal(ra.bad + rb.bad, 0, 'corrupted payloads');
  assert.deepEqual(Object.keys(ra.paths), ['relay']);
  assert.deepEqual(Object.keys(rb.paths), ['relay']);
  await waitIn(a, (id) => {
    const r = window.fsp2pDemo.remote.get(id);
    return r && r.rxRate > 30 && r.path === 'relay';
  }, idb, 5000, 'aircraft state over the relay');
  await screenshot(a, '2-relay-echo');
  await screenshot(b, '2-relay-foxtrot');
  await closePages(a, b);

  // 2b: WebRTC is tried but cannot connect (no ICE servers, TURN-only policy): fallback after the deadline.
  const t2 = Date.now();
  const c = await openDemo({ create: 1, name: 'Golf', ice: 'none', policy: 'relay', deadline: 1500 }, 'Golf');
  const code2 = await sessionCode(c);
  const d = await openDemo({ join: code2, name: 'Hotel', ice: 'none', policy: 'relay', deadline: 1500 }, 'Hotel');
  await sessionCode(d);
  const [idc, idd] = [await peerId(c), await peerId(d)];
  await waitPaths(c, 'relay', 1, 10000);
  await waitPaths(d, 'relay', 1, 10000);
  t.diagnostic(`ICE impossible: fell back to the relay ${Date.now() - t2} ms after opening the pages`);
  const pcs = await c.evaluate(() => window.fsp2pDemo.peers().map((p) => p.connectionState));
  assert.notDeepEqual(pcs, ['connected'], 'a direct connection came up although ICE could not connect');
  await installProbe(c);
  await installProbe(d);
  await Promise.all([sendProbes(c, 0, 200, 25, 100), sendProbes(d, idc, 200, 25, 100)]);
  const rc = await waitProbes(c, { [idd]: 200 }, 5000);
  const rd = await waitProbes(d, { [idc]: 200 }, 5000);
  t.diagnostic(`relay after failed ICE: Golf got ${rc.from[idd]}/200, Hotel got ${rd.from[idc]}/200`);
  assert.ok(rc.from[idd] >= 200 * RELAY_MIN && rd.from[idc] >= 200 * RELAY_MIN, JSON.stringify([rc, rd]));
  assert.deepEqual(Object.keys(rc.paths), ['relay']);
  await screenshot(d, '2-ice-failed-hotel');
  await closePages(c, d);
});

test('3. three pages in one session: relay fan-out reaches both others; another session receives nothing', { timeout: 90000 }, async (t) => {
  const q = { relay: 1, tx: 0 };
  const a = await openDemo({ ...q, create: 1, name: 'India' }, 'India');
  const code = await sessionCode(a);
  const b = await openDemo({ ...q, join: code, name: 'Juliet' }, 'Juliet');
  const c = await openDemo({ ...q, join: code, name: 'Kilo' }, 'Kilo');
  await sessionCode(b);
  await sessionCode(c);
  // A second session at the same time.
  const d = await openDemo({ ...q, create: 1, name: 'Lima' }, 'Lima');
  const code2 = await sessionCode(d);
  assert.notEqual(code2, code);
  const e = await openDemo({ ...q, join: code2, name: 'Mike' }, 'Mike');
  await sessionCode(e);
  const one = [a, b, c];
  const two = [d, e];
  for (const p of one) await waitPaths(p, 'relay', 2, 5000);
  for (const p of two) await waitPaths(p, 'relay', 1, 5000);
  const ids = new Map();
  for (const p of [...one, ...two]) ids.set(p, await peerId(p));
  for (const p of [...one, ...two]) await installProbe(p);
  const before = await Promise.all(one.map((p) => p.evaluate(() => ({ ...window.fsp2pDemo.client.stats }))));

  const N = 200;
  const t1 = Date.now();
  await Promise.all([...one, ...two].map((p) => sendProbes(p, 0, N, 20, 100)));
  await sleep(200);
  t.diagnostic(`server: ${await relayMetrics()}`);
  for (const p of one) {
    const expect = Object.fromEntries(one.filter((o) => o !== p).map((o) => [ids.get(o), N]));
    const r = await waitProbes(p, expect, 3000);
    t.diagnostic(`${p.label} (${ids.get(p)}) got ${JSON.stringify(r.from)}`);
    for (const o of one) {
      if (o === p) continue;
      assert.ok((r.from[ids.get(o)] || 0) >= N * RELAY_MIN, `${p.label} from ${o.label}: ${JSON.stringify(r)}`);
    }
    assert.deepEqual(Object.keys(r.from).map(Number).sort(), one.filter((o) => o !== p).map((o) => ids.get(o)).sort(),
      `${p.label} received from outside its session`);
    assert.equal(r.bad, 0);
  }
  for (const p of two) {
    const other = ids.get(p === d ? e : d);
    const r = await waitProbes(p, { [other]: N }, 3000);
    assert.deepEqual(Object.keys(r.from).map(Number), [other], `${p.label}: ${JSON.stringify(r.from)}`);
    assert.ok(r.from[other] >= N * RELAY_MIN, `${p.label}: ${JSON.stringify(r.from)}`);
  }
  t.diagnostic(`fan-out of ${N} frames from each of 5 pages checked in ${Date.now() - t1} ms`);
  // One upload per frame: the server did the fan-out (relay frame to peer 0).
  const afterStats = await Promise.all(one.map((p) => p.evaluate(() => ({ ...window.fsp2pDemo.client.stats }))));
  afterStats.forEach((s, i) => {
    assert.equal(s.relayFramesSent - before[i].relayFramesSent, N, `${one[i].label} uploaded ${s.relayFramesSent - before[i].relayFramesSent} relay frames for ${N} sends`);
  });

  // A page alone in its session: sends go nowhere and nothing arrives.
  const f = await openDemo({ ...q, create: 1, name: 'November' }, 'November');
  await sessionCode(f);
  await installProbe(f);
  assert.equal(await sendProbes(f, 0, 10, 10, 0), 0);
  await Promise.all(one.map((p) => sendProbes(p, 0, 20, 20, 0)));
  await sleep(500);
  assert.deepEqual(await probeResult(f), { count: 0, bad: 0, from: {}, paths: {} });
  // Turn the demo's 60 Hz aircraft state on for the screenshot: two remote aircraft over the relay.
  for (const p of one) await p.evaluate(() => window.fsp2pDemo.setSending(true));
  await waitIn(c, () => [...window.fsp2pDemo.remote.values()].filter((r) => r.rxRate > 30).length === 2, null, 5000, 'two aircraft at ~60 Hz');
  await screenshot(c, '3-three-pages-kilo');

  // The host leaves (the demo's Leave: LeaveSession, then close): the others get PeerLeft at
  // once, then HostChanged naming the longest-present peer.
  const t2 = Date.now();
  await a.evaluate(() => window.fsp2pDemo.leave());
  assert.equal(await a.evaluate(() => window.fsp2pDemo.client), null);
  for (const p of [b, c]) {
    const hostLine = await waitIn(p, (gone) => {
      const log = window.fsp2pDemo.log;
      return log.some((l) => l.endsWith(`peer ${gone} left (Left)`)) && log.find((l) => l.includes('host is now peer'));
    }, ids.get(a), 5000, 'PeerLeft and HostChanged');
    assert.match(hostLine, new RegExp(`host is now peer ${ids.get(b)}$`));
    assert.equal(await p.evaluate(() => window.fsp2pDemo.client.session.host), ids.get(b));
    await waitPaths(p, 'relay', 1, 2000);
  }
  t.diagnostic(`host left → PeerLeft + HostChanged seen in ${Date.now() - t2} ms`);
  await closePages(a, b, c, d, e, f);
});

test('4. wrong certificate hash and wrong join code: clear errors, no hang', { timeout: 60000 }, async (t) => {
  // Wrong certificate hash: WebTransport's handshake fails; the page says what to check.
  let t0 = Date.now();
  const a = await openDemo({ create: 1, name: 'Oscar', certHash: '00'.repeat(32) }, 'Oscar');
  const msg = await waitIn(a, () => {
    const e = document.getElementById('error');
    return !e.hidden && e.textContent;
  }, null, 15000, 'an error message');
  t.diagnostic(`wrong hash → error after ${Date.now() - t0} ms: ${msg}`);
  assert.match(msg, /WebTransport connection to https:\/\/127\.0\.0\.1:\d+\/signal failed/);
  assert.match(msg, /certificate hash/);
  assert.equal(await a.getAttribute('#status', 'data-state'), 'error');
  await screenshot(a, '4-wrong-cert-hash');

  // Wrong join code: Error 10 unknown_session, shown in the page.
  t0 = Date.now();
  const b = await openDemo({ join: 'ZZZ-ZZZ', name: 'Papa' }, 'Papa');
  const msg2 = await waitIn(b, () => {
    const e = document.getElementById('error');
    return !e.hidden && e.textContent;
  }, null, 15000, 'an error message');
  t.diagnostic(`wrong code → error after ${Date.now() - t0} ms: ${msg2}`);
  assert.match(msg2, /^unknown_session \(10\): /);
  await screenshot(b, '4-wrong-join-code');

  // The same through the library API: a rejected promise and an error event, with code and name.
  const api = await b.evaluate(async ([port, hash]) => {
    const { FlightSimP2P } = await import('./fsp2p.js');
    const out = {};
    const c = new FlightSimP2P({ port, certHash: hash, name: 'api' });
    const events = [];
    c.addEventListener('error', (e) => events.push({ code: e.detail.code, name: e.detail.name }));
    c.connect();
    try {
      await c.joinSession('ZZZZZZ');
      out.join = 'resolved?!';
    } catch (e) {
      out.join = { code: e.code, name: e.codeName, fatal: e.fatal, message: e.message };
    }
    out.events = events;
    out.stillConnected = c.state;
    // The connection stays usable: create a session after the failed join.
    out.created = (await c.createSession()).code.length;
    out.left = await c.leaveSession();
    out.session = c.session;
    c.close();
    // Wrong hash through the API: connect() rejects.
    const t0 = performance.now();
    const bad = new FlightSimP2P({ port, certHash: 'ab'.repeat(32), connectTimeoutMs: 8000 });
    try {
      await bad.connect();
      out.badHash = 'resolved?!';
    } catch (e) {
      out.badHash = { code: e.code, name: e.codeName, ms: Math.round(performance.now() - t0) };
    }
    // Nothing listening on the port: also a rejection, bounded by connectTimeoutMs.
    const t1 = performance.now();
    const none = new FlightSimP2P({ port: port + 1, certHash: hash, connectTimeoutMs: 4000 });
    try {
      await none.connect();
      out.noServer = 'resolved?!';
    } catch (e) {
      out.noServer = { code: e.code, name: e.codeName, ms: Math.round(performance.now() - t1) };
    }
    return out;
  }, [udpPort, certHex]);
  t.diagnostic(`API: ${JSON.stringify(api)}`);
  assert.deepEqual({ code: api.join.code, name: api.join.name, fatal: api.join.fatal }, { code: 10, name: 'unknown_session', fatal: false });
  assert.deepEqual(api.events, [{ code: 10, name: 'unknown_session' }]);
  assert.equal(api.stillConnected, 'connected');
  assert.equal(api.created, 6);
  assert.equal(api.left, 'Left');
  assert.equal(api.session, null);
  assert.equal(api.badHash.name, 'connect_failed');
  assert.equal(api.noServer.name, 'connect_failed');
  assert.ok(api.noServer.ms < 6000);
  await closePages(a, b);
});

test('5. closing the WebTransport session with code 0 leaves at once, without the resume grace (PROTOCOL.md §1)', {
  timeout: 30000,
  // The browser closes with a CLOSE_WEBTRANSPORT_SESSION capsule (code 0); the server must take it
  // as leaving for good (it reads the code from wtransport's driver errors).
}, async (t) => {
  const a = await openDemo({ create: 1, name: 'Quebec', relay: 1, tx: 0 }, 'Quebec');
  const code = await sessionCode(a);
  const b = await openDemo({ join: code, name: 'Romeo', relay: 1, tx: 0 }, 'Romeo');
  await sessionCode(b);
  const ida = await peerId(a);
  const t0 = Date.now();
  // close() only: no LeaveSession, just the WebTransport close with code 0.
  await a.evaluate(() => window.fsp2pDemo.client.close('test: close code 0'));
  try {
    await waitIn(b, (gone) => window.fsp2pDemo.log.some((l) => l.endsWith(`peer ${gone} left (Left)`)), ida, 5000, 'PeerLeft { Left }');
    t.diagnostic(`PeerLeft after ${Date.now() - t0} ms`);
  } finally {
    const log = await b.evaluate(() => window.fsp2pDemo.log.slice(-3));
    t.diagnostic(`Romeo's last events: ${log.join(' | ')}`);
    await closePages(a, b);
  }
});
