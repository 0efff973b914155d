#![warn(missing_docs, unreachable_pub)]
//! The wire protocol: every message, the control-stream framing and the relay header.
//!
//! This module is the single source of truth for what goes on the wire;
//! `docs/PROTOCOL.md` describes the same bytes for client authors in other
//! languages, and the golden vectors (`flightsim-p2p vectors`) are generated from
//! these types. Nothing here touches a socket: it encodes and decodes bytes.
//!
//! * Control messages are serde enums encoded with postcard (a compact,
//!   non-self-describing format: varints, length-prefixed strings, enum variant
//!   index then payload). Variants and fields are only ever appended, never
//!   reordered, because the variant index is the tag on the wire.
//! * A control frame is `varint(len) || postcard(message)`, `len <= max_frame_bytes`.
//! * A relay frame (QUIC datagram, WebTransport datagram, or the whole content of
//!   one unidirectional stream) is `varint(peer) || payload`. From a client,
//!   `peer` names the destination (`0` = every other peer in my session); from
//!   the server it names the sender.
//! * On the WebSocket fallback every message is binary and its first byte
//!   says what follows: [`WS_CONTROL`] a control message body (no length
//!   prefix: the WebSocket message is the frame), [`WS_RELAY`] a relay frame.
//!   [`encode_ws_control`], [`ws_relay`] and [`parse_ws`] build and split
//!   them, for the server and the client alike.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

pub mod client_vectors;
pub mod first;
pub mod report;
mod transport;
pub mod vectors;

pub use report::{
    Grade, IceFailReason, IceFailure, LinkPath, LinkReport, Milestone, MilestoneKind, Report,
    ReportV1,
};
pub use transport::{Transport, Via};

/// ALPN for native (Rust, C#) clients speaking raw QUIC.
pub const ALPN_NATIVE: &[u8] = b"fsp2p/1";
/// ALPN for WebTransport (HTTP/3) clients, i.e. browsers.
pub const ALPN_H3: &[u8] = b"h3";
/// Version carried in `Hello` by this crate's clients. Version 2 appends
/// `Hello.access_token`; version 3 has the same `Hello` and lets the client
/// send `Report`; version 4 has the same `Hello` and ends `CreateSession`
/// and `JoinSession` with `region_rtts`; version 5 has the same messages
/// and means "I follow an unasked `Redirect(Placement)` make-before-break"
/// (PROTOCOL.md §11, "Moving a session"). A server takes 1 to 5
/// ([`MIN_PROTOCOL_VERSION`]).
pub const PROTOCOL_VERSION: u16 = 5;
/// The first version whose connections follow a moved session
/// make-before-break: a server moves a running session only when every
/// member's connection speaks it.
pub const MOVE_PROTOCOL_VERSION: u16 = 5;
/// The first version whose connections may carry `ClientMsg::Report`.
pub const REPORT_PROTOCOL_VERSION: u16 = 3;
/// The first version whose `CreateSession` and `JoinSession` end with
/// `region_rtts` (see [`decode_client`]).
pub const REGION_PROTOCOL_VERSION: u16 = 4;
/// Most entries a `region_rtts` list may have.
pub const MAX_REGION_RTTS: usize = 16;
/// Longest region name, in bytes (`[a-z0-9-]`, at least one).
pub const MAX_REGION_BYTES: usize = 32;
/// Oldest `Hello.version` a server still takes: version 1 is version 2
/// without the access token field.
pub const MIN_PROTOCOL_VERSION: u16 = 1;
/// Longest access token a client may send, in bytes (a server may set a lower cap).
pub const MAX_ACCESS_TOKEN_BYTES: usize = 4096;
/// Path a WebTransport client must connect to.
pub const WEBTRANSPORT_PATH: &str = "/signal";
/// Peer id used in a relay header to mean "every other peer in my session".
pub const ALL_PEERS: PeerId = 0;
/// Length of a resume token in bytes.
pub const RESUME_TOKEN_LEN: usize = 16;
/// Longest display name a client may give, in UTF-8 bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest session password, in UTF-8 bytes.
pub const MAX_PASSWORD_BYTES: usize = 128;

/// A peer's id, unique on one server for the life of the process. Never 0.
pub type PeerId = u32;

/// Messages a client sends on its control stream.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ClientMsg {
    /// 0: first message on every connection.
    Hello(Hello),
    /// 1: create a session and become its host.
    CreateSession(CreateSession),
    /// 2: join a session by its code.
    JoinSession(JoinSession),
    /// 3: deliver a signal to one peer of my session (`to = 0`: to every other peer).
    Signal {
        /// The receiving peer, or 0 for every other peer.
        to: PeerId,
        /// What to deliver.
        signal: Signal,
    },
    /// 4: leave my session (the connection stays open).
    LeaveSession,
    /// 5: measure round-trip time; answered with `Pong`.
    Ping {
        /// Any value; the `Pong` carries it back.
        client_time_ms: u64,
    },
    /// 6: (version 3) connection-quality telemetry; no answer (PROTOCOL.md §14).
    Report(Report),
}

/// Messages the server sends on a client's control stream.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ServerMsg {
    /// 0: answer to `Hello`.
    Welcome(Welcome),
    /// 1: answer to `CreateSession`.
    SessionCreated(SessionInfo),
    /// 2: answer to `JoinSession`, or sent after `Welcome` when a resume put the peer back in its session.
    SessionJoined(SessionInfo),
    /// 3: another peer joined my session.
    PeerJoined(PeerInfo),
    /// 4: another peer left my session for good.
    PeerLeft {
        /// Who left.
        peer: PeerId,
        /// Why.
        reason: LeaveReason,
    },
    /// 5: the host role moved to another peer (the old host left).
    HostChanged {
        /// The new host.
        host: PeerId,
    },
    /// 6: a signal from another peer of my session.
    Signal {
        /// The sending peer.
        from: PeerId,
        /// What it sent.
        signal: Signal,
    },
    /// 7: a request failed, or the connection is about to be closed.
    Error {
        /// An [`ErrorCode`] as a number.
        code: u16,
        /// Details for people; not stable.
        message: String,
    },
    /// 8: answer to `Ping`.
    Pong {
        /// The value the `Ping` carried.
        client_time_ms: u64,
        /// The server's clock, milliseconds since the Unix epoch.
        server_time_ms: u64,
    },
    /// 9: I am no longer in a session (answer to `LeaveSession`, or the session expired).
    SessionLeft {
        /// Why.
        reason: LeaveReason,
    },
    /// 10: a peer of my session lost its connection (`online = false`) and may resume, or resumed (`true`).
    PeerStatus {
        /// The peer.
        peer: PeerId,
        /// Whether it is connected now.
        online: bool,
    },
    /// 11: the server is shutting down; reconnect (with the resume token) after the delay.
    GoingAway {
        /// How long to wait before reconnecting.
        reconnect_after_ms: u32,
        /// Details for people.
        message: String,
    },
    /// 12: (cluster mode only) go to another node of the cluster. Close this
    /// connection, connect to `node`, say `Hello` (with the resume token if
    /// I am in a session), and send again the `CreateSession` or
    /// `JoinSession` this node did not answer. Answers `Hello` (instead of
    /// `Welcome`), `JoinSession` or `CreateSession`, or comes unasked when
    /// this node drains or lost the session to another node.
    Redirect(Redirect),
}

/// Where and why a client should go (see [`ServerMsg::Redirect`]).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// Why.
    pub reason: RedirectReason,
    /// The node to go to.
    pub node: NodeAddr,
}

/// Why a client is sent to another node.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RedirectReason {
    /// 0: the session (asked for by `JoinSession` or by a resume token) lives on that node.
    Session,
    /// 1: this node is shutting down and handed my session to that node.
    Draining,
    /// 2: my session moved to that node (another node took it over).
    Moved,
    /// 3: new sessions go to that node (it is less loaded).
    Placement,
}

impl RedirectReason {
    /// Every reason, in order.
    pub const ALL: [RedirectReason; 4] = [
        RedirectReason::Session,
        RedirectReason::Draining,
        RedirectReason::Moved,
        RedirectReason::Placement,
    ];

    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            RedirectReason::Session => "session",
            RedirectReason::Draining => "draining",
            RedirectReason::Moved => "moved",
            RedirectReason::Placement => "placement",
        }
    }
}

/// How clients reach one node of a cluster, as the node announces itself.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct NodeAddr {
    /// The node's name (for logs).
    pub name: String,
    /// Its UDP `host:port` for raw QUIC and WebTransport
    /// (`https://{quic}/signal`); empty when it takes no UDP.
    pub quic: String,
    /// Base URL of its HTTP port (`http://host:port` or `https://host`);
    /// the WebSocket fallback is `{http}/ws` with the scheme changed to
    /// `ws`/`wss`. Empty when it has none.
    pub http: String,
    /// SHA-256 of its self-signed certificate's DER, to pin
    /// (`serverCertificateHashes`); `None` when its certificate is CA-signed.
    pub cert_sha256: Option<Vec<u8>>,
}

/// The client's introduction.
///
/// Versioned on the wire: `version` comes first, and the fields after
/// `resume_token` exist only from the version that added them (version 2:
/// `access_token`). A version-1 `Hello` is the same bytes without them, so
/// older clients keep working; encoding writes exactly the fields of
/// `version` (a token on a version-1 `Hello` is not sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] (or any version down to [`MIN_PROTOCOL_VERSION`]).
    pub version: u16,
    /// What kind of program this is.
    pub client: ClientKind,
    /// How this client wants relayed frames delivered to it.
    pub relay_mode: RelayMode,
    /// Display name shown to other peers (at most 64 UTF-8 bytes; may be empty).
    pub name: String,
    /// Token from an earlier `Welcome`, to get the same peer id and seat back.
    pub resume_token: Option<Vec<u8>>,
    /// (version 2) The access token from the game's backend, on a server
    /// that requires one (`serve --auth`). A token in the connection's URL
    /// (`?access_token=`) counts when this is `None`.
    pub access_token: Option<String>,
}

impl Serialize for Hello {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let v2 = self.version >= 2;
        let mut t = s.serialize_tuple(if v2 { 6 } else { 5 })?;
        t.serialize_element(&self.version)?;
        t.serialize_element(&self.client)?;
        t.serialize_element(&self.relay_mode)?;
        t.serialize_element(&self.name)?;
        t.serialize_element(&self.resume_token)?;
        if v2 {
            t.serialize_element(&self.access_token)?;
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for Hello {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Hello, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = Hello;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "Hello: version, client, relay_mode, name, resume_token[, access_token]",
                )
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Hello, A::Error> {
                use serde::de::Error;
                let missing = |n| A::Error::invalid_length(n, &self);
                let version: u16 = a.next_element()?.ok_or_else(|| missing(0))?;
                let client = a.next_element()?.ok_or_else(|| missing(1))?;
                let relay_mode = a.next_element()?.ok_or_else(|| missing(2))?;
                let name = a.next_element()?.ok_or_else(|| missing(3))?;
                let resume_token = a.next_element()?.ok_or_else(|| missing(4))?;
                // Only a version that has the field carries it: a version-1
                // Hello ends here (and anything after it is trailing bytes).
                let access_token = if version >= 2 {
                    a.next_element()?.ok_or_else(|| missing(5))?
                } else {
                    None
                };
                Ok(Hello {
                    version,
                    client,
                    relay_mode,
                    name,
                    resume_token,
                    access_token,
                })
            }
        }
        d.deserialize_tuple(6, Fields)
    }
}

/// What kind of program a client is (for logs and metrics only).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKind {
    /// The Rust client of this crate.
    Rust,
    /// The .NET client.
    DotNet,
    /// A browser (WebTransport or WebSocket).
    Browser,
    /// Anything else.
    Other,
}

impl ClientKind {
    /// Lower-case name, used in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Rust => "rust",
            ClientKind::DotNet => "dotnet",
            ClientKind::Browser => "browser",
            ClientKind::Other => "other",
        }
    }
}

/// How relayed frames travel between this client and the server.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelayMode {
    /// QUIC (or WebTransport) datagrams: unreliable, unordered, no head-of-line blocking.
    Datagram,
    /// One unidirectional stream per frame, for QUIC stacks without datagrams (System.Net.Quic).
    Stream,
}

/// The server's answer to `Hello`: who I am here and what I may do.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The protocol version the server speaks.
    pub version: u16,
    /// My peer id on this server.
    pub peer_id: PeerId,
    /// Opaque; send it in `Hello.resume_token` when reconnecting.
    pub resume_token: Vec<u8>,
    /// True when the resume token was accepted and this is the old peer id.
    pub resumed: bool,
    /// For `RTCPeerConnection({ iceServers })`; TURN entries carry short-lived credentials.
    pub ice_servers: Vec<IceServer>,
    /// The limits the server enforces on this connection.
    pub limits: Limits,
    /// The server's clock, milliseconds since the Unix epoch.
    pub server_time_ms: u64,
}

/// One entry of WebRTC's `iceServers`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    /// `stun:` and `turn:` URLs.
    pub urls: Vec<String>,
    /// TURN user name.
    pub username: Option<String>,
    /// TURN password.
    pub credential: Option<String>,
}

/// Limits the server enforces on this connection, so a client can stay under them.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
/// A rate of 0 means unlimited.
pub struct Limits {
    /// Longest control frame body, in bytes.
    pub max_frame_bytes: u32,
    /// Largest relay payload (after the header), in bytes.
    pub max_relay_payload: u32,
    /// Relay frames I may send per second.
    pub relay_datagrams_per_sec: u32,
    /// Relay payload bytes I may send per second.
    pub relay_bytes_per_sec: u32,
    /// Control messages I may send per second.
    pub signals_per_sec: u32,
    /// Most seats a session may have.
    pub max_peers_per_session: u32,
    /// How long my seat is kept after my connection is lost, for a resume.
    pub resume_grace_ms: u32,
}

/// Create a session.
///
/// Versioned on the wire like [`Hello`], but by the connection's version:
/// on a connection whose `Hello` said 4 or more, the message ends with
/// `region_rtts`; before that it has no such field. [`encode`] and
/// [`decode`] write and read the layout without it (`region_rtts` is then
/// not sent, and read as empty); [`encode_client`] and [`decode_client`]
/// take the connection's version.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateSession {
    /// Seats including the host; 0 means the server's maximum.
    pub max_peers: u32,
    /// A password joiners must give (at most 128 UTF-8 bytes).
    pub password: Option<String>,
    /// (version 4) The client's measured round trips to the cluster's
    /// regions (PROTOCOL.md §11, "Regions"); may be empty.
    #[serde(skip)]
    pub region_rtts: Vec<RegionRtt>,
}

/// Join a session. Versioned on the wire like [`CreateSession`].
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinSession {
    /// Join code as typed; case, spaces, dashes and the look-alikes O/I/L are forgiven.
    pub code: String,
    /// The session's password, if it has one.
    pub password: Option<String>,
    /// (version 4) The client's measured round trips to the cluster's
    /// regions; may be empty.
    #[serde(skip)]
    pub region_rtts: Vec<RegionRtt>,
}

/// (version 4) One measured round trip to one region of a cluster.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegionRtt {
    /// The region's name as `GET /nodes` gives it (1 to 32 bytes of `[a-z0-9-]`).
    pub region: String,
    /// The measured round trip, milliseconds.
    pub rtt_ms: u32,
}

/// Whether `name` is a valid region name: 1 to [`MAX_REGION_BYTES`] bytes
/// of `a`-`z`, `0`-`9` and `-`.
pub fn valid_region(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_REGION_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Why a `region_rtts` list is refused (`invalid_argument`), or `None`
/// when it is valid: at most [`MAX_REGION_RTTS`] entries, each region
/// name valid and given once.
pub fn region_rtts_problem(rtts: &[RegionRtt]) -> Option<String> {
    if rtts.len() > MAX_REGION_RTTS {
        return Some(format!(
            "region_rtts has {} entries; at most {MAX_REGION_RTTS}",
            rtts.len()
        ));
    }
    for (i, r) in rtts.iter().enumerate() {
        if !valid_region(&r.region) {
            return Some(format!(
                "region_rtts[{i}]: a region name is 1 to {MAX_REGION_BYTES} bytes of a-z, 0-9 and -"
            ));
        }
        if rtts[..i].iter().any(|o| o.region == r.region) {
            return Some(format!("region_rtts[{i}]: region {} given twice", r.region));
        }
    }
    None
}

/// A session as its members see it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The join code.
    pub code: String,
    /// The host's peer id.
    pub host: PeerId,
    /// Seats, the host's included.
    pub max_peers: u32,
    /// The session ends after this long without signaling or relay traffic.
    pub idle_ttl_secs: u32,
    /// Everyone in the session, me included, in join order.
    pub peers: Vec<PeerInfo>,
}

/// A member of a session.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its peer id.
    pub id: PeerId,
    /// Its display name.
    pub name: String,
    /// What kind of program it is.
    pub client: ClientKind,
}

/// WebRTC signaling payloads, relayed verbatim between peers of one session.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// An SDP offer.
    Offer {
        /// The session description.
        sdp: String,
    },
    /// An SDP answer.
    Answer {
        /// The session description.
        sdp: String,
    },
    /// One trickled ICE candidate, as `RTCIceCandidate` has it.
    IceCandidate {
        /// The candidate line.
        candidate: String,
        /// The media stream's identification tag.
        sdp_mid: Option<String>,
        /// The media description's index.
        sdp_mline_index: Option<u16>,
    },
    /// No more candidates follow.
    EndOfCandidates,
    /// Anything the application wants to send reliably through the server.
    App {
        /// The application's bytes.
        data: Vec<u8>,
    },
}

impl Signal {
    /// What a signal costs its receiver's signal budget: its variable-length
    /// contents plus a little for the framing.
    pub fn budget_len(&self) -> usize {
        16 + match self {
            Signal::Offer { sdp } | Signal::Answer { sdp } => sdp.len(),
            Signal::IceCandidate {
                candidate, sdp_mid, ..
            } => candidate.len() + sdp_mid.as_ref().map_or(0, String::len),
            Signal::EndOfCandidates => 0,
            Signal::App { data } => data.len(),
        }
    }
}

/// Why a peer left a session, or a session ended.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// The peer sent `LeaveSession`, or closed its connection cleanly.
    Left,
    /// The peer's connection was lost and it did not resume within the grace period.
    TimedOut,
    /// The session saw no traffic for its idle TTL.
    SessionExpired,
    /// The server is shutting down.
    ServerShutdown,
}

/// Stable error codes carried in `ServerMsg::Error` and used as QUIC application close codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// Undecodable control frame (garbage, truncated, unknown tag, trailing bytes). Fatal.
    BadMessage = 1,
    /// Control frame longer than `max_frame_bytes`. Fatal.
    FrameTooLarge = 2,
    /// `Hello.version` is not supported. Fatal.
    UnsupportedVersion = 3,
    /// Message out of order (e.g. anything before `Hello`, a second `Hello`). Fatal.
    ProtocolViolation = 4,
    /// Too many control messages per second; the message was dropped.
    RateLimited = 5,
    /// The server has no room for another connection. Fatal.
    ServerFull = 6,
    /// The server is shutting down. Fatal.
    ShuttingDown = 7,
    /// A bug on the server; the request was not done.
    Internal = 8,
    /// A field is out of range (name too long, bad `max_peers`, ...).
    InvalidArgument = 9,
    /// No session has that join code.
    UnknownSession = 10,
    /// The session has no free seat.
    SessionFull = 11,
    /// The session's password is not the one given.
    WrongPassword = 12,
    /// Leave the current session before creating or joining another.
    AlreadyInSession = 13,
    /// The request needs a session and I am in none.
    NotInSession = 14,
    /// The target peer is not in my session.
    UnknownPeer = 15,
    /// The server has no room for another session.
    TooManySessions = 16,
    /// Too many failed joins on this connection (brute-force guard). Fatal.
    TooManyJoinAttempts = 17,
    /// The resume token is unknown or expired; a fresh `Welcome` follows.
    ResumeFailed = 18,
    /// The client did not say `Hello` in time. Fatal.
    HelloTimeout = 19,
    /// Another connection resumed this peer; this one is closed. Fatal.
    Replaced = 20,
    /// The client did not read its control stream fast enough. Fatal.
    SlowConsumer = 21,
    /// (cluster mode) The request needs the cluster directory (Redis), which
    /// cannot be reached now; retry in a moment. Not fatal as the answer to
    /// `JoinSession` or `CreateSession`: the connection stays. As the answer
    /// to a `Hello` whose resume token this node does not know, the server
    /// closes the connection with this code: reconnect with the same token
    /// (any node), as after a lost connection.
    ClusterUnavailable = 22,
    /// (access control) This server needs an access token and the client
    /// sent none (`Hello.access_token`, or `?access_token=` in the URL). Fatal.
    TokenRequired = 23,
    /// (access control) The token is refused: malformed, too long, an
    /// algorithm or key this server does not take, a bad signature, or
    /// another deployment's audience (the message says which). Fatal: the
    /// same token will never pass.
    TokenInvalid = 24,
    /// (access control) The token has expired (or is not valid yet). Closes
    /// the connection; a client that can get a fresh token reconnects with
    /// it (resuming its seat). Sent first as a warning, without a close,
    /// before a token expires in session.
    TokenExpired = 25,
    /// (access control) The token does not allow this request (create a
    /// session, join that session, that many peers). The connection stays.
    Forbidden = 26,
    /// (access control) The operator revoked this token or its player. Fatal.
    TokenRevoked = 27,
}

impl ErrorCode {
    /// Every code, in order.
    pub const ALL: [ErrorCode; 27] = [
        ErrorCode::BadMessage,
        ErrorCode::FrameTooLarge,
        ErrorCode::UnsupportedVersion,
        ErrorCode::ProtocolViolation,
        ErrorCode::RateLimited,
        ErrorCode::ServerFull,
        ErrorCode::ShuttingDown,
        ErrorCode::Internal,
        ErrorCode::InvalidArgument,
        ErrorCode::UnknownSession,
        ErrorCode::SessionFull,
        ErrorCode::WrongPassword,
        ErrorCode::AlreadyInSession,
        ErrorCode::NotInSession,
        ErrorCode::UnknownPeer,
        ErrorCode::TooManySessions,
        ErrorCode::TooManyJoinAttempts,
        ErrorCode::ResumeFailed,
        ErrorCode::HelloTimeout,
        ErrorCode::Replaced,
        ErrorCode::SlowConsumer,
        ErrorCode::ClusterUnavailable,
        ErrorCode::TokenRequired,
        ErrorCode::TokenInvalid,
        ErrorCode::TokenExpired,
        ErrorCode::Forbidden,
        ErrorCode::TokenRevoked,
    ];

    /// The code with number `v`, if there is one.
    pub fn from_u16(v: u16) -> Option<ErrorCode> {
        Self::ALL.into_iter().find(|c| *c as u16 == v)
    }

    /// Snake-case name, used in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::ProtocolViolation => "protocol_violation",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::ServerFull => "server_full",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::UnknownSession => "unknown_session",
            ErrorCode::SessionFull => "session_full",
            ErrorCode::WrongPassword => "wrong_password",
            ErrorCode::AlreadyInSession => "already_in_session",
            ErrorCode::NotInSession => "not_in_session",
            ErrorCode::UnknownPeer => "unknown_peer",
            ErrorCode::TooManySessions => "too_many_sessions",
            ErrorCode::TooManyJoinAttempts => "too_many_join_attempts",
            ErrorCode::ResumeFailed => "resume_failed",
            ErrorCode::HelloTimeout => "hello_timeout",
            ErrorCode::Replaced => "replaced",
            ErrorCode::SlowConsumer => "slow_consumer",
            ErrorCode::ClusterUnavailable => "cluster_unavailable",
            ErrorCode::TokenRequired => "token_required",
            ErrorCode::TokenInvalid => "token_invalid",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TokenRevoked => "token_revoked",
        }
    }

    /// Fatal errors are always followed by the server closing the connection with this code.
    /// `too_many_join_attempts` is fatal only when the connection itself failed too often
    /// (then a close follows); refused for its address's budget, the connection stays.
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            ErrorCode::BadMessage
                | ErrorCode::FrameTooLarge
                | ErrorCode::UnsupportedVersion
                | ErrorCode::ProtocolViolation
                | ErrorCode::ServerFull
                | ErrorCode::ShuttingDown
                | ErrorCode::HelloTimeout
                | ErrorCode::Replaced
                | ErrorCode::SlowConsumer
                | ErrorCode::TokenRequired
                | ErrorCode::TokenInvalid
                | ErrorCode::TokenRevoked
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.as_str(), *self as u16)
    }
}

/// Why bytes could not be turned into a message or frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// A control frame declares more bytes than allowed.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The declared length.
        len: u64,
        /// The limit.
        max: u32,
    },
    /// A varint is malformed or too large.
    #[error("varint longer than 5 bytes or above u32::MAX")]
    BadVarint,
    /// The body is not a message (unknown tag, truncated, bad value).
    #[error("message does not decode: {0}")]
    Postcard(String),
    /// Bytes follow the message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// A relay frame without its peer header.
    #[error("relay frame has no header")]
    EmptyRelayFrame,
    /// A WebSocket message whose type byte is neither [`WS_CONTROL`] nor [`WS_RELAY`].
    #[error("a WebSocket message must start with 0x00 (control) or 0x01 (relay), not {0:#04x}")]
    UnknownWsType(u8),
    /// A WebSocket message without even a type byte.
    #[error("empty WebSocket message")]
    EmptyWsMessage,
}

impl DecodeError {
    /// The error code a server answers this with.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            _ => ErrorCode::BadMessage,
        }
    }
}

/// Decode exactly one message from `bytes`; trailing bytes are an error, so every
/// implementation round-trips byte for byte.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (msg, rest) =
        postcard::take_from_bytes(bytes).map_err(|e| DecodeError::Postcard(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(msg)
}

/// Encode one message body (no length prefix).
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // postcard only fails to serialize types it cannot represent (maps with
    // non-string keys, unsized sequences); none of our types are like that.
    postcard::to_allocvec(msg).expect("protocol types always serialize")
}

/// Encode a client message for a connection speaking `version`: from
/// [`REGION_PROTOCOL_VERSION`] on, `CreateSession` and `JoinSession` end
/// with their `region_rtts` (a postcard sequence); before, they have no
/// such field and it is not sent.
pub fn encode_client(msg: &ClientMsg, version: u16) -> Vec<u8> {
    let mut body = encode(msg);
    if let Some(rtts) = region_rtts_of(msg).filter(|_| version >= REGION_PROTOCOL_VERSION) {
        body = postcard::to_extend(rtts, body).expect("protocol types always serialize");
    }
    body
}

/// [`encode_client`] as a control frame: `varint(len) || body`.
pub fn encode_client_frame(msg: &ClientMsg, version: u16) -> Bytes {
    frame_of(encode_client(msg, version))
}

/// Decode one client message on a connection speaking `version` (the
/// version its `Hello` said; a `Hello` itself decodes the same at any).
/// From [`REGION_PROTOCOL_VERSION`] on, a `CreateSession` or `JoinSession`
/// must end with `region_rtts`; before, it must not. Trailing bytes are an
/// error either way. The list's contents are checked by the server
/// ([`region_rtts_problem`]), not here.
pub fn decode_client(bytes: &[u8], version: u16) -> Result<ClientMsg, DecodeError> {
    let (mut msg, rest) = postcard::take_from_bytes::<ClientMsg>(bytes)
        .map_err(|e| DecodeError::Postcard(e.to_string()))?;
    let rest = match &mut msg {
        ClientMsg::CreateSession(CreateSession { region_rtts, .. })
        | ClientMsg::JoinSession(JoinSession { region_rtts, .. })
            if version >= REGION_PROTOCOL_VERSION =>
        {
            let (rtts, rest) = postcard::take_from_bytes::<Vec<RegionRtt>>(rest)
                .map_err(|e| DecodeError::Postcard(e.to_string()))?;
            *region_rtts = rtts;
            rest
        }
        _ => rest,
    };
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(msg)
}

fn region_rtts_of(msg: &ClientMsg) -> Option<&Vec<RegionRtt>> {
    match msg {
        ClientMsg::CreateSession(c) => Some(&c.region_rtts),
        ClientMsg::JoinSession(j) => Some(&j.region_rtts),
        _ => None,
    }
}

fn frame_of(body: Vec<u8>) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() + 5);
    put_varint(&mut out, body.len() as u32);
    out.put_slice(&body);
    out.freeze()
}

/// Encode one message as a control frame: `varint(len) || body`.
pub fn encode_frame<T: Serialize>(msg: &T) -> Bytes {
    let body = encode(msg);
    let mut out = BytesMut::with_capacity(body.len() + 5);
    put_varint(&mut out, body.len() as u32);
    out.put_slice(&body);
    out.freeze()
}

/// Append an unsigned LEB128 varint (postcard's encoding of u16/u32/u64).
pub fn put_varint(out: &mut impl BufMut, mut v: u32) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// Read a u32 varint from the front of `buf`: `Ok(Some((value, bytes used)))`,
/// `Ok(None)` when `buf` ends before the varint does.
pub fn take_varint(buf: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u64 = 0;
    for (i, b) in buf.iter().enumerate() {
        if i >= 5 {
            return Err(DecodeError::BadVarint);
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if value > u64::from(u32::MAX) {
                return Err(DecodeError::BadVarint);
            }
            return Ok(Some((value as u32, i + 1)));
        }
    }
    if buf.len() >= 5 {
        return Err(DecodeError::BadVarint);
    }
    Ok(None)
}

/// Incremental splitter for the control stream: feed it bytes as they arrive,
/// take whole frame bodies out. It checks the declared length against the limit
/// before buffering the body, so an oversized frame costs at most 5 bytes.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max: u32,
}

impl FrameDecoder {
    /// A decoder refusing frames longer than `max_frame_bytes`.
    pub fn new(max_frame_bytes: u32) -> Self {
        FrameDecoder {
            buf: BytesMut::new(),
            max: max_frame_bytes,
        }
    }

    /// Buffer bytes as they arrive.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole frame body, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, DecodeError> {
        let Some((len, used)) = take_varint(&self.buf)? else {
            return Ok(None);
        };
        if len > self.max {
            return Err(DecodeError::TooLarge {
                len: u64::from(len),
                max: self.max,
            });
        }
        let total = used + len as usize;
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let mut frame = self.buf.split_to(total);
        Ok(Some(frame.split_off(used).freeze()))
    }
}

/// Split a relay frame into its header peer id and payload.
pub fn parse_relay(frame: &[u8]) -> Result<(PeerId, &[u8]), DecodeError> {
    match take_varint(frame)? {
        Some((peer, used)) => Ok((peer, &frame[used..])),
        None => Err(DecodeError::EmptyRelayFrame),
    }
}

/// Build a relay frame `varint(peer) || payload`.
pub fn relay_frame(peer: PeerId, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 5);
    put_varint(&mut out, peer);
    out.put_slice(payload);
    out.freeze()
}

/// First byte of a WebSocket message carrying a control message body.
pub const WS_CONTROL: u8 = 0x00;
/// First byte of a WebSocket message carrying a relay frame.
pub const WS_RELAY: u8 = 0x01;
/// WebSocket close codes are `4000 + ErrorCode` (4000-4999 is for applications).
pub const WS_CLOSE_BASE: u16 = 4000;

/// One binary WebSocket message, split by its type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsMessage<'a> {
    /// A control message body (postcard, no length prefix).
    Control(&'a [u8]),
    /// A relay frame, `varint(peer) || payload`.
    Relay(&'a [u8]),
}

/// A WebSocket message carrying the control message body `body`.
pub fn ws_control(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 1);
    out.push(WS_CONTROL);
    out.extend_from_slice(body);
    out
}

/// Encode `msg` as a WebSocket control message: type byte, then its body.
pub fn encode_ws_control<T: Serialize>(msg: &T) -> Vec<u8> {
    postcard::to_extend(msg, vec![WS_CONTROL]).expect("protocol types always serialize")
}

/// A WebSocket message carrying the relay frame `frame` (`varint(peer) || payload`).
pub fn ws_relay(frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.len() + 1);
    out.push(WS_RELAY);
    out.extend_from_slice(frame);
    out
}

/// Split a binary WebSocket message by its type byte.
pub fn parse_ws(msg: &[u8]) -> Result<WsMessage<'_>, DecodeError> {
    match msg.split_first() {
        Some((&WS_CONTROL, body)) => Ok(WsMessage::Control(body)),
        Some((&WS_RELAY, frame)) => Ok(WsMessage::Relay(frame)),
        Some((&other, _)) => Err(DecodeError::UnknownWsType(other)),
        None => Err(DecodeError::EmptyWsMessage),
    }
}

/// The WebSocket close code that carries `code` (`4000 + code`).
pub fn ws_close_code(code: ErrorCode) -> u16 {
    WS_CLOSE_BASE + code as u16
}

/// The protocol's close code inside a WebSocket close code: `0` for a normal
/// close (1000), `code - 4000` for 4000-4999, `None` for anything else.
pub fn close_code_from_ws(ws_code: u16) -> Option<u16> {
    match ws_code {
        1000 => Some(0),
        c if (WS_CLOSE_BASE..WS_CLOSE_BASE + 1000).contains(&c) => Some(c - WS_CLOSE_BASE),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngCore, SeedableRng};

    #[test]
    fn varint_round_trip_and_bounds() {
        for v in [0u32, 1, 127, 128, 300, 16_383, 16_384, u32::MAX] {
            let mut b = BytesMut::new();
            put_varint(&mut b, v);
            assert_eq!(take_varint(&b).unwrap(), Some((v, b.len())));
            // Every strict prefix is "need more".
            for cut in 0..b.len() {
                assert_eq!(take_varint(&b[..cut]).unwrap(), None);
            }
        }
        // 2^32 does not fit a u32.
        assert_eq!(
            take_varint(&[0x80, 0x80, 0x80, 0x80, 0x10]),
            Err(DecodeError::BadVarint)
        );
        // Six bytes is over-long.
        assert_eq!(
            take_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
            Err(DecodeError::BadVarint)
        );
    }

    #[test]
    fn postcard_layout_matches_the_document() {
        // Spot checks of docs/PROTOCOL.md's worked examples.
        let ping = encode(&ClientMsg::Ping {
            client_time_ms: 300,
        });
        assert_eq!(ping, vec![5, 0xAC, 0x02]);
        let hello = encode(&ClientMsg::Hello(Hello {
            version: 1,
            client: ClientKind::Browser,
            relay_mode: RelayMode::Datagram,
            name: "Ann".into(),
            resume_token: None,
            access_token: None,
        }));
        assert_eq!(hello, vec![0, 1, 2, 0, 3, b'A', b'n', b'n', 0]);
        let err = encode(&ServerMsg::Error {
            code: ErrorCode::UnknownSession as u16,
            message: "x".into(),
        });
        assert_eq!(err, vec![7, 10, 1, b'x']);
    }

    #[test]
    fn frames_split_across_arbitrary_chunks() {
        let msgs: Vec<ClientMsg> = (0..50)
            .map(|i| ClientMsg::Signal {
                to: i,
                signal: Signal::Offer {
                    sdp: "v=0\r\n".repeat(i as usize * 3),
                },
            })
            .collect();
        let mut wire = Vec::new();
        for m in &msgs {
            wire.extend_from_slice(&encode_frame(m));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut dec = FrameDecoder::new(16 * 1024);
        let mut out = Vec::new();
        let mut at = 0;
        while at < wire.len() {
            let n = rng.random_range(1..40).min(wire.len() - at);
            dec.extend(&wire[at..at + n]);
            at += n;
            while let Some(f) = dec.next_frame().unwrap() {
                out.push(decode::<ClientMsg>(&f).unwrap());
            }
        }
        assert_eq!(out, msgs);
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn oversized_frame_is_refused_from_its_header() {
        let mut dec = FrameDecoder::new(100);
        let mut b = BytesMut::new();
        put_varint(&mut b, 101);
        dec.extend(&b);
        assert_eq!(
            dec.next_frame(),
            Err(DecodeError::TooLarge { len: 101, max: 100 })
        );
    }

    #[test]
    fn trailing_bytes_and_unknown_tags_are_errors() {
        let mut ping = encode(&ClientMsg::Ping { client_time_ms: 1 });
        ping.push(0);
        assert_eq!(
            decode::<ClientMsg>(&ping),
            Err(DecodeError::TrailingBytes(1))
        );
        assert!(decode::<ClientMsg>(&[99]).is_err());
        assert!(decode::<ClientMsg>(&[]).is_err());
        // bool must be 0 or 1.
        let bad_bool = [0u8, 1, 0, 0, 0, 0, 0, 0, 7];
        assert!(decode::<ServerMsg>(&bad_bool).is_err());
    }

    #[test]
    fn random_bytes_never_panic_the_decoders() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let mut buf = vec![0u8; 256];
        for _ in 0..200_000 {
            let n = rng.random_range(0..buf.len());
            rng.fill_bytes(&mut buf[..n]);
            let _ = decode::<ClientMsg>(&buf[..n]);
            let _ = decode::<ServerMsg>(&buf[..n]);
            let _ = parse_relay(&buf[..n]);
            let mut dec = FrameDecoder::new(64);
            dec.extend(&buf[..n]);
            while let Ok(Some(f)) = dec.next_frame() {
                let _ = decode::<ClientMsg>(&f);
            }
        }
    }

    #[test]
    fn relay_header_round_trip() {
        let f = relay_frame(300, b"hello");
        assert_eq!(&f[..], &[0xAC, 0x02, b'h', b'e', b'l', b'l', b'o']);
        assert_eq!(parse_relay(&f).unwrap(), (300, &b"hello"[..]));
        assert_eq!(parse_relay(&[]), Err(DecodeError::EmptyRelayFrame));
        assert_eq!(parse_relay(&[0]).unwrap(), (ALL_PEERS, &b""[..]));
    }

    #[test]
    fn error_codes_are_stable() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_u16(c as u16), Some(c));
        }
        assert_eq!(ErrorCode::UnknownSession as u16, 10);
        assert_eq!(ErrorCode::SlowConsumer as u16, 21);
        assert_eq!(ErrorCode::from_u16(0), None);
    }

    #[test]
    fn websocket_framing_round_trip() {
        let hello = ClientMsg::Ping { client_time_ms: 7 };
        let m = encode_ws_control(&hello);
        assert_eq!(m[0], WS_CONTROL);
        assert_eq!(&m[1..], &encode(&hello)[..]);
        assert_eq!(ws_control(&encode(&hello)), m);
        let WsMessage::Control(body) = parse_ws(&m).unwrap() else {
            panic!("not a control message")
        };
        assert_eq!(decode::<ClientMsg>(body).unwrap(), hello);

        let frame = relay_frame(300, b"hi");
        let m = ws_relay(&frame);
        assert_eq!(&m[..], &[WS_RELAY, 0xAC, 0x02, b'h', b'i']);
        assert_eq!(parse_ws(&m), Ok(WsMessage::Relay(&frame[..])));
        // An empty body of either type is still that type.
        assert_eq!(parse_ws(&[WS_CONTROL]), Ok(WsMessage::Control(&[])));
    }

    #[test]
    fn websocket_framing_rejects_unknown_types() {
        assert_eq!(parse_ws(&[]), Err(DecodeError::EmptyWsMessage));
        assert_eq!(parse_ws(&[7, 1, 2]), Err(DecodeError::UnknownWsType(7)));
        assert_eq!(DecodeError::UnknownWsType(7).code(), ErrorCode::BadMessage);
        assert!(DecodeError::UnknownWsType(7).to_string().contains("0x07"));
    }

    #[test]
    fn websocket_close_codes() {
        assert_eq!(ws_close_code(ErrorCode::FrameTooLarge), 4002);
        assert_eq!(
            close_code_from_ws(4002),
            Some(ErrorCode::FrameTooLarge as u16)
        );
        assert_eq!(close_code_from_ws(1000), Some(0));
        assert_eq!(close_code_from_ws(1001), None);
        assert_eq!(close_code_from_ws(5000), None);
    }
}
