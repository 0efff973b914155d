// Live test, C# half of "a C# service and a Chromium page share a session":
// a WebRTCP2PService over the WebSocket transport hosts a session that a headless
// Chromium page running client/web/fsp2p.js joins. tests/csharp/browser_peer.mjs
// starts this program, reads the session code from its stdout and drives the page.
//
// Both ways: a hub message (reliable, Signal.App), flight data (relay: the page is
// forced to the relay, and mono has no SIPSorcery), and the page's hub invocation
// answered by this host. Flight data is resent every 50 ms until the other side
// confirms it with a hub message, so a lost datagram only costs time.
//
// Usage: mono live-browser-tests.exe ws://HOST:PORT/ws
// stdout: "session CODE PEERID" once the session exists, then one ok/FAIL line per
// check and "N passed, N failed" last. Exit status 0 only if every check passed.

using System;
using System.Threading;
using System.Threading.Tasks;
using FlightSimP2P.Client;
using FlightSimP2P.Protocol;
using static FlightSimP2P.Tests.TestKit;

namespace FlightSimP2P.Tests
{
    internal static class LiveBrowserTests
    {
        /// <summary>Generous: a busy 2-core machine also runs Chromium. Waits end as soon as the condition holds.</summary>
        private const int WaitMs = 60000;
        private const byte FromCSharp = 0xCC;
        private const byte FromPage = 0xEE;

        private static bool Wait(Task t)
        {
            try
            {
                return t.Wait(WaitMs);
            }
            catch (AggregateException)
            {
                return false;
            }
        }

        private static int Main(string[] args)
        {
            Prefix = "C# host: ";
            try
            {
                Run(new Uri(args[0]));
            }
            catch (Exception e)
            {
                Check(false, "unexpected exception", e.ToString());
            }
            return Summary();
        }

        private static void Run(Uri ws)
        {
            WebRTCP2PService host = new HubConnectionBuilder()
                .WithUrl(ws.ToString(), o => { o.DisplayName = "csharp"; o.QuicAllowed = false; })
                .WithAutomaticReconnect()
                .Build();
            using (host)
            {
                TaskCompletionSource<uint> joined = new TaskCompletionSource<uint>();
                TaskCompletionSource<string> chat = new TaskCompletionSource<string>();
                TaskCompletionSource<byte[]> flight = new TaskCompletionSource<byte[]>();
                TaskCompletionSource<bool> confirmed = new TaskCompletionSource<bool>();
                TaskCompletionSource<bool> done = new TaskCompletionSource<bool>();
                string flightPathSeen = null;

                host.PeerJoined += (id, name) =>
                {
                    if (name == "chromium")
                    {
                        joined.TrySetResult(id);
                    }
                };
                // The page's hub message and its invocation of a hub method on the host (this service).
                host.On<string, int>("Chat", (text, n) => chat.TrySetResult(text + "|" + n));
                host.Handle<int, int, int>("Add", (a, b) => a + b);
                host.On("GotFlight", () => confirmed.TrySetResult(true));
                host.On("Done", () => done.TrySetResult(true));
                host.FlightDataReceived += (from, data, path) =>
                {
                    if (data.Length == 3 && data[0] == FromPage && !flight.Task.IsCompleted)
                    {
                        flightPathSeen = path.ToString();
                        if (path == FlightPath.Relay && flight.TrySetResult(data))
                        {
                            // Reliable confirmation: the page stops resending.
                            host.SendAsync("GotFlight");
                        }
                    }
                };

                bool started = Wait(host.StartAsync());
                Check(started && host.State == HubConnectionState.Connected, "connected over the WebSocket", "state " + host.State);
                if (!started)
                {
                    return;
                }
                Task<SessionInfo> created = host.CreateSessionAsync();
                if (!Wait(created))
                {
                    Check(false, "session created", created.Exception != null ? created.Exception.InnerException.Message : "timeout");
                    return;
                }
                Console.WriteLine("session " + created.Result.Code + " " + host.PeerId);
                Console.Out.Flush();

                if (!Wait(joined.Task))
                {
                    Check(false, "the Chromium page joined", "no PeerJoined within " + WaitMs + " ms");
                    return;
                }
                uint page = joined.Task.Result;
                PeerInfo info = null;
                SessionInfo session = host.Session;
                if (session != null)
                {
                    info = session.Peers.Find(p => p.Id == page);
                }
                Check(info != null && info.Client == ClientKind.Browser, "the Chromium page joined as a Browser client",
                    info == null ? "not in the session's peers" : "client " + info.Client);

                host.SendAsync("Chat", "from C#", 1).Wait(WaitMs);
                // Flight data until the page confirms it (single datagrams can be lost).
                long deadline = Environment.TickCount + WaitMs;
                int seq = 0;
                while (!confirmed.Task.IsCompleted && Environment.TickCount - deadline < 0)
                {
                    host.SendFlightData(page, new byte[] { FromCSharp, 0x5A, (byte)seq++ });
                    confirmed.Task.Wait(50);
                }
                Check(confirmed.Task.IsCompleted, "the page confirmed the C# flight data", seq + " snapshots sent");

                Check(Wait(chat.Task) && chat.Task.Result == "from chromium|2", "the page's hub message arrived",
                    chat.Task.IsCompleted ? chat.Task.Result : "none");
                bool gotFlight = Wait(flight.Task);
                Check(gotFlight && flight.Task.Result[1] == 0x42, "the page's flight data arrived through the relay",
                    gotFlight ? null : "path seen: " + (flightPathSeen ?? "none"));
                Check(Wait(done.Task), "the page finished its checks", null);
                host.StopAsync().Wait(5000);
            }
        }
    }
}
