// Public types of the FlightSim P2P .NET client: states, paths, options, events.

using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using FlightSimP2P.Protocol;
using Microsoft.Extensions.Logging;

namespace FlightSimP2P.Client;

/// <summary>Connection state, shaped like SignalR's HubConnectionState.</summary>
public enum P2PConnectionState
{
    Disconnected,
    Connecting,
    Connected,
    Reconnecting,
}

/// <summary>The path flight data to or from a peer takes.</summary>
public enum FlightPath
{
    /// <summary>Through the server on the signaling connection (QUIC streams or WebSocket). Used while a direct path is connecting and when it fails.</summary>
    Relay,
    /// <summary>WebRTC DataChannel over a direct UDP path (host, server-reflexive or peer-reflexive candidates).</summary>
    Direct,
    /// <summary>WebRTC DataChannel through a TURN server (a relay candidate on either side of the nominated pair).</summary>
    Turn,
}

/// <summary>State of the WebRTC attempt with one peer.</summary>
public enum DirectState
{
    /// <summary>Offer/answer/ICE in progress; flight data goes through the relay meanwhile.</summary>
    Connecting,
    /// <summary>The DataChannel is open.</summary>
    Connected,
    /// <summary>ICE lost the path after it had worked; the relay carries data until ICE recovers or fails.</summary>
    Interrupted,
    /// <summary>ICE failed, closed, or missed its deadline; the relay carries data.</summary>
    Failed,
    /// <summary>Direct connections are switched off (options, or ForceRelay).</summary>
    Disabled,
}

/// <summary>Which signaling transport is in use.</summary>
public enum SignalingTransportKind
{
    /// <summary>Raw QUIC (System.Net.Quic), ALPN fsp2p/1; relay frames on unidirectional streams.</summary>
    Quic,
    /// <summary>WebSocket on the server's HTTP port (GET /ws), for macOS and UDP-blocked networks.</summary>
    WebSocket,
}

/// <summary>Which transports to try.</summary>
public enum TransportPreference
{
    /// <summary>QUIC first; WebSocket if QUIC is unsupported, fails, or has not connected within <see cref="WebRTCP2POptions.QuicFallbackDelay"/>.</summary>
    QuicThenWebSocket,
    QuicOnly,
    WebSocketOnly,
}

/// <summary>A peer of my session, as last reported.</summary>
public sealed record P2PPeer(uint Id, string Name, ClientKind Client, bool Online, FlightPath Path, DirectState Direct);

/// <summary>A snapshot of my session.</summary>
public sealed record P2PSession(string Code, uint HostId, uint MaxPeers, uint IdleTtlSecs, IReadOnlyList<P2PPeer> Peers);

/// <summary>Flight data arrived from a peer. <paramref name="data"/> is owned by the handler (a fresh copy).</summary>
public delegate void FlightDataHandler(uint from, ReadOnlyMemory<byte> data, FlightPath path);

/// <summary>The server answered a request with an Error, or closed the connection with one.</summary>
public sealed class P2PServerException : Exception
{
    public P2PServerException(ushort code, string message)
        : base($"{ErrorCodes.Name(code)} ({code}): {message}")
    {
        Code = code;
        ServerMessage = message;
    }

    /// <summary>Raw error code; compare with <see cref="ErrorCode"/>.</summary>
    public ushort Code { get; }

    /// <summary>The code as the enum (unknown future codes keep their number).</summary>
    public ErrorCode Error => (ErrorCode)Code;

    public string ServerMessage { get; }

    public bool IsFatal => ErrorCodes.IsFatal(Code);
}

/// <summary>The signaling connection was lost or could not be made.</summary>
public sealed class P2PConnectionException : Exception
{
    public P2PConnectionException(string message, Exception? inner = null, long? closeCode = null)
        : base(message, inner)
    {
        CloseCode = closeCode;
    }

    /// <summary>The QUIC application close code the server used, when known (see PROTOCOL.md section 6).</summary>
    public long? CloseCode { get; }
}

/// <summary>Configuration of <see cref="WebRTCP2PService"/>.</summary>
public sealed class WebRTCP2POptions
{
    /// <summary>Server host name or IP address (also the TLS name checked in production).</summary>
    public string ServerHost { get; set; } = "localhost";

    /// <summary>The server's UDP port for QUIC.</summary>
    public int QuicPort { get; set; } = 4433;

    /// <summary>WebSocket endpoint; default ws://ServerHost:8080/ws. Use wss://host/ws behind a TLS proxy.</summary>
    public Uri? WebSocketUri { get; set; }

    /// <summary>Which transports to try, in which order.</summary>
    public TransportPreference Transport { get; set; } = TransportPreference.QuicThenWebSocket;

    /// <summary>How long QUIC gets before a WebSocket attempt starts in parallel (an immediate QUIC failure starts it at once).</summary>
    public TimeSpan QuicFallbackDelay { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>Upper bound for one connection attempt (handshake plus Welcome).</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Development: SHA-256 of the server's self-signed certificate (hex, ':' allowed), as printed
    /// at server start-up and served at http://HOST:8080/cert-hash. When set, the QUIC certificate
    /// is accepted if and only if its hash matches (compared in constant time).
    /// Leave null in production: the certificate is then validated against the system's CAs
    /// (or <see cref="TrustedRootCertificate"/>).
    /// </summary>
    public string? CertificateSha256 { get; set; }

    /// <summary>Production with a private CA: the root to trust instead of the system store.</summary>
    public X509Certificate2? TrustedRootCertificate { get; set; }

    /// <summary>QUIC PING interval; the server's idle timeout is 30 s.</summary>
    public TimeSpan KeepAliveInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Application Ping interval (round-trip time, and liveness on WebSocket). Zero disables.</summary>
    public TimeSpan PingInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Display name sent in Hello (at most 64 UTF-8 bytes).</summary>
    public string DisplayName { get; set; } = "";

    /// <summary>Try WebRTC direct paths at all.</summary>
    public bool EnableDirect { get; set; } = true;

    /// <summary>Testing: only TURN relay candidates (iceTransportPolicy = relay).</summary>
    public bool ForceTurn { get; set; }

    /// <summary>How long a WebRTC attempt may take before the peer is switched to the relay.</summary>
    public TimeSpan DirectConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>After a failed direct attempt, the offering side retries after this delay. Zero disables retries.</summary>
    public TimeSpan DirectRetryDelay { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Retries after the first failed direct attempt (offering side).</summary>
    public int DirectMaxRetries { get; set; } = 2;

    /// <summary>DataChannel send buffer above which flight frames are dropped instead of queued (latest state wins).</summary>
    public ulong MaxDataChannelBufferedBytes { get; set; } = 64 * 1024;

    /// <summary>
    /// Wrap flight data in the 4-byte sequence envelope and drop stale snapshots on receipt
    /// (see SnapshotEnvelope in Protocol.cs). Every peer of a session must agree on this.
    /// </summary>
    public bool SequenceFlightData { get; set; } = true;

    /// <summary>
    /// Delays between reconnect attempts after a lost connection (the first is usually zero).
    /// Null or empty disables automatic reconnection. The resume token keeps the peer id and
    /// seat for the server's grace period (15 s by default); later attempts get a new id.
    /// </summary>
    public IReadOnlyList<TimeSpan>? ReconnectDelays { get; set; } = new[]
    {
        TimeSpan.Zero,
        TimeSpan.FromMilliseconds(500),
        TimeSpan.FromSeconds(1),
        TimeSpan.FromSeconds(2),
        TimeSpan.FromSeconds(4),
        TimeSpan.FromSeconds(8),
        TimeSpan.FromSeconds(8),
        TimeSpan.FromSeconds(8),
        TimeSpan.FromSeconds(8),
    };

    /// <summary>When a resume fails (the seat expired), join the same session again with the same code and password.</summary>
    public bool AutoRejoin { get; set; } = true;

    /// <summary>How long CreateSessionAsync / JoinSessionAsync wait for the server's answer.</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>JSON settings for hub messages (On / SendAsync); web defaults (camelCase) like SignalR's JSON protocol.</summary>
    public JsonSerializerOptions JsonSerializerOptions { get; set; } = new(JsonSerializerDefaults.Web);

    /// <summary>Logging (SIPSorcery logs through its own static factory; see the integration guide).</summary>
    public ILoggerFactory? LoggerFactory { get; set; }

    internal Uri EffectiveWebSocketUri =>
        WebSocketUri ?? new UriBuilder("ws", ServerHost, 8080, "/ws").Uri;

    internal WebRTCP2POptions Clone() => (WebRTCP2POptions)MemberwiseClone();
}
