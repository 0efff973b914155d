//! The Rust half of the soak test (tests/soak/run.sh): two players in one
//! session over raw QUIC, each relaying a 200-byte frame to the other 30
//! times a second for `--secs`, counting every time its client took the
//! server for lost (`Event::Reconnecting`) or gave up (`Event::Closed`).
//!
//!     soak_client --server 10.77.0.1:4433 --cert-hash HEX --secs 600 [--tight]
//!
//! `--tight`: a fixed 400 ms live timeout (QUIC idle timeout, keep-alive
//! every 100 ms), the control run that proves the soak test catches false
//! alarms. Prints one JSON line: `{"client":"rust","lost":N,...}`; exit 0.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use flightsim_p2p::client::{Client, ClientConfig, Event, Trust};

struct Args {
    server: std::net::SocketAddr,
    hash: [u8; 32],
    secs: u64,
    tight: bool,
}

fn args() -> Result<Args> {
    let mut a = std::env::args().skip(1);
    let (mut server, mut hash, mut secs, mut tight) = (None, None, 600, false);
    while let Some(k) = a.next() {
        match k.as_str() {
            "--server" => server = Some(a.next().context("--server")?.parse()?),
            "--cert-hash" => {
                hash = Some(flightsim_p2p::certs::parse_sha256_hex(
                    &a.next().context("--cert-hash")?,
                )?)
            }
            "--secs" => secs = a.next().context("--secs")?.parse()?,
            "--tight" => tight = true,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(Args {
        server: server.context("--server is required")?,
        hash: hash.context("--cert-hash is required")?,
        secs,
        tight,
    })
}

#[derive(Default, serde::Serialize)]
struct Tally {
    /// Times the client took the server for lost (`Reconnecting`, first attempt).
    lost: u32,
    /// The client gave up.
    closed: bool,
    /// Frames sent, and received from the other player.
    sent: u64,
    received: u64,
    /// Whether the player was still in its session, with its peer id, at the end.
    in_session: bool,
    /// Seconds since the last frame from the other player, at the end.
    quiet_at_end_s: f64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let a = args()?;
    let mut cfg = ClientConfig::new(a.server, Trust::CertHash(a.hash));
    cfg.connect_timeout = Duration::from_secs(30);
    if a.tight {
        cfg.keep_alive = Duration::from_millis(100);
        cfg.idle_timeout = Duration::from_millis(400);
    }
    let mut host = Client::connect(&cfg, None).await.context("host connects")?;
    let code = host.create_session(0, None).await.context("create")?.code;
    let mut guest = Client::connect(&cfg, None)
        .await
        .context("guest connects")?;
    guest.join_session(&code, None).await.context("join")?;
    eprintln!("soak_client: session {code}, running {} s", a.secs);
    let end = Instant::now() + Duration::from_secs(a.secs);
    let stop = Arc::new(AtomicBool::new(false));
    let (hid, gid) = (host.peer_id(), guest.peer_id());
    let mut tasks = Vec::new();
    for (mut c, to, label) in [(host, gid, "host"), (guest, hid, "guest")] {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let me = c.peer_id();
            let sender = c.relay_sender();
            let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let sending = {
                let (stop, sent) = (stop.clone(), sent.clone());
                tokio::spawn(async move {
                    let mut every = tokio::time::interval(Duration::from_millis(33));
                    while !stop.load(Ordering::Relaxed) {
                        every.tick().await;
                        if sender.send(to, &[7u8; 200]).await.is_ok() {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            };
            let mut t = Tally::default();
            let mut last = Instant::now();
            while Instant::now() < end && !t.closed {
                match c.next_event_within(Duration::from_millis(200)).await {
                    Some(Event::Relay { from, .. }) if from == to => {
                        t.received += 1;
                        last = Instant::now();
                    }
                    Some(Event::Reconnecting { attempt: 1, after }) => {
                        t.lost += 1;
                        eprintln!("soak_client: {label}: server lost (retry after {after:?})");
                    }
                    Some(Event::Closed(e)) => {
                        t.closed = true;
                        eprintln!("soak_client: {label}: gave up: {e:?}");
                    }
                    _ => {}
                }
            }
            stop.store(true, Ordering::Relaxed);
            let _ = sending.await;
            t.sent = sent.load(Ordering::Relaxed);
            t.quiet_at_end_s = last.elapsed().as_secs_f64();
            t.in_session = !t.closed && c.peer_id() == me;
            c.close().await;
            (label, t)
        }));
    }
    let mut out = serde_json::Map::new();
    let mut lost = 0;
    let mut ok = true;
    for t in tasks {
        let (label, t) = t.await?;
        lost += t.lost;
        ok &= t.in_session && !t.closed && t.received > 0;
        out.insert(label.into(), serde_json::to_value(&t)?);
    }
    let line = serde_json::json!({ "client": "rust", "lost": lost, "ok": ok, "players": out });
    println!("{line}");
    Ok(())
}
