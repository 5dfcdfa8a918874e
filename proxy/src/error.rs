//! Every way a request can fail, and the one place that turns it into an OpenAI-shaped HTTP
//! error (`{"error": {"message", "type", "param", "code"}}`), so clients' error handling works.
use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use ledger::LedgerError;
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("insufficient balance: {needed} tokens needed, {available} available")]
    Insufficient { needed: i64, available: i64 },
    #[error("this key's budget is exhausted: {needed} tokens needed, {remaining} remaining")]
    KeyBudget { needed: i64, remaining: i64 },
    #[error("The model `{0}` does not exist")]
    UnknownModel(String),
    #[error("request body too large: the limit is {0} bytes")]
    TooLarge(usize),
    #[error("rate limit reached: {message}")]
    RateLimited { message: String, retry_after: u64 },
    #[error("upstream error: {0}")]
    Upstream(String),
    #[error("upstream timed out: {0}")]
    UpstreamTimeout(String),
    /// The upstream refused the request (4xx): its status and body are passed through.
    #[error("upstream refused the request ({status})")]
    UpstreamRefused {
        status: StatusCode,
        body: bytes::Bytes,
    },
    #[error("no such endpoint")]
    NotFound,
    #[error("the gateway is shutting down")]
    Unavailable,
    /// The ledger's database does not answer (restarting, unreachable): nothing was held.
    #[error("the ledger is unreachable; retry shortly")]
    LedgerUnavailable,
    #[error("internal error")]
    Internal(String),
    /// The Cashu rail's answers: a 402 carries the NUT-24 payment request.
    #[error("{message}")]
    Ecash {
        status: StatusCode,
        code: &'static str,
        message: String,
        /// Boxed: a 402's payment request is rare, and every `Result<_, ApiError>` carries
        /// this variant's size.
        request: Option<Box<EcashRequest>>,
        /// Seconds after which the same request may succeed (nothing was lost).
        retry_after: Option<u64>,
    },
    /// x402's answers: a 402 carries the offer (`PAYMENT-REQUIRED`), with the reason a
    /// payment was refused in its `error` and in `code`.
    #[error("{message}")]
    X402 {
        status: StatusCode,
        code: &'static str,
        message: String,
        /// Boxed, as `Ecash`'s request.
        required: Option<Box<crate::x402::wire::PaymentRequired>>,
        retry_after: Option<u64>,
    },
}

/// What to pay with ecash (NUT-24): the amount, unit and accepted mints, and the same as a
/// NUT-18 payment request (`creqA…`) for the `X-Cashu` header.
#[derive(Debug, Clone)]
pub struct EcashRequest {
    pub amount: Option<u64>,
    pub unit: &'static str,
    pub mints: Vec<String>,
    pub encoded: String,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Insufficient { .. } | ApiError::KeyBudget { .. } => {
                StatusCode::PAYMENT_REQUIRED
            }
            ApiError::UnknownModel(_) | ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::UpstreamRefused { status, .. } => *status,
            ApiError::Unavailable | ApiError::LedgerUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Ecash { status, .. } | ApiError::X402 { status, .. } => *status,
        }
    }

    /// OpenAI's `type` and our `code`.
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::BadRequest(_) => ("invalid_request_error", "invalid_request"),
            ApiError::Unauthorized(_) => ("authentication_error", "invalid_api_key"),
            ApiError::Forbidden(_) => ("permission_error", "model_not_allowed"),
            ApiError::Insufficient { .. } => ("insufficient_quota", "insufficient_balance"),
            ApiError::KeyBudget { .. } => ("insufficient_quota", "key_budget_exhausted"),
            ApiError::UnknownModel(_) => ("invalid_request_error", "model_not_found"),
            ApiError::NotFound => ("invalid_request_error", "unknown_url"),
            ApiError::TooLarge(_) => ("invalid_request_error", "request_too_large"),
            ApiError::RateLimited { .. } => ("rate_limit_error", "rate_limit_exceeded"),
            ApiError::Upstream(_) | ApiError::UpstreamRefused { .. } => {
                ("api_error", "upstream_error")
            }
            ApiError::UpstreamTimeout(_) => ("api_error", "upstream_timeout"),
            ApiError::Unavailable => ("api_error", "unavailable"),
            ApiError::LedgerUnavailable => ("api_error", "ledger_unavailable"),
            ApiError::Internal(_) => ("server_error", "internal_error"),
            ApiError::Ecash { status, code, .. } | ApiError::X402 { status, code, .. } => {
                match *status {
                    StatusCode::PAYMENT_REQUIRED => ("insufficient_quota", code),
                    StatusCode::SERVICE_UNAVAILABLE => ("api_error", code),
                    _ => ("invalid_request_error", code),
                }
            }
        }
    }

    /// The JSON body, with the amounts of a 402 alongside the message.
    pub fn body(&self) -> Value {
        let (kind, code) = self.kind();
        let mut error = json!({
            "message": self.to_string(),
            "type": kind,
            "param": null,
            "code": code,
        });
        match self {
            ApiError::Insufficient { needed, available } => {
                error["needed"] = json!(needed);
                error["available"] = json!(available);
            }
            ApiError::KeyBudget { needed, remaining } => {
                error["needed"] = json!(needed);
                error["available"] = json!(remaining);
            }
            _ => {}
        }
        let mut body = json!({ "error": error });
        if let ApiError::Ecash {
            request: Some(request),
            ..
        } = self
        {
            body["cashu"] = json!({
                "amount": request.amount,
                "unit": request.unit,
                "mints": request.mints,
                "payment_request": request.encoded,
            });
        }
        if let ApiError::X402 {
            required: Some(required),
            ..
        } = self
        {
            body["x402"] = json!(required);
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        if let ApiError::UpstreamRefused { status, body } = self {
            // The upstream's own error: its body, when it is JSON, is already OpenAI-shaped.
            if serde_json::from_slice::<Value>(&body).is_ok() {
                let mut response = (status, body).into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                return response;
            }
            let text = String::from_utf8_lossy(&body).into_owned();
            return ApiError::Upstream(format!("{status}: {text}")).into_response_with(status);
        }
        let status = self.status();
        self.into_response_with(status)
    }
}

impl ApiError {
    fn into_response_with(self, status: StatusCode) -> Response {
        let mut response = (status, Json(self.body())).into_response();
        let retry_after = match &self {
            ApiError::RateLimited { retry_after, .. } => Some(*retry_after),
            ApiError::Ecash { retry_after, .. } | ApiError::X402 { retry_after, .. } => {
                *retry_after
            }
            ApiError::LedgerUnavailable => Some(1),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let ApiError::Ecash {
            request: Some(request),
            ..
        } = &self
        {
            if let Ok(value) = HeaderValue::from_str(&request.encoded) {
                response.headers_mut().insert("x-cashu", value);
            }
        }
        if let ApiError::X402 {
            required: Some(required),
            ..
        } = &self
        {
            let encoded = crate::x402::wire::encode(required.as_ref());
            if let Ok(value) = HeaderValue::from_str(&encoded) {
                response
                    .headers_mut()
                    .insert(crate::x402::wire::PAYMENT_REQUIRED, value);
            }
        }
        response
    }
}

impl From<LedgerError> for ApiError {
    fn from(error: LedgerError) -> Self {
        match error {
            LedgerError::Insufficient { needed, available } => {
                ApiError::Insufficient { needed, available }
            }
            LedgerError::KeyBudget { needed, remaining } => {
                ApiError::KeyBudget { needed, remaining }
            }
            LedgerError::KeyUsedUp => {
                ApiError::Unauthorized("this single-use key has already been used".into())
            }
            LedgerError::KeyRevoked => {
                ApiError::Unauthorized("this delegated key was revoked by its wallet".into())
            }
            LedgerError::SessionRevoked => {
                ApiError::Unauthorized("this session was logged out; log in again".into())
            }
            LedgerError::RateLimited { limit, minute } => {
                // Until the window turns, by the wall clock (at least a second).
                let next = (minute + 1) * 60;
                let retry_after = (next - ledger::now()).clamp(1, 60) as u64;
                ApiError::RateLimited {
                    message: limit,
                    retry_after,
                }
            }
            error if error.is_unavailable() => {
                tracing::warn!(%error, "the ledger is unreachable");
                ApiError::LedgerUnavailable
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// A JSON body whose every rejection is an OpenAI-shaped error: 413 past the size limit,
/// 400 for anything unparseable.
pub struct ApiJson<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let limit = request
            .extensions()
            .get::<BodyLimit>()
            .map(|limit| limit.0)
            .unwrap_or(usize::MAX);
        let bytes = bytes::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge(limit)
                } else {
                    ApiError::BadRequest(rejection.body_text())
                }
            })?;
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
    }
}

/// The configured body limit, as a request extension, so the 413 can name it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);
