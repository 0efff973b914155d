//! Getting a transport connection: raw QUIC, WebTransport, WebSocket, or
//! the race between QUIC and WebSocket that [`ClientTransport::Auto`] runs.
//!
//! Everything here ends at an established connection and knows nothing of
//! the protocol spoken on it; [`super::quic`] and [`super::websocket`] take
//! over from there. `Auto` is happy eyeballs: QUIC starts first and gets
//! `fallback_delay` alone, then a WebSocket attempt starts too, and whichever
//! connects first is used (a QUIC failure starts the WebSocket at once).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::tls::client_tls;
use super::websocket::{Io, WsStream};
use super::{ClientConfig, ClientTransport, Error, Result};
use crate::first::{encode_first, FIRST_PARAM};
use crate::protocol::{ClientMsg, ALPN_NATIVE, WEBTRANSPORT_PATH};
use crate::wire::Wire;

/// The two kinds of attempt of the QUIC/WebSocket race ([`ClientTransport::Auto`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaceKind {
    /// Raw QUIC (WebTransport in a browser).
    Quic,
    /// The WebSocket fallback.
    WebSocket,
}

/// One attempt of the race so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaceAttempt {
    /// Which transport.
    pub kind: RaceKind,
    /// It failed (else it is pending, or connected).
    pub failed: bool,
}

/// How the race begins (PROTOCOL.md §12 rule 7): QUIC first, and the
/// WebSocket after `fallback_delay` if QUIC is not up by then (`Some`); the
/// WebSocket alone at once without QUIC.
pub fn race_start(quic_available: bool, fallback_delay: Duration) -> (RaceKind, Option<Duration>) {
    if quic_available {
        (RaceKind::Quic, Some(fallback_delay))
    } else {
        (RaceKind::WebSocket, None)
    }
}

/// An attempt failed (`attempts`: every one so far, this one failed): the
/// attempt to start now, if any (the WebSocket when QUIC failed before it
/// started), and whether the race is lost (every attempt failed).
pub fn race_failed(failed: RaceKind, attempts: &[RaceAttempt]) -> (Option<RaceKind>, bool) {
    let start = (failed == RaceKind::Quic
        && !attempts.iter().any(|a| a.kind == RaceKind::WebSocket))
    .then_some(RaceKind::WebSocket);
    (start, start.is_none() && attempts.iter().all(|a| a.failed))
}

/// Whether an attempt starting now carries the first request in its URL:
/// only when every attempt started before it has failed (two pending
/// attempts must not both join).
pub fn carries_first(before: &[RaceAttempt]) -> bool {
    before.iter().all(|a| a.failed)
}

/// An attempt connected: it wins; the other attempts still pending are abandoned.
pub fn race_connected(connected: RaceKind, attempts: &[RaceAttempt]) -> Vec<RaceKind> {
    attempts
        .iter()
        .filter(|a| a.kind != connected && !a.failed)
        .map(|a| a.kind)
        .collect()
}

/// A reusable QUIC client endpoint: one UDP socket and one TLS session cache
/// for many connections. Connections through the same endpoint resume TLS and
/// send Hello (and a pipelined request) as 0-RTT data, so a reconnecting
/// player is back in its session one round trip after it starts.
#[derive(Clone, Debug)]
pub struct QuicEndpoint(pub(super) quinn::Endpoint);

impl QuicEndpoint {
    /// Bind a UDP socket for connections to `cfg.server`, trusting the
    /// server as `cfg.trust` says and keeping connections alive every
    /// `cfg.keep_alive`.
    pub fn new(cfg: &ClientConfig) -> Result<Self> {
        Ok(QuicEndpoint(quic_endpoint(cfg, ALPN_NATIVE)?))
    }
}

/// A client endpoint for `cfg.server` whose default configuration speaks
/// `alpn`, trusts the server as `cfg.trust` says, keeps connections
/// alive every `cfg.keep_alive` and takes one for lost after `cfg.idle_timeout`
/// of silence.
fn quic_endpoint(cfg: &ClientConfig, alpn: &[u8]) -> Result<quinn::Endpoint> {
    let tls = client_tls(&cfg.trust, alpn)?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| Error::Tls(format!("building the QUIC TLS config: {e}")))?;
    let mut qc = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    // The effective idle timeout is the smaller of the two ends'.
    let idle = quinn::IdleTimeout::try_from(cfg.idle_timeout)
        .map_err(|e| Error::Config(format!("idle timeout {:?}: {e}", cfg.idle_timeout)))?;
    transport
        .keep_alive_interval(Some(cfg.keep_alive))
        .max_idle_timeout(Some(idle))
        .max_concurrent_uni_streams(1024u32.into())
        .datagram_receive_buffer_size(Some(256 * 1024));
    qc.transport_config(Arc::new(transport));
    let bind = if cfg.server.is_ipv6() {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
    };
    let mut endpoint = quinn::Endpoint::client(bind).map_err(|error| Error::Io {
        what: "binding a UDP socket",
        error,
    })?;
    endpoint.set_default_client_config(qc);
    Ok(endpoint)
}

/// An established transport connection, before Hello.
pub(super) enum Connected {
    /// Raw QUIC or WebTransport.
    Quic {
        wire: Wire,
        /// The raw QUIC endpoint, kept alive with the connection.
        endpoint: Option<quinn::Endpoint>,
        /// Set when the connection went on before its handshake completed,
        /// so what is written now travels as 0-RTT data.
        zero_rtt: Option<quinn::ZeroRttAccepted>,
        /// Hello (and the first request) went in the CONNECT URL: the server
        /// opens the control stream and answers on it.
        server_opens: bool,
    },
    /// The WebSocket fallback.
    WebSocket {
        /// The socket.
        ws: WsStream,
        /// Hello (and the first request) went in the upgrade URL.
        sent: bool,
    },
}

/// Connect with the transport `cfg` asks for. `first` (Hello and perhaps a
/// session request, [`crate::first`]) rides in the URL of a WebTransport or
/// WebSocket connection, so the answers come with the 200 or 101; raw QUIC
/// sends it in its first flight anyway (0-RTT when it can). `Auto` leaves it
/// out of its WebSocket attempt: a losing attempt must not join anyone.
pub(super) async fn connect(cfg: &ClientConfig, first: &[ClientMsg]) -> Result<Connected> {
    let in_url = encode_first(first);
    Ok(match cfg.transport {
        ClientTransport::Quic => {
            let (conn, endpoint, zero_rtt) = connect_quic(cfg).await?;
            Connected::Quic {
                wire: Wire::Quic(conn),
                endpoint: Some(endpoint),
                zero_rtt,
                server_opens: false,
            }
        }
        ClientTransport::Webtransport => {
            let (session, endpoint) = connect_wt(cfg, Some(&in_url)).await?;
            Connected::Quic {
                wire: Wire::WebTransport(Box::new(session)),
                endpoint: Some(endpoint),
                zero_rtt: None,
                server_opens: true,
            }
        }
        ClientTransport::Websocket => Connected::WebSocket {
            ws: connect_ws(cfg, Some(&in_url)).await?,
            sent: true,
        },
        ClientTransport::Auto => connect_auto(cfg, &in_url).await?,
    })
}

/// Only the QUIC or WebTransport handshake, no Hello: for tests and tools that
/// speak the protocol by hand. Keep the endpoint alive as long as the connection.
pub async fn connect_wire(cfg: &ClientConfig) -> Result<(Wire, Option<quinn::Endpoint>)> {
    Ok(match cfg.transport {
        ClientTransport::Quic => {
            let (conn, ep, zero_rtt) = connect_quic(cfg).await?;
            if let Some(accepted) = zero_rtt {
                accepted.await; // callers get a confirmed connection
            }
            (Wire::Quic(conn), Some(ep))
        }
        ClientTransport::Webtransport => {
            let (session, endpoint) = connect_wt(cfg, None).await?;
            (Wire::WebTransport(Box::new(session)), Some(endpoint))
        }
        ClientTransport::Websocket | ClientTransport::Auto => {
            return Err(Error::Unsupported(
                "connect_wire is for QUIC and WebTransport",
            ))
        }
    })
}

/// Race QUIC against a later-starting WebSocket attempt (happy eyeballs).
async fn connect_auto(cfg: &ClientConfig, first: &str) -> Result<Connected> {
    let quic_cfg = ClientConfig {
        transport: ClientTransport::Quic,
        ..cfg.clone()
    };
    let quic = connect_wire(&quic_cfg);
    tokio::pin!(quic);
    let quic_only = |(wire, endpoint)| Connected::Quic {
        wire,
        endpoint,
        zero_rtt: None,
        server_opens: false,
    };
    let ws_only = |ws| Connected::WebSocket { ws, sent: false };
    let quic_error = tokio::select! {
        r = &mut quic => match r {
            Ok(c) => return Ok(quic_only(c)),
            Err(e) => Some(e),
        },
        _ = tokio::time::sleep(cfg.fallback_delay) => None,
    };
    if let Some(e) = quic_error {
        tracing::info!("QUIC failed ({e}); using WebSocket");
        let quic = RaceAttempt {
            kind: RaceKind::Quic,
            failed: true,
        };
        // Nothing else pending: the first request rides in the URL.
        let in_url = carries_first(&[quic]).then_some(first);
        let sent = in_url.is_some();
        return connect_ws(cfg, in_url)
            .await
            .map(|ws| Connected::WebSocket { ws, sent });
    }
    tracing::info!(
        "QUIC not connected after {:?}; trying WebSocket too",
        cfg.fallback_delay
    );
    let ws = connect_ws(cfg, None);
    tokio::pin!(ws);
    tokio::select! {
        r = &mut quic => match r {
            Ok(c) => Ok(quic_only(c)),
            Err(_) => ws.await.map(ws_only),
        },
        r = &mut ws => match r {
            Ok(s) => Ok(ws_only(s)),
            Err(_) => quic.await.map(quic_only),
        },
    }
}

/// Start the QUIC handshake. With a resumable TLS session, go on at once:
/// what is written now travels as 0-RTT data. Otherwise wait for the handshake.
async fn connect_quic(
    cfg: &ClientConfig,
) -> Result<(
    quinn::Connection,
    quinn::Endpoint,
    Option<quinn::ZeroRttAccepted>,
)> {
    let endpoint = match &cfg.endpoint {
        Some(e) => e.0.clone(),
        None => QuicEndpoint::new(cfg)?.0,
    };
    let connecting = endpoint
        .connect(cfg.server, &cfg.server_name)
        .map_err(|e| Error::connect("starting the QUIC handshake", e))?;
    Ok(match connecting.into_0rtt() {
        Ok((conn, accepted)) => (conn, endpoint, Some(accepted)),
        Err(connecting) => {
            let conn = connecting
                .await
                .map_err(|e| Error::connect(format!("QUIC handshake with {}", cfg.server), e))?;
            (conn, endpoint, None)
        }
    })
}

/// Open a WebTransport session on `/signal`: a QUIC connection with ALPN
/// `h3`, HTTP/3 SETTINGS both ways, then an extended CONNECT.
async fn connect_wt(
    cfg: &ClientConfig,
    first: Option<&str>,
) -> Result<(web_transport_quinn::Session, quinn::Endpoint)> {
    let endpoint = quic_endpoint(cfg, web_transport_quinn::ALPN.as_bytes())?;
    let conn = endpoint
        .connect(cfg.server, &cfg.server_name)
        .map_err(|e| Error::connect(format!("QUIC handshake with {}", cfg.server), e))?
        .await
        .map_err(|e| Error::connect(format!("QUIC handshake with {}", cfg.server), e))?;
    // The name in the URL is only what the CONNECT says; the TLS name was
    // checked (or, pinned by hash, not needed) above.
    let url = format!(
        "https://{}:{}{}",
        cfg.server_name,
        cfg.server.port(),
        WEBTRANSPORT_PATH
    );
    let mut parsed = url::Url::parse(&url)
        .map_err(|e| Error::Config(format!("bad WebTransport URL {url}: {e}")))?;
    // The URL may carry a join code: errors name the URL without it.
    if let Some(first) = first {
        parsed.set_query(Some(&format!("{FIRST_PARAM}={first}")));
    }
    let session = web_transport_quinn::Session::connect(conn, parsed)
        .await
        .map_err(|e| Error::connect(format!("WebTransport session with {url}"), e))?;
    Ok((session, endpoint))
}

/// Open the WebSocket (TCP, optional TLS, HTTP upgrade).
async fn connect_ws(cfg: &ClientConfig, first: Option<&str>) -> Result<WsStream> {
    let url = cfg.ws_url.as_deref().ok_or_else(|| {
        Error::Config("the WebSocket transport needs a ws:// or wss:// URL".into())
    })?;
    // The URL may carry a join code: errors name the URL without it.
    let full = match first {
        Some(first) => {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}{FIRST_PARAM}={first}")
        }
        None => url.to_string(),
    };
    let request = full
        .as_str()
        .into_client_request()
        .map_err(|e| Error::Config(format!("bad WebSocket URL {url}: {e}")))?;
    let uri = request.uri().clone();
    let host = uri
        .host()
        .ok_or_else(|| Error::Config(format!("WebSocket URL without a host: {url}")))?
        .trim_matches(['[', ']'])
        .to_string();
    let tls = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        other => {
            return Err(Error::Config(format!(
                "WebSocket URL scheme must be ws or wss, not {other:?}"
            )))
        }
    };
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| Error::connect(format!("connecting to {host}:{port}"), e))?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Io> = if tls {
        let connector =
            tokio_rustls::TlsConnector::from(Arc::new(client_tls(&cfg.trust, b"http/1.1")?));
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| Error::Config(format!("bad TLS server name {host}: {e}")))?;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| Error::connect(format!("TLS with {host}"), e))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let (ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(|e| Error::connect(format!("WebSocket upgrade at {url}"), e))?;
    Ok(ws)
}
