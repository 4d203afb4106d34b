//! Shared XML plumbing for the package parts: text decoding, a quick-xml event loop that enforces the depth
//! cap and turns parser errors into [`ExtractError`]s, entity and attribute helpers, and the three small
//! parts read besides the body (`[Content_Types].xml`, `docProps/custom.xml`, `docProps/core.xml`).
//!
//! Elements and attributes are matched by local name, so any namespace prefix works (Strict OOXML and
//! other writers use other prefixes). quick-xml does no DTD processing: `<!DOCTYPE>` is ignored and
//! only the five predefined entities and character references are expanded.

use std::borrow::Cow;

use memchr::memmem::Finder;
use quick_xml::events::{BytesEnd, BytesRef, BytesStart, BytesText, Event};
use quick_xml::{Reader, XmlVersion};

use super::ExtractError;

/// Decodes a part's bytes: UTF-8 (optional BOM) or UTF-16 with a BOM, as XML allows.
pub(super) fn decode(buf: Vec<u8>, part: &str) -> Result<String, ExtractError> {
    let utf16 = |be: bool, body: &[u8]| {
        let units = body.chunks_exact(2).map(|c| match c {
            [a, b] if be => u16::from_be_bytes([*a, *b]),
            [a, b] => u16::from_le_bytes([*a, *b]),
            _ => 0,
        });
        char::decode_utf16(units).collect::<Result<String, _>>().map_err(|_| malformed(part, "invalid UTF-16 text"))
    };
    match buf.as_slice() {
        [0xFF, 0xFE, rest @ ..] => utf16(false, rest),
        [0xFE, 0xFF, rest @ ..] => utf16(true, rest),
        _ => {
            let mut text = String::from_utf8(buf).map_err(|_| malformed(part, "text is not valid UTF-8"))?;
            if text.starts_with('\u{feff}') {
                text.drain(..'\u{feff}'.len_utf8());
            }
            Ok(text)
        }
    }
}

pub(super) fn malformed(part: &str, detail: impl std::fmt::Display) -> ExtractError {
    ExtractError::MalformedXml { part: part.to_string(), detail: detail.to_string() }
}

/// An XML event reader over one part that keeps the stack of open element names itself: it enforces the
/// depth cap before anything grows (no recursion anywhere), checks that end tags match, and so lets
/// [`skip_content`](Walker::skip_content) jump over whole elements, end tag included.
///
/// Events come from quick-xml, or (see [`Walker::lexing`]) from a lexer of its own for the plain markup Word
/// writes (tags, text, references, comments, processing instructions), which builds quick-xml's event types
/// as quick-xml would. Per event the lexer is about twice as fast, and events are most of a form's reading
/// time.
pub(super) struct Walker<'a> {
    xml: &'a str,
    /// Where the lexer stands; `None` when quick-xml reads.
    lexed: Option<usize>,
    /// The lexer met something it does not take: the part must be read again with quick-xml.
    wants_quick_xml: bool,
    reader: Reader<&'a [u8]>,
    part: &'a str,
    /// Names of the open elements, end to end, and where each starts in it (bytes: truncating a `String`
    /// checks for a char boundary, and this is done at every end tag).
    names: Vec<u8>,
    starts: Vec<usize>,
    max_depth: usize,
    saw_root: bool,
}

impl<'a> Walker<'a> {
    pub fn new(xml: &'a str, part: &'a str, max_depth: usize) -> Walker<'a> {
        let mut reader = Reader::from_str(xml);
        // End names are checked here instead, against a stack that skipped elements never enter.
        reader.config_mut().check_end_names = false;
        Walker {
            xml,
            lexed: None,
            wants_quick_xml: false,
            reader,
            part,
            names: Vec::with_capacity(256),
            starts: Vec::with_capacity(32),
            max_depth,
            saw_root: false,
        }
    }

    /// A walker whose events come from the lexer. At the first thing the lexer does not take (CDATA, a
    /// DOCTYPE, a `<` in an attribute value, a tag left open...) it fails with
    /// [`wants_quick_xml`](Walker::wants_quick_xml) set, and the caller reads the part again with
    /// [`Walker::new`]: quick-xml cannot take over halfway (it refuses end tags it did not see open), and
    /// so anything unusual is read, or refused, exactly as quick-xml alone reads it.
    pub fn lexing(xml: &'a str, part: &'a str, max_depth: usize) -> Walker<'a> {
        Walker { lexed: Some(0), ..Walker::new(xml, part, max_depth) }
    }

    pub fn wants_quick_xml(&self) -> bool {
        self.wants_quick_xml
    }

    /// Called right after the `Start` event of `qname`: moves the reader past that element's end tag
    /// without tokenising what lies between. Property elements (`w:rPr`, `w:tcPr`, `w:sdtPr`, ...) are
    /// most of a document's bytes and events; skipping them roughly halves the parse. Returns the
    /// skipped content, or `None` (having moved nothing) when no matching end tag is found, leaving
    /// quick-xml to report the damage.
    pub fn skip_content(&mut self, qname: &str) -> Option<&'a str> {
        let at = match self.lexed {
            Some(at) => at,
            None => self.xml.len().checked_sub(self.reader.get_mut().len())?,
        };
        let rest = self.xml.get(at..)?;
        let end = matching_end(rest, qname)?;
        let after_end = end + find_gt(rest.get(end..)?)? + 1;
        let (skipped, after) = (rest.get(..end)?, rest.get(after_end..)?);
        match &mut self.lexed {
            Some(lexed) => *lexed = at + after_end,
            None => *self.reader.get_mut() = after.as_bytes(),
        }
        self.close_passed_over();
        Some(skipped)
    }

    /// Closes the element whose content and end tag were passed over without events.
    fn close_passed_over(&mut self) {
        if let Some(start) = self.starts.pop() {
            self.names.truncate(start);
        }
    }

    /// Called right after the `Start` event of `qname`, when the lexer reads: if the element holds nothing
    /// but plain text (no markup, references or carriage returns) up to an end tag written `</qname>`,
    /// returns the text and moves past the end tag, as [`skip_content`](Walker::skip_content) does; else
    /// `None`, having moved nothing. A run's text and its end tag are two of the five events of a run.
    pub fn plain_text_content(&mut self, qname: &str) -> Option<&'a str> {
        let at = self.lexed?;
        let rest = self.xml.get(at..)?;
        let end = memchr::memchr3(b'<', b'&', b'\r', rest.as_bytes())?;
        let tag = rest.as_bytes().get(end..)?;
        let closes = tag.starts_with(b"</")
            && tag.get(2..2 + qname.len()) == Some(qname.as_bytes())
            && tag.get(2 + qname.len()) == Some(&b'>');
        let text = rest.get(..end).filter(|_| closes)?;
        self.lexed = Some(at + end + qname.len() + 3);
        self.close_passed_over();
        Some(text)
    }

    // Inlined, as is `lex`: called once per event, and a call with an event to return costs about as much
    // as lexing a short tag.
    #[inline(always)]
    pub fn next(&mut self) -> Result<Event<'a>, ExtractError> {
        let event = match self.lexed {
            Some(at) => {
                let Some((event, next)) = lex(self.xml, at) else {
                    self.wants_quick_xml = true;
                    return Err(ExtractError::Unreadable);
                };
                self.lexed = Some(next);
                event
            }
            None => self.reader.read_event().map_err(|e| malformed(self.part, e))?,
        };
        match &event {
            Event::Start(e) => {
                self.saw_root = true;
                if self.starts.len() >= self.max_depth {
                    return Err(ExtractError::TooDeep { part: self.part.to_string(), limit: self.max_depth });
                }
                self.starts.push(self.names.len());
                self.names.extend_from_slice(e.name().into_inner().as_bytes());
            }
            Event::Empty(_) => {
                self.saw_root = true;
                if self.starts.len() >= self.max_depth {
                    return Err(ExtractError::TooDeep { part: self.part.to_string(), limit: self.max_depth });
                }
            }
            Event::End(e) => {
                let Some(start) = self.starts.pop() else {
                    return Err(malformed(self.part, format!("`</{}>` closes no element", e.name().into_inner())));
                };
                if self.names.get(start..) != Some(e.name().into_inner().as_bytes()) {
                    let open = String::from_utf8_lossy(self.names.get(start..).unwrap_or_default());
                    return Err(malformed(self.part, format!("`</{}>` closes `<{open}>`", e.name().into_inner())));
                }
                self.names.truncate(start);
            }
            Event::Eof if !self.starts.is_empty() => {
                return Err(malformed(self.part, "the part ends inside an element"));
            }
            Event::Eof if !self.saw_root => return Err(malformed(self.part, "the part has no root element")),
            _ => {}
        }
        Ok(event)
    }
}

/// Runs `read` over a part with events from the lexer, and once more with quick-xml alone when the lexer
/// met something it does not take (see [`Walker::lexing`]).
pub(super) fn read_part<T>(
    xml: &str,
    part: &str,
    max_depth: usize,
    mut read: impl FnMut(&mut Walker<'_>) -> Result<T, ExtractError>,
) -> Result<T, ExtractError> {
    let mut lexing = Walker::lexing(xml, part, max_depth);
    match read(&mut lexing) {
        Err(_) if lexing.wants_quick_xml() => read(&mut Walker::new(xml, part, max_depth)),
        read => read,
    }
}

/// XML's white space, which ends a name.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Whether `b`, right after a tag's name, ends it: white space, or the tag's `/>` or `>`.
fn ends_name(b: u8) -> bool {
    is_space(b) || matches!(b, b'/' | b'>')
}

/// The next event at byte `at` of `xml` (after any comments and processing instructions there, which
/// no reader here looks at) and where the one after it starts; `None` for anything not plain, which
/// quick-xml then reads. What it returns is what quick-xml returns for the same bytes: text runs to the
/// next `<` or `&`; a reference runs to `;`; a tag runs to the first `>` outside quotes, its name to the
/// first white space, and it is empty when it ends in `/>`; an end tag's name is trimmed at its end.
#[inline(always)]
fn lex(xml: &str, mut at: usize) -> Option<(Event<'_>, usize)> {
    let bytes = xml.as_bytes();
    loop {
        let Some(&first) = bytes.get(at) else { return Some((Event::Eof, at)) };
        let rest = bytes.get(at + 1..)?;
        if first == b'&' {
            let semi = memchr::memchr3(b';', b'<', b'&', rest).filter(|&i| rest.get(i) == Some(&b';'))?;
            return Some((Event::GeneralRef(BytesRef::new(xml.get(at + 1..at + 1 + semi)?)), at + semi + 2));
        }
        if first != b'<' {
            let len = memchr::memchr2(b'<', b'&', &bytes[at..]).unwrap_or(bytes.len() - at);
            return Some((Event::Text(BytesText::from_escaped(xml.get(at..at + len)?)), at + len));
        }
        match rest.first() {
            Some(b'?') => at += 2 + memchr::memmem::find(rest.get(1..)?, b"?>")? + 2,
            Some(b'!') if rest.starts_with(b"!--") => at += 1 + memchr::memmem::find(rest.get(3..)?, b"-->")? + 6,
            Some(b'!') => return None,
            Some(b'/') => {
                // `</name>`, with white space allowed only before the `>`.
                let (mut i, mut name_end) = (1, None);
                let gt = loop {
                    match *rest.get(i)? {
                        b'>' => break i,
                        b'"' | b'\'' | b'<' => return None,
                        b if is_space(b) => name_end = name_end.or(Some(i)),
                        _ if name_end.is_some() => return None,
                        _ => {}
                    }
                    i += 1;
                };
                let name = xml.get(at + 2..at + 1 + name_end.unwrap_or(gt))?;
                if name.is_empty() {
                    return None;
                }
                return Some((Event::End(BytesEnd::new(name)), at + 1 + gt + 1));
            }
            _ => {
                // The first `>` outside quoted attribute values, and the name's end, by a byte loop: tags
                // are a few dozen bytes, less than a vector search's set-up. A `<` anywhere inside, or a
                // quote in the name, is left to quick-xml.
                let (mut i, mut name_end) = (0, None);
                let gt = loop {
                    match *rest.get(i)? {
                        b'>' => break i,
                        b'<' => return None,
                        b if is_space(b) => name_end = name_end.or(Some(i)),
                        quote @ (b'"' | b'\'') => {
                            name_end?;
                            i += 1;
                            loop {
                                match *rest.get(i)? {
                                    b'<' => return None,
                                    b if b == quote => break,
                                    _ => i += 1,
                                }
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                };
                let inner = xml.get(at + 1..at + 1 + gt)?;
                let (content, empty) = match inner.strip_suffix('/') {
                    Some(content) => (content, true),
                    None => (inner, false),
                };
                let name_len = name_end.unwrap_or(content.len());
                if name_len == 0 {
                    return None;
                }
                let e = BytesStart::from_content(content, name_len);
                return Some((if empty { Event::Empty(e) } else { Event::Start(e) }, at + 1 + gt + 1));
            }
        }
    }
}

/// Where the end tag closing an element named `qname` starts, given the text right after its start tag;
/// nested elements of the same name are counted. One forward pass, so linear in the skipped bytes.
fn matching_end(rest: &str, qname: &str) -> Option<usize> {
    let bytes = rest.as_bytes();
    let name = qname.as_bytes();
    let boundary = |i: usize| bytes.get(i).copied().is_some_and(ends_name);
    let mut open = 1usize;
    let mut next = 0;
    while let Some(offset) = find_lt(bytes.get(next..)?) {
        let lt = next + offset;
        next = lt + 1;
        let end_tag = bytes.get(next) == Some(&b'/');
        let at = if end_tag { next + 1 } else { next };
        // The cheap byte test first: most tags in a block have names of other lengths.
        if !boundary(at + name.len()) || bytes.get(at..at + name.len()) != Some(name) {
            continue;
        }
        if end_tag {
            open -= 1;
            if open == 0 {
                return Some(lt);
            }
        } else if !self_closing(rest, lt) {
            open += 1;
        }
    }
    None
}

/// The first `<` in `hay`, eight bytes at a time (SWAR): skipping is a search for tags, and a
/// byte-by-byte loop was most of its cost.
fn find_lt(hay: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const PATTERN: u64 = ONES * b'<' as u64;
    let mut chunks = hay.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ PATTERN;
        // The lowest flagged byte is the first zero byte of `x`, i.e. the first `<`.
        let found = x.wrapping_sub(ONES) & !x & HIGHS;
        if found != 0 {
            return Some(offset + (found.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks.remainder().iter().position(|b| *b == b'<').map(|i| offset + i)
}

/// The first `>` in `text`: the end of a tag, a few bytes on. A plain byte loop, where `str::find`'s
/// general char search cost more than the search itself.
fn find_gt(text: &str) -> Option<usize> {
    text.bytes().position(|b| b == b'>')
}

/// Whether the tag starting at `at` ends with `/>`.
fn self_closing(text: &str, at: usize) -> bool {
    let gt = text.get(at..).and_then(find_gt).map(|gt| at + gt);
    gt.and_then(|gt| gt.checked_sub(1)).and_then(|i| text.as_bytes().get(i)) == Some(&b'/')
}

/// The local part of a qualified name (`w:tag` -> `tag`). A byte scan: names are short, and quick-xml's
/// own `local_name` goes through a general char search that showed up in profiles.
pub(super) fn local(qname: &str) -> &str {
    match qname.bytes().position(|b| b == b':') {
        Some(i) => qname.get(i + 1..).unwrap_or(qname),
        None => qname,
    }
}

/// The start and empty tags whose local name `finder` looks for, in a raw fragment skipped with
/// [`Walker::skip_content`] (`w:sdtPr`); attributes are then read the usual way. A vector search for the
/// name, each hit kept only where it is a tag's name: right after `<`, or after `<` and a prefix, and
/// followed by the name's end. Property blocks are a third of a form's bytes and hold few tags of interest,
/// and walking all their tags cost more than anything else in reading a form.
pub(super) fn tags_named<'f>(fragment: &'f str, finder: &'f Finder<'_>) -> impl Iterator<Item = BytesStart<'f>> + 'f {
    let bytes = fragment.as_bytes();
    let len = finder.needle().len();
    finder.find_iter(bytes).filter_map(move |at| {
        if !bytes.get(at + len).copied().is_some_and(ends_name) {
            return None;
        }
        let lt = match at.checked_sub(1).and_then(|i| bytes.get(i))? {
            b'<' => at - 1,
            b':' => {
                let prefix_start = bytes.get(..at - 1)?.iter().rposition(|&b| !is_name_byte(b))?;
                let prefix_start = (prefix_start + 1 < at - 1).then_some(prefix_start)?;
                (bytes.get(prefix_start) == Some(&b'<')).then_some(prefix_start)?
            }
            _ => return None,
        };
        let gt = at + find_gt(fragment.get(at..)?)?;
        let inner = fragment.get(lt + 1..gt)?;
        let inner = inner.strip_suffix('/').unwrap_or(inner);
        Some(BytesStart::from_content(inner, at + len - lt - 1))
    })
}

/// Whether `b` may be part of an element's qualified name as Word writes it (a prefix, here).
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.') || b >= 0x80
}

/// Appends what an entity or character reference stands for; an unknown entity (there is no DTD to
/// define one) is kept as written rather than silently dropped.
pub(super) fn push_ref(out: &mut String, r: &BytesRef<'_>) {
    match r.resolve_char_ref() {
        Ok(Some(c)) => out.push(c),
        Ok(None) => match &**r {
            "amp" => out.push('&'),
            "lt" => out.push('<'),
            "gt" => out.push('>'),
            "quot" => out.push('"'),
            "apos" => out.push('\''),
            other => {
                out.push('&');
                out.push_str(other);
                out.push(';');
            }
        },
        Err(_) => out.push('\u{fffd}'),
    }
}

/// The value of the attribute with this local name (`w:val`, `w14:val`, `val` alike), unescaped.
pub(super) fn attr<'e>(e: &'e BytesStart<'_>, local_name: &str) -> Option<Cow<'e, str>> {
    match plain_attr(e.attributes_raw(), local_name) {
        Some(found) => found.map(Cow::Borrowed),
        None => quick_xml_attr(e, local_name),
    }
}

fn quick_xml_attr<'e>(e: &'e BytesStart<'_>, local_name: &str) -> Option<Cow<'e, str>> {
    let mut attrs = e.attributes();
    attrs.with_checks(false);
    for a in attrs.flatten() {
        if a.key.local_name().as_ref() == local_name {
            return Some(match a.normalized_value(XmlVersion::Implicit1_0) {
                Ok(v) => v,
                Err(_) => a.value,
            });
        }
    }
    None
}

/// [`attr`] for attributes written the way Word writes them (`key="value"`, nothing to unescape or
/// normalise), by a byte loop: quick-xml's attribute iterator costs several times more, and a form's
/// properties are read by attribute. `None` at anything else, which quick-xml then reads.
fn plain_attr<'e>(raw: &'e str, local_name: &str) -> Option<Option<&'e str>> {
    let bytes = raw.as_bytes();
    let mut at = 0;
    loop {
        while bytes.get(at).copied().is_some_and(is_space) {
            at += 1;
        }
        if at == bytes.len() {
            return Some(None);
        }
        let eq = at + bytes.get(at..)?.iter().position(|&b| b == b'=' || is_space(b) || matches!(b, b'"' | b'\''))?;
        let quote = *bytes.get(eq + 1)?;
        if bytes.get(eq) != Some(&b'=') || eq == at || !matches!(quote, b'"' | b'\'') {
            return None;
        }
        let value_at = eq + 2;
        let len = bytes.get(value_at..)?.iter().position(|&b| b == quote)?;
        let value = raw.get(value_at..value_at + len)?;
        if value.bytes().any(|b| matches!(b, b'&' | b'\t' | b'\r' | b'\n')) {
            return None;
        }
        if local(raw.get(at..eq)?) == local_name {
            return Some(Some(value));
        }
        at = value_at + len + 1;
    }
}

/// What `[Content_Types].xml` says about the package.
#[derive(Debug, Default)]
pub(super) struct ContentTypes {
    /// The main document part (usually `word/document.xml`, but Office 365 writes `document2.xml`).
    pub main: Option<String>,
    pub macro_enabled: bool,
}

const MAIN_TYPES: &[&str] = &[
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml",
];

pub(super) fn content_types(xml: &str, max_depth: usize) -> Result<ContentTypes, ExtractError> {
    read_part(xml, "[Content_Types].xml", max_depth, content_types_with)
}

fn content_types_with(walker: &mut Walker<'_>) -> Result<ContentTypes, ExtractError> {
    let mut found = ContentTypes::default();
    loop {
        match walker.next()? {
            Event::Start(e) | Event::Empty(e) => {
                let local = e.local_name();
                let local = local.as_ref();
                if local != "Override" && local != "Default" {
                    continue;
                }
                let Some(kind) = attr(&e, "ContentType") else { continue };
                let lower = kind.to_ascii_lowercase();
                if lower.contains("macroenabled") || lower.contains("vbaproject") {
                    found.macro_enabled = true;
                }
                if local == "Override" && found.main.is_none() && MAIN_TYPES.iter().any(|t| lower == *t) {
                    found.main = attr(&e, "PartName").map(|p| p.trim_start_matches('/').to_string());
                }
            }
            Event::Eof => return Ok(found),
            _ => {}
        }
    }
}

/// `postroom.form` and `postroom.version` from `docProps/custom.xml`, when present.
pub(super) fn custom_properties(xml: &str, max_depth: usize) -> Result<(Option<String>, Option<String>), ExtractError> {
    read_part(xml, "docProps/custom.xml", max_depth, custom_properties_with)
}

fn custom_properties_with(walker: &mut Walker<'_>) -> Result<(Option<String>, Option<String>), ExtractError> {
    let (mut form, mut version) = (None, None);
    // Which wanted property we are inside (0 form, 1 version), the depth it opened at, and its text.
    let mut current: Option<(u8, usize)> = None;
    let mut depth = 0usize;
    let mut text = String::new();
    loop {
        match walker.next()? {
            Event::Start(e) => {
                depth += 1;
                if current.is_none() && e.local_name().as_ref() == "property" {
                    current = match attr(&e, "name").as_deref().map(str::trim) {
                        Some("postroom.form") => Some((0, depth)),
                        Some("postroom.version") => Some((1, depth)),
                        _ => None,
                    };
                    text.clear();
                }
            }
            Event::End(_) => {
                if let Some((which, at)) = current
                    && at == depth
                {
                    let value = text.trim().to_string();
                    let value = (!value.is_empty()).then_some(value);
                    if which == 0 {
                        form = form.or(value)
                    } else {
                        version = version.or(value)
                    }
                    current = None;
                }
                depth = depth.saturating_sub(1);
            }
            Event::Text(t) if current.is_some() => text.push_str(&t.xml10_content()),
            Event::CData(t) if current.is_some() => text.push_str(&t),
            Event::GeneralRef(r) if current.is_some() => push_ref(&mut text, &r),
            Event::Eof => return Ok((form, version)),
            _ => {}
        }
    }
}

/// `dc:title` from `docProps/core.xml`.
pub(super) fn core_title(xml: &str, max_depth: usize) -> Result<Option<String>, ExtractError> {
    read_part(xml, "docProps/core.xml", max_depth, core_title_with)
}

fn core_title_with(walker: &mut Walker<'_>) -> Result<Option<String>, ExtractError> {
    let mut inside = false;
    let mut title = String::new();
    loop {
        match walker.next()? {
            Event::Start(e) if e.local_name().as_ref() == "title" => inside = true,
            Event::End(e) if e.local_name().as_ref() == "title" => inside = false,
            Event::Text(t) if inside => title.push_str(&t.xml10_content()),
            Event::CData(t) if inside => title.push_str(&t),
            Event::GeneralRef(r) if inside => push_ref(&mut title, &r),
            Event::Eof => {
                let title = title.trim();
                return Ok((!title.is_empty()).then(|| title.to_string()));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_properties_read_with_any_prefix_and_entities() {
        let xml = r#"<?xml version="1.0"?><Properties xmlns="x" xmlns:q="v">
            <property fmtid="{D5}" pid="2" name="postroom.form"><q:lpwstr>death</q:lpwstr></property>
            <property fmtid="{D5}" pid="3" name="other"><q:lpwstr>zzz</q:lpwstr></property>
            <property fmtid="{D5}" pid="4" name="postroom.version"><q:lpwstr>2026&#46;1</q:lpwstr></property>
        </Properties>"#;
        let (form, version) = custom_properties(xml, 256).unwrap();
        assert_eq!(form.as_deref(), Some("death"));
        assert_eq!(version.as_deref(), Some("2026.1"));
    }

    #[test]
    fn content_types_find_main_part_and_macros() {
        let xml = r#"<Types xmlns="ct"><Default Extension="xml" ContentType="application/xml"/>
            <Override PartName="/word/document2.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#;
        let ct = content_types(xml, 256).unwrap();
        assert_eq!(ct.main.as_deref(), Some("word/document2.xml"));
        assert!(!ct.macro_enabled);
        let docm = xml.replace(
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
            "application/vnd.ms-word.document.macroEnabled.main+xml",
        );
        assert!(content_types(&docm, 256).unwrap().macro_enabled);
    }

    #[test]
    fn skipping_lands_on_the_matching_end_tag() {
        let rest = r#"<w:b/><w:rPrChange><w:rPr><w:i/></w:rPr></w:rPrChange><w:rPr/></w:rPr ><w:t>x</w:t>"#;
        let end = matching_end(rest, "w:rPr").unwrap();
        assert!(rest[end..].starts_with("</w:rPr ><w:t>"), "{}", &rest[end..]);
        assert_eq!(matching_end("<w:rPr/></w:rPr>", "w:rPr"), Some(8));
        assert_eq!(matching_end("<w:rPr></w:rPrX>", "w:rPr"), None);

        let xml = "<a><w:rPr><w:t>hidden</w:t></w:rPr><w:t>shown</w:t></a>";
        let mut w = Walker::new(xml, "p", 10);
        let mut texts = Vec::new();
        loop {
            match w.next().unwrap() {
                Event::Start(e) if e.name().as_ref() == "w:rPr" => assert!(w.skip_content("w:rPr").is_some()),
                Event::Text(t) => texts.push(t.xml10_content().into_owned()),
                Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(texts, ["shown"]);
    }

    #[test]
    fn attributes_read_by_the_byte_loop_are_what_quick_xml_reads() {
        let tags = [
            r#"w:tag w:val="plain""#,
            r#"w:tag w:val='single' w14:val="second""#,
            r#"w:tag x="1"w:val="no space between""#,
            r#"w:tag w:val="a&amp;b""#,
            "w:tag w:val=\"tab\there\"",
            r#"w:tag w:val = "spaced""#,
            r#"w:tag w:val=unquoted"#,
            r#"w:tag w:val="unterminated"#,
            r#"w:tag checked"#,
            r#"w:tag   "#,
            r#"w:tag xmlns:val="ns" w:val="after a namespace""#,
            r#"w:tag a:b:val="two colons""#,
        ];
        for tag in tags {
            let e = BytesStart::from_content(tag, 5);
            for name in ["val", "x", "checked", "b"] {
                assert_eq!(attr(&e, name), quick_xml_attr(&e, name), "{name} in <{tag}>");
            }
        }
        assert_eq!(plain_attr(r#" w:val="plain""#, "val"), Some(Some("plain")));
        assert_eq!(plain_attr(r#" w:val="a&amp;b""#, "val"), None, "left to quick-xml");
    }

    #[test]
    fn plain_text_is_taken_whole_only_up_to_its_own_end_tag() {
        let take = |xml: &str, lexing: bool| {
            let mut w = if lexing { Walker::lexing(xml, "p", 10) } else { Walker::new(xml, "p", 10) };
            assert!(matches!(w.next().unwrap(), Event::Start(_)));
            assert!(matches!(w.next().unwrap(), Event::Start(_)));
            let text = w.plain_text_content("w:t").map(str::to_string);
            let next = match w.next().unwrap() {
                Event::End(e) => format!("</{}>", e.name().into_inner()),
                Event::Text(t) => t.xml10_content().into_owned(),
                other => format!("{other:?}"),
            };
            (text, next)
        };
        assert_eq!(take("<r><w:t>plain</w:t></r>", true), (Some("plain".into()), "</r>".into()));
        assert_eq!(take("<r><w:t></w:t></r>", true), (Some(String::new()), "</r>".into()));
        assert_eq!(take("<r><w:t>a&amp;b</w:t></r>", true).0, None);
        assert_eq!(take("<r><w:t>a\r\nb</w:t></r>", true).0, None);
        assert_eq!(take("<r><w:t>x</w:t ></r>", true), (None, "x".into()));
        assert_eq!(take("<r><w:t>x<w:br/></w:t></r>", true).0, None);
        assert_eq!(take("<r><w:t>plain</w:t></r>", false), (None, "plain".into()), "quick-xml reads on");
    }

    #[test]
    fn find_lt_agrees_with_a_plain_search() {
        let text = "abcdefgh<ijklmnopqrstu<vwxyz\u{e9}\u{3c}<<";
        for start in 0..text.len() {
            let hay = &text.as_bytes()[start..];
            assert_eq!(find_lt(hay), hay.iter().position(|b| *b == b'<'), "from {start}");
        }
        assert_eq!(find_lt(b"\xbc\xbc\xbc\xbc\xbc\xbc\xbc\xbc\x3d<"), Some(9));
        assert_eq!(find_lt(b""), None);
    }

    #[test]
    fn tags_are_found_in_a_raw_fragment_whatever_their_prefix() {
        let val = |frag: &str, name: &str| {
            tags_named(frag, &Finder::new(name)).next().map(|e| attr(&e, "val").unwrap_or_default().into_owned())
        };
        let frag =
            r#"<w:alias w:val="tag"/><w:dataBinding w:xpath="/ns:tag"/><tagged/></x:tag><x:tag x:val="a&amp;b"/>"#;
        assert_eq!(val(frag, "tag").as_deref(), Some("a&b"));
        assert_eq!(val("<tag val='c'>", "tag").as_deref(), Some("c"));
        assert_eq!(val("<w:tag\nw:val=\"d\"/>", "tag").as_deref(), Some("d"));
        assert_eq!(
            val(r#"<w14:checkedState w14:val="2612"/><w14:checked w14:val="1"/>"#, "checked").as_deref(),
            Some("1")
        );
        assert_eq!(val(r#"<w:alias w:val="x :tag y"/><a b:tag="1"/>"#, "tag"), None);
        assert_eq!(val(r#"<w14:checkbox/>"#, "checkbox").as_deref(), Some(""));
        assert_eq!(local("w14:checked"), "checked");
        assert_eq!(local("p"), "p");
    }

    #[test]
    fn walker_reports_depth_truncation_and_bad_text() {
        let deep = format!("{}{}", "<a>".repeat(20), "</a>".repeat(20));
        let mut w = Walker::new(&deep, "p", 10);
        let err = loop {
            match w.next() {
                Err(e) => break e,
                Ok(Event::Eof) => panic!("no error"),
                Ok(_) => {}
            }
        };
        assert_eq!(err.reason_code(), "size:too_deep");
        assert_eq!(core_title("<a><title>x", 10).unwrap_err().reason_code(), "type:malformed_xml");
        assert_eq!(core_title("", 10).unwrap_err().reason_code(), "type:malformed_xml");
        assert_eq!(decode(vec![0xC3, 0x28], "p").unwrap_err().reason_code(), "type:malformed_xml");
        assert_eq!(decode(vec![0xFF, 0xFE, b'<', 0, b'a', 0, b'/', 0, b'>', 0], "p").unwrap(), "<a/>");
        assert_eq!(decode("\u{feff}<a/>".as_bytes().to_vec(), "p").unwrap(), "<a/>");
    }
}
