// Real processes for a browser test file (servers, redis-server): each is spawned with its
// output in test-artifacts/browser/PREFIX-NAME.log, and stopped, with the file's other
// clean-ups (browsers, proxies) and its temporary directory, once the file's tests are done.
// Shared by regions-e2e.test.mjs and move-e2e.test.mjs.

import { after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, createWriteStream } from 'node:fs';
import net from 'node:net';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const ARTIFACTS = path.join(ROOT, 'test-artifacts/browser');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** GET http://127.0.0.1:PORT/PATH: its status and body. */
export async function get(port, p) {
  const r = await fetch(`http://127.0.0.1:${port}${p}`);
  return { status: r.status, body: await r.text() };
}

/** Poll `fn` every 100 ms until it gives a truthy value (returned); fail after `ms`. */
export async function waitFor(what, fn, ms = 30000) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn().catch(() => null);
    if (v) return v;
    if (Date.now() - t0 > ms) assert.fail(`${what} within ${ms} ms`);
    await sleep(100);
  }
}

/** A TCP port free on 127.0.0.1 now. */
export function freeTcpPort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {any} */ (s.address());
      s.close(() => resolve(port));
    });
  });
}

/** A UDP port free on 127.0.0.1 now. */
export function freeUdpPort() {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * The processes of one test file, logged as `${prefix}-${name}.log`.
 * `start(name, argv)` spawns one; `onCleanup(fn)` runs `fn` first when the file ends
 * (last registered, first run); `tempDir()` makes the file's temporary directory.
 */
export function processes(prefix) {
  const procs = [];
  const closers = [];
  let tmp = '';
  after(async () => {
    for (const c of closers.reverse()) await Promise.resolve(c()).catch(() => {});
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
    await sleep(300);
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });
  return {
    start(name, argv) {
      mkdirSync(ARTIFACTS, { recursive: true });
      const log = createWriteStream(path.join(ARTIFACTS, `${prefix}-${name}.log`));
      const p = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', RUST_LOG: process.env.RUST_LOG || 'info' } });
      p.stdout.pipe(log);
      p.stderr.pipe(log);
      procs.push(p);
      return p;
    },
    /** A redis-server on a free port, answering; its port. */
    async startRedis() {
      if (spawnSync('sh', ['-c', 'command -v redis-server']).status !== 0) {
        throw new Error('redis-server not found (scripts/deps.sh installs it)');
      }
      const port = await freeTcpPort();
      const redis = this.start('redis', ['redis-server', '--port', String(port), '--save', '', '--appendonly', 'no', '--bind', '127.0.0.1']);
      const answers = () => new Promise((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => { s.end(); resolve(true); });
        s.on('error', () => resolve(false));
      });
      const end = Date.now() + 20000;
      while (!(await answers())) {
        if (redis.exitCode !== null || Date.now() > end) throw new Error(`redis-server on ${port} did not start (${prefix}-redis.log)`);
        await sleep(100);
      }
      return port;
    },
    onCleanup(fn) {
      closers.push(fn);
    },
    tempDir() {
      tmp = mkdtempSync(path.join(tmpdir(), `fsp2p-${prefix}-`));
      return tmp;
    },
  };
}
