//! The controller driven directly (its services stopped, so nothing else races it), each test
//! one rule of the money path: what is paid is exactly what the user signed, a credit is what
//! its payment is worth, a redeemed authorisation is never refused, and anything anyone can
//! publish is refused before it costs a ledger write or a transaction.
use balance_payment::sdk::instructions as ix;
use indexer::{
    chain::Chain,
    controller::Outcome,
    ledger::testing::TempDatabase,
    sandbox::{Sandbox, SandboxConfig, SOL},
    wire::{DsProxyMessage, RecoverInfoJson, RequestPayload},
};
use nostr_sdk::prelude::{Event, JsonUtil};
use solana_sdk::signature::{Keypair, Signer};
use std::time::Duration;

const TOKENS_PER_SOL: u64 = 1_000_000;
const PAY: u64 = SOL / 100; // 10 000 tokens

/// A local stack whose services are stopped: the test is the only controller.
async fn stopped_sandbox(db: &TempDatabase) -> Sandbox {
    let mut s = Sandbox::start(SandboxConfig {
        tokens_per_sol: TOKENS_PER_SOL,
        ..SandboxConfig::new(&db.url)
    })
    .await
    .expect("sandbox starts");
    s.stop_services().await;
    s
}

async fn next_nonce(s: &Sandbox, user: &Keypair) -> u64 {
    s.next_nonce(&user.pubkey()).await.unwrap()
}

/// The user's request for the current nonce, signed for `signed` lamports, naming `amount`.
async fn request(s: &Sandbox, user: &Keypair, signed: u64, amount: Option<u64>) -> Event {
    let nonce = next_nonce(s, user).await;
    let mut payload = s.authorization_payload(user, nonce, signed).unwrap();
    payload.amount = amount;
    s.request_event(&payload).unwrap()
}

/// `event` re-published by someone else with `amount` in place of what the user asked.
fn copy_with_amount(s: &Sandbox, event: &Event, amount: u64) -> Event {
    let DsProxyMessage::Request { payload, .. } = serde_json::from_str(&event.content).unwrap()
    else {
        panic!("a request")
    };
    let mut payload: RequestPayload = serde_json::from_str(&payload).unwrap();
    payload.amount = Some(amount);
    s.request_event(&payload).unwrap()
}

// Point 1: the second authorisation a user signed for an already redeemed nonce is answered
// with the payment that redeemed it, credited at what that payment was worth, not at what the
// second authorisation asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_authorisation_for_a_redeemed_nonce_is_credited_what_the_payment_was_worth() {
    let db = TempDatabase::sqlite();
    let mut s = stopped_sandbox(&db).await;
    let controller = s.controller();
    let user = s.user(SOL).await.unwrap();
    let small = request(&s, &user, PAY, None).await;
    let large = request(&s, &user, 5 * PAY, None).await;

    let Outcome::Paid { signature, tokens } = controller.handle(&small).await.unwrap() else {
        panic!("the first authorisation is paid")
    };
    assert_eq!(tokens, 10_000);
    let treasury = s.chain.lamports(&s.treasury).await.unwrap();

    assert_eq!(
        controller.handle(&large).await.unwrap(),
        Outcome::Paid {
            signature: signature.clone(),
            tokens: 10_000
        },
        "finished by the payment that used the nonce, at that payment's worth"
    );
    assert_eq!(s.chain.lamports(&s.treasury).await.unwrap(), treasury);

    s.restart_services().await.unwrap();
    wait_for_credited(&s, &user.pubkey().to_string(), 10_000).await;
    let audit = s.ledger.audit().await.unwrap();
    assert!(audit.is_clean(), "{audit:?}");
    s.stop().await;
    db.remove().await;
}

// Point 2: a copied Request naming a smaller or larger amount changes nothing on chain: it is
// refused before any write, and the user's nonce stays for the real request, which pays
// exactly what was signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_copied_request_with_another_amount_pays_nothing_and_keeps_the_nonce() {
    let db = TempDatabase::sqlite();
    let mut s = stopped_sandbox(&db).await;
    let controller = s.controller();
    let user = s.user(SOL).await.unwrap();
    let original = request(&s, &user, 2 * PAY, Some(2 * PAY)).await;
    let treasury = s.chain.lamports(&s.treasury).await.unwrap();

    for amount in [PAY, 3 * PAY] {
        let copy = copy_with_amount(&s, &original, amount);
        match controller.handle(&copy).await.unwrap() {
            Outcome::Ignored(reason) => assert!(reason.contains("differs from the signed amount")),
            other => panic!("a copy with amount {amount} must be refused, got {other:?}"),
        }
        assert_eq!(s.ledger.request(&copy.id.to_hex()).await.unwrap(), None);
    }
    assert_eq!(s.chain.lamports(&s.treasury).await.unwrap(), treasury);
    assert_eq!(next_nonce(&s, &user).await, 0, "the nonce is not burnt");

    assert!(matches!(
        controller.handle(&original).await.unwrap(),
        Outcome::Paid { tokens: 20_000, .. }
    ));
    assert_eq!(
        s.chain.lamports(&s.treasury).await.unwrap(),
        treasury + 2 * PAY,
        "exactly the signed amount"
    );
    s.stop().await;
    db.remove().await;
}

// Point 3: a `pay` that landed while the controller lost its outcome, and that the chain
// watcher has not read yet, finishes the request when it is resumed; the credit is announced
// once and applies once the watcher catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payment_the_watcher_has_not_seen_yet_finishes_its_resumed_request() {
    let db = TempDatabase::sqlite();
    let mut s = stopped_sandbox(&db).await;
    let controller = s.controller();
    let user = s.user(SOL).await.unwrap();
    let u = user.pubkey().to_string();
    let event = request(&s, &user, PAY, None).await;
    let DsProxyMessage::Request { payload, .. } = serde_json::from_str(&event.content).unwrap()
    else {
        panic!("a request")
    };
    let payload: RequestPayload = serde_json::from_str(&payload).unwrap();
    let info = serde_json::from_str::<RecoverInfoJson>(&payload.recover_info)
        .unwrap()
        .to_recover_info(payload.nonce)
        .unwrap();
    // What a controller that crashed right after `pay` leaves: a claimed request, a payment
    // on chain, nothing in the ledger's payments (the watcher is behind).
    s.ledger
        .claim_request(&event.id.to_hex(), &u, payload.nonce, PAY, &event.as_json())
        .await
        .unwrap();
    let pay = ix::pay_authorized(
        s.cluster,
        s.bot.pubkey(),
        0,
        s.treasury,
        user.pubkey(),
        info,
        PAY,
    );
    let signature = s.chain.submit(&pay, &[&s.bot]).await.unwrap();
    assert_eq!(
        s.ledger.payment_for(&u, 0, payload.nonce).await.unwrap(),
        None
    );

    assert_eq!(
        controller.resume().await.unwrap(),
        vec![Outcome::Paid {
            signature: signature.clone(),
            tokens: 10_000
        }]
    );
    let record = s.ledger.request(&event.id.to_hex()).await.unwrap().unwrap();
    assert_eq!(record.signature, Some(signature));
    assert!(
        controller.resume().await.unwrap().is_empty(),
        "finished once"
    );

    s.restart_services().await.unwrap();
    wait_for_credited(&s, &u, 10_000).await;
    let audit = s.ledger.audit().await.unwrap();
    assert!(audit.is_clean(), "{audit:?}");
    s.stop().await;
    db.remove().await;
}

// Point 7: requests from unregistered or unfunded wallets, and forged ones, are refused by
// the cheap checks: no ledger write, no transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_that_cannot_pay_cost_no_ledger_write_and_no_transaction() {
    let db = TempDatabase::sqlite();
    let mut s = stopped_sandbox(&db).await;
    let controller = s.controller();
    let bot_balance = s.chain.lamports(&s.bot.pubkey()).await.unwrap();

    let stranger = Keypair::new();
    let unregistered = s
        .request_event(&s.authorization_payload(&stranger, 0, PAY).unwrap())
        .unwrap();
    let broke = s.user(SOL / 1_000).await.unwrap();
    let unfunded = request(&s, &broke, PAY, None).await;
    let rich = s.user(SOL).await.unwrap();
    let mut forged = s.authorization_payload(&rich, 0, PAY).unwrap();
    let mut info: RecoverInfoJson = serde_json::from_str(&forged.recover_info).unwrap();
    info.signature[5] ^= 0x40;
    forged.recover_info = serde_json::to_string(&info).unwrap();
    let forged = s.request_event(&forged).unwrap();

    for (event, why) in [
        (&unregistered, "not registered"),
        (&unfunded, "free lamports"),
        (&forged, "signature"),
    ] {
        match controller.handle(event).await.unwrap() {
            Outcome::Ignored(reason) => assert!(reason.contains(why), "{reason}"),
            other => panic!("expected a cheap refusal ({why}), got {other:?}"),
        }
        assert_eq!(s.ledger.request(&event.id.to_hex()).await.unwrap(), None);
    }
    assert_eq!(
        s.ledger.outbox_backlog().await.unwrap(),
        0,
        "nothing to send"
    );
    assert_eq!(
        s.chain.lamports(&s.bot.pubkey()).await.unwrap(),
        bot_balance,
        "no transaction fee spent"
    );
    s.stop().await;
    db.remove().await;
}

/// Waits until `user` has been credited `expected` tokens (or fails after 20 s).
async fn wait_for_credited(s: &Sandbox, user: &str, expected: i64) {
    for _ in 0..200 {
        if s.ledger.balance(user).await.unwrap().credited == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{user} was never credited {expected}: {:?}",
        s.ledger.balance(user).await.unwrap()
    );
}
