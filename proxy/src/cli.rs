//! The `proxy` command: `run` (the gateway from a config file), the wallet user's commands (`register`, `deposit`, `withdraw`, `balance`, `topup`:
//! [`crate::wallet`]), `login` (wallet login), `delegate` (sign a delegated key with a wallet)
//! and `revoke` (revoke one).
use crate::{
    auth::{
        delegated::{self, Claims},
        revoke::{RevokeRequest, RevokeResponse},
    },
    config::Config,
    server::{Gateway, Parts},
    state::NostrIdentity,
    wallet::{login::login, WalletCommand},
};
use anyhow::Context;
use clap::{Parser, Subcommand};
use ed25519_dalek::SigningKey;
use ledger::{now, Ledger};
use nostr_sdk::prelude::{Client, Keys, PublicKey};
use solana_sdk::signature::{Keypair, Signer};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "proxy",
    about = "OpenAI-compatible gateway metered by a Solana escrow"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gateway until Ctrl-C or SIGTERM (then settle in-flight requests and exit).
    Run {
        /// TOML config file; `PROXY_…` environment variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    #[command(flatten)]
    Wallet(WalletCommand),
    /// Sign a delegated key with a wallet keypair file and print it.
    Delegate {
        /// Solana keypair file (JSON array) of the paying wallet.
        #[arg(long)]
        wallet: PathBuf,
        /// The gateway the key is for: its `auth.audience` (shown by `POST /v1/auth/nonce`).
        /// Every other gateway refuses the key.
        #[arg(long)]
        audience: String,
        /// Ledger tokens the key may spend in total.
        #[arg(long)]
        budget: u64,
        /// Validity from now, in seconds.
        #[arg(long, default_value_t = 3_600)]
        expires_in: i64,
        /// Allowed model (repeat for several; none means all).
        #[arg(long = "model")]
        models: Vec<String>,
        /// Cap on completion tokens per call.
        #[arg(long)]
        max_tokens: Option<u64>,
        /// The key serves one request only.
        #[arg(long)]
        single_use: bool,
        /// URL called after each request with its usage and cost.
        #[arg(long)]
        callback_url: Option<String>,
        #[arg(long)]
        rpm: Option<u32>,
        #[arg(long)]
        tpm: Option<u64>,
        /// Distinguishes otherwise identical keys (default: random).
        #[arg(long)]
        id: Option<String>,
    },
    /// Revoke a delegated key at the gateway it was made for (signed by its wallet).
    Revoke {
        /// Solana keypair file (JSON array) of the key's wallet.
        #[arg(long)]
        wallet: PathBuf,
        /// The delegated key (`dk1.…`).
        #[arg(long)]
        key: String,
        /// The gateway's base URL.
        #[arg(
            long,
            alias = "url",
            env = "GATEWAY_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        gateway: String,
    },
    /// The operator's ecash: what the gateway holds, and withdrawing it as a token.
    Cashu {
        #[command(subcommand)]
        command: CashuCommand,
    },
    /// Log in with a wallet keypair file and print a bearer token.
    Login {
        #[arg(long)]
        wallet: PathBuf,
        /// The gateway's base URL.
        #[arg(
            long,
            alias = "url",
            env = "GATEWAY_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        gateway: String,
        /// Refuse to sign unless the gateway names this audience (its `auth.audience`).
        #[arg(long)]
        audience: Option<String>,
    },
}

#[derive(Subcommand)]
enum CashuCommand {
    /// Print the gateway's unspent ecash per mint, and whether the books reconcile.
    Holdings {
        /// The gateway's config file (its ledger and mints).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Take `sats` of the gateway's ecash out as a Cashu token, printed on stdout.
    Withdraw {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The mint (default: the first listed).
        #[arg(long)]
        mint: Option<String>,
        #[arg(long)]
        sats: u64,
    },
}

/// Runs the parsed command; the exit code is the return value.
pub async fn main(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Run { config } => run(Config::load(config.as_deref())?).await?,
        Command::Wallet(command) => crate::wallet::run(command).await?,
        Command::Delegate {
            wallet,
            audience,
            budget,
            expires_in,
            models,
            max_tokens,
            single_use,
            callback_url,
            rpm,
            tpm,
            id,
        } => {
            let keypair = read_wallet(&wallet)?;
            let claims = Claims {
                user: keypair.pubkey().to_string(),
                audience,
                id: id.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()),
                models: (!models.is_empty()).then_some(models),
                max_tokens,
                budget,
                expires_at: now() + expires_in,
                single_use,
                callback_url,
                rpm,
                tpm,
            };
            println!("{}", delegated::sign(&claims, &signing_key(&keypair))?);
        }
        Command::Revoke {
            wallet,
            key,
            gateway,
        } => {
            let keypair = read_wallet(&wallet)?;
            let verified = delegated::peek(&key)?;
            anyhow::ensure!(
                verified.claims.user == keypair.pubkey().to_string(),
                "this key belongs to wallet {}, not to {}",
                verified.claims.user,
                keypair.pubkey()
            );
            let request = RevokeRequest {
                signature: delegated::sign_revocation(&verified, &signing_key(&keypair)),
                key,
            };
            let revoked: RevokeResponse = reqwest::Client::new()
                .post(format!("{}/v1/auth/revoke", gateway.trim_end_matches('/')))
                .json(&request)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            println!("revoked {}", revoked.key_id);
        }
        Command::Cashu { command } => cashu(command).await?,
        Command::Login {
            wallet,
            gateway,
            audience,
        } => {
            let keypair = read_wallet(&wallet)?;
            let token = login(
                &reqwest::Client::new(),
                &gateway,
                &keypair,
                audience.as_deref(),
            )
            .await?;
            println!("{token}");
        }
    }
    Ok(0)
}

async fn cashu(command: CashuCommand) -> anyhow::Result<()> {
    let (CashuCommand::Holdings { config } | CashuCommand::Withdraw { config, .. }) = &command;
    let config = Config::load(config.as_deref())?;
    let rail = crate::cashu::Cashu::new(&config.cashu)?
        .context("no mint is listed under [cashu] mints in this config")?;
    let ledger = Ledger::connect(&config.database_url).await?;
    match command {
        CashuCommand::Holdings { .. } => {
            rail.recover(&ledger).await?;
            for (mint, sats) in ledger.cashu_holdings().await? {
                println!("{mint}\t{sats} sat");
            }
            let audit = ledger.audit().await?;
            println!(
                "received {} sat, change {} sat, withdrawn {} sat, mint fees {} sat, held {} sat: {}",
                audit.cashu.received,
                audit.cashu.change,
                audit.cashu.withdrawn,
                audit.cashu.fees,
                audit.cashu.held,
                if audit.cashu.reconciles() && audit.cashu_unreconciled.is_empty() {
                    "reconciled"
                } else {
                    "NOT reconciled (see `indexer audit`)"
                }
            );
        }
        CashuCommand::Withdraw { mint, sats, .. } => {
            let mint = match mint {
                Some(mint) => mint,
                None => rail.mint_urls().into_iter().next().context("no mint")?,
            };
            println!("{}", rail.withdraw(&ledger, &mint, sats).await?);
        }
    }
    ledger.close().await;
    Ok(())
}

fn read_wallet(path: &Path) -> anyhow::Result<Keypair> {
    common::solana_cli::read_keypair(path)
}

fn signing_key(keypair: &Keypair) -> SigningKey {
    SigningKey::from_bytes(keypair.secret_bytes())
}

async fn run(config: Config) -> anyhow::Result<()> {
    let mut signals = common::shutdown::StopSignals::install()?;
    let ledger = Ledger::connect(&config.database_url).await?;
    let keys = match &config.nostr.secret_key_file {
        Some(file) => Keys::parse(
            std::fs::read_to_string(file)
                .with_context(|| format!("nostr.secret_key_file {}", file.display()))?
                .trim(),
        )?,
        None => anyhow::bail!(
            "nostr.secret_key_file is required: the proxy key signs debits (indexer keygen --out proxy.key)"
        ),
    };
    let token_secret = match &config.auth.token_secret_file {
        Some(file) => {
            let secret = std::fs::read(file)
                .with_context(|| format!("auth.token_secret_file {}", file.display()))?;
            anyhow::ensure!(
                secret.len() >= 32,
                "auth.token_secret_file must hold at least 32 bytes"
            );
            secret
        }
        None => {
            tracing::warn!("no auth.token_secret_file: session tokens will not survive a restart");
            random_secret()
        }
    };
    let relay = if config.nostr.relays.is_empty() {
        tracing::warn!("no nostr.relays: debits stay in the outbox until a relay is configured");
        None
    } else {
        let client = Client::new(keys.clone());
        for url in &config.nostr.relays {
            client.add_relay(url.as_str()).await?;
        }
        client.connect().await;
        Some(client)
    };
    let nostr = NostrIdentity {
        keys,
        session: config.nostr.session.clone(),
        machine: PublicKey::parse(&config.nostr.machine)?,
    };
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let gateway = Gateway::start(
        listener,
        Parts {
            config,
            ledger: ledger.clone(),
            nostr,
            token_secret,
            relay: relay.clone(),
        },
    )
    .await?;
    let signal = signals.recv().await?;
    tracing::info!(signal, "shutting down: finishing in-flight requests");
    gateway.shutdown().await;
    if let Some(client) = relay {
        client.shutdown().await;
    }
    ledger.close().await;
    Ok(())
}

/// 32 random bytes: a token secret for a process whose tokens need not outlive it.
pub fn random_secret() -> Vec<u8> {
    use rand::RngCore;
    let mut secret = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    secret
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
