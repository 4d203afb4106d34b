//! `postroom demo`: a workspace with a synthetic registry, the blank forms, and a mailbox of sample
//! notifications (valid ones and every common mistake), processed by the real pipeline, with a table of
//! what became of each email and where its reply was written.

use std::path::PathBuf;

use chrono::Utc;
use chrono_tz::Europe::London;

use crate::daemon::{self, Shutdown};
use crate::forms::{FormDef, Value};
use crate::mailbox::Maildir;
use crate::pipeline::{Outcome, Pipeline};
use crate::registry::synthetic::{self, Sample, Synthetic};
use crate::registry::{CsvInput, import_bytes};
use crate::reply::outbox::FileTransport;
use crate::reply::{ReplyKind, reply_message_id};
use crate::samples::{self, Attached, Notifier};

/// An edit to a sample form's answers, making one of the common mistakes.
type Change = dyn Fn(&mut std::collections::BTreeMap<String, Value>);

/// One row of the demo's table.
pub struct Row {
    pub case: String,
    pub outcome: Outcome,
    pub reply_file: Option<PathBuf>,
}

struct Letter {
    case: String,
    mailbox: &'static str,
    raw: Vec<u8>,
}

fn notifier(s: &Sample) -> Notifier {
    Notifier {
        name: s.name.clone(),
        email: s.email.clone(),
        provider_id: s.provider_id.clone(),
        provider_name: s.provider_name.clone(),
        location_id: s.location_id.clone(),
        location_name: s.location_name.clone(),
    }
}

/// Builds the workspace, fills the mailboxes, processes everything, and returns the table's rows.
pub async fn run(p: &Pipeline, seed: u64, providers: usize, locations: usize) -> anyhow::Result<Vec<Row>> {
    let ws = p.config.workspace.dir.join("var");
    let syn = synthetic::generate(seed, providers, locations);
    let demo_dir = ws.join("demo");
    std::fs::create_dir_all(&demo_dir)?;
    std::fs::write(demo_dir.join("care-directory-earlier.csv"), &syn.earlier_care_directory)?;
    std::fs::write(demo_dir.join("care-directory.csv"), &syn.care_directory)?;
    std::fs::write(demo_dir.join("people.csv"), &syn.people)?;
    // Two imports, so some providers and locations are deregistered (told apart from mistyped IDs).
    import_bytes(
        &p.store,
        Some(CsvInput { name: "care-directory-earlier.csv", bytes: syn.earlier_care_directory.as_bytes() }),
        None,
    )
    .await?;
    let report = import_bytes(
        &p.store,
        Some(CsvInput { name: "care-directory.csv", bytes: syn.care_directory.as_bytes() }),
        Some(CsvInput { name: "people.csv", bytes: syn.people.as_bytes() }),
    )
    .await?;
    println!(
        "registry: {} providers, {} locations, {} people roles imported (seed {seed}); {} providers and {} locations deregistered",
        report.providers.listed,
        report.locations.listed,
        report.people.listed,
        report.providers.deregistered,
        report.locations.deregistered
    );

    let forms_dir = ws.join("forms");
    std::fs::create_dir_all(&forms_dir)?;
    for def in p.catalog.current_forms() {
        std::fs::write(
            forms_dir.join(format!("{}-{}.docx", def.id, def.version)),
            crate::forms::render::render(def, None)?,
        )?;
    }
    println!("blank forms: {}", forms_dir.display());

    let letters = letters(p, &syn)?;
    let mut cases = std::collections::HashMap::new();
    for (order, letter) in letters.iter().enumerate() {
        let mb = p.config.mailbox(letter.mailbox).or(p.config.mailboxes.first());
        let Some(path) = mb.and_then(|m| m.path.clone()) else {
            anyhow::bail!("mailbox {} has no Maildir path", letter.mailbox)
        };
        let key = Maildir::open(&path)?.deliver(&letter.raw)?;
        cases.insert(key, (order, letter.case.clone(), crate::sha256_hex(&letter.raw)));
        // Distinct Maildir names, in delivery order.
        tokio::time::sleep(std::time::Duration::from_micros(5)).await;
    }
    println!("mailbox: {} sample emails delivered\n", letters.len());

    let (_stop, shutdown) = Shutdown::new();
    let mut rows = Vec::new();
    for mb in p.config.mailboxes.clone() {
        let transport = FileTransport { dir: p.config.outbox.dir.clone() };
        for (key, outcome) in daemon::drain_maildir(p, &mb.name, &shutdown).await? {
            let (order, case, sha) = cases
                .get(&key)
                .cloned()
                .unwrap_or_else(|| (usize::MAX, "(already in the mailbox)".into(), String::new()));
            let kind = match outcome.reply.as_deref() {
                Some("confirmation") => Some(ReplyKind::Confirmation),
                Some("rejection") => Some(ReplyKind::Rejection),
                Some("no_form") => Some(ReplyKind::NoForm),
                _ => None,
            };
            let reply_file = kind.map(|k| transport.path_for(&reply_message_id(k, &sha, &mb.address)));
            rows.push((order, Row { case, outcome, reply_file }));
        }
    }
    rows.sort_by_key(|(order, _)| *order);
    let rows: Vec<Row> = rows.into_iter().map(|(_, r)| r).collect();
    daemon::deliver_replies(p).await?;
    Ok(rows)
}

/// The sample emails: valid notifications from every kind of registered sender, then each common mistake.
fn letters(p: &Pipeline, syn: &Synthetic) -> anyhow::Result<Vec<Letter>> {
    let s = &syn.samples;
    let today = Utc::now().with_timezone(&London).date_naive();
    let def = |id: &str| p.catalog.current(id).cloned().ok_or_else(|| anyhow::anyhow!("no form {id}"));
    let serial = std::cell::Cell::new(0);
    let docx = |d: &FormDef, who: &Notifier, change: &dyn Fn(&mut std::collections::BTreeMap<String, Value>)| {
        let mut values = samples::filled(d, who, today);
        // Each sample is its own notification (otherwise identical forms are rightly duplicates).
        serial.set(serial.get() + 1);
        values.insert("provider_reference".into(), Value::Text(format!("DEMO-{:03}", serial.get())));
        change(&mut values);
        crate::forms::render::render(d, Some(&values))
    };
    let mut out = Vec::new();
    let mut n = 0;
    let mut send =
        |case: String, mailbox: &'static str, from: &str, subject: &str, atts: Vec<Attached>| -> anyhow::Result<()> {
            n += 1;
            let to = p.config.mailbox(mailbox).map(|m| m.address.clone()).unwrap_or_default();
            let raw = samples::email(from, &to, subject, &format!("demo-{n}@provider.example"), atts)
                .map_err(anyhow::Error::msg)?;
            out.push(Letter { case, mailbox, raw });
            Ok(())
        };
    let same = |_: &mut std::collections::BTreeMap<String, Value>| {};
    let manager = notifier(&s.manager);

    // Valid: every notifications-mailbox form from the registered manager.
    for d in p.catalog.current_forms().filter(|d| d.mailbox == "notifications") {
        let f = docx(d, &manager, &same)?;
        send(
            format!("valid {} (registered manager)", d.id),
            "notifications",
            &manager.email,
            &d.title,
            vec![Attached::docx(&format!("{}.docx", d.id), f)],
        )?;
    }
    // Valid: the other senders who may notify.
    let others = [
        ("nominated individual, another location", {
            let mut n = notifier(&s.nominated_individual);
            n.location_id = s.other_location.location_id.clone();
            n
        }),
        ("delegate", notifier(&s.delegate)),
        ("nominated individual who is also the manager", notifier(&s.ni_also_manager)),
        ("manager of two locations, the second", {
            let mut n = notifier(&s.manager_of_two);
            n.location_id = s.second_location.location_id.clone();
            n
        }),
        ("NHS trust codes", notifier(&s.nhs)),
    ];
    for (who, n) in &others {
        for id in ["death", "abuse", "serious_injury", "police_incident"] {
            let d = def(id)?;
            send(
                format!("valid {id} ({who})"),
                "notifications",
                &n.email,
                &d.title,
                vec![Attached::docx("form.docx", docx(&d, n, &same)?)],
            )?;
        }
    }
    // Valid: the mental-health mailbox's own forms.
    for id in ["detained_absence", "detained_absence_return"] {
        let d = def(id)?;
        send(
            format!("valid {id} (mental health mailbox)"),
            "mental_health",
            &manager.email,
            &d.title,
            vec![Attached::docx("form.docx", docx(&d, &manager, &same)?)],
        )?;
    }

    // The common mistakes.
    let death = def("death")?;
    let set = |k: &'static str, v: String| {
        move |m: &mut std::collections::BTreeMap<String, Value>| {
            m.insert(k.to_string(), Value::Text(v.clone()));
        }
    };
    let mistakes: Vec<(&str, Box<Change>)> = vec![
        ("wrong location ID (mistyped)", Box::new(set("location_id", "1-999999999".into()))),
        ("location of another provider", Box::new(set("location_id", s.shared_inbox.location_ids[0].clone()))),
        ("deregistered location", Box::new(set("location_id", s.deregistered_location.location_id.clone()))),
        ("location managed by someone else", Box::new(set("location_id", s.other_location.location_id.clone()))),
        ("deregistered provider ID", Box::new(set("provider_id", s.deregistered_provider.provider_id.clone()))),
        ("badly formed provider ID", Box::new(set("provider_id", "1-10164".into()))),
        (
            "date of death in the future",
            Box::new(set("event_date", (today + chrono::Duration::days(5)).format("%d/%m/%Y").to_string())),
        ),
        ("impossible date", Box::new(set("event_date", "31/02/2026".into()))),
        (
            "missing required fields",
            Box::new(|m: &mut std::collections::BTreeMap<String, Value>| {
                m.remove("event_date");
                m.remove("person_identifier");
            }),
        ),
    ];
    for (case, change) in &mistakes {
        send(
            case.to_string(),
            "notifications",
            &manager.email,
            &death.title,
            vec![Attached::docx("death.docx", docx(&death, &manager, change.as_ref())?)],
        )?;
    }
    let abuse = def("abuse")?;
    send(
        "missing answer required by another answer".into(),
        "notifications",
        &manager.email,
        &abuse.title,
        vec![Attached::docx(
            "abuse.docx",
            docx(&abuse, &manager, &|m| {
                m.insert("police_informed".into(), Value::Choices(vec!["yes".into()]));
                m.remove("police_reference");
            })?,
        )],
    )?;
    let outsider = Notifier { email: s.unregistered_email.clone(), ..manager.clone() };
    send(
        "unregistered sender".into(),
        "notifications",
        &outsider.email,
        &death.title,
        vec![Attached::docx("death.docx", docx(&death, &outsider, &same)?)],
    )?;
    let shared = Notifier {
        email: s.shared_inbox.email.clone(),
        provider_id: s.shared_inbox.provider_id.clone(),
        provider_name: s.shared_inbox.provider_name.clone(),
        location_id: s.shared_inbox.location_ids[0].clone(),
        ..manager.clone()
    };
    send(
        "email shared by two managers".into(),
        "notifications",
        &shared.email,
        &death.title,
        vec![Attached::docx("death.docx", docx(&death, &shared, &same)?)],
    )?;
    if let Some(old) = p.catalog.get("death", "2025.1") {
        send(
            "stale form version".into(),
            "notifications",
            &manager.email,
            &old.title,
            vec![Attached::docx("death-old.docx", docx(old, &manager, &same)?)],
        )?;
    }
    send("no attachment".into(), "notifications", &manager.email, "Notification of death", vec![])?;
    send(
        "a PDF instead of the form".into(),
        "notifications",
        &manager.email,
        "Notification",
        vec![Attached {
            filename: "notification.pdf".into(),
            content_type: "application/pdf".into(),
            bytes: b"%PDF-1.7\n1 0 obj <<>> endobj\n%%EOF\n".to_vec(),
        }],
    )?;
    let police = def("police_incident")?;
    let injury = def("serious_injury")?;
    send(
        "two valid forms in one email".into(),
        "notifications",
        &manager.email,
        "Two notifications",
        vec![
            Attached::docx("police.docx", docx(&police, &manager, &same)?),
            Attached::docx(
                "injury.docx",
                docx(&injury, &manager, &|m| {
                    m.insert("event_time".into(), Value::Text("09:15".into()));
                })?,
            ),
        ],
    )?;
    send(
        "two forms, the second with a wrong location".into(),
        "notifications",
        &manager.email,
        "Two notifications",
        vec![
            Attached::docx(
                "police.docx",
                docx(&police, &manager, &|m| {
                    m.insert("event_time".into(), Value::Text("11:00".into()));
                })?,
            ),
            Attached::docx(
                "injury.docx",
                docx(&injury, &manager, &|m| {
                    m.insert("location_id".into(), Value::Text("1-999999998".into()));
                })?,
            ),
        ],
    )?;
    let detained = def("detained_absence")?;
    send(
        "mental-health form sent to the wrong mailbox".into(),
        "notifications",
        &manager.email,
        &detained.title,
        vec![Attached::docx("absence.docx", docx(&detained, &manager, &same)?)],
    )?;
    let ooo = samples::email(
        &manager.email,
        "notifications@postroom.localhost",
        "Automatic reply: Notification received",
        "demo-ooo@provider.example",
        vec![],
    )
    .map_err(anyhow::Error::msg)?;
    out.push(Letter {
        case: "an out-of-office auto-reply".into(),
        mailbox: "notifications",
        raw: [b"Auto-Submitted: auto-replied\r\n".as_slice(), &ooo].concat(),
    });
    if let Some(first) = out.first() {
        let again = Letter {
            case: "the first email, delivered twice".into(),
            mailbox: "notifications",
            raw: [b"Received: from relay2.provider.example\r\n".as_slice(), &first.raw].concat(),
        };
        out.push(again);
    }
    Ok(out)
}

/// Prints the demo's table.
pub fn print(rows: &[Row], workspace: &std::path::Path) {
    println!("{:<3} {:<58} {:<12} {:<38} reply", "#", "email", "outcome", "reference / problems");
    for (i, r) in rows.iter().enumerate() {
        let o = &r.outcome;
        let what = if o.problems.is_empty() {
            if o.references.is_empty() {
                o.reason.clone().unwrap_or_else(|| "-".into())
            } else {
                o.references.join(", ")
            }
        } else {
            let mut codes: Vec<&str> = o.problems.iter().map(|p| p.code.as_str()).collect();
            codes.dedup();
            codes.join(", ")
        };
        let reply = r
            .reply_file
            .as_ref()
            .map(|f| f.strip_prefix(workspace).unwrap_or(f).display().to_string())
            .unwrap_or_else(|| "(no reply)".into());
        println!("{:<3} {:<58} {:<12} {:<38} {reply}", i + 1, truncate(&r.case, 58), o.outcome, truncate(&what, 38));
    }
    let count = |s: &str| rows.iter().filter(|r| r.outcome.outcome == s).count();
    println!(
        "\n{} emails: {} accepted, {} rejected, {} quarantined, {} ignored, {} duplicate. Replies are in {}",
        rows.len(),
        count("accepted"),
        count("rejected"),
        count("quarantined"),
        count("ignored"),
        count("duplicate"),
        workspace.join("var/outbox").display()
    );
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { format!("{}…", s.chars().take(n - 1).collect::<String>()) }
}
