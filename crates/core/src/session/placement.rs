//! Regions: which node a new session should live on, by its creator's
//! measured round trips (issue 26, PROTOCOL.md §11 "Regions").
//!
//! A node started with `--region` knows its own region; the shell hands
//! the core the live nodes of its directory after each heartbeat
//! ([`Core::set_live_nodes`]), each with its region. A version-4 client
//! sends the round trips it measured to one node per region with its
//! `CreateSession`; [`place_new`] decides, as plain data, whether the
//! session is better created on a node of another region, and the core
//! answers `Redirect(Placement)` to it before it keeps any state of the
//! session. Everything here is pure: no clock but the `now` passed in.
//!
//! What a measurement may do is bounded by what the node itself knows: it
//! only picks among the live nodes of the node's own directory, never a
//! node it does not list, never when the node is the only live one, and
//! never when the node's own region was not measured (nothing to compare).

use std::time::{Duration, Instant};

use super::{Core, Now, Output, Timer};
use crate::cluster::NodeInfo;
use crate::protocol::{ErrorCode, NodeAddr, RedirectReason, RegionRtt, MOVE_PROTOCOL_VERSION};

/// Placement by measured ping, as configured (plain data; the binary maps
/// `--region`, `--placement` and `--placement-min-gain-ms` onto it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// This node's region.
    pub region: String,
    /// A new session goes to another region only when its creator's round
    /// trip there is at least this much lower than to this node's region.
    pub min_gain_ms: u32,
}

/// The default of [`Placement::min_gain_ms`].
pub const DEFAULT_MIN_GAIN_MS: u32 = 20;

/// The core's view of the cluster for placement and `GET /nodes`.
#[derive(Debug, Default)]
pub(super) struct Regions {
    /// `None`: no placement on this node (no region, or turned off).
    placement: Option<Placement>,
    /// The live nodes of the directory, as last read (this node included
    /// when the directory listed it).
    nodes: Vec<NodeInfo>,
    /// Until when that reading counts; after it, the core knows of no other
    /// node (the directory is away) and places nothing.
    fresh_until: Option<Instant>,
    /// Moving running sessions, with the overlap; `None`: never.
    moves: Option<(MoveRule, Duration)>,
}

/// A session that should move ([`Core::moves_due`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMove {
    /// Its join code.
    pub code: String,
    /// The epoch this node holds it at (for the directory's hand-over).
    pub epoch: u64,
    /// The node it should move to.
    pub target: NodeAddr,
}

impl Core {
    /// Place new sessions by their creators' measured round trips
    /// (cluster mode, with a region).
    pub fn enable_placement(&mut self, placement: Placement) {
        self.regions.placement = Some(placement);
    }

    /// The live nodes of the directory as just read (by the heartbeat),
    /// believed until `now + ttl` (the node TTL: by then a node listed now
    /// may have died unseen).
    pub fn set_live_nodes(&mut self, now: Instant, nodes: Vec<NodeInfo>, ttl: Duration) {
        self.regions.nodes = nodes;
        self.regions.fresh_until = Some(now + ttl);
    }

    /// The live nodes as last read, if that reading is still believed at
    /// `now`; empty otherwise (the directory cannot be read).
    pub fn live_nodes(&self, now: Instant) -> &[NodeInfo] {
        match self.regions.fresh_until {
            Some(until) if now <= until => &self.regions.nodes,
            _ => &[],
        }
    }

    /// Move running sessions by their members' measurements (issue 26's
    /// second rule): [`Core::moves_due`] proposes, [`Core::begin_move`]
    /// acts once the directory has the session on its new node. The old
    /// node keeps relaying for `overlap` after the redirect.
    pub fn enable_moves(&mut self, rule: MoveRule, overlap: Duration) {
        self.regions.moves = Some((rule, overlap));
    }

    /// Sessions that should move now, each with its epoch and target (see
    /// [`decide_move`]); none without placement and moves enabled. Called
    /// on a timer (every few seconds), never per datagram.
    pub fn moves_due(&self, now: Instant) -> Vec<PlannedMove> {
        let (Some(p), Some((rule, _)), Some(c)) = (
            self.regions.placement.as_ref(),
            self.regions.moves.as_ref(),
            self.cluster.as_ref(),
        ) else {
            return Vec::new();
        };
        let nodes = self.live_nodes(now);
        let mut due = Vec::new();
        for s in self.sessions.values() {
            if s.moving_to.is_some() {
                continue;
            }
            let members: Vec<MoveMember> = s
                .members
                .iter()
                .map(|m| {
                    let peer = self.peers.get(m);
                    MoveMember {
                        relayed_at: peer.and_then(|x| x.last_relay_at),
                        version: peer
                            .and_then(|x| x.conn)
                            .and_then(|conn| self.conns.get(&conn))
                            .map_or(0, |conn| conn.version),
                        rtts: peer.map_or_else(Vec::new, |x| x.rtts.clone()),
                    }
                })
                .collect();
            let target = decide_move(now, &c.node, &p.region, nodes, &members, s.last_moved, rule);
            if let Some(target) = target {
                due.push(PlannedMove {
                    code: s.code.clone(),
                    epoch: s.epoch,
                    target: target.clone(),
                });
            }
        }
        due.sort_by(|a, b| a.code.cmp(&b.code));
        due
    }

    /// The directory now has session `code` on `target` (the shell handed
    /// it over): send every connected member an unasked
    /// `Redirect(Placement)` there, keep relaying among them for the
    /// overlap, then close their connections here (`Replaced`) and forget
    /// the session without telling anyone it ended. Returns how many
    /// members were redirected (0: no such session, or already moving).
    pub fn begin_move(&mut self, now: Now, code: &str, target: &NodeAddr) -> usize {
        let overlap = self.regions.moves.map_or(Duration::ZERO, |(_, o)| o);
        let Some(&sid) = self.codes.get(code) else {
            return 0;
        };
        let Some(s) = self.sessions.get_mut(&sid) else {
            return 0;
        };
        if s.moving_to.is_some() {
            return 0;
        }
        s.moving_to = Some(target.clone());
        s.last_moved = Some(now.mono);
        let members = s.members.clone();
        if let Some(c) = self.cluster.as_mut() {
            c.dirty.remove(&sid);
        }
        let mut sent = 0;
        for m in members {
            if let Some(conn) = self.peers.get(&m).and_then(|p| p.conn) {
                self.redirect(conn, RedirectReason::Placement, target.clone());
                sent += 1;
            }
        }
        self.arm(now.mono + overlap, Timer::MoveEnd(sid));
        sent
    }

    /// The overlap of a move is over: close the members' connections
    /// here and forget the session, without PeerLeft or PeerStatus.
    pub(super) fn end_move(&mut self, sid: u64) {
        let Some(target) = self.sessions.get(&sid).and_then(|s| s.moving_to.clone()) else {
            return;
        };
        let Some(session) = self.sessions.remove(&sid) else {
            return;
        };
        self.codes.remove(&session.code);
        self.release_session_quota(session.owner_ip, session.owner_sub.clone());
        for m in session.members {
            for peer in self.peers.values_mut() {
                peer.signals_in.remove(&m);
            }
            let Some(peer) = self.peers.remove(&m) else {
                continue;
            };
            self.tokens.remove(&peer.token_sha256);
            let Some(conn) = peer.conn else { continue };
            if let Some(c) = self.conns.get_mut(&conn) {
                c.peer = None;
            }
            self.sent_away(conn);
            self.out.push_back(Output::Close {
                conn,
                code: ErrorCode::Replaced,
                reason: format!("the session moved to node {}", target.name),
            });
        }
    }

    /// Keep `p`'s latest measurements (a list given; an empty one keeps
    /// what it gave before).
    pub(super) fn keep_rtts(&mut self, p: crate::protocol::PeerId, rtts: &[RegionRtt]) {
        if rtts.is_empty() {
            return;
        }
        if let Some(peer) = self.peers.get_mut(&p) {
            peer.rtts = rtts.to_vec();
        }
    }

    /// Where a session created now with these measurements should live, if
    /// not here (see [`place_new`]).
    pub(super) fn placement_for(&self, now: Instant, rtts: &[RegionRtt]) -> Option<NodeAddr> {
        let p = self.regions.placement.as_ref()?;
        let me = &self.cluster.as_ref()?.node;
        place_new(me, &p.region, self.live_nodes(now), rtts, p.min_gain_ms).cloned()
    }
}

/// Where a new session goes, for a creator who measured `rtts`, decided
/// on node `me` of region `my_region` whose directory lists `nodes` as
/// live. `None`: create it here.
///
/// * Only live, not draining nodes other than `me` that have a region are
///   candidates; none (the only live node): here.
/// * `my_region` must be measured; if not: here (nothing to compare).
/// * The best region is the one with the lowest measured round trip among
///   those with a candidate (a measurement for a region with no live node
///   counts for nothing). It wins when it beats `my_region` by at least
///   `min_gain_ms` (and by at least 1 ms); then the session goes to its
///   least-loaded candidate (fewest sessions, then connections, then
///   name, so every node picks the same one).
pub fn place_new<'a>(
    me: &str,
    my_region: &str,
    nodes: &'a [NodeInfo],
    rtts: &[RegionRtt],
    min_gain_ms: u32,
) -> Option<&'a NodeAddr> {
    let candidates = || {
        nodes
            .iter()
            .filter(move |n| n.addr.name != me && !n.draining && n.region.is_some())
    };
    let mine = rtts.iter().find(|r| r.region == my_region)?.rtt_ms;
    let best = rtts
        .iter()
        .filter(|r| r.region != my_region)
        .filter(|r| candidates().any(|n| n.region.as_deref() == Some(r.region.as_str())))
        .min_by(|a, b| (a.rtt_ms, &a.region).cmp(&(b.rtt_ms, &b.region)))?;
    let gain = mine.checked_sub(best.rtt_ms)?;
    if gain == 0 || gain < min_gain_ms {
        return None;
    }
    candidates()
        .filter(|n| n.region.as_deref() == Some(best.region.as_str()))
        .min_by(|a, b| {
            (a.sessions, a.connections, &a.addr.name).cmp(&(
                b.sessions,
                b.connections,
                &b.addr.name,
            ))
        })
        .map(|n| &n.addr)
}

/// One member of a session, as the move rule sees it ([`decide_move`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveMember {
    /// When the server last relayed a frame from it, if ever.
    pub relayed_at: Option<Instant>,
    /// The protocol version its connection speaks (0: none now).
    pub version: u16,
    /// Its measured round trips (from its `CreateSession` or `JoinSession`).
    pub rtts: Vec<RegionRtt>,
}

/// When a session may move (plain data, with [`decide_move`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoveRule {
    /// The least gain in the worst relayed member's round trip, ms (20).
    pub min_gain_ms: u32,
    /// The least time between two moves of one session (60 s).
    pub interval: std::time::Duration,
    /// A member relayed within this long counts as relayed (5 s).
    pub relay_window: std::time::Duration,
}

impl Default for MoveRule {
    fn default() -> Self {
        MoveRule {
            min_gain_ms: DEFAULT_MIN_GAIN_MS,
            interval: std::time::Duration::from_secs(60),
            relay_window: std::time::Duration::from_secs(5),
        }
    }
}

/// Where a running session should move, decided at `now` on node `me` of
/// region `my_region` (issue 26's second rule; [`Core::moves_due`] calls
/// it). `None`: it stays.
///
/// * Every member's connection must speak version 5 or later
///   ([`MOVE_PROTOCOL_VERSION`]: only they follow a move make-before-break,
///   so only they can move without loss), and the session must not have moved within
///   `rule.interval` (`last_moved`).
/// * The relayed members are those the server relayed a frame from within
///   `rule.relay_window`; none: it stays (players on direct paths are not
///   served by any node).
/// * The cost of a region is the worst relayed member's round trip to it;
///   a region is only costed when every relayed member measured it, and
///   `my_region` must be costed.
/// * Candidates are as for [`place_new`]: live, not draining nodes other
///   than `me` with a region. The cheapest costed candidate region wins
///   when it beats `my_region` by at least `rule.min_gain_ms` (and 1 ms);
///   the session goes to its least-loaded node.
pub fn decide_move<'a>(
    now: Instant,
    me: &str,
    my_region: &str,
    nodes: &'a [NodeInfo],
    members: &[MoveMember],
    last_moved: Option<Instant>,
    rule: &MoveRule,
) -> Option<&'a NodeAddr> {
    if members.is_empty() || members.iter().any(|m| m.version < MOVE_PROTOCOL_VERSION) {
        return None;
    }
    if last_moved.is_some_and(|t| now.saturating_duration_since(t) < rule.interval) {
        return None;
    }
    let relayed: Vec<&MoveMember> = members
        .iter()
        .filter(|m| {
            m.relayed_at
                .is_some_and(|t| now.saturating_duration_since(t) <= rule.relay_window)
        })
        .collect();
    if relayed.is_empty() {
        return None;
    }
    let cost = |region: &str| -> Option<u32> {
        relayed
            .iter()
            .map(|m| m.rtts.iter().find(|r| r.region == region).map(|r| r.rtt_ms))
            .try_fold(0u32, |worst, rtt| rtt.map(|r| worst.max(r)))
    };
    let mine = cost(my_region)?;
    let candidates = || {
        nodes
            .iter()
            .filter(move |n| n.addr.name != me && !n.draining && n.region.is_some())
    };
    let mut regions: Vec<&str> = candidates()
        .filter_map(|n| n.region.as_deref())
        .filter(|r| *r != my_region)
        .collect();
    regions.sort_unstable();
    regions.dedup();
    let (best_cost, best) = regions
        .into_iter()
        .filter_map(|r| Some((cost(r)?, r)))
        .min()?;
    let gain = mine.checked_sub(best_cost)?;
    if gain == 0 || gain < rule.min_gain_ms {
        return None;
    }
    candidates()
        .filter(|n| n.region.as_deref() == Some(best))
        .min_by(|a, b| {
            (a.sessions, a.connections, &a.addr.name).cmp(&(
                b.sessions,
                b.connections,
                &b.addr.name,
            ))
        })
        .map(|n| &n.addr)
}

#[cfg(test)]
#[path = "tests/placement.rs"]
mod tests;
