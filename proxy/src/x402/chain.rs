//! The chain as x402 settlement needs it: send a co-signed payment, and learn whether it
//! landed. An answer that is not final (a timeout, a node that does not answer) is reported
//! as unknown — never as a refusal: the payment may still land, and it is then credited.
use solana_commitment_config::CommitmentConfig;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_rpc_client_types::config::RpcSendTransactionConfig;
use solana_sdk::{
    hash::Hash,
    signature::Signature,
    transaction::{TransactionError, VersionedTransaction},
};
use std::time::Duration;
use tokio::time::Instant;

/// How often a payment's status is asked while waiting for it.
const POLL: Duration = Duration::from_millis(200);
/// Polls between two sends of a payment still not seen.
const RESEND_EVERY: u32 = 10;

/// What the chain said about a sent payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landing {
    /// It landed and succeeded, at `slot`, at the configured commitment.
    Landed { slot: u64 },
    /// It was refused (before or after it was sent): it will never pay.
    Refused(String),
    /// Not known yet: it may still land.
    Unknown(String),
}

/// One RPC node, at one commitment.
pub struct Chain {
    rpc: RpcClient,
    commitment: CommitmentConfig,
}

impl Chain {
    /// Talks to `url`; a payment counts once it reaches `commitment`.
    pub fn new(url: &str, commitment: CommitmentConfig) -> Self {
        Self {
            rpc: RpcClient::new_with_commitment(url.to_owned(), commitment),
            commitment,
        }
    }

    /// The node, for what is read once at start (the genesis hash).
    pub fn rpc(&self) -> &RpcClient {
        &self.rpc
    }

    /// Sends `tx`, simulated first: a transfer that cannot succeed is refused without being
    /// sent (`Err(Refused)`). A transaction sent before (a retry) counts as sent.
    pub async fn send(&self, tx: &VersionedTransaction) -> Result<(), Landing> {
        match self
            .rpc
            .send_transaction_with_config(tx, self.send_config())
            .await
        {
            Ok(_) => Ok(()),
            Err(error) => match error.get_transaction_error() {
                Some(TransactionError::AlreadyProcessed) => Ok(()),
                Some(refused) => Err(Landing::Refused(refused.to_string())),
                None => Err(Landing::Unknown(error.to_string())),
            },
        }
    }

    /// Waits until `deadline` for a sent `tx` to land, sending it again now and then when
    /// `resend` (a node may drop a transaction); at the deadline, one last look through the
    /// history decides between refused (its blockhash expired unseen) and unknown.
    pub async fn wait(
        &self,
        tx: &VersionedTransaction,
        deadline: Instant,
        resend: bool,
    ) -> Landing {
        let signature = tx.signatures[0];
        let blockhash = *tx.message.recent_blockhash();
        for poll in 1u32.. {
            let last = Instant::now() >= deadline;
            match self.status(&signature, &blockhash, last).await {
                Landing::Unknown(_) if !last => tokio::time::sleep(POLL).await,
                known => return known,
            }
            if resend && poll % RESEND_EVERY == 0 {
                let _ = self
                    .rpc
                    .send_transaction_with_config(tx, self.send_config())
                    .await;
            }
        }
        Landing::Unknown("gave up waiting".into())
    }

    fn send_config(&self) -> RpcSendTransactionConfig {
        RpcSendTransactionConfig {
            preflight_commitment: Some(self.commitment.commitment),
            max_retries: Some(0),
            ..RpcSendTransactionConfig::default()
        }
    }

    /// Whether the node has seen `signature` at all (any commitment); `None` when it did
    /// not answer.
    pub async fn seen(&self, signature: &Signature) -> Option<bool> {
        let statuses = self.rpc.get_signature_statuses(&[*signature]).await.ok()?;
        Some(statuses.value.first().is_some_and(Option::is_some))
    }

    /// Whether `signature` landed (searching the ledger's history when `history`): unknown
    /// while it has not and its `blockhash` still lets it; refused once it cannot any more.
    pub async fn status(&self, signature: &Signature, blockhash: &Hash, history: bool) -> Landing {
        let statuses = match history {
            true => {
                self.rpc
                    .get_signature_statuses_with_history(&[*signature])
                    .await
            }
            false => self.rpc.get_signature_statuses(&[*signature]).await,
        };
        let status = match statuses {
            Ok(response) => response.value.into_iter().next().flatten(),
            Err(error) => return Landing::Unknown(error.to_string()),
        };
        match status {
            Some(status) if status.satisfies_commitment(self.commitment) => match status.err {
                None => Landing::Landed { slot: status.slot },
                Some(error) => Landing::Refused(error.to_string()),
            },
            Some(_) => Landing::Unknown("not yet at the required commitment".into()),
            None => match self
                .rpc
                .is_blockhash_valid(blockhash, self.commitment)
                .await
            {
                Ok(false) if history => {
                    Landing::Refused("its blockhash expired before it landed".into())
                }
                Ok(_) => Landing::Unknown("not seen yet".into()),
                Err(error) => Landing::Unknown(error.to_string()),
            },
        }
    }
}
