//! `POST /v1/chat/completions`: authenticate, bound the output, price the worst case, reserve
//! it, call the upstreams, relay the answer, and leave the settlement to the meter. A
//! non-streamed call runs as a task of its own, so a client leaving does not cancel its charge.
//! A request paid with ecash receives its token first (a ledger user of its own), and gets its
//! change once settled: in the `X-Cashu` header, or for a stream in a last chunk. A request
//! paid with x402 has its payment landed and credited to its payer first, and is then served
//! from the payer's balance (`exact`), or its wallet's authorisation locked on chain and then
//! settled for the actual cost (`escrow`); one that comes with nothing is answered with an
//! x402 offer.
mod plan;

use crate::{
    auth::Caller,
    cashu::pay::Paid,
    error::{ApiError, ApiJson},
    meter::{Meter, Prompt},
    metrics::{ModelLabel, RequestLabels},
    payer::Payer,
    request::ChatRequest,
    state::{AppState, Model},
    stream::{relay, response_text, usage_of, RelayOptions},
    upstream,
    x402::wire,
};
use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures_util::StreamExt;
use plan::{plan, reserve};
use serde_json::{Map, Value};
use std::{sync::Arc, time::Duration};
use tokio::time::Instant;
use tracing::Instrument;

/// The handler: runs the request in its span and counts it in the metrics.
pub async fn completions(
    State(state): State<Arc<AppState>>,
    payer: Payer,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> Response {
    let started = Instant::now();
    // Time-ordered (UUID v7): the ledger's rows keyed by request id are then inserted at the
    // end of their indexes, so one commit of many requests writes a few pages, not one each.
    let request_id = format!("req_{}", uuid::Uuid::now_v7().simple());
    let model_name = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let user = match &payer {
        Payer::Account(caller) => caller.user.as_str(),
        Payer::Ecash { .. } => "ecash",
        Payer::X402 { .. } => "x402",
        Payer::Nobody { .. } => "anonymous",
    };
    let span = tracing::info_span!("chat", %request_id, %user, model = %model_name);
    let mut paid = PerRequest::default();
    let result = serve(
        state.clone(),
        payer,
        body,
        request_id.clone(),
        started,
        &mut paid,
    )
    .instrument(span.clone())
    .await;
    let mut response = match result {
        Ok(response) => response,
        Err(error) => {
            // A balance that falls short can be topped up by paying this request with x402.
            let short = matches!(error, ApiError::Insufficient { .. });
            let mut response = error.into_response();
            if let (true, Some(x402), Some(tokens)) = (short, &state.x402, paid.worst_case) {
                x402.attach_offer(&mut response, tokens);
            }
            response
        }
    };
    if let Some(receipt) = paid.x402.take() {
        if let Ok(value) = HeaderValue::from_str(&receipt) {
            response
                .headers_mut()
                .insert(crate::x402::wire::PAYMENT_RESPONSE, value);
        }
    }
    if let Some(ecash) = paid.ecash {
        ecash
            .give_change(&state, &mut response)
            .instrument(span)
            .await;
    }
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

/// What paying per request leaves for the answer.
#[derive(Default)]
struct PerRequest {
    /// The ecash that paid: its change goes back with the answer.
    ecash: Option<Paid>,
    /// The `PAYMENT-RESPONSE` of the x402 payment that paid.
    x402: Option<String>,
    /// The request's worst case (a caller's, with x402 on): what a 402 offers to pay.
    worst_case: Option<i64>,
}

async fn serve(
    state: Arc<AppState>,
    payer: Payer,
    body: Map<String, Value>,
    request_id: String,
    started: Instant,
    paid: &mut PerRequest,
) -> Result<Response, ApiError> {
    let request = ChatRequest::parse(body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let model = state
        .models
        .get(&request.model)
        .cloned()
        .ok_or_else(|| ApiError::UnknownModel(request.model.clone()))?;
    match &payer {
        Payer::Account(caller) => {
            if let Some(key) = &caller.key {
                if !key.allows_model(&model.id) {
                    return Err(ApiError::Forbidden(format!(
                        "this delegated key may not use the model `{}`",
                        model.id
                    )));
                }
            }
            // Its rate limits are counted by the ledger with its hold, over every replica.
        }
        // Before its token is touched: a flood of tokens never becomes a flood of swaps (or
        // of transactions sent).
        Payer::Ecash { client, .. } | Payer::X402 { client, .. } | Payer::Nobody { client } => {
            state.limiter.admit(client)?
        }
    }

    let (request, prompt) = request
        .prompt_tokens(model.counts_prompt)
        .await
        .map_err(|e| ApiError::Internal(format!("counting the prompt failed: {e}")))?;
    let request = Arc::new(request);
    let mut escrow = None;
    let caller = match payer {
        Payer::Account(caller) => {
            if state.x402.is_some() {
                paid.worst_case = Some(plan(&caller, &model, &request, prompt)?.amount);
            }
            caller
        }
        // The token is received only once the request is known to be valid and covered.
        Payer::Ecash { token, client } => {
            let plan = plan(&Caller::paid_by("", &client), &model, &request, prompt)?;
            let receipt = Paid::receive(&state, &token, plan.least(), &request_id).await?;
            let caller = Arc::new(Caller::paid_by(receipt.receipt_id(), &client));
            paid.ecash = Some(receipt);
            caller
        }
        // Only once the request is known to be valid: the offer is its worst case.
        Payer::Nobody { client } => {
            let plan = plan(&Caller::paid_by("", &client), &model, &request, prompt)?;
            let x402 = state.x402.as_deref().ok_or(ApiError::Unavailable)?;
            return Err(x402.payment_required(
                plan.amount,
                "pay for this request with x402 (the PAYMENT-REQUIRED header says how), or \
                 send Authorization: Bearer <a login token or delegated key>",
            ));
        }
        // Locked on chain for its worst case: served on the lock, which its meter settles
        // for the actual cost.
        Payer::X402 { payment, client } if wire::is_escrow(&payment) => {
            let plan = plan(&Caller::paid_by("", &client), &model, &request, prompt)?;
            let x402 = state.x402.clone().ok_or(ApiError::Unavailable)?;
            let locked = x402
                .lock(&state.ledger, &payment, plan.amount, &request_id)
                .await?;
            paid.x402 = Some(locked.response);
            let caller = Arc::new(Caller::wallet(&locked.lock.payer));
            escrow = Some((x402, locked.lock, plan.bound(&request)));
            caller
        }
        // Paid for its worst case, landed and credited before anything is held: the request
        // is then the payer's, served from their balance like a logged-in one.
        Payer::X402 { payment, client } => {
            let plan = plan(&Caller::paid_by("", &client), &model, &request, prompt)?;
            let x402 = state.x402.clone().ok_or(ApiError::Unavailable)?;
            let settled = x402
                .pay(&state.ledger, &payment, plan.amount, &request_id)
                .await?;
            paid.x402 = Some(settled.response);
            Arc::new(Caller::wallet(&settled.payer))
        }
    };
    // The meter exists before the hold: if the client goes away while the hold is being
    // committed, dropping the meter releases it (queued after the hold), so nothing stays
    // reserved until it expires.
    let mut meter = Meter::new(
        state.clone(),
        request_id.clone(),
        caller.clone(),
        model.clone(),
        match model.counts_prompt {
            true => Prompt::Counted(prompt),
            false => Prompt::Uncounted(request.clone()),
        },
    );
    let epilogue = paid
        .ecash
        .as_mut()
        .and_then(|paid| paid.follow(&state, &mut meter, request.stream, &model.id));
    let bound = match escrow {
        Some((x402, lock, bound)) => {
            meter.paid_by_lock(x402, lock);
            bound
        }
        None => match reserve(&state, &caller, &model, &request, prompt, &request_id).await {
            Ok(bound) => bound,
            Err(refused) => {
                meter.nothing_held();
                return Err(refused);
            }
        },
    };
    let call = Call {
        state: state.clone(),
        model,
        request,
        bound,
        meter,
        deadline: started + Duration::from_secs(state.config.limits.request_timeout_seconds),
        epilogue,
    };
    let before_upstream = started.elapsed();
    let overhead = |waited: Duration| {
        let outside = started.elapsed().saturating_sub(waited);
        state
            .metrics
            .overhead
            .observe(outside.max(before_upstream).as_secs_f64());
    };
    if call.request.stream {
        let (response, waited) = call.stream().await?;
        overhead(waited);
        return Ok(response);
    }
    // The upstream call and its settlement run as a task of their own: a client that leaves
    // drops this handler, not the call, which is charged for what the upstream did.
    let (bytes, waited) = state
        .settlements
        .spawn(call.complete())
        .await
        .map_err(|e| ApiError::Internal(format!("the upstream call failed: {e}")))??;
    overhead(waited);
    let mut response = (StatusCode::OK, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// One reserved upstream call, owning the meter that settles it.
struct Call {
    state: Arc<AppState>,
    model: Arc<Model>,
    request: Arc<ChatRequest>,
    bound: u64,
    meter: Meter,
    deadline: Instant,
    /// The last chunk of a stream paid with ecash: its change.
    epilogue: Option<futures_util::future::BoxFuture<'static, Option<Bytes>>>,
}

impl Call {
    /// Calls the upstreams; the answer's body relays the stream, the meter inside it.
    async fn stream(self) -> Result<(Response, Duration), ApiError> {
        let Call {
            state,
            model,
            request,
            bound,
            meter,
            deadline,
            epilogue,
        } = self;
        let answer = send_served(&state, &model, &request, bound, &meter).await?;
        let options = RelayOptions {
            hide_usage_chunk: !request.include_usage,
            idle_timeout: Duration::from_secs(state.config.limits.first_byte_timeout_seconds),
            deadline,
            cut: state.cut_streams.clone(),
            epilogue,
        };
        let body = relay(answer.response.bytes_stream().boxed(), meter, options);
        let mut response = Response::new(Body::from_stream(body));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        Ok((response, answer.waited))
    }

    /// Calls the upstreams, reads the whole answer and settles it (when the meter drops).
    async fn complete(self) -> Result<(Bytes, Duration), ApiError> {
        let Call {
            state,
            model,
            request,
            bound,
            mut meter,
            deadline,
            ..
        } = self;
        let answer = send_served(&state, &model, &request, bound, &meter).await?;
        let read = tokio::select! {
            _ = state.cut_streams.cancelled() => return Err(ApiError::Unavailable),
            read = tokio::time::timeout_at(deadline, answer.response.bytes()) => read,
        };
        let name = &answer.upstream.name;
        let bytes = read
            .map_err(|_| ApiError::UpstreamTimeout(format!("{name} did not finish in time")))?
            .map_err(|e| ApiError::Upstream(format!("{name}: {}", e.without_url())))?;
        meter.started();
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(response) => match usage_of(&response) {
                Some(usage) => meter.usage(usage),
                None => meter.delivered(&response_text(&response)),
            },
            Err(_) => meter.delivered(&String::from_utf8_lossy(&bytes)),
        }
        Ok((bytes, answer.waited))
    }
}

/// Sends to the upstreams unless shutdown cuts it first, and marks the reservation served as
/// soon as one answers: from then on an unsettled reservation is charged, not released.
async fn send_served<'a>(
    state: &AppState,
    model: &'a Model,
    request: &ChatRequest,
    bound: u64,
    meter: &Meter,
) -> Result<upstream::Answer<'a>, ApiError> {
    let answer = tokio::select! {
        _ = state.cut_streams.cancelled() => return Err(ApiError::Unavailable),
        answer = upstream::send(state, model, request, bound) => answer?,
    };
    meter.served();
    Ok(answer)
}
