//! Replies to providers: handlebars templates (`templates/reply/<kind>.{txt,html}.hbs`, plain text and HTML
//! in one multipart message) rendered into a threaded, `Auto-Submitted: auto-replied` email whose
//! Message-ID is fixed by (message, kind), so a repeated send is recognisable as the same reply.

pub mod outbox;
pub mod smtp;

use std::path::Path;

use handlebars::Handlebars;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use serde::Serialize;

/// The kinds of reply; each has a template pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    Confirmation,
    Rejection,
    NoForm,
}

impl ReplyKind {
    pub const ALL: [ReplyKind; 3] = [ReplyKind::Confirmation, ReplyKind::Rejection, ReplyKind::NoForm];

    pub fn as_str(self) -> &'static str {
        match self {
            ReplyKind::Confirmation => "confirmation",
            ReplyKind::Rejection => "rejection",
            ReplyKind::NoForm => "no_form",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    #[error("reply template {name}: {message}")]
    Template { name: String, message: String },
    #[error("cannot render reply template {name}: {message}")]
    Render { name: String, message: String },
    #[error("cannot build the reply email: {0}")]
    Build(String),
    #[error("cannot read templates directory {0}: {1}")]
    Dir(String, std::io::Error),
}

/// One form's part of a reply.
#[derive(Debug, Clone, Serialize, Default)]
pub struct FormReply {
    pub title: String,
    pub reference: String,
    pub accepted: bool,
    pub attachment_name: String,
    pub sha256: String,
    /// (label, value) of every answer filed, in form order.
    pub summary: Vec<LabelValue>,
    pub problems: Vec<ProblemLine>,
    /// The reference of a rejected submission this one corrects.
    pub linked_to: Option<String>,
    /// The reference of an earlier notification of the same incident.
    pub same_incident: Option<String>,
    /// For a second part (a return): the reference of the first part it completes.
    pub first_part: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LabelValue {
    pub label: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProblemLine {
    /// The field's label, when the problem is about a field.
    pub label: Option<String>,
    pub message: String,
    pub hint: String,
}

/// Everything a reply template may show.
#[derive(Debug, Clone, Serialize)]
pub struct ReplyData {
    pub organisation: String,
    pub mailbox_address: String,
    pub forms_url: String,
    /// Received time, Europe/London, dd/mm/yyyy hh:mm.
    pub received_at: String,
    pub forms: Vec<FormReply>,
    pub email_problems: Vec<ProblemLine>,
    pub plural: bool,
    /// A form was stale or unknown: point at the current forms.
    pub stale: bool,
}

/// The rendered text of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The reply templates, loaded and checked once at start-up.
pub struct Templates {
    html: Handlebars<'static>,
    text: Handlebars<'static>,
}

impl Templates {
    /// The built-in templates, with any in `override_dir` (same layout as `templates/`) replacing them.
    pub fn load(override_dir: Option<&Path>) -> Result<Templates, ReplyError> {
        let mut sources: Vec<(String, String)> =
            crate::embedded::TEMPLATES.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect();
        if let Some(dir) = override_dir {
            for kind in ReplyKind::ALL {
                for ext in ["txt", "html"] {
                    let rel = format!("reply/{}.{ext}.hbs", kind.as_str());
                    let path = dir.join(&rel);
                    if path.exists() {
                        let text = std::fs::read_to_string(&path)
                            .map_err(|e| ReplyError::Dir(path.display().to_string(), e))?;
                        sources.retain(|(p, _)| *p != rel);
                        sources.push((rel, text));
                    }
                }
            }
        }
        let mut html = Handlebars::new();
        let mut text = Handlebars::new();
        html.set_strict_mode(true);
        text.set_strict_mode(true);
        // Plain text must not be HTML-escaped ("&" stays "&").
        text.register_escape_fn(handlebars::no_escape);
        for (path, source) in sources {
            let name = path.trim_end_matches(".hbs").to_string();
            let registry = if name.ends_with(".html") { &mut html } else { &mut text };
            registry
                .register_template_string(&name, source)
                .map_err(|e| ReplyError::Template { name: name.clone(), message: e.to_string() })?;
        }
        for kind in ReplyKind::ALL {
            for (registry, ext) in [(&html, "html"), (&text, "txt")] {
                let name = format!("reply/{}.{ext}", kind.as_str());
                if !registry.has_template(&name) {
                    return Err(ReplyError::Template { name, message: "missing".into() });
                }
            }
        }
        Ok(Templates { html, text })
    }

    pub fn compose(&self, kind: ReplyKind, subject: String, data: &ReplyData) -> Result<Composed, ReplyError> {
        let render = |registry: &Handlebars<'static>, ext: &str| {
            let name = format!("reply/{}.{ext}", kind.as_str());
            registry.render(&name, data).map_err(|e| ReplyError::Render { name, message: e.to_string() })
        };
        Ok(Composed { subject, text: render(&self.text, "txt")?, html: render(&self.html, "html")? })
    }
}

/// The fixed Message-ID of the reply of `kind` to the message whose raw SHA-256 is `raw_sha256`.
pub fn reply_message_id(kind: ReplyKind, raw_sha256: &str, from_address: &str) -> String {
    let domain = from_address.rsplit_once('@').map(|(_, d)| d).unwrap_or("postroom.localhost");
    let short = raw_sha256.get(..32).unwrap_or(raw_sha256);
    format!("<postroom.{}.{short}@{domain}>", kind.as_str())
}

/// Where a reply goes and what it answers.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    pub from_name: &'a str,
    pub from_address: &'a str,
    pub to: &'a str,
    pub message_id: &'a str,
    /// The Message-ID of the provider's email (with angle brackets), for threading.
    pub in_reply_to: Option<&'a str>,
    /// The provider's References plus their Message-ID, oldest first.
    pub references: Vec<String>,
}

/// Builds the reply as RFC 5322 bytes, ready for the outbox.
pub fn build_email(env: &Envelope<'_>, composed: &Composed) -> Result<Vec<u8>, ReplyError> {
    let bad = |e: &dyn std::fmt::Display| ReplyError::Build(e.to_string());
    let from: Mailbox = format!("{} <{}>", env.from_name, env.from_address).parse().map_err(|e| bad(&e))?;
    let to: Mailbox = env.to.parse().map_err(|e| bad(&e))?;
    let mut builder = lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(composed.subject.clone())
        .date_now()
        .message_id(Some(env.message_id.to_string()))
        .raw_header(HeaderValue::new(HeaderName::new_from_ascii_str("Auto-Submitted"), "auto-replied".into()))
        // Asks Exchange not to send out-of-office replies back to us.
        .raw_header(HeaderValue::new(HeaderName::new_from_ascii_str("X-Auto-Response-Suppress"), "All".into()));
    if let Some(id) = env.in_reply_to {
        builder = builder.in_reply_to(id.to_string());
    }
    if !env.references.is_empty() {
        builder = builder.references(env.references.join(" "));
    }
    let message = builder
        .multipart(MultiPart::alternative_plain_html(composed.text.clone(), composed.html.clone()))
        .map_err(|e| bad(&e))?;
    Ok(message.formatted())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> ReplyData {
        ReplyData {
            organisation: "Care Quality Commission".into(),
            mailbox_address: "notifications@postroom.localhost".into(),
            forms_url: "https://example.org/forms".into(),
            received_at: "23/11/2026 10:42".into(),
            forms: vec![FormReply {
                title: "Death of a person using the service".into(),
                reference: "N-7K3QX9M".into(),
                accepted: false,
                attachment_name: "death & injury.docx".into(),
                sha256: "ab".repeat(32),
                summary: vec![LabelValue { label: "Provider ID".into(), value: "1-101641531".into() }],
                problems: vec![ProblemLine {
                    label: Some("Date of death".into()),
                    message: "\"31/02/2026\" is not a date we can read.".into(),
                    hint: "Write dates as dd/mm/yyyy.".into(),
                }],
                linked_to: None,
                same_incident: None,
                first_part: None,
            }],
            email_problems: vec![],
            plural: false,
            stale: true,
        }
    }

    #[test]
    fn rejection_lists_each_problem_with_label_and_fix_in_both_parts() {
        let t = Templates::load(None).unwrap();
        let c = t.compose(ReplyKind::Rejection, "subject".into(), &data()).unwrap();
        assert!(c.text.contains("Date of death: \"31/02/2026\" is not a date we can read."), "{}", c.text);
        assert!(c.text.contains("How to fix it: Write dates as dd/mm/yyyy."));
        assert!(c.text.contains("death & injury.docx"), "plain text must not be HTML-escaped");
        assert!(c.text.contains("https://example.org/forms"));
        assert!(c.html.contains("death &amp; injury.docx"), "HTML must be escaped");
        assert!(c.html.contains("<strong>Date of death</strong>"));
    }

    #[test]
    fn a_templates_directory_replaces_only_the_files_it_has() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("reply")).unwrap();
        std::fs::write(
            dir.path().join("reply/rejection.txt.hbs"),
            "Local wording. {{#each forms}}{{reference}}{{/each}}",
        )
        .unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let c = t.compose(ReplyKind::Rejection, "s".into(), &data()).unwrap();
        assert_eq!(c.text, "Local wording. N-7K3QX9M");
        assert!(c.html.contains("<strong>Date of death</strong>"), "the HTML part stays built in");
        std::fs::write(dir.path().join("reply/no_form.html.hbs"), "{{#if}}").unwrap();
        let err = Templates::load(Some(dir.path())).err().unwrap().to_string();
        assert!(err.contains("reply/no_form.html"), "a broken template is named at start-up: {err}");
    }

    #[test]
    fn every_kind_renders_and_the_email_is_threaded_and_marked_automatic() {
        let t = Templates::load(None).unwrap();
        let mut d = data();
        d.forms[0].accepted = true;
        for kind in ReplyKind::ALL {
            let c = t.compose(kind, format!("[N-7K3QX9M] {}", kind.as_str()), &d).unwrap();
            assert!(c.text.contains("Care Quality Commission"));
            let id = reply_message_id(kind, &"cd".repeat(32), "notifications@postroom.localhost");
            let env = Envelope {
                from_name: "Care Quality Commission notifications",
                from_address: "notifications@postroom.localhost",
                to: "jane.smith@provider.example",
                message_id: &id,
                in_reply_to: Some("<orig@provider.example>"),
                references: vec!["<older@provider.example>".into(), "<orig@provider.example>".into()],
            };
            let eml = String::from_utf8(build_email(&env, &c).unwrap()).unwrap();
            assert!(eml.contains("Auto-Submitted: auto-replied\r\n"), "{eml}");
            assert!(eml.contains("In-Reply-To: <orig@provider.example>\r\n"));
            assert!(eml.contains("References: <older@provider.example> <orig@provider.example>\r\n"));
            assert!(eml.contains(&format!("Message-ID: {id}\r\n")));
            assert!(eml.contains("multipart/alternative"));
        }
        assert_eq!(
            reply_message_id(ReplyKind::Confirmation, &"cd".repeat(32), "a@b.org"),
            reply_message_id(ReplyKind::Confirmation, &"cd".repeat(32), "a@b.org"),
        );
    }
}
