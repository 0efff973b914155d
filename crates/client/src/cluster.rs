//! Cluster mode, client side: where a `Redirect` sends the client, how many
//! redirects in a row it follows, and which configured server it tries next
//! when the one it was on cannot be reached.
//!
//! The pure parts (address mapping, the redirect limit, the rotation) take
//! no clock and touch no socket; [`node_config`] adds the one name lookup a
//! redirect needs. The supervisor in [`super::reconnect`] and `open` in the
//! client module carry the decisions out (PROTOCOL.md §11).

use std::net::SocketAddr;

use super::{ClientConfig, ClientTransport, Error, Result, ServerAddr, Trust};
use crate::protocol::NodeAddr;
#[cfg(test)]
use crate::protocol::WEBTRANSPORT_PATH;

/// How many redirects in a row a client follows before it fails
/// ([`Error::Redirects`]). The count starts again once a redirected request
/// is answered on some node.
pub const MAX_REDIRECTS: u32 = 5;

/// What the `count`-th redirect in a row means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectStep {
    /// Within [`MAX_REDIRECTS`]: follow it.
    Follow,
    /// Over the limit: fail the request or connect. `back_to_configured`: a
    /// client in a session goes back to its configured servers instead.
    Fail {
        /// In a session: the configured servers again, with the backoff.
        back_to_configured: bool,
    },
}

/// PROTOCOL.md §12 rule 5: follow up to [`MAX_REDIRECTS`] in a row.
pub fn redirect_step(count: u32, in_session: bool) -> RedirectStep {
    if count > MAX_REDIRECTS {
        RedirectStep::Fail {
            back_to_configured: in_session,
        }
    } else {
        RedirectStep::Follow
    }
}

/// Fail once `count` redirects in a row (counted by the client's memory of
/// the conversation) exceed [`MAX_REDIRECTS`]; `node` is the last target.
pub(super) fn check_redirects(count: u32, node: &NodeAddr) -> Result<()> {
    if redirect_step(count, false) != RedirectStep::Follow {
        return Err(Error::Redirects {
            count: MAX_REDIRECTS,
            node: node.name.clone(),
        });
    }
    Ok(())
}

/// The WebSocket URL of a node whose HTTP base URL is `http`:
/// `{http}/ws` with `http` → `ws` and `https` → `wss`; `None` when it has no
/// HTTP port (empty) or the URL is not http(s).
pub(super) fn ws_url_of(http: &str) -> Option<String> {
    let http = http.trim().trim_end_matches('/');
    let rest = if let Some(rest) = http.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = http.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        return None;
    };
    (rest.len() > "wss://".len()).then(|| format!("{rest}/ws"))
}

/// Split `host:port` (`[v6]:port` for IPv6) into the host, without
/// brackets, and the port; `None` when empty or malformed.
pub(super) fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.trim().rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']')?,
        None if host.contains(':') => return None, // IPv6 needs brackets
        None => host,
    };
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// The WebTransport URL of a node: `https://{quic}/signal` (what
/// `connect` builds from the address and TLS name [`node_addr`] gives).
#[cfg(test)]
fn webtransport_url_of(quic: &str) -> Option<String> {
    split_host_port(quic).map(|_| format!("https://{}{WEBTRANSPORT_PATH}", quic.trim()))
}

/// Where a redirect leads for a client on `transport`, before the name
/// lookup: the QUIC `host:port` (raw QUIC, WebTransport and `Auto`), the
/// WebSocket URL (WebSocket and `Auto`) and the hash to pin. An error when
/// the node cannot be reached that way (its address for it is empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NodeTarget {
    pub(super) quic: Option<(String, u16)>,
    pub(super) ws_url: Option<String>,
    pub(super) cert: Option<[u8; 32]>,
}

pub(super) fn node_target(node: &NodeAddr, transport: ClientTransport) -> Result<NodeTarget> {
    let quic = split_host_port(&node.quic);
    let ws_url = ws_url_of(&node.http);
    let cert = match &node.cert_sha256 {
        None => None,
        Some(h) => Some(<[u8; 32]>::try_from(h.as_slice()).map_err(|_| {
            Error::Config(format!(
                "node {} sent a certificate hash of {} bytes, not 32",
                node.name,
                h.len()
            ))
        })?),
    };
    let usable = match transport {
        ClientTransport::Quic | ClientTransport::Webtransport => quic.is_some(),
        ClientTransport::Websocket => ws_url.is_some(),
        ClientTransport::Auto => quic.is_some() || ws_url.is_some(),
    };
    if !usable {
        return Err(Error::Config(format!(
            "node {} has no address for {transport:?} (quic {:?}, http {:?})",
            node.name, node.quic, node.http
        )));
    }
    Ok(NodeTarget { quic, ws_url, cert })
}

/// The trust for a server that announces `cert` (its pinned hash) when the
/// configuration says `base`: the hash if there is one, else `base`.
fn trust_for(base: &Trust, cert: Option<[u8; 32]>) -> Trust {
    match cert {
        Some(h) => Trust::CertHash(h),
        None => base.clone(),
    }
}

fn same_trust(a: &Trust, b: &Trust) -> bool {
    match (a, b) {
        (Trust::CertHash(x), Trust::CertHash(y)) => x == y,
        (Trust::CaFile(x), Trust::CaFile(y)) => x == y,
        _ => false,
    }
}

/// `base` pointed at `at`: its address, TLS name, WebSocket URL and trust.
/// A reused QUIC endpoint stays only when it trusts the same way and its
/// socket has the same address family.
pub(super) fn config_for(base: &ClientConfig, at: &ServerAddr) -> ClientConfig {
    let mut cfg = base.clone();
    cfg.server = at.server;
    cfg.server_name = at.server_name.clone();
    cfg.ws_url = at.ws_url.clone();
    cfg.trust = trust_for(&base.trust, at.cert_sha256);
    let keep_endpoint = same_trust(&cfg.trust, &base.trust)
        && base.server.is_ipv6() == at.server.is_ipv6()
        && cfg.endpoint.is_some();
    if !keep_endpoint {
        cfg.endpoint = None;
    }
    cfg
}

/// Where to go for `node`: resolve its QUIC host (a name lookup) and build
/// the [`ServerAddr`]. Without a QUIC address (a WebSocket-only node) the
/// socket address is unused and kept from `base`.
pub(super) async fn node_addr(
    base: &ClientConfig,
    node: &NodeAddr,
) -> Result<(ServerAddr, NodeTarget)> {
    let target = node_target(node, base.transport)?;
    let (server, server_name) = match &target.quic {
        Some((host, port)) => {
            let wanted_v6 = base.server.is_ipv6();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), *port))
                .await
                .map_err(|e| Error::connect(format!("looking up node {} ({host})", node.name), e))?
                .collect();
            let addr = found
                .iter()
                .find(|a| a.is_ipv6() == wanted_v6)
                .or(found.first())
                .copied()
                .ok_or_else(|| {
                    Error::connect(
                        format!("looking up node {} ({host})", node.name),
                        std::io::Error::other("no address"),
                    )
                })?;
            (addr, host.clone())
        }
        None => (base.server, base.server_name.clone()),
    };
    Ok((
        ServerAddr {
            server,
            server_name,
            ws_url: target.ws_url.clone(),
            cert_sha256: target.cert,
        },
        target,
    ))
}

/// The configuration to follow a redirect to `node` with.
#[cfg(test)]
async fn node_config(base: &ClientConfig, node: &NodeAddr) -> Result<ClientConfig> {
    let (at, _) = node_addr(base, node).await?;
    Ok(config_for(base, &at))
}

/// The configured servers (the main one, then [`ClientConfig::fallbacks`])
/// and where a reconnection goes next. A redirect target comes first while
/// there is one; when it (or any server) cannot be reached, the next
/// configured server is tried, round robin.
#[derive(Debug, Clone)]
pub struct Rotation {
    configured: Vec<ServerAddr>,
    next: usize,
    redirected: Option<ServerAddr>,
}

impl Rotation {
    /// The servers of `cfg`, starting with its main one.
    pub fn new(cfg: &ClientConfig) -> Rotation {
        let main = ServerAddr {
            server: cfg.server,
            server_name: cfg.server_name.clone(),
            ws_url: cfg.ws_url.clone(),
            cert_sha256: match cfg.trust {
                Trust::CertHash(h) => Some(h),
                Trust::CaFile(_) => None,
            },
        };
        Rotation::of(
            std::iter::once(main)
                .chain(cfg.fallbacks.iter().cloned())
                .collect(),
        )
    }

    /// A rotation over `configured` (at least one server), at the first.
    pub fn of(configured: Vec<ServerAddr>) -> Rotation {
        Rotation {
            configured,
            next: 0,
            redirected: None,
        }
    }

    /// The server the next attempt goes to.
    pub fn current(&self) -> &ServerAddr {
        self.redirected
            .as_ref()
            .unwrap_or(&self.configured[self.next % self.configured.len()])
    }

    /// A redirect sent the client to `at`.
    pub fn redirected(&mut self, at: ServerAddr) {
        self.redirected = Some(at);
    }

    /// Forget a redirect's node: the configured servers again.
    pub fn back_to_configured(&mut self) {
        self.redirected = None;
    }

    /// The current server could not be reached: a redirect target is
    /// dropped (back to the configured list, where it left off), a
    /// configured server makes way for the next one.
    pub fn unreachable(&mut self) {
        if self.redirected.take().is_none() {
            self.next = (self.next + 1) % self.configured.len();
        }
    }

    /// The connection to the current server was lost; `silent`: the server
    /// went silent (liveness, or QUIC's idle timeout), which counts as
    /// unreachable. Any other loss is retried on the same server.
    pub fn lost(&mut self, silent: bool) {
        if silent {
            self.unreachable();
        }
    }

    /// The index in the configured servers the rotation is at.
    pub fn configured_index(&self) -> usize {
        self.next % self.configured.len()
    }

    /// The redirect target the next attempt goes to, if any.
    pub fn redirect_target(&self) -> Option<&ServerAddr> {
        self.redirected.as_ref()
    }

    /// More than one place to go: a failure that would be final with one
    /// server (a configuration that cannot reach it) only moves on.
    pub fn has_alternatives(&self) -> bool {
        self.redirected.is_some() || self.configured.len() > 1
    }

    /// The configuration of the next attempt.
    pub(super) fn config(&self, base: &ClientConfig) -> ClientConfig {
        config_for(base, self.current())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::NodeAddr;

    fn node(quic: &str, http: &str, cert: Option<Vec<u8>>) -> NodeAddr {
        NodeAddr {
            name: "b".into(),
            quic: quic.into(),
            http: http.into(),
            cert_sha256: cert,
        }
    }

    #[test]
    fn node_addresses_map_to_each_transport() {
        assert_eq!(
            ws_url_of("http://10.0.0.2:8080").as_deref(),
            Some("ws://10.0.0.2:8080/ws")
        );
        assert_eq!(
            ws_url_of("https://eu-2.example.com/").as_deref(),
            Some("wss://eu-2.example.com/ws")
        );
        assert_eq!(ws_url_of(""), None);
        assert_eq!(ws_url_of("ftp://x"), None);
        assert_eq!(ws_url_of("http://"), None);
        assert_eq!(
            split_host_port("10.0.0.2:4433"),
            Some(("10.0.0.2".into(), 4433))
        );
        assert_eq!(split_host_port("[::1]:4433"), Some(("::1".into(), 4433)));
        assert_eq!(
            split_host_port("eu-2.example.com:443"),
            Some(("eu-2.example.com".into(), 443))
        );
        for bad in ["", "host", ":443", "::1:443", "h:99999", "[::1]"] {
            assert_eq!(split_host_port(bad), None, "{bad}");
        }
        assert_eq!(
            webtransport_url_of("10.0.0.2:4433").as_deref(),
            Some("https://10.0.0.2:4433/signal")
        );

        let pinned = node("10.0.0.2:4433", "http://10.0.0.2:8080", Some(vec![7; 32]));
        let t = node_target(&pinned, ClientTransport::Quic).unwrap();
        assert_eq!(t.quic, Some(("10.0.0.2".into(), 4433)));
        assert_eq!(t.cert, Some([7; 32]));
        let t = node_target(&pinned, ClientTransport::Websocket).unwrap();
        assert_eq!(t.ws_url.as_deref(), Some("ws://10.0.0.2:8080/ws"));
        // A node without UDP cannot take a QUIC client, but can an Auto one.
        let ws_only = node("", "https://c.example.com", None);
        assert!(node_target(&ws_only, ClientTransport::Quic).is_err());
        assert!(node_target(&ws_only, ClientTransport::Webtransport).is_err());
        let t = node_target(&ws_only, ClientTransport::Auto).unwrap();
        assert_eq!(
            (t.quic, t.ws_url.as_deref(), t.cert),
            (None, Some("wss://c.example.com/ws"), None)
        );
        let no_http = node("10.0.0.2:4433", "", None);
        assert!(node_target(&no_http, ClientTransport::Websocket).is_err());
        // A hash that is not SHA-256 is refused, not truncated.
        let short = node("10.0.0.2:4433", "", Some(vec![1, 2]));
        assert!(node_target(&short, ClientTransport::Quic).is_err());
    }

    fn base() -> ClientConfig {
        let mut cfg =
            ClientConfig::new("127.0.0.1:4433".parse().unwrap(), Trust::CertHash([1; 32]));
        cfg.ws_url = Some("ws://127.0.0.1:8080/ws".into());
        cfg.fallbacks = vec![
            ServerAddr::new("127.0.0.1:5433".parse().unwrap()),
            ServerAddr {
                ws_url: Some("ws://127.0.0.1:9080/ws".into()),
                cert_sha256: Some([3; 32]),
                ..ServerAddr::new("127.0.0.1:6433".parse().unwrap())
            },
        ];
        cfg
    }

    #[tokio::test]
    async fn a_redirect_points_the_config_at_the_node_and_pins_its_hash() {
        let base = base();
        let pinned = node("127.0.0.1:7433", "http://127.0.0.1:7080", Some(vec![9; 32]));
        let cfg = node_config(&base, &pinned).await.unwrap();
        assert_eq!(cfg.server, "127.0.0.1:7433".parse().unwrap());
        assert_eq!(cfg.server_name, "127.0.0.1");
        assert_eq!(cfg.ws_url.as_deref(), Some("ws://127.0.0.1:7080/ws"));
        assert!(matches!(cfg.trust, Trust::CertHash(h) if h == [9; 32]));
        // No hash: the configured trust stays.
        let ca = node("127.0.0.1:7433", "", None);
        let cfg = node_config(&base, &ca).await.unwrap();
        assert!(matches!(cfg.trust, Trust::CertHash(h) if h == [1; 32]));
        assert_eq!(cfg.ws_url, None);
    }

    #[test]
    fn unreachable_servers_rotate_round_robin_and_redirects_go_first() {
        let base = base();
        let mut r = Rotation::new(&base);
        assert!(r.has_alternatives());
        let port = |r: &Rotation| r.current().server.port();
        assert_eq!(port(&r), 4433);
        r.unreachable();
        assert_eq!(port(&r), 5433);
        // A fallback without its own hash or URL inherits the trust, not the URL.
        let cfg = r.config(&base);
        assert!(matches!(cfg.trust, Trust::CertHash(h) if h == [1; 32]));
        assert_eq!(cfg.ws_url, None);
        r.unreachable();
        assert_eq!(port(&r), 6433);
        let cfg = r.config(&base);
        assert!(matches!(cfg.trust, Trust::CertHash(h) if h == [3; 32]));
        assert_eq!(cfg.ws_url.as_deref(), Some("ws://127.0.0.1:9080/ws"));
        r.unreachable();
        assert_eq!(port(&r), 4433, "round robin");
        // A redirect target first; when it fails, back where the list was.
        r.unreachable();
        r.redirected(ServerAddr::new("127.0.0.1:7433".parse().unwrap()));
        assert_eq!(port(&r), 7433);
        r.unreachable();
        assert_eq!(port(&r), 5433);
        r.redirected(ServerAddr::new("127.0.0.1:7433".parse().unwrap()));
        r.back_to_configured();
        assert_eq!(port(&r), 5433);
        // One server alone has no alternative.
        let mut alone = base.clone();
        alone.fallbacks.clear();
        let mut r = Rotation::new(&alone);
        assert!(!r.has_alternatives());
        r.unreachable();
        assert_eq!(port(&r), 4433);
    }
}

/// The client following redirects end to end, against fake nodes: WebSocket
/// servers on loopback that answer each connection from a script (what the
/// client put in the URL's `first` in, server messages out).
#[cfg(test)]
mod flows {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use futures_util::{SinkExt, StreamExt};
    use tokio::net::TcpListener;
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    use tokio_tungstenite::tungstenite::Message;

    use super::super::{Client, ClientConfig, ClientTransport, Error, Event, ServerAddr, Trust};
    use crate::first::{decode_first, first_param};
    use crate::protocol::{
        encode_ws_control, ClientMsg, JoinSession, Limits, NodeAddr, Redirect, RedirectReason,
        ServerMsg, SessionInfo, Welcome,
    };

    /// What a node does with connection number `n` (from 0) that sent these
    /// messages in its URL: the messages to send, and whether to keep the
    /// connection open afterwards (false: drop it, as a crash does).
    type Script = Box<dyn Fn(usize, &[ClientMsg]) -> (Vec<ServerMsg>, bool) + Send + Sync>;

    /// A fake node; `connections` limits how many it accepts (then it stops
    /// listening: later connections are refused).
    // (The handshake callback's error type is tungstenite's, not ours.)
    #[allow(clippy::result_large_err)]
    async fn node(
        connections: usize,
        script: Script,
    ) -> (SocketAddr, Arc<Mutex<Vec<Vec<ClientMsg>>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let script = Arc::new(script);
        tokio::spawn(async move {
            for n in 0..connections {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let script = script.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let query = Arc::new(Mutex::new(None));
                    let q = query.clone();
                    let callback = move |req: &Request, resp: Response| {
                        *q.lock().unwrap() = req.uri().query().map(str::to_string);
                        Ok(resp)
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await
                    else {
                        return;
                    };
                    let query = query.lock().unwrap().clone();
                    let msgs = first_param(query.as_deref())
                        .and_then(|v| decode_first(v).ok())
                        .unwrap_or_default();
                    log.lock().unwrap().push(msgs.clone());
                    let (out, keep) = script(n, &msgs);
                    for m in out {
                        if ws
                            .send(Message::Binary(encode_ws_control(&m).into()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    if keep {
                        while let Some(Ok(_)) = ws.next().await {}
                    }
                });
            }
        });
        (addr, seen)
    }

    fn welcome(peer_id: u32, resumed: bool) -> ServerMsg {
        ServerMsg::Welcome(Welcome {
            version: 1,
            peer_id,
            resume_token: vec![peer_id as u8; 16],
            resumed,
            ice_servers: vec![],
            limits: Limits {
                max_frame_bytes: 16384,
                max_relay_payload: 1100,
                relay_datagrams_per_sec: 0,
                relay_bytes_per_sec: 0,
                signals_per_sec: 0,
                max_peers_per_session: 16,
                resume_grace_ms: 15_000,
            },
            server_time_ms: 0,
        })
    }

    fn joined(peers: &[u32]) -> ServerMsg {
        ServerMsg::SessionJoined(SessionInfo {
            code: "7KQ2MX".into(),
            host: peers[0],
            max_peers: 8,
            idle_ttl_secs: 60,
            peers: vec![],
        })
    }

    fn redirect(reason: RedirectReason, http_port: u16) -> ServerMsg {
        ServerMsg::Redirect(Redirect {
            reason,
            node: NodeAddr {
                name: format!("node-{http_port}"),
                quic: String::new(),
                http: format!("http://127.0.0.1:{http_port}"),
                cert_sha256: None,
            },
        })
    }

    fn config(ws: SocketAddr) -> ClientConfig {
        let mut cfg = ClientConfig::new("127.0.0.1:9".parse().unwrap(), Trust::CertHash([0; 32]));
        cfg.transport = ClientTransport::Websocket;
        cfg.ws_url = Some(format!("ws://{ws}/ws"));
        cfg.connect_timeout = Duration::from_secs(5);
        cfg.reconnect_window = Duration::from_secs(10);
        cfg
    }

    fn join() -> ClientMsg {
        ClientMsg::JoinSession(JoinSession {
            code: "7KQ2MX".into(),
            password: None,
            region_rtts: Vec::new(),
        })
    }

    fn token_of(msgs: &[ClientMsg]) -> Option<Vec<u8>> {
        match msgs.first() {
            Some(ClientMsg::Hello(h)) => h.resume_token.clone(),
            _ => None,
        }
    }

    /// Events until `stop` says so (within 5 s).
    async fn events_until(client: &mut Client, stop: impl Fn(&Event) -> bool) -> Vec<Event> {
        let mut seen = Vec::new();
        while let Some(e) = client.next_event_within(Duration::from_secs(5)).await {
            let done = stop(&e);
            seen.push(e);
            if done {
                return seen;
            }
        }
        panic!("stopped waiting; saw {seen:?}");
    }

    #[tokio::test]
    async fn a_redirected_join_is_answered_by_the_node_it_names() {
        let (b, b_seen) = node(
            1,
            Box::new(|_, msgs| match msgs {
                [ClientMsg::Hello(_), ClientMsg::JoinSession(_)] => {
                    (vec![welcome(3, false), joined(&[1, 3])], true)
                }
                _ => (vec![], false),
            }),
        )
        .await;
        let b_port = b.port();
        let (a, _) = node(
            1,
            Box::new(move |_, _| {
                (
                    vec![welcome(7, false), redirect(RedirectReason::Session, b_port)],
                    true,
                )
            }),
        )
        .await;
        let mut client = Client::connect(&config(a), Some(join())).await.unwrap();
        assert_eq!(client.welcome.peer_id, 7);
        let info = client
            .wait_for(|m| match m {
                ServerMsg::SessionJoined(i) => Some(i.clone()),
                _ => None,
            })
            .await
            .unwrap();
        assert_eq!(info.code, "7KQ2MX");
        assert_eq!(client.peer_id(), 3);
        let at_b = b_seen.lock().unwrap()[0].clone();
        assert_eq!(token_of(&at_b), None, "in no session: no token");
        assert_eq!(at_b[1], join(), "the join again");
        client.close().await;
    }

    #[tokio::test]
    async fn an_unasked_draining_redirect_resumes_with_the_token_on_the_new_node() {
        let (b, b_seen) = node(
            1,
            Box::new(|_, _| (vec![welcome(5, true), joined(&[1, 5])], true)),
        )
        .await;
        let b_port = b.port();
        let (a, _) = node(
            1,
            Box::new(move |_, _| {
                (
                    vec![
                        welcome(5, false),
                        joined(&[1, 5]),
                        redirect(RedirectReason::Draining, b_port),
                    ],
                    true,
                )
            }),
        )
        .await;
        let mut client = Client::connect(&config(a), Some(join())).await.unwrap();
        let seen = events_until(&mut client, |e| matches!(e, Event::Reconnected { .. })).await;
        assert!(
            seen.iter()
                .any(|e| matches!(e, Event::Reconnecting { attempt: 1, .. })),
            "{seen:?}"
        );
        assert_eq!(seen.last(), Some(&Event::Reconnected { resumed: true }));
        assert!(!seen.iter().any(|e| matches!(e, Event::Closed(_))));
        let at_b = b_seen.lock().unwrap()[0].clone();
        assert_eq!(token_of(&at_b), Some(vec![5; 16]));
        assert_eq!(
            at_b.len(),
            1,
            "nothing to send again: resumed in its session"
        );
        assert_eq!(client.peer_id(), 5);
        client.close().await;
    }

    #[tokio::test]
    async fn an_unreachable_node_sends_the_client_back_to_its_configured_server() {
        let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_port = dead.local_addr().unwrap().port();
        drop(dead);
        let (a, a_seen) = node(
            2,
            Box::new(move |n, _| match n {
                0 => (
                    vec![
                        welcome(5, false),
                        joined(&[1, 5]),
                        redirect(RedirectReason::Moved, dead_port),
                    ],
                    true,
                ),
                _ => (vec![welcome(5, true), joined(&[1, 5])], true),
            }),
        )
        .await;
        let mut client = Client::connect(&config(a), Some(join())).await.unwrap();
        let seen = events_until(&mut client, |e| matches!(e, Event::Reconnected { .. })).await;
        assert_eq!(seen.last(), Some(&Event::Reconnected { resumed: true }));
        assert_eq!(token_of(&a_seen.lock().unwrap()[1]), Some(vec![5; 16]));
        client.close().await;
    }

    #[tokio::test]
    async fn after_a_crash_the_client_resumes_on_a_fallback() {
        // A takes one connection and drops it; then it is gone.
        let (a, _) = node(
            1,
            Box::new(|_, _| (vec![welcome(5, false), joined(&[1, 5])], false)),
        )
        .await;
        let (b, b_seen) = node(
            1,
            Box::new(|_, _| (vec![welcome(5, true), joined(&[1, 5])], true)),
        )
        .await;
        let mut cfg = config(a);
        cfg.fallbacks = vec![ServerAddr {
            ws_url: Some(format!("ws://{b}/ws")),
            ..ServerAddr::new("127.0.0.1:9".parse().unwrap())
        }];
        let mut client = Client::connect(&cfg, Some(join())).await.unwrap();
        let seen = events_until(&mut client, |e| matches!(e, Event::Reconnected { .. })).await;
        assert_eq!(seen.last(), Some(&Event::Reconnected { resumed: true }));
        assert!(
            seen.iter()
                .filter(|e| matches!(e, Event::Reconnecting { .. }))
                .count()
                >= 2,
            "{seen:?}"
        );
        assert_eq!(token_of(&b_seen.lock().unwrap()[0]), Some(vec![5; 16]));
        client.close().await;
    }

    #[tokio::test]
    async fn redirects_in_a_loop_fail_the_connect() {
        let port = Arc::new(Mutex::new(0u16));
        let p = port.clone();
        let (a, a_seen) = node(
            10,
            Box::new(move |_, _| {
                (
                    vec![redirect(RedirectReason::Session, *p.lock().unwrap())],
                    true,
                )
            }),
        )
        .await;
        *port.lock().unwrap() = a.port();
        match Client::connect(&config(a), Some(join())).await {
            Err(Error::Redirects { count, node }) => {
                assert_eq!(count, super::MAX_REDIRECTS);
                assert_eq!(node, format!("node-{}", a.port()));
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("connected"),
        }
        assert_eq!(
            a_seen.lock().unwrap().len(),
            6,
            "the first connection and 5 redirects"
        );
    }
}
