// Issue 25, connection quality (docs/PROTOCOL.md section 14, /work spec Q2/Q3): the
// per-peer quality tracker every client shares (echo schedule, RTT by RFC 6298, jitter by
// RFC 3550, a loss window, path reset, grade with hysteresis, frames/s windows, its next
// wake time), and the report schedule and queue. ServiceCore feeds them (ServiceCore.
// Quality.cs); the C# replay of docs/client-vectors.json ("quality") drives the tracker alone.
//
// Pure (no I/O, no threads, no clock reads: every input carries `now` in ms); C# 7.2,
// compiled by Debian's mono in CI and unchanged by the .NET 8/9 build.

using System;
using System.Collections.Generic;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    /// <summary>The shared timing constants (also in the vectors' "constants").</summary>
    public static class QualityConstants
    {
        /// <summary>Echo pace on a direct or TURN path (the DataChannel: costs the server nothing).</summary>
        public const long EchoIntervalMs = 500;
        /// <summary>Echo pace on the relay: each echo is relayed frames, so slower (under 2 % of a 60 Hz relay's deliveries).</summary>
        public const long EchoIntervalRelayMs = 2000;
        public const long EchoTimeoutMs = 2000;
        public const int LossWindow = 20;
        public const long LostAfterMs = 3000;
        public const long ReportIntervalMs = 10000;
        public const long ReportMinGapMs = 2000;
        public const double HysteresisFactor = 0.8;
        public const double ExcellentRttMs = 100, ExcellentLossPct = 2, ExcellentJitterMs = 20;
        public const double GoodRttMs = 250, GoodLossPct = 8, GoodJitterMs = 50;
        public const long FpsWindowMs = 1000;
    }

    /// <summary>One peer's link quality at a moment (the same fields in every client).</summary>
    public sealed class PeerQuality
    {
        public uint Peer;
        /// <summary>connecting, direct, turn or relay.</summary>
        public LinkPath Path;
        /// <summary>Time on this path.</summary>
        public long PathMs;
        /// <summary>Smoothed echo RTT, rounded; null before the first sample on this path.</summary>
        public long? RttMs;
        /// <summary>Echo requests lost of the last 20 decided, in percent (1 decimal); 0 when none decided.</summary>
        public double LossPct;
        /// <summary>RFC 3550 jitter of the echo RTT (1 decimal); null before the first sample.</summary>
        public double? JitterMs;
        /// <summary>Flight frames from / to the peer in the last full second.</summary>
        public int FpsIn;
        public int FpsOut;
        /// <summary>Flight frames from the peer dropped as not newer (running total).</summary>
        public long StaleDropped;
        public QualityGrade Grade;

        public override string ToString()
        {
            return "peer " + Peer + " " + Path + " " + PathMs + " ms, rtt " + (RttMs.HasValue ? RttMs.Value.ToString() : "-")
                + ", loss " + LossPct + " %, jitter " + (JitterMs.HasValue ? JitterMs.Value.ToString() : "-") + ", fps " + FpsIn + "/" + FpsOut
                + ", stale " + StaleDropped + ", " + Grade;
        }
    }

    /// <summary>
    /// The quality estimator of one remote peer. Inputs: SetPath, SetOnline, Tick (returns the
    /// id of an echo request to send, 0 for none), Reply, FrameIn, FrameOut, Stale; each
    /// carries now. Every input first decides the requests whose 2 s ran out, then regrades.
    /// TakeChanged says whether the grade or the path changed since it was last asked.
    /// </summary>
    public sealed class QualityTracker
    {
        private readonly long _created;
        private LinkPath _path = LinkPath.Connecting;
        private long _pathSince;
        private bool _online = true;
        private uint _nextId = 1;
        // Outstanding requests of the current path: id -> send time.
        private readonly SortedDictionary<uint, long> _outstanding = new SortedDictionary<uint, long>();
        private long _nextEchoAt;
        private double? _srtt;
        private double _rttvar;
        private double _jitter;
        private double _prevR;
        // The last LossWindow decided requests, oldest first: true = lost.
        private readonly Queue<bool> _window = new Queue<bool>();
        private int _lostInWindow;
        private long _unansweredSince = -1;
        private QualityGrade _grade = QualityGrade.Unknown;
        private bool _changed;
        private long _winK;
        private int _curIn, _curOut, _lastIn, _lastOut;
        private long _stale;

        public QualityTracker(uint peer, long now)
        {
            Peer = peer;
            _created = now;
            _pathSince = now;
            _nextEchoAt = now;
        }

        public uint Peer { get; private set; }
        public LinkPath Path { get { return _path; } }
        public QualityGrade Grade { get { return _grade; } }
        public bool Online { get { return _online; } }
        /// <summary>Unrounded smoothed RTT; null before a sample on this path.</summary>
        public double? SrttMs { get { return _srtt; } }
        public double RttvarMs { get { return _rttvar; } }
        public double Jitter { get { return _jitter; } }
        /// <summary>Requests decided (answered or lost) in the window; 0: loss unknown.</summary>
        public int Decided { get { return _window.Count; } }
        public double LossPctRaw { get { return _window.Count == 0 ? 0 : 100.0 * _lostInWindow / _window.Count; } }
        public int Outstanding { get { return _outstanding.Count; } }
        public long UnansweredSince { get { return _unansweredSince; } }

        /// <summary>Echo requests are due: online on a usable path.</summary>
        private bool Echoing
        {
            get { return _online && _path != LinkPath.Connecting; }
        }

        public void SetPath(long now, LinkPath path)
        {
            Advance(now);
            if (path != _path)
            {
                _path = path;
                _pathSince = now;
                Forget(now);
                _changed = true;
            }
            Regrade(now);
        }

        /// <summary>PeerStatus. Going offline or coming back starts the estimate afresh (the path and its time stay).</summary>
        public void SetOnline(long now, bool online)
        {
            Advance(now);
            if (online != _online)
            {
                _online = online;
                Forget(now);
            }
            Regrade(now);
        }

        // The estimator's reset: RTT, jitter, the loss window and outstanding requests
        // (replies to them are ignored from now on); the next echo is due at once.
        private void Forget(long now)
        {
            _outstanding.Clear();
            _srtt = null;
            _rttvar = 0;
            _jitter = 0;
            _prevR = 0;
            _window.Clear();
            _lostInWindow = 0;
            _unansweredSince = -1;
            _nextEchoAt = now;
        }

        /// <summary>The periodic input: the id of an echo request to send now, or 0.</summary>
        public uint Tick(long now)
        {
            Advance(now);
            uint id = 0;
            if (Echoing && now >= _nextEchoAt)
            {
                id = _nextId;
                _nextId = _nextId == uint.MaxValue ? 1 : _nextId + 1;
                _outstanding[id] = now;
                _nextEchoAt = now + (_path == LinkPath.Relay ? QualityConstants.EchoIntervalRelayMs : QualityConstants.EchoIntervalMs);
                if (_unansweredSince < 0)
                {
                    _unansweredSince = now;
                }
            }
            Regrade(now);
            return id;
        }

        /// <summary>An echo reply with this id arrived (on any path).</summary>
        public void Reply(long now, uint id)
        {
            Advance(now);
            _unansweredSince = -1;
            long sentAt;
            if (_outstanding.TryGetValue(id, out sentAt))
            {
                _outstanding.Remove(id);
                double r = now - sentAt;
                if (!_srtt.HasValue)
                {
                    _srtt = r;
                    _rttvar = r / 2;
                    _jitter = 0;
                }
                else
                {
                    _rttvar = 0.75 * _rttvar + 0.25 * Math.Abs(_srtt.Value - r);
                    _srtt = 0.875 * _srtt.Value + 0.125 * r;
                    _jitter += (Math.Abs(r - _prevR) - _jitter) / 16;
                }
                _prevR = r;
                Decide(false);
            }
            Regrade(now);
        }

        public void FrameIn(long now)
        {
            Advance(now);
            _curIn++;
            Regrade(now);
        }

        public void FrameOut(long now)
        {
            Advance(now);
            _curOut++;
            Regrade(now);
        }

        public void Stale(long now)
        {
            Advance(now);
            _stale++;
            Regrade(now);
        }

        /// <summary>True once after the grade or the path changed.</summary>
        public bool TakeChanged()
        {
            bool c = _changed;
            _changed = false;
            return c;
        }

        /// <summary>When an input next has something to decide (echo due, a request's 2 s, the lost deadline); -1: none.</summary>
        public long PollTimeout(long now)
        {
            long t = -1;
            if (Echoing)
            {
                t = _nextEchoAt;
            }
            foreach (KeyValuePair<uint, long> kv in _outstanding)
            {
                t = Earliest(t, kv.Value + QualityConstants.EchoTimeoutMs);
            }
            if (_unansweredSince >= 0 && now < _unansweredSince + QualityConstants.LostAfterMs)
            {
                t = Earliest(t, _unansweredSince + QualityConstants.LostAfterMs);
            }
            return t;
        }

        public PeerQuality Snapshot(long now)
        {
            Advance(now);
            Regrade(now);
            PeerQuality q = new PeerQuality();
            q.Peer = Peer;
            q.Path = _path;
            q.PathMs = Math.Max(0, now - _pathSince);
            q.RttMs = _srtt.HasValue ? (long?)(long)Math.Floor(_srtt.Value + 0.5) : null;
            q.LossPct = Round1(LossPctRaw);
            q.JitterMs = _srtt.HasValue ? (double?)Round1(_jitter) : null;
            q.FpsIn = _lastIn;
            q.FpsOut = _lastOut;
            q.StaleDropped = _stale;
            q.Grade = _grade;
            return q;
        }

        /// <summary>This link in a report (buckets from the unrounded estimates' reported values).</summary>
        public LinkReport ToReport(long now)
        {
            PeerQuality q = Snapshot(now);
            LinkReport l = new LinkReport();
            l.Peer = Peer;
            l.Path = q.Path;
            l.Grade = q.Grade;
            l.RttBucket = QualityBuckets.Rtt(q.RttMs.HasValue ? (double?)q.RttMs.Value : null);
            l.LossBucket = QualityBuckets.Loss(Decided == 0 ? null : (double?)q.LossPct);
            return l;
        }

        private static double Round1(double v)
        {
            return Math.Floor(v * 10 + 0.5) / 10;
        }

        private static long Earliest(long a, long b)
        {
            return a < 0 ? b : (b < 0 ? a : Math.Min(a, b));
        }

        // Decides the requests whose time ran out (oldest id first) and rolls the frames/s windows.
        private void Advance(long now)
        {
            List<uint> expired = null;
            foreach (KeyValuePair<uint, long> kv in _outstanding)
            {
                if (now >= kv.Value + QualityConstants.EchoTimeoutMs)
                {
                    if (expired == null)
                    {
                        expired = new List<uint>();
                    }
                    expired.Add(kv.Key);
                }
            }
            if (expired != null)
            {
                // Ids count up with send time, but a wrap could reorder them: decide by send time.
                expired.Sort((a, b) => _outstanding[a].CompareTo(_outstanding[b]));
                foreach (uint id in expired)
                {
                    _outstanding.Remove(id);
                    Decide(true);
                }
            }
            long k = now > _created ? (now - _created) / QualityConstants.FpsWindowMs : 0;
            if (k > _winK)
            {
                if (k == _winK + 1)
                {
                    _lastIn = _curIn;
                    _lastOut = _curOut;
                }
                else
                {
                    _lastIn = 0;
                    _lastOut = 0;
                }
                _curIn = 0;
                _curOut = 0;
                _winK = k;
            }
        }

        private void Decide(bool lost)
        {
            _window.Enqueue(lost);
            if (lost)
            {
                _lostInWindow++;
            }
            while (_window.Count > QualityConstants.LossWindow)
            {
                if (_window.Dequeue())
                {
                    _lostInWindow--;
                }
            }
        }

        private void Regrade(long now)
        {
            QualityGrade g = RawGrade(now, 1.0);
            if (IsMeasured(_grade) && IsMeasured(g) && (int)g < (int)_grade)
            {
                // Better than before: only as far as the x0.8 limits allow.
                QualityGrade strict = Classify(QualityConstants.HysteresisFactor);
                g = (QualityGrade)Math.Min((int)_grade, (int)strict);
            }
            if (g != _grade)
            {
                _grade = g;
                _changed = true;
            }
        }

        private static bool IsMeasured(QualityGrade g)
        {
            return g == QualityGrade.Excellent || g == QualityGrade.Good || g == QualityGrade.Poor;
        }

        private QualityGrade RawGrade(long now, double factor)
        {
            if (!_online || (_unansweredSince >= 0 && now - _unansweredSince >= QualityConstants.LostAfterMs))
            {
                return QualityGrade.Lost;
            }
            if (_path == LinkPath.Connecting || !_srtt.HasValue)
            {
                return QualityGrade.Unknown;
            }
            return Classify(factor);
        }

        /// <summary>The grade by srtt, loss and jitter (unrounded) with every limit times factor.</summary>
        private QualityGrade Classify(double factor)
        {
            double srtt = _srtt.Value;
            double loss = LossPctRaw;
            if (srtt < QualityConstants.ExcellentRttMs * factor && loss < QualityConstants.ExcellentLossPct * factor
                && _jitter < QualityConstants.ExcellentJitterMs * factor)
            {
                return QualityGrade.Excellent;
            }
            if (srtt < QualityConstants.GoodRttMs * factor && loss < QualityConstants.GoodLossPct * factor
                && _jitter < QualityConstants.GoodJitterMs * factor)
            {
                return QualityGrade.Good;
            }
            return QualityGrade.Poor;
        }
    }

    /// <summary>
    /// When the next report is due (spec Q3, the vectors' report_schedule): due when there is
    /// a link and ReportIntervalMs passed since the last report, or when a link's path or grade
    /// changed or milestones / ICE failures are queued and ReportMinGapMs passed. The last
    /// report's time starts at the Welcome (Start).
    /// </summary>
    public sealed class ReportSchedule
    {
        /// <summary>When the last report went (or the Welcome came); -1: not connected.</summary>
        public long LastAt = -1;
        /// <summary>A link's path or grade changed since the last report.</summary>
        public bool ChangePending;

        /// <summary>A Welcome: the clock of the schedule starts.</summary>
        public void Start(long now)
        {
            LastAt = now;
        }

        public void Stop()
        {
            LastAt = -1;
        }

        public void NoteChange()
        {
            ChangePending = true;
        }

        /// <summary>When a report is due; -1: none (no link, no change, nothing queued, or not started).</summary>
        public long DueAt(bool hasLinks, bool queued)
        {
            if (LastAt < 0)
            {
                return -1;
            }
            long t = -1;
            if (hasLinks)
            {
                t = LastAt + QualityConstants.ReportIntervalMs;
            }
            if (ChangePending || queued)
            {
                long early = LastAt + QualityConstants.ReportMinGapMs;
                t = t < 0 ? early : Math.Min(t, early);
            }
            return t;
        }

        public bool Due(long now, bool hasLinks, bool queued)
        {
            long at = DueAt(hasLinks, queued);
            return at >= 0 && now >= at;
        }

        /// <summary>When the shell must come back for it: now when due, else DueAt; -1: never.</summary>
        public long WakeAt(long now, bool hasLinks, bool queued)
        {
            long at = DueAt(hasLinks, queued);
            return at >= 0 && now >= at ? now : at;
        }

        public void Sent(long now)
        {
            LastAt = now;
            ChangePending = false;
        }
    }

    /// <summary>Milestones and ICE failures waiting for the next report (at most 16 each), and the candidate types gathered since the last.</summary>
    public sealed class ReportQueue
    {
        private readonly List<Milestone> _setup = new List<Milestone>();
        private readonly List<IceFailReason> _failures = new List<IceFailReason>();

        public CandidateKinds Candidates { get; private set; }
        /// <summary>Entries refused because their list was full.</summary>
        public long Dropped { get; private set; }

        public int Count
        {
            get { return _setup.Count + _failures.Count; }
        }

        public bool AddMilestone(MilestoneKind kind, LinkPath path, long ms)
        {
            if (_setup.Count >= ReportV1.MaxMilestones)
            {
                Dropped++;
                return false;
            }
            _setup.Add(new Milestone(kind, path, (uint)Math.Max(0, Math.Min(ms, uint.MaxValue))));
            return true;
        }

        public bool AddIceFailure(IceFailReason reason)
        {
            if (_failures.Count >= ReportV1.MaxIceFailures)
            {
                Dropped++;
                return false;
            }
            _failures.Add(reason);
            return true;
        }

        public void AddCandidate(CandidateKinds kind)
        {
            Candidates |= kind;
        }

        /// <summary>A report of these links (the first 64) with everything queued; the queue empties.</summary>
        public ReportV1 Take(IEnumerable<LinkReport> links)
        {
            ReportV1 r = new ReportV1();
            foreach (LinkReport l in links)
            {
                if (r.Links.Count >= ReportV1.MaxLinks)
                {
                    break;
                }
                r.Links.Add(l);
            }
            r.Setup.AddRange(_setup);
            r.IceFailures.AddRange(_failures);
            r.Candidates = Candidates;
            _setup.Clear();
            _failures.Clear();
            Candidates = CandidateKinds.None;
            return r;
        }

        public void Clear()
        {
            _setup.Clear();
            _failures.Clear();
            Candidates = CandidateKinds.None;
        }
    }
}
