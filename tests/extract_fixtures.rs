//! The reader against forms written by tools other than Postroom: every `tests/fixtures/forms/NAME.docx`
//! was made from a Postroom blank by python-docx, some then round-tripped through a real LibreOffice
//! (.docx re-save, .odt and back, .doc and back), by `scripts/fixtures/make_all.sh` (see the README there).
//! Beside each is a hand-written `NAME.expected.json`: the form id and version, and every answered field
//! (box fields as lists of choice keys, text as the provider typed it). The expected values are the
//! provider's answers, never our extractor's output.
//!
//! For every fixture this asserts the form id and version, every expected value, and that no other field
//! has a value. Text is compared whitespace-insensitively (runs of whitespace, line breaks included, count
//! as one space), since LibreOffice may move or drop line breaks (shared notes/word-files.md); for a
//! LibreOffice-made fixture a line break may also have vanished with no space left in its place. Fixtures
//! marked `"tags": false` must really hold no `w:tag`, and none of their values may come from a tag: proof
//! the label-cell / legacy-field fallback did the work. In tagged fixtures every value comes from its tag,
//! except the fields the expected file lists under `"sources"` (answers typed next to a control).
//!
//! All fixtures are checked before the test fails, and the failure lists every fixture, field, expected
//! and actual value.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use postroom::forms::extract::extract;
use postroom::forms::{Catalog, DocxLimits, ExtractedForm, Value, ValueSource};

/// The corpus must stay at least this big and this varied.
const MIN_FIXTURES: usize = 12;
const MIN_FORM_TYPES: usize = 6;
const MIN_TAGLESS: usize = 4;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    form_id: String,
    version: String,
    /// False for fixtures saved by LibreOffice, which drops every content-control tag.
    tags: bool,
    /// Fields of a tagged fixture whose value must come from somewhere other than the tag, by source name.
    #[serde(default)]
    sources: BTreeMap<String, String>,
    values: BTreeMap<String, Want>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Want {
    Text(String),
    Choices(Vec<String>),
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/forms")
}

fn fixtures() -> Vec<PathBuf> {
    let dir = fixtures_dir();
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "docx"))
        .collect();
    found.sort();
    found
}

fn name_of(path: &Path) -> String {
    path.file_stem().and_then(|s| s.to_str()).expect("fixture name").to_string()
}

fn load_expected(docx: &Path) -> Expected {
    let path = docx.with_extension("expected.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Whitespace-insensitive form: every run of whitespace (line breaks included) becomes one space.
fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// True when `actual` is `expected` with each line break kept as a space or lost altogether, as
/// LibreOffice does to multi-line answers ("...called 999.CPR was started").
fn matches_with_lost_breaks(expected: &str, actual: &str) -> bool {
    let actual = normalise(actual);
    let mut rest = actual.as_str();
    for (i, line) in expected.lines().map(normalise).filter(|l| !l.is_empty()).enumerate() {
        if i > 0 {
            rest = rest.strip_prefix(' ').unwrap_or(rest);
        }
        match rest.strip_prefix(line.as_str()) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    rest.is_empty()
}

fn source_name(source: ValueSource) -> String {
    serde_json::to_value(source).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn shown(value: &Value) -> String {
    match value {
        Value::Text(t) => format!("{t:?}"),
        Value::Choices(c) => format!("{c:?}"),
    }
}

/// Whether the main document part holds any content-control tag.
fn has_tags(bytes: &[u8]) -> bool {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("fixture is a zip");
    let mut document = String::new();
    zip.by_name("word/document.xml").expect("word/document.xml").read_to_string(&mut document).expect("utf-8");
    document.contains("<w:tag ")
}

/// What checking one fixture found: every way `form` differs from `want` (one line each), and how many texts
/// matched only once lost line breaks were allowed for.
#[derive(Default)]
struct Checked {
    failures: Vec<String>,
    lost_breaks: usize,
}

fn check(name: &str, bytes: &[u8], form: &ExtractedForm, want: &Expected) -> Checked {
    let mut failures = Vec::new();
    let mut lost_breaks = 0;
    let mut fail = |field: &str, message: String| failures.push(format!("{name}: {field}: {message}"));
    if form.form_id != want.form_id || form.version != want.version {
        fail("(form)", format!("expected {} {}, got {} {}", want.form_id, want.version, form.form_id, form.version));
    }
    if !want.tags && has_tags(bytes) {
        fail("(file)", "marked tagless but word/document.xml still holds w:tag".into());
    }
    for (key, expected) in &want.values {
        let Some(got) = form.values.get(key).filter(|v| !v.value.is_empty()) else {
            fail(key, format!("expected {expected:?}, got nothing"));
            continue;
        };
        match (expected, &got.value) {
            (Want::Text(e), Value::Text(a)) => {
                let same = normalise(e) == normalise(a);
                let lost = !same && !want.tags && matches_with_lost_breaks(e, a);
                lost_breaks += usize::from(lost);
                if !same && !lost {
                    fail(key, format!("expected {e:?}, got {a:?} (from {})", source_name(got.source)));
                }
            }
            (Want::Choices(e), Value::Choices(a)) => {
                let (mut e, mut a) = (e.clone(), a.clone());
                e.sort();
                a.sort();
                if e != a {
                    fail(key, format!("expected choices {e:?}, got {a:?} (from {})", source_name(got.source)));
                }
            }
            (e, a) => fail(key, format!("expected {e:?}, got {} (from {})", shown(a), source_name(got.source))),
        }
        let source = source_name(got.source);
        if !want.tags {
            if got.source == ValueSource::Tag {
                fail(key, "read from a tag in a file that has no tags".into());
            }
        } else {
            let required = want.sources.get(key).map(String::as_str).unwrap_or("tag");
            if source != required {
                fail(key, format!("expected the value from {required}, got it from {source}"));
            }
        }
    }
    for (key, got) in &form.values {
        if !got.value.is_empty() && !want.values.contains_key(key) {
            fail(key, format!("unexpected value {} (from {})", shown(&got.value), source_name(got.source)));
        }
    }
    Checked { failures, lost_breaks }
}

#[test]
fn every_fixture_reads_back_as_the_provider_filled_it() {
    let catalog = Catalog::embedded().expect("embedded catalog");
    let limits = DocxLimits::default();
    let paths = fixtures();
    assert!(
        paths.len() >= MIN_FIXTURES,
        "only {} .docx fixtures in {} (at least {MIN_FIXTURES} needed); run scripts/fixtures/make_all.sh",
        paths.len(),
        fixtures_dir().display()
    );

    let mut failures = Vec::new();
    let mut forms = BTreeSet::new();
    let mut tagless = 0;
    for path in &paths {
        let name = name_of(path);
        let want = load_expected(path);
        forms.insert(want.form_id.clone());
        tagless += usize::from(!want.tags);
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let form = match extract(&bytes, &catalog, &limits) {
            Ok(form) => form,
            Err(e) => {
                failures.push(format!("{name}: (file): not read: {} ({e})", e.reason_code()));
                println!("FAIL {name}: not read: {e}");
                continue;
            }
        };
        let Checked { failures: found, lost_breaks } = check(&name, &bytes, &form, &want);
        let mut sources: BTreeMap<String, usize> = BTreeMap::new();
        for value in form.values.values() {
            *sources.entry(source_name(value.source)).or_default() += 1;
        }
        println!(
            "{} {name}: {} {} ({:?}), {} values expected, sources {sources:?}, {lost_breaks} with lost line breaks{}",
            if found.is_empty() { "PASS" } else { "FAIL" },
            form.form_id,
            form.version,
            form.identity_source,
            want.values.len(),
            if found.is_empty() { String::new() } else { format!(", {} failures", found.len()) }
        );
        failures.extend(found);
    }

    assert!(
        forms.len() >= MIN_FORM_TYPES,
        "fixtures cover {} form types {forms:?}, need {MIN_FORM_TYPES}",
        forms.len()
    );
    assert!(tagless >= MIN_TAGLESS, "{tagless} tagless (LibreOffice-made) fixtures, need {MIN_TAGLESS}");
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_expected_file_has_its_fixture() {
    let dir = fixtures_dir();
    for entry in std::fs::read_dir(&dir).expect("fixtures dir") {
        let path = entry.expect("entry").path();
        let file = path.file_name().and_then(|f| f.to_str()).unwrap_or_default().to_string();
        if let Some(stem) = file.strip_suffix(".expected.json") {
            assert!(dir.join(format!("{stem}.docx")).is_file(), "{file} has no {stem}.docx beside it");
        }
    }
}

#[test]
fn lost_line_breaks_match_only_at_line_ends() {
    assert!(matches_with_lost_breaks("called 999.\nCPR was started", "called 999.CPR was started"));
    assert!(matches_with_lost_breaks("called 999.\nCPR was started", "called 999. CPR  was\nstarted"));
    assert!(!matches_with_lost_breaks("called 999.\nCPR was started", "called 999.CPRwas started"));
    assert!(!matches_with_lost_breaks("a\nb", "a b c"));
    assert_eq!(normalise(" a \n\n b\tc "), "a b c");
}
