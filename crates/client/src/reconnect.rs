//! The supervisor: one task per [`Client`](super::Client) that watches its
//! connection end and, when [`resume`](super::resume) says so, connects
//! again and hands the new connection to the client.
//!
//! ```text
//!            connection ends (reader reports Ended)
//!   Up ──────────────────────────────────────────────┐
//!    ▲                                               ▼
//!    │  Welcome (+ rejoin)           judge_close: GiveUp ──► Gone (Event::Closed)
//!    │  Event::Reconnected                  │ Resume / ResumeAfter
//!    │                                      ▼
//!    └──────────────────────────── Reconnecting ◄──┐ attempt failed,
//!                    Event::Reconnecting{attempt}  │ judge_failure: Resume
//!                                      │           │
//!                                      └───────────┘ (Plan::next = None, or a
//!                                                     final failure ──► Gone)
//! ```
//!
//! While *Reconnecting*, relay frames are dropped (`send_relay` returns
//! `Ok`), control messages wait for the next connection, and the events of
//! the old connection are followed by the supervisor's own. The handover is
//! lock-free for the hot path: the client's inbox reads on from the next
//! connection's channel, relay senders read the current link from one
//! shared slot, and the control link is swapped in the next time the
//! client sends.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::cluster::{self, RedirectStep, Rotation};
use super::inbox::{Alongside, Segment};
use super::liveness::{LiveAction, Liveness};
use super::moving::{
    is_move, Conn, Dedup, Move, MoveAction, MoveEvent, MovePhase, OLD_CLOSE_AFTER,
};
use super::resume::{
    after_reconnect, attempt_timeout, judge_close, judge_failure, unreachable, AfterReconnect,
    Memory, Plan, Verdict,
};
use super::telemetry::Hub;
use super::{
    hello_messages, open, ClientConfig, ClientTransport, Ended, Error, Event, Link, QuicEndpoint,
    RelayLink, Result, Tasks,
};
use crate::protocol::{
    ClientMsg, ErrorCode, JoinSession, PeerId, Redirect, RedirectReason, ServerMsg, Welcome,
};
use crate::wire::Wire;

/// Where a connection's reader puts what it reads.
pub(super) struct Sink {
    /// Relay frames and control messages, for the client's inbox.
    pub(super) events: mpsc::Sender<Event>,
    /// Notes on the conversation, for coming back to it.
    memory: Arc<Mutex<Memory>>,
    /// How the connection ended, for the supervisor (or, while connecting,
    /// for the wait for the Welcome); taken when reported.
    end: Mutex<Option<oneshot::Sender<Ended>>>,
    /// `Ping` period of the liveness watch (zero: off).
    ping_interval: Duration,
    /// The client's quality trackers (PROTOCOL.md §14).
    pub(super) quality: Arc<Hub>,
    /// What the two connections of a move share (rule 10).
    pub(super) mover: Arc<Mover>,
}

impl Sink {
    /// A sink, the receiving end of its events, and of its end.
    pub(super) fn new(
        memory: Arc<Mutex<Memory>>,
        ping_interval: Duration,
        quality: Arc<Hub>,
        mover: Arc<Mover>,
    ) -> (Sink, mpsc::Receiver<Event>, oneshot::Receiver<Ended>) {
        let (events, rx) = mpsc::channel(4096);
        let (end, end_rx) = oneshot::channel();
        (
            Sink {
                events,
                memory,
                end: Mutex::new(Some(end)),
                ping_interval,
                quality,
                mover,
            },
            rx,
            end_rx,
        )
    }

    /// A `Redirect` came on this connection: true when it starts a move
    /// (PROTOCOL.md §12 rule 10), which the supervisor is then told of. The
    /// connection is then the *old* one: its reader passes on relay frames
    /// only, and its end is the supervisor's to judge.
    pub(super) fn move_starts(&self, r: &Redirect) -> bool {
        let Ok(m) = self.memory.lock() else {
            return false;
        };
        let starts = is_move(r.reason, m.pending.is_none(), m.code.is_some(), m.version);
        drop(m);
        starts && self.mover.notes.send(r.clone()).is_ok()
    }

    /// Whether a relay frame from `from` goes to the application: false for
    /// the second copy of a frame that came on both connections of a move.
    /// `old`: this is the connection the move started on.
    pub(super) fn relay_is_new(&self, old: bool, from: PeerId, payload: &[u8]) -> bool {
        if !self.mover.overlap.load(Ordering::Acquire) {
            return true;
        }
        let on = if old { Conn::Old } else { Conn::New };
        self.mover
            .dedup
            .lock()
            .map_or(true, |mut d| d.accept(on, from, payload))
    }

    /// Note a control message and pass it on; `Err` once nobody listens.
    pub(super) async fn control(&self, m: ServerMsg) -> std::result::Result<(), ()> {
        if let Ok(mut memory) = self.memory.lock() {
            memory.note(&m);
        }
        self.quality.control(&m);
        self.events.send(Event::Control(m)).await.map_err(|_| ())
    }

    /// The liveness watch of this connection, starting now.
    pub(super) fn watch(&self) -> Watch {
        Watch::new(self.ping_interval, self.memory.clone())
    }

    /// Report how the connection ended (before the events channel closes).
    pub(super) fn ended(&self, ended: Ended) {
        if let Some(end) = self.end.lock().ok().and_then(|mut e| e.take()) {
            let _ = end.send(ended);
        }
    }
}

/// What the connections of a move share: the readers tell the supervisor
/// of a move through `notes`, and drop the frames that come twice while
/// `overlap` is on (PROTOCOL.md §12 rule 10; the decisions are
/// [`Move`]'s and [`Dedup`]'s).
pub(super) struct Mover {
    notes: mpsc::UnboundedSender<Redirect>,
    overlap: AtomicBool,
    dedup: Mutex<Dedup>,
}

impl Mover {
    /// A mover, and where its notes arrive (the supervisor's).
    pub(super) fn new() -> (Arc<Mover>, mpsc::UnboundedReceiver<Redirect>) {
        let (notes, rx) = mpsc::unbounded_channel();
        let mover = Mover {
            notes,
            overlap: AtomicBool::new(false),
            dedup: Mutex::new(Dedup::default()),
        };
        (Arc::new(mover), rx)
    }

    fn set_overlap(&self, on: bool) {
        if let Ok(mut d) = self.dedup.lock() {
            d.clear();
        }
        self.overlap.store(on, Ordering::Release);
    }
}

/// The liveness rule (PROTOCOL.md §12 rule 2) run by a connection's reader
/// task: the reader tells it what it hears, [`Watch::run`] sends the
/// `Ping`s and returns once the server is lost. The decisions are
/// [`Liveness`]'s; this only keeps the clock and the lock.
pub(super) struct Watch {
    state: Mutex<Liveness>,
    /// `Ping.client_time_ms` counts from here (with [`PING_MARK`] set).
    epoch: Instant,
    enabled: bool,
    memory: Arc<Mutex<Memory>>,
}

/// Set in the `client_time_ms` of the client's own liveness `Ping`s, so
/// that their `Pong`s are told apart from [`super::Client::ping`]'s (and not
/// passed to the application).
const PING_MARK: u64 = 1 << 62;

impl Watch {
    /// A connection that came up now; `interval` zero turns liveness off
    /// (QUIC's idle timeout alone then notices a dead server).
    pub(super) fn new(interval: Duration, memory: Arc<Mutex<Memory>>) -> Watch {
        let now = Instant::now();
        Watch {
            state: Mutex::new(Liveness::new(now, interval)),
            epoch: now,
            enabled: !interval.is_zero(),
            memory,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Liveness) -> T) -> Option<T> {
        self.state.lock().ok().map(|mut l| f(&mut l))
    }

    /// Something arrived from the server.
    pub(super) fn heard(&self) {
        self.with(|l| l.heard(Instant::now()));
    }

    /// A control message arrived: true when it is the `Pong` to one of the
    /// watch's own `Ping`s (the reader then keeps it from the application).
    pub(super) fn message(&self, m: &ServerMsg) -> bool {
        let now = Instant::now();
        match m {
            ServerMsg::Pong { client_time_ms, .. } if client_time_ms & PING_MARK != 0 => {
                let sent = self.epoch + Duration::from_millis(client_time_ms & !PING_MARK);
                let srtt = self.with(|l| {
                    l.pong(now, sent);
                    l.srtt()
                });
                if let Ok(mut memory) = self.memory.lock() {
                    // Evidence that the connection stays, like any message.
                    memory.note(m);
                    if let Some(srtt) = srtt.flatten() {
                        memory.srtt = Some(srtt);
                    }
                }
                true
            }
            _ => {
                self.heard();
                false
            }
        }
    }

    /// Send a `Ping` with `send` whenever one is due; return why the server
    /// counts as lost, once it does (never, with liveness off). The memory
    /// notes it, for the rotation.
    ///
    /// `packets` counts the UDP datagrams received on the connection so far
    /// (QUIC and WebTransport; `None` on a WebSocket). Any packet from the
    /// server is something heard: its ACKs of our `Ping`s come even while
    /// the control stream waits for a lost packet's retransmission (head of
    /// line), which would otherwise hold every `Pong` back and look like
    /// silence on a lossy path.
    pub(super) async fn run<F, Fut, P>(&self, send: F, packets: P) -> String
    where
        F: Fn(ClientMsg) -> Fut,
        Fut: std::future::Future<Output = ()>,
        P: Fn() -> Option<u64>,
    {
        if !self.enabled {
            return std::future::pending().await;
        }
        let mut seen = packets();
        loop {
            let Some(Some(wake)) = self.with(|l| l.wake_at()) else {
                return std::future::pending().await;
            };
            tokio::time::sleep_until(wake.into()).await;
            let count = packets();
            if count > seen {
                self.heard();
            }
            seen = count.max(seen);
            let now = Instant::now();
            match self.with(|l| l.tick(now)) {
                Some(LiveAction::Ping) => {
                    let ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
                    send(ClientMsg::Ping {
                        client_time_ms: PING_MARK | ms,
                    })
                    .await;
                }
                Some(LiveAction::Lost { silent_for }) => {
                    if let Ok(mut m) = self.memory.lock() {
                        m.server_lost = true;
                    }
                    return format!(
                        "server lost: no answer to Ping for {} ms",
                        silent_for.as_millis()
                    );
                }
                _ => {}
            }
        }
    }
}

/// What relay senders send on.
pub(super) enum RelayState {
    /// A connection.
    Up(RelayLink),
    /// The old and the new connection of a move, in its overlap: every
    /// frame goes on both (PROTOCOL.md §12 rule 10).
    Both(RelayLink, RelayLink),
    /// Between connections: frames are dropped.
    Down,
    /// The client gave up, or was closed.
    Gone(Ended),
}

/// The client's view of the link: which connection, and whether it is over.
#[derive(Debug, Clone, Default)]
pub(super) struct LinkState {
    /// Bumped each time a new connection is handed over.
    pub(super) generation: u64,
    /// Set when the client gave up.
    pub(super) gone: Option<Ended>,
}

/// What the client and its supervisor share.
pub(super) struct Shared {
    /// The next connection's control link and Welcome, for the client to take.
    pub(super) swap: Mutex<Option<(u64, Link, Welcome)>>,
    /// Which connection is current; the client waits on it while down.
    pub(super) state: watch::Sender<LinkState>,
    /// What relay senders send on.
    pub(super) relay: Arc<RwLock<RelayState>>,
    /// The session to come back to.
    pub(super) memory: Arc<Mutex<Memory>>,
    /// The application closed or abandoned the client: do not come back.
    pub(super) closing: AtomicBool,
    /// The current peer id.
    pub(super) peer_id: AtomicU32,
    /// The quality trackers, across connections.
    pub(super) quality: Arc<Hub>,
}

impl Shared {
    /// `relay`, until now down, goes up on `link`.
    pub(super) fn new(
        relay: Arc<RwLock<RelayState>>,
        link: RelayLink,
        memory: Arc<Mutex<Memory>>,
        welcome: &Welcome,
        quality: Arc<Hub>,
    ) -> Shared {
        let shared = Shared {
            swap: Mutex::new(None),
            state: watch::Sender::new(LinkState::default()),
            relay,
            memory,
            closing: AtomicBool::new(false),
            peer_id: AtomicU32::new(welcome.peer_id),
            quality,
        };
        shared.set_relay(RelayState::Up(link));
        shared
    }

    fn set_relay(&self, state: RelayState) {
        if let Ok(mut slot) = self.relay.write() {
            *slot = state;
        }
    }
}

/// The supervisor's state: the current connection and how to make the next.
pub(super) struct Supervisor {
    /// How to connect again (with the first connection's QUIC endpoint, for 0-RTT).
    pub(super) cfg: ClientConfig,
    pub(super) shared: Arc<Shared>,
    /// Segments for the client's inbox.
    pub(super) plane: mpsc::UnboundedSender<Segment>,
    /// The current connection's tasks (dropping them stops them).
    pub(super) tasks: Option<Tasks>,
    /// How the current connection ends.
    pub(super) end: oneshot::Receiver<Ended>,
    /// The last Welcome: the resume token and the grace.
    pub(super) welcome: Welcome,
    /// Where the next attempt goes: a redirect's node, else the configured
    /// servers in turn.
    pub(super) rotation: Rotation,
    /// Where a move's new connection goes for the client's inbox.
    pub(super) side: mpsc::UnboundedSender<Alongside>,
    /// What the connections of a move share.
    pub(super) mover: Arc<Mover>,
    /// Moves the readers found (unasked `Redirect(Placement)`s).
    pub(super) moves: mpsc::UnboundedReceiver<Redirect>,
}

/// How a move ended ([`Supervisor::follow_move`]).
enum Moved {
    /// On the new connection, which is now the current one.
    Settled,
    /// The current connection ended thus: judge it as any end.
    Ended(Ended),
}

impl Supervisor {
    /// Watch connection after connection until the client gives up.
    pub(super) async fn run(mut self) {
        loop {
            let ended = tokio::select! {
                biased;
                Some(r) = self.moves.recv() => {
                    let moved = self.follow_move(r).await;
                    // However it ended, one connection is left.
                    self.mover.set_overlap(false);
                    match moved {
                        Moved::Settled => continue,
                        Moved::Ended(ended) => ended,
                    }
                }
                ended = &mut self.end => {
                    ended.unwrap_or_else(|_| Ended::lost("connection reader stopped"))
                }
            };
            self.tasks = None;
            // What the server said on this connection, forgotten for the next.
            let said = self
                .memory(|m| Memory {
                    going_away: m.going_away.take(),
                    fatal: m.fatal.take(),
                    redirect: m.redirect.take(),
                    server_lost: std::mem::take(&mut m.server_lost),
                    ..Memory::default()
                })
                .unwrap_or_default();
            let app_closed = self.shared.closing.load(Ordering::SeqCst);
            let verdict = judge_close(&ended, &said, app_closed, self.cfg.auto_resume);
            // A redirect is no loss: follow it at once, resume or not.
            let (verdict, redirect) = match (verdict, said.redirect) {
                (Verdict::GiveUp, _) => return self.give_up(ended),
                (Verdict::Redirect, Some(r)) => (Verdict::Resume, Some(r)),
                (v, _) => (v, None),
            };
            // A server that went silent (liveness, or QUIC's idle timeout)
            // has most likely died: with other nodes to try, start with the
            // next one (if it was only the path, that node sends the client
            // back). A node that died costs no attempt.
            if redirect.is_none() {
                self.rotation.lost(said.server_lost || ended.silent());
            }
            match &redirect {
                Some(r) => tracing::info!(
                    node = %r.node.name,
                    reason = r.reason.as_str(),
                    "redirected; moving"
                ),
                None => tracing::info!("connection lost ({ended}); reconnecting"),
            }
            self.shared.set_relay(RelayState::Down);
            if !self.reconnect(verdict, ended, redirect).await {
                return;
            }
        }
    }

    /// Point the rotation at a redirect's node. False when the client gave
    /// up: too many redirects in a row, and nothing to come back to.
    async fn follow(&mut self, r: Redirect, last: &mut Ended) -> bool {
        let count = self.memory(|m| m.redirects).unwrap_or(0);
        let in_session = self.memory(|m| m.code.is_some()).unwrap_or(false);
        let step = cluster::redirect_step(count, in_session && self.cfg.auto_resume);
        if let RedirectStep::Fail { back_to_configured } = step {
            let e = Error::Redirects {
                count: super::MAX_REDIRECTS,
                node: r.node.name.clone(),
            };
            tracing::warn!("{e}");
            *last = Ended::lost(e.to_string());
            if !back_to_configured {
                self.give_up(last.clone());
                return false;
            }
            // Back to the configured servers, which redirect afresh.
            self.memory(|m| m.redirects = 0);
            self.rotation.back_to_configured();
            return true;
        }
        match cluster::node_addr(&self.cfg, &r.node).await {
            Ok((at, _)) => self.rotation.redirected(at),
            // Unreachable as given: the configured servers instead.
            Err(e) => tracing::info!("cannot follow the redirect to {}: {e}", r.node.name),
        }
        true
    }

    /// Try until a new connection is handed over (true) or the client gave up.
    /// `redirect`: the connection ended with this `Redirect`, to follow first.
    async fn reconnect(
        &mut self,
        verdict: Verdict,
        mut last: Ended,
        mut redirect: Option<Redirect>,
    ) -> bool {
        let grace = std::time::Duration::from_millis(self.welcome.limits.resume_grace_ms.into());
        let mut plan = Plan::new(Instant::now(), verdict, grace, self.cfg.reconnect_window);
        loop {
            if let Some(r) = redirect.take() {
                if !self.follow(r, &mut last).await {
                    return false;
                }
                plan.at_once();
            }
            let now = Instant::now();
            let Some(attempt) = plan.next(now, rand::random::<f64>()) else {
                self.give_up(last);
                return false;
            };
            self.emit(Event::Reconnecting {
                attempt: attempt.number,
                after: attempt.at.saturating_duration_since(now),
            });
            tokio::time::sleep_until(attempt.at.into()).await;
            if self.shared.closing.load(Ordering::SeqCst) {
                self.give_up(last);
                return false;
            }
            // A node that does not answer is given up on after a few round
            // trips: a dead one never answers (QUIC hears no ICMP), and each
            // second spent on it is a second of the resume grace.
            let srtt = self.memory(|m| m.srtt).flatten();
            let limit = attempt_timeout(srtt, self.cfg.connect_timeout);
            let cfg = self.rotation.config(&self.cfg);
            let server = cfg.server;
            let result =
                match tokio::time::timeout(limit, self.attempt(cfg, attempt.with_token)).await {
                    Ok(r) => r,
                    Err(_) => Err(Error::Timeout {
                        server,
                        after: limit,
                    }),
                };
            match result {
                Ok(()) => return true,
                Err(e) => {
                    tracing::info!("reconnection attempt {} failed: {e}", attempt.number);
                    last = match &e {
                        Error::Closed(ended) => ended.clone(),
                        e => Ended::lost(e.to_string()),
                    };
                    // Redirected after the Welcome (the rejoin went elsewhere).
                    redirect = self.memory(|m| m.redirect.take()).flatten();
                    if redirect.is_some() {
                        continue;
                    }
                    // With other servers to try, a setup that cannot reach
                    // this one (no WebSocket URL for it) only moves on.
                    let moves_on = self.rotation.has_alternatives()
                        && matches!(e, Error::Config(_) | Error::Tls(_));
                    if judge_failure(&e) == Verdict::GiveUp && !moves_on {
                        self.give_up(last);
                        return false;
                    }
                    if unreachable(&e) {
                        self.rotation.unreachable();
                    }
                }
            }
        }
    }

    /// One attempt at `cfg`'s server: connect, say Hello (with the token if
    /// `with_token`), rejoin the session by code if the seat is gone, send
    /// again a request left unanswered (in no session), hand over.
    async fn attempt(&mut self, cfg: ClientConfig, with_token: bool) -> Result<()> {
        let memory = self
            .memory(|m| {
                // What a failed attempt was told does not carry over.
                m.fatal = None;
                m.going_away = None;
                m.server_lost = false;
                m.clone()
            })
            .unwrap_or_default();
        let rejoin = memory.code.clone().map(|code| JoinSession {
            code,
            password: memory.password.clone(),
            region_rtts: Vec::new(),
        });
        if rejoin.is_some() {
            self.memory(|m| m.asked_password = memory.password.clone());
        }
        // Past the grace the seat is surely gone: rejoin in the first flight.
        let pipelined = (!with_token).then(|| rejoin.clone()).flatten();
        // In no session, a request left unanswered (redirected, or lost
        // with the connection) goes again, with no token: the peer is new
        // where it lands (PROTOCOL.md §11).
        let resend = memory.pending.clone().filter(|_| memory.code.is_none());
        let token = (with_token && resend.is_none()).then(|| self.welcome.resume_token.clone());
        let first = pipelined
            .clone()
            .map(ClientMsg::JoinSession)
            .or(resend.clone());
        let hello = hello_messages(&cfg, token, first);
        let (mut opened, at) = open(
            &cfg,
            &hello,
            self.shared.memory.clone(),
            &self.shared.quality,
            &self.mover,
        )
        .await?;
        if let Some(at) = at {
            self.rotation.redirected(at);
        }
        let outcome = after_reconnect(
            opened.welcome.resumed,
            opened.welcome.peer_id,
            self.shared.peer_id.load(Ordering::SeqCst),
            rejoin.is_some(),
            resend.is_some(),
        );
        let resumed = outcome == AfterReconnect::Resumed;
        let mut rejoined = false;
        if let (AfterReconnect::Rejoin, Some(join)) = (outcome, rejoin) {
            if pipelined.is_none() {
                opened.link.send(&ClientMsg::JoinSession(join)).await?;
            }
            let joined = opened
                .inbox
                .wait_for(|m| match m {
                    ServerMsg::SessionJoined(i) => Some(i.clone()),
                    _ => None,
                })
                .await;
            match joined {
                Ok(info) => {
                    opened
                        .inbox
                        .keep(Event::Control(ServerMsg::SessionJoined(info)));
                    rejoined = true;
                }
                // The directory is out of reach: try again later.
                Err(e) if e.server_code() == Some(ErrorCode::ClusterUnavailable) => return Err(e),
                // The session is gone, full, or the password changed: the
                // client is back, in no session; the application hears why.
                Err(Error::Server { code, message, .. }) => {
                    opened
                        .inbox
                        .keep(Event::Control(ServerMsg::Error { code, message }));
                    self.memory(|m| *m = Memory::default());
                }
                Err(e) => return Err(e),
            }
        }
        // Hand over.
        let welcome = opened.welcome;
        let peer_id = welcome.peer_id;
        self.welcome = welcome.clone();
        self.tasks = Some(opened.tasks);
        self.end = opened.end;
        self.shared.peer_id.store(peer_id, Ordering::SeqCst);
        self.shared
            .set_relay(RelayState::Up(opened.link.relay_link()));
        let generation = self.shared.state.borrow().generation + 1;
        if let Ok(mut swap) = self.shared.swap.lock() {
            *swap = Some((generation, opened.link, welcome));
        }
        self.shared.state.send_modify(|s| s.generation = generation);
        tracing::info!(peer_id, resumed, rejoined, "reconnected");
        self.emit(Event::Reconnected { resumed });
        if rejoined {
            self.emit(Event::Rejoined { peer_id });
        }
        let (read, events) = opened.inbox.into_parts();
        let events = events.unwrap_or_else(|| mpsc::channel(1).1);
        let _ = self.plane.send(Segment::Connection(read, events));
        Ok(())
    }

    /// Follow a session the server moves (PROTOCOL.md §12 rule 10): open a
    /// connection to `r`'s node with the resume token while the current one
    /// goes on, relay on both from its `Welcome` until the old one closes,
    /// then carry on on the new one. What to do at each turn is [`Move`]'s.
    async fn follow_move(&mut self, r: Redirect) -> Moved {
        let mut m = Move::new();
        let version = self.memory(|m| m.version).unwrap_or(0);
        let action = m.on_event(
            MoveEvent::Redirect {
                on: Conn::Current,
                reason: r.reason,
                unasked: true,
                in_session: true,
                version,
            },
            Instant::now(),
        );
        if action != MoveAction::OpenNew {
            return Moved::Settled;
        }
        tracing::info!(node = %r.node.name, "the session moves: make-before-break");
        // Frames are remembered from now on: the new node relays the
        // members who moved first as soon as it welcomes this client, before
        // the supervisor hears of that Welcome.
        self.mover.set_overlap(true);
        let old_link = match &*self.shared.relay.read().unwrap_or_else(|p| p.into_inner()) {
            RelayState::Up(link) => Some(link.clone()),
            _ => None,
        };
        // Later reconnections, if any, start at the new node.
        let cfg = match cluster::node_addr(&self.cfg, &r.node).await {
            Ok((at, _)) => {
                self.rotation.redirected(at);
                Some(self.rotation.config(&self.cfg))
            }
            Err(e) => {
                tracing::info!("cannot reach {} to move there: {e}", r.node.name);
                None
            }
        };
        let mut old_end = std::mem::replace(&mut self.end, oneshot::channel().1);
        let mut old_tasks = self.tasks.take();
        let mut old_open = true;
        let srtt = self.memory(|m| m.srtt).flatten();
        let limit = attempt_timeout(srtt, self.cfg.connect_timeout);
        let hello = cfg
            .as_ref()
            .map(|cfg| hello_messages(cfg, Some(self.welcome.resume_token.clone()), None));
        let opening = async {
            let (Some(cfg), Some(hello)) = (cfg.as_ref(), hello.as_ref()) else {
                return Err(Error::Config(
                    "the node to move to cannot be reached".into(),
                ));
            };
            match tokio::time::timeout(
                limit,
                open(
                    cfg,
                    hello,
                    self.shared.memory.clone(),
                    &self.shared.quality,
                    &self.mover,
                ),
            )
            .await
            {
                Ok(r) => r.map(|(opened, _)| opened),
                Err(_) => Err(Error::Timeout {
                    server: cfg.server,
                    after: limit,
                }),
            }
        };
        tokio::pin!(opening);
        // Up to the new connection's Welcome (or its failure).
        let opened = loop {
            tokio::select! {
                opened = &mut opening => break opened,
                _ = &mut old_end, if old_open => {
                    old_open = false;
                    old_tasks = None;
                    m.on_event(MoveEvent::OldClosed, Instant::now());
                    self.shared.set_relay(RelayState::Down);
                }
            }
        };
        let close_old = |old_link: &Option<RelayLink>| {
            if let Some(l) = old_link {
                l.close_moved();
            }
        };
        let opened = match opened {
            Ok(o) if o.welcome.resumed => o,
            Ok(o) => {
                // The seat is not on the new node: let both go and come back
                // as after any loss (rule 4: the resume fails there, the
                // client rejoins by code).
                m.on_event(MoveEvent::NewWelcome { resumed: false }, Instant::now());
                close_old(&old_link);
                drop(old_tasks);
                o.link.relay_link().close_moved();
                self.shared.set_relay(RelayState::Down);
                return Moved::Ended(Ended::lost(
                    "the session moved and its seat was not kept on the new node",
                ));
            }
            Err(e) => {
                tracing::info!("could not open the connection to the new node: {e}");
                let action = m.on_event(MoveEvent::NewFailed, Instant::now());
                if action == MoveAction::None && old_open {
                    // Old only: until it closes (or the client closes it,
                    // 10 s after the redirect), then as after any loss.
                    let until = m
                        .wake_at()
                        .unwrap_or_else(|| Instant::now() + OLD_CLOSE_AFTER);
                    match tokio::time::timeout_at(until.into(), &mut old_end).await {
                        Ok(ended) => {
                            m.on_event(MoveEvent::OldClosed, Instant::now());
                            let ended =
                                ended.unwrap_or_else(|_| Ended::lost("connection reader stopped"));
                            tracing::info!(
                                "the old connection of the move ended ({ended}); reconnecting"
                            );
                        }
                        Err(_) => {
                            m.tick(Instant::now());
                            tracing::info!("the old connection of the move stayed silent; closing it and reconnecting");
                            close_old(&old_link);
                        }
                    }
                    drop(old_tasks);
                }
                self.shared.set_relay(RelayState::Down);
                return Moved::Ended(Ended::lost(
                    "the session moved and the new node could not be reached",
                ));
            }
        };
        let action = m.on_event(MoveEvent::NewWelcome { resumed: true }, Instant::now());
        // The new connection is the current one from here on.
        let new_link = opened.link.relay_link();
        self.welcome = opened.welcome.clone();
        self.tasks = Some(opened.tasks);
        self.end = opened.end;
        let generation = self.shared.state.borrow().generation + 1;
        if let Ok(mut swap) = self.shared.swap.lock() {
            *swap = Some((generation, opened.link, opened.welcome));
        }
        self.shared.state.send_modify(|s| s.generation = generation);
        let (read, events) = opened.inbox.into_parts();
        let _ = self
            .side
            .send((read, events.unwrap_or_else(|| mpsc::channel(1).1)));
        match (action, &old_link) {
            (MoveAction::SendOnBoth, Some(old)) if old_open => {
                self.shared
                    .set_relay(RelayState::Both(old.clone(), new_link.clone()));
            }
            _ => {
                // The old connection had ended meanwhile.
                drop(old_tasks);
                self.shared.set_relay(RelayState::Up(new_link));
                tracing::info!("moved (the old connection had ended)");
                return Moved::Settled;
            }
        }
        tracing::info!("relaying on both connections until the old node closes the old one");
        loop {
            let wake = m
                .wake_at()
                .unwrap_or_else(|| Instant::now() + OLD_CLOSE_AFTER);
            tokio::select! {
                _ = &mut old_end, if old_open => {
                    drop(old_tasks);
                    let action = m.on_event(MoveEvent::OldClosed, Instant::now());
                    self.mover.set_overlap(false);
                    if action == MoveAction::UseNew {
                        self.shared.set_relay(RelayState::Up(new_link));
                        tracing::info!("moved");
                        return Moved::Settled;
                    }
                    // Old only, and now it is gone too.
                    self.shared.set_relay(RelayState::Down);
                    return Moved::Ended(Ended::lost("both connections of the move ended"));
                }
                ended = &mut self.end, if m.phase() == MovePhase::Overlap => {
                    let ended = ended.unwrap_or_else(|_| Ended::lost("connection reader stopped"));
                    self.tasks = None;
                    let redirected = self.memory(|m| m.redirect.is_some()).unwrap_or(false);
                    if redirected {
                        // The new node sent the client on: follow as usual.
                        m.on_event(
                            MoveEvent::Redirect {
                                on: Conn::New,
                                reason: RedirectReason::Session,
                                unasked: true,
                                in_session: true,
                                version,
                            },
                            Instant::now(),
                        );
                        self.mover.set_overlap(false);
                        close_old(&old_link);
                        drop(old_tasks);
                        return Moved::Ended(ended);
                    }
                    // Lost the new one: the old one until it closes.
                    m.on_event(MoveEvent::NewClosed, Instant::now());
                    self.mover.set_overlap(false);
                    if let Some(old) = &old_link {
                        self.shared.set_relay(RelayState::Up(old.clone()));
                    }
                    tracing::info!("the new connection of the move ended ({ended}); staying on the old one");
                }
                _ = tokio::time::sleep_until(wake.into()), if m.wake_at().is_some() => {
                    match m.tick(Instant::now()) {
                        MoveAction::CloseOld => {
                            tracing::info!("the old node kept the old connection open; closing it");
                            self.mover.set_overlap(false);
                            close_old(&old_link);
                            drop(old_tasks);
                            self.shared.set_relay(RelayState::Up(new_link));
                            return Moved::Settled;
                        }
                        MoveAction::Reconnect => {
                            // Old only, and its node went silent.
                            tracing::info!("the old connection of the move stayed silent; closing it and reconnecting");
                            close_old(&old_link);
                            drop(old_tasks);
                            self.shared.set_relay(RelayState::Down);
                            return Moved::Ended(Ended::lost("both connections of the move were lost"));
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Tell the client it is over.
    fn give_up(&self, ended: Ended) {
        self.shared.set_relay(RelayState::Gone(ended.clone()));
        self.shared
            .state
            .send_modify(|s| s.gone = Some(ended.clone()));
        self.emit(Event::Closed(ended));
    }

    fn emit(&self, e: Event) {
        let _ = self.plane.send(Segment::Event(e));
    }

    fn memory<T>(&self, f: impl FnOnce(&mut Memory) -> T) -> Option<T> {
        self.shared.memory.lock().ok().map(|mut m| f(&mut m))
    }
}

/// The config for reconnecting: the first connection's raw QUIC endpoint
/// reused, so that TLS resumes and Hello goes as 0-RTT data.
pub(super) fn reconnect_config(cfg: &ClientConfig, link: &Link) -> ClientConfig {
    let mut cfg = cfg.clone();
    if let Link::Quic {
        wire: Wire::Quic(_),
        endpoint: Some(ep),
        ..
    } = link
    {
        if matches!(cfg.transport, ClientTransport::Quic | ClientTransport::Auto) {
            cfg.endpoint = Some(QuicEndpoint(ep.clone()));
        }
    }
    cfg
}
