//! Connection-quality telemetry: the `Report` a client sends its server, and
//! the quality frames peers echo to each other (PROTOCOL.md §14).
//!
//! Why its own module: a report is the one message whose body is versioned
//! apart from the protocol. `Report` is `{ version, body: bytes }`, so a
//! server skips a body version it does not know instead of failing the
//! connection, and clients can add fields without waiting for every server.
//! The buckets are here too, because client and server must cut RTT and loss
//! at the same edges for a report to mean anything.

use serde::{Deserialize, Serialize};

use crate::PeerId;

/// The only body version this crate writes and reads.
pub const REPORT_VERSION: u16 = 1;
/// Most links one report may carry (a session's most seats, minus me, with room to spare).
pub const MAX_REPORT_LINKS: usize = 64;
/// Most setup milestones one report may carry.
pub const MAX_REPORT_MILESTONES: usize = 16;
/// Most ICE failures one report may carry.
pub const MAX_REPORT_ICE_FAILURES: usize = 16;
/// RTT bucket edges in ms: bucket `i` holds RTTs `<= RTT_EDGES_MS[i]` (and
/// above the previous edge); bucket 9 holds RTTs above the last edge.
pub const RTT_EDGES_MS: [f64; 9] = [25.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 500.0, 1000.0];
/// Loss bucket edges in percent, read like [`RTT_EDGES_MS`]; bucket 7 is above 50 %.
pub const LOSS_EDGES_PCT: [f64; 7] = [0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0];
/// The bucket index meaning "not measured yet".
pub const UNKNOWN_BUCKET: u8 = 255;

/// `ClientMsg::Report`: telemetry, at most one every 2 s (PROTOCOL.md §14).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The version of `body`'s layout ([`REPORT_VERSION`]).
    pub version: u16,
    /// `postcard(ReportV1)` for version 1; opaque to a server that does not know `version`.
    pub body: Vec<u8>,
}

/// What a version-1 report says.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportV1 {
    /// One entry per remote peer of my session.
    pub links: Vec<LinkReport>,
    /// Setup milestones since the last report.
    pub setup: Vec<Milestone>,
    /// ICE failures since the last report.
    pub ice_failures: Vec<IceFailure>,
    /// Candidate types gathered since the last report: a bit set of [`candidate`] bits.
    pub candidates: u8,
}

/// Bits of [`ReportV1::candidates`].
pub mod candidate {
    /// A host candidate.
    pub const HOST: u8 = 1;
    /// A server-reflexive (STUN) candidate.
    pub const SRFLX: u8 = 2;
    /// A relay (TURN) candidate.
    pub const RELAY: u8 = 4;
    /// A peer-reflexive candidate.
    pub const PRFLX: u8 = 8;
    /// Every bit with its metric label.
    pub const ALL: [(u8, &str); 4] = [
        (HOST, "host"),
        (SRFLX, "srflx"),
        (RELAY, "relay"),
        (PRFLX, "prflx"),
    ];
}

/// How I reach one peer, and how well.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkReport {
    /// The remote peer.
    pub peer: PeerId,
    /// The path flight data takes to it.
    pub path: LinkPath,
    /// The link's grade.
    pub grade: Grade,
    /// [`rtt_bucket`] of the echo RTT.
    pub rtt_bucket: u8,
    /// [`loss_bucket`] of the echo loss.
    pub loss_bucket: u8,
}

/// The path flight data takes between two peers.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinkPath {
    /// 0: no path yet.
    Connecting,
    /// 1: a WebRTC DataChannel over a direct (host or STUN) candidate pair.
    Direct,
    /// 2: a WebRTC DataChannel through a TURN server.
    Turn,
    /// 3: this server's relay.
    Relay,
}

impl LinkPath {
    /// Every path, in wire order.
    pub const ALL: [LinkPath; 4] = [
        LinkPath::Connecting,
        LinkPath::Direct,
        LinkPath::Turn,
        LinkPath::Relay,
    ];
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkPath::Connecting => "connecting",
            LinkPath::Direct => "direct",
            LinkPath::Turn => "turn",
            LinkPath::Relay => "relay",
        }
    }
}

/// A link's quality grade (thresholds: PROTOCOL.md §14).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Grade {
    /// 0: not measured yet.
    Unknown,
    /// 1: RTT under 100 ms, loss under 2 %, jitter under 20 ms.
    Excellent,
    /// 2: RTT under 250 ms, loss under 8 %, jitter under 50 ms.
    Good,
    /// 3: worse than good.
    Poor,
    /// 4: the peer is offline, or no echo answered for 3 s.
    Lost,
}

impl Grade {
    /// Every grade, in wire order.
    pub const ALL: [Grade; 5] = [
        Grade::Unknown,
        Grade::Excellent,
        Grade::Good,
        Grade::Poor,
        Grade::Lost,
    ];
    /// The metric label (and the clients' name for it).
    pub fn as_str(self) -> &'static str {
        match self {
            Grade::Unknown => "unknown",
            Grade::Excellent => "excellent",
            Grade::Good => "good",
            Grade::Poor => "poor",
            Grade::Lost => "lost",
        }
    }
}

/// How long one setup step took.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Milestone {
    /// Which step.
    pub kind: MilestoneKind,
    /// The path it ended on (`Connecting` where the step has none).
    pub path: LinkPath,
    /// How long it took, in ms.
    pub ms: u32,
}

/// The setup steps a client times (PROTOCOL.md §14).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MilestoneKind {
    /// 0: connect attempt started → `Welcome`.
    Welcome,
    /// 1: link created → the first `Signal` from that peer.
    FirstSignal,
    /// 2: first offer sent or received → the DataChannel is usable (path direct or turn).
    Direct,
    /// 3: first offer sent or received → fell back to the relay.
    Relay,
    /// 4: link created → the first flight frame from that peer (path: the one it came on).
    FirstFrame,
}

impl MilestoneKind {
    /// Every kind, in wire order.
    pub const ALL: [MilestoneKind; 5] = [
        MilestoneKind::Welcome,
        MilestoneKind::FirstSignal,
        MilestoneKind::Direct,
        MilestoneKind::Relay,
        MilestoneKind::FirstFrame,
    ];
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            MilestoneKind::Welcome => "welcome",
            MilestoneKind::FirstSignal => "first_signal",
            MilestoneKind::Direct => "direct",
            MilestoneKind::Relay => "relay",
            MilestoneKind::FirstFrame => "first_frame",
        }
    }
}

/// One ICE failure.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct IceFailure {
    /// Why.
    pub reason: IceFailReason,
}

/// Why ICE did not give a direct path.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IceFailReason {
    /// 0: not connected within the client's deadline.
    Timeout,
    /// 1: the ICE state went to failed.
    Failed,
    /// 2: was connected, was lost, did not come back.
    Disconnected,
    /// 3: gathering ended with no candidate.
    NoCandidates,
    /// 4: anything else.
    Other,
}

impl IceFailReason {
    /// Every reason, in wire order.
    pub const ALL: [IceFailReason; 5] = [
        IceFailReason::Timeout,
        IceFailReason::Failed,
        IceFailReason::Disconnected,
        IceFailReason::NoCandidates,
        IceFailReason::Other,
    ];
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            IceFailReason::Timeout => "timeout",
            IceFailReason::Failed => "failed",
            IceFailReason::Disconnected => "disconnected",
            IceFailReason::NoCandidates => "no_candidates",
            IceFailReason::Other => "other",
        }
    }
}

/// Why a server did not take a report's body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// A body version this crate does not know (skipped whole).
    #[error("report body version {0} is not known here")]
    UnknownVersion(u16),
    /// The body does not decode, has trailing bytes, or is over a bound.
    #[error("report body is malformed: {0}")]
    Malformed(String),
}

impl Report {
    /// Wrap a version-1 body.
    pub fn v1(body: &ReportV1) -> Report {
        Report {
            version: REPORT_VERSION,
            body: crate::encode(body),
        }
    }

    /// The body, if its version is known and it is within the bounds.
    pub fn decode(&self) -> Result<ReportV1, ReportError> {
        if self.version != REPORT_VERSION {
            return Err(ReportError::UnknownVersion(self.version));
        }
        let (r, rest) = postcard::take_from_bytes::<ReportV1>(&self.body)
            .map_err(|e| ReportError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(ReportError::Malformed(format!(
                "{} trailing bytes",
                rest.len()
            )));
        }
        if r.links.len() > MAX_REPORT_LINKS
            || r.setup.len() > MAX_REPORT_MILESTONES
            || r.ice_failures.len() > MAX_REPORT_ICE_FAILURES
        {
            return Err(ReportError::Malformed("over a length bound".into()));
        }
        Ok(r)
    }
}

/// The RTT bucket of `rtt_ms` ([`UNKNOWN_BUCKET`] for `None`).
pub fn rtt_bucket(rtt_ms: Option<f64>) -> u8 {
    bucket(&RTT_EDGES_MS, rtt_ms)
}

/// The loss bucket of `loss_pct` ([`UNKNOWN_BUCKET`] for `None`).
pub fn loss_bucket(loss_pct: Option<f64>) -> u8 {
    bucket(&LOSS_EDGES_PCT, loss_pct)
}

fn bucket(edges: &[f64], v: Option<f64>) -> u8 {
    match v {
        None => UNKNOWN_BUCKET,
        Some(v) => edges.iter().position(|e| v <= *e).unwrap_or(edges.len()) as u8,
    }
}

/// The value a server observes for a bucket index: its upper edge, and
/// `above` for the bucket past the last edge; `None` for unknown or out of range.
pub fn bucket_value(edges: &[f64], index: u8, above: f64) -> Option<f64> {
    let i = usize::from(index);
    match i.cmp(&edges.len()) {
        std::cmp::Ordering::Less => Some(edges[i]),
        std::cmp::Ordering::Equal => Some(above),
        std::cmp::Ordering::Greater => None,
    }
}

/// The first four bytes of a quality frame (a flight frame's sequence number never is this).
pub const QUALITY_MAGIC: [u8; 4] = [0xFF; 4];
/// Length of a quality frame.
pub const QUALITY_FRAME_LEN: usize = 13;

/// A quality frame's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoKind {
    /// 1: answer me.
    Request,
    /// 2: the answer.
    Reply,
}

/// One quality frame (PROTOCOL.md §14): an echo request or its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echo {
    /// Request or reply.
    pub kind: EchoKind,
    /// Counts up per remote peer from 1.
    pub id: u32,
    /// The requester's clock in ms (mod 2^32), echoed verbatim.
    pub t: u32,
}

/// What a peer-to-peer payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerPayload<'a> {
    /// Flight data (`u32 LE sequence || application bytes`, §5), or anything not a quality frame.
    Flight(&'a [u8]),
    /// A quality frame.
    Echo(Echo),
    /// Starts like a quality frame but is not one: drop it.
    BadEcho,
}

impl Echo {
    /// The frame's 13 bytes.
    pub fn encode(&self) -> [u8; QUALITY_FRAME_LEN] {
        let mut out = [0u8; QUALITY_FRAME_LEN];
        out[..4].copy_from_slice(&QUALITY_MAGIC);
        out[4] = match self.kind {
            EchoKind::Request => 1,
            EchoKind::Reply => 2,
        };
        out[5..9].copy_from_slice(&self.id.to_le_bytes());
        out[9..13].copy_from_slice(&self.t.to_le_bytes());
        out
    }

    /// The reply to this request (same id and time).
    pub fn reply(&self) -> Echo {
        Echo {
            kind: EchoKind::Reply,
            ..*self
        }
    }
}

/// Tell a quality frame from flight data.
pub fn classify(payload: &[u8]) -> PeerPayload<'_> {
    if !payload.starts_with(&QUALITY_MAGIC) {
        return PeerPayload::Flight(payload);
    }
    let kind = match payload.get(4) {
        Some(1) => EchoKind::Request,
        Some(2) => EchoKind::Reply,
        _ => return PeerPayload::BadEcho,
    };
    match (payload.len(), payload.get(5..9), payload.get(9..13)) {
        (QUALITY_FRAME_LEN, Some(id), Some(t)) => {
            let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            PeerPayload::Echo(Echo {
                kind,
                id: word(id),
                t: word(t),
            })
        }
        _ => PeerPayload::BadEcho,
    }
}

/// The flight sequence number after `seq`, skipping `0xFFFFFFFF` (which
/// would make the frame a quality frame).
pub fn next_flight_seq(seq: u32) -> u32 {
    match seq.wrapping_add(1) {
        u32::MAX => 0,
        s => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cut_at_their_edges() {
        assert_eq!(rtt_bucket(None), UNKNOWN_BUCKET);
        assert_eq!(rtt_bucket(Some(0.0)), 0);
        assert_eq!(rtt_bucket(Some(25.0)), 0);
        assert_eq!(rtt_bucket(Some(25.1)), 1);
        assert_eq!(rtt_bucket(Some(1000.0)), 8);
        assert_eq!(rtt_bucket(Some(1000.5)), 9);
        assert_eq!(loss_bucket(Some(0.0)), 0);
        assert_eq!(loss_bucket(Some(0.1)), 1);
        assert_eq!(loss_bucket(Some(50.0)), 6);
        assert_eq!(loss_bucket(Some(100.0)), 7);
        assert_eq!(bucket_value(&RTT_EDGES_MS, 9, 2000.0), Some(2000.0));
        assert_eq!(bucket_value(&RTT_EDGES_MS, 3, 2000.0), Some(100.0));
        assert_eq!(bucket_value(&RTT_EDGES_MS, 10, 2000.0), None);
        assert_eq!(bucket_value(&RTT_EDGES_MS, UNKNOWN_BUCKET, 2000.0), None);
    }

    #[test]
    fn echo_frames_round_trip_and_look_alikes_are_dropped() {
        let e = Echo {
            kind: EchoKind::Request,
            id: 7,
            t: 0x0102_0304,
        };
        let b = e.encode();
        assert_eq!(b, [255, 255, 255, 255, 1, 7, 0, 0, 0, 4, 3, 2, 1]);
        assert_eq!(classify(&b), PeerPayload::Echo(e));
        assert_eq!(
            classify(&e.reply().encode()),
            PeerPayload::Echo(Echo {
                kind: EchoKind::Reply,
                ..e
            })
        );
        assert_eq!(classify(&b[..12]), PeerPayload::BadEcho);
        let mut long = b.to_vec();
        long.push(0);
        assert_eq!(classify(&long), PeerPayload::BadEcho);
        let mut kind3 = b;
        kind3[4] = 3;
        assert_eq!(classify(&kind3), PeerPayload::BadEcho);
        assert_eq!(
            classify(&[255, 255, 255]),
            PeerPayload::Flight(&[255, 255, 255])
        );
        assert_eq!(
            classify(&[1, 0, 0, 0, 9]),
            PeerPayload::Flight(&[1, 0, 0, 0, 9])
        );
        assert_eq!(next_flight_seq(0xFFFF_FFFE), 0);
        assert_eq!(next_flight_seq(u32::MAX), 0);
        assert_eq!(next_flight_seq(5), 6);
    }

    #[test]
    fn a_body_of_another_version_or_over_a_bound_is_refused() {
        let ok = ReportV1 {
            links: vec![LinkReport {
                peer: 2,
                path: LinkPath::Relay,
                grade: Grade::Good,
                rtt_bucket: 4,
                loss_bucket: 1,
            }],
            setup: vec![],
            ice_failures: vec![],
            candidates: candidate::HOST,
        };
        assert_eq!(Report::v1(&ok).decode(), Ok(ok.clone()));
        let mut v2 = Report::v1(&ok);
        v2.version = 2;
        assert_eq!(v2.decode(), Err(ReportError::UnknownVersion(2)));
        let mut trailing = Report::v1(&ok);
        trailing.body.push(0);
        assert!(matches!(trailing.decode(), Err(ReportError::Malformed(_))));
        let big = ReportV1 {
            links: vec![ok.links[0]; MAX_REPORT_LINKS + 1],
            ..ok.clone()
        };
        assert!(matches!(
            Report::v1(&big).decode(),
            Err(ReportError::Malformed(_))
        ));
        let bad_enum = Report {
            version: 1,
            body: vec![1, 2, 9, 0, 0, 0, 0, 0, 0],
        };
        assert!(matches!(bad_enum.decode(), Err(ReportError::Malformed(_))));
    }
}
