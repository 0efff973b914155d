//! The TCP fallback: the same protocol over a WebSocket on the HTTP port (`GET /ws`).
//!
//! For players whose network blocks UDP, hosts without inbound UDP (Railway),
//! browsers whose WebTransport does not take the server, and .NET on macOS (no
//! System.Net.Quic). It is a third transport adapter around the same
//! connection lifecycle (`conn`), so a WebSocket peer and a QUIC peer share
//! sessions and relay to each other. Every WebSocket message is binary; its first byte says what follows:
//! `0x00` a control message (postcard body, no length prefix: the WebSocket
//! message is the frame), `0x01` a relay frame (`varint(peer) || payload`).
//! Relay frames to a slow WebSocket receiver go through a short drop-oldest
//! queue, so TCP's head-of-line blocking never grows into a backlog.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tracing::debug;

use crate::conn::{Conn, Outlet};
use crate::first::{access_token_param, decode_first, first_param};
use crate::hub::{Ctrl, Shared};
use crate::protocol::{parse_ws, ws_close_code, ws_control, ClientMsg, ErrorCode, WsMessage};
use crate::proxy::ProxyTrust;
use crate::session::{ConnMeta, Transport, Via};

/// `GET /ws`: upgrade and serve. `?first=` may carry the client's Hello and
/// session request ([`crate::first`]): their answers are then the first
/// messages on the socket. A malformed one is refused with 400 before the
/// upgrade. The URL can hold a join code: it is never logged.
pub(crate) async fn upgrade(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> Response {
    let first = match first_param(uri.query()).map(decode_first).transpose() {
        Ok(first) => first.unwrap_or_default(),
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let token = access_token_param(uri.query());
    let ip = client_ip(&headers, peer.ip(), shared.proxy.as_ref());
    // Room for the largest control frame or relay frame, plus the type byte.
    let max = (shared.max_frame_bytes as usize).max(shared.max_relay_frame) + 1;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| serve(shared, socket, ip, first, token))
}

/// The client's address: the socket's, or, behind a proxy, what the
/// proxy reports as [`crate::proxy`] decides (never what the client wrote).
pub(crate) fn client_ip(
    headers: &HeaderMap,
    socket_ip: IpAddr,
    proxy: Option<&ProxyTrust>,
) -> IpAddr {
    match proxy {
        None => socket_ip.to_canonical(),
        Some(p) => p.client_ip(socket_ip, |name| {
            headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap_or(""))
                .collect()
        }),
    }
}

async fn serve(
    shared: Arc<Shared>,
    socket: WebSocket,
    ip: IpAddr,
    first: Vec<ClientMsg>,
    token: Option<String>,
) {
    let (mut sink, mut stream) = socket.split();
    let meta = ConnMeta {
        transport: Transport::WebSocket,
        ip: Some(ip),
    };
    let (conn, outlet) = match Conn::open(&shared, meta, None, None) {
        Ok(opened) => opened,
        Err(code) => {
            let _ = sink.send(close_message(code, code.as_str())).await;
            return;
        }
    };
    if let Some(t) = token {
        conn.url_token(t);
    }
    // The answers to the first request are queued before anything else.
    for msg in first {
        conn.handle(msg);
    }
    let keep_alive = Duration::from_millis(shared.tuning.keep_alive_ms);
    let idle = Duration::from_millis(shared.tuning.idle_timeout_ms.max(1));
    // The writer runs as its own task: the reader must not wait on a slow
    // client's socket, and a slow consumer is cut off through its kill switch.
    let mut writer = tokio::spawn(writer(sink, outlet, keep_alive));
    let mut writer_done = false;
    let clean = tokio::select! {
        clean = reader(&conn, &mut stream, idle) => clean,
        _ = &mut writer => {
            writer_done = true;
            false
        }
    };
    // Tell the core at once, so the other peers hear of it now. With the
    // link gone the writer delivers what is queued (an error, a close),
    // answers the client's close frame, and ends.
    conn.close(clean);
    // A finished JoinHandle must not be polled again.
    if !writer_done {
        let _ = tokio::time::timeout(CLOSE_LINGER, &mut writer).await;
        writer.abort();
    }
    // Our close frame is out: read on (and drop) what the client still
    // sends until it answers with its own close (RFC 6455 §7.1.1: the
    // server closes TCP after the closing handshake). Dropped with unread
    // data in its buffer, the socket would end with a TCP reset, which a
    // client may see before it reads the close frame and its code.
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        while let Some(Ok(m)) = stream.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// How long a closing WebSocket waits for its writer to deliver the close
/// frame, and then for the client's close frame in answer.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Read messages into the connection until the socket ends, the input is
/// bad, or nothing (not even a pong) has come for `idle`. Returns true for a
/// clean close (close code 1000 from the client).
async fn reader(conn: &Conn, stream: &mut SplitStream<WebSocket>, idle: Duration) -> bool {
    loop {
        let msg = match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(msg)) => msg,
            Ok(None) => return false,
            Err(_) => {
                // Not even a pong: the client or its path is gone. Like a
                // QUIC idle timeout, its peer keeps the seat for a resume.
                debug!(
                    conn = conn.id(),
                    idle_ms = idle.as_millis() as u64,
                    "websocket idle; closing"
                );
                return false;
            }
        };
        let (code, detail) = match msg {
            Ok(Message::Binary(b)) => match parse_ws(&b) {
                Ok(WsMessage::Relay(frame)) => {
                    conn.relay(frame, Via::WebSocket);
                    continue;
                }
                Ok(WsMessage::Control(body)) => {
                    if conn.control(body) {
                        continue;
                    }
                    return false;
                }
                Err(e) => (
                    e.code(),
                    format!("{e}: a message must start with 0x00 (control) or 0x01 (relay)"),
                ),
            },
            Ok(Message::Text(_)) => (
                ErrorCode::BadMessage,
                "text messages are not part of the protocol; send binary".to_string(),
            ),
            Ok(Message::Close(frame)) => {
                return frame.is_some_and(|f| f.code == 1000);
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Err(e) => {
                use tokio_tungstenite::tungstenite::Error as WsError;
                let text = e.to_string();
                let inner = e.into_inner();
                match inner.downcast_ref::<WsError>() {
                    Some(WsError::Capacity(_)) => (
                        ErrorCode::FrameTooLarge,
                        format!("message too large: {text}"),
                    ),
                    // Broken framing (unmasked frames, bad opcodes, bad UTF-8
                    // in a close frame...): say so with a close code.
                    Some(WsError::Protocol(_) | WsError::Utf8(_)) => (
                        ErrorCode::BadMessage,
                        format!("WebSocket protocol error: {text}"),
                    ),
                    // The connection itself failed: nobody to tell.
                    _ => return false,
                }
            }
        };
        conn.bad_input(code, &detail);
        return false;
    }
}

fn close_message(code: ErrorCode, reason: &str) -> Message {
    let mut reason = reason.to_string();
    reason.truncate(120); // close reasons are limited to 123 bytes
    Message::Close(Some(CloseFrame {
        code: ws_close_code(code),
        reason: reason.into(),
    }))
}

/// The WebSocket framing of what the lifecycle sends: a type byte, then the
/// control body or relay frame; pings while the connection is quiet.
async fn writer(mut sink: SplitSink<WebSocket, Message>, outlet: Outlet, keep_alive: Duration) {
    let Outlet {
        mut control,
        relay,
        kill,
        ..
    } = outlet;
    // Pings keep proxies and NATs from dropping a quiet connection, and make
    // a dead one show up as silence in the reader.
    let mut ping = tokio::time::interval(if keep_alive.is_zero() {
        Duration::from_secs(365 * 24 * 3600)
    } else {
        keep_alive
    });
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        let msg = tokio::select! {
            biased;
            _ = kill.notified() => return,
            c = control.recv() => match c {
                Some(Ctrl::Body(body)) => Message::Binary(ws_control(&body).into()),
                Some(Ctrl::Close(code, reason)) => {
                    tokio::select! {
                        biased;
                        _ = kill.notified() => {}
                        _ = sink.send(close_message(code, &reason)) => {}
                    }
                    return;
                }
                None => {
                    // Flushes tungstenite's reply to a client's close frame,
                    // or sends our own close.
                    let _ = sink.close().await;
                    return;
                }
            },
            // Already framed for WebSocket by the relay, once per frame.
            frame = relay.pop() => Message::Binary(frame),
            _ = ping.tick() => Message::Ping(Bytes::new()),
        };
        // The kill switch also ends a write the client never lets finish.
        tokio::select! {
            biased;
            _ = kill.notified() => return,
            sent = sink.send(msg) => if sent.is_err() {
                return;
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_headers_only_when_trusted_and_read_from_the_right() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let socket = ip("10.0.0.1");
        let mut h = HeaderMap::new();
        // The client wrote the first entry; the proxy appended the second.
        h.insert("x-forwarded-for", "6.6.6.6, 203.0.113.9".parse().unwrap());
        h.insert("x-real-ip", "7.7.7.7".parse().unwrap());
        assert_eq!(client_ip(&h, socket, None), socket);
        let xff = ProxyTrust::default();
        assert_eq!(client_ip(&h, socket, Some(&xff)), ip("203.0.113.9"));
        // The header sent twice (the client's copy first): read as one list.
        let mut twice = HeaderMap::new();
        twice.append("x-forwarded-for", "6.6.6.6".parse().unwrap());
        twice.append("x-forwarded-for", "203.0.113.9".parse().unwrap());
        assert_eq!(client_ip(&twice, socket, Some(&xff)), ip("203.0.113.9"));
        // A platform that overwrites X-Real-IP.
        let real = ProxyTrust {
            header: "x-real-ip".into(),
            ..ProxyTrust::default()
        };
        assert_eq!(client_ip(&h, socket, Some(&real)), ip("7.7.7.7"));
        // IPv4-mapped IPv6 counts as the IPv4 address.
        let mapped = ip("::ffff:192.0.2.1");
        assert_eq!(client_ip(&HeaderMap::new(), mapped, None), ip("192.0.2.1"));
    }
}
