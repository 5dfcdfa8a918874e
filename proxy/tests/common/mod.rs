//! A gateway in front of the mock upstream, on a throwaway ledger, with a funded wallet.
#![allow(dead_code)]
pub mod mint;
pub mod mint_link;
pub mod processes;
pub mod replicas;

use ed25519_dalek::{Signer, SigningKey};
use indexer::ledger::{testing::TempDatabase, Applied, Ledger, NewEntry, OutboxEvent, Payment};
use localnet::MockUpstream;
use nostr_sdk::prelude::Keys;
use proxy::{
    auth::delegated::{self, Claims},
    config::{Config, ModelConfig, UpstreamConfig},
    server::{Gateway, Parts},
    state::NostrIdentity,
};
use serde_json::{json, Value};
use std::time::Duration;

/// The audience of the test gateways (one deployment unless a test says otherwise).
pub const AUDIENCE: &str = "https://gateway-a.test";

pub struct Harness {
    pub db: TempDatabase,
    pub ledger: Ledger,
    pub mock: MockUpstream,
    pub gateway: Gateway,
    pub wallet: SigningKey,
    pub user: String,
    pub proxy_keys: Keys,
    pub http: reqwest::Client,
    pub base: String,
    /// The audience this gateway's wallet signatures must name.
    pub audience: String,
}

/// A delegated key's claims for `user`: `budget` tokens for ten minutes, no other limit.
pub fn key_claims(user: &str, audience: &str, budget: u64) -> Claims {
    Claims {
        user: user.into(),
        audience: audience.into(),
        id: uuid::Uuid::new_v4().to_string(),
        models: None,
        max_tokens: None,
        budget,
        expires_at: indexer::ledger::now() + 600,
        single_use: false,
        callback_url: None,
        rpm: None,
        tpm: None,
    }
}

/// A model served by the mock behaviour(s) `upstreams` (in fallback order), one ledger token
/// per prompt or completion token.
pub fn model(id: &str, upstreams: &[&str], mock: &MockUpstream) -> ModelConfig {
    ModelConfig {
        id: id.into(),
        prompt_price: 1_000_000,
        completion_price: 1_000_000,
        max_output_tokens: 100,
        upstreams: upstreams
            .iter()
            .map(|behaviour| UpstreamConfig {
                base_url: if *behaviour == "unreachable" {
                    "http://127.0.0.1:9/v1".into()
                } else {
                    mock.base_url()
                },
                model: Some(behaviour.to_string()),
                api_key_env: None,
                api_key_file: None,
                bound_field: Default::default(),
                // The mock that drops its usage says so in its name.
                reports_usage: !behaviour.contains("no-usage"),
            })
            .collect(),
    }
}

pub fn config(mock: &MockUpstream, database_url: &str) -> Config {
    let mut config = Config {
        database_url: database_url.into(),
        models: vec![
            model("echo", &["echo"], mock),
            model("no-usage", &["echo-no-usage"], mock),
            model("fallback", &["fail-500", "echo"], mock),
            model("dead", &["unreachable", "fail-500"], mock),
            model("hang", &["hang"], mock),
            model("refuse", &["fail-400"], mock),
            model("midstream", &["fail-midstream"], mock),
            model("slow", &["echo+slow"], mock),
            model("delayed", &["echo-no-usage+delay=300"], mock),
            model("echo-delayed", &["echo+delay=300"], mock),
        ],
        ..Config::default()
    };
    config.nostr.machine = Keys::generate().public_key().to_hex();
    config.auth.audience = Some(AUDIENCE.into());
    config.limits.first_byte_timeout_seconds = 2;
    config.limits.shutdown_grace_seconds = 5;
    config
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Starts a gateway on `ledger` with `config`.
pub async fn gateway(config: Config, ledger: Ledger, keys: &Keys) -> Gateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let machine = nostr_sdk::PublicKey::parse(&config.nostr.machine).unwrap();
    Gateway::start(
        listener,
        Parts {
            config,
            ledger,
            nostr: NostrIdentity {
                keys: keys.clone(),
                session: indexer::wire::DEFAULT_SESSION.into(),
                machine,
            },
            token_secret: b"a test secret of at least thirty-two bytes".to_vec(),
            relay: None,
        },
    )
    .await
    .unwrap()
}

impl Harness {
    pub async fn start(db: TempDatabase) -> Self {
        Self::start_with(db, |_| {}).await
    }

    pub async fn start_with(db: TempDatabase, tweak: impl FnOnce(&mut Config)) -> Self {
        init_tracing();
        let mock = MockUpstream::start(0).await.unwrap();
        let ledger = Ledger::connect(&db.url).await.unwrap();
        let mut config = config(&mock, &db.url);
        tweak(&mut config);
        let audience = config.audience().to_owned();
        let proxy_keys = Keys::generate();
        let gateway = gateway(config, ledger.clone(), &proxy_keys).await;
        let wallet = SigningKey::from_bytes(&rand_bytes());
        let user = bs58::encode(wallet.verifying_key().as_bytes()).into_string();
        Self {
            base: format!("http://{}", gateway.addr),
            db,
            ledger,
            mock,
            gateway,
            wallet,
            user,
            proxy_keys,
            http: reqwest::Client::new(),
            audience,
        }
    }

    /// Credits `tokens` to the wallet the way the indexer does (payment seen, then credit).
    pub async fn fund(&self, tokens: i64) {
        fund(&self.ledger, &self.user, tokens).await
    }

    /// `POST /v1/auth/nonce` for the wallet: `{nonce, message, expires_at}`.
    pub async fn nonce(&self) -> Value {
        self.http
            .post(format!("{}/v1/auth/nonce", self.base))
            .json(&json!({"wallet": self.user}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A session token through the real login exchange.
    pub async fn login(&self) -> String {
        login(&self.http, &self.base, &self.wallet).await
    }

    /// Claims for a delegated key of this wallet, to adjust before signing.
    pub fn claims(&self) -> Claims {
        key_claims(&self.user, &self.audience, 1_000_000)
    }

    pub fn key(&self, claims: &Claims) -> String {
        delegated::sign(claims, &self.wallet).unwrap()
    }

    pub async fn chat(&self, token: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/chat/completions", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Waits until nothing of the wallet's balance is reserved (every request settled).
    pub async fn settled(&self) -> indexer::ledger::Balance {
        settled(&self.ledger, &self.user).await
    }

    /// The debit events queued for the relays.
    pub async fn debits(&self) -> Vec<Value> {
        queued_debits(&self.ledger).await
    }

    pub async fn stop(self) {
        self.gateway.shutdown().await;
        self.ledger.close().await;
        self.db.remove().await;
    }
}

pub async fn fund(ledger: &Ledger, user: &str, tokens: i64) {
    let signature = format!("sig-{}", uuid::Uuid::new_v4().simple());
    ledger
        .record_payment(&Payment {
            signature: signature.clone(),
            index: 0,
            user: user.into(),
            namespace_id: 0,
            nonce: 0,
            amount: 1,
            mint: None,
            tokens,
            slot: 1,
        })
        .await
        .unwrap();
    let credit = NewEntry::credit(user, tokens, Some(&signature), &signature, "controller");
    assert_eq!(ledger.apply(&credit).await.unwrap(), Applied::Applied);
}

pub async fn settled(ledger: &Ledger, user: &str) -> indexer::ledger::Balance {
    for _ in 0..200 {
        let balance = ledger.balance(user).await.unwrap();
        if balance.reserved == 0 {
            return balance;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "reservations never settled: {:?}",
        ledger.balance(user).await.unwrap()
    );
}

/// The signed debits queued for the relays.
pub async fn queued_debits(ledger: &Ledger) -> Vec<Value> {
    let queued: Vec<OutboxEvent> = ledger.due_outbox(10_000).await.unwrap();
    queued
        .iter()
        .map(|item| serde_json::from_str::<Value>(&item.event_json).unwrap())
        .filter(|event| event["kind"] == 1573)
        // Not the ecash and x402 credits (and ecash change) the gateway attests.
        .filter(|event| !event["content"].as_str().unwrap_or("").contains("\"rail\""))
        .collect()
}

pub fn rand_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (i, b) in uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(uuid::Uuid::new_v4().as_bytes())
        .enumerate()
    {
        bytes[i] = *b;
    }
    bytes
}

/// Waits (up to 10 s) until `check` holds, polling every 10 ms; panics naming `what`.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1_000 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

/// A one-message chat body.
pub fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

/// The whole local stack (validator, relay, indexer services with a controller) on a SQLite
/// ledger, with a gateway in front of the mock whose audience is its own URL.
pub struct FrontedStack {
    pub db: TempDatabase,
    pub stack: indexer::sandbox::Sandbox,
    pub mock: MockUpstream,
    pub gateway: Gateway,
    pub relay: nostr_sdk::Client,
    /// The gateway's base URL.
    pub base: String,
}

impl FrontedStack {
    pub async fn start() -> Self {
        init_tracing();
        let db = TempDatabase::sqlite();
        let proxy_keys = Keys::generate();
        let stack = indexer::sandbox::Sandbox::start(indexer::sandbox::SandboxConfig {
            proxy_keys: vec![proxy_keys.clone()],
            ..indexer::sandbox::SandboxConfig::new(&db.url)
        })
        .await
        .expect("the local stack starts");
        let mock = MockUpstream::start(0).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut config = config(&mock, &db.url);
        config.auth.audience = Some(base.clone());
        let (gateway, relay) = sandbox::front(
            &stack,
            listener,
            config,
            proxy_keys,
            b"a test secret of at least thirty-two bytes".to_vec(),
        )
        .await
        .unwrap();
        Self {
            db,
            stack,
            mock,
            gateway,
            relay,
            base,
        }
    }

    /// Stops everything and drops the database (after the audit is clean).
    pub async fn stop(mut self) {
        let audit = self.stack.ledger.audit().await.unwrap();
        assert!(audit.is_clean(), "{audit:?}");
        self.gateway.shutdown().await;
        self.relay.shutdown().await;
        self.stack.stop().await;
        self.db.remove().await;
    }
}

/// Runs a prepared `node` (or Python) command off the async workers and fails the test with
/// its output (the checks print each step) unless it succeeds; returns what it printed.
pub async fn node_succeeds(mut node: std::process::Command, script: &str) -> Vec<u8> {
    let output = tokio::task::spawn_blocking(move || node.output())
        .await
        .unwrap()
        .expect("the command runs");
    assert!(
        output.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// The Python of a test's virtualenv: the one named by `env`, else `venv` in the tools folder
/// that `cargo xtask test` fills.
pub fn tools_python(env: &str, venv: &str) -> Option<std::path::PathBuf> {
    if let Ok(path) = std::env::var(env) {
        return Some(path.into());
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let python = std::path::PathBuf::from(home)
        .join(".cache/llm-gateway-tools")
        .join(venv)
        .join("bin/python");
    python.exists().then_some(python)
}

/// `indexer verify` of the gateway at `base` (with a wallet's login `token`, row by row), as
/// of now.
pub async fn verify(base: &str, token: Option<&str>) -> indexer::verify::books::Report {
    verify_at(base, token, indexer::ledger::now()).await
}

/// [`verify`] as of `now` (unix seconds).
pub async fn verify_at(
    base: &str,
    token: Option<&str>,
    now: i64,
) -> indexer::verify::books::Report {
    let args = indexer::verify::VerifyArgs {
        gateway: base.to_owned(),
        rpc_url: None,
        relays: vec![],
        token: token.map(str::to_owned),
        grace_seconds: 600,
        publish_grace_seconds: 60,
        user: None,
        json: false,
        timeout_seconds: 10,
    };
    indexer::verify::check(&args, now).await.unwrap()
}

/// The books `indexer verify` rebuilds from the chain and the relay alone (the gateway at
/// `gateway` names them) reconcile and are `ledger`'s, wallet by wallet, once every
/// announcement reached the relay.
pub async fn books_match_the_ledger(
    ledger: &Ledger,
    gateway: &Gateway,
) -> indexer::verify::books::Report {
    eventually("every announcement reaches the relay", || async {
        ledger.outbox_backlog().await.unwrap() == 0
    })
    .await;
    let report = verify(&format!("http://{}", gateway.addr), None).await;
    assert!(report.reconciles(), "{}", indexer::verify::render(&report));
    for (user, books) in &report.users {
        let balance = ledger.balance(user).await.unwrap();
        assert_eq!(
            (books.credited, books.debited),
            (balance.credited, balance.debited),
            "{user}"
        );
    }
    report
}

/// A session token for `wallet` at the gateway at `base`, through the real login exchange.
pub async fn login(http: &reqwest::Client, base: &str, wallet: &SigningKey) -> String {
    let user = bs58::encode(wallet.verifying_key().as_bytes()).into_string();
    let nonce: Value = http
        .post(format!("{base}/v1/auth/nonce"))
        .json(&json!({"wallet": user}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let signature = wallet.sign(nonce["message"].as_str().unwrap().as_bytes());
    let login = http
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({
            "wallet": user,
            "nonce": nonce["nonce"],
            "signature": bs58::encode(signature.to_bytes()).into_string(),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200, "login succeeds");
    let body: Value = login.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}
