//! Measures `indexer verify`'s work on a big history: N signed `Transaction` events for U
//! users (each user: one controller credit of an on-chain payment, the rest proxy debits) are
//! published to the embedded relay; the clock covers reading them all back through the paged
//! back-fill (`verify::sources::read_relays`), checking their signatures, and rebuilding and
//! judging every balance (`verify::books::reconcile`). The chain's side (one `getTransaction`
//! per program transaction through the RPC node) is not in it. Usage:
//! `cargo run --release -p indexer --example verify_bench -- [N] [U]`.
use common::books::{RatePeriod, Rates};
use indexer::{
    nostr::events::sign_message,
    verify::{
        books::{reconcile, ChainPayment, Facts, PaymentKind, Trusted},
        sources,
    },
    wire::{DsProxyMessage, DEFAULT_SESSION},
};
use localnet::EmbeddedRelay;
use nostr_sdk::prelude::*;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let users: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1_000);
    // On disk: the in-memory relay keeps at most 75,000 events.
    let dir = std::env::temp_dir().join(format!("verify-bench-{}", std::process::id()));
    let relay = EmbeddedRelay::open(0, &dir).await?;
    let (controller, proxy, machine) = (Keys::generate(), Keys::generate(), Keys::generate());
    let publisher = Client::new(proxy.clone());
    publisher.add_relay(relay.url()).await?;
    publisher.connect().await;
    let per_user = n / users;
    let mut payments = Vec::with_capacity(users);
    let signing = Instant::now();
    let mut batch = Vec::with_capacity(1_000);
    for u in 0..users {
        let user = format!("user{u:05}");
        let signature = format!("payment{u:05}");
        payments.push(ChainPayment {
            signature: signature.clone(),
            user: user.clone(),
            mint: None,
            amount: 1_000_000_000,
            slot: 1,
            block_time: Some(0),
            kind: PaymentKind::Pay,
        });
        for i in 0..per_user {
            let (keys, tokens, reference) = match i {
                0 => (&controller, 1_000_000, signature.clone()),
                _ => (&proxy, -7, format!("request-{u}-{i}")),
            };
            let message = DsProxyMessage::Transaction {
                user: user.clone(),
                tokens,
                reference: Some(reference),
                model: None,
                rail: None,
            };
            batch.push(sign_message(
                keys,
                DEFAULT_SESSION,
                &machine.public_key(),
                &message,
            )?);
            if batch.len() == 1_000 {
                for event in batch.drain(..) {
                    publisher.send_event(&event).await?;
                }
            }
        }
    }
    for event in batch.drain(..) {
        publisher.send_event(&event).await?;
    }
    eprintln!(
        "signed and published {} events in {:.1?}",
        users * per_user,
        signing.elapsed()
    );
    let started = Instant::now();
    let events = sources::read_relays(
        &[relay.url().to_owned()],
        DEFAULT_SESSION,
        &machine.public_key(),
        &[controller.public_key(), proxy.public_key()],
        Duration::from_secs(30),
    )
    .await?;
    let read = started.elapsed();
    let announced = sources::transactions(&events);
    let checked = started.elapsed();
    let trusted = Trusted {
        controllers: [controller.public_key().to_hex()].into(),
        proxies: [proxy.public_key().to_hex()].into(),
    };
    let rates = [RatePeriod {
        since: 0,
        rates: Rates {
            tokens_per_sol: 1_000_000,
            tokens_per_sat: None,
            tokens: vec![],
        },
    }];
    let facts = Facts {
        payments,
        events: announced,
        ..Facts::default()
    };
    let report = reconcile(&facts, &trusted, &rates, 1, 600);
    let total = started.elapsed();
    anyhow::ensure!(
        report.reconciles(),
        "{:?}",
        &report.findings[..report.findings.len().min(5)]
    );
    anyhow::ensure!(report.users.len() == users && report.counted.len() == users * per_user);
    println!(
        "{} events, {} users: read from the relay {:.2?}, signatures and parsing {:.2?}, \
         books {:.2?}; total {:.2?}",
        users * per_user,
        users,
        read,
        checked - read,
        total - checked,
        total
    );
    publisher.shutdown().await;
    relay.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
