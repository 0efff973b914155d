#![warn(missing_docs, unreachable_pub)]
//! The Rust client: connects over raw QUIC, WebTransport or the WebSocket
//! fallback, speaks the control protocol, and sends and receives relay frames.
//!
//! Used by the `peer` command, the integration tests and the benchmarks. This
//! file is the API a program sees: [`Client`], its [`ClientConfig`], the
//! [`Event`]s it reads and the [`Error`]s it gets. Behind it, one concern each:
//! * `connect`: establishing QUIC, WebTransport or WebSocket, and the
//!   happy-eyeballs race of [`ClientTransport::Auto`];
//! * `quic` and `websocket`: after connecting, one background task per
//!   connection reads what the server sends and turns it into [`Event`]s;
//! * `inbox`: request helpers (`create_session`, `join_session`) wait for
//!   their answer there and keep other events for later;
//! * `tls`: whom the client trusts (a pinned certificate hash, or a CA);
//! * `error`: the [`Error`] enum;
//! * `resume` and `reconnect`: coming back after a cut connection (below).
//!
//! A [`Client`] exists only once the server's `Welcome` has arrived.
//!
//! # A cut connection comes back by itself
//!
//! When the connection is lost (a proxy dies, a phone changes networks
//! further than QUIC migration follows, an edge cuts a WebSocket, the
//! server says `GoingAway`, the server stops answering), the same
//! [`Client`] value reconnects, unless [`ClientConfig::auto_resume`] is off.
//! The rules are PROTOCOL.md §12's, shared with the JS and C# clients; their
//! pure forms are in [`behaviour`], and `tests/client_vectors.rs` replays
//! `docs/client-vectors.json` against them.
//!
//! * **Liveness.** Every [`ClientConfig::ping_interval`] (500 ms) the
//!   connection's reader sends a `Ping` (its `Pong` is not passed on as an
//!   event) and keeps an RTT estimate. Once a `Ping` has gone unanswered for
//!   `max(250 ms, srtt + 4·rttvar)` (1 s before the first `Pong`), it
//!   **probes**: a `Ping` every 100 ms until anything is heard, so a few lost
//!   `Ping`s or `Pong`s on a lossy path are no false alarm. When a `Ping`
//!   has gone unanswered, with nothing at all heard from the server since,
//!   for longer than `clamp(3 × (srtt + 4·rttvar), 1.5 s, 10 s)` (3 s before
//!   the first `Pong`), the server is lost: the connection is dropped (code
//!   999, the seat is kept) and resumed, at the next configured server if
//!   there are others. A crashed node is noticed in about 2 s. QUIC's own idle timeout
//!   ([`ClientConfig::idle_timeout`], 10 s) stays as a backstop.
//!
//! * It does so when the connection ends without a clean close and without a
//!   fatal code: not after [`Client::close`] or [`Client::abandon`], not after
//!   `replaced`, a protocol error or `too_many_join_attempts`. A `GoingAway`
//!   (or a close with `shutting_down`) means: come back after
//!   `reconnect_after_ms`.
//! * Attempts follow a backoff (at once, then 250 ms, 500 ms, 1 s, 2 s, 4 s,
//!   each jittered into its upper half: `floor(step × (0.5 + 0.5 × r))`),
//!   over the configured transport (`Auto` races QUIC and WebSocket again
//!   each time, and raw QUIC reuses its endpoint, so Hello goes as 0-RTT
//!   data). Each attempt is announced by [`Event::Reconnecting`] and gets
//!   `max(3 s, 2 s + 8 × srtt)`, at most [`ClientConfig::connect_timeout`].
//! * Within the server's resume grace (`Welcome.limits.resume_grace_ms`) the
//!   client offers its resume token: the server answers `Welcome { resumed:
//!   true }` with the same peer id and `SessionJoined` with the current
//!   state, and the client emits [`Event::Reconnected`] `{ resumed: true }`.
//! * If the grace has passed (the server answers `resume_failed` and a new
//!   `Welcome`, or the client's own clock says so, and then it sends no token
//!   and puts the join in the first flight), the client rejoins its session
//!   by code and password: [`Event::Reconnected`] `{ resumed: false }`, the
//!   server's `SessionJoined`, then [`Event::Rejoined`] with the new peer id.
//!   If the session is gone the server's `Error` follows instead, and the
//!   client stays connected, in no session.
//! * It gives up [`ClientConfig::reconnect_window`] after the loss, or at a
//!   final refusal, with [`Event::Closed`], the only event that means the
//!   client is over.
//!
//! Across the swap the application goes on using the same value:
//! `next_event`, `next_relay` and `wait_for` read on from the next
//! connection (a `join_session` in flight may be answered by the resume's
//! `SessionJoined`); [`Client::send`] and `signal` wait for the next
//! connection while there is none (a control message written just before
//! the loss was noticed may be lost with the connection); relay frames sent
//! in between are dropped ([`RelaySender::send`] returns `Ok`), since flight
//! data is real-time. [`Client::peer_id`] and [`Client::welcome`] follow
//! the current connection.
//!
//! # Cluster mode: redirects and fallbacks
//!
//! A node of a cluster may answer `Hello`, `CreateSession` or `JoinSession`
//! with `Redirect`, or send it unasked when it drains or the session moved
//! (PROTOCOL.md §11). The client follows it by itself (`cluster`):
//!
//! * A `Redirect` instead of the `Welcome` is followed inside
//!   [`Client::connect`] (and inside a reconnection attempt) with the same
//!   `Hello` and pipelined request, to the node's address for the configured
//!   transport (`quic` for raw QUIC and WebTransport, `{http}/ws` for
//!   WebSocket, both for `Auto`), pinning its `cert_sha256` if it has one.
//! * After the `Welcome` the application sees `Event::Control(Redirect)`,
//!   then [`Event::Reconnecting`] and [`Event::Reconnected`]: the connection
//!   is left with code 999 (the seat is kept) and the client reconnects at
//!   once to the node, with its resume token when in a session (same peer id
//!   and seat) or, in none, as a new peer sending the unanswered
//!   `CreateSession`/`JoinSession` again, whose answer ends a waiting
//!   [`Client::create_session`]/[`Client::join_session`].
//! * An unasked `Redirect(Placement)` while in a session is the session
//!   moving to a better region (protocol version 5, PROTOCOL.md §12 rule
//!   10): the application sees neither the redirect nor a reconnection. The
//!   client opens a connection to the new node and resumes its seat there
//!   while the old one goes on; relay frames go on both and come from both
//!   until the old node closes the old one (a few seconds), and a frame that
//!   came through both nodes reaches the application once. The resumed
//!   seat's `SessionJoined` comes again; [`Client::peer_id`] stays.
//! * More than [`MAX_REDIRECTS`] in a row fail with [`Error::Redirects`]
//!   (after the `Welcome`: the client gives up with [`Event::Closed`] unless
//!   it is in a session, then it goes back to its configured servers).
//! * A server that cannot be reached (a redirect's node, or the current
//!   server after a loss) makes the next attempt go to the next of the
//!   configured servers, [`ClientConfig::server`] then
//!   [`ClientConfig::fallbacks`], round robin with the backoff above.
//! * `cluster_unavailable` fails a request (not fatal); during a resume it
//!   is retried on the same node.
//!
//! # Connection quality (PROTOCOL.md §14)
//!
//! Every 500 ms the client sends each peer of its session an echo request,
//! a 13-byte *quality frame* (`FF FF FF FF`, kind, id, time) on the relay,
//! and answers theirs at once on the relay. One 4-byte compare in the
//! connection's reader tells such a frame from flight data; it is never an
//! [`Event::Relay`]. The pure rules are in [`quality`] (replayed against
//! `docs/client-vectors.json`); `telemetry` is the shell, run by each
//! connection's reader beside the liveness watch.
//! * [`Client::quality`]: per peer the path (always `relay`: this client has
//!   no WebRTC), time on it, echo RTT, loss, jitter, flight frames per second
//!   each way (frames sent with [`RelaySender::send`] and received), grade.
//! * [`Client::quality_events`]: the snapshot whenever a link's grade or path
//!   changes, on a channel of its own (not in [`Client::next_event`]).
//! * Reports: with [`ClientConfig::telemetry`] on (the default) and a server
//!   that welcomed version 3, a `Report` of every link's grade, RTT and loss
//!   buckets and the setup times (connect → `Welcome`, link → first frame)
//!   goes every 10 s while in a session, 2 s after a change at the earliest.
//!   [`Client::reports_sent`] tells what went.
//! * [`ClientConfig::quality_echo`] off sends no requests (only for programs
//!   that must count relay frames exactly).

mod cluster;
mod connect;
mod error;
mod inbox;
mod liveness;
mod moving;
pub mod quality;
mod quic;
mod reconnect;
pub mod regions;
mod resume;
mod telemetry;
mod tls;
mod websocket;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot, watch};

pub use self::cluster::MAX_REDIRECTS;

/// The client's decisions as pure functions (sans-IO: time and randomness
/// are inputs, nothing here reads a clock or touches a socket), one for
/// each rule of PROTOCOL.md §12. The connection tasks and the reconnection
/// supervisor are the shell that carries them out;
/// `tests/client_vectors.rs` replays `docs/client-vectors.json` against them.
pub mod behaviour {
    pub use super::cluster::{redirect_step, RedirectStep, Rotation, MAX_REDIRECTS};
    pub use super::connect::{
        carries_first, race_connected, race_failed, race_start, RaceAttempt, RaceKind,
    };
    pub use super::liveness::{
        LiveAction, Liveness, LIVE_TIMEOUT_INITIAL, LIVE_TIMEOUT_MAX, LIVE_TIMEOUT_MIN,
        PING_INTERVAL, PROBE_AFTER_INITIAL, PROBE_AFTER_MIN, PROBE_INTERVAL,
    };
    pub use super::moving::{
        is_move, Conn, Dedup, Move, MoveAction, MoveEvent, MovePhase, OLD_CLOSE_AFTER,
    };
    pub use super::quality::{
        next_grade, report_due, Quality, QualityEvent, QualitySnapshot, QualityTracker, ReportDue,
        ECHO_INTERVAL_MS, ECHO_INTERVAL_RELAY_MS, ECHO_TIMEOUT_MS, GRADE_EXCELLENT, GRADE_GOOD,
        GRADE_HYSTERESIS, LOSS_WINDOW, LOST_AFTER_MS, REPORT_INTERVAL_MS, REPORT_MAX_QUEUED,
        REPORT_MIN_GAP_MS,
    };
    pub use super::resume::{
        after_reconnect, answers_request, attempt_refusal_is_final, attempt_timeout, backoff,
        close_verdict, error_is_final, redirect_count_after, request_timed_out, AfterReconnect,
        Attempt, EndFacts, Plan, Verdict, SHUTTING_DOWN_DELAY,
    };
}
use self::connect::Connected;
pub use self::connect::{connect_wire, QuicEndpoint};
pub use self::error::{Cause, Error};
use self::inbox::Inbox;
pub use self::quality::{QualityEvent, QualitySnapshot};
use self::reconnect::{LinkState, Mover, RelayState, Shared, Sink, Supervisor};
use self::resume::Memory;
use self::telemetry::Hub;
use self::websocket::Outbox;
use crate::wire::{DatagramError, Ended, Wire};
/// The protocol's types a program using the client needs (messages, ids, `ALL_PEERS`).
pub use fsp2p_protocol as protocol;
use fsp2p_protocol::first;
use fsp2p_protocol::{
    ClientKind, ClientMsg, CreateSession, Hello, JoinSession, PeerId, Redirect, RegionRtt,
    RelayMode, ServerMsg, SessionInfo, Signal, Welcome, MOVE_PROTOCOL_VERSION,
    REGION_PROTOCOL_VERSION,
};
pub use fsp2p_protocol::{Transport, Via};

/// The version this client's `Hello` speaks: 5 ([`MOVE_PROTOCOL_VERSION`]).
/// Version 5 adds nothing to the messages of 4 (`region_rtts`); it is the
/// promise to follow an unasked `Redirect(Placement)` make-before-break
/// (PROTOCOL.md §11, "Moving a session"; §12 rule 10), which this client
/// keeps: it opens a connection to the new node, relays on both until the
/// old node closes the old one, and hands each frame to the application
/// once.
pub const CLIENT_PROTOCOL_VERSION: u16 = MOVE_PROTOCOL_VERSION;
use fsp2p_wire as wire;

/// The result of a client operation.
type Result<T, E = Error> = std::result::Result<T, E>;

/// Which transport to connect with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTransport {
    /// Raw QUIC with ALPN `fsp2p/1` (what native apps use).
    Quic,
    /// WebTransport over HTTP/3 (what browsers use).
    Webtransport,
    /// WebSocket on the HTTP port (the TCP fallback).
    Websocket,
    /// Raw QUIC, falling back to WebSocket when QUIC does not connect in time.
    Auto,
}

/// How the client decides to trust the server's certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Pin the SHA-256 of the server's leaf certificate (dev certificates).
    CertHash([u8; 32]),
    /// Verify against these CA certificates (PEM file).
    CaFile(PathBuf),
}

/// Another server (a node of the same cluster) to reconnect to when the
/// current one cannot be reached; see [`ClientConfig::fallbacks`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    /// Its UDP address (QUIC and WebTransport).
    pub server: SocketAddr,
    /// TLS server name.
    pub server_name: String,
    /// Its WebSocket URL (`ws://host:8080/ws`), for `Websocket` and `Auto`;
    /// `None`: it is not tried over WebSocket.
    pub ws_url: Option<String>,
    /// The SHA-256 of its certificate to pin; `None`: trust it as
    /// [`ClientConfig::trust`] says.
    pub cert_sha256: Option<[u8; 32]>,
}

impl ServerAddr {
    /// `server`, named `localhost`, trusted like the main server, no WebSocket.
    pub fn new(server: SocketAddr) -> Self {
        ServerAddr {
            server,
            server_name: "localhost".into(),
            ws_url: None,
            cert_sha256: None,
        }
    }
}

/// Where to connect, how, and who this client says it is.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server's UDP address (QUIC and WebTransport).
    pub server: SocketAddr,
    /// TLS server name (SNI, and the name checked against a CA certificate).
    pub server_name: String,
    /// Which transport to connect with.
    pub transport: ClientTransport,
    /// How to trust the server's certificate.
    pub trust: Trust,
    /// How relayed frames travel to and from this client.
    pub relay_mode: RelayMode,
    /// Display name shown to other peers.
    pub name: String,
    /// What kind of program this is (for the server's logs and metrics).
    pub kind: ClientKind,
    /// A token from an earlier `Welcome`, to get the same peer and seat back.
    pub resume_token: Option<Vec<u8>>,
    /// Keep-alive interval of QUIC and WebTransport connections (QUIC PING
    /// frames; liveness `Ping`s keep the connection busy anyway).
    pub keep_alive: Duration,
    /// Liveness (PROTOCOL.md §12 rule 2): the client sends `Ping` this often
    /// (500 ms by the rule), every 100 ms (probing) once one has gone
    /// unanswered for `max(250 ms, srtt + 4·rttvar)` (1 s before the first
    /// `Pong`), and takes the server for lost, and resumes, when
    /// one has gone unanswered, with nothing at all heard since, for longer
    /// than `clamp(3 × (srtt + 4·rttvar), 1.5 s, 10 s)` (3 s before the first
    /// `Pong`). A crashed node is noticed in about 2 s. Zero turns it off
    /// (then only [`idle_timeout`](Self::idle_timeout) notices).
    pub ping_interval: Duration,
    /// QUIC's idle timeout, a backstop behind liveness: a QUIC or
    /// WebTransport connection that hears nothing for this long is lost
    /// (and auto-resume starts). Keep it above liveness's 10 s ceiling.
    pub idle_timeout: Duration,
    /// How long [`Client::connect`] may take, until the `Welcome`; it also
    /// caps one reconnection attempt, which gets `max(3 s, 2 s + 8 × srtt)`.
    pub connect_timeout: Duration,
    /// How long [`Client::create_session`] and [`Client::join_session`] wait
    /// for their answer before failing with [`Error::RequestTimeout`].
    pub request_timeout: Duration,
    /// WebSocket URL of the fallback transport, e.g. `ws://127.0.0.1:8080/ws` or
    /// `wss://example.com/ws`. Needed for `Websocket` and `Auto`.
    pub ws_url: Option<String>,
    /// With `Auto`: how long QUIC gets alone before a WebSocket attempt starts.
    pub fallback_delay: Duration,
    /// Reuse this endpoint (and its TLS session cache) for raw QUIC: a second
    /// connection through it resumes TLS and sends Hello as 0-RTT data.
    pub endpoint: Option<QuicEndpoint>,
    /// Reconnect by itself after a lost connection (see the module docs).
    /// Off: the first end of the connection is final, as tests of the close
    /// itself want.
    pub auto_resume: bool,
    /// How long after a loss to keep trying to come back before giving up
    /// with [`Event::Closed`]. Past the server's resume grace the client
    /// rejoins its session by code.
    pub reconnect_window: Duration,
    /// (cluster mode) Other nodes to reconnect to when the current server
    /// cannot be reached: after the main server, round robin, with the
    /// reconnection backoff. Any node of a cluster redirects the client to
    /// the node of its session, so a client comes back after its node died.
    pub fallbacks: Vec<ServerAddr>,
    /// The access token for a server that requires one (`serve --auth`),
    /// from the game's backend. Asked for on every connection attempt
    /// (connect, reconnect, redirect), so a provider can hand out a fresh one.
    pub token: Option<AccessToken>,
    /// Send `Report`s on connection quality to the server (PROTOCOL.md §14;
    /// only to a server that welcomed version 3 or later). Reports carry
    /// grades and RTT and loss buckets per link and setup times; no
    /// addresses, names or tokens. Off: the client still measures its links
    /// ([`Client::quality`]) and answers its peers' echoes, and tells the
    /// server nothing. Default on.
    pub telemetry: bool,
    /// Measure the links to my session's peers: an echo request to each, on
    /// the relay, every 500 ms (PROTOCOL.md §14). Off: no requests go (the
    /// peers' are still answered) and every link stays `unknown`; only for
    /// programs that must count relay frames exactly (some tests). Default on.
    pub quality_echo: bool,
    /// Measure the round trip to each region of a cluster after connecting
    /// (to a server of protocol version 4 or later) and send it with
    /// `CreateSession` and `JoinSession`, so the cluster places the session
    /// where it serves the players best ([`regions`], PROTOCOL.md §11
    /// "Regions"). Needs the node list's URL ([`nodes_url`](Self::nodes_url)).
    pub measure_regions: bool,
    /// The node list (`http://host:8080/nodes`) to measure regions from;
    /// `None`: the WebSocket URL's host with the path `/nodes`, and no
    /// measurement without a WebSocket URL either.
    pub nodes_url: Option<String>,
}

/// Where the client's access token comes from.
#[derive(Clone)]
pub enum AccessToken {
    /// The same token every time.
    Fixed(String),
    /// Asked on every connection attempt: return the current token (keep it
    /// cached, and refresh it before it expires; this is called on the
    /// connecting task and must not block).
    Provider(std::sync::Arc<dyn Fn() -> String + Send + Sync>),
}

impl AccessToken {
    /// The token to send now.
    pub fn get(&self) -> String {
        match self {
            AccessToken::Fixed(t) => t.clone(),
            AccessToken::Provider(f) => f(),
        }
    }
}

impl std::fmt::Debug for AccessToken {
    // A token is a credential: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessToken::Fixed(_) => f.write_str("AccessToken::Fixed(..)"),
            AccessToken::Provider(_) => f.write_str("AccessToken::Provider(..)"),
        }
    }
}

impl ClientConfig {
    /// Raw QUIC to `server` (named `localhost`), datagram relay, and the
    /// default timeouts.
    pub fn new(server: SocketAddr, trust: Trust) -> Self {
        ClientConfig {
            server,
            server_name: "localhost".into(),
            transport: ClientTransport::Quic,
            trust,
            relay_mode: RelayMode::Datagram,
            name: String::new(),
            kind: ClientKind::Rust,
            resume_token: None,
            keep_alive: Duration::from_secs(2),
            ping_interval: liveness::PING_INTERVAL,
            idle_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            ws_url: None,
            fallback_delay: Duration::from_millis(1_000),
            endpoint: None,
            auto_resume: true,
            reconnect_window: Duration::from_secs(60),
            fallbacks: Vec::new(),
            token: None,
            telemetry: true,
            quality_echo: true,
            measure_regions: true,
            nodes_url: None,
        }
    }
}

/// Something the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A control message.
    Control(ServerMsg),
    /// A relay frame from another peer.
    Relay {
        /// The peer that sent it.
        from: PeerId,
        /// The flight data, as the sender sent it.
        payload: Bytes,
        /// How it reached this client.
        via: Via,
    },
    /// The connection was lost and the client tries to come back: attempt
    /// number `attempt` (from 1) starts after `after`.
    Reconnecting {
        /// 1 for the first attempt after this loss.
        attempt: u32,
        /// How long until the attempt starts.
        after: Duration,
    },
    /// The client is connected again. `resumed`: with the same peer id and
    /// seat (the server's `SessionJoined` follows); otherwise with a new
    /// peer id, and [`Event::Rejoined`] follows if it got back into its session.
    Reconnected {
        /// The resume token was accepted.
        resumed: bool,
    },
    /// The resume grace had passed: the client rejoined its session by code,
    /// as a new peer.
    Rejoined {
        /// The new peer id.
        peer_id: PeerId,
    },
    /// The connection ended and the client gave up (or was closed, or does
    /// not resume); no event follows.
    Closed(Ended),
}

/// The connection a client ended up with.
enum Link {
    /// Raw QUIC or WebTransport, with the control stream's sending half.
    Quic {
        wire: Wire,
        control: quic::Control,
        /// The raw QUIC endpoint, kept alive with the connection.
        endpoint: Option<quinn::Endpoint>,
    },
    /// The queue to the WebSocket writer task.
    WebSocket(Outbox),
}

impl Link {
    /// Send one control message.
    async fn send(&mut self, msg: &ClientMsg) -> Result<()> {
        match self {
            Link::Quic { wire, control, .. } => quic::send_control(wire, control, msg).await,
            Link::WebSocket(out) => out.control(msg).await,
        }
    }

    /// Write raw bytes on the control stream, or as one binary WebSocket message.
    async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        match self {
            Link::Quic { wire, control, .. } => control
                .lock()
                .await
                .write_all(bytes)
                .await
                .map_err(|e| quic::write_failed(wire, "writing raw bytes", e)),
            Link::WebSocket(out) => out.binary(bytes.to_vec()).await,
        }
    }

    /// What relay frames go on.
    fn relay_link(&self) -> RelayLink {
        match self {
            Link::Quic { wire, .. } => RelayLink::Quic(wire.clone()),
            Link::WebSocket(out) => RelayLink::WebSocket(out.clone()),
        }
    }
}

/// A connection, up to its Welcome: what [`Client::connect`] and every
/// reconnection attempt make.
struct Opened {
    link: Link,
    tasks: Tasks,
    /// Events read so far (the Welcome taken out) and the channel.
    inbox: Inbox,
    /// How the connection ends, reported by its reader.
    end: oneshot::Receiver<Ended>,
    welcome: Welcome,
    zero_rtt: bool,
}

/// Hello (with `token`), then `first` if any.
fn hello_messages(
    cfg: &ClientConfig,
    token: Option<Vec<u8>>,
    first: Option<ClientMsg>,
) -> Vec<ClientMsg> {
    let hello = ClientMsg::Hello(Hello {
        version: CLIENT_PROTOCOL_VERSION,
        client: cfg.kind,
        relay_mode: cfg.relay_mode,
        name: cfg.name.clone(),
        resume_token: token,
        access_token: cfg.token.as_ref().map(AccessToken::get),
    });
    std::iter::once(hello).chain(first).collect()
}

/// Connect, send `hello` (Hello and perhaps a first request) and wait for
/// the Welcome, following any `Redirect` that answers instead (at most
/// [`MAX_REDIRECTS`] in a row) with the same messages. Returns the
/// connection and, if redirected, the node it is on.
async fn open(
    cfg: &ClientConfig,
    hello: &[ClientMsg],
    memory: Arc<Mutex<Memory>>,
    quality: &Arc<Hub>,
    mover: &Arc<Mover>,
) -> Result<(Opened, Option<ServerAddr>)> {
    quality.attempt_started();
    let mut at: Option<ServerAddr> = None;
    loop {
        let here = match &at {
            Some(a) => cluster::config_for(cfg, a),
            None => cfg.clone(),
        };
        let redirect = match open_once(&here, hello, memory.clone(), quality, mover).await? {
            Ok(opened) => return Ok((opened, at)),
            Err(r) => r,
        };
        let count = memory
            .lock()
            .map(|mut m| {
                m.redirect = None;
                m.redirects
            })
            .unwrap_or(0);
        cluster::check_redirects(count, &redirect.node)?;
        tracing::info!(
            node = %redirect.node.name,
            reason = redirect.reason.as_str(),
            "redirected before the Welcome"
        );
        at = Some(cluster::node_addr(cfg, &redirect.node).await?.0);
    }
}

/// One connection up to its Welcome, or the `Redirect` that came instead.
async fn open_once(
    cfg: &ClientConfig,
    hello: &[ClientMsg],
    memory: Arc<Mutex<Memory>>,
    quality: &Arc<Hub>,
    mover: &Arc<Mover>,
) -> Result<std::result::Result<Opened, Redirect>> {
    let connected = connect::connect(cfg, hello).await?;
    let (sink, events, mut end) =
        Sink::new(memory, cfg.ping_interval, quality.clone(), mover.clone());
    let (link, tasks, zero_rtt) = match connected {
        Connected::Quic {
            wire,
            endpoint,
            zero_rtt,
            server_opens,
        } => {
            let started = if server_opens {
                quic::accept(&wire, sink).await?
            } else {
                quic::start(&wire, zero_rtt, hello, sink).await?
            };
            let link = Link::Quic {
                wire,
                control: started.control,
                endpoint,
            };
            (link, started.tasks, started.zero_rtt)
        }
        Connected::WebSocket { ws, sent } => {
            let unsent = if sent { &[][..] } else { hello };
            let (out, tasks) = websocket::start(ws, unsent, sink).await?;
            (Link::WebSocket(out), tasks, false)
        }
    };
    // `tasks` stops the connection's tasks if the Welcome never comes.
    let mut inbox = Inbox::new(events);
    let welcome = inbox
        .wait_for(|m| match m {
            ServerMsg::Welcome(w) => Some(Ok(w.clone())),
            ServerMsg::Redirect(r) => Some(Err(r.clone())),
            _ => None,
        })
        .await;
    let welcome = match welcome {
        // The channel ended: say how the connection did.
        Err(Error::Closed(lost)) => match end.try_recv() {
            Ok(ended) => return Err(Error::Closed(ended)),
            Err(_) => return Err(Error::Closed(lost)),
        },
        Ok(Err(redirect)) => {
            // The reader closed the connection; `tasks` stop with it.
            if let Link::Quic { wire, .. } = &link {
                wire.close(0, "redirected");
            }
            return Ok(Err(redirect));
        }
        Ok(Ok(w)) => w,
        Err(e) => return Err(e),
    };
    Ok(Ok(Opened {
        link,
        tasks,
        inbox,
        end,
        welcome,
        zero_rtt,
    }))
}

/// A connection's background tasks; dropping this stops them.
struct Tasks {
    /// Reads what the server sends into the client's events.
    reader: tokio::task::JoinHandle<()>,
    /// Anything else (the WebSocket writer).
    others: Vec<tokio::task::AbortHandle>,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.reader.abort();
        self.others.iter().for_each(|t| t.abort());
    }
}

/// A task stopped when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A connected client. It reconnects by itself after a lost connection;
/// see the module docs.
pub struct Client {
    /// The control link of the connection this client last saw.
    link: Link,
    /// Its generation ([`LinkState::generation`]).
    generation: u64,
    inbox: Inbox,
    relay_mode: RelayMode,
    /// The server's `Welcome`: peer id, resume token, ICE servers, limits.
    /// After a reconnection, the new connection's (updated when the client
    /// next reads an event or sends).
    pub welcome: Welcome,
    shared: Arc<Shared>,
    state: watch::Receiver<LinkState>,
    auto_resume: bool,
    /// [`ClientConfig::request_timeout`].
    request_timeout: Duration,
    /// Watches the connection and reconnects; owns the connection's tasks.
    supervisor: AbortOnDrop,
    /// True when Hello went out as 0-RTT data and the server accepted it.
    pub zero_rtt: bool,
    /// Where region measurements come from (version-4 servers).
    regions: ClientConfig,
}

impl Client {
    /// Connect, say hello, and (pipelined, in the same flight) send `first`
    /// if given. Returns once the Welcome has arrived, within
    /// [`ClientConfig::connect_timeout`].
    pub async fn connect(cfg: &ClientConfig, first: Option<ClientMsg>) -> Result<Client> {
        tokio::time::timeout(cfg.connect_timeout, Self::connect_inner(cfg, first))
            .await
            .map_err(|_| Error::Timeout {
                server: cfg.server,
                after: cfg.connect_timeout,
            })?
    }

    async fn connect_inner(cfg: &ClientConfig, first: Option<ClientMsg>) -> Result<Client> {
        let asked_password = match &first {
            Some(ClientMsg::CreateSession(c)) => c.password.clone(),
            Some(ClientMsg::JoinSession(j)) => j.password.clone(),
            _ => None,
        };
        let pending = first
            .clone()
            .filter(|m| matches!(m, ClientMsg::CreateSession(_) | ClientMsg::JoinSession(_)));
        let memory = Arc::new(Mutex::new(Memory {
            asked_password,
            pending,
            ..Memory::default()
        }));
        let hello = hello_messages(cfg, cfg.resume_token.clone(), first);
        // The relay slot exists before the first connection, so that the
        // quality hub can answer echoes from the first frame on.
        let relay = Arc::new(RwLock::new(RelayState::Down));
        let quality = Arc::new(Hub::new(
            cfg.telemetry,
            cfg.quality_echo,
            RelaySender {
                link: RelaySlot::Shared(relay.clone()),
                mode: cfg.relay_mode,
                resumable: true,
                quality: None,
            },
        ));
        let (mover, moves) = Mover::new();
        let (opened, at) = open(cfg, &hello, memory.clone(), &quality, &mover).await?;
        let mut rotation = cluster::Rotation::new(cfg);
        if let Some(at) = at {
            rotation.redirected(at);
        }
        let shared = Arc::new(Shared::new(
            relay,
            opened.link.relay_link(),
            memory,
            &opened.welcome,
            quality,
        ));
        let (plane, plane_rx) = mpsc::unbounded_channel();
        let (side, side_rx) = mpsc::unbounded_channel();
        let mut inbox = opened.inbox;
        inbox.follow(plane_rx, side_rx);
        let supervisor = Supervisor {
            side,
            mover,
            moves,
            cfg: reconnect::reconnect_config(cfg, &opened.link),
            shared: shared.clone(),
            plane,
            tasks: Some(opened.tasks),
            end: opened.end,
            welcome: opened.welcome.clone(),
            rotation,
        };
        let supervisor = AbortOnDrop(tokio::spawn(supervisor.run()));
        if opened.welcome.version >= REGION_PROTOCOL_VERSION {
            // Off the critical path: the measurement runs in the background.
            regions::current(cfg);
        }
        Ok(Client {
            link: opened.link,
            generation: 0,
            inbox,
            relay_mode: cfg.relay_mode,
            welcome: opened.welcome,
            state: shared.state.subscribe(),
            shared,
            auto_resume: cfg.auto_resume,
            request_timeout: cfg.request_timeout,
            supervisor,
            zero_rtt: opened.zero_rtt,
            regions: cfg.clone(),
        })
    }

    /// Take the connection the supervisor handed over, if there is a newer one.
    fn refresh(&mut self) {
        if self.state.borrow().generation == self.generation {
            return;
        }
        let next = self.shared.swap.lock().ok().and_then(|mut s| s.take());
        if let Some((generation, link, welcome)) = next {
            self.generation = generation;
            self.link = link;
            self.welcome = welcome;
        }
    }

    /// After a write failed with `e`: wait for the next connection (true),
    /// or give `e` (or how the client ended) back.
    async fn wait_for_link(&mut self, e: Error) -> Result<()> {
        // (A broken control stream ends the connection's reader too, so
        // the supervisor hears of it.)
        let lost = matches!(
            e,
            Error::Closed(_) | Error::Io { .. } | Error::Datagram(DatagramError::Lost)
        );
        if !self.auto_resume || !lost {
            return Err(e);
        }
        let generation = self.generation;
        let state = self
            .state
            .wait_for(|s| s.generation != generation || s.gone.is_some())
            .await
            .map(|s| s.gone.clone());
        match state {
            Ok(None) => Ok(()),
            Ok(Some(ended)) => Err(Error::Closed(ended)),
            Err(_) => Err(e),
        }
    }

    /// The transport this client ended up on.
    /// (The connection it last saw, after a reconnection possibly another.)
    pub fn transport(&self) -> Transport {
        match &self.link {
            Link::Quic { wire, .. } => wire.kind(),
            Link::WebSocket(_) => Transport::WebSocket,
        }
    }

    /// This client's peer id, from the current connection's Welcome.
    pub fn peer_id(&self) -> PeerId {
        self.shared.peer_id.load(Ordering::SeqCst)
    }

    /// Send one control message. While the client reconnects, this waits
    /// for the next connection (or fails when the client gives up).
    pub async fn send(&mut self, msg: &ClientMsg) -> Result<()> {
        if let ClientMsg::CreateSession(CreateSession { password, .. })
        | ClientMsg::JoinSession(JoinSession { password, .. }) = msg
        {
            if let Ok(mut m) = self.shared.memory.lock() {
                m.asked_password = password.clone();
                m.pending = Some(msg.clone());
            }
        }
        loop {
            self.refresh();
            match self.link.send(msg).await {
                Err(e) => self.wait_for_link(e).await?,
                ok => return ok,
            }
        }
    }

    /// Write raw bytes on the control stream, or send them as one binary
    /// WebSocket message (tests of bad input).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        loop {
            self.refresh();
            match self.link.send_raw(bytes).await {
                Err(e) => self.wait_for_link(e).await?,
                ok => return ok,
            }
        }
    }

    /// Create a session with `max_peers` seats (0: the server's maximum)
    /// and become its host.
    pub async fn create_session(
        &mut self,
        max_peers: u32,
        password: Option<&str>,
    ) -> Result<SessionInfo> {
        self.send(&ClientMsg::CreateSession(CreateSession {
            max_peers,
            password: password.map(str::to_string),
            region_rtts: self.region_rtts(),
        }))
        .await?;
        self.answer("CreateSession", |m| match m {
            ServerMsg::SessionCreated(i) => Some(i.clone()),
            _ => None,
        })
        .await
    }

    /// Wait for the answer to a request just sent, within
    /// [`ClientConfig::request_timeout`] (PROTOCOL.md §12 rule 6).
    async fn answer<T>(
        &mut self,
        request: &'static str,
        pick: impl Fn(&ServerMsg) -> Option<T>,
    ) -> Result<T> {
        let after = self.request_timeout;
        tokio::time::timeout(after, self.wait_for(pick))
            .await
            .unwrap_or(Err(Error::RequestTimeout { request, after }))
    }

    /// The round trips to the cluster's regions measured so far, as the next
    /// `CreateSession`/`JoinSession` carries them: empty until a measurement
    /// ended (the client never waits for one), or on a server older than
    /// version 4.
    pub fn region_rtts(&self) -> Vec<RegionRtt> {
        if self.welcome.version < REGION_PROTOCOL_VERSION {
            return Vec::new();
        }
        regions::current(&self.regions)
    }

    /// Wait up to `limit` for the region measurement (starting one if none
    /// is fresh), for an application that prefers to create its session
    /// where it is placed best over creating it at once.
    pub async fn measured_regions(&self, limit: Duration) -> Vec<RegionRtt> {
        if self.welcome.version < REGION_PROTOCOL_VERSION {
            return Vec::new();
        }
        regions::wait(&self.regions, limit).await
    }

    /// Join the session with join code `code`.
    pub async fn join_session(
        &mut self,
        code: &str,
        password: Option<&str>,
    ) -> Result<SessionInfo> {
        self.send(&ClientMsg::JoinSession(JoinSession {
            code: code.to_string(),
            password: password.map(str::to_string),
            region_rtts: self.region_rtts(),
        }))
        .await?;
        self.answer("JoinSession", |m| match m {
            ServerMsg::SessionJoined(i) => Some(i.clone()),
            _ => None,
        })
        .await
    }

    /// Send a WebRTC signal to peer `to` of my session (0: every other peer).
    pub async fn signal(&mut self, to: PeerId, signal: Signal) -> Result<()> {
        self.send(&ClientMsg::Signal { to, signal }).await
    }

    /// Round-trip time measured with Ping/Pong on the control stream.
    pub async fn ping(&mut self) -> Result<Duration> {
        let start = std::time::Instant::now();
        let t = start.elapsed().as_nanos() as u64 ^ 0x5EED;
        self.send(&ClientMsg::Ping { client_time_ms: t }).await?;
        self.wait_for(|m| match m {
            ServerMsg::Pong { client_time_ms, .. } if *client_time_ms == t => Some(()),
            _ => None,
        })
        .await?;
        Ok(start.elapsed())
    }

    /// Send flight data to `to` (0 = everyone else in my session); see [`RelaySender::send`].
    pub async fn send_relay(&self, to: PeerId, payload: &[u8]) -> Result<()> {
        self.relay_sender().send(to, payload).await
    }

    /// A cheap, cloneable handle that sends relay frames on this connection,
    /// so a game loop can send flight data while another task reads events.
    /// It follows the client from connection to connection.
    pub fn relay_sender(&self) -> RelaySender {
        RelaySender {
            link: RelaySlot::Shared(self.shared.relay.clone()),
            mode: self.relay_mode,
            resumable: self.auto_resume,
            quality: Some(self.shared.quality.clone()),
        }
    }

    /// How well this client reaches each peer of its session, now (PROTOCOL.md
    /// §14): path (the Rust client has only the relay), time on it, echo RTT,
    /// loss, jitter, flight frames per second each way, grade. Peer echoes run
    /// by themselves every 500 ms on the relay; their frames never reach
    /// [`next_event`](Self::next_event) or [`next_relay`](Self::next_relay).
    pub fn quality(&self) -> Vec<QualitySnapshot> {
        self.shared.quality.snapshots()
    }

    /// The quality events from now on: the snapshot of a link whose grade or
    /// path changed (the `quality` event of the JS client,
    /// `PeerQualityChanged` of the C# one). A channel apart from
    /// [`next_event`](Self::next_event), so programs that do not care never
    /// see them; a receiver that falls 256 events behind gets `Lagged`.
    pub fn quality_events(&self) -> tokio::sync::broadcast::Receiver<QualityEvent> {
        self.shared.quality.subscribe()
    }

    /// How many connection-quality `Report`s this client has written to its
    /// servers, and the last one as sent (see [`ClientConfig::telemetry`]).
    pub fn reports_sent(&self) -> (u64, Option<protocol::report::Report>) {
        self.shared.quality.reports()
    }

    /// Send a raw datagram (tests of bad input).
    pub fn send_raw_datagram(&self, bytes: Bytes) -> Result<()> {
        match &self.link {
            Link::Quic { wire, .. } => Ok(wire.send_datagram(bytes)?),
            Link::WebSocket(_) => Err(Error::Unsupported("no datagrams on WebSocket")),
        }
    }

    /// The next event, stashed ones first; `None` once the client has given
    /// up (after [`Event::Closed`]).
    pub async fn next_event(&mut self) -> Option<Event> {
        let e = self.inbox.next().await;
        self.refresh();
        e
    }

    /// The next event within `limit`, or `None`.
    pub async fn next_event_within(&mut self, limit: Duration) -> Option<Event> {
        tokio::time::timeout(limit, self.next_event())
            .await
            .ok()
            .flatten()
    }

    /// The next relayed frame within `limit` (other events are stashed).
    pub async fn next_relay(&mut self, limit: Duration) -> Option<(PeerId, Bytes, Via)> {
        let r = self.inbox.next_relay(limit).await;
        self.refresh();
        r
    }

    /// Wait for a control message `pick` accepts; an `Error` from the server
    /// ([`Error::Server`]) or the end of the connection ([`Error::Closed`])
    /// fails the wait. Other events are kept for `next_event`. A
    /// reconnection does not end the wait.
    pub async fn wait_for<T>(&mut self, pick: impl Fn(&ServerMsg) -> Option<T>) -> Result<T> {
        let r = self.inbox.wait_for(pick).await;
        self.refresh();
        r
    }

    /// Move a raw QUIC connection to a new local UDP socket, as a phone does
    /// when it switches from Wi-Fi to mobile data. QUIC migration keeps the
    /// connection (and so the session) alive.
    pub fn rebind(&self) -> Result<()> {
        let Link::Quic {
            endpoint: Some(ep), ..
        } = &self.link
        else {
            return Err(Error::Unsupported("rebind needs a raw QUIC connection"));
        };
        let io = |what| move |error| Error::Io { what, error };
        let mut any = ep.local_addr().map_err(io("reading the local address"))?;
        any.set_port(0);
        let socket = std::net::UdpSocket::bind(any).map_err(io("binding a new UDP socket"))?;
        ep.rebind(socket).map_err(io("rebinding the endpoint"))
    }

    /// Give up the event stream and take the raw connection, to read relay
    /// datagrams with no task hop in between (benchmarks). Control messages
    /// are no longer read, and the client no longer reconnects. `None` for
    /// WebSocket.
    pub fn into_raw(mut self) -> Option<RawQuic> {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.refresh();
        self.supervisor.0.abort();
        let relay = RelaySender {
            link: RelaySlot::Fixed(self.link.relay_link()),
            mode: self.relay_mode,
            resumable: false,
            quality: None,
        };
        match self.link {
            Link::Quic { wire, endpoint, .. } => Some(RawQuic {
                wire,
                relay,
                _endpoint: endpoint,
            }),
            Link::WebSocket(_) => None,
        }
    }

    /// Close the connection cleanly (QUIC code 0, WebSocket 1000): leave for good.
    pub async fn close(mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.refresh();
        match &self.link {
            Link::Quic { wire, endpoint, .. } => {
                wire.close(0, "bye");
                if let Some(ep) = endpoint {
                    let _ = tokio::time::timeout(Duration::from_millis(500), ep.wait_idle()).await;
                }
            }
            Link::WebSocket(out) => {
                if out.close().await {
                    // Wait for the server's close (the client ends) briefly.
                    let inbox = &mut self.inbox;
                    let _ = tokio::time::timeout(Duration::from_millis(500), async {
                        while let Some(e) = inbox.next().await {
                            if matches!(e, Event::Closed(_)) {
                                break;
                            }
                        }
                    })
                    .await;
                }
            }
        }
    }

    /// Drop the connection without a clean close (as a crash or network loss would):
    /// the server keeps this peer's seat for the resume grace period. This
    /// client does not come back.
    pub fn abandon(mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.refresh();
        if let Link::Quic { wire, .. } = &self.link {
            wire.close(99, "abandoned");
        }
        // Dropping the supervisor drops the tasks; aborting the WebSocket
        // ones makes the TCP connection just go away.
    }
}

/// A connection taken out of a [`Client`] by [`Client::into_raw`].
pub struct RawQuic {
    /// The connection; read relay datagrams from it directly.
    pub wire: Wire,
    /// Sends relay frames on it.
    pub relay: RelaySender,
    _endpoint: Option<quinn::Endpoint>,
}

/// Sends relay frames on a client's connection; see [`Client::relay_sender`].
#[derive(Clone)]
pub struct RelaySender {
    link: RelaySlot,
    mode: RelayMode,
    /// Frames lost with a connection are dropped silently: the client comes back.
    resumable: bool,
    /// Counts flight frames per peer (frames/s); none on a raw connection.
    quality: Option<Arc<Hub>>,
}

/// Where a relay sender finds its connection.
#[derive(Clone)]
enum RelaySlot {
    /// The client's current one.
    Shared(Arc<RwLock<RelayState>>),
    /// Always this one (a raw connection).
    Fixed(RelayLink),
}

#[derive(Clone)]
enum RelayLink {
    Quic(Wire),
    WebSocket(Outbox),
}

impl RelayLink {
    /// Close the old connection of a move (999, WebSocket 4999: nothing of
    /// the seat is on that node any more, and nobody is told).
    fn close_moved(&self) {
        match self {
            RelayLink::Quic(wire) => wire.close(999, "moved"),
            RelayLink::WebSocket(out) => out.close_with(4999, "moved"),
        }
    }
}

impl RelaySender {
    /// Send flight data to `to` (0 = everyone else in my session) the way the
    /// client's relay mode says: a datagram, or one unidirectional stream. On
    /// WebSocket the frame is one binary message, dropped if the writer's
    /// queue is full (stale flight data is not worth waiting for).
    ///
    /// While the client reconnects, frames are dropped and this returns `Ok`;
    /// once it has given up, [`Error::Closed`].
    ///
    /// Each frame counts in the link's frames/s ([`Client::quality`]). A
    /// payload starting `FF FF FF FF` is not flight data but a quality frame
    /// (PROTOCOL.md §14): flight data's sequence number skips `0xFFFFFFFF`
    /// ([`protocol::report::next_flight_seq`]).
    pub async fn send(&self, to: PeerId, payload: &[u8]) -> Result<()> {
        if let Some(q) = &self.quality {
            q.flight_out(to);
        }
        self.send_frame(to, payload).await
    }

    /// Send a quality frame without waiting: at once on a datagram or a
    /// WebSocket, on a task of its own on a stream; dropped while down.
    fn send_nowait(&self, to: PeerId, payload: &[u8]) {
        let frame = protocol::relay_frame(to, payload);
        let link = match &self.link {
            RelaySlot::Fixed(link) => link.clone(),
            RelaySlot::Shared(slot) => match &*slot.read().unwrap_or_else(|p| p.into_inner()) {
                RelayState::Up(link) => link.clone(),
                RelayState::Both(old, new) => {
                    self.send_old(old, frame.clone());
                    new.clone()
                }
                _ => return,
            },
        };
        if let Err(frame) = self.send_now(&link, frame) {
            let sender = self.clone();
            tokio::spawn(async move {
                let _ = sender.send_stream(&link, frame).await;
            });
        }
    }

    async fn send_frame(&self, to: PeerId, payload: &[u8]) -> Result<()> {
        let frame = protocol::relay_frame(to, payload);
        // Datagrams and WebSocket frames go out at once, under the slot's
        // read lock (no clone on the hot path); a stream needs an await.
        let link = match &self.link {
            RelaySlot::Fixed(link) => match self.send_now(link, frame) {
                Ok(r) => return r,
                Err(frame) => return self.send_stream(link, frame).await,
            },
            RelaySlot::Shared(slot) => {
                let state = slot.read().unwrap_or_else(|p| p.into_inner());
                match &*state {
                    RelayState::Up(link) => match self.send_now(link, frame) {
                        Ok(r) => return self.lost_is_dropped(r),
                        Err(frame) => (link.clone(), frame),
                    },
                    // A move's overlap: the old connection too (rule 10).
                    RelayState::Both(old, new) => {
                        self.send_old(old, frame.clone());
                        match self.send_now(new, frame) {
                            Ok(r) => return self.lost_is_dropped(r),
                            Err(frame) => (new.clone(), frame),
                        }
                    }
                    RelayState::Down => return Ok(()),
                    RelayState::Gone(ended) => return Err(Error::Closed(ended.clone())),
                }
            }
        };
        let r = self.send_stream(&link.0, link.1).await;
        self.lost_is_dropped(r)
    }

    /// Send `frame` on the old connection of a move, best effort: it is
    /// about to close, and the new one carries the same frame.
    fn send_old(&self, old: &RelayLink, frame: Bytes) {
        if let Err(frame) = self.send_now(old, frame) {
            let (sender, old) = (self.clone(), old.clone());
            tokio::spawn(async move {
                let _ = sender.send_stream(&old, frame).await;
            });
        }
    }

    /// While the client may come back, a frame lost with the connection is
    /// just dropped.
    fn lost_is_dropped(&self, r: Result<()>) -> Result<()> {
        match r {
            Err(Error::Closed(_) | Error::Datagram(DatagramError::Lost)) if self.resumable => {
                Ok(())
            }
            r => r,
        }
    }

    /// Send `frame` if that needs no waiting; else give it back.
    fn send_now(&self, link: &RelayLink, frame: Bytes) -> Result<Result<()>, Bytes> {
        match (link, self.mode) {
            (RelayLink::Quic(wire), RelayMode::Datagram) => {
                Ok(wire.send_datagram(frame).map_err(Error::from))
            }
            (RelayLink::WebSocket(out), _) => Ok(out.relay(&frame)),
            (RelayLink::Quic(_), RelayMode::Stream) => Err(frame),
        }
    }

    /// Send `frame` on a unidirectional stream of its own.
    async fn send_stream(&self, link: &RelayLink, frame: Bytes) -> Result<()> {
        let RelayLink::Quic(wire) = link else {
            return Err(Error::Unsupported("relay streams need QUIC"));
        };
        let mut s = wire.open_uni().await?;
        let failed = |what| move |e| quic::write_failed(wire, what, e);
        s.write_all(&frame)
            .await
            .map_err(failed("writing a relay stream"))?;
        s.shutdown()
            .await
            .map_err(failed("finishing a relay stream"))
    }

    /// UDP bytes this QUIC connection has sent so far (all packets, headers
    /// and encryption included); `None` for WebTransport and WebSocket.
    pub fn udp_tx_bytes(&self) -> Option<u64> {
        let link = match &self.link {
            RelaySlot::Fixed(link) => link.clone(),
            RelaySlot::Shared(slot) => match &*slot.read().unwrap_or_else(|p| p.into_inner()) {
                RelayState::Up(link) | RelayState::Both(_, link) => link.clone(),
                _ => return None,
            },
        };
        match link {
            RelayLink::Quic(Wire::Quic(c)) => Some(c.stats().udp_tx.bytes),
            _ => None,
        }
    }
}
