//! Game rate: the load a flight simulator puts on a relay. Every player sends
//! a 200-byte frame at 60 Hz to every other member of its 8-player session,
//! on its own clock, so every frame leaves as its own packet (no batching by
//! overload, unlike the saturation search). The server process is pinned to
//! core 1 and the generator (this process) to core 0; players are stepped up
//! until loss passes 1 % or p99 passes 1 ms.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::load::{clock_ticks, cpu_ticks, Fleet, Step, System, Target};

pub const HZ: f64 = 60.0;
pub const PAYLOAD: usize = 200;
pub const SESSION: usize = 8;
const MAX_LOSS: f64 = 0.01;
const MAX_P99_US: f64 = 1000.0;

pub struct GameMode {
    pub players: Vec<usize>,
    pub secs: f64,
    /// Player count at which system calls are counted with `strace -c` (a
    /// separate step: tracing slows the traced process), if any.
    pub strace_players: Option<usize>,
}

/// Pin every thread of `pid` to `cpus` (`taskset -a -cp`). Err says why not.
fn pin(pid: u32, cpus: &str) -> Result<(), String> {
    match Command::new("taskset")
        .args(["-a", "-cp", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
        Err(e) => Err(format!("taskset: {e}")),
    }
}

/// System calls of `pid` (all threads) while `f` runs, from `strace -c -f`:
/// (UDP send/receive calls, all calls). None if strace is missing or fails.
async fn with_strace<F: std::future::Future<Output = Step>>(
    pid: u32,
    f: F,
) -> (Step, Option<(f64, f64)>) {
    let out = std::env::temp_dir().join(format!("fsp2p-strace-{}-{pid}.txt", std::process::id()));
    let child = Command::new("strace")
        .args(["-c", "-f", "-q", "-o"])
        .arg(&out)
        .args(["-p", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return (f.await, None);
    };
    tokio::time::sleep(Duration::from_millis(300)).await; // attach to every thread
    let step = f.await;
    // SIGINT: strace detaches and writes its summary. Our own child, by id.
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    let (mut udp, mut all) = (0u64, 0u64);
    for line in text.lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        // % time, seconds, usecs/call, calls, [errors], syscall
        if t.len() < 5 || t[0].starts_with('%') || t[0].starts_with('-') {
            continue;
        }
        let (Some(name), Ok(calls)) = (t.last(), t[3].parse::<u64>()) else {
            continue;
        };
        if *name == "total" {
            continue;
        }
        all += calls;
        if name.starts_with("send") || name.starts_with("recv") {
            udp += calls;
        }
    }
    if all == 0 || step.delivered <= 0.0 {
        return (step, None);
    }
    (
        step.clone(),
        Some((udp as f64 / step.delivered, all as f64 / step.delivered)),
    )
}

#[derive(Debug, Clone, Default, serde::Serialize)]
struct SystemResult {
    system: String,
    /// Most players with loss ≤ 1 % and p99 ≤ 1 ms (0: not even the first step).
    players_held: usize,
    /// The step at `players_held` (or the first step if none held).
    at: Step,
    /// Relay CPU, % of one core, at `players_held`.
    cpu_pct: f64,
    /// Generator (this process) CPU, % of one core, at `players_held`.
    generator_cpu_pct: f64,
    /// UDP send/receive system calls and all system calls of the relay
    /// process per delivered frame, from `strace -c` at `strace_players`.
    udp_syscalls_per_frame: Option<f64>,
    all_syscalls_per_frame: Option<f64>,
    /// Every step: (players, step, generator CPU %).
    steps: Vec<(usize, Step, f64)>,
    /// Why stepping stopped other than by loss or latency (a connect failure).
    error: Option<String>,
}

fn held(s: &Step) -> bool {
    s.loss <= MAX_LOSS && s.p99_us <= MAX_P99_US
}

async fn one_step(
    system: System,
    target: &Target,
    pid: u32,
    players: usize,
    secs: f64,
) -> Result<(Step, f64)> {
    let fleet = Fleet::connect(system, target, players / SESSION, SESSION, pid)
        .await
        .with_context(|| format!("connecting {} players to {}", players, system.name()))?;
    let me = std::process::id();
    let g0 = cpu_ticks(me);
    let s = fleet.game_step(HZ, PAYLOAD, secs).await;
    let gen_pct = cpu_ticks(me).saturating_sub(g0) as f64 / clock_ticks() / (secs + 0.3) * 100.0;
    drop(fleet);
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok((s, gen_pct))
}

async fn run_system(
    system: System,
    target: &Target,
    pid: u32,
    gm: &GameMode,
) -> Result<SystemResult> {
    let mut r = SystemResult {
        system: system.name().into(),
        ..Default::default()
    };
    for &players in &gm.players {
        let (mut s, mut g) = match one_step(system, target, pid, players, gm.secs).await {
            Ok(x) => x,
            Err(e) => {
                r.error = Some(format!("{e:#}"));
                break;
            }
        };
        if !held(&s) {
            // One more try: a neighbour's burst on a shared machine can spoil one step.
            let Ok((again, g2)) = one_step(system, target, pid, players, gm.secs).await else {
                break;
            };
            if held(&again) || again.loss < s.loss {
                (s, g) = (again, g2);
            }
        }
        eprintln!(
            "game {:<24} {players:>4} players: delivered {:>8.0}/s loss {:>6.2} % p50 {:>5.0} µs p99 {:>6.0} µs CPU {:>6.2} ms/1000 generator {:>3.0} %",
            system.name(),
            s.delivered_per_sec,
            s.loss * 100.0,
            s.p50_us,
            s.p99_us,
            s.cpu_ms_per_1000,
            g
        );
        let ok = held(&s);
        r.steps.push((players, s.clone(), g));
        if !ok {
            break;
        }
        r.players_held = players;
        r.at = s;
        r.generator_cpu_pct = g;
    }
    if r.players_held == 0 {
        if let Some((_, s, g)) = r.steps.first() {
            r.at = s.clone();
            r.generator_cpu_pct = *g;
        }
    }
    r.cpu_pct = r.at.cpu_ms_per_1000 * r.at.delivered_per_sec / 10_000.0;
    if let Some(players) = gm.strace_players {
        let fleet = Fleet::connect(system, target, players / SESSION, SESSION, pid).await?;
        let (_, counts) = with_strace(pid, fleet.game_step(HZ, PAYLOAD, gm.secs)).await;
        if let Some((udp, all)) = counts {
            r.udp_syscalls_per_frame = Some(udp);
            r.all_syscalls_per_frame = Some(all);
        }
        drop(fleet);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(r)
}

/// Run the game-rate scenario; returns the report section and its JSON.
pub async fn run(
    target: &Target,
    systems: &[(System, Option<u32>)],
    gm: &GameMode,
) -> Result<(String, serde_json::Value)> {
    // Pin: servers to core 1, generator to core 0; undone at the end.
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let all_cores = format!("0-{}", cores.saturating_sub(1));
    let me = std::process::id();
    let mut pinned = Vec::new();
    let mut pin_notes = Vec::new();
    if cores >= 2 {
        for (system, pid) in systems {
            if let Some(pid) = pid {
                match pin(*pid, "1") {
                    Ok(()) => pinned.push(*pid),
                    Err(e) => pin_notes.push(format!("{} not pinned ({e})", system.name())),
                }
            }
        }
        match pin(me, "0") {
            Ok(()) => pinned.push(me),
            Err(e) => pin_notes.push(format!("generator not pinned ({e})")),
        }
    } else {
        pin_notes.push("one core: nothing pinned".into());
    }
    let pinning = if pin_notes.is_empty() {
        "every relay process (fsp2p server, coturn, bare forwarder) pinned to core 1 and the load generator (the harness, all its threads) to core 0 with `taskset -a -cp`".to_string()
    } else {
        format!(
            "pinning with `taskset -a -cp` (relays to core 1, generator to core 0) partly skipped: {}",
            pin_notes.join("; ")
        )
    };
    eprintln!("game: {pinning}");

    let mut results = Vec::new();
    let mut failure = None;
    for (system, pid) in systems {
        let Some(pid) = pid else { continue };
        match run_system(*system, target, *pid, gm).await {
            Ok(r) => {
                if let Some(e) = &r.error {
                    failure = Some(format!("{}: {e}", system.name()));
                }
                results.push((*system, r))
            }
            Err(e) => {
                failure = Some(format!("{}: {e:#}", system.name()));
            }
        }
    }
    for pid in pinned {
        let _ = pin(pid, &all_cores);
    }

    let mut md = String::new();
    md.push_str(&format!(
        "## Game rate: {SESSION}-player sessions, {HZ:.0} Hz per player, {PAYLOAD} B frames, every frame to every other member\n\n\
         These are game-rate numbers: every player sends on its own clock, so every frame is its own packet, unlike the saturation table below, where overload lets QUIC pack several frames into one packet. \
         Players stepped over {:?} until loss > 1 % or p99 > 1 ms ({:.1} s per step, a failing step retried once); {pinning}. \
         CPU, latency and datagrams are taken at the most players held.\n\n",
        gm.players, gm.secs
    ));
    md.push_str("| system | players held | delivered frames/s | relay CPU, % of core 1 | CPU ms / 1000 delivered frames | UDP datagrams / delivered frame | UDP send+recv syscalls / frame | all syscalls / frame | p50 / p99 µs | loss | generator CPU, % of core 0 |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "n/a".into());
    for (_, r) in &results {
        md.push_str(&format!(
            "| {} | {} | {:.0} | {:.1} | {:.2} | {:.2} | {} | {} | {:.0} / {:.0} | {:.2} % | {:.0} |\n",
            r.system,
            r.players_held,
            r.at.delivered_per_sec,
            r.cpu_pct,
            r.at.cpu_ms_per_1000,
            r.at.udp_datagrams_per_frame,
            opt(r.udp_syscalls_per_frame),
            opt(r.all_syscalls_per_frame),
            r.at.p50_us,
            r.at.p99_us,
            r.at.loss * 100.0,
            r.generator_cpu_pct
        ));
    }
    let get = |s: System| results.iter().find(|(x, _)| *x == s).map(|(_, r)| r);
    if let (Some(o), Some(c)) = (get(System::Ours), get(System::Coturn)) {
        // The same player count for both: the largest both held (CPU per frame
        // falls with load for any event loop, so compare at equal load too).
        let common = o.players_held.min(c.players_held);
        let at = |r: &SystemResult| {
            r.steps
                .iter()
                .find(|(p, _, _)| *p == common)
                .map(|(_, s, _)| s.cpu_ms_per_1000)
                .unwrap_or(f64::NAN)
        };
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "n/a".into(),
        };
        md.push_str(&format!(
            "| **fsp2p / coturn** | **{:.2}** | {:.2} | {:.2} | **{:.2}** (at {common} players each: **{:.2}**) | {:.2} | {} | {} | {:.2} / {:.2} | | |\n",
            o.players_held as f64 / c.players_held.max(1) as f64,
            o.at.delivered_per_sec / c.at.delivered_per_sec,
            o.cpu_pct / c.cpu_pct,
            o.at.cpu_ms_per_1000 / c.at.cpu_ms_per_1000,
            at(o) / at(c),
            o.at.udp_datagrams_per_frame / c.at.udp_datagrams_per_frame,
            ratio(o.udp_syscalls_per_frame, c.udp_syscalls_per_frame),
            ratio(o.all_syscalls_per_frame, c.all_syscalls_per_frame),
            o.at.p50_us / c.at.p50_us,
            o.at.p99_us / c.at.p99_us,
        ));
        md.push_str(
            "\nIssue 17's goals: CPU per frame ≤ 0.5× coturn's and players held ≥ 2× coturn's.\n",
        );
    }
    md.push_str(&format!(
        "\nUDP datagrams per frame: all UDP datagrams this host sent (generator and relay) per delivered frame. System calls: the relay process's, all threads, counted by `strace -c -f` {} (tracing slows the traced process, so that step gives no CPU or latency figures; idle calls in the 0.3 s around it are included); UDP = `send*`/`recv*` calls. Generator CPU near 100 % means the generator, not the relay, set the limit.\n\n",
        gm.strace_players
            .map(|p| format!("in a separate step at {p} players"))
            .unwrap_or_else(|| "only in `--quick`, `--game` and the full run".into())
    ));
    md.push_str("| players | ");
    for (s, _) in &results {
        md.push_str(&format!("{} CPU ms/1000, p99 µs, loss | ", s.name()));
    }
    md.push_str("\n|---|");
    for _ in &results {
        md.push_str("---|");
    }
    md.push('\n');
    for &players in &gm.players {
        if !results
            .iter()
            .any(|(_, r)| r.steps.iter().any(|(p, _, _)| *p == players))
        {
            continue;
        }
        md.push_str(&format!("| {players} | "));
        for (_, r) in &results {
            match r.steps.iter().find(|(p, _, _)| *p == players) {
                Some((_, s, _)) => md.push_str(&format!(
                    "{:.2}, {:.0}, {:.2} % | ",
                    s.cpu_ms_per_1000,
                    s.p99_us,
                    s.loss * 100.0
                )),
                None => md.push_str("— | "),
            }
        }
        md.push('\n');
    }
    if let Some(f) = &failure {
        md.push_str(&format!("\nStopped early: {f}\n"));
    }
    md.push('\n');
    let json = serde_json::json!({
        "hz": HZ, "payload": PAYLOAD, "session": SESSION, "pinning": pinning,
        "systems": results.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
        "failure": failure,
    });
    Ok((md, json))
}
