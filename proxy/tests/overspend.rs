//! 1,000 concurrent requests against a balance that covers 10: exactly 10 are served, the rest
//! get 402 with the amount needed, and the balance never goes negative. On SQLite with one
//! gateway, and on Postgres with two gateways sharing the ledger.
mod common;

use common::{ask, config, fund, gateway, init_tracing, settled};
use indexer::ledger::{testing::TempDatabase, Ledger};
use localnet::MockUpstream;
use nostr_sdk::prelude::Keys;
use serde_json::{json, Value};

const REQUESTS: usize = 1_000;
const COVERED: i64 = 10;

async fn overspend(db: TempDatabase, gateways: usize) {
    init_tracing();
    let mock = MockUpstream::start(0).await.unwrap();
    let keys = Keys::generate();
    let mut running = Vec::new();
    let mut ledgers = Vec::new();
    for _ in 0..gateways {
        let ledger = Ledger::connect(&db.url).await.unwrap();
        let mut config = config(&mock, &db.url);
        config.limits.rpm = 100_000;
        running.push(gateway(config, ledger.clone(), &keys).await);
        ledgers.push(ledger);
    }
    let ledger = ledgers[0].clone();
    let user = "OverspendWallet11111111111111111111111111111";

    // Every request costs at least what it reserves: the reply is capped at 5 tokens and the
    // usage is counted (no usage from this upstream), so a settled request frees nothing.
    let words: Vec<String> = (0..60).map(|i| format!("word{i}")).collect();
    let mut body = ask("delayed", &words.join(" "));
    body["max_tokens"] = json!(5);
    let reservation = 5 + proxy::tokens::count_prompt(body.as_object().unwrap()) as i64;
    let credit = COVERED * reservation + reservation - 1;
    fund(&ledger, user, credit).await;

    // The caller: a session token for `user`, issued with the gateways' shared secret.
    let token = running[0]
        .state
        .auth
        .tokens()
        .issue(user, indexer::ledger::now() + 600);

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(REQUESTS)
        .build()
        .unwrap();
    let urls: Vec<String> = running
        .iter()
        .map(|g| format!("http://{}/v1/chat/completions", g.addr))
        .collect();
    let calls = (0..REQUESTS).map(|i| {
        let (http, url, token, body) = (
            http.clone(),
            urls[i % urls.len()].clone(),
            token.clone(),
            body.clone(),
        );
        tokio::spawn(async move {
            let response = http
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body)
        })
    });
    let results = futures_util::future::join_all(calls).await;
    let mut served = 0;
    let mut refused = 0;
    for result in results {
        let (status, body) = result.unwrap();
        match status {
            200 => served += 1,
            402 => {
                refused += 1;
                assert_eq!(body["error"]["needed"], reservation);
                assert!(body["error"]["available"].as_i64().unwrap() < reservation);
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(served, COVERED, "exactly what the balance covers is served");
    assert_eq!(refused, REQUESTS as i64 - COVERED);

    let balance = settled(&ledger, user).await;
    assert!(balance.available >= 0, "never negative: {balance:?}");
    assert!(balance.debited <= credit);
    assert!(
        balance.debited >= COVERED * reservation,
        "each served request paid at least its reservation: {balance:?}"
    );
    let audit = ledger.audit().await.unwrap();
    assert!(audit.is_clean(), "{audit:?}");

    for gateway in running {
        gateway.shutdown().await;
    }
    for ledger in ledgers {
        ledger.close().await;
    }
    db.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_one_gateway_serves_exactly_what_the_balance_covers() {
    overspend(TempDatabase::sqlite(), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_gateways_sharing_the_ledger_serve_exactly_what_the_balance_covers() {
    let db = TempDatabase::postgres()
        .await
        .expect("Postgres test database");
    overspend(db, 2).await;
}
