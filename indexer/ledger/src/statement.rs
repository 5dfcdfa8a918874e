//! What the gateway tells a wallet (and anyone checking its books) about the ledger: a
//! wallet's entries, row by row with the event that announced each, so `indexer verify` can
//! match every row to a public fact and name the row that has none.
use super::{Ledger, Result};
use serde::{Deserialize, Serialize};
use sqlx::Row;

/// The most entries one statement page holds.
pub const STATEMENT_PAGE: i64 = 1_000;

/// One ledger entry of a wallet, as `GET /v1/statement` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementEntry {
    pub id: String,
    /// `credit` or `debit`.
    pub kind: String,
    /// Signed: positive credits, negative debits.
    pub tokens: i64,
    /// `applied`, `pending` (a credit waiting for its payment) or `rejected`.
    pub status: String,
    /// The payment (credit) or request (debit) it accounts for.
    pub reference: Option<String>,
    /// The signed Nostr event that announced it, when one did.
    pub event_id: Option<String>,
    pub created_at: i64,
}

impl Ledger {
    /// `user`'s entries with ids after `after`, in id order, at most `limit` (capped at
    /// [`STATEMENT_PAGE`]): a page; the next starts after its last id.
    pub async fn statement(
        &self,
        user: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<StatementEntry>> {
        let rows = sqlx::query(
            "SELECT id, kind, tokens, status, reference, event_id, created_at FROM entries
             WHERE user_key = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(user)
        .bind(after)
        .bind(limit.clamp(1, STATEMENT_PAGE))
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StatementEntry {
                    id: row.try_get("id")?,
                    kind: row.try_get("kind")?,
                    tokens: row.try_get("tokens")?,
                    status: row.try_get("status")?,
                    reference: row.try_get("reference")?,
                    event_id: row.try_get("event_id")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }
}
