//! A real `redis-server` (Debian package `redis-server`, installed by
//! `scripts/deps.sh`) as a child process for the cluster tests: on a free
//! loopback port, no persistence, its files in a temp dir. Killed when
//! dropped (also on panic); `stop()` and `restart()` on the same port
//! simulate an outage.
//!
//! A missing `redis-server` fails the test with a message saying what to
//! install: the tests never skip, CI installs it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a starting redis-server may take to answer PING.
const START_LIMIT: Duration = Duration::from_secs(10);

pub struct RedisProcess {
    child: Option<Child>,
    port: u16,
    /// The TLS port, when started with [`RedisProcess::start_tls`].
    tls_port: Option<u16>,
    dir: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port for redis-server")
}

impl RedisProcess {
    /// Starts a redis-server on a free loopback port and waits until it answers PING.
    pub fn start() -> Self {
        let mut r = RedisProcess {
            child: None,
            port: free_port(),
            tls_port: None,
            dir: super::temp_dir("redis"),
        };
        r.spawn();
        r
    }

    /// Like `start`, plus a TLS port whose certificate (for `127.0.0.1`
    /// and `localhost`) is signed by a fresh test CA ([`Self::ca_file`]).
    pub fn start_tls() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let dir = super::temp_dir("redis-tls");
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.join("server.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
        let mut r = RedisProcess {
            child: None,
            port: free_port(),
            tls_port: Some(free_port()),
            dir,
        };
        r.spawn();
        r
    }

    /// `rediss://127.0.0.1:TLS_PORT` (only after `start_tls`).
    pub fn tls_url(&self) -> String {
        let port = self.tls_port.expect("started without TLS");
        format!("rediss://127.0.0.1:{port}")
    }

    /// The PEM file of the CA that signed the TLS port's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL, as in a crash) and waits for it to exit.
    /// Its data is gone: it keeps none on disk.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing
    /// answers, as with a hung or black-holed Redis. `thaw` resumes it.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Resumes a frozen server (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self
            .child
            .as_ref()
            .expect("redis-server is not running")
            .id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid} failed");
    }

    /// Starts the server again on the same port (stopping it first if it runs).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        let log = self.dir.join("redis.log");
        let mut cmd = Command::new("redis-server");
        if let Some(tls_port) = self.tls_port {
            cmd.args(["--tls-port", &tls_port.to_string()])
                .arg("--tls-cert-file")
                .arg(self.dir.join("server.pem"))
                .arg("--tls-key-file")
                .arg(self.dir.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(self.dir.join("ca.pem"))
                .args(["--tls-auth-clients", "no"]);
        }
        let child = cmd
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .args(["--loglevel", "warning"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed (not on PATH): the cluster tests need a real \
                 Redis. Install the Debian package `redis-server` (scripts/deps.sh does)."
            ),
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if self.answers_ping() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!(
                    "redis-server on port {} exited ({status}) before answering PING:\n{log}",
                    self.port
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "redis-server on port {} did not answer PING within {START_LIMIT:?}",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        // SIGKILL ends a frozen (stopped) server too.
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
