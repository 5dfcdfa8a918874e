//! Reserving the worst case before an upstream call, then settling the actual cost.
//!
//! `reserve` is one conditional UPDATE (`… WHERE credited − debited − reserved ≥ amount`), atomic
//! on both backends, so concurrent requests can never together reserve more than the balance.
//! `settle` replaces the reservation with the actual cost (never more than the reservation plus
//! what is still available), records the debit and queues its Nostr event, in one transaction.
use super::{ensure_user, entries::debit_id, now, outbox::enqueue_in, Ledger, LedgerError, Result};
use sqlx::Row;

/// A held amount, released by `settle`/`release` or when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: String,
    pub user: String,
    pub amount: i64,
    pub expires_at: i64,
}

/// What a settlement charged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub charged: i64,
    /// What the actual cost exceeded the reservation and the remaining balance by (not charged).
    pub shortfall: i64,
    /// False when this request was settled before (nothing changed).
    pub newly_settled: bool,
}

impl Ledger {
    /// Holds `amount` of `user`'s balance under `id` for `ttl_seconds`.
    pub async fn reserve(
        &self,
        user: &str,
        id: &str,
        amount: i64,
        ttl_seconds: i64,
    ) -> Result<Reservation> {
        if amount <= 0 {
            return Err(LedgerError::Amount(format!("reservation of {amount}")));
        }
        let mut tx = self.begin().await?;
        let held = sqlx::query(
            "UPDATE balances SET reserved = reserved + $1
             WHERE user_key = $2 AND credited - debited - reserved >= $1",
        )
        .bind(amount)
        .bind(user)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if held == 0 {
            drop(tx);
            let available = self.balance(user).await?.available;
            return Err(LedgerError::Insufficient {
                needed: amount,
                available,
            });
        }
        let expires_at = now() + ttl_seconds;
        sqlx::query("INSERT INTO reservations (id, user_key, amount, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(user)
            .bind(amount)
            .bind(now())
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Reservation {
            id: id.to_owned(),
            user: user.to_owned(),
            amount,
            expires_at,
        })
    }

    /// Replaces reservation `id` with the actual `cost`. `announce(charged)` returns the signed
    /// debit event to queue (dedupe key, JSON), or `None` when nothing is charged.
    /// If the reservation already expired, the cost is still charged from what is available.
    pub async fn settle(
        &self,
        id: &str,
        user: &str,
        cost: i64,
        announce: impl FnOnce(i64) -> Option<(String, String)>,
    ) -> Result<Settlement> {
        let cost = cost.max(0);
        let mut tx = self.begin().await?;
        ensure_user(&mut tx, user).await?;
        let held: i64 = sqlx::query("DELETE FROM reservations WHERE id = $1 RETURNING amount")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.try_get("amount"))
            .transpose()?
            .unwrap_or(0);
        let entry = sqlx::query(
            "INSERT INTO entries (id, user_key, tokens, kind, status, reference, created_at, applied_at)
             VALUES ($1, $2, 0, 'debit', 'applied', $3, $4, $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(debit_id(id))
        .bind(user)
        .bind(id)
        .bind(now())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if entry == 0 {
            // Settled before: only give back what this reservation (if any) still held.
            unreserve(&mut tx, user, held).await?;
            tx.commit().await?;
            return Ok(Settlement {
                charged: 0,
                shortfall: 0,
                newly_settled: false,
            });
        }
        let available: i64 = sqlx::query(
            "UPDATE balances SET reserved = reserved - $1 WHERE user_key = $2
             RETURNING credited - debited - reserved AS available",
        )
        .bind(held)
        .bind(user)
        .fetch_one(&mut *tx)
        .await?
        .try_get("available")?;
        let charged = cost.min(available.max(0));
        sqlx::query("UPDATE balances SET debited = debited + $1 WHERE user_key = $2")
            .bind(charged)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE entries SET tokens = $1 WHERE id = $2")
            .bind(-charged)
            .bind(debit_id(id))
            .execute(&mut *tx)
            .await?;
        if let Some((dedupe_key, event_json)) = announce(charged) {
            enqueue_in(&mut tx, &dedupe_key, &event_json).await?;
        }
        tx.commit().await?;
        Ok(Settlement {
            charged,
            shortfall: cost - charged,
            newly_settled: true,
        })
    }

    /// Gives reservation `id` back in full (the upstream failed before producing anything).
    /// Returns false if it was already gone.
    pub async fn release(&self, id: &str) -> Result<bool> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("DELETE FROM reservations WHERE id = $1 RETURNING user_key, amount")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(false) };
        let (user, amount): (String, i64) = (row.try_get("user_key")?, row.try_get("amount")?);
        unreserve(&mut tx, &user, amount).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Releases every reservation past its expiry (a crashed proxy's leftovers). Returns how many.
    pub async fn expire_reservations(&self) -> Result<u64> {
        let mut tx = self.begin().await?;
        let expired = sqlx::query(
            "DELETE FROM reservations WHERE expires_at < $1 RETURNING user_key, amount",
        )
        .bind(now())
        .fetch_all(&mut *tx)
        .await?;
        for row in &expired {
            let (user, amount): (String, i64) = (row.try_get("user_key")?, row.try_get("amount")?);
            unreserve(&mut tx, &user, amount).await?;
        }
        tx.commit().await?;
        Ok(expired.len() as u64)
    }
}

/// Gives `amount` of `user`'s reserved balance back.
async fn unreserve(tx: &mut sqlx::AnyConnection, user: &str, amount: i64) -> Result<()> {
    sqlx::query("UPDATE balances SET reserved = reserved - $1 WHERE user_key = $2")
        .bind(amount)
        .bind(user)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
