//! The `proxy` binary: see `proxy --help`.
use clap::Parser;

/// `info` for our crates; dependencies (the sandbox's validator and relay among them) only warn.
const QUIET_DEPENDENCIES: &str = "info,tarpc=error,solana_runtime=warn,solana_program_test=warn,\
solana_metrics=warn,solana_accounts_db=warn,parity_ws=warn,jsonrpc_http_server=warn,\
surfpool_core=warn,nostr_lmdb=warn,nostr_relay_builder=warn,nostr_relay_pool=warn";

#[tokio::main]
async fn main() {
    // Logs go to stderr, so what a command prints (audit reports, keys, the sandbox's banner)
    // stays clean on stdout.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| QUIET_DEPENDENCIES.into()),
        )
        .init();
    let code = match proxy::cli::main(proxy::cli::Cli::parse()).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            1
        }
    };
    std::process::exit(code);
}
