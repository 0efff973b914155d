// Rule 2 of docs/PROTOCOL.md "Client behaviour": when the connected server counts as lost.
// Pings every PingIntervalMs (500), an RTT estimate from Ping/Pong samples (RFC 6298
// weights), a live timeout clamp(3 × (srtt + 4·rttvar), 1500, 10000) (3000 before the first
// sample), timed from the oldest unanswered Ping, never from the last message: a client
// whose timers stalled (a suspended laptop, a busy thread pool) is not fooled into a false
// alarm, and anything heard from the server clears it. ServiceCore.Liveness.cs drives it;
// the C# replay of docs/client-vectors.json ("liveness") drives it alone. Split from
// CoreBasics.cs with the other pure building blocks.
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

        private long _pingDue = -1;
        private long _oldestUnanswered = -1;
        private bool _connected;

        public Liveness()
        {
            PingIntervalMs = DefaultPingIntervalMs;
            Judges = true;
        }

        /// <summary>Whether the live timeout declares the server lost (off: pings and the RTT estimate only).</summary>
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

        /// <summary>Connected at now: the first Ping is due one interval later.</summary>
        public void Connected(long now)
        {
            _connected = true;
            IsLost = false;
            _oldestUnanswered = -1;
            _pingDue = PingIntervalMs > 0 ? now + PingIntervalMs : -1;
        }

        /// <summary>Not connected any more: nothing to time.</summary>
        public void Disconnected()
        {
            _connected = false;
            _oldestUnanswered = -1;
            _pingDue = -1;
        }

        /// <summary>Anything from the server (a message, a relay frame): clears the wait.</summary>
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

        /// <summary>The decision at now: lost, a Ping to send, or nothing.</summary>
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
            if (_pingDue >= 0 && now >= _pingDue)
            {
                if (_oldestUnanswered < 0)
                {
                    _oldestUnanswered = now;
                }
                _pingDue = now + PingIntervalMs;
                return LivenessAction.Ping;
            }
            return LivenessAction.None;
        }

        /// <summary>A new ping interval from now: the next Ping no later than one new interval away.</summary>
        public void SetPingInterval(long now, long intervalMs)
        {
            PingIntervalMs = Math.Max(0, intervalMs);
            if (!_connected)
            {
                return;
            }
            if (PingIntervalMs <= 0)
            {
                _pingDue = -1;
                _oldestUnanswered = -1;
                return;
            }
            _pingDue = _pingDue < 0 ? now + PingIntervalMs : Math.Min(_pingDue, now + PingIntervalMs);
        }

        /// <summary>When to tick next: min(ping due, oldest unanswered + live timeout + 1); -1 once lost or off.</summary>
        public long WakeAt
        {
            get
            {
                if (!_connected || IsLost || PingIntervalMs <= 0)
                {
                    return -1;
                }
                long wake = _pingDue;
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
