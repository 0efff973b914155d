#![warn(missing_docs, unreachable_pub)]
//! FlightSim P2P: signaling, TURN credentials and a datagram relay for
//! peer-to-peer flight-simulator sessions, on one UDP port (QUIC), with a
//! WebSocket fallback on the HTTP port.
//!
//! The crate, top down: each module imports only from those below it.
//!
//! | module | what it is |
//! |---|---|
//! | [`server`] | the server as a whole, and its QUIC transport: one quinn endpoint, admission (Retry) before any state, ALPN dispatch to raw QUIC or WebTransport, the tasks of one QUIC connection |
//! | `websocket` | the WebSocket transport on the HTTP port (`/ws`) |
//! | `conn` | one connection's life, whatever carries it: the transports only adapt bytes to it |
//! | [`relay`] | **where a relayed datagram is forwarded** (the hot path) |
//! | `http` | the HTTP port: its accept loop (per-address cap, header timeout) and `/healthz`, `/metrics`, `/cert-hash`, static files |
//! | `node` | cluster mode's shell: the core's lookups and record writes carried to the directory, the heartbeat, the drain |
//! | `hub` | what every connection task shares: the core behind one lock, the links, the timer task |
//! | [`metrics`] | the metric group, one typed struct whose doc comments are the help texts |
//! | [`client`] | the Rust client used by the `peer` command, tests and benchmarks |
//! | [`wire`] | raw QUIC and WebTransport connections behind one interface |
//! | [`webtransport`] | the server's side of WebTransport over HTTP/3 on quinn: its SETTINGS, the CONNECT, refusals, session streams and datagrams |
//! | [`session`] | the session core, a sans-IO state machine: who is in which session, who may talk to whom, limits, resume, its own timers |
//! | [`directory`] | cluster mode's I/O: the directory in Redis (live nodes, join codes, session records, token index), every call bounded by a timeout |
//! | [`cluster`] | cluster mode as plain data: node and session records shared through Redis, and the decisions made from them |
//! | [`config`], [`limits`], [`turn`] | plain configuration with one set of defaults; ICE servers and coturn credentials |
//! | [`first`] | the first request carried in a connection's URL |
//! | [`proxy`] | the client's address behind a reverse proxy, taken so that the client cannot choose it |
//! | [`protocol`] | the bytes on the wire: messages, control framing, relay header, WebSocket framing |
//! | [`certs`] | TLS: dev certificates browsers accept by hash, or PEM files |
//! | [`vectors`] | the golden vectors client implementers test against |
//!
//! The command line (clap, environment variables, secret files) is the
//! binary's (`src/cli.rs`); the library takes plain structs.

pub mod certs;
pub use fsp2p_client as client;
pub use fsp2p_core::{cluster, limits, session, turn};
pub mod config;
mod conn;
pub mod directory;
pub use fsp2p_protocol::{self as protocol, first, vectors};
mod http;
mod hub;
pub mod metrics;
mod node;
pub mod proxy;
mod quic;
pub mod relay;
pub mod server;
mod websocket;
pub use fsp2p_wire::{self as wire, webtransport};
