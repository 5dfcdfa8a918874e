use crate::{
    errors::BalancePaymentError,
    events::Settled,
    state::{
        seeds::{LOCK_SEED, NAMESPACE_SEED, USER_SEED, VAULT_SEED},
        Lock, Namespace, UserAccount,
    },
    vault::transfer_from_vault,
};
use anchor_lang::prelude::*;

/// Ends a lock before it expires: `amount` (at most what was locked) goes to the treasury, the
/// rest returns to the user's free balance, and the lock account closes.
#[event_cpi]
#[derive(Accounts)]
pub struct Settle<'info> {
    pub bot: Signer<'info>,
    #[account(
        seeds = [NAMESPACE_SEED, &namespace.id.to_le_bytes()],
        bump = namespace.bump,
        has_one = bot @ BalancePaymentError::UnauthorizedBot,
        has_one = treasury @ BalancePaymentError::WrongTreasury,
        constraint = namespace.id == lock.namespace_id @ BalancePaymentError::NamespaceMismatch
    )]
    pub namespace: Account<'info, Namespace>,
    /// CHECK: only a seed, tying the user account, vault and lock together.
    pub user: UncheckedAccount<'info>,
    #[account(mut, seeds = [USER_SEED, user.key().as_ref()], bump = user_account.bump)]
    pub user_account: Account<'info, UserAccount>,
    #[account(mut, seeds = [VAULT_SEED, user.key().as_ref()], bump = user_account.vault_bump)]
    pub vault: SystemAccount<'info>,
    #[account(
        mut,
        seeds = [LOCK_SEED, user.key().as_ref(), &lock.nonce.to_le_bytes()],
        bump = lock.bump,
        close = rent_payer
    )]
    pub lock: Account<'info, Lock>,
    /// CHECK: must be the namespace's treasury (`has_one` above); only receives lamports.
    #[account(mut)]
    pub treasury: UncheckedAccount<'info>,
    /// CHECK: by address: whoever paid the lock's rent gets it back.
    #[account(mut, address = lock.rent_payer)]
    pub rent_payer: UncheckedAccount<'info>,
    pub system_program: Program<'info, System>,
}

impl Settle<'_> {
    fn validate(&self, amount: u64) -> Result<()> {
        require!(
            Clock::get()?.unix_timestamp <= self.lock.expires_at,
            BalancePaymentError::LockExpired
        );
        require!(
            amount <= self.lock.amount,
            BalancePaymentError::SettleExceedsLock
        );
        Ok(())
    }

    /// Settling zero is how an operator releases a lock early.
    #[access_control(ctx.accounts.validate(amount))]
    pub fn settle(ctx: Context<Self>, amount: u64) -> Result<()> {
        let accounts = &mut *ctx.accounts;
        let locked = accounts.lock.amount;
        let user_account = &mut accounts.user_account;
        user_account.locked_amount = user_account
            .locked_amount
            .checked_sub(locked)
            .ok_or(BalancePaymentError::ArithmeticOverflow)?;
        if amount > 0 {
            transfer_from_vault(
                &accounts.vault.to_account_info(),
                &accounts.treasury.to_account_info(),
                &accounts.user.key(),
                accounts.user_account.vault_bump,
                amount,
            )?;
        }

        emit_cpi!(Settled {
            namespace_id: ctx.accounts.lock.namespace_id,
            user: ctx.accounts.user.key(),
            nonce: ctx.accounts.lock.nonce,
            amount,
            released: locked - amount,
            locked_amount: ctx.accounts.user_account.locked_amount,
            vault_balance: ctx.accounts.vault.lamports(),
        });
        Ok(())
    }
}
