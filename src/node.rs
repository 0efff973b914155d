//! This server as a node of a cluster: the tasks that carry the core's
//! cluster work to the directory (Redis) and bring the answers back.
//!
//! Why a module of its own: the core decides (which request needs the
//! directory, what a record holds, what to do with an answer) and
//! [`crate::directory`] talks to Redis; this is the thin shell between
//! them. It runs three things:
//! - *lookups*: each [`Lookup`] the core emits is resolved in its own task
//!   (find the record, decide with [`crate::cluster::route`], take the
//!   session over when its home is gone) and answered with
//!   [`crate::session::Core::answer`];
//! - *the writer*: records the core wants written ([`Persist`]), coalesced
//!   by code and retried with backoff while Redis is away, so a Redis outage
//!   delays writes but never blocks a player;
//! - *the heartbeat*: announces the node and its load every
//!   `heartbeat`, and counts the live nodes; with access control it also
//!   reads the stored revocations (the backstop for a revocation this node
//!   did not hear live) and shares per-player usage for the quotas;
//! - *revocations* (access control): publishes the revocations this
//!   node's admin endpoint took, and applies those other nodes publish,
//!   heard on a Redis pub/sub subscription of their own.
//!
//! At shutdown, [`drain`] hands every session to the least-loaded other
//! node and sends its players there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::cluster::PutOutcome;
use crate::cluster::{self, ClusterConfig, NodeInfo, Route, Settle};
use crate::directory::{redacted, Directory, DirectoryError, REVOCATION_TTL};
use crate::hub::{now, ClusterLinks, PublishRevocation, Shared};
use crate::metrics::{DirectoryOp, MoveOutcome};
use crate::protocol::{NodeAddr, RedirectReason};
use crate::session::{Answer, Lookup, Persist};

/// What the node's tasks share: whether it drains, and whether it
/// believes the directory's silence yet ([`Settle`], the rule as plain data).
pub(crate) struct NodeLink {
    /// Set once the node drains: the heartbeat says so, no session comes here.
    draining: AtomicBool,
    /// Fed by the heartbeat and the lookups; asked by the lookups.
    settle: Mutex<Settle>,
}

impl NodeLink {
    fn settle(&self) -> MutexGuard<'_, Settle> {
        self.settle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running node: what [`crate::server::Server`] keeps to drain it.
pub(crate) struct Node {
    dir: Arc<Directory>,
    cfg: ClusterConfig,
    link: Arc<NodeLink>,
}

/// The cluster's heartbeat and node TTL, as a lookup needs them to judge
/// whether a session's home missed its beat ([`cluster::beat_overdue`]).
#[derive(Clone, Debug)]
struct Timing {
    heartbeat: Duration,
    node_ttl: Duration,
}

/// How many times a lookup reads the record again after losing a take-over race.
const LOOKUP_ROUNDS: usize = 3;
/// The longest a client may spend trying to reach its dead node before it
/// tries another: the Rust client's default `connect_timeout` (10 s; 3 s
/// once it has other nodes to try, and it skips a node that went silent).
const DEAD_NODE_ATTEMPT: Duration = Duration::from_secs(10);
/// How often the node refreshes its sessions' TTL in the directory.
const TOUCH_EVERY: Duration = Duration::from_secs(300);

/// Join the cluster: connect to the directory (a Redis that is down is
/// retried, the node serves meanwhile), put the core in cluster mode, start
/// the node's tasks.
pub(crate) async fn start(
    shared: Arc<Shared>,
    cfg: ClusterConfig,
    stop: watch::Receiver<bool>,
    tasks: &mut tokio::task::JoinSet<()>,
) -> anyhow::Result<Node> {
    let dir = Arc::new(
        Directory::connect(&cfg)
            .await
            .map_err(|e| anyhow::anyhow!("cluster directory {}: {e}", redacted(&cfg.redis_url)))?,
    );
    let (lookups, lookups_rx) = mpsc::unbounded_channel();
    let (writes, writes_rx) = mpsc::unbounded_channel();
    let (revocations, revocations_rx) = mpsc::unbounded_channel();
    let link = Arc::new(NodeLink {
        draining: AtomicBool::new(false),
        settle: Mutex::new(Settle::new()),
    });
    shared.set_cluster(ClusterLinks {
        lookups,
        writes,
        revocations,
    });
    {
        let mut st = shared.lock();
        st.core.enable_cluster(cfg.node.name.clone());
        // A player whose node died notices after its idle timeout, then
        // spends one connection attempt on the dead node before the next.
        let idle = Duration::from_millis(shared.tuning.idle_timeout_ms);
        st.core.set_takeover_slack(idle + DEAD_NODE_ATTEMPT);
        if let (Some(region), true) = (&cfg.region, cfg.placement) {
            st.core.enable_placement(crate::session::Placement {
                region: region.clone(),
                min_gain_ms: cfg.placement_min_gain_ms,
            });
            if cfg.placement_move_gain_ms > 0 {
                st.core.enable_moves(
                    crate::session::MoveRule {
                        min_gain_ms: cfg.placement_move_gain_ms,
                        interval: cfg.placement_move_interval,
                        ..Default::default()
                    },
                    cfg.placement_overlap,
                );
            }
        }
    }
    tasks.spawn(run_lookups(
        shared.clone(),
        dir.clone(),
        cfg.node.name.clone(),
        Timing {
            heartbeat: cfg.heartbeat,
            node_ttl: cfg.node_ttl,
        },
        link.clone(),
        lookups_rx,
        stop.clone(),
    ));
    tasks.spawn(run_writes(
        shared.clone(),
        dir.clone(),
        writes_rx,
        stop.clone(),
    ));
    tasks.spawn(run_revocations(
        shared.clone(),
        dir.clone(),
        revocations_rx,
        stop.clone(),
    ));
    tasks.spawn(run_moves(
        shared.clone(),
        dir.clone(),
        cfg.node.name.clone(),
        link.clone(),
        stop.clone(),
    ));
    tasks.spawn(heartbeat(
        shared,
        dir.clone(),
        cfg.clone(),
        link.clone(),
        stop,
    ));
    info!(node = %cfg.node.name, redis = %redacted(&cfg.redis_url), "cluster mode");
    Ok(Node { dir, cfg, link })
}

/// Each lookup in its own task, answered to the core when resolved.
async fn run_lookups(
    shared: Arc<Shared>,
    dir: Arc<Directory>,
    me: String,
    timing: Timing,
    link: Arc<NodeLink>,
    mut rx: mpsc::UnboundedReceiver<Lookup>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let lookup = tokio::select! {
            l = rx.recv() => match l {
                Some(l) => l,
                None => return,
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let (shared, dir, me, link) = (shared.clone(), dir.clone(), me.clone(), link.clone());
        let timing = timing.clone();
        tokio::spawn(async move {
            let conn = lookup.conn();
            let draining = link.draining.load(Ordering::Relaxed);
            let mut answer = resolve(&shared, &dir, &me, draining, &timing, lookup).await;
            match answer {
                Answer::Unavailable => link.settle().trouble(),
                Answer::NotFound | Answer::Reserved if !link.settle().settled() => {
                    // Not believed yet (see Settle). A code
                    // reserved meanwhile is released by its TTL.
                    answer = Answer::Unavailable;
                }
                _ => {}
            }
            if let Answer::Elsewhere(_) = &answer {
                shared.metrics.redirected(RedirectReason::Session);
            }
            let mut st = shared.lock();
            st.core.answer(now(), conn, answer);
            shared.flush(&mut st);
        });
    }
}

/// The record writer: writes owed, latest per code (a session that changes
/// ten times while Redis is away is written once when it is back), retried
/// with backoff while Redis is unavailable.
async fn run_writes(
    shared: Arc<Shared>,
    dir: Arc<Directory>,
    mut rx: mpsc::UnboundedReceiver<Persist>,
    mut stop: watch::Receiver<bool>,
) {
    let mut owed: HashMap<String, Persist> = HashMap::new();
    let mut backoff = Duration::from_millis(100);
    loop {
        if owed.is_empty() {
            tokio::select! {
                p = rx.recv() => match p {
                    Some(p) => owe(&mut owed, p),
                    None => return,
                },
                _ = stop.wait_for(|s| *s) => return,
            }
        }
        while let Ok(p) = rx.try_recv() {
            owe(&mut owed, p);
        }
        let codes: Vec<String> = owed.keys().cloned().collect();
        let mut away = false;
        for code in codes {
            let Some(p) = owed.remove(&code) else {
                continue;
            };
            match write(&shared, &dir, &p).await {
                Ok(()) => {}
                Err(e) if e.is_unavailable() => {
                    shared.metrics.directory_error(DirectoryOp::Persist);
                    debug!(%code, "directory away, the write waits: {e}");
                    // A newer write for the code may have come meanwhile.
                    owed.entry(code).or_insert(p);
                    away = true;
                    break;
                }
                Err(e) => {
                    // Not an outage (a record this version cannot read, a
                    // key of the wrong type, a write contended too long):
                    // retrying would not help and would hold up the others.
                    // The session's next change writes it again.
                    shared.metrics.directory_error(DirectoryOp::Persist);
                    warn!(%code, "directory write failed: {e}");
                }
            }
        }
        if away {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        } else {
            backoff = Duration::from_millis(100);
        }
    }
}

/// Add a write to the owed set, replacing an older one for the same code.
fn owe(owed: &mut HashMap<String, Persist>, p: Persist) {
    let code = match &p {
        Persist::Put(rec) => rec.code.clone(),
        Persist::Delete { code, .. } => code.clone(),
    };
    owed.insert(code, p);
}

/// Write one record; a refused write means another node owns the session
/// now: its players here are sent there.
async fn write(shared: &Arc<Shared>, dir: &Directory, p: &Persist) -> Result<(), DirectoryError> {
    match p {
        Persist::Put(rec) => match dir.put_session(rec).await? {
            PutOutcome::Written => Ok(()),
            PutOutcome::Lost { home, epoch } => {
                let Some(node) = dir.node(&home).await? else {
                    // Its new home is gone too: take the session back, since
                    // its players are here.
                    if let Some(taken) = dir.move_home(&rec.code, &home, epoch, &rec.home).await? {
                        info!(code = %rec.code, from = %home, "took back a session whose new node is gone");
                        let mut st = shared.lock();
                        st.core.reclaimed(now(), taken);
                        shared.flush(&mut st);
                    }
                    return Ok(());
                };
                warn!(code = %rec.code, %home, "session moved to another node; sending its players there");
                send_players(shared, &rec.code, &node.addr, RedirectReason::Moved);
                Ok(())
            }
        },
        Persist::Delete { code, epoch } => dir.delete_session(code, dir.node_name(), *epoch).await,
    }
}

/// Answer one lookup from the directory.
async fn resolve(
    shared: &Arc<Shared>,
    dir: &Directory,
    me: &str,
    draining: bool,
    timing: &Timing,
    lookup: Lookup,
) -> Answer {
    let op = if matches!(lookup, Lookup::Reserve { .. }) {
        DirectoryOp::Reserve
    } else {
        DirectoryOp::Lookup
    };
    match resolve_inner(dir, me, draining, timing, lookup).await {
        Ok(answer) => answer,
        Err(e) => {
            shared.metrics.directory_error(op);
            debug!("directory lookup failed: {e}");
            Answer::Unavailable
        }
    }
}

async fn resolve_inner(
    dir: &Directory,
    me: &str,
    draining: bool,
    timing: &Timing,
    lookup: Lookup,
) -> Result<Answer, DirectoryError> {
    let token = match lookup {
        Lookup::Reserve { code, .. } => {
            return Ok(if dir.reserve_code(&code, me).await? {
                Answer::Reserved
            } else {
                Answer::Taken
            });
        }
        Lookup::Token { token_sha256, .. } => Some(token_sha256),
        Lookup::Code { code, .. } => {
            let answer = find(dir, me, draining, timing, |d| Box::pin(d.session(&code))).await?;
            if answer != Answer::NotFound {
                return Ok(answer);
            }
            // No record: perhaps one being written for a session just created.
            let owner = dir.code_owner(&code).await?;
            let owner_node = match owner.as_deref() {
                Some(o) if o != me => dir.node(o).await?,
                _ => None,
            };
            return Ok(
                match cluster::route_reserved(me, owner.as_deref(), owner_node.as_ref()) {
                    Some(addr) => Answer::Elsewhere(addr),
                    None => Answer::NotFound,
                },
            );
        }
    };
    let token = token.unwrap_or_default();
    find(dir, me, draining, timing, |d| {
        Box::pin(d.session_by_token(&token))
    })
    .await
}

type Read<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<Option<cluster::SessionRecord>, DirectoryError>>
            + Send
            + 'a,
    >,
>;

/// Read a record (by code or token), route it, take it over if its home is gone.
async fn find<'a>(
    dir: &'a Directory,
    me: &str,
    draining: bool,
    timing: &Timing,
    read: impl Fn(&'a Directory) -> Read<'a>,
) -> Result<Answer, DirectoryError> {
    let mut rounds = 0;
    // Waiting on a home that missed its beat ends by this at the latest
    // (its record has expired by then, or it beat again).
    let wait_until = tokio::time::Instant::now() + timing.node_ttl + timing.heartbeat;
    while rounds < LOOKUP_ROUNDS {
        let rec = read(dir).await?;
        let home = match &rec {
            Some(r) if r.home != me => dir.node_expiry(&r.home).await?,
            _ => None,
        };
        match cluster::route(me, rec.as_ref(), home.as_ref().map(|(n, _)| n)) {
            Route::NotFound => return Ok(Answer::NotFound),
            Route::Elsewhere(addr) => {
                let left = home.map_or(Duration::ZERO, |(_, left)| left);
                let now = tokio::time::Instant::now();
                if cluster::beat_overdue(left, timing.heartbeat, timing.node_ttl)
                    && now < wait_until
                {
                    // Probably dead (see beat_overdue): do not send the
                    // player there; read again once the record has expired
                    // (then take over) or the node has had time to beat.
                    let nap = (left + Duration::from_millis(5)).min(timing.heartbeat / 2);
                    tokio::time::sleep(nap.min(wait_until - now)).await;
                    continue;
                }
                return Ok(Answer::Elsewhere(addr));
            }
            Route::Here => {
                let Some(rec) = rec else {
                    return Ok(Answer::NotFound);
                };
                if draining {
                    // Handed here by another node that stopped at the same
                    // moment, before this one said it was draining: pass it
                    // on, never take in what the drain will not hand over.
                    if let Some(addr) = pass_on(dir, me, &rec.code, me, rec.epoch).await? {
                        return Ok(Answer::Elsewhere(addr));
                    }
                }
                // Home here: handed over by a draining node, this node's own
                // earlier run, or moved here by a lookup of ours that won the
                // race below. The core counts it when it takes it in
                // (`Output::TookIn`), once, however many lookups raced.
                return Ok(Answer::Here(rec));
            }
            Route::TakeOver { from, epoch } => {
                let Some(code) = rec.as_ref().map(|r| r.code.clone()) else {
                    return Ok(Answer::NotFound);
                };
                if draining {
                    if let Some(addr) = pass_on(dir, me, &code, &from, epoch).await? {
                        return Ok(Answer::Elsewhere(addr));
                    }
                }
                if let Some(taken) = dir.move_home(&code, &from, epoch, me).await? {
                    info!(%code, %from, "took over a session whose node is gone");
                    return Ok(Answer::Here(taken));
                }
                // Someone else moved it first: read it again.
                rounds += 1;
            }
        }
    }
    // Lost every race: answer as if the directory were away (the client retries).
    Ok(Answer::Unavailable)
}

/// A draining node asked about a session homed on it (or on a dead node):
/// move it to a live node that is not draining and name that node. `None`
/// when there is no such node, or another move won the race.
async fn pass_on(
    dir: &Directory,
    me: &str,
    code: &str,
    from: &str,
    epoch: u64,
) -> Result<Option<NodeAddr>, DirectoryError> {
    let Some(target) = drain_target(dir, me).await? else {
        return Ok(None);
    };
    let moved = dir.move_home(code, from, epoch, &target.addr.name).await?;
    if moved.is_some() {
        info!(%code, to = %target.addr.name, "passed on a session that reached this draining node");
    }
    Ok(moved.map(|_| target.addr))
}

async fn heartbeat(
    shared: Arc<Shared>,
    dir: Arc<Directory>,
    cfg: ClusterConfig,
    link: Arc<NodeLink>,
    mut stop: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(cfg.heartbeat);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut touched = tokio::time::Instant::now();
    let mut was_up = true;
    let (access, quotas) = {
        let st = shared.lock();
        let l = st.core.limits();
        let quotas = l.max_connections_per_user > 0
            || l.max_sessions_per_user > 0
            || l.relay_bytes_per_user_per_sec > 0;
        (
            st.core.access_required(),
            st.core.access_required() && quotas,
        )
    };
    let mut usage = UsageReading::new();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let beaten = beat(&shared, &dir, &cfg, &link).await;
        let listed = beaten.as_ref().map(|(l, _)| *l);
        if access && beaten.is_some() {
            catch_up_revocations(&shared, &dir).await;
        }
        if quotas {
            let live = beaten.as_ref().map(|(_, names)| names.as_slice());
            usage.share(&shared, &dir, &cfg, live).await;
        }
        let ok = listed.is_some();
        link.settle().beat(listed);
        if cluster::must_rewrite(was_up, listed) {
            let mut st = shared.lock();
            if st.core.session_count() > 0 {
                info!(
                    sessions = st.core.session_count(),
                    "the directory may have lost this node's sessions; writing them again"
                );
            }
            st.core.rewrite_all();
            shared.flush(&mut st);
        }
        was_up = ok;
        shared.metrics.cluster_directory_up.set(i64::from(ok));
        if ok && touched.elapsed() >= TOUCH_EVERY {
            touched = tokio::time::Instant::now();
            let codes: Vec<String> = shared
                .lock()
                .core
                .held_sessions()
                .into_iter()
                .map(|(c, _)| c)
                .collect();
            if let Err(e) = dir.touch_sessions(&codes).await {
                shared.metrics.directory_error(DirectoryOp::Heartbeat);
                debug!("refreshing session TTLs failed: {e}");
            }
        }
    }
}

/// Announce the node once and count the live ones. `Some((listed,
/// names))`: whether the directory listed this node just before the beat,
/// and the live nodes' names; `None` if Redis failed.
async fn beat(
    shared: &Shared,
    dir: &Directory,
    cfg: &ClusterConfig,
    link: &NodeLink,
) -> Option<(bool, Vec<String>)> {
    let info = node_info(shared, cfg, link);
    let result = async {
        // The live nodes first: whether this one is among them says
        // whether the directory still knows it.
        let nodes = dir.nodes().await?;
        dir.heartbeat(&info).await?;
        Ok::<_, DirectoryError>(nodes)
    }
    .await;
    match result {
        Ok(nodes) => {
            let listed = nodes.iter().any(|n| n.addr.name == info.addr.name);
            let live = nodes.len() + usize::from(!listed);
            shared.metrics.cluster_nodes.set(live as i64);
            // For placement and `GET /nodes`, believed for one node TTL.
            shared
                .lock()
                .core
                .set_live_nodes(now().mono, nodes.clone(), cfg.node_ttl);
            Some((listed, nodes.into_iter().map(|n| n.addr.name).collect()))
        }
        Err(e) => {
            shared.metrics.directory_error(DirectoryOp::Heartbeat);
            debug!("cluster heartbeat failed: {e}");
            None
        }
    }
}

fn node_info(shared: &Shared, cfg: &ClusterConfig, link: &NodeLink) -> NodeInfo {
    let (sessions, connections) = {
        let st = shared.lock();
        (st.core.session_count(), st.core.connection_count())
    };
    let mut addr = cfg.node.clone();
    let cert = shared.cert();
    if cert.dev {
        // A dev certificate is replaced before it expires: announce the current one.
        addr.cert_sha256 = hex::decode(&cert.hex).ok();
    }
    NodeInfo {
        addr,
        sessions: sessions.min(u32::MAX as usize) as u32,
        connections: connections.min(u32::MAX as usize) as u32,
        draining: link.draining.load(Ordering::Relaxed),
        at_unix_ms: now().unix_ms,
        region: cfg.region.clone(),
    }
}

/// Publish this node's revocations, and apply the other nodes' as they
/// are published (a subscription of its own, made again whenever it
/// breaks; each time, the stored set is read for what was missed).
async fn run_revocations(
    shared: Arc<Shared>,
    dir: Arc<Directory>,
    mut publish: mpsc::UnboundedReceiver<PublishRevocation>,
    mut stop: watch::Receiver<bool>,
) {
    type Feed = std::pin::Pin<Box<dyn futures_util::Stream<Item = String> + Send>>;
    use futures_util::StreamExt as _;
    let access = shared.lock().core.access_required();
    let mut feed: Option<Feed> = None;
    let mut retry_at = tokio::time::Instant::now();
    let mut backoff = FEED_BACKOFF_MIN;
    // A subscription was made and lost since (the next one is logged).
    let mut lost = false;
    loop {
        if access && feed.is_none() && tokio::time::Instant::now() >= retry_at {
            match dir.subscribe_revocations().await {
                Ok(s) => {
                    feed = Some(Box::pin(s));
                    backoff = FEED_BACKOFF_MIN;
                    if lost {
                        info!("subscribed to revocations again; what was published meanwhile is read from the stored set");
                    }
                    catch_up_revocations(&shared, &dir).await;
                }
                Err(e) => {
                    shared.metrics.directory_error(DirectoryOp::Revocations);
                    debug!("cannot subscribe to revocations, trying again in {backoff:?}: {e}");
                    retry_at = tokio::time::Instant::now() + backoff;
                    backoff = (backoff * 2).min(FEED_BACKOFF_MAX);
                }
            }
        }
        let resubscribe = access && feed.is_none();
        let event = {
            let next = async {
                match feed.as_mut() {
                    Some(f) => f.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                p = publish.recv() => Event::Publish(p),
                m = next => Event::Heard(m),
                _ = tokio::time::sleep_until(retry_at), if resubscribe => Event::Retry,
                _ = stop.wait_for(|s| *s) => Event::Stop,
            }
        };
        match event {
            Event::Publish(None) | Event::Stop => return,
            Event::Publish(Some((json, reply))) => {
                let forget_at = now().unix_ms + REVOCATION_TTL.as_millis() as u64;
                let r = dir.publish_revocation(&json, forget_at).await;
                if let Err(e) = &r {
                    shared.metrics.directory_error(DirectoryOp::Revocations);
                    warn!(revocation = %json, "cannot publish a revocation to the other nodes: {e}");
                }
                let _ = reply.send(r.map_err(|e| e.to_string()));
            }
            Event::Heard(Some(json)) => apply_revocation_json(&shared, &json, "published"),
            Event::Heard(None) => {
                warn!("the revocation subscription ended; subscribing again");
                lost = true;
                feed = None;
                retry_at = tokio::time::Instant::now() + backoff;
            }
            Event::Retry => {}
        }
    }
}

/// What woke [`run_revocations`].
enum Event {
    Publish(Option<PublishRevocation>),
    Heard(Option<String>),
    Retry,
    Stop,
}

/// First wait before subscribing again after the subscription failed.
const FEED_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between two tries to subscribe (the heartbeat's read of
/// the stored set covers the gap meanwhile).
const FEED_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Apply the revocations stored in the directory that this node has not
/// applied yet (missed on the subscription, or from before it started),
/// and forget those the directory forgot.
async fn catch_up_revocations(shared: &Shared, dir: &Directory) {
    match dir.revocations(now().unix_ms).await {
        Ok(live) => {
            for json in &live {
                if !shared.revocation_seen(json) {
                    apply_revocation_json(shared, json, "stored");
                }
            }
            shared.retain_revocations(&live.iter().map(String::as_str).collect());
        }
        Err(e) => {
            shared.metrics.directory_error(DirectoryOp::Revocations);
            debug!("cannot read the stored revocations: {e}");
        }
    }
}

/// Apply one revocation heard from the directory (`how`: published or stored).
fn apply_revocation_json(shared: &Shared, json: &str, how: &'static str) {
    let Ok(r) = crate::auth::Revocation::from_json(json.as_bytes(), now().unix_ms / 1000) else {
        shared.metrics.directory_error(DirectoryOp::Revocations);
        warn!(revocation = %json, "a revocation in the directory this version cannot read; ignored");
        return;
    };
    let (new, cut) = shared.apply_revocation(json, r);
    if new {
        info!(revocation = %json, cut, how, "revocation applied");
    }
}

/// Per-player usage shared through the directory, on each heartbeat:
/// this node's counts are written, the other live nodes' read and handed
/// to the core. A reading older than the node TTL (Redis away) is dropped:
/// the quotas then hold per node only (fail open, logged), because a
/// Redis outage must not stop a node from serving.
struct UsageReading {
    fresh_at: Option<tokio::time::Instant>,
    stale_logged: bool,
}

impl UsageReading {
    fn new() -> Self {
        UsageReading {
            fresh_at: None,
            stale_logged: false,
        }
    }

    async fn share(
        &mut self,
        shared: &Shared,
        dir: &Directory,
        cfg: &ClusterConfig,
        live: Option<&[String]>,
    ) {
        let counts = shared.lock().core.user_counts();
        let read = async {
            dir.publish_usage(&cfg.node.name, &counts).await?;
            match live {
                Some(names) => dir.usage(names).await.map(Some),
                None => Ok(None),
            }
        }
        .await;
        let reading = match read {
            Ok(Some(r)) => Some(r),
            Ok(None) => None,
            Err(e) => {
                shared.metrics.directory_error(DirectoryOp::Usage);
                debug!("cannot share per-player usage: {e}");
                None
            }
        };
        let now_t = tokio::time::Instant::now();
        match reading {
            Some(remote) => {
                if self.stale_logged {
                    info!("the directory is back: per-player quotas hold across the cluster again");
                }
                self.fresh_at = Some(now_t);
                self.stale_logged = false;
                let mut st = shared.lock();
                st.core.set_remote_usage(now().mono, remote);
                let n = st.core.remote_connections();
                drop(st);
                shared
                    .metrics
                    .cluster_remote_user_connections
                    .set(n.min(i64::MAX as u64) as i64);
            }
            None => {
                let stale = self
                    .fresh_at
                    .is_none_or(|t| now_t.duration_since(t) >= cfg.node_ttl);
                if stale && !self.stale_logged {
                    self.stale_logged = true;
                    warn!(
                        "the directory cannot be read: per-player quotas hold on each node alone \
                         until it is back (a player may use up to the quota on every node)"
                    );
                    shared
                        .lock()
                        .core
                        .set_remote_usage(now().mono, Default::default());
                    shared.metrics.cluster_remote_user_connections.set(0);
                }
            }
        }
    }
}

/// Hand every session this node holds to the least-loaded other live node
/// and send its players there (a graceful shutdown in cluster mode). What
/// cannot be handed over (no other node, Redis away) stays in the
/// directory with this node as home, for any node to take over once this
/// one is gone. Returns how many sessions moved.
pub(crate) async fn drain(shared: &Arc<Shared>, node: &Node) -> usize {
    node.link.draining.store(true, Ordering::Relaxed);
    let me = node.cfg.node.name.clone();
    // Announce it, so no lookup sends players here any more.
    beat(shared, &node.dir, &node.cfg, &node.link).await;
    if !shared.lock().core.held_sessions().is_empty() {
        // Nodes stopped together (one `kill`, one deploy) each announce
        // their drain within a few milliseconds. Read the directory only
        // after that, so they see each other draining and none hands its
        // sessions to another that is about to stop accepting: players sent
        // there would find no one to answer their handshake.
        tokio::time::sleep(DRAIN_SETTLE).await;
    }
    let mut target: Option<NodeInfo> = None;
    let mut checked = tokio::time::Instant::now();
    let mut moved = 0;
    // Again while sessions are left: a lookup resolved just before this
    // node said it was draining may take a session in after the first
    // pass read what it held (a node stopped at the same moment may have
    // handed it here). Bounded: what still fails stays in the directory.
    for _ in 0..DRAIN_PASSES {
        let held = shared.lock().core.held_sessions();
        if held.is_empty() {
            break;
        }
        for (code, epoch) in held {
            // The target again, now and then: another node stopped at the same
            // moment may have been picked before it said it was draining.
            if target.is_none() || checked.elapsed() >= TARGET_RECHECK {
                checked = tokio::time::Instant::now();
                target = match drain_target(&node.dir, &me).await {
                    Ok(t) => t,
                    Err(e) => {
                        shared.metrics.directory_error(DirectoryOp::Drain);
                        warn!("cannot hand sessions over, the directory is away: {e}");
                        return moved;
                    }
                };
            }
            let Some(target) = target.clone() else {
                info!("no other live node to hand sessions to");
                return moved;
            };
            if hand_over(shared, node, &me, &code, epoch, &target).await {
                moved += 1;
            }
        }
    }
    info!(moved, "sessions handed over");
    moved
}

/// How often the core is asked which sessions should move (issue 26).
const MOVE_CHECK: Duration = Duration::from_secs(5);

/// Every [`MOVE_CHECK`], move the sessions the core says should move to a
/// node of a better region: hand each over in the directory as a drain
/// does, then let the core redirect its members make-before-break
/// (`Core::begin_move`). Nothing while the node drains.
async fn run_moves(
    shared: Arc<Shared>,
    dir: Arc<Directory>,
    me: String,
    link: Arc<NodeLink>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(MOVE_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if link.draining.load(Ordering::Relaxed) {
            continue;
        }
        let due = shared.lock().core.moves_due(now().mono);
        for m in due {
            if link.draining.load(Ordering::Relaxed) {
                break;
            }
            let outcome = move_one(&shared, &dir, &me, &m).await;
            shared.metrics.session_move(outcome);
        }
    }
}

/// Hand session `m.code` to `m.target` in the directory (its latest record
/// first, as a drain does) and, if that worked, start the move here.
async fn move_one(
    shared: &Shared,
    dir: &Directory,
    me: &str,
    m: &crate::session::PlannedMove,
) -> MoveOutcome {
    let rec = shared.lock().core.session_record(&m.code);
    let Some(rec) = rec else {
        return MoveOutcome::Lost; // ended meanwhile
    };
    if let Err(e) = dir.put_session(&rec).await {
        shared.metrics.directory_error(DirectoryOp::Drain);
        warn!(code = %m.code, "cannot write the session before moving it: {e}");
        return MoveOutcome::Failed;
    }
    match dir.move_home(&m.code, me, rec.epoch, &m.target.name).await {
        Ok(Some(_)) => {
            let mut st = shared.lock();
            let n = st.core.begin_move(now(), &m.code, &m.target);
            shared.flush(&mut st);
            drop(st);
            for _ in 0..n {
                shared.metrics.redirected(RedirectReason::Placement);
            }
            info!(code = %m.code, to = %m.target.name, players = n, "moved a session to a better region");
            MoveOutcome::Moved
        }
        Ok(None) => MoveOutcome::Lost,
        Err(e) => {
            shared.metrics.directory_error(DirectoryOp::Drain);
            warn!(code = %m.code, "cannot move the session: {e}");
            MoveOutcome::Failed
        }
    }
}

/// How long a draining node waits after announcing it before it picks
/// where its sessions go (only when it holds any).
const DRAIN_SETTLE: Duration = Duration::from_millis(250);

/// Passes over the held sessions a drain makes at most.
const DRAIN_PASSES: usize = 3;

/// Hand one session to `target` and send its players there; true if it moved.
async fn hand_over(
    shared: &Arc<Shared>,
    node: &Node,
    me: &str,
    code: &str,
    epoch: u64,
    target: &NodeInfo,
) -> bool {
    // The latest state first: the target takes it in from the record
    // (written here, not left to the writer, which may be behind).
    let rec = shared.lock().core.session_record(code);
    if let Some(rec) = rec {
        if let Err(e) = node.dir.put_session(&rec).await {
            shared.metrics.directory_error(DirectoryOp::Drain);
            warn!(%code, "cannot write the session before handing it over: {e}");
            return false;
        }
    }
    match node.dir.move_home(code, me, epoch, &target.addr.name).await {
        Ok(Some(_)) => {
            send_players(shared, code, &target.addr, RedirectReason::Draining);
            true
        }
        Ok(None) => {
            // Another node took it over meanwhile (this one said it was
            // draining): send its players there, not through GoingAway.
            if let Ok(Some(rec)) = node.dir.session(code).await {
                if rec.home != me {
                    if let Ok(Some(home)) = node.dir.node(&rec.home).await {
                        send_players(shared, code, &home.addr, RedirectReason::Moved);
                    }
                }
            }
            false
        }
        Err(e) => {
            shared.metrics.directory_error(DirectoryOp::Drain);
            warn!(%code, "cannot hand the session over: {e}");
            false
        }
    }
}

/// How often a draining node reads its target's state again.
const TARGET_RECHECK: Duration = Duration::from_millis(100);

/// The node to hand sessions to now ([`cluster::drain_target`]), checked
/// against its own record, so one that started draining since is not picked.
async fn drain_target(dir: &Directory, me: &str) -> Result<Option<NodeInfo>, DirectoryError> {
    for _ in 0..3 {
        let nodes = dir.nodes().await?;
        let Some(t) = cluster::drain_target(me, &nodes).cloned() else {
            return Ok(None);
        };
        match dir.node(&t.addr.name).await? {
            Some(now) if !now.draining => return Ok(Some(now)),
            _ => continue,
        }
    }
    Ok(None)
}

/// The session `code` lives on `node` now: its players here are sent
/// there and it is forgotten here (see `Core::session_moved`), counted.
fn send_players(shared: &Shared, code: &str, node: &NodeAddr, reason: RedirectReason) {
    let mut st = shared.lock();
    let n = st.core.session_moved(code, node, reason);
    shared.flush(&mut st);
    drop(st);
    for _ in 0..n {
        shared.metrics.redirected(reason);
    }
}

/// The node leaves the directory (the last step of a graceful shutdown).
pub(crate) async fn leave(node: &Node) {
    if let Err(e) = node.dir.leave(&node.cfg.node.name).await {
        debug!("leaving the directory failed: {e}");
    }
}

/// The address other nodes and clients see, with what the server learned
/// at start filled in where the configuration left it empty, or gave a
/// port of 0 (`--listen 127.0.0.1:0` without `--public-quic`: the default
/// public address is the listen address, whose port the OS only picks when
/// the server binds it; announcing port 0 would send every redirect
/// nowhere).
pub(crate) fn complete_addr(
    mut addr: NodeAddr,
    quic: std::net::SocketAddr,
    http: std::net::SocketAddr,
    cert_sha256: Option<Vec<u8>>,
) -> NodeAddr {
    let unbound_quic = addr.quic.clone();
    if addr.quic.is_empty() {
        addr.quic = quic.to_string();
    } else if let Some(host) = without_port_zero(&addr.quic) {
        addr.quic = format!("{host}:{}", quic.port());
    }
    if addr.http.is_empty() {
        addr.http = format!("http://{http}");
    } else if let Some(base) = without_port_zero(&addr.http) {
        addr.http = format!("{base}:{}", http.port());
    }
    if addr.cert_sha256.is_none() {
        addr.cert_sha256 = cert_sha256;
    }
    // The name defaults to the public QUIC address: the one with the real port.
    if addr.name.is_empty() || (addr.name == unbound_quic && addr.quic != unbound_quic) {
        addr.name = addr.quic.clone();
    }
    addr
}

/// `s` without its trailing `:0` (a port not chosen yet), or `None` when it
/// has another port or none.
fn without_port_zero(s: &str) -> Option<&str> {
    let (rest, port) = s.trim_end_matches('/').rsplit_once(':')?;
    (port == "0" && !rest.is_empty() && !rest.ends_with(':')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(name: &str, quic: &str, http: &str) -> NodeAddr {
        NodeAddr {
            name: name.into(),
            quic: quic.into(),
            http: http.into(),
            cert_sha256: None,
        }
    }

    #[test]
    fn a_port_the_os_picks_is_announced_not_port_zero() {
        let quic = "127.0.0.1:40001".parse().unwrap();
        let http = "127.0.0.1:40002".parse().unwrap();
        // What `--listen 127.0.0.1:0 --http-listen 127.0.0.1:0` gives.
        let a = complete_addr(
            addr("a", "127.0.0.1:0", "http://127.0.0.1:0"),
            quic,
            http,
            None,
        );
        assert_eq!(a, addr("a", "127.0.0.1:40001", "http://127.0.0.1:40002"));
        // Without a name, the name is the real address too.
        let a = complete_addr(
            addr("127.0.0.1:0", "127.0.0.1:0", "http://127.0.0.1:0"),
            quic,
            http,
            None,
        );
        assert_eq!(a.name, "127.0.0.1:40001");
        // IPv6.
        let a = complete_addr(
            addr("a", "[::1]:0", "http://[::1]:0"),
            "[::1]:40001".parse().unwrap(),
            "[::1]:40002".parse().unwrap(),
            None,
        );
        assert_eq!(a, addr("a", "[::1]:40001", "http://[::1]:40002"));
    }

    #[test]
    fn configured_public_addresses_are_kept() {
        let quic = "0.0.0.0:4433".parse().unwrap();
        let http = "0.0.0.0:8080".parse().unwrap();
        let given = addr("n1", "n1.example.com:443", "https://n1.example.com");
        assert_eq!(complete_addr(given.clone(), quic, http, None), given);
        let given = addr("n1", "n1.example.com:10", "https://n1.example.com:8000");
        assert_eq!(complete_addr(given.clone(), quic, http, None), given);
        let a = complete_addr(addr("", "", ""), quic, http, Some(vec![1]));
        assert_eq!(a.name, "0.0.0.0:4433");
        assert_eq!(a.http, "http://0.0.0.0:8080");
        assert_eq!(a.cert_sha256, Some(vec![1]));
    }
}
