//! Who is calling: a wallet session (bearer token from a signed login) or a delegated key
//! (limits signed by the wallet). Verdicts are cached, bounded and with their own expiry, so
//! the signature check runs once per credential, not once per request. Everything a wallet
//! signs names this gateway's audience. A revoked key is refused by the ledger in the
//! transaction that would hold its spend, so a cached verdict never lets it spend; endpoints
//! that hold nothing ask the ledger ([`LiveAuth`]).
pub mod delegated;
pub mod login;
pub mod nonce;
pub mod revoke;
pub mod session;

use crate::{error::ApiError, state::AppState};
use axum::{extract::FromRequestParts, http::request::Parts};
use delegated::DelegatedKey;
use ed25519_dalek::{Signature, VerifyingKey};
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

/// The authenticated caller, as a handler argument. A revoked delegated key passes here (the
/// verdict is cached) and is refused by the ledger when it tries to hold a spend.
pub struct Auth(pub Arc<Caller>);

impl FromRequestParts<Arc<AppState>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer header".into()))?;
        let credential = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::Unauthorized("expected Authorization: Bearer <token>".into())
            })?;
        state.auth.authenticate(credential, ledger::now()).map(Auth)
    }
}

/// The authenticated caller, with a delegated key's revocation checked in the ledger: for
/// endpoints that take no hold (balance, usage), where nothing else would refuse it.
pub struct LiveAuth(pub Arc<Caller>);

impl FromRequestParts<Arc<AppState>> for LiveAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let Auth(caller) = Auth::from_request_parts(parts, state).await?;
        if let Some(key) = &caller.key {
            if state.ledger.key_revoked(&key.key_id).await? {
                return Err(ledger::LedgerError::KeyRevoked.into());
            }
        }
        Ok(LiveAuth(caller))
    }
}
