use anchor_lang::prelude::*;

/// Program-wide settings of one deployment: the namespace counter, so that namespace ids are
/// dense and never reused, and the cluster tag every authorisation must name, so that a
/// signature made for one cluster cannot be redeemed on another (the program id is the same
/// on every cluster).
#[account]
#[derive(InitSpace, Debug, PartialEq, Eq)]
pub struct Global {
    /// The id the next `create_namespace` will take.
    pub namespace_count: u64,
    /// The cluster this deployment serves: its genesis hash, set once by `initialize`.
    pub cluster: [u8; 32],
    pub bump: u8,
}
