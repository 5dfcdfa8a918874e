//! x402 `escrow`: our scheme for wallets registered with the program. The client signs the
//! program's spending authorisation (`balance_payment::authorization`) for at least the
//! request's worst case in the offer's token; the gateway checks it, claims it in the ledger
//! (so replicas lock it once), `lock_token`s the worst case in the wallet's vault, serves the
//! request, and `settle_token`s what it cost, rounded up to a whole base unit: nothing is
//! collected beyond the cost, and the rest of the lock returns to the wallet's vault at once.
//!
//! The settlement is credited to the wallet like any payment and the request's debit charged
//! against it ([`settle`]), so `/v1/usage`, the audit and the Nostr debit see an escrow-paid
//! request like any other. A replica that dies mid-way loses the wallet nothing: housekeeping
//! releases a lock whose request was lost (settled at zero) and finishes a settlement whose
//! cost was recorded. The operator, not the wallet, carries a request lost while it was served.
pub mod settle;

use super::{
    wire::{
        self, escrow_extra_data_hex, EscrowPayload, PaymentPayload, Requirements, SettleResponse,
        ESCROW_EXTRA_DATA, ESCROW_SCHEME,
    },
    Landing, X402,
};
use crate::error::ApiError;
use balance_payment::{
    authorization::{Asset, RecoverInfo},
    sdk::{
        authorization::verify_signature_in,
        pda, spl,
        token_instructions::{self, TokenRedeemer},
    },
};
use ledger::{EscrowLock, EscrowState, Ledger};
use serde_json::json;
use solana_sdk::{
    hash::Hash,
    instruction::Instruction,
    message::{v0, VersionedMessage},
    pubkey::Pubkey,
    signature::{read_keypair_file, Keypair, Signature},
    signer::Signer,
    transaction::VersionedTransaction,
};
use std::{path::Path, str::FromStr, time::Duration};
use tokio::time::Instant;

/// The gateway as the namespace's bot, for locks and settlements.
pub struct Escrow {
    bot: Keypair,
    /// The deployment's cluster tag (`Global::cluster`): what authorisations are signed for.
    cluster: [u8; 32],
    pub(super) redeemer: TokenRedeemer,
    /// Who settlements pay: the namespace's treasury.
    pub(super) treasury: Pubkey,
    /// The shortest time from now to an authorisation's deadline that is taken: the longest a
    /// request may run, and time to settle after it.
    min_lock: Duration,
}

/// A request's lock, landed: the request is the wallet's, served on the lock.
#[derive(Debug, Clone)]
pub struct Locked {
    pub lock: EscrowLock,
    /// The `PAYMENT-RESPONSE` header's value.
    pub response: String,
}

impl Escrow {
    /// Reads the bot's key and checks it against the chain: the namespace's bot, the asset
    /// accepted by the namespace, the treasury's token account open.
    pub async fn connect(
        file: &Path,
        rpc_url: &str,
        namespace_id: u64,
        asset: &common::assets::TokenRate,
        request_timeout: Duration,
    ) -> Result<Self, String> {
        let bot = read_keypair_file(file)
            .map_err(|e| format!("escrow_bot_keypair_file {}: {e}", file.display()))?;
        let client = common::chain::client::ProgramClient::new(rpc_url);
        let unreachable = |e: common::chain::client::ClientError| e.to_string();
        let namespace = client
            .require_namespace(namespace_id)
            .await
            .map_err(unreachable)?;
        if namespace.bot != bot.pubkey() {
            return Err(format!(
                "escrow_bot_keypair_file holds {}, but namespace {namespace_id}'s bot is {}",
                bot.pubkey(),
                namespace.bot
            ));
        }
        let global = client
            .global()
            .await
            .map_err(unreachable)?
            .ok_or("the program is not initialised")?;
        client
            .require_accepted(namespace_id, &asset.mint)
            .await
            .map_err(unreachable)?;
        let treasury_tokens =
            spl::associated_token_address(&namespace.treasury, &asset.mint, &asset.token_program);
        if !client
            .account_exists(&treasury_tokens)
            .await
            .map_err(unreachable)?
        {
            return Err(format!(
                "the treasury {} has no token account of {} ({treasury_tokens}) to settle into",
                namespace.treasury, asset.mint
            ));
        }
        Ok(Self {
            bot,
            cluster: global.cluster,
            redeemer: TokenRedeemer {
                bot: namespace.bot,
                namespace_id,
                mint: asset.mint,
                token_program: asset.token_program,
                treasury_tokens,
            },
            treasury: namespace.treasury,
            min_lock: request_timeout + Duration::from_secs(180),
        })
    }

    /// The bot's transaction of `instructions` on `blockhash`, signed.
    fn transaction(
        &self,
        instructions: &[Instruction],
        blockhash: Hash,
    ) -> Result<VersionedTransaction, String> {
        let message = v0::Message::try_compile(&self.bot.pubkey(), instructions, &[], blockhash)
            .map_err(|e| e.to_string())?;
        VersionedTransaction::try_new(VersionedMessage::V0(message), &[&self.bot])
            .map_err(|e| e.to_string())
    }
}

impl X402 {
    /// The `escrow` offer for a request whose worst case is `tokens`, when it is on.
    pub fn escrow_offer(&self, tokens: i64) -> Option<Requirements> {
        let escrow = self.escrow.as_ref()?;
        Some(Requirements {
            scheme: ESCROW_SCHEME.into(),
            network: self.network.clone(),
            amount: self.units_for(tokens).to_string(),
            asset: self.asset.mint.to_string(),
            pay_to: escrow.treasury.to_string(),
            max_timeout_seconds: self.max_timeout.as_secs(),
            extra: json!({
                "program": balance_payment::ID.to_string(),
                "cluster": Pubkey::new_from_array(escrow.cluster).to_string(),
                "namespaceId": escrow.redeemer.namespace_id,
                "minLockSeconds": escrow.min_lock.as_secs(),
                "extraData": escrow_extra_data_hex(),
            }),
        })
    }

    /// Locks the authorisation in `header` for request `request_id`, whose worst case is
    /// `tokens`: on success the lock landed and the request is the wallet's to serve.
    pub async fn lock(
        &self,
        ledger: &Ledger,
        header: &str,
        tokens: i64,
        request_id: &str,
    ) -> Result<Locked, ApiError> {
        let refuse = |reason, message: String| self.refuse(tokens, reason, message);
        let escrow = self.escrow.as_ref().ok_or_else(|| {
            refuse(
                "invalid_escrow_unsupported",
                "this gateway does not take the escrow scheme".into(),
            )
        })?;
        let payment: PaymentPayload = wire::decode(header).ok_or_else(|| {
            refuse(
                "invalid_payload",
                "PAYMENT-SIGNATURE is not base64 JSON".into(),
            )
        })?;
        let needed = self.units_for(tokens);
        let (user, info) = self
            .check_authorization(escrow, &payment, needed, ledger.now())
            .map_err(|(reason, message)| refuse(reason, message))?;
        let blockhash = self
            .chain
            .rpc()
            .get_latest_blockhash()
            .await
            .map_err(|e| ApiError::Upstream(format!("the chain did not answer: {e}")))?;
        let instructions = token_instructions::lock_token_authorized(
            escrow.cluster,
            &escrow.redeemer,
            user,
            info,
            needed,
        );
        let tx = escrow
            .transaction(&instructions, blockhash)
            .map_err(ApiError::Internal)?;
        let mut lock = EscrowLock {
            lock: pda::token_lock(&user, info.nonce).to_string(),
            payer: user.to_string(),
            mint: self.asset.mint.to_string(),
            nonce: info.nonce,
            max_amount: needed,
            deadline: info.deadline,
            request_id: request_id.to_owned(),
            lock_tx: tx.signatures[0].to_string(),
            blockhash: blockhash.to_string(),
        };
        let deadline = Instant::now() + self.max_timeout;
        let landing = match ledger.escrow_claim(&lock).await? {
            None => self.land(&tx, true, deadline).await,
            Some(EscrowState::Locking) => {
                // A copy of an authorisation whose first try's outcome is not known: wait
                // for that lock (not a new one), and serve if it lands and nobody else did —
                // and only if what it locks covers this request.
                let Some(claimed) = ledger.escrow_row(&lock.lock).await? else {
                    return Err(ApiError::LedgerUnavailable);
                };
                if claimed.lock.max_amount < needed {
                    return Err(refuse(
                        "invalid_escrow_amount",
                        format!(
                            "this authorisation is being locked for {} base units, less than                              this request's worst case of {needed}",
                            claimed.lock.max_amount
                        ),
                    ));
                }
                let (Ok(first), Ok(hash)) = (
                    Signature::from_str(&claimed.lock.lock_tx),
                    Hash::from_str(&claimed.lock.blockhash),
                ) else {
                    return Err(ApiError::Internal("an unreadable lock claim".into()));
                };
                lock = EscrowLock {
                    request_id: request_id.to_owned(),
                    ..claimed.lock
                };
                self.chain.wait_for(&first, &hash, deadline).await
            }
            Some(_) => {
                return Err(refuse(
                    "duplicate_settlement",
                    "this authorisation was already used for a request".into(),
                ))
            }
        };
        match landing {
            Landing::Landed { .. } => {
                if !ledger
                    .escrow_move(&lock.lock, EscrowState::Locking, EscrowState::Locked)
                    .await?
                {
                    return Err(refuse(
                        "duplicate_settlement",
                        "this authorisation was used by another request at the same time".into(),
                    ));
                }
                let response = wire::encode(&SettleResponse {
                    success: true,
                    error_reason: None,
                    payer: lock.payer.clone(),
                    transaction: lock.lock_tx.clone(),
                    network: self.network.clone(),
                    credited: None,
                });
                tracing::info!(lock = %lock.lock, payer = %lock.payer, units = lock.max_amount,
                    "x402 escrow locked");
                Ok(Locked { lock, response })
            }
            Landing::Refused(reason) => {
                ledger
                    .escrow_move(&lock.lock, EscrowState::Locking, EscrowState::Failed)
                    .await?;
                Err(refuse(
                    "invalid_escrow_lock_failed",
                    format!("the lock was refused by the chain and holds nothing: {reason}"),
                ))
            }
            Landing::Expired => {
                ledger
                    .escrow_move(&lock.lock, EscrowState::Locking, EscrowState::Failed)
                    .await?;
                Err(refuse(
                    "invalid_escrow_lock_failed",
                    "the lock expired before it landed; it holds nothing".into(),
                ))
            }
            Landing::Unknown(reason) => Err(ApiError::X402 {
                status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
                code: "settlement_pending",
                message: format!(
                    "the lock was sent but has not landed yet ({reason}); send the same request \
                     with the same PAYMENT-SIGNATURE again to be served once it lands (a lock \
                     whose request is gone is released)"
                ),
                required: None,
                retry_after: Some(2),
            }),
        }
    }

    /// Checks the offer taken and the wallet's signature, as the program will: `Err` names the
    /// x402 reason and says why.
    fn check_authorization(
        &self,
        escrow: &Escrow,
        payment: &PaymentPayload,
        needed: u64,
        now: i64,
    ) -> Result<(Pubkey, RecoverInfo), (&'static str, String)> {
        let accepted = &payment.accepted;
        if payment.x402_version != wire::VERSION {
            return Err((
                "invalid_x402_version",
                format!("this gateway speaks x402 version {}", wire::VERSION),
            ));
        }
        if accepted.network != self.network {
            return Err((
                "invalid_network",
                format!(
                    "this gateway is paid on {}, not {}",
                    self.network, accepted.network
                ),
            ));
        }
        if accepted.asset != self.asset.mint.to_string()
            || accepted.pay_to != escrow.treasury.to_string()
        {
            return Err((
                "invalid_escrow_requirements",
                format!(
                    "escrow payments are in {} to {}",
                    self.asset.mint, escrow.treasury
                ),
            ));
        }
        let invalid = |what: &str| {
            (
                "invalid_escrow_payload",
                format!("the payload's {what} is not valid"),
            )
        };
        let payload: EscrowPayload = payment.payment().ok_or_else(|| invalid("shape"))?;
        let user = Pubkey::from_str(&payload.user).map_err(|_| invalid("user"))?;
        let nonce = payload.nonce.parse::<u64>().map_err(|_| invalid("nonce"))?;
        let max_amount = payload
            .max_amount
            .parse::<u64>()
            .map_err(|_| invalid("maxAmount"))?;
        let extra_data = from_hex(payload.extra_data.as_deref().unwrap_or(""));
        if extra_data.as_ref() != Some(ESCROW_EXTRA_DATA) {
            return Err((
                "invalid_escrow_extra_data",
                format!(
                    "an escrow authorisation signs the extra data {} (the offer's \
                     extra.extraData): a top-up authorisation never pays a request",
                    escrow_extra_data_hex()
                ),
            ));
        }
        let signature: [u8; 64] = bs58::decode(&payload.signature)
            .into_vec()
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| invalid("signature"))?;
        if max_amount < needed {
            return Err((
                "invalid_escrow_amount",
                format!(
                    "this request can cost up to {needed} base units of {}; the authorisation \
                     allows {max_amount}",
                    self.asset.mint
                ),
            ));
        }
        let shortest = i64::try_from(escrow.min_lock.as_secs()).unwrap_or(i64::MAX);
        if payload.deadline < now.saturating_add(shortest) {
            return Err((
                "invalid_escrow_deadline",
                format!(
                    "the authorisation's deadline must be at least {shortest} seconds from now \
                     (the longest a request runs, and time to settle it)"
                ),
            ));
        }
        let info = RecoverInfo {
            nonce,
            max_amount,
            deadline: payload.deadline,
            extra_data: *ESCROW_EXTRA_DATA,
            signature,
        };
        let namespace_id = escrow.redeemer.namespace_id;
        let asset = Asset::Token(self.asset.mint);
        if !verify_signature_in(escrow.cluster, namespace_id, user, asset, &info) {
            return Err((
                "invalid_escrow_signature",
                format!(
                    "the signature is not {user}'s over the authorisation of {max_amount} of \
                     {} in namespace {namespace_id} with nonce {nonce} on this cluster",
                    self.asset.mint
                ),
            ));
        }
        Ok((user, info))
    }
}

/// 32 bytes from 64 hex digits.
fn from_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::from_hex;

    #[test]
    fn extra_data_is_64_hex_digits() {
        let mut expected = [0u8; 32];
        expected[0] = 0xab;
        expected[31] = 0x01;
        let text = format!("ab{}01", "0".repeat(60));
        assert_eq!(from_hex(&text), Some(expected));
        assert_eq!(from_hex(&text.to_uppercase()), Some(expected));
        assert_eq!(from_hex("ab"), None, "too short");
        assert_eq!(from_hex(&format!("zz{}", "0".repeat(62))), None, "not hex");
        assert_eq!(from_hex(&"é".repeat(32)), None, "not ASCII");
    }
}
