//! `proxy`: parses arguments, sets up logs (and OTLP traces when configured), runs the command
//! on a Tokio runtime, flushes the traces, exits with the command's code.
use clap::Parser;
use common::telemetry::{self, QUIET_DEPENDENCIES};

fn main() {
    let cli = proxy::cli::Cli::parse();
    // Logs go to stderr, so what a command prints (reports, keys, the sandbox's banner) stays
    // clean on stdout. Installed before the runtime: the trace exporter blocks on its own thread.
    let telemetry = telemetry::init("llm-gateway-proxy", QUIET_DEPENDENCIES);
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(proxy::cli::main(cli)));
    let code = match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            1
        }
    };
    telemetry.shutdown();
    std::process::exit(code);
}
