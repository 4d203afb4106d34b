//! The .docx reader against the shapes that really arrive: Postroom's own tagged layout
//! (docs/form-layout.md), the same form after LibreOffice or a .doc round trip stripped its tags
//! (shared notes/word-files.md), legacy form fields, plain text forms, and hostile files. Every .docx is
//! built here from hand-written XML, so each test shows exactly the shape it covers.

#[path = "extract_hostile/docx.rs"]
mod docx;

use std::io::Write;
use std::time::Instant;

use docx::*;
use postroom::forms::extract::{ExtractError, extract, sniff};
use postroom::forms::render::render;
use postroom::forms::{Catalog, DocxLimits, ExtractedForm, IdentitySource, ValueSource};

const NOTICE: &str = r#"
id = "notice"
version = "2026.1"
title = "Notification of death"
regulation = "Regulation 16"
[[sections]]
title = "About the provider"
[[sections.fields]]
key = "provider_id"
label = "Provider ID"
type = "provider_id"
required = true
help = "Starts with 1- then digits."
[[sections.fields]]
key = "date_of_death"
label = "Date of death"
type = "date"
required = true
[[sections.fields]]
key = "details"
label = "What happened"
type = "long_text"
[[sections.fields]]
key = "expected"
label = "Was the death expected?"
type = "yes_no"
[[sections.fields]]
key = "place"
label = "Place of death"
type = "choice"
choices = [{ key = "home", label = "At home" }, { key = "hospital", label = "In hospital" }, { key = "elsewhere", label = "Somewhere else" }]
[[sections.fields]]
key = "abuse"
label = "Types of abuse"
type = "multi_choice"
choices = [{ key = "physical", label = "Physical" }, { key = "sexual", label = "Sexual" }, { key = "financial", label = "Financial or material" }]
[[sections.fields]]
key = "email"
label = "Your email address"
type = "email"
"#;

/// Two versions: 2026.2 (current) adds a field, so tests can tell which definition was used.
fn catalog() -> Catalog {
    let v2 = NOTICE.replace("2026.1", "2026.2")
        + "[[sections.fields]]\nkey = \"notifier\"\nlabel = \"Your name\"\ntype = \"text\"\n";
    Catalog::from_sources([
        ("notice/2026.1.toml".to_string(), NOTICE.to_string()),
        ("notice/2026.2.toml".to_string(), v2),
    ])
    .unwrap()
}

fn read(docx: &Docx) -> ExtractedForm {
    extract(&docx.bytes(), &catalog(), &DocxLimits::default()).unwrap()
}

fn code(bytes: &[u8], limits: &DocxLimits) -> &'static str {
    extract(bytes, &catalog(), limits).unwrap_err().reason_code()
}

// ---------------------------------------------------------------------------------------------------
// Values.

#[test]
fn tagged_text_date_long_text_and_boxes_are_read_by_tag() {
    let f = read(&rendered_filled());
    assert_eq!((f.form_id.as_str(), f.version.as_str()), ("notice", "2026.1"));
    assert_eq!(f.identity_source, IdentitySource::CustomProperties);
    assert_filled_values(&f, ValueSource::Tag);
    assert_eq!(f.text("details"), Some("Found at 06:10.\nGP called."), "w:br is a line break");
    assert!(!f.values.contains_key("notifier"), "the declared 2026.1 definition is used");
}

#[test]
fn text_split_across_runs_and_several_t_in_one_run_is_joined() {
    let control = r#"<w:sdt><w:sdtPr><w:tag w:val="details"/></w:sdtPr><w:sdtContent>
        <w:r/><w:r><w:t>Called</w:t><w:t xml:space="preserve"> 999.</w:t></w:r><w:r><w:rPr><w:b/></w:rPr><w:t>CPR</w:t></w:r>
        <w:r><w:tab/><w:t>was started</w:t></w:r><w:r/></w:sdtContent></w:sdt>"#;
    let f = read(&Docx::new().body(&p(control)).custom("notice", "2026.1"));
    assert_eq!(f.text("details"), Some("Called 999.CPR was started"));
}

#[test]
fn placeholders_are_empty_whatever_their_flags() {
    let plain_cell =
        p(&format!(r#"<w:r><w:rPr><w:rStyle w:val="PlaceholderText"/></w:rPr><w:t>{TEXT_PH}</w:t></w:r>"#));
    let dropdown = r#"<w:sdt><w:sdtPr><w:tag w:val="place"/><w:dropDownList><w:listItem w:displayText="At home" w:value="home"/></w:dropDownList></w:sdtPr><w:sdtContent><w:r><w:t>Choose an item.</w:t></w:r></w:sdtContent></w:sdt>"#;
    let body = [
        p(&text_control("date_of_death", "Date of death", None, true)),
        // A LibreOffice save keeps the wording but drops w:showingPlcHdr.
        p(&text_control("provider_id", "Provider ID", Some(TEXT_PH), false)),
        p(dropdown),
        table(&[row("What happened", None, &plain_cell)]),
    ]
    .concat();
    let f = read(&Docx::new().body(&body).custom("notice", "2026.1"));
    assert!(f.values.is_empty(), "{:?}", f.values);
}

#[test]
fn a_drop_down_maps_its_shown_text_back_to_the_choice() {
    let dropdown = r#"<w:sdt><w:sdtPr><w:tag w:val="place"/><w:dropDownList><w:listItem w:displayText="In hospital" w:value="hospital"/></w:dropDownList></w:sdtPr><w:sdtContent><w:r><w:t>In hospital</w:t></w:r></w:sdtContent></w:sdt>"#;
    let f = read(&Docx::new().body(&p(dropdown)).custom("notice", "2026.1"));
    assert_eq!(f.get("place"), Some(&choices(&["hospital"])));
    assert_eq!(f.values["place"].source, ValueSource::Tag);
}

#[test]
fn entities_tabs_and_breaks_become_text() {
    let control = r#"<w:sdt><w:sdtPr><w:tag w:val="details"/></w:sdtPr><w:sdtContent><w:r><w:t>Fish &amp; chips &lt;3 &quot;ok&quot; &apos;n&apos; &#8364;5 &#x2013; done</w:t><w:br/><w:t>line&#160;two</w:t><w:cr/><w:t>three</w:t></w:r></w:sdtContent></w:sdt>"#;
    let f = read(&Docx::new().body(&p(control)).custom("notice", "2026.1"));
    assert_eq!(f.text("details"), Some("Fish & chips <3 \"ok\" 'n' \u{20ac}5 \u{2013} done\nline\u{a0}two\nthree"));
}

#[test]
fn legacy_formtext_and_formcheckbox_are_read_by_field_name() {
    let formtext = |name: &str, result: &str| {
        format!(
            r#"<w:r><w:fldChar w:fldCharType="begin"><w:ffData><w:name w:val="{name}"/><w:enabled/><w:calcOnExit w:val="0"/><w:textInput/></w:ffData></w:fldChar></w:r><w:r><w:instrText xml:space="preserve"> FORMTEXT </w:instrText></w:r><w:r><w:fldChar w:fldCharType="separate"/></w:r>{result}<w:r><w:fldChar w:fldCharType="end"/></w:r>"#
        )
    };
    let checkbox = |name: &str, state: &str| {
        format!(
            r#"<w:r><w:fldChar w:fldCharType="begin"><w:ffData><w:name w:val="{name}"/><w:enabled/><w:checkBox><w:sizeAuto/>{state}</w:checkBox></w:ffData></w:fldChar></w:r><w:r><w:instrText xml:space="preserve"> FORMCHECKBOX </w:instrText></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r>"#
        )
    };
    let body = [
        p(&formtext("provider_id", &format!("{}{}", run("1-1016"), run("41531")))),
        p(&formtext("details", &run("     "))),
        p(&(checkbox("expected_yes", r#"<w:default w:val="0"/>"#) + &run(" Yes"))),
        p(&(checkbox("expected_no", r#"<w:default w:val="0"/><w:checked/>"#) + &run(" No"))),
        p(&(checkbox("abuse=sexual", r#"<w:default w:val="1"/>"#) + &run(" Sexual"))),
        p(&(checkbox("abuse=physical", r#"<w:default w:val="1"/><w:checked w:val="0"/>"#) + &run(" Physical"))),
        // LibreOffice empties a checkbox's name; the bookmark Word put around it still carries it.
        p(&format!(
            r#"<w:bookmarkStart w:id="0" w:name="_GoBack"/><w:bookmarkEnd w:id="0"/><w:bookmarkStart w:id="1" w:name="place_home"/>{}<w:bookmarkEnd w:id="1"/>{}"#,
            checkbox("", "<w:checked/>"),
            run(" At home")
        )),
    ]
    .concat();
    let f = read(&Docx::new().body(&body).custom("notice", "2026.1"));
    assert_eq!(f.text("provider_id"), Some("1-101641531"));
    assert_eq!(f.values["provider_id"].source, ValueSource::LegacyField);
    assert!(!f.values.contains_key("details"), "a blank FORMTEXT is no value");
    assert_eq!(f.get("expected"), Some(&choices(&["no"])));
    assert_eq!(f.get("abuse"), Some(&choices(&["sexual"])), "w:checked overrides w:default");
    assert_eq!(f.values["abuse"].source, ValueSource::LegacyField);
    assert_eq!(f.get("place"), Some(&choices(&["home"])), "named by its bookmark");
}

#[test]
fn w14_checked_spellings_decide_over_the_glyph() {
    let checked = |val: Option<&str>| match val {
        Some(v) => format!(r#"<w14:checked w14:val="{v}"/>"#),
        None => "<w14:checked/>".to_string(),
    };
    // Every glyph is the stale opposite of the state, so only w14:checked can give these answers.
    let body = [
        box_para(Some("abuse=physical"), "Physical", &checked(Some("true")), '\u{2610}'),
        box_para(Some("abuse=sexual"), "Sexual", &checked(Some("on")), '\u{2610}'),
        box_para(Some("abuse=financial"), "Financial or material", &checked(None), '\u{2610}'),
        box_para(Some("expected=yes"), "Yes", &checked(Some("false")), '\u{2612}'),
        box_para(Some("expected=no"), "No", &checked(Some("1")), '\u{2610}'),
        box_para(Some("place=home"), "At home", &checked(Some("0")), '\u{2612}'),
        box_para(Some("place=hospital"), "In hospital", &checked(Some("off")), '\u{2612}'),
    ]
    .concat();
    let f = read(&Docx::new().body(&body).custom("notice", "2026.1"));
    assert_eq!(f.get("abuse"), Some(&choices(&["physical", "sexual", "financial"])));
    assert_eq!(f.get("expected"), Some(&choices(&["no"])));
    assert_eq!(f.get("place"), None);
}

#[test]
fn glyph_only_boxes_are_read_from_the_glyph() {
    let glyph_box = |tag: &str, label: &str, glyph: &str| {
        p(&format!(
            r#"<w:sdt><w:sdtPr><w:tag w:val="{tag}"/></w:sdtPr><w:sdtContent><w:r><w:t>{glyph}</w:t></w:r></w:sdtContent></w:sdt>{}"#,
            run(&format!(" {label}"))
        ))
    };
    let body = [
        glyph_box("expected=yes", "Yes", "\u{2611}"),
        glyph_box("expected=no", "No", "\u{2610}"),
        glyph_box("abuse=physical", "Physical", "\u{2714}"),
        glyph_box("abuse=sexual", "Sexual", "X"),
        glyph_box("abuse=financial", "Financial or material", "\u{2610}"),
    ]
    .concat();
    let f = read(&Docx::new().body(&body).custom("notice", "2026.1"));
    assert_eq!(f.get("expected"), Some(&choices(&["yes"])));
    assert_eq!(f.get("abuse"), Some(&choices(&["physical", "sexual"])));
}

#[test]
fn tagless_form_after_libreoffice_reads_by_label_cell() {
    let f = read(&libreoffice_filled().custom("notice", "2026.1"));
    assert_filled_values(&f, ValueSource::LabelCell);
    assert_eq!(f.text("details"), Some("Found at 06:10.GP called."), "LibreOffice lost the line break");
}

#[test]
fn glyphs_typed_marks_and_unnamed_fields_after_a_doc_round_trip() {
    // After .doc: boxes are only glyphs in text, text controls became FORMTEXT fields named "Unnamed".
    let unnamed = |result: &str| {
        format!(
            r#"<w:r><w:fldChar w:fldCharType="begin"><w:ffData><w:name w:val="Unnamed"/><w:textInput/></w:ffData></w:fldChar></w:r><w:r><w:instrText>FORMTEXT</w:instrText></w:r><w:r><w:fldChar w:fldCharType="separate"/></w:r>{}<w:r><w:fldChar w:fldCharType="end"/></w:r>"#,
            run(result)
        )
    };
    let rows = [
        row("provider id:", None, &p(&unnamed("1-101641531"))),
        row("Date of death", None, &p(&unnamed("3 April 2026"))),
        row("Was the death expected?", None, &p(&run("[] Yes [x] No"))),
        row(
            "Place of death",
            None,
            &[p(&run("\u{2610} At home")), p(&run("\u{2612} In hospital")), p(&run("\u{2610} Somewhere else"))]
                .concat(),
        ),
        row("Types of abuse", None, &p(&run("X Physical   \u{2610} Sexual  \u{2713} Financial or material"))),
    ];
    let f = read(&Docx::new().body(&table(&rows)).custom("notice", "2026.1"));
    assert_eq!(f.text("provider_id"), Some("1-101641531"));
    assert_eq!(f.text("date_of_death"), Some("3 April 2026"));
    assert_eq!(f.get("expected"), Some(&choices(&["no"])));
    assert_eq!(f.get("place"), Some(&choices(&["hospital"])));
    assert_eq!(f.get("abuse"), Some(&choices(&["physical", "financial"])));
    assert!(f.values.values().all(|v| v.source == ValueSource::LabelCell));
}

#[test]
fn label_value_lines_outside_tables_are_the_last_resort() {
    let body = [
        p(&run("Notification of death")),
        p(&format!("{}{}", run("Provider ID"), run(": 1-101641531"))),
        p(&run("DATE OF DEATH * : 03/04/2026")),
        p(&run("Was the death expected?: \u{2610} Yes \u{2612} No")),
        p(&run("Types of abuse: Physical, Sexual")),
        p(&run("Time of day: 10:30")),
        p(&run("Your email address:")),
    ]
    .concat();
    let f = read(&Docx::new().body(&body).custom("notice", "2026.1"));
    assert_eq!(f.text("provider_id"), Some("1-101641531"));
    assert_eq!(f.text("date_of_death"), Some("03/04/2026"));
    assert_eq!(f.get("expected"), Some(&choices(&["no"])));
    assert_eq!(f.get("abuse"), Some(&choices(&["physical", "sexual"])));
    assert!(!f.values.contains_key("email"));
    assert!(f.values.values().all(|v| v.source == ValueSource::LabelLine));
}

#[test]
fn a_wrapper_with_an_unknown_tag_does_not_swallow_the_boxes_inside() {
    let inner =
        [tagged_box("abuse", "physical", "Physical", false), tagged_box("abuse", "sexual", "Sexual", true)].concat();
    let body = format!(
        r#"<w:sdt><w:sdtPr><w:alias w:val="Sexual"/><w:tag w:val="Group 3"/></w:sdtPr><w:sdtContent>{inner}</w:sdtContent></w:sdt>"#
    );
    let f = read(&Docx::new().body(&body).custom("notice", "2026.1"));
    assert_eq!(f.get("abuse"), Some(&choices(&["sexual"])));
}

#[test]
fn block_and_cell_level_controls_are_read() {
    let block = format!(
        r#"<w:sdt><w:sdtPr><w:tag w:val="details"/></w:sdtPr><w:sdtContent>{}{}</w:sdtContent></w:sdt>"#,
        p(&run("First paragraph")),
        p(&run("Second paragraph"))
    );
    let cell = format!(
        r#"<w:tbl><w:tr><w:tc>{}</w:tc><w:sdt><w:sdtPr><w:tag w:val="email"/></w:sdtPr><w:sdtContent><w:tc>{}</w:tc></w:sdtContent></w:sdt></w:tr></w:tbl>"#,
        p(&run("Your email address")),
        p(&run(" rm@care.example "))
    );
    let f = read(&Docx::new().body(&(block + &cell)).custom("notice", "2026.1"));
    assert_eq!(f.text("details"), Some("First paragraph\nSecond paragraph"));
    assert_eq!(f.text("email"), Some("rm@care.example"));
    assert_eq!(f.values["email"].source, ValueSource::Tag);
}

#[test]
fn any_namespace_prefix_reads_the_same() {
    let xml = r#"<?xml version="1.0"?><x:document xmlns:x="http://purl.oclc.org/ooxml/wordprocessingml/main"><x:body><x:p><x:sdt><x:sdtPr><x:tag x:val="provider_id"/></x:sdtPr><x:sdtContent><x:r><x:t>1-101641531</x:t></x:r></x:sdtContent></x:sdt></x:p></x:body></x:document>"#;
    let f = read(&Docx::new().part("word/document.xml", xml).custom("notice", "2026.1"));
    assert_eq!(f.text("provider_id"), Some("1-101641531"));
}

// ---------------------------------------------------------------------------------------------------
// Round trips through Postroom's own renderer, for every embedded form.

#[test]
fn every_embedded_form_round_trips_through_render_and_extract() {
    let catalog = Catalog::embedded().unwrap();
    assert!(!catalog.is_empty());
    for def in catalog.all() {
        let values = sample_values(def);
        let filled = render(def, Some(&values)).unwrap();
        let f = extract(&filled, &catalog, &DocxLimits::default()).unwrap();
        assert_eq!((f.form_id.as_str(), f.version.as_str()), (def.id.as_str(), def.version.as_str()));
        assert_eq!(f.identity_source, IdentitySource::CustomProperties);
        assert_eq!(values_of(&f), as_read(&values), "{} {}", def.id, def.version);
        assert!(f.values.values().all(|v| v.source == ValueSource::Tag), "{}", def.id);

        let blank = extract(&render(def, None).unwrap(), &catalog, &DocxLimits::default()).unwrap();
        assert!(blank.values.is_empty(), "{} blank: {:?}", def.id, blank.values);
    }
}

#[test]
fn every_embedded_form_still_reads_with_its_tags_and_properties_stripped() {
    let catalog = Catalog::embedded().unwrap();
    for def in catalog.all() {
        let values = sample_values(def);
        let stripped = strip_tags_and_properties(&render(def, Some(&values)).unwrap());
        let f = extract(&stripped, &catalog, &DocxLimits::default()).unwrap();
        assert_eq!(
            (f.form_id.as_str(), f.version.as_str(), f.identity_source),
            (def.id.as_str(), def.version.as_str(), IdentitySource::Footer)
        );
        assert_eq!(values_of(&f), as_read(&values), "{} {}", def.id, def.version);
        assert!(f.values.values().all(|v| v.source == ValueSource::LabelCell), "{}", def.id);
    }
}

/// Prints the time per extraction of each current form, filled and rendered by Postroom. The 0.2 ms
/// target (extraction plus validation) is for an optimised build on a quiet machine; the assertion is
/// only a regression guard. Run with `cargo test --release --test extract_hostile -- --ignored --nocapture`.
#[test]
#[ignore = "timing: meaningful only in a release build"]
fn extraction_time_of_filled_rendered_forms() {
    let catalog = Catalog::embedded().unwrap();
    for def in catalog.current_forms() {
        let bytes = render(def, Some(&sample_values(def))).unwrap();
        let rounds = 2000;
        let start = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(extract(std::hint::black_box(&bytes), &catalog, &DocxLimits::default()).unwrap());
        }
        let micros = start.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
        eprintln!("{:<28} {:>6} bytes  {micros:>7.1} µs per extraction", def.id, bytes.len());
        if !cfg!(debug_assertions) {
            assert!(micros < 1000.0, "{}: {micros:.1} µs", def.id);
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Identity.

#[test]
fn identity_from_the_footer_when_custom_properties_are_gone() {
    let docx = libreoffice_filled()
        .footer(r#"<w:r><w:t xml:space="preserve">Postroom form </w:t></w:r><w:r><w:t>notice</w:t></w:r><w:r><w:t xml:space="preserve"> version 2026.1</w:t></w:r>"#);
    let f = read(&docx);
    assert_eq!(
        (f.form_id.as_str(), f.version.as_str(), f.identity_source),
        ("notice", "2026.1", IdentitySource::Footer)
    );
}

#[test]
fn identity_from_the_title_uses_the_current_version() {
    let f = read(&libreoffice_filled().title("Notification  of DEATH"));
    assert_eq!(
        (f.form_id.as_str(), f.version.as_str(), f.identity_source),
        ("notice", "2026.2", IdentitySource::Title)
    );
    assert_eq!(f.text("provider_id"), Some("1-101641531"));
}

#[test]
fn an_unknown_version_is_kept_but_read_by_the_current_definition() {
    let docx = Docx::new()
        .body(&table(&[row("Your name", None, &p(&run("Sam Carer")))]))
        .custom("notice", "2027.5")
        .footer(&run("Postroom form notice version 2026.1"));
    let f = read(&docx);
    assert_eq!((f.version.as_str(), f.identity_source), ("2027.5", IdentitySource::CustomProperties));
    assert_eq!(f.text("notifier"), Some("Sam Carer"), "2027.5 is unknown, so 2026.2 (current) maps the fields");
}

#[test]
fn a_word_document_that_is_not_our_form_is_form_unknown() {
    let letter = Docx::new().body(&p(&run("Dear inspector, please see the attached."))).title("Letter");
    assert_eq!(code(&letter.bytes(), &DocxLimits::default()), "form:unknown");
    let foreign = Docx::new().body(&p(&run("x"))).custom("payroll", "1");
    let err = extract(&foreign.bytes(), &catalog(), &DocxLimits::default()).unwrap_err();
    assert_eq!(err, ExtractError::UnknownForm { found: Some("payroll".into()) });
}

// ---------------------------------------------------------------------------------------------------
// Hostile and unsupported files: each has its own code.

#[test]
fn not_word_files_are_type_not_word() {
    let limits = DocxLimits::default();
    assert_eq!(code(b"\x00\x01garbage\xff\xfe\x00", &limits), "type:not_word");
    assert_eq!(code(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", &limits), "type:not_word");
    assert_eq!(code(b"\x89PNG\r\n\x1a\n", &limits), "type:not_word");
    assert_eq!(code(b"Please find my notification below.", &limits), "type:not_word");
    assert_eq!(code(b"", &limits), "type:not_word");
    let err = extract(b"%PDF-1.4", &catalog(), &limits).unwrap_err();
    assert!(err.to_string().contains("PDF"), "{err}");
    assert_eq!(sniff(b"%PDF-1.4"), Err(ExtractError::NotWord { seen: "a PDF" }));
}

#[test]
fn ole_files_are_legacy_doc_or_encrypted() {
    let limits = DocxLimits::default();
    assert_eq!(code(&ole("WordDocument"), &limits), "type:legacy_doc");
    assert_eq!(code(&ole("EncryptedPackage"), &limits), "type:encrypted");
    assert_eq!(code(&ole("Workbook"), &limits), "type:not_word");
}

#[test]
fn macros_are_refused_by_part_or_by_content_type() {
    let limits = DocxLimits::default();
    let with_vba = rendered_filled().part("word/vbaProject.bin", "\u{1}binary");
    assert_eq!(code(&with_vba.bytes(), &limits), "type:macro");
    let mut docm = rendered_filled();
    docm.main_type = "application/vnd.ms-word.document.macroEnabled.main+xml";
    assert_eq!(code(&docm.bytes(), &limits), "type:macro");
}

#[test]
fn damaged_zips_are_corrupt_zip() {
    let limits = DocxLimits::default();
    let good = rendered_filled().bytes();
    assert_eq!(code(&good[..good.len() / 2], &limits), "type:corrupt_zip", "truncated");
    assert_eq!(code(&good[..10], &limits), "type:corrupt_zip", "truncated in the first header");

    // Flip bytes inside document.xml's compressed data (between its local header and the next one).
    let start = find(&good, b"word/document.xml").unwrap() + "word/document.xml".len();
    let mut flipped = good.clone();
    for b in &mut flipped[start + 40..start + 80] {
        *b ^= 0x5A;
    }
    assert_eq!(code(&flipped, &limits), "type:corrupt_zip");
}

#[test]
fn a_zip_bomb_is_size_zip_bomb() {
    // 60 MB of spaces inflate past the default 50 MiB cap (the declared size already gives it away).
    let spaces = " ".repeat(60_000_000);
    let bomb =
        Docx::new().part("word/document.xml", &format!("<w:document {NS}><w:body>{spaces}</w:body></w:document>"));
    let bytes = bomb.bytes();
    assert!(bytes.len() < 200_000, "{} bytes", bytes.len());
    assert_eq!(code(&bytes, &DocxLimits::default()), "size:zip_bomb");
}

#[test]
fn a_bomb_with_no_declared_sizes_is_stopped_while_inflating() {
    // Written as a stream, every entry has a data descriptor: no trustworthy total up front, so only
    // the capped read can stop it.
    let mut zip = zip::ZipWriter::new_stream(Vec::new());
    let opts = zip::write::SimpleFileOptions::default();
    zip.start_file("[Content_Types].xml", opts).unwrap();
    zip.write_all(
        format!(r#"<Types><Override PartName="/word/document.xml" ContentType="{MAIN_TYPE}"/></Types>"#).as_bytes(),
    )
    .unwrap();
    zip.start_file("word/document.xml", opts).unwrap();
    zip.write_all(format!("<w:document {NS}><w:body>").as_bytes()).unwrap();
    for _ in 0..300 {
        zip.write_all(&[b' '; 10_000]).unwrap();
    }
    zip.write_all(b"</w:body></w:document>").unwrap();
    let bytes = zip.finish().unwrap().into_inner();
    let limits = DocxLimits { max_unzipped_bytes: 1 << 20, ..DocxLimits::default() };
    assert_eq!(code(&bytes, &limits), "size:zip_bomb");
    // Under the default cap the same file is merely not a form.
    assert_eq!(code(&bytes, &DocxLimits::default()), "form:unknown");
}

#[test]
fn a_part_that_inflates_past_its_declared_size_is_refused() {
    let spaces = " ".repeat(3_000_000);
    let mut bytes = Docx::new()
        .part("word/document.xml", &format!("<w:document {NS}><w:body>{spaces}</w:body></w:document>"))
        .bytes();
    // Declare 100 bytes for every entry, in local and central headers alike: zip stops inflating at the
    // declared size, so the file reads as damaged long before memory grows.
    for (sig, offset) in [(b"PK\x03\x04", 22), (b"PK\x01\x02", 24)] {
        let mut at = 0;
        while let Some(pos) = find(&bytes[at..], sig) {
            bytes[at + pos + offset..at + pos + offset + 4].copy_from_slice(&100u32.to_le_bytes());
            at += pos + 4;
        }
    }
    assert_eq!(code(&bytes, &DocxLimits::default()), "type:corrupt_zip");
}

#[test]
fn too_many_entries_is_refused() {
    let mut docx = rendered_filled();
    for i in 0..600 {
        docx = docx.part(&format!("word/media/image{i}.png"), "x");
    }
    assert_eq!(code(&docx.bytes(), &DocxLimits::default()), "size:too_many_entries");
}

#[test]
fn deep_nesting_is_too_deep_without_recursing() {
    let depth = 3000;
    let nested =
        format!("{}{}{}", "<w:tbl><w:tr><w:tc>".repeat(depth), p(&run("deep")), "</w:tc></w:tr></w:tbl>".repeat(depth));
    let docx = Docx::new().body(&nested).custom("notice", "2026.1");
    let bytes = docx.bytes();
    assert_eq!(code(&bytes, &DocxLimits::default()), "size:too_deep");
    // With the cap raised, the same file reads (no recursion, no stack overflow).
    let f = extract(&bytes, &catalog(), &DocxLimits { max_xml_depth: 20_000, ..DocxLimits::default() }).unwrap();
    assert_eq!(f.form_id, "notice");
}

#[test]
fn malformed_xml_is_malformed_xml() {
    let limits = DocxLimits::default();
    let unclosed = Docx::new()
        .part("word/document.xml", &format!("<w:document {NS}><w:body><w:p><w:r><w:t>x</w:t></w:r>"))
        .custom("notice", "2026.1");
    assert_eq!(code(&unclosed.bytes(), &limits), "type:malformed_xml");
    let mismatched =
        Docx::new().part("word/document.xml", &format!("<w:document {NS}><w:body><w:p></w:r></w:body></w:document>"));
    assert_eq!(code(&mismatched.bytes(), &limits), "type:malformed_xml");
    let bad_utf8 = Docx {
        parts: vec![("word/document.xml".into(), b"<w:document>\xC3\x28</w:document>".to_vec())],
        main_type: MAIN_TYPE,
    };
    assert_eq!(code(&bad_utf8.bytes(), &limits), "type:malformed_xml");
    let bad_custom = rendered_filled().part("docProps/custom.xml", "<Properties><property name=\"postroom.form\">");
    assert_eq!(code(&bad_custom.bytes(), &limits), "type:malformed_xml");
}

#[test]
fn a_zip_without_a_word_body_is_no_document() {
    let xlsx = Docx {
        parts: vec![("xl/workbook.xml".into(), b"<workbook/>".to_vec())],
        main_type: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
    };
    assert_eq!(code(&xlsx.bytes(), &DocxLimits::default()), "type:no_document");
    let err = extract(&xlsx.bytes(), &catalog(), &DocxLimits::default()).unwrap_err();
    assert!(err.to_string().contains("Excel"), "{err}");
    let odt = Docx {
        parts: vec![
            ("mimetype".into(), b"application/vnd.oasis.opendocument.text".to_vec()),
            ("content.xml".into(), b"<office:document-content/>".to_vec()),
        ],
        main_type: MAIN_TYPE,
    };
    assert_eq!(code(&odt.bytes(), &DocxLimits::default()), "type:no_document");
}

#[test]
fn pathological_text_stays_linear() {
    // Long runs of the characters the fallbacks look for: colons (label lines), the stamp's prefix
    // (identity), box marks (label cells). Each must be read in linear time.
    let colons = ":".repeat(400_000);
    let stamps = "Postroom form".repeat(40_000);
    let marks = "\u{2612}X[x]".repeat(40_000);
    let body = [p(&run(&colons)), p(&run(&stamps)), table(&[row("Types of abuse", None, &p(&run(&marks)))])].concat();
    let docx = Docx::new().body(&body).title("Notification of death");
    let start = Instant::now();
    let f = read(&docx);
    assert_eq!(f.identity_source, IdentitySource::Title);
    assert!(f.get("abuse").is_none());
    assert!(start.elapsed().as_secs_f64() < 5.0, "{:?}", start.elapsed());
}

#[test]
fn no_single_byte_flip_makes_the_reader_panic() {
    // A panic would be caught by the backstop and reported as type:unreadable; none must happen.
    let good = Docx::new()
        .body(&table(&[row("Provider ID", None, &p(&text_control("provider_id", "Provider ID", Some("1-1"), false)))]))
        .custom("notice", "2026.1")
        .bytes();
    for i in 0..good.len() {
        for mask in [0x01u8, 0x80, 0xFF] {
            let mut bytes = good.clone();
            bytes[i] ^= mask;
            if let Err(e) = extract(&bytes, &catalog(), &DocxLimits::default()) {
                assert_ne!(e.reason_code(), "type:unreadable", "flip {mask:#x} at {i}: {e}");
            }
        }
    }
}
