//! The decisions of automatic resume, as pure code: what a close means,
//! when to try again, whether to offer the resume token or rejoin by code.
//!
//! Nothing here touches a socket or reads a clock: every function takes
//! `now` (or the elapsed time) and the randomness it needs, and returns what
//! to do and when. The supervisor in [`super::reconnect`] is the I/O shell
//! that carries the decisions out.

use std::time::{Duration, Instant};

use crate::protocol::{ClientMsg, ErrorCode, Redirect, ServerMsg};
use crate::wire::Ended;

use super::Error;

/// The backoff steps before jitter: the first attempt goes at once.
const STEPS_MS: [u64; 6] = [0, 250, 500, 1_000, 2_000, 4_000];

/// What the client remembers of the conversation, to come back to it:
/// the session it is in (its code and password) and the server's last
/// `GoingAway`. The connection's reader notes every control message here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Memory {
    /// The join code of the session this client is in.
    pub(super) code: Option<String>,
    /// The password given when creating or joining it.
    pub(super) password: Option<String>,
    /// The password of the request on its way (becomes `password` when the
    /// server confirms).
    pub(super) asked_password: Option<String>,
    /// `GoingAway.reconnect_after_ms` of the current connection.
    pub(super) going_away: Option<u32>,
    /// A fatal error the server sent on the current connection (its close
    /// follows, but may be seen only as a lost connection).
    pub(super) fatal: Option<u16>,
    /// (cluster mode) The `Redirect` the current connection ended with, to
    /// follow.
    pub(super) redirect: Option<Redirect>,
    /// Redirects in a row since a request was last answered.
    pub(super) redirects: u32,
    /// The `CreateSession` or `JoinSession` sent and not yet answered, to
    /// send again where a redirect leads.
    pub(super) pending: Option<ClientMsg>,
    /// The smoothed round trip of the last connection (liveness), for the
    /// next attempt's timeout.
    pub(super) srtt: Option<Duration>,
    /// The current connection ended because liveness found the server lost.
    pub(super) server_lost: bool,
    /// The protocol version of the last `Welcome`.
    pub(super) version: u16,
}

impl Memory {
    /// Take note of one message from the server.
    pub(super) fn note(&mut self, msg: &ServerMsg) {
        // `too_many_join_attempts` closes only a connection that failed too
        // often; anything the server says after it shows this one stays.
        if self.fatal == Some(ErrorCode::TooManyJoinAttempts as u16)
            && !matches!(msg, ServerMsg::Error { .. })
        {
            self.fatal = None;
        }
        let (redirects, pending) =
            redirect_count_after(self.redirects, self.pending.is_some(), msg);
        self.redirects = redirects;
        if !pending {
            self.pending = None;
        }
        match msg {
            ServerMsg::SessionCreated(i) | ServerMsg::SessionJoined(i) => {
                self.code = Some(i.code.clone());
                if self.asked_password.is_some() {
                    self.password = self.asked_password.take();
                }
            }
            ServerMsg::SessionLeft { .. } => {
                self.code = None;
                self.password = None;
            }
            ServerMsg::GoingAway {
                reconnect_after_ms, ..
            } => self.going_away = Some(*reconnect_after_ms),
            ServerMsg::Redirect(r) => self.redirect = Some(r.clone()),
            ServerMsg::Welcome(w) => self.version = w.version,
            ServerMsg::Error { code, .. } if error_is_final(*code) => self.fatal = Some(*code),
            _ => {}
        }
    }
}

/// The redirect count and whether a request is pending after `msg`, given
/// `count` redirects in a row so far and `pending` (a `CreateSession` or
/// `JoinSession` waits for its answer): a `Redirect` counts one more; the
/// answer to the request (`SessionCreated`, `SessionJoined`) ends the run,
/// and so does a `Welcome` with nothing pending; an `Error` answering the
/// request ends the wait but not the run (PROTOCOL.md §12, rule 5).
pub fn redirect_count_after(count: u32, pending: bool, msg: &ServerMsg) -> (u32, bool) {
    match msg {
        ServerMsg::Redirect(_) => (count + 1, pending),
        ServerMsg::SessionCreated(_) | ServerMsg::SessionJoined(_) => (0, false),
        ServerMsg::Welcome(_) if !pending => (0, false),
        ServerMsg::Error { code, .. } if answers_request(*code) => (count, false),
        _ => (count, pending),
    }
}

/// Whether an `Error` with this code, followed by the end of the
/// connection, makes that end final: the fatal codes of PROTOCOL.md §6 but
/// `shutting_down` and `slow_consumer` (coming back is right), plus
/// `too_many_join_attempts` (resuming would only reset the connection's
/// failed-join count). Unknown codes are not.
pub fn error_is_final(code: u16) -> bool {
    match ErrorCode::from_u16(code) {
        Some(ErrorCode::ShuttingDown | ErrorCode::SlowConsumer) => false,
        Some(ErrorCode::TooManyJoinAttempts) => true,
        Some(c) => c.is_fatal(),
        None => false,
    }
}

/// Whether an error with this code is the answer to a `CreateSession` or
/// `JoinSession` (so that request is not pending any more).
pub fn answers_request(code: u16) -> bool {
    matches!(
        ErrorCode::from_u16(code),
        Some(
            ErrorCode::InvalidArgument
                | ErrorCode::UnknownSession
                | ErrorCode::SessionFull
                | ErrorCode::WrongPassword
                | ErrorCode::AlreadyInSession
                | ErrorCode::TooManySessions
                | ErrorCode::TooManyJoinAttempts
                | ErrorCode::ClusterUnavailable
                | ErrorCode::Internal
                | ErrorCode::Forbidden
        )
    )
}

/// What a connection's end means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Lost (network, proxy, liveness, idle timeout): resume at once.
    Resume,
    /// The server asked for it (`GoingAway`, `shutting_down`): resume after
    /// this delay.
    ResumeAfter(Duration),
    /// The connection ended with a `Redirect`: follow it at once.
    Redirect,
    /// Over for good: the application closed it, the server closed it
    /// cleanly or with a fatal error such as `replaced`, or resume is off.
    GiveUp,
}

/// How long a server that closes with `shutting_down` and no `GoingAway`
/// (it was lost with the rest) gets before the client comes back.
pub const SHUTTING_DOWN_DELAY: Duration = Duration::from_secs(1);

/// How a connection ended, as far as deciding what comes next goes (the
/// `close` section of the client vectors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndFacts {
    /// The protocol's close code: QUIC/WebTransport application code,
    /// WebSocket 1000 as 0 and 4000 + n as n; `None` when the connection
    /// ended without one (lost, timed out, WebSocket 1006, ...).
    pub code: Option<u64>,
    /// The code of an `Error` the server sent on the connection before, if
    /// it was final ([`error_is_final`]) or the last one.
    pub error_before: Option<u16>,
    /// `GoingAway.reconnect_after_ms` received on the connection.
    pub going_away_ms: Option<u32>,
    /// The connection ended with a `Redirect` to follow.
    pub redirected: bool,
    /// The application closed or abandoned the client.
    pub app_closed: bool,
    /// [`super::ClientConfig::auto_resume`].
    pub auto_resume: bool,
    /// The connection had its `Welcome` (else there is nothing to resume).
    pub welcomed: bool,
}

/// What the end of a connection means (PROTOCOL.md §12, rule 3); the first
/// rule that applies wins.
pub fn close_verdict(e: &EndFacts) -> Verdict {
    if e.app_closed {
        return Verdict::GiveUp;
    }
    // A redirect is no loss: follow it, resume or not.
    if e.redirected {
        return Verdict::Redirect;
    }
    if !e.auto_resume || !e.welcomed || e.code == Some(0) {
        return Verdict::GiveUp;
    }
    if e.error_before.is_some_and(error_is_final) {
        return Verdict::GiveUp;
    }
    if let Some(ms) = e.going_away_ms {
        return Verdict::ResumeAfter(Duration::from_millis(ms.into()));
    }
    let Some(code) = e.code else {
        // Lost without a close code.
        return Verdict::Resume;
    };
    match u16::try_from(code).ok().and_then(ErrorCode::from_u16) {
        // The server stops (its GoingAway may have been lost with the rest).
        Some(ErrorCode::ShuttingDown) => Verdict::ResumeAfter(SHUTTING_DOWN_DELAY),
        // It dropped a reader that fell behind; the seat is kept.
        Some(ErrorCode::SlowConsumer) => Verdict::Resume,
        // A Hello whose token this node cannot place: resume elsewhere.
        Some(ErrorCode::ClusterUnavailable) => Verdict::Resume,
        // The access token ran out: come back with a fresh one (the token
        // source is asked again on every attempt), the seat is kept.
        Some(ErrorCode::TokenExpired) => Verdict::Resume,
        // `replaced`, a protocol error, too many join attempts, an unknown
        // code: coming back would be refused again, or is not wanted.
        _ => Verdict::GiveUp,
    }
}

/// Judge how a connection ended. `said` is what the server said on it
/// before ([`Memory::going_away`], [`Memory::fatal`], [`Memory::redirect`]);
/// `app_closed` says the application closed or abandoned it; `auto_resume`
/// is [`super::ClientConfig::auto_resume`].
pub(super) fn judge_close(
    ended: &Ended,
    said: &Memory,
    app_closed: bool,
    auto_resume: bool,
) -> Verdict {
    close_verdict(&EndFacts {
        code: ended.code,
        error_before: said.fatal,
        going_away_ms: said.going_away,
        redirected: said.redirect.is_some(),
        app_closed,
        auto_resume,
        welcomed: true,
    })
}

/// Whether a reconnection attempt refused or closed with this code is
/// final: a protocol mismatch or `replaced` (`bad_message`,
/// `frame_too_large`, `unsupported_version`, `protocol_violation`,
/// `hello_timeout`, `replaced`) or an unknown non-zero code. Anything else
/// (`server_full`, `shutting_down`, `slow_consumer`, the non-fatal codes, a
/// normal close) is tried again.
pub fn attempt_refusal_is_final(code: u64) -> bool {
    match u16::try_from(code).ok().and_then(ErrorCode::from_u16) {
        Some(ErrorCode::ServerFull | ErrorCode::ShuttingDown | ErrorCode::SlowConsumer) => false,
        Some(c) => c.is_fatal(),
        None => code != 0,
    }
}

/// What a failed reconnection attempt means.
pub(super) fn judge_failure(e: &Error) -> Verdict {
    match e {
        // The server answered and said no for good (a protocol mismatch).
        Error::Server { code, .. } if attempt_refusal_is_final(u64::from(*code)) => Verdict::GiveUp,
        Error::Closed(Ended {
            code: Some(code), ..
        }) if attempt_refusal_is_final(*code) => Verdict::GiveUp,
        // A configuration that cannot work will not start working.
        Error::Config(_) | Error::Tls(_) | Error::Unsupported(_) => Verdict::GiveUp,
        // Unreachable, refused, timed out, full: try again later.
        _ => Verdict::Resume,
    }
}

/// Whether a failed attempt says the server could not be reached (so the
/// next one goes to the next configured server): anything but a refusal
/// the server itself sent.
pub(super) fn unreachable(e: &Error) -> bool {
    !matches!(e, Error::Server { .. })
}

/// The delay before reconnect attempt `attempt` (0-based, PROTOCOL.md §12
/// rule 1): `floor(step × (0.5 + 0.5 × random))` with `step` 0, 250, 500,
/// 1000, 2000, then 4000 ms, and `random` in `[0, 1)`, so that clients cut at
/// the same moment do not come back in step. Attempt 0 never waits.
pub fn backoff(attempt: u32, random: f64) -> Duration {
    let step = STEPS_MS[(attempt as usize).min(STEPS_MS.len() - 1)] as f64;
    let random = random.clamp(0.0, 1.0);
    Duration::from_millis((step * (0.5 + 0.5 * random)).floor() as u64)
}

/// What the `Welcome` that ends a reconnection means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterReconnect {
    /// Same peer id, same seat: the server puts the client back by itself.
    Resumed,
    /// A new peer id: join the session again by code and password.
    Rejoin,
    /// A new peer in no session: the unanswered `CreateSession`/`JoinSession`
    /// goes again (in the first flight).
    Resend,
    /// A new peer, nothing to do.
    Fresh,
}

/// PROTOCOL.md §12 rule 4: `resumed` is the `Welcome`'s flag, `peer_id` its
/// id; `previous_peer_id` the id before the loss; `in_session` whether the
/// client was in a session; `pending_request` whether a create/join waits
/// for its answer.
pub fn after_reconnect(
    resumed: bool,
    peer_id: u32,
    previous_peer_id: u32,
    in_session: bool,
    pending_request: bool,
) -> AfterReconnect {
    if resumed && peer_id == previous_peer_id {
        AfterReconnect::Resumed
    } else if in_session {
        AfterReconnect::Rejoin
    } else if pending_request {
        AfterReconnect::Resend
    } else {
        AfterReconnect::Fresh
    }
}

/// How long one reconnection attempt (transport up, then the `Welcome`)
/// gets: `min(connect_timeout, max(3 s, 2 s + 8 × srtt))`, the srtt of the
/// last connection (`None`: unknown); a zero `connect_timeout` caps nothing.
pub fn attempt_timeout(srtt: Option<Duration>, connect_timeout: Duration) -> Duration {
    let rtt_ms = srtt.map_or(0.0, |d| d.as_nanos() as f64 / 1e6);
    let want = (2000.0 + 8.0 * rtt_ms).max(3000.0).floor() as u64;
    let want = Duration::from_millis(want);
    if connect_timeout.is_zero() {
        want
    } else {
        want.min(connect_timeout)
    }
}

/// Whether a request sent at `sent_at` and unanswered at `now` has timed out.
pub fn request_timed_out(sent_at: Instant, now: Instant, timeout: Duration) -> bool {
    now.saturating_duration_since(sent_at) >= timeout
}

/// One reconnection attempt to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first attempt after a loss.
    pub number: u32,
    /// When to start it.
    pub at: Instant,
    /// Offer the resume token (the grace may not be over). Otherwise the
    /// seat is surely gone: rejoin by code in the first flight.
    pub with_token: bool,
}

/// The attempts after one loss: backoff, the grace, and when to give up.
#[derive(Debug, Clone)]
pub struct Plan {
    lost_at: Instant,
    /// How long the server keeps the seat (`Welcome.limits.resume_grace_ms`).
    grace: Duration,
    /// How long after the loss to keep trying at all.
    window: Duration,
    /// Extra wait before the first attempt (a `GoingAway` delay).
    first_delay: Duration,
    attempts: u32,
}

impl Plan {
    /// A loss at `lost_at` judged `verdict` (not [`Verdict::GiveUp`]).
    pub fn new(lost_at: Instant, verdict: Verdict, grace: Duration, window: Duration) -> Plan {
        let first_delay = match verdict {
            Verdict::ResumeAfter(d) => d,
            _ => Duration::ZERO,
        };
        Plan {
            lost_at,
            grace,
            window: window.max(first_delay),
            first_delay,
            attempts: 0,
        }
    }

    /// Go again at once, with the backoff started over (a redirect names
    /// where to go; the grace and the window still count from the loss).
    pub fn at_once(&mut self) {
        self.first_delay = Duration::ZERO;
        self.attempts = 0;
    }

    /// The next attempt after the previous one failed at `now` (or, for
    /// the first, the loss was noticed at `now`); `None` once the window
    /// has passed.
    pub fn next(&mut self, now: Instant, jitter: f64) -> Option<Attempt> {
        let delay = if self.attempts == 0 {
            self.first_delay
        } else {
            backoff(self.attempts, jitter)
        };
        let at = now + delay;
        if at.saturating_duration_since(self.lost_at) > self.window {
            return None;
        }
        self.attempts += 1;
        Some(Attempt {
            number: self.attempts,
            at,
            with_token: at.saturating_duration_since(self.lost_at) < self.grace,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{LeaveReason, SessionInfo};

    fn going_away(ms: Option<u32>) -> Memory {
        Memory {
            going_away: ms,
            ..Memory::default()
        }
    }

    const NOTHING: Memory = Memory {
        code: None,
        password: None,
        asked_password: None,
        going_away: None,
        fatal: None,
        redirect: None,
        redirects: 0,
        pending: None,
        srtt: None,
        server_lost: false,
        version: 0,
    };

    fn closed_with(code: ErrorCode) -> Ended {
        Ended::by_peer(code as u64, format!("closed by peer: {code}"))
    }

    #[test]
    fn a_lost_connection_is_resumed_and_a_fatal_close_is_final() {
        let lost = Ended::lost("timed out");
        assert_eq!(judge_close(&lost, &NOTHING, false, true), Verdict::Resume);
        // The application's own close, resume turned off, a clean close.
        assert_eq!(judge_close(&lost, &NOTHING, true, true), Verdict::GiveUp);
        assert_eq!(judge_close(&lost, &NOTHING, false, false), Verdict::GiveUp);
        let clean = Ended::by_peer(0, "bye".into());
        assert_eq!(judge_close(&clean, &NOTHING, false, true), Verdict::GiveUp);
        for code in [
            ErrorCode::Replaced,
            ErrorCode::BadMessage,
            ErrorCode::FrameTooLarge,
            ErrorCode::ProtocolViolation,
            ErrorCode::HelloTimeout,
            ErrorCode::TooManyJoinAttempts,
        ] {
            let v = judge_close(&closed_with(code), &NOTHING, false, true);
            assert_eq!(v, Verdict::GiveUp, "{code}");
        }
        let unknown = Ended::by_peer(99, "closed by peer: 99".into());
        assert_eq!(
            judge_close(&unknown, &NOTHING, false, true),
            Verdict::GiveUp
        );
        let slow = closed_with(ErrorCode::SlowConsumer);
        assert_eq!(judge_close(&slow, &NOTHING, false, true), Verdict::Resume);
        // A fatal error came first and the close itself looked like a loss.
        let mut said = Memory::default();
        said.note(&ServerMsg::Error {
            code: ErrorCode::Replaced as u16,
            message: "resumed elsewhere".into(),
        });
        assert_eq!(judge_close(&lost, &said, false, true), Verdict::GiveUp);
        // Not every error is final.
        let mut said = Memory::default();
        said.note(&ServerMsg::Error {
            code: ErrorCode::UnknownSession as u16,
            message: "no".into(),
        });
        assert_eq!(judge_close(&lost, &said, false, true), Verdict::Resume);
        // too_many_join_attempts then a close: final (resuming would only
        // reset the connection's failed-join count)...
        let mut said = Memory::default();
        let locked = ServerMsg::Error {
            code: ErrorCode::TooManyJoinAttempts as u16,
            message: "this connection made more than 10 failed joins".into(),
        };
        said.note(&locked);
        assert_eq!(judge_close(&lost, &said, false, true), Verdict::GiveUp);
        // ...but when the server says more, the connection stayed (an
        // address lockout), and a later loss is resumed.
        said.note(&ServerMsg::Pong {
            client_time_ms: 1,
            server_time_ms: 2,
        });
        assert_eq!(judge_close(&lost, &said, false, true), Verdict::Resume);
    }

    #[test]
    fn going_away_waits_as_told() {
        let stopping = closed_with(ErrorCode::ShuttingDown);
        assert_eq!(
            judge_close(&stopping, &going_away(Some(2_500)), false, true),
            Verdict::ResumeAfter(Duration::from_millis(2_500))
        );
        // The GoingAway itself was lost: a default delay.
        assert!(matches!(
            judge_close(&stopping, &NOTHING, false, true),
            Verdict::ResumeAfter(_)
        ));
        // Even a GoingAway does not override the application's close.
        assert_eq!(
            judge_close(&stopping, &going_away(Some(0)), true, true),
            Verdict::GiveUp
        );
    }

    #[test]
    fn a_failed_attempt_is_retried_unless_the_answer_is_final() {
        let unreachable = Error::Timeout {
            server: "127.0.0.1:1".parse().unwrap(),
            after: Duration::from_secs(1),
        };
        assert_eq!(judge_failure(&unreachable), Verdict::Resume);
        let refused = Error::connect("connecting", std::io::Error::other("refused"));
        assert_eq!(judge_failure(&refused), Verdict::Resume);
        let full = Error::Closed(closed_with(ErrorCode::ServerFull));
        assert_eq!(judge_failure(&full), Verdict::Resume);
        let lost = Error::Closed(Ended::lost("reset"));
        assert_eq!(judge_failure(&lost), Verdict::Resume);
        let version = Error::Closed(closed_with(ErrorCode::UnsupportedVersion));
        assert_eq!(judge_failure(&version), Verdict::GiveUp);
        let said = Error::server(ErrorCode::ProtocolViolation as u16, "no");
        assert_eq!(judge_failure(&said), Verdict::GiveUp);
        assert_eq!(
            judge_failure(&Error::Config("no URL".into())),
            Verdict::GiveUp
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_in_its_upper_half() {
        assert_eq!(backoff(0, 0.7), Duration::ZERO);
        assert_eq!(backoff(1, 0.0), Duration::from_millis(125));
        assert_eq!(backoff(1, 1.0), Duration::from_millis(250));
        assert_eq!(backoff(2, 0.5), Duration::from_millis(375));
        assert_eq!(backoff(3, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(4, 1.0), Duration::from_secs(2));
        // Capped.
        assert_eq!(backoff(40, 1.0), Duration::from_secs(4));
        assert_eq!(backoff(40, 0.0), Duration::from_secs(2));
    }

    #[test]
    fn a_plan_offers_the_token_within_the_grace_then_rejoins_then_stops() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(2);
        let window = Duration::from_secs(6);
        let mut plan = Plan::new(t0, Verdict::Resume, grace, window);
        let first = plan.next(t0, 0.3).unwrap();
        assert_eq!((first.number, first.at, first.with_token), (1, t0, true));
        // Each failure at `now` schedules the next from then on.
        let mut now = t0;
        let mut seen = vec![];
        while let Some(a) = plan.next(now, 1.0) {
            seen.push((a.at - t0, a.with_token));
            now = a.at + Duration::from_millis(100); // the attempt took 100 ms
        }
        assert_eq!(
            seen,
            vec![
                (Duration::from_millis(250), true),
                (Duration::from_millis(850), true),
                (Duration::from_millis(1_950), true),
                (Duration::from_millis(4_050), false),
            ]
        );
    }

    #[test]
    fn going_away_delays_the_first_attempt_even_past_the_window() {
        let t0 = Instant::now();
        let v = Verdict::ResumeAfter(Duration::from_secs(20));
        let mut plan = Plan::new(t0, v, Duration::from_secs(15), Duration::from_secs(10));
        let a = plan.next(t0, 0.0).unwrap();
        assert_eq!(a.at, t0 + Duration::from_secs(20));
        assert!(!a.with_token);
    }

    fn welcome() -> crate::protocol::Welcome {
        crate::protocol::Welcome {
            version: 1,
            peer_id: 3,
            resume_token: vec![1; 16],
            resumed: false,
            ice_servers: vec![],
            limits: crate::protocol::Limits {
                max_frame_bytes: 16384,
                max_relay_payload: 1100,
                relay_datagrams_per_sec: 0,
                relay_bytes_per_sec: 0,
                signals_per_sec: 0,
                max_peers_per_session: 16,
                resume_grace_ms: 15_000,
            },
            server_time_ms: 0,
        }
    }

    fn redirect(reason: crate::protocol::RedirectReason) -> ServerMsg {
        ServerMsg::Redirect(crate::protocol::Redirect {
            reason,
            node: crate::protocol::NodeAddr {
                name: "b".into(),
                quic: "127.0.0.1:4434".into(),
                http: String::new(),
                cert_sha256: None,
            },
        })
    }

    #[test]
    fn memory_counts_redirects_in_a_row_and_keeps_the_unanswered_request() {
        use crate::protocol::{ClientMsg, JoinSession, RedirectReason};
        let join = ClientMsg::JoinSession(JoinSession {
            code: "7KQ2MX".into(),
            password: None,
            region_rtts: Vec::new(),
        });
        let mut m = Memory {
            pending: Some(join.clone()),
            ..Memory::default()
        };
        for n in 1..=super::super::MAX_REDIRECTS + 1 {
            m.note(&redirect(RedirectReason::Session));
            assert_eq!(m.redirects, n);
            assert!(m.redirect.is_some());
            // A Welcome while the join waits does not end the run.
            m.note(&ServerMsg::Welcome(welcome()));
            assert_eq!(m.redirects, n);
        }
        let count = m.redirects;
        let node = match m.redirect.take() {
            Some(r) => r.node,
            None => unreachable!(),
        };
        assert!(matches!(
            super::super::cluster::check_redirects(count, &node),
            Err(Error::Redirects { count: 5, .. })
        ));
        assert!(super::super::cluster::check_redirects(5, &node).is_ok());
        assert_eq!(m.pending, Some(join.clone()));
        // The answer ends the run and the wait.
        m.note(&ServerMsg::SessionJoined(SessionInfo {
            code: "7KQ2MX".into(),
            host: 1,
            max_peers: 8,
            idle_ttl_secs: 60,
            peers: vec![],
        }));
        assert_eq!((m.redirects, m.pending.clone()), (0, None));
        // A refusal answers it too; cluster_unavailable included (the app retries).
        m.pending = Some(join);
        m.note(&ServerMsg::Error {
            code: ErrorCode::ClusterUnavailable as u16,
            message: "directory unreachable".into(),
        });
        assert_eq!(m.pending, None);
        assert_eq!(m.fatal, None, "cluster_unavailable is not fatal");
        // An unasked redirect with nothing pending; a Welcome then ends the run.
        m.note(&redirect(RedirectReason::Draining));
        assert_eq!(m.redirects, 1);
        m.note(&ServerMsg::Welcome(welcome()));
        assert_eq!(m.redirects, 0);
    }

    #[test]
    fn cluster_unavailable_is_retried_and_only_refusals_keep_the_server() {
        let e = Error::server(ErrorCode::ClusterUnavailable as u16, "later");
        assert_eq!(judge_failure(&e), Verdict::Resume);
        assert!(!unreachable(&e));
        let refused = Error::connect("connecting", std::io::Error::other("refused"));
        assert!(unreachable(&refused));
        assert!(unreachable(&Error::Closed(Ended::lost("reset"))));
    }

    #[test]
    fn a_redirect_starts_the_backoff_over_but_not_the_grace() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(2);
        let mut plan = Plan::new(t0, Verdict::Resume, grace, Duration::from_secs(10));
        let mut now = t0;
        for _ in 0..4 {
            now = plan.next(now, 1.0).unwrap().at;
        }
        assert_eq!(now - t0, Duration::from_millis(1_750));
        plan.at_once();
        let a = plan.next(now, 1.0).unwrap();
        assert_eq!((a.number, a.at), (1, now));
        let b = plan.next(now + Duration::from_millis(500), 1.0).unwrap();
        assert_eq!(b.at - t0, Duration::from_millis(2_500));
        assert!(!b.with_token, "the grace counts from the loss");
    }

    #[test]
    fn memory_follows_the_session_and_going_away() {
        let info = SessionInfo {
            code: "7KQ2MX".into(),
            host: 1,
            max_peers: 8,
            idle_ttl_secs: 60,
            peers: vec![],
        };
        let mut m = Memory {
            asked_password: Some("pw".into()),
            ..Memory::default()
        };
        m.note(&ServerMsg::SessionJoined(info));
        assert_eq!(m.code.as_deref(), Some("7KQ2MX"));
        assert_eq!(m.password.as_deref(), Some("pw"));
        m.note(&ServerMsg::GoingAway {
            reconnect_after_ms: 500,
            message: "restart".into(),
        });
        assert_eq!(m.going_away, Some(500));
        m.note(&ServerMsg::SessionLeft {
            reason: LeaveReason::SessionExpired,
        });
        assert_eq!((m.code, m.password), (None, None));
    }
}
