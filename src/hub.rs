//! What every connection task of one server shares: the session core behind
//! one lock, the outbound handle ([`Link`]) of each open connection, the
//! metrics, and the certificate being served; plus the one task that runs the
//! core's timers.
//!
//! Why a module of its own: every transport (raw QUIC, WebTransport,
//! WebSocket), the relay's hot path and the HTTP handlers reach this state.
//! Kept here, below all of them, none of them has to import another. The lock
//! is held only for synchronous work, never across an `await`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, watch, Notify};
use tracing::{debug, trace, warn};

use crate::auth::Revocation;
use crate::certs::Identity;
use crate::config::QuicTuning;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::protocol::{self, ErrorCode, ServerMsg};
use crate::session::{ConnId, Core, Lookup, Now, Output, Persist, Target};
use crate::turn::IceConfig;
use crate::wire::Wire;

/// The current time as the I/O shell tells it to the core: tokio's clock
/// (so tests can pause it) and the wall clock.
pub(crate) fn now() -> Now {
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Now {
        mono: tokio::time::Instant::now().into_std(),
        unix_ms,
    }
}

/// What `/cert-hash` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertInfo {
    /// Always `sha-256`.
    pub algorithm: &'static str,
    /// SHA-256 of the DER certificate, hex.
    pub hex: String,
    /// The same, base64 (what `serverCertificateHashes` takes).
    pub base64: String,
    /// A self-signed development certificate (pinned by hash).
    pub dev: bool,
    /// When it expires (Unix seconds).
    pub not_after_unix: i64,
}

impl CertInfo {
    pub(crate) fn of(identity: &Identity) -> Self {
        use base64::Engine;
        CertInfo {
            algorithm: "sha-256",
            hex: identity.sha256_hex(),
            base64: base64::engine::general_purpose::STANDARD.encode(identity.sha256),
            dev: identity.dev,
            not_after_unix: identity.not_after_unix,
        }
    }
}

/// An item for a connection's control writer.
pub(crate) enum Ctrl {
    /// One control message body (postcard, unframed): each transport frames it.
    Body(Bytes),
    /// Say nothing more, give the client a moment to read what was sent, close.
    Close(ErrorCode, String),
}

/// Outbound handle of one connection, whatever its transport.
pub(crate) struct Link {
    /// The QUIC or WebTransport connection; `None` for WebSocket.
    pub(crate) wire: Option<Wire>,
    pub(crate) control: mpsc::Sender<Ctrl>,
    /// Relay frames for a receiver without datagrams (stream mode, WebSocket).
    pub(crate) relay_queue: Arc<LatestQueue>,
    /// Relay datagrams handed to quinn for this connection; compared with the
    /// datagram frames quinn sent, it tells how many its send buffer dropped.
    pub(crate) datagrams_queued: Arc<AtomicU64>,
    /// Ends the connection's writer at once (a WebSocket has no `wire` to close).
    pub(crate) kill: Arc<Notify>,
    /// Closed as a slow consumer: nothing more is queued, counted or logged for it.
    pub(crate) dropped: bool,
}

impl Link {
    /// Close without waiting for queued messages (slow consumers).
    fn close_now(&self, code: ErrorCode, reason: &str) {
        if let Some(w) = &self.wire {
            w.close(code as u32, reason);
        }
        self.kill.notify_one();
    }

    /// Close after `grace` at the latest, whatever the writer is doing: a
    /// close queued behind a write the client never lets finish (it stopped
    /// reading) must still happen.
    fn close_by(&self, grace: std::time::Duration, code: ErrorCode, reason: &str) {
        let (wire, kill, reason) = (self.wire.clone(), self.kill.clone(), reason.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if let Some(w) = &wire {
                w.close(code as u32, &reason);
            }
            kill.notify_one();
        });
    }
}

/// How long a connection being closed may take to deliver what was queued
/// for it (the error that says why) before it is cut off.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// What the lock guards.
pub(crate) struct State {
    pub(crate) core: Core,
    pub(crate) links: HashMap<ConnId, Link>,
    /// Reused by the relay path so routing allocates nothing per frame.
    pub(crate) targets: Vec<Target>,
    /// The deadline the timer task is sleeping until.
    armed: Option<Instant>,
}

/// Cluster mode: where the core's cluster work goes, as plain channels.
/// The hub sends; the cluster shell takes the receiving ends when it starts.
/// Lookups and writes travel apart, so a player's lookup never waits
/// behind the writer (which may be working through a backlog, or backing
/// off while Redis is away).
pub(crate) struct ClusterLinks {
    /// Lookups to resolve; a closed channel (the node's tasks stopped) means
    /// the hub answers `Unavailable` itself.
    pub(crate) lookups: mpsc::UnboundedSender<Lookup>,
    /// Session records to write.
    pub(crate) writes: mpsc::UnboundedSender<Persist>,
    /// Revocations to publish to the other nodes (access control), each
    /// with where to say whether the directory took it.
    pub(crate) revocations: mpsc::UnboundedSender<PublishRevocation>,
}

/// A revocation's JSON to publish, and where to say whether it was.
pub(crate) type PublishRevocation = (String, tokio::sync::oneshot::Sender<Result<(), String>>);

/// State shared by every task of one server.
pub(crate) struct Shared {
    state: Mutex<State>,
    pub(crate) metrics: Metrics,
    cert: RwLock<CertInfo>,
    pub(crate) tuning: QuicTuning,
    pub(crate) max_frame_bytes: u32,
    pub(crate) max_relay_frame: usize,
    /// Behind a reverse proxy: how client addresses are read from its headers.
    pub(crate) proxy: Option<crate::proxy::ProxyTrust>,
    /// Wakes the timer task when the core's next deadline moved earlier.
    rearm: Notify,
    /// Cluster mode: where the core's lookups and record writes go.
    cluster: OnceLock<ClusterLinks>,
    /// Revocations this node has applied, by their JSON: one heard twice
    /// (pub/sub and the directory's stored set) is counted once.
    revocations_seen: Mutex<HashSet<String>>,
}

impl Shared {
    pub(crate) fn new(
        limits: Limits,
        ice: IceConfig,
        tuning: QuicTuning,
        identity: &Identity,
        proxy: Option<crate::proxy::ProxyTrust>,
    ) -> Shared {
        Shared {
            max_frame_bytes: limits.max_frame_bytes,
            max_relay_frame: limits.max_relay_payload as usize + 5,
            proxy,
            state: Mutex::new(State {
                core: Core::new(limits, ice),
                links: HashMap::new(),
                targets: Vec::new(),
                armed: None,
            }),
            metrics: Metrics::new(),
            cert: RwLock::new(CertInfo::of(identity)),
            tuning,
            rearm: Notify::new(),
            cluster: OnceLock::new(),
            revocations_seen: Mutex::new(HashSet::new()),
        }
    }

    /// Cluster mode: hand the core's cluster work to whoever holds the
    /// receiving ends (the node's tasks).
    pub(crate) fn set_cluster(&self, links: ClusterLinks) {
        let _ = self.cluster.set(links);
    }

    /// Apply a revocation on this node (its JSON, read): connected players
    /// it refuses are cut off, their tokens refused from now on. Returns
    /// whether it was new here, and how many players it cut off.
    pub(crate) fn apply_revocation(&self, json: &str, r: Revocation) -> (bool, usize) {
        let new = self
            .revocations_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(json.to_string());
        let cut = {
            let mut st = self.lock();
            let cut = st.core.revoke(now(), r);
            self.flush(&mut st);
            cut
        };
        if new {
            self.metrics.revocations_applied.inc();
        }
        self.metrics.revocation_players_cut.inc_by(cut as u64);
        (new, cut)
    }

    /// Whether this node has applied the revocation with this JSON.
    pub(crate) fn revocation_seen(&self, json: &str) -> bool {
        self.revocations_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(json)
    }

    /// Forget the revocations not in `live` (the directory forgot them:
    /// their time passed). The core keeps its own copy for as long.
    pub(crate) fn retain_revocations(&self, live: &HashSet<&str>) {
        self.revocations_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|j| live.contains(j.as_str()));
    }

    /// Cluster mode: hand a revocation to the node's tasks to publish; the
    /// receiver says whether the directory took it. `None` on a single node.
    pub(crate) fn publish_revocation(
        &self,
        json: String,
    ) -> Option<tokio::sync::oneshot::Receiver<Result<(), String>>> {
        let links = self.cluster.get()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        match links.revocations.send((json, tx)) {
            Ok(()) => Some(rx),
            Err(_) => {
                // The node's tasks stopped (shutting down): nobody publishes.
                let (tx, rx) = tokio::sync::oneshot::channel();
                let _ = tx.send(Err("this node is shutting down".into()));
                Some(rx)
            }
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug; keep serving anyway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Carry out everything the core asked for, and wake the timer task if
    /// the core now needs it earlier. Called with the lock held, after every
    /// event given to the core.
    pub(crate) fn flush(&self, st: &mut State) {
        while let Some(out) = st.core.poll_output() {
            match out {
                Output::Lookup(lookup) => {
                    let conn = lookup.conn();
                    let sent = (self.cluster.get())
                        .is_some_and(|links| links.lookups.send(lookup).is_ok());
                    if !sent {
                        // The node's tasks have stopped (shutting down), or
                        // there is no node: nobody will answer but us.
                        st.core
                            .answer(now(), conn, crate::session::Answer::Unavailable);
                    }
                }
                Output::TookIn { code } => {
                    debug!(%code, "took in a session from the directory");
                    self.metrics.cluster_sessions_taken_over.inc();
                }
                Output::Report { conn, outcome } => {
                    if let crate::session::ReportOutcome::Dropped(why) = &outcome {
                        trace!(conn, result = why.as_str(), "quality report dropped");
                    }
                    self.metrics.quality.report(&outcome);
                }
                Output::Send { conn, msg } => {
                    if let ServerMsg::Error { code, .. } = &msg {
                        self.metrics.error_sent(*code);
                    }
                    let Some(link) = st.links.get_mut(&conn) else {
                        continue;
                    };
                    if link.dropped {
                        continue;
                    }
                    let body = Bytes::from(protocol::encode(&msg));
                    if link.control.try_send(Ctrl::Body(body)).is_err() {
                        // Once per connection: a flood behind a full queue
                        // must not become a flood of logs.
                        warn!(conn, "control queue full; closing slow consumer");
                        self.metrics.error_sent(ErrorCode::SlowConsumer as u16);
                        link.dropped = true;
                        link.close_now(ErrorCode::SlowConsumer, "control queue full");
                    }
                }
                Output::Close { conn, code, reason } => {
                    if let Some(link) = st.links.get(&conn) {
                        debug!(conn, %code, %reason, "closing connection");
                        if link
                            .control
                            .try_send(Ctrl::Close(code, reason.clone()))
                            .is_err()
                        {
                            link.close_now(code, &reason);
                        } else {
                            link.close_by(CLOSE_GRACE, code, &reason);
                        }
                    }
                }
            }
        }
        if let Some(links) = self.cluster.get() {
            while let Some(p) = st.core.poll_persist() {
                // The writer stops only with the server: nothing to write then.
                let _ = links.writes.send(p);
            }
        }
        self.metrics.sessions.set(st.core.session_count() as i64);
        self.metrics.peers.set(st.core.peer_count() as i64);
        self.metrics.quality.set_gauges(st.core.quality_gauges());
        self.metrics
            .connection_attempts
            .set(st.core.pending_count().0 as i64);
        let next = st.core.poll_timeout();
        if next.is_some_and(|n| st.armed.is_none_or(|armed| n < armed)) {
            self.rearm.notify_one();
        }
    }

    /// Close every open connection with `code`, after what is queued for it
    /// (the end of a shutdown's drain: WebSockets have no endpoint to close).
    pub(crate) fn close_all(&self, code: ErrorCode, reason: &str) {
        let st = self.lock();
        for link in st.links.values() {
            if link
                .control
                .try_send(Ctrl::Close(code, reason.to_string()))
                .is_err()
            {
                link.close_now(code, reason);
            }
        }
    }

    /// The certificate currently served.
    pub(crate) fn cert(&self) -> CertInfo {
        self.cert.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_cert(&self, info: CertInfo) {
        *self.cert.write().unwrap_or_else(|e| e.into_inner()) = info;
    }
}

/// Run the core's timers: sleep until exactly the deadline the core asks
/// for ([`Core::poll_timeout`]), run what is due, ask again. Woken early
/// when an event gives the core an earlier deadline. No fixed tick.
pub(crate) async fn run_timers(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let next = {
            let mut st = shared.lock();
            let next = st.core.poll_timeout();
            st.armed = next;
            next
        };
        let due = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = due => {
                let mut st = shared.lock();
                st.core.handle_timeout(now());
                shared.flush(&mut st);
            }
            _ = shared.rearm.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// A bounded queue of relay frames for one receiver that cannot take
/// datagrams. When full, pushing drops the oldest frame: for flight state the
/// newest frame is the one worth delivering.
pub(crate) struct LatestQueue {
    frames: Mutex<VecDeque<Bytes>>,
    capacity: usize,
    ready: Notify,
}

impl LatestQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        LatestQueue {
            frames: Mutex::new(VecDeque::with_capacity(capacity.max(1))),
            capacity: capacity.max(1),
            ready: Notify::new(),
        }
    }

    /// Queue a frame; returns true if the oldest frame was dropped to make room.
    pub(crate) fn push(&self, frame: Bytes) -> bool {
        let dropped = {
            let mut q = self.frames.lock().unwrap_or_else(|e| e.into_inner());
            let dropped = q.len() >= self.capacity && q.pop_front().is_some();
            q.push_back(frame);
            dropped
        };
        self.ready.notify_one();
        dropped
    }

    /// The oldest queued frame, waiting for one if the queue is empty.
    pub(crate) async fn pop(&self) -> Bytes {
        loop {
            let next = self
                .frames
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            if let Some(f) = next {
                return f;
            }
            self.ready.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{ConnMeta, Transport};
    use std::time::Duration;

    #[tokio::test]
    async fn latest_queue_keeps_the_newest_frames() {
        let q = LatestQueue::new(3);
        let dropped: Vec<bool> = (0u8..5).map(|i| q.push(Bytes::from(vec![i]))).collect();
        assert_eq!(dropped, vec![false, false, false, true, true]);
        for want in 2u8..5 {
            assert_eq!(q.pop().await[0], want);
        }
        // An empty queue waits; a later push wakes it.
        let q = Arc::new(LatestQueue::new(2));
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.pop().await }
        });
        tokio::task::yield_now().await;
        q.push(Bytes::from_static(b"x"));
        assert_eq!(&waiter.await.unwrap()[..], b"x");
    }

    /// The shell sleeps until exactly the core's deadline, and an event that
    /// brings the deadline forward wakes it: here a connection that never
    /// says Hello is failed at its hello timeout, on paused time.
    #[tokio::test(start_paused = true)]
    async fn the_timer_task_arms_the_cores_deadline() {
        let dir = std::env::temp_dir().join(format!("fsp2p-hub-{}", std::process::id()));
        let identity = crate::certs::dev_identity(&dir, &["localhost".into()]).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let limits = Limits {
            hello_timeout_ms: 5_000,
            ..Limits::default()
        };
        let shared = Arc::new(Shared::new(
            limits,
            IceConfig::default(),
            QuicTuning::default(),
            &identity,
            None,
        ));
        let (stop, stop_rx) = watch::channel(false);
        let timers = tokio::spawn(run_timers(shared.clone(), stop_rx));
        tokio::task::yield_now().await;
        // A connection opens later: its deadline is earlier than none.
        tokio::time::sleep(Duration::from_secs(100)).await;
        let (tx, mut rx) = mpsc::channel(8);
        {
            let mut st = shared.lock();
            let meta = ConnMeta {
                transport: Transport::WebSocket,
                ip: None,
            };
            let id = st.core.open(now(), meta).unwrap();
            st.links.insert(
                id,
                Link {
                    wire: None,
                    control: tx,
                    relay_queue: Arc::new(LatestQueue::new(1)),
                    datagrams_queued: Default::default(),
                    kill: Default::default(),
                    dropped: false,
                },
            );
            shared.flush(&mut st);
        }
        let opened = tokio::time::Instant::now();
        // The error and the close come at the deadline, not before.
        let first = rx.recv().await.expect("hello_timeout error");
        assert!(matches!(first, Ctrl::Body(_)));
        assert!(matches!(
            rx.recv().await,
            Some(Ctrl::Close(ErrorCode::HelloTimeout, _))
        ));
        assert_eq!(opened.elapsed(), Duration::from_secs(5));
        let _ = stop.send(true);
        timers.await.unwrap();
    }
}
