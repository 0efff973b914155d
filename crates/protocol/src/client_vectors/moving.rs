//! The `move` section: PROTOCOL.md §12 rule 10, following a session that the
//! server moves to another node (§11, "Moving a session").
//!
//! Why a file of its own: it is the one rule that holds two connections at
//! once, and its table is easier to check against §11 when it stands alone.
//! Like the rest of the client vectors, every expected value is a literal,
//! worked out from the rule's table, not by running any client.

use super::{step, timed, ALL, J};

/// A step's input: (event, on, reason, unasked, in_session, version, resumed).
type In = (
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<bool>,
    Option<bool>,
    Option<i64>,
    Option<bool>,
);

/// A step's expectation: (action, phase, send_on, take_from, control_on, wake_at_ms).
type Out = (
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    Option<&'static str>,
    Option<i64>,
);

const CUR: &[&str] = &["current"];
const OLD: &[&str] = &["old"];
const BOTH: &[&str] = &["old", "new"];
const NONE: &[&str] = &[];

/// An unasked `Redirect(Placement)` in a session on a version-5 connection:
/// the start of every move.
const MOVE: In = (
    "redirect",
    Some("current"),
    Some("placement"),
    Some(true),
    Some(true),
    Some(5),
    None,
);

fn ev(event: &'static str) -> In {
    (event, None, None, None, None, None, None)
}

fn welcome(resumed: bool) -> In {
    ("new_welcome", None, None, None, None, None, Some(resumed))
}

fn redirect(
    on: &'static str,
    reason: &'static str,
    unasked: bool,
    in_session: bool,
    version: i64,
) -> In {
    (
        "redirect",
        Some(on),
        Some(reason),
        Some(unasked),
        Some(in_session),
        Some(version),
        None,
    )
}

fn scenario(name: &str, steps: &[(i64, In, Out)]) -> J {
    let steps = steps
        .iter()
        .map(|&(at, i, o)| {
            let list = |l: &[&str]| l.iter().map(|s| J::from(*s)).collect::<Vec<_>>();
            step(
                at,
                obj! {
                    "event" => i.0,
                    "on" => i.1,
                    "reason" => i.2,
                    "unasked" => i.3,
                    "in_session" => i.4,
                    "version" => i.5,
                    "resumed" => i.6,
                },
                obj! {
                    "action" => o.0,
                    "phase" => o.1,
                    "send_on" => list(o.2),
                    "take_from" => list(o.3),
                    "control_on" => o.4,
                    "wake_at_ms" => o.5,
                },
            )
        })
        .collect::<Vec<_>>();
    obj! { "name" => name, "steps" => steps }
}

/// Rule 10, step by step.
#[rustfmt::skip]
pub(super) fn moving() -> J {
    let settled: Out = ("none", "settled", CUR, CUR, Some("current"), None);
    let not_a_move: Out = ("not_a_move", "settled", CUR, CUR, Some("current"), None);
    let opening: Out = ("open_new", "opening", OLD, OLD, Some("new"), None);
    let scenarios = vec![
        scenario(
            "a move: the new node resumes the seat, relay frames go on both connections until the old node closes the old one; the old one's last words are ignored",
            &[
                (0, MOVE, opening),
                (180, welcome(true), ("send_on_both", "overlap", BOTH, BOTH, Some("new"), Some(10_000))),
                (200, redirect("old", "draining", true, true, 5), ("ignore", "overlap", BOTH, BOTH, Some("new"), Some(10_000))),
                (1500, ev("tick"), ("none", "overlap", BOTH, BOTH, Some("new"), Some(10_000))),
                (3000, ev("old_closed"), ("use_new", "settled", CUR, CUR, Some("current"), None)),
                (3100, ev("tick"), settled),
            ],
        ),
        scenario(
            "not a move: an asked Placement, a version-4 connection, no session, or another reason is a redirect as rules 4 and 5 say",
            &[
                (0, redirect("current", "placement", false, true, 5), not_a_move),
                (10, redirect("current", "placement", true, true, 4), not_a_move),
                (20, redirect("current", "placement", true, false, 5), not_a_move),
                (30, redirect("current", "draining", true, true, 5), not_a_move),
                (40, redirect("current", "moved", true, true, 5), not_a_move),
                (50, redirect("current", "session", false, true, 5), not_a_move),
                (60, ev("old_closed"), settled),
                (70, ev("tick"), settled),
            ],
        ),
        scenario(
            "the new node cannot be reached: stay on the old connection until it closes, then reconnect as after any loss",
            &[
                (0, MOVE, opening),
                (2500, redirect("old", "placement", true, true, 5), ("ignore", "opening", OLD, OLD, Some("new"), None)),
                (3000, ev("new_failed"), ("none", "old_only", OLD, OLD, None, Some(10_000))),
                (3001, ev("tick"), ("none", "old_only", OLD, OLD, None, Some(10_000))),
                (3200, ev("old_closed"), ("reconnect", "settled", CUR, CUR, Some("current"), None)),
            ],
        ),
        scenario(
            "the old node closes before the new connection is up: wait for it, then carry on there",
            &[
                (0, MOVE, opening),
                (1500, ev("old_closed"), ("none", "new_only_opening", NONE, NONE, Some("new"), None)),
                (1700, welcome(true), ("use_new", "settled", CUR, CUR, Some("current"), None)),
            ],
        ),
        scenario(
            "the old node closes first and the new connection fails: reconnect",
            &[
                (0, MOVE, opening),
                (1500, ev("old_closed"), ("none", "new_only_opening", NONE, NONE, Some("new"), None)),
                (4000, ev("new_failed"), ("reconnect", "settled", CUR, CUR, Some("current"), None)),
            ],
        ),
        scenario(
            "the old node never closes the old connection: the client closes it itself 10 s after the redirect",
            &[
                (500, MOVE, opening),
                (600, welcome(true), ("send_on_both", "overlap", BOTH, BOTH, Some("new"), Some(10_500))),
                (10_499, ev("tick"), ("none", "overlap", BOTH, BOTH, Some("new"), Some(10_500))),
                (10_500, ev("tick"), ("close_old", "settled", CUR, CUR, Some("current"), None)),
                (10_600, ev("old_closed"), settled),
            ],
        ),
        scenario(
            "the new connection failed and the old one never closes (its node went silent): 10 s after the redirect the client closes it and reconnects",
            &[
                (200, MOVE, opening),
                (2200, ev("new_failed"), ("none", "old_only", OLD, OLD, None, Some(10_200))),
                (10_199, ev("tick"), ("none", "old_only", OLD, OLD, None, Some(10_200))),
                (10_200, ev("tick"), ("reconnect", "settled", CUR, CUR, Some("current"), None)),
                (10_300, ev("old_closed"), settled),
            ],
        ),
        scenario(
            "the new connection is lost during the overlap: stay on the old one until it closes, then reconnect",
            &[
                (0, MOVE, opening),
                (100, welcome(true), ("send_on_both", "overlap", BOTH, BOTH, Some("new"), Some(10_000))),
                (800, ev("new_closed"), ("none", "old_only", OLD, OLD, None, Some(10_000))),
                (3000, ev("old_closed"), ("reconnect", "settled", CUR, CUR, Some("current"), None)),
            ],
        ),
        scenario(
            "the new node does not hold the seat: close the old connection and rejoin by code on the new one (rule 4)",
            &[
                (0, MOVE, opening),
                (100, welcome(false), ("close_old", "settled", CUR, CUR, Some("current"), None)),
            ],
        ),
        scenario(
            "the new node redirects in the overlap: close the old connection and follow that redirect as usual",
            &[
                (0, MOVE, opening),
                (100, welcome(true), ("send_on_both", "overlap", BOTH, BOTH, Some("new"), Some(10_000))),
                (400, redirect("new", "draining", true, true, 5), ("close_old", "settled", CUR, CUR, Some("current"), None)),
            ],
        ),
        scenario(
            "the new node redirects the resume itself (the session is elsewhere): close the old connection and follow it",
            &[
                (0, MOVE, opening),
                (90, redirect("new", "session", false, true, 5), ("close_old", "settled", CUR, CUR, Some("current"), None)),
            ],
        ),
        scenario(
            "the old node closes, then the new node's welcome says the seat is gone: carry on on the new connection and rejoin there",
            &[
                (0, MOVE, opening),
                (1000, ev("old_closed"), ("none", "new_only_opening", NONE, NONE, Some("new"), None)),
                (1200, welcome(false), ("use_new", "settled", CUR, CUR, Some("current"), None)),
            ],
        ),
    ];
    timed(
        ALL,
        "\u{a7}12 rule 10: following a session the server moves (\u{a7}11, Moving a session): on an unasked Redirect(Placement) in a session on a version-5 connection, open a connection to the named node with the resume token and keep the old one; relay frames on both from the new node's Welcome until the old one closes",
        scenarios,
    )
}
