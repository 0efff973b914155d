// The small interfaces between the service shell and the libraries it drives
// (System.Net.Quic, ClientWebSocket, SIPSorcery, a JSON serializer), and the
// options. Fakes of these drive the service in tests (tests/csharp/).
//
// C# 7.2 (mono).

using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    /// <summary>One signaling connection (QUIC or WebSocket): control messages in order, relay frames best effort.</summary>
    public interface ISignalingTransport
    {
        /// <summary>Set before the first ReceiveAsync; called for every relay frame (payload owned by the callee).</summary>
        Action<uint, byte[]> RelayReceived { set; }

        /// <summary>Sends one control message. The shell never calls it concurrently.</summary>
        Task SendAsync(ClientMsg message, CancellationToken cancellationToken);

        /// <summary>Queues one relay frame; false if it was dropped.</summary>
        bool TrySendRelay(uint to, byte[] payload);

        /// <summary>The next control message; null when the server ended the connection.</summary>
        Task<ServerMsg> ReceiveAsync(CancellationToken cancellationToken);

        /// <summary>
        /// The server's close code once known (PROTOCOL.md section 6: the QUIC application code;
        /// WebSocket 1000 → 0, 4000+n → n, CloseVerdict.FromWebSocketStatus), else
        /// CloseVerdict.NoCode (a reset, a timeout, no close frame). 0 is a normal close.
        /// </summary>
        ushort CloseCode { get; }

        /// <summary>leave = true: close code 0 / 1000, the peer leaves its session at once.</summary>
        Task CloseAsync(bool leave);
    }

    public interface ITransportFactory
    {
        bool QuicSupported { get; }

        /// <summary>
        /// Connects. first (WebSocket only; null otherwise): the URL's <c>first</c> value
        /// (First.AppendTo adds it to the URL). It carries the Hello, so the service sends
        /// none: a factory must not drop it. It can hold a join code or a resume token:
        /// never log the URL with it.
        /// </summary>
        Task<ISignalingTransport> ConnectAsync(TransportKind kind, string first, CancellationToken cancellationToken);
    }

    /// <summary>
    /// A factory that can connect to another server than the configured one (cluster mode:
    /// fallbacks and the nodes Redirects name). Without it, the service only reaches the
    /// configured server, and an attempt elsewhere fails (the next configured one is tried).
    /// </summary>
    public interface IClusterTransportFactory : ITransportFactory
    {
        /// <summary>As ITransportFactory.ConnectAsync, to `server` (null: the configured one).</summary>
        Task<ISignalingTransport> ConnectAsync(TransportKind kind, ServerEndpoint server, string first, CancellationToken cancellationToken);
    }

    /// <summary>What a peer link reports (any thread).</summary>
    /// <summary>
    /// What a link adapter may tell beyond ILinkEvents (issue 25's reports): why it failed and
    /// which local candidate types it gathered. The service implements it; an adapter checks
    /// for it (`events as ILinkTelemetry`), so fakes that implement only ILinkEvents still work.
    /// </summary>
    public interface ILinkTelemetry
    {
        void Failed(IPeerLink link, IceFailReason reason);

        void CandidateGathered(IPeerLink link, CandidateKinds kind);
    }

    public interface ILinkEvents
    {
        void LocalSignal(IPeerLink link, Signal signal);

        void Opened(IPeerLink link, bool viaTurn);

        /// <summary>
        /// An ICE or peer connection state, by its W3C name ("connected", "disconnected",
        /// "failed", "closed"...), as the library reports it: the core decides by the path rules
        /// (PathRules.ConnectionState). reason: why, should this state end the attempt.
        /// </summary>
        void StateChanged(IPeerLink link, string state, IceFailReason reason);

        void Failed(IPeerLink link);

        void Received(IPeerLink link, byte[] frame);
    }

    /// <summary>One WebRTC attempt with one peer (SIPSorcery RTCPeerConnection + the "flight" DataChannel).</summary>
    public interface IPeerLink
    {
        uint Peer { get; }

        int LinkId { get; }

        /// <summary>Offerer: create the channel and the offer. Never blocks.</summary>
        void Start(bool offerer, List<IceServer> iceServers);

        /// <summary>A remote Offer/Answer/IceCandidate/EndOfCandidates.</summary>
        void Apply(Signal signal);

        /// <summary>Hands one frame to the DataChannel; false if it is not open.</summary>
        bool Send(byte[] frame);

        /// <summary>Bytes the DataChannel has not sent yet (SIPSorcery: unsent chunks only).</summary>
        long BufferedAmount { get; }

        void Close();
    }

    public interface IPeerLinkFactory
    {
        IPeerLink Create(uint peer, int linkId, ILinkEvents events);
    }

    /// <summary>Binds hub arguments and results (JSON text).</summary>
    public interface IHubSerializer
    {
        string Serialize(object value);

        object Deserialize(string json, Type type);
    }

    /// <summary>Configuration of <see cref="WebRTCP2PService"/>.</summary>
    public sealed class WebRTCP2POptions
    {
        public string ServerHost = "localhost";
        public int QuicPort = 4433;
        /// <summary>Default ws://ServerHost:8080/ws; wss://host/ws behind a TLS proxy.</summary>
        public Uri WebSocketUri;
        public bool QuicAllowed = true;
        public bool WebSocketAllowed = true;
        /// <summary>
        /// WebSocket attempts put the Hello (and a session request made before the connection,
        /// e.g. StartAndJoinSessionAsync) in the upgrade URL's <c>first</c> parameter, saving a
        /// round trip (PROTOCOL.md section 3). Switch off only for a server older than that.
        /// </summary>
        public bool FirstRequestInUrl = true;
        public TimeSpan QuicFallbackDelay = TimeSpan.FromSeconds(1);
        public TimeSpan ConnectTimeout = TimeSpan.FromSeconds(10);
        /// <summary>Development: SHA-256 of the server's self-signed certificate (hex, ':' allowed).</summary>
        public string CertificateSha256;
        /// <summary>DER bytes of a private root CA to trust instead of the system store (host names are still checked).</summary>
        public byte[] TrustedRootCertificate;
        /// <summary>
        /// SignalR's KeepAliveInterval: the WebSocket's keep-alive frames; HubConnection's setter
        /// and WithKeepAliveInterval also make PingInterval no longer than it.
        /// </summary>
        public TimeSpan KeepAliveInterval = TimeSpan.FromSeconds(5);
        /// <summary>
        /// SignalR's ServerTimeout, a ceiling on silence: a server that sends nothing for this
        /// long is taken as lost on every transport even if the liveness rule (PingInterval,
        /// AdaptiveLiveness) has not decided yet. Pings go out at least every half of it.
        /// TimeSpan.Zero: off.
        /// </summary>
        public TimeSpan ServerTimeout = TimeSpan.FromSeconds(10);
        /// <summary>
        /// The liveness rule (docs/PROTOCOL.md "Client behaviour", rule 2): a Ping unanswered
        /// (nothing heard since) for longer than clamp(3 × (srtt + 4·rttvar), 1500, 10000) ms,
        /// 3000 before an RTT sample, means the server is lost; while one is outstanding past
        /// probe_after (max(250, srtt + 4·rttvar), 1000 before a sample) the client probes, a
        /// Ping every 100 ms. Off: only ServerTimeout decides; pings at PingInterval, no probes.
        /// </summary>
        public bool AdaptiveLiveness = true;
        /// <summary>From the transport's connect to the server's Welcome.</summary>
        public TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(15);
        /// <summary>Rule 2's Ping interval (500 ms; probes every 100 ms while a Ping is outstanding past probe_after). TimeSpan.Zero: no pings of its own and no liveness verdict (ServerTimeout still pings at half its value).</summary>
        public TimeSpan PingInterval = TimeSpan.FromMilliseconds(Liveness.DefaultPingIntervalMs);

        /// <summary>
        /// The Ping interval for SignalR's KeepAliveInterval: the shorter of it and the liveness
        /// rule's 500 ms (a KeepAliveInterval of 15 s, SignalR's default, must not slow the
        /// pings that tell a dead server within seconds); not positive: 500 ms. Probing (every
        /// 100 ms while a Ping is outstanding) is the liveness rule's, whatever it says.
        /// </summary>
        public static TimeSpan PingIntervalFor(TimeSpan keepAlive)
        {
            TimeSpan rule = TimeSpan.FromMilliseconds(Liveness.DefaultPingIntervalMs);
            return keepAlive > TimeSpan.Zero && keepAlive < rule ? keepAlive : rule;
        }
        public string DisplayName = "";
        public bool EnableDirect = true;
        public bool ForceTurn;
        /// <summary>
        /// Quality reports to the server (PROTOCOL.md section 14: link paths and grades as
        /// buckets, setup times, ICE failure reasons, candidate types; never addresses, names
        /// or tokens). False: nothing is reported and the Hello stays at version 1/2.
        /// GetPeerQuality and PeerQualityChanged work either way.
        /// </summary>
        public bool TelemetryEnabled = true;
        /// <summary>
        /// Regions (PROTOCOL.md section 11): after a Welcome of version 4 (TelemetryEnabled
        /// on: the Hello says version 4), fetch the node list from the server's HTTP port
        /// and time a TCP connect to one node per region, all within 1 s, off the join's
        /// path; the next CreateSession/JoinSession carries it (RegionRtts), for 5 minutes.
        /// A cluster with regions may then place a new session on the nearest region's node.
        /// </summary>
        public bool RegionMeasurementEnabled = true;
        public TimeSpan DirectConnectTimeout = TimeSpan.FromSeconds(5);
        /// <summary>After ICE fails, both sides try again after this (+-25 %), doubling each time up to a minute.</summary>
        public TimeSpan DirectRetryDelay = TimeSpan.FromSeconds(2);
        public int DirectMaxRetries = 8;
        /// <summary>Stall detection on a connected direct path.</summary>
        public TimeSpan DirectStallTimeout = TimeSpan.FromMilliseconds(200);
        public int MaxQueuedDirectFrames = 2;
        /// <summary>
        /// SignalR's WithAutomaticReconnect delays (WithAutomaticReconnect() sets 0, 2, 10, 30 s). They
        /// govern after the protocol's own resume (the token within the grace, rule 1's backoff) is
        /// over (rule 7). Null or empty: no automatic reconnect at all, a lost connection is Closed.
        /// </summary>
        public TimeSpan[] ReconnectDelays = { TimeSpan.Zero, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(30) };
        public bool AutoRejoin = true;
        public TimeSpan RequestTimeout = TimeSpan.FromSeconds(10);
        public TimeSpan InvokeTimeout = TimeSpan.FromSeconds(30);
        /// <summary>
        /// Cluster mode: other nodes (new ServerEndpoint(host, quicPort, wsUri), CertSha256 null =
        /// the same trust as the main server), tried in turn when the current server cannot be
        /// reached; any node redirects the service to its session's node (PROTOCOL.md section 11).
        /// </summary>
        public List<ServerEndpoint> Fallbacks = new List<ServerEndpoint>();
        /// <summary>Cluster mode: redirects followed in a row before the request or start fails.</summary>
        public int MaxRedirects = ServerRotation.MaxRedirects;

        // Seams (defaults: the platform's QUIC/WebSocket, SIPSorcery, System.Text.Json).
        public ITransportFactory TransportFactory;
        public IPeerLinkFactory LinkFactory;
        public IHubSerializer Serializer;
        public IClock Clock;
        public IRandom Random;
        /// <summary>The region measurement's I/O (default: TcpRegionProber).</summary>
        public IRegionProber RegionProber;

        public Uri EffectiveWebSocketUri
        {
            get { return WebSocketUri ?? new UriBuilder("ws", ServerHost, 8080, "/ws").Uri; }
        }

        /// <summary>
        /// These options pointed at `server` (its host, port, WebSocket URL and pinned hash; a
        /// redirect's node without a hash is CA-signed, a fallback without one is trusted like
        /// the main server). Null: these options.
        /// </summary>
        public WebRTCP2POptions For(ServerEndpoint server)
        {
            if (server == null)
            {
                return this;
            }
            WebRTCP2POptions o = (WebRTCP2POptions)MemberwiseClone();
            o.ServerHost = server.QuicHost ?? (server.WebSocketUri != null ? server.WebSocketUri.Host : ServerHost);
            o.QuicPort = server.QuicPort;
            o.WebSocketUri = server.WebSocketUri;
            if (server.CertSha256 != null)
            {
                o.CertificateSha256 = Wire.ToHex(server.CertSha256);
            }
            else if (server.FromRedirect)
            {
                o.CertificateSha256 = null;
            }
            return o;
        }

        internal CoreOptions ToCore(bool quicSupported)
        {
            CoreOptions c = new CoreOptions();
            c.DisplayName = DisplayName;
            c.QuicAllowed = QuicAllowed;
            c.QuicSupported = quicSupported;
            c.WebSocketAllowed = WebSocketAllowed;
            c.FirstInUrl = FirstRequestInUrl;
            c.QuicFallbackDelayMs = Ms(QuicFallbackDelay);
            c.ConnectTimeoutMs = Ms(ConnectTimeout);
            c.PingIntervalMs = Ms(PingInterval);
            c.ServerTimeoutMs = Ms(ServerTimeout);
            c.AdaptiveLiveness = AdaptiveLiveness;
            c.HandshakeTimeoutMs = Ms(HandshakeTimeout);
            c.RequestTimeoutMs = Ms(RequestTimeout);
            c.InvokeTimeoutMs = Ms(InvokeTimeout);
            List<long> delays = new List<long>();
            if (ReconnectDelays != null)
            {
                foreach (TimeSpan t in ReconnectDelays)
                {
                    delays.Add(Ms(t));
                }
            }
            c.ReconnectDelaysMs = delays.ToArray();
            c.AutoRejoin = AutoRejoin;
            c.EnableDirect = EnableDirect && LinkFactory != null;
            c.DirectRetryDelayMs = Ms(DirectRetryDelay);
            c.DirectMaxRetries = DirectMaxRetries;
            c.Path.DirectConnectTimeoutMs = Ms(DirectConnectTimeout);
            c.Path.StallMs = Ms(DirectStallTimeout);
            c.Path.MaxQueuedFrames = Math.Max(1, MaxQueuedDirectFrames);
            c.Fallbacks = Fallbacks != null ? new List<ServerEndpoint>(Fallbacks) : new List<ServerEndpoint>();
            c.MaxRedirects = MaxRedirects;
            c.TelemetryEnabled = TelemetryEnabled;
            c.RegionMeasurementEnabled = RegionMeasurementEnabled;
            return c;
        }

        internal static long Ms(TimeSpan t)
        {
            return (long)t.TotalMilliseconds;
        }
    }
}
