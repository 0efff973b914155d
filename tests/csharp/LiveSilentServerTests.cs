// Live check of the liveness rules (issues 21 and 23): a WebRTCP2PService talks to the real
// server through a loopback TCP proxy; the proxy then stops forwarding on the open
// connection without closing it (a dead server or a dead middlebox: no FIN, no RST, TCP
// keeps the socket "open" for minutes). With the defaults the service must notice by the
// liveness rule (docs/PROTOCOL.md "Client behaviour" rule 2: a Ping unanswered past the
// live timeout, 1.5 s on loopback), far within ServerTimeout (10 s, the ceiling), fire
// Reconnecting, reconnect through the proxy (new connections are forwarded again) and
// resume with the same peer id and session. With the liveness rule off, ServerTimeout set
// on the built HubConnection (SignalR's property) decides alone.
// Usage: mono live-silent-tests.exe HOST:PORT (the server's HTTP/WebSocket listener).
// Last line: "N passed, N failed".

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using FlightSimP2P.Client;
using FlightSimP2P.Protocol;
using static FlightSimP2P.Tests.TestKit;

namespace FlightSimP2P.Tests
{
    internal static class LiveSilentServerTests
    {

        private static int Main(string[] args)
        {
            string[] hp = args[0].Split(':');
            IPEndPoint server = new IPEndPoint(IPAddress.Parse(hp[0]), int.Parse(hp[1]));
            Test("liveness (rule 2, defaults): a server gone silent behind a frozen proxy -> Reconnecting within the live timeout, then resumed", () => Silent(server));
            Test("ServerTimeout set to 3 s on the built HubConnection (SignalR's property): the frozen proxy is noticed within it", () => SilentSetAfterBuild(server));
            return Summary();
        }

        /// <summary>Forwards loopback TCP connections to the server; Freeze() stops every open one dead, without closing it.</summary>
        private sealed class FreezingProxy
        {
            private readonly TcpListener _listener = new TcpListener(IPAddress.Loopback, 0);
            private readonly IPEndPoint _target;
            private readonly List<TaskCompletionSource<bool>> _frozen = new List<TaskCompletionSource<bool>>();
            public int Accepted;

            public FreezingProxy(IPEndPoint target)
            {
                _target = target;
                _listener.Start();
                Task.Run(AcceptLoop);
            }

            public int Port
            {
                get { return ((IPEndPoint)_listener.LocalEndpoint).Port; }
            }

            public void Freeze()
            {
                lock (_frozen)
                {
                    foreach (TaskCompletionSource<bool> f in _frozen)
                    {
                        f.TrySetResult(true);
                    }
                }
            }

            private async Task AcceptLoop()
            {
                while (true)
                {
                    TcpClient c;
                    try
                    {
                        c = await _listener.AcceptTcpClientAsync().ConfigureAwait(false);
                    }
                    catch (Exception)
                    {
                        return;
                    }
                    Interlocked.Increment(ref Accepted);
                    TcpClient up = new TcpClient();
                    await up.ConnectAsync(_target.Address, _target.Port).ConfigureAwait(false);
                    TaskCompletionSource<bool> frozen = new TaskCompletionSource<bool>();
                    lock (_frozen)
                    {
                        _frozen.Add(frozen);
                    }
                    Task a = Pump(c.GetStream(), up.GetStream(), frozen.Task);
                    Task b = Pump(up.GetStream(), c.GetStream(), frozen.Task);
                    GC.KeepAlive(a);
                    GC.KeepAlive(b);
                }
            }

            private static async Task Pump(NetworkStream from, NetworkStream to, Task frozen)
            {
                byte[] buf = new byte[16384];
                try
                {
                    while (true)
                    {
                        Task<int> read = from.ReadAsync(buf, 0, buf.Length);
                        if (await Task.WhenAny(read, frozen).ConfigureAwait(false) == frozen)
                        {
                            return; // silent from now on; the sockets stay open
                        }
                        int n = await read.ConfigureAwait(false);
                        if (n == 0 || frozen.IsCompleted)
                        {
                            return;
                        }
                        await to.WriteAsync(buf, 0, n).ConfigureAwait(false);
                    }
                }
                catch (Exception)
                {
                }
            }
        }

        private static void Silent(IPEndPoint server)
        {
            FreezingProxy proxy = new FreezingProxy(server);
            WebRTCP2POptions o = new WebRTCP2POptions();
            o.QuicAllowed = false;
            o.WebSocketUri = new Uri("ws://127.0.0.1:" + proxy.Port + "/ws");
            o.DisplayName = "silent-check";
            Check(o.ServerTimeout == TimeSpan.FromSeconds(10), "the default ServerTimeout is 10 s");
            using (WebRTCP2PService s = new WebRTCP2PService(o))
            {
                Stopwatch sw = Stopwatch.StartNew();
                long reconnectingAt = -1;
                long reconnectedAt = -1;
                string reconnectedId = null;
                Exception why = null;
                s.Reconnecting += e => { why = e; Interlocked.CompareExchange(ref reconnectingAt, sw.ElapsedMilliseconds, -1); return Task.FromResult(0); };
                s.Reconnected += rid => { reconnectedId = rid; Interlocked.CompareExchange(ref reconnectedAt, sw.ElapsedMilliseconds, -1); return Task.FromResult(0); };
                Check(s.StartAsync().Wait(10000), "started through the proxy");
                SessionInfo session = s.CreateSessionAsync().Result;
                uint id = s.PeerId;
                // Healthy for a while (pings answered): no false alarm.
                Thread.Sleep(6000);
                Check(Interlocked.Read(ref reconnectingAt) < 0, "no Reconnecting while the server answers");
                long frozenAt = sw.ElapsedMilliseconds;
                proxy.Freeze();
                for (int i = 0; i < 200 && Interlocked.Read(ref reconnectingAt) < 0; i++)
                {
                    Thread.Sleep(100);
                }
                Check(Interlocked.Read(ref reconnectingAt) > 0, "Reconnecting fired");
                long took = Interlocked.Read(ref reconnectingAt) - frozenAt;
                Console.WriteLine("     figure: proxy frozen -> Reconnecting after " + took + " ms (" + why.Message + ")");
                Check(took <= 3500, "by the liveness rule: at most 500 ms to the next Ping plus the live timeout (1.5 s on loopback, 3 s at most before a sample), not ServerTimeout's 10 s (took " + took + " ms)");
                for (int i = 0; i < 150 && Interlocked.Read(ref reconnectedAt) < 0; i++)
                {
                    Thread.Sleep(100);
                }
                Check(Interlocked.Read(ref reconnectedAt) > 0, "Reconnected through a fresh proxied connection");
                Check(reconnectedId == id.ToString(), "Reconnected names the same connection id (" + reconnectedId + ")");
                Check(s.PeerId == id && s.Session != null && s.Session.Code == session.Code, "same peer id and session after the resume");
                Check(proxy.Accepted >= 2, "a second connection was made");
            }
        }

        private static void SilentSetAfterBuild(IPEndPoint server)
        {
            FreezingProxy proxy = new FreezingProxy(server);
            HubConnection c = new HubConnectionBuilder()
                .WithUrl("ws://127.0.0.1:" + proxy.Port + "/ws", (WebRTCP2POptions o) =>
                {
                    o.QuicAllowed = false;
                    o.DisplayName = "silent-set";
                    // ServerTimeout's own rule, as SignalR has it: the liveness rule (faster) off.
                    o.AdaptiveLiveness = false;
                    o.PingInterval = TimeSpan.FromSeconds(5);
                })
                .WithAutomaticReconnect()
                .Build();
            // As a SignalR app does: the property, after Build (the builder left the 10 s default).
            c.ServerTimeout = TimeSpan.FromSeconds(3);
            try
            {
                Stopwatch sw = Stopwatch.StartNew();
                long reconnectingAt = -1;
                c.Reconnecting += e => { Interlocked.CompareExchange(ref reconnectingAt, sw.ElapsedMilliseconds, -1); return Task.FromResult(0); };
                Check(c.StartAsync().Wait(10000), "started through the proxy");
                // Pings now go every 1.5 s (half of 3 s) and are answered: no false alarm.
                Thread.Sleep(5000);
                Check(Interlocked.Read(ref reconnectingAt) < 0, "no Reconnecting while the server answers (pings at least every 1.5 s)");
                long frozenAt = sw.ElapsedMilliseconds;
                proxy.Freeze();
                for (int i = 0; i < 150 && Interlocked.Read(ref reconnectingAt) < 0; i++)
                {
                    Thread.Sleep(100);
                }
                Check(Interlocked.Read(ref reconnectingAt) > 0, "Reconnecting fired");
                long took = Interlocked.Read(ref reconnectingAt) - frozenAt;
                Console.WriteLine("     figure: ServerTimeout 3 s set after Build: proxy frozen -> Reconnecting after " + took + " ms");
                Check(took <= 3000 + 1000, "within the 3 s set after Build (plus 1 s for the timer and the last pong's age), not the 10 s default");
            }
            finally
            {
                c.DisposeAsync().AsTask().Wait(5000);
            }
        }
    }
}
