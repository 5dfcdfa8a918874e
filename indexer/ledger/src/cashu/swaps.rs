//! The gateway's own ecash and the swaps that spend it: proofs are picked and marked pending
//! by one swap at a time, written down before the mint is asked, and spent or given back in
//! one transaction with what the swap produced.
use super::records::{CashuProof, CashuSwap, SwapKind, SwapLease};
use crate::{now, Ledger, LedgerError, Result};
use sqlx::Row;

/// The proofs a spending swap takes, the mint's fee for them, and what it pays out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spend {
    pub proofs: Vec<CashuProof>,
    pub fee: i64,
    pub paid: i64,
}

impl Ledger {
    /// Picks unspent proofs of `mint` worth at least `sats` plus the mint's fee for spending
    /// them (`fee_ppk` per input, in thousandths; with `fee_inside` the fee comes out of
    /// `sats`, as change does), marks them pending under `swap`, and writes the swap down
    /// (outputs to follow), leased to the caller. A change is paid first from the proofs its
    /// own token brought (concurrent changes then seldom want the same proofs). Refuses when
    /// the gateway holds too little; `Contended` (try again shortly) when another caller wrote
    /// a swap of this id, took these proofs first, or holds what is missing in a swap of its
    /// own that will give the rest back.
    pub async fn cashu_begin_spend(
        &self,
        swap: &CashuSwap,
        sats: i64,
        fee_ppk: i64,
        fee_inside: bool,
        lease: SwapLease<'_>,
    ) -> Result<Spend> {
        let mut tx = self.begin().await?;
        // The swap's row first: a concurrent spend under the same id (the same change claimed
        // at two replicas) waits here for the first to commit, then finds it written.
        if !insert_swap(&mut tx, swap, lease.until(self.now())).await? {
            return Err(LedgerError::Contended);
        }
        let own = swap
            .id
            .strip_prefix("change:")
            .map(|receipt| format!("receive:{receipt}"));
        let rows = sqlx::query(
            "SELECT secret, keyset_id, amount, c FROM cashu_proofs
             WHERE mint = $1 AND state = 'unspent'
             ORDER BY CASE WHEN swap_id = $2 THEN 0 ELSE 1 END, amount DESC, secret",
        )
        .bind(&swap.mint)
        .bind(own)
        .fetch_all(&mut *tx)
        .await?;
        let fee_for = |inputs: usize| (inputs as i64 * fee_ppk + 999) / 1000;
        let need = |inputs: usize| {
            if fee_inside {
                sats
            } else {
                sats + fee_for(inputs)
            }
        };
        let mut proofs = Vec::new();
        let mut total = 0i64;
        for row in rows {
            if total >= need(proofs.len()) {
                break;
            }
            let proof = proof_from_row(&row)?;
            total += proof.amount;
            proofs.push(proof);
        }
        let fee = fee_for(proofs.len());
        let paid = if fee_inside { sats - fee } else { sats };
        if total < need(proofs.len()) || paid <= 0 {
            let in_swaps: i64 = sqlx::query(
                "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS sats FROM cashu_proofs
                 WHERE mint = $1 AND state = 'pending'",
            )
            .bind(&swap.mint)
            .fetch_one(&mut *tx)
            .await?
            .try_get("sats")?;
            if in_swaps > 0 && paid > 0 {
                return Err(LedgerError::Contended);
            }
            return Err(LedgerError::Amount(format!(
                "the gateway holds {total} sats at {}, {} needed",
                swap.mint,
                need(proofs.len()).max(fee + 1)
            )));
        }
        for proof in &proofs {
            let marked = sqlx::query(
                "UPDATE cashu_proofs SET state = 'pending', swap_id = $1 WHERE secret = $2 AND state = 'unspent'",
            )
            .bind(&swap.id)
            .bind(&proof.secret)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if marked != 1 {
                return Err(LedgerError::Contended);
            }
        }
        let inputs = serde_json::to_string(&proofs)
            .map_err(|e| LedgerError::Amount(format!("proofs: {e}")))?;
        sqlx::query("UPDATE cashu_swaps SET inputs = $1, fee = $2, paid_sats = $3 WHERE id = $4")
            .bind(inputs)
            .bind(fee)
            .bind(paid)
            .bind(&swap.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Spend { proofs, fee, paid })
    }

    /// Records a pending swap's outputs before it is sent; false (nothing written, do not
    /// send) when the caller no longer holds its lease.
    pub async fn cashu_swap_outputs(
        &self,
        swap_id: &str,
        outputs: &str,
        owner: &str,
    ) -> Result<bool> {
        let written = sqlx::query(
            "UPDATE cashu_swaps SET outputs = $1, updated_at = $2
             WHERE id = $3 AND state = 'pending' AND lease_owner = $4 AND lease_until > $5",
        )
        .bind(outputs)
        .bind(now())
        .bind(swap_id)
        .bind(owner)
        .bind(self.now())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(written == 1)
    }

    /// A spending swap went through: its inputs are spent, the proofs kept are unspent, and
    /// the token paid out is recorded (on the receipt, for change), in one transaction.
    pub async fn cashu_finish_spend(
        &self,
        swap: &CashuSwap,
        kept: &[CashuProof],
        paid_token: &str,
        receipt_id: Option<&str>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let at = now();
        // The swap's row first: of two callers finishing it, the second waits here and then
        // finds it done.
        if !finish_swap(&mut tx, &swap.id, Some(paid_token), at).await? {
            return swap_already_finished(&mut tx, &swap.id).await;
        }
        sqlx::query(
            "UPDATE cashu_proofs SET state = 'spent' WHERE swap_id = $1 AND state = 'pending'",
        )
        .bind(&swap.id)
        .execute(&mut *tx)
        .await?;
        insert_proofs(&mut tx, &swap.mint, &swap.id, kept, at).await?;
        if let Some(receipt_id) = receipt_id {
            sqlx::query(
                "UPDATE cashu_receipts SET change_token = $1, updated_at = $2 WHERE id = $3",
            )
            .bind(paid_token)
            .bind(at)
            .bind(receipt_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A spending swap the mint refused for good, or one written down but never sent: its
    /// inputs are unspent again, except those the mint says are spent (`spent`, secrets),
    /// which are never offered again; the swap is forgotten (change stays owed, to be issued
    /// again). Only the holder of the swap's lease may: false (nothing changed) for anyone else.
    pub async fn cashu_abandon_spend(
        &self,
        swap_id: &str,
        owner: &str,
        spent: &[String],
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        if !delete_leased_swap(&mut tx, swap_id, owner).await? {
            return Ok(false);
        }
        for secret in spent {
            sqlx::query(
                "UPDATE cashu_proofs SET state = 'spent' WHERE secret = $1 AND swap_id = $2 AND state = 'pending'",
            )
            .bind(secret)
            .bind(swap_id)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE cashu_proofs SET state = 'unspent', swap_id = NULL WHERE swap_id = $1 AND state = 'pending'",
        )
        .bind(swap_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A swap by id, pending or done (`paid_token` is what a finished one paid out).
    pub async fn cashu_swap(&self, id: &str) -> Result<Option<(CashuSwap, bool, Option<String>)>> {
        let row = sqlx::query(
            "SELECT id, kind, mint, inputs, outputs, fee, paid_sats, state, paid_token FROM cashu_swaps WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.reads)
        .await?;
        row.map(|row| {
            Ok((
                swap_from_row(&row)?,
                row.try_get::<String, _>("state")? == "done",
                row.try_get("paid_token")?,
            ))
        })
        .transpose()
    }

    /// Swaps written down but never finished (a crash, or a mint that did not answer).
    pub async fn cashu_pending_swaps(&self) -> Result<Vec<CashuSwap>> {
        sqlx::query(
            "SELECT id, kind, mint, inputs, outputs, fee, paid_sats FROM cashu_swaps
             WHERE state = 'pending' ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(swap_from_row)
        .collect()
    }

    /// Every proof the gateway counts as its own (unspent, or pending in a swap), by mint: what
    /// to compare with the mints' own records (NUT-07).
    pub async fn cashu_held_proofs(&self) -> Result<Vec<(String, CashuProof)>> {
        sqlx::query(
            "SELECT mint, secret, keyset_id, amount, c FROM cashu_proofs
             WHERE state <> 'spent' ORDER BY mint, secret",
        )
        .fetch_all(&self.reads)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("mint")?, proof_from_row(row)?)))
        .collect()
    }

    /// The gateway's unspent ecash per mint, in sats.
    pub async fn cashu_holdings(&self) -> Result<Vec<(String, i64)>> {
        sqlx::query(
            "SELECT mint, CAST(SUM(amount) AS BIGINT) AS sats FROM cashu_proofs
             WHERE state = 'unspent' GROUP BY mint ORDER BY mint",
        )
        .fetch_all(&self.reads)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("mint")?, row.try_get("sats")?)))
        .collect()
    }
}

/// Writes a pending swap down, leased until `lease_until` to the lease's owner; false when a
/// swap of this id exists already.
pub(super) async fn insert_swap(
    conn: &mut sqlx::AnyConnection,
    swap: &CashuSwap,
    lease: (&str, i64),
) -> Result<bool> {
    let at = now();
    let inserted = sqlx::query(
        "INSERT INTO cashu_swaps (id, kind, mint, inputs, outputs, fee, paid_sats, state,
             lease_owner, lease_until, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $10, $10) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&swap.id)
    .bind(swap.kind.as_str())
    .bind(&swap.mint)
    .bind(&swap.inputs)
    .bind(&swap.outputs)
    .bind(swap.fee)
    .bind(swap.paid_sats)
    .bind(lease.0)
    .bind(lease.1)
    .bind(at)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Deletes pending swap `id` if `owner` holds its lease; false (nothing deleted) otherwise.
pub(super) async fn delete_leased_swap(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    owner: &str,
) -> Result<bool> {
    let deleted = sqlx::query(
        "DELETE FROM cashu_swaps WHERE id = $1 AND state = 'pending' AND lease_owner = $2",
    )
    .bind(id)
    .bind(owner)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(deleted == 1)
}

/// Marks a pending swap done; false when it was not pending (finished by another caller).
pub(super) async fn finish_swap(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    paid_token: Option<&str>,
    at: i64,
) -> Result<bool> {
    let finished = sqlx::query(
        "UPDATE cashu_swaps SET state = 'done', paid_token = $1, updated_at = $2
         WHERE id = $3 AND state = 'pending'",
    )
    .bind(paid_token)
    .bind(at)
    .bind(id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(finished == 1)
}

pub(super) async fn insert_proofs(
    conn: &mut sqlx::AnyConnection,
    mint: &str,
    swap_id: &str,
    proofs: &[CashuProof],
    at: i64,
) -> Result<()> {
    for proof in proofs {
        sqlx::query(
            "INSERT INTO cashu_proofs (secret, mint, keyset_id, amount, c, state, swap_id, created_at)
             VALUES ($1, $2, $3, $4, $5, 'unspent', $6, $7) ON CONFLICT (secret) DO NOTHING",
        )
        .bind(&proof.secret)
        .bind(mint)
        .bind(&proof.keyset_id)
        .bind(proof.amount)
        .bind(&proof.c)
        .bind(swap_id)
        .bind(at)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

fn proof_from_row(row: &sqlx::any::AnyRow) -> Result<CashuProof> {
    Ok(CashuProof {
        secret: row.try_get("secret")?,
        keyset_id: row.try_get("keyset_id")?,
        amount: row.try_get("amount")?,
        c: row.try_get("c")?,
    })
}

pub(super) fn swap_from_row(row: &sqlx::any::AnyRow) -> Result<CashuSwap> {
    Ok(CashuSwap {
        id: row.try_get("id")?,
        kind: SwapKind::parse(&row.try_get::<String, _>("kind")?)?,
        mint: row.try_get("mint")?,
        inputs: row.try_get("inputs")?,
        outputs: row.try_get("outputs")?,
        fee: row.try_get("fee")?,
        paid_sats: row.try_get("paid_sats")?,
    })
}

/// A swap another caller finished first: nothing to do. One that vanished (forgotten after a
/// refusal) cannot be finished.
pub(super) async fn swap_already_finished(
    conn: &mut sqlx::AnyConnection,
    swap_id: &str,
) -> Result<()> {
    let state: Option<String> = sqlx::query("SELECT state FROM cashu_swaps WHERE id = $1")
        .bind(swap_id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| row.try_get("state"))
        .transpose()?;
    match state.as_deref() {
        Some("done") => Ok(()),
        _ => Err(LedgerError::Amount(format!(
            "swap {swap_id} is not pending: it cannot be finished"
        ))),
    }
}
