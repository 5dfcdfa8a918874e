use crate::{
    authorization::{redeem_authorization, AmountRule, Asset, RecoverInfo, Redemption},
    errors::BalancePaymentError,
    events::Paid,
    state::{
        seeds::{GLOBAL_SEED, NAMESPACE_SEED, USER_SEED, VAULT_SEED},
        Global, Namespace, UserAccount,
    },
    vault::{spendable, transfer_from_vault},
};
use anchor_lang::prelude::*;
use solana_instructions_sysvar as instructions_sysvar;

/// Redeems a user's signed authorisation: moves `amount`, which must be exactly what the user
/// signed, from the user's vault to the namespace treasury. The operator's controller calls this, then
/// credits the user off-chain.
#[event_cpi]
#[derive(Accounts)]
#[instruction(namespace_id: u64)]
pub struct Pay<'info> {
    /// The namespace's controller key.
    pub bot: Signer<'info>,
    #[account(
        seeds = [NAMESPACE_SEED, &namespace_id.to_le_bytes()],
        bump = namespace.bump,
        has_one = bot @ BalancePaymentError::UnauthorizedBot,
        has_one = treasury @ BalancePaymentError::WrongTreasury
    )]
    pub namespace: Account<'info, Namespace>,
    /// The deployment's settings, by address: the cluster tag the signed message must name.
    #[account(seeds = [GLOBAL_SEED], bump = global.bump)]
    pub global: Account<'info, Global>,
    /// CHECK: only a seed; the authorisation is verified against `user_account.owner`.
    pub user: UncheckedAccount<'info>,
    #[account(mut, seeds = [USER_SEED, user.key().as_ref()], bump = user_account.bump)]
    pub user_account: Account<'info, UserAccount>,
    #[account(mut, seeds = [VAULT_SEED, user.key().as_ref()], bump = user_account.vault_bump)]
    pub vault: SystemAccount<'info>,
    /// CHECK: must be the namespace's treasury (`has_one` above); only receives lamports.
    #[account(mut)]
    pub treasury: UncheckedAccount<'info>,
    /// CHECK: the instructions sysvar, by address; read for the Ed25519 verification.
    #[account(address = instructions_sysvar::ID)]
    pub instructions: UncheckedAccount<'info>,
    pub system_program: Program<'info, System>,
}

impl Pay<'_> {
    pub fn pay(
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
                rule: AmountRule::Exact,
            },
            &mut accounts.user_account,
            &recover_info,
        )?;
        let free = spendable(
            accounts.vault.lamports(),
            accounts.user_account.locked_amount,
        )?;
        require!(amount <= free, BalancePaymentError::InsufficientFunds);

        transfer_from_vault(
            &accounts.vault.to_account_info(),
            &accounts.treasury.to_account_info(),
            &accounts.user.key(),
            accounts.user_account.vault_bump,
            amount,
        )?;
        emit_cpi!(Paid {
            namespace_id,
            user: ctx.accounts.user.key(),
            treasury: ctx.accounts.treasury.key(),
            nonce: recover_info.nonce,
            amount,
            max_amount: recover_info.max_amount,
            extra_data: recover_info.extra_data,
            vault_balance: ctx.accounts.vault.lamports(),
        });
        Ok(())
    }
}
