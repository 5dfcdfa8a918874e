//! Credits and debits, each applied once by its unique id.
//!
//! A credit counts only once the on-chain payment it references is in `payments` (until then
//! it is `pending`), and only for exactly what that payment is worth (otherwise `rejected`:
//! a credit is a function of its payment, never of what an announcement claims); a debit
//! applies only while the balance covers it (otherwise `rejected`, and the audit lists it).
//! Re-applying an id is a no-op.
use super::{
    credits::{claim_pending_credit, credit, payment_value},
    ensure_user, lock_user, now, Ledger, Result,
};
use sqlx::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Credit,
    Debit,
}

impl EntryKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EntryKind::Credit => "credit",
            EntryKind::Debit => "debit",
        }
    }
}

/// A credit or debit to apply. `tokens` is the magnitude (> 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub id: String,
    pub user: String,
    pub kind: EntryKind,
    pub tokens: i64,
    /// The chain signature (credit) or request id (debit) it accounts for.
    pub reference: Option<String>,
    /// The Nostr event that carried it.
    pub event_id: Option<String>,
    /// Who signed that event.
    pub author: Option<String>,
}

impl NewEntry {
    /// A credit for an on-chain payment. Keyed by the payment's signature, so one payment
    /// credits once however many events announce it.
    pub fn credit(
        user: &str,
        tokens: i64,
        reference: Option<&str>,
        event_id: &str,
        author: &str,
    ) -> Self {
        let id = match reference {
            Some(signature) => format!("credit:{signature}"),
            None => format!("credit-event:{event_id}"),
        };
        Self::new(
            id,
            user,
            EntryKind::Credit,
            tokens,
            reference,
            event_id,
            author,
        )
    }

    /// A debit for a served request. Keyed by the request id, so the proxy's own settlement
    /// and the indexer's copy from the relay count once.
    pub fn debit(
        user: &str,
        tokens: i64,
        reference: Option<&str>,
        event_id: &str,
        author: &str,
    ) -> Self {
        let id = match reference {
            Some(request) => debit_id(request),
            None => format!("debit-event:{event_id}"),
        };
        Self::new(
            id,
            user,
            EntryKind::Debit,
            tokens,
            reference,
            event_id,
            author,
        )
    }

    fn new(
        id: String,
        user: &str,
        kind: EntryKind,
        tokens: i64,
        reference: Option<&str>,
        event_id: &str,
        author: &str,
    ) -> Self {
        Self {
            id,
            user: user.to_owned(),
            kind,
            tokens,
            reference: reference.map(str::to_owned),
            event_id: Some(event_id.to_owned()),
            author: Some(author.to_owned()),
        }
    }
}

/// The entry id of the debit for `request_id`.
pub(crate) fn debit_id(request_id: &str) -> String {
    format!("debit:{request_id}")
}

/// What applying an entry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// Seen before; nothing changed.
    Duplicate,
    /// A credit whose payment is not on chain (yet).
    Pending,
    /// Refused (a debit the balance does not cover, or a non-positive amount); kept for the audit.
    Rejected(String),
}

impl Ledger {
    /// Applies `entry` at most once.
    pub async fn apply(&self, entry: &NewEntry) -> Result<Applied> {
        // Most debits a watcher sees were written by the proxy that settled them: a read says
        // so without taking the write lock from the proxy's writer.
        let known = sqlx::query("SELECT 1 FROM entries WHERE id = $1")
            .bind(&entry.id)
            .fetch_optional(&self.reads)
            .await?;
        if known.is_some() {
            return Ok(Applied::Duplicate);
        }
        let mut tx = self.begin().await?;
        let outcome = apply_in(&mut tx, entry).await?;
        if outcome != Applied::Duplicate {
            tx.commit().await?;
        }
        Ok(outcome)
    }

    /// Applies credits still pending after `grace_seconds` without their payment (for
    /// operators who trust their controller over a lagging chain watcher). Returns how many.
    /// Each credit is claimed with a conditional update under its user's lock, so a payment
    /// recorded at the same moment never applies it a second time.
    pub async fn apply_overdue_credits(&self, grace_seconds: i64) -> Result<u64> {
        let mut tx = self.begin().await?;
        let overdue = sqlx::query(
            "SELECT id, user_key, tokens FROM entries
             WHERE kind = 'credit' AND status = 'pending' AND created_at <= $1
             ORDER BY user_key, id",
        )
        .bind(self.now() - grace_seconds)
        .fetch_all(&mut *tx)
        .await?;
        let mut applied = 0;
        for row in &overdue {
            let (id, user, tokens): (String, String, i64) = (
                row.try_get("id")?,
                row.try_get("user_key")?,
                row.try_get("tokens")?,
            );
            lock_user(&mut tx, &user).await?;
            if claim_pending_credit(&mut tx, &id, "applied").await? {
                credit(&mut tx, &user, tokens).await?;
                applied += 1;
            }
        }
        tx.commit().await?;
        Ok(applied)
    }
}

/// Applies `entry` inside `tx` (its caller's transaction, which it leaves uncommitted):
/// [`Ledger::apply`] for one entry, the SQLite path of [`Ledger::apply_all`] for many.
pub(crate) async fn apply_in(tx: &mut sqlx::AnyConnection, entry: &NewEntry) -> Result<Applied> {
    ensure_user(&mut *tx, &entry.user).await?;
    if entry.kind == EntryKind::Credit {
        // Serialises with `record_payments` for this user: see the payments module.
        lock_user(tx, &entry.user).await?;
    }
    let inserted = sqlx::query(
        "INSERT INTO entries (id, user_key, tokens, kind, status, reference, event_id, author, created_at)
         VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&entry.id)
    .bind(&entry.user)
    .bind(signed(entry))
    .bind(entry.kind.as_str())
    .bind(&entry.reference)
    .bind(&entry.event_id)
    .bind(&entry.author)
    .bind(now())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(Applied::Duplicate);
    }

    let outcome = if entry.tokens <= 0 {
        Applied::Rejected(format!("non-positive amount {}", entry.tokens))
    } else {
        match entry.kind {
            EntryKind::Credit => {
                let worth = match &entry.reference {
                    Some(signature) => payment_value(tx, signature, &entry.user).await?,
                    None => None,
                };
                let outcome = credit_outcome(entry.tokens, worth);
                if outcome == Applied::Applied {
                    credit(tx, &entry.user, entry.tokens).await?;
                }
                outcome
            }
            EntryKind::Debit => {
                let debited = sqlx::query(
                    "UPDATE balances SET debited = debited + $1
                     WHERE user_key = $2 AND credited - debited - reserved >= $1",
                )
                .bind(entry.tokens)
                .bind(&entry.user)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if debited == 1 {
                    Applied::Applied
                } else {
                    Applied::Rejected("balance does not cover the debit".into())
                }
            }
        }
    };
    let status = match &outcome {
        Applied::Applied => "applied",
        Applied::Pending => "pending",
        _ => "rejected",
    };
    set_status(tx, &entry.id, status).await?;
    Ok(outcome)
}

/// A credit's outcome by what its payment is worth (`None`: no payment recorded yet).
pub(crate) fn credit_outcome(tokens: i64, worth: Option<i64>) -> Applied {
    match worth {
        Some(worth) if worth == tokens => Applied::Applied,
        Some(worth) => Applied::Rejected(format!(
            "credit of {tokens} tokens disagrees with its payment, worth {worth}"
        )),
        None => Applied::Pending,
    }
}

pub(crate) fn signed(entry: &NewEntry) -> i64 {
    match entry.kind {
        EntryKind::Credit => entry.tokens,
        EntryKind::Debit => -entry.tokens,
    }
}

async fn set_status(tx: &mut sqlx::AnyConnection, id: &str, status: &str) -> Result<()> {
    sqlx::query("UPDATE entries SET status = $1, applied_at = $2 WHERE id = $3")
        .bind(status)
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
