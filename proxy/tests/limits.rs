//! A key's rate limits hold over every replica together: two gateways on one ledger (SQLite
//! file or Postgres) count its requests and tokens per minute in the ledger, so the limit is
//! the key's, not each replica's. The minute comes from the ledger's clock, moved by hand.
mod common;

use common::{
    replicas::{Replicas, Setup},
    settled, AUDIENCE,
};
use indexer::ledger::{testing::TempDatabase, Clock};
use proxy::auth::delegated::{self, Claims};
use std::sync::{
    atomic::{AtomicI64, Ordering},
    Arc,
};

/// Two replicas whose ledgers read a clock the test moves.
struct Limited {
    replicas: Replicas,
    clock: Arc<AtomicI64>,
}

impl Limited {
    async fn start(db: TempDatabase) -> Self {
        // The start of a minute, so a run never straddles two.
        let clock = Arc::new(AtomicI64::new(indexer::ledger::now() / 60 * 60));
        let setup = Setup {
            audiences: [None, None],
            clock: Some(Clock::manual(clock.clone())),
            funds: 1_000_000,
        };
        let replicas = Replicas::start(db, setup).await;
        Self { replicas, clock }
    }

    fn key(&self, rpm: Option<u32>, tpm: Option<u64>) -> String {
        let claims = Claims {
            rpm,
            tpm,
            ..self.replicas.claims(AUDIENCE, 1_000_000)
        };
        delegated::sign(&claims, &self.replicas.wallet).unwrap()
    }

    async fn chat(&self, gateway: usize, key: &str) -> reqwest::Response {
        self.replicas.chat(gateway, key).await
    }
}

async fn a_keys_limits_hold_over_both_replicas(db: TempDatabase) {
    let replicas = Arc::new(Limited::start(db).await);
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
    settled(&replicas.replicas.ledgers[0], &replicas.replicas.user).await;
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
        Ok(limited) => limited.replicas.stop().await,
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
