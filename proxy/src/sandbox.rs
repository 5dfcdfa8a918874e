//! The whole stack on one machine with nothing configured: the indexer's sandbox (in-process
//! chain running the program, embedded relay, SQLite ledger, controller, watchers), a local
//! echo model standing in for an LLM, and the gateway in front. A demo wallet is funded through
//! the real path (deposit, signed authorisation, `pay`, credit event), and a delegated key for
//! it is printed, ready for curl or the `openai` package.
use crate::{
    auth::delegated::{self, Claims},
    config::{Config, ModelConfig, UpstreamConfig},
    mock_upstream::MockUpstream,
    server::{Gateway, Parts},
    state::NostrIdentity,
};
use indexer::{
    ledger::now,
    sandbox::{Sandbox, SandboxConfig, SOL},
};
use nostr_sdk::prelude::{Client, Keys};
use solana_sdk::signature::{write_keypair_file, Signer};
use std::{path::PathBuf, time::Duration};

/// `proxy sandbox` options.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    pub listen: String,
    pub relay_port: u16,
    pub database_url: String,
    /// Where the demo wallet's keypair is written.
    pub wallet_file: PathBuf,
    /// A real OpenAI-compatible upstream to offer besides the echo model.
    pub upstream: Option<UpstreamConfig>,
    pub upstream_model: String,
}

/// Lamports the demo wallet redeems: 0.1 SOL.
const DEMO_TOP_UP: u64 = SOL / 10;

pub async fn run(options: SandboxOptions) -> anyhow::Result<()> {
    let proxy_keys = Keys::generate();
    let mut stack = Sandbox::start(SandboxConfig {
        database_url: options.database_url.clone(),
        relay_port: options.relay_port,
        tokens_per_sol: 1_000_000,
        proxy_keys: vec![proxy_keys.clone()],
    })
    .await?;
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
        }],
    }];
    if let Some(upstream) = options.upstream.clone() {
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
        database_url: options.database_url.clone(),
        models,
        ..Config::default()
    };
    config.nostr.relays = vec![stack.relay.url().to_owned()];
    config.nostr.machine = stack.machine.to_hex();
    config.nostr.publish = false; // the indexer's publisher drains the shared outbox
    config.auth.audience = Some(format!("http://{}", options.listen));

    let relay = Client::new(proxy_keys.clone());
    relay.add_relay(stack.relay.url()).await?;
    relay.connect().await;
    let config_audience = config.audience().to_owned();
    let listener = tokio::net::TcpListener::bind(&config.listen).await?;
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
            token_secret: random_secret(),
            relay: Some(relay.clone()),
        },
    )
    .await?;

    let wallet = stack.user(SOL).await?;
    write_keypair_file(&wallet, &options.wallet_file)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", options.wallet_file.display()))?;
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
    println!(
        "Local stack running: in-process chain, embedded relay, SQLite ledger, indexer, gateway."
    );
    println!("  gateway:      {base}/v1   (OpenAI-compatible)");
    println!("  model:        echo  (a local echo model for trying the gateway, not an LLM)");
    if options.upstream.is_some() {
        println!(
            "  model:        {}  (your upstream)",
            options.upstream_model
        );
    }
    println!("  relay:        {}", stack.relay.url());
    println!("  ledger:       {}", options.database_url);
    println!(
        "  demo wallet:  {user}  ({})",
        options.wallet_file.display()
    );
    println!("                paid {DEMO_TOP_UP} lamports on chain; credited {credited} tokens");
    println!();
    println!("A delegated key for the demo wallet (budget 50000 tokens, 24 h):");
    println!("  export GATEWAY_KEY={key}");
    println!();
    println!("Try:");
    println!("  curl -s {base}/v1/chat/completions -H \"Authorization: Bearer $GATEWAY_KEY\" \\");
    println!("    -H 'Content-Type: application/json' -d '{{\"model\":\"echo\",\"messages\":[{{\"role\":\"user\",\"content\":\"hello\"}}]}}'");
    println!("  curl -s {base}/v1/balance -H \"Authorization: Bearer $GATEWAY_KEY\"");
    println!(
        "  cargo run -p proxy -- login --wallet {} --url {base}",
        options.wallet_file.display()
    );
    println!("Ctrl-C stops everything (in-flight requests are settled first).");

    indexer::shutdown::signal().await?;
    gateway.shutdown().await;
    relay.shutdown().await;
    stack.stop().await;
    drop(mock);
    Ok(())
}

/// 32 random bytes: a token secret for a process whose tokens need not outlive it.
pub fn random_secret() -> Vec<u8> {
    use rand::RngCore;
    let mut secret = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    secret
}
