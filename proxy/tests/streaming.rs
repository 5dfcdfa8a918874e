//! Streams: usage asked for and charged, counted when it never comes, nothing charged when the
//! upstream fails before the first byte, what was delivered charged when it fails midway or the
//! client leaves, and in-flight streams settled by a graceful shutdown.
mod common;

use common::{ask, Harness};
use futures_util::StreamExt;
use indexer::ledger::testing::TempDatabase;
use serde_json::{json, Value};
use std::{sync::atomic::Ordering, time::Duration};

fn streaming(model: &str, text: &str) -> Value {
    let mut body = ask(model, text);
    body["stream"] = json!(true);
    body
}

/// The `data:` payloads of an SSE body.
fn events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_stream_is_charged_the_usage_the_gateway_asked_for() {
    let h = Harness::start(TempDatabase::sqlite()).await;
    h.fund(1_000).await;
    let token = h.login().await;

    let response = h.chat(&token, streaming("echo", "one two three")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let body = response.text().await.unwrap();
    let forwarded = h.mock.stats.last_request.lock().unwrap().clone().unwrap();
    assert_eq!(
        forwarded["stream_options"]["include_usage"], true,
        "usage requested upstream"
    );
    let events = events(&body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(
        !body.contains("\"usage\""),
        "the client did not ask for the usage chunk, so it does not get it"
    );
    // echo: 3 prompt words, 4 reply words.
    assert_eq!(h.settled().await.debited, 7);

    let mut asked = streaming("echo", "one two three");
    asked["stream_options"] = json!({"include_usage": true});
    let body = h.chat(&token, asked).await.text().await.unwrap();
    assert!(body.contains("\"usage\""), "asked for, so forwarded");
    assert_eq!(h.settled().await.debited, 14);
    h.stop().await;
}

#[tokio::test]
async fn a_stream_without_usage_is_charged_what_it_delivered() {
    let h = Harness::start(TempDatabase::sqlite()).await;
    h.fund(1_000).await;
    let token = h.login().await;
    let body = streaming("no-usage", "alpha beta gamma delta");
    let prompt = proxy::tokens::count_prompt(body.as_object().unwrap());
    let text = h.chat(&token, body).await.text().await.unwrap();
    assert!(text.contains("delta"));
    let delivered = proxy::tokens::count("echo: alpha beta gamma delta");
    let balance = h.settled().await;
    assert_eq!(balance.debited as u64, prompt + delivered, "never free");
    h.stop().await;
}

#[tokio::test]
async fn an_upstream_failing_before_the_first_byte_costs_nothing() {
    let h = Harness::start(TempDatabase::sqlite()).await;
    h.fund(1_000).await;
    let token = h.login().await;
    let response = h.chat(&token, streaming("dead", "hi")).await;
    assert_eq!(response.status(), 502);
    let balance = h.settled().await;
    assert_eq!((balance.debited, balance.available), (0, 1_000));
    h.stop().await;
}

#[tokio::test]
async fn an_upstream_failing_midstream_is_charged_for_what_was_delivered() {
    let h = Harness::start(TempDatabase::sqlite()).await;
    h.fund(1_000).await;
    let token = h.login().await;
    let body = streaming("midstream", "one two three four five");
    let prompt = proxy::tokens::count_prompt(body.as_object().unwrap());
    let text = h.chat(&token, body).await.text().await.unwrap();
    let events = events(&text);
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(
        last["error"]["code"], "upstream_error",
        "the client is told: {text}"
    );
    // Two chunks arrived: the role chunk and "echo:".
    let balance = h.settled().await;
    assert_eq!(
        balance.debited as u64,
        prompt + proxy::tokens::count("echo:")
    );
    h.stop().await;
}

#[tokio::test]
async fn a_client_that_leaves_stops_the_upstream_and_pays_for_what_it_got() {
    let h = Harness::start(TempDatabase::sqlite()).await;
    h.fund(10_000).await;
    let token = h.login().await;
    let words: Vec<String> = (0..60).map(|i| format!("w{i}")).collect();
    let body = streaming("slow", &words.join(" "));
    let prompt = proxy::tokens::count_prompt(body.as_object().unwrap());
    let response = h.chat(&token, body).await;
    let mut stream = response.bytes_stream();
    let mut received = 0;
    while received < 3 {
        stream.next().await.unwrap().unwrap();
        received += 1;
    }
    drop(stream);
    let balance = h.settled().await;
    let charged = balance.debited as u64;
    assert!(charged > prompt, "what was delivered is charged: {charged}");
    assert!(
        charged < prompt + 60,
        "what was not delivered is not: {charged}"
    );
    for _ in 0..100 {
        if h.mock.stats.streams_abandoned.load(Ordering::Relaxed) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        h.mock.stats.streams_abandoned.load(Ordering::Relaxed),
        1,
        "the upstream call was stopped"
    );
    h.stop().await;
}

#[tokio::test]
async fn shutdown_cuts_streams_after_the_grace_period_and_settles_them() {
    let h = Harness::start_with(TempDatabase::sqlite(), |c| {
        c.limits.shutdown_grace_seconds = 0
    })
    .await;
    h.fund(10_000).await;
    let token = h.login().await;
    let words: Vec<String> = (0..60).map(|i| format!("w{i}")).collect();
    let response = h.chat(&token, streaming("slow", &words.join(" "))).await;
    let mut stream = response.bytes_stream();
    stream.next().await.unwrap().unwrap();
    let reader = tokio::spawn(async move {
        let mut rest = Vec::new();
        while let Some(Ok(chunk)) = stream.next().await {
            rest.extend_from_slice(&chunk);
        }
        String::from_utf8_lossy(&rest).into_owned()
    });
    let (ledger, user) = (h.ledger.clone(), h.user.clone());
    h.gateway.shutdown().await;
    let balance = ledger.balance(&user).await.unwrap();
    assert_eq!(balance.reserved, 0, "settled before shutdown returned");
    assert!(balance.debited > 0, "what was delivered is charged");
    let rest = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .unwrap()
        .unwrap();
    assert!(
        rest.contains("shutting down"),
        "the client is told why: {rest}"
    );
    ledger.close().await;
    h.db.remove().await;
}
