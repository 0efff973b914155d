//! Access control against the real server binary (`serve --auth`): keys
//! made and tokens minted by the `token` subcommand, players on every
//! transport, the token in `Hello` and in the URL, refusals with their
//! codes, and logs that never show a token.

mod common;

use std::time::Duration;

use common::*;
use flightsim_p2p::client::{AccessToken, Client, ClientTransport};
use flightsim_p2p::first::encode_first;
use flightsim_p2p::protocol::{
    decode, ClientKind, ClientMsg, ErrorCode, Hello, RelayMode, ServerMsg, PROTOCOL_VERSION,
};

const AUD: &str = "access-test";

/// Run the server binary's `token` subcommand.
fn token_cmd(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flightsim-p2p"))
        .arg("token")
        .args(args)
        .output()
        .expect("run token");
    assert!(
        out.status.success(),
        "token {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The key lines `token --keygen` prints (comments dropped).
fn keygen(kind: &str, kid: &str) -> Vec<String> {
    token_cmd(&["--keygen", kind, "--kid", kid])
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn mint(key: &str, sub: &str, extra: &[&str]) -> String {
    let mut args = vec!["--key", key, "--aud", AUD, "--sub", sub, "--ttl", "10m"];
    args.extend_from_slice(extra);
    token_cmd(&args).trim().to_string()
}

fn with_token(
    mut cfg: flightsim_p2p::client::ClientConfig,
    t: &str,
) -> flightsim_p2p::client::ClientConfig {
    cfg.token = Some(AccessToken::Fixed(t.to_string()));
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_with_tokens_play_on_every_transport_and_others_are_refused() {
    let hs = keygen("hs256", "main").remove(0);
    let ed = keygen("eddsa", "k2");
    let (ed_private, ed_public) = (ed[0].clone(), ed[1].clone());
    let dir = temp_dir("access");
    let keys = format!("{hs},{ed_public}");
    let srv = ServeProcess::logged(
        "access-serve",
        &dir,
        &["--auth", &keys, "--auth-audience", AUD],
    );
    let alice = mint(&hs, "alice", &["--name", "Alice"]);
    let bob = mint(&ed_private, "bob", &["--no-create"]);

    // Alice hosts over raw QUIC with an HS256 token.
    let mut host = Client::connect(&with_token(srv.config(RelayMode::Datagram), &alice), None)
        .await
        .expect("alice connects");
    let info = host
        .create_session(0, None)
        .await
        .expect("alice may create");
    assert_eq!(info.peers[0].name, "Alice", "the token's name is shown");

    // Bob joins over each transport with an EdDSA token; he may not create.
    for transport in [
        ClientTransport::Quic,
        ClientTransport::Webtransport,
        ClientTransport::Websocket,
    ] {
        let mut cfg = with_token(srv.config(RelayMode::Datagram), &bob);
        cfg.transport = transport;
        let mut b = Client::connect(&cfg, None)
            .await
            .unwrap_or_else(|e| panic!("bob over {transport:?}: {e}"));
        expect_error(b.create_session(0, None).await, ErrorCode::Forbidden)
            .unwrap_or_else(|e| panic!("{transport:?}: {e}"));
        b.join_session(&info.code, None)
            .await
            .unwrap_or_else(|e| panic!("bob joins over {transport:?}: {e}"));
        b.close().await;
    }

    // Without a token, with a forged one, for another audience: refused on every transport.
    let forged = {
        let mut parts: Vec<String> = alice.split('.').map(str::to_string).collect();
        parts[1] = mint(&hs, "mallory", &[])
            .split('.')
            .nth(1)
            .unwrap_or("")
            .to_string();
        parts.join(".")
    };
    let elsewhere = token_cmd(&[
        "--key",
        &hs,
        "--aud",
        "another-game",
        "--sub",
        "alice",
        "--ttl",
        "10m",
    ])
    .trim()
    .to_string();
    for transport in [
        ClientTransport::Quic,
        ClientTransport::Webtransport,
        ClientTransport::Websocket,
    ] {
        for (token, code) in [
            (None, ErrorCode::TokenRequired),
            (Some(forged.as_str()), ErrorCode::TokenInvalid),
            (Some(elsewhere.as_str()), ErrorCode::TokenInvalid),
            (Some("not.a.token"), ErrorCode::TokenInvalid),
        ] {
            let mut cfg = srv.config(RelayMode::Datagram);
            cfg.transport = transport;
            cfg.auto_resume = false;
            cfg.token = token.map(|t| AccessToken::Fixed(t.to_string()));
            expect_error(Client::connect(&cfg, None).await.map(|_| ()), code)
                .unwrap_or_else(|e| panic!("{transport:?} with {token:?}: {e}"));
        }
    }
    host.close().await;
    // Refusals are counted; no token reaches the log.
    drop(srv);
    let log = std::fs::read_to_string(artifact_log("access-serve")).unwrap_or_default();
    for t in [&alice, &bob, &forged] {
        let sig = t.rsplit('.').next().unwrap_or("");
        assert!(!log.contains(sig), "a token's signature is in the log");
    }
    assert!(
        log.contains("access control"),
        "the startup log says tokens are required"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_may_ride_in_the_websocket_url_and_turn_names_the_player() {
    let hs = keygen("hs256", "main").remove(0);
    let dir = temp_dir("access-url");
    let srv = ServeProcess::logged(
        "access-url-serve",
        &dir,
        &[
            "--auth",
            &hs,
            "--auth-audience",
            AUD,
            "--turn-url",
            "turn:127.0.0.1:3478",
            "--turn-secret",
            "s3cret",
        ],
    );
    let t = mint(&hs, "carol", &[]);
    let hello = ClientMsg::Hello(Hello {
        version: PROTOCOL_VERSION,
        client: ClientKind::Browser,
        relay_mode: RelayMode::Datagram,
        name: "c".into(),
        resume_token: None,
        access_token: None,
    });
    // SignalR's way for browsers: ?access_token= on the upgrade.
    let url = format!(
        "ws://{}/ws?first={}&access_token={t}",
        srv.http,
        encode_first(std::slice::from_ref(&hello))
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("upgrade");
    let welcome = first_control(&mut ws).await;
    let user = match &welcome {
        ServerMsg::Welcome(w) => w.ice_servers.iter().find_map(|s| s.username.clone()),
        other => panic!("expected Welcome, got {other:?}"),
    };
    let user = user.expect("TURN credentials");
    let (expiry, who) = user.split_once(':').expect("expiry:user");
    assert_eq!(who, "carol", "the TURN user is the token's subject");
    let expiry: u64 = expiry.parse().expect("unix time");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    assert!(
        expiry <= now + 600 + 1,
        "TURN credential ({expiry}) outlives the 10-minute token (now {now})"
    );
    // Without the parameter the same upgrade is refused with token_required.
    let url = format!(
        "ws://{}/ws?first={}",
        srv.http,
        encode_first(std::slice::from_ref(&hello))
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("upgrade");
    match first_control(&mut ws).await {
        ServerMsg::Error { code, .. } => assert_eq!(code, ErrorCode::TokenRequired as u16),
        other => panic!("expected token_required, got {other:?}"),
    }
    drop(srv);
    let log = std::fs::read_to_string(artifact_log("access-url-serve")).unwrap_or_default();
    let sig = t.rsplit('.').next().unwrap_or("");
    assert!(!log.contains(sig), "the URL's token is in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_server_says_so_and_ignores_tokens() {
    let dir = temp_dir("access-open");
    let srv = ServeProcess::logged("access-open-serve", &dir, &[]);
    let cfg = with_token(srv.config(RelayMode::Datagram), "anything at all");
    let mut c = Client::connect(&cfg, None).await.expect("open server");
    c.create_session(0, None).await.expect("create");
    c.close().await;
    drop(srv);
    let log = std::fs::read_to_string(artifact_log("access-open-serve")).unwrap_or_default();
    assert!(log.contains("open server"), "{log}");
}

#[test]
fn serve_refuses_bad_auth_flags_with_a_reason() {
    for (args, says) in [
        (vec!["--auth", "main:hs256:c2hvcnQ"], "at least 32 bytes"),
        (
            vec![
                "--auth",
                "main:hs256:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY",
            ],
            "--auth-audience",
        ),
        (vec!["--auth-audience", "x"], "needs --auth"),
        (
            vec!["--auth", "k:rs256:AAAA", "--auth-audience", "x"],
            "not supported",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_flightsim-p2p"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .expect("run serve");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

async fn first_control(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> ServerMsg {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timed out")
        {
            Some(Ok(Message::Binary(b))) if b.first() == Some(&0x00) => {
                return decode::<ServerMsg>(&b[1..]).expect("decodes")
            }
            Some(Ok(_)) => continue,
            other => panic!("socket ended: {other:?}"),
        }
    }
}

/// The first fenced block of `lang` in DEPLOYMENT.md's access-control section.
fn deployment_example(lang: &str) -> String {
    let doc = include_str!("../DEPLOYMENT.md");
    let start = doc
        .find("## Access control: tokens from your game's backend")
        .expect("DEPLOYMENT.md has the access-control section");
    let section = &doc[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let fence = format!("```{lang}\n");
    let from = section
        .find(&fence)
        .unwrap_or_else(|| panic!("no {lang} example"))
        + fence.len();
    let to = section[from..].find("```").expect("closed fence") + from;
    // The blocks are indented as list items.
    section[from..to]
        .lines()
        .map(|l| l.strip_prefix("   ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Run `cmd` and return its trimmed stdout, failing with its stderr.
fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_backend_examples_in_deployment_md_mint_tokens_the_server_accepts() {
    use flightsim_p2p::auth::{Key, Verifier};
    let line = keygen("hs256", "main").remove(0);
    let secret_b64 = line.rsplit(':').next().unwrap_or("").to_string();
    let verifier = Verifier::new(vec![Key::from_spec(&line).expect("key")], "my-game").expect("v");
    let dir = temp_dir("backend-examples");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut tokens = Vec::new();

    let js = format!(
        "{}\nconsole.log(mintToken(Buffer.from(process.argv[1], 'base64url'), 'main', 'my-game', 'alice', 600));\n",
        deployment_example("js")
    );
    tokens.push((
        "node",
        run(std::process::Command::new("node").args(["-e", &js, &secret_b64])),
    ));

    let py = format!(
        "{}\nimport sys\nprint(mint_token(base64.urlsafe_b64decode(sys.argv[1] + '=' * (-len(sys.argv[1]) % 4)), 'main', 'my-game', 'alice', 600))\n",
        deployment_example("python")
    );
    tokens.push((
        "python3",
        run(std::process::Command::new("python3").args(["-c", &py, &secret_b64])),
    ));

    let cs = format!(
        "{}\nstatic class Program {{ static void Main(string[] a) {{\n    string s = a[0].Replace('-', '+').Replace('_', '/'); s += new string('=', (4 - s.Length % 4) % 4);\n    Console.WriteLine(FlightSimTokens.Mint(Convert.FromBase64String(s), \"main\", \"my-game\", \"alice\", 600));\n}} }}\n",
        deployment_example("csharp")
    );
    let src = dir.join("Mint.cs");
    let exe = dir.join("Mint.exe");
    std::fs::write(&src, cs).expect("write Mint.cs");
    run(std::process::Command::new("mcs")
        .arg("-langversion:7.2")
        .arg("-r:System.Web.dll")
        .arg(format!("-out:{}", exe.display()))
        .arg(&src));
    tokens.push((
        "mono",
        run(std::process::Command::new("mono")
            .arg(&exe)
            .arg(&secret_b64)),
    ));

    for (who, t) in tokens {
        let g = verifier
            .verify(&t, now)
            .unwrap_or_else(|e| panic!("{who}'s token {t}: {e}"));
        assert_eq!(g.sub, "alice", "{who}");
        assert!(
            g.exp >= now + 595 && g.exp <= now + 605,
            "{who}: exp {}",
            g.exp
        );
        assert!(g.iat.is_some(), "{who}: iat");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
