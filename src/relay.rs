//! Where a relayed frame is forwarded: the per-datagram hot path.
//!
//! A client sends `varint(dest) || payload` as a datagram (or one
//! unidirectional stream); `forward` asks the session core who may receive
//! it, rewrites the header to name the sender, and hands one copy to each
//! receiver in the way that receiver asked for. It never waits: datagrams go
//! into quinn's send buffer (oldest dropped when full), stream-mode frames into
//! a short per-receiver queue (dropped when full). Stale flight data is worth
//! less than fresh, so nothing here queues without bound.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::hub::{Link, Shared};
use crate::protocol::{parse_relay, relay_frame, ws_relay, RelayMode};
use crate::session::RelayDrop;
pub use crate::session::Via;
use crate::wire::DatagramError;

/// Forward one relay frame received from connection `conn`.
pub(crate) fn forward(shared: &Shared, conn: crate::session::ConnId, frame: &[u8], via: Via) {
    let metrics = &shared.metrics;
    metrics.relay_in(via);
    let Ok((dest, payload)) = parse_relay(frame) else {
        metrics.relay_drop(RelayDrop::Malformed);
        return;
    };
    let mut guard = shared.lock();
    let st = &mut *guard;
    let now = tokio::time::Instant::now().into_std();
    let from = match st
        .core
        .route(now, conn, dest, payload.len(), &mut st.targets)
    {
        Ok(from) => from,
        Err(why) => {
            metrics.relay_drop(why);
            return;
        }
    };
    // One buffer, shared by every receiver (Bytes clones are reference
    // counts); WebSocket receivers share one with the type byte in front.
    let out = relay_frame(from, payload);
    let mut out_ws: Option<Bytes> = None;
    for target in &st.targets {
        let Some(link) = st.links.get(&target.conn) else {
            continue;
        };
        let frame = if link.wire.is_some() {
            &out
        } else {
            out_ws.get_or_insert_with(|| Bytes::from(ws_relay(&out)))
        };
        match deliver(link, target.mode, frame) {
            Ok(via) => metrics.relay_out(via, payload.len()),
            Err(why) => metrics.relay_drop(why),
        }
    }
}

/// Hand one frame to one receiver without waiting (for a WebSocket
/// receiver, the frame already carries its WebSocket type byte).
fn deliver(link: &Link, mode: RelayMode, frame: &Bytes) -> Result<Via, RelayDrop> {
    match (&link.wire, mode) {
        (Some(wire), RelayMode::Datagram) => match wire.send_datagram(frame.clone()) {
            Ok(()) => {
                link.datagrams_queued.fetch_add(1, Ordering::Relaxed);
                Ok(Via::Datagram)
            }
            Err(DatagramError::TooLarge) => Err(RelayDrop::ReceiverTooSmall),
            Err(_) => Err(RelayDrop::ReceiverBusy),
        },
        // Stream-mode QUIC and WebSocket receivers: a short queue, newest kept.
        (wire, _) => {
            if link.relay_queue.push(frame.clone()) {
                // The oldest queued frame made room: count it as dropped.
                return Err(RelayDrop::ReceiverBusy);
            }
            Ok(if wire.is_some() {
                Via::Stream
            } else {
                Via::WebSocket
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures_util::FutureExt;
    use tokio::sync::mpsc;

    use super::*;
    use crate::config::QuicTuning;
    use crate::hub::LatestQueue;
    use crate::limits::Limits;
    use crate::protocol::{
        ClientKind, ClientMsg, CreateSession, Hello, JoinSession, PeerId, ServerMsg, ALL_PEERS,
        PROTOCOL_VERSION,
    };
    use crate::session::{ConnId, ConnMeta, Output, Transport};
    use crate::turn::IceConfig;

    /// A server's shared state with no socket behind it: its connections
    /// are WebSocket links whose relay queues the test reads.
    fn shared() -> Shared {
        let identity = crate::certs::Identity {
            chain: Vec::new(),
            key: rustls::pki_types::PrivatePkcs8KeyDer::from(Vec::new()).into(),
            sha256: [0; 32],
            not_after_unix: 0,
            dev: true,
        };
        Shared::new(
            Limits::default(),
            IceConfig::default(),
            QuicTuning::default(),
            &identity,
            None,
        )
    }

    /// Open a WebSocket connection (relay queue of `queue` frames), say
    /// hello, and create a session (`code: None`) or join one.
    fn player(shared: &Shared, queue: usize, code: Option<&str>) -> (ConnId, PeerId, String) {
        let mut st = shared.lock();
        let st = &mut *st;
        let meta = ConnMeta {
            transport: Transport::WebSocket,
            ip: None,
        };
        let conn = st.core.open(crate::hub::now(), meta).unwrap();
        let (control, _) = mpsc::channel(1);
        st.links.insert(
            conn,
            Link {
                wire: None,
                control,
                relay_queue: Arc::new(LatestQueue::new(queue)),
                datagrams_queued: Default::default(),
                kill: Default::default(),
                dropped: false,
            },
        );
        let hello = ClientMsg::Hello(Hello {
            version: PROTOCOL_VERSION,
            client: ClientKind::Rust,
            relay_mode: RelayMode::Stream,
            name: "p".into(),
            resume_token: None,
            access_token: None,
        });
        let req = match code {
            None => ClientMsg::CreateSession(CreateSession {
                max_peers: 0,
                password: None,
                region_rtts: Vec::new(),
            }),
            Some(code) => ClientMsg::JoinSession(JoinSession {
                code: code.into(),
                password: None,
                region_rtts: Vec::new(),
            }),
        };
        st.core.handle(crate::hub::now(), conn, hello);
        st.core.handle(crate::hub::now(), conn, req);
        let (mut peer, mut joined) = (0, String::new());
        while let Some(out) = st.core.poll_output() {
            match out {
                Output::Send {
                    msg: ServerMsg::Welcome(w),
                    ..
                } => peer = w.peer_id,
                Output::Send {
                    msg: ServerMsg::SessionCreated(s) | ServerMsg::SessionJoined(s),
                    ..
                } => joined = s.code,
                _ => {}
            }
        }
        assert!(peer != 0 && !joined.is_empty());
        (conn, peer, joined)
    }

    /// What is waiting in a connection's relay queue.
    fn queued(shared: &Shared, conn: ConnId) -> Vec<Bytes> {
        let queue = shared.lock().links[&conn].relay_queue.clone();
        std::iter::from_fn(|| queue.pop().now_or_never()).collect()
    }

    fn metric(shared: &Shared, line: &str) -> f64 {
        let text = shared.metrics.render();
        text.lines()
            .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    #[test]
    fn a_frame_reaches_its_receivers_named_by_its_sender_and_no_one_else() {
        let shared = shared();
        let (a, pa, code) = player(&shared, 8, None);
        let (b, pb, _) = player(&shared, 8, Some(&code));
        let (c, _, _) = player(&shared, 8, Some(&code));
        let (other, _, _) = player(&shared, 8, None);
        // To one peer: only b gets it, as a WebSocket relay message from a.
        forward(&shared, a, &relay_frame(pb, b"one"), Via::WebSocket);
        let from_a = Bytes::from(ws_relay(&relay_frame(pa, b"one")));
        assert_eq!(queued(&shared, b), vec![from_a]);
        assert!(queued(&shared, c).is_empty());
        assert!(queued(&shared, a).is_empty(), "not echoed to the sender");
        // To everyone: both other members, never another session.
        forward(&shared, a, &relay_frame(ALL_PEERS, b"all"), Via::WebSocket);
        let all = Bytes::from(ws_relay(&relay_frame(pa, b"all")));
        assert_eq!(queued(&shared, b), vec![all.clone()]);
        assert_eq!(queued(&shared, c), vec![all]);
        assert!(queued(&shared, other).is_empty());
        let out = r#"fsp2p_relay_forwarded_total{via="websocket"}"#;
        assert_eq!(metric(&shared, out), 3.0);
        let got = r#"fsp2p_relay_received_total{via="websocket"}"#;
        assert_eq!(metric(&shared, got), 2.0);
    }

    #[test]
    fn a_full_receiver_queue_keeps_the_newest_frame_and_counts_the_oldest_dropped() {
        let shared = shared();
        let (a, pa, code) = player(&shared, 1, None);
        let (b, pb, _) = player(&shared, 1, Some(&code));
        forward(&shared, b, &relay_frame(pa, b"old"), Via::WebSocket);
        forward(&shared, b, &relay_frame(pa, b"new"), Via::WebSocket);
        let newest = Bytes::from(ws_relay(&relay_frame(pb, b"new")));
        assert_eq!(queued(&shared, a), vec![newest]);
        let busy = r#"fsp2p_relay_dropped_total{reason="receiver_busy"}"#;
        assert_eq!(metric(&shared, busy), 1.0);
        let out = r#"fsp2p_relay_forwarded_total{via="websocket"}"#;
        assert_eq!(metric(&shared, out), 1.0);
    }

    #[test]
    fn a_malformed_frame_is_counted_and_goes_nowhere() {
        let shared = shared();
        let (a, _, code) = player(&shared, 8, None);
        let (b, _, _) = player(&shared, 8, Some(&code));
        forward(&shared, a, &[], Via::WebSocket);
        assert!(queued(&shared, b).is_empty());
        let bad = r#"fsp2p_relay_dropped_total{reason="malformed"}"#;
        assert_eq!(metric(&shared, bad), 1.0);
    }
}
