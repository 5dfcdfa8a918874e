//! The SQLite ledger's group-committing writer. A request's writes (hold, mark served, charge,
//! release) are queued to one task, which applies every write waiting in the queue in one
//! transaction and answers each caller once that transaction is committed: one commit (one
//! fsync) for many requests instead of one each. The writes run one after another inside the
//! batch, with the same conditional statements as alone, so no batch can overdraw; a refusal
//! leaves no partial effect (see `spend`), and if a statement fails the batch is rolled back
//! and each write is applied again in a transaction of its own, so one bad write never fails
//! its neighbours.
use super::{
    keys::KeyLimit,
    reservations::{Charge, Hold, Reservation, Settlement},
    spend::{charge_in, hold_in, release_in, served_in},
    usage::UsageRecord,
    LedgerError, Result,
};
use futures_util::FutureExt;
use sqlx::{AnyConnection, AnyPool};
use std::panic::AssertUnwindSafe;
use tokio::sync::{mpsc, oneshot};

/// The most writes one transaction commits; more wait for the next one.
const MAX_BATCH: usize = 512;
/// Writes waiting beyond this make their callers wait to queue (backpressure).
const QUEUE: usize = 8192;

/// Signs the debit event of a charge, given what was charged (see `Ledger::charge`).
pub(super) type Announce = Box<dyn Fn(i64) -> Option<(String, String)> + Send + Sync>;

/// A write to apply, owning its data (it crosses to the writer task).
pub(super) enum Op {
    Hold(OwnedHold),
    Served { id: String, at: i64 },
    Charge(OwnedCharge, Announce),
    Release(String),
}

/// What a write did.
pub(super) enum Done {
    Held(Reservation),
    Served(bool),
    Charged(Settlement),
    Released(bool),
}

impl Done {
    /// The writer answered a write with another write's kind of answer (a bug, not input).
    pub(super) fn unexpected(&self) -> LedgerError {
        LedgerError::WriterStopped("answered with another write's result")
    }
}

/// Handle to the writer task; the task ends when every handle is gone.
#[derive(Debug, Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
}

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Done>>,
}

impl Writer {
    /// Starts the writer on `pool` (the ledger's one write connection).
    pub(super) fn start(pool: AnyPool) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, queue));
        Self { jobs }
    }

    /// Queues `op` and waits until the transaction that applied it is committed.
    pub(super) async fn submit(&self, op: Op) -> Result<Done> {
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

async fn run(pool: AnyPool, mut queue: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // A panic answers this batch's callers with an error (their replies are dropped)
        // and the writer goes on with the next batch.
        let committed = AssertUnwindSafe(commit(&pool, &mut batch)).catch_unwind();
        if committed.await.is_err() {
            tracing::error!("the ledger writer panicked applying a batch; its writes failed");
        }
        batch.clear();
    }
}

/// Applies the batch in one transaction and answers each caller; on a failed statement or
/// commit, applies each write alone.
async fn commit(pool: &AnyPool, batch: &mut Vec<Job>) {
    match apply_together(pool, batch).await {
        Ok(results) => {
            for (job, result) in batch.drain(..).zip(results) {
                let _ = job.reply.send(result);
            }
        }
        Err(error) => {
            tracing::warn!(%error, writes = batch.len(), "a batch failed; applying its writes one by one");
            for job in batch.drain(..) {
                let result = apply_alone(pool, &job.op).await;
                let _ = job.reply.send(result);
            }
        }
    }
}

async fn apply_together(pool: &AnyPool, batch: &[Job]) -> Result<Vec<Result<Done>>> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        match apply(&mut tx, &job.op).await {
            Err(error) if !error.is_refusal() => return Err(error),
            result => results.push(result),
        }
    }
    tx.commit().await?;
    Ok(results)
}

async fn apply_alone(pool: &AnyPool, op: &Op) -> Result<Done> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let done = apply(&mut tx, op).await?;
    tx.commit().await?;
    Ok(done)
}

async fn apply(conn: &mut AnyConnection, op: &Op) -> Result<Done> {
    Ok(match op {
        Op::Hold(hold) => Done::Held(hold_in(conn, &hold.borrowed()).await?),
        Op::Served { id, at } => Done::Served(served_in(conn, id, *at).await?),
        Op::Charge(charge, announce) => {
            Done::Charged(charge_in(conn, &charge.borrowed(), announce.as_ref()).await?)
        }
        Op::Release(id) => Done::Released(release_in(conn, id).await?),
    })
}

/// A [`Hold`] that owns its strings.
pub(super) struct OwnedHold {
    id: String,
    user: String,
    amount: i64,
    minimum: Option<i64>,
    ttl_seconds: i64,
    key: Option<(String, i64, Option<i64>)>,
}

impl From<&Hold<'_>> for OwnedHold {
    fn from(hold: &Hold<'_>) -> Self {
        Self {
            id: hold.id.to_owned(),
            user: hold.user.to_owned(),
            amount: hold.amount,
            minimum: hold.minimum,
            ttl_seconds: hold.ttl_seconds,
            key: hold
                .key
                .as_ref()
                .map(|key| (key.key_id.to_owned(), key.budget, key.max_uses)),
        }
    }
}

impl OwnedHold {
    fn borrowed(&self) -> Hold<'_> {
        Hold {
            id: &self.id,
            user: &self.user,
            amount: self.amount,
            minimum: self.minimum,
            ttl_seconds: self.ttl_seconds,
            key: self
                .key
                .as_ref()
                .map(|(key_id, budget, max_uses)| KeyLimit {
                    key_id,
                    budget: *budget,
                    max_uses: *max_uses,
                }),
        }
    }
}

/// A [`Charge`] that owns its strings.
pub(super) struct OwnedCharge {
    id: String,
    user: String,
    cost: i64,
    key_id: Option<String>,
    usage: Option<UsageRecord>,
}

impl From<&Charge<'_>> for OwnedCharge {
    fn from(charge: &Charge<'_>) -> Self {
        Self {
            id: charge.id.to_owned(),
            user: charge.user.to_owned(),
            cost: charge.cost,
            key_id: charge.key_id.map(str::to_owned),
            usage: charge.usage.clone(),
        }
    }
}

impl OwnedCharge {
    fn borrowed(&self) -> Charge<'_> {
        Charge {
            id: &self.id,
            user: &self.user,
            cost: self.cost,
            key_id: self.key_id.as_deref(),
            usage: self.usage.clone(),
        }
    }
}
