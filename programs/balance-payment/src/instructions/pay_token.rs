use crate::{
    authorization::{redeem_authorization, AmountRule, Asset, RecoverInfo, Redemption},
    errors::BalancePaymentError,
    events::TokenPaid,
    state::{
        seeds::{
            ACCEPTED_MINT_SEED, GLOBAL_SEED, NAMESPACE_SEED, TOKEN_BALANCE_SEED, TOKEN_VAULT_SEED,
            USER_SEED,
        },
        AcceptedMint, Global, Namespace, TokenBalance, UserAccount,
    },
    token_vault::{spendable_tokens, TokenVault},
};
use anchor_lang::prelude::*;
use anchor_spl::token_interface::{Mint, TokenAccount, TokenInterface};
use solana_instructions_sysvar as instructions_sysvar;

/// `pay` in a token the namespace accepts: moves exactly the signed amount of `mint` from the
/// user's vault to the treasury's token account.
#[event_cpi]
#[derive(Accounts)]
#[instruction(namespace_id: u64)]
pub struct PayToken<'info> {
    /// The namespace's controller key.
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
    /// The deployment's settings, by address: the cluster tag the signed message must name.
    #[account(seeds = [GLOBAL_SEED], bump = global.bump)]
    pub global: Account<'info, Global>,
    /// CHECK: only a seed; the authorisation is verified against `user_account.owner`.
    pub user: UncheckedAccount<'info>,
    /// Holds the nonce, shared by SOL and token authorisations.
    #[account(mut, seeds = [USER_SEED, user.key().as_ref()], bump = user_account.bump)]
    pub user_account: Account<'info, UserAccount>,
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
    /// A token account of `mint` owned by the namespace's treasury.
    #[account(
        mut,
        constraint = treasury.owner == namespace.treasury @ BalancePaymentError::WrongTreasury,
        constraint = treasury.mint == mint.key() @ BalancePaymentError::WrongMint
    )]
    pub treasury: InterfaceAccount<'info, TokenAccount>,
    /// CHECK: the instructions sysvar, by address; read for the Ed25519 verification.
    #[account(address = instructions_sysvar::ID)]
    pub instructions: UncheckedAccount<'info>,
    pub token_program: Interface<'info, TokenInterface>,
}

impl PayToken<'_> {
    pub fn pay_token(
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
                asset: Asset::Token(accounts.mint.key()),
                rule: AmountRule::Exact,
            },
            &mut accounts.user_account,
            &recover_info,
        )?;
        let free = spendable_tokens(accounts.vault.amount, accounts.token_balance.locked_amount)?;
        require!(amount <= free, BalancePaymentError::InsufficientFunds);
        TokenVault {
            vault: &accounts.vault,
            mint: &accounts.mint,
            balance: &accounts.token_balance,
            token_program: &accounts.token_program,
        }
        .transfer_to(&accounts.treasury.to_account_info(), amount)?;
        accounts.vault.reload()?;

        emit_cpi!(TokenPaid {
            namespace_id,
            user: ctx.accounts.user.key(),
            mint: ctx.accounts.mint.key(),
            treasury: ctx.accounts.treasury.key(),
            nonce: recover_info.nonce,
            amount,
            max_amount: recover_info.max_amount,
            extra_data: recover_info.extra_data,
            vault_balance: ctx.accounts.vault.amount,
        });
        Ok(())
    }
}
