//! Runs every test with what [`crate::install`] found: the workspace's Rust tests (with the
//! program's IDL build, so the committed IDL is checked against the code), then the Node check
//! that the IDL loads in `@coral-xyz/anchor` and encodes like the Rust SDK.
use crate::{install::Installed, shell::run};
use std::{path::Path, process::Command};

/// Tells the tests that every prerequisite is installed (`localnet::prerequisite`).
const ALL_TESTS: &str = "LLM_GATEWAY_ALL_TESTS";

/// `cargo test --workspace --features balance-payment/idl-build ARGS`; with no ARGS, also the
/// Node IDL check.
pub fn every_test(root: &Path, installed: &Installed, args: &[String]) -> Result<(), String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(
        installed
            .path_first
            .iter()
            .cloned()
            .chain(std::env::split_paths(&path)),
    )
    .map_err(|e| format!("PATH: {e}"))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut tests = Command::new(cargo);
    tests
        .current_dir(root)
        .args([
            "test",
            "--workspace",
            "--features",
            "balance-payment/idl-build",
        ])
        .args(args)
        .env(ALL_TESTS, "1")
        .env("PATH", &path)
        .envs(installed.env.clone());
    if let Some(postgres) = &installed.postgres {
        eprintln!(
            "xtask: the tests use the private Postgres at {}",
            postgres.url
        );
    }
    run(&mut tests)?;
    if args.is_empty() {
        eprintln!("xtask: the IDL loads in @coral-xyz/anchor and encodes like the Rust SDK");
        run(Command::new("node")
            .arg("check.mjs")
            .current_dir(root.join("tests/idl"))
            .env("PATH", &path))?;
    }
    Ok(())
}
