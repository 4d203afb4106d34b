//! Reconciliation: the server's count of messages per folder against the ledger's, and the inbox's messages
//! against what the ledger has seen. It catches the classic failure of a mail intake: mail sitting in the
//! inbox unnoticed (or filed but never moved, or moved away by a person), which no error would report.

use serde::Serialize;

use super::run::{folder_name, source_key};
use super::{ImapError, ImapSession};
use crate::config::{FoldersConfig, MailboxConfig};
use crate::pipeline::{Folder, Pipeline};

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
    /// Filed messages gone from the inbox whose move was never recorded (an instance stopped between the
    /// move and its record): recorded now, in the folder their outcome names.
    pub moves_recorded: usize,
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
    // Filed under this UIDVALIDITY, not settled, and no longer in the inbox: moved by an instance that
    // stopped before recording it (the move comes first, so a crash never loses mail, only the record).
    let in_inbox: std::collections::HashSet<&str> = keys.iter().map(String::as_str).collect();
    let unrecorded: Vec<(i64, &str)> = p
        .store
        .filed_not_settled(&mailbox.name, &format!("{uidvalidity}:"))
        .await?
        .into_iter()
        .filter(|(_, key, _)| !in_inbox.contains(key.as_str()))
        .map(|(id, _, status)| (id, folder_name(folders, Folder::for_status(&status))))
        .collect();
    if !unrecorded.is_empty() {
        p.store.mark_settled_many(&unrecorded).await?;
        tracing::warn!(
            mailbox = %mailbox.name, count = unrecorded.len(),
            "reconciliation: recorded the moves of filed messages that had left the inbox unrecorded \
             (an instance stopped between moving them and recording it)"
        );
    }
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
    Ok(Reconciliation {
        mailbox: mailbox.name.clone(),
        inbox_unseen,
        inbox_filed_not_moved,
        moves_recorded: unrecorded.len(),
        folders,
    })
}

fn anyhow_imap(e: ImapError) -> anyhow::Error {
    anyhow::Error::new(e)
}
