// ServiceCore, direct paths to peers: opening and closing WebRTC links, relaying their
// signals (glare, candidates held until the description), channel and ICE events,
// retries of a failed direct path, TURN credential refresh. Split from ServiceCore.cs
// (a partial class).
//
// C# 7.2 (mono).

using System;
using System.Collections.Generic;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    public sealed partial class ServiceCore
    {
        private void OpenLink(long now, PeerState p, bool offerer)
        {
            CloseLink(p);
            if (!_o.EnableDirect)
            {
                p.Path.Disable();
                PathMaybeChanged(now, p);
                return;
            }
            if (_refreshAt >= 0 && now >= _refreshAt)
            {
                // TURN credentials expired or about to: fetch new ones first.
                p.RetryAt = long.MaxValue;
                p.Offerer = offerer;
                StartRefresh(now);
                return;
            }
            p.LinkId = _nextLink++;
            p.Offerer = offerer;
            p.DescriptionSent = false;
            p.HeldLocal.Clear();
            p.RetryAt = -1;
            p.Path.StartAttempt(now);
            CoreOutput o = Emit(OutputKind.OpenLink);
            o.Peer = p.Info.Id;
            o.LinkId = p.LinkId;
            o.Offerer = offerer;
            o.IceServers = IceServers;
            PathMaybeChanged(now, p);
        }

        private void CloseLink(PeerState p)
        {
            if (p.LinkId != 0)
            {
                CoreOutput o = Emit(OutputKind.CloseLink);
                o.Peer = p.Info.Id;
                o.LinkId = p.LinkId;
                p.LinkId = 0;
            }
        }

        private void OnSignal(long now, uint from, Signal s)
        {
            if (s is Signal.App)
            {
                OnApp(now, from, ((Signal.App)s).Data);
                return;
            }
            PeerState p = GetPeer(from);
            if (p == null)
            {
                return;
            }
            SignalSeen(now, p, s);
            if (s is Signal.Offer)
            {
                // Glare (the path rules): with an offer of mine out, the lower id keeps its own.
                bool haveLocalOffer = p.LinkId != 0 && p.Offerer && p.Path.State == DirectState.Connecting;
                if (PathRules.IgnoreOffer(haveLocalOffer, PeerId, from))
                {
                    return;
                }
                if (!_o.EnableDirect)
                {
                    return;
                }
                OpenLink(now, p, false);
                if (p.LinkId == 0)
                {
                    return;
                }
            }
            if (p.LinkId == 0)
            {
                return;
            }
            CoreOutput o = Emit(OutputKind.LinkSignal);
            o.Peer = from;
            o.LinkId = p.LinkId;
            o.Signal = s;
        }

        /// <summary>The link produced an offer/answer/candidate to send. Candidates never overtake the description, EndOfCandidates never overtakes candidates.</summary>
        public void LocalSignal(long now, uint peer, int linkId, Signal s)
        {
            PeerState p = GetPeer(peer);
            if (p == null || p.LinkId != linkId || !Online)
            {
                return;
            }
            if (s is Signal.Offer || s is Signal.Answer)
            {
                if (s is Signal.Offer && p.FirstOfferAt < 0)
                {
                    p.FirstOfferAt = now;
                }
                _queue.Enqueue(new ClientMsg.SignalTo(peer, s));
                p.DescriptionSent = true;
                foreach (Signal held in p.HeldLocal)
                {
                    _queue.Enqueue(new ClientMsg.SignalTo(peer, held));
                }
                p.HeldLocal.Clear();
            }
            else if (!p.DescriptionSent)
            {
                p.HeldLocal.Add(s);
            }
            else
            {
                _queue.Enqueue(new ClientMsg.SignalTo(peer, s));
            }
        }

        public void ChannelOpen(long now, uint peer, int linkId, bool turn)
        {
            PeerState p = GetPeer(peer);
            if (p == null || p.LinkId != linkId)
            {
                return;
            }
            p.Path.ChannelOpen(now, turn);
            p.Retries = 0;
            PathMaybeChanged(now, p);
        }

        /// <summary>ICE disconnected (true) or connected again (false): ConnectionState "disconnected" or "connected".</summary>
        public void IceInterrupted(long now, uint peer, int linkId, bool interrupted)
        {
            ConnectionState(now, peer, linkId, interrupted ? "disconnected" : "connected", IceFailReason.Other);
        }

        /// <summary>
        /// An ICE or peer connection state of the link (W3C name), by the path rules
        /// (PathRules.ConnectionState, through PeerPath): failed/closed fall back and retry
        /// later (reason: why, for the report), disconnected falls back only, connected
        /// recovers from disconnected.
        /// </summary>
        public void ConnectionState(long now, uint peer, int linkId, string state, IceFailReason reason)
        {
            PeerState p = GetPeer(peer);
            if (p == null || p.LinkId != linkId)
            {
                return;
            }
            if (p.Path.ConnectionState(now, state))
            {
                DirectFailed(now, p, reason);
                return;
            }
            PathMaybeChanged(now, p);
        }

        /// <summary>ICE failed, the PeerConnection or channel closed.</summary>
        public void LinkFailed(long now, uint peer, int linkId)
        {
            LinkFailed(now, peer, linkId, IceFailReason.Other);
        }

        /// <summary>As LinkFailed, with why (reported to the server, PROTOCOL.md section 14).</summary>
        public void LinkFailed(long now, uint peer, int linkId, IceFailReason reason)
        {
            PeerState p = GetPeer(peer);
            if (p == null || p.LinkId != linkId)
            {
                return;
            }
            DirectFailed(now, p, reason);
        }

        private void DirectFailed(long now, PeerState p, IceFailReason reason)
        {
            QueueIceFailure(reason);
            CloseLink(p);
            p.Path.Fail();
            // The path rules' direct retry: only the lower id retries (offering; the other answers
            // its offer), not twice, with doubling delays and +-25 % jitter: DirectRetryDelayMs,
            // 2x, 4x ... at most DirectRetryMaxDelayMs, DirectMaxRetries times.
            bool due = PathRules.DirectRetryDue(_o.DirectRetryDelayMs, !_o.EnableDirect, PeerId, p.Info.Id, p.RetryAt >= 0);
            if (due && p.Retries < _o.DirectMaxRetries)
            {
                long delay = _o.DirectRetryDelayMs << Math.Min(p.Retries, 10);
                delay = Math.Min(delay, Math.Max(_o.DirectRetryDelayMs, _o.DirectRetryMaxDelayMs));
                delay = (long)(delay * (0.75 + 0.5 * _random.NextDouble()));
                p.Retries++;
                p.RetryAt = now + delay;
            }
            PathMaybeChanged(now, p);
        }

        private void PathMaybeChanged(long now, PeerState p)
        {
            PathMaybeChanged(now, p, false);
        }

        /// <summary>
        /// The path rules' announcement (PathRules.Change): a changed path is announced
        /// (PathChanged, connecting as Relay: the way its frames go); a new peer's first path
        /// (initial) is announced unless it is connecting, then only recorded.
        /// </summary>
        private void PathMaybeChanged(long now, PeerState p, bool initial)
        {
            if (!initial && OfferWaitOver(now, p))
            {
                p.Path.FallBack();
            }
            QualityPathMaybeChanged(now, p);
            PeerPathKind kind = p.Path.Kind;
            PathChange change = PathRules.Change(p.LastKind, kind, initial);
            if (change == PathChange.None)
            {
                return;
            }
            p.LastKind = kind;
            if (change == PathChange.Announce)
            {
                CoreOutput o = Emit(OutputKind.PathChanged);
                o.Peer = p.Info.Id;
                o.Path = PeerPath.ToFlightPath(kind);
            }
        }

        private void StartRefresh(long now)
        {
            if (_refreshConn != 0 || _conn == 0 || ResumeToken == null)
            {
                return;
            }
            _refreshKind = _connKind;
            _refreshConn = StartAttempt(_connKind, true, now);
        }
    }
}
