// WebRTCP2PService: a drop-in replacement for the SignalR HubConnection of the
// flight simulator, on top of the FlightSim P2P server (docs/PROTOCOL.md).
//
//  * Signaling: raw QUIC (System.Net.Quic, ALPN fsp2p/1) or, where QUIC is not
//    available or UDP is blocked, WebSocket. Hello, Welcome, sessions, signals.
//  * Flight data: per peer over a WebRTC DataChannel (SIPSorcery) when ICE finds a
//    path (direct or TURN), else over the server's relay on the signaling
//    connection. One SendFlightData call, one FlightDataReceived event, whatever
//    the path.
//  * Hub messages: On(name, handler) / SendAsync(name, args) like SignalR, carried
//    reliably through the server as Signal.App JSON to every other peer.
//  * Reconnection with the resume token (same peer id and seat within the server's
//    grace period), also when the server announces GoingAway.
//
// Threading: every event is raised off the UI thread. Control events (state,
// session, peers, hub handlers) run one at a time, in order, on a dedicated
// dispatcher; FlightDataReceived runs on the network thread that received the
// frame, so keep it short (copy the latest state and return). In Avalonia,
// marshal with Dispatcher.UIThread.Post (see AVALONIA-INTEGRATION.md).

using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;
using System.Threading.Channels;
using FlightSimP2P.Protocol;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FlightSimP2P.Client;

public sealed class WebRTCP2PService : IAsyncDisposable
{
    /// <summary>Peer id meaning "every other peer of my session".</summary>
    public const uint AllPeers = Wire.AllPeers;

    private static readonly HashSet<ushort> RequestErrorCodes = new()
    {
        (ushort)ErrorCode.RateLimited,
        (ushort)ErrorCode.Internal,
        (ushort)ErrorCode.InvalidArgument,
        (ushort)ErrorCode.UnknownSession,
        (ushort)ErrorCode.SessionFull,
        (ushort)ErrorCode.WrongPassword,
        (ushort)ErrorCode.AlreadyInSession,
        (ushort)ErrorCode.NotInSession,
        (ushort)ErrorCode.TooManySessions,
        (ushort)ErrorCode.TooManyJoinAttempts,
    };

    /// <summary>Server errors after which reconnecting cannot help.</summary>
    private static readonly HashSet<ushort> NoReconnectCodes = new()
    {
        (ushort)ErrorCode.UnsupportedVersion,
        (ushort)ErrorCode.ProtocolViolation,
        (ushort)ErrorCode.TooManyJoinAttempts,
        (ushort)ErrorCode.Replaced,
    };

    private readonly WebRTCP2POptions _options;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _lifecycle = new(1, 1);
    private readonly SemaphoreSlim _requestGate = new(1, 1);
    private readonly object _lock = new();
    private readonly EventDispatcher _events;
    private readonly HubHandlerRegistry _hub = new();
    private readonly SnapshotFilter _filter = new();
    private readonly ControlPacer _pacer = new();
    private readonly Dictionary<uint, PeerEntry> _peers = new();

    private volatile PeerEntry[] _targets = Array.Empty<PeerEntry>();
    private volatile SignalingTransport? _transport;
    private P2PConnectionState _state = P2PConnectionState.Disconnected;
    private CancellationTokenSource? _lifetime;
    private Task? _supervisor;
    private byte[]? _resumeToken;
    private uint _peerId;
    private Limits _limits = new();
    private IReadOnlyList<IceServer> _iceServers = Array.Empty<IceServer>();
    private SessionInfo? _session;
    private string? _sessionPassword;
    private PendingRequest? _pending;
    private P2PServerException? _fatalError;
    private bool _closedRaised;
    private uint _sendSequence;
    private long _rttTicks = -1;
    private bool _disposed;

    public WebRTCP2PService(WebRTCP2POptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Clone();
        _logger = (_options.LoggerFactory ?? NullLoggerFactory.Instance).CreateLogger<WebRTCP2PService>();
        _events = new EventDispatcher(_logger);
    }

    // ------------------------------------------------------------------
    // HubConnection-shaped surface
    // ------------------------------------------------------------------

    /// <summary>Raised once when the connection is closed for good: after StopAsync (null) or when reconnecting gave up (the error).</summary>
    public event Func<Exception?, Task>? Closed;

    /// <summary>Raised when the connection was lost and automatic reconnection starts.</summary>
    public event Func<Exception?, Task>? Reconnecting;

    /// <summary>Raised when a reconnection succeeded; the argument is the new ConnectionId (the same when the resume worked).</summary>
    public event Func<string?, Task>? Reconnected;

    public event Action<P2PConnectionState>? StateChanged;

    public P2PConnectionState State
    {
        get
        {
            lock (_lock)
            {
                return _state;
            }
        }
    }

    /// <summary>My peer id as a string while connected (SignalR's ConnectionId).</summary>
    public string? ConnectionId
    {
        get
        {
            lock (_lock)
            {
                return _state == P2PConnectionState.Connected ? _peerId.ToString(System.Globalization.CultureInfo.InvariantCulture) : null;
            }
        }
    }

    /// <summary>My peer id (0 before the first Welcome).</summary>
    public uint PeerId
    {
        get
        {
            lock (_lock)
            {
                return _peerId;
            }
        }
    }

    /// <summary>The signaling transport in use, or null when not connected.</summary>
    public SignalingTransportKind? Transport => _transport?.Kind;

    /// <summary>Round-trip time to the server from the last Ping/Pong.</summary>
    public TimeSpan? RoundTripTime
    {
        get
        {
            long ticks = Interlocked.Read(ref _rttTicks);
            return ticks < 0 ? null : TimeSpan.FromTicks(ticks);
        }
    }

    /// <summary>Largest flight payload SendFlightData accepts (the relay limit minus the sequence envelope).</summary>
    public int MaxFlightPayload
    {
        get
        {
            lock (_lock)
            {
                return (int)Math.Min(_limits.MaxRelayPayload, int.MaxValue) - (_options.SequenceFlightData ? SnapshotEnvelope.HeaderBytes : 0);
            }
        }
    }

    /// <summary>Snapshots dropped on receipt because a newer one from the same peer had already arrived.</summary>
    public long StaleSnapshotsDropped => _filter.Dropped;

    /// <summary>Relay frames dropped on the current connection (send side congested, or malformed/oversized on receipt).</summary>
    public long RelayFramesDropped => _transport?.RelayDropped ?? 0;

    /// <summary>Connects to the server (QUIC, else WebSocket) and says Hello. Throws if it cannot.</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        await _lifecycle.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            CancellationTokenSource lifetimeSource;
            lock (_lock)
            {
                if (_state != P2PConnectionState.Disconnected)
                {
                    throw new InvalidOperationException($"StartAsync needs the Disconnected state; the service is {_state}.");
                }

                _closedRaised = false;
                _fatalError = null;
                _resumeToken = null;
                _lifetime?.Dispose();
                lifetimeSource = new CancellationTokenSource();
                _lifetime = lifetimeSource;
            }

            SetState(P2PConnectionState.Connecting);
            SignalingTransport transport;
            try
            {
                using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, lifetimeSource.Token);
                Handshake hs = await ConnectAndHelloAsync(null, linked.Token).ConfigureAwait(false);
                ApplyWelcome(hs, isReconnect: false);
                transport = hs.Transport;
            }
            catch
            {
                lifetimeSource.Cancel();
                SetState(P2PConnectionState.Disconnected);
                throw;
            }

            SetState(P2PConnectionState.Connected);
            CancellationToken lifetime = lifetimeSource.Token;
            _supervisor = Task.Run(() => SuperviseAsync(transport, lifetime));
        }
        finally
        {
            _lifecycle.Release();
        }
    }

    /// <summary>Leaves for good (QUIC close code 0: the server removes my peer at once) and raises Closed(null).</summary>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        await _lifecycle.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            CancellationTokenSource? lifetime;
            lock (_lock)
            {
                if (_state == P2PConnectionState.Disconnected)
                {
                    return;
                }

                lifetime = _lifetime;
            }

            // Stop the supervisor first (so a closing connection is not mistaken for a lost one),
            // then close the connection with code 0: the server removes my peer at once.
            lifetime?.Cancel();
            if (_supervisor is { } supervisor)
            {
                try
                {
                    await supervisor.ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    _logger.LogDebug(e, "supervisor ended with an error");
                }
            }

            await DropTransportAsync(leave: true).ConfigureAwait(false);
            await ClearSessionAsync(null).ConfigureAwait(false);
            FailPending(new OperationCanceledException("the connection was stopped"));
            lock (_lock)
            {
                _resumeToken = null;
                _supervisor = null;
            }

            SetState(P2PConnectionState.Disconnected);
            RaiseClosed(null);
        }
        finally
        {
            _lifecycle.Release();
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        await StopAsync().ConfigureAwait(false);
        _disposed = true;
        await _events.DisposeAsync().ConfigureAwait(false);
        _lifecycle.Dispose();
        _requestGate.Dispose();
    }

    /// <summary>Registers a hub handler: core form, like HubConnection.On(name, types, handler). Returns a subscription to dispose.</summary>
    public IDisposable On(string methodName, Type[] parameterTypes, Func<object?[], Task> handler) =>
        _hub.Add(methodName, parameterTypes, (_, args) => handler(args));

    public IDisposable On(string methodName, Action handler) =>
        _hub.Add(methodName, Type.EmptyTypes, (_, _) => { handler(); return Task.CompletedTask; });

    public IDisposable On<T1>(string methodName, Action<T1> handler) =>
        _hub.Add(methodName, new[] { typeof(T1) }, (_, a) => { handler((T1)a[0]!); return Task.CompletedTask; });

    public IDisposable On<T1, T2>(string methodName, Action<T1, T2> handler) =>
        _hub.Add(methodName, new[] { typeof(T1), typeof(T2) }, (_, a) => { handler((T1)a[0]!, (T2)a[1]!); return Task.CompletedTask; });

    public IDisposable On<T1, T2, T3>(string methodName, Action<T1, T2, T3> handler) =>
        _hub.Add(methodName, new[] { typeof(T1), typeof(T2), typeof(T3) }, (_, a) => { handler((T1)a[0]!, (T2)a[1]!, (T3)a[2]!); return Task.CompletedTask; });

    public IDisposable On<T1>(string methodName, Func<T1, Task> handler) =>
        _hub.Add(methodName, new[] { typeof(T1) }, (_, a) => handler((T1)a[0]!));

    public IDisposable On<T1, T2>(string methodName, Func<T1, T2, Task> handler) =>
        _hub.Add(methodName, new[] { typeof(T1), typeof(T2) }, (_, a) => handler((T1)a[0]!, (T2)a[1]!));

    /// <summary>Like On&lt;T1&gt;, with the sender's peer id (SignalR handlers cannot know it; P2P ones can).</summary>
    public IDisposable OnFrom<T1>(string methodName, Action<uint, T1> handler) =>
        _hub.Add(methodName, new[] { typeof(T1) }, (from, a) => { handler(from, (T1)a[0]!); return Task.CompletedTask; });

    public IDisposable OnFrom<T1, T2>(string methodName, Action<uint, T1, T2> handler) =>
        _hub.Add(methodName, new[] { typeof(T1), typeof(T2) }, (from, a) => { handler(from, (T1)a[0]!, (T2)a[1]!); return Task.CompletedTask; });

    /// <summary>Removes every handler of a method (HubConnection.Remove).</summary>
    public void Remove(string methodName) => _hub.RemoveAll(methodName);

    /// <summary>Sends a hub message to every other peer of my session (reliable, through the server).</summary>
    public Task SendAsync(string methodName, params object?[] args) =>
        SendCoreAsync(methodName, args, CancellationToken.None);

    /// <summary>HubConnection.SendCoreAsync: every other peer of my session.</summary>
    public Task SendCoreAsync(string methodName, object?[] args, CancellationToken cancellationToken = default) =>
        SendToPeerCoreAsync(AllPeers, methodName, args, cancellationToken);

    /// <summary>A hub message to one peer (or AllPeers).</summary>
    public Task SendToPeerAsync(uint peerId, string methodName, params object?[] args) =>
        SendToPeerCoreAsync(peerId, methodName, args, CancellationToken.None);

    public Task SendToPeerCoreAsync(uint peerId, string methodName, object?[] args, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(methodName);
        byte[] json = HubMessageCodec.Encode(methodName, args ?? Array.Empty<object?>(), _options.JsonSerializerOptions);
        return SendAppDataAsync(peerId, json, cancellationToken);
    }

    // ------------------------------------------------------------------
    // Sessions
    // ------------------------------------------------------------------

    /// <summary>I entered a session, it changed (host), or I left it (null).</summary>
    public event Action<P2PSession?>? SessionChanged;

    /// <summary>I am no longer in a session: answer to LeaveSessionAsync, the session expired, or my seat was lost.</summary>
    public event Action<LeaveReason>? SessionLeft;

    /// <summary>Another peer is in my session (also raised for everyone already there when I join).</summary>
    public event Action<P2PPeer>? PeerJoined;

    public event Action<uint, LeaveReason>? PeerLeft;

    /// <summary>A peer lost its signaling connection (false) and may resume, or resumed (true).</summary>
    public event Action<uint, bool>? PeerStatusChanged;

    /// <summary>The path to a peer changed (Relay / Direct / Turn), or its direct attempt changed state.</summary>
    public event Action<P2PPeer>? PeerPathChanged;

    public event Action<uint>? HostChanged;

    /// <summary>The server reported an error that no request was waiting for (e.g. unknown_peer, rate_limited).</summary>
    public event Action<P2PServerException>? ServerError;

    /// <summary>Flight data from a peer, on any path. Raised on a network thread: copy what you need and return.</summary>
    public event FlightDataHandler? FlightDataReceived;

    /// <summary>A Signal.App payload that is not a hub message (e.g. from a browser peer with its own format).</summary>
    public event Action<uint, byte[]>? AppDataReceived;

    /// <summary>My session, or null.</summary>
    public P2PSession? Session
    {
        get
        {
            lock (_lock)
            {
                return _session is null ? null : SnapshotSessionLocked();
            }
        }
    }

    public bool IsHost
    {
        get
        {
            lock (_lock)
            {
                return _session is not null && _session.Host == _peerId;
            }
        }
    }

    /// <summary>Creates a session (I become its host). maxPeers 0 = the server's maximum.</summary>
    public Task<P2PSession> CreateSessionAsync(uint maxPeers = 0, string? password = null, CancellationToken cancellationToken = default) =>
        RequestSessionAsync(new ClientMsg.CreateSession(maxPeers, NullIfEmpty(password)), RequestKind.Create, password, cancellationToken);

    /// <summary>Joins a session by its six-character code (case, '-', ' ' and look-alikes are forgiven by the server).</summary>
    public Task<P2PSession> JoinSessionAsync(string code, string? password = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(code);
        return RequestSessionAsync(new ClientMsg.JoinSession(code.Trim(), NullIfEmpty(password)), RequestKind.Join, password, cancellationToken);
    }

    /// <summary>Leaves my session; the connection stays open.</summary>
    public async Task LeaveSessionAsync(CancellationToken cancellationToken = default)
    {
        await RequestAsync(new ClientMsg.LeaveSession(), RequestKind.Leave, null, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The peers of my session (not me).</summary>
    public IReadOnlyList<P2PPeer> GetPeers()
    {
        lock (_lock)
        {
            return _peers.Values.Select(SnapshotPeer).ToArray();
        }
    }

    /// <summary>The path flight data to this peer takes now (Relay if unknown).</summary>
    public FlightPath GetPath(uint peerId)
    {
        lock (_lock)
        {
            return _peers.TryGetValue(peerId, out PeerEntry? e) && e.Link is { } link ? link.Path : FlightPath.Relay;
        }
    }

    /// <summary>Stops (or resumes) trying the direct path to a peer; its data then goes through the relay.</summary>
    public Task ForceRelayAsync(uint peerId, bool forceRelay = true)
    {
        PeerLink? link;
        lock (_lock)
        {
            link = _peers.TryGetValue(peerId, out PeerEntry? e) ? e.Link : null;
        }

        return link?.SetForceRelayAsync(forceRelay) ?? Task.CompletedTask;
    }

    /// <summary>Starts a new WebRTC attempt with a peer now (e.g. after its network changed).</summary>
    public Task RetryDirectAsync(uint peerId)
    {
        PeerLink? link;
        lock (_lock)
        {
            link = _peers.TryGetValue(peerId, out PeerEntry? e) ? e.Link : null;
        }

        return link?.RetryAsync() ?? Task.CompletedTask;
    }

    // ------------------------------------------------------------------
    // Flight data
    // ------------------------------------------------------------------

    /// <summary>
    /// Sends one flight-state snapshot to a peer, or to every other peer with <see cref="AllPeers"/>.
    /// Best effort and never blocking: DataChannel where open, else the server relay.
    /// Returns false if nothing could be sent (no such peer, not connected).
    /// Throws ArgumentException above <see cref="MaxFlightPayload"/> bytes.
    /// </summary>
    public bool SendFlightData(uint peerId, ReadOnlyMemory<byte> data)
    {
        int max = MaxFlightPayload;
        if (data.Length > max)
        {
            throw new ArgumentException($"flight payload of {data.Length} bytes exceeds {max} bytes (relay limit {_limits.MaxRelayPayload})", nameof(data));
        }

        byte[] frame;
        if (_options.SequenceFlightData)
        {
            frame = new byte[SnapshotEnvelope.HeaderBytes + data.Length];
            uint seq = Interlocked.Increment(ref _sendSequence);
            BinaryPrimitives.WriteUInt32LittleEndian(frame, seq);
            data.Span.CopyTo(frame.AsSpan(SnapshotEnvelope.HeaderBytes));
        }
        else
        {
            frame = data.ToArray();
        }

        PeerEntry[] targets = _targets;
        bool any = false;
        List<uint>? relay = null;
        int wanted = 0;
        foreach (PeerEntry target in targets)
        {
            if (peerId != AllPeers && target.Info.Id != peerId)
            {
                continue;
            }

            wanted++;
            if (target.Link is { } link && link.TrySend(frame))
            {
                any = true;
            }
            else
            {
                (relay ??= new List<uint>()).Add(target.Info.Id);
            }
        }

        if (wanted == 0 || relay is null)
        {
            return any;
        }

        SignalingTransport? transport = _transport;
        if (transport is null)
        {
            return any;
        }

        if (peerId == AllPeers && relay.Count == wanted && wanted > 1)
        {
            // Everyone needs the relay: upload one copy, the server fans it out.
            return transport.TrySendRelay(AllPeers, frame) || any;
        }

        foreach (uint id in relay)
        {
            any |= transport.TrySendRelay(id, frame);
        }

        return any;
    }

    /// <summary>SendFlightData(AllPeers, data).</summary>
    public bool SendFlightDataToAll(ReadOnlyMemory<byte> data) => SendFlightData(AllPeers, data);

    /// <summary>Raw Signal.App bytes to a peer (or AllPeers), reliably through the server.</summary>
    public async Task SendAppDataAsync(uint peerId, byte[] data, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(data);
        int max;
        lock (_lock)
        {
            if (_session is null)
            {
                throw new InvalidOperationException("join or create a session first");
            }

            max = (int)Math.Min(_limits.MaxFrameBytes, int.MaxValue) - 16;
        }

        if (data.Length > max)
        {
            throw new ArgumentException($"app message of {data.Length} bytes exceeds the control frame limit ({max} bytes of payload)", nameof(data));
        }

        await SendControlAsync(new ClientMsg.SignalTo(peerId, new Signal.App(data)), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Reads the dev certificate hash from the server's http://HOST:8080/cert-hash (JSON field "hex").</summary>
    public static async Task<string> FetchCertificateHashAsync(Uri certHashUrl, CancellationToken cancellationToken = default)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        JsonElement info = await http.GetFromJsonAsync<JsonElement>(certHashUrl, cancellationToken).ConfigureAwait(false);
        if (info.ValueKind == JsonValueKind.Object && info.TryGetProperty("hex", out JsonElement hex) && hex.GetString() is { Length: > 0 } s)
        {
            return s;
        }

        throw new InvalidDataException($"{certHashUrl} did not return a JSON object with a \"hex\" field");
    }

    // ------------------------------------------------------------------
    // Connection
    // ------------------------------------------------------------------

    private sealed record Handshake(SignalingTransport Transport, ServerMsg.Welcome Welcome, bool ResumeRefused);

    private sealed record ConnectionEnd(Exception? Error, bool Fatal, TimeSpan RetryAfter);

    private async Task<Handshake> ConnectAndHelloAsync(byte[]? resumeToken, CancellationToken cancellationToken)
    {
        SignalingTransport transport = await TransportConnector.ConnectAsync(_options, _logger, cancellationToken).ConfigureAwait(false);
        try
        {
            transport.RelayReceived = OnRelayFrame;
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(_options.ConnectTimeout);

            var hello = new ClientMsg.Hello
            {
                Client = ClientKind.DotNet,
                RelayMode = transport.RelayMode,
                Name = _options.DisplayName ?? "",
                ResumeToken = resumeToken,
            };
            _pacer.Reset();
            _pacer.Take();
            await transport.SendAsync(hello, timeout.Token).ConfigureAwait(false);

            bool resumeRefused = false;
            while (true)
            {
                ServerMsg? msg;
                try
                {
                    msg = await transport.ReceiveAsync(timeout.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    throw new TimeoutException($"no Welcome within {_options.ConnectTimeout}");
                }

                switch (msg)
                {
                    case null:
                        throw new P2PConnectionException("the server closed the connection before Welcome");
                    case ServerMsg.Error refused when refused.Code == (ushort)ErrorCode.ResumeFailed:
                        // A fresh Welcome with a new peer id follows.
                        resumeRefused = true;
                        continue;
                    case ServerMsg.Error error:
                        throw new P2PServerException(error.Code, error.Message);
                    case ServerMsg.Welcome welcome:
                        if (welcome.Version != Wire.ProtocolVersion)
                        {
                            throw new P2PConnectionException($"server speaks protocol version {welcome.Version}, this client {Wire.ProtocolVersion}");
                        }

                        return new Handshake(transport, welcome, resumeRefused || (resumeToken is not null && !welcome.Resumed));
                    case ServerMsg.GoingAway away:
                        throw new P2PConnectionException($"server is going away: {away.Message}");
                    default:
                        _logger.LogDebug("ignored {Message} before Welcome", msg.GetType().Name);
                        continue;
                }
            }
        }
        catch
        {
            await transport.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Takes the new connection into use. Returns the session to rejoin when a resume failed.</summary>
    private (string Code, string? Password)? ApplyWelcome(Handshake hs, bool isReconnect)
    {
        ServerMsg.Welcome w = hs.Welcome;
        SignalingTransport transport = hs.Transport;
        transport.MaxFrameBytes = (int)Math.Clamp(w.Limits.MaxFrameBytes, 1u, (uint)int.MaxValue);
        transport.MaxRelayFrameBytes = (int)Math.Clamp((long)w.Limits.MaxRelayPayload + Wire.MaxRelayHeaderBytes, 1L, int.MaxValue);
        _pacer.Configure(w.Limits.SignalsPerSec);

        (string, string?)? rejoin = null;
        lock (_lock)
        {
            _transport = transport;
            _peerId = w.PeerId;
            _resumeToken = w.ResumeToken;
            _limits = w.Limits;
            _iceServers = w.IceServers.ToArray();
            foreach (PeerEntry e in _peers.Values)
            {
                e.Link?.UpdateIceServers(_iceServers);
            }

            if (isReconnect && hs.ResumeRefused && _session is not null)
            {
                // The seat is gone (grace period over): a new peer id, no session.
                if (_options.AutoRejoin)
                {
                    rejoin = (_session.Code, _sessionPassword);
                }
            }
        }

        _logger.LogInformation(
            "welcome: peer {Peer} over {Transport}{Resumed}, {Ice} ICE server(s)",
            w.PeerId, transport.Kind, w.Resumed ? " (resumed)" : "", w.IceServers.Count);

        if (isReconnect && hs.ResumeRefused)
        {
            _ = ClearSessionAsync(LeaveReason.TimedOut);
        }

        return rejoin;
    }

    private async Task SuperviseAsync(SignalingTransport transport, CancellationToken lifetime)
    {
        (string Code, string? Password)? rejoin = null;
        while (true)
        {
            if (rejoin is { } r)
            {
                _ = RejoinAsync(r.Code, r.Password);
                rejoin = null;
            }

            ConnectionEnd end = await RunConnectionAsync(transport, lifetime).ConfigureAwait(false);
            if (lifetime.IsCancellationRequested)
            {
                return;
            }

            await DropTransportAsync(leave: false).ConfigureAwait(false);
            FailPending(end.Error ?? new P2PConnectionException("connection lost"));

            IReadOnlyList<TimeSpan>? delays = _options.ReconnectDelays;
            if (end.Fatal || delays is null || delays.Count == 0)
            {
                await GiveUpAsync(end.Error, lifetime).ConfigureAwait(false);
                return;
            }

            _logger.LogWarning(end.Error, "connection lost; reconnecting");
            SetState(P2PConnectionState.Reconnecting);
            Exception? cause = end.Error;
            _events.Post(() => InvokeAsync(Reconnecting, cause));

            Exception? last = end.Error;
            Handshake? hs = null;
            for (int attempt = 0; attempt < delays.Count && hs is null; attempt++)
            {
                TimeSpan delay = delays[attempt];
                if (attempt == 0 && end.RetryAfter > delay)
                {
                    delay = end.RetryAfter;
                }

                try
                {
                    await Task.Delay(delay, lifetime).ConfigureAwait(false);
                    byte[]? token;
                    lock (_lock)
                    {
                        token = _resumeToken;
                    }

                    hs = await ConnectAndHelloAsync(token, lifetime).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (lifetime.IsCancellationRequested)
                {
                    return;
                }
                catch (P2PServerException e) when (NoReconnectCodes.Contains(e.Code))
                {
                    last = e;
                    break;
                }
                catch (Exception e)
                {
                    last = e;
                    _logger.LogInformation("reconnect attempt {Attempt} failed: {Error}", attempt + 1, e.Message);
                }
            }

            if (hs is null)
            {
                if (!lifetime.IsCancellationRequested)
                {
                    await GiveUpAsync(last, lifetime).ConfigureAwait(false);
                }

                return;
            }

            rejoin = ApplyWelcome(hs, isReconnect: true);
            transport = hs.Transport;
            SetState(P2PConnectionState.Connected);
            string? id = ConnectionId;
            _events.Post(() => InvokeAsync(Reconnected, id));
        }
    }

    private async Task RejoinAsync(string code, string? password)
    {
        try
        {
            await JoinSessionAsync(code, password).ConfigureAwait(false);
            _logger.LogInformation("rejoined session {Code} after a failed resume", code);
        }
        catch (Exception e)
        {
            _logger.LogWarning(e, "could not rejoin session {Code}", code);
        }
    }

    private async Task GiveUpAsync(Exception? error, CancellationToken lifetime)
    {
        try
        {
            // StopAsync holds the lifecycle lock while it waits for this supervisor, after cancelling
            // the lifetime token: then Stop does the cleanup and this returns.
            await _lifecycle.WaitAsync(lifetime).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return;
        }

        try
        {
            lock (_lock)
            {
                if (_state == P2PConnectionState.Disconnected)
                {
                    return;
                }
            }

            _lifetime?.Cancel();
            await DropTransportAsync(leave: false).ConfigureAwait(false);
            await ClearSessionAsync(null).ConfigureAwait(false);
            lock (_lock)
            {
                _supervisor = null;
            }

            SetState(P2PConnectionState.Disconnected);
            RaiseClosed(error);
        }
        finally
        {
            _lifecycle.Release();
        }
    }

    private async Task<ConnectionEnd> RunConnectionAsync(SignalingTransport transport, CancellationToken lifetime)
    {
        using var connection = CancellationTokenSource.CreateLinkedTokenSource(lifetime);
        Task ping = PingLoopAsync(connection.Token);
        try
        {
            while (true)
            {
                ServerMsg? msg = await transport.ReceiveAsync(connection.Token).ConfigureAwait(false);
                if (msg is null)
                {
                    return End(new P2PConnectionException("the server closed the connection"));
                }

                if (msg is ServerMsg.GoingAway away)
                {
                    _logger.LogInformation("server going away ({Message}); reconnecting after {Delay} ms", away.Message, away.ReconnectAfterMs);
                    return new ConnectionEnd(new P2PConnectionException("server going away: " + away.Message), false, TimeSpan.FromMilliseconds(away.ReconnectAfterMs));
                }

                Handle(msg);
            }
        }
        catch (OperationCanceledException) when (connection.IsCancellationRequested)
        {
            return new ConnectionEnd(null, false, TimeSpan.Zero);
        }
        catch (Exception e)
        {
            return End(e);
        }
        finally
        {
            connection.Cancel();
            try
            {
                await ping.ConfigureAwait(false);
            }
            catch (Exception)
            {
            }
        }

        ConnectionEnd End(Exception error)
        {
            P2PServerException? fatal;
            lock (_lock)
            {
                fatal = _fatalError;
                _fatalError = null;
            }

            if (fatal is not null)
            {
                return new ConnectionEnd(fatal, NoReconnectCodes.Contains(fatal.Code), TimeSpan.Zero);
            }

            if (error is P2PConnectionException { CloseCode: { } code } && code is >= 1 and <= 65535 && NoReconnectCodes.Contains((ushort)code))
            {
                return new ConnectionEnd(error, true, TimeSpan.Zero);
            }

            return new ConnectionEnd(error, false, TimeSpan.Zero);
        }
    }

    private async Task PingLoopAsync(CancellationToken cancellationToken)
    {
        if (_options.PingInterval <= TimeSpan.Zero)
        {
            return;
        }

        using var timer = new PeriodicTimer(_options.PingInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            {
                ulong now = (ulong)Stopwatch.GetTimestamp();
                await SendControlAsync(new ClientMsg.Ping(now), cancellationToken).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or InvalidOperationException or P2PConnectionException)
        {
        }
    }

    private async Task DropTransportAsync(bool leave)
    {
        SignalingTransport? transport;
        lock (_lock)
        {
            transport = _transport;
            _transport = null;
        }

        if (transport is null)
        {
            return;
        }

        try
        {
            await transport.CloseAsync(leave, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            _logger.LogDebug(e, "closing the transport");
        }

        await transport.DisposeAsync().ConfigureAwait(false);
    }

    private async Task SendControlAsync(ClientMsg message, CancellationToken cancellationToken)
    {
        SignalingTransport transport = _transport ?? throw new InvalidOperationException("not connected to the server");
        TimeSpan wait = _pacer.Take();
        if (wait > TimeSpan.Zero)
        {
            // Stay under Limits.SignalsPerSec: the server drops what is over it (rate_limited).
            await Task.Delay(wait, cancellationToken).ConfigureAwait(false);
        }

        await transport.SendAsync(message, cancellationToken).ConfigureAwait(false);
    }

    // ------------------------------------------------------------------
    // Incoming messages
    // ------------------------------------------------------------------

    private void Handle(ServerMsg msg)
    {
        switch (msg)
        {
            case ServerMsg.SessionCreated created:
                OnSessionEntered(created.Session, RequestKind.Create);
                break;
            case ServerMsg.SessionJoined joined:
                OnSessionEntered(joined.Session, RequestKind.Join);
                break;
            case ServerMsg.PeerJoined joined:
                OnPeerJoined(joined.Peer);
                break;
            case ServerMsg.PeerLeft left:
                OnPeerLeft(left.Peer, left.Reason);
                break;
            case ServerMsg.HostChanged host:
                OnHostChanged(host.Host);
                break;
            case ServerMsg.SignalFrom signal:
                OnSignal(signal.From, signal.Signal);
                break;
            case ServerMsg.Error error:
                OnServerError(error);
                break;
            case ServerMsg.Pong pong:
                long elapsed = Stopwatch.GetTimestamp() - (long)pong.ClientTimeMs;
                Interlocked.Exchange(ref _rttTicks, (long)(elapsed * ((double)TimeSpan.TicksPerSecond / Stopwatch.Frequency)));
                break;
            case ServerMsg.SessionLeft left:
                OnSessionLeft(left.Reason);
                break;
            case ServerMsg.PeerStatus status:
                OnPeerStatus(status.Peer, status.Online);
                break;
            case ServerMsg.Welcome:
                _logger.LogWarning("unexpected Welcome after the handshake; ignored");
                break;
        }
    }

    private void OnSessionEntered(SessionInfo info, RequestKind kind)
    {
        var joined = new List<P2PPeer>();
        var left = new List<PeerEntry>();
        var started = new List<PeerLink>();
        P2PSession snapshot;
        PendingRequest? pending;
        lock (_lock)
        {
            pending = _pending;
            if (pending is not null && pending.Kind == kind)
            {
                _sessionPassword = pending.Password;
            }

            _session = info;
            int myIndex = info.Peers.FindIndex(p => p.Id == _peerId);
            var present = new HashSet<uint>();
            for (int i = 0; i < info.Peers.Count; i++)
            {
                PeerInfo p = info.Peers[i];
                if (p.Id == _peerId)
                {
                    continue;
                }

                present.Add(p.Id);
                if (_peers.TryGetValue(p.Id, out PeerEntry? existing))
                {
                    existing.Info = p;
                    continue;
                }

                // Convention (PROTOCOL.md section 8): the peer that was in the session first offers.
                bool iOffer = myIndex >= 0 && myIndex < i;
                PeerEntry entry = NewPeerLocked(p, iOffer);
                joined.Add(SnapshotPeer(entry));
                if (entry.Link is not null)
                {
                    started.Add(entry.Link);
                }
            }

            foreach (PeerEntry e in _peers.Values.Where(p => !present.Contains(p.Info.Id)).ToList())
            {
                _peers.Remove(e.Info.Id);
                left.Add(e);
            }

            RebuildTargetsLocked();
            snapshot = SnapshotSessionLocked();
        }

        _logger.LogInformation("in session {Code} with {Count} other peer(s)", info.Code, info.Peers.Count - 1);
        foreach (PeerEntry e in left)
        {
            _filter.Reset(e.Info.Id);
            _ = DisposeLinkAsync(e.Link);
            uint id = e.Info.Id;
            _events.Post(() => PeerLeft?.Invoke(id, LeaveReason.Left));
        }

        _events.Post(() => SessionChanged?.Invoke(snapshot));
        foreach (P2PPeer p in joined)
        {
            _events.Post(() => PeerJoined?.Invoke(p));
        }

        foreach (PeerLink link in started)
        {
            _ = StartLinkAsync(link);
        }

        if (pending is not null && pending.Kind == kind)
        {
            pending.Completion.TrySetResult(snapshot);
        }
    }

    private void OnPeerJoined(PeerInfo info)
    {
        PeerEntry entry;
        P2PSession? snapshot = null;
        lock (_lock)
        {
            if (_peers.ContainsKey(info.Id) || info.Id == _peerId)
            {
                return;
            }

            // I was here first: I offer to the newcomer.
            entry = NewPeerLocked(info, iOffer: true);
            if (_session is not null)
            {
                _session.Peers.RemoveAll(p => p.Id == info.Id);
                _session.Peers.Add(info);
                snapshot = SnapshotSessionLocked();
            }

            RebuildTargetsLocked();
        }

        _filter.Reset(info.Id);
        P2PPeer peer = SnapshotPeer(entry);
        _events.Post(() => PeerJoined?.Invoke(peer));
        if (snapshot is not null)
        {
            _events.Post(() => SessionChanged?.Invoke(snapshot));
        }

        if (entry.Link is { } link)
        {
            _ = StartLinkAsync(link);
        }
    }

    private void OnPeerLeft(uint peerId, LeaveReason reason)
    {
        PeerEntry? entry;
        P2PSession? snapshot = null;
        lock (_lock)
        {
            if (!_peers.Remove(peerId, out entry))
            {
                return;
            }

            if (_session is not null)
            {
                _session.Peers.RemoveAll(p => p.Id == peerId);
                snapshot = SnapshotSessionLocked();
            }

            RebuildTargetsLocked();
        }

        _filter.Reset(peerId);
        _ = DisposeLinkAsync(entry.Link);
        _events.Post(() => PeerLeft?.Invoke(peerId, reason));
        if (snapshot is not null)
        {
            _events.Post(() => SessionChanged?.Invoke(snapshot));
        }
    }

    private void OnHostChanged(uint host)
    {
        P2PSession? snapshot = null;
        lock (_lock)
        {
            if (_session is not null)
            {
                _session.Host = host;
                snapshot = SnapshotSessionLocked();
            }
        }

        _events.Post(() => HostChanged?.Invoke(host));
        if (snapshot is not null)
        {
            _events.Post(() => SessionChanged?.Invoke(snapshot));
        }
    }

    private void OnPeerStatus(uint peerId, bool online)
    {
        lock (_lock)
        {
            if (!_peers.TryGetValue(peerId, out PeerEntry? entry))
            {
                return;
            }

            entry.Online = online;
        }

        // A direct path may well survive the peer's signaling outage: it is left alone.
        _events.Post(() => PeerStatusChanged?.Invoke(peerId, online));
    }

    private void OnSessionLeft(LeaveReason reason)
    {
        PendingRequest? pending;
        lock (_lock)
        {
            pending = _pending;
        }

        _ = ClearSessionAsync(reason);
        if (pending is { Kind: RequestKind.Leave })
        {
            pending.Completion.TrySetResult(null);
        }
    }

    private void OnSignal(uint from, Signal signal)
    {
        if (signal is Signal.App app)
        {
            OnAppData(from, app.Data);
            return;
        }

        PeerLink? link;
        lock (_lock)
        {
            link = _peers.TryGetValue(from, out PeerEntry? entry) ? entry.Link : null;
        }

        if (link is null)
        {
            _logger.LogDebug("{Signal} from peer {Peer} that has no WebRTC link; ignored", signal.GetType().Name, from);
            return;
        }

        link.EnqueueSignal(signal);
    }

    private void OnAppData(uint from, byte[] data)
    {
        if (!HubMessageCodec.TryDecode(data, out HubInvocation invocation))
        {
            _events.Post(() => AppDataReceived?.Invoke(from, data));
            return;
        }

        HubHandlerRegistry.Registration[] handlers = _hub.Get(invocation.Name);
        if (handlers.Length == 0)
        {
            _logger.LogDebug("no handler for hub message '{Name}' from peer {Peer}", invocation.Name, from);
            return;
        }

        foreach (HubHandlerRegistry.Registration handler in handlers)
        {
            if (!handler.TryBind(invocation.Args, _options.JsonSerializerOptions, out object?[] values, out string? error))
            {
                _logger.LogWarning("hub message from peer {Peer}: {Error}", from, error);
                continue;
            }

            _events.Post(() => handler.Handler(from, values));
        }
    }

    private void OnServerError(ServerMsg.Error error)
    {
        var exception = new P2PServerException(error.Code, error.Message);
        PendingRequest? pending = null;
        lock (_lock)
        {
            if (_pending is not null && RequestErrorCodes.Contains(error.Code))
            {
                pending = _pending;
            }

            if (exception.IsFatal)
            {
                _fatalError = exception;
            }
        }

        _logger.LogWarning("server error {Error}", exception.Message);
        if (pending is not null)
        {
            pending.Completion.TrySetException(exception);
            return;
        }

        _events.Post(() => ServerError?.Invoke(exception));
    }

    private void OnRelayFrame(uint from, ReadOnlySpan<byte> payload)
    {
        byte[] data;
        if (_options.SequenceFlightData)
        {
            if (payload.Length < SnapshotEnvelope.HeaderBytes)
            {
                return;
            }

            uint seq = BinaryPrimitives.ReadUInt32LittleEndian(payload);
            if (!_filter.Accept(from, seq))
            {
                return;
            }

            data = payload[SnapshotEnvelope.HeaderBytes..].ToArray();
        }
        else
        {
            data = payload.ToArray();
        }

        RaiseFlightData(from, data, FlightPath.Relay);
    }

    private void OnDirectData(uint from, byte[] frame, FlightPath path)
    {
        byte[] data = frame;
        if (_options.SequenceFlightData)
        {
            if (!SnapshotEnvelope.TryUnwrap(frame, 0, frame.Length, out uint seq, out int at) || !_filter.Accept(from, seq))
            {
                return;
            }

            data = frame.AsSpan(at).ToArray();
        }

        RaiseFlightData(from, data, path);
    }

    private void RaiseFlightData(uint from, byte[] data, FlightPath path)
    {
        try
        {
            FlightDataReceived?.Invoke(from, data, path);
        }
        catch (Exception e)
        {
            _logger.LogWarning(e, "FlightDataReceived handler threw");
        }
    }

    // ------------------------------------------------------------------
    // Peers and links
    // ------------------------------------------------------------------

    private sealed class PeerEntry
    {
        public PeerEntry(PeerInfo info)
        {
            Info = info;
        }

        public PeerInfo Info { get; set; }

        public bool Online { get; set; } = true;

        public PeerLink? Link { get; set; }

        public FlightPath LastPath { get; set; } = FlightPath.Relay;

        public DirectState LastDirect { get; set; }
    }

    private PeerEntry NewPeerLocked(PeerInfo info, bool iOffer)
    {
        var entry = new PeerEntry(info);
        entry.Link = new PeerLink(
            _peerId,
            info.Id,
            iOffer,
            _iceServers,
            _options,
            _logger,
            (to, signal) => SendControlAsync(new ClientMsg.SignalTo(to, signal), CancellationToken.None),
            OnDirectData,
            OnLinkChanged);
        entry.LastDirect = entry.Link.State;
        _peers[info.Id] = entry;
        return entry;
    }

    private async Task StartLinkAsync(PeerLink link)
    {
        try
        {
            await link.StartAsync().ConfigureAwait(false);
        }
        catch (Exception e)
        {
            _logger.LogWarning(e, "starting the WebRTC link to peer {Peer}", link.PeerId);
        }
    }

    private void OnLinkChanged(PeerLink link)
    {
        P2PPeer? changed = null;
        lock (_lock)
        {
            if (_peers.TryGetValue(link.PeerId, out PeerEntry? entry) && ReferenceEquals(entry.Link, link)
                && (entry.LastPath != link.Path || entry.LastDirect != link.State))
            {
                entry.LastPath = link.Path;
                entry.LastDirect = link.State;
                changed = SnapshotPeer(entry);
            }
        }

        if (changed is not null)
        {
            _events.Post(() => PeerPathChanged?.Invoke(changed));
        }
    }

    private void RebuildTargetsLocked() => _targets = _peers.Values.ToArray();

    private async Task ClearSessionAsync(LeaveReason? reason)
    {
        List<PeerEntry> removed;
        bool hadSession;
        lock (_lock)
        {
            hadSession = _session is not null;
            _session = null;
            removed = _peers.Values.ToList();
            _peers.Clear();
            RebuildTargetsLocked();
        }

        _filter.Clear();
        foreach (PeerEntry e in removed)
        {
            await DisposeLinkAsync(e.Link).ConfigureAwait(false);
            uint id = e.Info.Id;
            _events.Post(() => PeerLeft?.Invoke(id, reason ?? LeaveReason.Left));
        }

        if (hadSession)
        {
            _events.Post(() => SessionChanged?.Invoke(null));
            if (reason is { } r)
            {
                _events.Post(() => SessionLeft?.Invoke(r));
            }
        }
    }

    private async Task DisposeLinkAsync(PeerLink? link)
    {
        if (link is null)
        {
            return;
        }

        try
        {
            await link.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception e)
        {
            _logger.LogDebug(e, "disposing the WebRTC link to peer {Peer}", link.PeerId);
        }
    }

    private static P2PPeer SnapshotPeer(PeerEntry e) =>
        new(e.Info.Id, e.Info.Name, e.Info.Client, e.Online, e.Link?.Path ?? FlightPath.Relay, e.Link?.State ?? DirectState.Disabled);

    private P2PSession SnapshotSessionLocked()
    {
        SessionInfo s = _session!;
        var peers = new List<P2PPeer>();
        foreach (PeerInfo p in s.Peers)
        {
            if (p.Id == _peerId)
            {
                peers.Add(new P2PPeer(p.Id, p.Name, p.Client, true, FlightPath.Direct, DirectState.Disabled));
            }
            else if (_peers.TryGetValue(p.Id, out PeerEntry? e))
            {
                peers.Add(SnapshotPeer(e));
            }
        }

        return new P2PSession(s.Code, s.Host, s.MaxPeers, s.IdleTtlSecs, peers);
    }

    // ------------------------------------------------------------------
    // Requests (CreateSession, JoinSession, LeaveSession)
    // ------------------------------------------------------------------

    private enum RequestKind
    {
        Create,
        Join,
        Leave,
    }

    private sealed record PendingRequest(RequestKind Kind, string? Password, TaskCompletionSource<P2PSession?> Completion);

    private async Task<P2PSession> RequestSessionAsync(ClientMsg message, RequestKind kind, string? password, CancellationToken cancellationToken)
    {
        P2PSession? session = await RequestAsync(message, kind, password, cancellationToken).ConfigureAwait(false);
        return session ?? throw new P2PConnectionException("the server did not return a session");
    }

    private async Task<P2PSession?> RequestAsync(ClientMsg message, RequestKind kind, string? password, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        await _requestGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        var completion = new TaskCompletionSource<P2PSession?>(TaskCreationOptions.RunContinuationsAsynchronously);
        try
        {
            lock (_lock)
            {
                if (_state != P2PConnectionState.Connected)
                {
                    throw new InvalidOperationException($"not connected (state {_state})");
                }

                if (kind == RequestKind.Leave && _session is null)
                {
                    return null;
                }

                _pending = new PendingRequest(kind, NullIfEmpty(password), completion);
            }

            await SendControlAsync(message, cancellationToken).ConfigureAwait(false);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(_options.RequestTimeout);
            using CancellationTokenRegistration registration = timeout.Token.Register(() =>
                completion.TrySetException(cancellationToken.IsCancellationRequested
                    ? (Exception)new OperationCanceledException(cancellationToken)
                    : new TimeoutException($"no answer from the server within {_options.RequestTimeout}")));
            return await completion.Task.ConfigureAwait(false);
        }
        finally
        {
            lock (_lock)
            {
                if (ReferenceEquals(_pending?.Completion, completion))
                {
                    _pending = null;
                }
            }

            _requestGate.Release();
        }
    }

    private void FailPending(Exception error)
    {
        PendingRequest? pending;
        lock (_lock)
        {
            pending = _pending;
            _pending = null;
        }

        pending?.Completion.TrySetException(error);
    }

    // ------------------------------------------------------------------
    // Events
    // ------------------------------------------------------------------

    private void SetState(P2PConnectionState state)
    {
        lock (_lock)
        {
            if (_state == state)
            {
                return;
            }

            _state = state;
        }

        _events.Post(() => StateChanged?.Invoke(state));
    }

    private void RaiseClosed(Exception? error)
    {
        lock (_lock)
        {
            if (_closedRaised)
            {
                return;
            }

            _closedRaised = true;
        }

        _events.Post(() => InvokeAsync(Closed, error));
    }

    private static async Task InvokeAsync<T>(Func<T, Task>? handlers, T argument)
    {
        if (handlers is null)
        {
            return;
        }

        foreach (Func<T, Task> handler in handlers.GetInvocationList().Cast<Func<T, Task>>())
        {
            await handler(argument).ConfigureAwait(false);
        }
    }

    private static string? NullIfEmpty(string? s) => string.IsNullOrEmpty(s) ? null : s;

    /// <summary>Runs control events one at a time, in order, off the network threads and off the UI thread.</summary>
    private sealed class EventDispatcher : IAsyncDisposable
    {
        private readonly Channel<Func<Task>> _queue = Channel.CreateUnbounded<Func<Task>>(new UnboundedChannelOptions { SingleReader = true });
        private readonly ILogger _logger;
        private readonly Task _loop;

        public EventDispatcher(ILogger logger)
        {
            _logger = logger;
            _loop = Task.Run(RunAsync);
        }

        public void Post(Func<Task> work) => _queue.Writer.TryWrite(work);

        public void Post(Action work) => Post(() =>
        {
            work();
            return Task.CompletedTask;
        });

        private async Task RunAsync()
        {
            await foreach (Func<Task> work in _queue.Reader.ReadAllAsync().ConfigureAwait(false))
            {
                try
                {
                    await work().ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    _logger.LogWarning(e, "an event handler threw");
                }
            }
        }

        public async ValueTask DisposeAsync()
        {
            _queue.Writer.TryComplete();
            await _loop.ConfigureAwait(false);
        }
    }

    /// <summary>Client-side token bucket for control messages (Limits.SignalsPerSec, burst twice that), at 90% of the server's rate.</summary>
    private sealed class ControlPacer
    {
        private readonly object _lock = new();
        private double _rate;
        private double _burst;
        private double _tokens;
        private long _last = Stopwatch.GetTimestamp();

        public void Configure(uint perSecond)
        {
            lock (_lock)
            {
                _rate = perSecond * 0.9;
                _burst = perSecond * 2 * 0.9;
                _tokens = Math.Min(_tokens, _burst);
            }
        }

        public void Reset()
        {
            lock (_lock)
            {
                _tokens = _burst;
                _last = Stopwatch.GetTimestamp();
            }
        }

        /// <summary>Takes one token; returns how long to wait before sending (zero if none).</summary>
        public TimeSpan Take()
        {
            lock (_lock)
            {
                if (_rate <= 0)
                {
                    return TimeSpan.Zero;
                }

                long now = Stopwatch.GetTimestamp();
                _tokens = Math.Min(_burst, _tokens + (now - _last) * _rate / Stopwatch.Frequency);
                _last = now;
                _tokens -= 1;
                return _tokens >= 0 ? TimeSpan.Zero : TimeSpan.FromSeconds(-_tokens / _rate);
            }
        }
    }
}
