//! One request paid with x402: the payment is checked, claimed in the ledger, co-signed and
//! sent (by the gateway, or by its facilitator), and credited to its payer once it lands —
//! then the request is served from the payer's balance. The ledger's claim makes every
//! replica agree: the first call to claim a payment sends it; a copy (a replay, a concurrent
//! retry) only waits for the same transaction; the one call that credits it is the one
//! request it pays for.
use super::{
    chain::Landing,
    verify::{self, Expected},
    wire::{self, ExactPayload, PaymentPayload, SettleResponse, MAX_HEADER_BYTES},
    Settler, SCHEME, X402,
};
use crate::error::ApiError;
use axum::http::StatusCode;
use base64::{engine::general_purpose::STANDARD, Engine};
use ledger::{Ledger, X402Payment, X402State};
use solana_sdk::{signer::Signer, transaction::VersionedTransaction};
use tokio::time::Instant;

/// A payment that landed and was credited to `payer` for this request.
#[derive(Debug, Clone)]
pub struct Settled {
    /// The wallet (base58) whose balance now pays the request.
    pub payer: String,
    /// The `PAYMENT-RESPONSE` header's value.
    pub response: String,
}

impl X402 {
    /// A refused payment: 402 with the offer for a request whose worst case is `tokens`, and
    /// the reason (also in the offer's `error`), so the client can pay again correctly.
    pub fn refuse(
        &self,
        tokens: i64,
        reason: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError::X402 {
            status: StatusCode::PAYMENT_REQUIRED,
            code: reason,
            message: message.into(),
            required: Some(Box::new(self.required(tokens, Some(reason)))),
            retry_after: None,
        }
    }

    /// The 402 for a request that came with neither credentials nor a payment.
    pub fn payment_required(&self, tokens: i64, message: impl Into<String>) -> ApiError {
        ApiError::X402 {
            status: StatusCode::PAYMENT_REQUIRED,
            code: "payment_required",
            message: message.into(),
            required: Some(Box::new(self.required(tokens, None))),
            retry_after: None,
        }
    }

    /// Settles the payment in `header` for request `request_id`, whose worst case is `tokens`
    /// ledger tokens. On success the payment is credited to its payer, and the request is
    /// theirs to serve from that balance.
    pub async fn pay(
        &self,
        ledger: &Ledger,
        header: &str,
        tokens: i64,
        request_id: &str,
    ) -> Result<Settled, ApiError> {
        let refuse = |reason, message: String| self.refuse(tokens, reason, message);
        if header.len() > MAX_HEADER_BYTES {
            return Err(refuse(
                "invalid_payload",
                "PAYMENT-SIGNATURE is too long".into(),
            ));
        }
        let payment: PaymentPayload = wire::decode(header).ok_or_else(|| {
            refuse(
                "invalid_payload",
                "PAYMENT-SIGNATURE is not base64 JSON of an x402 payment".into(),
            )
        })?;
        let accepted = &payment.accepted;
        if payment.x402_version != wire::VERSION {
            return Err(refuse(
                "invalid_x402_version",
                format!("this gateway speaks x402 version {}", wire::VERSION),
            ));
        }
        if accepted.scheme != SCHEME {
            return Err(refuse(
                "invalid_exact_svm_unsupported_scheme",
                format!("scheme {} is not offered here", accepted.scheme),
            ));
        }
        if accepted.network != self.network {
            return Err(refuse(
                "invalid_exact_svm_network_mismatch",
                format!(
                    "this gateway is paid on {}, not {}",
                    self.network, accepted.network
                ),
            ));
        }
        if accepted.asset != self.asset.mint.to_string() {
            return Err(refuse(
                "invalid_exact_svm_payload_mint_mismatch",
                format!(
                    "this gateway is paid in {}, not {}",
                    self.asset.mint, accepted.asset
                ),
            ));
        }
        if accepted.pay_to != self.pay_to.to_string() {
            return Err(refuse(
                "invalid_exact_svm_payload_recipient_mismatch",
                format!("payments go to {}, not {}", self.pay_to, accepted.pay_to),
            ));
        }
        let needed = self.units_for(tokens);
        let amount = accepted
            .amount
            .parse::<u64>()
            .ok()
            .filter(|amount| *amount >= needed)
            .ok_or_else(|| {
                refuse(
                    "invalid_exact_svm_payload_amount_mismatch",
                    format!(
                        "this request can cost up to {needed} base units of {}; the payment \
                         offers {}",
                        self.asset.mint, accepted.amount
                    ),
                )
            })?;
        let worth = self.asset.tokens_for(amount).ok_or_else(|| {
            refuse(
                "invalid_exact_svm_payload_amount_mismatch",
                "the amount is out of range".into(),
            )
        })?;
        let invalid = |invalid: verify::Invalid| refuse(invalid.reason(), invalid.to_string());
        let exact: ExactPayload = payment
            .payment()
            .ok_or_else(|| invalid(verify::Invalid::Undecodable))?;
        let bytes = STANDARD
            .decode(exact.transaction.trim())
            .map_err(|_| invalid(verify::Invalid::Undecodable))?;
        let mut tx = verify::decode(&bytes).map_err(invalid)?;
        let transfer = verify::check(
            &tx,
            &Expected {
                fee_payer: self.fee_payer(),
                mint: self.asset.mint,
                token_program: self.asset.token_program,
                decimals: self.asset.decimals,
                destination: self.destination,
                amount,
            },
        )
        .map_err(invalid)?;
        // What names the payment in the ledger, the same for every copy of it: the fee
        // payer's signature (deterministic) when the gateway signs, which is the transaction's
        // id; the payer's when a facilitator signs later.
        let claimed = match &self.settler {
            Settler::Own(fee_payer) => {
                tx.signatures[0] = fee_payer.sign_message(&tx.message.serialize());
                tx.signatures[0]
            }
            Settler::Facilitator { .. } => tx.signatures[1],
        };
        let signature = claimed.to_string();
        let payer = transfer.payer.to_string();
        let claim = X402Payment {
            signature: signature.clone(),
            payer: payer.clone(),
            mint: self.asset.mint.to_string(),
            amount,
            tokens: worth,
            blockhash: transfer.blockhash.to_string(),
            source: transfer.source.to_string(),
        };
        let deadline = Instant::now() + self.max_timeout;
        let first = match ledger.x402_claim(&claim).await? {
            None => true,
            Some(X402State::Submitted) => false,
            Some(X402State::Credited) => {
                return Err(refuse(
                    "duplicate_settlement",
                    "this payment was already used for a request; it was credited to the \
                     payer's balance, which pays with a login or a delegated key"
                        .into(),
                ))
            }
            Some(X402State::Failed) => {
                return Err(refuse(
                    "invalid_exact_svm_transaction_failed",
                    "this payment failed on chain and paid nothing; pay again".into(),
                ))
            }
        };
        let (landing, transaction) = match &self.settler {
            Settler::Own(_) => (self.land(&tx, first, deadline).await, claimed),
            Settler::Facilitator { facilitator, .. } => {
                let raw = wire::decode::<serde_json::Value>(header).unwrap_or_default();
                self.land_remotely(
                    facilitator,
                    ledger,
                    &raw,
                    &payment.accepted,
                    &mut tx,
                    &transfer.source,
                    tokens,
                    deadline,
                )
                .await?
            }
        };
        match landing {
            Landing::Landed { slot } => {
                let transaction = transaction.to_string();
                if !ledger
                    .x402_credit(
                        &signature,
                        &transaction,
                        slot,
                        self.namespace_id,
                        Some(request_id),
                    )
                    .await?
                {
                    return Err(refuse(
                        "duplicate_settlement",
                        "this payment was used by another request at the same time; it was \
                         credited to the payer's balance once"
                            .into(),
                    ));
                }
                tracing::info!(%transaction, %payer, amount, credited = worth,
                    "x402 payment landed and credited");
                let response = wire::encode(&SettleResponse {
                    success: true,
                    error_reason: None,
                    payer: payer.clone(),
                    transaction,
                    network: self.network.clone(),
                    credited: Some(worth),
                });
                Ok(Settled { payer, response })
            }
            Landing::Expired => {
                ledger.x402_fail(&signature).await?;
                Err(refuse(
                    "invalid_exact_svm_transaction_failed",
                    "the payment's blockhash expired before it landed; it paid nothing".into(),
                ))
            }
            Landing::Refused(reason) => {
                ledger.x402_fail(&signature).await?;
                Err(refuse(
                    "invalid_exact_svm_transaction_failed",
                    format!("the payment was refused by the chain and paid nothing: {reason}"),
                ))
            }
            Landing::Unknown(reason) => Err(ApiError::X402 {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "settlement_pending",
                message: format!(
                    "the payment was sent but has not landed yet ({reason}); send the same \
                     request with the same PAYMENT-SIGNATURE again to finish: it is credited \
                     once, never twice (and if the request is gone, to the payer's balance)"
                ),
                required: None,
                retry_after: Some(2),
            }),
        }
    }

    /// Sends `tx` (co-signed by the gateway) and waits until `deadline` for it to land. The
    /// `first` call to claim it decides from a refusal; a copy (whose first call may have
    /// died before sending) sends too but only waits for the same transaction.
    pub(super) async fn land(
        &self,
        tx: &VersionedTransaction,
        first: bool,
        deadline: Instant,
    ) -> Landing {
        if !first {
            let _ = self.chain.send(tx).await;
            return self.chain.wait(tx, deadline, true).await;
        }
        match self.chain.send(tx).await {
            Ok(()) | Err(Landing::Unknown(_)) => self.chain.wait(tx, deadline, true).await,
            // Refused by the simulation. A copy of it may have been sent meanwhile (copies
            // send too), and the simulation then refuses what already moved the funds: only a
            // transaction the chain has never seen has surely not paid.
            Err(refused) => match self.chain.seen(&tx.signatures[0]).await {
                Some(false) => refused,
                _ => self.chain.wait(tx, deadline, true).await,
            },
        }
    }
}
