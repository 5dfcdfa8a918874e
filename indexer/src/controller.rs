//! The controller: answers user `Request`s by redeeming their signed authorisation with `pay`,
//! then announces the credit.
//!
//! Exactly once across crashes: a request is claimed in the ledger by its event id before
//! paying, so a replayed request is never paid twice; the program's nonce makes a second `pay`
//! of one authorisation impossible anyway. The credit and the `Status` reply are queued in the
//! outbox in the same transaction that marks the request paid, so they are published at least
//! once. A request whose payment outcome is unknown (the chain did not answer) stays claimed and
//! is retried; if its nonce turns out used, the payment that used it (recorded by the chain
//! watcher, or looked up on chain when the watcher lags) finishes it: a redeemed authorisation
//! is never refused.
//!
//! What is paid is exactly what the user signed (`max amount`; the program refuses any other
//! amount), so a copied `Request` with another `amount` cannot change it. Each credit announces
//! what the payment it references is worth (its lamports × `tokens_per_sol`, or its base units
//! at the rate of its token), never a claim. A request naming a mint is redeemed with
//! `pay_token` from the user's token vault; the mint must be one the operator prices.
//!
//! Anything anyone can publish is refused cheaply: shape, namespace, amount, deadline and the
//! wallet signature are checked in memory, then one chain read (registered? nonce? funds?);
//! such refusals write nothing and send nothing, so a flood of them costs no ledger write and no
//! transaction. Only a request that passed them is claimed in the ledger and paid.
use crate::{
    chain::{Chain, ChainError},
    ledger::{tokens_for_lamports, Ledger, RequestRecord, RequestState},
    nostr::events::sign_message,
    wire::{
        DsProxyMessage, DsProxyStatus, DsProxyStatusReason, RecoverInfoJson, RequestPayload,
        StatusPayload,
    },
};
use balance_payment::{
    authorization::Asset,
    errors::BalancePaymentError,
    sdk::{
        accounts, authorization::verify_signature_in, events::ProgramEvent,
        instructions::pay_authorized, pda, spl, token_instructions,
    },
    state::{TokenBalance, UserAccount},
};
use common::assets::TokenRate;
use nostr_sdk::prelude::{Event, JsonUtil, Keys, PublicKey};
use solana_sdk::{
    pubkey::Pubkey,
    rent::Rent,
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
    /// Most lamports one request may pay: larger authorisations are refused, never cut.
    pub max_lamports_per_request: u64,
    /// The tokens taken beside SOL, and their rates; a request in any other mint is refused.
    pub tokens: Arc<[TokenRate]>,
}

/// What handling a request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Paid {
        signature: String,
        tokens: i64,
    },
    /// Refused after it was claimed: recorded, and the reason sent to the user.
    Refused(String),
    /// Refused by the cheap checks: nothing written, nothing sent.
    Ignored(String),
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
    /// What `pay` moves: exactly the signed amount.
    amount: u64,
    /// The token spent, with its rate; `None` for SOL.
    token: Option<TokenRate>,
}

impl Checked {
    fn asset(&self) -> Asset {
        self.token
            .map_or(Asset::Lamports, |token| Asset::Token(token.mint))
    }
}

/// A payment found on chain or in the ledger: what finishes a request.
struct Landed {
    signature: String,
    /// Lamports, or base units of the request's token.
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
        tokens_for_lamports(lamports, self.config.tokens_per_sol)
    }

    /// Tokens for `amount` of what `checked` spends (lamports, or its token's base units).
    fn worth(&self, checked: &Checked, amount: u64) -> Option<i64> {
        match checked.token {
            None => self.tokens_for(amount),
            Some(token) => token.tokens_for(amount),
        }
    }

    /// Handles one `Request` event addressed to this controller, in a span (one trace per
    /// top-up when traces are exported) named by the request's event id.
    pub async fn handle(&self, event: &Event) -> anyhow::Result<Outcome> {
        let request_id = event.id.to_hex();
        let span = tracing::info_span!(parent: None, "topup", %request_id, author = %event.pubkey);
        tracing::Instrument::instrument(self.handle_request(event, request_id), span).await
    }

    async fn handle_request(&self, event: &Event, request_id: String) -> anyhow::Result<Outcome> {
        let checked = match self.check(event) {
            Ok(checked) => checked,
            Err(reason) => return Ok(self.ignore(&request_id, reason)),
        };
        let user = checked.user.to_string();
        let c = &self.config;
        // A copy of an authorisation already redeemed costs one read, no write.
        if self
            .ledger
            .payment_for(&user, c.namespace_id, checked.payload.nonce)
            .await?
            .is_some()
        {
            return Ok(Outcome::AlreadyHandled);
        }
        match self.preflight(&checked).await {
            Ok(None) => {}
            Ok(Some(reason)) => return Ok(self.ignore(&request_id, reason)),
            // No answer is no refusal: claimed, the request is retried until the chain answers.
            Err(error) => {
                tracing::warn!(request_id, %error, "controller: cannot run the chain checks")
            }
        }
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

    fn ignore(&self, request_id: &str, reason: String) -> Outcome {
        tracing::info!(request_id, %reason, "controller: request refused by the cheap checks");
        Outcome::Ignored(reason)
    }

    /// Retries requests whose payment outcome is unknown (after a crash or a chain outage):
    /// a payment of their authorisation (in the ledger, or on chain ahead of the watcher)
    /// finishes them, otherwise they are paid again (the program's nonce makes a double
    /// payment impossible). Freshness is checked only before paying again: a redeemed
    /// authorisation whose deadline has passed is still credited.
    pub async fn resume(&self) -> anyhow::Result<Vec<Outcome>> {
        let mut outcomes = Vec::new();
        for record in self.ledger.unfinished_requests().await? {
            let span =
                tracing::info_span!(parent: None, "topup", request_id = %record.id, resumed = true);
            let outcome = tracing::Instrument::instrument(self.resume_one(&record), span).await?;
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    async fn resume_one(&self, record: &RequestRecord) -> anyhow::Result<Outcome> {
        let parsed = record
            .event_json
            .as_deref()
            .ok_or_else(|| "request cannot be resumed".to_owned())
            .and_then(|json| Event::from_json(json).map_err(|e| e.to_string()))
            .and_then(|event| self.parse(&event));
        let outcome = match parsed {
            Ok(parsed) => match self.landed(&parsed).await {
                Ok(Some(landed)) => self.finish_paid(&record.id, &parsed, &landed).await?,
                Ok(None) => match self.verify(parsed) {
                    Ok(checked) => self.pay(&record.id, &checked).await?,
                    Err(reason) => self.refuse(&record.id, None, reason).await?,
                },
                Err(error) => {
                    tracing::warn!(request_id = record.id, %error, "controller: cannot look the payment up; will retry");
                    Outcome::Pending
                }
            },
            Err(reason) => self.refuse(&record.id, None, reason).await?,
        };
        Ok(outcome)
    }

    /// The payment that redeemed this request's authorisation, if there is one: from the
    /// ledger (the watcher saw it), else from the chain itself (the watcher lags behind).
    async fn landed(&self, checked: &Checked) -> Result<Option<Landed>, ChainError> {
        let c = &self.config;
        let nonce = checked.payload.nonce;
        let recorded = self
            .ledger
            .payment_for(&checked.user.to_string(), c.namespace_id, nonce)
            .await
            .map_err(ChainError::unavailable)?;
        let mint = checked.token.map(|token| token.mint.to_string());
        // The nonce is shared by SOL and tokens: a payment in another asset is not this one.
        if let Some(payment) = recorded.filter(|payment| payment.mint == mint) {
            return Ok(Some(Landed {
                signature: payment.signature,
                amount: payment.amount,
            }));
        }
        let found = self
            .chain
            .find_payment(&checked.user, c.namespace_id, nonce)
            .await?;
        Ok(found.and_then(|event| match event.event {
            ProgramEvent::Paid(paid) if checked.token.is_none() => Some(Landed {
                signature: event.signature,
                amount: paid.amount,
            }),
            ProgramEvent::TokenPaid(paid) if Some(paid.mint) == checked.token.map(|t| t.mint) => {
                Some(Landed {
                    signature: event.signature,
                    amount: paid.amount,
                })
            }
            _ => None,
        }))
    }

    /// One chain read instead of a transaction: is the wallet registered, does the nonce
    /// match, does the vault hold the amount? `Some(reason)` refuses. A nonce already past
    /// this one goes on: the authorisation may be ours, redeemed by an attempt whose outcome
    /// was lost.
    async fn preflight(&self, checked: &Checked) -> Result<Option<String>, ChainError> {
        let Some(data) = self
            .chain
            .account_data(&pda::user_account(&checked.user))
            .await?
        else {
            return Ok(Some("wallet is not registered with the program".into()));
        };
        let Some(account) = accounts::decode::<UserAccount>(&data) else {
            return Ok(Some("wallet's user account is unreadable".into()));
        };
        let nonce = checked.payload.nonce;
        if account.nonce < nonce {
            return Ok(Some(format!(
                "nonce {nonce} is ahead of the wallet's next nonce {}",
                account.nonce
            )));
        }
        if account.nonce > nonce {
            return Ok(None);
        }
        if let Some(token) = checked.token {
            return self.token_preflight(checked, &token).await;
        }
        let vault = self.chain.lamports(&pda::vault(&checked.user)).await?;
        let free = vault
            .saturating_sub(account.locked_amount)
            .saturating_sub(Rent::default().minimum_balance(0));
        Ok((free < checked.amount).then(|| {
            format!(
                "vault holds {free} free lamports, {} needed",
                checked.amount
            )
        }))
    }

    /// The token vault's part of [`Self::preflight`]: is it open, and does it hold the amount
    /// beside what is locked?
    async fn token_preflight(
        &self,
        checked: &Checked,
        token: &TokenRate,
    ) -> Result<Option<String>, ChainError> {
        let user = &checked.user;
        let balance = self
            .chain
            .account_data(&pda::token_balance(user, &token.mint))
            .await?
            .and_then(|data| accounts::decode::<TokenBalance>(&data));
        let Some(balance) = balance else {
            return Ok(Some(format!("wallet has no vault for mint {}", token.mint)));
        };
        let held = self
            .chain
            .account_data(&pda::token_vault(user, &token.mint))
            .await?
            .and_then(|data| spl::decode_token_amount(&data))
            .unwrap_or(0);
        let free = held.saturating_sub(balance.locked_amount);
        Ok((free < checked.amount).then(|| {
            format!(
                "token vault holds {free} free base units of {}, {} needed",
                token.mint, checked.amount
            )
        }))
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
        let token = match &payload.mint {
            None => None,
            Some(mint) => Some(
                self.config
                    .tokens
                    .iter()
                    .find(|token| token.mint.to_string() == *mint)
                    .copied()
                    .ok_or_else(|| format!("mint {mint} is not taken by this gateway"))?,
            ),
        };
        // Exactly the signed amount: a request naming another one is a copy, or a mistake.
        if let Some(amount) = payload.amount.filter(|&a| a != info.max_amount) {
            return Err(format!(
                "amount {amount} differs from the signed amount {}",
                info.max_amount
            ));
        }
        Ok(Checked {
            user,
            payload,
            info,
            amount: info.max_amount,
            token,
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
        if checked.token.is_none() && amount > self.config.max_lamports_per_request {
            return Err(format!(
                "amount {amount} is above this operator's limit of {} lamports per request",
                self.config.max_lamports_per_request
            ));
        }
        if self.worth(&checked, amount).is_none() {
            return Err(format!("a credit for {amount} would overflow"));
        }
        if info.deadline < crate::ledger::now() {
            return Err("authorisation expired".into());
        }
        let (cluster, namespace_id) = (self.config.cluster, self.config.namespace_id);
        if !verify_signature_in(cluster, namespace_id, user, checked.asset(), &info) {
            return Err("signature does not match the authorisation".into());
        }
        Ok(checked)
    }

    async fn pay(&self, request_id: &str, checked: &Checked) -> anyhow::Result<Outcome> {
        let c = &self.config;
        let instructions = match checked.token {
            None => pay_authorized(
                c.cluster,
                c.bot.pubkey(),
                c.namespace_id,
                c.treasury,
                checked.user,
                checked.info,
                checked.amount,
            ),
            Some(token) => token_instructions::pay_token_authorized(
                c.cluster,
                &token_instructions::TokenRedeemer {
                    bot: c.bot.pubkey(),
                    namespace_id: c.namespace_id,
                    mint: token.mint,
                    token_program: token.token_program,
                    treasury_tokens: spl::associated_token_address(
                        &c.treasury,
                        &token.mint,
                        &token.token_program,
                    ),
                },
                checked.user,
                checked.info,
                checked.amount,
            ),
        };
        match self.chain.submit(&instructions, &[&c.bot]).await {
            Ok(signature) => {
                let landed = Landed {
                    signature,
                    amount: checked.amount,
                };
                self.finish_paid(request_id, checked, &landed).await
            }
            Err(ChainError::Rejected { code, message }) => {
                if code == Some(u32::from(BalancePaymentError::NonceMismatch)) {
                    match self.landed(checked).await {
                        Ok(Some(landed)) => {
                            return self.finish_paid(request_id, checked, &landed).await
                        }
                        Ok(None) => {}
                        Err(error) => {
                            tracing::warn!(request_id, %error, "controller: cannot look the payment up; will retry");
                            return Ok(Outcome::Pending);
                        }
                    }
                }
                self.refuse(
                    request_id,
                    Some(checked),
                    crate::chain::explain::refusal(code, &message),
                )
                .await
            }
            Err(ChainError::Unavailable(error)) => {
                tracing::warn!(request_id, %error, "controller: chain unavailable; will retry");
                Ok(Outcome::Pending)
            }
        }
    }

    /// Marks the request paid by `landed` and queues its credit (what that payment is worth)
    /// and the `Status` reply, in one ledger transaction.
    async fn finish_paid(
        &self,
        request_id: &str,
        checked: &Checked,
        landed: &Landed,
    ) -> anyhow::Result<Outcome> {
        let signature = landed.signature.as_str();
        let tokens = self
            .worth(checked, landed.amount)
            .ok_or_else(|| anyhow::anyhow!("credit for {} overflows", landed.amount))?;
        let credit = DsProxyMessage::Transaction {
            user: checked.user.to_string(),
            tokens,
            reference: Some(signature.to_owned()),
            model: None,
            rail: None,
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
