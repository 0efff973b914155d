//! Connection quality (PROTOCOL.md §14, rules Q2 and Q3): how well this
//! client reaches each peer of its session, and when it tells its server.
//!
//! Sans-IO, in the style of quinn-proto and str0m, like the liveness rule
//! ([`behaviour::Liveness`](crate::behaviour::Liveness)):
//! nothing here reads a clock or touches a socket. Time is an input (`now`,
//! in ms on any monotonic clock the caller keeps), inputs are methods, and
//! what to do comes back as values: [`QualityTracker::tick`] returns the echo
//! request to send, [`QualityTracker::poll_event`] the snapshot when the
//! grade or the path changed, [`QualityTracker::poll_timeout`] when to be
//! asked again. [`Quality`] is every tracker of one client plus the report
//! schedule; the client's connection readers are its shell (`telemetry`).
//!
//! `tests/client_vectors.rs` replays the `quality`, `quality_buckets` and
//! `report_schedule` sections of `docs/client-vectors.json` against these,
//! the same file the JS and C# clients replay.

use std::collections::{BTreeMap, VecDeque};

use fsp2p_protocol::report::{
    loss_bucket, rtt_bucket, Echo, EchoKind, Grade, LinkPath, LinkReport, Milestone, MilestoneKind,
    ReportV1, MAX_REPORT_LINKS, MAX_REPORT_MILESTONES,
};
use fsp2p_protocol::{PeerId, ALL_PEERS};

/// An echo request is due this often per peer on a direct or TURN path
/// (while it is online): the DataChannel's echoes cost the server nothing.
pub const ECHO_INTERVAL_MS: u64 = 500;
/// On the relay an echo is due this often: every echo is two relayed frames
/// each way, so at 60 Hz this keeps them under 2 % of the relay's deliveries.
pub const ECHO_INTERVAL_RELAY_MS: u64 = 2_000;
/// An echo unanswered this long after it was sent is lost.
pub const ECHO_TIMEOUT_MS: u64 = 2_000;
/// Loss is measured over this many decided echoes (answered or lost).
pub const LOSS_WINDOW: usize = 20;
/// No answer at all for this long since the first unanswered echo: grade `lost`.
pub const LOST_AFTER_MS: u64 = 3_000;
/// Frames/s are counted in windows this long.
pub const FPS_WINDOW_MS: u64 = 1_000;
/// A report goes at least this often while there is a link.
pub const REPORT_INTERVAL_MS: u64 = 10_000;
/// Never less than this after the previous report.
pub const REPORT_MIN_GAP_MS: u64 = 2_000;
/// Most milestones queued for the next report (further ones are dropped).
pub const REPORT_MAX_QUEUED: usize = 16;
/// A better grade is taken only if its limits times this are met.
pub const GRADE_HYSTERESIS: f64 = 0.8;

/// The limits of one grade: all three must be under them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradeLimits {
    /// Smoothed RTT, ms.
    pub rtt_ms: f64,
    /// Loss over the window, %.
    pub loss_pct: f64,
    /// Jitter, ms.
    pub jitter_ms: f64,
}

/// `excellent`: under 100 ms, 2 %, 20 ms.
pub const GRADE_EXCELLENT: GradeLimits = GradeLimits {
    rtt_ms: 100.0,
    loss_pct: 2.0,
    jitter_ms: 20.0,
};
/// `good`: under 250 ms, 8 %, 50 ms.
pub const GRADE_GOOD: GradeLimits = GradeLimits {
    rtt_ms: 250.0,
    loss_pct: 8.0,
    jitter_ms: 50.0,
};

/// What one peer's link looks like now (the same fields in every client).
#[derive(Debug, Clone, PartialEq)]
pub struct QualitySnapshot {
    /// The remote peer.
    pub peer: PeerId,
    /// The path flight data takes to it (the Rust client: `Relay`).
    pub path: LinkPath,
    /// How long it has been on this path, ms.
    pub path_ms: u64,
    /// `round(srtt)` of the echo RTT, ms; `None` before the first sample on this path.
    pub rtt_ms: Option<u32>,
    /// Echoes lost over the last [`LOSS_WINDOW`] decided, %, to 0.1 (0 when none decided).
    pub loss_pct: f64,
    /// RTT jitter (RFC 3550's estimator), ms to 0.1; `None` before the first sample.
    pub jitter_ms: Option<f64>,
    /// Flight frames received from the peer in the last full second.
    pub fps_in: u32,
    /// Flight frames sent to the peer in the last full second.
    pub fps_out: u32,
    /// Flight frames from the peer dropped as not newer, in total.
    pub stale_dropped: u64,
    /// The grade.
    pub grade: Grade,
}

/// The `QualityEvent` of PROTOCOL.md §14: a link's grade or path changed.
pub type QualityEvent = QualitySnapshot;

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// How good a grade is: lower is better (only for measured grades).
fn rank(g: Grade) -> u8 {
    match g {
        Grade::Excellent => 0,
        Grade::Good => 1,
        _ => 2,
    }
}

/// The grade of a measured link with every limit times `factor`.
fn measured_grade(srtt: f64, loss: f64, jitter: f64, factor: f64) -> Grade {
    let meets = |l: GradeLimits| {
        srtt < l.rtt_ms * factor && loss < l.loss_pct * factor && jitter < l.jitter_ms * factor
    };
    if meets(GRADE_EXCELLENT) {
        Grade::Excellent
    } else if meets(GRADE_GOOD) {
        Grade::Good
    } else {
        Grade::Poor
    }
}

/// The next grade of a measured link that had `prev` (rule Q2's hysteresis):
/// a worse grade at once; a better one only as far as the limits times
/// [`GRADE_HYSTERESIS`] allow; from `unknown` or `lost`, whatever it measures.
pub fn next_grade(prev: Grade, srtt: f64, loss: f64, jitter: f64) -> Grade {
    let raw = measured_grade(srtt, loss, jitter, 1.0);
    match prev {
        Grade::Excellent | Grade::Good | Grade::Poor if rank(raw) < rank(prev) => {
            let strict = measured_grade(srtt, loss, jitter, GRADE_HYSTERESIS);
            if rank(strict) < rank(prev) {
                strict
            } else {
                prev
            }
        }
        _ => raw,
    }
}

/// One peer's quality tracker (rule Q2).
#[derive(Debug, Clone)]
pub struct QualityTracker {
    peer: PeerId,
    created_at: u64,
    path: LinkPath,
    path_since: u64,
    online: bool,
    /// The id of the next echo request (from 1, never reset).
    next_id: u32,
    /// When the next echo request is due (while online with a path).
    next_echo_at: Option<u64>,
    /// Unanswered requests of the current path, oldest first: (id, sent at).
    outstanding: VecDeque<(u32, u64)>,
    /// (srtt, rttvar), ms.
    rtt: Option<(f64, f64)>,
    last_sample: Option<f64>,
    jitter: f64,
    /// The last decided requests, oldest first: true = lost.
    decided: VecDeque<bool>,
    /// Send time of the first request since the last reply.
    unanswered_since: Option<u64>,
    grade: Grade,
    /// The frame window `now` was last in, and its counts so far.
    window: u64,
    count_in: u32,
    count_out: u32,
    /// The counts of the last completed window.
    fps_in: u32,
    fps_out: u32,
    stale: u64,
    /// A flight frame has come from the peer (for the `first_frame` milestone).
    heard_frame: bool,
    /// The grade or path changed since the last [`poll_event`](Self::poll_event).
    changed: bool,
}

impl QualityTracker {
    /// A tracker for `peer` created at `now`: path `connecting`, online, grade `unknown`.
    pub fn new(peer: PeerId, now: u64) -> QualityTracker {
        QualityTracker {
            peer,
            created_at: now,
            path: LinkPath::Connecting,
            path_since: now,
            online: true,
            next_id: 1,
            next_echo_at: None,
            outstanding: VecDeque::new(),
            rtt: None,
            last_sample: None,
            jitter: 0.0,
            decided: VecDeque::new(),
            unanswered_since: None,
            grade: Grade::Unknown,
            window: 0,
            count_in: 0,
            count_out: 0,
            fps_in: 0,
            fps_out: 0,
            stale: 0,
            heard_frame: false,
            changed: false,
        }
    }

    /// The remote peer.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// The current path.
    pub fn path(&self) -> LinkPath {
        self.path
    }

    /// The current grade.
    pub fn grade(&self) -> Grade {
        self.grade
    }

    /// The smoothed RTT, unrounded (ms).
    pub fn srtt(&self) -> Option<f64> {
        self.rtt.map(|(s, _)| s)
    }

    /// The jitter, unrounded (ms); `None` before the first sample.
    pub fn jitter(&self) -> Option<f64> {
        self.last_sample.map(|_| self.jitter)
    }

    /// Loss over the window, unrounded (%); `None` when nothing is decided yet.
    pub fn loss(&self) -> Option<f64> {
        let lost = self.decided.iter().filter(|l| **l).count();
        (!self.decided.is_empty()).then(|| 100.0 * lost as f64 / self.decided.len() as f64)
    }

    fn usable(&self) -> bool {
        self.online && self.path != LinkPath::Connecting
    }

    /// Echoes are cheap on a DataChannel and cost the server two relayed frames on the relay.
    fn echo_interval(&self) -> u64 {
        if self.path == LinkPath::Relay {
            ECHO_INTERVAL_RELAY_MS
        } else {
            ECHO_INTERVAL_MS
        }
    }

    /// Forget what was measured (a new path, or the peer went offline).
    fn reset_estimator(&mut self) {
        self.outstanding.clear();
        self.rtt = None;
        self.last_sample = None;
        self.jitter = 0.0;
        self.decided.clear();
        self.unanswered_since = None;
    }

    fn decide(&mut self, lost: bool) {
        if self.decided.len() == LOSS_WINDOW {
            self.decided.pop_front();
        }
        self.decided.push_back(lost);
    }

    /// Before every input: decide lost the echoes past their deadline, roll the frame windows.
    fn advance(&mut self, now: u64) {
        while let Some(&(_, sent)) = self.outstanding.front() {
            if now < sent + ECHO_TIMEOUT_MS {
                break;
            }
            self.outstanding.pop_front();
            self.decide(true);
        }
        let k = now.saturating_sub(self.created_at) / FPS_WINDOW_MS;
        if k > self.window {
            let (fps_in, fps_out) = if k == self.window + 1 {
                (self.count_in, self.count_out)
            } else {
                (0, 0)
            };
            self.fps_in = fps_in;
            self.fps_out = fps_out;
            self.count_in = 0;
            self.count_out = 0;
            self.window = k;
        }
    }

    /// After every input: the grade, and whether it changed.
    fn regrade(&mut self, now: u64) {
        let silent = self
            .unanswered_since
            .is_some_and(|s| now.saturating_sub(s) >= LOST_AFTER_MS);
        let grade = if !self.online || silent {
            Grade::Lost
        } else {
            match (self.path, self.rtt) {
                (LinkPath::Connecting, _) | (_, None) => Grade::Unknown,
                (_, Some((srtt, _))) => {
                    next_grade(self.grade, srtt, self.loss().unwrap_or(0.0), self.jitter)
                }
            }
        };
        if grade != self.grade {
            self.grade = grade;
            self.changed = true;
        }
    }

    /// The peer's path changed (or was set again: then nothing happens).
    pub fn path_changed(&mut self, now: u64, path: LinkPath) {
        self.advance(now);
        if path != self.path {
            self.path = path;
            self.path_since = now;
            self.reset_estimator();
            self.next_echo_at = self.usable().then_some(now);
            self.changed = true;
        }
        self.regrade(now);
    }

    /// The peer went offline (`PeerStatus { online: false }`) or came back.
    pub fn online(&mut self, now: u64, online: bool) {
        self.advance(now);
        if online != self.online {
            self.online = online;
            self.reset_estimator();
            self.next_echo_at = self.usable().then_some(now);
        }
        self.regrade(now);
    }

    /// The periodic wake-up: the echo request to send now, if one is due.
    pub fn tick(&mut self, now: u64) -> Option<Echo> {
        self.advance(now);
        let due = self.usable() && self.next_echo_at.is_some_and(|t| now >= t);
        let sent = due.then(|| {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1).max(1);
            self.outstanding.push_back((id, now));
            self.unanswered_since.get_or_insert(now);
            self.next_echo_at = Some(now + self.echo_interval());
            Echo {
                kind: EchoKind::Request,
                id,
                t: now as u32,
            }
        });
        self.regrade(now);
        sent
    }

    /// An echo reply with `id` arrived. A reply to an unknown, already
    /// decided or earlier-path request is only "heard".
    pub fn reply(&mut self, now: u64, id: u32) {
        self.advance(now);
        self.unanswered_since = None;
        if let Some(pos) = self.outstanding.iter().position(|(i, _)| *i == id) {
            let (_, sent) = self.outstanding.remove(pos).unwrap_or((id, now));
            let r = now.saturating_sub(sent) as f64;
            self.rtt = Some(match self.rtt {
                None => (r, r / 2.0),
                Some((srtt, rttvar)) => {
                    let rttvar = 0.75 * rttvar + 0.25 * (srtt - r).abs();
                    (0.875 * srtt + 0.125 * r, rttvar)
                }
            });
            if let Some(prev) = self.last_sample {
                self.jitter += ((r - prev).abs() - self.jitter) / 16.0;
            }
            self.last_sample = Some(r);
            self.decide(false);
        }
        self.regrade(now);
    }

    /// `count` flight frames arrived from the peer.
    pub fn frame_in(&mut self, now: u64, count: u32) {
        self.advance(now);
        self.count_in = self.count_in.saturating_add(count);
        self.heard_frame = true;
        self.regrade(now);
    }

    /// `count` flight frames went to the peer.
    pub fn frame_out(&mut self, now: u64, count: u32) {
        self.advance(now);
        self.count_out = self.count_out.saturating_add(count);
        self.regrade(now);
    }

    /// `count` flight frames from the peer were dropped as not newer.
    pub fn stale(&mut self, now: u64, count: u32) {
        self.advance(now);
        self.stale += u64::from(count);
        self.regrade(now);
    }

    /// The snapshot, once, after the grade or the path changed.
    pub fn poll_event(&mut self, now: u64) -> Option<QualityEvent> {
        std::mem::take(&mut self.changed).then(|| self.snapshot(now))
    }

    /// When to call [`tick`](Self::tick) next: the earliest of the next echo,
    /// the oldest outstanding echo's loss deadline and (unless already lost)
    /// the lost deadline. `None`: only an input changes anything.
    pub fn poll_timeout(&self) -> Option<u64> {
        let echo = self.next_echo_at.filter(|_| self.usable());
        let loss = self.outstanding.front().map(|(_, s)| s + ECHO_TIMEOUT_MS);
        let lost = self
            .unanswered_since
            .filter(|_| self.grade != Grade::Lost)
            .map(|s| s + LOST_AFTER_MS);
        [echo, loss, lost].into_iter().flatten().min()
    }

    /// What the link looks like at `now` (frames/s as of `now`'s window).
    pub fn snapshot(&self, now: u64) -> QualitySnapshot {
        let k = now.saturating_sub(self.created_at) / FPS_WINDOW_MS;
        let (fps_in, fps_out) = match k.saturating_sub(self.window) {
            0 => (self.fps_in, self.fps_out),
            1 => (self.count_in, self.count_out),
            _ => (0, 0),
        };
        QualitySnapshot {
            peer: self.peer,
            path: self.path,
            path_ms: now.saturating_sub(self.path_since),
            rtt_ms: self.srtt().map(|s| s.round() as u32),
            loss_pct: round1(self.loss().unwrap_or(0.0)),
            jitter_ms: self.jitter().map(round1),
            fps_in,
            fps_out,
            stale_dropped: self.stale,
            grade: self.grade,
        }
    }

    /// This link's entry in a report.
    pub fn link_report(&self) -> LinkReport {
        LinkReport {
            peer: self.peer,
            path: self.path,
            grade: self.grade,
            rtt_bucket: rtt_bucket(self.srtt().map(f64::round)),
            loss_bucket: loss_bucket(self.loss().map(round1)),
        }
    }
}

/// Whether a report is due now, and when one next will be (rule Q3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportDue {
    /// Send one now.
    pub due: bool,
    /// `now` when due, else the earliest time one may be; `None` when none is wanted.
    pub wake_at: Option<u64>,
}

/// Rule Q3's schedule: due when `has_links` and [`REPORT_INTERVAL_MS`] have
/// passed since `last_report_at`, or when a change is pending or something
/// is queued and [`REPORT_MIN_GAP_MS`] have passed.
pub fn report_due(
    now: u64,
    last_report_at: u64,
    has_links: bool,
    change_pending: bool,
    queued: bool,
) -> ReportDue {
    let periodic = has_links.then_some(last_report_at + REPORT_INTERVAL_MS);
    let early = (change_pending || queued).then_some(last_report_at + REPORT_MIN_GAP_MS);
    let due = [periodic, early].into_iter().flatten().any(|t| now >= t);
    ReportDue {
        due,
        wake_at: if due {
            Some(now)
        } else {
            [periodic, early].into_iter().flatten().min()
        },
    }
}

/// Every tracker of one client, and its reports (rules Q2 and Q3). The
/// Rust client has only the relay, so a link is on path `relay` from the
/// moment both peers are in the session.
#[derive(Debug, Clone)]
pub struct Quality {
    telemetry: bool,
    /// Send echo requests (answering the peers' is not optional).
    echo: bool,
    me: PeerId,
    /// The server takes `Report` (`Welcome.version >= 3`).
    reports: bool,
    last_report_at: u64,
    change_pending: bool,
    setup: Vec<Milestone>,
    /// When the current connect attempt started (for the `welcome` milestone).
    attempt_at: Option<u64>,
    trackers: BTreeMap<PeerId, QualityTracker>,
}

impl Quality {
    /// No peers yet; `telemetry`: send reports at all
    /// ([`ClientConfig::telemetry`](crate::ClientConfig::telemetry)); `echo`:
    /// measure the links ([`ClientConfig::quality_echo`](crate::ClientConfig::quality_echo)).
    pub fn new(telemetry: bool, echo: bool) -> Quality {
        Quality {
            telemetry,
            echo,
            me: 0,
            reports: false,
            last_report_at: 0,
            change_pending: false,
            setup: Vec::new(),
            attempt_at: None,
            trackers: BTreeMap::new(),
        }
    }

    fn queue(&mut self, m: Milestone) {
        if self.telemetry && self.setup.len() < REPORT_MAX_QUEUED.min(MAX_REPORT_MILESTONES) {
            self.setup.push(m);
        }
    }

    /// A connect attempt (connection, or reconnection) starts.
    pub fn attempt_started(&mut self, now: u64) {
        self.attempt_at = Some(now);
        // Until its Welcome says otherwise, the next server may be older.
        self.reports = false;
    }

    /// A `Welcome`: `version` says whether reports may go; `me` is my peer id.
    /// Not `resumed`: whatever session I was in is left behind.
    pub fn welcome(&mut self, now: u64, version: u16, me: PeerId, resumed: bool) {
        self.me = me;
        self.reports = version >= fsp2p_protocol::REPORT_PROTOCOL_VERSION;
        self.last_report_at = now;
        if let Some(at) = self.attempt_at.take() {
            let ms = u32::try_from(now.saturating_sub(at)).unwrap_or(u32::MAX);
            self.queue(Milestone {
                kind: MilestoneKind::Welcome,
                path: LinkPath::Connecting,
                ms,
            });
        }
        if !resumed {
            self.session_left(now);
        }
    }

    /// I am in a session with these peers (me among them): `SessionCreated`/`SessionJoined`.
    pub fn session(&mut self, now: u64, peers: &[PeerId]) {
        let before = self.trackers.len();
        self.trackers.retain(|id, _| peers.contains(id));
        if self.trackers.len() != before {
            self.change_pending = true;
        }
        for &p in peers {
            self.peer_joined(now, p);
        }
    }

    /// A peer joined my session.
    pub fn peer_joined(&mut self, now: u64, peer: PeerId) {
        if peer == self.me || peer == ALL_PEERS || self.trackers.contains_key(&peer) {
            return;
        }
        let mut t = QualityTracker::new(peer, now);
        t.path_changed(now, LinkPath::Relay);
        self.trackers.insert(peer, t);
    }

    /// A peer left my session for good.
    pub fn peer_left(&mut self, _now: u64, peer: PeerId) {
        if self.trackers.remove(&peer).is_some() {
            self.change_pending = true;
        }
    }

    /// A peer lost its connection, or came back (`PeerStatus`).
    pub fn peer_status(&mut self, now: u64, peer: PeerId, online: bool) {
        if let Some(t) = self.trackers.get_mut(&peer) {
            t.online(now, online);
        }
    }

    /// I am in no session any more.
    pub fn session_left(&mut self, _now: u64) {
        if !self.trackers.is_empty() {
            self.trackers.clear();
            self.change_pending = true;
        }
    }

    /// The periodic wake-up: the echo requests to send now, to whom.
    pub fn tick(&mut self, now: u64) -> Vec<(PeerId, Echo)> {
        if !self.echo {
            return Vec::new();
        }
        self.trackers
            .values_mut()
            .filter_map(|t| t.tick(now).map(|e| (t.peer, e)))
            .collect()
    }

    /// A quality frame from `from`: the reply to send back for a request.
    pub fn echo(&mut self, now: u64, from: PeerId, echo: Echo) -> Option<Echo> {
        match echo.kind {
            EchoKind::Request => Some(echo.reply()),
            EchoKind::Reply => {
                if let Some(t) = self.trackers.get_mut(&from) {
                    t.reply(now, echo.id);
                }
                None
            }
        }
    }

    /// A flight frame arrived from `from`.
    pub fn flight_in(&mut self, now: u64, from: PeerId) {
        let Some(t) = self.trackers.get_mut(&from) else {
            return;
        };
        let first = !t.heard_frame;
        t.frame_in(now, 1);
        if first {
            let m = Milestone {
                kind: MilestoneKind::FirstFrame,
                path: t.path,
                ms: u32::try_from(now.saturating_sub(t.created_at)).unwrap_or(u32::MAX),
            };
            self.queue(m);
        }
    }

    /// A flight frame went to `to` ([`ALL_PEERS`]: to every peer).
    pub fn flight_out(&mut self, now: u64, to: PeerId) {
        for t in self.trackers.values_mut() {
            if to == ALL_PEERS || to == t.peer {
                t.frame_out(now, 1);
            }
        }
    }

    /// `count` flight frames from `from` were dropped as not newer.
    pub fn stale(&mut self, now: u64, from: PeerId, count: u32) {
        if let Some(t) = self.trackers.get_mut(&from) {
            t.stale(now, count);
        }
    }

    /// The next quality event (a link's grade or path changed).
    pub fn poll_event(&mut self, now: u64) -> Option<QualityEvent> {
        let e = self.trackers.values_mut().find_map(|t| t.poll_event(now));
        if e.is_some() {
            self.change_pending = true;
        }
        e
    }

    fn schedule(&self, now: u64) -> ReportDue {
        if !self.telemetry || !self.reports {
            return ReportDue {
                due: false,
                wake_at: None,
            };
        }
        let changed = self.change_pending || self.trackers.values().any(|t| t.changed);
        report_due(
            now,
            self.last_report_at,
            !self.trackers.is_empty(),
            changed,
            !self.setup.is_empty(),
        )
    }

    /// The report to send now, if one is due (poll events first, so that
    /// changes count). Sending it is the caller's: this takes it as sent.
    pub fn poll_report(&mut self, now: u64) -> Option<ReportV1> {
        if !self.schedule(now).due {
            return None;
        }
        self.last_report_at = now;
        self.change_pending = false;
        Some(ReportV1 {
            links: self
                .trackers
                .values()
                .take(MAX_REPORT_LINKS)
                .map(QualityTracker::link_report)
                .collect(),
            setup: std::mem::take(&mut self.setup),
            ice_failures: Vec::new(),
            candidates: 0,
        })
    }

    /// When to tick next: the earliest tracker timeout or report time.
    pub fn poll_timeout(&self, now: u64) -> Option<u64> {
        self.trackers
            .values()
            .filter_map(QualityTracker::poll_timeout)
            .filter(|_| self.echo)
            .chain(self.schedule(now).wake_at)
            .min()
    }

    /// Every link, as of `now`, by peer id.
    pub fn snapshots(&self, now: u64) -> Vec<QualitySnapshot> {
        self.trackers.values().map(|t| t.snapshot(now)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_of_the_session_is_echoed_on_the_relay_and_reported() {
        let mut q = Quality::new(true, true);
        q.attempt_started(0);
        q.welcome(100, 3, 1, false);
        q.session(100, &[1, 2]);
        assert_eq!(q.poll_event(100).map(|e| e.path), Some(LinkPath::Relay));
        let sent = q.tick(100);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, 2);
        // A request from the peer is answered; my reply from it is measured.
        let req = Echo {
            kind: EchoKind::Request,
            id: 9,
            t: 5,
        };
        assert_eq!(q.echo(120, 2, req), Some(req.reply()));
        assert_eq!(q.echo(130, 2, sent[0].1.reply()), None);
        assert_eq!(q.snapshots(130)[0].rtt_ms, Some(30));
        assert_eq!(q.poll_event(130).map(|e| e.grade), Some(Grade::Excellent));
        // Not before the 2 s floor after the Welcome, then at once.
        assert!(q.poll_report(2099).is_none());
        // The next echo on the relay is 2000 ms after the first: with the report, at 2100.
        assert_eq!(q.poll_timeout(1000), Some(2100));
        let r = q.poll_report(2100).expect("a report is due");
        assert_eq!(r.links.len(), 1);
        assert_eq!((r.links[0].peer, r.links[0].rtt_bucket), (2, 1));
        assert_eq!(r.setup[0].kind, MilestoneKind::Welcome);
        assert_eq!(r.setup[0].ms, 100);
        assert!(q.poll_report(2200).is_none());
    }

    #[test]
    fn no_report_without_telemetry_or_before_version_3() {
        for (telemetry, version) in [(false, 3), (true, 2)] {
            let mut q = Quality::new(telemetry, true);
            q.welcome(0, version, 1, false);
            q.session(0, &[1, 2]);
            while q.poll_event(0).is_some() {}
            assert!(q.poll_report(60_000).is_none());
        }
    }

    #[test]
    fn a_resume_keeps_the_links_a_new_peer_id_drops_them() {
        let mut q = Quality::new(true, true);
        q.welcome(0, 3, 1, false);
        q.session(0, &[1, 2, 3]);
        q.peer_status(10, 3, false);
        let grades: Vec<Grade> = q.snapshots(10).iter().map(|s| s.grade).collect();
        assert_eq!(grades, [Grade::Unknown, Grade::Lost]);
        // Offline: no echo to it.
        assert_eq!(q.tick(10).iter().map(|(p, _)| *p).collect::<Vec<_>>(), [2]);
        q.attempt_started(100);
        q.welcome(150, 3, 1, true);
        q.session(150, &[1, 3]);
        assert_eq!(q.snapshots(150).len(), 1);
        assert_eq!(q.snapshots(150)[0].peer, 3);
        q.attempt_started(200);
        q.welcome(250, 3, 9, false);
        assert!(q.snapshots(250).is_empty());
        q.session(250, &[3, 9]);
        assert_eq!(q.snapshots(250)[0].peer, 3);
        q.session_left(300);
        assert!(q.snapshots(300).is_empty());
        // Two welcome milestones queued, one per attempt.
        while q.poll_event(300).is_some() {}
        let r = q.poll_report(2_250).expect("the queued milestones are due");
        assert_eq!(r.setup.len(), 2);
        assert!(r.links.is_empty());
    }

    #[test]
    fn frames_count_per_peer_and_to_all() {
        let mut q = Quality::new(true, true);
        q.welcome(0, 3, 1, false);
        q.session(0, &[1, 2, 3]);
        q.flight_out(10, ALL_PEERS);
        q.flight_out(20, 3);
        q.flight_in(30, 2);
        let s = q.snapshots(1000);
        assert_eq!((s[0].fps_in, s[0].fps_out), (1, 1));
        assert_eq!((s[1].fps_in, s[1].fps_out), (0, 2));
        q.peer_left(1000, 2);
        assert_eq!(q.snapshots(1000).len(), 1);
    }
}
