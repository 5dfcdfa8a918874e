//! The Cashu rail under concurrency, against a real mint (`cdk-mintd`) behind a link that
//! holds every swap for half a second and answers a duplicate in flight as cdk-mintd does
//! ("Token pending", code 11002): eight copies of each of ten tokens at once, a change claimed
//! at two replicas at once, the recovery loop racing a customer's retry, a token sent while
//! another holding some of its proofs is at the mint, and a flood of tokens from one client.
//! On SQLite and Postgres, with one and two replicas sharing the ledger. Each asserts what a
//! customer is owed: served + change = the token's value, one change token per payment, no
//! 5xx but "the mint did not answer", a clean audit, and books that agree with the mint.
mod common;

use common::{mint::TestMint, mint_link::MintLink};
use futures_util::future::join_all;
use indexer::ledger::{testing::TempDatabase, Ledger};
use localnet::MockUpstream;
use nostr_sdk::Keys;
use proxy::{cashu::Cashu, config::Config, server::Gateway};
use serde_json::{json, Value};
use std::time::Duration;

/// How long the link holds each swap before passing it to the mint.
const HOLD: Duration = Duration::from_millis(500);

/// Replicas of one deployment on one ledger, taking ecash from the mint behind `link`.
struct Deployment {
    db: TempDatabase,
    ledger: Ledger,
    config: Config,
    gateways: Vec<(Gateway, Ledger)>,
    _mock: MockUpstream,
    http: reqwest::Client,
}

impl Deployment {
    async fn start(db: TempDatabase, replicas: usize, link: &MintLink) -> Self {
        Self::start_with(db, replicas, link, |_| {}).await
    }

    async fn start_with(
        db: TempDatabase,
        replicas: usize,
        link: &MintLink,
        tweak: impl Fn(&mut Config),
    ) -> Self {
        common::init_tracing();
        let mock = MockUpstream::start(0).await.unwrap();
        let keys = Keys::generate();
        let mut config = common::config(&mock, &db.url);
        config.cashu.mints = vec![link.url.clone()];
        config.cashu.tokens_per_sat = 1;
        let mut slow = config.models[0].clone();
        slow.id = "echo-slow".into();
        slow.upstreams[0].model = Some("echo+delay=1500".into());
        config.models.push(slow);
        tweak(&mut config);
        let mut gateways = Vec::new();
        for _ in 0..replicas {
            let ledger = Ledger::connect(&db.url).await.unwrap();
            let gateway = common::gateway(config.clone(), ledger.clone(), &keys).await;
            gateways.push((gateway, ledger));
        }
        Self {
            ledger: Ledger::connect(&db.url).await.unwrap(),
            db,
            config,
            gateways,
            _mock: mock,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, replica: usize, path: &str) -> String {
        let (gateway, _) = &self.gateways[replica % self.gateways.len()];
        format!("http://{}{path}", gateway.addr)
    }

    /// A chat request paid with `token` at `replica`.
    async fn pay(&self, replica: usize, token: &str, body: &Value) -> Answer {
        let response = self
            .http
            .post(self.url(replica, "/v1/chat/completions"))
            .header("X-Cashu", token)
            .bearer_auth("unused")
            .json(body)
            .send()
            .await
            .unwrap();
        Answer::read(response).await
    }

    /// `POST /v1/cashu/change` with the token that paid, at `replica`.
    async fn change(&self, replica: usize, token: &str) -> Answer {
        let response = self
            .http
            .post(self.url(replica, "/v1/cashu/change"))
            .header("X-Cashu", token)
            .send()
            .await
            .unwrap();
        Answer::read(response).await
    }

    /// Sends `token` (at `replica`) again while the answer asks for it again, as a client does.
    async fn pay_until_final(&self, replica: usize, token: &str, body: &Value) -> Answer {
        until_final("the token was never finished", || {
            self.pay(replica, token, body)
        })
        .await
    }

    /// Asserts the audit is clean and the books agree with the mint, then stops everything.
    async fn stop(self, mint: &TestMint) {
        let audit = self.ledger.audit().await.unwrap();
        assert!(audit.is_clean(), "the books do not reconcile: {audit:#?}");
        assert!(audit.cashu.reconciles(), "{:?}", audit.cashu);
        mint.agrees_with(&self.ledger).await;
        for (gateway, ledger) in self.gateways {
            gateway.shutdown().await;
            ledger.close().await;
        }
        self.ledger.close().await;
        self.db.remove().await;
    }
}

/// A response, read whole.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    change: Option<String>,
    body: Value,
}

impl Answer {
    async fn read(response: reqwest::Response) -> Self {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|value| value.to_str().unwrap().to_owned())
        };
        let (retry_after, change) = (header("retry-after"), header("x-cashu"));
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Self {
            status,
            retry_after,
            change,
            body,
        }
    }

    /// "Send the same token again": 409 (its exchange is in progress) or 503 (the mint did
    /// not answer), always with `Retry-After`.
    fn retry_later(&self) -> bool {
        let again = matches!(self.status, 409 | 503);
        if again {
            assert!(
                self.retry_after.is_some(),
                "{} without Retry-After",
                self.status
            );
        }
        again
    }

    /// What the request was charged, in sats (one per model token here).
    fn cost(&self) -> u64 {
        let usage = &self.body["usage"];
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    }

    /// The change token of a 200 from the change endpoint.
    fn change_token(&self) -> String {
        assert_eq!(self.status, 200, "{}", self.body);
        self.body["change"].as_str().unwrap().to_owned()
    }
}

/// Asks again while the answer says "send it again" (409 or 503, with `Retry-After`), as a
/// client does, and returns the first other answer. The pause between tries is the client's
/// back-off, not the event waited for: that is an answer that is not "again" (at most 10 s).
async fn until_final<F, Fut>(what: &str, mut ask: F) -> Answer
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    for _ in 0..100 {
        let answer = ask().await;
        if !answer.retry_later() {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}");
}

fn ask(max_tokens: u64) -> Value {
    json!({"model": "echo", "max_tokens": max_tokens,
           "messages": [{"role": "user", "content": "hello from ecash"}]})
}

async fn postgres() -> TempDatabase {
    TempDatabase::postgres()
        .await
        .expect("Postgres test database")
}

/// Each token pays one request whatever its copies do; what it was worth comes back as
/// service plus change, and the change is one token, the same from every replica.
async fn eight_copies_of_each_of_ten_tokens_at_once_pay_once_each(
    db: TempDatabase,
    replicas: usize,
) {
    let Some(mint) = TestMint::start().await else {
        return;
    };
    let link = MintLink::start(&mint.url, HOLD).await;
    let d = Deployment::start(db, replicas, &link).await;
    let mut tokens = Vec::new();
    for _ in 0..10 {
        tokens.push(link.token(mint.proofs(100).await));
    }
    let body = ask(10);
    let answers = join_all(tokens.iter().enumerate().flat_map(|(t, token)| {
        let (d, body) = (&d, &body);
        (0..8).map(move |copy| async move { (t, d.pay(t + copy, token, body).await) })
    }))
    .await;

    for (t, token) in tokens.iter().enumerate() {
        let copies: Vec<&Answer> = answers
            .iter()
            .filter(|(of, _)| *of == t)
            .map(|(_, answer)| answer)
            .collect();
        for copy in &copies {
            assert!(
                matches!(copy.status, 200 | 402 | 409),
                "a copy answered {}: {}",
                copy.status,
                copy.body
            );
            if copy.status == 409 {
                assert!(copy.retry_later());
            }
        }
        let served: Vec<&&Answer> = copies.iter().filter(|a| a.status == 200).collect();
        assert_eq!(served.len(), 1, "token {t} pays one request");
        let change = served[0].change.clone().expect("change in X-Cashu");
        assert_eq!(
            d.change(t + 1, token).await.change_token(),
            change,
            "one change token per payment, from any replica"
        );
        assert!(mint.states(token).await.iter().all(|s| s == "SPENT"));
        assert_eq!(
            mint.redeem(&change).await + served[0].cost(),
            100,
            "served + change = the token's value"
        );
    }
    let audit = d.ledger.audit().await.unwrap();
    assert_eq!(audit.cashu.received, 1_000, "each token received once");
    d.stop(&mint).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_one_replica_eight_copies_of_each_of_ten_tokens_pay_once_each() {
    eight_copies_of_each_of_ten_tokens_at_once_pay_once_each(TempDatabase::sqlite(), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_replicas_eight_copies_of_each_of_ten_tokens_pay_once_each() {
    eight_copies_of_each_of_ten_tokens_at_once_pay_once_each(TempDatabase::sqlite(), 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_one_replica_eight_copies_of_each_of_ten_tokens_pay_once_each() {
    eight_copies_of_each_of_ten_tokens_at_once_pay_once_each(postgres().await, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_replicas_eight_copies_of_each_of_ten_tokens_pay_once_each() {
    eight_copies_of_each_of_ten_tokens_at_once_pay_once_each(postgres().await, 2).await;
}

/// While the request's own change is at the mint, the customer asks for it at both replicas:
/// all three get the same token, and the mint pays it once.
async fn a_change_claimed_at_two_replicas_at_once_is_issued_once(db: TempDatabase) {
    let Some(mint) = TestMint::start().await else {
        return;
    };
    let link = MintLink::start(&mint.url, HOLD).await;
    let d = Deployment::start(db, 2, &link).await;
    let token = link.token(mint.proofs(100).await);
    let id = proxy::cashu::receipt_id(&token.parse().unwrap());
    let body = ask(10);
    let (paid, claims) = tokio::join!(d.pay(0, &token, &body), async {
        common::eventually("the change's swap is at the mint", || async {
            matches!(
                d.ledger.cashu_swap(&format!("change:{id}")).await,
                Ok(Some((_, false, _)))
            )
        })
        .await;
        tokio::join!(d.change(0, &token), d.change(1, &token))
    });
    assert_eq!(paid.status, 200, "{}", paid.body);
    let change = paid.change.clone().expect("change in X-Cashu");
    assert_eq!(claims.0.change_token(), change, "the same token back");
    assert_eq!(claims.1.change_token(), change, "the same token back");
    assert_eq!(mint.redeem(&change).await + paid.cost(), 100);
    d.stop(&mint).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_change_claimed_at_two_replicas_at_once_is_issued_once() {
    a_change_claimed_at_two_replicas_at_once_is_issued_once(TempDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_change_claimed_at_two_replicas_at_once_is_issued_once() {
    a_change_claimed_at_two_replicas_at_once_is_issued_once(postgres().await).await;
}

/// A swap whose answer was lost is finished by whoever comes first, a third replica's
/// recovery loop or the customer's retry at another replica, and the other waits or is told
/// to come again: the retry is served, the change is whole. The same for a change whose
/// answer was lost, claimed while the recovery loop resends it.
async fn the_recovery_loop_racing_a_retry_loses_nothing(db: TempDatabase) {
    let Some(mint) = TestMint::start().await else {
        return;
    };
    let link = MintLink::start(&mint.url, HOLD).await;
    let d = Deployment::start(db, 2, &link).await;
    let rail = Cashu::new(&d.config.cashu).unwrap().unwrap();
    let recovery = Ledger::connect(&d.db.url).await.unwrap();

    // Receiving: the mint swapped the token, its answer never came.
    let token = link.token(mint.proofs(100).await);
    link.lose_answers(true);
    let lost = d.pay(0, &token, &ask(10)).await;
    assert_eq!(lost.status, 503, "{}", lost.body);
    assert!(lost.retry_later());
    assert!(mint.states(&token).await.iter().all(|s| s == "SPENT"));
    link.lose_answers(false);
    let body = ask(10);
    let (recovered, retried) =
        tokio::join!(rail.recover(&recovery), d.pay_until_final(1, &token, &body));
    recovered.unwrap();
    assert_eq!(retried.status, 200, "the retry is served: {}", retried.body);
    let change = retried.change.clone().expect("change in X-Cashu");
    assert_eq!(mint.redeem(&change).await + retried.cost(), 100);

    // Refunding: the mint signed the change, its answer never came.
    let second = link.token(mint.proofs(100).await);
    let id = proxy::cashu::receipt_id(&second.parse().unwrap());
    let mut slow = ask(5);
    slow["model"] = json!("echo-slow");
    let (served, ()) = tokio::join!(d.pay(0, &second, &slow), async {
        common::eventually("the second token is received", || async {
            matches!(d.ledger.cashu_receipt(&id).await, Ok(Some(r)) if r.received)
        })
        .await;
        link.lose_answers(true);
    });
    assert_eq!(served.status, 200);
    assert_eq!(served.change, None, "the change's answer was lost");
    link.lose_answers(false);
    let (recovered, claimed) = tokio::join!(
        rail.recover(&recovery),
        until_final("the change was never issued", || d.change(1, &second))
    );
    recovered.unwrap();
    let change = claimed.change_token();
    assert_eq!(mint.redeem(&change).await + served.cost(), 100);
    assert_eq!(
        d.change(0, &second).await.change_token(),
        change,
        "and the same token again"
    );
    recovery.close().await;
    d.stop(&mint).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_recovery_loop_racing_a_retry_loses_nothing() {
    the_recovery_loop_racing_a_retry_loses_nothing(TempDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_recovery_loop_racing_a_retry_loses_nothing() {
    the_recovery_loop_racing_a_retry_loses_nothing(postgres().await).await;
}

/// A token holding some of the proofs of one already at the mint gets the mint's "pending":
/// its swap is kept (never forgotten on "pending"), and once the other is done the mint's
/// final word (spent) refuses it. The first pays its request; nothing else is charged.
async fn a_token_sent_while_one_with_its_proofs_is_at_the_mint_loses_nothing(db: TempDatabase) {
    let Some(mint) = TestMint::start().await else {
        return;
    };
    let link = MintLink::start(&mint.url, HOLD).await;
    let d = Deployment::start(db, 2, &link).await;
    let proofs = mint.proofs(100).await;
    let whole = link.token(proofs.clone());
    let largest = proofs.iter().max_by_key(|proof| proof.amount).unwrap();
    let part = link.token(vec![largest.clone()]);
    let (whole_id, part_id) = (
        proxy::cashu::receipt_id(&whole.parse().unwrap()),
        proxy::cashu::receipt_id(&part.parse().unwrap()),
    );
    let body = ask(10);
    let (served, pending) = tokio::join!(d.pay(0, &whole, &body), async {
        common::eventually("the whole token is at the mint", || async {
            matches!(d.ledger.cashu_receipt(&whole_id).await, Ok(Some(r)) if !r.received)
        })
        .await;
        d.pay(1, &part, &body).await
    });
    assert_eq!(
        pending.status, 409,
        "the mint said pending: {}",
        pending.body
    );
    assert!(pending.retry_later());
    assert!(
        d.ledger.cashu_receipt(&part_id).await.unwrap().is_some(),
        "a swap the mint called pending is kept"
    );
    assert_eq!(served.status, 200, "{}", served.body);
    let refused = d.pay_until_final(1, &part, &body).await;
    assert_eq!(refused.status, 402, "{}", refused.body);
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already spent"),
        "{}",
        refused.body
    );
    assert!(d.ledger.cashu_receipt(&part_id).await.unwrap().is_none());
    let change = served.change.clone().expect("change in X-Cashu");
    assert_eq!(mint.redeem(&change).await + served.cost(), 100);
    assert_eq!(d.ledger.audit().await.unwrap().cashu.received, 100);
    d.stop(&mint).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_token_sent_while_one_with_its_proofs_is_at_the_mint_loses_nothing() {
    a_token_sent_while_one_with_its_proofs_is_at_the_mint_loses_nothing(TempDatabase::sqlite())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_token_sent_while_one_with_its_proofs_is_at_the_mint_loses_nothing() {
    a_token_sent_while_one_with_its_proofs_is_at_the_mint_loses_nothing(postgres().await).await;
}

/// Ecash-paying callers are rate limited by their address like any caller, before their
/// token reaches the mint: the refused token stays the customer's, unspent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecash_requests_are_rate_limited_before_their_tokens_reach_the_mint() {
    let Some(mint) = TestMint::start().await else {
        return;
    };
    let link = MintLink::start(&mint.url, HOLD).await;
    let d = Deployment::start_with(TempDatabase::sqlite(), 1, &link, |config| {
        config.limits.rpm = 3;
    })
    .await;
    // At most twice the limit: a minute that turns meanwhile starts one window afresh.
    for _ in 0..7 {
        let token = link.token(mint.proofs(40).await);
        let swaps = link.swaps();
        let answer = d.pay(0, &token, &ask(5)).await;
        if answer.status == 429 {
            assert!(answer.retry_after.is_some(), "429 with Retry-After");
            assert_eq!(link.swaps(), swaps, "no swap reached the mint");
            assert!(mint.states(&token).await.iter().all(|s| s == "UNSPENT"));
            d.stop(&mint).await;
            return;
        }
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    panic!("a flood of tokens from one client was never limited");
}

/// A payout the mint refuses because some of the gateway's proofs were already spent (books
/// that disagree with the mint, however that came about) asks the mint which, and never
/// offers those again: the next payout is made of proofs the mint honours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_the_mint_has_spent_are_never_offered_again() {
    let Some(mint) = TestMint::start().await else {
        return;
    };
    let link = MintLink::start(&mint.url, HOLD).await;
    let d = Deployment::start(TempDatabase::sqlite(), 1, &link).await;
    // The gateway holds 100 good sats, received the ordinary way.
    let good = link.token(mint.proofs(100).await);
    let topup = d
        .http
        .post(d.url(0, "/v1/topup/cashu"))
        .header("X-Cashu", &good)
        .json(&json!({"wallet": "11111111111111111111111111111111"}))
        .send()
        .await
        .unwrap();
    assert_eq!(topup.status(), 200);
    // And a 128-sat proof its books count as its own, which the mint has seen spent.
    let spent = mint.proofs(128).await;
    mint.redeem(&link.token(spent.clone())).await;
    let phantom: Vec<indexer::ledger::CashuProof> = spent
        .iter()
        .map(|proof| indexer::ledger::CashuProof {
            secret: proof.secret.to_string(),
            keyset_id: proof.keyset_id.to_string(),
            amount: u64::from(proof.amount) as i64,
            c: proof.c.to_hex(),
        })
        .collect();
    let mint_url = link
        .url
        .parse::<cdk::mint_url::MintUrl>()
        .unwrap()
        .to_string();
    let receipt = indexer::ledger::NewReceipt {
        id: "cashu:phantom",
        mint: &mint_url,
        user: "phantom",
        sats: 128,
        fee: 0,
        tokens_per_sat: 1,
    };
    let swap = indexer::ledger::CashuSwap {
        id: "receive:cashu:phantom".into(),
        kind: indexer::ledger::SwapKind::Receive,
        mint: mint_url.clone(),
        inputs: "[]".into(),
        outputs: Some("[]".into()),
        fee: 0,
        paid_sats: 0,
    };
    let lease = indexer::ledger::SwapLease {
        owner: "test",
        seconds: 60,
    };
    d.ledger
        .cashu_begin_receive(&receipt, &swap, lease)
        .await
        .unwrap();
    d.ledger
        .cashu_finish_receive("cashu:phantom", &swap.id, &phantom, None)
        .await
        .unwrap();

    let rail = Cashu::new(&d.config.cashu).unwrap().unwrap();
    // The largest proof is chosen first: the mint refuses it, and says it is spent.
    let refused = rail.withdraw(&d.ledger, &mint_url, 50).await;
    assert!(
        matches!(refused, Err(proxy::cashu::CashuError::Refused(_))),
        "{refused:?}"
    );
    mint.agrees_with(&d.ledger).await;
    let token = rail.withdraw(&d.ledger, &mint_url, 50).await.unwrap();
    assert_eq!(
        mint.redeem(&token).await,
        50,
        "paid from proofs the mint honours"
    );
    mint.agrees_with(&d.ledger).await;
    assert_eq!(
        d.ledger.cashu_holdings().await.unwrap(),
        [(mint_url.clone(), 50)]
    );
    for (gateway, ledger) in d.gateways {
        gateway.shutdown().await;
        ledger.close().await;
    }
    d.ledger.close().await;
    d.db.remove().await;
}
