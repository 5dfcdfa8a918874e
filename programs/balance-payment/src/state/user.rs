use anchor_lang::prelude::*;

/// A user's spending state. The SOL itself lives in the user's vault PDA (a plain system
/// account), so that deposits are ordinary transfers any wallet understands.
#[account]
#[derive(InitSpace, Debug, PartialEq, Eq)]
pub struct UserAccount {
    /// The wallet that owns the vault, signs authorisations and may withdraw.
    pub owner: Pubkey,
    /// The nonce the next authorisation must carry; bumped by every `pay` and `lock`, so a
    /// signature can be redeemed once.
    pub nonce: u64,
    /// Sum of the amounts held by this user's open locks; never withdrawable or payable.
    pub locked_amount: u64,
    pub bump: u8,
    pub vault_bump: u8,
}
