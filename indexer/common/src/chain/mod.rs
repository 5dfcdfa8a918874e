//! The chain behind one trait: submit transactions, read the program's events from a cursor,
//! and read an account (the deployment's cluster tag, [`cluster`]). [`rpc::RpcChain`] talks to
//! any Solana RPC node: a real cluster, or the local validator the sandbox and tests run.
pub mod client;
pub mod cluster;
pub mod decode;
pub mod explain;
pub mod public;
pub mod rpc;

use async_trait::async_trait;
use balance_payment::sdk::events::ProgramEvent;
use solana_sdk::{instruction::Instruction, pubkey::Pubkey, signature::Keypair};

/// One program event and where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainEvent {
    pub signature: String,
    /// Position among this program's events in the transaction.
    pub index: u32,
    pub slot: u64,
    pub event: ProgramEvent,
}

/// Events after a cursor, and the cursor to resume from next time.
#[derive(Debug, Clone, Default)]
pub struct EventBatch {
    pub events: Vec<ChainEvent>,
    pub cursor: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The transaction was executed and refused: retrying the same transaction is pointless.
    #[error("transaction refused: {message}")]
    Rejected {
        /// The program's custom error code, when it was one.
        code: Option<u32>,
        message: String,
    },
    /// The chain could not be reached or did not answer: the outcome is unknown.
    #[error("chain unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Chain: Send + Sync + 'static {
    /// Signs `instructions` with `signers` (the first pays the fee), submits and confirms them;
    /// returns the transaction signature.
    async fn submit(
        &self,
        instructions: &[Instruction],
        signers: &[&Keypair],
    ) -> Result<String, ChainError>;

    /// The program's events after `cursor` (from the beginning when `None`), oldest first.
    async fn events_after(&self, cursor: Option<&str>) -> Result<EventBatch, ChainError>;

    /// Raw data of `address`, if the account exists.
    async fn account_data(&self, address: &Pubkey) -> Result<Option<Vec<u8>>, ChainError>;

    /// Lamports held by `address` (0 when it does not exist).
    async fn lamports(&self, address: &Pubkey) -> Result<u64, ChainError>;

    /// The `Paid` event that redeemed `user`'s authorisation number `nonce` in `namespace_id`,
    /// if the chain has one (at `confirmed`, ahead of the event watcher): how the controller
    /// learns that a `pay` whose outcome it lost did land, before the watcher has seen it.
    /// `Ok(None)` is a definite "no"; a search that could not be complete is `Unavailable`.
    async fn find_payment(
        &self,
        user: &Pubkey,
        namespace_id: u64,
        nonce: u64,
    ) -> Result<Option<ChainEvent>, ChainError>;

    /// Returns when new events may be there, or after `timeout` at the latest.
    async fn wait_for_activity(&self, timeout: std::time::Duration) {
        tokio::time::sleep(timeout).await
    }
}

impl ChainError {
    /// A refusal, keeping the program's error code when it is one.
    pub fn rejected(error: &solana_sdk::transaction::TransactionError) -> Self {
        use solana_sdk::{instruction::InstructionError, transaction::TransactionError};
        let code = match error {
            TransactionError::InstructionError(_, InstructionError::Custom(code)) => Some(*code),
            _ => None,
        };
        ChainError::Rejected {
            code,
            message: error.to_string(),
        }
    }

    pub fn unavailable(error: impl std::fmt::Display) -> Self {
        ChainError::Unavailable(error.to_string())
    }
}

impl ChainEvent {
    /// Whether this is the `Paid` or `TokenPaid` event of `user`'s authorisation `nonce` in
    /// `namespace_id` (SOL and token authorisations share the user's nonce).
    pub fn pays(&self, user: &Pubkey, namespace_id: u64, nonce: u64) -> bool {
        match &self.event {
            ProgramEvent::Paid(paid) => {
                paid.user == *user && paid.namespace_id == namespace_id && paid.nonce == nonce
            }
            ProgramEvent::TokenPaid(paid) => {
                paid.user == *user && paid.namespace_id == namespace_id && paid.nonce == nonce
            }
            _ => false,
        }
    }
}
