// Issue 26 (regions, PROTOCOL.md section 11), C# half: the node list, which node is
// measured per region, where the list is, the 1 s deadline, the 5-minute cache, and what
// goes in CreateSession/JoinSession at which version (never waiting for a measurement).
// Simulated time and fake probers only.
// Part of ServiceTests (a partial class): run by its Main, compiled with it by run.sh.
//
// Plain C# 7.2 (mono).

using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using FlightSimP2P.Client;
using FlightSimP2P.Protocol;
using static FlightSimP2P.Tests.TestKit;

namespace FlightSimP2P.Tests
{
    internal static partial class ServiceTests
    {
        private static void RunRegions()
        {
            Test("regions: GET /nodes parsed in order; bad entries skipped; not a list is null", RegionsParse);
            Test("regions: the first node listed per region, none with fewer than two regions, at most 16", RegionsPerRegion);
            Test("regions: the list is at the WebSocket URL's host (ws -> http, wss -> https); a node's HTTP host and port", RegionsWhere);
            Test("regions: all regions timed at once; one that misses the 1 s deadline or fails is left out", RegionsDeadline);
            Test("regions: no list, a bad list or one region measures nothing and times nobody", RegionsNothingToChoose);
            Test("regions: cache: measure after a Welcome of version 4 only, once at a time, again after 5 minutes", RegionsCache);
            Test("regions core: Welcome v4 asks for a measurement; a request before it ends carries an empty list, the next what was measured", RegionsCoreRequests);
            Test("regions shell: after Welcome v4 the service GETs /nodes at the WebSocket URL's host, times both, and the next CreateSession carries them", RegionsShell);
            Test("regions core: version 3 sends no region_rtts; RegionMeasurementEnabled off measures nothing; a URL request is at the Hello's version", RegionsCoreVersions);
        }

        private static readonly string TwoRegions = "{\"nodes\": ["
            + "{\"name\": \"eu-1\", \"region\": \"eu\", \"quic\": \"10.0.0.1:4433\", \"http\": \"http://10.0.0.1:8080\", \"cert_sha256\": null},"
            + "{\"name\": \"eu-2\", \"region\": \"eu\", \"quic\": \"10.0.0.2:4433\", \"http\": \"http://10.0.0.2:8080\", \"cert_sha256\": null},"
            + "{\"name\": \"plain\", \"region\": null, \"quic\": \"\", \"http\": \"http://10.0.0.9:8080\", \"cert_sha256\": null},"
            + "{\"name\": \"us-1\", \"region\": \"us-east\", \"quic\": \"10.0.1.1:4433\", \"http\": \"http://10.0.1.1:9090\", \"cert_sha256\": \"" + new string('a', 64) + "\"}"
            + "]}";

        private static void RegionsParse()
        {
            List<ListedNode> nodes = Regions.ParseNodes(TwoRegions);
            Eq(4, nodes.Count, "four nodes");
            Eq("eu-1", nodes[0].Name, "the server itself first");
            Eq(null, nodes[2].Region, "a node without a region");
            Eq(32, nodes[3].CertSha256.Length, "hash");
            Eq("http://10.0.1.1:9090", nodes[3].Http, "http");
            List<ListedNode> bad = Regions.ParseNodes("{\"nodes\": [{\"name\": \"x\", \"region\": \"EU!\", \"http\": \"http://h:1\"},"
                + "{\"region\": \"eu\"}, {\"name\": \"y\", \"region\": \"eu\", \"cert_sha256\": \"abc\"}, {\"name\": \"ok\", \"region\": \"asia\"}]}");
            Eq(1, bad.Count, "bad region, no name and bad hash skipped");
            Eq("ok", bad[0].Name, "the good one kept");
            Check(Regions.ParseNodes("not json") == null, "not JSON: null");
            Check(Regions.ParseNodes("{\"nodes\": 3}") == null, "no nodes array: null");
            Check(Regions.ValidRegion("us-east-1") && !Regions.ValidRegion("") && !Regions.ValidRegion(new string('a', 33)) && !Regions.ValidRegion("Eu"),
                "region names: 1 to 32 of a-z 0-9 -");
        }

        private static void RegionsPerRegion()
        {
            List<KeyValuePair<string, ListedNode>> t = Regions.PerRegion(Regions.ParseNodes(TwoRegions));
            Eq(2, t.Count, "two regions");
            Eq("eu", t[0].Key, "eu first");
            Eq("eu-1", t[0].Value.Name, "eu: the first listed (the server itself)");
            Eq("us-1", t[1].Value.Name, "us-east");
            List<ListedNode> one = Regions.ParseNodes("{\"nodes\": [{\"name\": \"a\", \"region\": \"eu\"}, {\"name\": \"b\", \"region\": \"eu\"}, {\"name\": \"c\", \"region\": null}]}");
            Eq(0, Regions.PerRegion(one).Count, "one region: nothing to choose");
            List<ListedNode> many = new List<ListedNode>();
            for (int i = 0; i < 20; i++)
            {
                ListedNode n = new ListedNode();
                n.Name = "n" + i;
                n.Region = "r" + i;
                many.Add(n);
            }
            Eq(16, Regions.PerRegion(many).Count, "at most 16 regions");
        }

        private static void RegionsWhere()
        {
            Eq("http://10.0.0.2:8080/nodes", Regions.NodesUri(new Uri("ws://10.0.0.2:8080/ws")).ToString(), "ws -> http, same port");
            Eq("https://eu.example.com/nodes", Regions.NodesUri(new Uri("wss://eu.example.com/ws?x=1")).ToString(), "wss -> https, default port");
            Check(Regions.NodesUri(null) == null, "no WebSocket URL: no list");
            string host;
            int port;
            Check(Regions.TryHttpHostPort("http://10.0.1.1:9090", out host, out port) && host == "10.0.1.1" && port == 9090, "host and port");
            Check(Regions.TryHttpHostPort("https://eu.example.com", out host, out port) && port == 443, "https default port");
            Check(!Regions.TryHttpHostPort("", out host, out port) && !Regions.TryHttpHostPort("quic://h:1", out host, out port), "no usable address");
            Eq((uint)1, Regions.RttMs(0), "at least 1 ms");
        }

        /// <summary>A prober whose connects finish when the test says (or never, or fail).</summary>
        private sealed class FakeProber : IRegionProber
        {
            public string Body = TwoRegions;
            public Exception ListError;
            public readonly Dictionary<string, TaskCompletionSource<bool>> Connects = new Dictionary<string, TaskCompletionSource<bool>>();
            public readonly List<string> Asked = new List<string>();
            public Uri ListUri;

            public Task<string> GetNodesAsync(Uri nodesUri, CancellationToken cancellationToken)
            {
                ListUri = nodesUri;
                if (ListError != null)
                {
                    TaskCompletionSource<string> f = new TaskCompletionSource<string>();
                    f.SetException(ListError);
                    return f.Task;
                }
                return Task.FromResult(Body);
            }

            public Task RoundTripAsync(ListedNode node, CancellationToken cancellationToken)
            {
                string key = node.Http.Replace("http://", "");
                TaskCompletionSource<bool> t = new TaskCompletionSource<bool>();
                lock (Asked)
                {
                    Connects[key] = t;
                    Asked.Add(key);
                }
                cancellationToken.Register(() => t.TrySetCanceled());
                return t.Task;
            }
        }

        private sealed class ManualClock : IClock
        {
            public long Now = 5000;

            public long NowMs
            {
                get { return Interlocked.Read(ref Now); }
            }
        }

        private static void RegionsDeadline()
        {
            FakeProber p = new FakeProber();
            ManualClock clock = new ManualClock();
            TaskCompletionSource<bool> deadline = new TaskCompletionSource<bool>();
            long asked = -1;
            Task<List<RegionRtt>> m = RegionMeasurer.MeasureAsync(p, clock, new Uri("http://10.0.0.1:8080/nodes"),
                (ms, ct) => { asked = ms; return deadline.Task; }, CancellationToken.None);
            Eq(2, p.Asked.Count, "both regions timed at once (before any answered)");
            Check(p.Asked.Contains("10.0.0.1:8080") && p.Asked.Contains("10.0.1.1:9090"), "eu-1 and us-1 at their HTTP ports", string.Join(",", p.Asked));
            Eq(1000L, asked, "the deadline is 1 s");
            clock.Now += 42;
            p.Connects["10.0.0.1:8080"].SetResult(true);
            Check(!m.IsCompleted, "waits for the other or the deadline");
            deadline.SetResult(true);
            Check(m.Wait(2000), "ends at the deadline");
            Eq(1, m.Result.Count, "the late region is left out");
            Eq("eu", m.Result[0].Region, "eu measured");
            Eq((uint)42, m.Result[0].RttMs, "its connect time");

            // All answer: no need to wait for the deadline; a failure is left out.
            FakeProber q = new FakeProber();
            Task<List<RegionRtt>> m2 = RegionMeasurer.MeasureAsync(q, clock, new Uri("http://10.0.0.1:8080/nodes"),
                (ms, ct) => new TaskCompletionSource<bool>().Task, CancellationToken.None);
            clock.Now += 7;
            q.Connects["10.0.1.1:9090"].SetResult(true);
            q.Connects["10.0.0.1:8080"].SetException(new System.Net.Sockets.SocketException());
            Check(m2.Wait(2000), "ends when all answered");
            Eq(1, m2.Result.Count, "the failed region is left out");
            Eq("us-east", m2.Result[0].Region, "us-east measured");
            Eq((uint)7, m2.Result[0].RttMs, "7 ms");
        }

        private static void RegionsNothingToChoose()
        {
            ManualClock clock = new ManualClock();
            Func<long, CancellationToken, Task> never = (ms, ct) => new TaskCompletionSource<bool>().Task;
            FakeProber fails = new FakeProber();
            fails.ListError = new System.IO.IOException("refused");
            Eq(0, RegionMeasurer.MeasureAsync(fails, clock, new Uri("http://h:1/nodes"), never, CancellationToken.None).Result.Count, "no list");
            FakeProber junk = new FakeProber();
            junk.Body = "<html>";
            Eq(0, RegionMeasurer.MeasureAsync(junk, clock, new Uri("http://h:1/nodes"), never, CancellationToken.None).Result.Count, "not a list");
            FakeProber one = new FakeProber();
            one.Body = "{\"nodes\": [{\"name\": \"a\", \"region\": \"eu\", \"http\": \"http://h:1\"}]}";
            Eq(0, RegionMeasurer.MeasureAsync(one, clock, new Uri("http://h:1/nodes"), never, CancellationToken.None).Result.Count, "one region");
            Eq(0, one.Asked.Count, "nobody timed");
            Eq(0, RegionMeasurer.MeasureAsync(one, clock, null, never, CancellationToken.None).Result.Count, "no WebSocket URL: nothing");
        }

        private static void RegionsCache()
        {
            RegionCache c = new RegionCache();
            Check(!c.ShouldMeasure(0, true, 3), "Welcome v3: no measurement");
            Check(!c.ShouldMeasure(0, false, 4), "switched off: no measurement");
            Check(c.ShouldMeasure(0, true, 4), "Welcome v4: measure");
            c.Begin(0);
            Check(!c.ShouldMeasure(10, true, 4), "one at a time");
            Eq(0, c.ForRequest(500).Count, "running: a request carries nothing (it never waits)");
            c.End(900, new List<RegionRtt> { new RegionRtt("eu", 5), new RegionRtt("us-east", 84) });
            Eq(2, c.ForRequest(1000).Count, "then what was measured");
            Check(!c.ShouldMeasure(900 + Regions.CacheMs - 1, true, 4), "fresh for 5 minutes: no new measurement");
            Eq(2, c.ForRequest(900 + Regions.CacheMs - 1).Count, "still carried at 4:59.999");
            Eq(0, c.ForRequest(900 + Regions.CacheMs).Count, "stale after 5 minutes: nothing");
            Check(c.ShouldMeasure(900 + Regions.CacheMs, true, 4), "measured again after 5 minutes");
            List<RegionRtt> copy = c.ForRequest(1000);
            copy.Clear();
            Eq(2, c.ForRequest(1000).Count, "a request's list is a copy");
        }

        private static ClientMsg SentRequest(List<CoreOutput> outs)
        {
            return outs.Where(o => o.Kind == OutputKind.SendControl).Select(o => o.Message)
                .FirstOrDefault(m => m is ClientMsg.CreateSession || m is ClientMsg.JoinSession);
        }

        private static void RegionsCoreRequests()
        {
            Harness h = new Harness();
            h.Core.Start(h.Now, 1);
            CoreOutput c = h.Drain().First(x => x.Kind == OutputKind.Connect);
            h.Core.TransportConnected(h.Now, c.Conn);
            ServerMsg.Welcome w = Harness.Welcome(5, false);
            w.Version = 4;
            h.Core.ServerMessage(h.Now, c.Conn, w);
            h.Conn = c.Conn;
            List<CoreOutput> outs = h.Drain();
            Eq(1, outs.Count(o => o.Kind == OutputKind.MeasureRegions), "one measurement asked for");
            // A request while it runs goes at once, with an empty list.
            h.Core.CreateSession(h.Now, 2, 8, null);
            ClientMsg.CreateSession first = (ClientMsg.CreateSession)SentRequest(h.Drain());
            Check(first != null && first.RegionRtts != null && first.RegionRtts.Count == 0, "sent at once with an empty list (version 4)");
            CheckBytes(first.Encode(), "01080000", "on the wire: max_peers 8, no password, 0 regions");
            h.Core.ServerMessage(h.Now, h.Conn, new ServerMsg.SessionCreated(Harness.SessionOf(5, 5)));
            h.Drain();
            h.Now += 600;
            h.Core.RegionsMeasured(h.Now, new List<RegionRtt> { new RegionRtt("eu", 5), new RegionRtt("us-east", 84) });
            Eq(2, h.Core.RegionRttsAt(h.Now).Count, "RegionRtts: what was measured");
            h.Core.LeaveSession(h.Now);
            h.Drain();
            h.Core.JoinSession(h.Now, 3, "7KQ2MX", null);
            ClientMsg.JoinSession join = (ClientMsg.JoinSession)SentRequest(h.Drain());
            Check(join != null && join.RegionRtts.Count == 2 && join.RegionRtts[1].Region == "us-east" && join.RegionRtts[1].RttMs == 84,
                "the next JoinSession carries the measurement");
        }

        private static void CheckBytes(byte[] actual, string hex, string what)
        {
            Eq(hex, Wire.ToHex(actual), what);
        }

        private static void RegionsShell()
        {
            FakeFactory f = new FakeFactory();
            f.T.Version = 4;
            FakeProber p = new FakeProber();
            WebRTCP2POptions o = new WebRTCP2POptions();
            o.TransportFactory = f;
            o.PingInterval = TimeSpan.Zero;
            o.WebSocketUri = new Uri("ws://10.0.0.1:8080/ws");
            o.RegionProber = p;
            using (WebRTCP2PService s = new WebRTCP2PService(o))
            {
                Check(s.StartAsync().Wait(5000), "started");
                Check(WaitFor(() => { lock (p.Asked) { return p.Asked.Count == 2; } }), "both regions timed");
                Eq("http://10.0.0.1:8080/nodes", p.ListUri.ToString(), "the list at the WebSocket URL's host");
                Eq(0, s.RegionRtts.Count, "nothing yet");
                lock (p.Asked)
                {
                    p.Connects["10.0.0.1:8080"].SetResult(true);
                    p.Connects["10.0.1.1:9090"].SetResult(true);
                }
                Check(WaitFor(() => s.RegionRtts.Count == 2), "RegionRtts: both regions");
                Check(s.CreateSessionAsync(0, null).Wait(5000), "created");
                ClientMsg.CreateSession sent;
                lock (f.T.Sent)
                {
                    sent = f.T.Sent.OfType<ClientMsg.CreateSession>().Last();
                }
                Check(sent.RegionRtts != null && sent.RegionRtts.Count == 2 && sent.RegionRtts[0].Region == "eu", "the CreateSession carries them");
            }
        }

        private static void RegionsCoreVersions()
        {
            // Welcome of version 3: no measurement, and no region_rtts on the wire.
            Harness h = new Harness();
            h.Core.Start(h.Now, 1);
            CoreOutput c = h.Drain().First(x => x.Kind == OutputKind.Connect);
            h.Core.TransportConnected(h.Now, c.Conn);
            ServerMsg.Welcome w = Harness.Welcome(5, false);
            w.Version = 3;
            h.Core.ServerMessage(h.Now, c.Conn, w);
            h.Conn = c.Conn;
            Eq(0, h.Drain().Count(o => o.Kind == OutputKind.MeasureRegions), "v3: no measurement");
            h.Core.CreateSession(h.Now, 2, 8, null);
            ClientMsg.CreateSession v3 = (ClientMsg.CreateSession)SentRequest(h.Drain());
            Check(v3.RegionRtts == null, "v3: no region_rtts field");
            CheckBytes(v3.Encode(), "010800", "v3 body");

            // Switched off: a v4 Welcome asks for nothing; requests carry an empty list.
            CoreOptions off = new CoreOptions();
            off.RegionMeasurementEnabled = false;
            Harness h2 = new Harness(off);
            h2.Core.Start(h2.Now, 1);
            CoreOutput c2 = h2.Drain().First(x => x.Kind == OutputKind.Connect);
            h2.Core.TransportConnected(h2.Now, c2.Conn);
            ServerMsg.Welcome w2 = Harness.Welcome(6, false);
            w2.Version = 4;
            h2.Core.ServerMessage(h2.Now, c2.Conn, w2);
            Eq(0, h2.Drain().Count(o => o.Kind == OutputKind.MeasureRegions), "off: no measurement");

            // A join in a WebSocket attempt's URL is read at the Hello's version (4): an empty list.
            Harness h3 = new Harness(Harness.WebSocketOnly());
            h3.Core.Start(h3.Now, 1, new ClientMsg.JoinSession("7KQ2MX", null), 2);
            CoreOutput c3 = h3.Drain().Single(x => x.Kind == OutputKind.Connect);
            List<ClientMsg> first = Harness.DecodeFirst(c3.First);
            Eq(2, first.Count, "Hello and the join in the URL");
            Eq((ushort)5, ((ClientMsg.Hello)first[0]).Version, "Hello version 5");
            ClientMsg.JoinSession j = first[1] as ClientMsg.JoinSession;
            Check(j != null && j.RegionRtts != null && j.RegionRtts.Count == 0, "the join at version 4, nothing measured yet");
        }
    }
}
