//! Forms: the definitions (`definition`), the blank .docx Postroom publishes (`render`), and the reader that
//! turns a provider's filled .docx back into values by field key (`extract`).

pub mod definition;
pub mod extract;
pub mod render;

use std::collections::BTreeMap;

use serde::Serialize;

pub use definition::{Catalog, Choice, Condition, FieldDef, FieldKind, FormDef, Section, Version};

/// Caps applied while opening a .docx: a hostile attachment costs bounded memory and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DocxLimits {
    /// Total bytes inflated from the zip, all parts together (zip bombs).
    pub max_unzipped_bytes: u64,
    pub max_zip_entries: usize,
    /// Element nesting depth of any XML part.
    pub max_xml_depth: usize,
}

impl Default for DocxLimits {
    fn default() -> Self {
        DocxLimits { max_unzipped_bytes: 50 * 1024 * 1024, max_zip_entries: 500, max_xml_depth: 256 }
    }
}

/// A value read from a form: typed text, or the keys of the ticked boxes (`yes`/`no` for yes/no fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Text(String),
    Choices(Vec<String>),
}

impl Value {
    /// True when nothing was entered: blank text, or no box ticked.
    pub fn is_empty(&self) -> bool {
        match self {
            Value::Text(t) => t.trim().is_empty(),
            Value::Choices(c) => c.is_empty(),
        }
    }

    /// The value as one line of text, for messages and the console.
    pub fn display(&self) -> String {
        match self {
            Value::Text(t) => t.trim().to_string(),
            Value::Choices(c) => c.join(", "),
        }
    }
}

/// Where in the document a value was found; staff see it beside the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueSource {
    /// A content control whose tag is the field key.
    Tag,
    /// A legacy form field (FORMTEXT, FORMCHECKBOX) named after the field key.
    LegacyField,
    /// The cell next to the field's label cell (tags lost, e.g. after LibreOffice).
    LabelCell,
    /// A `Label: value` line of text.
    LabelLine,
}

/// Where the form id and version were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentitySource {
    CustomProperties,
    Footer,
    Title,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtractedValue {
    pub value: Value,
    pub source: ValueSource,
}

/// A filled form as read: which form it says it is, and the values by field key. Fields left blank or
/// showing their placeholder are absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtractedForm {
    pub form_id: String,
    /// The version the document declares (may be stale or unknown to the catalog).
    pub version: String,
    pub identity_source: IdentitySource,
    pub values: BTreeMap<String, ExtractedValue>,
}

impl ExtractedForm {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key).map(|v| &v.value).filter(|v| !v.is_empty())
    }

    pub fn text(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Value::Text(t)) => Some(t.trim()),
            _ => None,
        }
    }
}
