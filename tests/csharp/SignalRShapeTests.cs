// The SignalR-shaped layer's pure decisions, without network or clock: the URL rule
// (http(s) hub URL -> WebSocket endpoint, ?session=), the access token in the URL on every
// connect and redirect, IRetryPolicy -> delays, which peers a hub's Clients.X reach, the
// builder's timeouts and single Build. Prints `N passed, N failed` last.
//
// C# 7.2 (mono).

using System;
using System.Collections.Generic;
using System.Net;
using System.Net.WebSockets;
using System.Threading;
using System.Threading.Tasks;
using FlightSimP2P.Client;
using FlightSimP2P.Protocol;
using static FlightSimP2P.Tests.TestKit;

namespace FlightSimP2P.Tests
{
    public static class SignalRShapeTests
    {

        public static int Main()
        {
            UrlRule();
            AccessToken();
            Retry();
            Audience();
            Builder();
            return Summary();
        }

        private static void UrlRule()
        {
            Eq("wss://sim.example.com/ws", ServerUrl.WebSocketFor(new Uri("https://sim.example.com/hubs/flight")).AbsoluteUri, "url: https hub URL -> wss://host/ws");
            Eq("ws://sim.example.com:8080/ws?region=eu", ServerUrl.WebSocketFor(new Uri("http://sim.example.com:8080/hubs/flight?region=eu")).AbsoluteUri, "url: http with port and query keeps both");
            Eq("wss://sim.example.com/game/ws", ServerUrl.WebSocketFor(new Uri("https://sim.example.com/game/ws/")).AbsoluteUri, "url: a path ending in /ws is kept (proxy prefix)");
            Eq("ws://h:9000/ws", ServerUrl.WebSocketFor(new Uri("ws://h:9000/ws")).AbsoluteUri, "url: ws:// as given");
            Eq("ws://h/ws?a=1", ServerUrl.WebSocketFor(new Uri("http://h/hubs/x?session=new&a=1")).AbsoluteUri, "url: session= is taken out of the server's URL");
            Eq("new", ServerUrl.SessionOf(new Uri("http://h/hubs/x?a=1&session=new")), "url: ?session=new");
            Eq("7KQ 2MX", ServerUrl.SessionOf(new Uri("http://h/hubs/x?session=7KQ%202MX")), "url: ?session=CODE unescaped");
            Eq(null, ServerUrl.SessionOf(new Uri("http://h/hubs/x?sessions=1")), "url: no session parameter");
            WebRTCP2POptions o = new WebRTCP2POptions();
            ServerUrl.Apply(new Uri("quic://q.example.com:5000"), o);
            Check(o.ServerHost == "q.example.com" && o.QuicPort == 5000 && o.WebSocketUri == null, "url: quic://host:port sets the QUIC endpoint");
            o = new WebRTCP2POptions();
            ServerUrl.Apply(new Uri("https://s.example.com/hubs/flight"), o);
            Check(o.ServerHost == "s.example.com" && o.EffectiveWebSocketUri.AbsoluteUri == "wss://s.example.com/ws" && o.QuicPort == 4433, "url: https sets host, WebSocket endpoint, QUIC on 4433");
            bool threw = false;
            try
            {
                ServerUrl.Apply(new Uri("ftp://h/x"), new WebRTCP2POptions());
            }
            catch (ArgumentException)
            {
                threw = true;
            }
            Check(threw, "url: ftp:// is refused");
            Eq("ws://h/ws?access_token=a%20b%26c%3D", ServerUrl.WithAccessToken(new Uri("ws://h/ws"), "a b&c=").AbsoluteUri, "token: escaped into access_token");
            Eq("ws://h/ws?x=1&access_token=t", ServerUrl.WithAccessToken(new Uri("ws://h/ws?x=1"), "t").AbsoluteUri, "token: added to an existing query");
            Eq("ws://h/ws", ServerUrl.WithAccessToken(new Uri("ws://h/ws"), null).AbsoluteUri, "token: none, URL unchanged");
        }

        private sealed class Attempt
        {
            public TransportKind Kind;
            public ServerEndpoint Server;
            public string First;
        }

        /// <summary>Records what it is asked to connect to; never connects.</summary>
        private sealed class RecordingFactory : IClusterTransportFactory
        {
            public readonly List<Attempt> Attempts = new List<Attempt>();

            public bool QuicSupported
            {
                get { return true; }
            }

            public Task<ISignalingTransport> ConnectAsync(TransportKind kind, string first, CancellationToken cancellationToken)
            {
                return ConnectAsync(kind, null, first, cancellationToken);
            }

            public int Configured;

            public Task<ISignalingTransport> ConnectAsync(TransportKind kind, ServerEndpoint server, string first, CancellationToken cancellationToken)
            {
                // What WebSocketTransport does with a new ClientWebSocket.
                WebSocketHook.Apply(new ClientWebSocket().Options);
                Attempts.Add(new Attempt { Kind = kind, Server = server, First = first });
                return Task.FromResult<ISignalingTransport>(null);
            }
        }

        private static void AccessToken()
        {
            WebRTCP2POptions o = new WebRTCP2POptions();
            ServerUrl.Apply(new Uri("https://s.example.com/hubs/flight"), o);
            o.CertificateSha256 = "aa";
            RecordingFactory inner = new RecordingFactory();
            int calls = 0;
            AccessTokenTransportFactory f = new AccessTokenTransportFactory(() => Task.FromResult("tok" + (++calls)), w => inner.Configured++, inner, o);
            f.ConnectAsync(TransportKind.WebSocket, "FIRST", CancellationToken.None).Wait();
            f.ConnectAsync(TransportKind.WebSocket, "FIRST2", CancellationToken.None).Wait();
            ServerEndpoint node = new ServerEndpoint(null, 4433, new Uri("wss://node-b.example.com/ws"));
            node.FromRedirect = true;
            node.Name = "b";
            f.ConnectAsync(TransportKind.WebSocket, node, null, CancellationToken.None).Wait();
            f.ConnectAsync(TransportKind.Quic, null, CancellationToken.None).Wait();
            Eq(4, calls, "token: the provider is called on every connect (2 connects, a redirect, QUIC)");
            Eq(4, inner.Attempts.Count, "token: every connect reaches the transport");
            Attempt a0 = inner.Attempts[0];
            Check(a0.Server != null && a0.Server.WebSocketUri.AbsoluteUri == "wss://s.example.com/ws?access_token=tok1" && a0.First == "FIRST" && !a0.Server.FromRedirect && a0.Server.CertSha256 == null,
                "token: first connect: the server's URL with access_token=tok1, first kept, trust unchanged");
            Check(o.For(a0.Server).CertificateSha256 == "aa", "token: the pinned certificate still applies to the URL with the token");
            Check(inner.Attempts[1].Server.WebSocketUri.Query.Contains("access_token=tok2"), "token: a reconnect asks again and sends the new token");
            Attempt a2 = inner.Attempts[2];
            Check(a2.Server.WebSocketUri.AbsoluteUri == "wss://node-b.example.com/ws?access_token=tok3" && a2.Server.FromRedirect && a2.Server.Name == "b",
                "token: a redirect goes to the named node with the token, still a redirect (its own trust)");
            Check(inner.Attempts[3].Kind == TransportKind.Quic && inner.Attempts[3].Server == null, "token: QUIC connects as before (no URL for the token)");
            Eq(4, inner.Configured, "http options: every connect's new socket gets the connection's WebSocket configuration");
            int before = inner.Configured;
            WebSocketHook.Apply(new ClientWebSocket().Options);
            Eq(before, inner.Configured, "http options: outside a connect no socket gets it (scoped to the call)");
        }

        private sealed class Backoff : IRetryPolicy
        {
            public readonly List<string> Seen = new List<string>();

            public TimeSpan? NextRetryDelay(RetryContext c)
            {
                Seen.Add(c.PreviousRetryCount + "@" + (long)c.ElapsedTime.TotalMilliseconds);
                return c.ElapsedTime >= TimeSpan.FromSeconds(3) ? (TimeSpan?)null : TimeSpan.FromMilliseconds(500 * (1 << (int)c.PreviousRetryCount));
            }
        }

        private sealed class Forever : IRetryPolicy
        {
            public TimeSpan? NextRetryDelay(RetryContext c)
            {
                return TimeSpan.FromSeconds(1);
            }
        }

        private static void Retry()
        {
            Backoff b = new Backoff();
            TimeSpan[] d = RetrySchedule.From(b);
            Eq("500,1000,2000", string.Join(",", Array.ConvertAll(d, x => ((long)x.TotalMilliseconds).ToString())), "retry: IRetryPolicy's delays until it says null");
            Eq("0@0,1@500,2@1500,3@3500", string.Join(",", b.Seen.ToArray()), "retry: PreviousRetryCount and ElapsedTime as the delays add up");
            Eq(RetrySchedule.MaxRetries, RetrySchedule.From(new Forever()).Length, "retry: a policy that never stops is cut at MaxRetries");
        }

        private static string Resolve(string kind, uint me, uint caller, uint target, uint[] excluded)
        {
            bool local;
            List<uint> to = HubAudience.Resolve(kind, me, caller, target, new HashSet<uint>(excluded ?? new uint[0]), new uint[] { 1, 2, 3 }, out local);
            List<string> s = new List<string>();
            foreach (uint p in to)
            {
                s.Add(p == WebRTCP2PService.AllPeers ? "others-of-me" : p.ToString());
            }
            return string.Join(",", s.ToArray()) + (local ? "+me" : "");
        }

        private static void Audience()
        {
            // Host 1; session peers 1, 2, 3.
            Eq("others-of-me+me", Resolve("all", 1, 2, 0, null), "hub: Clients.All = every other peer and the host itself");
            Eq("3+me", Resolve("others", 1, 2, 0, null), "hub: Clients.Others from peer 2 = peer 3 and the host, not 2");
            Eq("others-of-me", Resolve("others", 1, 1, 0, null), "hub: Clients.Others from the host = the others, not the host");
            Eq("2", Resolve("caller", 1, 2, 0, null), "hub: Clients.Caller from peer 2 = 2");
            Eq("+me", Resolve("caller", 1, 1, 0, null), "hub: Clients.Caller from the host = the host's own handlers");
            Eq("3", Resolve("client", 1, 2, 3, null), "hub: Clients.Client(\"3\") = 3");
            Eq("3", Resolve("except", 1, 2, 0, new uint[] { 1, 2 }), "hub: Clients.AllExcept(1, 2) = 3 (not the host)");
        }

        private static void Builder()
        {
            HubConnectionBuilder builder = new HubConnectionBuilder()
                .WithUrl("http://127.0.0.1:9/hubs/flight", o => { o.AccessTokenProvider = () => Task.FromResult("t"); o.Headers["X-A"] = "1"; })
                .WithServerTimeout(TimeSpan.FromSeconds(7))
                .WithKeepAliveInterval(TimeSpan.FromSeconds(3));
            HubConnection c = builder.Build();
            try
            {
                Eq(TimeSpan.FromSeconds(7), c.ServerTimeout, "builder: WithServerTimeout reaches HubConnection.ServerTimeout");
                Eq(TimeSpan.FromSeconds(3), c.KeepAliveInterval, "builder: WithKeepAliveInterval reaches HubConnection.KeepAliveInterval");
                Eq(HubConnection.DefaultHandshakeTimeout, c.HandshakeTimeout, "builder: HandshakeTimeout defaults to 15 s");
                c.HandshakeTimeout = TimeSpan.FromSeconds(4);
                Eq(TimeSpan.FromSeconds(4), c.HandshakeTimeout, "connection: HandshakeTimeout is settable");
                Eq(HubConnectionState.Disconnected, c.State, "connection: Disconnected before StartAsync");
                bool threw = false;
                try
                {
                    builder.Build();
                }
                catch (InvalidOperationException)
                {
                    threw = true;
                }
                Check(threw, "builder: a second Build throws, as SignalR's");
            }
            finally
            {
                bool released = false;
                c.Disposed += () => released = true;
                // `await using` calls IAsyncDisposable.DisposeAsync: HubConnection's own, which also
                // releases what the builder attached (ConfigureLogging's providers).
                ValueTask done = ((IAsyncDisposable)c).DisposeAsync();
                done.AsTask().Wait(5000);
                Check(released, "connection: IAsyncDisposable.DisposeAsync (await using) is HubConnection's, releasing what Build attached");
            }
            HttpConnectionOptions http = new HttpConnectionOptions();
            IWebProxy proxy = new WebProxy("http://proxy.example.com:3128");
            bool configured = false;
            http.Proxy = proxy;
            http.Credentials = new NetworkCredential("u", "p");
            http.WebSocketConfiguration = w => configured = true;
            http.Headers["X-Sim"] = "1";
            ClientWebSocketOptions wso = new ClientWebSocket().Options;
            http.Configure(wso);
            Check(wso.Proxy == proxy && wso.Credentials != null && configured, "http options: proxy, credentials and WebSocketConfiguration reach the WebSocket's options");
        }
    }
}
