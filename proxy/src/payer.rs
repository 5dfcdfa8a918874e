//! Who pays a request: a wallet's balance (a bearer credential), the ecash sent with it
//! (`X-Cashu`), or an x402 payment (`PAYMENT-SIGNATURE`). A payment sent with the request pays
//! for it, whatever else it carries (OpenAI clients always send some API key). With x402 on,
//! a request that carries nothing is not refused here: it is answered with an offer for its
//! own worst case, which only the handler knows.
use crate::{
    auth::{extract::Auth, Caller},
    cashu,
    error::ApiError,
    ratelimit::client_key,
    state::AppState,
    x402::wire::{MAX_HEADER_BYTES, PAYMENT_SIGNATURE},
};
use axum::{
    extract::FromRequestParts,
    http::{header::AUTHORIZATION, request::Parts},
};
use std::sync::Arc;

pub enum Payer {
    Account(Arc<Caller>),
    Ecash {
        token: String,
        client: String,
    },
    /// An x402 payment (the `PAYMENT-SIGNATURE` header's value).
    X402 {
        payment: String,
        client: String,
    },
    /// Nothing at all, on a gateway that takes x402: the answer is an offer.
    Nobody {
        client: String,
    },
}

impl FromRequestParts<Arc<AppState>> for Payer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        if let Some(value) = parts.headers.get(PAYMENT_SIGNATURE) {
            if state.x402.is_none() {
                return Err(ApiError::BadRequest(
                    "this gateway takes no x402 payments".into(),
                ));
            }
            let payment = value
                .to_str()
                .ok()
                .filter(|value| value.len() <= MAX_HEADER_BYTES)
                .ok_or_else(|| {
                    ApiError::BadRequest("PAYMENT-SIGNATURE must be base64 JSON".into())
                })?;
            return Ok(Payer::X402 {
                payment: payment.to_owned(),
                client: client_key(parts),
            });
        }
        if let Some(value) = parts.headers.get(cashu::HEADER) {
            let token = value
                .to_str()
                .map_err(|_| ApiError::BadRequest("X-Cashu must be a Cashu token".into()))?;
            return Ok(Payer::Ecash {
                token: token.to_owned(),
                client: client_key(parts),
            });
        }
        if state.x402.is_some() && !parts.headers.contains_key(AUTHORIZATION) {
            return Ok(Payer::Nobody {
                client: client_key(parts),
            });
        }
        match Auth::from_request_parts(parts, state).await {
            Ok(Auth(caller)) => Ok(Payer::Account(caller)),
            Err(ApiError::Unauthorized(message)) if state.cashu.is_some() => {
                Err(ApiError::Unauthorized(format!(
                    "{message}; or pay with ecash in an X-Cashu header"
                )))
            }
            Err(error) => Err(error),
        }
    }
}
