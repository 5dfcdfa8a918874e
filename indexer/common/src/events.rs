//! Signed kind-1573 events: `["s", session]` and `["p", recipient]` tags, JSON content.
use crate::wire::{DsProxyMessage, KIND_DS_PROXY};
use nostr_sdk::prelude::*;

/// The `s` tag letter.
pub fn session_tag() -> SingleLetterTag {
    SingleLetterTag::lowercase(Alphabet::S)
}

/// Signs `message` as a kind-1573 event for `session`, addressed to `recipient`.
pub fn sign_message(
    keys: &Keys,
    session: &str,
    recipient: &PublicKey,
    message: &DsProxyMessage,
) -> Result<Event, SignError> {
    let content = serde_json::to_string(message).map_err(|e| SignError(e.to_string()))?;
    EventBuilder::new(Kind::Custom(KIND_DS_PROXY), content)
        .tags([
            Tag::custom(TagKind::SingleLetter(session_tag()), [session]),
            Tag::public_key(*recipient),
        ])
        .sign_with_keys(keys)
        .map_err(|e| SignError(e.to_string()))
}

/// The events of `session` addressed to any of `recipients`, from `since` on.
pub fn session_filter(session: &str, recipients: &[PublicKey], since: Timestamp) -> Filter {
    Filter::new()
        .kind(Kind::Custom(KIND_DS_PROXY))
        .custom_tag(session_tag(), session)
        .pubkeys(recipients.iter().copied())
        .since(since)
}

#[derive(Debug, thiserror::Error)]
#[error("cannot sign event: {0}")]
pub struct SignError(pub String);
