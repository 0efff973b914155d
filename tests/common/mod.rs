//! Test harness: a real server on loopback ports chosen by the OS, and real
//! clients (raw QUIC and WebTransport) connecting to it.
#![allow(dead_code)]

pub mod access;
pub mod redis;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use flightsim_p2p::client::{self, Client, ClientConfig, ClientTransport, Trust};
use flightsim_p2p::limits::Limits;
use flightsim_p2p::protocol::{ErrorCode, RelayMode};
use flightsim_p2p::server::{QuicTuning, Server, ServerConfig};
use flightsim_p2p::turn::IceConfig;

pub struct TestServer {
    pub server: Option<Server>,
    pub quic: SocketAddr,
    pub http: SocketAddr,
    pub hash: [u8; 32],
    dir: PathBuf,
    owns_dir: bool,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "fsp2p-test-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub async fn start(limits: Limits, ice: IceConfig) -> TestServer {
    start_with(limits, ice, QuicTuning::default()).await
}

/// A second server with the same certificate as `srv` (as after a restart).
pub async fn start_same_cert(srv: &TestServer) -> TestServer {
    start_in(
        srv.dir.clone(),
        Limits::default(),
        IceConfig::default(),
        QuicTuning::default(),
        false,
    )
    .await
}

pub async fn start_with(limits: Limits, ice: IceConfig, quic: QuicTuning) -> TestServer {
    start_in(temp_dir("srv"), limits, ice, quic, true).await
}

/// Record every panic outside the test code itself (a server task, a
/// library) in `test-artifacts/in-process-panics.log`: such a panic is caught
/// by tokio and a test may pass regardless, so CI looks for the file.
fn record_server_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_test_code = info
                .location()
                .is_some_and(|l| l.file().starts_with("tests/"));
            if !in_test_code {
                let log = artifact_log("in-process-panics");
                if let Ok(mut f) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                {
                    let _ = writeln!(
                        f,
                        "thread '{}' panicked at {info}",
                        std::thread::current().name().unwrap_or("?")
                    );
                }
            }
            previous(info);
        }));
    });
}

async fn start_in(
    dir: PathBuf,
    limits: Limits,
    ice: IceConfig,
    quic: QuicTuning,
    owns_dir: bool,
) -> TestServer {
    record_server_panics();
    let identity =
        flightsim_p2p::certs::dev_identity(&dir, &["localhost".into(), "127.0.0.1".into()])
            .unwrap();
    let hash = identity.sha256;
    let server = Server::start(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        identity,
        limits,
        ice,
        quic,
        web_dir: None,
        proxy: None,
        dev_cert: Some(flightsim_p2p::server::DevCert {
            dir: dir.clone(),
            hosts: vec!["localhost".into(), "127.0.0.1".into()],
        }),
        cluster: None,
        access: None,
    })
    .await
    .unwrap();
    TestServer {
        quic: server.quic_addr(),
        http: server.http_addr(),
        server: Some(server),
        hash,
        dir,
        owns_dir,
    }
}

impl TestServer {
    pub fn config(&self, transport: ClientTransport, mode: RelayMode) -> ClientConfig {
        let mut c = ClientConfig::new(self.quic, Trust::CertHash(self.hash));
        c.transport = transport;
        c.relay_mode = mode;
        // No peer echoes and no reports (PROTOCOL.md §14): tests count relay
        // frames, control messages and metrics exactly. tests/quality.rs
        // turns both on.
        c.quality_echo = false;
        c.telemetry = false;
        c
    }

    pub async fn quic(&self, mode: RelayMode) -> Client {
        Client::connect(&self.config(ClientTransport::Quic, mode), None)
            .await
            .unwrap()
    }

    pub async fn webtransport(&self) -> Client {
        Client::connect(
            &self.config(ClientTransport::Webtransport, RelayMode::Datagram),
            None,
        )
        .await
        .unwrap()
    }

    /// `GET path` on the HTTP port; returns (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.http, path)
    }

    /// Value of one metric line (exact name with labels), 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.get("/metrics");
        body.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }
}

/// A minimal HTTP/1.1 GET for tests (the server side uses axum).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, body.to_string())
}

/// Poll `f` until it is true or `limit` passes.
pub async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

pub const WAIT: Duration = Duration::from_secs(10);

/// Relay `payload` from `from` to peer `to` (a client of the same session)
/// until it arrives, resending every 200 ms for up to WAIT: a single datagram
/// may be lost on a busy machine. Other frames are skipped. Returns the sender
/// id the server wrote into the header, or None if it never arrived.
pub async fn relay_until_delivered(
    from: &Client,
    to: &mut Client,
    payload: &[u8],
) -> Option<flightsim_p2p::protocol::PeerId> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        from.send_relay(to.peer_id(), payload).await.ok()?;
        let round = tokio::time::Instant::now() + Duration::from_millis(200);
        while let Some(left) = round.checked_duration_since(tokio::time::Instant::now()) {
            match to.next_relay(left).await {
                Some((sender, p, _)) if &p[..] == payload => return Some(sender),
                Some(_) => continue,
                None => break,
            }
        }
    }
    None
}

/// Wait (up to WAIT) for a control message `pick` accepts; panics on an error or timeout.
pub async fn expect_msg<T>(
    c: &mut Client,
    pick: impl Fn(&flightsim_p2p::protocol::ServerMsg) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, c.wait_for(pick))
        .await
        .expect("timed out")
        .expect("failed")
}

/// The real `flightsim-p2p serve` binary as a child process on OS-chosen
/// loopback ports, killed on drop. Addresses and the dev certificate hash come
/// from what it prints at start-up.
pub struct ServeProcess {
    pub child: std::process::Child,
    pub quic: SocketAddr,
    pub http: SocketAddr,
    /// Hex SHA-256 of the dev certificate.
    pub hash: String,
    /// Where its stderr goes, for [`ServeProcess::logged`].
    pub log: Option<PathBuf>,
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A panic in the server is a failure even when the test passed.
        if let Some(log) = &self.log {
            if !std::thread::panicking() {
                assert_no_panic(log);
            }
        }
    }
}

/// Fails if a server log shows a panic (`RUST_BACKTRACE=1` makes it long).
pub fn assert_no_panic(log: &std::path::Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    if let Some(at) = text.find("panicked at") {
        let from = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let end = (at + 2000).min(text.len());
        panic!(
            "the server panicked (log {}):\n{}",
            log.display(),
            text.get(from..end).unwrap_or(&text[from..])
        );
    }
}

/// `test-artifacts/NAME.log` at the top of the repository (git-ignored; CI
/// looks through it for panics too).
pub fn artifact_log(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.log"))
}

impl ServeProcess {
    /// The server with `extra` flags, its stderr (at `RUST_LOG=info`) in
    /// `test-artifacts/TAG.log`; dropping it fails the test if that log
    /// shows a panic.
    pub fn logged(tag: &str, cert_dir: &std::path::Path, extra: &[&str]) -> Self {
        let log = artifact_log(tag);
        let file = std::fs::File::create(&log).unwrap();
        let mut p = Self::start_env(
            cert_dir,
            extra,
            file.into(),
            "info",
            ("127.0.0.1:0", "127.0.0.1:0"),
        );
        p.log = Some(log);
        p
    }

    /// Like [`ServeProcess::logged`], listening on these loopback ports
    /// (a node restarted on the same addresses, as in a rolling restart).
    pub fn logged_at(
        tag: &str,
        cert_dir: &std::path::Path,
        quic_port: u16,
        http_port: u16,
        extra: &[&str],
    ) -> Self {
        let log = artifact_log(tag);
        let file = std::fs::File::create(&log).unwrap();
        let (quic, http) = (
            format!("127.0.0.1:{quic_port}"),
            format!("127.0.0.1:{http_port}"),
        );
        let mut p = Self::start_env(cert_dir, extra, file.into(), "info", (&quic, &http));
        p.log = Some(log);
        p
    }

    pub fn start(cert_dir: &std::path::Path, extra: &[&str], stderr: std::process::Stdio) -> Self {
        Self::start_env(
            cert_dir,
            extra,
            stderr,
            "warn",
            ("127.0.0.1:0", "127.0.0.1:0"),
        )
    }

    fn start_env(
        cert_dir: &std::path::Path,
        extra: &[&str],
        stderr: std::process::Stdio,
        log_level: &str,
        (listen, http_listen): (&str, &str),
    ) -> Self {
        use std::process::{Command, Stdio};
        // FSP2P_TEST_SERVER_BIN runs the same tests against another build
        // (e.g. an older release, to measure a before/after figure).
        let bin = std::env::var("FSP2P_TEST_SERVER_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_flightsim-p2p").to_string());
        let mut child = Command::new(bin)
            .args(["serve", "--listen", listen, "--http-listen", http_listen])
            .arg("--cert-dir")
            .arg(cert_dir)
            .args(extra)
            // Only what the test passes: nothing from the caller's environment.
            .env_remove("FSP2P_TURN_SECRET")
            .env_remove("FSP2P_TURN_SECRET_FILE")
            .env_remove("FSP2P_TURN_URLS")
            .env_remove("FSP2P_STUN_URLS")
            .env_remove("PORT")
            .env("RUST_LOG", log_level)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawning the server");
        let stdout = child.stdout.take().expect("server stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut hash = String::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(h) = line.strip_prefix("dev certificate sha-256: ") {
                    hash = h.trim().to_string();
                }
                if let Some(rest) = line.strip_prefix("listening: quic+webtransport udp://") {
                    let _ = tx.send((rest.to_string(), hash.clone()));
                }
            }
        });
        let Ok((rest, hash)) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            let status = child.wait();
            panic!("server did not print its addresses (exit: {status:?})");
        };
        let (quic, http) = rest.split_once("  http://").expect("listening line");
        ServeProcess {
            child,
            quic: quic.trim().parse().expect("quic address"),
            http: http.trim().parse().expect("http address"),
            hash,
            log: None,
        }
    }
}

impl ServeProcess {
    /// Value of one metric line (exact name with labels), 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        let (_, body) = http_get(self.http, "/metrics");
        body.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }

    /// Resident memory of the server process, in bytes (Linux).
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// A client config for this server (raw QUIC, pinned dev certificate).
    pub fn config(&self, mode: RelayMode) -> ClientConfig {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&self.hash, &mut hash).expect("hex hash");
        let mut c = ClientConfig::new(self.quic, Trust::CertHash(hash));
        c.relay_mode = mode;
        c.ws_url = Some(format!("ws://{}/ws", self.http));
        // No peer echoes and no reports: tests count frames and metrics exactly.
        c.quality_echo = false;
        c.telemetry = false;
        c
    }
}

/// Fail unless `r` is the server's refusal with `code`.
pub fn expect_error<T: std::fmt::Debug>(
    r: Result<T, client::Error>,
    code: ErrorCode,
) -> Result<(), String> {
    match r {
        Ok(v) => Err(format!("expected error {code}, got {v:?}")),
        Err(e) if e.server_code() == Some(code) => Ok(()),
        Err(e) => Err(format!("expected error {code}, got {e}")),
    }
}

/// Read `c`'s events (up to `limit`) until `pick` accepts one; `None` on
/// timeout or once the client is over. Events passed over are dropped.
pub async fn wait_event<T>(
    c: &mut Client,
    limit: Duration,
    mut pick: impl FnMut(&client::Event) -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = deadline.checked_duration_since(tokio::time::Instant::now())?;
        let e = c.next_event_within(left).await?;
        if let Some(t) = pick(&e) {
            return Some(t);
        }
    }
}

/// A UDP relay in front of `target` that a test can stop (its sockets
/// closed, as a dead NAT or proxy would) and restart on the same port.
pub struct UdpProxy {
    pub addr: SocketAddr,
    target: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl UdpProxy {
    pub async fn start(target: SocketAddr) -> UdpProxy {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let task = Some(tokio::spawn(udp_proxy(socket, target)));
        UdpProxy { addr, target, task }
    }

    /// Close the proxy's sockets; nothing passes until [`UdpProxy::restart`].
    pub async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Listen on the same port again, relaying to `target` from now on.
    pub async fn retarget(&mut self, target: SocketAddr) {
        self.target = target;
        self.restart().await;
    }

    /// Listen on the same port again (new upstream sockets: the server sees
    /// new client addresses).
    pub async fn restart(&mut self) {
        self.stop().await;
        let socket = loop {
            match tokio::net::UdpSocket::bind(self.addr).await {
                Ok(s) => break s,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        self.task = Some(tokio::spawn(udp_proxy(socket, self.target)));
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

async fn udp_proxy(socket: tokio::net::UdpSocket, target: SocketAddr) {
    use std::collections::HashMap;
    use std::sync::Arc;
    let socket = Arc::new(socket);
    // Dropped with this task: the upstream sockets and their readers go too.
    let mut readers = tokio::task::JoinSet::new();
    let mut upstream: HashMap<SocketAddr, Arc<tokio::net::UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let up = match upstream.get(&from) {
            Some(up) => up.clone(),
            None => {
                let up = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
                let (back, down) = (up.clone(), socket.clone());
                readers.spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = back.recv(&mut buf).await {
                        let _ = down.send_to(&buf[..n], from).await;
                    }
                });
                up.connect(target).await.unwrap();
                upstream.insert(from, up.clone());
                up
            }
        };
        let _ = up.send(&buf[..n]).await;
    }
}

/// A TCP relay in front of `target` that a test can kill (every connection
/// through it cut at once) and restart on the same port.
pub struct TcpProxy {
    pub addr: SocketAddr,
    target: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = tcp_listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let task = Some(tokio::spawn(tcp_proxy(listener, target)));
        TcpProxy { addr, target, task }
    }

    /// Cut every connection and stop listening (connections are refused).
    pub async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Listen on the same port again, relaying to `target` from now on.
    pub async fn retarget(&mut self, target: SocketAddr) {
        self.target = target;
        self.restart().await;
    }

    /// Listen on the same port again.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = loop {
            match tcp_listen(self.addr) {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        self.task = Some(tokio::spawn(tcp_proxy(listener, self.target)));
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn tcp_listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.set_reuseaddr(true)?;
    s.bind(addr)?;
    s.listen(64)
}

async fn tcp_proxy(listener: tokio::net::TcpListener, target: SocketAddr) {
    // Dropped with this task: every connection through the proxy is cut.
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((mut down, _)) = listener.accept().await else {
            continue;
        };
        conns.spawn(async move {
            if let Ok(mut up) = tokio::net::TcpStream::connect(target).await {
                let _ = up.set_nodelay(true);
                let _ = down.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
            }
        });
    }
}

/// Flags of a server under benchmark load: no per-connection, per-address
/// or whole-server limit in the way (every load client is on 127.0.0.1).
pub const UNLIMITED: [&str; 16] = [
    "--relay-datagrams-per-sec",
    "0",
    "--relay-bytes-per-sec",
    "0",
    "--relay-out-bytes-per-ip",
    "0",
    "--signals-per-sec",
    "0",
    "--max-connections",
    "30000",
    "--max-connections-per-ip",
    "30000",
    "--max-sessions",
    "30000",
    "--max-sessions-per-ip",
    "30000",
];
