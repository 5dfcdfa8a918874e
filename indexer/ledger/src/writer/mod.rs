//! The ledger's group-committing writer: a request's writes (hold, mark served, charge,
//! release) are queued, and the writer applies every write waiting in the queue in one
//! transaction, answering each caller once that transaction is committed. One commit for many
//! requests instead of one each, and on Postgres a few round trips per batch instead of a dozen
//! per request — what lets the ledger keep up with the gateway on either engine.
//!
//! SQLite: one thread runs the statements of `spend` on its own connection (`sqlite`).
//! Postgres: one task per process reads and locks the batch's rows, applies the writes in
//! memory (`plan`) and stores the result in one statement (`postgres`).
mod ops;
mod plan;
mod postgres;
mod sqlite;

pub(crate) use ops::{unexpected, Done, Op, OwnedCharge, OwnedHold};

use crate::{LedgerError, Result};
use ops::Job;
use sqlx::{AnyPool, PgPool};
use std::path::Path;
use tokio::sync::{mpsc, oneshot};

/// Handle to the writer; the writer stops when every handle is gone.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
    /// Postgres: the writer's connection, closed with the ledger.
    connection: Option<PgPool>,
}

impl Writer {
    /// The SQLite writer for the file at `path`; `gate` is the pool (of one connection) the
    /// ledger's other writes use.
    pub(crate) fn sqlite(path: &Path, gate: AnyPool) -> Result<Self> {
        Ok(Self {
            jobs: sqlite::start(path, gate)?,
            connection: None,
        })
    }

    /// The Postgres writer, committing through `pool`.
    pub(crate) fn postgres(pool: PgPool) -> Self {
        Self {
            jobs: postgres::start(pool.clone()),
            connection: Some(pool),
        }
    }

    /// Closes the writer's own connection (Postgres), waiting for the batch in flight.
    pub(crate) async fn close(&self) {
        if let Some(connection) = &self.connection {
            connection.close().await;
        }
    }

    /// Queues `op` and waits until the transaction that applied it is committed.
    pub(crate) async fn submit(&self, op: Op) -> Result<Done> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { op, reply })
            .await
            .map_err(|_| LedgerError::WriterStopped("the writer has stopped"))?;
        answer
            .await
            .map_err(|_| LedgerError::WriterStopped("the write was dropped"))?
    }
}
