//! Drains the outbox: publishes each queued signed event until a relay accepts it, backing
//! off on failure. Everything that must reach the relay goes through here (invariant 6).
use crate::ledger::Ledger;
use nostr_sdk::prelude::*;
use std::{sync::Arc, time::Duration};
use tokio::sync::{watch, Notify};

/// How long the publisher sleeps when nothing is due and nobody rings.
const IDLE: Duration = Duration::from_millis(250);

/// Publishes due outbox events through `client` until `shutdown` turns true, riding out
/// ledger errors with a pause (the gateway's publisher). `wake` lets producers skip the idle
/// wait.
pub async fn run(
    client: Client,
    ledger: Ledger,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        match serve(&client, &ledger, &wake, shutdown.clone()).await {
            Ok(()) => return,
            Err(error) => tracing::warn!(%error, "outbox: cannot read the ledger"),
        }
        tokio::select! {
            _ = tokio::time::sleep(IDLE) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Publishes due outbox events until `shutdown` turns true (`Ok`) or the ledger fails (the
/// error, for a supervisor to restart it with back-off).
pub async fn serve(
    client: &Client,
    ledger: &Ledger,
    wake: &Notify,
    mut shutdown: watch::Receiver<bool>,
) -> crate::ledger::Result<()> {
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        if publish_due(client, ledger).await? > 0 {
            continue;
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(IDLE) => {}
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

/// One pass over what is due; returns how many events a relay accepted.
pub async fn publish_due(client: &Client, ledger: &Ledger) -> crate::ledger::Result<usize> {
    let mut accepted = 0;
    for item in ledger.due_outbox(100).await? {
        let event = match Event::from_json(&item.event_json) {
            Ok(event) => event,
            Err(error) => {
                tracing::error!(id = item.id, %error, "outbox: unparseable event; parking it");
                ledger.mark_failed(item.id, 30, &error.to_string()).await?;
                continue;
            }
        };
        let sent = client.send_event(&event).await;
        tracing::debug!(id = item.id, event = %event.id, ?sent, "outbox: publish attempt");
        match sent {
            Ok(output) if !output.success.is_empty() => {
                ledger.mark_published(item.id).await?;
                accepted += 1;
            }
            Ok(output) => {
                let reason = output
                    .failed
                    .values()
                    .next()
                    .cloned()
                    .unwrap_or_else(|| "no relay".into());
                ledger.mark_failed(item.id, item.attempts, &reason).await?;
            }
            Err(error) => {
                ledger
                    .mark_failed(item.id, item.attempts, &error.to_string())
                    .await?
            }
        }
    }
    Ok(accepted)
}
