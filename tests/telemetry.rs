//! Connection-quality reports (issue 25, spec Q3/Q4) against the real server:
//! reports over QUIC and over WebSocket reach `/metrics`, a pre-v3
//! connection's report is dropped and counted, a flood is capped, and a
//! malformed body is counted without closing the connection.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, start, TestServer, WAIT};
use flightsim_p2p::client::{Client, ClientConfig, ClientTransport};
use flightsim_p2p::limits::Limits;
use flightsim_p2p::protocol::report::{IceFailure, LinkReport, Milestone};
use flightsim_p2p::protocol::*;
use flightsim_p2p::turn::IceConfig;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

fn ws_config(srv: &TestServer) -> ClientConfig {
    let mut c = srv.config(ClientTransport::Websocket, RelayMode::Datagram);
    c.ws_url = Some(format!("ws://{}/ws", srv.http));
    c
}

fn limits() -> Limits {
    Limits {
        // The control rate must not be what caps the flood.
        signals_per_sec: 200,
        ..Limits::default()
    }
}

fn link(peer: PeerId, path: LinkPath, grade: Grade) -> LinkReport {
    LinkReport {
        peer,
        path,
        grade,
        rtt_bucket: 1,
        loss_bucket: 0,
    }
}

fn report(body: &ReportV1) -> ClientMsg {
    ClientMsg::Report(Report::v1(body))
}

/// Wait until `series` reads `want` on the server's /metrics.
async fn metric_is(srv: &TestServer, series: &str, want: f64) {
    let ok = eventually(WAIT, || srv.metric(series) == want).await;
    assert!(ok, "{series} is {}, not {want}", srv.metric(series));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_over_quic_and_websocket_reach_the_metrics_and_leave_with_the_connection() {
    let srv = start(limits(), IceConfig::default()).await;
    // Every series is there before any report, at 0.
    for s in [
        "fsp2p_players_by_path{path=\"turn\"}",
        "fsp2p_links_by_grade{grade=\"lost\"}",
        "fsp2p_reports_total{result=\"malformed\"}",
        "fsp2p_ice_candidates_total{type=\"prflx\"}",
        "fsp2p_setup_seconds_count{milestone=\"first_signal\"}",
    ] {
        let (_, body) = srv.get("/metrics");
        assert!(body.lines().any(|l| l == format!("{s} 0")), "{s} missing");
    }
    let mut quic = srv.quic(RelayMode::Datagram).await;
    let code = quic.create_session(0, None).await.unwrap().code;
    let mut ws = Client::connect(&ws_config(&srv), None).await.unwrap();
    ws.join_session(&code, None).await.unwrap();
    assert!(quic.welcome.version >= REPORT_PROTOCOL_VERSION);

    quic.send(&report(&ReportV1 {
        links: vec![link(ws.peer_id(), LinkPath::Direct, Grade::Excellent)],
        setup: vec![
            Milestone {
                kind: MilestoneKind::Welcome,
                path: LinkPath::Connecting,
                ms: 120,
            },
            Milestone {
                kind: MilestoneKind::FirstFrame,
                path: LinkPath::Direct,
                ms: 800,
            },
        ],
        ice_failures: vec![],
        candidates: 1 | 2,
    }))
    .await
    .unwrap();
    ws.send(&report(&ReportV1 {
        links: vec![link(quic.peer_id(), LinkPath::Relay, Grade::Good)],
        setup: vec![Milestone {
            kind: MilestoneKind::Relay,
            path: LinkPath::Relay,
            ms: 5000,
        }],
        ice_failures: vec![IceFailure {
            reason: IceFailReason::Timeout,
        }],
        candidates: 1,
    }))
    .await
    .unwrap();

    metric_is(&srv, "fsp2p_reports_total{result=\"accepted\"}", 2.0).await;
    for (series, want) in [
        ("fsp2p_players_by_path{path=\"direct\"}", 1.0),
        ("fsp2p_players_by_path{path=\"relay\"}", 1.0),
        ("fsp2p_links_by_path{path=\"direct\"}", 1.0),
        ("fsp2p_links_by_path{path=\"relay\"}", 1.0),
        ("fsp2p_links_by_grade{grade=\"excellent\"}", 1.0),
        ("fsp2p_links_by_grade{grade=\"good\"}", 1.0),
        ("fsp2p_setup_seconds_count{milestone=\"welcome\"}", 1.0),
        ("fsp2p_setup_seconds_count{milestone=\"relay\"}", 1.0),
        ("fsp2p_first_frame_seconds_count{path=\"direct\"}", 1.0),
        ("fsp2p_ice_failures_total{reason=\"timeout\"}", 1.0),
        ("fsp2p_ice_candidates_total{type=\"host\"}", 2.0),
        ("fsp2p_ice_candidates_total{type=\"srflx\"}", 1.0),
        ("fsp2p_link_rtt_seconds_count{path=\"relay\"}", 1.0),
        ("fsp2p_link_rtt_seconds_sum{path=\"relay\"}", 0.05),
        ("fsp2p_link_loss_ratio_count{path=\"direct\"}", 1.0),
    ] {
        assert_eq!(srv.metric(series), want, "{series}");
    }

    // The WebSocket client dies without a word: its player stops counting
    // when its connection goes, not 30 s later.
    ws.abandon();
    metric_is(&srv, "fsp2p_players_by_path{path=\"relay\"}", 0.0).await;
    metric_is(&srv, "fsp2p_links_by_path{path=\"relay\"}", 0.0).await;
    assert_eq!(srv.metric("fsp2p_players_by_path{path=\"direct\"}"), 1.0);
    quic.close().await;
    metric_is(&srv, "fsp2p_players_by_path{path=\"direct\"}", 0.0).await;
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_send(ws: &mut Ws, msg: &ClientMsg) {
    let mut b = vec![0u8];
    b.extend(encode(msg));
    ws.send(Message::Binary(b.into())).await.unwrap();
}

async fn ws_next(ws: &mut Ws) -> ServerMsg {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out")
        {
            Some(Ok(Message::Binary(b))) if b.first() == Some(&0x00) => {
                return decode::<ServerMsg>(&b[1..]).unwrap()
            }
            Some(Ok(_)) => continue,
            other => panic!("socket ended: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_2_connection_s_report_is_dropped_and_counted() {
    let srv = start(limits(), IceConfig::default()).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", srv.http))
        .await
        .unwrap();
    let hello = ClientMsg::Hello(Hello {
        version: 2,
        client: ClientKind::Other,
        relay_mode: RelayMode::Datagram,
        name: "old".into(),
        resume_token: None,
        access_token: None,
    });
    ws_send(&mut ws, &hello).await;
    match ws_next(&mut ws).await {
        ServerMsg::Welcome(w) => assert_eq!(w.version, 2),
        other => panic!("{other:?}"),
    }
    ws_send(&mut ws, &report(&ReportV1::default())).await;
    metric_is(&srv, "fsp2p_reports_total{result=\"version\"}", 1.0).await;
    assert_eq!(srv.metric("fsp2p_reports_total{result=\"accepted\"}"), 0.0);
    // Still served.
    ws_send(&mut ws, &ClientMsg::Ping { client_time_ms: 7 }).await;
    match ws_next(&mut ws).await {
        ServerMsg::Pong { client_time_ms, .. } => assert_eq!(client_time_ms, 7),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_capped_and_a_malformed_body_is_counted_without_closing() {
    let srv = start(limits(), IceConfig::default()).await;
    let mut c = srv.quic(RelayMode::Datagram).await;
    let started = Instant::now();
    let n = 40;
    for _ in 0..n {
        c.send(&report(&ReportV1::default())).await.unwrap();
    }
    // The last report is in when the ping after it is answered (one stream, in order).
    c.ping().await.unwrap();
    let elapsed = started.elapsed();
    let accepted = srv.metric("fsp2p_reports_total{result=\"accepted\"}");
    let rate = srv.metric("fsp2p_reports_total{result=\"rate\"}");
    assert_eq!(accepted + rate, f64::from(n));
    // Burst 3, then one per 2 s (however slow the machine was).
    let cap = 3.0 + (elapsed.as_secs_f64() / 2.0).floor();
    assert!(
        accepted >= 3.0 && accepted <= cap,
        "{accepted} accepted in {elapsed:?}"
    );

    // After the bucket refills, a body that does not decode is counted, and
    // the connection stays.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    c.send(&ClientMsg::Report(Report {
        version: 1,
        body: vec![0xFF, 0xFF, 0xFF],
    }))
    .await
    .unwrap();
    c.ping().await.unwrap();
    assert_eq!(srv.metric("fsp2p_reports_total{result=\"malformed\"}"), 1.0);
    // An unknown body version is skipped whole.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    c.send(&ClientMsg::Report(Report {
        version: 9,
        body: vec![1, 2, 3],
    }))
    .await
    .unwrap();
    c.ping().await.unwrap();
    assert_eq!(srv.metric("fsp2p_reports_total{result=\"version\"}"), 1.0);
    let code = c.create_session(0, None).await.unwrap().code;
    assert!(!code.is_empty(), "still served");
}
