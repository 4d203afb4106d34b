//! Raw mail is deleted when its retention period ends (never before a staff decision on rejected or
//! quarantined mail), and a sender who keeps provoking replies stops getting them.

mod common;

use common::TestApp;
use postroom::samples::Attached;
use sqlx::Row;

async fn raw_kept(app: &TestApp, ledger_id: i64) -> bool {
    let row = sqlx::query("SELECT raw FROM message_raw WHERE message_id = $1")
        .bind(ledger_id)
        .fetch_optional(app.pipeline.store.pool())
        .await
        .unwrap();
    row.is_some_and(|r| !r.try_get::<Vec<u8>, _>("raw").unwrap().is_empty())
}

#[tokio::test]
async fn purge_deletes_raw_mail_of_settled_accepted_email_after_the_retention_period_only() {
    let app = TestApp::start().await;
    let mb = app.pipeline.config.mailboxes[0].clone();
    let inbox = postroom::mailbox::Maildir::open(mb.path.as_deref().unwrap()).unwrap();
    inbox.deliver(&app.email("r1@x", "ok", vec![Attached::docx("d.docx", app.form("death", |_| {}))])).unwrap();
    inbox.deliver(&app.email("r2@x", "no form", vec![])).unwrap();
    let own = postroom::samples::email(&mb.address, &mb.address, "loop", "r3@x", vec![]).unwrap();
    inbox.deliver(&own).unwrap();
    let (_stop, shutdown) = postroom::daemon::Shutdown::new();
    let outcomes = postroom::daemon::drain_maildir(&app.pipeline, &mb.name, &shutdown).await.unwrap();
    postroom::daemon::deliver_replies(&app.pipeline).await.unwrap();
    let id_of = |status: &str| outcomes.iter().find(|(_, o)| o.outcome == status).unwrap().1.ledger_id;
    let (accepted, rejected, quarantined) = (id_of("accepted"), id_of("rejected"), id_of("quarantined"));

    let now = postroom::store::now_ms();
    let nothing = postroom::retention::purge(&app.pipeline.store, &app.pipeline.config, now).await.unwrap();
    assert_eq!(nothing, postroom::retention::Purged::default(), "nothing is old enough yet");
    assert!(raw_kept(&app, accepted).await);

    let later = now + 31 * 24 * 3600 * 1000;
    let purged = postroom::retention::purge(&app.pipeline.store, &app.pipeline.config, later).await.unwrap();
    assert_eq!(purged.raw_messages, 1);
    assert_eq!(purged.replies, 1);
    assert!(!raw_kept(&app, accepted).await, "accepted mail's raw bytes are gone");
    assert!(raw_kept(&app, rejected).await, "rejected mail waits for staff");
    assert!(raw_kept(&app, quarantined).await, "quarantined mail never expires before a staff decision");
    let counts = inbox.counts().unwrap();
    assert_eq!(counts[1..], [("Processed".into(), 0), ("Rejected".into(), 1), ("Quarantine".into(), 1)]);
    // The filing itself stays.
    let refs = app.pipeline.store.references_of(accepted).await.unwrap();
    assert_eq!(refs.len(), 1);
}

#[tokio::test]
async fn a_sender_past_the_reply_budget_is_quarantined_not_answered_but_a_busy_provider_is_filed() {
    let mut app = TestApp::start().await;
    app.pipeline.config.limits.max_no_form_replies_per_sender = 2;
    let mut replies = Vec::new();
    for i in 0..3 {
        let o = app.process(&format!("loop{i}"), &app.email(&format!("loop{i}@x"), "Re: your email", vec![])).await;
        replies.push((o.outcome.clone(), o.reason.clone(), o.reply.clone()));
    }
    assert_eq!(replies[0].2.as_deref(), Some("no_form"));
    assert_eq!(replies[1].2.as_deref(), Some("no_form"));
    assert_eq!(replies[2], ("quarantined".into(), Some("rate:flood".into()), None));
    // Another sender is unaffected.
    let other = app.email_from("tom.oak@oakfield-care.example", "loopx@x", "hello", vec![]);
    assert_eq!(app.process("other", &other).await.reply.as_deref(), Some("no_form"));
    // Twenty different forms from one busy provider, same subject: all filed and answered.
    for i in 0..20 {
        let docx = app.form("serious_injury", |v| {
            v.insert("provider_reference".into(), postroom::forms::Value::Text(format!("OAK-{i}")));
            v.insert("event_time".into(), postroom::forms::Value::Text(format!("{:02}:{:02}", i / 2, i)));
        });
        let o = app
            .process(
                &format!("busy{i}"),
                &app.email(&format!("busy{i}@x"), "Injury", vec![Attached::docx("i.docx", docx)]),
            )
            .await;
        assert_eq!(
            (o.outcome.as_str(), o.reply.as_deref()),
            ("accepted", Some("confirmation")),
            "form {i}: {:?}",
            o.problems
        );
    }
}
