//! Renders a [`FormDef`] as the .docx providers download and fill in, laid out as docs/form-layout.md
//! says: a two-column table per section with a content control per field (tag = field key, or
//! `key=choice` per checkbox), and the form's identity stamped in custom properties, core properties and
//! the footer so a file stripped of its tags still says what it is.
//!
//! A blank render is deterministic (fixed zip timestamps, no dates in properties, control ids counted
//! from a constant), so the published file only changes when its definition does. With `values`, the
//! same layout is filled in: demo mail, fixtures and benchmarks use real Postroom forms rather than
//! hand-made imitations.

mod body;
mod parts;
mod xml;

use std::collections::BTreeMap;
use std::io::{Cursor, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, System, ZipWriter};

use super::{FormDef, Value};

pub use body::{DATE_PLACEHOLDER, TEXT_PLACEHOLDER};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot render form {form}: {message}")]
    Failed { form: String, message: String },
}

/// The parts of a rendered form, in the order they are written to the zip.
pub const PARTS: [&str; 10] = [
    "[Content_Types].xml",
    "_rels/.rels",
    "docProps/core.xml",
    "docProps/app.xml",
    "docProps/custom.xml",
    "word/document.xml",
    "word/_rels/document.xml.rels",
    "word/styles.xml",
    "word/settings.xml",
    "word/footer1.xml",
];

/// Renders the form, blank or with `values` filled in (demo mail, tests, benchmarks).
///
/// Values are keyed by field key: [`Value::Text`] for typed fields (dates as `yyyy-mm-dd` or
/// `dd/mm/yyyy`, shown as `dd/mm/yyyy`), [`Value::Choices`] with choice keys for box fields. Content is
/// not validated (an invalid date or two ticked answers render as given, for tests of the checks), but a
/// value the form has no place for is an error, so a caller never silently renders less than it meant.
pub fn render(def: &FormDef, values: Option<&BTreeMap<String, Value>>) -> Result<Vec<u8>, RenderError> {
    let fail = |message: String| RenderError::Failed { form: format!("{} {}", def.id, def.version), message };
    if let Some(values) = values {
        check_values(def, values).map_err(fail)?;
    }
    let document = body::document(def, values);
    let contents: [(&str, std::borrow::Cow<'_, str>); 10] = [
        (PARTS[0], parts::CONTENT_TYPES.into()),
        (PARTS[1], parts::PACKAGE_RELS.into()),
        (PARTS[2], parts::core(def).into()),
        (PARTS[3], parts::app().into()),
        (PARTS[4], parts::custom(def).into()),
        (PARTS[5], document.into()),
        (PARTS[6], parts::DOCUMENT_RELS.into()),
        (PARTS[7], parts::styles().into()),
        (PARTS[8], parts::settings().into()),
        (PARTS[9], parts::footer(def).into()),
    ];
    zip_parts(&contents).map_err(|e| fail(format!("writing the zip: {e}")))
}

/// Every entry deflated with the same fixed timestamp and system, so equal input gives equal bytes.
fn zip_parts(contents: &[(&str, std::borrow::Cow<'_, str>)]) -> zip::result::ZipResult<Vec<u8>> {
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(DateTime::DEFAULT)
        .system(System::Dos);
    let size: usize = contents.iter().map(|(_, c)| c.len()).sum();
    let mut zip = ZipWriter::new(Cursor::new(Vec::with_capacity(size / 3)));
    for (name, text) in contents {
        zip.start_file(*name, options)?;
        zip.write_all(text.as_bytes())?;
    }
    Ok(zip.finish()?.into_inner())
}

/// Refuses values the form cannot show: unknown keys, text for a box field or boxes for a typed one,
/// and choice keys the field does not offer.
fn check_values(def: &FormDef, values: &BTreeMap<String, Value>) -> Result<(), String> {
    for (key, value) in values {
        let Some(field) = def.field(key) else {
            return Err(format!("no field `{key}` in this form"));
        };
        match (field.kind.is_boxes(), value) {
            (true, Value::Choices(keys)) => {
                let choices = field.effective_choices();
                if let Some(bad) = keys.iter().find(|k| !choices.iter().any(|c| &c.key == *k)) {
                    return Err(format!("field `{key}` has no choice `{bad}`"));
                }
            }
            (false, Value::Text(_)) => {}
            (true, Value::Text(_)) => return Err(format!("field `{key}` takes ticked choices, not text")),
            (false, Value::Choices(_)) => return Err(format!("field `{key}` takes text, not ticked choices")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::forms::Catalog;

    fn parts_of(bytes: &[u8]) -> BTreeMap<String, String> {
        let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        let mut out = BTreeMap::new();
        for i in 0..zip.len() {
            let mut f = zip.by_index(i).unwrap();
            let mut s = String::new();
            f.read_to_string(&mut s).unwrap();
            out.insert(f.name().unwrap().to_string(), s);
        }
        out
    }

    fn mini(label: &str) -> FormDef {
        let toml = format!(
            r#"
id = "mini"
version = "2026.1"
title = "Mini & <form>"
regulation = "Regulation 0"
[[sections]]
title = "About <this> & that"
[[sections.fields]]
key = "name"
label = {label:?}
type = "long_text"
required = true
help = "Say \"why\" & <how>"
[[sections.fields]]
key = "when"
label = "When"
type = "date"
[[sections.fields]]
key = "kind"
label = "Kind"
type = "choice"
choices = [{{ key = "a_b", label = "A & B" }}, {{ key = "c", label = "<C>" }}]
"#
        );
        toml::from_str(&toml).unwrap()
    }

    fn quick_xml_well_formed(xml: &str) {
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut depth = 0i32;
        loop {
            match reader.read_event().unwrap() {
                quick_xml::events::Event::Start(_) => depth += 1,
                quick_xml::events::Event::End(_) => depth -= 1,
                quick_xml::events::Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(depth, 0);
    }

    #[test]
    fn blank_render_is_byte_for_byte_repeatable() {
        let cat = Catalog::embedded().unwrap();
        let def = cat.current("death").unwrap();
        assert_eq!(render(def, None).unwrap(), render(def, None).unwrap());
    }

    #[test]
    fn labels_and_titles_with_markup_characters_are_escaped() {
        let def = mini("Name & <address>");
        let parts = parts_of(&render(&def, None).unwrap());
        let doc = &parts["word/document.xml"];
        quick_xml_well_formed(doc);
        assert!(doc.contains("<w:t>Mini &amp; &lt;form&gt;</w:t>"));
        assert!(doc.contains("<w:t>Name &amp; &lt;address&gt;</w:t>"));
        assert!(doc.contains("<w:alias w:val=\"Name &amp; &lt;address&gt;\"/>"));
        assert!(doc.contains("Say &quot;why&quot; &amp; &lt;how&gt;"));
        assert!(doc.contains("<w:t xml:space=\"preserve\"> A &amp; B</w:t>"));
        assert!(parts["docProps/core.xml"].contains("<dc:title>Mini &amp; &lt;form&gt;</dc:title>"));
    }

    #[test]
    fn filled_render_shows_values_ticks_and_day_first_dates() {
        let def = mini("Name");
        let values = BTreeMap::from([
            ("name".to_string(), Value::Text("line one\nline <two> & more".into())),
            ("when".to_string(), Value::Text("2026-03-05".into())),
            ("kind".to_string(), Value::Choices(vec!["c".into()])),
        ]);
        let doc = parts_of(&render(&def, Some(&values)).unwrap()).remove("word/document.xml").unwrap();
        assert!(doc.contains("<w:t>line one</w:t><w:br/><w:t>line &lt;two&gt; &amp; more</w:t>"));
        assert!(doc.contains("<w:date w:fullDate=\"2026-03-05T00:00:00Z\">"));
        assert!(doc.contains("<w:t>05/03/2026</w:t>"));
        assert!(!doc.contains("showingPlcHdr"));
        assert!(!doc.contains(TEXT_PLACEHOLDER) && !doc.contains(DATE_PLACEHOLDER));
        let ticked = doc.find("w:val=\"kind=c\"").unwrap();
        assert!(doc[ticked..].contains("<w14:checked w14:val=\"1\"/>"));
        assert_eq!(doc.matches("<w14:checked w14:val=\"1\"/>").count(), 1);
        assert_eq!(doc.matches('\u{2612}').count(), 1);
        assert_eq!(doc.matches('\u{2610}').count(), 1);
    }

    #[test]
    fn blank_render_shows_placeholders_and_empty_boxes() {
        let doc = parts_of(&render(&mini("Name"), None).unwrap()).remove("word/document.xml").unwrap();
        assert_eq!(doc.matches("<w:showingPlcHdr/>").count(), 2);
        assert!(doc.contains(TEXT_PLACEHOLDER) && doc.contains(DATE_PLACEHOLDER));
        assert!(doc.contains("<w:text w:multiLine=\"1\"/>"));
        assert!(doc.contains("<w:dateFormat w:val=\"dd/MM/yyyy\"/><w:lid w:val=\"en-GB\"/>"));
        assert_eq!(doc.matches("<w14:checked w14:val=\"0\"/>").count(), 2);
    }

    #[test]
    fn values_the_form_cannot_show_are_refused() {
        let def = mini("Name");
        for (key, value, expect) in [
            ("nope", Value::Text("x".into()), "no field `nope`"),
            ("kind", Value::Text("c".into()), "takes ticked choices"),
            ("name", Value::Choices(vec![]), "takes text"),
            ("kind", Value::Choices(vec!["z".into()]), "no choice `z`"),
        ] {
            let values = BTreeMap::from([(key.to_string(), value)]);
            let err = render(&def, Some(&values)).unwrap_err().to_string();
            assert!(err.contains(expect), "{err}");
        }
    }
}
