//! The Cashu rail against a real mint (`cdk-mintd`, fake Lightning): a request paid with an
//! `X-Cashu` token gets its change back as a token the mint honours; too little gets a NUT-24
//! 402 and the token stays unspent; a token is received once; unlisted mints are refused;
//! streams carry their change in a last chunk; a mint that stops answering, or a gateway that
//! restarts, between receiving and refunding loses nothing; concurrent requests each get
//! their own change; a token can top up a wallet; the operator withdraws what was collected;
//! and the books reconcile (ecash received = charged + change + balance) after every test.
mod common;

use common::{
    mint::{value, TestMint},
    mint_link::MintLink,
    processes::{run_ok, sibling_binary},
    Harness,
};
use indexer::ledger::{testing::TempDatabase, Ledger};
use serde_json::{json, Value};

/// A gateway taking ecash from `mint`, one sat per ledger token (one per model token).
async fn gateway(mint: &TestMint) -> Harness {
    let url = mint.url.clone();
    Harness::start_with(TempDatabase::sqlite(), move |config| {
        config.cashu.mints = vec![url];
        config.cashu.tokens_per_sat = 1;
        // An upstream slow enough to stop the mint while it answers.
        let mut slow = config.models[0].clone();
        slow.id = "echo-slow".into();
        slow.upstreams[0].model = Some("echo+delay=1500".into());
        config.models.push(slow);
    })
    .await
}

async fn pay(h: &Harness, token: &str, body: Value) -> reqwest::Response {
    h.http
        .post(format!("{}/v1/chat/completions", h.base))
        .header("X-Cashu", token)
        // What an OpenAI client sends anyway: ignored when a token pays.
        .bearer_auth("unused")
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn ask(max_tokens: u64) -> Value {
    json!({"model": "echo", "max_tokens": max_tokens,
           "messages": [{"role": "user", "content": "hello from ecash"}]})
}

fn change_of(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("x-cashu")
        .map(|value| value.to_str().unwrap().to_owned())
}

/// What a response's usage cost, in sats (one per model token here).
fn cost(body: &Value) -> u64 {
    body["usage"]["prompt_tokens"].as_u64().unwrap()
        + body["usage"]["completion_tokens"].as_u64().unwrap()
}

async fn assert_reconciled(ledger: &Ledger) {
    let audit = ledger.audit().await.unwrap();
    assert!(audit.is_clean(), "the books do not reconcile: {audit:#?}");
    assert!(audit.cashu.reconciles(), "{:?}", audit.cashu);
}

#[tokio::test]
async fn a_paid_request_gets_its_change_as_a_token_the_mint_honours() {
    let Some(mint) = TestMint::start().await else {
        return;
    };
    let h = gateway(&mint).await;
    let token = mint.token(100).await;

    let response = pay(&h, &token, ask(10)).await;
    assert_eq!(response.status(), 200);
    let change = change_of(&response).expect("change in X-Cashu");
    let body: Value = response.json().await.unwrap();
    let charged = cost(&body);
    assert!(charged > 0);
    assert_eq!(value(&change), 100 - charged, "change = paid − charged");
    assert!(mint.states(&token).await.iter().all(|s| s == "SPENT"));
    assert_eq!(mint.redeem(&change).await, 100 - charged);

    // Asked again with the token that paid, the same change is named (already redeemed here).
    let again = h
        .http
        .post(format!("{}/v1/cashu/change", h.base))
        .header("X-Cashu", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(change_of(&again).as_deref(), Some(change.as_str()));

    let audit = h.ledger.audit().await.unwrap();
    assert_eq!(audit.cashu.received, 100);
    assert_eq!(audit.cashu.change, (100 - charged) as i64);
    assert_eq!(audit.cashu.held, charged as i64);
    assert_reconciled(&h.ledger).await;

    // Everything that moved the token's balance is announced, signed by the gateway: the
    // ecash credit and the change it paid back (attested, `rail: cashu`) and the request's
    // debit; they net to nothing left.
    let mut announced = vec![];
    for queued in h.ledger.due_outbox(100).await.unwrap() {
        let event: Value = serde_json::from_str(&queued.event_json).unwrap();
        assert_eq!(event["pubkey"], h.proxy_keys.public_key().to_hex());
        let content: Value = serde_json::from_str(event["content"].as_str().unwrap()).unwrap();
        if let Some(transaction) = content.get("Transaction") {
            let rail = transaction["rail"].as_str().map(str::to_owned);
            announced.push((transaction["tokens"].as_i64().unwrap(), rail));
        }
    }
    let tokens_per_sat = h.gateway.state.config.cashu.tokens_per_sat as i64;
    let cashu = Some("cashu".to_owned());
    let credits: Vec<i64> = announced
        .iter()
        .filter(|(t, r)| *t > 0 && *r == cashu)
        .map(|a| a.0)
        .collect();
    let change: Vec<i64> = announced
        .iter()
        .filter(|(t, r)| *t < 0 && *r == cashu)
        .map(|a| a.0)
        .collect();
    let debits: Vec<i64> = announced
        .iter()
        .filter(|(_, r)| r.is_none())
        .map(|a| a.0)
        .collect();
    assert_eq!(credits, vec![100 * tokens_per_sat]);
    assert_eq!(change, vec![-(100 - charged as i64) * tokens_per_sat]);
    assert_eq!(debits.len(), 1);
    assert_eq!(announced.len(), 3);
    h.stop().await;
}

#[tokio::test]
async fn a_token_worth_exactly_what_the_402_names_is_served_with_exact_change() {
    let Some(mint) = TestMint::start().await else {
        return;
    };
    let h = gateway(&mint).await;
    // No max_tokens: the least this request can be served for is its prompt and one token
    // (the output is then bounded by what the token affords).
    let mut unbounded = ask(5);
    unbounded.as_object_mut().unwrap().remove("max_tokens");
    let refused = pay(&h, &mint.token(1).await, unbounded.clone()).await;
    assert_eq!(refused.status(), 402);
    let needed = refused.json::<Value>().await.unwrap()["cashu"]["amount"]
        .as_u64()
        .unwrap();
    let response = pay(&h, &mint.token(needed).await, unbounded).await;
    assert_eq!(response.status(), 200);
    let change = change_of(&response);
    let charged = cost(&response.json::<Value>().await.unwrap());
    assert!(charged <= needed);
    match change {
        Some(change) => assert_eq!(mint.redeem(&change).await, needed - charged),
        None => assert_eq!(charged, needed, "no change only when nothing is left"),
    }
    assert_reconciled(&h.ledger).await;
    h.stop().await;
}

#[tokio::test]
async fn too_little_gets_a_nut24_402_the_token_stays_unspent_and_a_retry_is_served() {
    let Some(mint) = TestMint::start().await else {
        return;
    };
    let h = gateway(&mint).await;
    let small = mint.token(2).await;

    let refused = pay(&h, &small, ask(50)).await;
    assert_eq!(refused.status(), 402);
    let request = change_of(&refused).expect("a payment request in X-Cashu");
    assert!(request.starts_with("creqA"), "{request}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payment_required");
    let needed = body["cashu"]["amount"].as_u64().unwrap();
    assert!(needed > 50, "prompt + 50 completion tokens: {body}");
    assert_eq!(body["cashu"]["unit"], "sat");
    assert_eq!(body["cashu"]["mints"], json!([mint.url]));
    assert!(mint.states(&small).await.iter().all(|s| s == "UNSPENT"));

    let response = pay(&h, &mint.token(needed).await, ask(50)).await;
    assert_eq!(response.status(), 200);
    assert_reconciled(&h.ledger).await;
    h.stop().await;
}

#[tokio::test]
async fn the_same_token_pays_once() {
    let Some(mint) = TestMint::start().await else {
        return;
    };
    let h = gateway(&mint).await;
    let token = mint.token(100).await;
    assert_eq!(pay(&h, &token, ask(5)).await.status(), 200);

    let twice = pay(&h, &token, ask(5)).await;
    assert_eq!(twice.status(), 402);
    let body: Value = twice.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already received"),
        "{body}"
    );
    let audit = h.ledger.audit().await.unwrap();
    assert_eq!(audit.cashu.received, 100, "received once");
    let payer = proxy::cashu::receipt_id(&token.parse().unwrap());
    assert_eq!(
        h.ledger.usage(&payer, None, 10).await.unwrap().len(),
        1,
        "served once"
    );
    assert_reconciled(&h.ledger).await;
    h.stop().await;
}

#[tokio::test]
async fn tokens_from_unlisted_mints_and_garbage_are_refused_and_nothing_is_spent() {
    let Some(mint) = TestMint::start().await else {
        return;
    };
    let h = gateway(&mint).await;
    let token = mint.token(100).await;
    let proofs = mint.token_proofs(&token).await;
    let elsewhere = cdk::nuts::Token::new(
        "http://127.0.0.1:9".parse().unwrap(),
        proofs,
        None,
        cdk::nuts::CurrencyUnit::Sat,
    )
    .to_string();

    let refused = pay(&h, &elsewhere, ask(5)).await;
    assert_eq!(refused.status(), 402);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not accept ecash from http://127.0.0.1:9"),
        "{body}"
    );
    let garbage = pay(&h, "cashuBnotatoken", ask(5)).await;
    assert_eq!(garbage.status(), 400);
    assert!(mint.states(&token).await.iter().all(|s| s == "UNSPENT"));
    assert_eq!(h.ledger.audit().await.unwrap().cashu.received, 0);
    h.stop().await;
}

#[tokio::test]
async fn a_stream_carries_its_change_in_a_last_chunk_before_done() {
    let Some(mint) = TestMint::start().await else {
        return;
    };
    let h = gateway(&mint).await;
    let mut body = ask(10);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let response = pay(&h, &mint.token(100).await, body).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let events: Vec<&str> = text
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{text}");
    let last: Value = serde_json::from_str(events[events.len() - 2]).unwrap();
    assert_eq!(last["choices"], json!([]));
    let change = last["x_cashu"].as_str().expect("change in the last chunk");
    let usage = events
        .iter()
        .filter_map(|event| serde_json::from_str::<Value>(event).ok())
        .find(|chunk| chunk["usage"].is_object())
        .expect("the usage chunk");
    assert_eq!(mint.redeem(change).await, 100 - cost(&usage));
    assert_reconciled(&h.ledger).await;
    h.stop().await;
}

#[tokio::test]
async fn concurrent_requests_paid_from_one_wallet_each_get_their_change() {
    let Some(mint) = TestMint::start().await else {
        return;
    };
    let h = gateway(&mint).await;
    let mut tokens = Vec::new();
    for _ in 0..8 {
        tokens.push(mint.token(64).await);
    }
    let answers = futures_util::future::join_all(tokens.iter().map(|token| async {
        let response = pay(&h, token, ask(8)).await;
        assert_eq!(response.status(), 200);
        let change = change_of(&response).expect("change");
        let body: Value = response.json().await.unwrap();
        (change, cost(&body))
    }))
    .await;
    let mut charged_total = 0;
    for (change, charged) in &answers {
        assert_eq!(mint.redeem(change).await, 64 - charged);
        charged_total += charged;
    }
    let audit = h.ledger.audit().await.unwrap();
    assert_eq!(audit.cashu.received, 8 * 64);
    assert_eq!(audit.cashu.held, charged_total as i64);
    assert_reconciled(&h.ledger).await;
    h.stop().await;
}

#[tokio::test]
async fn a_mint_that_stops_answering_or_a_restart_between_receiving_and_refunding_loses_nothing() {
    let Some(mut mint) = TestMint::start().await else {
        return;
    };
    let h = gateway(&mint).await;
    // The gateway has met the mint (its keys are known).
    assert_eq!(pay(&h, &mint.token(100).await, ask(5)).await.status(), 200);

    // 1. The mint is down when a token arrives: 503, the receipt waits, nothing is charged.
    let first = mint.token(100).await;
    mint.stop().await;
    let down = pay(&h, &first, ask(5)).await;
    assert_eq!(down.status(), 503);

    // 2. A request served while the mint answers, whose change cannot be issued because the
    //    mint stopped before the refund: the change is owed, not lost.
    mint.restart().await;
    let second = mint.token(100).await;
    let mut slow = ask(5);
    slow["model"] = json!("echo-slow");
    let pending = tokio::spawn({
        let (http, base, second) = (h.http.clone(), h.base.clone(), second.clone());
        async move {
            http.post(format!("{base}/v1/chat/completions"))
                .header("X-Cashu", second)
                .json(&slow)
                .send()
                .await
                .unwrap()
        }
    });
    let id = proxy::cashu::receipt_id(&second.parse().unwrap());
    common::eventually("the second token is received", || async {
        matches!(h.ledger.cashu_receipt(&id).await, Ok(Some(r)) if r.received)
    })
    .await;
    mint.stop().await;
    let served = pending.await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(
        change_of(&served),
        None,
        "the mint could not sign the change"
    );
    let charged = cost(&served.json::<Value>().await.unwrap());

    // 3. The gateway restarts on the same ledger; the mint comes back.
    let Harness {
        db,
        ledger,
        gateway,
        http,
        mock,
        ..
    } = h;
    gateway.shutdown().await;
    mint.restart().await;
    let mut config = common::config(&mock, &db.url);
    config.cashu.mints = vec![mint.url.clone()];
    config.cashu.tokens_per_sat = 1;
    let restarted = common::gateway(config, ledger.clone(), &nostr_sdk::Keys::generate()).await;
    let base = format!("http://{}", restarted.addr);
    let change = |token: String| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let response = http
                .post(format!("{base}/v1/cashu/change"))
                .header("X-Cashu", token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()["change"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    // The token the mint never saw comes back whole; the served one, less its cost.
    assert_eq!(mint.redeem(&change(first).await).await, 100);
    assert_eq!(mint.redeem(&change(second).await).await, 100 - charged);
    assert_reconciled(&ledger).await;
    restarted.shutdown().await;
}

#[tokio::test]
async fn a_token_tops_up_a_wallet_balance_once() {
    let Some(mint) = TestMint::start().await else {
        return;
    };
    let h = gateway(&mint).await;
    let token = mint.token(40).await;
    let topup = |token: String| {
        h.http
            .post(format!("{}/v1/topup/cashu", h.base))
            .header("X-Cashu", token)
            .json(&json!({"wallet": h.user}))
            .send()
    };
    let response = topup(token.clone()).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["credited"], 40);
    assert_eq!(h.ledger.balance(&h.user).await.unwrap().available, 40);
    assert_eq!(topup(token).await.unwrap().status(), 402);
    assert_eq!(h.ledger.balance(&h.user).await.unwrap().available, 40);
    // The balance pays like any other: a bearer session spends it.
    let session = h.login().await;
    assert_eq!(
        h.chat(&session, common::ask("echo", "hi")).await.status(),
        200
    );
    assert!(h.ledger.balance(&h.user).await.unwrap().available < 40);
    assert_reconciled(&h.ledger).await;
    h.stop().await;
}

#[tokio::test]
async fn the_operator_withdraws_collected_ecash_with_the_cli() {
    let Some(mint) = TestMint::start().await else {
        return;
    };
    let h = gateway(&mint).await;
    assert_eq!(pay(&h, &mint.token(100).await, ask(20)).await.status(), 200);
    let held = h.ledger.audit().await.unwrap().cashu.held;
    assert!(held > 5);

    let dir = mint.dir.join("operator");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = \"{}\"\n[nostr]\nmachine = \"{}\"\n[cashu]\nmints = [\"{}\"]\n\
             [[models]]\nid = \"m\"\nprompt_price = 1\ncompletion_price = 1\nmax_output_tokens = 1\n\
             [[models.upstreams]]\nbase_url = \"http://127.0.0.1:9/v1\"\n",
            h.db.url,
            nostr_sdk::Keys::generate().public_key().to_hex(),
            mint.url
        ),
    )
    .unwrap();
    let proxy = sibling_binary("proxy");
    let config = config.to_string_lossy().into_owned();
    let token = run_ok(
        &proxy,
        &["cashu", "withdraw", "--config", &config, "--sats", "5"],
        &dir,
    )
    .await;
    assert_eq!(mint.redeem(token.trim()).await, 5);
    let holdings = run_ok(&proxy, &["cashu", "holdings", "--config", &config], &dir).await;
    assert!(
        holdings.contains(&format!("{} sat", held - 5)),
        "{holdings}"
    );
    assert!(holdings.contains("reconciled"), "{holdings}");
    let audit = h.ledger.audit().await.unwrap();
    assert_eq!(audit.cashu.withdrawn, 5);
    assert_reconciled(&h.ledger).await;
    h.stop().await;
}

#[tokio::test]
async fn a_swap_the_mint_did_but_whose_answer_was_lost_is_restored_not_lost() {
    let Some(mint) = TestMint::start().await else {
        return;
    };
    let link = MintLink::start(&mint.url, std::time::Duration::ZERO).await;
    let url = link.url.clone();
    let h = Harness::start_with(TempDatabase::sqlite(), move |config| {
        config.cashu.mints = vec![url];
        config.cashu.tokens_per_sat = 1;
        let mut slow = config.models[0].clone();
        slow.id = "echo-slow".into();
        slow.upstreams[0].model = Some("echo+delay=1500".into());
        config.models.push(slow);
    })
    .await;
    // Tokens naming the mint by the address the gateway reaches it at.
    let token = |proofs| link.token(proofs);
    let ask_change = |token: String| {
        let (http, base) = (h.http.clone(), h.base.clone());
        async move {
            let response = http
                .post(format!("{base}/v1/cashu/change"))
                .header("X-Cashu", token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()["change"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };

    // 1. Receiving: the mint swapped the customer's token, its answer never came.
    let first = token(mint.proofs(100).await);
    link.lose_answers(true);
    assert_eq!(pay(&h, &first, ask(5)).await.status(), 503);
    assert!(mint.states(&first).await.iter().all(|s| s == "SPENT"));
    link.lose_answers(false);
    assert_eq!(
        mint.redeem(&ask_change(first).await).await,
        100,
        "restored, not lost"
    );

    // 2. Refunding: the mint signed the change, its answer never came.
    let second = token(mint.proofs(100).await);
    let id = proxy::cashu::receipt_id(&second.parse().unwrap());
    let mut slow = ask(5);
    slow["model"] = json!("echo-slow");
    let pending = tokio::spawn({
        let (http, base, second) = (h.http.clone(), h.base.clone(), second.clone());
        async move {
            http.post(format!("{base}/v1/chat/completions"))
                .header("X-Cashu", second)
                .json(&slow)
                .send()
                .await
                .unwrap()
        }
    });
    common::eventually("the second token is received", || async {
        matches!(h.ledger.cashu_receipt(&id).await, Ok(Some(r)) if r.received)
    })
    .await;
    link.lose_answers(true);
    let served = pending.await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(change_of(&served), None, "the change's answer was lost");
    let charged = cost(&served.json::<Value>().await.unwrap());
    link.lose_answers(false);
    assert_eq!(mint.redeem(&ask_change(second).await).await, 100 - charged);
    assert_reconciled(&h.ledger).await;
    h.stop().await;
}
