//! Drains the outbox: publishes each queued signed event until a relay accepts it, backing
//! off on failure. Everything that must reach the relay goes through here (invariant 6).
use futures_util::StreamExt;
use ledger::Ledger;
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
) -> ledger::Result<()> {
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

/// The most events one pass reads (and marks published in one statement).
const PASS: i64 = 100;
/// Events of one pass waiting for a relay's answer at once.
const IN_FLIGHT: usize = 32;

/// One pass over what is due; returns how many events a relay accepted.
pub async fn publish_due(client: &Client, ledger: &Ledger) -> ledger::Result<usize> {
    let due = ledger.due_outbox(PASS).await?;
    let attempts = due.into_iter().map(|item| async move {
        let sent = match Event::from_json(&item.event_json) {
            Ok(event) => {
                let sent = client.send_event(&event).await;
                tracing::debug!(id = item.id, event = %event.id, ?sent, "outbox: publish attempt");
                Sent::Tried(sent)
            }
            Err(error) => Sent::Unparseable(error.to_string()),
        };
        (item, sent)
    });
    let mut attempts = futures_util::stream::iter(attempts).buffered(IN_FLIGHT);
    let mut accepted = Vec::new();
    while let Some((item, sent)) = attempts.next().await {
        match sent {
            Sent::Tried(Ok(output)) if !output.success.is_empty() => accepted.push(item.id),
            Sent::Tried(Ok(output)) => {
                let reason = output
                    .failed
                    .values()
                    .next()
                    .cloned()
                    .unwrap_or_else(|| "no relay".into());
                ledger.mark_failed(item.id, item.attempts, &reason).await?;
            }
            Sent::Tried(Err(error)) => {
                ledger
                    .mark_failed(item.id, item.attempts, &error.to_string())
                    .await?
            }
            Sent::Unparseable(error) => {
                tracing::error!(id = item.id, %error, "outbox: unparseable event; parking it");
                ledger.mark_failed(item.id, 30, &error).await?;
            }
        }
    }
    ledger.mark_published(&accepted).await?;
    Ok(accepted.len())
}

/// What became of one attempt to publish.
enum Sent {
    Tried(Result<Output<EventId>, nostr_sdk::client::Error>),
    Unparseable(String),
}
