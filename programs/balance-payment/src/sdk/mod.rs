//! Off-chain helpers for controllers, indexers, CLIs and tests (feature `sdk`).
//!
//! - [`pda`]: every account address the program uses; [`accounts`]: decode their data.
//! - [`instructions`]: one builder per instruction, with all accounts filled in;
//!   [`token_instructions`]: the same for the token escrow.
//! - [`authorization`]: sign a user's spending authorisation and build the Ed25519 check that
//!   must precede `pay` / `lock`.
//! - [`events`]: decode the program's `emit_cpi!` events from inner-instruction data.
//! - [`spl`]: the token programs' own interfaces and the few token-account helpers every
//!   client of the token escrow needs.
//! - [`native`]: run the program natively inside `solana-program-test`.
pub mod accounts;
pub mod authorization;
pub mod events;
pub mod instructions;
pub mod native;
pub mod pda;
pub mod spl;
pub mod token_instructions;

pub use anchor_lang::solana_program::{instruction::Instruction, pubkey::Pubkey};
