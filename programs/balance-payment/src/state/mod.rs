//! Account types, one per file, and their seeds.
mod accepted_mint;
mod global;
mod lock;
mod namespace;
pub mod seeds;
mod token_balance;
mod token_lock;
mod user;

pub use accepted_mint::*;
pub use global::*;
pub use lock::*;
pub use namespace::*;
pub use token_balance::*;
pub use token_lock::*;
pub use user::*;
