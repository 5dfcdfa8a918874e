//! The gateway over real HTTP against the mock upstream: charging, every error status, and
//! delegated keys past their expiry, budget, model or single use (login and audiences:
//! `auth.rs`).
mod common;

use common::{ask, Harness};
use indexer::ledger::testing::TempDatabase;
use serde_json::{json, Value};

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("errors are JSON");
    assert!(
        body["error"]["message"].is_string(),
        "OpenAI-shaped: {body}"
    );
    assert!(body["error"]["type"].is_string(), "OpenAI-shaped: {body}");
    (status, body)
}

#[tokio::test]
async fn a_request_is_charged_its_reported_usage_and_the_debit_is_queued_signed() {
    let h = Harness::start(TempDatabase::sqlite()).await;
    h.fund(1_000).await;
    let token = h.login().await;
    let response = h.chat(&token, ask("echo", "hello there")).await;
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "echo: hello there"
    );
    let usage = &body["usage"];
    let cost =
        usage["prompt_tokens"].as_i64().unwrap() + usage["completion_tokens"].as_i64().unwrap();

    let balance = h.settled().await;
    assert_eq!(balance.debited, cost, "charged exactly the reported usage");
    assert_eq!(balance.available, 1_000 - cost);
    let debits = h.debits().await;
    assert_eq!(debits.len(), 1);
    assert_eq!(debits[0]["pubkey"], h.proxy_keys.public_key().to_hex());
    let content: Value = serde_json::from_str(debits[0]["content"].as_str().unwrap()).unwrap();
    assert_eq!(
        content,
        json!({"Transaction": {"user": h.user, "tokens": -cost, "reference": request_id, "model": "echo"}})
    );
    let usage_page: Value = h
        .http
        .get(format!("{}/v1/usage", h.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage_page["data"][0]["request_id"], request_id);
    assert_eq!(usage_page["data"][0]["cost"], cost);
    h.stop().await;
}

#[tokio::test]
async fn without_max_tokens_the_gateway_forwards_what_the_balance_affords() {
    let h = Harness::start(TempDatabase::sqlite()).await;
    h.fund(40).await;
    let token = h.login().await;
    let body = ask("echo", "hi");
    let prompt = proxy::tokens::prompt_bound(body.as_object().unwrap());
    assert_eq!(h.chat(&token, body).await.status(), 200);
    let forwarded = h.mock.stats.last_request.lock().unwrap().clone().unwrap();
    assert_eq!(
        forwarded["max_tokens"],
        40 - prompt,
        "prompt tokens are paid for first"
    );
    assert_eq!(forwarded["model"], "echo");
    h.stop().await;
}

#[tokio::test]
async fn models_are_listed_with_their_prices() {
    let h = Harness::start(TempDatabase::sqlite()).await;
    let models: Value = h
        .http
        .get(format!("{}/v1/models", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let echo = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "echo")
        .unwrap();
    assert_eq!(echo["pricing"]["prompt"], 1_000_000);
    assert_eq!(echo["pricing"]["completion"], 1_000_000);
    let health = h
        .http
        .get(format!("{}/health", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    h.stop().await;
}

#[tokio::test]
async fn every_error_status_is_openai_shaped() {
    let h = Harness::start_with(TempDatabase::sqlite(), |c| c.limits.max_body_bytes = 4_096).await;
    h.fund(10_000).await;
    let token = h.login().await;
    let url = format!("{}/v1/chat/completions", h.base);

    // 400: not JSON, no messages, max_tokens over the model's cap.
    let raw = h
        .http
        .post(&url)
        .bearer_auth(&token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(raw).await.0, 400);
    let (status, _) = error_of(h.chat(&token, json!({"model": "echo"})).await).await;
    assert_eq!(status, 400);
    let mut too_long = ask("echo", "hi");
    too_long["max_tokens"] = json!(101);
    assert_eq!(error_of(h.chat(&token, too_long).await).await.0, 400);

    // 401: no credential, a forged one.
    let anonymous = h
        .http
        .post(&url)
        .json(&ask("echo", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(anonymous).await.0, 401);
    let forged = token.replace("gws1.", "gws1.x");
    assert_eq!(
        error_of(h.chat(&forged, ask("echo", "hi")).await).await.0,
        401
    );

    // 404: unknown model and unknown path.
    let (status, body) = error_of(h.chat(&token, ask("gpt-9", "hi")).await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("model_not_found"))
    );
    let path = h
        .http
        .get(format!("{}/v1/nothing", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(path).await.0, 404);

    // 413: a body over the limit.
    let huge = ask("echo", &"x".repeat(10_000));
    assert_eq!(error_of(h.chat(&token, huge).await).await.0, 413);

    // 502: every upstream down or failing; 504: the upstream never answers.
    let (status, _) = error_of(h.chat(&token, ask("dead", "hi")).await).await;
    assert_eq!(status, 502);
    let (status, _) = error_of(h.chat(&token, ask("hang", "hi")).await).await;
    assert_eq!(status, 504);
    // The upstream's own 4xx is passed through, not retried.
    let (status, body) = error_of(h.chat(&token, ask("refuse", "hi")).await).await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (400, Some("mock refuses"))
    );

    // Failed calls cost nothing and leave nothing reserved.
    let balance = h.settled().await;
    assert_eq!((balance.debited, balance.available), (0, 10_000));
    h.stop().await;
}

#[tokio::test]
async fn an_unfunded_caller_gets_402_with_the_amount_needed() {
    let h = Harness::start(TempDatabase::sqlite()).await;
    h.fund(5).await;
    let token = h.login().await;
    let (status, body) = error_of(
        h.chat(&token, ask("echo", "hello there, how are you?"))
            .await,
    )
    .await;
    assert_eq!(status, 402);
    assert_eq!(body["error"]["code"], "insufficient_balance");
    assert!(body["error"]["needed"].as_i64().unwrap() > 5);
    assert_eq!(body["error"]["available"], 5);
    let mut capped = ask("echo", "hi");
    capped["max_tokens"] = json!(50);
    let (status, body) = error_of(h.chat(&token, capped).await).await;
    assert_eq!(
        (status, body["error"]["available"].as_i64()),
        (402, Some(5))
    );
    h.stop().await;
}

#[tokio::test]
async fn a_caller_over_its_requests_per_minute_gets_429() {
    let h = Harness::start_with(TempDatabase::sqlite(), |c| c.limits.rpm = 2).await;
    h.fund(10_000).await;
    let token = h.login().await;
    // Two per minute: a third within the minute is refused (a window turning over mid-test
    // can let two more through, never more).
    let mut statuses = vec![];
    for i in 0..5 {
        let response = h.chat(&token, ask("echo", &i.to_string())).await;
        if response.status() == 429 {
            assert!(response.headers().contains_key("retry-after"));
            assert_eq!(
                error_of(response).await.1["error"]["code"],
                "rate_limit_exceeded"
            );
            break;
        }
        statuses.push(response.status().as_u16());
    }
    assert!(
        statuses.len() >= 2 && statuses.len() <= 4,
        "429 after 2 requests: {statuses:?}"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_failing_upstream_falls_back_to_the_next() {
    let h = Harness::start(TempDatabase::sqlite()).await;
    h.fund(1_000).await;
    let token = h.login().await;
    let response = h.chat(&token, ask("fallback", "hi")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        h.mock
            .stats
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    h.stop().await;
}

#[tokio::test]
async fn delegated_keys_are_held_to_their_expiry_model_budget_and_single_use() {
    let h = Harness::start(TempDatabase::sqlite()).await;
    h.fund(100_000).await;

    let mut expired = h.claims();
    expired.expires_at = indexer::ledger::now() - 1;
    let (status, _) = error_of(h.chat(&h.key(&expired), ask("echo", "hi")).await).await;
    assert_eq!(status, 401);

    let mut echo_only = h.claims();
    echo_only.models = Some(vec!["echo".into()]);
    let key = h.key(&echo_only);
    assert_eq!(h.chat(&key, ask("echo", "hi")).await.status(), 200);
    assert_eq!(
        error_of(h.chat(&key, ask("no-usage", "hi")).await).await.0,
        403
    );

    let mut small = h.claims();
    small.budget = 30;
    let key = h.key(&small);
    let mut request = ask("echo", "hi");
    request["max_tokens"] = json!(10);
    assert_eq!(h.chat(&key, request.clone()).await.status(), 200);
    h.settled().await;
    request["max_tokens"] = json!(25);
    let (status, body) = error_of(h.chat(&key, request).await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (402, Some("key_budget_exhausted"))
    );
    // Without max_tokens the key's remaining budget sets it.
    assert_eq!(h.chat(&key, ask("echo", "hi")).await.status(), 200);
    h.settled().await;
    let budget = h
        .ledger
        .key_budget(&proxy::auth::delegated::peek(&key).unwrap().key_id)
        .await
        .unwrap()
        .unwrap();
    assert!(budget.spent <= 30, "never more than the budget: {budget:?}");

    let mut once = h.claims();
    once.single_use = true;
    let key = h.key(&once);
    assert_eq!(h.chat(&key, ask("echo", "hi")).await.status(), 200);
    assert_eq!(error_of(h.chat(&key, ask("echo", "hi")).await).await.0, 401);

    let mut capped = h.claims();
    capped.max_tokens = Some(3);
    let key = h.key(&capped);
    let mut over = ask("echo", "hi");
    over["max_tokens"] = json!(4);
    assert_eq!(error_of(h.chat(&key, over).await).await.0, 400);
    assert_eq!(h.chat(&key, ask("echo", "hi")).await.status(), 200);
    let forwarded = h.mock.stats.last_request.lock().unwrap().clone().unwrap();
    assert_eq!(
        forwarded["max_tokens"], 3,
        "the key's cap is forwarded upstream"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_delegated_key_reports_usage_to_its_callback() {
    use axum::{routing::post, Json, Router};
    let (sender, mut received) = tokio::sync::mpsc::channel::<Value>(4);
    let app = Router::new().route(
        "/usage",
        post(move |Json(body): Json<Value>| {
            let sender = sender.clone();
            async move {
                let _ = sender.send(body).await;
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let callback = format!("http://{}/usage", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let h = Harness::start_with(TempDatabase::sqlite(), |c| {
        c.auth.callbacks = true;
        c.auth.callback_allow = vec!["127.0.0.1".into()];
    })
    .await;
    h.fund(1_000).await;
    let mut claims = h.claims();
    claims.callback_url = Some(callback);
    let response = h.chat(&h.key(&claims), ask("echo", "hello")).await;
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    let report = tokio::time::timeout(std::time::Duration::from_secs(5), received.recv())
        .await
        .expect("callback arrives")
        .unwrap();
    assert_eq!(report["request_id"], request_id);
    assert_eq!(report["model"], "echo");
    assert_eq!(
        report["usage"]["total_tokens"],
        body["usage"]["total_tokens"]
    );
    assert_eq!(report["cost"], body["usage"]["total_tokens"]);
    h.stop().await;
}

/// A cross-origin preflight for a paid chat request from a page on `origin`.
async fn preflight(h: &Harness, origin: &str) -> reqwest::Response {
    h.http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/chat/completions", h.base),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,payment-signature",
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn pages_on_other_origins_may_call_the_api_and_read_what_paying_needs() {
    let h = Harness::start(TempDatabase::sqlite()).await;
    let asked = preflight(&h, "https://agent.example").await;
    assert!(asked.status().is_success(), "{}", asked.status());
    assert_eq!(asked.headers()["access-control-allow-origin"], "*");
    let allowed = asked.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap();
    for header in ["authorization", "content-type", "payment-signature"] {
        assert!(allowed.contains(header), "{header} in {allowed}");
    }
    // The answer itself: readable from that page, with the headers a paying client reads.
    let answer = h
        .http
        .post(format!("{}/v1/chat/completions", h.base))
        .header("origin", "https://agent.example")
        .json(&ask("echo", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    assert_eq!(answer.headers()["access-control-allow-origin"], "*");
    let exposed = answer.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    for header in ["payment-required", "payment-response", "x-request-id"] {
        assert!(exposed.contains(header), "{header} in {exposed}");
    }
    h.stop().await;

    // An operator who lists origins answers only those; one who lists none, no page.
    let h = Harness::start_with(TempDatabase::sqlite(), |config| {
        config.cors_origins = vec!["https://app.example".into()];
    })
    .await;
    let listed = preflight(&h, "https://app.example").await;
    assert_eq!(
        listed.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let other = preflight(&h, "https://elsewhere.example").await;
    assert!(other.headers().get("access-control-allow-origin").is_none());
    h.stop().await;
    let h = Harness::start_with(TempDatabase::sqlite(), |config| {
        config.cors_origins = vec![];
    })
    .await;
    let none = preflight(&h, "https://agent.example").await;
    assert!(none.headers().get("access-control-allow-origin").is_none());
    h.stop().await;
}
