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
//
// The core is one partial class, split by what each part decides:
//   ServiceCore.cs                 state (fields), properties, output plumbing;
//   ServiceCore.Types.cs           the types it speaks in (CoreOutput, CoreOptions, ...);
//   ServiceCore.Lifecycle.cs       start, the QUIC/WebSocket race, loss, reconnect, stop;
//   ServiceCore.Liveness.cs        keep-alive pings and the silent-server deadline;
//   ServiceCore.ServerMessages.cs  Welcome, session messages, redirects, errors, pongs;
//   ServiceCore.Requests.cs        CreateSession / JoinSession / LeaveSession;
//   ServiceCore.Links.cs           WebRTC links and their signals, direct-path retries;
//   ServiceCore.FlightData.cs      snapshots out (direct or relay) and in;
//   ServiceCore.Hub.cs             hub messages and invocations;
//   ServiceCore.Time.cs            Tick, the control queue pump, NextWake.
//   ServiceCore.Move.cs            a session move (rule 10): old and new connections.

using System;
using System.Collections.Generic;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    public sealed partial class ServiceCore
    {
        private readonly CoreOptions _o;
        private readonly IRandom _random;
        private readonly ILinkMetrics _metrics;
        private readonly ReconnectPolicy _policy;
        // Rules 1 and 7: the protocol's resume, then SignalR's delays.
        private readonly ReconnectPlan _plan;
        // Rule 2: pings, the RTT estimate, the live timeout.
        private readonly Liveness _liveness = new Liveness();
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
        // Region measurement (PROTOCOL.md section 11): the last result and whether one runs.
        private readonly RegionCache _regions = new RegionCache();
        private int _requestInUrlConn;
        // Attempts whose URL carried the Hello: conn -> whether it carried a resume token.
        private readonly Dictionary<int, bool> _helloInUrl = new Dictionary<int, bool>();

        private ServerMsg.Error _lastError;
        // The server closed the current connection with `replaced` because the refresh
        // connection resumed the seat, before that connection's Welcome reached us.
        private bool _handoff;

        private uint _sendSeq;
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
        private readonly RedirectRun _redirects = new RedirectRun();
        private ClientMsg _requestMsg;

        public ServiceCore(CoreOptions options, IRandom random, ILinkMetrics metrics)
        {
            _o = options;
            _random = random;
            _metrics = metrics;
            _policy = new ReconnectPolicy(options.ReconnectDelaysMs);
            _plan = new ReconnectPlan(_policy);
            _liveness.PingIntervalMs = PingEveryMs();
            _liveness.Judges = options.AdaptiveLiveness;
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
            get { return _conn != 0 || _handoff || _move.Moving; }
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
    }
}
