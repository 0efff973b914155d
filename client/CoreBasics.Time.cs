// Building blocks of the client's functional core, split by seam into CoreBasics.*.cs.
// This file: time and randomness as the core receives them (IClock, IRandom) and their
// real implementations for the shell; tests inject fakes, so every timer is driven.
//
// Pure (no I/O, no threads, no clock reads); C# 7.2, compiled by Debian's mono in CI and
// unchanged by the .NET 8/9 build (the rules in Protocol.Codes.cs).

using System;
using System.Diagnostics;

namespace FlightSimP2P.Client
{
    /// <summary>Monotonic milliseconds. Injected so tests can drive time.</summary>
    public interface IClock
    {
        long NowMs { get; }
    }

    /// <summary>Randomness (reconnect jitter). Injected so tests are deterministic.</summary>
    public interface IRandom
    {
        /// <summary>Uniform in [0, 1).</summary>
        double NextDouble();
    }

    public sealed class SystemClock : IClock
    {
        public static readonly SystemClock Instance = new SystemClock();

        public long NowMs
        {
            get { return Stopwatch.GetTimestamp() * 1000 / Stopwatch.Frequency; }
        }
    }

    public sealed class SystemRandom : IRandom
    {
        private readonly Random _random = new Random();
        private readonly object _lock = new object();

        public double NextDouble()
        {
            lock (_lock)
            {
                return _random.NextDouble();
            }
        }
    }
}
