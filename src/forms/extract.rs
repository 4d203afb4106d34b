//! Reads a filled .docx into an [`ExtractedForm`] (being written).
use super::{Catalog, DocxLimits, ExtractedForm};

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("not a Word document")]
    NotWord,
}

pub fn extract(bytes: &[u8], catalog: &Catalog, limits: &DocxLimits) -> Result<ExtractedForm, ExtractError> {
    let _ = (bytes, catalog, limits);
    Err(ExtractError::NotWord)
}
