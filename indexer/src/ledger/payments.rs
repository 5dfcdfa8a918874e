//! On-chain `Paid` events, the proof behind every credit.
use super::{entries::credit, entries::set_status, now, to_i64, Ledger, Result};
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
    pub slot: u64,
}

impl Ledger {
    /// Records a payment once, and applies the credits that were waiting for it.
    /// Returns false when the payment was already known.
    pub async fn record_payment(&self, payment: &Payment) -> Result<bool> {
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO payments (id, signature, user_key, namespace_id, nonce, lamports, slot, seen_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        )
        .bind(format!("{}:{}", payment.signature, payment.index))
        .bind(&payment.signature)
        .bind(&payment.user)
        .bind(to_i64(payment.namespace_id)?)
        .bind(to_i64(payment.nonce)?)
        .bind(to_i64(payment.lamports)?)
        .bind(to_i64(payment.slot)?)
        .bind(now())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            let waiting = sqlx::query(
                "SELECT id, tokens FROM entries
                 WHERE kind = 'credit' AND status = 'pending' AND reference = $1 AND user_key = $2",
            )
            .bind(&payment.signature)
            .bind(&payment.user)
            .fetch_all(&mut *tx)
            .await?;
            for row in waiting {
                let (id, tokens): (String, i64) = (row.try_get("id")?, row.try_get("tokens")?);
                credit(&mut tx, &payment.user, tokens).await?;
                set_status(&mut tx, &id, "applied").await?;
            }
        }
        tx.commit().await?;
        Ok(inserted == 1)
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
            "SELECT id, signature, lamports, slot FROM payments
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
            slot: row.try_get::<i64, _>("slot")?.max(0) as u64,
        }))
    }
}
