//! Imports the registry from CSV: the regulator's care directory (providers and locations, in either of
//! its two published layouts, matched by column name) and Postroom's people file. Every row of both files
//! is checked before anything is written, and everything is written in one transaction: a file with one
//! bad row imports nothing and the error lists each bad row by line number.
//!
//! A care-directory import is the whole list of active locations: a provider or location it no longer lists
//! is marked deregistered (never deleted, so a form quoting an old ID is told apart from a mistyped one) and
//! one listed again is re-activated. A people import replaces the people set: anyone no longer listed is
//! removed, because the file is the one authority on who may notify (a person who left must lose that at
//! once) and keeping old addresses and phone numbers would hold personal data with no use for it; the
//! `registry_imports` row keeps the counts of who was added and removed.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use sqlx::{Any, AnyConnection, Connection, Row, Transaction};

use self::directory::{Directory, parse_directory};
use self::people::{PersonRow, check_people_references, parse_people};
use crate::store::{Backend, Store, StoreError, now_ms};

mod directory;
mod people;

/// At most this many bad rows are listed; the rest are counted.
const MAX_LISTED_ERRORS: usize = 200;
/// Rows per multi-row INSERT: well under both backends' limits on bound parameters (SQLite 32,766,
/// PostgreSQL 65,535) at 11 parameters a row.
const BATCH_ROWS: usize = 500;

/// One CSV file to import: a name for messages and the import record, and its bytes.
#[derive(Debug, Clone, Copy)]
pub struct CsvInput<'a> {
    pub name: &'a str,
    pub bytes: &'a [u8],
}

/// A row that cannot be imported, with where it is and what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {}: {}", self.file, self.line, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("nothing to import: give a care directory CSV, a people CSV, or both")]
    NothingToImport,
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    /// The file as a whole cannot be read: not UTF-8, no header row, a required column missing.
    #[error("{file}{}: {message}; nothing was imported", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    File { file: String, line: Option<usize>, message: String },
    /// Rows that need fixing; nothing was imported.
    #[error("{}", rows_message(errors, *more))]
    Rows { errors: Vec<RowError>, more: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ImportError {
    fn from(e: sqlx::Error) -> Self {
        ImportError::Store(StoreError::Db(e))
    }
}

fn rows_message(errors: &[RowError], more: usize) -> String {
    let total = errors.len() + more;
    let mut out = format!(
        "nothing was imported: {total} row{} need{} fixing; correct {} and import again",
        if total == 1 { "" } else { "s" },
        if total == 1 { "s" } else { "" },
        if total == 1 { "it" } else { "them" }
    );
    for e in errors {
        out.push_str("\n  ");
        out.push_str(&e.to_string());
    }
    if more > 0 {
        out.push_str(&format!("\n  ... and {more} more"));
    }
    out
}

/// What an import changed among providers or locations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DirectoryChanges {
    /// Listed in this care directory.
    pub listed: usize,
    /// Listed for the first time.
    pub added: usize,
    /// Deregistered before, listed again.
    pub reactivated: usize,
    /// Active before, not listed now.
    pub deregistered: usize,
}

/// What an import changed among people (one count per role held).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PeopleChanges {
    pub listed: usize,
    pub added: usize,
    pub removed: usize,
}

/// The outcome of one import, also kept in `registry_imports`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    pub import_id: i64,
    /// Unix milliseconds; the date deregistrations carry.
    pub at: i64,
    pub directory_file: Option<String>,
    pub people_file: Option<String>,
    pub providers: DirectoryChanges,
    pub locations: DirectoryChanges,
    pub people: PeopleChanges,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "registry import {}", self.import_id)?;
        for (what, c) in [("providers", &self.providers), ("locations", &self.locations)] {
            if self.directory_file.is_some() {
                write!(
                    f,
                    "; {what}: {} listed, {} new, {} re-activated, {} deregistered",
                    c.listed, c.added, c.reactivated, c.deregistered
                )?;
            }
        }
        if self.people_file.is_some() {
            let p = &self.people;
            write!(f, "; people: {} roles listed, {} added, {} removed", p.listed, p.added, p.removed)?;
        }
        Ok(())
    }
}

/// Imports the care directory, the people file, or both, from files.
pub async fn import(
    store: &Store,
    locations_csv: Option<&Path>,
    people_csv: Option<&Path>,
    progress: &dyn Progress,
) -> Result<ImportReport, ImportError> {
    async fn read(path: Option<&Path>) -> Result<Option<(String, Vec<u8>)>, ImportError> {
        let Some(path) = path else { return Ok(None) };
        let name = path.display().to_string();
        match tokio::fs::read(path).await {
            Ok(bytes) => Ok(Some((name, bytes))),
            Err(source) => Err(ImportError::Read { path: name, source }),
        }
    }
    let directory = read(locations_csv).await?;
    let people = read(people_csv).await?;
    import_bytes_with(
        store,
        directory.as_ref().map(|(name, bytes)| CsvInput { name, bytes }),
        people.as_ref().map(|(name, bytes)| CsvInput { name, bytes }),
        progress,
    )
    .await
}

/// Told how an import advances, for a progress bar: the rows to write, then each batch written.
pub trait Progress: Sync {
    fn start(&self, rows: u64);
    fn advance(&self, rows: u64);
}

/// No progress reporting.
pub struct Quiet;

impl Progress for Quiet {
    fn start(&self, _: u64) {}
    fn advance(&self, _: u64) {}
}

/// Imports the care directory, the people file, or both, from bytes: checks every row of both, then
/// writes everything in one transaction.
pub async fn import_bytes(
    store: &Store,
    directory: Option<CsvInput<'_>>,
    people: Option<CsvInput<'_>>,
) -> Result<ImportReport, ImportError> {
    import_bytes_with(store, directory, people, &Quiet).await
}

/// [`import_bytes`], reporting progress as batches are written.
pub async fn import_bytes_with(
    store: &Store,
    directory: Option<CsvInput<'_>>,
    people: Option<CsvInput<'_>>,
    progress: &dyn Progress,
) -> Result<ImportReport, ImportError> {
    if directory.is_none() && people.is_none() {
        return Err(ImportError::NothingToImport);
    }
    let mut errors = Errors::default();
    let dir = directory.map(|input| parse_directory(input, &mut errors)).transpose()?;
    let people_rows = people.map(|input| parse_people(input, &mut errors)).transpose()?;
    let rows = dir.as_ref().map(|d| d.providers.len() + d.locations.len()).unwrap_or(0)
        + people_rows.as_ref().map(Vec::len).unwrap_or(0);
    progress.start(rows as u64);
    let parsed = Parsed { directory, people, dir, people_rows };

    let mut conn = store.pool().acquire().await?;
    // SQLite: a page cache big enough that a 60,000-location transaction does not spill pages to the WAL
    // and read them back; this connection's own setting is put back before it returns to the pool.
    let saved_cache = match store.backend() {
        Backend::Sqlite => {
            let size: i64 = sqlx::query("PRAGMA cache_size").fetch_one(&mut *conn).await?.try_get(0)?;
            sqlx::query("PRAGMA cache_size = -262144").execute(&mut *conn).await?;
            Some(size)
        }
        Backend::Postgres => None,
    };
    let result = write(store.backend(), &mut conn, parsed, errors, progress).await;
    if let Some(size) = saved_cache
        && let Err(e) =
            sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA cache_size = {size}"))).execute(&mut *conn).await
    {
        tracing::warn!(error = %e, "could not restore the SQLite page cache size after a registry import");
    }
    let report = result?;
    let (p, l) = (&report.providers, &report.locations);
    tracing::info!(
        import_id = report.import_id,
        providers = p.listed,
        providers_deregistered = p.deregistered,
        locations = l.listed,
        locations_deregistered = l.deregistered,
        people = report.people.listed,
        "registry imported"
    );
    Ok(report)
}

/// Both files read and checked row by row, not yet against the database.
struct Parsed<'a> {
    directory: Option<CsvInput<'a>>,
    people: Option<CsvInput<'a>>,
    dir: Option<Directory>,
    people_rows: Option<Vec<PersonRow>>,
}

/// One transaction: record the import, check the people file against the registry, write, count.
async fn write(
    backend: Backend,
    conn: &mut AnyConnection,
    parsed: Parsed<'_>,
    mut errors: Errors,
    progress: &dyn Progress,
) -> Result<ImportReport, ImportError> {
    let Parsed { directory, people, dir, people_rows } = parsed;
    let at = now_ms();
    let mut tx = conn.begin().await?;
    // Write first: on SQLite this takes the write lock before the reads below, so the transaction never
    // has to upgrade a read lock (which fails at once in WAL mode when another writer got in between).
    let import_id: i64 =
        sqlx::query("INSERT INTO registry_imports (at, locations_file, people_file) VALUES ($1, $2, $3) RETURNING id")
            .bind(at)
            .bind(directory.map(|d| d.name.to_string()))
            .bind(people.map(|p| p.name.to_string()))
            .fetch_one(&mut *tx)
            .await?
            .try_get("id")?;
    if backend == Backend::Postgres {
        // One import at a time: two interleaved would each mark the other's new rows deregistered.
        sqlx::query("SELECT pg_advisory_xact_lock(7306001)").execute(&mut *tx).await?;
    }
    let existing = Existing::load(&mut tx).await?;
    if let (Some(input), Some(rows)) = (people, &people_rows) {
        check_people_references(input.name, rows, dir.as_ref(), &existing, &mut errors);
    }
    if !errors.list.is_empty() {
        tx.rollback().await?;
        let mut list = errors.list;
        list.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        return Err(ImportError::Rows { errors: list, more: errors.more });
    }

    let mut report = ImportReport {
        import_id,
        at,
        directory_file: directory.map(|d| d.name.to_string()),
        people_file: people.map(|p| p.name.to_string()),
        ..ImportReport::default()
    };
    if let Some(dir) = &dir {
        write_directory(backend, &mut tx, dir, &existing, (import_id, at), &mut report, progress).await?;
    }
    if let Some(rows) = &people_rows {
        report.people = write_people(backend, &mut tx, rows, import_id, progress).await?;
    }
    let (p, l, pe) = (&report.providers, &report.locations, &report.people);
    sqlx::query(
        "UPDATE registry_imports SET providers_listed = $1, providers_added = $2, providers_reactivated = $3, \
         providers_deregistered = $4, locations_listed = $5, locations_added = $6, locations_reactivated = $7, \
         locations_deregistered = $8, people_listed = $9, people_added = $10, people_removed = $11 WHERE id = $12",
    )
    .bind(p.listed as i64)
    .bind(p.added as i64)
    .bind(p.reactivated as i64)
    .bind(p.deregistered as i64)
    .bind(l.listed as i64)
    .bind(l.added as i64)
    .bind(l.reactivated as i64)
    .bind(l.deregistered as i64)
    .bind(pe.listed as i64)
    .bind(pe.added as i64)
    .bind(pe.removed as i64)
    .bind(import_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(report)
}

#[derive(Default)]
struct Errors {
    list: Vec<RowError>,
    more: usize,
}

impl Errors {
    fn add(&mut self, file: &str, line: usize, message: String) {
        if self.list.len() < MAX_LISTED_ERRORS {
            self.list.push(RowError { file: file.to_string(), line, message });
        } else {
            self.more += 1;
        }
    }
}

struct ExistingLocation {
    provider_id: String,
    deregistered: bool,
}

/// What the database held before this import: to validate the people file and to count the changes.
struct Existing {
    /// provider ID -> deregistered?
    providers: HashMap<String, bool>,
    locations: HashMap<String, ExistingLocation>,
}

impl Existing {
    async fn load(tx: &mut Transaction<'_, Any>) -> Result<Existing, sqlx::Error> {
        let mut providers = HashMap::new();
        for r in sqlx::query("SELECT provider_id, deregistered_at FROM providers").fetch_all(&mut **tx).await? {
            providers.insert(r.try_get("provider_id")?, r.try_get::<Option<i64>, _>("deregistered_at")?.is_some());
        }
        let mut locations = HashMap::new();
        for r in
            sqlx::query("SELECT location_id, provider_id, deregistered_at FROM locations").fetch_all(&mut **tx).await?
        {
            locations.insert(
                r.try_get("location_id")?,
                ExistingLocation {
                    provider_id: r.try_get("provider_id")?,
                    deregistered: r.try_get::<Option<i64>, _>("deregistered_at")?.is_some(),
                },
            );
        }
        Ok(Existing { providers, locations })
    }
}

/// `INSERT ... VALUES` for `rows` rows of `params` placeholders each, then `tail` (literals) in every row.
/// SQLite gets anonymous `?` placeholders: with numbered ones sqlx looks each up by name, and SQLite's
/// name lookup scans the statement's parameter list, so binding a 5,000-parameter batch took quadratic
/// time (half of a 60,000-location import). PostgreSQL needs `$N`.
fn insert_sql(backend: Backend, head: &str, rows: usize, params: usize, tail: &str, conflict: &str) -> String {
    let mut sql = String::with_capacity(head.len() + rows * (params * 7 + tail.len() + 4) + conflict.len());
    sql.push_str(head);
    sql.push_str(" VALUES ");
    let mut n = 1;
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for p in 0..params {
            if p > 0 {
                sql.push(',');
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    sql.push('$');
                    sql.push_str(&n.to_string());
                }
            }
            n += 1;
        }
        sql.push_str(tail);
        sql.push(')');
    }
    sql.push(' ');
    sql.push_str(conflict);
    sql
}

/// `SET col = excluded.col` for the columns always written and those this file has.
fn conflict_update(key: &str, always: &[&str], optional: &[(&str, bool)]) -> String {
    let sets: Vec<String> = always
        .iter()
        .copied()
        .chain(optional.iter().filter(|(_, present)| *present).map(|(c, _)| *c))
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!("ON CONFLICT ({key}) DO UPDATE SET {}, deregistered_at = NULL", sets.join(", "))
}

async fn write_directory(
    backend: Backend,
    tx: &mut Transaction<'_, Any>,
    dir: &Directory,
    existing: &Existing,
    (import_id, at): (i64, i64),
    report: &mut ImportReport,
    progress: &dyn Progress,
) -> Result<(), sqlx::Error> {
    let pr = &dir.present;
    let tail = format!(", {import_id}, {import_id}, NULL, {at}");

    let head = "INSERT INTO providers (provider_id, name, sector, nominated_individual, main_partner, \
                registered_since, first_seen_import, last_seen_import, deregistered_at, updated_at)";
    let conflict = conflict_update(
        "provider_id",
        &["name", "last_seen_import", "updated_at"],
        &[
            ("sector", pr.sector),
            ("nominated_individual", pr.nominated_individual),
            ("main_partner", pr.main_partner),
            ("registered_since", pr.provider_since),
        ],
    );
    let full: Arc<str> = insert_sql(backend, head, BATCH_ROWS, 6, &tail, &conflict).into();
    for chunk in dir.providers.chunks(BATCH_ROWS) {
        progress.advance(chunk.len() as u64);
        let sql = if chunk.len() == BATCH_ROWS {
            full.clone()
        } else {
            insert_sql(backend, head, chunk.len(), 6, &tail, &conflict).into()
        };
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for p in chunk {
            q = q
                .bind(&p.provider_id)
                .bind(&p.name)
                .bind(&p.sector)
                .bind(&p.nominated_individual)
                .bind(&p.main_partner)
                .bind(&p.registered_since);
        }
        q.execute(&mut **tx).await?;
    }

    let head = "INSERT INTO locations (location_id, provider_id, name, also_known_as, address, postcode, phone, \
                local_authority, region, location_type, registered_since, first_seen_import, last_seen_import, \
                deregistered_at, updated_at)";
    let conflict = conflict_update(
        "location_id",
        &["provider_id", "name", "last_seen_import", "updated_at"],
        &[
            ("also_known_as", pr.also_known_as),
            ("address", pr.address),
            ("postcode", pr.postcode),
            ("phone", pr.phone),
            ("local_authority", pr.local_authority),
            ("region", pr.region),
            ("location_type", pr.location_type),
            ("registered_since", pr.location_since),
        ],
    );
    let full: Arc<str> = insert_sql(backend, head, BATCH_ROWS, 11, &tail, &conflict).into();
    for chunk in dir.locations.chunks(BATCH_ROWS) {
        progress.advance(chunk.len() as u64);
        let sql = if chunk.len() == BATCH_ROWS {
            full.clone()
        } else {
            insert_sql(backend, head, chunk.len(), 11, &tail, &conflict).into()
        };
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for l in chunk {
            q = q
                .bind(&l.location_id)
                .bind(&l.provider_id)
                .bind(&l.name)
                .bind(&l.also_known_as)
                .bind(&l.address)
                .bind(&l.postcode)
                .bind(&l.phone)
                .bind(&l.local_authority)
                .bind(&l.region)
                .bind(&l.location_type)
                .bind(&l.registered_since);
        }
        q.execute(&mut **tx).await?;
    }

    // Whatever this directory did not list is no longer registered, as of this import.
    let providers_gone = sqlx::query(
        "UPDATE providers SET deregistered_at = $1, updated_at = $1 WHERE deregistered_at IS NULL AND last_seen_import <> $2",
    )
    .bind(at)
    .bind(import_id)
    .execute(&mut **tx)
    .await?;
    let locations_gone = sqlx::query(
        "UPDATE locations SET deregistered_at = $1, updated_at = $1 WHERE deregistered_at IS NULL AND last_seen_import <> $2",
    )
    .bind(at)
    .bind(import_id)
    .execute(&mut **tx)
    .await?;

    report.providers = DirectoryChanges {
        listed: dir.providers.len(),
        added: dir.providers.iter().filter(|p| !existing.providers.contains_key(&p.provider_id)).count(),
        reactivated: dir.providers.iter().filter(|p| existing.providers.get(&p.provider_id) == Some(&true)).count(),
        deregistered: providers_gone.rows_affected() as usize,
    };
    report.locations = DirectoryChanges {
        listed: dir.locations.len(),
        added: dir.locations.iter().filter(|l| !existing.locations.contains_key(&l.location_id)).count(),
        reactivated: dir
            .locations
            .iter()
            .filter(|l| existing.locations.get(&l.location_id).is_some_and(|e| e.deregistered))
            .count(),
        deregistered: locations_gone.rows_affected() as usize,
    };
    Ok(())
}

async fn write_people(
    backend: Backend,
    tx: &mut Transaction<'_, Any>,
    rows: &[PersonRow],
    import_id: i64,
    progress: &dyn Progress,
) -> Result<PeopleChanges, sqlx::Error> {
    let mut before: HashSet<(String, String, String, String)> = HashSet::new();
    for r in sqlx::query("SELECT person_id, role, provider_id, location_id FROM people").fetch_all(&mut **tx).await? {
        before.insert((
            r.try_get("person_id")?,
            r.try_get("role")?,
            r.try_get("provider_id")?,
            r.try_get("location_id")?,
        ));
    }
    let after: HashSet<(String, String, String, String)> = rows
        .iter()
        .map(|r| (r.person_id.clone(), r.role.as_str().to_string(), r.provider_id.clone(), r.location_id.clone()))
        .collect();

    sqlx::query("DELETE FROM people").execute(&mut **tx).await?;
    let head = "INSERT INTO people (person_id, name, role, email, phone, provider_id, location_id, import_id)";
    let tail = format!(", {import_id}");
    let full: Arc<str> = insert_sql(backend, head, BATCH_ROWS, 7, &tail, "").into();
    for chunk in rows.chunks(BATCH_ROWS) {
        progress.advance(chunk.len() as u64);
        let sql = if chunk.len() == BATCH_ROWS {
            full.clone()
        } else {
            insert_sql(backend, head, chunk.len(), 7, &tail, "").into()
        };
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for p in chunk {
            q = q
                .bind(&p.person_id)
                .bind(&p.name)
                .bind(p.role.as_str())
                .bind(&p.email)
                .bind(&p.phone)
                .bind(&p.provider_id)
                .bind(&p.location_id);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(PeopleChanges {
        listed: rows.len(),
        added: after.difference(&before).count(),
        removed: before.difference(&after).count(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_sql_numbers_placeholders_across_rows() {
        assert_eq!(
            insert_sql(Backend::Postgres, "INSERT INTO t (a, b, c)", 2, 2, ", 7", ""),
            "INSERT INTO t (a, b, c) VALUES ($1,$2, 7),($3,$4, 7) "
        );
        assert_eq!(
            insert_sql(Backend::Sqlite, "INSERT INTO t (a, b)", 2, 2, "", "X"),
            "INSERT INTO t (a, b) VALUES (?,?),(?,?) X"
        );
    }
}
