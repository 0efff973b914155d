//! Access control: who may create, join and relay, decided by tokens that
//! the game's own backend signs.
//!
//! Why a module of its own: a token is read before any session state
//! exists, by every transport (QUIC `Hello`, the WebTransport CONNECT, the
//! WebSocket upgrade), on every node of a cluster. The rules are the same
//! everywhere, so they live here as pure code: bytes and the current Unix
//! time in, a [`Grant`] or an [`AuthError`] out. No clock, no I/O; the
//! server reads key files and the clock and asks [`Verifier::verify`].
//!
//! The token is a compact JWT (RFC 7519) signed with HS256 (a secret shared
//! with the backend) or EdDSA/Ed25519 (the backend keeps the private key,
//! the server only the public one). Several keys may be loaded at once, each
//! with a `kid`, so the backend can rotate keys without downtime. `alg:
//! none`, an algorithm that does not match the key, an unknown `kid`, a
//! token over [`Verifier::max_token_bytes`], and a token without `exp` are
//! refused. ring does all the cryptography (it is the only provider).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::{hmac, signature};
use serde::Deserialize;

use crate::session::normalize_code;

/// Default cap on a token's length in bytes; a real token is a few hundred.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 4096;
/// Default clock skew allowed on `exp` and `nbf`, in seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 10;

/// The algorithm a key verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// HMAC-SHA-256 with a shared secret (JWT `alg: HS256`).
    Hs256,
    /// Ed25519 signatures (JWT `alg: EdDSA`).
    EdDsa,
}

impl Alg {
    /// The JWT `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::EdDsa => "EdDSA",
        }
    }
}

/// One verification key with its id.
#[derive(Clone)]
pub struct Key {
    /// The `kid` a token names to pick this key.
    pub kid: String,
    alg: Alg,
    material: Vec<u8>,
}

impl std::fmt::Debug for Key {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Why a key specification was refused (at startup: the message is for the operator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(pub String);

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

impl Key {
    /// An HS256 key. The secret must be at least 32 bytes (RFC 7518 §3.2).
    pub fn hs256(kid: &str, secret: &[u8]) -> Result<Key, KeyError> {
        check_kid(kid)?;
        if secret.len() < 32 {
            return Err(KeyError(format!(
                "key {kid}: an HS256 secret needs at least 32 bytes, this one has {}",
                secret.len()
            )));
        }
        Ok(Key {
            kid: kid.to_string(),
            alg: Alg::Hs256,
            material: secret.to_vec(),
        })
    }

    /// An Ed25519 public key (32 bytes).
    pub fn ed25519(kid: &str, public_key: &[u8]) -> Result<Key, KeyError> {
        check_kid(kid)?;
        if public_key.len() != 32 {
            return Err(KeyError(format!(
                "key {kid}: an Ed25519 public key is 32 bytes, this one has {}",
                public_key.len()
            )));
        }
        Ok(Key {
            kid: kid.to_string(),
            alg: Alg::EdDsa,
            material: public_key.to_vec(),
        })
    }

    /// Parse `KID:hs256:SECRET` or `KID:eddsa:PUBLIC_KEY`, the material in
    /// base64url (padding optional). Reading `@file` values is the caller's.
    pub fn from_spec(spec: &str) -> Result<Key, KeyError> {
        let mut parts = spec.trim().splitn(3, ':');
        let (Some(kid), Some(alg), Some(material)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(KeyError(
                "a key is KID:hs256:SECRET or KID:eddsa:PUBLIC_KEY (base64url)".into(),
            ));
        };
        let bytes = decode_b64url(material.trim())
            .ok_or_else(|| KeyError(format!("key {kid}: the key material is not base64url")))?;
        match alg.to_ascii_lowercase().as_str() {
            "hs256" => Key::hs256(kid, &bytes),
            "eddsa" | "ed25519" => Key::ed25519(kid, &bytes),
            other => Err(KeyError(format!(
                "key {kid}: algorithm {other:?} is not supported (hs256 or eddsa)"
            ))),
        }
    }

    /// The algorithm this key verifies.
    pub fn alg(&self) -> Alg {
        self.alg
    }

    fn verifies(&self, signed: &[u8], sig: &[u8]) -> bool {
        match self.alg {
            Alg::Hs256 => {
                let k = hmac::Key::new(hmac::HMAC_SHA256, &self.material);
                hmac::verify(&k, signed, sig).is_ok()
            }
            Alg::EdDsa => signature::UnparsedPublicKey::new(&signature::ED25519, &self.material)
                .verify(signed, sig)
                .is_ok(),
        }
    }
}

fn check_kid(kid: &str) -> Result<(), KeyError> {
    if kid.is_empty()
        || kid.len() > 64
        || !kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(KeyError(format!(
            "key id {kid:?}: 1-64 characters of A-Z, a-z, 0-9, '-', '_', '.'"
        )));
    }
    Ok(())
}

fn decode_b64url(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

/// Why a token was refused. Each maps to one error code on the wire
/// ([`AuthError::reason`] names it in logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthError {
    /// The server requires a token and none came.
    Missing,
    /// Longer than the verifier's cap.
    TooLarge,
    /// Not three base64url parts, or a header or payload that is not the
    /// expected JSON.
    Malformed,
    /// `alg` is `none` or not one this server verifies.
    UnsupportedAlg,
    /// The token names no `kid` this server holds (or names none while
    /// several keys are loaded).
    UnknownKey,
    /// The header's `alg` is not the named key's algorithm.
    AlgMismatch,
    /// The signature does not verify.
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    Expired,
    /// `nbf` is still to come (beyond the leeway).
    NotYetValid,
    /// `aud` does not name this deployment.
    WrongAudience,
}

impl AuthError {
    /// Snake-case name, for logs and metric labels.
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::TooLarge => "too_large",
            AuthError::Malformed => "malformed",
            AuthError::UnsupportedAlg => "unsupported_alg",
            AuthError::UnknownKey => "unknown_key",
            AuthError::AlgMismatch => "alg_mismatch",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::WrongAudience => "wrong_audience",
        }
    }

    /// Every reason, for metrics that list them all.
    pub const ALL: [AuthError; 10] = [
        AuthError::Missing,
        AuthError::TooLarge,
        AuthError::Malformed,
        AuthError::UnsupportedAlg,
        AuthError::UnknownKey,
        AuthError::AlgMismatch,
        AuthError::BadSignature,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::WrongAudience,
    ];
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthError::Missing => "this server needs an access token",
            AuthError::TooLarge => "the access token is too long",
            AuthError::Malformed => "the access token is not a well-formed JWT",
            AuthError::UnsupportedAlg => "the access token's algorithm is not HS256 or EdDSA",
            AuthError::UnknownKey => "the access token names no key this server holds",
            AuthError::AlgMismatch => "the access token's algorithm does not match its key",
            AuthError::BadSignature => "the access token's signature does not verify",
            AuthError::Expired => "the access token has expired",
            AuthError::NotYetValid => "the access token is not valid yet",
            AuthError::WrongAudience => "the access token is for another deployment",
        })
    }
}

impl std::error::Error for AuthError {}

/// Which sessions a token may join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sessions {
    /// Any session (the claim is absent or `"*"`).
    Any,
    /// Only these join codes (normalized).
    Codes(Vec<String>),
}

impl Sessions {
    /// Whether the session with this (typed) code may be joined.
    pub fn allows(&self, code: &str) -> bool {
        match self {
            Sessions::Any => true,
            Sessions::Codes(codes) => {
                let c = normalize_code(code);
                codes.contains(&c)
            }
        }
    }
}

/// What a token may use the relay for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay {
    /// Not at all (`"relay": false`).
    Denied,
    /// Within the server's own limits (claim absent or `true`).
    Allowed,
    /// At most this many bytes per second (and the server's limits).
    BytesPerSec(u32),
}

/// What a verified token grants. Claims that restrict are optional: without
/// them the server's own limits apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `sub`: the player, as the game's backend knows them.
    pub sub: String,
    /// `exp`, Unix seconds.
    pub exp: u64,
    /// `iat`, Unix seconds, if the token says when it was issued (a player's
    /// revocation refuses tokens issued before it).
    pub iat: Option<u64>,
    /// `jti`, if the token has one (for revocation).
    pub jti: Option<String>,
    /// `create`: may create sessions (default: yes).
    pub create: bool,
    /// `sessions`: which sessions it may join (default: any).
    pub sessions: Sessions,
    /// `max_peers`: a cap on the sessions it creates.
    pub max_peers: Option<u32>,
    /// `relay`: relay use.
    pub relay: Relay,
    /// `name`: the display name bound to the token (replaces the client's).
    pub name: Option<String>,
    /// `admin`: the token may call the operator's endpoints (`POST
    /// /admin/revoke`); default no. A game backend never puts it in a
    /// player's token.
    pub admin: bool,
}

/// Checks tokens against a set of keys and this deployment's audience.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: Vec<Key>,
    /// `aud` that tokens must name.
    pub audience: String,
    /// Clock skew allowed on `exp` and `nbf`, seconds.
    pub leeway_secs: u64,
    /// Longest token accepted, bytes.
    pub max_token_bytes: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
}

#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    create: Option<bool>,
    #[serde(default)]
    sessions: Option<SessionsClaim>,
    #[serde(default)]
    max_peers: Option<u32>,
    #[serde(default)]
    relay: Option<RelayClaim>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    admin: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SessionsClaim {
    All(String),
    Codes(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RelayClaim {
    Flag(bool),
    Rate(u32),
}

/// Longest `sub`, `jti` and `name` accepted, bytes.
const MAX_CLAIM_TEXT: usize = 256;
/// Most join codes a `sessions` claim may list.
const MAX_SESSION_CODES: usize = 64;

impl Verifier {
    /// A verifier over `keys` (at least one; `kid`s distinct) for `audience`.
    pub fn new(keys: Vec<Key>, audience: &str) -> Result<Verifier, KeyError> {
        if keys.is_empty() {
            return Err(KeyError("access control needs at least one key".into()));
        }
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].iter().any(|o| o.kid == k.kid) {
                return Err(KeyError(format!("key id {:?} is given twice", k.kid)));
            }
        }
        if audience.trim().is_empty() {
            return Err(KeyError(
                "access control needs an audience (this deployment's name)".into(),
            ));
        }
        Ok(Verifier {
            keys,
            audience: audience.trim().to_string(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
        })
    }

    /// The loaded keys' ids, for the startup log.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.kid.as_str())
    }

    /// Verify `token` at `now_unix` (seconds). Checks, in order: size,
    /// shape, header (`alg`, `kid`), signature, then the claims; nothing of
    /// the payload is believed before the signature verifies.
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<Grant, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > self.max_token_bytes {
            return Err(AuthError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        let header: Header = decode_b64url(h64)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(AuthError::Malformed)?;
        if header
            .typ
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
        {
            return Err(AuthError::Malformed);
        }
        let alg = match header.alg.as_str() {
            "HS256" => Alg::Hs256,
            "EdDSA" => Alg::EdDsa,
            _ => return Err(AuthError::UnsupportedAlg),
        };
        let key = match &header.kid {
            Some(kid) => self.keys.iter().find(|k| k.kid == *kid),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
        .ok_or(AuthError::UnknownKey)?;
        if key.alg != alg {
            return Err(AuthError::AlgMismatch);
        }
        let sig = decode_b64url(s64).ok_or(AuthError::Malformed)?;
        let signed_len = h64.len() + 1 + p64.len();
        if !key.verifies(&token.as_bytes()[..signed_len], &sig) {
            return Err(AuthError::BadSignature);
        }
        let p: Payload = decode_b64url(p64)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(AuthError::Malformed)?;
        let exp = p.exp.ok_or(AuthError::Malformed)?;
        if now_unix >= exp.saturating_add(self.leeway_secs) {
            return Err(AuthError::Expired);
        }
        if p.nbf
            .is_some_and(|nbf| now_unix.saturating_add(self.leeway_secs) < nbf)
        {
            return Err(AuthError::NotYetValid);
        }
        let aud_ok = match &p.aud {
            Some(Audience::One(a)) => *a == self.audience,
            Some(Audience::Many(v)) => v.contains(&self.audience),
            None => false,
        };
        if !aud_ok {
            return Err(AuthError::WrongAudience);
        }
        let sub = p
            .sub
            .filter(|s| !s.is_empty())
            .ok_or(AuthError::Malformed)?;
        let too_long = |s: &Option<String>| s.as_ref().is_some_and(|s| s.len() > MAX_CLAIM_TEXT);
        if sub.len() > MAX_CLAIM_TEXT || too_long(&p.jti) || too_long(&p.name) {
            return Err(AuthError::Malformed);
        }
        let sessions = match p.sessions {
            None => Sessions::Any,
            Some(SessionsClaim::All(s)) if s == "*" => Sessions::Any,
            Some(SessionsClaim::All(_)) => return Err(AuthError::Malformed),
            Some(SessionsClaim::Codes(v)) if v.len() <= MAX_SESSION_CODES => {
                Sessions::Codes(v.iter().map(|c| normalize_code(c)).collect())
            }
            Some(SessionsClaim::Codes(_)) => return Err(AuthError::Malformed),
        };
        let relay = match p.relay {
            None | Some(RelayClaim::Flag(true)) => Relay::Allowed,
            Some(RelayClaim::Flag(false)) | Some(RelayClaim::Rate(0)) => Relay::Denied,
            Some(RelayClaim::Rate(r)) => Relay::BytesPerSec(r),
        };
        Ok(Grant {
            sub,
            exp,
            iat: p.iat,
            jti: p.jti,
            create: p.create.unwrap_or(true),
            sessions,
            max_peers: p.max_peers,
            relay,
            name: p.name,
            admin: p.admin.unwrap_or(false),
        })
    }
}

/// Access control as the session core applies it.
#[derive(Debug, Clone)]
pub struct Access {
    /// Checks the tokens.
    pub verifier: Verifier,
    /// How long before a token expires in session the player is warned
    /// (an `Error(token_expired)` without a close): time to reconnect with a
    /// fresh token and keep the seat.
    pub warn_before: std::time::Duration,
}

/// A revocation: every token of a player issued up to a time, or one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// Tokens whose `sub` is this and whose `iat` is at or before
    /// `issued_up_to` (Unix seconds), or that have no `iat`.
    Sub {
        /// The player.
        sub: String,
        /// Tokens issued later pass again.
        issued_up_to: u64,
    },
    /// The token with this `jti`.
    Jti(String),
}

/// A revocation as it travels between nodes (Redis pub/sub and the stored
/// set) and as the admin endpoint takes it: `{"sub": "alice",
/// "issued_up_to": 1700000000}` or `{"jti": "t-1"}`. One canonical JSON
/// text per revocation, so a node that hears it twice (pub/sub and the
/// stored set) recognises it.
#[derive(Debug, Clone, Default, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevocationJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issued_up_to: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
}

impl Revocation {
    /// Read a revocation from JSON: `sub` (with `issued_up_to`, Unix
    /// seconds, defaulting to `now_unix`: every token issued so far) or
    /// `jti`, not both. The error says what is wrong, for the operator.
    pub fn from_json(bytes: &[u8], now_unix: u64) -> Result<Revocation, String> {
        let j: RevocationJson = serde_json::from_slice(bytes).map_err(|e| {
            format!(
                "the body must be JSON {{\"sub\": \"…\", \"issued_up_to\": UNIX_SECONDS}} or {{\"jti\": \"…\"}}: {e}"
            )
        })?;
        let text_ok = |s: &str| !s.is_empty() && s.len() <= MAX_CLAIM_TEXT;
        match (j.sub, j.jti) {
            (Some(sub), None) if text_ok(&sub) => Ok(Revocation::Sub {
                sub,
                issued_up_to: j.issued_up_to.unwrap_or(now_unix),
            }),
            (None, Some(jti)) if text_ok(&jti) && j.issued_up_to.is_none() => {
                Ok(Revocation::Jti(jti))
            }
            (Some(_), Some(_)) => Err("give `sub` or `jti`, not both".into()),
            (None, None) => Err("give `sub` (a player) or `jti` (one token)".into()),
            (None, Some(_)) if j.issued_up_to.is_some() => {
                Err("`issued_up_to` goes with `sub`, not `jti`".into())
            }
            _ => Err(format!("`sub` and `jti` are 1 to {MAX_CLAIM_TEXT} bytes")),
        }
    }

    /// The canonical JSON text of this revocation (what [`Revocation::from_json`] reads).
    pub fn to_json(&self) -> String {
        let j = match self {
            Revocation::Sub { sub, issued_up_to } => RevocationJson {
                sub: Some(sub.clone()),
                issued_up_to: Some(*issued_up_to),
                jti: None,
            },
            Revocation::Jti(jti) => RevocationJson {
                jti: Some(jti.clone()),
                ..RevocationJson::default()
            },
        };
        serde_json::to_string(&j).unwrap_or_default()
    }

    /// Whether this revocation refuses `g`.
    pub fn refuses(&self, g: &Grant) -> bool {
        match self {
            Revocation::Sub { sub, issued_up_to } => {
                *sub == g.sub && g.iat.is_none_or(|iat| iat <= *issued_up_to)
            }
            Revocation::Jti(j) => g.jti.as_deref() == Some(j.as_str()),
        }
    }
}

/// Signs tokens: for `flightsim-p2p token`, tests, and as a reference for a
/// game backend's own code.
pub struct Signer {
    kid: String,
    inner: SignerKey,
}

enum SignerKey {
    Hs256(hmac::Key),
    Ed25519(signature::Ed25519KeyPair),
}

impl Signer {
    /// Sign with an HS256 secret (at least 32 bytes).
    pub fn hs256(kid: &str, secret: &[u8]) -> Result<Signer, KeyError> {
        Key::hs256(kid, secret)?;
        Ok(Signer {
            kid: kid.to_string(),
            inner: SignerKey::Hs256(hmac::Key::new(hmac::HMAC_SHA256, secret)),
        })
    }

    /// Sign with an Ed25519 private key given as its 32-byte seed.
    pub fn ed25519_seed(kid: &str, seed: &[u8]) -> Result<Signer, KeyError> {
        check_kid(kid)?;
        let pair = signature::Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| KeyError(format!("key {kid}: an Ed25519 seed is 32 bytes")))?;
        Ok(Signer {
            kid: kid.to_string(),
            inner: SignerKey::Ed25519(pair),
        })
    }

    /// Parse `KID:hs256:SECRET` or `KID:eddsa-seed:SEED` (the Ed25519
    /// private seed), base64url.
    pub fn from_spec(spec: &str) -> Result<Signer, KeyError> {
        let mut parts = spec.trim().splitn(3, ':');
        let (Some(kid), Some(alg), Some(material)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(KeyError(
                "a signing key is KID:hs256:SECRET or KID:eddsa-seed:SEED (base64url)".into(),
            ));
        };
        let bytes = decode_b64url(material.trim())
            .ok_or_else(|| KeyError(format!("key {kid}: the key material is not base64url")))?;
        match alg.to_ascii_lowercase().as_str() {
            "hs256" => Signer::hs256(kid, &bytes),
            "eddsa-seed" => Signer::ed25519_seed(kid, &bytes),
            "eddsa" => Err(KeyError(format!(
                "key {kid}: to sign, give the private seed as KID:eddsa-seed:SEED (KID:eddsa:… is the public key serve --auth takes)"
            ))),
            other => Err(KeyError(format!(
                "key {kid}: algorithm {other:?} is not supported (hs256 or eddsa-seed)"
            ))),
        }
    }

    /// The Ed25519 public key (32 bytes) of this signer, if it is one.
    pub fn public_key(&self) -> Option<Vec<u8>> {
        use signature::KeyPair as _;
        match &self.inner {
            SignerKey::Ed25519(p) => Some(p.public_key().as_ref().to_vec()),
            SignerKey::Hs256(_) => None,
        }
    }

    /// A compact JWT carrying `claims` (a JSON object).
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let alg = match self.inner {
            SignerKey::Hs256(_) => Alg::Hs256,
            SignerKey::Ed25519(_) => Alg::EdDsa,
        };
        let header = serde_json::json!({ "alg": alg.as_str(), "typ": "JWT", "kid": self.kid });
        let mut token = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = match &self.inner {
            SignerKey::Hs256(k) => hmac::sign(k, token.as_bytes()).as_ref().to_vec(),
            SignerKey::Ed25519(p) => p.sign(token.as_bytes()).as_ref().to_vec(),
        };
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(sig));
        token
    }
}

/// A new key from 32 random bytes (the caller's randomness): the lines to
/// print. `hs256`: one secret, the same line for both ends. `eddsa`: the
/// private seed (signs, stays on the game's backend) and the public key
/// (for `serve --auth`).
pub fn keygen(kind: &str, kid: &str, random: [u8; 32]) -> Result<Vec<String>, KeyError> {
    check_kid(kid)?;
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    match kind {
        "hs256" => Ok(vec![
            format!(
                "# shared secret: the game's backend signs with it, serve --auth verifies with it"
            ),
            format!("{kid}:hs256:{}", b64(&random)),
        ]),
        "eddsa" => {
            let signer = Signer::ed25519_seed(kid, &random)?;
            let public = signer.public_key().unwrap_or_default();
            Ok(vec![
                "# private: keep it on the game's backend (token --key, or your own signer)".into(),
                format!("{kid}:eddsa-seed:{}", b64(&random)),
                "# public: give it to serve --auth".into(),
                format!("{kid}:eddsa:{}", b64(&public)),
            ])
        }
        other => Err(KeyError(format!("--keygen {other:?}: hs256 or eddsa"))),
    }
}

#[cfg(test)]
mod tests;
