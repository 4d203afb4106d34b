//! Replies leave by SMTP (lettre's SMTP client on tokio, rustls): implicit TLS, STARTTLS (required, never
//! opportunistic), or plain on loopback only; AUTH when credentials are configured; `connections`
//! sessions at most, each kept open and reused, one send at a time on each. The envelope sender is the mailbox's own address, so a bounce comes back to a mailbox
//! Postroom watches and marks the reply `delivery_failed`.
//!
//! The TCP connection is opened here, not by lettre's transport, so that Nagle's algorithm can be turned
//! off: lettre writes the end-of-data dot in a write of its own, which otherwise waits for the server's
//! delayed acknowledgement (about 40 ms per reply on Linux; docs/decisions.md).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

use super::outbox::{SendError, Transport};
use crate::config::{AuthMethod, Config, OAuth2Config, SmtpConfig, TlsMode};
use crate::oauth2::ClientCredentials;
use crate::store::DueReply;

#[derive(Debug, thiserror::Error)]
pub enum SmtpSetupError {
    #[error("smtp: {0}")]
    Tls(String),
    #[error("smtp: {0}")]
    Config(String),
}

/// A connection idle longer than this is checked with NOOP before use (servers drop idle sessions).
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(10);

/// How a connection is secured, prepared once.
enum Security {
    None,
    /// TLS from the first byte.
    Implicit(tokio_rustls::TlsConnector, ServerName<'static>),
    /// STARTTLS after EHLO, done by lettre.
    Starttls(TlsParameters),
}

/// How the session authenticates.
enum Login {
    None,
    Password(Credentials),
    OAuth2(Box<OAuth2Login>),
}

/// AUTH XOAUTH2 as `user` with a token from `oauth` (client credentials: cached and renewed).
struct OAuth2Login {
    user: String,
    oauth: OAuth2Config,
    client: Option<ClientCredentials>,
    tls: Arc<ClientConfig>,
}

pub struct SmtpTransport {
    host: String,
    port: u16,
    security: Security,
    login: Login,
    timeout: Duration,
    hello: ClientId,
    /// Envelope sender per mailbox name.
    senders: HashMap<String, String>,
    /// Sessions at most at once (`smtp.connections`).
    connections: usize,
    /// The open connections between sends, and when each was last used.
    idle: Mutex<Vec<Idle>>,
}

impl SmtpTransport {
    pub fn new(smtp: &SmtpConfig, config: &Config) -> Result<SmtpTransport, SmtpSetupError> {
        // Read once for the server's TLS and the token endpoint's alike.
        let ca = crate::tls::ca_certificates(smtp.ca_file.as_deref()).map_err(SmtpSetupError::Tls)?;
        let rustls = || crate::tls::client_config_trusting(ca.clone()).map_err(SmtpSetupError::Tls);
        let security = match smtp.tls {
            TlsMode::None => Security::None,
            TlsMode::Implicit => {
                let tls = rustls()?;
                let name = ServerName::try_from(smtp.host.clone()).map_err(|e| {
                    SmtpSetupError::Tls(format!("`{}` is neither a DNS name nor an IP address: {e}", smtp.host))
                })?;
                Security::Implicit(tokio_rustls::TlsConnector::from(Arc::new(tls)), name)
            }
            TlsMode::Starttls => {
                let mut builder = TlsParameters::builder(smtp.host.clone());
                for cert in &ca {
                    let cert = Certificate::from_der(cert.to_vec())
                        .map_err(|e| SmtpSetupError::Tls(format!("`ca_file`: {e}")))?;
                    builder = builder.add_root_certificate(cert);
                }
                Security::Starttls(builder.build_rustls().map_err(|e| SmtpSetupError::Tls(e.to_string()))?)
            }
        };
        let password = crate::config::read_password(smtp.password.as_deref(), smtp.password_file.as_deref())
            .map_err(SmtpSetupError::Config)?;
        let login = match (&smtp.auth, &smtp.username, password, &smtp.oauth2) {
            (AuthMethod::Xoauth2, Some(user), _, Some(oauth)) => Login::OAuth2(Box::new(OAuth2Login {
                user: user.clone(),
                oauth: oauth.clone(),
                client: ClientCredentials::from_config(oauth).map_err(|e| SmtpSetupError::Config(e.to_string()))?,
                tls: Arc::new(rustls()?),
            })),
            (AuthMethod::Xoauth2, ..) => {
                return Err(SmtpSetupError::Config(
                    "auth = \"xoauth2\" needs `username` and an [smtp.oauth2] table".into(),
                ));
            }
            (AuthMethod::Login, Some(user), Some(password), _) => {
                Login::Password(Credentials::new(user.clone(), password))
            }
            (AuthMethod::Login, ..) => Login::None,
        };
        let senders = config.mailboxes.iter().map(|m| (m.name.clone(), m.address.clone())).collect();
        Ok(SmtpTransport {
            host: smtp.host.clone(),
            port: smtp.port,
            security,
            login,
            timeout: Duration::from_secs(smtp.timeout_secs.max(1)),
            hello: ClientId::default(),
            senders,
            connections: smtp.connections.max(1),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Opens, secures and authenticates a new session; with an OAuth2 token, also says when to renew it.
    async fn open(&self) -> Result<(AsyncSmtpConnection, Option<Instant>), Failure> {
        let io = |what: &str, e: io::Error| Failure::Io(format!("{what} {}:{}: {e}", self.host, self.port));
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await.map_err(|e| io("cannot connect to", e))?;
        // Why this module opens the socket itself: see the module comment.
        tcp.set_nodelay(true).map_err(|e| io("cannot set TCP_NODELAY on", e))?;
        let mut conn = match &self.security {
            Security::None => AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello).await?,
            Security::Starttls(params) => {
                let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello).await?;
                // Required, never opportunistic: lettre refuses when the server does not offer it.
                conn.starttls(params.clone(), &self.hello).await?;
                conn
            }
            Security::Implicit(connector, name) => {
                let tls = connector.connect(name.clone(), tcp).await.map_err(|e| io("TLS handshake with", e))?;
                let stream = ImplicitTls(Box::new(tls));
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello).await?
            }
        };
        // A refused login is the configuration's fault, not the reply's: it is retried, never given up as
        // the 5xx it comes with.
        let refused = |e: lettre::transport::smtp::Error, hint: &str| {
            Failure::Login(format!("the SMTP server {}:{} refused the login ({e}); {hint}", self.host, self.port))
        };
        match &self.login {
            Login::None => Ok((conn, None)),
            Login::Password(credentials) => {
                conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                    .await
                    .map_err(|e| refused(e, "check [smtp] username and password / password_file"))?;
                Ok((conn, None))
            }
            Login::OAuth2(login) => {
                let OAuth2Login { user, oauth, client, tls } = login.as_ref();
                let token_failed = |message: String| Failure::Login(format!("no OAuth2 token for SMTP: {message}"));
                let (token, issued) = match client {
                    Some(cc) => {
                        let t = cc.token(tls, self.timeout).await.map_err(|e| token_failed(e.to_string()))?;
                        (t.secret().to_string(), Some(t))
                    }
                    None => {
                        (crate::mailbox::imap::access_token(oauth, self.timeout).await.map_err(token_failed)?, None)
                    }
                };
                let credentials = Credentials::new(user.clone(), token);
                if let Err(e) = conn.auth(&[Mechanism::Xoauth2], &credentials).await {
                    // A refused token is not offered again: the next attempt asks the endpoint anew.
                    if let (Some(cc), Some(t)) = (client, &issued) {
                        cc.forget(t).await;
                    }
                    return Err(refused(
                        e,
                        "check that the token is issued for this mailbox and that the app may send as it \
                         (Microsoft 365: SMTP.SendAsApp and the mailbox's permission for its service principal)",
                    ));
                }
                Ok((conn, issued.map(|t| t.renew_at())))
            }
        }
    }

    /// The idle connection if it still answers (and its token is current), else a new one.
    async fn connection(&self, idle: Option<Idle>) -> Result<Idle, Failure> {
        if let Some(mut idle) = idle {
            let token_current = idle.renew_at.is_none_or(|at| Instant::now() < at);
            if token_current
                && !idle.conn.has_broken()
                && (idle.since.elapsed() < CHECK_AFTER_IDLE || idle.conn.test_connected().await)
            {
                return Ok(idle);
            }
            idle.conn.abort().await;
        }
        let (conn, renew_at) = self.open().await?;
        Ok(Idle { conn, since: Instant::now(), renew_at })
    }
}

/// A connection kept between sends: when it was last used, and when its OAuth2 token is due for renewal.
struct Idle {
    conn: AsyncSmtpConnection,
    since: Instant,
    renew_at: Option<Instant>,
}

/// Why a send failed: the server's answer or lettre's own error, our socket's, or the login.
enum Failure {
    Smtp(lettre::transport::smtp::Error),
    Io(String),
    Login(String),
}

impl From<lettre::transport::smtp::Error> for Failure {
    fn from(e: lettre::transport::smtp::Error) -> Self {
        Failure::Smtp(e)
    }
}

impl Transport for SmtpTransport {
    fn connections(&self) -> usize {
        self.connections
    }

    async fn send(&self, reply: &DueReply) -> Result<(), SendError> {
        let from = self
            .senders
            .get(&reply.mailbox)
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| SendError::Permanent(format!("no sender address for mailbox {}", reply.mailbox)))?;
        let to = reply.to.parse().map_err(|e| SendError::Permanent(format!("recipient {}: {e}", reply.to)))?;
        let envelope = Envelope::new(Some(from), vec![to]).map_err(|e| SendError::Permanent(e.to_string()))?;
        // A connection carries one send at a time; the outbox runs at most `connections` sends at once.
        let idle = self.idle.lock().await.pop();
        let attempt = async {
            let mut open = self.connection(idle).await?;
            match open.conn.send(&envelope, &reply.eml).await {
                Ok(_) => Ok(open),
                Err(e) => {
                    open.conn.abort().await;
                    Err(Failure::Smtp(e))
                }
            }
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(mut open)) => {
                open.since = Instant::now();
                self.idle.lock().await.push(open);
                Ok(())
            }
            // A 5xx answer will not change by trying again; everything else (4xx, refused connection,
            // timeout, TLS trouble while the server restarts) may.
            Ok(Err(Failure::Smtp(e))) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
            Ok(Err(Failure::Smtp(e))) => Err(SendError::Transient(e.to_string())),
            Ok(Err(Failure::Io(m))) => Err(SendError::Transient(m)),
            Ok(Err(Failure::Login(m))) => {
                tracing::error!(error = %m, "SMTP REPLIES NOT BEING SENT: cannot log in; fix [smtp] (retried with backoff)");
                Err(SendError::Transient(m))
            }
            Err(_) => Err(SendError::Transient(format!(
                "the SMTP server {}:{} did not answer within {} s",
                self.host,
                self.port,
                self.timeout.as_secs()
            ))),
        }
    }
}

/// A TLS stream lettre can drive as its transport (implicit TLS).
#[derive(Debug)]
struct ImplicitTls(Box<TlsStream<TcpStream>>);

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for ImplicitTls {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().0.as_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().0.as_mut()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().0.as_mut()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().0.as_mut()).poll_shutdown(cx)
    }
}
