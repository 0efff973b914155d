// Signaling over a WebSocket (PROTOCOL.md section 10) with ClientWebSocket's
// ArraySegment API, which mono and every .NET have. One sender loop keeps control
// messages in order; relay frames wait in a 4-frame queue that drops the oldest.
// The upgrade URL may carry the first request (?first=, PROTOCOL.md section 3); it
// is never logged.
// Also the transport factory: WebSocket here, QUIC from the net9.0 adapter.
//
// C# 7.2 (mono).

using System;
using System.Collections.Generic;
using System.IO;
using System.Net.Security;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Threading;
using System.Threading.Tasks;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    public sealed class WebSocketTransport : ISignalingTransport
    {
        private const int RelayQueueFrames = 4;

        private readonly WebSocket _ws;
        private readonly object _lock = new object();
        private readonly Queue<byte[]> _relay = new Queue<byte[]>();
        private readonly SemaphoreSlim _sendLock = new SemaphoreSlim(1, 1);
        private readonly byte[] _buffer = new byte[64 * 1024];
        private Action<uint, byte[]> _onRelay;
        private bool _relayPumping;
        private ushort _closeCode = CloseVerdict.NoCode;
        // Set when this side starts the close handshake: the Close frame that comes back is
        // the server's echo of our own code (RFC 6455 5.5.1), not a verdict of the server's.
        private volatile bool _closeSent;

        private WebSocketTransport(WebSocket ws)
        {
            _ws = ws;
        }

        public long RelayDropped { get; private set; }

        public static Task<ISignalingTransport> ConnectAsync(Uri uri, TimeSpan keepAlive, CancellationToken cancellationToken)
        {
            return ConnectAsync(uri, null, keepAlive, cancellationToken);
        }

        /// <summary>
        /// Connects to uri with <c>first=</c> added when first is not null (PROTOCOL.md
        /// section 3): the server's Welcome and answer are then the first messages. That
        /// URL can hold a join code: it is never logged, and a connect error that quotes
        /// it is replaced by one that does not.
        /// </summary>
        public static async Task<ISignalingTransport> ConnectAsync(Uri uri, string first, TimeSpan keepAlive, CancellationToken cancellationToken)
        {
            ClientWebSocket ws = new ClientWebSocket();
            WebSocketHook.Apply(ws.Options);
            ws.Options.KeepAliveInterval = keepAlive;
            Uri target = first == null ? uri : new Uri(First.AppendTo(uri.AbsoluteUri, first));
            try
            {
                // wss:// with a pin or a private root (set by the overload below for this call only).
                WebSocketTrust trust = s_trust.Value;
                if (trust != null)
                {
                    ws.Options.RemoteCertificateValidationCallback = trust.Validate;
                }
                await ws.ConnectAsync(target, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                ws.Dispose();
                if (first != null && Quotes(e, first))
                {
                    throw new WebSocketException("WebSocket connect to " + uri.GetLeftPart(UriPartial.Path) + " failed ("
                        + e.GetType().Name + ", details withheld: they quote the URL's first request)");
                }
                throw;
            }
            return new WebSocketTransport(ws);
        }

        // The certificate check of the current connect (AsyncLocal: scoped to one call).
        private static readonly AsyncLocal<WebSocketTrust> s_trust = new AsyncLocal<WebSocketTrust>();

        /// <summary>mono's ClientWebSocket ignores RemoteCertificateValidationCallback (checked with mono 6.8).</summary>
        private static readonly bool s_callbackIgnored = Type.GetType("Mono.Runtime") != null;

        /// <summary>
        /// As above; over wss:// the server's certificate is checked like QUIC's
        /// (CertificatePolicy): certificateSha256 (hex) pins the leaf, else trustedRootDer
        /// is the only trust anchor (host names still checked), else the system store.
        /// .NET: ClientWebSocket's RemoteCertificateValidationCallback. mono, which ignores
        /// that callback: our own TLS stream and upgrade (PinnedUpgrade), which sends the
        /// connection's headers and cookies, presents its client certificates and goes
        /// through the proxy it set (HTTP CONNECT); see PinnedUpgrade for what it leaves out.
        /// </summary>
        public static async Task<ISignalingTransport> ConnectAsync(Uri uri, string first, TimeSpan keepAlive,
            string certificateSha256, byte[] trustedRootDer, CancellationToken cancellationToken)
        {
            if (!string.Equals(uri.Scheme, "wss", StringComparison.OrdinalIgnoreCase)
                || (string.IsNullOrWhiteSpace(certificateSha256) && trustedRootDer == null))
            {
                return await ConnectAsync(uri, first, keepAlive, cancellationToken).ConfigureAwait(false);
            }
            WebSocketTrust trust = new WebSocketTrust(certificateSha256, trustedRootDer);
            if (!s_callbackIgnored && !ForceOwnUpgrade)
            {
                s_trust.Value = trust;
                try
                {
                    return await ConnectAsync(uri, first, keepAlive, cancellationToken).ConfigureAwait(false);
                }
                finally
                {
                    s_trust.Value = null;
                }
            }
            Uri target = first == null ? uri : new Uri(First.AppendTo(uri.AbsoluteUri, first));
            try
            {
                WebSocket pinned = await PinnedUpgrade.ConnectAsync(target, trust, keepAlive, WebSocketHook.ForOwnUpgrade(), cancellationToken).ConfigureAwait(false);
                return new WebSocketTransport(pinned);
            }
            catch (Exception e)
            {
                if (first != null && Quotes(e, first))
                {
                    throw new WebSocketException("WebSocket connect to " + uri.GetLeftPart(UriPartial.Path) + " failed ("
                        + e.GetType().Name + ", details withheld: they quote the URL's first request)");
                }
                throw;
            }
        }

        /// <summary>Tests: use the own TLS upgrade for pinned wss:// on every runtime.</summary>
        internal static bool ForceOwnUpgrade;

        private static bool Quotes(Exception e, string secret)
        {
            for (Exception x = e; x != null; x = x.InnerException)
            {
                if ((x.Message ?? "").Contains(secret))
                {
                    return true;
                }
            }
            return false;
        }

        public Action<uint, byte[]> RelayReceived
        {
            set { _onRelay = value; }
        }

        public ushort CloseCode
        {
            get { return _closeCode; }
        }

        public async Task SendAsync(ClientMsg message, CancellationToken cancellationToken)
        {
            byte[] data = Wire.EncodeWsControl(message);
            await _sendLock.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                await _ws.SendAsync(new ArraySegment<byte>(data), WebSocketMessageType.Binary, true, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                _sendLock.Release();
            }
        }

        public bool TrySendRelay(uint to, byte[] payload)
        {
            byte[] msg = Wire.EncodeWsRelay(to, payload, 0, payload.Length);
            bool dropped = false;
            lock (_lock)
            {
                if (_relay.Count >= RelayQueueFrames)
                {
                    _relay.Dequeue();
                    RelayDropped++;
                    dropped = true;
                }
                _relay.Enqueue(msg);
                if (_relayPumping)
                {
                    return !dropped;
                }
                _relayPumping = true;
            }
            Task.Run(PumpRelay);
            return !dropped;
        }

        private async Task PumpRelay()
        {
            while (true)
            {
                byte[] msg;
                lock (_lock)
                {
                    if (_relay.Count == 0)
                    {
                        _relayPumping = false;
                        return;
                    }
                    msg = _relay.Dequeue();
                }
                await _sendLock.WaitAsync().ConfigureAwait(false);
                try
                {
                    await _ws.SendAsync(new ArraySegment<byte>(msg), WebSocketMessageType.Binary, true, CancellationToken.None).ConfigureAwait(false);
                }
                catch (Exception)
                {
                    lock (_lock)
                    {
                        _relay.Clear();
                        _relayPumping = false;
                    }
                    return;
                }
                finally
                {
                    _sendLock.Release();
                }
            }
        }

        public async Task<ServerMsg> ReceiveAsync(CancellationToken cancellationToken)
        {
            while (true)
            {
                MemoryStream message = new MemoryStream();
                WebSocketReceiveResult r;
                do
                {
                    r = await _ws.ReceiveAsync(new ArraySegment<byte>(_buffer), cancellationToken).ConfigureAwait(false);
                    if (r.MessageType == WebSocketMessageType.Close)
                    {
                        int status = r.CloseStatus.HasValue ? (int)r.CloseStatus.Value : 1005;
                        // Our own 4999 ("reconnecting") echoed back would read as 999, the
                        // abandon code, and end the service instead of resuming it.
                        _closeCode = _closeSent ? CloseVerdict.NoCode : CloseVerdict.FromWebSocketStatus(status);
                        return null;
                    }
                    message.Write(_buffer, 0, r.Count);
                }
                while (!r.EndOfMessage);
                byte[] data = message.ToArray();
                WsMessageKind kind;
                int offset = Wire.ParseWsMessage(data, 0, data.Length, out kind);
                if (kind == WsMessageKind.Control)
                {
                    return ServerMsg.Decode(data, offset, data.Length - offset);
                }
                uint from;
                int payloadOffset;
                try
                {
                    payloadOffset = Wire.ParseRelayFrame(data, offset, data.Length - offset, out from);
                }
                catch (ProtocolException)
                {
                    continue;
                }
                byte[] payload = new byte[data.Length - payloadOffset];
                Buffer.BlockCopy(data, payloadOffset, payload, 0, payload.Length);
                Action<uint, byte[]> cb = _onRelay;
                if (cb != null)
                {
                    cb(from, payload);
                }
            }
        }

        public async Task CloseAsync(bool leave)
        {
            try
            {
                if (_ws.State == WebSocketState.Open || _ws.State == WebSocketState.CloseReceived)
                {
                    _closeSent = true;
                    using (CancellationTokenSource cts = new CancellationTokenSource(2000))
                    {
                        await _ws.CloseOutputAsync(leave ? WebSocketCloseStatus.NormalClosure : (WebSocketCloseStatus)Wire.WsCloseReconnecting,
                            leave ? "leave" : "reconnecting", cts.Token).ConfigureAwait(false);
                    }
                }
            }
            catch (Exception)
            {
                // Already broken: the server keeps the seat for the grace period either way.
            }
            finally
            {
                if (!leave)
                {
                    _ws.Abort();
                }
                _ws.Dispose();
            }
        }
    }

    /// <summary>WebSocket everywhere; QUIC through QuicConnector on net9.0+.</summary>
    public sealed partial class DefaultTransportFactory : IClusterTransportFactory
    {
        private readonly WebRTCP2POptions _options;

        public DefaultTransportFactory(WebRTCP2POptions options)
        {
            _options = options;
        }

        public bool QuicSupported
        {
            get
            {
                bool supported = false;
                QuicIsSupported(ref supported);
                return supported;
            }
        }

        static partial void QuicIsSupported(ref bool supported);

        partial void ConnectQuic(CancellationToken cancellationToken, ref Task<ISignalingTransport> result);

        public Task<ISignalingTransport> ConnectAsync(TransportKind kind, string first, CancellationToken cancellationToken)
        {
            if (kind == TransportKind.Quic)
            {
                if (first != null)
                {
                    throw new ArgumentException("QUIC says Hello on its control stream", "first");
                }
                Task<ISignalingTransport> quic = null;
                ConnectQuic(cancellationToken, ref quic);
                if (quic == null)
                {
                    throw new PlatformNotSupportedException("QUIC needs .NET 9 or later with msquic");
                }
                return quic;
            }
            return WebSocketTransport.ConnectAsync(_options.EffectiveWebSocketUri, first, _options.KeepAliveInterval,
                _options.CertificateSha256, _options.TrustedRootCertificate, cancellationToken);
        }

        /// <summary>Cluster mode: the same, to another node (a fallback, or where a Redirect leads).</summary>
        public Task<ISignalingTransport> ConnectAsync(TransportKind kind, ServerEndpoint server, string first, CancellationToken cancellationToken)
        {
            if (server == null)
            {
                return ConnectAsync(kind, first, cancellationToken);
            }
            if (!server.Reaches(kind))
            {
                throw new ArgumentException("node " + server.Name + " has no " + kind + " address", "server");
            }
            return new DefaultTransportFactory(_options.For(server)).ConnectAsync(kind, first, cancellationToken);
        }
    }

    /// <summary>
    /// The wss:// certificate check, the same decision as QUIC's (CertificatePolicy): a pinned
    /// SHA-256 of the leaf (constant-time compare), or a private root as the only trust anchor.
    /// Written for mono and every .NET (no CustomTrustStore): the chain is built with the root
    /// as an extra certificate, then must end at exactly that root with no other error.
    /// </summary>
    public sealed class WebSocketTrust
    {
        private readonly byte[] _pin;
        private readonly X509Certificate2 _root;

        public WebSocketTrust(string certificateSha256, byte[] trustedRootDer)
        {
            _pin = string.IsNullOrWhiteSpace(certificateSha256) ? null : Wire.FromHex(certificateSha256);
            _root = trustedRootDer == null ? null : new X509Certificate2(trustedRootDer);
        }

        public bool Validate(object sender, X509Certificate certificate, X509Chain chain, SslPolicyErrors errors)
        {
            bool pinOk = false;
            bool rootOk = false;
            if (certificate != null)
            {
                byte[] der = certificate.GetRawCertData();
                if (_pin != null)
                {
                    using (SHA256 sha = SHA256.Create())
                    {
                        pinOk = FixedTimeEquals(sha.ComputeHash(der), _pin);
                    }
                }
                if (_root != null)
                {
                    rootOk = BuildsTo(new X509Certificate2(der), _root);
                }
            }
            return CertificatePolicy.Accept((TlsPolicyErrors)(int)errors, _pin != null, pinOk, _root != null, rootOk);
        }

        private static bool BuildsTo(X509Certificate2 leaf, X509Certificate2 root)
        {
            using (X509Chain c = new X509Chain())
            {
                c.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                c.ChainPolicy.VerificationFlags = X509VerificationFlags.AllowUnknownCertificateAuthority;
                c.ChainPolicy.ExtraStore.Add(root);
                c.Build(leaf);
                if (c.ChainElements.Count < 2)
                {
                    return false;
                }
                X509Certificate2 top = c.ChainElements[c.ChainElements.Count - 1].Certificate;
                if (!FixedTimeEquals(top.RawData, root.RawData))
                {
                    return false;
                }
                foreach (X509ChainStatus st in c.ChainStatus)
                {
                    // The root is not in the system store: only that may be reported.
                    if (st.Status != X509ChainStatusFlags.NoError && st.Status != X509ChainStatusFlags.UntrustedRoot)
                    {
                        return false;
                    }
                }
                return true;
            }
        }

        private static bool FixedTimeEquals(byte[] a, byte[] b)
        {
            if (a == null || b == null || a.Length != b.Length)
            {
                return false;
            }
            int diff = 0;
            for (int i = 0; i < a.Length; i++)
            {
                diff |= a[i] ^ b[i];
            }
            return diff == 0;
        }
    }

    /// <summary>
    /// A client WebSocket over our own TcpClient + SslStream (RFC 6455 section 4 upgrade),
    /// for wss:// with a pinned certificate or a private root: the certificate decision is
    /// WebSocketTrust's on mono and every .NET alike. From the connection's settings
    /// (OwnUpgradeSettings, i.e. HttpConnectionOptions) it sends Headers and the Cookies for
    /// the URL, presents ClientCertificates, and reaches the server through the Proxy the app
    /// set, if it is an http:// proxy that does not bypass the URL (HTTP CONNECT, with Basic
    /// Proxy-Authorization when the proxy's Credentials give a user name). Not supported here
    /// (ClientWebSocket does them on .NET, where this path is not taken): the platform's
    /// default or environment proxy, https:// or SOCKS proxies, NTLM/Negotiate proxy
    /// authentication, server authentication with Credentials or UseDefaultCredentials (a 401
    /// fails the connect, saying so), headers set only through WebSocketConfiguration.
    /// </summary>
    internal static class PinnedUpgrade
    {
        private const string Guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

        // The upgrade's own request headers: an app's header of the same name is not sent.
        private static readonly HashSet<string> Reserved = new HashSet<string>(StringComparer.OrdinalIgnoreCase)
        {
            "Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Extensions", "Content-Length",
        };

        public static Task<WebSocket> ConnectAsync(Uri target, WebSocketTrust trust, TimeSpan keepAlive, CancellationToken cancellationToken)
        {
            return ConnectAsync(target, trust, keepAlive, null, cancellationToken);
        }

        public static async Task<WebSocket> ConnectAsync(Uri target, WebSocketTrust trust, TimeSpan keepAlive, OwnUpgradeSettings settings,
            CancellationToken cancellationToken)
        {
            settings = settings ?? new OwnUpgradeSettings();
            int port = target.IsDefaultPort ? 443 : target.Port;
            string host = target.IsDefaultPort ? target.Host : target.Host + ":" + port;
            // The URL as HTTP sees it: proxies and cookies are chosen for https://.
            UriBuilder asHttps = new UriBuilder(target);
            asHttps.Scheme = "https";
            asHttps.Port = port;
            Uri https = asHttps.Uri;
            Uri proxy = ProxyFor(settings.Proxy, https);
            // Built before connecting: a header that cannot be sent fails the connect at once.
            string upgrade = UpgradeRequest(target, host, settings, https);
            System.Net.Sockets.TcpClient tcp = new System.Net.Sockets.TcpClient();
            SslStream tls = null;
            using (cancellationToken.Register(() => tcp.Close()))
            {
                try
                {
                    if (proxy != null)
                    {
                        await tcp.ConnectAsync(proxy.DnsSafeHost, proxy.Port).ConfigureAwait(false);
                    }
                    else
                    {
                        await tcp.ConnectAsync(target.DnsSafeHost, port).ConfigureAwait(false);
                    }
                    tcp.NoDelay = true;
                    Stream raw = tcp.GetStream();
                    if (proxy != null)
                    {
                        await TunnelAsync(raw, proxy, settings.Proxy, target.Host + ":" + port, cancellationToken).ConfigureAwait(false);
                    }
                    tls = new SslStream(raw, false, trust.Validate);
                    if (settings.ClientCertificates != null && settings.ClientCertificates.Count > 0)
                    {
                        await tls.AuthenticateAsClientAsync(target.DnsSafeHost, settings.ClientCertificates,
                            System.Security.Authentication.SslProtocols.None, false).ConfigureAwait(false);
                    }
                    else
                    {
                        await tls.AuthenticateAsClientAsync(target.DnsSafeHost).ConfigureAwait(false);
                    }
                    byte[] nonce = new byte[16];
                    using (RandomNumberGenerator rng = RandomNumberGenerator.Create())
                    {
                        rng.GetBytes(nonce);
                    }
                    string key = Convert.ToBase64String(nonce);
                    byte[] request = System.Text.Encoding.ASCII.GetBytes(upgrade.Replace("{key}", key));
                    await tls.WriteAsync(request, 0, request.Length, cancellationToken).ConfigureAwait(false);
                    await tls.FlushAsync(cancellationToken).ConfigureAwait(false);
                    string head = await ReadHeadAsync(tls, cancellationToken).ConfigureAwait(false);
                    string[] lines = head.Split(new[] { "\r\n" }, StringSplitOptions.None);
                    if (lines.Length == 0 || !lines[0].StartsWith("HTTP/1.1 101", StringComparison.Ordinal))
                    {
                        string status = lines.Length > 0 ? lines[0] : "";
                        if (status.StartsWith("HTTP/1.1 401", StringComparison.Ordinal) && settings.ServerCredentials)
                        {
                            status += " (Credentials and UseDefaultCredentials are not used on a pinned wss:// under mono: send a header or an access token)";
                        }
                        throw new WebSocketException("the server refused the WebSocket upgrade: " + status);
                    }
                    string expected;
                    using (SHA1 sha1 = SHA1.Create())
                    {
                        expected = Convert.ToBase64String(sha1.ComputeHash(System.Text.Encoding.ASCII.GetBytes(key + Guid)));
                    }
                    bool accepted = false;
                    foreach (string line in lines)
                    {
                        int colon = line.IndexOf(':');
                        if (colon > 0 && string.Equals(line.Substring(0, colon).Trim(), "Sec-WebSocket-Accept", StringComparison.OrdinalIgnoreCase))
                        {
                            accepted = line.Substring(colon + 1).Trim() == expected;
                        }
                    }
                    if (!accepted)
                    {
                        throw new WebSocketException("the server's Sec-WebSocket-Accept does not match");
                    }
                    return WebSocket.CreateFromStream(tls, false, null, keepAlive);
                }
                catch (Exception)
                {
                    if (tls != null)
                    {
                        tls.Dispose();
                    }
                    tcp.Close();
                    cancellationToken.ThrowIfCancellationRequested();
                    throw;
                }
            }
        }

        /// <summary>The proxy to go through for url (null: directly); only http:// proxies.</summary>
        internal static Uri ProxyFor(System.Net.IWebProxy proxy, Uri url)
        {
            if (proxy == null || proxy.IsBypassed(url))
            {
                return null;
            }
            Uri p = proxy.GetProxy(url);
            if (p == null || p == url)
            {
                return null;
            }
            if (!string.Equals(p.Scheme, "http", StringComparison.OrdinalIgnoreCase))
            {
                throw new NotSupportedException("a pinned wss:// under mono reaches the server through http:// proxies only, not " + p.Scheme + "://");
            }
            return p;
        }

        /// <summary>The upgrade request with "{key}" for the Sec-WebSocket-Key; refuses a header that would break the request.</summary>
        internal static string UpgradeRequest(Uri target, string host, OwnUpgradeSettings settings, Uri https)
        {
            System.Text.StringBuilder b = new System.Text.StringBuilder();
            b.Append("GET ").Append(target.PathAndQuery).Append(" HTTP/1.1\r\nHost: ").Append(host)
                .Append("\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n");
            string cookie = settings.Cookies != null ? settings.Cookies.GetCookieHeader(https) : null;
            foreach (KeyValuePair<string, string> h in settings.Headers)
            {
                if (string.IsNullOrEmpty(h.Key) || !IsToken(h.Key))
                {
                    throw new ArgumentException("header name '" + h.Key + "' is not an HTTP token");
                }
                string value = h.Value ?? "";
                if (value.IndexOf('\r') >= 0 || value.IndexOf('\n') >= 0 || value.IndexOf('\0') >= 0)
                {
                    throw new ArgumentException("header " + h.Key + ": the value holds a line break");
                }
                if (Reserved.Contains(h.Key))
                {
                    continue;
                }
                if (string.Equals(h.Key, "Cookie", StringComparison.OrdinalIgnoreCase))
                {
                    cookie = string.IsNullOrEmpty(cookie) ? value : value + "; " + cookie;
                    continue;
                }
                b.Append(h.Key).Append(": ").Append(value).Append("\r\n");
            }
            if (!string.IsNullOrEmpty(cookie))
            {
                b.Append("Cookie: ").Append(cookie).Append("\r\n");
            }
            return b.Append("\r\n").ToString();
        }

        private static bool IsToken(string s)
        {
            foreach (char c in s)
            {
                if (c <= ' ' || c >= 127 || "()<>@,;:\\\"/[]?={}".IndexOf(c) >= 0)
                {
                    return false;
                }
            }
            return true;
        }

        /// <summary>HTTP CONNECT through the proxy to authority (host:port); Basic credentials if the proxy has a user.</summary>
        private static async Task TunnelAsync(Stream raw, Uri proxyUri, System.Net.IWebProxy proxy, string authority, CancellationToken cancellationToken)
        {
            System.Text.StringBuilder b = new System.Text.StringBuilder();
            b.Append("CONNECT ").Append(authority).Append(" HTTP/1.1\r\nHost: ").Append(authority).Append("\r\n");
            System.Net.NetworkCredential nc = proxy.Credentials != null ? proxy.Credentials.GetCredential(proxyUri, "Basic") : null;
            if (nc != null && !string.IsNullOrEmpty(nc.UserName))
            {
                string user = string.IsNullOrEmpty(nc.Domain) ? nc.UserName : nc.Domain + "\\" + nc.UserName;
                b.Append("Proxy-Authorization: Basic ")
                    .Append(Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(user + ":" + (nc.Password ?? ""))))
                    .Append("\r\n");
            }
            b.Append("\r\n");
            byte[] connect = System.Text.Encoding.ASCII.GetBytes(b.ToString());
            await raw.WriteAsync(connect, 0, connect.Length, cancellationToken).ConfigureAwait(false);
            await raw.FlushAsync(cancellationToken).ConfigureAwait(false);
            string head = await ReadHeadAsync(raw, cancellationToken).ConfigureAwait(false);
            string status = head.Split(new[] { "\r\n" }, StringSplitOptions.None)[0];
            string[] parts = status.Split(' ');
            if (parts.Length < 2 || !parts[0].StartsWith("HTTP/1.", StringComparison.Ordinal) || parts[1] != "200")
            {
                throw new WebSocketException("the proxy " + proxyUri.GetLeftPart(UriPartial.Authority) + " refused CONNECT: " + status
                    + (parts.Length > 1 && parts[1] == "407" ? " (only Basic credentials are sent, from the proxy's Credentials)" : ""));
            }
        }

        /// <summary>The response head up to the blank line, read byte by byte so no frame byte is taken.</summary>
        private static async Task<string> ReadHeadAsync(Stream s, CancellationToken cancellationToken)
        {
            MemoryStream head = new MemoryStream();
            byte[] one = new byte[1];
            int state = 0;
            while (state < 4)
            {
                if (await s.ReadAsync(one, 0, 1, cancellationToken).ConfigureAwait(false) != 1)
                {
                    throw new WebSocketException("the server closed during the WebSocket upgrade");
                }
                head.WriteByte(one[0]);
                if (head.Length > 16384)
                {
                    throw new WebSocketException("WebSocket upgrade response too long");
                }
                bool cr = one[0] == (byte)'\r';
                bool lf = one[0] == (byte)'\n';
                state = (state == 0 || state == 2) ? (cr ? state + 1 : 0) : (lf ? state + 1 : (cr ? 1 : 0));
            }
            return System.Text.Encoding.ASCII.GetString(head.ToArray(), 0, (int)head.Length - 4);
        }
    }
}
