//! What an outsider publishes never moves the Nostr cursor or stalls ingestion:
//! - only trusted, sanely dated events move the cursor, so a restart still ingests real events;
//! - back-fill pages through a relay that caps queries and loses nothing, and reads a second
//!   holding more events than a page (several at once, through two connections);
//! - a stuck controller and a flood of requests never delay a credit;
//! - one author cannot fill the controller's queue;
//! - an event a relay serves with a signature or an id that does not match is never counted;
//! - what a relay stored while the watcher's connection was cut is read when it reconnects.
//!
//! Each ledger-backed test runs on SQLite and on Postgres.
#[macro_use]
mod common;

use balance_payment::{
    authorization::{Asset, AuthorizationTerms},
    sdk::authorization::sign_authorization,
};
use common::{cuttable::Cuttable, settings, wait_for_credited, wall_now, Backend, Harness};
use indexer::{
    clock::Clock,
    metrics::EventLabels,
    nostr::queue::{request_queue, Offer},
    supervisor::RestartPolicy,
    wire::{DsProxyMessage, RecoverInfoJson, RequestPayload},
};
use nostr_sdk::prelude::*;
use solana_sdk::signature::{Keypair, Signer};
use std::time::Duration;

const YEAR: u64 = 365 * 24 * 3600;

on_both_backends!(
    future_dated_or_untrusted_events_do_not_move_the_cursor_and_a_restart_still_ingests,
    a_stored_cursor_later_than_its_writing_time_is_clamped,
    backfill_pages_through_a_relay_that_caps_queries_and_loses_nothing,
    backfill_through_a_relay_capping_below_the_page_size_loses_nothing,
    a_flood_of_strangers_events_in_one_second_does_not_hide_a_credit_from_backfill,
    a_request_flood_and_a_stuck_controller_do_not_delay_credits,
    a_relay_serving_forged_events_credits_nothing,
    a_credit_stored_while_the_connection_was_cut_is_ingested_on_reconnect,
);

/// The network between the watcher and its relay is cut (the relay stays up) while a credit is
/// published to the relay. The live subscription asks for no stored events, so when nostr-sdk
/// reconnects and subscribes again the credit comes only with the back-fill that the relay's
/// renewed answer starts.
async fn a_credit_stored_while_the_connection_was_cut_is_ingested_on_reconnect(backend: Backend) {
    let mut h = Harness::new(backend, None).await;
    let outage = Cuttable::start(h.relay.url()).await;
    h.listen_through = Some(outage.url().to_owned());
    let t0 = wall_now();
    h.start_at(t0, false).await;
    let controller = h.controller_keys.clone();
    h.publish(&h.credit(&controller, "alice", 10, t0 - 10).await)
        .await;
    wait_for_credited(&h.ledger, "alice", 10, Duration::from_secs(20)).await;

    outage.cut().await;
    // Straight to the relay, while the watcher cannot hear it (nostr-sdk tries again about ten
    // seconds after a connection drops).
    h.publish(&h.credit(&controller, "bob", 20, t0 - 5).await)
        .await;
    outage.restore();
    wait_for_credited(&h.ledger, "bob", 20, Duration::from_secs(60)).await;
    h.finish().await;
}

async fn future_dated_or_untrusted_events_do_not_move_the_cursor_and_a_restart_still_ingests(
    backend: Backend,
) {
    let mut h = Harness::new(backend, None).await;
    let t0 = wall_now();
    let clock = Clock::from_fn(move || t0);
    h.start(
        settings(RestartPolicy::default(), clock.clone()),
        false,
        None,
    )
    .await;
    let controller = h.controller_keys.clone();

    // A real credit: the watcher is live once it is applied.
    h.publish(&h.credit(&controller, "alice", 10, t0 - 10).await)
        .await;
    wait_for_credited(&h.ledger, "alice", 10, Duration::from_secs(20)).await;

    // A stranger dates a credit and a request a year ahead; a trusted key dates a credit an
    // hour ahead (beyond the 60 s skew); then a real credit.
    let stranger = Keys::generate();
    h.publish(&h.credit(&stranger, "mallory", 10, t0 + YEAR).await)
        .await;
    h.publish(&h.request(&stranger, "{}".into(), t0 + YEAR))
        .await;
    h.publish(&h.credit(&controller, "early", 10, t0 + 3_600).await)
        .await;
    h.publish(&h.credit(&controller, "alice", 10, t0 - 5).await)
        .await;
    wait_for_credited(&h.ledger, "alice", 20, Duration::from_secs(20)).await;
    // The trusted credit dated ahead still counts (it is a real payment), the stranger's not.
    wait_for_credited(&h.ledger, "early", 10, Duration::from_secs(20)).await;
    assert_eq!(h.ledger.balance("mallory").await.unwrap().credited, 0);
    h.wait_for_cursor(t0 - 5).await;

    // While the indexer is down a credit is published; after the restart it is ingested.
    h.stop().await;
    h.publish(&h.credit(&controller, "bob", 20, t0 - 2).await)
        .await;
    h.start(settings(RestartPolicy::default(), clock), false, None)
        .await;
    wait_for_credited(&h.ledger, "bob", 20, Duration::from_secs(20)).await;
    h.wait_for_cursor(t0 - 2).await;
    h.finish().await;
}

async fn a_stored_cursor_later_than_its_writing_time_is_clamped(backend: Backend) {
    let mut h = Harness::new(backend, None).await;
    let t0 = wall_now();
    // What an older version left behind after a stranger's event dated a year ahead.
    h.ledger
        .set_cursor_at(
            indexer::nostr::cursor::CURSOR,
            &(t0 + YEAR).to_string(),
            (t0 - 60) as i64,
        )
        .await
        .unwrap();
    let controller = h.controller_keys.clone();
    h.publish(&h.credit(&controller, "carol", 30, t0 - 30).await)
        .await;
    h.start_at(t0, false).await;
    wait_for_credited(&h.ledger, "carol", 30, Duration::from_secs(20)).await;
    h.wait_for_cursor(t0 - 30).await;
    h.finish().await;
}

async fn backfill_pages_through_a_relay_that_caps_queries_and_loses_nothing(backend: Backend) {
    backfill_through_a_capping_relay(backend, 500).await
}

/// The relay caps below the page the watcher asks for (500): a short page is not taken for
/// the end of the window.
async fn backfill_through_a_relay_capping_below_the_page_size_loses_nothing(backend: Backend) {
    backfill_through_a_capping_relay(backend, 150).await
}

/// 400 events a second over three seconds (`cap` 500), or 100 a second over twelve.
async fn backfill_through_a_capping_relay(backend: Backend, cap: usize) {
    const EVENTS: u64 = 1_200;
    const USERS: u64 = 12;
    let mut h = Harness::new(backend, Some(cap)).await;
    let t0 = wall_now();
    let controller = h.controller_keys.clone();
    let seconds = if cap >= 500 { 3 } else { 12 };
    // Published while the indexer is down.
    let credits: Vec<(String, i64, u64)> = (0..EVENTS)
        .map(|i| (format!("user{}", i % USERS), 10, t0 - seconds + i % seconds))
        .collect();
    h.publish_all(h.credits(&controller, &credits).await).await;
    let capped = h
        .client
        .fetch_events(
            indexer::nostr::events::session_filter(
                indexer::wire::DEFAULT_SESSION,
                &[h.machine],
                Timestamp::from(0),
            ),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(capped.len(), cap, "the relay caps one query");

    h.start_at(t0, false).await;
    for user in 0..USERS {
        let expected = (EVENTS / USERS * 10) as i64;
        wait_for_credited(
            &h.ledger,
            &format!("user{user}"),
            expected,
            Duration::from_secs(60),
        )
        .await;
    }
    h.finish().await;
}

/// A busy controller: 600 credits a second for three seconds, pages of 500, a relay without a
/// cap (the live subscription fell behind, so back-fill reads them). Each busy second is read
/// alone with a larger limit, the three by two connections at once: nothing is lost.
#[tokio::test]
async fn backfill_reads_seconds_holding_more_events_than_a_page() {
    const EVENTS: u64 = 1_800;
    let h = Harness::new(Backend::Sqlite, None).await;
    let t0 = wall_now();
    let controller = h.controller_keys.clone();
    let credits: Vec<(String, i64, u64)> = (0..EVENTS)
        .map(|i| (format!("user{}", i % 12), 10, t0 - 2 - i % 3))
        .collect();
    h.publish_all(h.credits(&controller, &credits).await).await;
    let filter = indexer::nostr::events::session_filter(
        indexer::wire::DEFAULT_SESSION,
        &[h.machine],
        Timestamp::from(0),
    )
    .authors([controller.public_key()]);
    let events = indexer::nostr::backfill::fetch_window_from(
        &h.client,
        &[filter],
        Timestamp::from(t0 - 10),
        Timestamp::from(t0),
        500,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(
        events.len() as u64,
        EVENTS,
        "every event of the busy seconds"
    );
    let ordered = events
        .windows(2)
        .all(|pair| (pair[0].created_at, pair[0].id) < (pair[1].created_at, pair[1].id));
    assert!(ordered, "oldest first, each once");
    h.finish().await;
}

async fn a_flood_of_strangers_events_in_one_second_does_not_hide_a_credit_from_backfill(
    backend: Backend,
) {
    let mut h = Harness::new(backend, Some(500)).await;
    let t0 = wall_now();
    let controller = h.controller_keys.clone();
    // While the indexer is down: 600 strangers' requests and a credit, all in one second. A
    // relay returns the same second's events in id order: the credit's id is made the highest,
    // so a page of 500 over the whole session leaves it out.
    let flood: Vec<Event> = (0..600)
        .map(|_| h.request(&Keys::generate(), "{}".into(), t0 - 2))
        .collect();
    let highest = flood.iter().map(|event| event.id).max().unwrap();
    let paid = h.credit(&controller, "hank", 40, t0 - 2).await;
    let Ok(DsProxyMessage::Transaction { reference, .. }) = serde_json::from_str(&paid.content)
    else {
        panic!("a credit is a Transaction");
    };
    let credit = (0..)
        .map(|i| {
            let message = DsProxyMessage::Transaction {
                user: "hank".into(),
                tokens: 40,
                reference: reference.clone(),
                model: Some(format!("variant {i}")),
                rail: None,
            };
            h.event(&controller, &message, t0 - 2)
        })
        .find(|event| event.id > highest)
        .unwrap();
    h.publish_all(flood.into_iter().chain([credit])).await;
    h.start_at(t0, false).await;
    wait_for_credited(&h.ledger, "hank", 40, Duration::from_secs(30)).await;
    h.finish().await;
}

/// A valid request: `wallet`'s signed authorisation of `lamports` at nonce 0, from a fresh key.
fn valid_request(h: &Harness, wallet: &Keypair, lamports: u64, created_at: u64) -> Event {
    let terms = AuthorizationTerms {
        program_id: balance_payment::ID,
        cluster: [0; 32],
        namespace_id: 0,
        user: wallet.pubkey(),
        nonce: 0,
        max_amount: lamports,
        asset: Asset::Lamports,
        deadline: indexer::ledger::now() + 600,
        extra_data: [0; 32],
    };
    let signing = ed25519_dalek::SigningKey::from_bytes(wallet.secret_bytes());
    let info = sign_authorization(&signing, &terms);
    let payload = RequestPayload {
        user: wallet.pubkey().to_string(),
        nonce: 0,
        recover_info: serde_json::to_string(&RecoverInfoJson::from_recover_info(&info)).unwrap(),
        amount: Some(lamports),
        namespace_id: Some(0),
        mint: None,
    };
    h.request(
        &Keys::generate(),
        serde_json::to_string(&payload).unwrap(),
        created_at,
    )
}

async fn a_request_flood_and_a_stuck_controller_do_not_delay_credits(backend: Backend) {
    const FLOOD: usize = 1_100;
    let mut h = Harness::new(backend, None).await;
    let t0 = wall_now();
    // The controller's chain never answers: the first request it takes blocks it for good.
    h.start_at(t0, true).await;
    let controller = h.controller_keys.clone();
    // The watcher is live once a first credit is applied; from then on events arrive in order.
    h.publish(&h.credit(&controller, "dave", 50, t0).await)
        .await;
    wait_for_credited(&h.ledger, "dave", 50, Duration::from_secs(20)).await;

    let flood: Vec<Event> = (0..FLOOD)
        .map(|_| valid_request(&h, &Keypair::new(), 1_000_000, t0))
        .collect();
    h.publish_all(flood).await;
    h.publish(&h.credit(&controller, "dave", 50, t0).await)
        .await;
    wait_for_credited(&h.ledger, "dave", 100, Duration::from_secs(30)).await;

    // Every request came before the credit: those beyond the queue's capacity were dropped,
    // not waited for.
    let metrics = h.services().metrics.clone();
    let count = |outcome| {
        metrics
            .events
            .get_or_create(&EventLabels {
                kind: "request",
                outcome,
            })
            .get()
    };
    assert_eq!(
        count("queued") + count("queue_full"),
        FLOOD as u64,
        "{}",
        metrics.render()
    );
    assert!(count("queued") <= 1_025, "{}", metrics.render());
    assert!(count("queue_full") >= 75, "{}", metrics.render());
    h.finish().await;
}

fn signed_by(keys: &Keys) -> Event {
    EventBuilder::text_note("request")
        .sign_with_keys(keys)
        .unwrap()
}

#[tokio::test]
async fn one_author_cannot_fill_the_request_queue() {
    let (queue, mut receiver) = request_queue(8, 2);
    let flooder = Keys::generate();
    let offers: Vec<Offer> = (0..6).map(|_| queue.offer(signed_by(&flooder))).collect();
    assert_eq!(
        offers,
        [
            Offer::Queued,
            Offer::Queued,
            Offer::AuthorLimit,
            Offer::AuthorLimit,
            Offer::AuthorLimit,
            Offer::AuthorLimit
        ]
    );
    // Others still get in, up to the capacity; then requests are dropped, never waited for.
    let mut others = Vec::new();
    for _ in 0..7 {
        others.push(queue.offer(signed_by(&Keys::generate())));
    }
    assert_eq!(others[..6], [Offer::Queued; 6]);
    assert_eq!(others[6], Offer::QueueFull);
    assert_eq!(queue.depth(), 8);
    assert_eq!(queue.authors(), 7);

    // Once one of the flooder's requests is handled, it may queue one more.
    let first = receiver.recv().await.unwrap();
    assert_eq!(first.event.pubkey, flooder.public_key());
    assert_eq!(queue.offer(signed_by(&flooder)), Offer::AuthorLimit);
    drop(first);
    assert_eq!(queue.offer(signed_by(&flooder)), Offer::Queued);

    // The per-author map forgets authors whose requests are all handled.
    for _ in 0..8 {
        drop(receiver.recv().await.unwrap());
    }
    assert_eq!(queue.authors(), 0);
    assert_eq!(queue.depth(), 0);
}

/// A hostile relay serves a trusted controller's credits, altered: one with another event's
/// signature, one re-dated after signing (its id no longer hashes what it says). Both are backed
/// by real payments, so either would be applied if it were counted.
async fn a_relay_serving_forged_events_credits_nothing(backend: Backend) {
    let mut h = Harness::new(backend, None).await;
    let t0 = wall_now();
    let controller = h.controller_keys.clone();
    let mut stolen_signature = h.credit(&controller, "eve", 10, t0 - 30).await;
    stolen_signature.sig = h.credit(&controller, "other", 10, t0 - 30).await.sig;
    let mut redated = h.credit(&controller, "trent", 10, t0 - 30).await;
    redated.created_at = Timestamp::from(t0 - 29);
    for forged in [&stolen_signature, &redated] {
        assert!(forged.verify().is_err());
        assert!(h.relay.store_unchecked(forged).await, "the relay stores it");
    }
    // A real credit, dated after them: once it is applied, the back-fill has handled them.
    h.publish(&h.credit(&controller, "alice", 10, t0 - 5).await)
        .await;
    h.start_at(t0, false).await;
    wait_for_credited(&h.ledger, "alice", 10, Duration::from_secs(20)).await;
    for user in ["eve", "trent"] {
        assert_eq!(h.ledger.balance(user).await.unwrap().credited, 0, "{user}");
    }
    h.finish().await;
}
