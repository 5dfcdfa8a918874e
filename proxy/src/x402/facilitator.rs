//! An external x402 facilitator (`x402.facilitator_url`): it co-signs payments as fee payer
//! and submits them, so the gateway holds no fee-payer key. The gateway still checks every
//! payment itself before passing it on, claims it in the ledger (by the payer's signature:
//! the transaction's id is the facilitator's signature, unknown until it signs), and credits
//! only what its own RPC shows landed — a facilitator's word that a payment settled is not a
//! credit.
use super::wire::{self, Requirements};
use serde::Deserialize;
use serde_json::{json, Value};
use solana_sdk::{pubkey::Pubkey, signature::Signature};
use std::{str::FromStr, time::Duration};

/// How long `/supported` may take at start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Reason codes a facilitator's refusal is passed on with; any other is `settlement_refused`
/// (the facilitator's own code is in the message).
pub const KNOWN_REASONS: &[&str] = &[
    "insufficient_funds",
    "invalid_exact_svm_payload_transaction_simulation_failed",
    "invalid_exact_svm_transaction_failed",
    "invalid_exact_svm_payload_amount_mismatch",
    "invalid_exact_svm_payload_mint_mismatch",
    "invalid_exact_svm_payload_recipient_mismatch",
    "invalid_exact_svm_payload_signature_invalid",
    "invalid_exact_svm_fee_payer_not_managed_by_facilitator",
    "invalid_network",
    "invalid_payload",
    "invalid_scheme",
    "transaction_failed",
];

/// A facilitator's HTTP API (`/supported`, `/settle`).
pub struct Facilitator {
    http: reqwest::Client,
    url: String,
}

/// What a facilitator answered to `/settle`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// It sent transaction `0` (landed or not: the chain says).
    Sent(Signature),
    /// It refused and sent nothing, saying why.
    Refused { reason: String, message: String },
}

#[derive(Deserialize)]
struct Supported {
    kinds: Vec<Kind>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Kind {
    x402_version: u8,
    scheme: String,
    network: String,
    #[serde(default)]
    extra: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SettleAnswer {
    success: bool,
    #[serde(default)]
    error_reason: Option<String>,
    #[serde(default)]
    error_message: Option<String>,
    #[serde(default)]
    transaction: String,
}

impl Facilitator {
    /// Asks the facilitator at `url` what it settles; returns it with the fee payer it signs
    /// `exact` payments on `network` with. Refuses one that does not settle them.
    pub async fn connect(url: &str, network: &str) -> Result<(Self, Pubkey), String> {
        let url = url.trim_end_matches('/').to_owned();
        let http = reqwest::Client::new();
        let response = http
            .get(format!("{url}/supported"))
            .timeout(CONNECT_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("{url}/supported did not answer: {e}"))?;
        let supported: Supported = response
            .error_for_status()
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| format!("{url}/supported is not an x402 supported list: {e}"))?;
        let fee_payer = supported
            .kinds
            .iter()
            .find(|kind| {
                kind.x402_version == wire::VERSION
                    && kind.scheme == wire::SCHEME
                    && kind.network == network
            })
            .and_then(|kind| kind.extra["feePayer"].as_str())
            .and_then(|fee_payer| Pubkey::from_str(fee_payer).ok())
            .ok_or_else(|| {
                format!(
                    "{url} does not settle x402 v2 `exact` payments on {network} with a fee payer"
                )
            })?;
        Ok((Self { http, url }, fee_payer))
    }

    /// Asks the facilitator to settle `payload` (the client's payment, as sent) against
    /// `requirements`, waiting at most `timeout`. `Err` when it did not answer usably: the
    /// payment may still land.
    pub async fn settle(
        &self,
        payload: &Value,
        requirements: &Requirements,
        timeout: Duration,
    ) -> Result<Settlement, String> {
        let response = self
            .http
            .post(format!("{}/settle", self.url))
            .timeout(timeout)
            .json(&json!({
                "x402Version": wire::VERSION,
                "paymentPayload": payload,
                "paymentRequirements": requirements,
            }))
            .send()
            .await
            .map_err(|e| format!("the facilitator did not answer: {e}"))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        let answer: SettleAnswer = serde_json::from_str(&text).map_err(|_| {
            format!(
                "the facilitator answered {status}: {}",
                text.chars().take(200).collect::<String>()
            )
        })?;
        if !answer.transaction.is_empty() {
            return Signature::from_str(&answer.transaction)
                .map(Settlement::Sent)
                .map_err(|_| format!("the facilitator named no transaction: {text}"));
        }
        if answer.success {
            return Err("the facilitator said it settled but named no transaction".into());
        }
        Ok(Settlement::Refused {
            reason: answer.error_reason.unwrap_or_default(),
            message: answer.error_message.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{routing::get, Json, Router};

    const DEVNET: &str = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1";

    /// A facilitator whose `/supported` answers `kinds`.
    async fn supporting(kinds: Value) -> String {
        let app = Router::new().route(
            "/supported",
            get(move || async move { Json(json!({ "kinds": kinds })) }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test]
    async fn the_fee_payer_is_the_one_the_facilitator_names_for_this_network() {
        let fee_payer = Pubkey::new_unique();
        let url = supporting(json!([
            {"x402Version": 1, "scheme": "exact", "network": "solana-devnet",
             "extra": {"feePayer": Pubkey::new_unique().to_string()}},
            {"x402Version": 2, "scheme": "exact", "network": DEVNET,
             "extra": {"feePayer": fee_payer.to_string()}},
        ]))
        .await;
        let (_, named) = Facilitator::connect(&url, DEVNET).await.unwrap();
        assert_eq!(named, fee_payer);
    }

    #[tokio::test]
    async fn a_facilitator_that_does_not_settle_the_network_or_does_not_answer_is_refused() {
        let url = supporting(json!([
            {"x402Version": 2, "scheme": "exact", "network": "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
             "extra": {"feePayer": Pubkey::new_unique().to_string()}},
        ]))
        .await;
        let error = Facilitator::connect(&url, DEVNET).await.err().unwrap();
        assert!(error.contains("does not settle"), "{error}");
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let error = Facilitator::connect(&gone, DEVNET).await.err().unwrap();
        assert!(error.contains("did not answer"), "{error}");
    }
}
