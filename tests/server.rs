//! Integration tests: the real server on loopback, real QUIC and WebTransport clients.

mod common;

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use common::{eventually, expect_error, expect_msg, relay_until_delivered, start, WAIT};
use flightsim_p2p::client::{connect_wire, Client, ClientTransport, Event};
use flightsim_p2p::limits::Limits;
use flightsim_p2p::protocol::*;
use flightsim_p2p::relay::Via;
use flightsim_p2p::turn::IceConfig;
use flightsim_p2p::wire::Wire;
use hmac::Mac;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_three_joiners_exchange_offers_answers_and_candidates() {
    let srv = start(Limits::default(), IceConfig::default()).await;
    let mut host = srv.quic(RelayMode::Datagram).await;
    let info = host.create_session(0, None).await.unwrap();
    assert_eq!(info.host, host.peer_id());
    let mut joiners = [
        srv.quic(RelayMode::Datagram).await,
        srv.quic(RelayMode::Stream).await,
        srv.webtransport().await,
    ];
    for (i, j) in joiners.iter_mut().enumerate() {
        let joined = j
            .join_session(&info.code.to_lowercase(), None)
            .await
            .unwrap();
        assert_eq!(joined.host, host.peer_id());
        assert_eq!(joined.peers.len(), i + 2);
        let me = j.peer_id();
        let p = expect_msg(&mut host, |m| match m {
            ServerMsg::PeerJoined(p) => Some(p.clone()),
            _ => None,
        })
        .await;
        assert_eq!(p.id, me);
    }
    // The host offers to each joiner; each answers and both trickle a candidate.
    for j in joiners.iter_mut() {
        let jid = j.peer_id();
        let sdp = format!("v=0 offer for {jid}");
        host.signal(jid, Signal::Offer { sdp: sdp.clone() })
            .await
            .unwrap();
        let (from, got) = expect_msg(j, |m| match m {
            ServerMsg::Signal {
                from,
                signal: Signal::Offer { sdp },
            } => Some((*from, sdp.clone())),
            _ => None,
        })
        .await;
        assert_eq!((from, got), (host.peer_id(), sdp));
        j.signal(
            host.peer_id(),
            Signal::Answer {
                sdp: format!("answer from {jid}"),
            },
        )
        .await
        .unwrap();
        let cand = Signal::IceCandidate {
            candidate: format!("candidate:1 1 udp 2122260223 127.0.0.1 {jid} typ host"),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
        };
        j.signal(host.peer_id(), cand.clone()).await.unwrap();
        let answer = expect_msg(&mut host, |m| match m {
            ServerMsg::Signal {
                from,
                signal: Signal::Answer { sdp },
            } if *from == jid => Some(sdp.clone()),
            _ => None,
        })
        .await;
        assert_eq!(answer, format!("answer from {jid}"));
        let got = expect_msg(&mut host, |m| match m {
            ServerMsg::Signal { from, signal } if *from == jid => Some(signal.clone()),
            _ => None,
        })
        .await;
        assert_eq!(got, cand);
    }
    // An app payload to everyone reaches all three joiners with the sender's id.
    host.signal(
        ALL_PEERS,
        Signal::App {
            data: vec![1, 2, 3],
        },
    )
    .await
    .unwrap();
    for j in joiners.iter_mut() {
        let (from, data) = expect_msg(j, |m| match m {
            ServerMsg::Signal {
                from,
                signal: Signal::App { data },
            } => Some((*from, data.clone())),
            _ => None,
        })
        .await;
        assert_eq!((from, data), (host.peer_id(), vec![1, 2, 3]));
    }
}

fn frame_payload(tag: u8, seq: u32, len: usize) -> Vec<u8> {
    let mut p = vec![tag; len];
    p[..4].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in p.iter_mut().enumerate().skip(4) {
        *b = (i as u8).wrapping_mul(31).wrapping_add(seq as u8);
    }
    p
}

/// Collect relayed frames until `n` arrived or the stream goes quiet.
async fn collect(c: &mut Client, n: usize) -> Vec<(PeerId, Bytes, Via)> {
    let mut out = Vec::new();
    while out.len() < n {
        match c.next_relay(Duration::from_secs(2)).await {
            Some(f) => out.push(f),
            None => break,
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_between_datagram_stream_and_webtransport_clients() {
    let srv = start(Limits::default(), IceConfig::default()).await;
    let mut host = srv.quic(RelayMode::Datagram).await;
    let code = host.create_session(0, None).await.unwrap().code;
    let mut streamer = srv.quic(RelayMode::Stream).await; // like System.Net.Quic
    streamer.join_session(&code, None).await.unwrap();
    let mut browser = srv.webtransport().await;
    browser.join_session(&code, None).await.unwrap();
    // Another session, to prove nothing leaks into it.
    let mut other = srv.quic(RelayMode::Datagram).await;
    let other_code = other.create_session(0, None).await.unwrap().code;
    let mut other2 = srv.quic(RelayMode::Datagram).await;
    other2.join_session(&other_code, None).await.unwrap();

    const N: u32 = 60;
    // Host to all: one upload, the server fans out by each receiver's capability.
    for seq in 0..N {
        host.send_relay(ALL_PEERS, &frame_payload(1, seq, 200))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut delivered_datagrams = 0;
    for (c, via) in [(&mut streamer, Via::Stream), (&mut browser, Via::Datagram)] {
        let got = collect(c, N as usize).await;
        if via == Via::Datagram {
            delivered_datagrams += got.len();
        }
        assert!(
            got.len() as u32 >= N * 95 / 100,
            "only {} of {N} arrived",
            got.len()
        );
        for (from, payload, vs) in &got {
            assert_eq!(*from, host.peer_id());
            assert_eq!(*vs, via);
            let seq = u32::from_le_bytes(payload[..4].try_into().unwrap());
            assert_eq!(
                &payload[..],
                &frame_payload(1, seq, 200)[..],
                "byte for byte"
            );
        }
        if via == Via::Stream {
            assert_eq!(got.len() as u32, N, "streams are reliable");
        }
    }
    // Stream-mode sender to one peer (the host, a datagram receiver).
    for seq in 0..20 {
        streamer
            .send_relay(host.peer_id(), &frame_payload(2, seq, 1000))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Reliable streams to the server, then datagrams: nearly all arrive.
    let got = collect(&mut host, 20).await;
    assert!(got.len() >= 18, "{} of 20", got.len());
    delivered_datagrams += got.len();
    for (from, payload, vs) in &got {
        assert_eq!(*from, streamer.peer_id());
        assert_eq!(*vs, Via::Datagram);
        let seq = u32::from_le_bytes(payload[..4].try_into().unwrap());
        assert_eq!(&payload[..], &frame_payload(2, seq, 1000)[..]);
    }
    // WebTransport sender to the stream-mode peer only: the host gets nothing.
    for seq in 0..20 {
        browser
            .send_relay(streamer.peer_id(), &frame_payload(3, seq, 64))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let got = collect(&mut streamer, 20).await;
    assert!(got.len() >= 19, "{} of 20", got.len());
    for (from, payload, _) in &got {
        assert_eq!(*from, browser.peer_id());
        let seq = u32::from_le_bytes(payload[..4].try_into().unwrap());
        assert_eq!(&payload[..], &frame_payload(3, seq, 64)[..]);
    }
    assert!(host.next_relay(Duration::from_millis(300)).await.is_none());
    // The other session never received a single frame.
    assert!(other.next_relay(Duration::from_millis(100)).await.is_none());
    assert!(other2
        .next_relay(Duration::from_millis(100))
        .await
        .is_none());
    // Addressing a peer of another session is dropped and counted.
    let before = srv.metric("fsp2p_relay_dropped_total{reason=\"unknown_peer\"}");
    host.send_relay(other2.peer_id(), b"leak?").await.unwrap();
    assert!(
        eventually(WAIT, || srv
            .metric("fsp2p_relay_dropped_total{reason=\"unknown_peer\"}")
            > before)
        .await
    );
    assert!(other2
        .next_relay(Duration::from_millis(300))
        .await
        .is_none());
    // And so is a signal.
    host.signal(other2.peer_id(), Signal::EndOfCandidates)
        .await
        .unwrap();
    let code = expect_msg(&mut host, |m| match m {
        ServerMsg::Error { code, .. } => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(code, ErrorCode::UnknownPeer as u16);
    assert!(srv.metric("fsp2p_relay_forwarded_total{via=\"stream\"}") >= 80.0);

    // QUIC's own drops are counted when connections close, and exactly: every
    // datagram that went missing between the relay and a receiver, or between a
    // sender and the relay, is one the server dropped in its QUIC buffers,
    // unless a packet was lost on the network (on loopback, usually none).
    let queued = srv.metric("fsp2p_relay_forwarded_total{via=\"datagram\"}");
    assert!(
        queued <= (N + 20) as f64,
        "host → browser, streamer → host: {queued}"
    );
    let missing_out = queued - delivered_datagrams as f64;
    let sent_in = (N + 20 + 1) as f64; // host's N and its leak attempt, browser's 20
    let missing_in = sent_in - srv.metric("fsp2p_relay_received_total{via=\"datagram\"}");
    for c in [host, streamer, browser, other, other2] {
        c.close().await;
    }
    assert!(
        eventually(WAIT, || srv.metric("fsp2p_connections{transport=\"quic\"}")
            + srv.metric("fsp2p_connections{transport=\"webtransport\"}")
            == 0.0)
        .await
    );
    let (_, body) = srv.get("/metrics");
    for series in ["direction=\"in\"", "direction=\"out\""] {
        assert!(
            body.contains(&format!("fsp2p_quic_datagrams_dropped_total{{{series}}}")),
            "{body}"
        );
    }
    let dropped_out = srv.metric("fsp2p_quic_datagrams_dropped_total{direction=\"out\"}");
    let dropped_in = srv.metric("fsp2p_quic_datagrams_dropped_total{direction=\"in\"}");
    // Out: queued = delivered + dropped in the send buffer + lost on the way.
    // The server counts the packets it sent that were lost; one lost packet
    // may carry up to 7 of these frames (1452-byte packets, 200-byte frames).
    let lost_out = srv.metric("fsp2p_quic_lost_packets_total");
    assert!(
        dropped_out <= missing_out && dropped_out >= missing_out - 7.0 * lost_out,
        "{dropped_out} counted as dropped, {missing_out} of {queued} missing, \
         {lost_out} packets lost"
    );
    // In: every datagram the clients sent reached the server's QUIC stack (no
    // loss on loopback at 81 datagrams of at most 200 bytes; the senders' own
    // buffers hold far more), so the ones never read are exactly the dropped ones.
    assert_eq!(
        dropped_in, missing_in,
        "{dropped_in} counted as dropped, {missing_in} of {sent_in} never read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_egress_of_one_address_is_capped_and_counted() {
    // Every client here is 127.0.0.1: one address, one budget of 2000 bytes/s
    // for what the server sends on its behalf.
    let limits = Limits {
        relay_out_bytes_per_ip: 2_000,
        // So the burst stays at 2000 (it grows to hold the largest frame to a full session).
        max_relay_payload: 500,
        max_peers_per_session: 3,
        ..Limits::default()
    };
    let srv = start(limits, IceConfig::default()).await;
    let mut host = srv.quic(RelayMode::Datagram).await;
    let code = host.create_session(0, None).await.unwrap().code;
    let mut a = srv.quic(RelayMode::Datagram).await;
    a.join_session(&code, None).await.unwrap();
    let mut b = srv.quic(RelayMode::Datagram).await;
    b.join_session(&code, None).await.unwrap();
    // 40 frames of 100 bytes to both others: 8000 bytes of egress asked for.
    let t0 = std::time::Instant::now();
    for _ in 0..40 {
        host.send_relay(ALL_PEERS, &[5u8; 100]).await.unwrap();
    }
    assert!(
        eventually(WAIT, || srv
            .metric("fsp2p_relay_received_total{via=\"datagram\"}")
            >= 38.0)
        .await
    );
    // What the budget could have allowed by the time the server had the burst.
    let budget = 2_000.0 + 2_000.0 * t0.elapsed().as_secs_f64();
    assert!(
        srv.metric("fsp2p_relay_dropped_total{reason=\"ip_rate_limited\"}") >= 1.0,
        "the address's budget never tripped"
    );
    let (ga, gb) = (
        collect(&mut a, 40).await.len(),
        collect(&mut b, 40).await.len(),
    );
    // Each frame that passed was paid twice (two copies of 100 bytes).
    assert!(
        ((ga + gb) * 100) as f64 <= budget + 200.0,
        "{ga} + {gb} copies passed a budget of {budget:.0} bytes"
    );
    // A frame is paid for and sent to both, or dropped for both (one datagram
    // may be lost on the way).
    assert!(ga.abs_diff(gb) <= 1, "{ga} vs {gb}");
    assert!(
        ga >= 9,
        "only {ga} frames passed (the burst alone allows 10)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_dropped_in_a_full_send_buffer_are_counted() {
    // A 2 KiB send buffer holds two 1000-byte frames: a burst of them to one
    // receiver overflows it, and quinn drops the oldest.
    // (The receive buffer is large so the whole burst reaches the relay.)
    let quic = flightsim_p2p::server::QuicTuning {
        datagram_send_buffer: 2048,
        datagram_recv_buffer: 1 << 20,
        ..Default::default()
    };
    let limits = Limits {
        relay_datagrams_per_sec: 0,
        relay_bytes_per_sec: 0,
        ..Limits::default()
    };
    let srv = common::start_with(limits, IceConfig::default(), quic).await;
    let host = {
        let mut h = srv.quic(RelayMode::Datagram).await;
        let code = h.create_session(0, None).await.unwrap().code;
        (h, code)
    };
    let (host, code) = host;
    let mut rx = srv.webtransport().await;
    rx.join_session(&code, None).await.unwrap();
    for i in 0..300u32 {
        host.send_relay(rx.peer_id(), &[i as u8; 1000])
            .await
            .unwrap();
    }
    // Two seconds of silence at the receiver: the relay has forwarded all it will.
    let got = collect(&mut rx, 300).await.len() as f64;
    let queued = srv.metric("fsp2p_relay_forwarded_total{via=\"datagram\"}");
    rx.close().await;
    host.close().await;
    assert!(
        eventually(WAIT, || srv.metric("fsp2p_connections{transport=\"quic\"}")
            + srv.metric("fsp2p_connections{transport=\"webtransport\"}")
            == 0.0)
        .await
    );
    let dropped = srv.metric("fsp2p_quic_datagrams_dropped_total{direction=\"out\"}");
    let lost = srv.metric("fsp2p_quic_lost_packets_total");
    eprintln!(
        "queued {queued}, delivered {got}, counted as dropped {dropped}, packets lost {lost}"
    );
    assert!(
        got < queued,
        "the burst did not overflow the buffer ({got} of {queued} arrived)"
    );
    assert!(
        dropped > 0.0,
        "{} frames went missing, none counted",
        queued - got
    );
    // Every queued frame arrived or was counted (a lost packet may hide one more).
    assert!(
        got + dropped >= queued - lost && got + dropped <= queued,
        "queued {queued} = delivered {got} + dropped {dropped} (lost packets {lost})"
    );
    // On the way in, the server counts no more than it never read.
    let read = srv.metric("fsp2p_relay_received_total{via=\"datagram\"}");
    let dropped_in = srv.metric("fsp2p_quic_datagrams_dropped_total{direction=\"in\"}");
    assert!(
        dropped_in <= 300.0 - read,
        "{dropped_in} counted, {read} of 300 read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_before_joining_is_dropped_and_counted() {
    let srv = start(Limits::default(), IceConfig::default()).await;
    let c = srv.quic(RelayMode::Datagram).await;
    c.send_relay(ALL_PEERS, b"too early").await.unwrap();
    assert!(
        eventually(WAIT, || srv
            .metric("fsp2p_relay_dropped_total{reason=\"not_in_session\"}")
            >= 1.0)
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_keeps_id_and_seat_then_grace_expiry_and_clean_leave() {
    let limits = Limits {
        resume_grace_ms: 3_000,
        ..Limits::default()
    };
    let srv = start(limits, IceConfig::default()).await;
    let mut host = srv.quic(RelayMode::Datagram).await;
    let code = host.create_session(0, None).await.unwrap().code;
    let mut cfg = srv.config(ClientTransport::Quic, RelayMode::Datagram);
    let a = {
        let mut a = Client::connect(&cfg, None).await.unwrap();
        a.join_session(&code, None).await.unwrap();
        a
    };
    let a_id = a.peer_id();
    cfg.resume_token = Some(a.welcome.resume_token.clone());
    a.abandon(); // as if the process crashed
    let status = expect_msg(&mut host, |m| match m {
        ServerMsg::PeerStatus { peer, online } => Some((*peer, *online)),
        _ => None,
    })
    .await;
    assert_eq!(status, (a_id, false));

    // Resume within the grace period: same id, back in the session.
    let mut a2 = Client::connect(&cfg, None).await.unwrap();
    assert!(a2.welcome.resumed);
    assert_eq!(a2.peer_id(), a_id);
    let info = expect_msg(&mut a2, |m| match m {
        ServerMsg::SessionJoined(i) => Some(i.clone()),
        _ => None,
    })
    .await;
    assert_eq!(info.code, code);
    let status = expect_msg(&mut host, |m| match m {
        ServerMsg::PeerStatus { peer, online } => Some((*peer, *online)),
        _ => None,
    })
    .await;
    assert_eq!(status, (a_id, true));
    let from = relay_until_delivered(&host, &mut a2, b"welcome back").await;
    assert_eq!(from, Some(host.peer_id()));

    // Lost again and not back in time: everyone is told it timed out.
    a2.abandon();
    let left = expect_msg(&mut host, |m| match m {
        ServerMsg::PeerLeft { peer, reason } => Some((*peer, *reason)),
        _ => None,
    })
    .await;
    assert_eq!(left, (a_id, LeaveReason::TimedOut));
    // The old token is now refused; the client gets a fresh identity.
    let a3 = Client::connect(&cfg, None).await.unwrap();
    assert!(!a3.welcome.resumed);
    assert_ne!(a3.peer_id(), a_id);

    // A clean close leaves at once.
    let mut b = srv.quic(RelayMode::Datagram).await;
    b.join_session(&code, None).await.unwrap();
    let b_id = b.peer_id();
    b.close().await;
    let left = expect_msg(&mut host, |m| match m {
        ServerMsg::PeerLeft { peer, reason } => Some((*peer, *reason)),
        _ => None,
    })
    .await;
    assert_eq!(left, (b_id, LeaveReason::Left));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_leaving_hands_over_the_host_role() {
    let srv = start(Limits::default(), IceConfig::default()).await;
    let mut host = srv.quic(RelayMode::Datagram).await;
    let code = host.create_session(0, None).await.unwrap().code;
    let mut a = srv.webtransport().await;
    a.join_session(&code, None).await.unwrap();
    let mut b = srv.quic(RelayMode::Stream).await;
    b.join_session(&code, None).await.unwrap();
    let a_id = a.peer_id();
    host.send(&ClientMsg::LeaveSession).await.unwrap();
    expect_msg(&mut host, |m| {
        matches!(m, ServerMsg::SessionLeft { .. }).then_some(())
    })
    .await;
    for c in [&mut a, &mut b] {
        let left = expect_msg(c, |m| match m {
            ServerMsg::PeerLeft { peer, .. } => Some(*peer),
            _ => None,
        })
        .await;
        assert_eq!(left, host.peer_id());
        let new_host = expect_msg(c, |m| match m {
            ServerMsg::HostChanged { host } => Some(*host),
            _ => None,
        })
        .await;
        assert_eq!(new_host, a_id, "the longest-present peer becomes host");
    }
}

/// The Welcome's TURN entry is the coturn REST credential, recomputed here
/// with an independent HMAC. That coturn itself accepts it (and refuses it
/// tampered with) is tested against the real coturn in tests/coturn.rs,
/// `welcome_turn_credentials_relay_packets_through_coturn`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_carries_turn_credentials_signed_with_the_shared_secret() {
    let ice = IceConfig {
        stun_urls: vec!["stun:127.0.0.1:3478".into()],
        turn_urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
        turn_secret: Some("shared-secret".into()),
        turn_ttl_secs: 600,
    };
    let srv = start(Limits::default(), ice).await;
    let c = srv.quic(RelayMode::Datagram).await;
    let w = &c.welcome;
    assert_eq!(w.ice_servers.len(), 2);
    assert_eq!(
        w.ice_servers[0].urls,
        vec!["stun:127.0.0.1:3478".to_string()]
    );
    assert!(w.ice_servers[0].username.is_none());
    let turn = &w.ice_servers[1];
    let user = turn.username.clone().unwrap();
    let (expiry, peer) = user.split_once(':').unwrap();
    assert_eq!(peer, c.peer_id().to_string());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        expiry >= now + 590 && expiry <= now + 610,
        "{expiry} vs {now}"
    );
    // Independent HMAC-SHA1 (RustCrypto), not the server's ring.
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(b"shared-secret").unwrap();
    mac.update(user.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(turn.credential.as_deref(), Some(expected.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_trip_and_are_counted_in_metrics() {
    let limits = Limits {
        relay_datagrams_per_sec: 20,
        max_join_attempts: 3,
        max_connections: 4,
        max_relay_payload: 500,
        ..Limits::default()
    };
    let srv = start(limits, IceConfig::default()).await;
    let mut host = srv.quic(RelayMode::Datagram).await;
    let code = host.create_session(0, None).await.unwrap().code;
    let mut peer = srv.quic(RelayMode::Datagram).await;
    peer.join_session(&code, None).await.unwrap();
    // Relay rate: 200 frames at once against a budget of 20/s (a bucket of 20
    // that refills at 20/s while the burst arrives, however slowly that is).
    let t0 = std::time::Instant::now();
    for _ in 0..200 {
        host.send_relay(peer.peer_id(), &[7u8; 100]).await.unwrap();
    }
    assert!(
        eventually(WAIT, || srv
            .metric("fsp2p_relay_received_total{via=\"datagram\"}")
            >= 190.0)
        .await
    );
    let allowed = 20.0 + 20.0 * t0.elapsed().as_secs_f64() + 1.0;
    let got = collect(&mut peer, 200).await;
    assert!(
        got.len() as f64 <= allowed,
        "{} frames passed a 20/s limit (at most {allowed:.0} could)",
        got.len()
    );
    let limited = srv.metric("fsp2p_relay_dropped_total{reason=\"rate_limited\"}");
    assert!(
        limited >= 190.0 - allowed,
        "only {limited} counted as rate limited"
    );
    // Oversized payload, from the peer: its relay budget is untouched, so the
    // frame can only be dropped for its size (no waiting for the host's bucket
    // to refill). The refill itself is tested on simulated time in the core:
    // `limits::tests::bucket_allows_burst_then_refills_at_rate` and
    // `session::tests::relay_checks_membership_size_and_rate`.
    peer.send_relay(host.peer_id(), &[0u8; 501]).await.unwrap();
    assert!(
        eventually(WAIT, || srv
            .metric("fsp2p_relay_dropped_total{reason=\"too_large\"}")
            >= 1.0)
        .await
    );

    // Join brute force: the 4th failure closes the connection.
    // (No automatic resume: this is about the close itself.)
    let mut no_resume = srv.config(ClientTransport::Quic, RelayMode::Datagram);
    no_resume.auto_resume = false;
    let mut guesser = Client::connect(&no_resume, None).await.unwrap();
    for i in 0..3 {
        let r = guesser.join_session(&format!("ZZZZZ{i}"), None).await;
        expect_error(r, ErrorCode::UnknownSession).unwrap();
    }
    let r = guesser.join_session("ZZZZZZ", None).await;
    expect_error(r, ErrorCode::TooManyJoinAttempts).unwrap();
    assert!(matches!(
        guesser.next_event_within(WAIT).await,
        Some(Event::Closed(_))
    ));
    assert_eq!(
        srv.metric("fsp2p_signaling_errors_total{reason=\"too_many_join_attempts\"}"),
        1.0
    );

    // Connection cap: host, peer and 2 more fit; the 5th is refused.
    let _c3 = srv.quic(RelayMode::Datagram).await;
    assert!(
        eventually(WAIT, || srv.metric("fsp2p_connections{transport=\"quic\"}")
            == 3.0)
        .await
    );
    let _c4 = srv.quic(RelayMode::Datagram).await;
    let refused = Client::connect(
        &srv.config(ClientTransport::Quic, RelayMode::Datagram),
        None,
    )
    .await;
    assert!(refused.is_err());
    assert!(
        eventually(WAIT, || srv
            .metric("fsp2p_connections_refused_total{reason=\"server_full\"}")
            >= 1.0)
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_wire_closes_only_that_connection() {
    // Each bad connection below creates a session that outlives it (the
    // resume grace): more than one address's default session quota.
    let limits = Limits {
        max_sessions_per_ip: 100,
        ..Limits::default()
    };
    let srv = start(limits, IceConfig::default()).await;
    // A healthy session that must be unaffected throughout.
    let mut host = srv.quic(RelayMode::Datagram).await;
    let code = host.create_session(0, None).await.unwrap().code;
    let mut peer = srv.webtransport().await;
    peer.join_session(&code, None).await.unwrap();

    use rand::{Rng, RngCore, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xF00D);
    let mut closed_with = Vec::new();
    for round in 0..24 {
        // No automatic resume: the test is about how the connection ends.
        let mut cfg = srv.config(ClientTransport::Quic, RelayMode::Datagram);
        cfg.auto_resume = false;
        let mut bad = Client::connect(&cfg, None).await.unwrap();
        let code2 = bad.create_session(0, None).await.unwrap().code;
        assert_ne!(code2, code);
        // Random datagrams and random relay streams from a joined peer.
        for _ in 0..50 {
            let mut d = vec![0u8; rng.random_range(0..1200)];
            rng.fill_bytes(&mut d);
            let _ = bad.send_raw_datagram(Bytes::from(d));
        }
        // Then garbage on the control stream: random bytes, an oversized
        // length, an unknown tag, or a truncated-then-valid mix.
        let junk: Vec<u8> = match round % 4 {
            0 => {
                // A well-framed body of random bytes (a partial frame would just wait).
                let mut body = vec![0u8; rng.random_range(1..4000)];
                rng.fill_bytes(&mut body);
                body[0] = 6 + (body[0] % 250); // no such message tag
                let mut j = Vec::new();
                put_varint(&mut j, body.len() as u32);
                j.extend_from_slice(&body);
                j
            }
            1 => vec![0xFF, 0xFF, 0xFF, 0x7F],
            2 => vec![1, 99],
            _ => vec![2, 2, 0xC3, 0x28, 0],
        };
        bad.send_raw(&junk).await.unwrap();
        loop {
            match bad.next_event_within(WAIT).await {
                Some(Event::Control(ServerMsg::Error { code, .. })) => closed_with.push(code),
                Some(Event::Closed(_)) => break,
                None => panic!("round {round}: the server neither answered nor closed"),
                Some(_) => {}
            }
        }
        // Meanwhile the healthy pair still relays.
        let from = relay_until_delivered(&host, &mut peer, &[round as u8; 32]).await;
        assert_eq!(from, Some(host.peer_id()), "healthy session broken");
    }
    assert!(closed_with.contains(&(ErrorCode::FrameTooLarge as u16)));
    assert!(closed_with.contains(&(ErrorCode::BadMessage as u16)));
    // Messages out of order.
    let mut c = srv.quic(RelayMode::Datagram).await;
    c.send(&ClientMsg::Hello(Hello {
        version: PROTOCOL_VERSION,
        client: ClientKind::Rust,
        relay_mode: RelayMode::Datagram,
        name: String::new(),
        resume_token: None,
        access_token: None,
    }))
    .await
    .unwrap();
    let r = c.wait_for(|_| None::<()>).await;
    expect_error(r, ErrorCode::ProtocolViolation).unwrap();
    assert!(host.ping().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_version_and_silent_clients_are_closed_with_a_reason() {
    // Long enough that a busy machine still gets the version-3 Hello in first.
    let limits = Limits {
        hello_timeout_ms: 1_500,
        ..Limits::default()
    };
    let srv = start(limits, IceConfig::default()).await;
    // Version 3 (after this server's 1 and 2) is refused with a reason.
    let cfg = srv.config(ClientTransport::Quic, RelayMode::Datagram);
    let (wire, _ep) = connect_wire(&cfg).await.unwrap();
    let (mut s, mut r) = wire.open_bi().await.unwrap();
    let hello = ClientMsg::Hello(Hello {
        version: PROTOCOL_VERSION + 1,
        client: ClientKind::Other,
        relay_mode: RelayMode::Datagram,
        name: String::new(),
        resume_token: None,
        access_token: None,
    });
    s.write_all(&encode_frame(&hello)).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, r.read_to_end(&mut buf)).await;
    let mut dec = FrameDecoder::new(1 << 16);
    dec.extend(&buf);
    let msg: ServerMsg = decode(&dec.next_frame().unwrap().unwrap()).unwrap();
    assert!(matches!(msg, ServerMsg::Error { code: 3, .. }), "{msg:?}");
    // A client that never says hello is closed with hello_timeout.
    let (silent, _ep) = connect_wire(&cfg).await.unwrap();
    let Wire::Quic(silent) = silent else {
        unreachable!()
    };
    let err = tokio::time::timeout(WAIT, silent.closed()).await.unwrap();
    match err {
        quinn::ConnectionError::ApplicationClosed(a) => {
            assert_eq!(a.error_code.into_inner(), ErrorCode::HelloTimeout as u64)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webtransport_on_another_path_is_refused() {
    let srv = start(Limits::default(), IceConfig::default()).await;
    let config = wtransport::ClientConfig::builder()
        .with_bind_default()
        .with_server_certificate_hashes([wtransport::tls::Sha256Digest::new(srv.hash)])
        .build();
    let ep = wtransport::Endpoint::client(config).unwrap();
    let r = ep.connect(format!("https://{}/nope", srv.quic)).await;
    // The refusal (a 404) reaches the client as a response: wtransport says
    // "rejected", not a connection error (it used to be lost in the close).
    let err = r.expect_err("a session on /nope must be refused");
    assert!(
        matches!(err, wtransport::error::ConnectingError::SessionRejected),
        "{err:?}"
    );
    let ok = ep.connect(format!("https://{}/signal", srv.quic)).await;
    assert!(ok.is_ok());
    assert!(
        eventually(WAIT, || srv
            .metric("fsp2p_connections_refused_total{reason=\"not_found\"}")
            >= 1.0)
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_certificate_hash_is_refused_by_the_client() {
    let srv = start(Limits::default(), IceConfig::default()).await;
    let mut cfg = srv.config(ClientTransport::Quic, RelayMode::Datagram);
    cfg.trust = flightsim_p2p::client::Trust::CertHash([0u8; 32]);
    let err = Client::connect(&cfg, None).await.err().unwrap();
    assert!(format!("{err:#}").contains("certificate"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_side_port_serves_health_metrics_and_cert_hash() {
    let srv = start(Limits::default(), IceConfig::default()).await;
    let (status, body) = srv.get("/healthz");
    assert_eq!(status, 200);
    assert!(body.contains("\"ok\""));
    let (status, body) = srv.get("/cert-hash");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["hex"], hex::encode(srv.hash));
    assert_eq!(v["dev"], true);
    let _c = srv.webtransport().await;
    assert!(
        eventually(WAIT, || srv
            .metric("fsp2p_connections{transport=\"webtransport\"}")
            == 1.0)
        .await
    );
    let (status, _) = srv.get("/nope");
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_migration_keeps_the_session_without_a_resume() {
    let srv = start(Limits::default(), IceConfig::default()).await;
    let mut host = srv.quic(RelayMode::Datagram).await;
    let code = host.create_session(0, None).await.unwrap().code;
    let mut mover = srv.quic(RelayMode::Datagram).await;
    mover.join_session(&code, None).await.unwrap();
    let from = relay_until_delivered(&host, &mut mover, b"before").await;
    assert_eq!(from, Some(host.peer_id()));

    // New local port: the server sees a new address. The first packet from it
    // triggers path validation; frames flow again once that is done.
    mover.rebind().unwrap();
    let from = relay_until_delivered(&mover, &mut host, b"after").await;
    assert_eq!(
        from,
        Some(mover.peer_id()),
        "relay from the migrated client never arrived"
    );
    let from = relay_until_delivered(&host, &mut mover, b"to new address").await;
    assert_eq!(from, Some(host.peer_id()));
    // Nobody saw the mover go offline, and no second connection exists.
    while let Some(e) = host.next_event_within(Duration::from_millis(200)).await {
        assert!(
            !matches!(e, Event::Control(ServerMsg::PeerStatus { .. })),
            "{e:?}"
        );
    }
    assert_eq!(
        srv.metric("fsp2p_connections_accepted_total{transport=\"quic\"}"),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_through_the_same_endpoint_uses_0rtt_and_survives_rejection() {
    use flightsim_p2p::client::QuicEndpoint;
    let srv = start(Limits::default(), IceConfig::default()).await;
    let mut host = srv.quic(RelayMode::Datagram).await;
    let code = host.create_session(0, None).await.unwrap().code;

    let mut cfg = srv.config(ClientTransport::Quic, RelayMode::Datagram);
    cfg.endpoint = Some(QuicEndpoint::new(&cfg).unwrap());
    let join = ClientMsg::JoinSession(JoinSession {
        code: code.clone(),
        password: None,
        region_rtts: Vec::new(),
    });
    let mut first = Client::connect(&cfg, Some(join.clone())).await.unwrap();
    assert!(!first.zero_rtt, "nothing to resume yet");
    expect_msg(&mut first, |m| {
        matches!(m, ServerMsg::SessionJoined(_)).then_some(())
    })
    .await;
    // A round trip more, so the session ticket has surely arrived.
    first.ping().await.unwrap();
    first.close().await;
    // Same endpoint again: TLS resumes, Hello and JoinSession ride in 0-RTT.
    let mut second = Client::connect(&cfg, Some(join.clone())).await.unwrap();
    assert!(second.zero_rtt, "second connection did not use 0-RTT");
    let info = expect_msg(&mut second, |m| match m {
        ServerMsg::SessionJoined(i) => Some(i.clone()),
        _ => None,
    })
    .await;
    assert_eq!(info.code, code);

    // A different server process (same certificate) has never seen the
    // ticket: it rejects 0-RTT, and the client says it all again in 1-RTT.
    let other = common::start_same_cert(&srv).await;
    let mut cfg2 = cfg.clone();
    cfg2.server = other.quic;
    let mut third = Client::connect(&cfg2, None).await.unwrap();
    assert!(!third.zero_rtt);
    assert!(third.ping().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webtransport_connection_closed_with_code_0_leaves_at_once() {
    // (A browser closes the WebTransport session with a capsule instead; the
    // browser end-to-end test covers that path.)
    let srv = start(Limits::default(), IceConfig::default()).await;
    let mut host = srv.quic(RelayMode::Datagram).await;
    let code = host.create_session(0, None).await.unwrap().code;
    let mut wt = srv.webtransport().await;
    wt.join_session(&code, None).await.unwrap();
    let id = wt.peer_id();
    wt.close().await; // WebTransport session closed with code 0
    let left = expect_msg(&mut host, |m| match m {
        ServerMsg::PeerLeft { peer, reason } => Some((*peer, *reason)),
        ServerMsg::PeerStatus { online: false, .. } => panic!("treated as a lost connection"),
        _ => None,
    })
    .await;
    assert_eq!(left, (id, LeaveReason::Left));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_certificate_is_replaced_without_dropping_connections() {
    let srv = start(Limits::default(), IceConfig::default()).await;
    let mut old_client = srv.quic(RelayMode::Datagram).await;
    let (_, body) = srv.get("/cert-hash");
    let before: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(before["hex"], hex::encode(srv.hash));

    let info = srv.server.as_ref().unwrap().rotate_dev_cert().unwrap();
    let (_, body) = srv.get("/cert-hash");
    let after: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(after["hex"], info.hex);
    assert_ne!(after["hex"], before["hex"]);

    // The open connection is unaffected; new clients need the new hash.
    old_client.ping().await.unwrap();
    let new_hash = flightsim_p2p::certs::parse_sha256_hex(&info.hex).unwrap();
    let mut cfg = srv.config(ClientTransport::Quic, RelayMode::Datagram);
    assert!(
        Client::connect(&cfg, None).await.is_err(),
        "old hash still accepted"
    );
    cfg.trust = flightsim_p2p::client::Trust::CertHash(new_hash);
    let mut fresh = Client::connect(&cfg, None).await.unwrap();
    fresh.ping().await.unwrap();
    let mut wt = srv.config(ClientTransport::Webtransport, RelayMode::Datagram);
    wt.trust = flightsim_p2p::client::Trust::CertHash(new_hash);
    Client::connect(&wt, None).await.unwrap();
}
