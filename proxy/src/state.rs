//! What every request handler shares: configuration resolved into models and upstreams, the
//! ledger, the HTTP client, the authenticator, limits, metrics and the settlement tracker.
use crate::{
    auth::Authenticator,
    callback::CallbackPolicy,
    config::{BoundField, Config, ConfigError},
    metrics::Metrics,
    pricing::Price,
    ratelimit::RateLimiter,
};
use ledger::Ledger;
use nostr_sdk::prelude::{Keys, PublicKey};
use std::{collections::HashMap, sync::Arc, time::Duration};
use tokio::sync::Notify;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// A model as the handlers use it.
#[derive(Debug)]
pub struct Model {
    pub id: String,
    pub price: Price,
    pub max_output_tokens: u64,
    pub upstreams: Vec<Upstream>,
    /// An upstream reports no usage: prompts are counted exactly before the hold (what such
    /// an upstream's answers are charged), not bounded from their bytes.
    pub counts_prompt: bool,
}

/// One OpenAI-compatible endpoint serving a model.
#[derive(Debug)]
pub struct Upstream {
    /// `{base_url}/chat/completions`, parsed once (not on every request).
    pub url: reqwest::Url,
    /// The host, for logs and metrics (never the key).
    pub name: String,
    /// The model name upstream.
    pub model: String,
    pub api_key: Option<String>,
    /// The field it reads the output bound from.
    pub bound_field: BoundField,
}

/// The proxy's Nostr identity: signs debits, addressed to the gateway's machine.
#[derive(Debug, Clone)]
pub struct NostrIdentity {
    pub keys: Keys,
    pub session: String,
    pub machine: PublicKey,
}

pub struct AppState {
    pub config: Config,
    pub models: HashMap<String, Arc<Model>>,
    pub ledger: Ledger,
    pub http: reqwest::Client,
    pub auth: Authenticator,
    pub limiter: RateLimiter,
    pub metrics: Metrics,
    pub nostr: NostrIdentity,
    /// The relay connection, for readiness (absent when no relay is configured).
    pub relay: Option<nostr_sdk::Client>,
    /// Every settlement task; shutdown waits for them.
    pub settlements: TaskTracker,
    /// Set when shutdown begins: readiness turns false so load balancers stop sending.
    pub draining: std::sync::atomic::AtomicBool,
    /// Fired when the shutdown grace is over: streams still running end and settle.
    pub cut_streams: CancellationToken,
    /// Rung after a settlement queues a debit, so the publisher sends it at once.
    pub outbox_wake: Arc<Notify>,
    /// Whether and where usage callbacks may go.
    pub callbacks: CallbackPolicy,
    /// The Cashu rail, when mints are listed.
    pub cashu: Option<Arc<crate::cashu::Cashu>>,
    /// x402, when `[x402]` names an asset (set by [`crate::server::Gateway::start`], which
    /// reads the chain for it).
    pub x402: Option<Arc<crate::x402::X402>>,
}

impl AppState {
    pub fn new(
        config: Config,
        ledger: Ledger,
        nostr: NostrIdentity,
        token_secret: Vec<u8>,
        relay: Option<nostr_sdk::Client>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut models = HashMap::new();
        for model in &config.models {
            let mut upstreams = Vec::new();
            for upstream in &model.upstreams {
                let base = upstream.base_url.trim_end_matches('/');
                let url =
                    reqwest::Url::parse(&format!("{base}/chat/completions")).map_err(|e| {
                        ConfigError::Invalid(format!("model {}: upstream base_url: {e}", model.id))
                    })?;
                upstreams.push(Upstream {
                    url,
                    name: reqwest::Url::parse(base)
                        .ok()
                        .and_then(|url| {
                            url.host_str().map(|host| {
                                format!("{host}:{}", url.port_or_known_default().unwrap_or(0))
                            })
                        })
                        .unwrap_or_else(|| base.to_owned()),
                    model: upstream.model.clone().unwrap_or_else(|| model.id.clone()),
                    api_key: upstream.api_key()?,
                    bound_field: upstream.bound_field,
                });
            }
            models.insert(
                model.id.clone(),
                Arc::new(Model {
                    id: model.id.clone(),
                    price: Price {
                        prompt: model.prompt_price,
                        completion: model.completion_price,
                    },
                    max_output_tokens: model.max_output_tokens,
                    upstreams,
                    counts_prompt: model.upstreams.iter().any(|u| !u.reports_usage),
                }),
            );
        }
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| ConfigError::Invalid(format!("HTTP client: {e}")))?;
        let cashu = crate::cashu::Cashu::new(&config.cashu)
            .map_err(|e| ConfigError::Invalid(format!("cashu: {e}")))?
            .map(Arc::new);
        Ok(Self {
            cashu,
            x402: None,
            callbacks: CallbackPolicy::new(config.auth.callbacks, &config.auth.callback_allow)?,
            auth: Authenticator::new(token_secret, config.audience(), config.auth.cache_entries),
            limiter: RateLimiter::new(config.limits.rpm, config.limits.tpm),
            config,
            models,
            ledger,
            http,
            metrics: Metrics::default(),
            nostr,
            relay,
            settlements: TaskTracker::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
            cut_streams: CancellationToken::new(),
            outbox_wake: Arc::new(Notify::new()),
        })
    }
}
