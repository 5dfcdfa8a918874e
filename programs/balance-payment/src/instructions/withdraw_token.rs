use crate::{
    errors::BalancePaymentError,
    events::TokenWithdrawn,
    state::{
        seeds::{TOKEN_BALANCE_SEED, TOKEN_VAULT_SEED},
        TokenBalance,
    },
    token_vault::TokenVault,
};
use anchor_lang::prelude::*;
use anchor_spl::token_interface::{Mint, TokenAccount, TokenInterface};

/// Returns free tokens from the signer's vault to a token account of the signer's choosing.
/// Locked tokens stay.
#[event_cpi]
#[derive(Accounts)]
pub struct WithdrawToken<'info> {
    /// The vault's owner.
    pub user: Signer<'info>,
    /// Derived from the signer, so nobody can name another user's escrow.
    #[account(
        seeds = [TOKEN_BALANCE_SEED, user.key().as_ref(), mint.key().as_ref()],
        bump = token_balance.bump
    )]
    pub token_balance: Account<'info, TokenBalance>,
    #[account(
        mut,
        seeds = [TOKEN_VAULT_SEED, user.key().as_ref(), mint.key().as_ref()],
        bump = token_balance.vault_bump
    )]
    pub vault: InterfaceAccount<'info, TokenAccount>,
    #[account(mut, constraint = destination.mint == mint.key() @ BalancePaymentError::WrongMint)]
    pub destination: InterfaceAccount<'info, TokenAccount>,
    #[account(mint::token_program = token_program)]
    pub mint: InterfaceAccount<'info, Mint>,
    pub token_program: Interface<'info, TokenInterface>,
}

impl WithdrawToken<'_> {
    fn validate(&self, amount: u64) -> Result<()> {
        require!(amount > 0, BalancePaymentError::ZeroAmount);
        let remaining = self
            .vault
            .amount
            .checked_sub(amount)
            .ok_or(BalancePaymentError::InsufficientFunds)?;
        require!(
            remaining >= self.token_balance.locked_amount,
            BalancePaymentError::FundsLocked
        );
        Ok(())
    }

    #[access_control(ctx.accounts.validate(amount))]
    pub fn withdraw_token(ctx: Context<Self>, amount: u64) -> Result<()> {
        let accounts = &mut *ctx.accounts;
        TokenVault {
            vault: &accounts.vault,
            mint: &accounts.mint,
            balance: &accounts.token_balance,
            token_program: &accounts.token_program,
        }
        .transfer_to(&accounts.destination.to_account_info(), amount)?;
        // Read back rather than computed, so the event is true even for a destination that is
        // the vault itself.
        accounts.vault.reload()?;
        emit_cpi!(TokenWithdrawn {
            user: ctx.accounts.user.key(),
            mint: ctx.accounts.mint.key(),
            amount,
            vault_balance: ctx.accounts.vault.amount,
        });
        Ok(())
    }
}
