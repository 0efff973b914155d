//! Every per-address budget on every transport, and the client's address
//! behind real reverse proxies.
//!
//! The budgets that key on a client's address (connections, sessions
//! created, failed joins) and the per-connection signal budget are each
//! tried over raw QUIC, WebTransport and WebSocket against the real server
//! binary: a transport that forgot to pass the address to the session core
//! lets a client through where the others refuse it.
//!
//! Behind a proxy the address comes from a header. Real nginx processes
//! (Debian's nginx-light, started per test on loopback) stand in front of
//! the server, one or two deep, appending to `X-Forwarded-For` or
//! overwriting `X-Real-IP` as the deployment guide configures them. The
//! client binds its own loopback address (127.0.0.0/8 is all loopback), so
//! the "real" address is known, and writes a forged `X-Forwarded-For` of
//! its own that changes on every request: the budgets must hold for the
//! real address, and only for it.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{eventually, expect_error, temp_dir, ServeProcess, WAIT};
use flightsim_p2p::client::{Client, ClientConfig, ClientTransport};
use flightsim_p2p::first::encode_first;
use flightsim_p2p::protocol::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const TRANSPORTS: [ClientTransport; 3] = [
    ClientTransport::Quic,
    ClientTransport::Webtransport,
    ClientTransport::Websocket,
];

fn serve(tag: &str, extra: &[&str]) -> (ServeProcess, PathBuf) {
    let dir = temp_dir(tag);
    (ServeProcess::logged(tag, &dir, extra), dir)
}

fn over(srv: &ServeProcess, t: ClientTransport) -> ClientConfig {
    let mut c = srv.config(RelayMode::Datagram);
    c.transport = t;
    c
}

fn hello(name: &str) -> ClientMsg {
    ClientMsg::Hello(Hello {
        version: PROTOCOL_VERSION,
        client: ClientKind::Other,
        relay_mode: RelayMode::Datagram,
        name: name.into(),
        resume_token: None,
        access_token: None,
    })
}

// ---------------------------------------------------------------------------
// Every budget, every transport
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_holds_on_every_transport() {
    for t in TRANSPORTS {
        let (srv, _dir) = serve(
            &format!("pa-conns-{t:?}"),
            &["--max-connections-per-ip", "2"],
        );
        let cfg = over(&srv, t);
        let a = Client::connect(&cfg, None).await.unwrap();
        let b = Client::connect(&cfg, None).await.unwrap();
        let Err(err) = Client::connect(&cfg, None).await else {
            panic!("{t:?}: a third connection from one address was let in");
        };
        let text = format!("{err:#}");
        // Raw QUIC and WebSocket: closed by the core with server_full (an
        // upgraded WebSocket is the core's to count, not the TCP cap's).
        // WebTransport: the CONNECT answered 503 (PROTOCOL.md, WebTransport
        // refusals).
        let refused = match t {
            ClientTransport::Webtransport => text.contains("503"),
            _ => text.contains("server_full"),
        };
        assert!(refused, "{t:?}: refused for another reason: {text}");
        // One slot given back lets one more in.
        drop(a);
        assert!(
            eventually(WAIT, || srv.metric("fsp2p_connections") <= 1.0).await,
            "{t:?}: the closed connection still holds its slot"
        );
        let _c = Client::connect(&cfg, None)
            .await
            .unwrap_or_else(|e| panic!("{t:?}: a freed slot: {e:#}"));
        drop(b);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_quota_holds_on_every_transport() {
    for t in TRANSPORTS {
        let (srv, _dir) = serve(
            &format!("pa-sessions-{t:?}"),
            &["--max-sessions-per-ip", "1"],
        );
        let cfg = over(&srv, t);
        let mut a = Client::connect(&cfg, None).await.unwrap();
        a.create_session(0, None).await.unwrap();
        // Another connection of the same address, on the same transport.
        let mut b = Client::connect(&cfg, None).await.unwrap();
        expect_error(b.create_session(0, None).await, ErrorCode::TooManySessions)
            .unwrap_or_else(|e| panic!("{t:?}: {e}"));
        // And on each other transport: one budget per address.
        for other in TRANSPORTS {
            let mut c = Client::connect(&over(&srv, other), None).await.unwrap();
            expect_error(c.create_session(0, None).await, ErrorCode::TooManySessions)
                .unwrap_or_else(|e| panic!("{t:?} then {other:?}: {e}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failed_join_lockout_holds_on_every_transport_and_across_reconnects() {
    for t in TRANSPORTS {
        let (srv, _dir) = serve(&format!("pa-joins-{t:?}"), &["--max-join-attempts", "3"]);
        let cfg = over(&srv, t);
        let mut host = Client::connect(&cfg, None).await.unwrap();
        let code = host.create_session(0, None).await.unwrap().code;
        // Three wrong guesses, each on a new connection (reconnecting must
        // not reset the address's budget).
        for guess in ["AAAAAA", "BBBBBB", "CCCCCC"] {
            let mut g = Client::connect(&cfg, None).await.unwrap();
            expect_error(g.join_session(guess, None).await, ErrorCode::UnknownSession)
                .unwrap_or_else(|e| panic!("{t:?}: {e}"));
        }
        // Now even the right code is refused from this address, whatever
        // the transport.
        for other in TRANSPORTS {
            let mut c = Client::connect(&over(&srv, other), None).await.unwrap();
            expect_error(
                c.join_session(&code, None).await,
                ErrorCode::TooManyJoinAttempts,
            )
            .unwrap_or_else(|e| panic!("{t:?} then {other:?}: {e}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signal_budget_holds_on_every_transport() {
    for t in TRANSPORTS {
        let (srv, _dir) = serve(&format!("pa-signals-{t:?}"), &["--signals-per-sec", "5"]);
        let cfg = over(&srv, t);
        let mut host = Client::connect(&cfg, None).await.unwrap();
        let code = host.create_session(0, None).await.unwrap().code;
        let mut peer = Client::connect(&cfg, None).await.unwrap();
        peer.join_session(&code, None).await.unwrap();
        let to = host.peer_id();
        // Burst: twice the rate. 40 at once is far past it.
        for _ in 0..40 {
            peer.signal(to, Signal::App { data: vec![1; 8] })
                .await
                .unwrap();
        }
        let told = tokio::time::timeout(
            WAIT,
            peer.wait_for(|m| match m {
                ServerMsg::Error { code, .. } if *code == ErrorCode::RateLimited as u16 => Some(()),
                _ => None,
            }),
        )
        .await;
        assert!(
            matches!(told, Ok(Ok(()))),
            "{t:?}: 40 signals at once were never rate limited: {told:?}"
        );
        // The host got at most the burst (10) of them.
        let mut got = 0;
        while let Some(ev) = host.next_event_within(Duration::from_millis(300)).await {
            if matches!(
                ev,
                flightsim_p2p::client::Event::Control(ServerMsg::Signal { .. })
            ) {
                got += 1;
            }
        }
        assert!(
            (1..=10).contains(&got),
            "{t:?}: {got} of 40 signals passed a budget of 5/s (burst 10)"
        );
    }
}

// ---------------------------------------------------------------------------
// Behind real proxies
// ---------------------------------------------------------------------------

/// One nginx, in front of `upstream`, configured as DEPLOYMENT.md shows.
struct Nginx {
    child: Child,
    listen: SocketAddr,
    dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// `headers`: the `proxy_set_header` lines for the client's address.
    fn start(tag: &str, upstream: SocketAddr, headers: &str) -> Nginx {
        let nginx = ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|p| Command::new(p).arg("-v").output().is_ok())
            .expect("nginx is not installed (apt-get install nginx-light, or scripts/deps.sh)");
        let dir = temp_dir(tag);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let listen = SocketAddr::from(([127, 0, 0, 1], port));
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\nevents {{ worker_connections 512; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/b; proxy_temp_path {d}/p;\n\
             fastcgi_temp_path {d}/f; uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n\
             server {{\n    listen {listen};\n    location / {{\n\
             proxy_pass http://{upstream};\n      proxy_http_version 1.1;\n\
             proxy_set_header Upgrade $http_upgrade;\n      proxy_set_header Connection \"upgrade\";\n\
             {headers}\n    }}\n  }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new(nginx)
            .args(["-p", &dir.display().to_string(), "-c"])
            .arg(dir.join("nginx.conf"))
            .args(["-e", &dir.join("error.log").display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let n = Nginx { child, listen, dir };
        let up = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            std::net::TcpStream::connect(listen).is_ok()
        });
        assert!(
            up,
            "nginx did not listen on {listen}: {}",
            std::fs::read_to_string(n.dir.join("error.log")).unwrap_or_default()
        );
        n
    }
}

/// nginx as DEPLOYMENT.md configures it: appends to X-Forwarded-For.
const APPEND: &str = "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;";
/// A platform that overwrites X-Real-IP (Railway's edge, nginx's `$remote_addr`).
const OVERWRITE_REAL_IP: &str = "proxy_set_header X-Real-IP $remote_addr;";

/// One join through `proxy` over WebSocket with `?first=` (Hello and the
/// join in the URL, as the browser client sends them), from the loopback
/// address `from`, with headers the client writes itself. Returns the
/// error code that answered the join, or 0 if it was joined.
async fn join_via(proxy: SocketAddr, from: IpAddr, headers: &[(&str, &str)], code: &str) -> u16 {
    let first = encode_first(&[
        hello("guesser"),
        ClientMsg::JoinSession(JoinSession {
            code: code.into(),
            password: None,
            region_rtts: Vec::new(),
        }),
    ]);
    let mut ws = ws_from(proxy, from, headers, &first)
        .await
        .expect("upgrade through the proxy");
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("an answer to the join")
            .expect("the socket stays open until the answer")
            .expect("a WebSocket message");
        let Message::Binary(b) = msg else { continue };
        let Ok(WsMessage::Control(body)) = parse_ws(&b) else {
            continue;
        };
        match decode::<ServerMsg>(body) {
            Ok(ServerMsg::Error { code, .. }) => return code,
            Ok(ServerMsg::SessionJoined(_)) => return 0,
            _ => continue,
        }
    }
}

/// A session to guess at, and the server's refusals counted by whom.
async fn guesses(
    proxy: SocketAddr,
    from: IpAddr,
    n: usize,
    forged: impl Fn(usize) -> Vec<(String, String)>,
) -> (usize, usize) {
    let (mut looked_up, mut refused) = (0, 0);
    for i in 0..n {
        let h = forged(i);
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        match join_via(proxy, from, &h, "ZZZZZZ").await {
            c if c == ErrorCode::UnknownSession as u16 => looked_up += 1,
            c if c == ErrorCode::TooManyJoinAttempts as u16 => refused += 1,
            other => panic!("join answered with {other}"),
        }
    }
    (looked_up, refused)
}

fn forged_xff(i: usize) -> Vec<(String, String)> {
    vec![(
        "x-forwarded-for".into(),
        format!("198.51.100.{}", i % 250 + 1),
    )]
}

const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 50));
const NEIGHBOUR: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 51));

/// The issue-28 probe: 40 join guesses through `?first=`, each with a new
/// forged X-Forwarded-For, behind one nginx that appends. Refused after the
/// budget, exactly as with one address; a neighbour on another address
/// still has its own budget (so the address really is read from the proxy,
/// not lumped on the proxy's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_forwarded_for_resets_no_budget_behind_one_proxy() {
    let (srv, _dir) = serve(
        "pa-proxy-one",
        &["--trust-proxy", "--max-join-attempts", "3"],
    );
    let nginx = Nginx::start("pa-nginx-one", srv.http, APPEND);
    let (looked_up, refused) = guesses(nginx.listen, CLIENT, 40, forged_xff).await;
    println!(
        "behind one proxy, rotating X-Forwarded-For: {looked_up} looked up, {refused} refused"
    );
    assert_eq!((looked_up, refused), (3, 37));
    let (looked_up, _) = guesses(nginx.listen, NEIGHBOUR, 1, forged_xff).await;
    assert_eq!(
        looked_up, 1,
        "the neighbour was locked out with the guesser"
    );
}

/// Two proxies (a CDN in front of nginx): the client is two entries from
/// the right (`--proxy-hops 2`), or the first from the right that is not a
/// listed proxy (`--trusted-proxies`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_address_is_found_behind_two_proxies() {
    for (tag, how) in [
        ("hops", &["--proxy-hops", "2"][..]),
        ("listed", &["--trusted-proxies", "127.0.0.1"][..]),
    ] {
        let mut args = vec!["--trust-proxy", "--max-join-attempts", "3"];
        args.extend_from_slice(how);
        let (srv, _dir) = serve(&format!("pa-proxy-two-{tag}"), &args);
        let inner = Nginx::start(&format!("pa-nginx-inner-{tag}"), srv.http, APPEND);
        let outer = Nginx::start(&format!("pa-nginx-outer-{tag}"), inner.listen, APPEND);
        let (looked_up, refused) = guesses(outer.listen, CLIENT, 10, forged_xff).await;
        assert_eq!((looked_up, refused), (3, 7), "{tag}");
        let (looked_up, _) = guesses(outer.listen, NEIGHBOUR, 1, forged_xff).await;
        assert_eq!(
            looked_up, 1,
            "{tag}: the neighbour shares the guesser's budget"
        );
    }
}

/// A platform that overwrites X-Real-IP: a forged one never arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overwritten_real_ip_header_cannot_be_forged() {
    let (srv, _dir) = serve(
        "pa-proxy-real-ip",
        &[
            "--trust-proxy",
            "--proxy-header",
            "x-real-ip",
            "--max-join-attempts",
            "3",
        ],
    );
    let nginx = Nginx::start("pa-nginx-real-ip", srv.http, OVERWRITE_REAL_IP);
    let forged = |i: usize| {
        vec![
            ("x-real-ip".to_string(), format!("198.51.100.{}", i + 1)),
            (
                "x-forwarded-for".to_string(),
                format!("203.0.113.{}", i + 1),
            ),
        ]
    };
    let (looked_up, refused) = guesses(nginx.listen, CLIENT, 10, forged).await;
    assert_eq!((looked_up, refused), (3, 7));
    let (looked_up, _) = guesses(nginx.listen, NEIGHBOUR, 1, forged).await;
    assert_eq!(looked_up, 1);
}

/// Behind a listed proxy the TCP cap is the core's, per forwarded address:
/// many clients share the proxy's connections, yet one client still gets
/// only its own connection budget. A peer that reaches the HTTP port around
/// the proxy is capped on its socket address, and its headers are ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_per_forwarded_address_and_bypassers_by_socket() {
    let (srv, _dir) = serve(
        "pa-proxy-conns",
        &[
            "--trust-proxy",
            "--trusted-proxies",
            "127.0.0.1",
            "--max-connections-per-ip",
            "2",
            "--max-join-attempts",
            "3",
        ],
    );
    let nginx = Nginx::start("pa-nginx-conns", srv.http, APPEND);
    // Four clients through the proxy, two addresses: two each are let in.
    let mut open = Vec::new();
    for from in [CLIENT, CLIENT, NEIGHBOUR, NEIGHBOUR] {
        open.push(hold_ws(nginx.listen, from, &[("x-forwarded-for", "198.51.100.9")]).await);
    }
    assert!(
        open.iter().all(Option::is_some),
        "a client within its budget was refused"
    );
    assert!(
        hold_ws(
            nginx.listen,
            CLIENT,
            &[("x-forwarded-for", "198.51.100.10")]
        )
        .await
        .is_none(),
        "a third connection of one client through the proxy was let in"
    );
    // Around the proxy, from 127.0.0.60 with a forged header: not
    // believed (the lockout is its own), and TCP-capped on its address.
    let bypass = IpAddr::from([127, 0, 0, 60]);
    let (looked_up, refused) = guesses(srv.http, bypass, 5, forged_xff).await;
    assert_eq!(
        (looked_up, refused),
        (3, 2),
        "a bypasser's forged header was believed"
    );
    let third = IpAddr::from([127, 0, 0, 52]);
    let (looked_up, _) = guesses(nginx.listen, third, 1, forged_xff).await;
    assert_eq!(
        looked_up, 1,
        "the bypasser's failures were charged to someone else"
    );
    drop(open);
}

/// A WebSocket to `/ws?first=…` on `to`, from the loopback address `from`,
/// with headers the client writes itself. `None` if it was not upgraded.
async fn ws_from(
    to: SocketAddr,
    from: IpAddr,
    headers: &[(&str, &str)],
    first: &str,
) -> Option<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>> {
    let mut req = format!("ws://{to}/ws?first={first}")
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        let name =
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        req.headers_mut().append(name, v.parse().unwrap());
    }
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from, 0)).unwrap();
    let tcp = sock.connect(to).await.ok()?;
    tokio_tungstenite::client_async(req, tcp)
        .await
        .ok()
        .map(|(ws, _)| ws)
}

/// Open a WebSocket with Hello and keep it: `None` if the server refused it.
async fn hold_ws(
    proxy: SocketAddr,
    from: IpAddr,
    headers: &[(&str, &str)],
) -> Option<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>> {
    let first = encode_first(&[hello("holder")]);
    let mut ws = ws_from(proxy, from, headers, &first).await?;
    // The Welcome, or a close with server_full.
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.ok()?? {
            Ok(Message::Binary(b)) => {
                if let Ok(WsMessage::Control(body)) = parse_ws(&b) {
                    match decode::<ServerMsg>(body) {
                        Ok(ServerMsg::Welcome(_)) => return Some(ws),
                        Ok(ServerMsg::Error { .. }) => return None,
                        _ => {}
                    }
                }
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}
