//! Reconciliation: the server's count of messages per folder against the ledger's, and the inbox's messages
//! against what the ledger has seen. It catches the classic failure of a mail intake: mail sitting in the
//! inbox unnoticed (or filed but never moved, or moved away by a person), which no error would report.

use serde::Serialize;

use super::{ImapError, ImapSession, run::source_key};
use crate::config::{FoldersConfig, MailboxConfig};
use crate::pipeline::Pipeline;

/// One folder: how many messages the server holds, how many the ledger settled there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FolderCount {
    pub folder: String,
    pub server: u32,
    pub ledger: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reconciliation {
    pub mailbox: String,
    /// Messages in the inbox the ledger has never seen (normal only for mail that just arrived).
    pub inbox_unseen: usize,
    /// Messages in the inbox the ledger has filed but that were never moved out (settling is failing).
    pub inbox_filed_not_moved: usize,
    pub folders: Vec<FolderCount>,
}

impl Reconciliation {
    /// Whether anything needs a person's attention.
    pub fn is_clean(&self) -> bool {
        self.inbox_unseen == 0
            && self.inbox_filed_not_moved == 0
            && self.folders.iter().all(|f| i64::from(f.server) == f.ledger)
    }

    /// Logs the result: one line when all is well, a warning naming each discrepancy otherwise.
    pub fn log(&self) {
        if self.is_clean() {
            tracing::info!(mailbox = %self.mailbox, "reconciliation: server and ledger agree");
            return;
        }
        let folders: Vec<String> = self
            .folders
            .iter()
            .filter(|f| i64::from(f.server) != f.ledger)
            .map(|f| format!("{}: server {} ledger {}", f.folder, f.server, f.ledger))
            .collect();
        tracing::warn!(
            mailbox = %self.mailbox,
            inbox_unseen = self.inbox_unseen,
            inbox_filed_not_moved = self.inbox_filed_not_moved,
            folders = %folders.join("; "),
            "reconciliation: the server and the ledger disagree; look at this mailbox"
        );
    }
}

/// Compares the selected inbox and the settle folders with the ledger.
pub async fn reconcile(
    p: &Pipeline,
    mailbox: &MailboxConfig,
    s: &mut ImapSession,
    uidvalidity: u32,
    folders: &FoldersConfig,
) -> Result<Reconciliation, anyhow::Error> {
    let pending = s.pending(u64::MAX).await.map_err(anyhow_imap)?;
    let keys: Vec<String> = pending.iter().map(|m| source_key(uidvalidity, m.uid)).collect();
    let known = p.store.known_keys(&mailbox.name, &keys).await?;
    let inbox_filed_not_moved = known.iter().filter(|(_, status)| status != "received").count();
    let inbox_unseen = keys.len() - known.len();
    let names = [folders.processed.as_str(), folders.rejected.as_str(), folders.quarantine.as_str()];
    let server = s.status_counts(&names).await.map_err(anyhow_imap)?;
    let ledger = p.store.settled_counts(&mailbox.name).await?;
    let folders = server
        .into_iter()
        .map(|(folder, server)| {
            let ledger = ledger.iter().find(|(f, _)| *f == folder).map(|(_, n)| *n).unwrap_or(0);
            FolderCount { folder, server, ledger }
        })
        .collect();
    Ok(Reconciliation { mailbox: mailbox.name.clone(), inbox_unseen, inbox_filed_not_moved, folders })
}

fn anyhow_imap(e: ImapError) -> anyhow::Error {
    anyhow::Error::new(e)
}
