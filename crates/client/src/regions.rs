//! Regions, client side (PROTOCOL.md §11 "Regions"): measure the round
//! trip to one node per region of the cluster, off the join's critical
//! path, and hand the result to the next `CreateSession`/`JoinSession`.
//!
//! After a `Welcome` of version 4 or later the client fetches the node list
//! (`GET /nodes` on the server's HTTP port: [`ClientConfig::nodes_url`], or
//! the WebSocket URL's host), picks one node per region ([`per_region`]),
//! and measures them all at once within [`MEASURE_LIMIT`]: over raw QUIC
//! (the handshake's round-trip estimate), or the TCP handshake to the
//! node's HTTP port when the client only speaks WebSocket. The result is
//! kept for [`CACHE_FOR`] per node list URL, for every client of the
//! process. A request made while a measurement runs goes without one: the
//! client never waits for it ([`super::Client::measured_regions`] is for
//! an application that wants to).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::{ClientConfig, ClientTransport, Error, Result};
use crate::protocol::{valid_region, NodeAddr, RegionRtt, MAX_REGION_RTTS};

/// How long the measurements of all regions may take together.
pub const MEASURE_LIMIT: Duration = Duration::from_secs(1);
/// How long a measurement counts before it is made again.
pub const CACHE_FOR: Duration = Duration::from_secs(300);
/// Largest `GET /nodes` answer read, headers included.
const MAX_NODES_BYTES: usize = 64 * 1024;
/// How long fetching the node list may take.
const FETCH_LIMIT: Duration = Duration::from_secs(2);

/// One node as `GET /nodes` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedNode {
    /// How to reach it.
    pub addr: NodeAddr,
    /// Its region, if it has one.
    pub region: Option<String>,
}

/// The nodes in a `GET /nodes` body (`{"nodes": [{"name", "region",
/// "quic", "http", "cert_sha256"}]}`). Entries that do not parse (a
/// certificate hash that is not 32 bytes of hex, a region name that is not
/// valid) are left out, not fatal.
pub fn parse_nodes(body: &[u8]) -> Result<Vec<ListedNode>> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Error::Config(format!("GET /nodes: not JSON: {e}")))?;
    let list = v
        .get("nodes")
        .and_then(|n| n.as_array())
        .ok_or_else(|| Error::Config("GET /nodes: no \"nodes\" array".into()))?;
    let text = |n: &serde_json::Value, k: &str| n.get(k).and_then(|x| x.as_str()).map(String::from);
    let mut out = Vec::new();
    for n in list {
        let Some(name) = text(n, "name") else {
            continue;
        };
        let cert_sha256 = match n.get("cert_sha256") {
            None | Some(serde_json::Value::Null) => None,
            Some(h) => match h.as_str().and_then(|h| hex::decode(h).ok()) {
                Some(b) if b.len() == 32 => Some(b),
                _ => continue,
            },
        };
        let region = text(n, "region");
        if region.as_deref().is_some_and(|r| !valid_region(r)) {
            continue;
        }
        out.push(ListedNode {
            addr: NodeAddr {
                name,
                quic: text(n, "quic").unwrap_or_default(),
                http: text(n, "http").unwrap_or_default(),
                cert_sha256,
            },
            region,
        });
    }
    Ok(out)
}

/// The node to measure in each region: the first the list names for it
/// (the server lists itself first), at most [`MAX_REGION_RTTS`] regions.
/// Empty when fewer than two regions are listed: there is nothing to choose.
pub fn per_region(nodes: &[ListedNode]) -> Vec<(String, NodeAddr)> {
    let mut out: Vec<(String, NodeAddr)> = Vec::new();
    for n in nodes {
        let Some(r) = &n.region else { continue };
        if out.len() < MAX_REGION_RTTS && !out.iter().any(|(seen, _)| seen == r) {
            out.push((r.clone(), n.addr.clone()));
        }
    }
    if out.len() < 2 {
        out.clear();
    }
    out
}

/// Where the node list is: [`ClientConfig::nodes_url`], else the WebSocket
/// URL's scheme and host with the path `/nodes`; `None` when neither is set.
pub fn nodes_url(cfg: &ClientConfig) -> Option<String> {
    if let Some(u) = cfg.nodes_url.as_ref().filter(|u| !u.is_empty()) {
        return Some(u.clone());
    }
    let ws = cfg.ws_url.as_deref()?;
    let (scheme, rest) = if let Some(rest) = ws.strip_prefix("wss://") {
        ("https", rest)
    } else {
        ("http", ws.strip_prefix("ws://")?)
    };
    let host = rest.split(['/', '?']).next().filter(|h| !h.is_empty())?;
    Some(format!("{scheme}://{host}/nodes"))
}

/// `GET url` (http or https) and the node list in its answer.
pub async fn fetch_nodes(cfg: &ClientConfig, url: &str) -> Result<Vec<ListedNode>> {
    let body = tokio::time::timeout(FETCH_LIMIT, http_get(cfg, url))
        .await
        .map_err(|_| Error::Config(format!("GET {url}: no answer within {FETCH_LIMIT:?}")))??;
    parse_nodes(&body)
}

/// A minimal HTTP/1.1 GET (the client has no HTTP library): the body of a
/// 200 answer, `Content-Length` or read to the close, chunked understood.
async fn http_get(cfg: &ClientConfig, url: &str) -> Result<Vec<u8>> {
    let bad = |why: &str| Error::Config(format!("GET {url}: {why}"));
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad("the URL must be http:// or https://"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match super::cluster::split_host_port(authority) {
        Some(hp) => hp,
        None => (
            authority.trim_matches(['[', ']']).to_string(),
            if tls { 443 } else { 80 },
        ),
    };
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| Error::connect(format!("GET {url}"), e))?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
    let mut raw = Vec::new();
    if tls {
        let tls_cfg = super::tls::client_tls(&cfg.trust, b"http/1.1")?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_cfg));
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| bad(&format!("bad TLS server name {host}: {e}")))?;
        let mut s = connector
            .connect(name, tcp)
            .await
            .map_err(|e| Error::connect(format!("TLS with {host}"), e))?;
        s.write_all(request.as_bytes())
            .await
            .map_err(|e| Error::connect(format!("GET {url}"), e))?;
        read_capped(&mut s, &mut raw).await;
    } else {
        let mut s = tcp;
        s.write_all(request.as_bytes())
            .await
            .map_err(|e| Error::connect(format!("GET {url}"), e))?;
        read_capped(&mut s, &mut raw).await;
    }
    http_body(&raw).ok_or_else(|| bad("not a 200 answer with a readable body"))
}

async fn read_capped(s: &mut (impl tokio::io::AsyncRead + Unpin), out: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    while out.len() < MAX_NODES_BYTES {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// The body of a raw HTTP/1.1 answer, if its status is 200.
fn http_body(raw: &[u8]) -> Option<Vec<u8>> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next()?;
    if status.split_whitespace().nth(1) != Some("200") {
        return None;
    }
    let mut length = None;
    let mut chunked = false;
    for l in lines {
        let (k, v) = l.split_once(':')?;
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            length = v.parse::<usize>().ok();
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.eq_ignore_ascii_case("chunked");
        }
    }
    if chunked {
        let mut out = Vec::new();
        let mut rest = body;
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n")?;
            let size = std::str::from_utf8(&rest[..eol]).ok()?;
            let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
            rest = &rest[eol + 2..];
            if size == 0 {
                return Some(out);
            }
            out.extend_from_slice(rest.get(..size)?);
            rest = rest.get(size + 2..)?;
        }
    }
    match length {
        Some(n) => body.get(..n).map(<[u8]>::to_vec),
        None => Some(body.to_vec()),
    }
}

/// Measure every `(region, node)` at once, each within `limit`: the
/// regions that answered in time, with their round trips in ms. A node
/// that cannot be reached is left out (no entry: not measured).
pub async fn measure(
    base: &ClientConfig,
    targets: &[(String, NodeAddr)],
    limit: Duration,
) -> Vec<RegionRtt> {
    let one = |region: String, node: NodeAddr| async move {
        let rtt = match tokio::time::timeout(limit, rtt_to(base, &node)).await {
            Ok(Ok(rtt)) => rtt,
            Ok(Err(e)) => {
                tracing::debug!(%region, node = %node.name, "region not measured: {e}");
                return None;
            }
            Err(_) => {
                tracing::debug!(%region, node = %node.name, "region not measured within {limit:?}");
                return None;
            }
        };
        let rtt_ms = rtt.as_millis().clamp(1, u128::from(u32::MAX)) as u32;
        Some(RegionRtt { region, rtt_ms })
    };
    let all = targets.iter().map(|(r, n)| one(r.clone(), n.clone()));
    futures_util::future::join_all(all)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// One round trip to `node`: raw QUIC's handshake estimate, or the TCP
/// handshake to its HTTP port for a WebSocket-only client (or a node with
/// no QUIC address).
async fn rtt_to(base: &ClientConfig, node: &NodeAddr) -> Result<Duration> {
    let quic = base.transport != ClientTransport::Websocket && !node.quic.is_empty();
    if quic {
        let mut b = base.clone();
        b.transport = ClientTransport::Quic;
        let (at, _) = super::cluster::node_addr(&b, node).await?;
        let mut cfg = super::cluster::config_for(&b, &at);
        cfg.endpoint = None;
        cfg.transport = ClientTransport::Quic;
        let (wire, endpoint) = super::connect::connect_wire(&cfg).await?;
        let rtt = wire.rtt();
        wire.close(0, "measured");
        drop(endpoint);
        return Ok(rtt);
    }
    let http = node.http.trim_end_matches('/');
    let authority = http
        .strip_prefix("https://")
        .or_else(|| http.strip_prefix("http://"))
        .ok_or_else(|| Error::Config(format!("node {} has no usable address", node.name)))?;
    let (host, port) = super::cluster::split_host_port(authority).unwrap_or((
        authority.to_string(),
        if http.starts_with("https") { 443 } else { 80 },
    ));
    let start = Instant::now();
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| Error::connect(format!("measuring {}", node.name), e))?;
    drop(tcp);
    Ok(start.elapsed())
}

/// What one node list measured to, shared by the process's clients.
#[derive(Debug, Clone, Default)]
struct Entry {
    /// When the last measurement ended, and what it gave.
    done: Option<(Instant, Vec<RegionRtt>)>,
    /// Set while a measurement runs (its end is announced on it).
    running: Option<watch::Receiver<bool>>,
}

fn cache() -> &'static Mutex<HashMap<String, Entry>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Entry>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn lock() -> std::sync::MutexGuard<'static, HashMap<String, Entry>> {
    cache().lock().unwrap_or_else(|e| e.into_inner())
}

/// The measurements for `cfg`'s node list if they are fresh; starts one
/// (in the background) when there is none or it is older than
/// [`CACHE_FOR`] and none runs. Never waits.
pub(super) fn current(cfg: &ClientConfig) -> Vec<RegionRtt> {
    if !cfg.measure_regions {
        return Vec::new();
    }
    let Some(url) = nodes_url(cfg) else {
        return Vec::new();
    };
    let now = Instant::now();
    let mut map = lock();
    let e = map.entry(url.clone()).or_default();
    if let Some((at, rtts)) = &e.done {
        if now.duration_since(*at) < CACHE_FOR {
            return rtts.clone();
        }
    }
    // Outside a runtime (a sync caller) nothing can run: nothing is started.
    let runtime = tokio::runtime::Handle::try_current().ok();
    if let (None, Some(runtime)) = (&e.running, runtime) {
        let (tx, rx) = watch::channel(false);
        e.running = Some(rx);
        let cfg = cfg.clone();
        runtime.spawn(async move {
            let rtts = match fetch_nodes(&cfg, &url).await {
                Ok(nodes) => measure(&cfg, &per_region(&nodes), MEASURE_LIMIT).await,
                Err(e) => {
                    tracing::debug!("no node list for regions: {e}");
                    Vec::new()
                }
            };
            tracing::debug!(?rtts, "regions measured");
            let mut map = lock();
            let e = map.entry(url).or_default();
            e.done = Some((Instant::now(), rtts));
            e.running = None;
            let _ = tx.send(true);
        });
    }
    Vec::new()
}

/// Wait up to `limit` for a measurement of `cfg`'s node list (starting one
/// if none is fresh), then what there is.
pub(super) async fn wait(cfg: &ClientConfig, limit: Duration) -> Vec<RegionRtt> {
    let now = current(cfg);
    if !now.is_empty() {
        return now;
    }
    let Some(url) = nodes_url(cfg) else {
        return Vec::new();
    };
    let running = lock().get(&url).and_then(|e| e.running.clone());
    if let Some(mut rx) = running {
        let _ = tokio::time::timeout(limit, rx.wait_for(|done| *done)).await;
    }
    lock()
        .get(&url)
        .and_then(|e| e.done.as_ref())
        .map(|(_, r)| r.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Trust;

    #[test]
    fn the_node_list_parses_and_bad_entries_are_left_out() {
        let body = br#"{"nodes":[
            {"name":"eu-1","region":"eu","quic":"10.0.0.1:4433","http":"http://10.0.0.1:8080","cert_sha256":null},
            {"name":"us-1","region":"us","quic":"10.0.0.2:4433","http":"","cert_sha256":"0001020304050607080900010203040506070809000102030405060708090001"},
            {"name":"bad-hash","region":"us","quic":"x:1","http":"","cert_sha256":"00"},
            {"name":"bad-region","region":"US WEST","quic":"x:1","http":""},
            {"name":"no-region","region":null,"quic":"x:1","http":""},
            {"region":"eu"}
        ]}"#;
        let nodes = parse_nodes(body).unwrap();
        let names: Vec<&str> = nodes.iter().map(|n| n.addr.name.as_str()).collect();
        assert_eq!(names, ["eu-1", "us-1", "no-region"]);
        assert_eq!(nodes[1].addr.cert_sha256.as_ref().map(Vec::len), Some(32));
        assert!(parse_nodes(b"[]").is_err());
        assert!(parse_nodes(b"{").is_err());
    }

    #[test]
    fn one_node_per_region_and_nothing_for_a_single_region() {
        let n = |name: &str, region: Option<&str>| ListedNode {
            addr: NodeAddr {
                name: name.into(),
                ..NodeAddr::default()
            },
            region: region.map(str::to_string),
        };
        let list = [
            n("eu-1", Some("eu")),
            n("x", None),
            n("eu-2", Some("eu")),
            n("us-1", Some("us")),
        ];
        let picked: Vec<(String, String)> = per_region(&list)
            .into_iter()
            .map(|(r, a)| (r, a.name))
            .collect();
        assert_eq!(
            picked,
            [("eu".into(), "eu-1".into()), ("us".into(), "us-1".into())]
        );
        assert!(per_region(&list[..3]).is_empty());
        let many: Vec<ListedNode> = (0..20)
            .map(|i| n(&format!("n{i}"), Some(&format!("r{i}"))))
            .collect();
        assert_eq!(per_region(&many).len(), MAX_REGION_RTTS);
    }

    #[test]
    fn the_list_url_comes_from_the_config_or_the_websocket_url() {
        let mut cfg =
            ClientConfig::new("127.0.0.1:4433".parse().unwrap(), Trust::CertHash([0; 32]));
        assert_eq!(nodes_url(&cfg), None);
        cfg.ws_url = Some("ws://10.0.0.1:8080/ws".into());
        assert_eq!(
            nodes_url(&cfg).as_deref(),
            Some("http://10.0.0.1:8080/nodes")
        );
        cfg.ws_url = Some("wss://eu.example.com/ws?x=1".into());
        assert_eq!(
            nodes_url(&cfg).as_deref(),
            Some("https://eu.example.com/nodes")
        );
        cfg.nodes_url = Some("http://h:1/nodes".into());
        assert_eq!(nodes_url(&cfg).as_deref(), Some("http://h:1/nodes"));
    }

    /// A sync caller outside any runtime gets nothing, and no panic.
    #[test]
    fn outside_a_runtime_nothing_is_started() {
        let mut cfg = ClientConfig::new("127.0.0.1:9".parse().unwrap(), Trust::CertHash([0; 32]));
        cfg.nodes_url = Some("http://127.0.0.1:9/nodes-outside-a-runtime".into());
        assert!(current(&cfg).is_empty());
        assert!(lock()
            .get("http://127.0.0.1:9/nodes-outside-a-runtime")
            .is_some_and(|e| e.running.is_none()));
    }

    #[test]
    fn http_answers_are_read_by_length_by_chunks_or_to_the_end() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}xx";
        assert_eq!(http_body(ok).unwrap(), b"{}");
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{\"\r\n3\r\na\":\r\n0\r\n\r\n";
        assert_eq!(http_body(chunked).unwrap(), b"{\"a\":");
        assert_eq!(http_body(b"HTTP/1.1 200 OK\r\n\r\nabc").unwrap(), b"abc");
        assert_eq!(http_body(b"HTTP/1.1 404 Not Found\r\n\r\n"), None);
        assert_eq!(
            http_body(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{}"),
            None
        );
        assert_eq!(http_body(b"garbage"), None);
        let bad_chunk = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n";
        assert_eq!(http_body(bad_chunk), None);
    }
}
