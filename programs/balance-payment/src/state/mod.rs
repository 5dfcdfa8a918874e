//! Account types, one per file, and their seeds.
mod global;
mod lock;
mod namespace;
pub mod seeds;
mod user;

pub use global::*;
pub use lock::*;
pub use namespace::*;
pub use user::*;
