//! The indexer: keeps every balance provable from chain events and signed Nostr events.
//!
//! - [`chain`]: the chain trait, its RPC implementation, event decoding.
//! - [`controller`]: redeems user requests with `pay` and announces the credits.
//! - [`ledger`]: the SQL ledger (SQLite or Postgres) the proxy shares, a crate of its own
//!   (`indexer/ledger`), re-exported here.
//! - [`nostr`]: signed kind-1573 events, the watcher and the outbox publisher.
//! - [`services`]: the watchers, controller and publisher as tasks, kept running by
//!   [`supervisor`]; [`health`] and [`metrics`]: their `/health` and `/metrics`;
//!   [`shutdown`]: the stop signals; [`sandbox`]: the local stack
//!   (feature `sandbox`, on by default; production builds leave it out).
//! - [`clock`]: where "now" comes from.
//! - Shared with the gateway (crate `common`), re-exported here: [`wire`] (kind-1573 message
//!   contents), [`topup`] (the signed `Request` a wallet publishes to buy credit),
//!   [`telemetry`], [`solana_cli`], and the chain client in [`chain`].
pub mod chain;
pub mod cli;
pub mod clock;
pub mod config;
pub mod controller;
pub mod health;
pub use ledger;
pub mod metrics;
pub mod nostr;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod services;
pub mod supervisor;
pub mod verify;
pub use common::{assets, shutdown, solana_cli, telemetry, topup, wire};
