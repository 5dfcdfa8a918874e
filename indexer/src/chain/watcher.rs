//! Reads the program's events from the chain into the ledger: every `Paid` of the operator's
//! namespace becomes a payment (the proof a credit waits for). The cursor is saved after each
//! batch; payments are keyed by signature and index, so a batch read twice counts once.
use super::{Chain, ChainEvent};
use crate::ledger::{Ledger, Payment};
use balance_payment::sdk::events::ProgramEvent;
use std::{sync::Arc, time::Duration};
use tokio::sync::watch;

/// Cursor name in the ledger.
pub const CURSOR: &str = "chain";

/// Reads one batch; returns how many payments were new.
pub async fn sync_once(
    chain: &dyn Chain,
    ledger: &Ledger,
    namespace_id: u64,
) -> anyhow::Result<usize> {
    let cursor = ledger.cursor(CURSOR).await?;
    let batch = chain.events_after(cursor.as_deref()).await?;
    let mut recorded = 0;
    for event in &batch.events {
        if let Some(payment) = payment_of(event, namespace_id) {
            if ledger.record_payment(&payment).await? {
                recorded += 1;
            }
        }
    }
    if let Some(cursor) = batch.cursor {
        ledger.set_cursor(CURSOR, &cursor).await?;
    }
    Ok(recorded)
}

fn payment_of(event: &ChainEvent, namespace_id: u64) -> Option<Payment> {
    match &event.event {
        ProgramEvent::Paid(paid) if paid.namespace_id == namespace_id => Some(Payment {
            signature: event.signature.clone(),
            index: event.index,
            user: paid.user.to_string(),
            namespace_id: paid.namespace_id,
            nonce: paid.nonce,
            lamports: paid.amount,
            slot: event.slot,
        }),
        _ => None,
    }
}

/// Syncs until `shutdown`, waking on chain activity or every `poll`.
pub async fn run(
    chain: Arc<dyn Chain>,
    ledger: Ledger,
    namespace_id: u64,
    poll: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        match sync_once(chain.as_ref(), &ledger, namespace_id).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "chain: payments recorded"),
            Err(error) => tracing::warn!(%error, "chain: sync failed; retrying"),
        }
        tokio::select! {
            _ = chain.wait_for_activity(poll) => {}
            _ = shutdown.changed() => return,
        }
    }
}
