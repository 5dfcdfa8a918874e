use crate::{
    errors::BalancePaymentError,
    events::Deposited,
    state::{
        seeds::{USER_SEED, VAULT_SEED},
        UserAccount,
    },
};
use anchor_lang::{prelude::*, system_program};

/// Moves SOL from any wallet into a registered user's vault (so operators or friends can top
/// a user up, too).
#[event_cpi]
#[derive(Accounts)]
pub struct Deposit<'info> {
    #[account(mut)]
    pub depositor: Signer<'info>,
    /// CHECK: only a seed; `user_account` proves it is registered.
    pub user: UncheckedAccount<'info>,
    #[account(seeds = [USER_SEED, user.key().as_ref()], bump = user_account.bump)]
    pub user_account: Account<'info, UserAccount>,
    #[account(mut, seeds = [VAULT_SEED, user.key().as_ref()], bump = user_account.vault_bump)]
    pub vault: SystemAccount<'info>,
    pub system_program: Program<'info, System>,
}

impl Deposit<'_> {
    /// The vault balance after the deposit, refusing zero, overflow and a first deposit too
    /// small to make the vault rent-exempt.
    fn validate(&self, amount: u64) -> Result<u64> {
        require!(amount > 0, BalancePaymentError::ZeroAmount);
        let after = self
            .vault
            .lamports()
            .checked_add(amount)
            .ok_or(BalancePaymentError::ArithmeticOverflow)?;
        require!(
            after >= Rent::get()?.minimum_balance(0),
            BalancePaymentError::VaultBelowRentExempt
        );
        Ok(after)
    }

    pub fn deposit(ctx: Context<Self>, amount: u64) -> Result<()> {
        let vault_balance = ctx.accounts.validate(amount)?;
        system_program::transfer(
            CpiContext::new(
                system_program::ID,
                system_program::Transfer {
                    from: ctx.accounts.depositor.to_account_info(),
                    to: ctx.accounts.vault.to_account_info(),
                },
            ),
            amount,
        )?;
        emit_cpi!(Deposited {
            user: ctx.accounts.user.key(),
            depositor: ctx.accounts.depositor.key(),
            amount,
            vault_balance,
        });
        Ok(())
    }
}
