// The client's decisions as pure functions, one per rule of docs/PROTOCOL.md "Client
// behaviour" that is a table rather than a timeline: how a connection ended (close),
// what each error code means (errors), what a Welcome after a reconnect leads to
// (after_reconnect), the redirect run and its limit (redirects), the attempt and request
// timeouts (timeouts), the QUIC/WebSocket race (race) and the path rules (paths).
// ServiceCore calls them; tests/csharp/ClientVectorsTests.cs replays docs/client-vectors.json
// against them, so a change here that the vectors do not share fails run.sh. Split from
// CoreBasics.cs with the other pure building blocks.
//
// Pure (no I/O, no threads, no clock reads); C# 7.2, compiled by Debian's mono in CI and
// unchanged by the .NET 8/9 build (the rules in Protocol.Codes.cs).

using System;
using System.Collections.Generic;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    public enum CloseAction
    {
        Resume,
        ResumeAfter,
        Redirect,
        GiveUp,
    }

    /// <summary>How a connection ended, as the close rule sees it.</summary>
    public sealed class CloseFacts
    {
        /// <summary>The protocol's close code (QUIC: the application code; WebSocket: 1000 → 0, 4000+n → n), or CloseVerdict.NoCode.</summary>
        public ushort Code = CloseVerdict.NoCode;
        /// <summary>The code of the Error received last on the connection, or CloseVerdict.NoCode.</summary>
        public ushort ErrorBefore = CloseVerdict.NoCode;
        /// <summary>A GoingAway's reconnect_after_ms, or -1.</summary>
        public long GoingAwayMs = -1;
        public bool Redirected;
        public bool AppClosed;
        public bool AutoResume = true;
        public bool Welcomed = true;
    }

    /// <summary>The close rule: first match wins.</summary>
    public static class CloseVerdict
    {
        /// <summary>No protocol close code (a reset, a timeout, a WebSocket status that is not 1000 or 4000+n).</summary>
        public const ushort NoCode = ushort.MaxValue;
        /// <summary>How long to wait before resuming after a close with shutting_down and no GoingAway.</summary>
        public const long ShuttingDownDelayMs = 1000;

        /// <summary>The protocol code of a WebSocket close status: 1000 → 0, 4000+n → n, anything else → NoCode.</summary>
        public static ushort FromWebSocketStatus(int status)
        {
            if (status == 1000)
            {
                return 0;
            }
            if (status >= 4000 && status < 5000)
            {
                return (ushort)(status - 4000);
            }
            return NoCode;
        }

        /// <summary>The action and its delay (ms; -1 when giving up).</summary>
        public static CloseAction Decide(CloseFacts f, out long delayMs)
        {
            delayMs = -1;
            if (f.AppClosed)
            {
                return CloseAction.GiveUp;
            }
            if (f.Redirected)
            {
                delayMs = 0;
                return CloseAction.Redirect;
            }
            if (!f.AutoResume || !f.Welcomed)
            {
                return CloseAction.GiveUp;
            }
            if (f.Code == 0)
            {
                return CloseAction.GiveUp;
            }
            if (f.ErrorBefore != NoCode && ErrorRules.GivesUp(f.ErrorBefore))
            {
                return CloseAction.GiveUp;
            }
            if (f.GoingAwayMs >= 0)
            {
                delayMs = f.GoingAwayMs;
                return CloseAction.ResumeAfter;
            }
            if (f.Code == NoCode)
            {
                delayMs = 0;
                return CloseAction.Resume;
            }
            if (f.Code == (ushort)ErrorCode.ShuttingDown)
            {
                delayMs = ShuttingDownDelayMs;
                return CloseAction.ResumeAfter;
            }
            // A dropped slow reader, a node that cannot place the token now, an access token
            // that ran out (the next attempt asks AccessTokenProvider again): the seat is kept.
            if (f.Code == (ushort)ErrorCode.SlowConsumer || f.Code == (ushort)ErrorCode.ClusterUnavailable
                || f.Code == (ushort)ErrorCode.TokenExpired)
            {
                delayMs = 0;
                return CloseAction.Resume;
            }
            return CloseAction.GiveUp;
        }
    }

    /// <summary>What each error code of PROTOCOL.md section 6 means to a client.</summary>
    public static class ErrorRules
    {
        /// <summary>Its name, "unknown" for a code this version does not define.</summary>
        public static string Name(ushort code)
        {
            return ErrorCodes.IsKnown(code) ? ErrorCodes.Name(code) : "unknown";
        }

        /// <summary>An Error with it, then the connection's end, is final: the fatal codes but shutting_down and slow_consumer, plus too_many_join_attempts.</summary>
        public static bool GivesUp(ushort code)
        {
            if (code == (ushort)ErrorCode.TooManyJoinAttempts)
            {
                return true;
            }
            return ErrorCodes.IsFatal(code) && code != (ushort)ErrorCode.ShuttingDown && code != (ushort)ErrorCode.SlowConsumer;
        }

        /// <summary>It can be the answer to a pending CreateSession/JoinSession.</summary>
        public static bool AnswersRequest(ushort code)
        {
            switch ((ErrorCode)code)
            {
                case ErrorCode.Internal:
                case ErrorCode.InvalidArgument:
                case ErrorCode.UnknownSession:
                case ErrorCode.SessionFull:
                case ErrorCode.WrongPassword:
                case ErrorCode.AlreadyInSession:
                case ErrorCode.TooManySessions:
                case ErrorCode.TooManyJoinAttempts:
                case ErrorCode.ClusterUnavailable:
                case ErrorCode.Forbidden:
                    return true;
                default:
                    return false;
            }
        }

        /// <summary>A reconnection attempt refused or closed with it: retried (true) or final.</summary>
        public static bool AttemptRetried(ushort code)
        {
            if (code == CloseVerdict.NoCode || code == 0)
            {
                return true;
            }
            if (!ErrorCodes.IsKnown(code))
            {
                return false;
            }
            switch ((ErrorCode)code)
            {
                case ErrorCode.BadMessage:
                case ErrorCode.FrameTooLarge:
                case ErrorCode.UnsupportedVersion:
                case ErrorCode.ProtocolViolation:
                case ErrorCode.HelloTimeout:
                case ErrorCode.Replaced:
                // Access control: no token, a refused one or a revoked one will not pass again.
                case ErrorCode.TokenRequired:
                case ErrorCode.TokenInvalid:
                case ErrorCode.TokenRevoked:
                    return false;
                default:
                    return true;
            }
        }
    }

    public enum ReconnectOutcome
    {
        /// <summary>The token was taken: same seat, same session.</summary>
        Resumed,
        /// <summary>A new peer id in a session: JoinSession by code and password.</summary>
        Rejoin,
        /// <summary>A new peer id, no session, a CreateSession/JoinSession unanswered: send it again.</summary>
        Resend,
        Fresh,
    }

    public static class AfterReconnect
    {
        public static ReconnectOutcome Decide(bool resumed, uint peerId, uint previousPeerId, bool inSession, bool pendingRequest)
        {
            if (resumed && peerId == previousPeerId)
            {
                return ReconnectOutcome.Resumed;
            }
            if (inSession)
            {
                return ReconnectOutcome.Rejoin;
            }
            return pendingRequest ? ReconnectOutcome.Resend : ReconnectOutcome.Fresh;
        }
    }

    public enum RedirectThen
    {
        None,
        /// <summary>In a session: back to the configured servers (which redirect afresh), with the backoff.</summary>
        BackToConfigured,
        /// <summary>In none: the request (or the start) fails.</summary>
        Stop,
    }

    /// <summary>Redirects in a row, and whether the next one is followed.</summary>
    public sealed class RedirectRun
    {
        public int Count { get; private set; }
        /// <summary>A CreateSession/JoinSession waits for its answer.</summary>
        public bool Pending { get; set; }

        /// <summary>Counts a redirect; true: follow it (Count ≤ max).</summary>
        public bool Redirect(int max)
        {
            Count++;
            return Follows(Count, max);
        }

        /// <summary>A Welcome: the run ends when nothing is pending.</summary>
        public void Welcome()
        {
            if (!Pending)
            {
                Count = 0;
            }
        }

        /// <summary>SessionCreated / SessionJoined: the request is answered, the run ends.</summary>
        public void SessionEntered()
        {
            Count = 0;
            Pending = false;
        }

        /// <summary>An Error answered the request: nothing pending (the count is kept).</summary>
        public void ErrorAnswering()
        {
            Pending = false;
        }

        public void Reset()
        {
            Count = 0;
        }

        public static bool Follows(int count, int max)
        {
            return count <= max;
        }

        public static RedirectThen AfterFailing(bool inSession)
        {
            return inSession ? RedirectThen.BackToConfigured : RedirectThen.Stop;
        }
    }

    public static class Timeouts
    {
        public const long AttemptFloorMs = 3000;
        public const long AttemptBaseMs = 2000;
        public const long AttemptRttFactor = 8;

        /// <summary>floor(min(connect (0: no cap), max(3000, 2000 + 8 × srtt))), srtt ≤ 0: unknown.</summary>
        public static long AttemptMs(double srttMs, long connectTimeoutMs)
        {
            double t = AttemptFloorMs;
            if (srttMs > 0)
            {
                t = Math.Max(AttemptFloorMs, AttemptBaseMs + AttemptRttFactor * srttMs);
            }
            if (connectTimeoutMs > 0)
            {
                t = Math.Min(connectTimeoutMs, t);
            }
            return (long)Math.Floor(t);
        }

        public static bool RequestTimedOut(long sentAt, long now, long requestTimeoutMs)
        {
            return now - sentAt >= requestTimeoutMs;
        }
    }

    /// <summary>The QUIC/WebSocket race ("auto").</summary>
    public static class Race
    {
        /// <summary>What starts first, and after how long the WebSocket follows (-1: not at all, it started alone).</summary>
        public static TransportKind Start(bool quicAvailable, long fallbackDelayMs, out long websocketAfterMs)
        {
            if (!quicAvailable)
            {
                websocketAfterMs = -1;
                return TransportKind.WebSocket;
            }
            websocketAfterMs = Math.Max(0, fallbackDelayMs);
            return TransportKind.Quic;
        }

        /// <summary>
        /// An attempt failed. pending: the attempts still under way (the failed one not among
        /// them); websocketStarted: a WebSocket attempt was started. Returns true when the race
        /// is lost; startWebSocket: start the WebSocket now.
        /// </summary>
        public static bool Failed(TransportKind failed, int pending, bool websocketStarted, out bool startWebSocket)
        {
            startWebSocket = failed == TransportKind.Quic && !websocketStarted;
            return pending == 0 && !startWebSocket;
        }

        /// <summary>The first to connect wins: the other attempts still pending are abandoned.</summary>
        public static List<TransportKind> Abandon(TransportKind connected, IEnumerable<TransportKind> pending)
        {
            List<TransportKind> losers = new List<TransportKind>();
            foreach (TransportKind k in pending)
            {
                if (k != connected)
                {
                    losers.Add(k);
                }
            }
            return losers;
        }

        /// <summary>An attempt may carry the first request in its URL only when every attempt started before it has failed.</summary>
        public static bool CarriesFirst(int pendingBefore)
        {
            return pendingBefore == 0;
        }
    }

    public enum PeerPathKind
    {
        Direct,
        Turn,
        Relay,
        Connecting,
        /// <summary>Usable, the candidate pair not known yet: find out whether it is TURN.</summary>
        Classify,
    }

    public enum PathChange
    {
        None,
        /// <summary>Record it without an event (a new peer still connecting).</summary>
        Update,
        Announce,
    }

    /// <summary>The direct/TURN/relay rules (docs/PROTOCOL.md "Client behaviour", paths).</summary>
    public static class PathRules
    {
        public static bool DirectUsable(bool forceRelay, bool channelOpen, bool connectionConnected)
        {
            return !forceRelay && channelOpen && connectionConnected;
        }

        /// <summary>directKind: Direct, Turn or null (not classified yet).</summary>
        public static PeerPathKind PeerPath(bool usable, PeerPathKind? directKind, bool fallback, bool forceRelay)
        {
            if (usable)
            {
                return directKind ?? PeerPathKind.Classify;
            }
            if (fallback || forceRelay)
            {
                return PeerPathKind.Relay;
            }
            return PeerPathKind.Connecting;
        }

        public static PathChange Change(PeerPathKind? previous, PeerPathKind path, bool initial)
        {
            if (!initial && previous.HasValue && previous.Value == path)
            {
                return PathChange.None;
            }
            if (initial && path == PeerPathKind.Connecting)
            {
                return PathChange.Update;
            }
            return PathChange.Announce;
        }

        /// <summary>A PeerConnection state: failed/closed → fall back and retry later; disconnected → fall back only.</summary>
        public static void ConnectionState(string state, out bool fallback, out bool retry)
        {
            fallback = state == "failed" || state == "closed" || state == "disconnected";
            retry = state == "failed" || state == "closed";
        }

        /// <summary>Glare: with an offer of mine out, the lower id keeps its own (ignores theirs).</summary>
        public static bool IgnoreOffer(bool haveLocalOffer, uint myId, uint fromId)
        {
            return haveLocalOffer && myId < fromId;
        }

        /// <summary>Whether a failed direct path is retried by this side: only the lower id, retry on, not forced onto the relay, not twice.</summary>
        public static bool DirectRetryDue(long retryMs, bool forceRelay, uint myId, uint peerId, bool scheduled)
        {
            return retryMs > 0 && !forceRelay && myId < peerId && !scheduled;
        }
    }
}
