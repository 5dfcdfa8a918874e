//! The deployment's cluster tag, read from the program's `Global` account: the controller
//! checks signatures against it, so an operator never configures it (and cannot get it wrong).
use super::{Chain, ChainError};
use balance_payment::{
    sdk::{accounts::decode, pda},
    state::Global,
};
use solana_sdk::pubkey::Pubkey;

/// Why the cluster tag could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ClusterTagError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The program was never initialised on this cluster.
    #[error("the program's Global account {0} does not exist: run `initialize` first")]
    NotInitialized(Pubkey),
    #[error("account {0} does not hold the program's Global account")]
    Malformed(Pubkey),
}

/// The cluster tag (genesis hash) the deployment on `chain` was initialised with: what every
/// authorisation it redeems must name.
pub async fn cluster_tag(chain: &dyn Chain) -> Result<[u8; 32], ClusterTagError> {
    let address = pda::global();
    let data = chain
        .account_data(&address)
        .await?
        .ok_or(ClusterTagError::NotInitialized(address))?;
    let global: Global = decode(&data).ok_or(ClusterTagError::Malformed(address))?;
    Ok(global.cluster)
}
