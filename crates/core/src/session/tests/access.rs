//! Access control in the session core: a refused token leaves no state,
//! a good one grants exactly its claims, expiry warns then cuts, a resume
//! with a fresh token extends, revocation cuts and keeps refusing. No
//! network, no clock: the harness moves time.

use super::harness::World;
use super::*;
use crate::auth::{Key, Signer, Verifier, DEFAULT_LEEWAY_SECS};
use crate::protocol::{ClientKind, RelayMode};
use serde_json::json;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const AUD: &str = "test-game";
const WARN: Duration = Duration::from_secs(60);

fn world() -> World {
    let mut core = Core::with_rng(
        Limits {
            max_peers_per_session: 8,
            ..Limits::default()
        },
        IceConfig {
            turn_urls: vec!["turn:turn.example:3478".into()],
            turn_secret: Some("s3cret".into()),
            ..IceConfig::default()
        },
        StdRng::seed_from_u64(7),
    );
    let verifier = Verifier::new(vec![Key::hs256("main", SECRET).expect("key")], AUD).expect("v");
    core.set_access(Access {
        verifier,
        warn_before: WARN,
    });
    World::start(core, IpAddr::from([192, 0, 2, 9]))
}

fn now_s(w: &World) -> u64 {
    w.now.unix_ms / 1000
}

/// A token for `sub` valid `ttl` seconds from the world's now, with `extra` claims.
fn token(w: &World, sub: &str, ttl: u64, extra: serde_json::Value) -> String {
    let mut c = json!({ "sub": sub, "aud": AUD, "iat": now_s(w), "exp": now_s(w) + ttl });
    if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    Signer::hs256("main", SECRET).expect("signer").sign(&c)
}

fn hello(token: Option<String>, resume: Option<Vec<u8>>) -> ClientMsg {
    ClientMsg::Hello(Hello {
        version: PROTOCOL_VERSION,
        client: ClientKind::Rust,
        relay_mode: RelayMode::Datagram,
        name: "client name".into(),
        resume_token: resume,
        access_token: token,
    })
}

fn create() -> ClientMsg {
    ClientMsg::CreateSession(CreateSession {
        max_peers: 0,
        password: None,
        region_rtts: Vec::new(),
    })
}

fn join(code: &str) -> ClientMsg {
    ClientMsg::JoinSession(JoinSession {
        code: code.into(),
        password: None,
        region_rtts: Vec::new(),
    })
}

fn welcome(w: &mut World, conn: ConnId) -> Welcome {
    match w.sent_to(conn).into_iter().find_map(|m| match m {
        ServerMsg::Welcome(x) => Some(x),
        _ => None,
    }) {
        Some(x) => x,
        None => panic!("no Welcome for {conn}"),
    }
}

/// The code `conn` was closed with, if it was; other outputs stay unread.
fn closed_with(w: &mut World, conn: ConnId) -> Option<ErrorCode> {
    w.take(|o| match o {
        Output::Close { conn: c, code, .. } if *c == conn => Some(*code),
        _ => None,
    })
    .pop()
}

fn last_error(msgs: &[ServerMsg]) -> Option<(u16, String)> {
    msgs.iter().rev().find_map(|m| match m {
        ServerMsg::Error { code, message } => Some((*code, message.clone())),
        _ => None,
    })
}

#[test]
fn a_refused_token_gets_its_code_and_leaves_no_state() {
    let mut w = world();
    let expired = token(&w, "a", 1, json!({ "exp": now_s(&w) - 3600 }));
    let cases = [
        (None, ErrorCode::TokenRequired),
        (Some(String::new()), ErrorCode::TokenRequired),
        (Some("garbage".to_string()), ErrorCode::TokenInvalid),
        (Some(expired), ErrorCode::TokenExpired),
        (
            Some(token(&w, "a", 60, json!({ "aud": "other-game" }))),
            ErrorCode::TokenInvalid,
        ),
        (
            Some(token(&w, "a", 60, json!({ "nbf": now_s(&w) + 600 }))),
            ErrorCode::TokenExpired,
        ),
    ];
    for (t, want) in cases {
        let conn = w.open();
        w.msg(conn, hello(t.clone(), None));
        let sent = w.sent(conn);
        assert_eq!(
            last_error(&sent).map(|e| e.0),
            Some(want as u16),
            "{t:?}: {sent:?}"
        );
        assert!(!sent.iter().any(|m| matches!(m, ServerMsg::Welcome(_))));
        assert_eq!(closed_with(&mut w, conn), Some(want), "{t:?}");
        assert_eq!(w.core.peer_count(), 0, "no peer kept for {t:?}");
        assert_eq!(w.core.peer_of(conn), None);
        w.core.closed(w.now, conn, false);
    }
    assert_eq!(w.core.connection_count(), 0);
}

#[test]
fn a_url_token_counts_when_hello_has_none_and_hello_wins_over_it() {
    let mut w = world();
    let conn = w.open();
    w.core
        .set_url_token(conn, token(&w, "url-user", 600, json!({})));
    w.msg(conn, hello(None, None));
    let wl = welcome(&mut w, conn);
    let turn = wl.ice_servers.iter().find_map(|s| s.username.clone());
    assert!(turn.is_some_and(|u| u.ends_with(":url-user")));
    // A bad URL token does not matter when Hello carries a good one.
    let conn = w.open();
    w.core.set_url_token(conn, "garbage".into());
    w.msg(
        conn,
        hello(Some(token(&w, "hello-user", 600, json!({}))), None),
    );
    let wl = welcome(&mut w, conn);
    let turn = wl.ice_servers.iter().find_map(|s| s.username.clone());
    assert!(turn.is_some_and(|u| u.ends_with(":hello-user")));
}

#[test]
fn turn_credentials_name_the_player_and_never_outlive_the_token() {
    let mut w = world();
    let conn = w.open();
    w.msg(conn, hello(Some(token(&w, "alice", 120, json!({}))), None));
    let wl = welcome(&mut w, conn);
    let user = wl
        .ice_servers
        .iter()
        .find_map(|s| s.username.clone())
        .expect("TURN credentials");
    // TURN TTL is an hour by default; the token ends in two minutes.
    assert_eq!(user, format!("{}:alice", now_s(&w) + 120));
}

#[test]
fn claims_limit_create_join_peers_relay_and_name() {
    let mut w = world();
    // No create right.
    let c = w.open();
    w.msg(
        c,
        hello(Some(token(&w, "j", 600, json!({ "create": false }))), None),
    );
    let _ = welcome(&mut w, c);
    w.msg(c, create());
    assert_eq!(
        last_error(&w.sent(c)).map(|e| e.0),
        Some(ErrorCode::Forbidden as u16)
    );
    assert_eq!(w.core.session_count(), 0);
    assert_eq!(
        closed_with(&mut w, c),
        None,
        "forbidden keeps the connection"
    );
    // A creator capped at 2 peers, whose name comes from the token.
    let h = w.open();
    let t = token(&w, "h", 600, json!({ "max_peers": 2, "name": "Captain" }));
    w.msg(h, hello(Some(t), None));
    let _ = welcome(&mut w, h);
    w.msg(h, create());
    let info = match w.sent(h).pop() {
        Some(ServerMsg::SessionCreated(i)) => i,
        other => panic!("{other:?}"),
    };
    assert_eq!(info.max_peers, 2);
    assert_eq!(info.peers[0].name, "Captain");
    // Asking for more than the token allows is refused.
    let h2 = w.open();
    w.msg(
        h2,
        hello(Some(token(&w, "h2", 600, json!({ "max_peers": 2 }))), None),
    );
    let _ = welcome(&mut w, h2);
    w.msg(
        h2,
        ClientMsg::CreateSession(CreateSession {
            max_peers: 3,
            password: None,
            region_rtts: Vec::new(),
        }),
    );
    assert_eq!(
        last_error(&w.sent(h2)).map(|e| e.0),
        Some(ErrorCode::InvalidArgument as u16)
    );
    // Joining: only the listed session.
    let j = w.open();
    let t = token(
        &w,
        "j2",
        600,
        json!({ "sessions": ["ZZZZZZ"], "relay": false }),
    );
    w.msg(j, hello(Some(t), None));
    let _ = welcome(&mut w, j);
    w.msg(j, join(&info.code));
    assert_eq!(
        last_error(&w.sent(j)).map(|e| e.0),
        Some(ErrorCode::Forbidden as u16)
    );
    let j = w.open();
    let t = token(
        &w,
        "j3",
        600,
        json!({ "sessions": [info.code.to_lowercase()], "relay": false }),
    );
    w.msg(j, hello(Some(t), None));
    let _ = welcome(&mut w, j);
    w.msg(j, join(&info.code));
    assert!(matches!(w.sent(j).pop(), Some(ServerMsg::SessionJoined(_))));
    // That joiner may not relay; the host may.
    assert_eq!(w.route(j, 0, 100).map(|_| ()), Err(RelayDrop::NotAllowed));
    assert!(w.route(h, 0, 100).is_ok());
}

#[test]
fn a_relay_rate_claim_lowers_the_senders_byte_budget() {
    let mut w = world();
    let h = w.open();
    w.msg(
        h,
        hello(Some(token(&w, "h", 600, json!({ "relay": 1000 }))), None),
    );
    let _ = welcome(&mut w, h);
    w.msg(h, create());
    let code = match w.sent(h).pop() {
        Some(ServerMsg::SessionCreated(i)) => i.code,
        other => panic!("{other:?}"),
    };
    let j = w.open();
    w.msg(j, hello(Some(token(&w, "j", 600, json!({}))), None));
    let _ = welcome(&mut w, j);
    w.msg(j, join(&code));
    let sent: usize = (0..10).filter(|_| w.route(h, 0, 400).is_ok()).count();
    assert_eq!(
        sent, 2,
        "1000 B/s with a burst of 1000 B: two 400-byte frames"
    );
    assert_eq!(w.route(h, 0, 400).map(|_| ()), Err(RelayDrop::RateLimited));
    // The other player keeps the server's budget.
    assert_eq!((0..10).filter(|_| w.route(j, 0, 400).is_ok()).count(), 10);
}

#[test]
fn expiry_in_session_warns_then_cuts_and_a_fresh_token_resumes_the_seat() {
    let mut w = world();
    let h = w.open();
    w.msg(h, hello(Some(token(&w, "alice", 300, json!({}))), None));
    let wl = welcome(&mut w, h);
    w.msg(h, create());
    let _ = w.sent(h);
    // The warning comes WARN before the token stops being valid (its exp
    // plus the verifier's leeway for clock skew), without a close.
    w.advance(Duration::from_secs(300 + DEFAULT_LEEWAY_SECS) - WARN - Duration::from_secs(1));
    assert!(last_error(&w.sent(h)).is_none());
    w.advance(Duration::from_secs(1));
    let warned = last_error(&w.sent(h)).expect("a warning");
    assert_eq!(warned.0, ErrorCode::TokenExpired as u16);
    assert!(warned.1.contains("60 s"), "{}", warned.1);
    assert_eq!(closed_with(&mut w, h), None, "a warning does not close");
    // At expiry the connection is cut; the seat is kept for the grace.
    w.advance(WARN);
    assert_eq!(closed_with(&mut w, h), Some(ErrorCode::TokenExpired));
    w.core.closed(w.now, h, false);
    assert_eq!(w.core.peer_count(), 1, "the seat is kept");
    // Resuming with the old token is refused; with a fresh one it works.
    let stale = token(&w, "alice", 1, json!({ "exp": now_s(&w) - 3600 }));
    let c = w.open();
    w.msg(c, hello(Some(stale), Some(wl.resume_token.clone())));
    assert_eq!(closed_with(&mut w, c), Some(ErrorCode::TokenExpired));
    w.core.closed(w.now, c, false);
    let c = w.open();
    w.msg(
        c,
        hello(
            Some(token(&w, "alice", 600, json!({}))),
            Some(wl.resume_token.clone()),
        ),
    );
    let again = welcome(&mut w, c);
    assert!(again.resumed);
    assert_eq!(again.peer_id, wl.peer_id);
    // The old token's timers are void: nothing happens at its old expiry,
    // the new one warns 60 s before its own end.
    w.advance(Duration::from_secs(539 + DEFAULT_LEEWAY_SECS));
    assert!(last_error(&w.sent(c)).is_none());
    assert_eq!(closed_with(&mut w, c), None);
    w.advance(Duration::from_secs(1));
    assert_eq!(
        last_error(&w.sent(c)).map(|e| e.0),
        Some(ErrorCode::TokenExpired as u16)
    );
}

#[test]
fn a_seat_is_not_resumed_with_another_players_token() {
    let mut w = world();
    let h = w.open();
    w.msg(h, hello(Some(token(&w, "alice", 600, json!({}))), None));
    let wl = welcome(&mut w, h);
    w.core.closed(w.now, h, false);
    let c = w.open();
    w.msg(
        c,
        hello(
            Some(token(&w, "mallory", 600, json!({}))),
            Some(wl.resume_token),
        ),
    );
    assert_eq!(closed_with(&mut w, c), Some(ErrorCode::TokenInvalid));
    assert_eq!(w.core.peer_of(c), None);
}

#[test]
fn revocation_cuts_connected_players_and_refuses_their_old_tokens() {
    let mut w = world();
    let h = w.open();
    w.msg(h, hello(Some(token(&w, "alice", 600, json!({}))), None));
    let _ = welcome(&mut w, h);
    w.msg(h, create());
    let code = match w.sent(h).pop() {
        Some(ServerMsg::SessionCreated(i)) => i.code,
        other => panic!("{other:?}"),
    };
    let b = w.open();
    w.msg(
        b,
        hello(Some(token(&w, "bob", 600, json!({ "jti": "bob-1" }))), None),
    );
    let _ = welcome(&mut w, b);
    w.msg(b, join(&code));
    let _ = w.sent(b);
    // One token by its jti.
    let cut = w.core.revoke(w.now, Revocation::Jti("bob-1".into()));
    assert_eq!(cut, 1);
    assert_eq!(closed_with(&mut w, b), Some(ErrorCode::TokenRevoked));
    assert_eq!(w.core.peer_count(), 1, "bob's seat is gone, not kept");
    let left = w.sent(h);
    assert!(
        left.iter().any(|m| matches!(m, ServerMsg::PeerLeft { .. })),
        "{left:?}"
    );
    let again = w.open();
    w.msg(
        again,
        hello(Some(token(&w, "bob", 600, json!({ "jti": "bob-1" }))), None),
    );
    assert_eq!(closed_with(&mut w, again), Some(ErrorCode::TokenRevoked));
    // A player: tokens issued up to now are refused, later ones pass.
    let issued = now_s(&w);
    assert_eq!(
        w.core.revoke(
            w.now,
            Revocation::Sub {
                sub: "alice".into(),
                issued_up_to: issued,
            }
        ),
        1
    );
    assert_eq!(closed_with(&mut w, h), Some(ErrorCode::TokenRevoked));
    let c = w.open();
    w.msg(c, hello(Some(token(&w, "alice", 600, json!({}))), None));
    assert_eq!(closed_with(&mut w, c), Some(ErrorCode::TokenRevoked));
    w.advance(Duration::from_secs(2));
    let c = w.open();
    w.msg(c, hello(Some(token(&w, "alice", 600, json!({}))), None));
    let _ = welcome(&mut w, c);
    assert_eq!(w.core.revoke(w.now, Revocation::Jti("nobody".into())), 0);
}

#[test]
fn an_open_server_ignores_tokens() {
    let mut w = World::start(
        Core::with_rng(
            Limits::default(),
            IceConfig::default(),
            StdRng::seed_from_u64(1),
        ),
        IpAddr::from([192, 0, 2, 9]),
    );
    for t in [None, Some("garbage".to_string())] {
        let c = w.open();
        w.msg(c, hello(t, None));
        let _ = welcome(&mut w, c);
        w.msg(c, create());
        assert!(matches!(
            w.sent(c).pop(),
            Some(ServerMsg::SessionCreated(_))
        ));
    }
    assert!(!w.core.access_required());
}

fn quota_world(limits: Limits) -> World {
    let mut core = Core::with_rng(limits, IceConfig::default(), StdRng::seed_from_u64(9));
    let verifier = Verifier::new(vec![Key::hs256("main", SECRET).expect("key")], AUD).expect("v");
    core.set_access(Access {
        verifier,
        warn_before: WARN,
    });
    World::start(core, IpAddr::from([192, 0, 2, 9]))
}

/// A connection of `sub` that said Hello: its id, and its Welcome.
fn player(w: &mut World, sub: &str) -> (ConnId, Welcome) {
    let c = w.open();
    w.msg(c, hello(Some(token(w, sub, 600, json!({}))), None));
    let wl = welcome(w, c);
    (c, wl)
}

#[test]
fn a_player_over_its_connection_quota_is_refused_and_others_are_not() {
    let mut w = quota_world(Limits {
        max_connections_per_user: 2,
        ..Limits::default()
    });
    let (a1, _) = player(&mut w, "alice");
    let (a2, wl2) = player(&mut w, "alice");
    let peers = w.core.peer_count();
    let c = w.open();
    w.msg(c, hello(Some(token(&w, "alice", 600, json!({}))), None));
    let msgs = w.sent(c);
    let (code, message) = last_error(&msgs).expect("refused");
    assert_eq!(code, ErrorCode::ServerFull as u16);
    assert!(message.contains("most one player"), "{message}");
    assert_eq!(closed_with(&mut w, c), Some(ErrorCode::ServerFull));
    assert_eq!(w.core.peer_count(), peers, "a refused Hello makes no peer");
    w.core.closed(w.now, c, true);
    // Another player is not affected.
    let _ = player(&mut w, "bob");
    // A connection closed gives its slot back.
    w.core.closed(w.now, a1, true);
    let (a3, _) = player(&mut w, "alice");
    // A resume that replaces the player's own open connection is no extra connection.
    let r = w.open();
    w.msg(
        r,
        hello(
            Some(token(&w, "alice", 600, json!({}))),
            Some(wl2.resume_token),
        ),
    );
    let resumed = welcome(&mut w, r);
    assert!(resumed.resumed);
    w.core.closed(w.now, a2, false);
    // Other nodes' connections count for a new connection, not for a resume.
    w.core.closed(w.now, a3, true);
    let remote = RemoteUsage {
        connections: 1,
        sessions: 0,
        nodes: 1,
    };
    w.core.set_remote_usage(
        w.now.mono,
        [("alice".to_string(), remote)].into_iter().collect(),
    );
    assert_eq!(w.core.remote_connections(), 1);
    let c = w.open();
    w.msg(c, hello(Some(token(&w, "alice", 600, json!({}))), None));
    assert_eq!(closed_with(&mut w, c), Some(ErrorCode::ServerFull));
    let counts = w.core.user_counts();
    let alice = counts.iter().find(|u| u.sub == "alice").expect("alice");
    assert_eq!((alice.connections, alice.sessions), (1, 0), "{counts:?}");
}

#[test]
fn a_player_over_its_session_quota_is_refused_and_gets_it_back_when_one_ends() {
    let mut w = quota_world(Limits {
        max_sessions_per_user: 1,
        ..Limits::default()
    });
    let (a, _) = player(&mut w, "alice");
    w.msg(a, create());
    assert!(matches!(
        w.sent(a).pop(),
        Some(ServerMsg::SessionCreated(_))
    ));
    let (a2, _) = player(&mut w, "alice");
    w.msg(a2, create());
    let msgs = w.sent(a2);
    let (code, message) = last_error(&msgs).expect("refused");
    assert_eq!(code, ErrorCode::TooManySessions as u16);
    assert!(message.contains("most one player"), "{message}");
    assert_eq!(w.core.session_count(), 1);
    // Bob creates all the same.
    let (b, _) = player(&mut w, "bob");
    w.msg(b, create());
    assert!(matches!(
        w.sent(b).pop(),
        Some(ServerMsg::SessionCreated(_))
    ));
    // Alice's session ends (she leaves): she may create again.
    w.msg(a, ClientMsg::LeaveSession);
    let _ = w.sent(a);
    w.msg(a2, create());
    assert!(matches!(
        w.sent(a2).pop(),
        Some(ServerMsg::SessionCreated(_))
    ));
    // A session she holds on another node counts too.
    w.msg(a2, ClientMsg::LeaveSession);
    let _ = w.sent(a2);
    let remote = RemoteUsage {
        connections: 1,
        sessions: 1,
        nodes: 1,
    };
    w.core.set_remote_usage(
        w.now.mono,
        [("alice".to_string(), remote)].into_iter().collect(),
    );
    w.msg(a2, create());
    assert_eq!(
        last_error(&w.sent(a2)).map(|e| e.0),
        Some(ErrorCode::TooManySessions as u16)
    );
}

#[test]
fn a_players_relay_budget_is_shared_by_its_connections_and_its_nodes() {
    let mut w = quota_world(Limits {
        relay_bytes_per_user_per_sec: 1000,
        ..Limits::default()
    });
    let (a1, _) = player(&mut w, "alice");
    w.msg(a1, create());
    let code = match w.sent(a1).pop() {
        Some(ServerMsg::SessionCreated(i)) => i.code,
        other => panic!("{other:?}"),
    };
    let (a2, _) = player(&mut w, "alice");
    w.msg(a2, join(&code));
    let (b, _) = player(&mut w, "bob");
    w.msg(b, join(&code));
    let _ = w.outputs();
    // 1000 bytes a second for both of alice's connections together.
    assert!(w.route(a1, ALL_PEERS, 600).is_ok());
    assert_eq!(
        w.route(a2, ALL_PEERS, 600).map(|_| ()),
        Err(RelayDrop::UserRateLimited)
    );
    assert!(w.route(a2, ALL_PEERS, 400).is_ok());
    // Bob has his own budget.
    assert!(w.route(b, ALL_PEERS, 1000).is_ok());
    w.advance(Duration::from_secs(1));
    assert!(w.route(a2, ALL_PEERS, 1000).is_ok());
    // Connected to another node too: half each.
    let remote = RemoteUsage {
        connections: 1,
        sessions: 0,
        nodes: 1,
    };
    w.core.set_remote_usage(
        w.now.mono,
        [("alice".to_string(), remote)].into_iter().collect(),
    );
    w.advance(Duration::from_secs(1));
    assert!(w.route(a1, ALL_PEERS, 500).is_ok());
    assert_eq!(
        w.route(a1, ALL_PEERS, 1).map(|_| ()),
        Err(RelayDrop::UserRateLimited)
    );
}

#[test]
fn quotas_count_nothing_on_an_open_server() {
    let mut w = World::start(
        Core::with_rng(
            Limits {
                max_connections_per_user: 1,
                max_sessions_per_user: 1,
                ..Limits::default()
            },
            IceConfig::default(),
            StdRng::seed_from_u64(1),
        ),
        IpAddr::from([192, 0, 2, 9]),
    );
    for _ in 0..3 {
        let c = w.open();
        w.msg(c, hello(None, None));
        let _ = welcome(&mut w, c);
        w.msg(c, create());
        assert!(matches!(
            w.sent(c).pop(),
            Some(ServerMsg::SessionCreated(_))
        ));
    }
    assert!(w.core.user_counts().is_empty());
}

#[test]
fn an_operator_token_needs_the_admin_claim_and_must_not_be_revoked() {
    let mut w = world();
    let admin = token(&w, "ops", 600, json!({ "admin": true, "jti": "ops-1" }));
    assert!(w.core.check_admin(&admin, now_s(&w)).is_ok());
    let player = token(&w, "alice", 600, json!({}));
    assert_eq!(
        w.core.check_admin(&player, now_s(&w)),
        Err(AdminRefusal::NotAdmin)
    );
    assert_eq!(
        w.core.check_admin("garbage", now_s(&w)),
        Err(AdminRefusal::Token(crate::auth::AuthError::Malformed))
    );
    let elsewhere = token(&w, "ops", 600, json!({ "admin": true, "aud": "other" }));
    assert_eq!(
        w.core.check_admin(&elsewhere, now_s(&w)),
        Err(AdminRefusal::Token(crate::auth::AuthError::WrongAudience))
    );
    w.core.revoke(w.now, Revocation::Jti("ops-1".into()));
    // The same revocation twice is one.
    w.core.revoke(w.now, Revocation::Jti("ops-1".into()));
    assert_eq!(
        w.core.check_admin(&admin, now_s(&w)),
        Err(AdminRefusal::Revoked)
    );
    let open = Core::with_rng(
        Limits::default(),
        IceConfig::default(),
        StdRng::seed_from_u64(1),
    );
    assert_eq!(
        open.check_admin(&admin, 0),
        Err(AdminRefusal::NoAccessControl)
    );
}

#[test]
fn a_resume_from_another_node_is_checked_as_a_resume_once_looked_up() {
    let limits = Limits {
        max_connections_per_user: 1,
        ..Limits::default()
    };
    let mut a = quota_world(limits.clone());
    a.core.enable_cluster("a");
    let (ca, wl) = player(&mut a, "alice");
    a.msg(ca, create());
    let code = match a.lookups().pop() {
        Some(Lookup::Reserve { code, .. }) => code,
        other => panic!("{other:?}"),
    };
    a.core.answer(a.now, ca, Answer::Reserved);
    let _ = a.sent(ca);
    let rec = a.core.session_record(&code).expect("record");
    // Node b still counts alice's connection on a (its next heartbeat has
    // not told b yet): her resume there is no extra connection.
    let mut b = quota_world(limits);
    b.core.enable_cluster("b");
    let remote = RemoteUsage {
        connections: 1,
        sessions: 1,
        nodes: 1,
    };
    b.core.set_remote_usage(
        b.now.mono,
        [("alice".to_string(), remote)].into_iter().collect(),
    );
    let c = b.open();
    b.msg(
        c,
        hello(
            Some(token(&b, "alice", 600, json!({}))),
            Some(wl.resume_token.clone()),
        ),
    );
    let lookups = b.lookups();
    assert!(
        matches!(lookups.as_slice(), [Lookup::Token { .. }]),
        "{lookups:?}"
    );
    let moved = crate::cluster::SessionRecord {
        home: "b".into(),
        epoch: rec.epoch + 1,
        ..rec
    };
    b.core.answer(b.now, c, Answer::Here(moved));
    assert!(welcome(&mut b, c).resumed, "resumed, not refused");
    // A token the directory does not know either is no resume: the quota holds.
    let d = b.open();
    b.msg(
        d,
        hello(
            Some(token(&b, "alice", 600, json!({}))),
            Some(vec![7; RESUME_TOKEN_LEN]),
        ),
    );
    assert_eq!(b.lookups().len(), 1);
    b.core.answer(b.now, d, Answer::NotFound);
    assert_eq!(closed_with(&mut b, d), Some(ErrorCode::ServerFull));
}

#[test]
fn a_connection_sent_to_another_node_stops_counting_for_its_player() {
    let mut w = quota_world(Limits {
        max_connections_per_user: 1,
        ..Limits::default()
    });
    w.core.enable_cluster("a");
    let (c, _) = player(&mut w, "alice");
    w.msg(c, join("ABCDEF"));
    assert_eq!(w.lookups().len(), 1);
    w.core.answer(
        w.now,
        c,
        Answer::Elsewhere(crate::protocol::NodeAddr {
            name: "b".into(),
            quic: "127.0.0.1:9".into(),
            http: "http://127.0.0.1:9".into(),
            cert_sha256: None,
        }),
    );
    assert!(
        w.core.user_counts().is_empty(),
        "{:?}",
        w.core.user_counts()
    );
    // And closing it later does not count it off twice.
    w.core.closed(w.now, c, true);
    let (_again, _) = player(&mut w, "alice");
    assert_eq!(w.core.user_counts()[0].connections, 1);
}
