// Live test: a C# WebRTCP2PService and a headless Chromium page share a session.
//
//   node tests/csharp/browser_peer.mjs --http 127.0.0.1:8080 --udp 4433 -- mono live-browser-tests.exe ws://127.0.0.1:8080/ws
//
// Runs the C# half (the command after "--", tests/csharp/LiveBrowserTests.cs), which
// hosts a session and prints "session CODE PEERID". Then opens the server's demo page
// in headless Chromium, loads client/web/fsp2p.js into it and joins that session with
// the page's default transport choice (WebTransport, WebSocket as fallback). The page:
//  - receives the C#'s hub message (Chat) and sends its own;
//  - invokes the hub method Add on the host (the C# service answers, as "the host is the hub");
//  - receives the C#'s flight data and sends its own through the relay (the page is forced
//    to the relay: mono has no SIPSorcery, so there is no direct path to this C# service).
// Flight data is resent every 50 ms until the other side confirms it with a hub message.
// No timing assertions: every wait is generous and ends as soon as its condition holds.
//
// Environment: CHROMIUM (default /usr/bin/chromium). playwright-core comes from tests/browser
// (npm ci there). Output: the C# half's lines, then this side's, and "N passed, N failed" last
// (both halves); the exit status is non-zero if anything failed.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { existsSync } from 'node:fs';
import { CHROMIUM, launchChromium } from '../browser/support.mjs';

const WAIT_MS = 60000;

const argv = process.argv.slice(2);
const sep = argv.indexOf('--');
const opt = (name) => {
  const i = argv.indexOf(name);
  return i >= 0 && (sep < 0 || i < sep) ? argv[i + 1] : undefined;
};
const httpAddr = opt('--http');
const udpPort = Number(opt('--udp'));
const child = sep >= 0 ? argv.slice(sep + 1) : [];
if (!httpAddr || !udpPort || child.length === 0) {
  console.error('usage: browser_peer.mjs --http HOST:PORT --udp PORT -- <C# peer command...>');
  process.exit(2);
}

let passed = 0;
let failed = 0;
function report(ok, what, detail) {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} page: ${what}${!ok && detail ? ` (${detail})` : ''}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --- the C# half ---------------------------------------------------------------------------

const cs = spawn(child[0], child.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
let csExit = null;
const csExited = new Promise((resolve) => cs.on('exit', (code, signal) => { csExit = { code, signal }; resolve(); }));
let csSummary = null;
let session = null;
createInterface({ input: cs.stdout }).on('line', (line) => {
  const s = /^session (\S+) (\d+)$/.exec(line);
  if (s) {
    session = { code: s[1], host: Number(s[2]) };
    console.log(`C# host created session ${s[1]} (peer ${s[2]})`);
    return;
  }
  const sum = /^(\d+) passed, (\d+) failed$/.exec(line);
  if (sum) {
    csSummary = { passed: Number(sum[1]), failed: Number(sum[2]) };
    return;
  }
  console.log(line);
});
createInterface({ input: cs.stderr }).on('line', (line) => console.error(`C# stderr: ${line}`));

/** Polls cond() every 50 ms until it is truthy (returned), WAIT_MS passes, or the C# half exits. */
async function until(cond, ms = WAIT_MS) {
  const t0 = Date.now();
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (csExit || Date.now() - t0 > ms) return null;
    await sleep(50);
  }
}

// --- the page ------------------------------------------------------------------------------

/** Runs in the page: a FlightSimP2P client of its own (listeners before connecting), joins, sends. */
async function pageMain({ code, udpPort }) {
  const m = await import(new URL('/fsp2p.js', location.href).href);
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  const t = {
    log: [], transport: null, joined: null, chat: null, invoke: null, flight: null, confirmed: false, sent: 0,
  };
  window.__t = t;
  const certHash = await m.FlightSimP2P.fetchCertHash();
  // forceRelay: no WebRTC attempt (the C# service under mono has no SIPSorcery to answer it).
  // Datagrams may wait up to 5 s in Chromium's queues on a busy machine (default 100 ms).
  const c = new m.FlightSimP2P({ port: udpPort, certHash, name: 'chromium', forceRelay: true, datagramMaxAgeMs: 5000 });
  window.__client = c;
  const hub = (to, obj) => c.sendApp(to, enc.encode(JSON.stringify(obj)));
  c.addEventListener('appsignal', (e) => {
    const { from, data } = e.detail;
    let j;
    try {
      j = JSON.parse(dec.decode(data));
    } catch {
      t.log.push(`non-JSON app data from ${from}`);
      return;
    }
    t.log.push(`hub from ${from}: ${JSON.stringify(j)}`);
    if (j.type === 'result' || j.type === 'error') {
      if (j.id === 1) t.invoke = { from, ...j };
    } else if (j.name === 'Chat') {
      t.chat = { from, args: j.args };
    } else if (j.name === 'GotFlight') {
      t.confirmed = true;
    }
  });
  c.addEventListener('message', (e) => {
    const { from, data, path } = e.detail;
    if (data.length !== 3 || data[0] !== 0xcc || t.flight) return;
    t.flight = { from, data: [...data], path };
    hub(from, { name: 'GotFlight', args: [] });
  });
  c.addEventListener('error', (e) => t.log.push(`error ${e.detail.name}: ${e.detail.message}`));
  await c.connect();
  t.transport = c.transport;
  const s = await c.joinSession(code);
  t.joined = { code: s.code, host: s.host, me: c.peerId };
  hub(s.host, { name: 'Chat', args: ['from chromium', 2] });
  hub(s.host, { type: 'invoke', id: 1, name: 'Add', args: [20, 22] });
  let seq = 0;
  const timer = setInterval(() => {
    if (t.confirmed) {
      clearInterval(timer);
      return;
    }
    if (c.send(s.host, new Uint8Array([0xee, 0x42, seq & 0xff]))) t.sent++;
    seq++;
  }, 50);
  return t.joined;
}

let browser = null;
let page = null;
const pageLog = [];

async function pageState() {
  return page.evaluate(() => (window.__t ? { ...window.__t, log: window.__t.log.slice(-20) } : null)).catch(() => null);
}

async function runPage() {
  const s = await until(() => session);
  if (!s) {
    report(false, 'the C# host created a session', csExit ? `C# half exited ${JSON.stringify(csExit)}` : 'timeout');
    return;
  }
  browser = await launchChromium({ timeout: WAIT_MS });
  page = await (await browser.newContext()).newPage();
  page.on('console', (msg) => pageLog.push(`[${msg.type()}] ${msg.text()}`));
  page.on('pageerror', (e) => pageLog.push(`[pageerror] ${e.message}`));
  const url = `http://${httpAddr}/`;
  // A network hiccup while loading is the browser's business: load once more.
  if (!(await page.goto(url, { timeout: WAIT_MS }).then(() => true, () => false))) {
    await page.goto(url, { timeout: WAIT_MS });
  }
  let joined = null;
  let joinError = '';
  try {
    joined = await Promise.race([
      page.evaluate(pageMain, { code: s.code, udpPort }),
      sleep(WAIT_MS).then(() => { throw new Error('timeout'); }),
    ]);
  } catch (e) {
    joinError = String(e.message || e);
  }
  const st0 = await pageState();
  report(!!joined && joined.host === s.host && joined.code === s.code,
    `connected (${st0 && st0.transport}) and joined session ${s.code} hosted by the C# service`,
    joinError || JSON.stringify(joined));
  if (!joined) return;

  const chat = await until(async () => (await pageState())?.chat);
  report(!!chat && chat.from === s.host && JSON.stringify(chat.args) === '["from C#",1]',
    'hub message from the C# service (Chat "from C#", 1)', JSON.stringify(chat));
  const invoke = await until(async () => (await pageState())?.invoke);
  report(!!invoke && invoke.type === 'result' && invoke.result === 42 && invoke.from === s.host,
    'invoke Add(20, 22) answered by the C# host: 42', JSON.stringify(invoke));
  const flight = await until(async () => (await pageState())?.flight);
  report(!!flight && flight.from === s.host && flight.path === 'relay' && flight.data[0] === 0xcc && flight.data[1] === 0x5a,
    'flight data from the C# service through the relay', JSON.stringify(flight));
  const confirmed = await until(async () => (await pageState())?.confirmed);
  const st = await pageState();
  report(!!confirmed, 'the C# service confirmed the page\'s flight data', `${st && st.sent} snapshots sent`);
  if (failed > 0) {
    console.log(`page state: ${JSON.stringify(st, null, 1)}`);
    console.log(`page console:\n${pageLog.slice(-20).join('\n')}`);
  }
  // Tell the C# half we are done (it stops after that); reliable, so once is enough.
  await page.evaluate((host) => {
    window.__client.sendApp(host, new TextEncoder().encode(JSON.stringify({ name: 'Done', args: [] })));
  }, s.host);
}

try {
  await runPage();
} catch (e) {
  report(false, 'unexpected error', e && e.stack ? e.stack : String(e));
}
await Promise.race([csExited, sleep(WAIT_MS)]);
if (!csExit) {
  cs.kill('SIGKILL');
  report(false, 'the C# half finished', 'killed after waiting');
  await csExited;
}
if (page) await page.evaluate(() => window.__client && window.__client.close('done')).catch(() => {});
if (browser) await browser.close().catch(() => {});
if (!csSummary) {
  report(false, 'the C# half reported its results', `exit ${JSON.stringify(csExit)}`);
  csSummary = { passed: 0, failed: 0 };
}
const p = passed + csSummary.passed;
const f = failed + csSummary.failed + (csExit.code !== 0 && csSummary.failed === 0 ? 1 : 0);
console.log(`${p} passed, ${f} failed`);
process.exit(f === 0 ? 0 : 1);
