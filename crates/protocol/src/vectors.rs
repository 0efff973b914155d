//! Golden test vectors: every message type with edge values, and malformed inputs.
//!
//! Clients in other languages (C#, JavaScript) check their hand-written codecs
//! against these bytes: decode each `ok` line, re-encode it, compare byte for
//! byte; each `bad` line must be rejected. `docs/vectors.txt` is this output,
//! committed; a test keeps it in step with the code.
//!
//! Format, one vector per line: `ok|bad <TAB> ClientMsg|ServerMsg <TAB> name <TAB> hex`.
//! The hex is a message body (no length prefix).

use std::fmt::Write;

use crate::*;

fn all_client_msgs() -> Vec<(&'static str, ClientMsg)> {
    // Version 1 (no access token field): what clients before version 2 send.
    let hello = |client, relay_mode, name: &str, resume_token| {
        ClientMsg::Hello(Hello {
            version: 1,
            client,
            relay_mode,
            name: name.into(),
            resume_token,
            access_token: None,
        })
    };
    vec![
        ("hello_minimal", hello(ClientKind::Rust, RelayMode::Datagram, "", None)),
        (
            "hello_dotnet_stream_resume",
            hello(ClientKind::DotNet, RelayMode::Stream, "Ann", Some((0u8..16).collect())),
        ),
        (
            "hello_browser_unicode_name",
            hello(ClientKind::Browser, RelayMode::Datagram, "Zoë ✈ 機長", None),
        ),
        (
            "hello_other_max_name",
            hello(ClientKind::Other, RelayMode::Datagram, &"n".repeat(64), Some(vec![0xFF; 16])),
        ),
        (
            "hello_v2_no_token",
            ClientMsg::Hello(Hello {
                version: 2,
                client: ClientKind::Rust,
                relay_mode: RelayMode::Datagram,
                name: String::new(),
                resume_token: None,
                access_token: None,
            }),
        ),
        (
            "hello_v2_token_resume",
            ClientMsg::Hello(Hello {
                version: 2,
                client: ClientKind::Browser,
                relay_mode: RelayMode::Datagram,
                name: "Ann".into(),
                resume_token: Some((0u8..16).collect()),
                access_token: Some("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln".into()),
            }),
        ),
        (
            "hello_version_max",
            ClientMsg::Hello(Hello {
                version: u16::MAX,
                client: ClientKind::Rust,
                relay_mode: RelayMode::Datagram,
                name: String::new(),
                resume_token: Some(vec![]),
                access_token: None,
            }),
        ),
        (
            "create_default",
            ClientMsg::CreateSession(CreateSession {
                max_peers: 0,
                password: None,
            }),
        ),
        (
            "create_password_max_peers",
            ClientMsg::CreateSession(CreateSession {
                max_peers: u32::MAX,
                password: Some("pässwörd".into()),
            }),
        ),
        (
            "join_code",
            ClientMsg::JoinSession(JoinSession {
                code: "7KQ2MX".into(),
                password: None,
            }),
        ),
        (
            "join_code_password_empty",
            ClientMsg::JoinSession(JoinSession {
                code: "7kq-2mx".into(),
                password: Some(String::new()),
            }),
        ),
        (
            "signal_offer",
            ClientMsg::Signal {
                to: 2,
                signal: Signal::Offer {
                    sdp: "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n".into(),
                },
            },
        ),
        (
            "signal_answer_long_sdp",
            ClientMsg::Signal {
                to: 127,
                signal: Signal::Answer {
                    sdp: "a=candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host\r\n".repeat(40),
                },
            },
        ),
        (
            "signal_candidate_full",
            ClientMsg::Signal {
                to: 128,
                signal: Signal::IceCandidate {
                    candidate: "candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 0.0.0.0 rport 0 generation 0".into(),
                    sdp_mid: Some("0".into()),
                    sdp_mline_index: Some(u16::MAX),
                },
            },
        ),
        (
            "signal_candidate_bare",
            ClientMsg::Signal {
                to: u32::MAX,
                signal: Signal::IceCandidate {
                    candidate: String::new(),
                    sdp_mid: None,
                    sdp_mline_index: None,
                },
            },
        ),
        (
            "signal_end_of_candidates_to_all",
            ClientMsg::Signal {
                to: ALL_PEERS,
                signal: Signal::EndOfCandidates,
            },
        ),
        (
            "signal_app_bytes",
            ClientMsg::Signal {
                to: 16_384,
                signal: Signal::App {
                    data: (0..=255).collect(),
                },
            },
        ),
        ("leave", ClientMsg::LeaveSession),
        (
            "hello_v3_no_token",
            ClientMsg::Hello(Hello {
                version: 3,
                client: ClientKind::DotNet,
                relay_mode: RelayMode::Stream,
                name: "Cy".into(),
                resume_token: None,
                access_token: None,
            }),
        ),
        ("report_v1_empty", ClientMsg::Report(Report::v1(&ReportV1::default()))),
        ("report_v1_full", ClientMsg::Report(Report::v1(&full_report()))),
        // A body version this codec does not know: still a valid message
        // (the body is opaque bytes); a server skips it.
        (
            "report_v9_opaque",
            ClientMsg::Report(Report {
                version: 9,
                body: vec![0xDE, 0xAD],
            }),
        ),
        ("ping_zero", ClientMsg::Ping { client_time_ms: 0 }),
        (
            "ping_max",
            ClientMsg::Ping {
                client_time_ms: u64::MAX,
            },
        ),
    ]
}

/// A version-1 report with every path, grade, milestone kind and ICE failure
/// reason (PROTOCOL.md §14 walks through its bytes).
pub fn full_report() -> ReportV1 {
    use crate::report::candidate;
    ReportV1 {
        links: vec![
            LinkReport {
                peer: 2,
                path: LinkPath::Direct,
                grade: Grade::Excellent,
                rtt_bucket: 1,
                loss_bucket: 0,
            },
            LinkReport {
                peer: 300,
                path: LinkPath::Turn,
                grade: Grade::Good,
                rtt_bucket: 4,
                loss_bucket: 2,
            },
            LinkReport {
                peer: 7,
                path: LinkPath::Relay,
                grade: Grade::Poor,
                rtt_bucket: 9,
                loss_bucket: 7,
            },
            LinkReport {
                peer: 8,
                path: LinkPath::Connecting,
                grade: Grade::Unknown,
                rtt_bucket: crate::report::UNKNOWN_BUCKET,
                loss_bucket: crate::report::UNKNOWN_BUCKET,
            },
            LinkReport {
                peer: 9,
                path: LinkPath::Relay,
                grade: Grade::Lost,
                rtt_bucket: 6,
                loss_bucket: 5,
            },
        ],
        setup: vec![
            Milestone {
                kind: MilestoneKind::Welcome,
                path: LinkPath::Connecting,
                ms: 48,
            },
            Milestone {
                kind: MilestoneKind::FirstSignal,
                path: LinkPath::Connecting,
                ms: 130,
            },
            Milestone {
                kind: MilestoneKind::Direct,
                path: LinkPath::Turn,
                ms: 900,
            },
            Milestone {
                kind: MilestoneKind::Relay,
                path: LinkPath::Relay,
                ms: 5_000,
            },
            Milestone {
                kind: MilestoneKind::FirstFrame,
                path: LinkPath::Direct,
                ms: 70_000,
            },
        ],
        ice_failures: IceFailReason::ALL
            .iter()
            .map(|&reason| IceFailure { reason })
            .collect(),
        candidates: candidate::HOST | candidate::SRFLX | candidate::RELAY | candidate::PRFLX,
    }
}

fn all_server_msgs() -> Vec<(String, ServerMsg)> {
    let peers = vec![
        PeerInfo {
            id: 1,
            name: "Ann".into(),
            client: ClientKind::Rust,
        },
        PeerInfo {
            id: 300,
            name: "Bob ✈".into(),
            client: ClientKind::Browser,
        },
        PeerInfo {
            id: u32::MAX,
            name: String::new(),
            client: ClientKind::DotNet,
        },
    ];
    let info = SessionInfo {
        code: "7KQ2MX".into(),
        host: 1,
        max_peers: 16,
        idle_ttl_secs: 1800,
        peers: peers.clone(),
    };
    let limits = Limits {
        max_frame_bytes: 16_384,
        max_relay_payload: 1100,
        relay_datagrams_per_sec: 500,
        relay_bytes_per_sec: 262_144,
        signals_per_sec: 50,
        max_peers_per_session: 16,
        resume_grace_ms: 15_000,
    };
    let mut v: Vec<(String, ServerMsg)> = vec![
        (
            "welcome_full".into(),
            ServerMsg::Welcome(Welcome {
                version: 1,
                peer_id: 42,
                resume_token: (100u8..116).collect(),
                resumed: false,
                ice_servers: vec![
                    IceServer {
                        urls: vec!["stun:turn.example.com:3478".into()],
                        username: None,
                        credential: None,
                    },
                    IceServer {
                        urls: vec![
                            "turn:turn.example.com:3478?transport=udp".into(),
                            "turns:turn.example.com:5349?transport=tcp".into(),
                        ],
                        username: Some("1700003600:42".into()),
                        credential: Some("mJ1xg3cpXWdlgWHeWJ5vVhiWz0U=".into()),
                    },
                ],
                limits,
                server_time_ms: 1_700_000_000_123,
            }),
        ),
        (
            "welcome_resumed_no_ice".into(),
            ServerMsg::Welcome(Welcome {
                version: 1,
                peer_id: u32::MAX,
                resume_token: vec![0; 16],
                resumed: true,
                ice_servers: vec![],
                limits: Limits {
                    max_frame_bytes: u32::MAX,
                    max_relay_payload: 0,
                    relay_datagrams_per_sec: 0,
                    relay_bytes_per_sec: u32::MAX,
                    signals_per_sec: 0,
                    max_peers_per_session: 2,
                    resume_grace_ms: 0,
                },
                server_time_ms: u64::MAX,
            }),
        ),
        (
            "session_created".into(),
            ServerMsg::SessionCreated(SessionInfo {
                peers: peers[..1].to_vec(),
                ..info.clone()
            }),
        ),
        ("session_joined".into(), ServerMsg::SessionJoined(info)),
        (
            "peer_joined".into(),
            ServerMsg::PeerJoined(peers[1].clone()),
        ),
        ("host_changed".into(), ServerMsg::HostChanged { host: 300 }),
        (
            "signal_from".into(),
            ServerMsg::Signal {
                from: 7,
                signal: Signal::IceCandidate {
                    candidate: "candidate:1 1 udp 1 198.51.100.1 3478 typ relay".into(),
                    sdp_mid: Some("data".into()),
                    sdp_mline_index: Some(0),
                },
            },
        ),
        (
            "signal_app_empty".into(),
            ServerMsg::Signal {
                from: 1,
                signal: Signal::App { data: vec![] },
            },
        ),
        (
            "pong".into(),
            ServerMsg::Pong {
                client_time_ms: 123_456,
                server_time_ms: 1_700_000_000_000,
            },
        ),
        (
            "peer_status_offline".into(),
            ServerMsg::PeerStatus {
                peer: 5,
                online: false,
            },
        ),
        (
            "peer_status_online".into(),
            ServerMsg::PeerStatus {
                peer: 5,
                online: true,
            },
        ),
        (
            "going_away".into(),
            ServerMsg::GoingAway {
                reconnect_after_ms: 2000,
                message: "server shutting down".into(),
            },
        ),
        (
            "redirect_session_pinned".into(),
            ServerMsg::Redirect(Redirect {
                reason: RedirectReason::Session,
                node: NodeAddr {
                    name: "node-b".into(),
                    quic: "10.0.0.2:4433".into(),
                    http: "http://10.0.0.2:8080".into(),
                    cert_sha256: Some((0u8..32).collect()),
                },
            }),
        ),
        (
            "redirect_draining_ca".into(),
            ServerMsg::Redirect(Redirect {
                reason: RedirectReason::Draining,
                node: NodeAddr {
                    name: "eu-2".into(),
                    quic: "eu-2.example.com:443".into(),
                    http: "https://eu-2.example.com".into(),
                    cert_sha256: None,
                },
            }),
        ),
        (
            "redirect_moved_ws_only".into(),
            ServerMsg::Redirect(Redirect {
                reason: RedirectReason::Moved,
                node: NodeAddr {
                    name: "c".into(),
                    quic: String::new(),
                    http: "http://[::1]:8081".into(),
                    cert_sha256: None,
                },
            }),
        ),
        (
            "redirect_placement".into(),
            ServerMsg::Redirect(Redirect {
                reason: RedirectReason::Placement,
                node: NodeAddr {
                    name: "d".into(),
                    quic: "127.0.0.1:4434".into(),
                    http: String::new(),
                    cert_sha256: Some(vec![0xAB; 32]),
                },
            }),
        ),
    ];
    for (i, reason) in [
        LeaveReason::Left,
        LeaveReason::TimedOut,
        LeaveReason::SessionExpired,
        LeaveReason::ServerShutdown,
    ]
    .into_iter()
    .enumerate()
    {
        v.push((
            format!("peer_left_{i}"),
            ServerMsg::PeerLeft { peer: 9, reason },
        ));
        v.push((
            format!("session_left_{i}"),
            ServerMsg::SessionLeft { reason },
        ));
    }
    for code in ErrorCode::ALL {
        v.push((
            format!("error_{}", code.as_str()),
            ServerMsg::Error {
                code: code as u16,
                message: format!("{code}"),
            },
        ));
    }
    v
}

/// Malformed bodies each decoder must reject: (type, name, bytes).
fn bad_vectors() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut ping = encode(&ClientMsg::Ping { client_time_ms: 1 });
    ping.push(0);
    let hello = encode(&ClientMsg::Hello(Hello {
        version: 1,
        client: ClientKind::Rust,
        relay_mode: RelayMode::Datagram,
        name: "Ann".into(),
        resume_token: None,
        access_token: None,
    }));
    // A version-1 Hello followed by a token: version 1 has no such field.
    let mut v1_with_token = hello.clone();
    v1_with_token.extend([1, 1, b'x']);
    // A version-2 Hello without its access_token option byte.
    let v2 = encode(&ClientMsg::Hello(Hello {
        version: 2,
        client: ClientKind::Rust,
        relay_mode: RelayMode::Datagram,
        name: "Ann".into(),
        resume_token: None,
        access_token: None,
    }));
    vec![
        ("ClientMsg", "empty", vec![]),
        ("ClientMsg", "hello_v1_with_token", v1_with_token),
        (
            "ClientMsg",
            "hello_v2_without_token_field",
            v2[..v2.len() - 1].to_vec(),
        ),
        ("ClientMsg", "unknown_tag", vec![7]),
        // A Report whose body length says 5 bytes and has 1.
        ("ClientMsg", "report_body_past_end", vec![6, 1, 5, 0]),
        ("ClientMsg", "unknown_tag_varint", vec![0x80, 0x01]),
        ("ClientMsg", "trailing_byte", ping),
        (
            "ClientMsg",
            "truncated_hello",
            hello[..hello.len() - 2].to_vec(),
        ),
        // u16 version as a 4-byte varint (too long for a u16).
        (
            "ClientMsg",
            "overlong_u16",
            vec![0, 0x81, 0x80, 0x80, 0x00, 0, 0, 0, 0],
        ),
        // u16 version 65536 (overflows).
        (
            "ClientMsg",
            "overflow_u16",
            vec![0, 0x80, 0x80, 0x04, 0, 0, 0, 0],
        ),
        // u32 `to` as a 6-byte varint.
        (
            "ClientMsg",
            "overlong_u32",
            vec![3, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 3],
        ),
        // u64 ping as an 11-byte varint.
        ("ClientMsg", "overlong_u64", {
            let mut b = vec![5];
            b.extend([0x80; 10]);
            b.push(0);
            b
        }),
        ("ClientMsg", "bad_client_kind", vec![0, 1, 4, 0, 0, 0]),
        ("ClientMsg", "bad_relay_mode", vec![0, 1, 0, 2, 0, 0]),
        ("ClientMsg", "bad_option_tag", vec![0, 1, 0, 0, 0, 2]),
        ("ClientMsg", "bad_signal_tag", vec![3, 1, 5]),
        ("ClientMsg", "string_past_end", vec![2, 10, b'A', b'B', 0]),
        ("ClientMsg", "invalid_utf8", vec![2, 2, 0xC3, 0x28, 0]),
        ("ServerMsg", "empty", vec![]),
        ("ServerMsg", "unknown_tag", vec![13]),
        // Redirect with reason 4 (there are four, 0-3).
        (
            "ServerMsg",
            "bad_redirect_reason",
            vec![12, 4, 1, b'b', 0, 0, 0],
        ),
        // Redirect whose cert_sha256 says 32 bytes and has 2.
        (
            "ServerMsg",
            "truncated_redirect_cert",
            vec![12, 0, 1, b'b', 0, 0, 1, 32, 1, 2],
        ),
        ("ServerMsg", "bad_bool", vec![10, 5, 2]),
        ("ServerMsg", "bad_leave_reason", vec![9, 4]),
        ("ServerMsg", "truncated_error", vec![7, 10, 5, b'a']),
        ("ServerMsg", "trailing_bytes", vec![5, 2, 0, 0]),
    ]
}

/// The whole vector file.
pub fn render() -> String {
    let mut out = String::new();
    out.push_str("# FlightSim P2P protocol golden vectors (Hello versions 1 and 2): ok|bad, type, name, hex body (no length prefix)\n");
    for (name, m) in all_client_msgs() {
        let _ = writeln!(out, "ok\tClientMsg\t{name}\t{}", hex::encode(encode(&m)));
    }
    for (name, m) in all_server_msgs() {
        let _ = writeln!(out, "ok\tServerMsg\t{name}\t{}", hex::encode(encode(&m)));
    }
    for (ty, name, bytes) in bad_vectors() {
        let _ = writeln!(out, "bad\t{ty}\t{name}\t{}", hex::encode(bytes));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_vectors_round_trip_and_bad_ones_fail() {
        for (name, m) in all_client_msgs() {
            let b = encode(&m);
            assert_eq!(decode::<ClientMsg>(&b).unwrap(), m, "{name}");
        }
        for (name, m) in all_server_msgs() {
            let b = encode(&m);
            assert_eq!(decode::<ServerMsg>(&b).unwrap(), m, "{name}");
        }
        for (ty, name, b) in bad_vectors() {
            let rejected = match ty {
                "ClientMsg" => decode::<ClientMsg>(&b).is_err(),
                _ => decode::<ServerMsg>(&b).is_err(),
            };
            assert!(rejected, "{ty} {name} must be rejected");
        }
    }

    #[test]
    fn committed_vector_file_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/vectors.txt");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == render(),
            "docs/vectors.txt is stale: run `cargo run -- vectors > docs/vectors.txt`"
        );
    }

    #[test]
    fn protocol_md_examples_are_right() {
        let frame = |m: &ClientMsg| hex::encode(encode_frame(m));
        assert_eq!(
            frame(&ClientMsg::Ping {
                client_time_ms: 300
            }),
            "0305ac02"
        );
        assert_eq!(
            frame(&ClientMsg::CreateSession(CreateSession {
                max_peers: 0,
                password: None
            })),
            "03010000"
        );
        assert_eq!(
            frame(&ClientMsg::JoinSession(JoinSession {
                code: "7KQ2MX".into(),
                password: Some("pw".into())
            })),
            "0c0206374b51324d5801027077"
        );
        assert_eq!(frame(&ClientMsg::LeaveSession), "0104");
        assert_eq!(
            hex::encode(encode_frame(&ServerMsg::HostChanged { host: 2 })),
            "020502"
        );
        assert_eq!(
            hex::encode(encode_frame(&ServerMsg::Error {
                code: 10,
                message: "x".into()
            })),
            "04070a0178"
        );
        assert_eq!(hex::encode(relay_frame(300, b"hi")), "ac026869");
    }
}
