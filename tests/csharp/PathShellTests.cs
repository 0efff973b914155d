// Rule 8 (docs/PROTOCOL.md section 12, "Paths to peers") through the shell that really
// decides a peer's path: PeerPath and ServiceCore, driven at their seam (ChannelOpen,
// ConnectionState by W3C name, LinkFailed, the clock) with fake links, never PathRules
// directly. ClientVectorsTests replays the `paths` cases against the pure PathRules;
// this replays the same cases against what the app runs, so the shell cannot keep a
// copy of the rules that drifts from them. Simulated time only: no timed assertions.
// Run from ServiceTests' Main (service-tests.exe, given docs/client-vectors.json).
//
// Plain C# 7.2 (mono).

using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using FlightSimP2P.Client;
using FlightSimP2P.Protocol;
using static FlightSimP2P.Tests.TestKit;

namespace FlightSimP2P.Tests
{
    internal static class PathShellTests
    {
        public static void Run(string vectorsPath)
        {
            Test("paths (rule 8) through the shell: every `paths` case of the client vectors, decided by PeerPath/ServiceCore",
                () => VectorCases(vectorsPath));
            Test("paths: forced relay: a new peer's relay path is announced at once, once; no WebRTC, no retry", ForcedRelay);
            Test("paths: a new peer connecting is recorded silently; direct is announced when the channel opens", NewPeerConnecting);
            Test("paths: `disconnected` falls back to the relay without a retry (link kept); `connected` again comes back after proof",
                DisconnectedNoRetry);
            Test("paths: `failed` falls back with a retry; relay announced once (not on every tick); the retry stays on the relay until its channel opens",
                FailedRetries);
            Test("paths: a peer whose offer never comes falls back at the direct deadline (announced), a Rust peer at once", OfferNeverComes);
        }

        // --- the vector cases, through the shell ---

        private static void VectorCases(string vectorsPath)
        {
            Dictionary<string, object> root = (Dictionary<string, object>)TestJson.Parse(File.ReadAllText(vectorsPath));
            Dictionary<string, object> section = (Dictionary<string, object>)((Dictionary<string, object>)root["sections"])["paths"];
            List<string> failures = new List<string>();
            int run = 0;
            foreach (object c in (List<object>)section["cases"])
            {
                Dictionary<string, object> k = (Dictionary<string, object>)c;
                string name = (string)k["name"];
                Dictionary<string, object> i = (Dictionary<string, object>)k["input"];
                Dictionary<string, object> e = (Dictionary<string, object>)k["expect"];
                string why = null;
                switch ((string)i["decision"])
                {
                    case "direct_usable":
                        why = DirectUsableCase(i, e);
                        break;
                    case "peer_path":
                        why = PeerPathCase(i, e);
                        break;
                    case "path_change":
                        why = PathChangeCase(i, e);
                        break;
                    case "connection_state":
                        why = ConnectionStateCase(i, e);
                        break;
                    case "glare":
                    case "direct_retry":
                        // ServiceCore.Links calls PathRules.IgnoreOffer/DirectRetryDue itself (the
                        // retry is also seen through the shell in the connection_state cases).
                        continue;
                    default:
                        why = "no shell driver for decision " + i["decision"];
                        break;
                }
                run++;
                if (why != null)
                {
                    failures.Add(name + ": " + why);
                }
            }
            Check(run >= 25, "the paths cases were replayed through the shell (" + run + ")");
            Check(failures.Count == 0, "the shell decides as the vectors say", string.Join("; ", failures));
        }

        private static bool B(Dictionary<string, object> d, string key)
        {
            return d[key] != null && (bool)d[key];
        }

        private static string S(Dictionary<string, object> d, string key)
        {
            return (string)d[key];
        }

        private static string Name(PeerPathKind k)
        {
            return k.ToString().ToLowerInvariant();
        }

        private static string DirectUsableCase(Dictionary<string, object> i, Dictionary<string, object> e)
        {
            bool force = B(i, "force_relay");
            PeerPath pp = new PeerPath(new PathTimings(), force);
            if (force)
            {
                pp.Disable();
            }
            else
            {
                pp.StartAttempt(0);
            }
            string dc = S(i, "data_channel");
            if (dc == "open" || dc == "closed")
            {
                pp.ChannelOpen(0, false);
            }
            if (S(i, "connection") != null)
            {
                pp.ConnectionState(0, S(i, "connection"));
            }
            if (dc == "closed")
            {
                // The adapter reports a closed channel as a failure (LinkFailed).
                pp.Fail();
            }
            bool want = B(e, "usable");
            if (pp.Usable != want)
            {
                return "usable " + pp.Usable + ", want " + want;
            }
            if (want != (pp.Path != FlightPath.Relay))
            {
                return "usable " + want + " but flight data goes " + pp.Path;
            }
            return null;
        }

        private static string PeerPathCase(Dictionary<string, object> i, Dictionary<string, object> e)
        {
            bool usable = B(i, "usable");
            string kind = S(i, "direct_kind");
            if (usable && kind == null)
            {
                // C# learns the candidate pair when the channel opens (UsesTurn): never "classify".
                return e["path"] as string == "classify" ? null : "unexpected path for an unclassified pair: " + e["path"];
            }
            PeerPath pp = new PeerPath(new PathTimings(), B(i, "force_relay"));
            if (B(i, "fallback"))
            {
                // Fallen back: a failed attempt (the retry starts a new one below if usable).
                pp.StartAttempt(0);
                pp.Fail();
            }
            if (usable)
            {
                pp.StartAttempt(0);
                pp.ConnectionState(0, "connected");
                pp.ChannelOpen(0, kind == "turn");
            }
            else if (!B(i, "fallback") && !B(i, "force_relay"))
            {
                pp.StartAttempt(0);
            }
            string want = (string)e["path"];
            return Name(pp.Kind) == want ? null : "path " + Name(pp.Kind) + ", want " + want;
        }

        /// <summary>Me 5, a peer 6 joins (I offer, and as the lower id I retry).</summary>
        private static Harness Session(bool forceRelay)
        {
            CoreOptions o = new CoreOptions();
            o.EnableDirect = !forceRelay;
            Harness h = new Harness(o);
            h.Connect(5);
            h.InSession(5, 5);
            return h;
        }

        private static List<CoreOutput> Join(Harness h, uint id, ClientKind kind = ClientKind.DotNet)
        {
            h.Core.ServerMessage(h.Now, h.Conn, new ServerMsg.PeerJoined(new PeerInfo(id, "p", kind)));
            return h.Drain();
        }

        private static List<CoreOutput> Paths(IEnumerable<CoreOutput> outs, uint peer)
        {
            return outs.Where(o => o.Kind == OutputKind.PathChanged && o.Peer == peer).ToList();
        }

        private static FlightPath Flight(PeerPathKind k)
        {
            return PeerPath.ToFlightPath(k);
        }

        /// <summary>Drives peer 6 to the given path with the shell's inputs; returns what the core emitted meanwhile.</summary>
        private static List<CoreOutput> Reach(Harness h, PeerPathKind target)
        {
            PeerState p = h.Core.GetPeer(6);
            List<CoreOutput> outs = new List<CoreOutput>();
            if (target == PeerPathKind.Relay)
            {
                h.Core.ConnectionState(h.Now, 6, p.LinkId, "failed", IceFailReason.Failed);
                outs.AddRange(h.Drain());
                return outs;
            }
            if (target == PeerPathKind.Direct || target == PeerPathKind.Turn)
            {
                if (p.Path.Kind == target)
                {
                    // Unchanged: the same state again, and time passing.
                    h.Core.ConnectionState(h.Now, 6, p.LinkId, "connected", IceFailReason.Other);
                    outs.AddRange(h.Drain());
                    outs.AddRange(h.Advance(100));
                    return outs;
                }
                // A link must be connecting: wait for the retry if the last one failed.
                for (int n = 0; n < 4000 && p.Path.State != DirectState.Connecting; n++)
                {
                    outs.AddRange(h.Advance(5));
                }
                if (p.Path.State != DirectState.Connecting)
                {
                    throw new CheckFailedException("no attempt to open a channel on");
                }
                h.Core.ConnectionState(h.Now, 6, p.LinkId, "connected", IceFailReason.Other);
                h.Core.ChannelOpen(h.Now, 6, p.LinkId, target == PeerPathKind.Turn);
                outs.AddRange(h.Drain());
                return outs;
            }
            throw new CheckFailedException("cannot drive a known peer to " + target);
        }

        private static string PathChangeCase(Dictionary<string, object> i, Dictionary<string, object> e)
        {
            string previous = S(i, "previous");
            PeerPathKind path = (PeerPathKind)Enum.Parse(typeof(PeerPathKind), S(i, "path"), true);
            string want = (string)e["change"];
            List<CoreOutput> outs;
            Harness h;
            if (B(i, "initial"))
            {
                if (previous != null)
                {
                    return "an initial path has no previous one";
                }
                if (path != PeerPathKind.Connecting && path != PeerPathKind.Relay)
                {
                    return "a new peer is connecting or on the relay, not " + path;
                }
                h = Session(path == PeerPathKind.Relay);
                outs = Join(h, 6);
            }
            else
            {
                h = Session(false);
                Join(h, 6);
                PeerPathKind before = (PeerPathKind)Enum.Parse(typeof(PeerPathKind), previous, true);
                if (before != PeerPathKind.Connecting)
                {
                    Reach(h, before);
                }
                if (Name(h.Core.GetPeer(6).Path.Kind) != previous)
                {
                    return "could not put the peer on " + previous + " (" + Name(h.Core.GetPeer(6).Path.Kind) + ")";
                }
                outs = Reach(h, path);
            }
            if (h.Core.GetPeer(6).Path.Kind != path)
            {
                return "the peer is on " + Name(h.Core.GetPeer(6).Path.Kind) + ", not " + Name(path);
            }
            List<CoreOutput> announced = Paths(outs, 6);
            string got = announced.Count == 0 ? (want == "none" ? "none" : "update") : "announce";
            if (announced.Count > 1)
            {
                return "announced " + announced.Count + " times";
            }
            if (announced.Count == 1 && announced[0].Path != Flight(path))
            {
                return "announced " + announced[0].Path + " for " + Name(path);
            }
            if (want == "update" && h.Core.GetPeer(6).LastKind != path)
            {
                return "not recorded";
            }
            return got == want ? null : "change " + got + ", want " + want;
        }

        private static string ConnectionStateCase(Dictionary<string, object> i, Dictionary<string, object> e)
        {
            Harness h = Session(false);
            Join(h, 6);
            Reach(h, PeerPathKind.Direct);
            PeerState p = h.Core.GetPeer(6);
            int link = p.LinkId;
            h.Core.ConnectionState(h.Now, 6, link, S(i, "connection_state"), IceFailReason.Failed);
            List<CoreOutput> outs = h.Drain();
            bool fallback = p.Path.FallenBack;
            bool closed = outs.Any(o => o.Kind == OutputKind.CloseLink && o.LinkId == link);
            // A retry: the lower id (me) offers again later; give it ten times the delay.
            List<CoreOutput> later;
            long until = h.Now + 10 * new CoreOptions().DirectRetryDelayMs;
            bool reopened = false;
            while (h.Now < until && !reopened)
            {
                later = h.Advance(50);
                reopened = later.Any(o => o.Kind == OutputKind.OpenLink && o.Peer == 6);
            }
            bool retry = closed && reopened;
            List<string> diffs = new List<string>();
            if (fallback != B(e, "fallback"))
            {
                diffs.Add("fallback " + fallback);
            }
            if (fallback && Paths(outs, 6).Count(o => o.Path == FlightPath.Relay) != 1)
            {
                diffs.Add("relay not announced once");
            }
            if (retry != B(e, "retry"))
            {
                diffs.Add("retry " + retry + " (link closed " + closed + ", reopened " + reopened + ")");
            }
            if (!closed && p.LinkId != link)
            {
                diffs.Add("the link was replaced without a failure");
            }
            return diffs.Count == 0 ? null : string.Join(", ", diffs);
        }

        // --- scenarios ---

        private static void ForcedRelay()
        {
            Harness h = Session(true);
            List<CoreOutput> outs = Join(h, 6);
            List<CoreOutput> paths = Paths(outs, 6);
            Check(paths.Count == 1 && paths[0].Path == FlightPath.Relay, "the new peer's relay path is announced", paths.Count + " announcements");
            Check(!outs.Any(o => o.Kind == OutputKind.OpenLink), "no WebRTC attempt");
            Check(h.Core.GetPeer(6).Path.Kind == PeerPathKind.Relay, "relay");
            h.Core.SendFlight(h.Now, 6, new byte[] { 1 });
            outs = h.Drain();
            outs.AddRange(h.Advance(30000));
            Check(outs.Any(o => o.Kind == OutputKind.SendRelay), "frames go through the relay");
            Check(!outs.Any(o => o.Kind == OutputKind.OpenLink), "never a direct attempt, nor a retry");
            Check(Paths(outs, 6).Count == 0, "announced once only");
            // An offer from the peer is not answered.
            h.Core.ServerMessage(h.Now, h.Conn, new ServerMsg.SignalFrom(6, new Signal.Offer("v=0")));
            Check(!h.Drain().Any(o => o.Kind == OutputKind.OpenLink), "a peer's offer is not answered");
        }

        private static void NewPeerConnecting()
        {
            Harness h = Session(false);
            List<CoreOutput> outs = Join(h, 6);
            Check(outs.Any(o => o.Kind == OutputKind.OpenLink), "I offer to the newcomer");
            Check(Paths(outs, 6).Count == 0, "connecting: not announced");
            Check(h.Core.GetPeer(6).LastKind == PeerPathKind.Connecting, "but recorded");
            Check(h.Core.GetPeer(6).Path.Path == FlightPath.Relay, "its frames go through the relay meanwhile");
            outs = Reach(h, PeerPathKind.Direct);
            List<CoreOutput> paths = Paths(outs, 6);
            Check(paths.Count == 1 && paths[0].Path == FlightPath.Direct, "direct announced once");
            // A newcomer joining with peers already there: it waits for their offers, silently.
            Harness n = new Harness();
            n.Connect(7);
            n.Core.JoinSession(n.Now, 3, "7KQ2MX", null);
            n.Drain();
            n.Core.ServerMessage(n.Now, n.Conn, new ServerMsg.SessionJoined(Harness.SessionOf(5, 5, 7)));
            outs = n.Drain();
            Check(Paths(outs, 5).Count == 0 && n.Core.GetPeer(5).Path.Kind == PeerPathKind.Connecting, "a peer already there: connecting, silent");
        }

        private static void DisconnectedNoRetry()
        {
            Harness h = Session(false);
            Join(h, 6);
            Reach(h, PeerPathKind.Direct);
            PeerState p = h.Core.GetPeer(6);
            int link = p.LinkId;
            h.Core.ConnectionState(h.Now, 6, link, "disconnected", IceFailReason.Disconnected);
            List<CoreOutput> outs = h.Drain();
            List<CoreOutput> paths = Paths(outs, 6);
            Check(paths.Count == 1 && paths[0].Path == FlightPath.Relay, "relay announced");
            Check(p.Path.FallenBack && p.Path.State == DirectState.Interrupted, "fallen back, the attempt kept");
            outs = h.Advance(20000);
            Check(!outs.Any(o => (o.Kind == OutputKind.CloseLink || o.Kind == OutputKind.OpenLink) && o.Peer == 6), "no retry: the link stays");
            Check(Paths(outs, 6).Count == 0, "nothing more announced");
            // Connected again: the stall overlay keeps it on the relay until the path delivers.
            h.Core.ConnectionState(h.Now, 6, link, "connected", IceFailReason.Other);
            Check(h.Core.GetPeer(6).Path.Kind == PeerPathKind.Relay && p.Path.Stalled, "connected again: relay until proof");
            bool back = false;
            uint seq = 1;
            for (int n = 0; n < 100 && !back; n++)
            {
                h.Now += 16;
                h.Core.DirectFrame(h.Now, 6, link, SnapshotEnvelope.Wrap(seq++, new byte[] { 7 }, 0, 1));
                back = Paths(h.Drain(), 6).Any(o => o.Path == FlightPath.Direct);
            }
            Check(back, "back to direct once the peer's frames flow");
        }

        private static void FailedRetries()
        {
            Harness h = Session(false);
            Join(h, 6);
            Reach(h, PeerPathKind.Direct);
            PeerState p = h.Core.GetPeer(6);
            int link = p.LinkId;
            h.Core.ConnectionState(h.Now, 6, link, "failed", IceFailReason.Failed);
            List<CoreOutput> outs = h.Drain();
            Check(Paths(outs, 6).Count(o => o.Path == FlightPath.Relay) == 1, "relay announced");
            Check(outs.Any(o => o.Kind == OutputKind.CloseLink && o.LinkId == link), "the attempt is over");
            Check(p.Path.State == DirectState.Failed && p.RetryAt >= 0, "a retry is scheduled (I am the lower id)");
            outs = new List<CoreOutput>();
            for (int n = 0; n < 4000 && p.Path.State != DirectState.Connecting; n++)
            {
                outs.AddRange(h.Advance(5));
            }
            Check(outs.Any(o => o.Kind == OutputKind.OpenLink && o.Peer == 6), "the retry offers again");
            Check(Paths(outs, 6).Count == 0, "no announcement while failed (it used to repeat relay on every tick)");
            Check(p.Path.Kind == PeerPathKind.Relay, "the retry stays on the relay (fallen back), not connecting");
            outs = h.Advance(500);
            Check(Paths(outs, 6).Count == 0, "nothing announced during the retry");
            h.Core.ConnectionState(h.Now, 6, p.LinkId, "connected", IceFailReason.Other);
            h.Core.ChannelOpen(h.Now, 6, p.LinkId, true);
            outs = h.Drain();
            List<CoreOutput> paths = Paths(outs, 6);
            Check(paths.Count == 1 && paths[0].Path == FlightPath.Turn, "turn announced when the retry's channel opens");
            // The higher id does not retry: it waits for the other's offer.
            Harness hi = new Harness();
            hi.Connect(9);
            hi.InSession(9, 9);
            Join(hi, 6);
            hi.Core.ChannelOpen(hi.Now, 6, hi.Core.GetPeer(6).LinkId, false);
            hi.Drain();
            hi.Core.ConnectionState(hi.Now, 6, hi.Core.GetPeer(6).LinkId, "closed", IceFailReason.Other);
            outs = hi.Drain();
            outs.AddRange(hi.Advance(20000));
            Check(Paths(outs, 6).Count(o => o.Path == FlightPath.Relay) == 1, "the higher id falls back too (announced once)");
            Check(!outs.Any(o => o.Kind == OutputKind.OpenLink), "but does not retry");
        }

        private static void OfferNeverComes()
        {
            CoreOptions o = new CoreOptions();
            o.Path.DirectConnectTimeoutMs = 5000;
            Harness n = new Harness(o);
            n.Connect(7);
            n.Core.JoinSession(n.Now, 3, "7KQ2MX", null);
            n.Drain();
            SessionInfo s = Harness.SessionOf(5, 5, 7);
            s.Peers.Add(new PeerInfo(8, "rust", ClientKind.Rust));
            n.Core.ServerMessage(n.Now, n.Conn, new ServerMsg.SessionJoined(s));
            List<CoreOutput> outs = n.Drain();
            Check(n.Core.GetPeer(8).Path.Kind == PeerPathKind.Relay && Paths(outs, 8).Count(x => x.Path == FlightPath.Relay) == 1,
                "a Rust peer (no WebRTC) is on the relay at once, announced");
            Check(Paths(outs, 5).Count == 0, "the other waits for an offer, silently");
            outs = n.Advance(4900);
            Check(Paths(outs, 5).Count == 0 && n.Core.GetPeer(5).Path.Kind == PeerPathKind.Connecting, "still connecting before the deadline");
            outs = n.Advance(200);
            Check(Paths(outs, 5).Count(x => x.Path == FlightPath.Relay) == 1 && n.Core.GetPeer(5).Path.Kind == PeerPathKind.Relay,
                "relay announced at the deadline");
            outs = n.Advance(10000);
            Check(Paths(outs, 5).Count == 0 && Paths(outs, 8).Count == 0, "once");
        }
    }
}
