//! A small RFC 4180 reader for the registry's CSV files, which are untrusted input: quoted fields may hold
//! commas, doubled quotes and line breaks; records end in CRLF, LF or a lone CR; a UTF-8 byte-order mark
//! is skipped. Each record carries the physical line it starts on, so an import can point at the exact
//! line to fix. The reader is lenient where spreadsheets are sloppy (a stray quote inside an unquoted field
//! is kept as text) and strict only where data would be silently swallowed (a quote never closed).

use std::fmt;

/// One record and the 1-based line of the file it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub line: usize,
    pub fields: Vec<String>,
}

impl Record {
    /// A record with no content at all (an empty line, or only commas): skipped everywhere.
    pub fn is_blank(&self) -> bool {
        self.fields.iter().all(|f| f.trim().is_empty())
    }

    /// The trimmed field at `index`, or "" when the record is shorter.
    pub fn get(&self, index: usize) -> &str {
        self.fields.get(index).map_or("", |f| f.trim())
    }
}

/// Why a file cannot be read as CSV at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CsvError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// The file as text: UTF-8 with its byte-order mark removed, or where it stops being UTF-8.
pub(crate) fn decode(bytes: &[u8]) -> Result<&str, CsvError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| {
        let good = &bytes[..e.valid_up_to()];
        CsvError {
            line: good.iter().filter(|&&b| b == b'\n').count() + 1,
            message: "the file is not UTF-8 text (it may have been saved as \"CSV\" in a Windows encoding); \
                      save it as \"CSV UTF-8\" and import it again"
                .into(),
        }
    })
}

/// Reads records one at a time from decoded text.
pub(crate) struct Reader<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> Reader<'a> {
    pub fn new(text: &'a str) -> Reader<'a> {
        Reader { text: text.strip_prefix('\u{feff}').unwrap_or(text), pos: 0, line: 1 }
    }

    /// The next record, or None at the end of the text.
    pub fn next_record(&mut self) -> Option<Result<Record, CsvError>> {
        let bytes = self.text.as_bytes();
        if self.pos >= bytes.len() {
            return None;
        }
        let start_line = self.line;
        let mut fields = Vec::new();
        let mut field = String::new();
        // Byte offsets of the unquoted run being copied; quotes and separators are ASCII, so slicing at
        // them keeps whole UTF-8 characters.
        let mut run_start = self.pos;
        let mut in_quotes = false;
        let mut quote_line = start_line;
        let mut i = self.pos;
        while i < bytes.len() {
            let b = bytes[i];
            if in_quotes {
                match b {
                    b'"' if bytes.get(i + 1) == Some(&b'"') => {
                        field.push_str(&self.text[run_start..=i]);
                        i += 2;
                        run_start = i;
                    }
                    b'"' => {
                        field.push_str(&self.text[run_start..i]);
                        in_quotes = false;
                        i += 1;
                        run_start = i;
                    }
                    b'\n' => {
                        self.line += 1;
                        i += 1;
                    }
                    b'\r' => {
                        if bytes.get(i + 1) != Some(&b'\n') {
                            self.line += 1;
                        }
                        i += 1;
                    }
                    _ => i += 1,
                }
                continue;
            }
            match b {
                b'"' if i == run_start && field.is_empty() => {
                    in_quotes = true;
                    quote_line = self.line;
                    i += 1;
                    run_start = i;
                }
                b',' => {
                    field.push_str(&self.text[run_start..i]);
                    fields.push(std::mem::take(&mut field));
                    i += 1;
                    run_start = i;
                }
                b'\r' | b'\n' => {
                    field.push_str(&self.text[run_start..i]);
                    fields.push(field);
                    i += if b == b'\r' && bytes.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
                    self.line += 1;
                    self.pos = i;
                    return Some(Ok(Record { line: start_line, fields }));
                }
                _ => i += 1,
            }
        }
        self.pos = bytes.len();
        if in_quotes {
            return Some(Err(CsvError {
                line: quote_line,
                message: "a quoted field starts here and is never closed (a missing \"), so the rest of the file \
                          cannot be read; fix the quotes and import again"
                    .into(),
            }));
        }
        field.push_str(&self.text[run_start..]);
        fields.push(field);
        Some(Ok(Record { line: start_line, fields }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Vec<(usize, Vec<String>)> {
        let mut r = Reader::new(text);
        let mut out = Vec::new();
        while let Some(rec) = r.next_record() {
            let rec = rec.unwrap();
            out.push((rec.line, rec.fields));
        }
        out
    }

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn quoted_commas_doubled_quotes_and_crlf() {
        let text = "a,b,c\r\n\"x, y\",\"say \"\"hi\"\"\",z\r\n";
        assert_eq!(all(text), vec![(1, v(&["a", "b", "c"])), (2, v(&["x, y", "say \"hi\"", "z"]))]);
    }

    #[test]
    fn line_breaks_inside_quotes_count_towards_the_next_record_line() {
        let text = "\"1 High St\r\nLeeds\",LS1\n\"a\nb\nc\",d\nlast,row";
        assert_eq!(
            all(text),
            vec![(1, v(&["1 High St\r\nLeeds", "LS1"])), (3, v(&["a\nb\nc", "d"])), (6, v(&["last", "row"]))]
        );
    }

    #[test]
    fn bom_empty_fields_lone_cr_and_stray_quotes() {
        let text = "\u{feff}a,,\rSt Anne\"s,\"\"\n";
        assert_eq!(all(text), vec![(1, v(&["a", "", ""])), (2, v(&["St Anne\"s", ""]))]);
    }

    #[test]
    fn unclosed_quote_is_an_error_at_its_line() {
        let mut r = Reader::new("ok,row\n\"never closed,\nmore\n");
        assert!(r.next_record().unwrap().is_ok());
        let err = r.next_record().unwrap().unwrap_err();
        assert_eq!(err.line, 2);
        assert!(r.next_record().is_none());
    }

    #[test]
    fn non_utf8_is_reported_with_its_line() {
        let err = decode(b"a,b\nCaf\xE9,x\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert_eq!(decode(b"\xEF\xBB\xBFa,b").unwrap(), "a,b");
    }
}
