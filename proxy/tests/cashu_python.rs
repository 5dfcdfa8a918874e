//! Another Cashu implementation pays the gateway: Nutshell's wallet (the `cashu` Python
//! package) with the official `openai` client, token in a default header (tests/cashu/check.py).
//! `cargo xtask test` installs both into a virtualenv (tests/cashu/requirements.txt); a bare
//! `cargo test` without it says how and skips.
mod common;

use common::{mint::TestMint, Harness};
use indexer::ledger::testing::TempDatabase;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nutshells_wallet_and_the_openai_client_pay_and_get_their_change() {
    let Some(python) = common::tools_python("CASHU_PYTHON", "cashu-venv") else {
        localnet::prerequisite::missing(
            "the Nutshell virtualenv",
            "python3 -m venv ~/.cache/llm-gateway-tools/cashu-venv && \
             ~/.cache/llm-gateway-tools/cashu-venv/bin/pip install -r tests/cashu/requirements.txt",
        );
        return;
    };
    // Nutshell 0.19 knows only version-1 keyset ids; the other tests use version 2.
    let Some(mint) = TestMint::start_with(false).await else {
        return;
    };
    let url = mint.url.clone();
    let h = Harness::start_with(TempDatabase::sqlite(), move |config| {
        config.cashu.mints = vec![url];
        config.cashu.tokens_per_sat = 1;
    })
    .await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/cashu/check.py");
    let (base, mint_url) = (h.base.clone(), mint.url.clone());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args([script, &base, &mint_url])
            .current_dir(std::env::temp_dir())
            .output()
    })
    .await
    .unwrap()
    .expect("the virtualenv's python runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "check.py failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ok:"), "{stdout}");
    let audit = h.ledger.audit().await.unwrap();
    assert!(audit.is_clean(), "{audit:#?}");
    // Three tokens received (100, what the 402 named, 60); the 1-sat one was refused unspent.
    assert!(audit.cashu.received > 160, "{:?}", audit.cashu);
    assert!(audit.cashu.change > 0, "{:?}", audit.cashu);
    h.stop().await;
}
