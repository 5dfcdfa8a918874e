//! The wallet user's commands: `register`, `deposit`, `withdraw`, `balance`, `topup`, `ask`
//! (and `login`). Each needs only the gateway's URL and a keypair file: the cluster, program,
//! namespace and relays come from the gateway's `/.well-known/llm-gateway` document, unless
//! `--url` names the cluster (then `register`, `deposit` and `withdraw` never contact the
//! gateway: getting one's SOL back must not depend on it).
mod account;
mod amount;
mod ask;
pub mod login;
mod tokens;
mod topup;

use crate::discovery::GatewayInfo;
use amount::{parse_decimal, sol, Decimal};
use clap::{Args, Subcommand};
use common::{chain::client::ProgramClient, solana_cli::SolanaArgs};
use solana_sdk::{pubkey::Pubkey, signature::Keypair};

/// Where the gateway is, and the cluster and keypair as `solana` finds them.
#[derive(Debug, Clone, Args)]
pub struct WalletArgs {
    /// The gateway's base URL.
    #[arg(long, env = "GATEWAY_URL", default_value = "http://127.0.0.1:8080")]
    pub gateway: String,
    #[command(flatten)]
    pub solana: SolanaArgs,
}

#[derive(Subcommand)]
pub enum WalletCommand {
    /// Create your user account with the program (once per wallet and cluster).
    Register(WalletArgs),
    /// Move SOL (or, with `--mint`, a token such as USDC) from your wallet into your vault,
    /// from which top-ups are paid.
    Deposit {
        /// SOL, e.g. `0.5`; with `--mint`, units of that token, e.g. `2.5`.
        #[arg(value_parser = parse_decimal)]
        amount: Decimal,
        /// The token's mint address; it is taken from your wallet's associated token account.
        #[arg(long)]
        mint: Option<Pubkey>,
        #[command(flatten)]
        wallet: WalletArgs,
    },
    /// Move SOL (or, with `--mint`, that token) that is not locked from your vault back to your
    /// wallet.
    Withdraw {
        /// SOL, e.g. `0.5`, or `all`; with `--mint`, units of that token.
        #[arg(value_parser = parse_withdrawal)]
        amount: Withdrawal,
        /// The token's mint address; it goes to your wallet's associated token account.
        #[arg(long)]
        mint: Option<Pubkey>,
        #[command(flatten)]
        wallet: WalletArgs,
    },
    /// Show your vault (held, locked, free for top-ups) and your balance at the gateway.
    Balance(WalletArgs),
    /// Ask one chat completion paid from your token vault with x402's escrow scheme, no
    /// login: the request's worst case is locked, only what the answer cost is settled.
    Ask {
        /// The question.
        prompt: String,
        #[arg(long, default_value = "echo")]
        model: String,
        /// The answer's bound in tokens: what the worst case (and the lock) is priced from.
        #[arg(long, default_value_t = 256)]
        max_tokens: u64,
        #[command(flatten)]
        wallet: WalletArgs,
    },
    /// Buy gateway credit: sign an authorisation for AMOUNT SOL (or, with `--mint`, of that
    /// token) from your vault, publish it to the gateway's relays, wait for the controller's
    /// answer and the credit, print both.
    Topup {
        /// SOL, e.g. `0.01`; with `--mint`, units of that token, e.g. `2.5`.
        #[arg(value_parser = parse_decimal)]
        amount: Decimal,
        /// A token the gateway takes (its mint; see `/.well-known/llm-gateway`).
        #[arg(long)]
        mint: Option<Pubkey>,
        /// How long the authorisation stays redeemable, in seconds.
        #[arg(long, default_value_t = 600)]
        valid_for: i64,
        /// How long to wait for the controller's answer and the credit, in seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        #[command(flatten)]
        wallet: WalletArgs,
    },
}

/// How much to withdraw.
#[derive(Debug, Clone)]
pub enum Withdrawal {
    All,
    Amount(Decimal),
}

/// Runs one wallet command.
pub async fn run(command: WalletCommand) -> anyhow::Result<()> {
    match command {
        WalletCommand::Register(wallet) => account::register(&wallet).await,
        WalletCommand::Deposit {
            amount,
            mint: None,
            wallet,
        } => {
            account::deposit(
                &wallet,
                amount
                    .units(amount::SOL_DECIMALS)
                    .map_err(anyhow::Error::msg)?,
            )
            .await
        }
        WalletCommand::Deposit {
            amount,
            mint: Some(mint),
            wallet,
        } => tokens::deposit(&wallet, &amount, mint).await,
        WalletCommand::Withdraw {
            amount,
            mint: None,
            wallet,
        } => account::withdraw(&wallet, amount).await,
        WalletCommand::Withdraw {
            amount,
            mint: Some(mint),
            wallet,
        } => tokens::withdraw(&wallet, amount, mint).await,
        WalletCommand::Balance(wallet) => account::balance(&wallet).await,
        WalletCommand::Ask {
            prompt,
            model,
            max_tokens,
            wallet,
        } => {
            let question = ask::Question {
                prompt,
                model,
                max_tokens,
            };
            ask::run(&wallet, &question).await
        }
        WalletCommand::Topup {
            amount,
            mint,
            valid_for,
            timeout,
            wallet,
        } => {
            let spend = match mint {
                None => topup::Spend::Sol(
                    amount
                        .units(amount::SOL_DECIMALS)
                        .map_err(anyhow::Error::msg)?,
                ),
                Some(mint) => topup::Spend::Token { mint, amount },
            };
            topup::run(
                &wallet,
                spend,
                valid_for,
                std::time::Duration::from_secs(timeout),
            )
            .await
        }
    }
}

/// What one command works with.
struct Session {
    keypair: Keypair,
    client: ProgramClient,
    /// The gateway's document, when it was read.
    info: Option<GatewayInfo>,
    http: reqwest::Client,
}

impl Session {
    /// The keypair and the cluster. With `needs_gateway`, or without `--url`, the gateway's
    /// document is read (and names the cluster unless `--url` does).
    async fn open(args: &WalletArgs, needs_gateway: bool) -> anyhow::Result<Self> {
        let keypair = args.solana.keypair()?;
        let http = reqwest::Client::new();
        let info = match needs_gateway || args.solana.url.is_none() {
            true => Some(
                GatewayInfo::fetch(&http, &args.gateway)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "{e:#} (to reach the chain without the gateway, pass --url)"
                        )
                    })?,
            ),
            false => None,
        };
        if let Some(info) = &info {
            anyhow::ensure!(
                info.solana.program_id == balance_payment::ID.to_string(),
                "the gateway uses the program {}, but this build knows only {}",
                info.solana.program_id,
                balance_payment::ID
            );
        }
        let published = info.as_ref().and_then(|i| i.solana.rpc_url.as_deref());
        let client = ProgramClient::new(&args.solana.rpc_url(published)?);
        client.ensure_deployed().await?;
        Ok(Self {
            keypair,
            client,
            info,
            http,
        })
    }

    /// The gateway's document (opened with `needs_gateway`).
    fn info(&self) -> anyhow::Result<&GatewayInfo> {
        self.info
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the gateway's document was not read"))
    }
}

fn parse_withdrawal(text: &str) -> Result<Withdrawal, String> {
    match text {
        "all" | "ALL" => Ok(Withdrawal::All),
        _ => parse_decimal(text).map(Withdrawal::Amount),
    }
}
