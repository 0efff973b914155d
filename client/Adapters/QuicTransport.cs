// net9.0+ adapter over System.Net.Quic: the control stream (varint-framed postcard)
// and one unidirectional stream per relay frame (RelayMode.Stream: System.Net.Quic
// has no datagram API). Decisions (framing, certificate acceptance) are in the core.
#if NET9_0_OR_GREATER
using System.Net;
using System.Net.Quic;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    public sealed partial class DefaultTransportFactory
    {
        static partial void QuicIsSupported(ref bool supported) => supported = QuicConnection.IsSupported;

        partial void ConnectQuic(CancellationToken cancellationToken, ref Task<ISignalingTransport> result) =>
            result = QuicTransport.ConnectAsync(_options, cancellationToken);
    }

    internal sealed class QuicTransport : ISignalingTransport
    {
        private readonly QuicConnection _conn;
        private readonly QuicStream _control;
        private readonly FrameDecoder _decoder = new FrameDecoder(Wire.DefaultMaxFrameBytes);
        private readonly CancellationTokenSource _life = new CancellationTokenSource();
        private readonly byte[] _buffer = new byte[16384];
        private Action<uint, byte[]> _onRelay;
        private int _relayInFlight;

        private QuicTransport(QuicConnection conn, QuicStream control)
        {
            _conn = conn;
            _control = control;
        }

        public Action<uint, byte[]> RelayReceived { set => _onRelay = value; }

        public ushort CloseCode { get; private set; }

        public static async Task<ISignalingTransport> ConnectAsync(WebRTCP2POptions o, CancellationToken ct)
        {
            byte[] pin = string.IsNullOrWhiteSpace(o.CertificateSha256) ? null : Wire.FromHex(o.CertificateSha256);
            X509Certificate2 root = o.TrustedRootCertificate == null ? null : X509CertificateLoader.LoadCertificate(o.TrustedRootCertificate);
            var auth = new SslClientAuthenticationOptions
            {
                ApplicationProtocols = new List<SslApplicationProtocol> { new SslApplicationProtocol(Wire.Alpn) },
                TargetHost = o.ServerHost,
                RemoteCertificateValidationCallback = (_, cert, chain, errors) =>
                {
                    bool pinOk = pin != null && cert != null
                        && CryptographicOperations.FixedTimeEquals(SHA256.HashData(cert.GetRawCertData()), pin);
                    bool rootOk = false;
                    if (root != null && cert != null)
                    {
                        using var custom = new X509Chain();
                        custom.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                        custom.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                        custom.ChainPolicy.CustomTrustStore.Add(root);
                        rootOk = custom.Build(new X509Certificate2(cert));
                    }
                    return CertificatePolicy.Accept((TlsPolicyErrors)(int)errors, pin != null, pinOk, root != null, rootOk);
                },
            };
            var options = new QuicClientConnectionOptions
            {
                RemoteEndPoint = new DnsEndPoint(o.ServerHost, o.QuicPort),
                ClientAuthenticationOptions = auth,
                DefaultStreamErrorCode = 1,
                DefaultCloseErrorCode = Wire.CloseReconnecting,
                MaxInboundUnidirectionalStreams = 256,
                MaxInboundBidirectionalStreams = 0,
                IdleTimeout = TimeSpan.FromSeconds(30),
                KeepAliveInterval = o.KeepAliveInterval,
                HandshakeTimeout = o.ConnectTimeout,
            };
            QuicConnection conn = await QuicConnection.ConnectAsync(options, ct).ConfigureAwait(false);
            try
            {
                QuicStream control = await conn.OpenOutboundStreamAsync(QuicStreamType.Bidirectional, ct).ConfigureAwait(false);
                var t = new QuicTransport(conn, control);
                _ = Task.Run(t.AcceptRelayAsync);
                return t;
            }
            catch
            {
                await conn.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        }

        public async Task SendAsync(ClientMsg message, CancellationToken ct) =>
            await _control.WriteAsync(Wire.EncodeFrame(message), ct).ConfigureAwait(false);

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
                    await using QuicStream s = await _conn.OpenOutboundStreamAsync(QuicStreamType.Unidirectional, _life.Token).ConfigureAwait(false);
                    await s.WriteAsync(frame, completeWrites: true, _life.Token).ConfigureAwait(false);
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
                    QuicStream s = await _conn.AcceptInboundStreamAsync(_life.Token).ConfigureAwait(false);
                    _ = Task.Run(async () =>
                    {
                        await using (s)
                        {
                            var ms = new MemoryStream();
                            await s.CopyToAsync(ms, _life.Token).ConfigureAwait(false);
                            byte[] data = ms.ToArray();
                            int off = Wire.ParseRelayFrame(data, 0, data.Length, out uint from);
                            _onRelay?.Invoke(from, data[off..]);
                        }
                    });
                }
            }
            catch (Exception)
            {
            }
        }

        public async Task<ServerMsg> ReceiveAsync(CancellationToken ct)
        {
            try
            {
                while (true)
                {
                    if (_decoder.TryNextFrame(out byte[] body))
                    {
                        return ServerMsg.Decode(body);
                    }
                    int n = await _control.ReadAsync(_buffer, ct).ConfigureAwait(false);
                    if (n == 0)
                    {
                        return null;
                    }
                    _decoder.Push(_buffer, 0, n);
                }
            }
            catch (QuicException e) when (e.ApplicationErrorCode is long code)
            {
                CloseCode = (ushort)code;
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
