//! The settlement guard. A request's reservation is owned by a [`Meter`]; whatever happens to
//! the request (finished, failed, client gone, stream cut at shutdown), dropping the meter
//! settles it: released in full if the upstream never produced a byte, otherwise charged for
//! the usage the upstream reported or, failing that, for the prompt and what was delivered
//! (counted with tiktoken). Settling runs as a tracked task, so shutdown waits for it.
use crate::{
    auth::Caller,
    callback::CallbackError,
    request::ChatRequest,
    state::{AppState, Model, NostrIdentity},
    tokens,
    x402::X402,
};
use common::{events::sign_message, wire::DsProxyMessage};
use ledger::{Announcement, Attested, Charge, EscrowLock, EscrowState, RateWindow, UsageRecord};
use nostr_sdk::JsonUtil;
use std::{sync::Arc, time::Duration};

/// Usage as reported by the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// The prompt's tokens, charged when the upstream reports no usage.
pub enum Prompt {
    /// Counted before the hold (the model has an upstream that reports no usage).
    Counted(u64),
    /// Only bounded from its bytes: the request is kept so that, should its usage never come,
    /// it is counted then (the only time the tokenizer is needed).
    Uncounted(Arc<ChatRequest>),
}

impl Prompt {
    /// Blocking: may load the tokenizer and count a long prompt.
    fn count(&self) -> u64 {
        match self {
            Prompt::Counted(tokens) => *tokens,
            Prompt::Uncounted(request) => tokens::count_prompt(&request.rest),
        }
    }
}

/// Owns a reservation until the request is settled.
pub struct Meter {
    pending: Option<Pending>,
}

struct Pending {
    state: Arc<AppState>,
    request_id: String,
    caller: Arc<Caller>,
    model: Arc<Model>,
    prompt: Prompt,
    started: bool,
    usage: Option<Usage>,
    delivered: tokens::DeliveredTokens,
    /// The on-chain lock that pays instead of a hold (x402 `escrow`): settled for the cost.
    escrow: Option<(Arc<X402>, EscrowLock)>,
    /// Dropped with the pending settlement, when it is done (or there was none).
    _settled: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Meter {
    pub fn new(
        state: Arc<AppState>,
        request_id: String,
        caller: Arc<Caller>,
        model: Arc<Model>,
        prompt: Prompt,
    ) -> Self {
        Self {
            pending: Some(Pending {
                state,
                request_id,
                caller,
                model,
                prompt,
                started: false,
                usage: None,
                delivered: Default::default(),
                escrow: None,
                _settled: Vec::new(),
            }),
        }
    }

    /// Resolves once this request's settlement is done, however it ends (the ecash rail then
    /// pays the change out of what is left).
    pub fn on_settled(&mut self) -> tokio::sync::oneshot::Receiver<()> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        if let Some(pending) = &mut self.pending {
            pending._settled.push(sender);
        }
        receiver
    }

    /// The request is paid by an on-chain lock, not a hold: settling settles the lock for the
    /// cost (or releases it when nothing was served), credits it, then charges the cost.
    pub fn paid_by_lock(&mut self, x402: Arc<X402>, lock: EscrowLock) {
        if let Some(pending) = &mut self.pending {
            pending.escrow = Some((x402, lock));
        }
    }

    /// The hold was refused: there is nothing to release or charge.
    pub fn nothing_held(mut self) {
        self.pending = None;
    }

    /// The upstream produced its first byte: from now on the request is charged.
    pub fn started(&mut self) {
        if let Some(pending) = &mut self.pending {
            pending.started = true;
        }
    }

    /// The upstream answered: marks the reservation served in the ledger (in the background,
    /// off the response's path), so that if this settlement never lands the expiry sweep
    /// charges the reservation instead of releasing it.
    pub fn served(&self) {
        let Some(pending) = &self.pending else { return };
        let (ledger, id) = (pending.state.ledger.clone(), pending.request_id.clone());
        pending.state.settlements.spawn(async move {
            if let Err(error) = ledger.mark_served(&id, ledger::now()).await {
                tracing::warn!(request_id = %id, %error, "marking the reservation served failed");
            }
        });
    }

    /// Text delivered to the client, counted only while the upstream has reported no usage.
    pub fn delivered(&mut self, text: &str) {
        if let Some(pending) = &mut self.pending {
            if pending.usage.is_none() {
                pending.delivered.push(text);
            }
        }
    }

    /// The upstream's usage: what is charged; the text counted so far is no longer needed.
    pub fn usage(&mut self, usage: Usage) {
        if let Some(pending) = &mut self.pending {
            pending.usage = Some(usage);
            pending.delivered = Default::default();
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let tracker = pending.state.settlements.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                tracker.spawn_on(pending.settle(), &runtime);
            }
            Err(_) => tracing::error!(
                request_id = %pending.request_id,
                "no runtime to settle on; the reservation will expire"
            ),
        }
    }
}

impl Pending {
    async fn settle(mut self) {
        let ledger = &self.state.ledger;
        if !self.started {
            if let Some((x402, lock)) = &self.escrow {
                match x402.release_lock(ledger, lock).await {
                    Ok(()) => self.state.metrics.reservation("released"),
                    Err(error) => tracing::warn!(request_id = %self.request_id, %error,
                        "releasing the escrow lock did not finish; housekeeping retries it"),
                }
                return;
            }
            match ledger.release(&self.request_id).await {
                Ok(true) => self.state.metrics.reservation("released"),
                // Nothing was held under this id (the hold never reached the ledger).
                Ok(false) => {}
                Err(error) => tracing::error!(request_id = %self.request_id, %error,
                    "releasing failed; the reservation will expire"),
            }
            return;
        }
        let usage = match self.usage {
            Some(usage) => usage,
            // Counted off the async workers: it may load the tokenizer and count long texts.
            None => {
                let prompt = std::mem::replace(&mut self.prompt, Prompt::Counted(0));
                let delivered = std::mem::take(&mut self.delivered);
                let counted = tokio::task::spawn_blocking(move || Usage {
                    prompt_tokens: prompt.count(),
                    completion_tokens: delivered.total(),
                });
                match counted.await {
                    Ok(usage) => usage,
                    Err(error) => {
                        tracing::error!(request_id = %self.request_id, %error,
                            "counting the tokens failed; the reservation will expire");
                        return;
                    }
                }
            }
        };
        let cost = self
            .model
            .price
            .cost(usage.prompt_tokens, usage.completion_tokens);
        let record = UsageRecord {
            model: self.model.id.clone(),
            prompt_tokens: i64::try_from(usage.prompt_tokens).unwrap_or(i64::MAX),
            completion_tokens: i64::try_from(usage.completion_tokens).unwrap_or(i64::MAX),
        };
        // A lock is settled (paid and credited) first: the charge is then covered by it.
        let cost = match &self.escrow {
            None => cost,
            Some((x402, lock)) => {
                match x402
                    .settle_lock(ledger, lock, &self.request_id, cost, &record)
                    .await
                {
                    Ok(chargeable) => chargeable,
                    Err(error) => {
                        tracing::warn!(request_id = %self.request_id, %error,
                            "the escrow settlement did not finish; housekeeping finishes it");
                        return;
                    }
                }
            }
        };
        let charge = Charge {
            id: &self.request_id,
            user: &self.caller.user,
            cost,
            key_id: self.caller.key.as_ref().map(|key| key.key_id.as_str()),
            usage: Some(record),
            rate: self.caller.shared_limit_key().map(|caller| RateWindow {
                caller,
                minute: ledger.now().div_euclid(60),
            }),
        };
        // The debit is signed here, on this request's task, for the usual outcome (the whole
        // cost charged): the ledger's one writer then only queues it. A charge capped by the
        // balance or the key's budget is signed there, for what was charged.
        let (nostr, user, model) = (&self.state.nostr, &self.caller.user, &self.model.id);
        let signed = debit_event(nostr, user, &self.request_id, Some(model), cost);
        let mut attempt = 0;
        let settlement = loop {
            let (state, caller, model) =
                (self.state.clone(), self.caller.clone(), self.model.clone());
            let (request_id, signed) = (self.request_id.clone(), signed.clone());
            let announce = move |charged| match charged == cost {
                true => signed.clone(),
                false => debit_event(
                    &state.nostr,
                    &caller.user,
                    &request_id,
                    Some(&model.id),
                    charged,
                ),
            };
            match ledger.charge(&charge, announce).await {
                Ok(settlement) => break settlement,
                Err(error) if attempt < 5 => {
                    attempt += 1;
                    tracing::warn!(request_id = %self.request_id, %error, attempt, "settling failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                Err(error) => {
                    tracing::error!(request_id = %self.request_id, %error,
                        "settling failed; the served reservation will be charged when it expires");
                    return;
                }
            }
        };
        if let Some((_, lock)) = &self.escrow {
            let charged =
                ledger.escrow_move(&lock.lock, EscrowState::Settled, EscrowState::Charged);
            if let Err(error) = charged.await {
                tracing::warn!(request_id = %self.request_id, %error, "marking the lock charged failed");
            }
        }
        let metrics = &self.state.metrics;
        metrics.reservation("settled");
        for (kind, count) in [
            ("prompt", usage.prompt_tokens),
            ("completion", usage.completion_tokens),
        ] {
            metrics
                .tokens
                .get_or_create(&crate::metrics::TokenLabels {
                    model: self.model.id.clone(),
                    kind,
                })
                .inc_by(count);
        }
        // A wallet's or key's tokens were counted with the charge, in the ledger.
        if self.caller.shared_limit_key().is_none() {
            self.state.limiter.record_tokens(
                self.caller.limit_key(),
                usage.prompt_tokens + usage.completion_tokens,
            );
        }
        if settlement.shortfall > 0 {
            tracing::warn!(request_id = %self.request_id, shortfall = settlement.shortfall,
                "usage exceeded the reservation and the balance; the excess was not charged");
        }
        tracing::info!(request_id = %self.request_id, cost, charged = settlement.charged,
            prompt = usage.prompt_tokens, completion = usage.completion_tokens, "settled");
        self.state.outbox_wake.notify_one();
        self.call_back(usage, settlement.charged);
    }

    /// The delegated key's usage callback, fire and forget, within the operator's policy.
    fn call_back(&self, usage: Usage, charged: i64) {
        let Some(url) = self
            .caller
            .key
            .as_ref()
            .and_then(|key| key.claims.callback_url.clone())
        else {
            return;
        };
        if !self.state.callbacks.enabled() {
            self.state.metrics.callback("disabled");
            return;
        }
        let body = serde_json::json!({
            "request_id": self.request_id,
            "model": self.model.id,
            "usage": {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.prompt_tokens + usage.completion_tokens,
            },
            "cost": charged,
            "user": self.caller.user,
        });
        let state = self.state.clone();
        let request_id = self.request_id.clone();
        self.state.settlements.spawn(async move {
            let outcome = match state.callbacks.deliver(&url, &body).await {
                Ok(()) => "delivered",
                Err(error @ (CallbackError::Refused { .. } | CallbackError::Url(_))) => {
                    tracing::warn!(%request_id, %error, "usage callback refused");
                    "refused"
                }
                Err(error) => {
                    tracing::warn!(%request_id, %error, "usage callback failed");
                    "failed"
                }
            };
            state.metrics.callback(outcome);
        });
    }
}

/// The signed debit `Transaction{user, -charged}` for request `request_id`, to queue with the
/// charge; `None` when nothing is charged. Settlement and the expiry sweep announce debits
/// through this one function.
pub fn debit_event(
    nostr: &NostrIdentity,
    user: &str,
    request_id: &str,
    model: Option<&str>,
    charged: i64,
) -> Option<Announcement> {
    if charged <= 0 {
        return None;
    }
    let message = DsProxyMessage::Transaction {
        user: user.to_owned(),
        tokens: -charged,
        reference: Some(request_id.to_owned()),
        model: model.map(str::to_owned),
        rail: None,
    };
    announcement(nostr, format!("debit:{request_id}"), &message)
}

/// The signed announcement of an entry the gateway wrote on its own word (an ecash or x402
/// credit, ecash change): `ledger::Attestor` queues it with the entry.
pub fn attested_event(nostr: &NostrIdentity, attested: &Attested<'_>) -> Option<Announcement> {
    let message = DsProxyMessage::Transaction {
        user: attested.user.to_owned(),
        tokens: attested.tokens,
        reference: Some(attested.reference.to_owned()),
        model: None,
        rail: Some(attested.rail.as_str().to_owned()),
    };
    let kind = if attested.tokens < 0 {
        "debit"
    } else {
        "credit"
    };
    let dedupe = format!("{}-{kind}:{}", attested.rail.as_str(), attested.reference);
    announcement(nostr, dedupe, &message)
}

fn announcement(
    nostr: &NostrIdentity,
    dedupe_key: String,
    message: &DsProxyMessage,
) -> Option<Announcement> {
    match sign_message(&nostr.keys, &nostr.session, &nostr.machine, message) {
        Ok(event) => Some(Announcement {
            dedupe_key,
            event_id: event.id.to_hex(),
            event_json: event.as_json(),
        }),
        Err(error) => {
            tracing::error!(%dedupe_key, %error, "cannot sign an announcement");
            None
        }
    }
}
