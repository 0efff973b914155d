//! Rate budgets: the failed-join guard of a connection and its address,
//! the signal budget each receiver grants each sender, and the rate-limit
//! reports (at most one a second, each with what was dropped since the last).

use std::time::{Duration, Instant};

use super::{ConnId, Core, Now, Timer};
use crate::limits::TokenBucket;
use crate::protocol::{ErrorCode, PeerId};

/// A rate-limit report owed to a connection: what was dropped since the last
/// one. Reports go out at most once per second, each with its count, so a
/// flood gets one answer a second instead of one per dropped message.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Throttled {
    pub(super) dropped: u32,
    pub(super) reported: Option<Instant>,
}

impl Throttled {
    pub(super) const EVERY: Duration = Duration::from_secs(1);

    /// Count one drop; true when a report is due now.
    pub(super) fn drop_one(&mut self, now: Instant) -> bool {
        self.dropped = self.dropped.saturating_add(1);
        self.due(now)
    }

    pub(super) fn due(&self, now: Instant) -> bool {
        self.dropped > 0
            && self
                .reported
                .is_none_or(|t| now.saturating_duration_since(t) >= Self::EVERY)
    }

    /// The count to report; starts the next period.
    pub(super) fn take(&mut self, now: Instant) -> u32 {
        self.reported = Some(now);
        std::mem::take(&mut self.dropped)
    }
}

impl Core {
    /// Arm the report owed to `conn` for the drops since its last one.
    pub(super) fn owe_report(&mut self, conn: ConnId) {
        let at = self.conns.get(&conn).and_then(|c| {
            [c.over_rate, c.over_receiver]
                .iter()
                .filter(|t| t.dropped > 0)
                .filter_map(|t| t.reported)
                .map(|t| t + Throttled::EVERY)
                .min()
        });
        if let Some(at) = at {
            self.arm(at, Timer::Report(conn));
        }
    }

    /// Seconds until the address of `conn` may try a join again, if its
    /// failed-join budget is spent.
    pub(super) fn join_lockout(&self, now: Instant, conn: ConnId) -> Option<u64> {
        let ip = self.conns.get(&conn)?.meta.ip?;
        let wait = self.per_ip.get(&ip)?.failed_joins.wait_for(now, 1)?;
        Some(wait.as_secs_f64().ceil().max(1.0) as u64)
    }

    /// A join failed: charge the connection and its address, answer with
    /// `code`. Only a connection that itself failed more than
    /// `max_join_attempts` times is closed; an address over its budget is
    /// locked out of joins for a while (see `join`), its connections stay.
    pub(super) fn failed_join(&mut self, now: Now, conn: ConnId, code: ErrorCode, message: String) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.failed_joins += 1;
        let mine = c.failed_joins;
        if let Some(a) = c.meta.ip.and_then(|ip| self.per_ip.get_mut(&ip)) {
            a.failed_joins.try_take(now.mono, 1);
        }
        let max = self.limits.max_join_attempts;
        if mine > max {
            return self.fail(
                conn,
                ErrorCode::TooManyJoinAttempts,
                format!("this connection made more than {max} failed joins"),
            );
        }
        self.error(conn, code, message);
    }

    /// Take `len` bytes from what `to` may be sent by `from` (a fresh budget
    /// has a burst of four seconds' worth).
    pub(super) fn receiver_takes(
        &mut self,
        now: Instant,
        from: PeerId,
        to: PeerId,
        len: usize,
    ) -> bool {
        let len = len.min(u32::MAX as usize) as u32;
        let rate = self.limits.signal_bytes_per_sec_per_receiver;
        self.peers.get_mut(&to).is_none_or(|p| {
            p.signals_in
                .entry(from)
                .or_insert_with(|| TokenBucket::new(now, rate, rate.saturating_mul(4)))
                .try_take(now, len)
        })
    }

    /// Tell `conn` what was dropped since its last report (rate limits).
    pub(super) fn report_over_rate(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let mut parts = Vec::new();
        if c.over_rate.due(now) {
            let n = c.over_rate.take(now);
            parts.push(format!(
                "{n} control message(s) dropped: more than {} per second",
                self.limits.signals_per_sec
            ));
        }
        if c.over_receiver.due(now) {
            let n = c.over_receiver.take(now);
            parts.push(format!(
                "{n} signal(s) dropped: your signal budget at the receiver ({} bytes/s) was spent",
                self.limits.signal_bytes_per_sec_per_receiver
            ));
        }
        if !parts.is_empty() {
            self.error(conn, ErrorCode::RateLimited, parts.join("; "));
        }
        // The other kind may still owe a report later.
        self.owe_report(conn);
    }

    /// A signal from `conn` was dropped for its receiver's budget.
    pub(super) fn over_receiver(&mut self, now: Instant, conn: ConnId) {
        let due = self
            .conns
            .get_mut(&conn)
            .is_some_and(|c| c.over_receiver.drop_one(now));
        if due {
            self.report_over_rate(now, conn);
        } else {
            self.owe_report(conn);
        }
    }
}
