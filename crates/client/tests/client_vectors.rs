//! The Rust client's replay of `docs/client-vectors.json` (PROTOCOL.md §12):
//! every case of every section whose `clients` name `rust`, run against the
//! client's pure decision functions ([`fsp2p_client::behaviour`]), the same
//! ones its connection tasks and reconnection supervisor call. The JS and C#
//! clients replay the same file; a change of behaviour in one client that
//! the file does not share fails that client's suite.
//!
//! Failures are collected and reported together, each naming its section,
//! case (or scenario and step) and what differed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fsp2p_client::behaviour::*;
use fsp2p_client::protocol::report::LinkPath;
use fsp2p_client::protocol::{
    self, ClientKind, ErrorCode, Limits, NodeAddr, PeerInfo, Redirect, RedirectReason, ServerMsg,
    SessionInfo, Welcome,
};
use fsp2p_client::{ClientConfig, ServerAddr, Trust};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/client-vectors.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// Where a check is, for the failure message.
#[derive(Clone)]
struct At(String);

/// The failures found so far.
#[derive(Default)]
struct Report {
    failures: Vec<String>,
    checked: usize,
}

impl Report {
    fn eq<T: PartialEq + std::fmt::Debug>(&mut self, at: &At, what: &str, got: T, want: T) {
        self.checked += 1;
        if got != want {
            self.failures
                .push(format!("{}: {what}: got {got:?}, want {want:?}", at.0));
        }
    }

    fn fail(&mut self, at: &At, why: String) {
        self.failures.push(format!("{}: {why}", at.0));
    }
}

// Reading the test data (a malformed file is a failed test, so panics say where).

fn field<'a>(v: &'a Value, key: &str, at: &At) -> &'a Value {
    v.get(key)
        .unwrap_or_else(|| panic!("{}: no key {key:?} in {v}", at.0))
}

fn u(v: &Value, key: &str, at: &At) -> u64 {
    field(v, key, at)
        .as_u64()
        .unwrap_or_else(|| panic!("{}: {key} is not a whole number", at.0))
}

fn opt_u(v: &Value, key: &str, at: &At) -> Option<u64> {
    let f = field(v, key, at);
    (!f.is_null()).then(|| u(v, key, at))
}

fn f(v: &Value, key: &str, at: &At) -> f64 {
    field(v, key, at)
        .as_f64()
        .unwrap_or_else(|| panic!("{}: {key} is not a number", at.0))
}

fn opt_f(v: &Value, key: &str, at: &At) -> Option<f64> {
    let x = field(v, key, at);
    (!x.is_null()).then(|| f(v, key, at))
}

fn b(v: &Value, key: &str, at: &At) -> bool {
    field(v, key, at)
        .as_bool()
        .unwrap_or_else(|| panic!("{}: {key} is not a bool", at.0))
}

fn s<'a>(v: &'a Value, key: &str, at: &At) -> &'a str {
    field(v, key, at)
        .as_str()
        .unwrap_or_else(|| panic!("{}: {key} is not a string", at.0))
}

fn opt_s<'a>(v: &'a Value, key: &str, at: &At) -> Option<&'a str> {
    let x = field(v, key, at);
    (!x.is_null()).then(|| s(v, key, at))
}

fn list<'a>(v: &'a Value, key: &str, at: &At) -> &'a Vec<Value> {
    field(v, key, at)
        .as_array()
        .unwrap_or_else(|| panic!("{}: {key} is not a list", at.0))
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// A time `n` ms after `t0`.
fn after(t0: Instant, n: u64) -> Instant {
    t0 + Duration::from_millis(n)
}

fn verdict(v: Verdict) -> (&'static str, Option<u64>) {
    match v {
        Verdict::Resume => ("resume", Some(0)),
        Verdict::ResumeAfter(d) => ("resume_after", Some(ms(d))),
        Verdict::Redirect => ("redirect", Some(0)),
        Verdict::GiveUp => ("give_up", None),
    }
}

/// Every case (`cases`) of a table section, with where it is.
fn cases<'a>(section: &'a Value, name: &str) -> Vec<(At, &'a Value, &'a Value)> {
    let at = At(name.to_string());
    list(section, "cases", &at)
        .iter()
        .map(|c| {
            let at = At(format!("{name} / {}", s(c, "name", &at)));
            (at.clone(), field(c, "input", &at), field(c, "expect", &at))
        })
        .collect()
}

fn backoff_section(section: &Value, r: &mut Report) {
    for (at, input, expect) in cases(section, "backoff") {
        let attempt = u(input, "attempt", &at) as u32;
        let got = ms(backoff(attempt, f(input, "random", &at)));
        r.eq(&at, "delay_ms", got, u(expect, "delay_ms", &at));
        let (min, max) = (u(expect, "min_ms", &at), u(expect, "max_ms", &at));
        r.eq(
            &at,
            "delay at random 0 (min_ms)",
            ms(backoff(attempt, 0.0)),
            min,
        );
        let top = ms(backoff(attempt, 1.0 - f64::EPSILON));
        r.eq(&at, "delay at random → 1 within max_ms", top <= max, true);
        r.eq(
            &at,
            "delay within [min_ms, max_ms]",
            (min..=max).contains(&got),
            true,
        );
    }
}

fn close_section(section: &Value, r: &mut Report) {
    for (at, input, expect) in cases(section, "close") {
        let raw = opt_u(input, "close_code", &at);
        let code = match s(input, "transport", &at) {
            "websocket" => raw
                .and_then(|c| u16::try_from(c).ok())
                .and_then(protocol::close_code_from_ws)
                .map(u64::from),
            "quic" | "webtransport" => raw,
            other => {
                r.fail(&at, format!("unknown transport {other}"));
                continue;
            }
        };
        let facts = EndFacts {
            code,
            error_before: opt_u(input, "error_before", &at).map(|c| c as u16),
            going_away_ms: opt_u(input, "going_away_ms", &at).map(|c| c as u32),
            redirected: b(input, "redirected", &at),
            app_closed: b(input, "app_closed", &at),
            auto_resume: b(input, "auto_resume", &at),
            welcomed: b(input, "welcomed", &at),
        };
        let (action, delay) = verdict(close_verdict(&facts));
        r.eq(&at, "action", action, s(expect, "action", &at));
        r.eq(&at, "delay_ms", delay, opt_u(expect, "delay_ms", &at));
    }
}

fn errors_section(section: &Value, r: &mut Report) {
    for (at, input, expect) in cases(section, "errors") {
        let code = u(input, "code", &at) as u16;
        let known = ErrorCode::from_u16(code);
        r.eq(
            &at,
            "name",
            known.map_or("unknown", ErrorCode::as_str),
            s(expect, "name", &at),
        );
        r.eq(
            &at,
            "fatal",
            known.is_some_and(ErrorCode::is_fatal),
            b(expect, "fatal", &at),
        );
        r.eq(
            &at,
            "gives_up",
            error_is_final(code),
            b(expect, "gives_up", &at),
        );
        r.eq(
            &at,
            "answers_request",
            answers_request(code),
            b(expect, "answers_request", &at),
        );
        let (action, delay) = verdict(close_verdict(&EndFacts {
            code: Some(code.into()),
            auto_resume: true,
            welcomed: true,
            ..EndFacts::default()
        }));
        r.eq(&at, "close_action", action, s(expect, "close_action", &at));
        r.eq(
            &at,
            "close_delay_ms",
            delay,
            opt_u(expect, "close_delay_ms", &at),
        );
        let attempt = if attempt_refusal_is_final(code.into()) {
            "give_up"
        } else {
            "retry"
        };
        r.eq(
            &at,
            "attempt_failure",
            attempt,
            s(expect, "attempt_failure", &at),
        );
    }
}

fn after_reconnect_section(section: &Value, r: &mut Report) {
    for (at, input, expect) in cases(section, "after_reconnect") {
        let got = after_reconnect(
            b(input, "resumed", &at),
            u(input, "peer_id", &at) as u32,
            u(input, "previous_peer_id", &at) as u32,
            b(input, "in_session", &at),
            b(input, "pending_request", &at),
        );
        let got = match got {
            AfterReconnect::Resumed => "resumed",
            AfterReconnect::Rejoin => "rejoin",
            AfterReconnect::Resend => "resend",
            AfterReconnect::Fresh => "fresh",
        };
        r.eq(&at, "outcome", got, s(expect, "outcome", &at));
    }
}

/// Every step of every scenario of a timed section: (where, given, at_ms,
/// input, expect), scenario by scenario.
type Steps<'a> = Vec<(At, &'a Value, Vec<(At, u64, &'a Value, &'a Value)>)>;

fn scenarios<'a>(section: &'a Value, name: &str) -> Steps<'a> {
    static NONE: Value = Value::Null;
    let at = At(name.to_string());
    list(section, "scenarios", &at)
        .iter()
        .map(|sc| {
            let at = At(format!("{name} / {}", s(sc, "name", &at)));
            let given = sc.get("given").unwrap_or(&NONE);
            let steps = list(sc, "steps", &at)
                .iter()
                .enumerate()
                .map(|(i, st)| {
                    let at_ms = u(st, "at_ms", &at);
                    let here = At(format!("{} / step {} at {at_ms} ms", at.0, i + 1));
                    (
                        here.clone(),
                        at_ms,
                        field(st, "input", &here),
                        field(st, "expect", &here),
                    )
                })
                .collect();
            (at, given, steps)
        })
        .collect()
}

fn resume_plan_section(section: &Value, r: &mut Report) {
    for (at, given, steps) in scenarios(section, "resume_plan") {
        let grace = Duration::from_millis(u(given, "grace_ms", &at));
        let window = Duration::from_millis(u(given, "window_ms", &at));
        let t0 = Instant::now();
        let mut plan: Option<Plan> = None;
        for (at, at_ms, input, expect) in steps {
            let now = after(t0, at_ms);
            let next = match (s(input, "event", &at), plan.as_mut()) {
                ("lost", _) => {
                    let delay = Duration::from_millis(u(input, "delay_ms", &at));
                    let verdict = if delay.is_zero() {
                        Verdict::Resume
                    } else {
                        Verdict::ResumeAfter(delay)
                    };
                    let p = plan.insert(Plan::new(now, verdict, grace, window));
                    p.next(now, 0.0)
                }
                ("failed", Some(p)) => p.next(now, f(input, "random", &at)),
                ("redirected", Some(p)) => {
                    p.at_once();
                    p.next(now, 0.0)
                }
                (event, _) => {
                    r.fail(&at, format!("event {event} (before lost?)"));
                    continue;
                }
            };
            let got = match next {
                Some(a) => (
                    "attempt",
                    Some(u64::from(a.number)),
                    Some(ms(a.at - t0)),
                    Some(a.with_token),
                ),
                None => ("give_up", None, None, None),
            };
            r.eq(&at, "action", got.0, s(expect, "action", &at));
            r.eq(&at, "attempt", got.1, opt_u(expect, "attempt", &at));
            r.eq(&at, "start_at_ms", got.2, opt_u(expect, "start_at_ms", &at));
            let want_token = field(expect, "with_token", &at).as_bool();
            r.eq(&at, "with_token", got.3, want_token);
        }
    }
}

fn node(name: &str) -> NodeAddr {
    NodeAddr {
        name: name.into(),
        quic: "10.0.0.2:4433".into(),
        http: String::new(),
        cert_sha256: None,
    }
}

fn welcome(peer_id: u32) -> Welcome {
    Welcome {
        version: 1,
        peer_id,
        resume_token: vec![1; 16],
        resumed: false,
        ice_servers: vec![],
        limits: Limits {
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

fn info() -> SessionInfo {
    SessionInfo {
        code: "7KQ2MX".into(),
        host: 1,
        max_peers: 8,
        idle_ttl_secs: 60,
        peers: vec![],
    }
}

/// The server message a `redirects` case names.
fn message(name: &str) -> Option<ServerMsg> {
    Some(match name {
        "redirect" => ServerMsg::Redirect(Redirect {
            reason: RedirectReason::Session,
            node: node("b"),
        }),
        "welcome" => ServerMsg::Welcome(welcome(3)),
        "session_created" => ServerMsg::SessionCreated(info()),
        "session_joined" => ServerMsg::SessionJoined(info()),
        "error_answering" => ServerMsg::Error {
            code: ErrorCode::UnknownSession as u16,
            message: "no such session".into(),
        },
        "pong" => ServerMsg::Pong {
            client_time_ms: 1,
            server_time_ms: 2,
        },
        "peer_joined" => ServerMsg::PeerJoined(PeerInfo {
            id: 4,
            name: "Bob".into(),
            client: ClientKind::Browser,
        }),
        _ => return None,
    })
}

fn redirects_section(section: &Value, r: &mut Report) {
    let action = |step: RedirectStep| match step {
        RedirectStep::Follow => ("follow", None),
        RedirectStep::Fail {
            back_to_configured: true,
        } => ("fail", Some("back_to_configured")),
        RedirectStep::Fail {
            back_to_configured: false,
        } => ("fail", Some("stop")),
    };
    for (at, input, expect) in cases(section, "redirects") {
        if input.get("messages").is_some() {
            let mut count = 0;
            let mut pending = b(input, "pending_request", &at);
            for m in list(input, "messages", &at) {
                let name = m.as_str().unwrap_or_default();
                match message(name) {
                    Some(msg) => (count, pending) = redirect_count_after(count, pending, &msg),
                    None => r.fail(&at, format!("unknown message {name}")),
                }
            }
            r.eq(&at, "count", u64::from(count), u(expect, "count", &at));
            let got = action(redirect_step(count, true)).0;
            r.eq(&at, "action", got, s(expect, "action", &at));
        } else {
            let count = u(input, "count", &at) as u32;
            let got = action(redirect_step(count, b(input, "in_session", &at)));
            r.eq(&at, "action", got.0, s(expect, "action", &at));
            r.eq(&at, "then", got.1, opt_s(expect, "then", &at));
        }
    }
}

fn rotation_section(section: &Value, r: &mut Report) {
    // Servers are told apart by port: configured i at 4000 + i, node names
    // at 5000 + their index in this list.
    let mut nodes: Vec<String> = vec![];
    let addr = |port: u16| ServerAddr::new(SocketAddr::from(([127, 0, 0, 1], port)));
    for (at, given, steps) in scenarios(section, "rotation") {
        let n = u(given, "configured", &at) as u16;
        let mut rot = Rotation::of((0..n).map(|i| addr(4000 + i)).collect());
        for (at, _, input, expect) in steps {
            match s(input, "event", &at) {
                "unreachable" => rot.unreachable(),
                "server_lost" => rot.lost(true),
                "connection_lost" => rot.lost(false),
                "back_to_configured" => rot.back_to_configured(),
                "redirected" => {
                    let name = s(input, "node", &at).to_string();
                    let i = nodes.iter().position(|n| *n == name).unwrap_or_else(|| {
                        nodes.push(name);
                        nodes.len() - 1
                    });
                    rot.redirected(addr(5000 + i as u16));
                }
                other => r.fail(&at, format!("unknown event {other}")),
            }
            let index = rot.configured_index() as u64;
            r.eq(
                &at,
                "configured_index",
                index,
                u(expect, "configured_index", &at),
            );
            let target = rot
                .redirect_target()
                .map(|a| nodes[usize::from(a.server.port() - 5000)].as_str());
            r.eq(
                &at,
                "redirect_target",
                target,
                opt_s(expect, "redirect_target", &at),
            );
            // The current server is the target, else the configured one.
            let current = rot.current().server.port();
            let want = match target {
                Some(_) => rot.redirect_target().map_or(0, |a| a.server.port()),
                None => 4000 + index as u16,
            };
            r.eq(&at, "current server (port)", current, want);
        }
    }
}

fn liveness_section(section: &Value, interval: Duration, r: &mut Report) {
    for (_, _, steps) in scenarios(section, "liveness") {
        let t0 = Instant::now();
        let mut live: Option<Liveness> = None;
        for (at, at_ms, input, expect) in steps {
            let now = after(t0, at_ms);
            let event = s(input, "event", &at);
            let l = match (event, live.as_mut()) {
                ("connected", _) => live.insert(Liveness::new(now, interval)),
                (_, Some(l)) => l,
                (_, None) => {
                    r.fail(&at, format!("{event} before connected"));
                    continue;
                }
            };
            let action = match event {
                "connected" => "none",
                "tick" => match l.tick(now) {
                    LiveAction::None => "none",
                    LiveAction::Ping => "ping",
                    LiveAction::Lost { .. } => "lost",
                },
                "heard" => {
                    l.heard(now);
                    "none"
                }
                "pong" => {
                    l.pong(now, after(t0, u(input, "ping_sent_at_ms", &at)));
                    "none"
                }
                "rtt_sample" => {
                    let rtt = f(input, "rtt_ms", &at);
                    l.rtt_sample(Duration::from_nanos((rtt * 1e6) as u64));
                    "none"
                }
                other => {
                    r.fail(&at, format!("unknown event {other}"));
                    continue;
                }
            };
            r.eq(&at, "action", action, s(expect, "action", &at));
            r.eq(
                &at,
                "live_timeout_ms",
                ms(l.live_timeout()),
                u(expect, "live_timeout_ms", &at),
            );
            let close = |got: Option<f64>, want: Option<f64>| match (got, want) {
                (Some(g), Some(w)) => (g - w).abs() < 1e-9,
                (g, w) => g.is_none() && w.is_none(),
            };
            let (srtt, want) = (l.srtt_ms(), opt_f(expect, "srtt_ms", &at));
            r.eq(
                &at,
                &format!("srtt_ms {srtt:?} ≈ {want:?}"),
                close(srtt, want),
                true,
            );
            let (rttvar, want) = (l.rttvar_ms(), opt_f(expect, "rttvar_ms", &at));
            r.eq(
                &at,
                &format!("rttvar_ms {rttvar:?} ≈ {want:?}"),
                close(rttvar, want),
                true,
            );
            let wake = l.wake_at().map(|w| ms(w - t0));
            r.eq(&at, "wake_at_ms", wake, opt_u(expect, "wake_at_ms", &at));
            r.eq(
                &at,
                "probe_after_ms",
                ms(l.probe_after()),
                u(expect, "probe_after_ms", &at),
            );
            let next = l.next_ping_at().map(|w| ms(w - t0));
            r.eq(
                &at,
                "next_ping_at_ms",
                next,
                opt_u(expect, "next_ping_at_ms", &at),
            );
        }
    }
}

fn timeouts_section(section: &Value, r: &mut Report) {
    for (at, input, expect) in cases(section, "timeouts") {
        match s(input, "kind", &at) {
            "attempt" => {
                let rtt =
                    opt_f(input, "rtt_ms", &at).map(|v| Duration::from_nanos((v * 1e6) as u64));
                let connect = Duration::from_millis(u(input, "connect_timeout_ms", &at));
                let got = ms(attempt_timeout(rtt, connect));
                r.eq(&at, "timeout_ms", got, u(expect, "timeout_ms", &at));
            }
            "request" => {
                let t0 = Instant::now();
                let got = request_timed_out(
                    after(t0, u(input, "sent_at_ms", &at)),
                    after(t0, u(input, "now_ms", &at)),
                    Duration::from_millis(u(input, "request_timeout_ms", &at)),
                );
                r.eq(&at, "timed_out", got, b(expect, "timed_out", &at));
            }
            other => r.fail(&at, format!("unknown kind {other}")),
        }
    }
}

fn race_kind(name: &str) -> Option<RaceKind> {
    match name {
        "quic" => Some(RaceKind::Quic),
        "websocket" => Some(RaceKind::WebSocket),
        _ => None,
    }
}

fn kind_name(k: RaceKind) -> &'static str {
    match k {
        RaceKind::Quic => "quic",
        RaceKind::WebSocket => "websocket",
    }
}

fn race_section(section: &Value, r: &mut Report) {
    for (at, input, expect) in cases(section, "race") {
        let kind = |key: &str| {
            let name = s(input, key, &at);
            race_kind(name).unwrap_or_else(|| panic!("{}: unknown kind {name}", at.0))
        };
        let attempts = || -> Vec<RaceAttempt> {
            list(input, "attempts", &at)
                .iter()
                .map(|a| RaceAttempt {
                    kind: race_kind(s(a, "kind", &at))
                        .unwrap_or_else(|| panic!("{}: unknown attempt kind in {a}", at.0)),
                    failed: b(a, "failed", &at),
                })
                .collect()
        };
        match s(input, "decision", &at) {
            "start" => {
                let delay = Duration::from_millis(u(input, "fallback_delay_ms", &at));
                let (start, ws_after) = race_start(b(input, "quic_available", &at), delay);
                r.eq(&at, "start", kind_name(start), s(expect, "start", &at));
                r.eq(
                    &at,
                    "websocket_after_ms",
                    ws_after.map(ms),
                    opt_u(expect, "websocket_after_ms", &at),
                );
            }
            "failed" => {
                let (start, lost) = race_failed(kind("failed"), &attempts());
                r.eq(
                    &at,
                    "start",
                    start.map(kind_name),
                    opt_s(expect, "start", &at),
                );
                r.eq(&at, "lost", lost, b(expect, "lost", &at));
            }
            "carries_first" => {
                let got = carries_first(&attempts());
                r.eq(&at, "carries_first", got, b(expect, "carries_first", &at));
            }
            "connected" => {
                let connected = kind("connected");
                let abandon: Vec<&str> = race_connected(connected, &attempts())
                    .into_iter()
                    .map(kind_name)
                    .collect();
                r.eq(&at, "use", kind_name(connected), s(expect, "use", &at));
                let want: Vec<&str> = list(expect, "abandon", &at)
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                r.eq(&at, "abandon", abandon, want);
            }
            other => r.fail(&at, format!("unknown decision {other}")),
        }
    }
}

/// The constants the Rust client has as its own defaults.
/// Rule 10: the move machine, step by step, on simulated time.
fn move_section(section: &Value, r: &mut Report) {
    fn conn(name: &str) -> Conn {
        match name {
            "old" => Conn::Old,
            "new" => Conn::New,
            _ => Conn::Current,
        }
    }
    fn conn_name(c: Conn) -> &'static str {
        match c {
            Conn::Current => "current",
            Conn::Old => "old",
            Conn::New => "new",
        }
    }
    fn action(a: MoveAction) -> &'static str {
        match a {
            MoveAction::None => "none",
            MoveAction::NotAMove => "not_a_move",
            MoveAction::OpenNew => "open_new",
            MoveAction::Ignore => "ignore",
            MoveAction::SendOnBoth => "send_on_both",
            MoveAction::UseNew => "use_new",
            MoveAction::CloseOld => "close_old",
            MoveAction::Reconnect => "reconnect",
        }
    }
    fn phase(p: MovePhase) -> &'static str {
        match p {
            MovePhase::Settled => "settled",
            MovePhase::Opening => "opening",
            MovePhase::Overlap => "overlap",
            MovePhase::OldOnly => "old_only",
            MovePhase::NewOnlyOpening => "new_only_opening",
        }
    }
    let t0 = Instant::now();
    for (_, _, steps) in scenarios(section, "move") {
        let mut m = Move::new();
        for (at, at_ms, input, expect) in steps {
            let now = after(t0, at_ms);
            let event = match s(input, "event", &at) {
                "redirect" => {
                    let reason = match s(input, "reason", &at) {
                        "session" => RedirectReason::Session,
                        "draining" => RedirectReason::Draining,
                        "moved" => RedirectReason::Moved,
                        "placement" => RedirectReason::Placement,
                        other => panic!("{}: reason {other}", at.0),
                    };
                    Some(MoveEvent::Redirect {
                        on: conn(s(input, "on", &at)),
                        reason,
                        unasked: b(input, "unasked", &at),
                        in_session: b(input, "in_session", &at),
                        version: u(input, "version", &at) as u16,
                    })
                }
                "new_welcome" => Some(MoveEvent::NewWelcome {
                    resumed: b(input, "resumed", &at),
                }),
                "new_failed" => Some(MoveEvent::NewFailed),
                "new_closed" => Some(MoveEvent::NewClosed),
                "old_closed" => Some(MoveEvent::OldClosed),
                "tick" => None,
                other => panic!("{}: event {other}", at.0),
            };
            let got = match event {
                Some(e) => m.on_event(e, now),
                None => m.tick(now),
            };
            let names = |l: &[Conn]| {
                l.iter()
                    .map(|c| conn_name(*c).to_string())
                    .collect::<Vec<_>>()
            };
            let want_list = |key: &str| {
                list(expect, key, &at)
                    .iter()
                    .map(|v| v.as_str().unwrap_or_default().to_string())
                    .collect::<Vec<_>>()
            };
            r.eq(&at, "action", action(got), s(expect, "action", &at));
            r.eq(&at, "phase", phase(m.phase()), s(expect, "phase", &at));
            r.eq(&at, "send_on", names(m.send_on()), want_list("send_on"));
            r.eq(
                &at,
                "take_from",
                names(m.take_from()),
                want_list("take_from"),
            );
            r.eq(
                &at,
                "control_on",
                m.control_on().map(conn_name),
                opt_s(expect, "control_on", &at),
            );
            r.eq(
                &at,
                "wake_at_ms",
                m.wake_at().map(|w| ms(w - t0)),
                opt_u(expect, "wake_at_ms", &at),
            );
        }
    }
}

fn constants(doc: &Value, r: &mut Report) {
    let at = At("constants".into());
    let c = field(doc, "constants", &at);
    let steps: Vec<u64> = list(c, "backoff_steps_ms", &at)
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    // The step is the delay at random → 1 (the bound), at random 0 its half.
    let ours: Vec<u64> = (0..steps.len() as u32)
        .map(|n| ms(backoff(n, 1.0)))
        .collect();
    r.eq(&at, "backoff_steps_ms", ours, steps);
    r.eq(
        &at,
        "ping_interval_ms",
        ms(PING_INTERVAL),
        u(c, "ping_interval_ms", &at),
    );
    r.eq(
        &at,
        "probe_interval_ms",
        ms(PROBE_INTERVAL),
        u(c, "probe_interval_ms", &at),
    );
    r.eq(
        &at,
        "probe_after_min_ms",
        ms(PROBE_AFTER_MIN),
        u(c, "probe_after_min_ms", &at),
    );
    r.eq(
        &at,
        "probe_after_before_sample_ms",
        ms(PROBE_AFTER_INITIAL),
        u(c, "probe_after_before_sample_ms", &at),
    );
    r.eq(
        &at,
        "live_timeout_initial_ms",
        ms(LIVE_TIMEOUT_INITIAL),
        u(c, "live_timeout_initial_ms", &at),
    );
    r.eq(
        &at,
        "live_timeout_min_ms",
        ms(LIVE_TIMEOUT_MIN),
        u(c, "live_timeout_min_ms", &at),
    );
    r.eq(
        &at,
        "live_timeout_max_ms",
        ms(LIVE_TIMEOUT_MAX),
        u(c, "live_timeout_max_ms", &at),
    );
    r.eq(
        &at,
        "max_redirects",
        u64::from(MAX_REDIRECTS),
        u(c, "max_redirects", &at),
    );
    r.eq(
        &at,
        "shutting_down_delay_ms",
        ms(SHUTTING_DOWN_DELAY),
        u(c, "shutting_down_delay_ms", &at),
    );
    let cfg = ClientConfig::new(
        SocketAddr::from(([127, 0, 0, 1], 4433)),
        Trust::CertHash([0; 32]),
    );
    r.eq(
        &at,
        "ClientConfig::ping_interval",
        ms(cfg.ping_interval),
        u(c, "ping_interval_ms", &at),
    );
    r.eq(
        &at,
        "ClientConfig::connect_timeout",
        ms(cfg.connect_timeout),
        u(c, "connect_timeout_ms", &at),
    );
    r.eq(
        &at,
        "ClientConfig::request_timeout",
        ms(cfg.request_timeout),
        u(c, "request_timeout_ms", &at),
    );
    r.eq(
        &at,
        "ClientConfig::fallback_delay",
        ms(cfg.fallback_delay),
        u(c, "race_fallback_delay_ms", &at),
    );
    r.eq(
        &at,
        "ClientConfig::reconnect_window",
        ms(cfg.reconnect_window),
        u(c, "reconnect_window_ms", &at),
    );
    // QUIC's idle timeout is only a backstop behind liveness.
    r.eq(
        &at,
        "ClientConfig::idle_timeout >= live_timeout_max_ms",
        ms(cfg.idle_timeout) >= u(c, "live_timeout_max_ms", &at),
        true,
    );
}

fn path_of(name: &str) -> Option<LinkPath> {
    LinkPath::ALL.into_iter().find(|p| p.as_str() == name)
}

/// Rule Q2: one tracker per scenario, every step's input, then the whole snapshot.
fn quality_section(section: &Value, r: &mut Report) {
    for (at, _, steps) in scenarios(section, "quality") {
        let sc = list(section, "scenarios", &at).iter().find(|sc| {
            at.0.ends_with(sc.get("name").and_then(Value::as_str).unwrap_or("\0"))
        });
        let created = sc.map(|sc| u(sc, "created_at_ms", &at)).unwrap_or(0);
        let mut t = QualityTracker::new(2, created);
        for (at, now, input, expect) in steps {
            let mut sent = None;
            match s(input, "event", &at) {
                "path" => match path_of(s(input, "path", &at)) {
                    Some(p) => t.path_changed(now, p),
                    None => {
                        r.fail(&at, format!("unknown path in {input}"));
                        continue;
                    }
                },
                "online" => t.online(now, b(input, "online", &at)),
                "tick" => sent = t.tick(now),
                "reply" => t.reply(now, u(input, "id", &at) as u32),
                "frame_in" => t.frame_in(now, u(input, "count", &at) as u32),
                "frame_out" => t.frame_out(now, u(input, "count", &at) as u32),
                "stale" => t.stale(now, u(input, "count", &at) as u32),
                other => {
                    r.fail(&at, format!("unknown input {other}"));
                    continue;
                }
            }
            let fired = t.poll_event(now);
            let snap = t.snapshot(now);
            if let Some(e) = &fired {
                r.eq(&at, "event snapshot", e, &snap);
            }
            r.eq(
                &at,
                "sent_id",
                sent.map(|e| u64::from(e.id)),
                opt_u(expect, "sent_id", &at),
            );
            if let Some(e) = sent {
                r.eq(
                    &at,
                    "sent kind",
                    e.kind,
                    protocol::report::EchoKind::Request,
                );
                r.eq(&at, "sent t", u64::from(e.t), now);
            }
            r.eq(&at, "path", snap.path.as_str(), s(expect, "path", &at));
            r.eq(&at, "path_ms", snap.path_ms, u(expect, "path_ms", &at));
            r.eq(&at, "grade", snap.grade.as_str(), s(expect, "grade", &at));
            let near = |got: Option<f64>, want: Option<f64>, tol: f64| match (got, want) {
                (Some(g), Some(w)) => (g - w).abs() <= tol,
                (g, w) => g.is_none() && w.is_none(),
            };
            let rtt = opt_f(expect, "rtt_ms", &at);
            r.eq(
                &at,
                &format!("rtt_ms (srtt {:?} within 0.51 of {rtt:?})", t.srtt()),
                near(t.srtt(), rtt, 0.51) && snap.rtt_ms.map(f64::from) == rtt,
                true,
            );
            let loss = f(expect, "loss_pct", &at);
            r.eq(
                &at,
                &format!("loss_pct ({} within 0.051 of {loss})", snap.loss_pct),
                near(Some(t.loss().unwrap_or(0.0)), Some(loss), 0.051)
                    && (snap.loss_pct - loss).abs() < 1e-9,
                true,
            );
            let jitter = opt_f(expect, "jitter_ms", &at);
            r.eq(
                &at,
                &format!("jitter_ms ({:?} within 0.051 of {jitter:?})", t.jitter()),
                near(t.jitter(), jitter, 0.051) && near(snap.jitter_ms, jitter, 1e-9),
                true,
            );
            r.eq(
                &at,
                "fps_in",
                u64::from(snap.fps_in),
                u(expect, "fps_in", &at),
            );
            r.eq(
                &at,
                "fps_out",
                u64::from(snap.fps_out),
                u(expect, "fps_out", &at),
            );
            r.eq(
                &at,
                "stale_dropped",
                snap.stale_dropped,
                u(expect, "stale_dropped", &at),
            );
            r.eq(&at, "event", fired.is_some(), b(expect, "event", &at));
            r.eq(
                &at,
                "wake_at_ms",
                t.poll_timeout(),
                opt_u(expect, "wake_at_ms", &at),
            );
        }
    }
}

/// Rule Q3: the RTT and loss buckets.
fn quality_buckets_section(section: &Value, r: &mut Report) {
    for (at, input, expect) in cases(section, "quality_buckets") {
        let want = u(expect, "bucket", &at);
        let got = if input.get("rtt_ms").is_some() {
            protocol::report::rtt_bucket(opt_f(input, "rtt_ms", &at))
        } else {
            protocol::report::loss_bucket(opt_f(input, "loss_pct", &at))
        };
        r.eq(&at, "bucket", u64::from(got), want);
    }
}

/// Rule Q3: when a report is due.
fn report_schedule_section(section: &Value, r: &mut Report) {
    for (at, input, expect) in cases(section, "report_schedule") {
        let got = report_due(
            u(input, "now_ms", &at),
            u(input, "last_report_at_ms", &at),
            b(input, "has_links", &at),
            b(input, "change_pending", &at),
            b(input, "queued", &at),
        );
        r.eq(&at, "due", got.due, b(expect, "due", &at));
        r.eq(
            &at,
            "wake_at_ms",
            got.wake_at,
            opt_u(expect, "wake_at_ms", &at),
        );
    }
}

/// Rules Q2 and Q3's constants.
fn quality_constants(c: &Value, r: &mut Report) {
    let at = At("constants (quality)".into());
    r.eq(
        &at,
        "move_old_close_after_ms",
        ms(OLD_CLOSE_AFTER),
        u(c, "move_old_close_after_ms", &at),
    );
    r.eq(
        &at,
        "echo_interval_ms",
        ECHO_INTERVAL_MS,
        u(c, "echo_interval_ms", &at),
    );
    r.eq(
        &at,
        "echo_interval_relay_ms",
        ECHO_INTERVAL_RELAY_MS,
        u(c, "echo_interval_relay_ms", &at),
    );
    r.eq(
        &at,
        "echo_timeout_ms",
        ECHO_TIMEOUT_MS,
        u(c, "echo_timeout_ms", &at),
    );
    r.eq(
        &at,
        "loss_window",
        LOSS_WINDOW as u64,
        u(c, "loss_window", &at),
    );
    r.eq(
        &at,
        "lost_after_ms",
        LOST_AFTER_MS,
        u(c, "lost_after_ms", &at),
    );
    r.eq(
        &at,
        "report_interval_ms",
        REPORT_INTERVAL_MS,
        u(c, "report_interval_ms", &at),
    );
    r.eq(
        &at,
        "report_min_gap_ms",
        REPORT_MIN_GAP_MS,
        u(c, "report_min_gap_ms", &at),
    );
    r.eq(
        &at,
        "report_max_queued",
        REPORT_MAX_QUEUED as u64,
        u(c, "report_max_queued", &at),
    );
    r.eq(
        &at,
        "grade_hysteresis",
        GRADE_HYSTERESIS,
        f(c, "grade_hysteresis", &at),
    );
    for (name, l) in [
        ("grade_excellent", GRADE_EXCELLENT),
        ("grade_good", GRADE_GOOD),
    ] {
        let g = field(c, name, &at);
        r.eq(
            &at,
            &format!("{name}.rtt_ms"),
            l.rtt_ms,
            f(g, "rtt_ms", &at),
        );
        r.eq(
            &at,
            &format!("{name}.loss_pct"),
            l.loss_pct,
            f(g, "loss_pct", &at),
        );
        r.eq(
            &at,
            &format!("{name}.jitter_ms"),
            l.jitter_ms,
            f(g, "jitter_ms", &at),
        );
    }
    let edges = |key| -> Vec<f64> { list(c, key, &at).iter().filter_map(Value::as_f64).collect() };
    r.eq(
        &at,
        "rtt_bucket_edges_ms",
        protocol::report::RTT_EDGES_MS.to_vec(),
        edges("rtt_bucket_edges_ms"),
    );
    r.eq(
        &at,
        "loss_bucket_edges_pct",
        protocol::report::LOSS_EDGES_PCT.to_vec(),
        edges("loss_bucket_edges_pct"),
    );
}

#[test]
fn the_rust_client_does_what_the_client_vectors_say() {
    let doc = vectors();
    let mut r = Report::default();
    constants(&doc, &mut r);
    quality_constants(field(&doc, "constants", &At("constants".into())), &mut r);
    let interval = Duration::from_millis(u(
        field(&doc, "constants", &At("constants".into())),
        "ping_interval_ms",
        &At("constants".into()),
    ));
    let sections = field(&doc, "sections", &At("file".into()))
        .as_object()
        .unwrap_or_else(|| panic!("sections is not an object"));
    let mut replayed = vec![];
    for (name, section) in sections {
        let at = At(name.clone());
        let for_rust = list(section, "clients", &at)
            .iter()
            .any(|c| c.as_str() == Some("rust"));
        if !for_rust {
            continue;
        }
        let before = r.checked;
        match name.as_str() {
            "backoff" => backoff_section(section, &mut r),
            "close" => close_section(section, &mut r),
            "errors" => errors_section(section, &mut r),
            "after_reconnect" => after_reconnect_section(section, &mut r),
            "resume_plan" => resume_plan_section(section, &mut r),
            "redirects" => redirects_section(section, &mut r),
            "rotation" => rotation_section(section, &mut r),
            "liveness" => liveness_section(section, interval, &mut r),
            "timeouts" => timeouts_section(section, &mut r),
            "race" => race_section(section, &mut r),
            "quality" => quality_section(section, &mut r),
            "quality_buckets" => quality_buckets_section(section, &mut r),
            "report_schedule" => report_schedule_section(section, &mut r),
            "move" => move_section(section, &mut r),
            other => {
                r.fail(
                    &at,
                    format!("section {other} names rust but has no Rust replay"),
                );
                continue;
            }
        }
        if r.checked == before {
            r.fail(&at, "no case replayed".into());
        }
        replayed.push(name.clone());
    }
    println!("replayed {} checks in {replayed:?}", r.checked);
    assert!(
        r.failures.is_empty(),
        "{} of {} checks differ from docs/client-vectors.json:\n{}",
        r.failures.len(),
        r.checked,
        r.failures.join("\n")
    );
    for must in [
        "backoff",
        "close",
        "errors",
        "after_reconnect",
        "resume_plan",
        "redirects",
        "rotation",
        "liveness",
        "timeouts",
        "race",
        "quality",
        "quality_buckets",
        "report_schedule",
        "move",
    ] {
        assert!(
            replayed.iter().any(|n| n == must),
            "section {must} was not replayed"
        );
    }
}
