//! The cluster directory (`src/directory.rs`) against a REAL redis-server
//! (Debian package `redis-server`), one per test, on a free loopback port.
//!
//! 1. Heartbeats list a node; it disappears once its TTL passes with no
//!    heartbeat, and its name is pruned; `leave` removes it at once.
//! 2. A join code is reserved by exactly one node, also under a race.
//! 3. Session records round-trip; the fencing rule refuses a node that
//!    lost its session (`Lost` with the current owner).
//! 4. `move_home`: of 8 concurrent movers exactly one wins.
//! 5. Token index: lookup by token hash; a member who left is not found.
//! 6. Only the owner deletes a session.
//! 7. Redis down (at startup or later): calls return `Unavailable` within
//!    the timeout, never panic or hang; once Redis is back the same
//!    `Directory` works again. Bad data is told apart from an outage.

mod common;

use std::time::{Duration, Instant};

use common::redis::RedisProcess;
use flightsim_p2p::cluster::{
    token_hash, ClusterConfig, MemberRecord, NodeInfo, PutOutcome, SessionRecord,
};
use flightsim_p2p::directory::{Directory, DirectoryError, DEFAULT_TIMEOUT, SESSION_TTL};
use flightsim_p2p::protocol::{ClientKind, NodeAddr, RelayMode};

/// Generous bound for things that take one TTL or one reconnect.
const PATIENCE: Duration = Duration::from_secs(10);

fn addr(name: &str) -> NodeAddr {
    NodeAddr {
        name: name.into(),
        quic: format!("{name}.test:4433"),
        http: format!("http://{name}.test:8080"),
        cert_sha256: Some(vec![7; 32]),
    }
}

fn config(redis: &RedisProcess, name: &str) -> ClusterConfig {
    let mut cfg = ClusterConfig::new(redis.url(), addr(name));
    cfg.key_prefix = "test:".into();
    cfg.node_ttl = Duration::from_millis(300);
    cfg
}

async fn dir(redis: &RedisProcess, name: &str) -> Directory {
    Directory::connect(&config(redis, name)).await.unwrap()
}

fn info(name: &str, sessions: u32) -> NodeInfo {
    NodeInfo {
        addr: addr(name),
        sessions,
        connections: 2 * sessions,
        draining: false,
        at_unix_ms: 1_700_000_000_000,
        region: None,
    }
}

fn member(id: u32, token: &[u8]) -> MemberRecord {
    MemberRecord {
        id,
        name: format!("pilot {id}"),
        client: ClientKind::Rust,
        relay_mode: RelayMode::Datagram,
        token_sha256: token_hash(token),
        region_rtts: Vec::new(),
    }
}

fn record(code: &str, home: &str, epoch: u64, tokens: &[&[u8]]) -> SessionRecord {
    SessionRecord {
        code: code.into(),
        home: home.into(),
        epoch,
        host: 1,
        max_peers: 8,
        password_sha256: Some("ab".repeat(32)),
        members: tokens
            .iter()
            .enumerate()
            .map(|(i, t)| member(i as u32 + 1, t))
            .collect(),
    }
}

/// A plain connection for looking at keys behind the directory's back.
async fn raw(redis: &RedisProcess) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn names(d: &Directory) -> Vec<String> {
    d.nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.addr.name)
        .collect()
}

#[tokio::test]
async fn heartbeats_list_a_node_until_its_ttl_passes() {
    let redis = RedisProcess::start();
    let a = dir(&redis, "a").await;
    let b = dir(&redis, "b").await;
    assert!(!a.is_up(), "no call yet");
    a.heartbeat(&info("a", 3)).await.unwrap();
    b.heartbeat(&info("b", 1)).await.unwrap();
    assert!(a.is_up());
    assert_eq!(names(&a).await, ["a", "b"]);
    assert_eq!(b.node("a").await.unwrap(), Some(info("a", 3)));
    assert_eq!(b.node("nobody").await.unwrap(), None);

    // a stops announcing itself; b goes on. a is gone after its TTL.
    let start = Instant::now();
    loop {
        b.heartbeat(&info("b", 1)).await.unwrap();
        if names(&b).await == ["b"] {
            break;
        }
        assert!(start.elapsed() < PATIENCE, "a still listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "a vanished before its TTL: {:?}",
        start.elapsed()
    );
    assert_eq!(b.node("a").await.unwrap(), None);
    // Its name was pruned from the set too.
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg("test:nodes")
        .query_async(&mut raw(&redis).await)
        .await
        .unwrap();
    assert_eq!(members, ["b"]);

    // A drained node leaves at once.
    b.leave("b").await.unwrap();
    assert!(names(&a).await.is_empty());
    assert_eq!(a.node("b").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_code_is_reserved_by_exactly_one_node() {
    let redis = RedisProcess::start();
    let a = dir(&redis, "a").await;
    let b = dir(&redis, "b").await;
    assert!(a.reserve_code("ABC123", "a").await.unwrap());
    assert!(!b.reserve_code("ABC123", "b").await.unwrap());
    assert!(!a.reserve_code("ABC123", "a").await.unwrap());

    // A code whose session exists is taken too, even without its reservation key.
    a.put_session(&record("SESS01", "a", 0, &[b"t"]))
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg("test:code:SESS01")
        .query_async(&mut raw(&redis).await)
        .await
        .unwrap();
    assert!(!b.reserve_code("SESS01", "b").await.unwrap());

    // Eight reservers on four connections race for one code: one wins.
    let mut dirs = Vec::new();
    for i in 0..4 {
        dirs.push(dir(&redis, &format!("n{i}")).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let d = dirs[i % 4].clone();
        tasks.spawn(async move { d.reserve_code("RACE42", &format!("n{i}")).await });
    }
    let mut won = 0;
    while let Some(r) = tasks.join_next().await {
        won += r.unwrap().unwrap() as u32;
    }
    assert_eq!(won, 1);

    // A reservation its node gives up (no session was made) frees the code.
    b.delete_session("ABC123", "b", 0).await.unwrap();
    assert!(
        !b.reserve_code("ABC123", "b").await.unwrap(),
        "b never held it"
    );
    a.delete_session("ABC123", "a", 0).await.unwrap();
    assert!(b.reserve_code("ABC123", "b").await.unwrap());
}

#[tokio::test]
async fn session_records_round_trip_and_a_node_that_lost_one_is_fenced() {
    let redis = RedisProcess::start();
    let a = dir(&redis, "a").await;
    let b = dir(&redis, "b").await;
    assert_eq!(a.session("NOPE00").await.unwrap(), None);

    let rec = record("FENCE1", "a", 0, &[b"t1", b"t2"]);
    assert_eq!(a.put_session(&rec).await.unwrap(), PutOutcome::Written);
    assert_eq!(b.session("FENCE1").await.unwrap(), Some(rec.clone()));
    // The home rewrites its own record (a member joined).
    let rec = record("FENCE1", "a", 0, &[b"t1", b"t2", b"t3"]);
    assert_eq!(a.put_session(&rec).await.unwrap(), PutOutcome::Written);

    // b takes the session over (a is presumed dead) ...
    let taken = b.move_home("FENCE1", "a", 0, "b").await.unwrap().unwrap();
    assert_eq!((taken.home.as_str(), taken.epoch), ("b", 1));
    assert_eq!(taken.members, rec.members);
    // ... then a, still alive, writes its stale view: refused, told who owns it.
    let stale = record("FENCE1", "a", 0, &[b"t1"]);
    let lost = PutOutcome::Lost {
        home: "b".into(),
        epoch: 1,
    };
    assert_eq!(a.put_session(&stale).await.unwrap(), lost);
    let mut newer = stale.clone();
    newer.epoch = 7;
    assert_eq!(a.put_session(&newer).await.unwrap(), lost);
    assert_eq!(a.session("FENCE1").await.unwrap(), Some(taken.clone()));
    // The new home writes at its epoch.
    let mut next = taken.clone();
    next.members.pop();
    assert_eq!(b.put_session(&next).await.unwrap(), PutOutcome::Written);
    assert_eq!(a.session("FENCE1").await.unwrap(), Some(next));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_eight_concurrent_movers_exactly_one_wins() {
    let redis = RedisProcess::start();
    let a = dir(&redis, "a").await;
    a.put_session(&record("MOVE01", "a", 4, &[b"t1"]))
        .await
        .unwrap();
    // Each mover on its own connection, so the race reaches Redis for real.
    let mut movers = Vec::new();
    for i in 0..8 {
        movers.push(dir(&redis, &format!("n{i}")).await);
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(8));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, d) in movers.into_iter().enumerate() {
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            let to = format!("n{i}");
            (to.clone(), d.move_home("MOVE01", "a", 4, &to).await)
        });
    }
    let mut winners = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (to, moved) = r.unwrap();
        if let Some(rec) = moved.unwrap() {
            assert_eq!((rec.home.as_str(), rec.epoch), (to.as_str(), 5));
            winners.push(to);
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let now = a.session("MOVE01").await.unwrap().unwrap();
    assert_eq!((now.home.as_str(), now.epoch), (winners[0].as_str(), 5));
    // A move from a stale home or epoch does nothing.
    assert_eq!(a.move_home("MOVE01", "a", 4, "a").await.unwrap(), None);
    assert_eq!(a.move_home("NOPE00", "a", 0, "a").await.unwrap(), None);
}

#[tokio::test]
async fn a_token_finds_its_session_until_its_member_leaves() {
    let redis = RedisProcess::start();
    let a = dir(&redis, "a").await;
    let b = dir(&redis, "b").await;
    let rec = record("TOKEN1", "a", 0, &[b"alice", b"bob"]);
    a.put_session(&rec).await.unwrap();
    assert_eq!(
        b.session_by_token(&token_hash(b"bob")).await.unwrap(),
        Some(rec.clone())
    );
    assert_eq!(
        b.session_by_token(&token_hash(b"nobody")).await.unwrap(),
        None
    );

    // bob leaves: his entry goes, and the lookup fails.
    let rec = record("TOKEN1", "a", 0, &[b"alice"]);
    a.put_session(&rec).await.unwrap();
    assert_eq!(b.session_by_token(&token_hash(b"bob")).await.unwrap(), None);
    let mut conn = raw(&redis).await;
    let left: Option<String> = redis::cmd("GET")
        .arg(format!("test:token:{}", token_hash(b"bob")))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, None);
    // A stale entry that survived anyway is not believed.
    let _: () = redis::cmd("SET")
        .arg(format!("test:token:{}", token_hash(b"bob")))
        .arg("TOKEN1")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(b.session_by_token(&token_hash(b"bob")).await.unwrap(), None);
    assert_eq!(
        b.session_by_token(&token_hash(b"alice")).await.unwrap(),
        Some(rec.clone())
    );
    // Moving the session keeps its tokens pointing at it.
    let moved = b.move_home("TOKEN1", "a", 0, "b").await.unwrap().unwrap();
    assert_eq!(
        a.session_by_token(&token_hash(b"alice")).await.unwrap(),
        Some(moved)
    );
}

#[tokio::test]
async fn only_the_owner_deletes_a_session() {
    let redis = RedisProcess::start();
    let a = dir(&redis, "a").await;
    let b = dir(&redis, "b").await;
    assert!(a.reserve_code("DEL001", "a").await.unwrap());
    let rec = record("DEL001", "a", 0, &[b"alice"]);
    a.put_session(&rec).await.unwrap();

    b.delete_session("DEL001", "b", 0).await.unwrap();
    assert_eq!(a.session("DEL001").await.unwrap(), Some(rec.clone()));

    let moved = b.move_home("DEL001", "a", 0, "b").await.unwrap().unwrap();
    // a lost it: its delete does nothing.
    a.delete_session("DEL001", "a", 0).await.unwrap();
    assert_eq!(a.session("DEL001").await.unwrap(), Some(moved));
    // The owner's delete removes record, reservation and token entries.
    b.delete_session("DEL001", "b", 1).await.unwrap();
    assert_eq!(a.session("DEL001").await.unwrap(), None);
    assert_eq!(
        a.session_by_token(&token_hash(b"alice")).await.unwrap(),
        None
    );
    let mut conn = raw(&redis).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("test:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.is_empty(), "left behind: {keys:?}");
    assert!(a.reserve_code("DEL001", "a").await.unwrap());
}

#[tokio::test]
async fn session_keys_expire_unless_touched() {
    let redis = RedisProcess::start();
    let a = dir(&redis, "a").await;
    a.put_session(&record("TOUCH1", "a", 0, &[b"alice"]))
        .await
        .unwrap();
    let keys = [
        "test:session:TOUCH1".to_string(),
        "test:code:TOUCH1".to_string(),
        format!("test:token:{}", token_hash(b"alice")),
    ];
    let mut conn = raw(&redis).await;
    let ttl = SESSION_TTL.as_millis() as i64;
    for key in &keys {
        let pttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(pttl > ttl - 60_000 && pttl <= ttl, "{key}: {pttl}");
        let _: () = redis::cmd("PEXPIRE")
            .arg(key)
            .arg(5_000)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    a.touch_sessions(&["TOUCH1".into(), "NOPE00".into()])
        .await
        .unwrap();
    a.touch_sessions(&[]).await.unwrap();
    for key in &keys {
        let pttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(pttl > ttl - 60_000, "{key} not renewed: {pttl}");
    }
}

/// Every call, with Redis down, returns `Unavailable` within the timeout.
/// Returns how long the eleven calls took together.
async fn all_unavailable(d: &Directory) -> Duration {
    let all = Instant::now();
    let limit = DEFAULT_TIMEOUT + Duration::from_millis(300);
    let rec = record("DOWN01", "a", 0, &[b"t"]);
    macro_rules! down {
        ($call:expr) => {{
            let t = Instant::now();
            let r = $call.await;
            assert!(
                t.elapsed() < limit,
                "{} took {:?}",
                stringify!($call),
                t.elapsed()
            );
            match r {
                Err(e) => assert!(e.is_unavailable(), "{}: {e}", stringify!($call)),
                Ok(_) => panic!("{} succeeded with Redis down", stringify!($call)),
            }
            assert!(!d.is_up());
        }};
    }
    down!(d.heartbeat(&info("a", 0)));
    down!(d.nodes());
    down!(d.node("a"));
    down!(d.reserve_code("DOWN01", "a"));
    down!(d.put_session(&rec));
    down!(d.session("DOWN01"));
    down!(d.session_by_token(&token_hash(b"t")));
    down!(d.move_home("DOWN01", "a", 0, "b"));
    down!(d.touch_sessions(&["DOWN01".into()]));
    down!(d.delete_session("DOWN01", "a", 0));
    down!(d.leave("a"));
    all.elapsed()
}

/// Polls until a heartbeat gets through (Redis is back).
async fn until_back(d: &Directory) {
    let start = Instant::now();
    while d.heartbeat(&info("a", 0)).await.is_err() {
        assert!(start.elapsed() < PATIENCE, "directory never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(d.is_up());
}

#[tokio::test]
async fn an_outage_makes_calls_unavailable_and_the_same_directory_recovers() {
    let mut redis = RedisProcess::start();
    let a = dir(&redis, "a").await;
    a.heartbeat(&info("a", 0)).await.unwrap();
    a.put_session(&record("OUT001", "a", 0, &[b"t"]))
        .await
        .unwrap();

    redis.stop();
    // Refused connections and the backoff make calls fail fast, not after
    // a timeout each.
    let took = all_unavailable(&a).await;
    assert!(took < DEFAULT_TIMEOUT, "eleven calls took {took:?}");
    // Still unavailable a while later (backoff running), still bounded.
    tokio::time::sleep(Duration::from_millis(700)).await;
    all_unavailable(&a).await;

    redis.restart();
    until_back(&a).await;
    // Redis kept nothing; the directory works as before.
    assert_eq!(names(&a).await, ["a"]);
    assert_eq!(a.session("OUT001").await.unwrap(), None);
    let rec = record("OUT001", "a", 0, &[b"t"]);
    assert_eq!(a.put_session(&rec).await.unwrap(), PutOutcome::Written);
    assert_eq!(
        a.session_by_token(&token_hash(b"t")).await.unwrap(),
        Some(rec)
    );
}

#[tokio::test]
async fn a_redis_that_stops_answering_costs_a_caller_one_timeout_at_most() {
    let redis = RedisProcess::start();
    let timeout = Duration::from_millis(200);
    let a = dir(&redis, "a").await.with_timeout(timeout);
    a.heartbeat(&info("a", 0)).await.unwrap();

    redis.freeze();
    // Connected, but nothing answers: the call gives up at its timeout.
    let t = Instant::now();
    let e = a.session("HUNG01").await.unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    assert!(!a.is_up());
    assert!(
        t.elapsed() >= timeout && t.elapsed() < timeout * 3,
        "{:?}",
        t.elapsed()
    );
    // Later calls (backoff, then more timeouts, then a fresh connection
    // that cannot finish either) all stay bounded.
    for _ in 0..6 {
        let t = Instant::now();
        let e = a.nodes().await.unwrap_err();
        assert!(e.is_unavailable(), "{e}");
        assert!(t.elapsed() < timeout * 3, "{:?}", t.elapsed());
        tokio::time::sleep(Duration::from_millis(60)).await;
    }

    redis.thaw();
    until_back(&a).await;
    assert_eq!(names(&a).await, ["a"]);
}

#[tokio::test]
async fn a_node_starts_while_redis_is_down() {
    let mut redis = RedisProcess::start();
    redis.stop();
    let a = dir(&redis, "a").await;
    all_unavailable(&a).await;
    redis.restart();
    until_back(&a).await;
    assert!(a.reserve_code("LATE01", "a").await.unwrap());
}

#[tokio::test]
async fn bad_data_is_not_an_outage() {
    let redis = RedisProcess::start();
    let a = dir(&redis, "a").await;
    let mut conn = raw(&redis).await;
    let _: () = redis::cmd("SET")
        .arg("test:session:BAD001")
        .arg("{not json")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("test:node:zz")
        .arg("[]")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SADD")
        .arg("test:nodes")
        .arg("zz")
        .query_async(&mut conn)
        .await
        .unwrap();

    let e = a.session("BAD001").await.unwrap_err();
    assert!(matches!(e, DirectoryError::BadData { .. }), "{e}");
    assert!(a.is_up(), "Redis answered");
    // A write never overwrites what it cannot read (no fencing bypass).
    let e = a
        .put_session(&record("BAD001", "a", 0, &[]))
        .await
        .unwrap_err();
    assert!(matches!(e, DirectoryError::BadData { .. }), "{e}");
    let e = a.node("zz").await.unwrap_err();
    assert!(matches!(e, DirectoryError::BadData { .. }), "{e}");
    // An unreadable node record (another version's) is left out of the list.
    a.heartbeat(&info("a", 0)).await.unwrap();
    assert_eq!(names(&a).await, ["a"]);
    // A key of the wrong type is Redis refusing, not an outage.
    let _: () = redis::cmd("DEL")
        .arg("test:nodes")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("test:nodes")
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    let e = a.nodes().await.unwrap_err();
    assert!(matches!(e, DirectoryError::Redis { .. }), "{e}");
}

/// `rediss://` goes through rustls with ring (the crate's only crypto
/// provider: a second one would make rustls panic). The system trust
/// store is read from `SSL_CERT_FILE`, which is process-wide, so the
/// trusting half runs in a child process of this test binary.
#[tokio::test]
async fn rediss_urls_work_through_rustls_with_ring() {
    let redis = RedisProcess::start_tls();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "rediss_child", "--ignored", "--nocapture"])
        .env("SSL_CERT_FILE", redis.ca_file())
        .env("FSP2P_TEST_REDISS_URL", redis.tls_url())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child run failed:\n{stdout}\n{stderr}"
    );
    // Here the test CA is not trusted: the handshake fails, as an error.
    let mut cfg = config(&redis, "a");
    cfg.redis_url = redis.tls_url();
    let d = Directory::connect(&cfg).await.unwrap();
    let e = d.heartbeat(&info("a", 0)).await.unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    assert!(e.to_string().contains("certificate"), "{e}");
}

#[tokio::test]
#[ignore = "run by rediss_urls_work_through_rustls_with_ring, with the test CA trusted"]
async fn rediss_child() {
    let url = std::env::var("FSP2P_TEST_REDISS_URL").unwrap();
    let mut cfg = ClusterConfig::new(url, addr("a"));
    cfg.key_prefix = "test:".into();
    let d = Directory::connect(&cfg).await.unwrap();
    d.heartbeat(&info("a", 0)).await.unwrap();
    assert_eq!(names(&d).await, ["a"]);
    assert!(d.reserve_code("TLS001", "a").await.unwrap());
}

#[tokio::test]
async fn only_a_malformed_url_fails_connect() {
    let mut cfg = ClusterConfig::new("redis://:secret@", addr("a"));
    cfg.redis_url = "http://:secret@example.com/".into();
    let e = Directory::connect(&cfg).await.unwrap_err();
    assert!(matches!(e, DirectoryError::BadUrl { .. }), "{e}");
    assert!(!e.to_string().contains("secret"), "{e}");
    // TLS URLs are understood (rustls); nothing is contacted yet.
    cfg.redis_url = "rediss://:secret@127.0.0.1:1/0".into();
    Directory::connect(&cfg).await.unwrap();
}
