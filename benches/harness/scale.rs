//! Scale: idle connections held and memory per connection, sessions created per second.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Result;
use flightsim_p2p::client::{Client, ClientConfig, QuicEndpoint, Trust};
use flightsim_p2p::protocol::ClientMsg;

use crate::load::rss_bytes;

#[derive(Debug, Clone, serde::Serialize)]
pub struct IdleResult {
    pub connections: usize,
    pub connect_secs: f64,
    pub rss_before_mib: f64,
    pub rss_after_mib: f64,
    pub rss_per_connection_kib: f64,
}

/// Open `n` idle connections (Hello said, no session) and measure the server's RSS.
pub async fn idle_connections(
    server: SocketAddr,
    hash: [u8; 32],
    pid: u32,
    n: usize,
) -> Result<IdleResult> {
    let cfg = ClientConfig::new(server, Trust::CertHash(hash));
    // Several client endpoints (sockets); each carries many connections.
    let endpoints: Vec<QuicEndpoint> = (0..16)
        .map(|_| QuicEndpoint::new(&cfg))
        .collect::<Result<_, _>>()?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_bytes(pid);
    let start = Instant::now();
    let mut clients = Vec::with_capacity(n);
    let batch = 128;
    let mut i = 0;
    while i < n {
        let mut set = tokio::task::JoinSet::new();
        for k in i..(i + batch).min(n) {
            let mut c = cfg.clone();
            c.endpoint = Some(endpoints[k % endpoints.len()].clone());
            c.keep_alive = Duration::from_secs(10);
            c.idle_timeout = Duration::from_secs(60);
            set.spawn(async move { Client::connect(&c, None).await });
        }
        while let Some(r) = set.join_next().await {
            if let Ok(Ok(c)) = r {
                clients.push(c);
            }
        }
        i += batch;
    }
    let connect_secs = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_bytes(pid);
    let held = clients.len();
    for c in clients {
        c.abandon();
    }
    Ok(IdleResult {
        connections: held,
        connect_secs,
        rss_before_mib: before as f64 / 1048576.0,
        rss_after_mib: after as f64 / 1048576.0,
        rss_per_connection_kib: after.saturating_sub(before) as f64 / held.max(1) as f64 / 1024.0,
    })
}

/// Sessions created (and left) per second by `clients` clients looping for `secs`.
pub async fn sessions_per_sec(
    server: SocketAddr,
    hash: [u8; 32],
    clients: usize,
    secs: f64,
) -> Result<f64> {
    let cfg = ClientConfig::new(server, Trust::CertHash(hash));
    let mut set = tokio::task::JoinSet::new();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    for _ in 0..clients {
        let cfg = cfg.clone();
        set.spawn(async move {
            let mut c = Client::connect(&cfg, None).await?;
            let mut n = 0u64;
            while Instant::now() < deadline {
                c.create_session(2, None).await?;
                c.send(&ClientMsg::LeaveSession).await?;
                c.wait_for(|m| {
                    matches!(m, flightsim_p2p::protocol::ServerMsg::SessionLeft { .. })
                        .then_some(())
                })
                .await?;
                n += 1;
            }
            c.close().await;
            anyhow::Ok(n)
        });
    }
    let mut total = 0;
    while let Some(r) = set.join_next().await {
        total += r??;
    }
    Ok(total as f64 / secs)
}
