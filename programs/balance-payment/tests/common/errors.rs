//! Asserting the exact error a transaction failed with: the program's own, Anchor's, the
//! system program's or the Ed25519 precompile's.
use anchor_lang::AnchorSerialize;
use balance_payment::errors::BalancePaymentError;
use solana_sdk::{instruction::InstructionError, transaction::TransactionError};

/// The custom error code the program returns for `error`.
pub fn code(error: impl Into<u32>) -> u32 {
    error.into()
}

/// Asserts that `result` failed in instruction `index` with `error`.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(
    result: Result<T, TransactionError>,
    index: u8,
    error: impl Into<u32>,
) {
    let expected = error.into();
    match result {
        Err(TransactionError::InstructionError(at, InstructionError::Custom(got)))
            if at == index && got == expected => {}
        other => panic!("expected custom error {expected} in instruction {index}, got {other:?}"),
    }
}

/// What creating an account that already exists (and so holds lamports) fails with here.
/// Anchor 1.2's `init` funds such an account through the system program's
/// `CreateAccountAllowPrefund`, which the agave 3.1 runtime of the test bank does not know
/// yet, so it refuses the instruction as `InvalidInstructionData`. (A runtime that knows it
/// refuses with `SystemError::AccountAlreadyInUse` instead.)
pub const ACCOUNT_EXISTS: InstructionError = InstructionError::InvalidInstructionData;

/// The Ed25519 precompile's refusal of a signature that does not verify.
pub const INVALID_SIGNATURE: u32 =
    solana_precompile_error::PrecompileError::InvalidSignature as u32;

/// Asserts a program error in the single-instruction (or last of `pay_authorized`) case.
#[track_caller]
pub fn assert_program_error<T: std::fmt::Debug>(
    result: Result<T, TransactionError>,
    index: u8,
    error: BalancePaymentError,
) {
    assert_error(result, index, error)
}

/// Serialises an account-args struct the way the program reads it (for hand-built attacks).
pub fn borsh<T: AnchorSerialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    value.serialize(&mut out).expect("serialize");
    out
}

/// Asserts that `result` failed in instruction `index` with the runtime error `error`.
#[track_caller]
pub fn assert_instruction_error<T: std::fmt::Debug>(
    result: Result<T, TransactionError>,
    index: u8,
    error: InstructionError,
) {
    match result {
        Err(TransactionError::InstructionError(at, got)) if at == index && got == error => {}
        other => panic!("expected {error:?} in instruction {index}, got {other:?}"),
    }
}
