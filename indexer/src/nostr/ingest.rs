//! One signed kind-1573 event applied to the ledger: a `Transaction` counts only when a trusted
//! key signed it (credits from controller keys, debits from proxy keys), and each event counts
//! once. The watcher ([`super::watcher`]) feeds it; the cursor and the metrics read its types.
use crate::{
    ledger::{Applied, Ledger, NewEntry},
    wire::DsProxyMessage,
};
use nostr_sdk::prelude::*;
use std::collections::HashSet;

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
