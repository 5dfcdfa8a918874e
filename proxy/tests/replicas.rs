//! Several gateways on one ledger, each with its own connections and writer (replicas), under
//! 1,000 concurrent paid requests from one wallet whose balance covers 10 reservations: together
//! they never serve more than the balance or a key's budget, every 200 has its usage record
//! and debit, the usage records add up to what was debited, nothing stays reserved and the
//! books reconcile. On Postgres with 2 and 4 replicas, and on SQLite with 2 sharing the file.
mod common;

use common::{ask, config, fund, gateway, init_tracing, key_claims, rand_bytes, settled, AUDIENCE};
use ed25519_dalek::SigningKey;
use indexer::ledger::{testing::TempDatabase, Ledger};
use localnet::MockUpstream;
use nostr_sdk::prelude::Keys;
use proxy::auth::delegated;
use std::sync::Arc;

/// What the wallet holds and the small key may spend, in requests' reservations.
const COVERED: i64 = 10;
const SMALL_COVERED: i64 = 3;

/// The request every caller sends: a reservation of its prompt and 16 tokens of reply.
fn body() -> serde_json::Value {
    let mut body = ask("echo", "how much is left?");
    body["max_tokens"] = 16.into();
    body
}

async fn replicas_never_serve_more_than_the_balance(db: TempDatabase, replicas: usize) {
    init_tracing();
    let mock = MockUpstream::start(0).await.unwrap();
    let keys = Keys::generate();
    let mut ledgers = Vec::new();
    let mut gateways = Vec::new();
    for _ in 0..replicas {
        let ledger = Ledger::connect(&db.url).await.unwrap();
        let mut config = config(&mock, &db.url);
        // Money, not the rate limit, is what refuses here.
        (config.limits.rpm, config.limits.tpm) = (1_000_000, 1_000_000_000_000);
        gateways.push(gateway(config, ledger.clone(), &keys).await);
        ledgers.push(ledger);
    }
    let wallet = SigningKey::from_bytes(&rand_bytes());
    let user = bs58::encode(wallet.verifying_key().as_bytes()).into_string();
    let reservation = 16 + proxy::tokens::prompt_bound(body().as_object().unwrap()) as i64;
    let (balance, small_budget) = (COVERED * reservation, SMALL_COVERED * reservation);
    fund(&ledgers[0], &user, balance).await;
    let key = |budget: u64| delegated::sign(&key_claims(&user, AUDIENCE, budget), &wallet).unwrap();
    let (small, large) = (key(small_budget as u64), key(10 * balance as u64));
    let http = reqwest::Client::new();
    let urls: Arc<Vec<String>> = Arc::new(
        gateways
            .iter()
            .map(|gateway| format!("http://{}/v1/chat/completions", gateway.addr))
            .collect(),
    );
    let requests: Vec<_> = (0..1_000)
        .map(|i| {
            let (http, urls) = (http.clone(), urls.clone());
            let credential = if i % 4 == 0 {
                small.clone()
            } else {
                large.clone()
            };
            tokio::spawn(async move {
                let response = http
                    .post(&urls[i % urls.len()])
                    .bearer_auth(credential)
                    .json(&body())
                    .send()
                    .await
                    .expect("the gateway answers");
                response.status().as_u16()
            })
        })
        .collect();
    let mut served = 0;
    let mut refused = 0;
    for request in requests {
        match request.await.unwrap() {
            200 => served += 1,
            402 => refused += 1,
            status => panic!("a request got {status}: only 200 or 402 (funds) may come back"),
        }
    }
    assert!(
        served > 0 && refused > 0,
        "{served} served, {refused} refused"
    );
    let settled = settled(&ledgers[0], &user).await;
    assert!(settled.debited <= balance, "overspent: {settled:?}");
    let usage = ledgers[0].usage(&user, None, 10_000).await.unwrap();
    assert_eq!(usage.len(), served, "one usage record per 200");
    let charged: i64 = usage.iter().map(|row| row.cost).sum();
    assert_eq!(charged, settled.debited, "the usage records are the debits");
    assert!(usage.iter().all(|row| row.cost > 0), "no 200 was free");
    let small_id = delegated::peek(&small).unwrap().key_id;
    let budget = ledgers[0].key_budget(&small_id).await.unwrap().unwrap();
    assert!(
        budget.spent <= small_budget && budget.reserved == 0,
        "{budget:?}"
    );
    let audit = ledgers[0].audit().await.unwrap();
    assert!(audit.is_clean(), "{audit:?}");
    for gateway in gateways {
        gateway.shutdown().await;
    }
    for ledger in ledgers {
        ledger.close().await;
    }
    db.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_postgres_replicas_never_serve_more_than_the_balance() {
    let db = TempDatabase::postgres()
        .await
        .expect("Postgres test database");
    replicas_never_serve_more_than_the_balance(db, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_postgres_replicas_never_serve_more_than_the_balance() {
    let db = TempDatabase::postgres()
        .await
        .expect("Postgres test database");
    replicas_never_serve_more_than_the_balance(db, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_sqlite_replicas_never_serve_more_than_the_balance() {
    replicas_never_serve_more_than_the_balance(TempDatabase::sqlite(), 2).await;
}
