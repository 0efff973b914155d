//! The I/O shell around the session core: one quinn endpoint on one UDP port,
//! ALPN dispatch to raw QUIC or WebTransport, and a task set per connection.
//!
//! Per connection: a control task (frames in → `Core::handle`, queued frames
//! out), a datagram reader and a unidirectional-stream acceptor (both hand
//! relay frames to [`crate::relay`]), and a writer for stream-mode relay
//! frames. All of them share one `Mutex<State>` holding the core and the
//! outbound handle (`Link`) of every connection; it is held only for
//! synchronous work, never across an `await`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::certs::Identity;
use crate::limits::Limits;
use crate::metrics::{Metrics, QuicLosses};
use crate::protocol::{
    self, ClientMsg, ErrorCode, FrameDecoder, ServerMsg, ALPN_H3, ALPN_NATIVE, WEBTRANSPORT_PATH,
};
use crate::relay::{LatestQueue, Via};
use crate::session::{Admission, ConnId, ConnMeta, Core, Now, Output, Target};
use crate::turn::IceConfig;
use crate::wire::{Ended, Reader, Wire, Writer};

/// QUIC transport settings and queue depths of the I/O shell.
#[derive(Args, Debug, Clone)]
pub struct QuicTuning {
    /// Close a QUIC connection or WebSocket after this many milliseconds without any packet or
    /// message from the client.
    #[arg(long, env = "FSP2P_IDLE_TIMEOUT_MS", default_value_t = 30_000)]
    pub idle_timeout_ms: u64,

    /// Send a QUIC keep-alive (WebSocket: a ping) after this many milliseconds of silence; keeps
    /// NAT bindings and proxies open, and lets a dead WebSocket be noticed. 0 = never.
    #[arg(long, env = "FSP2P_KEEP_ALIVE_MS", default_value_t = 10_000)]
    pub keep_alive_ms: u64,

    /// Per-connection buffer of received, not yet forwarded datagrams, in bytes. Small on purpose:
    /// stale flight data is dropped (oldest first), never queued.
    #[arg(long, env = "FSP2P_DATAGRAM_RECV_BUFFER", default_value_t = 64 * 1024)]
    pub datagram_recv_buffer: usize,

    /// Per-connection buffer of datagrams waiting to be sent, in bytes (oldest dropped when full).
    #[arg(long, env = "FSP2P_DATAGRAM_SEND_BUFFER", default_value_t = 64 * 1024)]
    pub datagram_send_buffer: usize,

    /// Kernel receive and send buffer of the UDP socket, in bytes (SO_RCVBUF/SO_SNDBUF). Every
    /// client's packets share it: too small and a burst from many players is dropped by the
    /// kernel before QUIC sees it. Linux caps it at net.core.rmem_max/wmem_max (the log says what
    /// was granted; raise those sysctls to get more). 0 = the kernel's default.
    #[arg(long, env = "FSP2P_UDP_SOCKET_BUFFER", default_value_t = 4 * 1024 * 1024)]
    pub udp_socket_buffer: usize,

    /// Control messages queued for one client before it counts as a slow consumer and is closed.
    #[arg(long, env = "FSP2P_CONTROL_QUEUE", default_value_t = 256)]
    pub control_queue: usize,

    /// Flow-control window of one QUIC stream the client sends on, in bytes: what the server
    /// buffers for it at most. The connection's window is four times this, which bounds what a
    /// client can make the server hold on streams, however many it opens.
    #[arg(long, env = "FSP2P_STREAM_RECEIVE_WINDOW", default_value_t = 64 * 1024)]
    pub stream_receive_window: u32,

    /// Relay frames queued for one receiver without datagrams (stream mode, WebSocket); when
    /// full, the oldest is dropped (latest state wins).
    #[arg(long, env = "FSP2P_STREAM_RELAY_QUEUE", default_value_t = 32)]
    pub stream_relay_queue: usize,

    /// On SIGINT/SIGTERM, how long to wait for clients to disconnect before closing, in milliseconds.
    #[arg(long, env = "FSP2P_DRAIN_TIMEOUT_MS", default_value_t = 3_000)]
    pub drain_timeout_ms: u64,

    /// Delay clients are asked to wait before reconnecting after a shutdown, in milliseconds.
    #[arg(long, env = "FSP2P_RECONNECT_AFTER_MS", default_value_t = 2_000)]
    pub reconnect_after_ms: u32,
}

impl Default for QuicTuning {
    fn default() -> Self {
        QuicTuning {
            idle_timeout_ms: 30_000,
            keep_alive_ms: 10_000,
            datagram_recv_buffer: 64 * 1024,
            datagram_send_buffer: 64 * 1024,
            udp_socket_buffer: 4 * 1024 * 1024,
            control_queue: 256,
            stream_receive_window: 64 * 1024,
            stream_relay_queue: 32,
            drain_timeout_ms: 3_000,
            reconnect_after_ms: 2_000,
        }
    }
}

/// Everything a server needs to start.
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub identity: Identity,
    pub limits: Limits,
    pub ice: IceConfig,
    pub quic: QuicTuning,
    /// Static files (the browser client and demo page) served on the HTTP port.
    pub web_dir: Option<PathBuf>,
    /// Believe X-Forwarded-For / X-Real-IP on WebSocket requests (only behind your own proxy).
    pub trust_proxy: bool,
    /// For a dev certificate: where to write its successor, and its names.
    /// The server replaces it a day before it expires (browsers refuse a
    /// pinned certificate that has expired, and accept at most 14 days).
    pub dev_cert: Option<DevCert>,
}

/// Where the dev certificate lives and which names it carries.
#[derive(Debug, Clone)]
pub struct DevCert {
    pub dir: PathBuf,
    pub hosts: Vec<String>,
}

/// What `/cert-hash` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertInfo {
    pub algorithm: &'static str,
    pub hex: String,
    pub base64: String,
    pub dev: bool,
    pub not_after_unix: i64,
}

impl CertInfo {
    fn of(identity: &Identity) -> Self {
        use base64::Engine;
        CertInfo {
            algorithm: "sha-256",
            hex: identity.sha256_hex(),
            base64: base64::engine::general_purpose::STANDARD.encode(identity.sha256),
            dev: identity.dev,
            not_after_unix: identity.not_after_unix,
        }
    }
}

/// An item for a connection's control writer.
pub(crate) enum Ctrl {
    Frame(Bytes),
    /// Finish the control stream, give the client a moment to read it, close.
    Close(ErrorCode, String),
}

/// Outbound handle of one connection, whatever its transport.
pub(crate) struct Link {
    /// The QUIC or WebTransport connection; `None` for WebSocket.
    pub(crate) wire: Option<Wire>,
    pub(crate) control: mpsc::Sender<Ctrl>,
    /// Relay frames for a receiver without datagrams (stream mode, WebSocket).
    pub(crate) relay_queue: Arc<LatestQueue>,
    /// Relay datagrams handed to quinn for this connection; compared with the
    /// datagram frames quinn sent, it tells how many its send buffer dropped.
    pub(crate) datagrams_queued: Arc<AtomicU64>,
    /// Ends a WebSocket connection at once (QUIC connections close through `wire`).
    pub(crate) kill: Option<tokio::task::AbortHandle>,
    /// Closed as a slow consumer: nothing more is queued, counted or logged for it.
    pub(crate) dropped: bool,
}

impl Link {
    /// Close without waiting for queued messages (slow consumers).
    fn close_now(&self, code: ErrorCode, reason: &str) {
        match (&self.wire, &self.kill) {
            (Some(w), _) => w.close(code as u32, reason),
            (None, Some(k)) => k.abort(),
            (None, None) => {}
        }
    }
}

pub(crate) struct State {
    pub(crate) core: Core,
    pub(crate) links: HashMap<ConnId, Link>,
    /// Reused by the relay path so routing allocates nothing per frame.
    pub(crate) targets: Vec<Target>,
}

/// State shared by every task of one server.
pub struct Shared {
    state: Mutex<State>,
    pub metrics: Metrics,
    cert: std::sync::RwLock<CertInfo>,
    pub quic: QuicTuning,
    pub(crate) max_frame_bytes: u32,
    max_relay_frame: usize,
    /// Take client addresses from X-Forwarded-For / X-Real-IP (behind a trusted proxy).
    pub(crate) trust_proxy: bool,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug; keep serving anyway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Carry out everything the core asked for. Called with the lock held.
    pub(crate) fn flush(&self, st: &mut State) {
        while let Some(out) = st.core.poll_output() {
            match out {
                Output::Send { conn, msg } => {
                    if let ServerMsg::Error { code, .. } = &msg {
                        self.metrics.error_sent(*code);
                    }
                    let Some(link) = st.links.get_mut(&conn) else {
                        continue;
                    };
                    if link.dropped {
                        continue;
                    }
                    if link
                        .control
                        .try_send(Ctrl::Frame(protocol::encode_frame(&msg)))
                        .is_err()
                    {
                        // Once per connection: a flood behind a full queue
                        // must not become a flood of logs.
                        warn!(conn, "control queue full; closing slow consumer");
                        self.metrics.error_sent(ErrorCode::SlowConsumer as u16);
                        link.dropped = true;
                        link.close_now(ErrorCode::SlowConsumer, "control queue full");
                    }
                }
                Output::Close { conn, code, reason } => {
                    if let Some(link) = st.links.get(&conn) {
                        debug!(conn, %code, %reason, "closing connection");
                        if link
                            .control
                            .try_send(Ctrl::Close(code, reason.clone()))
                            .is_err()
                        {
                            link.close_now(code, &reason);
                        }
                    }
                }
            }
        }
        self.metrics.sessions.set(st.core.session_count() as i64);
        self.metrics
            .connection_attempts
            .set(st.core.pending_count().0 as i64);
        self.metrics.peers.set(st.core.peer_count() as i64);
    }

    pub fn max_relay_frame(&self) -> usize {
        self.max_relay_frame
    }

    /// The certificate currently served.
    pub fn cert(&self) -> CertInfo {
        self.cert.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A running server. Drop does not stop it; call [`Server::shutdown`].
pub struct Server {
    pub shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    quic_addr: SocketAddr,
    http_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    dev_cert: Option<DevCert>,
}

fn rotate_dev_cert(endpoint: &quinn::Endpoint, shared: &Shared, dev: &DevCert) -> Result<CertInfo> {
    let identity = crate::certs::write_dev(&dev.dir, &dev.hosts)?;
    endpoint.set_server_config(Some(quinn_server_config(&identity, &shared.quic)?));
    let info = CertInfo::of(&identity);
    *shared.cert.write().unwrap_or_else(|e| e.into_inner()) = info.clone();
    info!(sha256 = %info.hex, "dev certificate replaced");
    Ok(info)
}

/// Hourly: replace a dev certificate with less than a day left.
async fn dev_cert_loop(
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    dev: DevCert,
    mut stop: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        if shared.cert().not_after_unix - now < 24 * 3600 {
            if let Err(e) = rotate_dev_cert(&endpoint, &shared, &dev) {
                warn!("could not replace the dev certificate: {e:#}");
            }
        }
    }
}

impl Server {
    /// Bind the UDP and TCP ports and start serving.
    pub async fn start(cfg: ServerConfig) -> Result<Server> {
        let cert = CertInfo::of(&cfg.identity);
        let server_config = quinn_server_config(&cfg.identity, &cfg.quic)?;
        let socket = udp_socket(cfg.listen, cfg.quic.udp_socket_buffer)
            .with_context(|| format!("binding UDP {}", cfg.listen))?;
        let runtime = quinn::default_runtime().context("no async runtime for quinn")?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server_config),
            socket,
            runtime,
        )
        .with_context(|| format!("starting QUIC on UDP {}", cfg.listen))?;
        let quic_addr = endpoint.local_addr().context("reading the UDP address")?;

        let shared = Arc::new(Shared {
            max_frame_bytes: cfg.limits.max_frame_bytes,
            max_relay_frame: cfg.limits.max_relay_payload as usize + 5,
            trust_proxy: cfg.trust_proxy,
            state: Mutex::new(State {
                core: Core::new(cfg.limits, cfg.ice),
                links: HashMap::new(),
                targets: Vec::new(),
            }),
            metrics: Metrics::new(),
            cert: std::sync::RwLock::new(cert),
            quic: cfg.quic,
        });

        let listener = tokio::net::TcpListener::bind(cfg.http_listen)
            .await
            .with_context(|| format!("binding TCP {} for HTTP", cfg.http_listen))?;
        let http_addr = listener.local_addr().context("reading the HTTP address")?;

        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tasks.spawn(accept_loop(
            endpoint.clone(),
            shared.clone(),
            stop_rx.clone(),
        ));
        tasks.spawn(tick_loop(shared.clone(), stop_rx.clone()));
        if let Some(dev) = cfg.dev_cert.clone() {
            tasks.spawn(dev_cert_loop(
                endpoint.clone(),
                shared.clone(),
                dev,
                stop_rx.clone(),
            ));
        }
        let router = crate::http::router(shared.clone(), cfg.web_dir);
        tasks.spawn(crate::http::serve(
            listener,
            router,
            shared.clone(),
            stop_rx,
        ));
        info!(%quic_addr, %http_addr, "serving");
        Ok(Server {
            shared,
            endpoint,
            quic_addr,
            http_addr,
            stop,
            tasks,
            dev_cert: cfg.dev_cert,
        })
    }

    /// Replace the dev certificate now (the server does this by itself a day
    /// before expiry). Open connections keep their keys; new ones get the new
    /// certificate, whose hash `/cert-hash` serves from now on.
    pub fn rotate_dev_cert(&self) -> Result<CertInfo> {
        let dev = self
            .dev_cert
            .as_ref()
            .context("not using a dev certificate")?;
        rotate_dev_cert(&self.endpoint, &self.shared, dev)
    }

    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Graceful shutdown: tell clients to go away, stop accepting, wait up to
    /// the drain timeout for them to leave, then close everything.
    pub async fn shutdown(mut self) {
        info!("shutting down");
        {
            let mut st = self.shared.lock();
            st.core.shutdown(self.shared.quic.reconnect_after_ms);
            self.shared.flush(&mut st);
        }
        let _ = self.stop.send(true);
        let drain = Duration::from_millis(self.shared.quic.drain_timeout_ms);
        let deadline = tokio::time::Instant::now() + drain;
        while tokio::time::Instant::now() < deadline
            && self.shared.lock().core.connection_count() > 0
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.endpoint.close(
            quinn::VarInt::from_u32(ErrorCode::ShuttingDown as u32),
            b"server shutting down",
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
        info!("stopped");
    }
}

/// The server's UDP socket, with kernel buffers sized for many clients' bursts.
fn udp_socket(addr: SocketAddr, buffer: usize) -> Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .context("creating the UDP socket")?;
    if addr.is_ipv6() {
        // `[::]` takes IPv4 clients too, whatever the system's default.
        if let Err(e) = socket.set_only_v6(false) {
            warn!("UDP {addr} will take IPv6 clients only: {e}");
        }
    }
    if buffer > 0 {
        // The kernel clamps these to rmem_max/wmem_max instead of failing.
        let _ = socket.set_recv_buffer_size(buffer);
        let _ = socket.set_send_buffer_size(buffer);
        // Linux reports twice what it grants (bookkeeping overhead included).
        let reported_per_byte = if cfg!(target_os = "linux") { 2 } else { 1 };
        let got = |r: std::io::Result<usize>| r.map(|b| b / reported_per_byte).unwrap_or(0);
        let (rcv, snd) = (
            got(socket.recv_buffer_size()),
            got(socket.send_buffer_size()),
        );
        if rcv < buffer || snd < buffer {
            info!(
                wanted = buffer,
                receive = rcv,
                send = snd,
                "UDP socket buffers smaller than asked (raise net.core.rmem_max / wmem_max)"
            );
        } else {
            debug!(receive = rcv, send = snd, "UDP socket buffers");
        }
    }
    socket.bind(&addr.into())?;
    socket
        .set_nonblocking(true)
        .context("making the UDP socket non-blocking")?;
    Ok(socket.into())
}

/// rustls + quinn server configuration: both ALPNs, ring only, 0-RTT allowed.
fn quinn_server_config(identity: &Identity, tuning: &QuicTuning) -> Result<quinn::ServerConfig> {
    let stream_window = tuning.stream_receive_window.max(4 * 1024);
    let mut tls = rustls::ServerConfig::builder_with_provider(Identity::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 with ring")?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .context("the certificate does not match its key")?;
    tls.alpn_protocols = vec![ALPN_H3.to_vec(), ALPN_NATIVE.to_vec()];
    tls.max_early_data_size = u32::MAX;
    // Resumption tickets are single-use entries of this cache, which is also
    // what stops a replayed 0-RTT Hello from being accepted twice.
    tls.session_storage = rustls::server::ServerSessionMemoryCache::new(16 * 1024);
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .context("building the QUIC TLS config")?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(Duration::from_millis(tuning.idle_timeout_ms))
                .context("idle timeout out of range")?,
        ))
        .keep_alive_interval(
            (tuning.keep_alive_ms > 0).then(|| Duration::from_millis(tuning.keep_alive_ms)),
        )
        .datagram_receive_buffer_size(Some(tuning.datagram_recv_buffer.max(2048)))
        .datagram_send_buffer_size(tuning.datagram_send_buffer.max(2048))
        // The control stream, and for WebTransport its CONNECT stream; any
        // other is refused as it arrives (`refuse_extra_streams`).
        .max_concurrent_bidi_streams(2u32.into())
        // HTTP/3 control/QPACK streams + stream-mode relay frames in flight.
        .max_concurrent_uni_streams(64u32.into())
        // What a client can make the server buffer, however many streams it opens.
        .stream_receive_window(stream_window.into())
        .receive_window((stream_window.saturating_mul(4)).into());
    config.transport_config(Arc::new(transport));
    config.migration(true);
    Ok(config)
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => i,
            _ = stop.wait_for(|s| *s) => None,
        };
        let Some(incoming) = incoming else { break };
        // Decided here, before a task or any connection state exists: a
        // flood of Initials must cost as little as possible.
        let ip = incoming.remote_address().ip().to_canonical();
        let validated = incoming.remote_address_validated();
        let admission = shared.lock().core.admit(Now::system(), ip, validated);
        match admission {
            Admission::Accept => {}
            Admission::Retry => {
                shared.metrics.handshake_retries.inc();
                // `retry` only fails for a validated address, which is never asked to.
                if let Err(e) = incoming.retry() {
                    e.into_incoming().refuse();
                }
                continue;
            }
            Admission::Refuse(code) => {
                shared.metrics.refused(code.as_str());
                incoming.refuse();
                continue;
            }
        }
        let pending = PendingSlot {
            shared: shared.clone(),
            ip,
            validated,
            done: false,
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = handle_incoming(shared.clone(), incoming, pending).await {
                shared.metrics.refused("handshake");
                debug!("connection failed before serving: {e:#}");
            }
        });
    }
}

/// An admitted connection attempt ([`Admission::Accept`]): pending in the
/// core until it is opened there, or given up (when this is dropped).
struct PendingSlot {
    shared: Arc<Shared>,
    ip: std::net::IpAddr,
    validated: bool,
    done: bool,
}

impl PendingSlot {
    /// The client has proved its address: take a connection slot in the core.
    fn open(mut self, transport: crate::session::Transport) -> Result<ConnId, ErrorCode> {
        self.done = true;
        let mut st = self.shared.lock();
        st.core.abandon(self.ip, self.validated);
        st.core.open(
            Now::system(),
            ConnMeta {
                transport,
                ip: Some(self.ip),
            },
        )
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        if !self.done {
            self.shared.lock().core.abandon(self.ip, self.validated);
        }
    }
}

/// From an admitted QUIC attempt to a served connection. The attempt holds
/// no connection slot until the client has proved its address: a completed
/// handshake, or 0-RTT data (which needs a single-use ticket from an earlier
/// connection). Handshake and WebTransport CONNECT together get `hello_timeout`.
async fn handle_incoming(
    shared: Arc<Shared>,
    incoming: quinn::Incoming,
    pending: PendingSlot,
) -> Result<()> {
    let remote = incoming.remote_address();
    let deadline = Duration::from_millis(shared.lock().core.limits().hello_timeout_ms);
    let mut connecting = incoming.accept().context("accepting")?;
    let alpn = tokio::time::timeout(deadline, connecting.handshake_data())
        .await
        .context("TLS handshake timed out")?
        .context("TLS handshake")?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()
        .and_then(|h| h.protocol);
    match alpn.as_deref() {
        Some(p) if p == ALPN_NATIVE => {
            // 0.5-RTT: the Welcome can go out before the handshake completes,
            // once the client has proved itself (see above).
            let (conn, accepted) = match connecting.into_0rtt() {
                Ok((conn, accepted)) => (conn, Some(accepted)),
                Err(connecting) => {
                    let conn = tokio::time::timeout(deadline, connecting)
                        .await
                        .context("QUIC handshake timed out")?
                        .context("QUIC handshake")?;
                    (conn, None)
                }
            };
            let proof = async {
                tokio::select! {
                    // The handshake completed; the control stream comes later.
                    _ = async { if let Some(a) = accepted { a.await; } } => Ok(None),
                    s = conn.accept_bi() => s.map(Some),
                }
            };
            let first = match tokio::time::timeout(deadline, proof).await {
                Ok(Ok(first)) if conn.close_reason().is_none() => first,
                Ok(Ok(_)) => anyhow::bail!("QUIC handshake failed"),
                Ok(Err(e)) => return Err(e).context("QUIC handshake"),
                Err(_) => {
                    conn.close(
                        (ErrorCode::HelloTimeout as u32).into(),
                        b"handshake timed out",
                    );
                    anyhow::bail!("QUIC handshake timed out");
                }
            };
            let first = first.map(|(s, r)| -> (Writer, Reader) { (Box::pin(s), Box::pin(r)) });
            let wire = Wire::Quic(conn);
            match pending.open(wire.kind()) {
                Ok(id) => serve_connection(shared, wire, id, first).await,
                Err(code) => refuse(&shared, &wire, code).await,
            }
        }
        Some(p) if p == ALPN_H3 => {
            let request = tokio::time::timeout(
                deadline,
                wtransport::endpoint::IncomingSessionFuture::with_quic_connecting(connecting),
            )
            .await
            .context("WebTransport session request timed out")?
            .context("WebTransport session request")?;
            if request.path() != WEBTRANSPORT_PATH {
                debug!(%remote, path = request.path(), "WebTransport request for an unknown path");
                shared.metrics.refused("not_found");
                request.not_found().await;
                return Ok(());
            }
            let conn = request
                .accept()
                .await
                .context("accepting WebTransport session")?;
            let wire = Wire::WebTransport(conn);
            match pending.open(wire.kind()) {
                Ok(id) => serve_connection(shared, wire, id, None).await,
                Err(code) => refuse(&shared, &wire, code).await,
            }
        }
        other => {
            // rustls refuses unknown ALPNs during the handshake; this is a safety net.
            shared.metrics.refused("alpn");
            debug!(%remote, alpn = ?other, "no usable ALPN");
        }
    }
    Ok(())
}

/// Refuse a connection whose handshake is done, with a code and reason the
/// client can read (`server_full`, `shutting_down`), as on every transport.
async fn refuse(shared: &Shared, wire: &Wire, code: ErrorCode) {
    shared.metrics.refused(code.as_str());
    debug!(remote = %wire.remote_address(), %code, "connection refused");
    wire.close(code as u32, code.as_str());
    let _ = tokio::time::timeout(Duration::from_secs(1), wire.closed()).await;
}

/// Serve one connection, already open in the core as `id`, until it closes.
/// `first` is its control stream when the client opened it in 0-RTT.
async fn serve_connection(
    shared: Arc<Shared>,
    wire: Wire,
    id: ConnId,
    first: Option<(Writer, Reader)>,
) {
    let transport = wire.kind();
    let remote = wire.remote_address();
    let (ctrl_tx, ctrl_rx) = mpsc::channel(shared.quic.control_queue.max(8));
    let relay_queue = Arc::new(LatestQueue::new(shared.quic.stream_relay_queue));
    let datagrams_queued = Arc::new(AtomicU64::new(0));
    let datagrams_read = Arc::new(AtomicU64::new(0));
    shared.lock().links.insert(
        id,
        Link {
            wire: Some(wire.clone()),
            control: ctrl_tx,
            relay_queue: relay_queue.clone(),
            datagrams_queued: datagrams_queued.clone(),
            kill: None,
            dropped: false,
        },
    );
    shared.metrics.connection_opened(transport);
    debug!(conn = id, %remote, transport = transport.as_str(), "connection open");

    let mut tasks = JoinSet::new();
    tasks.spawn(control_task(
        shared.clone(),
        wire.clone(),
        id,
        ctrl_rx,
        first,
    ));
    let mut datagrams = tokio::spawn(datagram_task(
        shared.clone(),
        wire.clone(),
        id,
        datagrams_read.clone(),
    ));
    tasks.spawn(uni_task(shared.clone(), wire.clone(), id));
    tasks.spawn(stream_relay_writer(wire.clone(), relay_queue));
    let mut ended = wire.closed().await;
    if !ended.clean {
        // A WebTransport client's close code reaches us through the driver's
        // errors, not through the QUIC connection's.
        let told = tokio::time::timeout(Duration::from_millis(100), &mut datagrams).await;
        if let Ok(Ok(Some(e))) = told {
            ended = e;
        }
    }
    datagrams.abort();
    tasks.abort_all();
    let stats = wire.quic().stats();
    let lost = QuicLosses {
        datagrams_in: stats
            .frame_rx
            .datagram
            .saturating_sub(datagrams_read.load(Ordering::Relaxed)),
        datagrams_out: datagrams_queued
            .load(Ordering::Relaxed)
            .saturating_sub(stats.frame_tx.datagram),
        packets: stats.path.lost_packets,
    };
    shared.metrics.quic_losses(&lost);
    debug!(
        conn = id,
        clean = ended.clean,
        reason = %ended.reason,
        rtt_us = stats.path.rtt.as_micros() as u64,
        lost_packets = lost.packets,
        congestion_events = stats.path.congestion_events,
        datagrams_dropped_in = lost.datagrams_in,
        datagrams_dropped_out = lost.datagrams_out,
        "connection closed"
    );
    {
        let mut st = shared.lock();
        st.links.remove(&id);
        st.core.closed(Now::system(), id, ended.clean);
        shared.flush(&mut st);
    }
    shared.metrics.connection_closed(transport);
}

/// The control stream: accept it, then read frames into the core and write
/// queued frames out, until either side ends.
async fn control_task(
    shared: Arc<Shared>,
    wire: Wire,
    id: ConnId,
    mut rx: mpsc::Receiver<Ctrl>,
    first: Option<(Writer, Reader)>,
) {
    // Until the client opens its control stream, only a Close can be acted on.
    let (send, recv) = match first {
        Some(s) => s,
        None => loop {
            tokio::select! {
                s = wire.accept_bi() => match s {
                    Ok(s) => break s,
                    Err(_) => return,
                },
                item = rx.recv() => match item {
                    Some(Ctrl::Close(code, reason)) => return wire.close(code as u32, &reason),
                    Some(Ctrl::Frame(_)) => continue,
                    None => return,
                },
            }
        },
    };
    // All run until the connection ends (which aborts this task): the writer
    // must outlive a reader that stopped on bad input, to deliver the error.
    tokio::join!(
        control_reader(&shared, id, recv),
        control_writer(&wire, send, rx),
        refuse_extra_streams(&wire),
    );
}

/// The protocol uses one bidirectional stream; any other is refused as it
/// arrives, so it holds no buffered data and costs no more than an honest one.
async fn refuse_extra_streams(wire: &Wire) {
    while wire
        .refuse_bi(ErrorCode::ProtocolViolation as u32)
        .await
        .is_ok()
    {}
}

async fn control_reader(shared: &Shared, id: ConnId, mut recv: Reader) {
    let mut decoder = FrameDecoder::new(shared.max_frame_bytes);
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        let n = match recv.read(&mut buf).await {
            Ok(0) | Err(_) => return, // finished or reset: wait for the connection to end
            Ok(n) => n,
        };
        decoder.extend(&buf[..n]);
        loop {
            let frame = match decoder.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    let mut st = shared.lock();
                    st.core.bad_frame(id, e.code(), &e.to_string());
                    shared.flush(&mut st);
                    return;
                }
            };
            shared.metrics.signaling_messages.inc();
            let msg = protocol::decode::<ClientMsg>(&frame);
            let mut st = shared.lock();
            match msg {
                Ok(msg) => st.core.handle(Now::system(), id, msg),
                Err(e) => {
                    st.core.bad_frame(id, e.code(), &e.to_string());
                    shared.flush(&mut st);
                    return;
                }
            }
            shared.flush(&mut st);
        }
    }
}

async fn control_writer(wire: &Wire, mut send: Writer, mut rx: mpsc::Receiver<Ctrl>) {
    while let Some(item) = rx.recv().await {
        match item {
            Ctrl::Frame(bytes) => {
                if send.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Ctrl::Close(code, reason) => {
                // Closing a QUIC connection discards unsent stream data, so
                // finish the stream and give the error message a few RTTs.
                let _ = send.shutdown().await;
                let grace =
                    (wire.rtt() * 3 + Duration::from_millis(50)).min(Duration::from_secs(1));
                tokio::time::sleep(grace).await;
                wire.close(code as u32, &reason);
                return;
            }
        }
    }
}

/// Forwards datagrams until the connection ends; returns how it ended when
/// the error says (see [`crate::wire::ended_by`]).
async fn datagram_task(
    shared: Arc<Shared>,
    wire: Wire,
    id: ConnId,
    read: Arc<AtomicU64>,
) -> Option<Ended> {
    loop {
        match wire.read_datagram().await {
            Ok(d) => {
                read.fetch_add(1, Ordering::Relaxed);
                crate::relay::forward(&shared, id, &d, Via::Datagram)
            }
            Err(e) => return crate::wire::ended_by(&e),
        }
    }
}

/// Every client-opened unidirectional stream is one relay frame.
async fn uni_task(shared: Arc<Shared>, wire: Wire, id: ConnId) {
    let max = shared.max_relay_frame;
    let mut readers = JoinSet::new();
    loop {
        tokio::select! {
            s = wire.accept_uni() => {
                let Ok(stream) = s else { break };
                let shared = shared.clone();
                readers.spawn(async move {
                    let read = tokio::time::timeout(
                        Duration::from_secs(5),
                        crate::wire::read_to_end_limited(stream, max),
                    ).await;
                    match read {
                        Ok(Ok(frame)) => crate::relay::forward(&shared, id, &frame, Via::Stream),
                        _ => shared.metrics.relay_drop(crate::session::RelayDrop::Malformed),
                    }
                });
            }
            Some(_) = readers.join_next(), if !readers.is_empty() => {}
        }
    }
}

/// Writes stream-mode relay frames, one unidirectional stream each.
async fn stream_relay_writer(wire: Wire, queue: Arc<LatestQueue>) {
    loop {
        let frame = queue.pop().await;
        let Ok(mut s) = wire.open_uni().await else {
            return;
        };
        if s.write_all(&frame).await.is_err() {
            continue;
        }
        let _ = s.shutdown().await;
    }
}

async fn tick_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(Duration::from_millis(250));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let mut st = shared.lock();
        st.core.tick(Now::system());
        shared.flush(&mut st);
    }
}
