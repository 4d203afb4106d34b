//! `make_backlog`: a backlog of provider emails for the backlog benchmark (`scripts/bench-backlog`, issue 5).
//!
//! Generates a synthetic registry (`postroom::registry::synthetic`), writes its care directory and people
//! file for `postroom registry import`, and writes `--count` emails as files straight into a Maildir's `new/`
//! (Dovecot picks them up; far faster than APPENDing them one by one). The mix is fixed by `--seed`: about
//! 80% valid notifications of six form types from registered senders (registered managers about their own
//! location, nominated individuals about one of their provider's locations), and about 20% with the common
//! mistakes: a wrong location ID, a required answer missing, no attachment at all. Senders rotate through
//! every eligible registered address, so each receives only a few replies.
//!
//! The last line printed is machine-readable (`backlog count=... mean_bytes=...`) for the script.

use postroom::registry::synthetic::Rng;
use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::Utc;
use chrono_tz::Europe::London;
use clap::Parser;

use postroom::forms::{Catalog, FormDef, Value};
use postroom::registry::synthetic;
use postroom::samples::{self, Attached, Notifier};
use zip::CompressionMethod;
use zip::write::SimpleFileOptions;

/// The form types of the valid notifications (all belong to the `notifications` mailbox).
const FORMS: [&str; 6] =
    ["death", "abuse", "serious_injury", "police_incident", "dols_outcome", "event_stopping_service"];

/// Sizes of the header logo added to each form (see [`with_logo`]): forms of about 23-47 KB.
const LOGO_MIN: usize = 14 * 1024;
const LOGO_MAX: usize = 38 * 1024;

#[derive(Parser)]
#[command(name = "make_backlog", about = "Write a backlog of provider emails into a Maildir for the backlog benchmark")]
struct Args {
    /// How many emails to write.
    #[arg(long)]
    count: usize,
    /// The Maildir (its `new/`, `cur/` and `tmp/` are created if missing); files go into `new/`.
    #[arg(long)]
    maildir: PathBuf,
    /// Where to write the people CSV (Postroom's layout) for `postroom registry import --people`.
    #[arg(long)]
    people_csv: PathBuf,
    /// Where to write the care directory CSV for `postroom registry import --locations`.
    #[arg(long)]
    directory_csv: PathBuf,
    /// Seed of the registry and of the mix (same seed, same backlog apart from dates and Maildir names).
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// The gateway's address (the emails' `To`).
    #[arg(long, default_value = "notifications@postroom.test")]
    to: String,
    /// Active providers in the synthetic registry.
    #[arg(long, default_value_t = synthetic::DEFAULT_PROVIDERS)]
    providers: usize,
    /// Active locations in the synthetic registry.
    #[arg(long, default_value_t = synthetic::DEFAULT_LOCATIONS)]
    locations: usize,
    /// Per cent of the emails that carry a mistake (split evenly between the three kinds).
    #[arg(long, default_value_t = 20)]
    invalid_percent: u64,
}

/// What an email is meant to become.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    /// Accepted, answered with a confirmation.
    Valid,
    /// Rejected (unknown location, or a location of another provider), answered with a rejection.
    WrongLocation,
    /// Rejected (a required answer left blank), answered with a rejection.
    MissingField,
    /// No form at all, answered with a "no form" reply.
    NoAttachment,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Valid => "valid",
            Kind::WrongLocation => "wrong_location",
            Kind::MissingField => "missing_field",
            Kind::NoAttachment => "no_attachment",
        }
    }
}

/// RFC 4180 rows (quoted fields, doubled quotes, CRLF or LF), a leading byte-order mark ignored.
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// A table's rows as maps from header to value; the header is the first row whose first field is `first`.
fn table(text: &str, first: &str) -> Result<Vec<HashMap<String, String>>> {
    let rows = csv_rows(text);
    let Some(start) = rows.iter().position(|r| r.first().map(String::as_str) == Some(first)) else {
        bail!("no header row starting with {first:?}")
    };
    let header = &rows[start];
    Ok(rows[start + 1..]
        .iter()
        .filter(|r| r.len() == header.len())
        .map(|r| header.iter().cloned().zip(r.iter().cloned()).collect())
        .collect())
}

fn col<'a>(row: &'a HashMap<String, String>, name: &str) -> Result<&'a str> {
    row.get(name).map(String::as_str).with_context(|| format!("column {name:?} missing"))
}

struct Location {
    id: String,
    name: String,
    provider_id: String,
    provider_name: String,
}

/// The registered senders who may notify, each with a location they may notify about.
fn senders(syn: &synthetic::Synthetic) -> Result<(Vec<Notifier>, Vec<Location>)> {
    let mut locations = Vec::new();
    let mut by_id = HashMap::new();
    let mut of_provider: HashMap<String, Vec<usize>> = HashMap::new();
    for r in table(&syn.care_directory, "Name")? {
        let l = Location {
            id: col(&r, "CQC Location ID (for office use only)")?.to_string(),
            name: col(&r, "Name")?.to_string(),
            provider_id: col(&r, "CQC Provider ID (for office use only)")?.to_string(),
            provider_name: col(&r, "Provider name")?.to_string(),
        };
        by_id.insert(l.id.clone(), locations.len());
        of_provider.entry(l.provider_id.clone()).or_default().push(locations.len());
        locations.push(l);
    }
    let people = table(&syn.people, "person_id")?;
    // An address shared by several people is refused whatever it sends: never a sender of valid mail.
    let mut holders: HashMap<String, std::collections::BTreeSet<String>> = HashMap::new();
    for r in &people {
        holders.entry(col(r, "email")?.to_ascii_lowercase()).or_default().insert(col(r, "person_id")?.to_string());
    }
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in &people {
        let email = col(r, "email")?;
        if holders.get(&email.to_ascii_lowercase()).is_some_and(|h| h.len() > 1) || !seen.insert(email.to_string()) {
            continue;
        }
        let location = match (col(r, "role")?, col(r, "location_id")?) {
            ("registered_manager", l) if !l.is_empty() => by_id.get(l).copied(),
            ("nominated_individual", _) => {
                of_provider.get(col(r, "provider_id")?).and_then(|ls| ls.get(email.len() % ls.len())).copied()
            }
            _ => None,
        };
        let Some(l) = location.map(|i| &locations[i]) else {
            seen.remove(email);
            continue;
        };
        if l.provider_id != col(r, "provider_id")? {
            seen.remove(email);
            continue;
        }
        out.push(Notifier {
            name: col(r, "name")?.to_string(),
            email: email.to_string(),
            provider_id: l.provider_id.clone(),
            provider_name: l.provider_name.clone(),
            location_id: l.id.clone(),
            location_name: l.name.clone(),
        });
    }
    if out.is_empty() {
        bail!("the synthetic registry has no eligible senders");
    }
    Ok((out, locations))
}

/// The logo of the form's header as a form saved by Word carries it: `word/media/image1.png`, stored (a PNG
/// does not deflate), with its content type and relationship. Postroom's own rendering has no picture, so a
/// filled form is about 9 KB where a real one is 15-40 KB; the logo (its size varies with `logo.len()`)
/// brings the forms, and so the emails, to the sizes seen in real mail.
fn with_logo(docx: &[u8], logo: &[u8]) -> Result<Vec<u8>> {
    let mut archive = zip::ZipArchive::new(Cursor::new(docx)).context("reading the rendered form")?;
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::with_capacity(docx.len() + logo.len() + 1024)));
    let deflated = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    for i in 0..archive.len() {
        let mut part = archive.by_index(i)?;
        let name = part.name()?.to_string();
        let (close, add) = match name.as_str() {
            "[Content_Types].xml" => ("</Types>", r#"<Default Extension="png" ContentType="image/png"/>"#),
            "word/_rels/document.xml.rels" => (
                "</Relationships>",
                concat!(
                    r#"<Relationship Id="rIdLogo1" "#,
                    r#"Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/image" "#,
                    r#"Target="media/image1.png"/>"#
                ),
            ),
            _ => {
                out.raw_copy_file(part)?;
                continue;
            }
        };
        let mut text = String::new();
        part.read_to_string(&mut text)?;
        let Some(at) = text.rfind(close) else { bail!("{name} of the rendered form has no {close}") };
        if !text.contains(add) {
            text.insert_str(at, add);
        }
        out.start_file(name, deflated)?;
        out.write_all(text.as_bytes())?;
    }
    out.start_file(
        "word/media/image1.png",
        SimpleFileOptions::default().compression_method(CompressionMethod::Stored),
    )?;
    out.write_all(logo)?;
    Ok(out.finish()?.into_inner())
}

/// Writes `raw` into the Maildir as `new/<name>`, by way of `tmp/` as Maildir delivery does.
fn deliver(maildir: &Path, name: &str, raw: &[u8]) -> Result<()> {
    let tmp = maildir.join("tmp").join(name);
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    f.write_all(raw).with_context(|| format!("write {}", tmp.display()))?;
    drop(f);
    let new = maildir.join("new").join(name);
    std::fs::rename(&tmp, &new).with_context(|| format!("rename into {}", new.display()))?;
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    let syn = synthetic::generate(args.seed, args.providers, args.locations);
    std::fs::write(&args.directory_csv, &syn.care_directory)
        .with_context(|| format!("write {}", args.directory_csv.display()))?;
    std::fs::write(&args.people_csv, &syn.people).with_context(|| format!("write {}", args.people_csv.display()))?;
    let (mut senders, locations) = senders(&syn)?;

    let mut rng = Rng(args.seed ^ 0xB4C1_0C00);
    // Shuffled once (Fisher-Yates), then taken in turn: consecutive emails come from different providers.
    for i in (1..senders.len()).rev() {
        let j = rng.index(i + 1);
        senders.swap(i, j);
    }

    let catalog = Catalog::embedded().context("the embedded form catalog")?;
    let defs: Vec<&FormDef> =
        FORMS.iter().map(|id| catalog.current(id).with_context(|| format!("no form {id}"))).collect::<Result<_>>()?;
    let today = Utc::now().with_timezone(&London).date_naive();
    for d in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(args.maildir.join(d))
            .with_context(|| format!("create {}", args.maildir.join(d).display()))?;
    }

    // One logo, as every form comes from the same template: a PNG signature, then bytes that do not compress.
    let mut logo = b"\x89PNG\r\n\x1a\n".to_vec();
    while logo.len() < LOGO_MAX {
        logo.extend_from_slice(&rng.next_u64().to_le_bytes());
    }

    let started = std::time::Instant::now();
    let stamp = Utc::now().timestamp();
    let pid = std::process::id();
    let invalid = args.invalid_percent.min(100) as usize;
    let mut counts: BTreeMap<Kind, usize> = BTreeMap::new();
    let mut by_form: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut total, mut smallest, mut largest) = (0usize, usize::MAX, 0usize);
    let mut form_bytes = (0usize, 0usize);
    for i in 0..args.count {
        let who = &senders[i % senders.len()];
        let roll = rng.index(100);
        let kind = if roll >= invalid {
            Kind::Valid
        } else if roll * 3 < invalid {
            Kind::WrongLocation
        } else if roll * 3 < invalid * 2 {
            Kind::MissingField
        } else {
            Kind::NoAttachment
        };
        let def = defs[rng.index(defs.len())];
        let message_id =
            format!("backlog-{}-{i}@{}", args.seed, who.email.split('@').nth(1).unwrap_or("provider.example"));
        let attachments = if kind == Kind::NoAttachment {
            Vec::new()
        } else {
            let mut values = samples::filled(def, who, today);
            // Each email its own notification: distinct reference and time, or identical forms from one
            // sender would rightly be filed as duplicates, and identical incidents linked.
            if def.field("provider_reference").is_some() {
                values.insert("provider_reference".into(), Value::Text(format!("BL-{}-{i:06}", args.seed)));
            }
            if def.field("event_time").is_some() {
                let minute = rng.index(24 * 60);
                values.insert("event_time".into(), Value::Text(format!("{:02}:{:02}", minute / 60, minute % 60)));
            }
            match kind {
                Kind::WrongLocation => {
                    // Half a mistyped ID nobody holds, half a real location of another provider.
                    let wrong = if rng.index(2) == 0 {
                        format!("1-9{:08}", rng.index(100_000_000))
                    } else {
                        let mut l = &locations[rng.index(locations.len())];
                        while l.provider_id == who.provider_id {
                            l = &locations[rng.index(locations.len())];
                        }
                        l.id.clone()
                    };
                    values.insert("location_id".into(), Value::Text(wrong));
                }
                Kind::MissingField => {
                    values.remove("event_date");
                }
                Kind::Valid | Kind::NoAttachment => {}
            }
            let docx = postroom::forms::render::render(def, Some(&values))?;
            let docx = with_logo(&docx, &logo[..LOGO_MIN + rng.index(LOGO_MAX - LOGO_MIN)])?;
            form_bytes = (form_bytes.0 + docx.len(), form_bytes.1 + 1);
            *by_form.entry(def.id.as_str()).or_default() += 1;
            vec![Attached::docx(&format!("{}.docx", def.id), docx)]
        };
        let subject = if kind == Kind::NoAttachment { "Notification" } else { def.title.as_str() };
        let raw =
            samples::email(&who.email, &args.to, subject, &message_id, attachments).map_err(anyhow::Error::msg)?;
        deliver(&args.maildir, &format!("{stamp}.M{i:06}P{pid}.backlog"), &raw)?;
        *counts.entry(kind).or_default() += 1;
        total += raw.len();
        smallest = smallest.min(raw.len());
        largest = largest.max(raw.len());
    }

    let mean = total / args.count;
    let per_sender = args.count.div_ceil(senders.len());
    println!(
        "wrote {} emails into {} in {:.1} s: mean {mean} bytes (smallest {smallest}, largest {largest}); forms mean \
         {} bytes",
        args.count,
        args.maildir.join("new").display(),
        started.elapsed().as_secs_f64(),
        form_bytes.0 / form_bytes.1.max(1)
    );
    println!(
        "mix: {}; form types: {}",
        counts.iter().map(|(k, n)| format!("{} {n}", k.name())).collect::<Vec<_>>().join(", "),
        by_form.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
    );
    println!(
        "registry: seed {}, {} providers, {} locations; {} senders in rotation, at most {per_sender} emails each",
        args.seed,
        args.providers,
        args.locations,
        senders.len()
    );
    let n = |k: Kind| counts.get(&k).copied().unwrap_or(0);
    println!(
        "backlog count={} mean_bytes={mean} valid={} wrong_location={} missing_field={} no_attachment={} senders={} \
         max_per_sender={per_sender}",
        args.count,
        n(Kind::Valid),
        n(Kind::WrongLocation),
        n(Kind::MissingField),
        n(Kind::NoAttachment),
        senders.len()
    );
    Ok(())
}
