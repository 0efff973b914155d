// When to try again after the connection is lost: the protocol's backoff (rule 1 of
// docs/PROTOCOL.md "Client behaviour"), the protocol's own resume with the token within
// the grace, and after it SignalR's WithAutomaticReconnect delays (rule 7, C# only).
// ServiceCore asks ReconnectPlan at every loss, failed attempt and redirect; the C#
// replay of docs/client-vectors.json (tests/csharp/ClientVectorsTests.cs) drives the same
// code through the backoff, resume_plan and signalr_retry sections. Split from
// CoreBasics.cs.
//
// Pure (no I/O, no threads, no clock reads); C# 7.2, compiled by Debian's mono in CI and
// unchanged by the .NET 8/9 build (the rules in Protocol.Codes.cs).

using System;

namespace FlightSimP2P.Client
{
    /// <summary>Rule 1: the reconnect backoff every client uses while it resumes.</summary>
    public static class Backoff
    {
        /// <summary>Steps in ms; attempt n (0-based) uses StepsMs[min(n, 5)].</summary>
        public static readonly long[] StepsMs = { 0, 250, 500, 1000, 2000, 4000 };

        public static long StepMs(int attempt)
        {
            return StepsMs[Math.Max(0, Math.Min(attempt, StepsMs.Length - 1))];
        }

        /// <summary>floor(step × (0.5 + 0.5 × r)), r in [0, 1) from the injected randomness; attempt 0 never waits.</summary>
        public static long DelayMs(int attempt, double r)
        {
            long step = StepMs(attempt);
            return (long)Math.Floor(step * (0.5 + 0.5 * r));
        }
    }

    /// <summary>SignalR's WithAutomaticReconnect schedule: delays[previous retry count], then Closed.</summary>
    public sealed class ReconnectPolicy
    {
        /// <summary>SignalR's default delays (WithAutomaticReconnect()): 0, 2, 10, 30 s.</summary>
        public static readonly long[] SignalRDefaultMs = { 0, 2000, 10000, 30000 };

        private readonly long[] _delays;

        public ReconnectPolicy(long[] delaysMs)
        {
            _delays = delaysMs ?? new long[0];
        }

        /// <summary>WithAutomaticReconnect was configured (at least one delay): the connection is resumed at all.</summary>
        public bool Enabled
        {
            get { return _delays.Length > 0; }
        }

        /// <summary>The delay before SignalR retry number previousRetryCount + 1, or -1: Closed. No jitter (SignalR's policy has none).</summary>
        public long Delay(int previousRetryCount)
        {
            if (previousRetryCount < 0 || previousRetryCount >= _delays.Length)
            {
                return -1;
            }
            return Math.Max(0, _delays[previousRetryCount]);
        }
    }

    /// <summary>Who decides the next reconnect attempt (rule 7).</summary>
    public enum RetryGovernor
    {
        /// <summary>The protocol's resume: the token, within the grace, rule 1's backoff.</summary>
        Protocol,
        /// <summary>SignalR's WithAutomaticReconnect delays: a fresh connection, then rejoin by code.</summary>
        SignalR,
    }

    /// <summary>
    /// The reconnect plan after a loss, as decisions with times (docs/PROTOCOL.md, "Client
    /// behaviour": resume_plan, and for C# signalr_retry):
    ///  * lost at t with the close verdict's delay d: attempt 1 at t + d;
    ///  * while the protocol's resume is on, a failed attempt at now schedules the next at
    ///    now + Backoff(attempts made since the loss or the last redirect); an attempt carries
    ///    the token when it starts less than grace after the loss;
    ///  * a redirect: attempt 1 again, at once (the grace and the window still count from the loss);
    ///  * the resume is over when a failure comes grace or more after the loss, or the resume
    ///    was refused (rule 7). With a SignalR policy the next attempts follow its delays
    ///    (fresh connection, rejoin by code) until it says stop; without one (Protocol only,
    ///    the resume_plan of the other clients) attempts go on without the token until one
    ///    would start later than max(window, first delay) after the loss.
    /// </summary>
    public sealed class ReconnectPlan
    {
        public const long DefaultGraceMs = 15000;
        public const long DefaultWindowMs = 60000;

        private readonly ReconnectPolicy _signalr;
        private long _firstDelay;

        /// <summary>signalr: the WithAutomaticReconnect delays that govern after the resume; null: the protocol's plan to the end (resume_plan).</summary>
        public ReconnectPlan(ReconnectPolicy signalr)
        {
            _signalr = signalr;
            GraceMs = DefaultGraceMs;
            WindowMs = DefaultWindowMs;
            LostAt = -1;
        }

        public long GraceMs { get; set; }
        public long WindowMs { get; set; }
        /// <summary>When the connection was lost; -1: not reconnecting.</summary>
        public long LostAt { get; private set; }
        /// <summary>Attempts started since the loss or the last redirect.</summary>
        public int Attempts { get; private set; }
        /// <summary>SignalR retries started (RetryContext.PreviousRetryCount of the next).</summary>
        public int SignalRRetries { get; private set; }
        public RetryGovernor Governor { get; private set; }
        /// <summary>When the next attempt starts; -1: none (give up).</summary>
        public long NextAt { get; private set; }

        public bool Active
        {
            get { return LostAt >= 0; }
        }

        /// <summary>Whether the planned attempt carries the resume token (it starts within the grace, the protocol's resume still on).</summary>
        public bool WithToken
        {
            get { return Governor == RetryGovernor.Protocol && NextAt >= 0 && NextAt - LostAt < GraceMs; }
        }

        /// <summary>The connection was lost at now; delayMs from the close verdict (0, GoingAway's, shutting_down's). Returns NextAt.</summary>
        public long Lost(long now, long delayMs)
        {
            LostAt = now;
            Attempts = 0;
            SignalRRetries = 0;
            Governor = RetryGovernor.Protocol;
            _firstDelay = Math.Max(0, delayMs);
            NextAt = now + _firstDelay;
            return NextAt;
        }

        /// <summary>The planned attempt starts now (counts it).</summary>
        public void Started()
        {
            if (Governor == RetryGovernor.SignalR)
            {
                SignalRRetries++;
            }
            Attempts++;
        }

        /// <summary>Rule 7's switch: the resume is over at now (grace passed or refused).</summary>
        public static bool ResumeOver(long elapsedSinceLossMs, long graceMs, bool refused)
        {
            return refused || elapsedSinceLossMs >= graceMs;
        }

        /// <summary>The attempt failed at now (r: randomness for the jitter). Returns NextAt, -1: give up.</summary>
        public long Failed(long now, double r)
        {
            return Next(now, r, false);
        }

        /// <summary>The resume was refused at now (resume_failed, a new peer id): SignalR's policy from here.</summary>
        public long Refused(long now, double r)
        {
            return Next(now, r, true);
        }

        private long Next(long now, double r, bool refused)
        {
            if (Governor == RetryGovernor.Protocol && _signalr != null && ResumeOver(now - LostAt, GraceMs, refused))
            {
                Governor = RetryGovernor.SignalR;
            }
            if (Governor == RetryGovernor.SignalR)
            {
                long d = _signalr.Delay(SignalRRetries);
                NextAt = d < 0 ? -1 : now + d;
                return NextAt;
            }
            long at = now + Backoff.DelayMs(Attempts, r);
            NextAt = at - LostAt > Math.Max(WindowMs, _firstDelay) ? -1 : at;
            return NextAt;
        }

        /// <summary>A Redirect at now: attempt 1 again, at once.</summary>
        public long Redirected(long now)
        {
            if (LostAt < 0)
            {
                LostAt = now;
                Governor = RetryGovernor.Protocol;
                SignalRRetries = 0;
            }
            Attempts = 0;
            NextAt = now;
            return NextAt;
        }

        /// <summary>Connected again (or stopped): the plan is over.</summary>
        public void Reset()
        {
            LostAt = -1;
            Attempts = 0;
            SignalRRetries = 0;
            Governor = RetryGovernor.Protocol;
            NextAt = -1;
        }
    }
}
