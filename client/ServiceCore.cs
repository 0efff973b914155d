// The service's functional core: every decision of WebRTCP2PService, with no I/O,
// no threads and no clock reads. The shell (WebRTCP2PService) calls one method per
// input with the current time, then drains Outputs (commands and events, in order)
// and sleeps until NextWake. Single-threaded: the shell holds one lock around it.
//
// Inputs: user calls (Start, Stop, CreateSession, JoinSession, Leave, SendHub,
// Invoke, SendFlight), transport events (TransportConnected/Failed/Lost, server
// messages, relay frames), link events (local signals, channel open, ICE state,
// direct frames), Tick.
// Outputs: Connect/CloseTransport/SendControl/SendRelay, OpenLink/CloseLink/
// LinkSignal/SendDirect, Complete (a user task), and events.
//
// C# 7.2 (mono).

using System;
using System.Collections.Generic;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    /// <summary>Connection state, named as SignalR's HubConnectionState.</summary>
    public enum HubConnectionState
    {
        Disconnected,
        Connected,
        Connecting,
        Reconnecting,
    }

    public enum TransportKind
    {
        Quic,
        WebSocket,
    }

    public enum OutputKind
    {
        Connect, CloseTransport, SendControl, SendRelay,
        OpenLink, CloseLink, LinkSignal, SendDirect,
        Complete,
        StateChanged, Reconnecting, Reconnected, Closed,
        SessionChanged, PeerJoined, PeerLeft, PeerStatus, PathChanged, HostChanged,
        HubMessage, InvokeRequest, FlightData, AppData, ServerError,
        /// <summary>A node sent us to another (Name: the node, Server: where; cluster mode). Reconnecting/Reconnected follow.</summary>
        Redirected,
    }

    /// <summary>One command or event from the core. Which fields are set depends on Kind.</summary>
    public sealed class CoreOutput
    {
        public OutputKind Kind;
        public int Conn;
        public TransportKind Transport;
        /// <summary>
        /// Connect (WebSocket): the value of the URL's <c>first</c> parameter (First.Encode:
        /// the Hello, maybe a session request), or null. The shell appends it to the URL
        /// and must never log that URL. With it, the core sends no Hello on the connection.
        /// </summary>
        public string First;
        public bool Leave;
        public bool Resume;
        public ClientMsg Message;
        public uint Peer;
        public int LinkId;
        public bool Offerer;
        public List<IceServer> IceServers;
        public Signal Signal;
        public byte[] Data;
        public FlightPath Path;
        public int Token;
        public object Result;
        public Exception Error;
        public HubConnectionState State;
        public string Name;
        public string[] Args;
        public long Id;
        public bool Online;
        public LeaveReason Reason;
        /// <summary>
        /// Connect: the server to connect to, null for the configured one (cluster mode: a
        /// fallback or a redirect's node). Redirected: where the redirect leads.
        /// </summary>
        public ServerEndpoint Server;
    }

    /// <summary>How the shell asks SIPSorcery how much it has not sent yet.</summary>
    public interface ILinkMetrics
    {
        long BufferedAmount(uint peer, int linkId);
    }

    /// <summary>Options the core needs (times in milliseconds).</summary>
    public sealed class CoreOptions
    {
        public string DisplayName = "";
        public RelayMode RelayMode = RelayMode.Stream;
        public bool QuicAllowed = true;
        public bool QuicSupported = true;
        public bool WebSocketAllowed = true;
        /// <summary>WebSocket attempts carry the Hello (and a pending session request) in the URL (PROTOCOL.md section 3).</summary>
        public bool FirstInUrl = true;
        public long QuicFallbackDelayMs = 1000;
        public long ConnectTimeoutMs = 10000;
        public long PingIntervalMs = 5000;
        /// <summary>
        /// A connected server that sends nothing (no message, no relay frame) for this long is
        /// taken as lost: the connection is closed and Reconnecting fires. Pings go out at least
        /// every half of it, so a live server always answers in time. 0: off.
        /// </summary>
        public long ServerTimeoutMs = 10000;
        /// <summary>From the transport's connect to the Welcome; a handshake that takes longer fails the attempt. 0: off.</summary>
        public long HandshakeTimeoutMs = 15000;
        public long RequestTimeoutMs = 10000;
        public long InvokeTimeoutMs = 30000;
        public long[] ReconnectDelaysMs = ReconnectPolicy.SignalRDefaultMs;
        public bool AutoRejoin = true;
        public bool EnableDirect = true;
        /// <summary>First retry of a failed direct path (both sides), doubled for each further one.</summary>
        public long DirectRetryDelayMs = 2000;
        public long DirectRetryMaxDelayMs = 60000;
        public int DirectMaxRetries = 8;
        public PathTimings Path = new PathTimings();
        /// <summary>Cluster mode: other nodes, tried in turn when the current server cannot be reached.</summary>
        public List<ServerEndpoint> Fallbacks = new List<ServerEndpoint>();
        /// <summary>Cluster mode: redirects followed in a row before the request (or start) fails.</summary>
        public int MaxRedirects = ServerRotation.MaxRedirects;
    }

    public sealed class ServerException : Exception
    {
        public ServerException(ushort code, string message)
            : base(ErrorCodes.Name(code) + " (" + code + "): " + message)
        {
            Code = code;
        }

        public ushort Code { get; private set; }
    }

    /// <summary>InvokeAsync failed on the host (no handler, handler threw, host left).</summary>
    public sealed class HubException : Exception
    {
        public HubException(string message) : base(message)
        {
        }
    }

    public sealed class PeerState
    {
        public PeerInfo Info;
        public bool Online = true;
        public PeerPath Path;
        public int LinkId;
        public bool Offerer;
        public bool DescriptionSent;
        public List<Signal> HeldLocal = new List<Signal>();
        public int Retries;
        public long RetryAt = -1;
        public FlightPath LastPath = FlightPath.Relay;
    }

    public sealed class ServiceCore
    {
        private static readonly HashSet<ushort> NoReconnect = new HashSet<ushort>
        {
            (ushort)ErrorCode.UnsupportedVersion, (ushort)ErrorCode.ProtocolViolation,
            (ushort)ErrorCode.TooManyJoinAttempts, (ushort)ErrorCode.BadMessage, (ushort)ErrorCode.FrameTooLarge,
            // Another connection resumed this peer (a TURN refresh handing over is handled before this).
            (ushort)ErrorCode.Replaced,
        };

        private readonly CoreOptions _o;
        private readonly IRandom _random;
        private readonly ILinkMetrics _metrics;
        private readonly ReconnectPolicy _policy;
        private readonly List<CoreOutput> _out = new List<CoreOutput>();
        private readonly ControlQueue _queue = new ControlQueue();
        private readonly RequestTracker _request = new RequestTracker();
        private readonly Dictionary<uint, PeerState> _peers = new Dictionary<uint, PeerState>();
        private readonly Dictionary<uint, uint> _lastSeq = new Dictionary<uint, uint>();
        private readonly Dictionary<long, PendingInvoke> _invokes = new Dictionary<long, PendingInvoke>();

        private int _nextConn = 1;
        private int _nextLink = 1;
        private long _nextInvoke = 1;
        // Connection attempts: conn id -> kind; handshaking conn; established conn.
        private readonly Dictionary<int, TransportKind> _attempts = new Dictionary<int, TransportKind>();
        private long _wsStartAt = -1;
        private long _attemptDeadline = -1;
        private int _handshake;
        private TransportKind _handshakeKind;
        private int _conn;
        private TransportKind _connKind;
        private int _refreshConn;
        private TransportKind _refreshKind;
        private int _reconnectAttempt;
        private long _reconnectAt = -1;
        private bool _stopping;
        private int _startToken;

        private int _requestToken;
        private long _requestDeadline = -1;
        private string _requestPassword;
        // A CreateSession/JoinSession asked for before the first Welcome: folded into a
        // WebSocket attempt's URL (then _requestInUrlConn is that attempt), or sent after
        // the Welcome.
        private ClientMsg _pendingRequest;
        private int _requestInUrlConn;
        // Attempts whose URL carried the Hello: conn -> whether it carried a resume token.
        private readonly Dictionary<int, bool> _helloInUrl = new Dictionary<int, bool>();

        private ServerMsg.Error _lastError;
        // The server closed the current connection with `replaced` because the refresh
        // connection resumed the seat, before that connection's Welcome reached us.
        private bool _handoff;

        private uint _sendSeq;
        private long _nextPing = -1;
        // When SetTimeouts last changed the timeouts (the silence clock starts no earlier).
        private long _timeoutsSetAt = -1;
        // The handshake under way: when its transport connected, and the connect deadline it replaced.
        private long _handshakeAt = -1;
        private long _raceDeadline = -1;
        // When the connection last heard from the server (any message or relay frame).
        private long _lastRx = -1;
        private long _refreshAt = -1;

        // Cluster mode: where connections go, redirects in a row, and the CreateSession /
        // JoinSession being asked (to send again where a redirect leads).
        private readonly ServerRotation _rotation;
        private int _redirects;
        private ClientMsg _requestMsg;

        public ServiceCore(CoreOptions options, IRandom random, ILinkMetrics metrics)
        {
            _o = options;
            _random = random;
            _metrics = metrics;
            _policy = new ReconnectPolicy(options.ReconnectDelaysMs);
            _rotation = new ServerRotation(options.Fallbacks);
            State = HubConnectionState.Disconnected;
            Limits = new Limits();
            IceServers = new List<IceServer>();
        }

        public HubConnectionState State { get; private set; }
        public uint PeerId { get; private set; }
        public byte[] ResumeToken { get; private set; }
        public SessionInfo Session { get; private set; }
        public string SessionPassword { get; private set; }
        public Limits Limits { get; private set; }
        public List<IceServer> IceServers { get; private set; }
        public long RttMs { get; private set; }
        public long StaleDropped { get; private set; }
        /// <summary>Hub messages a newer one with the same method and target replaced while they waited (ControlQueue).</summary>
        public long HubMessagesCoalesced { get { return _queue.Coalesced; } }
        public int CurrentConn { get { return _conn; } }

        /// <summary>Control messages can be queued: connected, or handing over to a refresh connection.</summary>
        private bool Online
        {
            get { return _conn != 0 || _handoff; }
        }
        public TransportKind CurrentTransport { get { return _connKind; } }

        public bool IsHost
        {
            get { return Session != null && Session.Host == PeerId; }
        }

        public IEnumerable<PeerState> Peers
        {
            get { return _peers.Values; }
        }

        public PeerState GetPeer(uint id)
        {
            PeerState p;
            return _peers.TryGetValue(id, out p) ? p : null;
        }

        /// <summary>Takes what the shell must do, in order.</summary>
        public List<CoreOutput> Drain(long now)
        {
            Pump(now);
            List<CoreOutput> result = new List<CoreOutput>(_out);
            _out.Clear();
            return result;
        }

        private CoreOutput Emit(OutputKind kind)
        {
            CoreOutput o = new CoreOutput();
            o.Kind = kind;
            _out.Add(o);
            return o;
        }

        private void Complete(int token, object result, Exception error)
        {
            if (token == 0)
            {
                return;
            }
            CoreOutput o = Emit(OutputKind.Complete);
            o.Token = token;
            o.Result = result;
            o.Error = error;
        }

        private void SetState(HubConnectionState s)
        {
            if (State != s)
            {
                State = s;
                Emit(OutputKind.StateChanged).State = s;
            }
        }

        // ------------------------------------------------------------------
        // Connection lifecycle
        // ------------------------------------------------------------------

        /// <summary>StartAsync: completes token when the first Welcome arrives (or fails).</summary>
        public void Start(long now, int token)
        {
            Start(now, token, null, 0);
        }

        /// <summary>
        /// StartAsync with a first CreateSession/JoinSession (requestToken completes with
        /// its SessionInfo). A WebSocket attempt that is the only one carries it in its
        /// URL, so Welcome and the answer come in the connect's round trip; otherwise it
        /// is sent right after the Welcome.
        /// </summary>
        public void Start(long now, int token, ClientMsg request, int requestToken)
        {
            if (State != HubConnectionState.Disconnected)
            {
                Complete(token, null, new InvalidOperationException("already started"));
                Complete(requestToken, null, new InvalidOperationException("already started"));
                return;
            }
            if (request != null)
            {
                ClientMsg.CreateSession create = request as ClientMsg.CreateSession;
                ClientMsg.JoinSession join = request as ClientMsg.JoinSession;
                if (create == null && join == null)
                {
                    Complete(token, null, new ArgumentException("the first request is CreateSession or JoinSession"));
                    Complete(requestToken, null, new ArgumentException("the first request is CreateSession or JoinSession"));
                    return;
                }
                _pendingRequest = request;
                _requestMsg = request;
                _requestToken = requestToken;
                _requestPassword = create != null ? create.Password : join.Password;
            }
            _stopping = false;
            _startToken = token;
            _reconnectAttempt = 0;
            SetState(HubConnectionState.Connecting);
            BeginRace(now);
        }

        private void BeginRace(long now)
        {
            _attempts.Clear();
            _wsStartAt = -1;
            _attemptDeadline = now + _o.ConnectTimeoutMs;
            if (_requestInUrlConn != 0 && _requestMsg != null)
            {
                // The attempt whose URL carried the request never got its Welcome (it could
                // not reach a redirect's node, or timed out): the request goes with this race.
                _pendingRequest = _requestMsg;
                _requestInUrlConn = 0;
                _request.End();
            }
            ServerEndpoint at = _rotation.Current;
            bool quic = _o.QuicAllowed && _o.QuicSupported && (at == null || at.Reaches(TransportKind.Quic));
            bool ws = _o.WebSocketAllowed && (at == null || at.Reaches(TransportKind.WebSocket));
            if (quic)
            {
                StartAttempt(TransportKind.Quic, false);
                if (ws)
                {
                    _wsStartAt = now + _o.QuicFallbackDelayMs;
                }
            }
            else if (ws)
            {
                StartAttempt(TransportKind.WebSocket, false);
            }
            else
            {
                _attemptDeadline = -1;
                ConnectFailed(now, new PlatformNotSupportedException("QUIC is not supported here and WebSocket is switched off"));
            }
        }

        private int StartAttempt(TransportKind kind, bool refresh)
        {
            // Alone: no other attempt can connect and take the seat (QUIC has failed or is
            // off, no refresh connection is under way). Only then may a resume token or a
            // session request go in the URL: the server acts on a URL's Hello at the
            // upgrade, so a losing attempt would otherwise take the seat over (`replaced`)
            // or join a session. A fresh Hello in a losing attempt only makes a peer that
            // the close with 1000 removes at once (CloseAttempt).
            bool alone = refresh || (_attempts.Count == 0 && _refreshConn == 0);
            int id = _nextConn++;
            if (!refresh)
            {
                _attempts[id] = kind;
            }
            CoreOutput o = Emit(OutputKind.Connect);
            o.Conn = id;
            o.Transport = kind;
            o.Resume = ResumeToken != null;
            o.Server = _rotation.Current;
            if (kind == TransportKind.WebSocket && _o.FirstInUrl && (alone || ResumeToken == null))
            {
                ClientMsg request = alone && !refresh && ResumeToken == null ? _pendingRequest : null;
                try
                {
                    o.First = First.Encode(MakeHello(), request);
                }
                catch (ArgumentException)
                {
                    // Longer than the server takes in a URL (cannot happen within the
                    // limits on names and passwords): send the request after the Welcome.
                    request = null;
                    o.First = First.Encode(MakeHello(), null);
                }
                _helloInUrl[id] = ResumeToken != null;
                if (request != null)
                {
                    _pendingRequest = null;
                    _requestInUrlConn = id;
                }
            }
            return id;
        }

        /// <summary>
        /// Closes an attempt or a connection that is not (or no longer) the connection.
        /// One whose URL carried a fresh Hello leaves at once (1000): its peer is nobody's.
        /// One that carried a resume token keeps the seat (4000) unless the service stops.
        /// </summary>
        private void CloseAttempt(int conn, bool stopping)
        {
            bool token;
            Close(conn, _helloInUrl.TryGetValue(conn, out token) && (!token || stopping));
        }

        /// <summary>A transport attempt connected (handshake done, control stream open).</summary>
        public void TransportConnected(long now, int conn)
        {
            if (conn == _refreshConn)
            {
                if (!_helloInUrl.ContainsKey(conn))
                {
                    SendHello(conn, now, true);
                }
                return;
            }
            TransportKind kind;
            if (!_attempts.TryGetValue(conn, out kind) || _handshake != 0)
            {
                CloseAttempt(conn, false);
                return;
            }
            _attempts.Remove(conn);
            foreach (int loser in _attempts.Keys)
            {
                CloseAttempt(loser, false);
            }
            _attempts.Clear();
            _wsStartAt = -1;
            _handshake = conn;
            _handshakeKind = kind;
            _handshakeAt = now;
            _raceDeadline = _attemptDeadline;
            if (_o.HandshakeTimeoutMs > 0)
            {
                // From here the attempt deadline is the handshake's (the Welcome must come within it).
                _attemptDeadline = now + _o.HandshakeTimeoutMs;
            }
            _queue.Clear();
            _queue.Configure(0, now);
            if (conn == _requestInUrlConn)
            {
                // Welcome, then the request's answer, are the first messages.
                _request.BeginInFirst(_requestToken);
            }
            if (!_helloInUrl.ContainsKey(conn))
            {
                SendHello(conn, now, false);
            }
        }

        private ClientMsg.Hello MakeHello()
        {
            ClientMsg.Hello hello = new ClientMsg.Hello();
            hello.Client = ClientKind.DotNet;
            hello.RelayMode = _o.RelayMode;
            hello.Name = _o.DisplayName ?? "";
            hello.ResumeToken = ResumeToken;
            return hello;
        }

        private void SendHello(int conn, long now, bool direct)
        {
            CoreOutput o = Emit(OutputKind.SendControl);
            o.Conn = conn;
            o.Message = MakeHello();
        }

        /// <summary>A transport attempt failed before connecting.</summary>
        public void TransportFailed(long now, int conn, Exception error)
        {
            _helloInUrl.Remove(conn);
            if (conn == _refreshConn)
            {
                _refreshConn = 0;
                _refreshAt = now + 30000;
                return;
            }
            TransportKind kind;
            if (!_attempts.TryGetValue(conn, out kind))
            {
                return;
            }
            _attempts.Remove(conn);
            if (kind == TransportKind.Quic && _wsStartAt >= 0)
            {
                _wsStartAt = now;
            }
            else if (_attempts.Count == 0 && _wsStartAt < 0)
            {
                ConnectFailed(now, error);
            }
        }

        private void ConnectFailed(long now, Exception error)
        {
            _attemptDeadline = -1;
            if (State == HubConnectionState.Connecting && _rotation.Target != null)
            {
                // A redirect's node cannot be reached: the configured servers instead.
                _rotation.Unreachable();
                BeginRace(now);
                return;
            }
            _rotation.Unreachable();
            if (State == HubConnectionState.Connecting)
            {
                FailRequest(error ?? new TimeoutException("connect failed"), true);
                SetState(HubConnectionState.Disconnected);
                Complete(_startToken, null, error);
                _startToken = 0;
                return;
            }
            ScheduleReconnect(now, error, -1);
        }

        /// <summary>The connection (or a handshaking one) ended: error, close or end of stream.</summary>
        public void TransportLost(long now, int conn, Exception error, ushort closeCode)
        {
            _helloInUrl.Remove(conn);
            if (conn == _refreshConn)
            {
                _refreshConn = 0;
                _refreshAt = now + 30000;
                if (!_handoff)
                {
                    return;
                }
                // The old connection is already gone: this is the loss of the connection.
                _handoff = false;
                _conn = conn;
                closeCode = closeCode == (ushort)ErrorCode.Replaced ? (ushort)0 : closeCode;
            }
            if (_attempts.ContainsKey(conn))
            {
                TransportFailed(now, conn, error);
                return;
            }
            if (conn != _conn && conn != _handshake)
            {
                return;
            }
            if (conn == _conn && closeCode == (ushort)ErrorCode.Replaced && _refreshConn != 0)
            {
                // Make-before-break: the refresh connection took the seat over; its Welcome
                // follows. Queued control messages wait for it; nothing is redialled.
                _conn = 0;
                _handoff = true;
                return;
            }
            bool wasHandshake = conn == _handshake;
            _conn = 0;
            _handshake = 0;
            _queue.Clear();
            FailRequest(new ServerException((ushort)ErrorCode.Internal, "connection lost"), false);
            if (_stopping)
            {
                return;
            }
            if (closeCode != 0 && NoReconnect.Contains(closeCode))
            {
                // The Error sent just before the close says why, in the server's words.
                ServerMsg.Error last = _lastError;
                GiveUp(last != null && last.Code == closeCode
                    ? new ServerException(closeCode, last.Message)
                    : error ?? new ServerException(closeCode, "closed by the server"));
                return;
            }
            if (wasHandshake && State == HubConnectionState.Connecting)
            {
                ConnectFailed(now, error);
                return;
            }
            ScheduleReconnect(now, error, -1);
        }

        /// <summary>Keep-alive pings: PingIntervalMs, but at least every half ServerTimeoutMs (so a live server is never taken for dead).</summary>
        private long PingEveryMs()
        {
            long ping = _o.PingIntervalMs;
            if (_o.ServerTimeoutMs > 0)
            {
                long half = Math.Max(1, _o.ServerTimeoutMs / 2);
                ping = ping > 0 ? Math.Min(ping, half) : half;
            }
            return ping;
        }

        /// <summary>
        /// When the connected server counts as silent: ServerTimeoutMs after it was last heard
        /// from, or after the timeouts last changed if that is later; -1: not connected or off.
        /// </summary>
        private long SilentDeadline()
        {
            if (_conn == 0 || _o.ServerTimeoutMs <= 0 || _lastRx < 0)
            {
                return -1;
            }
            return Math.Max(_lastRx, _timeoutsSetAt) + _o.ServerTimeoutMs;
        }

        /// <summary>
        /// SignalR's settable ServerTimeout, KeepAliveInterval and HandshakeTimeout on a built
        /// connection (milliseconds, 0: off, negative: unchanged), applied from the next decision:
        ///  * ServerTimeout: the silent-server deadline is the new timeout after the server was
        ///    last heard from or after this call, whichever is later (a shorter timeout never
        ///    condemns at once a server that was within the old one);
        ///  * the ping interval (and the half-ServerTimeout floor): the next ping goes out no
        ///    later than one new interval from now (a longer one applies after the ping due);
        ///  * HandshakeTimeout: a handshake under way gets the new timeout from its start (off:
        ///    the connect deadline it had before); later handshakes take it as they begin.
        /// </summary>
        public void SetTimeouts(long now, long serverTimeoutMs, long pingIntervalMs, long handshakeTimeoutMs)
        {
            if (serverTimeoutMs >= 0)
            {
                _o.ServerTimeoutMs = serverTimeoutMs;
            }
            if (pingIntervalMs >= 0)
            {
                _o.PingIntervalMs = pingIntervalMs;
            }
            if (handshakeTimeoutMs >= 0)
            {
                _o.HandshakeTimeoutMs = handshakeTimeoutMs;
            }
            _timeoutsSetAt = now;
            if (_conn != 0)
            {
                long ping = PingEveryMs();
                _nextPing = ping > 0 ? Min(_nextPing, now + ping) : -1;
            }
            if (_handshake != 0 && _conn == 0 && handshakeTimeoutMs >= 0)
            {
                _attemptDeadline = _o.HandshakeTimeoutMs > 0 ? _handshakeAt + _o.HandshakeTimeoutMs : _raceDeadline;
            }
        }

        /// <summary>The server sent nothing for ServerTimeoutMs: the connection is lost (as TCP or QUIC would say, much later).</summary>
        private void ServerSilent(long now)
        {
            int c = _conn;
            _lastRx = -1;
            Close(c, false);
            TransportLost(now, c, new TimeoutException("the server sent nothing for " + _o.ServerTimeoutMs + " ms (ServerTimeout)"), 0);
        }

        private void ScheduleReconnect(long now, Exception error, long delayOverride)
        {
            if (!_policy.Enabled && delayOverride < 0)
            {
                GiveUp(error);
                return;
            }
            long delay = delayOverride >= 0 ? delayOverride : _policy.Delay(_reconnectAttempt, _random);
            if (delay < 0)
            {
                GiveUp(error);
                return;
            }
            if (State != HubConnectionState.Reconnecting)
            {
                SetState(HubConnectionState.Reconnecting);
                Emit(OutputKind.Reconnecting).Error = error;
            }
            if (delayOverride < 0)
            {
                _reconnectAttempt++;
            }
            _reconnectAt = now + delay;
        }

        private void GiveUp(Exception error)
        {
            _reconnectAt = -1;
            _attemptDeadline = -1;
            foreach (int a in _attempts.Keys)
            {
                CloseAttempt(a, false);
            }
            _attempts.Clear();
            if (_conn != 0)
            {
                Close(_conn, false);
                _conn = 0;
            }
            if (_refreshConn != 0)
            {
                Close(_refreshConn, true);
                _refreshConn = 0;
            }
            _handoff = false;
            ClearSession();
            FailAllInvokes(error ?? new HubException("connection closed"));
            SetState(HubConnectionState.Disconnected);
            Emit(OutputKind.Closed).Error = error;
        }

        /// <summary>StopAsync: leaves for good (close code 0 / 1000).</summary>
        public void Stop(long now)
        {
            _stopping = true;
            _handoff = false;
            if (_conn != 0)
            {
                Close(_conn, true);
            }
            if (_handshake != 0)
            {
                Close(_handshake, true);
            }
            if (_refreshConn != 0)
            {
                Close(_refreshConn, true);
                _refreshConn = 0;
            }
            _conn = 0;
            _handshake = 0;
            foreach (int a in _attempts.Keys)
            {
                CloseAttempt(a, true);
            }
            _attempts.Clear();
            _reconnectAt = -1;
            _attemptDeadline = -1;
            FailRequest(new OperationCanceledException("stopped"), true);
            Complete(_startToken, null, new OperationCanceledException("stopped"));
            _startToken = 0;
            ClearSession();
            FailAllInvokes(new HubException("connection stopped"));
            ResumeToken = null;
            if (State != HubConnectionState.Disconnected)
            {
                SetState(HubConnectionState.Disconnected);
                Emit(OutputKind.Closed);
            }
        }

        private void Close(int conn, bool leave)
        {
            CoreOutput o = Emit(OutputKind.CloseTransport);
            o.Conn = conn;
            o.Leave = leave;
        }

        // ------------------------------------------------------------------
        // Server messages
        // ------------------------------------------------------------------

        public void ServerMessage(long now, int conn, ServerMsg msg)
        {
            if (conn == _refreshConn)
            {
                RefreshMessage(now, msg);
                return;
            }
            if (conn != _conn && conn != _handshake)
            {
                return;
            }
            if (conn == _conn)
            {
                _lastRx = now;
            }
            if (msg is ServerMsg.Welcome)
            {
                OnWelcome(now, conn, (ServerMsg.Welcome)msg);
            }
            else if (msg is ServerMsg.SessionCreated)
            {
                OnSessionEntered(now, ((ServerMsg.SessionCreated)msg).Session, false);
            }
            else if (msg is ServerMsg.SessionJoined)
            {
                OnSessionEntered(now, ((ServerMsg.SessionJoined)msg).Session, true);
            }
            else if (msg is ServerMsg.PeerJoined)
            {
                OnPeerJoined(now, ((ServerMsg.PeerJoined)msg).Peer);
            }
            else if (msg is ServerMsg.PeerLeft)
            {
                ServerMsg.PeerLeft m = (ServerMsg.PeerLeft)msg;
                OnPeerLeft(m.Peer, m.Reason);
            }
            else if (msg is ServerMsg.HostChanged)
            {
                OnHostChanged(((ServerMsg.HostChanged)msg).Host);
            }
            else if (msg is ServerMsg.SignalFrom)
            {
                ServerMsg.SignalFrom m = (ServerMsg.SignalFrom)msg;
                OnSignal(now, m.From, m.Signal);
            }
            else if (msg is ServerMsg.Redirect)
            {
                OnRedirect(now, conn, (ServerMsg.Redirect)msg);
            }
            else if (msg is ServerMsg.Error)
            {
                ServerMsg.Error e = (ServerMsg.Error)msg;
                if (e.Code == (ushort)ErrorCode.ClusterUnavailable && conn == _handshake && State == HubConnectionState.Reconnecting)
                {
                    // The resume needs the cluster directory, out of reach now: try again
                    // after the backoff, on the same node, within the grace as usual.
                    _handshake = 0;
                    _attemptDeadline = -1;
                    CloseAttempt(conn, false);
                    ScheduleReconnect(now, new ServerException(e.Code, e.Message), -1);
                    return;
                }
                OnError(now, e);
            }
            else if (msg is ServerMsg.Pong)
            {
                OnPong(now, (ServerMsg.Pong)msg);
            }
            else if (msg is ServerMsg.SessionLeft)
            {
                ServerMsg.SessionLeft m = (ServerMsg.SessionLeft)msg;
                ClearSession();
                Emit(OutputKind.SessionChanged);
                CoreOutput o = Emit(OutputKind.PeerLeft);
                o.Peer = PeerId;
                o.Reason = m.Reason;
            }
            else if (msg is ServerMsg.PeerStatus)
            {
                ServerMsg.PeerStatus m = (ServerMsg.PeerStatus)msg;
                PeerState p = GetPeer(m.Peer);
                if (p != null)
                {
                    p.Online = m.Online;
                    CoreOutput o = Emit(OutputKind.PeerStatus);
                    o.Peer = m.Peer;
                    o.Online = m.Online;
                }
            }
            else if (msg is ServerMsg.GoingAway)
            {
                ServerMsg.GoingAway m = (ServerMsg.GoingAway)msg;
                int c = _conn;
                _conn = 0;
                _queue.Clear();
                FailRequest(new ServerException((ushort)ErrorCode.ShuttingDown, m.Message), false);
                Close(c, false);
                long spread = (long)(1000 * _random.NextDouble());
                ScheduleReconnect(now, new ServerException((ushort)ErrorCode.ShuttingDown, m.Message), m.ReconnectAfterMs + spread);
            }
        }

        /// <summary>
        /// Cluster mode (PROTOCOL.md section 11): leave this connection (keeping any seat),
        /// connect to the node at once, Hello (with the resume token if in a session) and
        /// the unanswered CreateSession/JoinSession again after its Welcome.
        /// </summary>
        private void OnRedirect(long now, int conn, ServerMsg.Redirect r)
        {
            _redirects++;
            ServerEndpoint target = ServerEndpoint.FromNode(r.Node);
            CoreOutput ev = Emit(OutputKind.Redirected);
            ev.Name = target.Name;
            ev.Server = target;
            bool requestPending = _request.Active || _requestInUrlConn != 0 || _pendingRequest != null;
            if (!ServerRotation.Follows(_redirects, _o.MaxRedirects))
            {
                TooManyRedirectsException err = new TooManyRedirectsException(_o.MaxRedirects, target.Name);
                _redirects = 0;
                if (State == HubConnectionState.Connecting)
                {
                    Close(conn, true);
                    _conn = 0;
                    _handshake = 0;
                    _attemptDeadline = -1;
                    FailRequest(err, true);
                    SetState(HubConnectionState.Disconnected);
                    Complete(_startToken, null, err);
                    _startToken = 0;
                    return;
                }
                FailRequest(err, true);
                if (Session == null)
                {
                    // The request failed; this connection stays as long as the node keeps it.
                    return;
                }
                // In a session: back to the configured servers, which redirect afresh.
                _rotation.Reset();
                requestPending = false;
            }
            else if ((_o.QuicAllowed && _o.QuicSupported && target.Reaches(TransportKind.Quic))
                || (_o.WebSocketAllowed && target.Reaches(TransportKind.WebSocket)))
            {
                _rotation.Redirected(target);
            }
            else
            {
                // Unreachable as given: the configured servers instead.
                _rotation.Redirected(null);
            }
            ClientMsg resend = requestPending ? _requestMsg : null;
            if (_conn == conn)
            {
                _conn = 0;
            }
            if (_handshake == conn)
            {
                _handshake = 0;
            }
            _attemptDeadline = -1;
            _queue.Clear();
            _request.End();
            _requestInUrlConn = 0;
            _requestDeadline = -1;
            _pendingRequest = resend;
            if (resend != null && Session == null)
            {
                // In no session: arrive as a new peer (no token), then ask again.
                ResumeToken = null;
            }
            Close(conn, false);
            if (State == HubConnectionState.Connecting)
            {
                BeginRace(now);
                return;
            }
            ScheduleReconnect(now, new RedirectedException(r.Reason, target.Name), 0);
        }

        private void OnWelcome(long now, int conn, ServerMsg.Welcome w)
        {
            bool reconnect = State == HubConnectionState.Reconnecting;
            uint oldId = PeerId;
            _handshake = 0;
            _conn = conn;
            _connKind = _handshakeKind;
            _lastError = null;
            _attemptDeadline = -1;
            _reconnectAt = -1;
            _reconnectAttempt = 0;
            ApplyWelcomeFields(now, w);
            _queue.Configure(Limits.SignalsPerSec, now);
            _lastRx = now;
            long ping = PingEveryMs();
            _nextPing = ping > 0 ? now + ping : -1;
            if (!w.Resumed && oldId != 0)
            {
                // A new peer id: the old seat (and session) is gone.
                string code = Session != null ? Session.Code : null;
                string password = SessionPassword;
                ClearSession();
                Emit(OutputKind.SessionChanged);
                if (code != null && _o.AutoRejoin)
                {
                    BeginRequest(now, 0, new ClientMsg.JoinSession(code, password), true, code, password);
                }
            }
            if (_requestInUrlConn == conn)
            {
                _requestInUrlConn = 0;
                _request.WelcomeSeen();
                _requestDeadline = now + _o.RequestTimeoutMs;
            }
            else if (_pendingRequest == null && !_request.Active)
            {
                _redirects = 0;
            }
            else if (_pendingRequest != null)
            {
                ClientMsg first = _pendingRequest;
                _pendingRequest = null;
                _requestDeadline = now + _o.RequestTimeoutMs;
                _request.Begin(_requestToken, first, _queue);
            }
            SetState(HubConnectionState.Connected);
            if (reconnect)
            {
                Emit(OutputKind.Reconnected).Name = PeerId.ToString();
            }
            Complete(_startToken, null, null);
            _startToken = 0;
        }

        private void ApplyWelcomeFields(long now, ServerMsg.Welcome w)
        {
            PeerId = w.PeerId;
            ResumeToken = w.ResumeToken;
            Limits = w.Limits;
            IceServers = w.IceServers;
            _refreshAt = TurnCredentials.RefreshAt(w.IceServers, w.ServerTimeMs, now);
        }

        /// <summary>Make-before-break resume for fresh TURN credentials.</summary>
        private void RefreshMessage(long now, ServerMsg msg)
        {
            ServerMsg.Welcome w = msg as ServerMsg.Welcome;
            if (w == null)
            {
                return;
            }
            int fresh = _refreshConn;
            _refreshConn = 0;
            if (!w.Resumed)
            {
                // The seat could not be taken over: keep the old connection, give this one up.
                Close(fresh, true);
                _refreshAt = now + 60000;
                if (_handoff)
                {
                    // (Cannot happen with a server that sent `replaced`; be safe.)
                    _handoff = false;
                    ScheduleReconnect(now, new ServerException((ushort)ErrorCode.ResumeFailed, "TURN refresh failed"), -1);
                }
                return;
            }
            int old = _conn;
            _conn = fresh;
            _lastRx = now;
            _handoff = false;
            // Queued control messages (hub messages, signals, a request) go out on the new connection.
            ApplyWelcomeFields(now, w);
            _queue.Configure(Limits.SignalsPerSec, now);
            if (old != 0)
            {
                Close(old, false);
            }
            if (State == HubConnectionState.Reconnecting)
            {
                // The old connection was lost while the refresh was under way: the refresh
                // connection is the resumed one; stop the reconnect race.
                foreach (int a in _attempts.Keys)
                {
                    CloseAttempt(a, false);
                }
                _attempts.Clear();
                if (_handshake != 0)
                {
                    CloseAttempt(_handshake, false);
                    _handshake = 0;
                }
                _wsStartAt = -1;
                _attemptDeadline = -1;
                _reconnectAt = -1;
                _reconnectAttempt = 0;
                _connKind = _refreshKind;
                SetState(HubConnectionState.Connected);
                Emit(OutputKind.Reconnected).Name = PeerId.ToString();
            }
            foreach (PeerState p in _peers.Values)
            {
                if (p.RetryAt == long.MaxValue)
                {
                    p.RetryAt = now;
                }
            }
        }

        private void OnSessionEntered(long now, SessionInfo info, bool joined)
        {
            bool answersRequest = _request.Active;
            bool resync = !answersRequest && Session != null && joined;
            Session = info;
            _redirects = 0;
            if (answersRequest)
            {
                _request.End();
                _requestMsg = null;
                _requestDeadline = -1;
                SessionPassword = _requestPassword;
                Complete(_requestToken, info, null);
                _requestToken = 0;
            }
            HashSet<uint> present = new HashSet<uint>();
            foreach (PeerInfo pi in info.Peers)
            {
                if (pi.Id == PeerId)
                {
                    continue;
                }
                present.Add(pi.Id);
                PeerState existing = GetPeer(pi.Id);
                if (existing != null)
                {
                    existing.Info = pi;
                    if (resync && existing.Path.State != DirectState.Connected)
                    {
                        // After a resume, the peer that reconnected offers again.
                        OpenLink(now, existing, true);
                    }
                    continue;
                }
                PeerState p = AddPeer(pi);
                // Convention: the peer already in the session offers to the newcomer; after a resume, I offer.
                if (resync)
                {
                    OpenLink(now, p, true);
                }
            }
            List<uint> gone = new List<uint>();
            foreach (uint id in _peers.Keys)
            {
                if (!present.Contains(id))
                {
                    gone.Add(id);
                }
            }
            foreach (uint id in gone)
            {
                OnPeerLeft(id, LeaveReason.TimedOut);
            }
            Emit(OutputKind.SessionChanged);
        }

        private PeerState AddPeer(PeerInfo info)
        {
            PeerState p = new PeerState();
            p.Info = info;
            p.Path = new PeerPath(_o.Path);
            _peers[info.Id] = p;
            _lastSeq.Remove(info.Id);
            CoreOutput o = Emit(OutputKind.PeerJoined);
            o.Peer = info.Id;
            o.Name = info.Name;
            return p;
        }

        private void OnPeerJoined(long now, PeerInfo info)
        {
            if (Session == null || info.Id == PeerId)
            {
                return;
            }
            Session.Peers.Add(info);
            PeerState p = GetPeer(info.Id) ?? AddPeer(info);
            OpenLink(now, p, true);
        }

        private void OnPeerLeft(uint id, LeaveReason reason)
        {
            PeerState p = GetPeer(id);
            if (p == null)
            {
                return;
            }
            CloseLink(p);
            _peers.Remove(id);
            _lastSeq.Remove(id);
            if (Session != null)
            {
                Session.Peers.RemoveAll(x => x.Id == id);
            }
            FailInvokesTo(id, new HubException("the host left before answering"));
            CoreOutput o = Emit(OutputKind.PeerLeft);
            o.Peer = id;
            o.Reason = reason;
        }

        private void OnHostChanged(uint host)
        {
            if (Session == null)
            {
                return;
            }
            uint old = Session.Host;
            Session.Host = host;
            if (old != host)
            {
                FailInvokesTo(old, new HubException("the session host changed before answering"));
            }
            Emit(OutputKind.HostChanged).Peer = host;
            Emit(OutputKind.SessionChanged);
        }

        /// <summary>
        /// An Error never ends the connection by itself: only the transport closing does
        /// (TransportLost with its close code). too_many_join_attempts, for one, comes
        /// without a close when the address's budget is spent: it fails the pending join
        /// and the connection stays.
        /// </summary>
        private void OnError(long now, ServerMsg.Error e)
        {
            _lastError = e;
            ServerException ex = new ServerException(e.Code, e.Message);
            if (_request.Claims(e))
            {
                _request.End();
                FailRequest(ex, true);
                return;
            }
            if (e.Code != (ushort)ErrorCode.ResumeFailed)
            {
                Emit(OutputKind.ServerError).Error = ex;
            }
        }

        private void OnPong(long now, ServerMsg.Pong p)
        {
            if (RequestTracker.IsMarker(p.ClientTimeMs))
            {
                ServerMsg.Error e;
                if (_request.OnPong(p.ClientTimeMs, out e))
                {
                    FailRequest(new ServerException(e.Code, e.Message), true);
                }
                return;
            }
            RttMs = Math.Max(0, now - (long)p.ClientTimeMs);
        }

        // ------------------------------------------------------------------
        // Requests
        // ------------------------------------------------------------------

        public void CreateSession(long now, int token, uint maxPeers, string password)
        {
            BeginRequest(now, token, new ClientMsg.CreateSession(maxPeers, password), false, null, password);
        }

        public void JoinSession(long now, int token, string code, string password)
        {
            BeginRequest(now, token, new ClientMsg.JoinSession(code, password), true, code, password);
        }

        private void BeginRequest(long now, int token, ClientMsg msg, bool join, string code, string password)
        {
            if (_request.Active || _pendingRequest != null || _requestInUrlConn != 0)
            {
                Complete(token, null, new InvalidOperationException("another CreateSession/JoinSession is pending"));
                return;
            }
            if (!Online && State == HubConnectionState.Connecting)
            {
                // StartAsync is under way: sent after the Welcome (or in the URL of a
                // WebSocket attempt that starts from now on and is the only one).
                _pendingRequest = msg;
                _requestMsg = msg;
                _requestToken = token;
                _requestPassword = password;
                return;
            }
            if (!Online)
            {
                Complete(token, null, new InvalidOperationException("not connected"));
                return;
            }
            if (_request.Active)
            {
                Complete(token, null, new InvalidOperationException("another CreateSession/JoinSession is pending"));
                return;
            }
            _requestToken = token;
            _requestPassword = password;
            _requestMsg = msg;
            _requestDeadline = now + _o.RequestTimeoutMs;
            _request.Begin(token, msg, _queue);
        }

        private void FailRequest(Exception error, bool always)
        {
            _pendingRequest = null;
            _requestMsg = null;
            _requestInUrlConn = 0;
            if (!_request.Active && _requestToken == 0)
            {
                return;
            }
            _request.End();
            _requestDeadline = -1;
            Complete(_requestToken, null, error);
            _requestToken = 0;
        }

        public void LeaveSession(long now)
        {
            if (Online && Session != null)
            {
                _queue.Enqueue(new ClientMsg.LeaveSession());
            }
        }

        // ------------------------------------------------------------------
        // Signals and links
        // ------------------------------------------------------------------

        private void OpenLink(long now, PeerState p, bool offerer)
        {
            CloseLink(p);
            if (!_o.EnableDirect)
            {
                p.Path.Disable();
                PathMaybeChanged(p);
                return;
            }
            if (_refreshAt >= 0 && now >= _refreshAt)
            {
                // TURN credentials expired or about to: fetch new ones first.
                p.RetryAt = long.MaxValue;
                p.Offerer = offerer;
                StartRefresh(now);
                return;
            }
            p.LinkId = _nextLink++;
            p.Offerer = offerer;
            p.DescriptionSent = false;
            p.HeldLocal.Clear();
            p.RetryAt = -1;
            p.Path.StartAttempt(now);
            CoreOutput o = Emit(OutputKind.OpenLink);
            o.Peer = p.Info.Id;
            o.LinkId = p.LinkId;
            o.Offerer = offerer;
            o.IceServers = IceServers;
            PathMaybeChanged(p);
        }

        private void CloseLink(PeerState p)
        {
            if (p.LinkId != 0)
            {
                CoreOutput o = Emit(OutputKind.CloseLink);
                o.Peer = p.Info.Id;
                o.LinkId = p.LinkId;
                p.LinkId = 0;
            }
        }

        private void OnSignal(long now, uint from, Signal s)
        {
            if (s is Signal.App)
            {
                OnApp(now, from, ((Signal.App)s).Data);
                return;
            }
            PeerState p = GetPeer(from);
            if (p == null)
            {
                return;
            }
            if (s is Signal.Offer)
            {
                bool glare = p.LinkId != 0 && p.Offerer && p.Path.State == DirectState.Connecting;
                if (glare && PeerId < from)
                {
                    return; // lower id keeps its own offer
                }
                if (!_o.EnableDirect)
                {
                    return;
                }
                OpenLink(now, p, false);
                if (p.LinkId == 0)
                {
                    return;
                }
            }
            if (p.LinkId == 0)
            {
                return;
            }
            CoreOutput o = Emit(OutputKind.LinkSignal);
            o.Peer = from;
            o.LinkId = p.LinkId;
            o.Signal = s;
        }

        /// <summary>The link produced an offer/answer/candidate to send. Candidates never overtake the description, EndOfCandidates never overtakes candidates.</summary>
        public void LocalSignal(long now, uint peer, int linkId, Signal s)
        {
            PeerState p = GetPeer(peer);
            if (p == null || p.LinkId != linkId || !Online)
            {
                return;
            }
            if (s is Signal.Offer || s is Signal.Answer)
            {
                _queue.Enqueue(new ClientMsg.SignalTo(peer, s));
                p.DescriptionSent = true;
                foreach (Signal held in p.HeldLocal)
                {
                    _queue.Enqueue(new ClientMsg.SignalTo(peer, held));
                }
                p.HeldLocal.Clear();
            }
            else if (!p.DescriptionSent)
            {
                p.HeldLocal.Add(s);
            }
            else
            {
                _queue.Enqueue(new ClientMsg.SignalTo(peer, s));
            }
        }

        public void ChannelOpen(long now, uint peer, int linkId, bool turn)
        {
            PeerState p = GetPeer(peer);
            if (p == null || p.LinkId != linkId)
            {
                return;
            }
            p.Path.ChannelOpen(now, turn);
            p.Retries = 0;
            PathMaybeChanged(p);
        }

        /// <summary>ICE disconnected (true) or connected again (false).</summary>
        public void IceInterrupted(long now, uint peer, int linkId, bool interrupted)
        {
            PeerState p = GetPeer(peer);
            if (p == null || p.LinkId != linkId)
            {
                return;
            }
            if (interrupted)
            {
                p.Path.IceInterrupted();
            }
            else
            {
                p.Path.IceRecovered(now);
            }
            PathMaybeChanged(p);
        }

        /// <summary>ICE failed, the PeerConnection or channel closed.</summary>
        public void LinkFailed(long now, uint peer, int linkId)
        {
            PeerState p = GetPeer(peer);
            if (p == null || p.LinkId != linkId)
            {
                return;
            }
            DirectFailed(now, p);
        }

        private void DirectFailed(long now, PeerState p)
        {
            CloseLink(p);
            p.Path.Fail();
            // Both sides retry (offering; glare goes to the lower id), with doubling delays and
            // +-25 % jitter: DirectRetryDelayMs, 2x, 4x ... at most DirectRetryMaxDelayMs.
            if (_o.DirectRetryDelayMs > 0 && p.Retries < _o.DirectMaxRetries)
            {
                long delay = _o.DirectRetryDelayMs << Math.Min(p.Retries, 10);
                delay = Math.Min(delay, Math.Max(_o.DirectRetryDelayMs, _o.DirectRetryMaxDelayMs));
                delay = (long)(delay * (0.75 + 0.5 * _random.NextDouble()));
                p.Retries++;
                p.RetryAt = now + delay;
            }
            PathMaybeChanged(p);
        }

        private void PathMaybeChanged(PeerState p)
        {
            FlightPath now = p.Path.Path;
            if (now != p.LastPath || p.Path.State == DirectState.Failed)
            {
                bool changed = now != p.LastPath;
                p.LastPath = now;
                if (changed || p.Path.State == DirectState.Failed)
                {
                    CoreOutput o = Emit(OutputKind.PathChanged);
                    o.Peer = p.Info.Id;
                    o.Path = now;
                }
            }
        }

        private void StartRefresh(long now)
        {
            if (_refreshConn != 0 || _conn == 0 || ResumeToken == null)
            {
                return;
            }
            _refreshKind = _connKind;
            _refreshConn = StartAttempt(_connKind, true);
        }

        // ------------------------------------------------------------------
        // Flight data
        // ------------------------------------------------------------------

        /// <summary>Wraps and routes one snapshot. False when nothing could be sent.</summary>
        public bool SendFlight(long now, uint to, byte[] data)
        {
            if (_conn == 0 && _peers.Count == 0)
            {
                return false;
            }
            _sendSeq++;
            byte[] frame = SnapshotEnvelope.Wrap(_sendSeq, data, 0, data.Length);
            List<PeerState> targets = new List<PeerState>();
            if (to == Wire.AllPeers)
            {
                targets.AddRange(_peers.Values);
            }
            else
            {
                PeerState p = GetPeer(to);
                if (p == null)
                {
                    return false;
                }
                targets.Add(p);
            }
            List<uint> relay = new List<uint>();
            bool any = false;
            foreach (PeerState p in targets)
            {
                long buffered = p.LinkId != 0 ? _metrics.BufferedAmount(p.Info.Id, p.LinkId) : 0;
                SendDecision d = p.Path.Decide(now, frame, _sendSeq, buffered);
                if (d == SendDecision.Direct)
                {
                    SendDirect(p, frame);
                    p.Path.OnSent(now, _sendSeq, frame.Length);
                    any = true;
                }
                else if (d == SendDecision.Held)
                {
                    any = true;
                }
                else if (p.Online)
                {
                    relay.Add(p.Info.Id);
                }
                PathMaybeChanged(p);
            }
            if (relay.Count > 0 && _conn != 0)
            {
                any = true;
                if (to == Wire.AllPeers && relay.Count == _peers.Count)
                {
                    SendRelay(Wire.AllPeers, frame);
                }
                else
                {
                    foreach (uint id in relay)
                    {
                        SendRelay(id, frame);
                    }
                }
            }
            return any;
        }

        private void SendDirect(PeerState p, byte[] frame)
        {
            CoreOutput o = Emit(OutputKind.SendDirect);
            o.Peer = p.Info.Id;
            o.LinkId = p.LinkId;
            o.Data = frame;
        }

        private void SendRelay(uint to, byte[] frame)
        {
            CoreOutput o = Emit(OutputKind.SendRelay);
            o.Conn = _conn;
            o.Peer = to;
            o.Data = frame;
        }

        public void RelayFrame(long now, int conn, uint from, byte[] payload)
        {
            if (conn == _conn && _conn != 0)
            {
                _lastRx = now;
            }
            PeerState p = GetPeer(from);
            if (p != null)
            {
                p.Path.OnRelayRx(now);
            }
            Deliver(from, payload, FlightPath.Relay);
        }

        public void DirectFrame(long now, uint from, int linkId, byte[] payload)
        {
            PeerState p = GetPeer(from);
            if (p == null || p.LinkId != linkId)
            {
                return;
            }
            ushort ack16;
            if (PeerAck.TryDecode(payload, out ack16))
            {
                p.Path.OnAck(now, ack16);
                PathMaybeChanged(p);
                return;
            }
            if (payload.Length < SnapshotEnvelope.HeaderBytes)
            {
                return;
            }
            if (p.Info.Client == ClientKind.DotNet)
            {
                // Every flight frame (and probe) that arrives directly is acknowledged at once.
                uint seq = (uint)(payload[0] | (payload[1] << 8) | (payload[2] << 16) | (payload[3] << 24));
                CoreOutput ack = Emit(OutputKind.SendDirect);
                ack.Peer = from;
                ack.LinkId = linkId;
                ack.Data = PeerAck.Encode(seq);
            }
            p.Path.OnDirectRx(now);
            Deliver(from, payload, p.Path.Turn ? FlightPath.Turn : FlightPath.Direct);
        }

        private void Deliver(uint from, byte[] payload, FlightPath path)
        {
            uint seq;
            int offset;
            if (!SnapshotEnvelope.TryUnwrap(payload, 0, payload.Length, out seq, out offset))
            {
                return;
            }
            uint last;
            if (_lastSeq.TryGetValue(from, out last) && !SnapshotEnvelope.IsNewer(seq, last))
            {
                StaleDropped++;
                return;
            }
            _lastSeq[from] = seq;
            byte[] data = new byte[payload.Length - offset];
            Buffer.BlockCopy(payload, offset, data, 0, data.Length);
            CoreOutput o = Emit(OutputKind.FlightData);
            o.Peer = from;
            o.Data = data;
            o.Path = path;
        }

        // ------------------------------------------------------------------
        // Hub messages and invocations
        // ------------------------------------------------------------------

        private sealed class PendingInvoke
        {
            public int Token;
            public uint Target;
            public long Deadline;
        }

        /// <summary>SendAsync: a hub message to every other peer (to = 0) or one peer.</summary>
        public bool SendHub(long now, uint to, string name, string[] args)
        {
            if (!Online || Session == null)
            {
                return false;
            }
            HubEnvelope e = new HubEnvelope();
            e.Name = name;
            e.Args = args;
            // Same method to the same target: a newer message may take a waiting one's place when the backlog is full.
            _queue.EnqueueHub(new ClientMsg.SignalTo(to, new Signal.App(e.Encode())), to + "\n" + name);
            return true;
        }

        public bool SendApp(long now, uint to, byte[] data)
        {
            if (!Online || Session == null)
            {
                return false;
            }
            _queue.Enqueue(new ClientMsg.SignalTo(to, new Signal.App(data)));
            return true;
        }

        /// <summary>InvokeAsync: runs on the session host; completes token with the result's raw JSON.</summary>
        public void Invoke(long now, int token, string name, string[] args, long timeoutMs)
        {
            if (Session == null || (!Online && !IsHost))
            {
                Complete(token, null, new InvalidOperationException("InvokeAsync needs a session (the host runs the hub methods)"));
                return;
            }
            long id = _nextInvoke++;
            PendingInvoke pi = new PendingInvoke();
            pi.Token = token;
            pi.Target = Session.Host;
            pi.Deadline = now + (timeoutMs > 0 ? timeoutMs : _o.InvokeTimeoutMs);
            _invokes[id] = pi;
            if (IsHost)
            {
                CoreOutput o = Emit(OutputKind.InvokeRequest);
                o.Peer = PeerId;
                o.Id = id;
                o.Name = name;
                o.Args = args;
                return;
            }
            HubEnvelope e = new HubEnvelope();
            e.Type = HubEnvelope.Invoke;
            e.Id = id;
            e.Name = name;
            e.Args = args;
            _queue.Enqueue(new ClientMsg.SignalTo(Session.Host, new Signal.App(e.Encode())));
        }

        /// <summary>The host's answer to an InvokeRequest (error null: resultJson is the result).</summary>
        public void InvokeResult(long now, uint to, long id, string resultJson, string error)
        {
            if (to == PeerId)
            {
                CompleteInvoke(to, id, resultJson, error);
                return;
            }
            if (!Online)
            {
                return;
            }
            HubEnvelope e = new HubEnvelope();
            e.Id = id;
            if (error != null)
            {
                e.Type = HubEnvelope.Error;
                e.ErrorText = error;
            }
            else
            {
                e.Type = HubEnvelope.Result;
                e.ResultJson = resultJson;
            }
            _queue.Enqueue(new ClientMsg.SignalTo(to, new Signal.App(e.Encode())));
        }

        private void CompleteInvoke(uint from, long id, string resultJson, string error)
        {
            PendingInvoke pi;
            if (!_invokes.TryGetValue(id, out pi) || pi.Target != from)
            {
                return;
            }
            _invokes.Remove(id);
            Complete(pi.Token, resultJson ?? "null", error != null ? new HubException(error) : null);
        }

        private void OnApp(long now, uint from, byte[] data)
        {
            HubEnvelope e = HubEnvelope.TryDecode(data);
            if (e == null)
            {
                CoreOutput raw = Emit(OutputKind.AppData);
                raw.Peer = from;
                raw.Data = data;
                return;
            }
            if (e.Type == HubEnvelope.Send)
            {
                CoreOutput o = Emit(OutputKind.HubMessage);
                o.Peer = from;
                o.Name = e.Name;
                o.Args = e.Args;
            }
            else if (e.Type == HubEnvelope.Invoke)
            {
                if (!IsHost)
                {
                    InvokeResult(now, from, e.Id, null, "peer " + PeerId + " is not the session host");
                    return;
                }
                CoreOutput o = Emit(OutputKind.InvokeRequest);
                o.Peer = from;
                o.Id = e.Id;
                o.Name = e.Name;
                o.Args = e.Args;
            }
            else if (e.Type == HubEnvelope.Result || e.Type == HubEnvelope.Error)
            {
                CompleteInvoke(from, e.Id, e.ResultJson, e.Type == HubEnvelope.Error ? e.ErrorText : null);
            }
        }

        private void FailInvokesTo(uint target, Exception error)
        {
            List<long> ids = new List<long>();
            foreach (KeyValuePair<long, PendingInvoke> kv in _invokes)
            {
                if (kv.Value.Target == target)
                {
                    ids.Add(kv.Key);
                }
            }
            foreach (long id in ids)
            {
                Complete(_invokes[id].Token, null, error);
                _invokes.Remove(id);
            }
        }

        private void FailAllInvokes(Exception error)
        {
            foreach (PendingInvoke pi in _invokes.Values)
            {
                Complete(pi.Token, null, error);
            }
            _invokes.Clear();
        }

        private void ClearSession()
        {
            foreach (PeerState p in _peers.Values)
            {
                CloseLink(p);
            }
            _peers.Clear();
            _lastSeq.Clear();
            Session = null;
            SessionPassword = null;
        }

        // ------------------------------------------------------------------
        // Time
        // ------------------------------------------------------------------

        /// <summary>Timers: connect race, deadlines, reconnects, pings, paths, pacing.</summary>
        public void Tick(long now)
        {
            if (_wsStartAt >= 0 && now >= _wsStartAt)
            {
                _wsStartAt = -1;
                StartAttempt(TransportKind.WebSocket, false);
            }
            if (_attemptDeadline >= 0 && now >= _attemptDeadline && _conn == 0)
            {
                _attemptDeadline = -1;
                foreach (int a in _attempts.Keys)
                {
                    CloseAttempt(a, false);
                }
                _attempts.Clear();
                _wsStartAt = -1;
                if (_handshake != 0)
                {
                    CloseAttempt(_handshake, false);
                    _handshake = 0;
                }
                ConnectFailed(now, new TimeoutException("connect timed out"));
            }
            if (_reconnectAt >= 0 && now >= _reconnectAt && _conn == 0 && _handshake == 0 && _attempts.Count == 0)
            {
                _reconnectAt = -1;
                BeginRace(now);
            }
            if (_requestDeadline >= 0 && now >= _requestDeadline)
            {
                FailRequest(new TimeoutException("no answer from the server"), true);
            }
            List<long> expired = new List<long>();
            foreach (KeyValuePair<long, PendingInvoke> kv in _invokes)
            {
                if (now >= kv.Value.Deadline)
                {
                    expired.Add(kv.Key);
                }
            }
            foreach (long id in expired)
            {
                Complete(_invokes[id].Token, null, new TimeoutException("the host did not answer in time"));
                _invokes.Remove(id);
            }
            long silentAt = SilentDeadline();
            if (silentAt >= 0 && now >= silentAt)
            {
                ServerSilent(now);
            }
            if (_nextPing >= 0 && now >= _nextPing && _conn != 0)
            {
                _queue.Enqueue(new ClientMsg.Ping((ulong)now));
                _nextPing = now + PingEveryMs();
            }
            if (_refreshAt >= 0 && now >= _refreshAt && _conn != 0 && _refreshConn == 0)
            {
                StartRefresh(now);
            }
            foreach (PeerState p in new List<PeerState>(_peers.Values))
            {
                if (p.RetryAt >= 0 && p.RetryAt != long.MaxValue && now >= p.RetryAt)
                {
                    OpenLink(now, p, true);
                }
                long buffered = p.LinkId != 0 ? _metrics.BufferedAmount(p.Info.Id, p.LinkId) : 0;
                bool probe;
                bool missed;
                p.Path.Tick(now, buffered, out probe, out missed);
                if (missed)
                {
                    p.Path.Fail();
                    DirectFailed(now, p);
                    continue;
                }
                uint heldSeq;
                byte[] held = p.Path.TakeHeld(buffered, out heldSeq);
                if (held != null)
                {
                    SendDirect(p, held);
                    p.Path.OnSent(now, heldSeq, held.Length);
                }
                if (probe && _sendSeq != 0)
                {
                    // A fresh copy of nothing new is still a probe: an empty snapshot with the current seq is dropped as a duplicate.
                    SendDirect(p, SnapshotEnvelope.Wrap(_sendSeq, new byte[0], 0, 0));
                    p.Path.OnSent(now, _sendSeq, SnapshotEnvelope.HeaderBytes);
                }
                PathMaybeChanged(p);
            }
        }

        private void Pump(long now)
        {
            Tick(now);
            if (_conn != 0)
            {
                List<ClientMsg> ready = new List<ClientMsg>();
                _queue.Poll(now, ready);
                foreach (ClientMsg m in ready)
                {
                    CoreOutput o = Emit(OutputKind.SendControl);
                    o.Conn = _conn;
                    o.Message = m;
                }
            }
        }

        /// <summary>When the shell must call Drain again at the latest; -1 = only on input.</summary>
        public long NextWake(long now)
        {
            long wake = -1;
            wake = Min(wake, _wsStartAt);
            wake = Min(wake, _attemptDeadline);
            wake = Min(wake, _reconnectAt);
            wake = Min(wake, _requestDeadline);
            wake = Min(wake, _conn != 0 ? _nextPing : -1);
            wake = Min(wake, SilentDeadline());
            wake = Min(wake, _conn != 0 && _refreshConn == 0 ? _refreshAt : -1);
            wake = Min(wake, _conn != 0 ? _queue.NextWake(now) : -1);
            foreach (PendingInvoke pi in _invokes.Values)
            {
                wake = Min(wake, pi.Deadline);
            }
            foreach (PeerState p in _peers.Values)
            {
                wake = Min(wake, p.RetryAt == long.MaxValue ? -1 : p.RetryAt);
                wake = Min(wake, p.Path.NextWake(now));
            }
            return wake;
        }

        private static long Min(long a, long b)
        {
            if (a < 0)
            {
                return b;
            }
            if (b < 0)
            {
                return a;
            }
            return Math.Min(a, b);
        }
    }
}
