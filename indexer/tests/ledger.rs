//! The ledger invariants of DESIGN.md, each on SQLite and on Postgres (a database created and
//! dropped per test on the local server).
use indexer::ledger::{
    testing::TempDatabase, Announcement, Applied, Charge, Clock, EscrowCost, EscrowLock,
    EscrowState, Hold, KeyLimit, KeyRevocation, Ledger, LedgerError, NewEntry, PaidIn, Payment,
    UsageRecord, X402Payment, X402State,
};
use std::{
    future::Future,
    panic::AssertUnwindSafe,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
};

/// Runs `body` against a fresh ledger, removes the database, then re-raises any failure.
async fn run<F, Fut>(db: TempDatabase, body: F)
where
    F: FnOnce(Ledger, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let ledger = db.ledger().await;
    let result = futures_util::FutureExt::catch_unwind(AssertUnwindSafe(body(
        ledger.clone(),
        db.url.clone(),
    )))
    .await;
    ledger.close().await;
    db.remove().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// One test per backend from one body.
macro_rules! on_both_backends {
    ($name:ident, |$ledger:ident, $url:ident| $body:block) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                run(TempDatabase::sqlite(), |$ledger, $url| async move {
                    let _ = &$url;
                    $body
                })
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let db = TempDatabase::postgres()
                    .await
                    .expect("create Postgres test database");
                run(db, |$ledger, $url| async move {
                    let _ = &$url;
                    $body
                })
                .await;
            }
        }
    };
}

const USER: &str = "UserWallet1111111111111111111111111111111111";

/// Credits `tokens` to `user` the way the indexer does: a payment on chain, then its credit.
async fn fund(ledger: &Ledger, user: &str, tokens: i64, signature: &str) {
    ledger
        .record_payment(&payment(user, signature, tokens))
        .await
        .unwrap();
    let credit = NewEntry::credit(
        user,
        tokens,
        Some(signature),
        &format!("event-{signature}"),
        "controller",
    );
    assert_eq!(ledger.apply(&credit).await.unwrap(), Applied::Applied);
}

/// A payment of `user` in transaction `signature`, worth `tokens`.
fn payment(user: &str, signature: &str, tokens: i64) -> Payment {
    Payment {
        signature: signature.into(),
        index: 0,
        user: user.into(),
        namespace_id: 0,
        nonce: 0,
        amount: 1_000,
        mint: None,
        tokens,
        slot: 1,
    }
}

// Invariant 7 for tokens: a `TokenPaid` is kept with its mint, and its credit is its worth.
on_both_backends!(
    token_payments_keep_their_mint_and_credits_are_their_worth,
    |ledger, url| {
        const USDC: &str = "UsdcMint11111111111111111111111111111111111";
        let token = |signature: &str, index, nonce, units, tokens| Payment {
            index,
            nonce,
            amount: units,
            mint: Some(USDC.into()),
            ..payment(USER, signature, tokens)
        };
        fund(&ledger, USER, 100, "sig-sol").await;
        // Two token payments in one chain transaction, recorded together (Postgres: one batch).
        let together = [
            token("sig-usdc", 0, 1, 2_500_000, 25_000),
            token("sig-usdc", 1, 2, 1_000_000, 10_000),
        ];
        assert_eq!(ledger.record_payments(&together).await.unwrap(), 2);
        let credit =
            |tokens, id: &str| NewEntry::credit(USER, tokens, Some("sig-usdc"), id, "controller");
        assert_eq!(
            ledger.apply(&credit(35_000, "event-usdc")).await.unwrap(),
            Applied::Applied
        );
        assert_eq!(ledger.balance(USER).await.unwrap().credited, 35_100);
        assert_eq!(
            ledger.paid_in(USER).await.unwrap(),
            vec![
                PaidIn {
                    mint: None,
                    amount: 1_000,
                    tokens: 100
                },
                PaidIn {
                    mint: Some(USDC.into()),
                    amount: 3_500_000,
                    tokens: 35_000
                },
            ]
        );
        let found = ledger.payment_for(USER, 0, 2).await.unwrap().unwrap();
        assert_eq!(
            (found.mint.as_deref(), found.amount),
            (Some(USDC), 1_000_000)
        );
        assert!(ledger.audit().await.unwrap().is_clean());
    }
);

on_both_backends!(
    an_x402_payment_is_claimed_once_and_credited_once_across_replicas,
    |ledger, url| {
        const USDC: &str = "UsdcMint11111111111111111111111111111111111";
        let payment = |signature: &str| X402Payment {
            signature: signature.into(),
            payer: USER.into(),
            mint: USDC.into(),
            amount: 2_000_000,
            tokens: 20_000,
            blockhash: "blockhash".into(),
            source: "source-account".into(),
        };
        // Another replica on the same database.
        let other = Ledger::connect(&url).await.unwrap();
        // Claimed by one; the copy (a replay, or a concurrent retry) sees it taken.
        assert_eq!(ledger.x402_claim(&payment("tx-a")).await.unwrap(), None);
        assert_eq!(
            other.x402_claim(&payment("tx-a")).await.unwrap(),
            Some(X402State::Submitted)
        );
        // Both replicas see it land and race to credit it: exactly one wins, and only the
        // winner may serve a request for it.
        let (a, b) = tokio::join!(
            ledger.x402_credit("tx-a", "tx-a", 7, 0, Some("req-1")),
            other.x402_credit("tx-a", "tx-a", 7, 0, Some("req-2")),
        );
        assert!(a.unwrap() ^ b.unwrap(), "credited exactly once");
        assert_eq!(ledger.balance(USER).await.unwrap().credited, 20_000);
        assert_eq!(
            other.x402_claim(&payment("tx-a")).await.unwrap(),
            Some(X402State::Credited)
        );
        assert_eq!(
            ledger.paid_in(USER).await.unwrap(),
            vec![PaidIn {
                mint: Some(USDC.into()),
                amount: 2_000_000,
                tokens: 20_000
            }]
        );
        // It redeems no authorisation: the wallet's first top-up (nonce 0) is still unpaid.
        assert!(ledger.payment_for(USER, 0, 0).await.unwrap().is_none());
        // A payment the chain refused is never credited, by anyone.
        assert_eq!(ledger.x402_claim(&payment("tx-b")).await.unwrap(), None);
        assert!(ledger.x402_unsettled(i64::MAX).await.unwrap().len() == 1);
        assert!(other.x402_fail("tx-b").await.unwrap());
        assert!(!ledger
            .x402_credit("tx-b", "tx-b", 8, 0, None)
            .await
            .unwrap());
        assert!(!ledger.x402_fail("tx-b").await.unwrap());
        assert_eq!(ledger.balance(USER).await.unwrap().credited, 20_000);
        assert!(ledger.x402_unsettled(i64::MAX).await.unwrap().is_empty());
        // Settled by an external facilitator: claimed by the payer's signature, credited with
        // the id of the transaction that landed, found by either.
        assert_eq!(
            ledger.x402_claim(&payment("payer-sig-c")).await.unwrap(),
            None
        );
        let unsettled = other.x402_unsettled(i64::MAX).await.unwrap();
        assert_eq!(unsettled.len(), 1);
        assert_eq!(unsettled[0].payment, payment("payer-sig-c"));
        assert!(other
            .x402_credit("payer-sig-c", "tx-c", 9, 0, None)
            .await
            .unwrap());
        for id in ["payer-sig-c", "tx-c"] {
            assert_eq!(
                ledger.x402_state(id).await.unwrap(),
                Some(X402State::Credited),
                "{id}"
            );
        }
        assert_eq!(ledger.balance(USER).await.unwrap().credited, 40_000);
        let audit = ledger.audit().await.unwrap();
        assert!(audit.is_clean(), "{audit:?}");
        other.close().await;
    }
);

on_both_backends!(
    an_escrow_lock_is_locked_settled_credited_and_charged_once_across_replicas,
    |ledger, url| {
        let lock = EscrowLock {
            lock: "LockAccount1".into(),
            payer: USER.into(),
            mint: "UsdcMint11111111111111111111111111111111111".into(),
            nonce: 4,
            max_amount: 3_000,
            deadline: 2_000_000_000,
            request_id: "req-first".into(),
            lock_tx: "lock-tx".into(),
            blockhash: "blockhash".into(),
        };
        let cost = EscrowCost {
            cost: 11,
            units: 2,
            model: "echo".into(),
            prompt_tokens: 3,
            completion_tokens: 4,
        };
        // Another replica on the same database.
        let other = Ledger::connect(&url).await.unwrap();
        // Two copies of one authorisation claim its lock at once: one sends it.
        let (a, b) = tokio::join!(ledger.escrow_claim(&lock), other.escrow_claim(&lock));
        let claims = [a.unwrap(), b.unwrap()];
        assert!(claims.contains(&None) && claims.contains(&Some(EscrowState::Locking)));
        // Both see it land: one serves.
        let (a, b) = tokio::join!(
            ledger.escrow_move(&lock.lock, EscrowState::Locking, EscrowState::Locked),
            other.escrow_move(&lock.lock, EscrowState::Locking, EscrowState::Locked),
        );
        assert!(a.unwrap() ^ b.unwrap(), "served once");
        // A release (the sweep's) and a settlement (the meter's) race: one wins.
        let (released, costed) = tokio::join!(
            other.escrow_move(&lock.lock, EscrowState::Locked, EscrowState::Released),
            ledger.escrow_cost(&lock.lock, "req-second", &cost, "settle-1", "hash-1"),
        );
        let released = released.unwrap();
        assert!(released ^ costed.unwrap());
        if released {
            // The released lock is done; the rest follows another lock that was settled.
            assert!(ledger.escrow_unfinished(i64::MAX).await.unwrap().is_empty());
            let lock = EscrowLock {
                lock: "LockAccount2".into(),
                ..lock.clone()
            };
            assert_eq!(ledger.escrow_claim(&lock).await.unwrap(), None);
            assert!(ledger
                .escrow_move(&lock.lock, EscrowState::Locking, EscrowState::Locked)
                .await
                .unwrap());
            assert!(ledger
                .escrow_cost(&lock.lock, "req-second", &cost, "settle-1", "hash-1")
                .await
                .unwrap());
        }
        let lock = match released {
            true => EscrowLock {
                lock: "LockAccount2".into(),
                ..lock
            },
            false => lock,
        };
        let row = ledger.escrow_row(&lock.lock).await.unwrap().unwrap();
        assert_eq!(
            (row.state, row.cost.as_ref()),
            (EscrowState::Settling, Some(&cost))
        );
        assert_eq!(row.lock.request_id, "req-second", "the request it served");
        assert_eq!(ledger.escrow_unfinished(i64::MAX).await.unwrap(), vec![row]);
        // Its settlement expired unseen: replicas race to replace it; one sends the new one.
        let (a, b) = tokio::join!(
            ledger.escrow_resend(&lock.lock, "settle-1", "settle-2a", "hash-2"),
            other.escrow_resend(&lock.lock, "settle-1", "settle-2b", "hash-2"),
        );
        assert!(a.as_ref().unwrap() ^ b.as_ref().unwrap());
        let live = if *a.as_ref().unwrap() {
            "settle-2a"
        } else {
            "settle-2b"
        };
        // Only the live settlement is credited, once.
        assert!(!ledger
            .escrow_credit(&lock.lock, "settle-1", 5, 0, 20)
            .await
            .unwrap());
        let (a, b) = tokio::join!(
            ledger.escrow_credit(&lock.lock, live, 5, 0, 20),
            other.escrow_credit(&lock.lock, live, 5, 0, 20),
        );
        assert!(a.unwrap() ^ b.unwrap(), "credited once");
        assert_eq!(ledger.balance(USER).await.unwrap().credited, 20);
        // It redeems no top-up: the wallet's authorisation nonce is not a paid one.
        assert!(ledger.payment_for(USER, 0, 4).await.unwrap().is_none());
        assert!(ledger
            .escrow_move(&lock.lock, EscrowState::Settled, EscrowState::Charged)
            .await
            .unwrap());
        assert!(ledger.escrow_unfinished(i64::MAX).await.unwrap().is_empty());
        // Anything else is refused once it has moved on.
        assert_eq!(
            other.escrow_claim(&lock).await.unwrap(),
            Some(EscrowState::Charged)
        );
        assert!(ledger.audit().await.unwrap().is_clean());
    }
);

// Invariant 1: available = credited − debited − reserved ≥ 0, always, under any concurrency.
on_both_backends!(
    concurrent_reservations_never_exceed_the_balance,
    |ledger, url| {
        fund(&ledger, USER, 1_000, "sig-a").await;
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let ledger = ledger.clone();
                tokio::spawn(
                    async move { ledger.reserve(USER, &format!("req-{i}"), 100, 60).await },
                )
            })
            .collect();
        let mut granted = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => granted += 1,
                Err(LedgerError::Insufficient {
                    needed: 100,
                    available,
                }) => assert!(available >= 0),
                Err(other) => panic!("unexpected error: {other}"),
            }
        }
        assert_eq!(
            granted, 10,
            "exactly the 10 reservations the balance covers"
        );
        let balance = ledger.balance(USER).await.unwrap();
        assert_eq!((balance.reserved, balance.available), (1_000, 0));
    }
);

on_both_backends!(
    concurrent_settlements_and_debits_keep_the_balance_non_negative,
    |ledger, url| {
        fund(&ledger, USER, 500, "sig-a").await;
        for i in 0..5 {
            ledger
                .reserve(USER, &format!("req-{i}"), 100, 60)
                .await
                .unwrap();
        }
        // Each request costs more than it reserved, while remote debits race for the rest.
        let mut tasks = Vec::new();
        for i in 0..5 {
            let settling = ledger.clone();
            tasks.push(tokio::spawn(async move {
                settling
                    .settle(&format!("req-{i}"), USER, 150, |_| None)
                    .await
                    .map(|s| s.charged)
            }));
            let debiting = ledger.clone();
            tasks.push(tokio::spawn(async move {
                let debit = NewEntry::debit(
                    USER,
                    50,
                    Some(&format!("remote-{i}")),
                    &format!("ev-{i}"),
                    "proxy",
                );
                debiting
                    .apply(&debit)
                    .await
                    .map(|a| if a == Applied::Applied { 50 } else { 0 })
            }));
        }
        let mut total = 0;
        for task in tasks {
            total += task.await.unwrap().unwrap();
        }
        let balance = ledger.balance(USER).await.unwrap();
        assert_eq!(balance.debited, total);
        assert!(balance.available >= 0);
        assert_eq!(balance.reserved, 0);
        assert!(total <= 500, "never more than was credited: {total}");
    }
);

// Invariant 2: every entry has a unique id; applying it twice is a no-op.
on_both_backends!(applying_an_entry_twice_counts_once, |ledger, url| {
    fund(&ledger, USER, 1_000, "sig-a").await;
    let again = NewEntry::credit(
        USER,
        1_000,
        Some("sig-a"),
        "another-event-same-payment",
        "controller",
    );
    assert_eq!(ledger.apply(&again).await.unwrap(), Applied::Duplicate);
    let debit = NewEntry::debit(USER, 10, Some("request-1"), "ev-1", "proxy");
    assert_eq!(ledger.apply(&debit).await.unwrap(), Applied::Applied);
    let same_request = NewEntry::debit(USER, 10, Some("request-1"), "ev-2", "proxy");
    assert_eq!(
        ledger.apply(&same_request).await.unwrap(),
        Applied::Duplicate
    );
    let balance = ledger.balance(USER).await.unwrap();
    assert_eq!((balance.credited, balance.debited), (1_000, 10));
});

on_both_backends!(
    a_proxy_settlement_and_its_relayed_debit_count_once,
    |ledger, url| {
        fund(&ledger, USER, 1_000, "sig-a").await;
        ledger.reserve(USER, "request-7", 300, 60).await.unwrap();
        let settled = ledger
            .settle("request-7", USER, 120, |_| None)
            .await
            .unwrap();
        assert_eq!((settled.charged, settled.newly_settled), (120, true));
        // The indexer later reads the proxy's debit event from the relay.
        let relayed = NewEntry::debit(USER, 120, Some("request-7"), "ev-debit", "proxy");
        assert_eq!(ledger.apply(&relayed).await.unwrap(), Applied::Duplicate);
        // A second settlement of the same request changes nothing.
        let again = ledger
            .settle("request-7", USER, 120, |_| None)
            .await
            .unwrap();
        assert_eq!((again.charged, again.newly_settled), (0, false));
        let balance = ledger.balance(USER).await.unwrap();
        assert_eq!(
            (balance.debited, balance.reserved, balance.available),
            (120, 0, 880)
        );
    }
);

// Invariant 3: reservations are atomic, settled to the actual cost, released, and expire.
on_both_backends!(
    settle_charges_the_actual_cost_and_releases_the_rest,
    |ledger, url| {
        fund(&ledger, USER, 1_000, "sig-a").await;
        let reservation = ledger.reserve(USER, "r1", 400, 60).await.unwrap();
        assert_eq!(reservation.amount, 400);
        assert_eq!(ledger.balance(USER).await.unwrap().available, 600);
        let announced = Arc::new(AtomicI64::new(0));
        let seen = announced.clone();
        let settled = ledger
            .settle("r1", USER, 150, move |charged| {
                seen.store(charged, Ordering::SeqCst);
                Some(Announcement {
                    dedupe_key: "debit-event-r1".into(),
                    event_id: "event-r1".into(),
                    event_json: format!("{{\"tokens\":{}}}", -charged),
                })
            })
            .await
            .unwrap();
        assert_eq!((settled.charged, settled.shortfall), (150, 0));
        assert_eq!(
            announced.load(Ordering::SeqCst),
            150,
            "announced what was charged"
        );
        let balance = ledger.balance(USER).await.unwrap();
        assert_eq!(
            (balance.debited, balance.reserved, balance.available),
            (150, 0, 850)
        );
        let queued = ledger.due_outbox(10).await.unwrap();
        assert_eq!(
            queued.len(),
            1,
            "the debit event is queued with the settlement"
        );
        assert_eq!(queued[0].event_json, "{\"tokens\":-150}");
        let rows = ledger.statement(USER, "", 10).await.unwrap();
        let debit = rows.iter().find(|row| row.kind == "debit").unwrap();
        assert_eq!(
            (debit.tokens, debit.event_id.as_deref()),
            (-150, Some("event-r1")),
            "the debit row names the event that announced it"
        );
    }
);

on_both_backends!(
    settle_above_the_reservation_charges_at_most_what_is_left,
    |ledger, url| {
        fund(&ledger, USER, 100, "sig-a").await;
        ledger.reserve(USER, "r1", 80, 60).await.unwrap();
        let settled = ledger.settle("r1", USER, 130, |_| None).await.unwrap();
        assert_eq!((settled.charged, settled.shortfall), (100, 30));
        assert_eq!(ledger.balance(USER).await.unwrap().available, 0);
    }
);

on_both_backends!(
    release_and_expiry_give_the_reservation_back,
    |ledger, url| {
        fund(&ledger, USER, 100, "sig-a").await;
        ledger.reserve(USER, "r1", 60, 60).await.unwrap();
        assert!(ledger.release("r1").await.unwrap());
        assert!(
            !ledger.release("r1").await.unwrap(),
            "release is idempotent"
        );
        ledger.reserve(USER, "r2", 70, -1).await.unwrap();
        assert_eq!(ledger.balance(USER).await.unwrap().available, 30);
        let expiry = ledger
            .expire_reservations(indexer::ledger::now(), |_| None)
            .await
            .unwrap();
        assert_eq!((expiry.released, expiry.charged.len()), (1, 0));
        assert_eq!(ledger.balance(USER).await.unwrap().available, 100);
        // A settlement after expiry still bills the request from what is available.
        let settled = ledger.settle("r2", USER, 40, |_| None).await.unwrap();
        assert_eq!(settled.charged, 40);
        assert_eq!(ledger.balance(USER).await.unwrap().available, 60);
    }
);

// A served reservation (the upstream answered) whose settlement never came is charged at
// expiry, as a debit with the request id, announced; an unserved one is released.
on_both_backends!(
    at_expiry_a_served_reservation_is_charged_and_an_unserved_one_released,
    |ledger, url| {
        fund(&ledger, USER, 1_000, "sig-a").await;
        let start = indexer::ledger::now();
        let on_key = KeyLimit {
            key_id: "key-served",
            budget: 500,
            max_uses: None,
        };
        for (id, amount, key) in [("served", 300, Some(on_key)), ("unserved", 200, None)] {
            let hold = Hold {
                id,
                user: USER,
                amount,
                minimum: None,
                ttl_seconds: 60,
                key,
                rate: None,
                session: None,
            };
            ledger.hold(&hold).await.unwrap();
        }
        assert!(ledger.mark_served("served", start).await.unwrap());
        let served = ledger.reservation("served").await.unwrap().unwrap();
        assert_eq!((served.amount, served.served_at), (300, Some(start)));
        assert!(!ledger.mark_served("gone", start).await.unwrap());

        // Not yet expired at `start`: nothing moves.
        let early = ledger.expire_reservations(start, |_| None).await.unwrap();
        assert_eq!((early.released, early.charged.len()), (0, 0));
        assert_eq!(ledger.balance(USER).await.unwrap().reserved, 500);

        // The indexer's sweep releases the unserved one and leaves the served one to a proxy.
        // Just past both expiries, as the holds dated them (the clock may have ticked since
        // `start`).
        let mut expiries = vec![];
        for id in ["served", "unserved"] {
            expiries.push(ledger.reservation(id).await.unwrap().unwrap().expires_at);
        }
        let later = expiries.into_iter().max().unwrap() + 1;
        assert_eq!(ledger.release_expired_unserved(later).await.unwrap(), 1);
        assert_eq!(ledger.balance(USER).await.unwrap().reserved, 300);

        let mut announced = vec![];
        let expiry = ledger
            .expire_reservations(later, |charge| {
                announced.push((charge.id.clone(), charge.charged));
                Some(Announcement {
                    dedupe_key: format!("debit:{}", charge.id),
                    event_id: format!("event-{}", charge.id),
                    event_json: format!("{{\"tokens\":{}}}", -charge.charged),
                })
            })
            .await
            .unwrap();
        assert_eq!(expiry.released, 0);
        assert_eq!(announced, vec![("served".to_owned(), 300)]);
        let balance = ledger.balance(USER).await.unwrap();
        assert_eq!(
            (balance.debited, balance.reserved, balance.available),
            (300, 0, 700)
        );
        let key = ledger.key_budget("key-served").await.unwrap().unwrap();
        assert_eq!((key.spent, key.reserved), (300, 0));
        let queued = ledger.due_outbox(10).await.unwrap();
        assert_eq!(queued.len(), 1, "the debit is announced");
        assert_eq!(queued[0].event_json, "{\"tokens\":-300}");
        let rows = ledger.statement(USER, "", 10).await.unwrap();
        assert!(rows
            .iter()
            .any(|row| row.event_id.as_deref() == Some("event-served") && row.tokens == -300));
        let audit = ledger.audit().await.unwrap();
        assert!(audit.is_clean(), "a debit with its request id: {audit:?}");

        // A settlement arriving after the sweep charges nothing more.
        let late = ledger.settle("served", USER, 50, |_| None).await.unwrap();
        assert_eq!((late.charged, late.newly_settled), (0, false));
        assert_eq!(ledger.balance(USER).await.unwrap().debited, 300);
    }
);

on_both_backends!(
    reservations_refuse_non_positive_amounts_and_unknown_users,
    |ledger, url| {
        assert!(matches!(
            ledger.reserve(USER, "r0", 0, 60).await,
            Err(LedgerError::Amount(_))
        ));
        match ledger.reserve("nobody", "r1", 1, 60).await {
            Err(LedgerError::Insufficient {
                needed: 1,
                available: 0,
            }) => {}
            other => panic!("expected insufficient, got {other:?}"),
        }
    }
);

// Invariant 4: a credit counts only once its on-chain payment is seen; the audit says so.
on_both_backends!(credits_wait_for_their_payment, |ledger, url| {
    let credit = NewEntry::credit(USER, 5_000, Some("sig-late"), "ev-credit", "controller");
    assert_eq!(ledger.apply(&credit).await.unwrap(), Applied::Pending);
    assert_eq!(ledger.balance(USER).await.unwrap().available, 0);
    let audit = ledger.audit().await.unwrap();
    assert_eq!(
        audit.credits_without_payment,
        vec!["credit:sig-late".to_string()]
    );
    assert!(!audit.is_clean());

    assert!(ledger
        .record_payment(&payment(USER, "sig-late", 5_000))
        .await
        .unwrap());
    assert!(
        !ledger
            .record_payment(&payment(USER, "sig-late", 5_000))
            .await
            .unwrap(),
        "payments recorded once"
    );
    assert_eq!(ledger.balance(USER).await.unwrap().available, 5_000);
    assert!(ledger.audit().await.unwrap().is_clean());
});

// Invariant 7: a credit is worth exactly its payment. One that claims more or less is refused,
// whichever arrives first, and the audit reports it; the right one still applies.
on_both_backends!(
    a_credit_must_announce_what_its_payment_is_worth,
    |ledger, url| {
        // Payment first, then a credit claiming more.
        ledger
            .record_payment(&payment(USER, "sig-a", 1_000))
            .await
            .unwrap();
        let inflated = NewEntry::credit(USER, 50_000, Some("sig-a"), "ev-a", "controller");
        assert!(matches!(
            ledger.apply(&inflated).await.unwrap(),
            Applied::Rejected(reason) if reason.contains("worth 1000")
        ));
        // Credit first (pending), then its payment, worth less than it claims.
        let early = NewEntry::credit(USER, 7_000, Some("sig-b"), "ev-b", "controller");
        assert_eq!(ledger.apply(&early).await.unwrap(), Applied::Pending);
        ledger
            .record_payment(&payment(USER, "sig-b", 700))
            .await
            .unwrap();
        assert_eq!(ledger.balance(USER).await.unwrap().credited, 0);
        let audit = ledger.audit().await.unwrap();
        assert_eq!(
            audit.credits_disagreeing,
            vec!["credit:sig-a".to_string(), "credit:sig-b".to_string()]
        );
        assert!(!audit.is_clean());
        // The same payment announced at its worth is one credit, once.
        let honest = NewEntry::credit(USER, 700, Some("sig-c"), "ev-c", "controller");
        ledger
            .record_payment(&payment(USER, "sig-c", 700))
            .await
            .unwrap();
        assert_eq!(ledger.apply(&honest).await.unwrap(), Applied::Applied);
        assert_eq!(ledger.apply(&honest).await.unwrap(), Applied::Duplicate);
        assert_eq!(ledger.balance(USER).await.unwrap().credited, 700);
    }
);

// Invariant 4 under concurrency: a credit and its payment arriving at the same moment (the
// normal flow right after `pay`) always meet, on Postgres's READ COMMITTED too.
on_both_backends!(
    credits_and_payments_arriving_together_always_meet,
    |ledger, url| {
        const PAIRS: usize = 300;
        let users: Vec<String> = (0..10).map(|u| format!("Wallet{u}")).collect();
        let mut tasks = Vec::new();
        for i in 0..PAIRS {
            let user = users[i % users.len()].clone();
            let signature = format!("sig-{i}");
            let (l1, l2) = (ledger.clone(), ledger.clone());
            let (u1, s1) = (user.clone(), signature.clone());
            tasks.push(tokio::spawn(async move {
                let credit = NewEntry::credit(&u1, 10 + i as i64, Some(&s1), &s1, "controller");
                l1.apply(&credit).await.map(|_| ())
            }));
            tasks.push(tokio::spawn(async move {
                l2.record_payment(&payment(&user, &signature, 10 + i as i64))
                    .await
                    .map(|_| ())
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let audit = ledger.audit().await.unwrap();
        assert!(audit.is_clean(), "{audit:?}");
        let total: i64 = audit.users.iter().map(|u| u.credited).sum();
        assert_eq!(total, (0..PAIRS as i64).map(|i| 10 + i).sum::<i64>());
    }
);

// The grace-period sweep and a late payment racing for the same pending credit apply it once.
on_both_backends!(
    the_overdue_sweep_and_a_late_payment_credit_once,
    |ledger, url| {
        const CREDITS: usize = 200;
        for i in 0..CREDITS {
            let credit = NewEntry::credit(
                &format!("Wallet{}", i % 10),
                100,
                Some(&format!("sig-{i}")),
                &format!("ev-{i}"),
                "controller",
            );
            assert_eq!(ledger.apply(&credit).await.unwrap(), Applied::Pending);
        }
        let sweeps: Vec<_> = (0..4)
            .map(|_| {
                let ledger = ledger.clone();
                tokio::spawn(async move { ledger.apply_overdue_credits(-1).await })
            })
            .collect();
        let payments: Vec<_> = (0..CREDITS)
            .map(|i| {
                let ledger = ledger.clone();
                tokio::spawn(async move {
                    ledger
                        .record_payment(&payment(
                            &format!("Wallet{}", i % 10),
                            &format!("sig-{i}"),
                            100,
                        ))
                        .await
                })
            })
            .collect();
        for task in payments {
            task.await.unwrap().unwrap();
        }
        for task in sweeps {
            task.await.unwrap().unwrap();
        }
        let audit = ledger.audit().await.unwrap();
        assert!(audit.is_clean(), "{audit:?}");
        let total: i64 = audit.users.iter().map(|u| u.credited).sum();
        assert_eq!(
            total,
            100 * CREDITS as i64,
            "each credit applied exactly once"
        );
    }
);

on_both_backends!(
    a_payment_for_another_user_does_not_back_a_credit,
    |ledger, url| {
        ledger
            .record_payment(&payment("SomeoneElse", "sig-x", 5_000))
            .await
            .unwrap();
        let credit = NewEntry::credit(USER, 5_000, Some("sig-x"), "ev", "controller");
        assert_eq!(ledger.apply(&credit).await.unwrap(), Applied::Pending);
        let audit = ledger.audit().await.unwrap();
        assert_eq!(audit.payments_without_credit, vec!["sig-x:0".to_string()]);
        assert_eq!(
            audit.credits_without_payment,
            vec!["credit:sig-x".to_string()]
        );
    }
);

on_both_backends!(
    overdue_credits_apply_after_the_grace_period_and_stay_flagged,
    |ledger, url| {
        let credit = NewEntry::credit(USER, 70, Some("sig-never"), "ev", "controller");
        assert_eq!(ledger.apply(&credit).await.unwrap(), Applied::Pending);
        assert_eq!(
            ledger.apply_overdue_credits(3_600).await.unwrap(),
            0,
            "not overdue yet"
        );
        assert_eq!(ledger.apply_overdue_credits(-1).await.unwrap(), 1);
        assert_eq!(ledger.balance(USER).await.unwrap().available, 70);
        assert_eq!(
            ledger.audit().await.unwrap().credits_without_payment,
            vec!["credit:sig-never".to_string()]
        );
    }
);

on_both_backends!(
    debits_beyond_the_balance_are_refused_and_audited,
    |ledger, url| {
        fund(&ledger, USER, 100, "sig-a").await;
        let too_much = NewEntry::debit(USER, 101, Some("req-big"), "ev", "proxy");
        assert!(matches!(
            ledger.apply(&too_much).await.unwrap(),
            Applied::Rejected(_)
        ));
        let no_request = NewEntry::debit(USER, 1, None, "ev-anon", "proxy");
        assert_eq!(ledger.apply(&no_request).await.unwrap(), Applied::Applied);
        let audit = ledger.audit().await.unwrap();
        assert_eq!(
            audit.debits_without_request,
            vec![
                "debit-event:ev-anon".to_string(),
                "debit:req-big".to_string()
            ]
        );
        assert_eq!(ledger.balance(USER).await.unwrap().available, 99);
        let zero = NewEntry::credit(USER, 0, Some("sig-zero"), "ev-zero", "controller");
        assert!(matches!(
            ledger.apply(&zero).await.unwrap(),
            Applied::Rejected(_)
        ));
    }
);

on_both_backends!(audit_totals_match_entries, |ledger, url| {
    fund(&ledger, USER, 1_000, "sig-a").await;
    ledger.reserve(USER, "r1", 200, 60).await.unwrap();
    ledger.settle("r1", USER, 30, |_| None).await.unwrap();
    let audit = ledger.audit().await.unwrap();
    assert!(audit.is_clean(), "{audit:?}");
    let totals = &audit.users[0];
    assert_eq!(
        (
            totals.credited,
            totals.debited,
            totals.available,
            totals.entries_net
        ),
        (1_000, 30, 970, 970)
    );
});

// Invariant 5: cursors are persisted; a restart resumes from them.
on_both_backends!(cursors_survive_a_reconnect, |ledger, url| {
    assert_eq!(ledger.cursor("nostr").await.unwrap(), None);
    ledger.set_cursor("nostr", "1700000000").await.unwrap();
    ledger.set_cursor("nostr", "1700000060").await.unwrap();
    let reopened = Ledger::connect(&url).await.unwrap();
    assert_eq!(
        reopened.cursor("nostr").await.unwrap().as_deref(),
        Some("1700000060")
    );
    reopened.close().await;
});

// Invariant 6: what must reach the relay waits in the outbox until published. The ledger's
// clock is moved by hand, so the back-off is checked without racing the wall clock.
on_both_backends!(outbox_retries_until_published, |ledger, url| {
    let seconds = Arc::new(AtomicI64::new(indexer::ledger::now() + 10));
    let ledger = ledger.with_clock(Clock::manual(seconds.clone()));
    ledger
        .enqueue("event-1", "{\"id\":\"event-1\"}")
        .await
        .unwrap();
    ledger
        .enqueue("event-1", "{\"id\":\"event-1\"}")
        .await
        .unwrap();
    let due = ledger.due_outbox(10).await.unwrap();
    assert_eq!(due.len(), 1, "deduplicated by event id");
    ledger
        .mark_failed(due[0].id, due[0].attempts, "relay unreachable")
        .await
        .unwrap();
    assert!(
        ledger.due_outbox(10).await.unwrap().is_empty(),
        "backs off after a failure"
    );
    seconds.fetch_add(1, Ordering::SeqCst);
    let retried = ledger.due_outbox(10).await.unwrap();
    assert_eq!(retried.len(), 1, "due again once the back-off is over");
    assert_eq!(retried[0].attempts, 1);
    ledger
        .mark_failed(retried[0].id, retried[0].attempts, "relay unreachable")
        .await
        .unwrap();
    seconds.fetch_add(1, Ordering::SeqCst);
    assert!(
        ledger.due_outbox(10).await.unwrap().is_empty(),
        "the second back-off is longer"
    );
    seconds.fetch_add(1, Ordering::SeqCst);
    assert_eq!(ledger.due_outbox(10).await.unwrap().len(), 1);
    assert_eq!(ledger.outbox_backlog().await.unwrap(), 1);
    ledger.mark_published(&[due[0].id]).await.unwrap();
    assert_eq!(ledger.outbox_backlog().await.unwrap(), 0);
});

#[tokio::test]
async fn unsupported_urls_are_refused() {
    assert!(matches!(
        Ledger::connect("mysql://localhost/x").await,
        Err(LedgerError::UnsupportedUrl(_))
    ));
}

/// Holds `count` reservations of `amount` concurrently on one delegated key; returns the ids
/// that were granted.
async fn hold_on_key(
    ledger: &Ledger,
    key: KeyLimit<'static>,
    count: usize,
    amount: i64,
) -> Vec<String> {
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let (ledger, key) = (ledger.clone(), key.clone());
            tokio::spawn(async move {
                let id = format!("{}-{i}", key.key_id);
                ledger
                    .hold(&Hold {
                        id: &id,
                        user: USER,
                        amount,
                        minimum: None,
                        ttl_seconds: 60,
                        key: Some(key),
                        rate: None,
                        session: None,
                    })
                    .await
            })
        })
        .collect();
    let mut granted = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(reservation) => granted.push(reservation.id),
            Err(LedgerError::KeyBudget { remaining, .. }) => assert!(remaining >= 0),
            Err(LedgerError::KeyUsedUp) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    granted
}

on_both_backends!(
    a_delegated_key_never_reserves_past_its_budget_or_its_single_use,
    |ledger, url| {
        fund(&ledger, USER, 100_000, "sig-k").await;
        let budget = KeyLimit {
            key_id: "key-budget",
            budget: 500,
            max_uses: None,
        };
        let held = hold_on_key(&ledger, budget, 50, 100).await;
        assert_eq!(held.len(), 5, "exactly what the budget covers");
        let single = KeyLimit {
            key_id: "key-once",
            budget: 10_000,
            max_uses: Some(1),
        };
        assert_eq!(hold_on_key(&ledger, single, 10, 100).await.len(), 1);

        // Settling charges at most the key's remaining budget, and frees its hold.
        let charge = Charge {
            id: &held[0],
            user: USER,
            cost: 10_000,
            key_id: Some("key-budget"),
            usage: None,
            rate: None,
        };
        let settled = ledger.charge(&charge, |_| None).await.unwrap();
        assert_eq!(
            settled.charged, 100,
            "its own hold; the other holds are not its to take"
        );
        for id in &held[1..] {
            assert!(ledger.release(id).await.unwrap());
        }
        let key = ledger.key_budget("key-budget").await.unwrap().unwrap();
        assert_eq!((key.spent, key.reserved, key.remaining), (100, 0, 400));
        let balance = ledger.balance(USER).await.unwrap();
        assert_eq!(
            balance.reserved, 100,
            "only the single-use key's hold is left"
        );
    }
);

// Login nonces are stateless; the ledger records each used one until it expires.
on_both_backends!(
    a_login_nonce_is_used_once_and_forgotten_after_it_expires,
    |ledger, url| {
        let other = db_handle(&url).await;
        assert!(ledger
            .use_login_nonce("n1", USER, 1_300, 1_000)
            .await
            .unwrap());
        assert!(
            !other
                .use_login_nonce("n1", USER, 1_300, 1_001)
                .await
                .unwrap(),
            "used once, whichever handle (replica) asks"
        );
        assert!(
            !ledger
                .use_login_nonce("n2", USER, 999, 1_000)
                .await
                .unwrap(),
            "an expired nonce is never accepted"
        );
        // Once n1 expired its row is dropped, and it is refused by its expiry alone.
        assert!(ledger
            .use_login_nonce("n3", USER, 2_000, 1_301)
            .await
            .unwrap());
        assert!(!ledger
            .use_login_nonce("n1", USER, 1_300, 1_301)
            .await
            .unwrap());
        other.close().await;
    }
);

async fn db_handle(url: &str) -> Ledger {
    Ledger::connect(url).await.unwrap()
}

// A revoked key is refused by the hold itself, on every handle sharing the ledger.
on_both_backends!(a_revoked_key_can_hold_nothing_more, |ledger, url| {
    fund(&ledger, USER, 10_000, "sig-r").await;
    let key = KeyLimit {
        key_id: "key-revoked",
        budget: 5_000,
        max_uses: None,
    };
    let hold = |id: &'static str| Hold {
        id,
        user: USER,
        amount: 10,
        minimum: None,
        ttl_seconds: 60,
        key: Some(key.clone()),
        rate: None,
        session: None,
    };
    assert!(ledger.hold(&hold("before")).await.is_ok());
    let revocation = KeyRevocation {
        key_id: "key-revoked",
        user: USER,
        expires_at: indexer::ledger::now() + 600,
    };
    let other = db_handle(&url).await;
    assert!(other
        .revoke_key(&revocation, indexer::ledger::now())
        .await
        .unwrap());
    assert!(
        !other
            .revoke_key(&revocation, indexer::ledger::now())
            .await
            .unwrap(),
        "revoking twice changes nothing"
    );
    assert!(matches!(
        ledger.hold(&hold("after")).await,
        Err(LedgerError::KeyRevoked)
    ));
    assert!(ledger.key_revoked("key-revoked").await.unwrap());
    assert!(!ledger.key_revoked("key-other").await.unwrap());
    let balance = ledger.balance(USER).await.unwrap();
    assert_eq!(
        balance.reserved, 10,
        "only the hold taken before the revocation"
    );
    // The request already running settles normally.
    assert!(ledger.release("before").await.unwrap());
    other.close().await;
});

/// The writer connection never checkpoints (that stalled every queued request); the ledger's
/// own checkpointer must copy the WAL into the database file, or the WAL would grow forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_is_checkpointed_into_the_database_file() {
    let db = TempDatabase::sqlite();
    let ledger = db.ledger().await;
    let path = db.url.trim_start_matches("sqlite:").to_owned();
    // Past the checkpoint of the migrations.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let before = std::fs::metadata(&path).unwrap().len();
    for i in 0..300 {
        fund(&ledger, &format!("user-{i}"), 1, &format!("sig-wal-{i}")).await;
    }
    let mut after = before;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        after = std::fs::metadata(&path).unwrap().len();
        if after > before {
            break;
        }
    }
    assert!(
        after > before,
        "database file still {before} bytes: nothing checkpointed"
    );
    ledger.close().await;
    db.remove().await;
}

// Holds, settlements and releases on one wallet's keys, from two handles (replicas) at once,
// with expiry sweeps running beside them: every call succeeds (on Postgres none is picked as a
// deadlock victim, as a settlement that locked the balance before the key once was), and the
// books balance afterwards.
on_both_backends!(
    concurrent_holds_settlements_and_sweeps_never_deadlock,
    |ledger, url| {
        fund(&ledger, USER, 1_000_000, "sig-dl").await;
        let other = db_handle(&url).await;
        let workers: Vec<_> = (0..8)
            .map(|worker| {
                let ledger = if worker % 2 == 0 {
                    ledger.clone()
                } else {
                    other.clone()
                };
                tokio::spawn(async move {
                    let key_id = format!("key-dl-{}", worker % 3);
                    for i in 0..30 {
                        let id = format!("dl-{worker}-{i}");
                        let key = KeyLimit {
                            key_id: &key_id,
                            budget: 1_000_000,
                            max_uses: None,
                        };
                        // Every fifth hold is left to the sweep, already expired and served.
                        let ttl_seconds = if i % 5 == 4 { -10 } else { 60 };
                        let hold = Hold {
                            id: &id,
                            user: USER,
                            amount: 10,
                            minimum: None,
                            ttl_seconds,
                            key: Some(key),
                            rate: None,
                            session: None,
                        };
                        ledger.hold(&hold).await.expect("hold");
                        if ttl_seconds < 0 {
                            // False when a sweep released it first; either way nothing is lost.
                            ledger.mark_served(&id, 0).await.expect("mark served");
                        } else if i % 2 == 0 {
                            let charge = Charge {
                                id: &id,
                                user: USER,
                                cost: 7,
                                key_id: Some(&key_id),
                                usage: None,
                                rate: None,
                            };
                            ledger.charge(&charge, |_| None).await.expect("charge");
                        } else {
                            ledger.release(&id).await.expect("release");
                        }
                        let sweep = ledger.expire_reservations(indexer::ledger::now(), |_| None);
                        sweep.await.expect("sweep");
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.expect("no worker failed");
        }
        ledger
            .expire_reservations(indexer::ledger::now(), |_| None)
            .await
            .unwrap();
        // 8 × 30 holds: 96 settled (charged 7), 96 released, 48 left to the sweeps (charged 10
        // if marked served before a sweep took them, else released).
        let balance = ledger.balance(USER).await.unwrap();
        assert_eq!(balance.reserved, 0);
        assert!(
            (96 * 7..=96 * 7 + 48 * 10).contains(&balance.debited),
            "{balance:?}"
        );
        assert!(ledger.audit().await.unwrap().is_clean());
        let mut spent = 0;
        for key in 0..3 {
            let budget = ledger.key_budget(&format!("key-dl-{key}")).await.unwrap();
            let budget = budget.expect("the key was used");
            assert_eq!(budget.reserved, 0);
            spent += budget.spent;
        }
        assert_eq!(spent, balance.debited, "each key's spend is in the balance");
        other.close().await;
    }
);

// Four replicas (handles) on one wallet whose balance pays for 10 requests, 1,000 requests at
// once, each reserving its worst case and charging it with its usage: exactly 10 are served,
// what was charged is the balance, the usage records say the same, nothing stays reserved
// and the books reconcile. Half the requests go through delegated keys, whose budgets are
// shared across replicas too.
on_both_backends!(
    replicas_together_never_serve_more_than_the_balance,
    |ledger, url| {
        const PRICE: i64 = 100;
        fund(&ledger, USER, 10 * PRICE, "sig-replicas").await;
        let mut replicas = vec![ledger.clone()];
        for _ in 1..4 {
            replicas.push(db_handle(&url).await);
        }
        let requests: Vec<_> = (0..1_000)
            .map(|i| {
                let ledger = replicas[i % replicas.len()].clone();
                tokio::spawn(async move {
                    let id = format!("req-{i}");
                    let key_id = format!("key-{}", i % 4);
                    let key = (i % 2 == 1).then(|| KeyLimit {
                        key_id: &key_id,
                        budget: 4 * PRICE,
                        max_uses: None,
                    });
                    let hold = Hold {
                        id: &id,
                        user: USER,
                        amount: PRICE,
                        minimum: None,
                        ttl_seconds: 60,
                        key,
                        rate: None,
                        session: None,
                    };
                    match ledger.hold(&hold).await {
                        Ok(held) => assert_eq!(held.amount, PRICE),
                        Err(LedgerError::Insufficient { .. } | LedgerError::KeyBudget { .. }) => {
                            return 0
                        }
                        Err(error) => panic!("hold {id}: {error}"),
                    }
                    let usage = UsageRecord {
                        model: "echo".into(),
                        prompt_tokens: 60,
                        completion_tokens: 40,
                    };
                    let charge = Charge {
                        id: &id,
                        user: USER,
                        cost: PRICE,
                        key_id: hold.key.as_ref().map(|key| key.key_id),
                        usage: Some(usage),
                        rate: None,
                    };
                    let settled = ledger.charge(&charge, |_| None).await.expect("charge");
                    assert_eq!(settled.charged, PRICE, "a held request is charged in full");
                    1
                })
            })
            .collect();
        let mut served = 0;
        for request in requests {
            served += request.await.expect("no request failed");
        }
        assert_eq!(served, 10, "the balance paid for 10");
        let balance = ledger.balance(USER).await.unwrap();
        assert_eq!((balance.debited, balance.reserved), (10 * PRICE, 0));
        let usage = ledger.usage(USER, None, 10_000).await.unwrap();
        assert_eq!(usage.len(), 10);
        assert_eq!(usage.iter().map(|row| row.cost).sum::<i64>(), 10 * PRICE);
        assert!(ledger.audit().await.unwrap().is_clean());
        for replica in &replicas[1..] {
            replica.close().await;
        }
    }
);

// A hold with a minimum takes what the balance and the key's budget afford, within
// [minimum, amount], and refuses (naming the minimum) when not even that is left.
on_both_backends!(
    a_hold_with_a_minimum_takes_what_is_affordable,
    |ledger, url| {
        fund(&ledger, USER, 1_000, "sig-m").await;
        let hold = |id: &'static str, amount, minimum, key| Hold {
            id,
            user: USER,
            amount,
            minimum: Some(minimum),
            ttl_seconds: 60,
            key,
            rate: None,
            session: None,
        };
        let first = ledger.hold(&hold("m1", 5_000, 10, None)).await.unwrap();
        assert_eq!(first.amount, 1_000, "all that is available");
        assert!(matches!(
            ledger.hold(&hold("m2", 5_000, 10, None)).await,
            Err(LedgerError::Insufficient {
                needed: 10,
                available: 0
            })
        ));
        assert!(ledger.release("m1").await.unwrap());
        let key = KeyLimit {
            key_id: "key-min",
            budget: 300,
            max_uses: None,
        };
        let on_key = ledger
            .hold(&hold("m3", 5_000, 10, Some(key.clone())))
            .await
            .unwrap();
        assert_eq!(on_key.amount, 300, "the key's budget is the smaller bound");
        assert!(matches!(
            ledger.hold(&hold("m4", 5_000, 10, Some(key))).await,
            Err(LedgerError::KeyBudget { needed: 10, .. })
        ));
        let balance = ledger.balance(USER).await.unwrap();
        assert_eq!(balance.reserved, 300, "refusals held nothing");
        let budget = ledger.key_budget("key-min").await.unwrap().unwrap();
        assert_eq!((budget.reserved, budget.uses), (300, 1));
    }
);

// A write whose statement fails (here a second hold under an id already held) fails alone:
// the writes queued with it (on SQLite, committed in the same batch) all succeed.
on_both_backends!(
    a_failing_write_does_not_fail_its_neighbours,
    |ledger, url| {
        fund(&ledger, USER, 100_000, "sig-n").await;
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let ledger = ledger.clone();
                tokio::spawn(async move {
                    // Holds 0 and 1 share an id; every other hold has its own.
                    let id = format!("n-{}", if i == 1 { 0 } else { i });
                    let hold = Hold {
                        id: &id,
                        user: USER,
                        amount: 10,
                        minimum: None,
                        ttl_seconds: 60,
                        key: None,
                        rate: None,
                        session: None,
                    };
                    ledger.hold(&hold).await.map(|_| ())
                })
            })
            .collect();
        let mut failed = Vec::new();
        for (i, task) in tasks.into_iter().enumerate() {
            if let Err(error) = task.await.unwrap() {
                assert!(
                    matches!(
                        error,
                        LedgerError::DuplicateHold(_)
                            | LedgerError::Database(_)
                            | LedgerError::Sqlite(_)
                    ),
                    "{error}"
                );
                failed.push(i);
            }
        }
        assert_eq!(
            failed.len(),
            1,
            "only one of the two holds under one id: {failed:?}"
        );
        assert!(failed[0] <= 1);
        let balance = ledger.balance(USER).await.unwrap();
        assert_eq!(
            balance.reserved,
            39 * 10,
            "every other hold, and nothing of the failed one"
        );
    }
);

// A replica left behind in an upgrade: the schema has a migration its build does not know.
on_both_backends!(
    a_build_older_than_the_schema_refuses_to_start,
    |ledger, url| {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         SELECT 9999, 'from a newer release', TRUE, checksum, 0 FROM _sqlx_migrations
         ORDER BY version LIMIT 1",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
        match Ledger::connect(&url).await {
            Err(error @ LedgerError::SchemaAhead { applied: 9999, .. }) => {
                let message = error.to_string();
                assert!(
                    message.contains("9999") && message.contains("older than the schema"),
                    "{message}"
                );
            }
            other => panic!("started on a newer schema: {other:?}"),
        }
        // The ledger that applied it goes on.
        assert_eq!(ledger.balance(USER).await.unwrap().available, 0);
    }
);

// The indexer applies the relay's events a batch at a time: each entry's outcome is what
// applying it alone would give, in order (a debit sees the credits before it in the batch).
on_both_backends!(
    a_batch_of_entries_does_what_each_alone_would,
    |ledger, url| {
        let (a, b, c) = ("UserA", "UserB", "UserC");
        for (user, signature, tokens) in [(a, "sig-a1", 100), (a, "sig-a2", 30), (b, "sig-b1", 50)]
        {
            ledger
                .record_payment(&payment(user, signature, tokens))
                .await
                .unwrap();
        }
        let credit = |user, tokens, signature: &str| {
            NewEntry::credit(
                user,
                tokens,
                Some(signature),
                &format!("ev-{signature}"),
                "ctl",
            )
        };
        let debit = |user, tokens, request: &str| {
            NewEntry::debit(
                user,
                tokens,
                Some(request),
                &format!("ev-{request}"),
                "proxy",
            )
        };
        let earlier = credit(a, 30, "sig-a2");
        assert_eq!(ledger.apply(&earlier).await.unwrap(), Applied::Applied);

        let batch = [
            debit(a, 40, "r1"),
            credit(a, 100, "sig-a1"),
            debit(a, 40, "r2"),
            credit(b, 60, "sig-b1"),
            credit(b, 20, "sig-b2"),
            earlier.clone(),
            debit(a, 40, "r2"),
            debit(b, 0, "r3"),
            debit(c, 1, "r4"),
        ];
        let outcomes = ledger.apply_all(&batch).await.unwrap();
        let rejected = |reason: &str| Applied::Rejected(reason.into());
        assert_eq!(
            outcomes,
            vec![
                rejected("balance does not cover the debit"),
                Applied::Applied,
                Applied::Applied,
                rejected("credit of 60 tokens disagrees with its payment, worth 50"),
                Applied::Pending,
                Applied::Duplicate,
                Applied::Duplicate,
                rejected("non-positive amount 0"),
                rejected("balance does not cover the debit"),
            ]
        );
        let balance = ledger.balance(a).await.unwrap();
        assert_eq!((balance.credited, balance.debited), (130, 40));
        assert_eq!(ledger.balance(b).await.unwrap().credited, 0);
        // Each was recorded once: applying any again changes nothing.
        for entry in &batch {
            assert_eq!(ledger.apply(entry).await.unwrap(), Applied::Duplicate);
        }
        assert!(ledger
            .apply_all(&batch)
            .await
            .unwrap()
            .iter()
            .all(|o| *o == Applied::Duplicate));
        // The pending credit applies when its payment arrives.
        ledger
            .record_payment(&payment(b, "sig-b2", 20))
            .await
            .unwrap();
        assert_eq!(ledger.balance(b).await.unwrap().credited, 20);
        // The books agree with the balances; the refusals are listed for the operator.
        let audit = ledger.audit().await.unwrap();
        assert!(audit.mismatched_users.is_empty(), "{audit:?}");
        assert_eq!(audit.credits_disagreeing, ["credit:sig-b1"]);
    }
);

// Two indexers apply the same relayed events at the same moment (each decides before it
// inserts): every entry counts once, and each event is "applied" by exactly one of them.
on_both_backends!(
    two_indexers_applying_the_same_batch_count_each_entry_once,
    |ledger, url| {
        let users: Vec<String> = (0..3).map(|i| format!("Twin{i}")).collect();
        let indexers = [db_handle(&url).await, db_handle(&url).await];
        let mut credited = 0;
        for round in 0..20 {
            let batch: Vec<NewEntry> = (0..30)
                .map(|i| {
                    let user = &users[i % users.len()];
                    let signature = format!("sig-twin-{round}-{i}");
                    (user, signature)
                })
                .map(|(user, signature)| {
                    NewEntry::credit(user, 5, Some(&signature), &format!("ev-{signature}"), "c")
                })
                .collect();
            let payments: Vec<Payment> = batch
                .iter()
                .map(|e| payment(&e.user, e.reference.as_deref().unwrap_or_default(), 5))
                .collect();
            ledger.record_payments(&payments).await.unwrap();
            let (first, second) =
                tokio::join!(indexers[0].apply_all(&batch), indexers[1].apply_all(&batch));
            for (a, b) in first.unwrap().into_iter().zip(second.unwrap()) {
                let applied = [&a, &b].iter().filter(|o| ***o == Applied::Applied).count();
                assert_eq!(applied, 1, "round {round}: {a:?} and {b:?}");
                assert!(a == Applied::Duplicate || b == Applied::Duplicate);
            }
            credited += 5 * batch.len() as i64;
        }
        let mut total = 0;
        for user in &users {
            total += ledger.balance(user).await.unwrap().credited;
        }
        assert_eq!(total, credited);
        let audit = ledger.audit().await.unwrap();
        assert!(audit.mismatched_users.is_empty(), "{audit:?}");
    }
);

// Another writer has inserted one of a batch's entries but not committed when the batch reads
// what is recorded: the batch's insert waits for it, finds the entry taken, and the batch is
// read again, so that entry is a duplicate and the rest apply once. (Postgres: SQLite has one
// writer at a time.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_racing_an_uncommitted_copy_of_its_entry_counts_it_once() {
    let db = TempDatabase::postgres()
        .await
        .expect("create Postgres test database");
    run(db, |ledger, url| async move {
        let user = "RacedUser";
        fund(&ledger, user, 100, "sig-raced").await;
        let batch: Vec<NewEntry> = (0..3)
            .map(|i| {
                NewEntry::debit(
                    user,
                    10,
                    Some(&format!("raced-{i}")),
                    &format!("ev-{i}"),
                    "p",
                )
            })
            .collect();
        let other = sqlx::PgPool::connect(&url).await.unwrap();
        let mut writer = other.begin().await.unwrap();
        sqlx::query(
            "INSERT INTO entries (id, user_key, tokens, kind, status, created_at)
             VALUES ($1, $2, -10, 'debit', 'applied', 0)",
        )
        .bind(&batch[1].id)
        .bind(user)
        .execute(&mut *writer)
        .await
        .unwrap();
        let applying = tokio::spawn({
            let (ledger, batch) = (ledger.clone(), batch.clone());
            async move { ledger.apply_all(&batch).await }
        });
        // Once the batch's insert waits on the uncommitted row, the writer commits.
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO entries%'",
            )
            .fetch_one(&other)
            .await
            .unwrap();
            if waiting > 0 {
                break;
            }
            assert!(
                !applying.is_finished(),
                "the batch did not wait for the writer"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        writer.commit().await.unwrap();
        let outcomes = applying.await.unwrap().unwrap();
        assert_eq!(
            outcomes,
            [Applied::Applied, Applied::Duplicate, Applied::Applied]
        );
        // The writer's copy did not move the balance (it wrote the entry alone): only the
        // batch's two debits did.
        assert_eq!(ledger.balance(user).await.unwrap().debited, 20);
        other.close().await;
    })
    .await;
}

// Batches of relayed debits race two gateways' holds and charges on the same wallets: no
// balance goes below zero, nothing deadlocks, every debit counts once.
on_both_backends!(
    batches_racing_two_replicas_never_overspend,
    |ledger, url| {
        let users: Vec<String> = (0..4).map(|i| format!("RaceUser{i}")).collect();
        for (i, user) in users.iter().enumerate() {
            fund(&ledger, user, 1_000, &format!("sig-race-{i}")).await;
        }
        let replicas = [db_handle(&url).await, db_handle(&url).await];
        let mut tasks = Vec::new();
        for (r, replica) in replicas.iter().enumerate() {
            for i in 0..100 {
                let (replica, user) = (replica.clone(), users[i % users.len()].clone());
                tasks.push(tokio::spawn(async move {
                    let id = format!("req-{r}-{i}");
                    let hold = Hold {
                        id: &id,
                        user: &user,
                        amount: 10,
                        minimum: None,
                        ttl_seconds: 60,
                        key: None,
                        rate: None,
                        session: None,
                    };
                    if replica.hold(&hold).await.is_err() {
                        return 0;
                    }
                    let charge = Charge {
                        id: &id,
                        user: &user,
                        cost: 10,
                        key_id: None,
                        usage: None,
                        rate: None,
                    };
                    replica.charge(&charge, |_| None).await.unwrap().charged
                }));
            }
        }
        // Meanwhile the indexer applies relayed debits of other requests, 25 to a batch.
        let relayed: Vec<NewEntry> = (0..400)
            .map(|i| {
                let user = &users[i % users.len()];
                NewEntry::debit(
                    user,
                    10,
                    Some(&format!("relayed-{i}")),
                    &format!("ev-r{i}"),
                    "p",
                )
            })
            .collect();
        let (mut applied, mut refused) = (0, Vec::new());
        for batch in relayed.chunks(25) {
            let outcomes = ledger.apply_all(batch).await.unwrap();
            for (entry, outcome) in batch.iter().zip(outcomes) {
                match outcome {
                    Applied::Applied => applied += 10,
                    Applied::Rejected(_) => refused.push(entry.id.clone()),
                    other => panic!("{}: {other:?}", entry.id),
                }
            }
        }
        let mut charged = 0;
        for task in tasks {
            charged += task.await.unwrap();
        }
        let mut debited = 0;
        for user in &users {
            let balance = ledger.balance(user).await.unwrap();
            assert!(
                balance.available >= 0 && balance.debited <= 1_000,
                "{user}: {balance:?}"
            );
            assert_eq!(balance.reserved, 0);
            debited += balance.debited;
        }
        assert!(applied > 0, "some relayed debits applied");
        // Every debit is in the books once: the gateways' charges and the relayed debits applied.
        assert_eq!(debited, charged + applied);
        let mut audit = ledger.audit().await.unwrap();
        assert!(audit.mismatched_users.is_empty(), "{audit:?}");
        audit.debits_without_request.sort();
        refused.sort();
        assert_eq!(
            audit.debits_without_request, refused,
            "only the refused are listed"
        );
        for replica in replicas {
            replica.close().await;
        }
    }
);
