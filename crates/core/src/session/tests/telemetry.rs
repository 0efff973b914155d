//! Quality reports (session/telemetry.rs) on simulated time: the bucket,
//! the version gate, foreign peers, and gauges that fall when a connection
//! closes or its report ages out.

use super::*;
use crate::protocol::report::{IceFailure, LinkReport, Milestone, UNKNOWN_BUCKET};
use crate::protocol::{Grade, IceFailReason, LinkPath, MilestoneKind, Report, ReportV1};

fn link(peer: PeerId, path: LinkPath, grade: Grade) -> LinkReport {
    LinkReport {
        peer,
        path,
        grade,
        rtt_bucket: 2,
        loss_bucket: 0,
    }
}

fn report(links: Vec<LinkReport>) -> ClientMsg {
    ClientMsg::Report(Report::v1(&ReportV1 {
        links,
        ..ReportV1::default()
    }))
}

impl World {
    /// The outcomes of the reports taken since the last read.
    fn reports(&mut self) -> Vec<ReportOutcome> {
        self.take(|o| match o {
            Output::Report { outcome, .. } => Some(outcome.clone()),
            _ => None,
        })
    }
    fn results(&mut self) -> Vec<ReportResult> {
        self.reports().iter().map(ReportOutcome::result).collect()
    }
    /// A host and a joiner in one session: (host conn, host, joiner conn, joiner).
    fn pair(&mut self) -> (ConnId, PeerId, ConnId, PeerId) {
        let (hc, h, code) = self.host();
        let (jc, j) = self.joiner(&code, RelayMode::Datagram);
        self.outputs();
        (hc, h, jc, j)
    }
}

const T: Duration = Duration::from_millis(REPORT_INTERVAL_MS);

#[test]
fn the_bucket_takes_three_at_once_then_one_per_two_seconds() {
    let mut w = World::new();
    let (hc, _, _, j) = w.pair();
    let r = || report(vec![link(j, LinkPath::Relay, Grade::Good)]);
    for _ in 0..4 {
        w.msg(hc, r());
    }
    use ReportResult::*;
    assert_eq!(w.results(), [Accepted, Accepted, Accepted, Rate]);
    w.advance(T - Duration::from_millis(1));
    w.msg(hc, r());
    assert_eq!(w.results(), [Rate], "1999 ms after the burst is too early");
    w.advance(Duration::from_millis(1));
    w.msg(hc, r());
    assert_eq!(w.results(), [Accepted]);
    w.msg(hc, r());
    assert_eq!(w.results(), [Rate]);
    // A long pause refills to the burst, no more.
    w.advance(Duration::from_secs(60));
    for _ in 0..4 {
        w.msg(hc, r());
    }
    assert_eq!(w.results(), [Accepted, Accepted, Accepted, Rate]);
}

#[test]
fn a_flood_of_reports_is_capped_and_counted() {
    let mut limits = limits();
    limits.signals_per_sec = 10_000; // the control rate must not be what stops it
    let mut w = World::with(limits, IceConfig::default());
    let (hc, _, _, j) = w.pair();
    // 10 s at 100 reports a second.
    for _ in 0..1000 {
        w.msg(hc, report(vec![link(j, LinkPath::Relay, Grade::Good)]));
        w.advance(Duration::from_millis(10));
    }
    let results = w.results();
    let accepted = results
        .iter()
        .filter(|r| **r == ReportResult::Accepted)
        .count();
    // Burst 3, then one per 2 s over ~10 s: 3 + 4 or 5.
    assert!((7..=8).contains(&accepted), "{accepted} accepted");
    assert_eq!(results.len(), 1000);
    let c = w.core.report_counts();
    assert_eq!(c[ReportResult::Accepted as usize] as usize, accepted);
    assert_eq!(c[ReportResult::Rate as usize] as usize, 1000 - accepted);
    // Still connected, still in its session.
    assert!(w.core.peer_of(hc).is_some());
}

#[test]
fn accepted_reports_fill_the_gauges_and_a_newer_one_replaces_the_older() {
    let mut w = World::new();
    let (hc, _, jc, j) = w.pair();
    let (_, h) = (hc, w.core.peer_of(hc).unwrap());
    w.msg(
        hc,
        report(vec![link(j, LinkPath::Direct, Grade::Excellent)]),
    );
    w.msg(jc, report(vec![link(h, LinkPath::Relay, Grade::Poor)]));
    let g = *w.core.quality_gauges();
    assert_eq!(g.players_by_path, [0, 1, 0, 1]);
    assert_eq!(g.links_by_path, [0, 1, 0, 1]);
    assert_eq!(g.links_by_grade, [0, 1, 0, 1, 0]);
    w.msg(hc, report(vec![link(j, LinkPath::Turn, Grade::Good)]));
    let g = *w.core.quality_gauges();
    assert_eq!(g.players_by_path, [0, 0, 1, 1]);
    assert_eq!(g.links_by_grade, [0, 0, 1, 1, 0]);
    // A report with no link takes the player out of players_by_path.
    w.msg(hc, report(vec![]));
    assert_eq!(w.core.quality_gauges().players_by_path, [0, 0, 0, 1]);
}

#[test]
fn the_worst_path_counts_the_player() {
    let mut w = World::new();
    let (hc, h, code) = w.host();
    let (_, a) = w.joiner(&code, RelayMode::Datagram);
    let (_, b) = w.joiner(&code, RelayMode::Datagram);
    let (_, c) = w.joiner(&code, RelayMode::Datagram);
    let _ = h;
    w.msg(
        hc,
        report(vec![
            link(a, LinkPath::Direct, Grade::Good),
            link(b, LinkPath::Turn, Grade::Good),
            link(c, LinkPath::Connecting, Grade::Unknown),
        ]),
    );
    assert_eq!(w.core.quality_gauges().players_by_path, [0, 0, 1, 0]);
    w.advance(T);
    w.msg(
        hc,
        report(vec![
            link(a, LinkPath::Connecting, Grade::Unknown),
            link(b, LinkPath::Connecting, Grade::Unknown),
        ]),
    );
    assert_eq!(w.core.quality_gauges().players_by_path, [1, 0, 0, 0]);
    w.advance(T);
    w.msg(
        hc,
        report(vec![
            link(a, LinkPath::Relay, Grade::Good),
            link(b, LinkPath::Turn, Grade::Good),
        ]),
    );
    assert_eq!(w.core.quality_gauges().players_by_path, [0, 0, 0, 1]);
}

#[test]
fn closing_a_connection_takes_its_player_out_of_the_gauges() {
    let mut w = World::new();
    let (hc, _, jc, j) = w.pair();
    let h = w.core.peer_of(hc).unwrap();
    w.msg(hc, report(vec![link(j, LinkPath::Relay, Grade::Good)]));
    w.msg(jc, report(vec![link(h, LinkPath::Relay, Grade::Good)]));
    assert_eq!(w.core.quality_gauges().players_by_path[3], 2);
    // Killed, not a clean close: the seat is kept for resume, but the
    // connection (and its report) is gone.
    w.core.closed(w.now, jc, false);
    let g = *w.core.quality_gauges();
    assert_eq!(g.players_by_path, [0, 0, 0, 1]);
    assert_eq!(g.links_by_path, [0, 0, 0, 1]);
    assert_eq!(g.links_by_grade, [0, 0, 1, 0, 0]);
    w.core.closed(w.now, hc, true);
    assert_eq!(*w.core.quality_gauges(), QualityGauges::default());
}

#[test]
fn a_summary_older_than_30_s_ages_out_unless_refreshed() {
    let mut w = World::new();
    let (hc, _, jc, j) = w.pair();
    let h = w.core.peer_of(hc).unwrap();
    w.msg(hc, report(vec![link(j, LinkPath::Relay, Grade::Good)]));
    w.advance(Duration::from_secs(20));
    w.msg(jc, report(vec![link(h, LinkPath::Direct, Grade::Good)]));
    w.advance(Duration::from_secs(10) - Duration::from_millis(1));
    assert_eq!(w.core.quality_gauges().players_by_path, [0, 1, 0, 1]);
    w.advance(Duration::from_millis(1));
    // The host's report is 30 s old; the joiner's 10 s.
    assert_eq!(w.core.quality_gauges().players_by_path, [0, 1, 0, 0]);
    assert_eq!(w.core.quality_gauges().links_by_path, [0, 1, 0, 0]);
    // A refreshed report keeps counting past its first one's 30 s.
    w.advance(Duration::from_secs(15));
    w.msg(jc, report(vec![link(h, LinkPath::Direct, Grade::Good)]));
    w.advance(Duration::from_secs(20));
    assert_eq!(w.core.quality_gauges().players_by_path, [0, 1, 0, 0]);
    w.advance(Duration::from_secs(10));
    assert_eq!(*w.core.quality_gauges(), QualityGauges::default());
    // The stale timers are all spent (nothing left armed for reports).
    assert!(w.core.poll_timeout().is_none_or(|t| t > w.now.mono));
}

#[test]
fn links_to_peers_outside_the_session_are_ignored() {
    let mut w = World::new();
    let (hc, h, _, j) = w.pair();
    // Another session's player, and a made-up id, and the reporter itself.
    let (_, other, _) = w.host();
    w.outputs();
    w.msg(
        hc,
        report(vec![
            link(other, LinkPath::Direct, Grade::Good),
            link(9999, LinkPath::Direct, Grade::Good),
            link(h, LinkPath::Direct, Grade::Good),
            link(j, LinkPath::Relay, Grade::Poor),
            link(j, LinkPath::Direct, Grade::Poor), // a second entry for j
        ]),
    );
    let outcome = w.reports();
    let [ReportOutcome::Accepted(acc)] = outcome.as_slice() else {
        panic!("{outcome:?}");
    };
    assert_eq!(
        acc.links,
        [LinkObservation {
            path: LinkPath::Relay,
            rtt_bucket: 2,
            loss_bucket: 0
        }]
    );
    let g = *w.core.quality_gauges();
    assert_eq!(g.links_by_path, [0, 0, 0, 1]);
    assert_eq!(g.players_by_path, [0, 0, 0, 1]);
}

#[test]
fn a_player_not_in_a_session_is_accepted_but_its_links_ignored() {
    let mut w = World::new();
    let (c, _, _) = w.hello_as("alone", RelayMode::Datagram);
    let body = ReportV1 {
        links: vec![link(2, LinkPath::Direct, Grade::Good)],
        setup: vec![Milestone {
            kind: MilestoneKind::Welcome,
            path: LinkPath::Connecting,
            ms: 120,
        }],
        ..ReportV1::default()
    };
    w.msg(c, ClientMsg::Report(Report::v1(&body)));
    let out = w.reports();
    let [ReportOutcome::Accepted(acc)] = out.as_slice() else {
        panic!("{out:?}");
    };
    assert!(acc.links.is_empty());
    assert_eq!(acc.setup, [(MilestoneKind::Welcome, 120)]);
    assert_eq!(*w.core.quality_gauges(), QualityGauges::default());
}

#[test]
fn a_pre_v3_connection_s_report_is_dropped_as_version() {
    for version in [1, 2] {
        let mut w = World::new();
        let c = w.open();
        w.msg(
            c,
            ClientMsg::Hello(Hello {
                version,
                client: ClientKind::Rust,
                relay_mode: RelayMode::Datagram,
                name: "old".into(),
                resume_token: None,
                access_token: None,
            }),
        );
        w.outputs();
        w.msg(c, report(vec![]));
        assert_eq!(w.results(), [ReportResult::Version], "version {version}");
        assert!(w.core.peer_of(c).is_some(), "not closed");
        assert!(w.sent_to(c).is_empty(), "no error sent");
    }
}

#[test]
fn unknown_body_versions_and_malformed_bodies_are_counted_and_not_fatal() {
    let mut w = World::new();
    let (hc, _, _, _) = w.pair();
    let good = Report::v1(&ReportV1::default());
    let mut trailing = good.clone();
    trailing.body.push(0);
    let cases = [
        (
            Report {
                version: 2,
                body: vec![1, 2, 3],
            },
            ReportResult::Version,
        ),
        (
            Report {
                version: 1,
                body: vec![0xFF, 0xFF],
            },
            ReportResult::Malformed,
        ),
        (trailing, ReportResult::Malformed),
        (
            Report::v1(&ReportV1 {
                ice_failures: vec![
                    IceFailure {
                        reason: IceFailReason::Other
                    };
                    17
                ],
                ..ReportV1::default()
            }),
            ReportResult::Malformed,
        ),
    ];
    for (r, want) in cases {
        w.advance(T);
        w.msg(hc, ClientMsg::Report(r));
        assert_eq!(w.results(), [want]);
        assert!(w.sent_to(hc).is_empty(), "no error sent");
    }
    w.advance(T);
    w.msg(hc, ClientMsg::Report(good));
    assert_eq!(w.results(), [ReportResult::Accepted]);
    assert_eq!(w.core.report_counts(), [1, 0, 1, 3]);
}

#[test]
fn milestones_failures_and_candidates_are_observed_once_each() {
    let mut w = World::new();
    let (hc, _, _, j) = w.pair();
    let m = |kind, path, ms| Milestone { kind, path, ms };
    let body = ReportV1 {
        links: vec![LinkReport {
            peer: j,
            path: LinkPath::Turn,
            grade: Grade::Good,
            rtt_bucket: 9,
            loss_bucket: UNKNOWN_BUCKET,
        }],
        setup: vec![
            m(MilestoneKind::Welcome, LinkPath::Connecting, 80),
            m(MilestoneKind::Direct, LinkPath::Turn, 900),
            m(MilestoneKind::FirstFrame, LinkPath::Turn, 1000),
            m(MilestoneKind::FirstFrame, LinkPath::Connecting, 5), // no usable path: not observed
        ],
        ice_failures: vec![IceFailure {
            reason: IceFailReason::Timeout,
        }],
        candidates: 1 | 4 | 0x70, // host, relay, and bits no type has
    };
    w.msg(hc, ClientMsg::Report(Report::v1(&body)));
    let out = w.reports();
    let [ReportOutcome::Accepted(acc)] = out.as_slice() else {
        panic!("{out:?}");
    };
    assert_eq!(
        acc.setup,
        [(MilestoneKind::Welcome, 80), (MilestoneKind::Direct, 900)]
    );
    assert_eq!(acc.first_frame, [(LinkPath::Turn, 1000)]);
    assert_eq!(acc.ice_failures, [IceFailReason::Timeout]);
    assert_eq!(acc.new_candidates, 1 | 4);
    assert_eq!(acc.links[0].rtt_seconds(), Some(2.0));
    assert_eq!(acc.links[0].loss_ratio(), None);
    w.advance(T);
    w.msg(
        hc,
        ClientMsg::Report(Report::v1(&ReportV1 {
            candidates: 1 | 2,
            ..ReportV1::default()
        })),
    );
    let out = w.reports();
    let [ReportOutcome::Accepted(acc)] = out.as_slice() else {
        panic!("{out:?}");
    };
    assert_eq!(acc.new_candidates, 2, "host was counted already");
}

#[test]
fn bucket_indices_observe_their_upper_edge() {
    let o = |rtt_bucket, loss_bucket| LinkObservation {
        path: LinkPath::Relay,
        rtt_bucket,
        loss_bucket,
    };
    assert_eq!(o(0, 0).rtt_seconds(), Some(0.025));
    assert_eq!(o(8, 6).rtt_seconds(), Some(1.0));
    assert_eq!(o(8, 6).loss_ratio(), Some(0.5));
    assert_eq!(o(9, 7).loss_ratio(), Some(1.0));
    assert_eq!(o(10, 8).rtt_seconds(), None);
    assert_eq!(o(10, 8).loss_ratio(), None);
}
