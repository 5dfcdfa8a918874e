use crate::{
    errors::BalancePaymentError,
    events::TokenDeposited,
    state::{
        seeds::{TOKEN_BALANCE_SEED, TOKEN_VAULT_SEED},
        TokenBalance,
    },
};
use anchor_lang::prelude::*;
use anchor_spl::token_interface::{self, Mint, TokenAccount, TokenInterface, TransferChecked};

/// Moves tokens from any wallet's token account into a user's vault of that mint (`deposit`
/// for tokens: anyone may top a user up).
#[event_cpi]
#[derive(Accounts)]
pub struct DepositToken<'info> {
    pub depositor: Signer<'info>,
    /// The depositor's token account; the token program checks the depositor may spend it.
    #[account(mut, constraint = source.mint == mint.key() @ BalancePaymentError::WrongMint)]
    pub source: InterfaceAccount<'info, TokenAccount>,
    /// CHECK: only a seed; `token_balance` proves the user has an escrow of this mint.
    pub user: UncheckedAccount<'info>,
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
    #[account(mint::token_program = token_program)]
    pub mint: InterfaceAccount<'info, Mint>,
    pub token_program: Interface<'info, TokenInterface>,
}

impl DepositToken<'_> {
    pub fn deposit_token(ctx: Context<Self>, amount: u64) -> Result<()> {
        require!(amount > 0, BalancePaymentError::ZeroAmount);
        token_interface::transfer_checked(
            CpiContext::new(
                ctx.accounts.token_program.key(),
                TransferChecked {
                    from: ctx.accounts.source.to_account_info(),
                    mint: ctx.accounts.mint.to_account_info(),
                    to: ctx.accounts.vault.to_account_info(),
                    authority: ctx.accounts.depositor.to_account_info(),
                },
            ),
            amount,
            ctx.accounts.mint.decimals,
        )?;
        ctx.accounts.vault.reload()?;
        emit_cpi!(TokenDeposited {
            user: ctx.accounts.user.key(),
            mint: ctx.accounts.mint.key(),
            depositor: ctx.accounts.depositor.key(),
            amount,
            vault_balance: ctx.accounts.vault.amount,
        });
        Ok(())
    }
}
