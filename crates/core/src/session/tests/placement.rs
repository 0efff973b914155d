//! Placement by measured ping: the pure rule ([`place_new`]) on hand-made
//! directories, and the core acting on it on simulated time, including
//! measurements that lie.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::limits::Limits;
use crate::protocol::PeerId;
use crate::protocol::{
    ClientKind, ClientMsg, CreateSession, ErrorCode, Hello, JoinSession, RedirectReason, RelayMode,
    ServerMsg, PROTOCOL_VERSION,
};
use crate::session::harness::Node;
use crate::session::{ConnId, Lookup, Output, RelayDrop};
use crate::turn::IceConfig;

fn node(name: &str, region: Option<&str>, sessions: u32) -> NodeInfo {
    NodeInfo {
        addr: NodeAddr {
            name: name.into(),
            quic: format!("{name}.example:4433"),
            http: format!("http://{name}.example:8080"),
            cert_sha256: None,
        },
        sessions,
        connections: sessions * 2,
        draining: false,
        at_unix_ms: 0,
        region: region.map(str::to_string),
    }
}

fn rtt(region: &str, rtt_ms: u32) -> RegionRtt {
    RegionRtt {
        region: region.into(),
        rtt_ms,
    }
}

/// EU (this node, "eu-1"), US and ASIA, one node each, plus a second US node.
fn world() -> Vec<NodeInfo> {
    vec![
        node("eu-1", Some("eu"), 0),
        node("us-1", Some("us"), 3),
        node("us-2", Some("us"), 1),
        node("asia-1", Some("asia"), 0),
    ]
}

fn place<'a>(nodes: &'a [NodeInfo], rtts: &[RegionRtt]) -> Option<&'a str> {
    place_new("eu-1", "eu", nodes, rtts, DEFAULT_MIN_GAIN_MS).map(|a| a.name.as_str())
}

#[test]
fn the_best_region_wins_when_it_gains_enough_and_its_least_loaded_node_is_picked() {
    let w = world();
    // A player in the US: 80 ms to EU, 5 to US, 120 to ASIA.
    let us = [rtt("eu", 80), rtt("us", 5), rtt("asia", 120)];
    assert_eq!(place(&w, &us), Some("us-2"));
    // In ASIA.
    let asia = [rtt("eu", 150), rtt("us", 120), rtt("asia", 5)];
    assert_eq!(place(&w, &asia), Some("asia-1"));
    // In EU: here.
    let eu = [rtt("eu", 5), rtt("us", 80), rtt("asia", 150)];
    assert_eq!(place(&w, &eu), None);
}

#[test]
fn a_gain_below_the_threshold_keeps_the_session_here() {
    let w = world();
    assert_eq!(place(&w, &[rtt("eu", 39), rtt("us", 20)]), None);
    assert_eq!(place(&w, &[rtt("eu", 40), rtt("us", 20)]), Some("us-2"));
    // A threshold of 0 still needs a strictly better region.
    let same = [rtt("eu", 30), rtt("us", 30)];
    assert_eq!(place_new("eu-1", "eu", &w, &same, 0), None);
    let better = [rtt("eu", 31), rtt("us", 30)];
    assert_eq!(
        place_new("eu-1", "eu", &w, &better, 0).map(|a| a.name.as_str()),
        Some("us-2")
    );
}

#[test]
fn nothing_to_compare_keeps_the_session_here() {
    let w = world();
    // Nothing measured, or not this node's region.
    assert_eq!(place(&w, &[]), None);
    assert_eq!(place(&w, &[rtt("us", 5), rtt("asia", 9)]), None);
}

#[test]
fn lies_only_ever_pick_among_live_nodes_of_the_directory() {
    let w = world();
    // A region no live node has, however close it claims to be.
    assert_eq!(place(&w, &[rtt("eu", 500), rtt("mars", 0)]), None);
    // Absurd values: the closest region with a node still wins, and it is
    // a node of the directory.
    let absurd = [rtt("eu", u32::MAX), rtt("us", u32::MAX - 1), rtt("asia", 0)];
    assert_eq!(place(&w, &absurd), Some("asia-1"));
    // The only live node: nothing moves, whatever is claimed.
    let alone = [node("eu-1", Some("eu"), 0)];
    assert_eq!(place(&alone, &[rtt("eu", u32::MAX), rtt("us", 0)]), None);
    assert_eq!(place(&[], &[rtt("eu", u32::MAX), rtt("us", 0)]), None);
    // A node that drains, or has no region, is no candidate.
    let mut w2 = vec![node("eu-1", Some("eu"), 0), node("us-1", Some("us"), 0)];
    w2[1].draining = true;
    assert_eq!(place(&w2, &[rtt("eu", 100), rtt("us", 1)]), None);
    let w3 = [node("eu-1", Some("eu"), 0), node("x", None, 0)];
    assert_eq!(place(&w3, &[rtt("eu", 100), rtt("us", 1)]), None);
}

#[test]
fn ties_go_by_region_then_node_name_so_every_node_agrees() {
    let w = vec![
        node("eu-1", Some("eu"), 0),
        node("b", Some("us"), 0),
        node("a", Some("us"), 0),
        node("c", Some("asia"), 0),
    ];
    // asia < us by name at the same round trip; the least-loaded node of a
    // region, then by name.
    assert_eq!(
        place(&w, &[rtt("eu", 90), rtt("us", 9), rtt("asia", 9)]),
        Some("c")
    );
    assert_eq!(place(&w, &[rtt("eu", 90), rtt("us", 9)]), Some("a"));
}

// ----- the core acting on it -----

fn eu_node() -> Node {
    let mut core = Core::with_rng(
        Limits::default(),
        IceConfig::default(),
        StdRng::seed_from_u64(26),
    );
    core.enable_cluster("eu-1");
    core.enable_placement(Placement {
        region: "eu".into(),
        min_gain_ms: DEFAULT_MIN_GAIN_MS,
    });
    Node::start(core, [192, 0, 2, 26].into())
}

fn hello() -> ClientMsg {
    ClientMsg::Hello(Hello {
        version: PROTOCOL_VERSION,
        client: ClientKind::Rust,
        relay_mode: RelayMode::Datagram,
        name: "p".into(),
        resume_token: None,
        access_token: None,
    })
}

fn create(rtts: Vec<RegionRtt>) -> ClientMsg {
    ClientMsg::CreateSession(CreateSession {
        max_peers: 0,
        password: None,
        region_rtts: rtts,
    })
}

fn us_player() -> Vec<RegionRtt> {
    vec![rtt("eu", 80), rtt("us", 5), rtt("asia", 120)]
}

/// What a create with `rtts` gets on `n`: the redirect's node name, or
/// `None` when the node went on to reserve a code (creates it here).
fn create_on(n: &mut Node, rtts: Vec<RegionRtt>) -> Option<String> {
    let c = n.open();
    n.msg(c, hello());
    n.sent(c);
    n.msg(c, create(rtts));
    let lookups = n.lookups();
    let sent = n.sent(c);
    match (lookups.as_slice(), sent.as_slice()) {
        ([], [ServerMsg::Redirect(r)]) => {
            assert_eq!(r.reason, RedirectReason::Placement);
            Some(r.node.name.clone())
        }
        ([Lookup::Reserve { .. }], []) => None,
        other => panic!("expected a redirect or a reservation, got {other:?}"),
    }
}

#[test]
fn a_create_is_redirected_before_anything_is_kept() {
    let mut n = eu_node();
    n.core
        .set_live_nodes(n.now.mono, world(), Duration::from_millis(1500));
    let c = n.open();
    n.msg(c, hello());
    n.sent(c);
    n.msg(c, create(us_player()));
    let out = n.outputs();
    assert_eq!(
        out,
        vec![Output::Send {
            conn: c,
            msg: ServerMsg::Redirect(crate::protocol::Redirect {
                reason: RedirectReason::Placement,
                node: world()[2].addr.clone(),
            }),
        }]
    );
    assert_eq!(n.core.session_count(), 0);
    assert!(n.persisted().is_empty());
    // An EU player creates here.
    assert_eq!(create_on(&mut n, vec![rtt("eu", 5), rtt("us", 80)]), None);
}

#[test]
fn a_stale_view_of_the_directory_places_nothing() {
    let mut n = eu_node();
    n.core
        .set_live_nodes(n.now.mono, world(), Duration::from_millis(1500));
    assert_eq!(create_on(&mut n, us_player()), Some("us-2".into()));
    // The heartbeat has not read the directory for longer than the node TTL.
    n.advance(Duration::from_millis(1501));
    assert_eq!(create_on(&mut n, us_player()), None);
    assert!(n.core.live_nodes(n.now.mono).is_empty());
    // A new reading counts again; one without the US node sends nobody there.
    let no_us: Vec<NodeInfo> = world()
        .into_iter()
        .filter(|x| x.region.as_deref() != Some("us"))
        .collect();
    n.core
        .set_live_nodes(n.now.mono, no_us, Duration::from_millis(1500));
    assert_eq!(create_on(&mut n, us_player()), None);
}

#[test]
fn without_placement_or_cluster_nothing_changes() {
    // A cluster node without a region: the measurements are taken and ignored.
    let mut core = Core::with_rng(
        Limits::default(),
        IceConfig::default(),
        StdRng::seed_from_u64(1),
    );
    core.enable_cluster("eu-1");
    let mut n = Node::start(core, [192, 0, 2, 1].into());
    n.core
        .set_live_nodes(n.now.mono, world(), Duration::from_millis(1500));
    assert_eq!(create_on(&mut n, us_player()), None);
    // A single node with placement configured (no cluster): created at once.
    let mut core = Core::with_rng(
        Limits::default(),
        IceConfig::default(),
        StdRng::seed_from_u64(2),
    );
    core.enable_placement(Placement {
        region: "eu".into(),
        min_gain_ms: 20,
    });
    core.set_live_nodes(n.now.mono, world(), Duration::from_secs(60));
    let mut s = Node::start(core, [192, 0, 2, 2].into());
    let c = s.open();
    s.msg(c, hello());
    s.sent(c);
    s.msg(c, create(us_player()));
    assert!(matches!(
        s.sent(c).as_slice(),
        [ServerMsg::SessionCreated(_)]
    ));
}

#[test]
fn bad_region_lists_are_invalid_arguments_and_the_connection_stays() {
    let mut n = eu_node();
    n.core
        .set_live_nodes(n.now.mono, world(), Duration::from_millis(1500));
    let c = n.open();
    n.msg(c, hello());
    n.sent(c);
    let many: Vec<RegionRtt> = (0..17).map(|i| rtt(&format!("r{i}"), 1)).collect();
    for bad in [
        many,
        vec![rtt("EU", 1)],
        vec![rtt("", 1)],
        vec![rtt("us", 1), rtt("us", 2)],
    ] {
        n.msg(c, create(bad.clone()));
        n.msg(
            c,
            ClientMsg::JoinSession(JoinSession {
                code: "7KQ2MX".into(),
                password: None,
                region_rtts: bad,
            }),
        );
        let sent = n.sent(c);
        assert_eq!(sent.len(), 2, "{sent:?}");
        for m in sent {
            assert!(
                matches!(m, ServerMsg::Error { code, .. } if code == ErrorCode::InvalidArgument as u16),
                "{m:?}"
            );
        }
    }
    assert!(n.lookups().is_empty());
    // Still usable.
    n.msg(c, create(us_player()));
    assert!(matches!(n.sent(c).as_slice(), [ServerMsg::Redirect(_)]));
}

// ----- the move rule (decision only) -----

fn member(
    at: Option<Duration>,
    version: u16,
    rtts: &[(&str, u32)],
    t0: std::time::Instant,
) -> MoveMember {
    MoveMember {
        relayed_at: at.map(|d| t0 + d),
        version,
        rtts: rtts.iter().map(|(r, ms)| rtt(r, *ms)).collect(),
    }
}

#[test]
fn a_session_moves_to_the_region_that_minimises_its_worst_relayed_member() {
    let t0 = std::time::Instant::now();
    let now = t0 + Duration::from_secs(100);
    let w = world();
    let rule = MoveRule::default();
    let relayed = Some(Duration::from_secs(99));
    // Two players in the US and ASIA on the EU node: worst is 150 here,
    // 120 in the US (the ASIA player), 120 in ASIA (the US player): a tie
    // goes by region name, asia.
    let us = member(relayed, 5, &[("eu", 80), ("us", 5), ("asia", 120)], t0);
    let asia = member(relayed, 5, &[("eu", 150), ("us", 120), ("asia", 5)], t0);
    let to = decide_move(
        now,
        "eu-1",
        "eu",
        &w,
        &[us.clone(), asia.clone()],
        None,
        &rule,
    );
    assert_eq!(to.map(|a| a.name.as_str()), Some("asia-1"));
    // Two US players: to the US's least-loaded node.
    let to = decide_move(
        now,
        "eu-1",
        "eu",
        &w,
        &[us.clone(), us.clone()],
        None,
        &rule,
    );
    assert_eq!(to.map(|a| a.name.as_str()), Some("us-2"));
    // An EU player with them: the worst member is no better elsewhere by 20 ms.
    let eu = member(relayed, 5, &[("eu", 5), ("us", 80), ("asia", 150)], t0);
    assert_eq!(
        decide_move(now, "eu-1", "eu", &w, &[us.clone(), eu], None, &rule),
        None
    );
}

#[test]
fn a_session_stays_unless_every_rule_allows_the_move() {
    let t0 = std::time::Instant::now();
    let now = t0 + Duration::from_secs(100);
    let w = world();
    let rule = MoveRule::default();
    let recent = Some(Duration::from_secs(96));
    let us = |at, v| member(at, v, &[("eu", 80), ("us", 5), ("asia", 120)], t0);
    let moves = |members: &[MoveMember], last: Option<std::time::Instant>| {
        decide_move(now, "eu-1", "eu", &w, members, last, &rule).map(|a| a.name.clone())
    };
    assert_eq!(
        moves(&[us(recent, 5), us(recent, 5)], None),
        Some("us-2".into())
    );
    // A member on an older version: never (it could not move without loss).
    assert_eq!(moves(&[us(recent, 5), us(recent, 4)], None), None);
    // Nobody relayed within 5 s (direct paths): stays.
    let stale = Some(Duration::from_secs(94));
    assert_eq!(moves(&[us(stale, 5), us(None, 5)], None), None);
    // Only the relayed member counts: one relays, one is direct.
    let direct_far = member(None, 5, &[("eu", 1), ("us", 500)], t0);
    assert_eq!(
        moves(&[us(recent, 5), direct_far], None),
        Some("us-2".into())
    );
    // A relayed member without measurements: nothing is costed.
    assert_eq!(
        moves(&[us(recent, 5), member(recent, 5, &[], t0)], None),
        None
    );
    // Moved 59 s ago: not yet; 60 s ago: again.
    let members = [us(recent, 5), us(recent, 5)];
    assert_eq!(moves(&members, Some(now - Duration::from_secs(59))), None);
    assert_eq!(
        moves(&members, Some(now - Duration::from_secs(60))),
        Some("us-2".into())
    );
    // No session, no move.
    assert_eq!(moves(&[], None), None);
}

#[test]
fn lying_members_cannot_move_a_session_off_the_only_live_node_or_out_of_the_directory() {
    let t0 = std::time::Instant::now();
    let now = t0 + Duration::from_secs(100);
    let rule = MoveRule::default();
    let recent = Some(Duration::from_secs(99));
    let liar = member(recent, 5, &[("eu", u32::MAX), ("us", 0), ("mars", 0)], t0);
    let alone = [node("eu-1", Some("eu"), 0)];
    assert_eq!(
        decide_move(
            now,
            "eu-1",
            "eu",
            &alone,
            std::slice::from_ref(&liar),
            None,
            &rule
        ),
        None
    );
    // With the directory's nodes, the lie can only pick one of them.
    let w = world();
    let to = decide_move(
        now,
        "eu-1",
        "eu",
        &w,
        std::slice::from_ref(&liar),
        None,
        &rule,
    );
    assert_eq!(to.map(|a| a.name.as_str()), Some("us-2"));
    assert!(w.iter().any(|n| Some(&n.addr) == to));
    // "mars" has no node: a member measuring only it and here costs nothing.
    let mars = member(recent, 5, &[("eu", 900), ("mars", 0)], t0);
    assert_eq!(
        decide_move(now, "eu-1", "eu", &w, &[mars], None, &rule),
        None
    );
}

// ----- moving a running session (the core acting on the rule) -----

fn hello_v(version: u16, token: Option<Vec<u8>>) -> ClientMsg {
    ClientMsg::Hello(Hello {
        version,
        client: ClientKind::Rust,
        relay_mode: RelayMode::Datagram,
        name: "p".into(),
        resume_token: token,
        access_token: None,
    })
}

/// An EU node that moves sessions (default rule, 3 s overlap), seeing
/// `world()` for the next hour.
fn moving_node() -> Node {
    let mut n = eu_node();
    n.core
        .enable_moves(MoveRule::default(), Duration::from_millis(3000));
    n.core
        .set_live_nodes(n.now.mono, world(), Duration::from_secs(3600));
    n
}

/// A session on `n` of a host close to EU and US alike (created here: the
/// gain of 10 ms is below the threshold) and a US joiner, each speaking
/// `versions`. Returns (host conn, host id, joiner conn, joiner id, code).
fn eu_us_pair(n: &mut Node, versions: (u16, u16)) -> (ConnId, PeerId, ConnId, PeerId, String) {
    eu_us_pair_tokens(n, versions).0
}

/// [`eu_us_pair`], with the host's and the joiner's resume tokens.
#[allow(clippy::type_complexity)]
fn eu_us_pair_tokens(
    n: &mut Node,
    versions: (u16, u16),
) -> ((ConnId, PeerId, ConnId, PeerId, String), (Vec<u8>, Vec<u8>)) {
    let h = n.open();
    n.msg(h, hello_v(versions.0, None));
    let (hp, ht) = match n.sent(h).pop() {
        Some(ServerMsg::Welcome(w)) => (w.peer_id, w.resume_token),
        other => panic!("expected Welcome, got {other:?}"),
    };
    n.msg(
        h,
        create(vec![rtt("eu", 40), rtt("us", 30), rtt("asia", 200)]),
    );
    let code = match n.lookups().as_slice() {
        [Lookup::Reserve { code, .. }] => code.clone(),
        other => panic!("expected a reservation, got {other:?}"),
    };
    n.core.answer(n.now, h, crate::session::Answer::Reserved);
    assert!(matches!(
        n.sent(h).as_slice(),
        [ServerMsg::SessionCreated(_)]
    ));
    let j = n.open();
    n.msg(j, hello_v(versions.1, None));
    let (jp, jt) = match n.sent(j).pop() {
        Some(ServerMsg::Welcome(w)) => (w.peer_id, w.resume_token),
        other => panic!("expected Welcome, got {other:?}"),
    };
    n.msg(
        j,
        ClientMsg::JoinSession(JoinSession {
            code: code.clone(),
            password: None,
            region_rtts: vec![rtt("eu", 80), rtt("us", 5), rtt("asia", 150)],
        }),
    );
    assert!(matches!(
        n.sent(j).as_slice(),
        [ServerMsg::SessionJoined(_)]
    ));
    n.sent(h);
    n.persisted();
    ((h, hp, j, jp, code), (ht, jt))
}

/// Both members relay a frame to each other now.
fn relay_both(n: &mut Node, h: ConnId, j: ConnId) {
    assert!(n.route(h, crate::protocol::ALL_PEERS, 100).is_ok());
    assert!(n.route(j, crate::protocol::ALL_PEERS, 100).is_ok());
}

#[test]
fn a_relayed_session_moves_once_a_minute_at_most_and_to_the_best_region() {
    let mut n = moving_node();
    let (h, _, j, _, code) = eu_us_pair(&mut n, (5, 5));
    relay_both(&mut n, h, j);
    // Worst member: 80 ms here, 30 ms in the US. But created just now:
    // not within the move interval.
    assert!(n.core.moves_due(n.now.mono).is_empty());
    n.advance(Duration::from_secs(59));
    relay_both(&mut n, h, j);
    assert!(n.core.moves_due(n.now.mono).is_empty());
    n.advance(Duration::from_secs(1));
    relay_both(&mut n, h, j);
    let due = n.core.moves_due(n.now.mono);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].code, code);
    assert_eq!(due[0].target.name, "us-2");
    // Not relayed for more than 5 s (direct paths now): no move.
    n.advance(Duration::from_secs(6));
    assert!(n.core.moves_due(n.now.mono).is_empty());
    relay_both(&mut n, h, j);
    assert_eq!(n.core.moves_due(n.now.mono).len(), 1);
    // Moving: proposed no more.
    let target = due[0].target.clone();
    assert_eq!(n.core.begin_move(n.now, &code, &target), 2);
    assert!(n.core.moves_due(n.now.mono).is_empty());
    assert_eq!(n.core.begin_move(n.now, &code, &target), 0);
}

#[test]
fn a_v4_member_or_one_without_measurements_keeps_the_session_here() {
    let mut n = moving_node();
    let (h, _, j, _, _) = eu_us_pair(&mut n, (5, 4));
    n.advance(Duration::from_secs(61));
    relay_both(&mut n, h, j);
    assert!(n.core.moves_due(n.now.mono).is_empty());
    // Without moves enabled, nothing ever moves.
    let mut plain = eu_node();
    plain
        .core
        .set_live_nodes(plain.now.mono, world(), Duration::from_secs(3600));
    let (h, _, j, _, _) = eu_us_pair(&mut plain, (5, 5));
    plain.advance(Duration::from_secs(61));
    relay_both(&mut plain, h, j);
    assert!(plain.core.moves_due(plain.now.mono).is_empty());
}

#[test]
fn a_move_redirects_keeps_relaying_through_the_overlap_then_closes_without_peer_left() {
    let mut n = moving_node();
    let (h, hp, j, jp, code) = eu_us_pair(&mut n, (5, 5));
    n.advance(Duration::from_secs(61));
    relay_both(&mut n, h, j);
    let due = n.core.moves_due(n.now.mono);
    let target = due[0].target.clone();
    assert_eq!(n.core.begin_move(n.now, &code, &target), 2);
    for c in [h, j] {
        assert_eq!(
            n.sent(c),
            vec![ServerMsg::Redirect(crate::protocol::Redirect {
                reason: RedirectReason::Placement,
                node: target.clone(),
            })]
        );
    }
    // The new node writes the session now; this one writes nothing.
    assert!(n.persisted().is_empty());
    // Through the overlap the frames still flow both ways.
    n.advance(Duration::from_millis(2999));
    n.core.handle_timeout(n.now);
    let (from, to) = n
        .route(h, crate::protocol::ALL_PEERS, 100)
        .expect("relayed");
    assert_eq!((from, to.len(), to[0].conn), (hp, 1, j));
    let (from, to) = n.route(j, hp, 100).expect("relayed");
    assert_eq!((from, to[0].conn), (jp, h));
    // A newcomer with the code is sent to the new node.
    let x = n.open();
    n.msg(x, hello_v(5, None));
    n.sent(x);
    n.msg(
        x,
        ClientMsg::JoinSession(JoinSession {
            code: code.clone(),
            password: None,
            region_rtts: Vec::new(),
        }),
    );
    assert_eq!(
        n.sent(x),
        vec![ServerMsg::Redirect(crate::protocol::Redirect {
            reason: RedirectReason::Moved,
            node: target.clone(),
        })]
    );
    // The joiner drops its old connection early: the host hears nothing.
    n.core.closed(n.now, j, false);
    assert!(n.sent(h).is_empty());
    // The overlap ends: the host's old connection is closed with a
    // non-zero code, and nobody is told anyone left.
    n.advance(Duration::from_millis(1));
    n.core.handle_timeout(n.now);
    let out = n.outputs();
    assert_eq!(
        out,
        vec![Output::Close {
            conn: h,
            code: ErrorCode::Replaced,
            reason: "the session moved to node us-2".into(),
        }]
    );
    assert_ne!(ErrorCode::Replaced as u16, 0);
    assert_eq!(n.core.session_count(), 0);
    // Only the newcomer is left (it said Hello here).
    assert_eq!(n.core.peer_count(), 1);
    // No deletion either: the record is the new node's.
    assert!(n.persisted().is_empty());
    assert_eq!(
        n.route(h, crate::protocol::ALL_PEERS, 100).map(|_| ()),
        Err(RelayDrop::NotInSession)
    );
}

// ----- measurements travel with the session (hand-over, take-over) -----

/// A node `name` of `region` that places and moves sessions (default
/// rule), seeing `nodes` for the next hour.
fn moving_node_in(name: &str, region: &str, nodes: Vec<NodeInfo>, seed: u64) -> Node {
    let mut core = Core::with_rng(
        Limits::default(),
        IceConfig::default(),
        StdRng::seed_from_u64(seed),
    );
    core.enable_cluster(name);
    core.enable_placement(Placement {
        region: region.into(),
        min_gain_ms: DEFAULT_MIN_GAIN_MS,
    });
    core.enable_moves(MoveRule::default(), Duration::from_millis(3000));
    let mut n = Node::start(core, [192, 0, 2, 27].into());
    n.core
        .set_live_nodes(n.now.mono, nodes, Duration::from_secs(3600));
    n
}

/// `token`'s player resumes on `n` with a version-5 Hello; the directory
/// answers the first lookup with `rec`. Returns its new connection.
fn resume_on(n: &mut Node, token: Vec<u8>, rec: &crate::cluster::SessionRecord) -> ConnId {
    let c = n.open();
    n.msg(c, hello_v(5, Some(token)));
    match n.lookups().as_slice() {
        [] => {}
        [Lookup::Token { conn, .. }] if *conn == c => {
            n.core
                .answer(n.now, c, crate::session::Answer::Here(rec.clone()));
        }
        other => panic!("expected at most a token lookup, got {other:?}"),
    }
    match n.sent(c).first() {
        Some(ServerMsg::Welcome(w)) => assert!(w.resumed, "not resumed: {w:?}"),
        other => panic!("expected Welcome, got {other:?}"),
    }
    c
}

/// The nodes still alive once eu-1 is gone.
fn world_without_eu() -> Vec<NodeInfo> {
    world()
        .into_iter()
        .filter(|n| n.addr.name != "eu-1")
        .collect()
}

#[test]
fn a_session_taken_over_keeps_its_members_measurements_and_moves_again_after_the_interval() {
    // On eu-1: a host close to EU and US alike, a joiner close to the US.
    let mut eu = moving_node();
    let ((h, hp, j, jp, code), (ht, jt)) = eu_us_pair_tokens(&mut eu, (5, 5));
    relay_both(&mut eu, h, j);
    // What eu-1 writes (and what a drain or a move writes just before it
    // hands the session over) carries both members' measurements.
    let rec = eu.core.session_record(&code).expect("held");
    let by_id = |rec: &crate::cluster::SessionRecord, p: PeerId| {
        rec.members
            .iter()
            .find(|m| m.id == p)
            .map(|m| m.region_rtts.clone())
            .expect("a member")
    };
    assert_eq!(
        by_id(&rec, hp),
        vec![rtt("eu", 40), rtt("us", 30), rtt("asia", 200)]
    );
    assert_eq!(
        by_id(&rec, jp),
        vec![rtt("eu", 80), rtt("us", 5), rtt("asia", 150)]
    );
    // eu-1 is gone; the session lands in asia (a take-over or a drain
    // picks a node by load, not by region): the worst place for both.
    let rec = crate::cluster::moved(&rec, "eu-1", rec.epoch, "asia-1").unwrap();
    let mut asia = moving_node_in("asia-1", "asia", world_without_eu(), 27);
    let h2 = resume_on(&mut asia, ht.clone(), &rec);
    let j2 = resume_on(&mut asia, jt.clone(), &rec);
    relay_both(&mut asia, h2, j2);
    // Its record on asia-1 still carries them.
    let mine = asia.core.session_record(&code).expect("taken in");
    assert_eq!(mine.home, "asia-1");
    assert_eq!(by_id(&mine, hp), by_id(&rec, hp));
    assert_eq!(by_id(&mine, jp), by_id(&rec, jp));
    // Arrival counts as a move: not again within the interval...
    assert!(asia.core.moves_due(asia.now.mono).is_empty());
    asia.advance(Duration::from_secs(59));
    relay_both(&mut asia, h2, j2);
    assert!(asia.core.moves_due(asia.now.mono).is_empty());
    // ...then to the US (worst member 30 ms there, 200 ms here), on the
    // restored measurements alone: nobody joined anew.
    asia.advance(Duration::from_secs(1));
    relay_both(&mut asia, h2, j2);
    let due = asia.core.moves_due(asia.now.mono);
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(due[0].code, code);
    assert_eq!(due[0].target.name, "us-2");
    assert_eq!(due[0].epoch, rec.epoch);

    // The same record as a node of the previous release wrote it (no
    // measurements): it decodes, and the session stays where it landed.
    let mut old = rec.clone();
    for m in &mut old.members {
        m.region_rtts.clear();
    }
    let json = serde_json::to_string(&old).unwrap();
    assert!(!json.contains("region_rtts"), "{json}");
    let old: crate::cluster::SessionRecord = serde_json::from_str(&json).unwrap();
    let mut bare = moving_node_in("asia-1", "asia", world_without_eu(), 28);
    let h3 = resume_on(&mut bare, ht, &old);
    let j3 = resume_on(&mut bare, jt, &old);
    bare.advance(Duration::from_secs(61));
    relay_both(&mut bare, h3, j3);
    assert!(bare.core.moves_due(bare.now.mono).is_empty());
}
