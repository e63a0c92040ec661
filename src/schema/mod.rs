//! The database schema: the original service's final schema, created on an
//! empty database, or verified and adopted as it is on a database the
//! original's migrations built. Never destructive: an unexpected schema
//! stops `migrate` with a list of differences and changes nothing.
//!
//! Everything runs in one transaction under a transaction-scoped advisory
//! lock, with unnamed statements only, so `migrate` works through a pooler
//! in transaction mode and two concurrent runs cannot both apply a version.

mod expected;

use tokio_postgres::types::Type;
use tokio_postgres::{Client, Transaction};

pub use expected::{Column, TABLES, Table, differences};

/// Versioned SQL, applied in order; a version is never edited once released.
const MIGRATIONS: &[(i32, &str, &str)] =
    &[(1, "schema", include_str!("../../migrations/V1__schema.sql"))];

/// Our own record of what was applied (the original's Flyway table is left alone).
const HISTORY: &str = "public.event_recorder_schema_history";

/// Taken for the transaction only, so it cannot outlive it behind a pooler.
const LOCK_KEY: i64 = 0x6576_5f72_6563_6f72;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Versions applied now (`V1__schema`, ...).
    Applied(Vec<String>),
    /// An existing schema matched and was recorded as version 1, unchanged.
    /// `flyway` says whether the original's history table was present.
    Adopted { flyway: bool },
    /// Nothing to do.
    UpToDate,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "the database has a schema this version does not expect; nothing was changed:\n  - {}",
        .0.join("\n  - ")
    )]
    Mismatch(Vec<String>),
    #[error("database error: {0}")]
    Database(crate::database::DbError),
}

impl From<tokio_postgres::Error> for MigrateError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Database(e.into())
    }
}

/// Brings the database to the current schema (see the module docs).
pub async fn migrate(client: &mut Client) -> Result<Outcome, MigrateError> {
    let tx = client.transaction().await?;
    tx.query_typed(
        "SELECT pg_advisory_xact_lock($1)",
        &[(&LOCK_KEY, Type::INT8)],
    )
    .await?;
    let outcome = if exists(&tx, HISTORY).await? {
        apply_pending(&tx).await?
    } else {
        let present = present_tables(&tx).await?;
        if present.is_empty() {
            create_history(&tx).await?;
            apply_pending(&tx).await?
        } else {
            let found = differences(&tx).await?;
            if !found.is_empty() {
                return Err(MigrateError::Mismatch(found));
            }
            create_history(&tx).await?;
            let (version, name, _) = MIGRATIONS[0];
            record(&tx, version, name, "adopted").await?;
            let flyway = exists(&tx, "public.flyway_schema_history").await?;
            // Versions after the first change the schema; apply them as usual.
            match apply_pending(&tx).await? {
                Outcome::Applied(later) if !later.is_empty() => Outcome::Applied(later),
                _ => Outcome::Adopted { flyway },
            }
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

async fn exists(tx: &Transaction<'_>, table: &str) -> Result<bool, tokio_postgres::Error> {
    let row = tx
        .query_typed_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[(&table, Type::TEXT)],
        )
        .await?;
    Ok(row.get(0))
}

/// The expected tables that exist already.
async fn present_tables(tx: &Transaction<'_>) -> Result<Vec<String>, tokio_postgres::Error> {
    let mut present = Vec::new();
    for table in TABLES
        .iter()
        .map(Table::qualified)
        .chain(["billing.billing_status".into()])
    {
        if exists(tx, &table).await? {
            present.push(table);
        }
    }
    Ok(present)
}

async fn create_history(tx: &Transaction<'_>) -> Result<(), tokio_postgres::Error> {
    tx.batch_execute(&format!(
        "CREATE TABLE {HISTORY} (
             version    integer     PRIMARY KEY,
             name       text        NOT NULL,
             how        text        NOT NULL CHECK (how IN ('applied', 'adopted')),
             applied_at timestamptz NOT NULL DEFAULT now()
         )"
    ))
    .await
}

async fn record(
    tx: &Transaction<'_>,
    version: i32,
    name: &str,
    how: &str,
) -> Result<(), tokio_postgres::Error> {
    tx.query_typed(
        &format!("INSERT INTO {HISTORY} (version, name, how) VALUES ($1, $2, $3)"),
        &[
            (&version, Type::INT4),
            (&name, Type::TEXT),
            (&how, Type::TEXT),
        ],
    )
    .await
    .map(drop)
}

async fn apply_pending(tx: &Transaction<'_>) -> Result<Outcome, tokio_postgres::Error> {
    let done: Vec<i32> = tx
        .query_typed(&format!("SELECT version FROM {HISTORY}"), &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS {
        if done.contains(&version) {
            continue;
        }
        tx.batch_execute(sql).await?;
        record(tx, version, name, "applied").await?;
        applied.push(format!("V{version}__{name}"));
    }
    Ok(if applied.is_empty() {
        Outcome::UpToDate
    } else {
        Outcome::Applied(applied)
    })
}
