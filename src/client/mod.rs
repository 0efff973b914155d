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
//! * `error`: the [`Error`] enum.
//!
//! A [`Client`] exists only once the server's `Welcome` has arrived.

mod connect;
mod error;
mod inbox;
mod quic;
mod tls;
mod websocket;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use self::connect::Connected;
pub use self::connect::{connect_wire, QuicEndpoint};
pub use self::error::{Cause, Error};
use self::inbox::Inbox;
use self::websocket::Outbox;
use crate::protocol::{
    self, ClientKind, ClientMsg, CreateSession, Hello, JoinSession, PeerId, RelayMode, ServerMsg,
    SessionInfo, Signal, Welcome, PROTOCOL_VERSION,
};
use crate::relay::Via;
use crate::wire::{Ended, Wire, Writer};

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
    /// Keep-alive interval of QUIC and WebTransport connections.
    pub keep_alive: Duration,
    /// How long [`Client::connect`] may take, until the `Welcome`.
    pub connect_timeout: Duration,
    /// WebSocket URL of the fallback transport, e.g. `ws://127.0.0.1:8080/ws` or
    /// `wss://example.com/ws`. Needed for `Websocket` and `Auto`.
    pub ws_url: Option<String>,
    /// With `Auto`: how long QUIC gets alone before a WebSocket attempt starts.
    pub fallback_delay: Duration,
    /// Reuse this endpoint (and its TLS session cache) for raw QUIC: a second
    /// connection through it resumes TLS and sends Hello as 0-RTT data.
    pub endpoint: Option<QuicEndpoint>,
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
            keep_alive: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            ws_url: None,
            fallback_delay: Duration::from_millis(750),
            endpoint: None,
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
    /// The connection ended; no event follows.
    Closed(Ended),
}

/// The connection a client ended up with.
enum Link {
    /// Raw QUIC or WebTransport, with the control stream's sending half.
    Quic { wire: Wire, control: Writer },
    /// The queue to the WebSocket writer task.
    WebSocket(Outbox),
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

/// A connected client.
pub struct Client {
    link: Link,
    inbox: Inbox,
    relay_mode: RelayMode,
    /// The server's `Welcome`: peer id, resume token, ICE servers, limits.
    pub welcome: Welcome,
    endpoint: Option<quinn::Endpoint>,
    tasks: Tasks,
    /// True when Hello went out as 0-RTT data and the server accepted it.
    pub zero_rtt: bool,
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
        let hello = ClientMsg::Hello(Hello {
            version: PROTOCOL_VERSION,
            client: cfg.kind,
            relay_mode: cfg.relay_mode,
            name: cfg.name.clone(),
            resume_token: cfg.resume_token.clone(),
        });
        let hello: Vec<ClientMsg> = std::iter::once(hello).chain(first).collect();
        let connected = connect::connect(cfg, &hello).await?;
        let (tx, events) = mpsc::channel(4096);
        let (link, endpoint, tasks, zero_rtt) = match connected {
            Connected::Quic {
                wire,
                endpoint,
                zero_rtt,
                server_opens,
            } => {
                let started = if server_opens {
                    quic::accept(&wire, tx).await?
                } else {
                    quic::start(&wire, zero_rtt, &hello, tx).await?
                };
                let link = Link::Quic {
                    wire,
                    control: started.control,
                };
                (link, endpoint, started.tasks, started.zero_rtt)
            }
            Connected::WebSocket { ws, sent } => {
                let unsent = if sent { &[][..] } else { &hello[..] };
                let (out, tasks) = websocket::start(ws, unsent, tx).await?;
                (Link::WebSocket(out), None, tasks, false)
            }
        };
        // `tasks` stops the connection's tasks if the Welcome never comes.
        let mut inbox = Inbox::new(events);
        let welcome = inbox
            .wait_for(|m| match m {
                ServerMsg::Welcome(w) => Some(w.clone()),
                _ => None,
            })
            .await?;
        Ok(Client {
            link,
            inbox,
            relay_mode: cfg.relay_mode,
            welcome,
            endpoint,
            tasks,
            zero_rtt,
        })
    }

    /// The transport this client ended up on.
    pub fn transport(&self) -> crate::session::Transport {
        match &self.link {
            Link::Quic { wire, .. } => wire.kind(),
            Link::WebSocket(_) => crate::session::Transport::WebSocket,
        }
    }

    /// This client's peer id, from the Welcome.
    pub fn peer_id(&self) -> PeerId {
        self.welcome.peer_id
    }

    /// Send one control message.
    pub async fn send(&mut self, msg: &ClientMsg) -> Result<()> {
        match &mut self.link {
            Link::Quic { wire, control } => control
                .write_all(&protocol::encode_frame(msg))
                .await
                .map_err(|e| quic::write_failed(wire, "writing to the control stream", e)),
            Link::WebSocket(out) => out.control(msg).await,
        }
    }

    /// Write raw bytes on the control stream, or send them as one binary
    /// WebSocket message (tests of bad input).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        match &mut self.link {
            Link::Quic { wire, control } => control
                .write_all(bytes)
                .await
                .map_err(|e| quic::write_failed(wire, "writing raw bytes", e)),
            Link::WebSocket(out) => out.binary(bytes.to_vec()).await,
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
        }))
        .await?;
        self.wait_for(|m| match m {
            ServerMsg::SessionCreated(i) => Some(i.clone()),
            _ => None,
        })
        .await
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
        }))
        .await?;
        self.wait_for(|m| match m {
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
    pub fn relay_sender(&self) -> RelaySender {
        RelaySender {
            link: match &self.link {
                Link::Quic { wire, .. } => RelayLink::Quic(wire.clone()),
                Link::WebSocket(out) => RelayLink::WebSocket(out.clone()),
            },
            mode: self.relay_mode,
        }
    }

    /// Send a raw datagram (tests of bad input).
    pub fn send_raw_datagram(&self, bytes: Bytes) -> Result<()> {
        match &self.link {
            Link::Quic { wire, .. } => Ok(wire.send_datagram(bytes)?),
            Link::WebSocket(_) => Err(Error::Unsupported("no datagrams on WebSocket")),
        }
    }

    /// The next event, stashed ones first; `None` once the reader is gone.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.inbox.next().await
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
        self.inbox.next_relay(limit).await
    }

    /// Wait for a control message `pick` accepts; an `Error` from the server
    /// ([`Error::Server`]) or the end of the connection ([`Error::Closed`])
    /// fails the wait. Other events are kept for `next_event`.
    pub async fn wait_for<T>(&mut self, pick: impl Fn(&ServerMsg) -> Option<T>) -> Result<T> {
        self.inbox.wait_for(pick).await
    }

    /// Move a raw QUIC connection to a new local UDP socket, as a phone does
    /// when it switches from Wi-Fi to mobile data. QUIC migration keeps the
    /// connection (and so the session) alive.
    pub fn rebind(&self) -> Result<()> {
        let (Link::Quic { .. }, Some(ep)) = (&self.link, &self.endpoint) else {
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
    /// are no longer read. `None` for WebSocket.
    pub fn into_raw(mut self) -> Option<RawQuic> {
        self.tasks.reader.abort();
        let relay = self.relay_sender();
        match self.link {
            Link::Quic { wire, .. } => Some(RawQuic {
                wire,
                relay,
                _endpoint: self.endpoint.take(),
            }),
            Link::WebSocket(_) => None,
        }
    }

    /// Close the connection cleanly (QUIC code 0, WebSocket 1000): leave for good.
    pub async fn close(mut self) {
        match &self.link {
            Link::Quic { wire, .. } => {
                wire.close(0, "bye");
                if let Some(ep) = &self.endpoint {
                    let _ = tokio::time::timeout(Duration::from_millis(500), ep.wait_idle()).await;
                }
            }
            Link::WebSocket(out) => {
                if out.close().await {
                    // Wait for the server's close (the reader ends) briefly.
                    let reader = &mut self.tasks.reader;
                    let _ = tokio::time::timeout(Duration::from_millis(500), reader).await;
                }
            }
        }
    }

    /// Drop the connection without a clean close (as a crash or network loss would):
    /// the server keeps this peer's seat for the resume grace period.
    pub fn abandon(self) {
        if let Link::Quic { wire, .. } = &self.link {
            wire.close(99, "abandoned");
        }
        // Dropping the tasks aborts the WebSocket ones: the TCP connection just goes away.
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
    link: RelayLink,
    mode: RelayMode,
}

#[derive(Clone)]
enum RelayLink {
    Quic(Wire),
    WebSocket(Outbox),
}

impl RelaySender {
    /// Send flight data to `to` (0 = everyone else in my session) the way the
    /// client's relay mode says: a datagram, or one unidirectional stream. On
    /// WebSocket the frame is one binary message, dropped if the writer's
    /// queue is full (stale flight data is not worth waiting for).
    pub async fn send(&self, to: PeerId, payload: &[u8]) -> Result<()> {
        let frame = protocol::relay_frame(to, payload);
        match (&self.link, self.mode) {
            (RelayLink::Quic(wire), RelayMode::Datagram) => Ok(wire.send_datagram(frame)?),
            (RelayLink::Quic(wire), RelayMode::Stream) => {
                let mut s = wire.open_uni().await?;
                let failed = |what| move |e| quic::write_failed(wire, what, e);
                s.write_all(&frame)
                    .await
                    .map_err(failed("writing a relay stream"))?;
                s.shutdown()
                    .await
                    .map_err(failed("finishing a relay stream"))
            }
            (RelayLink::WebSocket(out), _) => out.relay(&frame),
        }
    }

    /// UDP bytes this QUIC connection has sent so far (all packets, headers
    /// and encryption included); `None` for WebTransport and WebSocket.
    pub fn udp_tx_bytes(&self) -> Option<u64> {
        match &self.link {
            RelayLink::Quic(Wire::Quic(c)) => Some(c.stats().udp_tx.bytes),
            _ => None,
        }
    }
}
