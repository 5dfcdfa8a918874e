//! On-chain `Paid` and `TokenPaid` events, the proof behind every credit, and what each is worth.
//!
//! A credit and its payment usually arrive at the same moment from two sources (the
//! controller's announcement on Nostr, the chain watcher). Both writers first lock the user's
//! balance row, so whichever commits second always sees the other's row (READ COMMITTED on
//! Postgres would otherwise let both miss each other), and a pending credit is claimed with a
//! conditional update, so the grace-period sweep and a late payment never both apply it.
//!
//! On Postgres a chain batch costs six round trips however many payments it holds (`BEGIN`,
//! lock the users' balances in user order, insert the payments, read the credits waiting for
//! them with what their transactions are worth, store the credits' outcomes, `COMMIT`), so the
//! chain watcher keeps up with a busy program; on SQLite the statements run one by one.
use super::{
    batch::{LOCK_BALANCES, STORE},
    credits::{claim_pending_credit, credit, payment_value},
    ensure_user, lock_user, now, to_i64, Backend, Ledger, Result,
};
use sqlx::{PgConnection, Row};
use std::collections::BTreeMap;

/// One `Paid` event, identified by its transaction signature and its position in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub signature: String,
    pub index: u32,
    pub user: String,
    pub namespace_id: u64,
    pub nonce: u64,
    /// What was paid: lamports, or base units of `mint`.
    pub amount: u64,
    /// The SPL token paid (`TokenPaid`), base58; `None` for SOL (`Paid`).
    pub mint: Option<String>,
    /// What the amount is worth in ledger tokens at the deployment's rate: the only amount
    /// a credit for this payment may announce.
    pub tokens: i64,
    pub slot: u64,
}

/// Ledger tokens for `lamports` at `tokens_per_sol`, multiplying before dividing; `None` when
/// they overflow the ledger's integer type.
pub fn tokens_for_lamports(lamports: u64, tokens_per_sol: u64) -> Option<i64> {
    tokens_for_units(lamports, tokens_per_sol, 9)
}

/// Ledger tokens for `amount` base units of an asset with `decimals` decimals, at
/// `tokens_per_unit` per whole unit (one SOL, one USDC), multiplying before dividing and
/// rounding down; `None` when they overflow the ledger's integer type.
pub fn tokens_for_units(amount: u64, tokens_per_unit: u64, decimals: u8) -> Option<i64> {
    let scale = 10u128.checked_pow(u32::from(decimals))?;
    i64::try_from(u128::from(amount) * u128::from(tokens_per_unit) / scale).ok()
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
        if let (Backend::Postgres, Some(pool)) = (self.backend, &self.batches) {
            let mut tx = pool.begin().await?;
            let new = record_together(&mut tx, payments, now()).await?;
            tx.commit().await?;
            return Ok(new);
        }
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
                "INSERT INTO payments (id, signature, user_key, namespace_id, nonce, lamports, tokens, slot, seen_at, mint)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
            )
            .bind(format!("{}:{}", payment.signature, payment.index))
            .bind(&payment.signature)
            .bind(&payment.user)
            .bind(to_i64(payment.namespace_id)?)
            .bind(to_i64(payment.nonce)?)
            .bind(to_i64(payment.amount)?)
            .bind(payment.tokens)
            .bind(to_i64(payment.slot)?)
            .bind(now())
            .bind(payment.mint.as_deref())
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
            "SELECT id, signature, lamports, tokens, slot, mint FROM payments
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
            amount: row.try_get::<i64, _>("lamports")?.max(0) as u64,
            mint: row.try_get("mint")?,
            tokens: row.try_get("tokens")?,
            slot: row.try_get::<i64, _>("slot")?.max(0) as u64,
        }))
    }
}

/// What a wallet has paid in one asset, over all its payments, and what that bought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidIn {
    /// The token's mint (base58); `None` for SOL.
    pub mint: Option<String>,
    /// Lamports, or base units of `mint`.
    pub amount: u64,
    /// Ledger tokens those payments are worth.
    pub tokens: i64,
}

impl Ledger {
    /// What `user` has paid per asset (SOL first, then mints in order): where their credit
    /// came from, for `/v1/balance`.
    pub async fn paid_in(&self, user: &str) -> Result<Vec<PaidIn>> {
        let rows = sqlx::query(
            "SELECT mint, CAST(SUM(lamports) AS BIGINT) AS amount,
                    CAST(SUM(tokens) AS BIGINT) AS tokens
             FROM payments WHERE user_key = $1 GROUP BY mint ORDER BY mint",
        )
        .bind(user)
        .fetch_all(&self.reads)
        .await?;
        let mut paid = rows
            .iter()
            .map(|row| {
                Ok(PaidIn {
                    mint: row.try_get("mint")?,
                    amount: row.try_get::<i64, _>("amount")?.max(0) as u64,
                    tokens: row.try_get("tokens")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // NULL sorts first on SQLite and last on Postgres: SOL first on both.
        paid.sort_by(|a, b| a.mint.cmp(&b.mint));
        Ok(paid)
    }
}

/// Inserts the payments (a payment seen before inserts nothing); returns the ids that are new.
const INSERT_PAYMENTS: &str = "
INSERT INTO payments (id, signature, user_key, namespace_id, nonce, lamports, tokens, slot, mint,
                      seen_at)
SELECT p.*, $10::int8
FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[], $7::int8[],
            $8::int8[], $9::text[]) AS p
ON CONFLICT (id) DO NOTHING
RETURNING id";

/// The pending credits that reference one of the batch's transactions for the same user, with
/// what that transaction's payments to the user are worth.
const WAITING_CREDITS: &str = "
SELECT e.id, e.user_key, e.tokens, w.worth
FROM entries e
JOIN (SELECT signature, user_key, CAST(SUM(tokens) AS BIGINT) AS worth FROM payments
      WHERE signature = ANY($1) GROUP BY signature, user_key) w
  ON e.reference = w.signature AND e.user_key = w.user_key
WHERE e.kind = 'credit' AND e.status = 'pending'
ORDER BY e.id";

/// [`Ledger::record_payments`] on Postgres, by the same rules: the users' balance rows are
/// locked first (so a credit written concurrently is either seen here or sees these payments),
/// then a waiting credit is applied only when it announces exactly what its payment is worth.
async fn record_together(conn: &mut PgConnection, payments: &[Payment], at: i64) -> Result<usize> {
    if payments.is_empty() {
        return Ok(0);
    }
    let mut users: Vec<&str> = payments.iter().map(|p| p.user.as_str()).collect();
    users.sort_unstable();
    users.dedup();
    sqlx::query(LOCK_BALANCES)
        .bind(&users)
        .fetch_all(&mut *conn)
        .await?;

    let numbers = |field: fn(&Payment) -> u64| -> Result<Vec<i64>> {
        payments.iter().map(|p| to_i64(field(p))).collect()
    };
    let new = sqlx::query(INSERT_PAYMENTS)
        .bind(
            payments
                .iter()
                .map(|p| format!("{}:{}", p.signature, p.index))
                .collect::<Vec<_>>(),
        )
        .bind(
            payments
                .iter()
                .map(|p| p.signature.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(payments.iter().map(|p| p.user.as_str()).collect::<Vec<_>>())
        .bind(numbers(|p| p.namespace_id)?)
        .bind(numbers(|p| p.nonce)?)
        .bind(numbers(|p| p.amount)?)
        .bind(payments.iter().map(|p| p.tokens).collect::<Vec<_>>())
        .bind(numbers(|p| p.slot)?)
        .bind(
            payments
                .iter()
                .map(|p| p.mint.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(at)
        .fetch_all(&mut *conn)
        .await?
        .len();
    if new == 0 {
        return Ok(0);
    }

    let mut signatures: Vec<&str> = payments.iter().map(|p| p.signature.as_str()).collect();
    signatures.sort_unstable();
    signatures.dedup();
    let (mut ids, mut statuses) = (Vec::new(), Vec::new());
    let mut credited: BTreeMap<String, i64> = BTreeMap::new();
    for row in sqlx::query(WAITING_CREDITS)
        .bind(&signatures)
        .fetch_all(&mut *conn)
        .await?
    {
        let (id, user): (String, String) = (row.try_get("id")?, row.try_get("user_key")?);
        let (tokens, worth): (i64, i64) = (row.try_get("tokens")?, row.try_get("worth")?);
        if tokens == worth {
            *credited.entry(user).or_default() += tokens;
            statuses.push("applied");
        } else {
            tracing::warn!(
                credit = id,
                tokens,
                worth,
                "ledger: credit disagrees with its payment; refused"
            );
            statuses.push("rejected");
        }
        ids.push(id);
    }
    if !ids.is_empty() {
        sqlx::query(STORE)
            .bind(&ids)
            .bind(&statuses)
            .bind(at)
            .bind(credited.keys().collect::<Vec<_>>())
            .bind(credited.values().copied().collect::<Vec<_>>())
            .bind(vec![0i64; credited.len()])
            .execute(&mut *conn)
            .await?;
    }
    Ok(new)
}
