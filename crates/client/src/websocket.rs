//! The client's side of the WebSocket fallback: one task writes queued
//! messages, one reads messages and turns them into [`Event`]s.
//!
//! The framing (a type byte, then a control body or a relay frame) is
//! [`crate::protocol`]'s, the same the server uses. Writes go through a
//! queue to the writer task so that a [`RelaySender`](super::RelaySender)
//! can be cloned into a game loop; relay frames are dropped when that queue
//! is full, since stale flight data is not worth waiting for.

use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::reconnect::Sink;
use super::{Ended, Error, Event, Result, Tasks};
use crate::protocol::{self, ClientMsg, ServerMsg, WsMessage};
use crate::Via;

/// A byte stream a WebSocket can run over: plain TCP or TLS over TCP.
pub(super) trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// An upgraded WebSocket connection.
pub(super) type WsStream = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

/// The queue to the writer task.
#[derive(Clone)]
pub(super) struct Outbox(mpsc::Sender<Message>);

/// The writer task is gone: the reader reports why in an [`Event::Closed`].
fn writer_gone() -> Error {
    Error::Closed(Ended::lost("WebSocket closed"))
}

impl Outbox {
    /// Send one control message, waiting for room in the queue.
    pub(super) async fn control(&self, msg: &ClientMsg) -> Result<()> {
        let body = protocol::encode_client(msg, crate::CLIENT_PROTOCOL_VERSION);
        self.binary(protocol::ws_control(&body)).await
    }

    /// Send `bytes` as one binary message, as they are (tests of bad input).
    pub(super) async fn binary(&self, bytes: Vec<u8>) -> Result<()> {
        self.0
            .send(Message::Binary(bytes.into()))
            .await
            .map_err(|_| writer_gone())
    }

    /// Send a relay frame, or drop it if the queue is full.
    pub(super) fn relay(&self, frame: &[u8]) -> Result<()> {
        match self
            .0
            .try_send(Message::Binary(protocol::ws_relay(frame).into()))
        {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(writer_gone()),
        }
    }

    /// Queue a close with `code` (a seat is kept unless it is 1000).
    pub(super) fn close_with(&self, code: u16, reason: &'static str) {
        let bye = Message::Close(Some(CloseFrame {
            code: code.into(),
            reason: reason.into(),
        }));
        let _ = self.0.try_send(bye);
    }

    /// Queue a normal close (1000); false if the writer is already gone.
    pub(super) async fn close(&self) -> bool {
        let bye = Message::Close(Some(CloseFrame {
            code: 1000.into(),
            reason: "bye".into(),
        }));
        self.0.send(bye).await.is_ok()
    }
}

/// Start the writer and reader on `ws`, and send `hello` (Hello and perhaps
/// a first request) before anything else.
pub(super) async fn start(
    ws: WsStream,
    hello: &[ClientMsg],
    sink: Sink,
) -> Result<(Outbox, Tasks)> {
    let (ws_sink, stream) = ws.split();
    let (out, out_rx) = mpsc::channel(1024);
    let writer = tokio::spawn(writer(ws_sink, out_rx));
    let out = Outbox(out);
    let reader = tokio::spawn(reader(stream, sink, out.clone()));
    let tasks = Tasks {
        reader,
        others: vec![writer.abort_handle()],
    };
    for m in hello {
        out.control(m).await?;
    }
    Ok((out, tasks))
}

async fn writer(
    mut sink: futures_util::stream::SplitSink<WsStream, Message>,
    mut rx: mpsc::Receiver<Message>,
) {
    while let Some(m) = rx.recv().await {
        let close = matches!(m, Message::Close(_));
        if sink.send(m).await.is_err() || close {
            break;
        }
    }
}

async fn reader(mut stream: futures_util::stream::SplitStream<WsStream>, sink: Sink, out: Outbox) {
    let watch = sink.watch();
    // Set when a move starts on this connection (PROTOCOL.md §12 rule 10):
    // from then on it carries relay frames only.
    let old = AtomicBool::new(false);
    let ping = |m: ClientMsg| {
        let (out, old) = (&out, &old);
        async move {
            // The old connection of a move says nothing more.
            if old.load(Ordering::Relaxed) {
                return;
            }
            // A failed write ends the reader anyway.
            let _ = out.control(&m).await;
        }
    };
    // TCP hides its packets: only what the socket delivers counts.
    let run = async {
        let lost = watch.run(ping, || None).await;
        if old.load(Ordering::Relaxed) {
            // No liveness verdict on the old connection of a move: the old
            // node closes it, or the supervisor does.
            return std::future::pending().await;
        }
        lost
    };
    tokio::pin!(run);
    let quality = sink.quality.clone();
    let echoes = quality.run(ping);
    tokio::pin!(echoes);
    let ended = loop {
        let next = tokio::select! {
            next = stream.next() => next,
            lost = &mut run => {
                // Dead or cut off: the socket is dropped (a seat is kept).
                tracing::info!("{lost}");
                break Ended::lost(lost);
            }
            _ = &mut echoes => break Ended::lost("quality loop ended"),
        };
        if matches!(next, Some(Ok(_))) {
            // Anything at all, a WebSocket ping included.
            watch.heard();
        }
        let bytes = match next {
            Some(Ok(Message::Binary(b))) => b,
            Some(Ok(Message::Close(Some(f)))) => {
                let code = u16::from(f.code);
                let reason = format!("closed by server: {code} {}", f.reason);
                break match protocol::close_code_from_ws(code) {
                    Some(c) => Ended::by_peer(c.into(), reason),
                    None => Ended::lost(reason),
                };
            }
            Some(Ok(Message::Close(None))) => break Ended::lost("closed by server"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => break Ended::lost(format!("WebSocket: {e}")),
            None => break Ended::lost("WebSocket ended"),
        };
        match protocol::parse_ws(&bytes) {
            Ok(WsMessage::Control(body)) => match protocol::decode::<ServerMsg>(body) {
                Ok(m) if watch.message(&m) => {}
                // What the old connection of a move still says is ignored.
                Ok(_) if old.load(Ordering::Relaxed) => {}
                Ok(ServerMsg::Redirect(r)) if sink.move_starts(&r) => {
                    tracing::info!(node = %r.node.name, "the session moves; opening a connection there");
                    old.store(true, Ordering::Relaxed);
                }
                Ok(m) => {
                    let redirect = matches!(m, ServerMsg::Redirect(_));
                    if sink.control(m).await.is_err() {
                        return;
                    }
                    // Followed elsewhere: this socket is done (dropped
                    // without a close, so a seat is kept for the resume).
                    if redirect {
                        break Ended::lost("redirected by the server");
                    }
                }
                Err(e) => break Ended::lost(format!("undecodable message from server: {e}")),
            },
            Ok(WsMessage::Relay(frame)) => {
                if let Ok((from, payload)) = protocol::parse_relay(frame) {
                    if !sink.relay_is_new(old.load(Ordering::Relaxed), from, payload)
                        || quality.incoming(from, payload)
                    {
                        continue;
                    }
                    let _ = sink.events.try_send(Event::Relay {
                        from,
                        payload: bytes.slice_ref(payload),
                        via: Via::WebSocket,
                    });
                }
            }
            Err(e) => break Ended::lost(format!("bad message from server: {e}")),
        }
    };
    sink.ended(ended);
}
