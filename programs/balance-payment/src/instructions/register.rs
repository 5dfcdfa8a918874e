use crate::{
    events::UserRegistered,
    state::{
        seeds::{USER_SEED, VAULT_SEED},
        UserAccount,
    },
};
use anchor_lang::prelude::*;

/// Creates a user's account (nonce, locked total); the vault PDA needs no creation, it comes
/// into being with the first deposit.
#[event_cpi]
#[derive(Accounts)]
pub struct Register<'info> {
    /// The wallet being registered; pays the account's rent.
    #[account(mut)]
    pub user: Signer<'info>,
    #[account(
        init,
        payer = user,
        space = 8 + UserAccount::INIT_SPACE,
        seeds = [USER_SEED, user.key().as_ref()],
        bump
    )]
    pub user_account: Account<'info, UserAccount>,
    #[account(seeds = [VAULT_SEED, user.key().as_ref()], bump)]
    pub vault: SystemAccount<'info>,
    pub system_program: Program<'info, System>,
}

impl Register<'_> {
    pub fn register(ctx: Context<Self>) -> Result<()> {
        ctx.accounts.user_account.set_inner(UserAccount {
            owner: ctx.accounts.user.key(),
            nonce: 0,
            locked_amount: 0,
            bump: ctx.bumps.user_account,
            vault_bump: ctx.bumps.vault,
        });
        emit_cpi!(UserRegistered {
            user: ctx.accounts.user.key(),
            vault: ctx.accounts.vault.key(),
        });
        Ok(())
    }
}
