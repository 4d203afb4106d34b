//! What a form is: `forms/<id>/<version>.toml` parsed into a [`FormDef`], and the [`Catalog`] of every
//! definition Postroom knows. One definition drives rendering, extraction, validation and replies.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A form version such as `2026.1`: dot-separated numbers, compared numerically.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Version {
    text: String,
    parts: Vec<u32>,
}

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        let text = text.trim();
        let parts: Option<Vec<u32>> = text.split('.').map(|p| p.parse().ok()).collect();
        let parts = parts.filter(|p| !p.is_empty())?;
        Some(Version { text: text.to_string(), parts })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.parts.cmp(&other.parts)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl TryFrom<String> for Version {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Version::parse(&s).ok_or_else(|| format!("`{s}` is not a version like 2026.1"))
    }
}

impl From<Version> for String {
    fn from(v: Version) -> String {
        v.text
    }
}

/// The kind of answer a field takes; decides the control rendered, how the value is read and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    Text,
    LongText,
    Date,
    Time,
    YesNo,
    Choice,
    MultiChoice,
    ProviderId,
    LocationId,
    Email,
    Phone,
    Number,
}

impl FieldKind {
    /// Kinds answered by ticking boxes rather than typing.
    pub fn is_boxes(self) -> bool {
        matches!(self, FieldKind::YesNo | FieldKind::Choice | FieldKind::MultiChoice)
    }
}

/// One tickable answer of a choice field: `key` is stable (used in tags and the database), `label` is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    pub key: String,
    pub label: String,
}

/// "Required when `field` equals `equals`" (a choice key, `yes`/`no`, or text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    pub field: String,
    pub equals: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    pub key: String,
    pub label: String,
    #[serde(rename = "type")]
    pub kind: FieldKind,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub required_when: Option<Condition>,
    #[serde(default)]
    pub choices: Vec<Choice>,
    #[serde(default)]
    pub help: Option<String>,
    /// Dates that may lie ahead (planned absence, expected return).
    #[serde(default)]
    pub allow_future: bool,
}

impl FieldDef {
    /// The choices a field offers; yes/no fields have theirs implied.
    pub fn effective_choices(&self) -> Vec<Choice> {
        if self.kind == FieldKind::YesNo && self.choices.is_empty() {
            return vec![
                Choice { key: "yes".into(), label: "Yes".into() },
                Choice { key: "no".into(), label: "No".into() },
            ];
        }
        self.choices.clone()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    pub title: String,
    #[serde(default)]
    pub help: Option<String>,
    pub fields: Vec<FieldDef>,
}

fn default_mailbox() -> String {
    "notifications".to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormDef {
    pub id: String,
    pub version: Version,
    pub title: String,
    /// e.g. "Regulation 16, Care Quality Commission (Registration) Regulations 2009".
    pub regulation: String,
    /// Which mailbox the form belongs to (`notifications` unless said otherwise).
    #[serde(default = "default_mailbox")]
    pub mailbox: String,
    /// A second part (a return after an absence) names the form of its first part.
    #[serde(default)]
    pub part_of: Option<String>,
    /// Whether an incident is urgent for staff even when the form fails checks (death, abuse).
    #[serde(default)]
    pub urgent: bool,
    #[serde(default)]
    pub intro: Option<String>,
    pub sections: Vec<Section>,
}

impl FormDef {
    pub fn fields(&self) -> impl Iterator<Item = &FieldDef> {
        self.sections.iter().flat_map(|s| s.fields.iter())
    }

    pub fn field(&self, key: &str) -> Option<&FieldDef> {
        self.fields().find(|f| f.key == key)
    }

    /// The text stamped in every rendered form's footer; the reader looks for it when custom
    /// properties are gone.
    pub fn stamp(&self) -> String {
        stamp_text(&self.id, self.version.as_str())
    }

    /// Checks the definition itself: unique keys and labels, choices where needed, conditions that
    /// point at real fields. A broken definition must fail at start-up, not on a provider's form.
    pub fn check(&self) -> Result<(), DefinitionError> {
        let err = |msg: String| Err(DefinitionError { form: format!("{} {}", self.id, self.version), message: msg });
        if !is_key(&self.id) {
            return err(format!("form id `{}` must be lower_snake_case", self.id));
        }
        let mut keys = std::collections::HashSet::new();
        let mut labels = std::collections::HashSet::new();
        for f in self.fields() {
            if !is_key(&f.key) {
                return err(format!("field key `{}` must be lower_snake_case", f.key));
            }
            if !keys.insert(f.key.as_str()) {
                return err(format!("field key `{}` appears twice", f.key));
            }
            if !labels.insert(normalise_label(&f.label)) {
                return err(format!(
                    "label `{}` appears twice: labels must be unique so a tagless form still reads",
                    f.label
                ));
            }
            let choices = f.effective_choices();
            if matches!(f.kind, FieldKind::Choice | FieldKind::MultiChoice) && choices.is_empty() {
                return err(format!("field `{}` is a choice with no choices", f.key));
            }
            if !f.kind.is_boxes() && !f.choices.is_empty() {
                return err(format!("field `{}` has choices but is not a choice field", f.key));
            }
            let mut choice_keys = std::collections::HashSet::new();
            for c in &choices {
                if !is_key(&c.key) || !choice_keys.insert(c.key.as_str()) {
                    return err(format!("field `{}` has a bad or repeated choice key `{}`", f.key, c.key));
                }
            }
        }
        for f in self.fields() {
            if let Some(cond) = &f.required_when {
                let Some(other) = self.field(&cond.field) else {
                    return err(format!("field `{}` is required when `{}`, which does not exist", f.key, cond.field));
                };
                if other.kind.is_boxes() && !other.effective_choices().iter().any(|c| c.key == cond.equals) {
                    return err(format!(
                        "field `{}` depends on `{}` = `{}`, which is not one of its choices",
                        f.key, cond.field, cond.equals
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The footer stamp for a form id and version: `Postroom form <id> version <version>`.
pub fn stamp_text(id: &str, version: &str) -> String {
    format!("Postroom form {id} version {version}")
}

/// Labels compared the way a reader sees them: case, spacing, a trailing `*` and `:` ignored.
pub fn normalise_label(label: &str) -> String {
    let words: Vec<&str> = label.split_whitespace().collect();
    let mut s = words.join(" ").to_lowercase();
    while s.ends_with('*') || s.ends_with(':') || s.ends_with(' ') {
        s.pop();
    }
    s
}

fn is_key(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.starts_with(|c: char| c.is_ascii_lowercase())
}

#[derive(Debug, thiserror::Error)]
#[error("form definition {form}: {message}")]
pub struct DefinitionError {
    pub form: String,
    pub message: String,
}

/// Every form definition, by id, each id's versions in ascending order (the last is current).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    forms: BTreeMap<String, Vec<FormDef>>,
}

impl Catalog {
    /// The definitions compiled into the binary from `forms/`.
    pub fn embedded() -> Result<Catalog, DefinitionError> {
        Catalog::from_sources(crate::embedded::FORMS.iter().map(|(p, t)| (p.to_string(), t.to_string())))
    }

    /// The embedded definitions, with any in `dir` (same layout) added or replacing them.
    pub fn with_overrides(dir: &Path) -> Result<Catalog, DefinitionError> {
        let mut sources: Vec<(String, String)> =
            crate::embedded::FORMS.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect();
        let read_err = |m: String| DefinitionError { form: dir.display().to_string(), message: m };
        let ids = std::fs::read_dir(dir).map_err(|e| read_err(format!("cannot read forms directory: {e}")))?;
        for id_dir in ids.flatten().filter(|e| e.path().is_dir()) {
            let files = std::fs::read_dir(id_dir.path()).map_err(|e| read_err(e.to_string()))?;
            for f in files.flatten().filter(|f| f.path().extension().is_some_and(|e| e == "toml")) {
                let rel = format!("{}/{}", id_dir.file_name().to_string_lossy(), f.file_name().to_string_lossy());
                let text = std::fs::read_to_string(f.path()).map_err(|e| read_err(format!("{rel}: {e}")))?;
                sources.retain(|(p, _)| *p != rel);
                sources.push((rel, text));
            }
        }
        Catalog::from_sources(sources)
    }

    /// Parses `(path, toml)` pairs where path is `<id>/<version>.toml`.
    pub fn from_sources(sources: impl IntoIterator<Item = (String, String)>) -> Result<Catalog, DefinitionError> {
        let mut forms: BTreeMap<String, Vec<FormDef>> = BTreeMap::new();
        for (path, text) in sources {
            let def: FormDef =
                toml::from_str(&text).map_err(|e| DefinitionError { form: path.clone(), message: e.to_string() })?;
            let expected = format!("{}/{}.toml", def.id, def.version);
            if path.trim_start_matches('/') != expected {
                return Err(DefinitionError { form: path, message: format!("must live at forms/{expected}") });
            }
            def.check()?;
            forms.entry(def.id.clone()).or_default().push(def);
        }
        for versions in forms.values_mut() {
            versions.sort_by(|a, b| a.version.cmp(&b.version));
        }
        Ok(Catalog { forms })
    }

    /// The current (highest) version of each form.
    pub fn current_forms(&self) -> impl Iterator<Item = &FormDef> {
        self.forms.values().filter_map(|v| v.last())
    }

    pub fn all(&self) -> impl Iterator<Item = &FormDef> {
        self.forms.values().flatten()
    }

    pub fn current(&self, id: &str) -> Option<&FormDef> {
        self.forms.get(id).and_then(|v| v.last())
    }

    pub fn get(&self, id: &str, version: &str) -> Option<&FormDef> {
        let v = Version::parse(version)?;
        self.forms.get(id)?.iter().find(|d| d.version == v)
    }

    /// Finds the form whose title matches, for files that lost both properties and footer.
    pub fn by_title(&self, title: &str) -> Option<&FormDef> {
        let t = normalise_label(title);
        self.current_forms().find(|d| normalise_label(&d.title) == t)
    }

    pub fn len(&self) -> usize {
        self.forms.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: &str = r#"
id = "mini"
version = "2026.1"
title = "Mini form"
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
key = "why"
label = "Why not"
type = "long_text"
required_when = { field = "expected", equals = "no" }
"#;

    #[test]
    fn versions_compare_numerically_not_as_text() {
        let a = Version::parse("2026.2").unwrap();
        let b = Version::parse("2026.10").unwrap();
        assert!(a < b);
        assert!(Version::parse("2026.x").is_none());
        assert!(Version::parse("").is_none());
    }

    #[test]
    fn catalog_orders_versions_and_picks_highest_as_current() {
        let v2 = MINI.replace("2026.1", "2026.10");
        let cat = Catalog::from_sources([
            ("mini/2026.10.toml".to_string(), v2),
            ("mini/2026.1.toml".to_string(), MINI.to_string()),
        ])
        .unwrap();
        assert_eq!(cat.current("mini").unwrap().version.as_str(), "2026.10");
        assert_eq!(cat.get("mini", "2026.1").unwrap().version.as_str(), "2026.1");
        assert_eq!(cat.len(), 2);
        assert_eq!(cat.by_title("  MINI   form ").unwrap().id, "mini");
    }

    #[test]
    fn yes_no_fields_have_implied_choices_and_conditions_are_checked() {
        let cat = Catalog::from_sources([("mini/2026.1.toml".to_string(), MINI.to_string())]).unwrap();
        let f = cat.current("mini").unwrap().field("expected").unwrap();
        assert_eq!(f.effective_choices().iter().map(|c| c.key.as_str()).collect::<Vec<_>>(), ["yes", "no"]);
        let bad = MINI.replace("equals = \"no\"", "equals = \"maybe\"");
        let err = Catalog::from_sources([("mini/2026.1.toml".to_string(), bad)]).unwrap_err();
        assert!(err.message.contains("not one of its choices"), "{err}");
    }

    #[test]
    fn definition_in_wrong_place_or_with_duplicate_label_is_refused() {
        let err = Catalog::from_sources([("other/1.toml".to_string(), MINI.to_string())]).unwrap_err();
        assert!(err.message.contains("forms/mini/2026.1.toml"), "{err}");
        let dup = MINI.replace("label = \"Why not\"", "label = \"provider ID *\"");
        let err = Catalog::from_sources([("mini/2026.1.toml".to_string(), dup)]).unwrap_err();
        assert!(err.message.contains("appears twice"), "{err}");
    }

    #[test]
    fn embedded_forms_all_parse() {
        let cat = Catalog::embedded().unwrap();
        for def in cat.all() {
            def.check().unwrap();
        }
    }
}
