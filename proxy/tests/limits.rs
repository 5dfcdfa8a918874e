//! A key's rate limits hold over every replica together: two gateways on one ledger (SQLite
//! file or Postgres) count its requests and tokens per minute in the ledger, so the limit is
//! the key's, not each replica's. The minute comes from the ledger's clock, moved by hand.
mod common;

use common::{ask, config, fund, gateway, init_tracing, rand_bytes, settled, AUDIENCE};
use ed25519_dalek::SigningKey;
use indexer::ledger::{testing::TempDatabase, Clock, Ledger};
use localnet::MockUpstream;
use nostr_sdk::prelude::Keys;
use proxy::{
    auth::delegated::{self, Claims},
    server::Gateway,
};
use std::sync::{
    atomic::{AtomicI64, Ordering},
    Arc,
};

struct Replicas {
    db: TempDatabase,
    ledgers: Vec<Ledger>,
    gateways: Vec<Gateway>,
    _mock: MockUpstream,
    wallet: SigningKey,
    user: String,
    clock: Arc<AtomicI64>,
    http: reqwest::Client,
}

impl Replicas {
    async fn start(db: TempDatabase) -> Self {
        init_tracing();
        let mock = MockUpstream::start(0).await.unwrap();
        let keys = Keys::generate();
        // The start of a minute, so a run never straddles two.
        let clock = Arc::new(AtomicI64::new(indexer::ledger::now() / 60 * 60));
        let mut ledgers = Vec::new();
        let mut gateways = Vec::new();
        for _ in 0..2 {
            let ledger = Ledger::connect(&db.url)
                .await
                .unwrap()
                .with_clock(Clock::manual(clock.clone()));
            gateways.push(gateway(config(&mock, &db.url), ledger.clone(), &keys).await);
            ledgers.push(ledger);
        }
        let wallet = SigningKey::from_bytes(&rand_bytes());
        let user = bs58::encode(wallet.verifying_key().as_bytes()).into_string();
        fund(&ledgers[0], &user, 1_000_000).await;
        Self {
            db,
            ledgers,
            gateways,
            _mock: mock,
            wallet,
            user,
            clock,
            http: reqwest::Client::new(),
        }
    }

    fn key(&self, rpm: Option<u32>, tpm: Option<u64>) -> String {
        let claims = Claims {
            user: self.user.clone(),
            audience: AUDIENCE.into(),
            id: uuid::Uuid::new_v4().to_string(),
            models: None,
            max_tokens: None,
            budget: 1_000_000,
            expires_at: indexer::ledger::now() + 600,
            single_use: false,
            callback_url: None,
            rpm,
            tpm,
        };
        delegated::sign(&claims, &self.wallet).unwrap()
    }

    async fn chat(&self, gateway: usize, key: &str) -> reqwest::Response {
        self.http
            .post(format!(
                "http://{}/v1/chat/completions",
                self.gateways[gateway].addr
            ))
            .bearer_auth(key)
            .json(&ask("echo", "hi"))
            .send()
            .await
            .unwrap()
    }

    async fn stop(self) {
        for gateway in self.gateways {
            gateway.shutdown().await;
        }
        for ledger in self.ledgers {
            ledger.close().await;
        }
        self.db.remove().await;
    }
}

async fn a_keys_limits_hold_over_both_replicas(db: TempDatabase) {
    let replicas = Arc::new(Replicas::start(db).await);
    // Requests per minute: 30 at once, half at each replica; 6 served in all, not 6 each.
    let key = replicas.key(Some(6), None);
    let burst = |count: usize| {
        (0..count)
            .map(|i| {
                let (replicas, key) = (replicas.clone(), key.clone());
                tokio::spawn(async move {
                    let response = replicas.chat(i % 2, &key).await;
                    let retry_after = response.headers().get("retry-after").cloned();
                    (response.status().as_u16(), retry_after)
                })
            })
            .collect::<Vec<_>>()
    };
    let mut served = 0;
    for request in burst(30) {
        match request.await.unwrap() {
            (200, _) => served += 1,
            (429, retry_after) => assert!(retry_after.is_some(), "429 without Retry-After"),
            (status, _) => panic!("{status}: only 200 or 429"),
        }
    }
    assert_eq!(
        served, 6,
        "the key's 6 requests a minute, over both replicas"
    );

    // The next minute serves it again, at either replica.
    replicas.clock.fetch_add(60, Ordering::SeqCst);
    assert_eq!(replicas.chat(1, &key).await.status(), 200);
    assert_eq!(replicas.chat(0, &key).await.status(), 200);

    // Tokens per minute: what replica A settled counts at replica B.
    let key = replicas.key(None, Some(1));
    assert_eq!(replicas.chat(0, &key).await.status(), 200);
    settled(&replicas.ledgers[0], &replicas.user).await;
    let refused = replicas.chat(1, &key).await;
    assert_eq!(refused.status(), 429);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("1 tokens per minute")),
        "{body}"
    );
    match Arc::try_unwrap(replicas) {
        Ok(replicas) => replicas.stop().await,
        Err(_) => panic!("a request task still holds the replicas"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_keys_limits_hold_over_both_replicas() {
    a_keys_limits_hold_over_both_replicas(TempDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_keys_limits_hold_over_both_replicas() {
    let db = TempDatabase::postgres()
        .await
        .expect("Postgres test database");
    a_keys_limits_hold_over_both_replicas(db).await;
}
