// HubConnectionBuilder: SignalR's builder (HubConnectionBuilder and the extension methods
// of HubConnectionBuilderExtensions / HubConnectionBuilderHttpExtensions, as instance
// methods), building a HubConnection.
//
//   HubConnection connection = new HubConnectionBuilder()
//       .WithUrl("https://sim.example.com/hubs/flight", o => o.AccessTokenProvider = GetTokenAsync)
//       .WithAutomaticReconnect()
//       .Build();
//
// URLs: http(s)://host[:port]/any/path is the server (its WebSocket endpoint
// ws(s)://host[:port]/ws, QUIC on host:4433); ws(s):// is the WebSocket endpoint as
// given; quic://host[:port] the QUIC endpoint. ?session=new or ?session=CODE makes
// StartAsync create or join a session (ServerUrl has the rule).
//
// C# 7.2 (mono).

using System;

namespace FlightSimP2P.Client
{
    /// <summary>SignalR's IHubConnectionBuilder.</summary>
    public interface IHubConnectionBuilder
    {
        HubConnection Build();
    }

    public sealed partial class HubConnectionBuilder : IHubConnectionBuilder
    {
        private readonly WebRTCP2POptions _options = new WebRTCP2POptions();
        private readonly HttpConnectionOptions _http = new HttpConnectionOptions();
        private bool _built;
        private string _session;

        public HubConnectionBuilder()
        {
            _options.ReconnectDelays = null;
        }

        public HubConnectionBuilder WithUrl(string url)
        {
            return WithUrl(new Uri(url), HttpTransportType.None, (Action<HttpConnectionOptions>)null);
        }

        public HubConnectionBuilder WithUrl(Uri url)
        {
            return WithUrl(url, HttpTransportType.None, (Action<HttpConnectionOptions>)null);
        }

        /// <summary>SignalR's WithUrl(url, transports): the service uses QUIC and WebSocket whatever transports says.</summary>
        public HubConnectionBuilder WithUrl(string url, HttpTransportType transports)
        {
            return WithUrl(new Uri(url), transports, (Action<HttpConnectionOptions>)null);
        }

        public HubConnectionBuilder WithUrl(Uri url, HttpTransportType transports)
        {
            return WithUrl(url, transports, (Action<HttpConnectionOptions>)null);
        }

        public HubConnectionBuilder WithUrl(string url, Action<HttpConnectionOptions> configureHttpConnection)
        {
            return WithUrl(new Uri(url), HttpTransportType.None, configureHttpConnection);
        }

        public HubConnectionBuilder WithUrl(Uri url, Action<HttpConnectionOptions> configureHttpConnection)
        {
            return WithUrl(url, HttpTransportType.None, configureHttpConnection);
        }

        public HubConnectionBuilder WithUrl(string url, HttpTransportType transports, Action<HttpConnectionOptions> configureHttpConnection)
        {
            return WithUrl(new Uri(url), transports, configureHttpConnection);
        }

        public HubConnectionBuilder WithUrl(Uri url, HttpTransportType transports, Action<HttpConnectionOptions> configureHttpConnection)
        {
            ServerUrl.Apply(url, _options);
            _session = ServerUrl.SessionOf(url);
            _http.Url = url;
            if (transports != HttpTransportType.None)
            {
                _http.Transports = transports;
            }
            if (configureHttpConnection != null)
            {
                configureHttpConnection(_http);
            }
            return this;
        }

        /// <summary>The service's own options (display name, pinned certificate, QUIC...).</summary>
        public HubConnectionBuilder WithUrl(string url, Action<WebRTCP2POptions> configure)
        {
            return WithUrl(new Uri(url), configure);
        }

        public HubConnectionBuilder WithUrl(Uri url, Action<WebRTCP2POptions> configure)
        {
            WithUrl(url, HttpTransportType.None, (Action<HttpConnectionOptions>)null);
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
            if (reconnectDelays == null)
            {
                throw new ArgumentNullException("reconnectDelays");
            }
            _options.ReconnectDelays = reconnectDelays;
            return this;
        }

        /// <summary>
        /// SignalR's WithAutomaticReconnect(IRetryPolicy). The policy is asked for its delays
        /// when this is called (RetrySchedule: at most 1000, RetryReason null, ElapsedTime the
        /// sum of the delays before); a policy that depends on the failure itself cannot be honoured.
        /// </summary>
        public HubConnectionBuilder WithAutomaticReconnect(IRetryPolicy retryPolicy)
        {
            return WithAutomaticReconnect(RetrySchedule.From(retryPolicy));
        }

        public HubConnectionBuilder WithServerTimeout(TimeSpan timeout)
        {
            _options.ServerTimeout = timeout;
            return this;
        }

        /// <summary>How often the client pings at the longest: the transport keep-alive, and the protocol Ping (never above the liveness rule's 500 ms).</summary>
        public HubConnectionBuilder WithKeepAliveInterval(TimeSpan interval)
        {
            _options.KeepAliveInterval = interval;
            _options.PingInterval = WebRTCP2POptions.PingIntervalFor(interval);
            return this;
        }

        /// <summary>
        /// SignalR's WithStatefulReconnect: here always on in effect (a reconnect within the
        /// server's grace keeps the peer id and session; hub messages sent while disconnected
        /// are not buffered).
        /// </summary>
        public HubConnectionBuilder WithStatefulReconnect()
        {
            _http.UseStatefulReconnect = true;
            return this;
        }

        public HubConnectionBuilder Configure(Action<WebRTCP2POptions> configure)
        {
            configure(_options);
            return this;
        }

        public HubConnection Build()
        {
            if (_built)
            {
                throw new InvalidOperationException("HubConnectionBuilder allows creation only of a single instance of HubConnection.");
            }
            _built = true;
            // HttpConnectionOptions on every connect: the access token, the WebSocket's options.
            HttpConnectionOptions http = _http;
            ITransportFactory inner = _options.TransportFactory ?? new DefaultTransportFactory(_options);
            _options.TransportFactory = new AccessTokenTransportFactory(http, inner, _options);
            HubConnection connection = new HubConnection(_options, _session);
            OnBuilt(connection);
            return connection;
        }

        /// <summary>The .NET build attaches ConfigureLogging's logger here (client/Adapters/Logging.cs).</summary>
        partial void OnBuilt(HubConnection connection);

        HubConnection IHubConnectionBuilder.Build()
        {
            return Build();
        }
    }
}
