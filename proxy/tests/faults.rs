//! Faults across processes. The chain, the relay, the echo model, the indexer with its
//! controller and two gateway replicas run as separate processes on one Postgres ledger, set
//! up with the operator commands. While wallets top up and chat, the indexer is killed with
//! SIGKILL once between a `pay` landing and its announcement and at 20 random moments, a
//! gateway replica mid-stream, and the relay once. Afterwards: no double payment, no lost
//! credit, every balance equal to what the chain and the served requests say, audit clean.
//! It prints its figures (kills, top-ups, calls, timings) for proxy/OPERATING.md ("Faults across
//! processes").
mod common;

use balance_payment::{
    authorization::{Asset, AuthorizationTerms},
    sdk::{events::ProgramEvent, instructions as ix, pda},
};
use common::processes::{free_port, free_port_pair, run_ok, sibling_binary, Proc};
use futures_util::StreamExt;
use indexer::{
    chain::{client::ProgramClient, rpc::RpcChain, Chain},
    ledger::{now, testing::TempDatabase, Ledger, RequestState, Reservation},
    topup::{authorization_payload, request_event},
};
use nostr_sdk::prelude::{Client, Keys, PublicKey};
use rand::Rng;
use serde_json::{json, Value};
use solana_commitment_config::CommitmentConfig;
use solana_pubsub_client::nonblocking::pubsub_client::PubsubClient;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_rpc_client_types::config::{RpcTransactionLogsConfig, RpcTransactionLogsFilter};
use solana_sdk::{
    pubkey::Pubkey,
    signature::{read_keypair_file, Keypair, Signer},
};
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

const SOL: u64 = 1_000_000_000;
const TOP_UP: u64 = SOL / 100; // 0.01 SOL = 10,000 tokens
const TOKENS_PER_SOL: u64 = 1_000_000;
const USERS: usize = 3;
const TOP_UPS_PER_USER: u64 = 6;
const RANDOM_KILLS: usize = 20;

/// The stack's processes and addresses.
struct Stack {
    dir: PathBuf,
    chain: Proc,
    relay: Proc,
    echo: Proc,
    indexer: Proc,
    indexer_health: String,
    /// Replica A (killed mid-stream) and replica B (the callers'), with their base URLs.
    gateways: [(Proc, String); 2],
    rpc_url: String,
    ws_url: String,
    relay_url: String,
    machine: PublicKey,
    http: reqwest::Client,
}

impl Stack {
    /// The outside world (chain, relay on disk, model), the operator's setup done with the
    /// operator commands, the indexer and two gateway replicas, all healthy.
    async fn start(db: &TempDatabase) -> Self {
        let dir = std::env::temp_dir().join(format!("faults-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let (localnet, indexer) = (sibling_binary("localnet"), sibling_binary("indexer"));
        let (rpc_port, relay_port, echo_port) = (free_port_pair(), free_port(), free_port());
        let (rpc, relay) = (rpc_port.to_string(), relay_port.to_string());
        let mut chain = Proc::new("chain", &localnet, &["validator", "--rpc-port", &rpc], &dir);
        let store = path("relay-store");
        let mut relay = Proc::new(
            "relay",
            &localnet,
            &["relay", "--port", &relay, "--dir", &store],
            &dir,
        );
        let port = echo_port.to_string();
        let mut echo = Proc::new("echo", &localnet, &["echo", "--port", &port], &dir);
        for proc in [&mut chain, &mut relay, &mut echo] {
            proc.spawn();
            proc.ready().await;
        }
        let rpc_url = format!("http://127.0.0.1:{rpc_port}");
        let relay_url = format!("ws://127.0.0.1:{relay_port}");

        // The operator.
        let hex = |out: String| out.split_whitespace().next().unwrap().to_owned();
        for key in ["authority.json", "bot.json"] {
            run_ok(&indexer, &["keygen", "--solana", "--out", &path(key)], &dir).await;
            let pubkey = read_keypair_file(path(key)).unwrap().pubkey();
            airdrop(&rpc_url, &pubkey).await;
        }
        let controller = hex(run_ok(
            &indexer,
            &["keygen", "--out", &path("controller.key")],
            &dir,
        )
        .await);
        let proxy_key = hex(run_ok(&indexer, &["keygen", "--out", &path("proxy.key")], &dir).await);
        std::fs::write(path("token.secret"), common::rand_bytes().repeat(2)).unwrap();
        let authority = path("authority.json");
        run_ok(
            &indexer,
            &["initialize", "-u", &rpc_url, "-k", &authority],
            &dir,
        )
        .await;
        let create = [
            "namespace",
            "create",
            "--name",
            "faults",
            "--bot",
            &path("bot.json"),
            "-u",
            &rpc_url,
            "-k",
            &authority,
        ];
        let namespace: Value =
            serde_json::from_str(&run_ok(&indexer, &create, &dir).await).unwrap();
        let machine = Keys::generate().public_key();
        let settings = Settings {
            db: db.url.clone(),
            rpc_url: rpc_url.clone(),
            relay_url: relay_url.clone(),
            machine: machine.to_hex(),
            controller,
        };
        let health_port = free_port();
        let treasury = namespace["treasury"].as_str().unwrap();
        std::fs::write(
            path("indexer.toml"),
            settings.indexer(
                health_port,
                &proxy_key,
                &path("bot.json"),
                &path("controller.key"),
                treasury,
            ),
        )
        .unwrap();
        run_ok(&indexer, &["migrate", "--database-url", &db.url], &dir).await;
        let doctor = run_ok(
            &indexer,
            &["doctor", "--config", &path("indexer.toml")],
            &dir,
        )
        .await;
        assert!(!doctor.contains("FAIL"), "{doctor}");
        let http = reqwest::Client::new();
        let config = path("indexer.toml");
        let mut indexer_proc = Proc::new("indexer", &indexer, &["run", "--config", &config], &dir);
        let indexer_health = format!("http://127.0.0.1:{health_port}/health");
        indexer_proc.spawn();
        indexer_proc.healthy(&http, &indexer_health).await;

        let proxy = PathBuf::from(env!("CARGO_BIN_EXE_proxy"));
        let replica = |name: &'static str| {
            let port = free_port();
            let config = path(&format!("{name}.toml"));
            std::fs::write(&config, settings.gateway(port, echo_port, &dir)).unwrap();
            let proc = Proc::new(name, &proxy, &["run", "--config", &config], &dir);
            (proc, format!("http://127.0.0.1:{port}"))
        };
        let mut gateways = [replica("gateway-a"), replica("gateway-b")];
        for (proc, base) in &mut gateways {
            proc.spawn();
            proc.healthy(&http, &format!("{base}/health")).await;
        }
        Self {
            dir,
            chain,
            relay,
            echo,
            indexer: indexer_proc,
            indexer_health,
            gateways,
            ws_url: format!("ws://127.0.0.1:{}", rpc_port + 1),
            rpc_url,
            relay_url,
            machine,
            http,
        }
    }

    /// SIGKILL, start again, wait until healthy.
    async fn restart_indexer(&mut self) {
        self.indexer.kill().await;
        self.indexer.spawn();
        self.indexer.healthy(&self.http, &self.indexer_health).await;
    }

    async fn stop(mut self) {
        for (proc, _) in &mut self.gateways {
            proc.terminate().await;
        }
        self.indexer.terminate().await;
        for proc in [&mut self.echo, &mut self.relay, &mut self.chain] {
            proc.terminate().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the configs share.
struct Settings {
    db: String,
    rpc_url: String,
    relay_url: String,
    machine: String,
    controller: String,
}

impl Settings {
    fn indexer(
        &self,
        health: u16,
        proxy_key: &str,
        bot: &str,
        key: &str,
        treasury: &str,
    ) -> String {
        let Settings {
            db,
            rpc_url,
            relay_url,
            machine,
            controller,
        } = self;
        let ws_port = rpc_url.rsplit(':').next().unwrap().parse::<u16>().unwrap() + 1;
        format!(
            "database_url = \"{db}\"\nhealth_listen = \"127.0.0.1:{health}\"\n\
             [nostr]\nrelays = [\"{relay_url}\"]\nmachine = \"{machine}\"\n\
             controller_pubkeys = [\"{controller}\"]\nproxy_pubkeys = [\"{proxy_key}\"]\n\
             [chain]\nrpc_url = \"{rpc_url}\"\nws_url = \"ws://127.0.0.1:{ws_port}\"\n\
             namespace_id = 0\npoll_seconds = 1\ntokens_per_sol = {TOKENS_PER_SOL}\n\
             [controller]\nbot_keypair = \"{bot}\"\nnostr_secret_key_file = \"{key}\"\n\
             treasury = \"{treasury}\"\nmax_lamports_per_request = {SOL}\n"
        )
    }

    /// A replica of one deployment: shared ledger, proxy key and token secret; reservations
    /// expire after 10 s; `echo` and a slow streaming `slow` at one token per token.
    fn gateway(&self, port: u16, echo_port: u16, dir: &Path) -> String {
        let Settings {
            db,
            rpc_url,
            relay_url,
            machine,
            controller,
        } = self;
        let (key, secret) = (dir.join("proxy.key"), dir.join("token.secret"));
        let model = |id: &str, upstream: &str| {
            format!(
                "[[models]]\nid = \"{id}\"\nprompt_price = 1000000\ncompletion_price = 1000000\n\
                 max_output_tokens = 64\n[[models.upstreams]]\n\
                 base_url = \"http://127.0.0.1:{echo_port}/v1\"\nmodel = \"{upstream}\"\n"
            )
        };
        format!(
            "listen = \"127.0.0.1:{port}\"\ndatabase_url = \"{db}\"\nreservation_ttl_seconds = 10\n\
             [nostr]\nrelays = [\"{relay_url}\"]\nsecret_key_file = \"{}\"\nmachine = \"{machine}\"\n\
             tokens_per_sol = {TOKENS_PER_SOL}\ncontroller_pubkeys = [\"{controller}\"]\n\
             [chain]\nrpc_url = \"{rpc_url}\"\nnamespace_id = 0\n\
             [auth]\naudience = \"https://faults.test\"\ntoken_secret_file = \"{}\"\n\
             [limits]\nrequest_timeout_seconds = 10\nrpm = 100000\ntpm = 100000000\n{}{}",
            key.display(),
            secret.display(),
            model("echo", "echo"),
            model("slow", "echo+slow"),
        )
    }
}

/// Gives `to` 20 SOL from the validator's faucet.
async fn airdrop(rpc_url: &str, to: &Pubkey) {
    let rpc = RpcClient::new_with_commitment(rpc_url.to_owned(), CommitmentConfig::confirmed());
    let signature = rpc.request_airdrop(to, 20 * SOL).await.unwrap();
    rpc.poll_for_signature_with_commitment(&signature, CommitmentConfig::confirmed())
        .await
        .unwrap();
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

/// Each wallet redeems its next nonce, one after another; a request with no answer in 30 s is
/// published again for the same nonce (what a wallet app does), which is safe.
async fn spawn_top_ups(
    stack: &Stack,
    wallets: &[(Arc<Keypair>, String)],
    cluster: [u8; 32],
    observed: &Arc<Observed>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let publisher = Client::new(Keys::generate());
    publisher.add_relay(stack.relay_url.as_str()).await.unwrap();
    publisher.connect().await;
    wallets
        .iter()
        .map(|(wallet, _)| {
            let (wallet, publisher, observed) =
                (wallet.clone(), publisher.clone(), observed.clone());
            let (program, machine) = (ProgramClient::new(&stack.rpc_url), stack.machine);
            tokio::spawn(async move {
                for nonce in 0..TOP_UPS_PER_USER {
                    while !redeem(&publisher, &program, &wallet, cluster, machine, nonce).await {
                        observed.republished.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect()
}

/// Publishes an authorisation for `nonce` and waits (30 s at most) for it to be used on chain.
async fn redeem(
    publisher: &Client,
    program: &ProgramClient,
    wallet: &Keypair,
    cluster: [u8; 32],
    machine: PublicKey,
    nonce: u64,
) -> bool {
    let terms = AuthorizationTerms {
        program_id: balance_payment::ID,
        cluster,
        namespace_id: 0,
        user: wallet.pubkey(),
        nonce,
        max_amount: TOP_UP,
        asset: Asset::Lamports,
        deadline: now() + 600,
        extra_data: [0; 32],
    };
    let payload = authorization_payload(wallet, &terms).unwrap();
    let event = request_event(&payload, indexer::wire::DEFAULT_SESSION, &machine).unwrap();
    let _ = publisher.send_event(&event).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(account) = program.user_account(&wallet.pubkey()).await {
            if account.nonce > nonce {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Every wallet calls `base` in a loop while `on`, counting what it was served.
fn spawn_callers(
    base: &str,
    wallets: &[(Arc<Keypair>, String)],
    observed: &Arc<Observed>,
    on: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    wallets
        .iter()
        .map(|(wallet, token)| {
            let (user, token, base) = (wallet.pubkey().to_string(), token.clone(), base.to_owned());
            let (observed, on, http) = (observed.clone(), on.clone(), reqwest::Client::new());
            tokio::spawn(async move {
                let mut i = 0u64;
                while on.load(Ordering::Relaxed) {
                    i += 1;
                    let text = format!("call {i} {}", "word ".repeat((i % 7) as usize));
                    let response = http
                        .post(format!("{base}/v1/chat/completions"))
                        .bearer_auth(&token)
                        .json(&json!({"model": "echo", "max_tokens": 16,
                            "messages": [{"role": "user", "content": text}]}))
                        .send()
                        .await
                        .unwrap();
                    match response.status().as_u16() {
                        200 => {
                            let body: Value = response.json().await.unwrap();
                            let usage = &body["usage"];
                            let tokens = usage["prompt_tokens"].as_i64().unwrap()
                                + usage["completion_tokens"].as_i64().unwrap();
                            *observed
                                .served
                                .lock()
                                .unwrap()
                                .entry(user.clone())
                                .or_default() += tokens;
                            observed.calls.fetch_add(1, Ordering::Relaxed);
                        }
                        402 => {
                            observed.refused_for_funds.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        status => panic!(
                            "call {i}: {status}: {}",
                            response.text().await.unwrap_or_default()
                        ),
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect()
}

/// Kills the indexer as soon as a `pay` shows on chain (`processed`), until once it died
/// between the `pay` and its announcement: a request still `paying` whose nonce is used on
/// chain. Returns (times caught, attempts).
async fn kill_between_pay_and_announcement(
    stack: &mut Stack,
    ledger: &Ledger,
    program: &ProgramClient,
) -> (u32, u32) {
    let pubsub = PubsubClient::new(&stack.ws_url).await.unwrap();
    let (mut pays, unsubscribe) = pubsub
        .logs_subscribe(
            RpcTransactionLogsFilter::Mentions(vec![balance_payment::ID.to_string()]),
            RpcTransactionLogsConfig {
                commitment: Some(CommitmentConfig::processed()),
            },
        )
        .await
        .unwrap();
    let (mut caught, mut attempts) = (0, 0);
    while caught == 0 {
        attempts += 1;
        assert!(
            attempts <= 10,
            "never caught the indexer between pay and its announcement"
        );
        let _ = pays.next().await.unwrap();
        stack.indexer.kill().await;
        for record in ledger.unfinished_requests().await.unwrap() {
            assert_eq!(record.state, RequestState::Paying);
            let user: Pubkey = record.user.parse().unwrap();
            let landed = Instant::now() + Duration::from_secs(3);
            while Instant::now() < landed {
                if program.user_account(&user).await.unwrap().nonce > record.nonce {
                    caught += 1;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        stack.indexer.spawn();
        stack
            .indexer
            .healthy(&stack.http, &stack.indexer_health)
            .await;
    }
    unsubscribe().await;
    (caught, attempts)
}

/// Starts a slow stream on replica A and kills A after two chunks; A is started again. Returns
/// the reservation the stream left (served, so the sweep must charge it).
async fn kill_mid_stream(
    stack: &mut Stack,
    ledger: &Ledger,
    (wallet, token): &(Arc<Keypair>, String),
) -> Reservation {
    let user = wallet.pubkey().to_string();
    let funded = Instant::now() + Duration::from_secs(60);
    while ledger.balance(&user).await.unwrap().available < 1_000 {
        assert!(Instant::now() < funded, "the wallet is never credited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (replica, base) = &mut stack.gateways[0];
    let response = stack
        .http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(token)
        .json(&json!({"model": "slow", "stream": true, "max_tokens": 64,
            "messages": [{"role": "user", "content": "a long answer ".repeat(40)}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut body = response.bytes_stream();
    body.next().await.unwrap().unwrap();
    body.next().await.unwrap().unwrap();
    replica.kill().await;
    drop(body);
    let reservation = ledger
        .reservation(&request_id)
        .await
        .unwrap()
        .expect("the killed stream's reservation is left behind");
    assert!(reservation.served_at.is_some());
    replica.spawn();
    replica
        .healthy(&stack.http, &format!("{base}/health"))
        .await;
    reservation
}

/// Waits until every payment on chain is credited, the killed stream is charged, nothing is
/// reserved and the outbox is empty; returns each user's `Paid` (count, lamports).
async fn settled(
    stack: &Stack,
    ledger: &Ledger,
    users: &[String],
    killed: &Reservation,
) -> HashMap<String, (u64, u64)> {
    let chain = RpcChain::new(
        &stack.rpc_url,
        None,
        balance_payment::ID,
        CommitmentConfig::finalized(),
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut paid: HashMap<String, (u64, u64)> = HashMap::new();
        for event in chain.events_after(None).await.unwrap().events {
            if let ProgramEvent::Paid(p) = &event.event {
                let entry = paid.entry(p.user.to_string()).or_default();
                entry.0 += 1;
                entry.1 += p.amount;
            }
        }
        let mut done = ledger.reservation(&killed.id).await.unwrap().is_none()
            && ledger.outbox_backlog().await.unwrap() == 0;
        for user in users {
            let (count, lamports) = paid.get(user).copied().unwrap_or_default();
            let balance = ledger.balance(user).await.unwrap();
            done &= count == TOP_UPS_PER_USER
                && balance.credited == credit_for(lamports)
                && balance.reserved == 0;
        }
        if done {
            return paid;
        }
        assert!(Instant::now() < deadline, "the ledger never settled");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What `lamports` paid are worth in tokens.
fn credit_for(lamports: u64) -> i64 {
    (lamports as i64) * TOKENS_PER_SOL as i64 / SOL as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_money_is_lost_or_doubled_when_processes_die() {
    let started = Instant::now();
    let Ok(db) = TempDatabase::postgres().await else {
        return localnet::prerequisite::missing(
            "Postgres on 127.0.0.1:5432 (or at TEST_POSTGRES_URL)",
            "`cargo xtask test` starts a private one",
        );
    };
    let mut stack = Stack::start(&db).await;
    let setup = started.elapsed();
    let base_b = stack.gateways[1].1.clone();

    // Wallets: registered, 2 SOL in each vault, logged in at the gateway.
    let program = ProgramClient::new(&stack.rpc_url);
    let ledger = Ledger::connect(&db.url).await.unwrap();
    let mut wallets = vec![];
    for _ in 0..USERS {
        let wallet = Keypair::new();
        airdrop(&stack.rpc_url, &wallet.pubkey()).await;
        program
            .send(&[ix::register(wallet.pubkey())], &[&wallet])
            .await
            .unwrap();
        let deposit = ix::deposit(wallet.pubkey(), wallet.pubkey(), 2 * SOL);
        program.send(&[deposit], &[&wallet]).await.unwrap();
        let token = proxy::wallet::login::login(&stack.http, &base_b, &wallet, None)
            .await
            .unwrap();
        wallets.push((Arc::new(wallet), token));
    }
    let users: Vec<String> = wallets
        .iter()
        .map(|(w, _)| w.pubkey().to_string())
        .collect();
    let cluster = program.global().await.unwrap().unwrap().cluster;
    let observed = Arc::new(Observed::default());
    let calling = Arc::new(AtomicBool::new(true));
    let top_ups = spawn_top_ups(&stack, &wallets, cluster, &observed).await;
    let callers = spawn_callers(&base_b, &wallets, &observed, &calling);

    // 1. The indexer killed between a `pay` and its announcement.
    let (caught, attempts) = kill_between_pay_and_announcement(&mut stack, &ledger, &program).await;
    // 2. Replica A killed mid-stream: its reservation is charged by B's expiry sweep.
    let killed = kill_mid_stream(&mut stack, &ledger, &wallets[0]).await;
    // 3. The relay killed once, and started again on its store.
    stack.relay.kill().await;
    tokio::time::sleep(Duration::from_millis(300)).await; // traffic meanwhile finds it gone
    stack.relay.spawn();
    stack.relay.ready().await;
    // 4. The indexer killed at 20 random moments.
    let mut downtime = Duration::ZERO;
    for _ in 0..RANDOM_KILLS {
        let wait = rand::thread_rng().gen_range(50..800);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let down = Instant::now();
        stack.restart_indexer().await;
        downtime += down.elapsed();
    }

    for top_up in top_ups {
        tokio::time::timeout(Duration::from_secs(240), top_up)
            .await
            .expect("every wallet's top-ups are redeemed")
            .unwrap();
    }
    calling.store(false, Ordering::Relaxed);
    for caller in callers {
        caller.await.unwrap();
    }
    let paid = settled(&stack, &ledger, &users, &killed).await;

    for (wallet, _) in &wallets {
        let user = wallet.pubkey().to_string();
        // No double payment: one `Paid` of exactly the signed amount per authorisation.
        let account = program.user_account(&wallet.pubkey()).await.unwrap();
        assert_eq!(
            account.nonce, TOP_UPS_PER_USER,
            "{user}: one nonce per top-up"
        );
        let (count, lamports) = paid[&user];
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
            .lamports(&pda::vault(&wallet.pubkey()))
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
            credit_for(lamports),
            "{user}: credit = payments"
        );
        let mut served = observed
            .served
            .lock()
            .unwrap()
            .get(&user)
            .copied()
            .unwrap_or_default();
        if user == killed.user {
            served += killed.amount;
        }
        assert_eq!(balance.debited, served, "{user}: debits = what was served");
        assert_eq!(balance.reserved, 0);
    }
    let audit = ledger.audit().await.unwrap();
    assert!(audit.is_clean(), "{audit:?}");
    let indexer = sibling_binary("indexer");
    let report = run_ok(&indexer, &["audit", "--database-url", &db.url], &stack.dir).await;
    assert!(report.contains("credits_without_payment"), "{report}");

    println!(
        "fault run: setup {:.1} s, total {:.1} s; indexer killed {} times ({caught} between pay \
         and announcement, after {attempts} tries; mean restart-to-healthy {:.0} ms), a replica \
         killed mid-stream (charged {} tokens by the sweep), the relay killed once; {} top-ups \
         ({} republished), {} calls served, {} refused for funds",
        setup.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        stack.indexer.starts - 1,
        downtime.as_millis() as f64 / RANDOM_KILLS as f64,
        killed.amount,
        USERS as u64 * TOP_UPS_PER_USER,
        observed.republished.load(Ordering::Relaxed),
        observed.calls.load(Ordering::Relaxed),
        observed.refused_for_funds.load(Ordering::Relaxed),
    );
    stack.stop().await;
    ledger.close().await;
    db.remove().await;
}
