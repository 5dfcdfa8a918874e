//! The local validator is a real Solana RPC node for the ordinary clients: the JSON-RPC calls a
//! wallet and the indexer make, and the websocket subscriptions, with the program running in it
//! and its `emit_cpi!` events readable from `getTransaction`.
use balance_payment::{
    sdk::{accounts, events::ProgramEvent, instructions as ix, pda},
    state::UserAccount,
};
use futures_util::StreamExt;
use indexer::chain::decode::events_in_transaction;
use localnet::{Validator, ValidatorConfig};
use solana_commitment_config::CommitmentConfig;
use solana_pubsub_client::nonblocking::pubsub_client::PubsubClient;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_rpc_client_types::config::{
    RpcAccountInfoConfig, RpcTransactionConfig, RpcTransactionLogsConfig, RpcTransactionLogsFilter,
};
use solana_sdk::{
    signature::{Keypair, Signature, Signer},
    transaction::Transaction,
};
use solana_transaction_status_client_types::UiTransactionEncoding;
use std::time::Duration;

const SOL: u64 = 1_000_000_000;
const WAIT: Duration = Duration::from_secs(30);

/// Polls `getSignatureStatuses` until `signature` is confirmed; fails on a transaction error.
async fn confirmed(rpc: &RpcClient, signature: &Signature) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let statuses = rpc
            .get_signature_statuses(&[*signature])
            .await
            .expect("getSignatureStatuses");
        if let Some(Some(status)) = statuses.value.first() {
            assert!(status.err.is_none(), "{signature} failed: {:?}", status.err);
            if status.satisfies_commitment(CommitmentConfig::confirmed()) {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{signature} not confirmed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_validator_serves_wallets_and_indexers_over_standard_rpc() {
    let mut validator = Validator::start(ValidatorConfig::free_ports().unwrap())
        .await
        .expect("validator starts");
    let rpc = RpcClient::new_with_commitment(
        validator.rpc_url().to_owned(),
        CommitmentConfig::confirmed(),
    );
    rpc.get_health().await.expect("getHealth");
    let version = rpc.get_version().await.expect("getVersion");
    assert!(
        version.solana_core.starts_with("3.1"),
        "{}",
        version.solana_core
    );
    rpc.get_latest_blockhash()
        .await
        .expect("getLatestBlockhash");
    let program = rpc
        .get_account(&balance_payment::ID)
        .await
        .expect("the program account");
    assert!(program.executable, "the program is deployed");

    let user = Keypair::new();
    let pubsub = PubsubClient::new(validator.ws_url())
        .await
        .expect("websocket");
    let (mut logs, _logs_off) = pubsub
        .logs_subscribe(
            RpcTransactionLogsFilter::Mentions(vec![balance_payment::ID.to_string()]),
            RpcTransactionLogsConfig {
                commitment: Some(CommitmentConfig::confirmed()),
            },
        )
        .await
        .expect("logsSubscribe");
    let (mut account_updates, _account_off) = pubsub
        .account_subscribe(
            &pda::user_account(&user.pubkey()),
            Some(RpcAccountInfoConfig {
                commitment: Some(CommitmentConfig::confirmed()),
                ..RpcAccountInfoConfig::default()
            }),
        )
        .await
        .expect("accountSubscribe");

    let airdrop = rpc
        .request_airdrop(&user.pubkey(), 2 * SOL)
        .await
        .expect("requestAirdrop");
    confirmed(&rpc, &airdrop).await;
    assert_eq!(rpc.get_balance(&user.pubkey()).await.unwrap(), 2 * SOL);

    let blockhash = rpc.get_latest_blockhash().await.unwrap();
    let transaction = Transaction::new_signed_with_payer(
        &[
            ix::register(user.pubkey()),
            ix::deposit(user.pubkey(), user.pubkey(), SOL / 2),
        ],
        Some(&user.pubkey()),
        &[&user],
        blockhash,
    );
    let signature = rpc
        .send_transaction(&transaction)
        .await
        .expect("sendTransaction");
    confirmed(&rpc, &signature).await;

    let fetched = rpc
        .get_transaction_with_config(
            &signature,
            RpcTransactionConfig {
                encoding: Some(UiTransactionEncoding::Json),
                commitment: Some(CommitmentConfig::confirmed()),
                max_supported_transaction_version: Some(0),
            },
        )
        .await
        .expect("getTransaction");
    let events = events_in_transaction(&fetched, &balance_payment::ID.to_string());
    assert!(
        matches!(
            events.as_slice(),
            [ProgramEvent::UserRegistered(_), ProgramEvent::Deposited(d)] if d.amount == SOL / 2
        ),
        "the emit_cpi! events come back as inner instructions: {events:?}"
    );

    let history = rpc
        .get_signatures_for_address(&balance_payment::ID)
        .await
        .expect("getSignaturesForAddress");
    assert!(history.iter().any(|s| s.signature == signature.to_string()));

    let logged = tokio::time::timeout(WAIT, async {
        loop {
            let notice = logs.next().await.expect("logs stream open");
            if notice.value.signature == signature.to_string() {
                return notice.value.logs;
            }
        }
    })
    .await
    .expect("logsSubscribe notified the transaction");
    // A natively run program's `msg!` lines are not captured (programs/balance-payment/README.md,
    // "Events"); the runtime's own lines are.
    let success = format!("Program {} success", balance_payment::ID);
    assert!(logged.contains(&success), "{logged:?}");

    let update = tokio::time::timeout(WAIT, account_updates.next())
        .await
        .expect("accountSubscribe notified the new account")
        .expect("account stream open");
    let data = update.value.data.decode().expect("account data");
    let account = accounts::decode::<UserAccount>(&data).expect("a user account");
    assert_eq!(account.nonce, 0);

    validator.shutdown();
    assert!(
        rpc.get_health().await.is_err(),
        "the RPC stops with the validator"
    );
}
