use crate::{
    authorization::{redeem_authorization, AmountRule, Asset, RecoverInfo, Redemption},
    errors::BalancePaymentError,
    events::TokenLocked,
    state::{
        seeds::{
            ACCEPTED_MINT_SEED, GLOBAL_SEED, NAMESPACE_SEED, TOKEN_BALANCE_SEED, TOKEN_LOCK_SEED,
            TOKEN_VAULT_SEED, USER_SEED,
        },
        AcceptedMint, Global, Namespace, TokenBalance, TokenLock, UserAccount,
    },
    token_vault::spendable_tokens,
};
use anchor_lang::prelude::*;
use anchor_spl::token_interface::{Mint, TokenAccount};
use solana_instructions_sysvar as instructions_sysvar;

/// `lock` in a token the namespace accepts: holds up to the signed maximum of `mint` in the
/// user's vault until `settle_token`, or `release_token` after the signed deadline.
#[event_cpi]
#[derive(Accounts)]
#[instruction(namespace_id: u64, recover_info: RecoverInfo)]
pub struct LockToken<'info> {
    /// The namespace's controller key; pays the lock account's rent and gets it back on close.
    #[account(mut)]
    pub bot: Signer<'info>,
    #[account(
        seeds = [NAMESPACE_SEED, &namespace_id.to_le_bytes()],
        bump = namespace.bump,
        has_one = bot @ BalancePaymentError::UnauthorizedBot
    )]
    pub namespace: Account<'info, Namespace>,
    /// The namespace's listing of `mint`: without it the namespace does not take this token.
    #[account(
        seeds = [ACCEPTED_MINT_SEED, &namespace_id.to_le_bytes(), mint.key().as_ref()],
        bump = accepted_mint.bump
    )]
    pub accepted_mint: Account<'info, AcceptedMint>,
    #[account(seeds = [GLOBAL_SEED], bump = global.bump)]
    pub global: Account<'info, Global>,
    /// CHECK: only a seed; the authorisation is verified against `user_account.owner`.
    pub user: UncheckedAccount<'info>,
    #[account(mut, seeds = [USER_SEED, user.key().as_ref()], bump = user_account.bump)]
    pub user_account: Account<'info, UserAccount>,
    #[account(
        mut,
        seeds = [TOKEN_BALANCE_SEED, user.key().as_ref(), mint.key().as_ref()],
        bump = token_balance.bump
    )]
    pub token_balance: Account<'info, TokenBalance>,
    #[account(
        seeds = [TOKEN_VAULT_SEED, user.key().as_ref(), mint.key().as_ref()],
        bump = token_balance.vault_bump
    )]
    pub vault: InterfaceAccount<'info, TokenAccount>,
    pub mint: InterfaceAccount<'info, Mint>,
    /// Addressed by the authorisation's nonce, which `redeem_authorization` requires to be current.
    #[account(
        init,
        payer = bot,
        space = 8 + TokenLock::INIT_SPACE,
        seeds = [TOKEN_LOCK_SEED, user.key().as_ref(), &recover_info.nonce.to_le_bytes()],
        bump
    )]
    pub token_lock: Account<'info, TokenLock>,
    /// CHECK: the instructions sysvar, by address; read for the Ed25519 verification.
    #[account(address = instructions_sysvar::ID)]
    pub instructions: UncheckedAccount<'info>,
    pub system_program: Program<'info, System>,
}

impl LockToken<'_> {
    pub fn lock_token(
        ctx: Context<Self>,
        namespace_id: u64,
        recover_info: RecoverInfo,
        amount: u64,
    ) -> Result<()> {
        let accounts = &mut *ctx.accounts;
        let mint = accounts.mint.key();
        redeem_authorization(
            &accounts.instructions,
            Redemption {
                global: &accounts.global,
                namespace_id,
                amount,
                asset: Asset::Token(mint),
                rule: AmountRule::AtMost,
            },
            &mut accounts.user_account,
            &recover_info,
        )?;
        let balance = &mut accounts.token_balance;
        let free = spendable_tokens(accounts.vault.amount, balance.locked_amount)?;
        require!(amount <= free, BalancePaymentError::InsufficientFunds);
        balance.locked_amount = balance
            .locked_amount
            .checked_add(amount)
            .ok_or(BalancePaymentError::ArithmeticOverflow)?;
        accounts.token_lock.set_inner(TokenLock {
            user: accounts.user.key(),
            mint,
            namespace_id,
            nonce: recover_info.nonce,
            amount,
            expires_at: recover_info.deadline,
            rent_payer: accounts.bot.key(),
            bump: ctx.bumps.token_lock,
        });

        emit_cpi!(TokenLocked {
            namespace_id,
            user: ctx.accounts.user.key(),
            mint,
            nonce: recover_info.nonce,
            amount,
            max_amount: recover_info.max_amount,
            expires_at: recover_info.deadline,
            extra_data: recover_info.extra_data,
            locked_amount: ctx.accounts.token_balance.locked_amount,
        });
        Ok(())
    }
}
