// Live test of access tokens (PROTOCOL.md section 13) with the C# service against the
// real server started with --auth: SignalR's AccessTokenProvider is asked on every
// connect, its token opens the server, a service without one is refused with
// token_required, and a token that runs out in session is replaced by a fresh one on
// the resume (same peer id, same session). Tokens come from the server binary's own
// `token` subcommand, as a game's backend would mint them.
// Usage: mono live-access-tests.exe ws://HOST:PORT/ws BIN KEY AUDIENCE.
// Last line: "N passed, N failed".

using System;
using System.Diagnostics;
using System.Threading;
using System.Threading.Tasks;
using FlightSimP2P.Client;
using FlightSimP2P.Protocol;
using static FlightSimP2P.Tests.TestKit;

namespace FlightSimP2P.Tests
{
    internal static class LiveAccessTests
    {
        private static string _bin;
        private static string _key;
        private static string _aud;

        private static int Main(string[] args)
        {
            Uri ws = new Uri(args[0]);
            _bin = args[1];
            _key = args[2];
            _aud = args[3];
            Test("access: AccessTokenProvider's tokens let a host and a guest in (asked once per connect); none is token_required", () => Join(ws));
            Test("access: a token that runs out in session is replaced on the resume: same peer id, same session", () => Refresh(ws));
            Test("access: TokenInHello puts the token in a version-2 Hello (the QUIC path has no URL)", TokenInHelloRewrites);
            return Summary();
        }

        /// <summary>A token from `flightsim-p2p token`, as a backend would mint it.</summary>
        private static string Mint(string sub, string ttl)
        {
            ProcessStartInfo p = new ProcessStartInfo(_bin, "token --key " + _key + " --aud " + _aud + " --sub " + sub + " --ttl " + ttl);
            p.RedirectStandardOutput = true;
            p.UseShellExecute = false;
            using (Process proc = Process.Start(p))
            {
                string t = proc.StandardOutput.ReadToEnd().Trim();
                proc.WaitForExit();
                if (proc.ExitCode != 0 || t.Length == 0)
                {
                    throw new Exception("token minting failed (exit " + proc.ExitCode + ")");
                }
                return t;
            }
        }

        private static WebRTCP2PService Service(Uri ws, string sub, string ttl, Func<int> count, Action counted)
        {
            return new HubConnectionBuilder()
                .WithUrl(ws.ToString(), (HttpConnectionOptions o) =>
                {
                    if (sub != null)
                    {
                        o.AccessTokenProvider = () =>
                        {
                            counted();
                            return Task.FromResult(Mint(sub, ttl));
                        };
                    }
                })
                .WithAutomaticReconnect()
                .Build();
        }

        private static void Join(Uri ws)
        {
            int hostCalls = 0;
            int guestCalls = 0;
            using (WebRTCP2PService host = Service(ws, "cs-host", "10m", () => hostCalls, () => Interlocked.Increment(ref hostCalls)))
            using (WebRTCP2PService guest = Service(ws, "cs-guest", "10m", () => guestCalls, () => Interlocked.Increment(ref guestCalls)))
            {
                Task<SessionInfo> created = host.StartAndCreateSessionAsync(4);
                Check(created.Wait(15000) && created.Result.Host == host.PeerId, "the host created a session with its token");
                Task<SessionInfo> joined = guest.StartAndJoinSessionAsync(created.Result.Code);
                Check(joined.Wait(15000) && joined.Result.Peers.Count == 2, "the guest joined with its token");
                Check(Volatile.Read(ref hostCalls) == 1 && Volatile.Read(ref guestCalls) == 1,
                    "the provider was asked once per connect: host " + hostCalls + ", guest " + guestCalls);
                guest.StopAsync().Wait(5000);
                host.StopAsync().Wait(5000);
            }
            using (WebRTCP2PService none = Service(ws, null, null, () => 0, () => { }))
            {
                ServerException error = null;
                Exception other = null;
                try
                {
                    none.StartAsync().Wait(15000);
                }
                catch (AggregateException e)
                {
                    error = e.InnerException as ServerException;
                    other = e.InnerException;
                }
                Check(error != null && error.Code == (ushort)ErrorCode.TokenRequired,
                    "without a token: token_required, got " + (other != null ? other.GetType().Name + ": " + other.Message : "no exception"));
                Check(none.State == HubConnectionState.Disconnected, "and the service is disconnected: " + none.State);
            }
        }

        private static void Refresh(Uri ws)
        {
            // The server runs with --auth-leeway-secs 0 --auth-warn-secs 1: a 4 s token is
            // warned about at 3 s and cut at 4 s; the resume asks the provider again.
            int calls = 0;
            using (WebRTCP2PService host = Service(ws, "cs-refresh", "4s", () => calls, () => Interlocked.Increment(ref calls)))
            {
                Task<SessionInfo> created = host.StartAndCreateSessionAsync(4);
                Check(created.Wait(15000), "created");
                uint id = host.PeerId;
                string code = created.Result.Code;
                bool refreshed = WaitFor(() => Volatile.Read(ref calls) >= 2 && host.State == HubConnectionState.Connected, 15000);
                Check(refreshed, "a fresh token was asked for and the service is connected: calls " + calls + ", state " + host.State);
                Check(host.PeerId == id, "same peer id after the refresh: " + id + " then " + host.PeerId);
                Check(host.Session != null && host.Session.Code == code, "still in its session");
                host.StopAsync().Wait(5000);
            }
        }

        private sealed class Recording : ISignalingTransport
        {
            public ClientMsg Last;
            public Action<uint, byte[]> RelayReceived { set { } }
            public ushort CloseCode { get { return CloseVerdict.NoCode; } }
            public Task SendAsync(ClientMsg message, CancellationToken cancellationToken) { Last = message; return Task.FromResult(0); }
            public bool TrySendRelay(uint to, byte[] payload) { return true; }
            public Task<ServerMsg> ReceiveAsync(CancellationToken cancellationToken) { return Task.FromResult<ServerMsg>(null); }
            public Task CloseAsync(bool leave) { return Task.FromResult(0); }
        }

        private static void TokenInHelloRewrites()
        {
            Recording r = new Recording();
            TokenInHello t = new TokenInHello(r, "tok.en.x");
            ClientMsg.Hello h = new ClientMsg.Hello();
            h.Version = 1;
            t.SendAsync(h, CancellationToken.None).Wait();
            ClientMsg.Hello sent = r.Last as ClientMsg.Hello;
            Check(sent != null && sent.Version == 2 && sent.AccessToken == "tok.en.x", "version 2 with the token");
            byte[] body = sent.Encode();
            ClientMsg back = ClientMsg.Decode(body);
            ClientMsg.Hello decoded = back as ClientMsg.Hello;
            Check(decoded != null && decoded.AccessToken == "tok.en.x", "and it survives the wire");
            t.SendAsync(new ClientMsg.Ping(7), CancellationToken.None).Wait();
            Check(r.Last is ClientMsg.Ping, "other messages pass untouched");
        }
    }
}
