//! Which migrations a ledger still lacks, read without applying any: `indexer doctor` must not
//! change what it checks.
use super::{Backend, LedgerError, Result};
use sqlx::{any::AnyPoolOptions, migrate::Migrator, Row};

static SQLITE: Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("../../migrations/postgres");

/// The migrations of this build, per backend (applied by [`super::Ledger::connect`]).
pub(super) fn migrator(backend: Backend) -> &'static Migrator {
    match backend {
        Backend::Sqlite => &SQLITE,
        Backend::Postgres => &POSTGRES,
    }
}

/// Applies the migrations this build has and the database lacks (under the migrator's lock, so
/// replicas starting together apply each once); refuses a database migrated further than this
/// build knows.
pub(super) async fn apply(backend: Backend, pool: &sqlx::AnyPool) -> Result<()> {
    let migrator = migrator(backend);
    match migrator.run(pool).await {
        Err(sqlx::migrate::MigrateError::VersionMissing(applied)) => {
            Err(LedgerError::SchemaAhead {
                applied,
                known: migrator.iter().map(|m| m.version).max().unwrap_or(0),
            })
        }
        done => Ok(done?),
    }
}

/// The migrations `url`'s database has not applied, as `version description`; empty when it is
/// up to date. A SQLite file that does not exist is an error, not created.
pub async fn pending_migrations(url: &str) -> Result<Vec<String>> {
    sqlx::any::install_default_drivers();
    let backend = super::backend_of(url).ok_or_else(|| LedgerError::UnsupportedUrl(url.into()))?;
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    let applied: Vec<i64> = match sqlx::query("SELECT version FROM _sqlx_migrations WHERE success")
        .fetch_all(&pool)
        .await
    {
        Ok(rows) => rows
            .iter()
            .map(|row| row.try_get::<i64, _>("version"))
            .collect::<Result<_, _>>()?,
        // No bookkeeping table: nothing was ever applied.
        Err(_) => vec![],
    };
    pool.close().await;
    Ok(migrator(backend)
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .map(|m| format!("{} {}", m.version, m.description))
        .collect())
}
