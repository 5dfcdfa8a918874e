//! A wallet app in Node (tests/wallet/wallet.mjs) against the whole local stack, as a browser
//! wallet would use it: `@coral-xyz/anchor` with the committed IDL over the validator's RPC
//! (register, deposit, read the cluster tag and nonce), an authorisation signed with the wallet
//! key (`signMessage`), a top-up `Request` through the relay, and the credit seen at the gateway
//! after a wallet login. `cargo xtask test` installs the packages (`npm ci` in tests/wallet); a
//! bare `cargo test` without them says so and skips.
mod common;

use std::{path::Path, process::Command};

const WALLET_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/wallet");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_wallet_pays_through_the_idl_and_sees_its_credit_at_the_gateway() {
    if !Path::new(WALLET_DIR).join("node_modules").exists() {
        return localnet::prerequisite::missing(
            "tests/wallet's Node packages",
            "(cd tests/wallet && npm ci)",
        );
    }
    let fronted = common::FrontedStack::start().await;
    let (stack, base) = (&fronted.stack, fronted.base.clone());

    let mut node = Command::new("node");
    node.arg("wallet.mjs")
        .current_dir(WALLET_DIR)
        .env("RPC_URL", stack.validator.rpc_url())
        .env("WS_URL", stack.validator.ws_url())
        .env("RELAY_URL", stack.relay.url())
        .env("GATEWAY_URL", &base)
        .env("MACHINE", stack.machine.to_hex())
        .env("SESSION", &stack.session)
        .env("NAMESPACE_ID", stack.namespace_id.to_string())
        .env("TOKENS_PER_SOL", stack.tokens_per_sol.to_string());
    common::node_succeeds(node, "wallet.mjs").await;

    fronted.stop().await;
}
