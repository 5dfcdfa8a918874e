//! On-chain `Paid` events, the proof behind every credit, and what each is worth.
//!
//! A credit and its payment usually arrive at the same moment from two sources (the
//! controller's announcement on Nostr, the chain watcher). Both writers first lock the user's
//! balance row, so whichever commits second always sees the other's row (READ COMMITTED on
//! Postgres would otherwise let both miss each other), and a pending credit is claimed with a
//! conditional update, so the grace-period sweep and a late payment never both apply it.
use super::{
    credits::{claim_pending_credit, credit, payment_value},
    ensure_user, lock_user, now, to_i64, Ledger, Result,
};
use sqlx::Row;

/// One `Paid` event, identified by its transaction signature and its position in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub signature: String,
    pub index: u32,
    pub user: String,
    pub namespace_id: u64,
    pub nonce: u64,
    pub lamports: u64,
    /// What the lamports are worth in ledger tokens at the deployment's rate: the only amount
    /// a credit for this payment may announce.
    pub tokens: i64,
    pub slot: u64,
}

/// Ledger tokens for `lamports` at `tokens_per_sol`, multiplying before dividing; `None` when
/// they overflow the ledger's integer type.
pub fn tokens_for_lamports(lamports: u64, tokens_per_sol: u64) -> Option<i64> {
    let tokens = lamports as u128 * tokens_per_sol as u128 / 1_000_000_000;
    i64::try_from(tokens).ok()
}

impl Ledger {
    /// Records a payment once, and applies the credits that were waiting for it.
    /// Returns false when the payment was already known.
    pub async fn record_payment(&self, payment: &Payment) -> Result<bool> {
        Ok(self.record_payments(std::slice::from_ref(payment)).await? == 1)
    }

    /// Records payments in one transaction (those of one chain transaction must come together:
    /// a credit announces their sum), and applies the credits waiting for them. Returns how
    /// many were new.
    pub async fn record_payments(&self, payments: &[Payment]) -> Result<usize> {
        let mut tx = self.begin().await?;
        let mut users: Vec<&str> = payments.iter().map(|p| p.user.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        for user in &users {
            ensure_user(&mut *tx, user).await?;
            lock_user(&mut tx, user).await?;
        }
        let mut new = 0;
        for payment in payments {
            new += sqlx::query(
                "INSERT INTO payments (id, signature, user_key, namespace_id, nonce, lamports, tokens, slot, seen_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
            )
            .bind(format!("{}:{}", payment.signature, payment.index))
            .bind(&payment.signature)
            .bind(&payment.user)
            .bind(to_i64(payment.namespace_id)?)
            .bind(to_i64(payment.nonce)?)
            .bind(to_i64(payment.lamports)?)
            .bind(payment.tokens)
            .bind(to_i64(payment.slot)?)
            .bind(now())
            .execute(&mut *tx)
            .await?
            .rows_affected() as usize;
        }
        if new > 0 {
            let mut signatures: Vec<(&str, &str)> = payments
                .iter()
                .map(|p| (p.signature.as_str(), p.user.as_str()))
                .collect();
            signatures.sort_unstable();
            signatures.dedup();
            for (signature, user) in signatures {
                let Some(worth) = payment_value(&mut tx, signature, user).await? else {
                    continue;
                };
                let waiting = sqlx::query(
                    "SELECT id, tokens FROM entries
                     WHERE kind = 'credit' AND status = 'pending' AND reference = $1 AND user_key = $2",
                )
                .bind(signature)
                .bind(user)
                .fetch_all(&mut *tx)
                .await?;
                for row in waiting {
                    let (id, tokens): (String, i64) = (row.try_get("id")?, row.try_get("tokens")?);
                    let agrees = tokens == worth;
                    let status = if agrees { "applied" } else { "rejected" };
                    if claim_pending_credit(&mut tx, &id, status).await? && agrees {
                        credit(&mut tx, user, tokens).await?;
                    } else if !agrees {
                        tracing::warn!(
                            credit = id,
                            tokens,
                            worth,
                            "ledger: credit disagrees with its payment; refused"
                        );
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(new)
    }

    /// The payment of `user`'s authorisation number `nonce` in `namespace_id`, if seen: how a
    /// controller that crashed mid-payment learns whether it landed.
    pub async fn payment_for(
        &self,
        user: &str,
        namespace_id: u64,
        nonce: u64,
    ) -> Result<Option<Payment>> {
        let row = sqlx::query(
            "SELECT id, signature, lamports, tokens, slot FROM payments
             WHERE user_key = $1 AND namespace_id = $2 AND nonce = $3",
        )
        .bind(user)
        .bind(to_i64(namespace_id)?)
        .bind(to_i64(nonce)?)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let id: String = row.try_get("id")?;
        let index = id
            .rsplit(':')
            .next()
            .and_then(|i| i.parse().ok())
            .unwrap_or(0);
        Ok(Some(Payment {
            signature: row.try_get("signature")?,
            index,
            user: user.to_owned(),
            namespace_id,
            nonce,
            lamports: row.try_get::<i64, _>("lamports")?.max(0) as u64,
            tokens: row.try_get("tokens")?,
            slot: row.try_get::<i64, _>("slot")?.max(0) as u64,
        }))
    }
}
