//! Measures how fast the indexer applies events into the ledger. Usage:
//! `cargo run --release -p indexer --example ingest_bench -- [sqlite|postgres] [N] [relay|chain]`.
//! - `relay` (the default): N credits (each backed by a recorded payment) are published to the
//!   embedded relay first; the clock runs from the Nostr watcher's start until the last one is
//!   applied.
//! - `chain`: N `Paid` events are served from memory in pages the size of the RPC client's
//!   (1,000 signatures), and the chain watcher's `sync_once` records them page by page with its
//!   cursor; the clock covers the ledger's side only (a real RPC node's `getTransaction` calls
//!   are not measured).
use async_trait::async_trait;
use balance_payment::{events::Paid, sdk::events::ProgramEvent};
use futures_util::{StreamExt, TryStreamExt};
use indexer::{
    chain::{self, Chain, ChainError, ChainEvent, EventBatch},
    ledger::{testing::TempDatabase, Ledger, Payment},
    metrics::{KindLabel, Metrics},
    nostr::{events::sign_message, watcher},
    wire::{DsProxyMessage, DEFAULT_SESSION},
};
use localnet::EmbeddedRelay;
use nostr_sdk::prelude::*;
use solana_sdk::{instruction::Instruction, pubkey::Pubkey, signature::Keypair};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let backend = args.get(1).map(String::as_str).unwrap_or("sqlite");
    let n: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(5_000);
    let source = args.get(3).map(String::as_str).unwrap_or("relay");
    let db = match backend {
        "postgres" => TempDatabase::postgres().await?,
        _ => TempDatabase::sqlite(),
    };
    let ledger = db.ledger().await;
    let elapsed = match source {
        "chain" => from_chain(&ledger, n).await?,
        _ => from_relay(&ledger, n).await?,
    };
    let what = match source {
        "chain" => "chain Paid events",
        _ => "Transaction events",
    };
    println!(
        "{backend}: {n} {what} ingested in {:.2} s = {:.0} events/s",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
    ledger.close().await;
    db.remove().await;
    Ok(())
}

/// Relay → Nostr watcher → ledger, until every credit is applied.
async fn from_relay(ledger: &Ledger, n: usize) -> anyhow::Result<Duration> {
    let relay = EmbeddedRelay::start(0).await?;
    let (controller, machine) = (Keys::generate(), Keys::generate().public_key());
    let publisher = Client::new(controller.clone());
    publisher.add_relay(relay.url()).await?;
    publisher.connect().await;
    let payments: Vec<Payment> = (0..n)
        .map(|i| Payment {
            signature: format!("sig{i}"),
            index: 0,
            user: format!("user{}", i % 100),
            namespace_id: 0,
            nonce: i as u64,
            amount: 1,
            mint: None,
            tokens: 10,
            slot: 1,
        })
        .collect();
    for page in payments.chunks(1_000) {
        ledger.record_payments(page).await?;
    }
    let credits = payments
        .iter()
        .map(|payment| {
            let credit = DsProxyMessage::Transaction {
                user: payment.user.clone(),
                tokens: 10,
                reference: Some(payment.signature.clone()),
                model: None,
                rail: None,
            };
            sign_message(&controller, DEFAULT_SESSION, &machine, &credit)
        })
        .collect::<Result<Vec<Event>, _>>()?;
    // A few sends in flight, each awaited for the relay's OK.
    futures_util::stream::iter(&credits)
        .map(|event| publisher.send_event(event))
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    let stored = publisher
        .fetch_events(
            indexer::nostr::events::session_filter(DEFAULT_SESSION, &[machine], Timestamp::from(0)),
            Duration::from_secs(5),
        )
        .await?
        .len();
    eprintln!("published {n} events; the relay returns {stored}");
    let listener = Client::new(Keys::generate());
    listener.add_relay(relay.url()).await?;
    listener.connect().await;
    let trust = watcher::Trust {
        controllers: [controller.public_key()].into(),
        proxies: Default::default(),
    };
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let metrics = Arc::new(Metrics::default());
    let started = Instant::now();
    let nostr_watcher = watcher::Watcher {
        client: listener,
        ledger: ledger.clone(),
        trust,
        session: DEFAULT_SESSION.into(),
        recipients: vec![machine],
        requests: None,
        settings: Default::default(),
        metrics: metrics.clone(),
    };
    tokio::spawn(async move { nostr_watcher.run(Default::default(), stopped).await });
    // The watcher's own count of applied credits, read in memory: polling the ledger would
    // compete with the ingest for the same two cores.
    let applied = metrics
        .entries_applied
        .get_or_create(&KindLabel { kind: "credit" })
        .clone();
    while applied.get() < n as u64 {
        if started.elapsed() > Duration::from_secs(300) {
            anyhow::bail!("only {} of {n} credits applied", applied.get());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    // And the ledger agrees.
    let mut credited = 0;
    for user in 0..100.min(n) {
        credited += ledger.balance(&format!("user{user}")).await?.credited;
    }
    anyhow::ensure!(
        credited == n as i64 * 10,
        "the ledger holds {credited} tokens credited"
    );
    Ok(elapsed)
}

/// In-memory chain → chain watcher → ledger, page by page, until every payment is recorded.
async fn from_chain(ledger: &Ledger, n: usize) -> anyhow::Result<Duration> {
    let users: Vec<Pubkey> = (0..100).map(|_| Pubkey::new_unique()).collect();
    let events = (0..n)
        .map(|i| ChainEvent {
            signature: format!("sig{i}"),
            index: 0,
            slot: 1 + i as u64 / 100,
            event: ProgramEvent::Paid(Paid {
                namespace_id: 0,
                user: users[i % users.len()],
                treasury: Pubkey::default(),
                nonce: (i / users.len()) as u64,
                amount: 1_000_000,
                max_amount: 1_000_000,
                extra_data: [0; 32],
                vault_balance: 0,
            }),
        })
        .collect();
    let chain = PagedChain { events };
    let rule = chain::watcher::PaymentRule {
        namespace_id: 0,
        tokens_per_sol: 1_000_000_000,
        tokens: Default::default(),
    };
    let started = Instant::now();
    let mut recorded = 0;
    while recorded < n {
        let page = chain::watcher::sync_once(&chain, ledger, &rule).await?;
        anyhow::ensure!(page > 0, "stalled after {recorded} of {n} payments");
        recorded += page;
    }
    Ok(started.elapsed())
}

/// The program's events as an RPC node would page them; nothing else is served.
struct PagedChain {
    events: Vec<ChainEvent>,
}

const PAGE: usize = 1_000;

#[async_trait]
impl Chain for PagedChain {
    async fn submit(&self, _: &[Instruction], _: &[&Keypair]) -> Result<String, ChainError> {
        Err(ChainError::unavailable("not in this bench"))
    }

    async fn events_after(&self, cursor: Option<&str>) -> Result<EventBatch, ChainError> {
        let start = match cursor {
            Some(cursor) => cursor.parse::<usize>().map_err(ChainError::unavailable)?,
            None => 0,
        };
        let end = (start + PAGE).min(self.events.len());
        Ok(EventBatch {
            events: self.events[start..end].to_vec(),
            cursor: Some(end.to_string()),
        })
    }

    async fn account_data(&self, _: &Pubkey) -> Result<Option<Vec<u8>>, ChainError> {
        Err(ChainError::unavailable("not in this bench"))
    }

    async fn lamports(&self, _: &Pubkey) -> Result<u64, ChainError> {
        Err(ChainError::unavailable("not in this bench"))
    }

    async fn find_payment(
        &self,
        _: &Pubkey,
        _: u64,
        _: u64,
    ) -> Result<Option<ChainEvent>, ChainError> {
        Err(ChainError::unavailable("not in this bench"))
    }
}
