//! The portal database: the ledger of every message, the submissions filed from them, their problems, the
//! outbox of replies and the audit trail. SQLite (embedded default) and PostgreSQL run the same queries
//! through sqlx's `Any` driver; times are Unix milliseconds and flags integers so both agree on types.
//!
//! The rules it serves (DESIGN.md): the raw message is stored before anything else ([`Store::record`]);
//! one transaction files everything about a message ([`Store::file`]); the mailbox settles only after.

mod migrations;
mod outbox;

use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor, Row};

pub use outbox::{DueReply, ReplyFailure};

use crate::problem::Problem;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database url `{0}` is neither sqlite://... nor postgres://...")]
    BadUrl(String),
    #[error("cannot create the database directory {path}: {source}")]
    Dir { path: String, source: std::io::Error },
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("reference {0} is already taken")]
    ReferenceTaken(String),
}

/// Milliseconds since the Unix epoch: the one time representation in the database.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// A message as it arrives: where from, under which key, and its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    pub mailbox: &'a str,
    /// Unique within the mailbox: a Maildir file's unique name, `UIDVALIDITY:UID`, or a file's SHA-256.
    pub source_key: &'a str,
    pub raw: &'a [u8],
    pub received_at: i64,
}

/// What the ledger already knew of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// First sight: stored, to be processed.
    New { id: i64, sha256: String },
    /// Stored earlier but never filed (a crash in between): process it again.
    Unfinished { id: i64, sha256: String },
    /// Filed earlier: settle it, do nothing else.
    Filed { id: i64, status: String },
}

/// One form's submission to file.
#[derive(Debug, Clone, Default)]
pub struct NewSubmission {
    pub form_index: i64,
    pub reference: String,
    pub status: String,
    pub form_id: Option<String>,
    pub form_version: Option<String>,
    pub attachment_name: Option<String>,
    pub attachment_sha256: String,
    pub sender: Option<String>,
    pub provider_id: Option<String>,
    pub location_id: Option<String>,
    pub event_date: Option<String>,
    pub event_time: Option<String>,
    pub values_json: String,
    pub urgent: bool,
    pub resubmission_of: Option<i64>,
    pub same_incident_as: Option<i64>,
    /// Who the notification is about, normalised (links a second part to its first).
    pub person_key: Option<String>,
    /// The first part this second part belongs to.
    pub first_part: Option<i64>,
    pub receipt_delay_minutes: Option<i64>,
}

/// The reply to queue with the filing.
#[derive(Debug, Clone)]
pub struct NewReply {
    pub kind: String,
    pub to: String,
    pub mail_message_id: String,
    pub eml: Vec<u8>,
}

/// Everything decided about one message, filed in one transaction.
#[derive(Debug, Clone, Default)]
pub struct Filing {
    pub message: i64,
    pub status: String,
    pub reason: Option<String>,
    pub header_message_id: Option<String>,
    pub from_address: Option<String>,
    pub subject: Option<String>,
    pub duplicate_of: Option<i64>,
    pub submissions: Vec<NewSubmission>,
    pub problems: Vec<Problem>,
    pub reply: Option<NewReply>,
}

/// A filed submission found by a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmissionRef {
    pub id: i64,
    pub message_id: i64,
    pub reference: String,
    pub status: String,
}

impl Store {
    /// Opens (creating if needed) the database at `url` and brings its schema up to date.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::BadUrl(url.to_string()));
        };
        let mut url = url.to_string();
        if backend == Backend::Sqlite {
            let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or_default().to_string();
            if path.contains(":memory:") {
                return Err(StoreError::BadUrl(format!("{url}: use a file; an in-memory database loses mail")));
            }
            if let Some(dir) = std::path::Path::new(&path).parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|source| StoreError::Dir { path: dir.display().to_string(), source })?;
            }
            if !url.contains('?') {
                url.push_str("?mode=rwc");
            }
        }
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL for concurrent readers; FULL so a commit that precedes a settle is on disk.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let store = Store { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrations::migrator(self.backend).run(&self.pool).await?;
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Stores the raw message in the ledger before anything else happens, or says what is known of it.
    pub async fn record(&self, m: Inbound<'_>) -> Result<Recorded, StoreError> {
        let sha256 = crate::sha256_hex(m.raw);
        let inserted = sqlx::query(
            "INSERT INTO messages (mailbox, source_key, sha256, raw, size_bytes, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (mailbox, source_key) DO NOTHING RETURNING id",
        )
        .bind(m.mailbox)
        .bind(m.source_key)
        .bind(&sha256)
        .bind(m.raw)
        .bind(m.raw.len() as i64)
        .bind(m.received_at)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = inserted {
            return Ok(Recorded::New { id: row.try_get("id")?, sha256 });
        }
        let row = sqlx::query("SELECT id, status, sha256 FROM messages WHERE mailbox = $1 AND source_key = $2")
            .bind(m.mailbox)
            .bind(m.source_key)
            .fetch_one(&self.pool)
            .await?;
        let (id, status): (i64, String) = (row.try_get("id")?, row.try_get("status")?);
        Ok(if status == "received" {
            Recorded::Unfinished { id, sha256: row.try_get("sha256")? }
        } else {
            Recorded::Filed { id, status }
        })
    }

    /// Files everything decided about a message in one transaction. Returns false, changing nothing, when
    /// the message was already filed (a second worker or a retry got there first).
    pub async fn file(&self, f: &Filing) -> Result<bool, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE messages SET status = $1, reason = $2, header_message_id = $3, from_address = $4, \
             subject = $5, duplicate_of = $6, processed_at = $7 WHERE id = $8 AND status = 'received'",
        )
        .bind(&f.status)
        .bind(&f.reason)
        .bind(&f.header_message_id)
        .bind(&f.from_address)
        .bind(&f.subject)
        .bind(f.duplicate_of)
        .bind(now)
        .bind(f.message)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        let mut submission_ids = Vec::with_capacity(f.submissions.len());
        for s in &f.submissions {
            let row = sqlx::query(
                "INSERT INTO submissions (message_id, form_index, reference, status, form_id, form_version, \
                 attachment_name, attachment_sha256, sender, provider_id, location_id, event_date, event_time, \
                 values_json, urgent, resubmission_of, same_incident_as, created_at, person_key, first_part, \
                 receipt_delay_minutes) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) \
                 ON CONFLICT (reference) DO NOTHING RETURNING id",
            )
            .bind(f.message)
            .bind(s.form_index)
            .bind(&s.reference)
            .bind(&s.status)
            .bind(&s.form_id)
            .bind(&s.form_version)
            .bind(&s.attachment_name)
            .bind(&s.attachment_sha256)
            .bind(&s.sender)
            .bind(&s.provider_id)
            .bind(&s.location_id)
            .bind(&s.event_date)
            .bind(&s.event_time)
            .bind(&s.values_json)
            .bind(i64::from(s.urgent))
            .bind(s.resubmission_of)
            .bind(s.same_incident_as)
            .bind(now)
            .bind(&s.person_key)
            .bind(s.first_part)
            .bind(s.receipt_delay_minutes)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                tx.rollback().await?;
                return Err(StoreError::ReferenceTaken(s.reference.clone()));
            };
            submission_ids.push((s.form_index, row.try_get::<i64, _>("id")?));
        }
        for p in &f.problems {
            let submission =
                p.form_index.and_then(|i| submission_ids.iter().find(|(fi, _)| *fi == i as i64).map(|(_, id)| *id));
            sqlx::query(
                "INSERT INTO problems (message_id, submission_id, form_index, code, field, value, message, hint) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(f.message)
            .bind(submission)
            .bind(p.form_index.map(|i| i as i64))
            .bind(p.code.as_str())
            .bind(&p.field)
            .bind(&p.value)
            .bind(&p.message)
            .bind(&p.hint)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(r) = &f.reply {
            sqlx::query(
                "INSERT INTO outbox (message_id, kind, to_address, mail_message_id, eml, next_attempt_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (message_id, kind) DO NOTHING",
            )
            .bind(f.message)
            .bind(&r.kind)
            .bind(&r.to)
            .bind(&r.mail_message_id)
            .bind(&r.eml)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let detail = serde_json::json!({
            "reason": f.reason,
            "references": f.submissions.iter().map(|s| &s.reference).collect::<Vec<_>>(),
            "problems": f.problems.iter().map(|p| p.code.as_str()).collect::<Vec<_>>(),
            "reply": f.reply.as_ref().map(|r| &r.kind),
        });
        sqlx::query("INSERT INTO audit (at, actor, action, message_id, detail) VALUES ($1, 'postroom', $2, $3, $4)")
            .bind(now)
            .bind(format!("filed:{}", f.status))
            .bind(f.message)
            .bind(detail.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records that the message left the inbox for `folder`.
    pub async fn mark_settled(&self, message: i64, folder: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE messages SET settled_at = $1, settled_folder = $2 WHERE id = $3")
            .bind(now_ms())
            .bind(folder)
            .bind(message)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records the size the server reported for a message that was never fetched.
    pub async fn set_size(&self, message: i64, size: u64) -> Result<(), StoreError> {
        sqlx::query("UPDATE messages SET size_bytes = $1 WHERE id = $2")
            .bind(i64::try_from(size).unwrap_or(i64::MAX))
            .bind(message)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The Message-ID header recorded for a filed message.
    pub async fn header_message_id(&self, message: i64) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT header_message_id FROM messages WHERE id = $1")
            .bind(message)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<Option<String>, _>("header_message_id")).transpose()?.flatten())
    }

    pub async fn message_status(&self, message: i64) -> Result<Option<String>, StoreError> {
        let row =
            sqlx::query("SELECT status FROM messages WHERE id = $1").bind(message).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.try_get("status")).transpose()?)
    }

    /// The references filed from a message, in form order.
    pub async fn references_of(&self, message: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT reference FROM submissions WHERE message_id = $1 ORDER BY form_index")
            .bind(message)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("reference")?)).collect()
    }

    /// The kind of reply queued for a message, if any.
    pub async fn reply_kind_of(&self, message: i64) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT kind FROM outbox WHERE message_id = $1 ORDER BY id LIMIT 1")
            .bind(message)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("kind")).transpose()?)
    }

    /// An earlier message from the same sender with the same Message-ID that filed exactly these form bytes:
    /// a redelivered copy (new Received headers, so a different raw hash).
    pub async fn find_redelivery(
        &self,
        message: i64,
        header_message_id: &str,
        from: &str,
        form_shas: &[String],
    ) -> Result<Option<i64>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM messages WHERE header_message_id = $1 AND from_address = $2 AND id <> $3 \
             AND status NOT IN ('received', 'duplicate') ORDER BY id",
        )
        .bind(header_message_id)
        .bind(from)
        .bind(message)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let shas =
                sqlx::query("SELECT attachment_sha256 FROM submissions WHERE message_id = $1 ORDER BY form_index")
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await?;
            let mut theirs: Vec<String> =
                shas.iter().map(|r| r.try_get("attachment_sha256")).collect::<Result<_, _>>()?;
            let mut ours = form_shas.to_vec();
            theirs.sort();
            ours.sort();
            if theirs == ours {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// The first submission of these exact form bytes from this sender, from another message.
    pub async fn find_same_form(
        &self,
        message: i64,
        sender: &str,
        sha: &str,
    ) -> Result<Option<SubmissionRef>, StoreError> {
        let row = sqlx::query(
            "SELECT id, message_id, reference, status FROM submissions \
             WHERE attachment_sha256 = $1 AND sender = $2 AND message_id <> $3 ORDER BY id LIMIT 1",
        )
        .bind(sha)
        .bind(sender)
        .bind(message)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| submission_ref(&r)).transpose()
    }

    pub async fn find_by_reference(
        &self,
        reference: &str,
    ) -> Result<Option<(SubmissionRef, Option<String>, Option<String>)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, message_id, reference, status, provider_id, form_id FROM submissions WHERE reference = $1",
        )
        .bind(reference)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => Ok(Some((submission_ref(&r)?, r.try_get("provider_id")?, r.try_get("form_id")?))),
            None => Ok(None),
        }
    }

    /// The latest rejected submission of this form for this provider by this sender since `since` (ms).
    pub async fn open_rejection(
        &self,
        sender: &str,
        provider_id: &str,
        form_id: &str,
        since: i64,
    ) -> Result<Option<SubmissionRef>, StoreError> {
        let row = sqlx::query(
            "SELECT id, message_id, reference, status FROM submissions WHERE sender = $1 AND provider_id = $2 \
             AND form_id = $3 AND status = 'rejected' AND created_at >= $4 ORDER BY id DESC LIMIT 1",
        )
        .bind(sender)
        .bind(provider_id)
        .bind(form_id)
        .bind(since)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| submission_ref(&r)).transpose()
    }

    /// An earlier accepted submission about the same incident: same form, location, event date and time.
    pub async fn same_incident(
        &self,
        form_id: &str,
        location_id: &str,
        event_date: &str,
        event_time: Option<&str>,
    ) -> Result<Option<SubmissionRef>, StoreError> {
        let row = sqlx::query(
            "SELECT id, message_id, reference, status FROM submissions WHERE form_id = $1 AND location_id = $2 \
             AND event_date = $3 AND COALESCE(event_time, '') = $4 AND status = 'accepted' ORDER BY id LIMIT 1",
        )
        .bind(form_id)
        .bind(location_id)
        .bind(event_date)
        .bind(event_time.unwrap_or_default())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| submission_ref(&r)).transpose()
    }

    /// The latest accepted first part (`form_id`) from this provider about this person.
    pub async fn first_part(
        &self,
        provider_id: &str,
        form_id: &str,
        person_key: &str,
    ) -> Result<Option<SubmissionRef>, StoreError> {
        let row = sqlx::query(
            "SELECT id, message_id, reference, status FROM submissions WHERE provider_id = $1 AND form_id = $2 \
             AND person_key = $3 AND status = 'accepted' ORDER BY id DESC LIMIT 1",
        )
        .bind(provider_id)
        .bind(form_id)
        .bind(person_key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| submission_ref(&r)).transpose()
    }

    /// Messages stored but never filed (a crash in between), for the daemon to finish at start-up.
    pub async fn unfinished(&self, mailbox: &str) -> Result<Vec<(i64, String)>, StoreError> {
        let rows =
            sqlx::query("SELECT id, source_key FROM messages WHERE mailbox = $1 AND status = 'received' ORDER BY id")
                .bind(mailbox)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|r| Ok((r.try_get("id")?, r.try_get("source_key")?))).collect()
    }

    /// Takes or renews the lease on `mailbox` for `holder` until `now + lease_ms`; true when `holder` holds
    /// it afterwards. A lease held by another instance is taken only once it has expired.
    pub async fn hold_mailbox(&self, mailbox: &str, holder: &str, lease_ms: i64) -> Result<bool, StoreError> {
        let now = now_ms();
        let row = sqlx::query(
            "INSERT INTO mailbox_leases (mailbox, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (mailbox) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE mailbox_leases.holder = excluded.holder OR mailbox_leases.expires_at < $4 RETURNING holder",
        )
        .bind(mailbox)
        .bind(holder)
        .bind(now + lease_ms)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Gives up the lease on `mailbox` if `holder` has it (a clean shutdown hands over at once).
    pub async fn release_mailbox(&self, mailbox: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM mailbox_leases WHERE mailbox = $1 AND holder = $2")
            .bind(mailbox)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Which of `keys` the ledger knows in `mailbox`, with their status.
    pub async fn known_keys(&self, mailbox: &str, keys: &[String]) -> Result<Vec<(String, String)>, StoreError> {
        let mut known = Vec::new();
        for key in keys {
            let row = sqlx::query("SELECT status FROM messages WHERE mailbox = $1 AND source_key = $2")
                .bind(mailbox)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
            if let Some(row) = row {
                known.push((key.clone(), row.try_get("status")?));
            }
        }
        Ok(known)
    }

    /// How many messages of `mailbox` the ledger settled into each folder.
    pub async fn settled_counts(&self, mailbox: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT settled_folder, COUNT(*) AS n FROM messages WHERE mailbox = $1 AND settled_folder IS NOT NULL \
             GROUP BY settled_folder",
        )
        .bind(mailbox)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("settled_folder")?, r.try_get("n")?))).collect()
    }

    /// Counts of ledger rows by status, for summaries and health.
    pub async fn count_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM messages GROUP BY status ORDER BY status")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get("status")?, r.try_get("n")?))).collect()
    }
}

/// Creates database `name` on the PostgreSQL server at `admin_url` (for `postroom migrate` on a new server
/// and for tests). `name` must be a plain identifier.
pub async fn create_database(admin_url: &str, name: &str) -> Result<(), StoreError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err(StoreError::BadUrl(format!("database name `{name}`: use lower-case letters, digits and _")));
    }
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(admin_url).await?;
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await?;
    Ok(())
}

fn submission_ref(r: &sqlx::any::AnyRow) -> Result<SubmissionRef, StoreError> {
    Ok(SubmissionRef {
        id: r.try_get("id")?,
        message_id: r.try_get("message_id")?,
        reference: r.try_get("reference")?,
        status: r.try_get("status")?,
    })
}
