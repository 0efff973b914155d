// Signaling and relay over a WebSocket on the server's HTTP port, for platforms
// without System.Net.Quic (macOS) and networks that block UDP.
//
// Framing (the server's planned GET /ws endpoint): every WebSocket message is
// binary; the first byte says what follows:
//   0x00  a control message: its postcard body, no length prefix (the WebSocket
//         message is the frame);
//   0x01  a relay frame: varint(peer) || payload, exactly as PROTOCOL.md section 5.
// Closing with status 1000 (normal) leaves for good, like QUIC close code 0; any
// other close (this client uses 4000 when it means to resume) keeps the seat.

using System.Net.WebSockets;
using System.Threading.Channels;
using FlightSimP2P.Protocol;
using Microsoft.Extensions.Logging;

namespace FlightSimP2P.Client;

internal sealed class WebSocketSignalingTransport : SignalingTransport
{
    /// <summary>Close status this client sends when it will reconnect with its resume token.</summary>
    public const WebSocketCloseStatus CloseReconnecting = (WebSocketCloseStatus)4000;

    /// <summary>Relay frames waiting for the socket; more drop the oldest (latest state wins).</summary>
    private const int RelayQueueCapacity = 64;

    private readonly ClientWebSocket _socket;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly CancellationTokenSource _lifetime = new();
    private readonly Channel<byte[]> _relayOut;
    private readonly Task _relayWriter;
    private byte[] _receiveBuffer = new byte[4096];
    private int _disposed;

    private WebSocketSignalingTransport(ClientWebSocket socket, ILogger logger)
    {
        _socket = socket;
        _logger = logger;
        _relayOut = Channel.CreateBounded<byte[]>(
            new BoundedChannelOptions(RelayQueueCapacity)
            {
                FullMode = BoundedChannelFullMode.DropOldest,
                SingleReader = true,
                SingleWriter = false,
            },
            _ => Interlocked.Increment(ref RelayDroppedCount));
        _relayWriter = Task.Run(WriteRelayFramesAsync);
    }

    public override SignalingTransportKind Kind => SignalingTransportKind.WebSocket;

    /// <summary>On a WebSocket the relay mode field is not used for delivery (frames come as 0x01 messages); Stream is the honest value.</summary>
    public override RelayMode RelayMode => RelayMode.Stream;

    public static async Task<SignalingTransport> ConnectAsync(WebRTCP2POptions options, ILogger logger, CancellationToken cancellationToken)
    {
        Uri uri = options.EffectiveWebSocketUri;
        var socket = new ClientWebSocket();
        socket.Options.KeepAliveInterval = options.KeepAliveInterval;
        socket.Options.KeepAliveTimeout = options.KeepAliveInterval * 3;
        if (options.TrustedRootCertificate is { } root && uri.Scheme == "wss")
        {
            socket.Options.RemoteCertificateValidationCallback = (_, certificate, chain, errors) =>
            {
                if (errors == System.Net.Security.SslPolicyErrors.None)
                {
                    return true;
                }

                if (certificate is null || chain is null)
                {
                    return false;
                }

                using var custom = new System.Security.Cryptography.X509Certificates.X509Chain();
                custom.ChainPolicy.TrustMode = System.Security.Cryptography.X509Certificates.X509ChainTrustMode.CustomRootTrust;
                custom.ChainPolicy.RevocationMode = System.Security.Cryptography.X509Certificates.X509RevocationMode.NoCheck;
                custom.ChainPolicy.CustomTrustStore.Add(root);
                return custom.Build(new System.Security.Cryptography.X509Certificates.X509Certificate2(certificate));
            };
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.ConnectTimeout);
        try
        {
            await socket.ConnectAsync(uri, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            socket.Dispose();
            if (e is OperationCanceledException && !cancellationToken.IsCancellationRequested)
            {
                throw new TimeoutException($"WebSocket {uri} did not connect within {options.ConnectTimeout}", e);
            }

            throw;
        }

        logger.LogInformation("WebSocket connected to {Uri}", uri);
        return new WebSocketSignalingTransport(socket, logger);
    }

    public override async Task SendAsync(ClientMsg message, CancellationToken cancellationToken)
    {
        byte[] data = Wire.EncodeWsControl(message);
        await _sendLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await _socket.SendAsync(new ReadOnlyMemory<byte>(data), WebSocketMessageType.Binary, endOfMessage: true, cancellationToken).ConfigureAwait(false);
        }
        catch (WebSocketException e)
        {
            throw Lost("WebSocket send failed", e);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    public override bool TrySendRelay(uint to, ReadOnlySpan<byte> payload)
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            return false;
        }

        byte[] message = new byte[1 + Wire.VarintLength(to) + payload.Length];
        message[0] = (byte)WsMessageKind.Relay;
        int header = Wire.WriteVarint(message, 1, to);
        payload.CopyTo(message.AsSpan(1 + header));
        return _relayOut.Writer.TryWrite(message);
    }

    private async Task WriteRelayFramesAsync()
    {
        try
        {
            await foreach (byte[] message in _relayOut.Reader.ReadAllAsync(_lifetime.Token).ConfigureAwait(false))
            {
                await _sendLock.WaitAsync(_lifetime.Token).ConfigureAwait(false);
                try
                {
                    await _socket.SendAsync(new ReadOnlyMemory<byte>(message), WebSocketMessageType.Binary, endOfMessage: true, _lifetime.Token).ConfigureAwait(false);
                }
                finally
                {
                    _sendLock.Release();
                }
            }
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException or ObjectDisposedException)
        {
            // The connection is gone; the receive side reports it.
        }
    }

    public override async ValueTask<ServerMsg?> ReceiveAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            int length = await ReceiveMessageAsync(cancellationToken).ConfigureAwait(false);
            if (length < 0)
            {
                return null;
            }

            int at = Wire.ParseWsMessage(_receiveBuffer, 0, length, out WsMessageKind kind);
            int size = length - at;
            if (kind == WsMessageKind.Control)
            {
                if (size > MaxFrameBytes)
                {
                    throw new ProtocolException(ErrorCode.FrameTooLarge, $"control message of {size} bytes exceeds {MaxFrameBytes}");
                }

                return ServerMsg.Decode(_receiveBuffer, at, size);
            }

            if (size > MaxRelayFrameBytes)
            {
                Interlocked.Increment(ref RelayDroppedCount);
                continue;
            }

            try
            {
                int payloadAt = Wire.ParseRelayFrame(_receiveBuffer, at, size, out uint from);
                RelayReceived?.Invoke(from, _receiveBuffer.AsSpan(payloadAt, length - payloadAt));
            }
            catch (ProtocolException)
            {
                Interlocked.Increment(ref RelayDroppedCount);
            }
            catch (Exception e)
            {
                _logger.LogWarning(e, "relay frame handler threw");
            }
        }
    }

    /// <summary>Reads one whole binary message into _receiveBuffer; returns its length, or -1 on close.</summary>
    private async ValueTask<int> ReceiveMessageAsync(CancellationToken cancellationToken)
    {
        int limit = 1 + Math.Max(MaxFrameBytes, MaxRelayFrameBytes);
        int length = 0;
        while (true)
        {
            if (length == _receiveBuffer.Length)
            {
                if (length >= limit)
                {
                    throw new ProtocolException(ErrorCode.FrameTooLarge, $"WebSocket message longer than {limit} bytes");
                }

                Array.Resize(ref _receiveBuffer, Math.Min(limit, _receiveBuffer.Length * 2));
            }

            ValueWebSocketReceiveResult result;
            try
            {
                result = await _socket.ReceiveAsync(_receiveBuffer.AsMemory(length), cancellationToken).ConfigureAwait(false);
            }
            catch (WebSocketException e)
            {
                throw Lost("WebSocket connection lost", e);
            }

            if (result.MessageType == WebSocketMessageType.Close)
            {
                _logger.LogInformation("WebSocket closed by the server: {Status} {Description}", _socket.CloseStatus, _socket.CloseStatusDescription);
                return -1;
            }

            if (result.MessageType != WebSocketMessageType.Binary)
            {
                throw new ProtocolException(ErrorCode.BadMessage, "text WebSocket message; the protocol is binary");
            }

            length += result.Count;
            if (result.EndOfMessage)
            {
                return length;
            }
        }
    }

    public override async ValueTask CloseAsync(bool leave, CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            return;
        }

        _relayOut.Writer.TryComplete();
        try
        {
            if (_socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                timeout.CancelAfter(TimeSpan.FromSeconds(2));
                await _sendLock.WaitAsync(timeout.Token).ConfigureAwait(false);
                try
                {
                    await _socket.CloseOutputAsync(
                        leave ? WebSocketCloseStatus.NormalClosure : CloseReconnecting,
                        leave ? "leave" : "reconnecting",
                        timeout.Token).ConfigureAwait(false);
                }
                finally
                {
                    _sendLock.Release();
                }
            }
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException or ObjectDisposedException)
        {
            // Already closed or too slow to close politely.
        }
        finally
        {
            _lifetime.Cancel();
        }
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _relayOut.Writer.TryComplete();
        _lifetime.Cancel();
        _socket.Abort();
        try
        {
            await _relayWriter.ConfigureAwait(false);
        }
        catch (Exception)
        {
        }

        _socket.Dispose();
        _lifetime.Dispose();
        _sendLock.Dispose();
    }
}
