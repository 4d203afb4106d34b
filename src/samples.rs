//! Sample notifications: a form filled with plausible answers, and the email a provider would send with
//! it. Used by `postroom demo`, the integration tests and the benchmarks, so all three exercise the same
//! shapes of mail.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, MultiPart, SinglePart};

use crate::forms::{FieldKind, FormDef, Value};

/// Who is notifying, and about where.
#[derive(Debug, Clone)]
pub struct Notifier {
    pub name: String,
    pub email: String,
    pub provider_id: String,
    pub provider_name: String,
    pub location_id: String,
    pub location_name: String,
}

/// Jane Smith, registered manager of Oakfield House (Oakfield Care Ltd): the notifier of tests and benchmarks.
pub fn example_notifier() -> Notifier {
    Notifier {
        name: "Jane Smith".into(),
        email: "jane.smith@oakfield-care.example".into(),
        provider_id: "1-101641531".into(),
        provider_name: "Oakfield Care Ltd".into(),
        location_id: "1-1000210669".into(),
        location_name: "Oakfield House".into(),
    }
}

/// Every field of `def` answered plausibly (the first choice of each box field; `event_date` two days
/// before `today`), so that the form passes validation for this notifier.
pub fn filled(def: &FormDef, who: &Notifier, today: NaiveDate) -> BTreeMap<String, Value> {
    let mut values = BTreeMap::new();
    for f in def.fields() {
        let text = match (f.key.as_str(), f.kind) {
            ("provider_id", _) => who.provider_id.clone(),
            ("provider_name", _) => who.provider_name.clone(),
            ("location_id", _) => who.location_id.clone(),
            ("location_name", _) => who.location_name.clone(),
            ("location_postcode", _) => "LS1 4AP".into(),
            ("notifier_name", _) => who.name.clone(),
            ("notifier_email", _) => who.email.clone(),
            ("date_submitted", _) => today.format("%d/%m/%Y").to_string(),
            ("event_date", _) => (today - Duration::days(2)).format("%d/%m/%Y").to_string(),
            (_, FieldKind::Date) if f.allow_future => (today + Duration::days(30)).format("%d/%m/%Y").to_string(),
            (_, FieldKind::Date) => (today - Duration::days(40)).format("%d/%m/%Y").to_string(),
            (_, FieldKind::Time) => "14:30".into(),
            (_, FieldKind::Email) => who.email.clone(),
            (_, FieldKind::Phone) => "0113 496 0000".into(),
            (_, FieldKind::Number) => "2".into(),
            (_, FieldKind::ProviderId) => who.provider_id.clone(),
            (_, FieldKind::LocationId) => who.location_id.clone(),
            (_, k) if k.is_boxes() => {
                let first = f.effective_choices().into_iter().next().map(|c| c.key);
                values.insert(f.key.clone(), Value::Choices(first.into_iter().collect()));
                continue;
            }
            (_, FieldKind::LongText) => format!("{} Details as recorded in the service's incident log.", f.label),
            _ => format!("Sample answer ({})", f.key.replace('_', " ")),
        };
        values.insert(f.key.clone(), Value::Text(text));
    }
    values
}

/// An attachment for [`email`].
pub struct Attached {
    pub filename: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

impl Attached {
    pub fn docx(filename: &str, bytes: Vec<u8>) -> Attached {
        Attached {
            filename: filename.into(),
            content_type: "application/vnd.openxmlformats-officedocument.wordprocessingml.document".into(),
            bytes,
        }
    }
}

/// A provider's email as their mail client would send it: a short text body and the attachments.
pub fn email(
    from: &str,
    to: &str,
    subject: &str,
    message_id: &str,
    attachments: Vec<Attached>,
) -> Result<Vec<u8>, String> {
    let body = SinglePart::plain("Please find attached our statutory notification.\n\nKind regards\n".to_string());
    let mut mixed = MultiPart::mixed().singlepart(body);
    for a in attachments {
        let ct = ContentType::parse(&a.content_type).unwrap_or(ContentType::TEXT_PLAIN);
        mixed = mixed.singlepart(Attachment::new(a.filename).body(a.bytes, ct));
    }
    let from = from.parse().map_err(|e| format!("sample sender {from}: {e}"))?;
    let to = to.parse().map_err(|e| format!("sample recipient {to}: {e}"))?;
    lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .message_id(Some(format!("<{message_id}>")))
        .date_now()
        .multipart(mixed)
        .map(|m| m.formatted())
        .map_err(|e| e.to_string())
}
