//! x402 v2: agents pay per request in a token, with the standard clients (`@x402/fetch` with
//! `@x402/svm`, Python `x402`) unchanged.
//!
//! A chat request without credentials, or whose balance is short, is answered 402 with a
//! `PAYMENT-REQUIRED` offer: scheme `exact`, the request's worst-case price in the configured
//! token, to the namespace treasury, with the gateway as fee payer. The client retries with
//! `PAYMENT-SIGNATURE`: a transfer it signed. The gateway is its own facilitator by default:
//! it checks the transaction ([`verify`]), claims it in the ledger (so replicas send it once
//! and credit it once), co-signs, submits, waits for it to land ([`chain`]), credits the
//! payer's balance with what it is worth, and serves the request from that balance. With
//! `facilitator_url` an external facilitator co-signs and submits instead ([`facilitator`]);
//! the checks, the claim and the credit from the chain's answer stay the gateway's. What the
//! request does not use stays in the balance, usable later with a login or a delegated key;
//! `PAYMENT-RESPONSE` says so. A payment pays for one request: a replay, or a copy sent
//! concurrently, is refused.
pub mod chain;
pub mod escrow;
pub mod facilitator;
mod pay;
mod remote;
pub mod verify;
pub mod wire;

use crate::config::{Config, ConfigError, X402Config};
use balance_payment::sdk::spl;
use chain::{Chain, Landing};
use common::assets::{parse_tokens, price_in_units, TokenRate};
use facilitator::Facilitator;
use ledger::Ledger;
use serde_json::json;
use solana_commitment_config::CommitmentConfig;
use solana_sdk::{
    hash::Hash,
    pubkey::Pubkey,
    signature::{read_keypair_file, Keypair, Signature},
    signer::Signer,
};
use std::{str::FromStr, time::Duration};
use wire::{PaymentRequired, Requirements, Resource, X402Info, X402Offer};

pub use pay::Settled;

pub use wire::SCHEME;

/// The x402 front end, as configured and checked against the chain at start.
pub struct X402 {
    /// CAIP-2 id offers name.
    pub network: String,
    /// The token offers are in, and what a base unit of it buys.
    pub asset: TokenRate,
    /// The owner of the account payments go to (the namespace treasury by default).
    pub pay_to: Pubkey,
    /// `pay_to`'s token account of the asset: where payments must go.
    pub destination: Pubkey,
    settler: Settler,
    /// How long a client has to pay an offer, and a payment to land before "pending".
    pub max_timeout: Duration,
    chain: Chain,
    namespace_id: u64,
    resource: String,
    /// The `escrow` scheme, when the gateway holds the namespace's bot key.
    escrow: Option<escrow::Escrow>,
}

/// Who co-signs payments as fee payer and submits them.
enum Settler {
    /// The gateway, with this key.
    Own(Keypair),
    /// An external facilitator, whose fee payer is `fee_payer`.
    Facilitator {
        facilitator: Facilitator,
        fee_payer: Pubkey,
    },
}

impl Settler {
    /// The gateway with its fee-payer key, or the facilitator at its URL: one of the two.
    async fn connect(section: &X402Config, network: &str) -> Result<Self, String> {
        match (&section.facilitator_url, &section.fee_payer_keypair_file) {
            (Some(_), Some(_)) => Err("set facilitator_url or fee_payer_keypair_file, not both: \
                 the fee payer is the facilitator's or the gateway's"
                .into()),
            (Some(url), None) => {
                let (facilitator, fee_payer) = Facilitator::connect(url, network).await?;
                Ok(Settler::Facilitator {
                    facilitator,
                    fee_payer,
                })
            }
            (None, Some(file)) => read_keypair_file(file)
                .map(Settler::Own)
                .map_err(|e| format!("fee_payer_keypair_file {}: {e}", file.display())),
            (None, None) => Err(
                "needs fee_payer_keypair_file (the gateway co-signs payments) \
                 or facilitator_url (a facilitator does)"
                    .into(),
            ),
        }
    }
}

impl X402 {
    /// Reads `[x402]` (off unless `asset` is set), the fee payer's key, and what the chain
    /// says (the network's genesis hash, the namespace's treasury) unless configured.
    pub async fn connect(config: &Config) -> Result<Option<Self>, ConfigError> {
        let section = &config.x402;
        let Some(asset) = &section.asset else {
            return Ok(None);
        };
        let invalid = |message: String| ConfigError::Invalid(format!("x402: {message}"));
        let rates = parse_tokens("tokens", &config.tokens)?;
        let asset = rates
            .into_iter()
            .find(|rate| rate.mint.to_string() == *asset)
            .ok_or_else(|| invalid(format!("asset {asset} is not one of [[tokens]]")))?;
        let rpc_url = section
            .rpc_url
            .as_ref()
            .or(config.chain.rpc_url.as_ref())
            .ok_or_else(|| invalid("needs x402.rpc_url or chain.rpc_url".into()))?;
        let commitment = match section.commitment.as_deref() {
            None | Some("confirmed") => CommitmentConfig::confirmed(),
            Some("finalized") => CommitmentConfig::finalized(),
            Some(other) => {
                return Err(invalid(format!(
                    "commitment must be confirmed or finalized, not {other}"
                )))
            }
        };
        let chain = Chain::new(rpc_url, commitment);
        let unreachable = |e: &dyn std::fmt::Display| {
            invalid(format!("the RPC at {rpc_url} did not answer: {e}"))
        };
        let network = match &section.network {
            Some(network) if network.starts_with("solana:") && network.len() > 7 => network.clone(),
            Some(other) => {
                return Err(invalid(format!("network must be solana:<id>, not {other}")))
            }
            None => {
                let genesis = chain
                    .rpc()
                    .get_genesis_hash()
                    .await
                    .map_err(|e| unreachable(&e))?;
                caip2(&genesis)
            }
        };
        let pay_to = match &section.pay_to {
            Some(pay_to) => Pubkey::from_str(pay_to)
                .map_err(|_| invalid(format!("pay_to is not an address: {pay_to}")))?,
            None => {
                common::chain::client::ProgramClient::new(rpc_url)
                    .require_namespace(config.chain.namespace_id)
                    .await
                    .map_err(|e| unreachable(&e))?
                    .treasury
            }
        };
        check_mint(&chain, &asset).await.map_err(invalid)?;
        let settler = Settler::connect(section, &network).await.map_err(invalid)?;
        let escrow = match &section.escrow_bot_keypair_file {
            None => None,
            Some(file) => Some(
                escrow::Escrow::connect(
                    file,
                    rpc_url,
                    config.chain.namespace_id,
                    &asset,
                    Duration::from_secs(config.limits.request_timeout_seconds),
                )
                .await
                .map_err(|e| invalid(format!("escrow: {e}")))?,
            ),
        };
        let destination = spl::associated_token_address(&pay_to, &asset.mint, &asset.token_program);
        let audience = config.audience();
        let resource = match audience.starts_with("http") {
            true => format!("{}/v1/chat/completions", audience.trim_end_matches('/')),
            false => "/v1/chat/completions".to_owned(),
        };
        Ok(Some(Self {
            network,
            asset,
            pay_to,
            destination,
            settler,
            max_timeout: Duration::from_secs(section.max_timeout_seconds.unwrap_or(60).max(1)),
            chain,
            namespace_id: config.chain.namespace_id,
            resource,
            escrow,
        }))
    }

    /// The fee payer payments are co-signed with (the gateway's or its facilitator's).
    pub fn fee_payer(&self) -> Pubkey {
        match &self.settler {
            Settler::Own(keypair) => keypair.pubkey(),
            Settler::Facilitator { fee_payer, .. } => *fee_payer,
        }
    }

    /// Base units of the asset that buy `tokens` ledger tokens, rounded up.
    pub fn units_for(&self, tokens: i64) -> u64 {
        price_in_units(
            u64::try_from(tokens.max(1)).unwrap_or(u64::MAX),
            self.asset.tokens_per_unit,
            self.asset.decimals,
        )
    }

    /// The `exact` offer for a request whose worst case is `tokens`.
    pub fn offer(&self, tokens: i64) -> Requirements {
        Requirements {
            scheme: SCHEME.into(),
            network: self.network.clone(),
            amount: self.units_for(tokens).to_string(),
            asset: self.asset.mint.to_string(),
            pay_to: self.pay_to.to_string(),
            max_timeout_seconds: self.max_timeout.as_secs(),
            extra: json!({ "feePayer": self.fee_payer().to_string() }),
        }
    }

    /// The `PAYMENT-REQUIRED` answer for a request whose worst case is `tokens`, with why the
    /// last payment was refused, if one was.
    pub fn required(&self, tokens: i64, error: Option<&str>) -> PaymentRequired {
        PaymentRequired {
            x402_version: wire::VERSION,
            error: error.map(str::to_owned),
            resource: Resource {
                url: self.resource.clone(),
                description: "LLM gateway: one chat completion; the rest of the payment stays in \
                              the balance of the wallet that paid"
                    .into(),
                mime_type: "application/json".into(),
            },
            accepts: std::iter::once(self.offer(tokens))
                .chain(self.escrow_offer(tokens))
                .collect(),
        }
    }

    /// Adds the offer for a request whose worst case is `tokens` to a 402 answered otherwise
    /// (a balance that falls short): paying it tops the balance up and serves the request.
    pub fn attach_offer(&self, response: &mut axum::response::Response, tokens: i64) {
        let encoded = wire::encode(&self.required(tokens, None));
        if let Ok(value) = axum::http::HeaderValue::from_str(&encoded) {
            response.headers_mut().insert(wire::PAYMENT_REQUIRED, value);
        }
    }

    /// What `/.well-known/llm-gateway` says about paying with x402.
    pub fn describe(&self) -> X402Info {
        X402Info {
            version: wire::VERSION,
            network: self.network.clone(),
            endpoints: vec!["/v1/chat/completions".into()],
            accepts: std::iter::once((SCHEME, self.pay_to, self.fee_payer()))
                .chain(
                    self.escrow
                        .as_ref()
                        .map(|escrow| (wire::ESCROW_SCHEME, escrow.treasury, escrow.redeemer.bot)),
                )
                .map(|(scheme, pay_to, fee_payer)| X402Offer {
                    scheme: scheme.into(),
                    asset: self.asset.mint.to_string(),
                    decimals: self.asset.decimals,
                    pay_to: pay_to.to_string(),
                    fee_payer: fee_payer.to_string(),
                    max_timeout_seconds: self.max_timeout.as_secs(),
                })
                .collect(),
        }
    }

    /// Settles payments whose request was lost (a crash, a client gone while it waited) from
    /// the chain's answer: one that landed is credited to its payer's balance, one that can no
    /// longer land is marked failed; the rest wait for the next pass. Returns how many settled.
    pub async fn sweep(&self, ledger: &Ledger, now: i64) -> Result<usize, ledger::LedgerError> {
        // Well after a request gives up waiting: a live request settles its own payment.
        let grace = i64::try_from(self.max_timeout.as_secs()).unwrap_or(i64::MAX) + 30;
        let mut settled = 0;
        for unsettled in ledger.x402_unsettled(now.saturating_sub(grace)).await? {
            let payment = &unsettled.payment;
            let (Ok(signature), Ok(blockhash)) = (
                Signature::from_str(&payment.signature),
                Hash::from_str(&payment.blockhash),
            ) else {
                continue;
            };
            let landing = match self.chain.status(&signature, &blockhash, true).await {
                Landing::Landed { slot } => Ok((signature, slot)),
                Landing::Refused(reason) => Err(Landing::Refused(reason)),
                // Not found by its claim: claimed by the payer's signature (a facilitator
                // settles it), or never sent. The history of the account it moves tokens out
                // of (the payer's own, short) has it if it landed — the treasury's, for rows
                // claimed before sources were recorded; if not, it fails once its blockhash
                // has expired.
                unsure => match self
                    .chain
                    .find(
                        &signature,
                        &Pubkey::from_str(&payment.source).unwrap_or(self.destination),
                        unsettled.claimed_at,
                    )
                    .await
                {
                    Ok(Some(landed)) => Ok(landed),
                    Ok(None) => Err(unsure),
                    Err(_) => continue,
                },
            };
            match landing {
                Ok((transaction, slot)) => {
                    if ledger
                        .x402_credit(
                            &payment.signature,
                            &transaction.to_string(),
                            slot,
                            self.namespace_id,
                            None,
                        )
                        .await?
                    {
                        tracing::info!(transaction = %payment.signature, payer = %payment.payer,
                            "an x402 payment whose request was lost is credited to its payer");
                        settled += 1;
                    }
                }
                Err(Landing::Refused(_) | Landing::Expired) => {
                    if ledger.x402_fail(&payment.signature).await? {
                        tracing::info!(transaction = %payment.signature,
                            "an x402 payment whose request was lost never landed");
                        settled += 1;
                    }
                }
                Err(_) => {}
            }
        }
        Ok(settled)
    }
}

/// Refuses an asset whose mint on chain is not what `[[tokens]]` says (program, decimals), or
/// that no recipient can rely on (a transfer fee, a transfer hook, a permanent delegate):
/// a payment is credited at the amount it transfers.
async fn check_mint(chain: &Chain, asset: &TokenRate) -> Result<(), String> {
    let mint = asset.mint;
    let account = chain
        .rpc()
        .get_account(&mint)
        .await
        .map_err(|e| format!("asset {mint} could not be read from the chain: {e}"))?;
    let info = spl::decode_mint(&account.owner, &account.data)
        .ok_or_else(|| format!("asset {mint} is not a mint of SPL Token or Token-2022"))?;
    if info.token_program != asset.token_program || info.decimals != asset.decimals {
        return Err(format!(
            "asset {mint} is a mint of {} with {} decimals on chain; [[tokens]] says {} with {}",
            info.token_program, info.decimals, asset.token_program, asset.decimals
        ));
    }
    match spl::refused_extension(&account.owner, &account.data) {
        Some(extension) => Err(format!(
            "asset {mint} has {extension}: a payment could not be credited at what it transfers"
        )),
        None => Ok(()),
    }
}

/// The CAIP-2 id of the cluster with `genesis`: `solana:` and its first 32 characters.
pub fn caip2(genesis: &Hash) -> String {
    let text = genesis.to_string();
    format!("solana:{}", &text[..text.len().min(32)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_is_named_by_its_genesis_hash_prefix() {
        // Devnet's genesis hash, and its id as the x402 clients know it.
        let devnet = Hash::from_str("EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG").unwrap();
        assert_eq!(caip2(&devnet), "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1");
    }
}
