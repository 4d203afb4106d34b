//! IMAP mailboxes against the real Dovecot of `scripts/dev-services`: connecting every way, filing each
//! message once and moving it to its folder, IDLE, a restart mid-batch, a UIDVALIDITY reset, oversize mail,
//! and the settle fallbacks for servers without MOVE or UIDPLUS.
//!
//! With `POSTROOM_TEST_IMAP_PORT` set (from `eval "$(scripts/dev-services env)"`) the servers are taken as
//! running; otherwise `scripts/dev-services start` is run once. When the servers cannot start the tests say
//! SKIP loudly and pass, unless `POSTROOM_REQUIRE_TOOLS=1`, when they fail. Every test logs in as its own
//! user (`imap-<test>-<random>@postroom.test`), so each has its own mailbox and they run in parallel.

mod common;

use common::until;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use postroom::config::{ImapConfig, MailboxConfig, MailboxKind, TlsMode};
use postroom::daemon::Shutdown;
use postroom::mailbox::imap::{self, ImapError, ImapSession};
use postroom::pipeline::Pipeline;
use postroom::samples::Attached;
use sqlx::Row;

#[derive(Debug, Clone)]
struct Servers {
    host: String,
    imap_port: u16,
    imaps_port: u16,
    password: String,
    ca: PathBuf,
}

/// `export K=V` lines as printed by `scripts/dev-services env`.
fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn start_servers() -> Result<Servers, String> {
    let vars: BTreeMap<String, String> = if std::env::var_os("POSTROOM_TEST_IMAP_PORT").is_some() {
        std::env::vars().filter(|(k, _)| k.starts_with("POSTROOM_TEST_")).collect()
    } else {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/dev-services");
        let start = Command::new(&script)
            .arg("start")
            .output()
            .map_err(|e| format!("could not run {}: {e}", script.display()))?;
        if !start.status.success() {
            return Err(format!(
                "`scripts/dev-services start` failed ({}):\n{}{}",
                start.status,
                String::from_utf8_lossy(&start.stdout),
                String::from_utf8_lossy(&start.stderr)
            ));
        }
        let env = Command::new(&script).arg("env").output().map_err(|e| format!("scripts/dev-services env: {e}"))?;
        parse_env(&String::from_utf8_lossy(&env.stdout))
    };
    let var = |k: &str| vars.get(k).cloned().ok_or_else(|| format!("{k} missing from the dev-services environment"));
    let port = |k: &str| var(k)?.parse::<u16>().map_err(|e| format!("{k}: {e}"));
    Ok(Servers {
        host: var("POSTROOM_TEST_IMAP_HOST")?,
        imap_port: port("POSTROOM_TEST_IMAP_PORT")?,
        imaps_port: port("POSTROOM_TEST_IMAPS_PORT")?,
        password: var("POSTROOM_TEST_MAIL_PASSWORD")?,
        ca: PathBuf::from(var("POSTROOM_TEST_CA")?),
    })
}

/// The running servers, started once per test binary; `None` (after a loud SKIP) when they cannot run.
fn servers() -> Option<Servers> {
    static SERVERS: OnceLock<Result<Servers, String>> = OnceLock::new();
    match SERVERS.get_or_init(start_servers) {
        Ok(s) => Some(s.clone()),
        Err(message) => {
            if std::env::var("POSTROOM_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
                panic!("POSTROOM_REQUIRE_TOOLS=1 but {message}");
            }
            let _ = std::io::stderr().write_all(format!("\n*** SKIP imap: {message} ***\n\n").as_bytes());
            None
        }
    }
}

fn random() -> String {
    format!("{:08x}", getrandom::u32().unwrap())
}

/// A fresh user, so a fresh mailbox.
fn user(test: &str) -> String {
    format!("imap-{test}-{}@postroom.test", random())
}

fn imap_config(srv: &Servers, user: &str, tls: TlsMode) -> ImapConfig {
    let (port, mode) = match tls {
        TlsMode::Implicit => (srv.imaps_port, "implicit"),
        TlsMode::Starttls => (srv.imap_port, "starttls"),
        TlsMode::None => (srv.imap_port, "none"),
    };
    let mut c: ImapConfig = toml::from_str(&format!(
        "host = \"{}\"\nport = {port}\ntls = \"{mode}\"\nusername = \"{user}\"\npassword = \"{}\"\n",
        srv.host, srv.password
    ))
    .unwrap();
    c.ca_file = Some(srv.ca.clone());
    c.command_timeout_ms = 10_000;
    c.poll_interval_ms = 200;
    c.backoff_min_ms = 50;
    c.backoff_max_ms = 500;
    c
}

/// A workspace whose "notifications" mailbox is IMAP, plus the test app that writes providers' emails.
struct Rig {
    app: common::TestApp,
    p: Pipeline,
    mb: MailboxConfig,
}

async fn rig(cfg: ImapConfig, max_message_bytes: Option<u64>) -> Rig {
    // The loop's logs, shown for a failing test (POSTROOM_LOG=debug for more).
    let filter = tracing_subscriber::EnvFilter::try_from_env("POSTROOM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("postroom=info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    let app = common::TestApp::start().await;
    let mut config = app.pipeline.config.clone();
    let mb = MailboxConfig {
        name: "notifications".into(),
        address: cfg.username.clone(),
        kind: MailboxKind::Imap,
        path: None,
        imap: Some(cfg),
    };
    config.mailboxes.retain(|m| m.name != "notifications");
    config.mailboxes.insert(0, mb.clone());
    if let Some(max) = max_message_bytes {
        config.limits.max_message_bytes = max;
    }
    let p = Pipeline::new(
        config,
        postroom::forms::Catalog::embedded().unwrap(),
        postroom::reply::Templates::load(None).unwrap(),
        app.pipeline.store.clone(),
    );
    Rig { app, p, mb }
}

impl Rig {
    /// A correctly filled death notification (filed, Processed).
    fn good(&self, id: &str) -> Vec<u8> {
        self.app.email(id, "Death notification", vec![Attached::docx("death.docx", self.app.form("death", |_| {}))])
    }

    /// A form missing a required answer (Rejected).
    fn bad(&self, id: &str) -> Vec<u8> {
        let form = self.app.form("abuse", |v| {
            v.remove("provider_id");
        });
        self.app.email(id, "Abuse notification", vec![Attached::docx("abuse.docx", form)])
    }

    /// An email with no form (Rejected).
    fn no_form(&self, id: &str) -> Vec<u8> {
        self.app.email(id, "Hello", vec![])
    }

    /// An email claiming to come from the mailbox itself (Quarantine: a loop).
    fn looped(&self, id: &str) -> Vec<u8> {
        self.app.email_from(&self.mb.address, id, "Loop", vec![])
    }

    async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query(sql).fetch_one(self.p.store.pool()).await.unwrap().get::<i64, _>(0)
    }

    async fn settled(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM messages WHERE settled_at IS NOT NULL").await
    }

    /// Runs the mailbox loop while `watcher` runs, then shuts the loop down. Returns what `watcher` returned,
    /// and how long the loop took to stop once asked.
    async fn run_while<T>(&self, watcher: impl Future<Output = T>) -> (T, Duration) {
        let (stop, shutdown) = Shutdown::new();
        let run = imap::run_mailbox(&self.p, &self.mb, shutdown);
        let watch = async {
            let t = watcher.await;
            stop.send(true).unwrap();
            (t, Instant::now())
        };
        let (result, (t, asked)) = tokio::join!(run, watch);
        result.unwrap();
        (t, asked.elapsed())
    }

    /// Runs the mailbox loop until `n` messages are settled (false after `limit`).
    async fn run_until_settled(&self, n: i64, limit: Duration) -> bool {
        self.run_while(until(limit, async || self.settled().await == n)).await.0
    }
}

async fn session(cfg: &ImapConfig) -> ImapSession {
    imap::connect(cfg).await.unwrap_or_else(|e| panic!("connect: {e}"))
}

/// Message counts of the inbox and the three settle folders.
async fn counts(cfg: &ImapConfig) -> Vec<(String, u32)> {
    let mut s = session(cfg).await;
    let f = &cfg.folders;
    let c = s.status_counts(&[&cfg.inbox, &f.processed, &f.rejected, &f.quarantine]).await.unwrap();
    s.logout().await.unwrap();
    c
}

fn named(counts: &[(&str, u32)]) -> Vec<(String, u32)> {
    counts.iter().map(|(n, c)| (n.to_string(), *c)).collect()
}

/// Flags of every message in `folder`.
async fn flags(cfg: &ImapConfig, folder: &str) -> Vec<Vec<String>> {
    let mut s = session(cfg).await;
    s.select(folder).await.unwrap();
    let raw = s.raw().unwrap();
    let fetches: Vec<_> = raw.uid_fetch("1:*", "(UID FLAGS)").await.unwrap().try_collect().await.unwrap();
    fetches.iter().map(|f| f.flags().map(|fl| format!("{fl:?}")).collect()).collect()
}

#[tokio::test]
async fn appended_mail_is_filed_once_and_moved_to_its_folder() {
    let Some(srv) = servers() else { return };
    let cfg = imap_config(&srv, &user("filed"), TlsMode::Implicit);
    let r = rig(cfg.clone(), None).await;
    let mut admin = session(&cfg).await;
    let tag = random();
    for raw in [
        r.good(&format!("good-{tag}@x.example")),
        r.bad(&format!("bad-{tag}@x.example")),
        r.no_form(&format!("none-{tag}@x.example")),
        r.looped(&format!("self-{tag}@x.example")),
    ] {
        admin.append("INBOX", None, &raw).await.unwrap();
    }

    assert!(r.run_until_settled(4, Duration::from_secs(20)).await, "all four settled");

    assert_eq!(
        counts(&cfg).await,
        named(&[("INBOX", 0), ("Processed", 1), ("Rejected", 2), ("Quarantine", 1)]),
        "each message in the folder its outcome names"
    );
    assert_eq!(r.count("SELECT COUNT(*) FROM messages").await, 4, "one ledger row per message");
    assert_eq!(r.count("SELECT COUNT(*) FROM submissions").await, 2, "one submission per form");
    assert_eq!(r.count("SELECT COUNT(*) FROM outbox").await, 3, "a reply to each provider, none to the loop");
    let folders: Vec<(String, i64)> =
        sqlx::query("SELECT settled_folder, COUNT(*) FROM messages GROUP BY settled_folder ORDER BY settled_folder")
            .fetch_all(r.p.store.pool())
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
    assert_eq!(folders, [("Processed".into(), 1), ("Quarantine".into(), 1), ("Rejected".into(), 2)]);
    let keys = r.count("SELECT COUNT(*) FROM messages WHERE source_key LIKE '%:%'").await;
    assert_eq!(keys, 4, "keys are UIDVALIDITY:UID");
    // BODY.PEEK[]: filing never marked anything read.
    for folder in ["Processed", "Rejected", "Quarantine"] {
        for f in flags(&cfg, folder).await {
            assert!(!f.iter().any(|x| x == "Seen"), "{folder}: {f:?}");
        }
    }
}

#[tokio::test]
async fn a_settled_message_is_gone_from_the_inbox_for_a_fresh_session() {
    let Some(srv) = servers() else { return };
    let cfg = imap_config(&srv, &user("fresh"), TlsMode::None);
    let r = rig(cfg.clone(), None).await;
    let mut s = session(&cfg).await;
    s.ensure_folders(&cfg.folders).await.unwrap();
    // Twice is fine: nothing to create the second time.
    s.ensure_folders(&cfg.folders).await.unwrap();
    s.append("INBOX", None, &r.good(&format!("fresh-{}@x.example", random()))).await.unwrap();
    let validity = s.select_inbox().await.unwrap();
    let pending = s.pending(1 << 20).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert!(pending[0].size > 1000 && !pending[0].oversize, "{pending:?}");
    let fetched = s.fetch(&[pending[0].uid]).await.unwrap();
    assert_eq!(fetched.len(), 1);
    assert!(fetched[0].internal_date.is_some());
    let key = imap::source_key(validity, fetched[0].uid);
    let outcome = r.p.process(&r.mb, &key, &fetched[0].raw, chrono::Utc::now()).await.unwrap();
    assert_eq!(outcome.outcome, "accepted", "{outcome:?}");
    // A UID that is already gone (another instance settled it) is no error.
    s.settle(&[(fetched[0].uid, "Processed".into()), (999_999, "Processed".into())]).await.unwrap();
    r.p.store.mark_settled(outcome.ledger_id, "Processed").await.unwrap();
    s.logout().await.unwrap();

    let mut fresh = session(&cfg).await;
    assert_eq!(fresh.select_inbox().await.unwrap(), validity);
    assert!(fresh.pending(1 << 20).await.unwrap().is_empty(), "INBOX is empty for a fresh session");
    assert_eq!(counts(&cfg).await[1], ("Processed".into(), 1));
}

#[tokio::test]
async fn mail_a_person_has_read_is_still_processed() {
    let Some(srv) = servers() else { return };
    let cfg = imap_config(&srv, &user("seen"), TlsMode::Starttls);
    let r = rig(cfg.clone(), None).await;
    let mut admin = session(&cfg).await;
    admin.append("INBOX", Some("(\\Seen)"), &r.good(&format!("seen-{}@x.example", random()))).await.unwrap();
    admin.append("INBOX", None, &r.no_form(&format!("unseen-{}@x.example", random()))).await.unwrap();
    assert!(r.run_until_settled(2, Duration::from_secs(20)).await, "the read message was processed too");
    assert_eq!(counts(&cfg).await, named(&[("INBOX", 0), ("Processed", 1), ("Rejected", 1), ("Quarantine", 0)]));
    let processed = flags(&cfg, "Processed").await;
    assert!(
        processed.len() == 1 && processed[0].contains(&"Seen".to_string()),
        "the person's flag is kept: {processed:?}"
    );
}

#[tokio::test]
async fn implicit_tls_starttls_and_plain_all_connect() {
    let Some(srv) = servers() else { return };
    let u = user("tls");
    for tls in [TlsMode::Implicit, TlsMode::Starttls, TlsMode::None] {
        let cfg = imap_config(&srv, &u, tls);
        let started = Instant::now();
        let mut s = session(&cfg).await;
        let caps = s.capabilities();
        assert!(caps.idle && caps.mv && caps.uidplus, "{tls:?}: {caps:?} (MOVE and UIDPLUS are listed after login)");
        assert!(s.select_inbox().await.unwrap() > 0);
        s.logout().await.unwrap();
        assert!(!s.is_connected());
        eprintln!("{tls:?}: connect + login + select + logout in {:?}", started.elapsed());
    }
    // A private certificate is refused without `ca_file`, and the error says where to look.
    let mut cfg = imap_config(&srv, &u, TlsMode::Implicit);
    cfg.ca_file = None;
    let err = imap::connect(&cfg).await.unwrap_err();
    assert!(matches!(err, ImapError::Tls { .. }), "{err}");
    assert!(err.to_string().contains("ca_file"), "{err}");
    // Implicit TLS on the plain port: a TLS error or a dead handshake, never a hang.
    let mut cfg = imap_config(&srv, &u, TlsMode::Implicit);
    cfg.port = srv.imap_port;
    cfg.command_timeout_ms = 2000;
    let err = imap::connect(&cfg).await.unwrap_err();
    assert!(err.is_connection_lost(), "{err}");
    // Nothing listening.
    let mut cfg = imap_config(&srv, &u, TlsMode::None);
    cfg.port = 1;
    let err = imap::connect(&cfg).await.unwrap_err();
    assert!(matches!(err, ImapError::Connect { .. }) && err.to_string().contains("port"), "{err}");
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_error_that_says_what_to_check() {
    let Some(srv) = servers() else { return };
    let u = user("auth");
    let mut cfg = imap_config(&srv, &u, TlsMode::Implicit);
    cfg.password = Some("wrong-horse-battery".into());
    let err = imap::connect(&cfg).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ImapError::Auth { .. }), "{text}");
    assert!(text.contains(&u) && text.contains("password_file") && !text.contains("wrong-horse"), "{text}");

    // XOAUTH2 with a token nobody issued (Dovecot's oauth2 passdb refuses it, or fails temporarily when no
    // introspection endpoint runs): still an Auth error with the things to check, no token.
    let mut cfg = imap_config(&srv, &u, TlsMode::Implicit);
    cfg.auth = postroom::config::AuthMethod::Xoauth2;
    cfg.oauth2 =
        Some(postroom::config::OAuth2Config { token_command: Some("echo tok-abc123".into()), ..Default::default() });
    let err = imap::connect(&cfg).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ImapError::Auth { .. }), "{text}");
    assert!(text.contains("XOAUTH2") && text.contains("token") && !text.contains("tok-abc123"), "{text}");

    // The loop keeps trying (with backoff) and still stops promptly when asked, even mid-login (Dovecot
    // slows every login from an IP after failures; the same user and password do not raise that penalty).
    let mut cfg = imap_config(&srv, &u, TlsMode::Implicit);
    cfg.password = Some("wrong-horse-battery".into());
    let r = rig(cfg, None).await;
    let started = Instant::now();
    let ((), stop) = r.run_while(tokio::time::sleep(Duration::from_millis(700))).await;
    assert!(started.elapsed() < Duration::from_secs(5) && stop < Duration::from_secs(1), "{stop:?}");
}

#[tokio::test]
async fn idle_picks_up_new_mail_within_two_seconds() {
    let Some(srv) = servers() else { return };
    let mut cfg = imap_config(&srv, &user("idle"), TlsMode::Implicit);
    // Only IDLE can explain a pickup faster than this.
    cfg.poll_interval_ms = 60_000;
    let r = rig(cfg.clone(), None).await;
    let first = r.good(&format!("idle-1-{}@x.example", random()));
    let second = r.no_form(&format!("idle-2-{}@x.example", random()));
    session(&cfg).await.append("INBOX", None, &first).await.unwrap();

    let ((reached, latency), stop) = r
        .run_while(async {
            assert!(until(Duration::from_secs(20), async || r.settled().await == 1).await, "first message");
            // The loop has drained the first message and is now in IDLE.
            tokio::time::sleep(Duration::from_millis(500)).await;
            session(&cfg).await.append("INBOX", None, &second).await.unwrap();
            let appended = Instant::now();
            let reached = until(Duration::from_secs(10), async || r.settled().await == 2).await;
            (reached, appended.elapsed())
        })
        .await;
    assert!(reached, "the second message was picked up");
    eprintln!("IDLE: appended → filed and settled in {latency:?}; loop stopped {stop:?} after shutdown");
    assert!(latency < Duration::from_secs(2), "IDLE wake took {latency:?}");
    assert!(stop < Duration::from_secs(1), "shutdown interrupts IDLE: took {stop:?}");
    assert_eq!(counts(&cfg).await, named(&[("INBOX", 0), ("Processed", 1), ("Rejected", 1), ("Quarantine", 0)]));
}

#[tokio::test]
async fn a_restart_mid_batch_files_nothing_twice() {
    let Some(srv) = servers() else { return };
    let cfg = imap_config(&srv, &user("restart"), TlsMode::Implicit);
    let r = rig(cfg.clone(), None).await;
    let tag = random();
    let mut s = session(&cfg).await;
    for raw in [
        r.good(&format!("r1-{tag}@x.example")),
        r.bad(&format!("r2-{tag}@x.example")),
        r.no_form(&format!("r3-{tag}@x.example")),
    ] {
        s.append("INBOX", None, &raw).await.unwrap();
    }
    // The first instance files two of the three, then dies before settling anything.
    s.ensure_folders(&cfg.folders).await.unwrap();
    let validity = s.select_inbox().await.unwrap();
    let uids: Vec<u32> = s.pending(1 << 20).await.unwrap().iter().map(|m| m.uid).collect();
    let fetched = s.fetch(&uids).await.unwrap();
    assert_eq!(fetched.len(), 3);
    for m in &fetched[..2] {
        r.p.process(&r.mb, &imap::source_key(validity, m.uid), &m.raw, chrono::Utc::now()).await.unwrap();
    }
    drop(s);
    assert_eq!(r.count("SELECT COUNT(*) FROM outbox").await, 2);

    assert!(r.run_until_settled(3, Duration::from_secs(20)).await, "all three settled after the restart");
    assert_eq!(r.count("SELECT COUNT(*) FROM messages").await, 3, "one ledger row per message");
    let doubled = r
        .count("SELECT COUNT(*) FROM (SELECT header_message_id FROM messages GROUP BY header_message_id HAVING COUNT(*) > 1) t")
        .await;
    assert_eq!(doubled, 0, "ledger rows per Message-ID == 1");
    assert_eq!(r.count("SELECT COUNT(*) FROM outbox").await, 3, "one reply per email");
    assert_eq!(r.count("SELECT COUNT(*) FROM submissions").await, 2, "one submission per form");
    assert_eq!(counts(&cfg).await, named(&[("INBOX", 0), ("Processed", 1), ("Rejected", 2), ("Quarantine", 0)]));
}

#[tokio::test]
async fn a_uidvalidity_reset_files_nothing_twice() {
    let Some(srv) = servers() else { return };
    let mut cfg = imap_config(&srv, &user("uidvalidity"), TlsMode::Implicit);
    cfg.inbox = "Intake".into();
    let r = rig(cfg.clone(), None).await;
    let tag = random();
    let (m1, m2) = (r.good(&format!("v1-{tag}@x.example")), r.no_form(&format!("v2-{tag}@x.example")));
    let mut admin = session(&cfg).await;
    let mut after = 0;
    admin.create_folder("Intake").await.unwrap();
    admin.append("Intake", None, &m1).await.unwrap();
    let before = admin.select("Intake").await.unwrap();
    admin.select("INBOX").await.unwrap();

    // One loop throughout: it files m1, then the folder is deleted and recreated under it (as a restore from
    // backup does) with m1 back in it and m2 new; the loop reconnects and sees the new UIDVALIDITY.
    let (reached, _) = r
        .run_while(async {
            assert!(until(Duration::from_secs(20), async || r.settled().await == 1).await, "m1 filed");
            admin.delete_folder("Intake").await.unwrap();
            // Dovecot may derive UIDVALIDITY from the clock: make sure it moves on.
            tokio::time::sleep(Duration::from_millis(1100)).await;
            admin.create_folder("Intake").await.unwrap();
            admin.append("Intake", None, &m1).await.unwrap();
            admin.append("Intake", None, &m2).await.unwrap();
            after = admin.select("Intake").await.unwrap();
            admin.select("INBOX").await.unwrap();
            until(Duration::from_secs(20), async || r.settled().await == 3).await
        })
        .await;
    assert!(reached, "both messages settled after the reset");
    assert_ne!(before, after, "the folder's UIDVALIDITY changed");
    let keys: Vec<String> = sqlx::query("SELECT source_key FROM messages ORDER BY id")
        .fetch_all(r.p.store.pool())
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(keys, [format!("{before}:1"), format!("{after}:1"), format!("{after}:2")], "new keys after the reset");
    let m1_rows: Vec<(String, i64)> = sqlx::query(
        "SELECT m.status, (SELECT COUNT(*) FROM outbox o WHERE o.message_id = m.id) FROM messages m \
         WHERE m.header_message_id LIKE $1 ORDER BY m.id",
    )
    .bind(format!("%v1-{tag}%"))
    .fetch_all(r.p.store.pool())
    .await
    .unwrap()
    .iter()
    .map(|row| (row.get(0), row.get(1)))
    .collect();
    assert_eq!(m1_rows.len(), 2, "{m1_rows:?}");
    assert_ne!(m1_rows[0].0, "duplicate", "{m1_rows:?}");
    assert_eq!(m1_rows[1], ("duplicate".to_string(), 0), "re-seen, recognised, not answered again: {m1_rows:?}");
    assert_eq!(r.count("SELECT COUNT(*) FROM submissions").await, 1, "m1's form filed once");
    assert_eq!(r.count("SELECT COUNT(*) FROM outbox").await, 2, "one reply each to m1 and m2");
    assert_eq!(counts(&cfg).await, named(&[("Intake", 0), ("Processed", 2), ("Rejected", 1), ("Quarantine", 0)]));
}

#[tokio::test]
async fn oversize_mail_is_quarantined_once_without_being_fetched() {
    let Some(srv) = servers() else { return };
    let cfg = imap_config(&srv, &user("oversize"), TlsMode::Implicit);
    let r = rig(cfg.clone(), Some(50_000)).await;
    let big = r.app.email(
        &format!("big-{}@x.example", random()),
        "Huge",
        vec![Attached::docx("huge.docx", vec![7u8; 80_000])],
    );
    let mut admin = session(&cfg).await;
    admin.append("INBOX", None, &big).await.unwrap();
    admin.append("INBOX", None, &r.no_form(&format!("small-{}@x.example", random()))).await.unwrap();

    assert!(r.run_until_settled(2, Duration::from_secs(20)).await);
    let row =
        sqlx::query("SELECT status, reason, size_bytes, (SELECT LENGTH(raw) FROM message_raw WHERE message_id = messages.id) FROM messages WHERE reason = 'size:oversize'")
            .fetch_one(r.p.store.pool())
            .await
            .unwrap();
    assert_eq!(row.get::<String, _>(0), "quarantined");
    assert!(row.get::<i64, _>(2) > 100_000, "the server's size is recorded");
    assert_eq!(row.get::<i64, _>(3), 0, "never fetched");
    assert_eq!(r.count("SELECT COUNT(*) FROM outbox").await, 1, "only the small one is answered");
    assert_eq!(counts(&cfg).await, named(&[("INBOX", 0), ("Processed", 0), ("Rejected", 1), ("Quarantine", 1)]));
    // A second pass finds nothing to do: quarantined once, not retried.
    let (_stop, shutdown) = Shutdown::new();
    assert_eq!(imap::drain_once(&r.p, &r.mb, &shutdown).await.unwrap(), 0);
    assert_eq!(r.count("SELECT COUNT(*) FROM messages").await, 2);
}

#[tokio::test]
async fn without_move_settling_copies_flags_and_expunges_only_its_own() {
    let Some(srv) = servers() else { return };
    let cfg = imap_config(&srv, &user("nomove"), TlsMode::None);
    let r = rig(cfg.clone(), None).await;
    let mut s = session(&cfg).await;
    s.ensure_folders(&cfg.folders).await.unwrap();
    for i in 0..4 {
        s.append("INBOX", None, &r.no_form(&format!("nm{i}-{}@x.example", random()))).await.unwrap();
    }
    s.select_inbox().await.unwrap();
    let uids: Vec<u32> = s.pending(1 << 20).await.unwrap().iter().map(|m| m.uid).collect();
    assert_eq!(uids.len(), 4);

    // No MOVE: COPY, \Deleted, UID EXPUNGE of exactly those UIDs.
    s.limit_capabilities(true, false, true);
    s.settle(&[(uids[0], "Processed".into())]).await.unwrap();
    assert_eq!(s.pending(1 << 20).await.unwrap().len(), 3);
    assert_eq!(counts(&cfg).await[..2], named(&[("INBOX", 3), ("Processed", 1)]));

    // Neither MOVE nor UIDPLUS, and someone else has flagged a message \Deleted: ours waits, flagged, out of
    // the pending list, rather than a plain EXPUNGE taking theirs too.
    s.limit_capabilities(true, false, false);
    let raw = s.raw().unwrap();
    let _: Vec<_> =
        raw.uid_store(uids[3].to_string(), "+FLAGS.SILENT (\\Deleted)").await.unwrap().try_collect().await.unwrap();
    s.settle(&[(uids[1], "Rejected".into())]).await.unwrap();
    let pending: Vec<u32> = s.pending(1 << 20).await.unwrap().iter().map(|m| m.uid).collect();
    assert_eq!(pending, [uids[2], uids[3]], "ours is out of the queue, theirs stays");
    assert_eq!(counts(&cfg).await[..3], named(&[("INBOX", 3), ("Processed", 1), ("Rejected", 1)]));
    // Once theirs is un-flagged, ours is expunged.
    let raw = s.raw().unwrap();
    let _: Vec<_> =
        raw.uid_store(uids[3].to_string(), "-FLAGS.SILENT (\\Deleted)").await.unwrap().try_collect().await.unwrap();
    let pending: Vec<u32> = s.pending(1 << 20).await.unwrap().iter().map(|m| m.uid).collect();
    assert_eq!(pending, [uids[2], uids[3]]);
    assert_eq!(counts(&cfg).await[..3], named(&[("INBOX", 2), ("Processed", 1), ("Rejected", 1)]));
    // And with nobody else's \Deleted around, it goes straight away.
    s.settle(&[(uids[2], "Rejected".into())]).await.unwrap();
    assert_eq!(counts(&cfg).await[..3], named(&[("INBOX", 1), ("Processed", 1), ("Rejected", 2)]));
}

#[tokio::test]
async fn a_deleted_settle_folder_is_created_again() {
    let Some(srv) = servers() else { return };
    let cfg = imap_config(&srv, &user("trycreate"), TlsMode::None);
    let r = rig(cfg.clone(), None).await;
    let mut s = session(&cfg).await;
    s.ensure_folders(&cfg.folders).await.unwrap();
    s.append("INBOX", None, &r.no_form(&format!("tc-{}@x.example", random()))).await.unwrap();
    s.delete_folder("Rejected").await.unwrap();
    s.select_inbox().await.unwrap();
    let uid = s.pending(1 << 20).await.unwrap()[0].uid;
    s.settle(&[(uid, "Rejected".into())]).await.unwrap();
    assert_eq!(counts(&cfg).await[..3], named(&[("INBOX", 0), ("Processed", 0), ("Rejected", 1)]));
}

#[tokio::test]
async fn the_mailbox_loop_can_run_in_a_spawned_task() {
    fn assert_send<T: Send>(_: &T) {}
    let Some(srv) = servers() else { return };
    let cfg = imap_config(&srv, &user("send"), TlsMode::None);
    let r = rig(cfg.clone(), None).await;
    let (_stop, shutdown) = Shutdown::new();
    let fut = imap::run_mailbox(&r.p, &r.mb, shutdown);
    assert_send(&fut);
    drop(fut);
    let s = session(&cfg).await;
    assert_send(&s);
}

#[tokio::test]
async fn one_pass_empties_the_inbox_in_batches_and_returns() {
    let Some(srv) = servers() else { return };
    let mut cfg = imap_config(&srv, &user("once"), TlsMode::Implicit);
    cfg.fetch_batch = 2;
    let r = rig(cfg.clone(), None).await;
    let mut admin = session(&cfg).await;
    for i in 0..5 {
        admin.append("INBOX", None, &r.no_form(&format!("once{i}-{}@x.example", random()))).await.unwrap();
    }
    let (_stop, shutdown) = Shutdown::new();
    let started = Instant::now();
    assert_eq!(imap::drain_once(&r.p, &r.mb, &shutdown).await.unwrap(), 5);
    eprintln!("one pass over 5 messages in batches of 2: {:?}", started.elapsed());
    assert_eq!(r.settled().await, 5);
    assert_eq!(counts(&cfg).await[..3], named(&[("INBOX", 0), ("Processed", 0), ("Rejected", 5)]));
}

/// Fetches of 3 filed in chunks of 2, each fetch's first chunk read and recorded while the fetch before it
/// is filed: every message must be filed as itself, whichever fetch and chunk it came in.
#[tokio::test]
async fn messages_read_ahead_of_their_filing_are_filed_as_themselves() {
    let Some(srv) = servers() else { return };
    let mut cfg = imap_config(&srv, &user("ahead"), TlsMode::None);
    cfg.fetch_batch = 3;
    let mut r = rig(cfg.clone(), None).await;
    r.p.config.daemon.batch_size = 2;
    let mut admin = session(&cfg).await;
    let pattern = [true, false, false, true, true, false, true, false, true, true, false];
    let mut expected = Vec::new();
    for (i, good) in pattern.iter().enumerate() {
        let id = format!("ahead{i}-{}@x.example", random());
        let raw = match good {
            // Each form its own (the same bytes twice would be a duplicate).
            true => {
                let time = postroom::forms::Value::Text(format!("08:{i:02}"));
                let form = r.app.form("death", |v| drop(v.insert("event_time".into(), time)));
                r.app.email(&id, "Death notification", vec![Attached::docx("death.docx", form)])
            }
            false => r.no_form(&id),
        };
        admin.append("INBOX", None, &raw).await.unwrap();
        expected.push((id, if *good { "accepted" } else { "rejected" }));
    }
    let (_stop, shutdown) = Shutdown::new();
    assert_eq!(imap::drain_once(&r.p, &r.mb, &shutdown).await.unwrap(), pattern.len());
    let rows = sqlx::query("SELECT source_key, header_message_id, status FROM messages ORDER BY id")
        .fetch_all(r.p.store.pool())
        .await
        .unwrap();
    // Appended to a new mailbox, the i-th message has UID i + 1.
    let mut filed: Vec<(u32, String, String)> = rows
        .iter()
        .map(|row| {
            let key: String = row.get("source_key");
            let uid = key.rsplit(':').next().unwrap().parse().unwrap();
            (uid, row.get("header_message_id"), row.get("status"))
        })
        .collect();
    filed.sort();
    let want: Vec<(u32, String, String)> =
        expected.iter().enumerate().map(|(i, (id, status))| (i as u32 + 1, id.clone(), status.to_string())).collect();
    assert_eq!(filed, want);
    assert_eq!(counts(&cfg).await[..3], named(&[("INBOX", 0), ("Processed", 6), ("Rejected", 5)]));
}

#[tokio::test]
async fn a_message_the_server_cannot_hand_over_is_quarantined_after_three_tries() {
    let Some(srv) = servers() else { return };
    let local = format!("imap-unreadable-{}", random());
    let cfg = imap_config(&srv, &format!("{local}@postroom.test"), TlsMode::None);
    let r = rig(cfg.clone(), None).await;
    let broken_id = format!("broken-{}@x.example", random());
    let mut admin = session(&cfg).await;
    admin.append("INBOX", None, &r.no_form(&broken_id)).await.unwrap();
    admin.append("INBOX", None, &r.no_form(&format!("fine-{}@x.example", random()))).await.unwrap();
    // Make one message's file unreadable to Dovecot (it runs as vmail): its size is still listed (Dovecot
    // keeps it in the file name), but fetching it fails.
    let Some(run_dir) = srv.ca.parent() else { return };
    let maildir = run_dir.join("mail/postroom.test").join(&local);
    let file = ["new", "cur"]
        .iter()
        .filter_map(|d| std::fs::read_dir(maildir.join(d)).ok())
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| std::fs::read(p).is_ok_and(|b| String::from_utf8_lossy(&b).contains(&broken_id)));
    let Some(file) = file else {
        let _ = std::io::stderr().write_all(
            format!("\n*** SKIP unreadable: no message file under {} ***\n\n", maildir.display()).as_bytes(),
        );
        return;
    };
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)) {
        let _ = std::io::stderr()
            .write_all(format!("\n*** SKIP unreadable: chmod {}: {e} ***\n\n", file.display()).as_bytes());
        return;
    }

    assert!(r.run_until_settled(2, Duration::from_secs(20)).await, "both settled, the readable one first");
    let row =
        sqlx::query("SELECT status, reason, (SELECT LENGTH(raw) FROM message_raw WHERE message_id = messages.id), settled_folder FROM messages WHERE reason = 'fetch:failed'")
            .fetch_one(r.p.store.pool())
            .await
            .unwrap();
    assert_eq!(row.get::<String, _>(0), "quarantined");
    assert_eq!(row.get::<i64, _>(2), 0, "recorded without its bytes");
    assert_eq!(row.get::<String, _>(3), "Quarantine");
    assert_eq!(r.count("SELECT COUNT(*) FROM messages").await, 2, "quarantined once");
    assert_eq!(counts(&cfg).await, named(&[("INBOX", 0), ("Processed", 0), ("Rejected", 1), ("Quarantine", 1)]));
}
