//! Running the program natively (no SBF build) inside `solana-program-test`.
//!
//! Anchor's `entry` ties the program id, accounts and data to one lifetime, which the
//! test runtime's `ProcessInstruction` signature does not promise. This adapter copies the id
//! and data and leaks the account list for the duration of the process: a few hundred bytes
//! per instruction, acceptable for tests and the local sandbox, never used on chain.
use anchor_lang::solana_program::{
    account_info::AccountInfo, entrypoint::ProgramResult, pubkey::Pubkey,
};

/// Pass to `solana_program_test::processor!` when adding this program to a `ProgramTest`.
pub fn process_instruction(
    program_id: &Pubkey,
    accounts: &[AccountInfo],
    data: &[u8],
) -> ProgramResult {
    let program_id: &'static Pubkey = Box::leak(Box::new(*program_id));
    let data: &'static [u8] = Box::leak(data.to_vec().into_boxed_slice());
    let accounts = Box::leak(accounts.to_vec().into_boxed_slice());
    crate::entry(program_id, accounts, data)
}
