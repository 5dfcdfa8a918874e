//! The in-memory batch: what it answers, and that it stores each row once.
use super::super::ops::OwnedRateLimit;
use super::*;
use crate::usage::UsageRecord;

const NOW: i64 = 1_000;

fn hold(id: &str, amount: i64, key: Option<(&str, i64, Option<i64>)>) -> Op {
    Op::Hold(OwnedHold {
        id: id.into(),
        user: "alice".into(),
        amount,
        minimum: None,
        ttl_seconds: 60,
        key: key.map(|(key_id, budget, max_uses)| (key_id.into(), budget, max_uses)),
        rate: None,
        session: None,
    })
}

fn charge(id: &str, cost: i64, key_id: Option<&str>) -> Op {
    let usage = UsageRecord {
        model: "echo".into(),
        prompt_tokens: 3,
        completion_tokens: 4,
    };
    let charge = OwnedCharge {
        id: id.into(),
        user: "alice".into(),
        cost,
        key_id: key_id.map(str::to_owned),
        usage: Some(usage),
        rate: Some(("alice".into(), 7)),
    };
    Op::Charge(
        charge,
        Box::new(|charged| {
            Some(crate::Announcement {
                dedupe_key: format!("debit-{charged}"),
                event_id: format!("event-{charged}"),
                event_json: "{}".into(),
            })
        }),
    )
}

fn funded(credited: i64) -> Rows {
    let mut rows = Rows::default();
    let balance = BalanceRow {
        credited,
        ..BalanceRow::default()
    };
    rows.balances.insert("alice".into(), balance);
    rows
}

#[test]
fn a_batch_stores_each_row_once_with_the_net_change() {
    let mut plan = Plan::new(funded(1_000), NOW);
    for i in 0..5 {
        assert!(matches!(
            plan.apply(&hold(&format!("r{i}"), 100, None)),
            Ok(Done::Held(_))
        ));
    }
    for i in 0..3 {
        let settled = plan.apply(&charge(&format!("r{i}"), 60, None));
        assert!(matches!(
            settled,
            Ok(Done::Charged(Settlement { charged: 60, .. }))
        ));
    }
    assert!(matches!(
        plan.apply(&Op::Release("r3".into())),
        Ok(Done::Released(true))
    ));
    let changes = plan.changes();
    let delta = BalanceRow {
        credited: 0,
        debited: 180,
        reserved: 100,
    };
    assert_eq!(changes.balances, vec![("alice".to_owned(), delta)]);
    // r0..r2 were charged and r3 released in the batch that held them: only r4 is stored.
    assert_eq!(changes.deleted, Vec::<String>::new());
    let added: Vec<_> = changes.added.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(added, ["r4"]);
    assert_eq!(changes.debits.len(), 3);
    assert_eq!(changes.usage.len(), 3);
    assert_eq!(changes.outbox.len(), 3);
}

#[test]
fn a_refused_hold_leaves_nothing_held() {
    let mut plan = Plan::new(funded(150), NOW);
    assert!(plan
        .apply(&hold("a", 100, Some(("k", 1_000, None))))
        .is_ok());
    let refused = plan.apply(&hold("b", 100, Some(("k", 1_000, None))));
    assert!(matches!(
        refused,
        Err(LedgerError::Insufficient {
            needed: 100,
            available: 50
        })
    ));
    let changes = plan.changes();
    assert_eq!(changes.balances[0].1.reserved, 100);
    // The key's row is new: stored whole, with one use and one hold.
    let (key_id, key) = &changes.new_keys[0];
    assert_eq!((key_id.as_str(), key.reserved, key.uses), ("k", 100, 1));
}

#[test]
fn key_refusals_come_in_the_order_spend_gives_them() {
    let mut rows = funded(10_000);
    rows.revoked.insert("revoked".into());
    let mut plan = Plan::new(rows, NOW);
    let revoked = plan.apply(&hold("a", 10, Some(("revoked", 100, Some(1)))));
    assert!(matches!(revoked, Err(LedgerError::KeyRevoked)));
    assert!(plan
        .apply(&hold("b", 10, Some(("once", 100, Some(1)))))
        .is_ok());
    let used = plan.apply(&hold("c", 10, Some(("once", 100, Some(1)))));
    assert!(matches!(used, Err(LedgerError::KeyUsedUp)));
    let over = plan.apply(&hold("d", 101, Some(("budget", 100, None))));
    assert!(matches!(
        over,
        Err(LedgerError::KeyBudget {
            needed: 101,
            remaining: 100
        })
    ));
    let duplicate = plan.apply(&hold("b", 10, None));
    assert!(matches!(duplicate, Err(LedgerError::DuplicateHold(_))));
}

#[test]
fn a_second_settlement_only_gives_back_its_hold() {
    let mut rows = funded(1_000);
    rows.debits.insert(debit_id("r"));
    let held = HeldRow {
        user: "alice".into(),
        amount: 100,
        key_id: None,
        created_at: NOW,
        expires_at: NOW + 60,
        served_at: None,
    };
    rows.reservations.insert("r".into(), held);
    rows.balances.get_mut("alice").unwrap().reserved = 100;
    let mut plan = Plan::new(rows, NOW);
    let again = plan.apply(&charge("r", 100, None));
    assert!(matches!(
        again,
        Ok(Done::Charged(Settlement {
            charged: 0,
            newly_settled: false,
            ..
        }))
    ));
    let changes = plan.changes();
    assert_eq!(changes.deleted, ["r"]);
    assert_eq!(changes.balances[0].1.reserved, -100);
    assert!(changes.debits.is_empty() && changes.outbox.is_empty());
}

#[test]
fn a_release_gives_back_to_the_reservations_user_and_key() {
    let mut rows = Rows::default();
    let balance = BalanceRow {
        credited: 500,
        debited: 0,
        reserved: 70,
    };
    rows.balances.insert("bob".into(), balance);
    let key = KeyRow {
        user: "bob".into(),
        budget: 100,
        spent: 0,
        reserved: 70,
        uses: 1,
        max_uses: None,
    };
    rows.keys.insert("k".into(), key);
    let held = HeldRow {
        user: "bob".into(),
        amount: 70,
        key_id: Some("k".into()),
        created_at: NOW,
        expires_at: NOW + 60,
        served_at: Some(NOW),
    };
    rows.reservations.insert("r".into(), held);
    let mut plan = Plan::new(rows, NOW);
    assert!(matches!(
        plan.apply(&Op::Release("r".into())),
        Ok(Done::Released(true))
    ));
    assert!(matches!(
        plan.apply(&Op::Release("r".into())),
        Ok(Done::Released(false))
    ));
    let changes = plan.changes();
    assert_eq!(changes.balances[0].1.reserved, -70);
    assert_eq!(changes.keys[0].1.reserved, -70);
}

#[test]
fn a_rate_window_counts_held_requests_and_settled_tokens() {
    let limited = |id: &str| {
        let Op::Hold(mut hold) = hold(id, 10, None) else {
            unreachable!()
        };
        hold.rate = Some(OwnedRateLimit {
            caller: "alice".into(),
            minute: 7,
            rpm: 4,
            tpm: 1_000,
        });
        Op::Hold(hold)
    };
    let mut rows = funded(25);
    // Another replica held one request of this minute.
    let seen = WindowRow {
        requests: 1,
        tokens: 0,
    };
    rows.windows.insert(("alice".into(), 7), seen);
    let mut plan = Plan::new(rows, NOW);
    assert!(matches!(plan.apply(&limited("r0")), Ok(Done::Held(_))));
    assert!(matches!(plan.apply(&limited("r1")), Ok(Done::Held(_))));
    // Refused for funds first: a refused hold counts nothing.
    assert!(matches!(
        plan.apply(&limited("r2")),
        Err(LedgerError::Insufficient { .. })
    ));
    assert!(matches!(
        plan.apply(&charge("r0", 5, None)),
        Ok(Done::Charged(_))
    ));
    assert!(matches!(plan.apply(&limited("r3")), Ok(Done::Held(_))));
    assert!(matches!(
        plan.apply(&limited("r4")),
        Err(LedgerError::RateLimited { minute: 7, .. })
    ));
    let changes = plan.changes();
    let counted = WindowRow {
        requests: 4,
        tokens: 7,
    };
    assert_eq!(changes.windows, vec![(("alice".into(), 7), counted)]);
}

#[test]
fn a_logged_out_session_holds_nothing() {
    let Op::Hold(mut held) = hold("r0", 10, None) else {
        unreachable!()
    };
    held.session = Some("session:abc".into());
    let mut rows = funded(100);
    rows.revoked.insert("session:abc".into());
    let mut plan = Plan::new(rows, NOW);
    assert!(matches!(
        plan.apply(&Op::Hold(held)),
        Err(LedgerError::SessionRevoked)
    ));
    assert!(plan.changes().is_empty());
}
