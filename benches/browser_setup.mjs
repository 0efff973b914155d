// Session setup from a real browser, for the benchmark harness (benches/harness/setup.rs).
//
// Headless Chromium loads the unmodified browser client (client/web/fsp2p.js) from the
// server's HTTP port and times `new FlightSimP2P(...)` → `connect()` + `joinSession(code)`
// resolved (Welcome and SessionJoined received; called in one tick, so Hello and the join
// ride in the CONNECT / upgrade URL, PROTOCOL.md §1 and §10, unless cfg.fastConnect is false),
// over WebTransport through the harness's
// UDP delay proxy and over a plain WebSocket through its TCP delay proxy. Each run uses a
// fresh browser context, so nothing (QUIC session, TLS ticket, socket) is reused; one
// unmeasured warm-up run per transport comes first.
//
// Over TLS (wssUrl: the harness's TLS terminator, as an edge proxy would be) the
// context ignores certificate errors: the dev certificate is pinned by hash for
// WebTransport only.
//
// Input: one JSON argument {http, quicPort, wsUrl, wssUrl?, certHex, code, runs, fastConnect?}.
// Output: one JSON line {chromium, webtransport: [ms...], websocket: [ms...], websocket_tls: [ms...]}, or
// {skipped: "why"} when Chromium or playwright-core is not installed.
import { existsSync } from 'node:fs';
import { CHROMIUM, launchChromium, playwright } from '../tests/browser/support.mjs';

function done(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

const cfg = JSON.parse(process.argv[2] || '{}');
// A stuck browser must not hang the whole benchmark.
setTimeout(() => {
  done({ skipped: 'timed out after 180 s' });
  process.exit(1);
}, 180000).unref();
try {
  playwright();
} catch {
  done({ skipped: 'playwright-core is not installed (npm ci in tests/browser)' });
  process.exit(0);
}
if (!existsSync(CHROMIUM)) {
  done({ skipped: `no Chromium at ${CHROMIUM}` });
  process.exit(0);
}

// The same launcher and flags as the browser tests (tests/browser/support.mjs).
const browser = await launchChromium();
try {
  const result = { chromium: browser.version(), webtransport: [], websocket: [], websocket_tls: [] };
  const ways = [
    ['webtransport', 'webtransport', cfg.wsUrl],
    ['websocket', 'websocket', cfg.wsUrl],
    ...(cfg.wssUrl ? [['websocket_tls', 'websocket', cfg.wssUrl]] : []),
  ];
  for (const [key, transport, wsUrl] of ways) {
    for (let i = 0; i <= cfg.runs; i++) {
      const ctx = await browser.newContext({ ignoreHTTPSErrors: key === 'websocket_tls' });
      const page = await ctx.newPage();
      // Any page of the server's origin: the client is imported from it.
      await page.goto(`http://127.0.0.1:${cfg.http}/healthz`);
      const ms = await page.evaluate(async (c) => {
        const m = await import('/fsp2p.js');
        const start = performance.now();
        const client = new m.FlightSimP2P({
          host: '127.0.0.1', port: c.quicPort, certHash: c.certHex, name: 'bench',
          transport: c.transport, wsUrl: c.wsUrl, forceRelay: true, fastConnect: c.fastConnect !== false,
        });
        client.connect().catch(() => {});
        await client.joinSession(c.code);
        const took = performance.now() - start;
        await client.disconnect('bench done', 500).catch(() => {});
        return took;
      }, { ...cfg, transport, wsUrl });
      if (i > 0) result[key].push(ms); // run 0 warms Chromium up
      await ctx.close();
    }
  }
  done(result);
} finally {
  await browser.close();
}
