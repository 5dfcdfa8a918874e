//! The gateway inside the whole stack: a wallet pays on chain through the controller, spends
//! through the gateway, and the gateway's signed debit reaches the relay, where the indexer
//! reads it back without counting it twice. The audit stays clean.
mod common;

use common::{ask, init_tracing};
use indexer::{
    ledger::testing::TempDatabase,
    sandbox::{Sandbox, SandboxConfig, SOL},
    wire::{DsProxyMessage, KIND_DS_PROXY},
};
use localnet::MockUpstream;
use nostr_sdk::prelude::{Client, Filter, Keys, Kind};
use proxy::config::Config;
use serde_json::Value;
use solana_sdk::signature::Signer;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_wallet_spends_through_the_gateway_and_the_debit_is_relayed_once() {
    init_tracing();
    let db = TempDatabase::sqlite();
    let proxy_keys = Keys::generate();
    let mut stack = Sandbox::start(SandboxConfig {
        proxy_keys: vec![proxy_keys.clone()],
        ..SandboxConfig::new(&db.url)
    })
    .await
    .unwrap();
    let wallet = stack.user(SOL).await.unwrap();
    let user = wallet.pubkey().to_string();
    let request = stack.authorization_request(&wallet, 0, SOL / 100).unwrap();
    stack.publish(&request).await.unwrap();
    let mut credited = 0;
    for _ in 0..200 {
        credited = stack.ledger.balance(&user).await.unwrap().available;
        if credited > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(credited, 10_000, "0.01 SOL at 1,000,000 tokens per SOL");

    let mock = MockUpstream::start(0).await.unwrap();
    let config: Config = common::config(&mock, &db.url);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (gateway, relay) = sandbox::front(
        &stack,
        listener,
        config,
        proxy_keys.clone(),
        b"a test secret of at least thirty-two bytes".to_vec(),
    )
    .await
    .unwrap();
    let wallet_key = ed25519_dalek::SigningKey::from_bytes(wallet.secret_bytes());
    let key = proxy::auth::delegated::sign(
        &proxy::auth::delegated::Claims {
            user: user.clone(),
            audience: common::AUDIENCE.into(),
            id: "e2e".into(),
            models: None,
            max_tokens: None,
            budget: 5_000,
            expires_at: indexer::ledger::now() + 600,
            single_use: false,
            callback_url: None,
            rpm: None,
            tpm: None,
        },
        &wallet_key,
    )
    .unwrap();
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/chat/completions", gateway.addr))
        .bearer_auth(&key)
        .json(&ask("echo", "paid for on chain"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    let cost = body["usage"]["total_tokens"].as_i64().unwrap();

    // The debit arrives on the relay, signed by the proxy key.
    let reader = Client::new(Keys::generate());
    reader.add_relay(stack.relay.url()).await.unwrap();
    reader.connect().await;
    let filter = Filter::new()
        .kind(Kind::Custom(KIND_DS_PROXY))
        .author(proxy_keys.public_key());
    let mut debit = None;
    for _ in 0..100 {
        let events = reader
            .fetch_events(filter.clone(), Duration::from_secs(2))
            .await
            .unwrap();
        if let Some(event) = events.into_iter().next() {
            debit = Some(event);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let debit = debit.expect("the debit reaches the relay");
    let message: DsProxyMessage = serde_json::from_str(&debit.content).unwrap();
    assert_eq!(
        message,
        DsProxyMessage::Transaction {
            user: user.clone(),
            tokens: -cost,
            reference: Some(request_id),
            model: Some("echo".into()),
            rail: None,
        }
    );
    // So does the kind-30078 catalog with the prices.
    let catalog = reader
        .fetch_events(
            Filter::new()
                .kind(Kind::Custom(indexer::wire::KIND_CATALOG))
                .author(proxy_keys.public_key())
                .identifier("llm-gateway"),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
    let catalog: Value = serde_json::from_str(
        &catalog
            .into_iter()
            .next()
            .expect("catalog published")
            .content,
    )
    .unwrap();
    let echo = catalog["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "echo")
        .unwrap();
    assert_eq!(echo["prompt_price"], 1_000_000);
    assert_eq!(catalog["tokens_per_sol"], 1_000_000);
    // Top up once more and wait for that credit: the indexer reads the relay's events in
    // order, so by then it has read the gateway's debit back too. Still one debit.
    let again = stack.authorization_request(&wallet, 1, SOL / 100).unwrap();
    stack.publish(&again).await.unwrap();
    for _ in 0..200 {
        if stack.ledger.balance(&user).await.unwrap().credited == 20_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let balance = stack.ledger.balance(&user).await.unwrap();
    assert_eq!(
        (balance.credited, balance.debited, balance.available),
        (20_000, cost, 20_000 - cost)
    );
    let audit = stack.ledger.audit().await.unwrap();
    assert!(audit.is_clean(), "{audit:?}");

    gateway.shutdown().await;
    reader.shutdown().await;
    relay.shutdown().await;
    stack.stop().await;
    stack.ledger.close().await;
    db.remove().await;
}
