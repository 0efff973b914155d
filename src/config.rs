//! Plain configuration of a server: one struct per concern, one set of
//! defaults (the `Default` impls). The binary's command line maps onto these;
//! a program embedding the server fills them in directly.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::certs::Identity;
pub use crate::limits::Limits;
pub use crate::turn::IceConfig;

/// QUIC transport settings and queue depths of the I/O shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuicTuning {
    /// Close a QUIC connection or WebSocket after this many milliseconds without any packet or
    /// message from the client.
    pub idle_timeout_ms: u64,

    /// Send a QUIC keep-alive (WebSocket: a ping) after this many milliseconds of silence; keeps
    /// NAT bindings and proxies open, and lets a dead WebSocket be noticed. 0 = never.
    pub keep_alive_ms: u64,

    /// Per-connection buffer of received, not yet forwarded datagrams, in bytes. Small on purpose:
    /// stale flight data is dropped (oldest first), never queued.
    pub datagram_recv_buffer: usize,

    /// Per-connection buffer of datagrams waiting to be sent, in bytes (oldest dropped when full).
    pub datagram_send_buffer: usize,

    /// Kernel receive and send buffer of the UDP socket, in bytes (SO_RCVBUF/SO_SNDBUF). Every
    /// client's packets share it: too small and a burst from many players is dropped by the
    /// kernel before QUIC sees it. Linux caps it at net.core.rmem_max/wmem_max (the log says what
    /// was granted; raise those sysctls to get more). 0 = the kernel's default.
    pub udp_socket_buffer: usize,

    /// Ask each QUIC client that supports the ACK frequency extension (quinn-based ones do;
    /// others, browsers included, are not asked) to acknowledge only after this many
    /// ack-eliciting packets, or 25 ms.
    /// At game rates a client otherwise acknowledges every other relayed packet, and each
    /// acknowledgement costs the server a receive and a decryption. 0 = do not ask (RFC 9000:
    /// every other packet). 8 cut the relay's CPU per delivered frame by about a tenth at 60 Hz
    /// in 8-player sessions (docs/BENCHMARKS.md, game rate).
    pub ack_threshold: u32,

    /// Control messages queued for one client before it counts as a slow consumer and is closed.
    pub control_queue: usize,

    /// Flow-control window of one QUIC stream the client sends on, in bytes: what the server
    /// buffers for it at most. The connection's window is four times this, which bounds what a
    /// client can make the server hold on streams, however many it opens.
    pub stream_receive_window: u32,

    /// Relay frames queued for one receiver without datagrams (stream mode, WebSocket); when
    /// full, the oldest is dropped (latest state wins).
    pub stream_relay_queue: usize,

    /// On SIGINT/SIGTERM, how long to wait for clients to disconnect before closing, in milliseconds.
    pub drain_timeout_ms: u64,

    /// Delay clients are asked to wait before reconnecting after a shutdown, in milliseconds.
    pub reconnect_after_ms: u32,
}

impl Default for QuicTuning {
    fn default() -> Self {
        QuicTuning {
            idle_timeout_ms: 30_000,
            keep_alive_ms: 10_000,
            datagram_recv_buffer: 64 * 1024,
            datagram_send_buffer: 64 * 1024,
            udp_socket_buffer: 4 * 1024 * 1024,
            ack_threshold: 8,
            control_queue: 256,
            stream_receive_window: 64 * 1024,
            stream_relay_queue: 32,
            drain_timeout_ms: 3_000,
            reconnect_after_ms: 2_000,
        }
    }
}

/// Everything a server needs to start.
pub struct ServerConfig {
    /// UDP address for QUIC and WebTransport.
    pub listen: SocketAddr,
    /// TCP address of the HTTP port (health, metrics, cert hash, WebSocket, demo).
    pub http_listen: SocketAddr,
    /// The TLS certificate and key.
    pub identity: Identity,
    /// What clients may do.
    pub limits: Limits,
    /// STUN/TURN servers handed to clients, and the TURN secret.
    pub ice: IceConfig,
    /// Transport settings and queue depths.
    pub quic: QuicTuning,
    /// Static files (the browser client and demo page) served on the HTTP port.
    pub web_dir: Option<PathBuf>,
    /// Behind a reverse proxy: how a WebSocket client's address is read
    /// from the proxy's headers. `None`: the socket's address, headers ignored.
    pub proxy: Option<crate::proxy::ProxyTrust>,
    /// For a dev certificate: where to write its successor, and its names.
    /// The server replaces it a day before it expires (browsers refuse a
    /// pinned certificate that has expired, and accept at most 14 days).
    pub dev_cert: Option<DevCert>,
    /// Cluster mode (`--redis-url`): share sessions with other nodes through
    /// Redis. `None`: a single node, sessions in memory only.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// Access control (`--auth`): the tokens clients must bring. `None`: an
    /// open server.
    pub access: Option<crate::auth::Access>,
}

/// Where the dev certificate lives and which names it carries.
#[derive(Debug, Clone)]
pub struct DevCert {
    /// Directory of the certificate and key files.
    pub dir: PathBuf,
    /// Names and addresses the certificate is issued for.
    pub hosts: Vec<String>,
}
