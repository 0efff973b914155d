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
