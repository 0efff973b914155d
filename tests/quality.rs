//! Connection quality (issue 25, PROTOCOL.md §14) with real clients on a real
//! server over loopback: peers echo each other on the relay, see each
//! other's grade and RTT, never hand a quality frame to the application,
//! and report to the server.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, start, WAIT};
use flightsim_p2p::client::{Client, ClientConfig, ClientTransport, QualitySnapshot};
use flightsim_p2p::limits::Limits;
use flightsim_p2p::protocol::report::{Grade, LinkPath, QUALITY_MAGIC};
use flightsim_p2p::protocol::{self, ClientMsg, PeerId, RelayMode, ALL_PEERS};
use flightsim_p2p::turn::IceConfig;

/// Each way through [`DelayProxy`].
const PROXY_DELAY: Duration = Duration::from_millis(25);

fn echoing(mut c: ClientConfig) -> ClientConfig {
    // The harness turns echoes and reports off for exact counts; here they are the point.
    c.quality_echo = true;
    c.telemetry = true;
    c
}

/// A UDP relay in front of `target` that holds every datagram for `delay`
/// each way, so an echo through it takes at least two delays.
struct DelayProxy {
    addr: SocketAddr,
    _task: tokio::task::JoinHandle<()>,
}

impl DelayProxy {
    async fn start(target: SocketAddr, delay: Duration) -> DelayProxy {
        let socket = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = socket.local_addr().unwrap();
        let up = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        up.connect(target).await.unwrap();
        let task = tokio::spawn(async move {
            let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Arc::default();
            let back = {
                let (up, socket, client) = (up.clone(), socket.clone(), client.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = up.recv(&mut buf).await {
                        let Some(to) = *client.lock().unwrap() else {
                            continue;
                        };
                        let (socket, bytes) = (socket.clone(), buf[..n].to_vec());
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = socket.send_to(&bytes, to).await;
                        });
                    }
                })
            };
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                *client.lock().unwrap() = Some(from);
                let (up, bytes) = (up.clone(), buf[..n].to_vec());
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = up.send(&bytes).await;
                });
            }
            back.abort();
        });
        DelayProxy { addr, _task: task }
    }
}

/// Read relay frames for `d`, returning every payload.
async fn drain_relay(c: &mut Client, d: Duration) -> Vec<(PeerId, Vec<u8>)> {
    let end = tokio::time::Instant::now() + d;
    let mut got = Vec::new();
    while let Some(left) = end.checked_duration_since(tokio::time::Instant::now()) {
        match c.next_relay(left).await {
            Some((from, p, _)) => got.push((from, p.to_vec())),
            None => break,
        }
    }
    got
}

/// Every link of `c` measured (RTT sampled, graded good or better).
fn measured(c: &Client, peers: &[PeerId]) -> Option<Vec<QualitySnapshot>> {
    let q = c.quality();
    let ok = q.len() == peers.len()
        && peers.iter().all(|p| {
            q.iter().any(|s| {
                s.peer == *p
                    && s.path == LinkPath::Relay
                    && s.rtt_ms.is_some()
                    && matches!(s.grade, Grade::Excellent | Grade::Good)
            })
        });
    ok.then_some(q)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_and_websocket_peers_measure_each_other_and_report() {
    let srv = start(Limits::default(), IceConfig::default()).await;
    // The host goes through a proxy adding 25 ms each way: its echoes take 50 ms or more.
    let proxy = DelayProxy::start(srv.quic, PROXY_DELAY).await;
    let mut host_cfg = echoing(srv.config(ClientTransport::Quic, RelayMode::Datagram));
    host_cfg.server = proxy.addr;
    let mut host = Client::connect(&host_cfg, None).await.unwrap();
    let mut host_events = host.quality_events();
    let code = host.create_session(0, None).await.unwrap().code;
    let mut quic = Client::connect(
        &echoing(srv.config(ClientTransport::Quic, RelayMode::Stream)),
        None,
    )
    .await
    .unwrap();
    quic.join_session(&code, None).await.unwrap();
    let mut ws_cfg = echoing(srv.config(ClientTransport::Websocket, RelayMode::Datagram));
    ws_cfg.ws_url = Some(format!("ws://{}/ws", srv.http));
    let mut ws = Client::connect(&ws_cfg, None).await.unwrap();
    ws.join_session(&code, None).await.unwrap();
    for c in [&host, &quic, &ws] {
        assert!(c.welcome.version >= 3, "reports need version 3 or later");
    }
    let (h, q, w) = (host.peer_id(), quic.peer_id(), ws.peer_id());

    // Each sees the other two measured.
    let mut views = Vec::new();
    for (c, others) in [(&host, [q, w]), (&quic, [h, w]), (&ws, [h, q])] {
        let mut view = None;
        assert!(
            eventually(WAIT, || {
                view = measured(c, &others);
                view.is_some()
            })
            .await,
            "peer {} never measured {others:?}: {:?}",
            c.peer_id(),
            c.quality()
        );
        views.push(view.unwrap());
    }
    // Through the proxy the echo RTT is at least its two delays; without it, measured.
    let floor = 2 * PROXY_DELAY.as_millis() as u32;
    for s in &views[0] {
        assert!(s.rtt_ms.unwrap() >= floor, "host's link {s:?}");
    }
    for (i, me) in [(1, q), (2, w)] {
        let to_host = views[i].iter().find(|s| s.peer == h).unwrap();
        assert!(
            to_host.rtt_ms.unwrap() >= floor,
            "peer {me}'s link to the host {to_host:?}"
        );
    }
    // The host heard of its links becoming measured as events.
    let mut graded = Vec::new();
    while let Ok(e) = host_events.try_recv() {
        if e.grade != Grade::Unknown {
            graded.push(e.peer);
        }
    }
    assert!(
        graded.contains(&q) && graded.contains(&w),
        "quality events of the host: {graded:?}"
    );

    // Flight data counts in frames/s; quality frames never reach the application.
    let sender = host.relay_sender();
    let sending = tokio::spawn(async move {
        for i in 0..60u32 {
            let frame = [&i.to_le_bytes()[..], b"flight"].concat();
            sender.send(ALL_PEERS, &frame).await.unwrap();
            if i % 10 == 0 {
                // Look-alikes of a quality frame (too short, another kind)
                // are dropped, not delivered.
                sender.send(ALL_PEERS, &[0xFF; 5]).await.unwrap();
                let mut kind9 = [0u8; 13];
                kind9[..4].copy_from_slice(&QUALITY_MAGIC);
                kind9[4] = 9;
                sender.send(ALL_PEERS, &kind9).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let fps = |c: &Client, peer: PeerId| {
        c.quality()
            .into_iter()
            .find(|s| s.peer == peer)
            .map_or((0, 0), |s| (s.fps_in, s.fps_out))
    };
    assert!(
        eventually(WAIT, || fps(&quic, h).0 > 0
            && fps(&ws, h).0 > 0
            && fps(&host, q).1 > 0
            && fps(&host, w).1 > 0)
        .await,
        "frames/s: quic {:?}, ws {:?}, host {:?}",
        quic.quality(),
        ws.quality(),
        host.quality()
    );
    sending.await.unwrap();
    for c in [&mut quic, &mut ws] {
        // Two seconds: four echo rounds each way pass meanwhile.
        let got = drain_relay(c, Duration::from_secs(2)).await;
        assert!(!got.is_empty(), "no flight data arrived");
        for (from, p) in &got {
            assert_eq!(*from, h);
            assert!(!p.starts_with(&QUALITY_MAGIC), "a quality frame: {p:?}");
            assert!(p.ends_with(b"flight"), "not the host's frame: {p:?}");
        }
    }
    let from_host = quic.quality().into_iter().find(|s| s.peer == h).unwrap();
    let host_to_quic = host.quality().into_iter().find(|s| s.peer == q).unwrap();
    println!("quic sees the host: {from_host:?}; the host sees quic: {host_to_quic:?}");
    for c in [&host, &quic, &ws] {
        for s in c.quality() {
            assert_ne!(s.grade, Grade::Lost, "{s:?}");
        }
    }

    // Reports: each client writes one at the 2 s floor after its links came
    // up; its bytes decode as a version-1 body naming both links.
    for (c, others) in [(&host, [q, w]), (&quic, [h, w]), (&ws, [h, q])] {
        assert!(
            eventually(WAIT, || c.reports_sent().0 >= 1).await,
            "peer {} sent no report",
            c.peer_id()
        );
        let (_, report) = c.reports_sent();
        let report = report.unwrap();
        let bytes = protocol::encode(&ClientMsg::Report(report.clone()));
        let back: ClientMsg = protocol::decode(&bytes).unwrap();
        assert_eq!(back, ClientMsg::Report(report.clone()));
        let body = report.decode().expect("a version-1 body");
        let mut peers: Vec<PeerId> = body.links.iter().map(|l| l.peer).collect();
        peers.sort();
        let mut want = others.to_vec();
        want.sort();
        assert_eq!(peers, want, "links of {}'s report {body:?}", c.peer_id());
        assert!(body.links.iter().all(|l| l.path == LinkPath::Relay));
    }
    // The server took them without closing anyone: everyone still answers.
    for c in [&mut host, &mut quic, &mut ws] {
        c.ping().await.expect("still connected after reporting");
    }
    // The server counted them, and sees three players on the relay.
    let accepted = "fsp2p_reports_total{result=\"accepted\"}";
    assert!(
        eventually(WAIT, || srv.metric(accepted) >= 3.0).await,
        "{accepted} = {}",
        srv.metric(accepted)
    );
    let relayed = "fsp2p_players_by_path{path=\"relay\"}";
    assert!(
        eventually(WAIT, || srv.metric(relayed) == 3.0).await,
        "{relayed} = {}",
        srv.metric(relayed)
    );
    for c in [host, quic, ws] {
        c.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_telemetry_links_are_measured_but_nothing_is_reported() {
    let srv = start(Limits::default(), IceConfig::default()).await;
    let mut host = Client::connect(
        &echoing(srv.config(ClientTransport::Quic, RelayMode::Datagram)),
        None,
    )
    .await
    .unwrap();
    let code = host.create_session(0, None).await.unwrap().code;
    let mut quiet_cfg = echoing(srv.config(ClientTransport::Quic, RelayMode::Datagram));
    quiet_cfg.telemetry = false;
    let mut quiet = Client::connect(&quiet_cfg, None).await.unwrap();
    quiet.join_session(&code, None).await.unwrap();
    let (h, me) = (host.peer_id(), quiet.peer_id());
    assert!(eventually(WAIT, || measured(&quiet, &[h]).is_some()).await);
    assert!(eventually(WAIT, || measured(&host, &[me]).is_some()).await);
    assert!(eventually(WAIT, || host.reports_sent().0 >= 1).await);
    // Its link came up with its Welcome: with telemetry on it would have
    // reported 2 s after the Welcome.
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    assert_eq!(quiet.reports_sent().0, 0, "a report with telemetry off");
    quiet.ping().await.unwrap();
    host.close().await;
    quiet.close().await;
}
