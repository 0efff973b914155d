//! Session setup and fallback time under an emulated round trip.
//!
//! This kernel has no `netem`, so delay comes from user-space proxies: a UDP
//! proxy (QUIC, WebTransport) and a TCP proxy (WebSocket), each holding every
//! packet or chunk for half the RTT in each direction; the TCP proxy also holds
//! a new connection's first bytes for the round trip its handshake would take
//! (the kernel answered the SYN at once). For WebSocket over TLS
//! the TCP proxy forwards to a TLS terminator (the dev certificate) in front
//! of the server's HTTP port, as Railway's edge or nginx would be.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use flightsim_p2p::client::{Client, ClientConfig, ClientTransport, QuicEndpoint, Trust};
use flightsim_p2p::protocol::{ClientMsg, JoinSession, RelayMode, ServerMsg, Signal};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

/// Forward UDP between clients and `upstream`, `one_way` late in each direction.
pub async fn udp_delay_proxy(upstream: SocketAddr, one_way: Duration) -> Result<SocketAddr> {
    udp_delay_proxy_on(UdpSocket::bind("127.0.0.1:0").await?, upstream, one_way)
}

/// [`udp_delay_proxy`] on a socket bound beforehand (its address can be
/// handed out before `upstream` is known).
pub fn udp_delay_proxy_on(
    listen: UdpSocket,
    upstream: SocketAddr,
    one_way: Duration,
) -> Result<SocketAddr> {
    let listen = Arc::new(listen);
    let addr = listen.local_addr()?;
    tokio::spawn(async move {
        let mut flows: HashMap<SocketAddr, mpsc::UnboundedSender<(Instant, Vec<u8>)>> =
            HashMap::new();
        let mut buf = vec![0u8; 65536];
        while let Ok((n, client)) = listen.recv_from(&mut buf).await {
            let due = Instant::now() + one_way;
            let tx = flows.entry(client).or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
                let listen = listen.clone();
                tokio::spawn(async move {
                    let Ok(up) = UdpSocket::bind("127.0.0.1:0").await else {
                        return;
                    };
                    let up = Arc::new(up);
                    // Server -> client, delayed.
                    let (back_tx, back_rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
                    let up_r = up.clone();
                    tokio::spawn(async move {
                        let mut b = vec![0u8; 65536];
                        while let Ok((n, _)) = up_r.recv_from(&mut b).await {
                            let _ = back_tx.send((Instant::now() + one_way, b[..n].to_vec()));
                        }
                    });
                    tokio::spawn(delayed_udp(back_rx, listen, client));
                    delayed_udp(rx, up, upstream).await;
                });
                tx
            });
            let _ = tx.send((due, buf[..n].to_vec()));
        }
    });
    Ok(addr)
}

async fn delayed_udp(
    mut rx: mpsc::UnboundedReceiver<(Instant, Vec<u8>)>,
    sock: Arc<UdpSocket>,
    to: SocketAddr,
) {
    while let Some((due, data)) = rx.recv().await {
        tokio::time::sleep_until(due.into()).await;
        let _ = sock.send_to(&data, to).await;
    }
}

/// Forward TCP to `upstream`, `one_way` late in each direction.
pub async fn tcp_delay_proxy(upstream: SocketAddr, one_way: Duration) -> Result<SocketAddr> {
    tcp_delay_proxy_on(TcpListener::bind("127.0.0.1:0").await?, upstream, one_way)
}

/// [`tcp_delay_proxy`] on a listener bound beforehand.
pub fn tcp_delay_proxy_on(
    listener: TcpListener,
    upstream: SocketAddr,
    one_way: Duration,
) -> Result<SocketAddr> {
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                // The kernel completed the client's handshake with this proxy at
                // once; a real connect() returns after a round trip, so nothing the
                // client sends may leave before then.
                let connected = Instant::now() + 2 * one_way;
                tokio::join!(
                    delayed_pipe(cr, sw, one_way, connected),
                    delayed_pipe(sr, cw, one_way, Instant::now())
                );
            });
        }
    });
    Ok(addr)
}

/// Copy `r` to `w`, each chunk `one_way` late, none sent before `not_before + one_way`.
async fn delayed_pipe(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    one_way: Duration,
    not_before: Instant,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, data)) = rx.recv().await {
            tokio::time::sleep_until(due.into()).await;
            if w.write_all(&data).await.is_err() {
                return;
            }
        }
        let _ = w.shutdown().await;
    });
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let _ = tx.send((Instant::now().max(not_before) + one_way, buf[..n].to_vec()));
    }
    drop(tx);
    let _ = writer.await;
}

/// The round trip the delay proxies really give, measured with an echo
/// server behind each (median of `n`): the nominal RTT plus timer rounding
/// and scheduling. Setup times are counted in these round trips.
pub struct ProxyRtt {
    pub udp: Duration,
    pub tcp: Duration,
}

pub async fn measure_proxy_rtt(one_way: Duration, n: usize) -> Result<ProxyRtt> {
    // UDP echo behind the UDP proxy.
    let echo = UdpSocket::bind("127.0.0.1:0").await?;
    let echo_addr = echo.local_addr()?;
    tokio::spawn(async move {
        let mut b = [0u8; 64];
        while let Ok((len, from)) = echo.recv_from(&mut b).await {
            let _ = echo.send_to(&b[..len], from).await;
        }
    });
    let proxy = udp_delay_proxy(echo_addr, one_way).await?;
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    sock.connect(proxy).await?;
    let mut udp = Vec::with_capacity(n);
    let mut b = [0u8; 64];
    for i in 0..n {
        let start = Instant::now();
        sock.send(&(i as u32).to_le_bytes()).await?;
        tokio::time::timeout(one_way * 10, sock.recv(&mut b))
            .await
            .context("UDP echo through the proxy timed out")??;
        udp.push(start.elapsed());
    }
    // TCP echo behind the TCP proxy, one connection, a byte at a time.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let echo_addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut b = [0u8; 64];
                while let Ok(len) = s.read(&mut b).await {
                    if len == 0 || s.write_all(&b[..len]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let proxy = tcp_delay_proxy(echo_addr, one_way).await?;
    let mut s = TcpStream::connect(proxy).await?;
    s.set_nodelay(true)?;
    let mut tcp = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        s.write_all(&[i as u8]).await?;
        tokio::time::timeout(one_way * 10, s.read_exact(&mut b[..1]))
            .await
            .context("TCP echo through the proxy timed out")??;
        tcp.push(start.elapsed());
    }
    let med = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    Ok(ProxyRtt {
        udp: med(udp),
        tcp: med(tcp),
    })
}

/// TLS in front of a plain TCP service (what a TLS-terminating proxy does).
pub async fn tls_terminator(
    upstream: SocketAddr,
    cert_dir: &std::path::Path,
) -> Result<SocketAddr> {
    let identity = flightsim_p2p::certs::dev_identity(cert_dir, &["localhost".into()])?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_no_client_auth()
    .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut up) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = up.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    Ok(addr)
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SetupResult {
    pub transport: String,
    pub joined_ms: f64,
    pub joined_rtts: f64,
    pub first_signal_ms: f64,
    pub first_signal_rtts: f64,
    pub runs: usize,
}

pub enum Way {
    QuicFresh,
    QuicResumed,
    WebTransport,
    WebSocket,
    WebSocketTls,
}

impl Way {
    pub fn name(&self) -> &'static str {
        match self {
            Way::QuicFresh => "raw QUIC, fresh",
            Way::QuicResumed => "raw QUIC, resumed (0-RTT)",
            Way::WebTransport => "WebTransport (Rust client, first request in the CONNECT)",
            Way::WebSocket => "WebSocket, plain TCP",
            Way::WebSocketTls => "WebSocket over TLS 1.3",
        }
    }
}

pub struct SetupTarget {
    pub quic_direct: SocketAddr,
    pub quic_delayed: SocketAddr,
    pub ws_delayed: String,
    pub wss_delayed: String,
    pub hash: [u8; 32],
    /// Measured round trip through the UDP proxy (QUIC, WebTransport).
    pub udp_rtt: Duration,
    /// Measured round trip through the TCP proxy (WebSocket).
    pub tcp_rtt: Duration,
}

/// Median time to "joined" and to "first signal delivered", over `runs`.
pub async fn measure(way: Way, t: &SetupTarget, runs: usize) -> Result<SetupResult> {
    // A host, connected directly, waits in a session.
    let host_cfg = ClientConfig::new(t.quic_direct, Trust::CertHash(t.hash));
    let mut host = Client::connect(&host_cfg, None).await?;
    let code = host.create_session(0, None).await?.code;
    let host_id = host.peer_id();

    let mut cfg = ClientConfig::new(t.quic_delayed, Trust::CertHash(t.hash));
    cfg.relay_mode = RelayMode::Datagram;
    match way {
        Way::QuicFresh | Way::QuicResumed => cfg.transport = ClientTransport::Quic,
        Way::WebTransport => cfg.transport = ClientTransport::Webtransport,
        Way::WebSocket => {
            cfg.transport = ClientTransport::Websocket;
            cfg.ws_url = Some(t.ws_delayed.clone());
        }
        Way::WebSocketTls => {
            cfg.transport = ClientTransport::Websocket;
            cfg.ws_url = Some(t.wss_delayed.clone());
        }
    }
    if let Way::QuicResumed = way {
        // Warm the TLS session cache once, then every measured run resumes.
        cfg.endpoint = Some(QuicEndpoint::new(&cfg)?);
        let mut warm = Client::connect(&cfg, None).await?;
        // Session tickets come after the handshake; a round trip makes sure
        // they arrived before the connection closes.
        warm.ping().await?;
        warm.close().await;
    }
    let mut joined = Vec::new();
    let mut signal = Vec::new();
    for _ in 0..runs {
        if let Way::QuicFresh = way {
            cfg.endpoint = None;
        }
        let join = ClientMsg::JoinSession(JoinSession {
            code: code.clone(),
            password: None,
            region_rtts: Vec::new(),
        });
        let start = Instant::now();
        let mut c = Client::connect(&cfg, Some(join))
            .await
            .context("joiner connect")?;
        c.wait_for(|m| matches!(m, ServerMsg::SessionJoined(_)).then_some(()))
            .await?;
        joined.push(start.elapsed());
        c.signal(host_id, Signal::Offer { sdp: "v=0".into() })
            .await?;
        host.wait_for(|m| matches!(m, ServerMsg::Signal { .. }).then_some(()))
            .await?;
        signal.push(start.elapsed());
        if let Way::QuicResumed = way {
            anyhow::ensure!(c.zero_rtt, "resumed run did not use 0-RTT");
            c.ping().await?; // collect the next session ticket (not timed)
        }
        c.close().await;
        // Drain the host's PeerJoined/PeerLeft.
        while host
            .next_event_within(Duration::from_millis(30))
            .await
            .is_some()
        {}
    }
    host.close().await;
    let med = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1000.0
    };
    let rtt = match way {
        Way::WebSocket | Way::WebSocketTls => t.tcp_rtt,
        _ => t.udp_rtt,
    };
    let rtt_ms = rtt.as_secs_f64() * 1000.0;
    let (j, s) = (med(&mut joined), med(&mut signal));
    Ok(SetupResult {
        transport: way.name().to_string(),
        joined_ms: j,
        joined_rtts: j / rtt_ms,
        first_signal_ms: s,
        first_signal_rtts: s / rtt_ms,
        runs,
    })
}

/// Setup from headless Chromium with the browser client (benches/browser_setup.mjs).
#[derive(Debug, Clone, serde::Serialize)]
pub struct BrowserSetup {
    pub chromium: String,
    /// (transport, median ms to joined, measured RTTs, runs)
    pub rows: Vec<(String, f64, f64, usize)>,
}

/// Times `connect()` + `joinSession()` in Chromium over WebTransport (UDP
/// proxy) and WebSocket (TCP proxy). `Ok(Err(why))` when it cannot run here.
pub async fn browser(
    t: &SetupTarget,
    http: SocketAddr,
    runs: usize,
) -> Result<std::result::Result<BrowserSetup, String>> {
    let host_cfg = ClientConfig::new(t.quic_direct, Trust::CertHash(t.hash));
    let mut host = Client::connect(&host_cfg, None).await?;
    let code = host.create_session(0, None).await?.code;
    let input = serde_json::json!({
        "http": http.port(),
        "quicPort": t.quic_delayed.port(),
        "wsUrl": t.ws_delayed,
        "wssUrl": t.wss_delayed,
        "certHex": t.hash.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "code": code,
        "runs": runs,
    });
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/browser_setup.mjs");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(script)
            .arg(input.to_string())
            .output()
    })
    .await?;
    let out = match out {
        Ok(o) => o,
        Err(e) => return Ok(Err(format!("node not runnable: {e}"))),
    };
    host.close().await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().rev().find(|l| l.starts_with('{')) else {
        return Ok(Err(format!(
            "browser_setup.mjs failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .take(5)
                .collect::<Vec<_>>()
                .join(" | ")
        )));
    };
    let v: serde_json::Value = serde_json::from_str(line).context("browser_setup.mjs output")?;
    if let Some(why) = v["skipped"].as_str() {
        return Ok(Err(why.to_string()));
    }
    let mut rows = Vec::new();
    for (key, name, rtt) in [
        ("webtransport", "WebTransport (Chromium)", t.udp_rtt),
        ("websocket", "WebSocket, plain TCP (Chromium)", t.tcp_rtt),
        (
            "websocket_tls",
            "WebSocket over TLS 1.3 (Chromium)",
            t.tcp_rtt,
        ),
    ] {
        let mut ms: Vec<f64> = v[key]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
            .unwrap_or_default();
        anyhow::ensure!(!ms.is_empty(), "no {key} runs in {line}");
        ms.sort_by(f64::total_cmp);
        let med = ms[ms.len() / 2];
        rows.push((
            name.to_string(),
            med,
            med / (rtt.as_secs_f64() * 1000.0),
            ms.len(),
        ));
    }
    Ok(Ok(BrowserSetup {
        chromium: v["chromium"].as_str().unwrap_or("?").to_string(),
        rows,
    }))
}

/// From "ICE failed, use the relay" to the first relayed frame delivered:
/// both peers reach the server through the delay proxy.
pub async fn fallback_time(t: &SetupTarget, runs: usize) -> Result<f64> {
    let cfg = ClientConfig::new(t.quic_delayed, Trust::CertHash(t.hash));
    let mut a = Client::connect(&cfg, None).await?;
    let code = a.create_session(0, None).await?.code;
    let mut b = Client::connect(&cfg, None).await?;
    b.join_session(&code, None).await?;
    let mut v = Vec::new();
    for i in 0..runs {
        let start = Instant::now();
        b.send_relay(a.peer_id(), &[i as u8; 200]).await?;
        a.next_relay(Duration::from_secs(2))
            .await
            .context("relay frame lost")?;
        v.push(start.elapsed());
    }
    v.sort();
    Ok(v[v.len() / 2].as_secs_f64() * 1000.0)
}
