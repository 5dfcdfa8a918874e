use crate::{
    errors::BalancePaymentError,
    events::Withdrawn,
    state::{
        seeds::{USER_SEED, VAULT_SEED},
        UserAccount,
    },
    vault::transfer_from_vault,
};
use anchor_lang::prelude::*;

/// Returns free SOL from the vault to its owner. Locked funds stay; the vault either keeps its
/// rent-exempt minimum or is emptied entirely.
#[event_cpi]
#[derive(Accounts)]
pub struct Withdraw<'info> {
    /// The vault's owner; receives the SOL.
    #[account(mut)]
    pub user: Signer<'info>,
    /// Derived from the signer, so nobody can name another user's account.
    #[account(seeds = [USER_SEED, user.key().as_ref()], bump = user_account.bump)]
    pub user_account: Account<'info, UserAccount>,
    #[account(mut, seeds = [VAULT_SEED, user.key().as_ref()], bump = user_account.vault_bump)]
    pub vault: SystemAccount<'info>,
    pub system_program: Program<'info, System>,
}

impl Withdraw<'_> {
    /// The vault balance after the withdrawal.
    fn validate(&self, amount: u64) -> Result<u64> {
        require!(amount > 0, BalancePaymentError::ZeroAmount);
        let balance = self.vault.lamports();
        let locked = self.user_account.locked_amount;
        let remaining = balance
            .checked_sub(amount)
            .ok_or(BalancePaymentError::InsufficientFunds)?;
        require!(remaining >= locked, BalancePaymentError::FundsLocked);
        let keeps_rent = remaining
            >= locked
                .checked_add(Rent::get()?.minimum_balance(0))
                .ok_or(BalancePaymentError::ArithmeticOverflow)?;
        require!(
            remaining == 0 || keeps_rent,
            BalancePaymentError::VaultBelowRentExempt
        );
        Ok(remaining)
    }

    pub fn withdraw(ctx: Context<Self>, amount: u64) -> Result<()> {
        let vault_balance = ctx.accounts.validate(amount)?;
        transfer_from_vault(
            &ctx.accounts.vault.to_account_info(),
            &ctx.accounts.user.to_account_info(),
            &ctx.accounts.user_account.owner,
            ctx.accounts.user_account.vault_bump,
            amount,
        )?;
        emit_cpi!(Withdrawn {
            user: ctx.accounts.user.key(),
            amount,
            vault_balance,
        });
        Ok(())
    }
}
