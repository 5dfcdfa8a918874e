//! Usage callbacks: off unless the operator turns them on; a loopback (or private) target is
//! refused unless allow-listed; a redirect is never followed.
mod common;

use axum::{
    http::{header, StatusCode},
    response::IntoResponse,
    routing::post,
    Json, Router,
};
use common::{ask, eventually, Harness};
use indexer::ledger::testing::TempDatabase;
use proxy::config::Config;
use serde_json::Value;
use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

/// A local webhook receiver: counts its hits and keeps the last body.
struct Receiver {
    url: String,
    hits: Arc<AtomicU64>,
    last: Arc<std::sync::Mutex<Option<Value>>>,
}

async fn receiver() -> Receiver {
    let hits = Arc::new(AtomicU64::new(0));
    let last = Arc::new(std::sync::Mutex::new(None));
    let (counter, keep) = (hits.clone(), last.clone());
    let app = Router::new().route(
        "/usage",
        post(move |Json(body): Json<Value>| async move {
            counter.fetch_add(1, Ordering::SeqCst);
            *keep.lock().unwrap() = Some(body);
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/usage", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { url, hits, last }
}

/// Makes one request with a delegated key calling back `url`; returns its request id.
async fn request_with_callback(h: &Harness, url: &str) -> String {
    h.fund(1_000).await;
    let mut claims = h.claims();
    claims.callback_url = Some(url.to_owned());
    let response = h.chat(&h.key(&claims), ask("echo", "hello")).await;
    assert_eq!(response.status(), 200);
    response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

async fn outcome(h: &Harness, outcome: &'static str) {
    eventually(outcome, || async {
        h.gateway.state.metrics.callbacks_with(outcome) == 1
    })
    .await;
}

#[tokio::test]
async fn usage_callbacks_are_off_by_default() {
    assert!(!Config::default().auth.callbacks);
    let target = receiver().await;
    let h = Harness::start(TempDatabase::sqlite()).await;
    request_with_callback(&h, &target.url).await;
    outcome(&h, "disabled").await;
    assert_eq!(target.hits.load(Ordering::SeqCst), 0);
    h.stop().await;
}

#[tokio::test]
async fn a_loopback_callback_is_refused_unless_allow_listed() {
    let target = receiver().await;
    let h = Harness::start_with(TempDatabase::sqlite(), |c| c.auth.callbacks = true).await;
    request_with_callback(&h, &target.url).await;
    outcome(&h, "refused").await;
    assert_eq!(target.hits.load(Ordering::SeqCst), 0, "never reached");
    // A name resolving to loopback is refused the same way.
    let by_name = target.url.replace("127.0.0.1", "localhost");
    request_with_callback(&h, &by_name).await;
    eventually("refused by name", || async {
        h.gateway.state.metrics.callbacks_with("refused") == 2
    })
    .await;
    assert_eq!(target.hits.load(Ordering::SeqCst), 0, "never reached");
    h.stop().await;

    let h = Harness::start_with(TempDatabase::sqlite(), |c| {
        c.auth.callbacks = true;
        c.auth.callback_allow = vec!["127.0.0.0/8".into(), "localhost".into()];
    })
    .await;
    let request_id = request_with_callback(&h, &target.url).await;
    outcome(&h, "delivered").await;
    let report = target.last.lock().unwrap().clone().unwrap();
    assert_eq!(report["request_id"], request_id);
    // An allow-listed name is delivered to the addresses it was checked at.
    let request_id = request_with_callback(&h, &by_name).await;
    eventually("delivered by name", || async {
        h.gateway.state.metrics.callbacks_with("delivered") == 2
    })
    .await;
    let report = target.last.lock().unwrap().clone().unwrap();
    assert_eq!(report["request_id"], request_id);
    assert_eq!(target.hits.load(Ordering::SeqCst), 2);
    h.stop().await;
}

#[tokio::test]
async fn a_callback_redirect_is_not_followed() {
    let target = receiver().await;
    let redirects = Arc::new(AtomicU64::new(0));
    let (counter, location) = (redirects.clone(), target.url.clone());
    let app = Router::new().route(
        "/usage",
        post(move || async move {
            counter.fetch_add(1, Ordering::SeqCst);
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, location)],
            )
                .into_response()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirector = format!("http://{}/usage", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let h = Harness::start_with(TempDatabase::sqlite(), |c| {
        c.auth.callbacks = true;
        c.auth.callback_allow = vec!["127.0.0.1".into()];
    })
    .await;
    request_with_callback(&h, &redirector).await;
    outcome(&h, "failed").await;
    assert_eq!(
        redirects.load(Ordering::SeqCst),
        1,
        "the redirector was called"
    );
    assert_eq!(
        target.hits.load(Ordering::SeqCst),
        0,
        "its redirect was not followed"
    );
    h.stop().await;
}
