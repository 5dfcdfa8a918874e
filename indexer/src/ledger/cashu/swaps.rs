//! The gateway's own ecash and the swaps that spend it: proofs are picked and marked pending
//! by one swap at a time, written down before the mint is asked, and spent or given back in
//! one transaction with what the swap produced.
use super::{CashuProof, CashuSwap, SwapKind};
use crate::ledger::{now, Ledger, LedgerError, Result};
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
    /// (outputs to follow). Refuses when the gateway holds too little.
    pub async fn cashu_begin_spend(
        &self,
        swap: &CashuSwap,
        sats: i64,
        fee_ppk: i64,
        fee_inside: bool,
    ) -> Result<Spend> {
        let mut tx = self.begin().await?;
        let rows = sqlx::query(
            "SELECT secret, keyset_id, amount, c FROM cashu_proofs
             WHERE mint = $1 AND state = 'unspent' ORDER BY amount DESC, secret",
        )
        .bind(&swap.mint)
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
        insert_swap(
            &mut tx,
            &CashuSwap {
                inputs,
                fee,
                paid_sats: paid,
                outputs: None,
                ..swap.clone()
            },
        )
        .await?;
        tx.commit().await?;
        Ok(Spend { proofs, fee, paid })
    }

    /// Records a pending swap's outputs (before it is sent).
    pub async fn cashu_swap_outputs(&self, swap_id: &str, outputs: &str) -> Result<()> {
        sqlx::query("UPDATE cashu_swaps SET outputs = $1, updated_at = $2 WHERE id = $3")
            .bind(outputs)
            .bind(now())
            .bind(swap_id)
            .execute(&self.pool)
            .await?;
        Ok(())
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
        sqlx::query(
            "UPDATE cashu_proofs SET state = 'spent' WHERE swap_id = $1 AND state = 'pending'",
        )
        .bind(&swap.id)
        .execute(&mut *tx)
        .await?;
        insert_proofs(&mut tx, &swap.mint, &swap.id, kept, at).await?;
        finish_swap(&mut tx, &swap.id, Some(paid_token), at).await?;
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

    /// A spending swap the mint refused for good: its inputs are unspent again and the swap is
    /// forgotten (change stays owed, to be issued again).
    pub async fn cashu_abandon_spend(&self, swap_id: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE cashu_proofs SET state = 'unspent', swap_id = NULL WHERE swap_id = $1 AND state = 'pending'",
        )
        .bind(swap_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM cashu_swaps WHERE id = $1 AND state = 'pending'")
            .bind(swap_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
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

pub(super) async fn insert_swap(conn: &mut sqlx::AnyConnection, swap: &CashuSwap) -> Result<()> {
    let at = now();
    sqlx::query(
        "INSERT INTO cashu_swaps (id, kind, mint, inputs, outputs, fee, paid_sats, state, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $8)",
    )
    .bind(&swap.id)
    .bind(swap.kind.as_str())
    .bind(&swap.mint)
    .bind(&swap.inputs)
    .bind(&swap.outputs)
    .bind(swap.fee)
    .bind(swap.paid_sats)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn finish_swap(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    paid_token: Option<&str>,
    at: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE cashu_swaps SET state = 'done', paid_token = $1, updated_at = $2 WHERE id = $3",
    )
    .bind(paid_token)
    .bind(at)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
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

fn swap_from_row(row: &sqlx::any::AnyRow) -> Result<CashuSwap> {
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
