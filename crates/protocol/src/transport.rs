//! The two carriers a connection and a relay frame may use: plain labels the
//! core, the server, the client and the metrics share.

/// The transport a connection came in on (for limits, logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Raw QUIC with the project ALPN.
    Quic,
    /// WebTransport over HTTP/3.
    WebTransport,
    /// WebSocket on the HTTP port (the TCP fallback).
    WebSocket,
}

impl Transport {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Quic => "quic",
            Transport::WebTransport => "webtransport",
            Transport::WebSocket => "websocket",
        }
    }
}

/// How a relay frame travels between the server and one client (a metrics
/// label, and what the relay reports for each copy it hands out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    /// A QUIC or WebTransport datagram.
    Datagram,
    /// One QUIC unidirectional stream per frame.
    Stream,
    /// A binary WebSocket message (the TCP fallback).
    WebSocket,
}

impl Via {
    /// Every carrier, in label order.
    pub const ALL: [Via; 3] = [Via::Datagram, Via::Stream, Via::WebSocket];

    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Datagram => "datagram",
            Via::Stream => "stream",
            Via::WebSocket => "websocket",
        }
    }
}
