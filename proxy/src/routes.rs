//! The router, and the small endpoints: models with prices, the caller's balance and usage,
//! readiness and metrics.
use crate::{
    auth::{extract::LiveAuth, login, revoke},
    chat,
    error::{ApiError, BodyLimit},
    state::AppState,
};
use axum::{
    extract::{DefaultBodyLimit, Path, Query, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Extension, Json, Router,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::{sync::Arc, time::Duration};

/// Every route, with the body limit and cross-origin access applied.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.limits.max_body_bytes;
    // Checked when the configuration was loaded.
    let cors = crate::cors::layer(&state.config.cors_origins)
        .ok()
        .flatten();
    let router = Router::new()
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/v1/balance", get(balance))
        .route("/v1/usage", get(usage))
        .route("/v1/statement", get(crate::statement::statement))
        .route("/v1/auth/nonce", post(login::nonce))
        .route("/v1/auth/login", post(login::login))
        .route("/v1/auth/revoke", post(revoke::revoke))
        .route("/v1/auth/logout", post(revoke::logout))
        .route("/v1/cashu/change", post(crate::cashu::change))
        .route("/v1/topup/cashu", post(crate::cashu::topup))
        .route(crate::discovery::PATH, get(crate::discovery::well_known))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .merge(crate::web::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(Extension(BodyLimit(limit)))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state);
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

fn model_json(state: &AppState, id: &str) -> Option<Value> {
    let model = state.models.get(id)?;
    Some(json!({
        "id": model.id,
        "object": "model",
        "created": 0,
        "owned_by": "gateway",
        "pricing": {
            "prompt": model.price.prompt,
            "completion": model.price.completion,
            "unit": "ledger tokens per 1,000,000 tokens",
        },
        "prices": {
            "unit": "base units of the asset per 1,000,000 tokens",
            "assets": crate::pricing::asset_prices(
                model.price,
                state.config.nostr.tokens_per_sol,
                &state.config.tokens,
            ),
        },
        "max_output_tokens": model.max_output_tokens,
    }))
}

async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    let data: Vec<Value> = state
        .config
        .models
        .iter()
        .filter_map(|m| model_json(&state, &m.id))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

async fn model(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    model_json(&state, &id)
        .map(Json)
        .ok_or(ApiError::UnknownModel(id))
}

async fn balance(
    State(state): State<Arc<AppState>>,
    LiveAuth(caller): LiveAuth,
) -> Result<Json<Value>, ApiError> {
    let balance = state.ledger.balance(&caller.user).await?;
    let mut body = json!({
        "user": caller.user,
        "unit": "ledger tokens",
        "credited": balance.credited,
        "debited": balance.debited,
        "reserved": balance.reserved,
        "available": balance.available,
        "paid_in": paid_in(&state, &caller.user).await?,
    });
    if let Some(key) = &caller.key {
        let budget = state.ledger.key_budget(&key.key_id).await?;
        let total = i64::try_from(key.claims.budget).unwrap_or(i64::MAX);
        body["key"] = json!({
            "key_id": key.key_id,
            "budget": total,
            "spent": budget.map_or(0, |b| b.spent),
            "reserved": budget.map_or(0, |b| b.reserved),
            "remaining": budget.map_or(total, |b| b.remaining),
            "expires_at": key.claims.expires_at,
            "single_use": key.claims.single_use,
            "uses": budget.map_or(0, |b| b.uses),
        });
    }
    Ok(Json(body))
}

/// What the wallet paid in each asset, and the ledger tokens that bought: SOL, then tokens.
async fn paid_in(state: &AppState, user: &str) -> Result<Vec<Value>, ApiError> {
    let paid = state.ledger.paid_in(user).await?;
    Ok(paid
        .into_iter()
        .map(|paid| {
            let (asset, symbol, decimals) = match &paid.mint {
                None => ("SOL".to_owned(), Some("SOL".to_owned()), Some(9)),
                Some(mint) => {
                    let token = state.config.tokens.iter().find(|t| t.mint == *mint);
                    (
                        mint.clone(),
                        token.map(|t| t.symbol.clone()),
                        token.map(|t| t.decimals),
                    )
                }
            };
            json!({
                "asset": asset,
                "symbol": symbol,
                "decimals": decimals,
                "amount": paid.amount,
                "credited": paid.tokens,
            })
        })
        .collect())
}

#[derive(Deserialize)]
struct UsageQuery {
    limit: Option<i64>,
}

async fn usage(
    State(state): State<Arc<AppState>>,
    LiveAuth(caller): LiveAuth,
    Query(query): Query<UsageQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(50).clamp(1, 1_000);
    let key_id = caller.key.as_ref().map(|key| key.key_id.as_str());
    let rows = state.ledger.usage(&caller.user, key_id, limit).await?;
    Ok(Json(json!({"object": "list", "data": rows})))
}

/// Ready only when the ledger answers and (if one is configured) a relay is connected.
async fn health(State(state): State<Arc<AppState>>) -> Response {
    let ledger = tokio::time::timeout(Duration::from_secs(2), state.ledger.ping())
        .await
        .is_ok_and(|ping| ping.is_ok());
    let relay = match &state.relay {
        None => None,
        Some(client) => {
            let relays = client.relays().await;
            Some(relays.values().any(|relay| relay.is_connected()))
        }
    };
    let ready = ledger
        && relay.unwrap_or(true)
        && !state.draining.load(std::sync::atomic::Ordering::Relaxed);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ok" } else { "unavailable" },
        "ledger": ledger,
        "relay": relay,
        "models": state.models.len(),
    });
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}
