//! `cargo xtask test [ARGS…]`: the README's test command. It installs what the tests need from
//! outside Rust into a cache directory (or finds it there), then runs every test with
//! `LLM_GATEWAY_ALL_TESTS` set, so that a test missing a prerequisite fails instead of
//! skipping. ARGS go to `cargo test` (e.g. `--test cashu_races`, or `-- --nocapture`).
//!
//! `cargo xtask install` installs only. When something cannot be installed, the command says
//! what and how, and runs no test. `cargo xtask layers` prints the import circles between
//! modules (see [`layers`]).
mod install;
mod layers;
mod postgres;
mod run;
mod shell;

use std::{path::PathBuf, process::ExitCode};

/// Where the tools go: `LLM_GATEWAY_TOOLS`, else `~/.cache/llm-gateway-tools`.
fn tools_dir() -> PathBuf {
    match std::env::var_os("LLM_GATEWAY_TOOLS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".cache/llm-gateway-tools"),
    }
}

/// The workspace root (this crate lives in tests/xtask). Taken from the `CARGO_MANIFEST_DIR`
/// that `cargo run` sets, not the one compiled in: clones sharing one `CARGO_TARGET_DIR` (as CI's
/// does) may run a binary another clone built.
fn workspace() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("../..")
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next();
    let rest: Vec<String> = args.collect();
    let (root, tools) = (workspace(), tools_dir());
    let outcome = match command.as_deref() {
        Some("install") => install::everything(&root, &tools).map(|_| ()),
        Some("test") => install::everything(&root, &tools)
            .and_then(|installed| run::every_test(&root, &installed, &rest)),
        Some("layers") => layers::report(&root),
        _ => Err(
            "usage: cargo xtask test [CARGO TEST ARGS…] | cargo xtask install | cargo xtask layers"
                .into(),
        ),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("xtask: {why}");
            ExitCode::FAILURE
        }
    }
}
