use anchor_lang::prelude::*;

/// Program-wide counter so that namespace ids are dense and never reused.
#[account]
#[derive(InitSpace, Debug, PartialEq, Eq)]
pub struct Global {
    /// The id the next `create_namespace` will take.
    pub namespace_count: u64,
    pub bump: u8,
}
