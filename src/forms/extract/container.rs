//! The outer shell of an attachment: what kind of file it is (by its first bytes, never by its name), and
//! for a .docx the zip package, opened under the [`DocxLimits`] so that a hostile file costs bounded memory.
//! Only the few parts the reader needs are ever inflated, each through `take()` against one shared budget,
//! because a zip's declared sizes are whatever its author wrote.

use std::io::{Cursor, Read};

use flate2::{Decompress, FlushDecompress, Status};
use zip::result::ZipError;
use zip::{CompressionMethod, ZipArchive};

use super::{ExtractError, xml};
use crate::forms::DocxLimits;

const OLE_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

/// Classifies an attachment by its first bytes: `Ok` for a zip (possibly a .docx), an error naming what
/// it is otherwise. Cheap enough to run before deciding whether an attachment is a form at all.
pub fn sniff(bytes: &[u8]) -> Result<(), ExtractError> {
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") || bytes.starts_with(b"PK\x07\x08") {
        return Ok(());
    }
    if bytes.starts_with(OLE_MAGIC) {
        return Err(classify_ole(bytes));
    }
    Err(ExtractError::NotWord { seen: describe(bytes) })
}

/// An OLE compound file is a Word 97-2003 document, a password-protected .docx (Office wraps the
/// encrypted package in OLE), or some other old Office file.
fn classify_ole(bytes: &[u8]) -> ExtractError {
    if has_ole_stream(bytes, "EncryptedPackage") {
        ExtractError::Encrypted
    } else if has_ole_stream(bytes, "WordDocument") {
        ExtractError::LegacyDoc
    } else {
        ExtractError::NotWord { seen: "an old-format Office file that is not a Word document" }
    }
}

/// Looks for a directory entry named `name`. Directory entries are 128 bytes, start with the UTF-16LE
/// name and always sit at a multiple of 128 in the file (sectors are 512 or 4096 bytes after a 512-byte
/// header), so checking only those offsets is both cheap and immune to the name appearing in text.
fn has_ole_stream(bytes: &[u8], name: &str) -> bool {
    let mut pattern = Vec::with_capacity(name.len() * 2 + 2);
    for unit in name.encode_utf16() {
        pattern.extend_from_slice(&unit.to_le_bytes());
    }
    pattern.extend_from_slice(&[0, 0]);
    let name_len = u16::try_from(pattern.len()).unwrap_or(u16::MAX).to_le_bytes();
    bytes.chunks_exact(128).skip(4).any(|entry| entry.starts_with(&pattern) && entry.get(64..66) == Some(&name_len[..]))
}

/// A provider-readable description of a file that is not Word, for the error message.
fn describe(bytes: &[u8]) -> &'static str {
    let starts = |m: &[u8]| bytes.starts_with(m);
    if bytes.is_empty() {
        "an empty file"
    } else if starts(b"%PDF") {
        "a PDF"
    } else if starts(b"\x89PNG")
        || starts(&[0xFF, 0xD8, 0xFF])
        || starts(b"GIF8")
        || starts(b"II*\0")
        || starts(b"MM\0*")
    {
        "a picture"
    } else if starts(b"{\\rtf") {
        "an RTF document"
    } else if starts(b"Rar!") || starts(b"7z\xBC\xAF") || starts(&[0x1F, 0x8B]) {
        "a compressed archive"
    } else if bytes.iter().take(512).all(|b| b.is_ascii_whitespace() || *b >= 0x20) {
        let head = String::from_utf8_lossy(bytes.get(..512).unwrap_or(bytes)).to_ascii_lowercase();
        let head = head.trim_start_matches('\u{feff}').trim_start();
        if head.starts_with('<') || head.starts_with("mime-version") {
            "a web page or XML file"
        } else {
            "a plain text file"
        }
    } else {
        "a file of unknown type"
    }
}

/// An opened .docx: the zip, its part names, and what is left of the inflation budget.
pub(super) struct Package<'a> {
    bytes: &'a [u8],
    zip: ZipArchive<Cursor<&'a [u8]>>,
    /// One inflater for every part, reset between them.
    inflater: Decompress,
    /// Part names in zip order, as stored (OPC names compare case-insensitively).
    names: Vec<String>,
    remaining: u64,
    limit: u64,
}

impl<'a> Package<'a> {
    /// Opens the zip and refuses what no form looks like: too many entries, a declared size over the
    /// limit, macros.
    pub fn open(bytes: &'a [u8], limits: &DocxLimits) -> Result<Package<'a>, ExtractError> {
        let zip = ZipArchive::new(Cursor::new(bytes)).map_err(zip_error)?;
        if zip.len() > limits.max_zip_entries {
            return Err(ExtractError::TooManyEntries { entries: zip.len(), limit: limits.max_zip_entries });
        }
        // The declared total is only a first filter (it may lie low); reading is capped again below.
        if zip.decompressed_size().is_some_and(|total| total > u128::from(limits.max_unzipped_bytes)) {
            return Err(ExtractError::ZipBomb { limit: limits.max_unzipped_bytes });
        }
        let names: Vec<String> =
            zip.file_names_raw().map(|raw| String::from_utf8_lossy(raw).replace('\\', "/")).collect();
        if names.iter().any(|n| n.to_ascii_lowercase().ends_with("vbaproject.bin")) {
            return Err(ExtractError::Macro);
        }
        let limit = limits.max_unzipped_bytes;
        Ok(Package { bytes, zip, inflater: Decompress::new(false), names, remaining: limit, limit })
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        let name = name.trim_start_matches('/');
        self.names
            .iter()
            .position(|n| n == name)
            .or_else(|| self.names.iter().position(|n| n.eq_ignore_ascii_case(name)))
    }

    pub fn has(&self, name: &str) -> bool {
        self.index_of(name).is_some()
    }

    /// Footer and header parts, where the stamp lives when custom properties are gone.
    pub fn footer_parts(&self) -> Vec<String> {
        let mut parts: Vec<String> = self
            .names
            .iter()
            .filter(|n| {
                let l = n.to_ascii_lowercase();
                (l.starts_with("word/footer") || l.starts_with("word/header")) && l.ends_with(".xml")
            })
            .cloned()
            .collect();
        // Footers first: that is where Postroom stamps; headers are a fallback.
        parts.sort_by_key(|n| !n.to_ascii_lowercase().starts_with("word/footer"));
        parts
    }

    /// What a zip without a Word body is, for the error message.
    pub fn describe_non_word(&self) -> &'static str {
        let has_prefix = |p: &str| self.names.iter().any(|n| n.to_ascii_lowercase().starts_with(p));
        if has_prefix("xl/") {
            "an Excel workbook"
        } else if has_prefix("ppt/") {
            "a PowerPoint presentation"
        } else if self.has("mimetype") || self.has("content.xml") {
            "an OpenDocument file (such as .odt)"
        } else {
            "a zip archive with no Word document inside"
        }
    }

    /// Inflates one part as text, or `None` when the package has no such part.
    pub fn read_text(&mut self, name: &str) -> Result<Option<String>, ExtractError> {
        let Some(index) = self.index_of(name) else { return Ok(None) };
        let part = self.names.get(index).cloned().unwrap_or_default();
        let buf = match self.read_in_place(index, &part)? {
            Some(buf) => buf,
            None => self.read_through_zip(index, &part)?,
        };
        let read = buf.len() as u64;
        if read > self.remaining {
            return Err(ExtractError::ZipBomb { limit: self.limit });
        }
        self.remaining -= read;
        xml::decode(buf, &part).map(Some)
    }

    /// Inflates a stored or deflated part straight from the package's bytes into one buffer, or `None`
    /// for anything else (encrypted, other methods), which the zip crate's reader then handles or refuses.
    /// The zip crate's reader streams through a window and a zeroed buffer, which cost more than the
    /// inflating. As there, a part that inflates past its declared size or fails its CRC is damaged; and
    /// nothing is inflated beyond one byte over the budget, whatever the headers say.
    fn read_in_place(&mut self, index: usize, part: &str) -> Result<Option<Vec<u8>>, ExtractError> {
        let corrupt = |detail: &str| ExtractError::CorruptZip { detail: format!("{part}: {detail}") };
        let file = self.zip.by_index_raw(index).map_err(zip_error)?;
        let method = file.compression();
        if file.encrypted() || !matches!(method, CompressionMethod::Stored | CompressionMethod::Deflated) {
            return Ok(None);
        }
        let (start, compressed, declared, crc) = (file.data_start(), file.compressed_size(), file.size(), file.crc32());
        drop(file);
        let data = start
            .and_then(|start| Some((usize::try_from(start).ok()?, usize::try_from(compressed).ok()?)))
            .and_then(|(start, len)| self.bytes.get(start..start.checked_add(len)?))
            .ok_or_else(|| corrupt("the part runs past the end of the file"))?;
        let cap = usize::try_from(declared.min(self.remaining).saturating_add(1)).unwrap_or(usize::MAX);
        // The declared size only sizes the first allocation, and never beyond a modest cap.
        let mut buf = Vec::with_capacity(cap.min(4 << 20));
        if method == CompressionMethod::Stored {
            buf.extend_from_slice(data.get(..cap).unwrap_or(data));
        } else {
            self.inflater.reset(false);
            loop {
                let (before_in, before_out) = (self.inflater.total_in(), buf.len());
                let input = usize::try_from(before_in).ok().and_then(|at| data.get(at..)).unwrap_or_default();
                let status = self
                    .inflater
                    .decompress_vec(input, &mut buf, FlushDecompress::Finish)
                    .map_err(|e| corrupt(&format!("the compressed data is damaged ({e})")))?;
                if status == Status::StreamEnd || buf.len() >= cap {
                    break;
                }
                if buf.len() == buf.capacity() {
                    buf.reserve_exact(buf.capacity().max(4096).min(cap - buf.len()));
                } else if self.inflater.total_in() == before_in && buf.len() == before_out {
                    return Err(corrupt("the compressed data is cut short"));
                }
            }
            buf.truncate(cap);
        }
        if buf.len() as u64 > self.remaining {
            return Ok(Some(buf)); // over the budget: the caller refuses it as a zip bomb
        }
        if buf.len() as u64 > declared {
            return Err(corrupt("the part inflates past its declared size"));
        }
        if crc32fast::hash(&buf) != crc {
            return Err(corrupt("its checksum does not match: the file is damaged"));
        }
        Ok(Some(buf))
    }

    /// Any part the zip crate can read: other compression methods, or its errors for encrypted parts.
    fn read_through_zip(&mut self, index: usize, part: &str) -> Result<Vec<u8>, ExtractError> {
        let mut file = self.zip.by_index(index).map_err(zip_error)?;
        let hint = file.size().min(self.remaining).min(4 << 20);
        let mut buf = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
        (&mut file)
            .take(self.remaining.saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(|e| ExtractError::CorruptZip { detail: format!("{part}: {e}") })?;
        Ok(buf)
    }
}

fn zip_error(e: ZipError) -> ExtractError {
    match e {
        ZipError::UnsupportedArchive(msg) if msg == ZipError::PASSWORD_REQUIRED => ExtractError::Encrypted,
        ZipError::InvalidPassword => ExtractError::Encrypted,
        other => ExtractError::CorruptZip { detail: other.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ole_with_entry(name: &str) -> Vec<u8> {
        let mut bytes = vec![0u8; 2048];
        bytes[..8].copy_from_slice(OLE_MAGIC);
        let entry = 1024;
        for (i, unit) in name.encode_utf16().enumerate() {
            bytes[entry + 2 * i..entry + 2 * i + 2].copy_from_slice(&unit.to_le_bytes());
        }
        let len = (name.encode_utf16().count() as u16 + 1) * 2;
        bytes[entry + 64..entry + 66].copy_from_slice(&len.to_le_bytes());
        bytes
    }

    fn zip_of(parts: &[(&str, &[u8], CompressionMethod)]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data, method) in parts {
            let opts = zip::write::SimpleFileOptions::default().compression_method(*method);
            zip.start_file(*name, opts).unwrap();
            std::io::Write::write_all(&mut zip, data).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn parts_read_in_place_are_what_the_zip_crate_reads() {
        let long = "<w:p><w:r><w:t>text</w:t></w:r></w:p>".repeat(2000);
        let bytes = zip_of(&[
            ("stored.xml", b"<a>stored</a>", CompressionMethod::Stored),
            ("deflated.xml", long.as_bytes(), CompressionMethod::Deflated),
            ("empty.xml", b"", CompressionMethod::Deflated),
        ]);
        let limits = DocxLimits::default();
        let mut pkg = Package::open(&bytes, &limits).unwrap();
        for (index, part) in ["stored.xml", "deflated.xml", "empty.xml"].into_iter().enumerate() {
            let in_place = pkg.read_in_place(index, part).unwrap().unwrap();
            assert_eq!(in_place, pkg.read_through_zip(index, part).unwrap(), "{part}");
        }
        assert_eq!(pkg.read_text("deflated.xml").unwrap().unwrap(), long);
        assert_eq!(pkg.read_text("stored.xml").unwrap().unwrap(), "<a>stored</a>");
    }

    #[test]
    fn a_part_read_in_place_is_checked_and_capped() {
        let body = "<w:t>checked</w:t>".repeat(500);
        let bytes = zip_of(&[("word/document.xml", body.as_bytes(), CompressionMethod::Deflated)]);
        let limits = DocxLimits::default();

        // A wrong CRC in the central directory (it sits 16 bytes into the entry).
        let central = bytes.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        let mut wrong_crc = bytes.clone();
        wrong_crc[central + 16] ^= 0xFF;
        let err = Package::open(&wrong_crc, &limits).unwrap().read_text("word/document.xml").unwrap_err();
        assert!(matches!(&err, ExtractError::CorruptZip { detail } if detail.contains("checksum")), "{err:?}");

        // The budget stops inflating, whatever the headers say.
        let small = DocxLimits { max_unzipped_bytes: 1000, ..DocxLimits::default() };
        let mut pkg = Package::open(&bytes, &limits).unwrap();
        pkg.remaining = small.max_unzipped_bytes;
        let err = pkg.read_text("word/document.xml").unwrap_err();
        assert!(matches!(err, ExtractError::ZipBomb { .. }), "{err:?}");

        // Compressed data cut short (the entry's data ends early, the headers unchanged).
        let local_data = 30 + "word/document.xml".len();
        let mut cut = bytes.clone();
        for b in &mut cut[local_data + 20..central] {
            *b = 0;
        }
        let err = Package::open(&cut, &limits).unwrap().read_text("word/document.xml").unwrap_err();
        assert!(matches!(err, ExtractError::CorruptZip { .. }), "{err:?}");
    }

    #[test]
    fn ole_files_are_told_apart_by_their_streams() {
        assert!(matches!(sniff(&ole_with_entry("WordDocument")), Err(ExtractError::LegacyDoc)));
        assert!(matches!(sniff(&ole_with_entry("EncryptedPackage")), Err(ExtractError::Encrypted)));
        assert!(matches!(sniff(&ole_with_entry("Workbook")), Err(ExtractError::NotWord { .. })));
    }

    #[test]
    fn non_word_files_are_named_in_the_error() {
        let seen = |b: &[u8]| match sniff(b) {
            Err(ExtractError::NotWord { seen }) => seen,
            other => panic!("{other:?}"),
        };
        assert_eq!(seen(b"%PDF-1.7\n..."), "a PDF");
        assert_eq!(seen(&[0xFF, 0xD8, 0xFF, 0xE0]), "a picture");
        assert_eq!(seen(b"Dear CQC, please find"), "a plain text file");
        assert_eq!(seen(b""), "an empty file");
        assert_eq!(seen(&[0, 1, 2, 3, 200]), "a file of unknown type");
        assert!(sniff(b"PK\x03\x04rest").is_ok());
    }
}
