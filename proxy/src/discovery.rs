//! `GET /.well-known/llm-gateway`: everything a client must know to pay this gateway — the
//! cluster's RPC, the program and namespace, the relays, the gateway's Nostr address and the
//! controller's keys, the audience to sign for, the token rate and the prices — so a wallet
//! (the `proxy` wallet commands, a web page, a script) needs only the gateway's URL.
use crate::{config::Config, error::ApiError, state::AppState};
use axum::{extract::State, Json};
use common::books::{RatePeriod, Rates, TokenRateInfo};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Where the document is served.
pub const PATH: &str = "/.well-known/llm-gateway";

/// The document. Fields may be added; clients ignore what they do not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayInfo {
    /// What wallets sign for at this gateway (login texts, delegated keys).
    pub audience: String,
    pub realm: String,
    pub solana: SolanaInfo,
    pub nostr: NostrInfo,
    /// Ledger tokens credited per SOL paid.
    pub tokens_per_sol: u64,
    /// The most lamports one top-up may pay, when the operator publishes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_topup_lamports: Option<u64>,
    /// Prices in ledger tokens per 1,000,000 model tokens.
    pub models: Vec<ModelInfo>,
    /// The Cashu rail, when the gateway takes ecash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cashu: Option<CashuInfo>,
    /// SPL tokens taken beside SOL (escrowed with `deposit --mint`, bought with `topup
    /// --mint`), with what one whole token buys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<common::assets::TokenAsset>,
    /// x402, when the gateway takes it: agents pay per request with the standard clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x402: Option<crate::x402::wire::X402Info>,
    /// Every rate the deployment announced, oldest first: what each credit is checked against.
    #[serde(default)]
    pub rates: Vec<RatePeriod>,
}

/// How to pay with ecash: the accepted mints (sat) and the rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CashuInfo {
    pub mints: Vec<String>,
    pub unit: String,
    /// Ledger tokens one sat buys.
    pub tokens_per_sat: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SolanaInfo {
    /// A JSON-RPC URL wallets can use; absent when the operator did not publish one.
    pub rpc_url: Option<String>,
    pub ws_url: Option<String>,
    pub program_id: String,
    pub namespace_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NostrInfo {
    /// Where top-up requests go and the controller answers.
    pub relays: Vec<String>,
    /// The gateway's Nostr address (hex): requests are `p`-tagged with it.
    pub machine: String,
    /// The `s` tag of every event.
    pub session: String,
    /// Keys (hex) whose `Status` replies and credits count; empty when not published.
    pub controllers: Vec<String>,
    /// The gateway replicas' keys (hex): they sign debits and the entries they attest (ecash
    /// and x402 credits).
    #[serde(default)]
    pub proxies: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub id: String,
    pub prompt_price: u64,
    pub completion_price: u64,
    pub max_output_tokens: u64,
}

impl GatewayInfo {
    /// The document for `config`.
    pub fn of(config: &Config) -> Self {
        let relays = match config.nostr.public_relays.is_empty() {
            true => config.nostr.relays.clone(),
            false => config.nostr.public_relays.clone(),
        };
        Self {
            audience: config.audience().to_owned(),
            realm: config.auth.realm.clone(),
            solana: SolanaInfo {
                rpc_url: config.chain.rpc_url.clone(),
                ws_url: config.chain.ws_url.clone(),
                program_id: config.chain.program_id.clone(),
                namespace_id: config.chain.namespace_id,
            },
            nostr: NostrInfo {
                relays,
                machine: config.nostr.machine.clone(),
                session: config.nostr.session.clone(),
                controllers: config.nostr.controller_pubkeys.clone(),
                proxies: config.nostr.proxy_pubkeys.clone(),
            },
            tokens_per_sol: config.nostr.tokens_per_sol,
            max_topup_lamports: config.nostr.max_topup_lamports,
            models: config
                .models
                .iter()
                .map(|m| ModelInfo {
                    id: m.id.clone(),
                    prompt_price: m.prompt_price,
                    completion_price: m.completion_price,
                    max_output_tokens: m.max_output_tokens,
                })
                .collect(),
            cashu: (!config.cashu.mints.is_empty()).then(|| CashuInfo {
                mints: config.cashu.mints.clone(),
                unit: "sat".into(),
                tokens_per_sat: config.cashu.tokens_per_sat,
            }),
            tokens: config.tokens.clone(),
            x402: None,
            rates: vec![],
        }
    }

    /// The rates `config` announces now.
    pub fn current_rates(config: &Config) -> Rates {
        Rates {
            tokens_per_sol: config.nostr.tokens_per_sol,
            tokens_per_sat: (!config.cashu.mints.is_empty()).then_some(config.cashu.tokens_per_sat),
            tokens: config
                .tokens
                .iter()
                .map(|token| TokenRateInfo {
                    mint: token.mint.clone(),
                    decimals: token.decimals,
                    tokens_per_unit: token.tokens_per_unit,
                })
                .collect(),
        }
    }

    /// Reads the document of the gateway at `gateway` (its base URL).
    pub async fn fetch(http: &reqwest::Client, gateway: &str) -> anyhow::Result<Self> {
        let url = format!("{}{PATH}", gateway.trim_end_matches('/'));
        let response = http
            .get(&url)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the gateway at {gateway}: {e}"))?;
        anyhow::ensure!(
            response.status().is_success(),
            "{url} answered {}: is {gateway} an LLM gateway of this kind?",
            response.status()
        );
        response
            .json()
            .await
            .map_err(|e| anyhow::anyhow!("{url} is not a gateway document: {e}"))
    }
}

/// The handler: built per request from the config and the ledger's rate history (cheap, and
/// never stale).
pub async fn well_known(State(state): State<Arc<AppState>>) -> Result<Json<GatewayInfo>, ApiError> {
    let mut info = GatewayInfo::of(&state.config);
    info.x402 = state.x402.as_deref().map(crate::x402::X402::describe);
    let own = state.nostr.keys.public_key().to_hex();
    if !info.nostr.proxies.contains(&own) {
        info.nostr.proxies.insert(0, own);
    }
    info.rates = rate_history(&state.ledger).await?;
    Ok(Json(info))
}

/// The rate periods recorded in the ledger, as published (a period whose stored rates do not
/// parse is skipped: it was written by a newer version).
pub async fn rate_history(ledger: &ledger::Ledger) -> Result<Vec<RatePeriod>, ApiError> {
    Ok(ledger
        .rate_periods()
        .await?
        .into_iter()
        .filter_map(|period| {
            let rates = serde_json::from_value(period.rates).ok()?;
            Some(RatePeriod {
                since: period.since,
                rates,
            })
        })
        .collect())
}
