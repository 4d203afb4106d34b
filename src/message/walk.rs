//! The MIME walk: every part of the tree in document order, deciding for each whether it is a body,
//! a report part, a forwarded message to re-parse, or an attachment to load or record as skipped.

use std::borrow::Cow;
use std::collections::BTreeMap;

use mailparse::body::Body;
use mailparse::{DispositionType, MailHeaderMap, ParsedMail};

use super::{Attachment, MessageLimits, Origin, SkipReason, SkippedAttachment, envelope, tnef};

/// Enough of the first text/plain part for staff and for finding a reference; the rest is in the raw
/// message.
const BODY_TEXT_MAX_BYTES: usize = 64 * 1024;
/// Whatever the configuration says, forwarded messages are never re-parsed deeper than this: each
/// level holds its decoded copy and a stack frame.
const NESTING_HARD_CAP: usize = 32;

/// What the walk found.
pub(super) struct Walked {
    pub attachments: Vec<Attachment>,
    pub skipped: Vec<SkippedAttachment>,
    pub body_text: Option<String>,
    pub report_original_message_id: Option<String>,
}

pub(super) fn walk(root: &ParsedMail<'_>, limits: &MessageLimits) -> Walked {
    let mut walk = Walk {
        limits,
        max_nesting: limits.max_nesting.min(NESTING_HARD_CAP),
        found: Walked {
            attachments: Vec::new(),
            skipped: Vec::new(),
            body_text: None,
            report_original_message_id: None,
        },
    };
    walk.tree(root, 0);
    walk.found
}

struct Walk<'l> {
    limits: &'l MessageLimits,
    max_nesting: usize,
    found: Walked,
}

impl Walk<'_> {
    /// Walks one parsed message in document order with an explicit stack (mailparse allows trees 100
    /// deep); recursion happens only into forwarded messages, at most `max_nesting` levels. A multipart
    /// whose boundary never appears has no parts to read and yields nothing.
    fn tree(&mut self, root: &ParsedMail<'_>, nesting: usize) {
        let mut stack: Vec<(&ParsedMail<'_>, bool)> = vec![(root, false)];
        while let Some((part, in_report)) = stack.pop() {
            let media_type = part.ctype.mimetype.as_str();
            if media_type.starts_with("multipart/") {
                let report = media_type == "multipart/report";
                stack.extend(part.subparts.iter().rev().map(|sub| (sub, report)));
                continue;
            }
            self.leaf(part, nesting, in_report);
        }
    }

    fn leaf(&mut self, part: &ParsedMail<'_>, nesting: usize, in_report: bool) {
        // Only the message's own report says what bounced; a forwarded bounce inside it does not.
        let in_report = in_report && nesting == 0;
        let media_type = part.ctype.mimetype.as_str();
        let disposition = part.get_content_disposition();
        let filename = filename(&disposition.params).or_else(|| filename_from_type(&part.ctype.params));
        match media_type {
            "message/rfc822" | "message/global" => {
                self.forwarded(part, nesting, in_report, filename);
                return;
            }
            "message/delivery-status" | "message/global-delivery-status" if in_report => return,
            "text/rfc822-headers" | "message/rfc822-headers" | "message/global-headers" if in_report => {
                let body = part.get_body_raw().unwrap_or_default();
                if let Ok((headers, _)) = mailparse::parse_headers(&body) {
                    self.note_report_id(headers.get_first_value("Message-ID").as_deref());
                }
                return;
            }
            "message/disposition-notification" | "message/global-disposition-notification" if in_report => {
                let body = part.get_body_raw().unwrap_or_default();
                if let Ok((headers, _)) = mailparse::parse_headers(&body) {
                    self.note_report_id(headers.get_first_value("Original-Message-ID").as_deref());
                }
                return;
            }
            _ => {}
        }
        let is_attachment = disposition.disposition == DispositionType::Attachment;
        if matches!(media_type, "text/plain" | "text/html") && !is_attachment && filename.is_none() {
            if media_type == "text/plain" && nesting == 0 && self.found.body_text.is_none() {
                self.found.body_text = part.get_body().ok().map(|text| cap_text(text, BODY_TEXT_MAX_BYTES));
            }
            return;
        }
        let content_id = part
            .headers
            .get_first_value("Content-ID")
            .map(|id| id.trim().trim_start_matches('<').trim_end_matches('>').trim().to_string())
            .filter(|id| !id.is_empty());
        let inline = if part.headers.get_first_header("Content-Disposition").is_some() {
            disposition.disposition == DispositionType::Inline
        } else {
            content_id.is_some()
        };
        let skipped = |size: u64, reason: SkipReason| SkippedAttachment {
            filename: filename.clone(),
            media_type: media_type.to_string(),
            size,
            nested_depth: nesting,
            reason,
        };
        let limit = self.limits.max_attachment_bytes;
        let estimate = decoded_size_estimate(part);
        if estimate > limit {
            self.found.skipped.push(skipped(estimate, SkipReason::TooLarge));
            return;
        }
        let bytes = match part.get_body_raw() {
            Ok(bytes) => bytes,
            Err(_) => {
                self.found.skipped.push(skipped(estimate, SkipReason::Unreadable));
                return;
            }
        };
        let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        if size > limit {
            self.found.skipped.push(skipped(size, SkipReason::TooLarge));
            return;
        }
        let attachment = Attachment {
            filename,
            media_type: media_type.to_string(),
            bytes,
            inline,
            content_id,
            nested_depth: nesting,
            origin: Origin::Part,
        };
        self.push_maybe_tnef(attachment);
    }

    /// Records an attachment; a `winmail.dat` is unpacked and its attachments follow it.
    fn push_maybe_tnef(&mut self, mut attachment: Attachment) {
        let labelled = matches!(attachment.media_type.as_str(), "application/ms-tnef" | "application/vnd.ms-tnef")
            || attachment.filename.as_deref().is_some_and(|n| n.eq_ignore_ascii_case("winmail.dat"));
        if !labelled || !tnef::is_tnef(&attachment.bytes) {
            self.found.attachments.push(attachment);
            return;
        }
        let limit = self.limits.max_attachment_bytes;
        let mut inner = Vec::new();
        for found in tnef::attachments(&attachment.bytes) {
            let data = found.data;
            let media_type = found.media_type.unwrap_or_else(|| "application/octet-stream".to_string());
            let size = u64::try_from(data.len()).unwrap_or(u64::MAX);
            if size > limit {
                self.found.skipped.push(SkippedAttachment {
                    filename: found.name,
                    media_type,
                    size,
                    nested_depth: attachment.nested_depth,
                    reason: SkipReason::TooLarge,
                });
                continue;
            }
            inner.push(Attachment {
                filename: found.name,
                media_type,
                bytes: data.to_vec(),
                inline: false,
                content_id: None,
                nested_depth: attachment.nested_depth,
                origin: Origin::Tnef,
            });
        }
        if !inner.is_empty() {
            attachment.origin = Origin::UnpackedTnef;
        }
        self.found.attachments.push(attachment);
        self.found.attachments.extend(inner);
    }

    /// Re-parses a forwarded message (mailparse leaves `message/rfc822` as a leaf) and walks it.
    fn forwarded(&mut self, part: &ParsedMail<'_>, nesting: usize, in_report: bool, filename: Option<String>) {
        let media_type = part.ctype.mimetype.clone();
        let skip = |size: u64, reason: SkipReason| SkippedAttachment {
            filename: filename.clone(),
            media_type: media_type.clone(),
            size,
            nested_depth: nesting,
            reason,
        };
        let body: Cow<'_, [u8]> = match part.get_body_encoded() {
            Body::SevenBit(b) | Body::EightBit(b) => Cow::Borrowed(b.get_raw()),
            Body::Binary(b) => Cow::Borrowed(b.get_raw()),
            Body::Base64(_) | Body::QuotedPrintable(_) => match part.get_body_raw() {
                Ok(decoded) => Cow::Owned(decoded),
                Err(_) => {
                    self.found.skipped.push(skip(decoded_size_estimate(part), SkipReason::Unreadable));
                    return;
                }
            },
        };
        let size = u64::try_from(body.len()).unwrap_or(u64::MAX);
        if nesting + 1 > self.max_nesting {
            self.found.skipped.push(skip(size, SkipReason::TooDeep));
            return;
        }
        match mailparse::parse_mail(&body) {
            Ok(inner) => {
                if in_report {
                    self.note_report_id(inner.headers.get_first_value("Message-ID").as_deref());
                }
                self.tree(&inner, nesting + 1);
            }
            Err(_) => self.found.skipped.push(skip(size, SkipReason::Unreadable)),
        }
    }

    fn note_report_id(&mut self, value: Option<&str>) {
        if self.found.report_original_message_id.is_none() {
            self.found.report_original_message_id = value.and_then(|v| envelope::message_ids(v).into_iter().next());
        }
    }
}

/// The decoded size without decoding: exact for well-formed base64, an upper bound otherwise
/// (quoted-printable and identity encodings never grow when decoded).
fn decoded_size_estimate(part: &ParsedMail<'_>) -> u64 {
    let size = match part.get_body_encoded() {
        Body::Base64(b) => {
            let symbols = b.get_raw().iter().filter(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/')).count();
            symbols / 4 * 3 + (symbols % 4 * 3 / 4)
        }
        Body::QuotedPrintable(b) => b.get_raw().len(),
        Body::SevenBit(b) | Body::EightBit(b) => b.get_raw().len(),
        Body::Binary(b) => b.get_raw().len(),
    };
    u64::try_from(size).unwrap_or(u64::MAX)
}

/// `filename` from Content-Disposition parameters (mailparse has applied RFC 2231 and RFC 2047).
fn filename(params: &BTreeMap<String, String>) -> Option<String> {
    named(params, "filename")
}

/// The older `name` parameter of Content-Type.
fn filename_from_type(params: &BTreeMap<String, String>) -> Option<String> {
    named(params, "name")
}

fn named(params: &BTreeMap<String, String>, key: &str) -> Option<String> {
    let decoded = params.get(key).cloned().or_else(|| {
        // mailparse leaves `name*=charset''...` untouched when it does not know the charset: decode the
        // percent escapes ourselves and read the octets as UTF-8, else Latin-1.
        params
            .get(&format!("{key}*"))
            .map(|v| v.splitn(3, '\'').nth(2).unwrap_or(v))
            .map(|v| bytes_to_text(&percent_decode(v)))
    })?;
    (!decoded.trim().is_empty()).then_some(decoded)
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Ok(hex) = std::str::from_utf8(hex)
            && let Ok(value) = u8::from_str_radix(hex, 16)
        {
            out.push(value);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn bytes_to_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => bytes.iter().map(|b| char::from(*b)).collect(),
    }
}

fn cap_text(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_text_cuts_on_a_char_boundary() {
        assert_eq!(cap_text("ééé".into(), 3), "é");
        assert_eq!(cap_text("abc".into(), 10), "abc");
    }

    #[test]
    fn unknown_charset_filename_is_percent_decoded() {
        let mut params = BTreeMap::new();
        params.insert("filename*".to_string(), "x-unknown''Notifica%C3%A7%C3%A3o.docx".to_string());
        assert_eq!(filename(&params).as_deref(), Some("Notificação.docx"));
        params.insert("filename*".to_string(), "x-unknown''caf%E9.docx".to_string());
        assert_eq!(filename(&params).as_deref(), Some("café.docx"));
    }

    #[test]
    fn base64_size_estimate_is_exact() {
        let raw = b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8g\r\nd29ybGQ=\r\n";
        let parsed = mailparse::parse_mail(raw);
        assert_eq!(parsed.map(|p| decoded_size_estimate(&p)).ok(), Some(11));
    }
}
