//! Raw message bytes in, what the pipeline needs out: the [`Envelope`] (who, what it answers, every
//! header the automatic-mail and DMARC rules read) and the attachments that might be forms.
//!
//! Hostile input is normal input here. The size limit is checked before a byte is parsed; mailparse
//! runs behind `catch_unwind`; the MIME tree is walked with an explicit stack; forwarded messages
//! (`message/rfc822`) are re-parsed up to a nesting cap; an attachment over its limit is recorded, not
//! loaded; `winmail.dat` is unpacked by a bounds-checked reader. Bodies and attachment contents are
//! personal data: they are never logged, and `Debug` prints only their sizes.

mod address;
mod auth;
mod automatic;
mod envelope;
mod tnef;
mod walk;

use std::fmt;

use mailparse::ParsedMail;

pub use address::{AddressError, EmailAddress, Mailbox};
pub use auth::Dmarc;
pub use automatic::AutoReason;
pub use envelope::{Envelope, Header, Headers, ReturnPath, strip_reply_prefixes};

/// Size and depth limits for one message (config `[limits]`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MessageLimits {
    /// A bigger message is refused before parsing (`size:oversize`).
    pub max_message_bytes: u64,
    /// A bigger attachment is recorded as skipped, not loaded.
    pub max_attachment_bytes: u64,
    /// How many `message/rfc822` levels are re-parsed to find a forwarded form.
    pub max_nesting: usize,
}

impl Default for MessageLimits {
    fn default() -> Self {
        Self { max_message_bytes: 25 * 1024 * 1024, max_attachment_bytes: 10 * 1024 * 1024, max_nesting: 8 }
    }
}

/// Why a message could not be read at all. Both outcomes are ledger rows, never silent drops.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("the message is {size} bytes, over the {limit}-byte limit; it was not parsed")]
    Oversize { size: u64, limit: u64 },
    #[error("the message's MIME structure cannot be parsed ({detail}); it needs a person to look at it")]
    Unreadable { detail: String },
}

impl MessageError {
    /// The stable ledger reason code.
    pub fn reason_code(&self) -> &'static str {
        match self {
            MessageError::Oversize { .. } => "size:oversize",
            MessageError::Unreadable { .. } => "unreadable",
        }
    }
}

/// A parsed message: envelope, attachments and the first plain-text body.
#[derive(Clone)]
pub struct Message {
    pub envelope: Envelope,
    /// Every attachment in tree order, forwarded messages' included; see [`Message::candidate_forms`].
    pub attachments: Vec<Attachment>,
    /// Attachments recorded but not loaded (too big, too deeply forwarded, undecodable).
    pub skipped: Vec<SkippedAttachment>,
    /// The first top-level text/plain body part, decoded, cut at 64 KiB.
    pub body_text: Option<String>,
    /// `report-type` of a top-level `multipart/report` (RFC 6522), lowercased; read at parse time so
    /// the automatic-mail rules never call the parser outside its panic guard.
    report_type: Option<String>,
    /// For a delivery report: the Message-ID in the returned message or headers.
    report_original_message_id: Option<String>,
}

impl Message {
    /// Attachments that could be forms: everything except inline images (signature logos), detached
    /// signatures and a `winmail.dat` whose contents were unpacked. PDFs and the like stay in, so the
    /// pipeline can answer "a PDF is not the form"; the Word reader decides what is Word.
    pub fn candidate_forms(&self) -> impl Iterator<Item = &Attachment> {
        self.attachments.iter().filter(|a| a.is_form_candidate())
    }

    /// The DMARC verdict from `Authentication-Results` headers whose authserv-id is `authserv_id`
    /// (config `[mail] authserv_id`); every other such header is ignored, since a sender can forge one.
    pub fn dmarc(&self, authserv_id: Option<&str>) -> Dmarc {
        auth::dmarc(self.envelope.headers.all_raw("Authentication-Results"), authserv_id)
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("envelope", &self.envelope)
            .field("attachments", &self.attachments)
            .field("skipped", &self.skipped)
            .field("body_text_bytes", &self.body_text.as_ref().map(String::len))
            .finish()
    }
}

/// Where an attachment came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A MIME part.
    Part,
    /// A `winmail.dat` whose attachments were unpacked into the entries that follow it.
    UnpackedTnef,
    /// Unpacked from a `winmail.dat`.
    Tnef,
}

/// One attachment, loaded.
#[derive(Clone, PartialEq, Eq)]
pub struct Attachment {
    /// RFC 2231 / RFC 2047 decoded; raw 8-bit names read as UTF-8, else Latin-1. Otherwise exactly as
    /// sent (paths and odd characters included): whoever writes it to disk must sanitise it.
    pub filename: Option<String>,
    /// Lowercase `type/subtype` as labelled by the sender (often `application/octet-stream`).
    pub media_type: String,
    pub bytes: Vec<u8>,
    /// Shown in the body rather than offered as a file.
    pub inline: bool,
    /// Without angle brackets.
    pub content_id: Option<String>,
    /// How many forwarded messages (`message/rfc822`) it sits inside; 0 at the top.
    pub nested_depth: usize,
    pub origin: Origin,
}

/// Media types that sign or describe a message rather than carry content.
const NOT_CONTENT: &[&str] = &[
    "application/pkcs7-signature",
    "application/x-pkcs7-signature",
    "application/pgp-signature",
    "application/applefile",
];

impl Attachment {
    /// An image shown in the body and referenced by Content-ID: a signature logo, not a form.
    pub fn is_inline_image(&self) -> bool {
        self.inline && self.content_id.is_some() && self.media_type.starts_with("image/")
    }

    /// See [`Message::candidate_forms`].
    pub fn is_form_candidate(&self) -> bool {
        self.origin != Origin::UnpackedTnef
            && !self.is_inline_image()
            && !NOT_CONTENT.contains(&self.media_type.as_str())
    }
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("filename", &self.filename)
            .field("media_type", &self.media_type)
            .field("bytes", &self.bytes.len())
            .field("inline", &self.inline)
            .field("content_id", &self.content_id)
            .field("nested_depth", &self.nested_depth)
            .field("origin", &self.origin)
            .finish()
    }
}

/// An attachment that was seen but not loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedAttachment {
    pub filename: Option<String>,
    pub media_type: String,
    /// Decoded size in bytes (estimated from the encoded length when it was too big to decode).
    pub size: u64,
    pub nested_depth: usize,
    pub reason: SkipReason,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// Over `max_attachment_bytes`.
    TooLarge,
    /// A forwarded message nested deeper than `max_nesting`.
    TooDeep,
    /// A forwarded message or encoded body that could not be decoded.
    Unreadable,
}

impl SkipReason {
    pub fn reason_code(self) -> &'static str {
        match self {
            SkipReason::TooLarge => "size:attachment_oversize",
            SkipReason::TooDeep => "mime:too_deep",
            SkipReason::Unreadable => "unreadable",
        }
    }
}

/// Parses raw message bytes. Refuses an oversize message before parsing and turns any parser failure,
/// panic included, into [`MessageError::Unreadable`]: one bad message never stops the daemon.
pub fn parse(raw: &[u8], limits: &MessageLimits) -> Result<Message, MessageError> {
    let size = u64::try_from(raw.len()).unwrap_or(u64::MAX);
    if size > limits.max_message_bytes {
        tracing::debug!(reason = "size:oversize", size, "message refused");
        return Err(MessageError::Oversize { size, limit: limits.max_message_bytes });
    }
    let result = std::panic::catch_unwind(|| build(raw, limits))
        .unwrap_or_else(|_| Err(MessageError::Unreadable { detail: "the MIME parser panicked".into() }));
    match &result {
        Ok(message) => tracing::debug!(
            attachments = message.attachments.len(),
            candidates = message.candidate_forms().count(),
            skipped = message.skipped.len(),
            "message parsed"
        ),
        Err(error) => tracing::debug!(reason = error.reason_code(), "message not parsed"),
    }
    result
}

fn build(raw: &[u8], limits: &MessageLimits) -> Result<Message, MessageError> {
    let parsed = mailparse::parse_mail(raw).map_err(|e| MessageError::Unreadable { detail: e.to_string() })?;
    if !looks_like_mail(&parsed) {
        return Err(MessageError::Unreadable { detail: "no email headers".into() });
    }
    let envelope = Envelope::from_headers(&parsed.headers);
    let report_type = (parsed.ctype.mimetype == "multipart/report")
        .then(|| parsed.ctype.params.get("report-type").map(|t| t.trim().to_ascii_lowercase()).unwrap_or_default());
    let walked = walk::walk(&parsed, limits);
    Ok(Message {
        envelope,
        attachments: walked.attachments,
        skipped: walked.skipped,
        body_text: walked.body_text,
        report_type,
        report_original_message_id: walked.report_original_message_id,
    })
}

/// mailparse reads almost anything as headers; real mail has at least one well-formed header name
/// (printable ASCII, no spaces) and one of the headers every mail system writes.
fn looks_like_mail(parsed: &ParsedMail<'_>) -> bool {
    const ANY_OF: &[&str] = &["From", "Date", "Message-ID", "Subject", "To", "Received", "Return-Path"];
    parsed.headers.iter().any(|h| {
        let key = h.get_key_raw();
        !key.is_empty()
            && key.iter().all(|b| b.is_ascii_graphic() && *b != b':')
            && ANY_OF.iter().any(|name| h.get_key_ref().eq_ignore_ascii_case(name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_deserialize_with_defaults_and_reject_unknown_keys() {
        let limits: MessageLimits = serde_json::from_str(r#"{"max_nesting": 3}"#).unwrap_or_default();
        assert_eq!(limits.max_nesting, 3);
        assert_eq!(limits.max_attachment_bytes, 10 * 1024 * 1024);
        assert!(serde_json::from_str::<MessageLimits>(r#"{"max_nestin": 3}"#).is_err());
    }
}
