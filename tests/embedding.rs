//! The embedding example (crates/client/examples/game_loop.rs) runs: two
//! copies of it, a host and a wingman, fly against the real server binary
//! and each hears the other's states. `cargo test` builds the example
//! (examples are built with the tests); this test runs that build.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::ServeProcess;

/// target/<profile>/examples/game_loop, next to this test's own binary
/// (target/<profile>/deps/).
fn example_binary() -> PathBuf {
    let me = std::env::current_exe().expect("the test's own path");
    let profile_dir = me
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let exe = profile_dir
        .join("examples")
        .join(format!("game_loop{}", std::env::consts::EXE_SUFFIX));
    assert!(
        exe.exists(),
        "{} is not built: run the whole `cargo test` (it builds the examples), \
         or `cargo build -p fsp2p-client --examples` first",
        exe.display()
    );
    exe
}

#[test]
fn the_game_loop_example_flies_with_a_wingman() {
    let dir = common::temp_dir("embedding");
    let srv = ServeProcess::logged("embedding", &dir, &[]);
    let exe = example_binary();
    let quic = srv.quic.to_string();
    let mut host = Command::new(&exe)
        .args([&quic, &srv.hash])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the host's game loop");
    let mut lines = BufReader::new(host.stdout.take().unwrap()).lines();
    let first = lines.next().expect("the host printed nothing").unwrap();
    let code = first
        .strip_prefix("code ")
        .unwrap_or_else(|| panic!("expected `code CODE`, got {first:?}"))
        .to_string();
    let wingman = Command::new(&exe)
        .args([&quic, &srv.hash, &code])
        .output()
        .expect("run the wingman's game loop");
    let wingman_out = String::from_utf8_lossy(&wingman.stdout).to_string();
    let host_out: Vec<String> = lines.map_while(Result::ok).collect();
    let host_status = host.wait().unwrap();
    assert!(
        wingman.status.success(),
        "wingman failed: {wingman_out}\n{}",
        String::from_utf8_lossy(&wingman.stderr)
    );
    assert!(host_status.success(), "host failed: {host_out:?}");
    let heard = |out: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix("heard "))
            .and_then(|l| l.split(' ').next())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("no `heard N states` line in {out:?}"))
    };
    assert!(
        wingman_out.contains(&format!("joined {code}")),
        "{wingman_out}"
    );
    assert!(
        heard(&wingman_out) > 0,
        "the wingman heard nothing: {wingman_out}"
    );
    let host_text = host_out.join("\n");
    assert!(heard(&host_text) > 0, "the host heard nothing: {host_text}");
}
