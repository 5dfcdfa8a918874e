//! The whole stack on one machine with nothing configured: the indexer's sandbox (a local
//! Solana validator running the program, a relay kept on disk, SQLite ledger, controller,
//! watchers), a local echo model standing in for an LLM, and the gateway in front. A demo
//! wallet is funded through the real path (deposit, signed authorisation, `pay`, credit event),
//! and a delegated key for it is printed, ready for curl or the `openai` package.
use indexer::sandbox::{cli::StackArgs, Sandbox, SOL, USDC};
use ledger::now;
use localnet::MockUpstream;
use nostr_sdk::prelude::{Client, Keys};
use proxy::{
    auth::delegated::{self, Claims},
    cli::random_secret,
    config::{Config, ModelConfig, UpstreamConfig, X402Config},
    server::{Gateway, Parts},
    state::NostrIdentity,
};
use solana_sdk::signature::{write_keypair_file, Keypair, Signer};
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

/// `cargo run -p sandbox` options.
#[derive(Debug, Clone, clap::Args)]
pub struct SandboxArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    #[command(flatten)]
    pub stack: StackArgs,
    /// Where the demo wallet's keypair is written.
    #[arg(long, default_value = "sandbox-wallet.json")]
    pub wallet_file: PathBuf,
    /// Where the keypair of the fee payer that co-signs x402 payments is written.
    #[arg(long, default_value = "sandbox-x402-fee-payer.json")]
    pub x402_fee_payer_file: PathBuf,
    /// Also offer a real OpenAI-compatible upstream (e.g. http://127.0.0.1:11434/v1).
    #[arg(long, env = "GATEWAY_UPSTREAM_URL")]
    pub upstream_url: Option<String>,
    /// The upstream's model name, offered under the same name.
    #[arg(long, env = "GATEWAY_UPSTREAM_MODEL", default_value = "llama3.2")]
    pub upstream_model: String,
    /// Environment variable holding the upstream's API key.
    #[arg(long, default_value = "GATEWAY_UPSTREAM_KEY")]
    pub upstream_key_env: String,
}

impl SandboxArgs {
    /// The real upstream, when one is named.
    fn upstream(&self) -> Option<UpstreamConfig> {
        self.upstream_url.clone().map(|base_url| UpstreamConfig {
            base_url,
            model: Some(self.upstream_model.clone()),
            api_key_env: std::env::var(&self.upstream_key_env)
                .is_ok()
                .then(|| self.upstream_key_env.clone()),
            api_key_file: None,
            bound_field: Default::default(),
            reports_usage: true,
        })
    }
}

/// Points `config` at `stack` (its relay, Nostr address, controller key, RPC, namespace and
/// token rates), so the gateway's `/.well-known/llm-gateway` tells clients the truth.
pub fn describe(config: &mut Config, stack: &Sandbox) {
    config.nostr.relays = vec![stack.relay.url().to_owned()];
    config.nostr.machine = stack.machine.to_hex();
    config.nostr.session = stack.session.clone();
    config.nostr.controller_pubkeys = vec![stack.controller_keys.public_key().to_hex()];
    config.nostr.tokens_per_sol = stack.tokens_per_sol;
    config.nostr.max_topup_lamports = Some(indexer::sandbox::MAX_LAMPORTS_PER_REQUEST);
    config.chain.rpc_url = Some(stack.validator.rpc_url().to_owned());
    config.chain.ws_url = Some(stack.validator.ws_url().to_owned());
    config.chain.namespace_id = stack.namespace_id;
    config.tokens = stack.token_assets();
}

/// The gateway in front of `stack` on `listener`: `config` as [`describe`] completes it, on the
/// stack's ledger, signing debits with `proxy_keys` (one of the stack's trusted proxy keys)
/// through a relay connection of its own, which is returned to be shut down after it.
pub async fn front(
    stack: &Sandbox,
    listener: tokio::net::TcpListener,
    mut config: Config,
    proxy_keys: Keys,
    token_secret: Vec<u8>,
) -> anyhow::Result<(Gateway, Client)> {
    describe(&mut config, stack);
    let relay = Client::new(proxy_keys.clone());
    relay.add_relay(stack.relay.url()).await?;
    relay.connect().await;
    let gateway = Gateway::start(
        listener,
        Parts {
            config,
            ledger: stack.ledger.clone(),
            nostr: NostrIdentity {
                keys: proxy_keys,
                session: stack.session.clone(),
                machine: stack.machine,
            },
            token_secret,
            relay: Some(relay.clone()),
        },
    )
    .await?;
    Ok((gateway, relay))
}

/// The CAIP-2 id the sandbox's gateway makes x402 offers on: devnet's. The official x402
/// clients know only the three public clusters by id; pointed at the local validator's RPC,
/// they pay there all the same.
pub const X402_NETWORK: &str = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1";

/// x402 on a gateway in front of `stack`: offers in the USDC stand-in, paid to the treasury,
/// co-signed by a fee payer made and funded now, whose keypair is written to `fee_payer_file`;
/// and the escrow scheme, with the namespace's bot key written beside it (`sandbox-escrow-bot.json`).
pub async fn x402(stack: &Sandbox, fee_payer_file: &Path) -> anyhow::Result<X402Config> {
    let fee_payer = Keypair::new();
    stack.airdrop(&fee_payer.pubkey(), SOL).await?;
    write_keypair_file(&fee_payer, fee_payer_file)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", fee_payer_file.display()))?;
    // The namespace's bot, beside it: the gateway also offers the escrow scheme.
    let bot_file = fee_payer_file.with_file_name("sandbox-escrow-bot.json");
    write_keypair_file(&stack.bot, &bot_file)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", bot_file.display()))?;
    Ok(X402Config {
        asset: Some(stack.usdc.to_string()),
        fee_payer_keypair_file: Some(fee_payer_file.to_owned()),
        network: Some(X402_NETWORK.into()),
        escrow_bot_keypair_file: Some(bot_file),
        ..X402Config::default()
    })
}

/// Lamports the demo wallet redeems: 0.1 SOL.
const DEMO_TOP_UP: u64 = SOL / 10;

/// USDC (the stand-in) the demo wallet holds: 100.
const DEMO_USDC: u64 = 100 * USDC;

/// Starts everything, prints how to use it, and runs until Ctrl-C or SIGTERM.
pub async fn run(options: SandboxArgs) -> anyhow::Result<()> {
    let mut signals = common::shutdown::StopSignals::install()?;
    let proxy_keys = Keys::generate();
    let mut stack = Sandbox::start(options.stack.config(vec![proxy_keys.clone()])).await?;
    let mock = MockUpstream::start(0).await?;
    let mut models = vec![ModelConfig {
        id: "echo".into(),
        prompt_price: 1_000_000,
        completion_price: 2_000_000,
        max_output_tokens: 512,
        upstreams: vec![UpstreamConfig {
            base_url: mock.base_url(),
            model: Some("echo".into()),
            api_key_env: None,
            api_key_file: None,
            bound_field: Default::default(),
            reports_usage: true,
        }],
    }];
    let upstream = options.upstream();
    if let Some(upstream) = upstream.clone() {
        models.push(ModelConfig {
            id: options.upstream_model.clone(),
            prompt_price: 1_000_000,
            completion_price: 2_000_000,
            max_output_tokens: 4_096,
            upstreams: vec![upstream],
        });
    }
    let mut config = Config {
        listen: options.listen.clone(),
        database_url: options.stack.database_url.clone(),
        models,
        ..Config::default()
    };
    config.nostr.publish = false; // the indexer's publisher drains the shared outbox
    config.x402 = x402(&stack, &options.x402_fee_payer_file).await?;
    config.auth.audience = Some(format!("http://{}", options.listen));
    let config_audience = config.audience().to_owned();
    let listener = tokio::net::TcpListener::bind(&config.listen).await?;
    let (gateway, relay) = front(&stack, listener, config, proxy_keys, random_secret()).await?;

    let wallet = stack.user(SOL).await?;
    write_keypair_file(&wallet, &options.wallet_file)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", options.wallet_file.display()))?;
    stack.fund_usdc(&wallet.pubkey(), DEMO_USDC).await?;
    let request = stack.authorization_request(&wallet, 0, DEMO_TOP_UP)?;
    stack.publish(&request).await?;
    let user = wallet.pubkey().to_string();
    let mut credited = 0;
    for _ in 0..100 {
        credited = stack.ledger.balance(&user).await?.available;
        if credited > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let key = delegated::sign(
        &Claims {
            user: user.clone(),
            audience: config_audience.clone(),
            id: "sandbox-demo".into(),
            models: None,
            max_tokens: None,
            budget: 50_000,
            expires_at: now() + 24 * 3600,
            single_use: false,
            callback_url: None,
            rpm: None,
            tpm: None,
        },
        &ed25519_dalek::SigningKey::from_bytes(wallet.secret_bytes()),
    )?;

    let base = format!("http://{}", gateway.addr);
    println!("Local stack running: Solana validator, relay, SQLite ledger, indexer, gateway.");
    println!("  wallet page:  {base}/   (connect a browser wallet: deposit, top up, keys, usage)");
    println!("  gateway:      {base}/v1   (OpenAI-compatible)");
    println!("  model:        echo  (a local echo model for trying the gateway, not an LLM)");
    if upstream.is_some() {
        println!(
            "  model:        {}  (your upstream)",
            options.upstream_model
        );
    }
    println!(
        "  solana rpc:   {}   (websocket {})",
        stack.validator.rpc_url(),
        stack.validator.ws_url()
    );
    println!("  program:      {}", balance_payment::ID);
    println!(
        "  relay:        {}   (events kept in {})",
        stack.relay.url(),
        options.stack.relay_dir.display()
    );
    println!("  ledger:       {}", options.stack.database_url);
    println!(
        "  namespace:    {}   machine (p) {}   session (s) {}",
        stack.namespace_id,
        stack.machine.to_hex(),
        stack.session
    );
    println!(
        "  demo wallet:  {user}  ({})",
        options.wallet_file.display()
    );
    println!("                paid {DEMO_TOP_UP} lamports on chain; credited {credited} tokens");
    println!(
        "  usdc mint:    {}  (a USDC stand-in the namespace accepts, {} ledger tokens per \
         USDC; the demo wallet holds {})",
        stack.usdc,
        stack.tokens_per_usdc,
        DEMO_USDC / USDC
    );
    println!();
    println!("A delegated key for the demo wallet (budget 50000 tokens, 24 h):");
    println!("  export GATEWAY_KEY={key}");
    println!();
    println!("Try:");
    println!("  curl -s {base}/v1/chat/completions -H \"Authorization: Bearer $GATEWAY_KEY\" \\");
    println!("    -H 'Content-Type: application/json' -d '{{\"model\":\"echo\",\"messages\":[{{\"role\":\"user\",\"content\":\"hello\"}}]}}'");
    println!("  curl -s {base}/v1/balance -H \"Authorization: Bearer $GATEWAY_KEY\"");
    println!(
        "  cargo run -p proxy -- balance --keypair {} --gateway {base}",
        options.wallet_file.display()
    );
    println!(
        "  cargo run -p proxy -- topup 0.05 --keypair {} --gateway {base}",
        options.wallet_file.display()
    );
    println!(
        "  cargo run -p proxy -- deposit 10 --mint {} --keypair {} --gateway {base}",
        stack.usdc,
        options.wallet_file.display()
    );
    println!(
        "  cargo run -p proxy -- topup 2.5 --mint {} --keypair {} --gateway {base}",
        stack.usdc,
        options.wallet_file.display()
    );
    println!();
    println!(
        "An agent pays per request with x402 (USDC stand-in, network {X402_NETWORK} = this \
         validator; the demo wallet pays, with @x402/fetch + @x402/svm from tests/x402):"
    );
    println!(
        "  (cd tests/x402 && npm ci && GATEWAY_URL={base} RPC_URL={} NETWORK={X402_NETWORK} \
         ASSET={} PAYER_KEYPAIR={} node pay.mjs)",
        stack.validator.rpc_url(),
        stack.usdc,
        std::path::absolute(&options.wallet_file)
            .unwrap_or_else(|_| options.wallet_file.clone())
            .display()
    );
    println!(
        "Or, with USDC in the vault (the deposit above), per request on a lock that settles only \
         the cost (x402 escrow):"
    );
    println!(
        "  cargo run -p proxy -- ask \"hello\" --keypair {} --gateway {base}",
        options.wallet_file.display()
    );
    println!();
    println!(
        "Check the books from the chain and the relay alone (anyone can; exit 0 = reconciled):"
    );
    println!("  cargo run -p indexer -- verify --gateway {base}");
    println!("Ctrl-C stops everything (in-flight requests are settled first).");

    signals.recv().await?;
    gateway.shutdown().await;
    relay.shutdown().await;
    stack.stop().await;
    drop(mock);
    Ok(())
}
