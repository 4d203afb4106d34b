//! The portal database: the ledger of every message, the submissions filed from them, their problems, the
//! outbox of replies and the audit trail. SQLite (embedded default) and PostgreSQL run the same queries
//! through sqlx's `Any` driver; times are Unix milliseconds and flags integers so both agree on types.
//!
//! The rules it serves (DESIGN.md): the raw message is stored before anything else ([`Store::record`]);
//! one transaction files everything about a message ([`Store::file`]); the mailbox settles only after.

mod migrations;
mod outbox;
pub mod queries;

use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Acquire, AnyConnection, AnyPool, Executor, Row};

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
    #[error("{0} message(s) of the batch were filed by another worker meanwhile")]
    FiledMeanwhile(u64),
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
        let mut recorded = self.record_many(&[m]).await?;
        recorded.pop().ok_or_else(|| StoreError::Db(sqlx::Error::RowNotFound))
    }

    /// Stores a batch of raw messages in one durable commit, before anything else happens to them: two
    /// multi-row `INSERT`s per [`RECORD_CHUNK`] messages (the ledger rows, then their raw bytes), then a
    /// lookup of any already known.
    pub async fn record_many(&self, batch: &[Inbound<'_>]) -> Result<Vec<Recorded>, StoreError> {
        let shas: Vec<String> = batch.iter().map(|m| crate::sha256_hex(m.raw)).collect();
        let mut tx = self.pool.begin().await?;
        let mut new_ids = std::collections::HashMap::new();
        for (chunk, chunk_shas) in batch.chunks(RECORD_CHUNK).zip(shas.chunks(RECORD_CHUNK)) {
            let sql = format!(
                "INSERT INTO messages (mailbox, source_key, sha256, size_bytes, received_at) VALUES {} \
                 ON CONFLICT (mailbox, source_key) DO NOTHING RETURNING id, mailbox, source_key",
                value_rows(chunk.len(), 5)
            );
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (m, sha) in chunk.iter().zip(chunk_shas) {
                insert =
                    insert.bind(m.mailbox).bind(m.source_key).bind(sha).bind(m.raw.len() as i64).bind(m.received_at);
            }
            let mut raws = Vec::new();
            for row in insert.fetch_all(&mut *tx).await? {
                let key: (String, String) = (row.try_get("mailbox")?, row.try_get("source_key")?);
                let id: i64 = row.try_get("id")?;
                if let Some(m) = chunk.iter().find(|m| m.mailbox == key.0 && m.source_key == key.1) {
                    raws.push((id, m.raw));
                }
                new_ids.insert(key, id);
            }
            if !raws.is_empty() {
                let sql = format!("INSERT INTO message_raw (message_id, raw) VALUES {}", value_rows(raws.len(), 2));
                let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (id, raw) in raws {
                    insert = insert.bind(id).bind(raw);
                }
                insert.execute(&mut *tx).await?;
            }
        }
        let mut recorded = Vec::with_capacity(batch.len());
        for (m, sha256) in batch.iter().zip(shas) {
            // Taken out, so a key twice in one batch is new once and known the second time.
            match new_ids.remove(&(m.mailbox.to_string(), m.source_key.to_string())) {
                Some(id) => recorded.push(Recorded::New { id, sha256 }),
                None => recorded.push(known(&mut tx, m).await?),
            }
        }
        tx.commit().await?;
        Ok(recorded)
    }

    /// Begins a batch: one transaction in which messages are decided and filed one after another, each in
    /// a savepoint of its own, committed together (one durable commit for the batch).
    pub async fn begin_batch(&self) -> Result<Batch, StoreError> {
        let tx = match self.backend {
            // Take SQLite's write lock at once: a read transaction upgraded later fails when another
            // connection wrote meanwhile, and the busy handler cannot retry that.
            Backend::Sqlite => self.pool.begin_with(sqlx::AssertSqlSafe("BEGIN IMMEDIATE")).await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(Batch { tx })
    }

    /// Files one message in a transaction of its own (see [`queries::file`]).
    pub async fn file(&self, f: &Filing) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut later = queries::Deferred::default();
        let filed = queries::file(&mut tx, f, &mut later).await?;
        later.write(&mut tx).await?;
        tx.commit().await?;
        Ok(filed)
    }

    /// The references filed from a message, in form order.
    pub async fn references_of(&self, message: i64) -> Result<Vec<String>, StoreError> {
        queries::references_of(&mut *self.pool.acquire().await?, message).await
    }

    /// Records where each message went once it left the inbox, in one commit: one `UPDATE` per folder.
    pub async fn mark_settled_many(&self, settled: &[(i64, &str)]) -> Result<(), StoreError> {
        let now = now_ms();
        let mut by_folder: std::collections::BTreeMap<&str, Vec<i64>> = std::collections::BTreeMap::new();
        for (message, folder) in settled {
            by_folder.entry(*folder).or_default().push(*message);
        }
        let mut tx = self.pool.begin().await?;
        for (folder, ids) in by_folder {
            for chunk in ids.chunks(IN_LIST_CHUNK) {
                let sql = format!(
                    "UPDATE messages SET settled_at = $1, settled_folder = $2 WHERE id IN ({})",
                    placeholders(3, chunk.len())
                );
                let mut update = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(folder);
                for id in chunk {
                    update = update.bind(*id);
                }
                update.execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records that the message left the inbox for `folder`.
    pub async fn mark_settled(&self, message: i64, folder: &str) -> Result<(), StoreError> {
        self.mark_settled_many(&[(message, folder)]).await
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

    pub async fn message_status(&self, message: i64) -> Result<Option<String>, StoreError> {
        let row =
            sqlx::query("SELECT status FROM messages WHERE id = $1").bind(message).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.try_get("status")).transpose()?)
    }

    /// The kind of reply queued for a message, if any.
    pub async fn reply_kind_of(&self, message: i64) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT kind FROM outbox WHERE message_id = $1 ORDER BY id LIMIT 1")
            .bind(message)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("kind")).transpose()?)
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

    /// Messages of `mailbox` filed (not just received) but never recorded as settled, whose key starts with
    /// `key_prefix`: `(id, source_key, status)`.
    pub async fn filed_not_settled(
        &self,
        mailbox: &str,
        key_prefix: &str,
    ) -> Result<Vec<(i64, String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, source_key, status FROM messages WHERE mailbox = $1 AND status <> 'received' \
             AND settled_at IS NULL AND source_key LIKE $2 ORDER BY id",
        )
        .bind(mailbox)
        .bind(format!("{}%", key_prefix.replace(['%', '_'], "")))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("id")?, r.try_get("source_key")?, r.try_get("status")?))).collect()
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

/// What the ledger already holds under a message's key.
async fn known(db: &mut AnyConnection, m: &Inbound<'_>) -> Result<Recorded, StoreError> {
    let row = sqlx::query("SELECT id, status, sha256 FROM messages WHERE mailbox = $1 AND source_key = $2")
        .bind(m.mailbox)
        .bind(m.source_key)
        .fetch_one(&mut *db)
        .await?;
    let (id, status): (i64, String) = (row.try_get("id")?, row.try_get("status")?);
    Ok(if status == "received" {
        Recorded::Unfinished { id, sha256: row.try_get("sha256")? }
    } else {
        Recorded::Filed { id, status }
    })
}

/// Messages stored per `INSERT`: 6 parameters each, far below either engine's limit.
const RECORD_CHUNK: usize = 50;

/// Values per `IN (...)` list.
pub(crate) const IN_LIST_CHUNK: usize = 500;

/// The rows of `select` whose `column` is one of `values` (at most [`IN_LIST_CHUNK`]), then `tail` (more
/// conditions, an `ORDER BY`, or nothing).
pub(crate) async fn rows_in(
    db: &mut AnyConnection,
    select: &str,
    column: &str,
    values: &[String],
    tail: &str,
) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
    let sql = format!("{select} WHERE {column} IN ({}){tail}", placeholders(1, values.len()));
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for v in values {
        query = query.bind(v);
    }
    Ok(query.fetch_all(&mut *db).await?)
}

/// `($1, $2), ($3, $4), ...`: `rows` rows of `columns` numbered placeholders for a multi-row `VALUES`.
fn value_rows(rows: usize, columns: usize) -> String {
    (0..rows).map(|r| format!("({})", placeholders(r * columns + 1, columns))).collect::<Vec<_>>().join(", ")
}

/// `$first, $first+1, ...`: `count` numbered placeholders for an `IN (...)` list.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// A batch being filed: one open transaction (see [`Store::begin_batch`]).
pub struct Batch {
    tx: sqlx::Transaction<'static, sqlx::Any>,
}

impl Batch {
    /// Opens a savepoint for one message: its lookups see everything filed earlier in the batch; dropped
    /// without `commit()`, everything it wrote is undone and the batch goes on.
    pub async fn message(&mut self) -> Result<sqlx::Transaction<'_, sqlx::Any>, StoreError> {
        Ok((&mut self.tx).begin().await?)
    }

    /// The batch's own connection, for statements outside any savepoint.
    pub fn connection(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// Commits the whole batch: one durable commit.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }

    /// Undoes everything the batch wrote.
    pub async fn rollback(self) -> Result<(), StoreError> {
        self.tx.rollback().await?;
        Ok(())
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
