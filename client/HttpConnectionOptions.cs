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
    /// (WebSocketHook). The token also rides in Hello (version 2, PROTOCOL.md section 13) on
    /// every transport (TokenInHello), which is how it reaches the server over QUIC, where
    /// there is no URL.
    /// </summary>
    public sealed class AccessTokenTransportFactory : IClusterTransportFactory
    {
        private readonly Func<Task<string>> _provider;
        private readonly Action<ClientWebSocketOptions> _configure;
        private readonly ITransportFactory _inner;
        private readonly WebRTCP2POptions _options;
        private readonly HttpConnectionOptions _http;

        /// <summary>HubConnectionBuilder's: http's token provider and WebSocket settings (also for the own wss:// upgrade).</summary>
        public AccessTokenTransportFactory(HttpConnectionOptions http, ITransportFactory inner, WebRTCP2POptions options)
            : this(http != null ? http.AccessTokenProvider : null, http != null ? (Action<ClientWebSocketOptions>)http.Configure : null, inner, options)
        {
            _http = http;
        }

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
            ISignalingTransport t = await Connect(kind, server, first, token, cancellationToken).ConfigureAwait(false);
            return string.IsNullOrEmpty(token) || t == null ? t : new TokenInHello(t, token);
        }

        private async Task<ISignalingTransport> Connect(TransportKind kind, ServerEndpoint server, string first, string token, CancellationToken cancellationToken)
        {
            IClusterTransportFactory cluster = _inner as IClusterTransportFactory;
            using (WebSocketHook.Use(_configure, _http))
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
    /// A transport whose Hello carries the access token (Hello version 2, PROTOCOL.md
    /// section 13): the only way a token reaches the server over QUIC, and on a WebSocket
    /// it agrees with the URL's access_token (the Hello's wins). Everything else passes
    /// through untouched.
    /// </summary>
    public sealed class TokenInHello : ISignalingTransport
    {
        private readonly ISignalingTransport _inner;
        private readonly string _token;

        public TokenInHello(ISignalingTransport inner, string token)
        {
            if (inner == null)
            {
                throw new ArgumentNullException("inner");
            }
            _inner = inner;
            _token = token;
        }

        public Action<uint, byte[]> RelayReceived { set { _inner.RelayReceived = value; } }

        public ushort CloseCode { get { return _inner.CloseCode; } }

        public Task SendAsync(ClientMsg message, CancellationToken cancellationToken)
        {
            ClientMsg.Hello hello = message as ClientMsg.Hello;
            if (hello != null && !string.IsNullOrEmpty(_token))
            {
                if (hello.Version < 2)
                {
                    hello.Version = 2;
                }
                hello.AccessToken = _token;
            }
            return _inner.SendAsync(message, cancellationToken);
        }

        public bool TrySendRelay(uint to, byte[] payload) { return _inner.TrySendRelay(to, payload); }

        public Task<ServerMsg> ReceiveAsync(CancellationToken cancellationToken) { return _inner.ReceiveAsync(cancellationToken); }

        public Task CloseAsync(bool leave) { return _inner.CloseAsync(leave); }
    }

    /// <summary>
    /// Hands a connection's WebSocket configuration (HttpConnectionOptions: headers, proxy,
    /// credentials, cookies, certificates, WebSocketConfiguration) to WebSocketTransport,
    /// which applies it to the ClientWebSocket it creates, or, on the own TLS upgrade of a
    /// pinned wss:// (mono), reads it back (ForOwnUpgrade). Scoped to the connect call
    /// (AsyncLocal), so two connections in one process never see each other's.
    /// </summary>
    public static class WebSocketHook
    {
        private sealed class Current
        {
            public Action<ClientWebSocketOptions> Configure;
            public HttpConnectionOptions Http;
        }

        private static readonly AsyncLocal<Current> s_current = new AsyncLocal<Current>();

        /// <summary>Sets configure for the calls made until the result is disposed.</summary>
        public static IDisposable Use(Action<ClientWebSocketOptions> configure)
        {
            return Use(configure, null);
        }

        /// <summary>As above; http (may be null) also gives the own upgrade its Headers.</summary>
        public static IDisposable Use(Action<ClientWebSocketOptions> configure, HttpConnectionOptions http)
        {
            Current previous = s_current.Value;
            s_current.Value = configure == null && http == null ? null : new Current { Configure = configure, Http = http };
            return new Restore(previous);
        }

        /// <summary>WebSocketTransport calls it on a new socket's options before connecting.</summary>
        public static void Apply(ClientWebSocketOptions options)
        {
            Current c = s_current.Value;
            if (c != null && c.Configure != null)
            {
                c.Configure(options);
            }
        }

        /// <summary>
        /// What the own upgrade of a pinned wss:// sends and how it connects: the configuration
        /// applied to a scratch ClientWebSocketOptions and read back through its public getters
        /// (Proxy if set, Cookies, ClientCertificates, Credentials, UseDefaultCredentials; so a
        /// WebSocketConfiguration that sets them counts too), plus HttpConnectionOptions.Headers
        /// (ClientWebSocketOptions has no public getter for headers, so a header set only
        /// through WebSocketConfiguration's SetRequestHeader is not seen).
        /// </summary>
        internal static OwnUpgradeSettings ForOwnUpgrade()
        {
            OwnUpgradeSettings s = new OwnUpgradeSettings();
            Current c = s_current.Value;
            if (c == null)
            {
                return s;
            }
            if (c.Http != null && c.Http.Headers != null)
            {
                foreach (KeyValuePair<string, string> h in c.Http.Headers)
                {
                    s.Headers.Add(h);
                }
            }
            if (c.Configure != null)
            {
                ClientWebSocketOptions scratch;
                using (ClientWebSocket ws = new ClientWebSocket())
                {
                    scratch = ws.Options;
                    IWebProxy platformDefault = scratch.Proxy;
                    c.Configure(scratch);
                    // Only a proxy the app set: the platform's default is not consulted here.
                    s.Proxy = object.ReferenceEquals(scratch.Proxy, platformDefault) ? null : scratch.Proxy;
                    s.Cookies = scratch.Cookies;
                    s.ClientCertificates = scratch.ClientCertificates;
                    s.ServerCredentials = scratch.Credentials != null || scratch.UseDefaultCredentials;
                }
            }
            return s;
        }

        private sealed class Restore : IDisposable
        {
            private readonly Current _previous;

            public Restore(Current previous)
            {
                _previous = previous;
            }

            public void Dispose()
            {
                s_current.Value = _previous;
            }
        }
    }

    /// <summary>The connection's WebSocket settings as the own wss:// upgrade uses them (WebSocketHook.ForOwnUpgrade).</summary>
    internal sealed class OwnUpgradeSettings
    {
        public readonly List<KeyValuePair<string, string>> Headers = new List<KeyValuePair<string, string>>();
        /// <summary>An HTTP proxy the app set (null: connect directly): reached with CONNECT, Basic credentials if it has any.</summary>
        public IWebProxy Proxy;
        public CookieContainer Cookies;
        public X509CertificateCollection ClientCertificates;
        /// <summary>Credentials or UseDefaultCredentials for the server were set: the own upgrade cannot answer a 401 with them.</summary>
        public bool ServerCredentials;
    }
}
