//! XOAUTH2 with the OAuth2 client-credentials flow, end to end: the real Dovecot of `scripts/dev-services`
//! checks every bearer token with its `passdb oauth2` against an introspection endpoint that this test
//! serves on loopback (port `POSTROOM_TEST_OAUTH_PORT`, 31880 by default), next to a token endpoint that
//! checks the client credentials and issues short-lived random tokens. Dovecot has no auth cache here, so
//! a token used after it expired would be refused: every filed message proves a current token was used.
//!
//! Servers are found as in tests/imap.rs (`POSTROOM_TEST_*` from `scripts/dev-services env`, else
//! `scripts/dev-services start`); when they cannot run, or the OAuth2 port is taken, the tests say SKIP
//! loudly and pass, unless `POSTROOM_REQUIRE_TOOLS=1`. Each test registers its own client and mailbox, so
//! they run in parallel against one endpoint.

mod common;

use common::until;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::mail::{Servers, servers, skip_or_fail, unique_address};
use postroom::config::{ImapConfig, MailboxConfig, MailboxKind, OAuth2Config, SmtpConfig, TlsMode};
use postroom::daemon::Shutdown;
use postroom::mailbox::imap::{self, ImapError};
use postroom::pipeline::Pipeline;
use postroom::samples::Attached;
use sqlx::Row;

const SCOPE: &str = "https://outlook.office365.com/.default";

/// One registered application: its secret, the scope it may ask for, the mailbox it may open, and what
/// the endpoints saw from it.
#[derive(Default)]
struct Client {
    secret: String,
    user: String,
    expires_in: u64,
    /// The form fields of every token request.
    requests: Vec<BTreeMap<String, String>>,
    issued: Vec<String>,
    /// Introspections Dovecot made of this client's tokens: accepted, and refused (expired).
    active: u32,
    refused: u32,
}

struct Issued {
    client: String,
    expires: Instant,
}

#[derive(Default)]
struct State {
    clients: HashMap<String, Client>,
    tokens: HashMap<String, Issued>,
    /// Introspections of tokens nobody issued.
    unknown: u32,
}

struct OAuthServer {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl OAuthServer {
    fn token_url(&self) -> String {
        format!("http://127.0.0.1:{}/oauth2/v2.0/token", self.port)
    }

    /// Registers a client that may open `user`'s mailbox; returns its id and secret.
    fn register(&self, user: &str, expires_in: u64) -> (String, String) {
        let id = format!("app-{}", random());
        let secret = format!("s3cr3t~{}", random());
        let client = Client { secret: secret.clone(), user: user.to_string(), expires_in, ..Client::default() };
        self.state.lock().unwrap().clients.insert(id.clone(), client);
        (id, secret)
    }

    fn with<T>(&self, id: &str, f: impl FnOnce(&Client) -> T) -> T {
        f(&self.state.lock().unwrap().clients[id])
    }
}

fn random() -> String {
    format!("{:016x}", getrandom::u64().unwrap())
}

/// `application/x-www-form-urlencoded` decoding.
fn form(body: &str) -> BTreeMap<String, String> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%'
                && let Some(Ok(b)) = s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
            {
                out.push(b);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8(out).unwrap()
    };
    body.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn respond(stream: &mut TcpStream, status: &str, json: serde_json::Value) {
    let body = json.to_string();
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
}

/// One HTTP/1.1 request: method, path, headers (lower-case names), body.
fn read_request(stream: &TcpStream) -> Option<(String, String, HashMap<String, String>, String)> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((method, path, headers, String::from_utf8_lossy(&body).into_owned()))
}

fn handle(mut stream: TcpStream, state: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Some((method, path, headers, body)) = read_request(&stream) else { return };
    let fields = form(&body);
    let mut st = state.lock().unwrap();
    match (method.as_str(), path.as_str()) {
        ("POST", "/oauth2/v2.0/token") => {
            let id = fields.get("client_id").cloned().unwrap_or_default();
            let form_type =
                headers.get("content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
            let Some(client) = st.clients.get_mut(&id) else {
                return respond(
                    &mut stream,
                    "400 Bad Request",
                    serde_json::json!({"error": "unauthorized_client", "error_description": "AADSTS700016: Application not found"}),
                );
            };
            client.requests.push(fields.clone());
            if !form_type || fields.get("grant_type").map(String::as_str) != Some("client_credentials") {
                return respond(&mut stream, "400 Bad Request", serde_json::json!({"error": "unsupported_grant_type"}));
            }
            if fields.get("client_secret") != Some(&client.secret) {
                return respond(
                    &mut stream,
                    "401 Unauthorized",
                    serde_json::json!({
                        "error": "invalid_client",
                        "error_description": format!("AADSTS7000215: Invalid client secret provided. Ensure the secret \
                            being sent in the request is the client secret value, not the client secret ID, for a \
                            secret added to app '{id}'.\r\nTrace ID: 0000"),
                        "error_codes": [7000215],
                    }),
                );
            }
            if fields.get("scope").map(String::as_str) != Some(SCOPE) {
                return respond(&mut stream, "400 Bad Request", serde_json::json!({"error": "invalid_scope"}));
            }
            let token = format!("tok.{}{}", random(), random());
            client.issued.push(token.clone());
            let expires_in = client.expires_in;
            st.tokens.insert(
                token.clone(),
                Issued { client: id, expires: Instant::now() + Duration::from_secs(expires_in) },
            );
            respond(
                &mut stream,
                "200 OK",
                serde_json::json!({"token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in, "access_token": token}),
            );
        }
        // RFC 7662 as Dovecot's passdb oauth2 asks it (introspection_mode = post).
        ("POST", "/introspect") => {
            let token = fields.get("token").cloned().unwrap_or_default();
            let found = st.tokens.get(&token).map(|t| (t.client.clone(), t.expires > Instant::now()));
            match found {
                Some((id, active)) => {
                    let client = st.clients.get_mut(&id).unwrap();
                    if active {
                        client.active += 1;
                    } else {
                        client.refused += 1;
                    }
                    let user = client.user.clone();
                    respond(&mut stream, "200 OK", serde_json::json!({"active": active, "username": user}));
                }
                None => {
                    st.unknown += 1;
                    respond(&mut stream, "200 OK", serde_json::json!({"active": false, "username": ""}));
                }
            }
        }
        _ => respond(&mut stream, "404 Not Found", serde_json::json!({"error": "not_found"})),
    }
}

/// The port Dovecot introspects at: `POSTROOM_TEST_OAUTH_PORT`, else what `scripts/dev-services env` says.
fn oauth_port() -> u16 {
    if let Ok(p) = std::env::var("POSTROOM_TEST_OAUTH_PORT") {
        return p.parse().expect("POSTROOM_TEST_OAUTH_PORT");
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/dev-services");
    let out = std::process::Command::new(script).arg("env").output().expect("scripts/dev-services env");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("export POSTROOM_TEST_OAUTH_PORT=")?.parse().ok())
        .unwrap_or(31880)
}

/// The endpoint, one per test binary, on its own threads (each test has its own runtime).
fn oauth_server() -> Option<&'static OAuthServer> {
    static SERVER: OnceLock<Result<OAuthServer, String>> = OnceLock::new();
    let server = SERVER.get_or_init(|| {
        let port = oauth_port();
        let listener = TcpListener::bind(("127.0.0.1", port))
            .map_err(|e| format!("cannot serve the OAuth2 endpoints on 127.0.0.1:{port}: {e}"))?;
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                std::thread::spawn(move || handle(stream, &state));
            }
        });
        Ok(OAuthServer { port, state })
    });
    match server {
        Ok(s) => Some(s),
        Err(message) => {
            skip_or_fail(message);
            None
        }
    }
}

/// Every log line of this test binary, so tests can check what an operator would read.
fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let filter = tracing_subscriber::EnvFilter::new("postroom=info");
        tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(|| Capture).init();
    });
}

/// An IMAP mailbox config for `user` on the implicit-TLS port, fast backoff.
fn imap_config(srv: &Servers, user: &str) -> ImapConfig {
    let mut c: ImapConfig = toml::from_str(&format!(
        "host = \"{}\"\nport = {}\ntls = \"implicit\"\nusername = \"{user}\"\npassword = \"{}\"\nca_file = \"{}\"\n",
        srv.host, srv.imaps_port, srv.password, srv.ca
    ))
    .unwrap();
    c.command_timeout_ms = 10_000;
    c.poll_interval_ms = 200;
    c.backoff_min_ms = 100;
    c.backoff_max_ms = 400;
    c
}

/// The same, logging in with XOAUTH2 and a token from `oauth`'s client `id`, the secret read from `secret`.
fn xoauth2_config(srv: &Servers, user: &str, oauth: &OAuthServer, id: &str, secret: &Path, margin: u64) -> ImapConfig {
    let mut c = imap_config(srv, user);
    c.password = None;
    c.auth = postroom::config::AuthMethod::Xoauth2;
    c.oauth2 = Some(OAuth2Config {
        token_url: Some(oauth.token_url()),
        client_id: Some(id.to_string()),
        client_secret_file: Some(secret.to_path_buf()),
        scope: Some(SCOPE.into()),
        refresh_margin_secs: margin,
        ..OAuth2Config::default()
    });
    c
}

fn mailbox(name: &str, cfg: ImapConfig) -> MailboxConfig {
    MailboxConfig {
        name: name.into(),
        address: cfg.username.clone(),
        kind: MailboxKind::Imap,
        path: None,
        imap: Some(cfg),
    }
}

struct Rig {
    app: common::TestApp,
    p: std::sync::Arc<Pipeline>,
}

/// A workspace whose mailboxes are `mailboxes` (replacing the default ones of the same name).
async fn rig(mailboxes: Vec<MailboxConfig>) -> Rig {
    capture_logs();
    let app = common::TestApp::start().await;
    let mut config = app.pipeline.config.clone();
    config.mailboxes.retain(|m| !mailboxes.iter().any(|n| n.name == m.name));
    config.mailboxes.extend(mailboxes);
    let p = Pipeline::new(
        config,
        postroom::forms::Catalog::embedded().unwrap(),
        postroom::reply::Templates::load(None).unwrap(),
        app.pipeline.store.clone(),
    );
    Rig { app, p: std::sync::Arc::new(p) }
}

impl Rig {
    fn good(&self) -> Vec<u8> {
        let id = format!("oauth-{}@care.example", random());
        self.app.email(&id, "Death notification", vec![Attached::docx("death.docx", self.app.form("death", |_| {}))])
    }

    fn no_form(&self) -> Vec<u8> {
        self.app.email(&format!("hello-{}@care.example", random()), "Hello", vec![])
    }

    async fn settled(&self, mailbox: &str) -> Vec<String> {
        sqlx::query("SELECT settled_folder FROM messages WHERE mailbox = $1 AND settled_at IS NOT NULL")
            .bind(mailbox)
            .fetch_all(self.p.store.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect()
    }

    /// Runs the daemon (every mailbox, each in its own loop) while `watcher` runs.
    async fn run_while<T>(&self, watcher: impl Future<Output = T>) -> T {
        let (stop, shutdown) = Shutdown::new();
        let run = postroom::daemon::run(self.p.clone(), shutdown, false);
        let watch = async {
            let t = watcher.await;
            stop.send(true).unwrap();
            t
        };
        let (result, t) = tokio::join!(run, watch);
        result.unwrap();
        t
    }
}

/// APPENDs `raw` to `user`'s INBOX, logging in with the password (the static passdb).
async fn append(srv: &Servers, user: &str, raw: &[u8]) {
    let mut s = imap::connect(&imap_config(srv, user)).await.unwrap();
    s.append("INBOX", None, raw).await.unwrap();
    s.logout().await.unwrap();
}

async fn folder_counts(srv: &Servers, user: &str) -> Vec<(String, u32)> {
    let mut s = imap::connect(&imap_config(srv, user)).await.unwrap();
    let c = s.status_counts(&["INBOX", "Processed", "Rejected", "Quarantine"]).await.unwrap();
    s.logout().await.unwrap();
    c
}

fn secret_file(dir: &Path, secret: &str) -> std::path::PathBuf {
    let path = dir.join("client-secret");
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path
}

#[tokio::test]
async fn client_credentials_log_in_and_a_real_email_is_filed() {
    let Some(srv) = servers() else { return };
    let Some(oauth) = oauth_server() else { return };
    let user = unique_address("oauth-filed");
    let (id, secret) = oauth.register(&user, 3600);
    let dir = tempfile::tempdir().unwrap();
    let cfg = xoauth2_config(&srv, &user, oauth, &id, &secret_file(dir.path(), &secret), 300);
    let r = rig(vec![mailbox("notifications", cfg)]).await;
    // A real email: SMTP into Postfix, delivered by LMTP into the mailbox Dovecot serves.
    let raw = String::from_utf8(r.good()).unwrap();
    common::mail::send(&srv, &common::notifier().email, &user, &raw);

    let filed = r.run_while(until(Duration::from_secs(30), async || r.settled("notifications").await.len() == 1)).await;
    assert!(filed, "the message was not filed; logs:\n{}", logs());

    assert_eq!(r.settled("notifications").await, ["Processed"]);
    let status: String = sqlx::query("SELECT status FROM messages WHERE mailbox = 'notifications'")
        .fetch_one(r.p.store.pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "accepted");
    let counts = folder_counts(&srv, &user).await;
    assert_eq!(counts[..2], [("INBOX".to_string(), 0), ("Processed".to_string(), 1)], "{counts:?}");
    oauth.with(&id, |c| {
        assert_eq!(c.requests.len(), 1, "one token for the whole run: {:?}", c.issued.len());
        let want: BTreeMap<String, String> = [
            ("grant_type", "client_credentials"),
            ("client_id", id.as_str()),
            ("client_secret", secret.as_str()),
            ("scope", SCOPE),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(c.requests[0], want, "exactly these form fields");
        assert!(
            c.active >= 1 && c.refused == 0,
            "Dovecot checked the token: {} accepted, {} refused",
            c.active,
            c.refused
        );
    });
    let logs = logs();
    assert!(!logs.contains(&secret), "the secret is never logged");
    for token in oauth.with(&id, |c| c.issued.clone()) {
        assert!(!logs.contains(&token), "a token is never logged");
    }
}

#[tokio::test]
async fn a_token_is_reused_across_reconnects_and_renewed_before_it_expires() {
    let Some(srv) = servers() else { return };
    let Some(oauth) = oauth_server() else { return };
    let user = unique_address("oauth-renew");
    // Tokens live 6 s; renewed 2 s before expiry, so at 4 s.
    let (id, secret) = oauth.register(&user, 6);
    let dir = tempfile::tempdir().unwrap();
    let cfg = xoauth2_config(&srv, &user, oauth, &id, &secret_file(dir.path(), &secret), 2);

    // Two connections in a row share one token.
    let started = Instant::now();
    for _ in 0..2 {
        let mut s = imap::connect(&cfg).await.unwrap_or_else(|e| panic!("XOAUTH2 login: {e}"));
        assert!(s.token_renew_at().is_some());
        s.logout().await.unwrap();
    }
    assert_eq!(oauth.with(&id, |c| (c.requests.len(), c.active)), (1, 2), "one token, two logins");

    // The daemon's session renews the token before it expires and logs in again with the new one.
    let r = rig(vec![mailbox("notifications", cfg)]).await;
    let filed = r
        .run_while(async {
            // Past the first token's expiry: only a renewed token can log in now.
            tokio::time::sleep(Duration::from_secs(7).saturating_sub(started.elapsed())).await;
            append(&srv, &user, &r.good()).await;
            // Filed, and (however slow the machine) at least one session renewed in flight.
            until(Duration::from_secs(30), async || {
                r.settled("notifications").await.len() == 1 && oauth.with(&id, |c| c.active) >= 4
            })
            .await
        })
        .await;
    assert!(filed, "the message was not filed or no session was renewed; logs:\n{}", logs());
    let (requests, active, refused) = oauth.with(&id, |c| (c.requests.len(), c.active, c.refused));
    assert!(requests >= 2, "a new token was fetched before expiry ({requests} requests)");
    // One token per 4 s of run (renewed 2 s before its 6 s expiry), not one per round or reconnect.
    let most = 2 + started.elapsed().as_secs() / 3;
    assert!(requests as u64 <= most, "tokens are not fetched on every round ({requests} requests, {most} at most)");
    assert!(active >= 4, "the session logged in again with the fresh token ({active} logins)");
    assert_eq!(refused, 0, "an expired token was never offered to the server");
    assert!(logs().contains("OAuth2 access token due for renewal: reconnecting"), "{}", logs());
}

#[tokio::test]
async fn a_wrong_client_secret_is_logged_loudly_retried_and_never_stops_the_other_mailbox() {
    let Some(srv) = servers() else { return };
    let Some(oauth) = oauth_server() else { return };
    let user = unique_address("oauth-badsecret");
    let other = unique_address("oauth-neighbour");
    let (id, secret) = oauth.register(&user, 3600);
    let dir = tempfile::tempdir().unwrap();
    let wrong = format!("wrong-{}", random());
    let secret_path = secret_file(dir.path(), &wrong);
    let oauth_mb = mailbox("notifications", xoauth2_config(&srv, &user, oauth, &id, &secret_path, 300));
    let login_mb = mailbox("mental_health", imap_config(&srv, &other));
    let r = rig(vec![oauth_mb, login_mb]).await;
    append(&srv, &user, &r.good()).await;

    let (neighbour_drained, retried, recovered) = r
        .run_while(async {
            // The LOGIN mailbox is drained, twice, while the OAuth2 one keeps failing.
            append(&srv, &other, &r.no_form()).await;
            let first = until(Duration::from_secs(20), async || r.settled("mental_health").await.len() == 1).await;
            append(&srv, &other, &r.no_form()).await;
            let second = until(Duration::from_secs(20), async || r.settled("mental_health").await.len() == 2).await;
            let retried = until(Duration::from_secs(10), async || oauth.with(&id, |c| c.requests.len()) >= 3).await;
            assert!(r.settled("notifications").await.is_empty(), "nothing filed without a token");
            // The operator writes the right secret: the mailbox recovers without a restart.
            std::fs::write(&secret_path, format!("{secret}\n")).unwrap();
            let recovered = until(Duration::from_secs(20), async || r.settled("notifications").await.len() == 1).await;
            (first && second, retried, recovered)
        })
        .await;
    let logs = logs();
    assert!(neighbour_drained, "the LOGIN mailbox was drained meanwhile; logs:\n{logs}");
    assert!(retried, "the token request was retried with backoff; logs:\n{logs}");
    assert!(recovered, "the mailbox recovered once the secret was fixed; logs:\n{logs}");
    assert_eq!(r.settled("notifications").await, ["Processed"]);

    // One loud line per attempt, naming the mailbox, the OAuth2 error and what to do; never the secrets.
    let line = logs
        .lines()
        .find(|l| l.contains("OAUTH2 TOKEN REQUEST FAILED") && l.contains(&user))
        .unwrap_or_else(|| panic!("no loud token failure line for {user}:\n{logs}"));
    assert!(line.contains("ERROR") && line.contains("mailbox=notifications"), "{line}");
    assert!(line.contains("HTTP 401, invalid_client: AADSTS7000215"), "{line}");
    assert!(line.contains("the client secret is wrong") && line.contains("client_secret_file"), "{line}");
    assert!(line.contains("retry_in_ms"), "{line}");
    assert!(!logs.contains(&wrong) && !logs.contains(&secret), "no secret in the logs");
    let (requests, refused) = oauth.with(&id, |c| (c.requests.clone(), c.refused));
    assert!(requests.len() >= 4 && refused == 0, "{} requests, {refused} refused", requests.len());
    assert!(requests.iter().rev().skip(1).any(|f| f["client_secret"] == wrong), "the wrong secret was tried");
    assert_eq!(requests.last().unwrap()["client_secret"], secret, "the fixed secret was read from the file");
}

#[tokio::test]
async fn a_token_the_server_refuses_is_an_auth_error_and_is_not_offered_again() {
    let Some(srv) = servers() else { return };
    let Some(oauth) = oauth_server() else { return };
    let user = unique_address("oauth-refused");
    let (id, secret) = oauth.register(&user, 3600);
    let dir = tempfile::tempdir().unwrap();
    let cfg = xoauth2_config(&srv, &user, oauth, &id, &secret_file(dir.path(), &secret), 300);
    // Revoked behind our back: the endpoint forgets every token it issued to this client.
    let mut s = imap::connect(&cfg).await.unwrap();
    s.logout().await.unwrap();
    {
        let mut st = oauth.state.lock().unwrap();
        st.tokens.retain(|_, t| t.client != id);
    }
    let err = imap::connect(&cfg).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ImapError::Auth { .. }), "{text}");
    assert!(text.contains("XOAUTH2") && text.contains("IMAP.AccessAsApp"), "{text}");
    assert!(!text.contains(&secret) && !text.contains("tok."), "{text}");
    // The refused token was dropped: the next login asks for a new one and works.
    let mut s = imap::connect(&cfg).await.unwrap_or_else(|e| panic!("after a refused token: {e}"));
    s.logout().await.unwrap();
    assert_eq!(oauth.with(&id, |c| c.requests.len()), 2);

    // A token failure is its own error, before anything is sent to the IMAP server.
    let mut bad = cfg.clone();
    if let Some(o) = bad.oauth2.as_mut() {
        o.client_secret_file = Some(dir.path().join("missing"));
        o.client_id = Some(format!("app-{}", random()));
    }
    let err = imap::connect(&bad).await.unwrap_err();
    assert!(matches!(err, ImapError::Token { .. }) && err.to_string().contains("client_secret_file"), "{err}");
}

/// An https front for the token endpoint with the dev servers' own certificate (a private one, trusted
/// only through `ca_file`): terminates TLS and passes the bytes on to the plain endpoint.
async fn https_front(srv: &Servers, oauth: &OAuthServer) -> String {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = Path::new(&srv.ca).parent().unwrap();
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(&srv.ca).unwrap().collect::<Result<_, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://127.0.0.1:{}/oauth2/v2.0/token", listener.local_addr().unwrap().port());
    let plain = oauth.port;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut back) = tokio::net::TcpStream::connect(("127.0.0.1", plain)).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut back).await;
            });
        }
    });
    url
}

#[tokio::test]
async fn an_https_token_endpoint_with_a_private_certificate_is_trusted_through_ca_file() {
    let Some(srv) = servers() else { return };
    let Some(oauth) = oauth_server() else { return };
    let user = unique_address("oauth-https");
    let (id, secret) = oauth.register(&user, 3600);
    let dir = tempfile::tempdir().unwrap();
    let url = https_front(&srv, oauth).await;
    let mut cfg = xoauth2_config(&srv, &user, oauth, &id, &secret_file(dir.path(), &secret), 300);
    if let Some(o) = cfg.oauth2.as_mut() {
        o.token_url = Some(url);
    }
    // Plain IMAP on loopback, so only the token endpoint needs the CA.
    cfg.tls = postroom::config::TlsMode::None;
    cfg.port = srv.imap_port;
    cfg.ca_file = None;
    let err = imap::connect(&cfg).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ImapError::Token { .. }) && text.contains("TLS") && text.contains("ca_file"), "{text}");
    assert_eq!(oauth.with(&id, |c| c.requests.len()), 0, "nothing was sent to an untrusted endpoint");

    cfg.ca_file = Some(srv.ca.clone().into());
    let mut s = imap::connect(&cfg).await.unwrap_or_else(|e| panic!("with ca_file: {e}"));
    s.logout().await.unwrap();
    assert_eq!(oauth.with(&id, |c| (c.requests.len(), c.active)), (1, 1));
}

/// `[smtp]` logging in to Postfix (which asks Dovecot, which introspects the token) with XOAUTH2 as `user`.
fn smtp_xoauth2(srv: &Servers, user: &str, oauth: &OAuthServer, id: &str, secret: &Path) -> SmtpConfig {
    SmtpConfig {
        host: srv.host.clone(),
        port: srv.smtp_port,
        tls: TlsMode::Starttls,
        username: Some(user.to_string()),
        password: None,
        password_file: None,
        auth: postroom::config::AuthMethod::Xoauth2,
        oauth2: Some(OAuth2Config {
            token_url: Some(oauth.token_url()),
            client_id: Some(id.to_string()),
            client_secret_file: Some(secret.to_path_buf()),
            scope: Some(SCOPE.into()),
            refresh_margin_secs: 60,
            ..OAuth2Config::default()
        }),
        ca_file: Some(srv.ca.clone().into()),
        timeout_secs: 10,
        max_attempts: 5,
        retry_base_ms: 1,
        connections: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_leave_by_smtp_logged_in_with_an_xoauth2_token_and_a_refused_secret_is_retried_not_failed() {
    let (Some(srv), Some(oauth)) = (servers(), oauth_server()) else { return };
    capture_logs();
    let sender = unique_address("smtp-oauth-sender");
    let (id, secret) = oauth.register(&sender, 3600);
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("client-secret");
    std::fs::write(&secret_file, "not-the-secret\n").unwrap();

    let mut app = common::TestApp::start().await;
    app.pipeline.config.smtp = Some(smtp_xoauth2(&srv, &sender, oauth, &id, &secret_file));
    let provider = unique_address("smtp-oauth-provider");
    let o = app.process("k", &app.email_from(&provider, &format!("{provider}.orig"), "hello", vec![])).await;
    assert_eq!(o.reply.as_deref(), Some("no_form"));

    // A wrong secret: the token endpoint says invalid_client; the reply waits, it is not given up.
    let drained = postroom::daemon::deliver_replies(&app.pipeline).await.unwrap();
    assert_eq!((drained.sent, drained.retrying, drained.failed), (0, 1, 0), "{drained:?}");
    let (status, error): (String, Option<String>) =
        sqlx::query_as("SELECT status, last_error FROM outbox").fetch_one(app.pipeline.store.pool()).await.unwrap();
    let error = error.unwrap_or_default();
    assert_eq!(status, "pending");
    assert!(error.contains("no OAuth2 token for SMTP") && error.contains("invalid_client"), "{error}");
    assert!(!error.contains("not-the-secret"), "the secret is never in an error: {error}");
    let logged = logs();
    assert!(logged.contains("SMTP REPLIES NOT BEING SENT"), "a loud log line");
    assert!(!logged.contains("not-the-secret"), "the secret is never logged");

    // The secret fixed (no restart): the reply goes out over a session logged in with a current token.
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let drained = postroom::daemon::deliver_replies(&app.pipeline).await.unwrap();
    assert_eq!(drained.sent, 1, "{drained:?}");
    let got = common::mail::Imap::wait_for(&srv, &provider, "INBOX", 1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "one reply in {provider}'s mailbox");
    assert!(got[0].contains("Subject: Action needed: no notification form found"), "{}", got[0]);
    oauth.with(&id, |c| {
        assert_eq!(c.requests.len(), 2, "one refused and one granted token request");
        assert_eq!(c.issued.len(), 1);
        assert!(c.active >= 1, "Dovecot checked the token for Postfix's AUTH");
        assert_eq!(c.refused, 0);
    });
}
