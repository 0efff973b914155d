//! TLS identity: production PEM files, or a development certificate that
//! browsers accept without a CA through `serverCertificateHashes`.
//!
//! Browsers accept a pinned self-signed certificate only if it is X.509v3,
//! ECDSA P-256, and valid for at most 14 days in total; and they compare the
//! SHA-256 of its DER bytes. So the dev certificate is generated here with
//! exactly those properties (valid from one hour ago to 13 days from now), kept
//! in `certs/` and reused while it has at least a day left, and its hash is
//! printed at start-up and served at `/cert-hash`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};

/// Dev certificates are valid this long in total (browsers allow at most 14 days).
const DEV_VALIDITY: Duration = Duration::days(13);
/// Backdating of `not_before`, for clients whose clocks run a little slow.
const DEV_BACKDATE: Duration = Duration::hours(1);
/// A dev certificate with less left than this is replaced on start.
const DEV_MIN_REMAINING: Duration = Duration::days(1);

/// File name of the dev certificate (PEM) in the cert dir.
pub const DEV_CERT_FILE: &str = "dev-cert.pem";
/// File name of the dev certificate's private key (PEM) in the cert dir.
pub const DEV_KEY_FILE: &str = "dev-key.pem";

/// The certificate chain and key the server presents.
#[derive(Debug)]
pub struct Identity {
    /// The certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// SHA-256 of the leaf certificate's DER bytes.
    pub sha256: [u8; 32],
    /// The leaf's expiry, Unix seconds.
    pub not_after_unix: i64,
    /// True for a generated development certificate.
    pub dev: bool,
}

impl Identity {
    /// SHA-256 of the leaf certificate (DER), hex.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// The rustls provider every config in this crate uses: ring, explicitly,
    /// so a second provider compiled in elsewhere can never make rustls panic.
    pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }
}

/// Load a production certificate chain and private key from PEM files.
pub fn load_pem(cert: &Path, key: &Path) -> Result<Identity> {
    let cert_pem =
        std::fs::read(cert).with_context(|| format!("reading certificate {}", cert.display()))?;
    let key_pem = std::fs::read(key).with_context(|| format!("reading key {}", key.display()))?;
    from_pem(&cert_pem, &key_pem, false)
        .with_context(|| format!("loading {} and {}", cert.display(), key.display()))
}

fn from_pem(cert_pem: &[u8], key_pem: &[u8], dev: bool) -> Result<Identity> {
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .context("parsing certificate PEM")?;
    let Some(leaf) = chain.first() else {
        bail!("no certificate in the PEM file");
    };
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .context("parsing private key PEM")?
        .context("no private key in the PEM file")?;
    let (_, parsed) =
        x509_parser::parse_x509_certificate(leaf).context("parsing the leaf certificate")?;
    let not_after_unix = parsed.validity().not_after.timestamp();
    let digest = ring::digest::digest(&ring::digest::SHA256, leaf);
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(digest.as_ref());
    Ok(Identity {
        chain,
        key,
        sha256,
        not_after_unix,
        dev,
    })
}

/// Generate a dev certificate for `hosts` (DNS names or IP addresses).
/// Returns (certificate PEM, key PEM).
pub fn generate_dev(hosts: &[String]) -> Result<(String, String)> {
    let mut params = rcgen::CertificateParams::new(hosts.to_vec())
        .context("invalid host name for the dev certificate")?;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - DEV_BACKDATE;
    params.not_after = now - DEV_BACKDATE + DEV_VALIDITY;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "FlightSim P2P development");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .context("generating an ECDSA P-256 key")?;
    let cert = params
        .self_signed(&key)
        .context("signing the dev certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The dev identity from `dir`, generating (and saving) a new one when there
/// is none, it is unreadable, or it expires within a day.
pub fn dev_identity(dir: &Path, hosts: &[String]) -> Result<Identity> {
    let (cert_path, key_path) = dev_paths(dir);
    if let (Ok(c), Ok(k)) = (std::fs::read(&cert_path), std::fs::read(&key_path)) {
        match from_pem(&c, &k, true) {
            Ok(id)
                if id.not_after_unix - OffsetDateTime::now_utc().unix_timestamp()
                    > DEV_MIN_REMAINING.whole_seconds() =>
            {
                tracing::info!(path = %cert_path.display(), "reusing dev certificate");
                return Ok(id);
            }
            Ok(_) => tracing::info!("dev certificate expires within a day; generating a new one"),
            Err(e) => tracing::warn!("dev certificate unreadable ({e:#}); generating a new one"),
        }
    }
    write_dev(dir, hosts)
}

/// Generate a dev certificate, write it to `dir`, and load it.
pub fn write_dev(dir: &Path, hosts: &[String]) -> Result<Identity> {
    let (cert_path, key_path) = dev_paths(dir);
    let (cert_pem, key_pem) = generate_dev(hosts)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(&cert_path, &cert_pem)
        .with_context(|| format!("writing {}", cert_path.display()))?;
    write_private(&key_path, key_pem.as_bytes())?;
    tracing::info!(path = %cert_path.display(), "generated dev certificate");
    from_pem(cert_pem.as_bytes(), key_pem.as_bytes(), true)
}

/// Only the SHA-256 of a certificate PEM file's leaf (for clients that pin it).
pub fn pem_file_sha256(path: &Path) -> Result<[u8; 32]> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let leaf = rustls_pemfile::certs(&mut &pem[..])
        .next()
        .context("no certificate in the file")?
        .context("parsing certificate PEM")?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &leaf);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    Ok(out)
}

/// Where the dev certificate and its key live in `dir`.
pub fn dev_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join(DEV_CERT_FILE), dir.join(DEV_KEY_FILE))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// Parse a hex SHA-256 (64 hex digits; `:` separators allowed, as openssl prints them).
pub fn parse_sha256_hex(s: &str) -> Result<[u8; 32]> {
    let clean: String = s.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(clean.trim()).context("certificate hash is not hex")?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("certificate hash must be 32 bytes (64 hex digits)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certificate_meets_browser_rules() {
        let hosts = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let (cert, key) = generate_dev(&hosts).unwrap();
        let id = from_pem(cert.as_bytes(), key.as_bytes(), true).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&id.chain[0]).unwrap();
        assert_eq!(parsed.version(), x509_parser::x509::X509Version::V3);
        let v = parsed.validity();
        let total = v.not_after.timestamp() - v.not_before.timestamp();
        assert!(total <= 14 * 24 * 3600, "validity {total}s exceeds 14 days");
        let now = OffsetDateTime::now_utc().unix_timestamp();
        assert!(v.not_before.timestamp() < now - 60, "backdated");
        // id-ecPublicKey with the prime256v1 curve.
        let spki = parsed.public_key();
        assert_eq!(spki.algorithm.algorithm.to_id_string(), "1.2.840.10045.2.1");
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .unwrap()
            .as_oid()
            .unwrap();
        assert_eq!(curve.to_id_string(), "1.2.840.10045.3.1.7");
        let digest = ring::digest::digest(&ring::digest::SHA256, &id.chain[0]);
        assert_eq!(id.sha256.as_slice(), digest.as_ref());
    }

    #[test]
    fn dev_identity_is_reused_while_valid() {
        let dir = std::env::temp_dir().join(format!("fsp2p-certs-{}", std::process::id()));
        let hosts = vec!["localhost".to_string()];
        let a = dev_identity(&dir, &hosts).unwrap();
        let b = dev_identity(&dir, &hosts).unwrap();
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(pem_file_sha256(&dir.join(DEV_CERT_FILE)).unwrap(), a.sha256);
        // A corrupt file is replaced, not fatal.
        std::fs::write(dir.join(DEV_CERT_FILE), "garbage").unwrap();
        let c = dev_identity(&dir, &hosts).unwrap();
        assert_ne!(a.sha256, c.sha256);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn hash_parsing() {
        let h = "AB:".repeat(31) + "AB";
        assert_eq!(parse_sha256_hex(&h).unwrap(), [0xAB; 32]);
        assert!(parse_sha256_hex("abcd").is_err());
        assert!(parse_sha256_hex("zz").is_err());
    }
}
