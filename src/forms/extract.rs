//! Reads a provider's filled .docx back into an [`ExtractedForm`]: which form it is and the values by
//! field key. Providers fill our forms in Word, LibreOffice, Google Docs and scripts, so the reader follows
//! docs/form-layout.md's fallbacks (tag, legacy field, label cell, `Label: value` line) rather than
//! trusting content-control tags, which LibreOffice drops.
//!
//! The reader is our own zip + quick-xml streaming pass, not docx-rs (shared notes/crates.md: docx-rs
//! loses tags and panics on corrupt zips). Every hostile shape has its own [`ExtractError`] and stable
//! reason code; memory is bounded by [`DocxLimits`]; nothing recurses on document depth; and a
//! `catch_unwind` backstop turns any panic left in a dependency into `type:unreadable`.
//!
//! Submodules: `container` (file type, zip, inflation budget), `xml` (event loop, small parts), `scan`
//! (the body pass), `boxes` (tick marks in text), `mapping` (values per field), `identity` (form id).

mod boxes;
mod container;
mod identity;
mod mapping;
mod scan;
mod xml;

use std::panic::{AssertUnwindSafe, catch_unwind};

pub use container::sniff;

use super::{Catalog, DocxLimits, ExtractedForm};

/// Why an attachment could not be read as one of our forms. Each variant has a stable
/// [`reason_code`](ExtractError::reason_code) for the ledger, a message (`Display`) saying what is wrong,
/// and a [`hint`](ExtractError::hint) telling the provider what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    #[error("The attachment is {seen}, not a Word form.")]
    NotWord { seen: &'static str },
    #[error("The form is in the old Word 97-2003 format (.doc), which we cannot read.")]
    LegacyDoc,
    #[error("The form is password-protected, so it cannot be read.")]
    Encrypted,
    #[error("The form is a macro-enabled Word document (.docm); we do not open files that contain macros.")]
    Macro,
    #[error("The attached file is damaged and cannot be opened ({detail}).")]
    CorruptZip { detail: String },
    #[error("The attached file unpacks to more than {limit} bytes, far more than a form needs.")]
    ZipBomb { limit: u64 },
    #[error("The attached file holds {entries} parts, more than the {limit} a form can have.")]
    TooManyEntries { entries: usize, limit: usize },
    #[error("The attached file nests its content more than {limit} levels deep in {part}.")]
    TooDeep { part: String, limit: usize },
    #[error("The attached file is damaged: {part} is not well-formed XML ({detail}).")]
    MalformedXml { part: String, detail: String },
    #[error("The attachment is {seen}, not a Word document.")]
    NoDocument { seen: &'static str },
    #[error("The Word document is not one of our notification forms{}.", found_form(.found))]
    UnknownForm { found: Option<String> },
    #[error("The attached file could not be read.")]
    Unreadable,
}

fn found_form(found: &Option<String>) -> String {
    found.as_ref().map(|id| format!(" (it calls itself form `{id}`, which we do not have)")).unwrap_or_default()
}

impl ExtractError {
    /// The stable reason code recorded in the ledger and shown to staff. Never rename one.
    pub fn reason_code(&self) -> &'static str {
        match self {
            ExtractError::NotWord { .. } => "type:not_word",
            ExtractError::LegacyDoc => "type:legacy_doc",
            ExtractError::Encrypted => "type:encrypted",
            ExtractError::Macro => "type:macro",
            ExtractError::CorruptZip { .. } => "type:corrupt_zip",
            ExtractError::ZipBomb { .. } => "size:zip_bomb",
            ExtractError::TooManyEntries { .. } => "size:too_many_entries",
            ExtractError::TooDeep { .. } => "size:too_deep",
            ExtractError::MalformedXml { .. } => "type:malformed_xml",
            ExtractError::NoDocument { .. } => "type:no_document",
            ExtractError::UnknownForm { .. } => "form:unknown",
            ExtractError::Unreadable => "type:unreadable",
        }
    }

    /// What the provider should do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            ExtractError::NotWord { .. } | ExtractError::NoDocument { .. } => {
                "Send the completed notification form as a Word document (.docx), not a PDF, scan, photo or other file."
            }
            ExtractError::LegacyDoc => {
                "Open the form in Word, choose File > Save As > Word Document (.docx), and send the .docx."
            }
            ExtractError::Encrypted => {
                "Remove the password (in Word: File > Info > Protect Document > Encrypt with Password, then clear it) and send the form again."
            }
            ExtractError::Macro => "Save the form as a Word Document (.docx) without macros and send it again.",
            ExtractError::CorruptZip { .. } | ExtractError::MalformedXml { .. } | ExtractError::Unreadable => {
                "Open the form on your computer to check it, save it again as .docx and resend it."
            }
            ExtractError::ZipBomb { .. } | ExtractError::TooManyEntries { .. } | ExtractError::TooDeep { .. } => {
                "Download a fresh copy of the form, fill it in without embedding other files, and send it again."
            }
            ExtractError::UnknownForm { .. } => {
                "Download the current form from our website, complete it and send it again."
            }
        }
    }
}

/// Reads a filled form. `bytes` is the attachment as received; `catalog` says which forms exist.
pub fn extract(bytes: &[u8], catalog: &Catalog, limits: &DocxLimits) -> Result<ExtractedForm, ExtractError> {
    // The reader is written not to panic; this is for what a dependency might still do on hostile input.
    catch_unwind(AssertUnwindSafe(|| extract_unguarded(bytes, catalog, limits)))
        .unwrap_or(Err(ExtractError::Unreadable))
}

fn extract_unguarded(bytes: &[u8], catalog: &Catalog, limits: &DocxLimits) -> Result<ExtractedForm, ExtractError> {
    sniff(bytes)?;
    let mut pkg = container::Package::open(bytes, limits)?;
    let types = match pkg.read_text("[Content_Types].xml")? {
        Some(text) => xml::content_types(&text, limits.max_xml_depth)?,
        None => xml::ContentTypes::default(),
    };
    if types.macro_enabled {
        return Err(ExtractError::Macro);
    }
    let main = types.main.filter(|m| pkg.has(m)).unwrap_or_else(|| "word/document.xml".to_string());
    let Some(body) = pkg.read_text(&main)? else {
        return Err(ExtractError::NoDocument { seen: pkg.describe_non_word() });
    };
    let scan = scan::scan(&body, &main, limits.max_xml_depth)?;
    drop(body);
    let declared = identity::resolve(&mut pkg, catalog, limits, &scan.text)?;
    let def = catalog
        .get(&declared.id, &declared.version)
        .or_else(|| catalog.current(&declared.id))
        .ok_or_else(|| ExtractError::UnknownForm { found: Some(declared.id.clone()) })?;
    let values = mapping::values(&scan, def);
    Ok(ExtractedForm { form_id: declared.id, version: declared.version, identity_source: declared.source, values })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::forms::{IdentitySource, Value, ValueSource};

    const MINI: &str = r#"
id = "mini"
version = "2026.2"
title = "Mini notification"
regulation = "Regulation 0"
[[sections]]
title = "About"
[[sections.fields]]
key = "provider_id"
label = "Provider ID"
type = "provider_id"
required = true
[[sections.fields]]
key = "expected"
label = "Was the death expected?"
type = "yes_no"
[[sections.fields]]
key = "details"
label = "What happened"
type = "long_text"
"#;

    fn catalog() -> Catalog {
        Catalog::from_sources([
            ("mini/2026.2.toml".to_string(), MINI.to_string()),
            ("mini/2026.1.toml".to_string(), MINI.replace("2026.2", "2026.1")),
        ])
        .unwrap()
    }

    fn docx(parts: &[(&str, &str)]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, body) in parts {
            zip.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            zip.write_all(body.as_bytes()).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    fn body(inner: &str) -> String {
        format!(r#"<w:document xmlns:w="w" xmlns:w14="w14"><w:body>{inner}</w:body></w:document>"#)
    }

    const CUSTOM: &str = r#"<Properties><property name="postroom.form"><lpwstr>mini</lpwstr></property>
        <property name="postroom.version"><lpwstr>2026.1</lpwstr></property></Properties>"#;

    #[test]
    fn tags_win_over_label_cells_and_stale_versions_keep_their_version() {
        let doc = body(
            r#"<w:tbl><w:tr><w:tc><w:p><w:r><w:t>Provider ID *</w:t></w:r></w:p></w:tc>
            <w:tc><w:p><w:sdt><w:sdtPr><w:tag w:val="provider_id"/></w:sdtPr><w:sdtContent><w:r><w:t>1-</w:t></w:r><w:r><w:t>101641531</w:t></w:r></w:sdtContent></w:sdt></w:p></w:tc></w:tr>
            <w:tr><w:tc><w:p><w:r><w:t>What happened</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Fell</w:t></w:r></w:p><w:p><w:r><w:t>Hurt</w:t></w:r></w:p></w:tc></w:tr></w:tbl>"#,
        );
        let f = extract(
            &docx(&[("word/document.xml", &doc), ("docProps/custom.xml", CUSTOM)]),
            &catalog(),
            &DocxLimits::default(),
        )
        .unwrap();
        assert_eq!((f.form_id.as_str(), f.version.as_str()), ("mini", "2026.1"));
        assert_eq!(f.identity_source, IdentitySource::CustomProperties);
        assert_eq!(f.values["provider_id"].source, ValueSource::Tag);
        assert_eq!(f.text("provider_id"), Some("1-101641531"));
        assert_eq!(f.values["details"].source, ValueSource::LabelCell);
        assert_eq!(f.text("details"), Some("Fell\nHurt"));
        assert!(!f.values.contains_key("expected"));
    }

    #[test]
    fn label_lines_and_hidden_stamp_identify_a_plain_document() {
        let doc = body(
            r#"<w:p><w:r><w:rPr><w:vanish/></w:rPr><w:t>Postroom form mini version 2026.9</w:t></w:r></w:p>
            <w:p><w:r><w:t>Was the death expected?: </w:t></w:r><w:r><w:t>&#9746; Yes &#9744; No</w:t></w:r></w:p>"#,
        );
        let f = extract(&docx(&[("word/document.xml", &doc)]), &catalog(), &DocxLimits::default()).unwrap();
        assert_eq!((f.version.as_str(), f.identity_source), ("2026.9", IdentitySource::Footer));
        assert_eq!(f.get("expected"), Some(&Value::Choices(vec!["yes".into()])));
        assert_eq!(f.values["expected"].source, ValueSource::LabelLine);
    }

    #[test]
    fn a_word_document_that_is_no_form_is_unknown() {
        let doc = body("<w:p><w:r><w:t>Dear CQC</w:t></w:r></w:p>");
        let err = extract(&docx(&[("word/document.xml", &doc)]), &catalog(), &DocxLimits::default()).unwrap_err();
        assert_eq!(err.reason_code(), "form:unknown");
        let other = CUSTOM.replace(">mini<", ">payroll<");
        let err = extract(
            &docx(&[("word/document.xml", &doc), ("docProps/custom.xml", &other)]),
            &catalog(),
            &DocxLimits::default(),
        )
        .unwrap_err();
        assert_eq!(err, ExtractError::UnknownForm { found: Some("payroll".into()) });
        assert!(err.to_string().contains("payroll"), "{err}");
    }

    #[test]
    fn every_error_has_a_distinct_code_and_a_hint() {
        let all = [
            ExtractError::NotWord { seen: "a PDF" },
            ExtractError::LegacyDoc,
            ExtractError::Encrypted,
            ExtractError::Macro,
            ExtractError::CorruptZip { detail: String::new() },
            ExtractError::ZipBomb { limit: 1 },
            ExtractError::TooManyEntries { entries: 2, limit: 1 },
            ExtractError::TooDeep { part: String::new(), limit: 1 },
            ExtractError::MalformedXml { part: String::new(), detail: String::new() },
            ExtractError::NoDocument { seen: "x" },
            ExtractError::UnknownForm { found: None },
            ExtractError::Unreadable,
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(ExtractError::reason_code).collect();
        assert_eq!(codes.len(), all.len());
        assert!(all.iter().all(|e| !e.hint().is_empty() && e.to_string().ends_with('.')));
    }
}
