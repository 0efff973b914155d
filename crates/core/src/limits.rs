//! Limits the server enforces, and the token bucket that enforces the rates.
//!
//! Limits are a plain struct with one set of defaults (`Limits::default()`),
//! sized for a flight simulator: a few players per session sending 30-60
//! state updates per second of a few hundred bytes. The binary maps each to a
//! `serve` flag and environment variable. Exceeding a limit drops the excess
//! and counts it in `/metrics`; it never crashes or blocks.

use std::time::{Duration, Instant};

/// Limits of the session core (pure logic) and of the transports around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most concurrent client connections (QUIC, WebTransport); more are refused with `server_full`.
    pub max_connections: usize,

    /// Most concurrent connections from one client IP address (IPv6: one /64), on every
    /// transport: QUIC and WebTransport connections, WebSockets, and plain TCP connections to the
    /// HTTP port. Players behind one NAT or carrier-grade NAT share an address, so keep it
    /// generous; more are refused with `server_full`. Behind a proxy (`--trust-proxy`) the TCP
    /// count is not applied to the proxy's own address.
    pub max_connections_per_ip: usize,

    /// QUIC handshakes in flight from addresses not yet validated, on the whole server, before
    /// new ones must first answer a QUIC Retry (one extra round trip; a spoofed source never
    /// answers, so a flood of Initials holds no state). Unfinished handshakes never hold a
    /// connection slot.
    pub max_unvalidated_handshakes: usize,

    /// The same, per client IP address: past this many unfinished handshakes from one address,
    /// its new ones get a Retry.
    pub max_unvalidated_handshakes_per_ip: usize,

    /// Most concurrent sessions; `CreateSession` beyond it fails with `too_many_sessions`.
    pub max_sessions: usize,

    /// Most sessions created from one client IP address and still open (IPv6: one /64);
    /// `CreateSession` beyond it fails with `too_many_sessions`.
    pub max_sessions_per_ip: usize,

    /// Most peers in one session (host included); also the default when a host asks for 0.
    pub max_peers_per_session: u32,

    /// Largest control-stream frame in bytes (an SDP offer is typically 1-6 KiB).
    pub max_frame_bytes: u32,

    /// Largest relayed payload in bytes (after the relay header). Keep it under the
    /// path MTU: QUIC guarantees 1200-byte packets, so about 1100 bytes of payload.
    pub max_relay_payload: u32,

    /// Control messages per second per connection (burst: twice this); excess gets `rate_limited`. 0 = no limit.
    pub signals_per_sec: u32,

    /// Signal bytes per second one peer may be sent by each other member of its session (burst: four
    /// seconds' worth). A member flooding signals at a slow peer gets `rate_limited` and its
    /// signals dropped, long before the slow peer's queue fills. 0 = no limit.
    pub signal_bytes_per_sec_per_receiver: u32,

    /// Relay frames per second a connection may send (burst: one second's worth); excess is dropped. 0 = no limit.
    pub relay_datagrams_per_sec: u32,

    /// Relay payload bytes per second a connection may send (burst: one second's worth); excess is dropped. 0 = no limit.
    pub relay_bytes_per_sec: u32,

    /// Relay payload bytes per second the server sends on behalf of all connections from one
    /// client IP address (IPv6: one /64), fan-out included: a frame to 7 peers counts 7 times.
    /// Burst: one second's worth, at least the largest frame to a full session. Bounds the
    /// egress one address can cause; players behind one NAT share it, so keep it generous.
    /// Excess frames are dropped (`ip_rate_limited`). 0 = no limit.
    pub relay_out_bytes_per_ip: u32,

    /// Failed joins (unknown code, wrong password) a connection may make before it is closed.
    /// Also the budget per client IP address per minute: once it is spent, joins from that
    /// address are refused with `too_many_join_attempts` (saying how long to wait) until it
    /// refills, without closing anyone's connection; reconnecting does not reset it.
    pub max_join_attempts: u32,

    /// A session with no signaling or relay traffic for this many seconds ends.
    pub session_idle_ttl_secs: u64,

    /// How long a peer whose connection dropped keeps its id and seat for a resume, in milliseconds.
    pub resume_grace_ms: u64,

    /// A connection that has not sent `Hello` within this many milliseconds is closed. Also
    /// bounds a QUIC handshake and a WebTransport CONNECT.
    pub hello_timeout_ms: u64,

    /// A TCP connection to the HTTP port must send a request's headers within this many
    /// milliseconds (slowloris guard); idle keep-alive connections are closed after it too.
    pub http_header_timeout_ms: u64,

    /// (access control) Most concurrent connections of one player (the token's `sub`), on
    /// every node of a cluster together; more are refused at `Hello` with `server_full`.
    /// A resume is checked against this node's count only. 0 = no limit.
    pub max_connections_per_user: u32,

    /// (access control) Most open sessions one player created, on every node of a cluster
    /// together; `CreateSession` beyond it fails with `too_many_sessions`. 0 = no limit.
    pub max_sessions_per_user: u32,

    /// (access control) Relay payload bytes per second all of one player's connections may
    /// send together (burst: one second's worth), shared out between the nodes the player is
    /// connected to; excess is dropped (`user_rate_limited`). 0 = no limit.
    pub relay_bytes_per_user_per_sec: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_connections_per_ip: 256,
            max_unvalidated_handshakes: 64,
            max_unvalidated_handshakes_per_ip: 8,
            max_sessions: 2_000,
            max_sessions_per_ip: 20,
            max_peers_per_session: 16,
            max_frame_bytes: 16 * 1024,
            max_relay_payload: 1100,
            signals_per_sec: 50,
            signal_bytes_per_sec_per_receiver: 64 * 1024,
            relay_datagrams_per_sec: 500,
            relay_bytes_per_sec: 256 * 1024,
            relay_out_bytes_per_ip: 16 * 1024 * 1024,
            max_join_attempts: 10,
            session_idle_ttl_secs: 1800,
            resume_grace_ms: 15_000,
            hello_timeout_ms: 10_000,
            http_header_timeout_ms: 10_000,
            max_connections_per_user: 0,
            max_sessions_per_user: 0,
            relay_bytes_per_user_per_sec: 0,
        }
    }
}

impl Limits {
    /// `session_idle_ttl_secs` as a duration.
    pub fn session_idle_ttl(&self) -> Duration {
        Duration::from_secs(self.session_idle_ttl_secs)
    }
    /// `resume_grace_ms` as a duration.
    pub fn resume_grace(&self) -> Duration {
        Duration::from_millis(self.resume_grace_ms)
    }
    /// `hello_timeout_ms` as a duration.
    pub fn hello_timeout(&self) -> Duration {
        Duration::from_millis(self.hello_timeout_ms)
    }
}

/// A classic token bucket: `rate` tokens per second, at most `burst` banked.
/// A rate of 0 means unlimited. Time is passed in, so it is tested without sleeping.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilling `rate` a second.
    pub fn new(now: Instant, rate: u32, burst: u32) -> Self {
        TokenBucket {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: now,
        }
    }

    /// The same bucket refilling `per_minute` tokens a minute instead.
    pub fn per_minute(mut self, per_minute: u32) -> Self {
        self.rate = f64::from(per_minute) / 60.0;
        self
    }

    /// How long until `n` tokens are there; `None` when they are there now.
    pub fn wait_for(&self, now: Instant, n: u32) -> Option<Duration> {
        if self.rate == 0.0 {
            return None;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        let have = (self.tokens + elapsed * self.rate).min(self.burst);
        let short = f64::from(n) - have;
        (short > 0.0).then(|| Duration::from_secs_f64(short / self.rate))
    }

    /// When the bucket will surely have refilled to its burst (a millisecond
    /// after the exact time, which floating point can miss by a nanosecond).
    pub fn full_at(&self) -> Instant {
        if self.rate == 0.0 {
            return self.last;
        }
        let missing = (self.burst - self.tokens).max(0.0);
        self.last + Duration::from_secs_f64(missing / self.rate) + Duration::from_millis(1)
    }

    /// True when the bucket has refilled to its burst (nothing to remember).
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.rate == 0.0 || self.tokens + elapsed * self.rate >= self.burst
    }

    /// The same bucket at another rate and burst, keeping what it holds (up
    /// to the new burst).
    pub fn set_rate(&mut self, now: Instant, rate: u32, burst: u32) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        let have = (self.tokens + elapsed * self.rate).min(self.burst);
        self.rate = f64::from(rate);
        self.burst = f64::from(burst.max(1));
        self.tokens = have.min(self.burst);
        self.last = now;
    }

    /// Take `n` tokens if there are that many; otherwise take nothing and say no.
    pub fn try_take(&mut self, now: Instant, n: u32) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        let n = f64::from(n);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(t0, 10, 20);
        let taken = (0..100).filter(|_| b.try_take(t0, 1)).count();
        assert_eq!(taken, 20, "burst");
        assert!(!b.try_take(t0, 1));
        // Half a second later: 5 more tokens.
        let t1 = t0 + Duration::from_millis(500);
        let taken = (0..100).filter(|_| b.try_take(t1, 1)).count();
        assert_eq!(taken, 5);
        // A long pause refills only up to the burst.
        let t2 = t1 + Duration::from_secs(3600);
        let taken = (0..100).filter(|_| b.try_take(t2, 1)).count();
        assert_eq!(taken, 20);
    }

    #[test]
    fn bucket_takes_weighted_amounts_and_zero_rate_is_unlimited() {
        let t0 = Instant::now();
        let mut bytes = TokenBucket::new(t0, 1000, 1000);
        assert!(bytes.try_take(t0, 600));
        assert!(!bytes.try_take(t0, 600), "only 400 left");
        assert!(bytes.try_take(t0, 400));
        let mut free = TokenBucket::new(t0, 0, 0);
        assert!((0..10_000).all(|_| free.try_take(t0, 1_000_000)));
    }

    #[test]
    fn full_at_is_really_full() {
        let t0 = Instant::now();
        for joins in 1..200u32 {
            let mut b = TokenBucket::new(t0, 0, joins).per_minute(joins);
            for taken in 1..=joins.min(7) {
                assert!(b.try_take(t0 + Duration::from_nanos(u64::from(taken) * 7919), 1));
                assert!(b.is_full(b.full_at()), "{joins} per minute, {taken} taken");
            }
        }
    }

    #[test]
    fn clock_going_backwards_does_not_mint_tokens() {
        let t1 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(t1, 10, 1);
        assert!(b.try_take(t1, 1));
        assert!(!b.try_take(t1 - Duration::from_secs(5), 1));
    }

    /// Within half a millisecond of `want_ms` (floating point).
    fn close_to(got: Option<Duration>, want_ms: u64) -> bool {
        let want = Duration::from_millis(want_ms).as_secs_f64();
        got.is_some_and(|d| (d.as_secs_f64() - want).abs() < 0.000_5)
    }

    #[test]
    fn a_per_minute_bucket_refills_a_sixtieth_of_its_rate_each_second() {
        let t0 = Instant::now();
        // 6 a minute: one token every 10 s.
        let mut b = TokenBucket::new(t0, 0, 6).per_minute(6);
        assert_eq!((0..10).filter(|_| b.try_take(t0, 1)).count(), 6);
        assert!(!b.try_take(t0 + Duration::from_secs(9), 1), "not yet 10 s");
        assert!(b.try_take(t0 + Duration::from_millis(10_001), 1));
        assert!(
            !b.try_take(t0 + Duration::from_millis(10_002), 1),
            "one token"
        );
    }

    #[test]
    fn wait_for_says_how_long_until_the_tokens_are_there() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(t0, 10, 10);
        assert_eq!(b.wait_for(t0, 10), None, "a full bucket");
        assert!(b.try_take(t0, 10));
        // 10 a second: one token every 100 ms.
        assert!(close_to(b.wait_for(t0, 1), 100));
        assert!(close_to(b.wait_for(t0 + Duration::from_millis(50), 1), 50));
        assert!(close_to(b.wait_for(t0 + Duration::from_millis(50), 3), 250));
        assert_eq!(b.wait_for(t0 + Duration::from_millis(100), 1), None);
        // Per minute: 6 a minute is 10 s a token.
        let mut slow = TokenBucket::new(t0, 0, 6).per_minute(6);
        assert!(slow.try_take(t0, 6));
        assert!(close_to(
            slow.wait_for(t0 + Duration::from_secs(4), 1),
            6_000
        ));
        assert_eq!(
            TokenBucket::new(t0, 0, 1).wait_for(t0, 100),
            None,
            "unlimited"
        );
    }

    /// An address's budgets are forgotten only once full (`is_full`): one
    /// that said full too early would let a reconnect reset its lockout.
    #[test]
    fn a_bucket_is_full_only_once_it_has_refilled_to_its_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(t0, 10, 10);
        assert!(b.is_full(t0));
        assert!(b.try_take(t0, 5));
        assert!(!b.is_full(t0));
        assert!(!b.is_full(t0 + Duration::from_millis(499)));
        assert!(b.is_full(t0 + Duration::from_millis(500)));
        let mut joins = TokenBucket::new(t0, 0, 3).per_minute(3);
        assert!(joins.try_take(t0, 1));
        assert!(!joins.is_full(t0 + Duration::from_secs(19)));
        assert!(joins.is_full(t0 + Duration::from_secs(21)));
        let mut unlimited = TokenBucket::new(t0, 0, 0);
        assert!(unlimited.try_take(t0, 1_000));
        assert!(unlimited.is_full(t0));
    }
}
