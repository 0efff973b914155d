// The types the service core speaks in (ServiceCore.cs and its partial files):
// connection state, transport kinds, the outputs it emits (CoreOutput), its options
// (CoreOptions), the exceptions it completes user calls with, and per-peer state.
// Split from ServiceCore.cs so the state machine files hold only the machine.
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
        /// <summary>A peer's quality grade or path changed (Peer, Quality).</summary>
        QualityChanged,
        /// <summary>
        /// Measure the regions (PROTOCOL.md section 11) off the join's path: GET /nodes from
        /// Server's HTTP base (null: the configured server), one node per region, all within
        /// 1 s; then call RegionsMeasured, whatever happened (an empty list when nothing).
        /// </summary>
        MeasureRegions,
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
        /// <summary>QualityChanged: the peer's snapshot.</summary>
        public PeerQuality Quality;
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
        /// <summary>
        /// Rule 2 (docs/PROTOCOL.md "Client behaviour"): a Ping every this many ms while
        /// connected (at least every half ServerTimeoutMs), and every 100 ms (probing) while one
        /// has been outstanding for probe_after = max(250, srtt + 4·rttvar), 1000 before an RTT
        /// sample, until anything is heard. 0: no pings, no liveness verdict.
        /// </summary>
        public long PingIntervalMs = Liveness.DefaultPingIntervalMs;
        /// <summary>
        /// Rule 2's verdict: the server is lost when a Ping has gone unanswered (nothing at all
        /// heard since it went out) for longer than the adaptive live timeout,
        /// clamp(3 × (srtt + 4·rttvar), 1500, 10000) ms, 3000 before an RTT sample. Off: only
        /// ServerTimeoutMs decides (SignalR's own rule), and pings go at the interval alone
        /// (no probing: nothing waits on their answer).
        /// </summary>
        public bool AdaptiveLiveness = true;
        /// <summary>
        /// SignalR's ServerTimeout, a ceiling on silence: a connected server that sends nothing
        /// (no message, no relay frame) for this long is taken as lost even if rule 2 has not
        /// decided yet; the connection is closed and Reconnecting fires. 0: off.
        /// </summary>
        public long ServerTimeoutMs = 10000;
        /// <summary>From the transport's connect to the Welcome; a handshake that takes longer fails the attempt. 0: off.</summary>
        public long HandshakeTimeoutMs = 15000;
        public long RequestTimeoutMs = 10000;
        public long InvokeTimeoutMs = 30000;
        /// <summary>SignalR's retry delays, after the protocol's resume (rule 7); empty: a lost connection is Closed.</summary>
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
        /// <summary>
        /// Quality reports to the server (Hello version 4 since regions: the fields of 3; ClientMsg Report: link paths and
        /// grades as buckets, setup milestones, ICE failure reasons, candidate types; no
        /// addresses, names or tokens). Off: Hello as before, nothing reported. The local
        /// quality API works either way.
        /// </summary>
        public bool TelemetryEnabled = true;
        /// <summary>After a Welcome of version 4 or later, measure the RTT to each region and send it with the next request (PROTOCOL.md section 11).</summary>
        public bool RegionMeasurementEnabled = true;
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
        /// <summary>The path last recorded by the path rules (PathRules.Change); null before the first.</summary>
        public PeerPathKind? LastKind;
        /// <summary>Issue 25: the link's quality estimator, and its setup milestones.</summary>
        public QualityTracker Quality;
        public long CreatedAt;
        public long FirstOfferAt = -1;
        public bool FirstSignalSeen;
        public bool OutcomeSeen;
        public bool FirstFrameSeen;
    }
}
