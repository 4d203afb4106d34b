//! The real `postroom` binary as a daemon over a Maildir: killed at each failpoint and restarted, every
//! message ends up filed exactly once with exactly one reply; Ctrl-C finishes cleanly.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postroom::mailbox::Maildir;
use postroom::samples::{self, Attached};
use sqlx::Row;

const BIN: &str = env!("CARGO_BIN_EXE_postroom");

/// Three providers' emails (a valid form, a rejected form, no form) delivered into the workspace's Maildir.
async fn workspace_with_mail() -> common::TestApp {
    let app = common::TestApp::start().await;
    let inbox = Maildir::open(&app.dir.path().join("var/mail/notifications")).unwrap();
    let good = app.form("death", |_| {});
    let bad = app.form("abuse", |v| {
        v.remove("provider_id");
    });
    inbox.deliver(&app.email("d1@x.example", "one", vec![Attached::docx("a.docx", good)])).unwrap();
    inbox.deliver(&app.email("d2@x.example", "two", vec![Attached::docx("b.docx", bad)])).unwrap();
    inbox.deliver(&app.email("d3@x.example", "three", vec![])).unwrap();
    app
}

fn postroom(app: &common::TestApp, failpoint: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("--workspace")
        .arg(app.dir.path())
        .args(args)
        .env("POSTROOM_LOG", "warn")
        .env("POSTROOM_DATABASE__URL", &app.pipeline.config.database.url)
        .env("POSTROOM_OUTBOX__CLAIM_LEASE_SECS", "1")
        .env("POSTROOM_DAEMON__MAILBOX_LEASE_SECS", "1");
    if let Some(f) = failpoint {
        cmd.env("POSTROOM_FAILPOINT", f);
    }
    cmd.output().unwrap()
}

async fn ledger_facts(app: &common::TestApp) -> (i64, i64, i64, i64, i64) {
    let store = app.pipeline.store.clone();
    let one = |sql: &'static str| {
        let store = store.clone();
        async move { sqlx::query(sql).fetch_one(store.pool()).await.unwrap().get::<i64, _>(0) }
    };
    (
        one("SELECT COUNT(*) FROM messages").await,
        one("SELECT COUNT(*) FROM submissions").await,
        one("SELECT COUNT(*) FROM outbox").await,
        one("SELECT COUNT(*) FROM messages WHERE settled_at IS NOT NULL").await,
        // Any message filed twice, or answered twice, shows here.
        one("SELECT COUNT(*) FROM (SELECT message_id FROM outbox GROUP BY message_id HAVING COUNT(*) > 1) t").await,
    )
}

#[tokio::test]
async fn killed_at_any_failpoint_then_restarted_files_each_message_once_with_one_reply() {
    for failpoint in ["after_record", "after_commit", "before_reply_sent"] {
        let app = workspace_with_mail().await;
        let ws = app.dir.path();
        let crashed = postroom(&app, Some(failpoint), &["run", "--once"]);
        assert!(!crashed.status.success(), "{failpoint}: the failpoint did not fire");
        let stderr = String::from_utf8_lossy(&crashed.stderr);
        assert!(stderr.contains(&format!("failpoint {failpoint}")), "{failpoint}: {stderr}");

        // The dead process's mailbox lease and reply claims run out (1 s here); then the restart takes over.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let restarted = postroom(&app, None, &["run", "--once"]);
        assert!(restarted.status.success(), "{failpoint}: {}", String::from_utf8_lossy(&restarted.stderr));

        let (messages, submissions, outbox, settled, doubled) = ledger_facts(&app).await;
        assert_eq!(messages, 3, "{failpoint}: one ledger row per message");
        assert_eq!(submissions, 2, "{failpoint}: one submission per form (the third email had none)");
        assert_eq!(outbox, 3, "{failpoint}: one reply per email");
        assert_eq!(settled, 3, "{failpoint}: every message settled");
        assert_eq!(doubled, 0, "{failpoint}: no message answered twice");
        let inbox = Maildir::open(&ws.join("var/mail/notifications")).unwrap();
        assert!(inbox.waiting().unwrap().is_empty(), "{failpoint}: inbox drained");
        let counts = inbox.counts().unwrap();
        assert_eq!(counts[1..], [("Processed".into(), 1), ("Rejected".into(), 2), ("Quarantine".into(), 0)]);
        // A reply written before the crash is written again under the same name: never two files.
        let replies = std::fs::read_dir(ws.join("var/outbox")).unwrap().count();
        assert_eq!(replies, 3, "{failpoint}: one reply file per email");
    }
}

#[tokio::test]
async fn ctrl_c_lets_the_daemon_finish_and_exit_cleanly() {
    let app = workspace_with_mail().await;
    let ws = app.dir.path();
    let child = Command::new(BIN)
        .arg("--workspace")
        .arg(ws)
        .arg("run")
        .env("POSTROOM_DATABASE__URL", &app.pipeline.config.database.url)
        .env("POSTROOM_DAEMON__POLL_INTERVAL_MS", "50")
        .env("POSTROOM_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let inbox = Maildir::open(&ws.join("var/mail/notifications")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !inbox.waiting().unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // New mail while running is picked up too.
    let later =
        samples::email("late@provider.example", "notifications@postroom.localhost", "late", "d4@x", vec![]).unwrap();
    inbox.deliver(&later).unwrap();
    while !inbox.waiting().unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(inbox.waiting().unwrap().is_empty(), "the daemon did not drain the inbox");
    let status = Command::new("kill").arg("-INT").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("shut down cleanly"), "{log}");
    let (messages, _, outbox, settled, _) = ledger_facts(&app).await;
    assert_eq!((messages, outbox, settled), (4, 4, 4));
}
