//! The output bound: whichever field a client bounds the output with (`max_tokens`,
//! `max_completion_tokens`, both, in any order), and however many sequences it asks for (`n`,
//! `best_of`), the upstream is sent exactly the bound that was reserved for, in the one field it
//! reads, and the charge follows what the upstream did within that bound.
mod common;

use common::{ask, Harness};
use indexer::ledger::testing::TempDatabase;
use proxy::config::BoundField;
use serde_json::{json, Value};

/// A prompt whose echo is far longer than the bounds used here.
const LONG: &str = "one two three four five six seven eight nine ten eleven twelve";

/// Sends `body`, and returns the amount reserved while it was in flight and the response text.
async fn reserved_while_in_flight(h: &Harness, token: &str, body: Value) -> (i64, String) {
    let request = {
        let (http, base, token) = (h.http.clone(), h.base.clone(), token.to_owned());
        tokio::spawn(async move {
            let response = http
                .post(format!("{base}/v1/chat/completions"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.text().await.unwrap()
        })
    };
    let mut reserved = 0;
    for _ in 0..1_000 {
        reserved = h.ledger.balance(&h.user).await.unwrap().reserved;
        if reserved > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(
        reserved > 0,
        "the reservation is held while the upstream works"
    );
    (reserved, request.await.unwrap())
}

fn forwarded(h: &Harness) -> Value {
    h.mock.stats.last_request.lock().unwrap().clone().unwrap()
}

#[tokio::test]
async fn both_bound_fields_in_either_order_are_forwarded_as_the_one_reserved_bound() {
    let h = Harness::start(TempDatabase::sqlite()).await;
    h.fund(100_000).await;
    let token = h.login().await;
    let mut debited = 0;
    for stream in [false, true] {
        for (max_tokens, max_completion_tokens) in [(4, 40), (40, 4)] {
            let mut body = ask("echo-delayed", LONG);
            body["max_tokens"] = json!(max_tokens);
            body["max_completion_tokens"] = json!(max_completion_tokens);
            body["stream"] = json!(stream);
            let prompt = proxy::tokens::prompt_bound(body.as_object().unwrap());
            let (reserved, _) = reserved_while_in_flight(&h, &token, body).await;
            let case = format!("stream {stream}, {max_tokens} / {max_completion_tokens}");
            assert_eq!(reserved as u64, prompt + 4, "reserved for 4: {case}");
            let sent = forwarded(&h);
            assert_eq!(sent["max_tokens"], 4, "the bound is forwarded: {case}");
            assert!(
                sent.get("max_completion_tokens").is_none(),
                "no other bound reaches the upstream: {sent} ({case})"
            );
            // The mock counts words: 12 prompt words, a reply cut to the 4 it was allowed.
            debited += 12 + 4;
            assert_eq!(h.settled().await.debited, debited, "charged: {case}");
        }
    }
    h.stop().await;
}

#[tokio::test]
async fn an_upstream_that_reads_max_completion_tokens_gets_the_bound_there_only() {
    let h = Harness::start_with(TempDatabase::sqlite(), |c| {
        let mut model = c.models[0].clone();
        model.id = "echo-new".into();
        model.upstreams[0].bound_field = BoundField::MaxCompletionTokens;
        c.models.push(model);
    })
    .await;
    h.fund(100_000).await;
    let token = h.login().await;
    for stream in [false, true] {
        let mut body = ask("echo-new", LONG);
        body["max_tokens"] = json!(3);
        body["stream"] = json!(stream);
        assert_eq!(h.chat(&token, body).await.status(), 200);
        let sent = forwarded(&h);
        assert_eq!(sent["max_completion_tokens"], 3);
        assert!(sent.get("max_tokens").is_none(), "{sent}");
    }
    // Without a client bound the affordable one goes in the same field.
    assert_eq!(h.chat(&token, ask("echo-new", "hi")).await.status(), 200);
    assert_eq!(
        forwarded(&h)["max_completion_tokens"],
        100,
        "the model's cap"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_delegated_keys_cap_holds_whichever_field_is_used() {
    let h = Harness::start(TempDatabase::sqlite()).await;
    h.fund(100_000).await;
    let mut claims = h.claims();
    claims.max_tokens = Some(3);
    let key = h.key(&claims);
    for field in ["max_tokens", "max_completion_tokens"] {
        let mut over = ask("echo", LONG);
        over[field] = json!(4);
        let response = h.chat(&key, over).await;
        assert_eq!(response.status(), 400, "{field} over the key's cap");
    }
    // A small bound in one field does not let a large one through in the other.
    let mut mixed = ask("echo", LONG);
    mixed["max_tokens"] = json!(2);
    mixed["max_completion_tokens"] = json!(1_000);
    assert_eq!(h.chat(&key, mixed).await.status(), 200);
    let sent = forwarded(&h);
    assert_eq!(sent["max_tokens"], 2);
    assert!(sent.get("max_completion_tokens").is_none(), "{sent}");
    h.stop().await;
}

#[tokio::test]
async fn n_and_best_of_multiply_the_reservation_and_are_forwarded() {
    let h = Harness::start(TempDatabase::sqlite()).await;
    h.fund(100_000).await;
    let token = h.login().await;
    for stream in [false, true] {
        let mut body = ask("echo-delayed", LONG);
        body["max_tokens"] = json!(4);
        body["n"] = json!(3);
        body["stream"] = json!(stream);
        let prompt = proxy::tokens::prompt_bound(body.as_object().unwrap());
        let (reserved, _) = reserved_while_in_flight(&h, &token, body).await;
        assert_eq!(reserved as u64, prompt + 3 * 4, "three choices of 4");
        assert_eq!(forwarded(&h)["n"], 3);
        h.settled().await;

        let mut body = ask("echo-delayed", LONG);
        body["max_tokens"] = json!(4);
        body["best_of"] = json!(5);
        body["stream"] = json!(stream);
        let (reserved, _) = reserved_while_in_flight(&h, &token, body).await;
        assert_eq!(reserved as u64, prompt + 5 * 4, "five sequences generated");
        assert_eq!(forwarded(&h)["best_of"], 5);
        h.settled().await;
    }
    let mut too_many = ask("echo", "hi");
    too_many["n"] = json!(17);
    assert_eq!(h.chat(&token, too_many).await.status(), 400);
    h.stop().await;
}

#[tokio::test]
async fn without_a_bound_n_shares_what_the_balance_affords() {
    let h = Harness::start(TempDatabase::sqlite()).await;
    h.fund(60).await;
    let token = h.login().await;
    let mut body = ask("echo", "hi");
    body["n"] = json!(2);
    let prompt = proxy::tokens::prompt_bound(body.as_object().unwrap());
    assert_eq!(h.chat(&token, body).await.status(), 200);
    assert_eq!(forwarded(&h)["max_tokens"], (60 - prompt) / 2);
    h.stop().await;
}
