//! The rail over HTTP: the NUT-24 402 that says what to pay, the change endpoint (a token's
//! change, issued again from the token that paid), and the top-up of a wallet's balance with
//! ecash.
use super::{Cashu, CashuError, Received};
use crate::{
    error::{ApiError, ApiJson, EcashRequest},
    ratelimit::client_key,
    state::AppState,
};
use axum::{
    extract::{FromRequestParts, State},
    http::{request::Parts, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use cdk::{mint_url::MintUrl, nuts::nut18::PaymentRequest, nuts::CurrencyUnit, Amount};
use serde::Deserialize;
use serde_json::json;
use std::{str::FromStr, sync::Arc};

/// The header that carries ecash both ways.
pub const HEADER: &str = "x-cashu";

/// The `Retry-After` of an answer that asks for the same token again.
const RETRY_AFTER_SECONDS: u64 = 1;

/// The rail's anonymous endpoints' caller, by [`client_key`].
pub struct EcashClient(String);

impl<S: Send + Sync> FromRequestParts<S> for EcashClient {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(client_key(parts)))
    }
}

/// What a request paid with ecash must cost at least, in sats: the 402 that asks for it.
pub fn payment_required(cashu: &Cashu, sats: Option<u64>, message: String) -> ApiError {
    let mints: Vec<MintUrl> = cashu
        .mint_urls()
        .iter()
        .filter_map(|url| MintUrl::from_str(url).ok())
        .collect();
    let mut request = PaymentRequest::builder()
        .unit(CurrencyUnit::Sat)
        .single_use(true)
        .mints(mints)
        .description("LLM gateway: pay per request");
    if let Some(sats) = sats {
        request = request.amount(Amount::from(sats));
    }
    ApiError::Ecash {
        status: StatusCode::PAYMENT_REQUIRED,
        code: "payment_required",
        message,
        retry_after: None,
        request: Some(Box::new(EcashRequest {
            amount: sats,
            unit: "sat",
            mints: cashu.mint_urls(),
            encoded: request.build().to_string(),
        })),
    }
}

/// The HTTP answer for a failure of the rail; `needed` is what this request costs in sats,
/// when known, for the 402's payment request.
pub fn api_error(cashu: &Cashu, error: CashuError, needed: Option<u64>) -> ApiError {
    let plain = |status, code, error: CashuError| ApiError::Ecash {
        status,
        code,
        message: error.to_string(),
        request: None,
        retry_after: None,
    };
    // Nothing is lost and the same token finishes the exchange: say when to send it again.
    let retry = |status, code, error: CashuError| ApiError::Ecash {
        status,
        code,
        message: error.to_string(),
        request: None,
        retry_after: Some(RETRY_AFTER_SECONDS),
    };
    match error {
        CashuError::TooLittle { needed, .. } => {
            payment_required(cashu, Some(needed), error.to_string())
        }
        CashuError::UnlistedMint(_)
        | CashuError::Unit(_)
        | CashuError::Refused(_)
        | CashuError::AlreadyReceived => payment_required(cashu, needed, error.to_string()),
        CashuError::Disabled | CashuError::Malformed(_) | CashuError::TooMuch(_) => {
            plain(StatusCode::BAD_REQUEST, "invalid_token", error)
        }
        CashuError::MintUnreachable(_) => {
            retry(StatusCode::SERVICE_UNAVAILABLE, "mint_unreachable", error)
        }
        CashuError::InProgress => retry(StatusCode::CONFLICT, "payment_in_progress", error),
        CashuError::StillServing => retry(StatusCode::CONFLICT, "still_serving", error),
        CashuError::UnknownReceipt => plain(StatusCode::NOT_FOUND, "unknown_payment", error),
        CashuError::Ledger(error) => ApiError::Internal(error.to_string()),
        CashuError::Internal(message) => ApiError::Internal(message),
    }
}

/// Puts a change token (if any) in the response's `X-Cashu` header.
pub fn attach_change(response: &mut Response, change: Option<&str>) {
    if let Some(value) = change.and_then(|token| HeaderValue::from_str(token).ok()) {
        response.headers_mut().insert(HEADER, value);
    }
}

fn rail(state: &AppState) -> Result<&Cashu, ApiError> {
    state
        .cashu
        .as_deref()
        .ok_or_else(|| ApiError::BadRequest(CashuError::Disabled.to_string()))
}

fn token_header(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(HEADER)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| ApiError::BadRequest("send the token in an X-Cashu header".into()))
}

/// `POST /v1/cashu/change`: the change of the request a token paid for, sent again with that
/// token. It is the token the change was (or will be) issued for, so only its holder can ask;
/// asked twice, it answers the same. While the request is still served: 409.
pub async fn change(
    State(state): State<Arc<AppState>>,
    EcashClient(client): EcashClient,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let cashu = rail(&state)?;
        state.limiter.admit(&client)?;
        let value = token_header(&headers)?;
        let token = cashu.parse(value).map_err(|e| api_error(cashu, e, None))?;
        let id = super::receipt_id(&token);
        // A receipt left unfinished by a crash or an unanswering mint is finished first.
        cashu
            .finish_receipt(&state.ledger, &id)
            .await
            .map_err(|e| api_error(cashu, e, None))?;
        let change = issue_change(&state, cashu, &id).await?;
        let mut response = Json(json!({"change": change, "unit": "sat"})).into_response();
        attach_change(&mut response, change.as_deref());
        Ok::<_, ApiError>(response)
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Issues a receipt's change on the settlement tracker: a client that leaves does not cut a
/// swap in half (it would be finished at the next start anyway).
pub async fn issue_change(
    state: &Arc<AppState>,
    cashu: &Cashu,
    receipt_id: &str,
) -> Result<Option<String>, ApiError> {
    let (task_state, id) = (state.clone(), receipt_id.to_owned());
    let task = state.settlements.spawn(async move {
        match task_state.cashu.as_deref() {
            Some(cashu) => cashu.change_for(&task_state.ledger, &id).await,
            None => Err(CashuError::Disabled),
        }
    });
    match task.await {
        Ok(result) => result.map_err(|e| api_error(cashu, e, None)),
        Err(e) => Err(ApiError::Internal(format!("issuing change: {e}"))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopupRequest {
    /// The wallet (base58) whose balance the token credits.
    wallet: String,
}

/// `POST /v1/topup/cashu` with `{"wallet": …}` and the token in `X-Cashu`: credits the whole
/// token (less the mint's fee) to that wallet's ledger balance, at the published rate. No
/// signature is needed: paying into a balance gives its owner something and takes nothing.
pub async fn topup(
    State(state): State<Arc<AppState>>,
    EcashClient(client): EcashClient,
    headers: HeaderMap,
    ApiJson(body): ApiJson<TopupRequest>,
) -> Response {
    let result = async {
        let cashu = rail(&state)?;
        state.limiter.admit(&client)?;
        if solana_sdk::pubkey::Pubkey::from_str(&body.wallet).is_err() {
            return Err(ApiError::BadRequest(format!(
                "wallet must be a base58 Solana address, got {:?}",
                body.wallet
            )));
        }
        let value = token_header(&headers)?;
        let token = cashu.parse(value).map_err(|e| api_error(cashu, e, None))?;
        let receipt = match cashu
            .receive(&state.ledger, &token, Some(&body.wallet), None)
            .await
        {
            // Sent before to pay a request, unfinished then, finished now: it pays that.
            Ok(Received::Now(receipt)) if receipt.user == body.wallet => receipt,
            Ok(_) => return Err(api_error(cashu, CashuError::AlreadyReceived, None)),
            Err(error) => return Err(api_error(cashu, error, None)),
        };
        let balance = state.ledger.balance(&body.wallet).await?;
        Ok(Json(json!({
            "wallet": body.wallet,
            "receipt": receipt.id,
            "sats": receipt.sats,
            "credited": receipt.sats * receipt.tokens_per_sat,
            "balance": balance,
        }))
        .into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
