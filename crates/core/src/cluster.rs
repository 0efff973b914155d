//! Cluster mode: what the nodes of one cluster share, as plain data.
//!
//! Without `--redis-url` a server is one node whose sessions live in its
//! memory. With it, the nodes share a *directory* in Redis
//! (the server's `directory` does the I/O): which nodes are alive and how
//! loaded, which join codes exist, and for each session its home node and
//! everything needed to carry it on elsewhere: code, host, members, peer
//! ids, names and resume tokens, the tokens stored hashed. This module
//! holds those records and the decisions made from them (which node a
//! draining node hands its sessions to), with no I/O, so they are tested
//! without Redis.
//!
//! A session record is written whenever the session changes (create,
//! join, leave, host change, resume), never per relay frame: the relay
//! path does not touch Redis.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::protocol::{ClientKind, NodeAddr, PeerId, RegionRtt, RelayMode};

/// How a node joins a cluster (plain configuration; the binary maps flags onto it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `redis://[:password@]host:port[/db]` or `rediss://…` (TLS).
    pub redis_url: String,
    /// Prefix of every key this cluster uses, so several clusters can share one Redis.
    pub key_prefix: String,
    /// How this node is reached, as announced to the other nodes and sent in redirects.
    pub node: NodeAddr,
    /// How often the node announces itself (and its load). Default 500 ms.
    pub heartbeat: Duration,
    /// How long one directory call may take before it counts as Redis being
    /// away. Default 500 ms; a node far from its Redis (a region away:
    /// several round trips per call) needs more.
    pub directory_timeout: Duration,
    /// The node's region (`serve --region`), announced in its record;
    /// `None`: no region, and no placement by measured ping on this node.
    pub region: Option<String>,
    /// Place new sessions by their creators' measured round trips
    /// (`--placement`; only with a region). Default on.
    pub placement: bool,
    /// The least gain, in ms, that sends a new session to another region
    /// (`--placement-min-gain-ms`). Default 20.
    pub placement_min_gain_ms: u32,
    /// The least gain, in ms, in the worst relayed member's round trip
    /// that moves a running session to another region
    /// (`--placement-move-gain-ms`; 0: never move). Default 20.
    pub placement_move_gain_ms: u32,
    /// The least time between two moves of one session
    /// (`--placement-move-interval-secs`). Default 60 s.
    pub placement_move_interval: Duration,
    /// How long the old node keeps relaying a moved session's members
    /// after redirecting them (`--placement-overlap-ms`). Default 3000 ms.
    pub placement_overlap: Duration,
    /// A node not heard from for this long is dead: its sessions may be taken over.
    /// Default 1500 ms (three beats): a client takes its server for lost
    /// after at least 1.5 s of silence (PROTOCOL.md, liveness), so by the
    /// time the players of a node killed with `kill -9` reach another node,
    /// the dead node's record is gone and the session is taken over at once.
    pub node_ttl: Duration,
}

impl ClusterConfig {
    /// The defaults for everything but the URL and the node's address.
    pub fn new(redis_url: impl Into<String>, node: NodeAddr) -> Self {
        ClusterConfig {
            redis_url: redis_url.into(),
            key_prefix: "fsp2p:".into(),
            node,
            heartbeat: Duration::from_millis(500),
            node_ttl: Duration::from_millis(1500),
            directory_timeout: Duration::from_millis(500),
            region: None,
            placement: true,
            placement_min_gain_ms: 20,
            placement_move_gain_ms: 20,
            placement_move_interval: Duration::from_secs(60),
            placement_overlap: Duration::from_millis(3000),
        }
    }
}

/// A live node as it announces itself in the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// How clients reach it.
    pub addr: NodeAddr,
    /// Sessions whose home it is.
    pub sessions: u32,
    /// Open connections.
    pub connections: u32,
    /// True once it is shutting down: it takes no new sessions.
    pub draining: bool,
    /// When it announced this, Unix milliseconds.
    pub at_unix_ms: u64,
    /// Its region (`serve --region`), if it has one. Absent from the JSON
    /// when it has none, so a node without a region writes what it wrote
    /// before regions existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// One member of a session, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// Its peer id (kept when the session moves).
    pub id: PeerId,
    /// Its display name.
    pub name: String,
    /// What kind of program it is.
    pub client: ClientKind,
    /// How it wants relay frames.
    pub relay_mode: RelayMode,
    /// [`token_hash`] of its resume token, hex. The token itself is never stored.
    pub token_sha256: String,
    /// Its latest non-empty `region_rtts` (from its `CreateSession` or
    /// `JoinSession`), so the node that takes the session in can still
    /// move it by region (PROTOCOL.md §11). At most
    /// [`crate::protocol::MAX_REGION_RTTS`] entries; a list that breaks the
    /// protocol's rules is dropped on the way in ([`MemberRecord::rtts`]).
    /// Absent from the JSON when empty, and empty when absent, so records
    /// written before it existed still decode and a member without
    /// measurements is stored as it was before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub region_rtts: Vec<RegionRtt>,
}

impl MemberRecord {
    /// Its stored measurements if they are a valid `region_rtts` list (as
    /// a client may send: bounded, valid names, each region once); empty
    /// otherwise. A record is only as trustworthy as the directory: what
    /// would be refused from a client is not taken from it either.
    pub fn rtts(&self) -> Vec<RegionRtt> {
        if crate::protocol::region_rtts_problem(&self.region_rtts).is_some() {
            return Vec::new();
        }
        self.region_rtts.clone()
    }
}

/// A session as stored in the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The join code (canonical form); also the record's key.
    pub code: String,
    /// The node the session lives on.
    pub home: String,
    /// Raised each time the home changes; a write with an older epoch is
    /// refused, so a node that lost its session cannot overwrite it.
    pub epoch: u64,
    /// The host's peer id.
    pub host: PeerId,
    /// Seats, the host's included.
    pub max_peers: u32,
    /// [`password_hash`] of the session's password, hex, if it has one.
    pub password_sha256: Option<String>,
    /// Members in join order (the first is the next host).
    pub members: Vec<MemberRecord>,
}

impl SessionRecord {
    /// The member whose resume token hashes to `token_sha256`, if any.
    pub fn member_by_token(&self, token_sha256: &str) -> Option<&MemberRecord> {
        self.members.iter().find(|m| m.token_sha256 == token_sha256)
    }
}

/// What became of a write of a session record ([`fence`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// The record is stored.
    Written,
    /// Refused: the session belongs to `home` at `epoch` now (it was taken
    /// over, or its home moved on). The writer has lost the session and
    /// must stop serving it.
    Lost {
        /// The node that owns the session now.
        home: String,
        /// The epoch it owns it at.
        epoch: u64,
    },
}

/// Whether a node that believes it is `home` at `epoch` may still change
/// (write or delete) the `stored` record: the stored one has the same home
/// and an epoch no newer. A node that lost its session (another took it
/// over, raising the epoch) is refused even if the session later comes back
/// to it, since its view is then older than the record's.
pub fn may_write(stored: &SessionRecord, home: &str, epoch: u64) -> bool {
    stored.home == home && stored.epoch <= epoch
}

/// The fencing decision for writing `rec` over `stored` (`None`: no record).
pub fn fence(stored: Option<&SessionRecord>, rec: &SessionRecord) -> PutOutcome {
    match stored {
        Some(s) if !may_write(s, &rec.home, rec.epoch) => PutOutcome::Lost {
            home: s.home.clone(),
            epoch: s.epoch,
        },
        _ => PutOutcome::Written,
    }
}

/// Token hashes of `old`'s members that are no longer in `new` (members
/// who left): their index entries are to be removed.
pub fn stale_tokens<'a>(old: &'a SessionRecord, new: &SessionRecord) -> Vec<&'a str> {
    old.members
        .iter()
        .map(|m| m.token_sha256.as_str())
        .filter(|t| new.member_by_token(t).is_none())
        .collect()
}

/// The record after moving `rec`'s home from `from` (at `epoch`) to `to`,
/// with the epoch raised by one; `None` when `rec` is no longer `from`'s at
/// `epoch` (someone else moved or rewrote it first).
pub fn moved(rec: &SessionRecord, from: &str, epoch: u64, to: &str) -> Option<SessionRecord> {
    if rec.home != from || rec.epoch != epoch {
        return None;
    }
    let mut next = rec.clone();
    next.home = to.to_owned();
    next.epoch = epoch.checked_add(1)?;
    Some(next)
}

/// SHA-256 of a resume token, hex: what the directory and the core keep.
pub fn token_hash(token: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, token))
}

/// SHA-256 of a session's password, salted with its code, hex.
pub fn password_hash(code: &str, password: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"fsp2p-session-password\0");
    ctx.update(code.as_bytes());
    ctx.update(b"\0");
    ctx.update(password.as_bytes());
    hex::encode(ctx.finish())
}

/// The node a draining node hands its sessions to: the live, not draining
/// node other than itself with the fewest sessions (then connections, then
/// name, so every node picks the same one). `None` when there is none.
pub fn drain_target<'a>(me: &str, nodes: &'a [NodeInfo]) -> Option<&'a NodeInfo> {
    nodes
        .iter()
        .filter(|n| n.addr.name != me && !n.draining)
        .min_by(|a, b| {
            (a.sessions, a.connections, &a.addr.name).cmp(&(
                b.sessions,
                b.connections,
                &b.addr.name,
            ))
        })
}

/// Where a request for a session goes, from its record and its home node
/// as the directory sees them (see [`route`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// No such session.
    NotFound,
    /// This node is its home (it may have restarted and not hold it yet).
    Here,
    /// Its home is another live node: send the client there.
    Elsewhere(NodeAddr),
    /// Its home is dead or draining: move it here, if the record still
    /// says `from` at `epoch` (else read it again).
    TakeOver {
        /// The home to move it from.
        from: String,
        /// The epoch it was read at.
        epoch: u64,
    },
}

/// Decide where a request for the session `rec` goes on node `me`, given
/// what the directory says of its home (`None`: dead or unknown).
pub fn route(me: &str, rec: Option<&SessionRecord>, home: Option<&NodeInfo>) -> Route {
    let Some(rec) = rec else {
        return Route::NotFound;
    };
    if rec.home == me {
        return Route::Here;
    }
    match home {
        Some(n) if n.addr.name == rec.home && !n.draining => Route::Elsewhere(n.addr.clone()),
        _ => Route::TakeOver {
            from: rec.home.clone(),
            epoch: rec.epoch,
        },
    }
}

/// Whether a node whose record has `remaining` of its TTL left has missed
/// a heartbeat: more than one and a half beats have passed since its
/// record was last written, counted with this node's `heartbeat` and
/// `node_ttl` (a cluster's nodes share them). Such a node is probably dead
/// (`kill -9`, a crash): a node asked about one of its sessions does not
/// send the player there at once, but waits until the record is written
/// again (the node was slow: then it sends the player there) or expires
/// (then it takes the session over). A WebSocket player of a killed node
/// notices at once (the kernel resets its connection) and would otherwise
/// be redirected to the dead node until its record expired. Judging a
/// slow node overdue costs only that wait, never a take-over: the take-over
/// still needs the record gone.
pub fn beat_overdue(remaining: Duration, heartbeat: Duration, node_ttl: Duration) -> bool {
    node_ttl.saturating_sub(remaining) > heartbeat + heartbeat / 2
}

#[cfg(test)]
mod overdue_tests {
    use super::beat_overdue;
    use std::time::Duration;

    #[test]
    fn a_beat_is_overdue_after_one_and_a_half_heartbeats() {
        let ms = Duration::from_millis;
        let (beat, ttl) = (ms(500), ms(1500));
        assert!(!beat_overdue(ttl, beat, ttl), "just written");
        assert!(
            !beat_overdue(ms(1000), beat, ttl),
            "the next beat is due now"
        );
        assert!(!beat_overdue(ms(750), beat, ttl), "half a beat late");
        assert!(
            beat_overdue(ms(749), beat, ttl),
            "more than half a beat late"
        );
        assert!(beat_overdue(ms(1), beat, ttl));
        // A record with more left than a full TTL (a node with a longer
        // TTL than ours) is not overdue.
        assert!(!beat_overdue(ms(6000), beat, ttl));
    }
}

/// Where a join goes for a code that has no session record but is
/// reserved by `owner` (`owner_node`: that node as the directory lists it,
/// `None` if dead): to the owner, if it is another live node that is not
/// draining. A session's creator hears `SessionCreated` as soon as its code
/// is reserved, and its record is written a moment later: a join through
/// another node in between would otherwise be told the code does not
/// exist. `None`: the code is unknown (free, reserved by this node, or by a
/// node that is gone).
pub fn route_reserved(
    me: &str,
    owner: Option<&str>,
    owner_node: Option<&NodeInfo>,
) -> Option<NodeAddr> {
    let owner = owner?;
    if owner == me {
        return None;
    }
    owner_node
        .filter(|n| n.addr.name == owner && !n.draining)
        .map(|n| n.addr.clone())
}

/// Whether a node must write every session it holds to the directory
/// again, after a heartbeat that found the directory answering
/// (`listed`: whether this node was among the live nodes just before the
/// beat; `None`: the beat failed) when the beat before `was_up` or not.
///
/// Records are written on every change only, so a directory that lost
/// them (a Redis restarted without persistence, flushed, or failed over
/// to a replica that had not caught up) would otherwise never learn of a
/// session that does not change again: joins through other nodes would
/// get `unknown_session` and its code could be handed out twice. A node
/// that finds itself missing from the live nodes knows the directory
/// forgot it (or its own beats lapsed, and another node may have taken
/// its sessions: the fenced write tells it so). After an outage the
/// directory may have lost data without the node ever being missing
/// (Redis back within one beat), so a beat that succeeds after one that
/// failed rewrites too. Rewriting is cheap (one write per session) and
/// fenced, so doing it too often is harmless.
pub fn must_rewrite(was_up: bool, listed: Option<bool>) -> bool {
    match listed {
        None => false,
        Some(listed) => !listed || !was_up,
    }
}

/// Whether a node believes the directory's silence: the "settle beats"
/// rule, as plain data (the server's node shell holds one and feeds it
/// what its heartbeats and lookups saw).
///
/// After an outage (or a Redis that came back empty) each node writes its
/// sessions again within a beat or two ([`must_rewrite`]); until then a
/// code or token the directory does not know may only not be written back
/// yet. So after directory trouble a node waits [`Settle::BEATS`] good
/// heartbeats before it believes a missing record: meanwhile lookups that
/// find nothing, and new reservations, answer `cluster_unavailable` (retry)
/// instead of "no such session".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settle {
    /// Good heartbeats still to come before a missing record is believed.
    unsettled: u32,
    /// Whether the directory has ever listed this node.
    ever_listed: bool,
}

impl Settle {
    /// Heartbeats a node waits after directory trouble before it believes
    /// a missing record.
    pub const BEATS: u32 = 2;

    /// A node that just started: it believes the directory.
    pub fn new() -> Settle {
        Settle::default()
    }

    /// The directory failed a request (a lookup answered "unavailable").
    pub fn trouble(&mut self) {
        self.unsettled = Settle::BEATS;
    }

    /// A heartbeat's outcome: `None` if Redis failed, else whether the
    /// directory listed this node just before the beat. Trouble, or a
    /// directory that forgot this node after knowing it, unsettles; a beat
    /// that finds the node listed counts one down.
    pub fn beat(&mut self, listed: Option<bool>) {
        match listed {
            None => self.trouble(),
            Some(false) if self.ever_listed => self.trouble(),
            Some(true) => {
                self.ever_listed = true;
                self.unsettled = self.unsettled.saturating_sub(1);
            }
            // Not listed yet: a node's first beat lists it.
            Some(false) => {}
        }
    }

    /// Whether a record the directory does not have is believed missing.
    pub fn settled(&self) -> bool {
        self.unsettled == 0
    }
}

#[cfg(test)]
mod settle_tests {
    use super::Settle;

    #[test]
    fn a_new_node_believes_the_directory_even_before_it_is_listed() {
        let mut s = Settle::new();
        assert!(s.settled());
        s.beat(Some(false));
        assert!(s.settled(), "not listed before its first beat: no trouble");
    }

    #[test]
    fn after_trouble_a_missing_record_is_believed_only_after_two_good_beats() {
        for trouble in [None, Some(())] {
            let mut s = Settle::new();
            s.beat(Some(true));
            match trouble {
                None => s.beat(None),
                Some(()) => s.trouble(),
            }
            assert!(!s.settled());
            s.beat(Some(true));
            assert!(!s.settled(), "one good beat is not enough");
            s.beat(Some(true));
            assert!(s.settled());
            s.beat(Some(true));
            assert!(s.settled());
        }
    }

    #[test]
    fn trouble_during_the_wait_starts_it_again() {
        let mut s = Settle::new();
        s.beat(None);
        s.beat(Some(true));
        s.trouble();
        s.beat(Some(true));
        assert!(!s.settled());
        s.beat(Some(true));
        assert!(s.settled());
    }

    #[test]
    fn a_directory_that_forgets_a_listed_node_unsettles_it() {
        let mut s = Settle::new();
        s.beat(Some(true));
        s.beat(Some(false));
        assert!(!s.settled());
        // Listed again by that beat: two more good ones.
        s.beat(Some(true));
        assert!(!s.settled());
        s.beat(Some(true));
        assert!(s.settled());
    }

    #[test]
    fn a_failed_beat_before_the_first_listing_unsettles_too() {
        let mut s = Settle::new();
        s.beat(None);
        assert!(!s.settled());
        s.beat(Some(false));
        assert!(!s.settled(), "not listed is no good beat");
        s.beat(Some(true));
        s.beat(Some(true));
        assert!(s.settled());
    }
}

/// How one player's usage on a node is stored in the directory (the value
/// of its field in the node's `usage:` hash): `"CONNECTIONS SESSIONS"`.
pub fn usage_value(u: &crate::session::UserCount) -> String {
    format!("{} {}", u.connections, u.sessions)
}

/// What the other live nodes hold per player, summed from their `usage:`
/// hashes (`(node, [(sub, value)])`); this node's own hash (`me`) and values
/// this version cannot read are left out. A dead node's hash expires with
/// its heartbeat, so its players' counts stop counting by themselves.
pub fn sum_usage(
    me: &str,
    per_node: &[(String, Vec<(String, String)>)],
) -> std::collections::HashMap<String, crate::session::RemoteUsage> {
    let mut sum: std::collections::HashMap<String, crate::session::RemoteUsage> =
        std::collections::HashMap::new();
    for (node, fields) in per_node {
        if node == me {
            continue;
        }
        for (sub, value) in fields {
            let mut parts = value.split(' ').map(str::parse::<u32>);
            let (Some(Ok(connections)), Some(Ok(sessions)), None) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let u = sum.entry(sub.clone()).or_default();
            u.connections = u.connections.saturating_add(connections);
            u.sessions = u.sessions.saturating_add(sessions);
            u.nodes += u32::from(connections > 0);
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_reserved_by_another_live_node_sends_the_join_there() {
        let b = node("b", 1, false);
        assert_eq!(
            route_reserved("a", Some("b"), Some(&b)),
            Some(b.addr.clone())
        );
        // Free, or reserved here (the session would be here: unknown).
        assert_eq!(route_reserved("a", None, None), None);
        assert_eq!(route_reserved("b", Some("b"), Some(&b)), None);
        // Its owner is dead, draining, or the listing is another node's.
        assert_eq!(route_reserved("a", Some("b"), None), None);
        let draining = node("b", 1, true);
        assert_eq!(route_reserved("a", Some("b"), Some(&draining)), None);
        let c = node("c", 1, false);
        assert_eq!(route_reserved("a", Some("b"), Some(&c)), None);
    }

    #[test]
    fn sessions_are_written_again_when_the_directory_may_have_forgotten_them() {
        // Steady state: nothing to do.
        assert!(!must_rewrite(true, Some(true)));
        // Redis away: nothing can be written now (the next good beat does it).
        assert!(!must_rewrite(true, None));
        assert!(!must_rewrite(false, None));
        // Back after an outage: whatever it holds may be stale or gone.
        assert!(must_rewrite(false, Some(true)));
        assert!(must_rewrite(false, Some(false)));
        // Answering all along, but this node is not listed: the directory
        // lost its data (restarted within one beat) or the node's beats lapsed.
        assert!(must_rewrite(true, Some(false)));
    }

    fn record(home: &str, epoch: u64) -> SessionRecord {
        SessionRecord {
            code: "7KQ2MX".into(),
            home: home.into(),
            epoch,
            host: 1,
            max_peers: 8,
            password_sha256: None,
            members: vec![],
        }
    }

    #[test]
    fn route_sends_to_a_live_home_and_takes_over_a_dead_or_draining_one() {
        let r = record("b", 4);
        assert_eq!(route("a", None, None), Route::NotFound);
        assert_eq!(route("b", Some(&r), None), Route::Here);
        let b = node("b", 1, false);
        assert_eq!(
            route("a", Some(&r), Some(&b)),
            Route::Elsewhere(b.addr.clone())
        );
        let take = Route::TakeOver {
            from: "b".into(),
            epoch: 4,
        };
        assert_eq!(route("a", Some(&r), None), take);
        assert_eq!(route("a", Some(&r), Some(&node("b", 1, true))), take);
        // A record naming another node than the one asked about: not trusted.
        assert_eq!(route("a", Some(&r), Some(&node("c", 1, false))), take);
    }

    fn node(name: &str, sessions: u32, draining: bool) -> NodeInfo {
        NodeInfo {
            addr: NodeAddr {
                name: name.into(),
                quic: format!("{name}:4433"),
                http: format!("http://{name}:8080"),
                cert_sha256: None,
            },
            sessions,
            connections: 0,
            draining,
            at_unix_ms: 0,
            region: None,
        }
    }

    #[test]
    fn drain_target_is_the_least_loaded_other_live_node() {
        let nodes = [
            node("a", 0, false),
            node("b", 5, false),
            node("c", 2, false),
            node("d", 1, true),
        ];
        assert_eq!(
            drain_target("a", &nodes).map(|n| n.addr.name.as_str()),
            Some("c")
        );
        assert_eq!(
            drain_target("c", &nodes).map(|n| n.addr.name.as_str()),
            Some("a")
        );
        assert!(drain_target("a", &nodes[..1]).is_none());
        assert!(drain_target("a", &[node("a", 0, false), node("d", 0, true)]).is_none());
    }

    fn member(id: PeerId, token: &str) -> MemberRecord {
        MemberRecord {
            id,
            name: format!("p{id}"),
            client: ClientKind::Rust,
            relay_mode: RelayMode::Datagram,
            token_sha256: token.into(),
            region_rtts: Vec::new(),
        }
    }

    fn session(home: &str, epoch: u64, tokens: &[&str]) -> SessionRecord {
        SessionRecord {
            code: "ABC123".into(),
            home: home.into(),
            epoch,
            host: 1,
            max_peers: 8,
            password_sha256: None,
            members: tokens
                .iter()
                .enumerate()
                .map(|(i, t)| member(i as PeerId + 1, t))
                .collect(),
        }
    }

    #[test]
    fn fence_lets_the_home_write_at_its_epoch_or_newer_and_refuses_everyone_else() {
        let stored = session("a", 3, &[]);
        assert_eq!(fence(None, &session("b", 0, &[])), PutOutcome::Written);
        assert_eq!(
            fence(Some(&stored), &session("a", 3, &[])),
            PutOutcome::Written
        );
        assert_eq!(
            fence(Some(&stored), &session("a", 4, &[])),
            PutOutcome::Written
        );
        let lost = PutOutcome::Lost {
            home: "a".into(),
            epoch: 3,
        };
        // A node that lost the session, at its old epoch or even a newer one.
        assert_eq!(fence(Some(&stored), &session("b", 2, &[])), lost);
        assert_eq!(fence(Some(&stored), &session("b", 9, &[])), lost);
        // The home itself with a view older than the record (it lost it and got it back).
        assert_eq!(fence(Some(&stored), &session("a", 2, &[])), lost);
        assert!(may_write(&stored, "a", 3));
        assert!(!may_write(&stored, "a", 2));
        assert!(!may_write(&stored, "b", 3));
    }

    #[test]
    fn moved_raises_the_epoch_only_from_the_expected_home_and_epoch() {
        let rec = session("a", 3, &["t1"]);
        let next = moved(&rec, "a", 3, "b").map(|r| (r.home, r.epoch, r.members));
        assert_eq!(next, Some(("b".into(), 4, rec.members.clone())));
        assert!(moved(&rec, "a", 2, "b").is_none());
        assert!(moved(&rec, "c", 3, "b").is_none());
        assert!(moved(&session("a", u64::MAX, &[]), "a", u64::MAX, "b").is_none());
    }

    fn rtt(region: &str, rtt_ms: u32) -> RegionRtt {
        RegionRtt {
            region: region.into(),
            rtt_ms,
        }
    }

    #[test]
    fn a_record_carries_its_members_measurements_through_json() {
        let mut rec = session("a", 3, &["t1", "t2"]);
        rec.members[0].region_rtts = vec![rtt("eu", 40), rtt("us", 30)];
        let json = serde_json::to_string(&rec).unwrap();
        assert!(json.contains(r#""region_rtts":[{"region":"eu","rtt_ms":40}"#));
        let back: SessionRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rec);
        assert_eq!(back.members[0].rtts(), rec.members[0].region_rtts);
        // A member without measurements is written as before they existed.
        let bare = serde_json::to_value(&rec.members[1]).unwrap();
        assert!(bare.get("region_rtts").is_none(), "{bare}");
        assert!(back.members[1].rtts().is_empty());
    }

    #[test]
    fn a_record_written_before_measurements_travelled_still_decodes() {
        // Exactly what a node of the previous release wrote.
        let old = r#"{"code":"ABC123","home":"a","epoch":3,"host":1,"max_peers":8,
            "password_sha256":null,"members":[{"id":1,"name":"p1","client":"Rust",
            "relay_mode":"Datagram","token_sha256":"t1"}]}"#;
        let rec: SessionRecord = serde_json::from_str(old).unwrap();
        assert_eq!(rec, session("a", 3, &["t1"]));
        assert!(rec.members[0].rtts().is_empty());
        // And a node of the previous release reads a new record (it does
        // not know the field, and serde skips unknown fields).
        let mut new = session("a", 3, &["t1"]);
        new.members[0].region_rtts = vec![rtt("eu", 40)];
        let v = serde_json::to_value(&new).unwrap();
        assert!(v["members"][0]["region_rtts"].is_array());
    }

    #[test]
    fn stored_measurements_are_taken_only_as_a_client_could_send_them() {
        let mut m = member(1, "t1");
        m.region_rtts = vec![rtt("eu", 40), rtt("us", 30)];
        assert_eq!(m.rtts().len(), 2);
        // Too many, a bad name, a region twice: none of it is taken.
        m.region_rtts = (0..=crate::protocol::MAX_REGION_RTTS)
            .map(|i| rtt(&format!("r{i}"), 1))
            .collect();
        assert!(m.rtts().is_empty());
        m.region_rtts = vec![rtt("EU!", 40)];
        assert!(m.rtts().is_empty());
        m.region_rtts = vec![rtt("eu", 40), rtt("eu", 10)];
        assert!(m.rtts().is_empty());
    }

    #[test]
    fn stale_tokens_are_those_of_members_who_left() {
        let old = session("a", 1, &["t1", "t2", "t3"]);
        let new = session("a", 1, &["t1", "t3", "t4"]);
        assert_eq!(stale_tokens(&old, &new), vec!["t2"]);
        assert!(stale_tokens(&new, &new).is_empty());
        assert_eq!(new.member_by_token("t4").map(|m| m.id), Some(3));
        assert!(new.member_by_token("t2").is_none());
    }

    #[test]
    fn hashes_are_sha256_hex_and_passwords_are_salted_by_code() {
        // SHA-256("abc"), the FIPS 180-2 example.
        assert_eq!(
            token_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(password_hash("ABC123", "pw"), password_hash("ABC124", "pw"));
        assert_eq!(password_hash("ABC123", "pw").len(), 64);
    }

    #[test]
    fn usage_sums_the_other_nodes_and_skips_this_one_and_garbage() {
        use crate::session::{RemoteUsage, UserCount};
        let v = |c, s| {
            usage_value(&UserCount {
                sub: String::new(),
                connections: c,
                sessions: s,
            })
        };
        assert_eq!(v(3, 1), "3 1");
        let per_node = vec![
            (
                "a".to_string(),
                vec![("alice".to_string(), v(2, 1)), ("bob".to_string(), v(1, 0))],
            ),
            (
                "b".to_string(),
                vec![
                    ("alice".to_string(), v(1, 0)),
                    ("carol".to_string(), "x y".to_string()),
                    ("dave".to_string(), "1 2 3".to_string()),
                ],
            ),
            ("me".to_string(), vec![("alice".to_string(), v(9, 9))]),
        ];
        let sum = sum_usage("me", &per_node);
        assert_eq!(
            sum.get("alice"),
            Some(&RemoteUsage {
                connections: 3,
                sessions: 1,
                nodes: 2
            })
        );
        assert_eq!(sum.get("bob").map(|u| u.nodes), Some(1));
        assert!(!sum.contains_key("carol") && !sum.contains_key("dave"));
    }
}
