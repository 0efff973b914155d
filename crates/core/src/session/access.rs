//! Access control inside the session core: the token a connection brings
//! decides whether it becomes a peer at all, and what that peer may do.
//!
//! Why here and not in the transports: every transport hands the core the
//! same thing (a `Hello`, and the token from the connection's URL if it had
//! one), and the rights must hold across resume, expiry and revocation,
//! which are the core's business. The checks run before any peer, seat or
//! session exists, so a refused client leaves no state behind.

use std::time::Duration;

use super::{ConnId, Core, Hello, Now, Timer};
use crate::auth::{Access, AuthError, Grant, Relay, Revocation};
use crate::limits::TokenBucket;
use crate::protocol::{ErrorCode, LeaveReason, PeerId, ServerMsg};

/// How long a revocation is remembered (tokens are expected to live far
/// shorter; a revoked player's older token cannot outlive this).
pub(super) const REVOCATION_MEMORY: Duration = Duration::from_secs(24 * 3600);

impl Core {
    /// Require tokens from now on (`serve --auth`). Without this call the
    /// server is open, as it always was.
    pub fn set_access(&mut self, access: Access) {
        self.access = Some(access);
    }

    /// Whether this core requires tokens.
    pub fn access_required(&self) -> bool {
        self.access.is_some()
    }

    /// The token a connection brought in its URL (`?access_token=` on the
    /// WebTransport CONNECT or the WebSocket upgrade). A token in `Hello`
    /// takes precedence.
    pub fn set_url_token(&mut self, conn: ConnId, token: String) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.url_token = Some(token);
        }
    }

    /// Revoke a player's tokens or one token, on this node: every connected
    /// peer whose token it refuses is cut off (`token_revoked`) and leaves
    /// its session, and tokens it refuses are refused from now on (for
    /// [`REVOCATION_MEMORY`]). Seats it refuses that wait for a resume are
    /// dropped too. Returns how many connected peers were cut off. In a
    /// cluster the shell calls this on every node (Redis pub/sub).
    pub fn revoke(&mut self, now: Now, r: Revocation) -> usize {
        let until = now.mono + REVOCATION_MEMORY;
        self.revoked.retain(|(_, at)| *at > now.mono);
        // The same revocation heard twice (pub/sub and the stored set) is kept once.
        match self.revoked.iter_mut().find(|(x, _)| *x == r) {
            Some(known) => known.1 = until,
            None => self.revoked.push((r.clone(), until)),
        }
        let hit: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.grant.as_ref().is_some_and(|g| r.refuses(g)))
            .map(|(id, _)| *id)
            .collect();
        let mut cut = 0;
        for p in &hit {
            if let Some(conn) = self.peers.get(p).and_then(|x| x.conn) {
                cut += 1;
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.peer = None;
                }
                self.fail(
                    conn,
                    ErrorCode::TokenRevoked,
                    "your access was revoked by the operator".into(),
                );
            }
            self.remove_peer(*p, LeaveReason::Left);
        }
        cut
    }

    /// Check an operator's token (the admin endpoint's bearer token): a
    /// valid token of this deployment, not revoked, with `"admin": true`.
    pub fn check_admin(&self, token: &str, now_unix: u64) -> Result<Grant, AdminRefusal> {
        let access = self.access.as_ref().ok_or(AdminRefusal::NoAccessControl)?;
        let g = access
            .verifier
            .verify(token, now_unix)
            .map_err(AdminRefusal::Token)?;
        if self.revoked.iter().any(|(r, _)| r.refuses(&g)) {
            return Err(AdminRefusal::Revoked);
        }
        if !g.admin {
            return Err(AdminRefusal::NotAdmin);
        }
        Ok(g)
    }

    /// The `Hello`'s token, checked: `Ok(None)` on an open server,
    /// `Ok(Some(grant))` when it passes, `Err(())` after refusing the
    /// connection (an error and a close are queued; nothing else is kept).
    pub(super) fn check_token(
        &mut self,
        now: Now,
        conn: ConnId,
        hello: &Hello,
    ) -> Result<Option<Grant>, ()> {
        let Some(access) = &self.access else {
            return Ok(None);
        };
        let token = hello
            .access_token
            .as_deref()
            .or_else(|| self.conns.get(&conn).and_then(|c| c.url_token.as_deref()))
            .unwrap_or("");
        let refused = match access.verifier.verify(token, now.unix_ms / 1000) {
            Ok(g) => match self.revoked.iter().find(|(r, _)| r.refuses(&g)) {
                None => return Ok(Some(g)),
                Some(_) => (
                    ErrorCode::TokenRevoked,
                    "this access token was revoked".to_string(),
                ),
            },
            Err(e) => (code_of(e), format!("{}: {e}", e.reason())),
        };
        self.fail(conn, refused.0, refused.1);
        Err(())
    }

    /// A peer's new grant (a new peer, or a resume with a fresh token):
    /// its name, relay rights and expiry timers follow the token.
    pub(super) fn apply_grant(&mut self, now: Now, conn: ConnId, p: PeerId, grant: Grant) {
        let warn_before = self
            .access
            .as_ref()
            .map_or(Duration::ZERO, |a| a.warn_before);
        self.charge_conn(now.mono, conn, &grant.sub);
        let limit = self.limits.relay_bytes_per_sec;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.relay_denied = grant.relay == Relay::Denied;
            if let Relay::BytesPerSec(r) = grant.relay {
                if limit == 0 || r < limit {
                    c.relay_bytes = TokenBucket::new(now.mono, r, r);
                }
            }
        }
        // The token stops being valid at exp plus the leeway for clock skew
        // (as the verifier counts): that is when the connection is cut.
        let leeway = self.access.as_ref().map_or(0, |a| a.verifier.leeway_secs);
        let exp_ms = grant.exp.saturating_add(leeway).saturating_mul(1000);
        let left = Duration::from_millis(exp_ms.saturating_sub(now.unix_ms));
        let ends = now.mono + left;
        if let Some(warn_at) = ends.checked_sub(warn_before).filter(|_| left > warn_before) {
            self.arm(warn_at, Timer::TokenWarn(p, grant.exp));
        }
        self.arm(ends, Timer::TokenEnd(p, grant.exp));
        if let Some(peer) = self.peers.get_mut(&p) {
            if let Some(name) = &grant.name {
                peer.name = name.clone();
            }
            peer.grant = Some(grant);
        }
    }

    /// A token timer: warn before the peer's token expires, or cut the
    /// connection when it has. Acts only if the peer still holds the token
    /// with that `exp` (a resume with a fresh token moved it on).
    pub(super) fn token_timer(&mut self, p: PeerId, exp: u64, end: bool) {
        let Some(peer) = self.peers.get(&p) else {
            return;
        };
        if peer.grant.as_ref().map(|g| g.exp) != Some(exp) {
            return;
        }
        let Some(conn) = peer.conn else {
            return;
        };
        if end {
            self.fail(
                conn,
                ErrorCode::TokenExpired,
                "your access token expired: reconnect with a fresh one (your seat is kept for the resume grace)".into(),
            );
        } else {
            let secs = self.access.as_ref().map_or(0, |a| a.warn_before.as_secs());
            self.send(
                conn,
                ServerMsg::Error {
                    code: ErrorCode::TokenExpired as u16,
                    message: format!(
                        "your access token expires in {secs} s: reconnect with a fresh one to keep your seat"
                    ),
                },
            );
        }
    }

    /// The grant of the peer a connection speaks for, if the server checks tokens.
    pub(super) fn grant_of(&self, p: PeerId) -> Option<&Grant> {
        self.peers.get(&p).and_then(|x| x.grant.as_ref())
    }
}

/// Why an operator's token was refused at the admin endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRefusal {
    /// The server has no access control (no `--auth`): there is nothing to
    /// revoke and no key to check an operator's token with.
    NoAccessControl,
    /// The token does not verify (the reason says why).
    Token(AuthError),
    /// The token was revoked.
    Revoked,
    /// A valid token without `"admin": true` (a player's token).
    NotAdmin,
}

impl std::fmt::Display for AdminRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminRefusal::NoAccessControl => {
                f.write_str("this server has no access control (serve --auth): nothing to revoke")
            }
            AdminRefusal::Token(e) => write!(f, "the admin token is refused: {}: {e}", e.reason()),
            AdminRefusal::Revoked => f.write_str("the admin token was revoked"),
            AdminRefusal::NotAdmin => {
                f.write_str("this token is not an operator's: it lacks the claim \"admin\": true")
            }
        }
    }
}

/// The wire code for a refused token.
fn code_of(e: AuthError) -> ErrorCode {
    match e {
        AuthError::Missing => ErrorCode::TokenRequired,
        AuthError::Expired | AuthError::NotYetValid => ErrorCode::TokenExpired,
        _ => ErrorCode::TokenInvalid,
    }
}
