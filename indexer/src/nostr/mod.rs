//! Nostr: the watcher that turns signed `Transaction` events into ledger entries ([`ingest`]:
//! one event; its cursor, back-fill and the controller's request queue). Signing events and the outbox publisher are
//! shared with the gateway (crate `common`), re-exported here.
mod answers;
pub mod backfill;
pub mod cursor;
pub mod ingest;
mod query;
pub use common::{events, publisher};
pub mod queue;
pub mod watcher;

pub use nostr_sdk::prelude::{Event, Keys, PublicKey};
