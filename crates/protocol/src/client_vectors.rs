//! Client behaviour as data: `docs/client-vectors.json`, written by
//! `flightsim-p2p vectors --client` ([`render`]).
//!
//! The golden vectors of [`crate::vectors`] pin the bytes; these pin what the
//! three clients (Rust, browser JS, C#) *do*: the reconnect backoff, what a
//! close or an error means, resume versus rejoin, redirects and node
//! rotation, liveness (when the server counts as lost), attempt and request
//! timeouts, the QUIC/WebSocket race, the direct/TURN/relay path of a peer,
//! and the C# client's SignalR retry policy. PROTOCOL.md ("Client
//! behaviour") states each rule once and explains every section.
//!
//! **Why the expected values are literal data here.** Every number and
//! verdict below was written by hand from the rules, not computed by the
//! Rust client's code. The Rust client's replay
//! (`crates/client/tests/client_vectors.rs`) runs its pure decision
//! functions against this file like the JS and C# replays do: if it computed
//! the expectations, the Rust replay would be a tautology and a change in
//! the Rust client would silently rewrite the other clients' target. Change
//! a rule here and in PROTOCOL.md on purpose, then every client's suite
//! says which of them still does the old thing.
//!
//! The JSON keeps its keys in the order written here (no JSON library: a
//! small ordered writer below), so the file reads like the tables.

use std::fmt::Write;

/// A JSON value with its keys in the order given.
#[derive(Debug, Clone, PartialEq)]
enum J {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl From<bool> for J {
    fn from(v: bool) -> J {
        J::Bool(v)
    }
}
impl From<i64> for J {
    fn from(v: i64) -> J {
        J::Int(v)
    }
}
impl From<i32> for J {
    fn from(v: i32) -> J {
        J::Int(v.into())
    }
}
impl From<u32> for J {
    fn from(v: u32) -> J {
        J::Int(v.into())
    }
}
impl From<f64> for J {
    fn from(v: f64) -> J {
        J::Float(v)
    }
}
impl From<&str> for J {
    fn from(v: &str) -> J {
        J::Str(v.to_string())
    }
}
impl From<String> for J {
    fn from(v: String) -> J {
        J::Str(v)
    }
}
impl<T: Into<J>> From<Option<T>> for J {
    fn from(v: Option<T>) -> J {
        v.map_or(J::Null, Into::into)
    }
}
impl<T: Into<J>> From<Vec<T>> for J {
    fn from(v: Vec<T>) -> J {
        J::Arr(v.into_iter().map(Into::into).collect())
    }
}

/// An ordered JSON object: `obj!{ "key" => value, ... }`.
macro_rules! obj {
    ($($k:literal => $v:expr),* $(,)?) => {
        J::Obj(vec![$(($k.to_string(), J::from($v))),*])
    };
}

/// `null` where a value is absent.
const NULL: Option<i64> = None;

// After the macro, so the module sees `obj!`.
mod moving;
mod quality;

impl J {
    /// The value on one line.
    fn compact(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Int(i) => {
                let _ = write!(out, "{i}");
            }
            J::Float(f) => {
                if f.fract() == 0.0 && f.abs() < 1e15 {
                    let _ = write!(out, "{f:.1}");
                } else {
                    let _ = write!(out, "{f}");
                }
            }
            J::Str(s) => quote(s, out),
            J::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.compact(out);
                }
                out.push(']');
            }
            J::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    quote(k, out);
                    out.push_str(": ");
                    v.compact(out);
                }
                out.push('}');
            }
        }
    }

    /// The value indented by `indent` spaces: on one line when that fits in
    /// [`WIDTH`] columns, else one member per line.
    fn pretty(&self, indent: usize, out: &mut String) {
        let mut line = String::new();
        self.compact(&mut line);
        if indent + line.len() <= WIDTH || !matches!(self, J::Arr(_) | J::Obj(_)) {
            out.push_str(&line);
            return;
        }
        let pad = " ".repeat(indent + 2);
        match self {
            J::Arr(items) => {
                out.push_str("[\n");
                for (i, v) in items.iter().enumerate() {
                    out.push_str(&pad);
                    v.pretty(indent + 2, out);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
            }
            J::Obj(fields) => {
                out.push_str("{\n");
                for (i, (k, v)) in fields.iter().enumerate() {
                    out.push_str(&pad);
                    quote(k, out);
                    out.push_str(": ");
                    v.pretty(indent + 2, out);
                    out.push_str(if i + 1 < fields.len() { ",\n" } else { "\n" });
                }
            }
            _ => {}
        }
        out.push_str(&" ".repeat(indent));
        out.push(if matches!(self, J::Arr(_)) { ']' } else { '}' });
    }
}

/// Lines longer than this are split.
const WIDTH: usize = 160;

fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One decision-table case.
fn case(name: &str, input: J, expect: J) -> J {
    obj! { "name" => name, "input" => input, "expect" => expect }
}

/// One step of a timed scenario.
fn step(at_ms: i64, input: J, expect: J) -> J {
    obj! { "at_ms" => at_ms, "input" => input, "expect" => expect }
}

/// A section of decision tables.
fn table(clients: &[&str], rule: &str, cases: Vec<J>) -> J {
    obj! {
        "clients" => clients.iter().map(|c| J::from(*c)).collect::<Vec<_>>(),
        "rule" => rule,
        "cases" => cases,
    }
}

/// A section of timed scenarios.
fn timed(clients: &[&str], rule: &str, scenarios: Vec<J>) -> J {
    obj! {
        "clients" => clients.iter().map(|c| J::from(*c)).collect::<Vec<_>>(),
        "rule" => rule,
        "scenarios" => scenarios,
    }
}

const ALL: &[&str] = &["rust", "js", "csharp"];

/// The whole file.
pub fn render() -> String {
    let doc = obj! {
        "version" => 1,
        "note" => "generated by `flightsim-p2p vectors --client` from crates/protocol/src/client_vectors.rs; \
                   docs/PROTOCOL.md \u{a7}12 (Client behaviour) states each rule and explains each section",
        "constants" => constants(),
        "sections" => obj! {
            "backoff" => backoff(),
            "close" => close(),
            "errors" => errors(),
            "after_reconnect" => after_reconnect(),
            "resume_plan" => resume_plan(),
            "redirects" => redirects(),
            "rotation" => rotation(),
            "liveness" => liveness(),
            "timeouts" => timeouts(),
            "race" => race(),
            "paths" => paths(),
            "signalr_retry" => signalr_retry(),
            "quality" => quality::quality(),
            "quality_buckets" => quality::buckets(),
            "report_schedule" => quality::report_schedule(),
            "move" => moving::moving(),
        },
    };
    let mut out = String::new();
    doc.pretty(0, &mut out);
    out.push('\n');
    out
}

fn constants() -> J {
    obj! {
        "backoff_steps_ms" => vec![0, 250, 500, 1000, 2000, 4000],
        "ping_interval_ms" => 500,
        "probe_interval_ms" => 100,
        "probe_after_min_ms" => 250,
        "probe_after_before_sample_ms" => 1000,
        "live_timeout_initial_ms" => 3000,
        "live_timeout_min_ms" => 1500,
        "live_timeout_max_ms" => 10000,
        "max_redirects" => 5,
        "attempt_timeout_floor_ms" => 3000,
        "attempt_timeout_base_ms" => 2000,
        "attempt_timeout_rtt_factor" => 8,
        "connect_timeout_ms" => 10000,
        "request_timeout_ms" => 10000,
        "race_fallback_delay_ms" => 1000,
        "shutting_down_delay_ms" => 1000,
        "abandon_close_code" => 999,
        "abandon_websocket_close_code" => 4999,
        "resume_grace_default_ms" => 15000,
        "reconnect_window_ms" => 60000,
        "signalr_retry_delays_ms" => vec![0, 2000, 10000, 30000],
        "echo_interval_ms" => 500,
        "echo_interval_relay_ms" => 2000,
        "echo_timeout_ms" => 2000,
        "loss_window" => 20,
        "lost_after_ms" => 3000,
        "grade_excellent" => obj! { "rtt_ms" => 100, "loss_pct" => 2, "jitter_ms" => 20 },
        "grade_good" => obj! { "rtt_ms" => 250, "loss_pct" => 8, "jitter_ms" => 50 },
        "grade_hysteresis" => 0.8,
        "report_interval_ms" => 10000,
        "report_min_gap_ms" => 2000,
        "report_max_queued" => 16,
        "rtt_bucket_edges_ms" => vec![25, 50, 75, 100, 150, 200, 300, 500, 1000],
        "loss_bucket_edges_pct" => vec![0, 1, 2, 5, 10, 20, 50],
        "move_old_close_after_ms" => 10000,
    }
}

fn backoff() -> J {
    // (attempt, random, delay_ms, min_ms, max_ms)
    const CASES: &[(u32, f64, i64, i64, i64)] = &[
        (0, 0.0, 0, 0, 0),
        (0, 0.5, 0, 0, 0),
        (0, 0.999, 0, 0, 0),
        (1, 0.0, 125, 125, 250),
        (1, 0.25, 156, 125, 250),
        (1, 0.5, 187, 125, 250),
        (1, 0.75, 218, 125, 250),
        (1, 0.999, 249, 125, 250),
        (2, 0.0, 250, 250, 500),
        (2, 0.5, 375, 250, 500),
        (2, 0.75, 437, 250, 500),
        (2, 0.999, 499, 250, 500),
        (3, 0.0, 500, 500, 1000),
        (3, 0.25, 625, 500, 1000),
        (3, 0.999, 999, 500, 1000),
        (4, 0.0, 1000, 1000, 2000),
        (4, 0.5, 1500, 1000, 2000),
        (4, 0.999, 1999, 1000, 2000),
        (5, 0.0, 2000, 2000, 4000),
        (5, 0.75, 3500, 2000, 4000),
        (5, 0.999, 3998, 2000, 4000),
        (6, 0.5, 3000, 2000, 4000),
        (7, 0.25, 2500, 2000, 4000),
        (40, 0.0, 2000, 2000, 4000),
        (40, 0.999, 3998, 2000, 4000),
    ];
    let cases = CASES
        .iter()
        .map(|&(attempt, random, delay, min, max)| {
            case(
                &format!("attempt {attempt}, random {random}"),
                obj! { "attempt" => attempt, "random" => random },
                obj! { "delay_ms" => delay, "min_ms" => min, "max_ms" => max },
            )
        })
        .collect();
    table(
        ALL,
        "delay_ms = floor(step × (0.5 + 0.5 × random)), step = backoff_steps_ms[min(attempt, 5)]; \
         attempt is 0-based (0 never waits); every delay of an attempt lies in [min_ms, max_ms]",
        cases,
    )
}

/// How a connection ended (`close` section input), all keys always present.
struct End {
    name: &'static str,
    transport: &'static str,
    close_code: Option<i64>,
    error_before: Option<i64>,
    going_away_ms: Option<i64>,
    redirected: bool,
    app_closed: bool,
    auto_resume: bool,
    welcomed: bool,
    /// (action, delay_ms)
    expect: (&'static str, Option<i64>),
}

const END: End = End {
    name: "",
    transport: "quic",
    close_code: None,
    error_before: None,
    going_away_ms: None,
    redirected: false,
    app_closed: false,
    auto_resume: true,
    welcomed: true,
    expect: ("resume", Some(0)),
};

fn close() -> J {
    const GIVE_UP: (&str, Option<i64>) = ("give_up", None);
    let ends = [
        End { name: "QUIC connection lost without a close code (timeout, reset, liveness)", ..END },
        End { name: "WebTransport session lost without a capsule", transport: "webtransport", ..END },
        End { name: "WebSocket TCP connection just ended (no close frame)", transport: "websocket", ..END },
        End { name: "QUIC close code 0: the server closed normally", close_code: Some(0), expect: GIVE_UP, ..END },
        End { name: "WebTransport close code 0", transport: "webtransport", close_code: Some(0), expect: GIVE_UP, ..END },
        End { name: "WebSocket 1000: normal close", transport: "websocket", close_code: Some(1000), expect: GIVE_UP, ..END },
        End { name: "WebSocket 1006: abnormal close, a lost connection", transport: "websocket", close_code: Some(1006), ..END },
        End { name: "WebSocket 1001 (a proxy going away): not a protocol code, a lost connection", transport: "websocket", close_code: Some(1001), ..END },
        End { name: "WebSocket 1011: not a protocol code, a lost connection", transport: "websocket", close_code: Some(1011), ..END },
        End { name: "QUIC close 20 replaced: another connection took the seat", close_code: Some(20), expect: GIVE_UP, ..END },
        End { name: "WebSocket 4020 replaced", transport: "websocket", close_code: Some(4020), expect: GIVE_UP, ..END },
        End { name: "QUIC close 1 bad_message", close_code: Some(1), expect: GIVE_UP, ..END },
        End { name: "WebSocket 4001 bad_message", transport: "websocket", close_code: Some(4001), expect: GIVE_UP, ..END },
        End { name: "QUIC close 3 unsupported_version", close_code: Some(3), expect: GIVE_UP, ..END },
        End { name: "QUIC close 6 server_full on a connection that had its Welcome", close_code: Some(6), expect: GIVE_UP, ..END },
        End { name: "QUIC close 17 too_many_join_attempts", close_code: Some(17), expect: GIVE_UP, ..END },
        End { name: "QUIC close 19 hello_timeout", close_code: Some(19), expect: GIVE_UP, ..END },
        End { name: "QUIC close 7 shutting_down without a GoingAway: come back after shutting_down_delay_ms", close_code: Some(7), expect: ("resume_after", Some(1000)), ..END },
        End { name: "WebSocket 4007 shutting_down", transport: "websocket", close_code: Some(4007), expect: ("resume_after", Some(1000)), ..END },
        End { name: "QUIC close 7 after GoingAway{2500}: its delay", close_code: Some(7), going_away_ms: Some(2500), expect: ("resume_after", Some(2500)), ..END },
        End { name: "lost after GoingAway{0}", going_away_ms: Some(0), expect: ("resume_after", Some(0)), ..END },
        End { name: "QUIC close 21 slow_consumer: the seat is kept", close_code: Some(21), ..END },
        End { name: "WebSocket 4021 slow_consumer", transport: "websocket", close_code: Some(4021), ..END },
        End { name: "QUIC close 22 cluster_unavailable (a Hello with a token this node cannot place): keep resuming", close_code: Some(22), ..END },
        End { name: "WebSocket 4022 cluster_unavailable", transport: "websocket", close_code: Some(4022), ..END },
        End { name: "QUIC close 99: an unknown code is final", close_code: Some(99), expect: GIVE_UP, ..END },
        End { name: "QUIC close 999: an unknown code is final", close_code: Some(999), expect: GIVE_UP, ..END },
        End { name: "WebSocket 4099: an unknown protocol code is final", transport: "websocket", close_code: Some(4099), expect: GIVE_UP, ..END },
        End { name: "Error(replaced) then the close seen as a loss: final", error_before: Some(20), expect: GIVE_UP, ..END },
        End { name: "Error(too_many_join_attempts) then the close seen as a loss: final", error_before: Some(17), expect: GIVE_UP, ..END },
        End { name: "Error(protocol_violation) then the close seen as a loss: final", error_before: Some(4), expect: GIVE_UP, ..END },
        End { name: "Error(unknown_session) earlier, then lost: resume", error_before: Some(10), ..END },
        End { name: "Error(shutting_down) then lost: resume (shutting_down is not final)", error_before: Some(7), ..END },
        End { name: "Error(slow_consumer) then lost: resume", error_before: Some(21), ..END },
        End { name: "an unknown Error code earlier, then lost: resume", error_before: Some(99), ..END },
        End { name: "a fatal Error wins over a GoingAway", error_before: Some(20), going_away_ms: Some(3000), expect: GIVE_UP, ..END },
        End { name: "a normal close wins over a GoingAway", transport: "websocket", close_code: Some(1000), going_away_ms: Some(2500), expect: GIVE_UP, ..END },
        End { name: "the application closed it", app_closed: true, expect: GIVE_UP, ..END },
        End { name: "auto resume is off", auto_resume: false, expect: GIVE_UP, ..END },
        End { name: "ended before any Welcome: nothing to resume", welcomed: false, expect: GIVE_UP, ..END },
        End { name: "ended after a Redirect (node closed with 0): follow it at once", close_code: Some(0), redirected: true, expect: ("redirect", Some(0)), ..END },
        End { name: "ended after a Redirect, lost: follow it", redirected: true, expect: ("redirect", Some(0)), ..END },
        End { name: "a Redirect is followed even with auto resume off", redirected: true, auto_resume: false, expect: ("redirect", Some(0)), ..END },
        End { name: "a Redirect is not followed after the application closed", redirected: true, app_closed: true, expect: GIVE_UP, ..END },
        End { name: "WebSocket 4999 (a client's abandon code) from the server: unknown, final", transport: "websocket", close_code: Some(4999), expect: GIVE_UP, ..END },
    ];
    let cases = ends
        .iter()
        .map(|e| {
            case(
                e.name,
                obj! {
                    "transport" => e.transport,
                    "close_code" => e.close_code,
                    "error_before" => e.error_before,
                    "going_away_ms" => e.going_away_ms,
                    "redirected" => e.redirected,
                    "app_closed" => e.app_closed,
                    "auto_resume" => e.auto_resume,
                    "welcomed" => e.welcomed,
                },
                obj! { "action" => e.expect.0, "delay_ms" => e.expect.1 },
            )
        })
        .collect();
    table(
        ALL,
        "first match wins: app_closed → give_up; redirected → redirect; !auto_resume or !welcomed → give_up; \
         protocol code (QUIC/WebTransport: close_code; WebSocket: 1000 → 0, 4000+n → n, other → none) 0 → give_up; \
         error_before is final (errors.gives_up) → give_up; going_away_ms → resume_after it; no code → resume; \
         7 → resume_after shutting_down_delay_ms; 21, 22 → resume; any other code → give_up",
        cases,
    )
}

fn errors() -> J {
    // (code, name, fatal (§6), gives_up, answers_request, close action, close delay, attempt_failure)
    type Row = (
        i64,
        &'static str,
        bool,
        bool,
        bool,
        &'static str,
        Option<i64>,
        &'static str,
    );
    const ROWS: &[Row] = &[
        (
            1,
            "bad_message",
            true,
            true,
            false,
            "give_up",
            None,
            "give_up",
        ),
        (
            2,
            "frame_too_large",
            true,
            true,
            false,
            "give_up",
            None,
            "give_up",
        ),
        (
            3,
            "unsupported_version",
            true,
            true,
            false,
            "give_up",
            None,
            "give_up",
        ),
        (
            4,
            "protocol_violation",
            true,
            true,
            false,
            "give_up",
            None,
            "give_up",
        ),
        (
            5,
            "rate_limited",
            false,
            false,
            false,
            "give_up",
            None,
            "retry",
        ),
        (
            6,
            "server_full",
            true,
            true,
            false,
            "give_up",
            None,
            "retry",
        ),
        (
            7,
            "shutting_down",
            true,
            false,
            false,
            "resume_after",
            Some(1000),
            "retry",
        ),
        (8, "internal", false, false, true, "give_up", None, "retry"),
        (
            9,
            "invalid_argument",
            false,
            false,
            true,
            "give_up",
            None,
            "retry",
        ),
        (
            10,
            "unknown_session",
            false,
            false,
            true,
            "give_up",
            None,
            "retry",
        ),
        (
            11,
            "session_full",
            false,
            false,
            true,
            "give_up",
            None,
            "retry",
        ),
        (
            12,
            "wrong_password",
            false,
            false,
            true,
            "give_up",
            None,
            "retry",
        ),
        (
            13,
            "already_in_session",
            false,
            false,
            true,
            "give_up",
            None,
            "retry",
        ),
        (
            14,
            "not_in_session",
            false,
            false,
            false,
            "give_up",
            None,
            "retry",
        ),
        (
            15,
            "unknown_peer",
            false,
            false,
            false,
            "give_up",
            None,
            "retry",
        ),
        (
            16,
            "too_many_sessions",
            false,
            false,
            true,
            "give_up",
            None,
            "retry",
        ),
        (
            17,
            "too_many_join_attempts",
            false,
            true,
            true,
            "give_up",
            None,
            "retry",
        ),
        (
            18,
            "resume_failed",
            false,
            false,
            false,
            "give_up",
            None,
            "retry",
        ),
        (
            19,
            "hello_timeout",
            true,
            true,
            false,
            "give_up",
            None,
            "give_up",
        ),
        (
            20, "replaced", true, true, false, "give_up", None, "give_up",
        ),
        (
            21,
            "slow_consumer",
            true,
            false,
            false,
            "resume",
            Some(0),
            "retry",
        ),
        (
            22,
            "cluster_unavailable",
            false,
            false,
            true,
            "resume",
            Some(0),
            "retry",
        ),
        // Access control (§13): a missing, invalid or revoked token will
        // not pass again; an expired one closes, and the next attempt asks
        // the token source for a fresh one; forbidden answers the request.
        (
            23,
            "token_required",
            true,
            true,
            false,
            "give_up",
            None,
            "give_up",
        ),
        (
            24,
            "token_invalid",
            true,
            true,
            false,
            "give_up",
            None,
            "give_up",
        ),
        (
            25,
            "token_expired",
            false,
            false,
            false,
            "resume",
            Some(0),
            "retry",
        ),
        (
            26,
            "forbidden",
            false,
            false,
            true,
            "give_up",
            None,
            "retry",
        ),
        (
            27,
            "token_revoked",
            true,
            true,
            false,
            "give_up",
            None,
            "give_up",
        ),
        (
            99, "unknown", false, false, false, "give_up", None, "give_up",
        ),
    ];
    let cases = ROWS
        .iter()
        .map(
            |&(code, name, fatal, gives_up, answers, action, delay, attempt)| {
                case(
                    &format!("{code} {name}"),
                    obj! { "code" => code },
                    obj! {
                        "name" => name,
                        "fatal" => fatal,
                        "gives_up" => gives_up,
                        "answers_request" => answers,
                        "close_action" => action,
                        "close_delay_ms" => delay,
                        "attempt_failure" => attempt,
                    },
                )
            },
        )
        .collect();
    table(
        ALL,
        "fatal: §6 says the server closes after it; gives_up: an Error with it, then the connection's end, is final \
         (fatal ones but shutting_down and slow_consumer, plus too_many_join_attempts); answers_request: it is the \
         answer to a pending CreateSession/JoinSession; close_*: what a QUIC close with this code means (close section); \
         attempt_failure: a reconnection attempt refused or closed with it is retried or final",
        cases,
    )
}

fn after_reconnect() -> J {
    // (name, resumed, peer_id, previous_peer_id, in_session, pending_request, outcome)
    type Row = (&'static str, bool, u32, u32, bool, bool, &'static str);
    const ROWS: &[Row] = &[
        (
            "the token was accepted: same peer id, same seat",
            true,
            7,
            7,
            true,
            false,
            "resumed",
        ),
        ("resumed in no session", true, 7, 7, false, false, "resumed"),
        (
            "the grace passed: a new peer id, rejoin the session by code",
            false,
            9,
            7,
            true,
            false,
            "rejoin",
        ),
        (
            "resumed flag but another peer id (server restarted): rejoin",
            true,
            9,
            7,
            true,
            false,
            "rejoin",
        ),
        (
            "in a session with a request pending: rejoin (the session comes first)",
            false,
            9,
            7,
            true,
            true,
            "rejoin",
        ),
        (
            "in no session, a create/join unanswered: send it again",
            false,
            9,
            7,
            false,
            true,
            "resend",
        ),
        (
            "in no session, nothing pending: a fresh start",
            false,
            9,
            7,
            false,
            false,
            "fresh",
        ),
        (
            "another peer id in no session: fresh",
            true,
            9,
            7,
            false,
            false,
            "fresh",
        ),
    ];
    let cases = ROWS
        .iter()
        .map(
            |&(name, resumed, peer, previous, in_session, pending, outcome)| {
                case(
                    name,
                    obj! {
                        "resumed" => resumed,
                        "peer_id" => peer,
                        "previous_peer_id" => previous,
                        "in_session" => in_session,
                        "pending_request" => pending,
                    },
                    obj! { "outcome" => outcome },
                )
            },
        )
        .collect();
    table(
        ALL,
        "resumed && peer_id == previous_peer_id → resumed; else in_session → rejoin (JoinSession by code and password); \
         else pending_request → resend (the unanswered CreateSession/JoinSession); else fresh",
        cases,
    )
}

/// A resume plan step: (at_ms, event, delay_ms for `lost`, random for `failed`,
/// expected: Some((attempt, start_at_ms, with_token)) or None = give up).
type PlanStep = (
    i64,
    &'static str,
    Option<i64>,
    Option<f64>,
    Option<(u32, i64, bool)>,
);

fn plan_scenario(name: &str, grace_ms: i64, window_ms: i64, steps: &[PlanStep]) -> J {
    let steps = steps
        .iter()
        .map(|&(at, event, delay, random, expect)| {
            let input = match event {
                "lost" => obj! { "event" => event, "delay_ms" => delay.unwrap_or(0) },
                "failed" => obj! { "event" => event, "random" => random.unwrap_or(0.0) },
                _ => obj! { "event" => event },
            };
            let expect = match expect {
                Some((n, start, token)) => obj! {
                    "action" => "attempt", "attempt" => n, "start_at_ms" => start, "with_token" => token,
                },
                None => obj! {
                    "action" => "give_up", "attempt" => NULL, "start_at_ms" => NULL, "with_token" => None::<bool>,
                },
            };
            step(at, input, expect)
        })
        .collect::<Vec<_>>();
    obj! {
        "name" => name,
        "given" => obj! { "grace_ms" => grace_ms, "window_ms" => window_ms },
        "steps" => steps,
    }
}

fn resume_plan() -> J {
    let scenarios = vec![
        plan_scenario(
            "the token within the grace, then rejoin by code, then give up past the window",
            2000,
            6000,
            &[
                (0, "lost", Some(0), None, Some((1, 0, true))),
                (100, "failed", None, Some(0.999), Some((2, 349, true))),
                (449, "failed", None, Some(0.999), Some((3, 948, true))),
                (1048, "failed", None, Some(0.999), Some((4, 2047, false))),
                (2147, "failed", None, Some(0.0), Some((5, 3147, false))),
                (3247, "failed", None, Some(0.5), None),
            ],
        ),
        plan_scenario(
            "GoingAway: the first attempt after its delay, within the grace",
            15000,
            60000,
            &[
                (0, "lost", Some(2500), None, Some((1, 2500, true))),
                (2600, "failed", None, Some(0.5), Some((2, 2787, true))),
            ],
        ),
        plan_scenario(
            "GoingAway past the window: its attempt still goes, the next does not",
            15000,
            10000,
            &[
                (0, "lost", Some(20000), None, Some((1, 20000, false))),
                (20100, "failed", None, Some(0.0), None),
            ],
        ),
        plan_scenario(
            "a redirect starts the backoff over, not the grace",
            2000,
            10000,
            &[
                (0, "lost", Some(0), None, Some((1, 0, true))),
                (0, "failed", None, Some(0.999), Some((2, 249, true))),
                (249, "failed", None, Some(0.999), Some((3, 748, true))),
                (748, "failed", None, Some(0.999), Some((4, 1747, true))),
                (1800, "redirected", None, None, Some((1, 1800, true))),
                (2300, "failed", None, Some(0.999), Some((2, 2549, false))),
            ],
        ),
        plan_scenario(
            "the grace is exclusive: an attempt starting exactly at grace_ms rejoins",
            1000,
            2000,
            &[
                (0, "lost", Some(0), None, Some((1, 0, true))),
                (751, "failed", None, Some(0.999), Some((2, 1000, false))),
                (1001, "failed", None, Some(0.999), Some((3, 1500, false))),
                (1500, "failed", None, Some(0.999), None),
            ],
        ),
        plan_scenario(
            "the window is inclusive: an attempt starting exactly at window_ms still goes",
            15000,
            249,
            &[
                (0, "lost", Some(0), None, Some((1, 0, true))),
                (0, "failed", None, Some(0.999), Some((2, 249, true))),
                (249, "failed", None, Some(0.0), None),
            ],
        ),
    ];
    timed(
        ALL,
        "lost at t (event lost, delay_ms = the close verdict's delay): attempt 1 starts at t + delay_ms; each failed \
         attempt at now schedules the next at now + backoff(attempts made since the loss or the last redirect, random); \
         redirected at now: attempt 1 again, at now (the grace and window still count from the loss); \
         with_token = start - lost < grace_ms (else rejoin by code, no token); give up when start - lost > \
         max(window_ms, first delay)",
        scenarios,
    )
}

fn redirects() -> J {
    let mut cases = vec![];
    for count in 1..=7 {
        for in_session in [true, false] {
            if count < 5 && !in_session {
                continue;
            }
            let expect = if count <= 5 {
                obj! { "action" => "follow", "then" => NULL }
            } else {
                obj! { "action" => "fail", "then" => if in_session { "back_to_configured" } else { "stop" } }
            };
            cases.push(case(
                &format!(
                    "redirect {count} in a row, {}",
                    if in_session {
                        "in a session"
                    } else {
                        "in no session"
                    }
                ),
                obj! { "count" => count, "in_session" => in_session },
                expect,
            ));
        }
    }
    // Counting: (name, pending_request at the start, messages, count, action)
    type Run = (
        &'static str,
        bool,
        &'static [&'static str],
        u32,
        &'static str,
    );
    const RUNS: &[Run] = &[
        (
            "a Welcome while the request waits does not reset the count",
            true,
            &["redirect", "welcome", "redirect", "welcome"],
            2,
            "follow",
        ),
        (
            "the redirected request's answer resets the count",
            true,
            &[
                "redirect",
                "redirect",
                "redirect",
                "redirect",
                "redirect",
                "welcome",
                "session_joined",
            ],
            0,
            "follow",
        ),
        (
            "SessionCreated resets it too",
            true,
            &["redirect", "welcome", "session_created"],
            0,
            "follow",
        ),
        (
            "a Welcome with nothing pending resets it (a resume's redirect)",
            false,
            &["redirect", "welcome"],
            0,
            "follow",
        ),
        (
            "an Error answering the request ends the wait, not the run",
            true,
            &["redirect", "redirect", "error_answering", "redirect"],
            3,
            "follow",
        ),
        (
            "... and the next Welcome, with nothing pending, resets it",
            true,
            &[
                "redirect",
                "redirect",
                "error_answering",
                "redirect",
                "welcome",
            ],
            0,
            "follow",
        ),
        (
            "six in a row: fail",
            true,
            &[
                "redirect", "redirect", "redirect", "redirect", "redirect", "redirect",
            ],
            6,
            "fail",
        ),
        (
            "other messages change nothing",
            true,
            &["redirect", "pong", "peer_joined", "redirect"],
            2,
            "follow",
        ),
    ];
    for &(name, pending, messages, count, action) in RUNS {
        cases.push(case(
            name,
            obj! {
                "pending_request" => pending,
                "messages" => messages.to_vec(),
            },
            obj! { "count" => count, "action" => action },
        ));
    }
    table(
        ALL,
        "count = redirects in a row, this one included: ≤ max_redirects → follow; more → fail (then: in a session → \
         back_to_configured, the configured servers with the backoff; in none → stop, the request or connect fails). \
         Cases with `messages` replay the counter from 0: redirect +1; session_created/session_joined → 0 and nothing \
         pending; welcome → 0 when nothing is pending; error_answering → nothing pending (count kept); others: no change",
        cases,
    )
}

/// Rotation step: (event, node, configured_index, redirect_target).
type Turn = (
    &'static str,
    Option<&'static str>,
    u32,
    Option<&'static str>,
);

fn rotation_scenario(name: &str, configured: u32, turns: &[Turn]) -> J {
    let steps = turns
        .iter()
        .enumerate()
        .map(|(i, &(event, node, index, target))| {
            let input = match node {
                Some(n) => obj! { "event" => event, "node" => n },
                None => obj! { "event" => event },
            };
            step(
                100 * (i as i64 + 1),
                input,
                obj! { "configured_index" => index, "redirect_target" => target },
            )
        })
        .collect::<Vec<_>>();
    obj! {
        "name" => name,
        "given" => obj! { "configured" => configured },
        "steps" => steps,
    }
}

fn rotation() -> J {
    let scenarios = vec![
        rotation_scenario(
            "round robin over three configured servers; a failed redirect target resumes where it left",
            3,
            &[
                ("unreachable", None, 1, None),
                ("unreachable", None, 2, None),
                ("unreachable", None, 0, None),
                ("redirected", Some("b"), 0, Some("b")),
                ("unreachable", None, 0, None),
                ("unreachable", None, 1, None),
            ],
        ),
        rotation_scenario(
            "a newer redirect replaces the target; dropping it keeps the configured index",
            2,
            &[
                ("unreachable", None, 1, None),
                ("redirected", Some("b"), 1, Some("b")),
                ("redirected", Some("c"), 1, Some("c")),
                ("unreachable", None, 1, None),
                ("unreachable", None, 0, None),
            ],
        ),
        rotation_scenario(
            "one configured server; back_to_configured forgets the target",
            1,
            &[
                ("unreachable", None, 0, None),
                ("redirected", Some("b"), 0, Some("b")),
                ("back_to_configured", None, 0, None),
                ("unreachable", None, 0, None),
            ],
        ),
        rotation_scenario(
            "back_to_configured keeps the configured index (it does not start over at the main server)",
            3,
            &[
                ("unreachable", None, 1, None),
                ("redirected", Some("b"), 1, Some("b")),
                ("back_to_configured", None, 1, None),
                ("unreachable", None, 2, None),
            ],
        ),
        rotation_scenario(
            "a server lost by liveness counts as unreachable; a connection merely lost retries the same server",
            2,
            &[
                ("connection_lost", None, 0, None),
                ("server_lost", None, 1, None),
                ("redirected", Some("b"), 1, Some("b")),
                ("connection_lost", None, 1, Some("b")),
                ("server_lost", None, 1, None),
            ],
        ),
    ];
    timed(
        ALL,
        "given N configured servers (main, then fallbacks), starting at index 0 with no target: the current server is \
         redirect_target if any, else configured[configured_index]. unreachable / server_lost: drop the target if any, \
         else configured_index = (configured_index + 1) mod N; redirected: target = node; back_to_configured: drop the \
         target; connection_lost (no liveness verdict): no change",
        scenarios,
    )
}

/// A liveness step: (at_ms, event, argument, action, live_timeout_ms,
/// srtt_ms, rttvar_ms, probe_after_ms, next_ping_at_ms, wake_at_ms). The
/// argument is `ping_sent_at_ms` for `pong` and `rtt_ms` for `rtt_sample`.
type Live = (
    i64,
    &'static str,
    Option<f64>,
    &'static str,
    i64,
    Option<f64>,
    Option<f64>,
    i64,
    Option<i64>,
    Option<i64>,
);

fn live_scenario(name: &str, steps: &[Live]) -> J {
    let steps = steps
        .iter()
        .map(
            |&(at, event, arg, action, timeout, srtt, rttvar, probe_after, next_ping, wake)| {
                let input = match event {
                    "pong" => {
                        obj! { "event" => event, "ping_sent_at_ms" => arg.map(|v| v as i64) }
                    }
                    "rtt_sample" => obj! { "event" => event, "rtt_ms" => arg },
                    _ => obj! { "event" => event },
                };
                step(
                    at,
                    input,
                    obj! {
                        "action" => action,
                        "live_timeout_ms" => timeout,
                        "srtt_ms" => srtt,
                        "rttvar_ms" => rttvar,
                        "wake_at_ms" => wake,
                        "probe_after_ms" => probe_after,
                        "next_ping_at_ms" => next_ping,
                    },
                )
            },
        )
        .collect::<Vec<_>>();
    obj! { "name" => name, "steps" => steps }
}

// One step a line: (at, event, arg, action, live_timeout, srtt, rttvar,
// probe_after, next_ping_at, wake_at).
#[rustfmt::skip]
fn liveness() -> J {
    const S40: Option<f64> = Some(40.0);
    let scenarios = vec![
        live_scenario(
            "quiet path, then the node is killed at 1100 ms: lost at 3001 ms",
            &[
                (0, "connected", None, "none", 3000, None, None, 1000, Some(500), Some(500)),
                (500, "tick", None, "ping", 3000, None, None, 1000, Some(1000), Some(1000)),
                (520, "tick", None, "none", 3000, None, None, 1000, Some(1000), Some(1000)),
                (540, "pong", Some(500.0), "none", 1500, S40, Some(20.0), 250, Some(1000), Some(1000)),
                (1000, "tick", None, "ping", 1500, S40, Some(20.0), 250, Some(1250), Some(1250)),
                (1040, "pong", Some(1000.0), "none", 1500, S40, Some(15.0), 250, Some(1500), Some(1500)),
                // The last Ping the server answers went out at 1000; this one is never answered.
                (1500, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(1750), Some(1750)),
                // Outstanding for probe_after_ms (250): a probe every 100 ms.
                (1750, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(1850), Some(1850)),
                (1850, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(1950), Some(1950)),
                (1950, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(2050), Some(2050)),
                (2050, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(2150), Some(2150)),
                (2150, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(2250), Some(2250)),
                (2250, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(2350), Some(2350)),
                (2350, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(2450), Some(2450)),
                (2450, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(2550), Some(2550)),
                (2550, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(2650), Some(2650)),
                (2650, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(2750), Some(2750)),
                (2750, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(2850), Some(2850)),
                (2850, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(2950), Some(2950)),
                (2950, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(3050), Some(3001)),
                (3001, "tick", None, "lost", 1500, S40, Some(15.0), 250, None, None),
            ],
        ),
        live_scenario(
            "before the first RTT sample the live timeout is 3000 ms",
            &[
                (0, "connected", None, "none", 3000, None, None, 1000, Some(500), Some(500)),
                (500, "tick", None, "ping", 3000, None, None, 1000, Some(1000), Some(1000)),
                (1000, "tick", None, "ping", 3000, None, None, 1000, Some(1500), Some(1500)),
                // Outstanding since 500 for 1000 ms (probe_after before a sample): probes.
                (1500, "tick", None, "ping", 3000, None, None, 1000, Some(1600), Some(1600)),
                (1600, "tick", None, "ping", 3000, None, None, 1000, Some(1700), Some(1700)),
                (1700, "tick", None, "ping", 3000, None, None, 1000, Some(1800), Some(1800)),
                (1800, "tick", None, "ping", 3000, None, None, 1000, Some(1900), Some(1900)),
                (1900, "tick", None, "ping", 3000, None, None, 1000, Some(2000), Some(2000)),
                (2000, "tick", None, "ping", 3000, None, None, 1000, Some(2100), Some(2100)),
                (2100, "tick", None, "ping", 3000, None, None, 1000, Some(2200), Some(2200)),
                (2200, "tick", None, "ping", 3000, None, None, 1000, Some(2300), Some(2300)),
                (2300, "tick", None, "ping", 3000, None, None, 1000, Some(2400), Some(2400)),
                (2400, "tick", None, "ping", 3000, None, None, 1000, Some(2500), Some(2500)),
                (2500, "tick", None, "ping", 3000, None, None, 1000, Some(2600), Some(2600)),
                (2600, "tick", None, "ping", 3000, None, None, 1000, Some(2700), Some(2700)),
                (2700, "tick", None, "ping", 3000, None, None, 1000, Some(2800), Some(2800)),
                (2800, "tick", None, "ping", 3000, None, None, 1000, Some(2900), Some(2900)),
                (2900, "tick", None, "ping", 3000, None, None, 1000, Some(3000), Some(3000)),
                (3000, "tick", None, "ping", 3000, None, None, 1000, Some(3100), Some(3100)),
                (3100, "tick", None, "ping", 3000, None, None, 1000, Some(3200), Some(3200)),
                (3200, "tick", None, "ping", 3000, None, None, 1000, Some(3300), Some(3300)),
                (3300, "tick", None, "ping", 3000, None, None, 1000, Some(3400), Some(3400)),
                (3400, "tick", None, "ping", 3000, None, None, 1000, Some(3500), Some(3500)),
                (3500, "tick", None, "ping", 3000, None, None, 1000, Some(3600), Some(3501)),
                (3501, "tick", None, "lost", 3000, None, None, 1000, None, None),
            ],
        ),
        live_scenario(
            "anything heard (a relay frame) resets the wait; timed from the oldest unanswered Ping",
            &[
                (0, "connected", None, "none", 3000, None, None, 1000, Some(500), Some(500)),
                (500, "tick", None, "ping", 3000, None, None, 1000, Some(1000), Some(1000)),
                (1000, "tick", None, "ping", 3000, None, None, 1000, Some(1500), Some(1500)),
                (1200, "heard", None, "none", 3000, None, None, 1000, Some(1500), Some(1500)),
                (1500, "tick", None, "ping", 3000, None, None, 1000, Some(2000), Some(2000)),
                (2000, "tick", None, "ping", 3000, None, None, 1000, Some(2500), Some(2500)),
                // The timer fired late (2000 ms late): a Ping, outstanding since 1500.
                (4500, "tick", None, "ping", 3000, None, None, 1000, Some(4600), Some(4501)),
                (4501, "tick", None, "lost", 3000, None, None, 1000, None, None),
            ],
        ),
        live_scenario(
            "a throttled tab: no tick for a minute, nothing outstanding, no alarm",
            &[
                (0, "connected", None, "none", 3000, None, None, 1000, Some(500), Some(500)),
                (500, "tick", None, "ping", 3000, None, None, 1000, Some(1000), Some(1000)),
                (530, "pong", Some(500.0), "none", 1500, Some(30.0), Some(15.0), 250, Some(1000), Some(1000)),
                (60000, "tick", None, "ping", 1500, Some(30.0), Some(15.0), 250, Some(60250), Some(60250)),
                (60030, "pong", Some(60000.0), "none", 1500, Some(30.0), Some(11.25), 250, Some(60500), Some(60500)),
            ],
        ),
        live_scenario(
            "the RTT estimate (RFC 6298 weights) sets the live timeout, clamped to [1500, 10000]",
            &[
                (0, "connected", None, "none", 3000, None, None, 1000, Some(500), Some(500)),
                (100, "rtt_sample", Some(400.0), "none", 3600, Some(400.0), Some(200.0), 1200, Some(500), Some(500)),
                (200, "rtt_sample", Some(200.0), "none", 3525, Some(375.0), Some(200.0), 1175, Some(500), Some(500)),
                (300, "rtt_sample", Some(2000.0), "none", 8409, Some(578.125), Some(556.25), 2803, Some(500), Some(500)),
                (400, "rtt_sample", Some(5000.0), "none", 10000, Some(1130.859375), Some(1522.65625), 7221, Some(500), Some(500)),
            ],
        ),
        live_scenario(
            "a lossy path with jitter: lost Pongs within the adaptive timeout are no alarm",
            &[
                (0, "connected", None, "none", 3000, None, None, 1000, Some(500), Some(500)),
                (500, "tick", None, "ping", 3000, None, None, 1000, Some(1000), Some(1000)),
                (800, "pong", Some(500.0), "none", 2700, Some(300.0), Some(150.0), 900, Some(1000), Some(1000)),
                (1000, "tick", None, "ping", 2700, Some(300.0), Some(150.0), 900, Some(1500), Some(1500)),
                // Outstanding since 1000: a probe is due at 1000 + 900.
                (1500, "tick", None, "ping", 2700, Some(300.0), Some(150.0), 900, Some(1900), Some(1900)),
                (1650, "pong", Some(1500.0), "none", 2643, Some(281.25), Some(150.0), 881, Some(2000), Some(2000)),
                (2000, "tick", None, "ping", 2643, Some(281.25), Some(150.0), 881, Some(2500), Some(2500)),
                (2500, "tick", None, "ping", 2643, Some(281.25), Some(150.0), 881, Some(2881), Some(2881)),
                (2881, "tick", None, "ping", 2643, Some(281.25), Some(150.0), 881, Some(2981), Some(2981)),
                (2981, "tick", None, "ping", 2643, Some(281.25), Some(150.0), 881, Some(3081), Some(3081)),
                (3081, "tick", None, "ping", 2643, Some(281.25), Some(150.0), 881, Some(3181), Some(3181)),
                // The first probe's Pong: heard, and a sample of 169 ms.
                (3150, "pong", Some(2981.0), "none", 2488, Some(267.21875), Some(140.5625), 829, Some(3581), Some(3581)),
                (3581, "tick", None, "ping", 2488, Some(267.21875), Some(140.5625), 829, Some(4081), Some(4081)),
            ],
        ),
        live_scenario(
            "a late Pong answers an older Ping: the sample is from that Ping, and it clears the wait",
            &[
                (0, "connected", None, "none", 3000, None, None, 1000, Some(500), Some(500)),
                (500, "tick", None, "ping", 3000, None, None, 1000, Some(1000), Some(1000)),
                (1000, "tick", None, "ping", 3000, None, None, 1000, Some(1500), Some(1500)),
                (1100, "pong", Some(500.0), "none", 5400, Some(600.0), Some(300.0), 1800, Some(1500), Some(1500)),
                (1150, "pong", Some(1000.0), "none", 5681, Some(543.75), Some(337.5), 1893, Some(1500), Some(1500)),
                (1500, "tick", None, "ping", 5681, Some(543.75), Some(337.5), 1893, Some(2000), Some(2000)),
            ],
        ),
        live_scenario(
            "a lossy stretch on a quiet path: the Pong to a probe, 11 ms before the deadline, saves it",
            &[
                (0, "connected", None, "none", 3000, None, None, 1000, Some(500), Some(500)),
                (500, "tick", None, "ping", 3000, None, None, 1000, Some(1000), Some(1000)),
                (540, "pong", Some(500.0), "none", 1500, S40, Some(20.0), 250, Some(1000), Some(1000)),
                (1000, "tick", None, "ping", 1500, S40, Some(20.0), 250, Some(1250), Some(1250)),
                (1040, "pong", Some(1000.0), "none", 1500, S40, Some(15.0), 250, Some(1500), Some(1500)),
                // Lost, and so are the probes' Pongs until the one to the probe at 2950.
                (1500, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(1750), Some(1750)),
                (1750, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(1850), Some(1850)),
                (1850, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(1950), Some(1950)),
                (1950, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(2050), Some(2050)),
                (2050, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(2150), Some(2150)),
                (2150, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(2250), Some(2250)),
                (2250, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(2350), Some(2350)),
                (2350, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(2450), Some(2450)),
                (2450, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(2550), Some(2550)),
                (2550, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(2650), Some(2650)),
                (2650, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(2750), Some(2750)),
                (2750, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(2850), Some(2850)),
                (2850, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(2950), Some(2950)),
                (2950, "tick", None, "ping", 1500, S40, Some(15.0), 250, Some(3050), Some(3001)),
                (2990, "pong", Some(2950.0), "none", 1500, S40, Some(11.25), 250, Some(3450), Some(3450)),
                // Nothing outstanding: the regular interval resumes from the last Ping.
                (3001, "tick", None, "none", 1500, S40, Some(11.25), 250, Some(3450), Some(3450)),
                (3450, "tick", None, "ping", 1500, S40, Some(11.25), 250, Some(3700), Some(3700)),
            ],
        ),
        live_scenario(
            "probe_after follows srtt + 4 rttvar, at least 250 ms; above 500 ms there is no probe",
            &[
                (0, "connected", None, "none", 3000, None, None, 1000, Some(500), Some(500)),
                (100, "rtt_sample", Some(10.0), "none", 1500, Some(10.0), Some(5.0), 250, Some(500), Some(500)),
                (500, "tick", None, "ping", 1500, Some(10.0), Some(5.0), 250, Some(750), Some(750)),
                // A sample alone (no Pong: the Ping stays outstanding) moves the probe.
                (600, "rtt_sample", Some(300.0), "none", 1500, Some(46.25), Some(76.25), 351, Some(851), Some(851)),
                (851, "tick", None, "ping", 1500, Some(46.25), Some(76.25), 351, Some(951), Some(951)),
                (900, "rtt_sample", Some(2000.0), "none", 7418, Some(290.46875), Some(545.625), 2472, Some(1351), Some(1351)),
                (1351, "tick", None, "ping", 7418, Some(290.46875), Some(545.625), 2472, Some(1851), Some(1851)),
                (1851, "tick", None, "ping", 7418, Some(290.46875), Some(545.625), 2472, Some(2351), Some(2351)),
            ],
        ),
    ];
    timed(
        ALL,
        "connected at t: last_ping_at = t (the first Ping is due at t + ping_interval_ms), nothing outstanding. \
         probe_after_ms = floor(max(probe_after_min_ms, srtt + 4 rttvar)), probe_after_before_sample_ms before a sample. \
         Next Ping due (next_ping_at_ms): nothing outstanding: last_ping_at + ping_interval_ms; a Ping outstanding: \
         min(last_ping_at + ping_interval_ms, max(last_ping_at + probe_interval_ms, awaiting_since + probe_after_ms)). \
         tick(now): lost if a Ping is outstanding and now - awaiting_since > live_timeout_ms; else ping if now >= next \
         Ping due (last_ping_at = now; awaiting_since kept if set, else now); else none. heard (any message or relay frame) \
         and pong clear awaiting_since; pong is also an RTT sample (now - ping_sent_at_ms). RTT: first sample s: srtt = s, \
         rttvar = s/2; later: rttvar = 0.75 rttvar + 0.25 |srtt - s|, then srtt = 0.875 srtt + 0.125 s. live_timeout_ms = \
         floor(clamp(3 × (srtt + 4 rttvar), 1500, 10000)), 3000 before a sample. wake_at_ms = min(next Ping due, \
         awaiting_since + live_timeout_ms + 1): when the shell must tick next. next_ping_at_ms and wake_at_ms are null once lost",
        scenarios,
    )
}

fn timeouts() -> J {
    // Attempt timeouts: (name, rtt_ms, connect_timeout_ms, timeout_ms)
    type Att = (&'static str, Option<f64>, i64, i64);
    const ATTEMPTS: &[Att] = &[
        ("no RTT known yet: the 3 s floor", None, 10000, 3000),
        ("RTT 0 counts as unknown", Some(0.0), 10000, 3000),
        ("a LAN: the floor", Some(20.0), 10000, 3000),
        ("125 ms: exactly the floor", Some(125.0), 10000, 3000),
        ("200 ms: 2000 + 8 × 200", Some(200.0), 10000, 3600),
        (
            "a fractional srtt: floor(2000 + 8 × 262.5)",
            Some(262.5),
            10000,
            4100,
        ),
        ("500 ms", Some(500.0), 10000, 6000),
        (
            "1 s: capped by the connect timeout",
            Some(1000.0),
            10000,
            10000,
        ),
        ("2 s: capped", Some(2000.0), 10000, 10000),
        ("a shorter connect timeout caps it", Some(500.0), 4000, 4000),
        ("a connect timeout under the floor wins", None, 2000, 2000),
        ("connect timeout 0 = no cap", Some(2000.0), 0, 18000),
        ("connect timeout 0 and no RTT: the floor", None, 0, 3000),
    ];
    let mut cases: Vec<J> = ATTEMPTS
        .iter()
        .map(|&(name, rtt, connect, timeout)| {
            case(
                name,
                obj! { "kind" => "attempt", "rtt_ms" => rtt, "connect_timeout_ms" => connect },
                obj! { "timeout_ms" => timeout },
            )
        })
        .collect();
    // Requests: (name, sent_at_ms, now_ms, timed_out)
    const REQUESTS: &[(&str, i64, i64, bool)] = &[
        ("a request answered in time", 1000, 10999, false),
        (
            "a request unanswered for request_timeout_ms has timed out",
            1000,
            11000,
            true,
        ),
        ("long past", 0, 60000, true),
    ];
    for &(name, sent, now, out) in REQUESTS {
        cases.push(case(
            name,
            obj! { "kind" => "request", "sent_at_ms" => sent, "now_ms" => now, "request_timeout_ms" => 10000 },
            obj! { "timed_out" => out },
        ));
    }
    table(
        ALL,
        "attempt: timeout_ms = floor(min(connect_timeout_ms, max(3000, 2000 + 8 × rtt_ms))), rtt_ms the srtt of the \
         last connection (null or 0: unknown, the max is 3000); connect_timeout_ms 0 = no cap. request: a \
         CreateSession/JoinSession unanswered at now_ms has timed out when now_ms - sent_at_ms >= request_timeout_ms",
        cases,
    )
}

fn race() -> J {
    let attempts = |list: &[(&str, bool)]| -> J {
        J::Arr(
            list.iter()
                .map(|&(kind, failed)| obj! { "kind" => kind, "failed" => failed })
                .collect(),
        )
    };
    let cases = vec![
        case(
            "QUIC first, WebSocket after the fallback delay",
            obj! { "decision" => "start", "quic_available" => true, "fallback_delay_ms" => 1000 },
            obj! { "start" => "quic", "websocket_after_ms" => 1000 },
        ),
        case(
            "no QUIC (no WebTransport in this browser, no System.Net.Quic): WebSocket alone, at once",
            obj! { "decision" => "start", "quic_available" => false, "fallback_delay_ms" => 1000 },
            obj! { "start" => "websocket", "websocket_after_ms" => NULL },
        ),
        case(
            "a fallback delay of 0 starts both at once",
            obj! { "decision" => "start", "quic_available" => true, "fallback_delay_ms" => 0 },
            obj! { "start" => "quic", "websocket_after_ms" => 0 },
        ),
        case(
            "QUIC failed before the WebSocket started: start it now",
            obj! { "decision" => "failed", "failed" => "quic", "attempts" => attempts(&[("quic", true)]) },
            obj! { "start" => "websocket", "lost" => false },
        ),
        case(
            "QUIC failed, the WebSocket is under way: wait for it",
            obj! { "decision" => "failed", "failed" => "quic", "attempts" => attempts(&[("quic", true), ("websocket", false)]) },
            obj! { "start" => NULL, "lost" => false },
        ),
        case(
            "the WebSocket failed, QUIC is under way: wait for it",
            obj! { "decision" => "failed", "failed" => "websocket", "attempts" => attempts(&[("quic", false), ("websocket", true)]) },
            obj! { "start" => NULL, "lost" => false },
        ),
        case(
            "both failed: the race is lost",
            obj! { "decision" => "failed", "failed" => "websocket", "attempts" => attempts(&[("quic", true), ("websocket", true)]) },
            obj! { "start" => NULL, "lost" => true },
        ),
        case(
            "the only attempt (WebSocket) failed: lost",
            obj! { "decision" => "failed", "failed" => "websocket", "attempts" => attempts(&[("websocket", true)]) },
            obj! { "start" => NULL, "lost" => true },
        ),
        case(
            "the first attempt carries the first request in its URL",
            obj! { "decision" => "carries_first", "attempts" => attempts(&[]) },
            obj! { "carries_first" => true },
        ),
        case(
            "the WebSocket started while QUIC is pending: no first request in its URL",
            obj! { "decision" => "carries_first", "attempts" => attempts(&[("quic", false)]) },
            obj! { "carries_first" => false },
        ),
        case(
            "the WebSocket started after QUIC failed: it carries the first request",
            obj! { "decision" => "carries_first", "attempts" => attempts(&[("quic", true)]) },
            obj! { "carries_first" => true },
        ),
        case(
            "first to connect wins: QUIC up while the WebSocket is pending",
            obj! { "decision" => "connected", "connected" => "quic", "attempts" => attempts(&[("quic", false), ("websocket", false)]) },
            obj! { "use" => "quic", "abandon" => vec!["websocket"] },
        ),
        case(
            "first to connect wins: the WebSocket up first",
            obj! { "decision" => "connected", "connected" => "websocket", "attempts" => attempts(&[("quic", false), ("websocket", false)]) },
            obj! { "use" => "websocket", "abandon" => vec!["quic"] },
        ),
        case(
            "first to connect wins: nothing else pending",
            obj! { "decision" => "connected", "connected" => "websocket", "attempts" => attempts(&[("quic", true), ("websocket", false)]) },
            obj! { "use" => "websocket", "abandon" => Vec::<&str>::new() },
        ),
    ];
    table(
        ALL,
        "transport auto: QUIC (WebTransport in a browser) first; the WebSocket too after fallback_delay_ms if QUIC is \
         not up, at once if QUIC fails first or is unavailable; the first to connect wins and the other pending \
         attempts are abandoned; the race is lost when every attempt failed; an attempt carries the first request in \
         its URL only when every attempt started before it has failed",
        cases,
    )
}

fn paths() -> J {
    let mut cases = vec![];
    // direct_usable: (name, force_relay, data_channel, connection, usable)
    type Usable = (
        &'static str,
        bool,
        Option<&'static str>,
        Option<&'static str>,
        bool,
    );
    const USABLE: &[Usable] = &[
        (
            "channel open, connection connected",
            false,
            Some("open"),
            Some("connected"),
            true,
        ),
        ("forced relay", true, Some("open"), Some("connected"), false),
        (
            "channel still connecting",
            false,
            Some("connecting"),
            Some("connected"),
            false,
        ),
        (
            "channel closed",
            false,
            Some("closed"),
            Some("connected"),
            false,
        ),
        (
            "connection disconnected",
            false,
            Some("open"),
            Some("disconnected"),
            false,
        ),
        ("no connection yet", false, None, None, false),
    ];
    for &(name, force, dc, conn, usable) in USABLE {
        cases.push(case(
            &format!("direct usable: {name}"),
            obj! { "decision" => "direct_usable", "force_relay" => force, "data_channel" => dc, "connection" => conn },
            obj! { "usable" => usable },
        ));
    }
    // peer_path: (name, usable, direct_kind, fallback, force_relay, path)
    type PathRow = (
        &'static str,
        bool,
        Option<&'static str>,
        bool,
        bool,
        &'static str,
    );
    const PATHS: &[PathRow] = &[
        (
            "usable, host or srflx pair",
            true,
            Some("direct"),
            false,
            false,
            "direct",
        ),
        (
            "usable through a TURN server",
            true,
            Some("turn"),
            false,
            false,
            "turn",
        ),
        (
            "usable, pair not classified yet",
            true,
            None,
            false,
            false,
            "classify",
        ),
        (
            "usable wins over an old fallback",
            true,
            Some("direct"),
            true,
            false,
            "direct",
        ),
        (
            "fell back (deadline, ICE failed)",
            false,
            None,
            true,
            false,
            "relay",
        ),
        ("forced relay", false, None, false, true, "relay"),
        ("neither yet", false, None, false, false, "connecting"),
    ];
    for &(name, usable, kind, fallback, force, path) in PATHS {
        cases.push(case(
            &format!("path: {name}"),
            obj! { "decision" => "peer_path", "usable" => usable, "direct_kind" => kind, "fallback" => fallback, "force_relay" => force },
            obj! { "path" => path },
        ));
    }
    // path_change: (name, previous, path, initial, change)
    type Change = (
        &'static str,
        Option<&'static str>,
        &'static str,
        bool,
        &'static str,
    );
    const CHANGES: &[Change] = &[
        (
            "a new peer still connecting: recorded silently",
            None,
            "connecting",
            true,
            "update",
        ),
        (
            "a new peer on the relay at once: announced",
            None,
            "relay",
            true,
            "announce",
        ),
        (
            "connecting → direct",
            Some("connecting"),
            "direct",
            false,
            "announce",
        ),
        ("direct → relay", Some("direct"), "relay", false, "announce"),
        ("relay → turn", Some("relay"), "turn", false, "announce"),
        ("unchanged", Some("direct"), "direct", false, "none"),
    ];
    for &(name, previous, path, initial, change) in CHANGES {
        cases.push(case(
            &format!("pathchange: {name}"),
            obj! { "decision" => "path_change", "previous" => previous, "path" => path, "initial" => initial },
            obj! { "change" => change },
        ));
    }
    // connection_state: (state, fallback, retry)
    const STATES: &[(&str, bool, bool)] = &[
        ("failed", true, true),
        ("closed", true, true),
        ("disconnected", true, false),
        ("connected", false, false),
        ("connecting", false, false),
        ("new", false, false),
    ];
    for &(state, fallback, retry) in STATES {
        cases.push(case(
            &format!("connection state {state}"),
            obj! { "decision" => "connection_state", "connection_state" => state },
            obj! { "fallback" => fallback, "retry" => retry },
        ));
    }
    // glare: (name, signaling_state, my_id, from_id, ignore_offer)
    type Glare = (&'static str, Option<&'static str>, u32, u32, bool);
    const GLARE: &[Glare] = &[
        (
            "both offered, I am lower: keep mine",
            Some("have-local-offer"),
            1,
            2,
            true,
        ),
        (
            "both offered, I am higher: answer theirs",
            Some("have-local-offer"),
            3,
            2,
            false,
        ),
        ("no offer of mine", Some("stable"), 1, 2, false),
        ("no connection yet", None, 1, 2, false),
    ];
    for &(name, state, me, from, ignore) in GLARE {
        cases.push(case(
            &format!("glare: {name}"),
            obj! { "decision" => "glare", "signaling_state" => state, "my_id" => me, "from_id" => from },
            obj! { "ignore_offer" => ignore },
        ));
    }
    // direct_retry: (name, retry_ms, force_relay, my_id, peer_id, scheduled, due)
    type Retry = (&'static str, i64, bool, u32, u32, bool, bool);
    const RETRY: &[Retry] = &[
        ("the lower id retries", 20000, false, 1, 2, false, true),
        (
            "the higher id waits for the other's offer",
            20000,
            false,
            2,
            1,
            false,
            false,
        ),
        ("retry off", 0, false, 1, 2, false, false),
        ("forced relay", 20000, true, 1, 2, false, false),
        ("already scheduled", 20000, false, 1, 2, true, false),
    ];
    for &(name, retry_ms, force, me, peer, scheduled, due) in RETRY {
        cases.push(case(
            &format!("direct retry: {name}"),
            obj! {
                "decision" => "direct_retry", "retry_ms" => retry_ms, "force_relay" => force,
                "my_id" => me, "peer_id" => peer, "scheduled" => scheduled,
            },
            obj! { "due" => due },
        ));
    }
    table(
        &["js", "csharp"],
        "direct_usable: !force_relay && data_channel open && connection connected. peer_path: usable → direct_kind \
         (or classify while the pair is unknown); else fallback or force_relay → relay; else connecting. path_change: \
         same path and not initial → none; initial and connecting → update (silent); else announce. connection_state: \
         failed/closed → fall back and retry later; disconnected → fall back only. glare: with a local offer, the lower \
         id keeps its own. direct_retry: only the lower id, retry_ms > 0, not forced onto the relay, not twice",
        cases,
    )
}

fn signalr_retry() -> J {
    let mut cases = vec![];
    // The protocol's own resume first: (attempt, random, delay_ms)
    for &(attempt, random, delay) in &[
        (0u32, 0.5f64, 0i64),
        (1, 0.999, 249),
        (3, 0.5, 750),
        (9, 0.999, 3998),
    ] {
        cases.push(case(
            &format!("within the resume: rule 1 backoff, attempt {attempt}"),
            obj! { "phase" => "resume", "attempt" => attempt, "random" => random },
            obj! { "governed_by" => "protocol", "delay_ms" => delay },
        ));
    }
    // When the resume is over: (name, elapsed_since_loss_ms, grace_ms, resume_refused, over)
    const SWITCH: &[(&str, i64, i64, bool, bool)] = &[
        (
            "within the grace: still the protocol's resume",
            14999,
            15000,
            false,
            false,
        ),
        ("the grace has passed", 15000, 15000, false, true),
        (
            "resume refused (resume_failed): over at once",
            3000,
            15000,
            true,
            true,
        ),
    ];
    for &(name, elapsed, grace, refused, over) in SWITCH {
        cases.push(case(
            name,
            obj! { "phase" => "switch", "elapsed_since_loss_ms" => elapsed, "grace_ms" => grace, "resume_refused" => refused },
            obj! { "resume_over" => over },
        ));
    }
    // Then SignalR's policy: (previous_retry_count, delays, delay_ms or None = Closed)
    let default = vec![0i64, 2000, 10000, 30000];
    let rows: Vec<(u32, Vec<i64>, Option<i64>)> = vec![
        (0, default.clone(), Some(0)),
        (1, default.clone(), Some(2000)),
        (2, default.clone(), Some(10000)),
        (3, default.clone(), Some(30000)),
        (4, default.clone(), None),
        (1, vec![0, 5000], Some(5000)),
        (2, vec![0, 5000], None),
    ];
    for (previous, delays, delay) in rows {
        cases.push(case(
            &format!(
                "after the resume: SignalR retry {} with delays {delays:?}",
                previous + 1
            ),
            obj! { "phase" => "signalr", "previous_retry_count" => previous, "delays_ms" => delays },
            obj! { "governed_by" => "signalr", "delay_ms" => delay },
        ));
    }
    table(
        &["csharp"],
        "the protocol's resume (token within resume_grace_ms, backoff of rule 1) comes first; it is over when \
         elapsed_since_loss_ms >= grace_ms or the resume was refused; then the WithAutomaticReconnect delays govern \
         (fresh connection + rejoin by code): delays_ms[previous_retry_count], null (Closed) past the end",
        cases,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_client_vector_file_is_current() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/client-vectors.json"
        );
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == render(),
            "docs/client-vectors.json is stale: run `cargo run -- vectors --client > docs/client-vectors.json`"
        );
    }

    #[test]
    fn the_writer_escapes_and_keeps_order() {
        let mut out = String::new();
        obj! { "b" => "x\"y\\", "a" => NULL, "f" => 0.5, "g" => 2.0 }.compact(&mut out);
        assert_eq!(out, r#"{"b": "x\"y\\", "a": null, "f": 0.5, "g": 2.0}"#);
    }
}
