//! Budgets of delegated keys: a key's spend is held and settled in the same transaction as its
//! owner's balance, so concurrent requests on one key can never together exceed its budget,
//! and a single-use key serves exactly one request. A key its wallet revoked is refused in that
//! same transaction, so no replica's cached verdict can let it spend.
use super::{
    sql::{args, Sql},
    Ledger, LedgerError, Result,
};
use sqlx::Row;

/// The limits a delegated key was signed with; the row is created on the key's first use.
#[derive(Debug, Clone)]
pub struct KeyLimit<'a> {
    /// Identifies the signed key (a hash of it), so two keys never share a budget.
    pub key_id: &'a str,
    pub budget: i64,
    /// `Some(1)` for a single-use key.
    pub max_uses: Option<i64>,
}

/// A wallet's signed wish that one of its delegated keys stop working (the proxy checks the
/// signature; the ledger makes it hold on every replica).
#[derive(Debug, Clone)]
pub struct KeyRevocation<'a> {
    /// The revoked key's id (the hash its budget is kept under).
    pub key_id: &'a str,
    /// The key's wallet.
    pub user: &'a str,
    /// The key's own expiry: after it the key is refused anyway, so the row can go.
    pub expires_at: i64,
}

/// How long a revocation outlives its key's expiry, so a replica whose clock lags still
/// refuses the key.
const REVOCATION_MARGIN_SECONDS: i64 = 24 * 3600;

/// Where a delegated key's budget stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct KeyBudget {
    pub budget: i64,
    pub spent: i64,
    pub reserved: i64,
    pub remaining: i64,
    pub uses: i64,
    pub max_uses: Option<i64>,
}

impl Ledger {
    /// The key's budget, or `None` before its first use.
    pub async fn key_budget(&self, key_id: &str) -> Result<Option<KeyBudget>> {
        let row = sqlx::query(
            "SELECT budget, spent, reserved, uses, max_uses FROM key_budgets WHERE key_id = $1",
        )
        .bind(key_id)
        .fetch_optional(&self.reads)
        .await?;
        Ok(row.map(|row| key_budget_from_row(&row)).transpose()?)
    }

    /// Revokes a key from `now` on; true when it was not revoked before. Forgets revocations
    /// of keys long expired.
    pub async fn revoke_key(&self, revocation: &KeyRevocation<'_>, now: i64) -> Result<bool> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM key_revocations WHERE expires_at < $1")
            .bind(now.saturating_sub(REVOCATION_MARGIN_SECONDS))
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO key_revocations (key_id, user_key, expires_at, revoked_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT (key_id) DO NOTHING",
        )
        .bind(revocation.key_id)
        .bind(revocation.user)
        .bind(revocation.expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(inserted == 1)
    }

    /// Whether the key was revoked (for endpoints that take no hold).
    pub async fn key_revoked(&self, key_id: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 AS revoked FROM key_revocations WHERE key_id = $1")
            .bind(key_id)
            .fetch_optional(&self.reads)
            .await?;
        Ok(row.is_some())
    }
}

fn key_budget_from_row(row: &sqlx::any::AnyRow) -> Result<KeyBudget, sqlx::Error> {
    let (budget, spent, reserved): (i64, i64, i64) = (
        row.try_get("budget")?,
        row.try_get("spent")?,
        row.try_get("reserved")?,
    );
    Ok(KeyBudget {
        budget,
        spent,
        reserved,
        remaining: budget - spent - reserved,
        uses: row.try_get("uses")?,
        max_uses: row.try_get("max_uses")?,
    })
}

/// Holds `amount` of the key's budget and counts a use, or says why it cannot (revoked, used
/// up, over budget).
pub(super) async fn hold_key(
    tx: &mut impl Sql,
    user: &str,
    key: &KeyLimit<'_>,
    amount: i64,
) -> Result<()> {
    tx.execute(
        "INSERT INTO key_budgets (key_id, user_key, budget, max_uses) VALUES ($1, $2, $3, $4)
         ON CONFLICT (key_id) DO NOTHING",
        args![key.key_id, user, key.budget, key.max_uses],
    )
    .await?;
    let held = tx
        .execute(
            "UPDATE key_budgets SET reserved = reserved + $1, uses = uses + 1
             WHERE key_id = $2 AND user_key = $3 AND budget - spent - reserved >= $1
               AND (max_uses IS NULL OR uses < max_uses)
               AND NOT EXISTS (SELECT 1 FROM key_revocations WHERE key_id = $2)",
            args![amount, key.key_id, user],
        )
        .await?;
    if held == 1 {
        return Ok(());
    }
    let revoked = tx
        .fetch_int(
            "SELECT 1 FROM key_revocations WHERE key_id = $1",
            args![key.key_id],
        )
        .await?;
    if revoked.is_some() {
        return Err(LedgerError::KeyRevoked);
    }
    let row = tx
        .fetch_row(
            "SELECT budget - spent - reserved, uses, max_uses FROM key_budgets WHERE key_id = $1",
            args![key.key_id],
        )
        .await?
        .ok_or(LedgerError::Column(
            0,
            "missing: the key's budget row vanished",
        ))?;
    let (remaining, uses, max_uses) = (row.int(0)?, row.int(1)?, row.maybe_int(2)?);
    if max_uses.is_some_and(|max| uses >= max) {
        return Err(LedgerError::KeyUsedUp);
    }
    Err(LedgerError::KeyBudget {
        needed: amount,
        remaining,
    })
}

/// Gives back the key's hold of `held` and says what its budget still allows (`None` for a key
/// without a budget row). Called before the owner's balance row is touched: every transaction
/// takes a key's row before its owner's, so two of them never wait on each other in a cycle.
pub(super) async fn release_key_hold(
    tx: &mut impl Sql,
    key_id: &str,
    held: i64,
) -> Result<Option<i64>> {
    tx.fetch_int(
        "UPDATE key_budgets SET reserved = reserved - $1 WHERE key_id = $2
         RETURNING budget - spent - reserved",
        args![held, key_id],
    )
    .await
}

/// Records `charged` as the key's spend (after [`release_key_hold`] capped it).
pub(super) async fn spend_key(tx: &mut impl Sql, key_id: &str, charged: i64) -> Result<()> {
    tx.execute(
        "UPDATE key_budgets SET spent = spent + $1 WHERE key_id = $2",
        args![charged, key_id],
    )
    .await?;
    Ok(())
}

/// Takes back a hold [`hold_key`] just made (its owner's balance refused the same amount).
pub(super) async fn undo_key_hold(tx: &mut impl Sql, key_id: &str, amount: i64) -> Result<()> {
    tx.execute(
        "UPDATE key_budgets SET reserved = reserved - $1, uses = uses - 1 WHERE key_id = $2",
        args![amount, key_id],
    )
    .await?;
    Ok(())
}

/// Gives `amount` of the key's held budget back.
pub(super) async fn unhold_key(tx: &mut impl Sql, key_id: &str, amount: i64) -> Result<()> {
    tx.execute(
        "UPDATE key_budgets SET reserved = reserved - $1 WHERE key_id = $2",
        args![amount, key_id],
    )
    .await?;
    Ok(())
}
