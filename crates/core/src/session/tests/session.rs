//! The session core's tests: one server's core driven by hand through the
//! shared harness ([`World`], tests/harness.rs), no network, no clock.

use super::harness::World;
use super::*;
use crate::protocol::{ClientKind, RelayMode};

fn limits() -> Limits {
    Limits {
        max_sessions: 4,
        max_peers_per_session: 4,
        max_join_attempts: 3,
        ..Limits::default()
    }
}

impl World {
    fn new() -> Self {
        Self::with(limits(), IceConfig::default())
    }
    fn with(limits: Limits, ice: IceConfig) -> Self {
        World::start(
            Core::with_rng(limits, ice, StdRng::seed_from_u64(1)),
            IpAddr::from([192, 0, 2, 1]),
        )
    }
    /// Open a connection and say hello; returns (conn, peer, token).
    fn hello_as(&mut self, name: &str, mode: RelayMode) -> (ConnId, PeerId, Vec<u8>) {
        let conn = self.open();
        self.msg(conn, hello(name, mode, None));
        match self.sent_to(conn).pop() {
            Some(ServerMsg::Welcome(w)) => (conn, w.peer_id, w.resume_token),
            other => panic!("expected Welcome, got {other:?}"),
        }
    }
    fn host(&mut self) -> (ConnId, PeerId, String) {
        let (c, p, _) = self.hello_as("host", RelayMode::Datagram);
        self.msg(
            c,
            ClientMsg::CreateSession(CreateSession {
                max_peers: 0,
                password: None,
            }),
        );
        match self.sent_to(c).pop() {
            Some(ServerMsg::SessionCreated(info)) => (c, p, info.code),
            other => panic!("expected SessionCreated, got {other:?}"),
        }
    }
    fn joiner(&mut self, code: &str, mode: RelayMode) -> (ConnId, PeerId) {
        let (c, p, _) = self.hello_as("joiner", mode);
        self.msg(c, join(code));
        let out = self.sent_to(c);
        assert!(
            matches!(out.last(), Some(ServerMsg::SessionJoined(_))),
            "{out:?}"
        );
        (c, p)
    }
}

fn hello(name: &str, mode: RelayMode, token: Option<Vec<u8>>) -> ClientMsg {
    ClientMsg::Hello(Hello {
        version: PROTOCOL_VERSION,
        client: ClientKind::Rust,
        relay_mode: mode,
        name: name.into(),
        resume_token: token,
        access_token: None,
    })
}

fn join(code: &str) -> ClientMsg {
    ClientMsg::JoinSession(JoinSession {
        code: code.into(),
        password: None,
    })
}

fn error_code(msgs: &[ServerMsg]) -> Option<u16> {
    msgs.iter().rev().find_map(|m| match m {
        ServerMsg::Error { code, .. } => Some(*code),
        _ => None,
    })
}

#[test]
fn codes_are_crockford_and_typing_is_forgiven() {
    let mut w = World::new();
    let (_, _, code) = w.host();
    assert_eq!(code.len(), CODE_LEN);
    assert!(code.bytes().all(|b| CODE_ALPHABET.contains(&b)));
    let typed = format!("{}-{}", &code[..3], &code[3..]).to_lowercase();
    let (c, _) = w.joiner(&typed, RelayMode::Datagram);
    assert!(w.core.peer_of(c).is_some());
    assert_eq!(normalize_code("o1l-Ix"), "0111X");
}

#[test]
fn join_tells_everyone_and_signals_reach_only_the_target() {
    let mut w = World::new();
    let (hc, hp, code) = w.host();
    let (ac, ap) = w.joiner(&code, RelayMode::Datagram);
    let out = w.sent_to(hc);
    assert!(w.outputs().is_empty());
    assert_eq!(out.len(), 0, "outputs were drained by joiner()");
    let (bc, bp) = {
        let (c, p, _) = w.hello_as("b", RelayMode::Stream);
        w.msg(c, join(&code));
        let all = w.outputs();
        let to_b: Vec<_> = all
            .iter()
            .filter(|o| matches!(o, Output::Send { conn, .. } if *conn == c))
            .collect();
        match to_b.as_slice() {
            [Output::Send {
                msg: ServerMsg::SessionJoined(info),
                ..
            }] => {
                assert_eq!(info.host, hp);
                assert_eq!(
                    info.peers.iter().map(|p| p.id).collect::<Vec<_>>(),
                    vec![hp, ap, p]
                );
            }
            other => panic!("{other:?}"),
        }
        let joined_to: Vec<ConnId> = all
            .iter()
            .filter_map(|o| match o {
                Output::Send {
                    conn,
                    msg: ServerMsg::PeerJoined(info),
                } if info.id == p => Some(*conn),
                _ => None,
            })
            .collect();
        assert_eq!(joined_to, vec![hc, ac]);
        (c, p)
    };
    let offer = Signal::Offer { sdp: "v=0".into() };
    w.msg(
        hc,
        ClientMsg::Signal {
            to: bp,
            signal: offer.clone(),
        },
    );
    assert_eq!(
        w.outputs(),
        vec![Output::Send {
            conn: bc,
            msg: ServerMsg::Signal {
                from: hp,
                signal: offer
            },
        }]
    );
    // Broadcast signal reaches both others, not the sender.
    w.msg(
        ac,
        ClientMsg::Signal {
            to: ALL_PEERS,
            signal: Signal::EndOfCandidates,
        },
    );
    let conns: Vec<ConnId> = w
        .outputs()
        .iter()
        .map(|o| match o {
            Output::Send { conn, .. } => *conn,
            _ => 0,
        })
        .collect();
    assert_eq!(conns, vec![hc, bc]);
}

#[test]
fn sessions_are_isolated_for_signals_and_relay() {
    let mut w = World::new();
    let (h1, _, code1) = w.host();
    let (_a1, p1) = w.joiner(&code1, RelayMode::Datagram);
    let (h2, _, code2) = w.host();
    let (a2, p2) = w.joiner(&code2, RelayMode::Datagram);
    // Signal across sessions: refused, nothing delivered.
    w.msg(
        h1,
        ClientMsg::Signal {
            to: p2,
            signal: Signal::EndOfCandidates,
        },
    );
    let out = w.outputs();
    assert_eq!(out.len(), 1);
    assert!(
        matches!(&out[0], Output::Send { conn, msg: ServerMsg::Error { code: 15, .. } } if *conn == h1)
    );
    // Relay across sessions: dropped.
    assert_eq!(w.route(h1, p2, 10), Err(RelayDrop::UnknownPeer));
    // Relay to all stays in the session.
    let (_, targets) = w.route(h2, ALL_PEERS, 10).unwrap();
    assert_eq!(
        targets,
        vec![Target {
            conn: a2,
            mode: RelayMode::Datagram
        }]
    );
    let (from, targets) = w.route(h1, p1, 10).unwrap();
    assert_eq!(targets.len(), 1);
    assert_ne!(from, p1);
}

#[test]
fn relay_checks_membership_size_and_rate() {
    let mut l = limits();
    l.relay_datagrams_per_sec = 10;
    l.max_relay_payload = 100;
    let mut w = World::with(l, IceConfig::default());
    let (lonely, _, _) = w.hello_as("x", RelayMode::Datagram);
    assert_eq!(w.route(lonely, ALL_PEERS, 10), Err(RelayDrop::NotInSession));
    let stranger = w.open();
    assert_eq!(
        w.route(stranger, ALL_PEERS, 10),
        Err(RelayDrop::NotInSession)
    );
    let (h, hp, code) = w.host();
    let (a, ap) = w.joiner(&code, RelayMode::Stream);
    assert_eq!(w.route(h, ap, 101), Err(RelayDrop::TooLarge));
    assert_eq!(w.route(h, hp, 10), Err(RelayDrop::UnknownPeer), "to self");
    let (from, t) = w.route(h, ap, 100).unwrap();
    assert_eq!(
        (from, t),
        (
            hp,
            vec![Target {
                conn: a,
                mode: RelayMode::Stream
            }]
        )
    );
    let ok = (0..50).filter(|_| w.route(h, ap, 1).is_ok()).count();
    // Burst of 10 per second; two were spent above (one delivered, one to a bad destination).
    assert_eq!(ok, 8);
    assert_eq!(w.route(h, ap, 1), Err(RelayDrop::RateLimited));
    w.advance(Duration::from_millis(500));
    assert!(w.route(h, ap, 1).is_ok());
}

#[test]
fn relay_drop_reasons_index_their_own_counter() {
    for (i, why) in RelayDrop::ALL.iter().enumerate() {
        assert_eq!(*why as usize, i, "{why:?}");
    }
}

#[test]
fn relay_egress_is_budgeted_per_address_fan_out_included() {
    let mut w = World::with(
        Limits {
            relay_out_bytes_per_ip: 1000,
            relay_datagrams_per_sec: 0,
            relay_bytes_per_sec: 0,
            // The largest frame to everyone (3 × 300) fits in the 1000-byte burst.
            max_relay_payload: 300,
            ..limits()
        },
        IceConfig::default(),
    );
    // Two players behind one NAT, two elsewhere, in one session.
    let (h, _, code) = w.host();
    let (a, _) = w.joiner(&code, RelayMode::Datagram);
    w.ip = IpAddr::from([198, 51, 100, 7]);
    let (b, bp) = w.joiner(&code, RelayMode::Datagram);
    let (_, cp) = w.joiner(&code, RelayMode::Datagram);
    // 100 bytes to all = 3 copies = 300 bytes of the shared 1000.
    assert_eq!(w.route(h, ALL_PEERS, 100).map(|(_, t)| t.len()), Ok(3));
    assert_eq!(w.route(a, ALL_PEERS, 100).map(|(_, t)| t.len()), Ok(3));
    assert_eq!(w.route(h, ALL_PEERS, 100).map(|(_, t)| t.len()), Ok(3));
    // 100 left: all-peers does not fit, one copy does.
    assert_eq!(
        w.route(a, ALL_PEERS, 100),
        Err(RelayDrop::IpRateLimited),
        "the connections of one address share its budget"
    );
    assert!(w.route(a, bp, 100).is_ok());
    assert_eq!(w.route(h, cp, 1), Err(RelayDrop::IpRateLimited));
    // Another address is not affected.
    assert_eq!(w.route(b, ALL_PEERS, 300).map(|(_, t)| t.len()), Ok(3));
    // It refills over time.
    w.advance(Duration::from_millis(500));
    assert!(w.route(h, ALL_PEERS, 100).is_ok());
    // 200 left. Closing every connection and coming back does not buy a
    // fresh budget: two copies of 101 bytes do not fit.
    w.core.closed(w.now, h, true);
    w.core.closed(w.now, a, true);
    w.ip = IpAddr::from([192, 0, 2, 1]);
    let (h2, _, _) = w.hello_as("again", RelayMode::Datagram);
    w.msg(h2, join(&code));
    let _ = w.outputs();
    assert_eq!(w.route(h2, ALL_PEERS, 101), Err(RelayDrop::IpRateLimited));
    assert_eq!(w.route(h2, ALL_PEERS, 100).map(|(_, t)| t.len()), Ok(2));
    // Once the budget has refilled, nobody is connected and the session
    // it created has ended, it is forgotten.
    w.core.closed(w.now, h2, true);
    w.advance(Duration::from_secs(2));
    assert!(
        w.core.per_ip.contains_key(&IpAddr::from([192, 0, 2, 1])),
        "its session is still open (and counts against its session quota)"
    );
    let (b_ip, c_conn) = (w.ip, w.core.peers.get(&cp).and_then(|p| p.conn));
    w.core.closed(w.now, b, true);
    w.core.closed(w.now, c_conn.expect("c connected"), true);
    w.advance(Duration::from_secs(2));
    assert!(!w.core.per_ip.contains_key(&IpAddr::from([192, 0, 2, 1])));
    assert!(!w.core.per_ip.contains_key(&b_ip));
}

#[test]
fn the_largest_frame_to_everyone_always_fits_the_address_budget() {
    // 1100 bytes to 3 others is 3300 bytes, more than a 1000-byte budget:
    // the burst grows to hold it, so such a frame is limited, not banned.
    let mut w = World::with(
        Limits {
            relay_out_bytes_per_ip: 1000,
            ..limits()
        },
        IceConfig::default(),
    );
    let (h, _, code) = w.host();
    for _ in 0..3 {
        w.joiner(&code, RelayMode::Datagram);
    }
    assert!(w.route(h, ALL_PEERS, 1100).is_ok());
    assert_eq!(w.route(h, ALL_PEERS, 1100), Err(RelayDrop::IpRateLimited));
    w.advance(Duration::from_millis(3300));
    assert!(w.route(h, ALL_PEERS, 1100).is_ok());
}

#[test]
fn per_address_limits_count_ipv6_by_its_64() {
    let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
    let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(address_key(a), address_key(b));
    assert_ne!(address_key(a), address_key(other));
    assert_eq!(address_key(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
    // IPv4 (also when mapped into IPv6) is its own key.
    let v4: IpAddr = "192.0.2.7".parse().unwrap();
    assert_eq!(address_key(v4), v4);
    assert_eq!(address_key("::ffff:192.0.2.7".parse().unwrap()), v4);
    // The connection cap sees one /64 as one address.
    let mut w = World::with(
        Limits {
            max_connections_per_ip: 1,
            ..limits()
        },
        IceConfig::default(),
    );
    w.ip = a;
    w.open();
    let meta = |ip| ConnMeta {
        transport: Transport::Quic,
        ip: Some(ip),
    };
    assert_eq!(w.core.open(w.now, meta(b)), Err(ErrorCode::ServerFull));
    assert!(w.core.open(w.now, meta(other)).is_ok());
}

#[test]
fn host_leaving_hands_over_and_everyone_is_told() {
    let mut w = World::new();
    let (hc, hp, code) = w.host();
    let (ac, ap) = w.joiner(&code, RelayMode::Datagram);
    let (bc, _) = w.joiner(&code, RelayMode::Datagram);
    w.outputs();
    w.msg(hc, ClientMsg::LeaveSession);
    let out = w.outputs();
    assert!(out.contains(&Output::Send {
        conn: hc,
        msg: ServerMsg::SessionLeft {
            reason: LeaveReason::Left
        }
    }));
    for c in [ac, bc] {
        assert!(out.contains(&Output::Send {
            conn: c,
            msg: ServerMsg::PeerLeft {
                peer: hp,
                reason: LeaveReason::Left
            }
        }));
        assert!(out.contains(&Output::Send {
            conn: c,
            msg: ServerMsg::HostChanged { host: ap }
        }));
    }
    // The old host is out: relay from it is dropped.
    assert_eq!(w.route(hc, ALL_PEERS, 1), Err(RelayDrop::NotInSession));
    // Last one out removes the session and frees its code.
    w.msg(ac, ClientMsg::LeaveSession);
    w.msg(bc, ClientMsg::LeaveSession);
    assert_eq!(w.core.session_count(), 0);
    let (c, _, _) = w.hello_as("late", RelayMode::Datagram);
    w.msg(c, join(&code));
    assert_eq!(
        error_code(&w.sent_to(c)),
        Some(ErrorCode::UnknownSession as u16)
    );
}

#[test]
fn lost_connection_keeps_the_seat_for_the_grace_period() {
    let mut w = World::new();
    let (hc, hp, code) = w.host();
    let (ac, ap, token) = {
        let (c, p, t) = w.hello_as("a", RelayMode::Datagram);
        w.msg(c, join(&code));
        (c, p, t)
    };
    w.outputs();
    w.core.closed(w.now, ac, false);
    assert_eq!(
        w.sent_to(hc),
        vec![ServerMsg::PeerStatus {
            peer: ap,
            online: false
        }]
    );
    assert_eq!(w.route(hc, ap, 1), Err(RelayDrop::PeerAway));
    w.advance(Duration::from_secs(5));
    // Resume on a new connection: same id, back in the session.
    let nc = w.open();
    w.msg(nc, hello("a", RelayMode::Datagram, Some(token)));
    let out = w.outputs();
    assert!(
        matches!(&out[0], Output::Send { conn, msg: ServerMsg::Welcome(wl) } if *conn == nc && wl.peer_id == ap && wl.resumed)
    );
    assert!(
        matches!(&out[1], Output::Send { conn, msg: ServerMsg::SessionJoined(i) } if *conn == nc && i.host == hp)
    );
    assert!(out.contains(&Output::Send {
        conn: hc,
        msg: ServerMsg::PeerStatus {
            peer: ap,
            online: true
        }
    }));
    let (_, t) = w.route(hc, ap, 1).unwrap();
    assert_eq!(t[0].conn, nc);
}

#[test]
fn grace_expiry_removes_the_peer_and_its_token() {
    let mut w = World::new();
    let (hc, _, code) = w.host();
    let (ac, ap, token) = {
        let (c, p, t) = w.hello_as("a", RelayMode::Datagram);
        w.msg(c, join(&code));
        (c, p, t)
    };
    w.core.closed(w.now, ac, false);
    w.outputs();
    w.advance(Duration::from_millis(limits().resume_grace_ms + 1));
    assert_eq!(
        w.sent_to(hc),
        vec![ServerMsg::PeerLeft {
            peer: ap,
            reason: LeaveReason::TimedOut
        }]
    );
    let nc = w.open();
    w.msg(nc, hello("a", RelayMode::Datagram, Some(token)));
    let out = w.sent_to(nc);
    assert_eq!(error_code(&out[..1]), Some(ErrorCode::ResumeFailed as u16));
    assert!(matches!(&out[1], ServerMsg::Welcome(wl) if !wl.resumed && wl.peer_id != ap));
}

#[test]
fn clean_close_leaves_at_once() {
    let mut w = World::new();
    let (hc, _, code) = w.host();
    let (ac, ap) = w.joiner(&code, RelayMode::Datagram);
    w.outputs();
    w.core.closed(w.now, ac, true);
    assert_eq!(
        w.sent_to(hc),
        vec![ServerMsg::PeerLeft {
            peer: ap,
            reason: LeaveReason::Left
        }]
    );
    assert_eq!(w.core.peer_count(), 1);
}

#[test]
fn resume_while_old_connection_is_open_replaces_it() {
    let mut w = World::new();
    let (old, p, token) = w.hello_as("a", RelayMode::Datagram);
    let new = w.open();
    w.msg(new, hello("a", RelayMode::Stream, Some(token)));
    let out = w.outputs();
    assert!(out.iter().any(
        |o| matches!(o, Output::Close { conn, code: ErrorCode::Replaced, .. } if *conn == old)
    ));
    // When the old connection finally closes, the peer is unaffected.
    w.core.closed(w.now, old, false);
    assert_eq!(w.core.peer_of(new), Some(p));
    assert_eq!(w.core.peer_count(), 1);
}

#[test]
fn join_brute_force_is_cut_off() {
    let mut w = World::new();
    let (_, _, code) = w.host();
    let (c, _, _) = w.hello_as("guesser", RelayMode::Datagram);
    for i in 0..3 {
        w.msg(c, join(&format!("ZZZZZ{i}")));
        assert_eq!(
            error_code(&w.sent_to(c)),
            Some(ErrorCode::UnknownSession as u16)
        );
    }
    w.msg(c, join("ZZZZZZ"));
    let out = w.outputs();
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Close {
            code: ErrorCode::TooManyJoinAttempts,
            ..
        }
    )));
    let _ = code;
}

#[test]
fn reconnecting_does_not_reset_the_join_guard_of_an_address() {
    let mut w = World::new(); // every test connection comes from 192.0.2.1
    let (_, _, code) = w.host();
    // Fresh connections, one guess each: the address budget (3) runs out.
    for i in 0..3 {
        let (c, _, _) = w.hello_as("guesser", RelayMode::Datagram);
        w.msg(c, join(&format!("ZZZZZ{i}")));
        assert_eq!(
            error_code(&w.sent_to(c)),
            Some(ErrorCode::UnknownSession as u16)
        );
    }
    // The address is locked out: even the right code is refused, before
    // it is looked at, with a message that says what happened; but a
    // connection that failed once is not closed.
    let (typo, _, _) = w.hello_as("honest", RelayMode::Datagram);
    w.msg(typo, join(&code));
    let out = w.outputs();
    assert!(!out.iter().any(|o| matches!(o, Output::Close { .. })));
    let said = out.iter().find_map(|o| match o {
        Output::Send {
            msg: ServerMsg::Error { code, message },
            ..
        } => Some((*code, message.clone())),
        _ => None,
    });
    let (said_code, message) = said.expect("an error");
    assert_eq!(said_code, ErrorCode::TooManyJoinAttempts as u16);
    assert!(
        message.contains("network address") && message.contains("try again in"),
        "{message}"
    );
    // A connection that keeps trying while locked out is closed after its own budget.
    let closed = (0..5).any(|_| {
        w.msg(typo, join("ZZZZZZ"));
        w.outputs().iter().any(|o| {
            matches!(
                o,
                Output::Close {
                    code: ErrorCode::TooManyJoinAttempts,
                    ..
                }
            )
        })
    });
    assert!(closed);
    // A minute later the address may try again.
    w.advance(Duration::from_secs(60));
    let (c, _, _) = w.hello_as("later", RelayMode::Datagram);
    w.msg(c, join("ZZZZZZ"));
    assert_eq!(
        error_code(&w.sent_to(c)),
        Some(ErrorCode::UnknownSession as u16)
    );
}

#[test]
fn password_full_session_and_session_cap() {
    let mut w = World::new();
    let (hc, _, _) = w.hello_as("h", RelayMode::Datagram);
    w.msg(
        hc,
        ClientMsg::CreateSession(CreateSession {
            max_peers: 2,
            password: Some("pw".into()),
        }),
    );
    let code = match w.sent_to(hc).pop() {
        Some(ServerMsg::SessionCreated(i)) => i.code,
        o => panic!("{o:?}"),
    };
    let (c, _, _) = w.hello_as("a", RelayMode::Datagram);
    w.msg(c, join(&code));
    assert_eq!(
        error_code(&w.sent_to(c)),
        Some(ErrorCode::WrongPassword as u16)
    );
    w.msg(
        c,
        ClientMsg::JoinSession(JoinSession {
            code: code.clone(),
            password: Some("pw".into()),
        }),
    );
    assert!(matches!(
        w.sent_to(c).last(),
        Some(ServerMsg::SessionJoined(_))
    ));
    let (d, _, _) = w.hello_as("d", RelayMode::Datagram);
    w.msg(
        d,
        ClientMsg::JoinSession(JoinSession {
            code,
            password: Some("pw".into()),
        }),
    );
    assert_eq!(
        error_code(&w.sent_to(d)),
        Some(ErrorCode::SessionFull as u16)
    );
    // Cap of 4 sessions: one exists, three more fit, the fifth is refused.
    for _ in 0..3 {
        w.host();
    }
    let (e, _, _) = w.hello_as("e", RelayMode::Datagram);
    w.msg(
        e,
        ClientMsg::CreateSession(CreateSession {
            max_peers: 0,
            password: None,
        }),
    );
    assert_eq!(
        error_code(&w.sent_to(e)),
        Some(ErrorCode::TooManySessions as u16)
    );
    w.msg(
        e,
        ClientMsg::CreateSession(CreateSession {
            max_peers: 99,
            password: None,
        }),
    );
    assert_eq!(
        error_code(&w.sent_to(e)),
        Some(ErrorCode::InvalidArgument as u16)
    );
}

#[test]
fn protocol_order_version_and_hello_timeout() {
    let mut w = World::new();
    let c = w.open();
    w.msg(c, ClientMsg::LeaveSession);
    let out = w.outputs();
    assert!(matches!(
        out.last(),
        Some(Output::Close {
            code: ErrorCode::ProtocolViolation,
            ..
        })
    ));
    let c = w.open();
    w.msg(
        c,
        ClientMsg::Hello(Hello {
            version: 99,
            client: ClientKind::Other,
            relay_mode: RelayMode::Datagram,
            name: String::new(),
            resume_token: None,
            access_token: None,
        }),
    );
    assert!(matches!(
        w.outputs().last(),
        Some(Output::Close {
            code: ErrorCode::UnsupportedVersion,
            ..
        })
    ));
    let (c, _, _) = w.hello_as("x", RelayMode::Datagram);
    w.msg(c, hello("x", RelayMode::Datagram, None));
    assert!(matches!(
        w.outputs().last(),
        Some(Output::Close {
            code: ErrorCode::ProtocolViolation,
            ..
        })
    ));
    let silent = w.open();
    w.advance(Duration::from_millis(limits().hello_timeout_ms));
    assert!(w.outputs().contains(&Output::Close {
        conn: silent,
        code: ErrorCode::HelloTimeout,
        reason: "no Hello in time".into()
    }));
}

#[test]
fn control_flood_is_rate_limited() {
    let mut w = World::new();
    let (c, _, _) = w.hello_as("x", RelayMode::Datagram);
    for _ in 0..200 {
        w.msg(c, ClientMsg::Ping { client_time_ms: 1 });
    }
    let out = w.sent_to(c);
    let pongs = out
        .iter()
        .filter(|m| matches!(m, ServerMsg::Pong { .. }))
        .count();
    let limited: Vec<&String> = out
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Error { code: 5, message } => Some(message),
            _ => None,
        })
        .collect();
    // Burst is 2 x 50; hello took one token. One report for the first
    // drop; the rest are counted and reported a second later, once.
    assert_eq!(pongs, 99);
    assert_eq!(limited.len(), 1, "{limited:?}");
    assert!(limited[0].starts_with("1 control message(s) dropped"));
    w.advance(Duration::from_millis(500));
    w.core.handle_timeout(w.now);
    assert!(w.sent_to(c).is_empty(), "at most one report a second");
    w.advance(Duration::from_millis(500));
    w.core.handle_timeout(w.now);
    let later = w.sent_to(c);
    assert!(
        matches!(&later[..], [ServerMsg::Error { code: 5, message }]
            if message.starts_with("100 control message(s) dropped")),
        "{later:?}"
    );
    w.advance(Duration::from_secs(5));
    w.core.handle_timeout(w.now);
    assert!(w.sent_to(c).is_empty(), "nothing more to report");
}

#[test]
fn a_receivers_signal_budget_throttles_the_flooder_not_the_receiver() {
    let mut w = World::with(
        Limits {
            signals_per_sec: 0,
            signal_bytes_per_sec_per_receiver: 10_000,
            ..limits()
        },
        IceConfig::default(),
    );
    let (h, hp, code) = w.host();
    let (flooder, _) = w.joiner(&code, RelayMode::Datagram);
    let (other, _) = w.joiner(&code, RelayMode::Datagram);
    let _ = w.outputs();
    let app = |n: usize| ClientMsg::Signal {
        to: hp,
        signal: Signal::App { data: vec![7; n] },
    };
    // Burst: four seconds' worth (40 000 bytes) reaches the host.
    for _ in 0..11 {
        w.msg(flooder, app(3_984)); // 4000 budget bytes each
    }
    let out = w.outputs();
    let to = |conn: ConnId| -> Vec<&ServerMsg> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send { conn: c, msg } if *c == conn => Some(msg),
                _ => None,
            })
            .collect()
    };
    assert_eq!(to(h).len(), 10);
    let reports = to(flooder);
    assert!(
        matches!(&reports[..], [ServerMsg::Error { code: 5, message }]
            if message.contains("signal budget at the receiver")),
        "{reports:?}"
    );
    // The flooder's budget at the host is spent; another member's signal
    // to the host still passes (its own budget)...
    w.msg(other, app(100));
    assert_eq!(w.sent_to(h).len(), 1);
    w.msg(flooder, app(100));
    assert!(w.sent_to(h).is_empty(), "the flooder still waits");
    // ...and the flooder's passes once its budget refills; the host was
    // never closed.
    w.advance(Duration::from_millis(100));
    w.msg(flooder, app(100));
    assert_eq!(w.sent_to(h).len(), 1);
    assert!(!w
        .outputs()
        .iter()
        .any(|o| matches!(o, Output::Close { .. })));
}

#[test]
fn one_address_holds_a_bounded_number_of_sessions() {
    let mut w = World::with(
        Limits {
            max_sessions_per_ip: 2,
            ..limits()
        },
        IceConfig::default(),
    );
    let (h1, _, _) = w.host();
    w.host();
    let (c, _, _) = w.hello_as("third", RelayMode::Datagram);
    w.msg(
        c,
        ClientMsg::CreateSession(CreateSession {
            max_peers: 0,
            password: None,
        }),
    );
    assert_eq!(
        error_code(&w.sent_to(c)),
        Some(ErrorCode::TooManySessions as u16)
    );
    // Another address is not affected.
    w.ip = IpAddr::from([198, 51, 100, 7]);
    w.host();
    // A session that ends gives its slot back.
    w.ip = IpAddr::from([192, 0, 2, 1]);
    w.core.closed(w.now, h1, true);
    w.msg(
        c,
        ClientMsg::CreateSession(CreateSession {
            max_peers: 0,
            password: None,
        }),
    );
    assert!(matches!(&w.sent_to(c)[..], [ServerMsg::SessionCreated(_)]));
}

/// 0-RTT data proves a ticket, not an address: such a connection is
/// served but takes no slot of its address until its handshake completes.
#[test]
fn a_0rtt_connection_takes_its_addresss_slot_only_when_confirmed() {
    let mut w = World::with(
        Limits {
            max_connections_per_ip: 1,
            ..limits()
        },
        IceConfig::default(),
    );
    let ip = IpAddr::from([203, 0, 113, 9]);
    let meta = ConnMeta {
        transport: Transport::Quic,
        ip: Some(ip),
    };
    // Spoofed 0-RTT connections from one address hold none of its slots...
    let spoofed: Vec<ConnId> = (0..5)
        .map(|_| w.core.open_provisional(w.now, meta).unwrap())
        .collect();
    // ...so the address's own client still gets in.
    let honest = w.core.open(w.now, meta).unwrap();
    // A provisional connection whose handshake completes now is over the cap.
    assert_eq!(w.core.confirm(spoofed[0]), Err(ErrorCode::ServerFull));
    // Closing provisional ones gives back nothing they did not take.
    for c in spoofed {
        w.core.closed(w.now, c, false);
    }
    assert_eq!(
        w.core.open(w.now, meta),
        Err(ErrorCode::ServerFull),
        "the honest client still holds the one slot"
    );
    w.core.closed(w.now, honest, true);
    let again = w.core.open_provisional(w.now, meta).unwrap();
    assert_eq!(w.core.confirm(again), Ok(()));
    assert_eq!(
        w.core.confirm(again),
        Ok(()),
        "confirming twice is harmless"
    );
    assert_eq!(w.core.open(w.now, meta), Err(ErrorCode::ServerFull));
}

#[test]
fn unvalidated_handshakes_get_a_retry_and_hold_no_connection_slot() {
    let mut w = World::with(
        Limits {
            max_unvalidated_handshakes: 5,
            max_unvalidated_handshakes_per_ip: 2,
            max_connections: 8,
            max_connections_per_ip: 3,
            ..limits()
        },
        IceConfig::default(),
    );
    let spoofed = IpAddr::from([203, 0, 113, 9]);
    let honest = IpAddr::from([198, 51, 100, 7]);
    // Two unfinished handshakes from one address, then Retry for it.
    assert_eq!(w.core.admit(w.now, spoofed, false), Admission::Accept);
    assert_eq!(w.core.admit(w.now, spoofed, false), Admission::Accept);
    assert_eq!(w.core.admit(w.now, spoofed, false), Admission::Retry);
    // A client that answered the Retry (validated) gets in, from the
    // same address too: spoofers never answer one.
    assert_eq!(w.core.admit(w.now, spoofed, true), Admission::Accept);
    // Other addresses go on until the server-wide bound, then Retry.
    for i in 0..3 {
        let ip = IpAddr::from([203, 0, 113, 100 + i]);
        assert_eq!(w.core.admit(w.now, ip, false), Admission::Accept);
    }
    assert_eq!(w.core.admit(w.now, honest, false), Admission::Retry);
    assert_eq!(w.core.admit(w.now, honest, true), Admission::Accept);
    assert_eq!(w.core.pending_count(), (7, 5));
    // None of it took a connection slot: the honest client opens.
    w.core.abandon(honest, true);
    let meta = |ip| ConnMeta {
        transport: Transport::Quic,
        ip: Some(ip),
    };
    assert!(w.core.open(w.now, meta(honest)).is_ok());
    // Unfinished handshakes that end give their place back.
    for i in 0..3 {
        w.core.abandon(IpAddr::from([203, 0, 113, 100 + i]), false);
    }
    assert_eq!(w.core.admit(w.now, spoofed, false), Admission::Retry);
    w.core.abandon(spoofed, false);
    assert_eq!(w.core.admit(w.now, spoofed, false), Admission::Accept);
    // A proven address with a connection budget's worth in flight is refused.
    for _ in 0..3 {
        assert_eq!(w.core.admit(w.now, honest, true), Admission::Accept);
    }
    assert_eq!(
        w.core.admit(w.now, honest, true),
        Admission::Refuse(ErrorCode::ServerFull)
    );
    // Opened connections count against the connection caps as before.
    for _ in 0..2 {
        w.core.abandon(honest, true);
        assert!(w.core.open(w.now, meta(honest)).is_ok());
    }
    w.core.abandon(honest, true);
    assert_eq!(
        w.core.open(w.now, meta(honest)),
        Err(ErrorCode::ServerFull),
        "per-address cap"
    );
    // Shutting down refuses at once.
    w.core.shutdown(1000);
    assert_eq!(
        w.core.admit(w.now, honest, true),
        Admission::Refuse(ErrorCode::ShuttingDown)
    );
}

#[test]
fn idle_session_expires_and_members_are_told() {
    let mut w = World::new();
    let (hc, _, code) = w.host();
    let (ac, _) = w.joiner(&code, RelayMode::Datagram);
    w.outputs();
    w.advance(Duration::from_secs(limits().session_idle_ttl_secs - 1));
    assert!(w.outputs().is_empty());
    // Traffic keeps it alive.
    w.route(hc, ALL_PEERS, 1).unwrap();
    w.advance(Duration::from_secs(2));
    assert!(w.outputs().is_empty());
    w.advance(Duration::from_secs(limits().session_idle_ttl_secs));
    let out = w.outputs();
    for c in [hc, ac] {
        assert!(out.contains(&Output::Send {
            conn: c,
            msg: ServerMsg::SessionLeft {
                reason: LeaveReason::SessionExpired
            }
        }));
    }
    assert_eq!(w.core.session_count(), 0);
}

#[test]
fn welcome_carries_turn_credentials_and_limits() {
    let ice = IceConfig {
        stun_urls: vec!["stun:127.0.0.1:3478".into()],
        turn_urls: vec!["turn:127.0.0.1:3478".into()],
        turn_secret: Some("secret".into()),
        turn_ttl_secs: 600,
    };
    let mut w = World::with(limits(), ice);
    let c = w.open();
    w.msg(c, hello("x", RelayMode::Datagram, None));
    let Some(ServerMsg::Welcome(wl)) = w.sent_to(c).pop() else {
        panic!()
    };
    assert_eq!(wl.ice_servers.len(), 2);
    let user = wl.ice_servers[1].username.clone().unwrap();
    let (expiry, id) = user.split_once(':').unwrap();
    assert_eq!(id, wl.peer_id.to_string());
    assert_eq!(expiry.parse::<u64>().unwrap(), w.now.unix_ms / 1000 + 600);
    assert_eq!(wl.limits.max_relay_payload, 1100);
    assert_eq!(wl.resume_token.len(), RESUME_TOKEN_LEN);
}

#[test]
fn shutdown_says_goodbye_and_refuses_newcomers() {
    let mut w = World::new();
    let (c, _, _) = w.hello_as("x", RelayMode::Datagram);
    w.core.shutdown(2000);
    assert!(matches!(
        w.sent_to(c).as_slice(),
        [ServerMsg::GoingAway {
            reconnect_after_ms: 2000,
            ..
        }]
    ));
    assert_eq!(
        w.core.open(
            w.now,
            ConnMeta {
                transport: Transport::Quic,
                ip: None,
            }
        ),
        Err(ErrorCode::ShuttingDown)
    );
}

#[test]
fn one_address_cannot_take_every_seat() {
    let mut l = limits();
    l.max_connections_per_ip = 2;
    let mut w = World::with(l, IceConfig::default());
    let a = w.open(); // all from 192.0.2.1
    w.open();
    let third = w.core.open(
        w.now,
        ConnMeta {
            transport: Transport::Quic,
            ip: Some(IpAddr::from([192, 0, 2, 1])),
        },
    );
    assert_eq!(third, Err(ErrorCode::ServerFull));
    // Another address is fine, and a slot frees when a connection closes.
    assert!(w
        .core
        .open(
            w.now,
            ConnMeta {
                transport: Transport::Quic,
                ip: Some(IpAddr::from([198, 51, 100, 7])),
            }
        )
        .is_ok());
    w.core.closed(w.now, a, true);
    w.open();
}

#[test]
fn connection_cap() {
    let mut l = limits();
    l.max_connections = 2;
    let mut w = World::with(l, IceConfig::default());
    let a = w.open();
    w.open();
    assert_eq!(
        w.core.open(
            w.now,
            ConnMeta {
                transport: Transport::Quic,
                ip: None,
            }
        ),
        Err(ErrorCode::ServerFull)
    );
    w.core.closed(w.now, a, true);
    w.open();
}

#[test]
fn metrics_labels_are_the_documented_names() {
    let transports = [
        Transport::Quic,
        Transport::WebTransport,
        Transport::WebSocket,
    ];
    let names: Vec<&str> = transports.iter().map(|t| t.as_str()).collect();
    assert_eq!(names, ["quic", "webtransport", "websocket"]);
    let names: Vec<&str> = Via::ALL.iter().map(|v| v.as_str()).collect();
    assert_eq!(names, ["datagram", "stream", "websocket"]);
    let names: Vec<&str> = RelayDrop::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        names,
        [
            "malformed",
            "not_in_session",
            "too_large",
            "rate_limited",
            "ip_rate_limited",
            "unknown_peer",
            "peer_away",
            "not_allowed",
            "user_rate_limited",
            "receiver_busy",
            "receiver_too_small"
        ]
    );
}

#[test]
fn a_pong_carries_the_servers_wall_clock_as_time_moves_on() {
    let mut w = World::new();
    let (c, _, _) = w.hello_as("x", RelayMode::Datagram);
    let start = w.now.unix_ms;
    w.advance(Duration::from_millis(5_250));
    w.msg(c, ClientMsg::Ping { client_time_ms: 7 });
    assert_eq!(
        w.sent_to(c),
        [ServerMsg::Pong {
            client_time_ms: 7,
            server_time_ms: start + 5_250
        }]
    );
}

#[test]
fn a_lost_peer_leaves_when_its_grace_ends_though_time_was_read_before() {
    let mut w = World::new();
    let (hc, _, code) = w.host();
    let (ac, ap) = w.joiner(&code, RelayMode::Datagram);
    w.core.closed(w.now, ac, false);
    w.outputs();
    w.advance(Duration::from_secs(1));
    assert!(w.sent_to(hc).is_empty(), "still within its grace");
    w.advance(Duration::from_millis(limits().resume_grace_ms));
    assert_eq!(
        w.sent_to(hc),
        vec![ServerMsg::PeerLeft {
            peer: ap,
            reason: LeaveReason::TimedOut
        }]
    );
}

#[test]
fn an_undecodable_frame_is_answered_and_its_connection_closed() {
    let mut w = World::new();
    let c = w.open();
    w.core
        .bad_frame(c, ErrorCode::ProtocolViolation, "not postcard");
    assert_eq!(
        w.outputs(),
        [
            Output::Send {
                conn: c,
                msg: ServerMsg::Error {
                    code: ErrorCode::ProtocolViolation as u16,
                    message: "not postcard".into()
                }
            },
            Output::Close {
                conn: c,
                code: ErrorCode::ProtocolViolation,
                reason: "not postcard".into()
            }
        ]
    );
}

#[test]
fn names_and_passwords_may_be_exactly_as_long_as_the_limit() {
    let mut w = World::new();
    let longest = "n".repeat(MAX_NAME_BYTES);
    let c = w.open();
    w.msg(c, hello(&longest, RelayMode::Datagram, None));
    assert!(matches!(w.sent_to(c)[..], [ServerMsg::Welcome(_)]));
    let c = w.open();
    w.msg(c, hello(&format!("{longest}n"), RelayMode::Datagram, None));
    assert_eq!(
        error_code(&w.sent_to(c)),
        Some(ErrorCode::InvalidArgument as u16)
    );
    let create = |password: String| {
        ClientMsg::CreateSession(CreateSession {
            max_peers: 0,
            password: Some(password),
        })
    };
    let (c, _, _) = w.hello_as("host", RelayMode::Datagram);
    let longest = "p".repeat(MAX_PASSWORD_BYTES);
    w.msg(c, create(format!("{longest}p")));
    assert_eq!(
        error_code(&w.sent_to(c)),
        Some(ErrorCode::InvalidArgument as u16)
    );
    w.msg(c, create(longest));
    assert!(matches!(w.sent_to(c)[..], [ServerMsg::SessionCreated(_)]));
}

#[test]
fn a_rate_limit_report_names_only_the_limit_that_dropped() {
    let mut w = World::with(
        Limits {
            signal_bytes_per_sec_per_receiver: 100,
            ..limits()
        },
        IceConfig::default(),
    );
    let (h, hp, code) = w.host();
    let (j, _) = w.joiner(&code, RelayMode::Datagram);
    w.outputs();
    for _ in 0..200 {
        w.msg(h, ClientMsg::Ping { client_time_ms: 1 });
    }
    let reports: Vec<String> = w
        .sent_to(h)
        .into_iter()
        .filter_map(|m| match m {
            ServerMsg::Error { code: 5, message } => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(
        reports,
        ["1 control message(s) dropped: more than 50 per second"]
    );
    // The joiner spends its signal budget at the host (400 bytes).
    let app = ClientMsg::Signal {
        to: hp,
        signal: Signal::App { data: vec![0; 384] },
    };
    w.msg(j, app.clone());
    w.msg(j, app);
    let reports = w.sent_to(j);
    assert!(
        matches!(&reports[..], [ServerMsg::Error { code: 5, message }]
            if message == "1 signal(s) dropped: your signal budget at the receiver \
            (100 bytes/s) was spent"),
        "{reports:?}"
    );
}

#[test]
fn a_deferred_rate_limit_report_is_due_a_second_after_the_last() {
    let mut w = World::new();
    let (c, _, _) = w.hello_as("x", RelayMode::Datagram);
    let hello_due = w.now.mono + limits().hello_timeout();
    for _ in 0..200 {
        w.msg(c, ClientMsg::Ping { client_time_ms: 1 });
    }
    w.outputs();
    let report_due = w.now.mono + Duration::from_secs(1);
    assert!(report_due < hello_due);
    assert_eq!(w.core.poll_timeout(), Some(report_due));
}

#[test]
fn an_address_with_handshakes_in_flight_is_not_forgotten() {
    let mut w = World::with(
        Limits {
            max_unvalidated_handshakes_per_ip: 2,
            ..limits()
        },
        IceConfig::default(),
    );
    let ip = IpAddr::from([203, 0, 113, 9]);
    assert_eq!(w.core.admit(w.now, ip, false), Admission::Accept);
    assert_eq!(w.core.admit(w.now, ip, false), Admission::Accept);
    w.advance(Duration::from_secs(120));
    assert_eq!(w.core.admit(w.now, ip, false), Admission::Retry);
    // Once they end, the address starts afresh.
    w.core.abandon(ip, false);
    w.core.abandon(ip, false);
    w.advance(Duration::from_secs(120));
    assert_eq!(w.core.admit(w.now, ip, false), Admission::Accept);
    assert_eq!(w.core.pending_count(), (1, 1));
}

#[test]
fn an_address_in_use_again_is_not_forgotten() {
    let mut w = World::with(
        Limits {
            max_connections_per_ip: 1,
            ..limits()
        },
        IceConfig::default(),
    );
    let first = w.open();
    // Unused: its forgetting is armed (its budgets are full).
    w.core.closed(w.now, first, true);
    // In use again before that comes due.
    w.open();
    w.advance(Duration::from_secs(120));
    let meta = ConnMeta {
        transport: Transport::Quic,
        ip: Some(w.ip),
    };
    assert_eq!(w.core.open(w.now, meta), Err(ErrorCode::ServerFull));
}

#[test]
fn the_counts_follow_connections_peers_and_sessions() {
    let mut w = World::new();
    assert_eq!(w.core.limits(), &limits());
    assert_eq!((w.core.connection_count(), w.core.peer_count()), (0, 0));
    let (h, _, code) = w.host();
    let (j, _) = w.joiner(&code, RelayMode::Datagram);
    let silent = w.open();
    assert_eq!(w.core.transport_of(silent), Some(Transport::Quic));
    assert_eq!(w.core.connection_count(), 3);
    assert_eq!(w.core.peer_count(), 2);
    assert_eq!(w.core.session_count(), 1);
    w.core.closed(w.now, j, true);
    w.core.closed(w.now, h, true);
    assert_eq!(w.core.connection_count(), 1);
    assert_eq!(w.core.transport_of(h), None);
    assert_eq!(w.core.peer_count(), 0);
    assert_eq!(w.core.session_count(), 0);
}

#[test]
fn an_address_in_use_arms_no_forgetting() {
    let mut w = World::new();
    let hello_due = w.now.mono + limits().hello_timeout();
    let a = w.open();
    w.open();
    w.core.closed(w.now, a, true);
    w.core.admit(w.now, w.ip, true);
    assert_eq!(w.core.poll_timeout(), Some(hello_due));
}

#[test]
fn an_unused_address_is_forgotten_but_not_one_whose_session_lives_on() {
    let mut w = World::new();
    let hello_due = w.now.mono + limits().hello_timeout();
    let c = w.open();
    w.core.closed(w.now, c, true);
    let forget = w.core.poll_timeout().unwrap();
    assert!(forget < hello_due, "forgetting is armed");
    w.advance(Duration::from_millis(1));
    assert_eq!(w.core.poll_timeout(), Some(hello_due), "and done");
    // A host whose connection dropped still holds its session.
    w.ip = IpAddr::from([198, 51, 100, 7]);
    let (h, _, _) = w.host();
    w.core.closed(w.now, h, false);
    assert_eq!(w.core.poll_timeout(), Some(hello_due), "nothing sooner");
}

#[test]
fn an_idle_check_after_traffic_waits_for_the_new_deadline() {
    let mut w = World::new();
    let ttl = Duration::from_secs(limits().session_idle_ttl_secs);
    let (hc, _, code) = w.host();
    w.joiner(&code, RelayMode::Datagram);
    w.advance(ttl - Duration::from_secs(1));
    w.route(hc, ALL_PEERS, 1).unwrap();
    let last = w.now.mono;
    w.advance(Duration::from_secs(2));
    assert_eq!(w.core.session_count(), 1);
    assert_eq!(w.core.poll_timeout(), Some(last + ttl));
}

#[path = "telemetry.rs"]
mod telemetry;
