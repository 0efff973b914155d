// SignalR's HttpConnectionOptions (what WithUrl(url, o => ...) configures) and what they
// become here: the server URL rule, the access token in the WebSocket URL, the headers,
// proxy and credentials on the WebSocket upgrade.
//
// C# 7.2 (mono).

using System;
using System.Collections.Generic;
using System.Net;
using System.Net.WebSockets;
using System.Security.Cryptography.X509Certificates;
using System.Threading;
using System.Threading.Tasks;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    /// <summary>
    /// SignalR's HttpConnectionOptions, every property of its PublicAPI.Shipped.txt but
    /// DefaultTransferFormat and WebSocketFactory (types of ASP.NET Core's). Used here:
    /// AccessTokenProvider (every connect, reconnect and redirect; sent as the WebSocket
    /// URL's access_token parameter), Headers, Proxy, Credentials, Cookies,
    /// ClientCertificates, UseDefaultCredentials and WebSocketConfiguration (on the WebSocket
    /// upgrade), Url. Accepted and without effect (there is no HTTP negotiate, no SSE or long
    /// polling, no stateful-reconnect buffer): Transports, SkipNegotiation,
    /// HttpMessageHandlerFactory, CloseTimeout, ApplicationMaxBufferSize,
    /// TransportMaxBufferSize, UseStatefulReconnect. Pin a server certificate with
    /// WebRTCP2POptions.CertificateSha256 (WithUrl's Action&lt;WebRTCP2POptions&gt; overload).
    /// HttpMessageHandlerFactory is in the .NET build only (client/Adapters/HttpOptions.cs).
    /// </summary>
    public sealed partial class HttpConnectionOptions
    {
        public HttpConnectionOptions()
        {
            Headers = new Dictionary<string, string>();
            Cookies = new CookieContainer();
            CloseTimeout = TimeSpan.FromSeconds(5);
            Transports = HttpTransportType.WebSockets | HttpTransportType.ServerSentEvents | HttpTransportType.LongPolling;
        }

        /// <summary>Called on every connect, reconnect and redirect; its token goes in the WebSocket URL (access_token).</summary>
        public Func<Task<string>> AccessTokenProvider { get; set; }

        public IDictionary<string, string> Headers { get; set; }

        public Uri Url { get; set; }

        public HttpTransportType Transports { get; set; }

        public bool SkipNegotiation { get; set; }

        public IWebProxy Proxy { get; set; }

        public ICredentials Credentials { get; set; }

        public CookieContainer Cookies { get; set; }

        public X509CertificateCollection ClientCertificates { get; set; }

        public bool? UseDefaultCredentials { get; set; }

        public Action<ClientWebSocketOptions> WebSocketConfiguration { get; set; }

        public TimeSpan CloseTimeout { get; set; }

        public long ApplicationMaxBufferSize { get; set; }

        public long TransportMaxBufferSize { get; set; }

        public bool UseStatefulReconnect { get; set; }

        /// <summary>Applies the headers, proxy, credentials, cookies and certificates to a WebSocket's options.</summary>
        internal void Configure(ClientWebSocketOptions o)
        {
            if (Headers != null)
            {
                foreach (KeyValuePair<string, string> h in Headers)
                {
                    o.SetRequestHeader(h.Key, h.Value);
                }
            }
            if (Proxy != null)
            {
                o.Proxy = Proxy;
            }
            if (Credentials != null)
            {
                o.Credentials = Credentials;
            }
            if (Cookies != null)
            {
                o.Cookies = Cookies;
            }
            if (ClientCertificates != null)
            {
                o.ClientCertificates = ClientCertificates;
            }
            if (UseDefaultCredentials.HasValue)
            {
                o.UseDefaultCredentials = UseDefaultCredentials.Value;
            }
            if (WebSocketConfiguration != null)
            {
                WebSocketConfiguration(o);
            }
        }
    }

    /// <summary>
    /// The URL rule of WithUrl. ws:// and wss:// are the WebSocket endpoint as given (QUIC
    /// is tried on the same host, QuicPort 4433). quic://host[:port] is the QUIC endpoint
    /// (WebSocket: ws://host:8080/ws). http:// and https:// (a SignalR hub URL) name the
    /// server: the scheme becomes ws:// or wss://, host, port and query stay, and the path
    /// becomes /ws unless it already ends in /ws (a hub path such as /hubs/flight names a
    /// server-side hub; here the session is the hub, so it has no meaning).
    /// On any of them a <c>session</c> query parameter is the client's, not the server's:
    /// <c>session=new</c> makes StartAsync create a session, <c>session=CODE</c> join that
    /// one (HubConnection.StartAsync), so the app's code stays SignalR's; it is taken out
    /// of the URL the server sees.
    /// </summary>
    public static class ServerUrl
    {
        public static void Apply(Uri url, WebRTCP2POptions options)
        {
            if (url == null)
            {
                throw new ArgumentNullException("url");
            }
            if (!url.IsAbsoluteUri)
            {
                throw new ArgumentException("WithUrl needs an absolute URL", "url");
            }
            options.ServerHost = url.Host;
            string scheme = url.Scheme.ToLowerInvariant();
            if (scheme == "quic")
            {
                options.QuicPort = url.IsDefaultPort || url.Port < 0 ? 4433 : url.Port;
            }
            else if (scheme == "ws" || scheme == "wss" || scheme == "http" || scheme == "https")
            {
                options.WebSocketUri = WebSocketFor(url);
            }
            else
            {
                throw new ArgumentException("WithUrl takes http(s)://, ws(s):// or quic:// URLs, not " + url.Scheme + "://", "url");
            }
        }

        /// <summary>The WebSocket endpoint a ws(s):// or http(s):// URL names (see the rule above).</summary>
        public static Uri WebSocketFor(Uri url)
        {
            string scheme = url.Scheme.ToLowerInvariant();
            UriBuilder b = new UriBuilder(url);
            b.Query = WithoutSession(url.Query);
            b.Fragment = "";
            if (scheme == "http" || scheme == "https")
            {
                b.Scheme = scheme == "https" ? "wss" : "ws";
                b.Port = url.Port;
                string path = url.AbsolutePath.TrimEnd('/');
                b.Path = path.EndsWith("/ws", StringComparison.Ordinal) ? path : "/ws";
            }
            return b.Uri;
        }

        /// <summary>The URL's <c>session</c> parameter (unescaped), or null: "new" creates, anything else is a join code.</summary>
        public static string SessionOf(Uri url)
        {
            foreach (string part in url.Query.TrimStart('?').Split('&'))
            {
                int eq = part.IndexOf('=');
                string key = eq < 0 ? part : part.Substring(0, eq);
                if (key == "session")
                {
                    string value = eq < 0 ? "" : Uri.UnescapeDataString(part.Substring(eq + 1).Replace('+', ' '));
                    return value.Length == 0 ? null : value;
                }
            }
            return null;
        }

        private static string WithoutSession(string query)
        {
            List<string> kept = new List<string>();
            foreach (string part in query.TrimStart('?').Split('&'))
            {
                if (part.Length > 0 && part != "session" && !part.StartsWith("session=", StringComparison.Ordinal))
                {
                    kept.Add(part);
                }
            }
            return string.Join("&", kept.ToArray());
        }

        /// <summary>The WebSocket URL with access_token=token added (URL-escaped), as SignalR does for browsers.</summary>
        public static Uri WithAccessToken(Uri ws, string token)
        {
            if (string.IsNullOrEmpty(token))
            {
                return ws;
            }
            string s = ws.GetLeftPart(UriPartial.Query);
            string sep = s.IndexOf('?') < 0 ? "?" : (s.EndsWith("?", StringComparison.Ordinal) || s.EndsWith("&", StringComparison.Ordinal) ? "" : "&");
            return new Uri(s + sep + "access_token=" + Uri.EscapeDataString(token));
        }
    }

    /// <summary>
    /// The HttpConnectionOptions of one connection, applied to each connect: calls
    /// AccessTokenProvider (if set) before every connect (first, reconnect, fallback,
    /// redirect) and connects the WebSocket to the URL with access_token added; the
    /// WebSocket's options (headers, proxy, credentials...) are configured for the connect
    /// (WebSocketHook). QUIC has no URL and the protocol's Hello has no token field yet, so
    /// over QUIC the provider is called and the token not sent (client/AVALONIA-INTEGRATION.md).
    /// </summary>
    public sealed class AccessTokenTransportFactory : IClusterTransportFactory
    {
        private readonly Func<Task<string>> _provider;
        private readonly Action<ClientWebSocketOptions> _configure;
        private readonly ITransportFactory _inner;
        private readonly WebRTCP2POptions _options;

        public AccessTokenTransportFactory(Func<Task<string>> provider, ITransportFactory inner, WebRTCP2POptions options)
            : this(provider, null, inner, options)
        {
        }

        /// <summary>provider and configure may be null.</summary>
        public AccessTokenTransportFactory(Func<Task<string>> provider, Action<ClientWebSocketOptions> configure, ITransportFactory inner, WebRTCP2POptions options)
        {
            if (inner == null || options == null)
            {
                throw new ArgumentNullException(inner == null ? "inner" : "options");
            }
            _provider = provider;
            _configure = configure;
            _inner = inner;
            _options = options;
        }

        public bool QuicSupported
        {
            get { return _inner.QuicSupported; }
        }

        public Task<ISignalingTransport> ConnectAsync(TransportKind kind, string first, CancellationToken cancellationToken)
        {
            return ConnectAsync(kind, null, first, cancellationToken);
        }

        public async Task<ISignalingTransport> ConnectAsync(TransportKind kind, ServerEndpoint server, string first, CancellationToken cancellationToken)
        {
            string token = null;
            if (_provider != null)
            {
                Task<string> pending = _provider();
                token = pending == null ? null : await pending.ConfigureAwait(false);
            }
            IClusterTransportFactory cluster = _inner as IClusterTransportFactory;
            using (WebSocketHook.Use(_configure))
            {
                if (kind != TransportKind.WebSocket || string.IsNullOrEmpty(token) || cluster == null)
                {
                    if (server == null)
                    {
                        return await _inner.ConnectAsync(kind, first, cancellationToken).ConfigureAwait(false);
                    }
                    if (cluster == null)
                    {
                        throw new NotSupportedException("the transport factory cannot reach node " + server.Name + " (no IClusterTransportFactory)");
                    }
                    return await cluster.ConnectAsync(kind, server, first, cancellationToken).ConfigureAwait(false);
                }
                // The same endpoint (its trust unchanged), its WebSocket URL with the token.
                WebRTCP2POptions target = _options.For(server);
                ServerEndpoint withToken = new ServerEndpoint(target.ServerHost, target.QuicPort, ServerUrl.WithAccessToken(target.EffectiveWebSocketUri, token));
                withToken.Name = server != null ? server.Name : "";
                withToken.CertSha256 = server != null ? server.CertSha256 : null;
                withToken.FromRedirect = server != null && server.FromRedirect;
                return await cluster.ConnectAsync(kind, withToken, first, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// Hands a connection's WebSocket configuration (HttpConnectionOptions: headers, proxy,
    /// credentials, cookies, certificates, WebSocketConfiguration) to WebSocketTransport,
    /// which applies it to the ClientWebSocket it creates. Scoped to the connect call
    /// (AsyncLocal), so two connections in one process never see each other's.
    /// </summary>
    public static class WebSocketHook
    {
        private static readonly AsyncLocal<Action<ClientWebSocketOptions>> s_current = new AsyncLocal<Action<ClientWebSocketOptions>>();

        /// <summary>Sets configure for the calls made until the result is disposed.</summary>
        public static IDisposable Use(Action<ClientWebSocketOptions> configure)
        {
            Action<ClientWebSocketOptions> previous = s_current.Value;
            s_current.Value = configure;
            return new Restore(previous);
        }

        /// <summary>WebSocketTransport calls it on a new socket's options before connecting.</summary>
        public static void Apply(ClientWebSocketOptions options)
        {
            Action<ClientWebSocketOptions> configure = s_current.Value;
            if (configure != null)
            {
                configure(options);
            }
        }

        private sealed class Restore : IDisposable
        {
            private readonly Action<ClientWebSocketOptions> _previous;

            public Restore(Action<ClientWebSocketOptions> previous)
            {
                _previous = previous;
            }

            public void Dispose()
            {
                s_current.Value = _previous;
            }
        }
    }
}
