//! The envelope: who a message is from, what it answers, and every top-level header kept for the
//! automatic-mail and authentication rules. Raw 8-bit header bytes are read as UTF-8, else Latin-1, so
//! nothing is lost to a decoding error.

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use mailparse::{MailHeader, MailHeaderMap};

use super::address::{self, EmailAddress, Mailbox};

/// One header as it appeared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    /// Unfolded and RFC 2047 decoded: right for text such as `Subject`.
    pub value: String,
    /// Unfolded only. Structured headers (`Authentication-Results`, `Auto-Submitted`, `Precedence`)
    /// may not contain encoded words, and decoding one would let a sender disguise a value, for
    /// example an authserv-id our MTA does not recognise as its own and so does not strip.
    pub raw: String,
}

/// The top-level headers in message order, looked up case-insensitively.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(Vec<Header>);

impl Headers {
    /// The first header with this name (the topmost, e.g. the `Return-Path` the final MTA added), decoded.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.find(name).next().map(|h| h.value.as_str())
    }

    /// Every header with this name, in message order, decoded.
    pub fn all<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.find(name).map(|h| h.value.as_str())
    }

    /// The first header with this name, unfolded but not decoded.
    pub fn first_raw(&self, name: &str) -> Option<&str> {
        self.find(name).next().map(|h| h.raw.as_str())
    }

    /// Every header with this name, in message order, unfolded but not decoded.
    pub fn all_raw<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.find(name).map(|h| h.raw.as_str())
    }

    /// Whether at least one header has this name.
    pub fn contains(&self, name: &str) -> bool {
        self.find(name).next().is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn find<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a Header> + use<'a, 'n> {
        self.0.iter().filter(move |h| h.name.eq_ignore_ascii_case(name))
    }
}

/// The SMTP reverse path the final MTA recorded in `Return-Path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReturnPath {
    /// `<>`: a delivery report or an auto-reply; never answer it.
    Null,
    /// The address inside the angle brackets, as written.
    Address(String),
}

/// What the pipeline needs from a message's headers.
///
/// Authority comes from `from` only (ANSWERS.md): `reply_to` and `sender` are recorded for staff, never
/// used for replies or registry checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The single author named by the one `From` header; `None` when there is no `From`, when it does
    /// not parse, or when several `From` headers or mailboxes make the author ambiguous (a classic
    /// trick to get one address past DMARC and show another to the reader).
    pub from: Option<Mailbox>,
    /// Every mailbox named in any `From` header, so staff can see what an ambiguous `From` said.
    pub from_mailboxes: Vec<Mailbox>,
    pub sender: Option<Mailbox>,
    /// Recorded only: never used for replies or authority.
    pub reply_to: Vec<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    /// RFC 2047 decoded; control characters (an encoded CR LF, say) replaced by spaces so the subject can
    /// never inject a header into a reply.
    pub subject: Option<String>,
    /// Without angle brackets; `None` when absent. Never invented: a made-up ID breaks duplicate detection
    /// (anchors.md lesson 4).
    pub message_id: Option<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub date: Option<DateTime<FixedOffset>>,
    pub return_path: Option<ReturnPath>,
    /// Every top-level header (including `Auto-Submitted`, `Precedence`, `List-*`,
    /// `Authentication-Results`), for the automatic-mail and DMARC rules and for staff.
    pub headers: Headers,
}

impl Envelope {
    pub(super) fn from_headers(raw: &[MailHeader<'_>]) -> Self {
        let headers = Headers(
            raw.iter()
                .map(|h| Header {
                    name: h.get_key().trim().to_string(),
                    value: h.get_value().trim().to_string(),
                    raw: unfold(h.get_value_raw()),
                })
                .collect(),
        );

        let from_headers = raw.get_all_headers("From");
        let from_mailboxes: Vec<Mailbox> = from_headers.iter().flat_map(|h| address::mailboxes(h)).collect();
        let from = match (from_headers.len(), from_mailboxes.as_slice()) {
            (1, [only]) => Some(only.clone()),
            _ => None,
        };
        let first_mailboxes = |name: &str| raw.get_first_header(name).map(address::mailboxes).unwrap_or_default();
        let all_mailboxes =
            |name: &str| raw.get_all_headers(name).into_iter().flat_map(address::mailboxes).collect::<Vec<_>>();

        let subject = headers.first("Subject").map(clean_text).filter(|s| !s.is_empty());
        let message_id = headers.first_raw("Message-ID").and_then(|v| message_ids(v).into_iter().next());
        let in_reply_to = headers.first_raw("In-Reply-To").map(message_ids).unwrap_or_default();
        let references = headers.first_raw("References").map(message_ids).unwrap_or_default();
        let date = headers.first_raw("Date").and_then(parse_date);
        let return_path = headers.first_raw("Return-Path").map(parse_return_path);

        Self {
            from,
            from_mailboxes,
            sender: first_mailboxes("Sender").into_iter().next(),
            reply_to: all_mailboxes("Reply-To"),
            to: all_mailboxes("To"),
            cc: all_mailboxes("Cc"),
            subject,
            message_id,
            in_reply_to,
            references,
            date,
            return_path,
            headers,
        }
    }

    /// Whether any `From` mailbox is one of our own addresses (a loop, or someone forging us).
    pub fn from_is_one_of(&self, own: &[EmailAddress]) -> bool {
        self.from_mailboxes.iter().any(|m| own.contains(&m.address))
    }
}

/// A header value with its line breaks removed (RFC 5322 unfolding), read as UTF-8 or else Latin-1.
fn unfold(value: &[u8]) -> String {
    let text = match std::str::from_utf8(value) {
        Ok(text) => text.to_string(),
        Err(_) => value.iter().map(|b| char::from(*b)).collect(),
    };
    text.replace(['\r', '\n'], "").trim().to_string()
}

/// Message IDs from `Message-ID`, `In-Reply-To` or `References`, without angle brackets. Lenient: text
/// outside brackets (phrases, comments) is skipped, and a lone bare token is taken as the ID, because
/// real senders write `Message-ID: abc@host` and dropping it would break duplicate detection.
pub(super) fn message_ids(value: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('>') else { break };
        let id = after[..end].trim();
        if !id.is_empty() && !id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            ids.push(id.to_string());
        }
        rest = &after[end + 1..];
    }
    if ids.is_empty() {
        let bare = value.trim();
        if !bare.is_empty() && !bare.contains(['<', '>']) && !bare.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            ids.push(bare.to_string());
        }
    }
    ids
}

fn parse_date(value: &str) -> Option<DateTime<FixedOffset>> {
    if let Ok(date) = DateTime::parse_from_rfc2822(value) {
        return Some(date);
    }
    // mailparse is laxer (one-digit hours, odd spacing) but loses the offset, so keep the instant in
    // UTC; it also returns 0 for text with no date in it, so insist on a time of day.
    if !value.contains(':') {
        return None;
    }
    let seconds = mailparse::dateparse(value).ok().filter(|s| *s > 0)?;
    Utc.timestamp_opt(seconds, 0).single().map(|d| d.fixed_offset())
}

fn parse_return_path(value: &str) -> ReturnPath {
    let inner = value.trim().trim_start_matches('<').trim_end_matches('>').trim();
    if inner.is_empty() { ReturnPath::Null } else { ReturnPath::Address(inner.to_string()) }
}

/// Replaces control characters (CR, LF, NUL, ...) with spaces and trims: decoded header text is shown
/// to staff and may be echoed in replies, where a decoded line break would start a new header.
pub(super) fn clean_text(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().trim().to_string()
}

/// Reply and forward prefixes in the languages our senders' mail clients use (DESIGN.md).
const REPLY_PREFIXES: &[&str] = &["re", "aw", "sv", "fwd", "fw", "wg"];
/// Tags that mail gateways put in front of subjects; never anything with digits or hyphens, so a
/// bracketed reference such as `[N-7K3QX9M]` is never stripped.
const GATEWAY_TAGS: &[&str] = &[
    "external",
    "ext",
    "external email",
    "external sender",
    "external mail",
    "caution",
    "warning",
    "spam",
    "suspected spam",
    "possible spam",
    "secure",
];

/// Removes any run of reply/forward prefixes (`Re:`, `RE:`, `AW:`, `SV:`, `Fwd:`, `FW:`, `WG:`, any case,
/// optional spaces, optional count as in `Re[2]:`) and gateway tags such as `[EXTERNAL]` from the start
/// of a subject, so a reply thread can be matched on what is left.
pub fn strip_reply_prefixes(subject: &str) -> &str {
    let mut rest = subject.trim_start();
    loop {
        let next = strip_one_prefix(rest).or_else(|| strip_one_tag(rest));
        match next {
            Some(shorter) => rest = shorter.trim_start(),
            None => return rest.trim_end(),
        }
    }
}

fn strip_one_prefix(text: &str) -> Option<&str> {
    let word_len = text.char_indices().find(|(_, c)| !c.is_ascii_alphabetic()).map_or(text.len(), |(i, _)| i);
    let word = &text[..word_len];
    if !REPLY_PREFIXES.iter().any(|p| p.eq_ignore_ascii_case(word)) {
        return None;
    }
    let mut rest = &text[word_len..];
    // An optional count: `Re[2]:` or `Re(2):`.
    for (open, close) in [('[', ']'), ('(', ')')] {
        if let Some(inner) = rest.strip_prefix(open)
            && let Some(end) = inner.find(close)
            && !inner[..end].is_empty()
            && inner[..end].chars().all(|c| c.is_ascii_digit())
        {
            rest = &inner[end + 1..];
        }
    }
    let rest = rest.trim_start();
    rest.strip_prefix(':').or_else(|| rest.strip_prefix('\u{ff1a}'))
}

fn strip_one_tag(text: &str) -> Option<&str> {
    if let Some(inner) = text.strip_prefix('[') {
        let end = inner.find(']')?;
        let tag = inner[..end].trim();
        if GATEWAY_TAGS.iter().any(|t| t.eq_ignore_ascii_case(tag)) {
            return Some(&inner[end + 1..]);
        }
        return None;
    }
    // `EXTERNAL:` without brackets.
    let (word, rest) = text.split_once(':')?;
    GATEWAY_TAGS.iter().any(|t| t.eq_ignore_ascii_case(word.trim())).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_strip_brackets_and_skip_comments() {
        assert_eq!(message_ids("<a@b> (comment) <c@d>"), vec!["a@b", "c@d"]);
        assert_eq!(message_ids("  bare@host  "), vec!["bare@host"]);
        assert!(message_ids("").is_empty());
        assert!(message_ids("<>").is_empty());
        assert!(message_ids("two words").is_empty());
    }

    #[test]
    fn return_path_null_and_address() {
        assert_eq!(parse_return_path("<>"), ReturnPath::Null);
        assert_eq!(parse_return_path(" < > "), ReturnPath::Null);
        assert_eq!(parse_return_path("<Bounce@Example.org>"), ReturnPath::Address("Bounce@Example.org".into()));
    }

    #[test]
    fn clean_text_removes_line_breaks() {
        assert_eq!(clean_text("a\r\nBcc: x\0"), "a  Bcc: x");
    }

    #[test]
    fn dates_keep_their_offset() {
        let date = parse_date("Tue, 3 Nov 2026 09:15:00 +0000 (GMT)");
        assert_eq!(date.map(|d| d.to_rfc3339()), Some("2026-11-03T09:15:00+00:00".into()));
        assert!(parse_date("not a date").is_none());
        let lax = parse_date("Tue, 3 Nov 2026 9:15:00 +0100");
        assert_eq!(lax.map(|d| d.to_rfc3339()), Some("2026-11-03T08:15:00+00:00".into()));
    }
}
