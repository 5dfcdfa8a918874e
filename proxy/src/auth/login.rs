//! `POST /v1/auth/nonce` and `POST /v1/auth/login`: the wallet-login exchange. Issuing a nonce
//! writes nothing (it is an HMAC, see `nonce.rs`), so an unauthenticated flood costs the ledger
//! nothing; a login, authenticated by the wallet's signature, records its nonce as used.
use super::{nonce::RANDOM_BYTES, session::login_message, signature::verify_wallet_signature};
use crate::error::ApiJson;
use crate::{error::ApiError, state::AppState};
use axum::{extract::State, Json};
use ledger::now;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Body of `POST /v1/auth/nonce`.
#[derive(Debug, Deserialize)]
pub struct NonceRequest {
    pub wallet: String,
}

/// A nonce and the exact text the wallet signs with it.
#[derive(Debug, Serialize, Deserialize)]
pub struct NonceResponse {
    pub nonce: String,
    /// The exact text to sign with the wallet.
    pub message: String,
    pub expires_at: i64,
    /// The gateway the text names (its `auth.audience`); delegated keys must name it too.
    pub audience: String,
}

/// Body of `POST /v1/auth/login`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoginRequest {
    pub wallet: String,
    pub nonce: String,
    /// base58 ed25519 signature of the nonce's message.
    pub signature: String,
}

/// A session token for the wallet.
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

/// Hands out a fresh nonce and the text to sign; touches no database and no shared state.
pub async fn nonce(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<NonceRequest>,
) -> Result<Json<NonceResponse>, ApiError> {
    check_wallet(&request.wallet)?;
    // No per-wallet limit: a nonce costs one HMAC, and a limit keyed by a wallet anyone can
    // name would let a stranger lock its owner out of logging in.
    let mut random = [0u8; RANDOM_BYTES];
    rand::thread_rng().fill_bytes(&mut random);
    let expires_at = now().saturating_add(state.config.auth.nonce_ttl_seconds);
    let nonce = state
        .auth
        .nonces()
        .issue(&request.wallet, expires_at, random);
    let audience = state.auth.audience().to_owned();
    Ok(Json(NonceResponse {
        message: login_message(&state.config.auth.realm, &audience, &request.wallet, &nonce),
        nonce,
        expires_at,
        audience,
    }))
}

/// Exchanges a signed login text for a session token, once per nonce across all replicas.
pub async fn login(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    check_wallet(&request.wallet)?;
    let now = now();
    let nonce_expires_at = state
        .auth
        .nonces()
        .check(&request.nonce, &request.wallet, now)
        .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
    let message = login_message(
        &state.config.auth.realm,
        state.auth.audience(),
        &request.wallet,
        &request.nonce,
    );
    if !verify_wallet_signature(&request.wallet, message.as_bytes(), &request.signature) {
        return Err(ApiError::Unauthorized(
            "the signature does not match this wallet, nonce and gateway".into(),
        ));
    }
    if !state
        .ledger
        .use_login_nonce(&request.nonce, &request.wallet, nonce_expires_at, now)
        .await?
    {
        return Err(ApiError::Unauthorized(
            "this nonce was already used; ask for a new one".into(),
        ));
    }
    let expires_at = now.saturating_add(state.config.auth.token_ttl_seconds);
    Ok(Json(LoginResponse {
        token: state.auth.tokens().issue(&request.wallet, expires_at),
        expires_at,
    }))
}
