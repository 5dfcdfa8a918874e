//! The Postgres writer: one task per process commits every waiting write in one transaction of
//! four round trips, however many requests it serves — `BEGIN`, one statement that reads and
//! locks the batch's rows, one that stores what the batch changed (see `plan`), `COMMIT` —
//! where a request alone took a dozen. Rows are locked in one order (reservations, then key
//! budgets, then balances, then rate windows, each sorted), the order every other ledger
//! transaction keeps, so replicas' batches wait for each other but never deadlock. A batch that
//! fails (a row another replica created meanwhile) is applied again one write per transaction,
//! so one bad write never fails its neighbours; one that could not reach the server is sent
//! once more on a new connection, then fails whole as unavailable (the caller answers 503).
use super::{
    ops::{next_batch, Done, Job, Op, QUEUE},
    plan::{BalanceRow, Changes, HeldRow, KeyRow, Plan, Rows, Wanted, WindowRow},
};
use crate::{now, LedgerError, Result};
use futures_util::FutureExt;
use sqlx::{PgConnection, PgPool, Row};
use std::panic::AssertUnwindSafe;
use tokio::sync::mpsc;

/// Starts the writer task, which ends when every sender is gone.
pub(super) fn start(pool: PgPool) -> mpsc::Sender<Job> {
    let (jobs, queue) = mpsc::channel(QUEUE);
    tokio::spawn(run(pool, queue));
    jobs
}

async fn run(pool: PgPool, mut queue: mpsc::Receiver<Job>) {
    let mut batch = Vec::new();
    while next_batch(&mut queue, &mut batch).await {
        // A panic answers this batch's callers with an error (their replies are dropped) and
        // the writer goes on with the next batch.
        let committed = AssertUnwindSafe(commit(&pool, &mut batch))
            .catch_unwind()
            .await;
        if committed.is_err() {
            tracing::error!("the ledger writer panicked applying a batch; its writes failed");
        }
        batch.clear();
    }
}

/// Applies the batch in one transaction and answers each caller; if that fails, applies each
/// write alone.
async fn commit(pool: &PgPool, batch: &mut Vec<Job>) {
    let ops: Vec<&Op> = batch.iter().map(|job| &job.op).collect();
    let mut applied = apply(pool, &ops).await;
    if applied.as_ref().is_err_and(LedgerError::is_unavailable) {
        // A connection the server had closed (a restart that is over, an idle timeout) fails
        // the first batch sent on it and is dropped: once more, on a new one.
        applied = apply(pool, &ops).await;
    }
    match applied {
        Ok(results) => {
            for (job, result) in batch.drain(..).zip(results) {
                let _ = job.reply.send(result);
            }
        }
        // The server is not there (restarting, unreachable): applying each write alone would
        // wait for a connection once per write. Every write of the batch fails at once.
        Err(error) if error.is_unavailable() => {
            tracing::warn!(%error, writes = batch.len(), "the ledger is unreachable; a batch failed");
            for job in batch.drain(..) {
                let unavailable = LedgerError::Database(sqlx::Error::PoolTimedOut);
                let _ = job.reply.send(Err(unavailable));
            }
        }
        Err(error) => {
            if batch.len() > 1 {
                tracing::warn!(%error, writes = batch.len(), "a batch failed; applying its writes one by one");
            }
            for job in batch.drain(..) {
                let _ = job.reply.send(apply_alone(pool, &job.op).await);
            }
        }
    }
}

/// One write in its own transaction. A row it found missing but another replica created
/// before its commit (a balance, a key's budget) is a unique violation that committed nothing:
/// it is applied again, now finding the row.
async fn apply_alone(pool: &PgPool, op: &Op) -> Result<Done> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match apply(pool, &[op]).await {
            Ok(mut results) => {
                return results
                    .pop()
                    .unwrap_or(Err(LedgerError::WriterStopped("a write had no result")))
            }
            Err(error) if attempts < RETRIES && is_unique_violation(&error) => continue,
            Err(error) => return Err(error),
        }
    }
}

/// How often a write alone is tried when other replicas keep creating its rows first.
const RETRIES: usize = 4;

fn is_unique_violation(error: &LedgerError) -> bool {
    match error {
        LedgerError::Database(sqlx::Error::Database(error)) => error.is_unique_violation(),
        _ => false,
    }
}

/// Each write's answer, all committed together; the first failure that is not a refusal
/// fails the batch, which then changes nothing.
async fn apply(pool: &PgPool, ops: &[&Op]) -> Result<Vec<Result<Done>>> {
    let wanted = Wanted::of(ops.iter().copied());
    let mut tx = pool.begin().await?;
    let rows = load(&mut tx, &wanted).await?;
    let at = now();
    let mut plan = Plan::new(rows, at);
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        match plan.apply(op) {
            Err(error) if !error.is_refusal() => return Err(error),
            result => results.push(result),
        }
    }
    let changes = plan.changes();
    if !changes.is_empty() {
        store(&mut tx, &changes, at).await?;
    }
    tx.commit().await?;
    Ok(results)
}

/// Reads and locks the batch's rows: reservations, then key budgets, then balances, then rate
/// windows (each in sorted order; a reservation's key and user with them; a missing window is
/// created, so that it is locked too), and which of its debits exist and which of its keys and
/// sessions are revoked. The keys and users are looked up as one array each (the asked ones and
/// the reservations' own): written as `= ANY($n) OR … IN (SELECT …)`, the condition could not
/// use the primary key, and every batch read every balance and every key (43 ms a batch with
/// 200,000 users, against 0.7 ms).
pub(super) const LOAD: &str = "
WITH held AS (
    SELECT id, user_key, key_id, amount, created_at, expires_at, served_at FROM reservations
    WHERE id = ANY($1) ORDER BY id FOR UPDATE
), budgets AS (
    SELECT key_id, user_key, budget, spent, reserved, uses, max_uses FROM key_budgets
    WHERE key_id = ANY($2::text[] || ARRAY(SELECT key_id FROM held)) ORDER BY key_id FOR UPDATE
), users AS (
    SELECT user_key, credited, debited, reserved FROM balances
    WHERE user_key = ANY($3::text[] || ARRAY(SELECT user_key FROM held))
    ORDER BY user_key FOR UPDATE
), windows AS (
    INSERT INTO rate_windows (caller, minute)
    SELECT * FROM unnest($5::text[], $6::int8[]) ORDER BY 1, 2
    ON CONFLICT (caller, minute) DO UPDATE SET requests = rate_windows.requests
    RETURNING caller, minute, requests, tokens
)
SELECT 'held' AS kind, id AS name, user_key AS owner, key_id AS key, amount AS a,
       created_at AS b, expires_at AS c, served_at AS d, NULL::int8 AS e FROM held
UNION ALL SELECT 'key', key_id, user_key, NULL, budget, spent, reserved, uses, max_uses
    FROM budgets
UNION ALL SELECT 'user', user_key, NULL, NULL, credited, debited, reserved, NULL, NULL
    FROM users
UNION ALL SELECT 'debit', id, NULL, NULL, NULL, NULL, NULL, NULL, NULL
    FROM entries WHERE id = ANY($4)
UNION ALL SELECT 'revoked', key_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL
    FROM key_revocations WHERE key_id = ANY($2) OR key_id = ANY($7)
UNION ALL SELECT 'window', caller, NULL, NULL, minute, requests, tokens, NULL, NULL
    FROM windows";

async fn load(conn: &mut PgConnection, wanted: &Wanted) -> Result<Rows> {
    let found = sqlx::query(LOAD)
        .bind(&wanted.reservations)
        .bind(&wanted.keys)
        .bind(&wanted.users)
        .bind(&wanted.debits)
        .bind(column(&wanted.windows, |(caller, _)| caller.as_str()))
        .bind(column(&wanted.windows, |(_, minute)| *minute))
        .bind(&wanted.sessions)
        .fetch_all(conn)
        .await?;
    let mut rows = Rows::default();
    for row in found {
        let kind: &str = row.try_get("kind")?;
        let name: String = row.try_get("name")?;
        let int = |column: &str| row.try_get::<Option<i64>, _>(column);
        let required = |column: &str| {
            int(column)?.ok_or_else(|| sqlx::Error::ColumnDecode {
                index: column.to_owned(),
                source: "a NULL where an integer belongs".into(),
            })
        };
        match kind {
            "held" => {
                let held = HeldRow {
                    user: row.try_get("owner")?,
                    amount: required("a")?,
                    key_id: row.try_get("key")?,
                    created_at: required("b")?,
                    expires_at: required("c")?,
                    served_at: int("d")?,
                };
                rows.reservations.insert(name, held);
            }
            "key" => {
                let key = KeyRow {
                    user: row.try_get("owner")?,
                    budget: required("a")?,
                    spent: required("b")?,
                    reserved: required("c")?,
                    uses: required("d")?,
                    max_uses: int("e")?,
                };
                rows.keys.insert(name, key);
            }
            "user" => {
                let balance = BalanceRow {
                    credited: required("a")?,
                    debited: required("b")?,
                    reserved: required("c")?,
                };
                rows.balances.insert(name, balance);
            }
            "debit" => {
                rows.debits.insert(name);
            }
            "window" => {
                let window = WindowRow {
                    requests: required("b")?,
                    tokens: required("c")?,
                };
                rows.windows.insert((name, required("a")?), window);
            }
            _ => {
                rows.revoked.insert(name);
            }
        }
    }
    Ok(rows)
}

/// Stores a batch's net change: every row once, in one statement. A row the batch found
/// missing but another transaction created meanwhile (a balance, a key's budget, a debit)
/// fails it with a unique violation: the batch is then applied again, one write at a time.
const STORE: &str = "
WITH gone AS (
    DELETE FROM reservations WHERE id = ANY($1::text[])
), added AS (
    INSERT INTO reservations (id, user_key, amount, created_at, expires_at, key_id, served_at)
    SELECT * FROM unnest($2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[],
                         $7::text[], $8::int8[])
), served AS (
    UPDATE reservations SET served_at = s.at
    FROM unnest($9::text[], $10::int8[]) AS s(id, at) WHERE reservations.id = s.id
), balances_changed AS (
    UPDATE balances SET debited = balances.debited + d.debited,
                        reserved = balances.reserved + d.reserved
    FROM unnest($11::text[], $12::int8[], $13::int8[]) AS d(user_key, debited, reserved)
    WHERE balances.user_key = d.user_key
), balances_added AS (
    INSERT INTO balances (user_key, debited, reserved)
    SELECT * FROM unnest($14::text[], $15::int8[], $16::int8[])
), keys_changed AS (
    UPDATE key_budgets SET spent = key_budgets.spent + d.spent,
                           reserved = key_budgets.reserved + d.reserved,
                           uses = key_budgets.uses + d.uses
    FROM unnest($17::text[], $18::int8[], $19::int8[], $20::int8[]) AS d(key_id, spent, reserved, uses)
    WHERE key_budgets.key_id = d.key_id
), keys_added AS (
    INSERT INTO key_budgets (key_id, user_key, budget, spent, reserved, uses, max_uses)
    SELECT * FROM unnest($21::text[], $22::text[], $23::int8[], $24::int8[], $25::int8[],
                         $26::int8[], $27::int8[])
), debits AS (
    INSERT INTO entries
        (id, user_key, tokens, kind, status, reference, event_id, created_at, applied_at)
    SELECT d.id, d.user_key, -d.charged, 'debit', 'applied', d.reference, d.event_id,
           $31::int8, $31::int8
    FROM unnest($28::text[], $29::text[], $30::int8[], $32::text[], $46::text[])
        AS d(id, user_key, charged, reference, event_id)
), usage AS (
    INSERT INTO request_usage
        (request_id, user_key, key_id, model, prompt_tokens, completion_tokens, cost, created_at)
    SELECT d.*, $31::int8 FROM unnest($33::text[], $34::text[], $35::text[], $36::text[],
                                      $37::int8[], $38::int8[], $39::int8[]) AS d
    ON CONFLICT (request_id) DO NOTHING
), announced AS (
    INSERT INTO outbox (dedupe_key, event_json, created_at, next_attempt_at)
    SELECT d.*, $31::int8, $31::int8 FROM unnest($40::text[], $41::text[]) AS d
    ON CONFLICT (dedupe_key) DO NOTHING
), windows_changed AS (
    UPDATE rate_windows SET requests = d.requests, tokens = d.tokens
    FROM unnest($42::text[], $43::int8[], $44::int8[], $45::int8[])
        AS d(caller, minute, requests, tokens)
    WHERE rate_windows.caller = d.caller AND rate_windows.minute = d.minute
)
SELECT 1";

/// One field of each row, as a statement's array parameter.
fn column<'a, T, U>(rows: &'a [T], field: impl Fn(&'a T) -> U) -> Vec<U> {
    rows.iter().map(field).collect()
}

/// Stores `changes`, made at `at` (unix seconds).
async fn store(conn: &mut PgConnection, changes: &Changes, at: i64) -> Result<()> {
    let (added, served) = (&changes.added, &changes.served);
    let (balances, new_balances) = (&changes.balances, &changes.new_balances);
    let (keys, new_keys) = (&changes.keys, &changes.new_keys);
    let (debits, usage, outbox) = (&changes.debits, &changes.usage, &changes.outbox);
    let windows = &changes.windows;
    sqlx::query(STORE)
        .bind(&changes.deleted)
        .bind(column(added, |(id, _)| id.as_str()))
        .bind(column(added, |(_, held)| held.user.as_str()))
        .bind(column(added, |(_, held)| held.amount))
        .bind(column(added, |(_, held)| held.created_at))
        .bind(column(added, |(_, held)| held.expires_at))
        .bind(column(added, |(_, held)| held.key_id.as_deref()))
        .bind(column(added, |(_, held)| held.served_at))
        .bind(column(served, |(id, _)| id.as_str()))
        .bind(column(served, |(_, at)| *at))
        .bind(column(balances, |(user, _)| user.as_str()))
        .bind(column(balances, |(_, delta)| delta.debited))
        .bind(column(balances, |(_, delta)| delta.reserved))
        .bind(column(new_balances, |(user, _)| user.as_str()))
        .bind(column(new_balances, |(_, row)| row.debited))
        .bind(column(new_balances, |(_, row)| row.reserved))
        .bind(column(keys, |(key_id, _)| key_id.as_str()))
        .bind(column(keys, |(_, delta)| delta.spent))
        .bind(column(keys, |(_, delta)| delta.reserved))
        .bind(column(keys, |(_, delta)| delta.uses))
        .bind(column(new_keys, |(key_id, _)| key_id.as_str()))
        .bind(column(new_keys, |(_, row)| row.user.as_str()))
        .bind(column(new_keys, |(_, row)| row.budget))
        .bind(column(new_keys, |(_, row)| row.spent))
        .bind(column(new_keys, |(_, row)| row.reserved))
        .bind(column(new_keys, |(_, row)| row.uses))
        .bind(column(new_keys, |(_, row)| row.max_uses))
        .bind(column(debits, |debit| {
            crate::entries::debit_id(&debit.request_id)
        }))
        .bind(column(debits, |debit| debit.user.as_str()))
        .bind(column(debits, |debit| debit.charged))
        .bind(at)
        .bind(column(debits, |debit| debit.request_id.as_str()))
        .bind(column(usage, |usage| usage.request_id.as_str()))
        .bind(column(usage, |usage| usage.user.as_str()))
        .bind(column(usage, |usage| usage.key_id.as_deref()))
        .bind(column(usage, |usage| usage.model.as_str()))
        .bind(column(usage, |usage| usage.prompt_tokens))
        .bind(column(usage, |usage| usage.completion_tokens))
        .bind(column(usage, |usage| usage.cost))
        .bind(column(outbox, |(key, _)| key.as_str()))
        .bind(column(outbox, |(_, json)| json.as_str()))
        .bind(column(windows, |((caller, _), _)| caller.as_str()))
        .bind(column(windows, |((_, minute), _)| *minute))
        .bind(column(windows, |(_, row)| row.requests))
        .bind(column(windows, |(_, row)| row.tokens))
        .bind(column(debits, |debit| debit.event_id.as_deref()))
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests;
