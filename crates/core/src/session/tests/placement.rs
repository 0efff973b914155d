//! Placement by measured ping: the pure rule ([`place_new`]) on hand-made
//! directories, and the core acting on it on simulated time, including
//! measurements that lie.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::limits::Limits;
use crate::protocol::{
    ClientKind, ClientMsg, CreateSession, ErrorCode, Hello, JoinSession, RedirectReason, RelayMode,
    ServerMsg, PROTOCOL_VERSION,
};
use crate::session::harness::Node;
use crate::session::{Lookup, Output};
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
    let us = member(relayed, 4, &[("eu", 80), ("us", 5), ("asia", 120)], t0);
    let asia = member(relayed, 4, &[("eu", 150), ("us", 120), ("asia", 5)], t0);
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
    let eu = member(relayed, 4, &[("eu", 5), ("us", 80), ("asia", 150)], t0);
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
        moves(&[us(recent, 4), us(recent, 4)], None),
        Some("us-2".into())
    );
    // A member on an older version: never (it could not move without loss).
    assert_eq!(moves(&[us(recent, 4), us(recent, 3)], None), None);
    // Nobody relayed within 5 s (direct paths): stays.
    let stale = Some(Duration::from_secs(94));
    assert_eq!(moves(&[us(stale, 4), us(None, 4)], None), None);
    // Only the relayed member counts: one relays, one is direct.
    let direct_far = member(None, 4, &[("eu", 1), ("us", 500)], t0);
    assert_eq!(
        moves(&[us(recent, 4), direct_far], None),
        Some("us-2".into())
    );
    // A relayed member without measurements: nothing is costed.
    assert_eq!(
        moves(&[us(recent, 4), member(recent, 4, &[], t0)], None),
        None
    );
    // Moved 59 s ago: not yet; 60 s ago: again.
    let members = [us(recent, 4), us(recent, 4)];
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
    let liar = member(recent, 4, &[("eu", u32::MAX), ("us", 0), ("mars", 0)], t0);
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
    let mars = member(recent, 4, &[("eu", 900), ("mars", 0)], t0);
    assert_eq!(
        decide_move(now, "eu-1", "eu", &w, &[mars], None, &rule),
        None
    );
}
