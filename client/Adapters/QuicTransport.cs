// net9.0+ adapter over System.Net.Quic: the control stream (varint-framed postcard)
// and one unidirectional stream per relay frame (RelayMode.Stream: System.Net.Quic
// has no datagram API). Decisions (framing, certificate acceptance) are in the core.
//
// System.Net.Quic's types are named by alias only (no `using System.Net.Quic;`).
// C# 7.2: mono compiles this file against the declared surface
// (tests/csharp/surface/QuicSurface.cs) on every tests/csharp/run.sh.
#if NET9_0_OR_GREATER
using System;
using System.Collections.Generic;
using System.IO;
using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Threading;
using System.Threading.Tasks;
using FlightSimP2P.Protocol;
using NetQuicConnection = System.Net.Quic.QuicConnection;
using NetQuicStream = System.Net.Quic.QuicStream;
using NetQuicStreamType = System.Net.Quic.QuicStreamType;
using NetQuicException = System.Net.Quic.QuicException;
using NetQuicClientOptions = System.Net.Quic.QuicClientConnectionOptions;

namespace FlightSimP2P.Client
{
    public sealed partial class DefaultTransportFactory
    {
        static partial void QuicIsSupported(ref bool supported)
        {
            supported = NetQuicConnection.IsSupported;
        }

        partial void ConnectQuic(CancellationToken cancellationToken, ref Task<ISignalingTransport> result)
        {
            result = QuicTransport.ConnectAsync(_options, cancellationToken);
        }
    }

    public partial class WebRTCP2PService
    {
        partial void QuicRegionProber(WebRTCP2POptions at, ref IRegionProber prober)
        {
            if (NetQuicConnection.IsSupported)
            {
                prober = new QuicRegionProber(at);
            }
        }
    }

    /// <summary>
    /// Regions (PROTOCOL.md section 11) for a client on QUIC: the time of a QUIC handshake to
    /// each node's QUIC address (its listed certificate hash pinned; none: a CA-signed
    /// certificate), closed at once with code 0; a node without a QUIC address gets a TCP
    /// connect. The node list comes over HTTP as for every client.
    /// </summary>
    internal sealed class QuicRegionProber : IRegionProber
    {
        private readonly TcpRegionProber _tcp;

        public QuicRegionProber(WebRTCP2POptions options)
        {
            _tcp = new TcpRegionProber(options.CertificateSha256);
        }

        public Task<string> GetNodesAsync(Uri nodesUri, CancellationToken cancellationToken)
        {
            return _tcp.GetNodesAsync(nodesUri, cancellationToken);
        }

        public async Task RoundTripAsync(ListedNode node, CancellationToken cancellationToken)
        {
            int colon = node.Quic.LastIndexOf(':');
            int port;
            if (colon <= 0 || !int.TryParse(node.Quic.Substring(colon + 1), out port))
            {
                await _tcp.RoundTripAsync(node, cancellationToken).ConfigureAwait(false);
                return;
            }
            string host = node.Quic.Substring(0, colon).Trim('[', ']');
            byte[] pin = node.CertSha256;
            SslClientAuthenticationOptions auth = new SslClientAuthenticationOptions();
            auth.ApplicationProtocols = new List<SslApplicationProtocol> { new SslApplicationProtocol(Wire.Alpn) };
            auth.TargetHost = host;
            auth.RemoteCertificateValidationCallback = (sender, cert, chain, errors) =>
            {
                bool pinOk = pin != null && cert != null && QuicTransport.PinMatches(cert, pin);
                return CertificatePolicy.Accept((TlsPolicyErrors)(int)errors, pin != null, pinOk, false, false);
            };
            NetQuicClientOptions options = new NetQuicClientOptions();
            options.RemoteEndPoint = new DnsEndPoint(host, port);
            options.ClientAuthenticationOptions = auth;
            options.DefaultStreamErrorCode = 1;
            options.DefaultCloseErrorCode = 0;
            options.MaxInboundUnidirectionalStreams = 0;
            options.MaxInboundBidirectionalStreams = 0;
            options.IdleTimeout = TimeSpan.FromSeconds(5);
            options.HandshakeTimeout = TimeSpan.FromMilliseconds(Regions.DeadlineMs);
            NetQuicConnection conn = await NetQuicConnection.ConnectAsync(options, cancellationToken).ConfigureAwait(false);
            try
            {
                await conn.CloseAsync(0).ConfigureAwait(false);
            }
            finally
            {
                await conn.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    internal sealed class QuicTransport : ISignalingTransport
    {
        private readonly NetQuicConnection _conn;
        private readonly NetQuicStream _control;
        private readonly FrameDecoder _decoder = new FrameDecoder(Wire.DefaultMaxFrameBytes);
        private readonly CancellationTokenSource _life = new CancellationTokenSource();
        private readonly byte[] _buffer = new byte[16384];
        private Action<uint, byte[]> _onRelay;
        private int _relayInFlight;

        private QuicTransport(NetQuicConnection conn, NetQuicStream control)
        {
            _conn = conn;
            _control = control;
        }

        public Action<uint, byte[]> RelayReceived
        {
            set { _onRelay = value; }
        }

        private ushort _closeCode = CloseVerdict.NoCode;

        /// <summary>The application close code, or CloseVerdict.NoCode (lost without one).</summary>
        public ushort CloseCode
        {
            get { return _closeCode; }
            private set { _closeCode = value; }
        }

        public static async Task<ISignalingTransport> ConnectAsync(WebRTCP2POptions o, CancellationToken ct)
        {
            byte[] pin = string.IsNullOrWhiteSpace(o.CertificateSha256) ? null : Wire.FromHex(o.CertificateSha256);
            X509Certificate2 root = o.TrustedRootCertificate == null ? null : X509CertificateLoader.LoadCertificate(o.TrustedRootCertificate);
            SslClientAuthenticationOptions auth = new SslClientAuthenticationOptions();
            auth.ApplicationProtocols = new List<SslApplicationProtocol> { new SslApplicationProtocol(Wire.Alpn) };
            auth.TargetHost = o.ServerHost;
            auth.RemoteCertificateValidationCallback = (sender, cert, chain, errors) =>
            {
                bool pinOk = pin != null && cert != null && PinMatches(cert, pin);
                bool rootOk = root != null && cert != null && ChainsTo(cert, root);
                return CertificatePolicy.Accept((TlsPolicyErrors)(int)errors, pin != null, pinOk, root != null, rootOk);
            };
            NetQuicClientOptions options = new NetQuicClientOptions();
            options.RemoteEndPoint = new DnsEndPoint(o.ServerHost, o.QuicPort);
            options.ClientAuthenticationOptions = auth;
            options.DefaultStreamErrorCode = 1;
            options.DefaultCloseErrorCode = Wire.CloseReconnecting;
            options.MaxInboundUnidirectionalStreams = 256;
            options.MaxInboundBidirectionalStreams = 0;
            options.IdleTimeout = TimeSpan.FromSeconds(30);
            options.KeepAliveInterval = o.KeepAliveInterval;
            options.HandshakeTimeout = o.ConnectTimeout;
            NetQuicConnection conn = await NetQuicConnection.ConnectAsync(options, ct).ConfigureAwait(false);
            try
            {
                NetQuicStream control = await conn.OpenOutboundStreamAsync(NetQuicStreamType.Bidirectional, ct).ConfigureAwait(false);
                QuicTransport t = new QuicTransport(conn, control);
                _ = Task.Run(new Func<Task>(t.AcceptRelayAsync));
                return t;
            }
            catch
            {
                await conn.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        }

        /// <summary>SHA-256 of the DER certificate equals the pinned hash (constant time).</summary>
        internal static bool PinMatches(X509Certificate cert, byte[] pin)
        {
            using (SHA256 sha = SHA256.Create())
            {
                return CryptographicOperations.FixedTimeEquals(sha.ComputeHash(cert.GetRawCertData()), pin);
            }
        }

        /// <summary>The certificate chains to root (a private CA), whatever the system store trusts.</summary>
        private static bool ChainsTo(X509Certificate cert, X509Certificate2 root)
        {
            using (X509Chain chain = new X509Chain())
            {
                chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                chain.ChainPolicy.VerificationFlags = X509VerificationFlags.AllowUnknownCertificateAuthority;
                chain.ChainPolicy.ExtraStore.Add(root);
                if (!chain.Build(new X509Certificate2(cert)) || chain.ChainElements.Count == 0)
                {
                    return false;
                }
                byte[] top = chain.ChainElements[chain.ChainElements.Count - 1].Certificate.RawData;
                return CryptographicOperations.FixedTimeEquals(top, root.RawData);
            }
        }

        public async Task SendAsync(ClientMsg message, CancellationToken ct)
        {
            byte[] frame = Wire.EncodeFrame(message);
            await _control.WriteAsync(new ReadOnlyMemory<byte>(frame), ct).ConfigureAwait(false);
        }

        public bool TrySendRelay(uint to, byte[] payload)
        {
            if (Interlocked.Increment(ref _relayInFlight) > 8)
            {
                Interlocked.Decrement(ref _relayInFlight);
                return false;
            }
            byte[] frame = Wire.EncodeRelayFrame(to, payload, 0, payload.Length);
            _ = Task.Run(async () =>
            {
                try
                {
                    NetQuicStream s = await _conn.OpenOutboundStreamAsync(NetQuicStreamType.Unidirectional, _life.Token).ConfigureAwait(false);
                    try
                    {
                        await s.WriteAsync(new ReadOnlyMemory<byte>(frame), true, _life.Token).ConfigureAwait(false);
                    }
                    finally
                    {
                        await s.DisposeAsync().ConfigureAwait(false);
                    }
                }
                catch (Exception)
                {
                }
                finally
                {
                    Interlocked.Decrement(ref _relayInFlight);
                }
            });
            return true;
        }

        private async Task AcceptRelayAsync()
        {
            try
            {
                while (true)
                {
                    NetQuicStream s = await _conn.AcceptInboundStreamAsync(_life.Token).ConfigureAwait(false);
                    _ = Task.Run(() => ReadRelayAsync(s));
                }
            }
            catch (Exception)
            {
            }
        }

        private async Task ReadRelayAsync(NetQuicStream s)
        {
            try
            {
                MemoryStream ms = new MemoryStream();
                await s.CopyToAsync(ms, 81920, _life.Token).ConfigureAwait(false);
                byte[] data = ms.ToArray();
                uint from;
                int off = Wire.ParseRelayFrame(data, 0, data.Length, out from);
                byte[] payload = new byte[data.Length - off];
                Buffer.BlockCopy(data, off, payload, 0, payload.Length);
                Action<uint, byte[]> cb = _onRelay;
                if (cb != null)
                {
                    cb(from, payload);
                }
            }
            catch (Exception)
            {
                // A broken relay stream loses one frame; the control stream notices a dead connection.
            }
            finally
            {
                await s.DisposeAsync().ConfigureAwait(false);
            }
        }

        public async Task<ServerMsg> ReceiveAsync(CancellationToken ct)
        {
            try
            {
                while (true)
                {
                    byte[] body;
                    if (_decoder.TryNextFrame(out body))
                    {
                        return ServerMsg.Decode(body);
                    }
                    int n = await _control.ReadAsync(new Memory<byte>(_buffer), ct).ConfigureAwait(false);
                    if (n == 0)
                    {
                        return null;
                    }
                    _decoder.Push(_buffer, 0, n);
                }
            }
            catch (NetQuicException e) when (e.ApplicationErrorCode.HasValue)
            {
                CloseCode = (ushort)e.ApplicationErrorCode.Value;
                throw;
            }
        }

        public async Task CloseAsync(bool leave)
        {
            _life.Cancel();
            try
            {
                await _conn.CloseAsync(leave ? Wire.CloseLeave : Wire.CloseReconnecting).ConfigureAwait(false);
            }
            finally
            {
                await _conn.DisposeAsync().ConfigureAwait(false);
            }
        }
    }
}
#endif
