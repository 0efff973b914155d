//! One player of the three-region test (tests/regions/run.sh): the creator
//! or the joiner of a two-player session whose frames go through the relay.
//!
//!     regions_player --server IP:PORT --cert-hash HEX --code-file PATH
//!                    (--create [--measure] | --join) [--secs 3]
//!
//! `--create`: create a session (with `--measure`, wait up to 2 s for the
//! client's own region measurement first, so `CreateSession` carries it;
//! without, send none: placement by creator) and write its code to
//! `--code-file`; then send a 200-byte flight frame (u32 sequence number,
//! then the send time in µs) to the other player 60 times a second for
//! `--secs`, and time each echo. `--join`: wait for the code, join (any
//! node redirects to the session's), and echo every frame back.
//! Both measure their own round trip to the node they end up on (`Ping`),
//! at the start and again at the end (after a move, if the session moved).
//! `--join --measure` waits for the joiner's measurement too, so that
//! `JoinSession` carries it (what lets the server move the session).
//!
//! Prints one JSON line: `{"role", "node_rtt_ms", "node_rtt_end_ms",
//! "pair_rtt_ms" (median echo, creator only), "pair_rtt_first_ms" and
//! "pair_rtt_last_ms" (median echo of the first and the last 3 s), "sent",
//! "received", "gaps", "measured"}`; exit 0.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use flightsim_p2p::client::{Client, ClientConfig, Event, Trust};

struct Args {
    server: std::net::SocketAddr,
    hash: [u8; 32],
    code_file: std::path::PathBuf,
    create: bool,
    measure: bool,
    secs: f64,
    nodes_url: Option<String>,
}

fn args() -> Result<Args> {
    let mut a = std::env::args().skip(1);
    let (mut server, mut hash, mut code_file) = (None, None, None);
    let (mut create, mut measure, mut secs, mut nodes_url) = (None, false, 3.0, None);
    while let Some(k) = a.next() {
        match k.as_str() {
            "--server" => server = Some(a.next().context("--server")?.parse()?),
            "--cert-hash" => {
                hash = Some(flightsim_p2p::certs::parse_sha256_hex(
                    &a.next().context("--cert-hash")?,
                )?)
            }
            "--code-file" => code_file = Some(a.next().context("--code-file")?.into()),
            "--nodes-url" => nodes_url = Some(a.next().context("--nodes-url")?),
            "--create" => create = Some(true),
            "--join" => create = Some(false),
            "--measure" => measure = true,
            "--secs" => secs = a.next().context("--secs")?.parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(Args {
        server: server.context("--server is required")?,
        hash: hash.context("--cert-hash is required")?,
        code_file: code_file.context("--code-file is required")?,
        create: create.context("--create or --join")?,
        measure,
        secs,
        nodes_url,
    })
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// The player's round trip to its node: the median of 5 `Ping`s.
async fn node_rtt(c: &mut Client) -> Result<f64> {
    let mut v = Vec::new();
    for _ in 0..5 {
        v.push(c.ping().await?.as_secs_f64() * 1000.0);
    }
    median(&mut v).context("no ping")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let a = args()?;
    // RUST_LOG=fsp2p_client=debug shows why a region was not measured.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let mut cfg = ClientConfig::new(a.server, Trust::CertHash(a.hash));
    cfg.connect_timeout = Duration::from_secs(20);
    cfg.measure_regions = a.measure;
    cfg.nodes_url = a.nodes_url.clone();
    let mut c = Client::connect(&cfg, None).await.context("connect")?;
    let mut measured = Vec::new();
    let mut create_retries = 0u32;
    let peer;
    if a.create {
        if a.measure {
            measured = c.measured_regions(Duration::from_secs(2)).await;
        }
        // `cluster_unavailable` answers a create the directory could not
        // take in time (a far region's node reaches Redis across the WAN):
        // wait and send it again, as PROTOCOL.md §11 says.
        let info = loop {
            match c.create_session(0, None).await {
                Err(e)
                    if e.server_code()
                        == Some(flightsim_p2p::protocol::ErrorCode::ClusterUnavailable)
                        && create_retries < 10 =>
                {
                    create_retries += 1;
                    eprintln!("regions_player: {e}; again in 500 ms");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                r => break r.context("create")?,
            }
        };
        std::fs::write(&a.code_file, &info.code)?;
        // The joiner's PeerJoined.
        peer = c
            .wait_for(|m| match m {
                flightsim_p2p::protocol::ServerMsg::PeerJoined(p) => Some(p.id),
                _ => None,
            })
            .await?;
    } else {
        let deadline = Instant::now() + Duration::from_secs(30);
        let code = loop {
            if let Ok(code) = std::fs::read_to_string(&a.code_file) {
                if !code.trim().is_empty() {
                    break code.trim().to_string();
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "no code in 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if a.measure {
            measured = c.measured_regions(Duration::from_secs(2)).await;
        }
        let info = c.join_session(&code, None).await.context("join")?;
        peer = info.host;
    }
    let node_rtt_ms = node_rtt(&mut c).await?;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(a.secs);
    let sender = c.relay_sender();
    let (mut sent, mut received, mut gaps) = (0u64, 0u64, 0u64);
    let mut rtts = Vec::new();
    // (when the frame was sent, in s from the start; its echo's RTT)
    let mut timed: Vec<(f64, f64)> = Vec::new();
    let mut last_seq: Option<u32> = None;
    let mut tick = tokio::time::interval(Duration::from_micros(16_667));
    // Both stay a little longer: the creator for the last echoes, the
    // joiner to echo them.
    let until = if a.create {
        end + Duration::from_secs(1)
    } else {
        end + Duration::from_secs(2)
    };
    loop {
        let now = Instant::now();
        if now >= until {
            break;
        }
        tokio::select! {
            _ = tick.tick(), if a.create && now < end => {
                let mut frame = vec![0u8; 200];
                frame[..4].copy_from_slice(&(sent as u32).to_le_bytes());
                let us = start.elapsed().as_micros() as u64;
                frame[4..12].copy_from_slice(&us.to_le_bytes());
                if sender.send(peer, &frame).await.is_ok() {
                    sent += 1;
                }
            }
            e = c.next_event_within(Duration::from_millis(50)) => {
                let Some(Event::Relay { from, payload, .. }) = e else { continue };
                if from != peer || payload.len() < 12 {
                    continue;
                }
                received += 1;
                let seq = u32::from_le_bytes(payload[..4].try_into()?);
                if let Some(l) = last_seq {
                    if seq > l + 1 {
                        gaps += u64::from(seq - l - 1);
                    }
                }
                last_seq = Some(last_seq.map_or(seq, |l| l.max(seq)));
                if a.create {
                    let us = u64::from_le_bytes(payload[4..12].try_into()?);
                    let rtt = start.elapsed().as_micros() as u64 - us;
                    rtts.push(rtt as f64 / 1000.0);
                    timed.push((us as f64 / 1e6, rtt as f64 / 1000.0));
                } else {
                    let _ = sender.send(peer, &payload).await;
                }
            }
        }
    }
    let node_rtt_end_ms = node_rtt(&mut c).await?;
    let window = |from: f64, to: f64| {
        let mut v: Vec<f64> = timed
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|(_, r)| *r)
            .collect();
        median(&mut v)
    };
    let line = serde_json::json!({
        "role": if a.create { "creator" } else { "joiner" },
        "node_rtt_ms": node_rtt_ms,
        "node_rtt_end_ms": node_rtt_end_ms,
        "pair_rtt_ms": median(&mut rtts),
        "pair_rtt_first_ms": window(0.0, 3.0),
        "pair_rtt_last_ms": window(a.secs - 3.0, a.secs),
        "sent": sent,
        "received": received,
        "gaps": gaps,
        "measured": measured.iter().map(|r| (r.region.clone(), r.rtt_ms)).collect::<Vec<_>>(),
        "create_retries": create_retries,
    });
    println!("{line}");
    c.close().await;
    Ok(())
}
