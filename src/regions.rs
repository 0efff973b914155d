//! Regions (issue 26): the node list clients measure against (`GET
//! /nodes`), and the shell's part of placement by measured ping.
//!
//! Why a module of its own: the decision is the core's
//! ([`crate::session::place_new`]); the node's heartbeat feeds the core the
//! live nodes it reads from the directory, and this module serves them to
//! clients and counts what placement does. Nothing here runs per relay frame.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;

use crate::cluster::NodeInfo;
use crate::hub::{now, Shared};
use crate::metrics::Metrics;
use crate::protocol::{NodeAddr, RedirectReason, ServerMsg};

/// This node as `GET /nodes` lists it.
#[derive(Debug, Clone)]
pub(crate) struct Me {
    /// How clients reach it (its cluster address, or its listen addresses
    /// on a single node).
    pub(crate) addr: NodeAddr,
    /// Its region (`--region`), if any.
    pub(crate) region: Option<String>,
}

/// One entry of `GET /nodes`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct NodeEntry {
    name: String,
    region: Option<String>,
    quic: String,
    http: String,
    /// Hex SHA-256 of a self-signed certificate to pin, or `null` (CA-signed).
    cert_sha256: Option<String>,
}

impl NodeEntry {
    fn of(addr: &NodeAddr, region: Option<&String>) -> NodeEntry {
        NodeEntry {
            name: addr.name.clone(),
            region: region.cloned(),
            quic: addr.quic.clone(),
            http: addr.http.clone(),
            cert_sha256: addr.cert_sha256.as_ref().map(hex::encode),
        }
    }
}

/// The body of `GET /nodes`: every node the directory lists as live (not
/// draining), this node first and always (as it is now, whatever the
/// directory last held of it), the others by name.
pub(crate) fn node_list(me: &Me, live: &[NodeInfo]) -> Vec<NodeEntry> {
    let mut others: Vec<&NodeInfo> = live
        .iter()
        .filter(|n| n.addr.name != me.addr.name && !n.draining)
        .collect();
    others.sort_by(|a, b| a.addr.name.cmp(&b.addr.name));
    std::iter::once(NodeEntry::of(&me.addr, me.region.as_ref()))
        .chain(
            others
                .into_iter()
                .map(|n| NodeEntry::of(&n.addr, n.region.as_ref())),
        )
        .collect()
}

/// `GET /nodes`: `{"nodes": [{"name", "region", "quic", "http",
/// "cert_sha256"}, ...]}`, from the node's last reading of its directory
/// (the heartbeat's); a single node, or one whose directory is away, lists
/// itself only. Cacheable for 5 s.
pub(crate) async fn nodes(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let mut me = shared.me.get().cloned().unwrap_or(Me {
        addr: NodeAddr::default(),
        region: None,
    });
    let cert = shared.cert();
    if cert.dev {
        // A dev certificate is replaced before it expires: list the current one.
        me.addr.cert_sha256 = hex::decode(&cert.hex).ok();
    }
    let list = {
        let st = shared.lock();
        node_list(&me, st.core.live_nodes(now().mono))
    };
    (
        [
            (header::CACHE_CONTROL, "max-age=5"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        Json(serde_json::json!({ "nodes": list })),
    )
}

/// Count what the core sends that placement decided (a `Redirect` for
/// `Placement`); other redirects are counted where they are decided.
pub(crate) fn count_sent(metrics: &Metrics, msg: &ServerMsg) {
    if let ServerMsg::Redirect(r) = msg {
        if r.reason == RedirectReason::Placement {
            metrics.redirected(RedirectReason::Placement);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, region: Option<&str>, draining: bool) -> NodeInfo {
        NodeInfo {
            addr: NodeAddr {
                name: name.into(),
                quic: format!("{name}:4433"),
                http: format!("http://{name}:8080"),
                cert_sha256: Some(vec![0xab, 0x01]),
            },
            sessions: 0,
            connections: 0,
            draining,
            at_unix_ms: 0,
            region: region.map(str::to_string),
        }
    }

    #[test]
    fn the_list_is_me_first_then_live_nodes_by_name() {
        let me = Me {
            addr: info("m", None, false).addr,
            region: Some("eu".into()),
        };
        let live = [
            info("z", Some("us"), false),
            info("m", Some("old"), false),
            info("d", Some("asia"), true),
            info("a", None, false),
        ];
        let list = node_list(&me, &live);
        let names: Vec<&str> = list.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["m", "a", "z"]);
        assert_eq!(list[0].region.as_deref(), Some("eu"));
        assert_eq!(list[0].cert_sha256.as_deref(), Some("ab01"));
        assert_eq!(list[1].region, None);
        let json = serde_json::to_value(&list[2]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"name": "z", "region": "us", "quic": "z:4433",
                "http": "http://z:8080", "cert_sha256": "ab01"})
        );
        // Alone (single node, or the directory away).
        assert_eq!(node_list(&me, &[]).len(), 1);
    }
}
