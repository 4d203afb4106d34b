//! A small .docx builder for the reader's tests, and the layouts it writes: Postroom's own (tagged, as
//! docs/form-layout.md renders it) and the same form after LibreOffice (shared notes/word-files.md);
//! plus sample values for round trips through the real renderer.

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};

use postroom::forms::{ExtractedForm, FieldKind, FormDef, Value, ValueSource};

pub const NS: &str = r#"xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" xmlns:w14="http://schemas.microsoft.com/office/word/2010/wordml" xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006""#;
pub const MAIN_TYPE: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml";

pub struct Docx {
    pub parts: Vec<(String, Vec<u8>)>,
    pub main_type: &'static str,
}

impl Docx {
    pub fn new() -> Docx {
        Docx { parts: Vec::new(), main_type: MAIN_TYPE }
            .part("_rels/.rels", r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#)
    }

    /// Adds a part, replacing any part of the same name.
    pub fn part(mut self, name: &str, body: &str) -> Docx {
        self.parts.retain(|(n, _)| n != name);
        self.parts.push((name.to_string(), body.as_bytes().to_vec()));
        self
    }

    pub fn body(self, inner: &str) -> Docx {
        let xml = format!(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document {NS}><w:body>{inner}<w:sectPr><w:pgSz w:w="11906" w:h="16838"/></w:sectPr></w:body></w:document>"#
        );
        self.part("word/document.xml", &xml)
    }

    pub fn custom(self, id: &str, version: &str) -> Docx {
        let xml = format!(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/custom-properties" xmlns:vt="http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes"><property fmtid="{{D5CDD505-2E9C-101B-9397-08002B2CF9AE}}" pid="2" name="postroom.form"><vt:lpwstr>{id}</vt:lpwstr></property><property fmtid="{{D5CDD505-2E9C-101B-9397-08002B2CF9AE}}" pid="3" name="postroom.version"><vt:lpwstr>{version}</vt:lpwstr></property></Properties>"#
        );
        self.part("docProps/custom.xml", &xml)
    }

    pub fn title(self, title: &str) -> Docx {
        let xml = format!(
            r#"<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>{title}</dc:title><dc:subject>x</dc:subject></cp:coreProperties>"#
        );
        self.part("docProps/core.xml", &xml)
    }

    pub fn footer(self, runs: &str) -> Docx {
        self.part("word/footer1.xml", &format!(r#"<w:ftr {NS}><w:p>{runs}</w:p></w:ftr>"#))
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut types = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="{}"/>"#,
            self.main_type
        );
        types.push_str("</Types>");
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        zip.start_file("[Content_Types].xml", opts).unwrap();
        zip.write_all(types.as_bytes()).unwrap();
        for (name, body) in &self.parts {
            zip.start_file(name.as_str(), opts).unwrap();
            zip.write_all(body).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }
}

pub fn run(text: &str) -> String {
    format!(r#"<w:r><w:t xml:space="preserve">{text}</w:t></w:r>"#)
}

pub fn p(inner: &str) -> String {
    format!("<w:p>{inner}</w:p>")
}

// The layout of docs/form-layout.md.

pub const TEXT_PH: &str = "Click or tap here to enter text.";
pub const DATE_PH: &str = "Click or tap to enter a date.";

/// A value cell's run-level text control, showing `value` or the placeholder.
pub fn text_control(key: &str, label: &str, value: Option<&str>, date: bool) -> String {
    let kind =
        if date { r#"<w:date><w:dateFormat w:val="dd/MM/yyyy"/><w:lid w:val="en-GB"/></w:date>"# } else { "<w:text/>" };
    let (plc, shown) = match value {
        Some(v) => ("", v.to_string()),
        None => ("<w:showingPlcHdr/>", (if date { DATE_PH } else { TEXT_PH }).to_string()),
    };
    let runs: String = shown.split('\n').map(run).collect::<Vec<_>>().join("<w:r><w:br/></w:r>");
    format!(
        r#"<w:sdt><w:sdtPr><w:alias w:val="{label}"/><w:tag w:val="{key}"/><w:id w:val="1"/>{plc}{kind}</w:sdtPr><w:sdtContent>{runs}</w:sdtContent></w:sdt>"#
    )
}

/// One choice's paragraph: a checkbox control tagged `key=choice`, then a space and the choice label.
pub fn box_para(tag: Option<&str>, label: &str, checked: &str, glyph: char) -> String {
    let tag = tag.map(|t| format!(r#"<w:tag w:val="{t}"/>"#)).unwrap_or_default();
    let checkbox = format!(
        r#"<w14:checkbox>{checked}<w14:checkedState w14:val="2612" w14:font="MS Gothic"/><w14:uncheckedState w14:val="2610" w14:font="MS Gothic"/></w14:checkbox>"#
    );
    p(&format!(
        r#"<w:sdt><w:sdtPr><w:alias w:val="{label}"/>{tag}{checkbox}</w:sdtPr><w:sdtContent><w:r><w:rPr><w:rFonts w:ascii="MS Gothic" w:hAnsi="MS Gothic"/></w:rPr><w:t>{glyph}</w:t></w:r></w:sdtContent></w:sdt>{}"#,
        run(&format!(" {label}"))
    ))
}

pub fn tagged_box(key: &str, choice: &str, label: &str, ticked: bool) -> String {
    let (val, glyph) = if ticked { ("1", '\u{2612}') } else { ("0", '\u{2610}') };
    box_para(Some(&format!("{key}={choice}")), label, &format!(r#"<w14:checked w14:val="{val}"/>"#), glyph)
}

pub fn row(label: &str, help: Option<&str>, value_cell: &str) -> String {
    let help = help.map(|h| p(&run(h))).unwrap_or_default();
    format!(
        r#"<w:tr><w:tc><w:tcPr><w:tcW w:w="3000" w:type="dxa"/></w:tcPr>{}{help}</w:tc><w:tc><w:tcPr><w:tcW w:w="6000" w:type="dxa"/></w:tcPr>{value_cell}</w:tc></w:tr>"#,
        p(&run(label))
    )
}

pub fn table(rows: &[String]) -> String {
    format!(
        r#"<w:tbl><w:tblPr><w:tblW w:w="0" w:type="auto"/></w:tblPr><w:tblGrid><w:gridCol w:w="3000"/><w:gridCol w:w="6000"/></w:tblGrid>{}</w:tbl>"#,
        rows.concat()
    )
}

pub fn heading(text: &str) -> String {
    p(&format!(r#"<w:pPr><w:pStyle w:val="Heading1"/></w:pPr>{}"#, run(text)))
}

/// The filled form as Postroom renders it, tags and all.
pub fn rendered_filled() -> Docx {
    let rows = [
        row(
            "Provider ID *",
            Some("Starts with 1- then digits."),
            &p(&text_control("provider_id", "Provider ID", Some("1-101641531"), false)),
        ),
        row("Date of death *", None, &p(&text_control("date_of_death", "Date of death", Some("03/04/2026"), true))),
        row(
            "What happened",
            None,
            &p(&text_control("details", "What happened", Some("Found at 06:10.\nGP called."), false)),
        ),
        row(
            "Was the death expected?",
            None,
            &[tagged_box("expected", "yes", "Yes", false), tagged_box("expected", "no", "No", true)].concat(),
        ),
        row(
            "Place of death",
            None,
            &[
                tagged_box("place", "home", "At home", false),
                tagged_box("place", "hospital", "In hospital", true),
                tagged_box("place", "elsewhere", "Somewhere else", false),
            ]
            .concat(),
        ),
        row(
            "Types of abuse",
            None,
            &[
                tagged_box("abuse", "physical", "Physical", true),
                tagged_box("abuse", "sexual", "Sexual", false),
                tagged_box("abuse", "financial", "Financial or material", true),
            ]
            .concat(),
        ),
        row("Your email address", None, &p(&text_control("email", "Your email address", None, false))),
    ];
    Docx::new()
        .body(&format!("{}{}{}", p(&run("Notification of death")), heading("About the provider"), table(&rows)))
        .custom("notice", "2026.1")
        .title("Notification of death")
        .footer(&run("Postroom form notice version 2026.1"))
}

pub fn choices(keys: &[&str]) -> Value {
    Value::Choices(keys.iter().map(|k| k.to_string()).collect())
}

pub fn assert_filled_values(f: &ExtractedForm, source: ValueSource) {
    assert_eq!(f.text("provider_id"), Some("1-101641531"));
    assert_eq!(f.text("date_of_death"), Some("03/04/2026"));
    assert_eq!(f.get("expected"), Some(&choices(&["no"])));
    assert_eq!(f.get("place"), Some(&choices(&["hospital"])));
    assert_eq!(f.get("abuse"), Some(&choices(&["physical", "financial"])));
    assert!(!f.values.contains_key("email"), "a placeholder is no value: {:?}", f.values.get("email"));
    for key in ["provider_id", "date_of_death", "expected", "place", "abuse"] {
        assert_eq!(f.values[key].source, source, "{key}");
    }
}

/// The filled form after LibreOffice: every tag gone, text controls keep their alias, checkboxes keep
/// w14:checked, a wrapper sdt around each paragraph of boxes carries the last box's alias, placeholders
/// are plain text, several w:t share a run, a w:br moved in front of the control.
pub fn libreoffice_filled() -> Docx {
    let lo_text = |alias: &str, runs: &str| {
        format!(
            r#"<w:sdt><w:sdtPr><w:alias w:val="{alias}"/><w:id w:val="7{alias_len}"/><w:text/></w:sdtPr><w:sdtContent><w:r/>{runs}<w:r/></w:sdtContent></w:sdt>"#,
            alias_len = alias.len()
        )
    };
    let lo_box = |label: &str, ticked: bool| {
        let glyph = if ticked { '\u{2612}' } else { '\u{2610}' };
        let val = if ticked { "1" } else { "0" };
        format!(
            r#"<w:sdt><w:sdtPr><w14:checkbox><w14:checked w14:val="{val}"/><w14:checkedState w14:val="2612"/><w14:uncheckedState w14:val="2610"/></w14:checkbox></w:sdtPr><w:sdtContent><w:r><w:t>{glyph}</w:t></w:r></w:sdtContent></w:sdt>{}"#,
            run(&format!(" {label}"))
        )
    };
    // LibreOffice's wrapper: one sdt around a paragraph holding several boxes, alias of the last box.
    let wrapped = |boxes: &[(&str, bool)]| {
        let last = boxes.last().map(|b| b.0).unwrap_or("");
        let inner: String = boxes.iter().map(|(l, t)| lo_box(l, *t)).collect();
        format!(
            r#"<w:sdt><w:sdtPr><w:alias w:val="{last}"/></w:sdtPr><w:sdtContent>{}</w:sdtContent></w:sdt>"#,
            p(&inner)
        )
    };
    let rows = [
        row(
            "Provider ID *",
            Some("Starts with 1- then digits."),
            &p(&lo_text("Provider ID", "<w:r><w:t>1-10164</w:t><w:t>1531</w:t></w:r>")),
        ),
        row("Date of death  *", None, &p(&format!(r#"<w:r><w:br/></w:r>{}"#, lo_text("", &run("03/04/2026"))))),
        row(
            "What happened",
            None,
            &p(&lo_text("What happened", &format!("{}{}", run("Found at 06:10."), run("GP called.")))),
        ),
        row("Was the death expected?", None, &wrapped(&[("Yes", false), ("No", true)])),
        row("Place of death", None, &wrapped(&[("At home", false), ("In hospital", true), ("Somewhere else", false)])),
        row(
            "Types of abuse",
            None,
            &wrapped(&[("Physical", true), ("Sexual", false), ("Financial or material", true)]),
        ),
        row(
            "Your email address",
            None,
            &p(&format!(r#"<w:r><w:rPr><w:rStyle w:val="PlaceholderText"/></w:rPr><w:t>{TEXT_PH}</w:t></w:r>"#)),
        ),
    ];
    Docx::new().body(&format!("{}{}", heading("About the provider"), table(&rows)))
}

pub fn ole(stream: &str) -> Vec<u8> {
    let mut bytes = vec![0u8; 4096];
    bytes[..8].copy_from_slice(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]);
    // Root entry, then the named stream, in the first directory sector (sector 1 at offset 1024).
    for (slot, name) in [(1024, "Root Entry"), (1152, stream)] {
        let units: Vec<u16> = name.encode_utf16().collect();
        for (i, u) in units.iter().enumerate() {
            bytes[slot + 2 * i..slot + 2 * i + 2].copy_from_slice(&u.to_le_bytes());
        }
        bytes[slot + 64..slot + 66].copy_from_slice(&((units.len() as u16 + 1) * 2).to_le_bytes());
    }
    bytes
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A value for every field, of the kind the renderer takes; text carries characters XML must escape.
pub fn sample_values(def: &FormDef) -> BTreeMap<String, Value> {
    let text = |t: &str| Value::Text(t.to_string());
    let keys = |f: &postroom::forms::FieldDef, pick: &[usize]| {
        let choices = f.effective_choices();
        let mut keys: Vec<String> = pick.iter().filter_map(|i| choices.get(*i)).map(|c| c.key.clone()).collect();
        keys.dedup();
        Value::Choices(keys)
    };
    def.fields()
        .map(|f| {
            let last = f.effective_choices().len().saturating_sub(1);
            let value = match f.kind {
                FieldKind::Text => text(&format!("{} & <\"answer\">", f.label)),
                FieldKind::LongText => text("Found at 06:10 & called 999.\n\tCPR started.\nGP informed"),
                FieldKind::Date => text("03/04/2026"),
                FieldKind::Time => text("14:30"),
                FieldKind::ProviderId => text("1-101641531"),
                FieldKind::LocationId => text("1-1000210669"),
                FieldKind::Email => text("rm@care.example"),
                FieldKind::Phone => text("0113 496 0000"),
                FieldKind::Number => text("12"),
                FieldKind::YesNo => keys(f, &[1]),
                FieldKind::Choice => keys(f, &[last]),
                FieldKind::MultiChoice => keys(f, &[0, last]),
            };
            (f.key.clone(), value)
        })
        .collect()
}

pub fn values_of(f: &ExtractedForm) -> BTreeMap<String, Value> {
    f.values.iter().map(|(k, v)| (k.clone(), v.value.clone())).collect()
}

/// The expected values as text comes back: a tab reads as a space.
pub fn as_read(values: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    values
        .iter()
        .map(|(k, v)| match v {
            Value::Text(t) => (k.clone(), Value::Text(t.replace("\n\t", "\n"))),
            other => (k.clone(), other.clone()),
        })
        .collect()
}

/// Rewrites a rendered .docx the way LibreOffice leaves it: no `w:tag`, no custom properties.
pub fn strip_tags_and_properties(bytes: &[u8]) -> Vec<u8> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    let mut docx = Docx { parts: Vec::new(), main_type: MAIN_TYPE };
    for i in 0..zip.len() {
        let mut file = zip.by_index(i).unwrap();
        let name = file.name().unwrap().to_string();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        if name == "docProps/custom.xml" || name == "[Content_Types].xml" {
            continue;
        }
        while let Some(at) = text.find("<w:tag ") {
            let end = at + text[at..].find("/>").unwrap() + 2;
            text.replace_range(at..end, "");
        }
        docx = docx.part(&name, &text);
    }
    docx.bytes()
}
