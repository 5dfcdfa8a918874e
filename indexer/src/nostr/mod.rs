//! Nostr: building and signing kind-1573 events, the watcher that turns
//! signed `Transaction` events into ledger entries (its cursor, back-fill and the controller's
//! request queue), and the outbox publisher.
pub mod backfill;
pub mod cursor;
pub mod events;
pub mod publisher;
pub mod queue;
pub mod watcher;

pub use nostr_sdk::prelude::{Event, Keys, PublicKey};
