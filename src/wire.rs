//! One QUIC connection, raw (project ALPN) or WebTransport (`h3`), behind one interface.
//!
//! The server and the Rust client both speak the protocol over either kind of
//! connection; this enum is the only place that knows the difference. Streams
//! are handed out as boxed tokio `AsyncRead`/`AsyncWrite`, which both quinn
//! and wtransport implement.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

pub type Reader = Pin<Box<dyn AsyncRead + Send + Sync>>;
pub type Writer = Pin<Box<dyn AsyncWrite + Send + Sync>>;

#[derive(Clone, Debug)]
pub enum Wire {
    Quic(quinn::Connection),
    WebTransport(wtransport::Connection),
}

/// How a connection ended, as far as the session core cares.
#[derive(Debug, Clone)]
pub struct Ended {
    /// The peer closed it on purpose with application code 0.
    pub clean: bool,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DatagramError {
    #[error("datagram larger than the path allows")]
    TooLarge,
    #[error("peer does not accept datagrams")]
    Unsupported,
    #[error("connection lost")]
    Lost,
}

impl Wire {
    pub fn kind(&self) -> crate::session::Transport {
        match self {
            Wire::Quic(_) => crate::session::Transport::Quic,
            Wire::WebTransport(_) => crate::session::Transport::WebTransport,
        }
    }

    pub fn remote_address(&self) -> std::net::SocketAddr {
        match self {
            Wire::Quic(c) => c.remote_address(),
            Wire::WebTransport(c) => c.remote_address(),
        }
    }

    /// The QUIC connection underneath (for its statistics).
    pub fn quic(&self) -> &quinn::Connection {
        match self {
            Wire::Quic(c) => c,
            Wire::WebTransport(c) => c.quic_connection(),
        }
    }

    pub fn rtt(&self) -> Duration {
        match self {
            Wire::Quic(c) => c.rtt(),
            Wire::WebTransport(c) => c.rtt(),
        }
    }

    pub fn max_datagram_size(&self) -> Option<usize> {
        match self {
            Wire::Quic(c) => c.max_datagram_size(),
            Wire::WebTransport(c) => c.max_datagram_size(),
        }
    }

    pub async fn accept_bi(&self) -> anyhow::Result<(Writer, Reader)> {
        Ok(match self {
            Wire::Quic(c) => {
                let (s, r) = c.accept_bi().await?;
                (Box::pin(s), Box::pin(r))
            }
            Wire::WebTransport(c) => {
                let (s, r) = c.accept_bi().await?;
                (Box::pin(s), Box::pin(r))
            }
        })
    }

    /// Accept the next bidirectional stream the client opens and refuse it
    /// at once (STOP_SENDING and RESET_STREAM with `code`), so it holds no
    /// buffered data. Errors when the connection has ended.
    pub async fn refuse_bi(&self, code: u32) -> anyhow::Result<()> {
        match self {
            Wire::Quic(c) => {
                let (mut s, mut r) = c.accept_bi().await?;
                let _ = r.stop(code.into());
                let _ = s.reset(code.into());
            }
            Wire::WebTransport(c) => {
                let (mut s, r) = c.accept_bi().await?;
                r.stop(code.into());
                let _ = s.reset(code.into());
            }
        }
        Ok(())
    }

    pub async fn open_bi(&self) -> anyhow::Result<(Writer, Reader)> {
        Ok(match self {
            Wire::Quic(c) => {
                let (s, r) = c.open_bi().await?;
                (Box::pin(s), Box::pin(r))
            }
            Wire::WebTransport(c) => {
                let (s, r) = c.open_bi().await?.await?;
                (Box::pin(s), Box::pin(r))
            }
        })
    }

    pub async fn accept_uni(&self) -> anyhow::Result<Reader> {
        Ok(match self {
            Wire::Quic(c) => Box::pin(c.accept_uni().await?),
            Wire::WebTransport(c) => Box::pin(c.accept_uni().await?),
        })
    }

    pub async fn open_uni(&self) -> anyhow::Result<Writer> {
        Ok(match self {
            Wire::Quic(c) => Box::pin(c.open_uni().await?),
            Wire::WebTransport(c) => Box::pin(c.open_uni().await?.await?),
        })
    }

    pub async fn read_datagram(&self) -> anyhow::Result<Bytes> {
        Ok(match self {
            Wire::Quic(c) => c.read_datagram().await?,
            Wire::WebTransport(c) => c.receive_datagram().await?.payload(),
        })
    }

    /// Queue a datagram; never waits. quinn drops the oldest queued datagrams
    /// when its send buffer is full, which is what real-time state wants.
    pub fn send_datagram(&self, data: Bytes) -> Result<(), DatagramError> {
        match self {
            Wire::Quic(c) => c.send_datagram(data).map_err(|e| match e {
                quinn::SendDatagramError::TooLarge => DatagramError::TooLarge,
                quinn::SendDatagramError::ConnectionLost(_) => DatagramError::Lost,
                _ => DatagramError::Unsupported,
            }),
            Wire::WebTransport(c) => c.send_datagram(&data).map_err(|e| match e {
                wtransport::error::SendDatagramError::TooLarge => DatagramError::TooLarge,
                wtransport::error::SendDatagramError::NotConnected => DatagramError::Lost,
                wtransport::error::SendDatagramError::UnsupportedByPeer => {
                    DatagramError::Unsupported
                }
            }),
        }
    }

    pub fn close(&self, code: u32, reason: &str) {
        match self {
            Wire::Quic(c) => c.close(quinn::VarInt::from_u32(code), reason.as_bytes()),
            Wire::WebTransport(c) => c.close(wtransport::VarInt::from_u32(code), reason.as_bytes()),
        }
    }

    /// Wait until the connection is closed, for whatever reason.
    pub async fn closed(&self) -> Ended {
        match self {
            Wire::Quic(c) => match c.closed().await {
                quinn::ConnectionError::ApplicationClosed(a) => Ended {
                    clean: a.error_code.into_inner() == 0,
                    reason: format!("closed by peer: {a}"),
                },
                e => Ended {
                    clean: false,
                    reason: e.to_string(),
                },
            },
            Wire::WebTransport(c) => match c.closed().await {
                wtransport::error::ConnectionError::ApplicationClosed(a) => Ended {
                    clean: a.code().into_inner() == 0,
                    reason: format!("closed by peer: {a}"),
                },
                e => Ended {
                    clean: false,
                    reason: e.to_string(),
                },
            },
        }
    }
}

/// How the peer ended the connection, if `err` (from any operation on a
/// `Wire`) says so. For WebTransport this is the only place the browser's
/// close code shows: wtransport's driver reads the session close and then
/// closes the QUIC connection itself, so `closed()` only says "locally closed".
pub fn ended_by(err: &anyhow::Error) -> Option<Ended> {
    if let Some(wtransport::error::ConnectionError::ApplicationClosed(a)) = err.downcast_ref() {
        return Some(Ended {
            clean: a.code().into_inner() == 0,
            reason: format!("closed by peer: {a}"),
        });
    }
    if let Some(quinn::ConnectionError::ApplicationClosed(a)) = err.downcast_ref() {
        return Some(Ended {
            clean: a.error_code.into_inner() == 0,
            reason: format!("closed by peer: {a}"),
        });
    }
    None
}

/// Read a whole stream of at most `max` bytes; longer streams are an error.
pub async fn read_to_end_limited(mut r: Reader, max: usize) -> anyhow::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::with_capacity(max.min(2048));
    let mut limited = (&mut r).take(max as u64 + 1);
    limited.read_to_end(&mut out).await?;
    anyhow::ensure!(out.len() <= max, "stream longer than {max} bytes");
    Ok(out)
}
