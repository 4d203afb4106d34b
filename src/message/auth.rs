//! DMARC results read from `Authentication-Results` (RFC 8601). Only headers stamped by our own
//! receiving MTA count: anyone can write an `Authentication-Results` header into a message they send,
//! and RFC 8601 section 5 has the MTA remove look-alikes carrying its own authserv-id, so the
//! authserv-id named in config is the only mark of a header we can trust.

/// The DMARC verdict of the receiving MTA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dmarc {
    Pass,
    /// Quarantine: the `From` domain did not authorise this message (`auth:dmarc_fail`).
    Fail,
    /// No trusted verdict (no trusted header, `dmarc=none`, a temporary or permanent error).
    None,
}

impl Dmarc {
    /// The ledger reason code when the verdict stops the message, else `None`.
    pub fn reason_code(self) -> Option<&'static str> {
        match self {
            Dmarc::Fail => Some("auth:dmarc_fail"),
            Dmarc::Pass | Dmarc::None => None,
        }
    }
}

/// Combines every trusted header: one `fail` is enough to fail, else one `pass` passes.
pub(super) fn dmarc<'a>(values: impl Iterator<Item = &'a str>, authserv_id: Option<&str>) -> Dmarc {
    let Some(trusted) = authserv_id.map(str::trim).filter(|id| !id.is_empty()) else {
        return Dmarc::None;
    };
    let mut verdict = Dmarc::None;
    for value in values {
        let text = strip_comments(value);
        let mut parts = split_unquoted(&text, ';').into_iter();
        let Some(id) = parts.next().and_then(|p| p.split_whitespace().next()) else {
            continue;
        };
        if !id.eq_ignore_ascii_case(trusted) {
            continue;
        }
        for resinfo in parts {
            let Some((method, result)) = resinfo.split_once('=') else {
                continue;
            };
            // `dmarc/1 = fail`: a method may carry a version.
            let method = method.split('/').next().unwrap_or("").trim();
            if !method.eq_ignore_ascii_case("dmarc") {
                continue;
            }
            let result = result.split_whitespace().next().unwrap_or("");
            if result.eq_ignore_ascii_case("fail") {
                return Dmarc::Fail;
            }
            if result.eq_ignore_ascii_case("pass") {
                verdict = Dmarc::Pass;
            }
        }
    }
    verdict
}

/// Removes RFC 5322 comments (nested parentheses) outside quoted strings.
fn strip_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut depth = 0usize;
    let mut in_quote = false;
    let mut escaped = false;
    for c in value.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' if in_quote || depth > 0 => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                in_quote = !in_quote;
                out.push(c);
            }
            '(' if !in_quote => depth += 1,
            ')' if !in_quote && depth > 0 => {
                depth -= 1;
                out.push(' ');
            }
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn split_unquoted(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quote = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' && in_quote {
            escaped = true;
        } else if c == '"' {
            in_quote = !in_quote;
        } else if c == separator && !in_quote {
            parts.push(&text[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(headers: &[&str], id: Option<&str>) -> Dmarc {
        dmarc(headers.iter().copied(), id)
    }

    #[test]
    fn trusted_fail_fails_and_untrusted_is_ignored() {
        let ours = "mx.cqc.test; spf=pass smtp.mailfrom=x.test; dmarc=fail (p=reject) header.from=x.test";
        let theirs = "evil.test; dmarc=pass header.from=x.test";
        assert_eq!(verdict(&[theirs, ours], Some("MX.cqc.test")), Dmarc::Fail);
        assert_eq!(verdict(&[theirs], Some("mx.cqc.test")), Dmarc::None);
        assert_eq!(verdict(&[ours], None), Dmarc::None);
    }

    #[test]
    fn version_comments_and_method_versions() {
        let h = "mx.cqc.test 1; (a comment; with dmarc=fail inside) dmarc/1 = pass header.from=x.test";
        assert_eq!(verdict(&[h], Some("mx.cqc.test")), Dmarc::Pass);
        let none = "mx.cqc.test; none";
        assert_eq!(verdict(&[none], Some("mx.cqc.test")), Dmarc::None);
    }

    #[test]
    fn any_trusted_fail_wins() {
        let pass = "mx.cqc.test; dmarc=pass";
        let fail = "mx.cqc.test; dkim=pass; dmarc=FAIL";
        assert_eq!(verdict(&[pass, fail], Some("mx.cqc.test")), Dmarc::Fail);
    }

    #[test]
    fn quoted_semicolons_do_not_split() {
        let h = r#"mx.cqc.test; dkim=pass reason="a; dmarc=fail"; dmarc=pass"#;
        assert_eq!(verdict(&[h], Some("mx.cqc.test")), Dmarc::Pass);
    }
}
