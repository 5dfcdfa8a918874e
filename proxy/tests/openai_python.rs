//! The official Python `openai` package (tests/openai/client_check.py) calls the gateway,
//! streaming and not, unchanged except `base_url`. `cargo xtask test` installs
//! the package (tests/openai/requirements.txt); a bare `cargo test` without it says so and skips.
mod common;

use common::Harness;
use indexer::ledger::testing::TempDatabase;
use std::process::Command;

fn python_has_openai() -> bool {
    Command::new("python3")
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|out| out.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_package_works_unchanged_except_base_url() {
    if !python_has_openai() {
        return localnet::prerequisite::missing(
            "the `openai` Python package",
            "pip install -r tests/openai/requirements.txt",
        );
    }
    let h = Harness::start(TempDatabase::sqlite()).await;
    h.fund(10_000).await;
    let key = h.key(&h.claims());
    let poor = {
        let wallet = ed25519_dalek::SigningKey::from_bytes(&common::rand_bytes());
        let mut claims = h.claims();
        claims.user = bs58::encode(wallet.verifying_key().as_bytes()).into_string();
        proxy::auth::delegated::sign(&claims, &wallet).unwrap()
    };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/openai/client_check.py"
    );
    let base = format!("{}/v1", h.base);
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .env("GATEWAY_BASE_URL", base)
            .env("GATEWAY_KEY", key)
            .env("GATEWAY_POOR_KEY", poor)
            .output()
    })
    .await
    .unwrap()
    .expect("python3 runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "client_check.py failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ok"));
    let balance = h.settled().await;
    assert!(
        balance.debited > 0,
        "the Python calls were charged: {balance:?}"
    );
    h.stop().await;
}
