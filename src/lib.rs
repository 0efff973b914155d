#![warn(missing_docs, unreachable_pub)]
//! FlightSim P2P: signaling, TURN credentials and a datagram relay for
//! peer-to-peer flight-simulator sessions, on one UDP port (QUIC), with a
//! WebSocket fallback on the HTTP port.
//!
//! This is the map of the project's Rust code, kept here only (the README
//! links to it).
//!
//! ## The crates, top down
//!
//! Each crate depends only on those below it. A game embeds `fsp2p-client`
//! and compiles none of the server's dependencies (`tests/dependencies.rs`
//! checks it with `cargo tree`).
//!
//! | crate (folder) | what it holds | may not depend on |
//! |---|---|---|
//! | `flightsim-p2p` (the root package, `src/`) | the server, the command line and the binary `flightsim-p2p`; re-exports every crate below under its old path (`flightsim_p2p::client`, `::session`, `::protocol`, ...) | |
//! | `fsp2p-client` (`crates/client`) | the Rust client: raw QUIC, WebTransport or the WebSocket fallback, sessions, relay frames, resume, redirects; `examples/game_loop.rs` embeds it | redis, axum, hyper, prometheus-client, clap, tracing-subscriber, a second crypto provider |
//! | `fsp2p-wire` (`crates/wire`) | raw QUIC and WebTransport connections behind one interface ([`wire`]), both ends; the server's side of WebTransport over HTTP/3 on quinn ([`webtransport`]: SETTINGS, the CONNECT, refusals, session streams and datagrams) | the same |
//! | `fsp2p-core` (`crates/core`) | the sans-IO core: [`session`] (who is in which session, who may talk to whom, resume, its own timers; admission, join codes, rate budgets, access control and per-player quotas in `session/`), [`cluster`] (records shared through Redis, and every decision made from them, the settle rule included), [`limits`], [`turn`] (ICE servers, coturn credentials) | tokio, quinn, sockets, redis, axum |
//! | `fsp2p-protocol` (`crates/protocol`) | the bytes on the wire ([`protocol`]: messages, control framing, relay header, WebSocket framing), [`first`] (the first request in a connection's URL), [`vectors`] (golden vectors for client implementers), `Via` and `Transport` | tokio, quinn, any I/O |
//!
//! ## The server's modules, top down
//!
//! Each module imports only from those below it (and from the crates above).
//!
//! | module | what it is |
//! |---|---|
//! | [`server`] | the server as a whole: start every task, rotate the dev certificate, shut down gracefully |
//! | `quic` | the QUIC endpoint: socket, TLS and transport settings, admission (Retry) before any state, ALPN dispatch to raw QUIC or WebTransport; `quic/tasks.rs`: the tasks of one open QUIC connection |
//! | `websocket` | the WebSocket transport on the HTTP port (`/ws`) |
//! | `conn` | one connection's life, whatever carries it: the transports only adapt bytes to it |
//! | [`relay`] | **where a relayed datagram is forwarded** (the hot path) |
//! | `http` | the HTTP port: its accept loop (per-address cap, header timeout) and `/healthz`, `/metrics`, `/cert-hash`, `POST /admin/revoke` (the operator's revocations), static files |
//! | `node` | cluster mode's shell: takes the hub's cluster channels, carries lookups and record writes to the directory, the heartbeat (with the stored revocations and per-player usage), the revocations' pub/sub, the drain |
//! | `hub` | what every connection task shares: the core behind one lock, the links, the timer task, and plain channels for cluster work (it never names `node`) |
//! | [`metrics`] | the metric group, one typed struct whose doc comments are the help texts |
//! | [`directory`] | cluster mode's I/O: the directory in Redis (live nodes, join codes, session records, token index, revocations, per-player usage), every call bounded by a timeout |
//! | [`config`] | plain configuration with one set of defaults |
//! | [`proxy`] | the client's address behind a reverse proxy, taken so that the client cannot choose it |
//! | [`certs`] | TLS: dev certificates browsers accept by hash, or PEM files |
//!
//! The command line (clap, environment variables, secret files) is the
//! binary's (`src/cli.rs`; the `revoke` subcommand's request in
//! `src/revoke.rs`); the library takes plain structs.

pub mod certs;
pub use fsp2p_client as client;
pub use fsp2p_core::{auth, cluster, limits, session, turn};
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
mod regions;
pub mod relay;
pub mod server;
mod websocket;
pub use fsp2p_wire::{self as wire, webtransport};
