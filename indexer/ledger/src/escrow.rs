//! x402 `escrow` payments: a registered wallet's signed authorisation, locked on chain for a
//! request's worst case and settled for what the request cost. The row is claimed by the lock
//! account (one per wallet and authorisation nonce) before the lock is sent, so every replica
//! sharing the ledger agrees on one outcome: locked once, settled once, charged once.
//!
//! The settlement is the payment: once it lands it is recorded like a chain payment (a
//! payments row and an applied credit entry referencing its transaction, nonce -1 like other
//! x402 payments, so the controller never mistakes it for a redeemed top-up) and the request's
//! debit is then charged against it. Its worth covers the cost (the units settled are the cost
//! rounded up to a whole base unit), so the payer's balance keeps at most that rounding.
use super::{
    attest::Rail,
    credits::{credit_settled_payment, SettledPayment},
    to_i64, Ledger, LedgerError, Result,
};
use sqlx::Row;

/// One authorisation as the gateway verified it, before its lock is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscrowLock {
    /// The lock account's address (base58): the claim.
    pub lock: String,
    /// The wallet whose vault is locked, and whose balance the settlement credits.
    pub payer: String,
    pub mint: String,
    /// The authorisation's nonce (the lock account is addressed by it).
    pub nonce: u64,
    /// Base units locked: the authorisation's maximum.
    pub max_amount: u64,
    /// Unix seconds after which the lock can no longer be settled (the wallet may release it).
    pub deadline: i64,
    /// The request it pays for.
    pub request_id: String,
    /// The lock transaction's id, and its blockhash (once expired, a lock never seen never
    /// will be).
    pub lock_tx: String,
    pub blockhash: String,
}

/// What a locked request cost, recorded before its settlement is sent so that housekeeping
/// can finish it if the replica dies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscrowCost {
    /// Ledger tokens charged for the request.
    pub cost: i64,
    /// Base units settled: the cost rounded up to a whole unit, at most what was locked.
    pub units: u64,
    pub model: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

/// A lock and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscrowRow {
    pub lock: EscrowLock,
    pub state: EscrowState,
    pub cost: Option<EscrowCost>,
    /// The settlement's transaction and blockhash, once sent.
    pub settle_tx: Option<String>,
    pub settle_blockhash: Option<String>,
    /// When it last moved (unix seconds).
    pub updated_at: i64,
}

/// Where an escrow payment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscrowState {
    /// Claimed; the lock is being sent.
    Locking,
    /// The lock landed; the request is being served.
    Locked,
    /// The cost is known; the settlement is being sent.
    Settling,
    /// The settlement landed and was credited; the debit is being charged.
    Settled,
    /// Done: settled, credited and charged.
    Charged,
    /// Settled at zero (nothing was served): the wallet keeps everything.
    Released,
    /// The lock never landed: nothing happened.
    Failed,
}

impl EscrowState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Locking => "locking",
            Self::Locked => "locked",
            Self::Settling => "settling",
            Self::Settled => "settled",
            Self::Charged => "charged",
            Self::Released => "released",
            Self::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Result<Self> {
        [
            Self::Locking,
            Self::Locked,
            Self::Settling,
            Self::Settled,
            Self::Charged,
            Self::Released,
            Self::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
        .ok_or_else(|| LedgerError::Amount(format!("unknown escrow state {text}")))
    }
}

const COLUMNS: &str = "lock, payer, mint, nonce, max_amount, deadline, request_id, lock_tx,
    blockhash, state, cost, units, model, prompt_tokens, completion_tokens, settle_tx, settle_blockhash, updated_at";

impl Ledger {
    /// Claims `lock` before it is sent. `None` when this call claimed it; otherwise the state
    /// another call (a replay, a concurrent copy) left it in.
    pub async fn escrow_claim(&self, lock: &EscrowLock) -> Result<Option<EscrowState>> {
        let at = self.now();
        let inserted = sqlx::query(
            "INSERT INTO x402_locks (lock, payer, mint, nonce, max_amount, deadline, request_id,
                 lock_tx, blockhash, state, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'locking', $10, $10)
             ON CONFLICT (lock) DO NOTHING",
        )
        .bind(&lock.lock)
        .bind(&lock.payer)
        .bind(&lock.mint)
        .bind(to_i64(lock.nonce)?)
        .bind(to_i64(lock.max_amount)?)
        .bind(lock.deadline)
        .bind(&lock.request_id)
        .bind(&lock.lock_tx)
        .bind(&lock.blockhash)
        .bind(at)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(None);
        }
        Ok(self.escrow_row(&lock.lock).await?.map(|row| row.state))
    }

    /// Moves lock `lock` from `from` to `to`; false when it was not in `from` (another call
    /// moved it first, and the caller must not act on it).
    pub async fn escrow_move(
        &self,
        lock: &str,
        from: EscrowState,
        to: EscrowState,
    ) -> Result<bool> {
        let moved = sqlx::query(
            "UPDATE x402_locks SET state = $1, updated_at = $2 WHERE lock = $3 AND state = $4",
        )
        .bind(to.as_str())
        .bind(self.now())
        .bind(lock)
        .bind(from.as_str())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(moved == 1)
    }

    /// Records what the locked request `request_id` cost and the settlement about to be sent
    /// (`locked` → `settling`); false when it was not locked any more.
    pub async fn escrow_cost(
        &self,
        lock: &str,
        request_id: &str,
        cost: &EscrowCost,
        settle_tx: &str,
        blockhash: &str,
    ) -> Result<bool> {
        let moved = sqlx::query(
            "UPDATE x402_locks SET state = 'settling', cost = $1, units = $2, model = $3,
                 prompt_tokens = $4, completion_tokens = $5, settle_tx = $6,
                 settle_blockhash = $7, request_id = $8, updated_at = $9
             WHERE lock = $10 AND state = 'locked'",
        )
        .bind(cost.cost)
        .bind(to_i64(cost.units)?)
        .bind(&cost.model)
        .bind(cost.prompt_tokens)
        .bind(cost.completion_tokens)
        .bind(settle_tx)
        .bind(blockhash)
        .bind(request_id)
        .bind(self.now())
        .bind(lock)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(moved == 1)
    }

    /// Replaces the settlement `previous` (which expired unseen) with `settle_tx`; false when
    /// another call replaced it first (only the winner sends: one settlement is ever live).
    pub async fn escrow_resend(
        &self,
        lock: &str,
        previous: &str,
        settle_tx: &str,
        blockhash: &str,
    ) -> Result<bool> {
        let moved = sqlx::query(
            "UPDATE x402_locks SET settle_tx = $1, settle_blockhash = $2, updated_at = $3
             WHERE lock = $4 AND state = 'settling' AND settle_tx = $5",
        )
        .bind(settle_tx)
        .bind(blockhash)
        .bind(self.now())
        .bind(lock)
        .bind(previous)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(moved == 1)
    }

    /// The settlement of `lock` landed in `transaction` (its recorded settlement) at `slot`,
    /// worth `tokens`: records it as a payment and credits its payer, in one transaction
    /// (`settling` → `settled`). False when another call already did.
    pub async fn escrow_credit(
        &self,
        lock: &str,
        transaction: &str,
        slot: u64,
        namespace_id: u64,
        tokens: i64,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let at = self.now();
        let Some(row) = sqlx::query(
            "UPDATE x402_locks SET state = 'settled', updated_at = $2
             WHERE lock = $3 AND state = 'settling' AND settle_tx = $1
             RETURNING payer, mint, units",
        )
        .bind(transaction)
        .bind(at)
        .bind(lock)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(false);
        };
        let payer: String = row.try_get("payer")?;
        let mint: String = row.try_get("mint")?;
        let units: i64 = row.try_get("units")?;
        let payment = SettledPayment {
            entry_id: format!("escrow:{lock}"),
            transaction,
            payer: &payer,
            mint: &mint,
            namespace_id,
            amount: units,
            tokens,
            slot,
            at,
            rail: Rail::Escrow,
        };
        credit_settled_payment(&mut tx, &payment, &self.attestor).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Lock `lock`, if it was ever claimed.
    pub async fn escrow_row(&self, lock: &str) -> Result<Option<EscrowRow>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM x402_locks WHERE lock = $1"))
            .bind(lock)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(read_row).transpose()
    }

    /// Locks still moving that last moved before `before` (unix seconds): those whose replica
    /// died or gave up, for housekeeping to finish from the chain.
    pub async fn escrow_unfinished(&self, before: i64) -> Result<Vec<EscrowRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM x402_locks
             WHERE state IN ('locking', 'locked', 'settling', 'settled') AND updated_at < $1
             ORDER BY updated_at"
        ))
        .bind(before)
        .fetch_all(&self.reads)
        .await?;
        rows.iter().map(read_row).collect()
    }
}

fn read_row(row: &sqlx::any::AnyRow) -> Result<EscrowRow> {
    let unsigned = |index: usize, value: i64| {
        u64::try_from(value).map_err(|_| LedgerError::Column(index, "negative"))
    };
    let cost: Option<i64> = row.try_get("cost")?;
    let cost = match cost {
        None => None,
        Some(cost) => Some(EscrowCost {
            cost,
            units: unsigned(11, row.try_get::<Option<i64>, _>("units")?.unwrap_or(0))?,
            model: row
                .try_get::<Option<String>, _>("model")?
                .unwrap_or_default(),
            prompt_tokens: row.try_get::<Option<i64>, _>("prompt_tokens")?.unwrap_or(0),
            completion_tokens: row
                .try_get::<Option<i64>, _>("completion_tokens")?
                .unwrap_or(0),
        }),
    };
    Ok(EscrowRow {
        lock: EscrowLock {
            lock: row.try_get("lock")?,
            payer: row.try_get("payer")?,
            mint: row.try_get("mint")?,
            nonce: unsigned(3, row.try_get("nonce")?)?,
            max_amount: unsigned(4, row.try_get("max_amount")?)?,
            deadline: row.try_get("deadline")?,
            request_id: row.try_get("request_id")?,
            lock_tx: row.try_get("lock_tx")?,
            blockhash: row.try_get("blockhash")?,
        },
        state: EscrowState::parse(&row.try_get::<String, _>("state")?)?,
        cost,
        settle_tx: row.try_get("settle_tx")?,
        settle_blockhash: row.try_get("settle_blockhash")?,
        updated_at: row.try_get("updated_at")?,
    })
}
