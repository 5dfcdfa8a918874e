//! Events emitted with `emit_cpi!` on every state change. They carry resulting balances so an
//! indexer can check its own arithmetic against the chain's without reading accounts.
use anchor_lang::prelude::*;

#[event]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceCreated {
    pub namespace_id: u64,
    pub name: String,
    pub authority: Pubkey,
    pub bot: Pubkey,
    pub treasury: Pubkey,
}

#[event]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceUpdated {
    pub namespace_id: u64,
    pub name: String,
    pub authority: Pubkey,
    pub bot: Pubkey,
    pub treasury: Pubkey,
}

#[event]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRegistered {
    pub user: Pubkey,
    pub vault: Pubkey,
}

#[event]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deposited {
    pub user: Pubkey,
    pub depositor: Pubkey,
    pub amount: u64,
    pub vault_balance: u64,
}

#[event]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdrawn {
    pub user: Pubkey,
    pub amount: u64,
    pub vault_balance: u64,
}

#[event]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paid {
    pub namespace_id: u64,
    pub user: Pubkey,
    pub treasury: Pubkey,
    /// The nonce the authorisation carried (the user's nonce is now one higher).
    pub nonce: u64,
    pub amount: u64,
    pub max_amount: u64,
    pub extra_data: [u8; 32],
    pub vault_balance: u64,
}

#[event]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    pub namespace_id: u64,
    pub user: Pubkey,
    pub nonce: u64,
    pub amount: u64,
    pub max_amount: u64,
    pub expires_at: i64,
    pub extra_data: [u8; 32],
    pub locked_amount: u64,
}

#[event]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub namespace_id: u64,
    pub user: Pubkey,
    pub nonce: u64,
    /// Moved to the treasury.
    pub amount: u64,
    /// Returned to the user's free balance.
    pub released: u64,
    pub locked_amount: u64,
    pub vault_balance: u64,
}

#[event]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub namespace_id: u64,
    pub user: Pubkey,
    pub nonce: u64,
    pub amount: u64,
    pub locked_amount: u64,
}

#[event]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintAccepted {
    pub namespace_id: u64,
    pub mint: Pubkey,
    pub token_program: Pubkey,
    pub decimals: u8,
}

#[event]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintDelisted {
    pub namespace_id: u64,
    pub mint: Pubkey,
}

#[event]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenVaultOpened {
    pub user: Pubkey,
    pub mint: Pubkey,
    pub vault: Pubkey,
}

#[event]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDeposited {
    pub user: Pubkey,
    pub mint: Pubkey,
    pub depositor: Pubkey,
    pub amount: u64,
    pub vault_balance: u64,
}

#[event]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenWithdrawn {
    pub user: Pubkey,
    pub mint: Pubkey,
    pub amount: u64,
    pub vault_balance: u64,
}

#[event]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPaid {
    pub namespace_id: u64,
    pub user: Pubkey,
    pub mint: Pubkey,
    /// The treasury's token account that received the payment.
    pub treasury: Pubkey,
    /// The nonce the authorisation carried (the user's nonce is now one higher).
    pub nonce: u64,
    pub amount: u64,
    pub max_amount: u64,
    pub extra_data: [u8; 32],
    pub vault_balance: u64,
}

#[event]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLocked {
    pub namespace_id: u64,
    pub user: Pubkey,
    pub mint: Pubkey,
    pub nonce: u64,
    pub amount: u64,
    pub max_amount: u64,
    pub expires_at: i64,
    pub extra_data: [u8; 32],
    pub locked_amount: u64,
}

#[event]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettled {
    pub namespace_id: u64,
    pub user: Pubkey,
    pub mint: Pubkey,
    pub nonce: u64,
    /// Moved to the treasury's token account.
    pub amount: u64,
    /// Returned to the user's free balance.
    pub released: u64,
    pub locked_amount: u64,
    pub vault_balance: u64,
}

#[event]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenReleased {
    pub namespace_id: u64,
    pub user: Pubkey,
    pub mint: Pubkey,
    pub nonce: u64,
    pub amount: u64,
    pub locked_amount: u64,
}
