//! Typed configuration, loaded once at start: a TOML file, then `INDEXER_…` environment
//! variables (nested keys joined by `__`, e.g. `INDEXER_CHAIN__RPC_URL`). Bad config fails
//! before anything runs.
pub use common::config::{
    check_nostr_keys, check_program_id, load_layered, Commitment, ConfigError,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The largest rate at which any lamport amount (up to `u64::MAX`) is still worth an `i64`
/// of tokens, so that no payment can overflow the ledger.
pub const MAX_TOKENS_PER_SOL: u64 = 500_000_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `sqlite:path` (default) or `postgres://…`.
    pub database_url: String,
    /// The `s` tag of every event.
    pub session: String,
    pub nostr: NostrConfig,
    pub chain: ChainConfig,
    /// Present on the operator's controller; absent on a read-only indexer.
    pub controller: Option<ControllerSection>,
    /// Apply a credit whose payment is still unseen after this many seconds (default: never).
    pub credit_grace_seconds: Option<u64>,
    /// Where `/health` and `/metrics` are served (`host:port`; omit to serve neither).
    pub health_listen: Option<String>,
    /// Restarts, ingestion limits and the request queue.
    #[serde(default)]
    pub service: ServiceConfig,
    /// SPL tokens taken beside SOL (`[[tokens]]`: mint, symbol, decimals, tokens_per_unit):
    /// what a `TokenPaid` in each is worth. The gateway lists the same section.
    #[serde(default)]
    pub tokens: Vec<common::assets::TokenAsset>,
}

/// How services restart and when they are given up, and the watcher's limits. "Cannot
/// recover" = `max_failures` failures in a row (no progress in between) within
/// `failure_window_seconds`; the process then exits non-zero for its supervisor to restart it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// First wait before restarting a failed service; doubled per failure.
    pub restart_backoff_ms: u64,
    /// Longest wait between restarts.
    pub restart_backoff_max_seconds: u64,
    /// Failures in a row (no progress in between) that mean "cannot recover" …
    pub max_failures: u32,
    /// … when they all fall within this many seconds.
    pub failure_window_seconds: u64,
    /// How far in the future a trusted event may be dated and still move the Nostr cursor.
    pub max_clock_skew_seconds: u64,
    /// Events per back-fill query (relays commonly cap queries at 500).
    pub backfill_page: usize,
    /// Requests waiting for the controller at most; more are dropped (and logged).
    pub request_queue: usize,
    /// Requests of one Nostr key waiting or being handled at most.
    pub requests_per_author: usize,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        let (restart, ingest) = (
            crate::supervisor::RestartPolicy::default(),
            crate::nostr::watcher::IngestSettings::default(),
        );
        Self {
            restart_backoff_ms: restart.initial_backoff.as_millis() as u64,
            restart_backoff_max_seconds: restart.max_backoff.as_secs(),
            max_failures: restart.max_failures,
            failure_window_seconds: restart.failure_window.as_secs(),
            max_clock_skew_seconds: ingest.max_clock_skew,
            backfill_page: ingest.backfill_page,
            request_queue: ingest.request_queue,
            requests_per_author: ingest.requests_per_author,
        }
    }
}

impl ServiceConfig {
    /// The services' settings, on the wall clock.
    pub fn settings(&self) -> crate::services::ServiceSettings {
        use std::time::Duration;
        crate::services::ServiceSettings {
            restart: crate::supervisor::RestartPolicy {
                initial_backoff: Duration::from_millis(self.restart_backoff_ms),
                max_backoff: Duration::from_secs(self.restart_backoff_max_seconds),
                max_failures: self.max_failures,
                failure_window: Duration::from_secs(self.failure_window_seconds),
            },
            ingest: crate::nostr::watcher::IngestSettings {
                max_clock_skew: self.max_clock_skew_seconds,
                backfill_page: self.backfill_page,
                request_queue: self.request_queue,
                requests_per_author: self.requests_per_author,
                ..Default::default()
            },
            controller_retry: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NostrConfig {
    /// Relay URLs (at least one): where requests, credits and debits are read and published.
    pub relays: Vec<String>,
    /// The gateway's Nostr address (hex): events are `p`-tagged with it.
    pub machine: String,
    /// Keys (hex) whose positive `Transaction`s are credits.
    pub controller_pubkeys: Vec<String>,
    /// Keys (hex) whose negative `Transaction`s are debits.
    pub proxy_pubkeys: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    pub rpc_url: String,
    /// Websocket endpoint for `logsSubscribe`; without it the watcher only polls.
    pub ws_url: Option<String>,
    pub program_id: String,
    pub namespace_id: u64,
    pub poll_seconds: u64,
    /// Ledger tokens per SOL paid: what every payment is worth, and so every credit.
    pub tokens_per_sol: u64,
    /// How settled a payment must be before it counts (and so its credit):
    /// `finalized` (default; cannot be rolled back) or `confirmed` (faster, a small reorg risk).
    pub commitment: Commitment,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerSection {
    /// Solana keypair file (JSON array, as `solana-keygen` writes) of the namespace's bot.
    pub bot_keypair: PathBuf,
    /// File holding the controller's Nostr secret key (hex or nsec).
    pub nostr_secret_key_file: PathBuf,
    /// The namespace treasury (base58).
    pub treasury: String,
    /// Most lamports one top-up may pay; larger authorisations are refused, not cut.
    pub max_lamports_per_request: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: "sqlite:indexer.sqlite".into(),
            session: crate::wire::DEFAULT_SESSION.into(),
            nostr: NostrConfig {
                relays: vec![],
                machine: String::new(),
                controller_pubkeys: vec![],
                proxy_pubkeys: vec![],
            },
            chain: ChainConfig {
                rpc_url: "http://127.0.0.1:8899".into(),
                ws_url: None,
                program_id: balance_payment::ID.to_string(),
                namespace_id: 0,
                poll_seconds: 5,
                tokens_per_sol: 1_000_000,
                commitment: Commitment::Finalized,
            },
            controller: None,
            credit_grace_seconds: None,
            health_listen: Some("127.0.0.1:9464".into()),
            service: ServiceConfig::default(),
            tokens: vec![],
        }
    }
}

impl Config {
    /// Defaults, then `file` (if given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let config: Config = load_layered(Config::default(), file, "INDEXER_")?;
        config.validate()?;
        Ok(config)
    }

    /// The `[[tokens]]` section, parsed (checked at load, so this fails only on a config
    /// that was never loaded).
    pub fn token_rates(&self) -> Result<Vec<common::assets::TokenRate>, ConfigError> {
        common::assets::parse_tokens("tokens", &self.tokens)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.nostr.machine.is_empty() {
            return invalid("nostr.machine (the gateway's Nostr address) is required".into());
        }
        check_nostr_keys(
            "nostr",
            [&self.nostr.machine]
                .into_iter()
                .chain(&self.nostr.controller_pubkeys)
                .chain(&self.nostr.proxy_pubkeys),
        )?;
        check_program_id(&self.chain.program_id)?;
        if self.nostr.relays.is_empty() {
            return invalid("nostr.relays must name at least one relay (ws:// or wss://)".into());
        }
        let service = &self.service;
        if service.max_failures == 0 || service.backfill_page == 0 || service.request_queue == 0 {
            return invalid(
                "service.max_failures, backfill_page and request_queue must be positive".into(),
            );
        }
        if let Some(controller) = &self.controller {
            if controller
                .treasury
                .parse::<solana_sdk::pubkey::Pubkey>()
                .is_err()
            {
                return invalid(format!(
                    "controller.treasury is not a Solana address: {}",
                    controller.treasury
                ));
            }
        }
        self.token_rates()?;
        if !(1..=MAX_TOKENS_PER_SOL).contains(&self.chain.tokens_per_sol) {
            return invalid(format!(
                "chain.tokens_per_sol must be between 1 and {MAX_TOKENS_PER_SOL}"
            ));
        }
        Ok(())
    }
}
