// Rule 2 of docs/PROTOCOL.md "Client behaviour": when the connected server counts as lost.
// Pings every PingIntervalMs (500), an RTT estimate from Ping/Pong samples (RFC 6298
// weights), a live timeout clamp(3 × (srtt + 4·rttvar), 1500, 10000) (3000 before the first
// sample), timed from the oldest unanswered Ping, never from the last message: a client
// whose timers stalled (a suspended laptop, a busy thread pool) is not fooled into a false
// alarm, and anything heard from the server clears it. Probing (rule 2 revised): once a
// Ping has been outstanding for probe_after = max(250, srtt + 4·rttvar) (1000 before a
// sample), a Ping goes every ProbeIntervalMs (100) until anything is heard, as QUIC's probe
// timeout does: a lost Ping or Pong costs about one RTT, not the rest of the live timeout,
// so 5 % loss each way never strings together a live timeout of silence (0 false alarms in
// 400 simulated ten-minute runs, ServiceTests), while a dead server is lost as early as
// before. ServiceCore.Liveness.cs drives it; the C# replay of docs/client-vectors.json
// ("liveness") drives it alone. Split from CoreBasics.cs with the other pure building blocks.
//
// Pure (no I/O, no threads, no clock reads); C# 7.2, compiled by Debian's mono in CI and
// unchanged by the .NET 8/9 build (the rules in Protocol.Codes.cs).

using System;

namespace FlightSimP2P.Client
{
    public enum LivenessAction
    {
        None,
        /// <summary>Send a Ping now (its ClientTimeMs: now).</summary>
        Ping,
        /// <summary>The server is lost: close the connection, reconnect.</summary>
        Lost,
    }

    /// <summary>The liveness state of one connection (the RTT estimate outlives it: the next attempt's timeout uses it).</summary>
    public sealed class Liveness
    {
        public const long DefaultPingIntervalMs = 500;
        public const long InitialTimeoutMs = 3000;
        public const long MinTimeoutMs = 1500;
        public const long MaxTimeoutMs = 10000;
        /// <summary>While probing: a Ping every this many ms (never slower than PingIntervalMs).</summary>
        public const long ProbeIntervalMs = 100;
        /// <summary>probe_after's floor: floor(max(250, srtt + 4·rttvar)).</summary>
        public const long ProbeAfterMinMs = 250;
        /// <summary>probe_after before the first RTT sample.</summary>
        public const long ProbeAfterBeforeSampleMs = 1000;

        // When the last Ping went out (at Connected: the connect time, so the first Ping goes
        // one interval later); -1: not connected or pings off.
        private long _lastPingAt = -1;
        // awaiting_since: when the oldest Ping still unanswered went out; -1: none outstanding.
        private long _oldestUnanswered = -1;
        // A shorter interval set by SetPingInterval keeps the Ping then due (-1: none).
        private long _dueCap = -1;
        private bool _connected;

        public Liveness()
        {
            PingIntervalMs = DefaultPingIntervalMs;
            Judges = true;
        }

        /// <summary>
        /// Whether the live timeout declares the server lost (off: pings at PingIntervalMs and
        /// the RTT estimate only; no probing, as nothing waits on the answer).
        /// </summary>
        public bool Judges { get; set; }

        /// <summary>0: no pings and no verdict (liveness off).</summary>
        public long PingIntervalMs { get; set; }
        /// <summary>Smoothed RTT; null before the first sample.</summary>
        public double? SrttMs { get; private set; }
        public double? RttvarMs { get; private set; }
        public bool IsLost { get; private set; }

        /// <summary>When the oldest Ping still unanswered went out; -1: none outstanding.</summary>
        public long OldestUnanswered
        {
            get { return _oldestUnanswered; }
        }

        /// <summary>When the last Ping went out (the connect time before the first); -1: not connected.</summary>
        public long LastPingAt
        {
            get { return _lastPingAt; }
        }

        /// <summary>floor(clamp(3 × (srtt + 4 rttvar), 1500, 10000)), 3000 before a sample.</summary>
        public long LiveTimeoutMs
        {
            get
            {
                if (!SrttMs.HasValue)
                {
                    return InitialTimeoutMs;
                }
                double t = 3 * (SrttMs.Value + 4 * RttvarMs.Value);
                return (long)Math.Floor(Math.Max(MinTimeoutMs, Math.Min(MaxTimeoutMs, t)));
            }
        }

        /// <summary>How long a Ping is outstanding before probing starts: floor(max(250, srtt + 4 rttvar)), 1000 before a sample.</summary>
        public long ProbeAfterMs
        {
            get
            {
                if (!SrttMs.HasValue)
                {
                    return ProbeAfterBeforeSampleMs;
                }
                return (long)Math.Floor(Math.Max(ProbeAfterMinMs, SrttMs.Value + 4 * RttvarMs.Value));
            }
        }

        /// <summary>
        /// When the next Ping is due: last_ping_at + interval with nothing outstanding; with a
        /// Ping outstanding min(last_ping_at + interval, max(last_ping_at + 100,
        /// awaiting_since + probe_after)). -1: not connected, lost or pings off.
        /// </summary>
        public long NextPingAt
        {
            get
            {
                if (!_connected || IsLost || PingIntervalMs <= 0 || _lastPingAt < 0)
                {
                    return -1;
                }
                long due = _lastPingAt + PingIntervalMs;
                if (Judges && _oldestUnanswered >= 0)
                {
                    long probe = Math.Max(_lastPingAt + ProbeIntervalMs, _oldestUnanswered + ProbeAfterMs);
                    due = Math.Min(due, probe);
                }
                return _dueCap >= 0 ? Math.Min(due, _dueCap) : due;
            }
        }

        /// <summary>Connected at now: the first Ping is due one interval later.</summary>
        public void Connected(long now)
        {
            _connected = true;
            IsLost = false;
            _oldestUnanswered = -1;
            _dueCap = -1;
            _lastPingAt = PingIntervalMs > 0 ? now : -1;
        }

        /// <summary>Not connected any more: nothing to time.</summary>
        public void Disconnected()
        {
            _connected = false;
            _oldestUnanswered = -1;
            _lastPingAt = -1;
            _dueCap = -1;
        }

        /// <summary>Anything from the server (a message, a relay frame, a Pong): clears the wait (and any probing).</summary>
        public void Heard(long now)
        {
            _oldestUnanswered = -1;
        }

        /// <summary>A Pong to the Ping sent at pingSentAt: heard, and an RTT sample.</summary>
        public void Pong(long now, long pingSentAt)
        {
            Heard(now);
            Sample(Math.Max(0, now - pingSentAt));
        }

        /// <summary>RFC 6298: first s: srtt = s, rttvar = s/2; later rttvar = 3/4 rttvar + 1/4 |srtt - s|, then srtt = 7/8 srtt + 1/8 s.</summary>
        public void Sample(double rttMs)
        {
            if (!SrttMs.HasValue)
            {
                SrttMs = rttMs;
                RttvarMs = rttMs / 2;
                return;
            }
            RttvarMs = 0.75 * RttvarMs.Value + 0.25 * Math.Abs(SrttMs.Value - rttMs);
            SrttMs = 0.875 * SrttMs.Value + 0.125 * rttMs;
        }

        /// <summary>
        /// The decision at now: lost (a Ping outstanding and now - awaiting_since &gt; live
        /// timeout), else a Ping if now &gt;= NextPingAt (last_ping_at = now; awaiting_since =
        /// now if nothing was outstanding), else nothing.
        /// </summary>
        public LivenessAction Tick(long now)
        {
            if (!_connected || IsLost || PingIntervalMs <= 0)
            {
                return LivenessAction.None;
            }
            if (Judges && _oldestUnanswered >= 0 && now - _oldestUnanswered > LiveTimeoutMs)
            {
                IsLost = true;
                return LivenessAction.Lost;
            }
            long due = NextPingAt;
            if (due >= 0 && now >= due)
            {
                if (_oldestUnanswered < 0)
                {
                    _oldestUnanswered = now;
                }
                _lastPingAt = now;
                _dueCap = -1;
                return LivenessAction.Ping;
            }
            return LivenessAction.None;
        }

        /// <summary>A new ping interval from now: the next Ping no later than one new interval away (a longer one applies after the Ping then due).</summary>
        public void SetPingInterval(long now, long intervalMs)
        {
            long due = NextPingAt;
            PingIntervalMs = Math.Max(0, intervalMs);
            if (!_connected)
            {
                return;
            }
            if (PingIntervalMs <= 0)
            {
                _lastPingAt = -1;
                _oldestUnanswered = -1;
                _dueCap = -1;
                return;
            }
            if (_lastPingAt < 0)
            {
                // Pings were off: the first one a new interval from now.
                _lastPingAt = now;
                _dueCap = -1;
                return;
            }
            _dueCap = due < 0 ? now + PingIntervalMs : Math.Min(due, now + PingIntervalMs);
        }

        /// <summary>When to tick next: min(NextPingAt, awaiting_since + live timeout + 1); -1 once lost or off.</summary>
        public long WakeAt
        {
            get
            {
                if (!_connected || IsLost || PingIntervalMs <= 0)
                {
                    return -1;
                }
                long wake = NextPingAt;
                if (Judges && _oldestUnanswered >= 0)
                {
                    long dead = _oldestUnanswered + LiveTimeoutMs + 1;
                    wake = wake < 0 ? dead : Math.Min(wake, dead);
                }
                return wake;
            }
        }
    }
}
