//! The `indexer` command: the service (`run`, `sandbox`), the operator's program commands
//! (`initialize`, `namespace`, [`operator`]), `doctor` ([`doctor`]), `keygen`, `audit` and
//! `status`.
mod doctor;
mod onchain;
pub mod operator;
mod tokens;
use crate::{
    chain::{cluster::cluster_tag, rpc::RpcChain, watcher::PaymentRule, Chain},
    config::Config,
    controller::{Controller, ControllerConfig},
    ledger::Ledger,
    nostr::watcher::Trust,
    services::{Components, Services},
};
use anyhow::Context;
use clap::{Parser, Subcommand};
use nostr_sdk::prelude::{Client, Keys, PublicKey, ToBech32};
use solana_sdk::signature::{read_keypair_file, write_keypair_file, Keypair, Signer};
use std::{path::PathBuf, sync::Arc, time::Duration};

#[derive(Parser)]
#[command(
    name = "indexer",
    about = "Keeps gateway balances provable from chain events and signed Nostr events"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the watchers (and the controller, if configured) until Ctrl-C or SIGTERM; exits
    /// non-zero when a service cannot recover.
    Run {
        /// TOML config file; `INDEXER_…` environment variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run the indexer side of the local stack on embedded defaults: a local validator
    /// running the program, a relay kept on disk, a SQLite ledger, the controller and the
    /// watchers.
    #[cfg(feature = "sandbox")]
    Sandbox(crate::sandbox::cli::StackArgs),
    /// Bind the deployed program to this cluster (its genesis hash), once per deployment.
    Initialize(#[command(flatten)] crate::solana_cli::SolanaArgs),
    /// Create, change or show namespaces (one per operator).
    #[command(subcommand)]
    Namespace(operator::NamespaceCommand),
    /// Check that a config can run: RPC, program, cluster tag, namespace, bot, treasury, keys,
    /// relays and ledger; exit non-zero with what to fix.
    Doctor {
        /// The indexer's TOML config file; `INDEXER_…` environment variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Create the ledger if needed and bring its schema up to date (`run` does it too).
    Migrate {
        #[arg(
            long,
            env = "INDEXER_DATABASE_URL",
            default_value = "sqlite:indexer.sqlite"
        )]
        database_url: String,
    },
    /// Print the reconciliation report; exit non-zero if anything does not reconcile.
    Audit {
        #[arg(
            long,
            env = "INDEXER_DATABASE_URL",
            default_value = "sqlite:indexer.sqlite"
        )]
        database_url: String,
    },
    /// Check a gateway's books from public data alone (chain and relays; no database, no
    /// secret): every wallet's balance rebuilt, every discrepancy named; with a wallet's login
    /// token, its balance and statement compared row by row. Exit 0 only when all reconciles.
    Verify(crate::verify::VerifyArgs),
    /// Print cursors, outbox backlog and request counts.
    Status {
        #[arg(
            long,
            env = "INDEXER_DATABASE_URL",
            default_value = "sqlite:indexer.sqlite"
        )]
        database_url: String,
    },
    /// Write a new key: a Nostr secret key (hex), or with `--solana` a Solana keypair file.
    Keygen {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        solana: bool,
    },
}

/// Runs the parsed command; the exit code is the return value.
pub async fn main(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Run { config } => run(Config::load(config.as_deref())?).await.map(|_| 0),
        #[cfg(feature = "sandbox")]
        Command::Sandbox(args) => crate::sandbox::cli::run(args).await.map(|_| 0),
        Command::Initialize(solana) => operator::initialize(solana).await.map(|_| 0),
        Command::Namespace(command) => operator::namespace(command).await.map(|_| 0),
        Command::Doctor { config } => {
            let healthy = doctor::run(&Config::load(config.as_deref())?).await;
            Ok(if healthy { 0 } else { 1 })
        }
        Command::Migrate { database_url } => {
            Ledger::connect(&database_url).await?.close().await;
            println!("{database_url} is migrated");
            Ok(0)
        }
        Command::Audit { database_url } => {
            let report = Ledger::connect(&database_url).await?.audit().await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(if report.is_clean() { 0 } else { 1 })
        }
        Command::Verify(args) => crate::verify::run(args).await,
        Command::Status { database_url } => {
            let ledger = Ledger::connect(&database_url).await?;
            let status = serde_json::json!({
                "chain_cursor": ledger.cursor(crate::chain::watcher::CURSOR).await?,
                "nostr_cursor": ledger.cursor(crate::nostr::watcher::CURSOR).await?,
                "outbox_backlog": ledger.outbox_backlog().await?,
                "unfinished_requests": ledger.unfinished_requests().await?.len(),
            });
            println!("{}", serde_json::to_string_pretty(&status)?);
            Ok(0)
        }
        Command::Keygen { out, solana } => {
            if out.exists() {
                anyhow::bail!("{} exists; not overwriting a key", out.display());
            }
            if solana {
                let keypair = Keypair::new();
                write_keypair_file(&keypair, &out).map_err(|e| anyhow::anyhow!("{e}"))?;
                println!("{}", keypair.pubkey());
            } else {
                let keys = Keys::generate();
                std::fs::write(&out, keys.secret_key().to_secret_hex())?;
                println!(
                    "{} ({})",
                    keys.public_key().to_hex(),
                    keys.public_key().to_bech32()?
                );
            }
            restrict_permissions(&out)?;
            Ok(0)
        }
    }
}

fn restrict_permissions(path: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

fn pubkeys(keys: &[String]) -> anyhow::Result<Vec<PublicKey>> {
    keys.iter()
        .map(|k| PublicKey::parse(k).with_context(|| format!("bad Nostr key {k}")))
        .collect()
}

async fn run(config: Config) -> anyhow::Result<()> {
    let mut signals = crate::shutdown::StopSignals::install()?;
    tokens::verify_tokens(&config).await?;
    let ledger = Ledger::connect(&config.database_url).await?;
    let health_listener = match &config.health_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("health_listen {addr}"))?,
        ),
        None => None,
    };
    let program_id = config.chain.program_id.parse()?;
    let chain: Arc<dyn Chain> = Arc::new(RpcChain::new(
        &config.chain.rpc_url,
        config.chain.ws_url.as_deref(),
        program_id,
        config.chain.commitment.into(),
    ));
    let relays = config.nostr.relays.clone();
    let controller_keys = match &config.controller {
        Some(section) => Some(Keys::parse(
            std::fs::read_to_string(&section.nostr_secret_key_file)?.trim(),
        )?),
        None => None,
    };
    let connect = |keys: Keys| {
        let relays = relays.clone();
        async move {
            let client = Client::new(keys);
            for relay in &relays {
                client.add_relay(relay.as_str()).await?;
            }
            client.connect().await;
            anyhow::Ok(client)
        }
    };
    let publisher = connect(controller_keys.clone().unwrap_or_else(Keys::generate)).await?;
    let listener = connect(Keys::generate()).await?;
    let machine = PublicKey::parse(&config.nostr.machine)?;
    let tokens: std::sync::Arc<[_]> = config.token_rates()?.into();
    let controller = match (&config.controller, controller_keys) {
        (Some(section), Some(nostr_keys)) => Some(Controller::new(
            ControllerConfig {
                cluster: cluster_tag(chain.as_ref())
                    .await
                    .context("reading the cluster tag from the program's Global account")?,
                bot: read_keypair_file(&section.bot_keypair).map_err(|e| {
                    anyhow::anyhow!("bot keypair {}: {e}", section.bot_keypair.display())
                })?,
                namespace_id: config.chain.namespace_id,
                treasury: section.treasury.parse()?,
                nostr_keys,
                session: config.session.clone(),
                machine,
                tokens_per_sol: config.chain.tokens_per_sol,
                max_lamports_per_request: section.max_lamports_per_request,
                tokens: tokens.clone(),
            },
            ledger.clone(),
            chain.clone(),
        )),
        _ => None,
    };
    let mut services = Services::spawn(Components {
        ledger: ledger.clone(),
        chain,
        publisher,
        listener,
        trust: Trust {
            controllers: pubkeys(&config.nostr.controller_pubkeys)?
                .into_iter()
                .collect(),
            proxies: pubkeys(&config.nostr.proxy_pubkeys)?.into_iter().collect(),
        },
        session: config.session.clone(),
        recipients: vec![machine],
        payments: PaymentRule {
            namespace_id: config.chain.namespace_id,
            tokens_per_sol: config.chain.tokens_per_sol,
            tokens,
        },
        chain_poll: Duration::from_secs(config.chain.poll_seconds.max(1)),
        credit_grace: config.credit_grace_seconds.map(Duration::from_secs),
        controller,
        settings: config.service.settings(),
        health_listener,
    });
    tracing::info!(relays = ?relays, health = ?config.health_listen, "indexer running; Ctrl-C or SIGTERM to stop");
    let outcome = tokio::select! {
        signal = signals.recv() => {
            tracing::info!(signal = signal?, "shutting down");
            Ok(())
        }
        failure = services.failed() => Err(failure),
    };
    services.shutdown().await;
    ledger.close().await;
    Ok(outcome?)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks a command's definition only when it is built: a clash between flattened
    /// options would otherwise first show as a panic when someone runs the binary.
    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
