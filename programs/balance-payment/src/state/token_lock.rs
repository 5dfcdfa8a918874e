use anchor_lang::prelude::*;

/// A hold on part of a user's token vault: [`super::Lock`] for one mint. Its address takes the
/// authorisation's nonce, which SOL and token authorisations share, so no two locks collide.
#[account]
#[derive(InitSpace, Debug, PartialEq, Eq)]
pub struct TokenLock {
    pub user: Pubkey,
    pub mint: Pubkey,
    pub namespace_id: u64,
    pub nonce: u64,
    pub amount: u64,
    /// The deadline the user signed: settle until then, release after.
    pub expires_at: i64,
    /// Paid this account's rent; gets it back when the lock closes.
    pub rent_payer: Pubkey,
    pub bump: u8,
}
