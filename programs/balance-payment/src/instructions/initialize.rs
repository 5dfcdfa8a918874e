use crate::state::{seeds::GLOBAL_SEED, Global};
use anchor_lang::prelude::*;

/// Creates the program-wide `Global` account: the namespace counter and the cluster tag.
/// Runs once per deployment; anyone may pay for it.
#[derive(Accounts)]
pub struct Initialize<'info> {
    #[account(mut)]
    pub payer: Signer<'info>,
    /// The deployment's settings; `init` makes a second call fail.
    #[account(init, payer = payer, space = 8 + Global::INIT_SPACE, seeds = [GLOBAL_SEED], bump)]
    pub global: Account<'info, Global>,
    pub system_program: Program<'info, System>,
}

impl Initialize<'_> {
    /// `cluster` is the cluster's genesis hash (`solana genesis-hash`): every authorisation
    /// redeemed here must name it, so signatures made for another cluster are refused.
    pub fn initialize(ctx: Context<Self>, cluster: [u8; 32]) -> Result<()> {
        let global = &mut ctx.accounts.global;
        global.namespace_count = 0;
        global.cluster = cluster;
        global.bump = ctx.bumps.global;
        Ok(())
    }
}
