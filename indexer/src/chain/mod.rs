//! The chain behind one trait (crate `common`, shared with the gateway's wallet commands), and
//! the [`watcher`] that reads the program's events into the ledger.
pub use common::chain::*;
pub mod watcher;
