//! Reads the program's events from the chain into the ledger: every `Paid` of the operator's
//! namespace becomes a payment (the proof a credit waits for), worth its lamports at the
//! deployment's rate. The cursor is saved after each batch; payments are keyed by signature
//! and index, so a batch read twice counts once.
use super::{Chain, ChainEvent};
use crate::ledger::{tokens_for_lamports, Ledger, Payment};
use balance_payment::sdk::events::ProgramEvent;

/// Cursor name in the ledger.
pub const CURSOR: &str = "chain";

/// Which payments count and what they are worth.
#[derive(Debug, Clone, Copy)]
pub struct PaymentRule {
    pub namespace_id: u64,
    /// Ledger tokens per SOL paid.
    pub tokens_per_sol: u64,
}

/// Reads one batch; returns how many payments were new. The batch's payments are recorded
/// together (those of one transaction must be, since a credit announces their sum).
pub async fn sync_once(
    chain: &dyn Chain,
    ledger: &Ledger,
    rule: PaymentRule,
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

fn payment_of(event: &ChainEvent, rule: PaymentRule) -> anyhow::Result<Option<Payment>> {
    Ok(match &event.event {
        ProgramEvent::Paid(paid) if paid.namespace_id == rule.namespace_id => Some(Payment {
            signature: event.signature.clone(),
            index: event.index,
            user: paid.user.to_string(),
            namespace_id: paid.namespace_id,
            nonce: paid.nonce,
            lamports: paid.amount,
            tokens: tokens_for_lamports(paid.amount, rule.tokens_per_sol).ok_or_else(|| {
                anyhow::anyhow!("payment {} overflows the ledger", event.signature)
            })?,
            slot: event.slot,
        }),
        _ => None,
    })
}
