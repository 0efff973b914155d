//! ICE server list for each client, with short-lived TURN credentials.
//!
//! coturn's "TURN REST API" scheme (`use-auth-secret`): the server and coturn
//! share a secret; a credential is `username = "<expiry unix time>:<peer id>"`,
//! `password = base64(HMAC-SHA1(secret, username))`. coturn recomputes the HMAC
//! and refuses the username once its time has passed, so credentials handed to
//! a player expire on their own and the secret never leaves the servers.

use std::time::Duration;

use base64::Engine;

use crate::protocol::{IceServer, PeerId};

/// Where clients find STUN and TURN, and how TURN credentials are minted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceConfig {
    /// STUN URLs handed to clients, e.g. `stun:turn.example.com:3478`.
    pub stun_urls: Vec<String>,
    /// TURN URLs handed to clients, e.g. `turn:turn.example.com:3478?transport=udp`.
    /// Sent only together with credentials, so they need `turn_secret`.
    pub turn_urls: Vec<String>,
    /// coturn's `static-auth-secret` (`use-auth-secret`).
    pub turn_secret: Option<String>,
    /// Lifetime of a TURN credential in seconds (coturn refuses it afterwards).
    pub turn_ttl_secs: u64,
}

impl Default for IceConfig {
    fn default() -> Self {
        IceConfig {
            stun_urls: Vec::new(),
            turn_urls: Vec::new(),
            turn_secret: None,
            turn_ttl_secs: 3600,
        }
    }
}

impl IceConfig {
    /// How long a TURN credential stays valid.
    pub fn turn_ttl(&self) -> Duration {
        Duration::from_secs(self.turn_ttl_secs)
    }

    /// The `iceServers` list for one peer at wall-clock time `now_unix` (seconds).
    pub fn ice_servers(&self, peer: PeerId, now_unix: u64) -> Vec<IceServer> {
        self.ice_servers_for(&peer.to_string(), now_unix, None)
    }

    /// The `iceServers` list for `user` (the coturn REST username's user
    /// part: the peer id, or the access token's `sub`), valid for the TURN
    /// TTL but never past `not_after` (Unix seconds: the token's `exp`).
    pub fn ice_servers_for(
        &self,
        user: &str,
        now_unix: u64,
        not_after: Option<u64>,
    ) -> Vec<IceServer> {
        let mut out = Vec::new();
        if !self.stun_urls.is_empty() {
            out.push(IceServer {
                urls: self.stun_urls.clone(),
                username: None,
                credential: None,
            });
        }
        if let (Some(secret), false) = (&self.turn_secret, self.turn_urls.is_empty()) {
            let expiry = (now_unix + self.turn_ttl_secs).min(not_after.unwrap_or(u64::MAX));
            let (username, credential) = turn_credential(secret, user, expiry);
            out.push(IceServer {
                urls: self.turn_urls.clone(),
                username: Some(username),
                credential: Some(credential),
            });
        }
        out
    }
}

/// coturn REST-API credential for `user`, valid until `expiry_unix`.
pub fn turn_credential(secret: &str, user: &str, expiry_unix: u64) -> (String, String) {
    let username = format!("{expiry_unix}:{user}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let tag = ring::hmac::sign(&key, username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
    (username, password)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};

    /// Checked against an independent HMAC-SHA1 implementation (RustCrypto), not ring.
    #[test]
    fn credential_matches_independent_hmac() {
        let (user, pass) = turn_credential("s3cret", "42", 1_700_000_000);
        assert_eq!(user, "1700000000:42");
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"s3cret").unwrap();
        mac.update(user.as_bytes());
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(pass, expected);
    }

    /// A fixed credential computed outside Rust, with the formula coturn's
    /// `use-auth-secret` documents:
    /// `printf %s 1700000010:42 | openssl dgst -sha1 -hmac s3cret -binary | base64`.
    /// It catches a wrong username format (`expiry:user`), a wrong key or input,
    /// and a wrong encoding: the value holds `+` and `/` (URL-safe base64 differs)
    /// and ends in `=` (unpadded base64 differs).
    #[test]
    fn credential_known_vector() {
        let (user, pass) = turn_credential("s3cret", "42", 1_700_000_010);
        assert_eq!(user, "1700000010:42");
        assert_eq!(pass, "+G6/8cMyEu3yAg1BLAvjsUFaYTU=");
    }

    #[test]
    fn stun_only_without_secret() {
        let cfg = IceConfig {
            stun_urls: vec!["stun:a:3478".into()],
            turn_urls: vec!["turn:a:3478".into()],
            turn_secret: None,
            turn_ttl_secs: 60,
        };
        let servers = cfg.ice_servers(7, 1000);
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0].username, None);

        let with_secret = IceConfig {
            turn_secret: Some("x".into()),
            ..cfg
        };
        let servers = with_secret.ice_servers(7, 1000);
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[1].username.as_deref(), Some("1060:7"));
        assert_eq!(servers[1].urls, vec!["turn:a:3478".to_string()]);
    }
}
