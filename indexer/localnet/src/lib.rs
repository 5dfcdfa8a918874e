//! Stand-ins for the outside world, on 127.0.0.1: a Solana validator running the program
//! ([`validator`]), a Nostr relay ([`relay`]) and an OpenAI-compatible echo server ([`echo`]).
//! The sandbox and the tests link this crate; the production `proxy` and `indexer` binaries
//! do not.
pub mod echo;
pub mod relay;
pub mod validator;

pub use echo::MockUpstream;
pub use relay::EmbeddedRelay;
pub use validator::{Validator, ValidatorConfig};
