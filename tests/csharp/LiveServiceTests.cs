// Live test of WebRTCP2PService itself over the WebSocket transport against the
// real server: two services in one session exchange hub messages (SendAsync and
// InvokeAsync to the host) and flight data through the relay.
// Usage: mono live-service-tests.exe ws://HOST:PORT/ws. Last line: "N passed, N failed".

using System;
using System.Threading;
using System.Threading.Tasks;
using FlightSimP2P.Client;

namespace FlightSimP2P.Tests
{
    internal static class LiveServiceTests
    {
        private static int Main(string[] args)
        {
            int passed = 0;
            int failed = 0;
            try
            {
                Run(new Uri(args[0]));
                passed++;
                Console.WriteLine("ok   two services: hub messages, InvokeAsync to the host, relay flight data");
            }
            catch (Exception e)
            {
                failed++;
                Console.WriteLine("FAIL two services: " + e);
            }
            Console.WriteLine(passed + " passed, " + failed + " failed");
            return failed == 0 ? 0 : 1;
        }

        private static WebRTCP2PService Make(Uri ws, string name)
        {
            return new HubConnectionBuilder()
                .WithUrl(ws.ToString(), o => { o.DisplayName = name; o.QuicAllowed = false; })
                .WithAutomaticReconnect()
                .Build();
        }

        private static void Check(bool ok, string what)
        {
            if (!ok)
            {
                throw new Exception("check failed: " + what);
            }
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
