//! x402 v2 on the chat API, against the whole local stack (validator, program, treasury, the
//! USDC stand-in) with two gateway replicas sharing one Postgres ledger: the official clients
//! (`@x402/fetch` + `@x402/svm` on npm, Python `x402`) pay chat completions unchanged, streamed
//! and not; every payment lands on chain and is credited once to its payer, who keeps what the
//! requests did not use; and every bad payment (wrong amount, asset, recipient or network,
//! expired, replayed, sent to both replicas at once) is refused with the x402 error, serving
//! and crediting nothing.
mod common;

use base64::{engine::general_purpose::STANDARD, Engine};
use common::{ask, eventually, processes::Proc};
use indexer::{
    ledger::{testing::TempDatabase, Ledger, X402Payment, X402State},
    sandbox::{Sandbox, SandboxConfig, USDC},
};
use localnet::MockUpstream;
use nostr_sdk::Keys;
use proxy::{
    server::Gateway,
    x402::wire::{self, PaymentRequired, Requirements},
};
use serde_json::{json, Value};
use solana_sdk::{
    hash::Hash,
    instruction::Instruction,
    message::{v0, VersionedMessage},
    pubkey::Pubkey,
    signature::{write_keypair_file, Keypair, Signature},
    signer::Signer,
    transaction::VersionedTransaction,
};
use std::{
    path::{Path, PathBuf},
    process::Command,
    str::FromStr,
};

const X402_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/x402");

/// The stack, and two gateway replicas on its ledger taking x402.
struct Deployment {
    db: TempDatabase,
    stack: Sandbox,
    _mock: MockUpstream,
    gateways: Vec<Gateway>,
    dir: PathBuf,
    http: reqwest::Client,
    /// The external facilitator the replicas use, if they use one.
    facilitator: Option<NodeFacilitator>,
    /// The replicas' configuration.
    config: proxy::config::Config,
    /// The replicas' Nostr keys.
    keys: Keys,
}

/// The official facilitator (`tests/x402/facilitator.mjs`), killed when dropped.
struct NodeFacilitator {
    url: String,
    fee_payer: Pubkey,
    _process: tokio::process::Child,
}

impl NodeFacilitator {
    async fn start(stack: &Sandbox, dir: &Path) -> Self {
        let fee_payer = Keypair::new();
        stack
            .airdrop(&fee_payer.pubkey(), 1_000_000_000)
            .await
            .unwrap();
        let file = dir.join("facilitator.json");
        write_keypair_file(&fee_payer, &file).unwrap();
        let mut process = tokio::process::Command::new("node")
            .arg("facilitator.mjs")
            .current_dir(X402_DIR)
            .env("RPC_URL", stack.validator.rpc_url())
            .env("NETWORK", sandbox::X402_NETWORK)
            .env("FACILITATOR_KEYPAIR", &file)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let stdout = process.stdout.take().unwrap();
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        let url = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
            .await
            .expect("the facilitator starts")
            .unwrap()
            .expect("the facilitator prints its URL");
        Self {
            url,
            fee_payer: fee_payer.pubkey(),
            _process: process,
        }
    }
}

/// Who co-signs and submits the replicas' payments.
enum SettledBy {
    /// The gateway itself.
    Gateway,
    /// The official facilitator, run by Node.
    NodeFacilitator,
    /// The facilitator at `url`, which has `max_timeout_seconds` to settle a payment.
    Facilitator {
        url: String,
        max_timeout_seconds: u64,
    },
}

impl Deployment {
    async fn start() -> Self {
        Self::start_settled_by(SettledBy::Gateway).await
    }

    async fn start_settled_by(settled_by: SettledBy) -> Self {
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
        let dir = std::env::temp_dir().join(format!("x402-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = common::config(&mock, &db.url);
        sandbox::describe(&mut config, &stack);
        config.x402 = sandbox::x402(&stack, &dir.join("fee-payer.json"))
            .await
            .unwrap();
        let mut facilitator = None;
        match settled_by {
            SettledBy::Gateway => {}
            SettledBy::NodeFacilitator => {
                let node = NodeFacilitator::start(&stack, &dir).await;
                config.x402.fee_payer_keypair_file = None;
                config.x402.facilitator_url = Some(node.url.clone());
                facilitator = Some(node);
            }
            SettledBy::Facilitator {
                url,
                max_timeout_seconds,
            } => {
                config.x402.fee_payer_keypair_file = None;
                config.x402.facilitator_url = Some(url);
                config.x402.max_timeout_seconds = Some(max_timeout_seconds);
            }
        }
        let mut gateways = Vec::new();
        for _ in 0..2 {
            let ledger = Ledger::connect(&db.url).await.unwrap();
            gateways.push(common::gateway(config.clone(), ledger, &keys).await);
        }
        let config = config.clone();
        Self {
            db,
            stack,
            _mock: mock,
            gateways,
            dir,
            http: reqwest::Client::new(),
            facilitator,
            config,
            keys,
        }
    }

    /// A third replica on the same ledger, as a `proxy run` process (to be SIGKILLed): its
    /// chat URL.
    async fn replica_process(&self) -> (Proc, String) {
        common::processes::replica_process(&self.config, &self.keys, &self.dir, &self.http).await
    }

    fn url(&self, replica: usize) -> String {
        format!("http://{}", self.gateways[replica].addr)
    }

    /// A wallet holding `units` of the USDC stand-in and no SOL (the gateway pays the fees),
    /// with its keypair written to a file.
    async fn payer(&self, units: u64) -> (Keypair, PathBuf) {
        let payer = Keypair::new();
        self.stack.fund_usdc(&payer.pubkey(), units).await.unwrap();
        let file = self.dir.join(format!("{}.json", payer.pubkey()));
        write_keypair_file(&payer, &file).unwrap();
        (payer, file)
    }

    async fn usdc(&self, owner: &Pubkey) -> u64 {
        let account = balance_payment::sdk::spl::associated_token_address(
            owner,
            &self.stack.usdc,
            &balance_payment::sdk::spl::TOKEN_PROGRAM_ID,
        );
        let balance = self.stack.rpc.get_token_account_balance(&account).await;
        balance.map_or(0, |balance| balance.amount.parse().unwrap())
    }

    async fn chat(&self, replica: usize, body: &Value, payment: Option<&str>) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/v1/chat/completions", self.url(replica)))
            .json(body);
        if let Some(payment) = payment {
            request = request.header("PAYMENT-SIGNATURE", payment);
        }
        request.send().await.unwrap()
    }

    /// The offer a request without credentials is answered with.
    async fn offer(&self, body: &Value) -> Requirements {
        let response = self.chat(0, body, None).await;
        assert_eq!(response.status(), 402);
        let required = offer_of(&response);
        assert_eq!(required.x402_version, 2);
        required.accepts.into_iter().next().unwrap()
    }

    async fn stop(mut self) {
        let audit = self.stack.ledger.audit().await.unwrap();
        assert!(audit.is_clean(), "{audit:?}");
        common::books_match_the_ledger(&self.stack.ledger, &self.gateways[0]).await;
        for gateway in self.gateways.drain(..) {
            gateway.shutdown().await;
        }
        self.stack.stop().await;
        self.db.remove().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn offer_of(response: &reqwest::Response) -> PaymentRequired {
    let header = response
        .headers()
        .get("payment-required")
        .expect("a PAYMENT-REQUIRED header")
        .to_str()
        .unwrap();
    wire::decode(header).expect("PAYMENT-REQUIRED is base64 JSON of an offer")
}

fn body(text: &str) -> Value {
    let mut body = ask("echo", text);
    body["max_tokens"] = json!(32);
    body
}

/// A payment of `offer` as the official clients build it, in a `PAYMENT-SIGNATURE`.
fn payment(offer: &Requirements, payer: &Keypair, blockhash: Hash, amount: u64) -> String {
    header(offer, &transaction(offer, payer, blockhash, amount))
}

/// The `PAYMENT-SIGNATURE` of `tx` paying `offer`.
fn header(offer: &Requirements, tx: &VersionedTransaction) -> String {
    let payload = json!({
        "x402Version": 2,
        "accepted": offer,
        "payload": {"transaction": STANDARD.encode(bincode::serialize(tx).unwrap())},
    });
    STANDARD.encode(payload.to_string())
}

/// The transaction the official clients build for `offer` (compute budget, `TransferChecked`
/// of `amount` to `pay_to`'s account, a memo), signed by `payer`, the fee payer's signature
/// left empty.
fn transaction(
    offer: &Requirements,
    payer: &Keypair,
    blockhash: Hash,
    amount: u64,
) -> VersionedTransaction {
    let mint = Pubkey::from_str(&offer.asset).unwrap();
    let program = balance_payment::sdk::spl::TOKEN_PROGRAM_ID;
    let account = |owner: &Pubkey| {
        balance_payment::sdk::spl::associated_token_address(owner, &mint, &program)
    };
    let budget = Pubkey::from_str("ComputeBudget111111111111111111111111111111").unwrap();
    let memo = Pubkey::from_str("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr").unwrap();
    let instructions = [
        Instruction::new_with_bytes(
            budget,
            &[&[2u8][..], &20_000u32.to_le_bytes()].concat(),
            vec![],
        ),
        Instruction::new_with_bytes(budget, &[&[3u8][..], &1u64.to_le_bytes()].concat(), vec![]),
        balance_payment::sdk::spl::spl_token::instruction::transfer_checked(
            &program,
            &account(&payer.pubkey()),
            &mint,
            &account(&Pubkey::from_str(&offer.pay_to).unwrap()),
            &payer.pubkey(),
            &[],
            amount,
            6,
        )
        .unwrap(),
        Instruction::new_with_bytes(
            memo,
            uuid::Uuid::new_v4().simple().to_string().as_bytes(),
            vec![],
        ),
    ];
    let fee_payer = Pubkey::from_str(offer.extra["feePayer"].as_str().unwrap()).unwrap();
    let message = VersionedMessage::V0(
        v0::Message::try_compile(&fee_payer, &instructions, &[], blockhash).unwrap(),
    );
    VersionedTransaction {
        signatures: vec![
            Signature::default(),
            payer.sign_message(&message.serialize()),
        ],
        message,
    }
}

/// The x402 error of a refused payment: 402, its code, and the offer again naming it.
async fn refused(response: reqwest::Response, code: &str) {
    assert_eq!(response.status(), 402, "expected a 402 {code}");
    assert_eq!(offer_of(&response).error.as_deref(), Some(code));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agents_pay_with_the_official_node_and_python_clients_and_keep_what_they_did_not_use() {
    let node_ready = std::path::Path::new(X402_DIR).join("node_modules").exists();
    let python = common::tools_python("X402_PYTHON", "x402-venv");
    if !node_ready || python.is_none() {
        return localnet::prerequisite::missing(
            "tests/x402's Node packages and the `x402` Python package",
            "(cd tests/x402 && npm ci) && python3 -m venv ~/.cache/llm-gateway-tools/x402-venv && \
             ~/.cache/llm-gateway-tools/x402-venv/bin/pip install -r tests/x402/requirements.txt",
        );
    }
    let deployment = Deployment::start().await;
    let treasury_before = deployment.usdc(&deployment.stack.treasury).await;
    let mut paid = Vec::new();
    let clients: [(&str, Command); 2] = [
        ("pay.mjs", {
            let mut node = Command::new("node");
            node.arg("pay.mjs");
            node
        }),
        ("pay.py", {
            let mut python = Command::new(python.as_deref().unwrap_or(Path::new("python3")));
            python.arg("pay.py");
            python
        }),
    ];
    for (replica, (script, mut command)) in clients.into_iter().enumerate() {
        let (payer, file) = deployment.payer(10 * USDC).await;
        command
            .current_dir(X402_DIR)
            .env("GATEWAY_URL", deployment.url(replica))
            .env("RPC_URL", deployment.stack.validator.rpc_url())
            .env("NETWORK", sandbox::X402_NETWORK)
            .env("ASSET", deployment.stack.usdc.to_string())
            .env("PAYER_KEYPAIR", &file);
        let printed = common::node_succeeds(command, script).await;
        let payments: Vec<Value> = serde_json::from_slice(&printed).unwrap();
        // What paying costs in time, from the 402 to the answer (`--nocapture` shows it).
        eprintln!("{script}: {payments:?}");
        assert_eq!(payments.len(), 2, "{script}: one streamed, one not");
        let user = payer.pubkey().to_string();
        let ledger = &deployment.stack.ledger;
        let mut credited = 0;
        for payment in &payments {
            let transaction = payment["transaction"].as_str().unwrap();
            assert_eq!(
                ledger.x402_state(transaction).await.unwrap(),
                Some(X402State::Credited),
                "{script}: {transaction} is credited"
            );
            credited += payment["credited"].as_i64().unwrap();
        }
        // Both requests settled: what they cost is debited, the rest stays the payer's.
        let balance = common::settled(ledger, &user).await;
        assert_eq!(
            balance.credited, credited,
            "{script}: credited what was paid"
        );
        assert!(
            balance.debited > 0 && balance.debited < credited,
            "{balance:?}"
        );
        assert_eq!(balance.available, credited - balance.debited);
        let spent = 10 * USDC - deployment.usdc(&payer.pubkey()).await;
        paid.push(spent);

        // What the requests did not use pays a later request, with a key the wallet signed.
        let key = proxy::auth::delegated::sign(
            &common::key_claims(&user, common::AUDIENCE, 1_000),
            &ed25519_dalek::SigningKey::from_bytes(payer.secret_bytes()),
        )
        .unwrap();
        let later = deployment
            .http
            .post(format!(
                "{}/v1/chat/completions",
                deployment.url(1 - replica)
            ))
            .bearer_auth(&key)
            .json(&body("paid from what was left"))
            .send()
            .await
            .unwrap();
        assert_eq!(later.status(), 200, "{}", later.text().await.unwrap());
    }
    // The treasury received exactly what the payers spent; no payer paid any fee.
    let treasury_after = deployment.usdc(&deployment.stack.treasury).await;
    assert_eq!(treasury_after - treasury_before, paid.iter().sum::<u64>());
    deployment.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_payments_are_refused_with_the_x402_error_and_serve_and_credit_nothing() {
    let deployment = Deployment::start().await;
    let (payer, _) = deployment.payer(10 * USDC).await;
    let user = payer.pubkey().to_string();
    let request = body("refusals");

    // Without credentials: the offer for this request's worst case, in the stand-in USDC, to
    // the treasury, with the gateway as fee payer.
    let response = deployment.chat(0, &request, None).await;
    assert_eq!(response.status(), 402);
    let required = offer_of(&response);
    let offer = required.accepts[0].clone();
    assert_eq!(
        (
            offer.scheme.as_str(),
            offer.network.as_str(),
            offer.asset.as_str()
        ),
        (
            "exact",
            sandbox::X402_NETWORK,
            deployment.stack.usdc.to_string().as_str()
        )
    );
    assert_eq!(offer.pay_to, deployment.stack.treasury.to_string());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payment_required");
    let worst: u64 = offer.amount.parse().unwrap();
    assert!(worst > 0);

    // A balance that falls short is offered the same.
    let key = proxy::auth::delegated::sign(
        &common::key_claims(&user, common::AUDIENCE, 1_000),
        &ed25519_dalek::SigningKey::from_bytes(payer.secret_bytes()),
    )
    .unwrap();
    let short = deployment
        .http
        .post(format!("{}/v1/chat/completions", deployment.url(1)))
        .bearer_auth(&key)
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(short.status(), 402);
    assert_eq!(offer_of(&short).accepts[0], offer);

    let blockhash = deployment.stack.rpc.get_latest_blockhash().await.unwrap();
    let treasury_before = deployment.usdc(&deployment.stack.treasury).await;
    let with = |tweak: fn(&mut Requirements)| {
        let mut accepted = offer.clone();
        tweak(&mut accepted);
        accepted
    };
    let cases: Vec<(&str, String)> = vec![
        ("invalid_payload", "not a payment".into()),
        (
            "invalid_exact_svm_payload_amount_mismatch",
            payment(&offer, &payer, blockhash, worst - 1),
        ),
        (
            "invalid_exact_svm_payload_amount_mismatch",
            payment(&with(|o| o.amount = "1".into()), &payer, blockhash, 1),
        ),
        (
            "invalid_exact_svm_payload_recipient_mismatch",
            payment(
                &with(|o| o.pay_to = Pubkey::new_unique().to_string()),
                &payer,
                blockhash,
                worst,
            ),
        ),
        (
            "invalid_exact_svm_payload_mint_mismatch",
            payment(
                &with(|o| o.asset = Pubkey::new_unique().to_string()),
                &payer,
                blockhash,
                worst,
            ),
        ),
        (
            "invalid_exact_svm_network_mismatch",
            payment(
                &with(|o| o.network = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp".into()),
                &payer,
                blockhash,
                worst,
            ),
        ),
        // Expired: its blockhash is not one the chain knows (any more).
        (
            "invalid_exact_svm_transaction_failed",
            payment(&offer, &payer, Hash::new_unique(), worst),
        ),
    ];
    for (code, header) in &cases {
        refused(deployment.chat(0, &request, Some(header)).await, code).await;
    }
    assert_eq!(
        deployment
            .stack
            .ledger
            .balance(&user)
            .await
            .unwrap()
            .credited,
        0
    );
    assert_eq!(
        deployment.usdc(&deployment.stack.treasury).await,
        treasury_before
    );

    // A good payment serves one request; replayed, it serves nothing more.
    let good = payment(&offer, &payer, blockhash, worst);
    let served = deployment.chat(0, &request, Some(&good)).await;
    assert_eq!(served.status(), 200);
    let settled: Value = serde_json::from_slice(
        &STANDARD
            .decode(served.headers()["payment-response"].to_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(settled["success"], true);
    assert_eq!(settled["payer"], user);
    let credited = settled["credited"].as_i64().unwrap();
    for replica in [0, 1] {
        refused(
            deployment.chat(replica, &request, Some(&good)).await,
            "duplicate_settlement",
        )
        .await;
    }

    // One payment sent to both replicas at once: one request served, one refused, one credit.
    let blockhash = deployment.stack.rpc.get_latest_blockhash().await.unwrap();
    let twice = payment(&offer, &payer, blockhash, worst);
    let (a, b) = tokio::join!(
        deployment.chat(0, &request, Some(&twice)),
        deployment.chat(1, &request, Some(&twice)),
    );
    let statuses = [a.status().as_u16(), b.status().as_u16()];
    assert!(
        statuses.contains(&200) && statuses.contains(&402),
        "{statuses:?}"
    );
    let loser = if a.status() == 402 { a } else { b };
    refused(loser, "duplicate_settlement").await;

    let ledger = &deployment.stack.ledger;
    let balance = common::settled(ledger, &user).await;
    assert_eq!(
        balance.credited,
        2 * credited,
        "two payments, each credited once"
    );
    assert_eq!(
        deployment.usdc(&deployment.stack.treasury).await,
        treasury_before + 2 * worst
    );
    let usage = ledger.usage(&user, None, 100).await.unwrap();
    assert_eq!(usage.len(), 2, "two requests served: {usage:?}");
    eventually("the failed payment is marked failed", || async {
        let failed = ledger.x402_unsettled(i64::MAX).await.unwrap();
        failed.is_empty()
    })
    .await;
    deployment.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payment_whose_request_was_lost_is_settled_from_the_chain_by_housekeeping() {
    let deployment = Deployment::start().await;
    let (payer, _) = deployment.payer(10 * USDC).await;
    let offer = deployment.offer(&body("lost")).await;
    let amount: u64 = offer.amount.parse().unwrap();
    let x402 = deployment.gateways[0].state.x402.clone().unwrap();
    let worth = deployment.worth(amount);
    let ledger = &deployment.stack.ledger;
    // Claimed as a replica claims it: by the fee payer's signature.
    let claim = |tx: &VersionedTransaction| deployment.claim(tx, 0, &payer, amount);
    // A replica claimed this payment, sent it and died before it landed: it lands anyway.
    let fee_payer =
        solana_sdk::signature::read_keypair_file(deployment.dir.join("fee-payer.json")).unwrap();
    let blockhash = deployment.stack.rpc.get_latest_blockhash().await.unwrap();
    let mut landed = transaction(&offer, &payer, blockhash, amount);
    landed.signatures[0] = fee_payer.sign_message(&landed.message.serialize());
    assert_eq!(ledger.x402_claim(&claim(&landed)).await.unwrap(), None);
    deployment
        .stack
        .rpc
        .send_and_confirm_transaction(&landed)
        .await
        .unwrap();
    // Another claimed one and died before sending it: it can never land (its blockhash is
    // not the chain's).
    let mut lost = transaction(&offer, &payer, Hash::new_unique(), amount);
    lost.signatures[0] = fee_payer.sign_message(&lost.message.serialize());
    assert_eq!(ledger.x402_claim(&claim(&lost)).await.unwrap(), None);

    // While their requests could still be waiting, housekeeping leaves them alone.
    assert_eq!(x402.sweep(ledger, ledger.now()).await.unwrap(), 0);
    // Later, it settles both from the chain's answer: the one that landed is the payer's.
    let later = ledger.now() + i64::try_from(x402.max_timeout.as_secs()).unwrap() + 31;
    assert_eq!(x402.sweep(ledger, later).await.unwrap(), 2);
    let signature = |tx: &VersionedTransaction| tx.signatures[0].to_string();
    assert_eq!(
        ledger.x402_state(&signature(&landed)).await.unwrap(),
        Some(X402State::Credited)
    );
    assert_eq!(
        ledger.x402_state(&signature(&lost)).await.unwrap(),
        Some(X402State::Failed)
    );
    let balance = ledger.balance(&payer.pubkey().to_string()).await.unwrap();
    assert_eq!(balance.credited, worth);
    // Its payment, sent again by the client, is not served a second time.
    refused(
        deployment
            .chat(1, &body("lost"), Some(&header(&offer, &landed)))
            .await,
        "duplicate_settlement",
    )
    .await;
    deployment.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_external_facilitator_settles_payments_and_the_gateway_credits_only_what_landed() {
    if !Path::new(X402_DIR).join("node_modules").exists() {
        return localnet::prerequisite::missing(
            "tests/x402's Node packages",
            "(cd tests/x402 && npm ci)",
        );
    }
    let deployment = Deployment::start_settled_by(SettledBy::NodeFacilitator).await;
    let facilitator = deployment.facilitator.as_ref().unwrap();
    let ledger = &deployment.stack.ledger;
    let rpc = &deployment.stack.rpc;
    let request = body("settled by a facilitator");
    // Offers name the facilitator's fee payer: the gateway holds no fee-payer key.
    let offer = deployment.offer(&request).await;
    assert_eq!(offer.extra["feePayer"], facilitator.fee_payer.to_string());
    let amount: u64 = offer.amount.parse().unwrap();
    let x402 = deployment.gateways[0].state.x402.clone().unwrap();
    let worth = deployment.worth(amount);

    // The official client pays, unchanged, streamed and not; each payment landed on chain in
    // the transaction PAYMENT-RESPONSE names, and was credited once.
    let (payer, file) = deployment.payer(10 * USDC).await;
    let mut node = Command::new("node");
    node.arg("pay.mjs")
        .current_dir(X402_DIR)
        .env("GATEWAY_URL", deployment.url(1))
        .env("RPC_URL", deployment.stack.validator.rpc_url())
        .env("NETWORK", sandbox::X402_NETWORK)
        .env("ASSET", deployment.stack.usdc.to_string())
        .env("PAYER_KEYPAIR", &file);
    let printed = common::node_succeeds(node, "pay.mjs").await;
    let payments: Vec<Value> = serde_json::from_slice(&printed).unwrap();
    // What paying through the facilitator costs in time (`--nocapture` shows it).
    eprintln!("pay.mjs through the facilitator: {payments:?}");
    assert_eq!(payments.len(), 2);
    let mut credited = 0;
    for payment in &payments {
        let transaction = payment["transaction"].as_str().unwrap();
        let landed = rpc
            .get_signature_status(&Signature::from_str(transaction).unwrap())
            .await
            .unwrap();
        assert_eq!(landed, Some(Ok(())), "{transaction} landed");
        assert_eq!(
            ledger.x402_state(transaction).await.unwrap(),
            Some(X402State::Credited)
        );
        credited += payment["credited"].as_i64().unwrap();
    }
    let user = payer.pubkey().to_string();
    assert_eq!(common::settled(ledger, &user).await.credited, credited);

    // One payment sent to both replicas at once: settled once, served once, credited once.
    let (payer, _) = deployment.payer(10 * USDC).await;
    let blockhash = rpc.get_latest_blockhash().await.unwrap();
    let paid = payment(&offer, &payer, blockhash, amount);
    let (a, b) = tokio::join!(
        deployment.chat(0, &request, Some(&paid)),
        deployment.chat(1, &request, Some(&paid)),
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 402], "served once");
    let user = payer.pubkey().to_string();
    assert_eq!(common::settled(ledger, &user).await.credited, worth);
    assert_eq!(deployment.usdc(&payer.pubkey()).await, 10 * USDC - amount);
    // Sent again later, it is refused without asking anyone.
    refused(
        deployment.chat(1, &request, Some(&paid)).await,
        "duplicate_settlement",
    )
    .await;

    // A payment the facilitator refuses (its payer holds less than it signed): the refusal
    // is passed on, nothing is served or credited.
    let (poor, _) = deployment.payer(1).await;
    let short = payment(&offer, &poor, blockhash, amount);
    let answer = deployment.chat(0, &request, Some(&short)).await;
    assert_eq!(answer.status(), 402);
    assert!(offer_of(&answer).error.is_some());
    let poor_user = poor.pubkey().to_string();
    assert_eq!(ledger.balance(&poor_user).await.unwrap().credited, 0);

    // A request lost after the facilitator settled its payment: housekeeping finds the
    // transaction by the payer's signature in its source account's history, and credits it.
    let (payer, _) = deployment.payer(10 * USDC).await;
    let blockhash = rpc.get_latest_blockhash().await.unwrap();
    let lost = transaction(&offer, &payer, blockhash, amount);
    // Claimed as a replica claims it: by the payer's signature.
    let claim = |tx: &VersionedTransaction| deployment.claim(tx, 1, &payer, amount);
    assert_eq!(ledger.x402_claim(&claim(&lost)).await.unwrap(), None);
    let payload: Value = wire::decode(&header(&offer, &lost)).unwrap();
    let settled: Value = deployment
        .http
        .post(format!("{}/settle", facilitator.url))
        .json(&json!({"x402Version": 2, "paymentPayload": payload, "paymentRequirements": offer}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(settled["success"], true, "{settled}");
    let landed = settled["transaction"].as_str().unwrap().to_owned();
    // And one claimed but never sent: it can never land (its blockhash is not the chain's).
    let never = transaction(&offer, &payer, Hash::new_unique(), amount);
    assert_eq!(ledger.x402_claim(&claim(&never)).await.unwrap(), None);
    let later = ledger.now() + i64::try_from(x402.max_timeout.as_secs()).unwrap() + 31;
    assert!(x402.sweep(ledger, later).await.unwrap() >= 2);
    assert_eq!(
        ledger.x402_state(&landed).await.unwrap(),
        Some(X402State::Credited),
        "found by its payer's signature and credited"
    );
    assert_eq!(
        ledger
            .x402_state(&never.signatures[1].to_string())
            .await
            .unwrap(),
        Some(X402State::Failed)
    );
    let user = payer.pubkey().to_string();
    assert_eq!(ledger.balance(&user).await.unwrap().credited, worth);
    deployment.stop().await;
}

/// A facilitator that answers `/settle` only once told what to answer: until then it keeps
/// the gateway waiting, as one that is slow or whose payment has not landed yet.
struct StalledFacilitator {
    url: String,
    fee_payer: Keypair,
    answer: tokio::sync::watch::Sender<Option<Value>>,
    _server: tokio::task::JoinHandle<()>,
}

impl StalledFacilitator {
    async fn start() -> Self {
        use axum::{routing::get, routing::post, Json, Router};
        let fee_payer = Keypair::new();
        let (answer, told) = tokio::sync::watch::channel(None::<Value>);
        let supported = json!({"kinds": [{
            "x402Version": 2,
            "scheme": "exact",
            "network": sandbox::X402_NETWORK,
            "extra": {"feePayer": fee_payer.pubkey().to_string()},
        }], "extensions": [], "signers": {}});
        let app = Router::new()
            .route("/supported", get(move || async move { Json(supported) }))
            .route(
                "/settle",
                post(move || async move {
                    // Held until the test says what to answer.
                    let mut told = told.clone();
                    let answer = told.wait_for(Option::is_some).await.unwrap().clone();
                    Json(answer.unwrap_or_default())
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url,
            fee_payer,
            answer,
            _server: server,
        }
    }

    fn answer(&self, answer: Value) {
        self.answer.send_replace(Some(answer));
    }
}

impl Deployment {
    /// Replicas settling through a [`StalledFacilitator`] that has `max_timeout_seconds` to
    /// answer, its fee payer funded.
    async fn with_stalled_facilitator(max_timeout_seconds: u64) -> (Self, StalledFacilitator) {
        let facilitator = StalledFacilitator::start().await;
        let deployment = Deployment::start_settled_by(SettledBy::Facilitator {
            url: facilitator.url.clone(),
            max_timeout_seconds,
        })
        .await;
        deployment
            .stack
            .airdrop(&facilitator.fee_payer.pubkey(), 1_000_000_000)
            .await
            .unwrap();
        (deployment, facilitator)
    }

    /// What a replica records when it claims `tx` (a payment of `amount` base units of the
    /// USDC stand-in by `payer`, from its associated account) by its signature at `index`,
    /// before sending it.
    fn claim(
        &self,
        tx: &VersionedTransaction,
        index: usize,
        payer: &Keypair,
        amount: u64,
    ) -> X402Payment {
        let usdc = &self.stack.usdc;
        let spl = balance_payment::sdk::spl::TOKEN_PROGRAM_ID;
        X402Payment {
            signature: tx.signatures[index].to_string(),
            payer: payer.pubkey().to_string(),
            mint: usdc.to_string(),
            amount,
            tokens: self.worth(amount),
            blockhash: tx.message.recent_blockhash().to_string(),
            source: balance_payment::sdk::spl::associated_token_address(
                &payer.pubkey(),
                usdc,
                &spl,
            )
            .to_string(),
        }
    }

    /// Ledger tokens a payment of `amount` base units of the offered asset is worth.
    fn worth(&self, amount: u64) -> i64 {
        let x402 = self.gateways[0].state.x402.as_ref().unwrap();
        x402.asset.tokens_for(amount).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payment_not_settled_in_time_is_pending_then_finished_once_and_only_the_chain_is_believed(
) {
    let (deployment, facilitator) = Deployment::with_stalled_facilitator(2).await;
    let ledger = &deployment.stack.ledger;
    let rpc = &deployment.stack.rpc;
    let request = body("pending");
    let offer = deployment.offer(&request).await;
    assert_eq!(
        offer.extra["feePayer"],
        facilitator.fee_payer.pubkey().to_string()
    );
    let amount: u64 = offer.amount.parse().unwrap();
    let worth = deployment.worth(amount);
    let (payer, _) = deployment.payer(10 * USDC).await;
    let user = payer.pubkey().to_string();
    let blockhash = rpc.get_latest_blockhash().await.unwrap();
    let mut tx = transaction(&offer, &payer, blockhash, amount);
    let paid = header(&offer, &tx);

    // The facilitator does not answer in time: the outcome is unknown, which is not a
    // refusal — 503 with Retry-After, nothing served, nothing credited.
    let pending = deployment.chat(0, &request, Some(&paid)).await;
    assert_eq!(pending.status(), 503);
    assert_eq!(pending.headers()["retry-after"], "2");
    let error: Value = pending.json().await.unwrap();
    assert_eq!(error["error"]["code"], "settlement_pending", "{error}");
    assert_eq!(ledger.balance(&user).await.unwrap().credited, 0);

    // It lands after all; the client sends the same request again (at the other replica):
    // served, and credited once.
    tx.signatures[0] = facilitator.fee_payer.sign_message(&tx.message.serialize());
    rpc.send_and_confirm_transaction(&tx).await.unwrap();
    let id = tx.signatures[0].to_string();
    facilitator.answer(json!({
        "success": true, "transaction": id, "network": sandbox::X402_NETWORK, "payer": user,
    }));
    let finished = deployment.chat(1, &request, Some(&paid)).await;
    assert_eq!(finished.status(), 200);
    let settled: Value =
        wire::decode(finished.headers()["payment-response"].to_str().unwrap()).unwrap();
    assert_eq!(settled["transaction"], id.as_str());
    assert_eq!(ledger.balance(&user).await.unwrap().credited, worth);
    refused(
        deployment.chat(0, &request, Some(&paid)).await,
        "duplicate_settlement",
    )
    .await;

    // A facilitator that names a transaction which is not the payment's (here: the last one)
    // is not believed: nothing is credited on its word.
    let mut other = transaction(&offer, &payer, blockhash, amount);
    let other_paid = header(&offer, &other);
    let unbelieved = deployment.chat(0, &request, Some(&other_paid)).await;
    assert_eq!(unbelieved.status(), 503);
    assert_eq!(ledger.balance(&user).await.unwrap().credited, worth);

    // That payment does land; asked again, the facilitator only says it settled it before
    // (`duplicate_settlement`, as the official one does): the retry finds it in the
    // payer's account history, and is served and credited once.
    other.signatures[0] = facilitator
        .fee_payer
        .sign_message(&other.message.serialize());
    rpc.send_and_confirm_transaction(&other).await.unwrap();
    facilitator.answer(json!({
        "success": false, "errorReason": "duplicate_settlement", "transaction": "",
        "network": sandbox::X402_NETWORK,
    }));
    let found = deployment.chat(1, &request, Some(&other_paid)).await;
    assert_eq!(found.status(), 200, "{}", found.text().await.unwrap());
    let settled: Value =
        wire::decode(found.headers()["payment-response"].to_str().unwrap()).unwrap();
    assert_eq!(settled["transaction"], other.signatures[0].to_string());
    assert_eq!(ledger.balance(&user).await.unwrap().credited, 2 * worth);
    deployment.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_while_its_payment_settles_loses_the_payer_nothing() {
    let (deployment, facilitator) = Deployment::with_stalled_facilitator(30).await;
    let ledger = &deployment.stack.ledger;
    let rpc = &deployment.stack.rpc;
    let (mut doomed, doomed_url) = deployment.replica_process().await;
    let request = body("killed mid-payment");
    let offer = deployment.offer(&request).await;
    let amount: u64 = offer.amount.parse().unwrap();
    let worth = deployment.worth(amount);
    let (payer, _) = deployment.payer(10 * USDC).await;
    let user = payer.pubkey().to_string();
    let blockhash = rpc.get_latest_blockhash().await.unwrap();
    let mut tx = transaction(&offer, &payer, blockhash, amount);
    let paid = header(&offer, &tx);

    // The process claims the payment and waits for the facilitator; it is killed there.
    let in_flight = {
        let (http, paid, request) = (deployment.http.clone(), paid.clone(), request.clone());
        tokio::spawn(async move {
            http.post(&doomed_url)
                .header("PAYMENT-SIGNATURE", paid)
                .json(&request)
                .send()
                .await
        })
    };
    let claimed = tx.signatures[1].to_string();
    eventually("the payment is claimed", || async {
        ledger.x402_state(&claimed).await.unwrap() == Some(X402State::Submitted)
    })
    .await;
    doomed.kill().await;
    assert!(
        in_flight.await.unwrap().is_err(),
        "the client lost its answer"
    );
    assert_eq!(ledger.balance(&user).await.unwrap().credited, 0);

    // The payment lands anyway. The client sends the same request to another replica: it is
    // served, and the payment credited once; the treasury got it once.
    tx.signatures[0] = facilitator.fee_payer.sign_message(&tx.message.serialize());
    rpc.send_and_confirm_transaction(&tx).await.unwrap();
    facilitator.answer(json!({
        "success": true, "transaction": tx.signatures[0].to_string(),
        "network": sandbox::X402_NETWORK, "payer": user,
    }));
    let finished = deployment.chat(0, &request, Some(&paid)).await;
    assert_eq!(finished.status(), 200, "{}", finished.text().await.unwrap());
    assert_eq!(ledger.balance(&user).await.unwrap().credited, worth);
    assert_eq!(deployment.usdc(&payer.pubkey()).await, 10 * USDC - amount);
    refused(
        deployment.chat(1, &request, Some(&paid)).await,
        "duplicate_settlement",
    )
    .await;
    deployment.stop().await;
}

/// A Token-2022 mint of 6 decimals made now (taking a transfer fee when `fee`), with the
/// treasury's account of it open.
async fn token_2022_mint(stack: &Sandbox, fee: bool) -> Pubkey {
    use balance_payment::sdk::spl::{self, spl_token_2022};
    use spl_token_2022::extension::{transfer_fee, ExtensionType};
    let program = spl::TOKEN_2022_PROGRAM_ID;
    let mint = Keypair::new();
    let authority = &stack.authority;
    let mut instructions = match fee {
        false => {
            let rent = stack
                .rpc
                .get_minimum_balance_for_rent_exemption(spl::MINT_LEN)
                .await
                .unwrap();
            spl::create_mint(
                &authority.pubkey(),
                &mint.pubkey(),
                &authority.pubkey(),
                6,
                &program,
                rent,
            )
            .unwrap()
            .to_vec()
        }
        true => {
            let space = ExtensionType::try_calculate_account_len::<spl_token_2022::state::Mint>(&[
                ExtensionType::TransferFeeConfig,
            ])
            .unwrap();
            let rent = stack
                .rpc
                .get_minimum_balance_for_rent_exemption(space)
                .await
                .unwrap();
            vec![
                solana_system_interface::instruction::create_account(
                    &authority.pubkey(),
                    &mint.pubkey(),
                    rent,
                    space as u64,
                    &program,
                ),
                transfer_fee::instruction::initialize_transfer_fee_config(
                    &program,
                    &mint.pubkey(),
                    Some(&authority.pubkey()),
                    Some(&authority.pubkey()),
                    100,
                    1_000,
                )
                .unwrap(),
                spl_token_2022::instruction::initialize_mint2(
                    &program,
                    &mint.pubkey(),
                    &authority.pubkey(),
                    None,
                    6,
                )
                .unwrap(),
            ]
        }
    };
    let spl = program;
    instructions.push(balance_payment::sdk::spl::create_associated_token_account(
        &authority.pubkey(),
        &stack.treasury,
        &mint.pubkey(),
        &spl,
    ));
    send(stack, &instructions, &[authority, &mint]).await;
    mint.pubkey()
}

async fn send(stack: &Sandbox, instructions: &[Instruction], signers: &[&Keypair]) {
    let blockhash = stack.rpc.get_latest_blockhash().await.unwrap();
    let tx = solana_sdk::transaction::Transaction::new_signed_with_payer(
        instructions,
        Some(&signers[0].pubkey()),
        signers,
        blockhash,
    );
    stack.rpc.send_and_confirm_transaction(&tx).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_2022_asset_is_paid_with_the_official_client_and_one_taking_a_fee_is_refused() {
    if !Path::new(X402_DIR).join("node_modules").exists() {
        return localnet::prerequisite::missing(
            "tests/x402's Node packages",
            "(cd tests/x402 && npm ci)",
        );
    }
    let deployment = Deployment::start().await;
    let stack = &deployment.stack;
    let spl = balance_payment::sdk::spl::TOKEN_2022_PROGRAM_ID;
    let mint = token_2022_mint(stack, false).await;
    // A gateway that takes it, on the same ledger.
    let taking = |mint: &Pubkey, token_program: &Pubkey| {
        let mut config = deployment.config.clone();
        config.tokens.push(indexer::assets::TokenAsset {
            mint: mint.to_string(),
            symbol: "T22".into(),
            decimals: 6,
            tokens_per_unit: 10_000,
            token_program: token_program.to_string(),
        });
        config.x402.asset = Some(mint.to_string());
        // The namespace does not list this mint: `exact` only (escrow would refuse to start).
        config.x402.escrow_bot_keypair_file = None;
        config
    };
    let config = taking(&mint, &spl);
    let ledger = Ledger::connect(&deployment.db.url).await.unwrap();
    let gateway = common::gateway(config, ledger, &deployment.keys).await;
    let x402 = gateway.state.x402.clone().unwrap();
    assert_eq!(x402.asset.token_program, spl);

    let (payer, file) = {
        let payer = Keypair::new();
        let account =
            balance_payment::sdk::spl::associated_token_address(&payer.pubkey(), &mint, &spl);
        let authority = &stack.authority;
        send(
            stack,
            &[
                balance_payment::sdk::spl::create_associated_token_account(
                    &authority.pubkey(),
                    &payer.pubkey(),
                    &mint,
                    &spl,
                ),
                balance_payment::sdk::spl::mint_to(
                    &spl,
                    &mint,
                    &account,
                    &authority.pubkey(),
                    10 * USDC,
                )
                .unwrap(),
            ],
            &[authority],
        )
        .await;
        let file = deployment.dir.join("t22-payer.json");
        write_keypair_file(&payer, &file).unwrap();
        (payer, file)
    };
    let treasury =
        balance_payment::sdk::spl::associated_token_address(&stack.treasury, &mint, &spl);
    let mut node = Command::new("node");
    node.arg("pay.mjs")
        .current_dir(X402_DIR)
        .env("GATEWAY_URL", format!("http://{}", gateway.addr))
        .env("RPC_URL", stack.validator.rpc_url())
        .env("NETWORK", sandbox::X402_NETWORK)
        .env("ASSET", mint.to_string())
        .env("PAYER_KEYPAIR", &file);
    let printed = common::node_succeeds(node, "pay.mjs").await;
    let payments: Vec<Value> = serde_json::from_slice(&printed).unwrap();
    assert_eq!(payments.len(), 2);
    let credited: i64 = payments
        .iter()
        .map(|p| p["credited"].as_i64().unwrap())
        .sum();
    let user = payer.pubkey().to_string();
    assert_eq!(
        common::settled(&stack.ledger, &user).await.credited,
        credited
    );
    let received = stack
        .rpc
        .get_token_account_balance(&treasury)
        .await
        .unwrap();
    let received: u64 = received.amount.parse().unwrap();
    assert_eq!(
        u64::try_from(credited).unwrap() * 100,
        received,
        "10,000 tokens per unit of 6 decimals: one token per 100 base units"
    );
    gateway.shutdown().await;

    // A mint whose transfers take a fee would be credited more than the treasury receives:
    // refused at start, as is a mint that is not what [[tokens]] says.
    let fee_taking = token_2022_mint(stack, true).await;
    let refused = proxy::x402::X402::connect(&taking(&fee_taking, &spl)).await;
    let error = refused
        .err()
        .expect("a mint with a transfer fee is refused")
        .to_string();
    assert!(error.contains("has a transfer fee"), "{error}");
    let classic = balance_payment::sdk::spl::TOKEN_PROGRAM_ID;
    let refused = proxy::x402::X402::connect(&taking(&mint, &classic)).await;
    let error = refused
        .err()
        .expect("a mint of another program is refused")
        .to_string();
    assert!(error.contains("[[tokens]] says"), "{error}");
    deployment.stop().await;
}
