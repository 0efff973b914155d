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
use flightsim_p2p::protocol::{ErrorCode, LeaveReason, PeerId, RelayMode, ServerMsg};
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
