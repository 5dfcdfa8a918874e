//! Throwaway databases for tests: a fresh SQLite file, or a fresh Postgres database created
//! on the local server and dropped afterwards. Used by this crate's and the proxy's tests.
use super::{Ledger, Result};
use sqlx::{Connection, Executor};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where tests find Postgres: `TEST_POSTGRES_URL`, else the local server (trust auth).
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database that exists for one test.
pub struct TempDatabase {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    SqliteFile(std::path::PathBuf),
    PostgresDatabase { admin_url: String, name: String },
}

fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl TempDatabase {
    pub fn sqlite() -> Self {
        let path = std::env::temp_dir().join(format!("{}.sqlite", unique_name("ledger")));
        Self {
            url: format!("sqlite:{}", path.display()),
            cleanup: Cleanup::SqliteFile(path),
        }
    }

    pub async fn postgres() -> Result<Self> {
        let admin_url = postgres_admin_url();
        let name = unique_name("ledger_test");
        let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await?;
        admin.close().await?;
        let base = admin_url
            .rsplit_once('/')
            .map(|(base, _)| base)
            .unwrap_or(&admin_url);
        Ok(Self {
            url: format!("{base}/{name}"),
            cleanup: Cleanup::PostgresDatabase { admin_url, name },
        })
    }

    pub async fn ledger(&self) -> Ledger {
        Ledger::connect(&self.url)
            .await
            .expect("connect to the test ledger")
    }

    /// Removes the database (call after closing every pool on it).
    pub async fn remove(self) {
        match self.cleanup {
            Cleanup::SqliteFile(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Cleanup::PostgresDatabase { admin_url, name } => {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = admin
                        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                        .await;
                    let _ = admin.close().await;
                }
            }
        }
    }
}
