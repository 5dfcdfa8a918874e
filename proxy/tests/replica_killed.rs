//! A replica SIGKILLed while it holds reservations. Gateways run as `proxy run` processes on one
//! Postgres ledger; one wallet's balance covers 10 reservations. One replica holds three of them
//! and is killed while 1,000 concurrent requests race over the others for the rest.
//! What the dead replica held is given back (or, when its upstream had answered, charged once)
//! by the survivors' expiry sweep: afterwards nothing is reserved, nothing was served beyond
//! the balance, no request is charged twice and the books reconcile. With 2 and 4 replicas.
mod common;

use common::{fund, processes::free_port, processes::Proc, rand_bytes};
use indexer::ledger::{testing::TempDatabase, Ledger};
use localnet::MockUpstream;
use nostr_sdk::prelude::Keys;
use proxy::auth::session::TokenSigner;
use std::{collections::HashSet, path::Path, time::Duration};

/// What the wallet holds, in requests' reservations.
const COVERED: i64 = 10;
/// Requests the replica to be killed holds when it dies.
const DOOMED: i64 = 3;
/// Reservations outlive their request by this much; the sweep runs every second.
const TTL_SECONDS: i64 = 3;

/// A request of `max_tokens` 16 to a model whose upstream answers after 300 ms, so that holds
/// are in flight when the replica dies.
fn body() -> serde_json::Value {
    serde_json::json!({"model": "echo-delayed", "max_tokens": 16,
        "messages": [{"role": "user", "content": "how much is left?"}]})
}

/// One replica's config: the shared ledger, proxy key and token secret.
fn replica_config(port: u16, db: &str, upstream: &str, machine: &str) -> String {
    format!(
        "listen = \"127.0.0.1:{port}\"\ndatabase_url = \"{db}\"\n\
         reservation_ttl_seconds = {TTL_SECONDS}\n\
         [nostr]\nrelays = []\nsecret_key_file = \"proxy.key\"\nmachine = \"{machine}\"\n\
         [auth]\naudience = \"https://replicas.test\"\ntoken_secret_file = \"token.secret\"\n\
         [limits]\nrequest_timeout_seconds = 2\nrpm = 1000000\ntpm = 1000000000000\n\
         [[models]]\nid = \"echo-delayed\"\nprompt_price = 1000000\ncompletion_price = 1000000\n\
         max_output_tokens = 64\n[[models.upstreams]]\nbase_url = \"{upstream}\"\n\
         model = \"echo+delay=300\"\n"
    )
}

/// Starts `count` replicas in `dir`; returns them with their chat URLs.
async fn start_replicas(
    count: usize,
    dir: &Path,
    db: &str,
    mock: &MockUpstream,
    http: &reqwest::Client,
) -> Vec<(Proc, String)> {
    let machine = Keys::generate().public_key().to_hex();
    let mut replicas = Vec::new();
    for i in 0..count {
        let port = free_port();
        let config = dir.join(format!("replica-{i}.toml"));
        std::fs::write(
            &config,
            replica_config(port, db, &mock.base_url(), &machine),
        )
        .unwrap();
        let mut replica = Proc::new(
            "gateway",
            Path::new(env!("CARGO_BIN_EXE_proxy")),
            &["run", "--config", &config.to_string_lossy()],
            dir,
        );
        replica.spawn();
        let base = format!("http://127.0.0.1:{port}");
        replica.healthy(http, &format!("{base}/health")).await;
        replicas.push((replica, format!("{base}/v1/chat/completions")));
    }
    replicas
}

async fn a_killed_replica_loses_nothing(replicas: usize) {
    let db = TempDatabase::postgres()
        .await
        .expect("Postgres test database");
    let ledger = Ledger::connect(&db.url).await.unwrap();
    let mock = MockUpstream::start(0).await.unwrap();
    let dir = std::env::temp_dir().join(format!("replica-killed-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = rand_bytes().to_vec();
    std::fs::write(dir.join("token.secret"), &secret).unwrap();
    std::fs::write(
        dir.join("proxy.key"),
        Keys::generate().secret_key().to_secret_hex(),
    )
    .unwrap();
    let http = reqwest::Client::new();
    let mut gateways = start_replicas(replicas, &dir, &db.url, &mock, &http).await;

    let user = bs58::encode(rand_bytes()).into_string();
    let token = TokenSigner::new(secret).issue(&user, indexer::ledger::now() + 600);
    let reservation = 16 + proxy::tokens::prompt_bound(body().as_object().unwrap()) as i64;
    let balance = COVERED * reservation;
    fund(&ledger, &user, balance).await;

    let urls: Vec<String> = gateways.iter().map(|(_, url)| url.clone()).collect();
    let send = |url: String| {
        let (http, token) = (http.clone(), token.clone());
        tokio::spawn(async move {
            match http
                .post(&url)
                .bearer_auth(token)
                .json(&body())
                .send()
                .await
            {
                Ok(response) => Some(response.status().as_u16()),
                Err(_) => None, // the killed replica's
            }
        })
    };
    // The replica to be killed holds DOOMED reservations (the model answers after 300 ms)...
    let mut requests: Vec<_> = (0..DOOMED).map(|_| send(urls[0].clone())).collect();
    let mut held = false;
    for _ in 0..1_000 {
        if ledger.balance(&user).await.unwrap().reserved == DOOMED * reservation {
            held = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(held, "the replica to be killed never held its requests");
    // ...and dies while the survivors race 1,000 requests for the rest of the balance.
    let survivors = &urls[1..];
    requests.extend((0..1_000).map(|i| send(survivors[i % survivors.len()].clone())));
    gateways[0].0.kill().await;

    let (mut served, mut refused, mut cut) = (0, 0, 0);
    for request in requests {
        match request.await.unwrap() {
            Some(200) => served += 1,
            Some(402) => refused += 1,
            None => cut += 1,
            Some(status) => panic!("a request got {status}: only 200, 402 or a cut connection"),
        }
    }
    assert_eq!(
        cut, DOOMED as usize,
        "only the killed replica's callers are cut"
    );
    assert!(
        served >= (COVERED - DOOMED) as usize && refused > 0,
        "{served} served, {refused} refused, {cut} cut"
    );

    // The survivors' sweep frees what the dead replica held, once it expires.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(TTL_SECONDS as u64 + 10);
    let after = loop {
        let now = ledger.balance(&user).await.unwrap();
        if now.reserved == 0 {
            break now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dead replica's holds were never swept: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(after.debited <= balance, "overspent: {after:?}");
    let usage = ledger.usage(&user, None, 10_000).await.unwrap();
    let ids: HashSet<&str> = usage.iter().map(|row| row.request_id.as_str()).collect();
    assert_eq!(ids.len(), usage.len(), "a request was charged twice");
    assert!(usage.len() >= served, "every 200 has its usage record");
    let charged: i64 = usage.iter().map(|row| row.cost).sum();
    // A request the dead replica had served but not settled is charged its hold by the sweep
    // (a debit without a usage record); nothing else is debited.
    assert!(
        charged <= after.debited && after.debited - charged <= COVERED * reservation,
        "usage {charged}, debited {}",
        after.debited
    );
    let audit = ledger.audit().await.unwrap();
    assert!(audit.is_clean(), "{audit:?}");
    eprintln!(
        "{replicas} replicas, one killed holding {DOOMED}: {served} served, {refused} refused, \
         {cut} cut; debited {} of {balance}",
        after.debited
    );

    for (mut replica, _) in gateways.drain(..) {
        replica.terminate().await;
    }
    ledger.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    db.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_postgres_replicas_one_killed_lose_nothing() {
    a_killed_replica_loses_nothing(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_postgres_replicas_one_killed_lose_nothing() {
    a_killed_replica_loses_nothing(4).await;
}
