//! The `quality` and `report_schedule` sections: PROTOCOL.md §14, rules Q1–Q3.
//!
//! Why a file of its own: these are the longest timed scenarios of the
//! client vectors, and like the rest their expected values are literals,
//! worked out apart from any client (nothing here runs a tracker).

use super::{step, table, timed, ALL, J};

/// A step's input argument.
#[derive(Clone, Copy)]
enum A {
    None,
    Path(&'static str),
    Online(bool),
    Id(i64),
    Count(i64),
}

/// One step: (at_ms, event, argument, sent_id, path, path_ms, grade, rtt_ms,
/// loss_pct, jitter_ms, fps_in, fps_out, stale_dropped, event fired, wake_at_ms).
type Q = (
    i64,
    &'static str,
    A,
    Option<i64>,
    &'static str,
    i64,
    &'static str,
    Option<i64>,
    f64,
    Option<f64>,
    i64,
    i64,
    i64,
    bool,
    Option<i64>,
);

fn quality_scenario(name: &str, steps: &[Q]) -> J {
    let steps = steps
        .iter()
        .map(
            |&(
                at,
                event,
                arg,
                sent,
                path,
                path_ms,
                grade,
                rtt,
                loss,
                jitter,
                fps_in,
                fps_out,
                stale,
                fired,
                wake,
            )| {
                let input = match arg {
                    A::None => obj! { "event" => event },
                    A::Path(p) => obj! { "event" => event, "path" => p },
                    A::Online(b) => obj! { "event" => event, "online" => b },
                    A::Id(id) => obj! { "event" => event, "id" => id },
                    A::Count(n) => obj! { "event" => event, "count" => n },
                };
                step(
                    at,
                    input,
                    obj! {
                        "sent_id" => sent,
                        "path" => path,
                        "path_ms" => path_ms,
                        "grade" => grade,
                        "rtt_ms" => rtt,
                        "loss_pct" => loss,
                        "jitter_ms" => jitter,
                        "fps_in" => fps_in,
                        "fps_out" => fps_out,
                        "stale_dropped" => stale,
                        "event" => fired,
                        "wake_at_ms" => wake,
                    },
                )
            },
        )
        .collect::<Vec<_>>();
    obj! { "name" => name, "created_at_ms" => 0, "steps" => steps }
}

/// Rule Q2: the per-peer tracker, step by step.
#[rustfmt::skip]
pub(super) fn quality() -> J {
    let scenarios = vec![
        quality_scenario(
            "a direct path at about 40 ms: unknown until the first echo answers, then excellent; frames/s from the last full second",
            &[
                (0, "path", A::Path("direct"), None, "direct", 0, "unknown", None, 0.0, None, 0, 0, 0, true, Some(0)),
                (0, "tick", A::None, Some(1), "direct", 0, "unknown", None, 0.0, None, 0, 0, 0, false, Some(500)),
                (40, "reply", A::Id(1), None, "direct", 40, "excellent", Some(40), 0.0, Some(0.0), 0, 0, 0, true, Some(500)),
                (500, "tick", A::None, Some(2), "direct", 500, "excellent", Some(40), 0.0, Some(0.0), 0, 0, 0, false, Some(1000)),
                (542, "reply", A::Id(2), None, "direct", 542, "excellent", Some(40), 0.0, Some(0.1), 0, 0, 0, false, Some(1000)),
                (1000, "tick", A::None, Some(3), "direct", 1000, "excellent", Some(40), 0.0, Some(0.1), 0, 0, 0, false, Some(1500)),
                (1038, "reply", A::Id(3), None, "direct", 1038, "excellent", Some(40), 0.0, Some(0.4), 0, 0, 0, false, Some(1500)),
                (1100, "frame_in", A::Count(3), None, "direct", 1100, "excellent", Some(40), 0.0, Some(0.4), 0, 0, 0, false, Some(1500)),
                (1200, "frame_out", A::Count(2), None, "direct", 1200, "excellent", Some(40), 0.0, Some(0.4), 0, 0, 0, false, Some(1500)),
                (1500, "tick", A::None, Some(4), "direct", 1500, "excellent", Some(40), 0.0, Some(0.4), 0, 0, 0, false, Some(2000)),
                (1541, "reply", A::Id(4), None, "direct", 1541, "excellent", Some(40), 0.0, Some(0.5), 0, 0, 0, false, Some(2000)),
                (2000, "tick", A::None, Some(5), "direct", 2000, "excellent", Some(40), 0.0, Some(0.5), 3, 2, 0, false, Some(2500)),
                (2010, "stale", A::Count(1), None, "direct", 2010, "excellent", Some(40), 0.0, Some(0.5), 3, 2, 1, false, Some(2500)),
                (2040, "reply", A::Id(5), None, "direct", 2040, "excellent", Some(40), 0.0, Some(0.6), 3, 2, 1, false, Some(2500)),
                (3000, "frame_in", A::Count(1), None, "direct", 3000, "excellent", Some(40), 0.0, Some(0.6), 0, 0, 1, false, Some(2500)),
                (3200, "frame_in", A::Count(1), None, "direct", 3200, "excellent", Some(40), 0.0, Some(0.6), 0, 0, 1, false, Some(2500)),
            ],
        ),
        quality_scenario(
            "the relay at 120 ms, an echo every 2000 ms, is good; one lost echo is 33 % loss, poor; good again only once loss is under 6.4 % (1 in 16), not at 7.7 %",
            &[
                (0, "path", A::Path("relay"), None, "relay", 0, "unknown", None, 0.0, None, 0, 0, 0, true, Some(0)),
                (0, "tick", A::None, Some(1), "relay", 0, "unknown", None, 0.0, None, 0, 0, 0, false, Some(2000)),
                (120, "reply", A::Id(1), None, "relay", 120, "good", Some(120), 0.0, Some(0.0), 0, 0, 0, true, Some(2000)),
                (2000, "tick", A::None, Some(2), "relay", 2000, "good", Some(120), 0.0, Some(0.0), 0, 0, 0, false, Some(4000)),
                (2120, "reply", A::Id(2), None, "relay", 2120, "good", Some(120), 0.0, Some(0.0), 0, 0, 0, false, Some(4000)),
                (4000, "tick", A::None, Some(3), "relay", 4000, "good", Some(120), 0.0, Some(0.0), 0, 0, 0, false, Some(6000)),
                (6000, "tick", A::None, Some(4), "relay", 6000, "poor", Some(120), 33.3, Some(0.0), 0, 0, 0, true, Some(7000)),
                (6120, "reply", A::Id(4), None, "relay", 6120, "poor", Some(120), 25.0, Some(0.0), 0, 0, 0, false, Some(8000)),
                (8000, "tick", A::None, Some(5), "relay", 8000, "poor", Some(120), 25.0, Some(0.0), 0, 0, 0, false, Some(10000)),
                (8120, "reply", A::Id(5), None, "relay", 8120, "poor", Some(120), 20.0, Some(0.0), 0, 0, 0, false, Some(10000)),
                (10000, "tick", A::None, Some(6), "relay", 10000, "poor", Some(120), 20.0, Some(0.0), 0, 0, 0, false, Some(12000)),
                (10120, "reply", A::Id(6), None, "relay", 10120, "poor", Some(120), 16.7, Some(0.0), 0, 0, 0, false, Some(12000)),
                (12000, "tick", A::None, Some(7), "relay", 12000, "poor", Some(120), 16.7, Some(0.0), 0, 0, 0, false, Some(14000)),
                (12120, "reply", A::Id(7), None, "relay", 12120, "poor", Some(120), 14.3, Some(0.0), 0, 0, 0, false, Some(14000)),
                (14000, "tick", A::None, Some(8), "relay", 14000, "poor", Some(120), 14.3, Some(0.0), 0, 0, 0, false, Some(16000)),
                (14120, "reply", A::Id(8), None, "relay", 14120, "poor", Some(120), 12.5, Some(0.0), 0, 0, 0, false, Some(16000)),
                (16000, "tick", A::None, Some(9), "relay", 16000, "poor", Some(120), 12.5, Some(0.0), 0, 0, 0, false, Some(18000)),
                (16120, "reply", A::Id(9), None, "relay", 16120, "poor", Some(120), 11.1, Some(0.0), 0, 0, 0, false, Some(18000)),
                (18000, "tick", A::None, Some(10), "relay", 18000, "poor", Some(120), 11.1, Some(0.0), 0, 0, 0, false, Some(20000)),
                (18120, "reply", A::Id(10), None, "relay", 18120, "poor", Some(120), 10.0, Some(0.0), 0, 0, 0, false, Some(20000)),
                (20000, "tick", A::None, Some(11), "relay", 20000, "poor", Some(120), 10.0, Some(0.0), 0, 0, 0, false, Some(22000)),
                (20120, "reply", A::Id(11), None, "relay", 20120, "poor", Some(120), 9.1, Some(0.0), 0, 0, 0, false, Some(22000)),
                (22000, "tick", A::None, Some(12), "relay", 22000, "poor", Some(120), 9.1, Some(0.0), 0, 0, 0, false, Some(24000)),
                (22120, "reply", A::Id(12), None, "relay", 22120, "poor", Some(120), 8.3, Some(0.0), 0, 0, 0, false, Some(24000)),
                (24000, "tick", A::None, Some(13), "relay", 24000, "poor", Some(120), 8.3, Some(0.0), 0, 0, 0, false, Some(26000)),
                (24120, "reply", A::Id(13), None, "relay", 24120, "poor", Some(120), 7.7, Some(0.0), 0, 0, 0, false, Some(26000)),
                (26000, "tick", A::None, Some(14), "relay", 26000, "poor", Some(120), 7.7, Some(0.0), 0, 0, 0, false, Some(28000)),
                (26120, "reply", A::Id(14), None, "relay", 26120, "poor", Some(120), 7.1, Some(0.0), 0, 0, 0, false, Some(28000)),
                (28000, "tick", A::None, Some(15), "relay", 28000, "poor", Some(120), 7.1, Some(0.0), 0, 0, 0, false, Some(30000)),
                (28120, "reply", A::Id(15), None, "relay", 28120, "poor", Some(120), 6.7, Some(0.0), 0, 0, 0, false, Some(30000)),
                (30000, "tick", A::None, Some(16), "relay", 30000, "poor", Some(120), 6.7, Some(0.0), 0, 0, 0, false, Some(32000)),
                (30120, "reply", A::Id(16), None, "relay", 30120, "good", Some(120), 6.3, Some(0.0), 0, 0, 0, true, Some(32000)),
                (32000, "tick", A::None, Some(17), "relay", 32000, "good", Some(120), 6.3, Some(0.0), 0, 0, 0, false, Some(34000)),
                (32120, "reply", A::Id(17), None, "relay", 32120, "good", Some(120), 5.9, Some(0.0), 0, 0, 0, false, Some(34000)),
                (34000, "tick", A::None, Some(18), "relay", 34000, "good", Some(120), 5.9, Some(0.0), 0, 0, 0, false, Some(36000)),
                (34120, "reply", A::Id(18), None, "relay", 34120, "good", Some(120), 5.6, Some(0.0), 0, 0, 0, false, Some(36000)),
            ],
        ),
        quality_scenario(
            "hysteresis: past 100 ms the grade drops to good at once, and comes back to excellent only under 80 ms and 16 ms jitter",
            &[
                (0, "path", A::Path("direct"), None, "direct", 0, "unknown", None, 0.0, None, 0, 0, 0, true, Some(0)),
                (0, "tick", A::None, Some(1), "direct", 0, "unknown", None, 0.0, None, 0, 0, 0, false, Some(500)),
                (90, "reply", A::Id(1), None, "direct", 90, "excellent", Some(90), 0.0, Some(0.0), 0, 0, 0, true, Some(500)),
                (500, "tick", A::None, Some(2), "direct", 500, "excellent", Some(90), 0.0, Some(0.0), 0, 0, 0, false, Some(1000)),
                (590, "reply", A::Id(2), None, "direct", 590, "excellent", Some(90), 0.0, Some(0.0), 0, 0, 0, false, Some(1000)),
                (1000, "tick", A::None, Some(3), "direct", 1000, "excellent", Some(90), 0.0, Some(0.0), 0, 0, 0, false, Some(1500)),
                (1090, "reply", A::Id(3), None, "direct", 1090, "excellent", Some(90), 0.0, Some(0.0), 0, 0, 0, false, Some(1500)),
                (1500, "tick", A::None, Some(4), "direct", 1500, "excellent", Some(90), 0.0, Some(0.0), 0, 0, 0, false, Some(2000)),
                (1630, "reply", A::Id(4), None, "direct", 1630, "excellent", Some(95), 0.0, Some(2.5), 0, 0, 0, false, Some(2000)),
                (2000, "tick", A::None, Some(5), "direct", 2000, "excellent", Some(95), 0.0, Some(2.5), 0, 0, 0, false, Some(2500)),
                (2130, "reply", A::Id(5), None, "direct", 2130, "excellent", Some(99), 0.0, Some(2.3), 0, 0, 0, false, Some(2500)),
                (2500, "tick", A::None, Some(6), "direct", 2500, "excellent", Some(99), 0.0, Some(2.3), 0, 0, 0, false, Some(3000)),
                (2630, "reply", A::Id(6), None, "direct", 2630, "good", Some(103), 0.0, Some(2.2), 0, 0, 0, true, Some(3000)),
                (3000, "tick", A::None, Some(7), "direct", 3000, "good", Some(103), 0.0, Some(2.2), 0, 0, 0, false, Some(3500)),
                (3130, "reply", A::Id(7), None, "direct", 3130, "good", Some(107), 0.0, Some(2.1), 0, 0, 0, false, Some(3500)),
                (3500, "tick", A::None, Some(8), "direct", 3500, "good", Some(107), 0.0, Some(2.1), 0, 0, 0, false, Some(4000)),
                (3630, "reply", A::Id(8), None, "direct", 3630, "good", Some(109), 0.0, Some(1.9), 0, 0, 0, false, Some(4000)),
                (4000, "tick", A::None, Some(9), "direct", 4000, "good", Some(109), 0.0, Some(1.9), 0, 0, 0, false, Some(4500)),
                (4130, "reply", A::Id(9), None, "direct", 4130, "good", Some(112), 0.0, Some(1.8), 0, 0, 0, false, Some(4500)),
                (4500, "tick", A::None, Some(10), "direct", 4500, "good", Some(112), 0.0, Some(1.8), 0, 0, 0, false, Some(5000)),
                (4590, "reply", A::Id(10), None, "direct", 4590, "good", Some(109), 0.0, Some(4.2), 0, 0, 0, false, Some(5000)),
                (5000, "tick", A::None, Some(11), "direct", 5000, "good", Some(109), 0.0, Some(4.2), 0, 0, 0, false, Some(5500)),
                (5090, "reply", A::Id(11), None, "direct", 5090, "good", Some(107), 0.0, Some(3.9), 0, 0, 0, false, Some(5500)),
                (5500, "tick", A::None, Some(12), "direct", 5500, "good", Some(107), 0.0, Some(3.9), 0, 0, 0, false, Some(6000)),
                (5590, "reply", A::Id(12), None, "direct", 5590, "good", Some(105), 0.0, Some(3.7), 0, 0, 0, false, Some(6000)),
                (6000, "tick", A::None, Some(13), "direct", 6000, "good", Some(105), 0.0, Some(3.7), 0, 0, 0, false, Some(6500)),
                (6090, "reply", A::Id(13), None, "direct", 6090, "good", Some(103), 0.0, Some(3.5), 0, 0, 0, false, Some(6500)),
                (6500, "tick", A::None, Some(14), "direct", 6500, "good", Some(103), 0.0, Some(3.5), 0, 0, 0, false, Some(7000)),
                (6590, "reply", A::Id(14), None, "direct", 6590, "good", Some(101), 0.0, Some(3.2), 0, 0, 0, false, Some(7000)),
                (7000, "tick", A::None, Some(15), "direct", 7000, "good", Some(101), 0.0, Some(3.2), 0, 0, 0, false, Some(7500)),
                (7090, "reply", A::Id(15), None, "direct", 7090, "good", Some(100), 0.0, Some(3.0), 0, 0, 0, false, Some(7500)),
                (7500, "tick", A::None, Some(16), "direct", 7500, "good", Some(100), 0.0, Some(3.0), 0, 0, 0, false, Some(8000)),
                (7560, "reply", A::Id(16), None, "direct", 7560, "good", Some(95), 0.0, Some(4.7), 0, 0, 0, false, Some(8000)),
                (8000, "tick", A::None, Some(17), "direct", 8000, "good", Some(95), 0.0, Some(4.7), 0, 0, 0, false, Some(8500)),
                (8060, "reply", A::Id(17), None, "direct", 8060, "good", Some(91), 0.0, Some(4.4), 0, 0, 0, false, Some(8500)),
                (8500, "tick", A::None, Some(18), "direct", 8500, "good", Some(91), 0.0, Some(4.4), 0, 0, 0, false, Some(9000)),
                (8560, "reply", A::Id(18), None, "direct", 8560, "good", Some(87), 0.0, Some(4.2), 0, 0, 0, false, Some(9000)),
                (9000, "tick", A::None, Some(19), "direct", 9000, "good", Some(87), 0.0, Some(4.2), 0, 0, 0, false, Some(9500)),
                (9060, "reply", A::Id(19), None, "direct", 9060, "good", Some(83), 0.0, Some(3.9), 0, 0, 0, false, Some(9500)),
                (9500, "tick", A::None, Some(20), "direct", 9500, "good", Some(83), 0.0, Some(3.9), 0, 0, 0, false, Some(10000)),
                (9560, "reply", A::Id(20), None, "direct", 9560, "good", Some(80), 0.0, Some(3.6), 0, 0, 0, false, Some(10000)),
                (10000, "tick", A::None, Some(21), "direct", 10000, "good", Some(80), 0.0, Some(3.6), 0, 0, 0, false, Some(10500)),
                (10060, "reply", A::Id(21), None, "direct", 10060, "excellent", Some(78), 0.0, Some(3.4), 0, 0, 0, true, Some(10500)),
                (10500, "tick", A::None, Some(22), "direct", 10500, "excellent", Some(78), 0.0, Some(3.4), 0, 0, 0, false, Some(11000)),
                (10560, "reply", A::Id(22), None, "direct", 10560, "excellent", Some(76), 0.0, Some(3.2), 0, 0, 0, false, Some(11000)),
                (11000, "tick", A::None, Some(23), "direct", 11000, "excellent", Some(76), 0.0, Some(3.2), 0, 0, 0, false, Some(11500)),
                (11060, "reply", A::Id(23), None, "direct", 11060, "excellent", Some(74), 0.0, Some(3.0), 0, 0, 0, false, Some(11500)),
                (11500, "tick", A::None, Some(24), "direct", 11500, "excellent", Some(74), 0.0, Some(3.0), 0, 0, 0, false, Some(12000)),
                (11560, "reply", A::Id(24), None, "direct", 11560, "excellent", Some(72), 0.0, Some(2.8), 0, 0, 0, false, Some(12000)),
                (12000, "tick", A::None, Some(25), "direct", 12000, "excellent", Some(72), 0.0, Some(2.8), 0, 0, 0, false, Some(12500)),
                (12060, "reply", A::Id(25), None, "direct", 12060, "excellent", Some(70), 0.0, Some(2.6), 0, 0, 0, false, Some(12500)),
            ],
        ),
        quality_scenario(
            "silence: no answer for 3000 ms is lost; the first answer brings back the measured grade with no hysteresis",
            &[
                (0, "path", A::Path("turn"), None, "turn", 0, "unknown", None, 0.0, None, 0, 0, 0, true, Some(0)),
                (0, "tick", A::None, Some(1), "turn", 0, "unknown", None, 0.0, None, 0, 0, 0, false, Some(500)),
                (40, "reply", A::Id(1), None, "turn", 40, "excellent", Some(40), 0.0, Some(0.0), 0, 0, 0, true, Some(500)),
                (500, "tick", A::None, Some(2), "turn", 500, "excellent", Some(40), 0.0, Some(0.0), 0, 0, 0, false, Some(1000)),
                (540, "reply", A::Id(2), None, "turn", 540, "excellent", Some(40), 0.0, Some(0.0), 0, 0, 0, false, Some(1000)),
                (1000, "tick", A::None, Some(3), "turn", 1000, "excellent", Some(40), 0.0, Some(0.0), 0, 0, 0, false, Some(1500)),
                (1040, "reply", A::Id(3), None, "turn", 1040, "excellent", Some(40), 0.0, Some(0.0), 0, 0, 0, false, Some(1500)),
                (1500, "tick", A::None, Some(4), "turn", 1500, "excellent", Some(40), 0.0, Some(0.0), 0, 0, 0, false, Some(2000)),
                (1540, "reply", A::Id(4), None, "turn", 1540, "excellent", Some(40), 0.0, Some(0.0), 0, 0, 0, false, Some(2000)),
                (2000, "tick", A::None, Some(5), "turn", 2000, "excellent", Some(40), 0.0, Some(0.0), 0, 0, 0, false, Some(2500)),
                (2500, "tick", A::None, Some(6), "turn", 2500, "excellent", Some(40), 0.0, Some(0.0), 0, 0, 0, false, Some(3000)),
                (3000, "tick", A::None, Some(7), "turn", 3000, "excellent", Some(40), 0.0, Some(0.0), 0, 0, 0, false, Some(3500)),
                (3500, "tick", A::None, Some(8), "turn", 3500, "excellent", Some(40), 0.0, Some(0.0), 0, 0, 0, false, Some(4000)),
                (4000, "tick", A::None, Some(9), "turn", 4000, "poor", Some(40), 20.0, Some(0.0), 0, 0, 0, true, Some(4500)),
                (4500, "tick", A::None, Some(10), "turn", 4500, "poor", Some(40), 33.3, Some(0.0), 0, 0, 0, false, Some(5000)),
                (5000, "tick", A::None, Some(11), "turn", 5000, "lost", Some(40), 42.9, Some(0.0), 0, 0, 0, true, Some(5500)),
                (5500, "tick", A::None, Some(12), "turn", 5500, "lost", Some(40), 50.0, Some(0.0), 0, 0, 0, false, Some(6000)),
                (6000, "tick", A::None, Some(13), "turn", 6000, "lost", Some(40), 55.6, Some(0.0), 0, 0, 0, false, Some(6500)),
                (6100, "reply", A::Id(12), None, "turn", 6100, "poor", Some(110), 50.0, Some(35.0), 0, 0, 0, true, Some(6500)),
                (6200, "tick", A::None, None, "turn", 6200, "poor", Some(110), 50.0, Some(35.0), 0, 0, 0, false, Some(6500)),
            ],
        ),
        quality_scenario(
            "a path change resets the estimator: a late answer to an echo sent on the relay is ignored; the direct path starts unknown",
            &[
                (0, "path", A::Path("relay"), None, "relay", 0, "unknown", None, 0.0, None, 0, 0, 0, true, Some(0)),
                (0, "tick", A::None, Some(1), "relay", 0, "unknown", None, 0.0, None, 0, 0, 0, false, Some(2000)),
                (150, "reply", A::Id(1), None, "relay", 150, "good", Some(150), 0.0, Some(0.0), 0, 0, 0, true, Some(2000)),
                (2000, "tick", A::None, Some(2), "relay", 2000, "good", Some(150), 0.0, Some(0.0), 0, 0, 0, false, Some(4000)),
                (2150, "reply", A::Id(2), None, "relay", 2150, "good", Some(150), 0.0, Some(0.0), 0, 0, 0, false, Some(4000)),
                (4000, "tick", A::None, Some(3), "relay", 4000, "good", Some(150), 0.0, Some(0.0), 0, 0, 0, false, Some(6000)),
                (4200, "path", A::Path("direct"), None, "direct", 0, "unknown", None, 0.0, None, 0, 0, 0, true, Some(4200)),
                (4200, "tick", A::None, Some(4), "direct", 0, "unknown", None, 0.0, None, 0, 0, 0, false, Some(4700)),
                (4230, "reply", A::Id(4), None, "direct", 30, "excellent", Some(30), 0.0, Some(0.0), 0, 0, 0, true, Some(4700)),
                (4250, "reply", A::Id(3), None, "direct", 50, "excellent", Some(30), 0.0, Some(0.0), 0, 0, 0, false, Some(4700)),
                (4700, "tick", A::None, Some(5), "direct", 500, "excellent", Some(30), 0.0, Some(0.0), 0, 0, 0, false, Some(5200)),
                (4730, "reply", A::Id(5), None, "direct", 530, "excellent", Some(30), 0.0, Some(0.0), 0, 0, 0, false, Some(5200)),
            ],
        ),
        quality_scenario(
            "an offline peer is lost at once and sent no echo; back online, the echo restarts and the grade is measured again",
            &[
                (0, "path", A::Path("direct"), None, "direct", 0, "unknown", None, 0.0, None, 0, 0, 0, true, Some(0)),
                (0, "tick", A::None, Some(1), "direct", 0, "unknown", None, 0.0, None, 0, 0, 0, false, Some(500)),
                (30, "reply", A::Id(1), None, "direct", 30, "excellent", Some(30), 0.0, Some(0.0), 0, 0, 0, true, Some(500)),
                (500, "tick", A::None, Some(2), "direct", 500, "excellent", Some(30), 0.0, Some(0.0), 0, 0, 0, false, Some(1000)),
                (530, "reply", A::Id(2), None, "direct", 530, "excellent", Some(30), 0.0, Some(0.0), 0, 0, 0, false, Some(1000)),
                (1000, "online", A::Online(false), None, "direct", 1000, "lost", None, 0.0, None, 0, 0, 0, true, None),
                (1500, "tick", A::None, None, "direct", 1500, "lost", None, 0.0, None, 0, 0, 0, false, None),
                (2000, "online", A::Online(true), None, "direct", 2000, "unknown", None, 0.0, None, 0, 0, 0, true, Some(2000)),
                (2000, "tick", A::None, Some(3), "direct", 2000, "unknown", None, 0.0, None, 0, 0, 0, false, Some(2500)),
                (2030, "reply", A::Id(3), None, "direct", 2030, "excellent", Some(30), 0.0, Some(0.0), 0, 0, 0, true, Some(2500)),
            ],
        ),
    ];
    timed(
        ALL,
        "Q2 (PROTOCOL.md \u{a7}14). A tracker is created at created_at_ms with path connecting, online, grade unknown. \
         Each step: first decide lost every outstanding echo with at_ms >= sent + 2000 and roll the frame windows, then apply \
         the input, then compute the grade; `sent_id` is the id of the echo request the step sends (ticks only), `event` whether \
         grade or path changed in this step, `wake_at_ms` the earliest of the next echo (500 ms after the last on a direct or turn path, 2000 ms on the relay), the oldest outstanding echo's \
         loss deadline and the lost deadline (none once lost). rtt_ms is round(srtt); loss_pct and jitter_ms are rounded to \
         0.1: compare a client's unrounded srtt within 0.51, loss and jitter within 0.051.",
        scenarios,
    )
}

/// Rule Q3: RTT and loss buckets, and when a report is due.
#[rustfmt::skip]
pub(super) fn buckets() -> J {
    const RTT: &[(Option<f64>, i64)] = &[
        (None, 255),
        (Some(0.0), 0),
        (Some(25.0), 0),
        (Some(25.4), 1),
        (Some(50.0), 1),
        (Some(74.9), 2),
        (Some(100.0), 3),
        (Some(100.1), 4),
        (Some(150.0), 4),
        (Some(200.0), 5),
        (Some(299.0), 6),
        (Some(300.0), 6),
        (Some(500.0), 7),
        (Some(999.0), 8),
        (Some(1000.0), 8),
        (Some(1001.0), 9),
        (Some(5000.0), 9),
    ];
    const LOSS: &[(Option<f64>, i64)] = &[
        (None, 255),
        (Some(0.0), 0),
        (Some(0.1), 1),
        (Some(1.0), 1),
        (Some(1.5), 2),
        (Some(2.0), 2),
        (Some(4.9), 3),
        (Some(5.0), 3),
        (Some(10.0), 4),
        (Some(10.1), 5),
        (Some(20.0), 5),
        (Some(50.0), 6),
        (Some(50.1), 7),
        (Some(100.0), 7),
    ];
    let mut cases = Vec::new();
    for &(v, b) in RTT {
        cases.push(obj! { "name" => format!("rtt {v:?}"), "input" => obj! { "rtt_ms" => v }, "expect" => obj! { "bucket" => b } });
    }
    for &(v, b) in LOSS {
        cases.push(obj! { "name" => format!("loss {v:?}"), "input" => obj! { "loss_pct" => v }, "expect" => obj! { "bucket" => b } });
    }
    table(
        ALL,
        "Q3: bucket = index of the first edge >= the value (RTT edges 25 50 75 100 150 200 300 500 1000 ms, loss edges \
         0 1 2 5 10 20 50 %), one past the last edge when above it, 255 when unknown (null).",
        cases,
    )
}

/// Rule Q3: when a report is due: (name, now_ms, last_report_at_ms, has_links, change_pending, queued, due, wake_at_ms).
#[rustfmt::skip]
pub(super) fn report_schedule() -> J {
    type Case = (&'static str, i64, i64, bool, bool, bool, bool, Option<i64>);
    const CASES: &[Case] = &[
        ("quiet links: the next report 10 s after the last", 5000, 0, true, false, false, false, Some(10000)),
        ("quiet links: due at 10 s", 10000, 0, true, false, false, true, Some(10000)),
        ("quiet links: 1 ms early", 9999, 0, true, false, false, false, Some(10000)),
        ("a grade change 1.5 s after a report waits for the 2 s floor", 1500, 0, true, true, false, false, Some(2000)),
        ("a grade change at the 2 s floor goes", 2000, 0, true, true, false, true, Some(2000)),
        ("a grade change long after the last report goes at once", 7000, 0, true, true, false, true, Some(7000)),
        ("a queued milestone with no link goes at the 2 s floor", 2500, 0, false, false, true, true, Some(2500)),
        ("a queued milestone 1 ms before the floor waits", 1999, 0, false, false, true, false, Some(2000)),
        ("no link and nothing queued: no report, no wake", 20000, 0, false, false, false, false, None),
        ("no link, nothing queued, just after a report", 2500, 0, false, false, false, false, None),
    ];
    let cases = CASES
        .iter()
        .map(|&(name, now, last, links, change, queued, due, wake)| {
            obj! {
                "name" => name,
                "input" => obj! { "now_ms" => now, "last_report_at_ms" => last, "has_links" => links, "change_pending" => change, "queued" => queued },
                "expect" => obj! { "due" => due, "wake_at_ms" => wake },
            }
        })
        .collect();
    table(
        ALL,
        "Q3: due when (has_links and now >= last + 10000) or ((change_pending or queued) and now >= last + 2000); \
         wake_at_ms = now when due, else the earliest of those two times that applies, null when neither. last_report_at \
         starts at the Welcome. With telemetry off nothing is ever due.",
        cases,
    )
}
