//! `localnet`: one stand-in per process — a validator running the program, a relay kept on
//! disk, or the echo model (or a load client for the benchmarks) — for tests that start the stack as separate processes and kill
//! them (`proxy/tests/faults.rs`). Each prints `ready <url>` once it serves, then runs until
//! SIGTERM, Ctrl-C or SIGKILL.
use clap::{Parser, Subcommand};
use localnet::MockUpstream;
#[cfg(feature = "relay")]
use std::path::PathBuf;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(
    name = "localnet",
    about = "Local stand-ins for the chain, a relay and a model"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[cfg(feature = "chain")]
    /// A Solana validator with the program, JSON-RPC on --rpc-port, websocket on the next port.
    Validator {
        #[arg(long, default_value_t = 8899)]
        rpc_port: u16,
    },
    #[cfg(feature = "relay")]
    /// A Nostr relay keeping its events in --dir (a restart on the same folder keeps them).
    Relay {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        dir: PathBuf,
    },
    /// The echo model (OpenAI-compatible; see `localnet::echo`).
    Echo {
        #[arg(long)]
        port: u16,
    },
    /// Fixed-rate load: RATE requests/s, every other one to --direct, the rest to each
    /// --through in turn; prints what the gateway adds at each percentile.
    Pace {
        #[arg(long)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        seconds: u32,
        #[arg(long)]
        direct: String,
        #[arg(long, required = true)]
        through: Vec<String>,
        /// The bearer token; given several times, requests take them in turn (several wallets).
        #[arg(long, required = true)]
        token: Vec<String>,
        /// The JSON body of every request.
        #[arg(long)]
        body: String,
    },
    /// COUNT streamed requests at once, each read to its end; with --pid, the peak resident
    /// memory of that process meanwhile.
    Streams {
        #[arg(long)]
        count: usize,
        #[arg(long)]
        url: String,
        #[arg(long)]
        token: String,
        /// The JSON body of every request (ask for `"stream": true`).
        #[arg(long)]
        body: String,
        #[arg(long)]
        pid: Option<u32>,
    },
    #[cfg(feature = "chain")]
    /// The local validator's faucet (`solana airdrop` on devnet): gives PUBKEY SOL and
    /// returns once it is confirmed, waiting up to 30 s for the validator to answer.
    Airdrop {
        pubkey: String,
        sol: u64,
        #[arg(long, short = 'u', default_value = "http://127.0.0.1:8899")]
        url: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    let stop = async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    };
    match Cli::parse().command {
        #[cfg(feature = "chain")]
        Command::Validator { rpc_port } => {
            use localnet::{Validator, ValidatorConfig};
            let mut validator = Validator::start(ValidatorConfig::on_port(rpc_port)).await?;
            println!("ready {} {}", validator.rpc_url(), validator.ws_url());
            stop.await;
            validator.shutdown();
        }
        #[cfg(feature = "relay")]
        Command::Relay { port, dir } => {
            let relay = localnet::EmbeddedRelay::open(port, &dir).await?;
            println!("ready {}", relay.url());
            stop.await;
            relay.shutdown().await;
        }
        Command::Echo { port } => {
            let echo = MockUpstream::start(port).await?;
            println!("ready {}", echo.base_url());
            stop.await;
        }
        Command::Pace {
            rate,
            seconds,
            direct,
            through,
            token,
            body,
        } => localnet::load::pace(rate, seconds, &direct, &through, &token, body).await?,
        Command::Streams {
            count,
            url,
            token,
            body,
            pid,
        } => localnet::load::streams(count, &url, &token, body, pid).await?,
        #[cfg(feature = "chain")]
        Command::Airdrop { pubkey, sol, url } => chain::airdrop(&url, &pubkey, sol).await?,
    }
    Ok(())
}

#[cfg(feature = "chain")]
mod chain {
    use anyhow::Context;
    use solana_commitment_config::CommitmentConfig;
    use solana_rpc_client::nonblocking::rpc_client::RpcClient;
    use solana_sdk::pubkey::Pubkey;
    use std::{str::FromStr, time::Duration};

    /// Gives `pubkey` `sol` SOL once the validator at `url` answers, and waits for it.
    pub async fn airdrop(url: &str, pubkey: &str, sol: u64) -> anyhow::Result<()> {
        let to =
            Pubkey::from_str(pubkey).with_context(|| format!("{pubkey:?} is not a public key"))?;
        let rpc = RpcClient::new_with_commitment(url.to_owned(), CommitmentConfig::confirmed());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while rpc.get_health().await.is_err() {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "no validator answers at {url}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let lamports = sol.checked_mul(1_000_000_000).context("too many SOL")?;
        let signature = rpc.request_airdrop(&to, lamports).await?;
        rpc.poll_for_signature_with_commitment(&signature, CommitmentConfig::confirmed())
            .await?;
        println!("{signature}");
        Ok(())
    }
}
