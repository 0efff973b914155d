//! The client's side of a raw QUIC or WebTransport connection: the control
//! stream (with Hello in 0-RTT when it can), and one task that turns the
//! control stream, datagrams and unidirectional streams into [`Event`]s.
//!
//! [`Wire`] hides the difference between the two kinds of connection, so
//! this is written once for both.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::reconnect::{Sink, Watch};
use super::{Ended, Error, Event, Result, Tasks};
use crate::protocol::{self, ClientMsg, FrameDecoder, ServerMsg};
use crate::wire::{Reader, Wire, Writer};
use crate::Via;

/// Why a reader stopped after a `Redirect`: the connection is closed (with
/// 999, so a seat is kept for the resume at the node it leads to).
const REDIRECTED: &str = "redirected by the server";

/// Largest relay frame the client reads from a unidirectional stream.
const MAX_STREAM_FRAME: usize = 64 * 1024;

/// What [`start`] leaves running.
pub(super) struct Started {
    /// The control stream's sending half (shared with the liveness watch).
    pub(super) control: Control,
    /// The reader task.
    pub(super) tasks: Tasks,
    /// Hello went out as 0-RTT data and the server accepted it.
    pub(super) zero_rtt: bool,
}

/// Open the control stream, send `hello` (Hello and perhaps a first request)
/// in one write, one flight, and start reading.
pub(super) async fn start(
    wire: &Wire,
    zero_rtt: Option<quinn::ZeroRttAccepted>,
    hello: &[ClientMsg],
    sink: Sink,
) -> Result<Started> {
    let out: Vec<u8> = hello
        .iter()
        .flat_map(|m| protocol::encode_client_frame(m, crate::CLIENT_PROTOCOL_VERSION))
        .collect();
    let (mut control, mut recv) = open_and_send(wire, &out).await?;
    let mut zero_rtt_used = false;
    if let Some(accepted) = zero_rtt {
        // Resolves when the handshake completes, when the Welcome (sent in
        // the server's 0.5-RTT flight) arrives anyway.
        if accepted.await {
            zero_rtt_used = true;
        } else if lost_with_0rtt(control.write(&[]).await) {
            // The server forgot our session: the 0-RTT stream is gone, say it
            // all again in 1-RTT. (A stream opened after the handshake had
            // already completed went out in 1-RTT and stands: sending again
            // would open a second control stream, which the server refuses.)
            (control, recv) = open_and_send(wire, &out).await?;
        }
    }
    Ok(reading(wire, control, recv, sink, zero_rtt_used))
}

/// The control stream's sending half, shared by the client and the
/// liveness watch's `Ping`s; one frame is written under the lock.
pub(super) type Control = Arc<tokio::sync::Mutex<Writer>>;

/// Write one control message on `control`.
pub(super) async fn send_control(wire: &Wire, control: &Control, msg: &ClientMsg) -> Result<()> {
    control
        .lock()
        .await
        .write_all(&protocol::encode_client_frame(
            msg,
            crate::CLIENT_PROTOCOL_VERSION,
        ))
        .await
        .map_err(|e| write_failed(wire, "writing to the control stream", e))
}

/// Start the reader task over `recv`; `control` is what the client writes on.
fn reading(wire: &Wire, control: Writer, recv: Reader, sink: Sink, zero_rtt: bool) -> Started {
    let control = Arc::new(tokio::sync::Mutex::new(control));
    let reader = tokio::spawn(read_everything(wire.clone(), recv, sink, control.clone()));
    Started {
        control,
        tasks: Tasks {
            reader,
            others: Vec::new(),
        },
        zero_rtt,
    }
}

/// Take the control stream the server opened (the first request went in
/// the CONNECT URL, so its answers are already on their way) and start reading.
pub(super) async fn accept(wire: &Wire, sink: Sink) -> Result<Started> {
    let (control, recv) = wire.accept_bi().await?;
    Ok(reading(wire, control, recv, sink, false))
}

/// The error for a failed write on `wire`: how the connection ended, if it
/// has, else the write error itself.
pub(super) fn write_failed(wire: &Wire, what: &'static str, error: std::io::Error) -> Error {
    match wire.close_reason() {
        Some(ended) => Error::Closed(ended),
        None => Error::Io { what, error },
    }
}

/// Whether a write failed because the stream was sent as 0-RTT data that the
/// server rejected. quinn says so only inside the `io::Error` its streams
/// return through the `AsyncWrite` interface.
fn lost_with_0rtt(r: std::io::Result<usize>) -> bool {
    r.err().is_some_and(|e| {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<quinn::WriteError>())
            .is_some_and(|w| matches!(w, quinn::WriteError::ZeroRttRejected))
    })
}

/// Open the control stream and write `bytes` on it.
async fn open_and_send(wire: &Wire, bytes: &[u8]) -> Result<(Writer, Reader)> {
    let (mut control, recv) = wire.open_bi().await?;
    control
        .write_all(bytes)
        .await
        .map_err(|e| write_failed(wire, "sending Hello", e))?;
    Ok((control, recv))
}

/// Read the control stream, datagrams and unidirectional streams into
/// the sink's events until one of them ends; then report how the
/// connection ended to the sink's end.
async fn read_everything(wire: Wire, control: Reader, sink: Sink, writer: Control) {
    let tx = sink.events.clone();
    let watch = sink.watch();
    let quality = sink.quality.clone();
    // Set when a move starts on this connection (PROTOCOL.md §12 rule 10):
    // from then on it carries relay frames only.
    let old = Arc::new(AtomicBool::new(false));
    let sink = Arc::new(sink);
    let datagrams = async {
        while let Ok(d) = wire.read_datagram().await {
            watch.heard();
            if let Ok((from, payload)) = protocol::parse_relay(&d) {
                if !sink.relay_is_new(old.load(Ordering::Relaxed), from, payload)
                    || quality.incoming(from, payload)
                {
                    continue;
                }
                let payload = d.slice_ref(payload);
                let _ = tx.try_send(Event::Relay {
                    from,
                    payload,
                    via: Via::Datagram,
                });
            }
        }
    };
    let streams = async {
        while let Ok(s) = wire.accept_uni().await {
            watch.heard();
            let tx = tx.clone();
            let quality = quality.clone();
            let (sink, old) = (sink.clone(), old.clone());
            tokio::spawn(async move {
                let Ok(frame) = crate::wire::read_to_end_limited(s, MAX_STREAM_FRAME).await else {
                    return;
                };
                if let Ok((from, payload)) = protocol::parse_relay(&frame) {
                    if !sink.relay_is_new(old.load(Ordering::Relaxed), from, payload)
                        || quality.incoming(from, payload)
                    {
                        return;
                    }
                    let _ = tx.try_send(Event::Relay {
                        from,
                        payload: Bytes::copy_from_slice(payload),
                        via: Via::Stream,
                    });
                }
            });
        }
    };
    let ping = |m: ClientMsg| {
        let (wire, writer, old) = (&wire, &writer, &old);
        async move {
            // The old connection of a move says nothing more.
            if old.load(Ordering::Relaxed) {
                return;
            }
            // A failed write ends the reader anyway.
            let _ = send_control(wire, writer, &m).await;
        }
    };
    let lost = async {
        let lost = watch
            .run(ping, || Some(wire.quic().stats().udp_rx.datagrams))
            .await;
        if old.load(Ordering::Relaxed) {
            // No liveness verdict on the old connection of a move: the old
            // node closes it, or the supervisor does.
            return std::future::pending().await;
        }
        lost
    };
    let why = tokio::select! {
        why = read_control(control, &sink, &watch, &old) => why,
        _ = datagrams => "datagram reader ended".to_string(),
        _ = streams => "stream acceptor ended".to_string(),
        _ = quality.run(ping) => "quality loop ended".to_string(),
        lost = lost => {
            // Dead or cut off: let go of it (999: a seat is kept, should the
            // server still be there) and resume elsewhere.
            tracing::info!("{lost}");
            wire.close(999, "server lost");
            sink.ended(Ended::lost(lost));
            return;
        }
    };
    if why == REDIRECTED {
        wire.close(999, "redirected");
    }
    // Report how the connection itself ended, if it did.
    let end = tokio::time::timeout(Duration::from_millis(200), wire.closed())
        .await
        .unwrap_or_else(|_| Ended::lost(why));
    sink.ended(end);
}

/// Decode control frames into the sink until the stream or the input ends;
/// returns why it stopped.
async fn read_control(mut control: Reader, sink: &Sink, watch: &Watch, old: &AtomicBool) -> String {
    let mut dec = FrameDecoder::new(1 << 20);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match control.read(&mut buf).await {
            Ok(0) => return "control stream finished by server".to_string(),
            Ok(n) => n,
            Err(e) => return format!("control stream: {e}"),
        };
        dec.extend(&buf[..n]);
        loop {
            match dec.next_frame() {
                Ok(Some(f)) => match protocol::decode::<ServerMsg>(&f) {
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
                            return "client dropped".into();
                        }
                        if redirect {
                            return REDIRECTED.into();
                        }
                    }
                    Err(e) => return format!("undecodable message from server: {e}"),
                },
                Ok(None) => break,
                Err(e) => return format!("bad frame from server: {e}"),
            }
        }
    }
}
