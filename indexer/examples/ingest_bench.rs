//! Measures how fast the Nostr watcher applies `Transaction` events from the relay into the
//! ledger. Usage: `cargo run --release -p indexer --example ingest_bench -- [sqlite|postgres] [N]`.
//! N credits (each backed by a recorded payment) are published to the embedded relay first;
//! the clock runs from the watcher's start until the last one is applied.
use indexer::{
    ledger::{testing::TempDatabase, Payment},
    nostr::{events::sign_message, watcher},
    wire::{DsProxyMessage, DEFAULT_SESSION},
};
use localnet::EmbeddedRelay;
use nostr_sdk::prelude::*;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let backend = args.get(1).map(String::as_str).unwrap_or("sqlite");
    let n: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(5_000);
    let db = match backend {
        "postgres" => TempDatabase::postgres().await?,
        _ => TempDatabase::sqlite(),
    };
    let ledger = db.ledger().await;
    let relay = EmbeddedRelay::start(0).await?;
    let (controller, machine) = (Keys::generate(), Keys::generate().public_key());
    let publisher = Client::new(controller.clone());
    publisher.add_relay(relay.url()).await?;
    publisher.connect().await;
    for i in 0..n {
        let (user, signature) = (format!("user{}", i % 100), format!("sig{i}"));
        let payment = Payment {
            signature: signature.clone(),
            index: 0,
            user: user.clone(),
            namespace_id: 0,
            nonce: i as u64,
            lamports: 1,
            tokens: 10,
            slot: 1,
        };
        ledger.record_payment(&payment).await?;
        let credit = DsProxyMessage::Transaction {
            user,
            tokens: 10,
            reference: Some(signature),
            model: None,
        };
        publisher
            .send_event(&sign_message(
                &controller,
                DEFAULT_SESSION,
                &machine,
                &credit,
            )?)
            .await?;
    }
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
    let started = Instant::now();
    let nostr_watcher = watcher::Watcher {
        client: listener,
        ledger: ledger.clone(),
        trust,
        session: DEFAULT_SESSION.into(),
        recipients: vec![machine],
        requests: None,
        settings: Default::default(),
        metrics: Default::default(),
    };
    tokio::spawn(async move { nostr_watcher.run(Default::default(), stopped).await });
    let expected = (n as i64) * 10;
    loop {
        let mut credited = 0;
        for user in 0..100.min(n) {
            credited += ledger.balance(&format!("user{user}")).await?.credited;
        }
        if credited >= expected {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            anyhow::bail!("only {credited} of {expected} tokens applied");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    println!(
        "{backend}: {n} Transaction events ingested in {:.2} s = {:.0} events/s",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
    ledger.close().await;
    db.remove().await;
    Ok(())
}
