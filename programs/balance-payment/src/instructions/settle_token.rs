use crate::{
    errors::BalancePaymentError,
    events::TokenSettled,
    state::{
        seeds::{NAMESPACE_SEED, TOKEN_BALANCE_SEED, TOKEN_LOCK_SEED, TOKEN_VAULT_SEED},
        Namespace, TokenBalance, TokenLock,
    },
    token_vault::TokenVault,
};
use anchor_lang::prelude::*;
use anchor_spl::token_interface::{Mint, TokenAccount, TokenInterface};

/// `settle` for a token lock: `amount` (at most what was locked) goes to the treasury's token
/// account, the rest returns to the user's free balance, and the lock account closes. It does
/// not need the mint to be still accepted: a lock taken before a delisting can still settle.
#[event_cpi]
#[derive(Accounts)]
pub struct SettleToken<'info> {
    pub bot: Signer<'info>,
    #[account(
        seeds = [NAMESPACE_SEED, &namespace.id.to_le_bytes()],
        bump = namespace.bump,
        has_one = bot @ BalancePaymentError::UnauthorizedBot,
        constraint = namespace.id == token_lock.namespace_id @ BalancePaymentError::NamespaceMismatch
    )]
    pub namespace: Account<'info, Namespace>,
    /// CHECK: only a seed, tying the balance, vault and lock together.
    pub user: UncheckedAccount<'info>,
    #[account(
        mut,
        seeds = [TOKEN_BALANCE_SEED, user.key().as_ref(), token_lock.mint.as_ref()],
        bump = token_balance.bump
    )]
    pub token_balance: Account<'info, TokenBalance>,
    #[account(
        mut,
        seeds = [TOKEN_VAULT_SEED, user.key().as_ref(), token_lock.mint.as_ref()],
        bump = token_balance.vault_bump
    )]
    pub vault: InterfaceAccount<'info, TokenAccount>,
    #[account(
        constraint = mint.key() == token_lock.mint @ BalancePaymentError::WrongMint,
        mint::token_program = token_program
    )]
    pub mint: InterfaceAccount<'info, Mint>,
    #[account(
        mut,
        seeds = [TOKEN_LOCK_SEED, user.key().as_ref(), &token_lock.nonce.to_le_bytes()],
        bump = token_lock.bump,
        close = rent_payer
    )]
    pub token_lock: Account<'info, TokenLock>,
    /// A token account of the lock's mint owned by the namespace's treasury.
    #[account(
        mut,
        constraint = treasury.owner == namespace.treasury @ BalancePaymentError::WrongTreasury,
        constraint = treasury.mint == token_lock.mint @ BalancePaymentError::WrongMint
    )]
    pub treasury: InterfaceAccount<'info, TokenAccount>,
    /// CHECK: by address: whoever paid the lock's rent gets it back.
    #[account(mut, address = token_lock.rent_payer)]
    pub rent_payer: UncheckedAccount<'info>,
    pub token_program: Interface<'info, TokenInterface>,
}

impl SettleToken<'_> {
    fn validate(&self, amount: u64) -> Result<()> {
        require!(
            Clock::get()?.unix_timestamp <= self.token_lock.expires_at,
            BalancePaymentError::LockExpired
        );
        require!(
            amount <= self.token_lock.amount,
            BalancePaymentError::SettleExceedsLock
        );
        Ok(())
    }

    /// Settling zero is how an operator releases a lock early.
    #[access_control(ctx.accounts.validate(amount))]
    pub fn settle_token(ctx: Context<Self>, amount: u64) -> Result<()> {
        let accounts = &mut *ctx.accounts;
        let locked = accounts.token_lock.amount;
        let balance = &mut accounts.token_balance;
        balance.locked_amount = balance
            .locked_amount
            .checked_sub(locked)
            .ok_or(BalancePaymentError::ArithmeticOverflow)?;
        if amount > 0 {
            TokenVault {
                vault: &accounts.vault,
                mint: &accounts.mint,
                balance: &accounts.token_balance,
                token_program: &accounts.token_program,
            }
            .transfer_to(&accounts.treasury.to_account_info(), amount)?;
            accounts.vault.reload()?;
        }

        emit_cpi!(TokenSettled {
            namespace_id: ctx.accounts.token_lock.namespace_id,
            user: ctx.accounts.user.key(),
            mint: ctx.accounts.token_lock.mint,
            nonce: ctx.accounts.token_lock.nonce,
            amount,
            released: locked - amount,
            locked_amount: ctx.accounts.token_balance.locked_amount,
            vault_balance: ctx.accounts.vault.amount,
        });
        Ok(())
    }
}
