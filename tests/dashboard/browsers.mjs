// The browser clients of the dashboard test (tests/dashboard/run.sh): headless Chromium pages
// running the real browser client (client/web, the demo page each server serves with --web-dir)
// against the real servers, so that direct and TURN paths, WebRTC setup milestones, ICE failures
// and candidate types reach the dashboard from clients that measured them.
//
// One Chromium, five pages (each flies its aircraft at 60 Hz, as the demo does):
//   node 1: a pair on the direct path (ICE policy all: host candidates win on this machine);
//   node 2: a pair forced through TURN (iceTransportPolicy relay, the real coturn that run.sh
//           started and both servers hand out in their Welcome): path `turn`;
//   node 2: a page whose ICE fails for real (TURN-only policy and no ICE server: nothing to
//           gather, `no_candidates`), hosting a session that a Rust client (FSP2P_REPORTER
//           --join CODE) joins: it offers to it, fails, and both fly on the relay.
// Once every page is on its path and has sent a report with what is checked, it prints
// "browsers: ready" and keeps the pages flying until SIGTERM/SIGINT; then it closes the
// browser and ends the Rust client it started. Any failure before that: exit 1, with the
// pages' logs.
//
// Environment: NODE1_HTTP, NODE2_HTTP, NODE1_QUIC, NODE2_QUIC (host:port), NODE2_CERT_HASH
// (hex, for the Rust client), FSP2P_REPORTER (the example binary), ART (artifacts folder),
// CHROMIUM (tests/browser/support.mjs). playwright-core: tests/browser/node_modules.
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import { launchChromium } from '../browser/support.mjs';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`browsers: ${k} is not set`);
  return v;
};
const [http1, http2, quic1, quic2] = ['NODE1_HTTP', 'NODE2_HTTP', 'NODE1_QUIC', 'NODE2_QUIC'].map(env);
const hash2 = env('NODE2_CERT_HASH');
const reporterBin = env('FSP2P_REPORTER');
const art = env('ART');
const port = (hostPort) => hostPort.split(':').pop();
const log = (s) => console.log(`browsers: ${s}`);

let browser = null;
let reporter = null;
const pages = [];

async function shutdown(code) {
  if (browser) await browser.close().catch(() => {});
  browser = null;
  if (reporter && reporter.exitCode === null) reporter.kill('SIGTERM');
  process.exit(code);
}
process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));

/** Open the demo page of the node at `http` (its QUIC port `quic`) with these query parameters. */
async function open(label, http, quic, q) {
  const page = await (await browser.newContext()).newPage();
  page.label = label;
  page.lines = [];
  page.on('console', (m) => page.lines.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => page.lines.push(`[pageerror] ${e.message}`));
  const params = new URLSearchParams({ port: port(quic), name: label, ...q });
  await page.goto(`http://localhost:${port(http)}/?${params}`);
  await page.waitForFunction(() => !!window.fsp2pDemo, null, { timeout: 15000 });
  pages.push(page);
  return page;
}

/** Wait for `fn` in the page; on timeout, throw with the page's state and console. */
async function waitIn(page, fn, arg, timeout, what) {
  try {
    return await (await page.waitForFunction(fn, arg, { timeout, polling: 100 })).jsonValue();
  } catch {
    const state = await page.evaluate(() => ({
      log: window.fsp2pDemo.log.slice(-15), peers: window.fsp2pDemo.peers(), reports: window.fsp2pDemo.reports.slice(-3),
    })).catch((e) => String(e));
    throw new Error(`${page.label}: no ${what} within ${timeout} ms\nstate: ${JSON.stringify(state)}\n` +
      `console:\n${page.lines.slice(-15).join('\n')}`);
  }
}

const code = (page) => waitIn(page, () => window.fsp2pDemo.client && window.fsp2pDemo.client.session
  && window.fsp2pDemo.client.session.code, null, 15000, 'session');

/**
 * Every peer of the page on `path`, and a report sent with a link on it, the `milestone`
 * (kind/path), and when given the candidate type bit `cand` (host 1, srflx 2, relay 4, prflx 8)
 * and the ICE failure `fail`.
 * @param {{milestone: string, cand?: number, fail?: string}} want
 */
async function settled(page, path, want) {
  await waitIn(page, (path) => {
    const peers = window.fsp2pDemo.peers();
    return peers.length === 1 && peers.every((p) => p.path === path);
  }, path, 20000, `peer on path ${path}`);
  return waitIn(page, ([path, want]) => {
    const rs = window.fsp2pDemo.reports;
    return rs.some((r) => r.links.some((l) => l.path === path))
      && rs.some((r) => r.setup.some((m) => `${m.kind}/${m.path}` === want.milestone))
      && (!want.cand || rs.some((r) => r.candidates & want.cand))
      && (!want.fail || rs.some((r) => r.iceFailures.some((f) => f.reason === want.fail)));
  }, [path, want], 20000, `report: links on ${path}, ${JSON.stringify(want)}`);
}

async function main() {
  const t0 = Date.now();
  browser = await launchChromium();
  log(`Chromium ${browser.version()}`);

  // Node 1: the direct pair.
  const a = await open('Alfa', http1, quic1, { create: 1 });
  const b = await open('Bravo', http1, quic1, { join: await code(a) });
  // Node 2: the TURN pair (TURN-only policy, the servers' coturn).
  const c = await open('Charlie', http2, quic2, { create: 1, policy: 'relay' });
  const d = await open('Delta', http2, quic2, { join: await code(c), policy: 'relay' });
  // Node 2: ICE that cannot work (TURN-only, no ICE server), offering to a Rust client.
  const e = await open('Echo', http2, quic2, { create: 1, policy: 'relay', ice: 'none', deadline: 1500 });
  const eCode = await code(e);
  reporter = spawn(reporterBin, ['--server', quic2, '--cert-hash', hash2, '--join', eCode, '--secs', '3600'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = createWriteStream(path.join(art, 'reporter-ice.log'));
  reporter.stdout.pipe(out);
  reporter.stderr.pipe(out);
  reporter.on('exit', (code, sig) => {
    if (browser) {
      console.error(`browsers: the Rust client in Echo's session exited (${code ?? sig}); see ${art}/reporter-ice.log`);
      shutdown(1);
    }
  });

  for (const p of [a, b]) await settled(p, 'direct', { milestone: 'direct/direct', cand: 1 });
  for (const p of [c, d]) await settled(p, 'turn', { milestone: 'direct/turn', cand: 4 });
  await settled(e, 'relay', { milestone: 'relay/relay', fail: 'no_candidates' });
  for (const p of pages) {
    const rs = await p.evaluate(() => window.fsp2pDemo.reports);
    const kinds = [...new Set(rs.flatMap((r) => r.setup.map((m) => `${m.kind}/${m.path}`)))].sort();
    const fails = rs.flatMap((r) => r.iceFailures.map((f) => f.reason));
    const cands = rs.reduce((m, r) => m | r.candidates, 0);
    const links = rs.at(-1).links.map((l) => `${l.path}/${l.grade}`);
    log(`${p.label}: ${rs.length} reports; links ${links}; milestones ${kinds.join(' ')}; candidates mask ${cands}` +
      `${fails.length ? `; ICE failures ${fails}` : ''}`);
  }
  log(`ready in ${Date.now() - t0} ms (node 1: direct pair; node 2: TURN pair, ICE-failed page + Rust client)`);
}

main().catch(async (err) => {
  console.error(`browsers: FAIL: ${err.stack || err}`);
  await shutdown(1);
});
