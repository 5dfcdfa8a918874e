use crate::{
    events::TokenVaultOpened,
    state::{
        seeds::{ACCEPTED_MINT_SEED, TOKEN_BALANCE_SEED, TOKEN_VAULT_SEED, USER_SEED},
        AcceptedMint, TokenBalance, UserAccount,
    },
};
use anchor_lang::prelude::*;
use anchor_spl::token_interface::{Mint, TokenAccount, TokenInterface};

/// Creates a registered user's escrow for one mint: the vault token account and the balance
/// account that is its authority. Anyone may pay for it (a wallet page, an operator). The mint
/// must be accepted by some namespace, so vaults only exist for mints that passed
/// `accept_mint`'s checks.
#[event_cpi]
#[derive(Accounts)]
pub struct OpenTokenVault<'info> {
    #[account(mut)]
    pub payer: Signer<'info>,
    /// CHECK: only a seed; `user_account` proves it is registered.
    pub user: UncheckedAccount<'info>,
    #[account(seeds = [USER_SEED, user.key().as_ref()], bump = user_account.bump)]
    pub user_account: Account<'info, UserAccount>,
    #[account(mint::token_program = token_program)]
    pub mint: InterfaceAccount<'info, Mint>,
    /// Any namespace's listing of `mint`.
    #[account(
        seeds = [
            ACCEPTED_MINT_SEED,
            &accepted_mint.namespace_id.to_le_bytes(),
            mint.key().as_ref()
        ],
        bump = accepted_mint.bump
    )]
    pub accepted_mint: Account<'info, AcceptedMint>,
    #[account(
        init,
        payer = payer,
        space = 8 + TokenBalance::INIT_SPACE,
        seeds = [TOKEN_BALANCE_SEED, user.key().as_ref(), mint.key().as_ref()],
        bump
    )]
    pub token_balance: Account<'info, TokenBalance>,
    #[account(
        init,
        payer = payer,
        seeds = [TOKEN_VAULT_SEED, user.key().as_ref(), mint.key().as_ref()],
        bump,
        token::mint = mint,
        token::authority = token_balance,
        token::token_program = token_program
    )]
    pub vault: InterfaceAccount<'info, TokenAccount>,
    pub token_program: Interface<'info, TokenInterface>,
    pub system_program: Program<'info, System>,
}

impl OpenTokenVault<'_> {
    pub fn open_token_vault(ctx: Context<Self>) -> Result<()> {
        let (user, mint) = (ctx.accounts.user.key(), ctx.accounts.mint.key());
        ctx.accounts.token_balance.set_inner(TokenBalance {
            owner: user,
            mint,
            locked_amount: 0,
            bump: ctx.bumps.token_balance,
            vault_bump: ctx.bumps.vault,
        });
        emit_cpi!(TokenVaultOpened {
            user,
            mint,
            vault: ctx.accounts.vault.key(),
        });
        Ok(())
    }
}
