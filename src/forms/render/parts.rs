//! The package parts around the body: content types, relationships, styles, settings, footer and the
//! three property parts. Everything a reader uses to recognise a form without its tags lives here too: the
//! custom properties `postroom.form`/`postroom.version`, the core title and subject, and the footer stamp.

use super::xml::Xml;
use crate::forms::FormDef;

/// WordprocessingML namespaces declared on every `w:` root; `w14` (checkboxes) is ignorable for readers
/// that predate Word 2010.
pub const W_NAMESPACES: &str = concat!(
    " xmlns:mc=\"http://schemas.openxmlformats.org/markup-compatibility/2006\"",
    " xmlns:r=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships\"",
    " xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"",
    " xmlns:w14=\"http://schemas.microsoft.com/office/word/2010/wordml\"",
    " mc:Ignorable=\"w14\"",
);

/// Relationship ids used by `word/document.xml`.
pub const FOOTER_RID: &str = "rId3";

pub const CONTENT_TYPES: &str = concat!(
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n",
    "<Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">",
    "<Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>",
    "<Default Extension=\"xml\" ContentType=\"application/xml\"/>",
    "<Override PartName=\"/word/document.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml\"/>",
    "<Override PartName=\"/word/styles.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.wordprocessingml.styles+xml\"/>",
    "<Override PartName=\"/word/settings.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.wordprocessingml.settings+xml\"/>",
    "<Override PartName=\"/word/footer1.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.wordprocessingml.footer+xml\"/>",
    "<Override PartName=\"/docProps/core.xml\" ContentType=\"application/vnd.openxmlformats-package.core-properties+xml\"/>",
    "<Override PartName=\"/docProps/app.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.extended-properties+xml\"/>",
    "<Override PartName=\"/docProps/custom.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.custom-properties+xml\"/>",
    "</Types>",
);

pub const PACKAGE_RELS: &str = concat!(
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n",
    "<Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">",
    "<Relationship Id=\"rId1\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument\" Target=\"word/document.xml\"/>",
    "<Relationship Id=\"rId2\" Type=\"http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties\" Target=\"docProps/core.xml\"/>",
    "<Relationship Id=\"rId3\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/extended-properties\" Target=\"docProps/app.xml\"/>",
    "<Relationship Id=\"rId4\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/custom-properties\" Target=\"docProps/custom.xml\"/>",
    "</Relationships>",
);

pub const DOCUMENT_RELS: &str = concat!(
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n",
    "<Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">",
    "<Relationship Id=\"rId1\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles\" Target=\"styles.xml\"/>",
    "<Relationship Id=\"rId2\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/settings\" Target=\"settings.xml\"/>",
    "<Relationship Id=\"rId3\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/footer\" Target=\"footer1.xml\"/>",
    "</Relationships>",
);

/// `edit="forms"` lets Word fill the controls and nothing else; compatibility mode 15 keeps Word out of
/// compatibility mode, where `w14` checkboxes would not tick.
pub fn settings() -> String {
    let mut x = Xml::part(1024);
    x.raw("<w:settings")
        .raw(W_NAMESPACES)
        .raw(">")
        .raw("<w:zoom w:percent=\"100\"/>")
        .raw("<w:documentProtection w:edit=\"forms\" w:enforcement=\"1\"/>")
        .raw("<w:defaultTabStop w:val=\"720\"/>")
        .raw("<w:characterSpacingControl w:val=\"doNotCompress\"/>")
        .raw("<w:compat>")
        .raw("<w:compatSetting w:name=\"compatibilityMode\" w:uri=\"http://schemas.microsoft.com/office/word\" w:val=\"15\"/>")
        .raw("<w:compatSetting w:name=\"overrideTableStyleFontSizeAndJustification\" w:uri=\"http://schemas.microsoft.com/office/word\" w:val=\"1\"/>")
        .raw("<w:compatSetting w:name=\"enableOpenTypeFeatures\" w:uri=\"http://schemas.microsoft.com/office/word\" w:val=\"1\"/>")
        .raw("<w:compatSetting w:name=\"doNotFlipMirrorIndents\" w:uri=\"http://schemas.microsoft.com/office/word\" w:val=\"1\"/>")
        .raw("</w:compat>")
        .raw("<w:themeFontLang w:val=\"en-GB\"/>")
        .raw("<w:decimalSymbol w:val=\".\"/>")
        .raw("<w:listSeparator w:val=\",\"/>")
        .raw("</w:settings>");
    x.into_string()
}

/// Table colours: mid grey borders, a light grey label column.
pub const BORDER_COLOUR: &str = "6F777B";
pub const LABEL_FILL: &str = "F3F2F1";

/// Styles the body refers to. Built-in ids (`Title`, `Heading1`, `TableGrid`, `PlaceholderText`,
/// `Footer`) so Word and LibreOffice map them onto their own.
pub fn styles() -> String {
    let mut x = Xml::part(6 * 1024);
    let border =
        |side: &str| format!("<w:{side} w:val=\"single\" w:sz=\"4\" w:space=\"0\" w:color=\"{BORDER_COLOUR}\"/>");
    let borders: String = ["top", "left", "bottom", "right", "insideH", "insideV"].iter().map(|s| border(s)).collect();
    x.raw("<w:styles").raw(W_NAMESPACES).raw(">");
    x.raw(concat!(
        "<w:docDefaults><w:rPrDefault><w:rPr>",
        "<w:rFonts w:ascii=\"Arial\" w:eastAsia=\"Arial\" w:hAnsi=\"Arial\" w:cs=\"Arial\"/>",
        "<w:sz w:val=\"22\"/><w:szCs w:val=\"22\"/><w:lang w:val=\"en-GB\" w:eastAsia=\"en-GB\" w:bidi=\"ar-SA\"/>",
        "</w:rPr></w:rPrDefault>",
        "<w:pPrDefault><w:pPr><w:spacing w:after=\"120\" w:line=\"264\" w:lineRule=\"auto\"/></w:pPr></w:pPrDefault>",
        "</w:docDefaults>",
        "<w:style w:type=\"paragraph\" w:default=\"1\" w:styleId=\"Normal\"><w:name w:val=\"Normal\"/><w:qFormat/></w:style>",
        "<w:style w:type=\"character\" w:default=\"1\" w:styleId=\"DefaultParagraphFont\">",
        "<w:name w:val=\"Default Paragraph Font\"/><w:uiPriority w:val=\"1\"/><w:semiHidden/><w:unhideWhenUsed/></w:style>",
        "<w:style w:type=\"table\" w:default=\"1\" w:styleId=\"TableNormal\"><w:name w:val=\"Normal Table\"/>",
        "<w:uiPriority w:val=\"99\"/><w:semiHidden/><w:unhideWhenUsed/><w:tblPr><w:tblInd w:w=\"0\" w:type=\"dxa\"/>",
        "<w:tblCellMar><w:top w:w=\"0\" w:type=\"dxa\"/><w:left w:w=\"108\" w:type=\"dxa\"/>",
        "<w:bottom w:w=\"0\" w:type=\"dxa\"/><w:right w:w=\"108\" w:type=\"dxa\"/></w:tblCellMar></w:tblPr></w:style>",
        "<w:style w:type=\"numbering\" w:default=\"1\" w:styleId=\"NoList\"><w:name w:val=\"No List\"/>",
        "<w:uiPriority w:val=\"99\"/><w:semiHidden/><w:unhideWhenUsed/></w:style>",
    ));
    x.raw("<w:style w:type=\"table\" w:styleId=\"TableGrid\"><w:name w:val=\"Table Grid\"/>")
        .raw("<w:basedOn w:val=\"TableNormal\"/><w:uiPriority w:val=\"39\"/>")
        .raw("<w:pPr><w:spacing w:after=\"0\" w:line=\"240\" w:lineRule=\"auto\"/></w:pPr>")
        .raw("<w:tblPr><w:tblBorders>")
        .raw(&borders)
        .raw("</w:tblBorders></w:tblPr></w:style>");
    x.raw(concat!(
        "<w:style w:type=\"paragraph\" w:styleId=\"Title\"><w:name w:val=\"Title\"/><w:basedOn w:val=\"Normal\"/>",
        "<w:next w:val=\"Normal\"/><w:uiPriority w:val=\"10\"/><w:qFormat/>",
        "<w:pPr><w:spacing w:after=\"120\" w:line=\"240\" w:lineRule=\"auto\"/></w:pPr>",
        "<w:rPr><w:b/><w:bCs/><w:kern w:val=\"28\"/><w:sz w:val=\"40\"/><w:szCs w:val=\"40\"/></w:rPr></w:style>",
        "<w:style w:type=\"paragraph\" w:styleId=\"Heading1\"><w:name w:val=\"heading 1\"/><w:basedOn w:val=\"Normal\"/>",
        "<w:next w:val=\"Normal\"/><w:uiPriority w:val=\"9\"/><w:qFormat/>",
        "<w:pPr><w:keepNext/><w:keepLines/><w:spacing w:before=\"360\" w:after=\"120\"/><w:outlineLvl w:val=\"0\"/></w:pPr>",
        "<w:rPr><w:b/><w:bCs/><w:sz w:val=\"30\"/><w:szCs w:val=\"30\"/></w:rPr></w:style>",
        "<w:style w:type=\"paragraph\" w:customStyle=\"1\" w:styleId=\"Regulation\"><w:name w:val=\"Regulation\"/>",
        "<w:basedOn w:val=\"Normal\"/><w:next w:val=\"Normal\"/><w:pPr><w:spacing w:after=\"240\"/></w:pPr>",
        "<w:rPr><w:color w:val=\"505A5F\"/></w:rPr></w:style>",
        "<w:style w:type=\"paragraph\" w:customStyle=\"1\" w:styleId=\"Inset\"><w:name w:val=\"Inset\"/>",
        "<w:basedOn w:val=\"Normal\"/><w:pPr><w:pBdr><w:left w:val=\"single\" w:sz=\"36\" w:space=\"8\" w:color=\"B1B4B6\"/>",
        "</w:pBdr><w:spacing w:before=\"120\" w:after=\"240\"/><w:ind w:left=\"227\"/></w:pPr></w:style>",
        "<w:style w:type=\"paragraph\" w:customStyle=\"1\" w:styleId=\"SectionHelp\"><w:name w:val=\"Section help\"/>",
        "<w:basedOn w:val=\"Normal\"/><w:pPr><w:keepNext/></w:pPr>",
        "<w:rPr><w:color w:val=\"505A5F\"/></w:rPr></w:style>",
        "<w:style w:type=\"paragraph\" w:customStyle=\"1\" w:styleId=\"FieldLabel\"><w:name w:val=\"Field label\"/>",
        "<w:basedOn w:val=\"Normal\"/><w:pPr><w:spacing w:before=\"60\" w:after=\"60\"/></w:pPr>",
        "<w:rPr><w:b/><w:bCs/></w:rPr></w:style>",
        "<w:style w:type=\"paragraph\" w:customStyle=\"1\" w:styleId=\"FieldHelp\"><w:name w:val=\"Field help\"/>",
        "<w:basedOn w:val=\"Normal\"/><w:pPr><w:spacing w:after=\"60\"/></w:pPr>",
        "<w:rPr><w:color w:val=\"505A5F\"/><w:sz w:val=\"18\"/><w:szCs w:val=\"18\"/></w:rPr></w:style>",
        "<w:style w:type=\"paragraph\" w:customStyle=\"1\" w:styleId=\"FieldValue\"><w:name w:val=\"Field value\"/>",
        "<w:basedOn w:val=\"Normal\"/><w:pPr><w:spacing w:before=\"60\" w:after=\"60\"/></w:pPr></w:style>",
        "<w:style w:type=\"paragraph\" w:customStyle=\"1\" w:styleId=\"FieldChoice\"><w:name w:val=\"Field choice\"/>",
        "<w:basedOn w:val=\"Normal\"/><w:pPr><w:spacing w:before=\"40\" w:after=\"40\"/><w:ind w:left=\"284\" w:hanging=\"284\"/></w:pPr></w:style>",
        "<w:style w:type=\"character\" w:styleId=\"PlaceholderText\"><w:name w:val=\"Placeholder Text\"/>",
        "<w:basedOn w:val=\"DefaultParagraphFont\"/><w:uiPriority w:val=\"99\"/><w:semiHidden/>",
        "<w:rPr><w:color w:val=\"808080\"/></w:rPr></w:style>",
        "<w:style w:type=\"character\" w:customStyle=\"1\" w:styleId=\"RequiredMark\"><w:name w:val=\"Required mark\"/>",
        "<w:basedOn w:val=\"DefaultParagraphFont\"/><w:rPr><w:b/><w:bCs/><w:color w:val=\"D4351C\"/></w:rPr></w:style>",
        "<w:style w:type=\"paragraph\" w:styleId=\"Footer\"><w:name w:val=\"footer\"/><w:basedOn w:val=\"Normal\"/>",
        "<w:uiPriority w:val=\"99\"/><w:unhideWhenUsed/><w:pPr><w:spacing w:after=\"0\"/></w:pPr>",
        "<w:rPr><w:color w:val=\"505A5F\"/><w:sz w:val=\"16\"/><w:szCs w:val=\"16\"/></w:rPr></w:style>",
    ));
    x.raw("</w:styles>");
    x.into_string()
}

/// The footer: one paragraph holding the stamp and nothing else, so the reader finds it verbatim.
pub fn footer(def: &FormDef) -> String {
    let mut x = Xml::part(1024);
    x.raw("<w:ftr").raw(W_NAMESPACES).raw(">");
    x.raw("<w:p><w:pPr><w:pStyle w:val=\"Footer\"/></w:pPr><w:r>").element("w:t", &def.stamp()).raw("</w:r></w:p>");
    x.raw("</w:ftr>");
    x.into_string()
}

/// Core properties: title and stamp as subject. No dates, so a blank renders to the same bytes every time.
pub fn core(def: &FormDef) -> String {
    let mut x = Xml::part(1024);
    x.raw(concat!(
        "<cp:coreProperties xmlns:cp=\"http://schemas.openxmlformats.org/package/2006/metadata/core-properties\"",
        " xmlns:dc=\"http://purl.org/dc/elements/1.1/\" xmlns:dcterms=\"http://purl.org/dc/terms/\"",
        " xmlns:dcmitype=\"http://purl.org/dc/dcmitype/\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">",
    ));
    x.element("dc:title", &def.title)
        .element("dc:subject", &def.stamp())
        .element("dc:creator", "Postroom")
        .element("cp:keywords", &format!("postroom {} {}", def.id, def.version))
        .element("dc:description", &def.regulation)
        .element("cp:lastModifiedBy", "Postroom")
        .element("cp:revision", "1");
    x.raw("</cp:coreProperties>");
    x.into_string()
}

pub fn app() -> String {
    let mut x = Xml::part(512);
    x.raw(concat!(
        "<Properties xmlns=\"http://schemas.openxmlformats.org/officeDocument/2006/extended-properties\"",
        " xmlns:vt=\"http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes\">",
        "<Application>Postroom</Application><DocSecurity>0</DocSecurity><Company>Postroom</Company>",
        "</Properties>",
    ));
    x.into_string()
}

/// Custom properties: the form's identity, which survives every round trip tested (notes/word-files.md).
pub fn custom(def: &FormDef) -> String {
    const FMTID: &str = "{D5CDD505-2E9C-101B-9397-08002B2CF9AE}";
    let mut x = Xml::part(768);
    x.raw(concat!(
        "<Properties xmlns=\"http://schemas.openxmlformats.org/officeDocument/2006/custom-properties\"",
        " xmlns:vt=\"http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes\">",
    ));
    for (pid, name, value) in [("2", "postroom.form", def.id.as_str()), ("3", "postroom.version", def.version.as_str())]
    {
        x.open("property", &[("fmtid", FMTID), ("pid", pid), ("name", name)])
            .element("vt:lpwstr", value)
            .close("property");
    }
    x.raw("</Properties>");
    x.into_string()
}
