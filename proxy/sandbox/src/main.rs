//! `sandbox`: the whole stack on this machine on embedded defaults (see the crate's doc), until
//! Ctrl-C or SIGTERM. `cargo run -p sandbox -- --help` lists the options.
use clap::Parser;
use common::telemetry::{self, QUIET_DEPENDENCIES};
use sandbox::SandboxArgs;

/// Run the whole local stack on embedded defaults: a local Solana validator running the
/// program, a relay, the ledger, the indexer and controller, and the gateway with a local echo
/// model.
#[derive(Parser)]
#[command(name = "sandbox")]
struct Cli {
    #[command(flatten)]
    args: SandboxArgs,
}

fn main() {
    let cli = Cli::parse();
    // Logs go to stderr, so the banner on stdout stays clean.
    let telemetry = telemetry::init("llm-gateway-sandbox", QUIET_DEPENDENCIES);
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(sandbox::run(cli.args)));
    let code = match outcome {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("error: {error:#}");
            1
        }
    };
    telemetry.shutdown();
    std::process::exit(code);
}
