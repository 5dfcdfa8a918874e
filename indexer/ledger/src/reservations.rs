//! Reserving the worst case before an upstream call, then settling the actual cost.
//!
//! `reserve` holds only what the balance still has (`credited − debited − reserved ≥ amount`),
//! checked with the balance row locked, so concurrent requests — on one process or several
//! sharing the database — can never together reserve more than the balance. A delegated key's
//! budget is held the same way, in the same transaction. `settle` replaces the reservation
//! with the actual cost (never more than the reservation plus what is still available, nor
//! more than the key's budget), records the debit and the usage, and queues the debit's Nostr
//! event, in one transaction. These writes go through the `writer`, which commits many
//! requests' writes together. A reservation is marked served when the upstream answers; the
//! expiry sweep charges a served one whose settlement never came (the work was done) and
//! releases an unserved one.
use super::{
    keys::{release_key_hold, spend_key, unhold_key},
    outbox::{enqueue_in, Announcement},
    spend::{
        debit, give_back, insert_debit_entry, unreserve, Charge, Held, Hold, Reservation,
        Settlement,
    },
    sql::Row,
    writer::{unexpected, Done, Op, OwnedCharge, OwnedHold},
    Backend, Ledger, LedgerError, Result,
};
use sqlx::Row as _;

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
            minimum: None,
            ttl_seconds,
            key: None,
            rate: None,
            session: None,
        })
        .await
    }

    /// Holds the amount against the user's balance and, for a delegated key, its budget (and
    /// counts one use of a single-use key). Either both hold or neither does. The reservation
    /// says what was held (less than asked only with [`Hold::minimum`]).
    pub async fn hold(&self, hold: &Hold<'_>) -> Result<Reservation> {
        if hold.amount <= 0 || hold.minimum.is_some_and(|minimum| minimum > hold.amount) {
            return Err(LedgerError::Amount(format!(
                "reservation of {} (at least {:?})",
                hold.amount, hold.minimum
            )));
        }
        match self.writer.submit(Op::Hold(OwnedHold::from(hold))).await? {
            Done::Held(reservation) => Ok(reservation),
            _ => Err(unexpected()),
        }
    }

    /// Replaces reservation `id` with the actual `cost`. `announce(charged)` returns the signed
    /// debit event to queue, or `None` when nothing is charged.
    /// If the reservation already expired, the cost is still charged from what is available.
    pub async fn settle(
        &self,
        id: &str,
        user: &str,
        cost: i64,
        announce: impl Fn(i64) -> Option<Announcement> + Send + Sync + 'static,
    ) -> Result<Settlement> {
        let charge = Charge {
            id,
            user,
            cost,
            key_id: None,
            usage: None,
            rate: None,
        };
        self.charge(&charge, announce).await
    }

    /// `settle` for a proxy request: also caps the charge by the key's budget and records usage.
    /// `announce` may be called more than once (a batch that failed is applied again).
    pub async fn charge(
        &self,
        charge: &Charge<'_>,
        announce: impl Fn(i64) -> Option<Announcement> + Send + Sync + 'static,
    ) -> Result<Settlement> {
        let op = Op::Charge(OwnedCharge::from(charge), Box::new(announce));
        match self.writer.submit(op).await? {
            Done::Charged(settlement) => Ok(settlement),
            _ => Err(unexpected()),
        }
    }

    /// Gives reservation `id` back in full (the upstream failed before producing anything).
    /// Returns false if it was already gone.
    pub async fn release(&self, id: &str) -> Result<bool> {
        match self.writer.submit(Op::Release(id.to_owned())).await? {
            Done::Released(released) => Ok(released),
            _ => Err(unexpected()),
        }
    }

    /// Reservation `id` while it is held (for operators and tests).
    pub async fn reservation(&self, id: &str) -> Result<Option<Reservation>> {
        let row = sqlx::query(
            "SELECT id, user_key, amount, expires_at, served_at FROM reservations WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.reads)
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
        let op = Op::Served {
            id: id.to_owned(),
            at: now,
        };
        match self.writer.submit(op).await? {
            Done::Served(marked) => Ok(marked),
            _ => Err(unexpected()),
        }
    }

    /// The sweep for reservations past their expiry at `now` (a crashed proxy's leftovers, or a
    /// settlement that kept failing). On Postgres it passes over reservations another
    /// transaction holds (a replica settling them now, or sweeping them too). An unserved one is released; a served one (the upstream
    /// answered) is charged its reserved amount as the request's debit entry, within the key's
    /// budget, and `announce` gives the signed debit event to queue with it, as `settle` does.
    pub async fn expire_reservations(
        &self,
        now: i64,
        mut announce: impl FnMut(&ExpiredCharge) -> Option<Announcement>,
    ) -> Result<Expiry> {
        // Rate windows before the previous minute count nothing any more (on its own, so it
        // never waits inside the sweep's transaction).
        sqlx::query("DELETE FROM rate_windows WHERE minute < $1")
            .bind(now.div_euclid(60) - 1)
            .execute(&self.pool)
            .await?;
        let mut tx = self.begin().await?;
        let expired = sqlx::query(match self.backend {
            Backend::Sqlite => {
                "DELETE FROM reservations WHERE expires_at < $1
                 RETURNING user_key, amount, key_id, id, served_at"
            }
            Backend::Postgres => {
                "DELETE FROM reservations WHERE id IN (
                     SELECT id FROM reservations WHERE expires_at < $1
                     ORDER BY id FOR UPDATE SKIP LOCKED)
                 RETURNING user_key, amount, key_id, id, served_at"
            }
        })
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let expired = expired
            .into_iter()
            .map(|row| {
                let row = Row::Any(row);
                Ok((
                    Held::from_row(&row)?,
                    row.text(3)?,
                    row.maybe_int(4)?.is_some(),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        // Each expired hold is given back (`None`) or charged as its request's debit.
        let mut expiry = Expiry::default();
        let mut settled: Vec<(Held, Option<ExpiredCharge>)> = Vec::with_capacity(expired.len());
        for (held, id, served) in expired {
            let charge = if !served {
                expiry.released += 1;
                None
            } else if insert_debit_entry(&mut *tx, &id, &held.user, now).await? {
                let (user, charged) = (held.user.clone(), held.amount);
                Some(ExpiredCharge { id, user, charged })
            } else {
                None // Debited before (a late settlement won): only the hold is left to give back.
            };
            settled.push((held, charge));
        }
        // Key rows first, then balance rows, each sorted: the module's lock order.
        settled.sort_by(|a, b| a.0.key_id.cmp(&b.0.key_id));
        for (held, charge) in &mut settled {
            let Some(key_id) = &held.key_id else { continue };
            match charge {
                None => unhold_key(&mut *tx, key_id, held.amount).await?,
                Some(charge) => {
                    if let Some(remaining) = release_key_hold(&mut *tx, key_id, held.amount).await?
                    {
                        charge.charged = charge.charged.min(remaining.max(0));
                        spend_key(&mut *tx, key_id, charge.charged).await?;
                    }
                }
            }
        }
        settled.sort_by(|a, b| a.0.user.cmp(&b.0.user));
        for (held, charge) in settled {
            unreserve(&mut *tx, &held.user, held.amount).await?;
            let Some(charge) = charge else { continue };
            let announcement = announce(&charge).filter(|_| charge.charged > 0);
            let event_id = announcement.as_ref().map(|a| a.event_id.as_str());
            debit(&mut *tx, &charge.id, &held.user, charge.charged, event_id).await?;
            if let Some(announcement) = &announcement {
                enqueue_in(&mut *tx, &announcement.dedupe_key, &announcement.event_json).await?;
            }
            expiry.charged.push(charge);
        }
        tx.commit().await?;
        Ok(expiry)
    }

    /// The sweep for a process that cannot sign debits (the indexer): releases the unserved
    /// reservations past their expiry at `now` and leaves the served ones to a proxy's
    /// [`Ledger::expire_reservations`]. Returns how many it released.
    pub async fn release_expired_unserved(&self, now: i64) -> Result<u64> {
        let mut tx = self.begin().await?;
        let expired = sqlx::query(match self.backend {
            Backend::Sqlite => {
                "DELETE FROM reservations WHERE expires_at < $1 AND served_at IS NULL
                 RETURNING user_key, amount, key_id"
            }
            Backend::Postgres => {
                "DELETE FROM reservations WHERE id IN (
                     SELECT id FROM reservations WHERE expires_at < $1 AND served_at IS NULL
                     ORDER BY id FOR UPDATE SKIP LOCKED)
                 RETURNING user_key, amount, key_id"
            }
        })
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let released = expired.len() as u64;
        let held = expired
            .into_iter()
            .map(|row| Held::from_row(&Row::Any(row)))
            .collect::<Result<Vec<_>>>()?;
        give_back(&mut *tx, held).await?;
        tx.commit().await?;
        Ok(released)
    }
}
