//! One sender per swap. A swap at a mint is sent, or sent again, only by the caller holding
//! its lease; an answer that is not final (the mint's "pending", a timeout, a cut connection)
//! keeps the swap for whoever takes the lease next, so a swap in flight is never forgotten.
//! A caller that dies holding a lease lets it lapse, and another takes over after it.
use super::{
    records::{CashuSwap, SwapLease},
    swaps::swap_from_row,
};
use crate::{Ledger, Result};
use sqlx::Row;

/// What asking for a swap's lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leased {
    /// The caller holds the lease: it may send the swap.
    Taken(CashuSwap),
    /// Another caller is sending it.
    Busy,
    /// The swap is finished.
    Done,
    /// No such swap (never written, or forgotten after the mint refused it for good).
    Gone,
}

impl Ledger {
    /// Takes the lease of pending swap `id` if it is free, lapsed or already the caller's.
    pub async fn cashu_lease_swap(&self, id: &str, lease: SwapLease<'_>) -> Result<Leased> {
        let now = self.now();
        let taken = sqlx::query(
            "UPDATE cashu_swaps SET lease_owner = $1, lease_until = $2
             WHERE id = $3 AND state = 'pending' AND (lease_until <= $4 OR lease_owner = $1)",
        )
        .bind(lease.owner)
        .bind(lease.until(now).1)
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let row = sqlx::query(
            "SELECT id, kind, mint, inputs, outputs, fee, paid_sats, state FROM cashu_swaps WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(Leased::Gone);
        };
        Ok(match row.try_get::<String, _>("state")?.as_str() {
            "done" => Leased::Done,
            _ if taken == 1 => Leased::Taken(swap_from_row(&row)?),
            _ => Leased::Busy,
        })
    }

    /// Gives a lease back before it lapses (the mint's answer was not final): the next
    /// caller may send the swap again at once.
    pub async fn cashu_release_swap(&self, id: &str, owner: &str) -> Result<()> {
        sqlx::query(
            "UPDATE cashu_swaps SET lease_until = 0 WHERE id = $1 AND lease_owner = $2 AND state = 'pending'",
        )
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
