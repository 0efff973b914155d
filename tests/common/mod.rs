//! Test harness: a real server on loopback ports chosen by the OS, and real
//! clients (raw QUIC and WebTransport) connecting to it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use flightsim_p2p::client::{Client, ClientConfig, ClientTransport, Trust};
use flightsim_p2p::limits::Limits;
use flightsim_p2p::protocol::RelayMode;
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

async fn start_in(
    dir: PathBuf,
    limits: Limits,
    ice: IceConfig,
    quic: QuicTuning,
    owns_dir: bool,
) -> TestServer {
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
        trust_proxy: false,
        dev_cert: Some(flightsim_p2p::server::DevCert {
            dir: dir.clone(),
            hosts: vec!["localhost".into(), "127.0.0.1".into()],
        }),
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
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServeProcess {
    pub fn start(cert_dir: &std::path::Path, extra: &[&str], stderr: std::process::Stdio) -> Self {
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_flightsim-p2p"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .arg("--cert-dir")
            .arg(cert_dir)
            .args(extra)
            // Only what the test passes: nothing from the caller's environment.
            .env_remove("FSP2P_TURN_SECRET")
            .env_remove("FSP2P_TURN_SECRET_FILE")
            .env_remove("FSP2P_TURN_URLS")
            .env_remove("FSP2P_STUN_URLS")
            .env_remove("PORT")
            .env("RUST_LOG", "warn")
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
        }
    }
}
