//! Whom the client trusts: a pinned certificate hash, or a CA file.
//!
//! Dev certificates are trusted by the SHA-256 of the leaf certificate, as
//! browsers do with `serverCertificateHashes`; [`PinnedCert`] is the rustls
//! verifier for that (it still checks the handshake signature). Production
//! certificates are verified against the CA certificates of a PEM file. Raw
//! QUIC, WebTransport with a CA and `wss://` all build their rustls config
//! here, differing only in ALPN.

use std::sync::Arc;

use super::{Error, Result, Trust};

/// The rustls provider every client config uses: ring, explicitly, so a
/// second provider compiled in elsewhere can never make rustls panic.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS 1.3 client config (ring, early data on) trusting the server as
/// `trust` says and offering `alpn`.
pub(super) fn client_tls(trust: &Trust, alpn: &[u8]) -> Result<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Tls(format!("TLS 1.3 with ring: {e}")))?;
    let mut tls = match trust {
        Trust::CertHash(hash) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCert {
                sha256: *hash,
                provider: provider(),
            }))
            .with_no_client_auth(),
        Trust::CaFile(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| Error::Tls(format!("reading {}: {e}", path.display())))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut &pem[..]) {
                let cert = cert
                    .map_err(|e| Error::Tls(format!("parsing CA PEM {}: {e}", path.display())))?;
                roots.add(cert).map_err(|e| {
                    Error::Tls(format!("adding CA certificate {}: {e}", path.display()))
                })?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    tls.alpn_protocols = vec![alpn.to_vec()];
    tls.enable_early_data = true;
    Ok(tls)
}

/// Accepts exactly one certificate, by the SHA-256 of its DER bytes, and still
/// checks the handshake signature with it.
#[derive(Debug)]
struct PinnedCert {
    sha256: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let digest = ring::digest::digest(&ring::digest::SHA256, end_entity);
        if digest.as_ref() == self.sha256 {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "certificate hash {} does not match the pinned {}",
                hex::encode(digest.as_ref()),
                hex::encode(self.sha256)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    use super::*;

    fn verify(pin: [u8; 32], cert: &[u8]) -> Result<(), rustls::Error> {
        let v = PinnedCert {
            sha256: pin,
            provider: provider(),
        };
        let name = ServerName::try_from("localhost").unwrap();
        v.verify_server_cert(
            &CertificateDer::from(cert.to_vec()),
            &[],
            &name,
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
    }

    #[test]
    fn only_the_pinned_certificate_passes() {
        let cert = b"not really DER, only hashed";
        let pin: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, cert)
            .as_ref()
            .try_into()
            .unwrap();
        assert!(verify(pin, cert).is_ok());
        let err = verify(pin, b"another certificate").unwrap_err();
        assert!(
            err.to_string().contains("does not match the pinned"),
            "{err}"
        );
    }

    #[test]
    fn an_unreadable_ca_file_is_a_tls_error() {
        let r = client_tls(&Trust::CaFile("/nonexistent/ca.pem".into()), b"h3");
        assert!(matches!(r, Err(Error::Tls(ref m)) if m.contains("/nonexistent/ca.pem")));
    }
}
