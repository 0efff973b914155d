//! Where a relayed frame is forwarded: the per-datagram hot path.
//!
//! A client sends `varint(dest) || payload` as a datagram (or one
//! unidirectional stream); [`forward`] asks the session core who may receive
//! it, rewrites the header to name the sender, and hands one copy to each
//! receiver in the way that receiver asked for. It never waits: datagrams go
//! into quinn's send buffer (oldest dropped when full), stream-mode frames into
//! a short per-receiver queue (dropped when full). Stale flight data is worth
//! less than fresh, so nothing here queues without bound.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::protocol::{parse_relay, relay_frame, RelayMode};
use crate::server::{Link, Shared};
use crate::session::RelayDrop;
use crate::wire::DatagramError;

/// How a relay frame travels between the server and one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A QUIC or WebTransport datagram.
    Datagram,
    /// One QUIC unidirectional stream per frame.
    Stream,
    /// A binary WebSocket message (the TCP fallback).
    WebSocket,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Datagram => "datagram",
            Via::Stream => "stream",
            Via::WebSocket => "websocket",
        }
    }
}

/// Forward one relay frame received from connection `conn`.
pub fn forward(shared: &Shared, conn: crate::session::ConnId, frame: &[u8], via: Via) {
    let metrics = &shared.metrics;
    metrics.relay_in(via);
    let Ok((dest, payload)) = parse_relay(frame) else {
        metrics.relay_drop(RelayDrop::Malformed);
        return;
    };
    let mut guard = shared.lock();
    let st = &mut *guard;
    let from = match st
        .core
        .route(Instant::now(), conn, dest, payload.len(), &mut st.targets)
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
        match deliver(link, target.mode, &out) {
            Ok(via) => metrics.relay_out(via, payload.len()),
            Err(why) => metrics.relay_drop(why),
        }
    }
}

/// Hand one frame to one receiver without waiting.
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

/// A bounded queue of relay frames for one receiver that cannot take
/// datagrams. When full, pushing drops the oldest frame: for flight state the
/// newest frame is the one worth delivering.
pub struct LatestQueue {
    frames: Mutex<VecDeque<Bytes>>,
    capacity: usize,
    ready: Notify,
}

impl LatestQueue {
    pub fn new(capacity: usize) -> Self {
        LatestQueue {
            frames: Mutex::new(VecDeque::with_capacity(capacity.max(1))),
            capacity: capacity.max(1),
            ready: Notify::new(),
        }
    }

    /// Queue a frame; returns true if the oldest frame was dropped to make room.
    pub fn push(&self, frame: Bytes) -> bool {
        let dropped = {
            let mut q = self.frames.lock().unwrap_or_else(|e| e.into_inner());
            let dropped = q.len() >= self.capacity && q.pop_front().is_some();
            q.push_back(frame);
            dropped
        };
        self.ready.notify_one();
        dropped
    }

    /// The oldest queued frame, waiting for one if the queue is empty.
    pub async fn pop(&self) -> Bytes {
        loop {
            let next = self
                .frames
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            if let Some(f) = next {
                return f;
            }
            self.ready.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn latest_queue_keeps_the_newest_frames() {
        let q = LatestQueue::new(3);
        let dropped: Vec<bool> = (0u8..5).map(|i| q.push(Bytes::from(vec![i]))).collect();
        assert_eq!(dropped, vec![false, false, false, true, true]);
        for want in 2u8..5 {
            assert_eq!(q.pop().await[0], want);
        }
        // An empty queue waits; a later push wakes it.
        let q = std::sync::Arc::new(LatestQueue::new(2));
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.pop().await }
        });
        tokio::task::yield_now().await;
        q.push(Bytes::from_static(b"x"));
        assert_eq!(&waiter.await.unwrap()[..], b"x");
    }
}
