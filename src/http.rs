//! The HTTP side port (TCP): health, metrics, the dev certificate hash, the
//! cluster's node list (`GET /nodes`, [`crate::regions`]), the
//! WebSocket fallback transport (`/ws`), the operator's revocation endpoint
//! (`POST /admin/revoke`, with access control), and the browser client's
//! static files.
//!
//! Browsers need the dev certificate's hash before they can open WebTransport
//! (`serverCertificateHashes`), so it is served here over plain HTTP; a page
//! served from `http://localhost` is a secure context, which WebTransport requires.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::auth::Revocation;
use crate::hub::{now, Shared};
use crate::metrics::{AdminResult, Refusal};
use crate::session::address_key;
use crate::session::AdminRefusal;

/// The HTTP port's routes; `ws` serves `GET /ws` (the server hands in the
/// WebSocket transport, so this module knows nothing of it).
pub(crate) fn router(
    shared: Arc<Shared>,
    web_dir: Option<PathBuf>,
    ws: MethodRouter<Arc<Shared>>,
) -> Router {
    let api = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/cert-hash", get(cert_hash))
        .route("/nodes", get(crate::regions::nodes))
        .route("/ws", ws)
        .route(
            "/admin/revoke",
            post(admin_revoke).layer(DefaultBodyLimit::max(ADMIN_MAX_BODY)),
        )
        .with_state(shared);
    match web_dir {
        Some(dir) => api.fallback_service(tower_http::services::ServeDir::new(dir)),
        None => api,
    }
}

async fn healthz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let st = shared.lock();
    Json(serde_json::json!({
        "status": "ok",
        "connections": st.core.connection_count(),
        "sessions": st.core.session_count(),
        "peers": st.core.peer_count(),
    }))
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.render(),
    )
}

async fn cert_hash(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")],
        Json(shared.cert()),
    )
}

/// Largest body `POST /admin/revoke` reads (a revocation is a line of JSON).
const ADMIN_MAX_BODY: usize = 4096;

/// How long the endpoint waits for the directory to take a revocation.
const PUBLISH_WAIT: Duration = Duration::from_secs(3);

/// `POST /admin/revoke`: revoke a player's tokens (`{"sub": "…",
/// "issued_up_to": UNIX_SECONDS}`, default now) or one token (`{"jti":
/// "…"}`), authorized by `Authorization: Bearer <JWT>` signed with one of
/// the server's keys, for its audience, with `"admin": true`. Applied on
/// this node at once (its players cut off), then published to every node
/// of the cluster through the directory. Answers 200, or 400 (body), 401
/// (no or bad token), 403 (not an admin token), 404 (no access control),
/// 413 (body over 4 KiB), 503 (applied here, the directory did not take
/// it: retry, it is idempotent). The token is never logged.
async fn admin_revoke(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let (result, status, answer) = admin_revoke_inner(&shared, &headers, body).await;
    shared.metrics.admin_request(result);
    let mut resp = (status, Json(answer)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    resp
}

async fn admin_revoke_inner(
    shared: &Shared,
    headers: &HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> (AdminResult, StatusCode, serde_json::Value) {
    let refuse =
        |result, status, why: String| (result, status, serde_json::json!({ "error": why }));
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    let unix = now().unix_ms / 1000;
    let checked =
        match token {
            Some(t) => shared.lock().core.check_admin(t, unix),
            None if !shared.lock().core.access_required() => Err(AdminRefusal::NoAccessControl),
            None => return refuse(
                AdminResult::Unauthorized,
                StatusCode::UNAUTHORIZED,
                "an operator's token is required: Authorization: Bearer <JWT with \"admin\": true>"
                    .into(),
            ),
        };
    let admin = match checked {
        Ok(g) => g,
        Err(e) => {
            debug!("admin request refused: {e}");
            let (result, status) = match e {
                AdminRefusal::NoAccessControl => (AdminResult::NotFound, StatusCode::NOT_FOUND),
                AdminRefusal::Token(_) | AdminRefusal::Revoked => {
                    (AdminResult::Unauthorized, StatusCode::UNAUTHORIZED)
                }
                AdminRefusal::NotAdmin => (AdminResult::Forbidden, StatusCode::FORBIDDEN),
            };
            return refuse(result, status, e.to_string());
        }
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            return refuse(
                AdminResult::BadRequest,
                e.status(),
                format!("cannot read the body: {}", e.body_text()),
            )
        }
    };
    let revocation = match Revocation::from_json(&body, unix) {
        Ok(r) => r,
        Err(why) => return refuse(AdminResult::BadRequest, StatusCode::BAD_REQUEST, why),
    };
    let json = revocation.to_json();
    let (_, cut) = shared.apply_revocation(&json, revocation);
    tracing::info!(admin = %admin.sub, revocation = %json, cut, "revocation from the admin endpoint");
    let revoked: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
    let Some(published) = shared.publish_revocation(json) else {
        return (
            AdminResult::Ok,
            StatusCode::OK,
            serde_json::json!({ "revoked": revoked, "cut_here": cut, "cluster": "single node" }),
        );
    };
    let outcome = match tokio::time::timeout(PUBLISH_WAIT, published).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err("this node is shutting down".into()),
        Err(_) => Err(format!("no answer within {PUBLISH_WAIT:?}")),
    };
    match outcome {
        Ok(()) => (
            AdminResult::Ok,
            StatusCode::OK,
            serde_json::json!({ "revoked": revoked, "cut_here": cut, "cluster": "published" }),
        ),
        Err(why) => (
            AdminResult::Unavailable,
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({
                "error": format!(
                    "applied on this node only ({cut} players cut off): the cluster directory did \
                     not take it ({why}); the other nodes do not know it: send it again"
                ),
                "revoked": revoked,
                "cut_here": cut,
            }),
        ),
    }
}

/// Open TCP connections per client address, for the per-address cap.
#[derive(Default)]
struct TcpCount(Mutex<HashMap<IpAddr, usize>>);

/// One counted TCP connection; uncounted when dropped.
struct TcpSlot {
    count: Arc<TcpCount>,
    ip: IpAddr,
}

impl TcpCount {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<TcpSlot> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(TcpSlot {
            count: self.clone(),
            ip,
        })
    }
}

impl Drop for TcpSlot {
    fn drop(&mut self) {
        let mut m = self.count.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Serve the HTTP port until `stop`. Each TCP connection must send its
/// request headers within `--http-header-timeout-ms` (a slowloris client is
/// cut off), and one address may hold at most `--max-connections-per-ip` of
/// them until they are upgraded to WebSockets (which the session core then
/// counts). Behind a trusted proxy every client shares the proxy's address,
/// so for connections from the proxy (every connection, when the proxy is
/// known by its hop count only) that cap is left to the core, which sees the
/// forwarded address; `--trusted-proxies` keeps it for everyone else.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let (max_per_ip, header_timeout) = {
        let st = shared.lock();
        let l = st.core.limits();
        (
            l.max_connections_per_ip,
            Duration::from_millis(l.http_header_timeout_ms.max(1)),
        )
    };
    let count = Arc::new(TcpCount::default());
    let mut warned_accept = false;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, most likely: wait instead of spinning.
                if !warned_accept {
                    warn!("HTTP accept failed: {e} (file-descriptor limit?)");
                    warned_accept = true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ip = address_key(peer.ip());
        // A connection from our own proxy carries many clients: its cap is
        // the core's, per forwarded address, once the headers are read. Any
        // other peer (one that reached the port around the proxy) is capped
        // here on its own address.
        let cap = match &shared.proxy {
            Some(p) if p.is_proxy(peer.ip()) => usize::MAX,
            _ => max_per_ip,
        };
        let Some(slot) = count.take(ip, cap) else {
            shared.metrics.refused(Refusal::TcpPerIp);
            debug!(%peer, "HTTP connection refused: per-address cap");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            tower_service::Service::call(&mut router.clone(), req)
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .with_upgrades();
        let metrics = shared.clone();
        tokio::spawn(async move {
            metrics.metrics.http_connections.inc();
            if let Err(e) = conn.await {
                debug!(%peer, "HTTP connection ended: {e}");
            }
            metrics.metrics.http_connections.dec();
            drop(slot);
        });
    }
}
