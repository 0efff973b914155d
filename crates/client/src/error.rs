//! What can go wrong for a client, as one enum a caller matches on.
//!
//! Every fallible method of [`Client`](super::Client) returns [`Error`]. The
//! variants say what kind of failure it was (the server said no, the
//! connection ended, nothing came in time, the transport could not be set
//! up), so a program reacts by matching, not by reading text or downcasting.
//! The text still carries the details underneath (the server's message, how
//! the connection closed, the TLS or socket error), so logging an `Error` by
//! its `Display` tells the whole story without walking `source()`.

use std::net::SocketAddr;
use std::time::Duration;

use crate::protocol::ErrorCode;
use crate::wire::{DatagramError, Ended, WireError};

/// Any error, kept whole for its message (socket, TLS, QUIC, WebSocket libraries).
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server refused a request with `ServerMsg::Error`. The connection
    /// stays open unless the code is fatal ([`ErrorCode::is_fatal`]).
    #[error("server error {code}: {name}: {message}")]
    Server {
        /// The error code as sent; see [`Error::server_code`].
        code: u16,
        /// The code's snake-case name (`unknown_session`), `unknown` for a
        /// code this client does not know.
        name: &'static str,
        /// The server's explanation.
        message: String,
    },
    /// The connection ended before the answer came: the server closed it
    /// (with a code, such as `server_full`), it was lost, or it timed out.
    #[error("connection closed: {0}")]
    Closed(Ended),
    /// No `Welcome` arrived within [`ClientConfig::connect_timeout`](super::ClientConfig::connect_timeout).
    #[error("no Welcome from {server} within {after:?}")]
    Timeout {
        /// The server's address.
        server: SocketAddr,
        /// How long the client waited.
        after: Duration,
    },
    /// A `CreateSession` or `JoinSession` got no answer within
    /// [`ClientConfig::request_timeout`](super::ClientConfig::request_timeout).
    #[error("no answer to {request} within {after:?}")]
    RequestTimeout {
        /// `CreateSession` or `JoinSession`.
        request: &'static str,
        /// How long the client waited.
        after: Duration,
    },
    /// The client's own TLS setup failed (unreadable or bad CA file). A
    /// certificate the server presents and the client rejects is a
    /// [`Error::Connect`] failure of the handshake.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// The transport connection could not be established: a socket, the
    /// QUIC or TLS handshake (a rejected certificate included), the
    /// WebTransport session, or the WebSocket upgrade.
    #[error("{stage}: {}", chain(.cause.as_ref()))]
    Connect {
        /// What was being done, e.g. `QUIC handshake with 127.0.0.1:4433`.
        stage: String,
        /// What went wrong underneath.
        cause: Cause,
    },
    /// The configuration cannot work (no WebSocket URL, a bad URL).
    #[error("{0}")]
    Config(String),
    /// The connection's transport cannot do this (datagrams on a
    /// WebSocket, moving a WebTransport connection to a new socket).
    #[error("{0}")]
    Unsupported(&'static str),
    /// Writing a stream, or a local socket operation, failed.
    #[error("{what}: {}", chain(.error))]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error underneath.
        error: std::io::Error,
    },
    /// A datagram was not queued.
    #[error("sending datagram: {0}")]
    Datagram(DatagramError),
    /// A stream could not be opened for a reason other than the end of
    /// the connection (which is [`Error::Closed`]).
    #[error("{0}")]
    Wire(WireError),
    /// (cluster mode) More redirects in a row than
    /// [`MAX_REDIRECTS`](super::MAX_REDIRECTS) before the request was
    /// answered: the nodes disagree about where it belongs.
    #[error("too many redirects ({count} in a row), the last to node {node:?}")]
    Redirects {
        /// How many were followed.
        count: u32,
        /// The name of the node the last one pointed to.
        node: String,
    },
}

impl Error {
    /// The code of a [`Error::Server`] refusal, if it is one this client knows.
    pub fn server_code(&self) -> Option<ErrorCode> {
        match self {
            Error::Server { code, .. } => ErrorCode::from_u16(*code),
            _ => None,
        }
    }

    /// A refusal from the server, as `ServerMsg::Error { code, message }` carried it.
    pub(crate) fn server(code: u16, message: &str) -> Error {
        Error::Server {
            code,
            name: ErrorCode::from_u16(code).map_or("unknown", ErrorCode::as_str),
            message: message.to_string(),
        }
    }

    /// A failure while establishing the transport connection.
    pub(crate) fn connect(stage: impl Into<String>, cause: impl Into<Cause>) -> Error {
        Error::Connect {
            stage: stage.into(),
            cause: cause.into(),
        }
    }
}

impl From<WireError> for Error {
    fn from(e: WireError) -> Error {
        match e {
            WireError::Lost(ended) => Error::Closed(ended),
            other => Error::Wire(other),
        }
    }
}

impl From<DatagramError> for Error {
    fn from(e: DatagramError) -> Error {
        Error::Datagram(e)
    }
}

/// `e` and the errors under it, `: `-separated, skipping a source whose text
/// its parent's already includes (many errors print their source themselves).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_its_code() {
        let e = Error::server(ErrorCode::TooManyJoinAttempts as u16, "try again in 30 s");
        assert_eq!(e.server_code(), Some(ErrorCode::TooManyJoinAttempts));
        assert_eq!(
            e.to_string(),
            "server error 17: too_many_join_attempts: try again in 30 s"
        );
        let unknown = Error::server(999, "?");
        assert_eq!(unknown.server_code(), None);
        assert!(unknown.to_string().contains("unknown"));
    }

    #[test]
    fn a_lost_connection_is_closed() {
        let ended = Ended::by_peer(6, "closed by peer: server_full (code 6)".into());
        let e = Error::from(WireError::Lost(ended.clone()));
        assert!(matches!(&e, Error::Closed(x) if *x == ended));
        assert!(e.to_string().contains("server_full"));
        assert!(matches!(
            Error::from(WireError::StreamRefused),
            Error::Wire(_)
        ));
    }

    #[test]
    fn the_text_keeps_what_is_underneath() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let inner = std::io::Error::other("certificate hash mismatch");
        let e = Error::connect("QUIC handshake with 127.0.0.1:1", Outer(inner));
        assert_eq!(
            e.to_string(),
            "QUIC handshake with 127.0.0.1:1: outer: certificate hash mismatch"
        );
        // A source its parent already prints is not repeated.
        let e = Error::Io {
            what: "writing",
            error: std::io::Error::other(Outer(std::io::Error::other("x"))),
        };
        assert_eq!(e.to_string(), "writing: outer: x");
    }
}
