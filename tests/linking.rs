//! Notifications that belong together are linked: a return to its absence, a correction to its rejection;
//! the delay between event and receipt is recorded for staff; a zip bomb is quarantined, not answered.

mod common;

use std::io::Write;

use common::TestApp;
use postroom::forms::Value;
use postroom::samples::Attached;
use sqlx::Row;

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

async fn column(app: &TestApp, reference: &str, column: &str) -> Option<i64> {
    let sql = format!("SELECT {column} AS v FROM submissions WHERE reference = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(reference).fetch_one(app.pipeline.store.pool()).await.unwrap();
    row.try_get::<Option<i64>, _>("v").unwrap()
}

async fn id_of(app: &TestApp, reference: &str) -> i64 {
    let row = sqlx::query("SELECT id FROM submissions WHERE reference = $1")
        .bind(reference)
        .fetch_one(app.pipeline.store.pool())
        .await
        .unwrap();
    row.get::<i64, _>("id")
}

#[tokio::test]
async fn a_return_is_linked_to_its_absence_by_the_person_or_by_the_quoted_reference() {
    let app = TestApp::start().await;
    // Detained patient: part 2 names no reference; the same person identifier links it.
    let absence = app.form("detained_absence", |v| {
        v.insert("person_identifier".into(), text("PT-0042"));
    });
    let part1 = app
        .process_in("mental_health", "a1", &app.email("a1@x", "absence", vec![Attached::docx("a.docx", absence)]))
        .await;
    assert_eq!(part1.outcome, "accepted", "{:?}", part1.problems);
    let back = app.form("detained_absence_return", |v| {
        v.insert("person_identifier".into(), text(" pt-0042 "));
        v.remove("first_part_reference");
    });
    let part2 = app
        .process_in("mental_health", "a2", &app.email("a2@x", "returned", vec![Attached::docx("r.docx", back)]))
        .await;
    assert_eq!(part2.outcome, "accepted", "{:?}", part2.problems);
    assert_eq!(column(&app, &part2.references[0], "first_part").await, Some(id_of(&app, &part1.references[0]).await));

    // Registered manager: the return quotes the absence's reference.
    let absence = app.form("manager_absence", |_| {});
    let m1 = app.process("m1", &app.email("m1@x", "absence", vec![Attached::docx("a.docx", absence)])).await;
    assert_eq!(m1.outcome, "accepted", "{:?}", m1.problems);
    let quoted = m1.references[0].clone();
    let back = app.form("manager_return", |v| {
        v.insert("first_part_reference".into(), text(&quoted));
        v.insert("absent_person_name".into(), text("Someone Else Entirely"));
    });
    let m2 = app.process("m2", &app.email("m2@x", "back", vec![Attached::docx("r.docx", back)])).await;
    assert_eq!(m2.outcome, "accepted", "{:?}", m2.problems);
    assert_eq!(column(&app, &m2.references[0], "first_part").await, Some(id_of(&app, &quoted).await));
    postroom::daemon::deliver_replies(&app.pipeline).await.unwrap();
    let reply = app.outbox().into_iter().find(|r| r.contains(&m2.references[0])).unwrap();
    assert!(reply.contains(&format!("Completes:      {quoted}")), "{reply}");
}

#[tokio::test]
async fn a_correction_without_the_reference_is_linked_to_the_open_rejection_and_the_delay_is_recorded() {
    let app = TestApp::start().await;
    let bad = app.form("abuse", |v| {
        v.remove("person_identifier");
    });
    let first = app.process("1", &app.email("c1@x", "Abuse", vec![Attached::docx("a.docx", bad)])).await;
    assert_eq!(first.outcome, "rejected");
    let good = app.form("abuse", |_| {});
    let second = app.process("2", &app.email("c2@x", "Abuse (corrected)", vec![Attached::docx("a.docx", good)])).await;
    assert_eq!(second.outcome, "accepted", "{:?}", second.problems);
    assert_eq!(
        column(&app, &second.references[0], "resubmission_of").await,
        Some(id_of(&app, &first.references[0]).await)
    );
    // The sample event was two days ago at 14:30, London time.
    let delay = column(&app, &second.references[0], "receipt_delay_minutes").await.unwrap();
    assert!((24 * 60..=3 * 24 * 60).contains(&delay), "delay {delay} minutes");
}

#[tokio::test]
async fn a_zip_bomb_posing_as_a_form_is_quarantined_and_not_answered() {
    let app = TestApp::start().await;
    let docx = app.form("death", |_| {});
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(docx)).unwrap();
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).unwrap();
        if file.name().unwrap() == "word/document.xml" {
            let mut xml = String::new();
            std::io::Read::read_to_string(&mut file, &mut xml).unwrap();
            let at = xml.find("<w:body>").unwrap() + "<w:body>".len();
            out.start_file("word/document.xml", zip::write::SimpleFileOptions::default()).unwrap();
            out.write_all(&xml.as_bytes()[..at]).unwrap();
            // 60 MiB of whitespace: compresses to a few tens of KiB.
            let chunk = vec![b' '; 1 << 20];
            for _ in 0..60 {
                out.write_all(&chunk).unwrap();
            }
            out.write_all(&xml.as_bytes()[at..]).unwrap();
        } else {
            out.raw_copy_file(file).unwrap();
        }
    }
    let bomb = out.finish().unwrap().into_inner();
    assert!(bomb.len() < 2 * 1024 * 1024, "the bomb itself is small: {} bytes", bomb.len());
    let o = app.process("bomb", &app.email("z@x", "form", vec![Attached::docx("death.docx", bomb)])).await;
    assert_eq!(
        (o.outcome.as_str(), o.reason.as_deref(), o.reply.as_deref()),
        ("quarantined", Some("size:zip_bomb"), None)
    );
}
