//! Faults across processes. The chain, the relay, the echo model, the indexer with its
//! controller and two gateway replicas run as separate processes on one Postgres ledger, set
//! up with the operator commands. While wallets top up and chat, the indexer is killed with
//! SIGKILL at 20 random moments and once between a `pay` landing and its announcement; a
//! gateway replica is killed mid-stream and the relay once. Afterwards: no double payment, no
//! lost credit, every balance equal to what the chain and the served requests say, audit clean.
//! It prints its figures (kills, top-ups, calls, timings) for the README.
mod common;

use balance_payment::{authorization::AuthorizationTerms, sdk::instructions as ix};
use futures_util::StreamExt;
use indexer::{
    chain::{client::ProgramClient, rpc::RpcChain, Chain},
    ledger::{now, testing::TempDatabase, Ledger, RequestState},
    topup::{authorization_payload, request_event},
};
use nostr_sdk::prelude::{Client, Keys};
use rand::Rng;
use serde_json::{json, Value};
use solana_commitment_config::CommitmentConfig;
use solana_pubsub_client::nonblocking::pubsub_client::PubsubClient;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_rpc_client_types::config::{RpcTransactionLogsConfig, RpcTransactionLogsFilter};
use solana_sdk::signature::{read_keypair_file, Keypair, Signer};
use std::{
    collections::HashMap,
    net::TcpListener,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};
use tokio::process::{Child, Command};

const SOL: u64 = 1_000_000_000;
const TOP_UP: u64 = SOL / 100; // 0.01 SOL = 10,000 tokens
const TOKENS_PER_SOL: u64 = 1_000_000;
const USERS: usize = 3;
const TOP_UPS_PER_USER: u64 = 6;
const RANDOM_KILLS: usize = 20;

fn binary(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_proxy")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: `cargo test --workspace` builds it (or `cargo build -p indexer -p localnet`)",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process of the stack that can be killed and started again with the same arguments.
struct Proc {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Proc {
    fn new(name: &'static str, program: PathBuf, args: &[&str], dir: &Path) -> Self {
        Self {
            name,
            program,
            args: args.iter().map(|a| a.to_string()).collect(),
            dir: dir.to_owned(),
            child: None,
            starts: 0,
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.name))
    }

    /// Starts it, its output appended to `<name>.log`.
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let child = Command::new(&self.program)
            .args(&self.args)
            .current_dir(&self.dir)
            .env("RUST_LOG", "info,sqlx=warn,nostr_relay_pool=warn")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.name));
        self.child = Some(child);
        self.starts += 1;
    }

    /// SIGKILL, and wait until it is gone.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().unwrap();
            child.wait().await.unwrap();
        }
    }

    /// SIGTERM, and wait for it to exit.
    async fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
        }
    }

    /// Fails the test if the process exited by itself.
    fn assert_running(&mut self) {
        if let Some(child) = &mut self.child {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{} exited by itself ({status}); its log:\n{}",
                    self.name,
                    std::fs::read_to_string(self.log()).unwrap_or_default()
                );
            }
        }
    }
}

/// Waits until `url` answers 200.
async fn healthy(http: &reqwest::Client, url: &str, proc: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        proc.assert_running();
        if let Ok(response) = http.get(url).send().await {
            if response.status().is_success() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never became healthy at {url}",
            proc.name
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the process printed `ready` (localnet stand-ins).
async fn ready(proc: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let starts_seen = proc.starts as usize;
    loop {
        proc.assert_running();
        let log = std::fs::read_to_string(proc.log()).unwrap_or_default();
        if log.lines().filter(|l| l.starts_with("ready ")).count() >= starts_seen {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never became ready",
            proc.name
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs a command (the operator CLIs) to completion; returns its stdout.
async fn run_ok(program: &Path, args: &[&str], dir: &Path) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("SOLANA_URL")
        .env_remove("SOLANA_KEYPAIR")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What the wallets and callers saw, to hold the ledger to.
#[derive(Default)]
struct Observed {
    /// Tokens of every call a client got a 200 for, per user.
    served: Mutex<HashMap<String, i64>>,
    calls: AtomicU64,
    refused_for_funds: AtomicU64,
    /// Top-up requests published again after no answer in time.
    republished: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_money_is_lost_or_doubled_when_processes_die() {
    let started = Instant::now();
    let Ok(db) = TempDatabase::postgres().await else {
        assert!(std::env::var_os("CI").is_none(), "CI must have Postgres");
        eprintln!("skipped: no Postgres on 127.0.0.1:5432");
        return;
    };
    let dir = std::env::temp_dir().join(format!("faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let (localnet, indexer_bin, proxy_bin) = (
        binary("localnet"),
        binary("indexer"),
        PathBuf::from(env!("CARGO_BIN_EXE_proxy")),
    );
    let http = reqwest::Client::new();

    // The outside world: a chain, a relay kept on disk, a model.
    let (rpc_port, relay_port, echo_port) = (free_port(), free_port(), free_port());
    let mut chain = Proc::new(
        "chain",
        localnet.clone(),
        &["validator", "--rpc-port", &rpc_port.to_string()],
        &dir,
    );
    let mut relay = Proc::new(
        "relay",
        localnet.clone(),
        &[
            "relay",
            "--port",
            &relay_port.to_string(),
            "--dir",
            &path("relay-store"),
        ],
        &dir,
    );
    let mut echo = Proc::new(
        "echo",
        localnet.clone(),
        &["echo", "--port", &echo_port.to_string()],
        &dir,
    );
    for proc in [&mut chain, &mut relay, &mut echo] {
        proc.spawn();
        ready(proc).await;
    }
    let rpc_url = format!("http://127.0.0.1:{rpc_port}");
    let ws_url = format!("ws://127.0.0.1:{}", rpc_port + 1);
    let relay_url = format!("ws://127.0.0.1:{relay_port}");
    let rpc = RpcClient::new_with_commitment(rpc_url.clone(), CommitmentConfig::confirmed());
    let airdrop = |to| {
        let rpc = &rpc;
        async move {
            let signature = rpc.request_airdrop(&to, 20 * SOL).await.unwrap();
            rpc.poll_for_signature_with_commitment(&signature, CommitmentConfig::confirmed())
                .await
                .unwrap();
        }
    };

    // The operator, with the operator commands.
    run_ok(
        &indexer_bin,
        &["keygen", "--solana", "--out", &path("authority.json")],
        &dir,
    )
    .await;
    run_ok(
        &indexer_bin,
        &["keygen", "--solana", "--out", &path("bot.json")],
        &dir,
    )
    .await;
    let controller_hex = run_ok(
        &indexer_bin,
        &["keygen", "--out", &path("controller.key")],
        &dir,
    )
    .await
    .split_whitespace()
    .next()
    .unwrap()
    .to_owned();
    let proxy_hex = run_ok(&indexer_bin, &["keygen", "--out", &path("proxy.key")], &dir)
        .await
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    std::fs::write(path("token.secret"), common::rand_bytes().repeat(2)).unwrap();
    let authority = read_keypair_file(path("authority.json")).unwrap();
    let bot = read_keypair_file(path("bot.json")).unwrap();
    airdrop(authority.pubkey()).await;
    airdrop(bot.pubkey()).await;
    run_ok(
        &indexer_bin,
        &["initialize", "-u", &rpc_url, "-k", &path("authority.json")],
        &dir,
    )
    .await;
    let namespace: Value = serde_json::from_str(
        &run_ok(
            &indexer_bin,
            &[
                "namespace",
                "create",
                "--name",
                "faults",
                "--bot",
                &path("bot.json"),
                "-u",
                &rpc_url,
                "-k",
                &path("authority.json"),
            ],
            &dir,
        )
        .await,
    )
    .unwrap();
    let machine = Keys::generate().public_key();
    let health_port = free_port();
    std::fs::write(
        path("indexer.toml"),
        format!(
            "database_url = \"{db}\"\nhealth_listen = \"127.0.0.1:{health_port}\"\n\
             [nostr]\nrelays = [\"{relay_url}\"]\nmachine = \"{machine}\"\n\
             controller_pubkeys = [\"{controller_hex}\"]\nproxy_pubkeys = [\"{proxy_hex}\"]\n\
             [chain]\nrpc_url = \"{rpc_url}\"\nws_url = \"{ws_url}\"\nnamespace_id = 0\npoll_seconds = 1\n\
             tokens_per_sol = {TOKENS_PER_SOL}\n\
             [controller]\nbot_keypair = \"{bot}\"\nnostr_secret_key_file = \"{key}\"\n\
             treasury = \"{treasury}\"\nmax_lamports_per_request = {SOL}\n",
            db = db.url,
            machine = machine.to_hex(),
            bot = path("bot.json"),
            key = path("controller.key"),
            treasury = namespace["treasury"].as_str().unwrap(),
        ),
    )
    .unwrap();
    run_ok(&indexer_bin, &["migrate", "--database-url", &db.url], &dir).await;
    let doctor = run_ok(
        &indexer_bin,
        &["doctor", "--config", &path("indexer.toml")],
        &dir,
    )
    .await;
    assert!(!doctor.contains("FAIL"), "{doctor}");
    let mut indexer = Proc::new(
        "indexer",
        indexer_bin.clone(),
        &["run", "--config", &path("indexer.toml")],
        &dir,
    );
    let indexer_health = format!("http://127.0.0.1:{health_port}/health");
    indexer.spawn();
    healthy(&http, &indexer_health, &mut indexer).await;

    // Two gateway replicas of one deployment on the shared ledger.
    let mut gateways = vec![];
    for name in ["gateway-a", "gateway-b"] {
        let port = free_port();
        std::fs::write(
            path(&format!("{name}.toml")),
            format!(
                "listen = \"127.0.0.1:{port}\"\ndatabase_url = \"{db}\"\n\
                 reservation_ttl_seconds = 10\n\
                 [nostr]\nrelays = [\"{relay_url}\"]\nsecret_key_file = \"{key}\"\n\
                 machine = \"{machine}\"\ntokens_per_sol = {TOKENS_PER_SOL}\n\
                 controller_pubkeys = [\"{controller_hex}\"]\n\
                 [chain]\nrpc_url = \"{rpc_url}\"\nnamespace_id = 0\n\
                 [auth]\naudience = \"https://faults.test\"\ntoken_secret_file = \"{secret}\"\n\
                 [limits]\nrequest_timeout_seconds = 10\nrpm = 100000\ntpm = 100000000\n\
                 [[models]]\nid = \"echo\"\nprompt_price = 1000000\ncompletion_price = 1000000\n\
                 max_output_tokens = 64\n[[models.upstreams]]\nbase_url = \"http://127.0.0.1:{echo_port}/v1\"\n\
                 [[models]]\nid = \"slow\"\nprompt_price = 1000000\ncompletion_price = 1000000\n\
                 max_output_tokens = 64\n[[models.upstreams]]\nbase_url = \"http://127.0.0.1:{echo_port}/v1\"\n\
                 model = \"echo+slow\"\n",
                db = db.url,
                key = path("proxy.key"),
                machine = machine.to_hex(),
                secret = path("token.secret"),
            ),
        )
        .unwrap();
        let mut proc = Proc::new(
            name,
            proxy_bin.clone(),
            &["run", "--config", &path(&format!("{name}.toml"))],
            &dir,
        );
        proc.spawn();
        let base = format!("http://127.0.0.1:{port}");
        healthy(&http, &format!("{base}/health"), &mut proc).await;
        gateways.push((proc, base));
    }
    let (base_a, base_b) = (gateways[0].1.clone(), gateways[1].1.clone());
    let setup_done = started.elapsed();

    // Wallets: registered, 2 SOL in each vault, logged in at the gateway.
    let program = ProgramClient::new(&rpc_url);
    let ledger = Ledger::connect(&db.url).await.unwrap();
    let mut wallets = vec![];
    for _ in 0..USERS {
        let wallet = Keypair::new();
        airdrop(wallet.pubkey()).await;
        program
            .send(&[ix::register(wallet.pubkey())], &[&wallet])
            .await
            .unwrap();
        program
            .send(
                &[ix::deposit(wallet.pubkey(), wallet.pubkey(), 2 * SOL)],
                &[&wallet],
            )
            .await
            .unwrap();
        let token = proxy::wallet::login::login(&http, &base_b, &wallet, None)
            .await
            .unwrap();
        wallets.push((Arc::new(wallet), token));
    }
    let cluster = program.global().await.unwrap().unwrap().cluster;
    let publisher = Client::new(Keys::generate());
    publisher.add_relay(relay_url.as_str()).await.unwrap();
    publisher.connect().await;

    let observed = Arc::new(Observed::default());
    let traffic_on = Arc::new(AtomicBool::new(true));

    // Top-ups: each wallet redeems its next nonce, one after another; a request with no answer
    // in 30 s is published again for the same nonce (what a wallet app does), which is safe.
    let mut top_ups = vec![];
    for (wallet, _) in &wallets {
        let (wallet, publisher, program, observed) = (
            wallet.clone(),
            publisher.clone(),
            ProgramClient::new(&rpc_url),
            observed.clone(),
        );
        top_ups.push(tokio::spawn(async move {
            for nonce in 0..TOP_UPS_PER_USER {
                'redeem: loop {
                    let terms = AuthorizationTerms {
                        program_id: balance_payment::ID,
                        cluster,
                        namespace_id: 0,
                        user: wallet.pubkey(),
                        nonce,
                        max_amount: TOP_UP,
                        deadline: now() + 600,
                        extra_data: [0; 32],
                    };
                    let event = request_event(
                        &authorization_payload(&wallet, &terms).unwrap(),
                        indexer::wire::DEFAULT_SESSION,
                        &machine,
                    )
                    .unwrap();
                    let _ = publisher.send_event(&event).await;
                    let deadline = Instant::now() + Duration::from_secs(30);
                    while Instant::now() < deadline {
                        if let Ok(account) = program.user_account(&wallet.pubkey()).await {
                            if account.nonce > nonce {
                                break 'redeem;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    observed.republished.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    // Calls: every wallet spends on replica B while its balance lasts.
    let mut callers = vec![];
    for (wallet, token) in &wallets {
        let (user, token, base, http, observed, on) = (
            wallet.pubkey().to_string(),
            token.clone(),
            base_b.clone(),
            http.clone(),
            observed.clone(),
            traffic_on.clone(),
        );
        callers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while on.load(Ordering::Relaxed) {
                i += 1;
                let text = format!("call {i} {}", "word ".repeat((i % 7) as usize));
                let response = http
                    .post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(&token)
                    .json(&json!({"model": "echo", "max_tokens": 16, "messages": [{"role": "user", "content": text}]}))
                    .send()
                    .await
                    .unwrap();
                match response.status().as_u16() {
                    200 => {
                        let body: Value = response.json().await.unwrap();
                        let usage = &body["usage"];
                        let tokens = usage["prompt_tokens"].as_i64().unwrap()
                            + usage["completion_tokens"].as_i64().unwrap();
                        *observed.served.lock().unwrap().entry(user.clone()).or_default() += tokens;
                        observed.calls.fetch_add(1, Ordering::Relaxed);
                    }
                    402 => {
                        observed.refused_for_funds.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    status => panic!("call {i}: {status}: {}", response.text().await.unwrap_or_default()),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    // 1. The indexer killed right after a `pay` lands, before the controller records and
    //    announces it (the request is still `paying` in the ledger).
    let pubsub = PubsubClient::new(&ws_url).await.unwrap();
    let (mut pays, unsubscribe) = pubsub
        .logs_subscribe(
            RpcTransactionLogsFilter::Mentions(vec![balance_payment::ID.to_string()]),
            RpcTransactionLogsConfig {
                commitment: Some(CommitmentConfig::processed()),
            },
        )
        .await
        .unwrap();
    let mut caught_between = 0;
    let mut attempts = 0;
    while caught_between == 0 {
        attempts += 1;
        assert!(
            attempts <= 10,
            "never caught the indexer between pay and its announcement"
        );
        let _ = pays.next().await.unwrap();
        indexer.kill().await;
        // A claimed request whose payment is on chain: killed between the two.
        for record in ledger.unfinished_requests().await.unwrap() {
            assert_eq!(record.state, RequestState::Paying);
            let user = record.user.parse().unwrap();
            let landed = Instant::now() + Duration::from_secs(3);
            while Instant::now() < landed {
                if program.user_account(&user).await.unwrap().nonce > record.nonce {
                    caught_between += 1;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        indexer.spawn();
        healthy(&http, &indexer_health, &mut indexer).await;
    }
    unsubscribe().await;

    // 2. A replica killed mid-stream: its reservation is charged by the other's sweep.
    let (wallet, token) = &wallets[0];
    let stream_user = wallet.pubkey().to_string();
    let funded = Instant::now() + Duration::from_secs(60);
    while ledger.balance(&stream_user).await.unwrap().available < 1_000 {
        assert!(
            Instant::now() < funded,
            "the first wallet is never credited"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = http
        .post(format!("{base_a}/v1/chat/completions"))
        .bearer_auth(token)
        .json(&json!({"model": "slow", "stream": true, "max_tokens": 64,
            "messages": [{"role": "user", "content": "a long answer ".repeat(40)}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let killed_request = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut body = response.bytes_stream();
    body.next().await.unwrap().unwrap();
    body.next().await.unwrap().unwrap();
    gateways[0].0.kill().await;
    drop(body);
    let killed_reservation = ledger
        .reservation(&killed_request)
        .await
        .unwrap()
        .expect("the killed stream's reservation is left behind");
    assert!(killed_reservation.served_at.is_some());
    gateways[0].0.spawn();
    healthy(&http, &format!("{base_a}/health"), &mut gateways[0].0).await;

    // 3. The relay killed once, and started again on its store.
    relay.kill().await;
    tokio::time::sleep(Duration::from_millis(300)).await; // traffic meanwhile finds it gone
    relay.spawn();
    ready(&mut relay).await;

    // 4. The indexer killed at 20 random moments.
    let mut downtime = Duration::ZERO;
    for _ in 0..RANDOM_KILLS {
        let wait = rand::thread_rng().gen_range(100..1_500);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let down = Instant::now();
        indexer.kill().await;
        indexer.spawn();
        healthy(&http, &indexer_health, &mut indexer).await;
        downtime += down.elapsed();
    }

    // Let the top-ups finish, then stop calling.
    for top_up in top_ups {
        tokio::time::timeout(Duration::from_secs(240), top_up)
            .await
            .expect("every wallet's top-ups are redeemed")
            .unwrap();
    }
    traffic_on.store(false, Ordering::Relaxed);
    for caller in callers {
        caller.await.unwrap();
    }

    // Settle: credits for every payment, the killed stream's charge, nothing reserved.
    let events_chain = RpcChain::new(
        &rpc_url,
        None,
        balance_payment::ID,
        CommitmentConfig::finalized(),
    );
    let expected_credit = |paid: u64| (paid as i64) * TOKENS_PER_SOL as i64 / SOL as i64;
    let settle_deadline = Instant::now() + Duration::from_secs(90);
    let settled = loop {
        let events = events_chain.events_after(None).await.unwrap().events;
        let mut paid: HashMap<String, (u64, u64)> = HashMap::new();
        for event in &events {
            if let balance_payment::sdk::events::ProgramEvent::Paid(p) = &event.event {
                let entry = paid.entry(p.user.to_string()).or_default();
                entry.0 += 1;
                entry.1 += p.amount;
            }
        }
        let mut done = ledger.reservation(&killed_request).await.unwrap().is_none();
        for (wallet, _) in &wallets {
            let user = wallet.pubkey().to_string();
            let (count, lamports) = paid.get(&user).copied().unwrap_or_default();
            let balance = ledger.balance(&user).await.unwrap();
            done &= count == TOP_UPS_PER_USER && balance.credited == expected_credit(lamports);
            done &= balance.reserved == 0;
        }
        done &= ledger.outbox_backlog().await.unwrap() == 0;
        if done {
            break paid;
        }
        assert!(Instant::now() < settle_deadline, "the ledger never settled");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    // No double payment: each wallet paid exactly its authorisations, once each.
    for (wallet, _) in &wallets {
        let user = wallet.pubkey().to_string();
        let account = program.user_account(&wallet.pubkey()).await.unwrap();
        assert_eq!(
            account.nonce, TOP_UPS_PER_USER,
            "{user}: one nonce per top-up"
        );
        let (count, lamports) = settled[&user];
        assert_eq!(
            count, TOP_UPS_PER_USER,
            "{user}: one Paid per authorisation"
        );
        assert_eq!(
            lamports,
            TOP_UPS_PER_USER * TOP_UP,
            "{user}: exactly the signed amounts"
        );
        let vault = program
            .lamports(&balance_payment::sdk::pda::vault(&wallet.pubkey()))
            .await
            .unwrap();
        assert_eq!(
            vault,
            2 * SOL - lamports,
            "{user}: the vault lost exactly what was paid"
        );
        // No lost credit, and every debit a served call.
        let balance = ledger.balance(&user).await.unwrap();
        assert_eq!(
            balance.credited,
            expected_credit(lamports),
            "{user}: credit = payments"
        );
        let mut served = observed
            .served
            .lock()
            .unwrap()
            .get(&user)
            .copied()
            .unwrap_or_default();
        if user == stream_user {
            served += killed_reservation.amount;
        }
        assert_eq!(balance.debited, served, "{user}: debits = what was served");
        assert_eq!(balance.reserved, 0);
    }
    let audit = ledger.audit().await.unwrap();
    assert!(audit.is_clean(), "{audit:?}");
    let audit_cli = run_ok(&indexer_bin, &["audit", "--database-url", &db.url], &dir).await;
    assert!(audit_cli.contains("credits_without_payment"), "{audit_cli}");

    println!(
        "fault run: setup {:.1} s, total {:.1} s; indexer killed {} times ({} between pay and \
         announcement, after {attempts} tries; mean restart-to-healthy {:.0} ms), a replica \
         killed mid-stream (charged {} tokens by the sweep), the relay killed once; {} top-ups \
         ({} republished), {} calls served, {} refused for funds",
        setup_done.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        indexer.starts - 1,
        caught_between,
        downtime.as_millis() as f64 / RANDOM_KILLS as f64,
        killed_reservation.amount,
        USERS as u64 * TOP_UPS_PER_USER,
        observed.republished.load(Ordering::Relaxed),
        observed.calls.load(Ordering::Relaxed),
        observed.refused_for_funds.load(Ordering::Relaxed),
    );

    publisher.shutdown().await;
    for (proc, _) in &mut gateways {
        proc.terminate().await;
    }
    indexer.terminate().await;
    for proc in [&mut echo, &mut relay, &mut chain] {
        proc.terminate().await;
    }
    ledger.close().await;
    db.remove().await;
    let _ = std::fs::remove_dir_all(&dir);
}
