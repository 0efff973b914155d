// The browser half of the soak test (tests/soak/run.sh): two FlightSimP2P clients
// (client/web/fsp2p.js, unmodified) in one headless Chromium page, over WebTransport,
// in one session, each relaying a 200-byte frame to the other 30 times a second
// (forceRelay: through the server) for SOAK_SECS, counting every time one took the
// server for lost ('reconnecting') or gave up ('close').
//
//   node tests/soak/browser.mjs HOST PORT CERT_HASH SECS [--tight]
//
// SOAK_WEB_DIR: the client's folder (default client/web), to soak another version of it.
// Runs where the clients are (tests/soak/run.sh starts it in the client namespace):
// it serves the page itself on 127.0.0.1 (a secure context: WebTransport works there).
// --tight: liveTimeoutMs 400 with a Ping every 100 ms, the control run that proves the
// soak test catches false alarms. Prints one JSON line {"client":"js","lost":N,...}.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from '../browser/support.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const [host, port, certHash, secsArg, ...rest] = process.argv.slice(2);
const secs = Number(secsArg);
const tight = rest.includes('--tight');
const PAGE_PORT = 18089;

function log(...a) { console.error('soak browser:', ...a); }

const stat = spawn(process.execPath, [path.join(ROOT, 'tests/nat/static.mjs'), String(PAGE_PORT),
  path.join(ROOT, 'tests/soak/page'), process.env.SOAK_WEB_DIR || path.join(ROOT, 'client/web')],
{ stdio: ['ignore', 'pipe', 'inherit'] });
await new Promise((resolve, reject) => {
  stat.stdout.on('data', (d) => { if (String(d).includes('listening')) resolve(); });
  stat.on('exit', (c) => reject(new Error(`static server exited ${c}`)));
});

let browser;
let code = 0;
try {
  browser = await launchChromium();
  const page = await browser.newPage();
  page.on('console', (m) => log('page:', m.text()));
  await page.goto(`http://127.0.0.1:${PAGE_PORT}/`);
  const opts = {
    host, port: Number(port), certHash, transport: 'webtransport', forceRelay: true,
    datagramMaxAgeMs: 10000, connectTimeoutMs: 30000, requestTimeoutMs: 30000,
    ...(tight ? { liveTimeoutMs: 400, pingIntervalMs: 100 } : {}),
  };
  const result = await page.evaluate(async ({ opts, secs }) => {
    const { FlightSimP2P } = await import('/fsp2p.js');
    const mk = (name) => {
      const net = new FlightSimP2P({ ...opts, name });
      const t = { lost: 0, closed: false, sent: 0, received: 0, last: performance.now(), reasons: [] };
      net.addEventListener('reconnecting', (e) => {
        t.lost++;
        t.reasons.push(String(e.detail.reason && (e.detail.reason.message || e.detail.reason)));
        console.log(`${name}: server lost: ${t.reasons[t.reasons.length - 1]}`);
      });
      net.addEventListener('close', (e) => { t.closed = true; console.log(`${name}: closed ${e.detail.code} ${e.detail.reason}`); });
      net.onmessage = () => { t.received++; t.last = performance.now(); };
      return { net, t };
    };
    const a = mk('js-host');
    const b = mk('js-guest');
    a.net.connect();
    const created = await a.net.createSession();
    b.net.connect();
    await b.net.joinSession(created.code);
    const ids = [a.net.peerId, b.net.peerId];
    console.log(`session ${created.code}, running ${secs} s`);
    const timers = [[a, b], [b, a]].map(([me, other]) => setInterval(() => {
      try { me.net.send(other.net.peerId, new Uint8Array(200)); me.t.sent++; } catch { /* reconnecting */ }
    }, 33));
    await new Promise((r) => setTimeout(r, secs * 1000));
    timers.forEach(clearInterval);
    const out = {};
    [[a, 'host', ids[0]], [b, 'guest', ids[1]]].forEach(([p, label, id]) => {
      const { t, net } = p;
      out[label] = {
        lost: t.lost, closed: t.closed, sent: t.sent, received: t.received, reasons: t.reasons,
        in_session: !t.closed && net.peerId === id && !!net.session && net.session.code === created.code,
        quiet_at_end_s: (performance.now() - t.last) / 1000,
      };
    });
    await Promise.all([a.net.close(), b.net.close()].map((p) => Promise.resolve(p).catch(() => {})));
    return out;
  }, { opts, secs });
  const players = Object.values(result);
  const lost = players.reduce((s, p) => s + p.lost, 0);
  const ok = players.every((p) => p.in_session && !p.closed && p.received > 0);
  console.log(JSON.stringify({ client: 'js', lost, ok, players: result }));
} catch (e) {
  log('failed:', e && e.stack || e);
  console.log(JSON.stringify({ client: 'js', lost: null, ok: false, error: String(e && e.message || e) }));
  code = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
  stat.kill();
}
process.exit(code);
