// Signaling over raw QUIC with System.Net.Quic (ALPN fsp2p/1).
//
// System.Net.Quic has no datagram API in any released .NET (dotnet/runtime#53533),
// so this transport says Hello { relay_mode: Stream }: every relay frame, both
// ways, is the whole content of one unidirectional stream (PROTOCOL.md section 5).

using System.Net;
using System.Net.Quic;
using System.Net.Security;
using System.Runtime.Versioning;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using FlightSimP2P.Protocol;
using Microsoft.Extensions.Logging;

namespace FlightSimP2P.Client;

[SupportedOSPlatform("windows")]
[SupportedOSPlatform("linux")]
[SupportedOSPlatform("macos")]
internal sealed class QuicSignalingTransport : SignalingTransport
{
    /// <summary>Stream error code for aborting a relay stream we will not read (oversized).</summary>
    private const long StreamAbortCode = 0x52;

    /// <summary>
    /// Relay streams this client keeps open at once. The server allows 64 concurrent
    /// client-opened unidirectional streams; above this many in flight, frames are dropped
    /// rather than queued (latest state wins).
    /// </summary>
    private const int MaxRelayStreamsInFlight = 32;

    private readonly QuicConnection _connection;
    private readonly QuicStream _control;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly CancellationTokenSource _lifetime = new();
    private readonly FrameDecoder _decoder = new(Wire.DefaultMaxFrameBytes);
    private readonly byte[] _readBuffer = new byte[16 * 1024];
    private Task? _acceptLoop;
    private int _relayInFlight;
    private int _disposed;

    private QuicSignalingTransport(QuicConnection connection, QuicStream control, ILogger logger)
    {
        _connection = connection;
        _control = control;
        _logger = logger;
    }

    public override SignalingTransportKind Kind => SignalingTransportKind.Quic;

    public override RelayMode RelayMode => RelayMode.Stream;

    public static async Task<SignalingTransport> ConnectAsync(WebRTCP2POptions options, ILogger logger, CancellationToken cancellationToken)
    {
        if (!QuicConnection.IsSupported)
        {
            throw new PlatformNotSupportedException("System.Net.Quic is not supported on this platform (Linux needs libmsquic; macOS is not supported).");
        }

        var auth = new SslClientAuthenticationOptions
        {
            ApplicationProtocols = new List<SslApplicationProtocol> { new(Wire.Alpn) },
            TargetHost = options.ServerHost,
        };

        if (!string.IsNullOrWhiteSpace(options.CertificateSha256))
        {
            byte[] pin = Wire.FromHex(options.CertificateSha256);
            if (pin.Length != 32)
            {
                throw new ArgumentException("CertificateSha256 must be 32 bytes (64 hex digits).", nameof(options));
            }

            // Development: a self-signed certificate is accepted if and only if its hash is the pinned one.
            auth.RemoteCertificateValidationCallback = (_, certificate, _, _) => MatchesPin(certificate, pin);
        }
        else if (options.TrustedRootCertificate is { } root)
        {
            var policy = new X509ChainPolicy
            {
                TrustMode = X509ChainTrustMode.CustomRootTrust,
                RevocationMode = X509RevocationMode.NoCheck,
            };
            policy.CustomTrustStore.Add(root);
            auth.CertificateChainPolicy = policy;
        }

        // Otherwise: normal validation against the system's trusted CAs (production).
        var quicOptions = new QuicClientConnectionOptions
        {
            RemoteEndPoint = new DnsEndPoint(options.ServerHost, options.QuicPort),
            ClientAuthenticationOptions = auth,
            DefaultStreamErrorCode = StreamAbortCode,
            // Disposing without an explicit close must not read as "leave for good" (code 0).
            DefaultCloseErrorCode = Wire.CloseReconnecting,
            MaxInboundUnidirectionalStreams = 256,
            MaxInboundBidirectionalStreams = 0,
            IdleTimeout = TimeSpan.FromSeconds(30),
            KeepAliveInterval = options.KeepAliveInterval,
            HandshakeTimeout = options.ConnectTimeout,
        };

        QuicConnection connection = await QuicConnection.ConnectAsync(quicOptions, cancellationToken).ConfigureAwait(false);
        try
        {
            QuicStream control = await connection.OpenOutboundStreamAsync(QuicStreamType.Bidirectional, cancellationToken).ConfigureAwait(false);
            var transport = new QuicSignalingTransport(connection, control, logger);
            transport._acceptLoop = Task.Run(transport.AcceptRelayStreamsAsync);
            logger.LogInformation("QUIC connected to {Remote} (ALPN {Alpn})", connection.RemoteEndPoint, connection.NegotiatedApplicationProtocol);
            return transport;
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private static bool MatchesPin(X509Certificate? certificate, byte[] pin)
    {
        if (certificate is null)
        {
            return false;
        }

        byte[] hash = SHA256.HashData(certificate.GetRawCertData());
        return CryptographicOperations.FixedTimeEquals(hash, pin);
    }

    protected override void OnMaxFrameBytesChanged(int value) => _decoder.MaxFrameBytes = value;

    public override async Task SendAsync(ClientMsg message, CancellationToken cancellationToken)
    {
        byte[] frame = Wire.EncodeFrame(message);
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await _control.WriteAsync(frame, cancellationToken).ConfigureAwait(false);
        }
        catch (QuicException e)
        {
            throw Lost("QUIC control stream write failed", e, e.ApplicationErrorCode);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    public override bool TrySendRelay(uint to, ReadOnlySpan<byte> payload)
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            return false;
        }

        if (Interlocked.Increment(ref _relayInFlight) > MaxRelayStreamsInFlight)
        {
            Interlocked.Decrement(ref _relayInFlight);
            Interlocked.Increment(ref RelayDroppedCount);
            return false;
        }

        byte[] frame = new byte[Wire.VarintLength(to) + payload.Length];
        int header = Wire.WriteVarint(frame, 0, to);
        payload.CopyTo(frame.AsSpan(header));
        _ = SendRelayStreamAsync(frame);
        return true;
    }

    private async Task SendRelayStreamAsync(byte[] frame)
    {
        try
        {
            QuicStream stream = await _connection.OpenOutboundStreamAsync(QuicStreamType.Unidirectional, _lifetime.Token).ConfigureAwait(false);
            await using (stream.ConfigureAwait(false))
            {
                // One frame, then FIN: the server reads the stream to its end.
                await stream.WriteAsync(frame, completeWrites: true, _lifetime.Token).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is QuicException or OperationCanceledException or ObjectDisposedException)
        {
            Interlocked.Increment(ref RelayDroppedCount);
        }
        finally
        {
            Interlocked.Decrement(ref _relayInFlight);
        }
    }

    private async Task AcceptRelayStreamsAsync()
    {
        try
        {
            while (!_lifetime.IsCancellationRequested)
            {
                QuicStream stream = await _connection.AcceptInboundStreamAsync(_lifetime.Token).ConfigureAwait(false);
                if (stream.Type != QuicStreamType.Unidirectional)
                {
                    // The server never opens bidirectional streams; refuse anything else.
                    stream.Abort(QuicAbortDirection.Both, StreamAbortCode);
                    await stream.DisposeAsync().ConfigureAwait(false);
                    continue;
                }

                _ = ReadRelayStreamAsync(stream);
            }
        }
        catch (Exception e) when (e is QuicException or OperationCanceledException or ObjectDisposedException)
        {
            // Connection closed: the control stream reader reports why.
        }
    }

    private async Task ReadRelayStreamAsync(QuicStream stream)
    {
        await using (stream.ConfigureAwait(false))
        {
            int max = MaxRelayFrameBytes;
            byte[] buffer = new byte[max + 1];
            int length = 0;
            try
            {
                while (true)
                {
                    int n = await stream.ReadAsync(buffer.AsMemory(length), _lifetime.Token).ConfigureAwait(false);
                    if (n == 0)
                    {
                        break;
                    }

                    length += n;
                    if (length > max)
                    {
                        stream.Abort(QuicAbortDirection.Read, StreamAbortCode);
                        Interlocked.Increment(ref RelayDroppedCount);
                        return;
                    }
                }

                int payloadAt = Wire.ParseRelayFrame(buffer, 0, length, out uint from);
                RelayReceived?.Invoke(from, buffer.AsSpan(payloadAt, length - payloadAt));
            }
            catch (ProtocolException)
            {
                Interlocked.Increment(ref RelayDroppedCount);
            }
            catch (Exception e) when (e is QuicException or OperationCanceledException or ObjectDisposedException)
            {
                Interlocked.Increment(ref RelayDroppedCount);
            }
            catch (Exception e)
            {
                _logger.LogWarning(e, "relay frame handler threw");
            }
        }
    }

    public override async ValueTask<ServerMsg?> ReceiveAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            if (_decoder.TryNextFrame(out byte[] body))
            {
                return ServerMsg.Decode(body);
            }

            int n;
            try
            {
                n = await _control.ReadAsync(_readBuffer, cancellationToken).ConfigureAwait(false);
            }
            catch (QuicException e)
            {
                throw Lost("QUIC connection lost", e, e.ApplicationErrorCode);
            }

            if (n == 0)
            {
                return null;
            }

            _decoder.Push(_readBuffer, 0, n);
        }
    }

    public override async ValueTask CloseAsync(bool leave, CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            return;
        }

        _lifetime.Cancel();
        try
        {
            await _connection.CloseAsync(leave ? Wire.CloseLeave : Wire.CloseReconnecting, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is QuicException or OperationCanceledException or ObjectDisposedException)
        {
            // Already closed.
        }
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _lifetime.Cancel();
        try
        {
            await _control.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is QuicException or ObjectDisposedException)
        {
        }

        await _connection.DisposeAsync().ConfigureAwait(false);
        if (_acceptLoop is not null)
        {
            try
            {
                await _acceptLoop.ConfigureAwait(false);
            }
            catch (Exception)
            {
            }
        }

        _lifetime.Dispose();
        _writeLock.Dispose();
    }
}
