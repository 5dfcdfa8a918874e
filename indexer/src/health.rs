//! The indexer's `/health` and `/metrics` endpoints, like the gateway's: a load balancer or a
//! supervisor asks `/health` (503 when the ledger does not answer or no relay is connected), and
//! Prometheus scrapes `/metrics` (text format).
use crate::{ledger::Ledger, metrics::Metrics, nostr::queue::RequestQueue};
use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use nostr_sdk::prelude::Client;
use std::{sync::Arc, time::Duration};
use tokio::{net::TcpListener, sync::watch};

/// How long `/health` waits for the ledger before calling it down.
const LEDGER_TIMEOUT: Duration = Duration::from_secs(2);

/// What the endpoints look at.
#[derive(Clone)]
pub struct HealthState {
    /// Rendered on `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Pinged by `/health`.
    pub ledger: Ledger,
    /// The watcher's relay connection.
    pub relays: Client,
    /// The controller's queue, for its depth.
    pub requests: Option<RequestQueue>,
}

/// The routes, for serving or for tests.
pub fn router(state: HealthState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves the endpoints on `listener` until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    state: HealthState,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let stopped = async move {
        while !*stop.borrow() {
            if stop.changed().await.is_err() {
                return;
            }
        }
    };
    axum::serve(listener, router(state))
        .with_graceful_shutdown(stopped)
        .await
}

async fn connected_relays(client: &Client) -> usize {
    client
        .relays()
        .await
        .values()
        .filter(|relay| relay.is_connected())
        .count()
}

async fn health(State(state): State<HealthState>) -> Response {
    let ledger = match tokio::time::timeout(LEDGER_TIMEOUT, state.ledger.ping()).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(error)) => error.to_string(),
        Err(_) => "timed out".to_owned(),
    };
    let relays = connected_relays(&state.relays).await;
    let healthy = ledger == "ok" && relays > 0;
    let status = match healthy {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    let body = serde_json::json!({
        "status": if healthy { "ok" } else { "unavailable" },
        "ledger": ledger,
        "relays_connected": relays,
    });
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<HealthState>) -> Response {
    let m = &state.metrics;
    if let Ok(Ok(depth)) = tokio::time::timeout(LEDGER_TIMEOUT, state.ledger.outbox_backlog()).await
    {
        m.outbox_depth.set(depth);
    }
    if let Some(queue) = &state.requests {
        m.request_queue_depth
            .set(i64::try_from(queue.depth()).unwrap_or(i64::MAX));
    }
    m.relays_connected
        .set(i64::try_from(connected_relays(&state.relays).await).unwrap_or(i64::MAX));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
        .into_response()
}
