//! `indexer verify` against the whole stack: a wallet tops up on chain through the controller
//! and spends through the gateway; the books rebuilt from the chain and the relay alone agree
//! with the gateway to the token. Then the ledger and the relay are tampered with, each in its
//! own way, and `verify` names each change with the row or event it concerns.
mod common;

use common::{ask, eventually, init_tracing, login};
use ed25519_dalek::SigningKey;
use indexer::{
    ledger::testing::TempDatabase,
    sandbox::{Sandbox, SandboxConfig, SOL},
    verify::books::Cause,
    wire::DsProxyMessage,
};
use localnet::MockUpstream;
use nostr_sdk::prelude::{EventBuilder, EventId, Keys, Kind, Tag};
use serde_json::{json, Value};
use solana_sdk::signature::Signer;

fn findings(report: &indexer::verify::books::Report) -> Vec<(Cause, String)> {
    report
        .findings
        .iter()
        .map(|f| (f.cause, f.subject.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_books_rebuilt_from_chain_and_relay_agree_and_every_tampering_is_named() {
    init_tracing();
    let db = TempDatabase::sqlite();
    let proxy_keys = Keys::generate();
    let mut stack = Sandbox::start(SandboxConfig {
        proxy_keys: vec![proxy_keys.clone()],
        ..SandboxConfig::new(&db.url)
    })
    .await
    .unwrap();
    let wallet = stack.user(SOL).await.unwrap();
    let user = wallet.pubkey().to_string();
    let request = stack.authorization_request(&wallet, 0, SOL / 100).unwrap();
    stack.publish(&request).await.unwrap();
    let ledger = stack.ledger.clone();
    eventually("the top-up is credited", || {
        let (ledger, user) = (ledger.clone(), user.clone());
        async move { ledger.balance(&user).await.unwrap().available > 0 }
    })
    .await;

    let mock = MockUpstream::start(0).await.unwrap();
    let config = common::config(&mock, &db.url);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (gateway, relay) = sandbox::front(
        &stack,
        listener,
        config,
        proxy_keys.clone(),
        b"a test secret of at least thirty-two bytes".to_vec(),
    )
    .await
    .unwrap();
    let base = format!("http://{}", gateway.addr);
    let http = reqwest::Client::new();
    // The keys and rates a check needs are published.
    let info: Value = http
        .get(format!("{base}/.well-known/llm-gateway"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        info["nostr"]["proxies"],
        json!([proxy_keys.public_key().to_hex()])
    );
    assert_eq!(
        info["nostr"]["controllers"],
        json!([stack.controller_keys.public_key().to_hex()])
    );
    assert_eq!(info["rates"].as_array().unwrap().len(), 1);
    assert_eq!(info["rates"][0]["tokens_per_sol"], 1_000_000);
    let token = login(&http, &base, &SigningKey::from_bytes(wallet.secret_bytes())).await;
    let mut request_ids = Vec::new();
    for text in ["first", "second"] {
        let response = http
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(&token)
            .json(&ask("echo", text))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        request_ids.push(
            response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    eventually("every announcement reaches the relay", || {
        let ledger = ledger.clone();
        async move { ledger.outbox_backlog().await.unwrap() == 0 }
    })
    .await;

    let now = indexer::ledger::now();
    let report = common::verify_at(&base, Some(&token), now).await;
    assert!(report.reconciles(), "{}", indexer::verify::render(&report));
    let books = &report.users[&user];
    let balance = stack.ledger.balance(&user).await.unwrap();
    assert_eq!(
        (books.credited, books.debited),
        (balance.credited, balance.debited)
    );
    assert_eq!(
        books.credited, 10_000,
        "0.01 SOL at 1,000,000 tokens per SOL"
    );
    assert_eq!((books.credits, books.debits), (1, 2));

    // Tampering, each of its own kind.
    let rows = stack.ledger.statement(&user, "", 100).await.unwrap();
    let debit_row = |request: &str| {
        rows.iter()
            .find(|row| row.reference.as_deref() == Some(request))
            .unwrap()
            .clone()
    };
    let (altered, lost) = (debit_row(&request_ids[0]), debit_row(&request_ids[1]));
    let credit_row = rows
        .iter()
        .find(|row| row.kind == "credit")
        .unwrap()
        .clone();
    let sql = |statement: String| {
        let url = db.url.clone();
        async move {
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query(&statement).execute(&mut conn).await.unwrap();
        }
    };
    // A credit inserted straight into the ledger database.
    sql(format!(
        "INSERT INTO entries (id, user_key, tokens, kind, status, reference, created_at, applied_at)
         VALUES ('credit:inserted', '{user}', 777, 'credit', 'applied', 'inserted', 1, 1)"
    ))
    .await;
    sql(format!(
        "UPDATE balances SET credited = credited + 777 WHERE user_key = '{user}'"
    ))
    .await;
    // A debit altered, and a credit's amount changed.
    sql(format!(
        "UPDATE entries SET tokens = tokens + 1 WHERE id = '{}'",
        altered.id
    ))
    .await;
    sql(format!(
        "UPDATE entries SET tokens = tokens + 5 WHERE id = '{}'",
        credit_row.id
    ))
    .await;
    // A forged credit from another key.
    let forger = Keys::generate();
    let forged = indexer::nostr::events::sign_message(
        &forger,
        &stack.session,
        &stack.machine,
        &DsProxyMessage::Transaction {
            user: user.clone(),
            tokens: 1_000_000,
            reference: Some("made-up".into()),
            model: None,
            rail: None,
        },
    )
    .unwrap();
    relay.send_event(&forged).await.unwrap();
    // An event the relay lost: the second debit's, deleted by its author (NIP-09).
    let lost_event = EventId::from_hex(lost.event_id.as_deref().unwrap()).unwrap();
    let deletion = EventBuilder::new(Kind::EventDeletion, "")
        .tags([Tag::event(lost_event)])
        .sign_with_keys(&proxy_keys)
        .unwrap();
    relay.send_event(&deletion).await.unwrap();

    // Checked as a minute later: the lost debit's row is past the time its event had to
    // reach the relay.
    let later = indexer::ledger::now() + 61;
    let report = common::verify_at(&base, Some(&token), later).await;
    let found = findings(&report);
    for expected in [
        (Cause::Unannounced, "credit:inserted".to_owned()),
        (Cause::RowDiffers, altered.id.clone()),
        (Cause::RowDiffers, credit_row.id.clone()),
        (Cause::UnknownKey, forged.id.to_hex()),
        (Cause::MissingEvent, lost.id.clone()),
        (Cause::BalanceDiffers, user.clone()),
    ] {
        assert!(found.contains(&expected), "{expected:?} not in {found:?}");
    }
    assert_eq!(found.len(), 6, "{}", indexer::verify::render(&report));
    assert!(!report.reconciles());
    let books = &report.users[&user];
    assert_eq!(books.debits, 1, "the lost debit is not in the public books");

    gateway.shutdown().await;
    relay.shutdown().await;
    stack.stop().await;
    stack.ledger.close().await;
    db.remove().await;
}
