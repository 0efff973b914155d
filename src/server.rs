//! The server as a whole, its lifecycle: bind the UDP and TCP ports, start
//! every task (the QUIC endpoint's accept loop, the core's timers, the HTTP
//! port, the dev certificate's rotation, cluster mode's node), and shut
//! down gracefully (drain, `GoingAway`, close).
//!
//! The transports are elsewhere: QUIC and WebTransport in `quic`, the
//! WebSocket on the HTTP port in `websocket` and `http`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

pub use crate::config::{DevCert, QuicTuning, ServerConfig};
pub use crate::hub::CertInfo;
use crate::hub::Shared;
use crate::protocol::{ErrorCode, NodeAddr};

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
    endpoint.set_server_config(Some(crate::quic::quinn_server_config(
        &identity,
        &shared.tuning,
    )?));
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
        let server_config = crate::quic::quinn_server_config(&cfg.identity, &cfg.quic)?;
        let socket = crate::quic::udp_socket(cfg.listen, cfg.quic.udp_socket_buffer)
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
        if let Some(access) = cfg.access {
            shared.lock().core.set_access(access);
        }

        let listener = tokio::net::TcpListener::bind(cfg.http_listen)
            .await
            .with_context(|| format!("binding TCP {} for HTTP", cfg.http_listen))?;
        let http_addr = listener.local_addr().context("reading the HTTP address")?;

        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tasks.spawn(crate::quic::accept_loop(
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
        let cert = shared.cert();
        let hash = cert.dev.then(|| hex::decode(&cert.hex).unwrap_or_default());
        let node = match cfg.cluster {
            Some(mut cluster) => {
                cluster.node = crate::node::complete_addr(cluster.node, quic_addr, http_addr, hash);
                let _ = shared.me.set(crate::regions::Me {
                    addr: cluster.node.clone(),
                    region: cluster.region.clone(),
                });
                Some(crate::node::start(shared.clone(), cluster, stop_rx, &mut tasks).await?)
            }
            None => {
                let addr =
                    crate::node::complete_addr(NodeAddr::default(), quic_addr, http_addr, hash);
                let _ = shared.me.set(crate::regions::Me { addr, region: None });
                None
            }
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
