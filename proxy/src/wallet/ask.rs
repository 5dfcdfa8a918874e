//! `proxy ask`: one chat completion paid with x402's `escrow` scheme from the wallet's token
//! vault, no login. The gateway's 402 names the request's worst case; the wallet signs the
//! program's authorisation of exactly that (its current nonce, a deadline the offer allows),
//! the gateway locks it, answers, and settles only what the answer cost — the rest never
//! leaves the vault.
use super::{Session, WalletArgs};
use crate::x402::wire::{
    self, escrow_extra_data_hex, PaymentRequired, Requirements, SettleResponse, ESCROW_EXTRA_DATA,
    ESCROW_SCHEME,
};
use anyhow::Context;
use balance_payment::{
    authorization::{Asset, AuthorizationTerms},
    sdk::authorization::sign_authorization,
};
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};
use solana_sdk::{pubkey::Pubkey, signature::Signer};
use std::str::FromStr;

/// Seconds of slack on top of the deadline the offer asks for: the clocks may differ.
const DEADLINE_SLACK: i64 = 60;

/// What to ask.
pub struct Question {
    pub prompt: String,
    pub model: String,
    pub max_tokens: u64,
}

/// Asks `question`, paying with the escrow scheme; prints the answer and what was locked.
pub async fn run(args: &WalletArgs, question: &Question) -> anyhow::Result<()> {
    let session = Session::open(args, true).await?;
    let url = format!("{}/v1/chat/completions", args.gateway.trim_end_matches('/'));
    let body = json!({
        "model": question.model,
        "max_tokens": question.max_tokens,
        "messages": [{"role": "user", "content": question.prompt}],
    });
    let offer = escrow_offer(&session, &url, &body).await?;
    let payment = authorize(&session, &offer).await?;
    let answer = session
        .http
        .post(&url)
        .header(wire::PAYMENT_SIGNATURE, payment)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach the gateway at {url}"))?;
    let status = answer.status();
    let receipt = answer
        .headers()
        .get(wire::PAYMENT_RESPONSE)
        .and_then(|value| value.to_str().ok())
        .and_then(wire::decode::<SettleResponse>);
    let reply: Value = answer.json().await.context("the answer is not JSON")?;
    anyhow::ensure!(
        status.is_success(),
        "the gateway answered {status}: {reply}"
    );
    let text = reply["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or("");
    println!("{text}");
    if let Some(receipt) = receipt {
        eprintln!(
            "locked {} base units of {} (transaction {}); only what this answer cost is settled, \
             the rest stays in your vault",
            offer.amount, offer.asset, receipt.transaction
        );
    }
    Ok(())
}

/// The gateway's escrow offer for `body` (asked without credentials: the 402).
async fn escrow_offer(session: &Session, url: &str, body: &Value) -> anyhow::Result<Requirements> {
    let response = session.http.post(url).json(body).send().await?;
    let status = response.status();
    let offers = response
        .headers()
        .get(wire::PAYMENT_REQUIRED)
        .and_then(|value| value.to_str().ok())
        .and_then(wire::decode::<PaymentRequired>);
    let Some(offers) = offers else {
        let text = response.text().await.unwrap_or_default();
        anyhow::bail!("the gateway made no x402 offer ({status}): {text}");
    };
    offers
        .accepts
        .into_iter()
        .find(|offer| offer.scheme == ESCROW_SCHEME)
        .context("the gateway does not take the escrow scheme (no escrow_bot_keypair_file)")
}

/// The wallet's authorisation of `offer`, as a `PAYMENT-SIGNATURE`. The terms are checked
/// against the chain, not taken from the gateway: the program, the cluster, the nonce.
async fn authorize(session: &Session, offer: &Requirements) -> anyhow::Result<String> {
    let extra = &offer.extra;
    anyhow::ensure!(
        extra["program"].as_str() == Some(&balance_payment::ID.to_string()),
        "the offer is for another program: {}",
        extra["program"]
    );
    let cluster = session
        .client
        .global()
        .await?
        .context("the program is not initialised on this cluster")?
        .cluster;
    anyhow::ensure!(
        extra["cluster"].as_str() == Some(&Pubkey::new_from_array(cluster).to_string()),
        "the offer is for another cluster: {}",
        extra["cluster"]
    );
    let namespace_id = extra["namespaceId"]
        .as_u64()
        .context("the offer names no namespace")?;
    let min_lock = extra["minLockSeconds"].as_i64().unwrap_or(0);
    let mint = Pubkey::from_str(&offer.asset).context("the offer's asset is not a mint")?;
    let max_amount: u64 = offer.amount.parse().context("the offer's amount")?;
    let user = session.keypair.pubkey();
    let nonce = session.client.user_account(&user).await?.nonce;
    let terms = AuthorizationTerms {
        program_id: balance_payment::ID,
        cluster,
        namespace_id,
        user,
        nonce,
        max_amount,
        asset: Asset::Token(mint),
        deadline: ledger::now() + min_lock + DEADLINE_SLACK,
        extra_data: *ESCROW_EXTRA_DATA,
    };
    let info = sign_authorization(
        &SigningKey::from_bytes(session.keypair.secret_bytes()),
        &terms,
    );
    Ok(wire::encode(&json!({
        "x402Version": wire::VERSION,
        "accepted": offer,
        "payload": {
            "user": user.to_string(),
            "nonce": nonce.to_string(),
            "maxAmount": max_amount.to_string(),
            "deadline": info.deadline,
            "extraData": escrow_extra_data_hex(),
            "signature": bs58::encode(info.signature).into_string(),
        },
    })))
}
