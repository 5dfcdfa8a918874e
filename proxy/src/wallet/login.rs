//! Wallet login from the command line: ask the gateway for a nonce, check that the text to
//! sign is a login text for this wallet (and audience), sign it, trade it for a bearer token.
use crate::auth::{
    login::{LoginRequest, LoginResponse, NonceResponse},
    session::parse_login_message,
};
use anyhow::Context;
use ed25519_dalek::{Signer as _, SigningKey};
use solana_sdk::signature::{Keypair, Signer};

/// A bearer token for `keypair` at `gateway`. With `audience`, refuses to sign unless the
/// gateway names it: a text for another deployment is never signed.
pub async fn login(
    http: &reqwest::Client,
    gateway: &str,
    keypair: &Keypair,
    audience: Option<&str>,
) -> anyhow::Result<String> {
    let gateway = gateway.trim_end_matches('/');
    let wallet = keypair.pubkey().to_string();
    let nonce: NonceResponse = http
        .post(format!("{gateway}/v1/auth/nonce"))
        .json(&serde_json::json!({ "wallet": wallet }))
        .send()
        .await
        .with_context(|| format!("cannot reach the gateway at {gateway}"))?
        .error_for_status()?
        .json()
        .await?;
    let text = parse_login_message(&nonce.message)
        .context("the gateway's text to sign is not a login text")?;
    anyhow::ensure!(
        text.wallet == wallet && text.nonce == nonce.nonce,
        "the gateway's login text names another wallet or nonce"
    );
    if let Some(audience) = audience {
        anyhow::ensure!(
            text.audience == audience,
            "the gateway names the audience {:?}, not {audience:?}",
            text.audience
        );
    }
    let signature = SigningKey::from_bytes(keypair.secret_bytes()).sign(nonce.message.as_bytes());
    let login: LoginResponse = http
        .post(format!("{gateway}/v1/auth/login"))
        .json(&LoginRequest {
            wallet,
            nonce: nonce.nonce,
            signature: bs58::encode(signature.to_bytes()).into_string(),
        })
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(login.token)
}

/// The caller's ledger balance at `gateway` (`GET /v1/balance`).
pub async fn ledger_balance(
    http: &reqwest::Client,
    gateway: &str,
    token: &str,
) -> anyhow::Result<serde_json::Value> {
    Ok(http
        .get(format!("{}/v1/balance", gateway.trim_end_matches('/')))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}
