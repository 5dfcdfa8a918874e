use crate::{
    errors::BalancePaymentError,
    events::NamespaceCreated,
    state::{
        seeds::{GLOBAL_SEED, NAMESPACE_SEED},
        Global, Namespace, MAX_NAMESPACE_NAME_LEN,
    },
};
use anchor_lang::prelude::*;

#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug)]
pub struct CreateNamespaceArgs {
    /// A label for humans, at most 50 bytes.
    pub name: String,
    /// The controller key that will redeem user authorisations.
    pub bot: Pubkey,
    /// Where redeemed funds go.
    pub treasury: Pubkey,
}

/// Registers a new operator; the signer becomes its authority. Permissionless: a namespace
/// can only ever spend what users explicitly authorise for it.
#[event_cpi]
#[derive(Accounts)]
pub struct CreateNamespace<'info> {
    /// Pays for the namespace and administers it.
    #[account(mut)]
    pub authority: Signer<'info>,
    #[account(mut, seeds = [GLOBAL_SEED], bump = global.bump)]
    pub global: Account<'info, Global>,
    /// Takes the next id from the counter.
    #[account(
        init,
        payer = authority,
        space = 8 + Namespace::INIT_SPACE,
        seeds = [NAMESPACE_SEED, &global.namespace_count.to_le_bytes()],
        bump
    )]
    pub namespace: Account<'info, Namespace>,
    pub system_program: Program<'info, System>,
}

impl CreateNamespace<'_> {
    fn validate(&self, args: &CreateNamespaceArgs) -> Result<()> {
        require!(
            args.name.len() <= MAX_NAMESPACE_NAME_LEN,
            BalancePaymentError::NameTooLong
        );
        Ok(())
    }

    #[access_control(ctx.accounts.validate(&args))]
    pub fn create_namespace(ctx: Context<Self>, args: CreateNamespaceArgs) -> Result<()> {
        let now = Clock::get()?.unix_timestamp;
        let global = &mut ctx.accounts.global;
        let id = global.namespace_count;
        global.namespace_count = id
            .checked_add(1)
            .ok_or(BalancePaymentError::ArithmeticOverflow)?;

        let namespace = &mut ctx.accounts.namespace;
        namespace.set_inner(Namespace {
            id,
            name: args.name,
            authority: ctx.accounts.authority.key(),
            bot: args.bot,
            treasury: args.treasury,
            created_at: now,
            updated_at: now,
            bump: ctx.bumps.namespace,
        });

        let namespace = &ctx.accounts.namespace;
        emit_cpi!(NamespaceCreated {
            namespace_id: namespace.id,
            name: namespace.name.clone(),
            authority: namespace.authority,
            bot: namespace.bot,
            treasury: namespace.treasury,
        });
        Ok(())
    }
}
