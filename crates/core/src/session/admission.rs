//! Admission: what the core decides about a connection attempt before the
//! server keeps any state for it (accept, Retry, refuse), the attempts in
//! flight, and the record each client address keeps (its connections,
//! attempts, sessions and budgets). See [`Core::admit`].

use std::net::IpAddr;
use std::time::Instant;

use super::{Core, Now, Timer};
use crate::limits::{Limits, TokenBucket};
use crate::protocol::ErrorCode;

/// The key per-address limits count by: an IPv4 address, or an IPv6 /64.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// What the shell should do with a QUIC connection attempt, decided before
/// it keeps any state for it (see [`Core::admit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go on with the handshake. The attempt is *pending* until the shell
    /// calls [`Core::open`] or [`Core::abandon`] for it.
    Accept,
    /// Answer with a QUIC Retry: the client must prove it receives packets at
    /// its address (one extra round trip) before the server holds any state.
    Retry,
    /// Refuse at once (QUIC `CONNECTION_REFUSED`): only an address that has
    /// proved itself and still has too many attempts in flight, or a server
    /// shutting down.
    Refuse(ErrorCode),
}

/// Connection attempts in flight: QUIC handshakes, and WebTransport sessions
/// still waiting for their CONNECT. Counted apart from open connections, so
/// attempts that never finish hold no connection slot.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Pending {
    /// Attempts whose address was validated (a Retry token) when they arrived.
    pub(super) validated: usize,
    /// Attempts whose address was not.
    pub(super) unvalidated: usize,
}

impl Pending {
    pub(super) fn count(&mut self, validated: bool) -> &mut usize {
        if validated {
            &mut self.validated
        } else {
            &mut self.unvalidated
        }
    }
    pub(super) fn add(&mut self, validated: bool) {
        *self.count(validated) += 1;
    }
    pub(super) fn remove(&mut self, validated: bool) {
        let n = self.count(validated);
        *n = n.saturating_sub(1);
    }
    pub(super) fn is_empty(&self) -> bool {
        self.validated == 0 && self.unvalidated == 0
    }
}

/// Budgets shared by every connection from one client address. Kept after
/// the address's last connection closes until every budget has refilled, so
/// reconnecting buys nothing.
pub(super) struct PerIp {
    /// Open connections (`max_connections_per_ip`).
    pub(super) conns: usize,
    /// Connection attempts in flight (see [`Pending`]).
    pub(super) pending: Pending,
    /// Sessions created from this address and not yet ended (`max_sessions_per_ip`).
    pub(super) sessions: usize,
    /// Relay bytes sent on this address's behalf, fan-out included
    /// (`relay_out_bytes_per_ip`).
    pub(super) relay_out: TokenBucket,
    /// Failed joins: `max_join_attempts` per minute (the brute-force guard).
    pub(super) failed_joins: TokenBucket,
}

impl PerIp {
    pub(super) fn new(now: Instant, l: &Limits) -> Self {
        let rate = l.relay_out_bytes_per_ip;
        // The burst must hold the largest frame to everyone, or that frame
        // could never pass.
        let largest = l
            .max_relay_payload
            .saturating_mul(l.max_peers_per_session.saturating_sub(1));
        let joins = l.max_join_attempts;
        PerIp {
            conns: 0,
            pending: Pending::default(),
            sessions: 0,
            relay_out: TokenBucket::new(now, rate, rate.max(largest)),
            failed_joins: TokenBucket::new(now, 0, joins).per_minute(joins),
        }
    }

    pub(super) fn forgettable(&self, now: Instant) -> bool {
        self.conns == 0
            && self.pending.is_empty()
            && self.sessions == 0
            && self.relay_out.is_full(now)
            && self.failed_joins.is_full(now)
    }
}

impl Core {
    /// A QUIC connection attempt arrived from `ip`; `validated` says whether
    /// its address is proven (a Retry token). Decides, before the server keeps
    /// any state, whether to go on, to ask for a Retry, or to refuse.
    ///
    /// Attempts count against `max_unvalidated_handshakes` (whole server) and
    /// `max_unvalidated_handshakes_per_ip` while their address is unproven;
    /// past either, new unvalidated attempts get a Retry, which a spoofed
    /// source never answers. So a flood of Initials, spoofed or not, holds a
    /// bounded number of handshakes and no connection slot: slots are taken
    /// in [`Core::open`], once the address is proven.
    pub fn admit(&mut self, now: Now, ip: IpAddr, validated: bool) -> Admission {
        if self.shutting_down {
            return Admission::Refuse(ErrorCode::ShuttingDown);
        }
        let key = address_key(ip);
        let admission = self.admission(now, key, validated);
        self.maybe_forget(key);
        admission
    }

    fn admission(&mut self, now: Now, key: IpAddr, validated: bool) -> Admission {
        let l = &self.limits;
        let a = self
            .per_ip
            .entry(key)
            .or_insert_with(|| PerIp::new(now.mono, l));
        if !validated
            && (self.pending.unvalidated >= l.max_unvalidated_handshakes
                || a.pending.unvalidated >= l.max_unvalidated_handshakes_per_ip)
        {
            return Admission::Retry;
        }
        // Proven addresses: at most a connection budget's worth of attempts
        // in flight, per address and in all. (Unvalidated ones are bounded
        // above, and cannot crowd a proven client out.)
        if validated
            && (a.pending.validated >= l.max_connections_per_ip
                || self.pending.validated >= l.max_connections)
        {
            return Admission::Refuse(ErrorCode::ServerFull);
        }
        a.pending.add(validated);
        self.pending.add(validated);
        Admission::Accept
    }

    /// An admitted attempt ended without a connection (handshake failed or
    /// timed out, no CONNECT), or is about to be opened: it is no longer pending.
    pub fn abandon(&mut self, ip: IpAddr, validated: bool) {
        self.pending.remove(validated);
        let key = address_key(ip);
        if let Some(a) = self.per_ip.get_mut(&key) {
            a.pending.remove(validated);
        }
        self.maybe_forget(key);
    }

    /// If nothing uses `ip` any more, arm its forgetting for when its budgets
    /// have refilled (so that reconnecting buys nothing).
    pub(super) fn maybe_forget(&mut self, ip: IpAddr) {
        let Some(a) = self.per_ip.get(&ip) else {
            return;
        };
        if a.conns == 0 && a.pending.is_empty() && a.sessions == 0 {
            let at = a.relay_out.full_at().max(a.failed_joins.full_at());
            self.arm(at, Timer::Forget(ip));
        }
    }
}
