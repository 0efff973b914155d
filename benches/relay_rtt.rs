//! Quick relay round trip on loopback, against a bare UDP echo measured in the same run.
//!
//! `cargo bench --bench relay_rtt` (add `-- --quick` for a short run). Two
//! clients join one session; A sends a 200-byte frame to B through the relay,
//! B sends it back through the relay, A times the round trip (two relay hops,
//! four QUIC datagram legs). The baseline is the same ping-pong between two
//! plain UDP sockets, no crypto, no server: the floor of this machine.
//! Absolute numbers on a shared 2-core machine are noisy; the ratio is the point.

use std::time::{Duration, Instant};

use flightsim_p2p::client::{Client, ClientConfig, Trust};
use flightsim_p2p::limits::Limits;
use flightsim_p2p::protocol::RelayMode;
use flightsim_p2p::server::{QuicTuning, Server, ServerConfig};
use flightsim_p2p::turn::IceConfig;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn summary(name: &str, mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    let (p50, p99) = (percentile(&v, 0.5), percentile(&v, 0.99));
    println!(
        "{name:<22} n={:<6} p50={:>8.1}µs p99={:>8.1}µs",
        v.len(),
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
    (p50, p99)
}

fn udp_baseline(n: usize) -> Vec<Duration> {
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    b.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    a.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let b_addr = b.local_addr().unwrap();
    let a_addr = a.local_addr().unwrap();
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        for _ in 0..n {
            let Ok(len) = b.recv(&mut buf) else { return };
            let _ = b.send_to(&buf[..len], a_addr);
        }
    });
    let payload = [7u8; 200];
    let mut buf = [0u8; 2048];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        a.send_to(&payload, b_addr).unwrap();
        if a.recv(&mut buf).is_ok() {
            out.push(t.elapsed());
        }
    }
    let _ = echo.join();
    out
}

async fn relay(n: usize) -> Vec<Duration> {
    let dir = std::env::temp_dir().join(format!("fsp2p-bench-{}", std::process::id()));
    let identity = flightsim_p2p::certs::dev_identity(&dir, &["localhost".into()]).unwrap();
    let hash = identity.sha256;
    let limits = Limits {
        relay_datagrams_per_sec: 0,
        relay_bytes_per_sec: 0,
        relay_out_bytes_per_ip: 0,
        ..Limits::default()
    };
    let server = Server::start(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        identity,
        limits,
        ice: IceConfig::default(),
        quic: QuicTuning::default(),
        web_dir: None,
        proxy: None,
        dev_cert: None,
        cluster: None,
        access: None,
    })
    .await
    .unwrap();
    let mut cfg = ClientConfig::new(server.quic_addr(), Trust::CertHash(hash));
    cfg.relay_mode = RelayMode::Datagram;
    let mut a = Client::connect(&cfg, None).await.unwrap();
    let code = a.create_session(0, None).await.unwrap().code;
    let mut b = Client::connect(&cfg, None).await.unwrap();
    b.join_session(&code, None).await.unwrap();
    let (a_id, b_id) = (a.peer_id(), b.peer_id());
    let echo = tokio::spawn(async move {
        while let Some((_, p, _)) = b.next_relay(Duration::from_secs(2)).await {
            let _ = b.send_relay(a_id, &p).await;
        }
    });
    let payload = [7u8; 200];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        a.send_relay(b_id, &payload).await.unwrap();
        if a.next_relay(Duration::from_millis(500)).await.is_some() {
            out.push(t.elapsed());
        }
    }
    drop(a);
    let _ = echo.await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 300 } else { 3000 };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let base = udp_baseline(n);
    let ours = rt.block_on(relay(n));
    let (b50, b99) = summary("bare UDP ping-pong", base);
    let (r50, r99) = summary("relay ping-pong", ours);
    println!(
        "relay/bare: p50 {:.1}x, p99 {:.1}x (two relay hops per round trip)",
        r50.as_secs_f64() / b50.as_secs_f64(),
        r99.as_secs_f64() / b99.as_secs_f64()
    );
}
