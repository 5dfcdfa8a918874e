use anchor_lang::prelude::*;

/// A hold on part of a user's vault, taken by an operator before serving and settled after.
/// After `expires_at` the operator can no longer settle it and the user can release it, so
/// a vanished operator never freezes a user's funds.
#[account]
#[derive(InitSpace, Debug, PartialEq, Eq)]
pub struct Lock {
    pub user: Pubkey,
    pub namespace_id: u64,
    /// The user nonce the authorisation carried; part of this account's address.
    pub nonce: u64,
    pub amount: u64,
    /// The deadline the user signed: settle until then, release after.
    pub expires_at: i64,
    /// Paid this account's rent; gets it back when the lock closes.
    pub rent_payer: Pubkey,
    pub bump: u8,
}
