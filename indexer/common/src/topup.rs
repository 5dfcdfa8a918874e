//! What a wallet publishes to buy credit: its signed spending authorisation inside a
//! kind-1573 `Request` addressed to the gateway. The wallet commands, the sandbox and the tests
//! build it here, so they all speak exactly what the controller reads.
use crate::{
    events::{sign_message, SignError},
    wire::{DsProxyMessage, DsProxyStatus, DsProxyStatusReason, RecoverInfoJson, RequestPayload},
};
use balance_payment::{
    authorization::{Asset, AuthorizationTerms},
    sdk::authorization::sign_authorization,
};
use nostr_sdk::prelude::{Event, Keys, PublicKey};
use solana_sdk::signature::Keypair;

/// The request payload for `terms` (SOL or a token), signed by `wallet` (whose key must be
/// `terms.user`).
pub fn authorization_payload(
    wallet: &Keypair,
    terms: &AuthorizationTerms,
) -> Result<RequestPayload, SignError> {
    let signing_key = ed25519_dalek::SigningKey::from_bytes(wallet.secret_bytes());
    let info = sign_authorization(&signing_key, terms);
    Ok(RequestPayload {
        user: terms.user.to_string(),
        nonce: terms.nonce,
        recover_info: serde_json::to_string(&RecoverInfoJson::from_recover_info(&info))
            .map_err(|e| SignError(e.to_string()))?,
        amount: Some(terms.max_amount),
        namespace_id: Some(terms.namespace_id),
        mint: match terms.asset {
            Asset::Lamports => None,
            Asset::Token(mint) => Some(mint.to_string()),
        },
    })
}

/// The `Request` event carrying `payload` for `session`, addressed to `machine`, signed by a
/// fresh Nostr key (the wallet's authority is its signature inside, not the event's author).
pub fn request_event(
    payload: &RequestPayload,
    session: &str,
    machine: &PublicKey,
) -> Result<Event, SignError> {
    let message = DsProxyMessage::Request {
        to_status: DsProxyStatus::Working,
        reason: DsProxyStatusReason::UserRequest,
        initial_request: "0".repeat(64),
        payload: serde_json::to_string(payload).map_err(|e| SignError(e.to_string()))?,
    };
    sign_message(&Keys::generate(), session, machine, &message)
}
