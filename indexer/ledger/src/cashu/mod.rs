//! The Cashu rail's books: receipts of ecash tokens, the gateway's own proofs, and the swaps
//! it makes at mints.
//!
//! A token is received once: its receipt's id comes from its proofs' secrets, and the receipt
//! is written (with the swap that will receive it) before the mint is asked, so a token sent
//! twice is refused here and a crash mid-swap can be replayed. What a token was worth is a
//! credit entry keyed by the receipt; the change paid back is a debit entry keyed by it too, so
//! `ecash received = charged + change + balance` is the ordinary per-user reconciliation. The
//! ledger stores proofs as the mint wrote them and never interprets them.
mod leases;
mod records;
mod swaps;

pub use leases::Leased;
pub use records::{CashuProof, CashuSwap, SwapKind, SwapLease};
pub use swaps::Spend;

use super::{
    attest::{Attested, Rail},
    credits::credit,
    ensure_user, now, Ledger, LedgerError, Result,
};
use sqlx::Row;
use swaps::{delete_leased_swap, finish_swap, insert_proofs, insert_swap, swap_already_finished};

/// A token being received.
#[derive(Debug, Clone)]
pub struct NewReceipt<'a> {
    /// `cashu:<hex of the proofs' secrets' hash>`.
    pub id: &'a str,
    pub mint: &'a str,
    /// Who is credited: the receipt itself (a token paying for one request) or a wallet.
    pub user: &'a str,
    /// What the gateway receives: the token's value less the mint's fee.
    pub sats: i64,
    pub fee: i64,
    pub tokens_per_sat: i64,
}

/// A token received (or being received), and the change paid back for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub id: String,
    pub mint: String,
    pub user: String,
    /// The request a per-request receipt paid for, once one took it.
    pub request_id: Option<String>,
    /// False while its swap is unfinished.
    pub received: bool,
    pub sats: i64,
    pub fee: i64,
    pub tokens_per_sat: i64,
    /// Set once the change is decided (debited); its token once the mint has signed it
    /// (empty when there was nothing to give back).
    pub change_sats: Option<i64>,
    pub change_token: Option<String>,
}

/// What `cashu_begin_receive` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receiving {
    /// The receipt is new: send the swap.
    Started,
    /// This token was seen before.
    Known(Receipt),
}

/// What deciding a receipt's change found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeClaim {
    /// This much is owed (already debited); issue it.
    Owed(i64),
    /// A request paid by it is still being served.
    StillServing,
    /// Nothing is left to give back.
    Nothing,
}

const RECEIPT_COLUMNS: &str = "id, mint, user_key, request_id, state, sats, fee, tokens_per_sat, \
                               change_sats, change_token";

impl Ledger {
    /// Writes down a token's receipt and the swap that receives it, leased to the caller,
    /// unless the token was seen before (then says what became of it).
    pub async fn cashu_begin_receive(
        &self,
        receipt: &NewReceipt<'_>,
        swap: &CashuSwap,
        lease: SwapLease<'_>,
    ) -> Result<Receiving> {
        let mut tx = self.begin().await?;
        let at = now();
        // On Postgres a concurrent insert of the same receipt waits here for the first to
        // commit, then finds it: one receipt per token, and no duplicate-key error.
        let inserted = sqlx::query(
            "INSERT INTO cashu_receipts (id, mint, user_key, state, sats, fee,
                 tokens_per_sat, created_at, updated_at)
             VALUES ($1, $2, $3, 'receiving', $4, $5, $6, $7, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(receipt.id)
        .bind(receipt.mint)
        .bind(receipt.user)
        .bind(receipt.sats)
        .bind(receipt.fee)
        .bind(receipt.tokens_per_sat)
        .bind(at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            let known = receipt_in(&mut tx, receipt.id).await?;
            tx.commit().await?;
            return known
                .map(Receiving::Known)
                .ok_or_else(|| LedgerError::Amount("a receipt vanished".into()));
        }
        insert_swap(&mut tx, swap, lease.until(self.now())).await?;
        tx.commit().await?;
        Ok(Receiving::Started)
    }

    /// Gives a received per-request receipt to the request `request_id`, unless another
    /// request took it or its change was claimed: a token pays for one request, and a retry
    /// of a request whose token's swap was left unfinished is served once it is finished.
    pub async fn cashu_take_receipt(&self, receipt_id: &str, request_id: &str) -> Result<bool> {
        let taken = sqlx::query(
            "UPDATE cashu_receipts SET request_id = $1, updated_at = $2
             WHERE id = $3 AND user_key = id AND state = 'received' AND change_sats IS NULL
               AND (request_id IS NULL OR request_id = $1)",
        )
        .bind(request_id)
        .bind(now())
        .bind(receipt_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(taken == 1)
    }

    /// The mint signed the gateway's new proofs: keeps them and credits the receipt's payer,
    /// in one transaction, giving a per-request receipt to `request_id` when it is the
    /// request that finished it (saving it a [`Ledger::cashu_take_receipt`]). A second call
    /// for the same receipt changes nothing.
    pub async fn cashu_finish_receive(
        &self,
        receipt_id: &str,
        swap_id: &str,
        proofs: &[CashuProof],
        request_id: Option<&str>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let at = now();
        // The swap's row first: of two callers finishing it, the second waits here and then
        // finds it done.
        if !finish_swap(&mut tx, swap_id, None, at).await? {
            return swap_already_finished(&mut tx, swap_id).await;
        }
        let Some(receipt) = receipt_in(&mut tx, receipt_id).await? else {
            return Err(LedgerError::Amount(format!("no receipt {receipt_id}")));
        };
        let tokens = receipt
            .sats
            .checked_mul(receipt.tokens_per_sat)
            .ok_or_else(|| LedgerError::Amount("a receipt's value overflows".into()))?;
        insert_proofs(&mut tx, &receipt.mint, swap_id, proofs, at).await?;
        sqlx::query(
            "UPDATE cashu_receipts SET state = 'received', updated_at = $1,
                 request_id = CASE WHEN user_key = id THEN $2 END
             WHERE id = $3",
        )
        .bind(at)
        .bind(request_id)
        .bind(receipt_id)
        .execute(&mut *tx)
        .await?;
        ensure_user(&mut *tx, &receipt.user).await?;
        if tokens > 0 {
            sqlx::query(
                "INSERT INTO entries (id, user_key, tokens, kind, status, reference, created_at, applied_at)
                 VALUES ($1, $2, $3, 'credit', 'applied', $1, $4, $4)",
            )
            .bind(receipt_id)
            .bind(&receipt.user)
            .bind(tokens)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            credit(&mut tx, &receipt.user, tokens).await?;
            let attested = Attested {
                user: &receipt.user,
                tokens,
                reference: receipt_id,
                rail: Rail::Cashu,
            };
            self.attestor
                .attest_in(&mut *tx, receipt_id, &attested)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The mint refused the token for good (spent, unknown, invalid): forgets the receipt, so
    /// nothing is credited and the same token may be tried again once it is valid. Only the
    /// holder of the swap's lease may: false (nothing forgotten) for anyone else.
    pub async fn cashu_forget_receive(
        &self,
        receipt_id: &str,
        swap_id: &str,
        owner: &str,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        if !delete_leased_swap(&mut tx, swap_id, owner).await? {
            return Ok(false);
        }
        sqlx::query("DELETE FROM cashu_receipts WHERE id = $1 AND state = 'receiving'")
            .bind(receipt_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A receipt by id.
    pub async fn cashu_receipt(&self, id: &str) -> Result<Option<Receipt>> {
        let mut conn = self.reads.acquire().await?;
        receipt_in(&mut conn, id).await
    }

    /// Decides a per-request receipt's change once nothing it paid for is still held: all its
    /// payer's remaining balance, in whole sats, debited as the change entry. The debit and the
    /// amount are fixed here once; issuing the token may then be retried until it succeeds.
    pub async fn cashu_claim_change(&self, receipt_id: &str) -> Result<ChangeClaim> {
        let mut tx = self.begin().await?;
        // The receipt's row is locked first: a second claim waits here, then reads the first's
        // decision instead of deciding (and debiting) again.
        sqlx::query("UPDATE cashu_receipts SET updated_at = $1 WHERE id = $2")
            .bind(now())
            .bind(receipt_id)
            .execute(&mut *tx)
            .await?;
        let Some(receipt) = receipt_in(&mut tx, receipt_id).await? else {
            return Err(LedgerError::Amount(format!("no receipt {receipt_id}")));
        };
        if let Some(sats) = receipt.change_sats {
            return Ok(if sats > 0 {
                ChangeClaim::Owed(sats)
            } else {
                ChangeClaim::Nothing
            });
        }
        let balance = sqlx::query(
            "SELECT credited - debited - reserved AS available, reserved FROM balances WHERE user_key = $1",
        )
        .bind(&receipt.user)
        .fetch_optional(&mut *tx)
        .await?;
        let (available, reserved): (i64, i64) = match balance {
            Some(row) => (row.try_get("available")?, row.try_get("reserved")?),
            None => (0, 0),
        };
        if !receipt.received || receipt.user != receipt.id {
            return Ok(ChangeClaim::Nothing);
        }
        if reserved > 0 {
            return Ok(ChangeClaim::StillServing);
        }
        let sats = available.max(0) / receipt.tokens_per_sat;
        let at = now();
        sqlx::query("UPDATE cashu_receipts SET change_sats = $1, updated_at = $2 WHERE id = $3")
            .bind(sats)
            .bind(at)
            .bind(receipt_id)
            .execute(&mut *tx)
            .await?;
        if sats > 0 {
            let tokens = sats * receipt.tokens_per_sat;
            sqlx::query(
                "INSERT INTO entries (id, user_key, tokens, kind, status, reference, created_at, applied_at)
                 VALUES ($1, $2, $3, 'debit', 'applied', $4, $5, $5)",
            )
            .bind(change_entry_id(receipt_id))
            .bind(&receipt.user)
            .bind(-tokens)
            .bind(receipt_id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE balances SET debited = debited + $1 WHERE user_key = $2")
                .bind(tokens)
                .bind(&receipt.user)
                .execute(&mut *tx)
                .await?;
            let attested = Attested {
                user: &receipt.user,
                tokens: -tokens,
                reference: receipt_id,
                rail: Rail::Cashu,
            };
            self.attestor
                .attest_in(&mut *tx, &change_entry_id(receipt_id), &attested)
                .await?;
        } else {
            sqlx::query("UPDATE cashu_receipts SET change_token = '' WHERE id = $1")
                .bind(receipt_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(if sats > 0 {
            ChangeClaim::Owed(sats)
        } else {
            ChangeClaim::Nothing
        })
    }
}

/// The entry id of the change paid back for `receipt_id`.
pub fn change_entry_id(receipt_id: &str) -> String {
    format!("change:{receipt_id}")
}

async fn receipt_in(conn: &mut sqlx::AnyConnection, id: &str) -> Result<Option<Receipt>> {
    let row = sqlx::query(&format!(
        "SELECT {RECEIPT_COLUMNS} FROM cashu_receipts WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(Receipt {
        id: row.try_get("id")?,
        mint: row.try_get("mint")?,
        user: row.try_get("user_key")?,
        request_id: row.try_get("request_id")?,
        received: row.try_get::<String, _>("state")? == "received",
        sats: row.try_get("sats")?,
        fee: row.try_get("fee")?,
        tokens_per_sat: row.try_get("tokens_per_sat")?,
        change_sats: row.try_get("change_sats")?,
        change_token: row.try_get("change_token")?,
    }))
}
