// WebRTCP2PService: the async shell around ServiceCore, shaped like SignalR's
// HubConnection. It owns threads, timers and library objects, and decides
// nothing: every input goes to the core under one lock with the current time,
// and the core's outputs are carried out in order (none of them blocks).
//
//  * Signaling over QUIC (net9.0+) or WebSocket, raced by the core.
//  * Flight data over a WebRTC DataChannel when the core says the direct path is
//    healthy, else through the server's relay.
//  * Hub messages: On / SendAsync to every other peer; InvokeAsync runs the
//    method on the session host (the host's On/Handle handlers answer).
//
// Events start one at a time, in order, on a dispatcher thread (never the UI
// thread; in Avalonia marshal with Dispatcher.UIThread.Post). The thread never
// waits for an async handler to finish: after its first await it runs on while
// the next event starts (so a handler may await InvokeAsync to the host, itself
// included). A throwing WebRTC adapter call fails that peer's direct path only.
//
// C# 7.2 (mono).

using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    public partial class WebRTCP2PService : IDisposable, ILinkMetrics, ILinkEvents, ILinkTelemetry
    {
        public const uint AllPeers = Wire.AllPeers;

        private readonly object _gate = new object();
        private readonly WebRTCP2POptions _options;
        private readonly ServiceCore _core;
        private readonly IClock _clock;
        private readonly ITransportFactory _transports;
        private readonly IPeerLinkFactory _links;
        private readonly IHubSerializer _serializer;
        private readonly Dictionary<int, Connection> _conns = new Dictionary<int, Connection>();
        private readonly Dictionary<uint, IPeerLink> _peerLinks = new Dictionary<uint, IPeerLink>();
        private readonly Dictionary<int, TaskCompletionSource<object>> _tasks = new Dictionary<int, TaskCompletionSource<object>>();
        private readonly Dictionary<string, List<Handler>> _handlers = new Dictionary<string, List<Handler>>(StringComparer.Ordinal);
        private readonly BlockingCollection<Action> _events = new BlockingCollection<Action>();
        private readonly SemaphoreSlim _wake = new SemaphoreSlim(0);
        private readonly CancellationTokenSource _life = new CancellationTokenSource();
        private int _nextToken = 1;
        private bool _disposed;
        // The timer loop (Task.Run in the constructor): DisposeAsync completes once it has ended,
        // so nothing of the service still runs on the thread pool (mono aborts a process that
        // exits while a pool thread is creating a timer).
        private readonly Task _timer;
        // Peer links whose adapter call threw (peer, link id): each becomes that peer's path failure.
        private readonly List<KeyValuePair<uint, int>> _linkFaults = new List<KeyValuePair<uint, int>>();

        public WebRTCP2PService(WebRTCP2POptions options)
        {
            _options = options ?? new WebRTCP2POptions();
            ApplyPlatformDefaults(_options);
            _clock = _options.Clock ?? SystemClock.Instance;
            _transports = _options.TransportFactory ?? new DefaultTransportFactory(_options);
            _links = _options.LinkFactory;
            _serializer = _options.Serializer ?? new DataContractHubSerializer();
            _core = new ServiceCore(_options.ToCore(_transports.QuicSupported), _options.Random ?? new SystemRandom(), this);
            Thread events = new Thread(RunEvents);
            events.IsBackground = true;
            events.Name = "fsp2p events";
            events.Start();
            _timer = Task.Run(TimerLoop);
        }

        /// <summary>Fills in the platform's QUIC/WebSocket, SIPSorcery and JSON defaults (.NET build).</summary>
        static partial void ApplyPlatformDefaults(WebRTCP2POptions options);

        // ------------------------------------------------------------------
        // HubConnection surface
        // ------------------------------------------------------------------

        public event Func<Exception, Task> Closed;
        public event Func<Exception, Task> Reconnecting;
        public event Func<string, Task> Reconnected;
        /// <summary>Cluster mode: a node sent the service to another (its name); Reconnecting and Reconnected follow.</summary>
        public event Action<string> Redirected;
        public event Action<HubConnectionState> StateChanged;
        public event Action<uint, string> PeerJoined;
        public event Action<uint, LeaveReason> PeerLeft;
        public event Action<uint, bool> PeerStatusChanged;
        public event Action<uint, FlightPath> PeerPathChanged;
        public event Action<uint> HostChanged;
        public event Action SessionChanged;
        public event Action<Exception> ServerError;
        public event Action<uint, byte[]> AppDataReceived;
        /// <summary>Flight data from a peer (a fresh copy), on the event thread.</summary>
        public event Action<uint, byte[], FlightPath> FlightDataReceived;
        /// <summary>
        /// A peer's quality grade or path changed (PROTOCOL.md section 14), on the event thread
        /// (marshal to the UI thread yourself, as for every event here).
        /// </summary>
        public event Action<PeerQuality> PeerQualityChanged;

        public HubConnectionState State
        {
            get { lock (_gate) { return _core.State; } }
        }

        public string ConnectionId
        {
            get { lock (_gate) { return _core.State == HubConnectionState.Connected ? _core.PeerId.ToString() : null; } }
        }

        public uint PeerId
        {
            get { lock (_gate) { return _core.PeerId; } }
        }

        public SessionInfo Session
        {
            get { lock (_gate) { return _core.Session; } }
        }

        public bool IsHost
        {
            get { lock (_gate) { return _core.IsHost; } }
        }

        public TransportKind? Transport
        {
            get { lock (_gate) { return _core.CurrentConn != 0 ? _core.CurrentTransport : (TransportKind?)null; } }
        }

        public long StaleSnapshotsDropped
        {
            get { lock (_gate) { return _core.StaleDropped; } }
        }

        /// <summary>
        /// Hub messages (SendAsync) whose content a newer one of the same method and target took
        /// over while the server budget's queue was backed up (about 250 ms): latest wins.
        /// </summary>
        public long HubMessagesCoalesced
        {
            get { lock (_gate) { return _core.HubMessagesCoalesced; } }
        }

        /// <summary>The WebRTC attempt's state with a peer (Disabled for an unknown peer).</summary>
        public DirectState GetDirectState(uint peer)
        {
            lock (_gate)
            {
                PeerState p = _core.GetPeer(peer);
                return p == null ? DirectState.Disabled : p.Path.State;
            }
        }

        public FlightPath GetPath(uint peer)
        {
            lock (_gate)
            {
                PeerState p = _core.GetPeer(peer);
                return p == null ? FlightPath.Relay : p.Path.Path;
            }
        }

        /// <summary>Frames dropped before SIPSorcery's queue (a newer one replaced them) for a peer.</summary>
        public long DirectFramesDropped(uint peer)
        {
            lock (_gate)
            {
                PeerState p = _core.GetPeer(peer);
                return p == null ? 0 : p.Path.DroppedDirect;
            }
        }

        /// <summary>
        /// Every peer's link quality now, by peer id: path and time on it, echo RTT, loss,
        /// jitter, frames/s each way, stale frames dropped, grade (PROTOCOL.md section 14).
        /// </summary>
        public IReadOnlyList<PeerQuality> GetPeerQuality()
        {
            lock (_gate)
            {
                return _core.GetQuality(_clock.NowMs);
            }
        }

        /// <summary>One peer's link quality now; null for a peer not in the session.</summary>
        public PeerQuality GetPeerQuality(uint peer)
        {
            lock (_gate)
            {
                return _core.GetQuality(_clock.NowMs, peer);
            }
        }

        /// <summary>Quality reports handed to the server so far (0 with TelemetryEnabled off or an older server).</summary>
        public long ReportsSent
        {
            get { lock (_gate) { return _core.ReportsSent; } }
        }

        /// <summary>
        /// What the next CreateSession/JoinSession carries as region_rtts (PROTOCOL.md section
        /// 11): the round trips measured after the last Welcome of version 4, for 5 minutes;
        /// empty before a measurement ended, with fewer than two regions, or when off.
        /// </summary>
        public IReadOnlyList<RegionRtt> RegionRtts
        {
            get { lock (_gate) { return _core.RegionRttsAt(_clock.NowMs); } }
        }

        /// <summary>
        /// Replaces the region measurement with these round trips (fresh for 5 minutes, as a
        /// measurement's): for an application that measures regions its own way, or a test.
        /// The next CreateSession/JoinSession carries them; with RegionMeasurementEnabled on,
        /// the next measurement after a Welcome overwrites them.
        /// </summary>
        public void SetRegionRtts(IEnumerable<RegionRtt> rtts)
        {
            List<RegionRtt> list = new List<RegionRtt>(rtts ?? new RegionRtt[0]);
            Input(() => _core.RegionsMeasured(_clock.NowMs, list));
        }

        /// <summary>Session moves followed to the new node (PROTOCOL.md section 11, version 5): the old connection let go, the new one current.</summary>
        public long MovesCompleted
        {
            get { lock (_gate) { return _core.MovesCompleted; } }
        }

        /// <summary>
        /// Runs a measurement off the join's path (never awaited by a request) and hands what
        /// it gave to the core; the core never waits for it. Under the lock: starts only.
        /// </summary>
        private void MeasureRegions(ServerEndpoint server)
        {
            WebRTCP2POptions at = _options.For(server);
            Uri nodes = Regions.NodesUri(at.WebSocketAllowed ? at.EffectiveWebSocketUri : null);
            IRegionProber prober = _options.RegionProber;
            if (prober == null && _core.CurrentTransport == TransportKind.Quic)
            {
                QuicRegionProber(at, ref prober);
            }
            prober = prober ?? new TcpRegionProber(at.CertificateSha256);
            CancellationToken life = _life.Token;
            Task.Run(async () =>
            {
                List<RegionRtt> measured = new List<RegionRtt>();
                try
                {
                    using (CancellationTokenSource limit = CancellationTokenSource.CreateLinkedTokenSource(life))
                    {
                        // The list's fetch has its own limit; the timing's is the 1 s of the protocol.
                        limit.CancelAfter(5000);
                        measured = await RegionMeasurer.MeasureAsync(prober, _clock, nodes,
                            (ms, ct) => Task.Delay(TimeSpan.FromMilliseconds(ms), ct), limit.Token).ConfigureAwait(false);
                    }
                }
                catch (Exception)
                {
                }
                Input(() => _core.RegionsMeasured(_clock.NowMs, measured));
            });
        }

        /// <summary>On QUIC (.NET 9): the prober that times QUIC handshakes (client/Adapters/QuicTransport.cs).</summary>
        partial void QuicRegionProber(WebRTCP2POptions at, ref IRegionProber prober);

        public Task StartAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            return Call(t => _core.Start(_clock.NowMs, t), cancellationToken);
        }

        public Task StopAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            Input(() => _core.Stop(_clock.NowMs));
            return Task.WhenAll(CloseTasks());
        }

        public Task DisposeAsync()
        {
            Task stop = StopAsync();
            Task timer = _timer;
            return stop.ContinueWith(_ => Dispose(), TaskScheduler.Default)
                .ContinueWith(_ => timer, TaskScheduler.Default).Unwrap();
        }

        public void Dispose()
        {
            lock (_gate)
            {
                if (_disposed)
                {
                    return;
                }
                _disposed = true;
                _core.Stop(_clock.NowMs);
                Execute(_core.Drain(_clock.NowMs));
            }
            _life.Cancel();
            _events.CompleteAdding();
        }

        /// <summary>
        /// StartAsync and CreateSessionAsync in one: over WebSocket the request rides in the
        /// upgrade URL, so the session exists one round trip after the TCP (+ TLS) handshake.
        /// Fails like either of them.
        /// </summary>
        public Task<SessionInfo> StartAndCreateSessionAsync(uint maxPeers = 0, string password = null, CancellationToken cancellationToken = default(CancellationToken))
        {
            return StartWith(new ClientMsg.CreateSession(maxPeers, password), cancellationToken);
        }

        /// <summary>StartAsync and JoinSessionAsync in one (see StartAndCreateSessionAsync).</summary>
        public Task<SessionInfo> StartAndJoinSessionAsync(string code, string password = null, CancellationToken cancellationToken = default(CancellationToken))
        {
            if (code == null)
            {
                throw new ArgumentNullException("code");
            }
            return StartWith(new ClientMsg.JoinSession(code, password), cancellationToken);
        }

        private async Task<SessionInfo> StartWith(ClientMsg request, CancellationToken cancellationToken)
        {
            int startToken;
            int answerToken;
            Task<object> start = NewCall(cancellationToken, out startToken);
            Task<object> answer = NewCall(cancellationToken, out answerToken);
            // A failed start also fails the request, which reports it; observe it here.
            GC.KeepAlive(start.ContinueWith(t => t.Exception, TaskScheduler.Default));
            Input(() => _core.Start(_clock.NowMs, startToken, request, answerToken));
            return (SessionInfo)await answer.ConfigureAwait(false);
        }

        /// <summary>
        /// Also while StartAsync is under way (it is then sent with or right after the
        /// Welcome); fails when not started or reconnecting.
        /// </summary>
        public async Task<SessionInfo> CreateSessionAsync(uint maxPeers = 0, string password = null, CancellationToken cancellationToken = default(CancellationToken))
        {
            return (SessionInfo)await Call(t => _core.CreateSession(_clock.NowMs, t, maxPeers, password), cancellationToken).ConfigureAwait(false);
        }

        public async Task<SessionInfo> JoinSessionAsync(string code, string password = null, CancellationToken cancellationToken = default(CancellationToken))
        {
            return (SessionInfo)await Call(t => _core.JoinSession(_clock.NowMs, t, code, password), cancellationToken).ConfigureAwait(false);
        }

        public Task LeaveSessionAsync()
        {
            Input(() => _core.LeaveSession(_clock.NowMs));
            return Task.FromResult(0);
        }

        /// <summary>SignalR's SendCoreAsync: a hub message to every other peer of my session, reliably through the server.</summary>
        public Task SendCoreAsync(string methodName, object[] args, CancellationToken cancellationToken = default(CancellationToken))
        {
            Task hub;
            if (methodName != null && TryHubSend(methodName, args, cancellationToken, out hub))
            {
                return hub;
            }
            return SendToPeerCoreAsync(AllPeers, methodName, args, cancellationToken);
        }

        public Task SendToPeerCoreAsync(uint peer, string methodName, object[] args, CancellationToken cancellationToken = default(CancellationToken))
        {
            if (methodName == null)
            {
                throw new ArgumentNullException("methodName");
            }
            string[] raw = SerializeArgs(args);
            bool ok = false;
            Input(() => ok = _core.SendHub(_clock.NowMs, peer, methodName, raw));
            return ok ? Task.FromResult(0) : Fail("not connected to a session");
        }

        /// <summary>SignalR's InvokeCoreAsync: runs methodName on the session host and returns its result.</summary>
        public async Task<object> InvokeCoreAsync(string methodName, Type returnType, object[] args, CancellationToken cancellationToken = default(CancellationToken))
        {
            if (methodName == null)
            {
                throw new ArgumentNullException("methodName");
            }
            string[] raw = SerializeArgs(args);
            object json = await Call(t => _core.Invoke(_clock.NowMs, t, methodName, raw, 0), cancellationToken).ConfigureAwait(false);
            return returnType == typeof(object) && (string)json == "null" ? null : _serializer.Deserialize((string)json, returnType);
        }

        public Task SendAppDataAsync(uint peer, byte[] data)
        {
            bool ok = false;
            Input(() => ok = _core.SendApp(_clock.NowMs, peer, data));
            return ok ? Task.FromResult(0) : Fail("not connected to a session");
        }

        /// <summary>One flight snapshot to a peer or AllPeers: direct where healthy, else relay. Never blocks.</summary>
        public bool SendFlightData(uint peer, byte[] data)
        {
            if (data == null)
            {
                throw new ArgumentNullException("data");
            }
            int max;
            lock (_gate)
            {
                max = (int)_core.Limits.MaxRelayPayload - SnapshotEnvelope.HeaderBytes;
            }
            if (data.Length > max)
            {
                throw new ArgumentException("flight payload over " + max + " bytes");
            }
            bool ok = false;
            Input(() => ok = _core.SendFlight(_clock.NowMs, peer, data));
            return ok;
        }

        /// <summary>Core form of On: parameter types and a handler returning the result (null for none).</summary>
        public IDisposable On(string methodName, Type[] parameterTypes, Func<object[], Task<object>> handler)
        {
            Handler h = new Handler(this, methodName, parameterTypes, handler);
            lock (_handlers)
            {
                List<Handler> list;
                if (!_handlers.TryGetValue(methodName, out list))
                {
                    list = new List<Handler>();
                    _handlers[methodName] = list;
                }
                list.Add(h);
            }
            return h;
        }

        public void Remove(string methodName)
        {
            lock (_handlers)
            {
                _handlers.Remove(methodName);
            }
        }

        private static Task<object> Unit(Task t)
        {
            return t.ContinueWith<object>(x => { x.GetAwaiter().GetResult(); return null; }, TaskScheduler.Default);
        }

        private static async Task<object> Boxed<T>(Task<T> t)
        {
            return await t.ConfigureAwait(false);
        }

        // ------------------------------------------------------------------
        // Plumbing
        // ------------------------------------------------------------------

        private string[] SerializeArgs(object[] args)
        {
            if (args == null)
            {
                args = new object[] { null };
            }
            string[] raw = new string[args.Length];
            for (int i = 0; i < args.Length; i++)
            {
                raw[i] = args[i] == null ? "null" : _serializer.Serialize(args[i]);
            }
            return raw;
        }

        private static Task Fail(string message)
        {
            TaskCompletionSource<object> tcs = new TaskCompletionSource<object>();
            tcs.SetException(new InvalidOperationException(message));
            return tcs.Task;
        }

        private Task<object> Call(Action<int> start, CancellationToken cancellationToken)
        {
            int token;
            Task<object> task = NewCall(cancellationToken, out token);
            Input(() => start(token));
            return task;
        }

        /// <summary>A task the core completes with Complete(token).</summary>
        private Task<object> NewCall(CancellationToken cancellationToken, out int token)
        {
            TaskCompletionSource<object> tcs = new TaskCompletionSource<object>(TaskCreationOptions.RunContinuationsAsynchronously);
            int t;
            lock (_gate)
            {
                t = _nextToken++;
                _tasks[t] = tcs;
            }
            if (cancellationToken.CanBeCanceled)
            {
                cancellationToken.Register(() => { lock (_gate) { _tasks.Remove(t); } tcs.TrySetCanceled(); });
            }
            token = t;
            return tcs.Task;
        }

        private List<Task> CloseTasks()
        {
            List<Task> list = new List<Task>();
            lock (_gate)
            {
                foreach (Connection c in _conns.Values)
                {
                    list.Add(c.Closed.Task);
                }
            }
            return list;
        }

        /// <summary>Runs one input on the core and carries out its outputs, under the lock.</summary>
        private void Input(Action input)
        {
            lock (_gate)
            {
                if (_disposed)
                {
                    return;
                }
                input();
                Execute(_core.Drain(_clock.NowMs));
            }
            _wake.Release();
        }

        private async Task TimerLoop()
        {
            while (!_life.IsCancellationRequested)
            {
                long wait;
                lock (_gate)
                {
                    if (_disposed)
                    {
                        return;
                    }
                    long now = _clock.NowMs;
                    try
                    {
                        Execute(_core.Drain(now));
                        long next = _core.NextWake(now);
                        wait = next < 0 ? 1000 : Math.Max(1, Math.Min(1000, next - now));
                    }
                    catch (Exception)
                    {
                        // Nothing may end the timer loop (pings, deadlines, stall checks live here).
                        wait = 10;
                    }
                }
                try
                {
                    await _wake.WaitAsync((int)wait, _life.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }

        private void RunEvents()
        {
            foreach (Action a in _events.GetConsumingEnumerable())
            {
                try
                {
                    a();
                }
                catch (Exception)
                {
                    // A handler's exception must not stop the others (SignalR logs and goes on).
                }
            }
        }

        private void Post(Action a)
        {
            try
            {
                _events.Add(a);
            }
            catch (InvalidOperationException)
            {
                // disposed
            }
        }

        private static void RunAsyncHandlers<T>(Func<T, Task> handlers, T arg)
        {
            if (handlers == null)
            {
                return;
            }
            foreach (Func<T, Task> h in handlers.GetInvocationList())
            {
                try
                {
                    // Started in order, not waited for (see HubMessage): a Reconnected handler may await InvokeAsync to the host.
                    Observe(h(arg));
                }
                catch (Exception)
                {
                }
            }
        }

        /// <summary>Lets a handler's task run on; its exception is observed (SignalR logs and goes on).</summary>
        private static void Observe(Task t)
        {
            if (t != null && !t.IsCompleted)
            {
                t.ContinueWith(x => GC.KeepAlive(x.Exception), TaskContinuationOptions.OnlyOnFaulted);
            }
            else if (t != null && t.IsFaulted)
            {
                GC.KeepAlive(t.Exception);
            }
        }

        private void Execute(List<CoreOutput> outputs)
        {
            foreach (CoreOutput o in outputs)
            {
                ExecuteOne(o);
            }
            // An adapter call that threw is that peer's path failure (relay), never the
            // connection's or the timer's. Failing a link closes it, which may throw again:
            // bounded, and the core ignores a link it already dropped.
            for (int round = 0; round < 4 && _linkFaults.Count > 0; round++)
            {
                List<KeyValuePair<uint, int>> faults = new List<KeyValuePair<uint, int>>(_linkFaults);
                _linkFaults.Clear();
                long now = _clock.NowMs;
                foreach (KeyValuePair<uint, int> f in faults)
                {
                    _core.LinkFailed(now, f.Key, f.Value);
                }
                foreach (CoreOutput o in _core.Drain(now))
                {
                    ExecuteOne(o);
                }
            }
            _linkFaults.Clear();
        }

        private void LinkFault(uint peer, int linkId)
        {
            _linkFaults.Add(new KeyValuePair<uint, int>(peer, linkId));
        }

        /// <summary>Closes a link, whatever its adapter throws.</summary>
        private static void CloseQuietly(IPeerLink link)
        {
            try
            {
                link.Close();
            }
            catch (Exception)
            {
            }
        }

        private void ExecuteOne(CoreOutput o)
        {
            Connection conn;
            IPeerLink link;
            switch (o.Kind)
            {
                case OutputKind.Connect:
                    conn = new Connection(this, o.Conn, o.First, o.Server);
                    _conns[o.Conn] = conn;
                    conn.Start(o.Transport);
                    break;
                case OutputKind.CloseTransport:
                    if (_conns.TryGetValue(o.Conn, out conn))
                    {
                        conn.Close(o.Leave);
                    }
                    break;
                case OutputKind.SendControl:
                    if (_conns.TryGetValue(o.Conn, out conn))
                    {
                        conn.Enqueue(o.Message);
                    }
                    break;
                case OutputKind.SendRelay:
                    if (_conns.TryGetValue(o.Conn, out conn) && conn.Transport != null)
                    {
                        conn.Transport.TrySendRelay(o.Peer, o.Data);
                    }
                    break;
                case OutputKind.OpenLink:
                    if (_links != null)
                    {
                        link = null;
                        try
                        {
                            // new RTCPeerConnection can throw (socket bind, bad ICE server URL).
                            link = _links.Create(o.Peer, o.LinkId, this);
                            _peerLinks[o.Peer] = link;
                            link.Start(o.Offerer, o.IceServers);
                        }
                        catch (Exception)
                        {
                            if (link != null)
                            {
                                _peerLinks.Remove(o.Peer);
                                CloseQuietly(link);
                            }
                            LinkFault(o.Peer, o.LinkId);
                        }
                    }
                    break;
                case OutputKind.CloseLink:
                    if (_peerLinks.TryGetValue(o.Peer, out link) && link.LinkId == o.LinkId)
                    {
                        _peerLinks.Remove(o.Peer);
                        CloseQuietly(link);
                    }
                    break;
                case OutputKind.LinkSignal:
                    if (_peerLinks.TryGetValue(o.Peer, out link) && link.LinkId == o.LinkId)
                    {
                        try
                        {
                            // setRemoteDescription, addIceCandidate: a remote peer's bad SDP must not reach the reader.
                            link.Apply(o.Signal);
                        }
                        catch (Exception)
                        {
                            LinkFault(o.Peer, o.LinkId);
                        }
                    }
                    break;
                case OutputKind.SendDirect:
                    if (_peerLinks.TryGetValue(o.Peer, out link) && link.LinkId == o.LinkId)
                    {
                        try
                        {
                            link.Send(o.Data);
                        }
                        catch (Exception)
                        {
                            LinkFault(o.Peer, o.LinkId);
                        }
                    }
                    break;
                case OutputKind.Complete:
                    TaskCompletionSource<object> tcs;
                    if (_tasks.TryGetValue(o.Token, out tcs))
                    {
                        _tasks.Remove(o.Token);
                        if (o.Error != null)
                        {
                            tcs.TrySetException(o.Error);
                        }
                        else
                        {
                            tcs.TrySetResult(o.Result);
                        }
                    }
                    break;
                default:
                    RaiseEvent(o);
                    break;
            }
        }

        private void RaiseEvent(CoreOutput o)
        {
            switch (o.Kind)
            {
                case OutputKind.StateChanged:
                    Post(() => { Action<HubConnectionState> h = StateChanged; if (h != null) h(o.State); });
                    break;
                case OutputKind.Reconnecting:
                    Post(() => RunAsyncHandlers(Reconnecting, o.Error));
                    break;
                case OutputKind.Reconnected:
                    Post(() => RunAsyncHandlers(Reconnected, o.Name));
                    break;
                case OutputKind.Redirected:
                    Post(() => { Action<string> h = Redirected; if (h != null) h(o.Name); });
                    break;
                case OutputKind.Closed:
                    Post(() => RunAsyncHandlers(Closed, o.Error));
                    break;
                case OutputKind.SessionChanged:
                    Post(() => { Action h = SessionChanged; if (h != null) h(); });
                    break;
                case OutputKind.PeerJoined:
                    Post(() => { Action<uint, string> h = PeerJoined; if (h != null) h(o.Peer, o.Name); });
                    break;
                case OutputKind.PeerLeft:
                    Post(() => { Action<uint, LeaveReason> h = PeerLeft; if (h != null) h(o.Peer, o.Reason); });
                    break;
                case OutputKind.MeasureRegions:
                    MeasureRegions(o.Server);
                    break;
                case OutputKind.PeerStatus:
                    Post(() => { Action<uint, bool> h = PeerStatusChanged; if (h != null) h(o.Peer, o.Online); });
                    break;
                case OutputKind.QualityChanged:
                    Post(() => { Action<PeerQuality> h = PeerQualityChanged; if (h != null) h(o.Quality); });
                    break;
                case OutputKind.PathChanged:
                    Post(() => { Action<uint, FlightPath> h = PeerPathChanged; if (h != null) h(o.Peer, o.Path); });
                    break;
                case OutputKind.HostChanged:
                    Post(() => { Action<uint> h = HostChanged; if (h != null) h(o.Peer); });
                    break;
                case OutputKind.ServerError:
                    Post(() => { Action<Exception> h = ServerError; if (h != null) h(o.Error); });
                    break;
                case OutputKind.AppData:
                    Post(() => { Action<uint, byte[]> h = AppDataReceived; if (h != null) h(o.Peer, o.Data); });
                    break;
                case OutputKind.FlightData:
                    Post(() => { Action<uint, byte[], FlightPath> h = FlightDataReceived; if (h != null) h(o.Peer, o.Data, o.Path); });
                    break;
                case OutputKind.HubMessage:
                case OutputKind.InvokeRequest:
                    // Handlers start in order on the event thread, which never blocks on one: an
                    // async handler goes on after its first await while the next event runs. So a
                    // handler on the host may await InvokeAsync to the host (itself included): that
                    // invocation's handler is the next event, not stuck behind the one awaiting it.
                    Post(() => Observe(DispatchAsync(o, o.Kind == OutputKind.InvokeRequest)));
                    break;
            }
        }

        /// <summary>Runs the handlers of a hub message; for an invocation, answers with the first handler's result.</summary>
        private async Task DispatchAsync(CoreOutput o, bool invoke)
        {
            SetCaller(o.Peer);
            Handler[] hs;
            lock (_handlers)
            {
                List<Handler> list;
                hs = _handlers.TryGetValue(o.Name, out list) ? list.ToArray() : new Handler[0];
            }
            if (invoke && hs.Length == 0)
            {
                Input(() => _core.InvokeResult(_clock.NowMs, o.Peer, o.Id, null, "no hub method '" + o.Name + "' on the host"));
                return;
            }
            for (int i = 0; i < hs.Length; i++)
            {
                string error = null;
                object result = null;
                try
                {
                    object[] values = hs[i].Bind(o.Args, _serializer);
                    result = await hs[i].Run(values).ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    error = "'" + o.Name + "' failed on the host: " + e.Message;
                }
                if (invoke && i == 0)
                {
                    string json = error == null ? (result == null ? "null" : _serializer.Serialize(result)) : null;
                    Input(() => _core.InvokeResult(_clock.NowMs, o.Peer, o.Id, json, error));
                }
            }
        }

        // ILinkMetrics (called by the core under the lock).
        long ILinkMetrics.BufferedAmount(uint peer, int linkId)
        {
            IPeerLink link;
            if (!_peerLinks.TryGetValue(peer, out link) || link.LinkId != linkId)
            {
                return 0;
            }
            try
            {
                return link.BufferedAmount;
            }
            catch (Exception)
            {
                LinkFault(peer, linkId);
                return 0;
            }
        }

        // ILinkEvents (any thread).
        void ILinkEvents.LocalSignal(IPeerLink link, Signal signal)
        {
            Input(() => _core.LocalSignal(_clock.NowMs, link.Peer, link.LinkId, signal));
        }

        void ILinkEvents.Opened(IPeerLink link, bool viaTurn)
        {
            Input(() => _core.ChannelOpen(_clock.NowMs, link.Peer, link.LinkId, viaTurn));
        }

        void ILinkEvents.StateChanged(IPeerLink link, string state, IceFailReason reason)
        {
            Input(() => _core.ConnectionState(_clock.NowMs, link.Peer, link.LinkId, state, reason));
        }

        void ILinkEvents.Failed(IPeerLink link)
        {
            Input(() => _core.LinkFailed(_clock.NowMs, link.Peer, link.LinkId));
        }

        void ILinkTelemetry.Failed(IPeerLink link, IceFailReason reason)
        {
            Input(() => _core.LinkFailed(_clock.NowMs, link.Peer, link.LinkId, reason));
        }

        void ILinkTelemetry.CandidateGathered(IPeerLink link, CandidateKinds kind)
        {
            Input(() => _core.CandidateGathered(_clock.NowMs, link.Peer, link.LinkId, kind));
        }

        void ILinkEvents.Received(IPeerLink link, byte[] frame)
        {
            Input(() => _core.DirectFrame(_clock.NowMs, link.Peer, link.LinkId, frame));
        }

        private sealed class Handler : IDisposable
        {
            private readonly WebRTCP2PService _owner;
            private readonly string _name;
            private readonly Type[] _types;
            private readonly Func<object[], Task<object>> _run;

            public Handler(WebRTCP2PService owner, string name, Type[] types, Func<object[], Task<object>> run)
            {
                _owner = owner;
                _name = name;
                _types = types;
                _run = run;
            }

            public object[] Bind(string[] args, IHubSerializer serializer)
            {
                if (args.Length != _types.Length)
                {
                    throw new ArgumentException("'" + _name + "' expects " + _types.Length + " argument(s), got " + args.Length);
                }
                object[] values = new object[args.Length];
                for (int i = 0; i < args.Length; i++)
                {
                    values[i] = args[i] == "null" ? null : serializer.Deserialize(args[i], _types[i]);
                }
                return values;
            }

            public Task<object> Run(object[] values)
            {
                return _run(values);
            }

            public void Dispose()
            {
                lock (_owner._handlers)
                {
                    List<Handler> list;
                    if (_owner._handlers.TryGetValue(_name, out list))
                    {
                        list.Remove(this);
                    }
                }
            }
        }

        /// <summary>One signaling connection: connect, one ordered sender, one reader.</summary>
        private sealed class Connection
        {
            /// <summary>How long a losing attempt that said Hello in its URL may finish connecting, to close with 1000.</summary>
            private const int LingerMs = 3000;

            private readonly WebRTCP2PService _svc;
            private readonly int _id;
            private readonly string _first;
            private readonly ServerEndpoint _server;
            private readonly ConcurrentQueue<ClientMsg> _send = new ConcurrentQueue<ClientMsg>();
            private readonly SemaphoreSlim _ready = new SemaphoreSlim(0);
            private readonly CancellationTokenSource _cts = new CancellationTokenSource();
            private int _closing;
            public ISignalingTransport Transport;
            public readonly TaskCompletionSource<bool> Closed = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);

            public Connection(WebRTCP2PService svc, int id, string first, ServerEndpoint server)
            {
                _svc = svc;
                _id = id;
                _first = first;
                _server = server;
            }

            public void Start(TransportKind kind)
            {
                Task.Run(() => RunAsync(kind));
            }

            public void Enqueue(ClientMsg m)
            {
                _send.Enqueue(m);
                _ready.Release();
            }

            public void Close(bool leave)
            {
                if (Interlocked.Exchange(ref _closing, leave ? 2 : 1) != 0)
                {
                    return;
                }
                ISignalingTransport t = Transport;
                if (t == null && leave && _first != null)
                {
                    // The server acts on the Hello in the URL at the upgrade: let the
                    // connect finish (briefly) so RunAsync can close with 1000 and the
                    // peer it made leaves at once, instead of waiting out the grace.
                    _cts.CancelAfter(LingerMs);
                    Closed.TrySetResult(true);
                    return;
                }
                _cts.Cancel();
                if (t == null)
                {
                    Closed.TrySetResult(true);
                    return;
                }
                Task.Run(async () =>
                {
                    try
                    {
                        await t.CloseAsync(leave).ConfigureAwait(false);
                    }
                    catch (Exception)
                    {
                    }
                    Closed.TrySetResult(true);
                });
            }

            private async Task RunAsync(TransportKind kind)
            {
                WebRTCP2PService s = _svc;
                ISignalingTransport t;
                try
                {
                    IClusterTransportFactory cluster = s._transports as IClusterTransportFactory;
                    if (_server == null)
                    {
                        t = await s._transports.ConnectAsync(kind, _first, _cts.Token).ConfigureAwait(false);
                    }
                    else if (cluster != null)
                    {
                        t = await cluster.ConnectAsync(kind, _server, _first, _cts.Token).ConfigureAwait(false);
                    }
                    else
                    {
                        throw new NotSupportedException("the transport factory cannot reach node " + _server.Name + " (no IClusterTransportFactory)");
                    }
                }
                catch (Exception e)
                {
                    Closed.TrySetResult(true);
                    s.Input(() => s._core.TransportFailed(s._clock.NowMs, _id, e));
                    return;
                }
                Transport = t;
                // Pairs with Close's Interlocked.Exchange: one of the two sees the other.
                Thread.MemoryBarrier();
                if (_closing != 0 || _cts.IsCancellationRequested)
                {
                    try
                    {
                        await t.CloseAsync(_closing == 2).ConfigureAwait(false);
                    }
                    catch (Exception)
                    {
                    }
                    Closed.TrySetResult(true);
                    return;
                }
                t.RelayReceived = (from, payload) => s.Input(() => s._core.RelayFrame(s._clock.NowMs, _id, from, payload));
                Task ignored = Task.Run(SendLoop);
                GC.KeepAlive(ignored);
                s.Input(() => s._core.TransportConnected(s._clock.NowMs, _id));
                Exception error = null;
                try
                {
                    while (true)
                    {
                        ServerMsg m = await t.ReceiveAsync(_cts.Token).ConfigureAwait(false);
                        if (m == null)
                        {
                            break;
                        }
                        s.Input(() => s._core.ServerMessage(s._clock.NowMs, _id, m));
                    }
                }
                catch (Exception e)
                {
                    error = e;
                }
                _cts.Cancel();
                ushort code = t.CloseCode;
                if (_closing == 0)
                {
                    try
                    {
                        await t.CloseAsync(false).ConfigureAwait(false);
                    }
                    catch (Exception)
                    {
                    }
                    Closed.TrySetResult(true);
                }
                s.Input(() => s._core.TransportLost(s._clock.NowMs, _id, error, code));
                lock (s._gate)
                {
                    s._conns.Remove(_id);
                }
            }

            private async Task SendLoop()
            {
                try
                {
                    while (true)
                    {
                        await _ready.WaitAsync(_cts.Token).ConfigureAwait(false);
                        ClientMsg m;
                        if (_send.TryDequeue(out m))
                        {
                            await Transport.SendAsync(m, _cts.Token).ConfigureAwait(false);
                        }
                    }
                }
                catch (Exception)
                {
                    // The reader notices the broken connection.
                }
            }
        }
    }
}
