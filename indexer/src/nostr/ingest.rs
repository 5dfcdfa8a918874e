//! Signed kind-1573 events applied to the ledger: a `Transaction` counts only when a trusted
//! key signed it (credits from controller keys, debits from proxy keys), and each event counts
//! once. The watcher ([`super::watcher`]) feeds it a batch at a time (one ledger transaction);
//! the cursor and the metrics read its types.
use crate::{
    ledger::{Applied, EntryKind, Ledger, NewEntry},
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
    let mut outcomes = ingest_verified(ledger, trust, &[event]).await?;
    Ok(outcomes
        .pop()
        .unwrap_or(Ingested::Ignored("nothing applied".into())))
}

/// Applies the trusted `Transaction`s among `events`, whose signatures the caller verified,
/// in one ledger transaction; what each event did, in order.
pub(crate) async fn ingest_verified(
    ledger: &Ledger,
    trust: &Trust,
    events: &[&Event],
) -> crate::ledger::Result<Vec<Ingested>> {
    let read: Vec<Read> = events.iter().map(|event| read(trust, event)).collect();
    let entries: Vec<NewEntry> = read
        .iter()
        .filter_map(|read| match read {
            Read::Entry(entry) => Some(entry.clone()),
            Read::Done(_) => None,
        })
        .collect();
    let mut applied = ledger.apply_all(&entries).await?.into_iter();
    Ok(read
        .into_iter()
        .map(|read| match read {
            Read::Done(ingested) => ingested,
            Read::Entry(entry) => {
                let outcome = applied
                    .next()
                    .unwrap_or(Applied::Rejected("no outcome".into()));
                match entry.kind {
                    EntryKind::Credit => Ingested::Credit(outcome),
                    EntryKind::Debit => Ingested::Debit(outcome),
                }
            }
        })
        .collect())
}

/// What one verified event asks of the ledger.
enum Read {
    /// A trusted credit or debit, to apply.
    Entry(NewEntry),
    /// Nothing to apply.
    Done(Ingested),
}

/// Reads a verified event: a credit signed by a controller or a debit signed by a proxy is an
/// entry; anything else is settled here.
fn read(trust: &Trust, event: &Event) -> Read {
    let message: DsProxyMessage = match serde_json::from_str(&event.content) {
        Ok(message) => message,
        Err(error) => {
            return Read::Done(Ingested::Ignored(format!("not a gateway message: {error}")))
        }
    };
    let (author, id) = (event.pubkey.to_hex(), event.id.to_hex());
    let ignored = |reason: String| Read::Done(Ingested::Ignored(reason));
    match message {
        DsProxyMessage::Transaction {
            rail: Some(rail), ..
        } => ignored(format!(
            "{rail} entry attested by {author}: already in its ledger"
        )),
        DsProxyMessage::Transaction {
            user,
            tokens,
            reference,
            ..
        } if tokens > 0 => {
            if !trust.controllers.contains(&event.pubkey) {
                return ignored(format!("credit from untrusted key {author}"));
            }
            Read::Entry(NewEntry::credit(
                &user,
                tokens,
                reference.as_deref(),
                &id,
                &author,
            ))
        }
        DsProxyMessage::Transaction {
            user,
            tokens,
            reference,
            ..
        } if tokens < 0 => {
            if !trust.proxies.contains(&event.pubkey) {
                return ignored(format!("debit from untrusted key {author}"));
            }
            let magnitude = tokens.checked_neg().unwrap_or(i64::MAX);
            Read::Entry(NewEntry::debit(
                &user,
                magnitude,
                reference.as_deref(),
                &id,
                &author,
            ))
        }
        DsProxyMessage::Transaction { .. } => ignored("zero-token transaction".into()),
        DsProxyMessage::Request { .. } => Read::Done(Ingested::Request),
        DsProxyMessage::Status { .. } => ignored("status".into()),
    }
}
