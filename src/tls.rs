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
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read `ca_file` {}: {e}", path.display()))?;
        let mut added = 0;
        for cert in certs {
            let cert = cert.map_err(|e| format!("`ca_file` {} is not valid PEM: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("`ca_file` {}: a certificate cannot be trusted as a root: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("`ca_file` {} holds no PEM CERTIFICATE block", path.display()));
        }
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
