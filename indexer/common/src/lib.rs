//! What the indexer and the gateway share to run and to speak, so that neither depends on the
//! other: both read the same config layers, stop on the same signals, log the same way, speak the
//! same kind-1573 messages, publish the same outbox and reach the program through the same
//! client.
//!
//! - [`wire`]: kind-1573 message contents, compatible with DePHY's; [`events`]: signing them
//!   and the filters that read them; [`topup`]: the signed `Request` a wallet publishes to buy
//!   credit; [`publisher`]: the outbox (crate `ledger`) drained to the relays.
//! - [`chain`]: the chain behind one trait, its RPC implementation, event decoding, and
//!   [`chain::client::ProgramClient`] for the operator and wallet commands.
//! - [`config`]: layered loading and shared checks; [`shutdown`]: the stop signals;
//!   [`telemetry`]: logs, and OTLP traces when configured; [`solana_cli`]: `--url` and
//!   `--keypair` read as `solana` reads them; [`assets`]: the tokens taken beside SOL and
//!   what each buys.
pub mod assets;
pub mod books;
pub mod chain;
pub mod config;
pub mod events;
pub mod publisher;
pub mod shutdown;
pub mod solana_cli;
pub mod telemetry;
pub mod topup;
pub mod wire;
