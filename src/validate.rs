//! Checks one extracted form against its definition: the version, the mailbox, required and conditional
//! answers, and the format of every answer (UK dates, times, provider and location IDs, email addresses,
//! telephone numbers). Produces problems with stable codes, and the answers normalised for filing
//! (dates as ISO `yyyy-mm-dd`, times as `hh:mm`). Registry checks (who may send for which provider) live
//! beside this in the registry module.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Europe::London;

use crate::forms::{Catalog, ExtractedForm, FieldDef, FieldKind, FormDef, Value};
use crate::problem::{Problem, ProblemCode};

/// What validation needs to know beyond the form itself.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub catalog: &'a Catalog,
    /// The mailbox the email arrived in.
    pub mailbox: &'a str,
    pub received_at: DateTime<Utc>,
    /// Where the current forms are published, quoted when a version is stale.
    pub forms_url: &'a str,
}

/// A checked form: its problems and its answers normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub problems: Vec<Problem>,
    /// Every answer given, normalised where it parsed (dates ISO, times hh:mm, IDs upper-case).
    pub values: BTreeMap<String, serde_json::Value>,
}

impl Checked {
    pub fn text(&self, key: &str) -> Option<&str> {
        self.values.get(key).and_then(|v| v.as_str())
    }
}

/// Validates `form` read with definition `def` (the definition of the version it declares, or the
/// current one when that version is unknown).
pub fn check_form(def: &FormDef, form: &ExtractedForm, ctx: &Context<'_>) -> Checked {
    let mut problems = Vec::new();
    let mut values = BTreeMap::new();

    if let Some(current) = ctx.catalog.current(&def.id)
        && current.version.as_str() != form.version
    {
        let known = ctx.catalog.get(&def.id, &form.version).is_some();
        let code = if known { ProblemCode::StaleFormVersion } else { ProblemCode::UnknownFormVersion };
        problems.push(
            Problem::new(code)
                .field("form_version")
                .value(&form.version)
                .message(format!(
                    "You used version {} of the form \"{}\"; the current version is {}.",
                    form.version, current.title, current.version
                ))
                .hint(format!(
                    "You must use the up-to-date form. Download version {} from {}, copy your answers into it and send it again.",
                    current.version, ctx.forms_url
                )),
        );
    }
    if def.mailbox != ctx.mailbox {
        problems.push(Problem::new(ProblemCode::WrongMailbox).message(format!(
            "The form \"{}\" belongs to the {} mailbox, not the {} mailbox it was sent to.",
            def.title,
            def.mailbox.replace('_', " "),
            ctx.mailbox.replace('_', " ")
        )));
    }

    let received_london = ctx.received_at.with_timezone(&London);
    let latest_allowed = (ctx.received_at + chrono::Duration::hours(1)).with_timezone(&London);
    for field in def.fields() {
        let value = form.get(&field.key);
        let required = field.required
            || field.required_when.as_ref().is_some_and(|c| answer_equals(form.get(&c.field), &c.equals));
        let Some(value) = value else {
            if required {
                problems.push(missing(def, field));
            }
            continue;
        };
        match check_value(field, value, latest_allowed.date_naive()) {
            Ok(normalised) => {
                values.insert(field.key.clone(), normalised);
            }
            Err(p) => {
                values.insert(field.key.clone(), serde_json::Value::String(value.display()));
                problems.push(p);
            }
        }
    }

    // An event dated today with a time after receipt (plus the hour of grace) is in the future too.
    if let (Some(date), Some(time)) = (values.get("event_date"), values.get("event_time"))
        && let (Some(d), Some(t)) = (date.as_str(), time.as_str())
        && let (Ok(d), Ok(t)) = (NaiveDate::parse_from_str(d, "%Y-%m-%d"), NaiveTime::parse_from_str(t, "%H:%M"))
        && let Some(at) = London.from_local_datetime(&d.and_time(t)).earliest()
        && at > latest_allowed
        && !problems.iter().any(|p| p.field.as_deref() == Some("event_date"))
    {
        let label = def.field("event_time").map(|f| f.label.as_str()).unwrap_or("Time");
        problems.push(
            Problem::new(ProblemCode::DateInFuture)
                .field("event_time")
                .value(&format!("{} {}", d.format("%d/%m/%Y"), t.format("%H:%M")))
                .message(format!(
                    "\"{label}\" gives {} {}, which is after this email was received ({}).",
                    d.format("%d/%m/%Y"),
                    t.format("%H:%M"),
                    received_london.format("%d/%m/%Y %H:%M")
                )),
        );
    }
    Checked { problems, values }
}

fn missing(def: &FormDef, field: &FieldDef) -> Problem {
    let why = match &field.required_when {
        Some(c) if !field.required => {
            let other = def.field(&c.field).map(|f| f.label.as_str()).unwrap_or(c.field.as_str());
            let answer = def
                .field(&c.field)
                .and_then(|f| f.effective_choices().into_iter().find(|ch| ch.key == c.equals))
                .map(|ch| ch.label)
                .unwrap_or_else(|| c.equals.clone());
            format!(" (needed because you answered \"{answer}\" to \"{other}\")")
        }
        _ => String::new(),
    };
    Problem::new(ProblemCode::RequiredMissing)
        .field(&field.key)
        .message(format!("\"{}\" is required but was left blank{why}.", field.label))
        .hint(match &field.help {
            Some(help) => format!("Answer \"{}\": {help}", field.label),
            None => format!("Answer \"{}\" and send the form again.", field.label),
        })
}

/// Whether an answer equals a condition's value (a ticked choice key, or text ignoring case).
fn answer_equals(value: Option<&Value>, equals: &str) -> bool {
    match value {
        Some(Value::Choices(keys)) => keys.iter().any(|k| k == equals),
        Some(Value::Text(t)) => t.trim().eq_ignore_ascii_case(equals),
        None => false,
    }
}

fn check_value(field: &FieldDef, value: &Value, latest: NaiveDate) -> Result<serde_json::Value, Problem> {
    use serde_json::Value as J;
    let shown = value.display();
    let bad = |code: ProblemCode, what: String| {
        Problem::new(code).field(&field.key).value(&shown).message(format!("\"{}\": {what}", field.label))
    };
    let text = match value {
        Value::Choices(keys) => {
            if field.kind != FieldKind::MultiChoice && keys.len() > 1 {
                return Err(bad(
                    ProblemCode::InvalidChoice,
                    format!("{} boxes are ticked; tick exactly one.", keys.len()),
                ));
            }
            return Ok(match field.kind {
                FieldKind::MultiChoice => J::Array(keys.iter().map(|k| J::String(k.clone())).collect()),
                _ => J::String(keys.first().cloned().unwrap_or_default()),
            });
        }
        Value::Text(t) => t.trim(),
    };
    match field.kind {
        FieldKind::Date => {
            let Some(date) = parse_uk_date(text) else {
                return Err(bad(ProblemCode::InvalidDate, format!("\"{text}\" is not a date we can read.")));
            };
            if date.year() < 1900 {
                return Err(bad(ProblemCode::DateTooOld, format!("{} is before 1900.", date.format("%d/%m/%Y"))));
            }
            if !field.allow_future && date > latest {
                return Err(bad(
                    ProblemCode::DateInFuture,
                    format!("{} is after the day this email was received.", date.format("%d/%m/%Y")),
                ));
            }
            Ok(J::String(date.format("%Y-%m-%d").to_string()))
        }
        FieldKind::Time => match parse_time(text) {
            Some(t) => Ok(J::String(t.format("%H:%M").to_string())),
            None => Err(bad(ProblemCode::InvalidTime, format!("\"{text}\" is not a time we can read."))),
        },
        FieldKind::ProviderId => match crate::ids::ProviderId::parse(text) {
            Some(id) => Ok(J::String(id.to_string())),
            None => Err(bad(ProblemCode::InvalidProviderId, format!("\"{text}\" is not a provider ID."))),
        },
        FieldKind::LocationId => match crate::ids::LocationId::parse(text) {
            Some(id) => Ok(J::String(id.to_string())),
            None => Err(bad(ProblemCode::InvalidLocationId, format!("\"{text}\" is not a location ID."))),
        },
        FieldKind::Email => match crate::ids::EmailAddress::parse(text).ok() {
            Some(e) => Ok(J::String(e.to_string())),
            None => Err(bad(ProblemCode::InvalidEmail, format!("\"{text}\" is not an email address."))),
        },
        FieldKind::Phone => {
            let digits: String = text.chars().filter(char::is_ascii_digit).collect();
            let shape_ok = text.chars().all(|c| c.is_ascii_digit() || " +()-.".contains(c));
            let national = digits.strip_prefix("44").map(|d| format!("0{d}")).unwrap_or(digits.clone());
            if shape_ok && (10..=11).contains(&national.len()) && national.starts_with('0') {
                Ok(J::String(text.to_string()))
            } else {
                Err(bad(ProblemCode::InvalidPhone, format!("\"{text}\" is not a UK telephone number.")))
            }
        }
        FieldKind::Number => match text.replace(',', "").parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(serde_json::Number::from_f64(n).map(J::Number).unwrap_or(J::Null)),
            _ => Err(bad(ProblemCode::InvalidNumber, format!("\"{text}\" is not a number."))),
        },
        FieldKind::YesNo | FieldKind::Choice | FieldKind::MultiChoice => {
            // Typed text where boxes were expected (a form re-typed by hand): accept a choice's label or key.
            let found = field
                .effective_choices()
                .into_iter()
                .find(|c| c.label.eq_ignore_ascii_case(text) || c.key.eq_ignore_ascii_case(text));
            match found {
                Some(c) if field.kind == FieldKind::MultiChoice => Ok(J::Array(vec![J::String(c.key)])),
                Some(c) => Ok(J::String(c.key)),
                None => Err(bad(ProblemCode::InvalidChoice, format!("\"{text}\" is not one of the answers offered."))),
            }
        }
        FieldKind::Text | FieldKind::LongText => Ok(J::String(text.to_string())),
    }
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// Reads a date as UK providers write it: `3/4/2026`, `03-04-2026`, `03.04.26`, `3 April 2026`,
/// `3rd Apr 2026`, `Friday 3 April 2026`, or ISO `2026-04-03`. Day before month, always.
pub fn parse_uk_date(text: &str) -> Option<NaiveDate> {
    let t = text.trim().trim_end_matches('.');
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Some(d);
    }
    let numeric: Vec<&str> = t.split(['/', '-', '.']).map(str::trim).collect();
    if numeric.len() == 3 && numeric.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())) {
        let day: u32 = numeric[0].parse().ok()?;
        let month: u32 = numeric[1].parse().ok()?;
        let year = full_year(numeric[2])?;
        return NaiveDate::from_ymd_opt(year, month, day);
    }
    // Words: optional weekday, day with optional suffix, month name (or 3-letter abbreviation), year.
    let words: Vec<String> =
        t.split(|c: char| c.is_whitespace() || c == ',').filter(|w| !w.is_empty()).map(|w| w.to_lowercase()).collect();
    let words: Vec<&str> =
        words.iter().map(String::as_str).skip_while(|w| w.parse::<u32>().is_err() && !is_day(w)).collect();
    if words.len() != 3 {
        return None;
    }
    let day: u32 = words[0].trim_end_matches(|c: char| c.is_ascii_alphabetic()).parse().ok()?;
    let month =
        MONTHS.iter().position(|m| *m == words[1] || (words[1].len() >= 3 && m.starts_with(words[1])))? as u32 + 1;
    let year = full_year(words[2])?;
    NaiveDate::from_ymd_opt(year, month, day)
}

fn is_day(w: &str) -> bool {
    let digits = w.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    !digits.is_empty() && digits.parse::<u32>().is_ok() && matches!(&w[digits.len()..], "" | "st" | "nd" | "rd" | "th")
}

fn full_year(y: &str) -> Option<i32> {
    let n: i32 = y.parse().ok()?;
    match y.len() {
        4 => Some(n),
        // Two-digit years: this century unless that would be far in the future.
        2 => Some(if n <= 79 { 2000 + n } else { 1900 + n }),
        _ => None,
    }
}

/// Reads a time: `14:30`, `14.30`, `1430`, `2:30pm`, `2pm`, `14:30:00`, `noon`, `midnight`.
pub fn parse_time(text: &str) -> Option<NaiveTime> {
    let t = text.trim().to_lowercase().replace(' ', "");
    match t.as_str() {
        "noon" | "midday" => return NaiveTime::from_hms_opt(12, 0, 0),
        "midnight" => return NaiveTime::from_hms_opt(0, 0, 0),
        _ => {}
    }
    let (body, pm) = if let Some(b) = t.strip_suffix("pm").or_else(|| t.strip_suffix("p.m.")) {
        (b, Some(true))
    } else if let Some(b) = t.strip_suffix("am").or_else(|| t.strip_suffix("a.m.")) {
        (b, Some(false))
    } else {
        (t.as_str(), None)
    };
    let parts: Vec<&str> = body.split([':', '.']).collect();
    let (h, m, s): (u32, u32, u32) = match parts.as_slice() {
        [hm] if hm.len() == 4 && pm.is_none() => (hm[..2].parse().ok()?, hm[2..].parse().ok()?, 0),
        [h] if pm.is_some() => (h.parse().ok()?, 0, 0),
        [h, m] if m.len() == 2 => (h.parse().ok()?, m.parse().ok()?, 0),
        [h, m, s] if m.len() == 2 && s.len() == 2 => (h.parse().ok()?, m.parse().ok()?, s.parse().ok()?),
        _ => return None,
    };
    let h = match pm {
        Some(_) if !(1..=12).contains(&h) => return None,
        Some(true) => h % 12 + 12,
        Some(false) => h % 12,
        None => h,
    };
    NaiveTime::from_hms_opt(h, m, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(y, m, day)
    }

    #[test]
    fn uk_dates_in_every_common_shape_read_day_first() {
        assert_eq!(parse_uk_date("3/4/2026"), d(2026, 4, 3));
        assert_eq!(parse_uk_date("03-04-2026"), d(2026, 4, 3));
        assert_eq!(parse_uk_date("03.04.26"), d(2026, 4, 3));
        assert_eq!(parse_uk_date("3 April 2026"), d(2026, 4, 3));
        assert_eq!(parse_uk_date("3rd Apr 2026"), d(2026, 4, 3));
        assert_eq!(parse_uk_date("Friday, 3 April 2026"), d(2026, 4, 3));
        assert_eq!(parse_uk_date("2026-04-03"), d(2026, 4, 3));
        assert_eq!(parse_uk_date(" 21/12/1999 "), d(1999, 12, 21));
    }

    #[test]
    fn impossible_or_ambiguous_dates_are_refused() {
        for bad in ["31/02/2026", "13/13/2026", "yesterday", "3 Smarch 2026", "2026", "1/2", "3/4/226", ""] {
            assert_eq!(parse_uk_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn times_in_common_shapes() {
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0);
        assert_eq!(parse_time("14:30"), t(14, 30));
        assert_eq!(parse_time("14.30"), t(14, 30));
        assert_eq!(parse_time("1430"), t(14, 30));
        assert_eq!(parse_time("2:30pm"), t(14, 30));
        assert_eq!(parse_time("2 PM"), t(14, 0));
        assert_eq!(parse_time("12am"), t(0, 0));
        assert_eq!(parse_time("14:30:00"), t(14, 30));
        assert_eq!(parse_time("noon"), t(12, 0));
        for bad in ["25:00", "14:3", "13pm", "half two", ""] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }
}
