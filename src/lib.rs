//! FlightSim P2P: signaling, TURN credentials and a datagram relay for
//! peer-to-peer flight-simulator sessions, on one UDP port.
//!
//! Where things live:
//! * [`protocol`]: the bytes on the wire (messages, framing, relay header).
//! * [`session`]: the session core, a pure state machine (sans-IO): who is in
//!   which session, who may talk to whom, limits, resume.
//! * [`limits`]: every limit and the token bucket that enforces rates.
//! * [`turn`]: ICE servers and short-lived coturn credentials.
//! * [`server`]: the I/O shell: one quinn endpoint, ALPN dispatch to raw QUIC
//!   or WebTransport, control streams.
//! * [`relay`]: where a relayed datagram is forwarded (the hot path).
//! * [`http`]: `/healthz`, `/metrics`, `/cert-hash` on the TCP side port.
//! * [`websocket`]: the same protocol over a WebSocket on the HTTP port, for
//!   networks and platforms without UDP or QUIC.
//! * [`metrics`]: the Prometheus registry.
//! * [`certs`]: TLS: dev certificates browsers accept by hash, or PEM files.
//! * [`client`]: the Rust client used by the `peer` command, tests and benchmarks.

pub mod certs;
pub mod client;
pub mod config;
mod conn;
pub mod first;
mod http;
mod hub;
pub mod limits;
pub mod metrics;
pub mod protocol;
pub mod relay;
pub mod server;
pub mod session;
pub mod turn;
pub mod vectors;
pub mod websocket;
pub mod wire;
