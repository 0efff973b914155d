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
        private ushort _closeCode;

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
        /// that callback: our own TLS stream and upgrade (PinnedUpgrade).
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
                WebSocket pinned = await PinnedUpgrade.ConnectAsync(target, trust, keepAlive, cancellationToken).ConfigureAwait(false);
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
                        int status = r.CloseStatus.HasValue ? (int)r.CloseStatus.Value : 0;
                        _closeCode = status >= 4000 && status < 5000 ? (ushort)(status - 4000) : (ushort)0;
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
                    using (CancellationTokenSource cts = new CancellationTokenSource(2000))
                    {
                        await _ws.CloseOutputAsync(leave ? WebSocketCloseStatus.NormalClosure : (WebSocketCloseStatus)4000,
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
    /// WebSocketTrust's on mono and every .NET alike.
    /// </summary>
    internal static class PinnedUpgrade
    {
        private const string Guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

        public static async Task<WebSocket> ConnectAsync(Uri target, WebSocketTrust trust, TimeSpan keepAlive, CancellationToken cancellationToken)
        {
            System.Net.Sockets.TcpClient tcp = new System.Net.Sockets.TcpClient();
            SslStream tls = null;
            using (cancellationToken.Register(() => tcp.Close()))
            {
                try
                {
                    int port = target.IsDefaultPort ? 443 : target.Port;
                    await tcp.ConnectAsync(target.DnsSafeHost, port).ConfigureAwait(false);
                    tcp.NoDelay = true;
                    tls = new SslStream(tcp.GetStream(), false, trust.Validate);
                    await tls.AuthenticateAsClientAsync(target.DnsSafeHost).ConfigureAwait(false);
                    byte[] nonce = new byte[16];
                    using (RandomNumberGenerator rng = RandomNumberGenerator.Create())
                    {
                        rng.GetBytes(nonce);
                    }
                    string key = Convert.ToBase64String(nonce);
                    string host = target.IsDefaultPort ? target.Host : target.Host + ":" + port;
                    byte[] request = System.Text.Encoding.ASCII.GetBytes("GET " + target.PathAndQuery + " HTTP/1.1\r\nHost: " + host
                        + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key
                        + "\r\nSec-WebSocket-Version: 13\r\n\r\n");
                    await tls.WriteAsync(request, 0, request.Length, cancellationToken).ConfigureAwait(false);
                    await tls.FlushAsync(cancellationToken).ConfigureAwait(false);
                    string head = await ReadHeadAsync(tls, cancellationToken).ConfigureAwait(false);
                    string[] lines = head.Split(new[] { "\r\n" }, StringSplitOptions.None);
                    if (lines.Length == 0 || !lines[0].StartsWith("HTTP/1.1 101", StringComparison.Ordinal))
                    {
                        throw new WebSocketException("the server refused the WebSocket upgrade: " + (lines.Length > 0 ? lines[0] : ""));
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
