// Drives two instances of the SignalR-style app (ChatClient + ChatHub) against the real
// server: `host URL` creates a session and prints `session CODE`; `guest URL CODE` joins
// it. tests/csharp/live.sh runs both. The composition root is the one place that says
// what has no SignalR counterpart: MapHub (the hub runs on the session host) and the
// session code (here taken from the host's output, in the app from its UI).
// Prints `ok`/`FAIL` lines and `N passed, N failed` last.
//
// C# 7.2 (mono).

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using System.Threading.Tasks;
using FlightSimP2P.Client;
using static FlightSimP2P.Tests.TestKit;

namespace SimChat
{
    public static class Program
    {

        public static int Main(string[] args)
        {
            Prefix = "signalr-app ";
            if (args.Length < 2 || (args[0] != "host" && args[0] != "guest") || (args[0] == "guest" && args.Length < 3))
            {
                Console.Error.WriteLine("usage: signalr-app.exe host http://HOST:PORT | guest http://HOST:PORT CODE");
                return 2;
            }
            try
            {
                if (args[0] == "host")
                {
                    Host(args[1]).GetAwaiter().GetResult();
                }
                else
                {
                    Guest(args[1], args[2]).GetAwaiter().GetResult();
                }
            }
            catch (Exception e)
            {
                Check(false, args[0] + " threw " + e);
            }
            return Summary();
        }

        private static void CheckShape(ChatClient chat, string role)
        {
            Check(chat.State == HubConnectionState.Connected, role + ": Connected after StartAsync");
            Check(!string.IsNullOrEmpty(chat.ConnectionId), role + ": ConnectionId " + chat.ConnectionId);
            Check(chat.TokenRequests >= 1, role + ": AccessTokenProvider called on connect (" + chat.TokenRequests + ")");
            Check(chat.ServerTimeout == TimeSpan.FromSeconds(20) && chat.KeepAliveInterval == TimeSpan.FromSeconds(5) && chat.HandshakeTimeout == TimeSpan.FromSeconds(12),
                role + ": ServerTimeout/KeepAliveInterval/HandshakeTimeout as set");
        }

        private static async Task Host(string baseUrl)
        {
            ChatClient chat = new ChatClient(baseUrl.TrimEnd('/') + "/hubs/chat?session=new", "host", "host-token");
            chat.Connection.MapHub<ChatHub>();
            using (CancellationTokenSource cts = new CancellationTokenSource(15000))
            {
                await chat.StartAsync(cts.Token);
            }
            CheckShape(chat, "host");
            Check(chat.Connection.IsHost, "host: is the session host");
            Console.WriteLine("session " + chat.Connection.Session.Code);
            Console.Out.Flush();

            Check(WaitFor(() => chat.Messages().Exists(m => m.StartsWith("hub: joined: ", StringComparison.Ordinal)), 30000), "host: the hub's OnConnectedAsync told the others (Clients.Others) that the guest joined");
            // The guest's SendAsync("SendMessage") ran on this host's ChatHub: Clients.All includes the host.
            Check(WaitFor(() => chat.Messages().Contains("guest: hello from guest"), 30000), "host: got the guest's message through its own hub (Clients.All)");
            await chat.SendMessageAsync("hello from host");
            Check(WaitFor(() => chat.Messages().Contains("host: hello from host"), 5000), "host: its own SendAsync to the hub came back (Clients.All, local)");
            Check(WaitFor(() => chat.Positions().Contains("1.5,2.5"), 10000), "host: got the guest's position (Clients.Others, untyped On)");
            Check(WaitFor(() => chat.Messages().Contains("guest: bye"), 30000), "host: got the guest's bye");
            Check(!chat.Messages().Exists(m => m.Contains("only you")), "host: did not get the guest's whisper (Clients.Caller)");
            await chat.DisposeAsync();
            Check(chat.State == HubConnectionState.Disconnected, "host: Disconnected after DisposeAsync");
        }

        private static async Task Guest(string baseUrl, string code)
        {
            ChatClient chat = new ChatClient(baseUrl.TrimEnd('/') + "/hubs/chat?session=" + Uri.EscapeDataString(code), "guest", "guest-token");
            chat.Connection.MapHub<ChatHub>();
            using (CancellationTokenSource cts = new CancellationTokenSource(15000))
            {
                await chat.StartAsync(cts.Token);
            }
            CheckShape(chat, "guest");
            Check(!chat.Connection.IsHost, "guest: is not the host");

            await chat.SendMessageAsync("hello from guest");
            Check(WaitFor(() => chat.Messages().Contains("guest: hello from guest"), 10000), "guest: its SendAsync came back through the host's hub (Clients.All)");
            int sum = await chat.AddAsync(20, 22);
            Check(sum == 42, "guest: InvokeAsync<int>(\"Add\", 20, 22) on the host's hub = " + sum);
            int square = await chat.SquareAsync(7);
            Check(square == 49, "guest: InvokeCoreAsync<int>(\"Square\", 7) answered by the host's On<int, int> = " + square);
            string missing = await chat.CallMissingAsync();
            Check(missing.StartsWith("HubException", StringComparison.Ordinal), "guest: a missing hub method is a HubException (" + missing + ")");
            await chat.WhisperAsync("psst");
            Check(WaitFor(() => chat.Messages().Contains("hub: only you: psst"), 10000), "guest: the hub's Clients.Caller reached the caller");
            await chat.SendPositionAsync(1.5, 2.5);
            Check(WaitFor(() => chat.Messages().Contains("host: hello from host"), 30000), "guest: got the host's message through the hub");
            Check(chat.Positions().Count == 0, "guest: Clients.Others did not send its own position back");
            Check(!chat.Messages().Exists(m => m.StartsWith("hub: joined: ", StringComparison.Ordinal)), "guest: not told of its own join (Clients.Others from OnConnectedAsync)");
            await chat.SendMessageAsync("bye");
            Check(WaitFor(() => chat.Messages().Contains("guest: bye"), 10000), "guest: bye came back");
            await chat.DisposeAsync();
        }
    }
}
