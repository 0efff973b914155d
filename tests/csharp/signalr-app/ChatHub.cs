// The server's hub class of the SignalR version of this app, moved into the app: it
// runs on the session host (HubConnection.MapHub). Unchanged but for its using lines.
//
// C# 7.2 (mono).

using System.Threading.Tasks;
// SWAP BEGIN: with SignalR this was
//   using Microsoft.AspNetCore.SignalR;
using FlightSimP2P.Client;
// SWAP END

namespace SimChat
{
    public class ChatHub : Hub
    {
        public override Task OnConnectedAsync()
        {
            return Clients.Others.SendAsync("ReceiveMessage", "hub", "joined: " + Context.ConnectionId);
        }

        public async Task SendMessage(string user, string message)
        {
            await Clients.All.SendAsync("ReceiveMessage", user, message);
        }

        public Task SendPosition(double lat, double lon)
        {
            return Clients.Others.SendAsync("ReceivePosition", lat, lon);
        }

        public Task Whisper(string text)
        {
            return Clients.Caller.SendAsync("ReceiveMessage", "hub", "only you: " + text);
        }

        public int Add(int a, int b)
        {
            return a + b;
        }
    }
}
