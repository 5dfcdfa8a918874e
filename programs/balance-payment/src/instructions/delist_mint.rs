use crate::{
    errors::BalancePaymentError,
    events::MintDelisted,
    state::{
        seeds::{ACCEPTED_MINT_SEED, NAMESPACE_SEED},
        AcceptedMint, Namespace,
    },
};
use anchor_lang::prelude::*;

/// Stops a namespace taking a mint; its authority only, who gets the listing's rent back. New
/// `pay_token` and `lock_token` in that mint are refused; locks already taken can still be
/// settled or released, and users keep withdrawing as before.
#[event_cpi]
#[derive(Accounts)]
pub struct DelistMint<'info> {
    #[account(mut)]
    pub authority: Signer<'info>,
    #[account(
        seeds = [NAMESPACE_SEED, &namespace.id.to_le_bytes()],
        bump = namespace.bump,
        has_one = authority @ BalancePaymentError::UnauthorizedAuthority
    )]
    pub namespace: Account<'info, Namespace>,
    #[account(
        mut,
        seeds = [
            ACCEPTED_MINT_SEED,
            &namespace.id.to_le_bytes(),
            accepted_mint.mint.as_ref()
        ],
        bump = accepted_mint.bump,
        close = authority
    )]
    pub accepted_mint: Account<'info, AcceptedMint>,
}

impl DelistMint<'_> {
    pub fn delist_mint(ctx: Context<Self>) -> Result<()> {
        emit_cpi!(MintDelisted {
            namespace_id: ctx.accounts.namespace.id,
            mint: ctx.accounts.accepted_mint.mint,
        });
        Ok(())
    }
}
