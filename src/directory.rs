//! Cluster mode's directory in Redis: the I/O behind [`crate::cluster`].
//!
//! Why this module exists: the nodes of one cluster share no memory, so
//! what one node must know about the others (who is alive, which join
//! codes are taken, where each session lives and who its members are) is
//! kept in Redis. That makes a session outlive the node it lives on (after
//! a restart or a crash another node takes it over from its record) and
//! lets any node redirect a join or a resume to the session's home. This
//! module is a thin async shell: every decision that can be made without
//! I/O (the fencing rule, moving a home, which token entries went stale)
//! is a pure function in [`crate::cluster`], tested without Redis.
//!
//! Failure model: Redis being down must never stop or hang a node. Every
//! call is bounded by a timeout ([`DEFAULT_TIMEOUT`]) and then returns
//! [`DirectoryError::Unavailable`]. redis's `ConnectionManager` makes a new
//! connection when the old one broke (one attempt each time it is asked);
//! this module adds the backoff: after a call found Redis unavailable, the
//! calls of the next [`BACKOFF_MIN`] (doubling up to [`BACKOFF_MAX`] while
//! the outage lasts) fail at once without touching the network, then one
//! call tries again. So during an outage a caller waits microseconds, not
//! the timeout, and Redis is tried a few times a second at most. A
//! connection that stops answering without breaking (its peer vanished
//! without a reset) is replaced after [`STUCK_AFTER_TIMEOUTS`] timeouts in
//! a row.
//!
//! # Keys
//!
//! `P` is [`ClusterConfig::key_prefix`] (by default `fsp2p:`), `CODE` a
//! join code in canonical form, `NAME` a node name, `HASH` a
//! [`crate::cluster::token_hash`].
//!
//! | key | type | value | TTL |
//! |---|---|---|---|
//! | `P node:NAME` | string | [`NodeInfo`] as JSON | [`ClusterConfig::node_ttl`], renewed by each heartbeat: a node whose key is gone is dead |
//! | `P nodes` | set | names of nodes that have sent a heartbeat | none; [`Directory::nodes`] prunes names whose `node:` key expired, [`Directory::leave`] removes its own |
//! | `P code:CODE` | string | name of the node that reserved the code, then the session's home | [`SESSION_TTL`] |
//! | `P session:CODE` | string | [`SessionRecord`] as JSON | [`SESSION_TTL`] |
//! | `P token:HASH` | string | `CODE` of the session whose member has this resume token | [`SESSION_TTL`] |
//! | `P revoked` | sorted set | revocations in force (access control), each as its canonical JSON ([`crate::auth::Revocation::to_json`]), scored by when it may be forgotten (Unix ms) | the set: [`REVOCATION_TTL`] from the last revocation; members are removed once their score has passed |
//! | `P revocations` | pub/sub channel | each new revocation's JSON, published with its `ZADD` to `revoked` (one transaction) | — |
//! | `P usage:NAME` | hash | per player (`sub`) on node `NAME`: `"CONNECTIONS SESSIONS"` ([`crate::cluster::usage_value`]), rewritten by each heartbeat | [`ClusterConfig::node_ttl`]: a dead node's counts go with it |
//!
//! A join code is unique cluster-wide through `code:CODE`:
//! [`Directory::reserve_code`] creates it only if neither it nor
//! `session:CODE` exists (one Lua script). Every write of a session
//! rewrites its `code:` key, and both are deleted together, so the code
//! stays reserved exactly as long as the session (or an unused
//! reservation, for at most [`SESSION_TTL`]) exists. Keeping the
//! reservation apart from the record lets a code be taken before its
//! session is built, without a half-made record in the directory.
//!
//! Session writes are compare-and-set: read the raw record, decide in Rust
//! ([`crate::cluster::fence`], [`crate::cluster::moved`]), then one Lua
//! script writes the record, its `code:` key and its members' `token:`
//! keys only if the record is still byte for byte what was read. A write
//! that loses such a race reads again (at most [`CAS_ATTEMPTS`] times);
//! a `move_home` that loses it has lost the race, which is its answer.
//!
//! `token:` entries may outlive membership (a member left while an entry
//! was being refreshed); [`Directory::session_by_token`] therefore checks
//! the record's members and treats an entry whose token is no member's as
//! absent.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ErrorKind, RedisError, Script, ServerErrorKind};

use crate::cluster::{self, ClusterConfig, NodeInfo, SessionRecord};

pub use crate::cluster::PutOutcome;

/// How long one directory call may take before it returns
/// [`DirectoryError::Unavailable`], by default (`ClusterConfig::directory_timeout`,
/// `--cluster-directory-timeout-ms`); [`Directory::with_timeout`] changes it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a session's keys (`session:`, `code:`, `token:`) live unless
/// its home refreshes them ([`Directory::touch_sessions`]) or rewrites the
/// record. A session whose home died and that no member ever comes back
/// for (so no node takes it over) is forgotten after this long. An hour
/// is far longer than any reconnect and far shorter than forever.
pub const SESSION_TTL: Duration = Duration::from_secs(3600);

/// How long a revocation is kept in the directory (and by every node): as
/// long as the core remembers it ([`crate::session`]'s revocation memory).
/// Tokens are expected to live far shorter.
pub const REVOCATION_TTL: Duration = Duration::from_secs(24 * 3600);

/// First wait after a call found Redis unavailable, before the next call
/// tries it again (calls meanwhile fail at once).
pub const BACKOFF_MIN: Duration = Duration::from_millis(50);

/// Longest wait between two tries while Redis stays unavailable.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Times a session write re-reads the record after losing a
/// compare-and-set race before it gives up with [`DirectoryError::Contended`].
pub const CAS_ATTEMPTS: u32 = 8;

/// Calls in a row that time out before the connection is dropped and a
/// new one made (a connection whose peer vanished without a reset is
/// otherwise never noticed).
pub const STUCK_AFTER_TIMEOUTS: u32 = 3;

/// Why a directory call failed.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The Redis URL could not be parsed (the only error of [`Directory::connect`]).
    #[error("bad Redis URL {url}: {reason}")]
    BadUrl {
        /// The URL, with any password replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Redis could not be reached or did not answer in time. Transient:
    /// the connection is retried in the background; the caller carries on
    /// without the directory (and may try again later).
    #[error("directory unavailable during {op}: {reason}")]
    Unavailable {
        /// The call that failed.
        op: &'static str,
        /// What happened (timeout, connection refused, …).
        reason: String,
    },
    /// A stored value could not be read: not the JSON this version writes.
    #[error("unreadable directory record at {key}: {reason}")]
    BadData {
        /// The Redis key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Redis answered with an error (e.g. a key of the wrong type).
    #[error("Redis refused {op}: {source}")]
    Redis {
        /// The call that failed.
        op: &'static str,
        /// Redis's error.
        source: RedisError,
    },
    /// Other nodes changed the record [`CAS_ATTEMPTS`] times in a row
    /// while this call tried to write it.
    #[error("{op} on {key}: the record kept changing under this write")]
    Contended {
        /// The call that failed.
        op: &'static str,
        /// The Redis key.
        key: String,
    },
}

impl DirectoryError {
    /// True for [`DirectoryError::Unavailable`]: Redis is down or too slow,
    /// as opposed to bad data or a refused command.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DirectoryError::Unavailable { .. })
    }
}

/// Redis's errors sorted into "not reachable now" and "answered, but no".
fn classify(op: &'static str, e: RedisError) -> DirectoryError {
    let transient = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::AuthenticationFailed
                | ErrorKind::Parse
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                )
        );
    if transient {
        DirectoryError::Unavailable {
            op,
            reason: e.to_string(),
        }
    } else {
        DirectoryError::Redis { op, source: e }
    }
}

/// `url` with its password (if any) masked, for error messages and logs.
pub(crate) fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(unparsable)".into(),
    }
}

/// The key names, all under one prefix.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }
    fn node(&self, name: &str) -> String {
        format!("{}node:{name}", self.prefix)
    }
    fn code(&self, code: &str) -> String {
        format!("{}code:{code}", self.prefix)
    }
    fn session(&self, code: &str) -> String {
        format!("{}session:{code}", self.prefix)
    }
    fn token(&self, hash: &str) -> String {
        format!("{}token:{hash}", self.prefix)
    }
    fn revoked(&self) -> String {
        format!("{}revoked", self.prefix)
    }
    fn revocations(&self) -> String {
        format!("{}revocations", self.prefix)
    }
    fn usage(&self, node: &str) -> String {
        format!("{}usage:{node}", self.prefix)
    }
}

/// Reserve a code: KEYS = code, session; ARGV = home, ttl ms. 1 if reserved.
const RESERVE_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// Compare-and-set of a session record and the keys that go with it.
/// KEYS = session, code, then token keys: the first ARGV[4] are set to
/// ARGV[5] (the code), the rest are deleted if they still point to it.
/// ARGV = expected record ('' = absent), new record ('' = delete), ttl ms,
/// number of tokens to set, code, value of the code key.
/// 1 if applied, 0 if the record was not the expected one.
const CAS_LUA: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur == false then cur = '' end
if cur ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1], KEYS[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('SET', KEYS[2], ARGV[6], 'PX', ARGV[3])
end
local nset = tonumber(ARGV[4])
for i = 3, 2 + nset do
  redis.call('SET', KEYS[i], ARGV[5], 'PX', ARGV[3])
end
for i = 3 + nset, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[5] then redis.call('DEL', KEYS[i]) end
end
return 1
";

/// Drop a reservation that never became a session: KEYS = code, session;
/// ARGV = home. Deletes the code key if no session exists and `home` holds it.
const UNRESERVE_LUA: &str = r"
if redis.call('EXISTS', KEYS[2]) == 0 and redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 1
";

/// Prune dead nodes: KEYS = nodes set, then node keys; ARGV = the names
/// of those node keys. Removes a name whose key does not exist (checked
/// here, atomically, so a node that heartbeats meanwhile is kept).
const PRUNE_LUA: &str = r"
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then redis.call('SREM', KEYS[1], ARGV[i - 1]) end
end
return 1
";

/// The Lua scripts, hashed once (they are sent by hash, and loaded again
/// after a Redis restart flushed them).
struct Scripts {
    reserve: Script,
    cas: Script,
    unreserve: Script,
    prune: Script,
}

/// The backoff while Redis is unavailable: no call tries before `retry_at`.
#[derive(Debug, Default)]
struct Backoff {
    retry_at: Option<Instant>,
    delay: Duration,
}

impl Backoff {
    /// How long calls must still fail at once, if they must.
    fn wait(&self, now: Instant) -> Option<Duration> {
        self.retry_at
            .filter(|&t| t > now)
            .map(|t| t.saturating_duration_since(now))
    }

    /// Records a call's result: any answer from Redis ends the backoff,
    /// unavailability doubles it (from [`BACKOFF_MIN`] to [`BACKOFF_MAX`]).
    /// Calls that were already under way when the first failed do not
    /// double it again: one step per try.
    fn record(&mut self, available: bool, now: Instant) {
        if available {
            *self = Backoff::default();
        } else if self.wait(now).is_none() {
            self.delay = (self.delay * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
            self.retry_at = Some(now + self.delay);
        }
    }
}

struct Inner {
    client: Client,
    manager_config: ConnectionManagerConfig,
    conn: Mutex<ConnectionManager>,
    up: AtomicBool,
    backoff: Mutex<Backoff>,
    timeouts_in_a_row: AtomicU32,
    scripts: Scripts,
}

/// One node's handle on the cluster directory. Cheap to clone: clones
/// share one connection.
#[derive(Clone)]
pub struct Directory {
    inner: Arc<Inner>,
    keys: Keys,
    node: String,
    node_ttl: Duration,
    timeout: Duration,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("prefix", &self.keys.prefix)
            .field("node", &self.node)
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

/// A record read as it is stored: its bytes (to compare-and-set against)
/// and what they say.
struct Stored {
    raw: Vec<u8>,
    rec: SessionRecord,
}

fn parse<T: serde::de::DeserializeOwned>(key: &str, raw: &[u8]) -> Result<T, DirectoryError> {
    serde_json::from_slice(raw).map_err(|e| DirectoryError::BadData {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

fn to_json<T: serde::Serialize>(key: &str, v: &T) -> Result<Vec<u8>, DirectoryError> {
    serde_json::to_vec(v).map_err(|e| DirectoryError::BadData {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Directory {
    /// A directory handle for `cfg`. Does not wait for Redis: it connects
    /// lazily and keeps retrying with backoff, so a node starts while Redis
    /// is down and its calls return [`DirectoryError::Unavailable`]
    /// meanwhile. Fails only on a malformed URL.
    pub async fn connect(cfg: &ClusterConfig) -> Result<Self, DirectoryError> {
        let client = Client::open(cfg.redis_url.as_str()).map_err(|e| DirectoryError::BadUrl {
            url: redacted(&cfg.redis_url),
            reason: e.to_string(),
        })?;
        // One connection attempt per reconnect: the backoff is ours
        // (`Backoff`), so that calls fail at once during an outage instead
        // of waiting on the manager's retries until they time out.
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.directory_timeout))
            .set_number_of_retries(0);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config.clone())
            .map_err(|e| DirectoryError::BadUrl {
                url: redacted(&cfg.redis_url),
                reason: e.to_string(),
            })?;
        Ok(Directory {
            inner: Arc::new(Inner {
                client,
                manager_config,
                conn: Mutex::new(conn),
                up: AtomicBool::new(false),
                backoff: Mutex::new(Backoff::default()),
                timeouts_in_a_row: AtomicU32::new(0),
                scripts: Scripts {
                    reserve: Script::new(RESERVE_LUA),
                    cas: Script::new(CAS_LUA),
                    unreserve: Script::new(UNRESERVE_LUA),
                    prune: Script::new(PRUNE_LUA),
                },
            }),
            keys: Keys {
                prefix: cfg.key_prefix.clone(),
            },
            node: cfg.node.name.clone(),
            node_ttl: cfg.node_ttl,
            timeout: cfg.directory_timeout,
        })
    }

    /// The same handle with another bound on each call ([`DEFAULT_TIMEOUT`] otherwise).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// This node's name, as in its [`ClusterConfig`].
    pub fn node_name(&self) -> &str {
        &self.node
    }

    /// True when the last call reached Redis (whatever it answered); false
    /// before any call and after one that found Redis unavailable.
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Relaxed)
    }

    fn conn(&self) -> ConnectionManager {
        self.inner
            .conn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn backoff(&self) -> std::sync::MutexGuard<'_, Backoff> {
        self.inner.backoff.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs one directory call under the timeout (or fails it at once
    /// during a backoff) and records whether Redis answered.
    async fn run<T>(
        &self,
        op: &'static str,
        call: impl std::future::Future<Output = Result<T, DirectoryError>>,
    ) -> Result<T, DirectoryError> {
        let waiting = self.backoff().wait(Instant::now());
        if let Some(wait) = waiting {
            self.inner.up.store(false, Ordering::Relaxed);
            return Err(DirectoryError::Unavailable {
                op,
                reason: format!(
                    "Redis was unreachable just now; next try in {} ms",
                    wait.as_millis()
                ),
            });
        }
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(r) => {
                self.inner.timeouts_in_a_row.store(0, Ordering::Relaxed);
                r
            }
            Err(_) => {
                let n = self.inner.timeouts_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= STUCK_AFTER_TIMEOUTS {
                    self.renew_connection();
                }
                Err(DirectoryError::Unavailable {
                    op,
                    reason: format!("no answer within {} ms", self.timeout.as_millis()),
                })
            }
        };
        let up = !matches!(result, Err(DirectoryError::Unavailable { .. }));
        self.inner.up.store(up, Ordering::Relaxed);
        self.backoff().record(up, Instant::now());
        result
    }

    /// Replaces the connection by a new one (made lazily, like the first).
    fn renew_connection(&self) {
        self.inner.timeouts_in_a_row.store(0, Ordering::Relaxed);
        match ConnectionManager::new_lazy_with_config(
            self.inner.client.clone(),
            self.inner.manager_config.clone(),
        ) {
            Ok(fresh) => {
                tracing::warn!("directory: Redis stopped answering; opening a new connection");
                *self.inner.conn.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
            }
            Err(e) => tracing::warn!("directory: cannot renew the Redis connection: {e}"),
        }
    }

    /// Announces `info` (this node, alive, and how loaded) for
    /// [`ClusterConfig::node_ttl`]; call it every [`ClusterConfig::heartbeat`].
    pub async fn heartbeat(&self, info: &NodeInfo) -> Result<(), DirectoryError> {
        const OP: &str = "heartbeat";
        let name = &info.addr.name;
        let key = self.keys.node(name);
        let json = to_json(&key, info)?;
        self.run(OP, async {
            redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(&key)
                .arg(json)
                .arg("PX")
                .arg(millis(self.node_ttl))
                .ignore()
                .cmd("SADD")
                .arg(self.keys.nodes())
                .arg(name)
                .ignore()
                .exec_async(&mut self.conn())
                .await
                .map_err(|e| classify(OP, e))
        })
        .await
    }

    /// The live nodes, by name. Names whose heartbeat expired are pruned
    /// from the `nodes` set; a node record this version cannot read (one
    /// written by an incompatible version) is left out, with a warning.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, DirectoryError> {
        const OP: &str = "nodes";
        self.run(OP, async {
            let mut conn = self.conn();
            let mut names: Vec<String> = redis::cmd("SMEMBERS")
                .arg(self.keys.nodes())
                .query_async(&mut conn)
                .await
                .map_err(|e| classify(OP, e))?;
            if names.is_empty() {
                return Ok(Vec::new());
            }
            names.sort();
            let keys: Vec<String> = names.iter().map(|n| self.keys.node(n)).collect();
            let raws: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .map_err(|e| classify(OP, e))?;
            let mut live = Vec::new();
            let mut dead = Vec::new();
            for ((name, key), raw) in names.iter().zip(&keys).zip(raws) {
                match raw {
                    None => dead.push((name, key)),
                    Some(raw) => match parse::<NodeInfo>(key, &raw) {
                        Ok(info) => live.push(info),
                        Err(e) => tracing::warn!("directory: {e}"),
                    },
                }
            }
            if !dead.is_empty() {
                let mut prune = self.inner.scripts.prune.prepare_invoke();
                prune.key(self.keys.nodes());
                for (name, key) in &dead {
                    prune.key(*key).arg(*name);
                }
                prune
                    .invoke_async::<()>(&mut conn)
                    .await
                    .map_err(|e| classify(OP, e))?;
            }
            Ok(live)
        })
        .await
    }

    /// The node called `name` if it is alive; `None` when it is dead or unknown.
    pub async fn node(&self, name: &str) -> Result<Option<NodeInfo>, DirectoryError> {
        const OP: &str = "node";
        let key = self.keys.node(name);
        self.run(OP, async {
            let raw: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut self.conn())
                .await
                .map_err(|e| classify(OP, e))?;
            raw.map(|raw| parse(&key, &raw)).transpose()
        })
        .await
    }

    /// The node called `name` if it is alive, with how long its record has
    /// left before it expires (Redis's own clock: no clock of another node
    /// is compared); `None` when it is dead or unknown.
    pub async fn node_expiry(
        &self,
        name: &str,
    ) -> Result<Option<(NodeInfo, Duration)>, DirectoryError> {
        const OP: &str = "node";
        let key = self.keys.node(name);
        self.run(OP, async {
            let (raw, pttl): (Option<Vec<u8>>, i64) = redis::pipe()
                .atomic()
                .cmd("GET")
                .arg(&key)
                .cmd("PTTL")
                .arg(&key)
                .query_async(&mut self.conn())
                .await
                .map_err(|e| classify(OP, e))?;
            let Some(raw) = raw else { return Ok(None) };
            let info: NodeInfo = parse(&key, &raw)?;
            // -1: no expiry (written by hand), -2: expired between the two.
            let left = match pttl {
                -2 => return Ok(None),
                p if p < 0 => self.node_ttl,
                p => Duration::from_millis(p as u64),
            };
            Ok(Some((info, left)))
        })
        .await
    }

    /// Removes node `name` from the directory at once (a drained node
    /// leaving), instead of letting its heartbeat expire.
    pub async fn leave(&self, name: &str) -> Result<(), DirectoryError> {
        const OP: &str = "leave";
        self.run(OP, async {
            redis::pipe()
                .atomic()
                .cmd("DEL")
                .arg(self.keys.node(name))
                .ignore()
                .cmd("SREM")
                .arg(self.keys.nodes())
                .arg(name)
                .ignore()
                .exec_async(&mut self.conn())
                .await
                .map_err(|e| classify(OP, e))
        })
        .await
    }

    /// Reserves join code `code` cluster-wide for node `home`; false when
    /// it is taken (reserved, or a session's). The reservation lasts
    /// [`SESSION_TTL`] unless a session record is written for it.
    pub async fn reserve_code(&self, code: &str, home: &str) -> Result<bool, DirectoryError> {
        const OP: &str = "reserve_code";
        self.run(OP, async {
            let n: i64 = self
                .inner
                .scripts
                .reserve
                .key(self.keys.code(code))
                .key(self.keys.session(code))
                .arg(home)
                .arg(millis(SESSION_TTL))
                .invoke_async(&mut self.conn())
                .await
                .map_err(|e| classify(OP, e))?;
            Ok(n == 1)
        })
        .await
    }

    /// Reads a session record with its raw bytes.
    async fn read(
        &self,
        op: &'static str,
        conn: &mut ConnectionManager,
        code: &str,
    ) -> Result<Option<Stored>, DirectoryError> {
        let key = self.keys.session(code);
        let raw: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&key)
            .query_async(conn)
            .await
            .map_err(|e| classify(op, e))?;
        match raw {
            None => Ok(None),
            Some(raw) => {
                let rec = parse(&key, &raw)?;
                Ok(Some(Stored { raw, rec }))
            }
        }
    }

    /// Compare-and-set: replaces the record of `code` by `new` (`None`:
    /// deletes it and its code key) if it is still `expected`; sets the
    /// token entries of `new`'s members and removes those in `drop_tokens`.
    /// True if applied.
    #[allow(clippy::too_many_arguments)]
    async fn cas(
        &self,
        op: &'static str,
        conn: &mut ConnectionManager,
        code: &str,
        expected: Option<&[u8]>,
        new: Option<&SessionRecord>,
        drop_tokens: &[&str],
    ) -> Result<bool, DirectoryError> {
        let key = self.keys.session(code);
        let new_raw = new.map(|r| to_json(&key, r)).transpose()?;
        let set_tokens: Vec<&str> = new
            .map(|r| r.members.iter().map(|m| m.token_sha256.as_str()).collect())
            .unwrap_or_default();
        let mut inv = self.inner.scripts.cas.prepare_invoke();
        inv.key(&key).key(self.keys.code(code));
        for t in set_tokens.iter().chain(drop_tokens) {
            inv.key(self.keys.token(t));
        }
        inv.arg(expected.unwrap_or_default())
            .arg(new_raw.as_deref().unwrap_or_default())
            .arg(millis(SESSION_TTL))
            .arg(set_tokens.len())
            .arg(code)
            .arg(new.map(|r| r.home.as_str()).unwrap_or_default());
        let n: i64 = inv.invoke_async(conn).await.map_err(|e| classify(op, e))?;
        Ok(n == 1)
    }

    /// Writes `rec` if the stored record is absent, or has the same home
    /// and an epoch no newer (the fencing rule, [`crate::cluster::fence`]);
    /// otherwise returns [`PutOutcome::Lost`] with the current owner.
    /// Also (re)writes the `token:` entry of every member, removes those
    /// of members no longer in it, and keeps the code reserved. Refreshes
    /// the TTL of all of them.
    pub async fn put_session(&self, rec: &SessionRecord) -> Result<PutOutcome, DirectoryError> {
        const OP: &str = "put_session";
        self.run(OP, async {
            let mut conn = self.conn();
            for _ in 0..CAS_ATTEMPTS {
                let stored = self.read(OP, &mut conn, &rec.code).await?;
                let outcome = cluster::fence(stored.as_ref().map(|s| &s.rec), rec);
                if outcome != PutOutcome::Written {
                    return Ok(outcome);
                }
                let stale = stored
                    .as_ref()
                    .map(|s| cluster::stale_tokens(&s.rec, rec))
                    .unwrap_or_default();
                let expected = stored.as_ref().map(|s| s.raw.as_slice());
                if self
                    .cas(OP, &mut conn, &rec.code, expected, Some(rec), &stale)
                    .await?
                {
                    return Ok(PutOutcome::Written);
                }
            }
            Err(DirectoryError::Contended {
                op: OP,
                key: self.keys.session(&rec.code),
            })
        })
        .await
    }

    /// Deletes session `code`, its code reservation and its members'
    /// token entries, if `home` at `epoch` still owns it
    /// ([`crate::cluster::may_write`]); does nothing otherwise. With no
    /// session record, drops the code's reservation if `home` holds it.
    pub async fn delete_session(
        &self,
        code: &str,
        home: &str,
        epoch: u64,
    ) -> Result<(), DirectoryError> {
        const OP: &str = "delete_session";
        self.run(OP, async {
            let mut conn = self.conn();
            for _ in 0..CAS_ATTEMPTS {
                let Some(stored) = self.read(OP, &mut conn, code).await? else {
                    return self
                        .inner
                        .scripts
                        .unreserve
                        .key(self.keys.code(code))
                        .key(self.keys.session(code))
                        .arg(home)
                        .invoke_async::<()>(&mut conn)
                        .await
                        .map_err(|e| classify(OP, e));
                };
                if !cluster::may_write(&stored.rec, home, epoch) {
                    return Ok(());
                }
                let tokens: Vec<&str> = stored
                    .rec
                    .members
                    .iter()
                    .map(|m| m.token_sha256.as_str())
                    .collect();
                if self
                    .cas(OP, &mut conn, code, Some(&stored.raw), None, &tokens)
                    .await?
                {
                    return Ok(());
                }
            }
            Err(DirectoryError::Contended {
                op: OP,
                key: self.keys.session(code),
            })
        })
        .await
    }

    /// The node that reserved join code `code` (once its session record
    /// is written, the session's home); `None` when the code is free.
    pub async fn code_owner(&self, code: &str) -> Result<Option<String>, DirectoryError> {
        const OP: &str = "code_owner";
        self.run(OP, async {
            redis::cmd("GET")
                .arg(self.keys.code(code))
                .query_async(&mut self.conn())
                .await
                .map_err(|e| classify(OP, e))
        })
        .await
    }

    /// The record of session `code`, if it exists.
    pub async fn session(&self, code: &str) -> Result<Option<SessionRecord>, DirectoryError> {
        const OP: &str = "session";
        self.run(OP, async {
            Ok(self.read(OP, &mut self.conn(), code).await?.map(|s| s.rec))
        })
        .await
    }

    /// The record of the session that has a member whose resume token
    /// hashes to `token_sha256`; `None` if there is none (an index entry
    /// left by a member who has since left counts as none).
    pub async fn session_by_token(
        &self,
        token_sha256: &str,
    ) -> Result<Option<SessionRecord>, DirectoryError> {
        const OP: &str = "session_by_token";
        self.run(OP, async {
            let mut conn = self.conn();
            let code: Option<String> = redis::cmd("GET")
                .arg(self.keys.token(token_sha256))
                .query_async(&mut conn)
                .await
                .map_err(|e| classify(OP, e))?;
            let Some(code) = code else {
                return Ok(None);
            };
            let rec = self.read(OP, &mut conn, &code).await?.map(|s| s.rec);
            Ok(rec.filter(|r| r.member_by_token(token_sha256).is_some()))
        })
        .await
    }

    /// Moves session `code` from home `from` (at `epoch`) to `to`, raising
    /// the epoch by one. Of racing callers exactly one wins: it gets the
    /// new record; the others (and any caller whose `from`/`epoch` is no
    /// longer current, or whose session is gone) get `None` and should
    /// read the record again.
    pub async fn move_home(
        &self,
        code: &str,
        from: &str,
        epoch: u64,
        to: &str,
    ) -> Result<Option<SessionRecord>, DirectoryError> {
        const OP: &str = "move_home";
        self.run(OP, async {
            let mut conn = self.conn();
            let Some(stored) = self.read(OP, &mut conn, code).await? else {
                return Ok(None);
            };
            let Some(next) = cluster::moved(&stored.rec, from, epoch, to) else {
                return Ok(None);
            };
            let won = self
                .cas(OP, &mut conn, code, Some(&stored.raw), Some(&next), &[])
                .await?;
            Ok(won.then_some(next))
        })
        .await
    }

    /// Renews the TTL ([`SESSION_TTL`]) of these sessions' keys: record,
    /// code and members' token entries. The home calls it periodically
    /// for the sessions it serves. Unknown codes are skipped; a record
    /// that cannot be read still has its record and code keys renewed,
    /// and is reported as [`DirectoryError::BadData`] after the others.
    pub async fn touch_sessions(&self, codes: &[String]) -> Result<(), DirectoryError> {
        const OP: &str = "touch_sessions";
        if codes.is_empty() {
            return Ok(());
        }
        self.run(OP, async {
            let mut conn = self.conn();
            let keys: Vec<String> = codes.iter().map(|c| self.keys.session(c)).collect();
            let raws: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .map_err(|e| classify(OP, e))?;
            let ttl = millis(SESSION_TTL);
            let mut pipe = redis::pipe();
            let mut bad = None;
            let mut any = false;
            for ((code, key), raw) in codes.iter().zip(&keys).zip(raws) {
                let Some(raw) = raw else { continue };
                any = true;
                pipe.cmd("PEXPIRE").arg(key).arg(ttl).ignore();
                pipe.cmd("PEXPIRE")
                    .arg(self.keys.code(code))
                    .arg(ttl)
                    .ignore();
                match parse::<SessionRecord>(key, &raw) {
                    Ok(rec) => {
                        for m in &rec.members {
                            pipe.cmd("PEXPIRE")
                                .arg(self.keys.token(&m.token_sha256))
                                .arg(ttl)
                                .ignore();
                        }
                    }
                    Err(e) => bad = Some(e),
                }
            }
            if any {
                pipe.exec_async(&mut conn)
                    .await
                    .map_err(|e| classify(OP, e))?;
            }
            bad.map_or(Ok(()), Err)
        })
        .await
    }

    /// Stores revocation `json` (until `forget_at_unix_ms`) in the
    /// `revoked` set and publishes it on the `revocations` channel, in one
    /// transaction: a node that hears it live applies it at once, one that
    /// missed it finds it in the set ([`Directory::revocations`]).
    pub async fn publish_revocation(
        &self,
        json: &str,
        forget_at_unix_ms: u64,
    ) -> Result<(), DirectoryError> {
        const OP: &str = "publish_revocation";
        let set = self.keys.revoked();
        self.run(OP, async {
            redis::pipe()
                .atomic()
                .cmd("ZADD")
                .arg(&set)
                .arg(forget_at_unix_ms)
                .arg(json)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&set)
                .arg(millis(REVOCATION_TTL))
                .ignore()
                .cmd("PUBLISH")
                .arg(self.keys.revocations())
                .arg(json)
                .ignore()
                .exec_async(&mut self.conn())
                .await
                .map_err(|e| classify(OP, e))
        })
        .await
    }

    /// The revocations in force at `now_unix_ms` (each as its JSON); those
    /// whose time has passed are removed first.
    pub async fn revocations(&self, now_unix_ms: u64) -> Result<Vec<String>, DirectoryError> {
        const OP: &str = "revocations";
        let set = self.keys.revoked();
        self.run(OP, async {
            let (live,): (Vec<String>,) = redis::pipe()
                .atomic()
                .cmd("ZREMRANGEBYSCORE")
                .arg(&set)
                .arg("-inf")
                .arg(now_unix_ms)
                .ignore()
                .cmd("ZRANGE")
                .arg(&set)
                .arg(0)
                .arg(-1)
                .query_async(&mut self.conn())
                .await
                .map_err(|e| classify(OP, e))?;
            Ok(live)
        })
        .await
    }

    /// A subscription to the `revocations` channel, on a connection of its
    /// own (a subscribed connection can do nothing else): the stream of
    /// revocations' JSON as they are published. It ends when the
    /// connection breaks; the caller subscribes again (and reads
    /// [`Directory::revocations`] for what it missed meanwhile).
    pub async fn subscribe_revocations(
        &self,
    ) -> Result<impl futures_util::Stream<Item = String> + Send + use<>, DirectoryError> {
        const OP: &str = "subscribe_revocations";
        let channel = self.keys.revocations();
        let client = self.inner.client.clone();
        let subscribed = tokio::time::timeout(self.timeout, async move {
            let mut ps = client
                .get_async_pubsub()
                .await
                .map_err(|e| classify(OP, e))?;
            ps.subscribe(&channel).await.map_err(|e| classify(OP, e))?;
            Ok::<_, DirectoryError>(ps)
        })
        .await
        .map_err(|_| DirectoryError::Unavailable {
            op: OP,
            reason: format!("no answer within {} ms", self.timeout.as_millis()),
        })??;
        use futures_util::StreamExt as _;
        Ok(subscribed
            .into_on_message()
            .filter_map(|m| std::future::ready(m.get_payload::<String>().ok())))
    }

    /// Replaces node `node`'s per-player usage (`usage:NAME`) by `counts`,
    /// for the node TTL: the other nodes add it to their own counts
    /// ([`Directory::usage`]).
    pub async fn publish_usage(
        &self,
        node: &str,
        counts: &[crate::session::UserCount],
    ) -> Result<(), DirectoryError> {
        const OP: &str = "publish_usage";
        let key = self.keys.usage(node);
        self.run(OP, async {
            let mut pipe = redis::pipe();
            pipe.atomic().cmd("DEL").arg(&key).ignore();
            if !counts.is_empty() {
                let hset = pipe.cmd("HSET").arg(&key);
                for u in counts {
                    hset.arg(&u.sub).arg(cluster::usage_value(u));
                }
                hset.ignore();
                pipe.cmd("PEXPIRE")
                    .arg(&key)
                    .arg(millis(self.node_ttl))
                    .ignore();
            }
            pipe.exec_async(&mut self.conn())
                .await
                .map_err(|e| classify(OP, e))
        })
        .await
    }

    /// What the other nodes in `nodes` hold per player, summed
    /// ([`crate::cluster::sum_usage`]).
    pub async fn usage(
        &self,
        nodes: &[String],
    ) -> Result<std::collections::HashMap<String, crate::session::RemoteUsage>, DirectoryError>
    {
        const OP: &str = "usage";
        let others: Vec<&String> = nodes.iter().filter(|n| **n != self.node).collect();
        if others.is_empty() {
            return Ok(Default::default());
        }
        self.run(OP, async {
            let mut pipe = redis::pipe();
            for n in &others {
                pipe.cmd("HGETALL").arg(self.keys.usage(n));
            }
            let hashes: Vec<Vec<(String, String)>> = pipe
                .query_async(&mut self.conn())
                .await
                .map_err(|e| classify(OP, e))?;
            let per_node: Vec<(String, Vec<(String, String)>)> =
                others.iter().map(|n| n.to_string()).zip(hashes).collect();
            Ok(cluster::sum_usage(&self.node, &per_node))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_while_redis_is_down_and_ends_with_any_answer() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert_eq!(b.wait(t0), None);
        b.record(false, t0);
        assert_eq!(b.wait(t0), Some(BACKOFF_MIN));
        assert_eq!(b.wait(t0 + BACKOFF_MIN), None, "then one call tries");
        // Calls that were under way fail too: no extra doubling.
        b.record(false, t0);
        assert_eq!(b.wait(t0), Some(BACKOFF_MIN));
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..8 {
            now += b.wait(now).unwrap_or_default();
            b.record(false, now);
            delays.push(b.wait(now).unwrap_or_default());
        }
        assert_eq!(delays[0], BACKOFF_MIN * 2);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(delays.last(), Some(&BACKOFF_MAX));
        b.record(true, now);
        assert_eq!(b.wait(now), None);
        b.record(false, now);
        assert_eq!(b.wait(now), Some(BACKOFF_MIN), "a new outage starts small");
    }

    #[test]
    fn keys_all_start_with_the_prefix() {
        let k = Keys {
            prefix: "fsp2p:".into(),
        };
        assert_eq!(k.nodes(), "fsp2p:nodes");
        assert_eq!(k.node("a"), "fsp2p:node:a");
        assert_eq!(k.code("ABC123"), "fsp2p:code:ABC123");
        assert_eq!(k.session("ABC123"), "fsp2p:session:ABC123");
        assert_eq!(k.token("ff00"), "fsp2p:token:ff00");
        assert_eq!(k.revoked(), "fsp2p:revoked");
        assert_eq!(k.revocations(), "fsp2p:revocations");
        assert_eq!(k.usage("a"), "fsp2p:usage:a");
    }

    #[test]
    fn urls_are_logged_without_their_password() {
        assert_eq!(
            redacted("redis://:hunter2@example.com:6379/0"),
            "redis://:***@example.com:6379/0"
        );
        assert_eq!(redacted("rediss://cache:6380"), "rediss://cache:6380");
        assert_eq!(redacted("not a url"), "(unparsable)");
    }

    #[test]
    fn only_connection_trouble_is_unavailable() {
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(classify("t", io).is_unavailable());
        let loading =
            RedisError::from((ErrorKind::Server(ServerErrorKind::BusyLoading), "loading"));
        assert!(classify("t", loading).is_unavailable());
        let wrong = RedisError::from((ErrorKind::Server(ServerErrorKind::ResponseError), "no"));
        assert!(!classify("t", wrong).is_unavailable());
    }
}
