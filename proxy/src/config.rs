//! Typed configuration, loaded once at start: a TOML file, then `PROXY_…` environment variables
//! (nested keys joined by `__`, e.g. `PROXY_LIMITS__RPM`). Secrets (upstream API keys, the
//! Nostr key, the token secret) are named by file or environment variable, never inlined.
use common::config::load_layered;
pub use common::config::ConfigError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: String,
    /// Origins whose pages may call the API from a browser: `["*"]` (default: any — the API
    /// takes no cookies, so a page gains only what it brings), a list of
    /// `https://app.example`, or `[]` for none.
    #[serde(default = "any_origin")]
    pub cors_origins: Vec<String>,
    /// The ledger: `sqlite:path` (default) or `postgres://…` (shared by replicas).
    pub database_url: String,
    /// Seconds a reservation outlives its request before housekeeping frees it.
    pub reservation_ttl_seconds: i64,
    pub nostr: NostrConfig,
    /// What clients are told about the chain at `/.well-known/llm-gateway`.
    pub chain: ChainConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    /// The Cashu rail (off while no mint is listed).
    #[serde(default)]
    pub cashu: CashuConfig,
    pub models: Vec<ModelConfig>,
    /// SPL tokens the operator takes beside SOL (`[[tokens]]`, the indexer's section): listed
    /// at `/.well-known/llm-gateway`, and every price is quoted in each.
    #[serde(default)]
    pub tokens: Vec<common::assets::TokenAsset>,
    /// x402 v2: requests paid in one of `[[tokens]]` without an account (off unless `asset`).
    #[serde(default)]
    pub x402: X402Config,
}

/// x402 v2 on `/v1/chat/completions`: a request without credentials (or whose balance is
/// short) is answered 402 with a `PAYMENT-REQUIRED` offer in a token; the client pays with a
/// transfer to the treasury that the gateway co-signs as fee payer, submits, and credits to
/// the payer's balance (what the request does not use stays there, usable by login).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct X402Config {
    /// The mint (base58) offers are made in: one of `[[tokens]]`. Unset: no x402.
    pub asset: Option<String>,
    /// Keypair file (as `solana-keygen` writes) of the fee payer the gateway co-signs with:
    /// it pays each payment's transaction fee, so keep it funded with a little SOL.
    pub fee_payer_keypair_file: Option<PathBuf>,
    /// An external x402 facilitator (its base URL: `/supported`, `/settle`) that co-signs and
    /// submits payments instead of the gateway, which then holds no fee-payer key. The
    /// gateway still checks each payment first, and credits only what its RPC shows landed.
    pub facilitator_url: Option<String>,
    /// The RPC the gateway submits payments through (or, with a facilitator, reads them
    /// from). Default: `chain.rpc_url`.
    pub rpc_url: Option<String>,
    /// The CAIP-2 network offers name. Default: `solana:` and the first 32 characters of the
    /// RPC's genesis hash, read at start.
    pub network: Option<String>,
    /// Who is paid (the owner of the receiving token account). Default: the namespace's
    /// treasury, read from the chain at start.
    pub pay_to: Option<String>,
    /// Seconds a client has to pay an offer, and the gateway waits for a payment to land
    /// before it answers that the outcome is not known yet. Default 60.
    pub max_timeout_seconds: Option<u64>,
    /// `confirmed` (default) or `finalized`: when a payment counts as landed.
    pub commitment: Option<String>,
    /// The namespace's bot keypair file: with it the gateway also offers the `escrow` scheme
    /// to wallets registered with the program (it `lock_token`s their signed authorisation
    /// for a request's worst case and `settle_token`s the actual cost). The key must be the
    /// namespace's bot, and hold a little SOL for fees and each lock's rent (returned when it
    /// settles). Unset: `exact` only.
    pub escrow_bot_keypair_file: Option<PathBuf>,
}

/// Ecash the gateway takes: per request (`X-Cashu`) or as a top-up of a wallet's balance.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CashuConfig {
    /// Mint URLs whose sat ecash is accepted, as wallets write them. Empty: no Cashu rail.
    pub mints: Vec<String>,
    /// Ledger tokens one sat buys: what prices in sats are computed from.
    pub tokens_per_sat: u64,
    /// The largest token taken at once, in sats.
    pub max_token_sats: u64,
}

impl Default for CashuConfig {
    fn default() -> Self {
        Self {
            mints: vec![],
            tokens_per_sat: 1_000,
            max_token_sats: 1_000_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NostrConfig {
    /// Relay URLs; empty means no relay (the outbox keeps the events until one is configured).
    pub relays: Vec<String>,
    /// File holding the proxy's Nostr secret key (hex or nsec): signs debits and the catalog.
    pub secret_key_file: Option<PathBuf>,
    /// The gateway's Nostr address (hex): debits are `p`-tagged with it.
    pub machine: String,
    /// The `s` tag of every event.
    pub session: String,
    /// The `d` tag of the kind-30078 model catalog.
    pub catalog: String,
    /// Informational: the controller's lamports→tokens ratio, published in the catalog.
    pub tokens_per_sol: u64,
    /// Publish the outbox from this process (the indexer does it too when it shares the ledger).
    pub publish: bool,
    /// The relays clients should use, when they differ from `relays` (which may be internal
    /// addresses). Empty: `relays`.
    #[serde(default)]
    pub public_relays: Vec<String>,
    /// The controller's Nostr keys (hex), published so wallets trust only its `Status` replies.
    #[serde(default)]
    pub controller_pubkeys: Vec<String>,
    /// The other replicas' Nostr keys (hex), when they sign with keys of their own: published
    /// with this replica's own key, so anyone checking the books trusts their debits.
    #[serde(default)]
    pub proxy_pubkeys: Vec<String>,
    /// The controller's `max_lamports_per_request`, published so wallets refuse a larger top-up
    /// before signing it (the controller ignores one without an answer).
    #[serde(default)]
    pub max_topup_lamports: Option<u64>,
}

/// The deployment's chain, as wallets must reach it: published at `/.well-known/llm-gateway`
/// so a client needs only the gateway's URL. The gateway itself never calls the chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// A JSON-RPC URL wallets can reach (a public one, not the indexer's private node).
    pub rpc_url: Option<String>,
    /// Its websocket, if it is not the RPC URL's usual one.
    pub ws_url: Option<String>,
    pub program_id: String,
    /// The operator's namespace: what wallets sign authorisations for.
    pub namespace_id: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Shown in the text a wallet signs at login; name your deployment.
    pub realm: String,
    /// Names this deployment in everything a wallet signs for it (login text, delegated-key
    /// claims, revocations), so a signature made for one gateway is useless at another. Set it
    /// to the gateway's public URL; every replica of one deployment must share it. Default:
    /// `nostr.machine` (the deployment's Nostr address, distinct per deployment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// File with the secret that signs bearer tokens (any bytes, ≥ 32). Replicas must share it;
    /// without it each process makes a random one and tokens die with the process.
    pub token_secret_file: Option<PathBuf>,
    pub token_ttl_seconds: i64,
    pub nonce_ttl_seconds: i64,
    /// How many verified credentials are cached (each verdict also keeps its own expiry).
    pub cache_entries: usize,
    /// Call delegated keys' usage callbacks (off by default: the URL is the key signer's choice).
    pub callbacks: bool,
    /// Callback hosts (names, addresses or CIDRs) allowed although they are loopback, private
    /// or link-local; public addresses need no entry.
    #[serde(default)]
    pub callback_allow: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_body_bytes: usize,
    /// Time to the upstream's response headers, per attempt; then the next upstream.
    pub first_byte_timeout_seconds: u64,
    /// Whole request, stream included.
    pub request_timeout_seconds: u64,
    /// Requests per minute per caller (a wallet session or a delegated key).
    pub rpm: u32,
    /// Tokens per minute per caller.
    pub tpm: u64,
    /// On shutdown, how long in-flight requests may finish before their streams are cut (and
    /// settled for what they delivered).
    pub shutdown_grace_seconds: u64,
}

/// One model the gateway sells.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The name clients use.
    pub id: String,
    /// Ledger tokens per million prompt tokens.
    pub prompt_price: u64,
    /// Ledger tokens per million completion tokens.
    pub completion_price: u64,
    /// Cap on completion tokens, and the default when the balance affords more.
    pub max_output_tokens: u64,
    /// Tried in order; the next on a connect error, timeout or 5xx.
    pub upstreams: Vec<UpstreamConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// OpenAI-compatible base URL, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`.
    pub base_url: String,
    /// The model name upstream (default: the gateway's id).
    pub model: Option<String>,
    /// Environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// File holding the API key.
    pub api_key_file: Option<PathBuf>,
    /// The field this upstream reads the output bound from (`max_tokens`, the default, read
    /// by vLLM, Ollama, llama.cpp and most servers; or `max_completion_tokens`, which OpenAI's
    /// reasoning models require). The gateway sends the bound in this field only.
    #[serde(default)]
    pub bound_field: BoundField,
    /// Whether it reports usage (every OpenAI-compatible server does; some proxies drop it).
    /// A model with an upstream that does not has its prompts counted with the tokenizer to
    /// reserve, as they are then charged; otherwise reservations are sized from the prompt's
    /// bytes and the tokenizer stays out of memory.
    #[serde(default = "reports_usage")]
    pub reports_usage: bool,
}

fn reports_usage() -> bool {
    true
}

/// Where an upstream reads the completion-token bound from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoundField {
    #[default]
    MaxTokens,
    MaxCompletionTokens,
}

impl BoundField {
    /// The JSON field name.
    pub fn name(self) -> &'static str {
        match self {
            BoundField::MaxTokens => "max_tokens",
            BoundField::MaxCompletionTokens => "max_completion_tokens",
        }
    }
}

fn any_origin() -> Vec<String> {
    vec!["*".into()]
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            cors_origins: any_origin(),
            database_url: "sqlite:indexer.sqlite".into(),
            reservation_ttl_seconds: 900,
            nostr: NostrConfig {
                relays: vec![],
                secret_key_file: None,
                machine: String::new(),
                session: common::wire::DEFAULT_SESSION.into(),
                catalog: "llm-gateway".into(),
                tokens_per_sol: 1_000_000,
                publish: true,
                public_relays: vec![],
                controller_pubkeys: vec![],
                proxy_pubkeys: vec![],
                max_topup_lamports: None,
            },
            chain: ChainConfig {
                rpc_url: None,
                ws_url: None,
                program_id: balance_payment::ID.to_string(),
                namespace_id: 0,
            },
            auth: AuthConfig {
                realm: "LLM gateway".into(),
                audience: None,
                token_secret_file: None,
                token_ttl_seconds: 24 * 3600,
                nonce_ttl_seconds: 300,
                cache_entries: 100_000,
                callbacks: false,
                callback_allow: vec![],
            },
            x402: X402Config::default(),
            limits: LimitsConfig {
                max_body_bytes: 1 << 20,
                first_byte_timeout_seconds: 60,
                request_timeout_seconds: 600,
                rpm: 600,
                tpm: 2_000_000,
                shutdown_grace_seconds: 30,
            },
            cashu: CashuConfig::default(),
            models: vec![],
            tokens: vec![],
        }
    }
}

impl Config {
    /// Defaults, then `file` (if given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let config: Config = load_layered(Config::default(), file, "PROXY_")?;
        config.validate()?;
        Ok(config)
    }

    /// The audience wallets sign for at this deployment: `auth.audience`, else `nostr.machine`.
    pub fn audience(&self) -> &str {
        self.auth
            .audience
            .as_deref()
            .unwrap_or(self.nostr.machine.as_str())
    }

    /// Refuses a configuration the proxy could not serve correctly.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if nostr_sdk::PublicKey::parse(&self.nostr.machine).is_err() {
            return invalid(format!(
                "nostr.machine must be the gateway's Nostr address (hex), got {:?}",
                self.nostr.machine
            ));
        }
        common::config::check_nostr_keys("nostr.proxy_pubkeys", &self.nostr.proxy_pubkeys)?;
        common::config::check_nostr_keys(
            "nostr.controller_pubkeys",
            &self.nostr.controller_pubkeys,
        )?;
        common::config::check_program_id(&self.chain.program_id)?;
        common::assets::parse_tokens("tokens", &self.tokens)?;
        crate::cors::layer(&self.cors_origins)?;
        let audience = self.audience();
        if audience.trim().is_empty()
            || audience.trim() != audience
            || audience.chars().any(char::is_control)
        {
            return invalid(format!(
                "auth.audience must be one non-empty line without surrounding spaces (e.g. the \
                 gateway's public URL), got {audience:?}"
            ));
        }
        if self.models.is_empty() {
            return invalid("at least one [[models]] entry is required".into());
        }
        let mut seen = std::collections::HashSet::new();
        for model in &self.models {
            if !seen.insert(&model.id) {
                return invalid(format!("model {} is configured twice", model.id));
            }
            if model.upstreams.is_empty() {
                return invalid(format!("model {} has no upstreams", model.id));
            }
            if model.max_output_tokens == 0 {
                return invalid(format!(
                    "model {}: max_output_tokens must be positive",
                    model.id
                ));
            }
            for upstream in &model.upstreams {
                if !(upstream.base_url.starts_with("http://")
                    || upstream.base_url.starts_with("https://"))
                {
                    return invalid(format!(
                        "model {}: upstream base_url must be http(s): {}",
                        model.id, upstream.base_url
                    ));
                }
            }
        }
        crate::callback::CallbackPolicy::new(self.auth.callbacks, &self.auth.callback_allow)?;
        if self.cashu.tokens_per_sat == 0 || i64::try_from(self.cashu.tokens_per_sat).is_err() {
            return invalid("cashu.tokens_per_sat must be positive".into());
        }
        for mint in &self.cashu.mints {
            if !(mint.starts_with("http://") || mint.starts_with("https://")) {
                return invalid(format!("cashu.mints: not an http(s) URL: {mint}"));
            }
        }
        if self.limits.rpm == 0 || self.limits.tpm == 0 || self.limits.max_body_bytes == 0 {
            return invalid(
                "limits.rpm, limits.tpm and limits.max_body_bytes must be positive".into(),
            );
        }
        if self.reservation_ttl_seconds < self.limits.request_timeout_seconds as i64 {
            return invalid(
                "reservation_ttl_seconds must be at least limits.request_timeout_seconds".into(),
            );
        }
        Ok(())
    }
}

impl UpstreamConfig {
    /// Reads the API key from its file or environment variable.
    pub fn api_key(&self) -> Result<Option<String>, ConfigError> {
        if let Some(file) = &self.api_key_file {
            return std::fs::read_to_string(file)
                .map(|key| Some(key.trim().to_owned()))
                .map_err(|e| {
                    ConfigError::Invalid(format!("api_key_file {}: {e}", file.display()))
                });
        }
        match &self.api_key_env {
            Some(var) => std::env::var(var).map(Some).map_err(|_| {
                ConfigError::Invalid(format!("environment variable {var} is not set"))
            }),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Config {
        let mut config = Config {
            models: vec![ModelConfig {
                id: "echo".into(),
                prompt_price: 1,
                completion_price: 1,
                max_output_tokens: 1,
                upstreams: vec![UpstreamConfig {
                    base_url: "http://127.0.0.1:1/v1".into(),
                    model: None,
                    api_key_env: None,
                    api_key_file: None,
                    bound_field: BoundField::default(),
                    reports_usage: true,
                }],
            }],
            ..Config::default()
        };
        config.nostr.machine = nostr_sdk::Keys::generate().public_key().to_hex();
        config
    }

    #[test]
    fn the_audience_is_the_configured_one_or_the_deployments_nostr_address() {
        let mut config = valid();
        assert_eq!(config.audience(), config.nostr.machine);
        config.auth.audience = Some("https://gateway.example".into());
        assert_eq!(config.audience(), "https://gateway.example");
        assert!(config.validate().is_ok());
        for bad in ["", " https://x", "https://x\naudience: y"] {
            config.auth.audience = Some(bad.into());
            assert!(config.validate().is_err(), "{bad:?} accepted");
        }
    }
}
