// Demo page for the FlightSim P2P browser client: host or join a session, fly
// an "aircraft" whose state is sent to every peer 60 times a second, and watch
// which path (direct / TURN / relay) each peer uses.
//
// Query parameters (all optional):
//   host, port      QUIC/WebTransport server (default: this page's host name, 4433)
//   certHash        hex SHA-256 of the server certificate; default: fetched from /cert-hash;
//                   "none" for a CA-signed certificate
//   name            callsign
//   create=1        host a session at once;  join=CODE  join a session at once
//   relay=1         force relay (no WebRTC)
//   policy=relay    iceTransportPolicy;      ice=none   no ICE servers at all
//   deadline=MS     direct-connection deadline before falling back to the relay
//   transport=auto|webtransport|websocket   signaling transport (default auto: WebTransport,
//                   WebSocket when WebTransport is missing, fails, or is slow)
//   fallbackDelay=MS  with auto: start the WebSocket attempt after this long (default 1000)
//   ws=URL          WebSocket URL (default: this page's origin + /ws)
//   fast=0          old connection sequence: Hello on the control stream, not in the URL
//   live=MS         take the connection for lost after a Ping unanswered this long (default: adaptive, 1.5–10 s from the server round trip)
//   tx=0            do not send aircraft state (tests)
//   regions=eu:40,us:30  FOR TESTS: send these round trips (ms per region) with create/join instead of
//                   measuring (the client's injectRegionRtts), so a regional cluster places or moves the session
import { FlightSimP2P, FspError, httpOfWsUrl } from './fsp2p.js';

const params = new URLSearchParams(location.search);
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

const CALLSIGNS = ['Maverick', 'Goose', 'Iceman', 'Viper', 'Jester', 'Hollywood', 'Merlin', 'Sundown', 'Cougar', 'Stinger'];
const cfg = {
  host: params.get('host') || location.hostname, // fsp2p.js maps localhost to 127.0.0.1
  port: Number(params.get('port') || 4433),
  certHash: params.get('certHash'),
  forceRelay: flag('relay'),
  iceTransportPolicy: /** @type {RTCIceTransportPolicy} */ (params.get('policy') || 'all'),
  iceServers: params.get('ice') === 'none' ? [] : undefined,
  directTimeoutMs: Number(params.get('deadline') || 5000),
  transport: /** @type {'auto'|'webtransport'|'websocket'} */ (params.get('transport') || 'auto'),
  fallbackDelayMs: params.get('fallbackDelay') !== null ? Number(params.get('fallbackDelay')) : undefined,
  wsUrl: params.get('ws') || undefined,
  datagramMaxAgeMs: params.get('maxAge') !== null ? Number(params.get('maxAge')) : undefined,
  fastConnect: params.get('fast') !== '0',
  liveTimeoutMs: params.get('live') !== null ? Number(params.get('live')) : undefined,
  qualityEchoes: params.get('echo') !== '0',
  tx: params.get('tx') !== '0',
  injectRegionRtts: params.get('regions') ? params.get('regions').split(',').map((e) => {
    const [region, ms] = e.split(':');
    return { region, rttMs: Number(ms) };
  }) : null,
};

function flag(name) {
  const v = params.get(name);
  return v !== null && v !== '0' && v !== 'false';
}

/** Errors that answer a create/join request (PROTOCOL.md §6). */
const REQUEST_ERRORS = new Set([9, 10, 11, 12, 13, 14, 16, 17]);
/** Message kinds of the demo's payloads (first byte). Other kinds are ignored. */
const KIND_STATE = 1;
const HZ = 60;

// --- state -----------------------------------------------------------------------------

/** @type {FlightSimP2P|null} */
let client = null;
const me = { x: 0.5, y: 0.5, heading: Math.random() * Math.PI * 2, speed: 0.12, seq: 0, hue: Math.floor(Math.random() * 256) };
const keys = new Set();
/** Remote aircraft by peer id. */
const remote = new Map();
/** Last state timestamp received from each peer and when: echoed back for RTT. */
const echoes = new Map();
/** Link quality history per peer for the sparklines: the last SPARK_SAMPLES of RTT and loss, one a second. */
const history = new Map();
const SPARK_SAMPLES = 60;
/** Every `quality` event of the current client (for the tests), the last 200. */
const qualityEvents = [];
/** Every Report the current client sent (the `report` event), the last 50. */
const reports = [];
const log = [];
const errors = [];
let errorsAtStart = 0;
let starting = false;
/** detail of the client's last `transport` event */
let transportEvent = null;
/** the node the session is on, as its GET /nodes lists itself first: {name, region}, or null */
let node = null;
/** the round trips measured to each region of the cluster (the client's regionRtts()) */
let regions = [];
let txCount = 0;
let txRate = 0;
let lastRateAt = performance.now();

$('name').value = params.get('name') || CALLSIGNS[Math.floor(Math.random() * CALLSIGNS.length)];
if (params.get('join')) $('code').value = params.get('join');

// --- UI helpers ------------------------------------------------------------------------

function addLog(text, isError = false) {
  const t = new Date().toISOString().slice(11, 23);
  log.push(`${t} ${text}`);
  const li = document.createElement('li');
  li.textContent = `${t} ${text}`;
  if (isError) li.className = 'err';
  const ol = $('log');
  ol.prepend(li);
  while (ol.children.length > 200) ol.lastChild.remove();
}

function setStatus(state, text) {
  const s = $('status');
  s.dataset.state = state;
  s.textContent = text;
}

function showError(message) {
  errors.push(message);
  const e = $('error');
  e.textContent = message;
  e.hidden = false;
  addLog(message, true);
}

function clearError() {
  $('error').hidden = true;
  $('error').textContent = '';
}

/** At most `max` UTF-8 bytes, cut between code points. */
function truncateUtf8(s, max) {
  const enc = new TextEncoder();
  let out = '';
  for (const ch of s) {
    if (enc.encode(out + ch).length > max) break;
    out += ch;
  }
  return out;
}

function formatCode(code) {
  return code.length === 6 ? `${code.slice(0, 3)}-${code.slice(3)}` : code;
}

function setBusy(busy) {
  $('host').disabled = busy;
  $('join').disabled = busy;
  $('leave').disabled = !busy;
}

function renderForceRelay() {
  const on = client ? client.forceRelay : cfg.forceRelay;
  const b = $('force-relay');
  b.setAttribute('aria-pressed', String(on));
  b.textContent = `Force relay: ${on ? 'on' : 'off'}`;
}

// --- connecting ------------------------------------------------------------------------

async function certHash() {
  if (cfg.certHash === 'none') return null;
  if (cfg.certHash) return cfg.certHash;
  return FlightSimP2P.fetchCertHash(location.href);
}

/**
 * Connect and create (code = null) or join a session.
 * @param {string|null} code
 */
async function start(code) {
  stop();
  clearError();
  errorsAtStart = errors.length;
  starting = true;
  setBusy(true);
  setStatus('connecting', 'connecting…');
  try {
    const hash = await certHash();
    const c = new FlightSimP2P({
      host: cfg.host,
      port: cfg.port,
      certHash: hash,
      name: truncateUtf8($('name').value.trim(), 64),
      forceRelay: cfg.forceRelay,
      iceTransportPolicy: cfg.iceTransportPolicy,
      iceServers: cfg.iceServers,
      directTimeoutMs: cfg.directTimeoutMs,
      transport: cfg.transport,
      fallbackDelayMs: cfg.fallbackDelayMs,
      wsUrl: cfg.wsUrl,
      datagramMaxAgeMs: cfg.datagramMaxAgeMs,
      fastConnect: cfg.fastConnect,
      liveTimeoutMs: cfg.liveTimeoutMs,
      qualityEchoes: cfg.qualityEchoes,
      injectRegionRtts: cfg.injectRegionRtts,
    });
    client = c;
    $('server-url').textContent = cfg.transport === 'websocket' ? c.options.wsUrl : c.options.url;
    $('transport').textContent = cfg.transport === 'auto' ? 'connecting…' : `${cfg.transport} (forced), connecting…`;
    $('transport').dataset.kind = '';
    wire(c);
    c.connect();
    // In the same tick as connect(): Hello and the request ride in the connection's URL and
    // the answer comes with the server's 200 / 101 (the join code is in that URL: never log it).
    const session = code === null ? await c.createSession() : await c.joinSession(code);
    starting = false;
    if (client !== c) return;
    setStatus('connected', `in session ${formatCode(session.code)} as peer ${c.peerId}`);
  } catch (e) {
    starting = false;
    const msg = e instanceof FspError ? e.message : String(e && e.message ? e.message : e);
    showError(msg);
    setStatus('error', e instanceof FspError ? e.codeName : 'error');
    // A failed join leaves the connection open; close it so the next try starts clean.
    stop(false);
  }
}

/** Leave the session (LeaveSession, then close), as the Leave button does. */
async function leave() {
  const c = client;
  if (c) await c.disconnect('left the demo');
  if (client === null || client === c) stop();
}

/** Ask the connected node who it is (GET /nodes lists the node itself first) and show it. @param {FlightSimP2P} c */
async function showNode(c) {
  const base = httpOfWsUrl(c.server.wsUrl);
  if (!base) return;
  try {
    const r = await fetch(`${base}/nodes`, { cache: 'no-store' });
    const first = (await r.json()).nodes[0];
    if (client !== c || !first) return;
    node = { name: String(first.name), region: first.region === null ? null : String(first.region) };
  } catch {
    return; // an older server without /nodes: nothing to show
  }
  renderNode();
}

function renderNode() {
  $('node').textContent = node ? `${node.name}${node.region ? ` (region ${node.region})` : ''}` : '–';
  $('node').dataset.region = node && node.region ? node.region : '';
}

function renderRegions() {
  $('regions').textContent = regions.length ? regions.map((e) => `${e.region} ${e.rttMs} ms`).join(' · ') : '–';
}

function stop(resetStatus = true) {
  const c = client;
  client = null;
  if (c) c.close('left the demo');
  remote.clear();
  echoes.clear();
  history.clear();
  qualityEvents.length = 0;
  reports.length = 0;
  setBusy(false);
  $('session').hidden = true;
  $('me-id').textContent = '–';
  $('server-rtt').textContent = '–';
  $('transport').textContent = '–';
  $('transport').dataset.kind = '';
  node = null;
  regions = [];
  renderNode();
  renderRegions();
  renderPeers();
  renderForceRelay();
  if (resetStatus) setStatus('idle', 'not connected');
}

/** @param {FlightSimP2P} c */
function wire(c) {
  const on = (type, fn) => c.addEventListener(type, (e) => {
    if (client === c) fn(/** @type {CustomEvent} */ (e).detail);
  });
  on('transport', (d) => {
    transportEvent = d;
    const label = d.kind === 'websocket' ? 'WebSocket' : 'WebTransport';
    $('transport').textContent = `${label}${d.fallbackReason ? ' (fallback)' : ''}`;
    $('transport').title = d.fallbackReason;
    $('transport').dataset.kind = d.kind;
    $('server-url').textContent = d.url;
    addLog(`transport: ${d.kind} ${d.url}${d.fallbackReason ? ` — ${d.fallbackReason}` : ''}`);
  });
  on('welcome', (d) => {
    $('me-id').textContent = String(d.peerId);
    addLog(`welcome: peer ${d.peerId}, ${d.iceServers.length} ICE server(s)`);
    // Which node (and region) this connection reached: a redirect or a move changes it.
    showNode(c);
    regions = c.regionRtts();
    renderRegions();
  });
  on('regions', (d) => {
    regions = d.rtts;
    renderRegions();
    if (d.rtts.length) addLog(`regions measured: ${d.rtts.map((e) => `${e.region} ${e.rttMs} ms`).join(', ')}`);
  });
  // A regional cluster moves the session to a better region (PROTOCOL.md §11, version 5): the
  // library opens the new node's connection before it lets go of the old one, no frame lost.
  on('move', (d) => {
    if (d.event === 'redirect') addLog(`the session moves to node ${d.node}: connecting there, relaying on both meanwhile`);
    else if (d.action === 'reconnect') addLog(`moving to node ${d.node} failed: reconnecting`, true);
  });
  on('moved', (d) => {
    addLog(`the session moved to node ${d.node} (${d.transport}, ${d.ms.toFixed(0)} ms from the redirect to the old connection's end)`);
    showNode(c);
  });
  on('session', (d) => {
    const s = d.session;
    $('session').hidden = false;
    $('session-code').textContent = formatCode(s.code);
    const share = new URL(location.href);
    share.searchParams.delete('create');
    share.searchParams.delete('name');
    share.searchParams.delete('regions');
    share.searchParams.set('join', s.code);
    $('share').setAttribute('href', share.toString());
    $('share').textContent = share.toString();
    addLog(`${d.created ? 'created' : 'joined'} session ${s.code} (host ${s.host}, ${s.peers.length} peer(s))`);
    renderPeers();
  });
  on('peerjoined', (d) => addLog(`peer ${d.peer.id} "${d.peer.name}" joined (${d.peer.client})`));
  on('peerleft', (d) => {
    remote.delete(d.peer);
    echoes.delete(d.peer);
    history.delete(d.peer);
    addLog(`peer ${d.peer} left (${d.reason})`);
  });
  on('peerstatus', (d) => addLog(`peer ${d.peer} is ${d.online ? 'back online' : 'offline (may resume)'}`));
  on('hostchanged', (d) => addLog(`host is now peer ${d.host}`));
  on('pathchange', (d) => addLog(`path to peer ${d.peer}: ${d.previous} → ${d.path}`));
  on('report', (d) => {
    reports.push(d.report);
    if (reports.length > 50) reports.shift();
  });
  on('quality', (d) => {
    qualityEvents.push(d);
    if (qualityEvents.length > 200) qualityEvents.shift();
    if (d.grade !== 'unknown') addLog(`link to peer ${d.peer}: ${d.grade} on ${d.path}${d.rttMs !== null ? `, ${d.rttMs} ms` : ''}`);
    renderPeers();
  });
  on('rtt', (d) => {
    $('server-rtt').textContent = `${d.rttMs.toFixed(1)} ms`;
  });
  on('error', (d) => {
    // Connection and create/join failures reject the promise in start(), which shows them.
    if (d.code !== 0 && !REQUEST_ERRORS.has(d.code)) addLog(`error: ${d.message}`, true);
  });
  on('goingaway', (d) => addLog(`server going away: ${d.message} (reconnect after ${d.reconnectAfterMs} ms)`, true));
  on('sessionleft', (d) => addLog(`left the session (${d.reason})`));
  // A lost connection: the library reconnects by itself and keeps the session (same peer id).
  on('reconnecting', (d) => {
    addLog(`connection lost (${d.reason}); reconnecting as peer ${d.peerId}`, true);
    setStatus('connecting', `reconnecting as peer ${d.peerId}…`);
    $('transport').textContent = 'reconnecting…';
  });
  on('reconnected', (d) => {
    addLog(`reconnected over ${d.transport} after ${d.downtimeMs.toFixed(0)} ms (${d.attempts} attempt(s)), ` +
      `${d.resumed ? `resumed as peer ${d.peerId}` : `new peer id ${d.peerId} (was ${d.previousPeerId})`}`);
    $('me-id').textContent = String(d.peerId);
    const s = c.session;
    setStatus('connected', s ? `in session ${formatCode(s.code)} as peer ${c.peerId}` : `connected as peer ${c.peerId}`);
  });
  on('rejoined', (d) => {
    addLog(`rejoined session ${d.session.code} as peer ${d.peerId} (was ${d.previousPeerId}; the resume came too late)`);
    setStatus('connected', `in session ${formatCode(d.session.code)} as peer ${d.peerId}`);
  });
  on('close', (d) => {
    client = null;
    if (d.code === 0) {
      addLog(`disconnected: ${d.reason}`);
      stop();
      return;
    }
    // While start() waits for create/join, it reports the failure itself.
    const shown = starting || errors.length > errorsAtStart;
    addLog(`connection closed${d.code !== null ? ` (code ${d.code})` : ''}${shown ? '' : `: ${d.reason}`}`, true);
    if (!shown) showError(`Connection closed: ${d.reason}`);
    stop(false);
    setStatus('error', 'disconnected');
  });
  c.onmessage = (from, data, path) => {
    if (client === c) onFlightData(from, data, path);
  };
}

// --- flight data -----------------------------------------------------------------------

function wallNow() {
  return performance.timeOrigin + performance.now();
}

function encodeState() {
  const list = [...echoes.entries()].slice(0, 16);
  const buf = new ArrayBuffer(31 + list.length * 16);
  const v = new DataView(buf);
  v.setUint8(0, KIND_STATE);
  v.setUint32(1, me.seq++, true);
  v.setFloat64(5, wallNow(), true);
  v.setFloat32(13, me.x, true);
  v.setFloat32(17, me.y, true);
  v.setFloat32(21, me.heading, true);
  v.setFloat32(25, me.speed, true);
  v.setUint8(29, me.hue);
  v.setUint8(30, list.length);
  const t = performance.now();
  list.forEach(([peer, e], i) => {
    const o = 31 + i * 16;
    v.setUint32(o, peer, true);
    v.setFloat64(o + 4, e.sentAt, true);
    v.setFloat32(o + 12, t - e.receivedAt, true);
  });
  return new Uint8Array(buf);
}

function onFlightData(from, data, path) {
  if (data.length < 31 || data[0] !== KIND_STATE) return;
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const seq = v.getUint32(1, true);
  const sentAt = v.getFloat64(5, true);
  let a = remote.get(from);
  if (!a) {
    a = { seq: -1, trail: [], rx: 0, rxRate: 0, rttMs: null, path };
    remote.set(from, a);
  }
  a.rx++;
  a.path = path;
  // No staleness check needed here: the library drops frames older than one it delivered.
  a.seq = seq;
  a.x = v.getFloat32(13, true);
  a.y = v.getFloat32(17, true);
  a.heading = v.getFloat32(21, true);
  a.speed = v.getFloat32(25, true);
  a.hue = v.getUint8(29);
  a.at = performance.now();
  echoes.set(from, { sentAt, receivedAt: performance.now() });
  const n = v.getUint8(30);
  const myId = client ? client.peerId : 0;
  for (let i = 0; i < n && 31 + i * 16 + 16 <= data.length; i++) {
    const o = 31 + i * 16;
    if (v.getUint32(o, true) !== myId) continue;
    const rtt = wallNow() - v.getFloat64(o + 4, true) - v.getFloat32(o + 12, true);
    if (rtt >= 0 && rtt < 60000) a.rttMs = a.rttMs === null ? rtt : a.rttMs * 0.8 + rtt * 0.2;
  }
}

function step(dt) {
  const turn = (keys.has('ArrowLeft') ? -1 : 0) + (keys.has('ArrowRight') ? 1 : 0);
  if (turn) me.heading += turn * 2.2 * dt;
  else me.heading += Math.sin(performance.now() / 1700 + me.hue) * 0.9 * dt; // autopilot wander
  if (keys.has('ArrowUp')) me.speed = Math.min(0.4, me.speed + 0.15 * dt);
  if (keys.has('ArrowDown')) me.speed = Math.max(0.04, me.speed - 0.15 * dt);
  me.x = (me.x + Math.cos(me.heading) * me.speed * dt + 1) % 1;
  me.y = (me.y + Math.sin(me.heading) * me.speed * dt + 1) % 1;
}

let lastTick = performance.now();
function tick() {
  const t = performance.now();
  step(Math.min(0.1, (t - lastTick) / 1000));
  lastTick = t;
  if (cfg.tx && client && client.session && client.links.size) {
    client.send(0, encodeState());
    txCount++;
  }
  if (t - lastRateAt >= 1000) {
    txRate = (txCount * 1000) / (t - lastRateAt);
    txCount = 0;
    for (const a of remote.values()) {
      a.rxRate = (a.rx * 1000) / (t - lastRateAt);
      a.rx = 0;
    }
    lastRateAt = t;
    $('tx-rate').textContent = `${txRate.toFixed(0)} frames/s`;
    sampleQuality();
    renderPeers();
  }
}

// A worker's timer keeps 60 Hz even when this tab is in the background
// (the page's own timers are throttled to 1 Hz there).
function startTicker() {
  try {
    const src = `setInterval(() => postMessage(0), ${Math.floor(1000 / HZ)});`;
    const w = new Worker(URL.createObjectURL(new Blob([src], { type: 'text/javascript' })));
    w.onmessage = tick;
  } catch {
    setInterval(tick, 1000 / HZ);
  }
}

// --- rendering -------------------------------------------------------------------------

const PATH_COLORS = { direct: '#46d17d', turn: '#e8c547', relay: '#ff8a4c', connecting: '#8aa0b4' };

function drawPlane(ctx, x, y, heading, color, label, sub) {
  ctx.save();
  ctx.translate(x, y);
  ctx.rotate(heading);
  ctx.fillStyle = color;
  ctx.beginPath();
  ctx.moveTo(14, 0);
  ctx.lineTo(-10, -9);
  ctx.lineTo(-5, 0);
  ctx.lineTo(-10, 9);
  ctx.closePath();
  ctx.fill();
  ctx.restore();
  ctx.fillStyle = '#dbe6f0';
  ctx.font = '12px system-ui, sans-serif';
  ctx.fillText(label, x + 14, y - 10);
  if (sub) {
    ctx.fillStyle = '#8aa0b4';
    ctx.fillText(sub, x + 14, y + 4);
  }
}

function draw() {
  const canvas = /** @type {HTMLCanvasElement} */ ($('sky'));
  const ctx = canvas.getContext('2d');
  const W = canvas.width;
  const H = canvas.height;
  ctx.fillStyle = '#0a2038';
  ctx.fillRect(0, 0, W, H);
  ctx.strokeStyle = '#13304f';
  ctx.lineWidth = 1;
  for (let gx = 0; gx <= W; gx += 40) {
    ctx.beginPath();
    ctx.moveTo(gx, 0);
    ctx.lineTo(gx, H);
    ctx.stroke();
  }
  for (let gy = 0; gy <= H; gy += 40) {
    ctx.beginPath();
    ctx.moveTo(0, gy);
    ctx.lineTo(W, gy);
    ctx.stroke();
  }
  const t = performance.now();
  for (const [id, a] of remote) {
    if (a.x === undefined) continue;
    const stale = t - a.at > 1000;
    const link = client ? client.links.get(id) : null;
    const name = link ? link.name || `peer ${id}` : `peer ${id}`;
    const color = stale ? '#556677' : `hsl(${(a.hue / 256) * 360} 80% 60%)`;
    // The link's RTT from echoes on its path (as in the peer table); the demo's own state echo before the first.
    const q = client ? client.qualityOf(id) : null;
    const rtt = q && q.rttMs !== null ? q.rttMs : a.rttMs;
    drawPlane(ctx, a.x * W, a.y * H, a.heading, color, `${name} #${id}`, `${a.path}${rtt !== null ? ` ${rtt.toFixed(0)} ms` : ''}${q ? ` · ${q.grade}` : ''}`);
    ctx.strokeStyle = PATH_COLORS[a.path] || '#fff';
    ctx.beginPath();
    ctx.arc(a.x * W, a.y * H, 20, 0, Math.PI * 2);
    ctx.stroke();
  }
  drawPlane(ctx, me.x * W, me.y * H, me.heading, `hsl(${(me.hue / 256) * 360} 90% 65%)`, `${$('name').value || 'me'} (you)`, '');
  requestAnimationFrame(draw);
}

function renderPeers() {
  const tbody = $('peers');
  const peers = client ? client.getPeers() : [];
  tbody.replaceChildren();
  if (!peers.length) {
    const tr = document.createElement('tr');
    tr.className = 'empty';
    tr.innerHTML = '<td colspan="10">no other peers</td>';
    tbody.append(tr);
    return;
  }
  for (const p of peers) {
    const a = remote.get(p.id);
    const tr = document.createElement('tr');
    tr.dataset.peer = String(p.id);
    tr.dataset.path = p.path;
    tr.dataset.grade = p.grade;
    const pathBadge = document.createElement('span');
    pathBadge.className = `path path-${p.path}`;
    pathBadge.textContent = p.path;
    if (p.candidatePair) pathBadge.title = p.candidatePair;
    const gradeBadge = document.createElement('span');
    gradeBadge.className = `grade grade-${p.grade}`;
    gradeBadge.textContent = p.grade;
    gradeBadge.title = `on ${p.path} for ${(p.pathMs / 1000).toFixed(0)} s; jitter ${p.jitterMs === null ? '–' : `${p.jitterMs} ms`}; ` +
      `${p.fpsIn} frames/s in, ${p.fpsOut} out`;
    const cells = [
      String(p.id),
      `${p.name || '—'}${p.host ? ' ★' : ''}`,
      p.client,
      pathBadge,
      gradeBadge,
      // RTT from echoes on the peer's own path (DataChannel or relay); the demo's state echo and ICE's as fallbacks.
      p.rttMs !== null ? `${p.rttMs} ms` : a && a.rttMs !== null ? `${a.rttMs.toFixed(0)} ms` : p.iceRttMs !== null ? `${p.iceRttMs.toFixed(0)} ms (ICE)` : '–',
      `${p.lossPct} %`,
      sparkline(history.get(p.id)),
      String(p.fpsIn),
      !p.online ? 'offline' : p.connectionState === 'none' ? '—' : p.connectionState,
    ];
    for (const c of cells) {
      const td = document.createElement('td');
      if (typeof c === 'string') td.textContent = c;
      else td.append(c);
      tr.append(td);
    }
    tr.title = `stale frames dropped: ${p.staleDropped}`;
    tbody.append(tr);
  }
}

/** Once a second: each peer's RTT and loss into its history (the last SPARK_SAMPLES). */
function sampleQuality() {
  if (!client) return;
  for (const p of client.getPeers()) {
    let h = history.get(p.id);
    if (!h) history.set(p.id, (h = []));
    h.push({ rtt: p.rttMs, loss: p.lossPct });
    if (h.length > SPARK_SAMPLES) h.shift();
  }
}

const SVG = 'http://www.w3.org/2000/svg';

/**
 * An inline SVG sparkline of a peer's history: RTT as a line (scaled to its own maximum, at least
 * 20 ms), loss as bars from the bottom (0–100 %). `data-points` says how many samples it drew.
 * @param {{rtt: number|null, loss: number}[]|undefined} h
 */
function sparkline(h = []) {
  const W = 120;
  const H = 26;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('class', 'spark');
  svg.setAttribute('width', String(W));
  svg.setAttribute('height', String(H));
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  const step = W / (SPARK_SAMPLES - 1);
  const x0 = W - (h.length - 1) * step;
  const rtts = h.map((s) => s.rtt).filter((v) => v !== null);
  const max = Math.max(20, ...rtts) * 1.15;
  const pts = [];
  h.forEach((s, i) => {
    const x = x0 + i * step;
    if (s.loss > 0) {
      const bar = document.createElementNS(SVG, 'rect');
      const bh = Math.max(1, (s.loss / 100) * H);
      bar.setAttribute('class', 'spark-loss');
      bar.setAttribute('x', (x - step / 2).toFixed(1));
      bar.setAttribute('y', (H - bh).toFixed(1));
      bar.setAttribute('width', step.toFixed(1));
      bar.setAttribute('height', bh.toFixed(1));
      svg.append(bar);
    }
    if (s.rtt !== null) pts.push(`${x.toFixed(1)},${(H - 2 - (s.rtt / max) * (H - 4)).toFixed(1)}`);
  });
  const line = document.createElementNS(SVG, 'polyline');
  line.setAttribute('class', 'spark-rtt');
  line.setAttribute('points', pts.join(' '));
  svg.append(line);
  svg.dataset.points = String(pts.length);
  const last = h.length ? h[h.length - 1] : null;
  const title = document.createElementNS(SVG, 'title');
  title.textContent = last ? `RTT ${last.rtt === null ? '–' : `${last.rtt} ms`}, loss ${last.loss} % (last ${h.length} s)` : 'no samples yet';
  svg.append(title);
  return svg;
}

// --- wiring ----------------------------------------------------------------------------

$('host').addEventListener('click', () => start(null));
$('join').addEventListener('click', () => {
  const code = $('code').value.trim();
  if (!code) {
    showError('Type the join code of a session first.');
    return;
  }
  start(code);
});
$('code').addEventListener('keydown', (e) => {
  if (e.key === 'Enter') $('join').click();
});
$('leave').addEventListener('click', () => leave());
$('force-relay').addEventListener('click', () => {
  if (client) client.setForceRelay(!client.forceRelay);
  else cfg.forceRelay = !cfg.forceRelay;
  if (client) cfg.forceRelay = client.forceRelay;
  addLog(`force relay ${cfg.forceRelay ? 'on' : 'off'}`);
  renderForceRelay();
});
addEventListener('keydown', (e) => {
  if (e.target instanceof HTMLInputElement) return;
  if (e.key.startsWith('Arrow')) {
    keys.add(e.key);
    e.preventDefault();
  }
});
addEventListener('keyup', (e) => keys.delete(e.key));
addEventListener('blur', () => keys.clear());
// Leave at once (close code 0) rather than holding the seat for the resume grace period.
addEventListener('pagehide', () => {
  if (client) client.close('page closed');
});

renderForceRelay();
renderPeers();
startTicker();
requestAnimationFrame(draw);

/** Hook for tests and for poking at the demo from the console. */
window.fsp2pDemo = {
  get client() {
    return client;
  },
  cfg,
  get transportEvent() {
    return transportEvent;
  },
  /** {name, region} of the node the session is on (updated after a move), or null */
  get node() {
    return node;
  },
  /** [{region, rttMs}] measured (or injected) for the cluster's regions */
  get regions() {
    return regions;
  },
  me,
  remote,
  log,
  errors,
  start,
  stop,
  leave,
  setSending(on) {
    cfg.tx = !!on;
  },
  peers() {
    return client ? client.getPeers() : [];
  },
  history,
  qualityEvents,
  reports,
};

if (flag('create')) start(null);
else if (params.get('join')) start(params.get('join'));
