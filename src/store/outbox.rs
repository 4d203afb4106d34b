//! Outbox queries: replies due to leave, and what became of each attempt.

use sqlx::Row;

use super::{Store, StoreError, now_ms};

/// A reply ready to send.
#[derive(Debug, Clone)]
pub struct DueReply {
    pub id: i64,
    pub message_id: i64,
    /// The mailbox the answered message came in to; the reply leaves from its address.
    pub mailbox: String,
    pub kind: String,
    pub to: String,
    pub mail_message_id: String,
    pub eml: Vec<u8>,
    pub attempts: i64,
}

/// Why a send failed, and whether trying again could help.
#[derive(Debug, Clone)]
pub struct ReplyFailure {
    pub error: String,
    pub permanent: bool,
    /// When to try again (ms), for transient failures.
    pub retry_at: i64,
}

impl Store {
    /// Claims up to `limit` replies whose time has come (ids above `after`, a pass's cursor, so one pass
    /// tries each reply at most once), oldest first. A claim moves the reply's next attempt `lease_ms`
    /// ahead, so another sender does not take it meanwhile and a sender that dies mid-send leaves it to
    /// come due again. On PostgreSQL rows locked by a concurrent claim are skipped, not waited for.
    pub async fn claim_replies(&self, after: i64, limit: i64, lease_ms: i64) -> Result<Vec<DueReply>, StoreError> {
        let now = now_ms();
        let skip_locked = if self.backend() == super::Backend::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
        let claim = format!(
            "UPDATE outbox SET next_attempt_at = $1 WHERE id IN (SELECT id FROM outbox WHERE status = 'pending' \
             AND next_attempt_at <= $2 AND id > $3 ORDER BY id LIMIT $4{skip_locked}) RETURNING id"
        );
        let claimed = sqlx::query(sqlx::AssertSqlSafe(claim))
            .bind(now + lease_ms)
            .bind(now)
            .bind(after)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        let ids: Vec<i64> = claimed.iter().map(|row| row.try_get("id")).collect::<Result<_, _>>()?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT o.id, o.message_id, m.mailbox, o.kind, o.to_address, o.mail_message_id, o.eml, o.attempts \
             FROM outbox o JOIN messages m ON m.id = o.message_id WHERE o.id IN ({})",
            super::placeholders(1, ids.len())
        );
        let mut select = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in &ids {
            select = select.bind(*id);
        }
        let mut replies = Vec::with_capacity(ids.len());
        for r in select.fetch_all(self.pool()).await? {
            replies.push(DueReply {
                id: r.try_get("id")?,
                message_id: r.try_get("message_id")?,
                mailbox: r.try_get("mailbox")?,
                kind: r.try_get("kind")?,
                to: r.try_get("to_address")?,
                mail_message_id: r.try_get("mail_message_id")?,
                eml: r.try_get("eml")?,
                attempts: r.try_get("attempts")?,
            });
        }
        replies.sort_by_key(|r| r.id);
        Ok(replies)
    }

    /// Hands claimed replies back unsent: due again at once.
    pub async fn release_replies(&self, ids: &[i64]) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        for id in ids {
            sqlx::query("UPDATE outbox SET next_attempt_at = $1 WHERE id = $2 AND status = 'pending'")
                .bind(now)
                .bind(*id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a reply as accepted by the server. On SQLite without waiting for the disk: a mark lost with
    /// the machine's power (never with the process) only means the reply is sent again, with the same
    /// Message-ID, as when an instance dies between the server's acceptance and this mark; an fsync per
    /// reply halved the outbox's speed and held the one write lock the filing needs.
    pub async fn mark_reply_sent(&self, id: i64) -> Result<(), StoreError> {
        let mut db = self.pool().acquire().await?;
        let sqlite = self.backend() == super::Backend::Sqlite;
        if sqlite {
            sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *db).await?;
        }
        let marked =
            sqlx::query("UPDATE outbox SET status = 'sent', sent_at = $1, attempts = attempts + 1 WHERE id = $2")
                .bind(now_ms())
                .bind(id)
                .execute(&mut *db)
                .await;
        if sqlite && let Err(e) = sqlx::query("PRAGMA synchronous = FULL").execute(&mut *db).await {
            // Never back in the pool with the weaker setting: filing relies on FULL.
            db.detach();
            return Err(e.into());
        }
        marked?;
        Ok(())
    }

    pub async fn mark_reply_failed(&self, id: i64, failure: &ReplyFailure) -> Result<(), StoreError> {
        let status = if failure.permanent { "failed" } else { "pending" };
        sqlx::query(
            "UPDATE outbox SET status = $1, last_error = $2, next_attempt_at = $3, attempts = attempts + 1 WHERE id = $4",
        )
        .bind(status)
        .bind(&failure.error)
        .bind(failure.retry_at)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Counts of outbox rows by status.
    pub async fn outbox_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status ORDER BY status")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok((r.try_get("status")?, r.try_get("n")?))).collect()
    }
}
