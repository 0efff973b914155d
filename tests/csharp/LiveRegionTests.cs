// Live test of regions (docs/PROTOCOL.md section 11 "Regions (version 4)") against two
// real server nodes with --region eu and --region us-east on one real Redis (live.sh
// starts them): eu with --placement-min-gain-ms 5000 (no measurement can make it
// redirect), us with the default 20 ms.
//  1. a service on the eu node measures both regions (GET /nodes, a TCP connect to each)
//     after its Welcome of version 4, and its CreateSession, which carries them, is
//     answered SessionCreated by that node, with no Redirect;
//  2. the same with eu made to measure 300 ms worse (a prober that waits before its
//     connect): still created on eu, since 300 ms is below the gain the nodes ask for;
//  3. a service on the us node (which asks only the default 20 ms) with us-east made 300 ms
//     slower is sent to eu by Redirect(Placement), follows it, and its session is created
//     there: the measurement really reaches placement;
//  4. a CreateSession at version 4 whose list names a region twice (what the codec lets
//     through and the client never sends) is refused with invalid_argument, and the
//     connection stays.
// Usage: mono live-region-tests.exe ws://EU/ws ws://US/ws. Last line: "N passed, N failed".

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
    internal static class LiveRegionTests
    {
        private static int Main(string[] args)
        {
            Uri eu = new Uri(args[0]);
            Test("regions: a service measures both regions after Welcome v4; its CreateSession with them is created here, no redirect (min gain not reached)", () => MeasureAndCreate(eu));
            Test("regions: a measurement 300 ms worse to this node's region still does not redirect below --placement-min-gain-ms", () => SlowHere(eu));
            Test("regions: on node us (min gain 20 ms) with us-east made 300 ms slower: Redirect(Placement) to eu, followed, created there", () => PlacedAway(new Uri(args[1])));
            Test("regions: a CreateSession naming a region twice is refused with invalid_argument; the connection stays", () => InvalidList(eu));
            return Summary();
        }

        /// <summary>The real prober, with a delay before connecting to one port (a region made to look far).</summary>
        private sealed class SlowerTo : IRegionProber
        {
            private readonly TcpRegionProber _real = new TcpRegionProber(null);
            private readonly int _port;

            public SlowerTo(int port)
            {
                _port = port;
            }

            public Task<string> GetNodesAsync(Uri nodesUri, CancellationToken cancellationToken)
            {
                return _real.GetNodesAsync(nodesUri, cancellationToken);
            }

            public async Task RoundTripAsync(ListedNode node, CancellationToken cancellationToken)
            {
                if (node.Http.EndsWith(":" + _port))
                {
                    await Task.Delay(300, cancellationToken).ConfigureAwait(false);
                }
                await _real.RoundTripAsync(node, cancellationToken).ConfigureAwait(false);
            }
        }

        private static void SlowHere(Uri eu)
        {
            MeasureAndCreate(eu, new SlowerTo(eu.Port));
        }

        private static void MeasureAndCreate(Uri eu)
        {
            MeasureAndCreate(eu, null);
        }

        private static void PlacedAway(Uri us)
        {
            List<string> events = new List<string>();
            WebRTCP2PService s = new HubConnectionBuilder()
                .WithUrl(us.ToString(), o =>
                {
                    o.DisplayName = "placed";
                    o.QuicAllowed = false;
                    o.EnableDirect = false;
                    o.RegionProber = new SlowerTo(us.Port);
                })
                .Build();
            s.Redirected += node => { lock (events) { events.Add(node); } };
            try
            {
                Check(s.StartAsync().Wait(10000), "started");
                IReadOnlyList<RegionRtt> rtts = s.RegionRtts;
                for (int i = 0; i < 50 && rtts.Count < 2; i++)
                {
                    Thread.Sleep(100);
                    rtts = s.RegionRtts;
                }
                string seen = string.Join(", ", rtts.Select(r => r.Region + " " + r.RttMs + " ms"));
                Check(rtts.Count == 2 && rtts.First(r => r.Region == "us-east").RttMs >= 300, "us-east measured 300 ms slower", seen);
                Task<SessionInfo> created = s.CreateSessionAsync(4, null);
                Check(created.Wait(15000) && created.Status == TaskStatus.RanToCompletion, "the create completes on the node it was placed on",
                    created.IsFaulted ? created.Exception.InnerException.Message : created.Status.ToString());
                lock (events)
                {
                    Check(events.Count == 1 && events[0] == "eu", "redirected once, to eu", string.Join("; ", events));
                }
                Check(s.Session != null && s.State == HubConnectionState.Connected, "in the session, connected");
            }
            finally
            {
                s.DisposeAsync().Wait(10000);
            }
        }

        private static void MeasureAndCreate(Uri eu, IRegionProber prober)
        {
            List<string> events = new List<string>();
            WebRTCP2PService s = new HubConnectionBuilder()
                .WithUrl(eu.ToString(), o =>
                {
                    o.DisplayName = "regions";
                    o.QuicAllowed = false;
                    o.EnableDirect = false;
                    o.RegionProber = prober;
                })
                .Build();
            s.Redirected += node => { lock (events) { events.Add("redirected " + node); } };
            try
            {
                Check(s.StartAsync().Wait(10000), "started");
                IReadOnlyList<RegionRtt> rtts = s.RegionRtts;
                for (int i = 0; i < 50 && rtts.Count < 2; i++)
                {
                    Thread.Sleep(100);
                    rtts = s.RegionRtts;
                }
                string seen = string.Join(", ", rtts.Select(r => r.Region + " " + r.RttMs + " ms"));
                Console.WriteLine("     figure: measured on loopback: " + seen);
                Eq(2, rtts.Count, "both regions measured (" + seen + ")");
                Check(rtts.Any(r => r.Region == "eu") && rtts.Any(r => r.Region == "us-east"), "eu and us-east", seen);
                if (prober != null)
                {
                    Check(rtts.First(r => r.Region == "eu").RttMs >= 300, "eu measured at least 300 ms", seen);
                }
                Check(rtts.All(r => r.RttMs >= 1 && r.RttMs <= 1000), "within the 1 s deadline", seen);
                Task<SessionInfo> created = s.CreateSessionAsync(4, null);
                Check(created.Wait(10000) && created.Status == TaskStatus.RanToCompletion, "CreateSession with region_rtts answered SessionCreated",
                    created.IsFaulted ? created.Exception.InnerException.Message : created.Status.ToString());
                Check(s.Session != null && s.Session.Code.Length > 0, "in the session");
                lock (events)
                {
                    Check(events.Count == 0, "no redirect: the measured difference is below --placement-min-gain-ms", string.Join("; ", events));
                }
            }
            finally
            {
                s.DisposeAsync().Wait(10000);
            }
        }

        private static void InvalidList(Uri eu)
        {
            using (CancellationTokenSource life = new CancellationTokenSource(TimeSpan.FromSeconds(20)))
            {
                ISignalingTransport t = WebSocketTransport.ConnectAsync(eu, TimeSpan.FromSeconds(5), life.Token).Result;
                ClientMsg.Hello hello = new ClientMsg.Hello();
                hello.Version = Wire.RegionProtocolVersion;
                hello.Name = "bad-list";
                t.SendAsync(hello, life.Token).Wait();
                ServerMsg.Welcome w = t.ReceiveAsync(life.Token).Result as ServerMsg.Welcome;
                Check(w != null && w.Version >= Wire.RegionProtocolVersion, "Welcome of version 4", w != null ? w.Version.ToString() : "none");
                ClientMsg.CreateSession twice = new ClientMsg.CreateSession(4, null);
                twice.RegionRtts = new List<RegionRtt> { new RegionRtt("eu", 5), new RegionRtt("eu", 6) };
                t.SendAsync(twice, life.Token).Wait();
                ServerMsg.Error e = t.ReceiveAsync(life.Token).Result as ServerMsg.Error;
                Check(e != null && e.Code == (ushort)ErrorCode.InvalidArgument, "refused with invalid_argument (9)",
                    e != null ? e.Code + " " + e.Message : "no error");
                // The connection stays: a Ping is answered.
                t.SendAsync(new ClientMsg.Ping(77), life.Token).Wait();
                ServerMsg answer = t.ReceiveAsync(life.Token).Result;
                Check(answer is ServerMsg.Pong && ((ServerMsg.Pong)answer).ClientTimeMs == 77, "the connection stays (Pong)", answer != null ? answer.GetType().Name : "closed");
                t.CloseAsync(true).Wait(5000);
            }
        }
    }
}
