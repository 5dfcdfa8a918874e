//! The wallet user's commands, run as the `proxy` binary against the whole local stack with
//! only the gateway's URL and a keypair file: the gateway's `/.well-known/llm-gateway` names
//! the cluster, program, namespace and relays. `register`, `deposit`, `balance`, `topup`
//! (authorisation → relay → controller's `Status` → `pay` on chain → credit at the gateway),
//! a chat paid with it, `withdraw`, and the errors that name their cause; and the token escrow
//! (`deposit --mint`, `withdraw --mint`, `topup --mint`) with the sandbox's USDC stand-in.
mod common;

use balance_payment::sdk::{pda, spl};
use indexer::sandbox::{SOL, TOKENS_PER_USDC, USDC};
use proxy::discovery::GatewayInfo;
use serde_json::Value;
use solana_sdk::{
    pubkey::Pubkey,
    signature::{write_keypair_file, Keypair, Signer},
};
use std::path::PathBuf;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
    fn fails_with(self, cause: &str) -> Self {
        assert_ne!(self.code, 0, "expected a failure: {}", self.stdout);
        assert!(
            self.stderr.contains(cause),
            "expected {cause:?} in\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

/// `proxy args…` with a home of its own (no Solana CLI config of the machine's).
async fn proxy(home: &PathBuf, args: &[&str]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_proxy"))
        .args(args)
        .env("HOME", home)
        .env_remove("SOLANA_URL")
        .env_remove("SOLANA_KEYPAIR")
        .env_remove("GATEWAY_URL")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("the proxy binary runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_registers_deposits_tops_up_spends_and_withdraws_with_only_the_gateway_url() {
    let mut fronted = common::FrontedStack::start().await;
    let base = fronted.base.clone();
    let stack = &mut fronted.stack;

    // What the gateway publishes is what a client needs, and true.
    let info = GatewayInfo::fetch(&reqwest::Client::new(), &base)
        .await
        .unwrap();
    assert_eq!(info.audience, base);
    assert_eq!(
        info.solana.rpc_url.as_deref(),
        Some(stack.validator.rpc_url())
    );
    assert_eq!(info.solana.program_id, balance_payment::ID.to_string());
    assert_eq!(info.solana.namespace_id, stack.namespace_id);
    assert_eq!(info.nostr.relays, vec![stack.relay.url().to_owned()]);
    assert_eq!(info.nostr.machine, stack.machine.to_hex());
    assert_eq!(info.nostr.session, stack.session);
    assert_eq!(
        info.nostr.controllers,
        vec![stack.controller_keys.public_key().to_hex()]
    );
    assert_eq!(info.tokens_per_sol, stack.tokens_per_sol);
    assert_eq!(
        info.max_topup_lamports,
        Some(indexer::sandbox::MAX_LAMPORTS_PER_REQUEST)
    );
    assert!(info.models.iter().any(|m| m.id == "echo"));

    let home = std::env::temp_dir().join(format!("wallet-cli-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let wallet = Keypair::new();
    let keypair = home.join("wallet.json");
    write_keypair_file(&wallet, &keypair).unwrap();
    let keypair = keypair.to_string_lossy().into_owned();
    let with = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend([
            "--gateway".into(),
            base.clone(),
            "--keypair".into(),
            keypair.clone(),
        ]);
        all
    };
    let run = |args: Vec<String>| {
        let home = home.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            proxy(&home, &args).await
        }
    };

    run(with(&["register"]))
        .await
        .fails_with("insufficient funds");
    stack.airdrop(&wallet.pubkey(), 2 * SOL).await.unwrap();
    run(with(&["deposit", "0.5"]))
        .await
        .fails_with(&format!("wallet {} is not registered", wallet.pubkey()));
    run(with(&["topup", "0.01"]))
        .await
        .fails_with("is not registered");
    let registered = run(with(&["register"])).await.ok().json();
    assert_eq!(registered["new"], true);
    assert_eq!(run(with(&["register"])).await.ok().json()["new"], false);
    run(with(&["deposit", "5"]))
        .await
        .fails_with("insufficient funds");
    run(with(&["deposit", "0.0"]))
        .await
        .fails_with("more than 0");
    let deposited = run(with(&["deposit", "0.5"])).await.ok().json();
    assert_eq!(deposited["vault_sol"], "0.5");

    run(with(&["topup", "150"]))
        .await
        .fails_with("this gateway takes at most 100 SOL per top-up");
    run(with(&["topup", "0.6"]))
        .await
        .fails_with("insufficient funds: the vault has");
    let topup = run(with(&["topup", "0.01", "--timeout", "60"])).await.ok();
    let topup = topup.json();
    assert_eq!(
        topup["tokens"], 10_000,
        "0.01 SOL at 1,000,000 tokens per SOL"
    );
    assert_eq!(topup["nonce"], 0);
    assert_eq!(topup["vault_sol"], "0.49");
    assert_eq!(topup["gateway"]["credited"], 10_000);
    assert_eq!(
        stack.next_nonce(&wallet.pubkey()).await.unwrap(),
        1,
        "the authorisation was redeemed once"
    );

    let balance = run(with(&["balance"])).await.ok().json();
    assert_eq!(balance["vault"]["held_sol"], "0.49");
    assert_eq!(balance["vault"]["locked_sol"], "0");
    assert_eq!(balance["vault"]["next_nonce"], 1);
    assert_eq!(balance["gateway"]["available"], 10_000);

    // The credit pays for a call, with a token from `proxy login`.
    let token = run(vec![
        "login".into(),
        "--wallet".into(),
        keypair.clone(),
        "--gateway".into(),
        base.clone(),
        "--audience".into(),
        base.clone(),
    ])
    .await
    .ok()
    .stdout;
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(token.trim())
        .json(&common::ask("echo", "hello from the command line"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let user = wallet.pubkey().to_string();
    common::eventually("the call is settled", || async {
        stack.ledger.balance(&user).await.unwrap().debited > 0
    })
    .await;

    // A delegated key made with `proxy delegate` spends; `proxy revoke` ends it.
    let key = run(vec![
        "delegate".into(),
        "--wallet".into(),
        keypair.clone(),
        "--audience".into(),
        base.clone(),
        "--budget".into(),
        "500".into(),
    ])
    .await
    .ok()
    .stdout;
    let key = key.trim().to_owned();
    let call = |key: String| {
        let base = base.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{base}/v1/chat/completions"))
                .bearer_auth(key)
                .json(&common::ask("echo", "with a delegated key"))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(call(key.clone()).await, 200);
    let revoked = run(vec![
        "revoke".into(),
        "--wallet".into(),
        keypair.clone(),
        "--key".into(),
        key.clone(),
        "--gateway".into(),
        base.clone(),
    ])
    .await
    .ok()
    .stdout;
    assert!(revoked.starts_with("revoked "), "{revoked}");
    assert_eq!(call(key).await, 401, "a revoked key is refused");

    run(with(&["withdraw", "1"]))
        .await
        .fails_with("insufficient funds: 0.49 SOL can be withdrawn now");
    let withdrawn = run(with(&["withdraw", "0.1"])).await.ok().json();
    assert_eq!(withdrawn["vault_sol"], "0.39");
    // Without the gateway: --url names the cluster, and the SOL still comes back.
    let rpc = stack.validator.rpc_url().to_owned();
    let all = proxy(
        &home,
        &[
            "withdraw",
            "all",
            "--gateway",
            "http://127.0.0.1:9",
            "--url",
            &rpc,
            "--keypair",
            &keypair,
        ],
    )
    .await
    .ok()
    .json();
    assert_eq!(all["vault_sol"], "0");
    proxy(
        &home,
        &[
            "balance",
            "--gateway",
            "http://127.0.0.1:9",
            "--keypair",
            &keypair,
        ],
    )
    .await
    .fails_with("cannot reach the gateway at http://127.0.0.1:9");

    // No controller answers: once the deadline passes, the command says the authorisation
    // expired (and nothing was paid).
    stack.stop_services().await;
    run(with(&["deposit", "0.1"])).await.ok();
    run(with(&[
        "topup",
        "0.01",
        "--valid-for",
        "1",
        "--timeout",
        "3",
    ]))
    .await
    .fails_with("The authorisation expired");
    assert_eq!(
        stack.next_nonce(&wallet.pubkey()).await.unwrap(),
        1,
        "nothing was paid"
    );

    fronted.stop().await;
    let _ = std::fs::remove_dir_all(&home);
}

/// A token account's amount on the stack's validator (0 when it does not exist).
async fn tokens_in(stack: &indexer::sandbox::Sandbox, account: &Pubkey) -> u64 {
    use ::common::chain::Chain;
    match stack.chain.account_data(account).await.unwrap() {
        Some(data) => spl::decode_token_amount(&data).expect("a token account"),
        None => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_escrows_usdc_with_the_mint_flag_and_takes_it_back() {
    let fronted = common::FrontedStack::start().await;
    let base = fronted.base.clone();
    let stack = &fronted.stack;
    let home = std::env::temp_dir().join(format!("wallet-cli-usdc-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let wallet = Keypair::new();
    let keypair = home.join("wallet.json");
    write_keypair_file(&wallet, &keypair).unwrap();
    let keypair = keypair.to_string_lossy().into_owned();
    let run = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend([
            "--gateway".into(),
            base.clone(),
            "--keypair".into(),
            keypair.clone(),
        ]);
        let home = home.clone();
        async move {
            let args: Vec<&str> = all.iter().map(String::as_str).collect();
            proxy(&home, &args).await
        }
    };
    stack.airdrop(&wallet.pubkey(), SOL).await.unwrap();
    run(&["register"]).await.ok();
    let usdc = stack.usdc.to_string();
    let own = spl::associated_token_address(&wallet.pubkey(), &stack.usdc, &spl::TOKEN_PROGRAM_ID);
    let vault = pda::token_vault(&wallet.pubkey(), &stack.usdc);

    run(&["deposit", "2.5", "--mint", &usdc])
        .await
        .fails_with(&format!(
            "insufficient funds: wallet {} holds 0 of the token",
            wallet.pubkey()
        ));
    run(&["deposit", "1", "--mint", &Pubkey::new_unique().to_string()])
        .await
        .fails_with("is not a mint of the SPL Token or Token-2022 program");
    stack.fund_usdc(&wallet.pubkey(), 10 * USDC).await.unwrap();
    run(&["deposit", "0.0000001", "--mint", &usdc])
        .await
        .fails_with("more than 6 decimals");

    // The first deposit opens the vault (the gateway's namespace accepts the mint).
    let deposited = run(&["deposit", "2.5", "--mint", &usdc]).await.ok().json();
    assert_eq!(deposited["deposited"], "2.5");
    assert_eq!(deposited["vault"], "2.5");
    let again = run(&["deposit", "0.25", "--mint", &usdc]).await.ok().json();
    assert_eq!(again["vault"], "2.75");
    assert_eq!(tokens_in(stack, &vault).await, 2_750_000);
    assert_eq!(tokens_in(stack, &own).await, 7_250_000);

    run(&["withdraw", "3", "--mint", &usdc])
        .await
        .fails_with("insufficient funds: 2.75 of the token");
    let withdrawn = run(&["withdraw", "0.75", "--mint", &usdc])
        .await
        .ok()
        .json();
    assert_eq!(withdrawn["vault"], "2");
    let withdrawn = run(&["withdraw", "all", "--mint", &usdc]).await.ok().json();
    assert_eq!(withdrawn["withdrawn"], "2");
    assert_eq!(withdrawn["vault"], "0");
    assert_eq!(tokens_in(stack, &vault).await, 0);
    assert_eq!(tokens_in(stack, &own).await, 10 * USDC);

    fronted.stop().await;
    let _ = std::fs::remove_dir_all(&home);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_buys_credit_with_usdc_and_the_gateway_shows_what_it_paid_in() {
    let fronted = common::FrontedStack::start().await;
    let base = fronted.base.clone();
    let stack = &fronted.stack;
    let home = std::env::temp_dir().join(format!("wallet-cli-usdc-topup-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let wallet = Keypair::new();
    let keypair = home.join("wallet.json");
    write_keypair_file(&wallet, &keypair).unwrap();
    let keypair = keypair.to_string_lossy().into_owned();
    let run = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend([
            "--gateway".into(),
            base.clone(),
            "--keypair".into(),
            keypair.clone(),
        ]);
        let home = home.clone();
        async move {
            let args: Vec<&str> = all.iter().map(String::as_str).collect();
            proxy(&home, &args).await
        }
    };
    let http = reqwest::Client::new();
    let usdc = stack.usdc.to_string();

    // The gateway says which tokens it takes and what each model costs in them.
    let info: GatewayInfo = http
        .get(format!("{base}/.well-known/llm-gateway"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info.tokens.len(), 1);
    assert_eq!(
        (info.tokens[0].mint.as_str(), info.tokens[0].symbol.as_str()),
        (usdc.as_str(), "USDC")
    );
    assert_eq!(info.tokens[0].tokens_per_unit, TOKENS_PER_USDC);
    let model: Value = http
        .get(format!("{base}/v1/models/echo"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let assets = model["prices"]["assets"].as_array().unwrap();
    assert_eq!(assets[1]["asset"], usdc.as_str());
    // 1,000,000 ledger tokens per million prompt tokens, at 10,000 per USDC: 100 USDC.
    assert_eq!(assets[1]["prompt"], 100 * USDC);

    stack.airdrop(&wallet.pubkey(), SOL).await.unwrap();
    run(&["register"]).await.ok();
    stack.fund_usdc(&wallet.pubkey(), 10 * USDC).await.unwrap();
    run(&["topup", "1", "--mint", &usdc])
        .await
        .fails_with("you have no vault of the token");
    run(&["deposit", "4", "--mint", &usdc]).await.ok();
    run(&["topup", "1", "--mint", &Pubkey::new_unique().to_string()])
        .await
        .fails_with("this gateway does not take the token");
    run(&["topup", "5", "--mint", &usdc])
        .await
        .fails_with("insufficient funds: the vault has 4 of the token");

    let paid = run(&["topup", "2.5", "--mint", &usdc]).await.ok().json();
    let worth = 5 * TOKENS_PER_USDC / 2;
    assert_eq!(paid["paid"], "2.5");
    assert_eq!(paid["vault"], "1.5");
    assert_eq!(paid["tokens"], worth);
    let balance = &paid["gateway"];
    assert_eq!(balance["credited"], worth);
    assert_eq!(
        balance["paid_in"],
        serde_json::json!([{
            "asset": usdc,
            "symbol": "USDC",
            "decimals": 6,
            "amount": 5 * USDC / 2,
            "credited": worth,
        }])
    );
    let treasury =
        spl::associated_token_address(&stack.treasury, &stack.usdc, &spl::TOKEN_PROGRAM_ID);
    assert_eq!(tokens_in(stack, &treasury).await, 5 * USDC / 2);
    let shown = run(&["balance"]).await.ok().json();
    assert_eq!(
        shown["tokens"],
        serde_json::json!([{
            "symbol": "USDC",
            "mint": usdc,
            "wallet": "6",
            "held": "1.5",
            "locked": "0",
            "free": "1.5",
        }]),
        "`proxy balance` shows the token vault beside the SOL one"
    );

    fronted.stop().await;
    let _ = std::fs::remove_dir_all(&home);
}
