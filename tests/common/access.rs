//! Access control in tests: one HS256 key the servers verify with
//! (`--auth KEY --auth-audience AUD`) and the tests sign with, tokens for
//! players and operators, and raw HTTP requests to the admin endpoint.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use flightsim_p2p::auth::Signer;
use flightsim_p2p::client::{AccessToken, ClientConfig};
use serde_json::json;

pub const AUD: &str = "access-control-test";
/// The HS256 key the servers verify with and the tests sign with.
pub const KEY: &str = "main:hs256:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY";
/// A key the servers do not hold.
pub const OTHER_KEY: &str = "other:hs256:OTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTBmZWRjYmE";

/// `serve` flags for access control with [`KEY`] and [`AUD`].
pub const AUTH_FLAGS: [&str; 4] = ["--auth", KEY, "--auth-audience", AUD];

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A token for `sub` signed with `key`, issued `iat_offset` seconds from
/// now, valid 10 minutes, with `extra` claims on top.
pub fn token_with(key: &str, sub: &str, iat_offset: i64, extra: serde_json::Value) -> String {
    let iat = unix_now().saturating_add_signed(iat_offset);
    let mut c = json!({ "sub": sub, "aud": AUD, "iat": iat, "exp": unix_now() + 600 });
    if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    Signer::from_spec(key).expect("key").sign(&c)
}

/// A token for `sub` signed with [`KEY`], issued `iat_offset` seconds from now.
pub fn token_at(sub: &str, iat_offset: i64, extra: serde_json::Value) -> String {
    token_with(KEY, sub, iat_offset, extra)
}

pub fn token(sub: &str, extra: serde_json::Value) -> String {
    token_at(sub, 0, extra)
}

/// An operator's token (`"admin": true`).
pub fn admin_token() -> String {
    token("ops", json!({ "admin": true }))
}

/// `cfg` with token `t`, and no automatic resume (a refusal is the answer).
pub fn with_token(mut cfg: ClientConfig, t: &str) -> ClientConfig {
    cfg.token = Some(AccessToken::Fixed(t.to_string()));
    cfg.auto_resume = false;
    cfg
}

/// One HTTP/1.1 request on its own connection: (status, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).expect("write");
    // An oversized body may be refused before it is all sent.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// `POST /admin/revoke` with `token` (if any) and `body`.
pub fn revoke(addr: SocketAddr, token: Option<&str>, body: &str) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    http(addr, "POST", "/admin/revoke", &headers, body.as_bytes())
}
