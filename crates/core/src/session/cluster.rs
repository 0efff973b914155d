//! The core's side of cluster mode: what it asks the directory, what it
//! does with the answers, and what it wants written there.
//!
//! The core never talks to Redis. When a request needs the directory (a
//! resume token or a join code this node does not hold, a new session's
//! code to reserve) it emits [`Output::Lookup`] and parks the connection's
//! messages; the shell asks the directory and calls [`Core::answer`]. Every
//! change to a session marks it dirty; the shell drains
//! [`Core::poll_persist`] and writes the records. The relay path never
//! comes here.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;

use super::{Core, Now, Output, Peer, Session, Timer};
use crate::cluster::{MemberRecord, SessionRecord};
use crate::protocol::{ClientMsg, ErrorCode, NodeAddr, Redirect, RedirectReason, ServerMsg};

/// A question for the directory (see [`Output::Lookup`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// `Hello` carried a resume token this node does not know: which session
    /// has a member with this token hash, and where does it live?
    Token {
        /// The connection that asked.
        conn: super::ConnId,
        /// [`crate::cluster::token_hash`] of the token.
        token_sha256: String,
    },
    /// `JoinSession` for a code no session on this node has: where is it?
    Code {
        /// The connection that asked.
        conn: super::ConnId,
        /// The code, canonical form.
        code: String,
    },
    /// A new session: reserve its code across the cluster.
    Reserve {
        /// The connection that asked.
        conn: super::ConnId,
        /// The code to reserve.
        code: String,
    },
}

impl Lookup {
    /// The connection the answer is for.
    pub fn conn(&self) -> super::ConnId {
        match self {
            Lookup::Token { conn, .. }
            | Lookup::Code { conn, .. }
            | Lookup::Reserve { conn, .. } => *conn,
        }
    }
}

/// What the directory said (see [`Core::answer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The session lives on another live node: send the client there.
    Elsewhere(NodeAddr),
    /// This node is the session's home now (it was, or it just took the
    /// session over): here is the record; the core takes it in if it does
    /// not hold it, and carries on with the request.
    Here(SessionRecord),
    /// The directory knows no such session (or token).
    NotFound,
    /// The code is reserved for this node ([`Lookup::Reserve`]).
    Reserved,
    /// The code is taken ([`Lookup::Reserve`]): the core tries another.
    Taken,
    /// The directory cannot be reached.
    Unavailable,
}

/// A write the directory owes (see [`Core::poll_persist`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persist {
    /// Write this record (the session changed).
    Put(SessionRecord),
    /// The session ended: delete it, if this node still owns it at `epoch`.
    Delete {
        /// Its code.
        code: String,
        /// The epoch this node held it at.
        epoch: u64,
    },
}

/// A new session waiting for its code to be reserved.
#[derive(Debug, Clone)]
pub(super) struct NewSession {
    pub(super) code: String,
    pub(super) max_peers: u32,
    pub(super) password: Option<String>,
    pub(super) owner_ip: Option<IpAddr>,
}

/// A connection waiting for the directory.
struct Waiting {
    /// What it asked for (Hello, JoinSession or CreateSession).
    request: ClientMsg,
    /// The session being founded, for a reservation.
    new_session: Option<NewSession>,
    /// Reservations tried so far (each `Taken` tries another code).
    attempts: u32,
    /// Messages that came meanwhile, handled once the answer is in.
    queued: VecDeque<ClientMsg>,
}

/// The core's cluster-mode state.
pub(super) struct ClusterCore {
    /// This node's name (the `home` of the sessions it holds).
    node: String,
    waiting: HashMap<super::ConnId, Waiting>,
    /// Sessions changed since their record was last handed out.
    dirty: BTreeSet<u64>,
    /// Deletions owed.
    ended: VecDeque<(String, u64)>,
    /// Added to the resume grace of the members of a session taken in
    /// from the directory ([`Core::set_takeover_slack`]).
    takeover_slack: std::time::Duration,
}

/// Messages a waiting connection may queue before it is refused.
const MAX_QUEUED: usize = 16;
/// Codes tried for one new session before giving up.
const MAX_RESERVATIONS: u32 = 8;

impl Core {
    /// Run in cluster mode as node `node`: unknown tokens and codes are
    /// looked up, new codes reserved, and sessions written to the directory.
    pub fn enable_cluster(&mut self, node: impl Into<String>) {
        self.cluster = Some(ClusterCore {
            node: node.into(),
            waiting: HashMap::new(),
            dirty: BTreeSet::new(),
            ended: VecDeque::new(),
            takeover_slack: std::time::Duration::ZERO,
        });
    }

    /// Give the members of a session taken in from the directory (after
    /// its node died or drained) `slack` more than the resume grace to
    /// come back. Their grace starts when this node takes the session, but
    /// a player can only start coming back once its client noticed the old
    /// node is gone (its QUIC idle timeout, when the node died without a
    /// word) and gave up on reaching it; a player on WebSocket notices at
    /// once and triggers the take-over, and the grace would end before its
    /// QUIC peers had a chance. The shell sets it from the idle timeout.
    pub fn set_takeover_slack(&mut self, slack: std::time::Duration) {
        if let Some(c) = self.cluster.as_mut() {
            c.takeover_slack = slack;
        }
    }

    /// The next record write the directory owes, if any.
    pub fn poll_persist(&mut self) -> Option<Persist> {
        let c = self.cluster.as_mut()?;
        if let Some((code, epoch)) = c.ended.pop_front() {
            return Some(Persist::Delete { code, epoch });
        }
        loop {
            let sid = self.cluster.as_mut()?.dirty.pop_first()?;
            if let Some(rec) = self.record(sid) {
                return Some(Persist::Put(rec));
            }
        }
    }

    /// This node took back a session the directory gave to another node that
    /// is gone (`rec`, moved home to this node): carry on at its epoch.
    ///
    /// Players who joined the session on that node while it was the home
    /// are taken in too (away, with the resume grace), so they keep their
    /// seats; the others here are told they joined.
    pub fn reclaimed(&mut self, now: Now, rec: SessionRecord) {
        let code = rec.code.clone();
        if let Some(sid) = self.codes.get(&code).copied() {
            let room = self.sessions.get(&sid).map_or(0, |s| {
                (s.max_peers as usize).saturating_sub(s.members.len())
            });
            let joined = self.take_in_members(now, sid, &rec.members, room);
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.members.extend(&joined);
            }
            for p in joined {
                if let Some(info) = self.peer_info(p) {
                    self.broadcast(sid, Some(p), ServerMsg::PeerJoined(info));
                }
            }
        }
        self.import(now, rec);
        if let Some(sid) = self.codes.get(&code).copied() {
            self.mark_dirty(sid);
        }
    }

    /// The sessions this node holds, by code with their epochs (a draining
    /// node hands them over).
    pub fn held_sessions(&self) -> Vec<(String, u64)> {
        self.sessions
            .values()
            .map(|s| (s.code.clone(), s.epoch))
            .collect()
    }

    /// Every session this node holds is to be written to the directory
    /// again (it may have lost them; see [`crate::cluster::must_rewrite`]).
    pub fn rewrite_all(&mut self) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        c.dirty.extend(self.sessions.keys().copied());
    }

    /// The record of the session with this code, as the directory should hold it.
    pub fn session_record(&self, code: &str) -> Option<SessionRecord> {
        self.record(*self.codes.get(code)?)
    }

    /// The session `code` now lives on `node` (the directory refused this
    /// node's write, or this node handed it over while draining): its
    /// connected members are sent there and it is forgotten here, without
    /// telling anyone it ended. Returns how many were redirected.
    pub fn session_moved(&mut self, code: &str, node: &NodeAddr, reason: RedirectReason) -> usize {
        let Some(sid) = self.codes.remove(code) else {
            return 0;
        };
        let Some(session) = self.sessions.remove(&sid) else {
            return 0;
        };
        if let Some(c) = self.cluster.as_mut() {
            c.dirty.remove(&sid);
        }
        self.release_session_quota(session.owner_ip);
        let mut sent = 0;
        for m in session.members {
            let Some(peer) = self.peers.remove(&m) else {
                continue;
            };
            self.tokens.remove(&peer.token_sha256);
            let Some(conn) = peer.conn else { continue };
            if let Some(c) = self.conns.get_mut(&conn) {
                c.peer = None;
                c.redirected = true;
            }
            self.redirect(conn, reason, node.clone());
            sent += 1;
        }
        sent
    }

    /// The directory's answer to the [`Lookup`] made for `conn`.
    pub fn answer(&mut self, now: Now, conn: super::ConnId, answer: Answer) {
        let Some(w) = self.cluster.as_mut().and_then(|c| c.waiting.remove(&conn)) else {
            return;
        };
        if !self.conns.contains_key(&conn) {
            return;
        }
        let Waiting {
            request,
            new_session,
            attempts,
            queued,
        } = w;
        match (request, answer) {
            (_, Answer::Elsewhere(node)) => {
                // What came meanwhile was for the session there: dropped.
                if let Some(pending) = new_session {
                    self.release_session_quota(pending.owner_ip);
                }
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.redirected = true;
                }
                self.redirect(conn, RedirectReason::Session, node);
                return;
            }
            (ClientMsg::Hello(hello), answer) => {
                if answer == Answer::Unavailable {
                    self.fail(
                        conn,
                        ErrorCode::ClusterUnavailable,
                        "the cluster directory cannot be reached to find your session; \
                         reconnect with your resume token in a moment"
                            .into(),
                    );
                    return;
                }
                if let Answer::Here(rec) = answer {
                    self.import(now, rec);
                }
                self.hello_after(now, conn, hello, true);
            }
            (ClientMsg::JoinSession(req), answer) => {
                let Some(p) = self.conns.get(&conn).and_then(|c| c.peer) else {
                    return;
                };
                match answer {
                    Answer::Unavailable => self.error(
                        conn,
                        ErrorCode::ClusterUnavailable,
                        "the cluster directory cannot be reached to find that session; \
                         try again in a moment"
                            .into(),
                    ),
                    answer => {
                        if let Answer::Here(rec) = answer {
                            self.import(now, rec);
                        }
                        self.join_after(now, conn, p, req, true);
                    }
                }
            }
            (ClientMsg::CreateSession(_), answer) => {
                let Some(pending) = new_session else { return };
                let Some(p) = self.conns.get(&conn).and_then(|c| c.peer) else {
                    // Its peer resumed on another connection meanwhile: the
                    // session is not founded, and its quota is given back.
                    self.release_session_quota(pending.owner_ip);
                    return;
                };
                match answer {
                    Answer::Reserved => self.found_session(now, conn, p, pending),
                    Answer::Taken if attempts + 1 < MAX_RESERVATIONS => {
                        let code = self.new_code();
                        self.reserve(conn, NewSession { code, ..pending }, attempts + 1);
                        if let Some(w) =
                            self.cluster.as_mut().and_then(|c| c.waiting.get_mut(&conn))
                        {
                            w.queued = queued;
                        }
                        return;
                    }
                    Answer::Unavailable => {
                        self.release_session_quota(pending.owner_ip);
                        self.error(
                            conn,
                            ErrorCode::ClusterUnavailable,
                            "the cluster directory cannot be reached to reserve a code; \
                             try again in a moment"
                                .into(),
                        );
                    }
                    _ => {
                        self.release_session_quota(pending.owner_ip);
                        self.error(
                            conn,
                            ErrorCode::Internal,
                            "could not find a free join code; try again".into(),
                        );
                    }
                }
            }
            (_, _) => {}
        }
        // Replay what waited, in order; a message may start another wait.
        let mut queued = queued;
        while let Some(msg) = queued.pop_front() {
            let waiting = self
                .cluster
                .as_ref()
                .is_some_and(|c| c.waiting.contains_key(&conn));
            if waiting {
                if let Some(w) = self.cluster.as_mut().and_then(|c| c.waiting.get_mut(&conn)) {
                    w.queued.push_back(msg);
                }
                continue;
            }
            self.handle(now, conn, msg);
        }
    }

    // ----- used by the core -----

    /// True when `conn` waits for the directory: `msg` is queued (or the
    /// connection refused when too much waits).
    pub(super) fn waiting(&mut self, conn: super::ConnId, msg: &ClientMsg) -> bool {
        let Some(w) = self.cluster.as_mut().and_then(|c| c.waiting.get_mut(&conn)) else {
            return false;
        };
        if w.queued.len() >= MAX_QUEUED {
            self.fail(
                conn,
                ErrorCode::ProtocolViolation,
                format!("more than {MAX_QUEUED} messages before an answer"),
            );
            return true;
        }
        w.queued.push_back(msg.clone());
        true
    }

    /// Park `request` from `conn` until the directory answers `lookup`.
    pub(super) fn wait_for(&mut self, conn: super::ConnId, lookup: Lookup, request: ClientMsg) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        c.waiting.insert(
            conn,
            Waiting {
                request,
                new_session: None,
                attempts: 0,
                queued: VecDeque::new(),
            },
        );
        self.out.push_back(Output::Lookup(lookup));
    }

    /// Ask the directory to reserve the code of a session `conn` creates.
    pub(super) fn reserve(&mut self, conn: super::ConnId, pending: NewSession, attempts: u32) {
        let lookup = Lookup::Reserve {
            conn,
            code: pending.code.clone(),
        };
        let request = ClientMsg::CreateSession(crate::protocol::CreateSession {
            max_peers: pending.max_peers,
            password: None,
        });
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        c.waiting.insert(
            conn,
            Waiting {
                request,
                new_session: Some(pending),
                attempts,
                queued: VecDeque::new(),
            },
        );
        self.out.push_back(Output::Lookup(lookup));
    }

    /// `conn` closed: nothing waits for it any more.
    pub(super) fn forget_wait(&mut self, conn: super::ConnId) {
        let pending = self
            .cluster
            .as_mut()
            .and_then(|c| c.waiting.remove(&conn))
            .and_then(|w| w.new_session);
        if let Some(p) = pending {
            self.release_session_quota(p.owner_ip);
        }
    }

    /// The session changed: its record must be written.
    pub(super) fn mark_dirty(&mut self, sid: u64) {
        if let Some(c) = self.cluster.as_mut() {
            c.dirty.insert(sid);
        }
    }

    /// The session ended: its record must be deleted.
    pub(super) fn ended(&mut self, code: String, epoch: u64) {
        if let Some(c) = self.cluster.as_mut() {
            c.ended.push_back((code, epoch));
        }
    }

    fn redirect(&mut self, conn: super::ConnId, reason: RedirectReason, node: NodeAddr) {
        self.send(conn, ServerMsg::Redirect(Redirect { reason, node }));
    }

    fn record(&self, sid: u64) -> Option<SessionRecord> {
        let c = self.cluster.as_ref()?;
        let s = self.sessions.get(&sid)?;
        Some(SessionRecord {
            code: s.code.clone(),
            home: c.node.clone(),
            epoch: s.epoch,
            host: s.host,
            max_peers: s.max_peers,
            password_sha256: s.password_sha256.clone(),
            members: s
                .members
                .iter()
                .filter_map(|m| {
                    let p = self.peers.get(m)?;
                    Some(MemberRecord {
                        id: *m,
                        name: p.name.clone(),
                        client: p.client,
                        relay_mode: p.relay_mode,
                        token_sha256: p.token_sha256.clone(),
                    })
                })
                .collect(),
        })
    }

    /// Take in a session this node is now the home of. Every member starts
    /// away, with a fresh resume grace. A member whose peer id is taken on
    /// this node (ids are random in cluster mode, so this is rare) is left
    /// out: it comes back as a new peer. Does nothing if the code is held.
    fn import(&mut self, now: Now, rec: SessionRecord) {
        if self.codes.contains_key(&rec.code) {
            // Held already; only the epoch may have moved on.
            if let Some(s) = self
                .codes
                .get(&rec.code)
                .and_then(|sid| self.sessions.get_mut(sid))
            {
                s.epoch = s.epoch.max(rec.epoch);
            }
            return;
        }
        let sid = self.next_session;
        self.next_session += 1;
        let members = self.take_in_members(now, sid, &rec.members, usize::MAX);
        if members.is_empty() {
            return;
        }
        let host = if members.contains(&rec.host) {
            rec.host
        } else {
            members[0]
        };
        let complete = members.len() == rec.members.len();
        self.out.push_back(Output::TookIn {
            code: rec.code.clone(),
        });
        self.codes.insert(rec.code.clone(), sid);
        self.sessions.insert(
            sid,
            Session {
                code: rec.code,
                host,
                members,
                max_peers: rec.max_peers,
                password_sha256: rec.password_sha256,
                epoch: rec.epoch,
                last_activity: now.mono,
                owner_ip: None,
            },
        );
        self.arm(now.mono + self.limits.session_idle_ttl(), Timer::Idle(sid));
        if !complete {
            self.mark_dirty(sid);
        }
    }

    /// Make peers of session `sid` out of stored members this node does not
    /// know (by id or token), at most `room` of them: away, their resume
    /// grace (plus the take-over slack) starting now. Returns their ids.
    fn take_in_members(
        &mut self,
        now: Now,
        sid: u64,
        stored: &[MemberRecord],
        room: usize,
    ) -> Vec<crate::protocol::PeerId> {
        let slack = self
            .cluster
            .as_ref()
            .map_or(std::time::Duration::ZERO, |c| c.takeover_slack);
        let grace_ends = now.mono + self.limits.resume_grace() + slack;
        let mut members = Vec::new();
        for m in stored {
            if members.len() >= room {
                break;
            }
            if m.id == 0
                || self.peers.contains_key(&m.id)
                || self.tokens.contains_key(&m.token_sha256)
            {
                continue;
            }
            self.peers.insert(
                m.id,
                Peer {
                    name: m.name.clone(),
                    client: m.client,
                    relay_mode: m.relay_mode,
                    token: None,
                    token_sha256: m.token_sha256.clone(),
                    conn: None,
                    away_since: Some(now.mono),
                    session: Some(sid),
                    signals_in: HashMap::new(),
                },
            );
            self.tokens.insert(m.token_sha256.clone(), m.id);
            self.arm(grace_ends, Timer::Grace(m.id));
            members.push(m.id);
        }
        members
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::limits::Limits;
    use crate::protocol::{
        ClientKind, CreateSession, Hello, JoinSession, PeerId, RelayMode, PROTOCOL_VERSION,
    };
    use crate::session::{ConnId, ConnMeta, Transport};
    use crate::turn::IceConfig;

    /// One node's core, driven by hand; the directory is the test itself.
    struct Node {
        core: Core,
        now: Now,
        unread: Vec<Output>,
    }

    fn addr(name: &str) -> NodeAddr {
        NodeAddr {
            name: name.into(),
            quic: format!("{name}.example:4433"),
            http: format!("http://{name}.example:8080"),
            cert_sha256: None,
        }
    }

    impl Node {
        fn new(name: &str, seed: u64) -> Self {
            let mut core = Core::with_rng(
                Limits::default(),
                IceConfig::default(),
                StdRng::seed_from_u64(seed),
            );
            core.enable_cluster(name);
            Node {
                core,
                now: Now::system(),
                unread: Vec::new(),
            }
        }
        fn open(&mut self) -> ConnId {
            let meta = ConnMeta {
                transport: Transport::Quic,
                ip: Some([192, 0, 2, 7].into()),
            };
            self.core.open(self.now, meta).expect("open")
        }
        fn msg(&mut self, conn: ConnId, m: ClientMsg) {
            self.core.handle(self.now, conn, m);
        }
        /// Everything the core emitted and no test read yet.
        fn outputs(&mut self) -> Vec<Output> {
            let mut out = std::mem::take(&mut self.unread);
            out.extend(std::iter::from_fn(|| self.core.poll_output()));
            out
        }
        /// Take the outputs `pick` wants; keep the rest for later reads.
        fn take<T>(&mut self, pick: impl Fn(&Output) -> Option<T>) -> Vec<T> {
            let mut taken = Vec::new();
            for o in self.outputs() {
                match pick(&o) {
                    Some(t) => taken.push(t),
                    None => self.unread.push(o),
                }
            }
            taken
        }
        fn sent(&mut self, conn: ConnId) -> Vec<ServerMsg> {
            self.take(|o| match o {
                Output::Send { conn: c, msg } if *c == conn => Some(msg.clone()),
                _ => None,
            })
        }
        fn lookups(&mut self) -> Vec<Lookup> {
            self.take(|o| match o {
                Output::Lookup(l) => Some(l.clone()),
                _ => None,
            })
        }
        fn persisted(&mut self) -> Vec<Persist> {
            std::iter::from_fn(|| self.core.poll_persist()).collect()
        }
        /// Hello without a token: (conn, peer id, token).
        fn hello(&mut self, name: &str) -> (ConnId, PeerId, Vec<u8>) {
            let c = self.open();
            self.msg(c, hello(name, None));
            match self.sent(c).pop() {
                Some(ServerMsg::Welcome(w)) => (c, w.peer_id, w.resume_token),
                other => panic!("expected Welcome, got {other:?}"),
            }
        }
        /// A host whose session's code the directory reserves at once.
        fn host(&mut self) -> (ConnId, PeerId, Vec<u8>, String) {
            let (c, p, token) = self.hello("host");
            self.msg(c, create());
            let code = match self.lookups().as_slice() {
                [Lookup::Reserve { conn, code }] if *conn == c => code.clone(),
                other => panic!("expected one reservation, got {other:?}"),
            };
            self.core.answer(self.now, c, Answer::Reserved);
            match self.sent(c).pop() {
                Some(ServerMsg::SessionCreated(info)) => assert_eq!(info.code, code),
                other => panic!("expected SessionCreated, got {other:?}"),
            }
            (c, p, token, code)
        }
    }

    fn hello(name: &str, token: Option<Vec<u8>>) -> ClientMsg {
        ClientMsg::Hello(Hello {
            version: PROTOCOL_VERSION,
            client: ClientKind::Rust,
            relay_mode: RelayMode::Datagram,
            name: name.into(),
            resume_token: token,
        })
    }

    fn create() -> ClientMsg {
        ClientMsg::CreateSession(CreateSession {
            max_peers: 0,
            password: Some("hunter2".into()),
        })
    }

    fn join(code: &str, password: &str) -> ClientMsg {
        ClientMsg::JoinSession(JoinSession {
            code: code.into(),
            password: Some(password.into()),
        })
    }

    fn record_of(persisted: &[Persist]) -> SessionRecord {
        persisted
            .iter()
            .rev()
            .find_map(|p| match p {
                Persist::Put(r) => Some(r.clone()),
                _ => None,
            })
            .expect("a record write")
    }

    #[test]
    fn a_new_session_is_announced_only_once_its_code_is_reserved() {
        let mut a = Node::new("a", 1);
        let (c, _, _) = a.hello("host");
        a.msg(c, create());
        let first = match a.lookups().as_slice() {
            [Lookup::Reserve { code, .. }] => code.clone(),
            other => panic!("{other:?}"),
        };
        assert!(a.sent(c).is_empty(), "nothing before the reservation");
        // Taken elsewhere: another code is tried.
        a.core.answer(a.now, c, Answer::Taken);
        let second = match a.lookups().as_slice() {
            [Lookup::Reserve { code, .. }] => code.clone(),
            other => panic!("{other:?}"),
        };
        assert_ne!(first, second);
        a.core.answer(a.now, c, Answer::Reserved);
        assert!(matches!(a.sent(c).pop(), Some(ServerMsg::SessionCreated(i)) if i.code == second));
        assert_eq!(a.core.session_count(), 1);
    }

    #[test]
    fn a_create_the_directory_cannot_reserve_fails_cleanly_and_frees_the_quota() {
        let mut a = Node::new("a", 2);
        let (c, _, _) = a.hello("host");
        for _ in 0..30 {
            a.msg(c, create());
            assert_eq!(a.lookups().len(), 1);
            a.core.answer(a.now, c, Answer::Unavailable);
            let out = a.sent(c);
            assert!(
                matches!(out.last(), Some(ServerMsg::Error { code, .. }) if *code == ErrorCode::ClusterUnavailable as u16),
                "{out:?}"
            );
        }
        // 30 failed creates charged nothing: the per-address quota (20) still has room.
        a.msg(c, create());
        assert_eq!(a.lookups().len(), 1);
        a.core.answer(a.now, c, Answer::Reserved);
        assert!(matches!(
            a.sent(c).pop(),
            Some(ServerMsg::SessionCreated(_))
        ));
    }

    #[test]
    fn records_hold_hashed_tokens_and_follow_every_membership_change() {
        let mut a = Node::new("a", 3);
        let (_, host, host_token, code) = a.host();
        let rec = record_of(&a.persisted());
        assert_eq!(
            (rec.code.as_str(), rec.home.as_str(), rec.host),
            (code.as_str(), "a", host)
        );
        assert_eq!(rec.members.len(), 1);
        assert_eq!(
            rec.members[0].token_sha256,
            crate::cluster::token_hash(&host_token)
        );
        assert!(!rec.members[0]
            .token_sha256
            .contains(&hex::encode(&host_token)));
        assert!(rec.password_sha256.is_some());
        // A join is written; a relay frame is not.
        let (j, joiner, _) = a.hello("joiner");
        a.msg(j, join(&code, "hunter2"));
        assert!(matches!(a.sent(j).pop(), Some(ServerMsg::SessionJoined(_))));
        let rec = record_of(&a.persisted());
        assert_eq!(
            rec.members.iter().map(|m| m.id).collect::<Vec<_>>(),
            vec![host, joiner]
        );
        let mut targets = Vec::new();
        a.core
            .route(a.now.mono, j, 0, 10, &mut targets)
            .expect("relayed");
        assert!(a.persisted().is_empty(), "the relay path writes nothing");
        // The last member leaving ends it: the record is deleted.
        a.core.closed(a.now, j, true);
        a.persisted();
        let host_conn = a
            .core
            .peers
            .get(&host)
            .and_then(|p| p.conn)
            .expect("host conn");
        a.core.closed(a.now, host_conn, true);
        assert_eq!(a.persisted(), vec![Persist::Delete { code, epoch: 0 }]);
    }

    #[test]
    fn rewrite_all_writes_every_held_session_again_unchanged() {
        let mut a = Node::new("a", 11);
        let (_, _, _, first) = a.host();
        let (_, _, _, second) = a.host();
        let written = a.persisted();
        assert!(a.persisted().is_empty(), "nothing owed after the writes");
        a.core.rewrite_all();
        let mut again: Vec<SessionRecord> = a
            .persisted()
            .into_iter()
            .map(|p| match p {
                Persist::Put(r) => r,
                other => panic!("expected a write, got {other:?}"),
            })
            .collect();
        again.sort_by(|x, y| x.code.cmp(&y.code));
        let mut codes = vec![first.clone(), second.clone()];
        codes.sort();
        assert_eq!(
            again.iter().map(|r| r.code.clone()).collect::<Vec<_>>(),
            codes
        );
        for r in &again {
            assert_eq!(r, &record_of(&written_for(&written, &r.code)));
        }
    }

    fn written_for(persisted: &[Persist], code: &str) -> Vec<Persist> {
        persisted
            .iter()
            .filter(|p| matches!(p, Persist::Put(r) if r.code == code))
            .cloned()
            .collect()
    }

    #[test]
    fn a_join_through_another_node_is_redirected_to_the_home() {
        let mut b = Node::new("b", 4);
        let (c, _, _) = b.hello("joiner");
        b.msg(c, join("7kq2-mx", "pw"));
        match b.lookups().as_slice() {
            [Lookup::Code { code, .. }] => assert_eq!(code, "7KQ2MX"),
            other => panic!("{other:?}"),
        }
        b.core.answer(b.now, c, Answer::Elsewhere(addr("a")));
        match b.sent(c).pop() {
            Some(ServerMsg::Redirect(r)) => {
                assert_eq!(r.reason, RedirectReason::Session);
                assert_eq!(r.node, addr("a"));
            }
            other => panic!("expected Redirect, got {other:?}"),
        }
        // Not found anywhere: an ordinary failed join.
        let (c, _, _) = b.hello("typo");
        b.msg(c, join("AAAAAA", "pw"));
        assert_eq!(b.lookups().len(), 1);
        b.core.answer(b.now, c, Answer::NotFound);
        assert!(
            matches!(b.sent(c).pop(), Some(ServerMsg::Error { code, .. }) if code == ErrorCode::UnknownSession as u16)
        );
    }

    #[test]
    fn a_session_taken_over_keeps_its_code_host_ids_and_tokens() {
        let mut a = Node::new("a", 5);
        let (_, host, host_token, code) = a.host();
        let (j, joiner, joiner_token) = a.hello("joiner");
        a.msg(j, join(&code, "hunter2"));
        let mut rec = record_of(&a.persisted());
        // Node a dies; b takes the session over (the directory moves its home).
        rec.home = "b".into();
        rec.epoch += 1;
        let mut b = Node::new("b", 6);
        // The joiner comes back to b with its token, its Join pipelined behind (as in a URL).
        let c = b.open();
        b.msg(c, hello("joiner", Some(joiner_token.clone())));
        b.msg(c, ClientMsg::Ping { client_time_ms: 7 });
        let token_sha256 = match b.lookups().as_slice() {
            [Lookup::Token { token_sha256, .. }] => token_sha256.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(token_sha256, crate::cluster::token_hash(&joiner_token));
        assert!(b.sent(c).is_empty(), "the Ping waits for the Welcome");
        b.core.answer(b.now, c, Answer::Here(rec.clone()));
        let out = b.sent(c);
        match &out[..] {
            [ServerMsg::Welcome(w), ServerMsg::SessionJoined(info), ServerMsg::Pong {
                client_time_ms: 7, ..
            }] => {
                assert!(w.resumed);
                assert_eq!(w.peer_id, joiner);
                assert_eq!(w.resume_token, joiner_token);
                assert_eq!(info.code, code);
                assert_eq!(info.host, host);
                assert_eq!(
                    info.peers.iter().map(|p| p.id).collect::<Vec<_>>(),
                    vec![host, joiner]
                );
            }
            other => panic!("{other:?}"),
        }
        // The host resumes too, on b, without a lookup: b holds the session now.
        let h = b.open();
        b.msg(h, hello("host", Some(host_token)));
        assert!(b.lookups().is_empty());
        let out = b.sent(h);
        assert!(
            matches!(&out[0], ServerMsg::Welcome(w) if w.resumed && w.peer_id == host),
            "{out:?}"
        );
        // The password came along, hashed.
        let (n, _, _) = b.hello("late");
        b.msg(n, join(&code, "wrong"));
        assert!(
            matches!(b.sent(n).pop(), Some(ServerMsg::Error { code, .. }) if code == ErrorCode::WrongPassword as u16)
        );
        b.msg(n, join(&code, "hunter2"));
        assert!(matches!(b.sent(n).pop(), Some(ServerMsg::SessionJoined(_))));
        // b's writes carry the new epoch and home.
        let rec2 = record_of(&b.persisted());
        assert_eq!((rec2.home.as_str(), rec2.epoch), ("b", rec.epoch));
    }

    /// Two players of one session come back to the same node at once: both
    /// lookups find the session homed here (one moved it, the other lost the
    /// race and read it again) before either answer is applied. The node
    /// takes the session in once and says so once: the shell's take-over
    /// count is one per session, not one per racing lookup (issue 28: a
    /// third take-over counted for two sessions under load).
    #[test]
    fn racing_lookups_for_one_session_take_it_in_once() {
        let mut a = Node::new("a", 21);
        let (_, host, host_token, code) = a.host();
        let (j, joiner, joiner_token) = a.hello("joiner");
        a.msg(j, join(&code, "hunter2"));
        let rec = SessionRecord {
            home: "b".into(),
            epoch: 2,
            ..record_of(&a.persisted())
        };
        let mut b = Node::new("b", 22);
        let c1 = b.open();
        b.msg(c1, hello("host", Some(host_token)));
        let c2 = b.open();
        b.msg(c2, hello("joiner", Some(joiner_token)));
        assert_eq!(b.lookups().len(), 2, "both wait for the directory");
        b.core.answer(b.now, c1, Answer::Here(rec.clone()));
        b.core.answer(b.now, c2, Answer::Here(rec));
        let took: Vec<String> = b.take(|o| match o {
            Output::TookIn { code } => Some(code.clone()),
            _ => None,
        });
        assert_eq!(took, vec![code.clone()]);
        assert_eq!(b.core.session_count(), 1);
        for (c, id) in [(c1, host), (c2, joiner)] {
            assert!(
                matches!(b.sent(c).first(), Some(ServerMsg::Welcome(w)) if w.resumed && w.peer_id == id),
                "{id:?} resumed"
            );
        }
        // A later player of a session already held is no take-in at all.
        let (n, _, _) = b.hello("late");
        b.msg(n, join(&code, "hunter2"));
        assert!(matches!(b.sent(n).pop(), Some(ServerMsg::SessionJoined(_))));
        assert!(b
            .take(|o| matches!(o, Output::TookIn { .. }).then_some(()))
            .is_empty());
    }

    #[test]
    fn members_who_never_come_back_end_the_taken_over_session() {
        let mut a = Node::new("a", 7);
        let (_, _, _, code) = a.host();
        let rec = SessionRecord {
            home: "b".into(),
            epoch: 1,
            ..record_of(&a.persisted())
        };
        let mut b = Node::new("b", 8);
        let (c, _, _) = b.hello("joiner");
        b.msg(c, join(&code, "hunter2"));
        assert_eq!(b.lookups().len(), 1);
        b.core.answer(b.now, c, Answer::Here(rec));
        assert!(matches!(b.sent(c).pop(), Some(ServerMsg::SessionJoined(i)) if i.peers.len() == 2));
        b.persisted();
        // The joiner leaves; the host never resumes: the grace ends it.
        b.core.closed(b.now, c, true);
        b.persisted();
        b.now = b
            .now
            .after(b.core.limits().resume_grace() + Duration::from_millis(1));
        b.core.handle_timeout(b.now);
        assert_eq!(b.persisted(), vec![Persist::Delete { code, epoch: 1 }]);
        assert_eq!(b.core.session_count(), 0);
    }

    #[test]
    fn members_of_a_taken_over_session_get_the_slack_on_top_of_the_grace() {
        // Without slack the host's seat is gone once the grace passes; with
        // it, the host resumes.
        for (seed, slack) in [(12, Duration::ZERO), (14, Duration::from_secs(40))] {
            let mut a = Node::new("a", seed);
            let (_, host, host_token, code) = a.host();
            let rec = SessionRecord {
                home: "b".into(),
                epoch: 1,
                ..record_of(&a.persisted())
            };
            let mut b = Node::new("b", seed + 1);
            b.core.set_takeover_slack(slack);
            let (c, _, _) = b.hello("joiner");
            b.msg(c, join(&code, "hunter2"));
            assert_eq!(b.lookups().len(), 1);
            b.core.answer(b.now, c, Answer::Here(rec));
            b.outputs();
            b.now = b
                .now
                .after(b.core.limits().resume_grace() + Duration::from_millis(1));
            b.core.handle_timeout(b.now);
            b.outputs();
            let h = b.open();
            b.msg(h, hello("host", Some(host_token)));
            // A token this node does not know (any more) is looked up.
            for l in b.lookups() {
                b.core.answer(b.now, l.conn(), Answer::NotFound);
            }
            let welcome = b.sent(h).into_iter().find_map(|m| match m {
                ServerMsg::Welcome(w) => Some(w),
                _ => None,
            });
            match welcome {
                Some(w) => {
                    assert_eq!(w.resumed, !slack.is_zero(), "slack {slack:?}");
                    assert_eq!(w.peer_id == host, !slack.is_zero(), "slack {slack:?}");
                }
                other => panic!("expected Welcome, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_session_that_moved_sends_its_players_there_and_they_get_no_going_away() {
        let mut a = Node::new("a", 9);
        let (h, _, _, code) = a.host();
        let (j, _, _) = a.hello("joiner");
        a.msg(j, join(&code, "hunter2"));
        a.outputs();
        let (lone, _, _) = a.hello("lone");
        assert_eq!(
            a.core
                .session_moved(&code, &addr("c"), RedirectReason::Draining),
            2
        );
        for conn in [h, j] {
            match a.sent(conn).pop() {
                Some(ServerMsg::Redirect(r)) => {
                    assert_eq!(
                        (r.reason, r.node.name.as_str()),
                        (RedirectReason::Draining, "c")
                    )
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(a.core.session_count(), 0);
        assert!(
            a.persisted().is_empty(),
            "a moved session is not deleted by its old home"
        );
        a.core.shutdown(100);
        let out = a.outputs();
        let going: Vec<ConnId> = out
            .iter()
            .filter_map(|o| match o {
                Output::Send {
                    conn,
                    msg: ServerMsg::GoingAway { .. },
                } => Some(*conn),
                _ => None,
            })
            .collect();
        assert_eq!(going, vec![lone]);
    }

    #[test]
    fn an_unreachable_directory_closes_a_resume_so_the_client_retries() {
        let mut b = Node::new("b", 10);
        let c = b.open();
        b.msg(c, hello("x", Some(vec![7; 16])));
        assert_eq!(b.lookups().len(), 1);
        b.core.answer(b.now, c, Answer::Unavailable);
        let out = b.outputs();
        assert!(
            out.iter().any(|o| matches!(
                o,
                Output::Close {
                    code: ErrorCode::ClusterUnavailable,
                    ..
                }
            )),
            "{out:?}"
        );
        // An unknown token the directory does not know either: a new peer.
        let c = b.open();
        b.msg(c, hello("x", Some(vec![8; 16])));
        b.core.answer(b.now, c, Answer::NotFound);
        let out = b.sent(c);
        assert!(
            matches!(out.last(), Some(ServerMsg::Welcome(w)) if !w.resumed),
            "{out:?}"
        );
    }

    #[test]
    fn a_directory_that_comes_back_gets_every_session_again_and_a_reclaim_takes_the_new_epoch() {
        let mut a = Node::new("a", 12);
        let (_, _, _, one) = a.host();
        let (_, _, _, two) = a.host();
        a.persisted();
        a.core.rewrite_all();
        let mut codes: Vec<String> = a
            .persisted()
            .into_iter()
            .filter_map(|p| match p {
                Persist::Put(r) => Some(r.code),
                _ => None,
            })
            .collect();
        codes.sort();
        let mut want = vec![one.clone(), two];
        want.sort();
        assert_eq!(codes, want);
        // The directory had given `one` to a node that died; a takes it back at epoch 3.
        let rec = SessionRecord {
            epoch: 3,
            ..a.core.session_record(&one).expect("held")
        };
        a.core.reclaimed(a.now, rec);
        let rec = record_of(&a.persisted());
        assert_eq!(
            (rec.code.as_str(), rec.home.as_str(), rec.epoch),
            (one.as_str(), "a", 3)
        );
    }

    #[test]
    fn a_reservation_answered_after_the_peer_moved_on_gives_the_quota_back() {
        let mut a = Node::new("a", 13);
        let ip = [192, 0, 2, 7].into();
        let (c, _, token) = a.hello("host");
        a.msg(c, create());
        assert_eq!(a.lookups().len(), 1);
        // The host resumes on a second connection before the answer comes.
        let c2 = a.open();
        a.msg(c2, hello("host", Some(token)));
        a.core.answer(a.now, c, Answer::Reserved);
        assert_eq!(a.core.session_count(), 0);
        let charged = a.core.per_ip.get(&ip).map(|x| x.sessions);
        assert_eq!(
            charged,
            Some(0),
            "the quota of the unfounded session is back"
        );
    }

    #[test]
    fn a_session_taken_back_keeps_the_players_who_joined_on_the_node_that_died() {
        let mut a = Node::new("a", 15);
        let (h, host, _, code) = a.host();
        let mine = a.core.session_record(&code).expect("held");
        a.persisted();
        // Meanwhile node b held the session and a player joined there; b died.
        let token = vec![9u8; 16];
        let mut theirs = SessionRecord {
            home: "a".into(),
            epoch: 4,
            ..mine
        };
        theirs.members.push(MemberRecord {
            id: 777,
            name: "joined-on-b".into(),
            client: ClientKind::Browser,
            relay_mode: RelayMode::Datagram,
            token_sha256: crate::cluster::token_hash(&token),
        });
        a.core.reclaimed(a.now, theirs);
        assert!(
            matches!(a.sent(h).pop(), Some(ServerMsg::PeerJoined(p)) if p.id == 777),
            "the host here hears of the player who joined there"
        );
        let rec = record_of(&a.persisted());
        assert_eq!(rec.epoch, 4);
        assert_eq!(
            rec.members.iter().map(|m| m.id).collect::<Vec<_>>(),
            vec![host, 777]
        );
        // That player resumes here with its token: same id, same session.
        let c = a.open();
        a.msg(c, hello("joined-on-b", Some(token)));
        let out = a.sent(c);
        assert!(
            matches!(&out[..], [ServerMsg::Welcome(w), ServerMsg::SessionJoined(i), ..] if w.resumed && w.peer_id == 777 && i.code == code),
            "{out:?}"
        );
    }

    #[test]
    fn a_flood_while_waiting_for_the_directory_is_refused() {
        let mut b = Node::new("b", 11);
        let c = b.open();
        b.msg(c, hello("x", Some(vec![7; 16])));
        for i in 0..(MAX_QUEUED as u64 + 1) {
            b.msg(c, ClientMsg::Ping { client_time_ms: i });
        }
        let out = b.outputs();
        assert!(
            out.iter().any(|o| matches!(
                o,
                Output::Close {
                    code: ErrorCode::ProtocolViolation,
                    ..
                }
            )),
            "{out:?}"
        );
    }
}
