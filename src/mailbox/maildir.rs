//! A Maildir mailbox: messages wait in `new/` (or `cur/`, if a person's mail client opened the folder),
//! and are settled into the Maildir++ folders `.Processed`, `.Rejected` and `.Quarantine`. The ledger key is
//! the file's unique name (the part before `:2,`), which survives a move between `new/` and `cur/`.

use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

/// A waiting message.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The Maildir unique name: the ledger's source key.
    pub key: String,
    pub path: PathBuf,
    pub raw: Vec<u8>,
    /// When the file arrived (its modification time).
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Maildir {
    root: PathBuf,
}

const SUBDIRS: [&str; 3] = ["new", "cur", "tmp"];
pub const FOLDERS: [&str; 3] = ["Processed", "Rejected", "Quarantine"];

impl Maildir {
    /// Opens the Maildir at `root`, creating it and its settle folders if missing.
    pub fn open(root: &Path) -> io::Result<Maildir> {
        for sub in SUBDIRS {
            std::fs::create_dir_all(root.join(sub))?;
            for folder in FOLDERS {
                std::fs::create_dir_all(root.join(format!(".{folder}")).join(sub))?;
            }
        }
        Ok(Maildir { root: root.to_path_buf() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The keys and paths of waiting messages, oldest name first (Maildir names start with a timestamp).
    pub fn waiting(&self) -> io::Result<Vec<(String, PathBuf)>> {
        let mut found = Vec::new();
        for sub in ["new", "cur"] {
            for entry in std::fs::read_dir(self.root.join(sub))? {
                let entry = entry?;
                if !entry.file_type()?.is_file() {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                found.push((unique_name(&name).to_string(), entry.path()));
            }
        }
        found.sort();
        Ok(found)
    }

    /// Reads one waiting message. `None` if it vanished meanwhile (another reader settled it).
    pub fn read(&self, key: &str, path: &Path) -> io::Result<Option<Fetched>> {
        let raw = match std::fs::read(path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let received_at = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .map(DateTime::<Utc>::from)
            .unwrap_or_else(|_| Utc::now());
        Ok(Some(Fetched { key: key.to_string(), path: path.to_path_buf(), raw, received_at }))
    }

    /// Moves a filed message into `.{folder}/cur/`, marked seen. Idempotent: settling a message that is
    /// already gone from the inbox succeeds.
    pub fn settle(&self, key: &str, folder: &str) -> io::Result<()> {
        let target_dir = self.root.join(format!(".{folder}")).join("cur");
        for sub in ["new", "cur"] {
            for entry in std::fs::read_dir(self.root.join(sub))? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if unique_name(&name) == key {
                    std::fs::create_dir_all(&target_dir)?;
                    return std::fs::rename(entry.path(), target_dir.join(format!("{key}:2,S")));
                }
            }
        }
        Ok(())
    }

    /// Delivers raw bytes into `new/` the Maildir way (write in `tmp/`, then rename); returns the key.
    pub fn deliver(&self, raw: &[u8]) -> io::Result<String> {
        let now = Utc::now();
        let key = format!(
            "{}.M{:06}P{}R{}.postroom",
            now.timestamp(),
            now.timestamp_subsec_micros(),
            std::process::id(),
            crate::sha256_hex(raw).get(..12).unwrap_or_default()
        );
        let tmp = self.root.join("tmp").join(&key);
        std::fs::write(&tmp, raw)?;
        std::fs::rename(&tmp, self.root.join("new").join(&key))?;
        Ok(key)
    }

    /// How many messages sit in each settle folder and in the inbox.
    pub fn counts(&self) -> io::Result<Vec<(String, usize)>> {
        let mut out = vec![("INBOX".to_string(), self.waiting()?.len())];
        for folder in FOLDERS {
            let mut n = 0;
            for sub in ["new", "cur"] {
                n += std::fs::read_dir(self.root.join(format!(".{folder}")).join(sub))?.count();
            }
            out.push((folder.to_string(), n));
        }
        Ok(out)
    }
}

/// The unique part of a Maildir file name: everything before the `:2,FLAGS` info suffix.
fn unique_name(file_name: &str) -> &str {
    file_name.split_once(':').map(|(u, _)| u).unwrap_or(file_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivered_mail_waits_until_settled_then_sits_in_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::open(&dir.path().join("inbox")).unwrap();
        let a = md.deliver(b"Subject: a\r\n\r\nA").unwrap();
        let b = md.deliver(b"Subject: b\r\n\r\nB").unwrap();
        // A person's mail client moved one to cur/ and marked it read: still waiting for Postroom.
        let cur = md.root().join("cur").join(format!("{b}:2,S"));
        std::fs::rename(md.root().join("new").join(&b), &cur).unwrap();
        let waiting = md.waiting().unwrap();
        assert_eq!(waiting.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), {
            let mut v = vec![a.clone(), b.clone()];
            v.sort();
            v
        });
        let (key, path) = &waiting[0];
        assert!(md.read(key, path).unwrap().unwrap().raw.starts_with(b"Subject: "));
        md.settle(&a, "Processed").unwrap();
        md.settle(&b, "Quarantine").unwrap();
        md.settle(&b, "Quarantine").unwrap();
        assert!(md.waiting().unwrap().is_empty());
        assert!(md.root().join(".Processed/cur").join(format!("{a}:2,S")).exists());
        let counts = md.counts().unwrap();
        assert_eq!(
            counts,
            vec![("INBOX".into(), 0), ("Processed".into(), 1), ("Rejected".into(), 0), ("Quarantine".into(), 1)]
        );
    }
}
