//! A small, bounds-checked reader for TNEF (`winmail.dat`, `application/ms-tnef`), the wrapper Outlook
//! puts around a message's attachments when it sends "rich text" mail. Without it a form sent that way
//! is invisible (anchors.md lesson 8; of the anchors only osTicket decodes TNEF). Only attachments are
//! read: names and bytes. The RTF body, recipients and other properties are skipped. Every read is
//! checked against the input length, nothing recurses, and a malformed stream stops the walk with what
//! was read so far.

/// `0x223E9F78`, little-endian, opens every TNEF stream.
const SIGNATURE: u32 = 0x223E_9F78;

// Attribute IDs (low 16 bits; the high 16 bits are the attribute's type and not needed here).
const ATT_ATTACH_REND_DATA: u16 = 0x9002;
const ATT_ATTACH_TITLE: u16 = 0x8010;
const ATT_ATTACH_DATA: u16 = 0x800F;
const ATT_ATTACHMENT: u16 = 0x9005;
const ATT_OEM_CODEPAGE: u16 = 0x9007;

// MAPI property IDs and types read from an attachment's property list.
const PR_ATTACH_DATA: u16 = 0x3701;
const PR_ATTACH_FILENAME: u16 = 0x3704;
const PR_ATTACH_LONG_FILENAME: u16 = 0x3707;
const PR_ATTACH_MIME_TAG: u16 = 0x370E;
const PR_DISPLAY_NAME: u16 = 0x3001;
const PT_STRING8: u16 = 0x001E;
const PT_UNICODE: u16 = 0x001F;
const PT_BINARY: u16 = 0x0102;
const PT_OBJECT: u16 = 0x000D;
const MV_FLAG: u16 = 0x1000;

/// A property list never needs more entries than this; a bigger count is a hostile stream.
const MAX_PROPERTIES: u32 = 10_000;

/// One attachment found inside a TNEF stream; `data` borrows from the stream.
#[derive(Debug)]
pub(super) struct TnefAttachment<'a> {
    pub name: Option<String>,
    pub media_type: Option<String>,
    pub data: &'a [u8],
}

#[derive(Default)]
struct Building<'a> {
    title: Option<String>,
    long_name: Option<String>,
    short_name: Option<String>,
    display_name: Option<String>,
    media_type: Option<String>,
    data: Option<&'a [u8]>,
    property_data: Option<&'a [u8]>,
}

impl<'a> Building<'a> {
    fn finish(self) -> Option<TnefAttachment<'a>> {
        let data = self.data.or(self.property_data)?;
        let name = [self.long_name, self.title, self.short_name, self.display_name]
            .into_iter()
            .flatten()
            .find(|n| !n.trim().is_empty());
        Some(TnefAttachment { name, media_type: self.media_type.filter(|m| !m.trim().is_empty()), data })
    }
}

/// Whether these bytes start like a TNEF stream (some clients label it `application/octet-stream`).
pub(super) fn is_tnef(bytes: &[u8]) -> bool {
    Reader::new(bytes).u32() == Some(SIGNATURE)
}

/// The attachments inside a TNEF stream, in order; empty when it is not TNEF or holds none.
pub(super) fn attachments(bytes: &[u8]) -> Vec<TnefAttachment<'_>> {
    let mut reader = Reader::new(bytes);
    if reader.u32() != Some(SIGNATURE) || reader.u16().is_none() {
        return Vec::new();
    }
    let mut found = Vec::new();
    let mut current: Option<Building<'_>> = None;
    let mut codepage = 1252;
    while let Some(attribute) = reader.attribute() {
        match attribute.id {
            ATT_OEM_CODEPAGE => {
                if let Some(cp) = Reader::new(attribute.data).u32() {
                    codepage = cp;
                }
            }
            ATT_ATTACH_REND_DATA => {
                if let Some(done) = current.take().and_then(Building::finish) {
                    found.push(done);
                }
                current = Some(Building::default());
            }
            ATT_ATTACH_TITLE => {
                current.get_or_insert_default().title = Some(string8(attribute.data, codepage));
            }
            ATT_ATTACH_DATA => {
                current.get_or_insert_default().data = Some(attribute.data);
            }
            ATT_ATTACHMENT => {
                read_properties(attribute.data, codepage, current.get_or_insert_default());
            }
            _ => {}
        }
    }
    if let Some(done) = current.take().and_then(Building::finish) {
        found.push(done);
    }
    found
}

struct Attribute<'a> {
    id: u16,
    data: &'a [u8],
}

/// Reads an attachment's MAPI property list (MS-OXTNEF 2.1.3.4), keeping names, media type and data.
fn read_properties<'a>(bytes: &'a [u8], codepage: u32, into: &mut Building<'a>) {
    let mut reader = Reader::new(bytes);
    let Some(count) = reader.u32() else { return };
    for _ in 0..count.min(MAX_PROPERTIES) {
        let (Some(kind), Some(id)) = (reader.u16(), reader.u16()) else {
            return;
        };
        if id >= 0x8000 {
            // A named property: GUID, then a numeric ID or a UTF-16 name.
            if reader.take(16).is_none() {
                return;
            }
            match reader.u32() {
                Some(0) => {
                    if reader.u32().is_none() {
                        return;
                    }
                }
                Some(1) => {
                    let Some(len) = reader.u32() else { return };
                    if reader.take_padded(len).is_none() {
                        return;
                    }
                }
                _ => return,
            }
        }
        let base = kind & !MV_FLAG;
        let variable = matches!(base, PT_STRING8 | PT_UNICODE | PT_BINARY | PT_OBJECT);
        let values = if kind & MV_FLAG != 0 || variable {
            match reader.u32() {
                Some(n) if n <= MAX_PROPERTIES => n,
                _ => return,
            }
        } else {
            1
        };
        for index in 0..values {
            if variable {
                let Some(len) = reader.u32() else { return };
                let Some(value) = reader.take_padded(len) else {
                    return;
                };
                if index == 0 {
                    keep_property(id, base, value, codepage, into);
                }
            } else {
                let Some(size) = fixed_size(base) else { return };
                if reader.take(size).is_none() {
                    return;
                }
            }
        }
    }
}

fn keep_property<'a>(id: u16, kind: u16, value: &'a [u8], codepage: u32, into: &mut Building<'a>) {
    let text = || match kind {
        PT_UNICODE => Some(utf16(value)),
        PT_STRING8 => Some(string8(value, codepage)),
        _ => None,
    };
    match id {
        PR_ATTACH_LONG_FILENAME => into.long_name = text(),
        PR_ATTACH_FILENAME => into.short_name = text(),
        PR_DISPLAY_NAME => into.display_name = text(),
        PR_ATTACH_MIME_TAG => into.media_type = text().map(|t| t.trim().to_ascii_lowercase()),
        PR_ATTACH_DATA => {
            into.property_data = match kind {
                PT_BINARY => Some(value),
                // An embedded object starts with the 16-byte interface ID.
                PT_OBJECT => value.get(16..),
                _ => None,
            }
        }
        _ => {}
    }
}

/// Bytes one value of a fixed-size property type takes, padded to 4 (MS-OXTNEF 2.1.3.4).
fn fixed_size(kind: u16) -> Option<usize> {
    match kind {
        0x0001 | 0x0002 | 0x0003 | 0x0004 | 0x000A | 0x000B => Some(4),
        0x0005 | 0x0006 | 0x0007 | 0x0014 | 0x0040 => Some(8),
        0x0048 => Some(16),
        _ => None,
    }
}

/// An 8-bit string in the sender's code page: UTF-8 for 65001, Windows-1252 otherwise (the code page
/// of nearly every English and Western European Outlook), up to the first NUL.
fn string8(bytes: &[u8], codepage: u32) -> String {
    let bytes = bytes.split(|b| *b == 0).next().unwrap_or(&[]);
    if codepage == 65001
        && let Ok(text) = std::str::from_utf8(bytes)
    {
        return text.to_string();
    }
    bytes.iter().map(|b| windows_1252(*b)).collect()
}

fn utf16(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .take_while(|unit| *unit != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// Windows-1252 differs from Latin-1 only in 0x80..=0x9F.
fn windows_1252(byte: u8) -> char {
    const HIGH: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž', '\u{8f}', '\u{90}', '‘',
        '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}', 'ž', 'Ÿ',
    ];
    match byte {
        0x80..=0x9F => HIGH[usize::from(byte - 0x80)],
        _ => char::from(byte),
    }
}

/// A cursor that never reads past the end: every read returns `None` instead.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(len)?;
        let slice = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }

    /// A value of `len` bytes followed by padding to a multiple of 4.
    fn take_padded(&mut self, len: u32) -> Option<&'a [u8]> {
        let len = usize::try_from(len).ok()?;
        let value = self.take(len)?;
        let padding = (4 - len % 4) % 4;
        // The last value may omit its padding.
        let _ = self.take(padding.min(self.bytes.len().saturating_sub(self.at)));
        Some(value)
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// One attribute: level (1 byte), ID (4), length (4), data, checksum (2).
    fn attribute(&mut self) -> Option<Attribute<'a>> {
        let _level = self.take(1)?;
        let id = self.u32()?;
        let len = usize::try_from(self.u32()?).ok()?;
        let data = self.take(len)?;
        let _checksum = self.u16()?;
        Some(Attribute { id: (id & 0xFFFF) as u16, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_tnef_gives_nothing() {
        assert!(attachments(b"PK\x03\x04 not tnef").is_empty());
        assert!(attachments(&[]).is_empty());
        assert!(!is_tnef(b"\x78\x9f"));
    }

    #[test]
    fn truncated_stream_keeps_what_was_read() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&SIGNATURE.to_le_bytes());
        bytes.extend_from_slice(&0x1234u16.to_le_bytes());
        for (id, data) in
            [(0x0006_9002u32, &b"rend"[..]), (0x0001_8010, b"FORM.DOCX\0"), (0x0006_800F, b"PK\x03\x04data")]
        {
            bytes.push(2);
            bytes.extend_from_slice(&id.to_le_bytes());
            bytes.extend_from_slice(&(data.len() as u32).to_le_bytes());
            bytes.extend_from_slice(data);
            bytes.extend_from_slice(&0u16.to_le_bytes());
        }
        // A second attribute claiming more bytes than remain.
        bytes.push(2);
        bytes.extend_from_slice(&0x0006_9005u32.to_le_bytes());
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        let found = attachments(&bytes);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name.as_deref(), Some("FORM.DOCX"));
        assert_eq!(found[0].data, b"PK\x03\x04data");
    }

    #[test]
    fn windows_1252_names() {
        assert_eq!(string8(b"Notifica\xe7\xe3o \x96 \x80.docx\0junk", 1252), "Notificação – €.docx");
        assert_eq!(string8("Notificação.docx".as_bytes(), 65001), "Notificação.docx");
    }
}
