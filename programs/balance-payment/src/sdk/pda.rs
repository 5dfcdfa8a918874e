//! Program-derived addresses, from the seeds in [`crate::state::seeds`].
use crate::state::seeds::{
    ACCEPTED_MINT_SEED, GLOBAL_SEED, LOCK_SEED, NAMESPACE_SEED, TOKEN_BALANCE_SEED,
    TOKEN_LOCK_SEED, TOKEN_VAULT_SEED, USER_SEED, VAULT_SEED,
};
use anchor_lang::prelude::Pubkey;

fn find(seeds: &[&[u8]]) -> Pubkey {
    Pubkey::find_program_address(seeds, &crate::ID).0
}

/// The deployment's settings: the namespace counter and the cluster tag.
pub fn global() -> Pubkey {
    find(&[GLOBAL_SEED])
}

/// Namespace number `id`.
pub fn namespace(id: u64) -> Pubkey {
    find(&[NAMESPACE_SEED, &id.to_le_bytes()])
}

/// `user`'s account (nonce, locked total).
pub fn user_account(user: &Pubkey) -> Pubkey {
    find(&[USER_SEED, user.as_ref()])
}

/// The system account holding `user`'s SOL.
pub fn vault(user: &Pubkey) -> Pubkey {
    find(&[VAULT_SEED, user.as_ref()])
}

/// The lock taken with `user`'s authorisation number `nonce`.
pub fn lock(user: &Pubkey, nonce: u64) -> Pubkey {
    find(&[LOCK_SEED, user.as_ref(), &nonce.to_le_bytes()])
}

/// Namespace `namespace_id`'s listing of `mint` (exists while it accepts that token).
pub fn accepted_mint(namespace_id: u64, mint: &Pubkey) -> Pubkey {
    find(&[
        ACCEPTED_MINT_SEED,
        &namespace_id.to_le_bytes(),
        mint.as_ref(),
    ])
}

/// `user`'s escrow of `mint`: its locked total, and its vault's authority.
pub fn token_balance(user: &Pubkey, mint: &Pubkey) -> Pubkey {
    find(&[TOKEN_BALANCE_SEED, user.as_ref(), mint.as_ref()])
}

/// The token account holding `user`'s tokens of `mint`.
pub fn token_vault(user: &Pubkey, mint: &Pubkey) -> Pubkey {
    find(&[TOKEN_VAULT_SEED, user.as_ref(), mint.as_ref()])
}

/// The token lock taken with `user`'s authorisation number `nonce`.
pub fn token_lock(user: &Pubkey, nonce: u64) -> Pubkey {
    find(&[TOKEN_LOCK_SEED, user.as_ref(), &nonce.to_le_bytes()])
}

/// The PDA that signs the program's event self-CPIs.
pub fn event_authority() -> Pubkey {
    crate::EVENT_AUTHORITY_AND_BUMP.0
}
