//! Reads anyone may make of a deployment's chain, for checking its books (`indexer verify`):
//! when a block was made, and what token transfer a transaction made to an account owner.
use super::{rpc::RpcChain, ChainError};
use solana_commitment_config::CommitmentConfig;
use solana_rpc_client_types::config::RpcTransactionConfig;
use solana_sdk::signature::Signature;
use solana_transaction_status_client_types::{
    option_serializer::OptionSerializer, UiTransactionEncoding, UiTransactionTokenBalance,
};
use std::{collections::BTreeMap, str::FromStr};

/// A token transfer to an owner, read from a transaction's token balances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The owner whose balance of `mint` fell by `amount` (the payer).
    pub payer: String,
    pub mint: String,
    pub amount: u64,
}

impl RpcChain {
    /// When the block of `slot` was made (unix seconds), if the node knows.
    pub async fn block_time(&self, slot: u64) -> Result<Option<i64>, ChainError> {
        match self.client.get_block_time(slot).await {
            Ok(at) => Ok(Some(at)),
            Err(error) if error.to_string().contains("not available") => Ok(None),
            Err(error) => Err(ChainError::unavailable(error)),
        }
    }

    /// What `owner` received in the succeeded transaction `signature`: the one mint whose
    /// balance of `owner` rose, by how much, and from whom (the one owner whose balance of it
    /// fell by as much). `None` when the transaction failed, is unknown, or is not such a
    /// transfer.
    pub async fn received_by(
        &self,
        signature: &str,
        owner: &str,
    ) -> Result<Option<Received>, ChainError> {
        let Ok(parsed) = Signature::from_str(signature) else {
            return Ok(None);
        };
        let config = RpcTransactionConfig {
            encoding: Some(UiTransactionEncoding::Json),
            commitment: Some(CommitmentConfig::confirmed()),
            max_supported_transaction_version: Some(0),
        };
        let tx = match self
            .client
            .get_transaction_with_config(&parsed, config)
            .await
        {
            Ok(tx) => tx,
            Err(error) if error.to_string().contains("invalid type: null") => return Ok(None),
            Err(error) => return Err(ChainError::unavailable(error)),
        };
        let Some(meta) = tx.transaction.meta else {
            return Ok(None);
        };
        if meta.err.is_some() {
            return Ok(None);
        }
        let balances = |list: &OptionSerializer<Vec<UiTransactionTokenBalance>>| {
            let mut by: BTreeMap<(String, String), i128> = BTreeMap::new();
            if let OptionSerializer::Some(list) = list {
                for balance in list {
                    let OptionSerializer::Some(holder) = &balance.owner else {
                        continue;
                    };
                    let amount = balance.ui_token_amount.amount.parse::<i128>().unwrap_or(0);
                    *by.entry((holder.clone(), balance.mint.clone()))
                        .or_default() += amount;
                }
            }
            by
        };
        let (before, after) = (
            balances(&meta.pre_token_balances),
            balances(&meta.post_token_balances),
        );
        let mut changes: BTreeMap<(String, String), i128> = BTreeMap::new();
        for (key, amount) in &after {
            *changes.entry(key.clone()).or_default() += amount;
        }
        for (key, amount) in &before {
            *changes.entry(key.clone()).or_default() -= amount;
        }
        let received: Vec<(&String, i128)> = changes
            .iter()
            .filter(|((holder, _), change)| holder == owner && **change > 0)
            .map(|((_, mint), change)| (mint, *change))
            .collect();
        let [(mint, amount)] = received.as_slice() else {
            return Ok(None);
        };
        let payers: Vec<&String> = changes
            .iter()
            .filter(|((holder, m), change)| m == *mint && holder != owner && **change == -amount)
            .map(|((holder, _), _)| holder)
            .collect();
        let ([payer], Ok(amount)) = (payers.as_slice(), u64::try_from(*amount)) else {
            return Ok(None);
        };
        Ok(Some(Received {
            payer: (*payer).clone(),
            mint: (*mint).clone(),
            amount,
        }))
    }
}
