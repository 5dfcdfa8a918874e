//! Reserving the worst case before an upstream call, then settling the actual cost.
//!
//! `reserve` is one conditional UPDATE (`… WHERE credited − debited − reserved ≥ amount`), atomic
//! on both backends, so concurrent requests can never together reserve more than the balance.
//! A delegated key's budget is held the same way, in the same transaction. `settle` replaces the
//! reservation with the actual cost (never more than the reservation plus what is still
//! available, nor more than the key's budget), records the debit and the usage, and queues the
//! debit's Nostr event, in one transaction. A reservation is marked served when the upstream
//! answers; the expiry sweep charges a served one whose settlement never came (the work was
//! done) and releases an unserved one.
use super::{
    ensure_user,
    entries::debit_id,
    keys::{hold_key, settle_key, unhold_key, KeyLimit},
    now,
    outbox::enqueue_in,
    usage::{record_usage, UsageRecord},
    Ledger, LedgerError, Result,
};
use sqlx::Row;

/// A held amount, released by `settle`/`release` or when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: String,
    pub user: String,
    pub amount: i64,
    pub expires_at: i64,
    /// When the upstream answered (then the expiry sweep charges rather than releases it).
    pub served_at: Option<i64>,
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

/// What an expiry sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expiry {
    /// Unserved reservations given back.
    pub released: u64,
    /// Served reservations charged, so the caller can report them.
    pub charged: Vec<ExpiredCharge>,
}

/// A served reservation the expiry sweep charged: the request's debit, to announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredCharge {
    /// The request id (the debit's reference).
    pub id: String,
    pub user: String,
    pub charged: i64,
}

/// What to hold before an upstream call.
#[derive(Debug, Clone)]
pub struct Hold<'a> {
    pub id: &'a str,
    pub user: &'a str,
    pub amount: i64,
    pub ttl_seconds: i64,
    /// The delegated key whose budget this also draws on.
    pub key: Option<KeyLimit<'a>>,
}

/// What a finished request cost.
#[derive(Debug, Clone)]
pub struct Charge<'a> {
    pub id: &'a str,
    pub user: &'a str,
    pub cost: i64,
    /// The delegated key that made the request: its spend is capped by its budget.
    pub key_id: Option<&'a str>,
    /// Recorded for the usage endpoint (`cost` there is what was actually charged).
    pub usage: Option<UsageRecord>,
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
        self.hold(&Hold {
            id,
            user,
            amount,
            ttl_seconds,
            key: None,
        })
        .await
    }

    /// Holds the amount against the user's balance and, for a delegated key, its budget (and
    /// counts one use of a single-use key). Either both hold or neither does.
    pub async fn hold(&self, hold: &Hold<'_>) -> Result<Reservation> {
        if hold.amount <= 0 {
            return Err(LedgerError::Amount(format!(
                "reservation of {}",
                hold.amount
            )));
        }
        let mut tx = self.begin().await?;
        if let Some(key) = &hold.key {
            hold_key(&mut tx, hold.user, key, hold.amount).await?;
        }
        let held = sqlx::query(
            "UPDATE balances SET reserved = reserved + $1
             WHERE user_key = $2 AND credited - debited - reserved >= $1",
        )
        .bind(hold.amount)
        .bind(hold.user)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if held == 0 {
            drop(tx);
            let available = self.balance(hold.user).await?.available;
            return Err(LedgerError::Insufficient {
                needed: hold.amount,
                available,
            });
        }
        let expires_at = now() + hold.ttl_seconds;
        sqlx::query(
            "INSERT INTO reservations (id, user_key, amount, created_at, expires_at, key_id)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(hold.id)
        .bind(hold.user)
        .bind(hold.amount)
        .bind(now())
        .bind(expires_at)
        .bind(hold.key.as_ref().map(|key| key.key_id))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Reservation {
            id: hold.id.to_owned(),
            user: hold.user.to_owned(),
            amount: hold.amount,
            expires_at,
            served_at: None,
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
        let charge = Charge {
            id,
            user,
            cost,
            key_id: None,
            usage: None,
        };
        self.charge(&charge, announce).await
    }

    /// `settle` for a proxy request: also caps the charge by the key's budget and records usage.
    pub async fn charge(
        &self,
        charge: &Charge<'_>,
        announce: impl FnOnce(i64) -> Option<(String, String)>,
    ) -> Result<Settlement> {
        let (id, user) = (charge.id, charge.user);
        let cost = charge.cost.max(0);
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
            if let Some(key_id) = charge.key_id {
                unhold_key(&mut tx, key_id, held).await?;
            }
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
        let mut charged = cost.min(available.max(0));
        if let Some(key_id) = charge.key_id {
            charged = settle_key(&mut tx, key_id, held, charged).await?;
        }
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
        if let Some(usage) = &charge.usage {
            record_usage(&mut tx, id, user, charge.key_id, usage, charged).await?;
        }
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
        let row = sqlx::query(
            "DELETE FROM reservations WHERE id = $1 RETURNING user_key, amount, key_id",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(false) };
        give_back(&mut tx, &row).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Reservation `id` while it is held (for operators and tests).
    pub async fn reservation(&self, id: &str) -> Result<Option<Reservation>> {
        let row = sqlx::query(
            "SELECT id, user_key, amount, expires_at, served_at FROM reservations WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Reservation {
            id: row.try_get("id")?,
            user: row.try_get("user_key")?,
            amount: row.try_get("amount")?,
            expires_at: row.try_get("expires_at")?,
            served_at: row.try_get("served_at")?,
        }))
    }

    /// Marks reservation `id` served: the upstream answered, so from `now` on the request owes
    /// for the work even if its settlement never comes (see [`Ledger::expire_reservations`]).
    /// Returns false when the reservation is already gone (settled or released).
    pub async fn mark_served(&self, id: &str, now: i64) -> Result<bool> {
        let mut tx = self.begin().await?;
        let marked = sqlx::query(
            "UPDATE reservations SET served_at = $1 WHERE id = $2 AND served_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(marked == 1)
    }

    /// The sweep for reservations past their expiry at `now` (a crashed proxy's leftovers, or a
    /// settlement that kept failing). An unserved one is released; a served one (the upstream
    /// answered) is charged its reserved amount as the request's debit entry, within the key's
    /// budget, and `announce` gives the signed debit event to queue with it, as `settle` does.
    pub async fn expire_reservations(
        &self,
        now: i64,
        mut announce: impl FnMut(&ExpiredCharge) -> Option<(String, String)>,
    ) -> Result<Expiry> {
        let mut tx = self.begin().await?;
        let expired = sqlx::query(
            "DELETE FROM reservations WHERE expires_at < $1
             RETURNING id, user_key, amount, key_id, served_at",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut expiry = Expiry::default();
        for row in &expired {
            if row.try_get::<Option<i64>, _>("served_at")?.is_none() {
                give_back(&mut tx, row).await?;
                expiry.released += 1;
                continue;
            }
            let id: String = row.try_get("id")?;
            let user: String = row.try_get("user_key")?;
            let amount: i64 = row.try_get("amount")?;
            let entry = sqlx::query(
                "INSERT INTO entries (id, user_key, tokens, kind, status, reference, created_at, applied_at)
                 VALUES ($1, $2, 0, 'debit', 'applied', $3, $4, $4) ON CONFLICT (id) DO NOTHING",
            )
            .bind(debit_id(&id))
            .bind(&user)
            .bind(&id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if entry == 0 {
                // Debited before (a late settlement won): only the hold is left to give back.
                give_back(&mut tx, row).await?;
                continue;
            }
            unreserve(&mut tx, &user, amount).await?;
            let mut charged = amount;
            if let Some(key_id) = row.try_get::<Option<String>, _>("key_id")? {
                charged = settle_key(&mut tx, &key_id, amount, amount).await?;
            }
            sqlx::query("UPDATE balances SET debited = debited + $1 WHERE user_key = $2")
                .bind(charged)
                .bind(&user)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE entries SET tokens = $1 WHERE id = $2")
                .bind(-charged)
                .bind(debit_id(&id))
                .execute(&mut *tx)
                .await?;
            let expired = ExpiredCharge { id, user, charged };
            if let Some((dedupe_key, event_json)) = announce(&expired).filter(|_| charged > 0) {
                enqueue_in(&mut tx, &dedupe_key, &event_json).await?;
            }
            expiry.charged.push(expired);
        }
        tx.commit().await?;
        Ok(expiry)
    }

    /// The sweep for a process that cannot sign debits (the indexer): releases the unserved
    /// reservations past their expiry at `now` and leaves the served ones to a proxy's
    /// [`Ledger::expire_reservations`]. Returns how many it released.
    pub async fn release_expired_unserved(&self, now: i64) -> Result<u64> {
        let mut tx = self.begin().await?;
        let expired = sqlx::query(
            "DELETE FROM reservations WHERE expires_at < $1 AND served_at IS NULL
             RETURNING user_key, amount, key_id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        for row in &expired {
            give_back(&mut tx, row).await?;
        }
        tx.commit().await?;
        Ok(expired.len() as u64)
    }
}

/// Gives a deleted reservation row's amount back to its user and key.
async fn give_back(tx: &mut sqlx::AnyConnection, row: &sqlx::any::AnyRow) -> Result<()> {
    let (user, amount): (String, i64) = (row.try_get("user_key")?, row.try_get("amount")?);
    unreserve(tx, &user, amount).await?;
    if let Some(key_id) = row.try_get::<Option<String>, _>("key_id")? {
        unhold_key(tx, &key_id, amount).await?;
    }
    Ok(())
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
