//! The authenticated caller as a handler argument, from the gateway's state: [`Auth`] (the
//! cached verdict) and [`LiveAuth`] (with a delegated key's revocation read from the ledger).
use super::Caller;
use crate::{error::ApiError, state::AppState};
use axum::{extract::FromRequestParts, http::request::Parts};
use std::sync::Arc;

/// The authenticated caller, as a handler argument. A revoked delegated key passes here (the
/// verdict is cached) and is refused by the ledger when it tries to hold a spend.
pub struct Auth(pub Arc<Caller>);

impl FromRequestParts<Arc<AppState>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer header".into()))?;
        let credential = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::Unauthorized("expected Authorization: Bearer <token>".into())
            })?;
        state.auth.authenticate(credential, ledger::now()).map(Auth)
    }
}

/// The authenticated caller, with a delegated key's revocation (or a session's logout) checked
/// in the ledger: for endpoints that take no hold (balance, usage), where nothing else would
/// refuse it.
pub struct LiveAuth(pub Arc<Caller>);

impl FromRequestParts<Arc<AppState>> for LiveAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let Auth(caller) = Auth::from_request_parts(parts, state).await?;
        if let Some(key) = &caller.key {
            if state.ledger.key_revoked(&key.key_id).await? {
                return Err(ledger::LedgerError::KeyRevoked.into());
            }
        }
        if let Some(session) = &caller.session {
            if state.ledger.key_revoked(session).await? {
                return Err(ledger::LedgerError::SessionRevoked.into());
            }
        }
        Ok(LiveAuth(caller))
    }
}
