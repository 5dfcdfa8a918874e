//! Two gateways on one ledger (a SQLite file or Postgres) in front of one mock upstream, with a
//! funded wallet: what the tests of limits, logins and revocations across replicas share.
use super::{ask, config, fund, gateway, init_tracing, key_claims, rand_bytes};
use ed25519_dalek::SigningKey;
use indexer::ledger::{testing::TempDatabase, Clock, Ledger};
use localnet::MockUpstream;
use nostr_sdk::prelude::Keys;
use proxy::{auth::delegated::Claims, server::Gateway};

/// How the two replicas differ from the defaults.
pub struct Setup {
    /// Each replica's audience (`None`: the test gateways' default).
    pub audiences: [Option<&'static str>; 2],
    /// The ledgers' clock (`None`: the wall clock).
    pub clock: Option<Clock>,
    /// Tokens credited to the wallet.
    pub funds: i64,
}

pub struct Replicas {
    pub db: TempDatabase,
    pub ledgers: Vec<Ledger>,
    pub gateways: Vec<Gateway>,
    pub mock: MockUpstream,
    pub wallet: SigningKey,
    pub user: String,
    pub http: reqwest::Client,
}

impl Replicas {
    pub async fn start(db: TempDatabase, setup: Setup) -> Self {
        init_tracing();
        let mock = MockUpstream::start(0).await.unwrap();
        let keys = Keys::generate();
        let mut ledgers = Vec::new();
        let mut gateways = Vec::new();
        for audience in setup.audiences {
            let mut ledger = Ledger::connect(&db.url).await.unwrap();
            if let Some(clock) = &setup.clock {
                ledger = ledger.with_clock(clock.clone());
            }
            let mut config = config(&mock, &db.url);
            if let Some(audience) = audience {
                config.auth.audience = Some(audience.into());
            }
            gateways.push(gateway(config, ledger.clone(), &keys).await);
            ledgers.push(ledger);
        }
        let wallet = SigningKey::from_bytes(&rand_bytes());
        let user = bs58::encode(wallet.verifying_key().as_bytes()).into_string();
        fund(&ledgers[0], &user, setup.funds).await;
        Self {
            db,
            ledgers,
            gateways,
            mock,
            wallet,
            user,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, gateway: usize, path: &str) -> String {
        format!("http://{}{path}", self.gateways[gateway].addr)
    }

    /// A delegated key's claims for this wallet: `budget` tokens, ten minutes, no other limit.
    pub fn claims(&self, audience: &str, budget: u64) -> Claims {
        key_claims(&self.user, audience, budget)
    }

    /// A one-word chat completion at `gateway` with `credential` as the bearer.
    pub async fn chat(&self, gateway: usize, credential: &str) -> reqwest::Response {
        self.http
            .post(self.url(gateway, "/v1/chat/completions"))
            .bearer_auth(credential)
            .json(&ask("echo", "hi"))
            .send()
            .await
            .unwrap()
    }

    pub async fn stop(self) {
        for gateway in self.gateways {
            gateway.shutdown().await;
        }
        for ledger in self.ledgers {
            ledger.close().await;
        }
        self.db.remove().await;
    }
}
