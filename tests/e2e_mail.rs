//! End to end over real servers: a provider's email goes by SMTP (Postfix) into the gateway's IMAP
//! mailbox (Dovecot); the real `postroom run` picks it up, files it, answers by SMTP; the reply arrives in
//! the provider's own mailbox, read back over IMAP; the original sits in the right folder. A form forwarded
//! as message/rfc822 is read; a bounce of a reply comes back, is never answered, and marks the reply.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::mail::{Imap, Readable, Servers, send, servers, unique_address};
use postroom::samples::{self, Attached};

const BIN: &str = env!("CARGO_BIN_EXE_postroom");

struct Gateway {
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    address: String,
    provider: String,
    child: Option<Child>,
}

impl Gateway {
    /// A workspace whose notifications mailbox is a fresh Dovecot account, replies leaving by Postfix, and a
    /// registry in which `provider` is the registered manager of Oakfield House.
    fn new(servers: &Servers) -> Gateway {
        let second = "[[mailboxes]]\nname = \"mental_health\"\naddress = \"mh@postroom.test\"\nkind = \"maildir\"\npath = \"var/mail/mental_health\"\n";
        Gateway::with_second_mailbox(servers, second)
    }

    fn with_second_mailbox(servers: &Servers, second_mailbox: &str) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let address = unique_address("gateway");
        let provider = unique_address("provider");
        let database = match std::env::var("POSTROOM_TEST_BACKEND").as_deref() {
            Ok("postgres") => {
                let rt = tokio::runtime::Runtime::new().unwrap();
                rt.block_on(common::test_database_url(dir.path()))
            }
            _ => format!("sqlite://{}/var/postroom.db", dir.path().display()),
        };
        let config = format!(
            r#"[database]
url = "{database}"

[[mailboxes]]
name = "notifications"
address = "{address}"
kind = "imap"
[mailboxes.imap]
host = "{host}"
port = {imap_port}
tls = "starttls"
username = "{address}"
password = "{password}"
ca_file = "{ca}"
poll_interval_ms = 60000
command_timeout_ms = 10000
backoff_min_ms = 200
backoff_max_ms = 2000

{second_mailbox}

[smtp]
host = "{host}"
port = {smtp_port}
tls = "none"
retry_base_ms = 200
timeout_secs = 1

[daemon]
poll_interval_ms = 200
# Short leases so a restart after a kill takes over quickly.
mailbox_lease_secs = 1

[outbox]
claim_lease_secs = 2
"#,
            host = servers.host,
            imap_port = servers.imap_port,
            smtp_port = servers.smtp_port,
            password = servers.password,
            ca = servers.ca,
        );
        let path = dir.path().join("postroom.toml");
        std::fs::write(&path, config).unwrap();
        let people = dir.path().join("people.csv");
        std::fs::write(
            &people,
            format!(
                "person_id,name,role,email,phone,provider_id,location_id\n\
                 P1,Jane Smith,registered_manager,{provider},0113 496 0000,1-101641531,1-1000210669\n"
            ),
        )
        .unwrap();
        let directory = dir.path().join("directory.csv");
        std::fs::write(&directory, common::DIRECTORY_CSV).unwrap();
        let g = Gateway { dir, config: path, address, provider, child: None };
        let out = g
            .cmd(&["registry", "import", "--locations"])
            .arg(&directory)
            .arg("--people")
            .arg(&people)
            .output()
            .unwrap();
        assert!(out.status.success(), "registry import: {}", String::from_utf8_lossy(&out.stderr));
        g
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config").arg(&self.config).arg("--workspace").arg(self.dir.path()).args(args);
        c.env("POSTROOM_LOG", "info");
        c
    }

    fn start(&mut self) {
        let child = self.cmd(&["run"]).stderr(Stdio::piped()).spawn().unwrap();
        self.child = Some(child);
    }

    /// Ctrl-C, and the daemon's log.
    fn stop(&mut self) -> String {
        let Some(child) = self.child.take() else { return String::new() };
        let _ = Command::new("kill").arg("-INT").arg(child.id().to_string()).status();
        let out = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "daemon did not stop cleanly:\n{log}");
        log
    }

    fn notifier(&self) -> samples::Notifier {
        samples::Notifier { email: self.provider.clone(), ..common::notifier() }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn filled_death_form(who: &samples::Notifier) -> Vec<u8> {
    let catalog = postroom::forms::Catalog::embedded().unwrap();
    let def = catalog.current("death").unwrap();
    let today = chrono::Utc::now().with_timezone(&chrono_tz::Europe::London).date_naive();
    postroom::forms::render::render(def, Some(&samples::filled(def, who, today))).unwrap()
}

/// Tests here that stop a server, or share one Dovecot, take turns.
static SERVERS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    SERVERS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Ports and run dir of a private server pair, so a test that stops its servers disturbs nobody else.
const PRIVATE: [(&str, &str); 5] = [
    ("POSTROOM_SERVICES_DIR", "/tmp/postroom-dev-services-restart-test"),
    ("POSTROOM_SERVICES_IMAP_PORT", "31144"),
    ("POSTROOM_SERVICES_IMAPS_PORT", "31994"),
    ("POSTROOM_SERVICES_SMTP_PORT", "32526"),
    ("POSTROOM_SERVICES_SMTPS_PORT", "32466"),
];

fn private_services(args: &[&str]) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/dev-services");
    let out = Command::new(script).args(args).envs(PRIVATE).output().unwrap();
    assert!(out.status.success(), "dev-services {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Dovecot + Postfix pair of this test's own.
fn private_servers() -> Servers {
    private_services(&["start"]);
    let env: std::collections::BTreeMap<String, String> = private_services(&["env"])
        .lines()
        .filter_map(|l| l.trim().strip_prefix("export ")?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect();
    let get = |k: &str| env.get(k).cloned().unwrap_or_else(|| panic!("{k} missing from dev-services env"));
    Servers {
        host: get("POSTROOM_TEST_IMAP_HOST"),
        imap_port: get("POSTROOM_TEST_IMAP_PORT").parse().unwrap(),
        imaps_port: get("POSTROOM_TEST_IMAPS_PORT").parse().unwrap(),
        smtp_port: get("POSTROOM_TEST_SMTP_PORT").parse().unwrap(),
        smtps_port: get("POSTROOM_TEST_SMTPS_PORT").parse().unwrap(),
        password: get("POSTROOM_TEST_MAIL_PASSWORD"),
        ca: get("POSTROOM_TEST_CA"),
    }
}

/// A no-form email from `from` to the gateway, sent through Postfix.
fn hello(servers: &Servers, g: &Gateway, from: &str, id: &str) {
    send(
        servers,
        from,
        &g.address,
        &format!("From: {from}\r\nTo: {a}\r\nSubject: hello\r\nMessage-ID: <{id}>\r\n\r\nNo form.\r\n", a = g.address),
    );
}

/// The gateway's database, as its own config names it.
async fn store_of(g: &Gateway) -> postroom::store::Store {
    let mut config = postroom::config::Config::load(Some(&g.config)).unwrap();
    config.resolve_paths(Some(g.dir.path()));
    postroom::store::Store::connect(&config.database.url, 1).await.unwrap()
}

async fn ledger(g: &Gateway) -> (i64, i64, i64) {
    let store = store_of(g).await;
    let one = |sql: &'static str| {
        let store = store.clone();
        async move { sqlx::Row::get::<i64, _>(&sqlx::query(sql).fetch_one(store.pool()).await.unwrap(), 0) }
    };
    (
        one("SELECT COUNT(*) FROM messages").await,
        one("SELECT COUNT(DISTINCT header_message_id) FROM messages").await,
        one("SELECT COUNT(*) FROM outbox").await,
    )
}

#[test]
fn the_daemon_killed_between_filing_and_moving_a_batch_files_nothing_twice_when_restarted() {
    let Some(servers) = servers() else { return };
    let _turn = one_at_a_time();
    let g = Gateway::new(&servers);
    let sender = unique_address("restart");
    for i in 0..3 {
        hello(&servers, &g, &sender, &format!("restart-{i}@provider.example"));
    }
    // Wait until all three sit in the gateway's INBOX, then run one pass that dies before the MOVE.
    assert_eq!(Imap::wait_for(&servers, &g.address, "INBOX", 3, Duration::from_secs(10)).len(), 3);
    let crashed = g.cmd(&["run", "--once"]).env("POSTROOM_FAILPOINT", "imap_before_settle").output().unwrap();
    assert!(!crashed.status.success(), "the failpoint did not fire");
    assert_eq!(Imap::wait_for(&servers, &g.address, "INBOX", 3, Duration::from_millis(100)).len(), 3, "nothing moved");
    // The dead process's lease on the mailbox runs out; then the restart takes over.
    std::thread::sleep(Duration::from_millis(1100));
    let restarted = g.cmd(&["run", "--once"]).output().unwrap();
    assert!(restarted.status.success(), "{}", String::from_utf8_lossy(&restarted.stderr));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (rows, distinct, replies) = rt.block_on(ledger(&g));
    assert_eq!((rows, distinct, replies), (3, 3, 3), "one ledger row and one reply per email");
    assert_eq!(Imap::wait_for(&servers, &sender, "INBOX", 3, Duration::from_secs(10)).len(), 3);
    assert!(Imap::wait_for(&servers, &g.address, "INBOX", 1, Duration::from_millis(100)).is_empty());
}

#[test]
fn an_imap_server_restart_while_the_daemon_runs_loses_and_doubles_nothing() {
    // IMAP on a private Dovecot (this test stops it); replies leave through the shared Postfix, because the
    // test Postfix asks its own Dovecot about SMTP AUTH and stalls while that Dovecot is down.
    let Some(shared) = servers() else { return };
    let private = private_servers();
    let mut g = Gateway::new(&private);
    let text = std::fs::read_to_string(&g.config).unwrap();
    let text = text.replace(&format!("port = {}\n", private.smtp_port), &format!("port = {}\n", shared.smtp_port));
    std::fs::write(&g.config, text).unwrap();
    let sender = unique_address("imap-restart");
    // Mail is put straight into the gateway's Maildir, as the delivery agent would.
    let gateway = g.address.clone();
    let (local, domain) = gateway.split_once('@').unwrap();
    let maildir = std::path::Path::new(PRIVATE[0].1).join("mail").join(domain).join(local);
    let deliver = |id: &str| {
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        let mail =
            format!("From: {sender}\r\nTo: {gateway}\r\nSubject: hello\r\nMessage-ID: <{id}>\r\n\r\nNo form.\r\n");
        let tmp = maildir.join("tmp").join(id);
        std::fs::write(&tmp, mail).unwrap();
        std::fs::rename(&tmp, maildir.join("new").join(format!("{}.M1P{}.{id}", std::process::id(), id.len())))
            .unwrap();
        let _ = Command::new("chown").arg("-R").arg("vmail:vmail").arg(&maildir).status();
    };
    deliver("before");
    g.start();
    assert_eq!(Imap::wait_for(&shared, &sender, "INBOX", 1, Duration::from_secs(20)).len(), 1);
    private_services(&["stop", "imap"]);
    deliver("during");
    private_services(&["start"]);
    deliver("after");
    let replies = Imap::wait_for(&shared, &sender, "INBOX", 3, Duration::from_secs(30));
    let log = g.stop();
    assert_eq!(replies.len(), 3, "one reply per email after the restart; log:\n{log}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(rt.block_on(ledger(&g)), (3, 3, 3));
    private_services(&["stop"]);
}

#[test]
fn a_providers_email_is_filed_answered_and_settled_through_real_imap_and_smtp() {
    let Some(servers) = servers() else { return };
    let _turn = one_at_a_time();
    let mut g = Gateway::new(&servers);
    g.start();

    // 1. A form attached directly.
    let raw = samples::email(
        &g.provider,
        &g.address,
        "Death notification",
        "e2e-1@provider.example",
        vec![Attached::docx("death.docx", filled_death_form(&g.notifier()))],
    )
    .unwrap();
    send(&servers, &g.provider, &g.address, &String::from_utf8_lossy(&raw));

    // 2. The same kind of form forwarded inside another email (message/rfc822).
    let inner = samples::email(
        &g.provider,
        "colleague@provider.example",
        "Death notification",
        "e2e-inner@provider.example",
        vec![Attached::docx("death-forwarded.docx", {
            let mut who = g.notifier();
            who.location_name = "Oakfield House (forwarded)".into();
            let catalog = postroom::forms::Catalog::embedded().unwrap();
            let def = catalog.current("death").unwrap();
            let today = chrono::Utc::now().with_timezone(&chrono_tz::Europe::London).date_naive();
            let mut values = samples::filled(def, &who, today);
            values.insert("event_time".into(), postroom::forms::Value::Text("08:05".into()));
            postroom::forms::render::render(def, Some(&values)).unwrap()
        })],
    )
    .unwrap();
    let forwarded = format!(
        "From: {p}\r\nTo: {a}\r\nSubject: Fwd: Death notification\r\nMessage-ID: <e2e-2@provider.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"FWD\"\r\n\r\n\
         --FWD\r\nContent-Type: text/plain\r\n\r\nForwarding the notification below.\r\n\
         --FWD\r\nContent-Type: message/rfc822\r\n\r\n{inner}\r\n--FWD--\r\n",
        p = g.provider,
        a = g.address,
        inner = String::from_utf8_lossy(&inner)
    );
    send(&servers, &g.provider, &g.address, &forwarded);

    // Both confirmations arrive in the provider's own mailbox.
    let replies = Imap::wait_for(&servers, &g.provider, "INBOX", 2, Duration::from_secs(30));
    assert_eq!(replies.len(), 2, "two confirmations; daemon log:\n{}", g.stop());
    let replies: Vec<Readable> = replies.iter().map(|r| Readable::parse(r)).collect();
    for reply in &replies {
        let subject = reply.header("Subject").unwrap_or_default();
        assert!(subject.contains("Notification received: Death of a person using the service"), "{subject}");
        assert_eq!(reply.header("Auto-Submitted"), Some("auto-replied"));
        assert!(reply.text.contains("Reference:"), "{}", reply.text);
    }
    let answering = |id: &str| replies.iter().find(|r| r.header("In-Reply-To") == Some(id));
    assert!(answering("<e2e-1@provider.example>").is_some(), "a reply threaded to the first email");
    let fwd = answering("<e2e-2@provider.example>").expect("a reply threaded to the forwarding email");
    assert!(fwd.text.contains("death-forwarded.docx"), "the forwarded form was read: {}", fwd.text);

    // The originals left the inbox for Processed.
    let processed = Imap::wait_for(&servers, &g.address, "Processed", 2, Duration::from_secs(10));
    assert_eq!(processed.len(), 2);
    let inbox = Imap::wait_for(&servers, &g.address, "INBOX", 1, Duration::from_millis(200));
    assert!(inbox.is_empty(), "INBOX still holds {} messages", inbox.len());
    g.stop();
}

#[test]
fn a_bounce_of_a_reply_comes_back_is_never_answered_and_marks_the_reply() {
    let Some(servers) = servers() else { return };
    let _turn = one_at_a_time();
    let mut g = Gateway::new(&servers);
    g.start();
    // Postfix accepts mail for bounce.postroom.test, then bounces it to the envelope sender: our mailbox.
    let stranger = format!("nobody-{}@bounce.postroom.test", std::process::id());
    send(
        &servers,
        &stranger,
        &g.address,
        &format!(
            "From: {stranger}\r\nTo: {a}\r\nSubject: hello\r\nMessage-ID: <e2e-b@bounce.postroom.test>\r\n\r\nNo form here.\r\n",
            a = g.address
        ),
    );
    // The email is rejected (no form); its reply goes out, bounces, and the bounce lands in Processed,
    // unanswered.
    let processed = Imap::wait_for(&servers, &g.address, "Processed", 1, Duration::from_secs(30));
    let rejected = Imap::wait_for(&servers, &g.address, "Rejected", 1, Duration::from_secs(5));
    let log = g.stop();
    assert_eq!((processed.len(), rejected.len()), (1, 1), "the bounce and the email; log:\n{log}");
    assert!(processed[0].contains("multipart/report"), "the bounce was settled in Processed");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let statuses = rt.block_on(async {
        let store = store_of(&g).await;
        store.outbox_counts().await.unwrap()
    });
    assert_eq!(statuses, vec![("delivery_failed".to_string(), 1)], "one reply, marked; nothing sent to the bounce");
}

#[test]
fn reconcile_reports_mail_the_ledger_has_not_seen_and_folders_that_disagree() {
    let Some(servers) = servers() else { return };
    let _turn = one_at_a_time();
    let g = Gateway::new(&servers);
    let sender = unique_address("reconcile");
    hello(&servers, &g, &sender, "rec-1@provider.example");
    assert_eq!(Imap::wait_for(&servers, &g.address, "INBOX", 1, Duration::from_secs(10)).len(), 1);
    let once = g.cmd(&["run", "--once"]).output().unwrap();
    assert!(once.status.success(), "{}", String::from_utf8_lossy(&once.stderr));
    let clean = g.cmd(&["reconcile"]).output().unwrap();
    assert!(clean.status.success(), "all agree after a pass: {}", String::from_utf8_lossy(&clean.stdout));

    // An instance stopped between moving a batch and recording it: the ledger lacks the move. Reconciliation
    // sees the filed message gone from the inbox and records the move in the folder its outcome names.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let settled = |sql: &'static str| {
        rt.block_on(async {
            let store = store_of(&g).await;
            sqlx::query(sql).execute(store.pool()).await.unwrap();
            let row = sqlx::query("SELECT COUNT(*), MAX(settled_folder) FROM messages WHERE settled_at IS NOT NULL")
                .fetch_one(store.pool())
                .await
                .unwrap();
            (sqlx::Row::get::<i64, _>(&row, 0), sqlx::Row::get::<Option<String>, _>(&row, 1))
        })
    };
    assert_eq!(settled("UPDATE messages SET settled_at = NULL, settled_folder = NULL"), (0, None));
    let repaired = g.cmd(&["reconcile"]).output().unwrap();
    let report = String::from_utf8_lossy(&repaired.stdout);
    assert!(repaired.status.success(), "the repair leaves server and ledger agreeing: {report}");
    assert!(report.contains("unrecorded moves recorded now 1"), "{report}");
    assert_eq!(settled("SELECT 1"), (1, Some("Rejected".to_string())), "a no-form email is settled in Rejected");

    // A person drops a message into Processed by hand, and new mail waits in the inbox.
    let mut imap = Imap::connect(&servers.host, servers.imap_port);
    imap.command(&format!("LOGIN \"{}\" \"{}\"", g.address, servers.password));
    let stray = "From: someone@elsewhere.example\r\nSubject: dropped by hand\r\n\r\nhello\r\n";
    imap.command(&format!("APPEND Processed {{{}+}}\r\n{stray}", stray.len()));
    imap.command("LOGOUT");
    hello(&servers, &g, &sender, "rec-2@provider.example");
    assert_eq!(Imap::wait_for(&servers, &g.address, "INBOX", 1, Duration::from_secs(10)).len(), 1);

    let out = g.cmd(&["reconcile"]).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("inbox unseen 1, filed but not moved 0"), "{report}");
    let processed = report.lines().find(|l| l.trim_start().starts_with("Processed")).unwrap();
    assert!(processed.contains("server       1") && processed.contains("ledger       0"), "{processed}");
    assert!(processed.contains("differs"));
}

#[test]
fn a_mailbox_with_bad_credentials_never_stops_the_others() {
    let Some(servers) = servers() else { return };
    let _turn = one_at_a_time();
    let broken = format!(
        "[[mailboxes]]\nname = \"mental_health\"\naddress = \"{mh}\"\nkind = \"imap\"\n[mailboxes.imap]\nhost = \"{host}\"\n\
         port = {port}\ntls = \"none\"\nusername = \"{mh}\"\npassword = \"wrong\"\nbackoff_min_ms = 100\nbackoff_max_ms = 500\n",
        mh = unique_address("broken"),
        host = servers.host,
        port = servers.imap_port
    );
    let mut g = Gateway::with_second_mailbox(&servers, &broken);
    g.start();
    let sender = unique_address("isolation");
    hello(&servers, &g, &sender, "iso-1@provider.example");
    let replies = Imap::wait_for(&servers, &sender, "INBOX", 1, Duration::from_secs(20));
    // Give the broken mailbox time to fail its login and retry at least once.
    std::thread::sleep(Duration::from_secs(2));
    let log = g.stop();
    assert_eq!(replies.len(), 1, "the healthy mailbox kept working; log:\n{log}");
    assert!(log.contains("IMAP MAILBOX NOT BEING READ"), "the broken one is reported loudly:\n{log}");
}
