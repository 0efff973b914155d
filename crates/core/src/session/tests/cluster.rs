//! Cluster mode's rules in the core: one or more nodes' cores driven by
//! hand through the shared harness ([`Node`], tests/harness.rs); the
//! directory is the test itself.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::limits::Limits;
use crate::protocol::{
    ClientKind, CreateSession, Hello, JoinSession, PeerId, RelayMode, PROTOCOL_VERSION,
};
use crate::session::harness::Node;
use crate::session::ConnId;
use crate::turn::IceConfig;

fn addr(name: &str) -> NodeAddr {
    NodeAddr {
        name: name.into(),
        quic: format!("{name}.example:4433"),
        http: format!("http://{name}.example:8080"),
        cert_sha256: None,
    }
}

impl Node {
    fn new(name: &str, seed: u64) -> Self {
        let mut core = Core::with_rng(
            Limits::default(),
            IceConfig::default(),
            StdRng::seed_from_u64(seed),
        );
        core.enable_cluster(name);
        Node::start(core, [192, 0, 2, 7].into())
    }
    /// Hello without a token: (conn, peer id, token).
    fn hello(&mut self, name: &str) -> (ConnId, PeerId, Vec<u8>) {
        let c = self.open();
        self.msg(c, hello(name, None));
        match self.sent(c).pop() {
            Some(ServerMsg::Welcome(w)) => (c, w.peer_id, w.resume_token),
            other => panic!("expected Welcome, got {other:?}"),
        }
    }
    /// A host whose session's code the directory reserves at once.
    fn host(&mut self) -> (ConnId, PeerId, Vec<u8>, String) {
        let (c, p, token) = self.hello("host");
        self.msg(c, create());
        let code = match self.lookups().as_slice() {
            [Lookup::Reserve { conn, code }] if *conn == c => code.clone(),
            other => panic!("expected one reservation, got {other:?}"),
        };
        self.core.answer(self.now, c, Answer::Reserved);
        match self.sent(c).pop() {
            Some(ServerMsg::SessionCreated(info)) => assert_eq!(info.code, code),
            other => panic!("expected SessionCreated, got {other:?}"),
        }
        (c, p, token, code)
    }
}

fn hello(name: &str, token: Option<Vec<u8>>) -> ClientMsg {
    ClientMsg::Hello(Hello {
        version: PROTOCOL_VERSION,
        client: ClientKind::Rust,
        relay_mode: RelayMode::Datagram,
        name: name.into(),
        resume_token: token,
        access_token: None,
    })
}

fn create() -> ClientMsg {
    ClientMsg::CreateSession(CreateSession {
        max_peers: 0,
        password: Some("hunter2".into()),
        region_rtts: Vec::new(),
    })
}

fn join(code: &str, password: &str) -> ClientMsg {
    ClientMsg::JoinSession(JoinSession {
        code: code.into(),
        password: Some(password.into()),
        region_rtts: Vec::new(),
    })
}

fn record_of(persisted: &[Persist]) -> SessionRecord {
    persisted
        .iter()
        .rev()
        .find_map(|p| match p {
            Persist::Put(r) => Some(r.clone()),
            _ => None,
        })
        .expect("a record write")
}

#[test]
fn a_new_session_is_announced_only_once_its_code_is_reserved() {
    let mut a = Node::new("a", 1);
    let (c, _, _) = a.hello("host");
    a.msg(c, create());
    let first = match a.lookups().as_slice() {
        [Lookup::Reserve { code, .. }] => code.clone(),
        other => panic!("{other:?}"),
    };
    assert!(a.sent(c).is_empty(), "nothing before the reservation");
    // Taken elsewhere: another code is tried.
    a.core.answer(a.now, c, Answer::Taken);
    let second = match a.lookups().as_slice() {
        [Lookup::Reserve { code, .. }] => code.clone(),
        other => panic!("{other:?}"),
    };
    assert_ne!(first, second);
    a.core.answer(a.now, c, Answer::Reserved);
    assert!(matches!(a.sent(c).pop(), Some(ServerMsg::SessionCreated(i)) if i.code == second));
    assert_eq!(a.core.session_count(), 1);
}

#[test]
fn a_create_the_directory_cannot_reserve_fails_cleanly_and_frees_the_quota() {
    let mut a = Node::new("a", 2);
    let (c, _, _) = a.hello("host");
    for _ in 0..30 {
        a.msg(c, create());
        assert_eq!(a.lookups().len(), 1);
        a.core.answer(a.now, c, Answer::Unavailable);
        let out = a.sent(c);
        assert!(
            matches!(out.last(), Some(ServerMsg::Error { code, .. }) if *code == ErrorCode::ClusterUnavailable as u16),
            "{out:?}"
        );
    }
    // 30 failed creates charged nothing: the per-address quota (20) still has room.
    a.msg(c, create());
    assert_eq!(a.lookups().len(), 1);
    a.core.answer(a.now, c, Answer::Reserved);
    assert!(matches!(
        a.sent(c).pop(),
        Some(ServerMsg::SessionCreated(_))
    ));
}

#[test]
fn records_hold_hashed_tokens_and_follow_every_membership_change() {
    let mut a = Node::new("a", 3);
    let (_, host, host_token, code) = a.host();
    let rec = record_of(&a.persisted());
    assert_eq!(
        (rec.code.as_str(), rec.home.as_str(), rec.host),
        (code.as_str(), "a", host)
    );
    assert_eq!(rec.members.len(), 1);
    assert_eq!(
        rec.members[0].token_sha256,
        crate::cluster::token_hash(&host_token)
    );
    assert!(!rec.members[0]
        .token_sha256
        .contains(&hex::encode(&host_token)));
    assert!(rec.password_sha256.is_some());
    // A join is written; a relay frame is not.
    let (j, joiner, _) = a.hello("joiner");
    a.msg(j, join(&code, "hunter2"));
    assert!(matches!(a.sent(j).pop(), Some(ServerMsg::SessionJoined(_))));
    let rec = record_of(&a.persisted());
    assert_eq!(
        rec.members.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![host, joiner]
    );
    let mut targets = Vec::new();
    a.core
        .route(a.now.mono, j, 0, 10, &mut targets)
        .expect("relayed");
    assert!(a.persisted().is_empty(), "the relay path writes nothing");
    // The last member leaving ends it: the record is deleted.
    a.core.closed(a.now, j, true);
    a.persisted();
    let host_conn = a
        .core
        .peers
        .get(&host)
        .and_then(|p| p.conn)
        .expect("host conn");
    a.core.closed(a.now, host_conn, true);
    assert_eq!(a.persisted(), vec![Persist::Delete { code, epoch: 0 }]);
}

#[test]
fn rewrite_all_writes_every_held_session_again_unchanged() {
    let mut a = Node::new("a", 11);
    let (_, _, _, first) = a.host();
    let (_, _, _, second) = a.host();
    let written = a.persisted();
    assert!(a.persisted().is_empty(), "nothing owed after the writes");
    a.core.rewrite_all();
    let mut again: Vec<SessionRecord> = a
        .persisted()
        .into_iter()
        .map(|p| match p {
            Persist::Put(r) => r,
            other => panic!("expected a write, got {other:?}"),
        })
        .collect();
    again.sort_by(|x, y| x.code.cmp(&y.code));
    let mut codes = vec![first.clone(), second.clone()];
    codes.sort();
    assert_eq!(
        again.iter().map(|r| r.code.clone()).collect::<Vec<_>>(),
        codes
    );
    for r in &again {
        assert_eq!(r, &record_of(&written_for(&written, &r.code)));
    }
}

fn written_for(persisted: &[Persist], code: &str) -> Vec<Persist> {
    persisted
        .iter()
        .filter(|p| matches!(p, Persist::Put(r) if r.code == code))
        .cloned()
        .collect()
}

#[test]
fn a_join_through_another_node_is_redirected_to_the_home() {
    let mut b = Node::new("b", 4);
    let (c, _, _) = b.hello("joiner");
    b.msg(c, join("7kq2-mx", "pw"));
    match b.lookups().as_slice() {
        [Lookup::Code { code, .. }] => assert_eq!(code, "7KQ2MX"),
        other => panic!("{other:?}"),
    }
    b.core.answer(b.now, c, Answer::Elsewhere(addr("a")));
    match b.sent(c).pop() {
        Some(ServerMsg::Redirect(r)) => {
            assert_eq!(r.reason, RedirectReason::Session);
            assert_eq!(r.node, addr("a"));
        }
        other => panic!("expected Redirect, got {other:?}"),
    }
    // Not found anywhere: an ordinary failed join.
    let (c, _, _) = b.hello("typo");
    b.msg(c, join("AAAAAA", "pw"));
    assert_eq!(b.lookups().len(), 1);
    b.core.answer(b.now, c, Answer::NotFound);
    assert!(
        matches!(b.sent(c).pop(), Some(ServerMsg::Error { code, .. }) if code == ErrorCode::UnknownSession as u16)
    );
}

#[test]
fn a_session_taken_over_keeps_its_code_host_ids_and_tokens() {
    let mut a = Node::new("a", 5);
    let (_, host, host_token, code) = a.host();
    let (j, joiner, joiner_token) = a.hello("joiner");
    a.msg(j, join(&code, "hunter2"));
    let mut rec = record_of(&a.persisted());
    // Node a dies; b takes the session over (the directory moves its home).
    rec.home = "b".into();
    rec.epoch += 1;
    let mut b = Node::new("b", 6);
    // The joiner comes back to b with its token, its Join pipelined behind (as in a URL).
    let c = b.open();
    b.msg(c, hello("joiner", Some(joiner_token.clone())));
    b.msg(c, ClientMsg::Ping { client_time_ms: 7 });
    let token_sha256 = match b.lookups().as_slice() {
        [Lookup::Token { token_sha256, .. }] => token_sha256.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(token_sha256, crate::cluster::token_hash(&joiner_token));
    assert!(b.sent(c).is_empty(), "the Ping waits for the Welcome");
    b.core.answer(b.now, c, Answer::Here(rec.clone()));
    let out = b.sent(c);
    match &out[..] {
        [ServerMsg::Welcome(w), ServerMsg::SessionJoined(info), ServerMsg::Pong {
            client_time_ms: 7, ..
        }] => {
            assert!(w.resumed);
            assert_eq!(w.peer_id, joiner);
            assert_eq!(w.resume_token, joiner_token);
            assert_eq!(info.code, code);
            assert_eq!(info.host, host);
            assert_eq!(
                info.peers.iter().map(|p| p.id).collect::<Vec<_>>(),
                vec![host, joiner]
            );
        }
        other => panic!("{other:?}"),
    }
    // The host resumes too, on b, without a lookup: b holds the session now.
    let h = b.open();
    b.msg(h, hello("host", Some(host_token)));
    assert!(b.lookups().is_empty());
    let out = b.sent(h);
    assert!(
        matches!(&out[0], ServerMsg::Welcome(w) if w.resumed && w.peer_id == host),
        "{out:?}"
    );
    // The password came along, hashed.
    let (n, _, _) = b.hello("late");
    b.msg(n, join(&code, "wrong"));
    assert!(
        matches!(b.sent(n).pop(), Some(ServerMsg::Error { code, .. }) if code == ErrorCode::WrongPassword as u16)
    );
    b.msg(n, join(&code, "hunter2"));
    assert!(matches!(b.sent(n).pop(), Some(ServerMsg::SessionJoined(_))));
    // b's writes carry the new epoch and home.
    let rec2 = record_of(&b.persisted());
    assert_eq!((rec2.home.as_str(), rec2.epoch), ("b", rec.epoch));
}

/// Two players of one session come back to the same node at once: both
/// lookups find the session homed here (one moved it, the other lost the
/// race and read it again) before either answer is applied. The node
/// takes the session in once and says so once: the shell's take-over
/// count is one per session, not one per racing lookup (issue 28: a
/// third take-over counted for two sessions under load).
#[test]
fn racing_lookups_for_one_session_take_it_in_once() {
    let mut a = Node::new("a", 21);
    let (_, host, host_token, code) = a.host();
    let (j, joiner, joiner_token) = a.hello("joiner");
    a.msg(j, join(&code, "hunter2"));
    let rec = SessionRecord {
        home: "b".into(),
        epoch: 2,
        ..record_of(&a.persisted())
    };
    let mut b = Node::new("b", 22);
    let c1 = b.open();
    b.msg(c1, hello("host", Some(host_token)));
    let c2 = b.open();
    b.msg(c2, hello("joiner", Some(joiner_token)));
    assert_eq!(b.lookups().len(), 2, "both wait for the directory");
    b.core.answer(b.now, c1, Answer::Here(rec.clone()));
    b.core.answer(b.now, c2, Answer::Here(rec));
    let took: Vec<String> = b.take(|o| match o {
        Output::TookIn { code } => Some(code.clone()),
        _ => None,
    });
    assert_eq!(took, vec![code.clone()]);
    assert_eq!(b.core.session_count(), 1);
    for (c, id) in [(c1, host), (c2, joiner)] {
        assert!(
            matches!(b.sent(c).first(), Some(ServerMsg::Welcome(w)) if w.resumed && w.peer_id == id),
            "{id:?} resumed"
        );
    }
    // A later player of a session already held is no take-in at all.
    let (n, _, _) = b.hello("late");
    b.msg(n, join(&code, "hunter2"));
    assert!(matches!(b.sent(n).pop(), Some(ServerMsg::SessionJoined(_))));
    assert!(b
        .take(|o| matches!(o, Output::TookIn { .. }).then_some(()))
        .is_empty());
}

#[test]
fn members_who_never_come_back_end_the_taken_over_session() {
    let mut a = Node::new("a", 7);
    let (_, _, _, code) = a.host();
    let rec = SessionRecord {
        home: "b".into(),
        epoch: 1,
        ..record_of(&a.persisted())
    };
    let mut b = Node::new("b", 8);
    let (c, _, _) = b.hello("joiner");
    b.msg(c, join(&code, "hunter2"));
    assert_eq!(b.lookups().len(), 1);
    b.core.answer(b.now, c, Answer::Here(rec));
    assert!(matches!(b.sent(c).pop(), Some(ServerMsg::SessionJoined(i)) if i.peers.len() == 2));
    b.persisted();
    // The joiner leaves; the host never resumes: the grace ends it.
    b.core.closed(b.now, c, true);
    b.persisted();
    b.now = b
        .now
        .after(b.core.limits().resume_grace() + Duration::from_millis(1));
    b.core.handle_timeout(b.now);
    assert_eq!(b.persisted(), vec![Persist::Delete { code, epoch: 1 }]);
    assert_eq!(b.core.session_count(), 0);
}

#[test]
fn members_of_a_taken_over_session_get_the_slack_on_top_of_the_grace() {
    // Without slack the host's seat is gone once the grace passes; with
    // it, the host resumes.
    for (seed, slack) in [(12, Duration::ZERO), (14, Duration::from_secs(40))] {
        let mut a = Node::new("a", seed);
        let (_, host, host_token, code) = a.host();
        let rec = SessionRecord {
            home: "b".into(),
            epoch: 1,
            ..record_of(&a.persisted())
        };
        let mut b = Node::new("b", seed + 1);
        b.core.set_takeover_slack(slack);
        let (c, _, _) = b.hello("joiner");
        b.msg(c, join(&code, "hunter2"));
        assert_eq!(b.lookups().len(), 1);
        b.core.answer(b.now, c, Answer::Here(rec));
        b.outputs();
        b.now = b
            .now
            .after(b.core.limits().resume_grace() + Duration::from_millis(1));
        b.core.handle_timeout(b.now);
        b.outputs();
        let h = b.open();
        b.msg(h, hello("host", Some(host_token)));
        // A token this node does not know (any more) is looked up.
        for l in b.lookups() {
            b.core.answer(b.now, l.conn(), Answer::NotFound);
        }
        let welcome = b.sent(h).into_iter().find_map(|m| match m {
            ServerMsg::Welcome(w) => Some(w),
            _ => None,
        });
        match welcome {
            Some(w) => {
                assert_eq!(w.resumed, !slack.is_zero(), "slack {slack:?}");
                assert_eq!(w.peer_id == host, !slack.is_zero(), "slack {slack:?}");
            }
            other => panic!("expected Welcome, got {other:?}"),
        }
    }
}

#[test]
fn a_session_that_moved_sends_its_players_there_and_they_get_no_going_away() {
    let mut a = Node::new("a", 9);
    let (h, _, _, code) = a.host();
    let (j, _, _) = a.hello("joiner");
    a.msg(j, join(&code, "hunter2"));
    a.outputs();
    let (lone, _, _) = a.hello("lone");
    assert_eq!(
        a.core
            .session_moved(&code, &addr("c"), RedirectReason::Draining),
        2
    );
    for conn in [h, j] {
        match a.sent(conn).pop() {
            Some(ServerMsg::Redirect(r)) => {
                assert_eq!(
                    (r.reason, r.node.name.as_str()),
                    (RedirectReason::Draining, "c")
                )
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(a.core.session_count(), 0);
    assert!(
        a.persisted().is_empty(),
        "a moved session is not deleted by its old home"
    );
    a.core.shutdown(100);
    let out = a.outputs();
    let going: Vec<ConnId> = out
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                conn,
                msg: ServerMsg::GoingAway { .. },
            } => Some(*conn),
            _ => None,
        })
        .collect();
    assert_eq!(going, vec![lone]);
}

#[test]
fn an_unreachable_directory_closes_a_resume_so_the_client_retries() {
    let mut b = Node::new("b", 10);
    let c = b.open();
    b.msg(c, hello("x", Some(vec![7; 16])));
    assert_eq!(b.lookups().len(), 1);
    b.core.answer(b.now, c, Answer::Unavailable);
    let out = b.outputs();
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Close {
                code: ErrorCode::ClusterUnavailable,
                ..
            }
        )),
        "{out:?}"
    );
    // An unknown token the directory does not know either: a new peer.
    let c = b.open();
    b.msg(c, hello("x", Some(vec![8; 16])));
    b.core.answer(b.now, c, Answer::NotFound);
    let out = b.sent(c);
    assert!(
        matches!(out.last(), Some(ServerMsg::Welcome(w)) if !w.resumed),
        "{out:?}"
    );
}

#[test]
fn a_directory_that_comes_back_gets_every_session_again_and_a_reclaim_takes_the_new_epoch() {
    let mut a = Node::new("a", 12);
    let (_, _, _, one) = a.host();
    let (_, _, _, two) = a.host();
    a.persisted();
    a.core.rewrite_all();
    let mut codes: Vec<String> = a
        .persisted()
        .into_iter()
        .filter_map(|p| match p {
            Persist::Put(r) => Some(r.code),
            _ => None,
        })
        .collect();
    codes.sort();
    let mut want = vec![one.clone(), two];
    want.sort();
    assert_eq!(codes, want);
    // The directory had given `one` to a node that died; a takes it back at epoch 3.
    let rec = SessionRecord {
        epoch: 3,
        ..a.core.session_record(&one).expect("held")
    };
    a.core.reclaimed(a.now, rec);
    let rec = record_of(&a.persisted());
    assert_eq!(
        (rec.code.as_str(), rec.home.as_str(), rec.epoch),
        (one.as_str(), "a", 3)
    );
}

#[test]
fn a_reservation_answered_after_the_peer_moved_on_gives_the_quota_back() {
    let mut a = Node::new("a", 13);
    let ip = [192, 0, 2, 7].into();
    let (c, _, token) = a.hello("host");
    a.msg(c, create());
    assert_eq!(a.lookups().len(), 1);
    // The host resumes on a second connection before the answer comes.
    let c2 = a.open();
    a.msg(c2, hello("host", Some(token)));
    a.core.answer(a.now, c, Answer::Reserved);
    assert_eq!(a.core.session_count(), 0);
    let charged = a.core.per_ip.get(&ip).map(|x| x.sessions);
    assert_eq!(
        charged,
        Some(0),
        "the quota of the unfounded session is back"
    );
}

#[test]
fn a_session_taken_back_keeps_the_players_who_joined_on_the_node_that_died() {
    let mut a = Node::new("a", 15);
    let (h, host, _, code) = a.host();
    let mine = a.core.session_record(&code).expect("held");
    a.persisted();
    // Meanwhile node b held the session and a player joined there; b died.
    let token = vec![9u8; 16];
    let mut theirs = SessionRecord {
        home: "a".into(),
        epoch: 4,
        ..mine
    };
    theirs.members.push(MemberRecord {
        id: 777,
        name: "joined-on-b".into(),
        client: ClientKind::Browser,
        relay_mode: RelayMode::Datagram,
        token_sha256: crate::cluster::token_hash(&token),
        region_rtts: Vec::new(),
    });
    a.core.reclaimed(a.now, theirs);
    assert!(
        matches!(a.sent(h).pop(), Some(ServerMsg::PeerJoined(p)) if p.id == 777),
        "the host here hears of the player who joined there"
    );
    let rec = record_of(&a.persisted());
    assert_eq!(rec.epoch, 4);
    assert_eq!(
        rec.members.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![host, 777]
    );
    // That player resumes here with its token: same id, same session.
    let c = a.open();
    a.msg(c, hello("joined-on-b", Some(token)));
    let out = a.sent(c);
    assert!(
        matches!(&out[..], [ServerMsg::Welcome(w), ServerMsg::SessionJoined(i), ..] if w.resumed && w.peer_id == 777 && i.code == code),
        "{out:?}"
    );
}

#[test]
fn a_flood_while_waiting_for_the_directory_is_refused() {
    let mut b = Node::new("b", 11);
    let c = b.open();
    b.msg(c, hello("x", Some(vec![7; 16])));
    for i in 0..(MAX_QUEUED as u64 + 1) {
        b.msg(c, ClientMsg::Ping { client_time_ms: i });
    }
    let out = b.outputs();
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Close {
                code: ErrorCode::ProtocolViolation,
                ..
            }
        )),
        "{out:?}"
    );
}

/// Moved to `home` at `epoch`, as the directory would hand it over.
fn moved_to(home: &str, epoch: u64, rec: SessionRecord) -> SessionRecord {
    SessionRecord {
        home: home.into(),
        epoch,
        ..rec
    }
}

#[test]
fn a_create_gives_up_after_eight_codes_taken() {
    let mut a = Node::new("a", 31);
    let (c, _, _) = a.hello("host");
    a.msg(c, create());
    for _ in 0..MAX_RESERVATIONS {
        assert!(
            matches!(a.lookups()[..], [Lookup::Reserve { .. }]),
            "one reservation at a time"
        );
        a.core.answer(a.now, c, Answer::Taken);
    }
    assert!(a.lookups().is_empty(), "no ninth code");
    assert!(
        matches!(a.sent(c).pop(), Some(ServerMsg::Error { code, .. }) if code == ErrorCode::Internal as u16)
    );
    assert_eq!(a.core.session_count(), 0);
}

#[test]
fn two_sessions_taken_in_stay_two_sessions() {
    let mut a = Node::new("a", 33);
    let (_, _, _, first) = a.host();
    let (_, _, _, second) = a.host();
    let mut b = Node::new("b", 34);
    for code in [&first, &second] {
        let rec = a.core.session_record(code).unwrap();
        b.core.reclaimed(b.now, moved_to("b", 1, rec));
    }
    assert_eq!(b.core.session_count(), 2);
    // What a draining node hands over: each code at its epoch.
    let mut held = b.core.held_sessions();
    held.sort();
    let mut want = vec![(first.clone(), 1), (second.clone(), 1)];
    want.sort();
    assert_eq!(held, want);
    for code in [first, second] {
        let (c, _, _) = b.hello("late");
        b.msg(c, join(&code, "hunter2"));
        assert!(
            matches!(b.sent(c).pop(), Some(ServerMsg::SessionJoined(i)) if i.code == code),
            "{code}"
        );
    }
}

#[test]
fn a_session_taken_in_without_a_member_is_written_again() {
    for clash in [false, true] {
        let mut a = Node::new("a", 35);
        let (_, host, _, code) = a.host();
        let (j, _, _) = a.hello("joiner");
        a.msg(j, join(&code, "hunter2"));
        let mut rec = moved_to("b", 1, a.core.session_record(&code).unwrap());
        let mut b = Node::new("b", 36);
        let (_, local, _) = b.hello("local");
        if clash {
            rec.members[1].id = local;
        }
        // A stranger's token lookup finds the session homed here.
        let c = b.open();
        b.msg(c, hello("stranger", Some(vec![9; 16])));
        assert_eq!(b.lookups().len(), 1);
        b.core.answer(b.now, c, Answer::Here(rec.clone()));
        assert_eq!(b.core.session_count(), 1);
        let written = b.persisted();
        if clash {
            let ids: Vec<PeerId> = record_of(&written).members.iter().map(|m| m.id).collect();
            assert_eq!(ids, vec![host], "the clashing member is left out");
            let who = b.core.peer_of(c);
            assert!(who.is_some() && who != Some(local));
        } else {
            assert_eq!(written, vec![], "taken in whole: nothing to write");
        }
    }
}

#[test]
fn members_taken_in_lose_their_seats_when_the_grace_ends_though_time_was_read_before() {
    let mut a = Node::new("a", 37);
    let (_, _, _, code) = a.host();
    let rec = moved_to("b", 1, a.core.session_record(&code).unwrap());
    let mut b = Node::new("b", 38);
    b.core.reclaimed(b.now, rec);
    b.persisted();
    b.now = b.now.after(Duration::from_secs(1));
    b.core.handle_timeout(b.now);
    assert_eq!(b.core.session_count(), 1);
    b.now = b.now.after(b.core.limits().resume_grace());
    b.core.handle_timeout(b.now);
    assert_eq!(b.core.session_count(), 0);
    assert_eq!(b.persisted(), vec![Persist::Delete { code, epoch: 1 }]);
}

#[test]
fn a_create_abandoned_while_its_code_is_reserved_gives_the_quota_back() {
    let mut a = Node::new("a", 39);
    a.core = Core::with_rng(
        Limits {
            max_sessions_per_ip: 1,
            ..Limits::default()
        },
        IceConfig::default(),
        StdRng::seed_from_u64(39),
    );
    a.core.enable_cluster("a");
    let (c, _, _) = a.hello("host");
    a.msg(c, create());
    assert_eq!(a.lookups().len(), 1);
    a.core.closed(a.now, c, true);
    let (c, _, _) = a.hello("again");
    a.msg(c, create());
    assert_eq!(a.lookups().len(), 1, "reserving, not refused");
    assert!(a.sent(c).is_empty(), "{:?}", a.sent(c));
}
