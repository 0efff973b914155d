//! Liveness: when the server counts as lost (PROTOCOL.md §12, rule 2).
//!
//! Sans-IO, in the style of quinn-proto: [`Liveness`] is told what happened
//! and when (`now` is an input), answers what to do ([`LiveAction`]) and says
//! when it wants to be asked again ([`Liveness::wake_at`]). The connection's
//! reader task (`quic`, `websocket`) is the shell: it tells it about every
//! message, relay frame and `Pong`, sleeps until `wake_at`, sends the `Ping`s
//! it asks for, and ends the connection when it says [`LiveAction::Lost`].
//!
//! The rule: a `Ping` every [`PING_INTERVAL`] while connected; an RTT
//! estimate from the `Pong`s (RFC 6298 weights); the server is lost when a
//! `Ping` has been outstanding, with nothing at all heard since it went out,
//! for longer than `clamp(3 × (srtt + 4·rttvar), 1500 ms, 10 s)` (3 s before
//! the first sample). Timed from the oldest unanswered `Ping`, never from the
//! last message, so a process whose timers were stopped for a while is not
//! taken for dead on waking up.
//!
//! **Probing.** Once a `Ping` has been outstanding for
//! [`probe_after`](Liveness::probe_after) (`max(250 ms, srtt + 4·rttvar)`,
//! 1 s before a sample), the client sends a `Ping` every [`PROBE_INTERVAL`]
//! (100 ms) until anything is heard, like QUIC's probe timeout: on a lossy
//! path a few lost `Ping`s or `Pong`s in a row no longer add up to a false
//! alarm, because many more `Ping`s go out before the live timeout ends. It
//! never changes when a dead server is noticed (the live timeout is the
//! same), and a healthy path still carries 2 `Ping`s a second.

use std::time::{Duration, Instant};

/// How often a connected client sends `Ping`.
pub const PING_INTERVAL: Duration = Duration::from_millis(500);
/// How often the client probes (sends `Ping`) while one has been outstanding
/// for [`Liveness::probe_after`].
pub const PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// The smallest [`Liveness::probe_after`].
pub const PROBE_AFTER_MIN: Duration = Duration::from_millis(250);
/// [`Liveness::probe_after`] before the first RTT sample.
pub const PROBE_AFTER_INITIAL: Duration = Duration::from_millis(1_000);
/// The live timeout before the first RTT sample.
pub const LIVE_TIMEOUT_INITIAL: Duration = Duration::from_millis(3_000);
/// The smallest live timeout.
pub const LIVE_TIMEOUT_MIN: Duration = Duration::from_millis(1_500);
/// The largest live timeout.
pub const LIVE_TIMEOUT_MAX: Duration = Duration::from_millis(10_000);

/// What to do after [`Liveness::tick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveAction {
    /// Nothing yet.
    None,
    /// Send a `Ping` now.
    Ping,
    /// The server is lost: end the connection (and resume elsewhere).
    Lost {
        /// How long the oldest unanswered `Ping` has been waiting.
        silent_for: Duration,
    },
}

/// The liveness state of one connection.
#[derive(Debug, Clone)]
pub struct Liveness {
    interval: Duration,
    /// When the last `Ping` went out (the connection's start before the
    /// first, which is thus due one interval after it).
    last_ping_at: Instant,
    /// When the oldest `Ping` still unanswered went out, with nothing at all
    /// heard since (`None`: nothing outstanding).
    awaiting_since: Option<Instant>,
    /// Smoothed RTT and its variation, in ms (`None` before a sample).
    rtt: Option<(f64, f64)>,
    lost: bool,
}

impl Liveness {
    /// A connection that came up at `now`, pinging every `interval`
    /// ([`PING_INTERVAL`] by the rule).
    pub fn new(now: Instant, interval: Duration) -> Liveness {
        Liveness {
            interval,
            last_ping_at: now,
            awaiting_since: None,
            rtt: None,
            lost: false,
        }
    }

    /// The timer fired (or the shell woke up for any reason) at `now`.
    pub fn tick(&mut self, now: Instant) -> LiveAction {
        if self.lost {
            return LiveAction::None;
        }
        if let Some(since) = self.awaiting_since {
            let silent_for = now.saturating_duration_since(since);
            if silent_for > self.live_timeout() {
                self.lost = true;
                return LiveAction::Lost { silent_for };
            }
        }
        if now >= self.ping_due() {
            self.last_ping_at = now;
            self.awaiting_since.get_or_insert(now);
            return LiveAction::Ping;
        }
        LiveAction::None
    }

    /// When the next `Ping` is due: one interval after the last, or, while
    /// one has been outstanding for [`probe_after`](Self::probe_after), one
    /// [`PROBE_INTERVAL`] after the last (whichever is first).
    fn ping_due(&self) -> Instant {
        let regular = self.last_ping_at + self.interval;
        match self.awaiting_since {
            None => regular,
            Some(since) => {
                let probe = (self.last_ping_at + PROBE_INTERVAL).max(since + self.probe_after());
                regular.min(probe)
            }
        }
    }

    /// When the next `Ping` is due, as things stand (`None` once lost).
    pub fn next_ping_at(&self) -> Option<Instant> {
        (!self.lost).then(|| self.ping_due())
    }

    /// Something arrived from the server (any message, a relay frame).
    pub fn heard(&mut self, _now: Instant) {
        self.awaiting_since = None;
    }

    /// The `Pong` to a `Ping` sent at `ping_sent_at` arrived at `now`: heard,
    /// and a round-trip sample.
    pub fn pong(&mut self, now: Instant, ping_sent_at: Instant) {
        self.heard(now);
        self.rtt_sample(now.saturating_duration_since(ping_sent_at));
    }

    /// One round-trip sample (RFC 6298: first `srtt = s, rttvar = s/2`;
    /// then `rttvar = ¾ rttvar + ¼ |srtt − s|`, `srtt = ⅞ srtt + ⅛ s`).
    pub fn rtt_sample(&mut self, rtt: Duration) {
        // Whole nanoseconds to ms, exact for whole (and most fractional) ms.
        let s = rtt.as_nanos() as f64 / 1e6;
        self.rtt = Some(match self.rtt {
            None => (s, s / 2.0),
            Some((srtt, rttvar)) => {
                let rttvar = 0.75 * rttvar + 0.25 * (srtt - s).abs();
                (0.875 * srtt + 0.125 * s, rttvar)
            }
        });
    }

    /// The smoothed RTT in ms, once there is a sample.
    pub fn srtt_ms(&self) -> Option<f64> {
        self.rtt.map(|(srtt, _)| srtt)
    }

    /// The RTT variation in ms, once there is a sample.
    pub fn rttvar_ms(&self) -> Option<f64> {
        self.rtt.map(|(_, rttvar)| rttvar)
    }

    /// The smoothed RTT, once there is a sample (for the attempt timeout).
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt_ms()
            .map(|ms| Duration::from_nanos((ms * 1e6) as u64))
    }

    /// How long a `Ping` may go unanswered: `floor(clamp(3 × (srtt +
    /// 4·rttvar), 1500, 10000))` ms, 3000 before the first sample.
    pub fn live_timeout(&self) -> Duration {
        match self.rtt {
            None => LIVE_TIMEOUT_INITIAL,
            Some((srtt, rttvar)) => {
                let ms = (3.0 * (srtt + 4.0 * rttvar)).clamp(
                    LIVE_TIMEOUT_MIN.as_millis() as f64,
                    LIVE_TIMEOUT_MAX.as_millis() as f64,
                );
                Duration::from_millis(ms.floor() as u64)
            }
        }
    }

    /// How long a `Ping` may be outstanding before the client probes:
    /// `floor(max(250, srtt + 4·rttvar))` ms, 1000 before the first sample.
    pub fn probe_after(&self) -> Duration {
        match self.rtt {
            None => PROBE_AFTER_INITIAL,
            Some((srtt, rttvar)) => {
                let ms = (srtt + 4.0 * rttvar).max(PROBE_AFTER_MIN.as_millis() as f64);
                Duration::from_millis(ms.floor() as u64)
            }
        }
    }

    /// When [`tick`](Self::tick) must run next: the next `Ping` (a probe
    /// included), or 1 ms after the oldest unanswered one has waited the
    /// live timeout, whichever is first. `None` once the server is lost.
    pub fn wake_at(&self) -> Option<Instant> {
        if self.lost {
            return None;
        }
        let due = self.ping_due();
        let deadline = self
            .awaiting_since
            .map(|t| t + self.live_timeout() + Duration::from_millis(1));
        Some(deadline.map_or(due, |d| d.min(due)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_server_is_lost_two_seconds_after_the_last_answer_on_a_quiet_path() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut l = Liveness::new(t0, PING_INTERVAL);
        let mut last_answer = t0;
        let lost_at = loop {
            let now = l.wake_at().unwrap();
            match l.tick(now) {
                LiveAction::Ping if now < ms(5_000) => {
                    // Answered 30 ms later, until 5 s.
                    l.pong(now + Duration::from_millis(30), now);
                    last_answer = now;
                }
                LiveAction::Lost { .. } => break now,
                _ => {}
            }
            assert!(now < ms(20_000), "never lost");
        };
        assert!(lost_at - last_answer <= Duration::from_millis(2_001));
        assert_eq!(l.wake_at(), None);
        assert_eq!(l.tick(lost_at), LiveAction::None);
    }

    #[test]
    fn probes_every_100_ms_once_a_ping_waited_probe_after_until_anything_is_heard() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut l = Liveness::new(t0, PING_INTERVAL);
        assert_eq!(l.probe_after(), PROBE_AFTER_INITIAL);
        assert_eq!(l.tick(ms(500)), LiveAction::Ping);
        l.pong(ms(520), ms(500)); // srtt 20, rttvar 10: probe_after 250
        assert_eq!(l.probe_after(), PROBE_AFTER_MIN);
        assert_eq!(l.tick(ms(1000)), LiveAction::Ping); // never answered
        assert_eq!(l.wake_at(), Some(ms(1250)));
        let mut at = 1250;
        while at <= 1550 {
            assert_eq!(l.tick(ms(at)), LiveAction::Ping, "probe at {at}");
            assert_eq!(l.wake_at(), Some(ms(at + 100)));
            at += 100;
        }
        // A relay frame: nothing outstanding, the regular interval again.
        l.heard(ms(1600));
        assert_eq!(l.next_ping_at(), Some(ms(1550 + 500)));
        assert_eq!(l.tick(ms(1650)), LiveAction::None);
    }
}
