//! `POST /v1/chat/completions`: authenticate, price the worst case, reserve it, call the
//! upstreams, relay the answer, and leave the settlement to the meter.
use crate::{
    auth::{Auth, Caller},
    error::{ApiError, ApiJson},
    meter::Meter,
    metrics::{ModelLabel, RequestLabels},
    ratelimit::Limits,
    state::{AppState, Model},
    stream::{relay, response_text, usage_of, RelayOptions},
    tokens, upstream,
};
use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;
use indexer::ledger::{Hold, KeyLimit};
use serde_json::{Map, Value};
use std::{sync::Arc, time::Duration};
use tokio::time::Instant;
use tracing::Instrument;

/// Most choices (`n`) one request may ask for.
const MAX_CHOICES: u64 = 16;

pub async fn completions(
    State(state): State<Arc<AppState>>,
    Auth(caller): Auth,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> Response {
    let started = Instant::now();
    let request_id = format!("req_{}", uuid::Uuid::new_v4().simple());
    let model_name = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let span = tracing::info_span!("chat", %request_id, user = %caller.user, model = %model_name);
    let result = serve(state.clone(), caller, body, request_id.clone(), started)
        .instrument(span)
        .await;
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let known = state.models.contains_key(&model_name);
    let label = if known { model_name } else { String::new() };
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            model: label.clone(),
            status: response.status().as_u16(),
        })
        .inc();
    state
        .metrics
        .duration
        .get_or_create(&ModelLabel { model: label })
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn serve(
    state: Arc<AppState>,
    caller: Arc<Caller>,
    mut body: Map<String, Value>,
    request_id: String,
    started: Instant,
) -> Result<Response, ApiError> {
    let model_name = body
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::BadRequest("`model` is required".into()))?;
    let model = state
        .models
        .get(model_name)
        .cloned()
        .ok_or_else(|| ApiError::UnknownModel(model_name.to_owned()))?;
    if let Some(key) = &caller.key {
        if !key.allows_model(&model.id) {
            return Err(ApiError::Forbidden(format!(
                "this delegated key may not use the model `{}`",
                model.id
            )));
        }
    }
    match body.get("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => {}
        _ => {
            return Err(ApiError::BadRequest(
                "`messages` must be a non-empty array".into(),
            ))
        }
    }
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(stream)) => *stream,
        Some(_) => return Err(ApiError::BadRequest("`stream` must be a boolean".into())),
    };
    let choices = match body.get("n") {
        None | Some(Value::Null) => 1,
        Some(n) => n
            .as_u64()
            .filter(|n| (1..=MAX_CHOICES).contains(n))
            .ok_or_else(|| ApiError::BadRequest(format!("`n` must be 1 to {MAX_CHOICES}")))?,
    };
    let limits = caller.key.as_ref().map(|key| Limits {
        rpm: key.claims.rpm,
        tpm: key.claims.tpm,
    });
    state.limiter.admit(caller.limit_key(), limits)?;

    let prompt = tokens::estimate_prompt(&body);
    let max_tokens = completion_cap(&state, &caller, &model, &mut body, prompt, choices).await?;
    let amount = model.price.cost(prompt, max_tokens.saturating_mul(choices));
    reserve(&state, &caller, &request_id, amount).await?;
    let mut meter = Meter::new(
        state.clone(),
        request_id.clone(),
        caller.clone(),
        model.clone(),
        prompt,
    );

    let client_asked_usage = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if stream {
        body.insert(
            "stream_options".into(),
            serde_json::json!({"include_usage": true}),
        );
    }
    let before_upstream = started.elapsed();
    let answer = tokio::select! {
        _ = state.cut_streams.cancelled() => return Err(ApiError::Unavailable),
        answer = upstream::send(&state, &model, &mut body) => answer?,
    };
    let waited = answer.waited;
    let overhead = |state: &AppState| {
        let outside = started.elapsed().saturating_sub(waited);
        state
            .metrics
            .overhead
            .observe(outside.max(before_upstream).as_secs_f64());
    };
    let deadline = started + Duration::from_secs(state.config.limits.request_timeout_seconds);
    if stream {
        let options = RelayOptions {
            hide_usage_chunk: !client_asked_usage,
            idle_timeout: Duration::from_secs(state.config.limits.first_byte_timeout_seconds),
            deadline,
            cut: state.cut_streams.clone(),
        };
        let body = relay(answer.response.bytes_stream().boxed(), meter, options);
        overhead(&state);
        let mut response = Response::new(Body::from_stream(body));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return Ok(response);
    }
    let read = tokio::select! {
        _ = state.cut_streams.cancelled() => return Err(ApiError::Unavailable),
        read = tokio::time::timeout_at(deadline, answer.response.bytes()) => read,
    };
    let bytes = read
        .map_err(|_| {
            ApiError::UpstreamTimeout(format!("{} did not finish in time", answer.upstream.name))
        })?
        .map_err(|e| {
            ApiError::Upstream(format!("{}: {}", answer.upstream.name, e.without_url()))
        })?;
    meter.started();
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(response) => match usage_of(&response) {
            Some(usage) => meter.usage(usage),
            None => meter.delivered(&response_text(&response)),
        },
        Err(_) => meter.delivered(&String::from_utf8_lossy(&bytes)),
    }
    drop(meter);
    overhead(&state);
    let mut response = (StatusCode::OK, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// The completion tokens to reserve for, written into the forwarded request. A client's own
/// `max_tokens` (or `max_completion_tokens`) must fit the key's and the model's caps; without
/// one, the cap is what the balance affords.
async fn completion_cap(
    state: &AppState,
    caller: &Caller,
    model: &Model,
    body: &mut Map<String, Value>,
    prompt: u64,
    choices: u64,
) -> Result<u64, ApiError> {
    let cap = caller
        .key
        .as_ref()
        .and_then(|key| key.claims.max_tokens)
        .map_or(model.max_output_tokens, |key_cap| {
            key_cap.min(model.max_output_tokens)
        });
    let mut requested = None;
    for field in ["max_tokens", "max_completion_tokens"] {
        match body.get(field) {
            None | Some(Value::Null) => {}
            Some(value) => {
                let tokens = value.as_u64().filter(|t| *t > 0).ok_or_else(|| {
                    ApiError::BadRequest(format!("`{field}` must be a positive integer"))
                })?;
                requested = Some(requested.map_or(tokens, |r: u64| r.min(tokens)));
            }
        }
    }
    if let Some(tokens) = requested {
        if tokens > cap {
            return Err(ApiError::BadRequest(format!(
                "max_tokens {tokens} exceeds this {} limit of {cap}",
                if caller.key.is_some() {
                    "key's"
                } else {
                    "model's"
                }
            )));
        }
        return Ok(tokens);
    }
    let available = state.ledger.balance(&caller.user).await?.available;
    let mut affordable = model.price.affordable_completion(available, prompt) / choices;
    if let Some(key) = &caller.key {
        let remaining = match state.ledger.key_budget(&key.key_id).await? {
            Some(budget) => budget.remaining,
            None => i64::try_from(key.claims.budget).unwrap_or(i64::MAX),
        };
        affordable = affordable.min(model.price.affordable_completion(remaining, prompt) / choices);
    }
    let tokens = affordable.min(cap);
    if tokens == 0 {
        return Err(ApiError::Insufficient {
            needed: model.price.cost(prompt, choices),
            available,
        });
    }
    body.insert("max_tokens".into(), Value::from(tokens));
    Ok(tokens)
}

async fn reserve(
    state: &AppState,
    caller: &Caller,
    request_id: &str,
    amount: i64,
) -> Result<(), ApiError> {
    let key = caller.key.as_ref().map(|key| KeyLimit {
        key_id: &key.key_id,
        budget: i64::try_from(key.claims.budget).unwrap_or(i64::MAX),
        max_uses: key.claims.single_use.then_some(1),
    });
    let hold = Hold {
        id: request_id,
        user: &caller.user,
        amount: amount.max(1),
        ttl_seconds: state.config.reservation_ttl_seconds,
        key,
    };
    match state.ledger.hold(&hold).await {
        Ok(_) => {
            state.metrics.reservation("held");
            Ok(())
        }
        Err(error) => {
            state.metrics.reservation("refused");
            Err(error.into())
        }
    }
}
