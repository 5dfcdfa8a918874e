use crate::{
    errors::BalancePaymentError,
    events::TokenReleased,
    state::{
        seeds::{TOKEN_BALANCE_SEED, TOKEN_LOCK_SEED},
        TokenBalance, TokenLock,
    },
};
use anchor_lang::prelude::*;

/// `release` for a token lock the operator did not settle in time: the user takes the locked
/// tokens back into their free balance.
#[event_cpi]
#[derive(Accounts)]
pub struct ReleaseToken<'info> {
    /// The user whose tokens are locked.
    pub user: Signer<'info>,
    #[account(
        mut,
        seeds = [TOKEN_BALANCE_SEED, user.key().as_ref(), token_lock.mint.as_ref()],
        bump = token_balance.bump
    )]
    pub token_balance: Account<'info, TokenBalance>,
    #[account(
        mut,
        seeds = [TOKEN_LOCK_SEED, user.key().as_ref(), &token_lock.nonce.to_le_bytes()],
        bump = token_lock.bump,
        close = rent_payer
    )]
    pub token_lock: Account<'info, TokenLock>,
    /// CHECK: by address: whoever paid the lock's rent gets it back.
    #[account(mut, address = token_lock.rent_payer)]
    pub rent_payer: UncheckedAccount<'info>,
}

impl ReleaseToken<'_> {
    fn validate(&self) -> Result<()> {
        require!(
            Clock::get()?.unix_timestamp > self.token_lock.expires_at,
            BalancePaymentError::LockNotExpired
        );
        Ok(())
    }

    #[access_control(ctx.accounts.validate())]
    pub fn release_token(ctx: Context<Self>) -> Result<()> {
        let amount = ctx.accounts.token_lock.amount;
        let balance = &mut ctx.accounts.token_balance;
        balance.locked_amount = balance
            .locked_amount
            .checked_sub(amount)
            .ok_or(BalancePaymentError::ArithmeticOverflow)?;
        emit_cpi!(TokenReleased {
            namespace_id: ctx.accounts.token_lock.namespace_id,
            user: ctx.accounts.user.key(),
            mint: ctx.accounts.token_lock.mint,
            nonce: ctx.accounts.token_lock.nonce,
            amount,
            locked_amount: ctx.accounts.token_balance.locked_amount,
        });
        Ok(())
    }
}
