//! x402 `escrow`, our scheme for wallets registered with the program, against the whole local
//! stack (validator, program, the USDC stand-in) with two gateway replicas sharing one
//! Postgres ledger: the wallet signs the program's spending authorisation for a request's
//! worst case; a replica locks it on chain, serves the request and settles what it cost —
//! only that (rounded up to a whole base unit) leaves the wallet's vault. An authorisation
//! sent to both replicas at once, replayed, badly signed, too small, too short-lived or for a
//! spent nonce serves and moves nothing; a replica killed while it serves on a lock, or while
//! its settlement is in flight, loses the wallet nothing.
mod common;

use ::common::chain::client::ProgramClient;
use balance_payment::{
    authorization::{Asset, AuthorizationTerms},
    sdk::{authorization::sign_authorization, pda, spl, token_instructions},
};
use common::{ask, eventually, processes::Proc};
use futures_util::StreamExt;
use indexer::{
    ledger::{testing::TempDatabase, EscrowCost, EscrowLock, EscrowState, Ledger},
    sandbox::{Sandbox, SandboxConfig, USDC},
};
use localnet::MockUpstream;
use nostr_sdk::Keys;
use proxy::{
    server::Gateway,
    x402::{
        wire::{
            self, PaymentRequired, Requirements, SettleResponse, ESCROW_EXTRA_DATA, ESCROW_SCHEME,
        },
        X402,
    },
};
use serde_json::{json, Value};
use solana_sdk::{
    hash::Hash,
    message::{v0, VersionedMessage},
    signature::Keypair,
    signer::Signer,
    transaction::VersionedTransaction,
};
use std::{path::PathBuf, sync::Arc};

/// The stack, and two gateway replicas on its ledger offering the escrow scheme.
struct Escrowed {
    db: TempDatabase,
    stack: Sandbox,
    _mock: MockUpstream,
    gateways: Vec<Gateway>,
    dir: PathBuf,
    http: reqwest::Client,
    config: proxy::config::Config,
    /// The replicas' proxy key.
    keys: Keys,
}

impl Escrowed {
    async fn start() -> Self {
        common::init_tracing();
        let db = TempDatabase::postgres()
            .await
            .expect("create Postgres test database");
        let keys = Keys::generate();
        let stack = Sandbox::start(SandboxConfig {
            proxy_keys: vec![keys.clone()],
            ..SandboxConfig::new(&db.url)
        })
        .await
        .expect("the local stack starts");
        let mock = MockUpstream::start(0).await.unwrap();
        let dir = std::env::temp_dir().join(format!("escrow-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = common::config(&mock, &db.url);
        sandbox::describe(&mut config, &stack);
        config.x402 = sandbox::x402(&stack, &dir.join("fee-payer.json"))
            .await
            .unwrap();
        let mut gateways = Vec::new();
        for _ in 0..2 {
            let ledger = Ledger::connect(&db.url).await.unwrap();
            gateways.push(common::gateway(config.clone(), ledger, &keys).await);
        }
        Self {
            db,
            stack,
            _mock: mock,
            gateways,
            dir,
            http: reqwest::Client::new(),
            config,
            keys,
        }
    }

    fn x402(&self) -> Arc<X402> {
        self.gateways[0].state.x402.clone().unwrap()
    }

    fn ledger(&self) -> &Ledger {
        &self.stack.ledger
    }

    fn url(&self, replica: usize) -> String {
        format!("http://{}/v1/chat/completions", self.gateways[replica].addr)
    }

    async fn chat(&self, url: &str, body: &Value, payment: &str) -> reqwest::Response {
        let request = self.http.post(url).json(body);
        request
            .header("PAYMENT-SIGNATURE", payment)
            .send()
            .await
            .unwrap()
    }

    /// The escrow offer a request without credentials is answered with, beside `exact`.
    async fn offer(&self, body: &Value) -> Requirements {
        let response = self.http.post(self.url(0)).json(body).send().await.unwrap();
        assert_eq!(response.status(), 402);
        let header = response.headers()["payment-required"].to_str().unwrap();
        let required: PaymentRequired = wire::decode(header).unwrap();
        let schemes: Vec<_> = required
            .accepts
            .iter()
            .map(|offer| offer.scheme.as_str())
            .collect();
        assert_eq!(
            schemes,
            ["exact", ESCROW_SCHEME],
            "exact first, for the official clients"
        );
        required.accepts[1].clone()
    }

    /// `wallet`'s authorisation of `max_amount` for its `nonce`, valid for `seconds`, as the
    /// `PAYMENT-SIGNATURE` of `offer`; signed by `signer` (the wallet, unless forging).
    fn pay(&self, offer: &Requirements, wallet: &Keypair, nonce: u64, max_amount: u64) -> String {
        self.signed(offer, wallet, wallet, nonce, max_amount, 900)
    }

    fn signed(
        &self,
        offer: &Requirements,
        wallet: &Keypair,
        signer: &Keypair,
        nonce: u64,
        max_amount: u64,
        seconds: i64,
    ) -> String {
        self.signed_with(
            offer,
            wallet,
            signer,
            nonce,
            max_amount,
            seconds,
            ESCROW_EXTRA_DATA,
        )
    }

    /// [`Self::signed`] with any `extra_data` (a top-up's is zeros).
    #[allow(clippy::too_many_arguments)]
    fn signed_with(
        &self,
        offer: &Requirements,
        wallet: &Keypair,
        signer: &Keypair,
        nonce: u64,
        max_amount: u64,
        seconds: i64,
        extra_data: &[u8; 32],
    ) -> String {
        let terms = AuthorizationTerms {
            program_id: balance_payment::ID,
            cluster: self.stack.cluster,
            namespace_id: self.stack.namespace_id,
            user: wallet.pubkey(),
            nonce,
            max_amount,
            asset: Asset::Token(self.stack.usdc),
            deadline: self.ledger().now() + seconds,
            extra_data: *extra_data,
        };
        let key = ed25519_dalek::SigningKey::from_bytes(signer.secret_bytes());
        let info = sign_authorization(&key, &terms);
        let payment = json!({
            "x402Version": 2,
            "accepted": offer,
            "payload": {
                "user": wallet.pubkey().to_string(),
                "nonce": nonce.to_string(),
                "maxAmount": max_amount.to_string(),
                "deadline": info.deadline,
                "extraData": extra_data.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                "signature": bs58::encode(info.signature).into_string(),
            },
        });
        wire::encode(&payment)
    }

    /// Base units in `wallet`'s USDC vault, and how many of them are locked.
    async fn vault(&self, wallet: &Keypair) -> (u64, u64) {
        let client = ProgramClient::new(self.stack.validator.rpc_url());
        let (user, mint) = (wallet.pubkey(), self.stack.usdc);
        let held = client
            .token_amount(&pda::token_vault(&user, &mint))
            .await
            .unwrap();
        let balance = client.token_balance(&user, &mint).await.unwrap().unwrap();
        (held, balance.locked_amount)
    }

    async fn treasury(&self) -> u64 {
        let account = spl::associated_token_address(
            &self.stack.treasury,
            &self.stack.usdc,
            &spl::TOKEN_PROGRAM_ID,
        );
        ProgramClient::new(self.stack.validator.rpc_url())
            .token_amount(&account)
            .await
            .unwrap()
    }

    async fn lock_exists(&self, wallet: &Keypair, nonce: u64) -> bool {
        ProgramClient::new(self.stack.validator.rpc_url())
            .account_exists(&pda::token_lock(&wallet.pubkey(), nonce))
            .await
            .unwrap()
    }

    async fn state(&self, wallet: &Keypair, nonce: u64) -> Option<EscrowState> {
        let lock = pda::token_lock(&wallet.pubkey(), nonce).to_string();
        let row = self.ledger().escrow_row(&lock).await.unwrap();
        row.map(|row| row.state)
    }

    async fn settled(&self, wallet: &Keypair, nonce: u64) -> EscrowCost {
        eventually("the lock is settled and charged", || async {
            self.state(wallet, nonce).await == Some(EscrowState::Charged)
        })
        .await;
        let lock = pda::token_lock(&wallet.pubkey(), nonce).to_string();
        let row = self.ledger().escrow_row(&lock).await.unwrap().unwrap();
        row.cost.unwrap()
    }

    /// A third replica on the same ledger, as a `proxy run` process (to be SIGKILLed).
    async fn replica_process(&self) -> (Proc, String) {
        common::processes::replica_process(&self.config, &self.keys, &self.dir, &self.http).await
    }

    async fn stop(mut self) {
        let audit = self.stack.ledger.audit().await.unwrap();
        assert!(audit.is_clean(), "{audit:?}");
        let report = common::books_match_the_ledger(self.ledger(), &self.gateways[0]).await;
        assert!(report
            .users
            .values()
            .any(|books| books.credits > 0 && books.debits > 0));
        for gateway in self.gateways.drain(..) {
            gateway.shutdown().await;
        }
        self.stack.stop().await;
        self.db.remove().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn body(text: &str) -> Value {
    let mut body = ask("echo", text);
    body["max_tokens"] = json!(32);
    body
}

async fn refused(response: reqwest::Response, code: &str) {
    assert_eq!(response.status(), 402, "expected a 402 {code}");
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], code, "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registered_wallet_pays_on_a_lock_and_only_what_the_request_cost_leaves_its_vault() {
    let escrowed = Escrowed::start().await;
    let ledger = escrowed.ledger();
    let x402 = escrowed.x402();
    let wallet = escrowed.stack.usdc_user(10 * USDC).await.unwrap();
    let user = wallet.pubkey().to_string();
    let request = body("what does a lock cost");
    let offer = escrowed.offer(&request).await;
    assert_eq!(offer.pay_to, escrowed.stack.treasury.to_string());
    assert_eq!(offer.extra["namespaceId"], escrowed.stack.namespace_id);
    assert_eq!(offer.extra["program"], balance_payment::ID.to_string());
    assert_eq!(offer.extra["extraData"], wire::escrow_extra_data_hex());
    let worst: u64 = offer.amount.parse().unwrap();
    // A gateway given a key that is not the namespace's bot does not start.
    let mut misconfigured = escrowed.config.clone();
    let stranger_file = escrowed.dir.join("stranger.json");
    solana_sdk::signature::write_keypair_file(&Keypair::new(), &stranger_file).unwrap();
    misconfigured.x402.escrow_bot_keypair_file = Some(stranger_file);
    match X402::connect(&misconfigured).await {
        Err(error) => assert!(error.to_string().contains("bot is"), "{error}"),
        Ok(_) => panic!("started with another key than the namespace's bot"),
    }
    let (vault, treasury) = (escrowed.vault(&wallet).await, escrowed.treasury().await);
    assert_eq!(vault, (10 * USDC, 0));

    // One authorisation sent to both replicas at once: one serves it, the other is refused;
    // it is locked once.
    let nonce = escrowed.stack.next_nonce(&wallet.pubkey()).await.unwrap();
    let paid = escrowed.pay(&offer, &wallet, nonce, worst);
    let (url_0, url_1) = (escrowed.url(0), escrowed.url(1));
    let started = std::time::Instant::now();
    let (first, second) = tokio::join!(
        escrowed.chat(&url_0, &request, &paid),
        escrowed.chat(&url_1, &request, &paid),
    );
    let (served, other) = match first.status().as_u16() {
        200 => (first, second),
        _ => (second, first),
    };
    assert_eq!(served.status(), 200);
    let receipt: SettleResponse =
        wire::decode(served.headers()["payment-response"].to_str().unwrap()).unwrap();
    assert_eq!(
        (receipt.success, receipt.payer.as_str()),
        (true, user.as_str())
    );
    refused(other, "duplicate_settlement").await;

    // Settled for what it cost, rounded up to a whole unit: that alone left the vault, for
    // the treasury; the lock is gone; the wallet's balance was credited the settlement and
    // charged the request, keeping at most the rounding.
    let answered = started.elapsed();
    let cost = escrowed.settled(&wallet, nonce).await;
    eprintln!(
        "escrow: locked and answered in {answered:?}; settled, credited and charged {:?} after the request",
        started.elapsed()
    );
    assert!(0 < cost.units && cost.units < worst, "{cost:?} of {worst}");
    let worth = |units| x402.asset.tokens_for(units).unwrap();
    assert!(worth(cost.units) >= cost.cost && worth(cost.units - 1) < cost.cost);
    assert_eq!(escrowed.vault(&wallet).await, (10 * USDC - cost.units, 0));
    assert_eq!(escrowed.treasury().await, treasury + cost.units);
    assert!(!escrowed.lock_exists(&wallet, nonce).await);
    let balance = ledger.balance(&user).await.unwrap();
    assert_eq!(
        (balance.credited, balance.debited),
        (worth(cost.units), cost.cost)
    );

    // A replay serves and moves nothing.
    refused(
        escrowed.chat(&escrowed.url(1), &request, &paid).await,
        "duplicate_settlement",
    )
    .await;

    // Streamed, on the other replica, with the next nonce: settled the same way.
    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let paid = escrowed.pay(&offer, &wallet, nonce + 1, worst);
    let response = escrowed.chat(&escrowed.url(1), &streamed, &paid).await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("data: [DONE]"));
    let second = escrowed.settled(&wallet, nonce + 1).await;
    assert_eq!(
        escrowed.vault(&wallet).await,
        (10 * USDC - cost.units - second.units, 0)
    );

    // `proxy ask`, the command line's client of the scheme, pays the next one the same way.
    let keypair = escrowed.dir.join("wallet.json");
    solana_sdk::signature::write_keypair_file(&wallet, &keypair).unwrap();
    let gateway = format!("http://{}", escrowed.gateways[0].addr);
    let rpc = escrowed.stack.validator.rpc_url().to_owned();
    let asked = tokio::process::Command::new(env!("CARGO_BIN_EXE_proxy"))
        .args(["ask", "asked from the command line", "--max-tokens", "32"])
        .args(["--gateway", &gateway, "--url", &rpc])
        .arg("--keypair")
        .arg(&keypair)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&asked.stderr);
    assert!(asked.status.success(), "{stderr}");
    assert!(!asked.stdout.is_empty() && stderr.contains("only what this answer cost is settled"));
    let third = escrowed.settled(&wallet, nonce + 2).await;
    assert_eq!(
        escrowed.vault(&wallet).await,
        (10 * USDC - cost.units - second.units - third.units, 0)
    );

    // An upstream that refuses before answering: the lock is released whole.
    let (before, _) = escrowed.vault(&wallet).await;
    let failing = json!({"model": "refuse", "max_tokens": 32,
        "messages": [{"role": "user", "content": "no"}]});
    let failing_offer = escrowed.offer(&failing).await;
    let amount: u64 = failing_offer.amount.parse().unwrap();
    let paid = escrowed.pay(&failing_offer, &wallet, nonce + 3, amount);
    let response = escrowed.chat(&escrowed.url(0), &failing, &paid).await;
    assert!(!response.status().is_success(), "{}", response.status());
    eventually("the lock is released", || async {
        escrowed.state(&wallet, nonce + 3).await == Some(EscrowState::Released)
            && !escrowed.lock_exists(&wallet, nonce + 3).await
    })
    .await;
    assert_eq!(escrowed.vault(&wallet).await, (before, 0));

    // Bad authorisations serve, lock and credit nothing.
    let next = escrowed.stack.next_nonce(&wallet.pubkey()).await.unwrap();
    let stranger = Keypair::new();
    let cases = [
        (
            escrowed.signed(&offer, &wallet, &stranger, next, worst, 900),
            "invalid_escrow_signature",
        ),
        (
            escrowed.pay(&offer, &wallet, next, worst - 1),
            "invalid_escrow_amount",
        ),
        (
            escrowed.signed(&offer, &wallet, &wallet, next, worst, 60),
            "invalid_escrow_deadline",
        ),
        // A top-up authorisation (zero extra data), as wallets publish them on the relays:
        // copied from there, it never pays a request.
        (
            escrowed.signed_with(&offer, &wallet, &wallet, next, worst, 900, &[0; 32]),
            "invalid_escrow_extra_data",
        ),
        // Signed, but not for the wallet's current nonce: the program refuses the lock.
        (
            escrowed.pay(&offer, &wallet, next + 5, worst),
            "invalid_escrow_lock_failed",
        ),
        (
            wire::encode(&json!({"x402Version": 2, "accepted": offer, "payload": {}})),
            "invalid_escrow_payload",
        ),
    ];
    let credited = ledger.balance(&user).await.unwrap().credited;
    for (paid, code) in cases {
        refused(escrowed.chat(&escrowed.url(0), &request, &paid).await, code).await;
    }
    // A copy of an authorisation being locked for less than its own request's worst case
    // (the first request was smaller) is not served on that lock.
    let smaller = EscrowLock {
        lock: pda::token_lock(&wallet.pubkey(), next).to_string(),
        payer: user.clone(),
        mint: escrowed.stack.usdc.to_string(),
        nonce: next,
        max_amount: worst - 1,
        deadline: ledger.now() + 900,
        request_id: "req_smaller".into(),
        lock_tx: "being sent".into(),
        blockhash: "unknown".into(),
    };
    assert_eq!(ledger.escrow_claim(&smaller).await.unwrap(), None);
    refused(
        escrowed
            .chat(
                &url_0,
                &request,
                &escrowed.pay(&offer, &wallet, next, worst),
            )
            .await,
        "invalid_escrow_amount",
    )
    .await;
    let mut wrong_network = offer.clone();
    wrong_network.network = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp".into(); // mainnet
    refused(
        escrowed
            .chat(
                &escrowed.url(0),
                &request,
                &escrowed.pay(&wrong_network, &wallet, next, worst),
            )
            .await,
        "invalid_network",
    )
    .await;
    assert_eq!(escrowed.vault(&wallet).await, (before, 0));
    assert_eq!(ledger.balance(&user).await.unwrap().credited, credited);
    assert_eq!(
        escrowed.stack.next_nonce(&wallet.pubkey()).await.unwrap(),
        next
    );
    escrowed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_while_it_serves_on_a_lock_or_settles_it_loses_the_wallet_nothing() {
    let escrowed = Escrowed::start().await;
    let ledger = escrowed.ledger();
    let x402 = escrowed.x402();
    let state = escrowed.gateways[1].state.clone();
    let wallet = escrowed.stack.usdc_user(10 * USDC).await.unwrap();
    let user = wallet.pubkey().to_string();

    // A `proxy run` replica locks a streamed request and is SIGKILLed while it streams.
    let (mut doomed, doomed_url) = escrowed.replica_process().await;
    let long = "word ".repeat(200);
    let mut request = ask("slow", &long);
    request["max_tokens"] = json!(100);
    request["stream"] = json!(true);
    let offer = escrowed.offer(&request).await;
    let worst: u64 = offer.amount.parse().unwrap();
    let nonce = escrowed.stack.next_nonce(&wallet.pubkey()).await.unwrap();
    let paid = escrowed.pay(&offer, &wallet, nonce, worst);
    let response = escrowed.chat(&doomed_url, &request, &paid).await;
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    body.next().await.unwrap().unwrap();
    assert_eq!(escrowed.vault(&wallet).await, (10 * USDC, worst));
    doomed.kill().await;
    assert_eq!(
        escrowed.state(&wallet, nonce).await,
        Some(EscrowState::Locked)
    );

    // While its request could still be running, housekeeping leaves the lock alone; after,
    // it releases it: the vault is whole, nothing was credited or charged.
    let now = ledger.now();
    assert_eq!(x402.escrow_sweep(&state, now).await.unwrap(), 0);
    let timeout = i64::try_from(state.config.limits.request_timeout_seconds).unwrap();
    let later = now + timeout + 61 + i64::try_from(x402.max_timeout.as_secs()).unwrap() + 31;
    assert_eq!(x402.escrow_sweep(&state, later).await.unwrap(), 1);
    assert_eq!(
        escrowed.state(&wallet, nonce).await,
        Some(EscrowState::Released)
    );
    assert!(!escrowed.lock_exists(&wallet, nonce).await);
    assert_eq!(escrowed.vault(&wallet).await, (10 * USDC, 0));
    assert_eq!(ledger.balance(&user).await.unwrap().credited, 0);

    // A replica locked the next authorisation, served it, recorded its cost and a settlement
    // it never sent (killed first; its blockhash is not the chain's, so it can never land).
    let nonce = nonce + 1;
    let paid_units = 1_234;
    let terms = AuthorizationTerms {
        program_id: balance_payment::ID,
        cluster: escrowed.stack.cluster,
        namespace_id: escrowed.stack.namespace_id,
        user: wallet.pubkey(),
        nonce,
        max_amount: worst,
        asset: Asset::Token(escrowed.stack.usdc),
        deadline: ledger.now() + 900,
        extra_data: *ESCROW_EXTRA_DATA,
    };
    let key = ed25519_dalek::SigningKey::from_bytes(wallet.secret_bytes());
    let info = sign_authorization(&key, &terms);
    let bot = &escrowed.stack.bot;
    let redeemer = token_instructions::TokenRedeemer {
        bot: bot.pubkey(),
        namespace_id: escrowed.stack.namespace_id,
        mint: escrowed.stack.usdc,
        token_program: spl::TOKEN_PROGRAM_ID,
        treasury_tokens: spl::associated_token_address(
            &escrowed.stack.treasury,
            &escrowed.stack.usdc,
            &spl::TOKEN_PROGRAM_ID,
        ),
    };
    let lock_ixs = token_instructions::lock_token_authorized(
        escrowed.stack.cluster,
        &redeemer,
        wallet.pubkey(),
        info,
        worst,
    );
    let signed = |instructions: &[solana_sdk::instruction::Instruction], blockhash| {
        let message =
            v0::Message::try_compile(&bot.pubkey(), instructions, &[], blockhash).unwrap();
        VersionedTransaction::try_new(VersionedMessage::V0(message), &[bot]).unwrap()
    };
    let blockhash = escrowed.stack.rpc.get_latest_blockhash().await.unwrap();
    let lock_tx = signed(&lock_ixs, blockhash);
    let lock = EscrowLock {
        lock: pda::token_lock(&wallet.pubkey(), nonce).to_string(),
        payer: user.clone(),
        mint: escrowed.stack.usdc.to_string(),
        nonce,
        max_amount: worst,
        deadline: info.deadline,
        request_id: "req_killed_settling".into(),
        lock_tx: lock_tx.signatures[0].to_string(),
        blockhash: blockhash.to_string(),
    };
    assert_eq!(ledger.escrow_claim(&lock).await.unwrap(), None);
    escrowed
        .stack
        .rpc
        .send_and_confirm_transaction(&lock_tx)
        .await
        .unwrap();
    let cost = EscrowCost {
        cost: worth_of(&x402, paid_units),
        units: paid_units,
        model: "echo".into(),
        prompt_tokens: 5,
        completion_tokens: 7,
    };
    // What a replica records of a lock it holds: landed, then its cost and a settlement it
    // never sent (on a blockhash the chain never had, so it can never land).
    let costed_unsent = async |lock: &EscrowLock| {
        assert!(ledger
            .escrow_move(&lock.lock, EscrowState::Locking, EscrowState::Locked)
            .await
            .unwrap());
        let settle = token_instructions::settle_token(
            &redeemer,
            wallet.pubkey(),
            lock.nonce,
            bot.pubkey(),
            paid_units,
        );
        let never_sent = signed(&[settle], Hash::new_unique());
        assert!(ledger
            .escrow_cost(
                &lock.lock,
                &lock.request_id,
                &cost,
                &never_sent.signatures[0].to_string(),
                &never_sent.message.recent_blockhash().to_string(),
            )
            .await
            .unwrap());
    };
    costed_unsent(&lock).await;

    // Housekeeping sends a settlement in its place (once), credits it, then charges the
    // request: exactly the recorded units left the vault, and the debit is the cost.
    let treasury = escrowed.treasury().await;
    assert_eq!(x402.escrow_sweep(&state, later).await.unwrap(), 1);
    assert_eq!(
        escrowed.state(&wallet, nonce).await,
        Some(EscrowState::Settled)
    );
    assert_eq!(x402.escrow_sweep(&state, later).await.unwrap(), 1);
    assert_eq!(
        escrowed.state(&wallet, nonce).await,
        Some(EscrowState::Charged)
    );
    assert_eq!(escrowed.vault(&wallet).await, (10 * USDC - paid_units, 0));
    assert_eq!(escrowed.treasury().await, treasury + paid_units);
    let balance = ledger.balance(&user).await.unwrap();
    assert_eq!((balance.credited, balance.debited), (cost.cost, cost.cost));
    assert_eq!(
        x402.escrow_sweep(&state, later).await.unwrap(),
        0,
        "nothing left"
    );

    // A settlement the chain refuses (its lock is gone: here never taken, as when the wallet
    // released an expired lock) pays nothing: the row is released, nothing credited or charged.
    let ghost = EscrowLock {
        lock: pda::token_lock(&wallet.pubkey(), nonce + 1).to_string(),
        nonce: nonce + 1,
        request_id: "req_ghost".into(),
        ..lock.clone()
    };
    assert_eq!(ledger.escrow_claim(&ghost).await.unwrap(), None);
    costed_unsent(&ghost).await;
    assert_eq!(x402.escrow_sweep(&state, later).await.unwrap(), 1);
    assert_eq!(
        escrowed.state(&wallet, nonce + 1).await,
        Some(EscrowState::Released)
    );
    assert_eq!(x402.escrow_sweep(&state, later).await.unwrap(), 0);
    let after = ledger.balance(&user).await.unwrap();
    assert_eq!((after.credited, after.debited), (cost.cost, cost.cost));
    assert_eq!(escrowed.vault(&wallet).await, (10 * USDC - paid_units, 0));
    escrowed.stop().await;
}

fn worth_of(x402: &X402, units: u64) -> i64 {
    x402.asset.tokens_for(units).unwrap()
}
