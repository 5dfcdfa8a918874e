//! `POST /v1/chat/completions`: authenticate, bound the output, price the worst case, reserve
//! it, call the upstreams, relay the answer, and leave the settlement to the meter. A
//! non-streamed call runs as a task of its own, so a client leaving does not cancel its charge.
//! A request paid with ecash receives its token first (a ledger user of its own), and gets its
//! change once settled: in the `X-Cashu` header, or for a stream in a last chunk.
use crate::{
    auth::Caller,
    cashu::{pay::Paid, Payer},
    error::{ApiError, ApiJson},
    meter::{Meter, Prompt},
    metrics::{ModelLabel, RequestLabels},
    request::ChatRequest,
    state::{AppState, Model},
    stream::{relay, response_text, usage_of, RelayOptions},
    upstream,
};
use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures_util::StreamExt;
use ledger::{Hold, KeyLimit, RateLimit};
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
    };
    let span = tracing::info_span!("chat", %request_id, %user, model = %model_name);
    let mut paid = None;
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
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    if let Some(paid) = paid {
        paid.give_change(&state, &mut response)
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

async fn serve(
    state: Arc<AppState>,
    payer: Payer,
    body: Map<String, Value>,
    request_id: String,
    started: Instant,
    paid: &mut Option<Paid>,
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
        // Before its token is touched: a flood of tokens never becomes a flood of swaps.
        Payer::Ecash { client, .. } => state.limiter.admit(client)?,
    }

    let (request, prompt) = request
        .prompt_tokens(model.counts_prompt)
        .await
        .map_err(|e| ApiError::Internal(format!("counting the prompt failed: {e}")))?;
    let request = Arc::new(request);
    let caller = match payer {
        Payer::Account(caller) => caller,
        // The token is received only once the request is known to be valid and covered.
        Payer::Ecash { token, client } => {
            let plan = plan(&Caller::paid_by("", &client), &model, &request, prompt)?;
            let receipt = Paid::receive(&state, &token, plan.least(), &request_id).await?;
            let caller = Arc::new(Caller::paid_by(receipt.receipt_id(), &client));
            *paid = Some(receipt);
            caller
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
        .as_mut()
        .and_then(|paid| paid.follow(&state, &mut meter, request.stream, &model.id));
    let bound = match reserve(&state, &caller, &model, &request, prompt, &request_id).await {
        Ok(bound) => bound,
        Err(refused) => {
            meter.nothing_held();
            return Err(refused);
        }
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

/// The worst case of a request, before anything is held: what to hold, the least that serves
/// it (without a client bound), and the output cap.
struct Plan {
    amount: i64,
    minimum: Option<i64>,
    cap: u64,
    sequences: u64,
}

impl Plan {
    /// The least this request can be served for.
    fn least(&self) -> i64 {
        self.minimum.unwrap_or(self.amount)
    }
}

fn plan(
    caller: &Caller,
    model: &Model,
    request: &ChatRequest,
    prompt: u64,
) -> Result<Plan, ApiError> {
    let cap = caller
        .key
        .as_ref()
        .and_then(|key| key.claims.max_tokens)
        .map_or(model.max_output_tokens, |key_cap| {
            key_cap.min(model.max_output_tokens)
        });
    if let Some(tokens) = request.max_output.filter(|tokens| *tokens > cap) {
        return Err(ApiError::BadRequest(format!(
            "max_tokens {tokens} exceeds this {} limit of {cap}",
            if caller.key.is_some() {
                "key's"
            } else {
                "model's"
            }
        )));
    }
    let sequences = request.sequences();
    let tokens = request.max_output.unwrap_or(cap);
    let amount = model
        .price
        .cost(prompt, tokens.saturating_mul(sequences))
        .max(1);
    let minimum = match request.max_output {
        Some(_) => None,
        None => Some(model.price.cost(prompt, sequences).clamp(1, amount)),
    };
    Ok(Plan {
        amount,
        minimum,
        cap,
        sequences,
    })
}

/// Reserves the worst case and returns the one completion-token bound per sequence it pays
/// for: the only bound sent upstream. A client's own bound (the smallest of every field it
/// used) must fit the key's and the model's caps, else 400, and is then held in full (402 if
/// the balance does not cover it); without one, the hold takes what the balance and the key's
/// budget afford, up to the caps (at least one token per sequence), and the bound follows.
async fn reserve(
    state: &AppState,
    caller: &Caller,
    model: &Model,
    request: &ChatRequest,
    prompt: u64,
    request_id: &str,
) -> Result<u64, ApiError> {
    let Plan {
        amount,
        minimum,
        cap,
        sequences,
    } = plan(caller, model, request, prompt)?;
    let key = caller.key.as_ref().map(|key| KeyLimit {
        key_id: &key.key_id,
        budget: i64::try_from(key.claims.budget).unwrap_or(i64::MAX),
        max_uses: key.claims.single_use.then_some(1),
    });
    let limits = &state.config.limits;
    let own = caller.key.as_ref().map(|key| &key.claims);
    let rate = caller.shared_limit_key().map(|caller| RateLimit {
        caller,
        minute: state.ledger.now().div_euclid(60),
        rpm: i64::from(
            own.and_then(|claims| claims.rpm)
                .map_or(limits.rpm, |rpm| rpm.min(limits.rpm)),
        ),
        tpm: i64::try_from(
            own.and_then(|claims| claims.tpm)
                .map_or(limits.tpm, |tpm| tpm.min(limits.tpm)),
        )
        .unwrap_or(i64::MAX),
    });
    let hold = Hold {
        id: request_id,
        user: &caller.user,
        amount,
        minimum,
        ttl_seconds: state.config.reservation_ttl_seconds,
        key,
        rate,
        session: caller.session.as_deref(),
    };
    match state.ledger.hold(&hold).await {
        Ok(held) => {
            state.metrics.reservation("held");
            Ok(match request.max_output {
                Some(tokens) => tokens,
                None => {
                    (model.price.affordable_completion(held.amount, prompt) / sequences).min(cap)
                }
            })
        }
        Err(error) => {
            state.metrics.reservation("refused");
            Err(error.into())
        }
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
