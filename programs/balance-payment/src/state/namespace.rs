use anchor_lang::prelude::*;

/// Longest namespace name, in bytes. Names are labels only: they are not signed, so renaming a
/// namespace never invalidates a user's outstanding authorisations.
pub const MAX_NAMESPACE_NAME_LEN: usize = 50;

/// One operator of the gateway: who administers it, which key may redeem user authorisations,
/// and where redeemed funds go.
#[account]
#[derive(InitSpace, Debug, PartialEq, Eq)]
pub struct Namespace {
    pub id: u64,
    #[max_len(MAX_NAMESPACE_NAME_LEN)]
    pub name: String,
    /// May change every field of this namespace, including itself.
    pub authority: Pubkey,
    /// The controller key: the only signer `pay`, `lock` and `settle` accept.
    pub bot: Pubkey,
    /// Receives what `pay` and `settle` move out of user vaults.
    pub treasury: Pubkey,
    pub created_at: i64,
    pub updated_at: i64,
    pub bump: u8,
}
