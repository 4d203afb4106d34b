//! Retention: raw mail is special-category personal data, kept only while it serves a purpose. After
//! `retention.raw_mail_days`, the raw message of an accepted, ignored or duplicate email is deleted from the
//! database, from the Maildir folder it was settled in, and its sent reply from the outbox. The ledger row,
//! the filed submission and the audit trail stay. Rejected and quarantined mail waits for a staff decision.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::config::{Config, MailboxKind};
use crate::store::{Store, StoreError};

/// What one purge removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub raw_messages: u64,
    pub replies: u64,
    pub files: u64,
}

/// Deletes what has outlived its retention period. `now_ms` is a parameter so tests can move time.
pub async fn purge(store: &Store, config: &Config, now_ms: i64) -> anyhow::Result<Purged> {
    let days = config.retention.raw_mail_days;
    if days == 0 {
        return Ok(Purged::default());
    }
    let cutoff = now_ms - i64::from(days) * 24 * 3600 * 1000;
    let (raw_messages, replies) = purge_database(store, cutoff, now_ms).await?;
    let older_than = SystemTime::UNIX_EPOCH + Duration::from_millis(cutoff.max(0) as u64);
    let mut files = 0;
    for mb in config.mailboxes.iter().filter(|m| m.kind == MailboxKind::Maildir) {
        if let Some(root) = &mb.path {
            // Only accepted, ignored and duplicate mail is settled here; .Rejected and .Quarantine wait.
            files += delete_older(&root.join(".Processed").join("cur"), older_than)?;
        }
    }
    files += delete_older(&config.outbox.dir, older_than)?;
    if raw_messages + replies + files > 0 {
        tracing::info!(raw_messages, replies, files, "retention purge");
    }
    Ok(Purged { raw_messages, replies, files })
}

async fn purge_database(store: &Store, cutoff: i64, now: i64) -> Result<(u64, u64), StoreError> {
    let mut tx = store.pool().begin().await?;
    let raw = sqlx::query(
        "UPDATE messages SET raw_purged_at = $1 WHERE raw_purged_at IS NULL AND processed_at < $2 \
         AND status IN ('accepted', 'ignored', 'duplicate')",
    )
    .bind(now)
    .bind(cutoff)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query(
        "DELETE FROM message_raw WHERE message_id IN (SELECT id FROM messages WHERE raw_purged_at IS NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let replies = sqlx::query(
        "UPDATE outbox SET eml = $1 WHERE status = 'sent' AND sent_at < $2 AND message_id IN \
         (SELECT id FROM messages WHERE status IN ('accepted', 'ignored', 'duplicate'))",
    )
    .bind(Vec::<u8>::new())
    .bind(cutoff)
    .execute(store.pool())
    .await?
    .rows_affected();
    Ok((raw, replies))
}

/// Deletes regular files in `dir` last modified before `older_than`; a missing directory is empty.
fn delete_older(dir: &Path, older_than: SystemTime) -> std::io::Result<u64> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut n = 0;
    for entry in entries.flatten() {
        let meta = entry.metadata()?;
        if meta.is_file() && meta.modified().is_ok_and(|m| m < older_than) {
            std::fs::remove_file(entry.path())?;
            n += 1;
        }
    }
    Ok(n)
}
