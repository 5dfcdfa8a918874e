//! The Cashu rail's books on SQLite and Postgres: a token is received once, its value is a
//! credit, its change a debit fixed once, the gateway's proofs are spent by one swap at a time,
//! and the audit reconciles ecash received = charged + change + balance, and the proofs held.
#[macro_use]
mod common;

use common::Backend;
use indexer::ledger::{
    CashuProof, CashuSwap, ChangeClaim, Clock, Hold, Leased, Ledger, NewReceipt, Receiving,
    SwapKind, SwapLease,
};
use std::sync::{atomic::AtomicI64, Arc};

/// The test's own lease on the swaps it writes.
const MINE: SwapLease = SwapLease {
    owner: "test",
    seconds: 30,
};

fn lease(owner: &str) -> SwapLease<'_> {
    SwapLease { owner, seconds: 30 }
}

fn proof(secret: &str, amount: i64) -> CashuProof {
    CashuProof {
        secret: secret.into(),
        keyset_id: "00ad268c4d1f5826".into(),
        amount,
        c: format!("02{secret:0>64}"),
    }
}

/// A token paying for one request: the receipt is its own payer.
fn own_receipt(id: &str, sats: i64, tokens_per_sat: i64) -> NewReceipt<'_> {
    NewReceipt {
        id,
        mint: "http://mint.test",
        user: id,
        sats,
        fee: 0,
        tokens_per_sat,
    }
}

fn swap(id: &str, kind: SwapKind) -> CashuSwap {
    CashuSwap {
        id: id.into(),
        kind,
        mint: "http://mint.test".into(),
        inputs: "[]".into(),
        outputs: Some("[]".into()),
        fee: 0,
        paid_sats: 0,
    }
}

/// Receives a 64-sat token as the gateway does, into proofs of 32 + 16 + 8 + 8.
async fn receive(ledger: &Ledger, id: &str) {
    let receipt = own_receipt(id, 64, 10);
    let swap_id = format!("receive:{id}");
    let started = ledger
        .cashu_begin_receive(&receipt, &swap(&swap_id, SwapKind::Receive), MINE)
        .await
        .unwrap();
    assert_eq!(started, Receiving::Started);
    let proofs = [("a", 32), ("b", 16), ("c", 8), ("d", 8)]
        .map(|(secret, amount)| proof(&format!("{id}{secret}"), amount));
    ledger
        .cashu_finish_receive(id, &swap_id, &proofs, None)
        .await
        .unwrap();
    // Finishing again (a replayed swap) changes nothing.
    ledger
        .cashu_finish_receive(id, &swap_id, &proofs, None)
        .await
        .unwrap();
}

async fn a_receipt_pays_its_request_and_its_change_once(backend: Backend) {
    let db = backend.database().await;
    let ledger = db.ledger().await;
    let id = "cashu:00ff";
    receive(&ledger, id).await;
    assert_eq!(ledger.balance(id).await.unwrap().available, 640);

    // The same token again is known, not received twice.
    let again = own_receipt(id, 64, 10);
    let known = ledger
        .cashu_begin_receive(&again, &swap("receive:other", SwapKind::Receive), MINE)
        .await
        .unwrap();
    assert!(matches!(known, Receiving::Known(r) if r.received));
    assert_eq!(ledger.balance(id).await.unwrap().credited, 640);

    // While its request is held, no change; once it is charged 215, 42 sats come back (the
    // 5-token remainder under one sat stays on the receipt's balance).
    let hold = Hold {
        id: "req_1",
        user: id,
        amount: 300,
        minimum: None,
        ttl_seconds: 60,
        key: None,
        rate: None,
        session: None,
    };
    ledger.hold(&hold).await.unwrap();
    assert_eq!(
        ledger.cashu_claim_change(id).await.unwrap(),
        ChangeClaim::StillServing
    );
    ledger.settle("req_1", id, 215, |_| None).await.unwrap();
    assert_eq!(
        ledger.cashu_claim_change(id).await.unwrap(),
        ChangeClaim::Owed(42)
    );
    assert_eq!(
        ledger.cashu_claim_change(id).await.unwrap(),
        ChangeClaim::Owed(42),
        "decided once"
    );
    assert_eq!(ledger.balance(id).await.unwrap().available, 5);

    // Paying it out takes proofs worth at least 42 (32 + 16), and keeps the 6 over.
    let change = swap(&format!("change:{id}"), SwapKind::Change);
    let spend = ledger
        .cashu_begin_spend(&change, 42, 0, true, MINE)
        .await
        .unwrap();
    assert_eq!(
        spend.proofs.iter().map(|p| p.amount).collect::<Vec<_>>(),
        [32, 16]
    );
    assert_eq!((spend.fee, spend.paid), (0, 42));
    // Another swap cannot take them meanwhile: 16 is all that is left unspent.
    let other = swap("withdraw:1", SwapKind::Withdraw);
    assert!(ledger
        .cashu_begin_spend(&other, 17, 0, false, MINE)
        .await
        .is_err());
    ledger
        .cashu_finish_spend(
            &change,
            &[proof("kept", 4), proof("kept2", 2)],
            "cashuBchange",
            Some(id),
        )
        .await
        .unwrap();
    let receipt = ledger.cashu_receipt(id).await.unwrap().unwrap();
    assert_eq!(receipt.change_sats, Some(42));
    assert_eq!(receipt.change_token.as_deref(), Some("cashuBchange"));

    let audit = ledger.audit().await.unwrap();
    assert!(audit.is_clean(), "{audit:#?}");
    assert_eq!(audit.cashu.received, 64);
    assert_eq!(audit.cashu.change, 42);
    assert_eq!(audit.cashu.held, 8 + 8 + 4 + 2);
    assert_eq!(
        ledger.cashu_holdings().await.unwrap(),
        [("http://mint.test".to_owned(), 22)]
    );
    ledger.close().await;
    db.remove().await;
}

async fn a_refused_spend_gives_its_proofs_back_and_an_unsent_receipt_is_forgotten(
    backend: Backend,
) {
    let db = backend.database().await;
    let ledger = db.ledger().await;
    receive(&ledger, "cashu:01").await;
    let withdraw = swap("withdraw:2", SwapKind::Withdraw);
    let spend = ledger
        .cashu_begin_spend(&withdraw, 60, 250, false, MINE)
        .await
        .unwrap();
    assert_eq!(
        spend.proofs.len(),
        4,
        "60 + a fee of 1 (4 inputs × 0.25) needs all"
    );
    assert_eq!((spend.fee, spend.paid), (1, 60));
    assert_eq!(ledger.cashu_pending_swaps().await.unwrap().len(), 1);
    assert!(
        !ledger
            .cashu_abandon_spend("withdraw:2", "someone else", &[])
            .await
            .unwrap(),
        "only the lease's holder abandons a swap"
    );
    assert!(ledger
        .cashu_abandon_spend("withdraw:2", "test", &[])
        .await
        .unwrap());
    assert!(ledger.cashu_pending_swaps().await.unwrap().is_empty());
    assert_eq!(
        ledger.cashu_holdings().await.unwrap(),
        [("http://mint.test".to_owned(), 64)]
    );

    // A token the mint refused is forgotten: nothing credited, the same token may come again.
    let receipt = own_receipt("cashu:02", 10, 1);
    let receiving = swap("receive:cashu:02", SwapKind::Receive);
    ledger
        .cashu_begin_receive(&receipt, &receiving, MINE)
        .await
        .unwrap();
    assert!(
        !ledger
            .cashu_forget_receive("cashu:02", "receive:cashu:02", "someone else")
            .await
            .unwrap(),
        "only the lease's holder forgets a receipt"
    );
    assert!(ledger.cashu_receipt("cashu:02").await.unwrap().is_some());
    assert!(ledger
        .cashu_forget_receive("cashu:02", "receive:cashu:02", "test")
        .await
        .unwrap());
    assert!(ledger.cashu_receipt("cashu:02").await.unwrap().is_none());
    assert_eq!(
        ledger
            .cashu_begin_receive(&receipt, &receiving, MINE)
            .await
            .unwrap(),
        Receiving::Started
    );
    let audit = ledger.audit().await.unwrap();
    assert!(audit.is_clean(), "{audit:#?}");
    ledger.close().await;
    db.remove().await;
}

async fn a_swap_is_sent_by_one_caller_at_a_time_and_a_lapsed_lease_is_taken_over(backend: Backend) {
    let db = backend.database().await;
    let seconds = Arc::new(AtomicI64::new(1_000));
    let ledger = db.ledger().await.with_clock(Clock::manual(seconds.clone()));
    let receipt = own_receipt("cashu:03", 10, 1);
    let receiving = swap("receive:cashu:03", SwapKind::Receive);
    ledger
        .cashu_begin_receive(&receipt, &receiving, lease("a"))
        .await
        .unwrap();
    // A second copy of the token finds it being received, and cannot take the swap over.
    assert!(matches!(
        ledger.cashu_begin_receive(&receipt, &receiving, lease("b")).await.unwrap(),
        Receiving::Known(r) if !r.received
    ));
    assert_eq!(
        ledger
            .cashu_lease_swap("receive:cashu:03", lease("b"))
            .await
            .unwrap(),
        Leased::Busy
    );
    assert!(!ledger
        .cashu_forget_receive("cashu:03", "receive:cashu:03", "b")
        .await
        .unwrap());
    // Its holder asks again (the same caller): still its own.
    assert_eq!(
        ledger
            .cashu_lease_swap("receive:cashu:03", lease("a"))
            .await
            .unwrap(),
        Leased::Taken(receiving.clone())
    );
    // An answer that was not final: the lease is given back, the next caller takes it.
    ledger
        .cashu_release_swap("receive:cashu:03", "a")
        .await
        .unwrap();
    assert_eq!(
        ledger
            .cashu_lease_swap("receive:cashu:03", lease("b"))
            .await
            .unwrap(),
        Leased::Taken(receiving.clone())
    );
    // B dies holding it: C waits until the lease lapses, then takes it over.
    seconds.store(1_029, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        ledger
            .cashu_lease_swap("receive:cashu:03", lease("c"))
            .await
            .unwrap(),
        Leased::Busy
    );
    seconds.store(1_030, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        ledger
            .cashu_lease_swap("receive:cashu:03", lease("c"))
            .await
            .unwrap(),
        Leased::Taken(receiving.clone())
    );
    // B's late answer still counts once (the mint signed the same outputs), C's finds it done.
    let proofs = [proof("cashu:03a", 8), proof("cashu:03b", 2)];
    ledger
        .cashu_finish_receive("cashu:03", "receive:cashu:03", &proofs, Some("req_a"))
        .await
        .unwrap();
    ledger
        .cashu_finish_receive("cashu:03", "receive:cashu:03", &proofs, None)
        .await
        .unwrap();
    assert_eq!(
        ledger
            .cashu_lease_swap("receive:cashu:03", lease("d"))
            .await
            .unwrap(),
        Leased::Done
    );
    assert_eq!(
        ledger
            .cashu_lease_swap("receive:nothing", lease("d"))
            .await
            .unwrap(),
        Leased::Gone
    );
    assert_eq!(ledger.balance("cashu:03").await.unwrap().credited, 10);

    // The receipt pays one request: the first to take it (again for the same request).
    assert!(ledger
        .cashu_take_receipt("cashu:03", "req_a")
        .await
        .unwrap());
    assert!(ledger
        .cashu_take_receipt("cashu:03", "req_a")
        .await
        .unwrap());
    assert!(!ledger
        .cashu_take_receipt("cashu:03", "req_b")
        .await
        .unwrap());
    let audit = ledger.audit().await.unwrap();
    assert!(audit.is_clean(), "{audit:#?}");
    ledger.close().await;
    db.remove().await;
}

async fn concurrent_finishes_and_change_claims_of_one_receipt_count_once(backend: Backend) {
    let db = backend.database().await;
    let ledger = db.ledger().await;
    let id = "cashu:04";
    let receipt = own_receipt(id, 64, 10);
    let swap_id = format!("receive:{id}");
    ledger
        .cashu_begin_receive(&receipt, &swap(&swap_id, SwapKind::Receive), MINE)
        .await
        .unwrap();
    let proofs = [("a", 32), ("b", 16), ("c", 8), ("d", 8)]
        .map(|(secret, amount)| proof(&format!("{id}{secret}"), amount));
    // Eight callers finish the same swap at once (replicas, the recovery loop, retries).
    let finishes = (0..8).map(|_| {
        let (ledger, swap_id, proofs) = (ledger.clone(), swap_id.clone(), proofs.clone());
        tokio::spawn(async move {
            ledger
                .cashu_finish_receive(id, &swap_id, &proofs, None)
                .await
        })
    });
    for finish in finishes {
        finish.await.unwrap().unwrap();
    }
    assert_eq!(
        ledger.balance(id).await.unwrap().credited,
        640,
        "credited once"
    );

    // Eight claims of its change at once: one decision, one debit.
    let claims = (0..8).map(|_| {
        let ledger = ledger.clone();
        tokio::spawn(async move { ledger.cashu_claim_change(id).await })
    });
    for claim in claims {
        assert_eq!(claim.await.unwrap().unwrap(), ChangeClaim::Owed(64));
    }
    assert_eq!(ledger.balance(id).await.unwrap().available, 0);
    assert!(
        !ledger.cashu_take_receipt(id, "req_late").await.unwrap(),
        "a receipt whose change was claimed pays nothing more"
    );

    // Eight payouts of that change at once: one swap is written, the others are told so.
    let change = swap(&format!("change:{id}"), SwapKind::Change);
    let spends = (0..8).map(|i| {
        let (ledger, change) = (ledger.clone(), change.clone());
        tokio::spawn(async move {
            let owner = format!("claim-{i}");
            ledger
                .cashu_begin_spend(&change, 64, 0, true, lease(&owner))
                .await
        })
    });
    let mut begun = 0;
    for spend in spends {
        match spend.await.unwrap() {
            Ok(_) => begun += 1,
            Err(indexer::ledger::LedgerError::Contended) => {}
            Err(error) => panic!("a concurrent spend failed: {error}"),
        }
    }
    assert_eq!(begun, 1, "one swap pays the change");

    // The mint says two of the proofs were spent elsewhere: they are never offered again.
    let pending: Vec<String> = ledger
        .cashu_pending_swaps()
        .await
        .unwrap()
        .into_iter()
        .map(|pending| pending.id)
        .collect();
    assert_eq!(pending, std::slice::from_ref(&change.id));
    let spent = [format!("{id}a"), format!("{id}b")];
    let mut abandoned = false;
    for i in 0..8 {
        abandoned |= ledger
            .cashu_abandon_spend(&change.id, &format!("claim-{i}"), &spent)
            .await
            .unwrap();
    }
    assert!(abandoned, "the lease's holder abandons it");
    assert_eq!(
        ledger.cashu_holdings().await.unwrap(),
        [("http://mint.test".to_owned(), 16)],
        "the proofs the mint spent are not held"
    );
    ledger.close().await;
    db.remove().await;
}

on_both_backends!(
    a_receipt_pays_its_request_and_its_change_once,
    a_refused_spend_gives_its_proofs_back_and_an_unsent_receipt_is_forgotten,
    a_swap_is_sent_by_one_caller_at_a_time_and_a_lapsed_lease_is_taken_over,
    concurrent_finishes_and_change_claims_of_one_receipt_count_once,
);
