// Shared support of the tests that drive a real browser (tests/browser, tests/nat,
// tests/csharp/browser_peer.mjs, benches/browser_setup.mjs): one Chromium launcher and one
// scraper of the server's /metrics. Not a test file (node --test does not run it).
//
// Environment: CHROMIUM, the browser binary (default /usr/bin/chromium). playwright-core comes
// from this folder's node_modules (npm ci here), required when a browser is launched, so that
// a caller without it can say so (benches/browser_setup.mjs skips).
import { createRequire } from 'node:module';
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** The Chromium binary. */
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/**
 * Chromium's flags for every test: headless, no sandbox (root in CI), no GPU, nothing
 * fetched in the background; host candidates as IP addresses, not mDNS names (WebRTC on
 * loopback and in network namespaces has no mDNS responder).
 */
export const CHROMIUM_ARGS = Object.freeze([
  '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-features=WebRtcHideLocalIpsWithMdns',
]);

/** playwright-core, from tests/browser/node_modules (throws if it is not installed). */
export function playwright() {
  return createRequire(path.join(HERE, 'package.json'))('playwright-core');
}

/**
 * Launch headless Chromium with the shared flags.
 * @param {{wrap?: string, dir?: string, name?: string, args?: string[], timeout?: number}} [o]
 *   wrap: a command that runs Chromium elsewhere, e.g. `ip netns exec NS` or `nsenter --net=PATH --`
 *   (Playwright talks to Chromium over inherited pipes, which survive both): a script `dir/name`
 *   (default chromium-wrapped.sh) runs `wrap CHROMIUM "$@"`; args: more flags; timeout: launch
 *   deadline (default 60 s)
 * @returns {Promise<import('playwright-core').Browser>}
 */
export async function launchChromium(o = {}) {
  let executablePath = CHROMIUM;
  if (o.wrap) {
    if (!o.dir) throw new Error('launchChromium: wrap needs a dir for its script');
    executablePath = path.join(o.dir, o.name || 'chromium-wrapped.sh');
    writeFileSync(executablePath, `#!/bin/sh\nexec ${o.wrap} ${CHROMIUM} "$@"\n`);
    chmodSync(executablePath, 0o755);
  }
  return playwright().chromium.launch({
    executablePath, args: [...CHROMIUM_ARGS, ...(o.args || [])], timeout: o.timeout ?? 60000,
  });
}

/**
 * The server's /metrics text (Prometheus exposition) as a map: 'name{labels}' → value.
 * @param {string} text
 * @returns {Map<string, number>}
 */
export function parseMetrics(text) {
  const out = new Map();
  for (const line of String(text).split('\n')) {
    const r = /^(\w+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (r) out.set(r[1], Number(r[2]));
  }
  return out;
}

/**
 * Sum of one metric's samples, optionally only those whose labels contain `labelMatch`.
 * @param {Map<string, number>|string} metrics parseMetrics() of a scrape, or the scrape's text
 * @param {string} name @param {string} [labelMatch]
 */
export function metricSum(metrics, name, labelMatch = '') {
  const m = typeof metrics === 'string' ? parseMetrics(metrics) : metrics;
  let sum = 0;
  for (const [k, v] of m) {
    if (k !== name && !k.startsWith(`${name}{`)) continue;
    if (labelMatch && !k.includes(labelMatch)) continue;
    if (Number.isFinite(v)) sum += v;
  }
  return sum;
}

/** Difference of one sample between two parseMetrics() snapshots. */
export function metricDelta(before, after, key) {
  return (after.get(key) || 0) - (before.get(key) || 0);
}
