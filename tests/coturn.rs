//! The coturn deployment in `stun/` against the REAL coturn (Debian package
//! `coturn`: `turnserver`, `turnutils_uclient`, `turnutils_stunclient`), on
//! loopback only.
//!
//! 1. TURN credentials from a real server Welcome (`peer --print-welcome`)
//!    allocate on coturn and relay packets to a peer: they arrive.
//! 2. An expired credential, one signed with a wrong secret and one whose
//!    expiry was edited are refused; both secrets of an overlap rotation work.
//! 3. The production `denied-peer-ip` list refuses loopback, private, CGNAT,
//!    link-local, NAT64 and IPv4-mapped (`::ffff:127.0.0.1`) peers: with the
//!    production config itself, and with the list as the only barrier
//!    (`allow-loopback-peers` on, as in dev) where a refused packet would
//!    otherwise really arrive.
//! 4. STUN binding returns the reflexive address (dev and production config).
//!
//! Every coturn is started the way the container starts it: through
//! `stun/entrypoint.sh`, which renders the config with the secret(s) read from
//! a secret file. Ports come from blocks below Linux's ephemeral range; every
//! child process is killed when its guard drops, also on panic.
//!
//! Peers in private ranges are only ever asked for a permission (`-n 0`):
//! no packet is sent to them even if coturn wrongly granted it, so all traffic
//! stays on loopback. Packet tests use echo peers on 127.0.0.x / ::1.
//!
//! Without coturn on PATH every test fails, saying how to install it.

mod common;

use std::fs::{self, File};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flightsim_p2p::protocol::Welcome;
use flightsim_p2p::turn::turn_credential;

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_flightsim-p2p");
/// Secrets used by the tests (never used anywhere else).
const SECRET_CURRENT: &str = "test-current-0123456789abcdef0123456789abcdef";
const SECRET_PREVIOUS: &str = "test-previous-fedcba9876543210fedcba987654321";
/// Packets sent in each relay test.
const PACKETS: u32 = 10;
/// Longest any one tool run may take (uclient waits 1-6 s before sending).
const TOOL_TIMEOUT: Duration = Duration::from_secs(25);

// ---------------------------------------------------------------------------
// Fail when coturn is missing
// ---------------------------------------------------------------------------

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// Fails the test when coturn is missing: these tests are the only proof that
/// the credentials and the `stun/` configs work with the real coturn, so a
/// machine without it must not report them as passed. `make test` installs it
/// first (`make deps`, scripts/deps.sh).
fn require_coturn() {
    let missing: Vec<&str> = ["turnserver", "turnutils_uclient", "turnutils_stunclient"]
        .into_iter()
        .filter(|t| !on_path(t))
        .collect();
    assert!(
        missing.is_empty(),
        "coturn is not installed: {missing:?} not on PATH. Install it with `make deps` \
         (scripts/deps.sh, Debian), `apt-get install coturn` (Debian/Ubuntu) or \
         `brew install coturn` (macOS), then run the tests again"
    );
}

/// Print past libtest's capture (it captures eprintln! of passing tests).
fn loud(msg: &str) {
    let bar = "=".repeat(72);
    let _ = writeln!(std::io::stderr(), "\n{bar}\n{msg}\n{bar}\n");
}

// ---------------------------------------------------------------------------
// Small helpers: temp dirs, ports, time
// ---------------------------------------------------------------------------

/// A temporary directory, removed on drop unless the test is failing.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "fsp2p-coturn-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("(test failed: keeping {} for inspection)", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Ports for one coturn: listener (UDP, and TCP in dev), TLS listener, relay range.
#[derive(Clone, Copy, Debug)]
struct Ports {
    listen: u16,
    tls: u16,
    relay_min: u16,
    relay_max: u16,
}

/// A block of 128 ports that are free right now, from 20000-31999: below Linux's
/// ephemeral range (32768-60999), so OS-chosen ports of other tests cannot land
/// in it. Blocks rotate per process (pid) and per call, so parallel tests and
/// parallel test processes get different blocks; each is probed before use.
fn reserve_ports() -> Ports {
    const FIRST: u32 = 20000;
    // 126 relay ports: uclient makes two allocations per run (a probe and the
    // real one) and a refused run leaves both behind until they time out.
    const BLOCK: u32 = 128;
    const BLOCKS: u32 = 93;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id() * 7;
    for _ in 0..BLOCKS {
        let i = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % BLOCKS;
        let base = (FIRST + i * BLOCK) as u16;
        let all_udp: Option<Vec<UdpSocket>> = (base..base + BLOCK as u16)
            .map(|p| UdpSocket::bind((Ipv4Addr::LOCALHOST, p)).ok())
            .collect();
        let tcp = [base, base + 1]
            .iter()
            .map(|p| TcpListener::bind((Ipv4Addr::LOCALHOST, *p)).ok())
            .collect::<Option<Vec<_>>>();
        if all_udp.is_some() && tcp.is_some() {
            return Ports {
                listen: base,
                tls: base + 1,
                relay_min: base + 2,
                relay_max: base + BLOCK as u16 - 1,
            };
        }
    }
    panic!("no free block of 128 loopback ports in 20000-31903");
}

fn ipv6_loopback_available() -> bool {
    UdpSocket::bind("[::1]:0").is_ok()
}

/// The IPv6 and IPv4-mapped deny-list checks need `::1`; a check that cannot
/// run must not pass. Where `::1` is missing (a container started with IPv6
/// off on loopback) the test turns it on when it can (as root, which CI is);
/// otherwise it fails, saying how to turn it on.
fn require_ipv6_loopback() {
    if ipv6_loopback_available() {
        return;
    }
    let mut tried = Vec::new();
    for cmd in [
        &["sysctl", "-w", "net.ipv6.conf.lo.disable_ipv6=0"][..],
        &["ip", "-6", "addr", "add", "::1/128", "dev", "lo"][..],
    ] {
        let out = Command::new(cmd[0]).args(&cmd[1..]).output();
        let said = match out {
            Ok(o) => format!("{} {}", o.status, String::from_utf8_lossy(&o.stderr).trim()),
            Err(e) => e.to_string(),
        };
        tried.push(format!("`{}`: {said}", cmd.join(" ")));
    }
    // The kernel may take a moment to make ::1 usable after the sysctl.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if ipv6_loopback_available() {
            loud(&format!(
                "NOTE: there was no IPv6 loopback (::1); turned it on:\n{}",
                tried.join("\n")
            ));
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "no IPv6 loopback (::1), so the IPv6 and IPv4-mapped deny-list checks cannot run, \
         and turning it on failed:\n{}\nAs root: `sysctl -w net.ipv6.conf.lo.disable_ipv6=0` \
         and `ip -6 addr add ::1/128 dev lo` (in Docker: --sysctl \
         net.ipv6.conf.lo.disable_ipv6=0), then run the tests again",
        tried.join("\n")
    );
}

// ---------------------------------------------------------------------------
// STUN binding (readiness probe and exact reflexive-address check)
// ---------------------------------------------------------------------------

const MAGIC: u32 = 0x2112_A442;

/// Send STUN Binding requests from `sock` to `server` until a matching success
/// response arrives or `timeout` passes; return the (XOR-)MAPPED-ADDRESS.
fn stun_binding(sock: &UdpSocket, server: SocketAddr, timeout: Duration) -> Option<SocketAddr> {
    let txn: [u8; 12] = rand::random();
    let mut req = Vec::with_capacity(20);
    req.extend_from_slice(&0x0001u16.to_be_bytes());
    req.extend_from_slice(&0u16.to_be_bytes());
    req.extend_from_slice(&MAGIC.to_be_bytes());
    req.extend_from_slice(&txn);
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        sock.send_to(&req, server).ok()?;
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if from != server {
            continue;
        }
        if let Some(addr) = parse_binding_response(&buf[..n], &txn) {
            return Some(addr);
        }
    }
    None
}

fn parse_binding_response(msg: &[u8], txn: &[u8; 12]) -> Option<SocketAddr> {
    if msg.len() < 20 || msg[0..2] != [0x01, 0x01] || msg[4..8] != MAGIC.to_be_bytes() {
        return None;
    }
    if &msg[8..20] != txn {
        return None;
    }
    let len = u16::from_be_bytes([msg[2], msg[3]]) as usize;
    let body = msg.get(20..20 + len)?;
    let (mut i, mut mapped) = (0, None);
    while i + 4 <= body.len() {
        let typ = u16::from_be_bytes([body[i], body[i + 1]]);
        let alen = u16::from_be_bytes([body[i + 2], body[i + 3]]) as usize;
        let val = body.get(i + 4..i + 4 + alen)?;
        let xor = typ == 0x0020;
        if (xor || typ == 0x0001) && val.len() >= 8 {
            let mut port = u16::from_be_bytes([val[2], val[3]]);
            if xor {
                port ^= (MAGIC >> 16) as u16;
            }
            let ip = match (val[1], val.len()) {
                (0x01, 8) => {
                    let mut o: [u8; 4] = val[4..8].try_into().ok()?;
                    if xor {
                        o.iter_mut()
                            .zip(MAGIC.to_be_bytes())
                            .for_each(|(b, m)| *b ^= m);
                    }
                    IpAddr::from(o)
                }
                (0x02, 20) => {
                    let mut o: [u8; 16] = val[4..20].try_into().ok()?;
                    if xor {
                        let mut key = [0u8; 16];
                        key[..4].copy_from_slice(&MAGIC.to_be_bytes());
                        key[4..].copy_from_slice(txn);
                        o.iter_mut().zip(key).for_each(|(b, k)| *b ^= k);
                    }
                    IpAddr::from(o)
                }
                _ => return None,
            };
            let addr = SocketAddr::new(ip, port);
            if xor {
                return Some(addr);
            }
            mapped = Some(addr);
        }
        i += 4 + alen.div_ceil(4) * 4;
    }
    mapped
}

// ---------------------------------------------------------------------------
// coturn, started through stun/entrypoint.sh
// ---------------------------------------------------------------------------

/// How to start one coturn.
struct Setup {
    tag: &'static str,
    /// Config text (TURN_CONFIG for the entrypoint).
    config: String,
    /// Secret file contents: line 1 current, later lines still accepted.
    secrets: Vec<&'static str>,
    /// Extra environment for the entrypoint (TURN_RELAY_IP, ...).
    env: Vec<(&'static str, String)>,
    /// Generate a certificate and pass --cert/--pkey (the production config has TLS).
    tls: bool,
}

/// A running coturn; killed (and reaped) on drop, also when a test panics.
struct Coturn {
    child: Child,
    ports: Ports,
    log: PathBuf,
    dir: TempDir,
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- coturn log ({}) ----\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

impl Coturn {
    fn start(setup: Setup) -> Coturn {
        let mut last_err = String::new();
        // A port block can be taken between the probe and coturn's bind: retry.
        for _ in 0..3 {
            match Coturn::try_start(&setup) {
                Ok(c) => return c,
                Err(e) => last_err = e,
            }
        }
        panic!("coturn ({}) did not start: {last_err}", setup.tag);
    }

    fn try_start(setup: &Setup) -> Result<Coturn, String> {
        let dir = TempDir::new(setup.tag);
        let ports = reserve_ports();
        let conf = dir.join("turnserver.conf");
        fs::write(&conf, &setup.config).unwrap();
        let secret_file = dir.join("turn_secret");
        fs::write(&secret_file, setup.secrets.join("\n") + "\n").unwrap();
        let log = dir.join("coturn.log");
        let out = File::create(&log).unwrap();
        let mut cmd = Command::new("sh");
        cmd.arg(Path::new(MANIFEST).join("stun/entrypoint.sh"))
            .arg(format!("--listening-port={}", ports.listen))
            .arg(format!("--tls-listening-port={}", ports.tls))
            .arg(format!("--min-port={}", ports.relay_min))
            .arg(format!("--max-port={}", ports.relay_max))
            .arg(format!(
                "--pidfile={}",
                dir.join("turnserver.pid").display()
            ));
        if setup.tls {
            let (cert, key) =
                flightsim_p2p::certs::generate_dev(&["localhost".into(), "127.0.0.1".into()])
                    .unwrap();
            fs::write(dir.join("cert.pem"), cert).unwrap();
            fs::write(dir.join("key.pem"), key).unwrap();
            cmd.arg(format!("--cert={}", dir.join("cert.pem").display()))
                .arg(format!("--pkey={}", dir.join("key.pem").display()));
        }
        // Only what the test sets reaches the entrypoint.
        for var in [
            "TURN_SECRET",
            "TURN_SECRET_PREVIOUS",
            "FSP2P_TURN_SECRET",
            "FSP2P_TURN_SECRET_FILE",
            "TURN_REALM",
            "TURN_LISTENING_IP",
            "TURN_RELAY_IP",
            "TURN_EXTERNAL_IP",
            "TURN_ALLOWED_PEER_IPS",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("TURN_CONFIG", &conf)
            .env("TURN_SECRET_FILE", &secret_file)
            .env("TURN_RUNTIME_DIR", &dir.0)
            .envs(setup.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = cmd.spawn().map_err(|e| format!("spawning: {e}"))?;
        let mut c = Coturn {
            child,
            ports,
            log,
            dir,
        };
        // Ready when it answers a STUN binding request on its UDP listener.
        let probe = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.child.try_wait() {
                return Err(format!("exited with {status}:\n{}", c.log_text()));
            }
            if stun_binding(&probe, c.addr(), Duration::from_millis(200)).is_some() {
                return Ok(c);
            }
        }
        Err(format!("no STUN answer within 30 s:\n{}", c.log_text()))
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.ports.listen))
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait (bounded) for coturn to log a line containing `needle`.
    fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(l) = self.log_text().lines().find(|l| l.contains(needle)) {
                return l.to_string();
            }
            if Instant::now() > deadline {
                panic!("coturn never logged {needle:?}; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn dev_config() -> String {
    fs::read_to_string(Path::new(MANIFEST).join("stun/turnserver-dev.conf")).unwrap()
}

fn prod_config() -> String {
    fs::read_to_string(Path::new(MANIFEST).join("stun/turnserver.conf")).unwrap()
}

/// The `denied-peer-ip=` lines of the production config.
fn prod_denied_lines() -> Vec<String> {
    let lines: Vec<String> = prod_config()
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("denied-peer-ip="))
        .map(String::from)
        .collect();
    assert!(
        lines.len() >= 25,
        "production deny list looks truncated: {lines:?}"
    );
    lines
}

fn dev_coturn(tag: &'static str, secrets: Vec<&'static str>) -> Coturn {
    Coturn::start(Setup {
        tag,
        config: dev_config(),
        secrets,
        env: vec![],
        tls: false,
    })
}

// ---------------------------------------------------------------------------
// Echo peer: counts what arrives, echoes it back (like turnutils_peer, which
// cannot report what it received)
// ---------------------------------------------------------------------------

struct EchoPeer {
    addr: SocketAddr,
    received: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EchoPeer {
    fn start(ip: IpAddr) -> EchoPeer {
        let sock = UdpSocket::bind((ip, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let received = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (received.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    r.fetch_add(1, Ordering::Relaxed);
                    let _ = sock.send_to(&buf[..n], from);
                }
            }
        });
        EchoPeer {
            addr,
            received,
            stop,
            thread: Some(thread),
        }
    }

    fn received(&self) -> usize {
        self.received.load(Ordering::Relaxed)
    }

    /// Watch for `window`: nothing may arrive (a refused relay must not leak late).
    fn assert_nothing_arrives(&self, window: Duration) {
        let end = Instant::now() + window;
        while Instant::now() < end {
            assert_eq!(self.received(), 0, "a packet reached {}", self.addr);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for EchoPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Running the coturn tools with a timeout
// ---------------------------------------------------------------------------

struct Outcome {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Run a program to completion (killed after TOOL_TIMEOUT), output via files.
fn run_tool(dir: &TempDir, label: &str, program: &str, args: &[String]) -> Outcome {
    let out_path = dir.join(&format!("{label}.out"));
    let err_path = dir.join(&format!("{label}.err"));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {program}: {e}"));
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let o = Outcome {
        success: status.is_some_and(|s| s.success()),
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
    };
    assert!(
        status.is_some(),
        "{program} {args:?} timed out after {TOOL_TIMEOUT:?}:\n{}",
        o.text()
    );
    o
}

/// `turnutils_uclient`: allocate with (user, pass), bind a channel to `peer`
/// (requesting an IPv6 relay for an IPv6 peer), send `messages` packets of 120
/// bytes, 10 ms apart, and expect them echoed back.
fn uclient(
    coturn: &Coturn,
    label: &str,
    user: &str,
    pass: &str,
    peer: SocketAddr,
    messages: u32,
) -> Outcome {
    let mut args: Vec<String> = vec!["-v".into()];
    if peer.is_ipv6() {
        args.push("-x".into());
    }
    for a in ["-u", user, "-w", pass] {
        args.push(a.into());
    }
    args.extend([
        "-e".into(),
        peer.ip().to_string(),
        "-r".into(),
        peer.port().to_string(),
        "-p".into(),
        coturn.ports.listen.to_string(),
        "-n".into(),
        messages.to_string(),
        "-m".into(),
        "1".into(),
        "-c".into(),
        "-l".into(),
        "120".into(),
        "-z".into(),
        "10".into(),
        "127.0.0.1".into(),
    ]);
    run_tool(&coturn.dir, label, "turnutils_uclient", &args)
}

/// uclient's final totals line: "start_mclient: tot_send_msgs=N, tot_recv_msgs=M".
fn totals(out: &str) -> Option<(String, u64, u64)> {
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains("start_mclient: tot_send_msgs=") && !l.contains("msz="))?;
    let num = |key: &str| -> Option<u64> {
        let rest = &line[line.find(key)? + key.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    Some((
        line.trim().to_string(),
        num("tot_send_msgs=")?,
        num("tot_recv_msgs=")?,
    ))
}

/// Relay addresses coturn handed out ("Received relay addr: 127.0.0.1:PORT").
fn relay_addrs(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.split_once("Received relay addr: "))
        .map(|(_, a)| a.trim().to_string())
        .collect()
}

fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit_once(':')?.1.trim_end_matches(']').parse().ok()
}

/// The relay worked: every packet came back, the peer saw every packet, and the
/// relay port is in the configured range.
fn assert_relayed(coturn: &Coturn, o: &Outcome, peer: &EchoPeer, what: &str) {
    let text = o.text();
    let (line, sent, recv) =
        totals(&text).unwrap_or_else(|| panic!("{what}: no totals in uclient output:\n{text}"));
    let lost = text
        .lines()
        .find(|l| l.contains("Total lost packets"))
        .unwrap_or("")
        .trim()
        .to_string();
    let relays = relay_addrs(&text);
    eprintln!(
        "[{what}] uclient: {line} | {lost} | relay addrs {relays:?} | peer {} received {}",
        peer.addr,
        peer.received()
    );
    assert!(o.success, "{what}: uclient failed:\n{text}");
    assert_eq!(sent, PACKETS as u64, "{what}: sent count\n{text}");
    assert_eq!(recv, sent, "{what}: not every packet came back\n{text}");
    assert!(lost.contains("Total lost packets 0 "), "{what}: {lost}");
    assert!(
        peer.received() >= PACKETS as usize,
        "{what}: the peer itself received only {} packets",
        peer.received()
    );
    assert!(!relays.is_empty(), "{what}: no relay address:\n{text}");
    for r in &relays {
        let p = port_of(r).unwrap();
        assert!(
            (coturn.ports.relay_min..=coturn.ports.relay_max).contains(&p),
            "{what}: relay {r} outside {}-{}",
            coturn.ports.relay_min,
            coturn.ports.relay_max
        );
    }
}

/// coturn refused the allocation itself for (user, pass): no relay address.
fn assert_allocation_refused(
    coturn: &Coturn,
    peer: &EchoPeer,
    label: &str,
    user: &str,
    pass: &str,
) {
    let o = uclient(coturn, label, user, pass, peer.addr, PACKETS);
    let text = o.text();
    let line = text
        .lines()
        .find(|l| l.contains("Cannot complete Allocation"))
        .unwrap_or_else(|| panic!("{label}: allocation was not refused:\n{text}"))
        .trim()
        .to_string();
    assert!(!o.success, "{label}: uclient succeeded:\n{text}");
    assert!(
        relay_addrs(&text).is_empty(),
        "{label}: got a relay:\n{text}"
    );
    eprintln!("[{label}] user {user}: uclient exit failure, {line:?}");
}

/// The allocation succeeded but the permission/channel to the peer was refused
/// with 403, nothing came back, and (when given) coturn logged the deny-list
/// range that matched.
fn assert_peer_refused(coturn: &Coturn, o: &Outcome, peer_ip: &str, range: Option<&str>) {
    let text = o.text();
    let refusal = text
        .lines()
        .find(|l| l.contains("error 403"))
        .unwrap_or_else(|| panic!("peer {peer_ip}: no 403 in uclient output:\n{text}"))
        .trim()
        .to_string();
    assert!(!o.success, "peer {peer_ip}: uclient succeeded:\n{text}");
    assert!(
        !relay_addrs(&text).is_empty(),
        "peer {peer_ip}: the allocation itself failed (expected only the peer refused):\n{text}"
    );
    if let Some((line, _, recv)) = totals(&text) {
        assert_eq!(recv, 0, "peer {peer_ip}: {line}");
    }
    let logged =
        range.map(|r| coturn.wait_log(&format!("A peer IP {peer_ip} denied in the range: {r}")));
    eprintln!(
        "[refused {peer_ip}] uclient: {refusal} | coturn: {}",
        logged
            .as_deref()
            .map(str::trim)
            .unwrap_or("(built-in check, no deny-list line)")
    );
}

// ---------------------------------------------------------------------------
// 1. Credentials from a real Welcome relay through coturn
// ---------------------------------------------------------------------------

#[test]
fn welcome_turn_credentials_relay_packets_through_coturn() {
    require_coturn();
    // coturn and the server read the SAME secret file (line 1 = current secret).
    let coturn = dev_coturn("welcome", vec![SECRET_CURRENT]);
    let secret_file = coturn.dir.join("turn_secret");
    let turn_url = format!("turn:127.0.0.1:{}?transport=udp", coturn.ports.listen);
    let stun_url = format!("stun:127.0.0.1:{}", coturn.ports.listen);
    let certs = coturn.dir.join("server-certs");

    let server = common::ServeProcess::start(
        &certs,
        &[
            "--turn-secret-file",
            &secret_file.display().to_string(),
            "--turn-url",
            &turn_url,
            "--stun-url",
            &stun_url,
        ],
        Stdio::from(File::create(coturn.dir.join("server.err")).unwrap()),
    );
    let quic = server.quic.to_string();
    eprintln!(
        "[welcome] server listening on udp://{quic}, coturn on {}",
        coturn.addr()
    );

    let o = run_tool(
        &coturn.dir,
        "print-welcome",
        BIN,
        &[
            "peer".into(),
            "--server".into(),
            quic.clone(),
            "--cert-dir".into(),
            certs.display().to_string(),
            "--print-welcome".into(),
        ],
    );
    assert!(o.success, "peer --print-welcome failed:\n{}", o.text());
    let welcome: Welcome = serde_json::from_str(&o.stdout)
        .unwrap_or_else(|e| panic!("Welcome JSON did not parse ({e}):\n{}", o.stdout));
    drop(server);

    let turn = welcome
        .ice_servers
        .iter()
        .find(|s| s.urls.iter().any(|u| u.starts_with("turn:")))
        .unwrap_or_else(|| panic!("no TURN entry in {:?}", welcome.ice_servers));
    assert_eq!(turn.urls, vec![turn_url.clone()]);
    assert!(
        welcome
            .ice_servers
            .iter()
            .any(|s| s.urls == vec![stun_url.clone()] && s.username.is_none()),
        "no STUN entry in {:?}",
        welcome.ice_servers
    );
    let user = turn.username.clone().expect("TURN entry without username");
    let pass = turn
        .credential
        .clone()
        .expect("TURN entry without credential");
    eprintln!(
        "[welcome] peer_id {} ice_servers {:?}",
        welcome.peer_id, welcome.ice_servers
    );
    // "<expiry>:<peer id>", expiring about an hour from now (default TTL), signed
    // with line 1 of the shared secret file.
    let (expiry, who) = user.split_once(':').expect("username is not <expiry>:<id>");
    let expiry: u64 = expiry.parse().unwrap();
    assert_eq!(who, welcome.peer_id.to_string());
    let now = now_unix();
    assert!(
        expiry > now + 3000 && expiry <= now + 3700,
        "expiry {expiry} vs now {now}"
    );
    assert_eq!(
        turn_credential(SECRET_CURRENT, who, expiry),
        (user.clone(), pass.clone())
    );

    let peer = EchoPeer::start(Ipv4Addr::LOCALHOST.into());
    let o = uclient(&coturn, "welcome-relay", &user, &pass, peer.addr, PACKETS);
    assert_relayed(&coturn, &o, &peer, "welcome credentials");

    // The same Welcome credential, tampered with, is refused: one character of
    // the password changed, and the password kept but the username claiming
    // another peer id.
    let mut tampered = pass.clone().into_bytes();
    tampered[0] = if tampered[0] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let refused_peer = EchoPeer::start(Ipv4Addr::LOCALHOST.into());
    assert_allocation_refused(
        &coturn,
        &refused_peer,
        "welcome-tampered-password",
        &user,
        &tampered,
    );
    let other = format!("{}:{}", expiry, welcome.peer_id + 1);
    assert_allocation_refused(&coturn, &refused_peer, "welcome-other-peer", &other, &pass);
    refused_peer.assert_nothing_arrives(Duration::from_millis(200));
}

// ---------------------------------------------------------------------------
// 2. Expired / wrong-secret / edited credentials are refused; rotation overlap
// ---------------------------------------------------------------------------

#[test]
fn expired_and_wrong_secret_credentials_are_refused() {
    require_coturn();
    // Mid-rotation: coturn accepts the current and the previous secret.
    let coturn = dev_coturn("auth", vec![SECRET_CURRENT, SECRET_PREVIOUS]);
    let now = now_unix();

    // Positive controls, in parallel (uclient idles 1-6 s before sending).
    let peer_a = EchoPeer::start(Ipv4Addr::LOCALHOST.into());
    let peer_b = EchoPeer::start(Ipv4Addr::LOCALHOST.into());
    let (ua, pa) = turn_credential(SECRET_CURRENT, "current", now + 600);
    let (ub, pb) = turn_credential(SECRET_PREVIOUS, "previous", now + 600);
    let (oa, ob) = std::thread::scope(|s| {
        let a = s.spawn(|| uclient(&coturn, "current", &ua, &pa, peer_a.addr, PACKETS));
        let b = s.spawn(|| uclient(&coturn, "previous", &ub, &pb, peer_b.addr, PACKETS));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_relayed(&coturn, &oa, &peer_a, "current secret");
    assert_relayed(&coturn, &ob, &peer_b, "previous secret (rotation overlap)");

    let peer = EchoPeer::start(Ipv4Addr::LOCALHOST.into());
    let refused = |label: &str, user: &str, pass: &str| {
        assert_allocation_refused(&coturn, &peer, label, user, pass);
    };

    // Expired a minute ago, signed with the right secret.
    let (u, p) = turn_credential(SECRET_CURRENT, "expired", now - 60);
    refused("expired", &u, &p);
    let l = coturn.wait_log(&format!("Cannot find credentials of user <{u}>"));
    eprintln!("[expired] coturn: {}", l.trim());

    // Valid expiry, signed with a secret coturn does not know.
    let (u, p) = turn_credential("not-the-secret-0123456789abcdef", "wrong", now + 600);
    refused("wrong-secret", &u, &p);

    // A valid credential whose expiry the client pushed a day later.
    let (u, p) = turn_credential(SECRET_CURRENT, "edited", now + 600);
    let edited = u.replacen(&(now + 600).to_string(), &(now + 86_400).to_string(), 1);
    refused("edited-expiry", &edited, &p);

    peer.assert_nothing_arrives(Duration::from_millis(200));
}

// ---------------------------------------------------------------------------
// 3. The production deny list: no relaying to loopback / private addresses
// ---------------------------------------------------------------------------

/// The production config VERBATIM (deny list, quotas, TLS, no
/// allow-loopback-peers), moved to loopback by the entrypoint's environment.
fn prod_coturn(tag: &'static str) -> Coturn {
    let relay = if ipv6_loopback_available() {
        "127.0.0.1,::1"
    } else {
        "127.0.0.1"
    };
    Coturn::start(Setup {
        tag,
        config: prod_config(),
        secrets: vec![SECRET_CURRENT],
        env: vec![
            ("TURN_LISTENING_IP", "127.0.0.1".into()),
            ("TURN_RELAY_IP", relay.into()),
        ],
        tls: true,
    })
}

#[test]
fn production_config_loads_cleanly() {
    require_coturn();
    let coturn = prod_coturn("prod-load");
    // coturn also opens Debian's default SQLite user DB (unused here); as a
    // non-root user without access to /var/lib/turn that is a harmless ERROR.
    let log: String = coturn
        .log_text()
        .lines()
        .filter(|l| !l.contains("SQLite"))
        .map(|l| format!("{l}\n"))
        .collect();
    for bad in [
        "Bad configuration format",
        "Wrong address format",
        "CONFIG ERROR",
        "Cannot find config file",
        "WARNING",
        "ERROR",
    ] {
        assert!(
            !log.contains(bad),
            "production config: coturn logged {bad:?}:\n{log}"
        );
    }
    // Every deny entry was parsed (coturn echoes each as "Black listing: RANGE").
    let denied = prod_denied_lines();
    for line in &denied {
        let range = line.trim_start_matches("denied-peer-ip=");
        coturn.wait_log(&format!("Black listing: {range}"));
    }
    let listed = log
        .lines()
        .filter(|l| l.contains("Black listing: "))
        .count();
    assert_eq!(listed, denied.len(), "deny entries loaded vs in the file");
    for needle in [
        "48000 bytes per second allowed per session",
        "1920000 bytes per second allowed, combined server capacity",
        "--no-tcp-relay: TCP relay endpoints are not allowed",
        "RFC5780 disabled",
    ] {
        let l = coturn.wait_log(needle);
        eprintln!("[prod config] coturn: {}", l.trim());
    }
    assert!(
        !log.contains("allow_loopback_peers"),
        "loopback peers allowed in production"
    );
    eprintln!(
        "[prod config] {} deny entries loaded, no warnings or errors",
        denied.len()
    );

    // TLS listener (turns:) works: a TURN allocation over TLS/TCP succeeds
    // (the peer is then refused, which is fine here).
    let (u, p) = turn_credential(SECRET_CURRENT, "tls", now_unix() + 600);
    let tls_port = coturn.ports.tls.to_string();
    let args = [
        "-v",
        "-t",
        "-S",
        "-u",
        &u,
        "-w",
        &p,
        "-e",
        "127.0.0.1",
        "-r",
        "9",
        "-p",
        &tls_port,
        "-n",
        "0",
        "-m",
        "1",
        "-c",
        "127.0.0.1",
    ]
    .map(String::from);
    let o = run_tool(&coturn.dir, "tls", "turnutils_uclient", &args);
    let text = o.text();
    let tls = text
        .lines()
        .find(|l| l.contains("client session connected with cipher"))
        .unwrap_or_else(|| panic!("no TLS session to the TLS listener:\n{text}"));
    assert!(
        !relay_addrs(&text).is_empty(),
        "no allocation over TLS:\n{text}"
    );
    eprintln!(
        "[prod config] TLS: {} ; relay {:?}",
        tls.trim(),
        relay_addrs(&text)
    );

    // user-quota=8: one username gets 8 concurrent allocations, then 486.
    // (A refused uclient leaves its allocations in place, so they add up.)
    let (u, p) = turn_credential(SECRET_CURRENT, "quota", now_unix() + 600);
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 9));
    let mut granted = 0;
    let mut runs = 0;
    let quota_line = loop {
        runs += 1;
        assert!(runs <= 10, "no 486 after {granted} allocations");
        let o = uclient(&coturn, &format!("quota-{runs}"), &u, &p, peer, 0);
        let text = o.text();
        granted += relay_addrs(&text).len();
        if let Some(l) = text.lines().find(|l| l.contains("error 486")) {
            break l.trim().to_string();
        }
    };
    assert_eq!(granted, 8, "allocations granted to one username");
    eprintln!(
        "[prod config] user-quota: {granted} allocations granted, then uclient: {quota_line}"
    );
}

#[test]
fn production_deny_list_refuses_loopback_and_private_ipv4_peers() {
    require_coturn();
    let coturn = prod_coturn("prod-deny");
    // A refused uclient exits without releasing its allocations, and the
    // production user-quota (8) counts them: one username per run.
    let cred = |run: &str| turn_credential(SECRET_CURRENT, run, now_unix() + 600);
    let (u, p) = cred("ssrf-lo");

    // Loopback with real packets: refused, and nothing reaches the echo peer.
    let lo = EchoPeer::start(Ipv4Addr::LOCALHOST.into());
    let o = uclient(&coturn, "lo", &u, &p, lo.addr, PACKETS);
    assert_peer_refused(&coturn, &o, "127.0.0.1", None);
    lo.assert_nothing_arrives(Duration::from_millis(300));

    // Non-loopback targets: permission requests only (-n 0), never packets.
    let v4: &[(&str, Option<&str>)] = &[
        ("0.0.0.0", None),
        // 0.0.0.0/8 is also refused by coturn's own zero-address check (it
        // runs before the deny list), so no deny-list line for these two.
        ("0.1.2.3", None),
        ("10.0.0.1", Some("10.0.0.0-10.255.255.255")),
        ("100.64.0.1", Some("100.64.0.0-100.127.255.255")),
        ("169.254.169.254", Some("169.254.0.0-169.254.255.255")),
        ("172.16.0.1", Some("172.16.0.0-172.31.255.255")),
        ("172.31.255.254", Some("172.16.0.0-172.31.255.255")),
        ("192.0.0.170", Some("192.0.0.0-192.0.0.255")),
        ("192.0.2.1", Some("192.0.2.0-192.0.2.255")),
        ("192.168.1.1", Some("192.168.0.0-192.168.255.255")),
        ("198.18.0.1", Some("198.18.0.0-198.19.255.255")),
        ("198.51.100.1", Some("198.51.100.0-198.51.100.255")),
        ("203.0.113.1", Some("203.0.113.0-203.0.113.255")),
        ("224.0.0.1", None),
        ("255.255.255.255", None),
    ];
    for (ip, range) in v4 {
        let peer = SocketAddr::new(ip.parse().unwrap(), 9);
        let (u, p) = cred(&format!("ssrf-{ip}"));
        let o = uclient(&coturn, &format!("peer-{ip}"), &u, &p, peer, 0);
        assert_peer_refused(&coturn, &o, ip, *range);
    }
}

/// The same for IPv6 peers, through an IPv6 relay (a separate coturn: each
/// refused uclient run leaves two allocations behind, and the production
/// total-quota of 40 is not raised for the tests).
#[test]
fn production_deny_list_refuses_ipv6_and_ipv4_mapped_peers() {
    require_coturn();
    require_ipv6_loopback();
    let coturn = prod_coturn("prod-deny6");
    let cred = |run: &str| turn_credential(SECRET_CURRENT, run, now_unix() + 600);
    let v6: &[(&str, Option<&str>)] = &[
        ("::1", None),
        (
            "::ffff:127.0.0.1",
            Some("::ffff:0.0.0.0-::ffff:255.255.255.255"),
        ),
        (
            "::ffff:10.0.0.1",
            Some("::ffff:0.0.0.0-::ffff:255.255.255.255"),
        ),
        (
            "::ffff:169.254.169.254",
            Some("::ffff:0.0.0.0-::ffff:255.255.255.255"),
        ),
        ("64:ff9b::a00:1", Some("64:ff9b::-64:ff9b::ffff:ffff")),
        (
            "2002:a00:1::1",
            Some("2002::-2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
        ),
        (
            "2001:db8::1",
            Some("2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"),
        ),
        (
            "fd00::1",
            Some("fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
        ),
        (
            "fe80::1",
            Some("fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
        ),
    ];
    for (ip, range) in v6 {
        let peer = SocketAddr::new(ip.parse().unwrap(), 9);
        let (u, p) = cred(&format!("ssrf-{ip}"));
        let label = format!("peer6-{}", ip.replace(':', "_"));
        let o = uclient(&coturn, &label, &u, &p, peer, 0);
        assert_peer_refused(&coturn, &o, ip, *range);
    }
}

/// With loopback peers ALLOWED (as in the dev config) the production deny
/// list is the only thing between a client and 127.0.0.1: packets that slip
/// through would really arrive at the echo peers. `allowed-peer-ip` (set via
/// TURN_ALLOWED_PEER_IPS, as for the server's own external address) punches a
/// hole for 127.0.0.2 only, which doubles as the positive control.
#[test]
fn deny_list_alone_blocks_loopback_and_allowed_peer_ip_overrides_it() {
    require_coturn();
    require_ipv6_loopback();
    let mut config = dev_config();
    assert!(config.lines().any(|l| l.trim() == "allow-loopback-peers"));
    config.push_str("\n# production deny list (added by tests/coturn.rs)\n");
    for l in prod_denied_lines() {
        config.push_str(&l);
        config.push('\n');
    }
    let env = vec![
        ("TURN_ALLOWED_PEER_IPS", "127.0.0.2".to_string()),
        ("TURN_RELAY_IP", "::1".into()),
    ];
    let coturn = Coturn::start(Setup {
        tag: "loopdeny",
        config,
        secrets: vec![SECRET_CURRENT],
        env,
        tls: false,
    });
    coturn.wait_log("allow_loopback_peers opens a possible security vulnerability");
    coturn.wait_log("White listing: 127.0.0.2");
    let (u, p) = turn_credential(SECRET_CURRENT, "loop", now_unix() + 600);

    // Positive control: allowed-peer-ip wins over the denied 127/8 range.
    let allowed = EchoPeer::start(Ipv4Addr::new(127, 0, 0, 2).into());
    let o = uclient(&coturn, "allowed", &u, &p, allowed.addr, PACKETS);
    assert_relayed(&coturn, &o, &allowed, "127.0.0.2 via allowed-peer-ip");

    // 127.0.0.1: refused by the 127/8 entry; nothing arrives.
    let lo = EchoPeer::start(Ipv4Addr::LOCALHOST.into());
    let o = uclient(&coturn, "lo", &u, &p, lo.addr, PACKETS);
    assert_peer_refused(&coturn, &o, "127.0.0.1", Some("127.0.0.0-127.255.255.255"));

    {
        // The IPv4-mapped form of the same echo peer, through an IPv6 relay.
        let mapped = SocketAddr::new("::ffff:127.0.0.1".parse().unwrap(), lo.addr.port());
        let o = uclient(&coturn, "mapped", &u, &p, mapped, PACKETS);
        assert_peer_refused(
            &coturn,
            &o,
            "::ffff:127.0.0.1",
            Some("::ffff:0.0.0.0-::ffff:255.255.255.255"),
        );
        // ::1 (built-in check is off here, so this is the ::1 entry).
        let lo6 = EchoPeer::start("::1".parse().unwrap());
        let o = uclient(&coturn, "lo6", &u, &p, lo6.addr, PACKETS);
        assert_peer_refused(&coturn, &o, "::1", Some("::1"));
        lo6.assert_nothing_arrives(Duration::from_millis(200));
    }
    lo.assert_nothing_arrives(Duration::from_millis(300));
}

// ---------------------------------------------------------------------------
// 4. STUN binding returns the reflexive address
// ---------------------------------------------------------------------------

fn check_stun(coturn: &Coturn, what: &str) {
    // turnutils_stunclient from an OS-chosen port.
    let o = run_tool(
        &coturn.dir,
        "stunclient",
        "turnutils_stunclient",
        &[
            "-p".into(),
            coturn.ports.listen.to_string(),
            "127.0.0.1".into(),
        ],
    );
    let text = o.text();
    assert!(o.success, "{what}: turnutils_stunclient failed:\n{text}");
    let line = text
        .lines()
        .find(|l| l.contains("UDP reflexive addr: "))
        .unwrap_or_else(|| panic!("{what}: no reflexive address:\n{text}"));
    let addr: SocketAddr = line
        .split_once("UDP reflexive addr: ")
        .unwrap()
        .1
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        addr.ip(),
        IpAddr::from(Ipv4Addr::LOCALHOST),
        "{what}: {line}"
    );
    assert_ne!(addr.port(), 0);
    assert_ne!(addr.port(), coturn.ports.listen);
    // Exact check from a socket whose address we know.
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let mine = sock.local_addr().unwrap();
    let got = stun_binding(&sock, coturn.addr(), Duration::from_secs(10))
        .unwrap_or_else(|| panic!("{what}: no binding response"));
    assert_eq!(got, mine, "{what}: XOR-MAPPED-ADDRESS");
    eprintln!(
        "[{what}] turnutils_stunclient: {} | own request from {mine}: mapped {got}",
        line.trim()
    );
}

#[test]
fn stun_binding_returns_the_reflexive_address() {
    require_coturn();
    let dev = dev_coturn("stun-dev", vec![SECRET_CURRENT]);
    check_stun(&dev, "dev config");
    let prod = prod_coturn("stun-prod");
    check_stun(&prod, "production config");
}
