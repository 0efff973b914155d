// Live test of WebRTCP2PService itself over the WebSocket transport against the
// real server: two services in one session exchange hub messages (SendAsync and
// InvokeAsync to the host) and flight data through the relay. Then the first
// request in the URL (PROTOCOL.md section 3): a counting transport shows that a
// service gets its Welcome, creates or joins a session, and resumes after a cut
// without having sent a single message.
// Usage: mono live-service-tests.exe ws://HOST:PORT/ws. Last line: "N passed, N failed".

using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using FlightSimP2P.Client;
using FlightSimP2P.Protocol;
using static FlightSimP2P.Tests.TestKit;

namespace FlightSimP2P.Tests
{
    internal static class LiveServiceTests
    {
        private static int Main(string[] args)
        {
            Uri ws = new Uri(args[0]);
            Test("two services: hub messages, InvokeAsync to the host, relay flight data", () => Run(ws));
            Test("first: Welcome over WebSocket without sending any message", () => WelcomeWithoutSending(ws));
            Test("first: StartAndCreate/StartAndJoinSessionAsync, nothing sent, the host hears the guest", () => CreateAndJoinInUrl(ws));
            Test("first: a wrong code in the URL fails the join with unknown_session, the connection stays", () => WrongCodeInUrl(ws));
            Test("first: a cut connection resumes with the token in the URL, same peer id and session", () => ResumeInUrl(ws));
            return Summary();
        }


        /// <summary>The real WebSocket transport, counting what the service sends on it.</summary>
        private sealed class CountingTransport : ISignalingTransport
        {
            private readonly ISignalingTransport _inner;
            public int Sent;
            /// <summary>Messages sent before the Welcome arrived; -1 until it does.</summary>
            public int SentBeforeWelcome = -1;

            public CountingTransport(ISignalingTransport inner)
            {
                _inner = inner;
            }

            public Action<uint, byte[]> RelayReceived { set { _inner.RelayReceived = value; } }

            public ushort CloseCode { get { return _inner.CloseCode; } }

            public Task SendAsync(ClientMsg message, CancellationToken cancellationToken)
            {
                // Quality reports (issue 25, telemetry) are not what "sent nothing" is about:
                // the Hello and the session request ride in the URL.
                if (!(message is ClientMsg.Report))
                {
                    Interlocked.Increment(ref Sent);
                }
                return _inner.SendAsync(message, cancellationToken);
            }

            public bool TrySendRelay(uint to, byte[] payload) { return _inner.TrySendRelay(to, payload); }

            public async Task<ServerMsg> ReceiveAsync(CancellationToken cancellationToken)
            {
                ServerMsg m = await _inner.ReceiveAsync(cancellationToken).ConfigureAwait(false);
                if (m is ServerMsg.Welcome && SentBeforeWelcome < 0)
                {
                    SentBeforeWelcome = Volatile.Read(ref Sent);
                }
                return m;
            }

            public Task CloseAsync(bool leave) { return _inner.CloseAsync(leave); }
        }

        private sealed class CountingFactory : ITransportFactory
        {
            private readonly ITransportFactory _inner;
            public readonly List<CountingTransport> Made = new List<CountingTransport>();
            public readonly List<string> Firsts = new List<string>();

            public CountingFactory(ITransportFactory inner)
            {
                _inner = inner;
            }

            public bool QuicSupported { get { return false; } }

            public async Task<ISignalingTransport> ConnectAsync(TransportKind kind, string first, CancellationToken cancellationToken)
            {
                ISignalingTransport t = await _inner.ConnectAsync(kind, first, cancellationToken).ConfigureAwait(false);
                CountingTransport c = new CountingTransport(t);
                lock (Made)
                {
                    Made.Add(c);
                    Firsts.Add(first);
                }
                return c;
            }

            public CountingTransport Last
            {
                get { lock (Made) { return Made[Made.Count - 1]; } }
            }
        }

        private static WebRTCP2PService Counted(Uri ws, string name, out CountingFactory factory)
        {
            CountingFactory f = null;
            WebRTCP2PService s = new HubConnectionBuilder()
                .WithUrl(ws.ToString(), o =>
                {
                    o.DisplayName = name;
                    o.QuicAllowed = false;
                    o.PingInterval = TimeSpan.Zero;
                    f = new CountingFactory(new DefaultTransportFactory(o));
                    o.TransportFactory = f;
                })
                .WithAutomaticReconnect()
                .Build();
            factory = f;
            return s;
        }

        private static void WelcomeWithoutSending(Uri ws)
        {
            CountingFactory f;
            using (WebRTCP2PService s = Counted(ws, "counted", out f))
            {
                Check(s.StartAsync().Wait(10000), "connected");
                Check(s.State == HubConnectionState.Connected && s.PeerId != 0, "Welcome gave a peer id");
                CountingTransport t = f.Last;
                Check(t.SentBeforeWelcome == 0, "sent before the Welcome: " + t.SentBeforeWelcome);
                Check(f.Firsts.Count == 1 && f.Firsts[0] != null, "the URL carried first");
                s.StopAsync().Wait(5000);
            }
            // The control: with FirstRequestInUrl off the Hello goes on the socket, and is counted.
            CountingFactory old = null;
            using (WebRTCP2PService s = new HubConnectionBuilder()
                .WithUrl(ws.ToString(), o =>
                {
                    o.QuicAllowed = false;
                    o.FirstRequestInUrl = false;
                    old = new CountingFactory(new DefaultTransportFactory(o));
                    o.TransportFactory = old;
                })
                .Build())
            {
                Check(s.StartAsync().Wait(10000), "connected the old way");
                Check(old.Last.SentBeforeWelcome == 1 && old.Firsts[0] == null, "the old way sends its Hello: " + old.Last.SentBeforeWelcome);
                s.StopAsync().Wait(5000);
            }
        }

        private static void CreateAndJoinInUrl(Uri ws)
        {
            CountingFactory hf;
            CountingFactory gf;
            using (WebRTCP2PService host = Counted(ws, "url-host", out hf))
            using (WebRTCP2PService guest = Counted(ws, "url-guest", out gf))
            {
                TaskCompletionSource<uint> heard = new TaskCompletionSource<uint>();
                host.PeerJoined += (id, name) => { if (name == "url-guest") heard.TrySetResult(id); };
                Task<SessionInfo> created = host.StartAndCreateSessionAsync(4);
                Check(created.Wait(10000) && created.Result.Host == host.PeerId, "created, I am the host");
                Check(Volatile.Read(ref hf.Last.Sent) == 0, "the host sent nothing: " + hf.Last.Sent);
                Task<SessionInfo> joined = guest.StartAndJoinSessionAsync(created.Result.Code);
                Check(joined.Wait(10000) && joined.Result.Host == host.PeerId && joined.Result.Peers.Count == 2, "joined the host's session");
                Check(Volatile.Read(ref gf.Last.Sent) == 0, "the guest sent nothing: " + gf.Last.Sent);
                Check(heard.Task.Wait(5000) && heard.Task.Result == guest.PeerId, "the host heard PeerJoined");
                Check(guest.Session != null && guest.Session.Code == created.Result.Code, "guest's session set");
                guest.StopAsync().Wait(5000);
                host.StopAsync().Wait(5000);
            }
        }

        private static void WrongCodeInUrl(Uri ws)
        {
            CountingFactory f;
            using (WebRTCP2PService s = Counted(ws, "wrong", out f))
            {
                Task<SessionInfo> joined = s.StartAndJoinSessionAsync("ZZZZZZ");
                ServerException error = null;
                try
                {
                    joined.Wait(10000);
                }
                catch (AggregateException e)
                {
                    error = e.InnerException as ServerException;
                }
                Check(error != null && error.Code == (ushort)ErrorCode.UnknownSession, "unknown_session: " + (error != null ? error.Message : "none"));
                Check(s.State == HubConnectionState.Connected && s.Session == null, "connected, in no session");
                Check(f.Last.Sent == 0, "nothing sent");
                s.StopAsync().Wait(5000);
            }
        }

        private static void ResumeInUrl(Uri ws)
        {
            CountingFactory hf;
            CountingFactory gf;
            using (WebRTCP2PService host = Counted(ws, "resume-host", out hf))
            using (WebRTCP2PService guest = Counted(ws, "resume-guest", out gf))
            {
                SessionInfo session = host.StartAndCreateSessionAsync().Result;
                guest.StartAndJoinSessionAsync(session.Code).Wait(10000);
                uint id = guest.PeerId;
                TaskCompletionSource<string> back = new TaskCompletionSource<string>();
                guest.Reconnected += s => { back.TrySetResult(s); return Task.FromResult(0); };
                CountingTransport first = gf.Last;
                // Cut it as a network would: close without leaving (4000), the seat is kept.
                first.CloseAsync(false).Wait(5000);
                Check(back.Task.Wait(10000), "Reconnected");
                Check(back.Task.Result == id.ToString() && guest.PeerId == id, "same peer id");
                CountingTransport second = gf.Last;
                Check(second != first && second.SentBeforeWelcome == 0, "the resume sent nothing before its Welcome");
                Check(gf.Firsts.Count == 2 && gf.Firsts[1] != gf.Firsts[0], "the resume's URL carried the token");
                Check(guest.Session != null && guest.Session.Code == session.Code, "session kept");
                guest.StopAsync().Wait(5000);
                host.StopAsync().Wait(5000);
            }
        }

        private static WebRTCP2PService Make(Uri ws, string name)
        {
            return new HubConnectionBuilder()
                .WithUrl(ws.ToString(), o => { o.DisplayName = name; o.QuicAllowed = false; })
                .WithAutomaticReconnect()
                .Build();
        }

        private static void Run(Uri ws)
        {
            using (WebRTCP2PService host = Make(ws, "host"))
            using (WebRTCP2PService guest = Make(ws, "guest"))
            {
                TaskCompletionSource<string> chat = new TaskCompletionSource<string>();
                TaskCompletionSource<int> flight = new TaskCompletionSource<int>();
                host.Handle<int, int, int>("Add", (a, b) => a + b);
                guest.On<string, int>("Chat", (text, n) => chat.TrySetResult(text + n));
                host.FlightDataReceived += (from, data, path) =>
                {
                    if (path == FlightPath.Relay && data.Length == 3)
                    {
                        flight.TrySetResult(data[2]);
                    }
                };
                Check(host.StartAsync().Wait(10000), "host connected");
                Check(host.State == HubConnectionState.Connected, "host state");
                var session = host.CreateSessionAsync().Result;
                Check(guest.StartAsync().Wait(10000), "guest connected");
                var joined = guest.JoinSessionAsync(session.Code.ToLowerInvariant()).Result;
                Check(joined.Host == host.PeerId, "guest sees the host");
                Thread.Sleep(200);
                host.SendAsync("Chat", "hello ", 42).Wait();
                Check(chat.Task.Wait(5000) && chat.Task.Result == "hello 42", "hub message arrived");
                Task<int> sum = guest.InvokeAsync<int>("Add", 20, 22);
                Check(sum.Wait(5000) && sum.Result == 42, "InvokeAsync answered by the host");
                for (int i = 0; i < 20 && !flight.Task.IsCompleted; i++)
                {
                    guest.SendFlightData(host.PeerId, new byte[] { 1, 2, (byte)i });
                    Thread.Sleep(50);
                }
                Check(flight.Task.Wait(5000), "flight data through the relay");
                guest.StopAsync().Wait(5000);
                host.StopAsync().Wait(5000);
            }
        }
    }
}
