//! The server's QUIC transport: one quinn endpoint on one UDP port
//! (socket, TLS and transport settings), admission before any state is
//! kept, ALPN dispatch to raw QUIC (`fsp2p/1`) or WebTransport (`h3`), and
//! opening the connection in the core. The tasks of one open connection
//! (control stream, datagrams, unidirectional streams) are in `tasks`.
//!
//! Everything that is not about QUIC lives elsewhere: the server's
//! lifecycle in [`crate::server`], what the tasks share in `hub`, one
//! connection's life in `conn` (this module only adapts QUIC's bytes to
//! it), where a relay frame goes in [`crate::relay`], the HTTP/3 side of
//! WebTransport in [`crate::webtransport`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::certs::Identity;
use crate::config::QuicTuning;
use crate::conn::{Admitted, Conn};
use crate::first::{access_token_param, decode_first, first_param};
use crate::hub::Shared;
use crate::metrics::Refusal;
use crate::protocol::{ClientMsg, ErrorCode, ALPN_H3, ALPN_NATIVE, WEBTRANSPORT_PATH};
use crate::session::{Admission, ConnMeta};
use crate::webtransport;
use crate::wire::{Reader, Wire, Writer};

mod tasks;
use tasks::serve_quic;

/// The server's UDP socket, with kernel buffers sized for many clients' bursts.
pub(crate) fn udp_socket(addr: SocketAddr, buffer: usize) -> Result<std::net::UdpSocket> {
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
pub(crate) fn quinn_server_config(
    identity: &Identity,
    tuning: &QuicTuning,
) -> Result<quinn::ServerConfig> {
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

/// Every QUIC connection attempt, from its first packet: admitted (or sent
/// a Retry, or refused) before a task exists, then served in its own task.
pub(crate) async fn accept_loop(
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
            serve(&shared, Wire::Quic(conn), pending, control, end, None).await;
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
            let token = access_token_param(request.url.query());
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
                token,
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
    url_token: Option<String>,
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
    if let Some(t) = url_token {
        conn.url_token(t);
    }
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
