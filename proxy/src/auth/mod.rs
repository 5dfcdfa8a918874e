//! Who is calling: a wallet session (bearer token from a signed login) or a delegated key
//! (limits signed by the wallet). Verdicts are cached, bounded and with their own expiry, so
//! the signature check runs once per credential, not once per request. Everything a wallet
//! signs names this gateway's audience. A revoked key is refused by the ledger in the
//! transaction that would hold its spend, so a cached verdict never lets it spend; endpoints
//! that hold nothing ask the ledger ([`extract::LiveAuth`]).
//!
//! Layers, each using only those below it: [`signature`] (a wallet's ed25519 signature);
//! [`nonce`], [`session`], [`delegated`] (the credentials); this module's [`Authenticator`]
//! (a credential to a [`Caller`]); [`extract`] (the caller as a handler argument, from the
//! gateway's state); [`login`] and [`revoke`] (the endpoints).
pub mod delegated;
pub mod extract;
pub mod login;
pub mod nonce;
pub mod revoke;
pub mod session;
pub mod signature;

use crate::error::ApiError;
use delegated::DelegatedKey;
use nonce::NonceSigner;
use session::TokenSigner;
use std::sync::Arc;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The wallet (base58) whose balance pays.
    pub user: String,
    /// Set when calling with a delegated key.
    pub key: Option<DelegatedKey>,
    /// When the credential stops being valid (unix seconds).
    pub expires_at: i64,
    /// The name rate limits count an anonymous (ecash) caller under, when it is one.
    pub anonymous: Option<String>,
    /// A session's id (`session:<hex SHA-256 of the token>`): what logging out revokes.
    pub session: Option<String>,
}

impl Caller {
    /// The payer of a request paid with ecash: its receipt, a ledger user of its own, rate
    /// limited as `client`.
    pub fn paid_by(receipt_id: &str, client: &str) -> Self {
        Self {
            user: receipt_id.to_owned(),
            key: None,
            expires_at: i64::MAX,
            anonymous: Some(client.to_owned()),
            session: None,
        }
    }

    /// The payer of a request paid with x402: the wallet whose balance the payment credited,
    /// limited as that wallet.
    pub fn wallet(user: &str) -> Self {
        Self {
            user: user.to_owned(),
            key: None,
            expires_at: i64::MAX,
            anonymous: None,
            session: None,
        }
    }

    /// The name rate limits count under: the key, the wallet's sessions together, or an
    /// ecash payer's address.
    pub fn limit_key(&self) -> &str {
        match (&self.key, &self.anonymous) {
            (Some(key), _) => &key.key_id,
            (None, Some(client)) => client,
            (None, None) => &self.user,
        }
    }

    /// The name its limits are counted under in the ledger, over every replica: a key or a
    /// wallet (an anonymous caller is limited by this replica alone, before it pays).
    pub fn shared_limit_key(&self) -> Option<&str> {
        self.anonymous.is_none().then(|| self.limit_key())
    }
}

/// Checks bearer credentials and remembers the verdicts.
pub struct Authenticator {
    tokens: TokenSigner,
    nonces: NonceSigner,
    audience: String,
    cache: quick_cache::sync::Cache<String, Arc<Caller>>,
}

impl Authenticator {
    /// Session tokens and login nonces keyed from `secret`, delegated keys checked against
    /// `audience`, at most `cache_entries` verdicts remembered.
    pub fn new(secret: Vec<u8>, audience: &str, cache_entries: usize) -> Self {
        Self {
            nonces: NonceSigner::new(&secret, audience),
            tokens: TokenSigner::new(secret),
            audience: audience.to_owned(),
            cache: quick_cache::sync::Cache::new(cache_entries.max(16)),
        }
    }

    /// Issues session tokens at login (and tests issue their own).
    pub fn tokens(&self) -> &TokenSigner {
        &self.tokens
    }

    /// Issues and checks login nonces.
    pub fn nonces(&self) -> &NonceSigner {
        &self.nonces
    }

    /// The deployment every wallet signature must name.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Drops a cached verdict (a key this replica saw revoked).
    pub fn forget(&self, credential: &str) {
        self.cache.remove(credential);
    }

    /// The caller behind `Authorization: Bearer <credential>`.
    pub fn authenticate(&self, credential: &str, now: i64) -> Result<Arc<Caller>, ApiError> {
        if let Some(caller) = self.cache.get(credential) {
            if caller.expires_at > now {
                return Ok(caller);
            }
            self.cache.remove(credential);
        }
        let caller = if credential.starts_with(delegated::PREFIX) {
            let key = delegated::verify(credential, &self.audience, now)
                .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
            Caller {
                user: key.claims.user.clone(),
                expires_at: key.claims.expires_at,
                key: Some(key),
                anonymous: None,
                session: None,
            }
        } else if credential.starts_with(session::PREFIX) {
            let (user, expires_at) = self.tokens.verify(credential, now).ok_or_else(|| {
                ApiError::Unauthorized("invalid or expired session token; log in again".into())
            })?;
            Caller {
                user,
                key: None,
                expires_at,
                anonymous: None,
                session: Some(session::session_id(credential)),
            }
        } else {
            return Err(ApiError::Unauthorized(
                "unknown credential: use a session token (gws1.…) or a delegated key (dk1.…)"
                    .into(),
            ));
        };
        let caller = Arc::new(caller);
        self.cache.insert(credential.to_owned(), caller.clone());
        Ok(caller)
    }
}
