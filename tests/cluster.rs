//! Cluster mode end to end: a REAL redis-server and the REAL server binary,
//! three nodes (a, b, c) on loopback, real clients. Each test starts its own
//! redis-server on a free port and its own nodes with a unique
//! `--cluster-prefix`, so the tests run in parallel.
//!
//! 1. Create on a, join through b: redirected and joined, relay frames flow
//!    both ways, b counts the redirect; an unknown code gets
//!    `unknown_session`.
//! 2. SIGTERM a while two sessions relay at 30 frames/s: every session and
//!    player carries on on b or c with the same peer id, code and host; the
//!    frames lost during the move are counted and printed.
//! 3. kill -9 b: its sessions are taken over by exactly one node each and
//!    the clients (with the other nodes as fallbacks) are back with the
//!    same peer ids; once with a short QUIC idle timeout, once with the
//!    default one (30 s, longer than the resume grace), where a WebSocket
//!    player triggers the take-over long before its QUIC peers notice.
//! 4. Rolling restart of a, b and c: 0 sessions lost; a and b stopped at
//!    the same moment hand everything to c.
//! 5. Redis stopped and restarted under load: sessions keep relaying, a
//!    cross-node join fails with `cluster_unavailable` and works again
//!    once Redis is back; `fsp2p_cluster_directory_up` goes 0 then 1.
//!    Redis comes back empty (no persistence): the nodes must write their
//!    sessions again. The same with a hung Redis (SIGSTOP, then SIGCONT).
//!
//! 6. Regions (issue 26): three nodes with `--region eu|us|asia`; `GET
//!    /nodes` lists them; a version-4 `CreateSession` whose measurements
//!    favour another region is created there (`Redirect(Placement)`,
//!    followed by the client), one that favours this node, lies about a
//!    region no node has, or measured nothing stays; a cluster without
//!    `--region` ignores measurements.
//!
//! No timing assertions: every wait returns as soon as its condition holds,
//! with generous limits (the machine is shared and slow). The node logs go
//! to `test-artifacts/cluster-*.log`; a panic in one fails the test.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::redis::RedisProcess;
use common::*;
use flightsim_p2p::client::{Client, ClientConfig, ClientTransport, Event, ServerAddr};
use flightsim_p2p::cluster::{self, ClusterConfig, SessionRecord};
use flightsim_p2p::directory::Directory;
use flightsim_p2p::protocol::{
    ClientMsg, CreateSession, ErrorCode, NodeAddr, PeerId, RegionRtt, RelayMode, ServerMsg,
};

/// Generous bound for a move, a take-over, a restart on a busy machine.
const LONG: Duration = Duration::from_secs(90);
/// Relay rate of every player.
const FRAME_EVERY: Duration = Duration::from_millis(33);
/// On top of a documented time (the resume grace), for a loaded machine.
const TAKE_OVER_SLACK: Duration = Duration::from_secs(5);

// ----- nodes -----

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// One node: its name, its own cert dir (two nodes starting at once would
/// race writing one), and, with `fixed`, the ports it keeps across restarts.
struct Node {
    test: String,
    name: String,
    cert_dir: PathBuf,
    ports: Option<(u16, u16)>,
    args: Vec<String>,
    proc: Option<ServeProcess>,
    starts: u32,
}

impl Node {
    fn start(&mut self) {
        assert!(self.proc.is_none(), "node {} runs already", self.name);
        self.starts += 1;
        let tag = format!("cluster-{}-{}-{}", self.test, self.name, self.starts);
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let p = match self.ports {
            Some((q, h)) => ServeProcess::logged_at(&tag, &self.cert_dir, q, h, &args),
            None => ServeProcess::logged(&tag, &self.cert_dir, &args),
        };
        self.proc = Some(p);
    }

    fn p(&self) -> &ServeProcess {
        self.proc
            .as_ref()
            .unwrap_or_else(|| panic!("node {} is not running", self.name))
    }

    fn metric(&self, series: &str) -> f64 {
        self.p().metric(series)
    }

    /// SIGTERM, then wait (up to LONG) for it to exit by itself.
    async fn sigterm(&mut self) {
        signal(self.p(), "-TERM");
        self.sigterm_sent().await;
    }

    /// Wait (up to LONG) for the node, sent SIGTERM, to exit by itself.
    async fn sigterm_sent(&mut self) {
        let mut p = self.proc.take().expect("running");
        let deadline = Instant::now() + LONG;
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                println!("node {} exited after SIGTERM: {status}", self.name);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not exit within {LONG:?} of SIGTERM",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Dropping it checks its log for a panic.
        drop(p);
    }

    /// SIGKILL: a crash, nothing handed over.
    fn kill9(&mut self) {
        let mut p = self.proc.take().expect("running");
        signal(&p, "-KILL");
        let _ = p.child.wait();
    }

    fn config(&self, mode: RelayMode) -> ClientConfig {
        let mut c = self.p().config(mode);
        c.name = format!("via-{}", self.name);
        c
    }

    fn server_addr(&self) -> ServerAddr {
        let p = self.p();
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&p.hash, &mut hash).unwrap();
        ServerAddr {
            server: p.quic,
            server_name: "localhost".into(),
            ws_url: Some(format!("ws://{}/ws", p.http)),
            cert_sha256: Some(hash),
        }
    }
}

fn signal(p: &ServeProcess, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &p.child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} failed");
}

struct Cluster {
    redis: RedisProcess,
    nodes: Vec<Node>,
    /// Reads the directory as the nodes see it (never writes).
    observer: Directory,
}

impl Cluster {
    /// Redis and nodes `names`, started one after the other, each listed in
    /// the directory. `fixed`: each node keeps its ports across restarts.
    async fn start(test: &str, names: &[&str], fixed: bool, extra: &[&str]) -> Cluster {
        Self::start_with(test, names, fixed, extra, &|_| Vec::new()).await
    }

    /// [`Cluster::start`], with `per_node(name)` added to each node's flags.
    async fn start_with(
        test: &str,
        names: &[&str],
        fixed: bool,
        extra: &[&str],
        per_node: &dyn Fn(&str) -> Vec<String>,
    ) -> Cluster {
        static N: AtomicU32 = AtomicU32::new(0);
        let redis = RedisProcess::start();
        let prefix = format!(
            "ct-{test}-{}-{}:",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut nodes = Vec::new();
        for name in names {
            let mut args: Vec<String> = [
                "--redis-url",
                &redis.url(),
                "--node-name",
                name,
                "--cluster-prefix",
                &prefix,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend(extra.iter().map(|s| s.to_string()));
            args.extend(per_node(name));
            let mut node = Node {
                test: test.into(),
                name: name.to_string(),
                cert_dir: temp_dir(&format!("cluster-{name}")),
                ports: fixed.then(|| (free_udp_port(), free_tcp_port())),
                args,
                proc: None,
                starts: 0,
            };
            node.start();
            nodes.push(node);
        }
        let mut cfg = ClusterConfig::new(
            redis.url(),
            NodeAddr {
                name: "observer".into(),
                quic: "127.0.0.1:9".into(),
                http: "http://127.0.0.1:9".into(),
                cert_sha256: None,
            },
        );
        cfg.key_prefix = prefix;
        let observer = Directory::connect(&cfg).await.unwrap();
        let c = Cluster {
            redis,
            nodes,
            observer,
        };
        for name in names {
            c.wait_listed(name).await;
        }
        c
    }

    fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).unwrap()
    }

    fn node_mut(&mut self, name: &str) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.name == name).unwrap()
    }

    /// Wait until `name` is in the directory, live and not draining.
    async fn wait_listed(&self, name: &str) {
        let listed = until(LONG, || async {
            self.observer
                .nodes()
                .await
                .is_ok_and(|ns| ns.iter().any(|n| n.addr.name == name && !n.draining))
        })
        .await;
        assert!(listed, "node {name} never showed up in the directory");
    }

    async fn record(&self, code: &str) -> Option<SessionRecord> {
        self.observer.session(code).await.ok().flatten()
    }

    /// The record of `code` once `ok` holds for it (records are written
    /// shortly after the change, not before the client hears of it).
    async fn record_when(&self, code: &str, ok: impl Fn(&SessionRecord) -> bool) -> SessionRecord {
        let deadline = tokio::time::Instant::now() + LONG;
        loop {
            let last = self.record(code).await;
            match last {
                Some(rec) if ok(&rec) => return rec,
                _ if tokio::time::Instant::now() >= deadline => {
                    panic!("session {code}: the directory holds {last:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Sum of a metric over the running nodes.
    fn total(&self, series: &str) -> f64 {
        self.nodes
            .iter()
            .filter(|n| n.proc.is_some())
            .map(|n| n.metric(series))
            .sum()
    }
}

/// Poll an async condition until it holds or `limit` passes.
async fn until<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ----- players -----

/// What one player saw, filled in by its tasks.
#[derive(Default)]
struct Seen {
    /// Relay frame sequence numbers received, by sender.
    got: HashMap<PeerId, BTreeSet<u32>>,
    /// When the last frame from each sender arrived.
    last_from: HashMap<PeerId, Instant>,
    /// Frames this player sent to each other player.
    sent: u32,
    /// `Reconnected { resumed }` events.
    reconnected: Vec<bool>,
    /// (code, host) of every SessionJoined/SessionCreated.
    sessions: Vec<(String, PeerId)>,
    /// Redirects seen as events.
    redirects: u32,
    /// Set when the client gave up.
    closed: Option<String>,
}

/// A connected client relaying frames to the others of its session at 30/s.
struct Player {
    label: String,
    peer: PeerId,
    code: String,
    host: PeerId,
    seen: Arc<Mutex<Seen>>,
    stop_send: Arc<std::sync::atomic::AtomicBool>,
    stop_recv: Arc<std::sync::atomic::AtomicBool>,
    sender: Option<tokio::task::JoinHandle<()>>,
    receiver: Option<tokio::task::JoinHandle<Client>>,
}

impl Player {
    /// Start relaying to `others` (their peer ids never change).
    fn pump(label: &str, client: Client, code: &str, host: PeerId, others: Vec<PeerId>) -> Self {
        use std::sync::atomic::AtomicBool;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop_send = Arc::new(AtomicBool::new(false));
        let stop_recv = Arc::new(AtomicBool::new(false));
        let relay = client.relay_sender();
        let peer = client.peer_id();
        let sender = {
            let (seen, stop) = (seen.clone(), stop_send.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(FRAME_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut seq: u32 = 0;
                while !stop.load(Ordering::SeqCst) {
                    tick.tick().await;
                    let mut payload = seq.to_le_bytes().to_vec();
                    payload.resize(64, 0xAB);
                    for to in &others {
                        // Ok while reconnecting (the frame is dropped): a
                        // frame of the move, counted as lost.
                        let _ = relay.send(*to, &payload).await;
                    }
                    seq += 1;
                    seen.lock().unwrap().sent = seq;
                }
            })
        };
        let receiver = {
            let (seen, stop) = (seen.clone(), stop_recv.clone());
            let mut c = client;
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let Some(e) = c.next_event_within(Duration::from_millis(100)).await else {
                        continue;
                    };
                    let mut s = seen.lock().unwrap();
                    match e {
                        Event::Relay { from, payload, .. } if payload.len() == 64 => {
                            let seq = u32::from_le_bytes(payload[..4].try_into().unwrap());
                            s.got.entry(from).or_default().insert(seq);
                            s.last_from.insert(from, Instant::now());
                        }
                        Event::Reconnected { resumed } => s.reconnected.push(resumed),
                        Event::Control(ServerMsg::SessionJoined(i))
                        | Event::Control(ServerMsg::SessionCreated(i)) => {
                            s.sessions.push((i.code.clone(), i.host))
                        }
                        Event::Control(ServerMsg::Redirect(_)) => s.redirects += 1,
                        Event::Closed(why) => {
                            s.closed = Some(why.to_string());
                            break;
                        }
                        _ => {}
                    }
                }
                c
            })
        };
        Player {
            label: label.into(),
            peer,
            code: code.into(),
            host,
            seen,
            stop_send,
            stop_recv,
            sender: Some(sender),
            receiver: Some(receiver),
        }
    }

    /// Every one of `from` delivered a frame to this player after `since`.
    fn hears_all_since(&self, from: &[PeerId], since: Instant) -> bool {
        let s = self.seen.lock().unwrap();
        from.iter()
            .all(|p| s.last_from.get(p).is_some_and(|t| *t > since))
    }

    fn closed(&self) -> Option<String> {
        self.seen.lock().unwrap().closed.clone()
    }
}

/// Two-or-more-player sessions whose players all relay to each other.
struct Load {
    players: Vec<Player>,
}

impl Load {
    fn peers_of(&self, p: &Player) -> Vec<PeerId> {
        self.players
            .iter()
            .filter(|q| q.code == p.code && q.peer != p.peer)
            .map(|q| q.peer)
            .collect()
    }

    /// Wait until every player hears every other player of its session
    /// after `since`; fails naming who does not.
    async fn flowing_since(&self, since: Instant, what: &str) {
        let ok = eventually(LONG, || {
            self.players
                .iter()
                .all(|p| p.hears_all_since(&self.peers_of(p), since))
        })
        .await;
        if !ok {
            let deaf: Vec<String> = self
                .players
                .iter()
                .filter(|p| !p.hears_all_since(&self.peers_of(p), since))
                .map(|p| format!("{} (closed: {:?})", p.label, p.closed()))
                .collect();
            panic!("{what}: relay frames do not flow again to {deaf:?}");
        }
    }

    /// Stop sending, let frames in flight land, stop reading; returns the
    /// clients and what was lost (also printed).
    async fn stop(mut self, what: &str) -> (Vec<(Player, Client)>, Loss) {
        for p in &self.players {
            p.stop_send.store(true, Ordering::SeqCst);
        }
        for p in &mut self.players {
            p.sender.take().unwrap().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
        for p in &self.players {
            p.stop_recv.store(true, Ordering::SeqCst);
        }
        let (mut sent, mut lost, mut worst_gap) = (0u64, 0u64, 0u32);
        let mut out = Vec::new();
        let mut players = std::mem::take(&mut self.players);
        let lists: Vec<(String, PeerId, u32)> = players
            .iter()
            .map(|p| (p.code.clone(), p.peer, p.seen.lock().unwrap().sent))
            .collect();
        for mut p in players.drain(..) {
            let client = p.receiver.take().unwrap().await.unwrap();
            {
                let s = p.seen.lock().unwrap();
                for (code, from, n) in &lists {
                    if *code != p.code || *from == p.peer {
                        continue;
                    }
                    let got = s.got.get(from).cloned().unwrap_or_default();
                    sent += u64::from(*n);
                    lost += u64::from(*n).saturating_sub(got.len() as u64);
                    let gap = got
                        .iter()
                        .zip(got.iter().skip(1))
                        .map(|(a, b)| b - a - 1)
                        .max()
                        .unwrap_or(0);
                    worst_gap = worst_gap.max(gap);
                }
            }
            out.push((p, client));
        }
        println!(
            "{what}: {lost} of {sent} relay frames lost ({:.2}%); the longest run of frames \
             lost between two players: {worst_gap} (~{} ms at 30 frames/s)",
            100.0 * lost as f64 / sent.max(1) as f64,
            u64::from(worst_gap) * FRAME_EVERY.as_millis() as u64
        );
        let loss = Loss {
            sent,
            lost,
            worst_gap: FRAME_EVERY * worst_gap,
        };
        (out, loss)
    }
}

/// Relay frames lost over a whole test, between every pair of players.
struct Loss {
    sent: u64,
    lost: u64,
    /// The longest run of frames lost between two players, as time at the
    /// sending rate: how long that pair heard nothing.
    worst_gap: Duration,
}

impl Loss {
    /// Fails unless at most `percent` % of the frames were lost. A move
    /// that hands sessions over while they relay (drain, restart, Redis
    /// outage) loses only the frames in flight: well under this bound.
    fn at_most(&self, percent: f64, what: &str) {
        assert!(self.sent > 0, "{what}: nothing was sent");
        let share = 100.0 * self.lost as f64 / self.sent as f64;
        assert!(
            share <= percent,
            "{what}: {} of {} relay frames lost ({share:.2}%), more than {percent}%",
            self.lost,
            self.sent
        );
    }
}

/// What a drain, a rolling restart or a Redis outage may lose at 30 frames/s.
const MOVE_LOSS_PERCENT: f64 = 5.0;

/// Create a session through `host_cfg` and join `joiners` to it (each
/// through its own config); returns the clients, the code and the host id.
async fn session(
    host_cfg: &ClientConfig,
    joiners: &[&ClientConfig],
) -> (Vec<Client>, String, PeerId) {
    let mut host = Client::connect(host_cfg, None)
        .await
        .expect("host connects");
    let info = host.create_session(0, Some("pw")).await.expect("created");
    let mut clients = vec![host];
    for cfg in joiners {
        let mut c = Client::connect(cfg, None).await.expect("joiner connects");
        let joined = c
            .join_session(&info.code, Some("pw"))
            .await
            .expect("joined");
        assert_eq!(joined.code, info.code);
        assert_eq!(joined.host, info.host);
        clients.push(c);
    }
    // A join redirected to the home node reconnected as a new peer there
    // (its first peer id was the other node's): that is the join, not a
    // move, and not what the players record.
    for c in &mut clients {
        while c
            .next_event_within(Duration::from_millis(50))
            .await
            .is_some()
        {}
    }
    (clients, info.code, info.host)
}

fn add_players(load: &mut Load, tag: &str, clients: Vec<Client>, code: &str, host: PeerId) {
    let ids: Vec<PeerId> = clients.iter().map(|c| c.peer_id()).collect();
    for (i, c) in clients.into_iter().enumerate() {
        let others = ids.iter().copied().filter(|p| *p != ids[i]).collect();
        load.players.push(Player::pump(
            &format!("{tag}/{i} (peer {})", ids[i]),
            c,
            code,
            host,
            others,
        ));
    }
}

/// After a move: the session is in the directory with all its members and
/// its host, at a home among `homes`; every player still has its peer id
/// and says its session is `code` with host `host`, and never rejoined as a
/// new peer.
async fn assert_kept(cluster: &Cluster, players: &[(Player, Client)], homes: &[&str]) {
    let codes: BTreeSet<&str> = players.iter().map(|(p, _)| p.code.as_str()).collect();
    for code in codes {
        let ids: BTreeSet<PeerId> = players
            .iter()
            .filter(|(p, _)| p.code == code)
            .map(|(p, _)| p.peer)
            .collect();
        // Fails (naming what the directory holds) unless the session is
        // on one of `homes` with exactly its members.
        cluster
            .record_when(code, |rec| {
                let members: BTreeSet<PeerId> = rec.members.iter().map(|m| m.id).collect();
                homes.contains(&rec.home.as_str()) && members == ids
            })
            .await;
    }
    for (p, c) in players {
        assert_eq!(c.peer_id(), p.peer, "{}: a new peer id", p.label);
        let s = p.seen.lock().unwrap();
        assert!(s.closed.is_none(), "{}: gave up: {:?}", p.label, s.closed);
        assert!(
            s.reconnected.iter().all(|r| *r),
            "{}: came back as a new peer ({:?})",
            p.label,
            s.reconnected
        );
        for (code, host) in &s.sessions {
            assert_eq!(
                (code.as_str(), *host),
                (p.code.as_str(), p.host),
                "{}",
                p.label
            );
        }
    }
}

// ----- 1 -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_through_another_node_is_redirected_to_the_sessions_home() {
    // Ports chosen by the OS (`--listen 127.0.0.1:0`): the node must
    // announce the ports it got.
    let cluster = Cluster::start("redirect", &["a", "b", "c"], false, &[]).await;
    let (a, b) = (cluster.node("a"), cluster.node("b"));

    let mut host = Client::connect(&a.config(RelayMode::Datagram), None)
        .await
        .unwrap();
    let info = host.create_session(0, Some("pw")).await.unwrap();
    cluster.record_when(&info.code, |r| r.home == "a").await;

    let before = b.metric("fsp2p_cluster_redirects_total{reason=\"session\"}");
    let mut joiner = Client::connect(&b.config(RelayMode::Datagram), None)
        .await
        .unwrap();
    let joined = joiner
        .join_session(&info.code, Some("pw"))
        .await
        .expect("joined through b");
    assert_eq!(joined.code, info.code);
    assert_eq!(joined.host, info.host);
    assert_eq!(joined.host, host.peer_id());
    // The host sees the joiner: they are in one session on one node.
    let jid = joiner.peer_id();
    expect_msg(&mut host, |m| match m {
        ServerMsg::PeerJoined(p) if p.id == jid => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(
        relay_until_delivered(&joiner, &mut host, b"joiner to host").await,
        Some(jid)
    );
    assert_eq!(
        relay_until_delivered(&host, &mut joiner, b"host to joiner").await,
        Some(info.host)
    );
    assert!(
        eventually(WAIT, || b
            .metric("fsp2p_cluster_redirects_total{reason=\"session\"}")
            >= before + 1.0)
        .await,
        "b did not count the redirect"
    );
    // The record lists both, still on a.
    cluster
        .record_when(&info.code, |r| r.home == "a" && r.members.len() == 2)
        .await;

    // A code that exists nowhere: unknown_session, not a redirect.
    let mut lost = Client::connect(&b.config(RelayMode::Datagram), None)
        .await
        .unwrap();
    let unknown = if info.code == "ZZZZZZ" {
        "YYYYYY"
    } else {
        "ZZZZZZ"
    };
    expect_error(
        lost.join_session(unknown, None).await,
        ErrorCode::UnknownSession,
    )
    .unwrap();
    // The connection is still good.
    lost.ping()
        .await
        .expect("still connected after the refusal");
}

// ----- 2 -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_every_session_to_another_node_with_the_same_peers() {
    let mut cluster = Cluster::start("drain", &["a", "b", "c"], true, &[]).await;
    let a = cluster.node("a");
    let quic = a.config(RelayMode::Datagram);
    let mut ws = a.config(RelayMode::Datagram);
    ws.transport = ClientTransport::Websocket;

    let mut load = Load { players: vec![] };
    let (clients, code1, host1) = session(&quic, &[&quic, &quic]).await;
    add_players(&mut load, "s1", clients, &code1, host1);
    let (clients, code2, host2) = session(&quic, &[&ws]).await;
    add_players(&mut load, "s2", clients, &code2, host2);
    for code in [&code1, &code2] {
        cluster.record_when(code, |r| r.home == "a").await;
    }
    let t0 = Instant::now();
    load.flowing_since(t0, "before the drain").await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    cluster.node_mut("a").sigterm().await;
    let moved = Instant::now();
    load.flowing_since(moved, "after the drain").await;
    println!(
        "drain: every player hears every other again {:?} after node a exited",
        moved.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    let sessions_on_bc =
        cluster.node("b").metric("fsp2p_sessions") + cluster.node("c").metric("fsp2p_sessions");
    assert_eq!(sessions_on_bc, 2.0, "sessions lost in the drain");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (players, loss) = load.stop("SIGTERM of node a").await;
    loss.at_most(MOVE_LOSS_PERCENT, "SIGTERM of node a");
    assert_kept(&cluster, &players, &["b", "c"]).await;
    for (p, _) in &players {
        let s = p.seen.lock().unwrap();
        assert!(!s.reconnected.is_empty(), "{}: never moved", p.label);
    }
}

// ----- 3 -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_sessions_are_taken_over_by_exactly_one_node() {
    // A short QUIC idle timeout, so the clients notice the dead node
    // within seconds, well within the resume grace.
    let tuning = ["--idle-timeout-ms", "3000", "--keep-alive-ms", "1000"];
    kill_9("kill", &tuning).await;
}

/// The default QUIC idle timeout (30 s) outlasts the resume grace (15 s):
/// the WebSocket player notices the death at once (TCP reset) and its
/// node takes the session over long before the QUIC players notice. They
/// must still get their seats back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_the_default_idle_timeout_keeps_the_slow_to_notice_players() {
    kill_9("kill-default-idle", &[]).await;
}

async fn kill_9(test: &str, tuning: &[&str]) {
    let mut cluster = Cluster::start(test, &["a", "b", "c"], true, tuning).await;
    let fallbacks = vec![
        cluster.node("a").server_addr(),
        cluster.node("c").server_addr(),
    ];
    let mut cfg = cluster.node("b").config(RelayMode::Datagram);
    cfg.fallbacks = fallbacks;
    cfg.connect_timeout = Duration::from_secs(3);
    let mut ws = cfg.clone();
    ws.transport = ClientTransport::Websocket;

    let mut load = Load { players: vec![] };
    let (clients, code1, host1) = session(&cfg, &[&cfg]).await;
    add_players(&mut load, "s1", clients, &code1, host1);
    let (clients, code2, host2) = session(&cfg, &[&cfg, &ws]).await;
    add_players(&mut load, "s2", clients, &code2, host2);
    for code in [&code1, &code2] {
        cluster.record_when(code, |r| r.home == "b").await;
    }
    load.flowing_since(Instant::now(), "before the kill").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let taken_before = cluster.total("fsp2p_cluster_sessions_taken_over_total");

    cluster.node_mut("b").kill9();
    let killed = Instant::now();
    load.flowing_since(killed, "after kill -9").await;
    let back = killed.elapsed();
    println!("kill -9: every player relays again {back:?} after node b died");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (players, loss) = load.stop("kill -9 of node b").await;
    // Documented (DEPLOYMENT.md, "Crash"): players are back within the
    // resume grace. Slack for a loaded machine on top, not instead.
    let grace = Duration::from_millis(flightsim_p2p::limits::Limits::default().resume_grace_ms);
    assert!(
        back <= grace + TAKE_OVER_SLACK,
        "kill -9: players relayed again only {back:?} after the crash (grace {grace:?})"
    );
    // Frames are lost during the outage only, not after it.
    assert!(
        loss.worst_gap <= back + Duration::from_secs(2),
        "kill -9: a pair heard nothing for {:?}, longer than the outage ({back:?})",
        loss.worst_gap
    );
    assert!(loss.lost < loss.sent, "every frame was lost");
    assert_kept(&cluster, &players, &["a", "c"]).await;
    // Exactly one take-over per session, over all nodes.
    let taken = cluster.total("fsp2p_cluster_sessions_taken_over_total") - taken_before;
    assert_eq!(taken, 2.0, "take-overs counted over the nodes");
    for (p, _) in &players {
        let s = p.seen.lock().unwrap();
        assert!(s.reconnected.contains(&true), "{}: never resumed", p.label);
    }
    println!("kill -9: resume grace {grace:?}, back after {back:?}");
}

/// A node frozen (SIGSTOP) for less than its heartbeat expiry is a slow
/// node, not a dead one: it keeps its sessions. While it is frozen a player
/// joins one of them through another node: that node must send the player
/// to the frozen home (and wait for it), not take the session over. This is
/// what a loaded machine does to a node; a take-over here would move a
/// session whose node is alive (issue 28).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_frozen_for_less_than_its_expiry_keeps_its_sessions() {
    // Expiry 6 s with a beat every half second: a 3 s freeze leaves 2.5 s
    // of margin even if the beat before it came late. (Late in the freeze
    // a is told b missed its beat: it waits for b's next one, then sends
    // the player there.)
    let ttl = Duration::from_secs(6);
    let freeze = ttl / 2;
    let tuning = ["--cluster-node-ttl-ms", "6000"];
    let cluster = Cluster::start("freeze", &["a", "b"], true, &tuning).await;
    let on_b = cluster.node("b").config(RelayMode::Datagram);
    let via_a = cluster.node("a").config(RelayMode::Datagram);
    let mut load = Load { players: vec![] };
    let (clients, code, host) = session(&on_b, &[&on_b]).await;
    add_players(&mut load, "s", clients, &code, host);
    cluster.record_when(&code, |r| r.home == "b").await;
    load.flowing_since(Instant::now(), "before the freeze")
        .await;
    let taken_before = cluster.total("fsp2p_cluster_sessions_taken_over_total");

    signal(cluster.node("b").p(), "-STOP");
    let frozen = Instant::now();
    // Late in the freeze, well past a heartbeat or two (a rule that judged
    // a node dead sooner than its expiry would take the session now), a
    // join through a: a finds the record, b still listed, and redirects
    // there; the client waits for b.
    tokio::time::sleep(freeze - Duration::from_millis(500)).await;
    let join = {
        let code = code.clone();
        tokio::spawn(async move {
            let mut c = Client::connect(&via_a, None).await.expect("connects to a");
            let joined = c.join_session(&code, Some("pw")).await;
            (c, joined)
        })
    };
    tokio::time::sleep(freeze.saturating_sub(frozen.elapsed())).await;
    signal(cluster.node("b").p(), "-CONT");
    println!("freeze: node b stopped for {:?}", frozen.elapsed());

    let (late, joined) = tokio::time::timeout(LONG, join)
        .await
        .expect("the join through a ended")
        .expect("join task");
    let joined = joined.expect("joined the frozen node's session once it woke");
    assert_eq!(joined.host, host);
    load.flowing_since(Instant::now(), "after the freeze").await;
    let rec = cluster.record_when(&code, |r| r.members.len() == 3).await;
    assert_eq!(rec.home, "b", "the session left its live node");
    let taken = cluster.total("fsp2p_cluster_sessions_taken_over_total") - taken_before;
    assert_eq!(taken, 0.0, "a frozen, live node lost a session");
    assert_eq!(cluster.node("b").metric("fsp2p_sessions"), 1.0);
    assert_eq!(cluster.node("a").metric("fsp2p_sessions"), 0.0);
    drop(late);
    let (players, loss) = load.stop("freeze of node b").await;
    // Frames sent to a frozen node wait in its socket buffer or are dropped
    // there; the pair is heard again once it wakes.
    assert!(
        loss.worst_gap <= freeze + Duration::from_secs(2),
        "freeze: a pair heard nothing for {:?}",
        loss.worst_gap
    );
    for (p, _) in &players {
        assert!(p.closed().is_none(), "{}: closed by the freeze", p.label);
    }
}

/// A player who reaches another node after its node was killed, but
/// before the dead node's record has expired (a WebSocket player: the
/// kernel resets its connection at once), is not sent back to the dead
/// node: a home more than half a beat late is taken for probably dead, and
/// the lookup waits for its record to expire, then takes the session over
/// (`cluster::beat_overdue`). Before, the player was redirected to the dead
/// node until its record expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_is_not_sent_to_a_node_that_missed_its_beat() {
    let mut cluster = Cluster::start("overdue", &["a", "b"], true, &[]).await;
    let on_b = cluster.node("b").config(RelayMode::Datagram);
    let via_a = cluster.node("a").config(RelayMode::Datagram);
    let (clients, code, host) = session(&on_b, &[]).await;
    cluster.record_when(&code, |r| r.home == "b").await;
    let redirected = "fsp2p_cluster_redirects_total{reason=\"session\"}";
    let before = cluster.node("a").metric(redirected);

    cluster.node_mut("b").kill9();
    drop(clients);
    // Until the directory shows b late for its beat but still listed; on a
    // loaded machine its record may expire first (the join is then a plain
    // take-over, and this test proves less, but does not fail).
    let cfg = ClusterConfig::new("", NodeAddr::default());
    loop {
        match cluster.observer.node_expiry("b").await {
            Ok(Some((_, left))) if !cluster::beat_overdue(left, cfg.heartbeat, cfg.node_ttl) => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Ok(Some((_, left))) => {
                println!("overdue: b listed for {left:?} more, joining through a");
                break;
            }
            other => {
                println!("overdue: b's record expired before it was seen late ({other:?})");
                break;
            }
        }
    }
    let mut c = Client::connect(&via_a, None).await.expect("connects to a");
    let joined = c
        .join_session(&code, Some("pw"))
        .await
        .expect("joined through a");
    assert_eq!(joined.host, host);
    let rec = cluster.record_when(&code, |r| r.members.len() == 2).await;
    assert_eq!(rec.home, "a", "a took the session over");
    assert_eq!(
        cluster.node("a").metric(redirected),
        before,
        "a sent the player to the dead node"
    );
    c.close().await;
}

// ----- 4 -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_node_loses_no_session() {
    let mut cluster = Cluster::start("rolling", &["a", "b", "c"], true, &[]).await;
    let on_a = cluster.node("a").config(RelayMode::Datagram);
    let on_b = cluster.node("b").config(RelayMode::Datagram);
    let mut ws_c = cluster.node("c").config(RelayMode::Datagram);
    ws_c.transport = ClientTransport::Websocket;

    let mut load = Load { players: vec![] };
    let (clients, code1, host1) = session(&on_a, &[&on_a]).await;
    add_players(&mut load, "s1", clients, &code1, host1);
    // Joined through c: redirected to b.
    let (clients, code2, host2) = session(&on_b, &[&ws_c]).await;
    add_players(&mut load, "s2", clients, &code2, host2);
    load.flowing_since(Instant::now(), "before the restarts")
        .await;

    for name in ["a", "b", "c"] {
        cluster.node_mut(name).sigterm().await;
        let down = Instant::now();
        load.flowing_since(down, &format!("after {name} stopped"))
            .await;
        cluster.node_mut(name).start();
        cluster.wait_listed(name).await;
        println!(
            "rolling: {name} restarted and listed after {:?}",
            down.elapsed()
        );
        let total = cluster.total("fsp2p_sessions");
        assert_eq!(total, 2.0, "sessions after restarting {name}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (players, loss) = load.stop("rolling restart").await;
    loss.at_most(MOVE_LOSS_PERCENT, "rolling restart");
    assert_kept(&cluster, &players, &["a", "b", "c"]).await;
}

// ----- 5 -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_and_back_existing_sessions_carry_on_and_joins_recover() {
    redis_outage("redis", false).await;
}

/// The same with a Redis that hangs (SIGSTOP: connections open, no
/// answer) instead of one that is gone: calls must time out, not block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_is_an_outage_too() {
    redis_outage("redis-hung", true).await;
}

async fn redis_outage(test: &str, hang: bool) {
    let mut cluster = Cluster::start(test, &["a", "b"], true, &[]).await;
    let on_a = cluster.node("a").config(RelayMode::Datagram);
    let mut load = Load { players: vec![] };
    let (clients, code, host) = session(&on_a, &[&on_a]).await;
    add_players(&mut load, "s1", clients, &code, host);
    // A second session that does not change while Redis is away: the
    // nodes write nothing for it then, so a Redis that comes back empty
    // learns of it only if the node tells it again.
    let (quiet, quiet_code, quiet_host) = session(&on_a, &[&on_a]).await;
    add_players(&mut load, "s2", quiet, &quiet_code, quiet_host);
    for c in [&code, &quiet_code] {
        cluster.record_when(c, |r| r.home == "a").await;
    }
    load.flowing_since(Instant::now(), "before the outage")
        .await;
    for n in ["a", "b"] {
        assert_eq!(
            cluster.node(n).metric("fsp2p_cluster_directory_up"),
            1.0,
            "{n}"
        );
    }

    if hang {
        cluster.redis.freeze();
    } else {
        cluster.redis.stop();
    }
    let down = Instant::now();
    for n in ["a", "b"] {
        let node = cluster.node(n);
        assert!(
            eventually(LONG, || node.metric("fsp2p_cluster_directory_up") == 0.0).await,
            "{n} never noticed Redis is down"
        );
    }
    // Existing sessions relay on.
    load.flowing_since(down, "while Redis is down").await;
    // A join through b needs the directory: a clean refusal, the
    // connection stays.
    let b_cfg = cluster.node("b").config(RelayMode::Datagram);
    let mut late = Client::connect(&b_cfg, None)
        .await
        .expect("b accepts connections while Redis is down");
    expect_error(
        late.join_session(&code, Some("pw")).await,
        ErrorCode::ClusterUnavailable,
    )
    .unwrap();
    late.ping()
        .await
        .expect("still connected after the refusal");
    // Joining through the session's own node works without Redis (s1
    // changes: its record is owed, and written once Redis is back).
    let mut local = Client::connect(&on_a, None).await.unwrap();
    local
        .join_session(&code, Some("pw"))
        .await
        .expect("a join on the home node needs no directory");
    local.close().await;

    if hang {
        cluster.redis.thaw();
    } else {
        cluster.redis.restart();
    }
    let back = Instant::now();
    for n in ["a", "b"] {
        let node = cluster.node(n);
        assert!(
            eventually(LONG, || node.metric("fsp2p_cluster_directory_up") == 1.0).await,
            "{n} never saw Redis back"
        );
    }
    // A join through b works again, for the session that did not change
    // too (Redis came back empty: the nodes must tell it their sessions
    // again).
    // (A new connection each time: failed joins count against one.)
    late.close().await;
    let mut attempts = 0;
    let joined = loop {
        attempts += 1;
        let mut c = Client::connect(&b_cfg, None).await.expect("b accepts");
        match c.join_session(&quiet_code, Some("pw")).await {
            Ok(info) => break info,
            // (Failed joins from one address are rate limited: the limit
            // is waited out, it is not the failure looked for.)
            Err(e)
                if e.server_code() == Some(ErrorCode::ClusterUnavailable)
                    || e.server_code() == Some(ErrorCode::UnknownSession)
                    || e.server_code() == Some(ErrorCode::TooManyJoinAttempts) =>
            {
                assert!(
                    back.elapsed() < LONG,
                    "the join through b never worked again ({attempts} attempts; last: {e})"
                );
                c.close().await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("join through b after Redis came back: {e}"),
        }
    };
    assert_eq!(joined.code, quiet_code);
    assert_eq!(joined.host, quiet_host);
    println!("redis: the join through b worked again after {attempts} attempts");
    load.flowing_since(Instant::now(), "after Redis came back")
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (players, loss) = load.stop("Redis outage").await;
    loss.at_most(MOVE_LOSS_PERCENT, "Redis outage");
    for (p, c) in &players {
        assert_eq!(c.peer_id(), p.peer);
        assert!(p.closed().is_none());
    }
    for c in [&code, &quiet_code] {
        cluster.record_when(c, |r| r.home == "a").await;
    }
}

/// A session's creator hears `SessionCreated` once the code is reserved;
/// its record is written a moment later. A join through another node in
/// that moment must be redirected, not told the code does not exist.
/// Fifty tries, each join sent as soon as the code is known.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_through_another_node_right_after_the_create_is_not_refused() {
    let cluster = Cluster::start("create-race", &["a", "b"], false, &[]).await;
    let (a, b) = (cluster.node("a"), cluster.node("b"));
    let b_cfg = b.config(RelayMode::Datagram);
    let mut refused = Vec::new();
    for i in 0..50 {
        // Connected beforehand: the join goes out the moment the code is known.
        let mut joiner = Client::connect(&b_cfg, None).await.unwrap();
        let mut host = Client::connect(&a.config(RelayMode::Datagram), None)
            .await
            .unwrap();
        let info = host.create_session(0, None).await.unwrap();
        match joiner.join_session(&info.code, None).await {
            Ok(joined) => assert_eq!((joined.code, joined.host), (info.code, info.host)),
            Err(e) => refused.push(format!("try {i}: {e}")),
        }
        joiner.close().await;
        host.close().await;
    }
    assert!(refused.is_empty(), "joins refused: {refused:#?}");
}

/// Two nodes sent SIGTERM at the same moment (a deploy that replaces more
/// than one at a time): neither may hand its sessions to the other, which
/// is going away too, though c is the busiest node; everything ends on c.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_stopped_at_once_hand_everything_to_the_third() {
    let mut cluster = Cluster::start("two-stop", &["a", "b", "c"], true, &[]).await;
    let on_a = cluster.node("a").config(RelayMode::Datagram);
    let on_b = cluster.node("b").config(RelayMode::Datagram);
    let mut load = Load { players: vec![] };
    let (clients, code1, host1) = session(&on_a, &[&on_a]).await;
    add_players(&mut load, "s1", clients, &code1, host1);
    let (clients, code2, host2) = session(&on_b, &[&on_b]).await;
    add_players(&mut load, "s2", clients, &code2, host2);
    // c is the busiest: by load alone, a and b would pick each other.
    let on_c = cluster.node("c").config(RelayMode::Datagram);
    let mut busy = Vec::new();
    for _ in 0..3 {
        busy.push(session(&on_c, &[]).await);
    }
    // ... once the directory says so (the load is announced every beat).
    let announced = until(LONG, || async {
        cluster.observer.nodes().await.is_ok_and(|ns| {
            let load = |name: &str| ns.iter().find(|n| n.addr.name == name).map(|n| n.sessions);
            load("c") == Some(3) && load("a") == Some(1) && load("b") == Some(1)
        })
    })
    .await;
    assert!(announced, "the nodes never announced their load");
    load.flowing_since(Instant::now(), "before the stop").await;
    let pa = cluster.node("a").p().child.id();
    let pb = cluster.node("b").p().child.id();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pa.to_string(), &pb.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    cluster.node_mut("a").sigterm_sent().await;
    cluster.node_mut("b").sigterm_sent().await;
    let t = Instant::now();
    load.flowing_since(t, "after both stopped").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (players, loss) = load.stop("SIGTERM of a and b at once").await;
    loss.at_most(MOVE_LOSS_PERCENT, "SIGTERM of a and b at once");
    assert_kept(&cluster, &players, &["c"]).await;
}

// ----- resume through a node that is not the session's home -----

/// A player whose connection to its session's node (a) is lost resumes
/// through another node (b), as a client trying its fallbacks does. b does
/// not hold the token: it finds the session in the directory and redirects
/// the `Hello` to a (PROTOCOL.md §11, "Hello with a resume token"), where
/// the player gets its old peer id and seat back. b takes nothing over: the
/// session stays on a, at the same epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_through_another_node_is_redirected_home_and_keeps_the_peer_id() {
    let cluster = Cluster::start("resume-via", &["a", "b"], false, &[]).await;
    let (a, b) = (cluster.node("a"), cluster.node("b"));
    let mut host = Client::connect(&a.config(RelayMode::Datagram), None)
        .await
        .unwrap();
    let info = host.create_session(0, None).await.unwrap();
    let mut player = Client::connect(&a.config(RelayMode::Datagram), None)
        .await
        .unwrap();
    player.join_session(&info.code, None).await.unwrap();
    let id = player.peer_id();
    let token = player.welcome.resume_token.clone();
    // The directory knows the player (and its token's hash) first.
    let rec = cluster
        .record_when(&info.code, |r| r.home == "a" && r.members.len() == 2)
        .await;
    player.abandon(); // as if its network went away
    expect_msg(&mut host, |m| match m {
        ServerMsg::PeerStatus {
            peer,
            online: false,
        } if *peer == id => Some(()),
        _ => None,
    })
    .await;

    let redirects = b.metric("fsp2p_cluster_redirects_total{reason=\"session\"}");
    let mut cfg = b.config(RelayMode::Datagram);
    cfg.resume_token = Some(token);
    let mut back = Client::connect(&cfg, None)
        .await
        .expect("resumed through b");
    assert!(back.welcome.resumed, "not resumed: {:?}", back.welcome);
    assert_eq!(back.peer_id(), id, "the resume through b kept the peer id");
    let joined = expect_msg(&mut back, |m| match m {
        ServerMsg::SessionJoined(i) => Some(i.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (joined.code.as_str(), joined.host),
        (info.code.as_str(), info.host)
    );
    expect_msg(&mut host, |m| match m {
        ServerMsg::PeerStatus { peer, online: true } if *peer == id => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(
        relay_until_delivered(&back, &mut host, b"back").await,
        Some(id)
    );
    assert_eq!(
        relay_until_delivered(&host, &mut back, b"welcome back").await,
        Some(info.host)
    );
    // b redirected the Hello and kept nothing: both players are on a.
    assert!(
        eventually(WAIT, || b
            .metric("fsp2p_cluster_redirects_total{reason=\"session\"}")
            >= redirects + 1.0)
        .await,
        "b did not count a redirect"
    );
    assert!(
        eventually(WAIT, || a.metric("fsp2p_connections{transport=\"quic\"}")
            == 2.0
            && b.metric("fsp2p_connections{transport=\"quic\"}") == 0.0)
        .await,
        "connections: a {}, b {} (want 2 and 0)",
        a.metric("fsp2p_connections{transport=\"quic\"}"),
        b.metric("fsp2p_connections{transport=\"quic\"}")
    );
    let now = cluster.record(&info.code).await.expect("record");
    assert_eq!(
        (now.home.as_str(), now.epoch, now.members.len()),
        ("a", rec.epoch, 2),
        "the session moved: {now:?}"
    );
}

// ----- 6 -----

/// `GET /nodes` on `node`, parsed: (name, region) of each entry.
fn listed(node: &Node) -> Vec<(String, Option<String>)> {
    let (status, body) = http_get(node.p().http, "/nodes");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_string(),
                n["region"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn rtts(list: &[(&str, u32)]) -> Vec<RegionRtt> {
    list.iter()
        .map(|(region, rtt_ms)| RegionRtt {
            region: region.to_string(),
            rtt_ms: *rtt_ms,
        })
        .collect()
}

/// Create a session through `via` with these measurements (sent as they
/// are: loopback has no distances); the name of the node it lives on.
async fn create_measured(cluster: &Cluster, via: &str, measured: Vec<RegionRtt>) -> String {
    let mut cfg = cluster.node(via).config(RelayMode::Datagram);
    cfg.measure_regions = false;
    let mut host = Client::connect(&cfg, None).await.unwrap();
    host.send(&ClientMsg::CreateSession(CreateSession {
        max_peers: 0,
        password: None,
        region_rtts: measured,
    }))
    .await
    .unwrap();
    let info = host
        .wait_for(|m| match m {
            ServerMsg::SessionCreated(i) => Some(i.clone()),
            _ => None,
        })
        .await
        .unwrap();
    let home = cluster.record_when(&info.code, |_| true).await.home;
    // The client is on that node: its session answers it.
    host.ping().await.unwrap();
    host.close().await;
    home
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_place_a_new_session_by_its_creators_measured_ping() {
    let cluster = Cluster::start_with("regions", &["eu", "us", "asia"], false, &[], &|name| {
        vec!["--region".into(), name.into()]
    })
    .await;
    let eu = cluster.node("eu");
    // Every node lists all three with their regions once its heartbeat read them.
    let all = |l: &[(String, Option<String>)]| {
        ["eu", "us", "asia"].iter().all(|n| {
            l.iter()
                .any(|(name, r)| name == n && r.as_deref() == Some(*n))
        })
    };
    assert!(
        eventually(WAIT, || all(&listed(eu))).await,
        "eu never listed all three: {:?}",
        listed(eu)
    );
    assert_eq!(listed(eu)[0].0, "eu", "a node lists itself first");

    // The Rust client measures each region itself (loopback: all close).
    let measurer = Client::connect(&eu.config(RelayMode::Datagram), None)
        .await
        .unwrap();
    let mut measured = measurer.measured_regions(WAIT).await;
    measured.sort_by(|a, b| a.region.cmp(&b.region));
    let regions: Vec<&str> = measured.iter().map(|r| r.region.as_str()).collect();
    assert_eq!(regions, ["asia", "eu", "us"], "{measured:?}");
    assert!(measured.iter().all(|r| r.rtt_ms >= 1 && r.rtt_ms < 1000));
    // And sends it with its next request, without waiting again.
    let mut cached = measurer.region_rtts();
    cached.sort_by(|a, b| a.region.cmp(&b.region));
    assert_eq!(cached, measured);
    measurer.close().await;

    // A player in the US reaching eu: created on us, counted there... by eu.
    let placed = "fsp2p_cluster_redirects_total{reason=\"placement\"}";
    let before = eu.metric(placed);
    let us_player = rtts(&[("eu", 80), ("us", 5), ("asia", 120)]);
    assert_eq!(create_measured(&cluster, "eu", us_player).await, "us");
    assert!(eventually(WAIT, || eu.metric(placed) >= before + 1.0).await);
    // From ASIA through us: asia.
    let asia_player = rtts(&[("eu", 150), ("us", 120), ("asia", 5)]);
    assert_eq!(create_measured(&cluster, "us", asia_player).await, "asia");
    // An EU player: stays. A gain under 20 ms: stays.
    let eu_player = rtts(&[("eu", 5), ("us", 80), ("asia", 150)]);
    assert_eq!(create_measured(&cluster, "eu", eu_player).await, "eu");
    let close = rtts(&[("eu", 30), ("us", 15)]);
    assert_eq!(create_measured(&cluster, "eu", close).await, "eu");
    // Lies: a region no node has, absurd values for one that has none, nothing measured.
    let lie = rtts(&[("eu", 4_000_000), ("mars", 0)]);
    assert_eq!(create_measured(&cluster, "eu", lie).await, "eu");
    assert_eq!(create_measured(&cluster, "eu", vec![]).await, "eu");
    // A bad list is refused, the connection stays.
    let mut cfg = eu.config(RelayMode::Datagram);
    cfg.measure_regions = false;
    let mut c = Client::connect(&cfg, None).await.unwrap();
    c.send(&ClientMsg::CreateSession(CreateSession {
        max_peers: 0,
        password: None,
        region_rtts: rtts(&[("EU", 1)]),
    }))
    .await
    .unwrap();
    let code = c
        .wait_for(|m| match m {
            ServerMsg::Error { code, .. } => Some(*code),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(code, ErrorCode::InvalidArgument as u16);
    c.ping().await.expect("still connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_regions_measurements_change_nothing_and_nodes_are_listed_without_one() {
    let cluster = Cluster::start("noregions", &["a", "b"], false, &[]).await;
    let a = cluster.node("a");
    assert!(
        eventually(WAIT, || listed(a).len() == 2).await,
        "{:?}",
        listed(a)
    );
    assert!(listed(a).iter().all(|(_, r)| r.is_none()));
    let b_player = rtts(&[("a", 300), ("b", 1)]);
    assert_eq!(create_measured(&cluster, "a", b_player).await, "a");
    assert_eq!(
        a.metric("fsp2p_cluster_redirects_total{reason=\"placement\"}"),
        0.0
    );
}

// ----- moving a running session (issue 26) -----

/// One event of a raw version-5 WebSocket connection.
enum WsEvent {
    Control(ServerMsg),
    Relay(u32),
    Closed(Option<u16>),
}

type WsSink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::Message,
>;

/// Open a raw WebSocket to `http` sending `first` in the URL; its events
/// go to `tx` tagged with `idx`.
async fn ws_open(
    http: std::net::SocketAddr,
    first: &[ClientMsg],
    idx: usize,
    tx: tokio::sync::mpsc::UnboundedSender<(usize, WsEvent)>,
) -> WsSink {
    use flightsim_p2p::protocol::{close_code_from_ws, decode, parse_relay, parse_ws, WsMessage};
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let url = format!(
        "ws://{http}/ws?first={}",
        flightsim_p2p::first::encode_first(first)
    );
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let (sink, mut stream) = ws.split();
    tokio::spawn(async move {
        let mut code = None;
        while let Some(Ok(m)) = stream.next().await {
            match m {
                Message::Binary(b) => match parse_ws(&b) {
                    Ok(WsMessage::Control(body)) => {
                        if let Ok(msg) = decode::<ServerMsg>(body) {
                            let _ = tx.send((idx, WsEvent::Control(msg)));
                        }
                    }
                    Ok(WsMessage::Relay(frame)) => {
                        if let Ok((_, p)) = parse_relay(frame) {
                            if p.len() >= 4 {
                                let seq = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
                                let _ = tx.send((idx, WsEvent::Relay(seq)));
                            }
                        }
                    }
                    Err(_) => {}
                },
                Message::Close(f) => {
                    code = f.and_then(|f| close_code_from_ws(f.code.into()));
                    break;
                }
                _ => {}
            }
        }
        let _ = tx.send((idx, WsEvent::Closed(code)));
    });
    sink
}

fn hello5(name: &str, token: Option<Vec<u8>>) -> ClientMsg {
    ClientMsg::Hello(flightsim_p2p::protocol::Hello {
        version: 5,
        client: flightsim_p2p::protocol::ClientKind::Rust,
        relay_mode: RelayMode::Datagram,
        name: name.into(),
        resume_token: token,
        access_token: None,
    })
}

/// Nodes `a` (region eu) and `b` (region us) that move a session as soon as
/// their 5 s check finds it worth it (interval 0), with a 1.5 s overlap;
/// returns once `a` lists `b`, so a move can name it.
async fn move_pair(test: &str) -> Cluster {
    let cluster = Cluster::start_with(
        test,
        &["a", "b"],
        false,
        &[
            "--placement-move-interval-secs",
            "0",
            "--placement-overlap-ms",
            "1500",
        ],
        &|name| {
            let region = if name == "a" { "eu" } else { "us" };
            vec!["--region".into(), region.into()]
        },
    )
    .await;
    let a_http = cluster.node("a").p().http;
    assert!(
        until(LONG, || async {
            let (_, body) = http_get(a_http, "/nodes");
            body.contains("\"b\"")
        })
        .await,
        "node a never listed node b"
    );
    cluster
}

/// Wait until node a of a [`move_pair`] moved session `code` to b, let the
/// players run past the overlap (1.5 s) and two seconds on b alone, then
/// tell them to stop.
async fn moved_to_b_then_stop(
    cluster: &Cluster,
    code: &str,
    stop: &tokio::sync::watch::Sender<bool>,
) {
    let moved = until(LONG, || async {
        cluster
            .node("a")
            .metric("fsp2p_session_moves_total{outcome=\"moved\"}")
            >= 1.0
    })
    .await;
    assert!(moved, "the session never moved");
    assert_eq!(cluster.record_when(code, |r| r.home == "b").await.home, "b");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    stop.send(true).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_pair_moved_to_a_better_region_loses_no_frame() {
    use flightsim_p2p::protocol::{JoinSession, RedirectReason};
    let cluster = move_pair("move").await;
    let a_http = cluster.node("a").p().http;
    let nodes: HashMap<String, std::net::SocketAddr> = ["a", "b"]
        .iter()
        .map(|n| (n.to_string(), cluster.node(n).p().http))
        .collect();

    // The host is 10 ms closer to the US: below the create threshold, so
    // the session is created on a (eu). The joiner is far closer to the US.
    let (htx, mut hrx) = tokio::sync::mpsc::unbounded_channel();
    let create = ClientMsg::CreateSession(CreateSession {
        max_peers: 0,
        password: None,
        region_rtts: rtts(&[("eu", 40), ("us", 30)]),
    });
    let hsink = ws_open(a_http, &[hello5("host", None), create], 0, htx.clone()).await;
    let mut host_token = None;
    let mut code = None;
    while code.is_none() {
        match tokio::time::timeout(LONG, hrx.recv()).await.unwrap() {
            Some((_, WsEvent::Control(ServerMsg::Welcome(w)))) => host_token = Some(w.resume_token),
            Some((_, WsEvent::Control(ServerMsg::SessionCreated(i)))) => code = Some(i.code),
            Some((_, WsEvent::Control(other))) => panic!("host got {other:?}"),
            _ => {}
        }
    }
    let code = code.unwrap();
    let (jtx, mut jrx) = tokio::sync::mpsc::unbounded_channel();
    let join = ClientMsg::JoinSession(JoinSession {
        code: code.clone(),
        password: None,
        region_rtts: rtts(&[("eu", 80), ("us", 5)]),
    });
    let jsink = ws_open(a_http, &[hello5("joiner", None), join], 0, jtx.clone()).await;
    let mut joiner_token = None;
    let mut joined = false;
    while !joined {
        match tokio::time::timeout(LONG, jrx.recv()).await.unwrap() {
            Some((_, WsEvent::Control(ServerMsg::Welcome(w)))) => {
                joiner_token = Some(w.resume_token)
            }
            Some((_, WsEvent::Control(ServerMsg::SessionJoined(_)))) => joined = true,
            Some((_, WsEvent::Control(other))) => panic!("joiner got {other:?}"),
            _ => {}
        }
    }
    assert_eq!(cluster.record_when(&code, |_| true).await.home, "a");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let host = tokio::spawn(roaming_player(
        "host",
        (hsink, hrx),
        htx,
        host_token.unwrap(),
        nodes.clone(),
        stop_rx.clone(),
    ));
    let joiner = tokio::spawn(roaming_player(
        "joiner",
        (jsink, jrx),
        jtx,
        joiner_token.unwrap(),
        nodes.clone(),
        stop_rx,
    ));
    // Relayed at 60 Hz, the pair is moved to b (checked every 5 s).
    moved_to_b_then_stop(&cluster, &code, &stop_tx).await;
    let host = host.await.unwrap();
    let joiner = joiner.await.unwrap();
    for (who, me, other) in [("host", &host, &joiner), ("joiner", &joiner, &host)] {
        println!(
            "{who}: sent {}, got {} distinct from the other ({} twice), redirects {:?}, old closed with {:?}, resumed {:?}",
            me.sent,
            me.got.len(),
            me.dups,
            me.redirects,
            me.first_closed_with,
            me.resumed
        );
        assert_eq!(
            me.redirects,
            vec![(RedirectReason::Placement, "b".to_string())],
            "{who}"
        );
        assert_eq!(me.resumed, vec![true], "{who} did not resume its seat on b");
        // Both nodes relayed to it at once for a while: make-before-break.
        assert!(me.dups > 0, "{who} never got a frame through both nodes");
        assert_eq!(
            me.first_closed_with,
            Some(Some(ErrorCode::Replaced as u16)),
            "{who}'s old connection"
        );
        let missing: Vec<u32> = (0..other.sent).filter(|s| !me.got.contains(s)).collect();
        assert!(
            missing.is_empty(),
            "{who} lost {} of {} frames: {:?}",
            missing.len(),
            other.sent,
            &missing[..missing.len().min(20)]
        );
    }
    // Node b holds it now; node a wrote nothing over b's record.
    assert_eq!(cluster.record(&code).await.unwrap().home, "b");
}

/// What one Rust client saw while its session moved.
#[derive(Debug, Default)]
struct ClientSeen {
    sent: u32,
    got: HashSet<u32>,
    /// Frames the application was handed more than once.
    twice: u32,
    reconnecting: u32,
}

/// A real [`Client`] sending a sequence number at 60 Hz and taking frames
/// until `stop`, then half a second more.
async fn move_client(
    mut c: Client,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> (Client, ClientSeen) {
    let mut seen = ClientSeen::default();
    let sender = c.relay_sender();
    let mut tick = tokio::time::interval(Duration::from_micros(16_667));
    let mut stopping: Option<tokio::time::Instant> = None;
    loop {
        if stopping.is_some_and(|t| tokio::time::Instant::now() >= t) {
            return (c, seen);
        }
        tokio::select! {
            _ = tick.tick() => {
                if *stop.borrow_and_update() {
                    stopping.get_or_insert(tokio::time::Instant::now() + Duration::from_millis(500));
                    continue;
                }
                sender.send(flightsim_p2p::protocol::ALL_PEERS, &seen.sent.to_le_bytes()).await.expect("relay send");
                seen.sent += 1;
            }
            ev = c.next_event() => match ev {
                Some(Event::Relay { payload, .. }) => {
                    let seq = u32::from_le_bytes(payload[..4].try_into().expect("4 bytes"));
                    seen.twice += u32::from(!seen.got.insert(seq));
                }
                Some(Event::Reconnecting { .. }) => seen.reconnecting += 1,
                Some(Event::Closed(e)) => panic!("client closed: {e}"),
                None => panic!("client ended"),
                _ => {}
            },
        }
    }
}

/// The Rust client follows a move by itself (PROTOCOL.md §12 rule 10): a
/// QUIC host and a WebSocket joiner relayed at 60 Hz through node a (eu)
/// move to node b (us), with no frame lost, none handed to the application
/// twice, and no reconnection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_clients_follow_a_move_without_losing_or_repeating_a_frame() {
    use flightsim_p2p::protocol::JoinSession;
    let cluster = move_pair("rmove").await;
    let mut host_cfg = cluster.node("a").config(RelayMode::Datagram);
    host_cfg.measure_regions = false;
    let mut joiner_cfg = host_cfg.clone();
    joiner_cfg.transport = ClientTransport::Websocket;
    // The measurements are given, as in the server's own move test.
    let mut host = Client::connect(&host_cfg, None)
        .await
        .expect("host connects");
    assert_eq!(host.welcome.version, 5, "the client says version 5");
    host.send(&ClientMsg::CreateSession(CreateSession {
        max_peers: 0,
        password: None,
        region_rtts: rtts(&[("eu", 40), ("us", 30)]),
    }))
    .await
    .unwrap();
    let code = loop {
        match tokio::time::timeout(LONG, host.next_event()).await.unwrap() {
            Some(Event::Control(ServerMsg::SessionCreated(i))) => break i.code,
            Some(Event::Control(ServerMsg::Error { code, message })) => {
                panic!("create: {code} {message}")
            }
            Some(_) => {}
            None => panic!("host ended"),
        }
    };
    let mut joiner = Client::connect(&joiner_cfg, None)
        .await
        .expect("joiner connects");
    joiner
        .send(&ClientMsg::JoinSession(JoinSession {
            code: code.clone(),
            password: None,
            region_rtts: rtts(&[("eu", 80), ("us", 5)]),
        }))
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(LONG, joiner.next_event())
            .await
            .unwrap()
        {
            Some(Event::Control(ServerMsg::SessionJoined(_))) => break,
            Some(Event::Control(ServerMsg::Error { code, message })) => {
                panic!("join: {code} {message}")
            }
            Some(_) => {}
            None => panic!("joiner ended"),
        }
    }
    assert_eq!(cluster.record_when(&code, |_| true).await.home, "a");
    let (host_id, joiner_id) = (host.peer_id(), joiner.peer_id());

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let host_task = tokio::spawn(move_client(host, stop_rx.clone()));
    let joiner_task = tokio::spawn(move_client(joiner, stop_rx));
    moved_to_b_then_stop(&cluster, &code, &stop_tx).await;
    let (host, hs) = host_task.await.unwrap();
    let (joiner, js) = joiner_task.await.unwrap();
    for (who, me, other) in [("host", &hs, &js), ("joiner", &js, &hs)] {
        println!(
            "{who}: sent {}, got {} distinct, {} twice, {} reconnecting",
            me.sent,
            me.got.len(),
            me.twice,
            me.reconnecting
        );
        assert_eq!(me.twice, 0, "{who} was handed a frame twice");
        assert_eq!(me.reconnecting, 0, "{who} reconnected instead of moving");
        let missing: Vec<u32> = (0..other.sent).filter(|s| !me.got.contains(s)).collect();
        assert!(
            missing.is_empty(),
            "{who} lost {} of {} frames: {:?}",
            missing.len(),
            other.sent,
            &missing[..missing.len().min(20)]
        );
    }
    // Same seats, now on b; nobody left on a.
    assert_eq!((host.peer_id(), joiner.peer_id()), (host_id, joiner_id));
    assert_eq!(cluster.record(&code).await.unwrap().home, "b");
    let a = cluster.node("a");
    assert!(
        until(LONG, || async {
            a.metric("fsp2p_sessions") == 0.0
                && a.metric("fsp2p_connections{transport=\"quic\"}") == 0.0
                && a.metric("fsp2p_connections{transport=\"websocket\"}") == 0.0
        })
        .await,
        "node a still holds the session or a connection"
    );
}

/// What one raw version-5 player saw while its session went from node to
/// node: each redirect it followed (reason, node), whether each new
/// connection resumed its seat, the sequence numbers it received (and how
/// many came twice, once through each node in an overlap), and how its
/// first connection ended.
#[derive(Debug, Default)]
struct RoamSeen {
    got: BTreeSet<u32>,
    dups: u32,
    sent: u32,
    redirects: Vec<(flightsim_p2p::protocol::RedirectReason, String)>,
    resumed: Vec<bool>,
    first_closed_with: Option<Option<u16>>,
}

/// A raw player at 60 Hz that follows every unasked redirect of its
/// current connection, as PROTOCOL.md §11 asks of a version-5 client:
/// `Placement` make-before-break (resume on the new node, send on both,
/// take from both until the old node closes the old one), `Draining` and
/// `Moved` by leaving the old connection for the new one at once (a
/// resume there, PROTOCOL.md §11). Sends until `stop`, then reads for a
/// moment.
async fn roaming_player(
    name: &'static str,
    mut first_conn: (
        WsSink,
        tokio::sync::mpsc::UnboundedReceiver<(usize, WsEvent)>,
    ),
    tx: tokio::sync::mpsc::UnboundedSender<(usize, WsEvent)>,
    token: Vec<u8>,
    nodes: HashMap<String, std::net::SocketAddr>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> RoamSeen {
    use flightsim_p2p::protocol::{relay_frame, ws_relay, RedirectReason, ALL_PEERS};
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut seen = RoamSeen::default();
    let mut sinks: Vec<Option<WsSink>> = vec![Some(first_conn.0)];
    let rx = &mut first_conn.1;
    let mut tick = tokio::time::interval(Duration::from_micros(16_667));
    let mut stopping: Option<tokio::time::Instant> = None;
    loop {
        if stopping.is_some_and(|t| tokio::time::Instant::now() >= t) {
            return seen;
        }
        tokio::select! {
            _ = tick.tick() => {
                if *stop.borrow() {
                    stopping.get_or_insert(tokio::time::Instant::now() + Duration::from_millis(500));
                    continue;
                }
                let frame = ws_relay(&relay_frame(ALL_PEERS, &seen.sent.to_le_bytes()));
                for s in sinks.iter_mut().flatten() {
                    let _ = s.send(Message::Binary(frame.clone().into())).await;
                }
                seen.sent += 1;
            }
            ev = rx.recv() => {
                let Some((idx, ev)) = ev else { return seen };
                let current = sinks.len() - 1;
                match ev {
                    WsEvent::Relay(seq) => {
                        // A duplicate changes nothing else.
                        seen.dups += u32::from(!seen.got.insert(seq));
                    }
                    // What an old connection still says is ignored.
                    WsEvent::Control(ServerMsg::Redirect(r)) if idx == current => {
                        seen.redirects.push((r.reason, r.node.name.clone()));
                        if r.reason != RedirectReason::Placement {
                            sinks[idx] = None;
                        }
                        let http = nodes[&r.node.name];
                        let next = sinks.len();
                        let sink =
                            ws_open(http, &[hello5(name, Some(token.clone()))], next, tx.clone()).await;
                        sinks.push(Some(sink));
                    }
                    WsEvent::Control(ServerMsg::Welcome(w)) if idx > 0 => {
                        seen.resumed.push(w.resumed);
                    }
                    WsEvent::Closed(code) => {
                        if idx == 0 {
                            seen.first_closed_with = Some(code);
                        }
                        sinks[idx] = None;
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Issue 26: the members' measurements travel with the session in its
/// record, so a session that was handed over can move again. With fixed
/// measurements a session that moved to its best region never has a
/// better one; what makes a second move real is a hand-over that is not
/// by region: a draining node gives its sessions to the least-loaded node,
/// whatever its region. Here eu → us (a move), us drains → asia (the
/// least-loaded node, first by name), asia → eu (a second move, on the
/// measurements that came with the session: nobody joined anew).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measurements_travel_with_a_session_so_it_moves_again_after_a_hand_over() {
    use flightsim_p2p::protocol::{JoinSession, RedirectReason};
    let mut cluster = Cluster::start_with(
        "roam",
        &["eu", "us", "asia"],
        false,
        &[
            "--placement-move-interval-secs",
            "0",
            "--placement-overlap-ms",
            "1500",
        ],
        &|name| vec!["--region".into(), name.into()],
    )
    .await;
    let nodes: HashMap<String, std::net::SocketAddr> = ["eu", "us", "asia"]
        .iter()
        .map(|n| (n.to_string(), cluster.node(n).p().http))
        .collect();
    // Each node must list the others before anything moves.
    for n in ["eu", "us", "asia"] {
        let http = nodes[n];
        assert!(
            until(LONG, || async {
                let (_, body) = http_get(http, "/nodes");
                ["\"eu\"", "\"us\"", "\"asia\""]
                    .iter()
                    .all(|x| body.contains(x))
            })
            .await,
            "node {n} never listed all three"
        );
    }
    let host_rtts = rtts(&[("eu", 40), ("us", 30), ("asia", 200)]);
    let joiner_rtts = rtts(&[("eu", 80), ("us", 5), ("asia", 150)]);
    // Ballast: an idle session on eu (no measurements: it stays there), so
    // eu is more loaded than asia when us drains.
    let (btx, mut brx) = tokio::sync::mpsc::unbounded_channel();
    let ballast_create = ClientMsg::CreateSession(CreateSession {
        max_peers: 0,
        password: None,
        region_rtts: Vec::new(),
    });
    let _ballast = ws_open(
        nodes["eu"],
        &[hello5("ballast", None), ballast_create],
        0,
        btx,
    )
    .await;
    loop {
        match tokio::time::timeout(LONG, brx.recv()).await.unwrap() {
            Some((_, WsEvent::Control(ServerMsg::SessionCreated(i)))) => {
                assert_eq!(cluster.record_when(&i.code, |_| true).await.home, "eu");
                break;
            }
            Some((_, WsEvent::Control(ServerMsg::Welcome(_)))) => {}
            Some((_, WsEvent::Control(other))) => panic!("ballast got {other:?}"),
            _ => panic!("the ballast connection ended"),
        }
    }

    // Created on eu: the host gains only 10 ms in the US, below the
    // create threshold.
    let (htx, mut hrx) = tokio::sync::mpsc::unbounded_channel();
    let create = ClientMsg::CreateSession(CreateSession {
        max_peers: 0,
        password: None,
        region_rtts: host_rtts.clone(),
    });
    let hsink = ws_open(nodes["eu"], &[hello5("host", None), create], 0, htx.clone()).await;
    let (mut host, mut host_token, mut code) = (None, None, None);
    while code.is_none() {
        match tokio::time::timeout(LONG, hrx.recv()).await.unwrap() {
            Some((_, WsEvent::Control(ServerMsg::Welcome(w)))) => {
                host = Some(w.peer_id);
                host_token = Some(w.resume_token)
            }
            Some((_, WsEvent::Control(ServerMsg::SessionCreated(i)))) => code = Some(i.code),
            Some((_, WsEvent::Control(other))) => panic!("host got {other:?}"),
            _ => {}
        }
    }
    let (host, code) = (host.unwrap(), code.unwrap());
    let (jtx, mut jrx) = tokio::sync::mpsc::unbounded_channel();
    let join = ClientMsg::JoinSession(JoinSession {
        code: code.clone(),
        password: None,
        region_rtts: joiner_rtts.clone(),
    });
    let jsink = ws_open(nodes["eu"], &[hello5("joiner", None), join], 0, jtx.clone()).await;
    let (mut joiner, mut joiner_token) = (None, None);
    let mut joined = false;
    while !joined {
        match tokio::time::timeout(LONG, jrx.recv()).await.unwrap() {
            Some((_, WsEvent::Control(ServerMsg::Welcome(w)))) => {
                joiner = Some(w.peer_id);
                joiner_token = Some(w.resume_token)
            }
            Some((_, WsEvent::Control(ServerMsg::SessionJoined(_)))) => joined = true,
            Some((_, WsEvent::Control(other))) => panic!("joiner got {other:?}"),
            _ => {}
        }
    }
    let joiner = joiner.unwrap();
    // The record carries each member's measurements, on whichever node.
    let measured = |rec: &SessionRecord| {
        let of = |p: PeerId| {
            rec.members
                .iter()
                .find(|m| m.id == p)
                .map(|m| m.region_rtts.clone())
        };
        of(host) == Some(host_rtts.clone()) && of(joiner) == Some(joiner_rtts.clone())
    };
    cluster
        .record_when(&code, |r| r.home == "eu" && measured(r))
        .await;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let host_task = tokio::spawn(roaming_player(
        "host",
        (hsink, hrx),
        htx,
        host_token.unwrap(),
        nodes.clone(),
        stop_rx.clone(),
    ));
    let joiner_task = tokio::spawn(roaming_player(
        "joiner",
        (jsink, jrx),
        jtx,
        joiner_token.unwrap(),
        nodes.clone(),
        stop_rx,
    ));
    let moved_from = |c: &Cluster, n: &str| {
        c.node(n)
            .metric("fsp2p_session_moves_total{outcome=\"moved\"}")
    };
    // Move 1, eu → us: the worst member's 80 ms becomes 30 ms.
    assert!(
        until(LONG, || async { moved_from(&cluster, "eu") >= 1.0 }).await,
        "the session never left eu"
    );
    cluster
        .record_when(&code, |r| r.home == "us" && measured(r))
        .await;
    // Past the overlap: only us holds it, and both players resumed there.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(moved_from(&cluster, "us"), 0.0, "the US is its best region");

    // us drains: the session goes to the least-loaded other node, asia
    // (eu holds the ballast session), the worst region for both players.
    // us writes its record first: the measurements it restored on arrival
    // go with it. (asia may move it on before us has even exited: the
    // players' redirects below show the way it went.)
    cluster.node_mut("us").sigterm().await;

    // Move 2, asia → eu (us is gone: eu's 80 ms beats asia's 200 ms).
    assert!(
        until(LONG, || async { moved_from(&cluster, "asia") >= 1.0 }).await,
        "the session never left asia: its measurements did not come with it"
    );
    let rec = cluster
        .record_when(&code, |r| r.home == "eu" && measured(r))
        .await;
    assert!(rec.epoch >= 3, "three hand-overs, epoch {}", rec.epoch);
    // Past the overlap, and a second on eu only.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    stop_tx.send(true).unwrap();
    let host_seen = host_task.await.unwrap();
    let joiner_seen = joiner_task.await.unwrap();
    for (who, me, other) in [
        ("host", &host_seen, &joiner_seen),
        ("joiner", &joiner_seen, &host_seen),
    ] {
        println!(
            "{who}: sent {}, got {} distinct from the other, redirects {:?}, resumed {:?}",
            me.sent,
            me.got.len(),
            me.redirects,
            me.resumed
        );
        assert_eq!(
            me.redirects,
            vec![
                (RedirectReason::Placement, "us".to_string()),
                (RedirectReason::Draining, "asia".to_string()),
                (RedirectReason::Placement, "eu".to_string()),
            ],
            "{who}"
        );
        assert_eq!(me.resumed, vec![true; 3], "{who} lost its seat");
        // The pair still relays through eu at the end: the last second's
        // frames (60 of them, a few may be in flight) arrived.
        let last: Vec<u32> =
            (other.sent.saturating_sub(90)..other.sent.saturating_sub(30)).collect();
        assert!(
            last.iter().all(|s| me.got.contains(s)),
            "{who} misses frames of the last second through eu"
        );
    }
    assert_eq!(cluster.record(&code).await.unwrap().home, "eu");
}
