//! Every problem code, reached through the real pipeline: one email per code, asserting the code, the
//! field and the value quoted back; and a check that no code in `ProblemCode::ALL` lacks its case.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use common::TestApp;
use postroom::forms::Value;
use postroom::samples::Attached;

struct Case {
    code: &'static str,
    field: Option<&'static str>,
    value: Option<String>,
    form_index: Option<usize>,
    raw: Vec<u8>,
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/attachments/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// A rendered form with one extra zip entry (a macro project, say).
fn with_entry(docx: &[u8], name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(docx)).unwrap();
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for i in 0..archive.len() {
        let file = archive.by_index(i).unwrap();
        out.raw_copy_file(file).unwrap();
    }
    out.start_file(name, zip::write::SimpleFileOptions::default()).unwrap();
    out.write_all(bytes).unwrap();
    out.finish().unwrap().into_inner()
}

fn cases(app: &TestApp) -> Vec<Case> {
    let mut n = 0;
    let mut mail = |from: &str, atts: Vec<Attached>| {
        n += 1;
        app.email_from(from, &format!("pc{n}@x.example"), "notification", atts)
    };
    let jane = "jane.smith@oakfield-care.example";
    let form = |id: &str, change: &dyn Fn(&mut BTreeMap<String, Value>)| app.form(id, |v| change(v));
    let docx = |b: Vec<u8>| vec![Attached::docx("form.docx", b)];
    let edit = |key: &'static str, value: &'static str| {
        move |v: &mut BTreeMap<String, Value>| {
            v.insert(key.into(), text(value));
        }
    };
    let case = |code, field, value: Option<&str>, form_index, raw| Case {
        code,
        field,
        value: value.map(String::from),
        form_index,
        raw,
    };
    let death = form("death", &|_| {});
    let not_ours = {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        w.start_file("word/document.xml", zip::write::SimpleFileOptions::default()).unwrap();
        w.write_all(br#"<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>Minutes of the meeting</w:t></w:r></w:p></w:body></w:document>"#).unwrap();
        w.finish().unwrap().into_inner()
    };
    let unknown_version = {
        let mut def = app.def("death");
        def.version = postroom::forms::Version::parse("2024.7").unwrap();
        let values = postroom::samples::filled(&def, &common::notifier(), app.today());
        postroom::forms::render::render(&def, Some(&values)).unwrap()
    };
    let two_boxes = form("death", &|v| {
        v.insert("death_place".into(), Value::Choices(vec!["at_location".into(), "hospital".into()]));
    });
    let big = vec![b'x'; 2 * 1024 * 1024];
    vec![
        case("no_form", None, None, None, mail(jane, vec![])),
        case(
            "not_word",
            None,
            Some("form.pdf"),
            Some(0),
            mail(
                jane,
                vec![Attached {
                    filename: "form.pdf".into(),
                    content_type: "application/pdf".into(),
                    bytes: b"%PDF-1.7\n".to_vec(),
                }],
            ),
        ),
        case(
            "legacy_doc",
            None,
            Some("death.doc"),
            Some(0),
            mail(
                jane,
                vec![Attached {
                    filename: "death.doc".into(),
                    content_type: "application/msword".into(),
                    bytes: fixture("death.doc"),
                }],
            ),
        ),
        case("encrypted", None, Some("form.docx"), Some(0), mail(jane, docx(fixture("death-encrypted.docx")))),
        case(
            "macro_enabled",
            None,
            Some("form.docx"),
            Some(0),
            mail(jane, docx(with_entry(&death, "word/vbaProject.bin", b"\xd0\xcf\x11\xe0"))),
        ),
        case("corrupt_file", None, Some("form.docx"), Some(0), mail(jane, docx(death[..death.len() / 2].to_vec()))),
        case("file_too_large", None, Some("huge.docx"), None, mail(jane, vec![Attached::docx("huge.docx", big)])),
        case("unknown_form", None, Some("form.docx"), Some(0), mail(jane, docx(not_ours))),
        case("stale_form_version", Some("form_version"), Some("2025.1"), Some(0), {
            let old = app.pipeline.catalog.get("death", "2025.1").unwrap().clone();
            let values = postroom::samples::filled(&old, &common::notifier(), app.today());
            mail(jane, docx(postroom::forms::render::render(&old, Some(&values)).unwrap()))
        }),
        case("unknown_form_version", Some("form_version"), Some("2024.7"), Some(0), mail(jane, docx(unknown_version))),
        case("wrong_mailbox", None, None, Some(0), mail(jane, docx(form("detained_absence", &|_| {})))),
        case(
            "required_missing",
            Some("event_date"),
            None,
            Some(0),
            mail(
                jane,
                docx(form("death", &|v| {
                    v.remove("event_date");
                })),
            ),
        ),
        case(
            "invalid_date",
            Some("event_date"),
            Some("31/02/2026"),
            Some(0),
            mail(jane, docx(form("death", &edit("event_date", "31/02/2026")))),
        ),
        case(
            "date_in_future",
            Some("event_date"),
            Some("01/01/2099"),
            Some(0),
            mail(jane, docx(form("death", &edit("event_date", "01/01/2099")))),
        ),
        case(
            "date_too_old",
            Some("event_date"),
            Some("01/01/1899"),
            Some(0),
            mail(jane, docx(form("death", &edit("event_date", "01/01/1899")))),
        ),
        case(
            "invalid_time",
            Some("event_time"),
            Some("25:61"),
            Some(0),
            mail(jane, docx(form("death", &edit("event_time", "25:61")))),
        ),
        case(
            "invalid_choice",
            Some("death_place"),
            Some("at_location, hospital"),
            Some(0),
            mail(jane, docx(two_boxes)),
        ),
        case(
            "invalid_provider_id",
            Some("provider_id"),
            Some("1-12"),
            Some(0),
            mail(jane, docx(form("death", &edit("provider_id", "1-12")))),
        ),
        case(
            "invalid_location_id",
            Some("location_id"),
            Some("L-77"),
            Some(0),
            mail(jane, docx(form("death", &edit("location_id", "L-77")))),
        ),
        case(
            "invalid_email",
            Some("notifier_email"),
            Some("jane at oakfield"),
            Some(0),
            mail(jane, docx(form("death", &edit("notifier_email", "jane at oakfield")))),
        ),
        case(
            "invalid_phone",
            Some("notifier_phone"),
            Some("12"),
            Some(0),
            mail(jane, docx(form("death", &edit("notifier_phone", "12")))),
        ),
        case(
            "invalid_number",
            Some("people_affected"),
            Some("several"),
            Some(0),
            mail(jane, docx(form("event_stopping_service", &edit("people_affected", "several")))),
        ),
        case(
            "unknown_provider",
            Some("provider_id"),
            Some("1-999999999"),
            Some(0),
            mail(jane, docx(form("death", &edit("provider_id", "1-999999999")))),
        ),
        case(
            "provider_deregistered",
            Some("provider_id"),
            Some("1-303030303"),
            Some(0),
            mail(jane, docx(form("death", &edit("provider_id", "1-303030303")))),
        ),
        case(
            "unknown_location",
            Some("location_id"),
            Some("1-9999999999"),
            Some(0),
            mail(jane, docx(form("death", &edit("location_id", "1-9999999999")))),
        ),
        case(
            "location_deregistered",
            Some("location_id"),
            Some("1-1000210671"),
            Some(0),
            mail("tom.oak@oakfield-care.example", docx(form("death", &edit("location_id", "1-1000210671")))),
        ),
        case(
            "location_not_of_provider",
            Some("location_id"),
            Some("1-2000000001"),
            Some(0),
            mail(jane, docx(form("death", &edit("location_id", "1-2000000001")))),
        ),
        case("sender_not_registered", None, None, None, mail("nobody@elsewhere.example", docx(death.clone()))),
        case("sender_not_at_provider", None, None, Some(0), mail("ann.birch@birchwood.example", docx(death.clone()))),
        case("email_multiple_roles", None, None, None, mail("office@oakfield-care.example", docx(death.clone()))),
        case(
            "manager_not_at_location",
            Some("location_id"),
            Some("1-1000210670"),
            Some(0),
            mail(jane, docx(form("death", &edit("location_id", "1-1000210670")))),
        ),
    ]
}

#[tokio::test]
async fn every_problem_code_is_reached_with_its_field_and_the_value_quoted() {
    let mut app = TestApp::start().await;
    // A small attachment limit so the oversize case stays small.
    app.pipeline.config.limits.max_attachment_bytes = 1024 * 1024;
    let cases = cases(&app);
    let mut covered = BTreeSet::new();
    for (i, c) in cases.iter().enumerate() {
        let o = app.process(&format!("case-{i}"), &c.raw).await;
        let found = o.problems.iter().find(|p| p.code.as_str() == c.code);
        let Some(p) = found else { panic!("{}: not reported; got {:?}", c.code, common::codes(&o)) };
        assert_eq!(o.outcome, "rejected", "{}", c.code);
        assert_eq!(p.field.as_deref(), c.field, "{}: field", c.code);
        assert_eq!(p.form_index, c.form_index, "{}: form_index", c.code);
        if let Some(v) = &c.value {
            assert_eq!(p.value.as_deref(), Some(v.as_str()), "{}: quoted value", c.code);
        }
        assert!(!p.message.is_empty() && !p.hint.is_empty(), "{}: message and hint", c.code);
        covered.insert(c.code);
    }
    let all: BTreeSet<&str> = postroom::problem::ProblemCode::ALL.iter().map(|c| c.as_str()).collect();
    let missing: Vec<_> = all.difference(&covered).collect();
    assert!(missing.is_empty(), "problem codes with no case: {missing:?}");
}
