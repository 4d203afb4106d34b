//! Replies leave through the real Postfix (`scripts/dev-services`) and arrive in the provider's mailbox on
//! the real Dovecot, read back over IMAP: plain on loopback, STARTTLS and implicit TLS with our CA; a 5xx
//! is recorded as failed at once, a 4xx is retried with backoff, and a server that was down gets each
//! reply exactly once when it returns.

mod common;

use std::time::Duration;

use common::TestApp;
use common::mail::{Imap, Servers, servers, unique_address};
use postroom::config::{SmtpConfig, TlsMode};
use postroom::samples::Attached;
use sqlx::Row;

fn smtp(servers: &Servers, tls: TlsMode) -> SmtpConfig {
    let port = if tls == TlsMode::Implicit { servers.smtps_port } else { servers.smtp_port };
    SmtpConfig {
        host: servers.host.clone(),
        port,
        tls,
        username: (tls != TlsMode::None).then(|| "postroom@postroom.test".to_string()),
        password: (tls != TlsMode::None).then(|| servers.password.clone()),
        password_file: None,
        auth: postroom::config::AuthMethod::Login,
        oauth2: None,
        ca_file: Some(servers.ca.clone().into()),
        timeout_secs: 5,
        max_attempts: 3,
        retry_base_ms: 1,
        connections: 2,
    }
}

async fn app_with(smtp: SmtpConfig) -> TestApp {
    let mut app = TestApp::start().await;
    app.pipeline.config.smtp = Some(smtp);
    app
}

async fn outbox_row(app: &TestApp) -> (String, i64, Option<String>) {
    let row = sqlx::query("SELECT status, attempts, last_error FROM outbox ORDER BY id DESC LIMIT 1")
        .fetch_one(app.pipeline.store.pool())
        .await
        .unwrap();
    (row.get("status"), row.get("attempts"), row.get("last_error"))
}

#[tokio::test]
async fn replies_arrive_in_the_providers_mailbox_over_plain_starttls_and_implicit_tls() {
    let Some(servers) = servers() else { return };
    for tls in [TlsMode::None, TlsMode::Starttls, TlsMode::Implicit] {
        let app = app_with(smtp(&servers, tls)).await;
        let provider = unique_address("smtp-reply");
        let raw = app.email_from(&provider, &format!("{provider}.orig"), "our notification", vec![]);
        let o = app.process("k", &raw).await;
        assert_eq!(o.reply.as_deref(), Some("no_form"));
        let drained = postroom::daemon::deliver_replies(&app.pipeline).await.unwrap();
        assert_eq!(drained.sent, 1, "{tls:?}: {:?}", outbox_row(&app).await);
        let got = Imap::wait_for(&servers, &provider, "INBOX", 1, Duration::from_secs(10));
        assert_eq!(got.len(), 1, "{tls:?}: one reply in {provider}'s mailbox");
        let reply = &got[0];
        assert!(reply.contains("Subject: Action needed: no notification form found"), "{reply}");
        assert!(reply.contains("Auto-Submitted: auto-replied"));
        assert!(reply.contains(&format!("In-Reply-To: <{provider}.orig>")));
        assert!(reply.contains("From: \"Care Quality Commission notifications\" <notifications@postroom.localhost>"));
        // It went through Postfix, not around it.
        assert!(reply.contains("Received: from "), "{reply}");
    }
}

#[tokio::test]
async fn a_confirmation_with_its_reference_and_receipt_is_delivered_once() {
    let Some(servers) = servers() else { return };
    let app = app_with(smtp(&servers, TlsMode::Starttls)).await;
    let docx = app.form("death", |_| {});
    let sha = postroom::sha256_hex(&docx);
    let o = app.process("k", &app.email("smtp-confirm@x", "Death", vec![Attached::docx("d.docx", docx)])).await;
    assert_eq!(o.outcome, "accepted", "{:?}", o.problems);
    postroom::daemon::deliver_replies(&app.pipeline).await.unwrap();
    // A second drain finds nothing due: sent replies are never sent again.
    assert_eq!(postroom::daemon::deliver_replies(&app.pipeline).await.unwrap().sent, 0);
    let jane = common::notifier().email;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mine = loop {
        let all = Imap::wait_for(&servers, &jane, "INBOX", 1, Duration::from_secs(10));
        let mine: Vec<String> = all.into_iter().filter(|m| m.contains(&o.references[0])).collect();
        if !mine.is_empty() || std::time::Instant::now() > deadline {
            break mine;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(mine.len(), 1, "exactly one confirmation carries {}", o.references[0]);
    assert!(mine[0].contains(&sha[..40]), "receipt SHA-256 in the delivered reply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_leave_over_several_sessions_at_once_and_each_arrives_exactly_once() {
    let Some(servers) = servers() else { return };
    let mut config = smtp(&servers, TlsMode::Starttls);
    config.connections = 3;
    let app = app_with(config).await;
    let providers: Vec<String> = (0..9).map(|i| unique_address(&format!("sessions{i}"))).collect();
    for (i, provider) in providers.iter().enumerate() {
        let raw = app.email_from(provider, &format!("{provider}.orig"), "no form here", vec![]);
        assert_eq!(app.process(&format!("k{i}"), &raw).await.reply.as_deref(), Some("no_form"));
    }
    let drained = postroom::daemon::deliver_replies(&app.pipeline).await.unwrap();
    assert_eq!(drained.sent, 9, "{drained:?}");
    assert_eq!(postroom::daemon::deliver_replies(&app.pipeline).await.unwrap().sent, 0, "nothing sent twice");
    for provider in &providers {
        let got = Imap::wait_for(&servers, provider, "INBOX", 1, Duration::from_secs(10));
        assert_eq!(got.len(), 1, "exactly one reply in {provider}'s mailbox");
        assert!(got[0].contains(&format!("In-Reply-To: <{provider}.orig>")), "{}", got[0]);
    }
}

#[tokio::test]
async fn a_permanent_refusal_is_recorded_at_once_and_a_temporary_one_is_retried_then_given_up() {
    let Some(servers) = servers() else { return };
    let app = app_with(smtp(&servers, TlsMode::None)).await;
    let to = format!("someone-{}@reject.postroom.test", std::process::id());
    app.process("r", &app.email_from(&to, "perm@x", "x", vec![])).await;
    postroom::daemon::deliver_replies(&app.pipeline).await.unwrap();
    let (status, attempts, error) = outbox_row(&app).await;
    assert_eq!((status.as_str(), attempts), ("failed", 1), "{error:?}");
    assert!(error.unwrap_or_default().contains("550"));

    let app = app_with(smtp(&servers, TlsMode::None)).await;
    let to = format!("someone-{}@tempfail.postroom.test", std::process::id());
    app.process("t", &app.email_from(&to, "temp@x", "x", vec![])).await;
    postroom::daemon::deliver_replies(&app.pipeline).await.unwrap();
    let (status, attempts, _) = outbox_row(&app).await;
    assert_eq!((status.as_str(), attempts), ("pending", 1), "a 4xx is worth another try");
    // retry_base_ms is 1 ms here: the next attempts come due at once; the third gives up.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        postroom::daemon::deliver_replies(&app.pipeline).await.unwrap();
    }
    let (status, attempts, error) = outbox_row(&app).await;
    assert_eq!((status.as_str(), attempts), ("failed", 3), "{error:?}");
}

#[tokio::test]
async fn replies_due_while_the_smtp_server_is_down_are_delivered_once_when_it_returns() {
    let Some(servers) = servers() else { return };
    // Nothing listens on this port: the server is down.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut down = smtp(&servers, TlsMode::None);
    down.port = dead_port;
    down.retry_base_ms = 1;
    down.max_attempts = 100;
    let mut app = app_with(down).await;
    let provider = unique_address("smtp-outage");
    for i in 0..3 {
        app.process(&format!("o{i}"), &app.email_from(&provider, &format!("o{i}@x"), "x", vec![])).await;
    }
    let drained = postroom::daemon::deliver_replies(&app.pipeline).await.unwrap();
    assert_eq!((drained.sent, drained.retrying), (0, 3));
    // The server is back.
    app.pipeline.config.smtp = Some(smtp(&servers, TlsMode::None));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let drained = postroom::daemon::deliver_replies(&app.pipeline).await.unwrap();
    assert_eq!(drained.sent, 3);
    let got = Imap::wait_for(&servers, &provider, "INBOX", 3, Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = Imap::wait_for(&servers, &provider, "INBOX", 4, Duration::from_millis(300));
    assert_eq!((got.len(), again.len()), (3, 3), "each reply delivered exactly once");
    let mut ids: Vec<&str> = got.iter().filter_map(|m| m.lines().find(|l| l.starts_with("Message-ID:"))).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "one distinct Message-ID per (message, kind)");
}

#[tokio::test]
async fn a_refused_login_is_retried_as_a_configuration_fault_never_given_up_as_the_replys() {
    let Some(servers) = servers() else { return };
    let mut config = smtp(&servers, TlsMode::Starttls);
    config.password = Some("wrong-password".into());
    let app = app_with(config).await;
    let provider = unique_address("smtp-badlogin");
    app.process("k", &app.email_from(&provider, &format!("{provider}.orig"), "x", vec![])).await;
    let drained = postroom::daemon::deliver_replies(&app.pipeline).await.unwrap();
    assert_eq!((drained.sent, drained.retrying, drained.failed), (0, 1, 0), "{drained:?}");
    let (status, attempts, error) = outbox_row(&app).await;
    let error = error.unwrap_or_default();
    // Postfix answers 535, a 5xx: still the configuration's fault, so the reply waits for it to be fixed.
    assert_eq!((status.as_str(), attempts), ("pending", 1), "{error}");
    assert!(error.contains("refused the login") && error.contains("535"), "{error}");
    assert!(!error.contains("wrong-password"), "{error}");
}
