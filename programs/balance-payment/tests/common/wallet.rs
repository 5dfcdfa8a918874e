//! A test user's wallet.
use ed25519_dalek::SigningKey;
use solana_sdk::{
    pubkey::Pubkey,
    signature::{Keypair, Signer},
};

/// A wallet: the Solana keypair and the same key as an ed25519 signer for `signMessage`.
pub struct Wallet {
    pub keypair: Keypair,
    pub signing_key: SigningKey,
}

impl Wallet {
    pub fn new() -> Self {
        let keypair = Keypair::new();
        let signing_key = SigningKey::from_bytes(keypair.secret_bytes());
        Self {
            keypair,
            signing_key,
        }
    }

    pub fn pubkey(&self) -> Pubkey {
        self.keypair.pubkey()
    }
}
