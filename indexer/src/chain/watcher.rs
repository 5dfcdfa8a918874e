//! Reads the program's events from the chain into the ledger: every `Paid` and `TokenPaid` of
//! the operator's namespace becomes a payment (the proof a credit waits for), worth its amount
//! at the operator's rate for its asset. The cursor is saved after each batch; payments are
//! keyed by signature and index, so a batch read twice counts once.
use super::{Chain, ChainEvent};
use crate::ledger::{tokens_for_lamports, Ledger, Payment};
use balance_payment::sdk::events::ProgramEvent;
use common::assets::TokenRate;
use std::sync::Arc;

/// Cursor name in the ledger.
pub const CURSOR: &str = "chain";

/// Which payments count and what they are worth.
#[derive(Debug, Clone)]
pub struct PaymentRule {
    pub namespace_id: u64,
    /// Ledger tokens per SOL paid.
    pub tokens_per_sol: u64,
    /// The tokens taken beside SOL, with their rates. A `TokenPaid` in any other mint is
    /// recorded as worth nothing: no credit can claim it.
    pub tokens: Arc<[TokenRate]>,
}

/// Reads one batch; returns how many payments were new. The batch's payments are recorded
/// together (those of one transaction must be, since a credit announces their sum).
pub async fn sync_once(
    chain: &dyn Chain,
    ledger: &Ledger,
    rule: &PaymentRule,
) -> anyhow::Result<usize> {
    let cursor = ledger.cursor(CURSOR).await?;
    let batch = chain.events_after(cursor.as_deref()).await?;
    let mut payments = Vec::new();
    for event in &batch.events {
        if let Some(payment) = payment_of(event, rule)? {
            payments.push(payment);
        }
    }
    // One ledger transaction for the batch (a transaction's payments are never split).
    let recorded = match payments.is_empty() {
        true => 0,
        false => ledger.record_payments(&payments).await?,
    };
    if let Some(cursor) = batch.cursor {
        ledger.set_cursor(CURSOR, &cursor).await?;
    }
    Ok(recorded)
}

fn payment_of(event: &ChainEvent, rule: &PaymentRule) -> anyhow::Result<Option<Payment>> {
    let overflow = || anyhow::anyhow!("payment {} overflows the ledger", event.signature);
    let payment = |user: String, nonce, amount, mint, tokens| Payment {
        signature: event.signature.clone(),
        index: event.index,
        user,
        namespace_id: rule.namespace_id,
        nonce,
        amount,
        mint,
        tokens,
        slot: event.slot,
    };
    Ok(match &event.event {
        ProgramEvent::Paid(paid) if paid.namespace_id == rule.namespace_id => Some(payment(
            paid.user.to_string(),
            paid.nonce,
            paid.amount,
            None,
            tokens_for_lamports(paid.amount, rule.tokens_per_sol).ok_or_else(overflow)?,
        )),
        ProgramEvent::TokenPaid(paid) if paid.namespace_id == rule.namespace_id => {
            let tokens = match rule.tokens.iter().find(|rate| rate.mint == paid.mint) {
                Some(rate) => rate.tokens_for(paid.amount).ok_or_else(overflow)?,
                None => {
                    tracing::warn!(
                        signature = event.signature,
                        mint = %paid.mint,
                        "chain: payment in a token this gateway does not price; worth nothing"
                    );
                    0
                }
            };
            Some(payment(
                paid.user.to_string(),
                paid.nonce,
                paid.amount,
                Some(paid.mint.to_string()),
                tokens,
            ))
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use balance_payment::events::TokenPaid;
    use solana_sdk::pubkey::Pubkey;

    fn token_paid(namespace_id: u64, mint: Pubkey, amount: u64) -> ChainEvent {
        ChainEvent {
            signature: "sig".into(),
            index: 0,
            slot: 7,
            event: ProgramEvent::TokenPaid(TokenPaid {
                namespace_id,
                user: Pubkey::new_unique(),
                mint,
                treasury: Pubkey::new_unique(),
                nonce: 3,
                amount,
                max_amount: amount,
                extra_data: [0; 32],
                vault_balance: 0,
            }),
        }
    }

    #[test]
    fn a_token_payment_is_worth_its_units_at_its_mints_rate_and_nothing_in_an_unpriced_mint() {
        let usdc = Pubkey::new_unique();
        let rule = PaymentRule {
            namespace_id: 0,
            tokens_per_sol: 1_000_000,
            tokens: vec![TokenRate {
                mint: usdc,
                decimals: 6,
                tokens_per_unit: 10_000,
                token_program: Pubkey::new_unique(),
            }]
            .into(),
        };
        let priced = payment_of(&token_paid(0, usdc, 2_500_000), &rule)
            .unwrap()
            .expect("a payment");
        assert_eq!(
            (priced.amount, priced.tokens, priced.nonce, priced.mint),
            (2_500_000, 25_000, 3, Some(usdc.to_string()))
        );
        let unpriced = payment_of(&token_paid(0, Pubkey::new_unique(), 2_500_000), &rule)
            .unwrap()
            .expect("recorded all the same");
        assert_eq!(unpriced.tokens, 0, "no credit can claim it");
        assert_eq!(
            payment_of(&token_paid(1, usdc, 2_500_000), &rule).unwrap(),
            None,
            "another namespace's payment"
        );
    }
}
