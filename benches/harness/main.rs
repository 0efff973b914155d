//! FlightSim P2P benchmark harness: `cargo bench --bench harness [-- --quick|--smoke|--setup|--game]`
//! (`--setup`: only the session-setup round trips, 9 runs each; `--game`: only
//! the game-rate scenario, 60 Hz players in 8-player sessions, stepped up).
//! (or `make bench`). Writes `bench-results/report.md` and `report.json`.
//!
//! Everything runs on this machine, in one run, so every figure has a
//! baseline measured under the same noise: our relay against coturn relaying
//! the same traffic over TURN channels and against a bare UDP forwarder (no
//! crypto: the ceiling); session setup over each transport against the same
//! emulated round trip. The server, coturn and the bare forwarder each run as
//! their own process; the load generator is this process. On a shared 2-core
//! machine the generator competes for the same cores, and for QUIC the
//! generator also pays for crypto: read ratios, not absolutes.

#[path = "../../tests/common/mod.rs"]
mod common;
mod game;
mod load;
mod scale;
mod setup;
mod turn;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use load::{Fleet, Step, System, Target};

struct Mode {
    name: &'static str,
    payloads: Vec<usize>,
    shapes: Vec<(usize, usize)>, // (sessions, peers)
    step_secs: f64,
    max_steps: usize,
    latency_secs: f64,
    setup_runs: usize,
    idle_connections: usize,
    session_secs: f64,
    /// Only the session-setup section (`--setup`): round trips to joined.
    setup_only: bool,
    /// The game-rate scenario (top of the report), if run.
    game: Option<game::GameMode>,
    /// Only the game-rate scenario (`--game`).
    game_only: bool,
}

/// Players stepped through at game rate (8-player sessions).
const GAME_PLAYERS: [usize; 13] = [8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 256, 384, 512];

fn mode() -> Mode {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--game") {
        Mode {
            name: "game",
            payloads: vec![],
            shapes: vec![],
            step_secs: 0.0,
            max_steps: 0,
            latency_secs: 0.0,
            setup_runs: 0,
            idle_connections: 0,
            session_secs: 0.0,
            setup_only: false,
            game: Some(game::GameMode {
                players: GAME_PLAYERS.to_vec(),
                secs: 2.0,
                count_players: Some(32),
            }),
            game_only: true,
        }
    } else if args.iter().any(|a| a == "--setup") {
        Mode {
            name: "setup",
            payloads: vec![],
            shapes: vec![],
            step_secs: 0.0,
            max_steps: 0,
            latency_secs: 0.0,
            setup_runs: 9,
            idle_connections: 0,
            session_secs: 0.0,
            setup_only: true,
            game: None,
            game_only: false,
        }
    } else if args.iter().any(|a| a == "--smoke") {
        Mode {
            name: "smoke",
            payloads: vec![200],
            shapes: vec![(2, 2)],
            step_secs: 0.3,
            max_steps: 2,
            latency_secs: 0.3,
            setup_runs: 1,
            idle_connections: 50,
            session_secs: 0.3,
            setup_only: false,
            // One tiny step: exercises the code path, stays fast.
            game: Some(game::GameMode {
                players: vec![8],
                secs: 0.3,
                count_players: None,
            }),
            game_only: false,
        }
    } else if args.iter().any(|a| a == "--quick") {
        Mode {
            name: "quick",
            payloads: vec![200],
            shapes: vec![(8, 2), (2, 8)],
            step_secs: 0.8,
            max_steps: 9,
            latency_secs: 1.0,
            setup_runs: 5,
            idle_connections: 2000,
            session_secs: 1.0,
            setup_only: false,
            game: Some(game::GameMode {
                players: vec![8, 16, 32, 48, 64, 96, 128],
                secs: 1.0,
                count_players: Some(32),
            }),
            game_only: false,
        }
    } else {
        Mode {
            name: "full",
            payloads: vec![64, 200, 1000],
            shapes: vec![(8, 2), (2, 8)],
            step_secs: 1.5,
            max_steps: 10,
            latency_secs: 2.0,
            setup_runs: 9,
            idle_connections: 10_000,
            session_secs: 2.0,
            setup_only: false,
            game: Some(game::GameMode {
                players: GAME_PLAYERS.to_vec(),
                secs: 2.0,
                count_players: Some(32),
            }),
            game_only: false,
        }
    }
}

/// A child process killed on drop.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real server binary, started the same way the tests start it.
struct Server {
    proc: common::ServeProcess,
    quic: SocketAddr,
    http: SocketAddr,
    hash: [u8; 32],
}

fn start_server(cert_dir: &std::path::Path) -> Result<Server> {
    start_server_with(cert_dir, None, &[])
}

/// The server, from `bin` if given (else the build under test), with the
/// harness's capacity flags and then `flags`.
fn start_server_with(
    cert_dir: &std::path::Path,
    bin: Option<&str>,
    flags: &[String],
) -> Result<Server> {
    // ServeProcess takes its binary from FSP2P_TEST_SERVER_BIN.
    let saved = std::env::var_os("FSP2P_TEST_SERVER_BIN");
    if let Some(bin) = bin {
        std::env::set_var("FSP2P_TEST_SERVER_BIN", bin);
    }
    let mut args: Vec<&str> = common::UNLIMITED.to_vec();
    args.extend(flags.iter().map(String::as_str));
    let proc = common::ServeProcess::start(cert_dir, &args, Stdio::null());
    match saved {
        Some(v) => std::env::set_var("FSP2P_TEST_SERVER_BIN", v),
        None => std::env::remove_var("FSP2P_TEST_SERVER_BIN"),
    }
    Ok(Server {
        quic: proc.quic,
        http: proc.http,
        hash: flightsim_p2p::certs::parse_sha256_hex(&proc.hash)?,
        proc,
    })
}

/// Run `f` with this thread on core `core` only (if the machine has it), so
/// that processes it starts begin there; the thread's affinity is restored.
fn on_core<T>(core: usize, f: impl FnOnce() -> T) -> T {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores <= core {
        return f();
    }
    // SAFETY: cpu_set_t is plain data; 0 = the calling thread.
    unsafe {
        let mut old: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        let have = libc::sched_getaffinity(0, size, &mut old) == 0;
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut one);
        let pinned = have && libc::sched_setaffinity(0, size, &one) == 0;
        let out = f();
        if pinned {
            libc::sched_setaffinity(0, size, &old);
        }
        out
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_coturn(secret: &str) -> Result<Option<(Proc, SocketAddr)>> {
    if Command::new("turnserver").arg("--help").output().is_err() {
        eprintln!("!!! coturn (turnserver) not installed: coturn baselines skipped (apt-get install coturn)");
        return Ok(None);
    }
    let port = free_port()?;
    let child = Command::new("turnserver")
        .args([
            "-n",
            "--listening-ip",
            "127.0.0.1",
            "--relay-ip",
            "127.0.0.1",
        ])
        .args(["--listening-port", &port.to_string()])
        .args(["--min-port", "40000", "--max-port", "49999"])
        .args([
            "--use-auth-secret",
            "--static-auth-secret",
            secret,
            "--realm",
            "bench",
        ])
        .args([
            "--allow-loopback-peers",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
        ])
        .args(["--no-tcp-relay", "--log-file", "stdout", "--simple-log"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting coturn")?;
    Ok(Some((
        Proc(child),
        SocketAddr::from(([127, 0, 0, 1], port)),
    )))
}

fn start_bare(batch: bool) -> Result<(Proc, SocketAddr)> {
    let port = free_port()?;
    let child = Command::new(std::env::current_exe()?)
        .args(["--bare-forwarder", &port.to_string()])
        .args(batch.then_some("--batch"))
        .spawn()
        .context("starting the bare forwarder")?;
    Ok((Proc(child), SocketAddr::from(([127, 0, 0, 1], port))))
}

/// Raise the rate until loss appears; returns all steps. A lossy step is run
/// once more before giving up: on a shared machine a single step can lose to
/// a neighbour's burst.
async fn search(fleet: &Fleet, payload: usize, m: &Mode) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut rate = 50.0;
    for _ in 0..m.max_steps {
        let mut s = fleet.step(rate, payload, m.step_secs).await;
        if s.loss > 0.01 {
            let again = fleet.step(rate, payload, m.step_secs).await;
            if again.loss < s.loss {
                s = again;
            }
        }
        let lossy = s.loss > 0.01;
        steps.push(s);
        if lossy {
            break;
        }
        rate *= 2.0;
    }
    steps
}

fn best(steps: &[Step]) -> (f64, f64) {
    let lossless = steps
        .iter()
        .filter(|s| s.loss <= 0.01)
        .map(|s| s.delivered_per_sec)
        .fold(0.0, f64::max);
    let peak = steps
        .iter()
        .map(|s| s.delivered_per_sec)
        .fold(0.0, f64::max);
    (lossless, peak)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--bare-forwarder") {
        let port: u16 = args.get(i + 1).context("port")?.parse()?;
        return load::bare_forwarder(port, args.iter().any(|a| a == "--batch"));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(mode()))
}

async fn run(m: Mode) -> Result<()> {
    load::EPOCH.get_or_init(std::time::Instant::now);
    let work = std::env::temp_dir().join(format!("fsp2p-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let server = start_server(&work)?;
    let secret = "bench-secret-0123456789";
    let coturn = start_coturn(secret)?;
    let (_bare_proc, bare_addr) = start_bare(false)?;
    let target = Target {
        quic: server.quic,
        hash: server.hash,
        turn: coturn.as_ref().map(|c| c.1).unwrap_or(bare_addr),
        turn_secret: secret.into(),
        bare: bare_addr,
    };
    let server_pid = server.proc.child.id();
    let coturn_pid = coturn.as_ref().map(|c| c.0 .0.id());
    let bare_pid = _bare_proc.0.id();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut md = String::new();
    let mut json = serde_json::Map::new();
    md.push_str(&format!(
        "# FlightSim P2P benchmark ({} run)\n\nMachine: {} cores; server, coturn and the bare forwarder are separate processes, the load generator is the harness. All traffic on loopback.\n\n",
        m.name,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    ));

    // 0. Game rate, at the top: what a flight simulator's load costs.
    let mut game = m.game.clone();
    if let (Some(gm), Ok(list)) = (&mut game, std::env::var("FSP2P_GAME_PLAYERS")) {
        // FSP2P_GAME_PLAYERS=32,64: only these steps (profiling, a quick pair).
        gm.players = list
            .split(',')
            .filter_map(|p| p.trim().parse().ok())
            .collect();
    }
    if let Some(gm) = &game {
        // Each system with its own target; fsp2p variants (FSP2P_GAME_VARIANTS)
        // and the batched bare forwarder run only here.
        let mut keep = Vec::new();
        // fsp2p servers of their own, started on core 1 alone, as an operator
        // who gives the relay one core starts it: its runtime sizes itself to
        // the cores it may use (pinning after start-up would squeeze threads
        // sized for two cores onto one).
        let mut contenders = Vec::new();
        let mut servers = vec![("fsp2p relay".to_string(), None, Vec::new())];
        servers.extend(
            game::variants_from_env()
                .into_iter()
                .map(|(l, b, f)| (format!("fsp2p {l}"), b, f)),
        );
        for (label, bin, flags) in servers {
            let v = on_core(1, || start_server_with(&work, bin.as_deref(), &flags))?;
            let mut t = target.clone();
            t.quic = v.quic;
            t.hash = v.hash;
            contenders.push(game::Contender::new(
                &label,
                System::Ours,
                &t,
                v.proc.child.id(),
            ));
            keep.push(v);
        }
        if let Some(pid) = coturn_pid {
            contenders.push(game::Contender::new(
                "coturn (TURN channels)",
                System::Coturn,
                &target,
                pid,
            ));
        }
        contenders.push(game::Contender::new(
            "bare UDP forwarder",
            System::Bare,
            &target,
            bare_pid,
        ));
        let (batched_proc, batched_addr) = start_bare(true)?;
        let mut t = target.clone();
        t.bare = batched_addr;
        contenders.push(game::Contender::new(
            "bare forwarder, batched",
            System::Bare,
            &t,
            batched_proc.0.id(),
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (section, j) = game::run(&contenders, gm).await?;
        drop(batched_proc);
        drop(keep);
        md.push_str(&section);
        json.insert("game".into(), j);
    }

    // 1-3 (throughput, fan-out, CPU per frame, latency), unless only setup is asked for.
    if !m.setup_only && !m.game_only {
        // 1-3. Throughput, fan-out, CPU per frame.
        md.push_str("## Relay throughput (delivered frames/s, highest step with ≤1 % loss)\n\n");
        md.push_str("| payload | sessions × peers | fsp2p | coturn | bare UDP | fsp2p/coturn | fsp2p/bare | uplink B/frame fsp2p | uplink B/frame TURN | CPU ms/1000 frames fsp2p | coturn | bare | UDP datagrams/frame fsp2p | coturn | bare |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        let mut throughput = Vec::new();
        let mut latency_base = 0.0f64;
        for &payload in &m.payloads {
            for &(sessions, peers) in &m.shapes {
                let mut row = serde_json::Map::new();
                let mut results = Vec::new();
                for (system, pid) in [
                    (System::Ours, Some(server_pid)),
                    (System::Coturn, coturn_pid),
                    (System::Bare, Some(bare_pid)),
                ] {
                    let Some(pid) = pid else {
                        results.push(None);
                        continue;
                    };
                    let fleet = Fleet::connect(system, &target, sessions, peers, pid, false)
                        .await
                        .with_context(|| format!("connecting {}", system.name()))?;
                    let steps = search(&fleet, payload, &m).await;
                    let (lossless, peak) = best(&steps);
                    // Fan-out and CPU from the highest lossless step (or the first).
                    let at = steps
                        .iter()
                        .rfind(|s| s.loss <= 0.01)
                        .or(steps.first())
                        .cloned()
                        .unwrap_or_default();
                    eprintln!(
                    "{:<24} {payload:>4} B {sessions}x{peers}: lossless {lossless:>9.0}/s peak {peak:>9.0}/s",
                    system.name()
                );
                    row.insert(
                    format!("{system:?}").to_lowercase(),
                    serde_json::json!({"lossless_per_sec": lossless, "peak_per_sec": peak, "steps": steps}),
                );
                    results.push(Some((lossless, at)));
                    drop(fleet);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                let get = |i: usize| results[i].as_ref().map(|r| r.0).unwrap_or(f64::NAN);
                let step = |i: usize| results[i].as_ref().map(|r| r.1.clone()).unwrap_or_default();
                md.push_str(&format!(
                "| {payload} B | {sessions} × {peers} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                get(0), get(1), get(2), get(0) / get(1), get(0) / get(2),
                step(0).uplink_bytes_per_frame, step(1).uplink_bytes_per_frame,
                step(0).cpu_ms_per_1000, step(1).cpu_ms_per_1000, step(2).cpu_ms_per_1000,
                step(0).udp_datagrams_per_frame, step(1).udp_datagrams_per_frame, step(2).udp_datagrams_per_frame,
            ));
                if payload == 200 && sessions == 8 {
                    let slowest = (0..3)
                        .map(get)
                        .filter(|v| v.is_finite() && *v > 0.0)
                        .fold(f64::INFINITY, f64::min);
                    latency_base = slowest / (sessions * peers * (peers - 1)) as f64;
                }
                row.insert("payload".into(), payload.into());
                row.insert("sessions".into(), sessions.into());
                row.insert("peers".into(), peers.into());
                throughput.push(serde_json::Value::Object(row));
            }
        }
        json.insert("throughput".into(), throughput.into());
        md.push_str("\nUplink bytes per frame: what one client sends for one flight frame to every other peer of its session (fsp2p: QUIC packet bytes from quinn's counters, one copy; TURN: ChannelData bytes, one copy per other peer). CPU: the relay process's user+system time per 1000 delivered frames. UDP datagrams per frame: all UDP datagrams this host sent (clients and relay) per delivered frame. Read the throughput ratios with that column: under load quinn packs several frames into one QUIC packet (and uses GSO), while the plain-UDP baselines pay one send and one receive system call per frame in the load generator as well as in the relay, so at high rates the generator, not only the relay, limits coturn and the bare forwarder. At a game's 30-60 frames/s per player every frame is its own packet.\n\n");

        // 2. Latency at 10/50/90 % of our max lossless rate (200 B, 8 sessions x 2 peers).
        md.push_str("## One-way latency through the relay (200 B, 8 sessions × 2 peers), µs\n\nEvery system gets the same offered load: 10 %, 50 % and 90 % of the lowest lossless maximum of the three, so none runs past its capacity.\n\n| load | frames/s per peer | fsp2p p50 / p99 / p99.9 | coturn p50 / p99 / p99.9 | bare p50 / p99 / p99.9 |\n|---|---|---|---|---|\n");
        let per_peer_max = if latency_base.is_finite() && latency_base > 0.0 {
            latency_base
        } else {
            1000.0
        };
        let mut lat_json = Vec::new();
        for frac in [0.1, 0.5, 0.9] {
            let rate = per_peer_max * frac;
            let mut cells = Vec::new();
            for (system, pid) in [
                (System::Ours, Some(server_pid)),
                (System::Coturn, coturn_pid),
                (System::Bare, Some(bare_pid)),
            ] {
                let Some(pid) = pid else {
                    cells.push("n/a".to_string());
                    continue;
                };
                let fleet = Fleet::connect(system, &target, 8, 2, pid, false).await?;
                let s = fleet.step(rate, 200, m.latency_secs).await;
                cells.push(format!(
                    "{:.0} / {:.0} / {:.0}",
                    s.p50_us, s.p99_us, s.p999_us
                ));
                lat_json.push(serde_json::json!({"system": format!("{system:?}"), "fraction": frac, "per_peer_per_sec": rate, "step": s}));
            }
            md.push_str(&format!(
                "| {:.0} % | {:.0} | {} | {} | {} |\n",
                frac * 100.0,
                rate,
                cells[0],
                cells[1],
                cells[2]
            ));
        }
        json.insert("latency".into(), lat_json.into());
        md.push_str("\nOne-way: sender's clock to receiver's clock (one process), client → relay → client, including both clients' QUIC or UDP stacks.\n\n");
    }

    // 4-6: session setup, fallback, scale; not in `--game`.
    if !m.game_only {
        // 4-5. Session setup and fallback under an emulated 40 ms RTT.
        let rtt = Duration::from_millis(40);
        let one_way = rtt / 2;
        let quic_delayed = setup::udp_delay_proxy(server.quic, one_way).await?;
        let ws_delayed = setup::tcp_delay_proxy(server.http, one_way).await?;
        let tls = setup::tls_terminator(server.http, &work).await?;
        let wss_delayed = setup::tcp_delay_proxy(tls, one_way).await?;
        let proxy_rtt = setup::measure_proxy_rtt(one_way, 21).await?;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let st = setup::SetupTarget {
            quic_direct: server.quic,
            quic_delayed,
            ws_delayed: format!("ws://{ws_delayed}/ws"),
            wss_delayed: format!("wss://localhost:{}/ws", wss_delayed.port()),
            hash: server.hash,
            udp_rtt: proxy_rtt.udp,
            tcp_rtt: proxy_rtt.tcp,
        };
        md.push_str(&format!(
        "## Session setup under an emulated 40 ms RTT (median)\n\nThe delay proxies hold each packet for {} ms each way, and the TCP proxy holds a new connection's first bytes for the round trip of its handshake; an echo behind them measured a round trip of **{:.1} ms over UDP and {:.1} ms over TCP** (timer rounding and scheduling on top of the nominal 40 ms). Round trips below are counted in those measured RTTs.\n\n| transport | to joined (peer list received) | to first signal at the other peer |\n|---|---|---|\n",
        one_way.as_millis(),
        ms(proxy_rtt.udp),
        ms(proxy_rtt.tcp)
    ));
        json.insert("proxy_rtt_udp_ms".into(), ms(proxy_rtt.udp).into());
        json.insert("proxy_rtt_tcp_ms".into(), ms(proxy_rtt.tcp).into());
        let mut setup_json = Vec::new();
        for way in [
            setup::Way::QuicFresh,
            setup::Way::QuicResumed,
            setup::Way::WebTransport,
            setup::Way::WebSocket,
            setup::Way::WebSocketTls,
        ] {
            match setup::measure(way, &st, m.setup_runs).await {
                Ok(r) => {
                    md.push_str(&format!(
                        "| {} | {:.1} ms ({:.2} RTT) | {:.1} ms ({:.2} RTT) |\n",
                        r.transport,
                        r.joined_ms,
                        r.joined_rtts,
                        r.first_signal_ms,
                        r.first_signal_rtts
                    ));
                    setup_json.push(serde_json::to_value(&r)?);
                }
                Err(e) => md.push_str(&format!("| failed: {e:#} | | |\n")),
            }
        }
        json.insert("setup".into(), setup_json.into());
        match setup::browser(&st, server.http, m.setup_runs).await {
            Ok(Ok(b)) => {
                for (name, ms, rtts, _) in &b.rows {
                    md.push_str(&format!("| {name} | {ms:.1} ms ({rtts:.2} RTT) | — |\n"));
                }
                md.push_str(&format!(
                "\nChromium {} rows: `connect()` + `joinSession()` of client/web/fsp2p.js resolved, median of {} runs, each in a fresh browser context.\n",
                b.chromium, m.setup_runs
            ));
                json.insert("browser_setup".into(), serde_json::to_value(&b)?);
            }
            Ok(Err(why)) => md.push_str(&format!("| Chromium rows skipped: {why} | | |\n")),
            Err(e) => md.push_str(&format!("| Chromium rows failed: {e:#} | | |\n")),
        }
        let fb = setup::fallback_time(&st, m.setup_runs.max(3)).await?;
        md.push_str(&format!(
        "\nFallback: from a peer deciding ICE failed to its first relayed frame delivered, over the already-open connection: **{fb:.1} ms = {:.2} RTT** (one leg to the server, one to the other peer; no handshake).\n\n",
        fb / ms(proxy_rtt.udp)
    ));
        json.insert("fallback_ms".into(), fb.into());

        // 6. Scale.
        if !m.setup_only {
            let idle =
                scale::idle_connections(server.quic, server.hash, server_pid, m.idle_connections)
                    .await?;
            let sps = scale::sessions_per_sec(server.quic, server.hash, 16, m.session_secs).await?;
            md.push_str(&format!(
        "## Scale\n\n| measure | value |\n|---|---|\n| idle QUIC connections held | {} (opened in {:.1} s) |\n| server RSS before → after | {:.1} MiB → {:.1} MiB |\n| RSS per idle connection | {:.1} KiB |\n| sessions created and left per second (16 clients) | {:.0} |\n\n",
        idle.connections, idle.connect_secs, idle.rss_before_mib, idle.rss_after_mib,
        idle.rss_per_connection_kib, sps
    ));
            json.insert("idle".into(), serde_json::to_value(&idle)?);
            json.insert("sessions_per_sec".into(), sps.into());
        }
    }

    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-results");
    std::fs::create_dir_all(&out)?;
    let name = if m.name == "full" {
        "report".to_string()
    } else {
        format!("report-{}", m.name)
    };
    std::fs::write(out.join(format!("{name}.md")), &md)?;
    std::fs::write(
        out.join(format!("{name}.json")),
        serde_json::to_string_pretty(&serde_json::Value::Object(json))?,
    )?;
    println!("{md}");
    println!("written: bench-results/{name}.md and .json");
    drop(server);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
