//! A wallet's signature: what every login and delegated key rests on.
use ed25519_dalek::{Signature, VerifyingKey};

/// Strictly verifies a base58 ed25519 `signature` by the base58 `wallet` over `message`.
pub fn verify_wallet_signature(wallet: &str, message: &[u8], signature: &str) -> bool {
    let Ok(public) = bs58::decode(wallet).into_vec() else {
        return false;
    };
    let Ok(public) = <[u8; 32]>::try_from(public.as_slice()) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(&public) else {
        return false;
    };
    let Ok(signature) = bs58::decode(signature).into_vec() else {
        return false;
    };
    let Ok(signature) = Signature::from_slice(&signature) else {
        return false;
    };
    key.verify_strict(message, &signature).is_ok()
}
