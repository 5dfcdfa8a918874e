//! What every on-chain operator command needs: the cluster client (program deployed), the
//! authority and fee-payer checks that name whose keypair or SOL is missing, and the printed
//! result with its transaction.
use crate::{chain::client::ProgramClient, solana_cli::SolanaArgs};
use balance_payment::state::Namespace;
use serde_json::json;
use solana_sdk::pubkey::Pubkey;

/// `signer` is namespace `id`'s authority, or the error says whose keypair to pass.
pub fn ensure_authority(namespace: &Namespace, id: u64, signer: &Pubkey) -> anyhow::Result<()> {
    anyhow::ensure!(
        namespace.authority == *signer,
        "namespace {id}'s authority is {}, not {signer} (pass its keypair with --keypair)",
        namespace.authority
    );
    Ok(())
}

/// `value` with the `transaction` that made it, as every command prints its result.
pub fn with_transaction(mut value: serde_json::Value, signature: &str) -> serde_json::Value {
    value["transaction"] = json!(signature);
    value
}

/// The cluster `--url` names, with the program deployed on it.
pub async fn connect(solana: &SolanaArgs) -> anyhow::Result<ProgramClient> {
    let client = ProgramClient::new(&solana.rpc_url(None)?);
    client.ensure_deployed().await?;
    Ok(client)
}

/// The signer can pay a transaction fee, or the error says whose SOL is missing.
pub async fn ensure_fee_payer(client: &ProgramClient, payer: &Pubkey) -> anyhow::Result<()> {
    let lamports = client.lamports(payer).await?;
    anyhow::ensure!(
        lamports > 0,
        "insufficient funds: {payer} holds no SOL to pay the transaction fee on {} \
         (fund it: `solana transfer` or `solana airdrop`)",
        client.url()
    );
    Ok(())
}
