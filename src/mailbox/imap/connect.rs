//! Opening a session: TCP, TLS (implicit or STARTTLS, or none on loopback), then LOGIN or XOAUTH2.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_imap::imap_proto::{Response, Status};
use async_imap::{Authenticator, Client, Session};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

use super::ImapError;
use super::session::ImapSession;
use super::wire::describe;
use crate::config::{AuthMethod, ImapConfig, OAuth2Config, TlsMode};
use crate::oauth2::{AccessToken, ClientCredentials, TokenError};

/// The byte stream under a session: plain TCP (loopback only) or TLS over TCP.
pub struct ImapStream(Inner);

enum Inner {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl fmt::Debug for ImapStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Inner::Plain(_) => f.write_str("ImapStream(plain)"),
            Inner::Tls(_) => f.write_str("ImapStream(tls)"),
        }
    }
}

impl AsyncRead for ImapStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ImapStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            Inner::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::Plain(s) => Pin::new(s).poll_flush(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            Inner::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.0 {
            Inner::Plain(s) => s.is_write_vectored(),
            Inner::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// `user at host:port`: how errors and logs name an account.
pub(crate) fn account_of(cfg: &ImapConfig) -> String {
    format!("{} at {}:{}", cfg.username, cfg.host, cfg.port)
}

pub(crate) fn command_limit(cfg: &ImapConfig) -> Duration {
    Duration::from_millis(cfg.command_timeout_ms.max(1))
}

/// Connects, secures and authenticates a session as `cfg` says, then asks the server's capabilities again
/// (MOVE and UIDPLUS are listed only after login). Every step runs under `command_timeout_ms`.
pub async fn connect(cfg: &ImapConfig) -> Result<ImapSession, ImapError> {
    let account = account_of(cfg);
    let limit = command_limit(cfg);
    let timeout = |command: &str| ImapError::Timeout {
        account: account.clone(),
        command: command.to_string(),
        after_ms: cfg.command_timeout_ms,
    };
    let tcp = match tokio::time::timeout(limit, TcpStream::connect((cfg.host.as_str(), cfg.port))).await {
        Err(_) => return Err(timeout("connect")),
        Ok(Err(source)) => return Err(ImapError::Connect { account, source }),
        Ok(Ok(tcp)) => tcp,
    };
    // Commands are small and answered one at a time: do not let Nagle hold them back.
    let _ = tcp.set_nodelay(true);
    let client = match cfg.tls {
        TlsMode::None => {
            let mut client = Client::new(ImapStream(Inner::Plain(tcp)));
            greeting(&mut client, &account, limit, cfg).await?;
            client
        }
        TlsMode::Implicit => {
            let stream = tls_handshake(cfg, &account, limit, tcp).await?;
            let mut client = Client::new(stream);
            greeting(&mut client, &account, limit, cfg).await?;
            client
        }
        TlsMode::Starttls => {
            let mut plain = Client::new(tcp);
            greeting(&mut plain, &account, limit, cfg).await?;
            match tokio::time::timeout(limit, plain.run_command_and_check_ok("STARTTLS", None)).await {
                Err(_) => return Err(timeout("STARTTLS")),
                Ok(Err(async_imap::error::Error::No(m) | async_imap::error::Error::Bad(m))) => {
                    return Err(ImapError::Tls {
                        account,
                        message: format!(
                            "the server refused STARTTLS ({m}); check `tls` (\"implicit\" for port 993) and that \
                             the server offers TLS"
                        ),
                    });
                }
                Ok(Err(e)) => {
                    return Err(ImapError::Connection { account, command: "STARTTLS".into(), message: e.to_string() });
                }
                Ok(Ok(())) => {}
            }
            // No greeting follows the handshake (RFC 3501 6.2.1).
            let stream = tls_handshake(cfg, &account, limit, plain.into_inner()).await?;
            Client::new(stream)
        }
    };
    let (session, renew_at) = authenticate(cfg, &account, limit, client).await?;
    let mut session = ImapSession::new(session, cfg, account);
    session.set_token_renew_at(renew_at);
    session.refresh_capabilities().await?;
    Ok(session)
}

/// Reads the server's greeting: `* OK` goes on, `* BYE` (or anything else) is refused.
async fn greeting<T>(client: &mut Client<T>, account: &str, limit: Duration, cfg: &ImapConfig) -> Result<(), ImapError>
where
    T: AsyncRead + AsyncWrite + Unpin + fmt::Debug + Send,
{
    let lost =
        |message: String| ImapError::Connection { account: account.to_string(), command: "greeting".into(), message };
    let response = match tokio::time::timeout(limit, client.read_response()).await {
        Err(_) => {
            return Err(ImapError::Timeout {
                account: account.to_string(),
                command: "greeting".into(),
                after_ms: cfg.command_timeout_ms,
            });
        }
        Ok(Err(e)) => return Err(lost(e.to_string())),
        Ok(Ok(None)) => return Err(lost("the server closed the connection before greeting".into())),
        Ok(Ok(Some(r))) => r,
    };
    match response.parsed() {
        Response::Data { status: Status::Ok, .. } => Ok(()),
        Response::Data { status: Status::Bye, outcome } => {
            Err(lost(format!("the server said BYE instead of hello: {}", describe(outcome))))
        }
        other => Err(lost(format!(
            "unexpected greeting {:?}; check `port` and `tls` (is this an IMAP port?)",
            std::mem::discriminant(other)
        ))),
    }
}

/// Trusted roots: the public web roots plus every certificate in `ca_file`.
fn tls_config(cfg: &ImapConfig, account: &str) -> Result<ClientConfig, ImapError> {
    crate::tls::client_config(cfg.ca_file.as_deref())
        .map_err(|message| ImapError::Config { account: account.to_string(), message })
}

async fn tls_handshake(
    cfg: &ImapConfig,
    account: &str,
    limit: Duration,
    tcp: TcpStream,
) -> Result<ImapStream, ImapError> {
    let config = tls_config(cfg, account)?;
    let name = ServerName::try_from(cfg.host.clone()).map_err(|e| ImapError::Tls {
        account: account.to_string(),
        message: format!("`{}` is neither a DNS name nor an IP address: {e}", cfg.host),
    })?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    match tokio::time::timeout(limit, connector.connect(name, tcp)).await {
        Err(_) => Err(ImapError::Timeout {
            account: account.to_string(),
            command: "TLS handshake".into(),
            after_ms: cfg.command_timeout_ms,
        }),
        Ok(Err(e)) => Err(ImapError::Tls {
            account: account.to_string(),
            message: format!(
                "{e}; check `tls` (\"implicit\" for port 993, \"starttls\" for 143), and `ca_file` when the \
                 server's certificate is not from a public CA"
            ),
        }),
        Ok(Ok(stream)) => Ok(ImapStream(Inner::Tls(Box::new(stream)))),
    }
}

/// Logs in; for a client-credentials token also returns when the session should be renewed (before the
/// token expires: Microsoft 365 ends a session whose token has expired).
async fn authenticate(
    cfg: &ImapConfig,
    account: &str,
    limit: Duration,
    client: Client<ImapStream>,
) -> Result<(Session<ImapStream>, Option<Instant>), ImapError> {
    let auth_error = |message: String| ImapError::Auth { account: account.to_string(), message };
    let mut issued: Option<(ClientCredentials, AccessToken)> = None;
    let (command, hint, result) = match cfg.auth {
        AuthMethod::Login => {
            let password = password(cfg).map_err(auth_error)?;
            let hint = "check `username` and `password` / `password_file` (Microsoft 365 and Gmail need \
                        auth = \"xoauth2\")";
            (
                "LOGIN",
                hint,
                tokio::time::timeout(limit, client.login(&cfg.username, &password)).await.map(|r| r.map_err(|e| e.0)),
            )
        }
        AuthMethod::Xoauth2 => {
            let Some(oauth) = &cfg.oauth2 else {
                return Err(auth_error("auth = \"xoauth2\" needs a [mailboxes.imap.oauth2] table".into()));
            };
            let token_error = |e: TokenError| ImapError::Token { account: account.to_string(), message: e.to_string() };
            let token = match ClientCredentials::from_config(oauth).map_err(token_error)? {
                Some(cc) => {
                    let tls = tls_config(cfg, account)?;
                    let token = cc.token(&tls, limit).await.map_err(token_error)?;
                    let secret = token.secret().to_string();
                    issued = Some((cc, token));
                    secret
                }
                None => access_token(oauth, limit).await.map_err(auth_error)?,
            };
            let auth = XOAuth2 { response: xoauth2_response(&cfg.username, &token), sent: false };
            let hint = "check that the access token is current and issued for this mailbox, that the app may \
                        use IMAP (Microsoft 365: IMAP.AccessAsApp plus mailbox permission for its service \
                        principal; Gmail: the https://mail.google.com/ scope), and that `username` is the \
                        mailbox's address";
            (
                "AUTHENTICATE XOAUTH2",
                hint,
                tokio::time::timeout(limit, client.authenticate("XOAUTH2", auth)).await.map(|r| r.map_err(|e| e.0)),
            )
        }
    };
    match result {
        Err(_) => Err(ImapError::Timeout {
            account: account.to_string(),
            command: command.into(),
            after_ms: cfg.command_timeout_ms,
        }),
        Ok(Ok(session)) => Ok((session, issued.map(|(_, token)| token.renew_at()))),
        Ok(Err(async_imap::error::Error::No(m) | async_imap::error::Error::Bad(m))) => {
            // A refused token (revoked, or issued without mailbox access) is not offered again: the next
            // attempt asks the endpoint for a new one.
            if let Some((cc, token)) = &issued {
                cc.forget(token).await;
            }
            Err(auth_error(format!("the server refused {command} ({m}); {hint}")))
        }
        Ok(Err(async_imap::error::Error::Validate(e))) => {
            Err(auth_error(format!("the credentials cannot be sent with {command} ({e}); {hint}")))
        }
        Ok(Err(e)) => {
            Err(ImapError::Connection { account: account.to_string(), command: command.into(), message: e.to_string() })
        }
    }
}

/// The LOGIN password: `password`, or `password_file` without its trailing line break.
fn password(cfg: &ImapConfig) -> Result<String, String> {
    crate::config::read_password(cfg.password.as_deref(), cfg.password_file.as_deref())?
        .ok_or_else(|| "no password: set `password_file` (or `password`)".into())
}

/// The SASL XOAUTH2 initial response (before base64).
fn xoauth2_response(user: &str, token: &str) -> String {
    format!("user={user}\x01auth=Bearer {token}\x01\x01")
}

/// Answers the first challenge with the credentials; a second challenge is the server's JSON error, answered
/// with an empty line so it finishes with a tagged NO.
struct XOAuth2 {
    response: String,
    sent: bool,
}

impl Authenticator for XOAuth2 {
    type Response = Vec<u8>;

    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        if self.sent {
            return Vec::new();
        }
        self.sent = true;
        std::mem::take(&mut self.response).into_bytes()
    }
}

/// The OAuth2 access token for XOAUTH2 from `token_file`, `token_env` or `token_command` (run with `sh -c`,
/// stdout trimmed, killed after `limit`). The error says what to check and never holds the token. The
/// fourth source, client credentials (`token_url`), is [`ClientCredentials`](crate::oauth2::ClientCredentials).
pub async fn access_token(oauth: &OAuth2Config, limit: Duration) -> Result<String, String> {
    crate::oauth2::check_config(oauth).map_err(|e| format!("[mailboxes.imap.oauth2]: {e}"))?;
    if oauth.token_url.is_some() {
        return Err(
            "`token_url` tokens come from the client-credentials flow, not from a file, variable or command".into()
        );
    }
    let (origin, token) = if let Some(path) = &oauth.token_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!("cannot read `token_file` {}: {e}; check the path and its permissions", path.display())
        })?;
        (format!("`token_file` {}", path.display()), text)
    } else if let Some(var) = &oauth.token_env {
        let text = std::env::var(var).map_err(|_| format!("environment variable {var} (`token_env`) is not set"))?;
        (format!("environment variable {var}"), text)
    } else if let Some(command) = &oauth.token_command {
        let command = command.clone();
        let out = tokio::task::spawn_blocking(move || run_token_command(&command, limit))
            .await
            .map_err(|e| format!("`token_command` could not run: {e}"))??;
        ("`token_command`".to_string(), out)
    } else {
        return Err("no token source".into());
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(format!("{origin} gave an empty access token"));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{origin} gave text that is not a single bearer token (it contains spaces or line breaks)"
        ));
    }
    Ok(token)
}

/// Runs `sh -c command`, returns its stdout; kills it after `limit`.
fn run_token_command(command: &str, limit: Duration) -> Result<String, String> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::sync::mpsc;

    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start `token_command` with sh: {e}"))?;
    // Readers on their own threads, so a chatty command cannot fill a pipe and stall.
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(p) = pipe {
                let _ = p.take(1 << 20).read_to_end(&mut bytes);
            }
            let _ = tx.send(bytes);
        });
        rx
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("`token_command` did not finish within {} ms", limit.as_millis()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("`token_command`: {e}")),
        }
    };
    let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
    let out = stdout.recv_timeout(remaining).unwrap_or_default();
    if !status.success() {
        let err = stderr.recv_timeout(Duration::from_millis(100)).unwrap_or_default();
        let err = String::from_utf8_lossy(&err);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
        let last: String = last.chars().take(200).collect();
        return Err(format!(
            "`token_command` failed ({status}){}",
            if last.is_empty() { String::new() } else { format!(": {last}") }
        ));
    }
    String::from_utf8(out).map_err(|_| "`token_command` printed something that is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth(file: Option<&std::path::Path>, env: Option<&str>, command: Option<&str>) -> OAuth2Config {
        OAuth2Config {
            token_file: file.map(|p| p.to_path_buf()),
            token_env: env.map(str::to_string),
            token_command: command.map(str::to_string),
            ..OAuth2Config::default()
        }
    }

    #[test]
    fn the_xoauth2_response_has_the_sasl_layout() {
        assert_eq!(xoauth2_response("a@b.example", "tok"), "user=a@b.example\x01auth=Bearer tok\x01\x01");
        let mut a = XOAuth2 { response: xoauth2_response("u", "t"), sent: false };
        assert_eq!(a.process(b""), b"user=u\x01auth=Bearer t\x01\x01");
        // The server's error challenge is answered with an empty line.
        assert_eq!(a.process(b"{\"status\":\"401\"}"), b"");
    }

    #[tokio::test]
    async fn tokens_come_from_a_file_a_variable_or_a_command() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "file-token\n").unwrap();
        let limit = Duration::from_secs(5);
        assert_eq!(access_token(&oauth(Some(&file), None, None), limit).await.unwrap(), "file-token");
        assert_eq!(
            access_token(&oauth(None, Some("PATH"), None), limit).await.unwrap(),
            std::env::var("PATH").unwrap()
        );
        assert_eq!(access_token(&oauth(None, None, Some("echo cmd-token")), limit).await.unwrap(), "cmd-token");
    }

    #[tokio::test]
    async fn token_failures_say_what_to_check_without_the_token() {
        let limit = Duration::from_millis(500);
        let err = access_token(&oauth(None, None, None), limit).await.unwrap_err();
        assert!(err.contains("exactly one"), "{err}");
        let err = access_token(&oauth(None, Some("POSTROOM_SURELY_UNSET_VAR"), None), limit).await.unwrap_err();
        assert!(err.contains("POSTROOM_SURELY_UNSET_VAR"), "{err}");
        let err = access_token(&oauth(None, None, Some("echo oops >&2; exit 3")), limit).await.unwrap_err();
        assert!(err.contains("oops") && err.contains('3'), "{err}");
        let err = access_token(&oauth(None, None, Some("sleep 5")), limit).await.unwrap_err();
        assert!(err.contains("did not finish"), "{err}");
        let err = access_token(&oauth(None, None, Some("echo secret one two")), limit).await.unwrap_err();
        assert!(err.contains("not a single bearer token") && !err.contains("secret"), "{err}");
        let err = access_token(&oauth(None, None, Some("true")), limit).await.unwrap_err();
        assert!(err.contains("empty"), "{err}");
    }

    #[test]
    fn passwords_come_from_the_config_or_a_file_without_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret \r\n").unwrap();
        let mut cfg: ImapConfig =
            toml::from_str("host = \"127.0.0.1\"\nport = 1\ntls = \"none\"\nusername = \"u\"\n").unwrap();
        assert!(password(&cfg).unwrap_err().contains("no password"));
        cfg.password_file = Some(file.clone());
        assert_eq!(password(&cfg).unwrap(), "s3cret ");
        cfg.password = Some("x".into());
        assert!(password(&cfg).unwrap_err().contains("keep one"));
        cfg.password_file = Some(dir.path().join("missing"));
        cfg.password = None;
        let err = password(&cfg).unwrap_err();
        assert!(err.contains("missing") && err.contains("permissions"), "{err}");
    }
}
