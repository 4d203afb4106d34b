//! The spine, end to end on embedded defaults: an email with a Word form goes in, a filed record with a
//! reference and exactly one reply come out; every common mistake gets its problem code and its fix.

mod common;

use common::{TestApp, codes};
use postroom::forms::Value;
use postroom::reference::Reference;
use postroom::samples::Attached;

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

#[tokio::test]
async fn valid_form_is_accepted_with_one_reference_and_one_confirmation_carrying_a_receipt() {
    let app = TestApp::start().await;
    let docx = app.form("death", |_| {});
    let sha = postroom::sha256_hex(&docx);
    let raw = app.email("m1@oakfield.example", "Death notification", vec![Attached::docx("death.docx", docx)]);
    let o = app.process("k1", &raw).await;
    assert_eq!(o.outcome, "accepted", "{:?}", o.problems);
    assert_eq!(o.message_id.as_deref(), Some("m1@oakfield.example"));
    assert_eq!(o.references.len(), 1);
    let reference = Reference::parse(&o.references[0], "N").unwrap();
    assert_eq!(o.reply.as_deref(), Some("confirmation"));
    assert!(o.problems.is_empty());

    postroom::daemon::deliver_replies(&app.pipeline).await.unwrap();
    let replies = app.outbox();
    assert_eq!(replies.len(), 1);
    let reply = &replies[0];
    assert!(reply.contains(reference.as_str()), "reference in reply");
    assert!(reply.contains(&sha), "SHA-256 of the submitted .docx in the receipt");
    assert!(reply.contains("Auto-Submitted: auto-replied"));
    assert!(reply.contains("In-Reply-To: <m1@oakfield.example>"));
    assert!(reply.contains("To: jane.smith@oakfield-care.example"));
    assert!(reply.contains(&format!("Subject: [{reference}] Notification received")));
}

#[tokio::test]
async fn reprocessing_the_same_message_files_nothing_new_and_sends_no_second_reply() {
    let app = TestApp::start().await;
    let raw = app.email("m2@oakfield.example", "x", vec![Attached::docx("d.docx", app.form("death", |_| {}))]);
    let first = app.process("same-key", &raw).await;
    let again = app.process("same-key", &raw).await;
    assert_eq!(again.outcome, "duplicate");
    assert_eq!(again.message_id.as_deref(), Some("m2@oakfield.example"), "reported from the ledger");
    assert_eq!(again.references, first.references);
    assert_eq!(again.reply, None);
    // A redelivered copy (new Received header, so other raw bytes) under another key: also a duplicate.
    let mut copy = b"Received: from mx2.example by mx.example; Mon, 23 Nov 2026 10:00:00 +0000\r\n".to_vec();
    copy.extend_from_slice(&raw);
    let redelivered = app.process("other-key", &copy).await;
    assert_eq!(redelivered.outcome, "duplicate");
    assert_eq!(redelivered.reason.as_deref(), Some("duplicate:redelivered"));
    assert_eq!(redelivered.references, first.references);
    assert_eq!(redelivered.reply, None);

    let drained = postroom::daemon::deliver_replies(&app.pipeline).await.unwrap();
    assert_eq!(drained.sent, 1);
    assert_eq!(app.outbox().len(), 1);
    let counts = app.pipeline.store.outbox_counts().await.unwrap();
    assert_eq!(counts, vec![("sent".to_string(), 1)]);
}

#[tokio::test]
async fn the_same_form_bytes_sent_again_in_a_new_email_are_a_duplicate() {
    let app = TestApp::start().await;
    let docx = app.form("abuse", |_| {});
    let a = app.email("a@oakfield.example", "x", vec![Attached::docx("abuse.docx", docx.clone())]);
    let b = app.email("b@oakfield.example", "sent again", vec![Attached::docx("abuse (1).docx", docx)]);
    let first = app.process("a", &a).await;
    let second = app.process("b", &b).await;
    assert_eq!(first.outcome, "accepted", "{:?}", first.problems);
    assert_eq!(second.outcome, "duplicate");
    assert_eq!(second.reason.as_deref(), Some("duplicate:same_form"));
    assert_eq!(second.references, first.references);
    assert_eq!(second.reply, None);
}

#[tokio::test]
async fn missing_required_answer_is_rejected_naming_the_field_and_its_label() {
    let app = TestApp::start().await;
    let docx = app.form("death", |v| {
        v.remove("event_date");
    });
    let raw = app.email("m3@x.example", "x", vec![Attached::docx("d.docx", docx)]);
    let o = app.process("k", &raw).await;
    assert_eq!(o.outcome, "rejected");
    assert_eq!(o.reply.as_deref(), Some("rejection"));
    assert_eq!(o.references.len(), 1, "rejected submissions get a reference too");
    let p = o.problems.iter().find(|p| p.code.as_str() == "required_missing").unwrap();
    assert_eq!(p.field.as_deref(), Some("event_date"));
    assert_eq!(p.form_index, Some(0));
    let label = app.def("death").field("event_date").unwrap().label.clone();
    assert!(p.message.contains(label.as_str()), "{}", p.message);
    postroom::daemon::deliver_replies(&app.pipeline).await.unwrap();
    let reply = app.outbox().join("\n");
    assert!(reply.contains(label.as_str()));
    assert!(reply.contains("Action needed"));
}

#[tokio::test]
async fn a_future_date_and_an_unreadable_date_each_get_their_own_code_quoting_the_value() {
    let app = TestApp::start().await;
    let future = (app.today() + chrono::Duration::days(3)).format("%d/%m/%Y").to_string();
    let docx = app.form("serious_injury", |v| {
        v.insert("event_date".into(), text(&future));
        v.insert("date_submitted".into(), text("31/02/2026"));
    });
    let raw = app.email("m4@x.example", "x", vec![Attached::docx("i.docx", docx)]);
    let o = app.process("k", &raw).await;
    assert_eq!(o.outcome, "rejected");
    let fut = o.problems.iter().find(|p| p.code.as_str() == "date_in_future").unwrap();
    assert_eq!((fut.field.as_deref(), fut.value.as_deref()), (Some("event_date"), Some(future.as_str())));
    let bad = o.problems.iter().find(|p| p.code.as_str() == "invalid_date").unwrap();
    assert_eq!((bad.field.as_deref(), bad.value.as_deref()), (Some("date_submitted"), Some("31/02/2026")));
}

#[tokio::test]
async fn stale_form_version_gets_told_the_current_version_and_where_to_download_it() {
    let app = TestApp::start().await;
    let old = app.pipeline.catalog.get("death", "2025.1").unwrap().clone();
    let values = postroom::samples::filled(&old, &common::notifier(), app.today());
    let docx = postroom::forms::render::render(&old, Some(&values)).unwrap();
    let raw = app.email("m5@x.example", "x", vec![Attached::docx("old.docx", docx)]);
    let o = app.process("k", &raw).await;
    assert_eq!(o.outcome, "rejected");
    let p = o.problems.iter().find(|p| p.code.as_str() == "stale_form_version").unwrap();
    assert_eq!(p.value.as_deref(), Some("2025.1"));
    assert!(p.message.contains("2026.1"), "{}", p.message);
    postroom::daemon::deliver_replies(&app.pipeline).await.unwrap();
    assert!(app.outbox()[0].contains(&app.pipeline.config.mail.forms_url));
}

#[tokio::test]
async fn no_attachment_gets_the_no_form_reply_and_a_pdf_is_not_a_form() {
    let app = TestApp::start().await;
    let none = app.email("m6@x.example", "notification", vec![]);
    let o = app.process("k1", &none).await;
    assert_eq!((o.outcome.as_str(), o.reply.as_deref()), ("rejected", Some("no_form")));
    assert_eq!(codes(&o), vec!["no_form"]);
    assert!(o.references.is_empty());

    let pdf = Attached {
        filename: "form.pdf".into(),
        content_type: "application/pdf".into(),
        bytes: b"%PDF-1.7\n%...".to_vec(),
    };
    let o = app.process("k2", &app.email("m7@x.example", "x", vec![pdf])).await;
    assert_eq!((o.outcome.as_str(), o.reply.as_deref()), ("rejected", Some("rejection")));
    assert_eq!(codes(&o), vec!["not_word"]);
    assert_eq!(o.problems[0].form_index, Some(0));
}

#[tokio::test]
async fn two_forms_in_one_email_get_two_references_one_reply_and_the_worst_outcome() {
    let app = TestApp::start().await;
    let good = app.form("police_incident", |_| {});
    let bad = app.form("dols_outcome", |v| {
        v.insert("provider_id".into(), text("1-123"));
    });
    let raw =
        app.email("m8@x.example", "two", vec![Attached::docx("police.docx", good), Attached::docx("dols.docx", bad)]);
    let o = app.process("k", &raw).await;
    assert_eq!(o.outcome, "rejected");
    assert_eq!(o.references.len(), 2);
    assert_ne!(o.references[0], o.references[1]);
    let p = o.problems.iter().find(|p| p.code.as_str() == "invalid_provider_id").unwrap();
    assert_eq!((p.form_index, p.value.as_deref()), (Some(1), Some("1-123")));
    postroom::daemon::deliver_replies(&app.pipeline).await.unwrap();
    let replies = app.outbox();
    assert_eq!(replies.len(), 1, "one reply covers both forms");
    assert!(replies[0].contains(&o.references[0]) && replies[0].contains(&o.references[1]));
}

#[tokio::test]
async fn automatic_mail_is_ignored_and_mail_from_ourselves_or_unparseable_is_quarantined_without_reply() {
    let app = TestApp::start().await;
    let docx = app.form("death", |_| {});
    let mut auto = b"Auto-Submitted: auto-replied\r\n".to_vec();
    auto.extend(app.email("m9@x.example", "Automatic reply: notification", vec![Attached::docx("d.docx", docx)]));
    let o = app.process("auto", &auto).await;
    assert_eq!((o.outcome.as_str(), o.reply.as_deref()), ("ignored", None));
    assert!(o.reason.as_deref().unwrap_or_default().starts_with("auto:"), "{:?}", o.reason);

    let own = postroom::samples::email(
        "notifications@postroom.localhost",
        "notifications@postroom.localhost",
        "loop",
        "m10@x",
        vec![],
    )
    .unwrap();
    let o = app.process("own", &own).await;
    assert_eq!(
        (o.outcome.as_str(), o.reason.as_deref(), o.reply.as_deref()),
        ("quarantined", Some("loop:own_address"), None)
    );

    let huge = vec![b'a'; (app.pipeline.config.limits.max_message_bytes + 1) as usize];
    let o = app.process("huge", &huge).await;
    assert_eq!((o.outcome.as_str(), o.reason.as_deref()), ("quarantined", Some("size:oversize")));

    postroom::daemon::deliver_replies(&app.pipeline).await.unwrap();
    assert!(app.outbox().is_empty());
}

#[tokio::test]
async fn corrected_form_quoting_the_rejection_reference_is_linked_to_it() {
    let app = TestApp::start().await;
    let bad = app.form("event_stopping_service", |v| {
        v.remove("event_date");
    });
    let first = app.process("1", &app.email("r1@x.example", "Fire", vec![Attached::docx("e.docx", bad)])).await;
    assert_eq!(first.outcome, "rejected");
    let good = app.form("event_stopping_service", |_| {});
    let subject = format!("RE: [{}] Action needed: notification not accepted", first.references[0]);
    let second = app.process("2", &app.email("r2@x.example", &subject, vec![Attached::docx("e.docx", good)])).await;
    assert_eq!(second.outcome, "accepted", "{:?}", second.problems);
    postroom::daemon::deliver_replies(&app.pipeline).await.unwrap();
    let confirmation = app
        .outbox()
        .into_iter()
        .find(|r| r.contains(&second.references[0]) && r.contains("Notification received"))
        .unwrap();
    assert!(confirmation.contains(&format!("Linked to:      {}", first.references[0])), "{confirmation}");
}

#[tokio::test]
async fn the_same_incident_notified_twice_is_linked_and_flagged_not_silently_filed_twice() {
    let app = TestApp::start().await;
    let a = app.form("serious_injury", |_| {});
    // Same incident, re-typed: other bytes, same form, location, event date and time.
    let b = app.form("serious_injury", |v| {
        v.insert("provider_reference".into(), text("OAK-2"));
    });
    let first = app.process("1", &app.email("s1@x.example", "x", vec![Attached::docx("a.docx", a)])).await;
    let second = app.process("2", &app.email("s2@x.example", "x", vec![Attached::docx("b.docx", b)])).await;
    assert_eq!(first.outcome, "accepted", "{:?}", first.problems);
    assert_eq!(second.outcome, "accepted");
    postroom::daemon::deliver_replies(&app.pipeline).await.unwrap();
    let second_reply = app.outbox().into_iter().find(|r| r.contains(&second.references[0])).unwrap();
    assert!(second_reply.contains(&format!("same incident as {}", first.references[0])), "{second_reply}");
}

#[tokio::test]
async fn process_json_lines_have_the_documented_shape() {
    let app = TestApp::start().await;
    let o = app.process("k", &app.email("j@x.example", "x", vec![])).await;
    let j = serde_json::to_value(&o).unwrap();
    for key in ["message_id", "outcome", "references", "problems", "reply"] {
        assert!(j.get(key).is_some(), "missing {key}: {j}");
    }
    assert!(j["references"].is_array() && j["problems"].is_array());
    let p = &j["problems"][0];
    for key in ["code", "field", "form_index", "message", "hint"] {
        assert!(p.get(key).is_some(), "problem lacks {key}: {p}");
    }
    assert_eq!(p["code"], "no_form");
    assert_eq!(p["form_index"], serde_json::Value::Null);
}

#[tokio::test]
async fn a_bounce_of_our_reply_is_never_answered_and_marks_that_reply_delivery_failed() {
    let app = TestApp::start().await;
    let raw = app.email("b1@x.example", "x", vec![Attached::docx("d.docx", app.form("death", |_| {}))]);
    let o = app.process("k", &raw).await;
    let reply_id = postroom::reply::reply_message_id(
        postroom::reply::ReplyKind::Confirmation,
        &postroom::sha256_hex(&raw),
        "notifications@postroom.localhost",
    );
    assert_eq!(o.reply.as_deref(), Some("confirmation"));
    postroom::daemon::deliver_replies(&app.pipeline).await.unwrap();
    let bounce = format!(
        "From: Mail Delivery System <MAILER-DAEMON@mx.oakfield.example>\r\n\
         To: notifications@postroom.localhost\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Message-ID: <bounce1@mx.oakfield.example>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
         --B\r\nContent-Type: text/plain\r\n\r\nThe mailbox is full.\r\n\
         --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.oakfield.example\r\n\r\n\
         Final-Recipient: rfc822; jane.smith@oakfield-care.example\r\nAction: failed\r\nStatus: 5.2.2\r\n\r\n\
         --B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {reply_id}\r\nSubject: notification received\r\n\r\n\
         --B--\r\n"
    );
    let b = app.process("bounce", bounce.as_bytes()).await;
    assert_eq!((b.outcome.as_str(), b.reason.as_deref(), b.reply.as_deref()), ("ignored", Some("auto:bounce"), None));
    let counts = app.pipeline.store.outbox_counts().await.unwrap();
    assert_eq!(counts, vec![("delivery_failed".to_string(), 1)]);
}

#[tokio::test]
async fn registry_problems_reach_the_reply_and_an_outsider_learns_nothing_about_the_provider() {
    let app = TestApp::start().await;
    // Jane manages Oakfield House; Birchwood's home is another provider's.
    let docx = app.form("death", |v| {
        v.insert("location_id".into(), text("1-2000000001"));
    });
    let o = app.process("1", &app.email("g1@x.example", "x", vec![Attached::docx("d.docx", docx)])).await;
    assert_eq!(o.outcome, "rejected");
    let p = o.problems.iter().find(|p| p.code.as_str() == "location_not_of_provider").unwrap();
    assert_eq!(
        (p.field.as_deref(), p.value.as_deref(), p.form_index),
        (Some("location_id"), Some("1-2000000001"), Some(0))
    );
    assert!(p.message.contains("1-1000210669"), "a registered sender is shown the provider's locations: {}", p.message);

    // Someone with no role anywhere: one email-level problem, and no registration data in it.
    let docx = app.form("death", |_| {});
    let raw = app.email_from("someone@elsewhere.example", "g2@x.example", "x", vec![Attached::docx("d.docx", docx)]);
    let o = app.process("2", &raw).await;
    assert_eq!(o.outcome, "rejected");
    let p = o.problems.iter().find(|p| p.code.as_str() == "sender_not_registered").unwrap();
    assert_eq!(p.form_index, None);
    postroom::daemon::deliver_replies(&app.pipeline).await.unwrap();
    let reply = app.outbox().into_iter().find(|r| r.contains("To: someone@elsewhere.example")).unwrap();
    for secret in ["jane.smith@", "tom.oak@", "Oakfield House", "1-1000210670"] {
        assert!(!reply.contains(secret), "reply to an outsider reveals {secret}");
    }
    assert!(!reply.contains("Accepted and filed"), "a refused sender's form is not accepted: {reply}");
    let (_, status) = sqlx::query_as::<_, (i64, String)>("SELECT id, status FROM submissions WHERE reference = $1")
        .bind(&o.references[0])
        .fetch_one(app.pipeline.store.pool())
        .await
        .unwrap();
    assert_eq!(status, "rejected");
}

/// Files `n` emails without a form from `n` different senders: `n` "no form" replies wait in the outbox.
async fn queue_no_form_replies(app: &TestApp, prefix: &str, n: usize) {
    for i in 0..n {
        let raw = app.email_from(&format!("{prefix}{i}@elsewhere.example"), &format!("{prefix}{i}@x"), "hello", vec![]);
        assert_eq!(app.process(&format!("{prefix}-{i}"), &raw).await.reply.as_deref(), Some("no_form"));
    }
}

/// The files a [`FileTransport`](postroom::reply::outbox::FileTransport) wrote into `dir`.
fn names(dir: &std::path::Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_senders_draining_the_outbox_at_once_send_each_reply_exactly_once() {
    let app = TestApp::start().await;
    queue_no_form_replies(&app, "two", 40).await;
    let a = postroom::reply::outbox::FileTransport { dir: app.dir.path().join("sender-a") };
    let b = postroom::reply::outbox::FileTransport { dir: app.dir.path().join("sender-b") };
    let store = &app.pipeline.store;
    let policy = postroom::reply::outbox::RetryPolicy {
        max_attempts: 3,
        retry_base_ms: 1000,
        lease_ms: 60_000,
        send_timeout_ms: 5_000,
    };
    let (da, db) = tokio::join!(
        postroom::reply::outbox::drain(store, &a, &policy),
        postroom::reply::outbox::drain(store, &b, &policy)
    );
    let (da, db) = (da.unwrap(), db.unwrap());
    assert_eq!(da.sent + db.sent, 40, "a: {da:?}, b: {db:?}");
    let (na, nb) = (names(&a.dir), names(&b.dir));
    assert_eq!(na.len() + nb.len(), 40);
    assert!(na.is_disjoint(&nb), "a reply was sent by both senders");
    assert_eq!(app.pipeline.store.outbox_counts().await.unwrap(), vec![("sent".to_string(), 40)]);
}

/// Writes replies like [`FileTransport`](postroom::reply::outbox::FileTransport) over `connections` sessions,
/// counting how many sends are under way at once. (Real sessions to Postfix: tests/smtp.rs.)
struct CountingTransport {
    files: postroom::reply::outbox::FileTransport,
    connections: usize,
    in_flight: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

impl postroom::reply::outbox::Transport for CountingTransport {
    async fn send(&self, reply: &postroom::store::DueReply) -> Result<(), postroom::reply::outbox::SendError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let sent = self.files.send(reply).await;
        self.in_flight.fetch_sub(1, SeqCst);
        sent
    }

    fn connections(&self) -> usize {
        self.connections
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_drain_sends_over_as_many_connections_as_the_transport_has_each_reply_once() {
    let app = TestApp::start().await;
    queue_no_form_replies(&app, "conn", 30).await;
    let sender = CountingTransport {
        files: postroom::reply::outbox::FileTransport { dir: app.dir.path().join("three") },
        connections: 3,
        in_flight: Default::default(),
        most: Default::default(),
    };
    let policy = postroom::reply::outbox::RetryPolicy {
        max_attempts: 3,
        retry_base_ms: 1000,
        lease_ms: 60_000,
        send_timeout_ms: 5_000,
    };
    let drained = postroom::reply::outbox::drain(&app.pipeline.store, &sender, &policy).await.unwrap();
    assert_eq!(drained.sent, 30, "{drained:?}");
    assert_eq!(names(&sender.files.dir).len(), 30, "every reply written once");
    assert_eq!(sender.most.load(std::sync::atomic::Ordering::SeqCst), 3, "three sends under way at once, never more");
    assert_eq!(app.pipeline.store.outbox_counts().await.unwrap(), vec![("sent".to_string(), 30)]);
    let attempts: Vec<i64> =
        sqlx::query_scalar("SELECT DISTINCT attempts FROM outbox").fetch_all(app.pipeline.store.pool()).await.unwrap();
    assert_eq!(attempts, vec![1], "no reply was tried twice");
}

/// Writes replies like [`FileTransport`](postroom::reply::outbox::FileTransport), slowly: a server slower
/// than the claim lease. (The real-server behaviour of sending is in tests/smtp.rs; this is about the claim.)
struct SlowTransport(postroom::reply::outbox::FileTransport, std::time::Duration);

impl postroom::reply::outbox::Transport for SlowTransport {
    async fn send(&self, reply: &postroom::store::DueReply) -> Result<(), postroom::reply::outbox::SendError> {
        tokio::time::sleep(self.1).await;
        self.0.send(reply).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_slower_than_its_claim_hands_replies_back_instead_of_racing_another_sender() {
    let app = TestApp::start().await;
    queue_no_form_replies(&app, "slow", 12).await;
    let dir = |name: &str| app.dir.path().join(name);
    // Each send takes 250 ms; a claim of ten lasts 1 s: without the hand-back the fast sender would take the
    // slow one's replies once its claim ran out, while the slow one was still sending them.
    let slow = SlowTransport(
        postroom::reply::outbox::FileTransport { dir: dir("slow") },
        std::time::Duration::from_millis(250),
    );
    let fast = postroom::reply::outbox::FileTransport { dir: dir("fast") };
    let store = &app.pipeline.store;
    let policy = postroom::reply::outbox::RetryPolicy {
        max_attempts: 3,
        retry_base_ms: 1000,
        lease_ms: 1_000,
        send_timeout_ms: 300,
    };
    let slow_drain = postroom::reply::outbox::drain(store, &slow, &policy);
    let fast_drain = async {
        // Starts once the slow sender has claimed, and keeps coming back like the daemon's outbox loop.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let mut sent = 0;
        for _ in 0..40 {
            sent += postroom::reply::outbox::drain(store, &fast, &policy).await.unwrap().sent;
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        sent
    };
    let (slow_done, fast_sent) = tokio::join!(slow_drain, fast_drain);
    let slow_sent = slow_done.unwrap().sent;
    let (ns, nf) = (names(&dir("slow")), names(&dir("fast")));
    assert!(ns.is_disjoint(&nf), "a reply was sent by both senders: {:?}", ns.intersection(&nf).collect::<Vec<_>>());
    assert_eq!((ns.len() + nf.len(), slow_sent + fast_sent), (12, 12), "slow {slow_sent}, fast {fast_sent}");
    assert!(!nf.is_empty() && !ns.is_empty(), "both senders sent: slow {ns:?}, fast {nf:?}");
    assert_eq!(app.pipeline.store.outbox_counts().await.unwrap(), vec![("sent".to_string(), 12)]);
}

#[tokio::test]
async fn a_message_that_cannot_be_filed_is_undone_alone_and_the_rest_of_its_batch_is_filed() {
    let app = TestApp::start().await;
    let pool = app.pipeline.store.pool();
    // The database refuses one form: the batch is filed optimistically first, fails, and is filed again
    // message by message.
    refuse_rows(&app, "submissions", "NEW.attachment_name = 'poison.docx'").await;
    let email = |id: &str, name: &str| {
        let form = app.form("death", |v| {
            v.insert("person_identifier".into(), text(name));
        });
        app.email(id, "x", vec![Attached::docx(name, form)])
    };
    let raws = [email("b1@x", "one.docx"), email("b2@x", "poison.docx"), email("b3@x", "three.docx")];
    let outcomes = process_batch(&app, &["b1", "b2", "b3"], &raws).await;
    assert_eq!(outcomes.len(), 3);
    assert_eq!(outcomes[0].as_ref().unwrap().outcome, "accepted");
    assert!(outcomes[1].as_ref().unwrap_err().to_string().contains("refused"), "{:?}", outcomes[1]);
    assert_eq!(outcomes[2].as_ref().unwrap().outcome, "accepted");
    let statuses: Vec<(String, String)> =
        sqlx::query_as("SELECT source_key, status FROM messages ORDER BY source_key").fetch_all(pool).await.unwrap();
    let statuses: Vec<(&str, &str)> = statuses.iter().map(|(k, s)| (k.as_str(), s.as_str())).collect();
    assert_eq!(statuses, [("b1", "accepted"), ("b2", "received"), ("b3", "accepted")], "b2 left to retry");
    let replies: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox").fetch_one(pool).await.unwrap();
    assert_eq!(replies, 2, "one reply each for the two filed, none for the one undone");
}

#[tokio::test]
async fn within_one_batch_a_repeated_form_is_a_duplicate_and_a_correction_is_linked_to_its_rejection() {
    let app = TestApp::start().await;
    let form = |person: &str, complete: bool| death_form(&app, person, complete);
    let first = form("P-1", true);
    let raws = [
        app.email("w1@x", "first", vec![Attached::docx("a.docx", first.clone())]),
        app.email("w2@x", "again", vec![Attached::docx("a.docx", first)]),
        app.email("w3@x", "incomplete", vec![Attached::docx("b.docx", form("P-2", false))]),
        app.email("w4@x", "corrected", vec![Attached::docx("b.docx", form("P-2", true))]),
    ];
    let outcomes: Vec<_> =
        process_batch(&app, &["w1", "w2", "w3", "w4"], &raws).await.into_iter().map(Result::unwrap).collect();
    let got: Vec<(&str, Option<&str>)> = outcomes.iter().map(|o| (o.outcome.as_str(), o.reason.as_deref())).collect();
    assert_eq!(
        got,
        [("accepted", None), ("duplicate", Some("duplicate:same_form")), ("rejected", None), ("accepted", None)]
    );
    assert_eq!(outcomes[1].references, outcomes[0].references, "the duplicate names the original's reference");
    let pool = app.pipeline.store.pool();
    let linked: Option<i64> = sqlx::query_scalar("SELECT resubmission_of FROM submissions WHERE message_id = $1")
        .bind(outcomes[3].ledger_id)
        .fetch_one(pool)
        .await
        .unwrap();
    let rejected: i64 = sqlx::query_scalar("SELECT id FROM submissions WHERE message_id = $1")
        .bind(outcomes[2].ledger_id)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(linked, Some(rejected), "the correction is linked to the rejection filed earlier in the batch");
}

#[tokio::test]
async fn within_one_batch_the_reply_budget_counts_the_replies_the_batch_queued() {
    let mut app = TestApp::start().await;
    app.pipeline.config.limits.max_no_form_replies_per_sender = 2;
    app.pipeline.config.limits.max_replies_per_sender = 3;
    let form = |person: &str| app.form("death", |v| drop(v.insert("person_identifier".into(), text(person))));
    let raws = [
        app.email("r1@x", "hello", vec![]),
        app.email("r2@x", "hello", vec![]),
        app.email("r3@x", "hello", vec![]),
        app.email("r4@x", "form", vec![Attached::docx("a.docx", form("P-1"))]),
        app.email("r5@x", "form", vec![Attached::docx("b.docx", form("P-2"))]),
    ];
    let outcomes: Vec<_> =
        process_batch(&app, &["r1", "r2", "r3", "r4", "r5"], &raws).await.into_iter().map(Result::unwrap).collect();
    let got: Vec<_> = outcomes.iter().map(|o| (o.outcome.as_str(), o.reason.as_deref(), o.reply.as_deref())).collect();
    assert_eq!(
        got,
        [
            ("rejected", None, Some("no_form")),
            ("rejected", None, Some("no_form")),
            ("quarantined", Some("rate:flood"), None),
            ("accepted", None, Some("confirmation")),
            ("quarantined", Some("rate:flood"), None),
        ],
        "two no-form replies, then three replies in all"
    );
    let pool = app.pipeline.store.pool();
    let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql).fetch_one(pool);
    assert_eq!(count("SELECT COUNT(*) FROM outbox").await.unwrap(), 3);
    assert_eq!(count("SELECT COUNT(*) FROM audit WHERE action LIKE 'filed:%'").await.unwrap(), 5);
    let no_form_problems = "SELECT COUNT(*) FROM problems WHERE code = 'no_form'";
    assert_eq!(count(no_form_problems).await.unwrap(), 3, "each email without a form has its problem filed");
}

#[tokio::test]
async fn a_row_refused_when_the_batch_writes_its_problems_undoes_only_that_message() {
    let app = TestApp::start().await;
    // Problems are written together at the end of the batch; one refused there sends the batch back to be
    // filed message by message.
    refuse_rows(&app, "problems", "NEW.code = 'no_form'").await;
    let form = |person: &str| app.form("death", |v| drop(v.insert("person_identifier".into(), text(person))));
    let raws = [
        app.email("d1@x", "form", vec![Attached::docx("a.docx", form("P-1"))]),
        app.email("d2@x", "no form", vec![]),
        app.email("d3@x", "form", vec![Attached::docx("b.docx", form("P-2"))]),
    ];
    let outcomes = process_batch(&app, &["d1", "d2", "d3"], &raws).await;
    assert_eq!(outcomes[0].as_ref().unwrap().outcome, "accepted");
    assert!(outcomes[1].as_ref().unwrap_err().to_string().contains("refused"), "{:?}", outcomes[1]);
    assert_eq!(outcomes[2].as_ref().unwrap().outcome, "accepted");
    let pool = app.pipeline.store.pool();
    let statuses: Vec<(String, String)> =
        sqlx::query_as("SELECT source_key, status FROM messages ORDER BY source_key").fetch_all(pool).await.unwrap();
    let statuses: Vec<(&str, &str)> = statuses.iter().map(|(k, s)| (k.as_str(), s.as_str())).collect();
    assert_eq!(statuses, [("d1", "accepted"), ("d2", "received"), ("d3", "accepted")], "d2 left to retry");
    let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql).fetch_one(pool);
    assert_eq!(count("SELECT COUNT(*) FROM outbox").await.unwrap(), 2, "no reply for the message undone");
    assert_eq!(count("SELECT COUNT(*) FROM audit WHERE action LIKE 'filed:%'").await.unwrap(), 2);
}

#[tokio::test]
async fn a_batch_files_its_problems_against_the_submissions_they_are_about() {
    let app = TestApp::start().await;
    let form = |person: &str, complete: bool| death_form(&app, person, complete);
    let raws = [
        app.email(
            "s1@x",
            "two forms",
            vec![Attached::docx("a.docx", form("P-1", true)), Attached::docx("b.docx", form("P-2", false))],
        ),
        app.email("s2@x", "one", vec![Attached::docx("c.docx", form("P-3", false))]),
    ];
    let outcomes: Vec<_> = process_batch(&app, &["s1", "s2"], &raws).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(outcomes.iter().map(|o| o.outcome.as_str()).collect::<Vec<_>>(), ["rejected", "rejected"]);
    let pool = app.pipeline.store.pool();
    // Each missing event date is filed against its own form's submission; none against the complete form.
    let rows: Vec<(i64, Option<i64>, String)> = sqlx::query_as(
        "SELECT p.message_id, p.form_index, s.attachment_name FROM problems p \
         JOIN submissions s ON s.id = p.submission_id WHERE p.code = 'required_missing' ORDER BY p.message_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let (m1, m2) = (outcomes[0].ledger_id, outcomes[1].ledger_id);
    assert_eq!(rows, [(m1, Some(1), "b.docx".to_string()), (m2, Some(0), "c.docx".to_string())]);
    let unlinked: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM problems WHERE form_index IS NOT NULL AND submission_id IS NULL")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(unlinked, 0);
}

#[tokio::test]
async fn a_message_filed_elsewhere_while_its_batch_waited_is_filed_once() {
    let app = TestApp::start().await;
    let form = |person: &str| app.form("death", |v| drop(v.insert("person_identifier".into(), text(person))));
    // The middle one has no form: no submission whose unique (message, form) could refuse a second filing.
    let raws = [
        app.email("f1@x", "form", vec![Attached::docx("a.docx", form("P-1"))]),
        app.email("f2@x", "no form", vec![]),
        app.email("f3@x", "form", vec![Attached::docx("b.docx", form("P-3"))]),
    ];
    let batch = incoming(&["f1", "f2", "f3"], &raws);
    let mb = app.pipeline.config.mailbox("notifications").unwrap().clone();
    let staged = app.pipeline.stage(&mb, &batch).await.unwrap();
    // Another worker (a second instance, or staff re-processing) files the middle message meanwhile.
    let elsewhere = app.pipeline.process(&mb, "f2", &raws[1], chrono::Utc::now()).await.unwrap();
    assert_eq!(elsewhere.outcome, "rejected");
    let outcomes = app.pipeline.file_staged(&mb, &batch, staged).await.unwrap();
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let pool = app.pipeline.store.pool();
    let per_message: Vec<(String, String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT m.source_key, m.status, \
         (SELECT COUNT(*) FROM submissions s WHERE s.message_id = m.id), \
         (SELECT COUNT(*) FROM problems p WHERE p.message_id = m.id), \
         (SELECT COUNT(*) FROM outbox o WHERE o.message_id = m.id), \
         (SELECT COUNT(*) FROM audit a WHERE a.message_id = m.id AND a.action LIKE 'filed:%') \
         FROM messages m ORDER BY m.source_key",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let per_message: Vec<_> =
        per_message.iter().map(|(k, s, n, p, o, a)| (k.as_str(), s.as_str(), *n, *p, *o, *a)).collect();
    assert_eq!(
        per_message,
        [("f1", "accepted", 1, 0, 1, 1), ("f2", "rejected", 0, 1, 1, 1), ("f3", "accepted", 1, 0, 1, 1)],
        "(key, status, submissions, problems, replies, audit entries): each filed once"
    );
}

/// A filled death notification about `person`; without its event date unless `complete`.
fn death_form(app: &TestApp, person: &str, complete: bool) -> Vec<u8> {
    app.form("death", |v| {
        v.insert("person_identifier".into(), text(person));
        if !complete {
            v.remove("event_date");
        }
    })
}

/// Makes the database refuse (with the error "refused") every row inserted into `table` for which the
/// SQL condition `when` on `NEW` holds.
async fn refuse_rows(app: &TestApp, table: &str, when: &str) {
    let pool = app.pipeline.store.pool();
    let statements = match app.pipeline.store.backend() {
        postroom::store::Backend::Sqlite => vec![format!(
            "CREATE TRIGGER refuse BEFORE INSERT ON {table} WHEN {when} BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )],
        postroom::store::Backend::Postgres => vec![
            format!(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN IF {when} THEN RAISE EXCEPTION 'refused'; \
                 END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
            ),
            format!("CREATE TRIGGER refuse BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION refuse()"),
        ],
    };
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await.unwrap();
    }
}

/// `raws` as arriving under `keys`, now.
fn incoming<'a>(keys: &[&'a str], raws: &'a [Vec<u8>]) -> Vec<postroom::pipeline::Incoming<'a>> {
    let now = chrono::Utc::now();
    let arriving = raws.iter().zip(keys);
    arriving.map(|(raw, key)| postroom::pipeline::Incoming { source_key: key, raw, received_at: now }).collect()
}

/// Files `raws` under `keys` as one batch in the notifications mailbox.
async fn process_batch(
    app: &TestApp,
    keys: &[&str],
    raws: &[Vec<u8>],
) -> Vec<Result<postroom::pipeline::Outcome, postroom::pipeline::PipelineError>> {
    let batch = incoming(keys, raws);
    let mb = app.pipeline.config.mailbox("notifications").unwrap().clone();
    app.pipeline.process_batch(&mb, &batch).await.unwrap()
}
