//! `POST /v1/auth/revoke`: a wallet revokes one of its delegated keys. The body carries the key
//! and the wallet's signature over the revocation text (naming the key's id and this gateway's
//! audience); the revocation is stored in the ledger, where every replica's hold checks it.
//! `POST /v1/auth/logout`: a session ends itself the same way, under its id (a hash of it).
use super::{
    delegated::{self, KeyError},
    extract::Auth,
};
use crate::{
    error::{ApiError, ApiJson},
    state::AppState,
};
use axum::{extract::State, Json};
use ledger::{now, KeyRevocation};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Body of `POST /v1/auth/revoke`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RevokeRequest {
    /// The delegated key (`dk1.…`) to revoke.
    pub key: String,
    /// base58 signature by the key's wallet over
    /// `"LLM gateway key revocation\naudience: <audience>\nkey: <key_id>"`.
    pub signature: String,
}

/// What was revoked.
#[derive(Debug, Serialize, Deserialize)]
pub struct RevokeResponse {
    pub key_id: String,
    pub revoked: bool,
    /// False when the key had been revoked before.
    pub newly_revoked: bool,
}

/// Verifies the key and its wallet's revocation, then records it in the ledger.
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<RevokeRequest>,
) -> Result<Json<RevokeResponse>, ApiError> {
    let key =
        delegated::verify_signed(&request.key, state.auth.audience()).map_err(|e| match e {
            KeyError::Malformed(_) => ApiError::BadRequest(e.to_string()),
            _ => ApiError::Unauthorized(e.to_string()),
        })?;
    delegated::verify_revocation(&key, &request.signature)
        .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
    // Counted only once the wallet signed, so a stranger holding the key cannot use up the
    // owner's allowance and delay the revocation.
    state
        .limiter
        .admit(&format!("revoke:{}", key.claims.user))?;
    let newly_revoked = state
        .ledger
        .revoke_key(
            &KeyRevocation {
                key_id: &key.key_id,
                user: &key.claims.user,
                expires_at: key.claims.expires_at,
            },
            now(),
        )
        .await?;
    state.auth.forget(&request.key);
    tracing::info!(key_id = %key.key_id, user = %key.claims.user, "delegated key revoked");
    Ok(Json(RevokeResponse {
        key_id: key.key_id,
        revoked: true,
        newly_revoked,
    }))
}

/// What logging out did.
#[derive(Debug, Serialize, Deserialize)]
pub struct LogoutResponse {
    pub logged_out: bool,
}

/// Ends the calling session on every replica: its id is stored as revoked until the token
/// would have expired, and every hold and balance read checks it.
pub async fn logout(
    State(state): State<Arc<AppState>>,
    Auth(caller): Auth,
) -> Result<Json<LogoutResponse>, ApiError> {
    let Some(session) = &caller.session else {
        return Err(ApiError::BadRequest(
            "only a session token (gws1.…) logs out; a delegated key is revoked with \
             POST /v1/auth/revoke"
                .into(),
        ));
    };
    state
        .ledger
        .revoke_key(
            &KeyRevocation {
                key_id: session,
                user: &caller.user,
                expires_at: caller.expires_at,
            },
            now(),
        )
        .await?;
    tracing::info!(user = %caller.user, "session logged out");
    Ok(Json(LogoutResponse { logged_out: true }))
}
