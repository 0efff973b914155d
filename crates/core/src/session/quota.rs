//! Per-player quotas (access control): connections, sessions created and
//! relay bytes per second of one player, the token's `sub`.
//!
//! Why here: per-address quotas cannot tell one player from another behind
//! a NAT, nor stop one player with many addresses; the token names the
//! player. The core counts what each player holds on this node, exactly,
//! and checks at `Hello` and `CreateSession`, before any state is made for
//! the request, so a refused client leaves nothing behind. In a cluster
//! the shell adds what the other nodes hold ([`Core::set_remote_usage`],
//! read from the directory on each heartbeat) and publishes this node's
//! counts ([`Core::user_counts`]); see docs/CONFIGURATION.md ("Per-player
//! quotas") for how exact that is.

use std::collections::HashMap;
use std::time::Instant;

use super::{ConnId, Core};
use crate::limits::TokenBucket;
use crate::protocol::PeerId;

/// What one player holds on this node.
#[derive(Debug, Default)]
pub(super) struct UserUsage {
    /// Connections that said `Hello` with the player's token and are open.
    pub(super) conns: u32,
    /// Sessions the player created that are still open.
    pub(super) sessions: u32,
    /// The player's relay budget on this node, shared by its connections
    /// (`relay_bytes_per_user_per_sec`, split between its nodes).
    pub(super) relay: Option<TokenBucket>,
}

/// What one player holds on the other nodes of a cluster, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoteUsage {
    /// Open connections.
    pub connections: u32,
    /// Open sessions the player created.
    pub sessions: u32,
    /// Other nodes the player has connections on (shares its relay budget with).
    pub nodes: u32,
}

/// What one player holds on this node (what a node publishes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCount {
    /// The player, the token's `sub`.
    pub sub: String,
    /// Open connections.
    pub connections: u32,
    /// Open sessions the player created.
    pub sessions: u32,
}

impl Core {
    /// What the other nodes of the cluster hold, per player, as the shell
    /// last read it from the directory (replaces the previous reading).
    /// The players' relay budgets on this node are shared out again.
    pub fn set_remote_usage(&mut self, now: Instant, remote: HashMap<String, RemoteUsage>) {
        self.remote_users = remote;
        let subs: Vec<String> = self.users.keys().cloned().collect();
        for sub in subs {
            let rate = self.user_relay_rate(&sub);
            if let Some(b) = self.users.get_mut(&sub).and_then(|u| u.relay.as_mut()) {
                b.set_rate(now, rate, rate);
            }
        }
    }

    /// What each player holds on this node, for the other nodes.
    pub fn user_counts(&self) -> Vec<UserCount> {
        self.users
            .iter()
            .filter(|(_, u)| u.conns > 0 || u.sessions > 0)
            .map(|(sub, u)| UserCount {
                sub: sub.clone(),
                connections: u.conns,
                sessions: u.sessions,
            })
            .collect()
    }

    /// Connections of players with a quota on the other nodes, as last read.
    pub fn remote_connections(&self) -> u64 {
        self.remote_users
            .values()
            .map(|r| u64::from(r.connections))
            .sum()
    }

    /// May `sub` open one more connection? `resuming`: the peer whose seat
    /// the `Hello` resumes on this node, if any: a resume is checked
    /// against this node's count only (the seat was counted where it was),
    /// and the connection it replaces does not count. `Err` says why not.
    pub(super) fn conn_quota(&self, sub: &str, resuming: Option<PeerId>) -> Result<(), String> {
        let max = self.limits.max_connections_per_user;
        if max == 0 {
            return Ok(());
        }
        let here = self.users.get(sub).map_or(0, |u| u.conns);
        let held = match resuming {
            Some(p) => {
                let replaced = self
                    .peers
                    .get(&p)
                    .and_then(|x| x.conn)
                    .and_then(|c| self.conns.get(&c))
                    .is_some_and(|c| c.user.as_deref() == Some(sub));
                here.saturating_sub(u32::from(replaced))
            }
            None => here.saturating_add(self.remote_users.get(sub).map_or(0, |r| r.connections)),
        };
        if held >= max {
            return Err(format!(
                "your account already has {held} connections, the most one player may have \
                 ({max}); close one first"
            ));
        }
        Ok(())
    }

    /// May `sub` create one more session? `Some` says why not.
    pub(super) fn session_quota(&self, sub: &str) -> Option<String> {
        let max = self.limits.max_sessions_per_user;
        if max == 0 {
            return None;
        }
        let held = self.users.get(sub).map_or(0, |u| u.sessions)
            + self.remote_users.get(sub).map_or(0, |r| r.sessions);
        (held >= max).then(|| {
            format!(
                "your account already holds {held} sessions, the most one player may create \
                 ({max}); end one first"
            )
        })
    }

    /// `conn` said `Hello` with `sub`'s token: count it for the player.
    pub(super) fn charge_conn(&mut self, now: Instant, conn: ConnId, sub: &str) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.user.is_some() {
            return;
        }
        c.user = Some(sub.to_string());
        let limit = self.limits.relay_bytes_per_user_per_sec;
        let rate = self.user_relay_rate(sub);
        let u = self.users.entry(sub.to_string()).or_default();
        u.conns += 1;
        if limit > 0 && u.relay.is_none() {
            u.relay = Some(TokenBucket::new(now, rate, rate));
        }
    }

    /// A connection counted for `sub` closed.
    pub(super) fn uncharge_conn(&mut self, sub: &str) {
        if let Some(u) = self.users.get_mut(sub) {
            u.conns = u.conns.saturating_sub(1);
        }
        self.maybe_forget_user(sub);
    }

    /// A session `sub` created ended (or left this node).
    pub(super) fn uncharge_session(&mut self, sub: &str) {
        if let Some(u) = self.users.get_mut(sub) {
            u.sessions = u.sessions.saturating_sub(1);
        }
        self.maybe_forget_user(sub);
    }

    fn maybe_forget_user(&mut self, sub: &str) {
        if self
            .users
            .get(sub)
            .is_some_and(|u| u.conns == 0 && u.sessions == 0)
        {
            self.users.remove(sub);
        }
    }

    /// The player's relay rate on this node: its budget shared equally
    /// with the other nodes it is connected to.
    fn user_relay_rate(&self, sub: &str) -> u32 {
        let limit = self.limits.relay_bytes_per_user_per_sec;
        let nodes = 1 + self.remote_users.get(sub).map_or(0, |r| r.nodes);
        (limit / nodes).max(1)
    }
}
