//! Settling a locked request: what it cost goes to the treasury (`settle_token`), is credited
//! to the wallet as a payment, and is charged as the request's debit; a request that served
//! nothing is released (settled at zero). Only one settlement of a lock is ever live: it is
//! recorded in the ledger before it is sent, and replaced (compare-and-swap, so one replica
//! wins) only once its blockhash expired unseen. Housekeeping ([`X402::escrow_sweep`]) finishes
//! what a replica left: a lock that never landed fails, one whose request was lost is
//! released, a recorded settlement is landed, credited and charged.
use super::super::{Landing, X402};
use crate::{meter::debit_event, state::AppState};
use balance_payment::sdk::token_instructions;
use ledger::{Charge, EscrowCost, EscrowLock, EscrowRow, EscrowState, Ledger, UsageRecord};
use solana_sdk::{hash::Hash, pubkey::Pubkey, signature::Signature};
use std::str::FromStr;
use tokio::time::Instant;

/// Why a settlement did not finish now: housekeeping finishes it.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("ledger: {0}")]
    Ledger(#[from] ledger::LedgerError),
    #[error("chain: {0}")]
    Chain(String),
    #[error("the lock moved on elsewhere")]
    Moved,
    #[error("this gateway holds no bot key")]
    Disabled,
}

impl X402 {
    /// The lock's settlement for `units`, signed on a fresh blockhash.
    async fn settlement(
        &self,
        lock: &EscrowLock,
        units: u64,
    ) -> Result<solana_sdk::transaction::VersionedTransaction, SettleError> {
        let escrow = self.escrow.as_ref().ok_or(SettleError::Disabled)?;
        let user = Pubkey::from_str(&lock.payer).map_err(|e| SettleError::Chain(e.to_string()))?;
        let blockhash = self
            .chain
            .rpc()
            .get_latest_blockhash()
            .await
            .map_err(|e| SettleError::Chain(e.to_string()))?;
        let settle = token_instructions::settle_token(
            &escrow.redeemer,
            user,
            lock.nonce,
            escrow.redeemer.bot,
            units,
        );
        escrow
            .transaction(&[settle], blockhash)
            .map_err(SettleError::Chain)
    }

    /// Settles request `request_id`'s lock for `cost` ledger tokens: records the cost and the
    /// settlement, lands it and credits it. Returns what may be charged for the request (the
    /// cost, at most what the units settled are worth).
    pub async fn settle_lock(
        &self,
        ledger: &Ledger,
        lock: &EscrowLock,
        request_id: &str,
        cost: i64,
        usage: &UsageRecord,
    ) -> Result<i64, SettleError> {
        if cost <= 0 {
            self.release_lock(ledger, lock).await?;
            return Ok(0);
        }
        // The cost rounded up to whole units, never more than was locked.
        let units = self.units_for(cost).min(lock.max_amount);
        let tx = self.settlement(lock, units).await?;
        let recorded = EscrowCost {
            cost,
            units,
            model: usage.model.clone(),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
        };
        let (signature, blockhash) = (tx.signatures[0], *tx.message.recent_blockhash());
        if !ledger
            .escrow_cost(
                &lock.lock,
                request_id,
                &recorded,
                &signature.to_string(),
                &blockhash.to_string(),
            )
            .await?
        {
            return Err(SettleError::Moved);
        }
        let landing = self
            .land(&tx, true, Instant::now() + self.max_timeout)
            .await;
        match self
            .credit_settlement(ledger, &lock.lock, &signature, units, landing)
            .await?
        {
            true => Ok(self.charge_cap(cost, units)),
            // Nothing was paid: nothing may be charged (not even from another balance).
            false => Ok(0),
        }
    }

    /// The most a request settled for `units` is charged: its cost, within what they are
    /// worth (an upstream that ignored the output bound is not charged beyond the lock).
    fn charge_cap(&self, cost: i64, units: u64) -> i64 {
        cost.min(self.asset.tokens_for(units).unwrap_or(i64::MAX))
    }

    /// Acts on what the chain said about settlement `signature` of `lock`: true when it paid
    /// and is credited, false when it never will (the lock is released).
    async fn credit_settlement(
        &self,
        ledger: &Ledger,
        lock: &str,
        signature: &Signature,
        units: u64,
        landing: Landing,
    ) -> Result<bool, SettleError> {
        match landing {
            Landing::Landed { slot } => {
                let worth = self
                    .asset
                    .tokens_for(units)
                    .ok_or_else(|| SettleError::Chain("the settlement overflows".into()))?;
                ledger
                    .escrow_credit(lock, &signature.to_string(), slot, self.namespace_id, worth)
                    .await?;
                tracing::info!(%lock, units, credited = worth, "x402 escrow settled");
                Ok(true)
            }
            // The lock can no longer be settled (it expired, and its wallet may release it):
            // the request is not charged.
            Landing::Refused(reason) => {
                tracing::warn!(%lock, %reason, "an x402 escrow settlement was refused; the lock \
                    stays its wallet's and the request is not charged");
                ledger
                    .escrow_move(lock, EscrowState::Settling, EscrowState::Released)
                    .await?;
                Ok(false)
            }
            Landing::Expired => Err(SettleError::Chain("the settlement expired unseen".into())),
            Landing::Unknown(reason) => Err(SettleError::Chain(reason)),
        }
    }

    /// A lock whose request served nothing goes back to its wallet whole (settled at zero).
    /// The row moves to `released` once the chain has closed the lock: while it is `locked`,
    /// only a release can close it (a settlement moves it to `settling` before it is sent), so
    /// a refusal means it is closed already (or expired, for its wallet to release). A release
    /// whose outcome is not known leaves it `locked`, for housekeeping to try again.
    pub async fn release_lock(
        &self,
        ledger: &Ledger,
        lock: &EscrowLock,
    ) -> Result<(), SettleError> {
        let tx = self.settlement(lock, 0).await?;
        match self
            .land(&tx, true, Instant::now() + self.max_timeout)
            .await
        {
            Landing::Landed { .. } | Landing::Refused(_) => {
                ledger
                    .escrow_move(&lock.lock, EscrowState::Locked, EscrowState::Released)
                    .await?;
                Ok(())
            }
            other => Err(SettleError::Chain(format!(
                "the release did not land ({other:?})"
            ))),
        }
    }

    /// Finishes locks whose replica died or gave up (those that last moved well before `now`):
    /// returns how many moved on.
    pub async fn escrow_sweep(&self, state: &AppState, now: i64) -> Result<usize, SettleError> {
        if self.escrow.is_none() {
            return Ok(0);
        }
        let ledger = &state.ledger;
        let request_timeout = state.config.limits.request_timeout_seconds;
        // Well after a live request would have moved it on.
        let grace = self.max_timeout.as_secs() + 30;
        let before = now.saturating_sub(i64::try_from(grace).unwrap_or(i64::MAX));
        let mut finished = 0;
        for row in ledger.escrow_unfinished(before).await? {
            let done = match row.state {
                EscrowState::Locking => self.sweep_locking(ledger, &row).await,
                EscrowState::Locked => {
                    let served_until =
                        row.updated_at + i64::try_from(request_timeout + 60).unwrap_or(i64::MAX);
                    if now < served_until {
                        continue;
                    }
                    self.release_lock(ledger, &row.lock).await.map(|()| true)
                }
                EscrowState::Settling => self.sweep_settling(ledger, &row).await,
                EscrowState::Settled => self.charge_settled(state, &row).await,
                _ => Ok(false),
            };
            match done {
                Ok(true) => finished += 1,
                Ok(false) => {}
                Err(error) => tracing::warn!(lock = %row.lock.lock, %error,
                    "an x402 escrow lock could not be finished now; retried later"),
            }
        }
        Ok(finished)
    }

    /// A lock claimed by a request that was lost before it landed: if it landed, it is
    /// released; if it never will, it failed.
    async fn sweep_locking(&self, ledger: &Ledger, row: &EscrowRow) -> Result<bool, SettleError> {
        let (signature, blockhash) = parse(&row.lock.lock_tx, &row.lock.blockhash)?;
        match self.chain.status(&signature, &blockhash, true).await {
            Landing::Landed { .. } => {
                if ledger
                    .escrow_move(&row.lock.lock, EscrowState::Locking, EscrowState::Locked)
                    .await?
                {
                    self.release_lock(ledger, &row.lock).await?;
                }
                Ok(true)
            }
            Landing::Refused(_) | Landing::Expired => Ok(ledger
                .escrow_move(&row.lock.lock, EscrowState::Locking, EscrowState::Failed)
                .await?),
            Landing::Unknown(_) => Ok(false),
        }
    }

    /// A settlement recorded but not known to have landed: credited if it did; replaced by a
    /// new one (one replica wins the swap) if it expired unseen.
    async fn sweep_settling(&self, ledger: &Ledger, row: &EscrowRow) -> Result<bool, SettleError> {
        let (Some(cost), Some(sent), Some(hash)) =
            (&row.cost, &row.settle_tx, &row.settle_blockhash)
        else {
            return Err(SettleError::Chain(
                "a settling lock without its settlement".into(),
            ));
        };
        let (signature, blockhash) = parse(sent, hash)?;
        let landing = match self.chain.status(&signature, &blockhash, true).await {
            Landing::Unknown(_) => return Ok(false),
            Landing::Expired => {
                let tx = self.settlement(&row.lock, cost.units).await?;
                let replaced = ledger
                    .escrow_resend(
                        &row.lock.lock,
                        sent,
                        &tx.signatures[0].to_string(),
                        &tx.message.recent_blockhash().to_string(),
                    )
                    .await?;
                if !replaced {
                    return Ok(false);
                }
                let landing = self
                    .land(&tx, true, Instant::now() + self.max_timeout)
                    .await;
                return self
                    .credit_settlement(
                        ledger,
                        &row.lock.lock,
                        &tx.signatures[0],
                        cost.units,
                        landing,
                    )
                    .await
                    .map(|_| true);
            }
            landing => landing,
        };
        self.credit_settlement(ledger, &row.lock.lock, &signature, cost.units, landing)
            .await
            .map(|_| true)
    }

    /// A settlement credited whose request's debit was not charged: charged now.
    async fn charge_settled(&self, state: &AppState, row: &EscrowRow) -> Result<bool, SettleError> {
        let Some(cost) = &row.cost else {
            return Err(SettleError::Chain("a settled lock without its cost".into()));
        };
        let charged = self.charge_cap(cost.cost, cost.units);
        let usage = UsageRecord {
            model: cost.model.clone(),
            prompt_tokens: cost.prompt_tokens,
            completion_tokens: cost.completion_tokens,
        };
        let lock = &row.lock;
        let charge = Charge {
            id: &lock.request_id,
            user: &lock.payer,
            cost: charged,
            key_id: None,
            usage: Some(usage),
            rate: None,
        };
        let (nostr, user, request_id, model) = (
            state.nostr.clone(),
            lock.payer.clone(),
            lock.request_id.clone(),
            cost.model.clone(),
        );
        let announce =
            move |charged| debit_event(&nostr, &user, &request_id, Some(&model), charged);
        state.ledger.charge(&charge, announce).await?;
        state
            .ledger
            .escrow_move(&lock.lock, EscrowState::Settled, EscrowState::Charged)
            .await?;
        state.outbox_wake.notify_one();
        Ok(true)
    }
}

fn parse(signature: &str, blockhash: &str) -> Result<(Signature, Hash), SettleError> {
    match (Signature::from_str(signature), Hash::from_str(blockhash)) {
        (Ok(signature), Ok(blockhash)) => Ok((signature, blockhash)),
        _ => Err(SettleError::Chain(
            "an unreadable transaction in the ledger".into(),
        )),
    }
}
