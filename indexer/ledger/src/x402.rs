//! x402 `exact` payments: a token transfer to the treasury that the gateway (or the external
//! facilitator it uses) co-signs, submits and credits to its payer. The row is claimed before
//! the transaction is sent, keyed by a signature the transaction carries (its id when the
//! gateway signs as fee payer; the payer's when a facilitator does, since the id is not known
//! before it signs), so every replica sharing the ledger agrees on one outcome: sent once,
//! credited once, and paying for one request — the one that moved it to `credited`. A replay
//! or a concurrent copy of the same payment finds the row taken and is refused.
//!
//! The credit is a payment row plus an applied credit entry referencing it, as for a chain
//! payment, so `audit` checks it like any other: its worth is fixed when it is claimed, at the
//! operator's rate for the token. Its nonce is -1: it redeems no authorisation, so the
//! controller (which asks whether a wallet's authorisation `nonce` was paid) never mistakes it
//! for one.
use super::{
    attest::Rail,
    credits::{credit_settled_payment, SettledPayment},
    to_i64, Ledger, LedgerError, Result,
};
use sqlx::Row;

/// One x402 payment as the gateway verified it, before it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X402Payment {
    /// What the payment is claimed by: the transaction's id (the fee payer's signature,
    /// base58) when the gateway is the fee payer, else the payer's signature.
    pub signature: String,
    /// The token owner that signed the transfer: whose balance the payment credits.
    pub payer: String,
    pub mint: String,
    /// Base units of `mint` transferred.
    pub amount: u64,
    /// What the amount is worth in ledger tokens at the operator's rate.
    pub tokens: i64,
    /// The transaction's recent blockhash: once it expires, a transaction never seen on chain
    /// never will be.
    pub blockhash: String,
    /// The token account the transfer moves tokens out of (empty: not recorded), whose
    /// history has the transaction if it landed.
    pub source: String,
}

/// A payment still waiting for the chain's answer, and when it was claimed (unix seconds):
/// how far back its transaction is searched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsettled {
    pub payment: X402Payment,
    pub claimed_at: i64,
}

/// Where an x402 payment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum X402State {
    /// Claimed and sent (or about to be): the chain decides.
    Submitted,
    /// Landed and credited to its payer.
    Credited,
    /// Refused by the chain, or expired without landing: nothing was paid.
    Failed,
}

impl X402State {
    fn parse(text: &str) -> Result<Self> {
        match text {
            "submitted" => Ok(Self::Submitted),
            "credited" => Ok(Self::Credited),
            "failed" => Ok(Self::Failed),
            other => Err(LedgerError::Amount(format!("unknown x402 state {other}"))),
        }
    }
}

impl Ledger {
    /// Claims `payment` before it is sent. `None` when this call claimed it; otherwise the
    /// state another call (a replay, a concurrent copy, an earlier try) left it in.
    pub async fn x402_claim(&self, payment: &X402Payment) -> Result<Option<X402State>> {
        let at = self.now();
        let inserted = sqlx::query(
            "INSERT INTO x402_payments (signature, payer, mint, amount, tokens, blockhash, state, created_at, updated_at, source)
             VALUES ($1, $2, $3, $4, $5, $6, 'submitted', $7, $7, $8) ON CONFLICT (signature) DO NOTHING",
        )
        .bind(&payment.signature)
        .bind(&payment.payer)
        .bind(&payment.mint)
        .bind(to_i64(payment.amount)?)
        .bind(payment.tokens)
        .bind(&payment.blockhash)
        .bind(at)
        .bind(&payment.source)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(None);
        }
        self.x402_state(&payment.signature).await
    }

    /// The state of the payment claimed by `signature` or paid by transaction `signature`, if
    /// it was ever claimed.
    pub async fn x402_state(&self, signature: &str) -> Result<Option<X402State>> {
        let row = sqlx::query(
            "SELECT state FROM x402_payments WHERE signature = $1 OR transaction_id = $1 LIMIT 1",
        )
        .bind(signature)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| X402State::parse(&row.try_get::<String, _>("state")?))
            .transpose()
    }

    /// The payment claimed by `signature` landed in `transaction` (at `slot`): credits its
    /// payer, in one transaction with the payment row and the credit entry, and gives it to
    /// `request_id` (`None`: the sweep, for a request that was lost). False when another call
    /// already credited it (or it failed): the caller must then not serve anything for it.
    pub async fn x402_credit(
        &self,
        signature: &str,
        transaction: &str,
        slot: u64,
        namespace_id: u64,
        request_id: Option<&str>,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let at = self.now();
        let Some(row) = sqlx::query(
            "UPDATE x402_payments SET state = 'credited', request_id = $1, updated_at = $2,
             transaction_id = $3 WHERE signature = $4 AND state = 'submitted'
             RETURNING payer, mint, amount, tokens",
        )
        .bind(request_id)
        .bind(at)
        .bind(transaction)
        .bind(signature)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(false);
        };
        let payer: String = row.try_get("payer")?;
        let mint: String = row.try_get("mint")?;
        let amount: i64 = row.try_get("amount")?;
        let tokens: i64 = row.try_get("tokens")?;
        let payment = SettledPayment {
            entry_id: format!("x402:{signature}"),
            transaction,
            payer: &payer,
            mint: &mint,
            namespace_id,
            amount,
            tokens,
            slot,
            at,
            rail: Rail::X402,
        };
        credit_settled_payment(&mut tx, &payment, &self.attestor).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The chain refused the payment, or it expired without landing: nothing was paid, and
    /// nothing will be credited. False when it was not `submitted` any more.
    pub async fn x402_fail(&self, signature: &str) -> Result<bool> {
        let failed = sqlx::query(
            "UPDATE x402_payments SET state = 'failed', updated_at = $1
             WHERE signature = $2 AND state = 'submitted'",
        )
        .bind(self.now())
        .bind(signature)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(failed == 1)
    }

    /// Payments still `submitted` that were claimed before `claimed_before` (unix seconds):
    /// those whose request is gone, for the sweep to settle from the chain's answer.
    pub async fn x402_unsettled(&self, claimed_before: i64) -> Result<Vec<Unsettled>> {
        let rows = sqlx::query(
            "SELECT signature, payer, mint, amount, tokens, blockhash, created_at,
                    COALESCE(source, '') AS source FROM x402_payments
             WHERE state = 'submitted' AND created_at < $1 ORDER BY created_at",
        )
        .bind(claimed_before)
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|row| {
                let amount: i64 = row.try_get("amount")?;
                Ok(Unsettled {
                    payment: X402Payment {
                        signature: row.try_get("signature")?,
                        payer: row.try_get("payer")?,
                        mint: row.try_get("mint")?,
                        amount: u64::try_from(amount)
                            .map_err(|_| LedgerError::Column(3, "negative"))?,
                        tokens: row.try_get("tokens")?,
                        blockhash: row.try_get("blockhash")?,
                        source: row.try_get("source")?,
                    },
                    claimed_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }
}
