//! What a request may cost before it runs: its worst case (and the least that serves it),
//! and the hold that reserves it in the ledger, which fixes the output bound sent upstream.
use crate::{
    auth::Caller,
    error::ApiError,
    request::ChatRequest,
    state::{AppState, Model},
};
use ledger::{Hold, KeyLimit, RateLimit};

/// The worst case of a request, before anything is held: what to hold, the least that serves
/// it (without a client bound), and the output cap.
pub(super) struct Plan {
    pub(super) amount: i64,
    minimum: Option<i64>,
    cap: u64,
    sequences: u64,
}

impl Plan {
    /// The least this request can be served for.
    pub(super) fn least(&self) -> i64 {
        self.minimum.unwrap_or(self.amount)
    }

    /// The completion-token bound per sequence the worst case pays for: what a request paid
    /// in full up front (an escrow lock) is sent upstream.
    pub(super) fn bound(&self, request: &ChatRequest) -> u64 {
        request.max_output.unwrap_or(self.cap)
    }
}

pub(super) fn plan(
    caller: &Caller,
    model: &Model,
    request: &ChatRequest,
    prompt: u64,
) -> Result<Plan, ApiError> {
    let cap = caller
        .key
        .as_ref()
        .and_then(|key| key.claims.max_tokens)
        .map_or(model.max_output_tokens, |key_cap| {
            key_cap.min(model.max_output_tokens)
        });
    if let Some(tokens) = request.max_output.filter(|tokens| *tokens > cap) {
        return Err(ApiError::BadRequest(format!(
            "max_tokens {tokens} exceeds this {} limit of {cap}",
            if caller.key.is_some() {
                "key's"
            } else {
                "model's"
            }
        )));
    }
    let sequences = request.sequences();
    let tokens = request.max_output.unwrap_or(cap);
    let amount = model
        .price
        .cost(prompt, tokens.saturating_mul(sequences))
        .max(1);
    let minimum = match request.max_output {
        Some(_) => None,
        None => Some(model.price.cost(prompt, sequences).clamp(1, amount)),
    };
    Ok(Plan {
        amount,
        minimum,
        cap,
        sequences,
    })
}

/// Reserves the worst case and returns the one completion-token bound per sequence it pays
/// for: the only bound sent upstream. A client's own bound (the smallest of every field it
/// used) must fit the key's and the model's caps, else 400, and is then held in full (402 if
/// the balance does not cover it); without one, the hold takes what the balance and the key's
/// budget afford, up to the caps (at least one token per sequence), and the bound follows.
pub(super) async fn reserve(
    state: &AppState,
    caller: &Caller,
    model: &Model,
    request: &ChatRequest,
    prompt: u64,
    request_id: &str,
) -> Result<u64, ApiError> {
    let Plan {
        amount,
        minimum,
        cap,
        sequences,
    } = plan(caller, model, request, prompt)?;
    let key = caller.key.as_ref().map(|key| KeyLimit {
        key_id: &key.key_id,
        budget: i64::try_from(key.claims.budget).unwrap_or(i64::MAX),
        max_uses: key.claims.single_use.then_some(1),
    });
    let limits = &state.config.limits;
    let own = caller.key.as_ref().map(|key| &key.claims);
    let rate = caller.shared_limit_key().map(|caller| RateLimit {
        caller,
        minute: state.ledger.now().div_euclid(60),
        rpm: i64::from(
            own.and_then(|claims| claims.rpm)
                .map_or(limits.rpm, |rpm| rpm.min(limits.rpm)),
        ),
        tpm: i64::try_from(
            own.and_then(|claims| claims.tpm)
                .map_or(limits.tpm, |tpm| tpm.min(limits.tpm)),
        )
        .unwrap_or(i64::MAX),
    });
    let hold = Hold {
        id: request_id,
        user: &caller.user,
        amount,
        minimum,
        ttl_seconds: state.config.reservation_ttl_seconds,
        key,
        rate,
        session: caller.session.as_deref(),
    };
    match state.ledger.hold(&hold).await {
        Ok(held) => {
            state.metrics.reservation("held");
            Ok(match request.max_output {
                Some(tokens) => tokens,
                None => {
                    (model.price.affordable_completion(held.amount, prompt) / sequences).min(cap)
                }
            })
        }
        Err(error) => {
            state.metrics.reservation("refused");
            Err(error.into())
        }
    }
}
