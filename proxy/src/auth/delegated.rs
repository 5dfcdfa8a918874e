//! Delegated keys: a user's wallet signs a set of limits for an edge agent, and any proxy
//! verifies the key statelessly from the signature alone (Dynaseal's idea without its backend).
//!
//! Token: `dk1.<base64url(claims JSON)>.<base58(signature)>`, where the wallet signed the UTF-8
//! text `"LLM gateway delegated key\n"` followed by the exact claims JSON bytes. The claims name
//! the gateway's audience, so a key made for one gateway is refused by every other. The budget,
//! single use and revocation are enforced by the ledger, keyed by a hash of the claims.
//!
//! Revocation: the wallet signs `"LLM gateway key revocation\naudience: <audience>\nkey: <key
//! id>"` and submits it with the key; the ledger then refuses the key on every replica.
use super::signature::verify_wallet_signature;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Token prefix.
pub const PREFIX: &str = "dk1.";
/// What the wallet signs before the claims JSON.
pub const SIGNED_PREFIX: &str = "LLM gateway delegated key\n";

/// The limits a wallet grants an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// The wallet (base58) whose balance pays; it must be the signer.
    pub user: String,
    /// The gateway (its `auth.audience`) the key is for; every other gateway refuses it.
    pub audience: String,
    /// Any string the user picks; makes otherwise identical keys distinct.
    pub id: String,
    /// Models the key may use; absent means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// Cap on completion tokens per call; absent means the model's cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Total ledger tokens the key may ever spend.
    pub budget: u64,
    /// Unix seconds after which the key is refused.
    pub expires_at: i64,
    /// The key serves exactly one request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub single_use: bool,
    /// Called with `{request_id, model, usage, cost}` after each request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// Requests per minute, below the gateway's own limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    /// Tokens per minute, below the gateway's own limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
}

/// A verified delegated key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegatedKey {
    /// What the wallet signed.
    pub claims: Claims,
    /// Hex SHA-256 of the claims bytes: the ledger's key for its budget and uses.
    pub key_id: String,
}

impl DelegatedKey {
    /// Whether the key was granted `model` (no list means every model).
    pub fn allows_model(&self, model: &str) -> bool {
        self.claims
            .models
            .as_ref()
            .is_none_or(|models| models.iter().any(|m| m == model))
    }
}

/// Why a delegated key was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("malformed delegated key: {0}")]
    Malformed(String),
    #[error("the delegated key's signature does not match its user")]
    BadSignature,
    #[error("the delegated key expired at {0}")]
    Expired(i64),
    #[error("the delegated key was made for the gateway {got:?}, not this one ({expected:?})")]
    WrongAudience { expected: String, got: String },
    #[error("the revocation is not signed by the key's wallet")]
    BadRevocation,
}

/// The text the wallet signs for `claims_json`.
pub fn signed_message(claims_json: &[u8]) -> Vec<u8> {
    [SIGNED_PREFIX.as_bytes(), claims_json].concat()
}

/// Signs `claims` with the wallet's key (the CLI's `delegate`, and tests).
pub fn sign(claims: &Claims, wallet: &SigningKey) -> Result<String, serde_json::Error> {
    let json = serde_json::to_vec(claims)?;
    let signature = wallet.sign(&signed_message(&json));
    Ok(format!(
        "{PREFIX}{}.{}",
        URL_SAFE_NO_PAD.encode(&json),
        bs58::encode(signature.to_bytes()).into_string()
    ))
}

/// Checks the token's signature, audience and expiry: the key a request may use.
pub fn verify(token: &str, audience: &str, now: i64) -> Result<DelegatedKey, KeyError> {
    let key = verify_signed(token, audience)?;
    if key.claims.expires_at <= now {
        return Err(KeyError::Expired(key.claims.expires_at));
    }
    Ok(key)
}

/// Checks the token's signature and audience, whatever its expiry: the key a wallet revokes.
pub fn verify_signed(token: &str, audience: &str) -> Result<DelegatedKey, KeyError> {
    let key = peek(token)?;
    if key.claims.audience != audience {
        return Err(KeyError::WrongAudience {
            expected: audience.to_owned(),
            got: key.claims.audience,
        });
    }
    Ok(key)
}

/// Checks only the token's signature by its wallet, whatever its audience and expiry (a
/// wallet's own tools reading a key).
pub fn peek(token: &str) -> Result<DelegatedKey, KeyError> {
    let rest = token
        .strip_prefix(PREFIX)
        .ok_or_else(|| KeyError::Malformed("missing dk1. prefix".into()))?;
    let (claims_b64, signature_b58) = rest
        .split_once('.')
        .ok_or_else(|| KeyError::Malformed("expected dk1.<claims>.<signature>".into()))?;
    let json = URL_SAFE_NO_PAD
        .decode(claims_b64)
        .map_err(|e| KeyError::Malformed(format!("claims are not base64url: {e}")))?;
    let claims: Claims =
        serde_json::from_slice(&json).map_err(|e| KeyError::Malformed(format!("claims: {e}")))?;
    if !verify_wallet_signature(&claims.user, &signed_message(&json), signature_b58) {
        return Err(KeyError::BadSignature);
    }
    let key_id = hex(&Sha256::digest(&json));
    Ok(DelegatedKey { claims, key_id })
}

/// The text a wallet signs to revoke the key `key_id` at the gateway `audience`.
pub fn revocation_message(audience: &str, key_id: &str) -> String {
    format!("LLM gateway key revocation\naudience: {audience}\nkey: {key_id}")
}

/// The wallet's revocation signature (base58) for `key` (the CLI's `revoke`, and tests).
pub fn sign_revocation(key: &DelegatedKey, wallet: &SigningKey) -> String {
    let message = revocation_message(&key.claims.audience, &key.key_id);
    bs58::encode(wallet.sign(message.as_bytes()).to_bytes()).into_string()
}

/// Checks that `signature` revokes `key` and was made by the key's own wallet.
pub fn verify_revocation(key: &DelegatedKey, signature: &str) -> Result<(), KeyError> {
    let message = revocation_message(&key.claims.audience, &key.key_id);
    if verify_wallet_signature(&key.claims.user, message.as_bytes(), signature) {
        Ok(())
    } else {
        Err(KeyError::BadRevocation)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(user: &SigningKey) -> Claims {
        Claims {
            user: bs58::encode(user.verifying_key().as_bytes()).into_string(),
            audience: "https://a.example".into(),
            id: "agent-1".into(),
            models: Some(vec!["echo".into()]),
            max_tokens: Some(100),
            budget: 1_000,
            expires_at: 2_000,
            single_use: false,
            callback_url: None,
            rpm: None,
            tpm: None,
        }
    }

    const A: &str = "https://a.example";

    #[test]
    fn a_signed_key_verifies_until_it_expires() {
        let wallet = SigningKey::from_bytes(&[7; 32]);
        let token = sign(&claims(&wallet), &wallet).unwrap();
        let key = verify(&token, A, 1_999).unwrap();
        assert_eq!(key.claims, claims(&wallet));
        assert!(key.allows_model("echo") && !key.allows_model("other"));
        assert_eq!(verify(&token, A, 2_000), Err(KeyError::Expired(2_000)));
    }

    #[test]
    fn a_key_signed_by_someone_else_or_edited_is_refused() {
        let wallet = SigningKey::from_bytes(&[7; 32]);
        let thief = SigningKey::from_bytes(&[8; 32]);
        let forged = sign(&claims(&wallet), &thief).unwrap();
        assert_eq!(verify(&forged, A, 0), Err(KeyError::BadSignature));

        let token = sign(&claims(&wallet), &wallet).unwrap();
        let (_, signature) = token.rsplit_once('.').unwrap();
        let mut bigger = claims(&wallet);
        bigger.budget = 1_000_000;
        let edited = format!(
            "{PREFIX}{}.{signature}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&bigger).unwrap())
        );
        assert_eq!(verify(&edited, A, 0), Err(KeyError::BadSignature));
        assert!(matches!(
            verify("dk1.???", A, 0),
            Err(KeyError::Malformed(_))
        ));
    }

    #[test]
    fn a_key_for_another_gateway_is_refused() {
        let wallet = SigningKey::from_bytes(&[7; 32]);
        let token = sign(&claims(&wallet), &wallet).unwrap();
        assert_eq!(
            verify(&token, "https://b.example", 0),
            Err(KeyError::WrongAudience {
                expected: "https://b.example".into(),
                got: A.into()
            })
        );
    }

    #[test]
    fn only_the_keys_wallet_can_revoke_it() {
        let wallet = SigningKey::from_bytes(&[7; 32]);
        let key = verify_signed(&sign(&claims(&wallet), &wallet).unwrap(), A).unwrap();
        assert_eq!(
            verify_revocation(&key, &sign_revocation(&key, &wallet)),
            Ok(())
        );
        let thief = SigningKey::from_bytes(&[8; 32]);
        assert_eq!(
            verify_revocation(&key, &sign_revocation(&key, &thief)),
            Err(KeyError::BadRevocation)
        );
        let mut other = key.clone();
        other.key_id = "0".repeat(64);
        assert_eq!(
            verify_revocation(&other, &sign_revocation(&key, &wallet)),
            Err(KeyError::BadRevocation),
            "a revocation names one key"
        );
    }
}
