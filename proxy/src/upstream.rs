//! Calling the model's upstreams in order: the next one on a connect error, a timeout before
//! the response headers, or a 5xx; a 4xx is the client's problem and is passed through.
use crate::{
    error::ApiError,
    metrics::UpstreamLabels,
    request::ChatRequest,
    state::{AppState, Model, Upstream},
};
use axum::http::header::CONTENT_TYPE;
use std::time::{Duration, Instant};

/// The first upstream that answered, and how long it took to.
pub struct Answer<'a> {
    pub response: reqwest::Response,
    pub upstream: &'a Upstream,
    pub waited: Duration,
}

/// Sends `request` to the model's upstreams in order, each with its own model name and the
/// output `bound` in the field it reads.
pub async fn send<'a>(
    state: &AppState,
    model: &'a Model,
    request: &ChatRequest,
    bound: u64,
) -> Result<Answer<'a>, ApiError> {
    let timeout = Duration::from_secs(state.config.limits.first_byte_timeout_seconds);
    let started = Instant::now();
    let mut last = ApiError::Upstream("no upstream configured".into());
    for upstream in &model.upstreams {
        let body = request.upstream_body(&upstream.model, upstream.bound_field, bound);
        let payload = serde_json::to_vec(&body)
            .map_err(|e| ApiError::Internal(format!("serialising the request: {e}")))?;
        let mut request = state
            .http
            .post(upstream.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(payload);
        if let Some(key) = &upstream.api_key {
            request = request.bearer_auth(key);
        }
        let failure = |kind: &'static str| {
            state
                .metrics
                .upstream_errors
                .get_or_create(&UpstreamLabels {
                    upstream: upstream.name.clone(),
                    kind,
                })
                .inc();
        };
        match tokio::time::timeout(timeout, request.send()).await {
            Err(_) => {
                failure("timeout");
                last = ApiError::UpstreamTimeout(format!(
                    "{} sent no response within {}s",
                    upstream.name,
                    timeout.as_secs()
                ));
            }
            Ok(Err(error)) => {
                failure("connect");
                last = ApiError::Upstream(format!("{}: {}", upstream.name, error.without_url()));
            }
            Ok(Ok(response)) if response.status().is_server_error() => {
                failure("status");
                last =
                    ApiError::Upstream(format!("{} answered {}", upstream.name, response.status()));
            }
            Ok(Ok(response)) if !response.status().is_success() => {
                failure("refused");
                let status = response.status();
                let body = tokio::time::timeout(timeout, response.bytes())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
                return Err(ApiError::UpstreamRefused { status, body });
            }
            Ok(Ok(response)) => {
                return Ok(Answer {
                    response,
                    upstream,
                    waited: started.elapsed(),
                })
            }
        }
        tracing::warn!(upstream = %upstream.name, error = %last, "upstream failed; trying the next");
    }
    Err(last)
}
