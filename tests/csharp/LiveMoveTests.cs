// Live test of a session move (docs/PROTOCOL.md section 11 "Moving a session (version 5)",
// rule 10) against two real server nodes, --region eu and --region us, on one real
// redis-server, both with --placement-move-interval-secs 0 --placement-overlap-ms 1500
// (live.sh starts them). Two WebRTCP2PService instances forced to the relay (EnableDirect
// off, WebSocket), created and joined on the eu node with injected region round trips
// (host eu 40 / us 30: not worth a placement; joiner eu 80 / us 5: the pair is worth
// moving), send flight data at about 60 Hz with their own sequence numbers. The eu node
// moves the session to us: both follow make-before-break, and
//  * node eu counts fsp2p_session_moves_total{outcome="moved"} >= 1;
//  * each service's open connection is the one to node us, its old one to eu was closed by
//    the server with code 20 (replaced), and every Hello it sent said version 5 (seen by a
//    recording transport factory around the real one);
//  * no frame is lost and none reaches the application twice, in either direction;
//  * no Reconnecting, Reconnected or Closed event: the move is invisible to the app.
// Usage: mono live-move-tests.exe ws://EU/ws ws://US/ws EU-NODE-NAME US-NODE-NAME
// [rounds]. Last line: "N passed, N failed".

using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Text.RegularExpressions;
using System.Threading;
using System.Threading.Tasks;
using FlightSimP2P.Client;
using FlightSimP2P.Protocol;
using static FlightSimP2P.Tests.TestKit;

namespace FlightSimP2P.Tests
{
    internal static class LiveMoveTests
    {
        private static int Main(string[] args)
        {
            Uri eu = new Uri(args[0]);
            Uri us = new Uri(args[1]);
            string euName = args[2];
            string usName = args[3];
            int rounds = args.Length > 4 ? int.Parse(args[4]) : 1;
            for (int i = 1; i <= rounds; i++)
            {
                int round = i;
                Test("move (round " + round + "/" + rounds + "): a relayed pair created on eu is moved to us make-before-break: no frame lost or delivered twice, old closed with 20, Hello 5",
                    () => Run(eu, us, euName, usName, round));
            }
            return Summary();
        }

        /// <summary>What one connection did, as its transport saw it.</summary>
        private sealed class ConnRecord
        {
            public string Server;
            public readonly List<int> HelloVersions = new List<int>();
            public bool Ended;
            public ushort CloseCode = CloseVerdict.NoCode;
        }

        private sealed class RecordingTransport : ISignalingTransport
        {
            private readonly ISignalingTransport _inner;
            private readonly ConnRecord _rec;

            public RecordingTransport(ISignalingTransport inner, ConnRecord rec)
            {
                _inner = inner;
                _rec = rec;
            }

            public Action<uint, byte[]> RelayReceived { set { _inner.RelayReceived = value; } }

            public ushort CloseCode { get { return _inner.CloseCode; } }

            public Task SendAsync(ClientMsg message, CancellationToken cancellationToken)
            {
                ClientMsg.Hello hello = message as ClientMsg.Hello;
                if (hello != null)
                {
                    lock (_rec)
                    {
                        _rec.HelloVersions.Add(hello.Version);
                    }
                }
                return _inner.SendAsync(message, cancellationToken);
            }

            public bool TrySendRelay(uint to, byte[] payload) { return _inner.TrySendRelay(to, payload); }

            public async Task<ServerMsg> ReceiveAsync(CancellationToken cancellationToken)
            {
                ServerMsg m = await _inner.ReceiveAsync(cancellationToken).ConfigureAwait(false);
                if (m == null)
                {
                    lock (_rec)
                    {
                        _rec.Ended = true;
                        _rec.CloseCode = _inner.CloseCode;
                    }
                }
                return m;
            }

            public Task CloseAsync(bool leave) { return _inner.CloseAsync(leave); }
        }

        private sealed class RecordingFactory : IClusterTransportFactory
        {
            private readonly IClusterTransportFactory _inner;
            public readonly List<ConnRecord> Conns = new List<ConnRecord>();

            public RecordingFactory(IClusterTransportFactory inner)
            {
                _inner = inner;
            }

            public bool QuicSupported { get { return false; } }

            public Task<ISignalingTransport> ConnectAsync(TransportKind kind, string first, CancellationToken cancellationToken)
            {
                return ConnectAsync(kind, null, first, cancellationToken);
            }

            public async Task<ISignalingTransport> ConnectAsync(TransportKind kind, ServerEndpoint server, string first, CancellationToken cancellationToken)
            {
                ConnRecord rec = new ConnRecord();
                rec.Server = server == null ? "configured" : server.Name;
                if (first != null)
                {
                    foreach (ClientMsg m in DecodeFirst(first))
                    {
                        ClientMsg.Hello hello = m as ClientMsg.Hello;
                        if (hello != null)
                        {
                            rec.HelloVersions.Add(hello.Version);
                        }
                    }
                }
                lock (Conns)
                {
                    Conns.Add(rec);
                }
                ISignalingTransport t = await _inner.ConnectAsync(kind, server, first, cancellationToken).ConfigureAwait(false);
                return new RecordingTransport(t, rec);
            }

            public List<ConnRecord> Snapshot()
            {
                lock (Conns)
                {
                    return new List<ConnRecord>(Conns);
                }
            }
        }

        /// <summary>The messages a `first` value carries (base64url of control frames; the request read at the Hello's version).</summary>
        private static List<ClientMsg> DecodeFirst(string first)
        {
            string b64 = first.Replace('-', '+').Replace('_', '/');
            b64 = b64.PadRight(b64.Length + (4 - b64.Length % 4) % 4, '=');
            byte[] bytes = Convert.FromBase64String(b64);
            FrameDecoder d = new FrameDecoder(First.MaxBytes);
            d.Push(bytes, 0, bytes.Length);
            List<ClientMsg> msgs = new List<ClientMsg>();
            byte[] body;
            ushort version = 1;
            while (d.TryNextFrame(out body))
            {
                ClientMsg m = ClientMsg.Decode(body, version);
                ClientMsg.Hello hello = m as ClientMsg.Hello;
                if (hello != null)
                {
                    version = hello.Version;
                }
                msgs.Add(m);
            }
            return msgs;
        }

        /// <summary>One service: its factory, what it received (app sequence numbers) and its events.</summary>
        private sealed class Player
        {
            public WebRTCP2PService Service;
            public RecordingFactory Factory;
            public readonly List<uint> Got = new List<uint>();
            public readonly List<string> Events = new List<string>();
            public uint Sent;
            public string Name;
        }

        private static Player Make(Uri eu, string name, params RegionRtt[] rtts)
        {
            Player p = new Player();
            p.Name = name;
            p.Service = new HubConnectionBuilder()
                .WithUrl(eu.ToString(), o =>
                {
                    o.DisplayName = name;
                    o.QuicAllowed = false;
                    o.EnableDirect = false;
                    // The round trips are injected: nothing measured may replace them.
                    o.RegionMeasurementEnabled = false;
                    p.Factory = new RecordingFactory(new DefaultTransportFactory(o));
                    o.TransportFactory = p.Factory;
                })
                .WithAutomaticReconnect()
                .Build();
            p.Service.SetRegionRtts(rtts);
            p.Service.FlightDataReceived += (from, data, path) =>
            {
                if (data.Length >= 4)
                {
                    uint seq = (uint)(data[0] | (data[1] << 8) | (data[2] << 16) | (data[3] << 24));
                    lock (p.Got)
                    {
                        p.Got.Add(seq);
                    }
                }
            };
            p.Service.Reconnecting += e => { lock (p.Events) { p.Events.Add("Reconnecting " + (e != null ? e.Message : "")); } return Task.CompletedTask; };
            p.Service.Reconnected += id => { lock (p.Events) { p.Events.Add("Reconnected"); } return Task.CompletedTask; };
            p.Service.Closed += e => { lock (p.Events) { p.Events.Add("Closed " + (e != null ? e.Message : "")); } return Task.CompletedTask; };
            return p;
        }

        /// <summary>A Prometheus counter's value on a node; 0 when absent.</summary>
        private static double Metric(Uri ws, string series)
        {
            string text;
            using (WebClient c = new WebClient())
            {
                text = c.DownloadString("http://" + ws.Host + ":" + ws.Port + "/metrics");
            }
            Match m = Regex.Match(text, "^" + Regex.Escape(series) + " ([0-9.eE+]+)$", RegexOptions.Multiline);
            return m.Success ? double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : 0;
        }

        private static byte[] Payload(uint seq)
        {
            byte[] b = new byte[48];
            b[0] = (byte)seq;
            b[1] = (byte)(seq >> 8);
            b[2] = (byte)(seq >> 16);
            b[3] = (byte)(seq >> 24);
            return b;
        }

        private static void Run(Uri eu, Uri us, string euName, string usName, int round)
        {
            double movedBefore = Metric(eu, "fsp2p_session_moves_total{outcome=\"moved\"}");
            Player host = Make(eu, "move-host-" + round, new RegionRtt("eu", 40), new RegionRtt("us", 30));
            Player guest = Make(eu, "move-guest-" + round, new RegionRtt("eu", 80), new RegionRtt("us", 5));
            CancellationTokenSource stop = new CancellationTokenSource();
            Task sender = null;
            try
            {
                Task<SessionInfo> created = host.Service.StartAndCreateSessionAsync(4);
                Check(created.Wait(15000) && created.Status == TaskStatus.RanToCompletion, "created on eu",
                    created.IsFaulted ? created.Exception.InnerException.Message : created.Status.ToString());
                Task<SessionInfo> joined = guest.Service.StartAndJoinSessionAsync(created.Result.Code);
                Check(joined.Wait(15000) && joined.Status == TaskStatus.RanToCompletion, "joined on eu",
                    joined.IsFaulted ? joined.Exception.InnerException.Message : joined.Status.ToString());
                uint h = host.Service.PeerId;
                uint g = guest.Service.PeerId;
                Check(WaitFor(() => host.Service.GetPeerQuality(g) != null && guest.Service.GetPeerQuality(h) != null, 10000), "each sees the other");
                Check(host.Factory.Snapshot().All(c => c.Server == "configured") && guest.Factory.Snapshot().All(c => c.Server == "configured"),
                    "both on the configured node (eu): not placed away at create or join");

                // About 60 Hz each way, with the application's own sequence numbers; a frame the
                // service could not send (false) is sent again at the next tick with the same number.
                sender = Task.Run(async () =>
                {
                    while (!stop.IsCancellationRequested)
                    {
                        if (host.Service.SendFlightData(g, Payload(host.Sent)))
                        {
                            host.Sent++;
                        }
                        if (guest.Service.SendFlightData(h, Payload(guest.Sent)))
                        {
                            guest.Sent++;
                        }
                        await Task.Delay(16).ConfigureAwait(false);
                    }
                });
                double moved = 0;
                Check(WaitFor(() => (moved = Metric(eu, "fsp2p_session_moves_total{outcome=\"moved\"}")) >= movedBefore + 1, 30000),
                    "node eu moved the session (fsp2p_session_moves_total{outcome=\"moved\"} " + movedBefore + " -> " + moved + ")");
                Check(WaitFor(() => host.Service.MovesCompleted >= 1 && guest.Service.MovesCompleted >= 1, 20000),
                    "both services followed the move to its end (" + host.Service.MovesCompleted + ", " + guest.Service.MovesCompleted + ")");
                // A while on the new node only, then stop and let the last frames arrive.
                uint hostAt = host.Sent;
                uint guestAt = guest.Sent;
                Check(WaitFor(() => host.Sent >= hostAt + 60 && guest.Sent >= guestAt + 60, 15000), "60 more frames each after the move");
                stop.Cancel();
                sender.Wait(5000);
                WaitFor(() =>
                {
                    lock (host.Got)
                    {
                        lock (guest.Got)
                        {
                            return host.Got.Count >= guest.Sent && guest.Got.Count >= host.Sent;
                        }
                    }
                }, 5000);
                Thread.Sleep(300);

                foreach (Player[] pair in new[] { new[] { host, guest }, new[] { guest, host } })
                {
                    Player me = pair[0];
                    Player other = pair[1];
                    List<uint> got;
                    lock (me.Got)
                    {
                        got = new List<uint>(me.Got);
                    }
                    int twice = got.Count - got.Distinct().Count();
                    HashSet<uint> set = new HashSet<uint>(got);
                    List<uint> missing = new List<uint>();
                    for (uint s = 0; s < other.Sent; s++)
                    {
                        if (!set.Contains(s))
                        {
                            missing.Add(s);
                        }
                    }
                    Console.WriteLine("     figure: round " + round + ": " + me.Name + " got " + got.Count + " of " + other.Sent + " frames the other sent");
                    Check(other.Sent > 120, me.Name + ": the other sent frames across the move (" + other.Sent + ")");
                    Check(missing.Count == 0, me.Name + ": no frame lost", missing.Count + " missing: " + string.Join(",", missing.Take(20)));
                    Eq(0, twice, me.Name + ": no frame delivered twice to the app");
                    bool inOrder = true;
                    for (int i = 1; i < got.Count; i++)
                    {
                        inOrder &= got[i] > got[i - 1];
                    }
                    Check(inOrder, me.Name + ": delivered in order (the envelope drops what is not newer)");

                    List<ConnRecord> conns = me.Factory.Snapshot();
                    string seen = string.Join("; ", conns.Select(c => c.Server + " hello " + string.Join("/", c.HelloVersions) + (c.Ended ? " closed " + c.CloseCode : " open")));
                    Console.WriteLine("     figure: round " + round + ": " + me.Name + ": " + seen + "; copies dropped by the envelope: " + me.Service.StaleSnapshotsDropped);
                    Check(me.Service.StaleSnapshotsDropped > 0, me.Name + ": frames came through both nodes during the overlap (copies dropped: " + me.Service.StaleSnapshotsDropped + ")");
                    Check(conns.Count == 2, me.Name + ": two connections (the configured eu node, then " + usName + ")", seen);
                    Check(conns.Count >= 1 && conns[0].Server == "configured" && conns[0].Ended && conns[0].CloseCode == (ushort)ErrorCode.Replaced,
                        me.Name + ": the old connection (eu) closed by the server with code 20 (replaced)", seen);
                    Check(conns.Count >= 2 && conns[1].Server == usName && !conns[1].Ended, me.Name + ": now on node " + usName, seen);
                    Check(conns.All(c => c.HelloVersions.Count == 1 && c.HelloVersions[0] == 5), me.Name + ": every Hello said version 5", seen);
                    Check(me.Service.State == HubConnectionState.Connected && me.Service.Session != null, me.Name + ": connected, in the session");
                    lock (me.Events)
                    {
                        Check(me.Events.Count == 0, me.Name + ": no Reconnecting, Reconnected or Closed", string.Join("; ", me.Events));
                    }
                }
                Check(host.Service.Session.Code == created.Result.Code, "the same session");
                Eq(h, host.Service.PeerId, "host: same peer id");
                Eq(g, guest.Service.PeerId, "guest: same peer id");
            }
            finally
            {
                stop.Cancel();
                if (sender != null)
                {
                    sender.Wait(5000);
                }
                host.Service.DisposeAsync().Wait(10000);
                guest.Service.DisposeAsync().Wait(10000);
            }
        }
    }
}
