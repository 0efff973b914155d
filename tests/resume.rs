//! The Rust client comes back by itself after a cut connection: the UDP
//! path (a proxy in front of the QUIC port, stopped and restarted) and the
//! TCP path (a proxy in front of the HTTP port, killed and restarted), with
//! the same peer id and relay frames flowing again; and, when the outage
//! outlasts the resume grace, it rejoins its session by code.
//!
//! No timing assertions: every wait returns as soon as its condition holds.

mod common;

use std::time::Duration;

use common::*;
use flightsim_p2p::client::{Client, ClientConfig, ClientTransport, Event};
use flightsim_p2p::limits::Limits;
use flightsim_p2p::protocol::{ClientMsg, ErrorCode, LeaveReason, PeerId, RelayMode, ServerMsg};
use flightsim_p2p::server::QuicTuning;
use flightsim_p2p::session::Transport;
use flightsim_p2p::turn::IceConfig;

/// Long enough for a QUIC idle timeout, reconnection attempts into a dead
/// proxy, and a busy machine.
const LONG: Duration = Duration::from_secs(30);

/// The server with a short QUIC idle timeout, so that a cut UDP path kills
/// the connection within seconds (QUIC would otherwise ride a short cut out).
async fn server(limits: Limits) -> TestServer {
    let tuning = QuicTuning {
        idle_timeout_ms: 1_500,
        keep_alive_ms: 500,
        ..QuicTuning::default()
    };
    start_with(limits, IceConfig::default(), tuning).await
}

/// A client config that notices a dead path quickly and does not wait long
/// for a single attempt.
fn quick(mut cfg: ClientConfig) -> ClientConfig {
    cfg.keep_alive = Duration::from_millis(300);
    cfg.connect_timeout = Duration::from_secs(3);
    cfg
}

fn reconnecting(e: &Event) -> Option<u32> {
    match e {
        Event::Reconnecting { attempt, .. } => Some(*attempt),
        Event::Closed(why) => panic!("the client gave up: {why}"),
        _ => None,
    }
}

/// The host sees `peer` go offline (or, with `timed_out`, leave for good).
async fn host_sees(host: &mut Client, peer: PeerId, online: bool) {
    let seen = expect_msg_within(host, |m| match m {
        ServerMsg::PeerStatus { peer: p, online: o } if *p == peer && *o == online => Some(()),
        _ => None,
    })
    .await;
    assert!(
        seen.is_some(),
        "the host never saw peer {peer} online={online}"
    );
}

async fn expect_msg_within<T>(c: &mut Client, pick: impl Fn(&ServerMsg) -> Option<T>) -> Option<T> {
    tokio::time::timeout(LONG, c.wait_for(pick))
        .await
        .ok()?
        .ok()
}

/// Frames flow both ways between `host` and `peer`, with these ids.
async fn relays_both_ways(host: &mut Client, peer: &mut Client, tag: &[u8]) {
    let from = relay_until_delivered(host, peer, tag).await;
    assert_eq!(from, Some(host.peer_id()), "host → peer");
    let from = relay_until_delivered(peer, host, tag).await;
    assert_eq!(from, Some(peer.peer_id()), "peer → host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_udp_path_is_resumed_with_the_same_peer_id() {
    let srv = server(Limits::default()).await;
    let mut host = srv.quic(RelayMode::Datagram).await;
    let code = host.create_session(0, None).await.unwrap().code;
    let mut proxy = UdpProxy::start(srv.quic).await;
    let mut cfg = quick(srv.config(ClientTransport::Quic, RelayMode::Datagram));
    cfg.server = proxy.addr;
    let mut peer = Client::connect(&cfg, None).await.unwrap();
    peer.join_session(&code, None).await.unwrap();
    let id = peer.peer_id();
    relays_both_ways(&mut host, &mut peer, b"before").await;

    // The path dies; so does the QUIC connection, of its idle timeout.
    proxy.stop().await;
    let attempt = wait_event(&mut peer, LONG, reconnecting).await;
    assert!(attempt.is_some(), "the client never noticed the cut");
    host_sees(&mut host, id, false).await;

    // Relay frames sent while down are dropped, not errors.
    peer.send_relay(0, b"into the void").await.unwrap();

    proxy.restart().await;
    let resumed = wait_event(&mut peer, LONG, |e| match e {
        Event::Reconnected { resumed } => Some(*resumed),
        Event::Closed(why) => panic!("the client gave up: {why}"),
        _ => None,
    })
    .await;
    assert_eq!(resumed, Some(true));
    assert_eq!(peer.peer_id(), id);
    assert!(peer.welcome.resumed);
    host_sees(&mut host, id, true).await;
    relays_both_ways(&mut host, &mut peer, b"after").await;
    // Control messages work on the new connection too.
    peer.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_tcp_path_is_resumed_over_websocket_with_the_same_peer_id() {
    let srv = server(Limits::default()).await;
    let mut host = srv.quic(RelayMode::Datagram).await;
    let code = host.create_session(0, None).await.unwrap().code;
    let mut proxy = TcpProxy::start(srv.http).await;
    let mut cfg = quick(srv.config(ClientTransport::Websocket, RelayMode::Datagram));
    cfg.ws_url = Some(format!("ws://{}/ws", proxy.addr));
    let mut peer = Client::connect(&cfg, None).await.unwrap();
    peer.join_session(&code, None).await.unwrap();
    let id = peer.peer_id();
    relays_both_ways(&mut host, &mut peer, b"before").await;
    let sender = peer.relay_sender();

    // The proxy dies with every connection through it; attempts are refused
    // until it is back.
    proxy.stop().await;
    let attempt = wait_event(&mut peer, LONG, |e| reconnecting(e).filter(|n| *n >= 2)).await;
    assert!(
        attempt.is_some(),
        "the client did not retry a refused attempt"
    );
    sender.send(0, b"into the void").await.unwrap();
    proxy.restart().await;
    let resumed = wait_event(&mut peer, LONG, |e| match e {
        Event::Reconnected { resumed } => Some(*resumed),
        Event::Closed(why) => panic!("the client gave up: {why}"),
        _ => None,
    })
    .await;
    assert_eq!(resumed, Some(true));
    assert_eq!(peer.peer_id(), id);
    assert_eq!(peer.transport(), Transport::WebSocket);
    relays_both_ways(&mut host, &mut peer, b"after").await;
    // A relay sender taken before the cut follows the client.
    let host_id = host.peer_id();
    let mut delivered = false;
    for _ in 0..50 {
        sender.send(host_id, b"old handle").await.unwrap();
        if let Some((from, p, _)) = host.next_relay(Duration::from_millis(200)).await {
            if &p[..] == b"old handle" {
                assert_eq!(from, id);
                delivered = true;
                break;
            }
        }
    }
    assert!(delivered, "the relay sender taken before the cut is stuck");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_comes_back_over_websocket_when_udp_stays_cut() {
    let srv = server(Limits::default()).await;
    let mut host = srv.quic(RelayMode::Datagram).await;
    let code = host.create_session(0, None).await.unwrap().code;
    let mut proxy = UdpProxy::start(srv.quic).await;
    let mut cfg = quick(srv.config(ClientTransport::Auto, RelayMode::Datagram));
    cfg.server = proxy.addr;
    cfg.ws_url = Some(format!("ws://{}/ws", srv.http));
    cfg.fallback_delay = Duration::from_millis(300);
    let mut peer = Client::connect(&cfg, None).await.unwrap();
    peer.join_session(&code, None).await.unwrap();
    let id = peer.peer_id();
    relays_both_ways(&mut host, &mut peer, b"before").await;

    // UDP is gone for good; the race picks the WebSocket.
    proxy.stop().await;
    let resumed = wait_event(&mut peer, LONG, |e| match e {
        Event::Reconnected { resumed } => Some(*resumed),
        Event::Closed(why) => panic!("the client gave up: {why}"),
        _ => None,
    })
    .await;
    assert_eq!(resumed, Some(true));
    assert_eq!(peer.peer_id(), id);
    assert_eq!(peer.transport(), Transport::WebSocket);
    relays_both_ways(&mut host, &mut peer, b"after").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_grace_the_client_rejoins_its_session_by_code() {
    let limits = Limits {
        resume_grace_ms: 1_000,
        ..Limits::default()
    };
    let srv = server(limits).await;
    let mut host = srv.quic(RelayMode::Datagram).await;
    let code = host.create_session(0, Some("hunter2")).await.unwrap().code;
    let mut proxy = TcpProxy::start(srv.http).await;
    let mut cfg = quick(srv.config(ClientTransport::Websocket, RelayMode::Datagram));
    cfg.ws_url = Some(format!("ws://{}/ws", proxy.addr));
    let mut peer = Client::connect(&cfg, None).await.unwrap();
    peer.join_session(&code, Some("hunter2")).await.unwrap();
    let old = peer.peer_id();
    relays_both_ways(&mut host, &mut peer, b"before").await;

    // Down for longer than the grace: the server gives the seat away.
    proxy.stop().await;
    let left = expect_msg_within(&mut host, |m| match m {
        ServerMsg::PeerLeft { peer, reason } => Some((*peer, *reason)),
        _ => None,
    })
    .await;
    assert_eq!(left, Some((old, LeaveReason::TimedOut)));
    proxy.restart().await;

    let rejoined = wait_event(&mut peer, LONG, |e| match e {
        Event::Rejoined { peer_id } => Some(*peer_id),
        Event::Reconnected { resumed: true } => panic!("resumed a seat the server gave away"),
        Event::Closed(why) => panic!("the client gave up: {why}"),
        _ => None,
    })
    .await;
    let new = rejoined.expect("the client never rejoined");
    assert_ne!(new, old);
    assert_eq!(peer.peer_id(), new);
    assert!(!peer.welcome.resumed);
    // (The host's inbox still holds the first PeerJoined, of the old id.)
    let joined = expect_msg_within(&mut host, |m| match m {
        ServerMsg::PeerJoined(p) if p.id == new => Some(()),
        _ => None,
    })
    .await;
    assert!(joined.is_some(), "the host never saw the rejoined peer");
    relays_both_ways(&mut host, &mut peer, b"after").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn going_away_brings_the_client_to_the_restarted_server() {
    let tuning = QuicTuning {
        reconnect_after_ms: 300,
        drain_timeout_ms: 200,
        ..QuicTuning::default()
    };
    let mut old = start_with(Limits::default(), IceConfig::default(), tuning).await;
    let mut proxy = UdpProxy::start(old.quic).await;
    let mut cfg = quick(old.config(ClientTransport::Quic, RelayMode::Datagram));
    cfg.server = proxy.addr;
    let mut peer = Client::connect(&cfg, None).await.unwrap();
    let code = peer.create_session(0, None).await.unwrap().code;

    // The server stops: GoingAway, then the close; the client waits as told.
    old.server.take().unwrap().shutdown().await;
    let told = wait_event(&mut peer, LONG, |e| match e {
        Event::Control(ServerMsg::GoingAway { .. }) => Some(()),
        Event::Closed(why) => panic!("the client gave up: {why}"),
        _ => None,
    })
    .await;
    assert!(told.is_some(), "no GoingAway");
    assert!(wait_event(&mut peer, LONG, reconnecting).await.is_some());

    // A new server (same certificate) takes over behind the same address.
    let new = start_same_cert(&old).await;
    proxy.retarget(new.quic).await;
    let resumed = wait_event(&mut peer, LONG, |e| match e {
        Event::Reconnected { resumed } => Some(*resumed),
        Event::Closed(why) => panic!("the client gave up: {why}"),
        _ => None,
    })
    .await;
    // The new server knows neither the token nor the session: the client is
    // back as a new peer and hears that its session is gone.
    assert_eq!(resumed, Some(false));
    let gone = expect_msg_within(&mut peer, |m| match m {
        ServerMsg::Error { code: c, .. } if *c == ErrorCode::UnknownSession as u16 => Some(()),
        _ => None,
    })
    .await;
    assert!(
        gone.is_some(),
        "session {code} should be unknown to the new server"
    );
    // Still connected, and usable: it can host again.
    peer.create_session(0, None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auto_resume_a_cut_is_final() {
    let srv = server(Limits::default()).await;
    let mut proxy = TcpProxy::start(srv.http).await;
    let mut cfg = quick(srv.config(ClientTransport::Websocket, RelayMode::Datagram));
    cfg.ws_url = Some(format!("ws://{}/ws", proxy.addr));
    cfg.auto_resume = false;
    let mut peer = Client::connect(&cfg, None).await.unwrap();
    peer.create_session(0, None).await.unwrap();
    proxy.stop().await;
    let first = peer.next_event_within(LONG).await;
    assert!(matches!(first, Some(Event::Closed(_))), "{first:?}");
    assert_eq!(
        peer.next_event_within(Duration::from_millis(100)).await,
        None
    );
    assert!(peer.send_relay(0, b"x").await.is_err());
}

/// Send a Ping and return `c`'s control messages up to its Pong, those
/// already received included. The server answers in order, so whatever an
/// earlier event made it send `c` comes before the Pong.
async fn messages_up_to_a_pong(c: &mut Client) -> Vec<ServerMsg> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0x7E57_0000);
    let t = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    c.send(&ClientMsg::Ping { client_time_ms: t })
        .await
        .unwrap();
    let mut seen = Vec::new();
    loop {
        match c.next_event_within(LONG).await {
            Some(Event::Control(ServerMsg::Pong { client_time_ms, .. })) if client_time_ms == t => {
                return seen
            }
            Some(Event::Control(m)) => seen.push(m),
            Some(Event::Relay { .. }) => {}
            other => panic!("no Pong: {other:?} after {seen:?}"),
        }
    }
}

/// A message about peer `who` joining or coming back.
fn back(who: PeerId) -> impl Fn(&ServerMsg) -> bool {
    move |m| match m {
        ServerMsg::PeerJoined(p) => p.id == who,
        ServerMsg::PeerStatus { peer, .. } => *peer == who,
        _ => false,
    }
}

/// After a clean leave the resume token brings back no seat (PROTOCOL.md §1,
/// §4): a close with code 0 (QUIC) or 1000 (WebSocket) leaves for good, so
/// the token is unknown: `Error(resume_failed)`, then a Welcome with a new
/// id and no session. After `LeaveSession` the peer is in no session: a
/// lost connection resumed with the token gets its id back (the token is
/// for the id) but no seat: no `SessionJoined`, and the others hear nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_token_brings_back_no_seat_after_a_clean_leave() {
    let srv = server(Limits::default()).await;
    let mut host = srv.quic(RelayMode::Datagram).await;
    let code = host.create_session(0, None).await.unwrap().code;
    let left_with = |want: PeerId| {
        move |m: &ServerMsg| match m {
            ServerMsg::PeerLeft { peer, reason } if *peer == want => Some(*reason),
            _ => None,
        }
    };
    let joined = |m: &ServerMsg| matches!(m, ServerMsg::SessionJoined(_));

    // A clean close, on each transport.
    for transport in [ClientTransport::Quic, ClientTransport::Websocket] {
        let mut cfg = srv.config(transport, RelayMode::Datagram);
        cfg.ws_url = Some(format!("ws://{}/ws", srv.http));
        let mut peer = Client::connect(&cfg, None).await.unwrap();
        peer.join_session(&code, None).await.unwrap();
        let id = peer.peer_id();
        cfg.resume_token = Some(peer.welcome.resume_token.clone());
        peer.close().await;
        let why = expect_msg_within(&mut host, left_with(id)).await;
        assert_eq!(
            why,
            Some(LeaveReason::Left),
            "{transport:?}: a clean close leaves at once"
        );
        messages_up_to_a_pong(&mut host).await;

        let mut again = Client::connect(&cfg, None).await.unwrap();
        assert!(
            !again.welcome.resumed,
            "{transport:?}: resumed after a clean close"
        );
        assert_ne!(again.peer_id(), id, "{transport:?}: the old id came back");
        let got = messages_up_to_a_pong(&mut again).await;
        assert!(
            got.iter().any(|m| matches!(m, ServerMsg::Error { code, .. }
                if *code == ErrorCode::ResumeFailed as u16)),
            "{transport:?}: the token was not refused with resume_failed: {got:?}"
        );
        assert!(
            !got.iter().any(joined),
            "{transport:?}: a seat came back after a clean close: {got:?}"
        );
        let heard = messages_up_to_a_pong(&mut host).await;
        assert!(
            !heard.iter().any(back(id)),
            "{transport:?}: the host heard of the departed peer: {heard:?}"
        );
        again.close().await;
    }

    // LeaveSession, then the connection is lost.
    let mut cfg = srv.config(ClientTransport::Quic, RelayMode::Datagram);
    let mut peer = Client::connect(&cfg, None).await.unwrap();
    peer.join_session(&code, None).await.unwrap();
    let id = peer.peer_id();
    cfg.resume_token = Some(peer.welcome.resume_token.clone());
    peer.send(&ClientMsg::LeaveSession).await.unwrap();
    expect_msg_within(&mut peer, |m| {
        matches!(m, ServerMsg::SessionLeft { .. }).then_some(())
    })
    .await
    .expect("no SessionLeft");
    let why = expect_msg_within(&mut host, left_with(id)).await;
    assert_eq!(why, Some(LeaveReason::Left));
    messages_up_to_a_pong(&mut host).await;
    peer.abandon();
    let mut again = Client::connect(&cfg, None).await.unwrap();
    assert!(
        again.welcome.resumed,
        "the token is for the peer id, in the grace"
    );
    assert_eq!(again.peer_id(), id);
    let got = messages_up_to_a_pong(&mut again).await;
    assert!(
        !got.iter().any(joined),
        "the seat left with LeaveSession came back: {got:?}"
    );
    let heard = messages_up_to_a_pong(&mut host).await;
    assert!(
        !heard.iter().any(back(id)),
        "the host heard of a peer that left: {heard:?}"
    );
    // Its relay frames reach no one.
    let dropped = srv.metric("fsp2p_relay_dropped_total{reason=\"not_in_session\"}");
    again.send_relay(0, b"not in a session").await.unwrap();
    assert!(
        eventually(WAIT, || srv
            .metric("fsp2p_relay_dropped_total{reason=\"not_in_session\"}")
            > dropped)
        .await,
        "a relay frame from a peer in no session was not dropped as not_in_session"
    );
}

/// Liveness (PROTOCOL.md §12 rule 2): a server that stops answering is
/// noticed from the client's own Pings within a few seconds, long before
/// QUIC's idle timeout (the client's 10 s backstop; the server's 30 s
/// default here) would end the connection. The one timing assertion of
/// this file, with a wide margin: the rule says about 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_is_noticed_by_liveness_before_the_idle_timeout() {
    let srv = start_with(
        Limits::default(),
        IceConfig::default(),
        QuicTuning::default(),
    )
    .await;
    let mut proxy = UdpProxy::start(srv.quic).await;
    let mut cfg = srv.config(ClientTransport::Quic, RelayMode::Datagram);
    cfg.server = proxy.addr;
    assert!(cfg.idle_timeout >= Duration::from_secs(10));
    let mut peer = Client::connect(&cfg, None).await.unwrap();
    peer.create_session(0, None).await.unwrap();
    // A few Ping/Pong rounds: the live timeout adapts to the RTT.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cut = std::time::Instant::now();
    proxy.stop().await;
    let attempt = wait_event(&mut peer, LONG, reconnecting).await;
    let noticed = cut.elapsed();
    assert!(
        attempt.is_some(),
        "the client never noticed the silent server"
    );
    assert!(
        noticed < Duration::from_secs(6),
        "a silent server was noticed only after {noticed:?}"
    );
    println!("liveness: a silent server noticed after {noticed:?}");
    proxy.restart().await;
    let resumed = wait_event(&mut peer, LONG, |e| match e {
        Event::Reconnected { resumed } => Some(*resumed),
        Event::Closed(why) => panic!("the client gave up: {why}"),
        _ => None,
    })
    .await;
    assert_eq!(resumed, Some(true));
}
