//! Settlement that survives what happens around it: a non-streamed request whose client leaves
//! once the upstream has it is still charged, and a served reservation whose settlement never
//! came is charged by the expiry sweep (its debit signed and queued), an unserved one released.
mod common;

use common::{ask, eventually, Harness};
use futures_util::StreamExt;
use indexer::ledger::{testing::TempDatabase, Hold};
use serde_json::Value;
use sqlx::{Connection, SqliteConnection};
use std::{sync::atomic::Ordering, time::Duration};

/// A chat request of three prompt words to `model`, sent from a task the test can abort (the
/// client going away).
fn spawn_chat(
    h: &Harness,
    token: String,
    model: &'static str,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let (http, base) = (h.http.clone(), h.base.clone());
    tokio::spawn(async move {
        http.post(format!("{base}/v1/chat/completions"))
            .bearer_auth(token)
            .json(&ask(model, "one two three"))
            .send()
            .await
    })
}

#[tokio::test]
async fn a_non_streamed_request_whose_client_leaves_is_charged_what_the_upstream_did() {
    let h = Harness::start(TempDatabase::sqlite()).await;
    h.fund(1_000).await;
    let token = h.login().await;
    let request = spawn_chat(&h, token, "echo-delayed");
    // The upstream has the request (it answers 300 ms later); then the client goes away.
    eventually("the upstream received the request", || async {
        h.mock.stats.requests.load(Ordering::Relaxed) == 1
    })
    .await;
    request.abort();
    assert!(request.await.is_err_and(|e| e.is_cancelled()));
    // echo: 3 prompt words and a 4-word reply, as the upstream reported.
    eventually("the request is charged", || async {
        h.ledger.balance(&h.user).await.unwrap().debited == 7
    })
    .await;
    let balance = h.settled().await;
    assert_eq!((balance.debited, balance.available), (7, 993));
    assert_eq!(h.debits().await.len(), 1, "its debit is announced");
    h.stop().await;
}

// A client that leaves while its hold waits to be committed leaves nothing reserved: the hold
// still commits, and the request's meter, dropped with the request, releases it.
#[tokio::test]
async fn a_client_gone_while_its_hold_commits_leaves_nothing_reserved() {
    let h = Harness::start(TempDatabase::sqlite()).await;
    h.fund(1_000).await;
    let token = h.login().await;
    // Another process's write transaction keeps the ledger writer's hold waiting.
    let mut blocker = SqliteConnection::connect(&h.db.url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let mut request = spawn_chat(&h, token, "echo");
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut request)
            .await
            .is_err(),
        "the request waits for its hold"
    );
    request.abort();
    assert!(request.await.is_err_and(|e| e.is_cancelled()));
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    // Counted only when a reservation was there to release: the hold did commit.
    eventually("the hold is released", || async {
        h.gateway.state.metrics.reservations_with("released") == 1
    })
    .await;
    let balance = h.settled().await;
    assert_eq!((balance.debited, balance.available), (0, 1_000));
    assert_eq!(h.mock.stats.requests.load(Ordering::Relaxed), 0);
    h.stop().await;
}

#[tokio::test]
async fn the_gateway_marks_a_reservation_served_when_the_upstream_answers() {
    let h = Harness::start(TempDatabase::sqlite()).await;
    h.fund(1_000).await;
    let token = h.login().await;
    // A stream of 24 words, 50 ms apart: the reservation is held for over a second.
    let words = vec!["word"; 22].join(" ");
    let mut body = ask("slow", &words);
    body["stream"] = serde_json::json!(true);
    let response = h.chat(&token, body).await;
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut stream = response.bytes_stream();
    assert!(stream.next().await.is_some(), "the first chunk arrives");
    eventually("the reservation is marked served", || async {
        let reservation = h.ledger.reservation(&id).await.unwrap();
        reservation.is_some_and(|r| r.served_at.is_some())
    })
    .await;
    while stream.next().await.is_some() {}
    assert!(h.settled().await.debited > 0);
    h.stop().await;
}

async fn served_reservations_are_charged_at_expiry(db: TempDatabase) {
    let h = Harness::start(db).await;
    h.fund(1_000).await;
    let now = indexer::ledger::now();
    for (id, amount) in [("req_served", 300), ("req_unserved", 200)] {
        let hold = Hold {
            id,
            user: &h.user,
            amount,
            minimum: None,
            ttl_seconds: 60,
            key: None,
            rate: None,
            session: None,
        };
        h.ledger.hold(&hold).await.unwrap();
    }
    assert!(h.ledger.mark_served("req_served", now).await.unwrap());

    let state = &h.gateway.state;
    let early = proxy::server::sweep_expired(state, now).await.unwrap();
    assert_eq!(
        (early.released, early.charged.len()),
        (0, 0),
        "not expired yet"
    );
    // Just past both expiries, as the holds dated them (the clock may have ticked since `now`).
    let mut expiries = vec![];
    for id in ["req_served", "req_unserved"] {
        expiries.push(h.ledger.reservation(id).await.unwrap().unwrap().expires_at);
    }
    let later = expiries.into_iter().max().unwrap() + 1;
    let expiry = proxy::server::sweep_expired(state, later).await.unwrap();
    assert_eq!(expiry.released, 1, "the unserved one is released");
    assert_eq!(expiry.charged.len(), 1, "the served one is charged");
    let balance = h.ledger.balance(&h.user).await.unwrap();
    assert_eq!(
        (balance.debited, balance.reserved, balance.available),
        (300, 0, 700)
    );

    let debits = h.debits().await;
    assert_eq!(debits.len(), 1);
    assert_eq!(debits[0]["pubkey"], h.proxy_keys.public_key().to_hex());
    let content: Value = serde_json::from_str(debits[0]["content"].as_str().unwrap()).unwrap();
    assert_eq!(content["Transaction"]["tokens"], -300);
    assert_eq!(content["Transaction"]["reference"], "req_served");
    assert!(h.ledger.audit().await.unwrap().is_clean());
    h.stop().await;
}

#[tokio::test]
async fn sqlite_served_reservations_are_charged_at_expiry_and_unserved_released() {
    served_reservations_are_charged_at_expiry(TempDatabase::sqlite()).await;
}

#[tokio::test]
async fn postgres_served_reservations_are_charged_at_expiry_and_unserved_released() {
    let db = TempDatabase::postgres()
        .await
        .expect("create Postgres test database");
    served_reservations_are_charged_at_expiry(db).await;
}
