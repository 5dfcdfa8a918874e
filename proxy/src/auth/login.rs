//! `POST /v1/auth/nonce` and `POST /v1/auth/login`: the wallet-login exchange.
use super::{session::login_message, verify_wallet_signature};
use crate::error::ApiJson;
use crate::{error::ApiError, state::AppState};
use axum::{extract::State, Json};
use indexer::ledger::now;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Deserialize)]
pub struct NonceRequest {
    pub wallet: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct NonceResponse {
    pub nonce: String,
    /// The exact text to sign with the wallet.
    pub message: String,
    pub expires_at: i64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LoginRequest {
    pub wallet: String,
    pub nonce: String,
    /// base58 ed25519 signature of the nonce's message.
    pub signature: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LoginResponse {
    pub token: String,
    pub expires_at: i64,
}

fn check_wallet(wallet: &str) -> Result<(), ApiError> {
    match bs58::decode(wallet).into_vec() {
        Ok(bytes) if bytes.len() == 32 => Ok(()),
        _ => Err(ApiError::BadRequest(format!(
            "wallet must be a base58 Solana address, got {wallet:?}"
        ))),
    }
}

pub async fn nonce(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<NonceRequest>,
) -> Result<Json<NonceResponse>, ApiError> {
    check_wallet(&request.wallet)?;
    state
        .limiter
        .admit(&format!("login:{}", request.wallet), None)?;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    let nonce = bs58::encode(bytes).into_string();
    let expires_at = state
        .ledger
        .issue_login_nonce(&nonce, &request.wallet, state.config.auth.nonce_ttl_seconds)
        .await?;
    Ok(Json(NonceResponse {
        message: login_message(&state.config.auth.realm, &request.wallet, &nonce),
        nonce,
        expires_at,
    }))
}

pub async fn login(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    check_wallet(&request.wallet)?;
    let message = login_message(&state.config.auth.realm, &request.wallet, &request.nonce);
    if !verify_wallet_signature(&request.wallet, message.as_bytes(), &request.signature) {
        return Err(ApiError::Unauthorized(
            "the signature does not match this wallet and nonce".into(),
        ));
    }
    if !state
        .ledger
        .consume_login_nonce(&request.nonce, &request.wallet)
        .await?
    {
        return Err(ApiError::Unauthorized(
            "unknown, expired or already used nonce; ask for a new one".into(),
        ));
    }
    let expires_at = now() + state.config.auth.token_ttl_seconds;
    Ok(Json(LoginResponse {
        token: state.auth.tokens().issue(&request.wallet, expires_at),
        expires_at,
    }))
}
