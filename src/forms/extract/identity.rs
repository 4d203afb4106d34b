//! Which form a document says it is. Reading order (docs/form-layout.md): custom properties
//! `postroom.form`/`postroom.version`, then the stamp `Postroom form <id> version <version>` in a footer,
//! header or any paragraph (hidden text included), then the core title looked up in the catalog. A source
//! naming a form the catalog does not know is passed over for the next one.

use super::container::Package;
use super::{ExtractError, scan, xml};
use crate::forms::{Catalog, DocxLimits, IdentitySource, Version};

/// The identity a document declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Declared {
    pub id: String,
    pub version: String,
    pub source: IdentitySource,
}

/// Finds the first `Postroom form <id> version <version>` in text, whatever its spacing or case.
pub(super) fn find_stamp(text: &str) -> Option<(String, String)> {
    const PREFIX: &str = "postroom form";
    // ASCII lowercasing keeps byte offsets, so positions found in `lower` index `text` too.
    let lower = text.to_ascii_lowercase();
    // The tail is read no further than a stamp can reach, so text stuffed with the prefix stays linear.
    let tail = |at: usize| text.get(at + PREFIX.len()..).map(|rest| super::boxes::truncate(rest, 160));
    lower.match_indices(PREFIX).find_map(|(at, _)| parse_stamp_tail(tail(at)?))
}

/// `<id> version <version>` after the prefix.
fn parse_stamp_tail(rest: &str) -> Option<(String, String)> {
    let punct = |c: char| matches!(c, '.' | ',' | ';' | ':' | ')' | '(' | '"' | '\'');
    let mut words = rest.split_whitespace();
    let id = words.next()?.trim_matches(punct);
    if !words.next()?.eq_ignore_ascii_case("version") {
        return None;
    }
    let version = words.next()?.trim_matches(punct);
    let ok_id = !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (ok_id && Version::parse(version).is_some()).then(|| (id.to_ascii_lowercase(), version.to_string()))
}

/// Works out the declared identity, reading footers and core properties only when needed. `body` is the
/// transcript of the main document, already scanned.
pub(super) fn resolve(
    pkg: &mut Package<'_>,
    catalog: &Catalog,
    limits: &DocxLimits,
    body: &str,
) -> Result<Declared, ExtractError> {
    let depth = limits.max_xml_depth;
    let mut first_seen: Option<String> = None;
    let mut noted = |id: &str| {
        if first_seen.is_none() {
            first_seen = Some(id.to_string());
        }
    };

    let custom = match pkg.read_text("docProps/custom.xml")? {
        Some(xml) => xml::custom_properties(&xml, depth)?,
        None => (None, None),
    };
    if let (Some(id), version) = custom {
        let id = id.to_ascii_lowercase();
        noted(&id);
        if catalog.current(&id).is_some() {
            let version = match version {
                Some(v) => v,
                // Properties without a version: take the stamp's, else the current definition's.
                None => match stamp_in_parts(pkg, depth, body)? {
                    Some((sid, sv)) if sid == id => sv,
                    _ => catalog.current(&id).map(|d| d.version.as_str().to_string()).unwrap_or_default(),
                },
            };
            return Ok(Declared { id, version, source: IdentitySource::CustomProperties });
        }
    }

    if let Some((id, version)) = stamp_in_parts(pkg, depth, body)? {
        noted(&id);
        if catalog.current(&id).is_some() {
            return Ok(Declared { id, version, source: IdentitySource::Footer });
        }
    }

    if let Some(xml) = pkg.read_text("docProps/core.xml")?
        && let Some(title) = xml::core_title(&xml, depth)?
        && let Some(def) = catalog.by_title(&title)
    {
        return Ok(Declared { id: def.id.clone(), version: def.version.to_string(), source: IdentitySource::Title });
    }
    Err(ExtractError::UnknownForm { found: first_seen })
}

/// The stamp from footers and headers, then from the body (hidden paragraphs count).
fn stamp_in_parts(pkg: &mut Package<'_>, depth: usize, body: &str) -> Result<Option<(String, String)>, ExtractError> {
    for part in pkg.footer_parts() {
        if let Some(xml) = pkg.read_text(&part)? {
            let footer = scan::scan(&xml, &part, depth)?;
            if let Some(stamp) = find_stamp(&footer.text) {
                return Ok(Some(stamp));
            }
        }
    }
    Ok(find_stamp(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_is_found_in_running_text_with_any_spacing_and_case() {
        let s = |t: &str| find_stamp(t);
        assert_eq!(s("Postroom form death version 2026.1"), Some(("death".into(), "2026.1".into())));
        assert_eq!(s("page 2\nPOSTROOM FORM  Death\nversion 2026.10."), Some(("death".into(), "2026.10".into())));
        assert_eq!(s("Postroom form is great. Postroom form abuse version 3"), Some(("abuse".into(), "3".into())));
        assert_eq!(s("Postroom form death version soon"), None);
        assert_eq!(s("nothing here"), None);
    }
}
