//! Relay load: throughput until loss, one-way latency, fan-out, CPU per frame,
//! for our relay, coturn (TURN channels) and a bare UDP forwarder (no crypto,
//! the physical ceiling), all driven by the same pacing and counting code.
//!
//! Pattern: `sessions` sessions of `peers` peers; every peer sends one flight
//! frame per tick to every other peer of its session. Our relay and the bare
//! forwarder take one upload per frame and fan out; TURN needs one upload per
//! destination. Payloads start with the sender's send time (ns since the
//! harness epoch, one process, one clock), so receivers measure one-way delay.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use flightsim_p2p::client::{Client, ClientConfig, RelaySender, Trust};
use flightsim_p2p::protocol::{RelayMode, ALL_PEERS};
use tokio::net::UdpSocket;

use crate::turn::TurnClient;

pub static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

pub fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    Ours,
    Coturn,
    Bare,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Ours => "fsp2p relay",
            System::Coturn => "coturn (TURN channels)",
            System::Bare => "bare UDP forwarder",
        }
    }
}

/// What a load step measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Step {
    pub offered_per_sec: f64,
    pub delivered_per_sec: f64,
    pub loss: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// Client uplink bytes per flight frame (one frame to every other peer).
    pub uplink_bytes_per_frame: f64,
    /// Relay process CPU time per 1000 delivered frames, ms.
    pub cpu_ms_per_1000: f64,
    /// UDP datagrams sent on this host (all processes) per delivered frame:
    /// QUIC packs several frames into one packet under load, plain UDP cannot.
    pub udp_datagrams_per_frame: f64,
    /// Frames delivered in the measured window, and the window's length (s).
    pub delivered: f64,
    pub secs: f64,
}

/// Counters shared by the receivers of one run.
#[derive(Default)]
struct Sink {
    delivered: AtomicU64,
    latencies: Mutex<Vec<u32>>, // microseconds, sampled
}

impl Sink {
    fn record(&self, payload: &[u8]) {
        let n = self.delivered.fetch_add(1, Ordering::Relaxed);
        if n.is_multiple_of(4) && payload.len() >= 8 {
            let sent = u64::from_le_bytes(payload[..8].try_into().unwrap_or([0; 8]));
            let us = now_ns().saturating_sub(sent) / 1000;
            if let Ok(mut l) = self.latencies.lock() {
                l.push(us.min(u64::from(u32::MAX)) as u32);
            }
        }
    }
}

/// One sending peer: sends one frame to all other peers of its session.
enum Sender {
    Ours(RelaySender),
    Turn {
        socket: Arc<UdpSocket>,
        server: SocketAddr,
        channels: Vec<u16>,
    },
    Bare {
        socket: Arc<UdpSocket>,
        server: SocketAddr,
    },
}

/// A set of connected peers ready to load the system.
pub struct Fleet {
    system: System,
    senders: Vec<Sender>,
    peers_per_session: usize,
    sink: Arc<Sink>,
    uplink: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// PID of the relay process (for CPU time).
    pub pid: u32,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

#[derive(Clone)]
pub struct Target {
    pub quic: SocketAddr,
    pub hash: [u8; 32],
    pub turn: SocketAddr,
    pub turn_secret: String,
    pub bare: SocketAddr,
}

impl Fleet {
    /// `quiet`: our clients without peer echoes and reports (PROTOCOL.md
    /// §14), as clients before them were; see `game::quiet`.
    pub async fn connect(
        system: System,
        target: &Target,
        sessions: usize,
        peers: usize,
        pid: u32,
        quiet: bool,
    ) -> Result<Fleet> {
        let sink = Arc::new(Sink::default());
        let mut fleet = Fleet {
            system,
            senders: Vec::new(),
            peers_per_session: peers,
            sink: sink.clone(),
            uplink: Arc::new(AtomicU64::new(0)),
            tasks: Vec::new(),
            pid,
        };
        for s in 0..sessions {
            match system {
                System::Ours => fleet.connect_ours(target, peers, quiet).await?,
                System::Coturn => fleet.connect_turn(target, peers).await?,
                System::Bare => fleet.connect_bare(target, s as u32, peers).await?,
            }
        }
        Ok(fleet)
    }

    async fn connect_ours(&mut self, t: &Target, peers: usize, quiet: bool) -> Result<()> {
        let mut cfg = ClientConfig::new(t.quic, Trust::CertHash(t.hash));
        cfg.relay_mode = RelayMode::Datagram;
        if quiet {
            cfg.quality_echo = false;
            cfg.telemetry = false;
        }
        let mut clients = Vec::new();
        let mut host = Client::connect(&cfg, None).await?;
        let code = host.create_session(peers as u32, None).await?.code;
        clients.push(host);
        for _ in 1..peers {
            let mut c = Client::connect(&cfg, None).await?;
            c.join_session(&code, None).await?;
            clients.push(c);
        }
        for c in clients {
            // Read datagrams straight off the connection, as the TURN and bare
            // receivers read their sockets: no event channel in between.
            let raw = c.into_raw().context("raw QUIC connection")?;
            self.senders.push(Sender::Ours(raw.relay.clone()));
            let sink = self.sink.clone();
            self.tasks.push(tokio::spawn(async move {
                while let Ok(d) = raw.wire.read_datagram().await {
                    if let Ok((_, p)) = flightsim_p2p::protocol::parse_relay(&d) {
                        sink.record(p);
                    }
                }
            }));
        }
        Ok(())
    }

    async fn connect_turn(&mut self, t: &Target, peers: usize) -> Result<()> {
        let expiry = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
            + 3600;
        let mut clients = Vec::new();
        for i in 0..peers {
            let (user, pass) =
                flightsim_p2p::turn::turn_credential(&t.turn_secret, &format!("bench{i}"), expiry);
            clients.push(
                TurnClient::allocate(t.turn, &user, &pass)
                    .await
                    .context("TURN allocate")?,
            );
        }
        let relayed: Vec<SocketAddr> = clients.iter().map(|c| c.relayed).collect();
        for (i, c) in clients.iter_mut().enumerate() {
            let mut channels = Vec::new();
            for (j, r) in relayed.iter().enumerate() {
                if i != j {
                    channels.push(c.bind_channel(*r).await.context("TURN channel bind")?);
                }
            }
            let socket = Arc::new(std::mem::replace(
                &mut c.socket,
                UdpSocket::bind("127.0.0.1:0").await?,
            ));
            self.senders.push(Sender::Turn {
                socket: socket.clone(),
                server: c.server(),
                channels,
            });
            let sink = self.sink.clone();
            self.tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                while let Ok(n) = socket.recv(&mut buf).await {
                    // ChannelData: 2-byte channel (0x4000..), 2-byte length.
                    if n >= 4 && buf[0] & 0xC0 == 0x40 {
                        let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
                        if 4 + len <= n {
                            sink.record(&buf[4..4 + len]);
                        }
                    }
                }
            }));
        }
        Ok(())
    }

    async fn connect_bare(&mut self, t: &Target, session: u32, peers: usize) -> Result<()> {
        for p in 0..peers {
            let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
            let mut reg = vec![0xFF];
            reg.extend_from_slice(&session.to_le_bytes());
            reg.push(p as u8);
            socket.send_to(&reg, t.bare).await?;
            self.senders.push(Sender::Bare {
                socket: socket.clone(),
                server: t.bare,
            });
            let sink = self.sink.clone();
            self.tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                while let Ok(n) = socket.recv(&mut buf).await {
                    if n > 1 {
                        sink.record(&buf[1..n]);
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(())
    }

    /// Run at `frames_per_sec` flight frames per second per peer for `secs`.
    /// All peers send on the same tick (saturation search).
    pub async fn step(&self, frames_per_sec: f64, payload: usize, secs: f64) -> Step {
        self.step_paced(frames_per_sec, payload, secs, false).await
    }

    /// As a game sends: every peer at `hz` on its own clock, the peers'
    /// phases spread evenly over the frame interval (players' simulation
    /// ticks are not synchronised), so every frame leaves as its own packet.
    pub async fn game_step(&self, hz: f64, payload: usize, secs: f64) -> Step {
        self.step_paced(hz, payload, secs, true).await
    }

    async fn step_paced(
        &self,
        frames_per_sec: f64,
        payload: usize,
        secs: f64,
        staggered: bool,
    ) -> Step {
        let receivers = (self.peers_per_session - 1) as f64;
        let ticks_per_sec = if staggered { 1000.0 } else { 500.0 };
        let per_tick = frames_per_sec / ticks_per_sec;
        // Drain anything in flight, then reset counters.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.sink.delivered.store(0, Ordering::Relaxed);
        if let Ok(mut l) = self.sink.latencies.lock() {
            l.clear();
        }
        self.uplink.store(0, Ordering::Relaxed);
        let cpu0 = cpu_ticks(self.pid);
        let udp0 = udp_out_datagrams();
        let tx0 = self.ours_tx_bytes();
        let start = Instant::now();
        let duration = Duration::from_secs_f64(secs);
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / ticks_per_sec));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut owed = 0.0f64;
        let mut frames_sent = 0u64;
        let mut buf = vec![0u8; payload.max(8)];
        let mut wire = Vec::with_capacity(2048);
        let mut sent = vec![0u64; self.senders.len()];
        let n = self.senders.len().max(1) as f64;
        while start.elapsed() < duration {
            tick.tick().await;
            if staggered {
                let t = start.elapsed().as_secs_f64() * frames_per_sec;
                for (i, s) in self.senders.iter().enumerate() {
                    let due = (t + i as f64 / n).floor() as u64;
                    while sent[i] < due {
                        buf[..8].copy_from_slice(&now_ns().to_le_bytes());
                        self.send_one(s, &buf, &mut wire).await;
                        sent[i] += 1;
                        frames_sent += 1;
                    }
                }
                continue;
            }
            owed += per_tick;
            while owed >= 1.0 {
                owed -= 1.0;
                for s in &self.senders {
                    buf[..8].copy_from_slice(&now_ns().to_le_bytes());
                    self.send_one(s, &buf, &mut wire).await;
                    frames_sent += 1;
                }
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        // Let the last frames land.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let delivered = self.sink.delivered.load(Ordering::Relaxed) as f64;
        let expected = frames_sent as f64 * receivers;
        let cpu = cpu_ticks(self.pid).saturating_sub(cpu0) as f64 * 1000.0 / clock_ticks();
        let udp = udp_out_datagrams().saturating_sub(udp0) as f64;
        let uplink = match self.system {
            System::Ours => self.ours_tx_bytes().saturating_sub(tx0) as f64,
            _ => self.uplink.load(Ordering::Relaxed) as f64,
        };
        let mut lat = self
            .sink
            .latencies
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default();
        lat.sort_unstable();
        let pct = |p: f64| -> f64 {
            if lat.is_empty() {
                return f64::NAN;
            }
            lat[((lat.len() - 1) as f64 * p).round() as usize] as f64
        };
        Step {
            offered_per_sec: expected / elapsed,
            delivered_per_sec: delivered / elapsed,
            loss: if expected > 0.0 {
                (1.0 - delivered / expected).max(0.0)
            } else {
                0.0
            },
            p50_us: pct(0.5),
            p99_us: pct(0.99),
            p999_us: pct(0.999),
            uplink_bytes_per_frame: if frames_sent > 0 {
                uplink / frames_sent as f64
            } else {
                0.0
            },
            cpu_ms_per_1000: if delivered > 0.0 {
                cpu / delivered * 1000.0
            } else {
                f64::NAN
            },
            udp_datagrams_per_frame: if delivered > 0.0 {
                udp / delivered
            } else {
                f64::NAN
            },
            delivered,
            secs: elapsed,
        }
    }

    async fn send_one(&self, s: &Sender, payload: &[u8], wire: &mut Vec<u8>) {
        match s {
            Sender::Ours(c) => {
                let _ = c.send(ALL_PEERS, payload).await;
            }
            Sender::Turn {
                socket,
                server,
                channels,
            } => {
                for ch in channels {
                    TurnClient::channel_data(*ch, payload, wire);
                    if socket.send_to(wire, *server).await.is_ok() {
                        self.uplink.fetch_add(wire.len() as u64, Ordering::Relaxed);
                    }
                }
            }
            Sender::Bare { socket, server } => {
                wire.clear();
                wire.push(0);
                wire.extend_from_slice(payload);
                if socket.send_to(wire, *server).await.is_ok() {
                    self.uplink.fetch_add(wire.len() as u64, Ordering::Relaxed);
                }
            }
        }
    }

    fn ours_tx_bytes(&self) -> u64 {
        self.senders
            .iter()
            .filter_map(|s| match s {
                Sender::Ours(c) => c.udp_tx_bytes(),
                _ => None,
            })
            .sum()
    }
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

pub fn clock_ticks() -> f64 {
    100.0 // USER_HZ on Linux
}

/// UDP datagrams sent by this host so far (`Udp: OutDatagrams` in /proc/net/snmp).
pub fn udp_out_datagrams() -> u64 {
    let Ok(snmp) = std::fs::read_to_string("/proc/net/snmp") else {
        return 0;
    };
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "OutDatagrams")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Resident set size of a process in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// The bare forwarder: relay logic without crypto, run as its own process
/// (`harness --bare-forwarder PORT [--batch]`). Register: `FF session(u32 LE)
/// peer(u8)` (a new registration of the same session and peer replaces the
/// old address: every load step brings fresh sockets); data: `dest(u8, 0 =
/// all) payload` → `from(u8) payload` to the others. One `recv_from` and one
/// `send_to` per datagram, or with `batch` the limit of plain UDP: one
/// `recvmmsg` for whatever is queued and one `sendmmsg` for every copy of it.
pub fn bare_forwarder(port: u16, batch: bool) -> Result<()> {
    let sock = std::net::UdpSocket::bind(("127.0.0.1", port))?;
    let mut table = BareTable::default();
    if batch {
        return bare_batched(sock, table);
    }
    let mut buf = vec![0u8; 2048];
    let mut out = vec![0u8; 2048];
    loop {
        let (n, from) = sock.recv_from(&mut buf)?;
        table.forward(&buf[..n], from, &mut out, |frame, to| {
            let _ = sock.send_to(frame, to);
        });
    }
}

#[derive(Default)]
struct BareTable {
    who: std::collections::HashMap<SocketAddr, (u32, u8)>,
    sessions: std::collections::HashMap<u32, Vec<(u8, SocketAddr)>>,
}

impl BareTable {
    /// Handle one datagram: a registration, or a frame copied to `out` and
    /// handed to `send` once per receiver.
    fn forward(
        &mut self,
        buf: &[u8],
        from: SocketAddr,
        out: &mut [u8],
        mut send: impl FnMut(&[u8], SocketAddr),
    ) {
        let n = buf.len();
        if n >= 6 && buf[0] == 0xFF {
            let s = u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]);
            let members = self.sessions.entry(s).or_default();
            if let Some(old) = members.iter_mut().find(|(p, _)| *p == buf[5]) {
                self.who.remove(&old.1);
                old.1 = from;
            } else {
                members.push((buf[5], from));
            }
            self.who.insert(from, (s, buf[5]));
            return;
        }
        let Some(&(s, me)) = self.who.get(&from) else {
            return;
        };
        if n < 1 || n > out.len() {
            return;
        }
        let dest = buf[0];
        out[0] = me;
        out[1..n].copy_from_slice(&buf[1..n]);
        if let Some(members) = self.sessions.get(&s) {
            for (p, addr) in members {
                if *p != me && (dest == 0 || dest == *p + 1) {
                    send(&out[..n], *addr);
                }
            }
        }
    }
}

/// [`bare_forwarder`] with `recvmmsg` (blocks for the first datagram, takes
/// whatever else is queued) and one `sendmmsg` for every copy of every
/// datagram received.
fn bare_batched(sock: std::net::UdpSocket, mut table: BareTable) -> Result<()> {
    use std::os::fd::AsRawFd;
    const IN: usize = 32;
    const OUT: usize = 256;
    let fd = sock.as_raw_fd();
    let mut rx = vec![[0u8; 2048]; IN];
    let mut tx = vec![[0u8; 2048]; OUT];
    let mut tx_len = [0usize; OUT];
    let mut tx_to: Vec<libc::sockaddr_in> = vec![unsafe { std::mem::zeroed() }; OUT];
    let mut rx_from: Vec<libc::sockaddr_in> = vec![unsafe { std::mem::zeroed() }; IN];
    let mut out = vec![0u8; 2048];
    loop {
        let mut iov: Vec<libc::iovec> = rx
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        let mut hdr: Vec<libc::mmsghdr> = (0..IN)
            .map(|i| {
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_name = (&mut rx_from[i] as *mut libc::sockaddr_in).cast();
                h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                h.msg_hdr.msg_iov = &mut iov[i];
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        // SAFETY: every header points at a live buffer and address of ours.
        let got = unsafe {
            libc::recvmmsg(
                fd,
                hdr.as_mut_ptr(),
                IN as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        let mut queued = 0usize;
        for i in 0..got as usize {
            let a = rx_from[i];
            let from = SocketAddr::from((
                u32::from_be(a.sin_addr.s_addr).to_be_bytes(),
                u16::from_be(a.sin_port),
            ));
            let n = hdr[i].msg_len as usize;
            table.forward(&rx[i][..n], from, &mut out, |frame, to| {
                if queued < OUT {
                    if let SocketAddr::V4(v4) = to {
                        tx[queued][..frame.len()].copy_from_slice(frame);
                        tx_len[queued] = frame.len();
                        let t = &mut tx_to[queued];
                        t.sin_family = libc::AF_INET as libc::sa_family_t;
                        t.sin_port = v4.port().to_be();
                        t.sin_addr.s_addr = u32::from_be_bytes(v4.ip().octets()).to_be();
                        queued += 1;
                    }
                }
            });
        }
        let mut tiov: Vec<libc::iovec> = (0..queued)
            .map(|i| libc::iovec {
                iov_base: tx[i].as_mut_ptr().cast(),
                iov_len: tx_len[i],
            })
            .collect();
        let mut thdr: Vec<libc::mmsghdr> = (0..queued)
            .map(|i| {
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_name = (&mut tx_to[i] as *mut libc::sockaddr_in).cast();
                h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                h.msg_hdr.msg_iov = &mut tiov[i];
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        let mut sent = 0usize;
        while sent < queued {
            // SAFETY: as above, for the send side.
            let r =
                unsafe { libc::sendmmsg(fd, thdr[sent..].as_mut_ptr(), (queued - sent) as u32, 0) };
            if r <= 0 {
                break; // a full socket buffer drops, as UDP does
            }
            sent += r as usize;
        }
    }
}
