//! One TLS client set-up for every outgoing connection (IMAP, SMTP with implicit TLS, the OAuth2 token
//! endpoint): rustls with the `ring` provider, Mozilla's roots from webpki-roots, plus an optional `ca_file`.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// A rustls client configuration trusting the public roots and every certificate in `ca_file`. The error
/// names the file and what is wrong with it.
pub fn client_config(ca_file: Option<&Path>) -> Result<ClientConfig, String> {
    client_config_trusting(ca_certificates(ca_file)?)
}

/// The certificates in `ca_file` (none without one), each checked to be PEM; the error names the file.
pub fn ca_certificates(ca_file: Option<&Path>) -> Result<Vec<CertificateDer<'static>>, String> {
    let Some(path) = ca_file else { return Ok(Vec::new()) };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read `ca_file` {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("`ca_file` {} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("`ca_file` {} holds no PEM CERTIFICATE block", path.display()));
    }
    Ok(certs)
}

/// A rustls client configuration trusting the public roots and `extra` (from [`ca_certificates`]).
pub fn client_config_trusting(extra: Vec<CertificateDer<'static>>) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    for cert in extra {
        roots.add(cert).map_err(|e| format!("`ca_file`: a certificate cannot be trusted as a root: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_ca_file_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        assert!(client_config(Some(&missing)).unwrap_err().contains("missing.pem"));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(client_config(Some(&empty)).unwrap_err().contains("no PEM CERTIFICATE"));
        assert!(client_config(None).is_ok());
    }
}
