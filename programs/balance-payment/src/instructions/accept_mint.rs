use crate::{
    errors::BalancePaymentError,
    events::MintAccepted,
    state::{
        seeds::{ACCEPTED_MINT_SEED, NAMESPACE_SEED},
        AcceptedMint, Namespace,
    },
    token_vault::refuse_unsupported_mint,
};
use anchor_lang::prelude::*;
use anchor_spl::token_interface::Mint;

/// Lists a mint a namespace takes payment in; its authority only. From then on the namespace's
/// bot can redeem users' token authorisations in that mint, and users can open vaults for it.
#[event_cpi]
#[derive(Accounts)]
#[instruction(namespace_id: u64)]
pub struct AcceptMint<'info> {
    /// The namespace's authority; pays the listing's rent.
    #[account(mut)]
    pub authority: Signer<'info>,
    #[account(
        seeds = [NAMESPACE_SEED, &namespace_id.to_le_bytes()],
        bump = namespace.bump,
        has_one = authority @ BalancePaymentError::UnauthorizedAuthority
    )]
    pub namespace: Account<'info, Namespace>,
    /// An SPL Token or Token-2022 mint (its owner is checked on load).
    pub mint: InterfaceAccount<'info, Mint>,
    #[account(
        init,
        payer = authority,
        space = 8 + AcceptedMint::INIT_SPACE,
        seeds = [ACCEPTED_MINT_SEED, &namespace_id.to_le_bytes(), mint.key().as_ref()],
        bump
    )]
    pub accepted_mint: Account<'info, AcceptedMint>,
    pub system_program: Program<'info, System>,
}

impl AcceptMint<'_> {
    pub fn accept_mint(ctx: Context<Self>, namespace_id: u64) -> Result<()> {
        let mint = ctx.accounts.mint.to_account_info();
        refuse_unsupported_mint(&mint)?;
        let token_program = *mint.owner;
        let decimals = ctx.accounts.mint.decimals;
        ctx.accounts.accepted_mint.set_inner(AcceptedMint {
            namespace_id,
            mint: mint.key(),
            token_program,
            decimals,
            bump: ctx.bumps.accepted_mint,
        });
        emit_cpi!(MintAccepted {
            namespace_id,
            mint: mint.key(),
            token_program,
            decimals,
        });
        Ok(())
    }
}
