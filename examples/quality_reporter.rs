//! Real clients that send connection-quality reports (issue 25) to a real
//! server, on every path, for the dashboard test (tests/dashboard/run.sh).
//!
//!     quality_reporter --server 127.0.0.1:4433 --cert-hash HEX [--ws ws://127.0.0.1:8080/ws] --secs 120
//!
//! Four players stay in one session and relay 200-byte frames to each other
//! at 30 Hz (so the relay panels have traffic); the fourth is on the
//! WebSocket fallback when `--ws` is given (so reports travel over both
//! transports). Every 2.1 s each reports its links with a fixed path plan
//! (host: direct, turn, relay; A: direct, direct, relay; B: turn, direct,
//! relay; C: relay to all), RTT buckets from its measured ping. Every 3 s a
//! newcomer connects, joins, and times for real what the relay gives it
//! (connect → Welcome, join → the host's first Signal, offer → first relay
//! frame), reports that, and leaves.
//!
//! What a Rust client cannot measure (it has no WebRTC) is made up and said
//! so here: the `direct` milestone and the direct/turn first-frame times,
//! the ICE failure reasons (one per newcomer, in turn) and candidate types.
//! The browser client (branch q-js) will report those for real; the hook
//! for it is `DASHBOARD_EXTRA_CLIENT` in tests/dashboard/run.sh.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use flightsim_p2p::client::{Client, ClientConfig, ClientTransport, Event, Trust};
use flightsim_p2p::protocol::report::{
    candidate, loss_bucket, rtt_bucket, IceFailure, LinkReport, Milestone,
};
use flightsim_p2p::protocol::*;

struct Args {
    server: std::net::SocketAddr,
    hash: [u8; 32],
    ws: Option<String>,
    secs: u64,
}

fn args() -> Result<Args> {
    let mut a = std::env::args().skip(1);
    let (mut server, mut hash, mut ws, mut secs) = (None, None, None, 120);
    while let Some(k) = a.next() {
        match k.as_str() {
            "--server" => server = Some(a.next().context("--server")?.parse()?),
            "--cert-hash" => {
                hash = Some(flightsim_p2p::certs::parse_sha256_hex(
                    &a.next().context("--cert-hash")?,
                )?)
            }
            "--ws" => ws = Some(a.next().context("--ws")?),
            "--secs" => secs = a.next().context("--secs")?.parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(Args {
        server: server.context("--server is required")?,
        hash: hash.context("--cert-hash is required")?,
        ws,
        secs,
    })
}

const REPORT_EVERY: Duration = Duration::from_millis(2100);

fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// One long-lived player: relays, reports its links every 2.1 s, and (the
/// host) greets newcomers with a Signal.
async fn player(
    mut c: Client,
    plan: Vec<(PeerId, LinkPath, Grade)>,
    greet: bool,
    end: Instant,
) -> Result<u64> {
    let sender = c.relay_sender();
    let sending = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(33));
        while Instant::now() < end {
            every.tick().await;
            let _ = sender.send(ALL_PEERS, &[7u8; 200]).await;
        }
    });
    let mut next_report = Instant::now();
    let mut reports = 0;
    while Instant::now() < end {
        match c.next_event_within(Duration::from_millis(100)).await {
            Some(Event::Control(ServerMsg::PeerJoined(p))) if greet => {
                c.signal(
                    p.id,
                    Signal::Offer {
                        sdp: "quality_reporter".into(),
                    },
                )
                .await?;
            }
            Some(Event::Closed(e)) => anyhow::bail!("player closed: {e:?}"),
            _ => {}
        }
        if Instant::now() >= next_report {
            next_report = Instant::now() + REPORT_EVERY;
            let ping = c.ping().await.ok().map(|d| d.as_secs_f64() * 1000.0);
            let links = plan
                .iter()
                .map(|&(peer, path, grade)| {
                    // The relay is two legs through the server; a direct path about one.
                    let rtt = match path {
                        LinkPath::Relay => ping.map(|p| 2.0 * p),
                        LinkPath::Turn => ping.map(|p| 1.5 * p + 20.0),
                        _ => ping,
                    };
                    LinkReport {
                        peer,
                        path,
                        grade,
                        rtt_bucket: rtt_bucket(rtt),
                        loss_bucket: loss_bucket(Some(match grade {
                            Grade::Poor => 6.0,
                            _ => 0.0,
                        })),
                    }
                })
                .collect();
            c.send(&ClientMsg::Report(Report::v1(&ReportV1 {
                links,
                ..ReportV1::default()
            })))
            .await?;
            reports += 1;
        }
    }
    let _ = sending.await;
    c.close().await;
    Ok(reports)
}

/// A newcomer: times its setup on the relay for real, reports it, leaves.
async fn newcomer(cfg: &ClientConfig, code: &str, host: PeerId, round: usize) -> Result<()> {
    let t0 = Instant::now();
    let mut c = Client::connect(cfg, None).await?;
    let welcome = t0.elapsed();
    let joined_at = Instant::now();
    c.join_session(code, None).await?;
    let wait = Duration::from_secs(10);
    tokio::time::timeout(
        wait,
        c.wait_for(|m| matches!(m, ServerMsg::Signal { from, .. } if *from == host).then_some(())),
    )
    .await
    .context("no Signal from the host")??;
    let first_signal = joined_at.elapsed();
    let offered_at = Instant::now();
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.next_relay(left).await {
            Some((from, _, _)) if from == host => break,
            Some(_) => continue,
            None => anyhow::bail!("no relay frame from the host"),
        }
    }
    let relay = offered_at.elapsed();
    let first_frame = joined_at.elapsed();
    // The relay is two legs through the server.
    let rtt = c.ping().await.ok().map(|d| d.as_secs_f64() * 2000.0);
    // Made up (no WebRTC here): what a browser would have timed.
    let spread = (round as u32 * 137) % 900;
    let direct = 150 + spread;
    let m = |kind, path, ms| Milestone { kind, path, ms };
    let reason = IceFailReason::ALL[round % IceFailReason::ALL.len()];
    let body = ReportV1 {
        links: vec![LinkReport {
            peer: host,
            path: LinkPath::Relay,
            grade: Grade::Good,
            rtt_bucket: rtt_bucket(rtt),
            loss_bucket: loss_bucket(Some(0.0)),
        }],
        setup: vec![
            m(MilestoneKind::Welcome, LinkPath::Connecting, ms(welcome)),
            m(
                MilestoneKind::FirstSignal,
                LinkPath::Connecting,
                ms(first_signal),
            ),
            m(MilestoneKind::Relay, LinkPath::Relay, ms(relay)),
            m(MilestoneKind::FirstFrame, LinkPath::Relay, ms(first_frame)),
            m(MilestoneKind::Direct, LinkPath::Direct, direct),
            m(MilestoneKind::FirstFrame, LinkPath::Direct, direct + 40),
            m(MilestoneKind::FirstFrame, LinkPath::Turn, direct + 300),
        ],
        ice_failures: vec![IceFailure { reason }],
        candidates: candidate::HOST | candidate::SRFLX | candidate::RELAY | candidate::PRFLX,
    };
    c.send(&ClientMsg::Report(Report::v1(&body))).await?;
    c.ping().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.close().await;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let a = args()?;
    let mut cfg = ClientConfig::new(a.server, Trust::CertHash(a.hash));
    cfg.connect_timeout = Duration::from_secs(30);
    cfg.name = "quality_reporter".into();
    let mut ws_cfg = cfg.clone();
    if let Some(url) = &a.ws {
        ws_cfg.transport = ClientTransport::Websocket;
        ws_cfg.ws_url = Some(url.clone());
    }
    let mut host = Client::connect(&cfg, None).await.context("host connects")?;
    let code = host.create_session(0, None).await.context("create")?.code;
    let mut others = Vec::new();
    for (i, c) in [&cfg, &cfg, &ws_cfg].into_iter().enumerate() {
        let mut p = Client::connect(c, None)
            .await
            .with_context(|| format!("player {i} connects"))?;
        p.join_session(&code, None).await.context("join")?;
        others.push(p);
    }
    let ids: Vec<PeerId> = std::iter::once(host.peer_id())
        .chain(others.iter().map(Client::peer_id))
        .collect();
    let (h, pa, pb, pc) = (ids[0], ids[1], ids[2], ids[3]);
    use Grade::*;
    use LinkPath::*;
    let plans = [
        vec![(pa, Direct, Excellent), (pb, Turn, Good), (pc, Relay, Poor)],
        vec![
            (h, Direct, Excellent),
            (pb, Direct, Good),
            (pc, Relay, Good),
        ],
        vec![(h, Turn, Good), (pa, Direct, Good), (pc, Relay, Good)],
        vec![(h, Relay, Poor), (pa, Relay, Good), (pb, Relay, Good)],
    ];
    eprintln!(
        "quality_reporter: session {code}, players {ids:?}{}, running {} s",
        if a.ws.is_some() {
            " (the last on WebSocket)"
        } else {
            ""
        },
        a.secs
    );
    let end = Instant::now() + Duration::from_secs(a.secs);
    let mut tasks = Vec::new();
    for (i, (c, plan)) in std::iter::once(host).chain(others).zip(plans).enumerate() {
        tasks.push(tokio::spawn(player(c, plan, i == 0, end)));
    }
    let mut round = 0;
    while Instant::now() + Duration::from_secs(3) < end {
        let started = Instant::now();
        if let Err(e) = newcomer(&cfg, &code, h, round).await {
            eprintln!("quality_reporter: newcomer {round}: {e:#}");
        }
        round += 1;
        tokio::time::sleep(Duration::from_secs(3).saturating_sub(started.elapsed())).await;
    }
    let mut reports = 0;
    for t in tasks {
        reports += t.await??;
    }
    println!("quality_reporter: {round} newcomers, {reports} link reports");
    Ok(())
}
