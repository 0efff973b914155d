//! Where a relayed frame is forwarded: the per-datagram hot path.
//!
//! A client sends `varint(dest) || payload` as a datagram (or one
//! unidirectional stream); [`forward`] asks the session core who may receive
//! it, rewrites the header to name the sender, and hands one copy to each
//! receiver in the way that receiver asked for. It never waits: datagrams go
//! into quinn's send buffer (oldest dropped when full), stream-mode frames into
//! a short per-receiver queue (dropped when full). Stale flight data is worth
//! less than fresh, so nothing here queues without bound.

use crate::protocol::{parse_relay, relay_frame, RelayMode};
use crate::server::Shared;
use crate::session::{Now, RelayDrop};
use crate::wire::DatagramError;

/// Forward one relay frame received from connection `conn`.
/// `via_stream` says whether it arrived on a unidirectional stream.
pub fn forward(shared: &Shared, conn: crate::session::ConnId, frame: &[u8], via_stream: bool) {
    let metrics = &shared.metrics;
    metrics.relay_in(via_stream);
    let Ok((dest, payload)) = parse_relay(frame) else {
        metrics.relay_drop(RelayDrop::Malformed);
        return;
    };
    let mut guard = shared.lock();
    let st = &mut *guard;
    let from = match st
        .core
        .route(Now::system(), conn, dest, payload.len(), &mut st.targets)
    {
        Ok(from) => from,
        Err(why) => {
            metrics.relay_drop(why);
            return;
        }
    };
    // One buffer, shared by every receiver (Bytes clones are reference counts).
    let out = relay_frame(from, payload);
    for target in &st.targets {
        let Some(link) = st.links.get(&target.conn) else {
            continue;
        };
        let delivered = match target.mode {
            RelayMode::Datagram => match link.wire.send_datagram(out.clone()) {
                Ok(()) => Ok(false),
                Err(DatagramError::TooLarge) => Err(RelayDrop::ReceiverTooSmall),
                Err(_) => Err(RelayDrop::ReceiverBusy),
            },
            RelayMode::Stream => link
                .stream_relay
                .try_send(out.clone())
                .map(|()| true)
                .map_err(|_| RelayDrop::ReceiverBusy),
        };
        match delivered {
            Ok(stream) => metrics.relay_out(stream, payload.len()),
            Err(why) => metrics.relay_drop(why),
        }
    }
}
