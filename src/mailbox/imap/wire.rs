//! Small pieces of the IMAP wire format async-imap leaves to us: UID sets, quoted strings, modified UTF-7
//! folder names, INTERNALDATE, and a command runner that checks the tagged status (async-imap's FETCH,
//! STORE and LIST streams end silently on a `NO`).

use async_imap::Session;
use async_imap::error::Error as ImapLibError;
use async_imap::imap_proto::{Outcome, Response, Status};
use chrono::{DateTime, Utc};

use super::connect::ImapStream;

/// `1:3,5,7:9` from any list of UIDs (sorted and deduplicated here).
pub(crate) fn uid_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end.saturating_add(1) {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// An IMAP quoted string; `None` when the text cannot be quoted (line breaks, NUL).
pub(crate) fn quoted(s: &str) -> Option<String> {
    if s.contains(['\r', '\n', '\0']) {
        return None;
    }
    Some(format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
}

/// A folder name as IMAP spells it on the wire: modified UTF-7 (RFC 3501 5.1.3), so `Entwürfe` is
/// `Entw&APw-rfe`. Printable ASCII passes through, `&` becomes `&-`.
pub(crate) fn mutf7(name: &str) -> String {
    fn flush(out: &mut String, units: &mut Vec<u16>) {
        if units.is_empty() {
            return;
        }
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
        let bytes: Vec<u8> = units.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        for chunk in bytes.chunks(3) {
            let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let chars = chunk.len() + 1;
            for k in 0..chars {
                let index = (n >> (18 - 6 * k)) & 0x3f;
                out.push(char::from(ALPHABET[index as usize]));
            }
        }
        out.push('-');
        units.clear();
    }
    let mut out = String::with_capacity(name.len());
    let mut units = Vec::new();
    for ch in name.chars() {
        if (' '..='~').contains(&ch) {
            flush(&mut out, &mut units);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut buf = [0u16; 2];
            units.extend_from_slice(ch.encode_utf16(&mut buf));
        }
    }
    flush(&mut out, &mut units);
    out
}

/// A folder name as a command argument: modified UTF-7, quoted.
pub(crate) fn folder_arg(name: &str) -> Option<String> {
    quoted(&mutf7(name))
}

/// INTERNALDATE (`17-Jul-1996 02:44:25 -0700`, day possibly space-padded) as UTC.
pub(crate) fn internal_date(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(s.trim(), "%d-%b-%Y %H:%M:%S %z").ok().map(|d| d.with_timezone(&Utc))
}

/// The human part of a tagged response: `[CODE] text`.
pub(crate) fn describe(outcome: &Outcome<'_>) -> String {
    let text = outcome.information.as_deref().unwrap_or("").trim();
    match &outcome.code {
        Some(code) => format!("[{code:?}] {text}"),
        None => text.to_string(),
    }
}

/// Sends `command`, hands every untagged response to `on`, and returns the tagged status: `NO` and `BAD` as
/// errors that leave the connection usable, anything else that goes wrong as an error that does not.
pub(crate) async fn run_tagged<F>(s: &mut Session<ImapStream>, command: &str, mut on: F) -> Result<(), ImapLibError>
where
    F: FnMut(&Response<'_>) + Send,
{
    let id = s.run_command(command).await?;
    loop {
        let Some(resp) = s.read_response().await? else { return Err(ImapLibError::ConnectionLost) };
        match resp.parsed() {
            Response::Done { tag, status, outcome } if *tag == id => {
                return match status {
                    Status::Ok => Ok(()),
                    Status::No => Err(ImapLibError::No(describe(outcome))),
                    Status::Bad => Err(ImapLibError::Bad(describe(outcome))),
                    other => Err(ImapLibError::Io(std::io::Error::other(format!(
                        "unexpected tagged status {other:?}: {}",
                        describe(outcome)
                    )))),
                };
            }
            // A BYE means the server is closing the connection.
            Response::Data { status: Status::Bye, outcome } => {
                return Err(ImapLibError::Io(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    format!("server said BYE: {}", describe(outcome)),
                )));
            }
            parsed => on(parsed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_compress_runs() {
        assert_eq!(uid_set(&[5, 1, 2, 3, 9, 7, 8, 3]), "1:3,5,7:9");
        assert_eq!(uid_set(&[42]), "42");
        assert_eq!(uid_set(&[]), "");
        assert_eq!(uid_set(&[u32::MAX - 1, u32::MAX]), format!("{}:{}", u32::MAX - 1, u32::MAX));
    }

    #[test]
    fn quoting_escapes_and_refuses_line_breaks() {
        assert_eq!(quoted(r#"a "b" \c"#).as_deref(), Some(r#""a \"b\" \\c""#));
        assert_eq!(quoted("a\r\nb"), None);
    }

    #[test]
    fn folder_names_are_modified_utf7() {
        assert_eq!(mutf7("Processed"), "Processed");
        assert_eq!(mutf7("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(mutf7("台北"), "&U,BTFw-");
        assert_eq!(mutf7("A&B"), "A&-B");
        assert_eq!(mutf7("~peter/mail/台北/日本語"), "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
    }

    #[test]
    fn internal_dates_parse_with_padded_days() {
        let d = internal_date(" 7-Jul-2026 02:44:25 -0700").unwrap();
        assert_eq!(d.to_rfc3339(), "2026-07-07T09:44:25+00:00");
        assert!(internal_date("17-Jul-2026 02:44:25 +0000").is_some());
        assert!(internal_date("yesterday").is_none());
    }
}
