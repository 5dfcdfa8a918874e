//! The chain through a Solana RPC node: `sendTransaction` to submit; `getSignaturesForAddress`
//! (back-fill from the cursor, after start or any reconnect) plus `getTransaction` to read
//! events; `logsSubscribe` over the websocket only to wake the watcher early.
use super::{decode::events_in_transaction, Chain, ChainError, ChainEvent, EventBatch};
use async_trait::async_trait;
use solana_commitment_config::CommitmentConfig;
use solana_rpc_client::{
    api::{
        client_error::{Error as ClientError, ErrorKind as ClientErrorKind},
        request::RpcError,
    },
    nonblocking::rpc_client::RpcClient,
    rpc_client::GetConfirmedSignaturesForAddress2Config,
};
use solana_rpc_client_types::{
    config::{RpcTransactionConfig, RpcTransactionLogsConfig, RpcTransactionLogsFilter},
    request::RpcRequest,
};
use solana_sdk::{
    instruction::Instruction,
    pubkey::Pubkey,
    signature::{Keypair, Signature, Signer},
    transaction::Transaction,
};
use solana_transaction_status_client_types::UiTransactionEncoding;
use std::{str::FromStr, sync::Arc, time::Duration};
use tokio::sync::Notify;

/// Signatures fetched per `getSignaturesForAddress` page (the RPC maximum).
const PAGE: usize = 1_000;

/// How many of a user's newest transactions are searched for a lost payment: far more than a
/// user makes while the controller retries one request.
const PAYMENT_LOOKUP_DEPTH: usize = 100;

/// How often a submitted transaction's status is asked for until it is confirmed. The RPC
/// client's own loop asks twice a second, which adds up to half a second to every top-up and
/// registration; a confirmation takes about a second on a public cluster, so this costs a few
/// more `getSignatureStatuses` calls per transaction.
const CONFIRM_POLL: Duration = Duration::from_millis(100);

pub struct RpcChain {
    pub(super) client: RpcClient,
    program_id: Pubkey,
    /// What events (and so payments) are read at: `finalized` unless configured otherwise.
    events_commitment: CommitmentConfig,
    activity: Arc<Notify>,
}

impl From<crate::config::Commitment> for CommitmentConfig {
    fn from(level: crate::config::Commitment) -> Self {
        match level {
            crate::config::Commitment::Confirmed => CommitmentConfig::confirmed(),
            crate::config::Commitment::Finalized => CommitmentConfig::finalized(),
        }
    }
}

/// What a failed `sendTransaction` means. Refused: by its simulation (the program's error),
/// or by the node as a transaction it can never take (malformed, too large, badly signed, an
/// unsupported version) — nothing reached the chain, and sending the same again is pointless.
/// Anything else (no answer, a node behind or unhealthy) leaves the outcome unknown.
fn send_error(error: &ClientError) -> ChainError {
    if let Some(refused) = error.get_transaction_error() {
        return ChainError::rejected(&refused);
    }
    match error.kind() {
        ClientErrorKind::RpcError(RpcError::RpcResponseError { code, message, .. })
            if NEVER_TAKEN.contains(code) =>
        {
            ChainError::Rejected {
                code: None,
                message: message.clone(),
            }
        }
        _ => ChainError::unavailable(error),
    }
}

/// JSON-RPC error codes of a `sendTransaction` the node will never take: invalid request,
/// invalid params (a transaction too large or undecodable), a signature that does not verify,
/// a signature count that does not match, an unsupported transaction version.
const NEVER_TAKEN: [i64; 5] = [-32600, -32602, -32003, -32013, -32015];

impl RpcChain {
    /// Sends `tx` (preflight at the client's commitment) and asks for its status every
    /// [`CONFIRM_POLL`] until it is confirmed or fails; `None` once `blockhash` has expired
    /// without it landing, after which it never can.
    async fn send_and_confirm(
        &self,
        tx: &Transaction,
        blockhash: &solana_sdk::hash::Hash,
    ) -> Result<Option<Signature>, ChainError> {
        let signature = self
            .client
            .send_transaction(tx)
            .await
            .map_err(|error| send_error(&error))?;
        loop {
            let status = self
                .client
                .get_signature_status(&signature)
                .await
                .map_err(ChainError::unavailable)?;
            match status {
                Some(Ok(())) => return Ok(Some(signature)),
                Some(Err(error)) => return Err(ChainError::rejected(&error)),
                None => {
                    let valid = self
                        .client
                        .is_blockhash_valid(blockhash, CommitmentConfig::processed())
                        .await
                        .map_err(ChainError::unavailable)?;
                    if !valid {
                        return Ok(None);
                    }
                    tokio::time::sleep(CONFIRM_POLL).await;
                }
            }
        }
    }

    /// Talks to `rpc_url`; when `ws_url` is given, subscribes to the program's logs there so
    /// new events are read as soon as they land (else every poll interval). Transactions are
    /// confirmed at `confirmed`; events count once they reach `events_commitment`.
    pub fn new(
        rpc_url: &str,
        ws_url: Option<&str>,
        program_id: Pubkey,
        events_commitment: CommitmentConfig,
    ) -> Self {
        let activity = Arc::new(Notify::new());
        if let Some(ws_url) = ws_url {
            tokio::spawn(subscribe_logs(
                ws_url.to_owned(),
                program_id,
                activity.clone(),
            ));
        }
        Self {
            client: RpcClient::new_with_commitment(
                rpc_url.to_owned(),
                CommitmentConfig::confirmed(),
            ),
            program_id,
            events_commitment,
            activity,
        }
    }

    async fn signatures_after(
        &self,
        until: Option<Signature>,
    ) -> Result<Vec<(String, u64)>, ChainError> {
        let mut newest_first = Vec::new();
        let mut before = None;
        loop {
            let page = self
                .client
                .get_signatures_for_address_with_config(
                    &self.program_id,
                    GetConfirmedSignaturesForAddress2Config {
                        before,
                        until,
                        limit: Some(PAGE),
                        commitment: Some(self.events_commitment),
                    },
                )
                .await
                .map_err(ChainError::unavailable)?;
            let full = page.len() == PAGE;
            before = page
                .last()
                .and_then(|s| Signature::from_str(&s.signature).ok());
            newest_first.extend(
                page.into_iter()
                    .filter(|s| s.err.is_none())
                    .map(|s| (s.signature, s.slot)),
            );
            if !full || before.is_none() {
                break;
            }
        }
        newest_first.reverse();
        Ok(newest_first)
    }

    /// This program's events in transaction `signature`, read at `commitment`.
    async fn events_of(
        &self,
        signature: &str,
        slot: u64,
        commitment: CommitmentConfig,
    ) -> Result<Vec<ChainEvent>, ChainError> {
        let parsed = Signature::from_str(signature).map_err(ChainError::unavailable)?;
        let tx = self
            .client
            .get_transaction_with_config(
                &parsed,
                RpcTransactionConfig {
                    encoding: Some(UiTransactionEncoding::Json),
                    commitment: Some(commitment),
                    max_supported_transaction_version: Some(0),
                },
            )
            .await
            .map_err(ChainError::unavailable)?;
        Ok(events_in_transaction(&tx, &self.program_id.to_string())
            .into_iter()
            .enumerate()
            .map(|(index, event)| ChainEvent {
                signature: signature.to_owned(),
                index: index as u32,
                slot,
                event,
            })
            .collect())
    }
}

#[async_trait]
impl Chain for RpcChain {
    async fn submit(
        &self,
        instructions: &[Instruction],
        signers: &[&Keypair],
    ) -> Result<String, ChainError> {
        let fee_payer = signers
            .first()
            .ok_or_else(|| ChainError::unavailable("no signer to pay the fee"))?;
        let blockhash = self
            .client
            .get_latest_blockhash()
            .await
            .map_err(ChainError::unavailable)?;
        let tx = Transaction::new_signed_with_payer(
            instructions,
            Some(&fee_payer.pubkey()),
            signers,
            blockhash,
        );
        match self.send_and_confirm(&tx, &blockhash).await? {
            Some(signature) => Ok(signature.to_string()),
            None => Err(ChainError::unavailable(
                "the transaction was not confirmed before its blockhash expired",
            )),
        }
    }

    /// The cursor is the newest signature already read.
    async fn events_after(&self, cursor: Option<&str>) -> Result<EventBatch, ChainError> {
        let until = cursor.and_then(|c| Signature::from_str(c).ok());
        let signatures = self.signatures_after(until).await?;
        let mut events = Vec::new();
        for (signature, slot) in &signatures {
            events.extend(
                self.events_of(signature, *slot, self.events_commitment)
                    .await?,
            );
        }
        let cursor = signatures
            .last()
            .map(|(s, _)| s.clone())
            .or_else(|| cursor.map(str::to_owned));
        Ok(EventBatch { events, cursor })
    }

    async fn lamports(&self, address: &Pubkey) -> Result<u64, ChainError> {
        self.client
            .get_balance_with_commitment(address, CommitmentConfig::confirmed())
            .await
            .map(|balance| balance.value)
            .map_err(ChainError::unavailable)
    }

    /// Looks through the newest transactions that touched the user's account (a `pay` always
    /// does), newest first, at `confirmed`. "None" only when that is the account's whole
    /// history; otherwise the caller is told to ask again (by then the watcher has it).
    async fn find_payment(
        &self,
        user: &Pubkey,
        namespace_id: u64,
        nonce: u64,
    ) -> Result<Option<ChainEvent>, ChainError> {
        let account = balance_payment::sdk::pda::user_account(user);
        let recent = self
            .client
            .get_signatures_for_address_with_config(
                &account,
                GetConfirmedSignaturesForAddress2Config {
                    before: None,
                    until: None,
                    limit: Some(PAYMENT_LOOKUP_DEPTH),
                    commitment: Some(CommitmentConfig::confirmed()),
                },
            )
            .await
            .map_err(ChainError::unavailable)?;
        let complete = recent.len() < PAYMENT_LOOKUP_DEPTH;
        for status in recent.into_iter().filter(|s| s.err.is_none()) {
            let events = self
                .events_of(
                    &status.signature,
                    status.slot,
                    CommitmentConfig::confirmed(),
                )
                .await?;
            if let Some(event) = events
                .into_iter()
                .find(|event| event.pays(user, namespace_id, nonce))
            {
                return Ok(Some(event));
            }
        }
        match complete {
            true => Ok(None),
            // Not found among the newest, but older ones exist: no "no" can be given yet.
            false => Err(ChainError::unavailable(format!(
                "no payment among the user's newest {PAYMENT_LOOKUP_DEPTH} transactions"
            ))),
        }
    }

    /// `getAccountInfo` with `base64` data, decoded here: the client's own helper panics on
    /// an answer it cannot decode, and a node's answer is input.
    async fn account_data(&self, address: &Pubkey) -> Result<Option<Vec<u8>>, ChainError> {
        let params = serde_json::json!([
            address.to_string(),
            { "encoding": "base64", "commitment": "confirmed" }
        ]);
        let response: serde_json::Value = self
            .client
            .send(RpcRequest::GetAccountInfo, params)
            .await
            .map_err(ChainError::unavailable)?;
        account_data_in(&response)
    }

    async fn wait_for_activity(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.activity.notified()).await;
    }
}

/// The account data in a `getAccountInfo` result (`{context, value}`), `None` when the
/// account does not exist; anything else than base64 data is an error.
fn account_data_in(result: &serde_json::Value) -> Result<Option<Vec<u8>>, ChainError> {
    use base64::Engine;
    let malformed = || ChainError::unavailable("getAccountInfo answered without base64 data");
    let value = result.get("value").ok_or_else(malformed)?;
    if value.is_null() {
        return Ok(None);
    }
    match value
        .get("data")
        .and_then(|data| data.as_array())
        .map(Vec::as_slice)
    {
        Some([data, encoding]) if encoding == "base64" => {
            let data = data.as_str().ok_or_else(malformed)?;
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .map(Some)
                .map_err(|_| malformed())
        }
        _ => Err(malformed()),
    }
}

/// Keeps a `logsSubscribe` open (reconnecting with back-off) and signals `activity` on every
/// notification. Losing it only delays reading: the watcher still polls.
async fn subscribe_logs(ws_url: String, program_id: Pubkey, activity: Arc<Notify>) {
    use futures_util::StreamExt;
    let mut backoff = Duration::from_secs(1);
    loop {
        match solana_pubsub_client::nonblocking::pubsub_client::PubsubClient::new(&ws_url).await {
            Ok(client) => {
                let subscription = client
                    .logs_subscribe(
                        RpcTransactionLogsFilter::Mentions(vec![program_id.to_string()]),
                        RpcTransactionLogsConfig {
                            commitment: Some(CommitmentConfig::confirmed()),
                        },
                    )
                    .await;
                match subscription {
                    Ok((mut stream, _unsubscribe)) => {
                        backoff = Duration::from_secs(1);
                        activity.notify_one();
                        while stream.next().await.is_some() {
                            activity.notify_one();
                        }
                        tracing::warn!("logs subscription ended; reconnecting");
                    }
                    Err(error) => tracing::warn!(%error, "logsSubscribe failed"),
                }
            }
            Err(error) => tracing::warn!(%error, "cannot reach the websocket endpoint"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use solana_rpc_client::api::request::RpcResponseErrorData;

    fn node_answer(code: i64) -> ClientError {
        ClientError::from(ClientErrorKind::RpcError(RpcError::RpcResponseError {
            code,
            message: format!("answer {code}"),
            data: RpcResponseErrorData::Empty,
        }))
    }

    #[test]
    fn a_transaction_the_node_can_never_take_is_refused_and_no_answer_is_unknown() {
        // Too large or undecodable (-32602): the controller used to retry such a payment
        // forever as "chain unavailable".
        for code in NEVER_TAKEN {
            assert!(
                matches!(
                    send_error(&node_answer(code)),
                    ChainError::Rejected { code: None, .. }
                ),
                "{code}"
            );
        }
        // A node unhealthy or behind (-32005), and no answer at all, leave it unknown.
        assert!(matches!(
            send_error(&node_answer(-32005)),
            ChainError::Unavailable(_)
        ));
        let cut = ClientError::from(ClientErrorKind::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert!(matches!(send_error(&cut), ChainError::Unavailable(_)));
    }
}
