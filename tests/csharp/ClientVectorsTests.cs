// The C# replay of docs/client-vectors.json (written by `flightsim-p2p vectors --client`;
// docs/PROTOCOL.md "Client behaviour" explains each section): every case and every step
// of every section whose "clients" include "csharp" runs against the C# pure core
// (client/CoreBasics.*.cs: Backoff, ReconnectPlan, ReconnectPolicy, Liveness, CloseVerdict,
// ErrorRules, AfterReconnect, RedirectRun, ServerRotation, Timeouts, Race, PathRules,
// MoveMachine), the
// functions ServiceCore decides with. A behaviour change in C# that the vectors do not
// share fails here, each failure naming its section and case; a section naming csharp
// that this file cannot map is a failure, not a skip. The constants are checked against
// the C# defaults too.
//
// Where rule 7 makes C# differ on purpose (after the protocol's resume is over, SignalR's
// WithAutomaticReconnect delays govern), resume_plan is replayed twice: against the
// protocol's plan alone (what the vectors describe), and against the plan ServiceCore
// builds (with SignalR's default policy), which must agree with every step before the
// switch and follow signalr_retry after it. The steps where C# departs are printed.
//
// Usage: mono client-vectors-tests.exe [docs/client-vectors.json]. Last line: N passed, N failed.
// Plain C# 7.2 (mono).

using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using FlightSimP2P.Client;
using FlightSimP2P.Protocol;
using static FlightSimP2P.Tests.TestKit;

namespace FlightSimP2P.Tests
{
    internal static class ClientVectorsTests
    {
        private sealed class Mismatch : Exception
        {
            public Mismatch(string what) : base(what)
            {
            }
        }

        // --- reading the JSON ---

        private static Dictionary<string, object> O(object v, string what)
        {
            Dictionary<string, object> d = v as Dictionary<string, object>;
            if (d == null)
            {
                throw new Mismatch(what + " is not an object");
            }
            return d;
        }

        private static object Get(Dictionary<string, object> d, string key)
        {
            object v;
            if (!d.TryGetValue(key, out v))
            {
                throw new Mismatch("no \"" + key + "\"");
            }
            return v;
        }

        private static bool Has(Dictionary<string, object> d, string key)
        {
            return d.ContainsKey(key);
        }

        private static string S(Dictionary<string, object> d, string key)
        {
            object v = Get(d, key);
            if (v != null && !(v is string))
            {
                throw new Mismatch("\"" + key + "\" is not a string");
            }
            return (string)v;
        }

        private static double? D(Dictionary<string, object> d, string key)
        {
            object v = Get(d, key);
            if (v == null)
            {
                return null;
            }
            if (!(v is double))
            {
                throw new Mismatch("\"" + key + "\" is not a number");
            }
            return (double)v;
        }

        private static long L(Dictionary<string, object> d, string key)
        {
            double? v = D(d, key);
            if (!v.HasValue)
            {
                throw new Mismatch("\"" + key + "\" is null");
            }
            return (long)v.Value;
        }

        /// <summary>A number or null as a long, null as -1 (the C# core's "none").</summary>
        private static long LOrNone(Dictionary<string, object> d, string key)
        {
            double? v = D(d, key);
            return v.HasValue ? (long)v.Value : -1;
        }

        private static bool B(Dictionary<string, object> d, string key)
        {
            object v = Get(d, key);
            if (!(v is bool))
            {
                throw new Mismatch("\"" + key + "\" is not a boolean");
            }
            return (bool)v;
        }

        private static List<object> A(Dictionary<string, object> d, string key)
        {
            List<object> a = Get(d, key) as List<object>;
            if (a == null)
            {
                throw new Mismatch("\"" + key + "\" is not an array");
            }
            return a;
        }

        private static string Show(object v)
        {
            if (v == null)
            {
                return "null";
            }
            if (v is double)
            {
                return ((double)v).ToString("R", CultureInfo.InvariantCulture);
            }
            if (v is bool)
            {
                return (bool)v ? "true" : "false";
            }
            if (v is string)
            {
                return "\"" + v + "\"";
            }
            List<object> a = v as List<object>;
            if (a != null)
            {
                return "[" + string.Join(", ", a.Select(Show)) + "]";
            }
            return v.ToString();
        }

        /// <summary>Compares one expected field with what C# computed (numbers compared as doubles, null as null).</summary>
        private static void Field(Dictionary<string, object> expect, string key, object got, List<string> diffs)
        {
            object want = Get(expect, key);
            object norm = got;
            if (got is int || got is long || got is uint || got is ushort || got is byte)
            {
                norm = Convert.ToDouble(got, CultureInfo.InvariantCulture);
            }
            bool same;
            if (want == null || norm == null)
            {
                same = want == null && norm == null;
            }
            else if (want is double && norm is double)
            {
                same = Math.Abs((double)want - (double)norm) < 1e-9;
            }
            else if (want is List<object> && norm is List<object>)
            {
                same = Show(want) == Show(norm);
            }
            else
            {
                same = want.Equals(norm);
            }
            if (!same)
            {
                diffs.Add(key + ": expected " + Show(want) + ", C# " + Show(norm));
            }
        }

        private static void Report(string label, List<string> diffs)
        {
            Check(diffs.Count == 0, label, diffs.Count == 0 ? null : string.Join("; ", diffs));
        }

        // --- the file ---

        private static readonly Dictionary<string, Action<string, Dictionary<string, object>, Dictionary<string, object>>> Cases =
            new Dictionary<string, Action<string, Dictionary<string, object>, Dictionary<string, object>>>
            {
                { "backoff", BackoffCase },
                { "close", CloseCase },
                { "errors", ErrorsCase },
                { "after_reconnect", AfterReconnectCase },
                { "redirects", RedirectsCase },
                { "timeouts", TimeoutsCase },
                { "race", RaceCase },
                { "paths", PathsCase },
                { "signalr_retry", SignalRRetryCase },
                { "quality_buckets", QualityBucketsCase },
                { "report_schedule", ReportScheduleCase },
            };

        private static readonly Dictionary<string, Action<string, Dictionary<string, object>>> Scenarios =
            new Dictionary<string, Action<string, Dictionary<string, object>>>
            {
                { "resume_plan", ResumePlanScenario },
                { "rotation", RotationScenario },
                { "liveness", LivenessScenario },
                { "quality", QualityScenario },
                { "move", MoveScenario },
            };

        private static int Main(string[] args)
        {
            string path = args.Length > 0 ? args[0] : "docs/client-vectors.json";
            Prefix = "client-vectors ";
            QuietPasses = true;
            Dictionary<string, object> root;
            try
            {
                root = O(TestJson.Parse(File.ReadAllText(path, Encoding.UTF8)), "the file");
            }
            catch (Exception e)
            {
                Fail(path, "cannot be read: " + e.Message);
                return Summary();
            }
            Constants(O(Get(root, "constants"), "constants"));
            Dictionary<string, object> sections = O(Get(root, "sections"), "sections");
            int mine = 0;
            foreach (KeyValuePair<string, object> kv in sections)
            {
                string name = kv.Key;
                Dictionary<string, object> section;
                List<object> clients;
                try
                {
                    section = O(kv.Value, name);
                    clients = A(section, "clients");
                }
                catch (Mismatch e)
                {
                    Fail(name, e.Message);
                    continue;
                }
                if (!clients.Contains("csharp"))
                {
                    continue;
                }
                mine++;
                int before = Passed + Failed;
                if (Cases.ContainsKey(name) && Has(section, "cases"))
                {
                    foreach (object c in A(section, "cases"))
                    {
                        Dictionary<string, object> cs = O(c, name + " case");
                        string label = name + " / " + S(cs, "name");
                        Run(label, () => Cases[name](label, O(Get(cs, "input"), "input"), O(Get(cs, "expect"), "expect")));
                    }
                }
                else if (Scenarios.ContainsKey(name) && Has(section, "scenarios"))
                {
                    foreach (object c in A(section, "scenarios"))
                    {
                        Dictionary<string, object> sc = O(c, name + " scenario");
                        string label = name + " / " + S(sc, "name");
                        Run(label, () => Scenarios[name](label, sc));
                    }
                }
                else
                {
                    Fail(name, "names csharp, but the C# replay cannot map it (no replay for this section or shape)");
                    continue;
                }
                int ran = Passed + Failed - before;
                Note("     " + name + ": " + ran + " checks (" + S(section, "rule").Length + "-character rule)");
                if (ran == 0)
                {
                    Fail(name, "names csharp but holds no case");
                }
            }
            Check(mine > 0, "the file names csharp in some section");
            Note("     client-vectors: " + mine + " sections name csharp, replayed from " + path);
            return Summary();
        }

        private static void Run(string label, Action a)
        {
            try
            {
                a();
            }
            catch (Mismatch e)
            {
                Fail(label, "cannot map: " + e.Message);
            }
            catch (Exception e)
            {
                Fail(label, "threw " + e);
            }
        }

        /// <summary>constants.signalr_retry_delays_ms, the policy ServiceCore builds by default.</summary>
        private static long[] _signalrDelays = new long[0];

        private static void Constants(Dictionary<string, object> c)
        {
            _signalrDelays = A(c, "signalr_retry_delays_ms").Select(x => (long)(double)x).ToArray();
            List<string> diffs = new List<string>();
            Field(c, "backoff_steps_ms", Backoff.StepsMs.Select(x => (object)(double)x).ToList(), diffs);
            Field(c, "ping_interval_ms", Liveness.DefaultPingIntervalMs, diffs);
            Field(c, "probe_interval_ms", Liveness.ProbeIntervalMs, diffs);
            Field(c, "probe_after_min_ms", Liveness.ProbeAfterMinMs, diffs);
            Field(c, "probe_after_before_sample_ms", Liveness.ProbeAfterBeforeSampleMs, diffs);
            Field(c, "live_timeout_initial_ms", Liveness.InitialTimeoutMs, diffs);
            Field(c, "live_timeout_min_ms", Liveness.MinTimeoutMs, diffs);
            Field(c, "live_timeout_max_ms", Liveness.MaxTimeoutMs, diffs);
            Field(c, "max_redirects", ServerRotation.MaxRedirects, diffs);
            Field(c, "attempt_timeout_floor_ms", Timeouts.AttemptFloorMs, diffs);
            Field(c, "attempt_timeout_base_ms", Timeouts.AttemptBaseMs, diffs);
            Field(c, "attempt_timeout_rtt_factor", Timeouts.AttemptRttFactor, diffs);
            CoreOptions o = new CoreOptions();
            Field(c, "connect_timeout_ms", o.ConnectTimeoutMs, diffs);
            Field(c, "request_timeout_ms", o.RequestTimeoutMs, diffs);
            Field(c, "race_fallback_delay_ms", o.QuicFallbackDelayMs, diffs);
            Field(c, "shutting_down_delay_ms", CloseVerdict.ShuttingDownDelayMs, diffs);
            Field(c, "resume_grace_default_ms", (long)new Limits().ResumeGraceMs, diffs);
            Field(c, "reconnect_window_ms", ReconnectPlan.DefaultWindowMs, diffs);
            Field(c, "signalr_retry_delays_ms", ReconnectPolicy.SignalRDefaultMs.Select(x => (object)(double)x).ToList(), diffs);
            Field(c, "ping_interval_ms", o.PingIntervalMs, diffs);
            Field(c, "abandon_close_code", Wire.CloseReconnecting, diffs);
            Field(c, "abandon_websocket_close_code", Wire.WsCloseReconnecting, diffs);
            // Issue 25 (PROTOCOL.md section 14).
            Field(c, "echo_interval_ms", QualityConstants.EchoIntervalMs, diffs);
            Field(c, "echo_interval_relay_ms", QualityConstants.EchoIntervalRelayMs, diffs);
            Field(c, "echo_timeout_ms", QualityConstants.EchoTimeoutMs, diffs);
            Field(c, "loss_window", QualityConstants.LossWindow, diffs);
            Field(c, "lost_after_ms", QualityConstants.LostAfterMs, diffs);
            Dictionary<string, object> ex = O(Get(c, "grade_excellent"), "grade_excellent");
            Field(ex, "rtt_ms", QualityConstants.ExcellentRttMs, diffs);
            Field(ex, "loss_pct", QualityConstants.ExcellentLossPct, diffs);
            Field(ex, "jitter_ms", QualityConstants.ExcellentJitterMs, diffs);
            Dictionary<string, object> gd = O(Get(c, "grade_good"), "grade_good");
            Field(gd, "rtt_ms", QualityConstants.GoodRttMs, diffs);
            Field(gd, "loss_pct", QualityConstants.GoodLossPct, diffs);
            Field(gd, "jitter_ms", QualityConstants.GoodJitterMs, diffs);
            Field(c, "grade_hysteresis", QualityConstants.HysteresisFactor, diffs);
            Field(c, "report_interval_ms", QualityConstants.ReportIntervalMs, diffs);
            Field(c, "report_min_gap_ms", QualityConstants.ReportMinGapMs, diffs);
            Field(c, "report_max_queued", ReportV1.MaxMilestones, diffs);
            Field(c, "report_max_queued", ReportV1.MaxIceFailures, diffs);
            Field(c, "rtt_bucket_edges_ms", QualityBuckets.RttEdgesMs.Select(x => (object)x).ToList(), diffs);
            Field(c, "loss_bucket_edges_pct", QualityBuckets.LossEdgesPct.Select(x => (object)x).ToList(), diffs);
            if (Has(c, "move_old_close_after_ms"))
            {
                // Rule 10 (the move section): the overlap's cap.
                Field(c, "move_old_close_after_ms", MoveMachine.OldCloseAfterMs, diffs);
            }
            Report("constants (the C# defaults)", diffs);
        }

        // --- decision tables ---

        private static void BackoffCase(string label, Dictionary<string, object> i, Dictionary<string, object> e)
        {
            int attempt = (int)L(i, "attempt");
            double r = D(i, "random").Value;
            List<string> diffs = new List<string>();
            long delay = Backoff.DelayMs(attempt, r);
            Field(e, "delay_ms", delay, diffs);
            Field(e, "min_ms", Backoff.DelayMs(attempt, 0), diffs);
            Field(e, "max_ms", Backoff.StepMs(attempt), diffs);
            if (delay < Backoff.DelayMs(attempt, 0) || delay > Backoff.StepMs(attempt))
            {
                diffs.Add("delay " + delay + " outside [min, max]");
            }
            Report(label, diffs);
        }

        private static ushort ProtocolCode(string transport, double? raw)
        {
            if (!raw.HasValue)
            {
                return CloseVerdict.NoCode;
            }
            if (transport == "websocket")
            {
                return CloseVerdict.FromWebSocketStatus((int)raw.Value);
            }
            if (transport == "quic" || transport == "webtransport")
            {
                return raw.Value >= 0 && raw.Value < CloseVerdict.NoCode ? (ushort)raw.Value : (ushort)(CloseVerdict.NoCode - 1);
            }
            throw new Mismatch("unknown transport " + transport);
        }

        private static string ActionName(CloseAction a)
        {
            switch (a)
            {
                case CloseAction.Resume: return "resume";
                case CloseAction.ResumeAfter: return "resume_after";
                case CloseAction.Redirect: return "redirect";
                default: return "give_up";
            }
        }

        private static void CloseCase(string label, Dictionary<string, object> i, Dictionary<string, object> e)
        {
            CloseFacts f = new CloseFacts();
            f.Code = ProtocolCode(S(i, "transport"), D(i, "close_code"));
            double? before = D(i, "error_before");
            f.ErrorBefore = before.HasValue ? (ushort)before.Value : CloseVerdict.NoCode;
            f.GoingAwayMs = LOrNone(i, "going_away_ms");
            f.Redirected = B(i, "redirected");
            f.AppClosed = B(i, "app_closed");
            f.AutoResume = B(i, "auto_resume");
            f.Welcomed = B(i, "welcomed");
            long delay;
            CloseAction a = CloseVerdict.Decide(f, out delay);
            List<string> diffs = new List<string>();
            Field(e, "action", ActionName(a), diffs);
            Field(e, "delay_ms", delay < 0 ? null : (object)delay, diffs);
            Report(label, diffs);
        }

        private static void ErrorsCase(string label, Dictionary<string, object> i, Dictionary<string, object> e)
        {
            ushort code = (ushort)L(i, "code");
            List<string> diffs = new List<string>();
            Field(e, "name", ErrorRules.Name(code), diffs);
            Field(e, "fatal", ErrorCodes.IsFatal(code), diffs);
            Field(e, "gives_up", ErrorRules.GivesUp(code), diffs);
            Field(e, "answers_request", ErrorRules.AnswersRequest(code), diffs);
            CloseFacts f = new CloseFacts();
            f.Code = code;
            long delay;
            CloseAction a = CloseVerdict.Decide(f, out delay);
            Field(e, "close_action", ActionName(a), diffs);
            Field(e, "close_delay_ms", delay < 0 ? null : (object)delay, diffs);
            Field(e, "attempt_failure", ErrorRules.AttemptRetried(code) ? "retry" : "give_up", diffs);
            Report(label, diffs);
        }

        private static void AfterReconnectCase(string label, Dictionary<string, object> i, Dictionary<string, object> e)
        {
            ReconnectOutcome o = AfterReconnect.Decide(B(i, "resumed"), (uint)L(i, "peer_id"), (uint)L(i, "previous_peer_id"),
                B(i, "in_session"), B(i, "pending_request"));
            List<string> diffs = new List<string>();
            Field(e, "outcome", o.ToString().ToLowerInvariant(), diffs);
            Report(label, diffs);
        }

        private static void RedirectsCase(string label, Dictionary<string, object> i, Dictionary<string, object> e)
        {
            int max = ServerRotation.MaxRedirects;
            List<string> diffs = new List<string>();
            if (Has(i, "messages"))
            {
                RedirectRun run = new RedirectRun();
                run.Pending = B(i, "pending_request");
                foreach (object m in A(i, "messages"))
                {
                    switch (m as string)
                    {
                        case "redirect": run.Redirect(max); break;
                        case "welcome": run.Welcome(); break;
                        case "session_created":
                        case "session_joined": run.SessionEntered(); break;
                        case "error_answering": run.ErrorAnswering(); break;
                        case "pong":
                        case "peer_joined":
                        case "peer_left":
                        case "error": break;
                        default: throw new Mismatch("unknown message " + Show(m));
                    }
                }
                Field(e, "count", run.Count, diffs);
                Field(e, "action", RedirectRun.Follows(run.Count, max) ? "follow" : "fail", diffs);
            }
            else
            {
                int count = (int)L(i, "count");
                bool follow = RedirectRun.Follows(count, max);
                Field(e, "action", follow ? "follow" : "fail", diffs);
                RedirectThen then = RedirectRun.AfterFailing(B(i, "in_session"));
                Field(e, "then", follow ? null : (then == RedirectThen.BackToConfigured ? "back_to_configured" : "stop"), diffs);
            }
            Report(label, diffs);
        }

        private static void TimeoutsCase(string label, Dictionary<string, object> i, Dictionary<string, object> e)
        {
            List<string> diffs = new List<string>();
            string kind = S(i, "kind");
            if (kind == "attempt")
            {
                Field(e, "timeout_ms", Timeouts.AttemptMs(D(i, "rtt_ms") ?? 0, L(i, "connect_timeout_ms")), diffs);
            }
            else if (kind == "request")
            {
                Field(e, "timed_out", Timeouts.RequestTimedOut(L(i, "sent_at_ms"), L(i, "now_ms"), L(i, "request_timeout_ms")), diffs);
            }
            else
            {
                throw new Mismatch("unknown kind " + kind);
            }
            Report(label, diffs);
        }

        private static TransportKind Kind(string s)
        {
            if (s == "quic")
            {
                return TransportKind.Quic;
            }
            if (s == "websocket")
            {
                return TransportKind.WebSocket;
            }
            throw new Mismatch("unknown transport " + s);
        }

        private static string Name(TransportKind k)
        {
            return k == TransportKind.Quic ? "quic" : "websocket";
        }

        private static void RaceCase(string label, Dictionary<string, object> i, Dictionary<string, object> e)
        {
            List<string> diffs = new List<string>();
            string decision = S(i, "decision");
            List<Dictionary<string, object>> attempts = Has(i, "attempts")
                ? A(i, "attempts").Select(x => O(x, "attempt")).ToList() : new List<Dictionary<string, object>>();
            List<TransportKind> pending = attempts.Where(a => !B(a, "failed")).Select(a => Kind(S(a, "kind"))).ToList();
            if (decision == "start")
            {
                long after;
                TransportKind first = Race.Start(B(i, "quic_available"), L(i, "fallback_delay_ms"), out after);
                Field(e, "start", Name(first), diffs);
                Field(e, "websocket_after_ms", after < 0 ? null : (object)after, diffs);
            }
            else if (decision == "failed")
            {
                bool wsStarted = attempts.Any(a => S(a, "kind") == "websocket");
                bool startWs;
                bool lost = Race.Failed(Kind(S(i, "failed")), pending.Count, wsStarted, out startWs);
                Field(e, "start", startWs ? "websocket" : null, diffs);
                Field(e, "lost", lost, diffs);
            }
            else if (decision == "carries_first")
            {
                Field(e, "carries_first", Race.CarriesFirst(pending.Count), diffs);
            }
            else if (decision == "connected")
            {
                TransportKind won = Kind(S(i, "connected"));
                Field(e, "use", Name(won), diffs);
                Field(e, "abandon", Race.Abandon(won, pending).Select(k => (object)Name(k)).ToList(), diffs);
            }
            else
            {
                throw new Mismatch("unknown decision " + decision);
            }
            Report(label, diffs);
        }

        private static PeerPathKind? PathKind(string s)
        {
            switch (s)
            {
                case null: return null;
                case "direct": return PeerPathKind.Direct;
                case "turn": return PeerPathKind.Turn;
                case "relay": return PeerPathKind.Relay;
                case "connecting": return PeerPathKind.Connecting;
                case "classify": return PeerPathKind.Classify;
                default: throw new Mismatch("unknown path " + s);
            }
        }

        private static void PathsCase(string label, Dictionary<string, object> i, Dictionary<string, object> e)
        {
            List<string> diffs = new List<string>();
            string decision = S(i, "decision");
            switch (decision)
            {
                case "direct_usable":
                    Field(e, "usable", PathRules.DirectUsable(B(i, "force_relay"), S(i, "data_channel") == "open", S(i, "connection") == "connected"), diffs);
                    break;
                case "peer_path":
                    Field(e, "path", PathRules.PeerPath(B(i, "usable"), PathKind(S(i, "direct_kind")), B(i, "fallback"), B(i, "force_relay")).ToString().ToLowerInvariant(), diffs);
                    break;
                case "path_change":
                    Field(e, "change", PathRules.Change(PathKind(S(i, "previous")), PathKind(S(i, "path")).Value, B(i, "initial")).ToString().ToLowerInvariant(), diffs);
                    break;
                case "connection_state":
                    bool fallback;
                    bool retry;
                    PathRules.ConnectionState(S(i, "connection_state"), out fallback, out retry);
                    Field(e, "fallback", fallback, diffs);
                    Field(e, "retry", retry, diffs);
                    break;
                case "glare":
                    Field(e, "ignore_offer", PathRules.IgnoreOffer(S(i, "signaling_state") == "have-local-offer", (uint)L(i, "my_id"), (uint)L(i, "from_id")), diffs);
                    break;
                case "direct_retry":
                    Field(e, "due", PathRules.DirectRetryDue(L(i, "retry_ms"), B(i, "force_relay"), (uint)L(i, "my_id"), (uint)L(i, "peer_id"), B(i, "scheduled")), diffs);
                    break;
                default:
                    throw new Mismatch("unknown decision " + decision);
            }
            Report(label, diffs);
        }

        private static void SignalRRetryCase(string label, Dictionary<string, object> i, Dictionary<string, object> e)
        {
            List<string> diffs = new List<string>();
            string phase = S(i, "phase");
            if (phase == "resume")
            {
                Field(e, "governed_by", "protocol", diffs);
                Field(e, "delay_ms", Backoff.DelayMs((int)L(i, "attempt"), D(i, "random").Value), diffs);
            }
            else if (phase == "switch")
            {
                Field(e, "resume_over", ReconnectPlan.ResumeOver(L(i, "elapsed_since_loss_ms"), L(i, "grace_ms"), B(i, "resume_refused")), diffs);
            }
            else if (phase == "signalr")
            {
                long[] delays = A(i, "delays_ms").Select(x => (long)(double)x).ToArray();
                long d = new ReconnectPolicy(delays).Delay((int)L(i, "previous_retry_count"));
                Field(e, "governed_by", "signalr", diffs);
                Field(e, "delay_ms", d < 0 ? null : (object)d, diffs);
            }
            else
            {
                throw new Mismatch("unknown phase " + phase);
            }
            Report(label, diffs);
        }

        // --- timed scenarios ---

        private static void ResumePlanScenario(string label, Dictionary<string, object> sc)
        {
            Dictionary<string, object> given = O(Get(sc, "given"), "given");
            List<object> steps = A(sc, "steps");
            // 1. The protocol's plan, as the vectors describe it (no SignalR policy).
            ReplayPlan(label, given, steps, null, true);
            // 2. The plan ServiceCore builds (SignalR's default delays after the resume, rule 7).
            ReplayPlan(label + " [C# rule 7]", given, steps, new ReconnectPolicy(ReconnectPolicy.SignalRDefaultMs), false);
        }

        private static void ReplayPlan(string label, Dictionary<string, object> given, List<object> steps, ReconnectPolicy signalr, bool exact)
        {
            ReconnectPlan plan = new ReconnectPlan(signalr);
            plan.GraceMs = L(given, "grace_ms");
            plan.WindowMs = L(given, "window_ms");
            bool departed = false;
            int signalrRetries = 0;
            int n = 0;
            foreach (object st in steps)
            {
                n++;
                Dictionary<string, object> step = O(st, "step");
                long at = L(step, "at_ms");
                Dictionary<string, object> input = O(Get(step, "input"), "input");
                Dictionary<string, object> expect = O(Get(step, "expect"), "expect");
                string ev = S(input, "event");
                long next;
                if (ev == "lost")
                {
                    next = plan.Lost(at, L(input, "delay_ms"));
                }
                else if (ev == "failed")
                {
                    next = plan.Failed(at, D(input, "random").Value);
                }
                else if (ev == "redirected")
                {
                    next = plan.Redirected(at);
                }
                else
                {
                    throw new Mismatch("step " + n + ": unknown event " + ev);
                }
                string stepLabel = label + " @" + at + " ms (" + ev + ")";
                if (!exact && (departed || plan.Governor == RetryGovernor.SignalR))
                {
                    // Rule 7: from here SignalR's delays govern (signalr_retry, the constants'
                    // signalr_retry_delays_ms), a fresh connection each, not the vectors' plan.
                    if (!departed)
                    {
                        Note("     rule 7: " + label + ": from the step at " + at + " ms SignalR's delays govern (C# only)");
                    }
                    departed = true;
                    long want = signalrRetries < _signalrDelays.Length ? at + _signalrDelays[signalrRetries] : -1;
                    Check(next == want && !plan.WithToken, stepLabel + ": SignalR retry " + (signalrRetries + 1) + " (constants.signalr_retry_delays_ms)",
                        "expected the next attempt at " + want + " without the token, C# " + next + (plan.WithToken ? " with the token" : ""));
                    signalrRetries++;
                    if (next >= 0)
                    {
                        plan.Started();
                    }
                    continue;
                }
                List<string> diffs = new List<string>();
                bool give = next < 0;
                Field(expect, "action", give ? "give_up" : "attempt", diffs);
                Field(expect, "attempt", give ? null : (object)(plan.Attempts + 1), diffs);
                Field(expect, "start_at_ms", give ? null : (object)next, diffs);
                Field(expect, "with_token", give ? null : (object)plan.WithToken, diffs);
                Report(stepLabel, diffs);
                if (!give)
                {
                    plan.Started();
                }
            }
        }

        // --- rule 10: following a session move (client/CoreBasics.Move.cs) ---

        private static object Opt(Dictionary<string, object> d, string key)
        {
            object v;
            return d.TryGetValue(key, out v) ? v : null;
        }

        private static MoveEvent MoveEventNamed(string ev)
        {
            switch (ev)
            {
                case "redirect": return MoveEvent.Redirect;
                case "new_welcome": return MoveEvent.NewWelcome;
                case "new_failed": return MoveEvent.NewFailed;
                case "new_closed": return MoveEvent.NewClosed;
                case "old_closed": return MoveEvent.OldClosed;
                case "tick": return MoveEvent.Tick;
                default: throw new Mismatch("unknown event " + ev);
            }
        }

        private static MoveConn? MoveConnNamed(object v)
        {
            switch (v as string)
            {
                case null: return null;
                case "current": return MoveConn.Current;
                case "old": return MoveConn.Old;
                case "new": return MoveConn.New;
                default: throw new Mismatch("unknown connection " + v);
            }
        }

        private static RedirectReason? ReasonNamed(object v)
        {
            switch (v as string)
            {
                case null: return null;
                case "session": return RedirectReason.Session;
                case "draining": return RedirectReason.Draining;
                case "moved": return RedirectReason.Moved;
                case "placement": return RedirectReason.Placement;
                default: throw new Mismatch("unknown reason " + v);
            }
        }

        private static void MoveScenario(string label, Dictionary<string, object> sc)
        {
            MoveMachine m = new MoveMachine();
            foreach (object st in A(sc, "steps"))
            {
                Dictionary<string, object> step = O(st, "step");
                long at = L(step, "at_ms");
                Dictionary<string, object> input = O(Get(step, "input"), "input");
                string ev = S(input, "event");
                MoveInput i = new MoveInput();
                i.Event = MoveEventNamed(ev);
                i.On = MoveConnNamed(Opt(input, "on"));
                i.Reason = ReasonNamed(Opt(input, "reason"));
                i.Unasked = Opt(input, "unasked") as bool? ?? false;
                i.InSession = Opt(input, "in_session") as bool? ?? false;
                object version = Opt(input, "version");
                i.Version = version is double ? (int)(double)version : 0;
                i.Resumed = Opt(input, "resumed") as bool?;
                MoveAction a = m.Step(at, i);
                Dictionary<string, object> expect = O(Get(step, "expect"), "expect");
                List<string> diffs = new List<string>();
                Field(expect, "action", MoveMachine.Name(a), diffs);
                Field(expect, "phase", MoveMachine.Name(m.Phase), diffs);
                Field(expect, "send_on", m.SendOn.Select(c => (object)MoveMachine.Name(c)).ToList(), diffs);
                Field(expect, "take_from", m.TakeFrom.Select(c => (object)MoveMachine.Name(c)).ToList(), diffs);
                Field(expect, "control_on", m.ControlOn.HasValue ? MoveMachine.Name(m.ControlOn.Value) : null, diffs);
                Field(expect, "wake_at_ms", m.WakeAtMs >= 0 ? (object)m.WakeAtMs : null, diffs);
                Report(label + " @" + at + " ms (" + ev + (i.On.HasValue ? " on " + MoveMachine.Name(i.On.Value) : "") + ")", diffs);
            }
        }

        private static void RotationScenario(string label, Dictionary<string, object> sc)
        {
            Dictionary<string, object> given = O(Get(sc, "given"), "given");
            int configured = (int)L(given, "configured");
            List<ServerEndpoint> fallbacks = new List<ServerEndpoint>();
            for (int k = 1; k < configured; k++)
            {
                fallbacks.Add(new ServerEndpoint("fallback" + k, 4433, null));
            }
            ServerRotation r = new ServerRotation(fallbacks);
            foreach (object st in A(sc, "steps"))
            {
                Dictionary<string, object> step = O(st, "step");
                Dictionary<string, object> input = O(Get(step, "input"), "input");
                string ev = S(input, "event");
                switch (ev)
                {
                    case "unreachable": r.Unreachable(); break;
                    case "server_lost": r.ServerLost(); break;
                    case "connection_lost": break;
                    case "back_to_configured": r.BackToConfigured(); break;
                    case "redirected":
                        ServerEndpoint node = new ServerEndpoint();
                        node.Name = S(input, "node");
                        node.FromRedirect = true;
                        r.Redirected(node);
                        break;
                    default: throw new Mismatch("unknown event " + ev);
                }
                Dictionary<string, object> expect = O(Get(step, "expect"), "expect");
                List<string> diffs = new List<string>();
                Field(expect, "configured_index", r.Index, diffs);
                Field(expect, "redirect_target", r.Target != null ? r.Target.Name : null, diffs);
                Report(label + " @" + L(step, "at_ms") + " ms (" + ev + ")", diffs);
            }
        }

        private static string ActionName(LivenessAction a)
        {
            return a == LivenessAction.Ping ? "ping" : a == LivenessAction.Lost ? "lost" : "none";
        }

        private static void LivenessScenario(string label, Dictionary<string, object> sc)
        {
            Liveness l = new Liveness();
            foreach (object st in A(sc, "steps"))
            {
                Dictionary<string, object> step = O(st, "step");
                long at = L(step, "at_ms");
                Dictionary<string, object> input = O(Get(step, "input"), "input");
                string ev = S(input, "event");
                LivenessAction a = LivenessAction.None;
                switch (ev)
                {
                    case "connected": l.Connected(at); break;
                    case "tick": a = l.Tick(at); break;
                    case "heard": l.Heard(at); break;
                    case "pong": l.Pong(at, L(input, "ping_sent_at_ms")); break;
                    case "rtt_sample": l.Sample(D(input, "rtt_ms").Value); break;
                    default: throw new Mismatch("unknown event " + ev);
                }
                Dictionary<string, object> expect = O(Get(step, "expect"), "expect");
                List<string> diffs = new List<string>();
                Field(expect, "action", ActionName(a), diffs);
                Field(expect, "live_timeout_ms", l.LiveTimeoutMs, diffs);
                Field(expect, "srtt_ms", l.SrttMs.HasValue ? (object)l.SrttMs.Value : null, diffs);
                Field(expect, "rttvar_ms", l.RttvarMs.HasValue ? (object)l.RttvarMs.Value : null, diffs);
                long wake = l.WakeAt;
                Field(expect, "wake_at_ms", wake < 0 ? null : (object)wake, diffs);
                // Rule 2's probing (spec-probe): probe_after and the next Ping due, null once lost.
                Field(expect, "probe_after_ms", l.ProbeAfterMs, diffs);
                long next = l.NextPingAt;
                Field(expect, "next_ping_at_ms", next < 0 ? null : (object)next, diffs);
                Report(label + " @" + at + " ms (" + ev + ")", diffs);
            }
        }

        // --- issue 25: connection quality (PROTOCOL.md section 14) ---

        private static string GradeName(QualityGrade g)
        {
            return g.ToString().ToLowerInvariant();
        }

        private static LinkPath PathNamed(string p)
        {
            switch (p)
            {
                case "connecting": return LinkPath.Connecting;
                case "direct": return LinkPath.Direct;
                case "turn": return LinkPath.Turn;
                case "relay": return LinkPath.Relay;
                default: throw new Mismatch("unknown path " + p);
            }
        }

        /// <summary>Compares a number within tol (the vectors' rounding), null as null.</summary>
        private static void Near(Dictionary<string, object> expect, string key, double? got, double tol, List<string> diffs)
        {
            double? want = D(expect, key);
            bool same = want.HasValue == got.HasValue && (!want.HasValue || Math.Abs(want.Value - got.Value) <= tol);
            if (!same)
            {
                diffs.Add(key + ": expected " + (want.HasValue ? Show(want.Value) : "null") + ", C# " + (got.HasValue ? Show(got.Value) : "null"));
            }
        }

        /// <summary>Rule Q2: one QualityTracker driven step by step (QualityTracker in CoreBasics.Quality.cs).</summary>
        private static void QualityScenario(string label, Dictionary<string, object> sc)
        {
            QualityTracker t = new QualityTracker(1, L(sc, "created_at_ms"));
            foreach (object st in A(sc, "steps"))
            {
                Dictionary<string, object> step = O(st, "step");
                long at = L(step, "at_ms");
                Dictionary<string, object> input = O(Get(step, "input"), "input");
                string ev = S(input, "event");
                uint sent = 0;
                switch (ev)
                {
                    case "path": t.SetPath(at, PathNamed(S(input, "path"))); break;
                    case "online": t.SetOnline(at, B(input, "online")); break;
                    case "tick": sent = t.Tick(at); break;
                    case "reply": t.Reply(at, (uint)L(input, "id")); break;
                    case "frame_in": for (long i = L(input, "count"); i > 0; i--) t.FrameIn(at); break;
                    case "frame_out": for (long i = L(input, "count"); i > 0; i--) t.FrameOut(at); break;
                    case "stale": for (long i = L(input, "count"); i > 0; i--) t.Stale(at); break;
                    default: throw new Mismatch("unknown event " + ev);
                }
                bool changed = t.TakeChanged();
                PeerQuality q = t.Snapshot(at);
                Dictionary<string, object> expect = O(Get(step, "expect"), "expect");
                List<string> diffs = new List<string>();
                Field(expect, "sent_id", sent == 0 ? null : (object)sent, diffs);
                Field(expect, "path", q.Path.ToString().ToLowerInvariant(), diffs);
                Field(expect, "path_ms", q.PathMs, diffs);
                Field(expect, "grade", GradeName(q.Grade), diffs);
                // rtt_ms is round(srtt): the unrounded srtt within 0.51; loss and jitter within 0.051.
                Near(expect, "rtt_ms", t.SrttMs, 0.51, diffs);
                Near(expect, "loss_pct", t.LossPctRaw, 0.051, diffs);
                Near(expect, "jitter_ms", t.SrttMs.HasValue ? (double?)t.Jitter : null, 0.051, diffs);
                Field(expect, "fps_in", q.FpsIn, diffs);
                Field(expect, "fps_out", q.FpsOut, diffs);
                Field(expect, "stale_dropped", q.StaleDropped, diffs);
                Field(expect, "event", changed, diffs);
                long wake = t.PollTimeout(at);
                Field(expect, "wake_at_ms", wake < 0 ? null : (object)wake, diffs);
                // The rounded snapshot agrees with the expected literals too.
                Field(expect, "rtt_ms", q.RttMs.HasValue ? (object)q.RttMs.Value : null, diffs);
                Near(expect, "loss_pct", q.LossPct, 1e-9, diffs);
                Near(expect, "jitter_ms", q.JitterMs, 1e-9, diffs);
                Report(label + " @" + at + " ms (" + ev + ")", diffs);
            }
        }

        /// <summary>Rule Q3: the buckets of a LinkReport.</summary>
        private static void QualityBucketsCase(string label, Dictionary<string, object> i, Dictionary<string, object> e)
        {
            List<string> diffs = new List<string>();
            byte b;
            if (Has(i, "rtt_ms"))
            {
                b = QualityBuckets.Rtt(D(i, "rtt_ms"));
            }
            else
            {
                b = QualityBuckets.Loss(D(i, "loss_pct"));
            }
            Field(e, "bucket", b, diffs);
            Report(label, diffs);
        }

        /// <summary>Rule Q3: when a report is due (ReportSchedule).</summary>
        private static void ReportScheduleCase(string label, Dictionary<string, object> i, Dictionary<string, object> e)
        {
            ReportSchedule s = new ReportSchedule();
            s.Start(L(i, "last_report_at_ms"));
            if (B(i, "change_pending"))
            {
                s.NoteChange();
            }
            long now = L(i, "now_ms");
            bool links = B(i, "has_links");
            bool queued = B(i, "queued");
            List<string> diffs = new List<string>();
            Field(e, "due", s.Due(now, links, queued), diffs);
            long wake = s.WakeAt(now, links, queued);
            Field(e, "wake_at_ms", wake < 0 ? null : (object)wake, diffs);
            Report(label, diffs);
        }
    }
}
