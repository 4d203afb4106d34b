//! One streaming pass over a WordprocessingML part (the body, or a footer) that knows nothing of form
//! definitions. It writes the part's visible text into one transcript string and records, as byte spans
//! into it, every tagged content control, legacy form field, table cell and paragraph outside tables.
//! Spans instead of per-container strings keep the pass to a handful of allocations, and nested
//! containers (a LibreOffice sdt wrapping a paragraph of sdts) simply record overlapping spans.
//!
//! Transcript rules: runs are joined; `w:tab` is a space; `w:br`/`w:cr` and every paragraph end a line
//! break. A checkbox whose state is known (`w14:checked`, a legacy `FORMCHECKBOX`) is written as ☒ or ☐,
//! so the label-cell fallback reads every kind of box the same way. Property elements, deleted text and
//! `mc:Fallback` copies are skipped. Nothing recurses: depth is a counter checked by [`Walker`].

use std::sync::LazyLock;

use memchr::memmem::Finder;
use quick_xml::events::{BytesStart, Event};

use super::ExtractError;
use super::boxes::{TICKED, UNTICKED, glyph};
use super::xml::{Walker, attr, local, push_ref, read_part, tags_named};

/// A byte range into [`Scan::text`] or [`Scan::names`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Span {
    pub start: usize,
    pub end: usize,
}

/// A content control that carried a tag.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Control {
    pub tag: Span,
    pub content: Span,
    pub checkbox: bool,
    /// For checkboxes: from `w14:checked`, else from the glyph shown.
    pub checked: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum LegacyKind {
    Text,
    CheckBox,
    DropDown,
    #[default]
    Other,
}

/// A legacy form field (`FORMTEXT`, `FORMCHECKBOX`, `FORMDROPDOWN`).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct LegacyField {
    pub name: Span,
    pub kind: LegacyKind,
    pub result: Span,
    pub checked: Option<bool>,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) struct Cell {
    /// Rows are numbered in document order; cells of one row share the number.
    pub row: usize,
    pub span: Span,
}

/// What one pass found. Lists are in closing order, so inner controls come before outer ones.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Scan {
    pub text: String,
    /// Tags and field names, so recording them allocates nothing per control.
    pub names: String,
    pub controls: Vec<Control>,
    pub fields: Vec<LegacyField>,
    pub cells: Vec<Cell>,
    /// Paragraphs outside tables, for `Label: value` lines.
    pub lines: Vec<Span>,
}

impl Scan {
    pub fn text_of(&self, span: Span) -> &str {
        self.text.get(span.start..span.end).unwrap_or("")
    }

    pub fn name_of(&self, span: Span) -> &str {
        self.names.get(span.start..span.end).unwrap_or("")
    }
}

/// Reads one WordprocessingML part.
pub(super) fn scan(xml: &str, part: &str, max_depth: usize) -> Result<Scan, ExtractError> {
    read_part(xml, part, max_depth, |walker| scan_with(walker, xml.len()))
}

fn scan_with(walker: &mut Walker<'_>, xml_len: usize) -> Result<Scan, ExtractError> {
    // Sized for a filled form, so the pass rarely reallocates.
    let scan = Scan {
        text: String::with_capacity(xml_len / 4),
        names: String::with_capacity(2048),
        controls: Vec::with_capacity(128),
        cells: Vec::with_capacity(128),
        lines: Vec::with_capacity(32),
        ..Scan::default()
    };
    let mut s = Scanner { scan, ..Scanner::default() };
    loop {
        match walker.next()? {
            Event::Start(e) => {
                s.depth += 1;
                match s.open(&e, false) {
                    Open::Read => {}
                    // Its end tag is consumed with it: no Text or End event follows.
                    Open::Text => {
                        if let Some(text) = walker.plain_text_content(e.name().into_inner()) {
                            s.scan.text.push_str(text);
                            s.in_t = false;
                            s.depth -= 1;
                        }
                    }
                    // A skipped element's end tag is consumed with it: no End event follows.
                    Open::Skip => match walker.skip_content(e.name().into_inner()) {
                        Some(_) => s.depth -= 1,
                        // No end tag to jump to: read through it, ignoring what is inside.
                        None => s.enter(Mode::Skip, false),
                    },
                    Open::SdtPr => match walker.skip_content(e.name().into_inner()) {
                        Some(fragment) => {
                            s.depth -= 1;
                            s.sdt_properties(fragment);
                        }
                        None => s.enter(Mode::SdtPr, false),
                    },
                }
            }
            Event::Empty(e) => {
                s.open(&e, true);
            }
            Event::End(e) => {
                if let Some((_, at)) = s.mode
                    && at == s.depth
                {
                    s.mode = None;
                } else if s.mode.is_none() {
                    s.close(local(e.name().into_inner()));
                } else if local(e.name().into_inner()) == "checkBox" {
                    s.in_ff_checkbox = false;
                }
                s.depth = s.depth.saturating_sub(1);
            }
            // Decoded only where it is kept: most text in a form lies in skipped or unread elements.
            Event::Text(t) if s.wants_text() => s.text(&t.xml10_content()),
            Event::CData(t) if s.wants_text() => s.text(&t),
            Event::GeneralRef(r) if s.mode.is_none() => {
                if s.in_t {
                    push_ref(&mut s.scan.text, &r);
                } else if s.in_instr
                    && let Some(f) = s.open_fields.last_mut()
                {
                    push_ref(&mut f.instr, &r);
                }
            }
            Event::Eof => return Ok(s.scan),
            _ => {}
        }
    }
}

/// What to do with an element's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Read,
    /// A `w:t`: its text, taken whole when it is plain.
    Text,
    /// Nothing inside is content.
    Skip,
    /// A content control's properties: read from the raw text when possible.
    SdtPr,
}

/// Sub-modes entered at an element and left at its end (the depth it opened at).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Properties, deleted text, fallback copies: nothing inside is content.
    Skip,
    /// `w:sdtPr` of the innermost open control.
    SdtPr,
    /// `w:ffData` of the innermost open legacy field.
    FfData,
}

#[derive(Debug)]
struct SdtFrame {
    tag: Span,
    checkbox: bool,
    checked: Option<bool>,
    start: usize,
}

#[derive(Debug, Default)]
struct FieldFrame {
    name: Span,
    /// The bookmark around the field: the only trace of its name once LibreOffice empties `w:name`.
    bookmark: Span,
    kind: LegacyKind,
    checked: Option<bool>,
    default: Option<bool>,
    result_start: Option<usize>,
    instr: String,
    dd_result: Option<usize>,
    dd_entries: Vec<Span>,
}

#[derive(Debug, Default)]
struct Scanner {
    scan: Scan,
    depth: usize,
    mode: Option<(Mode, usize)>,
    in_t: bool,
    in_instr: bool,
    in_ff_checkbox: bool,
    tables: usize,
    next_row: usize,
    rows: Vec<usize>,
    paragraphs: Vec<usize>,
    open_cells: Vec<usize>,
    sdts: Vec<SdtFrame>,
    open_fields: Vec<FieldFrame>,
    /// The innermost visible bookmark open at this point (Word's hidden `_GoBack`-style ones ignored).
    bookmark: Span,
}

/// Word's on/off values: absent means on.
fn on_off(e: &BytesStart<'_>) -> Option<bool> {
    match attr(e, "val").as_deref().map(str::trim) {
        None => Some(true),
        Some("1" | "true" | "on") => Some(true),
        Some("0" | "false" | "off") => Some(false),
        Some(_) => None,
    }
}

/// Symbol-font boxes (`w:sym`): Wingdings and Wingdings 2 code points for box glyphs, else the char.
fn sym_char(e: &BytesStart<'_>) -> Option<char> {
    let code = u32::from_str_radix(attr(e, "char")?.trim(), 16).ok()?;
    let font = attr(e, "font").unwrap_or_default().to_ascii_lowercase();
    let low = if (0xF000..=0xF0FF).contains(&code) { code - 0xF000 } else { code };
    match (font.as_str(), low) {
        // Ticks, ballot boxes with a tick or a cross, and crosses.
        ("wingdings", 0xFE | 0xFC | 0xFD | 0x78 | 0xFB) | ("wingdings 2", 0x52 | 0x50 | 0x54 | 0x4F) => Some(TICKED),
        ("wingdings", 0xA8 | 0x6F) | ("wingdings 2", 0xA3 | 0x2A) => Some(UNTICKED),
        ("wingdings" | "wingdings 2" | "wingdings 3" | "symbol" | "webdings", _) => None,
        _ => char::from_u32(code).filter(|c| !c.is_control()),
    }
}

impl Scanner {
    fn enter(&mut self, mode: Mode, empty: bool) {
        if !empty {
            self.mode = Some((mode, self.depth));
        }
    }

    fn name_span(&mut self, value: Option<&str>) -> Span {
        let start = self.scan.names.len();
        self.scan.names.push_str(value.unwrap_or("").trim());
        Span { start, end: self.scan.names.len() }
    }

    fn wants_text(&self) -> bool {
        self.mode.is_none() && (self.in_t || self.in_instr)
    }

    fn text(&mut self, t: &str) {
        if self.in_t {
            self.scan.text.push_str(t);
        } else if self.in_instr
            && let Some(f) = self.open_fields.last_mut()
            && f.instr.len() < 256
        {
            f.instr.push_str(t);
        }
    }

    /// Handles a start or empty tag and says what to do with the element's content.
    fn open(&mut self, e: &BytesStart<'_>, empty: bool) -> Open {
        let name = local(e.name().into_inner());
        match self.mode {
            Some((Mode::Skip, _)) => Open::Read,
            Some((Mode::SdtPr, _)) => {
                self.sdt_property(name, e);
                Open::Read
            }
            Some((Mode::FfData, _)) => {
                self.ff_property(name, e);
                Open::Read
            }
            None => self.open_body(name, e, empty),
        }
    }

    fn open_body(&mut self, local: &str, e: &BytesStart<'_>, empty: bool) -> Open {
        let len = self.scan.text.len();
        match local {
            "t" if !empty => {
                self.in_t = true;
                return Open::Text;
            }
            "t" => self.in_t = false,
            "instrText" => self.in_instr = !empty,
            "tab" | "ptab" => self.scan.text.push(' '),
            "br" | "cr" => self.scan.text.push('\n'),
            "noBreakHyphen" => self.scan.text.push('-'),
            "sym" => {
                if let Some(c) = sym_char(e) {
                    self.scan.text.push(c);
                }
            }
            "p" if empty => self.scan.text.push('\n'),
            "p" => self.paragraphs.push(len),
            "tbl" if !empty => self.tables += 1,
            "tr" if !empty => {
                self.rows.push(self.next_row);
                self.next_row += 1;
            }
            "tc" if empty => self.push_cell(len),
            "tc" => self.open_cells.push(len),
            "sdt" if !empty => {
                self.sdts.push(SdtFrame { tag: Span::default(), checkbox: false, checked: None, start: len })
            }
            "sdtContent" => {
                if let Some(f) = self.sdts.last_mut() {
                    f.start = len;
                }
            }
            "sdtPr" if !empty => return Open::SdtPr,
            "fldChar" => self.fld_char(e),
            "bookmarkStart" => {
                let name = attr(e, "name");
                if name.as_deref().is_some_and(|n| !n.starts_with('_')) {
                    self.bookmark = self.name_span(name.as_deref());
                }
            }
            "bookmarkEnd" => self.bookmark = Span::default(),
            "ffData" => self.enter(Mode::FfData, empty),
            "pPr" | "rPr" | "tblPr" | "trPr" | "tcPr" | "sectPr" | "tblGrid" | "tblPrEx" | "sdtEndPr" | "Fallback"
            | "del" | "moveFrom" | "delText" | "delInstrText"
                if !empty =>
            {
                return Open::Skip;
            }
            _ => {}
        }
        Open::Read
    }

    /// Reads a control's tag and checkbox state from its skipped `w:sdtPr` text.
    fn sdt_properties(&mut self, fragment: &str) {
        static TAG: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("tag"));
        static CHECKBOX: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("checkbox"));
        static CHECKED: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("checked"));
        let tag = tags_named(fragment, &TAG).next().map(|e| self.name_span(attr(&e, "val").as_deref()));
        let checkbox = tags_named(fragment, &CHECKBOX).next().is_some();
        let checked = tags_named(fragment, &CHECKED).find_map(|e| on_off(&e));
        if let Some(f) = self.sdts.last_mut() {
            f.tag = tag.unwrap_or_default();
            f.checkbox = checkbox;
            f.checked = checked;
        }
    }

    fn sdt_property(&mut self, local: &str, e: &BytesStart<'_>) {
        match local {
            "tag" => {
                let tag = attr(e, "val");
                let span = self.name_span(tag.as_deref());
                if let Some(f) = self.sdts.last_mut() {
                    f.tag = span;
                }
            }
            "checkbox" => {
                if let Some(f) = self.sdts.last_mut() {
                    f.checkbox = true;
                }
            }
            "checked" => {
                let state = on_off(e);
                if let Some(f) = self.sdts.last_mut() {
                    f.checked = state;
                }
            }
            _ => {}
        }
    }

    fn ff_property(&mut self, local: &str, e: &BytesStart<'_>) {
        let in_checkbox = self.in_ff_checkbox;
        let value = match local {
            "name" | "listEntry" => Some(self.name_span(attr(e, "val").as_deref())),
            _ => None,
        };
        let Some(f) = self.open_fields.last_mut() else { return };
        match local {
            "name" => f.name = value.unwrap_or_default(),
            "checkBox" => {
                f.kind = LegacyKind::CheckBox;
                self.in_ff_checkbox = true;
            }
            "checked" => f.checked = on_off(e),
            "default" if in_checkbox => f.default = on_off(e),
            "textInput" => f.kind = LegacyKind::Text,
            "ddList" => f.kind = LegacyKind::DropDown,
            "result" => f.dd_result = attr(e, "val").and_then(|v| v.trim().parse().ok()),
            "listEntry" if f.dd_entries.len() < 64 => f.dd_entries.extend(value),
            _ => {}
        }
    }

    fn fld_char(&mut self, e: &BytesStart<'_>) {
        match attr(e, "fldCharType").as_deref() {
            Some("begin") => {
                self.in_ff_checkbox = false;
                self.open_fields.push(FieldFrame { bookmark: self.bookmark, ..FieldFrame::default() });
            }
            Some("separate") => {
                let len = self.scan.text.len();
                if let Some(f) = self.open_fields.last_mut() {
                    f.result_start.get_or_insert(len);
                }
            }
            Some("end") => self.close_field(),
            _ => {}
        }
    }

    fn close(&mut self, local: &str) {
        match local {
            "t" => self.in_t = false,
            "instrText" => self.in_instr = false,
            "p" => {
                self.scan.text.push('\n');
                if let Some(start) = self.paragraphs.pop()
                    && self.tables == 0
                {
                    self.scan.lines.push(Span { start, end: self.scan.text.len() });
                }
            }
            "tc" => {
                if let Some(start) = self.open_cells.pop() {
                    self.push_cell(start);
                }
            }
            "tr" => {
                self.rows.pop();
            }
            "tbl" => self.tables = self.tables.saturating_sub(1),
            "sdt" => self.close_sdt(),
            _ => {}
        }
    }

    fn push_cell(&mut self, start: usize) {
        let row = self.rows.last().copied().unwrap_or(usize::MAX);
        let end = self.scan.text.len();
        self.scan.cells.push(Cell { row, span: Span { start: start.min(end), end } });
    }

    /// Ends a content control: a run-level checkbox with a known state shows the canonical glyph for it,
    /// and a tagged control is recorded.
    fn close_sdt(&mut self) {
        let Some(f) = self.sdts.pop() else { return };
        let text = &mut self.scan.text;
        let start = if text.is_char_boundary(f.start) { f.start.min(text.len()) } else { text.len() };
        let mut checked = f.checked;
        if f.checkbox {
            let content = text.get(start..).unwrap_or("");
            if checked.is_none() {
                checked = content.chars().find_map(glyph);
            }
            if let Some(state) = checked
                && !content.contains('\n')
            {
                // Replace the glyph shown (it may be stale), keeping any text beside it in the control.
                let glyph_at = content.char_indices().find(|(_, c)| glyph(*c).is_some());
                let canonical = if state { TICKED } else { UNTICKED };
                match glyph_at {
                    Some((i, c)) => {
                        text.replace_range(start + i..start + i + c.len_utf8(), canonical.encode_utf8(&mut [0; 4]))
                    }
                    None if content.trim().chars().count() <= 1 => {
                        text.truncate(start);
                        text.push(canonical);
                    }
                    None => {}
                }
            }
        }
        if f.tag.end > f.tag.start {
            let content = Span { start, end: text.len() };
            self.scan.controls.push(Control { tag: f.tag, content, checkbox: f.checkbox, checked });
        }
    }

    /// Ends a field: legacy form fields are recorded with their result; a checkbox is written into the
    /// transcript as a glyph and a drop-down as its chosen entry (neither has result text of its own).
    fn close_field(&mut self) {
        let Some(f) = self.open_fields.pop() else { return };
        let kind = match f.kind {
            LegacyKind::Other => {
                let instr = f.instr.to_ascii_uppercase();
                if instr.contains("FORMTEXT") {
                    LegacyKind::Text
                } else if instr.contains("FORMCHECKBOX") {
                    LegacyKind::CheckBox
                } else if instr.contains("FORMDROPDOWN") {
                    LegacyKind::DropDown
                } else {
                    return;
                }
            }
            kind => kind,
        };
        let len = self.scan.text.len();
        let start = f.result_start.filter(|s| *s <= len && self.scan.text.is_char_boundary(*s)).unwrap_or(len);
        let mut checked = None;
        match kind {
            LegacyKind::CheckBox => {
                let state = f.checked.or(f.default).unwrap_or(false);
                checked = Some(state);
                self.scan.text.push(if state { TICKED } else { UNTICKED });
            }
            LegacyKind::DropDown if self.scan.text.get(start..).is_none_or(|r| r.trim().is_empty()) => {
                let chosen = f.dd_entries.get(f.dd_result.unwrap_or(0)).copied().unwrap_or_default();
                let Scan { text, names, .. } = &mut self.scan;
                text.push_str(names.get(chosen.start..chosen.end).unwrap_or(""));
            }
            _ => {}
        }
        let result = Span { start, end: self.scan.text.len() };
        let name = if f.name.end > f.name.start { f.name } else { f.bookmark };
        self.scan.fields.push(LegacyField { name, kind, result, checked });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: &str = r#"xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" xmlns:w14="http://schemas.microsoft.com/office/word/2010/wordml""#;

    fn doc(body: &str) -> Scan {
        scan(&format!("<w:document {W}><w:body>{body}</w:body></w:document>"), "word/document.xml", 256).unwrap()
    }

    #[test]
    fn runs_join_and_tabs_breaks_entities_become_text() {
        let s = doc(r#"<w:p><w:pPr><w:tabs><w:tab w:val="left" w:pos="720"/></w:tabs></w:pPr>
            <w:r><w:t>Fish</w:t></w:r><w:r><w:t xml:space="preserve"> &amp; chips</w:t><w:tab/><w:t>&#8364;5</w:t><w:br/><w:t>&lt;ok&gt;</w:t></w:r>
            <w:del><w:r><w:delText>gone</w:delText></w:r></w:del></w:p>"#);
        assert_eq!(s.text, "Fish & chips \u{20ac}5\n<ok>\n");
        assert_eq!(s.lines.len(), 1);
    }

    #[test]
    fn nested_controls_record_inner_then_outer() {
        let s = doc(r#"<w:sdt><w:sdtPr><w:alias w:val="No"/></w:sdtPr><w:sdtContent><w:p>
            <w:sdt><w:sdtPr><w:tag w:val="expected=yes"/><w14:checkbox><w14:checked/></w14:checkbox></w:sdtPr>
              <w:sdtContent><w:r><w:t>&#9744;</w:t></w:r></w:sdtContent></w:sdt><w:r><w:t xml:space="preserve"> Yes</w:t></w:r>
            <w:sdt><w:sdtPr><w:tag w:val="expected=no"/><w14:checkbox><w14:checked w14:val="0"/></w14:checkbox></w:sdtPr>
              <w:sdtContent><w:r><w:t>&#9746;</w:t></w:r></w:sdtContent></w:sdt><w:r><w:t xml:space="preserve"> No</w:t></w:r>
            </w:p></w:sdtContent></w:sdt>"#);
        assert_eq!(s.controls.len(), 2, "the untagged wrapper is not recorded");
        assert_eq!(s.name_of(s.controls[0].tag), "expected=yes");
        assert_eq!(s.controls[0].checked, Some(true), "a valueless w14:checked is checked");
        assert_eq!(s.controls[1].checked, Some(false));
        assert_eq!(s.text, "\u{2612} Yes\u{2610} No\n", "glyphs follow w14:checked, not the stale glyph");
    }

    #[test]
    fn a_checkbox_keeps_text_beside_its_glyph() {
        let s = doc(
            r#"<w:p><w:sdt><w:sdtPr><w:tag w:val="a=b"/><w14:checkbox><w14:checked w14:val="1"/></w14:checkbox></w:sdtPr>
            <w:sdtContent><w:r><w:t xml:space="preserve">&#9744; Yes</w:t></w:r></w:sdtContent></w:sdt>
            <w:sdt><w:sdtPr><w14:checkbox><w14:checked/></w14:checkbox></w:sdtPr><w:sdtContent><w:r><w:t>X</w:t></w:r></w:sdtContent></w:sdt></w:p>"#,
        );
        assert_eq!(s.text, "\u{2612} Yes\u{2612}\n");
        assert_eq!(s.controls.len(), 1);
    }

    #[test]
    fn legacy_fields_carry_name_result_and_checkbox_state() {
        let s = doc(
            r#"<w:p><w:r><w:fldChar w:fldCharType="begin"><w:ffData><w:name w:val="provider_id"/><w:textInput/></w:ffData></w:fldChar></w:r>
            <w:r><w:instrText xml:space="preserve"> FORMTEXT </w:instrText></w:r><w:r><w:fldChar w:fldCharType="separate"/></w:r>
            <w:r><w:t>1-1</w:t></w:r><w:r><w:t>23</w:t></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r>
            <w:r><w:fldChar w:fldCharType="begin"><w:ffData><w:name w:val=""/><w:checkBox><w:sizeAuto/><w:default w:val="0"/><w:checked/></w:checkBox></w:ffData></w:fldChar></w:r>
            <w:r><w:instrText>FORMCHECKBOX</w:instrText></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r><w:r><w:t xml:space="preserve"> Yes</w:t></w:r>
            <w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText> PAGE </w:instrText></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r></w:p>"#,
        );
        assert_eq!(s.fields.len(), 2, "PAGE is not a form field");
        assert_eq!(s.name_of(s.fields[0].name), "provider_id");
        assert_eq!(s.text_of(s.fields[0].result), "1-123");
        assert_eq!(s.fields[1].kind, LegacyKind::CheckBox);
        assert_eq!(s.fields[1].checked, Some(true));
        assert_eq!(s.text, "1-123\u{2612} Yes\n");
    }

    #[test]
    fn cells_are_grouped_by_row_and_nested_tables_do_not_mix() {
        let s = doc(r#"<w:tbl><w:tblPr/><w:tr><w:tc><w:tcPr/><w:p><w:r><w:t>A</w:t></w:r></w:p></w:tc>
            <w:tc><w:tbl><w:tr><w:tc><w:p><w:r><w:t>inner</w:t></w:r></w:p></w:tc></w:tr></w:tbl><w:p/></w:tc></w:tr>
            <w:tr><w:tc><w:p><w:r><w:t>B</w:t></w:r></w:p></w:tc></w:tr></w:tbl><w:p><w:r><w:t>after</w:t></w:r></w:p>"#);
        let rows: Vec<(usize, &str)> = s.cells.iter().map(|c| (c.row, s.text_of(c.span))).collect();
        assert_eq!(rows, [(0, "A\n"), (1, "inner\n"), (0, "inner\n\n"), (2, "B\n")]);
        assert_eq!(s.lines.iter().map(|l| s.text_of(*l)).collect::<Vec<_>>(), ["after\n"]);
    }

    #[test]
    fn fallback_copies_and_symbol_boxes() {
        let s = doc(r#"<w:p><mc:AlternateContent xmlns:mc="m"><mc:Choice><w:r><w:t>box</w:t></w:r></mc:Choice>
            <mc:Fallback><w:r><w:t>box</w:t></w:r></mc:Fallback></mc:AlternateContent>
            <w:r><w:sym w:font="Wingdings" w:char="F0FE"/><w:t xml:space="preserve"> Yes </w:t><w:sym w:font="Wingdings" w:char="F0A8"/></w:r></w:p>"#);
        assert_eq!(s.text, "box\u{2612} Yes \u{2610}\n");
    }

    /// Every form as Postroom renders it and as the fixtures' writers saved it, and each damaged at many
    /// places with the bytes markup is made of: the reader's own lexer and quick-xml alone must read the
    /// same, or refuse it the same way.
    #[test]
    fn the_lexer_reads_exactly_what_quick_xml_reads() {
        let catalog = crate::forms::Catalog::embedded().unwrap();
        let today = chrono::Utc::now().date_naive();
        let mut parts = Vec::new();
        for def in catalog.current_forms() {
            let values = crate::samples::filled(def, &crate::samples::example_notifier(), today);
            parts.push(crate::forms::render::render(def, Some(&values)).unwrap());
        }
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/forms");
        for entry in std::fs::read_dir(fixtures).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "docx") {
                parts.push(std::fs::read(path).unwrap());
            }
        }
        let limits = crate::forms::DocxLimits::default();
        let both = |xml: &str| {
            let lexed = scan(xml, "p", 256);
            let quick = scan_with(&mut Walker::new(xml, "p", 256), xml.len());
            match (&lexed, &quick) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(a), Err(b)) => assert_eq!(a.reason_code(), b.reason_code()),
                _ => panic!("lexer {lexed:?}\nquick-xml {quick:?}\nfor {xml}"),
            }
            lexed.is_ok()
        };
        let mut read = 0;
        for docx in &parts {
            let mut pkg = super::super::container::Package::open(docx, &limits).unwrap();
            let xml = pkg.read_text("word/document.xml").unwrap().unwrap();
            assert!(both(&xml));
            for (n, damage) in
                ["<", ">", "\"", "'", "&", "/", "!", "?", " ", "<!--", "<![CDATA[", "&#", "]]>"].iter().enumerate()
            {
                let mut at = n * 13;
                while at < xml.len() {
                    if xml.is_char_boundary(at) {
                        let mut damaged = xml.clone();
                        damaged.insert_str(at, damage);
                        read += usize::from(both(&damaged));
                    }
                    at += 6007;
                }
            }
        }
        assert!(read > 100, "most damage still reads: {read}");
    }
}
