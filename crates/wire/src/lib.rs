#![warn(missing_docs, unreachable_pub)]
//! One QUIC connection, raw (project ALPN) or WebTransport (`h3`), behind one interface.
//!
//! The server and the Rust client both speak the protocol over either kind of
//! connection; this enum is the only place that knows the difference. Streams
//! are handed out as boxed tokio `AsyncRead`/`AsyncWrite`, which both quinn
//! and web-transport-quinn implement. A WebTransport session is a quinn
//! connection with an HTTP/3 layer on top (web-transport-quinn on the
//! client's side, [`crate::webtransport`] on the server's), so the same quinn
//! statistics, migration and 0.5-RTT sending apply to both.

pub mod webtransport;

use fsp2p_protocol as protocol;

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

/// The receiving half of a stream, whichever kind of connection it is on.
pub type Reader = Pin<Box<dyn AsyncRead + Send + Sync>>;
/// The sending half of a stream, whichever kind of connection it is on.
pub type Writer = Pin<Box<dyn AsyncWrite + Send + Sync>>;

/// One QUIC connection: raw (ALPN `fsp2p/1`) or a WebTransport session.
#[derive(Clone, Debug)]
pub enum Wire {
    /// Raw QUIC, as native clients speak it.
    Quic(quinn::Connection),
    /// A WebTransport session over HTTP/3, as browsers speak it (the Rust
    /// client's side, web-transport-quinn).
    WebTransport(Box<web_transport_quinn::Session>),
    /// The server's side of a WebTransport session ([`crate::webtransport`]).
    WebTransportServer(crate::webtransport::Session),
}

/// How a connection ended, on any transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// The peer closed it on purpose: application code 0 on QUIC, close code
    /// 1000 on WebSocket.
    pub clean: bool,
    /// The protocol's close code ([`crate::protocol::ErrorCode`] as a number,
    /// 0 for a clean close) when the peer closed the connection with one;
    /// `None` when it was lost, timed out or closed here.
    pub code: Option<u64>,
    /// What happened, for people: `closed by peer: server_full (code 6)`,
    /// `timed out`, ...
    pub reason: String,
}

/// The reason of a connection that ended by the idle timeout.
const SILENT: &str = "timed out: nothing heard from the peer for the idle timeout";

impl Ended {
    /// The peer closed the connection with application close code `code`.
    pub fn by_peer(code: u64, reason: String) -> Ended {
        Ended {
            clean: code == 0,
            code: Some(code),
            reason,
        }
    }

    /// The connection ended without a close code from the peer.
    pub fn lost(reason: impl Into<String>) -> Ended {
        Ended {
            clean: false,
            code: None,
            reason: reason.into(),
        }
    }

    /// The peer went silent: nothing heard from it for the idle timeout (a
    /// crashed server, or a path that stopped carrying packets).
    pub fn silent(&self) -> bool {
        self.code.is_none() && self.reason == SILENT
    }

    fn from_quinn(e: quinn::ConnectionError) -> Ended {
        match e {
            quinn::ConnectionError::ApplicationClosed(a) => {
                Ended::by_peer(a.error_code.into_inner(), format!("closed by peer: {a}"))
            }
            quinn::ConnectionError::TimedOut => Ended::lost(SILENT),
            e => Ended::lost(e.to_string()),
        }
    }

    /// How a server-side WebTransport session ended.
    fn from_h3(closed: crate::webtransport::Closed) -> Ended {
        use crate::webtransport::{error_from_http3, Closed, NoCapsule};
        match closed {
            Closed::Capsule(code, reason) => Ended::by_peer(
                u64::from(code),
                format!("closed by peer: {reason} (code {code})"),
            ),
            // The draft: the same as a capsule with code 0.
            Closed::WithoutCapsule(NoCapsule::Finished) => Ended::by_peer(
                0,
                "closed by peer: CONNECT stream finished without a close capsule".into(),
            ),
            Closed::WithoutCapsule(NoCapsule::Reset) => Ended::lost("CONNECT stream reset by peer"),
            Closed::WithoutCapsule(NoCapsule::ConnectionClosed) => {
                Ended::lost("connection closed by peer without a close capsule")
            }
            Closed::Local(code, reason) => {
                Ended::lost(format!("closed here: {reason} (code {code})"))
            }
            Closed::Connection(quinn::ConnectionError::ApplicationClosed(a)) => {
                match error_from_http3(a.error_code.into_inner()) {
                    Some(code) => Ended::by_peer(
                        u64::from(code),
                        format!(
                            "closed by peer: {} (code {code})",
                            String::from_utf8_lossy(&a.reason)
                        ),
                    ),
                    None => Ended::lost(format!("closed by peer: {a}")),
                }
            }
            Closed::Connection(e) => Ended::from_quinn(e),
        }
    }

    fn from_wt(e: web_transport_quinn::SessionError) -> Ended {
        use web_transport_quinn::{SessionError, WebTransportError};
        match e {
            SessionError::WebTransportError(WebTransportError::Closed(code, reason)) => {
                Ended::by_peer(
                    u64::from(code),
                    format!("closed by peer: {reason} (code {code})"),
                )
            }
            SessionError::ConnectionError(e) => Ended::from_quinn(e),
            e => Ended::lost(e.to_string()),
        }
    }
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Why an operation on a [`Wire`] (or one of its streams) failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The connection is gone; [`Ended`] says how.
    #[error("connection lost: {0}")]
    Lost(Ended),
    /// The peer refused a stream this side tried to open (WebTransport).
    #[error("the peer refused to open a stream")]
    StreamRefused,
    /// Reading a stream failed (it was reset, or the connection went away).
    #[error("reading a stream: {0}")]
    Read(std::io::Error),
    /// A stream carried more than the `max` bytes it may.
    #[error("stream longer than {max} bytes")]
    TooLong {
        /// The limit the stream went over.
        max: usize,
    },
}

impl WireError {
    /// How the peer closed the connection, if this error says it did with
    /// an application close code.
    pub fn ended_by_peer(&self) -> Option<&Ended> {
        match self {
            WireError::Lost(e) if e.code.is_some() => Some(e),
            _ => None,
        }
    }
}

fn lost_quinn(e: quinn::ConnectionError) -> WireError {
    WireError::Lost(Ended::from_quinn(e))
}

fn lost_wt(e: web_transport_quinn::SessionError) -> WireError {
    WireError::Lost(Ended::from_wt(e))
}

fn lost_h3(e: crate::webtransport::Closed) -> WireError {
    WireError::Lost(Ended::from_h3(e))
}

/// Why a datagram was not queued.
#[derive(Debug, thiserror::Error)]
pub enum DatagramError {
    /// Larger than the path's current maximum datagram size.
    #[error("datagram larger than the path allows")]
    TooLarge,
    /// The peer did not negotiate datagrams.
    #[error("peer does not accept datagrams")]
    Unsupported,
    /// The connection has ended.
    #[error("connection lost")]
    Lost,
}

impl Wire {
    /// Which transport this is, for metrics and logs.
    pub fn kind(&self) -> crate::protocol::Transport {
        match self {
            Wire::Quic(_) => crate::protocol::Transport::Quic,
            Wire::WebTransport(_) | Wire::WebTransportServer(_) => {
                crate::protocol::Transport::WebTransport
            }
        }
    }

    /// The peer's address.
    pub fn remote_address(&self) -> std::net::SocketAddr {
        match self {
            Wire::Quic(c) => c.remote_address(),
            Wire::WebTransport(c) => c.remote_address(),
            Wire::WebTransportServer(c) => c.conn().remote_address(),
        }
    }

    /// The QUIC connection underneath (for its statistics).
    pub fn quic(&self) -> &quinn::Connection {
        match self {
            Wire::Quic(c) => c,
            Wire::WebTransport(c) => c,
            Wire::WebTransportServer(c) => c.conn(),
        }
    }

    /// The current round-trip time estimate.
    pub fn rtt(&self) -> Duration {
        match self {
            Wire::Quic(c) => c.rtt(),
            Wire::WebTransport(c) => c.rtt(),
            Wire::WebTransportServer(c) => c.conn().rtt(),
        }
    }

    /// The largest datagram the path takes now; `None` without datagram support.
    pub fn max_datagram_size(&self) -> Option<usize> {
        match self {
            Wire::Quic(c) => c.max_datagram_size(),
            Wire::WebTransport(c) => Some(c.max_datagram_size()).filter(|n| *n > 0),
            Wire::WebTransportServer(c) => c.max_datagram_size().filter(|n| *n > 0),
        }
    }

    /// The next bidirectional stream the peer opens.
    pub async fn accept_bi(&self) -> Result<(Writer, Reader), WireError> {
        Ok(match self {
            Wire::Quic(c) => {
                let (s, r) = c.accept_bi().await.map_err(lost_quinn)?;
                (Box::pin(s), Box::pin(r))
            }
            Wire::WebTransport(c) => {
                let (s, r) = c.accept_bi().await.map_err(lost_wt)?;
                (Box::pin(s), Box::pin(r))
            }
            Wire::WebTransportServer(c) => {
                let (s, r) = c.accept_bi().await.map_err(lost_h3)?;
                (Box::pin(s), Box::pin(r))
            }
        })
    }

    /// Accept the next bidirectional stream the client opens and refuse it
    /// at once (STOP_SENDING and RESET_STREAM with `code`), so it holds no
    /// buffered data. Errors when the connection has ended.
    pub async fn refuse_bi(&self, code: u32) -> Result<(), WireError> {
        match self {
            Wire::Quic(c) => {
                let (mut s, mut r) = c.accept_bi().await.map_err(lost_quinn)?;
                let _ = r.stop(code.into());
                let _ = s.reset(code.into());
            }
            Wire::WebTransport(c) => {
                let (mut s, mut r) = c.accept_bi().await.map_err(lost_wt)?;
                let _ = r.stop(code);
                let _ = s.reset(code);
            }
            Wire::WebTransportServer(c) => {
                let (mut s, mut r) = c.accept_bi().await.map_err(lost_h3)?;
                let code = crate::webtransport::error_to_http3(code);
                let code = quinn::VarInt::from_u64(code).unwrap_or_default();
                let _ = r.stop(code);
                let _ = s.reset(code);
            }
        }
        Ok(())
    }

    /// Open a bidirectional stream.
    pub async fn open_bi(&self) -> Result<(Writer, Reader), WireError> {
        Ok(match self {
            Wire::Quic(c) => {
                let (s, r) = c.open_bi().await.map_err(lost_quinn)?;
                (Box::pin(s), Box::pin(r))
            }
            Wire::WebTransport(c) => {
                let (s, r) = c.open_bi().await.map_err(lost_wt)?;
                (Box::pin(s), Box::pin(r))
            }
            Wire::WebTransportServer(c) => {
                let (s, r) = c.open_bi().await.map_err(lost_h3)?;
                (Box::pin(s), Box::pin(r))
            }
        })
    }

    /// The next unidirectional stream the peer opens.
    pub async fn accept_uni(&self) -> Result<Reader, WireError> {
        Ok(match self {
            Wire::Quic(c) => Box::pin(c.accept_uni().await.map_err(lost_quinn)?),
            Wire::WebTransport(c) => Box::pin(c.accept_uni().await.map_err(lost_wt)?),
            Wire::WebTransportServer(c) => Box::pin(c.accept_uni().await.map_err(lost_h3)?),
        })
    }

    /// Open a unidirectional stream.
    pub async fn open_uni(&self) -> Result<Writer, WireError> {
        Ok(match self {
            Wire::Quic(c) => Box::pin(c.open_uni().await.map_err(lost_quinn)?),
            Wire::WebTransport(c) => Box::pin(c.open_uni().await.map_err(lost_wt)?),
            Wire::WebTransportServer(c) => Box::pin(c.open_uni().await.map_err(lost_h3)?),
        })
    }

    /// The next datagram the peer sends.
    pub async fn read_datagram(&self) -> Result<Bytes, WireError> {
        Ok(match self {
            Wire::Quic(c) => c.read_datagram().await.map_err(lost_quinn)?,
            Wire::WebTransport(c) => c.read_datagram().await.map_err(lost_wt)?,
            Wire::WebTransportServer(c) => c.read_datagram().await.map_err(lost_h3)?,
        })
    }

    /// Queue a datagram; never waits. quinn drops the oldest queued datagrams
    /// when its send buffer is full, which is what real-time state wants.
    pub fn send_datagram(&self, data: Bytes) -> Result<(), DatagramError> {
        let quic_err = |e| match e {
            quinn::SendDatagramError::TooLarge => DatagramError::TooLarge,
            quinn::SendDatagramError::ConnectionLost(_) => DatagramError::Lost,
            _ => DatagramError::Unsupported,
        };
        match self {
            Wire::Quic(c) => c.send_datagram(data).map_err(quic_err),
            Wire::WebTransportServer(c) => c.send_datagram(&data).map_err(quic_err),
            Wire::WebTransport(c) => c.send_datagram(data).map_err(|e| {
                use web_transport_quinn::SessionError;
                match e {
                    SessionError::SendDatagramError(quinn::SendDatagramError::TooLarge) => {
                        DatagramError::TooLarge
                    }
                    SessionError::SendDatagramError(
                        quinn::SendDatagramError::UnsupportedByPeer
                        | quinn::SendDatagramError::Disabled,
                    ) => DatagramError::Unsupported,
                    _ => DatagramError::Lost,
                }
            }),
        }
    }

    /// Close the connection with application code `code` and `reason`.
    pub fn close(&self, code: u32, reason: &str) {
        match self {
            Wire::Quic(c) => c.close(quinn::VarInt::from_u32(code), reason.as_bytes()),
            Wire::WebTransport(c) => c.close(code, reason.as_bytes()),
            Wire::WebTransportServer(c) => c.close(code, reason),
        }
    }

    /// How the connection ended, if it has (without waiting).
    pub fn close_reason(&self) -> Option<Ended> {
        match self {
            Wire::WebTransportServer(c) => c.close_outcome().map(Ended::from_h3),
            _ => self.quic().close_reason().map(Ended::from_quinn),
        }
    }

    /// Wait until the connection is closed, for whatever reason.
    pub async fn closed(&self) -> Ended {
        match self {
            Wire::Quic(c) => Ended::from_quinn(c.closed().await),
            Wire::WebTransport(c) => Ended::from_wt(c.closed().await),
            Wire::WebTransportServer(c) => Ended::from_h3(c.closed().await),
        }
    }
}

/// How the peer ended the connection, if `err` (from any operation on a
/// `Wire`) says so.
pub fn ended_by(err: &WireError) -> Option<Ended> {
    err.ended_by_peer().cloned()
}

/// Read a whole stream of at most `max` bytes; longer streams are an error.
pub async fn read_to_end_limited(mut r: Reader, max: usize) -> Result<Vec<u8>, WireError> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::with_capacity(max.min(2048));
    let mut limited = (&mut r).take(max as u64 + 1);
    limited
        .read_to_end(&mut out)
        .await
        .map_err(WireError::Read)?;
    if out.len() > max {
        return Err(WireError::TooLong { max });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stream_over_its_limit_is_refused() {
        let ok = read_to_end_limited(Box::pin(&b"hello"[..]), 5)
            .await
            .unwrap();
        assert_eq!(ok, b"hello");
        let err = read_to_end_limited(Box::pin(&b"hello!"[..]), 5).await;
        assert!(matches!(err, Err(WireError::TooLong { max: 5 })), "{err:?}");
    }

    #[test]
    fn only_a_peer_close_says_how_it_ended() {
        let by_peer = WireError::Lost(Ended::by_peer(6, "closed by peer: server_full".into()));
        assert_eq!(ended_by(&by_peer).and_then(|e| e.code), Some(6));
        assert!(by_peer.to_string().contains("server_full"));
        assert_eq!(ended_by(&WireError::Lost(Ended::lost("timed out"))), None);
        // Only quinn's idle timeout is a silent peer; a reset or a close is not.
        assert!(Ended::from_quinn(quinn::ConnectionError::TimedOut).silent());
        assert!(!Ended::from_quinn(quinn::ConnectionError::Reset).silent());
        assert!(!Ended::by_peer(7, "shutting down".into()).silent());
        assert_eq!(ended_by(&WireError::StreamRefused), None);
    }
}
