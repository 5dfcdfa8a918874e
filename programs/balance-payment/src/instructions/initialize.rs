use crate::state::{seeds::GLOBAL_SEED, Global};
use anchor_lang::prelude::*;

/// Creates the program-wide namespace counter. Runs once per deployment; anyone may pay for it.
#[derive(Accounts)]
pub struct Initialize<'info> {
    #[account(mut)]
    pub payer: Signer<'info>,
    /// The namespace counter; `init` makes a second call fail.
    #[account(init, payer = payer, space = 8 + Global::INIT_SPACE, seeds = [GLOBAL_SEED], bump)]
    pub global: Account<'info, Global>,
    pub system_program: Program<'info, System>,
}

impl Initialize<'_> {
    pub fn initialize(ctx: Context<Self>) -> Result<()> {
        let global = &mut ctx.accounts.global;
        global.namespace_count = 0;
        global.bump = ctx.bumps.global;
        Ok(())
    }
}
