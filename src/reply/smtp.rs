//! Replies leave by SMTP (lettre on tokio, rustls): implicit TLS, STARTTLS (required, never
//! opportunistic), or plain on loopback only; AUTH when credentials are configured; pooled connections.
//! The envelope sender is the mailbox's own address, so a bounce comes back to a mailbox Postroom watches
//! and marks the reply `delivery_failed`.

use std::collections::HashMap;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::{AsyncSmtpTransport, PoolConfig};
use lettre::{AsyncTransport, Tokio1Executor};

use super::outbox::{SendError, Transport};
use crate::config::{Config, SmtpConfig, TlsMode};
use crate::store::DueReply;

#[derive(Debug, thiserror::Error)]
pub enum SmtpSetupError {
    #[error("smtp: cannot read {what} {path}: {source}")]
    Read { what: &'static str, path: String, source: std::io::Error },
    #[error("smtp: {0}")]
    Tls(String),
}

pub struct SmtpTransport {
    inner: AsyncSmtpTransport<Tokio1Executor>,
    /// Envelope sender per mailbox name.
    senders: HashMap<String, String>,
}

impl SmtpTransport {
    pub fn new(smtp: &SmtpConfig, config: &Config) -> Result<SmtpTransport, SmtpSetupError> {
        let tls_parameters = || -> Result<TlsParameters, SmtpSetupError> {
            let mut builder = TlsParameters::builder(smtp.host.clone());
            if let Some(ca) = &smtp.ca_file {
                let pem = std::fs::read(ca).map_err(|source| SmtpSetupError::Read {
                    what: "CA file",
                    path: ca.display().to_string(),
                    source,
                })?;
                let cert = Certificate::from_pem(&pem).map_err(|e| SmtpSetupError::Tls(format!("CA file: {e}")))?;
                builder = builder.add_root_certificate(cert);
            }
            builder.build_rustls().map_err(|e| SmtpSetupError::Tls(e.to_string()))
        };
        let tls = match smtp.tls {
            TlsMode::Implicit => Tls::Wrapper(tls_parameters()?),
            TlsMode::Starttls => Tls::Required(tls_parameters()?),
            TlsMode::None => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.clone())
            .port(smtp.port)
            .tls(tls)
            .timeout(Some(Duration::from_secs(smtp.timeout_secs.max(1))))
            .pool_config(PoolConfig::new().max_size(4));
        let password = match (&smtp.password, &smtp.password_file) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(file)) => Some(
                std::fs::read_to_string(file)
                    .map_err(|source| SmtpSetupError::Read {
                        what: "password file",
                        path: file.display().to_string(),
                        source,
                    })?
                    .trim_end()
                    .to_string(),
            ),
            (None, None) => None,
        };
        if let (Some(user), Some(password)) = (&smtp.username, password) {
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        let senders = config.mailboxes.iter().map(|m| (m.name.clone(), m.address.clone())).collect();
        Ok(SmtpTransport { inner: builder.build(), senders })
    }
}

impl Transport for SmtpTransport {
    async fn send(&self, reply: &DueReply) -> Result<(), SendError> {
        let from = self
            .senders
            .get(&reply.mailbox)
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| SendError::Permanent(format!("no sender address for mailbox {}", reply.mailbox)))?;
        let to = reply.to.parse().map_err(|e| SendError::Permanent(format!("recipient {}: {e}", reply.to)))?;
        let envelope = Envelope::new(Some(from), vec![to]).map_err(|e| SendError::Permanent(e.to_string()))?;
        match self.inner.send_raw(&envelope, &reply.eml).await {
            Ok(_) => Ok(()),
            // A 5xx answer will not change by trying again; everything else (4xx, refused connection,
            // timeout, TLS trouble while the server restarts) may.
            Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
            Err(e) => Err(SendError::Transient(e.to_string())),
        }
    }
}
