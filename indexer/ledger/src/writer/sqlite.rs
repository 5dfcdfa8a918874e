//! The SQLite writer: one thread applies every write waiting in the queue in one transaction
//! and answers each caller once that transaction is committed: one commit (one fsync) for many
//! requests instead of one each. The writes run one after another inside the batch, with the
//! same conditional statements as alone, so no batch can overdraw; a refusal leaves no partial
//! effect (see `spend`), and if a statement fails the batch is rolled back and each write is
//! applied again in a transaction of its own, so one bad write never fails its neighbours.
//!
//! The thread owns a rusqlite connection: a statement is a call into SQLite, not a round trip
//! to another thread, which is what lets one writer keep up with every request. The ledger's
//! other writes go through sqlx's one write connection; the writer holds that connection (the
//! gate) while batches keep coming (for a short turn at most), so neither waits in SQLite's
//! busy handler for the other.
use super::ops::{Done, Job, Op, MAX_BATCH, QUEUE};
use crate::{
    spend::{charge_in, hold_in, release_in, served_in},
    sql::run_now,
    LedgerError, Result,
};
use rusqlite::{Connection, OpenFlags};
use sqlx::{pool::PoolConnection, Any, AnyPool};
use std::{
    panic::AssertUnwindSafe,
    path::Path,
    time::{Duration, Instant},
};
use tokio::{
    runtime::Handle,
    sync::mpsc::{self, error::TryRecvError},
};

/// The longest the writer keeps the ledger's other writes waiting while writes keep coming.
const GATE_TURN: Duration = Duration::from_millis(5);
/// How often the writer finishes a checkpoint itself, between two batches (see `checkpoint`).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Opens the writer's connection to the SQLite file at `path` and starts its thread, which
/// ends when every sender is gone; `gate` is the pool (of one connection) the ledger's other
/// writes use.
pub(super) fn start(path: &Path, gate: AnyPool) -> Result<mpsc::Sender<Job>> {
    let conn = open(path)?;
    let (jobs, queue) = mpsc::channel(QUEUE);
    let runtime = Handle::current();
    std::thread::Builder::new()
        .name("ledger-writer".into())
        .spawn(move || run(conn, queue, gate, runtime))
        .map_err(|_| LedgerError::WriterStopped("cannot start the writer thread"))?;
    Ok(jobs)
}

/// The writer's connection: durable commits (`synchronous = FULL`), checkpoints left to the
/// checkpointer (see `checkpoint`). The file is already in WAL mode (the pool set it).
fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_handler(Some(wait_for_other_writer))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// SQLite's own busy handler sleeps up to 100 ms between tries, which another process's
/// short write (the indexer's) turned into 100 ms stalls of every queued request; this one
/// tries again every 100 µs, for 10 s at most.
fn wait_for_other_writer(tries: i32) -> bool {
    std::thread::sleep(Duration::from_micros(100));
    tries < 100_000
}

fn run(mut conn: Connection, mut queue: mpsc::Receiver<Job>, gate: AnyPool, runtime: Handle) {
    // Giving the gate's connection back to its pool spawns a task: this thread needs the
    // runtime's context for that.
    let _context = runtime.enter();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut checkpointed = Instant::now();
    // The gate is kept across batches while writes keep coming (taking it back from the pool
    // waits for a runtime task), and given up when the queue is empty or after a turn.
    let mut held: Option<(PoolConnection<Any>, Instant)> = None;
    loop {
        let job = match queue.try_recv() {
            Ok(job) => job,
            Err(TryRecvError::Disconnected) => return,
            Err(TryRecvError::Empty) => {
                held = None;
                match queue.blocking_recv() {
                    Some(job) => job,
                    None => return,
                }
            }
        };
        batch.push(job);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if held.is_none() {
            match runtime.block_on(gate.acquire()) {
                Ok(connection) => held = Some((connection, Instant::now())),
                Err(error) => {
                    tracing::warn!(%error, "the ledger is closed; its queued writes fail");
                    for job in batch.drain(..) {
                        let closed = LedgerError::WriterStopped("the ledger is closed");
                        let _ = job.reply.send(Err(closed));
                    }
                    continue;
                }
            }
        }
        // A panic answers this batch's callers with an error (their replies are dropped) and
        // the writer goes on with the next batch.
        let applied = std::panic::catch_unwind(AssertUnwindSafe(|| commit(&mut conn, &mut batch)));
        if applied.is_err() {
            rollback(&conn);
            tracing::error!("the ledger writer panicked applying a batch; its writes failed");
        }
        batch.clear();
        if checkpointed.elapsed() >= CHECKPOINT_EVERY {
            checkpoint(&conn);
            checkpointed = Instant::now();
        }
        if held
            .as_ref()
            .is_some_and(|(_, since)| since.elapsed() >= GATE_TURN)
        {
            held = None;
        }
    }
}

/// Applies the batch in one transaction and answers each caller; on a failed statement or
/// commit, applies each write alone.
fn commit(conn: &mut Connection, batch: &mut Vec<Job>) {
    match in_transaction(conn, |conn| apply_together(conn, batch)) {
        Ok(results) => {
            for (job, result) in batch.drain(..).zip(results) {
                let _ = job.reply.send(result);
            }
        }
        Err(error) => {
            tracing::warn!(%error, writes = batch.len(), "a batch failed; applying its writes one by one");
            for job in batch.drain(..) {
                let result = in_transaction(conn, |conn| apply(conn, &job.op));
                let _ = job.reply.send(result);
            }
        }
    }
}

/// Each write's answer; the first failure that is not a refusal fails the whole batch.
fn apply_together(conn: &mut Connection, batch: &[Job]) -> Result<Vec<Result<Done>>> {
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        match apply(conn, &job.op) {
            Err(error) if !error.is_refusal() => return Err(error),
            result => results.push(result),
        }
    }
    Ok(results)
}

/// Runs `writes` in a write transaction: committed if they succeed, rolled back if not.
fn in_transaction<T>(
    conn: &mut Connection,
    writes: impl FnOnce(&mut Connection) -> Result<T>,
) -> Result<T> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let done = writes(conn).and_then(|done| {
        conn.execute_batch("COMMIT")?;
        Ok(done)
    });
    if done.is_err() {
        rollback(conn);
    }
    done
}

/// Copies the WAL's last frames into the database file and starts the WAL over. The
/// checkpointer connection copies most frames in the background, but under steady load it
/// never reaches the end (frames keep coming), and SQLite starts the WAL over only after a
/// checkpoint that reached its end and no reader still in the WAL: the file grew by hundreds
/// of megabytes a minute, slowing every commit. Here, between two batches, nothing is appended
/// meanwhile; readers get a few milliseconds to finish, else it is tried again next time.
fn checkpoint(conn: &Connection) {
    let restarted = conn
        .busy_handler(Some(wait_briefly))
        .and_then(|()| conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())));
    let restored = conn.busy_handler(Some(wait_for_other_writer));
    if let Err(error) = restarted.and(restored) {
        tracing::warn!(%error, "ledger: the writer's WAL checkpoint failed");
    }
}

/// The checkpoint's busy handler: 100 µs at a time, 5 ms at most.
fn wait_briefly(tries: i32) -> bool {
    std::thread::sleep(Duration::from_micros(100));
    tries < 50
}

/// Ends the open transaction, if any, without its changes.
fn rollback(conn: &Connection) {
    if !conn.is_autocommit() {
        if let Err(error) = conn.execute_batch("ROLLBACK") {
            tracing::error!(%error, "the ledger writer cannot roll back");
        }
    }
}

fn apply(conn: &mut Connection, op: &Op) -> Result<Done> {
    run_now(async {
        Ok(match op {
            Op::Hold(hold) => Done::Held(hold_in(conn, &hold.borrowed()).await?),
            Op::Served { id, at } => Done::Served(served_in(conn, id, *at).await?),
            Op::Charge(charge, announce) => {
                Done::Charged(charge_in(conn, &charge.borrowed(), announce.as_ref()).await?)
            }
            Op::Release(id) => Done::Released(release_in(conn, id).await?),
        })
    })
}
