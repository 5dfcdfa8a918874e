use anchor_lang::prelude::*;

/// A mint one namespace takes payment in. Its existence is the acceptance: `pay_token` and
/// `lock_token` require it, so a user's tokens of a mint the operator never listed (or has
/// stopped accepting) cannot be redeemed by that operator.
#[account]
#[derive(InitSpace, Debug, PartialEq, Eq)]
pub struct AcceptedMint {
    pub namespace_id: u64,
    pub mint: Pubkey,
    /// The token program that owns the mint (SPL Token or Token-2022).
    pub token_program: Pubkey,
    pub decimals: u8,
    pub bump: u8,
}
