//! What each crate of the workspace may pull in: a game embeds
//! `fsp2p-client` without the server's dependencies, the protocol does no
//! I/O, the core has no runtime (issue 22; the map is in src/lib.rs).
//!
//! Each test asks `cargo tree -p <crate> -e normal` (the dependencies a
//! user of the crate compiles, build tools and dev-dependencies aside) and
//! fails naming every forbidden package it finds, with the path that brings
//! it in. Adding, say, `clap` to crates/client/Cargo.toml fails
//! `the_client_embeds_without_the_server`.

use std::process::Command;

/// The packages `cargo tree -p krate -e normal` lists (without versions),
/// each with the tree's line for it, so a failure shows where it sits.
fn normal_dependencies(krate: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["tree", "--locked", "-e", "normal", "-p", krate])
        .args(["--prefix", "none", "--format", "{p}"])
        .output()
        .expect("running cargo tree");
    assert!(
        out.status.success(),
        "cargo tree -p {krate} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("cargo tree prints UTF-8");
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Fails with every package of `forbidden` that `krate` depends on, and
/// the `cargo tree -i` command that shows why.
fn assert_none_of(krate: &str, forbidden: &[&str]) {
    let deps = normal_dependencies(krate);
    assert!(
        deps.iter().any(|d| d == krate),
        "cargo tree -p {krate} does not list {krate} itself: {deps:?}"
    );
    let mut found: Vec<&str> = forbidden
        .iter()
        .copied()
        .filter(|f| deps.iter().any(|d| d == f))
        .collect();
    found.dedup();
    assert!(
        found.is_empty(),
        "{krate} depends on {found:?}, which it must not; see why with \
         `cargo tree -e normal -p {krate} -i {}`",
        found[0]
    );
}

/// The server's dependencies an embedded client must not compile, and a
/// second crypto provider (rustls panics at runtime with two: ring only).
#[test]
fn the_client_embeds_without_the_server() {
    assert_none_of(
        "fsp2p-client",
        &[
            "redis",
            "axum",
            "hyper",
            "prometheus-client",
            "clap",
            "tracing-subscriber",
            "x509-parser",
            "rcgen",
            "aws-lc-rs",
            "aws-lc-sys",
        ],
    );
}

/// The wire (both ends' QUIC and WebTransport) is the client's too.
#[test]
fn the_wire_takes_nothing_of_the_server() {
    assert_none_of(
        "fsp2p-wire",
        &[
            "redis",
            "axum",
            "hyper",
            "prometheus-client",
            "clap",
            "tracing-subscriber",
            "aws-lc-rs",
            "aws-lc-sys",
        ],
    );
}

/// The protocol is bytes in, bytes out: no runtime, no QUIC, no sockets.
#[test]
fn the_protocol_does_no_io() {
    assert_none_of(
        "fsp2p-protocol",
        &[
            "tokio", "mio", "socket2", "quinn", "rustls", "redis", "axum", "hyper",
        ],
    );
}

/// The core is sans-IO: time and randomness come in as arguments.
#[test]
fn the_core_has_no_runtime() {
    assert_none_of(
        "fsp2p-core",
        &[
            "tokio", "mio", "socket2", "quinn", "rustls", "redis", "axum", "hyper",
        ],
    );
}
