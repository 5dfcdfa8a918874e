//! The chain as x402 settlement needs it: send a co-signed payment, and learn whether it
//! landed. An answer that is not final (a timeout, a node that does not answer) is reported
//! as unknown — never as a refusal: the payment may still land, and it is then credited.
use solana_commitment_config::CommitmentConfig;
use solana_rpc_client::{
    nonblocking::rpc_client::RpcClient, rpc_client::GetConfirmedSignaturesForAddress2Config,
};
use solana_rpc_client_types::config::{RpcSendTransactionConfig, RpcTransactionConfig};
use solana_sdk::{
    hash::Hash,
    pubkey::Pubkey,
    signature::Signature,
    transaction::{TransactionError, VersionedTransaction},
};
use solana_transaction_status_client_types::UiTransactionEncoding;
use std::{str::FromStr, time::Duration};
use tokio::time::Instant;

/// How often a payment's status is asked while waiting for it.
const POLL: Duration = Duration::from_millis(200);
/// Polls between two sends of a payment still not seen.
const RESEND_EVERY: u32 = 10;
/// Signatures per page of an account's history.
const PAGE: usize = 1_000;
/// How much earlier than its claim a payment's transaction is searched for (clocks differ).
const CLOCK_SLACK_SECONDS: i64 = 120;

/// What the chain said about a sent payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landing {
    /// It landed and succeeded, at `slot`, at the configured commitment.
    Landed { slot: u64 },
    /// It was refused (before or after it was sent): it will never pay.
    Refused(String),
    /// Never seen, and its blockhash has expired: it will never land.
    Expired,
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

    /// Waits until `deadline` for a transaction someone else sent (`signature`, on
    /// `blockhash`) to land, like [`Self::wait`] without sending it.
    pub async fn wait_for(
        &self,
        signature: &Signature,
        blockhash: &Hash,
        deadline: Instant,
    ) -> Landing {
        loop {
            let last = Instant::now() >= deadline;
            match self.status(signature, blockhash, last).await {
                Landing::Unknown(_) if !last => tokio::time::sleep(POLL).await,
                known => return known,
            }
        }
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
                Ok(false) if history => Landing::Expired,
                Ok(_) => Landing::Unknown("not seen yet".into()),
                Err(error) => Landing::Unknown(error.to_string()),
            },
        }
    }

    /// The transaction that carries `signature` (its id, or another signer's signature) among
    /// those that touched `account` since `since` (unix seconds), and the slot it landed at:
    /// how a payment settled by someone else (an external facilitator, whose fee-payer
    /// signature is the id) is found when only its payer's signature is known. `Err` when the
    /// node did not answer.
    pub async fn find(
        &self,
        signature: &Signature,
        account: &Pubkey,
        since: i64,
    ) -> Result<Option<(Signature, u64)>, String> {
        let since = since.saturating_sub(CLOCK_SLACK_SECONDS);
        let mut before = None;
        loop {
            let page = self
                .rpc
                .get_signatures_for_address_with_config(
                    account,
                    GetConfirmedSignaturesForAddress2Config {
                        before,
                        until: None,
                        limit: Some(PAGE),
                        commitment: Some(self.commitment),
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
            for entry in &page {
                if entry.block_time.is_some_and(|time| time < since) {
                    return Ok(None);
                }
                let Ok(id) = Signature::from_str(&entry.signature) else {
                    continue;
                };
                if entry.err.is_some() {
                    continue;
                }
                if id == *signature || self.carries(&id, signature).await? {
                    return Ok(Some((id, entry.slot)));
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE => {
                    before = Signature::from_str(&last.signature).ok();
                }
                _ => return Ok(None),
            }
        }
    }

    /// Whether transaction `id` is signed with `signature`.
    async fn carries(&self, id: &Signature, signature: &Signature) -> Result<bool, String> {
        let tx = self
            .rpc
            .get_transaction_with_config(
                id,
                RpcTransactionConfig {
                    encoding: Some(UiTransactionEncoding::Base64),
                    commitment: Some(self.commitment),
                    max_supported_transaction_version: Some(0),
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(tx
            .transaction
            .transaction
            .decode()
            .is_some_and(|tx| tx.signatures.contains(signature)))
    }
}
