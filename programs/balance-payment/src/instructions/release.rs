use crate::{
    errors::BalancePaymentError,
    events::Released,
    state::{
        seeds::{LOCK_SEED, USER_SEED},
        Lock, UserAccount,
    },
};
use anchor_lang::prelude::*;

/// Lets a user take back a lock the operator did not settle in time, so a vanished operator
/// never freezes anyone's funds.
#[event_cpi]
#[derive(Accounts)]
pub struct Release<'info> {
    /// The user whose funds are locked.
    pub user: Signer<'info>,
    #[account(mut, seeds = [USER_SEED, user.key().as_ref()], bump = user_account.bump)]
    pub user_account: Account<'info, UserAccount>,
    #[account(
        mut,
        seeds = [LOCK_SEED, user.key().as_ref(), &lock.nonce.to_le_bytes()],
        bump = lock.bump,
        close = rent_payer
    )]
    pub lock: Account<'info, Lock>,
    /// CHECK: by address: whoever paid the lock's rent gets it back.
    #[account(mut, address = lock.rent_payer)]
    pub rent_payer: UncheckedAccount<'info>,
}

impl Release<'_> {
    fn validate(&self) -> Result<()> {
        require!(
            Clock::get()?.unix_timestamp > self.lock.expires_at,
            BalancePaymentError::LockNotExpired
        );
        Ok(())
    }

    #[access_control(ctx.accounts.validate())]
    pub fn release(ctx: Context<Self>) -> Result<()> {
        let amount = ctx.accounts.lock.amount;
        let user_account = &mut ctx.accounts.user_account;
        user_account.locked_amount = user_account
            .locked_amount
            .checked_sub(amount)
            .ok_or(BalancePaymentError::ArithmeticOverflow)?;
        emit_cpi!(Released {
            namespace_id: ctx.accounts.lock.namespace_id,
            user: ctx.accounts.user.key(),
            nonce: ctx.accounts.lock.nonce,
            amount,
            locked_amount: ctx.accounts.user_account.locked_amount,
        });
        Ok(())
    }
}
