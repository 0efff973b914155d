//! The Rust client: connects over raw QUIC, WebTransport or the WebSocket
//! fallback, speaks the control protocol, and sends and receives relay frames.
//!
//! Used by the `peer` command, the integration tests and the benchmarks. One
//! background task reads the control stream, datagrams and unidirectional
//! streams (or WebSocket messages) and turns them into [`Event`]s; request
//! helpers (`create_session`, `join_session`) wait for their answer and keep
//! other events for later. [`ClientTransport::Auto`] tries QUIC first and
//! starts a WebSocket attempt if QUIC has not connected within
//! `fallback_delay` (happy eyeballs): whichever connects first is used.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::certs::Identity;
use crate::protocol::{
    self, ClientKind, ClientMsg, CreateSession, ErrorCode, FrameDecoder, Hello, JoinSession,
    PeerId, RelayMode, ServerMsg, SessionInfo, Signal, Welcome, ALPN_NATIVE, PROTOCOL_VERSION,
    WEBTRANSPORT_PATH,
};
use crate::relay::Via;
use crate::websocket::{WS_CONTROL, WS_RELAY};
use crate::wire::{Wire, Writer};

/// Which transport to connect with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
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

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub server: SocketAddr,
    /// TLS server name (SNI, and the name checked against a CA certificate).
    pub server_name: String,
    pub transport: ClientTransport,
    pub trust: Trust,
    pub relay_mode: RelayMode,
    pub name: String,
    pub kind: ClientKind,
    pub resume_token: Option<Vec<u8>>,
    pub keep_alive: Duration,
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

/// A reusable QUIC client endpoint: one UDP socket and one TLS session cache
/// for many connections. Connections through the same endpoint resume TLS and
/// send Hello (and a pipelined request) as 0-RTT data, so a reconnecting
/// player is back in its session one round trip after it starts.
#[derive(Clone, Debug)]
pub struct QuicEndpoint(quinn::Endpoint);

impl QuicEndpoint {
    pub fn new(cfg: &ClientConfig) -> Result<Self> {
        let tls = client_tls(&cfg.trust, ALPN_NATIVE)?;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .context("building the QUIC TLS config")?;
        let mut qc = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport
            .keep_alive_interval(Some(cfg.keep_alive))
            .max_concurrent_uni_streams(1024u32.into())
            .datagram_receive_buffer_size(Some(256 * 1024));
        qc.transport_config(Arc::new(transport));
        let bind: SocketAddr = if cfg.server.is_ipv6() {
            "[::]:0".parse()?
        } else {
            "0.0.0.0:0".parse()?
        };
        let mut endpoint = quinn::Endpoint::client(bind).context("binding a UDP socket")?;
        endpoint.set_default_client_config(qc);
        Ok(QuicEndpoint(endpoint))
    }
}

impl ClientConfig {
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
    Control(ServerMsg),
    Relay {
        from: PeerId,
        payload: Bytes,
        via: Via,
    },
    /// The connection ended.
    Closed(String),
}

/// The connection a client ended up with.
enum Link {
    Quic {
        wire: Wire,
        control: Writer,
    },
    /// Messages for the WebSocket writer task, type byte included.
    WebSocket {
        out: mpsc::Sender<WsMessage>,
        tasks: Vec<tokio::task::AbortHandle>,
    },
}

/// A connected client.
pub struct Client {
    link: Link,
    events: mpsc::Receiver<Event>,
    stash: VecDeque<Event>,
    relay_mode: RelayMode,
    pub welcome: Welcome,
    _endpoint: Option<quinn::Endpoint>,
    reader: tokio::task::JoinHandle<()>,
    /// True when Hello went out as 0-RTT data and the server accepted it.
    pub zero_rtt: bool,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
        if let Link::WebSocket { tasks, .. } = &self.link {
            tasks.iter().for_each(|t| t.abort());
        }
    }
}

/// An established transport connection, before Hello.
enum Connected {
    Quic(
        Wire,
        Option<quinn::Endpoint>,
        Option<quinn::ZeroRttAccepted>,
    ),
    WebSocket(WsStream),
}

/// Whether a write failed because the stream was sent as 0-RTT data that the
/// server rejected.
fn lost_with_0rtt(r: std::io::Result<usize>) -> bool {
    r.err().is_some_and(|e| {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<quinn::WriteError>())
            .is_some_and(|w| matches!(w, quinn::WriteError::ZeroRttRejected))
    })
}

/// Open the control stream and write `bytes` on it.
async fn open_and_send(wire: &Wire, bytes: &[u8]) -> Result<(Writer, crate::wire::Reader)> {
    let (mut control, recv) = wire.open_bi().await.context("opening the control stream")?;
    control.write_all(bytes).await.context("sending Hello")?;
    Ok((control, recv))
}

/// A byte stream a WebSocket can run over: plain TCP or TLS over TCP.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

type WsStream = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

impl Client {
    /// Connect, say hello, and (pipelined, in the same flight) send `first`
    /// if given. Returns once the Welcome has arrived.
    pub async fn connect(cfg: &ClientConfig, first: Option<ClientMsg>) -> Result<Client> {
        tokio::time::timeout(cfg.connect_timeout, Self::connect_inner(cfg, first))
            .await
            .map_err(|_| {
                anyhow!(
                    "no Welcome from {} within {:?}",
                    cfg.server,
                    cfg.connect_timeout
                )
            })?
    }

    async fn connect_inner(cfg: &ClientConfig, first: Option<ClientMsg>) -> Result<Client> {
        let connected = match cfg.transport {
            ClientTransport::Quic => {
                let (conn, ep, zero_rtt) = connect_quic(cfg).await?;
                Connected::Quic(Wire::Quic(conn), Some(ep), zero_rtt)
            }
            ClientTransport::Webtransport => {
                Connected::Quic(Wire::WebTransport(connect_wt(cfg).await?), None, None)
            }
            ClientTransport::Websocket => Connected::WebSocket(connect_ws(cfg).await?),
            ClientTransport::Auto => connect_auto(cfg).await?,
        };
        let hello = ClientMsg::Hello(Hello {
            version: PROTOCOL_VERSION,
            client: cfg.kind,
            relay_mode: cfg.relay_mode,
            name: cfg.name.clone(),
            resume_token: cfg.resume_token.clone(),
        });
        let (tx, events) = mpsc::channel(4096);
        let mut zero_rtt_used = false;
        let (link, endpoint, reader) = match connected {
            Connected::Quic(wire, endpoint, zero_rtt) => {
                // Hello and the first request in one write: one flight.
                let mut out = protocol::encode_frame(&hello).to_vec();
                if let Some(m) = &first {
                    out.extend_from_slice(&protocol::encode_frame(m));
                }
                let (mut control, mut recv) = open_and_send(&wire, &out).await?;
                if let Some(accepted) = zero_rtt {
                    // Resolves when the handshake completes, when the Welcome
                    // (sent in the server's 0.5-RTT flight) arrives anyway.
                    if accepted.await {
                        zero_rtt_used = true;
                    } else if lost_with_0rtt(control.write(&[]).await) {
                        // The server forgot our session: the 0-RTT stream is
                        // gone, say it all again in 1-RTT. (A stream opened
                        // after the handshake had already completed went out
                        // in 1-RTT and stands: sending again would open a
                        // second control stream, which the server refuses.)
                        (control, recv) = open_and_send(&wire, &out).await?;
                    }
                }
                let reader = tokio::spawn(read_everything(wire.clone(), recv, tx));
                (Link::Quic { wire, control }, endpoint, reader)
            }
            Connected::WebSocket(ws) => {
                let (sink, stream) = ws.split();
                let (out, out_rx) = mpsc::channel(1024);
                let writer = tokio::spawn(ws_writer(sink, out_rx));
                for m in std::iter::once(&hello).chain(first.as_ref()) {
                    out.send(ws_control(m))
                        .await
                        .map_err(|_| anyhow!("WebSocket writer ended"))?;
                }
                let reader = tokio::spawn(ws_reader(stream, tx));
                let tasks = vec![writer.abort_handle()];
                (Link::WebSocket { out, tasks }, None, reader)
            }
        };
        let mut client = Client {
            link,
            events,
            stash: VecDeque::new(),
            relay_mode: cfg.relay_mode,
            welcome: Welcome {
                version: 0,
                peer_id: 0,
                resume_token: vec![],
                resumed: false,
                ice_servers: vec![],
                limits: protocol::Limits {
                    max_frame_bytes: 0,
                    max_relay_payload: 0,
                    relay_datagrams_per_sec: 0,
                    relay_bytes_per_sec: 0,
                    signals_per_sec: 0,
                    max_peers_per_session: 0,
                    resume_grace_ms: 0,
                },
                server_time_ms: 0,
            },
            _endpoint: endpoint,
            reader,
            zero_rtt: zero_rtt_used,
        };
        client.welcome = client
            .wait_for(|m| match m {
                ServerMsg::Welcome(w) => Some(w.clone()),
                _ => None,
            })
            .await?;
        Ok(client)
    }

    /// The transport this client ended up on.
    pub fn transport(&self) -> crate::session::Transport {
        match &self.link {
            Link::Quic { wire, .. } => wire.kind(),
            Link::WebSocket { .. } => crate::session::Transport::WebSocket,
        }
    }

    pub fn peer_id(&self) -> PeerId {
        self.welcome.peer_id
    }

    /// Send one control message.
    pub async fn send(&mut self, msg: &ClientMsg) -> Result<()> {
        match &mut self.link {
            Link::Quic { control, .. } => control
                .write_all(&protocol::encode_frame(msg))
                .await
                .context("writing to the control stream"),
            Link::WebSocket { out, .. } => out
                .send(ws_control(msg))
                .await
                .map_err(|_| anyhow!("WebSocket closed")),
        }
    }

    /// Write raw bytes on the control stream, or send them as one binary
    /// WebSocket message (tests of bad input).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        match &mut self.link {
            Link::Quic { control, .. } => {
                control.write_all(bytes).await.context("writing raw bytes")
            }
            Link::WebSocket { out, .. } => out
                .send(WsMessage::Binary(bytes.to_vec().into()))
                .await
                .map_err(|_| anyhow!("WebSocket closed")),
        }
    }

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
                Link::WebSocket { out, .. } => RelayLink::WebSocket(out.clone()),
            },
            mode: self.relay_mode,
        }
    }

    /// Send a raw datagram (tests of bad input).
    pub fn send_raw_datagram(&self, bytes: Bytes) -> Result<()> {
        match &self.link {
            Link::Quic { wire, .. } => wire
                .send_datagram(bytes)
                .map_err(|e| anyhow!("sending datagram: {e}")),
            Link::WebSocket { .. } => bail!("no datagrams on WebSocket"),
        }
    }

    /// The next event, stashed ones first.
    pub async fn next_event(&mut self) -> Option<Event> {
        if let Some(e) = self.stash.pop_front() {
            return Some(e);
        }
        self.events.recv().await
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
        let deadline = tokio::time::Instant::now() + limit;
        // Look in the stash first.
        if let Some(pos) = self
            .stash
            .iter()
            .position(|e| matches!(e, Event::Relay { .. }))
        {
            if let Some(Event::Relay { from, payload, via }) = self.stash.remove(pos) {
                return Some((from, payload, via));
            }
        }
        loop {
            let e = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .ok()??;
            match e {
                Event::Relay { from, payload, via } => return Some((from, payload, via)),
                other => self.stash.push_back(other),
            }
        }
    }

    /// Wait for a control message `pick` accepts; an `Error` or the end of the
    /// connection fails the wait. Other events are kept for `next_event`.
    pub async fn wait_for<T>(&mut self, pick: impl Fn(&ServerMsg) -> Option<T>) -> Result<T> {
        let mut skipped = VecDeque::new();
        let result = loop {
            let e = match self.stash.pop_front() {
                Some(e) => e,
                None => match self.events.recv().await {
                    Some(e) => e,
                    None => break Err(anyhow!("connection ended")),
                },
            };
            match &e {
                Event::Control(m) => {
                    if let Some(t) = pick(m) {
                        break Ok(t);
                    }
                    if let ServerMsg::Error { code, message } = m {
                        let name = ErrorCode::from_u16(*code).map_or("unknown", |c| c.as_str());
                        if ErrorCode::from_u16(*code) != Some(ErrorCode::ResumeFailed) {
                            break Err(anyhow!(ServerError {
                                code: *code,
                                message: format!("{name}: {message}"),
                            }));
                        }
                    }
                }
                Event::Closed(why) => break Err(anyhow!("connection closed: {why}")),
                Event::Relay { .. } => {}
            }
            skipped.push_back(e);
        };
        // Put skipped events back in front, in order.
        while let Some(e) = skipped.pop_back() {
            self.stash.push_front(e);
        }
        result
    }

    /// Move a raw QUIC connection to a new local UDP socket, as a phone does
    /// when it switches from Wi-Fi to mobile data. QUIC migration keeps the
    /// connection (and so the session) alive.
    pub fn rebind(&self) -> Result<()> {
        if !matches!(self.link, Link::Quic { .. }) {
            bail!("rebind needs a raw QUIC connection");
        }
        let Some(ep) = &self._endpoint else {
            bail!("rebind needs a raw QUIC connection");
        };
        let local = ep.local_addr().context("reading the local address")?;
        let mut any = local;
        any.set_port(0);
        let socket = std::net::UdpSocket::bind(any).context("binding a new UDP socket")?;
        ep.rebind(socket).context("rebinding the endpoint")
    }

    /// Give up the event stream and take the raw connection, to read relay
    /// datagrams with no task hop in between (benchmarks). Control messages
    /// are no longer read. `None` for WebSocket.
    pub fn into_raw(mut self) -> Option<RawQuic> {
        self.reader.abort();
        let relay = self.relay_sender();
        let endpoint = self._endpoint.take();
        match &self.link {
            Link::Quic { wire, .. } => Some(RawQuic {
                wire: wire.clone(),
                relay,
                _endpoint: endpoint,
            }),
            Link::WebSocket { .. } => None,
        }
    }

    /// Close the connection cleanly (QUIC code 0, WebSocket 1000): leave for good.
    pub async fn close(mut self) {
        match &self.link {
            Link::Quic { wire, .. } => {
                wire.close(0, "bye");
                if let Some(ep) = &self._endpoint {
                    let _ = tokio::time::timeout(Duration::from_millis(500), ep.wait_idle()).await;
                }
            }
            Link::WebSocket { out, .. } => {
                let bye =
                    WsMessage::Close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                        code: 1000.into(),
                        reason: "bye".into(),
                    }));
                if out.send(bye).await.is_ok() {
                    // Wait for the server's close (the reader ends) briefly.
                    let _ =
                        tokio::time::timeout(Duration::from_millis(500), &mut self.reader).await;
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
        // Drop aborts the WebSocket tasks: the TCP connection just goes away.
    }
}

/// A connection taken out of a [`Client`] by [`Client::into_raw`].
pub struct RawQuic {
    pub wire: Wire,
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
    WebSocket(mpsc::Sender<WsMessage>),
}

impl RelaySender {
    /// Send flight data to `to` (0 = everyone else in my session) the way the
    /// client's relay mode says: a datagram, or one unidirectional stream. On
    /// WebSocket the frame is one binary message, dropped if the writer's
    /// queue is full (stale flight data is not worth waiting for).
    pub async fn send(&self, to: PeerId, payload: &[u8]) -> Result<()> {
        let frame = protocol::relay_frame(to, payload);
        match (&self.link, self.mode) {
            (RelayLink::Quic(wire), RelayMode::Datagram) => wire
                .send_datagram(frame)
                .map_err(|e| anyhow!("sending datagram: {e}")),
            (RelayLink::Quic(wire), RelayMode::Stream) => {
                let mut s = wire.open_uni().await.context("opening a relay stream")?;
                s.write_all(&frame)
                    .await
                    .context("writing a relay stream")?;
                s.shutdown().await.context("finishing a relay stream")?;
                Ok(())
            }
            (RelayLink::WebSocket(out), _) => {
                let mut m = Vec::with_capacity(frame.len() + 1);
                m.push(WS_RELAY);
                m.extend_from_slice(&frame);
                match out.try_send(WsMessage::Binary(m.into())) {
                    Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => Ok(()),
                    Err(mpsc::error::TrySendError::Closed(_)) => bail!("WebSocket closed"),
                }
            }
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

/// A request failed with an `Error` from the server.
#[derive(Debug, thiserror::Error)]
#[error("server error {code}: {message}")]
pub struct ServerError {
    pub code: u16,
    pub message: String,
}

async fn read_everything(wire: Wire, mut control: crate::wire::Reader, tx: mpsc::Sender<Event>) {
    let control_tx = tx.clone();
    let control_task = async move {
        let mut dec = FrameDecoder::new(1 << 20);
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match control.read(&mut buf).await {
                Ok(0) => return "control stream finished by server".to_string(),
                Ok(n) => n,
                Err(e) => return format!("control stream: {e}"),
            };
            dec.extend(&buf[..n]);
            loop {
                match dec.next_frame() {
                    Ok(Some(f)) => match protocol::decode::<ServerMsg>(&f) {
                        Ok(m) => {
                            if control_tx.send(Event::Control(m)).await.is_err() {
                                return "client dropped".into();
                            }
                        }
                        Err(e) => return format!("undecodable message from server: {e}"),
                    },
                    Ok(None) => break,
                    Err(e) => return format!("bad frame from server: {e}"),
                }
            }
        }
    };
    let dgram_tx = tx.clone();
    let dgram_wire = wire.clone();
    let datagrams = async move {
        while let Ok(d) = dgram_wire.read_datagram().await {
            if let Ok((from, payload)) = protocol::parse_relay(&d) {
                let payload = d.slice(d.len() - payload.len()..);
                let _ = dgram_tx.try_send(Event::Relay {
                    from,
                    payload,
                    via: Via::Datagram,
                });
            }
        }
    };
    let uni_tx = tx.clone();
    let uni_wire = wire.clone();
    let streams = async move {
        while let Ok(s) = uni_wire.accept_uni().await {
            let tx = uni_tx.clone();
            tokio::spawn(async move {
                if let Ok(frame) = crate::wire::read_to_end_limited(s, 64 * 1024).await {
                    if let Ok((from, payload)) = protocol::parse_relay(&frame) {
                        let _ = tx.try_send(Event::Relay {
                            from,
                            payload: Bytes::copy_from_slice(payload),
                            via: Via::Stream,
                        });
                    }
                }
            });
        }
    };
    let why = tokio::select! {
        why = control_task => why,
        _ = datagrams => "datagram reader ended".to_string(),
        _ = streams => "stream acceptor ended".to_string(),
    };
    // Report how the connection itself ended, if it did.
    let ended = tokio::time::timeout(Duration::from_millis(200), wire.closed()).await;
    let why = match ended {
        Ok(e) => e.reason,
        Err(_) => why,
    };
    let _ = tx.send(Event::Closed(why)).await;
}

/// Only the QUIC or WebTransport handshake, no Hello: for tests and tools that
/// speak the protocol by hand. Keep the endpoint alive as long as the connection.
pub async fn connect_wire(cfg: &ClientConfig) -> Result<(Wire, Option<quinn::Endpoint>)> {
    Ok(match cfg.transport {
        ClientTransport::Quic => {
            let (conn, ep, zero_rtt) = connect_quic(cfg).await?;
            if let Some(accepted) = zero_rtt {
                accepted.await; // callers get a confirmed connection
            }
            (Wire::Quic(conn), Some(ep))
        }
        ClientTransport::Webtransport => (Wire::WebTransport(connect_wt(cfg).await?), None),
        ClientTransport::Websocket | ClientTransport::Auto => {
            bail!("connect_wire is for QUIC and WebTransport")
        }
    })
}

/// Race QUIC against a later-starting WebSocket attempt (happy eyeballs).
async fn connect_auto(cfg: &ClientConfig) -> Result<Connected> {
    let quic_cfg = ClientConfig {
        transport: ClientTransport::Quic,
        ..cfg.clone()
    };
    let quic = connect_wire(&quic_cfg);
    tokio::pin!(quic);
    let quic_error = tokio::select! {
        r = &mut quic => match r {
            Ok((wire, ep)) => return Ok(Connected::Quic(wire, ep, None)),
            Err(e) => Some(e),
        },
        _ = tokio::time::sleep(cfg.fallback_delay) => None,
    };
    if let Some(e) = quic_error {
        tracing::info!("QUIC failed ({e:#}); using WebSocket");
        return connect_ws(cfg).await.map(Connected::WebSocket);
    }
    tracing::info!(
        "QUIC not connected after {:?}; trying WebSocket too",
        cfg.fallback_delay
    );
    let ws = connect_ws(cfg);
    tokio::pin!(ws);
    tokio::select! {
        r = &mut quic => match r {
            Ok((wire, ep)) => Ok(Connected::Quic(wire, ep, None)),
            Err(_) => ws.await.map(Connected::WebSocket),
        },
        r = &mut ws => match r {
            Ok(s) => Ok(Connected::WebSocket(s)),
            Err(_) => quic.await.map(|(w, ep)| Connected::Quic(w, ep, None)),
        },
    }
}

/// Open the WebSocket (TCP, optional TLS, HTTP upgrade).
async fn connect_ws(cfg: &ClientConfig) -> Result<WsStream> {
    let url = cfg
        .ws_url
        .as_deref()
        .context("the WebSocket transport needs a ws:// or wss:// URL")?;
    let request = url
        .into_client_request()
        .with_context(|| format!("bad WebSocket URL {url}"))?;
    let uri = request.uri().clone();
    let host = uri
        .host()
        .context("WebSocket URL without a host")?
        .to_string();
    let tls = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        other => bail!("WebSocket URL scheme must be ws or wss, not {other:?}"),
    };
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .with_context(|| format!("connecting to {host}:{port}"))?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Io> = if tls {
        let connector =
            tokio_rustls::TlsConnector::from(Arc::new(client_tls(&cfg.trust, b"http/1.1")?));
        let name =
            rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                .context("bad TLS server name")?;
        let tls = connector
            .connect(name, tcp)
            .await
            .with_context(|| format!("TLS with {host}"))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let (ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .with_context(|| format!("WebSocket upgrade at {url}"))?;
    Ok(ws)
}

fn ws_control(m: &ClientMsg) -> WsMessage {
    let mut b = vec![WS_CONTROL];
    b.extend_from_slice(&protocol::encode(m));
    WsMessage::Binary(b.into())
}

async fn ws_writer(
    mut sink: futures_util::stream::SplitSink<WsStream, WsMessage>,
    mut rx: mpsc::Receiver<WsMessage>,
) {
    while let Some(m) = rx.recv().await {
        let close = matches!(m, WsMessage::Close(_));
        if sink.send(m).await.is_err() || close {
            break;
        }
    }
}

async fn ws_reader(
    mut stream: futures_util::stream::SplitStream<WsStream>,
    tx: mpsc::Sender<Event>,
) {
    let why = loop {
        match stream.next().await {
            Some(Ok(WsMessage::Binary(b))) => match b.split_first() {
                Some((&WS_CONTROL, body)) => match protocol::decode::<ServerMsg>(body) {
                    Ok(m) => {
                        if tx.send(Event::Control(m)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => break format!("undecodable message from server: {e}"),
                },
                Some((&WS_RELAY, frame)) => {
                    if let Ok((from, payload)) = protocol::parse_relay(frame) {
                        let _ = tx.try_send(Event::Relay {
                            from,
                            payload: Bytes::copy_from_slice(payload),
                            via: Via::WebSocket,
                        });
                    }
                }
                _ => break "unknown message type from server".to_string(),
            },
            Some(Ok(WsMessage::Close(f))) => {
                break match f {
                    Some(f) => format!("closed by server: {} {}", u16::from(f.code), f.reason),
                    None => "closed by server".to_string(),
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => break format!("WebSocket: {e}"),
            None => break "WebSocket ended".to_string(),
        }
    };
    let _ = tx.send(Event::Closed(why)).await;
}

fn client_tls(trust: &Trust, alpn: &[u8]) -> Result<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(Identity::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 with ring")?;
    let mut tls = match trust {
        Trust::CertHash(hash) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCert {
                sha256: *hash,
                provider: Identity::provider(),
            }))
            .with_no_client_auth(),
        Trust::CaFile(path) => {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut &pem[..]) {
                roots
                    .add(cert.context("parsing CA PEM")?)
                    .context("adding CA certificate")?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    tls.alpn_protocols = vec![alpn.to_vec()];
    tls.enable_early_data = true;
    Ok(tls)
}

async fn connect_quic(
    cfg: &ClientConfig,
) -> Result<(
    quinn::Connection,
    quinn::Endpoint,
    Option<quinn::ZeroRttAccepted>,
)> {
    let endpoint = match &cfg.endpoint {
        Some(e) => e.0.clone(),
        None => QuicEndpoint::new(cfg)?.0,
    };
    let connecting = endpoint
        .connect(cfg.server, &cfg.server_name)
        .context("starting the QUIC handshake")?;
    // With a resumable TLS session, go on at once: what we write now travels
    // as 0-RTT data. Otherwise wait for the handshake.
    Ok(match connecting.into_0rtt() {
        Ok((conn, accepted)) => (conn, endpoint, Some(accepted)),
        Err(connecting) => {
            let conn = connecting
                .await
                .with_context(|| format!("QUIC handshake with {}", cfg.server))?;
            (conn, endpoint, None)
        }
    })
}

async fn connect_wt(cfg: &ClientConfig) -> Result<wtransport::Connection> {
    let builder = wtransport::ClientConfig::builder().with_bind_default();
    let config = match &cfg.trust {
        // The same rules a browser applies (ECDSA P-256, validity ≤ 14 days).
        Trust::CertHash(h) => builder
            .with_server_certificate_hashes([wtransport::tls::Sha256Digest::new(*h)])
            .keep_alive_interval(Some(cfg.keep_alive))
            .build(),
        Trust::CaFile(_) => builder
            .with_custom_tls(client_tls(&cfg.trust, b"h3")?)
            .keep_alive_interval(Some(cfg.keep_alive))
            .build(),
    };
    let endpoint = wtransport::Endpoint::client(config).context("binding a UDP socket")?;
    // A pinned certificate needs no name; a CA-verified one is checked against server_name.
    let url = match &cfg.trust {
        Trust::CertHash(_) => format!("https://{}{}", cfg.server, WEBTRANSPORT_PATH),
        Trust::CaFile(_) => format!(
            "https://{}:{}{}",
            cfg.server_name,
            cfg.server.port(),
            WEBTRANSPORT_PATH
        ),
    };
    endpoint
        .connect(&url)
        .await
        .with_context(|| format!("WebTransport session with {url}"))
}

/// Accepts exactly one certificate, by the SHA-256 of its DER bytes, and still
/// checks the handshake signature with it.
#[derive(Debug)]
struct PinnedCert {
    sha256: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let digest = ring::digest::digest(&ring::digest::SHA256, end_entity);
        if digest.as_ref() == self.sha256 {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "certificate hash {} does not match the pinned {}",
                hex::encode(digest.as_ref()),
                hex::encode(self.sha256)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Fail unless `r` is a server error with `code`.
pub fn expect_error<T: std::fmt::Debug>(r: Result<T>, code: ErrorCode) -> Result<()> {
    match r {
        Ok(v) => bail!("expected error {code}, got {v:?}"),
        Err(e) => match e.downcast_ref::<ServerError>() {
            Some(se) if se.code == code as u16 => Ok(()),
            _ => bail!("expected error {code}, got {e:#}"),
        },
    }
}
