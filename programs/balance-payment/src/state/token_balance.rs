use anchor_lang::prelude::*;

/// A user's escrow of one SPL token: the locked total, beside the vault token account it
/// signs for. Tokens are counted by the vault itself (its `amount`), as lamports are counted
/// by the SOL vault's balance.
#[account]
#[derive(InitSpace, Debug, PartialEq, Eq)]
pub struct TokenBalance {
    /// The wallet that owns the escrow: signs authorisations and may withdraw.
    pub owner: Pubkey,
    pub mint: Pubkey,
    /// Sum of the amounts held by this user's open token locks of this mint.
    pub locked_amount: u64,
    pub bump: u8,
    pub vault_bump: u8,
}
