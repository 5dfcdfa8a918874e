//! The `proxy` binary: see `proxy --help`.
use clap::Parser;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "info,tarpc=error,solana_runtime=warn,solana_program_test=warn,solana_metrics=warn"
                    .into()
            }),
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
