//! The session core: connections, peers, sessions, join codes, routing, resume.
//!
//! This is a synchronous state machine with no sockets, tasks or clocks of its
//! own (the sans-IO style of quinn-proto and str0m). Transports feed it events
//! (`admit`, `open`, `handle`, `closed`, `route`) with the current time, drain
//! what it wants done from `poll_output`, and ask `poll_timeout` when it next
//! needs to run its timers (`handle_timeout`): the shell arms exactly that
//! deadline, and tests drive time by hand. Every rule of the service,
//! who may talk to whom, limits, resume, host hand-over, lives here, and is
//! unit-tested below without a network.
//!
//! Vocabulary: a *connection* is one transport connection (`ConnId`); a *peer*
//! is a player identity (`PeerId`) that outlives a dropped connection for the
//! resume grace period; a *session* is a group of peers found by a join code.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

mod admission;
mod budgets;
mod cluster;
mod codes;
pub use admission::{address_key, Admission};
use admission::{Pending, PerIp};
use budgets::Throttled;
pub use cluster::{Answer, Lookup, Persist};
#[cfg(test)]
use codes::CODE_ALPHABET;
pub use codes::{normalize_code, CODE_LEN};

use crate::cluster::{password_hash, token_hash};
use crate::limits::{Limits, TokenBucket};
use crate::protocol::{
    ClientKind, ClientMsg, CreateSession, ErrorCode, Hello, JoinSession, LeaveReason, PeerId,
    PeerInfo, RelayMode, ServerMsg, SessionInfo, Signal, Welcome, ALL_PEERS, MAX_NAME_BYTES,
    MAX_PASSWORD_BYTES, PROTOCOL_VERSION, RESUME_TOKEN_LEN,
};
use crate::turn::IceConfig;
use cluster::ClusterCore;
pub use fsp2p_protocol::{Transport, Via};

/// One transport connection, numbered by the core.
pub type ConnId = u64;

/// The current time, twice: monotonic for timers, wall clock for timestamps and TURN expiry.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Monotonic time, for timers and rates.
    pub mono: Instant,
    /// Wall-clock time in Unix milliseconds, for timestamps and TURN expiry.
    pub unix_ms: u64,
}

impl Now {
    /// The system clocks.
    pub fn system() -> Self {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Now {
            mono: Instant::now(),
            unix_ms,
        }
    }

    /// This time plus `d` (tests step time with it).
    pub fn after(self, d: Duration) -> Self {
        Now {
            mono: self.mono + d,
            unix_ms: self.unix_ms + d.as_millis() as u64,
        }
    }
}

/// What the transport knows about a connection when it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnMeta {
    /// The transport it came in on.
    pub transport: Transport,
    /// The client's IP address, for per-address limits (connections, failed
    /// joins, relay egress). IPv6 addresses count by their /64: one host or
    /// home network usually holds a whole /64.
    pub ip: Option<IpAddr>,
}

/// Something the core wants the transports to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send a control message on the connection's control stream.
    Send {
        /// The connection.
        conn: ConnId,
        /// The message.
        msg: ServerMsg,
    },
    /// Close the connection with this application error code (after sending what was queued).
    Close {
        /// The connection.
        conn: ConnId,
        /// Its application error code.
        code: ErrorCode,
        /// Why, for the client and the logs.
        reason: String,
    },
    /// (cluster mode) Ask the directory, then call [`Core::answer`] for
    /// the connection with what it said. The connection's messages wait
    /// meanwhile.
    Lookup(Lookup),
    /// (cluster mode) The core took in a session from the directory that it
    /// did not hold: over from a node that died, handed over by a draining
    /// one, or its own from before a restart. Emitted once per session taken
    /// in, however many of its players' lookups raced to bring it (the
    /// shell counts it; it is not a message to anyone).
    TookIn {
        /// The session's join code.
        code: String,
    },
}

/// Something the core has to do at a given time. Entries are not removed
/// when the state they were made for moves on: each is checked when due,
/// and acts only if it still applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// The connection must have said `Hello` by now.
    Hello(ConnId),
    /// The peer's resume grace ends.
    Grace(PeerId),
    /// A rate-limit report is owed to the connection.
    Report(ConnId),
    /// The session may have been idle for its TTL.
    Idle(u64),
    /// The address may be forgotten (unused, budgets refilled).
    Forget(IpAddr),
}

/// A receiver of one relayed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The receiving connection.
    pub conn: ConnId,
    /// How it wants relay frames.
    pub mode: RelayMode,
}

/// Why a relay frame was not forwarded (a label of the drop counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelayDrop {
    /// Header missing or undecodable.
    Malformed,
    /// The sender is not in a session (or has not said hello).
    NotInSession,
    /// Payload over `max_relay_payload`.
    TooLarge,
    /// Over the sender's frames/s or bytes/s budget.
    RateLimited,
    /// Over the relay egress budget of the sender's IP address (`relay_out_bytes_per_ip`).
    IpRateLimited,
    /// The destination is not a peer of the sender's session (or is the sender).
    UnknownPeer,
    /// The destination peer is between connections (resume grace).
    PeerAway,
    /// The receiver's queue was full or its transport refused the frame (set by the I/O shell).
    ReceiverBusy,
    /// The frame is larger than the receiver's path allows (set by the I/O shell).
    ReceiverTooSmall,
}

impl RelayDrop {
    /// Every reason, in declaration order (`reason as usize` indexes it).
    pub const ALL: [RelayDrop; 9] = [
        RelayDrop::Malformed,
        RelayDrop::NotInSession,
        RelayDrop::TooLarge,
        RelayDrop::RateLimited,
        RelayDrop::IpRateLimited,
        RelayDrop::UnknownPeer,
        RelayDrop::PeerAway,
        RelayDrop::ReceiverBusy,
        RelayDrop::ReceiverTooSmall,
    ];

    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            RelayDrop::Malformed => "malformed",
            RelayDrop::NotInSession => "not_in_session",
            RelayDrop::TooLarge => "too_large",
            RelayDrop::RateLimited => "rate_limited",
            RelayDrop::IpRateLimited => "ip_rate_limited",
            RelayDrop::UnknownPeer => "unknown_peer",
            RelayDrop::PeerAway => "peer_away",
            RelayDrop::ReceiverBusy => "receiver_busy",
            RelayDrop::ReceiverTooSmall => "receiver_too_small",
        }
    }
}

struct Conn {
    meta: ConnMeta,
    peer: Option<PeerId>,
    control: TokenBucket,
    relay_frames: TokenBucket,
    relay_bytes: TokenBucket,
    failed_joins: u32,
    /// Control messages dropped over `signals_per_sec`, not yet reported.
    over_rate: Throttled,
    /// Signals dropped because a receiver's signal budget was spent.
    over_receiver: Throttled,
    /// Opened on 0-RTT data, address not yet proven: holds no slot of its
    /// address until [`Core::confirm`].
    provisional: bool,
    /// Sent to another node (cluster mode): it gets no `GoingAway`.
    redirected: bool,
}

struct Peer {
    name: String,
    client: ClientKind,
    relay_mode: RelayMode,
    /// The resume token, once this node has seen it (a peer taken over from
    /// another node is known by the token's hash until it resumes).
    token: Option<[u8; RESUME_TOKEN_LEN]>,
    /// [`token_hash`] of the token: how the core finds the peer on resume.
    token_sha256: String,
    /// `None` while the peer is between connections.
    conn: Option<ConnId>,
    /// When the connection was lost (resume grace runs from here).
    away_since: Option<Instant>,
    session: Option<u64>,
    /// Signal bytes this peer may still be sent, by sender
    /// (`signal_bytes_per_sec_per_receiver` each): one member flooding signals
    /// at it is throttled before its control queue fills and it is dropped as
    /// a slow consumer, and the others' offers and candidates still pass.
    signals_in: HashMap<PeerId, TokenBucket>,
}

struct Session {
    code: String,
    host: PeerId,
    /// In join order; the first is the next host.
    members: Vec<PeerId>,
    max_peers: u32,
    /// [`password_hash`] of the password, if it has one.
    password_sha256: Option<String>,
    /// Cluster mode: the directory's epoch of this session (see
    /// [`crate::cluster::SessionRecord::epoch`]); 0 on a single node.
    epoch: u64,
    last_activity: Instant,
    /// The address that created it, charged for it (`max_sessions_per_ip`).
    owner_ip: Option<IpAddr>,
}

/// The session core. See the module documentation.
pub struct Core {
    limits: Limits,
    ice: IceConfig,
    rng: StdRng,
    conns: HashMap<ConnId, Conn>,
    peers: HashMap<PeerId, Peer>,
    sessions: HashMap<u64, Session>,
    codes: HashMap<String, u64>,
    /// Peers by the hash of their resume token.
    tokens: HashMap<String, PeerId>,
    /// What each client address with open connections may still do.
    per_ip: HashMap<IpAddr, PerIp>,
    /// Connection attempts in flight on the whole server.
    pending: Pending,
    /// What has to happen when, earliest first (see [`Timer`]).
    timers: BTreeSet<(Instant, Timer)>,
    next_conn: ConnId,
    next_peer: PeerId,
    next_session: u64,
    shutting_down: bool,
    out: VecDeque<Output>,
    /// Cluster mode's state; `None` on a single node.
    cluster: Option<ClusterCore>,
}

impl Core {
    /// A core whose randomness (join codes, resume tokens) comes from the OS.
    pub fn new(limits: Limits, ice: IceConfig) -> Self {
        Self::with_rng(limits, ice, StdRng::from_os_rng())
    }

    /// A core with a given random generator (deterministic tests).
    pub fn with_rng(limits: Limits, ice: IceConfig, rng: StdRng) -> Self {
        Core {
            limits,
            ice,
            rng,
            conns: HashMap::new(),
            peers: HashMap::new(),
            sessions: HashMap::new(),
            codes: HashMap::new(),
            tokens: HashMap::new(),
            per_ip: HashMap::new(),
            pending: Pending::default(),
            timers: BTreeSet::new(),
            next_conn: 1,
            next_peer: 1,
            next_session: 1,
            shutting_down: false,
            out: VecDeque::new(),
            cluster: None,
        }
    }

    /// The limits the core enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }
    /// Known peers (connected, or within the resume grace).
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }
    /// Sessions in existence.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }
    /// Connection attempts in flight (QUIC handshakes, WebTransport waiting
    /// for CONNECT), and how many of them came from unvalidated addresses.
    pub fn pending_count(&self) -> (usize, usize) {
        (
            self.pending.validated + self.pending.unvalidated,
            self.pending.unvalidated,
        )
    }

    /// The transport a connection came in on.
    pub fn transport_of(&self, conn: ConnId) -> Option<Transport> {
        self.conns.get(&conn).map(|c| c.meta.transport)
    }

    /// The peer a connection speaks for, once it has said hello.
    pub fn peer_of(&self, conn: ConnId) -> Option<PeerId> {
        self.conns.get(&conn).and_then(|c| c.peer)
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// A transport accepted a connection whose address is proven (a
    /// completed QUIC handshake, 0-RTT data, a TCP connection). It now holds
    /// a connection slot. `Err` means refuse it with that code.
    pub fn open(&mut self, now: Now, meta: ConnMeta) -> Result<ConnId, ErrorCode> {
        self.open_conn(now, meta, false)
    }

    /// A QUIC connection that sent 0-RTT data before its handshake completed:
    /// the client holds a ticket from an earlier connection, but its source
    /// address is not proven (tickets are not bound to addresses). It is
    /// served at once (its Hello is answered in 0.5-RTT), but takes no slot
    /// of its address until [`Core::confirm`]; meanwhile its attempt stays
    /// pending (bounded as unvalidated handshakes are).
    pub fn open_provisional(&mut self, now: Now, meta: ConnMeta) -> Result<ConnId, ErrorCode> {
        self.open_conn(now, meta, true)
    }

    /// The handshake of a provisional connection completed: its address is
    /// proven, and it now takes a slot of its address (or is refused).
    pub fn confirm(&mut self, conn: ConnId) -> Result<(), ErrorCode> {
        let max = self.limits.max_connections_per_ip;
        let Some(c) = self.conns.get_mut(&conn) else {
            return Ok(());
        };
        if !c.provisional {
            return Ok(());
        }
        if let Some(a) = c.meta.ip.and_then(|ip| self.per_ip.get_mut(&ip)) {
            if a.conns >= max {
                return Err(ErrorCode::ServerFull);
            }
            a.conns += 1;
        }
        c.provisional = false;
        Ok(())
    }

    fn open_conn(
        &mut self,
        now: Now,
        mut meta: ConnMeta,
        provisional: bool,
    ) -> Result<ConnId, ErrorCode> {
        meta.ip = meta.ip.map(address_key);
        if self.shutting_down {
            return Err(ErrorCode::ShuttingDown);
        }
        if self.conns.len() >= self.limits.max_connections {
            return Err(ErrorCode::ServerFull);
        }
        if let Some(ip) = meta.ip {
            let a = self
                .per_ip
                .entry(ip)
                .or_insert_with(|| PerIp::new(now.mono, &self.limits));
            if a.conns >= self.limits.max_connections_per_ip {
                return Err(ErrorCode::ServerFull);
            }
            if !provisional {
                a.conns += 1;
            }
        }
        let id = self.next_conn;
        self.next_conn += 1;
        let l = &self.limits;
        self.conns.insert(
            id,
            Conn {
                meta,
                peer: None,
                control: TokenBucket::new(now.mono, l.signals_per_sec, l.signals_per_sec * 2),
                relay_frames: TokenBucket::new(
                    now.mono,
                    l.relay_datagrams_per_sec,
                    l.relay_datagrams_per_sec,
                ),
                relay_bytes: TokenBucket::new(
                    now.mono,
                    l.relay_bytes_per_sec,
                    l.relay_bytes_per_sec,
                ),
                failed_joins: 0,
                over_rate: Throttled::default(),
                over_receiver: Throttled::default(),
                provisional,
                redirected: false,
            },
        );
        self.arm(now.mono + self.limits.hello_timeout(), Timer::Hello(id));
        Ok(id)
    }

    /// A control frame from `conn` could not be decoded: tell it why and close it.
    pub fn bad_frame(&mut self, conn: ConnId, code: ErrorCode, detail: &str) {
        self.fail(conn, code, detail.to_string());
    }

    /// A decoded control message from `conn`.
    pub fn handle(&mut self, now: Now, conn: ConnId, msg: ClientMsg) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let peer = c.peer;
        if self.waiting(conn, &msg) {
            return;
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.control.try_take(now.mono, 1) {
            if c.over_rate.drop_one(now.mono) {
                self.report_over_rate(now.mono, conn);
            } else {
                self.owe_report(conn);
            }
            return;
        }
        match (msg, peer) {
            (ClientMsg::Hello(hello), None) => self.hello(now, conn, hello),
            (ClientMsg::Hello(_), Some(_)) => {
                self.fail(conn, ErrorCode::ProtocolViolation, "second Hello".into())
            }
            (_, None) => self.fail(
                conn,
                ErrorCode::ProtocolViolation,
                "the first message must be Hello".into(),
            ),
            (ClientMsg::CreateSession(req), Some(p)) => self.create(now, conn, p, req),
            (ClientMsg::JoinSession(req), Some(p)) => self.join(now, conn, p, req),
            (ClientMsg::Signal { to, signal }, Some(p)) => self.signal(now, conn, p, to, signal),
            (ClientMsg::LeaveSession, Some(p)) => {
                if self.peers.get(&p).and_then(|x| x.session).is_some() {
                    self.leave_session(p, LeaveReason::Left);
                    self.send(
                        conn,
                        ServerMsg::SessionLeft {
                            reason: LeaveReason::Left,
                        },
                    );
                } else {
                    self.error(conn, ErrorCode::NotInSession, "not in a session".into());
                }
            }
            (ClientMsg::Ping { client_time_ms }, Some(_)) => self.send(
                conn,
                ServerMsg::Pong {
                    client_time_ms,
                    server_time_ms: now.unix_ms,
                },
            ),
        }
    }

    /// The connection is gone. `clean` means the client closed it on purpose
    /// (application close code 0): its peer leaves at once. Otherwise the peer
    /// keeps its seat for the resume grace period.
    pub fn closed(&mut self, now: Now, conn: ConnId, clean: bool) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.forget_wait(conn);
        if let Some(ip) = c.meta.ip {
            if let Some(a) = self.per_ip.get_mut(&ip).filter(|_| !c.provisional) {
                a.conns = a.conns.saturating_sub(1);
            }
            self.maybe_forget(ip);
        }
        let Some(p) = c.peer else { return };
        let Some(peer) = self.peers.get_mut(&p) else {
            return;
        };
        if peer.conn != Some(conn) {
            return; // replaced by a resumed connection already
        }
        if clean || self.limits.resume_grace_ms == 0 {
            self.remove_peer(p, LeaveReason::Left);
            return;
        }
        peer.conn = None;
        peer.away_since = Some(now.mono);
        let session = peer.session;
        let grace_ends = now.mono + self.limits.resume_grace();
        self.arm(grace_ends, Timer::Grace(p));
        if let Some(s) = session {
            self.broadcast(
                s,
                Some(p),
                ServerMsg::PeerStatus {
                    peer: p,
                    online: false,
                },
            );
        }
    }

    /// Where a relay frame from `conn` to `dest` goes. Fills `targets` (cleared
    /// first) and returns the sender's id for the rewritten header. This is the
    /// per-datagram path: no allocation, a few hash lookups.
    pub fn route(
        &mut self,
        now: Instant,
        conn: ConnId,
        dest: PeerId,
        payload_len: usize,
        targets: &mut Vec<Target>,
    ) -> Result<PeerId, RelayDrop> {
        targets.clear();
        let c = self.conns.get_mut(&conn).ok_or(RelayDrop::NotInSession)?;
        let from = c.peer.ok_or(RelayDrop::NotInSession)?;
        let peer = self.peers.get(&from).ok_or(RelayDrop::NotInSession)?;
        let sid = peer.session.ok_or(RelayDrop::NotInSession)?;
        if payload_len > self.limits.max_relay_payload as usize {
            return Err(RelayDrop::TooLarge);
        }
        if !c.relay_frames.try_take(now, 1) || !c.relay_bytes.try_take(now, payload_len as u32) {
            return Err(RelayDrop::RateLimited);
        }
        let ip = c.meta.ip;
        let session = self.sessions.get_mut(&sid).ok_or(RelayDrop::NotInSession)?;
        session.last_activity = now;
        let target_of = |id: &PeerId| -> Option<Target> {
            let p = self.peers.get(id)?;
            Some(Target {
                conn: p.conn?,
                mode: p.relay_mode,
            })
        };
        if dest == ALL_PEERS {
            targets.extend(
                session
                    .members
                    .iter()
                    .filter(|m| **m != from)
                    .filter_map(target_of),
            );
        } else if dest != from && session.members.contains(&dest) {
            let t = target_of(&dest).ok_or(RelayDrop::PeerAway)?;
            targets.push(t);
        } else {
            return Err(RelayDrop::UnknownPeer);
        }
        // The address pays for every copy the server will send.
        let out = (payload_len * targets.len()).min(u32::MAX as usize) as u32;
        let budgeted = self.limits.relay_out_bytes_per_ip > 0;
        if let Some(a) = ip
            .filter(|_| budgeted)
            .and_then(|ip| self.per_ip.get_mut(&ip))
        {
            if !a.relay_out.try_take(now, out) {
                targets.clear();
                return Err(RelayDrop::IpRateLimited);
            }
        }
        Ok(from)
    }

    /// When the core next needs [`Core::handle_timeout`], if ever: the
    /// earliest of its hello deadlines, resume graces, owed rate-limit
    /// reports, session idle TTLs and addresses to forget.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// Run every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Now) {
        // What is due now; a timer a firing re-arms waits for the next call.
        let mut due = Vec::new();
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now.mono {
                break;
            }
            self.timers.pop_first();
            due.push(timer);
        }
        for timer in due {
            self.fire(now, timer);
        }
    }

    fn arm(&mut self, at: Instant, timer: Timer) {
        self.timers.insert((at, timer));
    }

    /// One due timer; it acts only if what it was armed for still holds.
    fn fire(&mut self, now: Now, timer: Timer) {
        match timer {
            Timer::Hello(conn) => {
                let late = self.conns.get(&conn).is_some_and(|c| c.peer.is_none());
                if late {
                    self.fail(conn, ErrorCode::HelloTimeout, "no Hello in time".into());
                }
            }
            Timer::Grace(p) => {
                let grace = self.limits.resume_grace();
                let away = self.peers.get(&p).and_then(|x| x.away_since);
                if away.is_some_and(|t| now.mono.saturating_duration_since(t) >= grace) {
                    self.remove_peer(p, LeaveReason::TimedOut);
                }
            }
            Timer::Report(conn) => {
                let owed = self.conns.get(&conn).map(|c| {
                    (
                        c.over_rate.due(now.mono) || c.over_receiver.due(now.mono),
                        c.over_rate.dropped + c.over_receiver.dropped > 0,
                    )
                });
                match owed {
                    Some((true, _)) => self.report_over_rate(now.mono, conn),
                    Some((false, true)) => self.owe_report(conn),
                    _ => {}
                }
            }
            Timer::Idle(sid) => {
                let ttl = self.limits.session_idle_ttl();
                let Some(last) = self.sessions.get(&sid).map(|s| s.last_activity) else {
                    return;
                };
                if now.mono.saturating_duration_since(last) >= ttl {
                    self.end_session(sid, LeaveReason::SessionExpired);
                } else {
                    // Traffic moved it on (the relay path arms nothing).
                    self.arm(last + ttl, Timer::Idle(sid));
                }
            }
            Timer::Forget(ip) => {
                let Some(a) = self.per_ip.get(&ip) else {
                    return;
                };
                if a.forgettable(now.mono) {
                    self.per_ip.remove(&ip);
                } else {
                    self.maybe_forget(ip);
                }
            }
        }
    }

    /// Begin a graceful shutdown: refuse new connections and tell everyone to
    /// come back (with their resume token) after `reconnect_after_ms`.
    pub fn shutdown(&mut self, reconnect_after_ms: u32) {
        self.shutting_down = true;
        let conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.redirected)
            .map(|(id, _)| *id)
            .collect();
        for conn in conns {
            self.send(
                conn,
                ServerMsg::GoingAway {
                    reconnect_after_ms,
                    message: "server shutting down".into(),
                },
            );
        }
    }

    // ----- control messages -----

    fn hello(&mut self, now: Now, conn: ConnId, hello: Hello) {
        self.hello_after(now, conn, hello, false)
    }

    /// `Hello`; `looked_up` once the directory was asked about its token
    /// (cluster mode), so a token it does not know either makes a new peer.
    fn hello_after(&mut self, now: Now, conn: ConnId, hello: Hello, looked_up: bool) {
        if hello.version != PROTOCOL_VERSION {
            return self.fail(
                conn,
                ErrorCode::UnsupportedVersion,
                format!(
                    "protocol version {} is not supported; this server speaks {}",
                    hello.version, PROTOCOL_VERSION
                ),
            );
        }
        if hello.name.len() > MAX_NAME_BYTES {
            return self.fail(
                conn,
                ErrorCode::InvalidArgument,
                format!("name is longer than {MAX_NAME_BYTES} bytes"),
            );
        }
        if let Some(token) = &hello.resume_token {
            let hash = token_hash(token);
            if let Some(p) = self.tokens.get(&hash).copied() {
                return self.resume(now, conn, p, hello);
            }
            if !looked_up && token.len() == RESUME_TOKEN_LEN && self.cluster.is_some() {
                let lookup = Lookup::Token {
                    conn,
                    token_sha256: hash,
                };
                return self.wait_for(conn, lookup, ClientMsg::Hello(hello));
            }
            self.error(
                conn,
                ErrorCode::ResumeFailed,
                "resume token unknown or expired; you are a new peer".into(),
            );
        }
        let id = self.new_peer_id();
        let mut token = [0u8; RESUME_TOKEN_LEN];
        self.rng.fill_bytes(&mut token);
        let token_sha256 = token_hash(&token);
        self.tokens.insert(token_sha256.clone(), id);
        self.peers.insert(
            id,
            Peer {
                name: hello.name,
                client: hello.client,
                relay_mode: hello.relay_mode,
                token: Some(token),
                token_sha256,
                conn: Some(conn),
                away_since: None,
                session: None,
                signals_in: HashMap::new(),
            },
        );
        if let Some(c) = self.conns.get_mut(&conn) {
            c.peer = Some(id);
        }
        let welcome = self.welcome(now, id, false);
        self.send(conn, welcome);
    }

    fn resume(&mut self, now: Now, conn: ConnId, p: PeerId, hello: Hello) {
        let Some(peer) = self.peers.get_mut(&p) else {
            return;
        };
        let old = peer.conn.replace(conn);
        let was_away = peer.away_since.take().is_some();
        peer.relay_mode = hello.relay_mode;
        peer.client = hello.client;
        if peer.token.is_none() {
            peer.token = hello.resume_token.as_deref().and_then(token_key);
        }
        let session = peer.session;
        if let Some(sid) = session {
            self.mark_dirty(sid);
        }
        if let Some(old) = old {
            // The old connection is still open (the client noticed the break
            // before we did): this one takes over.
            if let Some(c) = self.conns.get_mut(&old) {
                c.peer = None;
            }
            self.fail(
                old,
                ErrorCode::Replaced,
                "resumed on another connection".into(),
            );
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.peer = Some(p);
        }
        let welcome = self.welcome(now, p, true);
        self.send(conn, welcome);
        if let Some(sid) = session {
            if let Some(info) = self.session_info(sid) {
                self.send(conn, ServerMsg::SessionJoined(info));
            }
            if was_away {
                self.broadcast(
                    sid,
                    Some(p),
                    ServerMsg::PeerStatus {
                        peer: p,
                        online: true,
                    },
                );
            }
        }
    }

    fn welcome(&self, now: Now, p: PeerId, resumed: bool) -> ServerMsg {
        let l = &self.limits;
        let token = self
            .peers
            .get(&p)
            .and_then(|x| x.token)
            .map(|t| t.to_vec())
            .unwrap_or_default();
        ServerMsg::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            peer_id: p,
            resume_token: token,
            resumed,
            ice_servers: self.ice.ice_servers(p, now.unix_ms / 1000),
            limits: crate::protocol::Limits {
                max_frame_bytes: l.max_frame_bytes,
                max_relay_payload: l.max_relay_payload,
                relay_datagrams_per_sec: l.relay_datagrams_per_sec,
                relay_bytes_per_sec: l.relay_bytes_per_sec,
                signals_per_sec: l.signals_per_sec,
                max_peers_per_session: l.max_peers_per_session,
                resume_grace_ms: l.resume_grace_ms.min(u64::from(u32::MAX)) as u32,
            },
            server_time_ms: now.unix_ms,
        })
    }

    fn create(&mut self, now: Now, conn: ConnId, p: PeerId, req: CreateSession) {
        if self.peers.get(&p).and_then(|x| x.session).is_some() {
            return self.error(
                conn,
                ErrorCode::AlreadyInSession,
                "leave your session before creating another".into(),
            );
        }
        let max = self.limits.max_peers_per_session;
        let max_peers = if req.max_peers == 0 {
            max
        } else {
            req.max_peers
        };
        if max_peers < 2 || max_peers > max {
            return self.error(
                conn,
                ErrorCode::InvalidArgument,
                format!("max_peers must be 0 (server default) or 2..={max}"),
            );
        }
        if req
            .password
            .as_ref()
            .is_some_and(|pw| pw.len() > MAX_PASSWORD_BYTES)
        {
            return self.error(
                conn,
                ErrorCode::InvalidArgument,
                format!("password is longer than {MAX_PASSWORD_BYTES} bytes"),
            );
        }
        if self.sessions.len() >= self.limits.max_sessions {
            return self.error(
                conn,
                ErrorCode::TooManySessions,
                "the server has no room for another session; try again later".into(),
            );
        }
        let owner_ip = self.conns.get(&conn).and_then(|c| c.meta.ip);
        let quota = self.limits.max_sessions_per_ip;
        if let Some(a) = owner_ip.and_then(|ip| self.per_ip.get_mut(&ip)) {
            if a.sessions >= quota {
                return self.error(
                    conn,
                    ErrorCode::TooManySessions,
                    format!(
                        "your address already holds {quota} sessions, the most one address may \
                         create; end one first"
                    ),
                );
            }
            a.sessions += 1;
        }
        let code = self.new_code();
        let password = req.password.filter(|pw| !pw.is_empty());
        let pending = cluster::NewSession {
            code,
            max_peers,
            password,
            owner_ip,
        };
        if self.cluster.is_some() {
            // The code must be unique across the cluster before anyone sees it.
            return self.reserve(conn, pending, 0);
        }
        self.found_session(now, conn, p, pending);
    }

    /// A new peer id: the next one on a single node; in cluster mode a
    /// random one, so that ids stay distinct when a session moves to another node.
    fn new_peer_id(&mut self) -> PeerId {
        if self.cluster.is_some() {
            loop {
                let id = self.rng.random_range(1..=PeerId::MAX);
                if !self.peers.contains_key(&id) {
                    return id;
                }
            }
        }
        loop {
            let id = self.next_peer;
            self.next_peer = self.next_peer.checked_add(1).unwrap_or(1);
            if !self.peers.contains_key(&id) {
                return id;
            }
        }
    }

    /// Start the session `req` asked for, its code settled: `p` is its host.
    fn found_session(&mut self, now: Now, conn: ConnId, p: PeerId, req: cluster::NewSession) {
        let sid = self.next_session;
        self.next_session += 1;
        self.codes.insert(req.code.clone(), sid);
        let password_sha256 = req.password.map(|pw| password_hash(&req.code, &pw));
        self.sessions.insert(
            sid,
            Session {
                code: req.code,
                host: p,
                members: vec![p],
                max_peers: req.max_peers,
                password_sha256,
                epoch: 0,
                last_activity: now.mono,
                owner_ip: req.owner_ip,
            },
        );
        self.mark_dirty(sid);
        if let Some(peer) = self.peers.get_mut(&p) {
            peer.session = Some(sid);
        }
        self.arm(now.mono + self.limits.session_idle_ttl(), Timer::Idle(sid));
        if let Some(info) = self.session_info(sid) {
            self.send(conn, ServerMsg::SessionCreated(info));
        }
    }

    fn join(&mut self, now: Now, conn: ConnId, p: PeerId, req: JoinSession) {
        if self.peers.get(&p).and_then(|x| x.session).is_some() {
            return self.error(
                conn,
                ErrorCode::AlreadyInSession,
                "leave your session before joining another".into(),
            );
        }
        // An address whose failed-join budget is spent is refused before the
        // code is looked at: a guess then tells nothing. The connection stays
        // open (a player behind the same NAT as a brute-forcer only waits).
        if let Some(wait) = self.join_lockout(now.mono, conn) {
            return self.failed_join(
                now,
                conn,
                ErrorCode::TooManyJoinAttempts,
                format!(
                    "too many failed joins from your network address (at most {} a minute); \
                     try again in {wait} s",
                    self.limits.max_join_attempts
                ),
            );
        }
        self.join_after(now, conn, p, req, false)
    }

    /// `JoinSession`, after the lockout check; `looked_up` once the
    /// directory was asked about the code (cluster mode).
    fn join_after(&mut self, now: Now, conn: ConnId, p: PeerId, req: JoinSession, looked_up: bool) {
        let code = normalize_code(&req.code);
        let found = self.codes.get(&code).copied();
        if found.is_none() && !looked_up && self.cluster.is_some() && code.len() == CODE_LEN {
            let lookup = Lookup::Code { conn, code };
            return self.wait_for(conn, lookup, ClientMsg::JoinSession(req));
        }
        let Some(sid) = found else {
            // The code a player typed is a secret: not echoed into logs.
            return self.failed_join(
                now,
                conn,
                ErrorCode::UnknownSession,
                "no session has that code".into(),
            );
        };
        let Some(session) = self.sessions.get_mut(&sid) else {
            return self.failed_join(now, conn, ErrorCode::UnknownSession, "session ended".into());
        };
        if let Some(pw) = &session.password_sha256 {
            let given = req.password.as_deref().map(|g| password_hash(&code, g));
            if given.as_deref() != Some(pw.as_str()) {
                return self.failed_join(
                    now,
                    conn,
                    ErrorCode::WrongPassword,
                    "wrong password".into(),
                );
            }
        }
        if session.members.len() as u32 >= session.max_peers {
            let message = format!(
                "session {} is full ({} peers)",
                session.code, session.max_peers
            );
            return self.error(conn, ErrorCode::SessionFull, message);
        }
        session.members.push(p);
        session.last_activity = now.mono;
        if let Some(peer) = self.peers.get_mut(&p) {
            peer.session = Some(sid);
        }
        self.mark_dirty(sid);
        if let Some(info) = self.session_info(sid) {
            self.send(conn, ServerMsg::SessionJoined(info));
        }
        if let Some(me) = self.peer_info(p) {
            self.broadcast(sid, Some(p), ServerMsg::PeerJoined(me));
        }
    }

    fn signal(&mut self, now: Now, conn: ConnId, from: PeerId, to: PeerId, signal: Signal) {
        let Some(sid) = self.peers.get(&from).and_then(|x| x.session) else {
            return self.error(conn, ErrorCode::NotInSession, "join a session first".into());
        };
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        session.last_activity = now.mono;
        let len = signal.budget_len();
        if to == ALL_PEERS {
            let receivers: Vec<PeerId> = session
                .members
                .iter()
                .copied()
                .filter(|m| *m != from)
                .collect();
            let msg = ServerMsg::Signal { from, signal };
            let mut dropped = false;
            for m in receivers {
                let Some(target) = self.peers.get(&m).and_then(|x| x.conn) else {
                    continue;
                };
                if self.receiver_takes(now.mono, from, m, len) {
                    self.send(target, msg.clone());
                } else {
                    dropped = true;
                }
            }
            if dropped {
                self.over_receiver(now.mono, conn);
            }
            return;
        }
        if to == from || !session.members.contains(&to) {
            return self.error(
                conn,
                ErrorCode::UnknownPeer,
                format!("peer {to} is not in your session"),
            );
        }
        match self.peers.get(&to).and_then(|x| x.conn) {
            Some(target) => {
                if self.receiver_takes(now.mono, from, to, len) {
                    self.send(target, ServerMsg::Signal { from, signal });
                } else {
                    self.over_receiver(now.mono, conn);
                }
            }
            None => self.error(
                conn,
                ErrorCode::UnknownPeer,
                format!("peer {to} is reconnecting; signal dropped"),
            ),
        }
    }

    // ----- membership -----

    /// Remove a peer from its session, telling the others; hand the host role on.
    fn leave_session(&mut self, p: PeerId, reason: LeaveReason) {
        let Some(sid) = self.peers.get_mut(&p).and_then(|x| x.session.take()) else {
            return;
        };
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        session.members.retain(|m| *m != p);
        if session.members.is_empty() {
            if let Some(s) = self.sessions.remove(&sid) {
                self.codes.remove(&s.code);
                self.release_session_quota(s.owner_ip);
                self.ended(s.code, s.epoch);
            }
            return;
        }
        let new_host = (session.host == p).then(|| session.members[0]);
        if let Some(h) = new_host {
            session.host = h;
        }
        self.mark_dirty(sid);
        self.broadcast(sid, None, ServerMsg::PeerLeft { peer: p, reason });
        if let Some(host) = new_host {
            self.broadcast(sid, None, ServerMsg::HostChanged { host });
        }
    }

    fn remove_peer(&mut self, p: PeerId, reason: LeaveReason) {
        self.leave_session(p, reason);
        for peer in self.peers.values_mut() {
            peer.signals_in.remove(&p);
        }
        if let Some(peer) = self.peers.remove(&p) {
            self.tokens.remove(&peer.token_sha256);
        }
    }

    fn end_session(&mut self, sid: u64, reason: LeaveReason) {
        let Some(session) = self.sessions.remove(&sid) else {
            return;
        };
        self.codes.remove(&session.code);
        self.release_session_quota(session.owner_ip);
        self.ended(session.code.clone(), session.epoch);
        for m in session.members {
            if let Some(peer) = self.peers.get_mut(&m) {
                peer.session = None;
                if let Some(conn) = peer.conn {
                    self.send(conn, ServerMsg::SessionLeft { reason });
                }
            }
        }
    }

    fn release_session_quota(&mut self, owner: Option<IpAddr>) {
        let Some(ip) = owner else { return };
        if let Some(a) = self.per_ip.get_mut(&ip) {
            a.sessions = a.sessions.saturating_sub(1);
        }
        self.maybe_forget(ip);
    }

    fn session_info(&self, sid: u64) -> Option<SessionInfo> {
        let s = self.sessions.get(&sid)?;
        Some(SessionInfo {
            code: s.code.clone(),
            host: s.host,
            max_peers: s.max_peers,
            idle_ttl_secs: self.limits.session_idle_ttl_secs.min(u64::from(u32::MAX)) as u32,
            peers: s
                .members
                .iter()
                .filter_map(|m| self.peer_info(*m))
                .collect(),
        })
    }

    fn peer_info(&self, p: PeerId) -> Option<PeerInfo> {
        let peer = self.peers.get(&p)?;
        Some(PeerInfo {
            id: p,
            name: peer.name.clone(),
            client: peer.client,
        })
    }

    // ----- output helpers -----

    fn send(&mut self, conn: ConnId, msg: ServerMsg) {
        self.out.push_back(Output::Send { conn, msg });
    }

    /// Send `msg` to every connected member of session `sid` except `except`.
    fn broadcast(&mut self, sid: u64, except: Option<PeerId>, msg: ServerMsg) {
        let Some(s) = self.sessions.get(&sid) else {
            return;
        };
        for m in &s.members {
            if Some(*m) == except {
                continue;
            }
            if let Some(conn) = self.peers.get(m).and_then(|p| p.conn) {
                self.out.push_back(Output::Send {
                    conn,
                    msg: msg.clone(),
                });
            }
        }
    }

    fn error(&mut self, conn: ConnId, code: ErrorCode, message: String) {
        debug_assert!(!code.is_fatal());
        self.send(
            conn,
            ServerMsg::Error {
                code: code as u16,
                message,
            },
        );
    }

    /// Send a fatal error and close the connection. Its peer keeps its seat
    /// (it may resume), like any other lost connection.
    fn fail(&mut self, conn: ConnId, code: ErrorCode, message: String) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        self.send(
            conn,
            ServerMsg::Error {
                code: code as u16,
                message: message.clone(),
            },
        );
        self.out.push_back(Output::Close {
            conn,
            code,
            reason: message,
        });
    }
}

fn token_key(token: &[u8]) -> Option<[u8; RESUME_TOKEN_LEN]> {
    token.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ClientKind, RelayMode};

    struct World {
        core: Core,
        now: Now,
        /// The client address of connections opened next.
        ip: IpAddr,
    }

    fn limits() -> Limits {
        Limits {
            max_sessions: 4,
            max_peers_per_session: 4,
            max_join_attempts: 3,
            ..Limits::default()
        }
    }

    impl World {
        fn new() -> Self {
            Self::with(limits(), IceConfig::default())
        }
        fn with(limits: Limits, ice: IceConfig) -> Self {
            World {
                core: Core::with_rng(limits, ice, StdRng::seed_from_u64(1)),
                now: Now::system(),
                ip: IpAddr::from([192, 0, 2, 1]),
            }
        }
        fn advance(&mut self, d: Duration) {
            self.now = self.now.after(d);
            self.core.handle_timeout(self.now);
        }
        fn outputs(&mut self) -> Vec<Output> {
            std::iter::from_fn(|| self.core.poll_output()).collect()
        }
        fn sent_to(&mut self, conn: ConnId) -> Vec<ServerMsg> {
            self.outputs()
                .into_iter()
                .filter_map(|o| match o {
                    Output::Send { conn: c, msg } if c == conn => Some(msg),
                    _ => None,
                })
                .collect()
        }
        fn open(&mut self) -> ConnId {
            self.core
                .open(
                    self.now,
                    ConnMeta {
                        transport: Transport::Quic,
                        ip: Some(self.ip),
                    },
                )
                .unwrap()
        }
        fn msg(&mut self, conn: ConnId, m: ClientMsg) {
            self.core.handle(self.now, conn, m);
        }
        /// Open a connection and say hello; returns (conn, peer, token).
        fn hello_as(&mut self, name: &str, mode: RelayMode) -> (ConnId, PeerId, Vec<u8>) {
            let conn = self.open();
            self.msg(conn, hello(name, mode, None));
            match self.sent_to(conn).pop() {
                Some(ServerMsg::Welcome(w)) => (conn, w.peer_id, w.resume_token),
                other => panic!("expected Welcome, got {other:?}"),
            }
        }
        fn host(&mut self) -> (ConnId, PeerId, String) {
            let (c, p, _) = self.hello_as("host", RelayMode::Datagram);
            self.msg(
                c,
                ClientMsg::CreateSession(CreateSession {
                    max_peers: 0,
                    password: None,
                }),
            );
            match self.sent_to(c).pop() {
                Some(ServerMsg::SessionCreated(info)) => (c, p, info.code),
                other => panic!("expected SessionCreated, got {other:?}"),
            }
        }
        fn joiner(&mut self, code: &str, mode: RelayMode) -> (ConnId, PeerId) {
            let (c, p, _) = self.hello_as("joiner", mode);
            self.msg(c, join(code));
            let out = self.sent_to(c);
            assert!(
                matches!(out.last(), Some(ServerMsg::SessionJoined(_))),
                "{out:?}"
            );
            (c, p)
        }
        fn route(
            &mut self,
            conn: ConnId,
            dest: PeerId,
            len: usize,
        ) -> Result<(PeerId, Vec<Target>), RelayDrop> {
            let mut t = Vec::new();
            self.core
                .route(self.now.mono, conn, dest, len, &mut t)
                .map(|f| (f, t))
        }
    }

    fn hello(name: &str, mode: RelayMode, token: Option<Vec<u8>>) -> ClientMsg {
        ClientMsg::Hello(Hello {
            version: PROTOCOL_VERSION,
            client: ClientKind::Rust,
            relay_mode: mode,
            name: name.into(),
            resume_token: token,
        })
    }

    fn join(code: &str) -> ClientMsg {
        ClientMsg::JoinSession(JoinSession {
            code: code.into(),
            password: None,
        })
    }

    fn error_code(msgs: &[ServerMsg]) -> Option<u16> {
        msgs.iter().rev().find_map(|m| match m {
            ServerMsg::Error { code, .. } => Some(*code),
            _ => None,
        })
    }

    #[test]
    fn codes_are_crockford_and_typing_is_forgiven() {
        let mut w = World::new();
        let (_, _, code) = w.host();
        assert_eq!(code.len(), CODE_LEN);
        assert!(code.bytes().all(|b| CODE_ALPHABET.contains(&b)));
        let typed = format!("{}-{}", &code[..3], &code[3..]).to_lowercase();
        let (c, _) = w.joiner(&typed, RelayMode::Datagram);
        assert!(w.core.peer_of(c).is_some());
        assert_eq!(normalize_code("o1l-Ix"), "0111X");
    }

    #[test]
    fn join_tells_everyone_and_signals_reach_only_the_target() {
        let mut w = World::new();
        let (hc, hp, code) = w.host();
        let (ac, ap) = w.joiner(&code, RelayMode::Datagram);
        let out = w.sent_to(hc);
        assert!(w.outputs().is_empty());
        assert_eq!(out.len(), 0, "outputs were drained by joiner()");
        let (bc, bp) = {
            let (c, p, _) = w.hello_as("b", RelayMode::Stream);
            w.msg(c, join(&code));
            let all = w.outputs();
            let to_b: Vec<_> = all
                .iter()
                .filter(|o| matches!(o, Output::Send { conn, .. } if *conn == c))
                .collect();
            match to_b.as_slice() {
                [Output::Send {
                    msg: ServerMsg::SessionJoined(info),
                    ..
                }] => {
                    assert_eq!(info.host, hp);
                    assert_eq!(
                        info.peers.iter().map(|p| p.id).collect::<Vec<_>>(),
                        vec![hp, ap, p]
                    );
                }
                other => panic!("{other:?}"),
            }
            let joined_to: Vec<ConnId> = all
                .iter()
                .filter_map(|o| match o {
                    Output::Send {
                        conn,
                        msg: ServerMsg::PeerJoined(info),
                    } if info.id == p => Some(*conn),
                    _ => None,
                })
                .collect();
            assert_eq!(joined_to, vec![hc, ac]);
            (c, p)
        };
        let offer = Signal::Offer { sdp: "v=0".into() };
        w.msg(
            hc,
            ClientMsg::Signal {
                to: bp,
                signal: offer.clone(),
            },
        );
        assert_eq!(
            w.outputs(),
            vec![Output::Send {
                conn: bc,
                msg: ServerMsg::Signal {
                    from: hp,
                    signal: offer
                },
            }]
        );
        // Broadcast signal reaches both others, not the sender.
        w.msg(
            ac,
            ClientMsg::Signal {
                to: ALL_PEERS,
                signal: Signal::EndOfCandidates,
            },
        );
        let conns: Vec<ConnId> = w
            .outputs()
            .iter()
            .map(|o| match o {
                Output::Send { conn, .. } => *conn,
                _ => 0,
            })
            .collect();
        assert_eq!(conns, vec![hc, bc]);
    }

    #[test]
    fn sessions_are_isolated_for_signals_and_relay() {
        let mut w = World::new();
        let (h1, _, code1) = w.host();
        let (_a1, p1) = w.joiner(&code1, RelayMode::Datagram);
        let (h2, _, code2) = w.host();
        let (a2, p2) = w.joiner(&code2, RelayMode::Datagram);
        // Signal across sessions: refused, nothing delivered.
        w.msg(
            h1,
            ClientMsg::Signal {
                to: p2,
                signal: Signal::EndOfCandidates,
            },
        );
        let out = w.outputs();
        assert_eq!(out.len(), 1);
        assert!(
            matches!(&out[0], Output::Send { conn, msg: ServerMsg::Error { code: 15, .. } } if *conn == h1)
        );
        // Relay across sessions: dropped.
        assert_eq!(w.route(h1, p2, 10), Err(RelayDrop::UnknownPeer));
        // Relay to all stays in the session.
        let (_, targets) = w.route(h2, ALL_PEERS, 10).unwrap();
        assert_eq!(
            targets,
            vec![Target {
                conn: a2,
                mode: RelayMode::Datagram
            }]
        );
        let (from, targets) = w.route(h1, p1, 10).unwrap();
        assert_eq!(targets.len(), 1);
        assert_ne!(from, p1);
    }

    #[test]
    fn relay_checks_membership_size_and_rate() {
        let mut l = limits();
        l.relay_datagrams_per_sec = 10;
        l.max_relay_payload = 100;
        let mut w = World::with(l, IceConfig::default());
        let (lonely, _, _) = w.hello_as("x", RelayMode::Datagram);
        assert_eq!(w.route(lonely, ALL_PEERS, 10), Err(RelayDrop::NotInSession));
        let stranger = w.open();
        assert_eq!(
            w.route(stranger, ALL_PEERS, 10),
            Err(RelayDrop::NotInSession)
        );
        let (h, hp, code) = w.host();
        let (a, ap) = w.joiner(&code, RelayMode::Stream);
        assert_eq!(w.route(h, ap, 101), Err(RelayDrop::TooLarge));
        assert_eq!(w.route(h, hp, 10), Err(RelayDrop::UnknownPeer), "to self");
        let (from, t) = w.route(h, ap, 100).unwrap();
        assert_eq!(
            (from, t),
            (
                hp,
                vec![Target {
                    conn: a,
                    mode: RelayMode::Stream
                }]
            )
        );
        let ok = (0..50).filter(|_| w.route(h, ap, 1).is_ok()).count();
        // Burst of 10 per second; two were spent above (one delivered, one to a bad destination).
        assert_eq!(ok, 8);
        assert_eq!(w.route(h, ap, 1), Err(RelayDrop::RateLimited));
        w.advance(Duration::from_millis(500));
        assert!(w.route(h, ap, 1).is_ok());
    }

    #[test]
    fn relay_drop_reasons_index_their_own_counter() {
        for (i, why) in RelayDrop::ALL.iter().enumerate() {
            assert_eq!(*why as usize, i, "{why:?}");
        }
    }

    #[test]
    fn relay_egress_is_budgeted_per_address_fan_out_included() {
        let mut w = World::with(
            Limits {
                relay_out_bytes_per_ip: 1000,
                relay_datagrams_per_sec: 0,
                relay_bytes_per_sec: 0,
                // The largest frame to everyone (3 × 300) fits in the 1000-byte burst.
                max_relay_payload: 300,
                ..limits()
            },
            IceConfig::default(),
        );
        // Two players behind one NAT, two elsewhere, in one session.
        let (h, _, code) = w.host();
        let (a, _) = w.joiner(&code, RelayMode::Datagram);
        w.ip = IpAddr::from([198, 51, 100, 7]);
        let (b, bp) = w.joiner(&code, RelayMode::Datagram);
        let (_, cp) = w.joiner(&code, RelayMode::Datagram);
        // 100 bytes to all = 3 copies = 300 bytes of the shared 1000.
        assert_eq!(w.route(h, ALL_PEERS, 100).map(|(_, t)| t.len()), Ok(3));
        assert_eq!(w.route(a, ALL_PEERS, 100).map(|(_, t)| t.len()), Ok(3));
        assert_eq!(w.route(h, ALL_PEERS, 100).map(|(_, t)| t.len()), Ok(3));
        // 100 left: all-peers does not fit, one copy does.
        assert_eq!(
            w.route(a, ALL_PEERS, 100),
            Err(RelayDrop::IpRateLimited),
            "the connections of one address share its budget"
        );
        assert!(w.route(a, bp, 100).is_ok());
        assert_eq!(w.route(h, cp, 1), Err(RelayDrop::IpRateLimited));
        // Another address is not affected.
        assert_eq!(w.route(b, ALL_PEERS, 300).map(|(_, t)| t.len()), Ok(3));
        // It refills over time.
        w.advance(Duration::from_millis(500));
        assert!(w.route(h, ALL_PEERS, 100).is_ok());
        // 200 left. Closing every connection and coming back does not buy a
        // fresh budget: two copies of 101 bytes do not fit.
        w.core.closed(w.now, h, true);
        w.core.closed(w.now, a, true);
        w.ip = IpAddr::from([192, 0, 2, 1]);
        let (h2, _, _) = w.hello_as("again", RelayMode::Datagram);
        w.msg(h2, join(&code));
        let _ = w.outputs();
        assert_eq!(w.route(h2, ALL_PEERS, 101), Err(RelayDrop::IpRateLimited));
        assert_eq!(w.route(h2, ALL_PEERS, 100).map(|(_, t)| t.len()), Ok(2));
        // Once the budget has refilled, nobody is connected and the session
        // it created has ended, it is forgotten.
        w.core.closed(w.now, h2, true);
        w.advance(Duration::from_secs(2));
        assert!(
            w.core.per_ip.contains_key(&IpAddr::from([192, 0, 2, 1])),
            "its session is still open (and counts against its session quota)"
        );
        let (b_ip, c_conn) = (w.ip, w.core.peers.get(&cp).and_then(|p| p.conn));
        w.core.closed(w.now, b, true);
        w.core.closed(w.now, c_conn.expect("c connected"), true);
        w.advance(Duration::from_secs(2));
        assert!(!w.core.per_ip.contains_key(&IpAddr::from([192, 0, 2, 1])));
        assert!(!w.core.per_ip.contains_key(&b_ip));
    }

    #[test]
    fn the_largest_frame_to_everyone_always_fits_the_address_budget() {
        // 1100 bytes to 3 others is 3300 bytes, more than a 1000-byte budget:
        // the burst grows to hold it, so such a frame is limited, not banned.
        let mut w = World::with(
            Limits {
                relay_out_bytes_per_ip: 1000,
                ..limits()
            },
            IceConfig::default(),
        );
        let (h, _, code) = w.host();
        for _ in 0..3 {
            w.joiner(&code, RelayMode::Datagram);
        }
        assert!(w.route(h, ALL_PEERS, 1100).is_ok());
        assert_eq!(w.route(h, ALL_PEERS, 1100), Err(RelayDrop::IpRateLimited));
        w.advance(Duration::from_millis(3300));
        assert!(w.route(h, ALL_PEERS, 1100).is_ok());
    }

    #[test]
    fn per_address_limits_count_ipv6_by_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(other));
        assert_eq!(address_key(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        // IPv4 (also when mapped into IPv6) is its own key.
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(address_key(v4), v4);
        assert_eq!(address_key("::ffff:192.0.2.7".parse().unwrap()), v4);
        // The connection cap sees one /64 as one address.
        let mut w = World::with(
            Limits {
                max_connections_per_ip: 1,
                ..limits()
            },
            IceConfig::default(),
        );
        w.ip = a;
        w.open();
        let meta = |ip| ConnMeta {
            transport: Transport::Quic,
            ip: Some(ip),
        };
        assert_eq!(w.core.open(w.now, meta(b)), Err(ErrorCode::ServerFull));
        assert!(w.core.open(w.now, meta(other)).is_ok());
    }

    #[test]
    fn host_leaving_hands_over_and_everyone_is_told() {
        let mut w = World::new();
        let (hc, hp, code) = w.host();
        let (ac, ap) = w.joiner(&code, RelayMode::Datagram);
        let (bc, _) = w.joiner(&code, RelayMode::Datagram);
        w.outputs();
        w.msg(hc, ClientMsg::LeaveSession);
        let out = w.outputs();
        assert!(out.contains(&Output::Send {
            conn: hc,
            msg: ServerMsg::SessionLeft {
                reason: LeaveReason::Left
            }
        }));
        for c in [ac, bc] {
            assert!(out.contains(&Output::Send {
                conn: c,
                msg: ServerMsg::PeerLeft {
                    peer: hp,
                    reason: LeaveReason::Left
                }
            }));
            assert!(out.contains(&Output::Send {
                conn: c,
                msg: ServerMsg::HostChanged { host: ap }
            }));
        }
        // The old host is out: relay from it is dropped.
        assert_eq!(w.route(hc, ALL_PEERS, 1), Err(RelayDrop::NotInSession));
        // Last one out removes the session and frees its code.
        w.msg(ac, ClientMsg::LeaveSession);
        w.msg(bc, ClientMsg::LeaveSession);
        assert_eq!(w.core.session_count(), 0);
        let (c, _, _) = w.hello_as("late", RelayMode::Datagram);
        w.msg(c, join(&code));
        assert_eq!(
            error_code(&w.sent_to(c)),
            Some(ErrorCode::UnknownSession as u16)
        );
    }

    #[test]
    fn lost_connection_keeps_the_seat_for_the_grace_period() {
        let mut w = World::new();
        let (hc, hp, code) = w.host();
        let (ac, ap, token) = {
            let (c, p, t) = w.hello_as("a", RelayMode::Datagram);
            w.msg(c, join(&code));
            (c, p, t)
        };
        w.outputs();
        w.core.closed(w.now, ac, false);
        assert_eq!(
            w.sent_to(hc),
            vec![ServerMsg::PeerStatus {
                peer: ap,
                online: false
            }]
        );
        assert_eq!(w.route(hc, ap, 1), Err(RelayDrop::PeerAway));
        w.advance(Duration::from_secs(5));
        // Resume on a new connection: same id, back in the session.
        let nc = w.open();
        w.msg(nc, hello("a", RelayMode::Datagram, Some(token)));
        let out = w.outputs();
        assert!(
            matches!(&out[0], Output::Send { conn, msg: ServerMsg::Welcome(wl) } if *conn == nc && wl.peer_id == ap && wl.resumed)
        );
        assert!(
            matches!(&out[1], Output::Send { conn, msg: ServerMsg::SessionJoined(i) } if *conn == nc && i.host == hp)
        );
        assert!(out.contains(&Output::Send {
            conn: hc,
            msg: ServerMsg::PeerStatus {
                peer: ap,
                online: true
            }
        }));
        let (_, t) = w.route(hc, ap, 1).unwrap();
        assert_eq!(t[0].conn, nc);
    }

    #[test]
    fn grace_expiry_removes_the_peer_and_its_token() {
        let mut w = World::new();
        let (hc, _, code) = w.host();
        let (ac, ap, token) = {
            let (c, p, t) = w.hello_as("a", RelayMode::Datagram);
            w.msg(c, join(&code));
            (c, p, t)
        };
        w.core.closed(w.now, ac, false);
        w.outputs();
        w.advance(Duration::from_millis(limits().resume_grace_ms + 1));
        assert_eq!(
            w.sent_to(hc),
            vec![ServerMsg::PeerLeft {
                peer: ap,
                reason: LeaveReason::TimedOut
            }]
        );
        let nc = w.open();
        w.msg(nc, hello("a", RelayMode::Datagram, Some(token)));
        let out = w.sent_to(nc);
        assert_eq!(error_code(&out[..1]), Some(ErrorCode::ResumeFailed as u16));
        assert!(matches!(&out[1], ServerMsg::Welcome(wl) if !wl.resumed && wl.peer_id != ap));
    }

    #[test]
    fn clean_close_leaves_at_once() {
        let mut w = World::new();
        let (hc, _, code) = w.host();
        let (ac, ap) = w.joiner(&code, RelayMode::Datagram);
        w.outputs();
        w.core.closed(w.now, ac, true);
        assert_eq!(
            w.sent_to(hc),
            vec![ServerMsg::PeerLeft {
                peer: ap,
                reason: LeaveReason::Left
            }]
        );
        assert_eq!(w.core.peer_count(), 1);
    }

    #[test]
    fn resume_while_old_connection_is_open_replaces_it() {
        let mut w = World::new();
        let (old, p, token) = w.hello_as("a", RelayMode::Datagram);
        let new = w.open();
        w.msg(new, hello("a", RelayMode::Stream, Some(token)));
        let out = w.outputs();
        assert!(out.iter().any(
            |o| matches!(o, Output::Close { conn, code: ErrorCode::Replaced, .. } if *conn == old)
        ));
        // When the old connection finally closes, the peer is unaffected.
        w.core.closed(w.now, old, false);
        assert_eq!(w.core.peer_of(new), Some(p));
        assert_eq!(w.core.peer_count(), 1);
    }

    #[test]
    fn join_brute_force_is_cut_off() {
        let mut w = World::new();
        let (_, _, code) = w.host();
        let (c, _, _) = w.hello_as("guesser", RelayMode::Datagram);
        for i in 0..3 {
            w.msg(c, join(&format!("ZZZZZ{i}")));
            assert_eq!(
                error_code(&w.sent_to(c)),
                Some(ErrorCode::UnknownSession as u16)
            );
        }
        w.msg(c, join("ZZZZZZ"));
        let out = w.outputs();
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Close {
                code: ErrorCode::TooManyJoinAttempts,
                ..
            }
        )));
        let _ = code;
    }

    #[test]
    fn reconnecting_does_not_reset_the_join_guard_of_an_address() {
        let mut w = World::new(); // every test connection comes from 192.0.2.1
        let (_, _, code) = w.host();
        // Fresh connections, one guess each: the address budget (3) runs out.
        for i in 0..3 {
            let (c, _, _) = w.hello_as("guesser", RelayMode::Datagram);
            w.msg(c, join(&format!("ZZZZZ{i}")));
            assert_eq!(
                error_code(&w.sent_to(c)),
                Some(ErrorCode::UnknownSession as u16)
            );
        }
        // The address is locked out: even the right code is refused, before
        // it is looked at, with a message that says what happened; but a
        // connection that failed once is not closed.
        let (typo, _, _) = w.hello_as("honest", RelayMode::Datagram);
        w.msg(typo, join(&code));
        let out = w.outputs();
        assert!(!out.iter().any(|o| matches!(o, Output::Close { .. })));
        let said = out.iter().find_map(|o| match o {
            Output::Send {
                msg: ServerMsg::Error { code, message },
                ..
            } => Some((*code, message.clone())),
            _ => None,
        });
        let (said_code, message) = said.expect("an error");
        assert_eq!(said_code, ErrorCode::TooManyJoinAttempts as u16);
        assert!(
            message.contains("network address") && message.contains("try again in"),
            "{message}"
        );
        // A connection that keeps trying while locked out is closed after its own budget.
        let closed = (0..5).any(|_| {
            w.msg(typo, join("ZZZZZZ"));
            w.outputs().iter().any(|o| {
                matches!(
                    o,
                    Output::Close {
                        code: ErrorCode::TooManyJoinAttempts,
                        ..
                    }
                )
            })
        });
        assert!(closed);
        // A minute later the address may try again.
        w.advance(Duration::from_secs(60));
        let (c, _, _) = w.hello_as("later", RelayMode::Datagram);
        w.msg(c, join("ZZZZZZ"));
        assert_eq!(
            error_code(&w.sent_to(c)),
            Some(ErrorCode::UnknownSession as u16)
        );
    }

    #[test]
    fn password_full_session_and_session_cap() {
        let mut w = World::new();
        let (hc, _, _) = w.hello_as("h", RelayMode::Datagram);
        w.msg(
            hc,
            ClientMsg::CreateSession(CreateSession {
                max_peers: 2,
                password: Some("pw".into()),
            }),
        );
        let code = match w.sent_to(hc).pop() {
            Some(ServerMsg::SessionCreated(i)) => i.code,
            o => panic!("{o:?}"),
        };
        let (c, _, _) = w.hello_as("a", RelayMode::Datagram);
        w.msg(c, join(&code));
        assert_eq!(
            error_code(&w.sent_to(c)),
            Some(ErrorCode::WrongPassword as u16)
        );
        w.msg(
            c,
            ClientMsg::JoinSession(JoinSession {
                code: code.clone(),
                password: Some("pw".into()),
            }),
        );
        assert!(matches!(
            w.sent_to(c).last(),
            Some(ServerMsg::SessionJoined(_))
        ));
        let (d, _, _) = w.hello_as("d", RelayMode::Datagram);
        w.msg(
            d,
            ClientMsg::JoinSession(JoinSession {
                code,
                password: Some("pw".into()),
            }),
        );
        assert_eq!(
            error_code(&w.sent_to(d)),
            Some(ErrorCode::SessionFull as u16)
        );
        // Cap of 4 sessions: one exists, three more fit, the fifth is refused.
        for _ in 0..3 {
            w.host();
        }
        let (e, _, _) = w.hello_as("e", RelayMode::Datagram);
        w.msg(
            e,
            ClientMsg::CreateSession(CreateSession {
                max_peers: 0,
                password: None,
            }),
        );
        assert_eq!(
            error_code(&w.sent_to(e)),
            Some(ErrorCode::TooManySessions as u16)
        );
        w.msg(
            e,
            ClientMsg::CreateSession(CreateSession {
                max_peers: 99,
                password: None,
            }),
        );
        assert_eq!(
            error_code(&w.sent_to(e)),
            Some(ErrorCode::InvalidArgument as u16)
        );
    }

    #[test]
    fn protocol_order_version_and_hello_timeout() {
        let mut w = World::new();
        let c = w.open();
        w.msg(c, ClientMsg::LeaveSession);
        let out = w.outputs();
        assert!(matches!(
            out.last(),
            Some(Output::Close {
                code: ErrorCode::ProtocolViolation,
                ..
            })
        ));
        let c = w.open();
        w.msg(
            c,
            ClientMsg::Hello(Hello {
                version: 99,
                client: ClientKind::Other,
                relay_mode: RelayMode::Datagram,
                name: String::new(),
                resume_token: None,
            }),
        );
        assert!(matches!(
            w.outputs().last(),
            Some(Output::Close {
                code: ErrorCode::UnsupportedVersion,
                ..
            })
        ));
        let (c, _, _) = w.hello_as("x", RelayMode::Datagram);
        w.msg(c, hello("x", RelayMode::Datagram, None));
        assert!(matches!(
            w.outputs().last(),
            Some(Output::Close {
                code: ErrorCode::ProtocolViolation,
                ..
            })
        ));
        let silent = w.open();
        w.advance(Duration::from_millis(limits().hello_timeout_ms));
        assert!(w.outputs().contains(&Output::Close {
            conn: silent,
            code: ErrorCode::HelloTimeout,
            reason: "no Hello in time".into()
        }));
    }

    #[test]
    fn control_flood_is_rate_limited() {
        let mut w = World::new();
        let (c, _, _) = w.hello_as("x", RelayMode::Datagram);
        for _ in 0..200 {
            w.msg(c, ClientMsg::Ping { client_time_ms: 1 });
        }
        let out = w.sent_to(c);
        let pongs = out
            .iter()
            .filter(|m| matches!(m, ServerMsg::Pong { .. }))
            .count();
        let limited: Vec<&String> = out
            .iter()
            .filter_map(|m| match m {
                ServerMsg::Error { code: 5, message } => Some(message),
                _ => None,
            })
            .collect();
        // Burst is 2 x 50; hello took one token. One report for the first
        // drop; the rest are counted and reported a second later, once.
        assert_eq!(pongs, 99);
        assert_eq!(limited.len(), 1, "{limited:?}");
        assert!(limited[0].starts_with("1 control message(s) dropped"));
        w.advance(Duration::from_millis(500));
        w.core.handle_timeout(w.now);
        assert!(w.sent_to(c).is_empty(), "at most one report a second");
        w.advance(Duration::from_millis(500));
        w.core.handle_timeout(w.now);
        let later = w.sent_to(c);
        assert!(
            matches!(&later[..], [ServerMsg::Error { code: 5, message }]
                if message.starts_with("100 control message(s) dropped")),
            "{later:?}"
        );
        w.advance(Duration::from_secs(5));
        w.core.handle_timeout(w.now);
        assert!(w.sent_to(c).is_empty(), "nothing more to report");
    }

    #[test]
    fn a_receivers_signal_budget_throttles_the_flooder_not_the_receiver() {
        let mut w = World::with(
            Limits {
                signals_per_sec: 0,
                signal_bytes_per_sec_per_receiver: 10_000,
                ..limits()
            },
            IceConfig::default(),
        );
        let (h, hp, code) = w.host();
        let (flooder, _) = w.joiner(&code, RelayMode::Datagram);
        let (other, _) = w.joiner(&code, RelayMode::Datagram);
        let _ = w.outputs();
        let app = |n: usize| ClientMsg::Signal {
            to: hp,
            signal: Signal::App { data: vec![7; n] },
        };
        // Burst: four seconds' worth (40 000 bytes) reaches the host.
        for _ in 0..11 {
            w.msg(flooder, app(3_984)); // 4000 budget bytes each
        }
        let out = w.outputs();
        let to = |conn: ConnId| -> Vec<&ServerMsg> {
            out.iter()
                .filter_map(|o| match o {
                    Output::Send { conn: c, msg } if *c == conn => Some(msg),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(to(h).len(), 10);
        let reports = to(flooder);
        assert!(
            matches!(&reports[..], [ServerMsg::Error { code: 5, message }]
                if message.contains("signal budget at the receiver")),
            "{reports:?}"
        );
        // The flooder's budget at the host is spent; another member's signal
        // to the host still passes (its own budget)...
        w.msg(other, app(100));
        assert_eq!(w.sent_to(h).len(), 1);
        w.msg(flooder, app(100));
        assert!(w.sent_to(h).is_empty(), "the flooder still waits");
        // ...and the flooder's passes once its budget refills; the host was
        // never closed.
        w.advance(Duration::from_millis(100));
        w.msg(flooder, app(100));
        assert_eq!(w.sent_to(h).len(), 1);
        assert!(!w
            .outputs()
            .iter()
            .any(|o| matches!(o, Output::Close { .. })));
    }

    #[test]
    fn one_address_holds_a_bounded_number_of_sessions() {
        let mut w = World::with(
            Limits {
                max_sessions_per_ip: 2,
                ..limits()
            },
            IceConfig::default(),
        );
        let (h1, _, _) = w.host();
        w.host();
        let (c, _, _) = w.hello_as("third", RelayMode::Datagram);
        w.msg(
            c,
            ClientMsg::CreateSession(CreateSession {
                max_peers: 0,
                password: None,
            }),
        );
        assert_eq!(
            error_code(&w.sent_to(c)),
            Some(ErrorCode::TooManySessions as u16)
        );
        // Another address is not affected.
        w.ip = IpAddr::from([198, 51, 100, 7]);
        w.host();
        // A session that ends gives its slot back.
        w.ip = IpAddr::from([192, 0, 2, 1]);
        w.core.closed(w.now, h1, true);
        w.msg(
            c,
            ClientMsg::CreateSession(CreateSession {
                max_peers: 0,
                password: None,
            }),
        );
        assert!(matches!(&w.sent_to(c)[..], [ServerMsg::SessionCreated(_)]));
    }

    /// 0-RTT data proves a ticket, not an address: such a connection is
    /// served but takes no slot of its address until its handshake completes.
    #[test]
    fn a_0rtt_connection_takes_its_addresss_slot_only_when_confirmed() {
        let mut w = World::with(
            Limits {
                max_connections_per_ip: 1,
                ..limits()
            },
            IceConfig::default(),
        );
        let ip = IpAddr::from([203, 0, 113, 9]);
        let meta = ConnMeta {
            transport: Transport::Quic,
            ip: Some(ip),
        };
        // Spoofed 0-RTT connections from one address hold none of its slots...
        let spoofed: Vec<ConnId> = (0..5)
            .map(|_| w.core.open_provisional(w.now, meta).unwrap())
            .collect();
        // ...so the address's own client still gets in.
        let honest = w.core.open(w.now, meta).unwrap();
        // A provisional connection whose handshake completes now is over the cap.
        assert_eq!(w.core.confirm(spoofed[0]), Err(ErrorCode::ServerFull));
        // Closing provisional ones gives back nothing they did not take.
        for c in spoofed {
            w.core.closed(w.now, c, false);
        }
        assert_eq!(
            w.core.open(w.now, meta),
            Err(ErrorCode::ServerFull),
            "the honest client still holds the one slot"
        );
        w.core.closed(w.now, honest, true);
        let again = w.core.open_provisional(w.now, meta).unwrap();
        assert_eq!(w.core.confirm(again), Ok(()));
        assert_eq!(
            w.core.confirm(again),
            Ok(()),
            "confirming twice is harmless"
        );
        assert_eq!(w.core.open(w.now, meta), Err(ErrorCode::ServerFull));
    }

    #[test]
    fn unvalidated_handshakes_get_a_retry_and_hold_no_connection_slot() {
        let mut w = World::with(
            Limits {
                max_unvalidated_handshakes: 5,
                max_unvalidated_handshakes_per_ip: 2,
                max_connections: 8,
                max_connections_per_ip: 3,
                ..limits()
            },
            IceConfig::default(),
        );
        let spoofed = IpAddr::from([203, 0, 113, 9]);
        let honest = IpAddr::from([198, 51, 100, 7]);
        // Two unfinished handshakes from one address, then Retry for it.
        assert_eq!(w.core.admit(w.now, spoofed, false), Admission::Accept);
        assert_eq!(w.core.admit(w.now, spoofed, false), Admission::Accept);
        assert_eq!(w.core.admit(w.now, spoofed, false), Admission::Retry);
        // A client that answered the Retry (validated) gets in, from the
        // same address too: spoofers never answer one.
        assert_eq!(w.core.admit(w.now, spoofed, true), Admission::Accept);
        // Other addresses go on until the server-wide bound, then Retry.
        for i in 0..3 {
            let ip = IpAddr::from([203, 0, 113, 100 + i]);
            assert_eq!(w.core.admit(w.now, ip, false), Admission::Accept);
        }
        assert_eq!(w.core.admit(w.now, honest, false), Admission::Retry);
        assert_eq!(w.core.admit(w.now, honest, true), Admission::Accept);
        assert_eq!(w.core.pending_count(), (7, 5));
        // None of it took a connection slot: the honest client opens.
        w.core.abandon(honest, true);
        let meta = |ip| ConnMeta {
            transport: Transport::Quic,
            ip: Some(ip),
        };
        assert!(w.core.open(w.now, meta(honest)).is_ok());
        // Unfinished handshakes that end give their place back.
        for i in 0..3 {
            w.core.abandon(IpAddr::from([203, 0, 113, 100 + i]), false);
        }
        assert_eq!(w.core.admit(w.now, spoofed, false), Admission::Retry);
        w.core.abandon(spoofed, false);
        assert_eq!(w.core.admit(w.now, spoofed, false), Admission::Accept);
        // A proven address with a connection budget's worth in flight is refused.
        for _ in 0..3 {
            assert_eq!(w.core.admit(w.now, honest, true), Admission::Accept);
        }
        assert_eq!(
            w.core.admit(w.now, honest, true),
            Admission::Refuse(ErrorCode::ServerFull)
        );
        // Opened connections count against the connection caps as before.
        for _ in 0..2 {
            w.core.abandon(honest, true);
            assert!(w.core.open(w.now, meta(honest)).is_ok());
        }
        w.core.abandon(honest, true);
        assert_eq!(
            w.core.open(w.now, meta(honest)),
            Err(ErrorCode::ServerFull),
            "per-address cap"
        );
        // Shutting down refuses at once.
        w.core.shutdown(1000);
        assert_eq!(
            w.core.admit(w.now, honest, true),
            Admission::Refuse(ErrorCode::ShuttingDown)
        );
    }

    #[test]
    fn idle_session_expires_and_members_are_told() {
        let mut w = World::new();
        let (hc, _, code) = w.host();
        let (ac, _) = w.joiner(&code, RelayMode::Datagram);
        w.outputs();
        w.advance(Duration::from_secs(limits().session_idle_ttl_secs - 1));
        assert!(w.outputs().is_empty());
        // Traffic keeps it alive.
        w.route(hc, ALL_PEERS, 1).unwrap();
        w.advance(Duration::from_secs(2));
        assert!(w.outputs().is_empty());
        w.advance(Duration::from_secs(limits().session_idle_ttl_secs));
        let out = w.outputs();
        for c in [hc, ac] {
            assert!(out.contains(&Output::Send {
                conn: c,
                msg: ServerMsg::SessionLeft {
                    reason: LeaveReason::SessionExpired
                }
            }));
        }
        assert_eq!(w.core.session_count(), 0);
    }

    #[test]
    fn welcome_carries_turn_credentials_and_limits() {
        let ice = IceConfig {
            stun_urls: vec!["stun:127.0.0.1:3478".into()],
            turn_urls: vec!["turn:127.0.0.1:3478".into()],
            turn_secret: Some("secret".into()),
            turn_ttl_secs: 600,
        };
        let mut w = World::with(limits(), ice);
        let c = w.open();
        w.msg(c, hello("x", RelayMode::Datagram, None));
        let Some(ServerMsg::Welcome(wl)) = w.sent_to(c).pop() else {
            panic!()
        };
        assert_eq!(wl.ice_servers.len(), 2);
        let user = wl.ice_servers[1].username.clone().unwrap();
        let (expiry, id) = user.split_once(':').unwrap();
        assert_eq!(id, wl.peer_id.to_string());
        assert_eq!(expiry.parse::<u64>().unwrap(), w.now.unix_ms / 1000 + 600);
        assert_eq!(wl.limits.max_relay_payload, 1100);
        assert_eq!(wl.resume_token.len(), RESUME_TOKEN_LEN);
    }

    #[test]
    fn shutdown_says_goodbye_and_refuses_newcomers() {
        let mut w = World::new();
        let (c, _, _) = w.hello_as("x", RelayMode::Datagram);
        w.core.shutdown(2000);
        assert!(matches!(
            w.sent_to(c).as_slice(),
            [ServerMsg::GoingAway {
                reconnect_after_ms: 2000,
                ..
            }]
        ));
        assert_eq!(
            w.core.open(
                w.now,
                ConnMeta {
                    transport: Transport::Quic,
                    ip: None,
                }
            ),
            Err(ErrorCode::ShuttingDown)
        );
    }

    #[test]
    fn one_address_cannot_take_every_seat() {
        let mut l = limits();
        l.max_connections_per_ip = 2;
        let mut w = World::with(l, IceConfig::default());
        let a = w.open(); // all from 192.0.2.1
        w.open();
        let third = w.core.open(
            w.now,
            ConnMeta {
                transport: Transport::Quic,
                ip: Some(IpAddr::from([192, 0, 2, 1])),
            },
        );
        assert_eq!(third, Err(ErrorCode::ServerFull));
        // Another address is fine, and a slot frees when a connection closes.
        assert!(w
            .core
            .open(
                w.now,
                ConnMeta {
                    transport: Transport::Quic,
                    ip: Some(IpAddr::from([198, 51, 100, 7])),
                }
            )
            .is_ok());
        w.core.closed(w.now, a, true);
        w.open();
    }

    #[test]
    fn connection_cap() {
        let mut l = limits();
        l.max_connections = 2;
        let mut w = World::with(l, IceConfig::default());
        let a = w.open();
        w.open();
        assert_eq!(
            w.core.open(
                w.now,
                ConnMeta {
                    transport: Transport::Quic,
                    ip: None,
                }
            ),
            Err(ErrorCode::ServerFull)
        );
        w.core.closed(w.now, a, true);
        w.open();
    }
}
