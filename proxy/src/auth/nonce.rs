//! Stateless login nonces. `/v1/auth/nonce` is open to anyone, so issuing a nonce must cost no
//! ledger write: a nonce is its expiry and random bytes, tagged with an HMAC (keyed from the
//! token secret, over the audience and the wallet). Any replica holding the secret checks it
//! without a lookup; single use is enforced at login, which records the nonce in the ledger.
//!
//! Format: `<expires_at>.<base58 random>.<base64url tag>`.
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Random bytes per nonce: two nonces never collide.
pub const RANDOM_BYTES: usize = 16;

/// Why a nonce was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NonceError {
    #[error("malformed nonce; ask for a new one")]
    Malformed,
    #[error("this gateway did not issue this nonce for this wallet; ask for a new one")]
    Forged,
    #[error("the nonce expired at {0}; ask for a new one")]
    Expired(i64),
}

/// Issues and checks login nonces for one deployment.
#[derive(Clone)]
pub struct NonceSigner {
    key: Vec<u8>,
    audience: String,
}

impl std::fmt::Debug for NonceSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceSigner(..)")
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    for part in parts {
        mac.update(part);
    }
    mac
}

impl NonceSigner {
    /// A signer keyed from the token `secret` (a derived key, so a nonce tag can never pass
    /// for a session token's) for `audience`.
    pub fn new(secret: &[u8], audience: &str) -> Self {
        let key = hmac(secret, &[b"llm-gateway login nonce key"])
            .finalize()
            .into_bytes()
            .to_vec();
        Self {
            key,
            audience: audience.to_owned(),
        }
    }

    fn tag(&self, wallet: &str, body: &str) -> Hmac<Sha256> {
        hmac(
            &self.key,
            &[
                self.audience.as_bytes(),
                b"\n",
                wallet.as_bytes(),
                b"\n",
                body.as_bytes(),
            ],
        )
    }

    /// A nonce for `wallet`, valid until `expires_at`, from fresh `random` bytes.
    pub fn issue(&self, wallet: &str, expires_at: i64, random: [u8; RANDOM_BYTES]) -> String {
        let body = format!("{expires_at}.{}", bs58::encode(random).into_string());
        let tag = self.tag(wallet, &body).finalize().into_bytes();
        format!("{body}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The nonce's expiry, if this signer issued it for `wallet` and it is still valid at `now`.
    pub fn check(&self, nonce: &str, wallet: &str, now: i64) -> Result<i64, NonceError> {
        let (body, tag) = nonce.rsplit_once('.').ok_or(NonceError::Malformed)?;
        let (expires_at, _random) = body.split_once('.').ok_or(NonceError::Malformed)?;
        let expires_at: i64 = expires_at.parse().map_err(|_| NonceError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| NonceError::Malformed)?;
        self.tag(wallet, body)
            .verify_slice(&tag)
            .map_err(|_| NonceError::Forged)?;
        if expires_at < now {
            return Err(NonceError::Expired(expires_at));
        }
        Ok(expires_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a test secret of at least thirty-two bytes";

    #[test]
    fn a_nonce_checks_for_its_wallet_until_it_expires() {
        let signer = NonceSigner::new(SECRET, "https://a.example");
        let nonce = signer.issue("WalletA", 1_300, [1; RANDOM_BYTES]);
        assert_eq!(signer.check(&nonce, "WalletA", 1_000), Ok(1_300));
        assert_eq!(signer.check(&nonce, "WalletA", 1_300), Ok(1_300));
        assert_eq!(
            signer.check(&nonce, "WalletA", 1_301),
            Err(NonceError::Expired(1_300))
        );
        assert_eq!(
            signer.check(&nonce, "WalletB", 1_000),
            Err(NonceError::Forged),
            "bound to its wallet"
        );
        assert_ne!(
            nonce,
            signer.issue("WalletA", 1_300, [2; RANDOM_BYTES]),
            "fresh random bytes, a fresh nonce"
        );
    }

    #[test]
    fn a_nonce_from_another_gateway_or_edited_is_refused() {
        let signer = NonceSigner::new(SECRET, "https://a.example");
        let nonce = signer.issue("WalletA", 1_300, [1; RANDOM_BYTES]);
        let other_audience = NonceSigner::new(SECRET, "https://b.example");
        assert_eq!(
            other_audience.check(&nonce, "WalletA", 0),
            Err(NonceError::Forged)
        );
        let other_secret = NonceSigner::new(b"another secret", "https://a.example");
        assert_eq!(
            other_secret.check(&nonce, "WalletA", 0),
            Err(NonceError::Forged)
        );
        let later = nonce.replacen("1300", "9999", 1);
        assert_eq!(signer.check(&later, "WalletA", 0), Err(NonceError::Forged));
        for bad in ["", "1300", "x.y.z", "1300.abc.!!!"] {
            assert_eq!(signer.check(bad, "WalletA", 0), Err(NonceError::Malformed));
        }
    }
}
