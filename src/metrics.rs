//! Prometheus metrics, served as text at `GET /metrics`: one typed group
//! whose doc comments are the metrics' help texts.
//!
//! One registry per server instance (not a process-global recorder), so tests
//! can run several servers in one process and read each one's numbers. Labels
//! are enums, never strings built per event. The relay's per-frame counters
//! (drops included) are handles resolved at start, so a frame costs an atomic
//! add; labelled families are looked up only on errors and connection events.

use std::fmt::Write;

use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, LabelSetEncoder, LabelValueEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::protocol::report::{candidate, LOSS_EDGES_PCT, RTT_EDGES_MS};
use crate::protocol::{ErrorCode, RedirectReason};
use crate::protocol::{Grade, IceFailReason, LinkPath, MilestoneKind};
use crate::session::{QualityGauges, RelayDrop, ReportOutcome, ReportResult, Transport, Via};

/// Why a connection was refused or failed before it was served.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Refusal {
    /// Refused by the session core with this code (`server_full`, `shutting_down`).
    Code(ErrorCode),
    /// The QUIC or TLS handshake failed or timed out.
    Handshake,
    /// A WebTransport session for a path other than `/signal`.
    NotFound,
    /// A WebTransport CONNECT whose `first` request does not decode.
    BadRequest,
    /// No usable ALPN (rustls refuses these first; a safety net).
    Alpn,
    /// A TCP connection over the per-address cap of the HTTP port.
    TcpPerIp,
}

impl Refusal {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Code(code) => code.as_str(),
            Refusal::Handshake => "handshake",
            Refusal::NotFound => "not_found",
            Refusal::BadRequest => "bad_request",
            Refusal::Alpn => "alpn",
            Refusal::TcpPerIp => "tcp_per_ip",
        }
    }
}

/// Which way a datagram was going when QUIC dropped it.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Direction {
    /// Received, not read in time.
    In,
    /// Queued, never sent.
    Out,
}

/// A label value written as the `as_str` of its enum.
macro_rules! label_value {
    ($($ty:ty),*) => {$(
        impl EncodeLabelValue for $ty {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }
    )*};
}
label_value!(Refusal, DirectoryOp, AdminResult, MoveOutcome);

/// How a session move (issue 26: to a node of a better region) ended,
/// as counted on the node it moved from.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum MoveOutcome {
    /// Handed over in the directory; its members were redirected.
    Moved,
    /// The directory's record had moved on (another node took it, or it
    /// ended): nothing was done.
    Lost,
    /// The directory could not be reached: it stays here.
    Failed,
}

impl MoveOutcome {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            MoveOutcome::Moved => "moved",
            MoveOutcome::Lost => "lost",
            MoveOutcome::Failed => "failed",
        }
    }
}

/// `{outcome="moved"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MoveLabel {
    /// How the move ended.
    pub outcome: MoveOutcome,
}

/// How the admin endpoint (`POST /admin/revoke`) answered.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum AdminResult {
    /// 200: applied here (and published to the cluster).
    Ok,
    /// 400: the body is not a revocation.
    BadRequest,
    /// 401: no token, or one that does not verify or was revoked.
    Unauthorized,
    /// 403: a valid token without `"admin": true`.
    Forbidden,
    /// 404: no access control on this server.
    NotFound,
    /// 503: applied here, but the cluster directory did not take it.
    Unavailable,
}

impl AdminResult {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminResult::Ok => "ok",
            AdminResult::BadRequest => "bad_request",
            AdminResult::Unauthorized => "unauthorized",
            AdminResult::Forbidden => "forbidden",
            AdminResult::NotFound => "not_found",
            AdminResult::Unavailable => "unavailable",
        }
    }
}

/// `{result="ok"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdminLabel {
    /// How the endpoint answered.
    pub result: AdminResult,
}

/// A label set of one `field="as_str"` pair, for the label sets whose value
/// is an enum of the core or the protocol crate (the orphan rule keeps
/// prometheus-client's traits off those enums here).
macro_rules! one_label {
    ($($set:ty => $field:ident),*) => {$(
        impl EncodeLabelSet for $set {
            fn encode(&self, encoder: LabelSetEncoder) -> Result<(), std::fmt::Error> {
                [(stringify!($field), self.$field.as_str())].encode(encoder)
            }
        }
    )*};
}
one_label!(
    TransportLabel => transport,
    ViaLabel => via,
    DropLabel => reason,
    RedirectLabel => reason
);

/// What a node was doing with the cluster directory (Redis) when it failed.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum DirectoryOp {
    /// Announcing the node and its load.
    Heartbeat,
    /// Finding a session by code or resume token (and taking it over).
    Lookup,
    /// Reserving a new session's code.
    Reserve,
    /// Writing or deleting a session's record.
    Persist,
    /// Handing sessions to another node at shutdown.
    Drain,
    /// Publishing, hearing or reading revocations.
    Revocations,
    /// Publishing or reading per-player usage (quotas).
    Usage,
}

impl DirectoryOp {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            DirectoryOp::Heartbeat => "heartbeat",
            DirectoryOp::Lookup => "lookup",
            DirectoryOp::Reserve => "reserve",
            DirectoryOp::Persist => "persist",
            DirectoryOp::Drain => "drain",
            DirectoryOp::Revocations => "revocations",
            DirectoryOp::Usage => "usage",
        }
    }
}

impl EncodeLabelValue for Direction {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Direction::In => "in",
            Direction::Out => "out",
        })
    }
}

/// The error code of a `signaling_errors` sample (`unknown` for a code the
/// server does not know, which it never sends).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct ErrorName(Option<ErrorCode>);

impl EncodeLabelValue for ErrorName {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.0.map_or("unknown", ErrorCode::as_str))
    }
}

/// `{transport="quic"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct TransportLabel {
    /// The transport.
    pub transport: Transport,
}

/// `{via="datagram"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct ViaLabel {
    /// The carrier.
    pub via: Via,
}

/// `{reason="server_full"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabel {
    /// Why.
    pub reason: Refusal,
}

/// `{reason="rate_limited"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    /// The error code's name.
    pub reason: ErrorName,
}

/// `{reason="not_in_session"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct DropLabel {
    /// Why the frame was dropped.
    pub reason: RelayDrop,
}

/// `{reason="draining"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RedirectLabel {
    /// Why the client was sent elsewhere.
    pub reason: RedirectReason,
}

/// `{op="lookup"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    /// What the node was doing with the directory.
    pub op: DirectoryOp,
}

/// `{direction="in"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    /// Which way.
    pub direction: Direction,
}

/// What QUIC itself lost on one connection, counted when it closes.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuicLosses {
    /// Datagrams quinn received but the relay never read: its receive buffer
    /// (`--datagram-recv-buffer`) overflowed, or they were still queued at close.
    pub datagrams_in: u64,
    /// Relay datagrams handed to quinn but never sent: its send buffer
    /// (`--datagram-send-buffer`) dropped them, or they were still queued at close.
    pub datagrams_out: u64,
    /// Packets QUIC declared lost on the path (the network's loss).
    pub packets: u64,
}

/// Declares [`Metrics`] from one list: each metric's field name is its name
/// (after the `fsp2p_` prefix; counters get `_total`), its doc comment its
/// help text, and it is registered once, in [`Metrics::new`].
macro_rules! metric_group {
    ($($(#[doc = $doc:literal])+ $name:ident: $ty:ty,)*) => {
        /// Every metric of one server, registered once. Labels are enums.
        pub struct Metrics {
            registry: Registry,
            $($(#[doc = $doc])+ pub $name: $ty,)*
            /// Connection quality (issue 25): its own group, for its histograms.
            pub quality: Quality,
            // Pre-resolved label handles for the per-frame path, indexed by `Via`.
            fwd: [Counter; 3],
            rx: [Counter; 3],
            // And by `RelayDrop`: a flood of bad frames must not cost a label lookup each.
            drops: [Counter; RelayDrop::ALL.len()],
        }

        impl Metrics {
            /// A fresh registry with every metric at zero.
            pub fn new() -> Self {
                let mut registry = Registry::with_prefix("fsp2p");
                $(
                    let $name = <$ty>::default();
                    registry.register(stringify!($name), concat!($($doc),+).trim(), $name.clone());
                )*
                let quality = Quality::register(&mut registry);
                let mut m = Metrics {
                    registry,
                    $($name,)*
                    quality,
                    fwd: Default::default(),
                    rx: Default::default(),
                    drops: Default::default(),
                };
                m.resolve_handles();
                m
            }
        }
    };
}

metric_group! {
    /// Open client connections by transport.
    connections: Family<TransportLabel, Gauge>,
    /// Client connections accepted by transport.
    connections_accepted: Family<TransportLabel, Counter>,
    /// Connections refused or failed before serving, by reason.
    connections_refused: Family<RefusalLabel, Counter>,
    /// QUIC Retry packets sent: connection attempts asked to prove their address first
    /// (many unfinished handshakes in flight, in all or from one address).
    handshake_retries: Counter,
    /// Connection attempts in flight: QUIC handshakes and WebTransport sessions waiting
    /// for CONNECT (they hold no connection slot).
    connection_attempts: Gauge,
    /// Open TCP connections to the HTTP port, WebSockets included.
    http_connections: Gauge,
    /// Sessions in existence.
    sessions: Gauge,
    /// Peers known (connected or within resume grace).
    peers: Gauge,
    /// Control messages received from clients.
    signaling_messages: Counter,
    /// Error messages sent to clients, by error code name.
    signaling_errors: Family<ErrorLabel, Counter>,
    /// Relay frames received from clients, by carrier.
    relay_received: Family<ViaLabel, Counter>,
    /// Relay frames delivered to receivers, by carrier (one per receiver).
    relay_forwarded: Family<ViaLabel, Counter>,
    /// Relay payload bytes delivered to receivers.
    relay_forwarded_bytes: Counter,
    /// Relay frames dropped, by reason.
    relay_dropped: Family<DropLabel, Counter>,
    /// Datagrams dropped inside QUIC buffers (in: received, not read in time; out: queued,
    /// never sent), counted when a connection closes.
    quic_datagrams_dropped: Family<DirectionLabel, Counter>,
    /// QUIC packets lost on the network path, counted when a connection closes.
    quic_lost_packets: Counter,
    /// Cluster mode: live nodes in the directory, this one included (0 on a single node).
    cluster_nodes: Gauge,
    /// Cluster mode: 1 while the directory (Redis) answers, 0 while it does not.
    cluster_directory_up: Gauge,
    /// Cluster mode: clients sent to another node, by reason.
    cluster_redirects: Family<RedirectLabel, Counter>,
    /// Cluster mode: sessions this node took in from the directory: over from a node that
    /// died, handed over by a draining one, or its own from before a restart.
    cluster_sessions_taken_over: Counter,
    /// Cluster mode with regions: running sessions this node moved to a node of a better
    /// region (make-before-break), by outcome.
    session_moves: Family<MoveLabel, Counter>,
    /// Cluster mode: directory (Redis) calls that failed, by what the node was doing.
    cluster_directory_errors: Family<OpLabel, Counter>,
    /// Access control: revocations this node applied (from its admin endpoint, from another
    /// node through the directory's pub/sub, or from its stored set), each counted once.
    revocations_applied: Counter,
    /// Access control: connected players cut off by a revocation on this node.
    revocation_players_cut: Counter,
    /// Access control: requests to POST /admin/revoke, by how they were answered.
    admin_requests: Family<AdminLabel, Counter>,
    /// Access control, cluster mode: connections that players with a per-player quota hold on
    /// the other nodes, as this node last read them from the directory.
    cluster_remote_user_connections: Gauge,
    /// WebTransport sessions the client ended without a CLOSE_WEBTRANSPORT_SESSION capsule (CONNECT stream finished or reset, or the connection closed)
    webtransport_closed_without_capsule: Counter,
    /// Further requests (a second CONNECT) on a WebTransport connection, reset with H3_REQUEST_REJECTED
    webtransport_requests_rejected: Counter,
}

impl Metrics {
    /// Resolve the per-frame label handles once.
    fn resolve_handles(&mut self) {
        let vias = |family: &Family<ViaLabel, Counter>| {
            Via::ALL.map(|via| family.get_or_create(&ViaLabel { via }).clone())
        };
        self.fwd = vias(&self.relay_forwarded);
        self.rx = vias(&self.relay_received);
        self.drops = RelayDrop::ALL.map(|reason| {
            self.relay_dropped
                .get_or_create(&DropLabel { reason })
                .clone()
        });
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The OpenMetrics text exposition (Prometheus reads it).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub(crate) fn connection_opened(&self, transport: Transport) {
        let l = TransportLabel { transport };
        self.connections.get_or_create(&l).inc();
        self.connections_accepted.get_or_create(&l).inc();
    }

    pub(crate) fn connection_closed(&self, transport: Transport) {
        self.connections
            .get_or_create(&TransportLabel { transport })
            .dec();
    }

    pub(crate) fn refused(&self, reason: Refusal) {
        self.connections_refused
            .get_or_create(&RefusalLabel { reason })
            .inc();
    }

    pub(crate) fn error_sent(&self, code: u16) {
        let reason = ErrorName(ErrorCode::from_u16(code));
        self.signaling_errors
            .get_or_create(&ErrorLabel { reason })
            .inc();
    }

    pub(crate) fn relay_drop(&self, why: RelayDrop) {
        self.drops[why as usize].inc();
    }

    pub(crate) fn quic_losses(&self, lost: &QuicLosses) {
        for (direction, n) in [
            (Direction::In, lost.datagrams_in),
            (Direction::Out, lost.datagrams_out),
        ] {
            self.quic_datagrams_dropped
                .get_or_create(&DirectionLabel { direction })
                .inc_by(n);
        }
        self.quic_lost_packets.inc_by(lost.packets);
    }

    pub(crate) fn redirected(&self, reason: RedirectReason) {
        self.cluster_redirects
            .get_or_create(&RedirectLabel { reason })
            .inc();
    }

    pub(crate) fn session_move(&self, outcome: MoveOutcome) {
        self.session_moves
            .get_or_create(&MoveLabel { outcome })
            .inc();
    }

    pub(crate) fn directory_error(&self, op: DirectoryOp) {
        self.cluster_directory_errors
            .get_or_create(&OpLabel { op })
            .inc();
    }

    pub(crate) fn admin_request(&self, result: AdminResult) {
        self.admin_requests
            .get_or_create(&AdminLabel { result })
            .inc();
    }

    pub(crate) fn relay_in(&self, via: Via) {
        self.rx[via as usize].inc();
    }

    pub(crate) fn relay_out(&self, via: Via, payload: usize) {
        self.fwd[via as usize].inc();
        self.relay_forwarded_bytes.inc_by(payload as u64);
    }
}

// ---------------------------------------------------------------------------
// Connection quality (issue 25, docs/CONFIGURATION.md "Connection quality metrics")
// ---------------------------------------------------------------------------

/// Edges of `fsp2p_setup_seconds` and `fsp2p_first_frame_seconds`, in
/// seconds: 50 ms (a LAN's whole setup) to 30 s (past every client's ICE
/// deadline; a step that takes longer lands in +Inf), dense under 3 s where
/// a healthy setup lies, so p50 and p95 read within a step.
pub const SETUP_EDGES_S: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
];

/// A histogram family (the constructor fixes its bucket edges).
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn setup_histogram() -> Histogram {
    Histogram::new(SETUP_EDGES_S)
}
fn rtt_histogram() -> Histogram {
    Histogram::new(RTT_EDGES_MS.map(|ms| ms / 1000.0))
}
fn loss_histogram() -> Histogram {
    Histogram::new(LOSS_EDGES_PCT.map(|pct| pct / 100.0))
}

/// `{path="relay"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct PathLabel {
    /// The link path.
    pub path: LinkPath,
}
/// `{grade="good"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct GradeLabel {
    /// The link grade.
    pub grade: Grade,
}
/// `{milestone="welcome"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct MilestoneLabel {
    /// The setup step.
    pub milestone: MilestoneKind,
}
/// `{reason="timeout"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct IceReasonLabel {
    /// Why ICE failed.
    pub reason: IceFailReason,
}
/// `{result="accepted"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct ReportLabel {
    /// What became of the report.
    pub result: ReportResult,
}
/// `{type="srflx"}` (a candidate bit's name; `type` is a Rust keyword, hence the field name).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct CandidateLabel {
    /// One of the names in [`candidate::ALL`].
    pub kind: &'static str,
}

one_label!(
    PathLabel => path,
    GradeLabel => grade,
    MilestoneLabel => milestone,
    IceReasonLabel => reason,
    ReportLabel => result
);

impl EncodeLabelSet for CandidateLabel {
    fn encode(&self, encoder: LabelSetEncoder) -> Result<(), std::fmt::Error> {
        [("type", self.kind)].encode(encoder)
    }
}

/// The setup milestones of `fsp2p_setup_seconds` (first_frame has its own histogram).
const SETUP_MILESTONES: [MilestoneKind; 4] = [
    MilestoneKind::Welcome,
    MilestoneKind::FirstSignal,
    MilestoneKind::Direct,
    MilestoneKind::Relay,
];
/// The paths of `fsp2p_first_frame_seconds`: those a frame can come on.
const FRAME_PATHS: [LinkPath; 3] = [LinkPath::Direct, LinkPath::Turn, LinkPath::Relay];

/// The connection-quality metrics. Every label value is created at start
/// (so each series exists, at 0, before the first report) and its handle
/// kept, so a report costs atomic adds and no label lookup. None of this is
/// on the relay's per-datagram path.
pub struct Quality {
    players_by_path: [Gauge; 4],
    links_by_path: [Gauge; 4],
    links_by_grade: [Gauge; 5],
    /// Indexed by `MilestoneKind as usize` (first_frame's slot unused: `None`).
    setup: [Option<Histogram>; 5],
    /// Indexed by `LinkPath as usize` (connecting's slot `None`).
    first_frame: [Option<Histogram>; 4],
    ice_failures: [Counter; 5],
    candidates: [Counter; 4],
    rtt: [Histogram; 4],
    loss: [Histogram; 4],
    reports: [Counter; 4],
}

impl Quality {
    /// Register the families in `registry` (prefix `fsp2p`) and resolve every label.
    fn register(registry: &mut Registry) -> Self {
        let players = Family::<PathLabel, Gauge>::default();
        let links_path = Family::<PathLabel, Gauge>::default();
        let links_grade = Family::<GradeLabel, Gauge>::default();
        let setup: Histograms<MilestoneLabel> = Family::new_with_constructor(setup_histogram);
        let first: Histograms<PathLabel> = Family::new_with_constructor(setup_histogram);
        let ice = Family::<IceReasonLabel, Counter>::default();
        let cands = Family::<CandidateLabel, Counter>::default();
        let rtt: Histograms<PathLabel> = Family::new_with_constructor(rtt_histogram);
        let loss: Histograms<PathLabel> = Family::new_with_constructor(loss_histogram);
        let reports = Family::<ReportLabel, Counter>::default();
        registry.register(
            "players_by_path",
            "Connected players whose latest quality report (at most 30 s old) had a link, by the worst path of their links (relay over turn over direct over connecting)",
            players.clone(),
        );
        registry.register(
            "links_by_path",
            "Peer links in connected players' latest quality reports (at most 30 s old), by path",
            links_path.clone(),
        );
        registry.register(
            "links_by_grade",
            "Peer links in connected players' latest quality reports (at most 30 s old), by grade",
            links_grade.clone(),
        );
        registry.register(
            "setup_seconds",
            "Setup steps as clients timed them, by milestone (welcome: connect to Welcome; first_signal: link to first Signal; direct / relay: first offer to DataChannel usable / to relay fallback)",
            setup.clone(),
        );
        registry.register(
            "first_frame_seconds",
            "Link created to first flight frame received, as clients timed it, by the path it came on",
            first.clone(),
        );
        registry.register(
            "ice_failures",
            "ICE failures clients reported, by reason",
            ice.clone(),
        );
        registry.register(
            "ice_candidates",
            "ICE candidate types clients gathered, each type counted once per connection",
            cands.clone(),
        );
        registry.register(
            "link_rtt_seconds",
            "Echo RTT of peer links, one observation per link per accepted report (the report's bucket, observed as its upper edge; above 1 s as 2 s), by path",
            rtt.clone(),
        );
        registry.register(
            "link_loss_ratio",
            "Echo loss of peer links (0..1), one observation per link per accepted report (the report's bucket, observed as its upper edge; above 50 % as 1), by path",
            loss.clone(),
        );
        registry.register(
            "reports",
            "Quality reports from clients, by what became of them (accepted, rate, version, malformed)",
            reports.clone(),
        );
        let by_path = |f: &Family<PathLabel, Gauge>| {
            LinkPath::ALL.map(|path| f.get_or_create(&PathLabel { path }).clone())
        };
        let hist_by_path = |f: &Histograms<PathLabel>| {
            LinkPath::ALL.map(|path| f.get_or_create(&PathLabel { path }).clone())
        };
        Quality {
            players_by_path: by_path(&players),
            links_by_path: by_path(&links_path),
            links_by_grade: Grade::ALL
                .map(|grade| links_grade.get_or_create(&GradeLabel { grade }).clone()),
            setup: MilestoneKind::ALL.map(|milestone| {
                SETUP_MILESTONES
                    .contains(&milestone)
                    .then(|| setup.get_or_create(&MilestoneLabel { milestone }).clone())
            }),
            first_frame: LinkPath::ALL.map(|path| {
                FRAME_PATHS
                    .contains(&path)
                    .then(|| first.get_or_create(&PathLabel { path }).clone())
            }),
            ice_failures: IceFailReason::ALL
                .map(|reason| ice.get_or_create(&IceReasonLabel { reason }).clone()),
            candidates: candidate::ALL
                .map(|(_, kind)| cands.get_or_create(&CandidateLabel { kind }).clone()),
            rtt: hist_by_path(&rtt),
            loss: hist_by_path(&loss),
            reports: ReportResult::ALL
                .map(|result| reports.get_or_create(&ReportLabel { result }).clone()),
        }
    }

    /// Count and observe one report's outcome.
    pub(crate) fn report(&self, outcome: &ReportOutcome) {
        self.reports[outcome.result() as usize].inc();
        let ReportOutcome::Accepted(acc) = outcome else {
            return;
        };
        for (kind, ms) in &acc.setup {
            if let Some(h) = &self.setup[*kind as usize] {
                h.observe(f64::from(*ms) / 1000.0);
            }
        }
        for (path, ms) in &acc.first_frame {
            if let Some(h) = &self.first_frame[*path as usize] {
                h.observe(f64::from(*ms) / 1000.0);
            }
        }
        for reason in &acc.ice_failures {
            self.ice_failures[*reason as usize].inc();
        }
        for (i, (bit, _)) in candidate::ALL.iter().enumerate() {
            if acc.new_candidates & bit != 0 {
                self.candidates[i].inc();
            }
        }
        for l in &acc.links {
            if let Some(v) = l.rtt_seconds() {
                self.rtt[l.path as usize].observe(v);
            }
            if let Some(v) = l.loss_ratio() {
                self.loss[l.path as usize].observe(v);
            }
        }
    }

    /// Copy the core's gauges.
    pub(crate) fn set_gauges(&self, g: &QualityGauges) {
        let set = |gauges: &[Gauge], values: &[u32]| {
            for (gauge, v) in gauges.iter().zip(values) {
                gauge.set(i64::from(*v));
            }
        };
        set(&self.players_by_path, &g.players_by_path);
        set(&self.links_by_path, &g.links_by_path);
        set(&self.links_by_grade, &g.links_by_grade);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ten families of spec Q4, by the names Prometheus sees.
    const QUALITY: [&str; 10] = [
        "fsp2p_players_by_path",
        "fsp2p_links_by_path",
        "fsp2p_links_by_grade",
        "fsp2p_setup_seconds",
        "fsp2p_first_frame_seconds",
        "fsp2p_ice_failures_total",
        "fsp2p_ice_candidates_total",
        "fsp2p_link_rtt_seconds",
        "fsp2p_link_loss_ratio",
        "fsp2p_reports_total",
    ];

    /// Sample lines of one family (its `_bucket`, `_sum`, `_count` included).
    fn samples<'a>(text: &'a str, family: &str) -> Vec<&'a str> {
        let base = family.trim_end_matches("_total");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                let name = l.split(['{', ' ']).next().unwrap_or("");
                name == family
                    || [base, "_bucket"].concat() == name
                    || [base, "_sum"].concat() == name
                    || [base, "_count"].concat() == name
            })
            .collect()
    }

    #[test]
    fn quality_families_exist_from_start_with_every_label_and_are_documented() {
        let text = Metrics::new().render();
        let docs = include_str!("../docs/CONFIGURATION.md");
        let mut total = 0;
        for family in QUALITY {
            let s = samples(&text, family);
            assert!(!s.is_empty(), "{family} is not exported");
            assert!(
                s.iter().all(|l| l.ends_with(" 0") || l.ends_with(" 0.0")),
                "{family} is not at 0: {s:?}"
            );
            assert!(
                docs.contains(&format!("`{family}`")),
                "{family} undocumented"
            );
            total += s.len();
        }
        // The number docs/CONFIGURATION.md states ("219 series per node").
        assert_eq!(total, 219);
        assert!(docs.contains("219 series per node"));
        for (family, labels) in [
            (
                "fsp2p_players_by_path",
                &["direct", "turn", "relay", "connecting"][..],
            ),
            (
                "fsp2p_links_by_grade",
                &["unknown", "excellent", "good", "poor", "lost"],
            ),
            (
                "fsp2p_reports_total",
                &["accepted", "rate", "version", "malformed"],
            ),
            (
                "fsp2p_ice_candidates_total",
                &["host", "srflx", "relay", "prflx"],
            ),
        ] {
            let s = samples(&text, family);
            for l in labels {
                assert!(
                    s.iter().any(|x| x.contains(&format!("=\"{l}\""))),
                    "{family} {l}"
                );
            }
        }
    }

    #[test]
    fn a_report_is_observed_at_its_bucket_edges_and_counted() {
        use crate::session::{Accepted, LinkObservation, ReportOutcome, ReportResult};
        let m = Metrics::new();
        let acc = Accepted {
            setup: vec![(MilestoneKind::Welcome, 120)],
            first_frame: vec![(LinkPath::Turn, 31_000)],
            ice_failures: vec![IceFailReason::NoCandidates],
            new_candidates: candidate::SRFLX,
            links: vec![LinkObservation {
                path: LinkPath::Relay,
                rtt_bucket: 9,
                loss_bucket: 3,
            }],
        };
        m.quality.report(&ReportOutcome::Accepted(Box::new(acc)));
        m.quality
            .report(&ReportOutcome::Dropped(ReportResult::Malformed));
        let text = m.render();
        for line in [
            "fsp2p_reports_total{result=\"accepted\"} 1",
            "fsp2p_reports_total{result=\"malformed\"} 1",
            "fsp2p_setup_seconds_bucket{le=\"0.25\",milestone=\"welcome\"} 1",
            "fsp2p_setup_seconds_bucket{le=\"0.1\",milestone=\"welcome\"} 0",
            "fsp2p_first_frame_seconds_bucket{le=\"30.0\",path=\"turn\"} 0",
            "fsp2p_first_frame_seconds_count{path=\"turn\"} 1",
            "fsp2p_ice_failures_total{reason=\"no_candidates\"} 1",
            "fsp2p_ice_candidates_total{type=\"srflx\"} 1",
            "fsp2p_link_rtt_seconds_sum{path=\"relay\"} 2.0",
            "fsp2p_link_rtt_seconds_bucket{le=\"1.0\",path=\"relay\"} 0",
            "fsp2p_link_loss_ratio_sum{path=\"relay\"} 0.05",
            "fsp2p_link_loss_ratio_bucket{le=\"0.05\",path=\"relay\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line}");
        }
        let g = QualityGauges {
            players_by_path: [0, 2, 0, 1],
            ..QualityGauges::default()
        };
        m.quality.set_gauges(&g);
        let text = m.render();
        assert!(text.contains("fsp2p_players_by_path{path=\"direct\"} 2"));
        assert!(text.contains("fsp2p_players_by_path{path=\"relay\"} 1"));
    }
}
