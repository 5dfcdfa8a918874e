//! Moving SOL out of a user's vault, and the one rule for how much may move.
//!
//! A vault is a system-owned PDA, so only the system program can debit it and this program
//! signs for it. Its rent-exempt minimum belongs to the user: operators can only ever take
//! `balance - locked - rent_minimum`, so a vault never drops into the range the runtime
//! refuses, and the user's last lamports come back only through `withdraw`.
use crate::{errors::BalancePaymentError, state::seeds::VAULT_SEED};
use anchor_lang::{prelude::*, system_program};

/// Lamports an operator may pay or lock out of a vault right now.
pub fn spendable(vault_balance: u64, locked_amount: u64) -> Result<u64> {
    let rent_minimum = Rent::get()?.minimum_balance(0);
    vault_balance
        .checked_sub(locked_amount)
        .and_then(|free| free.checked_sub(rent_minimum))
        .ok_or_else(|| error!(BalancePaymentError::InsufficientFunds))
}

/// Transfers `amount` out of `owner`'s vault, signing with the vault's seeds.
pub fn transfer_from_vault<'info>(
    vault: &AccountInfo<'info>,
    to: &AccountInfo<'info>,
    owner: &Pubkey,
    vault_bump: u8,
    amount: u64,
) -> Result<()> {
    let seeds: &[&[u8]] = &[VAULT_SEED, owner.as_ref(), &[vault_bump]];
    system_program::transfer(
        CpiContext::new_with_signer(
            system_program::ID,
            system_program::Transfer {
                from: vault.clone(),
                to: to.clone(),
            },
            &[seeds],
        ),
        amount,
    )
}
