// HubConnectionBuilder: the SignalR client's builder shape, building a WebRTCP2PService.
//
//   var connection = new HubConnectionBuilder()
//       .WithUrl("ws://sim.example.com:8080/ws")        // or "quic://sim.example.com:4433"
//       .WithAutomaticReconnect()
//       .Build();
//
// C# 7.2 (mono).

using System;

namespace FlightSimP2P.Client
{
    public sealed class HubConnectionBuilder
    {
        private readonly WebRTCP2POptions _options = new WebRTCP2POptions();

        public HubConnectionBuilder()
        {
            _options.ReconnectDelays = null;
        }

        /// <summary>ws:// or wss:// (WebSocket endpoint; QUIC is tried on the same host, port 4433), or quic://host:port.</summary>
        public HubConnectionBuilder WithUrl(string url)
        {
            return WithUrl(new Uri(url), null);
        }

        public HubConnectionBuilder WithUrl(string url, Action<WebRTCP2POptions> configure)
        {
            return WithUrl(new Uri(url), configure);
        }

        public HubConnectionBuilder WithUrl(Uri url, Action<WebRTCP2POptions> configure)
        {
            _options.ServerHost = url.Host;
            if (url.Scheme == "quic")
            {
                _options.QuicPort = url.IsDefaultPort || url.Port < 0 ? 4433 : url.Port;
            }
            else if (url.Scheme == "ws" || url.Scheme == "wss")
            {
                _options.WebSocketUri = url;
            }
            else
            {
                throw new ArgumentException("WithUrl takes ws://, wss:// or quic:// URLs", "url");
            }
            if (configure != null)
            {
                configure(_options);
            }
            return this;
        }

        /// <summary>SignalR's default: retry after 0, 2, 10 and 30 seconds, then give up.</summary>
        public HubConnectionBuilder WithAutomaticReconnect()
        {
            return WithAutomaticReconnect(new[] { TimeSpan.Zero, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(30) });
        }

        public HubConnectionBuilder WithAutomaticReconnect(TimeSpan[] reconnectDelays)
        {
            _options.ReconnectDelays = reconnectDelays;
            return this;
        }

        public HubConnectionBuilder Configure(Action<WebRTCP2POptions> configure)
        {
            configure(_options);
            return this;
        }

        public WebRTCP2PService Build()
        {
            return new WebRTCP2PService(_options);
        }
    }
}
