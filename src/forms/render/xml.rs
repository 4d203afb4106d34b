//! A minimal XML writer for the renderer: elements are pushed as text, and every piece of text that comes
//! from a form definition or a value goes through [`escape_into`], which also drops characters XML 1.0 cannot
//! carry (a stray control character in a value must not make Word refuse the file).

/// The XML declaration every part starts with.
pub const DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n";

/// Text being built into one XML part.
#[derive(Debug, Default)]
pub struct Xml {
    out: String,
}

impl Xml {
    /// A part that starts with the XML declaration.
    pub fn part(capacity: usize) -> Xml {
        let mut out = String::with_capacity(capacity);
        out.push_str(DECLARATION);
        Xml { out }
    }

    /// Markup written as is; only ever called with literals from this module tree.
    pub fn raw(&mut self, markup: &str) -> &mut Self {
        self.out.push_str(markup);
        self
    }

    /// `<name a="v" ...>` with escaped attribute values.
    pub fn open(&mut self, name: &str, attrs: &[(&str, &str)]) -> &mut Self {
        self.start(name, attrs);
        self.out.push('>');
        self
    }

    /// `<name a="v" .../>` with escaped attribute values.
    pub fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) -> &mut Self {
        self.start(name, attrs);
        self.out.push_str("/>");
        self
    }

    pub fn close(&mut self, name: &str) -> &mut Self {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
        self
    }

    /// Escaped character data.
    pub fn text(&mut self, text: &str) -> &mut Self {
        escape_into(&mut self.out, text);
        self
    }

    /// `<name>text</name>` with the text escaped.
    pub fn element(&mut self, name: &str, text: &str) -> &mut Self {
        self.open(name, &[]).text(text).close(name)
    }

    pub fn into_string(self) -> String {
        self.out
    }

    fn start(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.out.push('<');
        self.out.push_str(name);
        for (k, v) in attrs {
            self.out.push(' ');
            self.out.push_str(k);
            self.out.push_str("=\"");
            escape_into(&mut self.out, v);
            self.out.push('"');
        }
    }
}

/// Appends `text` escaped for use in character data or a double-quoted attribute, dropping characters
/// that are not allowed in XML 1.0 (controls other than tab and line breaks, U+FFFE, U+FFFF).
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_drops_characters_xml_cannot_hold() {
        let mut x = Xml::default();
        x.open("a", &[("v", "\"x\" & 'y' <z>")]).text("A & B <c> \u{1}\u{FFFF}ok\tnow").close("a");
        assert_eq!(
            x.into_string(),
            "<a v=\"&quot;x&quot; &amp; &apos;y&apos; &lt;z&gt;\">A &amp; B &lt;c&gt; ok\tnow</a>"
        );
    }
}
