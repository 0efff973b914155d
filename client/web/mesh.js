// FlightSim P2P browser client: the WebRTC mesh. One RTCPeerConnection and one unordered,
// unreliable DataChannel per remote peer, signaled through the server (PROTOCOL.md §8), with
// the relay as the fallback. The rules (which path a peer is on, glare, when to retry) are
// core.js's; this part does the WebRTC calls. Its methods are FlightSimP2P's (client.js
// installs them on its prototype), as they were when all of this was one file.

import { DATA_CHANNEL_LABEL, utf8Encoder } from './codec.js';
import {
  connectionStateEffect, directRetryDue, directUsable, ignoreOffer, pathChange, peerPath, QualityTracker,
} from './core.js';
import { now } from './transports.js';

/**
 * One remote peer of my session and the state of the path to it.
 */
export class PeerLink {
  /** @param {PeerInfo} info */
  constructor(info) {
    this.id = info.id;
    this.name = info.name;
    this.client = info.client;
    this.online = true;
    /** @type {RTCPeerConnection|null} */
    this.pc = null;
    /** @type {RTCDataChannel|null} */
    this.dc = null;
    /** @type {PeerPath} */
    this.path = 'connecting';
    /** 'direct' or 'turn' once getStats has classified the selected candidate pair */
    this.directKind = /** @type {'direct'|'turn'|null} */ (null);
    /** true once the relay is in use for this peer (deadline passed, ICE failed, channel closed) */
    this.fallback = false;
    this.deadline = 0;
    this.retry = 0;
    this.iceRttMs = /** @type {number|null} */ (null);
    this.candidatePair = '';
    this.classifying = false;
    /** @type {RTCIceCandidateInit[]} */
    this.pendingCandidates = [];
    /** serializes the async WebRTC operations of this peer */
    this.chain = Promise.resolve();
    /** flight-data messages delivered to the game / sent */
    this.rx = 0;
    this.tx = 0;
    /** flight-data messages from this peer dropped as not newer than the last one accepted */
    this.staleDropped = 0;
    const t = now();
    /** when the link was created (SessionJoined/SessionCreated listing the peer, or PeerJoined) */
    this.createdAt = t;
    /** the link's quality (core.js QualityTracker: echoes, RTT, loss, jitter, grade, frames/s) */
    this.quality = new QualityTracker(info.id, t);
    /** @type {number|null} the first offer sent or received for this link (setup milestones) */
    this.offerAt = null;
    /** milestones recorded once per link: first Signal, direct, relay, first frame */
    this.seenSignal = false;
    /** @type {Set<string>} the direct / relay milestones recorded for this link */
    this.setupSeen = new Set();
    this.seenFrame = false;
    /** the connection whose ICE failure was reported already (one per RTCPeerConnection) */
    this.failedPc = /** @type {RTCPeerConnection|null} */ (null);
    /** the current connection has been connected (a later failure is `disconnected`) */
    this.everConnected = false;
    /** candidates the current connection gathered */
    this.gathered = 0;
  }
}

/**
 * The WebRTC part of FlightSimP2P: links to the peers of my session, their RTCPeerConnections
 * and DataChannels, and the path each is on. These are FlightSimP2P's own methods (`this` is the
 * client: its options, links, stats, `_sendMsg`, `_emit`, `_deliverFlight`); `installMesh` puts
 * them on its prototype.
 */
export class PeerMesh {
  // --- internals: WebRTC per peer ----------------------------------------------------------

  /** @param {PeerInfo} info @param {boolean} offerer */
  _addLink(info, offerer) {
    const l = new PeerLink(info);
    this.links.set(l.id, l);
    if (this.options.forceRelay) {
      l.fallback = true;
    } else {
      l.deadline = setTimeout(() => {
        if (this.links.get(l.id) !== l) return;
        if (l.pc && !this._directUsable(l)) this._iceFailed(l, l.pc, 'timeout');
        l.fallback = true;
        this._evaluate(l);
      }, this.options.directTimeoutMs);
      if (offerer) this._startDirect(l, true);
    }
    this._evaluate(l, true);
    // A new link: the next report carries it; its tracker's first echo is due once it has a path.
    this._telemetry({ type: 'change' });
    return l;
  }

  /** @param {PeerLink} l */
  _dropLink(l) {
    clearTimeout(l.deadline);
    clearTimeout(l.retry);
    this._closePc(l);
    if (this.links.get(l.id) === l) {
      this.links.delete(l.id);
      // A link gone is a change the next report should carry (early, with the 2 s floor).
      if (this.state !== 'closed') this._telemetry({ type: 'change' });
    }
  }

  /** @param {PeerLink} l */
  _closePc(l) {
    const pc = l.pc;
    l.pc = null;
    l.dc = null;
    l.directKind = null;
    l.iceRttMs = null;
    l.candidatePair = '';
    l.pendingCandidates = [];
    if (pc) {
      try {
        pc.close();
      } catch {
        // closed already
      }
    }
  }

  _iceServers() {
    if (this.options.iceServers) return this.options.iceServers;
    const list = this.welcome ? this.welcome.iceServers : [];
    return list.map((s) => {
      /** @type {RTCIceServer} */
      const out = { urls: s.urls };
      if (s.username !== null) out.username = s.username;
      if (s.credential !== null) out.credential = s.credential;
      return out;
    });
  }

  /**
   * New RTCPeerConnection for a peer (replacing any old one).
   * @param {PeerLink} l
   * @param {boolean} offerer
   */
  _startDirect(l, offerer) {
    this._closePc(l);
    const pc = new RTCPeerConnection({
      iceServers: this._iceServers(),
      iceTransportPolicy: this.options.iceTransportPolicy,
    });
    l.pc = pc;
    l.everConnected = false;
    l.gathered = 0;
    let endSent = false;
    pc.onicecandidate = (e) => {
      if (l.pc !== pc) return;
      if (!e.candidate) {
        if (!endSent) {
          endSent = true;
          if (!l.gathered) this._iceFailed(l, pc, 'no_candidates');
          this._sendMsg({ type: 'Signal', to: l.id, signal: { type: 'EndOfCandidates' } });
        }
        return;
      }
      if (!e.candidate.candidate) return; // end of one generation
      l.gathered++;
      // Only the type (host, srflx, relay, prflx) goes in a report: never the address.
      if (e.candidate.type) this._telemetry({ type: 'candidate', candidate: e.candidate.type });
      this._sendMsg({
        type: 'Signal', to: l.id,
        signal: {
          type: 'IceCandidate',
          candidate: e.candidate.candidate,
          sdpMid: e.candidate.sdpMid ?? null,
          sdpMLineIndex: e.candidate.sdpMLineIndex ?? null,
        },
      });
    };
    pc.onconnectionstatechange = () => {
      if (l.pc !== pc) return;
      if (pc.connectionState === 'connected') l.everConnected = true;
      if (pc.connectionState === 'failed') this._iceFailed(l, pc, l.everConnected ? 'disconnected' : 'failed');
      const effect = connectionStateEffect(pc.connectionState);
      if (effect.fallback) l.fallback = true;
      if (effect.retry) this._scheduleRetry(l);
      this._evaluate(l);
    };
    if (offerer) {
      this._setupChannel(l, pc, pc.createDataChannel(DATA_CHANNEL_LABEL, { ordered: false, maxRetransmits: 0 }));
      this._op(l, async () => {
        const offer = await pc.createOffer();
        if (l.pc !== pc) return;
        await pc.setLocalDescription(offer);
        if (l.pc !== pc) return;
        if (l.offerAt === null) l.offerAt = now();
        this._sendMsg({ type: 'Signal', to: l.id, signal: { type: 'Offer', sdp: /** @type {any} */ (pc.localDescription).sdp } });
      });
    } else {
      pc.ondatachannel = (e) => {
        if (l.pc === pc) this._setupChannel(l, pc, e.channel);
      };
    }
    this._evaluate(l);
    return pc;
  }

  /** @param {PeerLink} l @param {RTCPeerConnection} pc @param {RTCDataChannel} dc */
  _setupChannel(l, pc, dc) {
    dc.binaryType = 'arraybuffer';
    l.dc = dc;
    dc.onopen = () => {
      if (l.dc === dc) this._evaluate(l);
    };
    dc.onclose = () => {
      if (l.dc !== dc) return;
      l.fallback = true;
      this._evaluate(l);
      this._scheduleRetry(l);
    };
    dc.onmessage = (e) => {
      const data = typeof e.data === 'string' ? utf8Encoder.encode(e.data) : new Uint8Array(e.data);
      // A quality frame is answered on this DataChannel and goes no further.
      if (this._onQualityFrame(l.id, data, dc)) return;
      this.stats.directReceived++;
      this._deliverFlight(l.id, data, l.directKind || 'direct');
    };
  }

  /** Run async WebRTC work for one peer in order; errors are reported, not thrown. */
  _op(l, fn) {
    l.chain = l.chain.then(fn).catch((e) => {
      if (this.links.get(l.id) !== l || this.state === 'closed') return;
      console.warn(`fsp2p: WebRTC with peer ${l.id}:`, e);
      if (l.pc) this._iceFailed(l, l.pc, 'other');
      l.fallback = true;
      this._evaluate(l);
    });
  }

  /** @param {number} from @param {Signal} s */
  _onSignal(from, s) {
    if (s.type === 'App') {
      this._emit('appsignal', { from, data: s.data });
      return;
    }
    let l = this.links.get(from);
    if (!l) {
      if (!this.session) return;
      l = this._addLink({ id: from, name: '', client: 'Other' }, false);
    }
    if (!l.seenSignal) {
      // Milestone first_signal: link created → the first WebRTC Signal from that peer.
      l.seenSignal = true;
      this._telemetry({ type: 'milestone', kind: 'first_signal', path: 'connecting', ms: now() - l.createdAt });
    }
    if (this.options.forceRelay) return;
    const link = l;
    switch (s.type) {
      case 'Offer': {
        if (link.offerAt === null) link.offerAt = now();
        // Glare (both offered): the lower peer id keeps its own offer.
        if (ignoreOffer(link.pc ? link.pc.signalingState : null, this.peerId, from)) return;
        const pc = this._startDirect(link, false);
        this._op(link, async () => {
          await pc.setRemoteDescription({ type: 'offer', sdp: s.sdp });
          await this._flushCandidates(link, pc);
          const answer = await pc.createAnswer();
          if (link.pc !== pc) return;
          await pc.setLocalDescription(answer);
          if (link.pc !== pc) return;
          this._sendMsg({ type: 'Signal', to: from, signal: { type: 'Answer', sdp: /** @type {any} */ (pc.localDescription).sdp } });
        });
        break;
      }
      case 'Answer': {
        const pc = link.pc;
        if (!pc) return;
        this._op(link, async () => {
          if (link.pc !== pc || pc.signalingState !== 'have-local-offer') return;
          await pc.setRemoteDescription({ type: 'answer', sdp: s.sdp });
          await this._flushCandidates(link, pc);
        });
        break;
      }
      case 'IceCandidate': {
        const c = { candidate: s.candidate, sdpMid: s.sdpMid, sdpMLineIndex: s.sdpMLineIndex };
        const pc = link.pc;
        if (!pc) return;
        this._op(link, async () => {
          if (link.pc !== pc) return;
          if (!pc.remoteDescription) {
            link.pendingCandidates.push(c);
            return;
          }
          await pc.addIceCandidate(c).catch((e) => console.debug('fsp2p: candidate refused', e));
        });
        break;
      }
      case 'EndOfCandidates':
        // Optional hint; ICE finishes on its own timers.
        break;
    }
  }

  async _flushCandidates(l, pc) {
    const list = l.pendingCandidates;
    l.pendingCandidates = [];
    for (const c of list) {
      if (l.pc !== pc) return;
      await pc.addIceCandidate(c).catch((e) => console.debug('fsp2p: candidate refused', e));
    }
  }

  /** After a failure, the lower peer id tries a fresh direct connection later. */
  _scheduleRetry(l) {
    const ms = this.options.directRetryMs;
    if (!directRetryDue({ retryMs: ms, forceRelay: this.options.forceRelay, myId: this.peerId, peerId: l.id, scheduled: !!l.retry })) return;
    l.retry = setTimeout(() => {
      l.retry = 0;
      if (this.links.get(l.id) !== l || this.options.forceRelay || this.state === 'closed') return;
      if (this._directUsable(l)) return;
      this._startDirect(l, true);
    }, ms);
  }

  /** @param {PeerLink} l */
  _directUsable(l) {
    return directUsable({
      forceRelay: this.options.forceRelay, dataChannel: l.dc ? l.dc.readyState : null, connection: l.pc ? l.pc.connectionState : null,
    });
  }

  /** Recompute a peer's path and announce a change. */
  _evaluate(l, initial = false) {
    const path = peerPath({
      usable: this._directUsable(l), directKind: l.directKind, fallback: l.fallback, forceRelay: this.options.forceRelay,
    });
    if (path === 'classify') {
      // Classify the selected candidate pair first (host/srflx vs TURN relay).
      this._classify(l);
      return;
    }
    if (path === 'direct' || path === 'turn') {
      clearTimeout(l.deadline);
      clearTimeout(l.retry);
      l.retry = 0;
    }
    const change = pathChange(l.path, path, initial);
    if (change === 'none') return;
    const previous = l.path;
    l.path = path;
    const kind = path === 'relay' ? 'relay' : 'direct';
    if (path !== 'connecting' && l.offerAt !== null && !l.setupSeen.has(kind)) {
      // Milestones direct / relay: the first offer → the DataChannel usable / the fallback to the
      // relay, each once per link (a link that falls back and comes up later has both; a forced
      // relay made no offer and is no fallback: not recorded).
      l.setupSeen.add(kind);
      this._telemetry({ type: 'milestone', kind, path, ms: now() - l.offerAt });
    }
    if (change === 'announce') this._emit('pathchange', { peer: l.id, path, previous });
    this._qualityEvent(l, l.quality.setPath(path, now()));
    this._armQuality();
  }

  /**
   * Report an ICE failure of `pc` (once per RTCPeerConnection): timeout, failed, disconnected,
   * no_candidates or other (PROTOCOL.md §14).
   * @param {PeerLink} l @param {RTCPeerConnection} pc @param {string} reason
   */
  _iceFailed(l, pc, reason) {
    if (l.failedPc === pc) return;
    l.failedPc = pc;
    this._telemetry({ type: 'ice_failure', reason });
  }

  async _classify(l) {
    const pc = l.pc;
    if (!pc || l.classifying) return;
    l.classifying = true;
    try {
      const info = await pairInfo(pc);
      if (l.pc !== pc) return;
      l.directKind = info && info.turn ? 'turn' : 'direct';
      if (info) {
        l.iceRttMs = info.rttMs;
        l.candidatePair = info.desc;
      }
    } catch {
      if (l.pc === pc) l.directKind = 'direct';
    } finally {
      l.classifying = false;
    }
    if (l.pc === pc) this._evaluate(l);
  }

  async _pollStats() {
    for (const l of this.links.values()) {
      const pc = l.pc;
      if (!pc || !this._directUsable(l)) continue;
      try {
        const info = await pairInfo(pc);
        if (l.pc !== pc || !info) continue;
        l.iceRttMs = info.rttMs;
        l.candidatePair = info.desc;
        const kind = info.turn ? 'turn' : 'direct';
        if (kind !== l.directKind) {
          l.directKind = kind;
          this._evaluate(l);
        }
      } catch {
        // stats are best effort
      }
    }
  }
}


/**
 * The selected candidate pair of a connection: whether it goes through TURN, its RTT.
 * @param {RTCPeerConnection} pc
 */
async function pairInfo(pc) {
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach((r) => {
    if (r.type === 'transport' && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId) || pair;
  });
  if (!pair) {
    stats.forEach((r) => {
      if (!pair && r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') pair = r;
    });
  }
  if (!pair) return null;
  const local = stats.get(pair.localCandidateId);
  const remote = stats.get(pair.remoteCandidateId);
  const lt = local ? local.candidateType : '?';
  const rt = remote ? remote.candidateType : '?';
  return {
    turn: lt === 'relay' || rt === 'relay',
    rttMs: typeof pair.currentRoundTripTime === 'number' ? pair.currentRoundTripTime * 1000 : null,
    desc: `${lt}/${local && local.protocol ? local.protocol : '?'} ↔ ${rt}`,
  };
}

/**
 * Put the mesh's methods on `cls.prototype` (FlightSimP2P), as if they were written in its class.
 * @param {Function} cls
 */
export function installMesh(cls) {
  for (const k of Object.getOwnPropertyNames(PeerMesh.prototype)) {
    if (k === 'constructor') continue;
    Object.defineProperty(cls.prototype, k, /** @type {PropertyDescriptor} */ (Object.getOwnPropertyDescriptor(PeerMesh.prototype, k)));
  }
}
