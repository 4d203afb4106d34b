//! OAuth2 access tokens by the client-credentials flow (RFC 6749 4.4), for XOAUTH2 on IMAP (and later
//! SMTP): `POST token_url` with `grant_type=client_credentials`, `client_id`, `client_secret` and `scope`,
//! form-encoded, over HTTPS (plain HTTP to a loopback host only). Tokens are cached per (endpoint, client,
//! scope) for the life of the process, so reconnects reuse them, and replaced once they come within the
//! refresh margin of expiry. Errors name the endpoint, the OAuth2 `error` and its description, and what to
//! do; no error or log line ever holds the secret or a token.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::config::{OAuth2Config, is_loopback};

/// Largest token endpoint response read (Entra ID's are about 1.5 KB; JWTs can reach a few KB).
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// The longest a token is trusted to live, whatever the endpoint says.
pub const MAX_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// An access token and when it stops being valid. `Debug` never shows the token.
#[derive(Clone)]
pub struct AccessToken {
    secret: String,
    issued_at: Instant,
    expires_at: Instant,
    margin: Duration,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

impl AccessToken {
    /// A lifetime past [`MAX_LIFETIME`] counts as that (an absurd `expires_in` must not overflow the clock).
    pub fn new(secret: String, issued_at: Instant, lifetime: Duration, margin: Duration) -> AccessToken {
        let expires_at = issued_at.checked_add(lifetime.min(MAX_LIFETIME)).unwrap_or(issued_at);
        AccessToken { secret, issued_at, expires_at, margin }
    }

    /// The bearer token itself: send it, never log it.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// From this instant on the token is replaced, and a session using it reconnects: the refresh margin
    /// before expiry, but never more than half the token's lifetime (a token issued for less than twice the
    /// margin would otherwise be refreshed on every use).
    pub fn renew_at(&self) -> Instant {
        let lifetime = self.expires_at.saturating_duration_since(self.issued_at);
        self.expires_at.checked_sub(self.margin.min(lifetime / 2)).unwrap_or(self.issued_at)
    }

    /// Whether the token is still good to use at `now`.
    pub fn fresh_at(&self, now: Instant) -> bool {
        now < self.renew_at()
    }
}

/// Why no token could be had. Display gives what went wrong and what to do; never the secret or a token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The configuration cannot work (no secret file, a bad URL).
    #[error("{0}")]
    Config(String),
    /// No answer: connection, TLS, timeout, or not HTTP.
    #[error("cannot reach the token endpoint {url}: {message}")]
    Unreachable { url: String, message: String },
    /// The endpoint answered with an OAuth2 error (or an HTTP error without one).
    #[error("the token endpoint {url} refused the request (HTTP {status}{}): {hint}", oauth_error(error, description))]
    Refused { url: String, status: u16, error: String, description: String, hint: String },
    /// HTTP 200 but no usable token in it.
    #[error("the token endpoint {url} answered without a usable token: {message}")]
    BadResponse { url: String, message: String },
}

fn oauth_error(error: &str, description: &str) -> String {
    match (error.is_empty(), description.is_empty()) {
        (true, _) => String::new(),
        (false, true) => format!(", {error}"),
        (false, false) => format!(", {error}: {description}"),
    }
}

/// Checks an `[oauth2]` table: exactly one token source, and for client credentials a usable `token_url`,
/// a `client_id` and exactly one of `client_secret` / `client_secret_file`.
pub fn check_config(oauth: &OAuth2Config) -> Result<(), String> {
    let sources = [
        oauth.token_file.is_some(),
        oauth.token_env.is_some(),
        oauth.token_command.is_some(),
        oauth.token_url.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() != 1 {
        return Err("set exactly one token source: `token_file`, `token_env`, `token_command`, or `token_url` \
                    (client credentials, with `client_id` and `client_secret_file`)"
            .into());
    }
    let Some(url) = &oauth.token_url else {
        let stray = [
            ("client_id", oauth.client_id.is_some()),
            ("client_secret", oauth.client_secret.is_some()),
            ("client_secret_file", oauth.client_secret_file.is_some()),
            ("scope", oauth.scope.is_some()),
        ];
        if let Some((key, _)) = stray.iter().find(|(_, set)| *set) {
            return Err(format!(
                "`{key}` is used only with `token_url` (client credentials): remove it or set `token_url`"
            ));
        }
        return Ok(());
    };
    TokenUrl::parse(url)?;
    match &oauth.client_id {
        Some(id) if !id.trim().is_empty() => {}
        _ => return Err("`token_url` needs `client_id` (the application (client) ID of the app registration)".into()),
    }
    match (&oauth.client_secret, &oauth.client_secret_file) {
        (Some(_), Some(_)) => Err("both `client_secret` and `client_secret_file` are set: keep one".into()),
        (None, None) => Err("`token_url` needs `client_secret_file` (or `client_secret`)".into()),
        _ => Ok(()),
    }
}

/// The parts of a token endpoint URL that a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TokenUrl {
    https: bool,
    host: String,
    port: u16,
    /// Path and query, starting with `/`.
    target: String,
}

impl TokenUrl {
    fn parse(url: &str) -> Result<TokenUrl, String> {
        let bad = |why: &str| format!("`token_url` {url:?} {why}");
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad("must start with https://"));
        };
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) || url.contains('#') {
            return Err(bad("contains spaces, control characters or a #fragment"));
        }
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.contains('@') {
            return Err(bad("must not carry a user name or password: give the secret in `client_secret_file`"));
        }
        let default_port = if https { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((host, after)) = v6.split_once(']') else { return Err(bad("has an unclosed [IPv6] host")) };
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad("has a bad port"))?,
                None if after.is_empty() => default_port,
                None => return Err(bad("has a bad host")),
            };
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, p)) => (host.to_string(), p.parse().map_err(|_| bad("has a bad port"))?),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        if !https && !is_loopback(&host) {
            return Err(bad("must use https:// (plain http:// is allowed only for a loopback host)"));
        }
        Ok(TokenUrl { https, host, port, target })
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let default_port = if self.https { 443 } else { 80 };
        if self.port == default_port { host } else { format!("{host}:{}", self.port) }
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(char::from(b)),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The client-credentials request body.
fn request_body(client_id: &str, secret: &str, scope: Option<&str>) -> String {
    let mut body = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        form_encode(client_id),
        form_encode(secret)
    );
    if let Some(scope) = scope {
        body.push_str("&scope=");
        body.push_str(&form_encode(scope));
    }
    body
}

/// What to do about an OAuth2 error from the token endpoint (Entra ID's AADSTS codes first).
fn hint(status: u16, error: &str, description: &str) -> String {
    let has = |code: &str| description.contains(code);
    let text = if has("AADSTS7000222") {
        "the client secret has EXPIRED: create a new secret under the app registration's Certificates & \
         secrets, write its Value to `client_secret_file`; Postroom retries on its own and reads the file again"
    } else if has("AADSTS7000215") {
        "the client secret is wrong: put the secret's Value (not its Secret ID) in `client_secret_file`"
    } else if has("AADSTS700016") {
        "no such application in this tenant: check `client_id` and the tenant in `token_url`"
    } else if has("AADSTS90002") || has("AADSTS900023") {
        "no such tenant: check the tenant ID or domain in `token_url`"
    } else if has("AADSTS1002012") || has("AADSTS70011") || error == "invalid_scope" {
        "the scope is not valid: Microsoft 365 IMAP needs scope = \"https://outlook.office365.com/.default\""
    } else if error == "invalid_client" {
        "the client was not accepted: check `client_id` and the client secret in `client_secret_file` (has it \
         expired?)"
    } else if error == "unauthorized_client" {
        "the application may not use the client-credentials grant: check the app registration"
    } else if status >= 500 || error == "temporarily_unavailable" {
        "the endpoint has a problem of its own: Postroom retries with backoff"
    } else {
        "check `token_url`, `client_id`, the client secret and `scope`"
    };
    text.to_string()
}

/// Text from the endpoint made safe for one log line: control characters dropped, at most 300 characters.
fn clean(text: &str) -> String {
    let one_line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let trimmed = one_line.split_whitespace().collect::<Vec<_>>().join(" ");
    if trimmed.chars().count() > 300 {
        format!("{}...", trimmed.chars().take(300).collect::<String>())
    } else {
        trimmed
    }
}

/// Reads the token endpoint's answer: a token and its lifetime, or the OAuth2 error.
fn parse_token_response(url: &str, status: u16, body: &[u8]) -> Result<(String, Duration), TokenError> {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| json.as_ref().and_then(|j| j.get(name)).and_then(|v| v.as_str()).map(clean);
    if status != 200 {
        let error = field("error").unwrap_or_default();
        let description = field("error_description").unwrap_or_default();
        let hint = hint(status, &error, &description);
        return Err(TokenError::Refused { url: url.to_string(), status, error, description, hint });
    }
    let bad = |message: &str| TokenError::BadResponse { url: url.to_string(), message: message.to_string() };
    let Some(json) = json else { return Err(bad("the body is not JSON")) };
    let token = json.get("access_token").and_then(|v| v.as_str()).unwrap_or("");
    if token.is_empty() {
        return Err(bad("no `access_token` in it"));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("the `access_token` is not a single bearer token"));
    }
    if let Some(kind) = json.get("token_type").and_then(|v| v.as_str())
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(bad(&format!("token_type is {:?}, not Bearer", clean(kind))));
    }
    // A number by the RFC; some servers send a string.
    let expires_in = match json.get("expires_in") {
        Some(v) => v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())),
        None => None,
    };
    let Some(expires_in) = expires_in.filter(|s| *s > 0) else {
        return Err(bad("no positive `expires_in`: Postroom cannot tell when to renew the token"));
    };
    Ok((token.to_string(), Duration::from_secs(expires_in)))
}

/// The client-credentials settings of one `[oauth2]` table, checked.
#[derive(Clone)]
pub struct ClientCredentials {
    url: TokenUrl,
    token_url: String,
    client_id: String,
    secret: Secret,
    scope: Option<String>,
    margin: Duration,
}

#[derive(Clone)]
enum Secret {
    Inline(String),
    File(std::path::PathBuf),
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// The client-credentials part of `oauth`; `None` when it uses another token source.
    pub fn from_config(oauth: &OAuth2Config) -> Result<Option<ClientCredentials>, TokenError> {
        let Some(token_url) = &oauth.token_url else { return Ok(None) };
        check_config(oauth).map_err(TokenError::Config)?;
        let url = TokenUrl::parse(token_url).map_err(TokenError::Config)?;
        let secret = match (&oauth.client_secret, &oauth.client_secret_file) {
            (Some(s), None) => Secret::Inline(s.clone()),
            (None, Some(p)) => Secret::File(p.clone()),
            _ => return Err(TokenError::Config("exactly one of `client_secret`, `client_secret_file`".into())),
        };
        Ok(Some(ClientCredentials {
            url,
            token_url: token_url.clone(),
            client_id: oauth.client_id.clone().unwrap_or_default(),
            secret,
            scope: oauth.scope.clone().filter(|s| !s.is_empty()),
            margin: Duration::from_secs(oauth.refresh_margin_secs),
        }))
    }

    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    fn read_secret(&self) -> Result<String, TokenError> {
        let secret = match &self.secret {
            Secret::Inline(s) => s.clone(),
            Secret::File(path) => std::fs::read_to_string(path)
                .map_err(|e| {
                    TokenError::Config(format!(
                        "cannot read `client_secret_file` {}: {e}; check the path and its permissions",
                        path.display()
                    ))
                })?
                .trim()
                .to_string(),
        };
        if secret.is_empty() {
            return Err(TokenError::Config("the client secret is empty; check `client_secret_file`".into()));
        }
        Ok(secret)
    }

    /// Cache key: one token per endpoint, client and scope.
    fn key(&self) -> String {
        format!("{}\n{}\n{}", self.token_url, self.client_id, self.scope.as_deref().unwrap_or(""))
    }

    /// A current token: the cached one while it is fresh, else a new one from the endpoint. `tls` is used for
    /// https; `limit` bounds the whole request.
    pub async fn token(
        &self,
        tls: &tokio_rustls::rustls::ClientConfig,
        limit: Duration,
    ) -> Result<AccessToken, TokenError> {
        let slot = {
            let mut cache = CACHE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            Arc::clone(cache.entry(self.key()).or_default())
        };
        // One request at a time per key: mailboxes sharing an app registration share its token.
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref()
            && token.fresh_at(Instant::now())
        {
            return Ok(token.clone());
        }
        let token = self.fetch(tls, limit).await?;
        tracing::info!(
            token_url = %self.token_url, client_id = %self.client_id,
            expires_in_secs = token.expires_at.saturating_duration_since(Instant::now()).as_secs(),
            "obtained an OAuth2 access token (client credentials)"
        );
        *cached = Some(token.clone());
        Ok(token)
    }

    /// Drops `token` from the cache (the server refused it), so the next [`token`](Self::token) asks anew.
    pub async fn forget(&self, token: &AccessToken) {
        let slot = CACHE.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&self.key()).cloned();
        if let Some(slot) = slot {
            let mut cached = slot.lock().await;
            if cached.as_ref().is_some_and(|c| c.secret == token.secret) {
                *cached = None;
            }
        }
    }

    /// Always asks the endpoint (no cache).
    pub async fn fetch(
        &self,
        tls: &tokio_rustls::rustls::ClientConfig,
        limit: Duration,
    ) -> Result<AccessToken, TokenError> {
        let secret = self.read_secret()?;
        let body = request_body(&self.client_id, &secret, self.scope.as_deref());
        drop(secret);
        let asked = Instant::now();
        let unreachable = |message: String| TokenError::Unreachable { url: self.token_url.clone(), message };
        let (status, answer) = match tokio::time::timeout(limit, post_form(&self.url, &body, tls)).await {
            Err(_) => return Err(unreachable(format!("no answer within {} ms", limit.as_millis()))),
            Ok(Err(message)) => return Err(unreachable(message)),
            Ok(Ok(r)) => r,
        };
        let (token, lifetime) = parse_token_response(&self.token_url, status, &answer)?;
        // Lifetime counts from when we asked: the token cannot have been issued earlier.
        Ok(AccessToken::new(token, asked, lifetime, self.margin))
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<AccessToken>>>;

static CACHE: LazyLock<Mutex<HashMap<String, Slot>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// POSTs `body` as a form to `url` (HTTP/1.1, `Connection: close`); returns the status and the body.
async fn post_form(
    url: &TokenUrl,
    body: &str,
    tls: &tokio_rustls::rustls::ClientConfig,
) -> Result<(u16, Vec<u8>), String> {
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("{e}; check `token_url`, DNS, and any firewall or proxy in between"))?;
    let _ = tcp.set_nodelay(true);
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Accept: application/json\r\nUser-Agent: postroom/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        url.target,
        url.host_header(),
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    if url.https {
        let name = ServerName::try_from(url.host.clone())
            .map_err(|e| format!("`{}` is neither a DNS name nor an IP address: {e}", url.host))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(tls.clone()));
        let stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}; a private certificate needs its CA in the mailbox's `ca_file`"))?;
        exchange(stream, request.as_bytes()).await
    } else {
        exchange(tcp, request.as_bytes()).await
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, request: &[u8]) -> Result<(u16, Vec<u8>), String> {
    stream.write_all(request).await.map_err(|e| format!("sending the request: {e}"))?;
    stream.flush().await.map_err(|e| format!("sending the request: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(done) = parse_response(&raw, false)? {
            return Ok(done);
        }
        let n = match stream.read(&mut buf).await {
            Ok(n) => n,
            // A server that closes without TLS close_notify: what arrived is judged as it is.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(format!("reading the answer: {e}")),
        };
        if n == 0 {
            return parse_response(&raw, true)?.ok_or_else(|| "the connection closed before a full HTTP answer".into());
        }
        raw.extend_from_slice(&buf[..n]);
        if raw.len() > MAX_RESPONSE_BYTES {
            return Err(format!("the answer is larger than {MAX_RESPONSE_BYTES} bytes"));
        }
    }
}

/// A complete HTTP/1.1 response in `raw`: `Ok(None)` while more is needed; at `eof` a body without a length
/// runs to the end.
fn parse_response(raw: &[u8], eof: bool) -> Result<Option<(u16, Vec<u8>)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("not an HTTP answer ({e}); check that `token_url` is the token endpoint")),
    };
    let status = response.code.unwrap_or(0);
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let rest = &raw[head..];
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        return Ok(dechunk(rest, eof)?.map(|body| (status, body)));
    }
    if let Some(length) = header("content-length") {
        let length: usize = length.parse().map_err(|_| "a bad Content-Length".to_string())?;
        if rest.len() >= length {
            return Ok(Some((status, rest[..length].to_vec())));
        }
        return if eof { Err("the answer ended before its Content-Length".into()) } else { Ok(None) };
    }
    Ok(eof.then(|| (status, rest.to_vec())))
}

/// Decodes a chunked body; `Ok(None)` while incomplete.
fn dechunk(mut rest: &[u8], eof: bool) -> Result<Option<Vec<u8>>, String> {
    let incomplete = || if eof { Err("the chunked answer ended early".to_string()) } else { Ok(None) };
    let mut body = Vec::new();
    loop {
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else { return incomplete() };
        let line = std::str::from_utf8(&rest[..line_end]).map_err(|_| "a bad chunk size".to_string())?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| "a bad chunk size".to_string())?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            // Trailers, if any, are not needed.
            return Ok(Some(body));
        }
        if rest.len() < size + 2 {
            return incomplete();
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(url: &str) -> OAuth2Config {
        OAuth2Config {
            token_url: Some(url.into()),
            client_id: Some("app-1".into()),
            client_secret_file: Some("/etc/postroom/secret".into()),
            ..OAuth2Config::default()
        }
    }

    #[test]
    fn config_needs_exactly_one_source_and_complete_client_credentials() {
        assert!(check_config(&cc("https://login.example/t/oauth2/v2.0/token")).is_ok());
        assert!(check_config(&OAuth2Config { token_env: Some("T".into()), ..OAuth2Config::default() }).is_ok());
        let none = check_config(&OAuth2Config::default()).unwrap_err();
        assert!(none.contains("exactly one") && none.contains("token_url"), "{none}");
        let two = OAuth2Config { token_env: Some("T".into()), ..cc("https://a.example/token") };
        assert!(check_config(&two).unwrap_err().contains("exactly one"));
        let no_id = OAuth2Config { client_id: None, ..cc("https://a.example/token") };
        assert!(check_config(&no_id).unwrap_err().contains("client_id"));
        let no_secret = OAuth2Config { client_secret_file: None, ..cc("https://a.example/token") };
        assert!(check_config(&no_secret).unwrap_err().contains("client_secret_file"));
        let both = OAuth2Config { client_secret: Some("s".into()), ..cc("https://a.example/token") };
        assert!(check_config(&both).unwrap_err().contains("keep one"));
        let stray = OAuth2Config { token_env: Some("T".into()), scope: Some("x".into()), ..OAuth2Config::default() };
        assert!(check_config(&stray).unwrap_err().contains("`scope` is used only with `token_url`"));
        let plain = check_config(&cc("http://login.example/token")).unwrap_err();
        assert!(plain.contains("loopback"), "{plain}");
        assert!(check_config(&cc("http://127.0.0.1:31880/token")).is_ok());
        let userinfo = check_config(&cc("https://id:pw@login.example/token")).unwrap_err();
        assert!(userinfo.contains("client_secret_file"), "{userinfo}");
        assert!(check_config(&cc("ftp://x/token")).unwrap_err().contains("https://"));
    }

    #[test]
    fn token_urls_are_split_into_host_port_and_target() {
        let u = TokenUrl::parse("https://login.microsoftonline.com/tenant/oauth2/v2.0/token").unwrap();
        assert_eq!((u.https, u.host.as_str(), u.port), (true, "login.microsoftonline.com", 443));
        assert_eq!(
            (u.target.as_str(), u.host_header()),
            ("/tenant/oauth2/v2.0/token", "login.microsoftonline.com".into())
        );
        let u = TokenUrl::parse("http://127.0.0.1:31880/t/x/token?a=b").unwrap();
        assert_eq!((u.port, u.target.as_str(), u.host_header()), (31880, "/t/x/token?a=b", "127.0.0.1:31880".into()));
        let u = TokenUrl::parse("http://[::1]:8080").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str(), u.host_header()),
            ("::1", 8080, "/", "[::1]:8080".into())
        );
        assert!(TokenUrl::parse("https://:443/x").is_err());
        assert!(TokenUrl::parse("https://a.example:99999/x").is_err());
        assert!(TokenUrl::parse("https://a.example/x y").is_err());
    }

    #[test]
    fn the_request_is_form_encoded() {
        let body = request_body("app 1", "p&s=w+rd/é", Some("https://outlook.office365.com/.default"));
        assert_eq!(
            body,
            "grant_type=client_credentials&client_id=app+1&client_secret=p%26s%3Dw%2Brd%2F%C3%A9\
             &scope=https%3A%2F%2Foutlook.office365.com%2F.default"
        );
        assert_eq!(request_body("a", "b", None), "grant_type=client_credentials&client_id=a&client_secret=b");
    }

    #[test]
    fn a_token_is_renewed_within_the_margin_but_never_before_half_its_life() {
        let t0 = Instant::now();
        let hour = AccessToken::new("t".into(), t0, Duration::from_secs(3600), Duration::from_secs(300));
        assert_eq!(hour.renew_at(), t0 + Duration::from_secs(3300));
        assert!(hour.fresh_at(t0 + Duration::from_secs(3299)));
        assert!(!hour.fresh_at(t0 + Duration::from_secs(3300)));
        // A token shorter than twice the margin is used for half its life, not refreshed on every use.
        let short = AccessToken::new("t".into(), t0, Duration::from_secs(60), Duration::from_secs(300));
        assert_eq!(short.renew_at(), t0 + Duration::from_secs(30));
        let no_margin = AccessToken::new("t".into(), t0, Duration::from_secs(60), Duration::ZERO);
        assert_eq!(no_margin.renew_at(), no_margin.expires_at());
        assert!(!format!("{hour:?}").contains("\"t\""), "Debug hides the token");
        let absurd = AccessToken::new("t".into(), t0, Duration::from_secs(u64::MAX), Duration::from_secs(300));
        assert_eq!(absurd.expires_at(), t0 + MAX_LIFETIME);
        let (_, life) =
            parse_token_response("u", 200, br#"{"access_token":"x","expires_in":18446744073709551615}"#).unwrap();
        assert_eq!(AccessToken::new("x".into(), t0, life, Duration::ZERO).expires_at(), t0 + MAX_LIFETIME);
    }

    #[test]
    fn token_responses_are_read_and_errors_say_what_to_do() {
        let url = "https://login.example/token";
        let (tok, life) =
            parse_token_response(url, 200, br#"{"token_type":"Bearer","expires_in":3599,"access_token":"eyJ.a.b"}"#)
                .unwrap();
        assert_eq!((tok.as_str(), life), ("eyJ.a.b", Duration::from_secs(3599)));
        let (_, life) = parse_token_response(url, 200, br#"{"expires_in":"60","access_token":"x"}"#).unwrap();
        assert_eq!(life, Duration::from_secs(60));
        for (body, want) in [
            (&br#"{"expires_in":60}"#[..], "access_token"),
            (br#"{"access_token":"x"}"#, "expires_in"),
            (br#"{"access_token":"a b","expires_in":5}"#, "single bearer"),
            (br#"{"access_token":"x","expires_in":5,"token_type":"mac"}"#, "Bearer"),
            (b"<html>", "not JSON"),
        ] {
            let e = parse_token_response(url, 200, body).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        let expired = br#"{"error":"invalid_client","error_description":"AADSTS7000222: The provided client secret keys for app 'x' are expired.\r\nTrace ID: 1","error_codes":[7000222]}"#;
        let e = parse_token_response(url, 401, expired).unwrap_err().to_string();
        assert!(e.contains("HTTP 401, invalid_client: AADSTS7000222") && e.contains("EXPIRED"), "{e}");
        assert!(e.contains("client_secret_file") && !e.contains('\r'), "{e}");
        let e = parse_token_response(url, 401, br#"{"error":"invalid_client"}"#).unwrap_err().to_string();
        assert!(e.contains("invalid_client") && e.contains("client_id"), "{e}");
        let e = parse_token_response(url, 400, br#"{"error":"invalid_scope","error_description":"AADSTS70011: x"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("outlook.office365.com/.default"), "{e}");
        let e = parse_token_response(url, 503, b"down").unwrap_err().to_string();
        assert!(e.contains("HTTP 503") && e.contains("retries"), "{e}");
        let long = format!(r#"{{"error":"x","error_description":"{}"}}"#, "a".repeat(1000));
        assert!(parse_token_response(url, 400, long.as_bytes()).unwrap_err().to_string().len() < 600);
    }

    /// A token endpoint on a loopback port that answers every request with `expires_in` (chunked, so that
    /// path runs over a real socket too) and counts the requests.
    async fn endpoint(expires_in: u64) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&count);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let n = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                let mut buf = vec![0; 4096];
                let _ = s.read(&mut buf).await;
                let body = format!(r#"{{"token_type":"Bearer","expires_in":{expires_in},"access_token":"tok{n}"}}"#);
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        (url, count)
    }

    #[tokio::test]
    async fn tokens_are_cached_renewed_within_the_margin_and_forgotten_when_refused() {
        use std::sync::atomic::Ordering::SeqCst;
        let tls = crate::tls::client_config(None).unwrap();
        let limit = Duration::from_secs(5);
        let (url, count) = endpoint(3600).await;
        let oauth = OAuth2Config { client_secret: Some("s".into()), client_secret_file: None, ..cc(&url) };
        let c = ClientCredentials::from_config(&oauth).unwrap().unwrap();
        let first = c.token(&tls, limit).await.unwrap();
        assert_eq!((first.secret(), c.token(&tls, limit).await.unwrap().secret()), ("tok1", "tok1"));
        assert_eq!(count.load(SeqCst), 1, "the second call is served from the cache");
        // Another config for the same endpoint, client and scope shares the token (one per app).
        let again = ClientCredentials::from_config(&oauth).unwrap().unwrap();
        assert_eq!(again.token(&tls, limit).await.unwrap().secret(), "tok1");
        c.forget(&first).await;
        assert_eq!(c.token(&tls, limit).await.unwrap().secret(), "tok2", "a refused token is not offered again");

        // Lifetime 2 s, margin 1 s: fresh for 1 s, then renewed.
        let (url, count) = endpoint(2).await;
        let oauth = OAuth2Config {
            refresh_margin_secs: 1,
            ..OAuth2Config { client_secret: Some("s".into()), client_secret_file: None, ..cc(&url) }
        };
        let c = ClientCredentials::from_config(&oauth).unwrap().unwrap();
        let t = c.token(&tls, limit).await.unwrap();
        assert!(t.renew_at() <= Instant::now() + Duration::from_secs(1));
        assert_eq!(c.token(&tls, limit).await.unwrap().secret(), "tok1");
        tokio::time::sleep(t.renew_at().saturating_duration_since(Instant::now()) + Duration::from_millis(20)).await;
        assert_eq!(c.token(&tls, limit).await.unwrap().secret(), "tok2", "renewed within the margin, before expiry");
        assert_eq!(count.load(SeqCst), 2);

        // A secret file that cannot be read is a config error naming the file.
        let missing = OAuth2Config {
            client_id: Some("other".into()),
            client_secret_file: Some("/nonexistent/s".into()),
            ..cc(&url)
        };
        let e = ClientCredentials::from_config(&missing).unwrap().unwrap().token(&tls, limit).await.unwrap_err();
        assert!(matches!(e, TokenError::Config(_)) && e.to_string().contains("/nonexistent/s"), "{e}");
        // Nothing listening: unreachable, said so.
        let closed = OAuth2Config {
            client_id: Some("third".into()),
            client_secret: Some("s".into()),
            client_secret_file: None,
            ..cc("http://127.0.0.1:9/token")
        };
        let e = ClientCredentials::from_config(&closed).unwrap().unwrap().token(&tls, limit).await.unwrap_err();
        assert!(matches!(e, TokenError::Unreachable { .. }), "{e}");
    }

    #[test]
    fn http_answers_are_read_by_length_chunks_or_to_the_end() {
        let full = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse_response(full, false).unwrap(), Some((200, b"hello".to_vec())));
        assert_eq!(parse_response(&full[..30], false).unwrap(), None);
        assert!(parse_response(&full[..40], true).is_err());
        let chunked =
            b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked, false).unwrap(), Some((401, b"abcde".to_vec())));
        assert_eq!(parse_response(&chunked[..60], false).unwrap(), None);
        let to_end = b"HTTP/1.0 200 OK\r\n\r\n{}";
        assert_eq!(parse_response(to_end, false).unwrap(), None);
        assert_eq!(parse_response(to_end, true).unwrap(), Some((200, b"{}".to_vec())));
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n", false).is_err());
    }
}
