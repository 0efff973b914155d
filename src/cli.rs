//! The command line: every flag (and its environment variable) of every
//! subcommand, and how `serve`'s flags map onto the library's plain
//! configuration structs. clap lives here only; the library knows nothing of
//! it, and each default is written once, in the library's `Default` impls.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use flightsim_p2p::client::ClientTransport;
use flightsim_p2p::cluster::ClusterConfig;
use flightsim_p2p::config::QuicTuning;
use flightsim_p2p::limits::Limits;
use flightsim_p2p::protocol::NodeAddr;
use flightsim_p2p::proxy::{Cidr, ProxyTrust, FORWARDED_FOR};
use flightsim_p2p::turn::IceConfig;

/// Signaling, TURN credentials and a QUIC datagram relay for peer-to-peer
/// flight-simulator sessions, on one UDP port.
///
/// Quick start: `flightsim-p2p serve` (dev certificate, loopback), then in two
/// other terminals `flightsim-p2p peer --create --send-rate 30` and
/// `flightsim-p2p peer --join CODE --send-rate 30`.
#[derive(Parser, Debug)]
#[command(version, about, long_about, max_term_width = 100)]
pub(crate) struct Cli {
    /// Log filter (tracing's EnvFilter syntax), e.g. `info`, `debug`, `flightsim_p2p=debug`.
    #[arg(long, env = "RUST_LOG", default_value = "info", global = true)]
    pub(crate) log: String,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run the server: QUIC + WebTransport on one UDP port, HTTP (health, metrics, cert hash, demo) on TCP.
    Serve(Box<ServeArgs>),
    /// Write a development certificate (ECDSA P-256, 13 days) to the cert dir and print its SHA-256.
    Certs(CertsArgs),
    /// A client: host or join a session, print events, send and receive relayed flight data.
    Peer(Box<PeerArgs>),
    /// Print the protocol's golden test vectors (for client implementers).
    Vectors(VectorsArgs),
    /// Mint an access token for development and tests, or make a new key (--keygen).
    /// A game's backend mints its own tokens in production (DEPLOYMENT.md).
    Token(TokenArgs),
    /// Revoke a player's tokens (--sub) or one token (--jti) on a server, and through it on
    /// every node of its cluster: connected players are cut off, their tokens refused.
    Revoke(RevokeArgs),
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
  FSP2P_TOKEN_KEY=main:hs256:SECRET flightsim-p2p revoke --server http://10.0.0.5:8080 --aud my-game --sub alice\n      \
every token of alice issued up to now\n  \
  flightsim-p2p revoke --server http://10.0.0.5:8080 --key @k1.key --aud my-game --jti t-42\n      \
one token\n\n\
The server's answer (JSON) is printed; the exit status is non-zero unless it is 200.")]
pub(crate) struct RevokeArgs {
    /// The server's HTTP port, as http://HOST:PORT (any node of a cluster).
    #[arg(long, env = "FSP2P_ADMIN_SERVER")]
    pub(crate) server: String,

    /// Signing key for the short-lived admin token sent with the request: KID:hs256:SECRET or
    /// KID:eddsa-seed:SEED, a key whose verifying half the server holds (--auth). `@path`
    /// reads the value from a file.
    #[arg(long, env = "FSP2P_TOKEN_KEY", hide_env_values = true)]
    pub(crate) key: String,

    /// Audience: the deployment's name, as in serve --auth-audience.
    #[arg(long, env = "FSP2P_AUTH_AUDIENCE")]
    pub(crate) aud: String,

    /// Revoke every token of this player (`sub`) issued up to --issued-up-to.
    #[arg(long, required_unless_present = "jti", conflicts_with = "jti")]
    pub(crate) sub: Option<String>,

    /// With --sub: revoke tokens issued (`iat`) up to this Unix time, in seconds; tokens
    /// issued later pass. Default: now.
    #[arg(long, requires = "sub")]
    pub(crate) issued_up_to: Option<u64>,

    /// Revoke the one token with this `jti`.
    #[arg(long)]
    pub(crate) jti: Option<String>,

    /// `sub` of the admin token (who revoked, in the server's log).
    #[arg(long, default_value = "operator")]
    pub(crate) admin_sub: String,

    /// Give up after this many seconds.
    #[arg(long, default_value_t = 10)]
    pub(crate) timeout_secs: u64,
}

#[derive(clap::Args, Debug)]
pub(crate) struct VectorsArgs {
    /// Print the client behaviour vectors instead (docs/client-vectors.json): decision
    /// tables and timed scenarios every client replays (PROTOCOL.md, "Client behaviour").
    #[arg(long)]
    pub(crate) client: bool,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ServeArgs {
    /// UDP address for QUIC and WebTransport. Use 0.0.0.0:4433 to accept clients from other hosts.
    #[arg(long, env = "FSP2P_LISTEN", default_value = "127.0.0.1:4433")]
    pub(crate) listen: SocketAddr,

    /// TCP address for HTTP (/healthz, /metrics, /cert-hash, /nodes, demo page).
    /// Default: 0.0.0.0:$PORT when PORT is set (Railway, Heroku-style hosts), else 127.0.0.1:8080.
    #[arg(long, env = "FSP2P_HTTP_LISTEN")]
    pub(crate) http_listen: Option<SocketAddr>,

    /// Certificate chain (PEM) for production. Without --cert/--key a dev certificate is used.
    #[arg(long, env = "FSP2P_CERT", requires = "key")]
    pub(crate) cert: Option<PathBuf>,

    /// Private key (PEM) matching --cert.
    #[arg(long, env = "FSP2P_KEY", requires = "cert")]
    pub(crate) key: Option<PathBuf>,

    #[command(flatten)]
    pub(crate) dev_cert: DevCertArgs,

    /// Directory of static files served on the HTTP port (the browser client and demo).
    /// Default: client/web when it exists.
    #[arg(long, env = "FSP2P_WEB_DIR")]
    pub(crate) web_dir: Option<PathBuf>,

    #[command(flatten)]
    pub(crate) proxy: ProxyArgs,

    #[command(flatten)]
    pub(crate) auth: AuthArgs,

    #[command(flatten)]
    pub(crate) limits: LimitsArgs,

    #[command(flatten)]
    pub(crate) ice: IceArgs,

    #[command(flatten)]
    pub(crate) quic: QuicArgs,

    #[command(flatten)]
    pub(crate) cluster: ClusterArgs,

    /// Threads that run the server. 0 = one per CPU core the process may use (CPU affinity and
    /// container limits count; on one core, as 1). 1 = everything on one thread: less peak
    /// throughput, but no cross-thread wake-ups on the relay path, which costs less CPU per
    /// relayed frame on a small or shared machine. Measure with `make bench`.
    #[arg(long, env = "FSP2P_WORKER_THREADS", default_value_t = 0)]
    pub(crate) worker_threads: usize,
}

#[derive(clap::Args, Debug)]
pub(crate) struct DevCertArgs {
    /// Where the dev certificate and key live (reused while valid for more than a day).
    #[arg(long, env = "FSP2P_CERT_DIR", default_value = "certs")]
    pub(crate) cert_dir: PathBuf,

    /// Names and addresses the dev certificate is issued for (comma-separated).
    #[arg(
        long,
        env = "FSP2P_DEV_CERT_HOSTS",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1,::1"
    )]
    pub(crate) dev_cert_hosts: Vec<String>,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
  flightsim-p2p token --keygen hs256 --kid main\n      a new shared secret: the same line goes to serve --auth\n  \
  flightsim-p2p token --keygen eddsa --kid k1\n      a key pair: the private line signs, the public one goes to serve --auth\n  \
  FSP2P_TOKEN_KEY=main:hs256:SECRET flightsim-p2p token --aud my-game --sub alice --ttl 1h\n  \
  flightsim-p2p token --key @k1.key --aud my-game --sub bob --session ABC-DEF --no-create")]
pub(crate) struct TokenArgs {
    /// Signing key: KID:hs256:SECRET (the secret serve --auth holds) or KID:eddsa-seed:SEED
    /// (the Ed25519 private seed; serve --auth holds the public key). base64url. `@path` reads
    /// the value from a file.
    #[arg(
        long,
        env = "FSP2P_TOKEN_KEY",
        hide_env_values = true,
        required_unless_present = "keygen"
    )]
    pub(crate) key: Option<String>,

    /// Instead of a token, print a new key: hs256 (a random 32-byte secret) or eddsa (a key pair).
    #[arg(long, value_parser = ["hs256", "eddsa"], conflicts_with = "key")]
    pub(crate) keygen: Option<String>,

    /// Key id for --keygen.
    #[arg(long, default_value = "main", requires = "keygen")]
    pub(crate) kid: String,

    /// Audience: the deployment's name, as in serve --auth-audience.
    #[arg(long, env = "FSP2P_AUTH_AUDIENCE", required_unless_present = "keygen")]
    pub(crate) aud: Option<String>,

    /// Subject: the player id in the game's backend.
    #[arg(long, required_unless_present = "keygen")]
    pub(crate) sub: Option<String>,

    /// Lifetime: e.g. 90s, 10m, 1h, 2d.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub(crate) ttl: u64,

    /// Token id, to revoke this one token later.
    #[arg(long)]
    pub(crate) jti: Option<String>,

    /// The token may not create sessions (only join).
    #[arg(long)]
    pub(crate) no_create: bool,

    /// Join codes the token may join (repeat the flag); without it, any session.
    #[arg(long = "session")]
    pub(crate) sessions: Vec<String>,

    /// Cap on max_peers of the sessions this token creates.
    #[arg(long)]
    pub(crate) max_peers: Option<u32>,

    /// Relay use: `off`, or a rate in bytes per second; without it, the server's own limits.
    #[arg(long)]
    pub(crate) relay: Option<String>,

    /// Display name bound to the token (peers see it instead of the client's).
    #[arg(long)]
    pub(crate) name: Option<String>,

    /// An operator's token (`"admin": true`): it may call POST /admin/revoke. Never give one
    /// to a player.
    #[arg(long)]
    pub(crate) admin: bool,
}

/// A duration such as 90s, 10m, 1h or 2d, in seconds (a bare number is seconds).
pub(crate) fn parse_ttl(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: a number with s, m, h or d, e.g. 1h"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit is s, m, h or d")),
    };
    match n.checked_mul(mult) {
        Some(0) | None => Err(format!("{s:?}: between 1 s and many years")),
        Some(v) => Ok(v),
    }
}

#[derive(clap::Args, Debug)]
pub(crate) struct CertsArgs {
    #[command(flatten)]
    pub(crate) dev_cert: DevCertArgs,

    /// Replace a certificate that is still valid.
    #[arg(long)]
    pub(crate) force: bool,
}

#[derive(clap::Args, Debug)]
pub(crate) struct PeerArgs {
    /// Server UDP address.
    #[arg(long, env = "FSP2P_SERVER", default_value = "127.0.0.1:4433")]
    pub(crate) server: SocketAddr,

    /// TLS server name (checked against a CA certificate; ignored when pinning a hash).
    #[arg(long, default_value = "localhost")]
    pub(crate) server_name: String,

    /// quic (native), webtransport (what browsers speak), websocket (TCP fallback),
    /// or auto (QUIC first, WebSocket if QUIC has not connected after --fallback-delay-ms).
    #[arg(long, value_enum, default_value_t = CliTransport::Quic)]
    pub(crate) transport: CliTransport,

    /// WebSocket URL for --transport websocket/auto. Default: ws://<server ip>:8080/ws.
    #[arg(long, env = "FSP2P_WS_URL")]
    pub(crate) ws_url: Option<String>,

    /// With --transport auto: how long QUIC gets alone before WebSocket is tried too
    /// (the clients' shared default, PROTOCOL.md §12 rule 7).
    #[arg(long, default_value_t = 1000)]
    pub(crate) fallback_delay_ms: u64,

    /// Pin the server certificate by SHA-256 (hex, as `serve` prints it).
    #[arg(long, env = "FSP2P_CERT_HASH", conflicts_with = "ca")]
    pub(crate) cert_hash: Option<String>,

    /// Verify the server against this CA certificate (PEM) instead of pinning.
    #[arg(long)]
    pub(crate) ca: Option<PathBuf>,

    /// Without --cert-hash or --ca, pin the dev certificate found here.
    #[arg(long, env = "FSP2P_CERT_DIR", default_value = "certs")]
    pub(crate) cert_dir: PathBuf,

    /// How relayed frames travel: datagrams, or one QUIC stream per frame.
    #[arg(long, value_enum, default_value_t = CliRelayMode::Datagram)]
    pub(crate) relay_mode: CliRelayMode,

    /// Display name shown to other peers.
    #[arg(long, default_value = "")]
    pub(crate) name: String,

    /// Access token for a server that requires one (serve --auth); `@path` reads a file.
    /// Mint one for development with `flightsim-p2p token`.
    #[arg(long, env = "FSP2P_ACCESS_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,

    /// Create a session and print its join code.
    #[arg(long, conflicts_with = "join")]
    pub(crate) create: bool,

    /// Join the session with this code.
    #[arg(long)]
    pub(crate) join: Option<String>,

    /// Session password (to create or join).
    #[arg(long)]
    pub(crate) password: Option<String>,

    /// Seats when creating (0 = server maximum).
    #[arg(long, default_value_t = 0)]
    pub(crate) max_peers: u32,

    /// Print the server's Welcome (ICE servers, TURN credentials, limits) as JSON and exit.
    #[arg(long)]
    pub(crate) print_welcome: bool,

    /// Relay frames to send per second (0 = send nothing).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) send_rate: f64,

    /// Payload size of each frame in bytes (at least 12: the u32 sequence number of the
    /// flight-data envelope, PROTOCOL.md §5, then a timestamp).
    #[arg(long, default_value_t = 200)]
    pub(crate) size: usize,

    /// Destination peer id for relay frames (0 = everyone else in the session).
    #[arg(long, default_value_t = 0)]
    pub(crate) to: u32,

    /// Stop after this many frames sent (0 = no limit).
    #[arg(long, default_value_t = 0)]
    pub(crate) count: u64,

    /// Exit after this many seconds (0 = run until Ctrl-C).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) duration: f64,

    /// Print the connection quality of every peer of the session once a second
    /// (PROTOCOL.md §14), one line each, the same fields the browser and C# clients show:
    /// `quality: peer <id> path <path> for <s>s rtt <ms> ms loss <%> % jitter <ms> ms
    /// fps in <n> out <n> stale <n> grade <grade>` (rtt and jitter `-` before the first echo).
    /// The path is always `relay`: this client has no WebRTC.
    #[arg(long)]
    pub(crate) stats: bool,

    /// Send the server no connection-quality reports (they are on by default;
    /// peers are still measured and answered).
    #[arg(long)]
    pub(crate) no_telemetry: bool,

    /// Send peers no echo requests (links stay `unknown`; theirs are still answered),
    /// so that the relay carries only the frames this command sends.
    #[arg(long)]
    pub(crate) no_echo: bool,
}

/// `--transport`: the client's [`ClientTransport`], as a flag value.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum CliTransport {
    Quic,
    Webtransport,
    Websocket,
    Auto,
}

impl From<CliTransport> for ClientTransport {
    fn from(t: CliTransport) -> Self {
        match t {
            CliTransport::Quic => ClientTransport::Quic,
            CliTransport::Webtransport => ClientTransport::Webtransport,
            CliTransport::Websocket => ClientTransport::Websocket,
            CliTransport::Auto => ClientTransport::Auto,
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum CliRelayMode {
    Datagram,
    Stream,
}

/// Access control: tokens from the game's backend (PROTOCOL.md "Access
/// tokens", DEPLOYMENT.md). Without --auth the server is open.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Access control")]
pub(crate) struct AuthArgs {
    /// Require an access token (a JWT the game's backend signs) from every client, verified
    /// with this key: KID:hs256:SECRET or KID:eddsa:PUBLIC_KEY (base64url; `@path` reads a
    /// file). Repeat the flag, or separate keys with commas in the variable, to hold several
    /// at once while rotating. `flightsim-p2p token --keygen` makes keys. Without it the
    /// server is open: anyone who reaches the port may create and join sessions.
    #[arg(
        long = "auth",
        env = "FSP2P_AUTH_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub(crate) auth_keys: Vec<String>,

    /// The deployment's name: tokens must carry it in `aud`. Required with --auth.
    #[arg(long, env = "FSP2P_AUTH_AUDIENCE")]
    pub(crate) auth_audience: Option<String>,

    /// Clock skew allowed on a token's exp and nbf, in seconds.
    #[arg(long, env = "FSP2P_AUTH_LEEWAY_SECS", default_value_t = fsp2p_core::auth::DEFAULT_LEEWAY_SECS)]
    pub(crate) auth_leeway_secs: u64,

    /// How long before a player's token stops being valid in session the player is warned
    /// (an Error token_expired without a close), to reconnect with a fresh one; at the end
    /// the connection is cut and the seat kept for the resume grace. Seconds.
    #[arg(long, env = "FSP2P_AUTH_WARN_SECS", default_value_t = 60)]
    pub(crate) auth_warn_secs: u64,

    /// Longest token accepted, in bytes.
    #[arg(long, env = "FSP2P_AUTH_MAX_TOKEN_BYTES", default_value_t = fsp2p_core::auth::DEFAULT_MAX_TOKEN_BYTES)]
    pub(crate) auth_max_token_bytes: usize,
}

impl AuthArgs {
    /// The access control these flags ask for; `None` without --auth.
    pub(crate) fn into_access(self) -> anyhow::Result<Option<fsp2p_core::auth::Access>> {
        use anyhow::Context as _;
        use fsp2p_core::auth::{Access, Key, Verifier};
        let specs: Vec<String> = self
            .auth_keys
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| match s.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("--auth @{path}: reading the key file"))
                    .map(|v| v.trim().to_string()),
                None => Ok(s.to_string()),
            })
            .collect::<anyhow::Result<_>>()?;
        if specs.is_empty() {
            if self.auth_audience.is_some() {
                anyhow::bail!("--auth-audience needs --auth (at least one key)");
            }
            return Ok(None);
        }
        let keys = specs
            .iter()
            .map(|s| Key::from_spec(s))
            .collect::<Result<Vec<_>, _>>()
            .context("--auth")?;
        let audience = self.auth_audience.as_deref().context(
            "--auth needs --auth-audience: the deployment's name, which tokens carry in `aud`",
        )?;
        let mut verifier = Verifier::new(keys, audience).context("--auth")?;
        verifier.leeway_secs = self.auth_leeway_secs;
        verifier.max_token_bytes = self.auth_max_token_bytes.max(1);
        Ok(Some(Access {
            verifier,
            warn_before: std::time::Duration::from_secs(self.auth_warn_secs),
        }))
    }
}

/// Behind a reverse proxy (Railway's edge, Fly's proxy, nginx): where a
/// WebSocket client's address comes from. Every per-address budget keys on it.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ProxyArgs {
    /// Take WebSocket clients' addresses from the proxy's header (--proxy-header) instead of the
    /// socket, for per-address limits. Only behind your own proxy: a client that reaches the HTTP
    /// port directly could write the header itself. DEPLOYMENT.md says what Railway, Fly and nginx need.
    #[arg(long, env = "FSP2P_TRUST_PROXY")]
    pub(crate) trust_proxy: bool,

    /// With --trust-proxy: the header that carries the client's address. x-forwarded-for is read
    /// from the right (proxies append to it; the leftmost entry is the client's own writing and is
    /// never taken); any other header (x-real-ip on Railway, fly-client-ip on Fly) must be one the
    /// proxy overwrites.
    #[arg(long, env = "FSP2P_PROXY_HEADER", default_value = FORWARDED_FOR, requires = "trust_proxy")]
    pub(crate) proxy_header: String,

    /// With --trust-proxy: the proxies' own addresses or ranges (comma-separated, e.g.
    /// 127.0.0.1,10.0.0.0/8). Only requests from them are believed, and their X-Forwarded-For
    /// entries are skipped from the right; anyone else is judged (and capped) by its socket address.
    /// Empty: every request is taken to come through the proxy (--proxy-hops).
    #[arg(
        long,
        env = "FSP2P_TRUSTED_PROXIES",
        value_delimiter = ',',
        requires = "trust_proxy"
    )]
    pub(crate) trusted_proxies: Vec<Cidr>,

    /// With --trust-proxy and no --trusted-proxies: how many proxies append to X-Forwarded-For in
    /// front of the server; the client's address is that many entries from the right.
    #[arg(long, env = "FSP2P_PROXY_HOPS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=16), requires = "trust_proxy")]
    pub(crate) proxy_hops: u8,
}

impl ProxyArgs {
    /// The plain configuration the server takes (`None` without --trust-proxy).
    pub(crate) fn into_config(self) -> Option<ProxyTrust> {
        self.trust_proxy.then(|| ProxyTrust {
            header: self.proxy_header.trim().to_ascii_lowercase(),
            trusted: self.trusted_proxies,
            hops: usize::from(self.proxy_hops),
        })
    }
}

/// [`Limits`] as flags and environment variables; every default is `Limits::default()`'s.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct LimitsArgs {
    /// Most concurrent client connections (QUIC, WebTransport); more are refused with `server_full`.
    #[arg(long, env = "FSP2P_MAX_CONNECTIONS", default_value_t = Limits::default().max_connections)]
    max_connections: usize,

    /// Most concurrent connections from one client IP address (IPv6: one /64), on every
    /// transport: QUIC and WebTransport connections, WebSockets, and plain TCP connections to the
    /// HTTP port. Players behind one NAT or carrier-grade NAT share an address, so keep it
    /// generous; more are refused with `server_full`. Behind a proxy (`--trust-proxy`) the TCP
    /// count is not applied to the proxy's own address.
    #[arg(long, env = "FSP2P_MAX_CONNECTIONS_PER_IP", default_value_t = Limits::default().max_connections_per_ip)]
    max_connections_per_ip: usize,

    /// QUIC handshakes in flight from addresses not yet validated, on the whole server, before
    /// new ones must first answer a QUIC Retry (one extra round trip; a spoofed source never
    /// answers, so a flood of Initials holds no state). Unfinished handshakes never hold a
    /// connection slot.
    #[arg(long, env = "FSP2P_MAX_UNVALIDATED_HANDSHAKES", default_value_t = Limits::default().max_unvalidated_handshakes)]
    max_unvalidated_handshakes: usize,

    /// The same, per client IP address: past this many unfinished handshakes from one address,
    /// its new ones get a Retry.
    #[arg(long, env = "FSP2P_MAX_UNVALIDATED_HANDSHAKES_PER_IP", default_value_t = Limits::default().max_unvalidated_handshakes_per_ip)]
    max_unvalidated_handshakes_per_ip: usize,

    /// Most concurrent sessions; `CreateSession` beyond it fails with `too_many_sessions`.
    #[arg(long, env = "FSP2P_MAX_SESSIONS", default_value_t = Limits::default().max_sessions)]
    max_sessions: usize,

    /// Most sessions created from one client IP address and still open (IPv6: one /64);
    /// `CreateSession` beyond it fails with `too_many_sessions`.
    #[arg(long, env = "FSP2P_MAX_SESSIONS_PER_IP", default_value_t = Limits::default().max_sessions_per_ip)]
    max_sessions_per_ip: usize,

    /// Most peers in one session (host included); also the default when a host asks for 0.
    #[arg(long, env = "FSP2P_MAX_PEERS_PER_SESSION", default_value_t = Limits::default().max_peers_per_session)]
    max_peers_per_session: u32,

    /// Largest control-stream frame in bytes (an SDP offer is typically 1-6 KiB).
    #[arg(long, env = "FSP2P_MAX_FRAME_BYTES", default_value_t = Limits::default().max_frame_bytes)]
    max_frame_bytes: u32,

    /// Largest relayed payload in bytes (after the relay header). Keep it under the
    /// path MTU: QUIC guarantees 1200-byte packets, so about 1100 bytes of payload.
    #[arg(long, env = "FSP2P_MAX_RELAY_PAYLOAD", default_value_t = Limits::default().max_relay_payload)]
    max_relay_payload: u32,

    /// Control messages per second per connection (burst: twice this); excess gets `rate_limited`. 0 = no limit.
    #[arg(long, env = "FSP2P_SIGNALS_PER_SEC", default_value_t = Limits::default().signals_per_sec)]
    signals_per_sec: u32,

    /// Signal bytes per second one peer may be sent by each other member of its session (burst: four
    /// seconds' worth). A member flooding signals at a slow peer gets `rate_limited` and its
    /// signals dropped, long before the slow peer's queue fills. 0 = no limit.
    #[arg(long, env = "FSP2P_SIGNAL_BYTES_PER_SEC_PER_RECEIVER", default_value_t = Limits::default().signal_bytes_per_sec_per_receiver)]
    signal_bytes_per_sec_per_receiver: u32,

    /// Relay frames per second a connection may send (burst: one second's worth); excess is dropped. 0 = no limit.
    #[arg(long, env = "FSP2P_RELAY_DATAGRAMS_PER_SEC", default_value_t = Limits::default().relay_datagrams_per_sec)]
    relay_datagrams_per_sec: u32,

    /// Relay payload bytes per second a connection may send (burst: one second's worth); excess is dropped. 0 = no limit.
    #[arg(long, env = "FSP2P_RELAY_BYTES_PER_SEC", default_value_t = Limits::default().relay_bytes_per_sec)]
    relay_bytes_per_sec: u32,

    /// Relay payload bytes per second the server sends on behalf of all connections from one
    /// client IP address (IPv6: one /64), fan-out included: a frame to 7 peers counts 7 times.
    /// Burst: one second's worth, at least the largest frame to a full session. Bounds the
    /// egress one address can cause; players behind one NAT share it, so keep it generous.
    /// Excess frames are dropped (`ip_rate_limited`). 0 = no limit.
    #[arg(long, env = "FSP2P_RELAY_OUT_BYTES_PER_IP", default_value_t = Limits::default().relay_out_bytes_per_ip)]
    relay_out_bytes_per_ip: u32,

    /// Failed joins (unknown code, wrong password) a connection may make before it is closed.
    /// Also the budget per client IP address per minute: once it is spent, joins from that
    /// address are refused with `too_many_join_attempts` (saying how long to wait) until it
    /// refills, without closing anyone's connection; reconnecting does not reset it.
    #[arg(long, env = "FSP2P_MAX_JOIN_ATTEMPTS", default_value_t = Limits::default().max_join_attempts)]
    max_join_attempts: u32,

    /// A session with no signaling or relay traffic for this many seconds ends.
    #[arg(long, env = "FSP2P_SESSION_IDLE_TTL_SECS", default_value_t = Limits::default().session_idle_ttl_secs)]
    session_idle_ttl_secs: u64,

    /// How long a peer whose connection dropped keeps its id and seat for a resume, in milliseconds.
    #[arg(long, env = "FSP2P_RESUME_GRACE_MS", default_value_t = Limits::default().resume_grace_ms)]
    resume_grace_ms: u64,

    /// A connection that has not sent `Hello` within this many milliseconds is closed. Also
    /// bounds a QUIC handshake and a WebTransport CONNECT.
    #[arg(long, env = "FSP2P_HELLO_TIMEOUT_MS", default_value_t = Limits::default().hello_timeout_ms)]
    hello_timeout_ms: u64,

    /// A TCP connection to the HTTP port must send a request's headers within this many
    /// milliseconds (slowloris guard); idle keep-alive connections are closed after it too.
    #[arg(long, env = "FSP2P_HTTP_HEADER_TIMEOUT_MS", default_value_t = Limits::default().http_header_timeout_ms)]
    http_header_timeout_ms: u64,

    /// With --auth: most concurrent connections of one player (the token's `sub`), on all the
    /// nodes of a cluster together; more are refused at Hello with `server_full`. A resume is
    /// checked against this node's count only. 0 = no limit.
    #[arg(long, env = "FSP2P_MAX_CONNECTIONS_PER_USER", default_value_t = Limits::default().max_connections_per_user)]
    max_connections_per_user: u32,

    /// With --auth: most open sessions one player created, on all the nodes of a cluster
    /// together; CreateSession beyond it fails with `too_many_sessions`. 0 = no limit.
    #[arg(long, env = "FSP2P_MAX_SESSIONS_PER_USER", default_value_t = Limits::default().max_sessions_per_user)]
    max_sessions_per_user: u32,

    /// With --auth: relay payload bytes per second all of one player's connections may send
    /// together (burst: one second's worth), shared equally between the nodes the player is
    /// connected to; excess is dropped (`user_rate_limited`). 0 = no limit.
    #[arg(long, env = "FSP2P_RELAY_BYTES_PER_USER_PER_SEC", default_value_t = Limits::default().relay_bytes_per_user_per_sec)]
    relay_bytes_per_user_per_sec: u32,
}

impl From<LimitsArgs> for Limits {
    fn from(a: LimitsArgs) -> Self {
        Limits {
            max_connections: a.max_connections,
            max_connections_per_ip: a.max_connections_per_ip,
            max_unvalidated_handshakes: a.max_unvalidated_handshakes,
            max_unvalidated_handshakes_per_ip: a.max_unvalidated_handshakes_per_ip,
            max_sessions: a.max_sessions,
            max_sessions_per_ip: a.max_sessions_per_ip,
            max_peers_per_session: a.max_peers_per_session,
            max_frame_bytes: a.max_frame_bytes,
            max_relay_payload: a.max_relay_payload,
            signals_per_sec: a.signals_per_sec,
            signal_bytes_per_sec_per_receiver: a.signal_bytes_per_sec_per_receiver,
            relay_datagrams_per_sec: a.relay_datagrams_per_sec,
            relay_bytes_per_sec: a.relay_bytes_per_sec,
            relay_out_bytes_per_ip: a.relay_out_bytes_per_ip,
            max_join_attempts: a.max_join_attempts,
            session_idle_ttl_secs: a.session_idle_ttl_secs,
            resume_grace_ms: a.resume_grace_ms,
            hello_timeout_ms: a.hello_timeout_ms,
            http_header_timeout_ms: a.http_header_timeout_ms,
            max_connections_per_user: a.max_connections_per_user,
            max_sessions_per_user: a.max_sessions_per_user,
            relay_bytes_per_user_per_sec: a.relay_bytes_per_user_per_sec,
        }
    }
}

/// Cluster mode ([`ClusterConfig`]) as flags; every default is `ClusterConfig::new`'s.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Cluster mode (several nodes sharing sessions through Redis)")]
pub(crate) struct ClusterArgs {
    /// Join a cluster whose directory is this Redis: `redis://[:PASSWORD@]HOST:PORT[/DB]`,
    /// or `rediss://…` for TLS. Nodes of one cluster redirect joins to a session's home node,
    /// hand sessions over when they shut down, and take over the sessions of a node that died.
    /// Without it the server is a single node and sessions live in its memory only.
    #[arg(long, env = "FSP2P_REDIS_URL", hide_env_values = true)]
    pub(crate) redis_url: Option<String>,

    /// This node's name in the cluster (unique per node; keep it across restarts of the same
    /// node, so it finds its sessions again). Default: its public QUIC address.
    #[arg(long, env = "FSP2P_NODE_NAME")]
    pub(crate) node_name: Option<String>,

    /// `host:port` clients reach this node's UDP port at (sent to clients in redirects).
    /// Default: the --listen address, which must then not be 0.0.0.0 or [::].
    #[arg(long, env = "FSP2P_PUBLIC_QUIC")]
    pub(crate) public_quic: Option<String>,

    /// Base URL clients reach this node's HTTP port at (`https://node1.example.com`), for the
    /// WebSocket fallback in redirects. Default: `http://` + the HTTP listen address.
    #[arg(long, env = "FSP2P_PUBLIC_HTTP")]
    pub(crate) public_http: Option<String>,

    /// Prefix of every Redis key of this cluster (several clusters can share one Redis).
    #[arg(long, env = "FSP2P_CLUSTER_PREFIX", default_value_t = default_cluster().key_prefix)]
    pub(crate) cluster_prefix: String,

    /// How often a node announces itself and its load, in milliseconds. A node that misses
    /// one and a half beats is not sent players: others wait for its next beat or its expiry.
    #[arg(long, env = "FSP2P_CLUSTER_HEARTBEAT_MS", default_value_t = default_cluster().heartbeat.as_millis() as u64)]
    pub(crate) cluster_heartbeat_ms: u64,

    /// A node not heard from for this long (ms) is dead: other nodes take its sessions over
    /// when its players come back. Keep it a few heartbeats long, and no longer than the
    /// clients' shortest live timeout (1.5 s), so a dead node's record is gone by then.
    #[arg(long, env = "FSP2P_CLUSTER_NODE_TTL_MS", default_value_t = default_cluster().node_ttl.as_millis() as u64)]
    pub(crate) cluster_node_ttl_ms: u64,

    /// How long one call to the directory (Redis) may take, in ms, before the node takes Redis
    /// for away. Some calls take several round trips: a node a region away from its Redis
    /// (100 ms or more) needs 1500 or more.
    #[arg(long, env = "FSP2P_CLUSTER_DIRECTORY_TIMEOUT_MS", default_value_t = default_cluster().directory_timeout.as_millis() as u64)]
    pub(crate) cluster_directory_timeout_ms: u64,

    /// This node's region (`eu`, `us-east`, `ams`: 1 to 32 of a-z, 0-9, -), announced to the
    /// cluster and listed by `GET /nodes`. Clients that measured their round trip to each region
    /// send it with `CreateSession`, and a new session goes to the region that serves its
    /// creator best (see --placement). Without it the node has no region and behaves as before.
    #[arg(long, env = "FSP2P_REGION", requires = "redis_url", value_parser = parse_region)]
    pub(crate) region: Option<String>,

    /// Placement of new sessions by their creators' measured round trips, on a node with a
    /// region: `on` (the default) or `off` (every session stays on the node its creator
    /// reached, as on a node without a region; the region is still announced).
    #[arg(long, env = "FSP2P_PLACEMENT", default_value = "on", value_parser = ["on", "off"])]
    pub(crate) placement: String,

    /// A new session goes to another region only when its creator's round trip there is at
    /// least this many ms lower than to this node's region.
    #[arg(long, env = "FSP2P_PLACEMENT_MIN_GAIN_MS", default_value_t = default_cluster().placement_min_gain_ms)]
    pub(crate) placement_min_gain_ms: u32,

    /// A running session moves to a node of another region when its worst relayed member's
    /// round trip there is at least this many ms lower (checked every 5 s; only when every
    /// member speaks protocol 5 and measured its regions). 0: never move a running session.
    #[arg(long, env = "FSP2P_PLACEMENT_MOVE_GAIN_MS", default_value_t = default_cluster().placement_move_gain_ms)]
    pub(crate) placement_move_gain_ms: u32,

    /// A session moves (or is created or taken in) at most once per this many seconds.
    #[arg(long, env = "FSP2P_PLACEMENT_MOVE_INTERVAL_SECS", default_value_t = default_cluster().placement_move_interval.as_secs())]
    pub(crate) placement_move_interval_secs: u64,

    /// After moving a session, the old node keeps relaying among its members for this many ms
    /// while they connect to the new node, then closes their old connections.
    #[arg(long, env = "FSP2P_PLACEMENT_OVERLAP_MS", default_value_t = default_cluster().placement_overlap.as_millis() as u64)]
    pub(crate) placement_overlap_ms: u64,
}

/// A region name as `--region` takes it.
fn parse_region(s: &str) -> std::result::Result<String, String> {
    if flightsim_p2p::protocol::valid_region(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "a region is 1 to {} bytes of a-z, 0-9 and - (got {s:?})",
            flightsim_p2p::protocol::MAX_REGION_BYTES
        ))
    }
}

fn default_cluster() -> ClusterConfig {
    ClusterConfig::new("", NodeAddr::default())
}

impl ClusterArgs {
    /// The cluster configuration, or `None` without `--redis-url`. `listen` and
    /// `http_listen` fill in the public addresses left empty.
    pub(crate) fn into_config(
        self,
        listen: SocketAddr,
        http_listen: SocketAddr,
    ) -> Result<Option<ClusterConfig>> {
        let Some(url) = self.redis_url.filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            anyhow::bail!("--redis-url must start with redis:// or rediss://");
        }
        if self.cluster_node_ttl_ms < 2 * self.cluster_heartbeat_ms.max(1) {
            anyhow::bail!(
                "--cluster-node-ttl-ms ({}) must be at least twice --cluster-heartbeat-ms ({}), or a node that misses one beat is taken for dead",
                self.cluster_node_ttl_ms,
                self.cluster_heartbeat_ms
            );
        }
        let public_quic = if let Some(q) = self.public_quic.filter(|q| !q.is_empty()) {
            q
        } else {
            if listen.ip().is_unspecified() {
                anyhow::bail!(
                    "cluster mode needs --public-quic (the host:port clients reach this node at) when --listen is {listen}"
                );
            }
            // Port 0 (tests): the server announces the port it was given.
            if listen.port() == 0 {
                String::new()
            } else {
                listen.to_string()
            }
        };
        let public_http = if let Some(h) = self.public_http.filter(|h| !h.is_empty()) {
            h.trim_end_matches('/').to_string()
        } else {
            if http_listen.ip().is_unspecified() {
                anyhow::bail!(
                    "cluster mode needs --public-http (the URL clients reach this node's HTTP port at) when the HTTP port listens on {http_listen}"
                );
            }
            if http_listen.port() == 0 {
                String::new()
            } else {
                format!("http://{http_listen}")
            }
        };
        // Empty: the server names the node after its public QUIC address.
        let name = self.node_name.filter(|n| !n.is_empty()).unwrap_or_default();
        let node = NodeAddr {
            name,
            quic: public_quic,
            http: public_http,
            cert_sha256: None,
        };
        let mut cfg = ClusterConfig::new(url, node);
        cfg.key_prefix = self.cluster_prefix;
        cfg.heartbeat = std::time::Duration::from_millis(self.cluster_heartbeat_ms);
        cfg.node_ttl = std::time::Duration::from_millis(self.cluster_node_ttl_ms);
        cfg.directory_timeout =
            std::time::Duration::from_millis(self.cluster_directory_timeout_ms.max(1));
        cfg.region = self.region.filter(|r| !r.is_empty());
        cfg.placement = self.placement == "on";
        cfg.placement_min_gain_ms = self.placement_min_gain_ms;
        cfg.placement_move_gain_ms = self.placement_move_gain_ms;
        cfg.placement_move_interval =
            std::time::Duration::from_secs(self.placement_move_interval_secs);
        cfg.placement_overlap = std::time::Duration::from_millis(self.placement_overlap_ms);
        Ok(Some(cfg))
    }
}

/// [`QuicTuning`] as flags and environment variables; every default is `QuicTuning::default()`'s.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct QuicArgs {
    /// Close a QUIC connection or WebSocket after this many milliseconds without any packet or
    /// message from the client.
    #[arg(long, env = "FSP2P_IDLE_TIMEOUT_MS", default_value_t = QuicTuning::default().idle_timeout_ms)]
    idle_timeout_ms: u64,

    /// Send a QUIC keep-alive (WebSocket: a ping) after this many milliseconds of silence; keeps
    /// NAT bindings and proxies open, and lets a dead WebSocket be noticed. 0 = never.
    #[arg(long, env = "FSP2P_KEEP_ALIVE_MS", default_value_t = QuicTuning::default().keep_alive_ms)]
    keep_alive_ms: u64,

    /// Per-connection buffer of received, not yet forwarded datagrams, in bytes. Small on purpose:
    /// stale flight data is dropped (oldest first), never queued.
    #[arg(long, env = "FSP2P_DATAGRAM_RECV_BUFFER", default_value_t = QuicTuning::default().datagram_recv_buffer)]
    datagram_recv_buffer: usize,

    /// Per-connection buffer of datagrams waiting to be sent, in bytes (oldest dropped when full).
    #[arg(long, env = "FSP2P_DATAGRAM_SEND_BUFFER", default_value_t = QuicTuning::default().datagram_send_buffer)]
    datagram_send_buffer: usize,

    /// Kernel receive and send buffer of the UDP socket, in bytes (SO_RCVBUF/SO_SNDBUF). Every
    /// client's packets share it: too small and a burst from many players is dropped by the
    /// kernel before QUIC sees it. Linux caps it at net.core.rmem_max/wmem_max (the log says what
    /// was granted; raise those sysctls to get more). 0 = the kernel's default.
    #[arg(long, env = "FSP2P_UDP_SOCKET_BUFFER", default_value_t = QuicTuning::default().udp_socket_buffer)]
    udp_socket_buffer: usize,

    /// Ask each QUIC client that supports the ACK frequency extension (quinn-based ones do;
    /// others, browsers included, are not asked) to acknowledge only after this many
    /// ack-eliciting packets, or 25 ms.
    /// At game rates a client otherwise acknowledges every other relayed packet, and each
    /// acknowledgement costs the server a receive and a decryption. 0 = do not ask (RFC 9000:
    /// every other packet).
    #[arg(long, env = "FSP2P_ACK_THRESHOLD", default_value_t = QuicTuning::default().ack_threshold)]
    ack_threshold: u32,

    /// Control messages queued for one client before it counts as a slow consumer and is closed.
    #[arg(long, env = "FSP2P_CONTROL_QUEUE", default_value_t = QuicTuning::default().control_queue)]
    control_queue: usize,

    /// Flow-control window of one QUIC stream the client sends on, in bytes: what the server
    /// buffers for it at most. The connection's window is four times this, which bounds what a
    /// client can make the server hold on streams, however many it opens.
    #[arg(long, env = "FSP2P_STREAM_RECEIVE_WINDOW", default_value_t = QuicTuning::default().stream_receive_window)]
    stream_receive_window: u32,

    /// Relay frames queued for one receiver without datagrams (stream mode, WebSocket); when
    /// full, the oldest is dropped (latest state wins).
    #[arg(long, env = "FSP2P_STREAM_RELAY_QUEUE", default_value_t = QuicTuning::default().stream_relay_queue)]
    stream_relay_queue: usize,

    /// On SIGINT/SIGTERM, how long to wait for clients to disconnect before closing, in milliseconds.
    #[arg(long, env = "FSP2P_DRAIN_TIMEOUT_MS", default_value_t = QuicTuning::default().drain_timeout_ms)]
    drain_timeout_ms: u64,

    /// Delay clients are asked to wait before reconnecting after a shutdown, in milliseconds.
    #[arg(long, env = "FSP2P_RECONNECT_AFTER_MS", default_value_t = QuicTuning::default().reconnect_after_ms)]
    reconnect_after_ms: u32,
}

impl From<QuicArgs> for QuicTuning {
    fn from(a: QuicArgs) -> Self {
        QuicTuning {
            idle_timeout_ms: a.idle_timeout_ms,
            keep_alive_ms: a.keep_alive_ms,
            datagram_recv_buffer: a.datagram_recv_buffer,
            datagram_send_buffer: a.datagram_send_buffer,
            udp_socket_buffer: a.udp_socket_buffer,
            ack_threshold: a.ack_threshold,
            control_queue: a.control_queue,
            stream_receive_window: a.stream_receive_window,
            stream_relay_queue: a.stream_relay_queue,
            drain_timeout_ms: a.drain_timeout_ms,
            reconnect_after_ms: a.reconnect_after_ms,
        }
    }
}

/// [`IceConfig`] as flags and environment variables; every default is `IceConfig::default()`'s.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct IceArgs {
    /// STUN URL handed to clients (repeat or comma-separate), e.g. `stun:turn.example.com:3478`.
    #[arg(long = "stun-url", env = "FSP2P_STUN_URLS", value_delimiter = ',')]
    stun_urls: Vec<String>,

    /// TURN URL handed to clients (repeat or comma-separate), e.g.
    /// `turn:turn.example.com:3478?transport=udp`, `turns:turn.example.com:5349?transport=tcp`.
    /// Sent only together with credentials, so it needs --turn-secret.
    #[arg(long = "turn-url", env = "FSP2P_TURN_URLS", value_delimiter = ',')]
    turn_urls: Vec<String>,

    /// Shared secret of coturn's `static-auth-secret` (`use-auth-secret`). Prefer the
    /// environment variable or --turn-secret-file over the command line, which `ps` shows.
    #[arg(long, env = "FSP2P_TURN_SECRET", hide_env_values = true)]
    turn_secret: Option<String>,

    /// File holding the TURN secret (first line; surrounding white space ignored).
    #[arg(long, env = "FSP2P_TURN_SECRET_FILE", conflicts_with = "turn_secret")]
    turn_secret_file: Option<std::path::PathBuf>,

    /// Lifetime of a TURN credential in seconds (coturn refuses it afterwards).
    #[arg(long, env = "FSP2P_TURN_TTL_SECS", default_value_t = IceConfig::default().turn_ttl_secs)]
    turn_ttl_secs: u64,
}

impl IceArgs {
    /// The ICE configuration, with `--turn-secret-file` read into the secret.
    pub(crate) fn into_config(self) -> Result<IceConfig> {
        let turn_secret = match &self.turn_secret_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading TURN secret file {}", path.display()))?;
                let secret = text.lines().next().unwrap_or("").trim().to_string();
                anyhow::ensure!(
                    !secret.is_empty(),
                    "TURN secret file {} is empty",
                    path.display()
                );
                Some(secret)
            }
            None => self.turn_secret,
        };
        Ok(IceConfig {
            stun_urls: self.stun_urls,
            turn_urls: self.turn_urls,
            turn_secret,
            turn_ttl_secs: self.turn_ttl_secs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `serve` with no flags must configure exactly the library's defaults:
    /// the defaults are written once, and this proves the CLI did not drift.
    #[test]
    fn serve_defaults_are_the_library_defaults() {
        // Only what the test passes: no FSP2P_* from the caller's environment.
        for (k, _) in std::env::vars() {
            if k.starts_with("FSP2P_") {
                std::env::remove_var(k);
            }
        }
        let cli = Cli::try_parse_from(["flightsim-p2p", "serve"]).expect("parses");
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        let args = *args;
        assert_eq!(Limits::from(args.limits), Limits::default());
        assert_eq!(QuicTuning::from(args.quic), QuicTuning::default());
        assert_eq!(args.ice.into_config().unwrap(), IceConfig::default());
        let cluster = ClusterArgs {
            redis_url: Some("redis://127.0.0.1:6379".into()),
            ..args.cluster.clone()
        };
        let (quic, http) = (
            "127.0.0.1:4433".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
        );
        let cfg = cluster
            .into_config(quic, http)
            .unwrap()
            .expect("cluster mode");
        let want = ClusterConfig::new(
            "redis://127.0.0.1:6379",
            NodeAddr {
                name: String::new(),
                quic: "127.0.0.1:4433".into(),
                http: "http://127.0.0.1:8080".into(),
                cert_sha256: None,
            },
        );
        assert_eq!(cfg, want);
        assert_eq!(
            want.directory_timeout,
            flightsim_p2p::directory::DEFAULT_TIMEOUT
        );
        assert_eq!(
            args.cluster.into_config(quic, http).unwrap(),
            None,
            "no URL, no cluster"
        );
    }

    #[test]
    fn cluster_mode_refuses_addresses_clients_cannot_reach() {
        let cli = Cli::try_parse_from([
            "flightsim-p2p",
            "serve",
            "--redis-url",
            "redis://127.0.0.1:1",
        ])
        .expect("parses");
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        let any = "0.0.0.0:4433".parse().unwrap();
        let http = "127.0.0.1:8080".parse().unwrap();
        let err = args.cluster.clone().into_config(any, http).unwrap_err();
        assert!(err.to_string().contains("--public-quic"), "{err}");
        let bad = ClusterArgs {
            cluster_node_ttl_ms: 999,
            ..args.cluster
        };
        let err = bad.into_config(http, http).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
    }

    #[test]
    fn vectors_prints_the_codec_vectors_or_with_client_the_behaviour_ones() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args).map(|c| c.command) {
            Ok(Command::Vectors(v)) => v.client,
            other => panic!("{args:?}: {other:?}"),
        };
        assert!(!parse(&["flightsim-p2p", "vectors"]));
        assert!(parse(&["flightsim-p2p", "vectors", "--client"]));
    }

    #[test]
    fn a_flag_reaches_the_library_struct() {
        let cli = Cli::try_parse_from([
            "flightsim-p2p",
            "serve",
            "--max-sessions-per-ip",
            "3",
            "--keep-alive-ms",
            "1234",
            "--turn-ttl-secs",
            "60",
        ])
        .expect("parses");
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        let args = *args;
        assert_eq!(Limits::from(args.limits).max_sessions_per_ip, 3);
        assert_eq!(QuicTuning::from(args.quic).keep_alive_ms, 1234);
        assert_eq!(args.ice.into_config().unwrap().turn_ttl_secs, 60);
    }
}
