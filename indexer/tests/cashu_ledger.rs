//! The Cashu rail's books on SQLite and Postgres: a token is received once, its value is a
//! credit, its change a debit fixed once, the gateway's proofs are spent by one swap at a time,
//! and the audit reconciles ecash received = charged + change + balance, and the proofs held.
#[macro_use]
mod common;

use common::Backend;
use indexer::ledger::{
    CashuProof, CashuSwap, ChangeClaim, Hold, Ledger, NewReceipt, Receiving, SwapKind,
};

fn proof(secret: &str, amount: i64) -> CashuProof {
    CashuProof {
        secret: secret.into(),
        keyset_id: "00ad268c4d1f5826".into(),
        amount,
        c: format!("02{secret:0>64}"),
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
    let receipt = NewReceipt {
        id,
        mint: "http://mint.test",
        user: id,
        request_id: Some("req_1"),
        sats: 64,
        fee: 0,
        tokens_per_sat: 10,
    };
    let swap_id = format!("receive:{id}");
    let started = ledger
        .cashu_begin_receive(&receipt, &swap(&swap_id, SwapKind::Receive))
        .await
        .unwrap();
    assert_eq!(started, Receiving::Started);
    let proofs = [("a", 32), ("b", 16), ("c", 8), ("d", 8)]
        .map(|(secret, amount)| proof(&format!("{id}{secret}"), amount));
    ledger
        .cashu_finish_receive(id, &swap_id, &proofs)
        .await
        .unwrap();
    // Finishing again (a replayed swap) changes nothing.
    ledger
        .cashu_finish_receive(id, &swap_id, &proofs)
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
    let again = NewReceipt {
        id,
        mint: "http://mint.test",
        user: id,
        request_id: None,
        sats: 64,
        fee: 0,
        tokens_per_sat: 10,
    };
    let known = ledger
        .cashu_begin_receive(&again, &swap("receive:other", SwapKind::Receive))
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
        .cashu_begin_spend(&change, 42, 0, true)
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
        .cashu_begin_spend(&other, 17, 0, false)
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
        .cashu_begin_spend(&withdraw, 60, 250, false)
        .await
        .unwrap();
    assert_eq!(
        spend.proofs.len(),
        4,
        "60 + a fee of 1 (4 inputs × 0.25) needs all"
    );
    assert_eq!((spend.fee, spend.paid), (1, 60));
    assert_eq!(ledger.cashu_pending_swaps().await.unwrap().len(), 1);
    ledger.cashu_abandon_spend("withdraw:2").await.unwrap();
    assert!(ledger.cashu_pending_swaps().await.unwrap().is_empty());
    assert_eq!(
        ledger.cashu_holdings().await.unwrap(),
        [("http://mint.test".to_owned(), 64)]
    );

    // A token the mint refused is forgotten: nothing credited, the same token may come again.
    let receipt = NewReceipt {
        id: "cashu:02",
        mint: "http://mint.test",
        user: "cashu:02",
        request_id: None,
        sats: 10,
        fee: 0,
        tokens_per_sat: 1,
    };
    let receiving = swap("receive:cashu:02", SwapKind::Receive);
    ledger
        .cashu_begin_receive(&receipt, &receiving)
        .await
        .unwrap();
    ledger
        .cashu_forget_receive("cashu:02", "receive:cashu:02")
        .await
        .unwrap();
    assert!(ledger.cashu_receipt("cashu:02").await.unwrap().is_none());
    assert_eq!(
        ledger
            .cashu_begin_receive(&receipt, &receiving)
            .await
            .unwrap(),
        Receiving::Started
    );
    let audit = ledger.audit().await.unwrap();
    assert!(audit.is_clean(), "{audit:#?}");
    ledger.close().await;
    db.remove().await;
}

on_both_backends!(
    a_receipt_pays_its_request_and_its_change_once,
    a_refused_spend_gives_its_proofs_back_and_an_unsent_receipt_is_forgotten,
);
