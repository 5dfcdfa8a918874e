//! `indexer sandbox`: the indexer side of the local stack, printed for a person to use.
use super::{Sandbox, SandboxConfig};
use nostr_sdk::prelude::Keys;
use solana_sdk::signature::Signer;
use std::path::PathBuf;

/// `indexer sandbox` options; the whole-stack `sandbox` (crate `proxy/sandbox`) takes them too.
#[derive(Debug, Clone, clap::Args)]
pub struct StackArgs {
    #[arg(long, default_value = "sqlite:sandbox.sqlite")]
    pub database_url: String,
    /// The validator's JSON-RPC port; the websocket is the next one.
    #[arg(long, default_value_t = localnet::validator::LOCALNET_RPC_PORT)]
    pub rpc_port: u16,
    #[arg(long, default_value_t = 7447)]
    pub relay_port: u16,
    /// Where the relay keeps its events, across restarts.
    #[arg(long, default_value = "sandbox-relay")]
    pub relay_dir: PathBuf,
    #[arg(long, default_value_t = 1_000_000)]
    pub tokens_per_sol: u64,
    /// Ledger tokens one USDC (of the stand-in) buys.
    #[arg(long, default_value_t = super::TOKENS_PER_USDC)]
    pub tokens_per_usdc: u64,
}

impl StackArgs {
    /// The stack these options describe, with `proxy_keys` trusted for debits.
    pub fn config(&self, proxy_keys: Vec<Keys>) -> SandboxConfig {
        SandboxConfig {
            database_url: self.database_url.clone(),
            rpc_port: self.rpc_port,
            relay_port: self.relay_port,
            relay_dir: Some(self.relay_dir.clone()),
            tokens_per_sol: self.tokens_per_sol,
            tokens_per_usdc: self.tokens_per_usdc,
            proxy_keys,
        }
    }
}

/// Runs the stack until Ctrl-C or SIGTERM.
pub async fn run(args: StackArgs) -> anyhow::Result<()> {
    let mut signals = crate::shutdown::StopSignals::install()?;
    let mut sandbox = Sandbox::start(args.config(vec![])).await?;
    println!("Local stack running (local validator, relay on disk, SQLite):");
    println!("  solana rpc:   {}", sandbox.validator.rpc_url());
    println!("  solana ws:    {}", sandbox.validator.ws_url());
    println!(
        "  relay:        {}  (events in {})",
        sandbox.relay.url(),
        args.relay_dir.display()
    );
    println!("  ledger:       {}", args.database_url);
    println!("  program:      {}", balance_payment::ID);
    println!(
        "  namespace:    {} (bot {}, treasury {})",
        sandbox.namespace_id,
        sandbox.bot.pubkey(),
        sandbox.treasury
    );
    println!(
        "  usdc mint:    {}  (a USDC stand-in, {} decimals, accepted by the namespace; {} \
         ledger tokens per USDC)",
        sandbox.usdc,
        super::USDC_DECIMALS,
        sandbox.tokens_per_usdc
    );
    println!("  machine (p):  {}", sandbox.machine.to_hex());
    println!(
        "  controller:   {}",
        sandbox.controller_keys.public_key().to_hex()
    );
    println!("  session (s):  {}", sandbox.session);
    println!(
        "Publish kind-1573 Request events to the relay (see indexer/README.md, \"Nostr \
         messages\"); Ctrl-C to stop."
    );
    signals.recv().await?;
    sandbox.stop().await;
    Ok(())
}
