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

mod access;
mod admission;
mod budgets;
mod cluster;
mod codes;
mod placement;
mod quota;
mod telemetry;
pub use access::AdminRefusal;
pub use admission::{address_key, Admission};
use admission::{Pending, PerIp};
use budgets::Throttled;
pub use cluster::{Answer, Lookup, Persist};
#[cfg(test)]
use codes::CODE_ALPHABET;
pub use codes::{normalize_code, CODE_LEN};
pub use placement::{
    decide_move, place_new, MoveMember, MoveRule, Placement, PlannedMove, DEFAULT_MIN_GAIN_MS,
};
pub use quota::{RemoteUsage, UserCount};
use telemetry::Telemetry;
pub use telemetry::{
    Accepted, LinkObservation, QualityGauges, ReportOutcome, ReportResult, REPORT_BURST,
    REPORT_INTERVAL_MS, SUMMARY_TTL,
};

use crate::auth::{Access, Grant, Revocation};
use crate::cluster::{password_hash, token_hash};
use crate::limits::{Limits, TokenBucket};
use crate::protocol::region_rtts_problem;
use crate::protocol::{
    ClientKind, ClientMsg, CreateSession, ErrorCode, Hello, JoinSession, LeaveReason, PeerId,
    PeerInfo, RelayMode, ServerMsg, SessionInfo, Signal, Welcome, ALL_PEERS, MAX_NAME_BYTES,
    MAX_PASSWORD_BYTES, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, REPORT_PROTOCOL_VERSION,
    RESUME_TOKEN_LEN,
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
    /// A `Report` was taken in or dropped (the shell counts and observes
    /// it; it is not a message to anyone). The gauges are apart:
    /// [`Core::quality_gauges`].
    Report {
        /// The reporting connection.
        conn: ConnId,
        /// Accepted with what to observe, or dropped and why.
        outcome: ReportOutcome,
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
    /// The peer's access token (with this `exp`) expires soon: warn it.
    TokenWarn(PeerId, u64),
    /// The peer's access token (with this `exp`) has expired: cut it off.
    TokenEnd(PeerId, u64),
    /// The connection's latest quality report may have gone stale.
    ReportStale(ConnId),
    /// The session moved to another node and its overlap is over: close
    /// its connections here and forget it (see [`Core::begin_move`]).
    MoveEnd(u64),
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
    /// The sender's access token does not allow the relay (`"relay": false`).
    NotAllowed,
    /// Over the relay budget of the sender's player (`relay_bytes_per_user_per_sec`).
    UserRateLimited,
    /// The receiver's queue was full or its transport refused the frame (set by the I/O shell).
    ReceiverBusy,
    /// The frame is larger than the receiver's path allows (set by the I/O shell).
    ReceiverTooSmall,
}

impl RelayDrop {
    /// Every reason, in declaration order (`reason as usize` indexes it).
    pub const ALL: [RelayDrop; 11] = [
        RelayDrop::Malformed,
        RelayDrop::NotInSession,
        RelayDrop::TooLarge,
        RelayDrop::RateLimited,
        RelayDrop::IpRateLimited,
        RelayDrop::UnknownPeer,
        RelayDrop::PeerAway,
        RelayDrop::NotAllowed,
        RelayDrop::UserRateLimited,
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
            RelayDrop::NotAllowed => "not_allowed",
            RelayDrop::UserRateLimited => "user_rate_limited",
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
    /// The access token from the connection's URL, if any (access control).
    url_token: Option<String>,
    /// Its token forbids the relay.
    relay_denied: bool,
    /// The player (token `sub`) this connection is counted for (access control).
    user: Option<String>,
    /// The protocol version its `Hello` spoke (0 before it).
    version: u16,
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
    /// What its access token allows (`None` on an open server, and for a
    /// peer taken over from another node until it resumes).
    grant: Option<Grant>,
    /// Its latest non-empty `region_rtts` (CreateSession or JoinSession on
    /// this node, or restored from the directory record when the session
    /// was taken in from another node), for moving its session (empty:
    /// none known).
    rtts: Vec<crate::protocol::RegionRtt>,
    /// When it last sent a relay frame (set on the relay path: one store).
    last_relay_at: Option<Instant>,
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
    /// The player that created it (access control), charged for it (`max_sessions_per_user`).
    owner_sub: Option<String>,
    /// When it last moved here from another node, or was created (moves
    /// are at most once per `MoveRule::interval`).
    last_moved: Option<Instant>,
    /// Handed to this node: its members were sent there and it is kept
    /// here only for the overlap (relayed, never written, no broadcasts).
    moving_to: Option<crate::protocol::NodeAddr>,
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
    /// Access control (`serve --auth`); `None`: an open server.
    access: Option<Access>,
    /// Revocations in force, each until the instant beside it.
    revoked: Vec<(Revocation, Instant)>,
    /// What each player (token `sub`) holds on this node (access control).
    users: HashMap<String, quota::UserUsage>,
    /// What each player holds on the other nodes of the cluster, as last read.
    remote_users: HashMap<String, RemoteUsage>,
    /// Quality reports: per-connection buckets and latest summaries, the gauges.
    telemetry: Telemetry,
    /// The live nodes and placement by region (cluster mode).
    regions: placement::Regions,
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
            access: None,
            revoked: Vec::new(),
            users: HashMap::new(),
            remote_users: HashMap::new(),
            telemetry: Telemetry::default(),
            regions: placement::Regions::default(),
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

    /// Players and links by path and grade, from each connection's latest
    /// quality report of the last [`SUMMARY_TTL`].
    pub fn quality_gauges(&self) -> &QualityGauges {
        self.telemetry.gauges()
    }

    /// Reports taken so far, by [`ReportResult`] (declaration order).
    pub fn report_counts(&self) -> [u64; 4] {
        self.telemetry.counts()
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
                url_token: None,
                relay_denied: false,
                user: None,
                version: 0,
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
            (ClientMsg::Report(report), Some(p)) => self.report(now, conn, p, &report),
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
        self.telemetry.closed(conn);
        if let Some(u) = &c.user {
            self.uncharge_conn(u);
        }
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
        let session = peer.session;
        if session
            .and_then(|s| self.sessions.get(&s))
            .is_some_and(|s| s.moving_to.is_some())
        {
            // Moving: the member lives on the new node now; this copy ends
            // with the overlap, telling no one.
            return;
        }
        let Some(peer) = self.peers.get_mut(&p) else {
            return;
        };
        peer.away_since = Some(now.mono);
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
        let peer = self.peers.get_mut(&from).ok_or(RelayDrop::NotInSession)?;
        let sid = peer.session.ok_or(RelayDrop::NotInSession)?;
        peer.last_relay_at = Some(now);
        if c.relay_denied {
            return Err(RelayDrop::NotAllowed);
        }
        if payload_len > self.limits.max_relay_payload as usize {
            return Err(RelayDrop::TooLarge);
        }
        if !c.relay_frames.try_take(now, 1) || !c.relay_bytes.try_take(now, payload_len as u32) {
            return Err(RelayDrop::RateLimited);
        }
        // The player's budget, shared by its connections (access control).
        if let Some(b) = c
            .user
            .as_deref()
            .and_then(|u| self.users.get_mut(u))
            .and_then(|u| u.relay.as_mut())
        {
            if !b.try_take(now, payload_len as u32) {
                return Err(RelayDrop::UserRateLimited);
            }
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
            Timer::TokenWarn(p, exp) => self.token_timer(p, exp, false),
            Timer::TokenEnd(p, exp) => self.token_timer(p, exp, true),
            Timer::ReportStale(conn) => self.telemetry.expire(now.mono, conn),
            Timer::MoveEnd(sid) => self.end_move(sid),
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
        if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&hello.version) {
            return self.fail(
                conn,
                ErrorCode::UnsupportedVersion,
                format!(
                    "protocol version {} is not supported; this server speaks {} to {}",
                    hello.version, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION
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
        let Ok(grant) = self.check_token(now, conn, &hello) else {
            return;
        };
        if let Some(g) = &grant {
            let resuming = hello
                .resume_token
                .as_ref()
                .and_then(|t| self.tokens.get(&token_hash(t)).copied());
            // A resume token this node does not know is looked up first
            // (cluster mode): the check comes when the answer is in, and
            // counts the seat as a resume if the session comes here.
            let looks_up = resuming.is_none()
                && !looked_up
                && self.cluster.is_some()
                && hello
                    .resume_token
                    .as_ref()
                    .is_some_and(|t| t.len() == RESUME_TOKEN_LEN);
            if !looks_up {
                if let Err(message) = self.conn_quota(&g.sub, resuming) {
                    return self.fail(conn, ErrorCode::ServerFull, message);
                }
            }
        }
        if let Some(token) = &hello.resume_token {
            let hash = token_hash(token);
            if let Some(p) = self.tokens.get(&hash).copied() {
                return self.resume(now, conn, p, hello, grant);
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
        let hello_version = hello.version;
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
                grant: None,
                rtts: Vec::new(),
                last_relay_at: None,
            },
        );
        if let Some(c) = self.conns.get_mut(&conn) {
            c.peer = Some(id);
        }
        if let Some(g) = grant {
            self.apply_grant(now, conn, id, g);
        }
        let welcome = self.welcome(now, id, false, hello_version);
        self.send(conn, welcome);
        self.may_report(now, conn, hello_version);
    }

    fn resume(&mut self, now: Now, conn: ConnId, p: PeerId, hello: Hello, grant: Option<Grant>) {
        // A seat is resumed by its own player: a valid token of someone else
        // does not take it over.
        let other_player = match (self.grant_of(p), &grant) {
            (Some(old), Some(new)) => old.sub != new.sub,
            _ => false,
        };
        if other_player {
            return self.fail(
                conn,
                ErrorCode::TokenInvalid,
                "this access token is another player's than the seat being resumed".into(),
            );
        }
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
        if let Some(g) = grant {
            self.apply_grant(now, conn, p, g);
        }
        let welcome = self.welcome(now, p, true, hello.version);
        self.send(conn, welcome);
        self.may_report(now, conn, hello.version);
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

    /// `conn` was welcomed speaking `version`: from 3 on it may send reports.
    fn may_report(&mut self, now: Now, conn: ConnId, version: u16) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.version = version;
        }
        if version >= REPORT_PROTOCOL_VERSION {
            self.telemetry.enable(now.mono, conn);
        }
    }

    /// A quality report from `conn` (peer `p`): counted, and observed if
    /// taken. Links only count for peers of `p`'s session.
    fn report(&mut self, now: Now, conn: ConnId, p: PeerId, report: &crate::protocol::Report) {
        let members = (self.peers.get(&p))
            .and_then(|x| x.session)
            .and_then(|sid| self.sessions.get(&sid))
            .map(|s| s.members.as_slice());
        let (outcome, stale_at) = self.telemetry.take(now.mono, conn, p, members, report);
        if let Some(at) = stale_at {
            self.arm(at, Timer::ReportStale(conn));
        }
        self.out.push_back(Output::Report { conn, outcome });
    }

    /// The `Welcome` for peer `p`. Its `version` is the one the client's
    /// `Hello` spoke (1 or 2): what this connection speaks, so a version-1
    /// client sees the version it knows.
    fn welcome(&self, now: Now, p: PeerId, resumed: bool, version: u16) -> ServerMsg {
        let l = &self.limits;
        let token = self
            .peers
            .get(&p)
            .and_then(|x| x.token)
            .map(|t| t.to_vec())
            .unwrap_or_default();
        ServerMsg::Welcome(Welcome {
            version,
            peer_id: p,
            resume_token: token,
            resumed,
            ice_servers: match self.grant_of(p) {
                // The TURN user is the player, and the credential never
                // outlives the token.
                Some(g) => self
                    .ice
                    .ice_servers_for(&g.sub, now.unix_ms / 1000, Some(g.exp)),
                None => self.ice.ice_servers(p, now.unix_ms / 1000),
            },
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
        if let Some(problem) = region_rtts_problem(&req.region_rtts) {
            return self.error(conn, ErrorCode::InvalidArgument, problem);
        }
        self.keep_rtts(p, &req.region_rtts);
        let grant = self.grant_of(p);
        if grant.is_some_and(|g| !g.create) {
            return self.error(
                conn,
                ErrorCode::Forbidden,
                "your access token does not allow creating sessions".into(),
            );
        }
        // A token's max_peers caps the sessions it creates, like the server's own limit.
        let max = grant
            .and_then(|g| g.max_peers)
            .map_or(self.limits.max_peers_per_session, |m| {
                m.min(self.limits.max_peers_per_session)
            });
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
        // Placement by measured ping: before anything of the session is kept.
        if let Some(node) = self.placement_for(now.mono, &req.region_rtts) {
            self.sent_away(conn);
            return self.redirect(conn, crate::protocol::RedirectReason::Placement, node);
        }
        if self.sessions.len() >= self.limits.max_sessions {
            return self.error(
                conn,
                ErrorCode::TooManySessions,
                "the server has no room for another session; try again later".into(),
            );
        }
        let owner_sub = self.grant_of(p).map(|g| g.sub.clone());
        if let Some(message) = owner_sub.as_deref().and_then(|s| self.session_quota(s)) {
            return self.error(conn, ErrorCode::TooManySessions, message);
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
        if let Some(sub) = &owner_sub {
            self.users.entry(sub.clone()).or_default().sessions += 1;
        }
        let code = self.new_code();
        let password = req.password.filter(|pw| !pw.is_empty());
        let pending = cluster::NewSession {
            code,
            max_peers,
            password,
            owner_ip,
            owner_sub,
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
                owner_sub: req.owner_sub,
                last_moved: Some(now.mono),
                moving_to: None,
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
        if let Some(problem) = region_rtts_problem(&req.region_rtts) {
            return self.error(conn, ErrorCode::InvalidArgument, problem);
        }
        self.keep_rtts(p, &req.region_rtts);
        if self
            .grant_of(p)
            .is_some_and(|g| !g.sessions.allows(&req.code))
        {
            return self.error(
                conn,
                ErrorCode::Forbidden,
                "your access token does not allow joining this session".into(),
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
        if let Some(node) = session.moving_to.clone() {
            // Moving away: joined there, not to this copy that ends soon.
            self.sent_away(conn);
            return self.redirect(conn, crate::protocol::RedirectReason::Moved, node);
        }
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
                self.release_session_quota(s.owner_ip, s.owner_sub.clone());
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
        self.release_session_quota(session.owner_ip, session.owner_sub.clone());
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

    fn release_session_quota(&mut self, owner: Option<IpAddr>, sub: Option<String>) {
        if let Some(sub) = sub {
            self.uncharge_session(&sub);
        }
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
#[path = "session/tests/harness.rs"]
mod harness;
#[cfg(test)]
#[path = "session/tests/session.rs"]
mod tests;

#[cfg(test)]
#[path = "session/tests/access.rs"]
mod access_tests;
