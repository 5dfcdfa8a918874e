//! Where a credit meets its payment: what a transaction's payments are worth, a credit's
//! tokens added to a balance, and a pending credit claimed once. Both ways a credit becomes
//! applied use these — the credit arriving after its payment (`entries`) and the payment
//! arriving after its credit (`payments`) — so the two stay one rule.
use super::{
    attest::{Attested, Attestor, Rail},
    ensure_user, now, to_i64, LedgerError, Result,
};
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

/// A token payment the gateway settled itself (x402 `exact` and `escrow`), landed in
/// `transaction`: what [`credit_settled_payment`] records.
pub(super) struct SettledPayment<'a> {
    /// The credit entry's id (unique per payment).
    pub entry_id: String,
    pub transaction: &'a str,
    pub payer: &'a str,
    pub mint: &'a str,
    pub namespace_id: u64,
    /// Base units paid, and what they are worth.
    pub amount: i64,
    pub tokens: i64,
    pub slot: u64,
    pub at: i64,
    /// How it was paid, for its announcement.
    pub rail: Rail,
}

/// Records `payment` as a chain payment (nonce -1: it redeems no authorisation, so the
/// controller never mistakes it for a top-up) with an applied credit entry referencing it,
/// and credits its payer — inside the caller's transaction, so `audit` checks it like any
/// chain top-up.
pub(super) async fn credit_settled_payment(
    tx: &mut sqlx::AnyConnection,
    payment: &SettledPayment<'_>,
    attestor: &Attestor,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO payments (id, signature, user_key, namespace_id, nonce, lamports, tokens, slot, seen_at, mint)
         VALUES ($1, $2, $3, $4, -1, $5, $6, $7, $8, $9)",
    )
    .bind(format!("{}:0", payment.transaction))
    .bind(payment.transaction)
    .bind(payment.payer)
    .bind(to_i64(payment.namespace_id)?)
    .bind(payment.amount)
    .bind(payment.tokens)
    .bind(to_i64(payment.slot)?)
    .bind(payment.at)
    .bind(payment.mint)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO entries (id, user_key, tokens, kind, status, reference, created_at, applied_at)
         VALUES ($1, $2, $3, 'credit', 'applied', $4, $5, $5)",
    )
    .bind(&payment.entry_id)
    .bind(payment.payer)
    .bind(payment.tokens)
    .bind(payment.transaction)
    .bind(payment.at)
    .execute(&mut *tx)
    .await?;
    ensure_user(&mut *tx, payment.payer).await?;
    credit(tx, payment.payer, payment.tokens).await?;
    let attested = Attested {
        user: payment.payer,
        tokens: payment.tokens,
        reference: payment.transaction,
        rail: payment.rail,
    };
    attestor.attest_in(tx, &payment.entry_id, &attested).await
}
