//! `flightsim-p2p`: the command line. A thin layer over the library: parse
//! flags (every one also an environment variable), then call into `server`,
//! `certs` or `client`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use flightsim_p2p::client::{Client, ClientConfig, Event, QualitySnapshot, Trust};
use flightsim_p2p::config::{DevCert, ServerConfig};
use flightsim_p2p::protocol::{ClientKind, RelayMode, ServerMsg};
use flightsim_p2p::{certs, server};

mod cli;
mod revoke;
use cli::{CertsArgs, Cli, CliRelayMode, Command, PeerArgs, ServeArgs, TokenArgs};

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(&cli.log)?)
        .with_writer(std::io::stderr)
        .init();
    let threads = match &cli.command {
        Command::Serve(args) => args.worker_threads,
        _ => 0,
    };
    // 0 = one worker per core this process may run on (affinity and cgroup
    // CPU limits honoured); on one core that is the single-threaded runtime,
    // as with 1: a multi-thread runtime with one worker pays for cross-thread
    // hand-offs it never uses (benches/harness/game.rs measures both).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rt = match threads {
        0 if cores > 1 => tokio::runtime::Runtime::new(),
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .context("starting the tokio runtime")?;
    match cli.command {
        Command::Serve(args) => rt.block_on(serve(*args)),
        Command::Certs(args) => certs_cmd(args),
        Command::Peer(args) => rt.block_on(peer(*args)),
        Command::Vectors(args) if args.client => {
            print!("{}", flightsim_p2p::protocol::client_vectors::render());
            Ok(())
        }
        Command::Vectors(_) => {
            print!("{}", flightsim_p2p::vectors::render());
            Ok(())
        }
        Command::Token(args) => token_cmd(args),
        Command::Revoke(args) => {
            let key = read_at_file(&args.key)?;
            rt.block_on(revoke::run(args, key))
        }
    }
}

/// `token`: mint a token, or print a new key. The claims are the ones
/// `serve --auth` reads (PROTOCOL.md, access tokens).
fn token_cmd(a: TokenArgs) -> Result<()> {
    use flightsim_p2p::auth;
    if let Some(kind) = a.keygen.as_deref() {
        let mut random = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
            .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
        for line in auth::keygen(kind, &a.kid, random)? {
            println!("{line}");
        }
        return Ok(());
    }
    let spec = read_at_file(a.key.as_deref().unwrap_or_default())?;
    let signer = auth::Signer::from_spec(&spec)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let mut claims = serde_json::json!({
        "sub": a.sub.unwrap_or_default(),
        "aud": a.aud.unwrap_or_default(),
        "iat": now,
        "nbf": now,
        "exp": now + a.ttl,
    });
    if let Some(j) = a.jti {
        claims["jti"] = j.into();
    }
    if a.no_create {
        claims["create"] = false.into();
    }
    if !a.sessions.is_empty() {
        claims["sessions"] = a.sessions.into();
    }
    if let Some(m) = a.max_peers {
        claims["max_peers"] = m.into();
    }
    match a.relay.as_deref() {
        None => {}
        Some("off") => claims["relay"] = false.into(),
        Some(r) => {
            let rate: u32 = r
                .parse()
                .with_context(|| format!("--relay {r:?}: `off` or bytes per second"))?;
            claims["relay"] = rate.into();
        }
    }
    if let Some(n) = a.name {
        claims["name"] = n.into();
    }
    if a.admin {
        claims["admin"] = true.into();
    }
    println!("{}", signer.sign(&claims));
    Ok(())
}

/// A flag value, or the contents of the file it names with `@path`.
fn read_at_file(v: &str) -> Result<String> {
    match v.strip_prefix('@') {
        Some(path) => Ok(std::fs::read_to_string(path)
            .with_context(|| format!("reading {path}"))?
            .trim()
            .to_string()),
        None => Ok(v.to_string()),
    }
}

/// The project's crates besides this one: a `flightsim_p2p` directive
/// (`--log flightsim_p2p=debug`) means the whole project, as it did when
/// everything was one crate.
const PROJECT_CRATES: [&str; 4] = ["fsp2p_protocol", "fsp2p_core", "fsp2p_wire", "fsp2p_client"];

/// The log filter the user asked for, except that web-transport-quinn never
/// logs below info: its debug lines print whole CONNECT requests, whose URL
/// can carry a join code, a password and a resume token (`?first=`).
fn log_filter(spec: &str) -> Result<tracing_subscriber::EnvFilter> {
    let mut directives: Vec<String> = Vec::new();
    for d in spec.split(',') {
        directives.push(d.to_string());
        if let Some(rest) = d.trim().strip_prefix("flightsim_p2p") {
            if rest.is_empty() || rest.starts_with('=') {
                directives.extend(PROJECT_CRATES.iter().map(|c| format!("{c}{rest}")));
            }
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_new(directives.join(","))
        .with_context(|| format!("bad log filter {spec:?}"))?;
    Ok(filter.add_directive(
        "web_transport_quinn=info"
            .parse()
            .context("the web_transport_quinn directive")?,
    ))
}

async fn serve(args: ServeArgs) -> Result<()> {
    let ice = args.ice.into_config()?;
    let (identity, dev_cert) = match (&args.cert, &args.key) {
        (Some(c), Some(k)) => (certs::load_pem(c, k)?, None),
        _ => (
            certs::dev_identity(&args.dev_cert.cert_dir, &args.dev_cert.dev_cert_hosts)?,
            Some(DevCert {
                dir: args.dev_cert.cert_dir.clone(),
                hosts: args.dev_cert.dev_cert_hosts.clone(),
            }),
        ),
    };
    let http_listen = match (args.http_listen, std::env::var("PORT").ok()) {
        (Some(a), _) => a,
        (None, Some(port)) => {
            let port: u16 = port
                .parse()
                .with_context(|| format!("PORT={port:?} is not a port"))?;
            SocketAddr::from(([0, 0, 0, 0], port))
        }
        (None, None) => SocketAddr::from(([127, 0, 0, 1], 8080)),
    };
    let web_dir = args
        .web_dir
        .clone()
        .or_else(|| Some(PathBuf::from("client/web")).filter(|p| p.is_dir()));
    let proxy = args.proxy.clone().into_config();
    match &proxy {
        None => {}
        Some(p) if p.header != flightsim_p2p::proxy::FORWARDED_FOR => tracing::info!(
            header = %p.header,
            "behind a proxy: a WebSocket client's address is the one in this header, which the proxy must overwrite"
        ),
        Some(p) if p.trusted.is_empty() => tracing::info!(
            hops = p.hops,
            "behind a proxy: a WebSocket client's address is the X-Forwarded-For entry this many places from the right; \
             every HTTP connection is taken to come through the proxy, so the per-address TCP cap is left to the session core"
        ),
        Some(p) => tracing::info!(
            proxies = %p.trusted.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            "behind a proxy: X-Forwarded-For is believed only from these addresses, read from the right past them"
        ),
    }
    if ice.stun_urls.is_empty() && ice.turn_urls.is_empty() {
        tracing::warn!("no --stun-url/--turn-url: clients get no ICE servers, so WebRTC only finds host candidates (fine on one LAN); the relay still works");
    }
    if !ice.turn_urls.is_empty() && ice.turn_secret.is_none() {
        tracing::warn!("--turn-url given without --turn-secret: TURN URLs are not sent (they would be useless without credentials)");
    }
    let cluster = args.cluster.clone().into_config(args.listen, http_listen)?;
    let access = args.auth.clone().into_access()?;
    match &access {
        None => tracing::info!(
            "open server (no --auth): anyone who reaches the port may create and join sessions and use the relay; fine for development"
        ),
        Some(a) => tracing::info!(
            keys = %a.verifier.kids().collect::<Vec<_>>().join(","),
            audience = %a.verifier.audience,
            "access control: every client needs a token signed with one of these keys for this audience"
        ),
    }
    let hash = identity.sha256_hex();
    let dev = identity.dev;
    let srv = server::Server::start(ServerConfig {
        listen: args.listen,
        http_listen,
        identity,
        limits: args.limits.into(),
        ice,
        quic: args.quic.into(),
        web_dir,
        proxy,
        dev_cert,
        cluster,
        access,
    })
    .await?;
    if dev {
        println!("dev certificate sha-256: {hash}");
    }
    println!(
        "listening: quic+webtransport udp://{}  http://{}",
        srv.quic_addr(),
        srv.http_addr()
    );
    wait_for_signal().await;
    srv.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn certs_cmd(args: CertsArgs) -> Result<()> {
    let id = if args.force {
        certs::write_dev(&args.dev_cert.cert_dir, &args.dev_cert.dev_cert_hosts)?
    } else {
        certs::dev_identity(&args.dev_cert.cert_dir, &args.dev_cert.dev_cert_hosts)?
    };
    let (cert, key) = certs::dev_paths(&args.dev_cert.cert_dir);
    println!("certificate: {}", cert.display());
    println!("key:         {}", key.display());
    println!("sha-256:     {}", id.sha256_hex());
    Ok(())
}

async fn peer(args: PeerArgs) -> Result<()> {
    let trust = match (&args.cert_hash, &args.ca) {
        (Some(h), _) => Trust::CertHash(certs::parse_sha256_hex(h)?),
        (None, Some(ca)) => Trust::CaFile(ca.clone()),
        (None, None) => {
            let (cert, _) = certs::dev_paths(&args.cert_dir);
            Trust::CertHash(certs::pem_file_sha256(&cert).with_context(|| {
                format!(
                    "no --cert-hash or --ca, and no dev certificate at {}",
                    cert.display()
                )
            })?)
        }
    };
    let mut cfg = ClientConfig::new(args.server, trust);
    cfg.server_name = args.server_name.clone();
    cfg.transport = args.transport.into();
    cfg.ws_url = Some(
        args.ws_url
            .clone()
            .unwrap_or_else(|| format!("ws://{}/ws", SocketAddr::new(args.server.ip(), 8080))),
    );
    cfg.fallback_delay = Duration::from_millis(args.fallback_delay_ms);
    cfg.name = args.name.clone();
    if let Some(t) = &args.token {
        cfg.token = Some(flightsim_p2p::client::AccessToken::Fixed(read_at_file(t)?));
    }
    cfg.kind = ClientKind::Rust;
    cfg.telemetry = !args.no_telemetry;
    cfg.quality_echo = !args.no_echo;
    cfg.relay_mode = match args.relay_mode {
        CliRelayMode::Datagram => RelayMode::Datagram,
        CliRelayMode::Stream => RelayMode::Stream,
    };
    let mut client = Client::connect(&cfg, None).await?;
    if args.print_welcome {
        println!("{}", serde_json::to_string_pretty(&client.welcome)?);
        client.close().await;
        return Ok(());
    }
    println!(
        "welcome: peer id {} over {}",
        client.peer_id(),
        client.transport().as_str()
    );
    let first_peer_id = client.peer_id();
    if args.create {
        let info = client
            .create_session(args.max_peers, args.password.as_deref())
            .await?;
        println!(
            "session created: code {} (max {} peers)",
            info.code, info.max_peers
        );
    } else if let Some(code) = &args.join {
        let info = client.join_session(code, args.password.as_deref()).await?;
        let ids: Vec<u32> = info.peers.iter().map(|p| p.id).collect();
        println!(
            "joined session {}: host {}, peers {:?}",
            info.code, info.host, ids
        );
    }
    // In cluster mode a join or create may be redirected to another node,
    // where the client is a new peer: its `Reconnected` is still to be
    // read, and is not a resume grace that passed.
    let mut redirected = client.peer_id() != first_peer_id;

    let size = args.size.max(12);
    let period = (args.send_rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.send_rate));
    let mut send_tick = tokio::time::interval(period.unwrap_or(Duration::from_secs(3600)));
    send_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut report = tokio::time::interval(Duration::from_secs(1));
    let end = (args.duration > 0.0)
        .then(|| tokio::time::Instant::now() + Duration::from_secs_f64(args.duration));
    let start = Instant::now();
    let (mut sent, mut received, mut bytes_in) = (0u64, 0u64, 0u64);
    let mut payload = vec![0u8; size];
    let mut seq = 0u32;
    loop {
        tokio::select! {
            _ = send_tick.tick(), if period.is_some() && (args.count == 0 || sent < args.count) => {
                // The flight-data envelope's sequence number, so browser and
                // .NET peers accept these frames; then a timestamp.
                // (It skips 0xFFFFFFFF, which would make the frame a quality frame.)
                seq = flightsim_p2p::protocol::report::next_flight_seq(seq);
                payload[..4].copy_from_slice(&seq.to_le_bytes());
                payload[4..12].copy_from_slice(&(start.elapsed().as_nanos() as u64).to_le_bytes());
                if let Err(e) = client.send_relay(args.to, &payload).await {
                    eprintln!("send failed: {e:#}");
                }
                sent += 1;
            }
            _ = report.tick() => {
                if sent > 0 || received > 0 {
                    println!("stats: sent {sent}, received {received} ({bytes_in} bytes)");
                }
                if args.stats {
                    for q in client.quality() {
                        println!("{}", quality_line(&q));
                    }
                }
            }
            _ = async { match end { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => break,
            _ = tokio::signal::ctrl_c() => break,
            e = client.next_event() => match e {
                None => break,
                Some(Event::Relay { payload, .. }) => {
                    received += 1;
                    bytes_in += payload.len() as u64;
                }
                Some(Event::Control(m)) => print_event(&m),
                Some(Event::Reconnecting { attempt, after }) => {
                    println!("connection lost: reconnecting (attempt {attempt} in {after:?})");
                }
                Some(Event::Reconnected { resumed }) => {
                    println!("{}", reconnected_line(resumed, std::mem::take(&mut redirected), client.peer_id()));
                }
                Some(Event::Rejoined { peer_id }) => {
                    println!("rejoined the session as peer {peer_id}");
                }
                Some(Event::Closed(why)) => {
                    println!("connection closed: {why}");
                    break;
                }
            },
        }
    }
    println!("done: sent {sent}, received {received} ({bytes_in} bytes)");
    client.close().await;
    Ok(())
}

/// What `peer` prints for `Event::Reconnected`; `redirected`: this is the
/// reconnection of a join or create redirected to another node.
fn reconnected_line(resumed: bool, redirected: bool, peer_id: u32) -> String {
    if resumed {
        format!("reconnected: peer id {peer_id} resumed")
    } else if redirected {
        format!("redirected to the session's node: peer id {peer_id} there")
    } else {
        "reconnected as a new peer (the resume grace had passed)".to_string()
    }
}

/// One line of `peer --stats`: a link's quality, the same fields the
/// browser and C# clients show.
fn quality_line(q: &QualitySnapshot) -> String {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    format!(
        "quality: peer {} path {} for {:.1}s rtt {} ms loss {:.1} % jitter {} ms fps in {} out {} stale {} grade {}",
        q.peer,
        q.path.as_str(),
        q.path_ms as f64 / 1000.0,
        opt(q.rtt_ms.map(|r| r.to_string())),
        q.loss_pct,
        opt(q.jitter_ms.map(|j| format!("{j:.1}"))),
        q.fps_in,
        q.fps_out,
        q.stale_dropped,
        q.grade.as_str(),
    )
}

fn print_event(m: &ServerMsg) {
    match m {
        ServerMsg::PeerJoined(p) => println!("peer joined: {} {:?}", p.id, p.name),
        ServerMsg::PeerLeft { peer, reason } => println!("peer left: {peer} ({reason:?})"),
        ServerMsg::HostChanged { host } => println!("host is now {host}"),
        ServerMsg::Signal { from, signal } => println!("signal from {from}: {signal:?}"),
        ServerMsg::Error { code, message } => println!("error {code}: {message}"),
        ServerMsg::PeerStatus { peer, online } => println!("peer {peer} online: {online}"),
        ServerMsg::GoingAway { message, .. } => println!("server going away: {message}"),
        ServerMsg::SessionLeft { reason } => println!("left session ({reason:?})"),
        other => println!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quality_line_names_every_field() {
        use flightsim_p2p::protocol::report::{Grade, LinkPath};
        let mut q = QualitySnapshot {
            peer: 7,
            path: LinkPath::Relay,
            path_ms: 12_345,
            rtt_ms: Some(42),
            loss_pct: 5.0,
            jitter_ms: Some(1.25),
            fps_in: 30,
            fps_out: 29,
            stale_dropped: 3,
            grade: Grade::Good,
        };
        assert_eq!(
            quality_line(&q),
            "quality: peer 7 path relay for 12.3s rtt 42 ms loss 5.0 % jitter 1.2 ms fps in 30 out 29 stale 3 grade good"
        );
        (q.rtt_ms, q.jitter_ms, q.grade) = (None, None, Grade::Unknown);
        assert!(quality_line(&q).contains("rtt - ms loss 5.0 % jitter - ms"));
        assert!(quality_line(&q).ends_with("grade unknown"));
    }

    #[test]
    fn a_redirected_join_is_not_reported_as_a_lapsed_grace() {
        assert_eq!(
            reconnected_line(false, true, 7),
            "redirected to the session's node: peer id 7 there"
        );
        assert!(reconnected_line(false, false, 7).contains("grace had passed"));
        assert_eq!(
            reconnected_line(true, false, 7),
            "reconnected: peer id 7 resumed"
        );
    }
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Even at `--log debug`, the CONNECT request web-transport-quinn logs
    /// (URL with `?first=`) never reaches the log; our own debug lines do.
    #[test]
    fn a_debug_log_never_carries_the_connect_url() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(log_filter("debug").unwrap())
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "web_transport_quinn::connect", "received CONNECT request first=SECRET");
            tracing::debug!(target: "flightsim_p2p::server", "ours");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("ours"), "{text}");
        assert!(!text.contains("SECRET"), "{text}");
    }

    /// `--log flightsim_p2p=debug` covers the crates split out of this one.
    #[test]
    fn a_directive_for_this_crate_covers_the_project_crates() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(log_filter("flightsim_p2p=debug,info").unwrap())
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "fsp2p_wire::webtransport", "wire line");
            tracing::debug!(target: "fsp2p_client", "client line");
            tracing::debug!(target: "quinn", "not ours");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains("wire line") && text.contains("client line"),
            "{text}"
        );
        assert!(!text.contains("not ours"), "{text}");
    }
}
