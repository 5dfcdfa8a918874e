use crate::{
    authorization::{redeem_authorization, AmountRule, Asset, RecoverInfo, Redemption},
    errors::BalancePaymentError,
    events::Locked,
    state::{
        seeds::{GLOBAL_SEED, LOCK_SEED, NAMESPACE_SEED, USER_SEED, VAULT_SEED},
        Global, Lock, Namespace, UserAccount,
    },
    vault::spendable,
};
use anchor_lang::prelude::*;
use solana_instructions_sysvar as instructions_sysvar;

/// Redeems a user's signed authorisation as a hold: `amount` stays in the vault but can no
/// longer be withdrawn or paid, until the operator settles it or, after the signed deadline,
/// the user releases it.
#[event_cpi]
#[derive(Accounts)]
#[instruction(namespace_id: u64, recover_info: RecoverInfo)]
pub struct LockFunds<'info> {
    /// The namespace's controller key; pays the lock account's rent and gets it back on close.
    #[account(mut)]
    pub bot: Signer<'info>,
    #[account(
        seeds = [NAMESPACE_SEED, &namespace_id.to_le_bytes()],
        bump = namespace.bump,
        has_one = bot @ BalancePaymentError::UnauthorizedBot
    )]
    pub namespace: Account<'info, Namespace>,
    /// The deployment's settings, by address: the cluster tag the signed message must name.
    #[account(seeds = [GLOBAL_SEED], bump = global.bump)]
    pub global: Account<'info, Global>,
    /// CHECK: only a seed; the authorisation is verified against `user_account.owner`.
    pub user: UncheckedAccount<'info>,
    #[account(mut, seeds = [USER_SEED, user.key().as_ref()], bump = user_account.bump)]
    pub user_account: Account<'info, UserAccount>,
    #[account(seeds = [VAULT_SEED, user.key().as_ref()], bump = user_account.vault_bump)]
    pub vault: SystemAccount<'info>,
    /// Addressed by the authorisation's nonce, which `redeem_authorization` requires to be current.
    #[account(
        init,
        payer = bot,
        space = 8 + Lock::INIT_SPACE,
        seeds = [LOCK_SEED, user.key().as_ref(), &recover_info.nonce.to_le_bytes()],
        bump
    )]
    pub lock: Account<'info, Lock>,
    /// CHECK: the instructions sysvar, by address; read for the Ed25519 verification.
    #[account(address = instructions_sysvar::ID)]
    pub instructions: UncheckedAccount<'info>,
    pub system_program: Program<'info, System>,
}

impl LockFunds<'_> {
    pub fn lock(
        ctx: Context<Self>,
        namespace_id: u64,
        recover_info: RecoverInfo,
        amount: u64,
    ) -> Result<()> {
        let accounts = &mut *ctx.accounts;
        redeem_authorization(
            &accounts.instructions,
            Redemption {
                global: &accounts.global,
                namespace_id,
                amount,
                asset: Asset::Lamports,
                rule: AmountRule::AtMost,
            },
            &mut accounts.user_account,
            &recover_info,
        )?;
        let free = spendable(
            accounts.vault.lamports(),
            accounts.user_account.locked_amount,
        )?;
        require!(amount <= free, BalancePaymentError::InsufficientFunds);

        let user_account = &mut accounts.user_account;
        user_account.locked_amount = user_account
            .locked_amount
            .checked_add(amount)
            .ok_or(BalancePaymentError::ArithmeticOverflow)?;
        accounts.lock.set_inner(Lock {
            user: accounts.user.key(),
            namespace_id,
            nonce: recover_info.nonce,
            amount,
            expires_at: recover_info.deadline,
            rent_payer: accounts.bot.key(),
            bump: ctx.bumps.lock,
        });

        emit_cpi!(Locked {
            namespace_id,
            user: ctx.accounts.user.key(),
            nonce: recover_info.nonce,
            amount,
            max_amount: recover_info.max_amount,
            expires_at: recover_info.deadline,
            extra_data: recover_info.extra_data,
            locked_amount: ctx.accounts.user_account.locked_amount,
        });
        Ok(())
    }
}
