// Rule 10 (docs/PROTOCOL.md section 11 "Moving a session (version 5)"): the pure move
// machine (client/CoreBasics.Move.cs) row by row of the spec's table, and ServiceCore
// following a move with fake transports and a fake clock (client/ServiceCore.Move.cs):
// make-before-break, relay frames on both connections during the overlap, control on
// the new one only, the old one's words and close ignored, duplicates never delivered
// twice, failures per the table. Run from ServiceTests' Main (service-tests.exe).
//
// Plain C# 7.2 (mono).

using System;
using System.Collections.Generic;
using System.Linq;
using FlightSimP2P.Client;
using FlightSimP2P.Protocol;
using static FlightSimP2P.Tests.TestKit;

namespace FlightSimP2P.Tests
{
    internal static class MoveTests
    {
        public static void Run()
        {
            Test("move (rule 10): the pure machine, every row of the table, send_on/take_from/control_on/wake_at_ms", MachineTable);
            Test("move: an unasked Redirect(Placement) in a session on v5 opens a second connection with the token, keeps the old, no Reconnecting", CoreOpensNew);
            Test("move: overlap sends every relay frame on both, takes from both, the app sees each frame once; control on the new only", CoreOverlap);
            Test("move: the old connection's Redirect, GoingAway and its close with code 20 change nothing: no Reconnecting, no Closed", CoreOldIgnored);
            Test("move: the overlap's 10 s cap closes the old connection (999, seat kept)", CoreOverlapCap);
            Test("move: the new connection fails: stay on the old; when it closes, reconnect with the token (Reconnecting)", CoreNewFails);
            Test("move: the old closes before the new one is up: wait, then carry on on the new, no event", CoreOldFirst);
            Test("move: the new one closed before the Welcome after the old: a lost connection, first attempt to the named node", CoreBothFail);
            Test("move: not a move on a v4 connection, asked, out of a session, or another reason: followed as any redirect", CoreNotAMove);
            Test("move: a not-resumed Welcome on the new connection closes the old and rejoins by code", CoreNotResumed);
            Test("move: an echo request seen on both connections is answered; an echo reply seen twice is one RTT sample", CoreEchoTwice);
            Test("move: Stop during a move closes both connections for good", CoreStopDuringMove);
        }

        // --- the pure machine ---

        private static MoveInput In(MoveEvent ev, MoveConn? on = null, RedirectReason? reason = null, bool unasked = false,
            bool inSession = false, int version = 0, bool? resumed = null)
        {
            MoveInput i = new MoveInput();
            i.Event = ev;
            i.On = on;
            i.Reason = reason;
            i.Unasked = unasked;
            i.InSession = inSession;
            i.Version = version;
            i.Resumed = resumed;
            return i;
        }

        private static MoveInput Move()
        {
            return In(MoveEvent.Redirect, MoveConn.Current, RedirectReason.Placement, true, true, 5);
        }

        private static string Conns(IList<MoveConn> c)
        {
            return "[" + string.Join(",", c.Select(MoveMachine.Name)) + "]";
        }

        private static void Expect(MoveMachine m, MoveAction got, string action, string phase, string sendOn, string controlOn, long wake, string what)
        {
            Eq(action, MoveMachine.Name(got), what + ": action");
            Eq(phase, MoveMachine.Name(m.Phase), what + ": phase");
            Eq(sendOn, Conns(m.SendOn), what + ": send_on");
            Eq(sendOn, Conns(m.TakeFrom), what + ": take_from");
            Eq(controlOn, m.ControlOn.HasValue ? MoveMachine.Name(m.ControlOn.Value) : "null", what + ": control_on");
            Eq(wake, m.WakeAtMs, what + ": wake_at_ms");
        }

        private static MoveMachine At(MovePhase phase, long redirectAt)
        {
            MoveMachine m = new MoveMachine();
            m.Step(redirectAt, Move());
            switch (phase)
            {
                case MovePhase.Overlap:
                    m.Step(redirectAt + 50, In(MoveEvent.NewWelcome, resumed: true));
                    break;
                case MovePhase.OldOnly:
                    m.Step(redirectAt + 50, In(MoveEvent.NewFailed));
                    break;
                case MovePhase.NewOnlyOpening:
                    m.Step(redirectAt + 50, In(MoveEvent.OldClosed));
                    break;
            }
            Eq(phase, m.Phase, "set up " + phase);
            return m;
        }

        private static void MachineTable()
        {
            MoveMachine m = new MoveMachine();
            Expect(m, MoveAction.None, "none", "settled", "[current]", "current", -1, "initial");
            Expect(m, m.Step(0, In(MoveEvent.Tick)), "none", "settled", "[current]", "current", -1, "settled tick");
            // settled: what is not a move.
            Expect(m, m.Step(0, In(MoveEvent.Redirect, MoveConn.Current, RedirectReason.Placement, true, true, 4)), "not_a_move", "settled", "[current]", "current", -1, "v4");
            Expect(m, m.Step(0, In(MoveEvent.Redirect, MoveConn.Current, RedirectReason.Placement, false, true, 5)), "not_a_move", "settled", "[current]", "current", -1, "asked");
            Expect(m, m.Step(0, In(MoveEvent.Redirect, MoveConn.Current, RedirectReason.Placement, true, false, 5)), "not_a_move", "settled", "[current]", "current", -1, "in no session");
            Expect(m, m.Step(0, In(MoveEvent.Redirect, MoveConn.Current, RedirectReason.Draining, true, true, 5)), "not_a_move", "settled", "[current]", "current", -1, "draining");
            Expect(m, m.Step(0, In(MoveEvent.Redirect, MoveConn.Current, RedirectReason.Moved, true, true, 5)), "not_a_move", "settled", "[current]", "current", -1, "moved");
            Expect(m, m.Step(0, In(MoveEvent.OldClosed)), "none", "settled", "[current]", "current", -1, "settled old_closed");
            // settled -> opening.
            Expect(m, m.Step(1000, Move()), "open_new", "opening", "[old]", "new", -1, "move");
            Expect(m, m.Step(1001, In(MoveEvent.Redirect, MoveConn.Old, RedirectReason.Draining, true, true, 5)), "ignore", "opening", "[old]", "new", -1, "opening: redirect on old");
            Expect(m, m.Step(20000, In(MoveEvent.Tick)), "none", "opening", "[old]", "new", -1, "opening: tick (no cap before the overlap)");
            Expect(m, m.Step(1100, In(MoveEvent.NewWelcome, resumed: true)), "send_on_both", "overlap", "[old,new]", "new", 11000, "opening: resumed");
            Expect(m, m.Step(1200, In(MoveEvent.Redirect, MoveConn.Old, RedirectReason.Placement, true, true, 5)), "ignore", "overlap", "[old,new]", "new", 11000, "overlap: redirect on old");
            Expect(m, m.Step(10999, In(MoveEvent.Tick)), "none", "overlap", "[old,new]", "new", 11000, "overlap: tick before the cap");
            Expect(m, m.Step(4000, In(MoveEvent.OldClosed)), "use_new", "settled", "[current]", "current", -1, "overlap: old closed");

            m = At(MovePhase.Overlap, 1000);
            Expect(m, m.Step(11000, In(MoveEvent.Tick)), "close_old", "settled", "[current]", "current", -1, "overlap: the cap");
            m = At(MovePhase.Overlap, 1000);
            Expect(m, m.Step(2000, In(MoveEvent.NewClosed)), "none", "old_only", "[old]", "null", 11000, "overlap: new closed");
            Expect(m, m.Step(2001, In(MoveEvent.Redirect, MoveConn.Old, RedirectReason.Draining, true, true, 5)), "ignore", "old_only", "[old]", "null", 11000, "old_only: redirect on old");
            Expect(m, m.Step(2002, In(MoveEvent.Redirect, MoveConn.New, RedirectReason.Draining, true, true, 5)), "none", "old_only", "[old]", "null", 11000, "old_only: redirect on new (not in the table)");
            Expect(m, m.Step(3000, In(MoveEvent.OldClosed)), "reconnect", "settled", "[current]", "current", -1, "old_only: old closed");
            // The old node went silent instead: the same 10 s cap, then a reconnection.
            m = At(MovePhase.OldOnly, 1000);
            Expect(m, m.Step(10999, In(MoveEvent.Tick)), "none", "old_only", "[old]", "null", 11000, "old_only: tick before the cap");
            Expect(m, m.Step(11000, In(MoveEvent.Tick)), "reconnect", "settled", "[current]", "current", -1, "old_only: the cap");
            m = At(MovePhase.Overlap, 1000);
            Expect(m, m.Step(2000, In(MoveEvent.Redirect, MoveConn.New, RedirectReason.Draining, true, true, 5)), "close_old", "settled", "[current]", "current", -1, "overlap: redirect on new");

            m = At(MovePhase.Opening, 1000);
            Expect(m, m.Step(1100, In(MoveEvent.NewWelcome, resumed: false)), "close_old", "settled", "[current]", "current", -1, "opening: not resumed");
            m = At(MovePhase.Opening, 1000);
            Expect(m, m.Step(1100, In(MoveEvent.NewFailed)), "none", "old_only", "[old]", "null", 11000, "opening: new failed");
            m = At(MovePhase.Opening, 1000);
            Expect(m, m.Step(1100, In(MoveEvent.Redirect, MoveConn.New, RedirectReason.Session, false, true, 5)), "close_old", "settled", "[current]", "current", -1, "opening: redirect on new");
            m = At(MovePhase.Opening, 1000);
            Expect(m, m.Step(1100, In(MoveEvent.OldClosed)), "none", "new_only_opening", "[]", "new", -1, "opening: old closed");
            Expect(m, m.Step(1150, In(MoveEvent.Redirect, MoveConn.Old, RedirectReason.Draining, true, true, 5)), "none", "new_only_opening", "[]", "new", -1, "new_only_opening: redirect on old (not in the table)");
            Expect(m, m.Step(1200, In(MoveEvent.NewWelcome, resumed: true)), "use_new", "settled", "[current]", "current", -1, "new_only_opening: welcome");
            m = At(MovePhase.NewOnlyOpening, 1000);
            Expect(m, m.Step(1200, In(MoveEvent.NewWelcome, resumed: false)), "use_new", "settled", "[current]", "current", -1, "new_only_opening: welcome not resumed");
            m = At(MovePhase.NewOnlyOpening, 1000);
            Expect(m, m.Step(1200, In(MoveEvent.NewFailed)), "reconnect", "settled", "[current]", "current", -1, "new_only_opening: new failed");
            m = At(MovePhase.NewOnlyOpening, 1000);
            Expect(m, m.Step(1200, In(MoveEvent.Redirect, MoveConn.New, RedirectReason.Session, false, true, 5)), "close_old", "settled", "[current]", "current", -1, "new_only_opening: redirect on new");
            // A second move: the cap counts from its own redirect.
            m = At(MovePhase.Overlap, 1000);
            m.Step(2000, In(MoveEvent.OldClosed));
            m.Step(50000, Move());
            Expect(m, m.Step(50100, In(MoveEvent.NewWelcome, resumed: true)), "send_on_both", "overlap", "[old,new]", "new", 60000, "second move");
        }

        // --- the service core, fake transports ---

        private static NodeAddr Us()
        {
            NodeAddr n = new NodeAddr();
            n.Name = "us";
            n.Quic = "127.0.0.9:4433";
            n.Http = "http://127.0.0.9:8080";
            return n;
        }

        /// <summary>Peer 5 in a session with 6, on a v5 connection, relayed (direct off).</summary>
        private static Harness Pair()
        {
            CoreOptions o = new CoreOptions();
            o.EnableDirect = false;
            Harness h = new Harness(o);
            h.Core.Start(h.Now, 1);
            CoreOutput c = h.Drain().First(x => x.Kind == OutputKind.Connect);
            h.Core.TransportConnected(h.Now, c.Conn);
            h.Drain();
            ServerMsg.Welcome w = Harness.Welcome(5, false);
            w.Version = 5;
            h.Core.ServerMessage(h.Now, c.Conn, w);
            h.Conn = c.Conn;
            h.Drain();
            h.InSession(5, 5, 6);
            return h;
        }

        private static byte[] Frame(uint seq, byte b = 7)
        {
            return SnapshotEnvelope.Wrap(seq, new byte[] { b }, 0, 1);
        }

        private static bool Raised(IEnumerable<CoreOutput> outs, OutputKind k)
        {
            return outs.Any(o => o.Kind == k);
        }

        /// <summary>The move begun: returns the new connection's id (its Connect checked).</summary>
        private static int BeginMove(Harness h)
        {
            h.Core.ServerMessage(h.Now, h.Conn, new ServerMsg.Redirect(RedirectReason.Placement, Us()));
            List<CoreOutput> outs = h.Drain();
            CoreOutput c = outs.SingleOrDefault(o => o.Kind == OutputKind.Connect);
            Check(c != null, "a second connection is opened");
            Check(c != null && c.Resume && c.Server != null && c.Server.Name == "us" && c.Server.QuicHost == "127.0.0.9" && c.Transport == TransportKind.Quic,
                "to the named node, with the token, by the same transport (QUIC)");
            Check(!outs.Any(o => o.Kind == OutputKind.CloseTransport && o.Conn == h.Conn), "the old connection is kept");
            Check(!Raised(outs, OutputKind.Reconnecting) && h.Core.State == HubConnectionState.Connected, "no Reconnecting: still Connected");
            Eq(MovePhase.Opening, h.Core.MovePhase, "opening");
            return c == null ? 0 : c.Conn;
        }

        private static void Resume(Harness h, int fresh)
        {
            h.Core.TransportConnected(h.Now, fresh);
            List<CoreOutput> outs = h.Drain();
            ClientMsg.Hello hello = outs.Where(o => o.Kind == OutputKind.SendControl && o.Conn == fresh).Select(o => o.Message).OfType<ClientMsg.Hello>().SingleOrDefault();
            Check(hello != null && hello.ResumeToken != null && hello.ResumeToken[0] == 5 && hello.Version == 5, "Hello v5 with the resume token on the new connection");
            h.Now += 20;
            ServerMsg.Welcome w = Harness.Welcome(5, true);
            w.Version = 5;
            h.Core.ServerMessage(h.Now, fresh, w);
            h.Core.ServerMessage(h.Now, fresh, new ServerMsg.SessionJoined(Harness.SessionOf(5, 5, 6)));
            outs = h.Drain();
            Check(!Raised(outs, OutputKind.Reconnected) && !Raised(outs, OutputKind.Reconnecting), "no Reconnecting/Reconnected for the move");
            Eq(MovePhase.Overlap, h.Core.MovePhase, "overlap");
            Eq(5u, h.Core.PeerId, "same peer id");
        }

        private static void CoreOpensNew()
        {
            Harness h = Pair();
            int old = h.Conn;
            int fresh = BeginMove(h);
            // Opening: relay frames on the old only; control waits for the new one.
            h.Core.SendFlight(h.Now, 6, new byte[] { 1 });
            List<CoreOutput> outs = h.Drain();
            Check(outs.Where(o => o.Kind == OutputKind.SendRelay).Select(o => o.Conn).SequenceEqual(new[] { old }), "opening: relay frame on the old connection only");
            h.Core.SendHub(h.Now, 6, "m", new string[0]);
            outs = h.Drain();
            Check(!outs.Any(o => o.Kind == OutputKind.SendControl && o.Conn == old), "opening: no control on the old connection");
            Resume(h, fresh);
            outs = h.Log.Where(o => o.Kind == OutputKind.SendControl && o.Conn == fresh && !(o.Message is ClientMsg.Hello)).ToList();
            Check(outs.Count >= 1, "the queued hub message goes on the new connection after its Welcome", outs.Count.ToString());
            Eq(fresh, h.Core.CurrentConn, "the new connection is current");
        }

        private static void CoreOverlap()
        {
            Harness h = Pair();
            int old = h.Conn;
            int fresh = BeginMove(h);
            h.Core.RelayFrame(h.Now, old, 6, Frame(1));
            Resume(h, fresh);
            h.Core.SendFlight(h.Now, 6, new byte[] { 1 });
            List<CoreOutput> outs = h.Drain();
            List<int> on = outs.Where(o => o.Kind == OutputKind.SendRelay).Select(o => o.Conn).OrderBy(x => x).ToList();
            Check(on.SequenceEqual(new[] { old, fresh }.OrderBy(x => x)), "overlap: the relay frame goes on both", string.Join(",", on));
            // Frames 2..20 arrive on both, in either order: each reaches the app once, in order.
            List<uint> delivered = new List<uint>();
            for (uint s = 2; s <= 20; s++)
            {
                int first = s % 3 == 0 ? fresh : old;
                h.Core.RelayFrame(h.Now, first, 6, Frame(s, (byte)s));
                h.Core.RelayFrame(h.Now, first == old ? fresh : old, 6, Frame(s, (byte)s));
                foreach (CoreOutput o in h.Drain().Where(o => o.Kind == OutputKind.FlightData))
                {
                    delivered.Add(o.Data[0]);
                }
            }
            Check(delivered.SequenceEqual(Enumerable.Range(2, 19).Select(x => (uint)x)), "each frame delivered once, none lost", string.Join(",", delivered));
            Eq(0L, h.Core.GetQuality(h.Now, 6).StaleDropped, "the copies are not counted as stale samples");
            // Control on the new only: a hub message and the keep-alive Ping.
            h.Core.SendHub(h.Now, 6, "m", new string[0]);
            outs = h.Advance(2000);
            Check(!outs.Any(o => o.Kind == OutputKind.SendControl && o.Conn == old), "no control message on the old connection in the overlap");
            Check(outs.Any(o => o.Kind == OutputKind.SendControl && o.Conn == fresh), "control on the new connection");
        }

        private static void CoreOldIgnored()
        {
            Harness h = Pair();
            int old = h.Conn;
            int fresh = BeginMove(h);
            Resume(h, fresh);
            h.Core.ServerMessage(h.Now, old, new ServerMsg.Redirect(RedirectReason.Draining, Us()));
            h.Core.ServerMessage(h.Now, old, new ServerMsg.GoingAway(0, "bye"));
            h.Core.ServerMessage(h.Now, old, new ServerMsg.SessionLeft(LeaveReason.Left));
            List<CoreOutput> outs = h.Drain();
            Check(!Raised(outs, OutputKind.Connect) && !Raised(outs, OutputKind.Reconnecting) && !Raised(outs, OutputKind.Redirected), "the old one's Redirect and GoingAway change nothing");
            Check(h.Core.Session != null, "its SessionLeft too: still in the session");
            Eq(MovePhase.Overlap, h.Core.MovePhase, "still overlap");
            h.Now += 1500;
            h.Core.TransportLost(h.Now, old, null, (ushort)ErrorCode.Replaced);
            outs = h.Drain();
            Check(!Raised(outs, OutputKind.Reconnecting) && !Raised(outs, OutputKind.Closed) && !Raised(outs, OutputKind.StateChanged) && !Raised(outs, OutputKind.Connect),
                "the old one's close with code 20: no Reconnecting, no Closed, no redial");
            Eq(MovePhase.Settled, h.Core.MovePhase, "settled on the new one");
            Eq(HubConnectionState.Connected, h.Core.State, "Connected");
            Eq(1L, h.Core.MovesCompleted, "one move completed");
            h.Core.SendFlight(h.Now, 6, new byte[] { 1 });
            Check(h.Drain().Where(o => o.Kind == OutputKind.SendRelay).Select(o => o.Conn).SequenceEqual(new[] { fresh }), "relay on the new one only");
            // The new connection is an ordinary one now: its loss is a lost connection.
            h.Core.TransportLost(h.Now, fresh, null, CloseVerdict.NoCode);
            Check(Raised(h.Drain(), OutputKind.Reconnecting), "losing the new one afterwards: Reconnecting as usual");
        }

        private static void CoreOverlapCap()
        {
            Harness h = Pair();
            int old = h.Conn;
            long at = h.Now;
            int fresh = BeginMove(h);
            Resume(h, fresh);
            long wake = h.Core.NextWake(h.Now);
            Check(wake >= 0 && wake <= at + 10000, "the core asks to be woken by the cap (redirect + 10 s)", wake.ToString());
            List<CoreOutput> outs = new List<CoreOutput>();
            while (h.Now < at + 9990)
            {
                outs.AddRange(h.Advance(10));
            }
            Check(!outs.Any(o => o.Kind == OutputKind.CloseTransport && o.Conn == old), "not closed before the cap");
            outs = h.Advance(20);
            CoreOutput close = outs.SingleOrDefault(o => o.Kind == OutputKind.CloseTransport && o.Conn == old);
            Check(close != null && !close.Leave, "closed at the cap, keeping the seat (999 / 4999)");
            Check(!Raised(outs, OutputKind.Reconnecting), "no Reconnecting");
            h.Core.TransportLost(h.Now, old, null, CloseVerdict.NoCode);
            Check(!Raised(h.Drain(), OutputKind.Reconnecting), "its close afterwards is nobody's loss");
            Eq(fresh, h.Core.CurrentConn, "on the new connection");
        }

        private static void CoreNewFails()
        {
            Harness h = Pair();
            int old = h.Conn;
            int fresh = BeginMove(h);
            h.Core.TransportFailed(h.Now, fresh, new Exception("refused"));
            List<CoreOutput> outs = h.Drain();
            Check(!Raised(outs, OutputKind.Reconnecting) && !Raised(outs, OutputKind.Connect), "new failed: nothing visible");
            Eq(MovePhase.OldOnly, h.Core.MovePhase, "old_only");
            h.Core.SendFlight(h.Now, 6, new byte[] { 1 });
            Check(h.Drain().Where(o => o.Kind == OutputKind.SendRelay).Select(o => o.Conn).SequenceEqual(new[] { old }), "relay on the old one");
            h.Core.RelayFrame(h.Now, old, 6, Frame(3));
            Check(Raised(h.Drain(), OutputKind.FlightData), "frames from the old one delivered");
            h.Now += 3000;
            h.Core.TransportLost(h.Now, old, null, (ushort)ErrorCode.Replaced);
            outs = h.Drain();
            Check(Raised(outs, OutputKind.Reconnecting), "the old one closed (even with 20): Reconnecting, a lost connection");
            Check(!Raised(outs, OutputKind.Closed), "not Closed");
            outs.AddRange(h.Advance(50));
            CoreOutput c = outs.FirstOrDefault(o => o.Kind == OutputKind.Connect);
            Check(c != null && c.Resume, "resumed with the token");
        }

        private static void CoreOldFirst()
        {
            Harness h = Pair();
            int old = h.Conn;
            int fresh = BeginMove(h);
            h.Core.TransportLost(h.Now, old, null, (ushort)ErrorCode.Replaced);
            List<CoreOutput> outs = h.Drain();
            Check(!Raised(outs, OutputKind.Reconnecting) && !Raised(outs, OutputKind.Connect), "old closed first: wait for the new one");
            Eq(MovePhase.NewOnlyOpening, h.Core.MovePhase, "new_only_opening");
            h.Core.SendFlight(h.Now, 6, new byte[] { 1 });
            Check(!h.Drain().Any(o => o.Kind == OutputKind.SendRelay), "no relay frame anywhere meanwhile");
            h.Core.TransportConnected(h.Now, fresh);
            h.Drain();
            ServerMsg.Welcome w = Harness.Welcome(5, true);
            w.Version = 5;
            h.Core.ServerMessage(h.Now, fresh, w);
            outs = h.Drain();
            Check(!Raised(outs, OutputKind.Reconnecting) && !Raised(outs, OutputKind.Reconnected), "no event");
            Eq(MovePhase.Settled, h.Core.MovePhase, "settled");
            h.Core.SendFlight(h.Now, 6, new byte[] { 1 });
            Check(h.Drain().Where(o => o.Kind == OutputKind.SendRelay).Select(o => o.Conn).SequenceEqual(new[] { fresh }), "relay on the new one");
        }

        private static void CoreBothFail()
        {
            Harness h = Pair();
            int old = h.Conn;
            int fresh = BeginMove(h);
            h.Core.TransportLost(h.Now, old, null, (ushort)ErrorCode.Replaced);
            h.Drain();
            h.Core.TransportConnected(h.Now, fresh);
            h.Drain();
            h.Core.TransportLost(h.Now, fresh, null, CloseVerdict.NoCode);
            List<CoreOutput> outs = h.Drain();
            Check(Raised(outs, OutputKind.Reconnecting), "Reconnecting");
            outs.AddRange(h.Advance(50));
            CoreOutput c = outs.FirstOrDefault(o => o.Kind == OutputKind.Connect);
            Check(c != null && c.Resume && c.Server != null && c.Server.Name == "us", "first attempt to the named node, with the token");
        }

        private static void CoreNotAMove()
        {
            // v4 connection: the usual redirect (the old connection closed, Reconnecting).
            CoreOptions o = new CoreOptions();
            o.EnableDirect = false;
            Harness h = new Harness(o);
            h.Core.Start(h.Now, 1);
            CoreOutput c = h.Drain().First(x => x.Kind == OutputKind.Connect);
            h.Core.TransportConnected(h.Now, c.Conn);
            ServerMsg.Welcome w = Harness.Welcome(5, false);
            w.Version = 4;
            h.Core.ServerMessage(h.Now, c.Conn, w);
            h.Conn = c.Conn;
            h.Drain();
            h.InSession(5, 5, 6);
            h.Core.ServerMessage(h.Now, h.Conn, new ServerMsg.Redirect(RedirectReason.Placement, Us()));
            List<CoreOutput> outs = h.Drain();
            Check(outs.Any(x => x.Kind == OutputKind.CloseTransport && x.Conn == c.Conn) && Raised(outs, OutputKind.Reconnecting), "v4: followed as any redirect");
            Eq(MovePhase.Settled, h.Core.MovePhase, "v4: no move");

            // v5, Draining: as any redirect.
            Harness d = Pair();
            d.Core.ServerMessage(d.Now, d.Conn, new ServerMsg.Redirect(RedirectReason.Draining, Us()));
            outs = d.Drain();
            Check(outs.Any(x => x.Kind == OutputKind.CloseTransport && x.Conn == d.Conn) && Raised(outs, OutputKind.Reconnecting), "Draining: followed as any redirect");

            // v5 in no session, Placement answering a CreateSession: as any redirect.
            Harness n = new Harness(o);
            n.Core.Start(n.Now, 1);
            c = n.Drain().First(x => x.Kind == OutputKind.Connect);
            n.Core.TransportConnected(n.Now, c.Conn);
            w = Harness.Welcome(5, false);
            w.Version = 5;
            n.Core.ServerMessage(n.Now, c.Conn, w);
            n.Drain();
            n.Core.CreateSession(n.Now, 2, 0, null);
            n.Drain();
            n.Core.ServerMessage(n.Now, c.Conn, new ServerMsg.Redirect(RedirectReason.Placement, Us()));
            outs = n.Drain();
            Check(outs.Any(x => x.Kind == OutputKind.CloseTransport && x.Conn == c.Conn), "a placed CreateSession: followed as any redirect");
            Eq(MovePhase.Settled, n.Core.MovePhase, "no move");
        }

        private static void CoreNotResumed()
        {
            Harness h = Pair();
            int old = h.Conn;
            int fresh = BeginMove(h);
            h.Core.TransportConnected(h.Now, fresh);
            h.Drain();
            ServerMsg.Welcome w = Harness.Welcome(9, false);
            w.Version = 5;
            h.Core.ServerMessage(h.Now, fresh, w);
            List<CoreOutput> outs = h.Drain();
            CoreOutput close = outs.FirstOrDefault(o => o.Kind == OutputKind.CloseTransport && o.Conn == old);
            Check(close != null && !close.Leave, "the old connection closed (999)");
            Check(h.Sent(outs).Any(m => m is ClientMsg.JoinSession && ((ClientMsg.JoinSession)m).Code == "7KQ2MX"), "rejoin by code on the new connection");
            Eq(MovePhase.Settled, h.Core.MovePhase, "settled");
            Eq(fresh, h.Core.CurrentConn, "the new one is current");
        }

        private static void CoreEchoTwice()
        {
            Harness h = Pair();
            int old = h.Conn;
            int fresh = BeginMove(h);
            Resume(h, fresh);
            byte[] req = QualityFrame.Encode(QualityFrameKind.EchoRequest, 77, 123456);
            h.Core.RelayFrame(h.Now, old, 6, req);
            h.Core.RelayFrame(h.Now, fresh, 6, req);
            List<CoreOutput> outs = h.Drain();
            Check(outs.Count(o => o.Kind == OutputKind.SendRelay && o.Data.Length == QualityFrame.Bytes) >= 2, "answered (on both connections)");
            Check(!Raised(outs, OutputKind.FlightData), "never delivered");
            // Our own echo: wait for a request on the relay, answer it twice.
            outs = h.Advance(2500);
            CoreOutput mine = outs.FirstOrDefault(o => o.Kind == OutputKind.SendRelay && QualityFrame.IsMarked(o.Data) && o.Data.Length == QualityFrame.Bytes);
            Check(mine != null, "an echo request of ours on the relay");
            if (mine == null)
            {
                return;
            }
            QualityFrameKind kind;
            uint id;
            uint t;
            QualityFrame.Parse(mine.Data, out kind, out id, out t);
            h.Now += 40;
            byte[] reply = QualityFrame.Encode(QualityFrameKind.EchoReply, id, t);
            h.Core.RelayFrame(h.Now, fresh, 6, reply);
            h.Drain();
            long? first = h.Core.GetQuality(h.Now, 6).RttMs;
            h.Now += 300;
            h.Core.RelayFrame(h.Now, old, 6, reply);
            h.Drain();
            PeerQuality q = h.Core.GetQuality(h.Now, 6);
            Check(first.HasValue && q.RttMs == first, "one sample, from the first copy (the second, 300 ms later, changes nothing)", first + " then " + q.RttMs);
        }

        private static void CoreStopDuringMove()
        {
            Harness h = Pair();
            int old = h.Conn;
            int fresh = BeginMove(h);
            h.Core.Stop(h.Now);
            List<CoreOutput> outs = h.Drain();
            Check(outs.Any(o => o.Kind == OutputKind.CloseTransport && o.Conn == old && o.Leave), "old closed for good");
            Check(outs.Any(o => o.Kind == OutputKind.CloseTransport && o.Conn == fresh && o.Leave), "new closed for good");
            Eq(MovePhase.Settled, h.Core.MovePhase, "settled");
        }
    }
}
