//! The WebSocket fallback transport against the real server: mixed sessions
//! with QUIC peers, automatic fallback when UDP is blocked, bad input.

mod common;

use std::time::Duration;

use common::{eventually, expect_error, expect_msg, start, TestServer, WAIT};
use flightsim_p2p::client::{Client, ClientConfig, ClientTransport};
use flightsim_p2p::limits::Limits;
use flightsim_p2p::protocol::*;
use flightsim_p2p::relay::Via;
use flightsim_p2p::session::Transport;
use flightsim_p2p::turn::IceConfig;

fn ws_config(srv: &TestServer) -> ClientConfig {
    let mut c = srv.config(ClientTransport::Websocket, RelayMode::Datagram);
    c.ws_url = Some(format!("ws://{}/ws", srv.http));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_quic_peers_share_a_session() {
    let srv = start(Limits::default(), IceConfig::default()).await;
    let mut quic = srv.quic(RelayMode::Datagram).await;
    let code = quic.create_session(0, None).await.unwrap().code;
    let mut ws = Client::connect(&ws_config(&srv), None).await.unwrap();
    assert_eq!(ws.transport(), Transport::WebSocket);
    let joined = ws.join_session(&code, None).await.unwrap();
    assert_eq!(joined.host, quic.peer_id());
    let mut stream_peer = srv.quic(RelayMode::Stream).await;
    stream_peer.join_session(&code, None).await.unwrap();

    // Signals both ways.
    quic.signal(ws.peer_id(), Signal::Offer { sdp: "o".into() })
        .await
        .unwrap();
    let (from, sig) = expect_msg(&mut ws, |m| match m {
        ServerMsg::Signal { from, signal } => Some((*from, signal.clone())),
        _ => None,
    })
    .await;
    assert_eq!(
        (from, sig),
        (quic.peer_id(), Signal::Offer { sdp: "o".into() })
    );
    ws.signal(quic.peer_id(), Signal::Answer { sdp: "a".into() })
        .await
        .unwrap();
    let sig = expect_msg(&mut quic, |m| match m {
        ServerMsg::Signal { from, signal } if *from == ws.peer_id() => Some(signal.clone()),
        _ => None,
    })
    .await;
    assert_eq!(sig, Signal::Answer { sdp: "a".into() });

    // Relay: QUIC datagram -> WebSocket, WebSocket -> everyone (datagram and stream receivers).
    for i in 0..30u8 {
        quic.send_relay(ws.peer_id(), &[i; 300]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The QUIC leg is datagrams (a rare loss is allowed); the WebSocket leg
    // keeps what arrives in order.
    let mut last = None;
    let mut got = 0;
    while let Some((from, p, via)) = ws.next_relay(Duration::from_secs(2)).await {
        assert_eq!((from, via), (quic.peer_id(), Via::WebSocket));
        assert!(p.len() == 300 && p.iter().all(|b| *b == p[0]), "intact");
        assert!(
            last < Some(p[0]),
            "in order over TCP: {} after {last:?}",
            p[0]
        );
        last = Some(p[0]);
        got += 1;
        if got == 30 {
            break;
        }
    }
    assert!(got >= 28, "{got} of 30 relayed to the WebSocket peer");
    for i in 0..20u8 {
        ws.send_relay(ALL_PEERS, &[i, 1, 2, 3]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for (c, via) in [(&mut quic, Via::Datagram), (&mut stream_peer, Via::Stream)] {
        let mut got = 0;
        while let Some((from, p, v)) = c.next_relay(Duration::from_secs(2)).await {
            assert_eq!((from, v), (ws.peer_id(), via));
            assert_eq!(&p[1..], &[1, 2, 3]);
            got += 1;
            if got == 20 {
                break;
            }
        }
        assert!(got >= 19, "{got} of 20 via {via:?}");
    }
    assert!(srv.metric("fsp2p_relay_received_total{via=\"websocket\"}") >= 20.0);
    assert!(srv.metric("fsp2p_relay_forwarded_total{via=\"websocket\"}") >= 30.0);
    assert_eq!(
        srv.metric("fsp2p_connections{transport=\"websocket\"}"),
        1.0
    );

    // A clean WebSocket close leaves at once.
    let ws_id = ws.peer_id();
    ws.close().await;
    let left = expect_msg(&mut quic, |m| match m {
        ServerMsg::PeerLeft { peer, reason } => Some((*peer, *reason)),
        _ => None,
    })
    .await;
    assert_eq!(left, (ws_id, LeaveReason::Left));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_websocket_keeps_the_seat_and_resumes() {
    let srv = start(Limits::default(), IceConfig::default()).await;
    let mut host = srv.quic(RelayMode::Datagram).await;
    let code = host.create_session(0, None).await.unwrap().code;
    let mut cfg = ws_config(&srv);
    let mut ws = Client::connect(&cfg, None).await.unwrap();
    ws.join_session(&code, None).await.unwrap();
    let id = ws.peer_id();
    cfg.resume_token = Some(ws.welcome.resume_token.clone());
    ws.abandon(); // TCP just goes away, no close frame
    let st = expect_msg(&mut host, |m| match m {
        ServerMsg::PeerStatus { peer, online } => Some((*peer, *online)),
        _ => None,
    })
    .await;
    assert_eq!(st, (id, false));
    let back = Client::connect(&cfg, None).await.unwrap();
    assert!(back.welcome.resumed);
    assert_eq!(back.peer_id(), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_falls_back_to_websocket_when_udp_is_blocked() {
    let srv = start(Limits::default(), IceConfig::default()).await;
    // Point QUIC at a UDP port where nothing answers (as a firewall dropping UDP would).
    let blackhole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut cfg = srv.config(ClientTransport::Auto, RelayMode::Datagram);
    cfg.server = blackhole.local_addr().unwrap();
    cfg.ws_url = Some(format!("ws://{}/ws", srv.http));
    cfg.fallback_delay = Duration::from_millis(300);
    let mut c = Client::connect(&cfg, None).await.unwrap();
    assert_eq!(c.transport(), Transport::WebSocket);
    c.create_session(0, None).await.unwrap();

    // With QUIC reachable, Auto uses QUIC (given time: on a busy machine the
    // handshake could outlast the default delay and let the WebSocket win).
    let mut cfg = srv.config(ClientTransport::Auto, RelayMode::Datagram);
    cfg.ws_url = Some(format!("ws://{}/ws", srv.http));
    cfg.fallback_delay = Duration::from_secs(10);
    let c = Client::connect(&cfg, None).await.unwrap();
    assert_eq!(c.transport(), Transport::Quic);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_text_and_oversized_websocket_messages_close_only_that_connection() {
    let limits = Limits {
        max_frame_bytes: 2048,
        ..Limits::default()
    };
    let srv = start(limits, IceConfig::default()).await;
    let mut host = srv.quic(RelayMode::Datagram).await;
    let code = host.create_session(0, None).await.unwrap().code;
    let mut healthy = Client::connect(&ws_config(&srv), None).await.unwrap();
    healthy.join_session(&code, None).await.unwrap();

    let cases: Vec<(Vec<u8>, ErrorCode)> = vec![
        (vec![0x07, 1, 2, 3], ErrorCode::BadMessage), // unknown type byte
        (vec![0x00, 0x63], ErrorCode::BadMessage),    // unknown message tag
        (vec![], ErrorCode::BadMessage),              // empty message
        (vec![0x00; 10_000], ErrorCode::FrameTooLarge), // over the size limit
    ];
    for (bytes, want) in cases {
        let mut bad = Client::connect(&ws_config(&srv), None).await.unwrap();
        bad.send_raw(&bytes).await.unwrap();
        let r = bad.wait_for(|_| None::<()>).await;
        if want == ErrorCode::FrameTooLarge {
            // The server refuses the message while reading it; the error or
            // the close (code 4002) says so.
            let text = format!("{:#}", r.unwrap_err());
            assert!(
                text.contains("frame_too_large") || text.contains("4002"),
                "{text}"
            );
        } else {
            expect_error(r, want).unwrap();
        }
        host.send_relay(healthy.peer_id(), b"still fine")
            .await
            .unwrap();
        let (_, p, _) = healthy.next_relay(WAIT).await.expect("healthy peer broken");
        assert_eq!(&p[..], b"still fine");
    }
    assert!(
        eventually(WAIT, || srv
            .metric("fsp2p_connections{transport=\"websocket\"}")
            == 1.0)
        .await
    );
    // A text message.
    let url = format!("ws://{}/ws", srv.http);
    let (mut raw, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    use futures_util::{SinkExt, StreamExt};
    raw.send(tokio_tungstenite::tungstenite::Message::Text(
        "hello?".into(),
    ))
    .await
    .unwrap();
    let mut saw_error = false;
    while let Some(Ok(m)) = raw.next().await {
        match m {
            tokio_tungstenite::tungstenite::Message::Binary(b) => {
                let msg: ServerMsg = decode(&b[1..]).unwrap();
                saw_error |= matches!(msg, ServerMsg::Error { code: 1, .. });
            }
            tokio_tungstenite::tungstenite::Message::Close(f) => {
                assert_eq!(
                    u16::from(f.unwrap().code),
                    4000 + ErrorCode::BadMessage as u16
                );
                break;
            }
            _ => {}
        }
    }
    assert!(saw_error);
}

/// Server messages of a WebSocket, in order (control messages only).
async fn ws_control_messages(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    n: usize,
) -> Vec<ServerMsg> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out")
        {
            Some(Ok(Message::Binary(b))) if b.first() == Some(&0x00) => {
                out.push(decode::<ServerMsg>(&b[1..]).unwrap())
            }
            Some(Ok(_)) => continue,
            other => panic!("socket ended: {other:?}"),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_request_rides_in_the_upgrade_url() {
    use flightsim_p2p::first::encode_first;
    let srv = start(Limits::default(), IceConfig::default()).await;
    let mut host = srv.quic(RelayMode::Datagram).await;
    let code = host.create_session(0, None).await.unwrap().code;
    let hello = ClientMsg::Hello(Hello {
        version: PROTOCOL_VERSION,
        client: ClientKind::Browser,
        relay_mode: RelayMode::Datagram,
        name: "fast".into(),
        resume_token: None,
        access_token: None,
    });
    let url = |msgs: &[ClientMsg]| format!("ws://{}/ws?first={}", srv.http, encode_first(msgs));

    // Join: Welcome and SessionJoined are the first two messages; nothing was sent.
    let join = ClientMsg::JoinSession(JoinSession {
        code: code.clone(),
        password: None,
        region_rtts: Vec::new(),
    });
    let (mut ws, _) = tokio_tungstenite::connect_async(url(&[hello.clone(), join]))
        .await
        .unwrap();
    let got = ws_control_messages(&mut ws, 2).await;
    let me = match &got[..] {
        [ServerMsg::Welcome(w), ServerMsg::SessionJoined(s)] if s.code == code => w.peer_id,
        other => panic!("{other:?}"),
    };
    let joined = expect_msg(&mut host, |m| match m {
        ServerMsg::PeerJoined(p) => Some(p.id),
        _ => None,
    })
    .await;
    assert_eq!(joined, me, "the host hears of the newcomer");

    // Create.
    let create = ClientMsg::CreateSession(CreateSession {
        max_peers: 0,
        password: None,
        region_rtts: Vec::new(),
    });
    let (mut ws2, _) = tokio_tungstenite::connect_async(url(&[hello.clone(), create]))
        .await
        .unwrap();
    let got = ws_control_messages(&mut ws2, 2).await;
    assert!(
        matches!(
            &got[..],
            [ServerMsg::Welcome(_), ServerMsg::SessionCreated(_)]
        ),
        "{got:?}"
    );

    // A wrong code: the same error as on the stream, and the socket stays.
    let wrong = ClientMsg::JoinSession(JoinSession {
        code: "ZZZZZZ".into(),
        password: None,
        region_rtts: Vec::new(),
    });
    let (mut ws3, _) = tokio_tungstenite::connect_async(url(&[hello.clone(), wrong]))
        .await
        .unwrap();
    let got = ws_control_messages(&mut ws3, 2).await;
    assert!(
        matches!(
            &got[..],
            [ServerMsg::Welcome(_), ServerMsg::Error { code: 10, .. }]
        ),
        "{got:?}"
    );

    // A malformed `first` is refused before the upgrade.
    let bad = format!("ws://{}/ws?first=not*base64", srv.http);
    match tokio_tungstenite::connect_async(bad).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 400)
        }
        other => panic!("expected HTTP 400, got {:?}", other.map(|_| ())),
    }
}

/// A WebSocket that stays through a shutdown's drain is closed with
/// `shutting_down` (4007), not left open: it has no QUIC endpoint to close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_websockets_that_stay() {
    use flightsim_p2p::first::encode_first;
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let quic = flightsim_p2p::server::QuicTuning {
        drain_timeout_ms: 200,
        ..Default::default()
    };
    let mut srv = common::start_with(Limits::default(), IceConfig::default(), quic).await;
    let hello = ClientMsg::Hello(Hello {
        version: PROTOCOL_VERSION,
        client: ClientKind::Other,
        relay_mode: RelayMode::Datagram,
        name: String::new(),
        resume_token: None,
        access_token: None,
    });
    let url = format!("ws://{}/ws?first={}", srv.http, encode_first(&[hello]));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let got = ws_control_messages(&mut ws, 1).await;
    assert!(matches!(&got[..], [ServerMsg::Welcome(_)]), "{got:?}");
    let server = srv.server.take().expect("server");
    let stopping = tokio::spawn(server.shutdown());
    // GoingAway first; this client ignores it and stays.
    let mut close_code = None;
    while let Ok(Some(msg)) = tokio::time::timeout(WAIT, ws.next()).await {
        match msg {
            Ok(Message::Close(frame)) => {
                close_code = frame.map(|f| u16::from(f.code));
                break;
            }
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    assert_eq!(close_code, Some(4007), "closed with shutting_down");
    stopping.await.unwrap();
}

/// Protocol version 4 (issue 26): `CreateSession` and `JoinSession` end with
/// `region_rtts` on a connection whose Hello said 4, and not before; the
/// server reads each request at its connection's version, from the URL's
/// `first` and from the socket alike. A single node takes the measurements
/// and creates the session here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_read_at_the_connections_version() {
    use flightsim_p2p::first::encode_first;
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let srv = start(Limits::default(), IceConfig::default()).await;
    let hello = |version| {
        ClientMsg::Hello(Hello {
            version,
            client: ClientKind::Rust,
            relay_mode: RelayMode::Datagram,
            name: "v4".into(),
            resume_token: None,
            access_token: None,
        })
    };
    let create = |rtts: Vec<RegionRtt>| {
        ClientMsg::CreateSession(CreateSession {
            max_peers: 0,
            password: None,
            region_rtts: rtts,
        })
    };
    let eu = vec![RegionRtt {
        region: "eu".into(),
        rtt_ms: 5,
    }];
    let url = |msgs: &[ClientMsg]| format!("ws://{}/ws?first={}", srv.http, encode_first(msgs));

    // Version 4 in `first`: the create with its list is taken.
    let (mut ws, _) = tokio_tungstenite::connect_async(url(&[hello(4), create(eu.clone())]))
        .await
        .unwrap();
    let got = ws_control_messages(&mut ws, 2).await;
    assert!(
        matches!(&got[..], [ServerMsg::Welcome(w), ServerMsg::SessionCreated(_)] if w.version == 4),
        "{got:?}"
    );
    // A bad list on the socket: invalid_argument, and the socket stays.
    let (mut ws, _) = tokio_tungstenite::connect_async(url(&[hello(4)]))
        .await
        .unwrap();
    ws_control_messages(&mut ws, 1).await;
    let bad = create(vec![RegionRtt {
        region: "Not A Region".into(),
        rtt_ms: 1,
    }]);
    ws.send(Message::Binary(ws_control(&encode_client(&bad, 4)).into()))
        .await
        .unwrap();
    ws.send(Message::Binary(
        encode_ws_control(&ClientMsg::Ping { client_time_ms: 4 }).into(),
    ))
    .await
    .unwrap();
    let got = ws_control_messages(&mut ws, 2).await;
    assert!(
        matches!(
            &got[..],
            [
                ServerMsg::Error { code: 9, .. },
                ServerMsg::Pong {
                    client_time_ms: 4,
                    ..
                }
            ]
        ),
        "{got:?}"
    );
    // The version-3 layout on a version-4 connection does not decode.
    ws.send(Message::Binary(encode_ws_control(&create(vec![])).into()))
        .await
        .unwrap();
    let got = ws_control_messages(&mut ws, 1).await;
    assert!(
        matches!(&got[..], [ServerMsg::Error { code: 1, .. }]),
        "{got:?}"
    );

    // Version 3: the old layout is taken (no list), the version-4 one is not.
    let (mut ws3, _) = tokio_tungstenite::connect_async(url(&[hello(3), create(eu.clone())]))
        .await
        .unwrap();
    let got = ws_control_messages(&mut ws3, 2).await;
    assert!(
        matches!(&got[..], [ServerMsg::Welcome(w), ServerMsg::SessionCreated(_)] if w.version == 3),
        "{got:?}"
    );
    let (mut ws3b, _) = tokio_tungstenite::connect_async(url(&[hello(3)]))
        .await
        .unwrap();
    ws_control_messages(&mut ws3b, 1).await;
    ws3b.send(Message::Binary(
        ws_control(&encode_client(&create(eu), 4)).into(),
    ))
    .await
    .unwrap();
    let got = ws_control_messages(&mut ws3b, 1).await;
    assert!(
        matches!(&got[..], [ServerMsg::Error { code: 1, .. }]),
        "{got:?}"
    );
}
