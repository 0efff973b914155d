//! WebTransport against an independent HTTP/3 stack: the real server binary
//! on loopback, and `tests/h3/wt_client.py` (Python aioquic, which shares no
//! code with the server) creating, joining and relaying datagrams both ways,
//! reading every refusal's status, having a second CONNECT reset, and ending
//! a session without a close capsule. This side compares what the client
//! saw with PROTOCOL.md and with the server's metrics and log.
//!
//! aioquic comes from `scripts/deps.sh` (`tests/h3/requirements.txt`); without
//! it this test fails and says so: it is not skipped.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::ServeProcess;

/// The SETTINGS table of PROTOCOL.md §1 ("HTTP/3 SETTINGS"): `(id, value)` in order.
fn documented_settings() -> Vec<(u64, u64)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md"))
        .expect("docs/PROTOCOL.md");
    let section = doc
        .split("#### HTTP/3 SETTINGS")
        .nth(1)
        .expect("PROTOCOL.md has a \"#### HTTP/3 SETTINGS\" section");
    let section = section.split("\n#").next().unwrap_or(section);
    section
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let id = cells.get(1)?.trim_matches('`').strip_prefix("0x")?;
            let value = cells.get(2)?.trim_matches('`');
            Some((u64::from_str_radix(id, 16).ok()?, value.parse().ok()?))
        })
        .collect()
}

#[test]
fn the_documented_settings_are_what_the_server_sends() {
    let code: Vec<(u64, u64)> = flightsim_p2p::webtransport::SETTINGS
        .iter()
        .map(|&(id, value, _)| (id, value))
        .collect();
    assert_eq!(
        documented_settings(),
        code,
        "PROTOCOL.md §1 vs webtransport::SETTINGS"
    );
}

#[test]
fn an_independent_http3_client_creates_joins_relays_and_reads_every_refusal() {
    let dir = common::temp_dir("h3-aioquic");
    // Two connections at most: the third CONNECT is refused by a limit (503).
    let srv = ServeProcess::logged(
        "webtransport-aioquic",
        &dir,
        &[
            "--max-connections",
            "2",
            "--log",
            "flightsim_p2p=debug,info",
        ],
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/h3/wt_client.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(srv.quic.to_string())
        .arg(&srv.hash)
        .output()
        .expect("python3 must be installed (scripts/deps.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The client's own account, one check a line: shown with --nocapture.
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the aioquic client failed (exit {:?}):\n{stdout}\n{stderr}",
        out.status.code()
    );

    let report: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .expect("the client's JSON report");
    // 3: the SETTINGS frame as aioquic decoded it, in order, is the documented list.
    let seen: Vec<(u64, u64)> = report["settings"]
        .as_array()
        .expect("settings")
        .iter()
        .map(|pair| {
            (
                pair[0].as_u64().expect("id"),
                pair[1].as_u64().expect("value"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        documented_settings(),
        "SETTINGS received vs PROTOCOL.md"
    );
    // 1: each refusal's status, then H3_NO_ERROR.
    let refusals: BTreeMap<&str, (&str, u64)> = report["refusals"]
        .as_object()
        .expect("refusals")
        .iter()
        .map(|(k, v)| {
            (
                k.as_str(),
                (
                    v["status"].as_str().unwrap_or(""),
                    v["close"].as_u64().unwrap_or(0),
                ),
            )
        })
        .collect();
    assert_eq!(refusals.get("bad first"), Some(&("400", 0x100)));
    assert_eq!(refusals.get("unknown path"), Some(&("404", 0x100)));
    assert_eq!(refusals.get("server full"), Some(&("503", 0x100)));
    // 2: the second CONNECT.
    assert_eq!(report["second_connect"], "reset 0x10b");

    // The server's side of the same events.
    let metric = |s: &str| srv.metric(s);
    assert_eq!(metric("fsp2p_webtransport_requests_rejected_total"), 1.0);
    assert_eq!(
        metric("fsp2p_connections_refused_total{reason=\"bad_request\"}"),
        1.0
    );
    assert_eq!(
        metric("fsp2p_connections_refused_total{reason=\"not_found\"}"),
        1.0
    );
    assert_eq!(
        metric("fsp2p_connections_refused_total{reason=\"server_full\"}"),
        1.0
    );
    // 4: B finished its CONNECT stream without a capsule; A sent one.
    assert_eq!(
        metric("fsp2p_webtransport_closed_without_capsule_total"),
        1.0,
        "only the session closed without a capsule is counted"
    );
    let log = std::fs::read_to_string(srv.log.as_ref().expect("log")).unwrap_or_default();
    assert!(
        log.lines().any(|l| l.contains("DEBUG")
            && l.contains("WebTransport client closed without a close capsule")),
        "a close without a capsule is logged at debug:\n{log}"
    );
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.to_lowercase().contains("capsule"))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
}
