//! The wallet page as a person uses it (tests/web/web.mjs): headless Chromium (Debian's
//! `chromium`, driven by playwright-core) at the gateway's `/`, with a Wallet Standard test
//! wallet, against the whole local stack — connect, register, deposit, log in, a refused and a
//! declined top-up, a top-up followed to its credit, an operator's refusal (staged on the
//! relay with the controller's key) shown with its reason, the same in USDC (the sandbox's
//! stand-in: deposit, a refused and a credited top-up, withdrawal), a delegated key used by the
//! `openai` client, its spending and usage on the page, revocation, withdrawal, a phone-sized
//! screen.
//! Screenshots of each step go to `target/web-screenshots/`. `cargo xtask test` installs
//! Chromium and the packages (`npm ci` in tests/web); a bare `cargo test` without them says what
//! is missing and skips.
mod common;

use indexer::sandbox::USDC;
use solana_sdk::pubkey::Pubkey;
use std::{path::Path, process::Command};

const WEB_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/web");
const CHROMIUM: &str = "/usr/bin/chromium";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_goes_from_a_funded_wallet_to_a_working_key_through_the_page() {
    if !Path::new(WEB_DIR).join("node_modules").exists() {
        return localnet::prerequisite::missing(
            "tests/web's Node packages",
            "(cd tests/web && npm ci)",
        );
    }
    if !Path::new(CHROMIUM).exists() {
        return localnet::prerequisite::missing("Chromium", "apt-get install -y chromium");
    }
    let fronted = common::FrontedStack::start().await;
    let (stack, base) = (&fronted.stack, fronted.base.clone());
    // The page's test wallet has a fixed key (tests/web/web.mjs): give it USDC, as a faucet.
    let seed: [u8; 32] = std::array::from_fn(|i| ((i * 7 + 3) % 256) as u8);
    let wallet = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    stack
        .fund_usdc(&Pubkey::new_from_array(wallet.to_bytes()), 5 * USDC)
        .await
        .expect("the test wallet gets USDC");
    let screenshots = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("web-screenshots");

    let mut node = Command::new("node");
    node.arg("web.mjs")
        .current_dir(WEB_DIR)
        .env("GATEWAY_URL", &base)
        .env("RPC_URL", stack.validator.rpc_url())
        .env("TOKENS_PER_SOL", stack.tokens_per_sol.to_string())
        .env("USDC_MINT", stack.usdc.to_string())
        .env("TOKENS_PER_USDC", stack.tokens_per_usdc.to_string())
        .env("RELAY_URL", stack.relay.url())
        .env("MACHINE", stack.machine.to_hex())
        .env("SESSION", &stack.session)
        .env(
            "CONTROLLER_SECRET",
            stack.controller_keys.secret_key().to_secret_hex(),
        )
        .env("CHROMIUM", CHROMIUM)
        .env("SCREENSHOTS", &screenshots);
    common::node_succeeds(node, "web.mjs").await;

    fronted.stop().await;
}
