//! `word/document.xml`: title, regulation, intro and the required-fields note, then per section a heading,
//! optional help and one two-column table with a row per field (label cell, value cell), exactly as
//! docs/form-layout.md lays it out. Typed fields get a text or date content control showing a placeholder;
//! box fields get one checkbox control per choice, each followed by the choice's own label.

use std::collections::BTreeMap;

use super::parts::{BORDER_COLOUR, FOOTER_RID, LABEL_FILL, W_NAMESPACES};
use super::xml::Xml;
use crate::forms::{FieldDef, FieldKind, FormDef, Value};

/// Placeholder of typed controls; the reader treats it as empty, so it must match extract.rs.
pub const TEXT_PLACEHOLDER: &str = "Click or tap here to enter text.";
/// Placeholder of date controls.
pub const DATE_PLACEHOLDER: &str = "Click or tap to enter a date.";
/// The note under the intro; says what `*` means and how to write dates.
pub const REQUIRED_NOTE: &str = "Fields marked * must be completed: if a required field is left blank we will return \
the form to you. Write dates as dd/mm/yyyy, for example 05/03/2026, and times as hh:mm on the 24-hour clock.";
/// The last paragraph: Postroom reads .docx, so say not to send anything else.
pub const CLOSING_NOTE: &str = "Save the completed form as a Word document (.docx) and send it by email as an \
attachment. Do not send it as a PDF, a scan or a photograph.";

const UNCHECKED: &str = "\u{2610}";
const CHECKED: &str = "\u{2612}";

/// A4 with 2 cm margins: 9638 twips of text width, 40% label and 60% value.
const LABEL_WIDTH: u32 = 3855;
const VALUE_WIDTH: u32 = 5783;
const TABLE_WIDTH: u32 = LABEL_WIDTH + VALUE_WIDTH;

const BOX_FONTS: &str = "<w:rFonts w:ascii=\"MS Gothic\" w:eastAsia=\"MS Gothic\" w:hAnsi=\"MS Gothic\" \
w:cs=\"Segoe UI Symbol\" w:hint=\"eastAsia\"/>";

/// Writes the whole document part. `values` have already been checked against the definition.
pub fn document(def: &FormDef, values: Option<&BTreeMap<String, Value>>) -> String {
    let mut w = Writer { x: Xml::part(64 * 1024), next_id: 1000 };
    w.x.raw("<w:document").raw(W_NAMESPACES).raw("><w:body>");
    w.paragraph("Title", &def.title);
    w.paragraph("Regulation", &def.regulation);
    if let Some(intro) = def.intro.as_deref().filter(|t| !t.trim().is_empty()) {
        w.paragraph("Normal", intro);
    }
    w.paragraph("Inset", REQUIRED_NOTE);
    for section in &def.sections {
        w.paragraph("Heading1", &section.title);
        if let Some(help) = section.help.as_deref().filter(|t| !t.trim().is_empty()) {
            w.paragraph("SectionHelp", help);
        }
        w.table_start();
        for field in &section.fields {
            w.row(def, field, values.and_then(|v| v.get(&field.key)));
        }
        w.x.raw("</w:tbl>");
    }
    w.paragraph("Inset", CLOSING_NOTE);
    w.x.raw("<w:sectPr>")
        .empty("w:footerReference", &[("w:type", "default"), ("r:id", FOOTER_RID)])
        .raw("<w:pgSz w:w=\"11906\" w:h=\"16838\"/>")
        .raw("<w:pgMar w:top=\"1134\" w:right=\"1134\" w:bottom=\"1134\" w:left=\"1134\" w:header=\"567\" w:footer=\"567\" w:gutter=\"0\"/>")
        .raw("<w:cols w:space=\"708\"/>")
        .raw("</w:sectPr></w:body></w:document>");
    w.x.into_string()
}

struct Writer {
    x: Xml,
    /// `w:id` of the next content control: unique in the document and the same on every render.
    next_id: u32,
}

impl Writer {
    fn paragraph(&mut self, style: &str, text: &str) {
        self.x.raw("<w:p><w:pPr>").empty("w:pStyle", &[("w:val", style)]).raw("</w:pPr>");
        self.run(None, text);
        self.x.raw("</w:p>");
    }

    /// One run; line breaks become `w:br` and tabs `w:tab`, so multi-line answers keep their shape.
    fn run(&mut self, char_style: Option<&str>, text: &str) {
        self.x.raw("<w:r>");
        if let Some(style) = char_style {
            self.x.raw("<w:rPr>").empty("w:rStyle", &[("w:val", style)]).raw("</w:rPr>");
        }
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        for (i, line) in text.split('\n').enumerate() {
            if i > 0 {
                self.x.raw("<w:br/>");
            }
            for (j, piece) in line.split('\t').enumerate() {
                if j > 0 {
                    self.x.raw("<w:tab/>");
                }
                self.t(piece);
            }
        }
        self.x.raw("</w:r>");
    }

    fn t(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if text.starts_with(char::is_whitespace) || text.ends_with(char::is_whitespace) {
            self.x.raw("<w:t xml:space=\"preserve\">");
        } else {
            self.x.raw("<w:t>");
        }
        self.x.text(text).raw("</w:t>");
    }

    fn table_start(&mut self) {
        let border =
            |side: &str| format!("<w:{side} w:val=\"single\" w:sz=\"4\" w:space=\"0\" w:color=\"{BORDER_COLOUR}\"/>");
        let borders: String =
            ["top", "left", "bottom", "right", "insideH", "insideV"].iter().map(|s| border(s)).collect();
        self.x
            .raw("<w:tbl><w:tblPr><w:tblStyle w:val=\"TableGrid\"/>")
            .empty("w:tblW", &[("w:w", &TABLE_WIDTH.to_string()), ("w:type", "dxa")])
            .raw("<w:tblBorders>")
            .raw(&borders)
            .raw("</w:tblBorders><w:tblLayout w:type=\"fixed\"/>")
            .raw("<w:tblCellMar><w:top w:w=\"57\" w:type=\"dxa\"/><w:left w:w=\"113\" w:type=\"dxa\"/>")
            .raw("<w:bottom w:w=\"57\" w:type=\"dxa\"/><w:right w:w=\"113\" w:type=\"dxa\"/></w:tblCellMar>")
            .raw("<w:tblLook w:val=\"0000\" w:firstRow=\"0\" w:lastRow=\"0\" w:firstColumn=\"0\" w:lastColumn=\"0\" w:noHBand=\"1\" w:noVBand=\"1\"/>")
            .raw("</w:tblPr><w:tblGrid>")
            .empty("w:gridCol", &[("w:w", &LABEL_WIDTH.to_string())])
            .empty("w:gridCol", &[("w:w", &VALUE_WIDTH.to_string())])
            .raw("</w:tblGrid>");
    }

    fn row(&mut self, def: &FormDef, field: &FieldDef, value: Option<&Value>) {
        self.x.raw("<w:tr><w:trPr><w:cantSplit/>");
        if field.kind == FieldKind::LongText {
            // Room to write: a long answer should look like one is expected.
            self.x.raw("<w:trHeight w:val=\"1134\" w:hRule=\"atLeast\"/>");
        }
        self.x.raw("</w:trPr>");
        // Label cell: the label (and ` *`), then any help in the small style.
        self.x
            .raw("<w:tc><w:tcPr>")
            .empty("w:tcW", &[("w:w", &LABEL_WIDTH.to_string()), ("w:type", "dxa")])
            .empty("w:shd", &[("w:val", "clear"), ("w:color", "auto"), ("w:fill", LABEL_FILL)])
            .raw("</w:tcPr><w:p><w:pPr><w:pStyle w:val=\"FieldLabel\"/></w:pPr>");
        self.run(None, &field.label);
        if field.required {
            self.run(Some("RequiredMark"), " *");
        }
        self.x.raw("</w:p>");
        let help = field.help.as_deref().map(str::trim).filter(|t| !t.is_empty());
        let help = match (help, condition_note(def, field)) {
            (Some(help), Some(note)) => Some(format!("{help} {note}")),
            (Some(help), None) => Some(help.to_string()),
            (None, note) => note,
        };
        if let Some(help) = help {
            self.paragraph("FieldHelp", &help);
        }
        self.x.raw("</w:tc>");
        // Value cell.
        self.x
            .raw("<w:tc><w:tcPr>")
            .empty("w:tcW", &[("w:w", &VALUE_WIDTH.to_string()), ("w:type", "dxa")])
            .raw("</w:tcPr>");
        if field.kind.is_boxes() {
            let ticked: &[String] = match value {
                Some(Value::Choices(keys)) => keys,
                _ => &[],
            };
            for choice in field.effective_choices() {
                let checked = ticked.contains(&choice.key);
                self.checkbox(&format!("{}={}", field.key, choice.key), &choice.label, checked);
            }
        } else {
            let text = match value {
                Some(Value::Text(t)) if !t.trim().is_empty() => Some(t.as_str()),
                _ => None,
            };
            self.typed_control(field, text);
        }
        self.x.raw("</w:tc></w:tr>");
    }

    fn control_id(&mut self) -> String {
        let id = self.next_id;
        self.next_id += 1;
        id.to_string()
    }

    /// A run-level text or date control; blank shows the placeholder, filled shows the value.
    fn typed_control(&mut self, field: &FieldDef, value: Option<&str>) {
        let id = self.control_id();
        self.x
            .raw("<w:p><w:pPr><w:pStyle w:val=\"FieldValue\"/></w:pPr><w:sdt><w:sdtPr>")
            .empty("w:alias", &[("w:val", &field.label)])
            .empty("w:tag", &[("w:val", &field.key)])
            .empty("w:id", &[("w:val", &id)])
            .raw("<w:lock w:val=\"sdtLocked\"/>");
        if value.is_none() {
            self.x.raw("<w:showingPlcHdr/>");
        }
        let shown = match field.kind {
            FieldKind::Date => {
                let date = value.map(parse_date);
                let full = date.as_ref().and_then(|(_, full)| full.clone());
                match &full {
                    Some(f) => self.x.open("w:date", &[("w:fullDate", f)]),
                    None => self.x.open("w:date", &[]),
                };
                self.x
                    .raw("<w:dateFormat w:val=\"dd/MM/yyyy\"/><w:lid w:val=\"en-GB\"/>")
                    .raw("<w:storeMappedDataAs w:val=\"dateTime\"/><w:calendar w:val=\"gregorian\"/></w:date>");
                date.map(|(shown, _)| shown)
            }
            FieldKind::LongText => {
                self.x.raw("<w:text w:multiLine=\"1\"/>");
                value.map(str::to_string)
            }
            _ => {
                self.x.raw("<w:text/>");
                value.map(str::to_string)
            }
        };
        self.x.raw("</w:sdtPr><w:sdtContent>");
        match shown {
            Some(text) => self.run(None, &text),
            None if field.kind == FieldKind::Date => self.run(Some("PlaceholderText"), DATE_PLACEHOLDER),
            None => self.run(Some("PlaceholderText"), TEXT_PLACEHOLDER),
        }
        self.x.raw("</w:sdtContent></w:sdt></w:p>");
    }

    /// One paragraph: a checkbox control tagged `key=choice`, then the choice label as ordinary text, so a
    /// box still reads by the text after it once the control is gone.
    fn checkbox(&mut self, tag: &str, label: &str, checked: bool) {
        let id = self.control_id();
        self.x
            .raw("<w:p><w:pPr><w:pStyle w:val=\"FieldChoice\"/></w:pPr><w:sdt><w:sdtPr><w:rPr>")
            .raw(BOX_FONTS)
            .raw("</w:rPr>")
            .empty("w:alias", &[("w:val", label)])
            .empty("w:tag", &[("w:val", tag)])
            .empty("w:id", &[("w:val", &id)])
            .raw("<w:lock w:val=\"sdtLocked\"/><w14:checkbox>")
            .raw(if checked { "<w14:checked w14:val=\"1\"/>" } else { "<w14:checked w14:val=\"0\"/>" })
            .raw("<w14:checkedState w14:val=\"2612\" w14:font=\"MS Gothic\"/>")
            .raw("<w14:uncheckedState w14:val=\"2610\" w14:font=\"MS Gothic\"/>")
            .raw("</w14:checkbox></w:sdtPr><w:sdtContent><w:r><w:rPr>")
            .raw(BOX_FONTS)
            .raw("</w:rPr><w:t>")
            .raw(if checked { CHECKED } else { UNCHECKED })
            .raw("</w:t></w:r></w:sdtContent></w:sdt>");
        self.run(None, &format!(" {label}"));
        self.x.raw("</w:p>");
    }
}

/// Says when a conditionally required field must be answered, in the words of the question it depends on:
/// the `*` only marks fields that are always required.
fn condition_note(def: &FormDef, field: &FieldDef) -> Option<String> {
    let cond = field.required_when.as_ref()?;
    let other = def.field(&cond.field)?;
    let question = other.label.trim().trim_end_matches(['*', ':', ' ']);
    if !other.kind.is_boxes() {
        return Some(format!(
            "Required if the answer to \u{201c}{question}\u{201d} is \u{201c}{}\u{201d}.",
            cond.equals
        ));
    }
    let choice = other.effective_choices().into_iter().find(|c| c.key == cond.equals)?;
    Some(match other.kind {
        FieldKind::MultiChoice => {
            format!("Required if, for \u{201c}{question}\u{201d}, you tick \u{201c}{}\u{201d}.", choice.label)
        }
        _ => format!("Required if the answer to \u{201c}{question}\u{201d} is \u{201c}{}\u{201d}.", choice.label),
    })
}

/// A date value as shown (`dd/mm/yyyy`) and, when it is a real date, Word's `w:fullDate`. Accepts
/// `yyyy-mm-dd` and `dd/mm/yyyy`; anything else is shown as given (tests render invalid dates on purpose).
fn parse_date(value: &str) -> (String, Option<String>) {
    let v = value.trim();
    let parsed = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .or_else(|_| chrono::NaiveDate::parse_from_str(v, "%d/%m/%Y"))
        .ok();
    match parsed {
        Some(d) => (d.format("%d/%m/%Y").to_string(), Some(d.format("%Y-%m-%dT00:00:00Z").to_string())),
        None => (value.to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::{condition_note, parse_date};
    use crate::forms::FormDef;

    #[test]
    fn conditional_fields_say_which_answer_makes_them_required() {
        let def: FormDef = toml::from_str(
            r#"
id = "mini"
version = "1"
title = "Mini"
regulation = "R"
[[sections]]
title = "S"
[[sections.fields]]
key = "known"
label = "Is it known? *"
type = "yes_no"
[[sections.fields]]
key = "kinds"
label = "Kinds"
type = "multi_choice"
choices = [{ key = "other", label = "Something else" }]
[[sections.fields]]
key = "cause"
label = "Cause"
type = "text"
required_when = { field = "known", equals = "yes" }
[[sections.fields]]
key = "other"
label = "Other"
type = "text"
required_when = { field = "kinds", equals = "other" }
"#,
        )
        .unwrap();
        let note = |key: &str| condition_note(&def, def.field(key).unwrap());
        assert_eq!(
            note("cause").unwrap(),
            "Required if the answer to \u{201c}Is it known?\u{201d} is \u{201c}Yes\u{201d}."
        );
        assert_eq!(
            note("other").unwrap(),
            "Required if, for \u{201c}Kinds\u{201d}, you tick \u{201c}Something else\u{201d}."
        );
        assert_eq!(note("known"), None);
    }

    #[test]
    fn dates_are_shown_day_first_and_bad_dates_are_kept_as_given() {
        assert_eq!(parse_date("2026-03-05"), ("05/03/2026".into(), Some("2026-03-05T00:00:00Z".into())));
        assert_eq!(parse_date(" 5/3/2026 "), ("05/03/2026".into(), Some("2026-03-05T00:00:00Z".into())));
        assert_eq!(parse_date("31/02/2026"), ("31/02/2026".into(), None));
    }
}
