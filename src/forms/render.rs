//! Renders a [`FormDef`] as the blank .docx providers download (being written).
use std::collections::BTreeMap;

use super::{FormDef, Value};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot render form {form}: {message}")]
    Failed { form: String, message: String },
}

/// Renders the form, blank or with `values` filled in (demo mail, tests, benchmarks).
pub fn render(def: &FormDef, values: Option<&BTreeMap<String, Value>>) -> Result<Vec<u8>, RenderError> {
    let _ = values;
    Err(RenderError::Failed { form: def.id.clone(), message: "renderer not built yet".into() })
}
