//! One file per instruction: arguments, accounts (with their constraints), then the handler.
pub mod create_namespace;
pub mod deposit;
pub mod initialize;
pub mod lock;
pub mod pay;
pub mod register;
pub mod release;
pub mod settle;
pub mod update_namespace;
pub mod withdraw;

pub use create_namespace::*;
pub use deposit::*;
pub use initialize::*;
pub use lock::*;
pub use pay::*;
pub use register::*;
pub use release::*;
pub use settle::*;
pub use update_namespace::*;
pub use withdraw::*;
