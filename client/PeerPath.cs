// The per-peer path state machine of the functional core: which way flight data
// to one peer goes (relay, direct DataChannel, TURN), the direct attempt's
// deadline, stall detection on a connected direct path, going back to direct on
// recovery, and the bound on what waits in SIPSorcery's queue.
//
// Why stall detection: SIPSorcery's data channels are reliable and ordered
// whatever RTCDataChannelInit says (sipsorcery#1502), so one lost packet holds
// every later frame until SCTP retransmits it (RTO at least 1 s, doubled); ICE only
// reports "disconnected" after 8 s; and bufferedAmount counts only chunks SCTP has
// not sent yet, not those in flight, so the send queue shows a stall late.
//
// With a peer that acknowledges (a C# client: PeerAck, PROTOCOL.md section 8), the
// core knows what arrived:
//   * stall: a frame handed to the DataChannel is not acknowledged within
//     UnansweredMs (StallMs, or 3 x the measured ack latency, at most
//     MaxUnansweredMs = 280 ms): relay from then on. A peer that merely stops
//     sending changes nothing (it still acknowledges ours);
//   * window: at most WindowBytes of unacknowledged frames go to the DataChannel
//     (newer frames wait in a one-frame slot). That keeps SCTP's bytes in flight
//     under its congestion window after a timeout (one MTU, 1300 B), so
//   * probes still enter the network during a stall: every ProbeMs a 4-byte copy
//     of the current sequence number. Once the path heals they arrive, their SACKs
//     report the gap, and SCTP fast-retransmits the lost chunks after three such
//     reports instead of waiting for its doubled timeout;
//   * recovery: the acknowledgement of a frame or probe sent after the stall began
//     (ordered delivery: everything before it arrived too). Back to direct.
// A peer that never acknowledges (a browser, an older client) is watched through
// three signs instead, each within StallMs:
//   * the peer was sending to us on the direct path at a steady rate and stopped;
//   * our own frames are not leaving SIPSorcery's send queue (bufferedAmount does
//     not go down);
//   * the peer's frames arrive over the relay while it used to send directly
//     (it detected a stall in its direction).
// and is direct again once the queue drains and the peer's direct frames flow
// again (or, if the peer does not send to us, the queue stayed empty for RecoverMs).
// After ICE recovers from "disconnected" the path stays on the relay until the
// same proof arrives (it used to switch back at once with a backlog still queued).
//
// Which path a peer is on is decided by the shared path rules (PROTOCOL.md section 12
// rule 8, PathRules, replayed on docs/client-vectors.json): this class only keeps their
// inputs (forced relay, the channel open, the connection connected, fallen back, TURN)
// and asks PathRules.DirectUsable and PathRules.PeerPath; connection states go through
// PathRules.ConnectionState. A stall is the one C# addition: a stalled channel is not
// usable and counts as a fallback while it lasts.
//
// C# 7.2 (mono); no I/O.

using System;
using System.Collections.Generic;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    /// <summary>The path flight data to or from a peer takes.</summary>
    public enum FlightPath
    {
        /// <summary>Through the server on the signaling connection.</summary>
        Relay,
        /// <summary>WebRTC DataChannel over a direct UDP path.</summary>
        Direct,
        /// <summary>WebRTC DataChannel through a TURN server.</summary>
        Turn,
    }

    /// <summary>State of the WebRTC attempt with one peer.</summary>
    public enum DirectState
    {
        Connecting,
        Connected,
        /// <summary>ICE reported disconnected after it had worked; the relay carries data until it recovers.</summary>
        Interrupted,
        Failed,
        Disabled,
    }

    /// <summary>Timings of the path machine (milliseconds).</summary>
    public sealed class PathTimings
    {
        public long DirectConnectTimeoutMs = 10000;
        public long StallMs = 200;
        public long ProbeMs = 100;
        public long RecoverMs = 500;
        /// <summary>Acknowledging peers: the most an unacknowledged frame may wait before the path counts as stalled.</summary>
        public long MaxUnansweredMs = 280;
        /// <summary>Acknowledging peers: bytes of unacknowledged frames allowed in the DataChannel (under SCTP's 1300 B window after a timeout).</summary>
        public int WindowBytes = 1024;
        /// <summary>Acknowledging peers: extra bytes for 4-byte probes during a stall (64 probes).</summary>
        public int ProbeBudgetBytes = 256;
        /// <summary>Acknowledging peers: after this long stalled, probe every SlowProbeMs (the budget then lasts about 13 s).</summary>
        public long SlowProbeAfterMs = 2000;
        public long SlowProbeMs = 250;
        /// <summary>Frames that may wait unsent in SIPSorcery's queue per peer; newer ones replace older ones in a one-frame slot.</summary>
        public int MaxQueuedFrames = 2;
    }

    /// <summary>What the core should do with one frame for this peer.</summary>
    public enum SendDecision
    {
        Relay,
        Direct,
        /// <summary>Held in the peer's slot until SIPSorcery's queue drains (an older held frame was dropped).</summary>
        Held,
    }

    public sealed class PeerPath
    {
        private readonly PathTimings _t;
        // The path rules' inputs (PathRules).
        private readonly bool _forceRelay;
        private bool _channelOpen;
        // The last ICE or peer connection state the link reported for this attempt (null: none).
        private string _connection;
        private bool _fallback;
        private long _deadline = -1;
        private bool _stalled;
        private long _stallStart;
        private long _lastDirectRx = -1;
        private double _rxIntervalEwma = -1;
        private int _directRxSinceStall;
        private long _bufferedSince = -1;
        private long _lastBuffered;
        private long _emptySince = -1;
        private long _lastProbe;
        private long _avgFrameBytes = 200;
        private int _relayRxWhileDirect;
        private byte[] _held;
        private uint _heldSeq;
        // Acknowledging peer (a PeerAck arrived on this link): frames in flight, oldest first.
        private bool _ackMode;
        private readonly List<InFlight> _unacked = new List<InFlight>();
        private long _unackedBytes;
        private double _ackLatency = -1;

        private struct InFlight
        {
            public uint Seq;
            public long At;
            public int Bytes;
        }

        public PeerPath(PathTimings timings)
            : this(timings, false)
        {
        }

        /// <summary>forceRelay: direct paths are off (the rules' force_relay): the path is the relay from the start.</summary>
        public PeerPath(PathTimings timings, bool forceRelay)
        {
            _t = timings;
            _forceRelay = forceRelay;
            State = DirectState.Disabled;
        }

        public DirectState State { get; private set; }

        public bool Turn { get; private set; }

        public bool Stalled
        {
            get { return _stalled; }
        }

        /// <summary>Frames replaced in the slot (stale before they could be sent directly).</summary>
        public long DroppedDirect { get; private set; }

        /// <summary>Times this peer switched to the relay because the direct path stalled.</summary>
        public long Stalls { get; private set; }

        /// <summary>Fallen back to the relay (deadline, connection failed/closed/disconnected, channel closed, or no offer came): sticky, as in the rules.</summary>
        public bool FallenBack
        {
            get { return _fallback; }
        }

        /// <summary>
        /// The connection is connected: its last reported state; a link that reports none (the
        /// test fakes) has a connected transport once the channel opened (SIPSorcery opens it
        /// only after ICE and DTLS have connected).
        /// </summary>
        private bool Connected
        {
            get { return _connection == "connected" || (_connection == null && _channelOpen); }
        }

        /// <summary>The DataChannel may carry flight data (PathRules.DirectUsable); a stalled one may not.</summary>
        public bool Usable
        {
            get { return PathRules.DirectUsable(_forceRelay, _channelOpen, Connected) && !_stalled; }
        }

        /// <summary>The peer's path by the rules (PathRules.PeerPath): direct, turn, relay or connecting.</summary>
        public PeerPathKind Kind
        {
            get { return PathRules.PeerPath(Usable, Turn ? PeerPathKind.Turn : PeerPathKind.Direct, _fallback || _stalled, _forceRelay); }
        }

        /// <summary>The way flight data goes: Kind, with connecting on the relay.</summary>
        public FlightPath Path
        {
            get { return ToFlightPath(Kind); }
        }

        public static FlightPath ToFlightPath(PeerPathKind kind)
        {
            switch (kind)
            {
                case PeerPathKind.Direct:
                    return FlightPath.Direct;
                case PeerPathKind.Turn:
                    return FlightPath.Turn;
                default:
                    return FlightPath.Relay;
            }
        }

        public bool HasHeld
        {
            get { return _held != null; }
        }

        /// <summary>The peer acknowledges direct frames (PeerAck): stall and recovery follow its acknowledgements.</summary>
        public bool AckMode
        {
            get { return _ackMode; }
        }

        /// <summary>Bytes handed to the DataChannel and not acknowledged yet (acknowledging peers).</summary>
        public long UnackedBytes
        {
            get { return _unackedBytes; }
        }

        /// <summary>How long a frame may go unacknowledged before the path counts as stalled.</summary>
        public long UnansweredMs
        {
            get
            {
                long t = _t.StallMs;
                if (_ackLatency >= 0)
                {
                    t = Math.Max(t, (long)(3 * _ackLatency));
                }
                return Math.Min(t, Math.Max(_t.StallMs, _t.MaxUnansweredMs));
            }
        }

        public void StartAttempt(long now)
        {
            State = DirectState.Connecting;
            _channelOpen = false;
            _connection = null;
            _deadline = now + _t.DirectConnectTimeoutMs;
            _ackMode = false;
            _ackLatency = -1;
            ResetMonitor();
        }

        public void Disable()
        {
            State = DirectState.Disabled;
            _channelOpen = false;
            _connection = null;
            _deadline = -1;
            ResetMonitor();
        }

        /// <summary>The attempt is over (deadline, failed/closed, channel closed): fall back.</summary>
        public void Fail()
        {
            State = DirectState.Failed;
            _channelOpen = false;
            _connection = null;
            _fallback = true;
            _deadline = -1;
            ResetMonitor();
        }

        /// <summary>No direct attempt will come in time (a new peer's offer did not arrive): fall back.</summary>
        public void FallBack()
        {
            _fallback = true;
        }

        /// <summary>The DataChannel opened (SIPSorcery opens it over a connected transport).</summary>
        public void ChannelOpen(long now, bool turn)
        {
            State = DirectState.Connected;
            _channelOpen = true;
            Turn = turn;
            _deadline = -1;
            ResetMonitor();
        }

        /// <summary>
        /// An ICE or peer connection state (W3C name), by PathRules.ConnectionState: failed/closed
        /// fall back and return true (the caller ends the attempt: Fail, and the retry rule);
        /// disconnected falls back only (Interrupted until connected again); connected again
        /// recovers (see IceRecovered). Other states change nothing.
        /// </summary>
        public bool ConnectionState(long now, string state)
        {
            bool fallback;
            bool retry;
            PathRules.ConnectionState(state, out fallback, out retry);
            _connection = state;
            if (fallback)
            {
                _fallback = true;
                if (State == DirectState.Connected)
                {
                    State = DirectState.Interrupted;
                }
            }
            else if (state == "connected")
            {
                IceRecovered(now);
            }
            return retry;
        }

        /// <summary>ICE disconnected: ConnectionState "disconnected".</summary>
        public void IceInterrupted()
        {
            ConnectionState(0, "disconnected");
        }

        /// <summary>
        /// ICE connected again. SCTP may still hold a backlog and a doubled timeout: stay on
        /// the relay, probing, until the recovery rule sees the path deliver.
        /// </summary>
        public void IceRecovered(long now)
        {
            _connection = "connected";
            if (State == DirectState.Interrupted)
            {
                State = DirectState.Connected;
                _held = null;
                EnterStall(now);
            }
        }

        private void EnterStall(long now)
        {
            _stalled = true;
            _stallStart = now;
            _lastProbe = now - _t.ProbeMs;
            _directRxSinceStall = 0;
            _held = null;
        }

        private void ResetMonitor()
        {
            _stalled = false;
            _lastDirectRx = -1;
            _rxIntervalEwma = -1;
            _bufferedSince = -1;
            _lastBuffered = 0;
            _emptySince = -1;
            _relayRxWhileDirect = 0;
            _held = null;
            _unacked.Clear();
            _unackedBytes = 0;
        }

        /// <summary>A frame (or probe) with this sequence number went to the DataChannel.</summary>
        public void OnSent(long now, uint seq, int bytes)
        {
            InFlight f;
            f.Seq = seq;
            f.At = now;
            f.Bytes = bytes;
            _unacked.Add(f);
            _unackedBytes += bytes;
            if (_unacked.Count > 4096)
            {
                // A peer that stopped acknowledging long ago: keep the newest.
                _unackedBytes -= _unacked[0].Bytes;
                _unacked.RemoveAt(0);
            }
        }

        /// <summary>
        /// The peer acknowledged the frame whose sequence number ends in ack16 (and, the
        /// channel being ordered, everything before it). Returns true when Path changed.
        /// </summary>
        public bool OnAck(long now, ushort ack16)
        {
            FlightPath before = Path;
            _ackMode = true;
            int n = 0;
            while (n < _unacked.Count && (short)(ack16 - (ushort)_unacked[n].Seq) >= 0)
            {
                n++;
            }
            if (n == 0)
            {
                return false;
            }
            InFlight newest = _unacked[n - 1];
            long sample = now - newest.At;
            _ackLatency = _ackLatency < 0 ? sample : _ackLatency * 0.875 + sample * 0.125;
            bool sentSinceStall = _stalled && newest.At >= _stallStart;
            for (int i = 0; i < n; i++)
            {
                _unackedBytes -= _unacked[i].Bytes;
            }
            _unacked.RemoveRange(0, n);
            if (sentSinceStall && State == DirectState.Connected)
            {
                // What was sent after the stall began arrived: the path delivers again. Probes
                // still in flight waited behind the backlog: their time to answer starts now
                // (else the oldest one re-enters the stall at once: a flap).
                for (int i = 0; i < _unacked.Count; i++)
                {
                    InFlight f = _unacked[i];
                    f.At = Math.Max(f.At, now);
                    _unacked[i] = f;
                }
                _stalled = false;
                _relayRxWhileDirect = 0;
                _bufferedSince = -1;
            }
            return before != Path;
        }

        /// <summary>A frame from this peer arrived on the DataChannel.</summary>
        public void OnDirectRx(long now)
        {
            if (_lastDirectRx >= 0)
            {
                long gap = now - _lastDirectRx;
                _rxIntervalEwma = _rxIntervalEwma < 0 ? gap : _rxIntervalEwma * 0.8 + gap * 0.2;
            }
            _lastDirectRx = now;
            _relayRxWhileDirect = 0;
            if (_stalled)
            {
                _directRxSinceStall++;
            }
        }

        /// <summary>A frame from this peer arrived through the relay.</summary>
        public void OnRelayRx(long now)
        {
            if (State == DirectState.Connected && !_stalled && _lastDirectRx >= 0)
            {
                _relayRxWhileDirect++;
            }
        }

        /// <summary>Decides the path of one frame, given SIPSorcery's unsent bytes for this peer.</summary>
        public SendDecision Decide(long now, byte[] frame, long buffered)
        {
            return Decide(now, frame, 0, buffered);
        }

        /// <summary>As Decide; seq is the frame's sequence number (for the acknowledgements). Direct: call OnSent.</summary>
        public SendDecision Decide(long now, byte[] frame, uint seq, long buffered)
        {
            if (Path == FlightPath.Relay)
            {
                return SendDecision.Relay;
            }
            _avgFrameBytes = Math.Max(1, (_avgFrameBytes * 7 + frame.Length) / 8);
            ObserveBuffered(now, buffered);
            if (_stalled)
            {
                return SendDecision.Relay;
            }
            if (QueuedFrames(buffered) >= _t.MaxQueuedFrames
                || (_ackMode && _unackedBytes > 0 && _unackedBytes + frame.Length > _t.WindowBytes))
            {
                if (_held != null)
                {
                    DroppedDirect++;
                }
                _held = frame;
                _heldSeq = seq;
                return SendDecision.Held;
            }
            if (_held != null)
            {
                DroppedDirect++;
                _held = null;
            }
            return SendDecision.Direct;
        }

        private long QueuedFrames(long buffered)
        {
            return buffered <= 0 ? 0 : (buffered + _avgFrameBytes - 1) / _avgFrameBytes;
        }

        /// <summary>The held frame if it may go now (the queue has room), else null.</summary>
        public byte[] TakeHeld(long buffered)
        {
            uint seq;
            return TakeHeld(buffered, out seq);
        }

        /// <summary>As TakeHeld, with the held frame's sequence number (call OnSent when it goes).</summary>
        public byte[] TakeHeld(long buffered, out uint seq)
        {
            seq = _heldSeq;
            if (_held == null || _stalled || Path == FlightPath.Relay || QueuedFrames(buffered) >= _t.MaxQueuedFrames
                || (_ackMode && _unackedBytes > 0 && _unackedBytes + _held.Length > _t.WindowBytes))
            {
                return null;
            }
            byte[] f = _held;
            _held = null;
            return f;
        }

        private void ObserveBuffered(long now, long buffered)
        {
            if (buffered <= 0)
            {
                _bufferedSince = -1;
                if (_emptySince < 0)
                {
                    _emptySince = now;
                }
            }
            else
            {
                _emptySince = -1;
                if (_bufferedSince < 0 || buffered < _lastBuffered)
                {
                    _bufferedSince = now;
                }
            }
            _lastBuffered = buffered;
        }

        /// <summary>Runs the stall and recovery rules. Returns true when Path changed. probe is set when a probe frame should be offered to the DataChannel.</summary>
        public bool Tick(long now, long buffered, out bool probe, out bool deadlineMissed)
        {
            probe = false;
            deadlineMissed = false;
            FlightPath before = Path;
            if (State == DirectState.Connecting && _deadline >= 0 && now >= _deadline)
            {
                deadlineMissed = true;
                Fail();
                return before != Path;
            }
            if (State != DirectState.Connected)
            {
                return before != Path;
            }
            ObserveBuffered(now, buffered);
            if (_ackMode)
            {
                if (!_stalled)
                {
                    if (_unacked.Count > 0 && now - _unacked[0].At >= UnansweredMs)
                    {
                        EnterStall(now);
                        Stalls++;
                    }
                }
                else if (buffered <= 0 && now - _lastProbe >= (now - _stallStart < _t.SlowProbeAfterMs ? _t.ProbeMs : _t.SlowProbeMs)
                    && _unackedBytes + SnapshotEnvelope.HeaderBytes <= _t.WindowBytes + _t.ProbeBudgetBytes)
                {
                    _lastProbe = now;
                    probe = true;
                }
                return before != Path;
            }
            if (!_stalled)
            {
                bool steady = _rxIntervalEwma >= 0 && _rxIntervalEwma * 2 <= _t.StallMs;
                bool silent = steady && now - _lastDirectRx > Math.Max(_t.StallMs, (long)(4 * _rxIntervalEwma));
                bool stuck = _bufferedSince >= 0 && now - _bufferedSince > _t.StallMs;
                bool peerMoved = _relayRxWhileDirect >= 3;
                if (silent || stuck || peerMoved)
                {
                    EnterStall(now);
                    _lastProbe = now;
                    Stalls++;
                }
            }
            else
            {
                bool drained = buffered <= 0;
                bool peerFlows = _directRxSinceStall >= 3 && now - _lastDirectRx <= _t.StallMs;
                bool quietOk = _rxIntervalEwma < 0 && _emptySince >= 0 && now - _emptySince >= _t.RecoverMs
                    && now - _stallStart >= _t.RecoverMs;
                if (drained && (peerFlows || quietOk))
                {
                    _stalled = false;
                    _relayRxWhileDirect = 0;
                    _bufferedSince = -1;
                }
                else if (drained && now - _lastProbe >= _t.ProbeMs)
                {
                    _lastProbe = now;
                    probe = true;
                }
            }
            return before != Path;
        }

        /// <summary>When Tick next has something to decide; -1 for never.</summary>
        public long NextWake(long now)
        {
            if (State == DirectState.Connecting)
            {
                return _deadline;
            }
            if (State != DirectState.Connected)
            {
                return -1;
            }
            if (_held != null)
            {
                return now + 5;
            }
            if (_stalled)
            {
                return now + Math.Min(_t.ProbeMs, 50);
            }
            if (_ackMode)
            {
                return _unacked.Count > 0 ? Math.Max(now, _unacked[0].At + UnansweredMs) : now + 250;
            }
            if (_lastDirectRx >= 0 || _bufferedSince >= 0)
            {
                return now + Math.Max(10, _t.StallMs / 4);
            }
            return now + 250;
        }
    }
}
