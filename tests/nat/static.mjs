// Tiny static HTTP server for the NAT test pages, started INSIDE a player's network
// namespace on 127.0.0.1 so that the page is a secure context (http://127.0.0.1 is
// "potentially trustworthy": WebTransport and serverCertificateHashes work there).
//
//   node tests/nat/static.mjs PORT DIR [DIR...]
//
// Serves GET/HEAD of files from the first DIR that has them ("/" is index.html);
// tests/nat/page first, then client/web (for fsp2p.js, which is used unmodified).
// Prints "listening" on stdout once bound.
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';

const [portArg, ...dirs] = process.argv.slice(2);
if (!portArg || dirs.length === 0) {
  console.error('usage: static.mjs PORT DIR [DIR...]');
  process.exit(2);
}
const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
};

async function find(urlPath) {
  let rel = decodeURIComponent(urlPath.split('?')[0]);
  if (rel.endsWith('/')) rel += 'index.html';
  for (const d of dirs) {
    const root = path.resolve(d);
    const f = path.resolve(root, '.' + rel);
    if (f !== root && !f.startsWith(root + path.sep)) continue;
    try {
      if ((await stat(f)).isFile()) return f;
    } catch {
      // not in this directory
    }
  }
  return null;
}

const server = createServer(async (req, res) => {
  const f = req.method === 'GET' || req.method === 'HEAD' ? await find(req.url || '/') : null;
  if (!f) {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
    return;
  }
  const body = await readFile(f);
  res.writeHead(200, {
    'content-type': TYPES[path.extname(f)] || 'application/octet-stream',
    'cache-control': 'no-store',
  });
  res.end(req.method === 'HEAD' ? undefined : body);
});
server.listen(Number(portArg), '127.0.0.1', () => console.log('listening'));
for (const s of ['SIGTERM', 'SIGINT']) process.on(s, () => process.exit(0));
