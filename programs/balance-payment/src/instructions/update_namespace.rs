use crate::{
    errors::BalancePaymentError,
    events::NamespaceUpdated,
    state::{seeds::NAMESPACE_SEED, Namespace, MAX_NAMESPACE_NAME_LEN},
};
use anchor_lang::prelude::*;

/// Fields left `None` stay as they are.
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug, Default)]
pub struct UpdateNamespaceArgs {
    pub name: Option<String>,
    /// Hands the namespace to another administrator.
    pub authority: Option<Pubkey>,
    /// Rotates the controller key; outstanding authorisations stay valid for the new bot.
    pub bot: Option<Pubkey>,
    pub treasury: Option<Pubkey>,
}

/// Lets an operator rotate its keys or treasury.
#[event_cpi]
#[derive(Accounts)]
pub struct UpdateNamespace<'info> {
    pub authority: Signer<'info>,
    #[account(
        mut,
        seeds = [NAMESPACE_SEED, &namespace.id.to_le_bytes()],
        bump = namespace.bump,
        has_one = authority @ BalancePaymentError::UnauthorizedAuthority
    )]
    pub namespace: Account<'info, Namespace>,
}

impl UpdateNamespace<'_> {
    fn validate(&self, args: &UpdateNamespaceArgs) -> Result<()> {
        if let Some(name) = &args.name {
            require!(
                name.len() <= MAX_NAMESPACE_NAME_LEN,
                BalancePaymentError::NameTooLong
            );
        }
        Ok(())
    }

    #[access_control(ctx.accounts.validate(&args))]
    pub fn update_namespace(ctx: Context<Self>, args: UpdateNamespaceArgs) -> Result<()> {
        let namespace = &mut ctx.accounts.namespace;
        if let Some(name) = args.name {
            namespace.name = name;
        }
        if let Some(authority) = args.authority {
            namespace.authority = authority;
        }
        if let Some(bot) = args.bot {
            namespace.bot = bot;
        }
        if let Some(treasury) = args.treasury {
            namespace.treasury = treasury;
        }
        namespace.updated_at = Clock::get()?.unix_timestamp;

        let namespace = &ctx.accounts.namespace;
        emit_cpi!(NamespaceUpdated {
            namespace_id: namespace.id,
            name: namespace.name.clone(),
            authority: namespace.authority,
            bot: namespace.bot,
            treasury: namespace.treasury,
        });
        Ok(())
    }
}
