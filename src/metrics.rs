//! Prometheus metrics, served as text at `GET /metrics`.
//!
//! One registry per server instance (not a process-global recorder), so tests
//! can run several servers in one process and read each one's numbers. The
//! relay's per-frame counters (drops included) are handles resolved at start,
//! so a frame costs an atomic add; labelled families are looked up only on
//! errors and connection events.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::protocol::ErrorCode;
use crate::session::{RelayDrop, Transport, Via};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabel {
    pub transport: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViaLabel {
    pub via: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    pub direction: String,
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

pub struct Metrics {
    registry: Registry,
    pub quic_datagrams_dropped: Family<DirectionLabel, Counter>,
    pub quic_lost_packets: Counter,
    pub connections: Family<TransportLabel, Gauge>,
    pub connections_accepted: Family<TransportLabel, Counter>,
    pub connections_refused: Family<ReasonLabel, Counter>,
    /// QUIC Retry packets sent: attempts asked to prove their address first.
    pub handshake_retries: Counter,
    /// Connection attempts in flight (QUIC handshakes, WebTransport waiting for CONNECT).
    pub connection_attempts: Gauge,
    /// Open TCP connections to the HTTP port (WebSockets included).
    pub http_connections: Gauge,
    pub sessions: Gauge,
    pub peers: Gauge,
    pub signaling_messages: Counter,
    pub signaling_errors: Family<ReasonLabel, Counter>,
    pub relay_received: Family<ViaLabel, Counter>,
    pub relay_forwarded: Family<ViaLabel, Counter>,
    pub relay_forwarded_bytes: Counter,
    pub relay_dropped: Family<ReasonLabel, Counter>,
    // Pre-resolved label handles for the per-frame path, indexed by `Via`.
    fwd: [Counter; 3],
    rx: [Counter; 3],
    // And by `RelayDrop`: a flood of bad frames must not cost a label lookup each.
    drops: [Counter; RelayDrop::ALL.len()],
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fsp2p");
        let connections = Family::<TransportLabel, Gauge>::default();
        let connections_accepted = Family::<TransportLabel, Counter>::default();
        let connections_refused = Family::<ReasonLabel, Counter>::default();
        let handshake_retries = Counter::default();
        let connection_attempts = Gauge::default();
        let http_connections = Gauge::default();
        registry.register(
            "handshake_retries",
            "QUIC Retry packets sent: connection attempts asked to prove their address first \
             (many unfinished handshakes in flight, in all or from one address)",
            handshake_retries.clone(),
        );
        registry.register(
            "connection_attempts",
            "Connection attempts in flight: QUIC handshakes and WebTransport sessions waiting \
             for CONNECT (they hold no connection slot)",
            connection_attempts.clone(),
        );
        registry.register(
            "http_connections",
            "Open TCP connections to the HTTP port, WebSockets included",
            http_connections.clone(),
        );
        let sessions = Gauge::default();
        let peers = Gauge::default();
        let signaling_messages = Counter::default();
        let signaling_errors = Family::<ReasonLabel, Counter>::default();
        let relay_received = Family::<ViaLabel, Counter>::default();
        let relay_forwarded = Family::<ViaLabel, Counter>::default();
        let relay_forwarded_bytes = Counter::default();
        let relay_dropped = Family::<ReasonLabel, Counter>::default();
        let quic_datagrams_dropped = Family::<DirectionLabel, Counter>::default();
        let quic_lost_packets = Counter::default();
        registry.register(
            "quic_datagrams_dropped",
            "Datagrams dropped inside QUIC buffers (in: received, not read in time; out: queued, \
             never sent), counted when a connection closes",
            quic_datagrams_dropped.clone(),
        );
        registry.register(
            "quic_lost_packets",
            "QUIC packets lost on the network path, counted when a connection closes",
            quic_lost_packets.clone(),
        );
        registry.register(
            "connections",
            "Open client connections by transport",
            connections.clone(),
        );
        registry.register(
            "connections_accepted",
            "Client connections accepted by transport",
            connections_accepted.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections refused or failed before serving, by reason",
            connections_refused.clone(),
        );
        registry.register("sessions", "Sessions in existence", sessions.clone());
        registry.register(
            "peers",
            "Peers known (connected or within resume grace)",
            peers.clone(),
        );
        registry.register(
            "signaling_messages",
            "Control messages received from clients",
            signaling_messages.clone(),
        );
        registry.register(
            "signaling_errors",
            "Error messages sent to clients, by error code name",
            signaling_errors.clone(),
        );
        registry.register(
            "relay_received",
            "Relay frames received from clients, by carrier",
            relay_received.clone(),
        );
        registry.register(
            "relay_forwarded",
            "Relay frames delivered to receivers, by carrier (one per receiver)",
            relay_forwarded.clone(),
        );
        registry.register(
            "relay_forwarded_bytes",
            "Relay payload bytes delivered to receivers",
            relay_forwarded_bytes.clone(),
        );
        registry.register(
            "relay_dropped",
            "Relay frames dropped, by reason",
            relay_dropped.clone(),
        );
        let vias = [Via::Datagram, Via::Stream, Via::WebSocket];
        let handles = |family: &Family<ViaLabel, Counter>| {
            vias.map(|v| {
                family
                    .get_or_create(&ViaLabel {
                        via: v.as_str().into(),
                    })
                    .clone()
            })
        };
        let fwd = handles(&relay_forwarded);
        let rx = handles(&relay_received);
        let drops = RelayDrop::ALL.map(|why| {
            relay_dropped
                .get_or_create(&ReasonLabel {
                    reason: why.as_str().into(),
                })
                .clone()
        });
        Metrics {
            quic_datagrams_dropped,
            quic_lost_packets,
            fwd,
            rx,
            drops,
            registry,
            connections,
            connections_accepted,
            connections_refused,
            handshake_retries,
            connection_attempts,
            http_connections,
            sessions,
            peers,
            signaling_messages,
            signaling_errors,
            relay_received,
            relay_forwarded,
            relay_forwarded_bytes,
            relay_dropped,
        }
    }

    /// The OpenMetrics text exposition (Prometheus reads it).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn connection_opened(&self, t: Transport) {
        let l = TransportLabel {
            transport: t.as_str().into(),
        };
        self.connections.get_or_create(&l).inc();
        self.connections_accepted.get_or_create(&l).inc();
    }

    pub fn connection_closed(&self, t: Transport) {
        self.connections
            .get_or_create(&TransportLabel {
                transport: t.as_str().into(),
            })
            .dec();
    }

    pub fn refused(&self, reason: &str) {
        self.connections_refused
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn error_sent(&self, code: u16) {
        let reason = ErrorCode::from_u16(code).map_or("unknown", |c| c.as_str());
        self.signaling_errors
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn relay_drop(&self, why: RelayDrop) {
        self.drops[why as usize].inc();
    }

    pub fn quic_losses(&self, lost: &QuicLosses) {
        for (direction, n) in [("in", lost.datagrams_in), ("out", lost.datagrams_out)] {
            self.quic_datagrams_dropped
                .get_or_create(&DirectionLabel {
                    direction: direction.into(),
                })
                .inc_by(n);
        }
        self.quic_lost_packets.inc_by(lost.packets);
    }

    pub fn relay_in(&self, via: Via) {
        self.rx[via as usize].inc();
    }

    pub fn relay_out(&self, via: Via, payload: usize) {
        self.fwd[via as usize].inc();
        self.relay_forwarded_bytes.inc_by(payload as u64);
    }
}
