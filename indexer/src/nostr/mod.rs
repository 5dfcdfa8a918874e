//! Nostr: building and signing kind-1573 events, the embedded relay, the watcher that turns
//! signed `Transaction` events into ledger entries, and the outbox publisher.
pub mod events;
pub mod publisher;
pub mod relay;
pub mod watcher;

pub use nostr_sdk::prelude::{Event, Keys, PublicKey};
