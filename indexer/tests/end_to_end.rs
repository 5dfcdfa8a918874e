//! The whole indexer in-process: bank + embedded relay + SQLite + watchers + controller.
//! A user deposits, signs an authorisation and publishes a `Request`; the controller pays on
//! chain; the credit lands in the ledger exactly once; the audit is clean. Then the ways it
//! must not go wrong: forged credits, duplicates, restarts, replays, bad signatures.
use balance_payment::sdk::instructions as ix;
use indexer::{
    chain::Chain,
    ledger::{testing::TempDatabase, Applied},
    nostr::{
        events::sign_message,
        watcher::{ingest, Ingested, Trust},
    },
    sandbox::{Sandbox, SandboxConfig, SOL},
    wire::{DsProxyMessage, RecoverInfoJson, RequestPayload},
};
use nostr_sdk::prelude::{Event, Keys};
use solana_sdk::signature::{Keypair, Signer};
use std::time::Duration;

const TOKENS_PER_SOL: u64 = 1_000_000;
const PAY: u64 = SOL / 100; // 10 000 tokens

async fn sandbox(db: &TempDatabase) -> Sandbox {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    Sandbox::start(SandboxConfig {
        tokens_per_sol: TOKENS_PER_SOL,
        ..SandboxConfig::new(&db.url)
    })
    .await
    .expect("sandbox starts")
}

/// The user's request event: an authorisation for the current nonce, signed by the wallet
/// (with one signature bit flipped when `tamper`).
async fn request(s: &Sandbox, user: &Keypair, amount: u64, tamper: bool) -> Event {
    let nonce = s.next_nonce(&user.pubkey()).await.unwrap();
    let mut payload = s.authorization_payload(user, nonce, amount).unwrap();
    if tamper {
        let mut info: RecoverInfoJson = serde_json::from_str(&payload.recover_info).unwrap();
        info.signature[5] ^= 0x40;
        payload.recover_info = serde_json::to_string(&info).unwrap();
    }
    s.request_event(&payload).unwrap()
}

async fn publish(s: &Sandbox, event: &Event) {
    s.publish(event).await.expect("relay accepts the event");
}

/// Waits until `user`'s available balance is `expected` (or fails after 20 s).
async fn wait_for_balance(s: &Sandbox, user: &str, expected: i64) {
    for _ in 0..200 {
        if s.ledger.balance(user).await.unwrap().available == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "balance of {user} never reached {expected}: {:?}",
        s.ledger.balance(user).await.unwrap()
    );
}

/// Publishes one more top-up of `PAY` by `user` and waits for its credit. Requests are
/// handled in the order they arrive, so everything published before has been handled too:
/// what a test waits for instead of sleeping before it checks that nothing else happened.
async fn flush(s: &Sandbox, user: &Keypair) {
    let u = user.pubkey().to_string();
    let before = s.ledger.balance(&u).await.unwrap().available;
    let sentinel = request(s, user, PAY, false).await;
    publish(s, &sentinel).await;
    wait_for_balance(s, &u, before + 10_000).await;
}

async fn wait_for_request_state(s: &Sandbox, id: &str) -> indexer::ledger::RequestRecord {
    for _ in 0..200 {
        if let Some(record) = s.ledger.request(id).await.unwrap() {
            if record.state != indexer::ledger::RequestState::Paying {
                return record;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("request {id} never finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paid_request_is_credited_exactly_once_and_the_audit_is_clean() {
    let db = TempDatabase::sqlite();
    let mut s = sandbox(&db).await;
    let user = s.user(SOL).await.unwrap();
    let treasury_before = s.chain.lamports(&s.treasury).await.unwrap();

    let event = request(&s, &user, PAY, false).await;
    publish(&s, &event).await;
    wait_for_balance(&s, &user.pubkey().to_string(), 10_000).await;

    assert_eq!(
        s.chain.lamports(&s.treasury).await.unwrap(),
        treasury_before + PAY
    );
    let record = wait_for_request_state(&s, &event.id.to_hex()).await;
    assert!(record.signature.is_some());
    // Delivering the same request event again changes nothing.
    publish(&s, &event).await;
    flush(&s, &user).await;
    assert_eq!(
        s.ledger
            .balance(&user.pubkey().to_string())
            .await
            .unwrap()
            .credited,
        20_000,
        "the first request and the flush, nothing more"
    );
    assert_eq!(
        s.chain.lamports(&s.treasury).await.unwrap(),
        treasury_before + 2 * PAY
    );
    // The credit and the status reply reached the relay.
    for _ in 0..50 {
        if s.ledger.outbox_backlog().await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.ledger.outbox_backlog().await.unwrap(), 0);
    let audit = s.ledger.audit().await.unwrap();
    assert!(audit.is_clean(), "{audit:?}");
    s.stop().await;
    db.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_and_duplicate_transactions_credit_nothing() {
    let db = TempDatabase::sqlite();
    let mut s = sandbox(&db).await;
    let user = s.user(SOL).await.unwrap();
    let event = request(&s, &user, PAY, false).await;
    publish(&s, &event).await;
    let u = user.pubkey().to_string();
    wait_for_balance(&s, &u, 10_000).await;
    let paid = wait_for_request_state(&s, &event.id.to_hex())
        .await
        .signature
        .unwrap();

    // Anyone can sign a Transaction; only the controller's credits count.
    let forged = DsProxyMessage::Transaction {
        user: u.clone(),
        tokens: 1_000_000,
        reference: Some(paid.clone()),
        model: None,
        rail: None,
    };
    let forged = sign_message(&Keys::generate(), &s.session, &s.machine, &forged).unwrap();
    let trust = Trust {
        controllers: [s.controller_keys.public_key()].into(),
        proxies: s.proxy_keys.iter().map(Keys::public_key).collect(),
    };
    assert!(matches!(
        ingest(&s.ledger, &trust, &forged).await.unwrap(),
        Ingested::Ignored(_)
    ));
    publish(&s, &forged).await;
    // A debit signed by the controller (not a proxy key) does not count either.
    let wrong_role = DsProxyMessage::Transaction {
        user: u.clone(),
        tokens: -5,
        reference: Some("r".into()),
        model: None,
        rail: None,
    };
    let wrong_role = sign_message(&s.controller_keys, &s.session, &s.machine, &wrong_role).unwrap();
    assert!(matches!(
        ingest(&s.ledger, &trust, &wrong_role).await.unwrap(),
        Ingested::Ignored(_)
    ));

    // The controller's own credit, delivered again, and re-announced for the same payment.
    let again = DsProxyMessage::Transaction {
        user: u.clone(),
        tokens: 10_000,
        reference: Some(paid),
        model: None,
        rail: None,
    };
    let again = sign_message(&s.controller_keys, &s.session, &s.machine, &again).unwrap();
    assert_eq!(
        ingest(&s.ledger, &trust, &again).await.unwrap(),
        Ingested::Credit(Applied::Duplicate)
    );
    assert_eq!(
        ingest(&s.ledger, &trust, &again).await.unwrap(),
        Ingested::Credit(Applied::Duplicate)
    );
    publish(&s, &again).await;

    // A tampered event (content changed after signing) is dropped.
    let mut tampered = again.clone();
    tampered.content = tampered.content.replace("10000", "99999");
    assert_eq!(
        ingest(&s.ledger, &trust, &tampered).await.unwrap(),
        Ingested::Ignored("bad signature".into())
    );

    flush(&s, &user).await;
    assert_eq!(s.ledger.balance(&u).await.unwrap().credited, 20_000);
    assert!(s.ledger.audit().await.unwrap().is_clean());
    s.stop().await;
    db.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_published_while_stopped_are_paid_after_a_restart() {
    let db = TempDatabase::sqlite();
    let mut s = sandbox(&db).await;
    let user = s.user(SOL).await.unwrap();
    let u = user.pubkey().to_string();
    let first = request(&s, &user, PAY, false).await;
    publish(&s, &first).await;
    wait_for_balance(&s, &u, 10_000).await;
    wait_for_request_state(&s, &first.id.to_hex()).await;

    s.stop_services().await;
    let second = request(&s, &user, 2 * PAY, false).await;
    publish(&s, &second).await;
    s.restart_services().await.unwrap();

    wait_for_balance(&s, &u, 30_000).await;
    flush(&s, &user).await;
    assert_eq!(
        s.ledger.balance(&u).await.unwrap().credited,
        40_000,
        "nothing counted twice"
    );
    assert!(s.ledger.audit().await.unwrap().is_clean());
    s.stop().await;
    db.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_between_paying_and_announcing_is_resumed_once() {
    let db = TempDatabase::sqlite();
    let mut s = sandbox(&db).await;
    s.stop_services().await;
    let user = s.user(SOL).await.unwrap();
    let u = user.pubkey().to_string();
    // What a controller that crashed right after `pay` leaves behind: a claimed request and a
    // payment on chain, but no credit.
    let event = request(&s, &user, PAY, false).await;
    let payload: RequestPayload = match serde_json::from_str(&event.content).unwrap() {
        DsProxyMessage::Request { payload, .. } => serde_json::from_str(&payload).unwrap(),
        _ => unreachable!(),
    };
    let recover: RecoverInfoJson = serde_json::from_str(&payload.recover_info).unwrap();
    let info = recover.to_recover_info(payload.nonce).unwrap();
    use nostr_sdk::prelude::JsonUtil;
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
    let treasury_before = s.chain.lamports(&s.treasury).await.unwrap();
    s.chain.submit(&pay, &[&s.bot]).await.unwrap();

    s.restart_services().await.unwrap();
    wait_for_balance(&s, &u, 10_000).await;
    // The request event arriving late is recognised too.
    publish(&s, &event).await;
    flush(&s, &user).await;
    assert_eq!(
        s.chain.lamports(&s.treasury).await.unwrap(),
        treasury_before + 2 * PAY,
        "paid once, and the flush"
    );
    assert_eq!(
        s.ledger.balance(&u).await.unwrap().credited,
        20_000,
        "credited once, and the flush"
    );
    s.stop().await;
    db.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replayed_authorisation_in_a_new_event_is_not_paid_twice() {
    let db = TempDatabase::sqlite();
    let mut s = sandbox(&db).await;
    let user = s.user(SOL).await.unwrap();
    let u = user.pubkey().to_string();
    let first = request(&s, &user, PAY, false).await;
    publish(&s, &first).await;
    wait_for_balance(&s, &u, 10_000).await;
    wait_for_request_state(&s, &first.id.to_hex()).await;
    let treasury_after_first = s.chain.lamports(&s.treasury).await.unwrap();

    // Same authorisation (same nonce), re-published in a different event by someone else.
    let replay = sign_message(
        &Keys::generate(),
        &s.session,
        &s.machine,
        &serde_json::from_str(&first.content).unwrap(),
    )
    .unwrap();
    assert_ne!(replay.id, first.id);
    publish(&s, &replay).await;
    flush(&s, &user).await;
    assert_eq!(
        s.chain.lamports(&s.treasury).await.unwrap(),
        treasury_after_first + PAY,
        "not paid twice (only the flush)"
    );
    assert_eq!(
        s.ledger.balance(&u).await.unwrap().credited,
        20_000,
        "not credited twice"
    );
    assert!(s.ledger.audit().await.unwrap().is_clean());
    s.stop().await;
    db.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_with_a_bad_signature_is_refused_and_not_paid() {
    let db = TempDatabase::sqlite();
    let mut s = sandbox(&db).await;
    let user = s.user(SOL).await.unwrap();
    let treasury_before = s.chain.lamports(&s.treasury).await.unwrap();
    let event = request(&s, &user, PAY, true).await;
    publish(&s, &event).await;
    flush(&s, &user).await;
    assert_eq!(
        s.ledger.request(&event.id.to_hex()).await.unwrap(),
        None,
        "refused before any ledger write"
    );
    assert_eq!(
        s.chain.lamports(&s.treasury).await.unwrap(),
        treasury_before + PAY,
        "only the flush was paid"
    );
    assert_eq!(
        s.ledger
            .balance(&user.pubkey().to_string())
            .await
            .unwrap()
            .credited,
        10_000
    );
    s.stop().await;
    db.remove().await;
}
