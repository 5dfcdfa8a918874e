//! Where the public facts come from: the program's events through any Solana RPC node
//! (`getSignaturesForAddress` pages, then each transaction), and the signed events through
//! the relays (paged back-fill, `nostr::backfill`). Nothing here needs the operator.
use super::books::{Announced, ChainPayment, Facts, PaymentKind, Transfer, Vault};
use crate::{
    chain::{rpc::RpcChain, Chain},
    nostr::{backfill::fetch_window_from, events::session_filter},
    wire::DsProxyMessage,
};
use anyhow::Context;
use balance_payment::sdk::events::ProgramEvent;
use nostr_sdk::prelude::*;
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

/// Events asked for per relay query.
const RELAY_PAGE: usize = 5_000;

/// What the chain says about namespace `namespace_id`: its payments, its users' vault
/// activity, and every treasury it has had.
pub struct ChainFacts {
    pub payments: Vec<ChainPayment>,
    pub vaults: BTreeMap<String, Vault>,
    pub treasuries: HashSet<String>,
}

/// Which of a vault's totals an event moves.
enum Column {
    Deposited,
    Withdrawn,
    Paid,
}

/// Reads every event of the program, oldest first.
pub async fn read_chain(chain: &RpcChain, namespace_id: u64) -> anyhow::Result<ChainFacts> {
    let mut facts = ChainFacts {
        payments: Vec::new(),
        vaults: BTreeMap::new(),
        treasuries: HashSet::new(),
    };
    let batch = chain
        .events_after(None)
        .await
        .context("reading the program's events")?;
    for event in batch.events {
        let ours = |id: u64| id == namespace_id;
        // What the event moved: (which vault column, user, mint (None: SOL), amount), and the
        // payment it is, when it paid this namespace.
        let (column, user, mint, amount, paid): (Column, _, _, _, Option<PaymentKind>) =
            match event.event {
                ProgramEvent::NamespaceCreated(e) if ours(e.namespace_id) => {
                    facts.treasuries.insert(e.treasury.to_string());
                    continue;
                }
                ProgramEvent::NamespaceUpdated(e) if ours(e.namespace_id) => {
                    facts.treasuries.insert(e.treasury.to_string());
                    continue;
                }
                ProgramEvent::Deposited(e) => (Column::Deposited, e.user, None, e.amount, None),
                ProgramEvent::Withdrawn(e) => (Column::Withdrawn, e.user, None, e.amount, None),
                ProgramEvent::TokenDeposited(e) => {
                    (Column::Deposited, e.user, Some(e.mint), e.amount, None)
                }
                ProgramEvent::TokenWithdrawn(e) => {
                    (Column::Withdrawn, e.user, Some(e.mint), e.amount, None)
                }
                ProgramEvent::Paid(e) if ours(e.namespace_id) => {
                    (Column::Paid, e.user, None, e.amount, Some(PaymentKind::Pay))
                }
                ProgramEvent::TokenPaid(e) if ours(e.namespace_id) => (
                    Column::Paid,
                    e.user,
                    Some(e.mint),
                    e.amount,
                    Some(PaymentKind::Pay),
                ),
                ProgramEvent::Settled(e) if ours(e.namespace_id) => (
                    Column::Paid,
                    e.user,
                    None,
                    e.amount,
                    Some(PaymentKind::Settle),
                ),
                ProgramEvent::TokenSettled(e) if ours(e.namespace_id) => (
                    Column::Paid,
                    e.user,
                    Some(e.mint),
                    e.amount,
                    Some(PaymentKind::Settle),
                ),
                _ => continue,
            };
        let (user, mint) = (user.to_string(), mint.map(|mint| mint.to_string()));
        let vault = facts.vaults.entry(user.clone()).or_default();
        let column = match column {
            Column::Deposited => &mut vault.deposited,
            Column::Withdrawn => &mut vault.withdrawn,
            Column::Paid => &mut vault.paid,
        };
        *column
            .entry(mint.clone().unwrap_or_else(|| "SOL".into()))
            .or_default() += amount;
        if let Some(kind) = paid {
            facts.payments.push(ChainPayment {
                signature: event.signature.clone(),
                user,
                mint,
                amount,
                slot: event.slot,
                block_time: None,
                kind,
            });
        }
    }
    Ok(facts)
}

/// Every kind-1573 event of `session` addressed to `machine` on each relay: the published
/// keys' events in a pass of their own (a stranger's flood cannot push them out of a page),
/// then everyone's (to list the strangers). A relay that cannot be reached fails the read:
/// its events would be missing.
pub async fn read_relays(
    relays: &[String],
    session: &str,
    machine: &PublicKey,
    trusted: &[PublicKey],
    timeout: Duration,
) -> anyhow::Result<Vec<Event>> {
    anyhow::ensure!(!relays.is_empty(), "no relay to read from");
    let all = session_filter(session, std::slice::from_ref(machine), Timestamp::from(0));
    let filters = vec![all.clone().authors(trusted.iter().copied()), all];
    let mut seen = HashSet::new();
    let mut events = Vec::new();
    for url in relays {
        let client = Client::default();
        client
            .add_relay(url.as_str())
            .await
            .with_context(|| format!("relay {url}"))?;
        client.connect().await;
        client.wait_for_connection(timeout).await;
        let connected = match client.relay(url.as_str()).await {
            Ok(relay) => relay.is_connected(),
            Err(_) => false,
        };
        let read = match connected {
            true => fetch_window_from(
                &client,
                &filters,
                Timestamp::from(0),
                Timestamp::now() + Duration::from_secs(600),
                RELAY_PAGE,
                timeout,
            )
            .await
            .map_err(anyhow::Error::from),
            false => Err(anyhow::anyhow!("cannot reach relay {url}")),
        };
        client.shutdown().await;
        for event in read? {
            if seen.insert(event.id) {
                events.push(event);
            }
        }
    }
    Ok(events)
}

/// The `Transaction` events among `events` (read by [`read_relays`]) that are what they say.
/// The relay pool verified each signature before handing the event over; the id is checked
/// here, so the pool's memory of verified ids cannot be paired with other content (as the
/// watcher does).
pub fn transactions(events: &[Event]) -> Vec<Announced> {
    events
        .iter()
        .filter(|event| event.verify_id())
        .filter_map(|event| match serde_json::from_str(&event.content).ok()? {
            DsProxyMessage::Transaction {
                user,
                tokens,
                reference,
                rail,
                ..
            } => Some(Announced {
                event_id: event.id.to_hex(),
                author: event.pubkey.to_hex(),
                created_at: i64::try_from(event.created_at.as_secs()).unwrap_or(i64::MAX),
                user,
                tokens,
                reference,
                rail,
            }),
            _ => None,
        })
        .collect()
}

/// Gathers the facts: the chain's, the relays' transactions, the x402 transfers they reference
/// (looked up on chain, to any treasury the namespace had), and when each payment no credit
/// references was made (for the grace period).
pub async fn gather(
    chain: &RpcChain,
    chain_facts: ChainFacts,
    announced: Vec<Announced>,
) -> anyhow::Result<Facts> {
    let mut transfers = HashMap::new();
    for event in &announced {
        let (Some("x402"), Some(reference)) = (event.rail.as_deref(), event.reference.as_deref())
        else {
            continue;
        };
        if transfers.contains_key(reference) {
            continue;
        }
        for treasury in &chain_facts.treasuries {
            if let Some(received) = chain.received_by(reference, treasury).await? {
                transfers.insert(
                    reference.to_owned(),
                    Transfer {
                        payer: received.payer,
                        mint: received.mint,
                        amount: received.amount,
                    },
                );
                break;
            }
        }
    }
    let referenced: HashSet<&str> = announced
        .iter()
        .filter_map(|event| event.reference.as_deref())
        .collect();
    let mut payments = chain_facts.payments;
    let mut times: HashMap<u64, Option<i64>> = HashMap::new();
    for payment in payments.iter_mut() {
        if referenced.contains(payment.signature.as_str()) {
            continue;
        }
        payment.block_time = match times.get(&payment.slot) {
            Some(at) => *at,
            None => {
                let at = chain.block_time(payment.slot).await?;
                times.insert(payment.slot, at);
                at
            }
        };
    }
    Ok(Facts {
        payments,
        transfers,
        events: announced,
        vaults: chain_facts.vaults,
    })
}
