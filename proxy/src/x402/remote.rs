//! Settling a payment through an external facilitator: it co-signs and submits; the gateway
//! believes only its own RPC. A copy of a payment another call is settling waits for that
//! call's outcome in the ledger, or finds the payment in its source account's history.
use super::{
    chain::Landing,
    facilitator::{Facilitator, Settlement, KNOWN_REASONS},
    wire::Requirements,
    X402,
};
use crate::error::ApiError;
use ledger::{Ledger, X402State};
use serde_json::Value;
use solana_sdk::{pubkey::Pubkey, signature::Signature, transaction::VersionedTransaction};
use std::time::Duration;
use tokio::time::Instant;

/// How often a copy of a payment looks whether the call settling it is done.
const POLL: Duration = Duration::from_millis(200);
/// Polls between two searches of the source account's history.
const SEARCH_EVERY: u32 = 5;
/// How far before a payment's offer could have expired its transaction is searched for.
const HISTORY_SECONDS: i64 = 300;

impl X402 {
    /// Has `facilitator` settle `tx` (claimed in the ledger by its payer's signature), and
    /// says how it landed and in which transaction. A copy of a payment another call is settling waits for
    /// that call's outcome; a refusal is passed on, the claim left for housekeeping to close
    /// once the chain is sure nothing landed.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn land_remotely(
        &self,
        facilitator: &Facilitator,
        ledger: &Ledger,
        payload: &Value,
        accepted: &Requirements,
        tx: &mut VersionedTransaction,
        source: &Pubkey,
        tokens: i64,
        deadline: Instant,
    ) -> Result<(Landing, Signature), ApiError> {
        let unnamed = tx.signatures[1];
        let timeout = deadline.saturating_duration_since(Instant::now());
        match facilitator.settle(payload, accepted, timeout).await {
            Ok(Settlement::Sent(id)) => {
                // Only the fee payer's signature of this very message is this payment's id.
                if !id.verify(self.fee_payer().as_ref(), &tx.message.serialize()) {
                    let reason = format!("the facilitator named {id}, not this payment");
                    return Ok((Landing::Unknown(reason), unnamed));
                }
                tx.signatures[0] = id;
                Ok((self.chain.wait(tx, deadline, false).await, id))
            }
            Ok(Settlement::Refused { reason, .. })
                if reason == "duplicate_settlement" || reason == "settlement_pending" =>
            {
                // Another call (a copy of this payment, or an earlier try whose answer was
                // lost) is settling it or has: its outcome, or the chain, decides.
                self.outcome_of(ledger, &unnamed, source, tokens, deadline)
                    .await
            }
            Ok(Settlement::Refused { reason, message }) => {
                let code = KNOWN_REASONS
                    .iter()
                    .find(|known| **known == reason)
                    .copied()
                    .unwrap_or("settlement_refused");
                Err(self.refuse(
                    tokens,
                    code,
                    format!("the facilitator refused the payment ({reason}): {message}"),
                ))
            }
            Err(error) => Ok((Landing::Unknown(error), unnamed)),
        }
    }

    /// Waits until `deadline` for the payment claimed by its payer's signature `unnamed` to
    /// be settled by another call, or to show in the history of its `source` token account —
    /// where a payment whose settling call died, or whose answer was lost, is found, and then
    /// credited by this call.
    async fn outcome_of(
        &self,
        ledger: &Ledger,
        unnamed: &Signature,
        source: &Pubkey,
        tokens: i64,
        deadline: Instant,
    ) -> Result<(Landing, Signature), ApiError> {
        // A payment lands within its blockhash's life (about a minute) of being signed; the
        // history is searched well past that.
        let lifetime = i64::try_from(self.max_timeout.as_secs()).unwrap_or(i64::MAX);
        let since = ledger
            .now()
            .saturating_sub(lifetime.saturating_add(HISTORY_SECONDS));
        for poll in 0u32.. {
            if Instant::now() >= deadline {
                break;
            }
            if poll % SEARCH_EVERY == 0 {
                if let Ok(Some((id, slot))) = self.chain.find(unnamed, source, since).await {
                    return Ok((Landing::Landed { slot }, id));
                }
            }
            match ledger.x402_state(&unnamed.to_string()).await? {
                Some(X402State::Credited) => {
                    return Err(self.refuse(
                        tokens,
                        "duplicate_settlement",
                        "this payment was used by another request; it was credited to the \
                         payer's balance once",
                    ))
                }
                Some(X402State::Failed) => {
                    return Ok((Landing::Refused("it failed".into()), *unnamed))
                }
                _ => tokio::time::sleep(POLL).await,
            }
        }
        let pending = "another request is settling this payment".into();
        Ok((Landing::Unknown(pending), *unnamed))
    }
}
