//! The indexer's services on the embedded relay and a throwaway ledger, without a bank: a chain
//! that has no events and whose `submit` never returns (a stuck controller), credits backed by
//! payments recorded directly, and events signed with any `created_at`.
#![allow(dead_code)]
pub mod cuttable;

use async_trait::async_trait;
use indexer::{
    chain::{watcher::PaymentRule, Chain, ChainError, ChainEvent, EventBatch},
    clock::Clock,
    controller::{Controller, ControllerConfig},
    ledger::{testing::TempDatabase, Ledger, Payment},
    nostr::{events::session_tag, watcher::IngestSettings, watcher::Trust},
    services::{Components, ServiceSettings, Services},
    supervisor::RestartPolicy,
    wire::{DsProxyMessage, DsProxyStatus, DsProxyStatusReason, DEFAULT_SESSION, KIND_DS_PROXY},
};
use localnet::EmbeddedRelay;
use nostr_sdk::prelude::*;
use solana_sdk::{instruction::Instruction, pubkey::Pubkey, signature::Keypair};
use std::{
    future::Future,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// Tokens per SOL in these tests: a credit of `t` tokens is backed by `t × 1000` lamports.
pub const TOKENS_PER_SOL: u64 = 1_000_000;

/// Which ledger backend a test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub async fn database(self) -> TempDatabase {
        match self {
            Backend::Sqlite => TempDatabase::sqlite(),
            Backend::Postgres => TempDatabase::postgres()
                .await
                .expect("Postgres on 127.0.0.1:5432"),
        }
    }
}

/// One test per backend from one `async fn name(backend: Backend)`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await
                }
            )*
        }
    };
}

/// A chain with no events that never answers anything else: the controller gets stuck on it.
pub struct StuckChain;

#[async_trait]
impl Chain for StuckChain {
    async fn submit(&self, _: &[Instruction], _: &[&Keypair]) -> Result<String, ChainError> {
        std::future::pending().await
    }

    async fn events_after(&self, _: Option<&str>) -> Result<EventBatch, ChainError> {
        Ok(EventBatch::default())
    }

    async fn account_data(&self, _: &Pubkey) -> Result<Option<Vec<u8>>, ChainError> {
        std::future::pending().await
    }

    async fn lamports(&self, _: &Pubkey) -> Result<u64, ChainError> {
        std::future::pending().await
    }

    async fn find_payment(
        &self,
        _: &Pubkey,
        _: u64,
        _: u64,
    ) -> Result<Option<ChainEvent>, ChainError> {
        std::future::pending().await
    }
}

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Restarts fast in tests.
pub fn fast_restarts(max_failures: u32) -> RestartPolicy {
    RestartPolicy {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        max_failures,
        failure_window: Duration::from_secs(600),
    }
}

/// The settings of a harness: restarts, ingestion limits and the clock.
pub fn settings(restart: RestartPolicy, clock: Clock) -> ServiceSettings {
    ServiceSettings {
        restart,
        ingest: IngestSettings {
            clock,
            ..Default::default()
        },
        controller_retry: None,
    }
}

pub struct Harness {
    pub db: TempDatabase,
    pub ledger: Ledger,
    pub relay: EmbeddedRelay,
    pub controller_keys: Keys,
    pub proxy_keys: Keys,
    pub machine: PublicKey,
    /// Publishes test events (any signer).
    pub client: Client,
    pub services: Option<Services>,
    /// Where the services' listener connects, when not straight to the relay (a
    /// [`cuttable::Cuttable`] in front of it).
    pub listen_through: Option<String>,
    clients: Vec<Client>,
    payments: AtomicU64,
}

impl Harness {
    /// A relay (capping queries at `max_filter_limit` when set) and a ledger; no services yet.
    pub async fn new(backend: Backend, max_filter_limit: Option<usize>) -> Self {
        init_logs();
        let db = backend.database().await;
        let ledger = db.ledger().await;
        let relay = EmbeddedRelay::start_capped(0, max_filter_limit)
            .await
            .expect("relay starts");
        let client = connect(&relay, Keys::generate()).await;
        Self {
            db,
            ledger,
            relay,
            controller_keys: Keys::generate(),
            proxy_keys: Keys::generate(),
            machine: Keys::generate().public_key(),
            client,
            services: None,
            listen_through: None,
            clients: Vec::new(),
            payments: AtomicU64::new(0),
        }
    }

    /// Starts the services with fresh relay connections, as a process start would.
    pub async fn start(
        &mut self,
        settings: ServiceSettings,
        controller: bool,
        health: Option<tokio::net::TcpListener>,
    ) {
        let publisher = connect(&self.relay, self.controller_keys.clone()).await;
        let listener = match &self.listen_through {
            Some(url) => connect_to(url, Keys::generate()).await,
            None => connect(&self.relay, Keys::generate()).await,
        };
        let controller = controller.then(|| {
            Controller::new(
                ControllerConfig {
                    bot: Keypair::new(),
                    namespace_id: 0,
                    cluster: [0; 32],
                    treasury: solana_sdk::pubkey::Pubkey::new_unique(),
                    nostr_keys: self.controller_keys.clone(),
                    session: DEFAULT_SESSION.into(),
                    machine: self.machine,
                    tokens_per_sol: TOKENS_PER_SOL,
                    max_lamports_per_request: 100_000_000_000,
                    tokens: Default::default(),
                },
                self.ledger.clone(),
                std::sync::Arc::new(StuckChain),
            )
        });
        self.services = Some(Services::spawn(Components {
            ledger: self.ledger.clone(),
            chain: std::sync::Arc::new(StuckChain),
            publisher: publisher.clone(),
            listener: listener.clone(),
            trust: Trust {
                controllers: [self.controller_keys.public_key()].into(),
                proxies: [self.proxy_keys.public_key()].into(),
            },
            session: DEFAULT_SESSION.into(),
            recipients: vec![self.machine],
            payments: PaymentRule {
                namespace_id: 0,
                tokens_per_sol: TOKENS_PER_SOL,
                tokens: Default::default(),
            },
            chain_poll: Duration::from_secs(1),
            credit_grace: None,
            controller,
            settings,
            health_listener: health,
        }));
        self.clients = vec![publisher, listener];
    }

    /// [`Harness::start`] with the default restart policy and the clock stopped at `t0`, with
    /// or without a controller.
    pub async fn start_at(&mut self, t0: u64, controller: bool) {
        let clock = Clock::from_fn(move || t0);
        self.start(settings(RestartPolicy::default(), clock), controller, None)
            .await;
    }

    /// Stops the services and closes their relay connections.
    pub async fn stop(&mut self) {
        if let Some(services) = self.services.take() {
            services.shutdown().await;
        }
        for client in self.clients.drain(..) {
            client.shutdown().await;
        }
    }

    pub fn services(&mut self) -> &mut Services {
        self.services.as_mut().expect("services are running")
    }

    /// A kind-1573 event of the session signed by `keys`, dated `created_at`.
    pub fn event(&self, keys: &Keys, message: &DsProxyMessage, created_at: u64) -> Event {
        EventBuilder::new(
            Kind::Custom(KIND_DS_PROXY),
            serde_json::to_string(message).expect("serialisable"),
        )
        .tags([
            Tag::custom(TagKind::SingleLetter(session_tag()), [DEFAULT_SESSION]),
            Tag::public_key(self.machine),
        ])
        .custom_created_at(Timestamp::from(created_at))
        .sign_with_keys(keys)
        .expect("signs")
    }

    /// A credit of `tokens` to `user` signed by `keys`, backed by a payment recorded in the
    /// ledger (as the chain watcher would have).
    pub async fn credit(&self, keys: &Keys, user: &str, tokens: i64, created_at: u64) -> Event {
        let mut one = self
            .credits(keys, &[(user.to_owned(), tokens, created_at)])
            .await;
        one.remove(0)
    }

    /// Credits like [`Harness::credit`], their payments recorded in one ledger transaction:
    /// a back-fill test's hundreds of payments cost one commit, not one each.
    pub async fn credits(&self, keys: &Keys, credits: &[(String, i64, u64)]) -> Vec<Event> {
        let first = self
            .payments
            .fetch_add(credits.len() as u64, Ordering::Relaxed);
        let payments: Vec<Payment> = (first..)
            .zip(credits)
            .map(|(n, (user, tokens, _))| Payment {
                signature: format!("sig-{user}-{n}"),
                index: 0,
                user: user.clone(),
                namespace_id: 0,
                nonce: n,
                amount: *tokens as u64 * 1_000,
                mint: None,
                tokens: *tokens,
                slot: 1,
            })
            .collect();
        self.ledger
            .record_payments(&payments)
            .await
            .expect("payments recorded");
        payments
            .into_iter()
            .zip(credits)
            .map(|(payment, (user, tokens, created_at))| {
                let message = DsProxyMessage::Transaction {
                    user: user.clone(),
                    tokens: *tokens,
                    reference: Some(payment.signature),
                    model: None,
                    rail: None,
                };
                self.event(keys, &message, *created_at)
            })
            .collect()
    }

    /// A `Request` with `payload`, signed by `keys`.
    pub fn request(&self, keys: &Keys, payload: String, created_at: u64) -> Event {
        let message = DsProxyMessage::Request {
            to_status: DsProxyStatus::Working,
            reason: DsProxyStatusReason::UserRequest,
            initial_request: "0".repeat(64),
            payload,
        };
        self.event(keys, &message, created_at)
    }

    pub async fn publish(&self, event: &Event) {
        self.client
            .send_event(event)
            .await
            .expect("the relay accepts the event");
    }

    /// Publishes `events` over a few concurrent sends, each awaited for the relay's OK: a
    /// back-fill test's hundreds of events are stored in a fraction of one-by-one's time.
    pub async fn publish_all(&self, events: impl IntoIterator<Item = Event>) {
        use futures_util::StreamExt;
        futures_util::stream::iter(events)
            .for_each_concurrent(16, |event| async move { self.publish(&event).await })
            .await;
    }

    /// The persisted Nostr cursor.
    pub async fn cursor(&self) -> Option<u64> {
        self.ledger
            .cursor(indexer::nostr::cursor::CURSOR)
            .await
            .expect("ledger answers")
            .and_then(|c| c.parse().ok())
    }

    /// Waits until the persisted cursor is `expected`: the cursor is written just after the
    /// event that moves it is applied, so a balance can be seen a moment before it.
    pub async fn wait_for_cursor(&self, expected: u64) {
        let what = format!("the cursor to reach {expected}");
        wait_until(&what, Duration::from_secs(20), || async {
            self.cursor().await == Some(expected)
        })
        .await;
    }

    /// Stops everything and drops the database.
    pub async fn finish(mut self) {
        self.stop().await;
        self.client.shutdown().await;
        self.relay.shutdown().await;
        self.ledger.close().await;
        self.db.remove().await;
    }
}

pub async fn connect(relay: &EmbeddedRelay, keys: Keys) -> Client {
    connect_to(relay.url(), keys).await
}

pub async fn connect_to(url: &str, keys: Keys) -> Client {
    let client = Client::new(keys);
    client.add_relay(url).await.expect("relay URL");
    client.connect().await;
    client.wait_for_connection(Duration::from_secs(5)).await;
    client
}

/// Unix seconds now (the tests' fixed "now").
pub fn wall_now() -> u64 {
    indexer::ledger::now() as u64
}

/// Waits until `check` holds (polling), or fails with `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Waits until `user` has `expected` tokens credited.
pub async fn wait_for_credited(ledger: &Ledger, user: &str, expected: i64, timeout: Duration) {
    let what = format!("{user} to have {expected} credited");
    wait_until(&what, timeout, || async {
        ledger.balance(user).await.map(|b| b.credited).unwrap_or(-1) == expected
    })
    .await;
}
