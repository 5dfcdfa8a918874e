//! A ledger error never stops a service for good: the supervisor restarts it with back-off and
//! it picks up where it was; a service that keeps failing makes the supervisor give up (and
//! `indexer run` exit non-zero). `/health` and `/metrics` answer, and `/health` turns 503 when
//! the ledger does not. Ledger failures are real: a trigger that makes inserts into `entries`
//! fail, on SQLite and on Postgres.
#[macro_use]
mod common;

use common::{fast_restarts, settings, wait_for_credited, wait_until, wall_now, Backend, Harness};
use indexer::{
    clock::Clock,
    metrics::ServiceLabel,
    supervisor::{supervise, Progress, ServiceError},
};
use sqlx::{Connection, Executor};
use std::{
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

on_both_backends!(
    a_watcher_whose_ledger_fails_transiently_keeps_going,
    a_watcher_whose_ledger_keeps_failing_makes_the_supervisor_give_up,
    health_and_metrics_answer_and_health_fails_without_a_relay_or_a_ledger,
);

/// Makes every insert into `entries` fail (`on`) or work again.
async fn break_entries(backend: Backend, url: &str, on: bool) {
    let statements: &[&str] = match (backend, on) {
        (Backend::Sqlite, true) => &["CREATE TRIGGER fail_entries BEFORE INSERT ON entries \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END"],
        (Backend::Sqlite, false) => &["DROP TRIGGER fail_entries"],
        (Backend::Postgres, true) => &[
            "CREATE FUNCTION fail_entries() RETURNS trigger AS $$ \
             BEGIN RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER fail_entries BEFORE INSERT ON entries \
             FOR EACH ROW EXECUTE FUNCTION fail_entries()",
        ],
        (Backend::Postgres, false) => &["DROP TRIGGER fail_entries ON entries"],
    };
    match backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            for statement in statements {
                conn.execute(*statement).await.unwrap();
            }
            conn.close().await.unwrap();
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            for statement in statements {
                conn.execute(*statement).await.unwrap();
            }
            conn.close().await.unwrap();
        }
    }
}

fn restarts(h: &mut Harness, service: &'static str) -> u64 {
    h.services()
        .metrics
        .restarts
        .get_or_create(&ServiceLabel { service })
        .get()
}

async fn a_watcher_whose_ledger_fails_transiently_keeps_going(backend: Backend) {
    let mut h = Harness::new(backend, None).await;
    let t0 = wall_now();
    h.start(
        settings(fast_restarts(1_000), Clock::from_fn(move || t0)),
        false,
        None,
    )
    .await;
    let controller = h.controller_keys.clone();
    h.publish(&h.credit(&controller, "erin", 10, t0 - 10).await)
        .await;
    wait_for_credited(&h.ledger, "erin", 10, Duration::from_secs(20)).await;

    break_entries(backend, &h.db.url, true).await;
    h.publish(&h.credit(&controller, "erin", 10, t0 - 5).await)
        .await;
    let metrics = h.services().metrics.clone();
    wait_until(
        "the watcher to fail and restart",
        Duration::from_secs(20),
        || {
            let metrics = metrics.clone();
            async move {
                metrics
                    .restarts
                    .get_or_create(&ServiceLabel {
                        service: "nostr_watcher",
                    })
                    .get()
                    > 0
            }
        },
    )
    .await;
    break_entries(backend, &h.db.url, false).await;

    // The event that failed is back-filled by the restart, and the next one is applied.
    h.publish(&h.credit(&controller, "erin", 10, t0 - 1).await)
        .await;
    wait_for_credited(&h.ledger, "erin", 30, Duration::from_secs(20)).await;
    assert!(restarts(&mut h, "nostr_watcher") > 0);
    h.finish().await;
}

async fn a_watcher_whose_ledger_keeps_failing_makes_the_supervisor_give_up(backend: Backend) {
    let mut h = Harness::new(backend, None).await;
    let t0 = wall_now();
    break_entries(backend, &h.db.url, true).await;
    let controller = h.controller_keys.clone();
    h.publish(&h.credit(&controller, "frank", 10, t0 - 5).await)
        .await;
    h.start(
        settings(fast_restarts(3), Clock::from_fn(move || t0)),
        false,
        None,
    )
    .await;
    let failure = tokio::time::timeout(Duration::from_secs(20), h.services().failed())
        .await
        .expect("the supervisor gives up within 20 s");
    assert_eq!(failure.service, "nostr_watcher");
    assert_eq!(failure.failures, 3);
    assert!(matches!(failure.last, ServiceError::Ledger(_)), "{failure}");
    h.finish().await;
}

async fn health_and_metrics_answer_and_health_fails_without_a_relay_or_a_ledger(backend: Backend) {
    let mut h = Harness::new(backend, None).await;
    let t0 = wall_now();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    h.start(
        settings(fast_restarts(1_000), Clock::from_fn(move || t0)),
        true,
        Some(listener),
    )
    .await;
    let controller = h.controller_keys.clone();
    h.publish(&h.credit(&controller, "gina", 10, t0 - 5).await)
        .await;
    wait_for_credited(&h.ledger, "gina", 10, Duration::from_secs(20)).await;

    let http = reqwest::Client::new();
    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "indexer_nostr_events_total{kind=\"credit\",outcome=\"applied\"} 1",
        "indexer_entries_applied_total{kind=\"credit\"} 1",
        &format!("indexer_nostr_cursor_seconds {}", t0 - 5),
        "indexer_outbox_depth 0",
        "indexer_request_queue_depth 0",
        "indexer_relays_connected 1",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing in\n{metrics}"
        );
    }

    // No relay connected: 503, the ledger still fine.
    let url = format!("{base}/health");
    let health_is = |ledger_ok: bool, relays: u64| {
        let (http, url) = (http.clone(), url.clone());
        move || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let Ok(response) = http.get(&url).send().await else {
                    return false;
                };
                let status = response.status();
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                status == 503
                    && (body["ledger"] == "ok") == ledger_ok
                    && body["relays_connected"] == relays
            }
        }
    };
    h.relay.shutdown().await;
    wait_until(
        "/health to say no relay is connected",
        Duration::from_secs(20),
        health_is(true, 0),
    )
    .await;
    // The ledger stops answering: /health says so.
    h.ledger.close().await;
    wait_until(
        "/health to say the ledger is down",
        Duration::from_secs(10),
        health_is(false, 0),
    )
    .await;
    h.stop().await;
    h.db.remove().await;
}

#[tokio::test]
async fn a_service_that_recovers_resets_its_failure_count() {
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let runs = Arc::new(AtomicU32::new(0));
    let counter = runs.clone();
    // Every other run makes progress before failing: never three failures in a row without
    // progress, until run 12, after which none does.
    let supervised = supervise(
        "flaky",
        fast_restarts(3),
        Default::default(),
        stopped,
        move |progress: Progress| {
            let run = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if run % 2 == 1 && run < 12 {
                    progress.tick();
                }
                if run >= 12 {
                    return Err(ServiceError::Relay("gone for good".into()));
                }
                Err(ServiceError::Relay("flaky".into()))
            }
        },
    );
    let failure = tokio::time::timeout(Duration::from_secs(10), supervised)
        .await
        .expect("gives up in time")
        .expect_err("gives up");
    // Run 11 made progress; runs 11, 12 and 13 are three failures since: the last is fatal.
    assert_eq!(runs.load(Ordering::SeqCst), 14);
    assert_eq!(failure.failures, 3);
}
