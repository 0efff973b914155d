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
    /// The player that creates it (access control), charged for it (`max_sessions_per_user`).
    pub(super) owner_sub: Option<String>,
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
    pub(super) node: String,
    waiting: HashMap<super::ConnId, Waiting>,
    /// Sessions changed since their record was last handed out.
    pub(super) dirty: BTreeSet<u64>,
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
        self.release_session_quota(session.owner_ip, session.owner_sub.clone());
        let mut sent = 0;
        for m in session.members {
            let Some(peer) = self.peers.remove(&m) else {
                continue;
            };
            self.tokens.remove(&peer.token_sha256);
            let Some(conn) = peer.conn else { continue };
            if let Some(c) = self.conns.get_mut(&conn) {
                c.peer = None;
            }
            self.sent_away(conn);
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
                    self.release_session_quota(pending.owner_ip, pending.owner_sub.clone());
                }
                self.sent_away(conn);
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
                    self.release_session_quota(pending.owner_ip, pending.owner_sub.clone());
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
                        self.release_session_quota(pending.owner_ip, pending.owner_sub.clone());
                        self.error(
                            conn,
                            ErrorCode::ClusterUnavailable,
                            "the cluster directory cannot be reached to reserve a code; \
                             try again in a moment"
                                .into(),
                        );
                    }
                    _ => {
                        self.release_session_quota(pending.owner_ip, pending.owner_sub.clone());
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
            region_rtts: Vec::new(),
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
            self.release_session_quota(p.owner_ip, p.owner_sub.clone());
        }
    }

    /// The session changed: its record must be written.
    pub(super) fn mark_dirty(&mut self, sid: u64) {
        // A session moving away is the new node's to write.
        if self
            .sessions
            .get(&sid)
            .is_some_and(|s| s.moving_to.is_some())
        {
            return;
        }
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

    /// `conn` is sent to another node: it gets no `GoingAway`, and no
    /// longer counts for its player's connection quota (the client leaves
    /// it for the other node; the other nodes hear of it with the next
    /// heartbeat).
    pub(super) fn sent_away(&mut self, conn: super::ConnId) {
        let user = self.conns.get_mut(&conn).and_then(|c| {
            c.redirected = true;
            c.user.take()
        });
        if let Some(u) = user {
            self.uncharge_conn(&u);
        }
    }

    pub(super) fn redirect(&mut self, conn: super::ConnId, reason: RedirectReason, node: NodeAddr) {
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
                        region_rtts: p.rtts.clone(),
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
                owner_sub: None,
                // Taken in counts as moved: not again within the interval.
                last_moved: Some(now.mono),
                moving_to: None,
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
                    // Its token comes again with its resume.
                    grant: None,
                    // Its measurements travel with the session, so it can
                    // move again from here (PROTOCOL.md §11).
                    rtts: m.rtts(),
                    last_relay_at: None,
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
#[path = "tests/cluster.rs"]
mod tests;
