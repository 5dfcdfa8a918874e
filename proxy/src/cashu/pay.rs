//! A chat request paid with ecash: its token is received once the request is known to be
//! valid and covered, and its change is given back once the request is settled — in the
//! `X-Cashu` header, or for a stream in a last chunk before `data: [DONE]`.
use super::{api_error, attach_change, issue_change, CashuError, Received};
use crate::{error::ApiError, meter::Meter, state::AppState};
use axum::response::Response;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use tokio::sync::oneshot;

/// A request paid with ecash: its receipt, and (once its meter exists) when it is settled.
/// A stream gives its change in its last chunk instead, unless it failed before streaming.
pub struct Paid {
    receipt_id: String,
    settled: Option<oneshot::Receiver<()>>,
    streamed: bool,
}

impl Paid {
    /// Receives the token `value` for request `request_id`, once it is known to cover `least`
    /// ledger tokens (the least the request can be served for); a token that covers less is
    /// refused with the NUT-24 402 before it is touched.
    pub async fn receive(
        state: &AppState,
        value: &str,
        least: i64,
        request_id: &str,
    ) -> Result<Self, ApiError> {
        let cashu = state
            .cashu
            .as_deref()
            .ok_or_else(|| ApiError::BadRequest(CashuError::Disabled.to_string()))?;
        let needed = cashu.sats_for(least);
        let refused = |error| api_error(cashu, error, Some(needed));
        let token = cashu.parse(value).map_err(refused)?;
        let offered = cashu.net_value(&token).await.map_err(refused)?;
        if offered < needed {
            return Err(refused(CashuError::TooLittle { offered, needed }));
        }
        let received = cashu
            .receive(&state.ledger, &token, None, Some(request_id))
            .await
            .map_err(refused)?;
        // A token pays for one request: the first to take its receipt (the request that
        // finished receiving it took it then). A retry whose first try left the token's
        // exchange unfinished takes it once it is finished.
        let receipt = match received {
            Received::Now(receipt) if receipt.request_id.as_deref() == Some(request_id) => receipt,
            Received::Now(receipt) | Received::Before(receipt) => {
                if !state
                    .ledger
                    .cashu_take_receipt(&receipt.id, request_id)
                    .await?
                {
                    return Err(refused(CashuError::AlreadyReceived));
                }
                receipt
            }
        };
        Ok(Self {
            receipt_id: receipt.id,
            settled: None,
            streamed: false,
        })
    }

    /// The ledger user that pays: the receipt.
    pub fn receipt_id(&self) -> &str {
        &self.receipt_id
    }

    /// Follows the request's settlement; for a stream, returns its last chunk (the change).
    pub fn follow(
        &mut self,
        state: &Arc<AppState>,
        meter: &mut Meter,
        stream: bool,
        model: &str,
    ) -> Option<BoxFuture<'static, Option<Bytes>>> {
        self.settled = Some(meter.on_settled());
        self.streamed = stream;
        stream.then(|| {
            change_chunk(
                state.clone(),
                self.receipt_id.clone(),
                model.to_owned(),
                meter.on_settled(),
            )
        })
    }

    /// Waits for the settlement, then puts the change in the `X-Cashu` header (whatever the
    /// outcome: a failed call gives the whole token back). A stream that was served carries
    /// its change itself.
    pub async fn give_change(self, state: &Arc<AppState>, response: &mut Response) {
        let Some(cashu) = state.cashu.as_deref() else {
            return;
        };
        if self.streamed && response.status().is_success() {
            return;
        }
        if let Some(settled) = self.settled {
            let _ = settled.await;
        }
        match issue_change(state, cashu, &self.receipt_id).await {
            Ok(change) => attach_change(response, change.as_deref()),
            Err(error) => tracing::warn!(?error, receipt = %self.receipt_id,
                "the change could not be issued now; POST /v1/cashu/change with the token issues it"),
        }
    }
}

/// The stream's last chunk: once settled, its change, as a chunk with no choices (like the
/// usage chunk) and the token in `x_cashu`.
fn change_chunk(
    state: Arc<AppState>,
    receipt_id: String,
    model: String,
    settled: oneshot::Receiver<()>,
) -> BoxFuture<'static, Option<Bytes>> {
    Box::pin(async move {
        let _ = settled.await;
        let cashu = state.cashu.clone()?;
        let change = match issue_change(&state, &cashu, &receipt_id).await {
            Ok(change) => change,
            Err(error) => {
                tracing::warn!(?error, receipt = %receipt_id, "the change could not be issued now");
                return None;
            }
        };
        let chunk = serde_json::json!({
            "id": receipt_id,
            "object": "chat.completion.chunk",
            "created": ledger::now(),
            "model": model,
            "choices": [],
            "x_cashu": change,
        });
        Some(Bytes::from(format!("data: {chunk}\n\n")))
    })
}
