//! Real Rust clients for the dashboard test (tests/dashboard/run.sh): players
//! that fly on the relay and let the client report its connection quality
//! by itself (issue 25, PROTOCOL.md §14).
//!
//!     quality_reporter --server 127.0.0.1:4433 --cert-hash HEX [--ws ws://127.0.0.1:8080/ws] --secs 120
//!     quality_reporter --server 127.0.0.1:4433 --cert-hash HEX --join CODE --secs 120
//!
//! Nothing here builds a `Report`: every report is the client's own
//! ([`ClientConfig::telemetry`], on by default), made of what it measured —
//! its links' path (the Rust client has only the relay), grade and RTT/loss
//! buckets from its echoes, and the setup milestones it timed (`welcome`,
//! `first_frame` on the relay). What it cannot measure (WebRTC: the `direct`
//! milestone, direct and TURN paths, ICE failures, candidate types) it does
//! not report; the browser pages of tests/dashboard/browsers.mjs do, for real.
//!
//! Without `--join`: four players create and join one session and relay
//! 200-byte frames to each other at 30 Hz (so the relay panels have
//! traffic); the last one is on the WebSocket fallback when `--ws` is given
//! (so reports travel over both transports). Every 3 s a newcomer connects,
//! joins, waits for the first relay frame, stays until its client has sent
//! a report (carrying its `welcome` and `first_frame` milestones), and
//! leaves, so the setup histograms keep getting observations.
//!
//! With `--join CODE`: one player joins that session (a browser page's) and
//! relays at 30 Hz until the end.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use flightsim_p2p::client::{Client, ClientConfig, ClientTransport, Event, Trust};
use flightsim_p2p::protocol::{PeerId, ALL_PEERS};

struct Args {
    server: std::net::SocketAddr,
    hash: [u8; 32],
    ws: Option<String>,
    join: Option<String>,
    secs: u64,
}

fn args() -> Result<Args> {
    let mut a = std::env::args().skip(1);
    let (mut server, mut hash, mut ws, mut join, mut secs) = (None, None, None, None, 120);
    while let Some(k) = a.next() {
        match k.as_str() {
            "--server" => server = Some(a.next().context("--server")?.parse()?),
            "--cert-hash" => {
                hash = Some(flightsim_p2p::certs::parse_sha256_hex(
                    &a.next().context("--cert-hash")?,
                )?)
            }
            "--ws" => ws = Some(a.next().context("--ws")?),
            "--join" => join = Some(a.next().context("--join")?),
            "--secs" => secs = a.next().context("--secs")?.parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(Args {
        server: server.context("--server is required")?,
        hash: hash.context("--cert-hash is required")?,
        ws,
        join,
        secs,
    })
}

/// A newcomer waits this long at most for its first frame, and then for its first report.
const NEWCOMER_WAIT: Duration = Duration::from_secs(8);

/// One long-lived player: relays 200-byte frames to everyone at 30 Hz and
/// reads its events until `end`. Returns how many reports its client sent.
async fn player(mut c: Client, end: Instant) -> Result<u64> {
    let sender = c.relay_sender();
    let sending = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(33));
        while Instant::now() < end {
            every.tick().await;
            let _ = sender.send(ALL_PEERS, &[7u8; 200]).await;
        }
    });
    while Instant::now() < end {
        if let Some(Event::Closed(e)) = c.next_event_within(Duration::from_millis(100)).await {
            anyhow::bail!("player closed: {e:?}");
        }
    }
    let _ = sending.await;
    let reports = c.reports_sent().0;
    c.close().await;
    Ok(reports)
}

/// A newcomer: joins, waits for the host's first relay frame (its client
/// times `first_frame` on the relay), stays until its client has reported
/// since, and leaves.
async fn newcomer(cfg: &ClientConfig, code: &str, host: PeerId) -> Result<()> {
    let mut c = Client::connect(cfg, None).await?;
    c.join_session(code, None).await?;
    let deadline = Instant::now() + NEWCOMER_WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.next_relay(left).await {
            Some((from, _, _)) if from == host => break,
            Some(_) => continue,
            None => anyhow::bail!("no relay frame from the host"),
        }
    }
    // The frame was counted before next_relay returned it: any report from
    // now on carries the milestone (the first goes 2 s after the Welcome).
    let before = c.reports_sent().0;
    let deadline = Instant::now() + NEWCOMER_WAIT;
    while c.reports_sent().0 == before {
        if Instant::now() >= deadline {
            anyhow::bail!("the client sent no report");
        }
        // Keep reading, so the inbox does not grow.
        c.next_event_within(Duration::from_millis(50)).await;
    }
    // A round trip on the control stream: the report is at the server.
    c.ping().await?;
    c.close().await;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let a = args()?;
    let mut cfg = ClientConfig::new(a.server, Trust::CertHash(a.hash));
    cfg.connect_timeout = Duration::from_secs(30);
    cfg.name = "quality_reporter".into();
    let end = Instant::now() + Duration::from_secs(a.secs);

    if let Some(code) = &a.join {
        let mut c = Client::connect(&cfg, None).await.context("connect")?;
        c.join_session(code, None).await.context("join")?;
        eprintln!(
            "quality_reporter: peer {} joined session {code}, running {} s",
            c.peer_id(),
            a.secs
        );
        let reports = player(c, end).await?;
        println!("quality_reporter: {reports} reports");
        return Ok(());
    }

    let mut ws_cfg = cfg.clone();
    if let Some(url) = &a.ws {
        ws_cfg.transport = ClientTransport::Websocket;
        ws_cfg.ws_url = Some(url.clone());
    }
    let mut host = Client::connect(&cfg, None).await.context("host connects")?;
    let code = host.create_session(0, None).await.context("create")?.code;
    let h = host.peer_id();
    let mut players = vec![host];
    for (i, c) in [&cfg, &cfg, &ws_cfg].into_iter().enumerate() {
        let mut p = Client::connect(c, None)
            .await
            .with_context(|| format!("player {i} connects"))?;
        p.join_session(&code, None).await.context("join")?;
        players.push(p);
    }
    let ids: Vec<PeerId> = players.iter().map(Client::peer_id).collect();
    eprintln!(
        "quality_reporter: session {code}, players {ids:?}{}, running {} s",
        if a.ws.is_some() {
            " (the last on WebSocket)"
        } else {
            ""
        },
        a.secs
    );
    let tasks: Vec<_> = players
        .into_iter()
        .map(|c| tokio::spawn(player(c, end)))
        .collect();
    let (mut round, mut failed) = (0, 0);
    while Instant::now() + Duration::from_secs(3) < end {
        let started = Instant::now();
        if let Err(e) = newcomer(&cfg, &code, h).await {
            eprintln!("quality_reporter: newcomer {round}: {e:#}");
            failed += 1;
        }
        round += 1;
        tokio::time::sleep(Duration::from_secs(3).saturating_sub(started.elapsed())).await;
    }
    let mut reports = 0;
    for t in tasks {
        reports += t.await??;
    }
    println!(
        "quality_reporter: {round} newcomers ({failed} failed), players sent {reports} reports"
    );
    Ok(())
}
