//! Many credits and debits applied in one transaction: how the indexer keeps up with the relay.
//! The outcome of each entry is exactly [`Ledger::apply`]'s, in the order given.
//!
//! On Postgres a batch costs seven round trips however many entries it holds: `BEGIN`; one
//! statement that creates the batch's missing balances and locks all of them, in user order
//! (the order every ledger transaction locks balances in, so it never deadlocks with the
//! gateways' writers or `record_payments`); one that reads which entries are recorded already;
//! one that reads what their payments are worth; one that inserts the new entries with their
//! outcome; one that stores the balance changes; and `COMMIT`. The rules (a credit only for
//! exactly what its payment is worth, a debit only while the balance covers it) are applied in
//! between, in memory, entry by entry. Should another transaction record one of the entries
//! between the read and the insert (the insert says so), the batch is rolled back and read
//! again. On SQLite, where a statement costs no round trip, the entries are applied one by
//! one, in one transaction.
use super::{
    entries::{apply_in, credit_outcome, signed},
    now, Applied, Backend, EntryKind, Ledger, NewEntry, Result,
};
use sqlx::{PgConnection, Row};
use std::collections::{BTreeMap, HashMap, HashSet};

impl Ledger {
    /// Applies `entries` (each at most once) in one transaction; one outcome per entry.
    pub async fn apply_all(&self, entries: &[NewEntry]) -> Result<Vec<Applied>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        match (self.backend, &self.batches) {
            (Backend::Postgres, Some(pool)) => {
                for _ in 0..RACES {
                    let mut tx = pool.begin().await?;
                    if let Some(outcomes) = apply_together(&mut tx, entries, now()).await? {
                        tx.commit().await?;
                        return Ok(outcomes);
                    }
                    tx.rollback().await?;
                }
                self.apply_each(entries).await
            }
            _ => self.apply_each(entries).await,
        }
    }

    /// Entry by entry (each insert tells whether it is new), in one transaction.
    async fn apply_each(&self, entries: &[NewEntry]) -> Result<Vec<Applied>> {
        let mut tx = self.begin().await?;
        let mut outcomes = Vec::with_capacity(entries.len());
        for entry in entries {
            outcomes.push(apply_in(&mut tx, entry).await?);
        }
        tx.commit().await?;
        Ok(outcomes)
    }
}

/// Batches read again after another transaction recorded one of their entries first, before
/// they are applied entry by entry instead.
const RACES: usize = 3;

/// Creates the missing balances and locks every balance of the batch, in user order; returns
/// what each has available.
pub(super) const LOCK_BALANCES: &str = "
INSERT INTO balances (user_key) SELECT * FROM unnest($1::text[]) ORDER BY 1
ON CONFLICT (user_key) DO UPDATE SET credited = balances.credited
RETURNING user_key, credited - debited - reserved AS available";

/// Which of the batch's entries are recorded already.
const KNOWN: &str = "SELECT id FROM entries WHERE id = ANY($1)";

/// What the payments of each referenced transaction are worth, per user.
const PAYMENTS: &str = "
SELECT signature, user_key, CAST(SUM(tokens) AS BIGINT) AS worth FROM payments
WHERE signature = ANY($1) GROUP BY signature, user_key";

/// Inserts the new entries with their outcome; returns the ids inserted.
const INSERT_ENTRIES: &str = "
INSERT INTO entries
    (id, user_key, tokens, kind, status, reference, event_id, author, created_at, applied_at)
SELECT id, user_key, tokens, kind, status, reference, event_id, author, $9, $9
FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[])
    AS e(id, user_key, tokens, kind, status, reference, event_id, author)
ON CONFLICT (id) DO NOTHING
RETURNING id";

/// Pending entries' outcomes, and what they credited and debited per user.
pub(super) const STORE: &str = "
WITH statuses AS (
    UPDATE entries SET status = s.status, applied_at = $3
    FROM unnest($1::text[], $2::text[]) AS s(id, status) WHERE entries.id = s.id
)
UPDATE balances SET credited = balances.credited + c.credited,
                    debited = balances.debited + c.debited
FROM unnest($4::text[], $5::int8[], $6::int8[]) AS c(user_key, credited, debited)
WHERE balances.user_key = c.user_key";

/// What the batch credited and debited per user.
const CHANGE_BALANCES: &str = "
UPDATE balances SET credited = balances.credited + c.credited,
                    debited = balances.debited + c.debited
FROM unnest($1::text[], $2::int8[], $3::int8[]) AS c(user_key, credited, debited)
WHERE balances.user_key = c.user_key";

/// What the batch does to one user's balance.
#[derive(Default)]
struct Change {
    available: i64,
    credited: i64,
    debited: i64,
}

/// Applies `entries` inside `conn`'s transaction; `None` when another transaction recorded one
/// of them between this one's read and its insert (the caller rolls back and reads again).
async fn apply_together(
    conn: &mut PgConnection,
    entries: &[NewEntry],
    at: i64,
) -> Result<Option<Vec<Applied>>> {
    let users: Vec<&str> = entries
        .iter()
        .map(|e| e.user.as_str())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut balances: BTreeMap<String, Change> = BTreeMap::new();
    for row in sqlx::query(LOCK_BALANCES)
        .bind(&users)
        .fetch_all(&mut *conn)
        .await?
    {
        let available = row.try_get("available")?;
        let change = Change {
            available,
            ..Change::default()
        };
        balances.insert(row.try_get("user_key")?, change);
    }

    let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    let known: HashSet<String> = sqlx::query(KNOWN)
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| row.try_get("id"))
        .collect::<std::result::Result<_, _>>()?;

    let signatures: Vec<&str> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::Credit)
        .filter_map(|e| e.reference.as_deref())
        .collect();
    let mut worth: HashMap<(String, String), i64> = HashMap::new();
    if !signatures.is_empty() {
        for row in sqlx::query(PAYMENTS)
            .bind(&signatures)
            .fetch_all(&mut *conn)
            .await?
        {
            worth.insert(
                (row.try_get("signature")?, row.try_get("user_key")?),
                row.try_get("worth")?,
            );
        }
    }

    let mut outcomes = Vec::with_capacity(entries.len());
    let mut decided: HashSet<&str> = HashSet::new();
    let (mut new, mut statuses) = (Vec::new(), Vec::new());
    for entry in entries {
        // An entry twice in one batch is recorded once: the second is a duplicate.
        if known.contains(&entry.id) || !decided.insert(&entry.id) {
            outcomes.push(Applied::Duplicate);
            continue;
        }
        let Some(balance) = balances.get_mut(&entry.user) else {
            return Err(sqlx::Error::RowNotFound.into());
        };
        let worth = entry
            .reference
            .as_ref()
            .and_then(|signature| worth.get(&(signature.clone(), entry.user.clone())));
        let outcome = decide(entry, balance, worth.copied());
        new.push(entry);
        statuses.push(match &outcome {
            Applied::Applied => "applied",
            Applied::Pending => "pending",
            _ => "rejected",
        });
        outcomes.push(outcome);
    }
    if new.is_empty() {
        return Ok(Some(outcomes));
    }

    // Each entry is written once, with its outcome (an update of its status afterwards would
    // rewrite the row and every index over it).
    let column = |field: fn(&NewEntry) -> Option<&str>| -> Vec<Option<&str>> {
        new.iter().map(|e| field(e)).collect()
    };
    let inserted = sqlx::query(INSERT_ENTRIES)
        .bind(column(|e| Some(&e.id)))
        .bind(column(|e| Some(&e.user)))
        .bind(new.iter().map(|e| signed(e)).collect::<Vec<i64>>())
        .bind(column(|e| Some(e.kind.as_str())))
        .bind(&statuses)
        .bind(column(|e| e.reference.as_deref()))
        .bind(column(|e| e.event_id.as_deref()))
        .bind(column(|e| e.author.as_deref()))
        .bind(at)
        .fetch_all(&mut *conn)
        .await?
        .len();
    if inserted != new.len() {
        return Ok(None);
    }
    let changed: Vec<(&String, &Change)> = balances
        .iter()
        .filter(|(_, change)| change.credited != 0 || change.debited != 0)
        .collect();
    if !changed.is_empty() {
        sqlx::query(CHANGE_BALANCES)
            .bind(
                changed
                    .iter()
                    .map(|(user, _)| user.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(changed.iter().map(|(_, c)| c.credited).collect::<Vec<_>>())
            .bind(changed.iter().map(|(_, c)| c.debited).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
    }
    Ok(Some(outcomes))
}

/// One new entry's outcome by the ledger's rules, counted into its user's `balance`.
fn decide(entry: &NewEntry, balance: &mut Change, worth: Option<i64>) -> Applied {
    if entry.tokens <= 0 {
        return Applied::Rejected(format!("non-positive amount {}", entry.tokens));
    }
    match entry.kind {
        EntryKind::Credit => {
            let outcome = credit_outcome(entry.tokens, worth);
            if outcome == Applied::Applied {
                balance.credited = balance.credited.saturating_add(entry.tokens);
                balance.available = balance.available.saturating_add(entry.tokens);
            }
            outcome
        }
        EntryKind::Debit => {
            if balance.available >= entry.tokens {
                balance.debited += entry.tokens;
                balance.available -= entry.tokens;
                Applied::Applied
            } else {
                Applied::Rejected("balance does not cover the debit".into())
            }
        }
    }
}
