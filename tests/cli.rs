//! The real binary: start-up output, the `certs` and `peer` commands, and a
//! graceful shutdown on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use flightsim_p2p::client::{Client, ClientConfig, Event, Trust};
use flightsim_p2p::protocol::ServerMsg;

const BIN: &str = env!("CARGO_BIN_EXE_flightsim-p2p");

/// Start `serve` on OS-chosen ports (see `common::ServeProcess`).
fn serve(dir: &std::path::Path, extra: &[&str]) -> common::ServeProcess {
    common::ServeProcess::start(dir, extra, Stdio::null())
}

#[test]
fn certs_command_writes_a_dev_certificate_and_prints_its_hash() {
    let dir = common::temp_dir("certs");
    let out = Command::new(BIN)
        .args(["certs", "--cert-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let hash = text
        .lines()
        .find_map(|l| l.strip_prefix("sha-256:"))
        .unwrap()
        .trim()
        .to_string();
    let on_disk =
        flightsim_p2p::certs::pem_file_sha256(&dir.join(flightsim_p2p::certs::DEV_CERT_FILE))
            .unwrap();
    assert_eq!(hash, hex::encode(on_disk));
    assert!(dir.join(flightsim_p2p::certs::DEV_KEY_FILE).exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_explains_every_command() {
    for cmd in [
        &["--help"][..],
        &["serve", "--help"],
        &["peer", "--help"],
        &["certs", "--help"],
    ] {
        let out = Command::new(BIN).args(cmd).output().unwrap();
        assert!(out.status.success(), "{cmd:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.len() > 300, "{cmd:?} help is too thin");
    }
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--turn-secret",
        "--max-sessions",
        "--relay-datagrams-per-sec",
        "--resume-grace-ms",
        "FSP2P_LISTEN",
    ] {
        assert!(text.contains(flag), "serve --help lacks {flag}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_tells_clients_and_exits_zero() {
    let dir = common::temp_dir("sigterm");
    let mut srv = serve(&dir, &[]);
    let (status, _) = common::http_get(srv.http, "/healthz");
    assert_eq!(status, 200);
    let hash = flightsim_p2p::certs::parse_sha256_hex(&srv.hash).unwrap();
    let mut client = Client::connect(&ClientConfig::new(srv.quic, Trust::CertHash(hash)), None)
        .await
        .unwrap();
    client.create_session(0, None).await.unwrap();
    let pid = srv.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut going_away = false;
    while let Some(e) = client.next_event_within(Duration::from_secs(5)).await {
        match e {
            Event::Control(ServerMsg::GoingAway { .. }) => {
                going_away = true;
                client.close().await;
                break;
            }
            Event::Closed(_) => break,
            _ => {}
        }
    }
    assert!(going_away, "no GoingAway before the close");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = srv.child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "server did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn peer_command_hosts_joins_and_relays() {
    let dir = common::temp_dir("peer");
    // On the single-threaded runtime (--worker-threads 1); the other tests use the default.
    let srv = serve(
        &dir,
        &[
            "--turn-secret",
            "s3",
            "--turn-url",
            "turn:127.0.0.1:3478",
            "--worker-threads",
            "1",
        ],
    );
    let server = srv.quic.to_string();
    let welcome = Command::new(BIN)
        .args([
            "peer",
            "--server",
            &server,
            "--cert-hash",
            &srv.hash,
            "--print-welcome",
        ])
        .output()
        .unwrap();
    assert!(welcome.status.success());
    let w: serde_json::Value = serde_json::from_slice(&welcome.stdout).unwrap();
    assert!(w["ice_servers"][0]["username"]
        .as_str()
        .unwrap()
        .ends_with(&format!(":{}", w["peer_id"])));

    let mut host = Command::new(BIN)
        .args(["peer", "--server", &server, "--cert-dir"])
        .arg(&dir)
        // Long enough for a slow machine to start the joiner; ended by SIGINT below.
        .args(["--create", "--send-rate", "50", "--duration", "30"])
        // The relay counts below are exact: no echoes (tested in tests/quality.rs).
        .arg("--no-echo")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(host.stdout.take().unwrap()).lines();
    let code = loop {
        let l = lines.next().unwrap().unwrap();
        if let Some(rest) = l.strip_prefix("session created: code ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // The joiner sends exactly 100 frames (2 s at 50/s), then listens 1 s
    // more, so none of its own is still in flight when it closes.
    let joiner = Command::new(BIN)
        .args([
            "peer",
            "--server",
            &server,
            "--cert-hash",
            &srv.hash,
            "--relay-mode",
            "stream",
        ])
        .args(["--join", &code, "--send-rate", "50", "--count", "100"])
        .arg("--no-echo")
        .args(["--duration", "3"])
        .output()
        .unwrap();
    assert!(joiner.status.success());
    let text = String::from_utf8(joiner.stdout).unwrap();
    let joiner_done = text.lines().find(|l| l.starts_with("done:")).unwrap();
    let (joiner_sent, joiner_received) = (sent_count(joiner_done), received_count(joiner_done));
    assert_eq!(joiner_sent, 100, "{joiner_done}");
    // Loopback loses nothing: the host hears every frame the joiner sent
    // (stream to the server, datagram to the host). Read its once-a-second
    // stats until they say so, or until its 30 s run ends.
    let mut host_lines = Vec::new();
    for l in lines.by_ref().map_while(Result::ok) {
        let all_in = l.starts_with("stats:") && received_count(&l) >= joiner_sent;
        host_lines.push(l);
        if all_in {
            break;
        }
    }
    // Ctrl-C ends the host's run early; it still prints its summary.
    let _ = Command::new("kill")
        .args(["-INT", &host.id().to_string()])
        .status();
    let _ = host.wait();
    host_lines.extend(lines.map_while(Result::ok));
    let done = host_lines
        .iter()
        .find(|l| l.starts_with("done:"))
        .unwrap_or_else(|| panic!("no summary from the host: {host_lines:?}"));
    assert_eq!(received_count(done), joiner_sent, "host: {done}");
    assert_eq!(
        srv.metric("fsp2p_relay_forwarded_total{via=\"datagram\"}"),
        joiner_sent as f64,
        "the server forwarded each of the joiner's frames to the host once"
    );
    // The other way, the joiner got every frame the server forwarded to it
    // while it was in the session, except those already on its connection
    // when its 3 s ended and it stopped reading: at 50 frames/s, at most a
    // frame or two; 5 allows 100 ms of a starved joiner.
    let to_joiner = srv.metric("fsp2p_relay_forwarded_total{via=\"stream\"}") as u64;
    println!("joiner: {joiner_done}; host: {done}; forwarded to the joiner {to_joiner}");
    assert!(joiner_received > 0, "{joiner_done}");
    assert!(
        joiner_received <= to_joiner && to_joiner - joiner_received <= 5,
        "the joiner heard {joiner_received} of the {to_joiner} frames forwarded to it"
    );
    for reason in ["receiver_busy", "receiver_too_small", "rate_limited"] {
        let series = format!("fsp2p_relay_dropped_total{{reason=\"{reason}\"}}");
        assert_eq!(srv.metric(&series), 0.0, "{series}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `peer --stats` prints, once a second, one quality line per peer of the
/// session; once the echoes have answered, with a measured grade and RTT.
#[test]
fn peer_stats_prints_a_quality_line_per_peer() {
    let dir = common::temp_dir("peer-stats");
    let srv = serve(&dir, &[]);
    let server = srv.quic.to_string();
    let mut host = Command::new(BIN)
        .args(["peer", "--server", &server, "--cert-hash", &srv.hash])
        .args([
            "--create",
            "--stats",
            "--send-rate",
            "20",
            "--duration",
            "30",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(host.stdout.take().unwrap()).lines();
    let code = loop {
        let l = lines.next().unwrap().unwrap();
        if let Some(rest) = l.strip_prefix("session created: code ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let joiner = Command::new(BIN)
        .args(["peer", "--server", &server, "--cert-hash", &srv.hash])
        .args([
            "--join",
            &code,
            "--stats",
            "--no-telemetry",
            "--duration",
            "4",
        ])
        .output()
        .unwrap();
    assert!(joiner.status.success());
    let text = String::from_utf8(joiner.stdout).unwrap();
    let host_id = text
        .lines()
        .find_map(|l| l.strip_prefix("joined session "))
        .and_then(|l| l.split("host ").nth(1))
        .and_then(|l| l.split(',').next())
        .unwrap_or_else(|| panic!("no join line: {text}"))
        .to_string();
    let quality: Vec<&str> = text.lines().filter(|l| l.starts_with("quality:")).collect();
    assert!(quality.len() >= 2, "one line a second: {text}");
    for l in &quality {
        assert!(
            l.starts_with(&format!("quality: peer {host_id} path relay for ")),
            "{l}"
        );
        for field in [
            " rtt ", " loss ", " jitter ", " fps in ", " out ", " stale ", " grade ",
        ] {
            assert!(l.contains(field), "{l} lacks {field:?}");
        }
    }
    let last = quality.last().unwrap();
    assert!(
        last.ends_with("grade excellent") || last.ends_with("grade good"),
        "after 4 s of echoes: {last}"
    );
    assert!(!last.contains("rtt - ms"), "{last}");
    // The host's 20 frames a second reach the joiner.
    assert!(!last.contains("fps in 0 "), "{last}");
    // The host prints its line for the joiner too.
    let mut host_quality = None;
    for l in lines.by_ref().map_while(Result::ok) {
        if l.starts_with("quality: peer ") && !l.contains(" rtt - ") {
            host_quality = Some(l);
            break;
        }
    }
    let _ = Command::new("kill")
        .args(["-INT", &host.id().to_string()])
        .status();
    let _ = host.wait();
    let host_quality = host_quality.expect("the host printed no measured quality line");
    assert!(host_quality.contains(" path relay "), "{host_quality}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `sent N` count of a `peer` command's `done:` or `stats:` line.
fn sent_count(done: &str) -> u64 {
    done.split("sent ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no sent count in {done:?}"))
}

/// The `received N` count of a `peer` command's `done:` or `stats:` line.
fn received_count(done: &str) -> u64 {
    done.split("received ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no received count in {done:?}"))
}

/// docs/CONFIGURATION.md's settings table has a row for every flag of
/// `serve --help`, and that row names the flag's environment variable and, where
/// the help shows one, its default: the table cannot fall behind the CLI.
#[test]
fn configuration_doc_documents_every_serve_flag() {
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let doc_path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/CONFIGURATION.md");
    let doc = std::fs::read_to_string(doc_path).unwrap();
    let rows: Vec<&str> = doc.lines().filter(|l| l.starts_with("| `--")).collect();
    // Each option's help: from its `      --flag <VALUE>` line to the next option,
    // joined into one line (clap wraps `[env: X=]` and `[default: Y]` anywhere).
    let mut options: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let t = line.trim_start();
        if t.starts_with("--") {
            let flag = t.split_whitespace().next().unwrap().to_string();
            options.push((flag, String::new()));
        } else if t.starts_with('-') {
            options.push((String::new(), String::new())); // -h, --help: not ours
        } else if let Some((_, text)) = options.last_mut() {
            text.push(' ');
            text.push_str(t);
        }
    }
    let bracket = |text: &str, key: &str| -> Option<String> {
        let start = text.find(key)? + key.len();
        let end = start + text[start..].find(']')?;
        Some(text[start..end].trim().to_string())
    };
    let options: Vec<_> = options
        .into_iter()
        .filter(|(flag, _)| !flag.is_empty() && flag != "--help")
        .collect();
    assert!(options.len() > 25, "{help}");
    for (flag, text) in &options {
        let row = rows
            .iter()
            .find(|r| r.contains(&format!("`{flag}`")))
            .unwrap_or_else(|| panic!("docs/CONFIGURATION.md has no table row for {flag}"));
        let env = bracket(text, "[env:")
            .unwrap_or_else(|| panic!("{flag} has no environment variable in --help: {text}"));
        // `[env: NAME=]`, or `[env: NAME=value]` when it is set here.
        let env = env.split('=').next().unwrap();
        assert!(
            row.contains(&format!("`{env}`")),
            "docs/CONFIGURATION.md: the row of {flag} does not name `{env}`: {row}"
        );
        if let Some(default) = bracket(text, "[default:") {
            assert!(
                row.contains(&format!("`{default}`")),
                "docs/CONFIGURATION.md: the row of {flag} does not give its default `{default}`: {row}"
            );
        }
    }
    // The README sends readers there.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(readme.contains("(docs/CONFIGURATION.md)"));
}

/// The README is what a newcomer reads to the end: it stays under 12 KiB,
/// and what does not fit goes to docs/.
#[test]
fn readme_stays_short() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.len() <= 12 * 1024,
        "README.md is {} bytes; move detail to docs/",
        readme.len()
    );
}
