//! Turns kind-1573 events into ledger entries: credits only from controller keys, debits only
//! from proxy keys, each applied once; `Request`s go to the controller.
//!
//! Resuming: the cursor is the newest `created_at` applied; after a restart or reconnect the
//! subscription starts [`OVERLAP`] before it and duplicates are dropped by id. (DePHY resumed
//! at `latest + 1` and lost events published in the same second.)
use super::events::session_filter;
use crate::{
    ledger::{Applied, Ledger, NewEntry},
    wire::DsProxyMessage,
};
use nostr_sdk::prelude::*;
use std::{collections::HashSet, time::Duration};
use tokio::sync::{broadcast::error::RecvError, mpsc, watch};

/// How far before the cursor a resumed subscription starts.
pub const OVERLAP: u64 = 120;
/// Cursor name in the ledger.
pub const CURSOR: &str = "nostr";

/// Whose events count.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// May credit (positive `Transaction`s).
    pub controllers: HashSet<PublicKey>,
    /// May debit (negative `Transaction`s).
    pub proxies: HashSet<PublicKey>,
}

/// What one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    Credit(Applied),
    Debit(Applied),
    /// A user request, for the controller.
    Request,
    /// Not counted, and why.
    Ignored(String),
}

/// Applies one event to the ledger if it is a trusted `Transaction`.
pub async fn ingest(
    ledger: &Ledger,
    trust: &Trust,
    event: &Event,
) -> crate::ledger::Result<Ingested> {
    if event.verify().is_err() {
        return Ok(Ingested::Ignored("bad signature".into()));
    }
    let message: DsProxyMessage = match serde_json::from_str(&event.content) {
        Ok(message) => message,
        Err(error) => return Ok(Ingested::Ignored(format!("not a gateway message: {error}"))),
    };
    let (author, id) = (event.pubkey.to_hex(), event.id.to_hex());
    match message {
        DsProxyMessage::Transaction {
            user,
            tokens,
            reference,
            ..
        } if tokens > 0 => {
            if !trust.controllers.contains(&event.pubkey) {
                return Ok(Ingested::Ignored(format!(
                    "credit from untrusted key {author}"
                )));
            }
            let entry = NewEntry::credit(&user, tokens, reference.as_deref(), &id, &author);
            Ok(Ingested::Credit(ledger.apply(&entry).await?))
        }
        DsProxyMessage::Transaction {
            user,
            tokens,
            reference,
            ..
        } if tokens < 0 => {
            if !trust.proxies.contains(&event.pubkey) {
                return Ok(Ingested::Ignored(format!(
                    "debit from untrusted key {author}"
                )));
            }
            let magnitude = tokens.checked_neg().unwrap_or(i64::MAX);
            let entry = NewEntry::debit(&user, magnitude, reference.as_deref(), &id, &author);
            Ok(Ingested::Debit(ledger.apply(&entry).await?))
        }
        DsProxyMessage::Transaction { .. } => {
            Ok(Ingested::Ignored("zero-token transaction".into()))
        }
        DsProxyMessage::Request { .. } => Ok(Ingested::Request),
        DsProxyMessage::Status { .. } => Ok(Ingested::Ignored("status".into())),
    }
}

/// Subscribes to `session` events addressed to `recipients` and ingests them until
/// `shutdown`; requests are passed to `requests`.
pub async fn run(
    client: Client,
    ledger: Ledger,
    trust: Trust,
    session: String,
    recipients: Vec<PublicKey>,
    requests: Option<mpsc::Sender<Event>>,
    mut shutdown: watch::Receiver<bool>,
) -> crate::ledger::Result<()> {
    let mut notifications = client.notifications();
    let mut newest = ledger
        .cursor(CURSOR)
        .await?
        .and_then(|c| c.parse::<u64>().ok())
        .unwrap_or(0);
    let since = |newest: u64| Timestamp::from(newest.saturating_sub(OVERLAP));
    if let Err(error) = client
        .subscribe(session_filter(&session, &recipients, since(newest)), None)
        .await
    {
        tracing::warn!(%error, "nostr: subscribe failed; the relay pool retries on reconnect");
    }
    let mut seen: HashSet<EventId> = HashSet::new();
    loop {
        let event = tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            received = notifications.recv() => match received {
                Ok(RelayPoolNotification::Event { event, .. }) => *event,
                Ok(other) => {
                    tracing::trace!(?other, "nostr: notification");
                    continue;
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "nostr: fell behind; back-filling");
                    let filter = session_filter(&session, &recipients, since(newest));
                    match client.fetch_events(filter, Duration::from_secs(10)).await {
                        Ok(events) => {
                            for event in events {
                                handle(&ledger, &trust, &event, &requests, &mut seen, &mut newest).await?;
                            }
                        }
                        Err(error) => tracing::warn!(%error, "nostr: back-fill failed"),
                    }
                    continue;
                }
                Err(RecvError::Closed) => return Ok(()),
            },
        };
        handle(&ledger, &trust, &event, &requests, &mut seen, &mut newest).await?;
    }
}

async fn handle(
    ledger: &Ledger,
    trust: &Trust,
    event: &Event,
    requests: &Option<mpsc::Sender<Event>>,
    seen: &mut HashSet<EventId>,
    newest: &mut u64,
) -> crate::ledger::Result<()> {
    tracing::debug!(id = %event.id, author = %event.pubkey, "nostr: received");
    if event.kind != Kind::Custom(crate::wire::KIND_DS_PROXY) || !seen.insert(event.id) {
        return Ok(());
    }
    if seen.len() > 100_000 {
        seen.clear();
    }
    let outcome = ingest(ledger, trust, event).await?;
    match &outcome {
        Ingested::Request => {
            if let Some(requests) = requests {
                if requests.send(event.clone()).await.is_err() {
                    tracing::warn!("nostr: controller is gone; request dropped");
                }
            }
        }
        Ingested::Ignored(reason) => tracing::debug!(id = %event.id, %reason, "nostr: ignored"),
        applied => tracing::info!(id = %event.id, ?applied, "nostr: ingested"),
    }
    let created = event.created_at.as_secs();
    if created > *newest {
        *newest = created;
        ledger.set_cursor(CURSOR, &created.to_string()).await?;
    }
    Ok(())
}
