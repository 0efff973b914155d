//! The HTTP side port (TCP): health, metrics, the dev certificate hash, the
//! WebSocket fallback transport (`/ws`), and the browser client's static files.
//!
//! Browsers need the dev certificate's hash before they can open WebTransport
//! (`serverCertificateHashes`), so it is served here over plain HTTP; a page
//! served from `http://localhost` is a secure context, which WebTransport requires.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::server::Shared;

pub fn router(shared: Arc<Shared>, web_dir: Option<PathBuf>) -> Router {
    let api = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/cert-hash", get(cert_hash))
        .route("/ws", get(crate::websocket::upgrade))
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
