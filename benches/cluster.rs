//! Cluster-mode costs: `cargo bench --bench cluster [-- --quick]` (part of `make bench`).
//!
//! Three questions, each answered against a baseline measured in the same run:
//! 1. **Join through a node that is not the session's home.** Round trips to
//!    `SessionJoined` when the joiner asks the home node, and when it asks
//!    another node and is redirected, both through the same emulated round
//!    trip (the user-space delay proxies of the harness).
//! 2. **A node dies.** Two players relay at 60 Hz through a node; it is
//!    killed (`kill -9`, or stopped with SIGTERM: a drain); time from then
//!    until a frame sent after it reaches the other player through another
//!    node. It depends on how soon the players notice (the client's
//!    liveness) and on the node TTL (a dead node's sessions can only be
//!    taken over once its heartbeat has expired), so `kill -9` runs with
//!    today's defaults (heartbeat 500 ms, TTL 1500 ms, the client's `Ping`
//!    liveness) and with the old ones as the baseline (heartbeat 1 s, TTL
//!    3 s, a client that notices only by its 8 s QUIC idle timeout), over
//!    QUIC and over WebSocket, runs of the two alternated.
//! 3. **The relay itself**, single node against a cluster node (no Redis on
//!    the relay path, so they should be equal): one-way latency p50/p99 and
//!    delivered share of 8-player sessions at 60 Hz, the two alternated.
//!
//! Writes `bench-results/report-cluster.md` and `.json`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "harness/setup.rs"]
#[allow(dead_code)]
mod setup;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::redis::RedisProcess;
use common::ServeProcess;
use flightsim_p2p::client::{Client, ClientConfig, ClientTransport, Event, ServerAddr, Trust};
use flightsim_p2p::protocol::{ClientMsg, JoinSession, ServerMsg, ALL_PEERS};
use tokio::net::{TcpListener, UdpSocket};

struct Mode {
    join_runs: usize,
    failover_runs: usize,
    relay_rounds: usize,
    relay_secs: f64,
    relay_sessions: usize,
}

fn mode() -> Mode {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--quick" || a == "--smoke") {
        Mode {
            join_runs: 3,
            failover_runs: 1,
            relay_rounds: 1,
            relay_secs: 1.0,
            relay_sessions: 2,
        }
    } else {
        Mode {
            join_runs: 9,
            failover_runs: 5,
            relay_rounds: 6,
            relay_secs: 3.0,
            relay_sessions: 4,
        }
    }
}

/// One node of a benchmark cluster.
fn node(
    cert_dir: &Path,
    redis: Option<&RedisProcess>,
    prefix: &str,
    name: &str,
    extra: &[&str],
) -> ServeProcess {
    // No limits in the way: all load comes from 127.0.0.1.
    let mut args: Vec<String> = common::UNLIMITED.iter().map(|s| s.to_string()).collect();
    if let Some(r) = redis {
        args.extend([
            "--redis-url".into(),
            r.url(),
            "--cluster-prefix".into(),
            prefix.into(),
            "--node-name".into(),
            name.into(),
        ]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if std::env::var_os("FSP2P_BENCH_LOGS").is_some() && !name.is_empty() {
        return ServeProcess::logged(&format!("bench-cluster-{prefix}{name}"), cert_dir, &args);
    }
    ServeProcess::start(cert_dir, &args, Stdio::null())
}

fn hash(p: &ServeProcess) -> Result<[u8; 32]> {
    flightsim_p2p::certs::parse_sha256_hex(&p.hash)
}

/// Poll `/metrics` until `series` reaches `at_least` (nodes see each other).
async fn wait_metric(p: &ServeProcess, series: &str, at_least: f64) -> Result<()> {
    for _ in 0..200 {
        if p.metric(series) >= at_least {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("{series} never reached {at_least}")
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

// ----- 1. join through another node -----

#[derive(serde::Serialize)]
struct JoinRow {
    transport: &'static str,
    home_rtts: f64,
    other_rtts: f64,
    extra_rtts: f64,
    runs: usize,
}

async fn join_cost(m: &Mode, work: &Path) -> Result<(Vec<JoinRow>, f64)> {
    let one_way = Duration::from_millis(20);
    let redis = RedisProcess::start();
    // Public addresses are the delay proxies, bound first so the nodes can announce them.
    let (ua, ub) = (
        UdpSocket::bind("127.0.0.1:0").await?,
        UdpSocket::bind("127.0.0.1:0").await?,
    );
    let (ta, tb) = (
        TcpListener::bind("127.0.0.1:0").await?,
        TcpListener::bind("127.0.0.1:0").await?,
    );
    let (pa, pb) = (ua.local_addr()?, ub.local_addr()?);
    let (ha, hb) = (ta.local_addr()?, tb.local_addr()?);
    let a = node(
        work,
        Some(&redis),
        "join:",
        "a",
        &[
            "--public-quic",
            &pa.to_string(),
            "--public-http",
            &format!("http://{ha}"),
        ],
    );
    let b = node(
        work,
        Some(&redis),
        "join:",
        "b",
        &[
            "--public-quic",
            &pb.to_string(),
            "--public-http",
            &format!("http://{hb}"),
        ],
    );
    setup::udp_delay_proxy_on(ua, a.quic, one_way)?;
    setup::udp_delay_proxy_on(ub, b.quic, one_way)?;
    setup::tcp_delay_proxy_on(ta, a.http, one_way)?;
    setup::tcp_delay_proxy_on(tb, b.http, one_way)?;
    wait_metric(&a, "fsp2p_cluster_nodes", 2.0).await?;
    let rtt = setup::measure_proxy_rtt(one_way, 21).await?;
    let trust = Trust::CertHash(hash(&a)?);
    anyhow::ensure!(a.hash == b.hash, "the nodes must share the certificate");

    let mut host = Client::connect(&ClientConfig::new(a.quic, trust.clone()), None).await?;
    let code = host.create_session(0, None).await?.code;

    let mut rows = Vec::new();
    for (transport, name) in [
        (ClientTransport::Quic, "raw QUIC, fresh"),
        (ClientTransport::Websocket, "WebSocket, plain TCP"),
    ] {
        let rtt_ms = match transport {
            ClientTransport::Websocket => rtt.tcp.as_secs_f64() * 1000.0,
            _ => rtt.udp.as_secs_f64() * 1000.0,
        };
        let (mut home, mut other) = (Vec::new(), Vec::new());
        for run in 0..m.join_runs * 2 {
            // Alternate home and other, so drift hits both alike.
            let via_home = run % 2 == 0;
            let (quic, http) = if via_home { (pa, ha) } else { (pb, hb) };
            let mut cfg = ClientConfig::new(quic, trust.clone());
            cfg.transport = transport;
            cfg.ws_url = Some(format!("ws://{http}/ws"));
            let join = ClientMsg::JoinSession(JoinSession {
                code: code.clone(),
                password: None,
                region_rtts: Vec::new(),
            });
            let start = Instant::now();
            let mut c = Client::connect(&cfg, Some(join)).await.context("joiner")?;
            tokio::time::timeout(
                Duration::from_secs(10),
                c.wait_for(|m| matches!(m, ServerMsg::SessionJoined(_)).then_some(())),
            )
            .await
            .context("join timed out")??;
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            if via_home {
                home.push(ms / rtt_ms);
            } else {
                other.push(ms / rtt_ms);
            }
            c.close().await;
            while host
                .next_event_within(Duration::from_millis(30))
                .await
                .is_some()
            {}
        }
        let (h, o) = (median(home), median(other));
        println!("join {name}: home {h:.2} RTT, through another node {o:.2} RTT");
        rows.push(JoinRow {
            transport: name,
            home_rtts: h,
            other_rtts: o,
            extra_rtts: o - h,
            runs: m.join_runs,
        });
    }
    host.close().await;
    let redirects = b.metric("fsp2p_cluster_redirects_total{reason=\"session\"}");
    anyhow::ensure!(
        redirects >= m.join_runs as f64,
        "node b redirected only {redirects} joins"
    );
    Ok((rows, rtt.udp.as_secs_f64() * 1000.0))
}

// ----- 2. a node dies -----

#[derive(serde::Serialize)]
struct FailoverRow {
    how: String,
    /// Which settings: "today's defaults" or "old defaults (baseline)".
    settings: &'static str,
    transport: &'static str,
    node_ttl_ms: u64,
    heartbeat_ms: u64,
    /// Every run's figure, ms, in the order run.
    runs_ms: Vec<f64>,
    /// Median ms from the kill until the first frame came through the new node.
    relaying_again_ms: f64,
    /// Median frames (of the 60/s stream) that never arrived.
    frames_lost: f64,
    runs: usize,
}

/// Two players on node `b` (fallback `a`), relaying at 60 Hz each way;
/// `b` is killed or stopped; time until frames flow again.
async fn failover_once(work: &Path, case: &Case, phase: Duration) -> Result<(f64, f64)> {
    let Case {
        graceful,
        ttl_ms,
        beat_ms,
        ..
    } = *case;
    let redis = RedisProcess::start();
    let prefix = format!("fo{}:", std::process::id());
    let flags = [
        "--cluster-node-ttl-ms".to_string(),
        ttl_ms.to_string(),
        "--cluster-heartbeat-ms".to_string(),
        beat_ms.to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let a = node(work, Some(&redis), &prefix, "a", &flags);
    let mut b = node(work, Some(&redis), &prefix, "b", &flags);
    wait_metric(&a, "fsp2p_cluster_nodes", 2.0).await?;
    let trust = Trust::CertHash(hash(&b)?);
    let mut cfg = ClientConfig::new(b.quic, trust);
    let mut fallback = ServerAddr::new(a.quic);
    if case.websocket {
        cfg.transport = ClientTransport::Websocket;
        cfg.ws_url = Some(format!("ws://{}/ws", b.http));
        fallback.ws_url = Some(format!("ws://{}/ws", a.http));
    }
    (case.client)(&mut cfg);
    cfg.fallbacks = vec![fallback];
    let mut p1 = Client::connect(&cfg, None).await?;
    let code = p1.create_session(0, None).await?.code;
    let mut p2 = Client::connect(&cfg, None).await?;
    p2.join_session(&code, None).await?;
    let (id1, id2) = (p1.peer_id(), p2.peer_id());
    let base = Instant::now();
    // p1 sends its clock 60 times a second to p2.
    let sender = p1.relay_sender();
    let sending = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_micros(16_667));
        for seq in 0u64.. {
            every.tick().await;
            let t = base.elapsed().as_micros() as u64;
            let mut frame = seq.to_le_bytes().to_vec();
            frame.extend_from_slice(&t.to_le_bytes());
            frame.resize(200, 0);
            let _ = sender.send(id2, &frame).await;
        }
    });
    // Let the stream settle, then cut. `phase` moves the cut against the
    // clients' timers (a Ping every 500 ms, a keep-alive every 2 s), which
    // start with the connection: a crash comes at any moment of their cycle.
    let warm = Instant::now() + Duration::from_millis(500) + phase;
    let mut seqs = Vec::new();
    while Instant::now() < warm {
        if let Some(Event::Relay { payload, .. }) =
            p2.next_event_within(Duration::from_millis(50)).await
        {
            if payload.len() >= 8 {
                seqs.push(u64::from_le_bytes(payload[..8].try_into()?));
            }
        }
        let _ = p1.next_event_within(Duration::from_millis(1)).await;
    }
    let cut = base.elapsed().as_micros() as u64;
    let cut_at = Instant::now();
    if graceful {
        // SIGTERM: the node drains to a.
        // SAFETY-free: plain kill(1) of our own child.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &b.child.id().to_string()])
            .status();
    } else {
        let _ = b.child.kill();
    }
    // Keep p1's events flowing (its resume) while p2 waits for a new frame.
    let p1_events = tokio::spawn(async move {
        while let Some(e) = p1.next_event().await {
            if std::env::var_os("FSP2P_BENCH_LOGS").is_some()
                && matches!(e, Event::Reconnecting { .. } | Event::Reconnected { .. })
            {
                eprintln!("p1 {e:?} {:?} after the cut", cut_at.elapsed());
            }
            if let Event::Closed(_) = e {
                break;
            }
        }
        p1
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    // Until p2 is connected again (to the other node) and a frame came through it.
    let mut moved = false;
    let again = loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "no frame through the new node within 30 s of the cut"
        );
        match p2.next_event_within(Duration::from_millis(200)).await {
            Some(Event::Reconnected { .. }) => {
                moved = true;
                if std::env::var_os("FSP2P_BENCH_LOGS").is_some() {
                    eprintln!("p2 reconnected {:?} after the cut", cut_at.elapsed());
                }
            }
            Some(Event::Reconnecting { attempt, after })
                if std::env::var_os("FSP2P_BENCH_LOGS").is_some() =>
            {
                eprintln!(
                    "p2 reconnecting (attempt {attempt}, after {after:?}) {:?} after the cut",
                    cut_at.elapsed()
                );
            }
            Some(Event::Relay { from, payload, .. }) if payload.len() >= 16 => {
                let seq = u64::from_le_bytes(payload[..8].try_into()?);
                let sent = u64::from_le_bytes(payload[8..16].try_into()?);
                seqs.push(seq);
                if moved && sent > cut && from == id1 {
                    break cut_at.elapsed().as_secs_f64() * 1000.0;
                }
            }
            _ => {}
        }
    };
    sending.abort();
    let _ = b.child.wait();
    p1_events.abort();
    anyhow::ensure!(p2.peer_id() == id2, "p2 lost its peer id");
    // Frames that never arrived between the first and last seen.
    seqs.sort_unstable();
    seqs.dedup();
    let lost = match (seqs.first(), seqs.last()) {
        (Some(f), Some(l)) => (l - f + 1) as f64 - seqs.len() as f64,
        _ => 0.0,
    };
    Ok((again, lost))
}

/// One failover figure: how the node goes away, with which settings.
struct Case {
    graceful: bool,
    websocket: bool,
    settings: &'static str,
    ttl_ms: u64,
    beat_ms: u64,
    /// The client's liveness settings for this case.
    client: fn(&mut ClientConfig),
}

/// The client as it is: its own defaults (the `Ping` liveness of
/// PROTOCOL.md, QUIC's idle timeout only as a backstop).
fn client_today(_: &mut ClientConfig) {}

/// The client before the `Ping` liveness: it noticed a silent QUIC server
/// only by the idle timeout, 8 s, with a keep-alive every 2 s.
fn client_old(cfg: &mut ClientConfig) {
    cfg.ping_interval = Duration::ZERO;
    cfg.keep_alive = Duration::from_secs(2);
    cfg.idle_timeout = Duration::from_secs(8);
}

const TODAY: &str = "today's defaults";
const BASELINE: &str = "old defaults (baseline)";

async fn failover(m: &Mode, work: &Path) -> Result<Vec<FailoverRow>> {
    let today = |graceful, websocket| Case {
        graceful,
        websocket,
        settings: TODAY,
        ttl_ms: 1500,
        beat_ms: 500,
        client: client_today,
    };
    let old = |websocket| Case {
        graceful: false,
        websocket,
        settings: BASELINE,
        ttl_ms: 3000,
        beat_ms: 1000,
        client: client_old,
    };
    // Pairs alternated run by run (today's, then the baseline), so drift
    // in the machine's load hits both alike.
    let groups: Vec<Vec<Case>> = if std::env::var_os("FSP2P_BENCH_ONLY_KILL").is_some() {
        vec![vec![today(false, false), old(false)]]
    } else {
        vec![
            vec![today(true, false)],
            vec![today(false, false), old(false)],
            vec![today(false, true), old(true)],
        ]
    };
    let mut rows = Vec::new();
    for group in groups {
        let mut t: Vec<Vec<f64>> = vec![Vec::new(); group.len()];
        let mut lost: Vec<Vec<f64>> = vec![Vec::new(); group.len()];
        for run in 0..m.failover_runs {
            // Spread evenly over one Ping interval (and a fraction of the
            // keep-alive's), the same for both settings.
            let phase = Duration::from_millis(500 * run as u64 / m.failover_runs as u64);
            for (i, case) in group.iter().enumerate() {
                let (ms, l) = failover_once(work, case, phase).await?;
                t[i].push(ms);
                lost[i].push(l);
            }
        }
        for (i, case) in group.iter().enumerate() {
            let how = if case.graceful {
                "SIGTERM (drain)"
            } else {
                "kill -9"
            };
            let transport = if case.websocket { "WebSocket" } else { "QUIC" };
            let row = FailoverRow {
                how: how.into(),
                settings: case.settings,
                transport,
                node_ttl_ms: case.ttl_ms,
                heartbeat_ms: case.beat_ms,
                runs_ms: t[i].clone(),
                relaying_again_ms: median(t[i].clone()),
                frames_lost: median(lost[i].clone()),
                runs: m.failover_runs,
            };
            println!(
                "failover {how}, {transport}, {}: relaying again after {:.0} ms (runs {:?}), {:.0} frames lost",
                case.settings, row.relaying_again_ms, row.runs_ms, row.frames_lost
            );
            rows.push(row);
        }
    }
    Ok(rows)
}

// ----- 3. the relay, single node against cluster node -----

#[derive(serde::Serialize, Default)]
struct RelayRow {
    setup: String,
    p50_us: f64,
    p99_us: f64,
    delivered: f64,
    /// Cluster over single, per round: (median, lowest, highest).
    ratio_p50: Option<(f64, f64, f64)>,
    ratio_p99: Option<(f64, f64, f64)>,
}

/// `sessions` sessions of 8 players on `server`, each player sending a
/// 200-byte frame to everyone 60 times a second for `secs`; one-way
/// latency from the timestamp in each frame (one process, one clock).
async fn relay_load(server: &ServeProcess, sessions: usize, secs: f64) -> Result<(Vec<f64>, f64)> {
    let trust = Trust::CertHash(hash(server)?);
    let cfg = ClientConfig::new(server.quic, trust);
    let base = Arc::new(Instant::now());
    let mut players = Vec::new();
    for _ in 0..sessions {
        let mut host = Client::connect(&cfg, None).await?;
        let code = host.create_session(8, None).await?.code;
        let mut members = vec![host];
        for _ in 1..8 {
            let mut c = Client::connect(&cfg, None).await?;
            c.join_session(&code, None).await?;
            members.push(c);
        }
        players.extend(members);
    }
    // Let PeerJoined settle.
    for p in players.iter_mut() {
        while p
            .next_event_within(Duration::from_millis(5))
            .await
            .is_some()
        {}
    }
    let n = players.len();
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for mut p in players {
        let sender = p.relay_sender();
        let base_s = base.clone();
        let send = tokio::spawn(async move {
            let base = base_s;
            let mut sent = 0u64;
            let mut every = tokio::time::interval(Duration::from_micros(16_667));
            while Instant::now() < end {
                every.tick().await;
                let mut frame = (base.elapsed().as_micros() as u64).to_le_bytes().to_vec();
                frame.resize(200, 0);
                if sender.send(ALL_PEERS, &frame).await.is_ok() {
                    sent += 1;
                }
            }
            sent
        });
        let base = base.clone();
        let recv = tokio::spawn(async move {
            let mut lat = Vec::new();
            let stop = end + Duration::from_millis(300);
            while Instant::now() < stop {
                if let Some(Event::Relay { payload, .. }) =
                    p.next_event_within(Duration::from_millis(50)).await
                {
                    if payload.len() >= 8 {
                        let sent = u64::from_le_bytes(payload[..8].try_into().unwrap_or([0; 8]));
                        let now = base.elapsed().as_micros() as u64;
                        lat.push(now.saturating_sub(sent) as f64);
                    }
                }
            }
            p.close().await;
            lat
        });
        tasks.push((send, recv));
    }
    let (mut sent, mut lat) = (0u64, Vec::new());
    for (s, r) in tasks {
        sent += s.await?;
        lat.extend(r.await?);
    }
    let expected = sent as f64 * 7.0;
    let _ = n;
    let delivered = if expected > 0.0 {
        lat.len() as f64 / expected
    } else {
        0.0
    };
    Ok((lat, delivered))
}

async fn relay_compare(m: &Mode, work: &Path) -> Result<Vec<RelayRow>> {
    let redis = RedisProcess::start();
    let single = node(work, None, "", "", &[]);
    let clustered = node(work, Some(&redis), "relay:", "r", &[]);
    wait_metric(&clustered, "fsp2p_cluster_nodes", 1.0).await?;
    let mut rows: Vec<RelayRow> = vec![
        RelayRow {
            setup: "single node".into(),
            ..Default::default()
        },
        RelayRow {
            setup: "cluster node (Redis)".into(),
            ..Default::default()
        },
    ];
    let (mut lat, mut del) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    // Per round, cluster over single: the two ran back to back, so each
    // ratio shares that moment's noise.
    let (mut r50, mut r99) = (Vec::new(), Vec::new());
    for round in 0..m.relay_rounds {
        // Alternate which goes first.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        let mut this = [(0.0, 0.0), (0.0, 0.0)];
        for i in order {
            let server = if i == 0 { &single } else { &clustered };
            let (l, d) = relay_load(server, m.relay_sessions, m.relay_secs).await?;
            this[i] = (pct(l.clone(), 0.5), pct(l.clone(), 0.99));
            lat[i].extend(l);
            del[i].push(d);
        }
        r50.push(this[1].0 / this[0].0);
        r99.push(this[1].1 / this[0].1);
    }
    for i in 0..2 {
        rows[i].p50_us = pct(lat[i].clone(), 0.5);
        rows[i].p99_us = pct(lat[i].clone(), 0.99);
        rows[i].delivered = median(del[i].clone());
        println!(
            "relay {}: p50 {:.0} µs, p99 {:.0} µs, delivered {:.2} %",
            rows[i].setup,
            rows[i].p50_us,
            rows[i].p99_us,
            rows[i].delivered * 100.0
        );
    }
    let range = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(0.0, f64::max);
        (median(v.to_vec()), lo, hi)
    };
    rows[1].ratio_p50 = Some(range(&r50));
    rows[1].ratio_p99 = Some(range(&r99));
    Ok(rows)
}

fn report(
    m: &Mode,
    joins: &[JoinRow],
    rtt_ms: f64,
    fo: &[FailoverRow],
    relay: &[RelayRow],
) -> Result<()> {
    let mut md = String::new();
    md.push_str("# Cluster mode\n\n");
    md.push_str(&format!(
        "Two nodes and redis-server on this machine; {} runs per figure, medians. \
         Joins through user-space delay proxies ({rtt_ms:.1} ms measured UDP round trip), \
         counted in those round trips.\n\n",
        m.join_runs
    ));
    md.push_str("| join | to the home node | through another node | extra |\n|---|---|---|---|\n");
    for j in joins {
        md.push_str(&format!(
            "| {} | {:.2} RTT | {:.2} RTT | {:+.2} RTT |\n",
            j.transport, j.home_rtts, j.other_rtts, j.extra_rtts
        ));
    }
    md.push_str(&format!(
        "\n{} runs per failover figure, medians; the two settings alternated run by run.\n\n",
        m.failover_runs
    ));
    md.push_str("| a node goes away | client | settings | heartbeat / node TTL | first frame through the new node, after | frames lost | baseline / today |\n|---|---|---|---|---|---|---|\n");
    for f in fo {
        let ratio = fo
            .iter()
            .find(|b| b.settings == BASELINE && b.transport == f.transport && b.how == f.how)
            .filter(|_| f.settings == TODAY)
            .map_or(String::new(), |b| {
                format!("{:.1}×", b.relaying_again_ms / f.relaying_again_ms)
            });
        md.push_str(&format!(
            "| {} | {} | {} | {} / {} ms | {:.0} ms | {:.0} | {} |\n",
            f.how,
            f.transport,
            f.settings,
            f.heartbeat_ms,
            f.node_ttl_ms,
            f.relaying_again_ms,
            f.frames_lost,
            ratio
        ));
    }
    md.push_str("\n| relay, 8-player sessions at 60 Hz, 200 B | one-way p50 | p99 | delivered |\n|---|---|---|---|\n");
    for r in relay {
        md.push_str(&format!(
            "| {} | {:.0} µs | {:.0} µs | {:.2} % |\n",
            r.setup,
            r.p50_us,
            r.p99_us,
            r.delivered * 100.0
        ));
    }
    if let [s, c] = relay {
        if let (Some(a), Some(b)) = (c.ratio_p50, c.ratio_p99) {
            md.push_str(&format!(
                "\nCluster / single, paired per round ({} rounds, each {} s, the two back to back in \
                 alternating order): p50 {:.2}× (rounds {:.2}–{:.2}), p99 {:.2}× ({:.2}–{:.2}), \
                 delivered {:.3}×.\n",
                m.relay_rounds,
                m.relay_secs,
                a.0,
                a.1,
                a.2,
                b.0,
                b.1,
                b.2,
                c.delivered / s.delivered
            ));
        }
    }
    std::fs::create_dir_all("bench-results")?;
    std::fs::write("bench-results/report-cluster.md", &md)?;
    let json =
        serde_json::json!({ "joins": joins, "failover": fo, "relay": relay, "udp_rtt_ms": rtt_ms });
    std::fs::write(
        "bench-results/report-cluster.json",
        serde_json::to_string_pretty(&json)?,
    )?;
    println!("\n{md}");
    Ok(())
}

async fn run(m: Mode) -> Result<()> {
    let work = common::temp_dir("bench-cluster");
    // One certificate for every node (a redirect carries the target's hash;
    // one hash keeps the client's pinning simple).
    drop(node(&work, None, "", "", &[]));
    let (joins, rtt_ms) = if std::env::var_os("FSP2P_BENCH_ONLY_KILL").is_some() {
        (Vec::new(), 0.0)
    } else {
        join_cost(&m, &work).await?
    };
    let fo = failover(&m, &work).await?;
    let relay = relay_compare(&m, &work).await?;
    report(&m, &joins, rtt_ms, &fo, &relay)
}

fn main() -> Result<()> {
    if std::env::var_os("FSP2P_BENCH_LOGS").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter("flightsim_p2p=info")
            .with_writer(std::io::stderr)
            .init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(mode()))
}
