//! Budgets of delegated keys: a key's spend is held and settled in the same transaction as its
//! owner's balance, so concurrent requests on one key can never together exceed its budget,
//! and a single-use key serves exactly one request.
use super::{Ledger, LedgerError, Result};
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
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| key_budget_from_row(&row)).transpose()?)
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

/// Holds `amount` of the key's budget and counts a use, or says why it cannot.
pub(super) async fn hold_key(
    tx: &mut sqlx::AnyConnection,
    user: &str,
    key: &KeyLimit<'_>,
    amount: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO key_budgets (key_id, user_key, budget, max_uses) VALUES ($1, $2, $3, $4)
         ON CONFLICT (key_id) DO NOTHING",
    )
    .bind(key.key_id)
    .bind(user)
    .bind(key.budget)
    .bind(key.max_uses)
    .execute(&mut *tx)
    .await?;
    let held = sqlx::query(
        "UPDATE key_budgets SET reserved = reserved + $1, uses = uses + 1
         WHERE key_id = $2 AND user_key = $3 AND budget - spent - reserved >= $1
           AND (max_uses IS NULL OR uses < max_uses)",
    )
    .bind(amount)
    .bind(key.key_id)
    .bind(user)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if held == 1 {
        return Ok(());
    }
    let row = sqlx::query(
        "SELECT budget, spent, reserved, uses, max_uses FROM key_budgets WHERE key_id = $1",
    )
    .bind(key.key_id)
    .fetch_one(&mut *tx)
    .await?;
    let budget = key_budget_from_row(&row)?;
    if budget.max_uses.is_some_and(|max| budget.uses >= max) {
        return Err(LedgerError::KeyUsedUp);
    }
    Err(LedgerError::KeyBudget {
        needed: amount,
        remaining: budget.remaining,
    })
}

/// Replaces the key's hold of `held` with the spend of `charged`, capped by what the budget
/// still allows; returns the capped charge.
pub(super) async fn settle_key(
    tx: &mut sqlx::AnyConnection,
    key_id: &str,
    held: i64,
    charged: i64,
) -> Result<i64> {
    let remaining: Option<i64> = sqlx::query(
        "UPDATE key_budgets SET reserved = reserved - $1 WHERE key_id = $2
         RETURNING budget - spent - reserved AS remaining",
    )
    .bind(held)
    .bind(key_id)
    .fetch_optional(&mut *tx)
    .await?
    .map(|row| row.try_get("remaining"))
    .transpose()?;
    let Some(remaining) = remaining else {
        return Ok(charged);
    };
    let charged = charged.min(remaining.max(0));
    sqlx::query("UPDATE key_budgets SET spent = spent + $1 WHERE key_id = $2")
        .bind(charged)
        .bind(key_id)
        .execute(&mut *tx)
        .await?;
    Ok(charged)
}

/// Gives `amount` of the key's held budget back.
pub(super) async fn unhold_key(
    tx: &mut sqlx::AnyConnection,
    key_id: &str,
    amount: i64,
) -> Result<()> {
    sqlx::query("UPDATE key_budgets SET reserved = reserved - $1 WHERE key_id = $2")
        .bind(amount)
        .bind(key_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
