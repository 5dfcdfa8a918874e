//! The controller: answers user `Request`s by redeeming their signed authorisation with `pay`,
//! then announces the credit.
//!
//! Exactly once across crashes: a request is claimed in the ledger by its event id before
//! paying, so a replayed request is never paid twice; the program's nonce makes a second `pay`
//! of one authorisation impossible anyway. The credit and the `Status` reply are queued in the
//! outbox in the same transaction that marks the request paid, so they are published at least
//! once. A request whose payment outcome is unknown (the chain did not answer) stays claimed and
//! is retried; if its nonce turns out used, the chain watcher's record of the payment decides.
use crate::{
    chain::{Chain, ChainError},
    ledger::{Ledger, RequestState},
    nostr::events::sign_message,
    wire::{
        DsProxyMessage, DsProxyStatus, DsProxyStatusReason, RecoverInfoJson, RequestPayload,
        StatusPayload,
    },
};
use balance_payment::{
    errors::BalancePaymentError,
    sdk::{authorization::verify_signature, instructions::pay_authorized},
};
use nostr_sdk::prelude::{Event, JsonUtil, Keys, PublicKey};
use solana_sdk::{
    pubkey::Pubkey,
    signature::{Keypair, Signer},
};
use std::{str::FromStr, sync::Arc};

/// Who the controller is and what it may do.
pub struct ControllerConfig {
    /// The namespace's bot key: signs `pay`.
    pub bot: Keypair,
    pub namespace_id: u64,
    /// The deployment's cluster tag (`Global::cluster`, read with `chain::cluster::cluster_tag`):
    /// authorisations signed for another cluster are refused.
    pub cluster: [u8; 32],
    pub treasury: Pubkey,
    /// Signs the controller's Nostr events (credits and statuses).
    pub nostr_keys: Keys,
    pub session: String,
    /// The `p` tag of the controller's events: the gateway's Nostr address, which users
    /// address requests to. Must differ from `nostr_keys` (relays do not index self-tags).
    pub machine: PublicKey,
    /// Tokens credited per SOL paid.
    pub tokens_per_sol: u64,
    /// Most lamports one request may pay.
    pub max_lamports_per_request: u64,
}

/// What handling a request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Paid {
        signature: String,
        tokens: i64,
    },
    Refused(String),
    /// The chain did not answer; the request stays claimed and will be retried.
    Pending,
    /// Already handled before (a replay or a duplicate delivery).
    AlreadyHandled,
}

pub struct Controller {
    config: ControllerConfig,
    ledger: Ledger,
    chain: Arc<dyn Chain>,
}

/// A request that passed every off-chain check.
struct Checked {
    user: Pubkey,
    payload: RequestPayload,
    info: balance_payment::RecoverInfo,
    amount: u64,
}

impl Controller {
    pub fn new(config: ControllerConfig, ledger: Ledger, chain: Arc<dyn Chain>) -> Self {
        Self {
            config,
            ledger,
            chain,
        }
    }

    /// Tokens for `lamports`, multiplying before dividing; `None` when they overflow the ledger.
    pub fn tokens_for(&self, lamports: u64) -> Option<i64> {
        let tokens = lamports as u128 * self.config.tokens_per_sol as u128 / 1_000_000_000;
        i64::try_from(tokens).ok()
    }

    /// Handles one `Request` event addressed to this controller.
    pub async fn handle(&self, event: &Event) -> anyhow::Result<Outcome> {
        let request_id = event.id.to_hex();
        let checked = match self.check(event) {
            Ok(checked) => checked,
            Err(reason) => {
                // Recorded by request id, so a replay is answered once.
                let status = self.status(&request_id, None, None, Some(&reason))?;
                return Ok(
                    match self
                        .ledger
                        .refuse_unclaimed(&request_id, &reason, &[status])
                        .await?
                    {
                        true => Outcome::Refused(reason),
                        false => Outcome::AlreadyHandled,
                    },
                );
            }
        };
        let user = checked.user.to_string();
        let event_json = event.as_json();
        let claim = self.ledger.claim_request(
            &request_id,
            &user,
            checked.payload.nonce,
            checked.amount,
            &event_json,
        );
        match claim.await? {
            None => {}
            Some(existing) if existing.state == RequestState::Paying => {}
            Some(_) => return Ok(Outcome::AlreadyHandled),
        }
        self.pay(&request_id, &checked).await
    }

    /// Retries requests whose payment outcome is unknown (after a crash or a chain outage):
    /// a payment the chain watcher has seen finishes them, otherwise they are paid again (the
    /// program's nonce makes a double payment impossible).
    pub async fn resume(&self) -> anyhow::Result<Vec<Outcome>> {
        let mut outcomes = Vec::new();
        for record in self.ledger.unfinished_requests().await? {
            let parsed = record
                .event_json
                .as_deref()
                .ok_or_else(|| "request cannot be resumed".to_owned())
                .and_then(|json| Event::from_json(json).map_err(|e| e.to_string()))
                .and_then(|event| self.parse(&event));
            let outcome = match parsed {
                Ok(parsed) => {
                    let landed = self
                        .ledger
                        .payment_for(&record.user, self.config.namespace_id, record.nonce)
                        .await?;
                    match landed {
                        Some(payment) => {
                            self.finish_paid(&record.id, &parsed, &payment.signature)
                                .await?
                        }
                        None => match self.verify(parsed) {
                            Ok(checked) => self.pay(&record.id, &checked).await?,
                            Err(reason) => self.refuse(&record.id, None, reason).await?,
                        },
                    }
                }
                Err(reason) => self.refuse(&record.id, None, reason).await?,
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    async fn refuse(
        &self,
        request_id: &str,
        checked: Option<&Checked>,
        reason: String,
    ) -> anyhow::Result<Outcome> {
        let status = self.status(request_id, checked, None, Some(&reason))?;
        self.ledger
            .finish_request(
                request_id,
                RequestState::Refused,
                None,
                Some(&reason),
                &[status],
            )
            .await?;
        Ok(Outcome::Refused(reason))
    }

    /// Every off-chain check: shape, namespace, amount, deadline, signature.
    fn check(&self, event: &Event) -> Result<Checked, String> {
        self.verify(self.parse(event)?)
    }

    /// The request's fields, without freshness checks.
    fn parse(&self, event: &Event) -> Result<Checked, String> {
        let message: DsProxyMessage = serde_json::from_str(&event.content)
            .map_err(|e| format!("not a gateway message: {e}"))?;
        let DsProxyMessage::Request { payload, .. } = message else {
            return Err("not a request".into());
        };
        let payload: RequestPayload =
            serde_json::from_str(&payload).map_err(|e| format!("bad payload: {e}"))?;
        let user = Pubkey::from_str(&payload.user)
            .map_err(|_| "user is not a Solana address".to_string())?;
        if payload
            .namespace_id
            .is_some_and(|ns| ns != self.config.namespace_id)
        {
            return Err(format!(
                "authorisation is for another namespace than {}",
                self.config.namespace_id
            ));
        }
        let recover: RecoverInfoJson = serde_json::from_str(&payload.recover_info)
            .map_err(|e| format!("bad recover_info: {e}"))?;
        let info = recover.to_recover_info(payload.nonce)?;
        let amount = payload
            .amount
            .unwrap_or(info.max_amount)
            .min(self.config.max_lamports_per_request);
        Ok(Checked {
            user,
            payload,
            info,
            amount,
        })
    }

    /// Whether a parsed request may be paid now.
    fn verify(&self, checked: Checked) -> Result<Checked, String> {
        let Checked {
            user, info, amount, ..
        } = &checked;
        let (user, info, amount) = (*user, *info, *amount);
        if amount == 0 {
            return Err("nothing to pay".into());
        }
        if self.tokens_for(amount).is_none() {
            return Err(format!("a credit for {amount} lamports would overflow"));
        }
        if amount > info.max_amount {
            return Err(format!(
                "amount {amount} is above the signed maximum {}",
                info.max_amount
            ));
        }
        if info.deadline < crate::ledger::now() {
            return Err("authorisation expired".into());
        }
        if !verify_signature(self.config.cluster, self.config.namespace_id, user, &info) {
            return Err("signature does not match the authorisation".into());
        }
        Ok(checked)
    }

    async fn pay(&self, request_id: &str, checked: &Checked) -> anyhow::Result<Outcome> {
        let c = &self.config;
        let instructions = pay_authorized(
            c.cluster,
            c.bot.pubkey(),
            c.namespace_id,
            c.treasury,
            checked.user,
            checked.info,
            checked.amount,
        );
        match self.chain.submit(&instructions, &[&c.bot]).await {
            Ok(signature) => self.finish_paid(request_id, checked, &signature).await,
            Err(ChainError::Rejected { code, message }) => {
                if code == Some(u32::from(BalancePaymentError::NonceMismatch)) {
                    let user = checked.user.to_string();
                    if let Some(payment) = self
                        .ledger
                        .payment_for(&user, c.namespace_id, checked.payload.nonce)
                        .await?
                    {
                        return self
                            .finish_paid(request_id, checked, &payment.signature)
                            .await;
                    }
                }
                self.refuse(request_id, Some(checked), refusal_reason(code, &message))
                    .await
            }
            Err(ChainError::Unavailable(error)) => {
                tracing::warn!(request_id, %error, "controller: chain unavailable; will retry");
                Ok(Outcome::Pending)
            }
        }
    }

    async fn finish_paid(
        &self,
        request_id: &str,
        checked: &Checked,
        signature: &str,
    ) -> anyhow::Result<Outcome> {
        let tokens = self
            .tokens_for(checked.amount)
            .ok_or_else(|| anyhow::anyhow!("credit for {} lamports overflows", checked.amount))?;
        let credit = DsProxyMessage::Transaction {
            user: checked.user.to_string(),
            tokens,
            reference: Some(signature.to_owned()),
            model: None,
        };
        let credit = sign_message(
            &self.config.nostr_keys,
            &self.config.session,
            &self.config.machine,
            &credit,
        )?;
        let events = [
            (format!("credit:{signature}"), credit.as_json()),
            self.status(request_id, Some(checked), Some((signature, tokens)), None)?,
        ];
        self.ledger
            .finish_request(
                request_id,
                RequestState::Paid,
                Some(signature),
                None,
                &events,
            )
            .await?;
        Ok(Outcome::Paid {
            signature: signature.to_owned(),
            tokens,
        })
    }

    /// The signed `Status` reply to request `request_id`, as (dedupe key, JSON).
    fn status(
        &self,
        request_id: &str,
        checked: Option<&Checked>,
        paid: Option<(&str, i64)>,
        error: Option<&str>,
    ) -> anyhow::Result<(String, String)> {
        let payload = StatusPayload {
            user: checked.map(|c| c.payload.user.clone()).unwrap_or_default(),
            nonce: checked.map(|c| c.payload.nonce).unwrap_or_default(),
            recover_info: checked
                .map(|c| c.payload.recover_info.clone())
                .unwrap_or_default(),
            signature: paid.map(|(s, _)| s.to_owned()),
            tokens: paid.map(|(_, t)| t),
            error: error.map(str::to_owned),
        };
        let message = DsProxyMessage::Status {
            status: DsProxyStatus::Available,
            reason: if error.is_some() {
                DsProxyStatusReason::LockFailed
            } else {
                DsProxyStatusReason::UserRequest
            },
            initial_request: request_id.to_owned(),
            payload: serde_json::to_string(&payload)?,
        };
        let event = sign_message(
            &self.config.nostr_keys,
            &self.config.session,
            &self.config.machine,
            &message,
        )?;
        Ok((format!("status:{request_id}"), event.as_json()))
    }
}

/// A short reason for a program refusal, naming the program error when it is one.
fn refusal_reason(code: Option<u32>, message: &str) -> String {
    use BalancePaymentError as E;
    let known = [
        E::AmountExceedsSignedMax,
        E::AuthorizationExpired,
        E::NonceMismatch,
        E::SignedMessageMismatch,
        E::SignerMismatch,
        E::InsufficientFunds,
        E::UnauthorizedBot,
        E::WrongTreasury,
        E::ZeroAmount,
    ];
    code.and_then(|code| known.into_iter().find(|e| u32::from(*e) == code))
        .map(|e| format!("refused by the program: {e}"))
        .unwrap_or_else(|| format!("refused by the chain: {message}"))
}
