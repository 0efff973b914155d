// Rule 10 of docs/PROTOCOL.md "Client behaviour" (section 11 "Moving a session (version 5)"):
// following a session the server moves to another node, make-before-break. An unasked
// Redirect(Placement) while in a session on a version-5 connection opens a second
// connection (`new`) to the named node with the resume token and keeps the first (`old`);
// while both are up relay frames go out on both and are taken from both; control goes on
// the new one only; when the old one closes the new one carries on. ServiceCore asks
// MoveMachine at every such event; the C# replay of docs/client-vectors.json (section
// `move`) and tests/csharp/ServiceTests.cs drive the same code.
//
// Pure (no I/O, no threads, no clock reads: time comes in with each event); C# 7.2,
// compiled by Debian's mono in CI and unchanged by the .NET 8/9 build.

using System;
using System.Collections.Generic;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    /// <summary>Where a move stands.</summary>
    public enum MovePhase
    {
        /// <summary>One connection (`current`), no move under way.</summary>
        Settled,
        /// <summary>The new connection is being opened; the old one still carries relay frames.</summary>
        Opening,
        /// <summary>The new one resumed: both carry relay frames, control on the new one.</summary>
        Overlap,
        /// <summary>The new one failed: stay on the old one until it closes.</summary>
        OldOnly,
        /// <summary>The old one closed before the new one was up.</summary>
        NewOnlyOpening
    }

    /// <summary>What the service does after a move event.</summary>
    public enum MoveAction
    {
        None,
        /// <summary>Not a move: rules 4 and 5 (follow the redirect as today).</summary>
        NotAMove,
        /// <summary>Connect to the named node, Hello with the resume token, keep the old connection.</summary>
        OpenNew,
        /// <summary>A redirect on the old connection: nothing changes.</summary>
        Ignore,
        /// <summary>Close the old connection (code 999 / WebSocket 4999); the new one is current.</summary>
        CloseOld,
        /// <summary>The new one resumed: relay frames on both.</summary>
        SendOnBoth,
        /// <summary>The new one is the connection from now on.</summary>
        UseNew,
        /// <summary>A lost connection: rule 3 resume with the token (rules 4 and 5).</summary>
        Reconnect
    }

    /// <summary>What happened, as the machine sees it.</summary>
    public enum MoveEvent
    {
        Redirect,
        NewWelcome,
        NewFailed,
        NewClosed,
        OldClosed,
        Tick
    }

    /// <summary>A connection by its role in a move.</summary>
    public enum MoveConn
    {
        Current,
        Old,
        New
    }

    /// <summary>One event with its facts (what the vectors' step input says).</summary>
    public struct MoveInput
    {
        public MoveEvent Event;
        /// <summary>Which connection it came on (a redirect); null when it does not say.</summary>
        public MoveConn? On;
        /// <summary>The redirect's reason; null for other events.</summary>
        public RedirectReason? Reason;
        /// <summary>The redirect answers no request of ours.</summary>
        public bool Unasked;
        public bool InSession;
        /// <summary>The version of the connection it came on.</summary>
        public int Version;
        /// <summary>The new connection's Welcome resumed the seat; null for other events.</summary>
        public bool? Resumed;
    }

    /// <summary>Rule 10, the move machine: events in (time injected), an action out.</summary>
    public sealed class MoveMachine
    {
        /// <summary>How long after the redirect the client closes the old connection itself (move_old_close_after_ms).</summary>
        public const long OldCloseAfterMs = 10000;

        /// <summary>The first protocol version whose clients follow a move.</summary>
        public const int MoveVersion = 5;

        private static readonly MoveConn[] CurrentOnly = { MoveConn.Current };
        private static readonly MoveConn[] OldOnlyConns = { MoveConn.Old };
        private static readonly MoveConn[] Both = { MoveConn.Old, MoveConn.New };
        private static readonly MoveConn[] None = new MoveConn[0];

        public MoveMachine()
        {
            Phase = MovePhase.Settled;
            RedirectAt = -1;
        }

        public MovePhase Phase { get; private set; }

        /// <summary>When the redirect that began the move came; -1 when settled before any.</summary>
        public long RedirectAt { get; private set; }

        /// <summary>Not settled: a move is under way.</summary>
        public bool Moving
        {
            get { return Phase != MovePhase.Settled; }
        }

        /// <summary>The connections relay frames go out on.</summary>
        public IList<MoveConn> SendOn
        {
            get
            {
                switch (Phase)
                {
                    case MovePhase.Opening:
                    case MovePhase.OldOnly:
                        return OldOnlyConns;
                    case MovePhase.Overlap:
                        return Both;
                    case MovePhase.NewOnlyOpening:
                        return None;
                    default:
                        return CurrentOnly;
                }
            }
        }

        /// <summary>The connections relay frames are taken from (the same as SendOn).</summary>
        public IList<MoveConn> TakeFrom
        {
            get { return SendOn; }
        }

        /// <summary>Where control messages (requests, Ping) go: current, new, or nowhere (null).</summary>
        public MoveConn? ControlOn
        {
            get
            {
                switch (Phase)
                {
                    case MovePhase.Settled:
                        return MoveConn.Current;
                    case MovePhase.OldOnly:
                        return null;
                    default:
                        return MoveConn.New;
                }
            }
        }

        /// <summary>When to tick next: the 10 s cap in the overlap and in old-only (a silent old
        /// node must not hold the client), else -1 (null in the vectors).</summary>
        public long WakeAtMs
        {
            get { return Phase == MovePhase.Overlap || Phase == MovePhase.OldOnly ? RedirectAt + OldCloseAfterMs : -1; }
        }

        /// <summary>Back to settled with no action (the service stops or gives up; not a table event).</summary>
        public void Reset()
        {
            Phase = MovePhase.Settled;
        }

        /// <summary>Whether a redirect begins a move: Placement, unasked, in a session, on a connection of version 5 or later.</summary>
        public static bool IsMove(RedirectReason reason, bool unasked, bool inSession, int version)
        {
            return reason == RedirectReason.Placement && unasked && inSession && version >= MoveVersion;
        }

        public MoveAction Step(long now, MoveInput input)
        {
            switch (input.Event)
            {
                case MoveEvent.Redirect:
                    return OnRedirect(now, input);
                case MoveEvent.NewWelcome:
                    if (Phase == MovePhase.Opening)
                    {
                        if (input.Resumed == true)
                        {
                            Phase = MovePhase.Overlap;
                            return MoveAction.SendOnBoth;
                        }
                        Phase = MovePhase.Settled;
                        return MoveAction.CloseOld;
                    }
                    if (Phase == MovePhase.NewOnlyOpening)
                    {
                        Phase = MovePhase.Settled;
                        return MoveAction.UseNew;
                    }
                    return MoveAction.None;
                case MoveEvent.NewFailed:
                    if (Phase == MovePhase.Opening)
                    {
                        Phase = MovePhase.OldOnly;
                        return MoveAction.None;
                    }
                    if (Phase == MovePhase.NewOnlyOpening)
                    {
                        Phase = MovePhase.Settled;
                        return MoveAction.Reconnect;
                    }
                    return MoveAction.None;
                case MoveEvent.NewClosed:
                    if (Phase == MovePhase.Overlap)
                    {
                        Phase = MovePhase.OldOnly;
                    }
                    return MoveAction.None;
                case MoveEvent.OldClosed:
                    switch (Phase)
                    {
                        case MovePhase.Opening:
                            Phase = MovePhase.NewOnlyOpening;
                            return MoveAction.None;
                        case MovePhase.Overlap:
                            Phase = MovePhase.Settled;
                            return MoveAction.UseNew;
                        case MovePhase.OldOnly:
                            Phase = MovePhase.Settled;
                            return MoveAction.Reconnect;
                        default:
                            return MoveAction.None;
                    }
                case MoveEvent.Tick:
                    if (Phase == MovePhase.Overlap && now >= RedirectAt + OldCloseAfterMs)
                    {
                        Phase = MovePhase.Settled;
                        return MoveAction.CloseOld;
                    }
                    if (Phase == MovePhase.OldOnly && now >= RedirectAt + OldCloseAfterMs)
                    {
                        // Both are gone for the client: close the old one, reconnect.
                        Phase = MovePhase.Settled;
                        return MoveAction.Reconnect;
                    }
                    return MoveAction.None;
                default:
                    return MoveAction.None;
            }
        }

        private MoveAction OnRedirect(long now, MoveInput input)
        {
            if (Phase == MovePhase.Settled)
            {
                if (input.Reason.HasValue && IsMove(input.Reason.Value, input.Unasked, input.InSession, input.Version))
                {
                    Phase = MovePhase.Opening;
                    RedirectAt = now;
                    return MoveAction.OpenNew;
                }
                return MoveAction.NotAMove;
            }
            if (input.On == MoveConn.Old
                && (Phase == MovePhase.Opening || Phase == MovePhase.Overlap || Phase == MovePhase.OldOnly))
            {
                return MoveAction.Ignore;
            }
            if (input.On == MoveConn.New
                && (Phase == MovePhase.Opening || Phase == MovePhase.Overlap || Phase == MovePhase.NewOnlyOpening))
            {
                Phase = MovePhase.Settled;
                return MoveAction.CloseOld;
            }
            return MoveAction.None;
        }

        /// <summary>The vectors' names: action.</summary>
        public static string Name(MoveAction a)
        {
            switch (a)
            {
                case MoveAction.NotAMove: return "not_a_move";
                case MoveAction.OpenNew: return "open_new";
                case MoveAction.Ignore: return "ignore";
                case MoveAction.CloseOld: return "close_old";
                case MoveAction.SendOnBoth: return "send_on_both";
                case MoveAction.UseNew: return "use_new";
                case MoveAction.Reconnect: return "reconnect";
                default: return "none";
            }
        }

        /// <summary>The vectors' names: phase.</summary>
        public static string Name(MovePhase p)
        {
            switch (p)
            {
                case MovePhase.Opening: return "opening";
                case MovePhase.Overlap: return "overlap";
                case MovePhase.OldOnly: return "old_only";
                case MovePhase.NewOnlyOpening: return "new_only_opening";
                default: return "settled";
            }
        }

        /// <summary>The vectors' names: a connection.</summary>
        public static string Name(MoveConn c)
        {
            return c == MoveConn.Old ? "old" : c == MoveConn.New ? "new" : "current";
        }
    }
}
