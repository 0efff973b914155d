//! The tasks of one open QUIC connection (raw QUIC or WebTransport): the
//! control stream's reader and writer, datagrams in, unidirectional
//! streams in, relay frames out on streams; and how they end together.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::debug;

use crate::conn::{Conn, Outlet};
use crate::hub::{Ctrl, LatestQueue};
use crate::metrics::QuicLosses;
use crate::protocol::{ErrorCode, FrameDecoder};
use crate::session::Via;
use crate::webtransport;
use crate::wire::{Ended, Reader, Wire, Writer};

use super::PendingSlot;

/// The tasks of one open QUIC connection, until it closes.
pub(super) async fn serve_quic(
    conn: Arc<Conn>,
    outlet: Outlet,
    wire: Wire,
    first: Option<(Writer, Reader)>,
    confirm: Option<(quinn::ZeroRttAccepted, PendingSlot)>,
    end: tokio::time::Instant,
) {
    let datagrams_read = Arc::new(AtomicU64::new(0));
    let Outlet {
        control,
        relay,
        datagrams_queued,
        ..
    } = outlet;
    let mut tasks = JoinSet::new();
    tasks.spawn(control_task(conn.clone(), wire.clone(), control, first));
    let mut datagrams = tokio::spawn(datagram_task(
        conn.clone(),
        wire.clone(),
        datagrams_read.clone(),
    ));
    tasks.spawn(uni_task(conn.clone(), wire.clone()));
    tasks.spawn(stream_relay_writer(wire.clone(), relay));
    if let Some((handshake, mut pending)) = confirm {
        // A provisional connection takes a slot of its address once the
        // handshake proves the address, or is closed.
        let (conn, wire) = (conn.clone(), wire.clone());
        tasks.spawn(async move {
            let done = tokio::time::timeout_at(end, handshake).await.is_ok();
            let confirmed = match pending.take() {
                Some(a) if done && wire.close_reason().is_none() => conn.confirm(a),
                _ => Err(ErrorCode::HelloTimeout),
            };
            if let Err(code) = confirmed {
                wire.close(code as u32, code.as_str());
            }
        });
    }
    let mut ended = wire.closed().await;
    if let Wire::WebTransportServer(session) = &wire {
        if let Some(webtransport::Closed::WithoutCapsule(how)) = session.close_outcome() {
            // Ordinary (a tab closed, a client that just hangs up): counted, logged at debug.
            conn.shared()
                .metrics
                .webtransport_closed_without_capsule
                .inc();
            debug!(
                conn = conn.id(),
                how = how.as_str(),
                "WebTransport client closed without a close capsule"
            );
        }
    }
    if !ended.clean {
        // A WebTransport client's close code reaches us through the driver's
        // errors, not through the QUIC connection's.
        let told = tokio::time::timeout(Duration::from_millis(100), &mut datagrams).await;
        if let Ok(Ok(Some(e))) = told {
            ended = e;
        }
    }
    datagrams.abort();
    tasks.abort_all();
    let stats = wire.quic().stats();
    let lost = QuicLosses {
        datagrams_in: stats
            .frame_rx
            .datagram
            .saturating_sub(datagrams_read.load(Ordering::Relaxed)),
        datagrams_out: datagrams_queued
            .load(Ordering::Relaxed)
            .saturating_sub(stats.frame_tx.datagram),
        packets: stats.path.lost_packets,
    };
    conn.shared().metrics.quic_losses(&lost);
    debug!(
        conn = conn.id(),
        clean = ended.clean,
        reason = %ended.reason,
        rtt_us = stats.path.rtt.as_micros() as u64,
        lost_packets = lost.packets,
        congestion_events = stats.path.congestion_events,
        datagrams_dropped_in = lost.datagrams_in,
        datagrams_dropped_out = lost.datagrams_out,
        "QUIC connection ended"
    );
    conn.close(ended.clean);
}

/// The control stream: accept it, then read frames into the core and write
/// queued frames out, until either side ends.
async fn control_task(
    conn: Arc<Conn>,
    wire: Wire,
    mut rx: mpsc::Receiver<Ctrl>,
    first: Option<(Writer, Reader)>,
) {
    // Until the client opens its control stream, only a Close can be acted on.
    let (send, recv) = match first {
        Some(s) => s,
        None => loop {
            tokio::select! {
                s = wire.accept_bi() => match s {
                    Ok(s) => break s,
                    Err(_) => return,
                },
                item = rx.recv() => match item {
                    Some(Ctrl::Close(code, reason)) => return wire.close(code as u32, &reason),
                    Some(Ctrl::Body(_)) => continue,
                    None => return,
                },
            }
        },
    };
    // All run until the connection ends (which aborts this task): the writer
    // must outlive a reader that stopped on bad input, to deliver the error.
    tokio::join!(
        control_reader(&conn, recv),
        control_writer(&wire, send, rx),
        refuse_extra_streams(&wire),
    );
}

/// The protocol uses one bidirectional stream; any other is refused as it
/// arrives, so it holds no buffered data and costs no more than an honest one.
async fn refuse_extra_streams(wire: &Wire) {
    while wire
        .refuse_bi(ErrorCode::ProtocolViolation as u32)
        .await
        .is_ok()
    {}
}

/// Control frames (`varint(len) || body`) from the stream to the lifecycle.
async fn control_reader(conn: &Conn, mut recv: Reader) {
    let mut decoder = FrameDecoder::new(conn.shared().max_frame_bytes);
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        let n = match recv.read(&mut buf).await {
            Ok(0) | Err(_) => return, // finished or reset: wait for the connection to end
            Ok(n) => n,
        };
        decoder.extend(&buf[..n]);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    if !conn.control(&frame) {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => return conn.bad_input(e.code(), &e.to_string()),
            }
        }
    }
}

async fn control_writer(wire: &Wire, mut send: Writer, mut rx: mpsc::Receiver<Ctrl>) {
    while let Some(item) = rx.recv().await {
        match item {
            Ctrl::Body(body) => {
                // The stream's framing: varint(len) || body.
                let mut frame = BytesMut::with_capacity(body.len() + 5);
                crate::protocol::put_varint(&mut frame, body.len() as u32);
                frame.extend_from_slice(&body);
                if send.write_all(&frame).await.is_err() {
                    return;
                }
            }
            Ctrl::Close(code, reason) => {
                // Closing a QUIC connection discards unsent stream data, so
                // finish the stream and give the error message a few RTTs.
                let _ = send.shutdown().await;
                let grace =
                    (wire.rtt() * 3 + Duration::from_millis(50)).min(Duration::from_secs(1));
                tokio::time::sleep(grace).await;
                wire.close(code as u32, &reason);
                return;
            }
        }
    }
}

/// Forwards datagrams until the connection ends; returns how it ended when
/// the error says (see [`crate::wire::ended_by`]).
async fn datagram_task(conn: Arc<Conn>, wire: Wire, read: Arc<AtomicU64>) -> Option<Ended> {
    loop {
        match wire.read_datagram().await {
            Ok(d) => {
                read.fetch_add(1, Ordering::Relaxed);
                conn.relay(&d, Via::Datagram)
            }
            Err(e) => return crate::wire::ended_by(&e),
        }
    }
}

/// Every client-opened unidirectional stream is one relay frame.
async fn uni_task(conn: Arc<Conn>, wire: Wire) {
    let max = conn.shared().max_relay_frame;
    let mut readers = JoinSet::new();
    loop {
        tokio::select! {
            s = wire.accept_uni() => {
                let Ok(stream) = s else { break };
                let conn = conn.clone();
                readers.spawn(async move {
                    let read = tokio::time::timeout(
                        Duration::from_secs(5),
                        crate::wire::read_to_end_limited(stream, max),
                    ).await;
                    match read {
                        Ok(Ok(frame)) => conn.relay(&frame, Via::Stream),
                        _ => conn.shared().metrics.relay_drop(crate::session::RelayDrop::Malformed),
                    }
                });
            }
            Some(_) = readers.join_next(), if !readers.is_empty() => {}
        }
    }
}

/// Writes stream-mode relay frames, one unidirectional stream each.
async fn stream_relay_writer(wire: Wire, queue: Arc<LatestQueue>) {
    loop {
        let frame = queue.pop().await;
        let Ok(mut s) = wire.open_uni().await else {
            return;
        };
        if s.write_all(&frame).await.is_err() {
            continue;
        }
        let _ = s.shutdown().await;
    }
}
