//! The ledger: the one SQL database the indexer and the proxy share.
//!
//! It holds, per user, what was credited (paid on chain, announced by a controller), debited
//! (usage, announced by a proxy) and reserved (in-flight requests), and keeps
//! `available = credited − debited − reserved ≥ 0` under any concurrency: the database enforces
//! it with a `CHECK`, and every write that could break it is one conditional statement inside
//! a write transaction. SQLite (a file, the default) or Postgres (several proxy replicas), by URL.
mod attest;
mod audit;
mod batch;
mod cashu;
mod checkpoint;
mod clock;
mod credits;
mod cursors;
mod entries;
mod escrow;
mod keys;
mod logins;
mod migrations;
mod outbox;
mod payments;
mod rate_periods;
mod rates;
mod requests;
mod reservations;
mod spend;
mod sql;
mod statement;
pub mod testing;
mod usage;
mod writer;
mod x402;

pub use attest::{Attested, Attestor, Rail};
pub use audit::{AuditReport, CashuTotals, UserTotals};
pub use cashu::{
    change_entry_id, CashuProof, CashuSwap, ChangeClaim, Leased, NewReceipt, Receipt, Receiving,
    Spend, SwapKind, SwapLease,
};
pub use clock::Clock;
pub use entries::{Applied, EntryKind, NewEntry};
pub use escrow::{EscrowCost, EscrowLock, EscrowRow, EscrowState};
pub use keys::{KeyBudget, KeyLimit, KeyRevocation};
pub use migrations::pending_migrations;
pub use outbox::{Announcement, OutboxEvent};
pub use payments::{tokens_for_lamports, tokens_for_units, PaidIn, Payment};
pub use rate_periods::RatePeriod;
pub use rates::{RateLimit, RateWindow};
pub use requests::{RequestRecord, RequestState};
pub use reservations::{ExpiredCharge, Expiry};
pub use spend::{Charge, Hold, Reservation, Settlement};
pub use statement::{StatementEntry, STATEMENT_PAGE};
pub use usage::{UsageRecord, UsageRow};
pub use x402::{Unsettled, X402Payment, X402State};

use sqlx::{
    any::{install_default_drivers, AnyPoolOptions},
    postgres::{PgPool, PgPoolOptions},
    sqlite::SqliteConnectOptions,
    AnyPool, Row,
};
use std::{
    str::FromStr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Why a ledger call failed. `Insufficient` is an answer, not a fault: the caller tells the
/// user how much is needed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("insufficient balance: {needed} needed, {available} available")]
    Insufficient { needed: i64, available: i64 },
    #[error("the key's budget is exhausted: {needed} needed, {remaining} remaining")]
    KeyBudget { needed: i64, remaining: i64 },
    #[error("this single-use key has been used")]
    KeyUsedUp,
    #[error("this delegated key was revoked by its wallet")]
    KeyRevoked,
    /// The session's wallet logged it out (on any replica).
    #[error("this session was logged out; log in again")]
    SessionRevoked,
    /// The caller's window of `minute` is full: counted over every replica sharing the ledger.
    #[error("rate limited: {limit}")]
    RateLimited { limit: String, minute: i64 },
    #[error("amount out of range: {0}")]
    Amount(String),
    #[error("unsupported database URL (use sqlite:… or postgres://…): {0}")]
    UnsupportedUrl(String),
    #[error(
        "an in-memory SQLite ledger would lose every balance when the process stops; \
         name a file (sqlite:ledger.sqlite)"
    )]
    InMemory,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database: column {0} is {1}")]
    Column(usize, &'static str),
    #[error("migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The database was migrated by a newer release (a replica left behind in an upgrade):
    /// running on a schema it does not know could break the ledger's invariants.
    #[error(
        "the ledger's schema has migration {applied}, which this build does not know (it knows \
         up to {known}): this binary is older than the schema; upgrade it to the release the \
         other services run"
    )]
    SchemaAhead { applied: i64, known: i64 },
    #[error("ledger writer: {0}")]
    WriterStopped(&'static str),
    /// A hold under a request id that already holds (or held) a reservation: ids are unique.
    #[error("request {0} already has a reservation")]
    DuplicateHold(String),
    /// Another transaction took the rows this one chose (Postgres, concurrent spends of the
    /// gateway's ecash): nothing changed; choose again.
    #[error("another transaction took these rows; try again")]
    Contended,
}

impl LedgerError {
    /// The database did not answer (a server restarting or unreachable, a connection cut):
    /// nothing was done, and the same call may succeed in a moment.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed
            )
        )
    }

    /// A refusal is an answer about the request (no funds, no budget, a revoked key, a bad
    /// amount), not a fault of the database: it changed nothing and retrying will not help.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::Insufficient { .. }
                | Self::KeyBudget { .. }
                | Self::KeyUsedUp
                | Self::KeyRevoked
                | Self::SessionRevoked
                | Self::RateLimited { .. }
                | Self::Amount(_)
        )
    }
}

pub type Result<T, E = LedgerError> = std::result::Result<T, E>;

/// Which SQL engine is behind the pool; decides how write transactions start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A user's balance in tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Balance {
    pub credited: i64,
    pub debited: i64,
    pub reserved: i64,
    pub available: i64,
}

/// Handle to the ledger database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Ledger {
    /// Writes (on SQLite its one connection, which the writer holds while it commits).
    pool: AnyPool,
    /// Reads that must not queue behind writes (connections of their own: on SQLite, WAL lets
    /// them read while the writer writes).
    reads: AnyPool,
    /// The group-committing writer of requests' holds and charges.
    writer: writer::Writer,
    /// Postgres: the connections batches of entries and of payments are applied on (see
    /// `batch` and `payments`), opened when first used (only the indexer applies them): one for
    /// the relay's events, one for the chain's.
    batches: Option<PgPool>,
    backend: Backend,
    /// SQLite file databases: the connection that checkpoints the WAL.
    checkpointer: Option<AnyPool>,
    /// "Now" for back-offs and grace periods.
    clock: Clock,
    /// Announces the entries the gateway writes on its own word.
    attestor: Attestor,
}

impl Ledger {
    /// Connects (creating a SQLite file if missing) and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        install_default_drivers();
        let backend = backend_of(url).ok_or_else(|| LedgerError::UnsupportedUrl(url.to_owned()))?;
        let pool = match backend {
            // One connection: SQLite has one writer anyway, and queueing in the pool is fair
            // and async where SQLite's busy handler would sleep-poll. It never checkpoints:
            // `checkpoint` does that on its own connection.
            Backend::Sqlite => {
                if url.contains(":memory:") {
                    return Err(LedgerError::InMemory);
                }
                AnyPoolOptions::new()
                    .max_connections(1)
                    // The writer takes this connection for every batch (see `writer`).
                    .test_before_acquire(false)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            sqlx::query(
                                "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
                                 PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
                                 PRAGMA wal_autocheckpoint = 0;",
                            )
                            .execute(conn)
                            .await
                            .map(|_| ())
                        })
                    })
                    .connect(&sqlite_url_with_create(url))
                    .await?
            }
            // The ledger's other writes (credits, sweeps, the Cashu books); requests' holds and
            // charges go through the writer's own connection.
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(POSTGRES_WRITES)
                    .acquire_timeout(POSTGRES_ACQUIRE)
                    .connect(url)
                    .await?
            }
        };
        migrations::apply(backend, &pool).await?;
        let (checkpointer, reads, writer) = match backend {
            Backend::Sqlite => {
                let path = SqliteConnectOptions::from_str(url)?
                    .get_filename()
                    .to_owned();
                (
                    Some(checkpoint::start(&sqlite_url_with_create(url)).await?),
                    read_pool(url).await?,
                    writer::Writer::sqlite(&path, pool.clone())?,
                )
            }
            Backend::Postgres => (None, postgres_reads(url).await?, {
                // A connection is checked when it is used, not with an extra round trip
                // before: a batch on a broken one fails and is applied again on a new one.
                let writes = PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(POSTGRES_ACQUIRE)
                    .test_before_acquire(false)
                    .connect(url)
                    .await?;
                writer::Writer::postgres(writes)
            }),
        };
        let batches = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(
                PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(POSTGRES_ACQUIRE)
                    .connect_lazy(url)?,
            ),
        };
        Ok(Self {
            pool,
            reads,
            writer,
            batches,
            backend,
            checkpointer,
            clock: Clock::system(),
            attestor: Attestor::default(),
        })
    }

    /// The same ledger reading time from `clock` (tests move it by hand).
    pub fn with_clock(self, clock: Clock) -> Self {
        Self { clock, ..self }
    }

    /// This handle announces the entries it writes on the gateway's word (ecash and x402
    /// credits, ecash change) with `attestor`'s signed events.
    pub fn with_attestor(self, attestor: Attestor) -> Self {
        Self { attestor, ..self }
    }

    /// Unix seconds now, by this ledger's clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool, waiting for in-flight statements.
    pub async fn close(&self) {
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.close().await;
        }
        self.writer.close().await;
        if let Some(batches) = &self.batches {
            batches.close().await;
        }
        self.reads.close().await;
        self.pool.close().await
    }

    /// A write transaction that holds the write lock from its first statement (SQLite's
    /// `BEGIN IMMEDIATE`), so two writers never deadlock upgrading a read lock.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Whether the database answers (readiness).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reads).await?;
        Ok(())
    }

    /// The user's balance; zero for a user the ledger has never seen.
    pub async fn balance(&self, user: &str) -> Result<Balance> {
        let row =
            sqlx::query("SELECT credited, debited, reserved FROM balances WHERE user_key = $1")
                .bind(user)
                .fetch_optional(&self.reads)
                .await?;
        Ok(row
            .map(|row| balance_from_row(&row))
            .transpose()?
            .unwrap_or_default())
    }
}

fn balance_from_row(row: &sqlx::any::AnyRow) -> Result<Balance, sqlx::Error> {
    let credited: i64 = row.try_get("credited")?;
    let debited: i64 = row.try_get("debited")?;
    let reserved: i64 = row.try_get("reserved")?;
    Ok(Balance {
        credited,
        debited,
        reserved,
        available: credited - debited - reserved,
    })
}

/// Read-only connections to a SQLite file, beside its one write connection.
async fn read_pool(url: &str) -> Result<AnyPool> {
    Ok(AnyPoolOptions::new()
        .max_connections(4)
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::query("PRAGMA busy_timeout = 10000; PRAGMA query_only = ON;")
                    .execute(conn)
                    .await
                    .map(|_| ())
            })
        })
        .connect(&sqlite_url_with_create(url))
        .await?)
}

/// Postgres connections per process for the ledger's writes other than requests' (which the
/// writer commits on one connection of its own).
const POSTGRES_WRITES: u32 = 4;
/// Postgres connections per process for reads (balances, usage, the outbox, health).
const POSTGRES_READS: u32 = 8;
/// How long a call waits for a Postgres connection (the server restarting, or every connection
/// busy) before it fails as unavailable: a client then hears 503 and retries, rather than
/// hanging for sqlx's default half-minute.
const POSTGRES_ACQUIRE: Duration = Duration::from_secs(3);

/// Postgres connections for reads, never taken by a write. Each is checked as it is taken (a
/// round trip, off the requests' path): after the server restarted, an idle connection is
/// dead, and a read handed one would fail.
async fn postgres_reads(url: &str) -> Result<AnyPool> {
    Ok(AnyPoolOptions::new()
        .max_connections(POSTGRES_READS)
        .acquire_timeout(POSTGRES_ACQUIRE)
        .connect(url)
        .await?)
}

/// The engine a database URL names.
fn backend_of(url: &str) -> Option<Backend> {
    if url.starts_with("sqlite:") {
        Some(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Some(Backend::Postgres)
    } else {
        None
    }
}

/// `sqlite:path` with `mode=rwc` so a missing file is created.
fn sqlite_url_with_create(url: &str) -> String {
    if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// Unix seconds now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64
}

/// Converts an unsigned amount into the ledger's signed column type, refusing overflow.
pub fn to_i64(amount: u64) -> Result<i64> {
    i64::try_from(amount).map_err(|_| LedgerError::Amount(format!("{amount} exceeds i64::MAX")))
}

/// Makes sure `user` has a row, so conditional updates have something to update.
async fn ensure_user(tx: &mut impl sql::Sql, user: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO balances (user_key) VALUES ($1) ON CONFLICT (user_key) DO NOTHING",
        sql::args![user],
    )
    .await?;
    Ok(())
}

/// Takes `user`'s balance row lock for the rest of the transaction (a no-op update): writers
/// that must see each other's rows (a credit and its payment) serialise on it.
async fn lock_user(tx: &mut sqlx::AnyConnection, user: &str) -> Result<()> {
    sqlx::query("UPDATE balances SET credited = credited WHERE user_key = $1")
        .bind(user)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
