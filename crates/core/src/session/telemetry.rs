//! Connection-quality reports (`ClientMsg::Report`, PROTOCOL.md §14, issue 25):
//! what the core takes from them, and what it keeps.
//!
//! Why a module of its own: a report is the only control message that
//! changes no state anyone else sees. It is telemetry, so the rules are about
//! what it may cost and how long it may count: a per-connection token bucket
//! (one report per 2 s, burst 3) caps a flood before any body is decoded;
//! only connections whose `Hello` spoke version ≥ 3 may send one; a body
//! version this server does not know is skipped, never an error; link entries
//! for peers outside the reporter's session are ignored, so a client cannot
//! paint other sessions' numbers. And the gauges (players and links by path
//! and grade) are made of each connection's *latest* summary, which leaves
//! with the connection or after [`SUMMARY_TTL`] without a newer report: a
//! killed client's seat stops counting within 30 s without the shell having
//! to remember anything.
//!
//! The core stays sans-IO: [`Telemetry::take`] returns what the shell should
//! observe ([`ReportOutcome`], emitted as [`super::Output::Report`]), and the
//! gauges are plain counts the shell copies ([`QualityGauges`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fsp2p_protocol::report::{bucket_value, ReportError, LOSS_EDGES_PCT, RTT_EDGES_MS};
use fsp2p_protocol::{Grade, IceFailReason, LinkPath, MilestoneKind, PeerId, Report};

use super::ConnId;

/// One report per this many ms per connection, on average.
pub const REPORT_INTERVAL_MS: u64 = 2000;
/// Reports a connection may send back to back (the bucket's depth).
pub const REPORT_BURST: u64 = 3;
/// How long a connection's latest report counts in the gauges.
pub const SUMMARY_TTL: Duration = Duration::from_secs(30);

/// What became of one report (the `result` label of `fsp2p_reports_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportResult {
    /// Taken in (links of peers outside the session ignored).
    Accepted,
    /// Over the connection's report bucket (1 per 2 s, burst 3).
    Rate,
    /// A body version this server does not know, or a report on a connection
    /// whose `Hello` spoke a version below 3.
    Version,
    /// The body does not decode, has trailing bytes, or is over a bound.
    Malformed,
}

impl ReportResult {
    /// Every result, in declaration order (`result as usize` indexes it).
    pub const ALL: [ReportResult; 4] = [
        ReportResult::Accepted,
        ReportResult::Rate,
        ReportResult::Version,
        ReportResult::Malformed,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportResult::Accepted => "accepted",
            ReportResult::Rate => "rate",
            ReportResult::Version => "version",
            ReportResult::Malformed => "malformed",
        }
    }
}

/// One link of an accepted report, as the shell observes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkObservation {
    /// The link's path.
    pub path: LinkPath,
    /// The report's RTT bucket index (255: unknown).
    pub rtt_bucket: u8,
    /// The report's loss bucket index (255: unknown).
    pub loss_bucket: u8,
}

impl LinkObservation {
    /// The RTT to observe, in seconds: the bucket's upper edge, 2 s above
    /// the last edge; `None` when unknown (not observed).
    pub fn rtt_seconds(&self) -> Option<f64> {
        bucket_value(&RTT_EDGES_MS, self.rtt_bucket, 2000.0).map(|ms| ms / 1000.0)
    }

    /// The loss to observe, as a ratio 0..1: the bucket's upper edge, 1.0
    /// above the last edge; `None` when unknown.
    pub fn loss_ratio(&self) -> Option<f64> {
        bucket_value(&LOSS_EDGES_PCT, self.loss_bucket, 100.0).map(|pct| pct / 100.0)
    }
}

/// What an accepted report says that the shell counts once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Setup milestones other than `first_frame`: kind and ms.
    pub setup: Vec<(MilestoneKind, u32)>,
    /// `first_frame` milestones on a usable path (direct, turn, relay): path and ms.
    pub first_frame: Vec<(LinkPath, u32)>,
    /// ICE failures, one entry each.
    pub ice_failures: Vec<IceFailReason>,
    /// Candidate-type bits this connection reported for the first time
    /// (each type counts once per connection).
    pub new_candidates: u8,
    /// The links to peers of the reporter's session, one per peer.
    pub links: Vec<LinkObservation>,
}

/// A report's fate: accepted with what to observe, or dropped and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportOutcome {
    /// Taken in.
    Accepted(Box<Accepted>),
    /// Dropped ([`ReportResult::Accepted`] never appears here).
    Dropped(ReportResult),
}

impl ReportOutcome {
    /// The `result` label.
    pub fn result(&self) -> ReportResult {
        match self {
            ReportOutcome::Accepted(_) => ReportResult::Accepted,
            ReportOutcome::Dropped(r) => *r,
        }
    }
}

/// The gauges, summed over the connections with a live summary. Arrays are
/// indexed by `LinkPath as usize` and `Grade as usize` (wire order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QualityGauges {
    /// Players by the worst path of their links (only players with a link).
    pub players_by_path: [u32; 4],
    /// Links by path.
    pub links_by_path: [u32; 4],
    /// Links by grade.
    pub links_by_grade: [u32; 5],
}

/// One connection's latest report, as it counts in the gauges.
#[derive(Debug, Clone, Copy)]
struct Summary {
    worst: Option<LinkPath>,
    links_by_path: [u32; 4],
    links_by_grade: [u32; 5],
    at: Instant,
}

/// How bad a path is for `players_by_path`: relay over turn over direct over connecting.
fn badness(p: LinkPath) -> u8 {
    match p {
        LinkPath::Connecting => 0,
        LinkPath::Direct => 1,
        LinkPath::Turn => 2,
        LinkPath::Relay => 3,
    }
}

impl QualityGauges {
    fn apply(&mut self, s: &Summary, add: bool) {
        let step = |v: &mut u32, n: u32| {
            *v = if add {
                v.saturating_add(n)
            } else {
                v.saturating_sub(n)
            }
        };
        if let Some(w) = s.worst {
            step(&mut self.players_by_path[w as usize], 1);
        }
        for (v, n) in self.links_by_path.iter_mut().zip(s.links_by_path) {
            step(v, n);
        }
        for (v, n) in self.links_by_grade.iter_mut().zip(s.links_by_grade) {
            step(v, n);
        }
    }
}

/// A connection that may send reports.
struct ConnTelemetry {
    /// Report credit in ms: one report costs [`REPORT_INTERVAL_MS`]; refills
    /// one a ms up to `REPORT_BURST × REPORT_INTERVAL_MS`.
    credit_ms: u64,
    last: Instant,
    /// Candidate-type bits already counted for this connection.
    candidates_seen: u8,
    summary: Option<Summary>,
}

impl ConnTelemetry {
    fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_millis();
        let elapsed = u64::try_from(elapsed).unwrap_or(u64::MAX);
        self.credit_ms = self
            .credit_ms
            .saturating_add(elapsed)
            .min(REPORT_BURST * REPORT_INTERVAL_MS);
        self.last = self.last.max(now);
        if self.credit_ms >= REPORT_INTERVAL_MS {
            self.credit_ms -= REPORT_INTERVAL_MS;
            true
        } else {
            false
        }
    }
}

/// Every connection's report state, and the gauges made of it.
#[derive(Default)]
pub(crate) struct Telemetry {
    /// Connections that said `Hello` with version ≥ 3.
    conns: HashMap<ConnId, ConnTelemetry>,
    gauges: QualityGauges,
    /// Reports by [`ReportResult`] (declaration order).
    counts: [u64; 4],
}

impl Telemetry {
    /// `conn` was welcomed speaking a version that may send reports.
    pub(crate) fn enable(&mut self, now: Instant, conn: ConnId) {
        self.conns.entry(conn).or_insert(ConnTelemetry {
            credit_ms: REPORT_BURST * REPORT_INTERVAL_MS,
            last: now,
            candidates_seen: 0,
            summary: None,
        });
    }

    /// Take a report from `conn`, a connection whose peer is `me`;
    /// `session` lists the members of its session (`None`: not in one).
    /// Returns the outcome and, when a summary was stored, when it goes stale.
    pub(crate) fn take(
        &mut self,
        now: Instant,
        conn: ConnId,
        me: PeerId,
        session: Option<&[PeerId]>,
        report: &Report,
    ) -> (ReportOutcome, Option<Instant>) {
        let (outcome, stale_at) = self.decide(now, conn, me, session, report);
        self.counts[outcome.result() as usize] += 1;
        (outcome, stale_at)
    }

    fn decide(
        &mut self,
        now: Instant,
        conn: ConnId,
        me: PeerId,
        session: Option<&[PeerId]>,
        report: &Report,
    ) -> (ReportOutcome, Option<Instant>) {
        let drop = |r| (ReportOutcome::Dropped(r), None);
        let Some(c) = self.conns.get_mut(&conn) else {
            // A version 1 or 2 connection: it should not have sent one.
            return drop(ReportResult::Version);
        };
        if !c.try_take(now) {
            return drop(ReportResult::Rate);
        }
        let body = match report.decode() {
            Ok(b) => b,
            Err(ReportError::UnknownVersion(_)) => return drop(ReportResult::Version),
            Err(ReportError::Malformed(_)) => return drop(ReportResult::Malformed),
        };
        let mut acc = Accepted::default();
        for m in &body.setup {
            match (m.kind, m.path) {
                (MilestoneKind::FirstFrame, LinkPath::Connecting) => {}
                (MilestoneKind::FirstFrame, path) => acc.first_frame.push((path, m.ms)),
                (kind, _) => acc.setup.push((kind, m.ms)),
            }
        }
        acc.ice_failures = body.ice_failures.iter().map(|f| f.reason).collect();
        acc.new_candidates = body.candidates & 0x0F & !c.candidates_seen;
        c.candidates_seen |= acc.new_candidates;
        let mut summary = Summary {
            worst: None,
            links_by_path: [0; 4],
            links_by_grade: [0; 5],
            at: now,
        };
        let members = session.unwrap_or(&[]);
        let mut seen: Vec<PeerId> = Vec::with_capacity(body.links.len());
        for l in &body.links {
            if l.peer == me || !members.contains(&l.peer) || seen.contains(&l.peer) {
                continue;
            }
            seen.push(l.peer);
            summary.links_by_path[l.path as usize] += 1;
            summary.links_by_grade[grade_index(l.grade)] += 1;
            if summary.worst.is_none_or(|w| badness(l.path) > badness(w)) {
                summary.worst = Some(l.path);
            }
            acc.links.push(LinkObservation {
                path: l.path,
                rtt_bucket: l.rtt_bucket,
                loss_bucket: l.loss_bucket,
            });
        }
        if let Some(old) = c.summary.replace(summary) {
            self.gauges.apply(&old, false);
        }
        self.gauges.apply(&summary, true);
        (
            ReportOutcome::Accepted(Box::new(acc)),
            Some(now + SUMMARY_TTL),
        )
    }

    /// The stale timer of `conn` fired: its summary leaves the gauges if
    /// no newer report came.
    pub(crate) fn expire(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.summary
            .is_some_and(|s| now.saturating_duration_since(s.at) >= SUMMARY_TTL)
        {
            if let Some(old) = c.summary.take() {
                self.gauges.apply(&old, false);
            }
        }
    }

    /// `conn` is gone: its summary leaves the gauges.
    pub(crate) fn closed(&mut self, conn: ConnId) {
        if let Some(old) = self.conns.remove(&conn).and_then(|c| c.summary) {
            self.gauges.apply(&old, false);
        }
    }

    pub(crate) fn gauges(&self) -> &QualityGauges {
        &self.gauges
    }

    pub(crate) fn counts(&self) -> [u64; 4] {
        self.counts
    }
}

fn grade_index(g: Grade) -> usize {
    g as usize
}
