// ServiceCore, connection quality (issue 25, docs/PROTOCOL.md section 14): each peer's
// QualityTracker fed from the paths, frames and echoes; echo requests on the path the
// tracker measures (the DataChannel when direct or TURN, else the relay) and replies on the
// path a request came on; the QualityChanged event; setup milestones, ICE failure reasons
// and candidate types queued for the next Report, sent on the ReportSchedule when the
// server's Welcome says version 3 or more. Split from ServiceCore.cs (a partial class).
//
// C# 7.2 (mono).

using System;
using System.Collections.Generic;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    public sealed partial class ServiceCore
    {
        private readonly ReportQueue _reports = new ReportQueue();
        private readonly ReportSchedule _schedule = new ReportSchedule();
        // When the current connect race began (the welcome milestone's start); -1: none.
        private long _raceStartedAt = -1;

        /// <summary>Welcome.Version of the current connection (Report needs 3 or more).</summary>
        public ushort ServerVersion { get; private set; }

        /// <summary>Reports handed to the control queue so far.</summary>
        public long ReportsSent { get; private set; }

        /// <summary>The report that went last (tests and diagnostics); null before the first.</summary>
        public ReportV1 LastReport { get; private set; }

        /// <summary>Milestones and ICE failures waiting for the next report.</summary>
        public int ReportQueued { get { return _reports.Count; } }

        private bool ReportsAllowed
        {
            get { return _o.TelemetryEnabled && _conn != 0 && ServerVersion >= Wire.ReportProtocolVersion; }
        }

        /// <summary>Every peer's quality now.</summary>
        public List<PeerQuality> GetQuality(long now)
        {
            List<PeerQuality> all = new List<PeerQuality>();
            foreach (PeerState p in _peers.Values)
            {
                all.Add(p.Quality.Snapshot(now));
            }
            all.Sort((a, b) => a.Peer.CompareTo(b.Peer));
            return all;
        }

        /// <summary>One peer's quality now; null for a peer not in the session.</summary>
        public PeerQuality GetQuality(long now, uint peer)
        {
            PeerState p = GetPeer(peer);
            return p == null ? null : p.Quality.Snapshot(now);
        }

        /// <summary>The link gathered a local candidate of this type (reported as a bit set).</summary>
        public void CandidateGathered(long now, uint peer, int linkId, CandidateKinds kind)
        {
            PeerState p = GetPeer(peer);
            if (p == null || p.LinkId != linkId || !_o.TelemetryEnabled)
            {
                return;
            }
            _reports.AddCandidate(kind);
        }

        /// <summary>
        /// The quality path of a peer: its path by the path rules (PROTOCOL.md section 12 rule 8,
        /// PathRules.PeerPath through PeerPath.Kind): direct or turn when the DataChannel carries
        /// flight data; relay once fallen back or forced; else connecting (a WebRTC attempt runs,
        /// or a new peer's offer is awaited: see OfferWaitOver).
        /// </summary>
        private LinkPath QualityPathOf(long now, PeerState p)
        {
            switch (p.Path.Kind)
            {
                case PeerPathKind.Direct:
                    return LinkPath.Direct;
                case PeerPathKind.Turn:
                    return LinkPath.Turn;
                case PeerPathKind.Relay:
                    return LinkPath.Relay;
                default:
                    return LinkPath.Connecting;
            }
        }

        /// <summary>
        /// The answering side's deadline (the path rules' fallback): no attempt of ours and no
        /// offer awaited any more (the direct deadline from the link's creation passed, or a
        /// Rust peer, which has no WebRTC and never offers).
        /// </summary>
        private bool OfferWaitOver(long now, PeerState p)
        {
            return p.Path.State == DirectState.Disabled && !p.Path.FallenBack && _o.EnableDirect && !AwaitingOffer(now, p);
        }

        private bool AwaitingOffer(long now, PeerState p)
        {
            return OfferDeadline(p) > now;
        }

        /// <summary>Until when a new peer's path counts as connecting without an attempt of ours; -1: not waiting.</summary>
        private long OfferDeadline(PeerState p)
        {
            if (p.Path.State != DirectState.Disabled || !_o.EnableDirect || p.FirstOfferAt >= 0 || p.OutcomeSeen
                || p.Info.Client == ClientKind.Rust)
            {
                return -1;
            }
            return p.CreatedAt + _o.Path.DirectConnectTimeoutMs;
        }

        private static LinkPath ToLinkPath(FlightPath f)
        {
            switch (f)
            {
                case FlightPath.Direct:
                    return LinkPath.Direct;
                case FlightPath.Turn:
                    return LinkPath.Turn;
                default:
                    return LinkPath.Relay;
            }
        }

        private void QualityPathMaybeChanged(long now, PeerState p)
        {
            if (p.Quality == null)
            {
                return;
            }
            LinkPath path = QualityPathOf(now, p);
            if (!p.OutcomeSeen && p.FirstOfferAt >= 0)
            {
                if (path == LinkPath.Direct || path == LinkPath.Turn)
                {
                    p.OutcomeSeen = true;
                    AddMilestone(MilestoneKind.Direct, path, now - p.FirstOfferAt);
                }
                else if (p.Path.State == DirectState.Failed || p.Path.State == DirectState.Disabled)
                {
                    p.OutcomeSeen = true;
                    AddMilestone(MilestoneKind.Relay, LinkPath.Relay, now - p.FirstOfferAt);
                }
            }
            p.Quality.SetPath(now, path);
        }

        private void AddMilestone(MilestoneKind kind, LinkPath path, long ms)
        {
            if (_o.TelemetryEnabled)
            {
                _reports.AddMilestone(kind, path, ms);
            }
        }

        private void QueueIceFailure(IceFailReason reason)
        {
            if (_o.TelemetryEnabled)
            {
                _reports.AddIceFailure(reason);
            }
        }

        private void WelcomeMilestone(long now)
        {
            if (_raceStartedAt >= 0)
            {
                AddMilestone(MilestoneKind.Welcome, LinkPath.Connecting, now - _raceStartedAt);
                _raceStartedAt = -1;
            }
        }

        /// <summary>A WebRTC signal (not a hub message) from the peer: the first_signal milestone.</summary>
        private void SignalSeen(long now, PeerState p, Signal s)
        {
            if (s is Signal.App)
            {
                return;
            }
            if (s is Signal.Offer && p.FirstOfferAt < 0)
            {
                p.FirstOfferAt = now;
            }
            if (!p.FirstSignalSeen)
            {
                p.FirstSignalSeen = true;
                AddMilestone(MilestoneKind.FirstSignal, LinkPath.Connecting, now - p.CreatedAt);
            }
        }

        private void FlightFrameIn(long now, PeerState p, FlightPath path)
        {
            p.Quality.FrameIn(now);
            if (!p.FirstFrameSeen)
            {
                p.FirstFrameSeen = true;
                AddMilestone(MilestoneKind.FirstFrame, ToLinkPath(path), now - p.CreatedAt);
            }
        }

        /// <summary>
        /// A payload from a peer that starts FF FF FF FF is a quality frame: a request is
        /// answered on the path it came on, a reply feeds the tracker, a malformed one is
        /// dropped. True when the payload was one (the caller stops there).
        /// </summary>
        private bool QualityFrameIn(long now, uint from, PeerState p, byte[] payload, FlightPath cameOn)
        {
            QualityFrameKind kind;
            uint id;
            uint t;
            QualityParse parse = QualityFrame.Parse(payload, out kind, out id, out t);
            if (parse == QualityParse.NotQuality)
            {
                return false;
            }
            if (parse == QualityParse.Bad)
            {
                return true;
            }
            if (kind == QualityFrameKind.EchoRequest)
            {
                // Answered even before the peer is known here (a relay frame can overtake PeerJoined).
                byte[] reply = QualityFrame.Encode(QualityFrameKind.EchoReply, id, t);
                if (cameOn == FlightPath.Relay)
                {
                    if (RelayUp)
                    {
                        SendRelay(from, reply);
                    }
                }
                else if (p != null && p.LinkId != 0)
                {
                    SendDirect(p, reply);
                }
            }
            else if (p != null)
            {
                p.Quality.Reply(now, id);
            }
            return true;
        }

        /// <summary>An echo request when the tracker wants one, on the path it measures.</summary>
        private void EchoTick(long now, PeerState p)
        {
            uint id = p.Quality.Tick(now);
            if (id == 0)
            {
                return;
            }
            byte[] frame = QualityFrame.Encode(QualityFrameKind.EchoRequest, id, unchecked((uint)now));
            LinkPath path = p.Quality.Path;
            if ((path == LinkPath.Direct || path == LinkPath.Turn) && p.LinkId != 0)
            {
                SendDirect(p, frame);
            }
            else if (path == LinkPath.Relay && RelayUp)
            {
                SendRelay(p.Info.Id, frame);
            }
        }

        /// <summary>Quality events for changed peers, then a report if one is due.</summary>
        private void QualityPump(long now)
        {
            foreach (PeerState p in _peers.Values)
            {
                if (p.Quality.TakeChanged())
                {
                    CoreOutput o = Emit(OutputKind.QualityChanged);
                    o.Peer = p.Info.Id;
                    o.Quality = p.Quality.Snapshot(now);
                    _schedule.NoteChange();
                }
            }
            if (ReportsAllowed && _schedule.Due(now, HasLinks, _reports.Count > 0))
            {
                List<LinkReport> links = new List<LinkReport>();
                if (Session != null)
                {
                    List<uint> ids = new List<uint>(_peers.Keys);
                    ids.Sort();
                    foreach (uint id in ids)
                    {
                        links.Add(_peers[id].Quality.ToReport(now));
                    }
                }
                ReportV1 body = _reports.Take(links);
                _queue.Enqueue(ClientMsg.Report.V1(body));
                _schedule.Sent(now);
                LastReport = body;
                ReportsSent++;
            }
        }

        /// <summary>When a peer awaiting an offer stops counting as connecting (Tick then moves it to the relay).</summary>
        private long QualityWake(long now, PeerState p)
        {
            long d = OfferDeadline(p);
            return d > now ? d : -1;
        }

        private long ReportWake(long now)
        {
            if (!ReportsAllowed)
            {
                return -1;
            }
            return _schedule.WakeAt(now, HasLinks, _reports.Count > 0);
        }

        private bool HasLinks
        {
            get { return Session != null && _peers.Count > 0; }
        }

        /// <summary>A Welcome on the current connection: the report schedule's clock starts.</summary>
        private void ReportClockStarts(long now)
        {
            _schedule.Start(now);
        }
    }
}
