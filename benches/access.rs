//! What access control costs per handshake: token verification against a
//! join without a token, measured in one run.
//!
//! `cargo bench --bench access` (add `-- --quick` for a short run; part of
//! `make bench`). Two in-process servers on loopback, one open and one with
//! `--auth` (an HS256 and an Ed25519 key); a raw QUIC client connects (fresh
//! endpoint: a full handshake, no 0-RTT) and creates a session on each, in
//! alternating order, so the pairs share the machine's noise. Separately, the
//! verifier alone is timed on each kind of token. Writes
//! `bench-results/report-access.md`.

use std::time::{Duration, Instant};

use flightsim_p2p::auth::{Access, Key, Signer, Verifier};
use flightsim_p2p::client::{AccessToken, Client, ClientConfig, Trust};
use flightsim_p2p::limits::Limits;
use flightsim_p2p::server::{QuicTuning, Server, ServerConfig};
use flightsim_p2p::turn::IceConfig;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const AUD: &str = "bench";

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn verifier() -> Verifier {
    let ed = Signer::ed25519_seed("ed", &[3u8; 32]).expect("seed");
    Verifier::new(
        vec![
            Key::hs256("main", SECRET).expect("key"),
            Key::ed25519("ed", &ed.public_key().expect("pk")).expect("key"),
        ],
        AUD,
    )
    .expect("verifier")
}

fn tokens() -> (String, String) {
    let claims = serde_json::json!({ "sub": "bench-player", "aud": AUD, "iat": now_unix(), "exp": now_unix() + 3600 });
    let hs = Signer::hs256("main", SECRET).expect("key").sign(&claims);
    let ed = Signer::ed25519_seed("ed", &[3u8; 32])
        .expect("seed")
        .sign(&claims);
    (hs, ed)
}

/// Median µs per verification of `token`, over rounds of `n`.
fn verify_cost(v: &Verifier, token: &str, n: usize) -> f64 {
    let now = now_unix();
    let rounds: Vec<f64> = (0..9)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                std::hint::black_box(v.verify(std::hint::black_box(token), now).is_ok());
            }
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        })
        .collect();
    median(rounds)
}

async fn server(access: Option<Access>) -> (Server, [u8; 32], std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "fsp2p-bench-access-{}-{}",
        std::process::id(),
        access.is_some()
    ));
    let identity = flightsim_p2p::certs::dev_identity(&dir, &["localhost".into()]).expect("cert");
    let hash = identity.sha256;
    let s = Server::start(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        http_listen: "127.0.0.1:0".parse().expect("addr"),
        identity,
        limits: Limits {
            max_connections_per_ip: 100_000,
            max_sessions_per_ip: 100_000,
            max_sessions: 100_000,
            ..Limits::default()
        },
        ice: IceConfig::default(),
        quic: QuicTuning::default(),
        web_dir: None,
        proxy: None,
        dev_cert: None,
        cluster: None,
        access,
    })
    .await
    .expect("server");
    (s, hash, dir)
}

/// Milliseconds from nothing to SessionCreated: a full handshake (new
/// endpoint), Hello (with the token, if any), Welcome, CreateSession.
async fn join_ms(cfg: &ClientConfig) -> f64 {
    let t = Instant::now();
    let mut c = Client::connect(cfg, None).await.expect("connect");
    c.create_session(0, None).await.expect("create");
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    c.close().await;
    ms
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick" || a == "--smoke");
    let (verify_n, pairs) = if quick { (2_000, 20) } else { (20_000, 200) };
    let v = verifier();
    let (hs, ed) = tokens();
    let hs_us = verify_cost(&v, &hs, verify_n);
    let ed_us = verify_cost(&v, &ed, verify_n / 10);
    println!("verify HS256: {hs_us:.1} µs   EdDSA: {ed_us:.1} µs (median of 9 rounds)");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (open_ms, hs_ms, ed_ms) = rt.block_on(async {
        let (open, open_hash, open_dir) = server(None).await;
        let access = Access {
            verifier: verifier(),
            warn_before: Duration::from_secs(60),
        };
        let (closed, closed_hash, closed_dir) = server(Some(access)).await;
        let open_cfg = ClientConfig::new(open.quic_addr(), Trust::CertHash(open_hash));
        let mut hs_cfg = ClientConfig::new(closed.quic_addr(), Trust::CertHash(closed_hash));
        hs_cfg.token = Some(AccessToken::Fixed(hs.clone()));
        let mut ed_cfg = hs_cfg.clone();
        ed_cfg.token = Some(AccessToken::Fixed(ed.clone()));
        // Warm both up (certificates, first allocations).
        for _ in 0..5 {
            join_ms(&open_cfg).await;
            join_ms(&hs_cfg).await;
            join_ms(&ed_cfg).await;
        }
        let (mut o, mut h, mut e) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..pairs {
            // Rotate the order so no kind always goes first.
            let order = [0, 1, 2];
            for k in 0..3 {
                match order[(i + k) % 3] {
                    0 => o.push(join_ms(&open_cfg).await),
                    1 => h.push(join_ms(&hs_cfg).await),
                    _ => e.push(join_ms(&ed_cfg).await),
                }
            }
        }
        open.shutdown().await;
        closed.shutdown().await;
        let _ = std::fs::remove_dir_all(open_dir);
        let _ = std::fs::remove_dir_all(closed_dir);
        (median(o), median(h), median(e))
    });
    let report = format!(
        "## Access control: the cost per handshake\n\n\
         One run of `cargo bench --bench access`{}: {pairs} joins of each kind on loopback, \
         interleaved (raw QUIC, a new endpoint each time so every handshake is full, then \
         `CreateSession`); the verifier alone timed in rounds of {verify_n}.\n\n\
         | join | median | vs. no token |\n|---|---|---|\n\
         | open server, no token | {open_ms:.2} ms | 1.00× |\n\
         | HS256 token | {hs_ms:.2} ms | {:.2}× |\n\
         | EdDSA token | {ed_ms:.2} ms | {:.2}× |\n\n\
         | verification alone | time | share of a join without a token |\n|---|---|---|\n\
         | HS256 | {hs_us:.1} µs | {:.2} % |\n\
         | EdDSA (Ed25519) | {ed_us:.1} µs | {:.2} % |\n",
        if quick { " -- --quick" } else { "" },
        hs_ms / open_ms,
        ed_ms / open_ms,
        hs_us / 10.0 / open_ms,
        ed_us / 10.0 / open_ms,
    );
    println!("{report}");
    let _ = std::fs::create_dir_all("bench-results");
    if let Err(e) = std::fs::write("bench-results/report-access.md", &report) {
        eprintln!("writing bench-results/report-access.md: {e}");
    }
}
