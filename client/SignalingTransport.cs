// The signaling connection behind one interface: raw QUIC or WebSocket.
// Both carry the control messages of PROTOCOL.md and relay frames; only the
// framing differs (QUIC: length-prefixed frames on one bidirectional stream and
// one unidirectional stream per relay frame; WebSocket: one binary message per
// control message or relay frame, first byte 0x00 or 0x01).

using System.Net.Quic;
using FlightSimP2P.Protocol;
using Microsoft.Extensions.Logging;

namespace FlightSimP2P.Client;

/// <summary>Relay frame received: sender id and the payload (valid only during the call).</summary>
internal delegate void RelayFrameHandler(uint from, ReadOnlySpan<byte> payload);

internal abstract class SignalingTransport : IAsyncDisposable
{
    private int _maxFrameBytes = Wire.DefaultMaxFrameBytes;

    public abstract SignalingTransportKind Kind { get; }

    /// <summary>What to put in Hello.relay_mode.</summary>
    public abstract RelayMode RelayMode { get; }

    /// <summary>Called for every relay frame the server delivers, on a background thread.</summary>
    public RelayFrameHandler? RelayReceived { get; set; }

    /// <summary>Control frame limit; raised to Welcome.Limits.MaxFrameBytes.</summary>
    public int MaxFrameBytes
    {
        get => _maxFrameBytes;
        set
        {
            _maxFrameBytes = Math.Max(1, value);
            OnMaxFrameBytesChanged(_maxFrameBytes);
        }
    }

    /// <summary>Longest relay frame accepted (Limits.MaxRelayPayload + 5).</summary>
    public int MaxRelayFrameBytes { get; set; } = Wire.DefaultMaxRelayPayload + Wire.MaxRelayHeaderBytes;

    /// <summary>Relay frames dropped on this connection (send side: congestion; receive side: malformed or oversized).</summary>
    public long RelayDropped => Interlocked.Read(ref RelayDroppedCount);

    protected long RelayDroppedCount;

    protected virtual void OnMaxFrameBytesChanged(int value)
    {
    }

    /// <summary>Sends one control message, in order with the others. Thread-safe.</summary>
    public abstract Task SendAsync(ClientMsg message, CancellationToken cancellationToken);

    /// <summary>Best effort: queues one relay frame (header + payload) and returns at once; false if it was dropped.</summary>
    public abstract bool TrySendRelay(uint to, ReadOnlySpan<byte> payload);

    /// <summary>The next control message; null when the server finished the control stream (or closed the WebSocket).</summary>
    public abstract ValueTask<ServerMsg?> ReceiveAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Closes the connection. <paramref name="leave"/> = true leaves for good (QUIC code 0,
    /// WebSocket 1000): the peer leaves its session at once. Otherwise the server keeps the
    /// seat for the resume grace period.
    /// </summary>
    public abstract ValueTask CloseAsync(bool leave, CancellationToken cancellationToken);

    public abstract ValueTask DisposeAsync();

    /// <summary>Wraps whatever a transport threw when the connection broke.</summary>
    protected static P2PConnectionException Lost(string what, Exception inner, long? code = null) =>
        new($"{what}: {inner.Message}", inner, code);
}

/// <summary>Opens the best available transport: QUIC first, WebSocket as a fallback ("happy eyeballs").</summary>
internal static class TransportConnector
{
    public static async Task<SignalingTransport> ConnectAsync(WebRTCP2POptions options, ILogger logger, CancellationToken cancellationToken)
    {
        bool quicAllowed = options.Transport != TransportPreference.WebSocketOnly;
        bool wsAllowed = options.Transport != TransportPreference.QuicOnly;
        bool quicSupported = QuicConnection.IsSupported;

        if (quicAllowed && !quicSupported)
        {
            logger.LogInformation(
                "System.Net.Quic is not supported here ({Os}; Linux needs libmsquic, macOS is unsupported); using WebSocket",
                System.Runtime.InteropServices.RuntimeInformation.OSDescription);
        }

        if (quicAllowed && quicSupported && !wsAllowed)
        {
            return await QuicSignalingTransport.ConnectAsync(options, logger, cancellationToken).ConfigureAwait(false);
        }

        if (!(quicAllowed && quicSupported))
        {
            if (!wsAllowed)
            {
                throw new PlatformNotSupportedException(
                    "QUIC is not supported on this platform and the WebSocket transport is switched off (TransportPreference.QuicOnly).");
            }

            return await WebSocketSignalingTransport.ConnectAsync(options, logger, cancellationToken).ConfigureAwait(false);
        }

        using var race = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var attempts = new List<Task<SignalingTransport>>();
        var errors = new List<Exception>();

        Task<SignalingTransport> quic = QuicSignalingTransport.ConnectAsync(options, logger, race.Token);
        attempts.Add(quic);

        // Give QUIC a head start; an immediate failure (no msquic, ICMP port unreachable) ends it early.
        Task headStart = Task.Delay(options.QuicFallbackDelay, race.Token);
        await Task.WhenAny(quic, headStart).ConfigureAwait(false);
        if (quic.IsCompletedSuccessfully)
        {
            race.Cancel();
            return quic.Result;
        }

        cancellationToken.ThrowIfCancellationRequested();
        if (quic.IsFaulted)
        {
            logger.LogInformation("QUIC connect failed ({Error}); trying WebSocket", quic.Exception?.GetBaseException().Message);
        }
        else
        {
            logger.LogInformation("QUIC has not connected within {Delay}; trying WebSocket in parallel", options.QuicFallbackDelay);
        }

        attempts.Add(WebSocketSignalingTransport.ConnectAsync(options, logger, race.Token));

        while (attempts.Count > 0)
        {
            Task<SignalingTransport> done = await Task.WhenAny(attempts).ConfigureAwait(false);
            attempts.Remove(done);
            if (done.IsCompletedSuccessfully)
            {
                race.Cancel();
                foreach (Task<SignalingTransport> loser in attempts)
                {
                    _ = DisposeWhenDoneAsync(loser);
                }

                return done.Result;
            }

            if (done.Exception is { } failed)
            {
                errors.Add(failed.GetBaseException());
            }
        }

        cancellationToken.ThrowIfCancellationRequested();
        throw new P2PConnectionException(
            "could not connect over QUIC or WebSocket: " + string.Join("; ", errors.Select(e => e.Message)),
            errors.Count == 1 ? errors[0] : new AggregateException(errors));
    }

    private static async Task DisposeWhenDoneAsync(Task<SignalingTransport> attempt)
    {
        try
        {
            SignalingTransport t = await attempt.ConfigureAwait(false);
            await t.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception)
        {
            // The losing attempt failed or was cancelled: nothing to clean up.
        }
    }
}
