//! The schema migrations, compiled in per backend (`migrations/sqlite`, `migrations/postgres`), so the
//! binary needs no files beside it and the build needs no database.

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use super::Backend;

/// (version, description, SQLite text, PostgreSQL text). Append; never edit a released migration.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "ledger",
        include_str!("../../migrations/sqlite/0001_ledger.sql"),
        include_str!("../../migrations/postgres/0001_ledger.sql"),
    ),
    (
        2,
        "registry",
        include_str!("../../migrations/sqlite/0002_registry.sql"),
        include_str!("../../migrations/postgres/0002_registry.sql"),
    ),
    (
        3,
        "parts_and_delay",
        include_str!("../../migrations/sqlite/0003_parts_and_delay.sql"),
        include_str!("../../migrations/postgres/0003_parts_and_delay.sql"),
    ),
    (
        4,
        "mailbox_leases",
        include_str!("../../migrations/sqlite/0004_mailbox_leases.sql"),
        include_str!("../../migrations/postgres/0004_mailbox_leases.sql"),
    ),
    (
        5,
        "outbox_sender_index",
        include_str!("../../migrations/sqlite/0005_outbox_sender_index.sql"),
        include_str!("../../migrations/postgres/0005_outbox_sender_index.sql"),
    ),
    (
        6,
        "message_raw",
        include_str!("../../migrations/sqlite/0006_message_raw.sql"),
        include_str!("../../migrations/postgres/0006_message_raw.sql"),
    ),
];

pub fn migrator(backend: Backend) -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .map(|(version, description, sqlite, postgres)| {
            let sql = match backend {
                Backend::Sqlite => *sqlite,
                Backend::Postgres => *postgres,
            };
            Migration::new(*version, Cow::Borrowed(*description), MigrationType::Simple, sql.into_sql_str(), false)
        })
        .collect();
    Migrator::with_migrations(migrations)
}
