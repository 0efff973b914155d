//! The QUIC side of the I/O shell, and the server as a whole: one quinn
//! endpoint on one UDP port, admission before any state is kept, ALPN
//! dispatch to raw QUIC (`fsp2p/1`) or WebTransport (`h3`), and the tasks of
//! one QUIC connection (control stream, datagrams, unidirectional streams).
//!
//! Everything that is not about QUIC lives elsewhere: what the tasks share
//! in `hub`, one connection's life in `conn` (this module only adapts QUIC's
//! bytes to it), where a relay frame goes in [`crate::relay`], the HTTP port
//! in `http` and `websocket`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::certs::Identity;
pub use crate::config::{DevCert, QuicTuning, ServerConfig};
use crate::conn::{Admitted, Conn, Outlet};
use crate::first::{decode_first, first_param};
pub use crate::hub::CertInfo;
use crate::hub::{Ctrl, LatestQueue, Shared};
use crate::metrics::{QuicLosses, Refusal};
use crate::protocol::{
    ClientMsg, ErrorCode, FrameDecoder, ALPN_H3, ALPN_NATIVE, WEBTRANSPORT_PATH,
};
use crate::session::{Admission, ConnMeta, Via};
use crate::webtransport;
use crate::wire::{Ended, Reader, Wire, Writer};

/// A running server. Drop does not stop it; call [`Server::shutdown`].
pub struct Server {
    /// What the server's tasks share (for embedding programs: metrics, state).
    pub(crate) shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    quic_addr: SocketAddr,
    http_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    dev_cert: Option<DevCert>,
    /// Cluster mode: this server as a node.
    node: Option<crate::node::Node>,
}

fn rotate_dev_cert(endpoint: &quinn::Endpoint, shared: &Shared, dev: &DevCert) -> Result<CertInfo> {
    let identity = crate::certs::write_dev(&dev.dir, &dev.hosts)?;
    endpoint.set_server_config(Some(quinn_server_config(&identity, &shared.tuning)?));
    let info = CertInfo::of(&identity);
    shared.set_cert(info.clone());
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

        let shared = Arc::new(Shared::new(
            cfg.limits,
            cfg.ice,
            cfg.quic,
            &cfg.identity,
            cfg.proxy,
        ));

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
        tasks.spawn(crate::hub::run_timers(shared.clone(), stop_rx.clone()));
        if let Some(dev) = cfg.dev_cert.clone() {
            tasks.spawn(dev_cert_loop(
                endpoint.clone(),
                shared.clone(),
                dev,
                stop_rx.clone(),
            ));
        }
        let ws = axum::routing::get(crate::websocket::upgrade);
        let router = crate::http::router(shared.clone(), cfg.web_dir, ws);
        tasks.spawn(crate::http::serve(
            listener,
            router,
            shared.clone(),
            stop_rx.clone(),
        ));
        let node = match cfg.cluster {
            Some(mut cluster) => {
                let cert = shared.cert();
                let hash = cert.dev.then(|| hex::decode(&cert.hex).unwrap_or_default());
                cluster.node = crate::node::complete_addr(cluster.node, quic_addr, http_addr, hash);
                Some(crate::node::start(shared.clone(), cluster, stop_rx, &mut tasks).await?)
            }
            None => None,
        };
        info!(%quic_addr, %http_addr, "serving");
        Ok(Server {
            shared,
            endpoint,
            quic_addr,
            http_addr,
            stop,
            tasks,
            dev_cert: cfg.dev_cert,
            node,
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

    /// The UDP address QUIC and WebTransport listen on.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// The TCP address of the HTTP port.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Graceful shutdown: tell clients to go away, stop accepting, wait up to
    /// the drain timeout for them to leave, then close everything.
    pub async fn shutdown(mut self) {
        info!("shutting down");
        if let Some(node) = &self.node {
            // Sessions go to another node first, their players with them;
            // whoever is left gets GoingAway below.
            crate::node::drain(&self.shared, node).await;
        }
        {
            let mut st = self.shared.lock();
            st.core.shutdown(self.shared.tuning.reconnect_after_ms);
            self.shared.flush(&mut st);
        }
        let _ = self.stop.send(true);
        let drain = Duration::from_millis(self.shared.tuning.drain_timeout_ms);
        let deadline = tokio::time::Instant::now() + drain;
        while tokio::time::Instant::now() < deadline
            && self.shared.lock().core.connection_count() > 0
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Whoever is still here is closed, on every transport.
        self.shared
            .close_all(ErrorCode::ShuttingDown, "server shutting down");
        tokio::time::sleep(Duration::from_millis(50)).await;
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
        if let Some(node) = &self.node {
            crate::node::leave(node).await;
        }
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
    if tuning.ack_threshold > 0 {
        let mut ack = quinn::AckFrequencyConfig::default();
        ack.ack_eliciting_threshold(tuning.ack_threshold.into())
            .max_ack_delay(Some(Duration::from_millis(25)));
        transport.ack_frequency_config(Some(ack));
    }
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
        let admission = {
            let mut st = shared.lock();
            let admission = st.core.admit(crate::hub::now(), ip, validated);
            shared.flush(&mut st);
            admission
        };
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
                shared.metrics.refused(Refusal::Code(code));
                incoming.refuse();
                continue;
            }
        }
        let pending = PendingSlot {
            shared: shared.clone(),
            admitted: Some(Admitted { ip, validated }),
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = handle_incoming(shared.clone(), incoming, pending).await {
                shared.metrics.refused(Refusal::Handshake);
                debug!("connection failed before serving: {e:#}");
            }
        });
    }
}

/// An admitted connection attempt: pending in the core until it is opened
/// there ([`PendingSlot::take`]), or given up when this is dropped.
struct PendingSlot {
    shared: Arc<Shared>,
    admitted: Option<Admitted>,
}

impl PendingSlot {
    /// The client has proved its address: hand the attempt to [`Conn::open`].
    fn take(&mut self) -> Option<Admitted> {
        self.admitted.take()
    }

    /// Whether the attempt's address was validated by a Retry.
    fn validated(&self) -> bool {
        self.admitted.is_some_and(|a| a.validated)
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        if let Some(a) = self.admitted.take() {
            let mut st = self.shared.lock();
            st.core.abandon(a.ip, a.validated);
            self.shared.flush(&mut st);
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
    let arrived = tokio::time::Instant::now();
    // Handshake, proof and CONNECT together: one deadline for all of them.
    let end = arrived + Duration::from_millis(shared.lock().core.limits().hello_timeout_ms);
    let mut connecting = incoming.accept().context("accepting")?;
    let alpn = tokio::time::timeout_at(end, connecting.handshake_data())
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
            let (conn, mut accepted) = early(connecting, end).await?;
            let proof = async {
                tokio::select! {
                    // The handshake completed; the control stream comes later.
                    _ = async { if let Some(a) = accepted.as_mut() { a.await; } } => Ok(None),
                    s = conn.accept_bi() => s.map(Some),
                }
            };
            let first = match tokio::time::timeout_at(end, proof).await {
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
            let control = match first {
                // 0-RTT data before the handshake completed, from an address
                // no Retry validated: a ticket, not yet a proven address.
                Some((s, r)) => match accepted.filter(|_| !pending.validated()) {
                    Some(handshake) => Control::Provisional((Box::pin(s), Box::pin(r)), handshake),
                    None => Control::Opened((Box::pin(s), Box::pin(r))),
                },
                None => Control::ClientOpens,
            };
            serve(&shared, Wire::Quic(conn), pending, control, end).await;
        }
        Some(p) if p == ALPN_H3 => {
            // 0.5-RTT: the server's HTTP/3 SETTINGS go out in its first
            // flight, with the handshake; a browser waits for them before it
            // sends its CONNECT. A browser's CONNECT comes with its Finished,
            // so waiting for the handshake below costs it nothing; a client
            // that sent CONNECT as 0-RTT data waits for its address proof.
            let (conn, handshake) = early(connecting, end).await?;
            let request = tokio::time::timeout_at(end, webtransport::Request::accept(conn.clone()))
                .await
                .context("WebTransport session request timed out")?
                .context("WebTransport session request")?;
            if let Some(handshake) = handshake {
                tokio::time::timeout_at(end, handshake)
                    .await
                    .context("QUIC handshake timed out")?;
            }
            anyhow::ensure!(conn.close_reason().is_none(), "QUIC handshake failed");
            debug!(
                %remote,
                after_ms = arrived.elapsed().as_secs_f64() * 1000.0,
                "WebTransport CONNECT read (time since the first Initial)"
            );
            // Every refusal below is a response the client reads (PROTOCOL.md §1).
            let request = match request {
                Ok(request) => request,
                Err((why, refusable)) => {
                    debug!(%remote, "not a WebTransport CONNECT: {}", why.0);
                    shared.metrics.refused(Refusal::BadRequest);
                    refusable.refuse(400).await;
                    return Ok(());
                }
            };
            let metrics = shared.clone();
            request.on_rejected(move || {
                metrics.metrics.webtransport_requests_rejected.inc();
            });
            // The URL may hold a join code: only its path is ever logged.
            if request.url.path() != WEBTRANSPORT_PATH {
                debug!(%remote, path = request.url.path(), "WebTransport request for an unknown path");
                shared.metrics.refused(Refusal::NotFound);
                request.refuse(404).await;
                return Ok(());
            }
            let first = match first_param(request.url.query())
                .map(decode_first)
                .transpose()
            {
                Ok(first) => first,
                Err(e) => {
                    debug!(%remote, "WebTransport request with a bad `first`: {e}");
                    shared.metrics.refused(Refusal::BadRequest);
                    request.refuse(400).await;
                    return Ok(());
                }
            };
            let session = request.session();
            let control = match first {
                Some(msgs) => Control::ServerOpens(msgs),
                None => Control::ClientOpens,
            };
            serve(
                &shared,
                Wire::WebTransportServer(session),
                pending,
                control,
                end,
            )
            .await;
        }
        other => {
            // rustls refuses unknown ALPNs during the handshake; this is a safety net.
            shared.metrics.refused(Refusal::Alpn);
            debug!(%remote, alpn = ?other, "no usable ALPN");
        }
    }
    Ok(())
}

/// The connection in 0.5-RTT: usable before its handshake completes (quinn
/// always allows this on a server), with the future that says when it has.
/// Should quinn ever refuse, it waits for the handshake instead.
async fn early(
    connecting: quinn::Connecting,
    end: tokio::time::Instant,
) -> Result<(quinn::Connection, Option<quinn::ZeroRttAccepted>)> {
    Ok(match connecting.into_0rtt() {
        Ok((conn, accepted)) => (conn, Some(accepted)),
        Err(connecting) => {
            let conn = tokio::time::timeout_at(end, connecting)
                .await
                .context("QUIC handshake timed out")?
                .context("QUIC handshake")?;
            (conn, None)
        }
    })
}

/// Where a connection's control stream comes from.
enum Control {
    /// The client opens it after the handshake (and sends `Hello` first).
    ClientOpens,
    /// The client opened it in 0-RTT, and its address is proven (a Retry).
    Opened((Writer, Reader)),
    /// The client opened it in 0-RTT from an unproven address: served at
    /// once, but it holds no slot of its address until the handshake
    /// completes (see [`Conn::open_provisional`]).
    Provisional((Writer, Reader), quinn::ZeroRttAccepted),
    /// The client's first request came in the CONNECT URL
    /// ([`crate::first`]): the server opens the control stream and answers on it.
    ServerOpens(Vec<ClientMsg>),
}

/// Open a QUIC connection whose client has proved its address in the core
/// and serve it until it closes; or refuse it with a code and reason the
/// client can read (`server_full`, `shutting_down`), as on every transport.
async fn serve(
    shared: &Arc<Shared>,
    wire: Wire,
    mut pending: PendingSlot,
    control: Control,
    end: tokio::time::Instant,
) {
    let meta = ConnMeta {
        transport: wire.kind(),
        ip: Some(wire.remote_address().ip().to_canonical()),
    };
    let opened = if matches!(control, Control::Provisional(..)) {
        Conn::open_provisional(shared, meta, wire.clone())
    } else {
        Conn::open(shared, meta, pending.take(), Some(wire.clone()))
    };
    let (conn, outlet) = match opened {
        // A WebTransport session is answered only now, once the core has
        // taken it: a limit refuses it with a status instead of a 200.
        Ok(opened) => match &wire {
            Wire::WebTransportServer(session) => match session.accept().await {
                Ok(()) => opened,
                Err(_) => return opened.0.close(false),
            },
            _ => opened,
        },
        Err(code) => {
            if let Wire::WebTransportServer(session) = &wire {
                // 503: server_full and shutting_down both say "not now".
                return session.refuse(503).await;
            }
            wire.close(code as u32, code.as_str());
            let _ = tokio::time::timeout(Duration::from_secs(1), wire.closed()).await;
            return;
        }
    };
    let mut confirm = None;
    let stream = match control {
        Control::ClientOpens => None,
        Control::Opened(stream) => Some(stream),
        Control::Provisional(stream, handshake) => {
            confirm = Some((handshake, pending));
            Some(stream)
        }
        Control::ServerOpens(first) => {
            // Bounded: a client that grants no stream must not hold the slot.
            let Ok(Ok(stream)) = tokio::time::timeout_at(end, wire.open_bi()).await else {
                wire.close(ErrorCode::HelloTimeout as u32, "no stream for the answer");
                return conn.close(false);
            };
            // The answers wait in the control queue for the writer.
            for msg in first {
                conn.handle(msg);
            }
            Some(stream)
        }
    };
    serve_quic(conn, outlet, wire, stream, confirm, end).await;
}

/// The tasks of one open QUIC connection, until it closes.
async fn serve_quic(
    conn: Arc<Conn>,
    outlet: Outlet,
    wire: Wire,
    first: Option<(Writer, Reader)>,
    confirm: Option<(quinn::ZeroRttAccepted, PendingSlot)>,
    end: tokio::time::Instant,
) {
    let datagrams_read = Arc::new(AtomicU64::new(0));
    let Outlet {
        control,
        relay,
        datagrams_queued,
        ..
    } = outlet;
    let mut tasks = JoinSet::new();
    tasks.spawn(control_task(conn.clone(), wire.clone(), control, first));
    let mut datagrams = tokio::spawn(datagram_task(
        conn.clone(),
        wire.clone(),
        datagrams_read.clone(),
    ));
    tasks.spawn(uni_task(conn.clone(), wire.clone()));
    tasks.spawn(stream_relay_writer(wire.clone(), relay));
    if let Some((handshake, mut pending)) = confirm {
        // A provisional connection takes a slot of its address once the
        // handshake proves the address, or is closed.
        let (conn, wire) = (conn.clone(), wire.clone());
        tasks.spawn(async move {
            let done = tokio::time::timeout_at(end, handshake).await.is_ok();
            let confirmed = match pending.take() {
                Some(a) if done && wire.close_reason().is_none() => conn.confirm(a),
                _ => Err(ErrorCode::HelloTimeout),
            };
            if let Err(code) = confirmed {
                wire.close(code as u32, code.as_str());
            }
        });
    }
    let mut ended = wire.closed().await;
    if let Wire::WebTransportServer(session) = &wire {
        if let Some(webtransport::Closed::WithoutCapsule(how)) = session.close_outcome() {
            // Ordinary (a tab closed, a client that just hangs up): counted, logged at debug.
            conn.shared()
                .metrics
                .webtransport_closed_without_capsule
                .inc();
            debug!(
                conn = conn.id(),
                how = how.as_str(),
                "WebTransport client closed without a close capsule"
            );
        }
    }
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
    conn.shared().metrics.quic_losses(&lost);
    debug!(
        conn = conn.id(),
        clean = ended.clean,
        reason = %ended.reason,
        rtt_us = stats.path.rtt.as_micros() as u64,
        lost_packets = lost.packets,
        congestion_events = stats.path.congestion_events,
        datagrams_dropped_in = lost.datagrams_in,
        datagrams_dropped_out = lost.datagrams_out,
        "QUIC connection ended"
    );
    conn.close(ended.clean);
}

/// The control stream: accept it, then read frames into the core and write
/// queued frames out, until either side ends.
async fn control_task(
    conn: Arc<Conn>,
    wire: Wire,
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
                    Some(Ctrl::Body(_)) => continue,
                    None => return,
                },
            }
        },
    };
    // All run until the connection ends (which aborts this task): the writer
    // must outlive a reader that stopped on bad input, to deliver the error.
    tokio::join!(
        control_reader(&conn, recv),
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

/// Control frames (`varint(len) || body`) from the stream to the lifecycle.
async fn control_reader(conn: &Conn, mut recv: Reader) {
    let mut decoder = FrameDecoder::new(conn.shared().max_frame_bytes);
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        let n = match recv.read(&mut buf).await {
            Ok(0) | Err(_) => return, // finished or reset: wait for the connection to end
            Ok(n) => n,
        };
        decoder.extend(&buf[..n]);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    if !conn.control(&frame) {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => return conn.bad_input(e.code(), &e.to_string()),
            }
        }
    }
}

async fn control_writer(wire: &Wire, mut send: Writer, mut rx: mpsc::Receiver<Ctrl>) {
    while let Some(item) = rx.recv().await {
        match item {
            Ctrl::Body(body) => {
                // The stream's framing: varint(len) || body.
                let mut frame = BytesMut::with_capacity(body.len() + 5);
                crate::protocol::put_varint(&mut frame, body.len() as u32);
                frame.extend_from_slice(&body);
                if send.write_all(&frame).await.is_err() {
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
async fn datagram_task(conn: Arc<Conn>, wire: Wire, read: Arc<AtomicU64>) -> Option<Ended> {
    loop {
        match wire.read_datagram().await {
            Ok(d) => {
                read.fetch_add(1, Ordering::Relaxed);
                conn.relay(&d, Via::Datagram)
            }
            Err(e) => return crate::wire::ended_by(&e),
        }
    }
}

/// Every client-opened unidirectional stream is one relay frame.
async fn uni_task(conn: Arc<Conn>, wire: Wire) {
    let max = conn.shared().max_relay_frame;
    let mut readers = JoinSet::new();
    loop {
        tokio::select! {
            s = wire.accept_uni() => {
                let Ok(stream) = s else { break };
                let conn = conn.clone();
                readers.spawn(async move {
                    let read = tokio::time::timeout(
                        Duration::from_secs(5),
                        crate::wire::read_to_end_limited(stream, max),
                    ).await;
                    match read {
                        Ok(Ok(frame)) => conn.relay(&frame, Via::Stream),
                        _ => conn.shared().metrics.relay_drop(crate::session::RelayDrop::Malformed),
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
