// When to try again after the connection is lost (the reconnect schedule). Split from
// CoreBasics.cs.
//
// Pure (no I/O, no threads, no clock reads); C# 7.2, compiled by Debian's mono in CI and
// unchanged by the .NET 8/9 build (the rules in Protocol.Codes.cs).

using System;

namespace FlightSimP2P.Client
{
    /// <summary>Automatic reconnect schedule: SignalR's default delays (0, 2, 10, 30 s) or your own, with a little jitter.</summary>
    public sealed class ReconnectPolicy
    {
        public static readonly long[] SignalRDefaultMs = { 0, 2000, 10000, 30000 };

        private readonly long[] _delays;

        public ReconnectPolicy(long[] delaysMs)
        {
            _delays = delaysMs ?? new long[0];
        }

        public bool Enabled
        {
            get { return _delays.Length > 0; }
        }

        /// <summary>Delay before attempt number 'attempt' (0-based), or -1 to give up. Up to 10 % jitter is added.</summary>
        public long Delay(int attempt, IRandom random)
        {
            if (attempt < 0 || attempt >= _delays.Length)
            {
                return -1;
            }
            long d = _delays[attempt];
            return d + (long)(d * 0.1 * random.NextDouble());
        }
    }
}
