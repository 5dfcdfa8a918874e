//! Stand-ins for the outside world, on 127.0.0.1: a Solana validator running the program
//! ([`validator`]), a Nostr relay ([`relay`]) and an OpenAI-compatible echo server ([`echo`]);
//! and the load clients the benchmarks need beside `wrk` ([`load`]); and what a test does
//! when a tool from outside Rust is missing ([`prerequisite`]).
//! The sandbox and the tests link this crate; the production `proxy` and `indexer` binaries
//! do not.
//!
//! Features `chain` (the validator) and `relay` are on by default; without them only the echo
//! model is built.
pub mod echo;
pub mod load;
pub mod prerequisite;
#[cfg(feature = "relay")]
pub mod relay;
#[cfg(feature = "chain")]
pub mod validator;

pub use echo::MockUpstream;
#[cfg(feature = "relay")]
pub use relay::EmbeddedRelay;
#[cfg(feature = "chain")]
pub use validator::{Validator, ValidatorConfig};
