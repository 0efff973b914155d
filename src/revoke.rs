//! `flightsim-p2p revoke`: revoke a player's tokens or one token on a
//! running server (and, through it, on every node of its cluster).
//!
//! Why a subcommand and not only the endpoint: `POST /admin/revoke` wants a
//! bearer token signed with one of the server's keys and carrying `"admin":
//! true`. An operator in an incident should not have to mint one by hand:
//! this mints a one-minute admin token with the key they already hold (the
//! one `token` signs with), sends the revocation and prints the server's
//! answer. The request is plain HTTP/1.1 over one TCP connection, written
//! here because the server has no HTTP client among its dependencies and
//! needs only this one request; for an `https://` port use curl with a token
//! from `flightsim-p2p token --admin` (DEPLOYMENT.md shows both).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::RevokeArgs;
use flightsim_p2p::auth::{Revocation, Signer};

/// Longest answer read from the server (it is a short JSON document).
const MAX_ANSWER: u64 = 64 * 1024;

/// Mint the admin token, send the revocation, print the answer.
pub(crate) async fn run(a: RevokeArgs, key: String) -> Result<()> {
    let signer = Signer::from_spec(&key)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let revocation = match (&a.sub, &a.jti) {
        (Some(sub), None) => Revocation::Sub {
            sub: sub.clone(),
            issued_up_to: a.issued_up_to.unwrap_or(now),
        },
        (None, Some(jti)) => Revocation::Jti(jti.clone()),
        _ => bail!("give --sub or --jti"),
    };
    let token = signer.sign(&serde_json::json!({
        "sub": a.admin_sub,
        "aud": a.aud,
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        "admin": true,
    }));
    let (host, port) = http_host_port(&a.server)?;
    let body = revocation.to_json();
    let request = format!(
        "POST /admin/revoke HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .with_context(|| format!("connecting to {}", a.server))?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.take(MAX_ANSWER).read_to_end(&mut answer).await?;
        anyhow::Ok(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(a.timeout_secs.max(1)), exchange)
        .await
        .with_context(|| format!("{} did not answer within {} s", a.server, a.timeout_secs))??;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{} did not answer HTTP", a.server))?;
    println!("{}", body.trim());
    if status != 200 {
        bail!("the server refused the revocation: HTTP {status}");
    }
    Ok(())
}

/// `http://HOST:PORT[/]` → (HOST, PORT). Only plain HTTP (see the module doc).
fn http_host_port(server: &str) -> Result<(String, u16)> {
    let url = url::Url::parse(server).with_context(|| format!("--server {server:?}"))?;
    if url.scheme() != "http" {
        bail!(
            "--server {server:?}: only http:// here; for https use curl with a token from \
             `flightsim-p2p token --admin` (DEPLOYMENT.md)"
        );
    }
    let host = url
        .host_str()
        .with_context(|| format!("--server {server:?} has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_are_taken() {
        assert_eq!(
            http_host_port("http://127.0.0.1:8080").unwrap(),
            ("127.0.0.1".to_string(), 8080)
        );
        assert_eq!(
            http_host_port("http://[::1]:9/").unwrap(),
            ("::1".to_string(), 9)
        );
        assert_eq!(http_host_port("http://node1").unwrap().1, 80);
        assert!(http_host_port("https://node1").is_err());
        assert!(http_host_port("node1:8080").is_err());
    }
}
