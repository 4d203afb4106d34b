//! One TLS client set-up for every outgoing connection (IMAP, the OAuth2 token endpoint): rustls with the
//! `ring` provider, Mozilla's roots from webpki-roots, plus the certificates of an optional `ca_file`.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// Trusted roots: the public web roots plus every certificate in `ca_file`. The error names the file and
/// what is wrong with it.
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
