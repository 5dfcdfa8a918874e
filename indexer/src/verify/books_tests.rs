use super::*;
use common::books::Rates;

const CONTROLLER: &str = "controller";
const PROXY: &str = "proxy";

fn trusted() -> Trusted {
    Trusted {
        controllers: [CONTROLLER.to_owned()].into(),
        proxies: [PROXY.to_owned()].into(),
    }
}

/// 1 lamport = 1 token until t=1000, then 2.
fn rates() -> Vec<RatePeriod> {
    let period = |since, tokens_per_sol| RatePeriod {
        since,
        rates: Rates {
            tokens_per_sol,
            tokens_per_sat: None,
            tokens: vec![],
        },
    };
    vec![period(0, 1_000_000_000), period(1000, 2_000_000_000)]
}

fn event(
    id: &str,
    author: &str,
    at: i64,
    user: &str,
    tokens: i64,
    reference: Option<&str>,
) -> Announced {
    Announced {
        event_id: id.into(),
        author: author.into(),
        created_at: at,
        user: user.into(),
        tokens,
        reference: reference.map(str::to_owned),
        rail: None,
    }
}

fn pay(signature: &str, user: &str, amount: u64, block_time: i64) -> ChainPayment {
    ChainPayment {
        signature: signature.into(),
        user: user.into(),
        mint: None,
        amount,
        slot: 1,
        block_time: Some(block_time),
        kind: PaymentKind::Pay,
    }
}

fn causes(report: &Report) -> Vec<(Cause, &str)> {
    report
        .findings
        .iter()
        .map(|f| (f.cause, f.subject.as_str()))
        .collect()
}

#[test]
fn credits_backed_by_payments_and_debits_by_requests_reconcile() {
    let facts = Facts {
        payments: vec![
            pay("sig1", "alice", 500, 10),
            pay("sig2", "alice", 100, 1500),
        ],
        events: vec![
            event("c1", CONTROLLER, 20, "alice", 500, Some("sig1")),
            event("c2", CONTROLLER, 1600, "alice", 200, Some("sig2")),
            event("d1", PROXY, 30, "alice", -70, Some("req1")),
        ],
        ..Facts::default()
    };
    let report = reconcile(&facts, &trusted(), &rates(), 2000, 600);
    assert!(report.reconciles(), "{:?}", report.findings);
    let alice = &report.users["alice"];
    assert_eq!(
        (alice.credited, alice.debited, alice.balance()),
        (700, 70, 630)
    );
}

#[test]
fn every_discrepancy_is_named_with_what_it_concerns() {
    let mut attested = event("x1", PROXY, 40, "carol", 900, Some("receipt"));
    attested.rail = Some("cashu".into());
    let facts = Facts {
        payments: vec![
            pay("sig1", "alice", 500, 10),
            pay("uncredited", "bob", 7, 100),
            pay("recent", "bob", 7, 1990),
        ],
        events: vec![
            event("ok", CONTROLLER, 20, "alice", 500, Some("sig1")),
            event("again", CONTROLLER, 21, "alice", 500, Some("sig1")),
            event("wrong-amount", CONTROLLER, 20, "bob", 8, Some("uncredited")),
            event("no-payment", CONTROLLER, 20, "bob", 50, Some("made-up")),
            event("others-payment", CONTROLLER, 20, "bob", 500, Some("sig1")),
            event("d1", PROXY, 30, "alice", -70, Some("req1")),
            event("d1-again", PROXY, 31, "alice", -70, Some("req1")),
            event("no-request", PROXY, 32, "alice", -5, None),
            event("stranger", "mallory", 33, "alice", 1_000_000, Some("sig1")),
            event("proxy-credit", PROXY, 34, "alice", 1_000, Some("sig1")),
            attested,
        ],
        ..Facts::default()
    };
    let report = reconcile(&facts, &trusted(), &rates(), 2000, 600);
    assert_eq!(
        causes(&report),
        vec![
            (Cause::CreditWithoutPayment, "no-payment"),
            (Cause::CreditWithoutPayment, "others-payment"),
            (Cause::CreditAmountDiffers, "wrong-amount"),
            (Cause::Duplicate, "again"),
            (Cause::Duplicate, "d1-again"),
            (Cause::DebitWithoutRequest, "no-request"),
            (Cause::UnknownKey, "stranger"),
            (Cause::UnknownKey, "proxy-credit"),
            (Cause::PaymentNeverCredited, "uncredited"),
        ]
    );
    assert!(!report.reconciles());
    let alice = &report.users["alice"];
    assert_eq!((alice.credited, alice.debited), (500, 75));
    assert_eq!(report.users["carol"].attested, 900);
    assert!(!report.users.contains_key("bob"));
}

#[test]
fn unknown_keys_alone_are_listed_but_reconcile() {
    let facts = Facts {
        events: vec![event("junk", "mallory", 1, "alice", 5, Some("x"))],
        ..Facts::default()
    };
    let report = reconcile(&facts, &trusted(), &rates(), 10, 600);
    assert_eq!(causes(&report), vec![(Cause::UnknownKey, "junk")]);
    assert!(report.reconciles());
}

#[test]
fn x402_and_escrow_credits_are_checked_against_their_transactions() {
    let usdc = "USDC";
    let rates = vec![RatePeriod {
        since: 0,
        rates: Rates {
            tokens_per_sol: 1,
            tokens_per_sat: None,
            tokens: vec![common::books::TokenRateInfo {
                mint: usdc.into(),
                decimals: 6,
                tokens_per_unit: 1_000_000,
            }],
        },
    }];
    let with_rail = |mut e: Announced, rail: &str| {
        e.rail = Some(rail.into());
        e
    };
    let facts = Facts {
        payments: vec![ChainPayment {
            mint: Some(usdc.into()),
            kind: PaymentKind::Settle,
            ..pay("settle", "alice", 30, 5)
        }],
        transfers: [(
            "transfer".to_owned(),
            Transfer {
                payer: "alice".into(),
                mint: usdc.into(),
                amount: 40,
            },
        )]
        .into(),
        events: vec![
            with_rail(event("e", PROXY, 6, "alice", 30, Some("settle")), "escrow"),
            with_rail(event("x", PROXY, 6, "alice", 40, Some("transfer")), "x402"),
            with_rail(
                event("x-bob", PROXY, 6, "bob", 40, Some("transfer")),
                "x402",
            ),
            with_rail(
                event("x-more", PROXY, 6, "alice", 41, Some("transfer")),
                "x402",
            ),
        ],
        ..Facts::default()
    };
    let report = reconcile(&facts, &trusted(), &rates, 10, 600);
    assert_eq!(
        causes(&report),
        vec![
            (Cause::CreditWithoutPayment, "x-bob"),
            (Cause::CreditAmountDiffers, "x-more"),
        ]
    );
    assert_eq!(report.users["alice"].credited, 70);
}
