//! Where a credit meets its payment: what a transaction's payments are worth, a credit's
//! tokens added to a balance, and a pending credit claimed once. Both ways a credit becomes
//! applied use these — the credit arriving after its payment (`entries`) and the payment
//! arriving after its credit (`payments`) — so the two stay one rule.
use super::{now, LedgerError, Result};
use sqlx::Row;

/// What the payments of transaction `signature` to `user` are worth together; `None` when
/// none is recorded.
pub(super) async fn payment_value(
    tx: &mut sqlx::AnyConnection,
    signature: &str,
    user: &str,
) -> Result<Option<i64>> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(tokens), 0) AS BIGINT) AS worth FROM payments
         WHERE signature = $1 AND user_key = $2",
    )
    .bind(signature)
    .bind(user)
    .fetch_one(&mut *tx)
    .await?;
    let count: i64 = row.try_get("n")?;
    Ok((count > 0).then(|| row.try_get("worth")).transpose()?)
}

/// Adds an applied credit's `tokens` to `user`'s balance (whose row the caller has locked).
pub(super) async fn credit(tx: &mut sqlx::AnyConnection, user: &str, tokens: i64) -> Result<()> {
    sqlx::query("UPDATE balances SET credited = credited + $1 WHERE user_key = $2")
        .bind(tokens)
        .bind(user)
        .execute(&mut *tx)
        .await
        .map_err(LedgerError::from)?;
    Ok(())
}

/// Moves a pending credit to `status`; false when someone else already did (the caller then
/// must not apply it).
pub(super) async fn claim_pending_credit(
    tx: &mut sqlx::AnyConnection,
    id: &str,
    status: &str,
) -> Result<bool> {
    let claimed = sqlx::query(
        "UPDATE entries SET status = $1, applied_at = $2 WHERE id = $3 AND status = 'pending'",
    )
    .bind(status)
    .bind(now())
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(claimed == 1)
}
