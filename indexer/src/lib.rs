//! The indexer: keeps every balance provable from chain events and signed Nostr events.
//!
//! - [`chain`]: the chain trait, its RPC and in-process implementations, event decoding.
//! - [`controller`]: redeems user requests with `pay` and announces the credits.
//! - [`ledger`]: the SQL ledger (SQLite or Postgres) the proxy shares.
//! - [`nostr`]: signed kind-1573 events, the embedded relay, the watcher and the outbox publisher.
//! - [`services`]: the watchers, controller and publisher as tasks; [`sandbox`]: the local stack.
//! - [`wire`]: kind-1573 message contents, compatible with DePHY's.
pub mod chain;
pub mod cli;
pub mod config;
pub mod controller;
pub mod ledger;
pub mod nostr;
pub mod sandbox;
pub mod services;
pub mod wire;
