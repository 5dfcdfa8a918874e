//! The Cashu rail: ecash tokens (`X-Cashu`) pay for requests or top up a wallet's balance.
//!
//! A token is received by swapping it at its mint for proofs of the gateway's own (so it can
//! never be spent twice), and credited to its payer in the ledger; change goes back as a new
//! token. Only mints the operator lists are accepted, in sats. The crypto and the mint's API
//! are the Cashu Dev Kit's; the books (receipts, proofs, swaps) are the ledger's.
mod http;
pub mod pay;
mod swap;

pub use swap::Received;

pub use http::{api_error, attach_change, change, issue_change, payment_required, topup, HEADER};

use cdk::{
    amount::{FeeAndAmounts, SplitTarget},
    mint_url::MintUrl,
    nuts::{CurrencyUnit, Id, KeySetInfo, Keys, PreMintSecrets, Token},
    wallet::{HttpClient, MintConnector},
    Amount,
};
use ledger::{ChangeClaim, Ledger, LedgerError};
use sha2::{Digest, Sha256};
use std::{collections::HashMap, str::FromStr, sync::Arc};
use tokio::sync::RwLock;

/// Longest `X-Cashu` value read; a token of a thousand proofs fits.
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// Why ecash could not be taken or given back.
#[derive(Debug, thiserror::Error)]
pub enum CashuError {
    #[error("this gateway takes no Cashu ecash")]
    Disabled,
    #[error("not a Cashu token: {0}")]
    Malformed(String),
    #[error("this gateway does not accept ecash from {0}")]
    UnlistedMint(String),
    #[error("this gateway takes ecash in sat, not {0}")]
    Unit(String),
    #[error("the token is worth {offered} sat after the mint's fee; {needed} sat needed")]
    TooLittle { offered: u64, needed: u64 },
    #[error("the token is worth more than the {0} sat this gateway takes at once")]
    TooMuch(u64),
    #[error("the mint refused the token: {0}")]
    Refused(String),
    #[error("this token was already received here")]
    AlreadyReceived,
    #[error("the mint did not answer ({0}); send the same token again to finish")]
    MintUnreachable(String),
    #[error("this token's exchange at its mint is in progress; send it again in a moment")]
    InProgress,
    #[error("a request paid by this token is still being served; ask again when it ends")]
    StillServing,
    #[error("no payment with this token is known here")]
    UnknownReceipt,
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("ecash: {0}")]
    Internal(String),
}

impl From<cdk::Error> for CashuError {
    fn from(error: cdk::Error) -> Self {
        CashuError::Internal(error.to_string())
    }
}

impl From<cdk::nuts::nut00::Error> for CashuError {
    fn from(error: cdk::nuts::nut00::Error) -> Self {
        CashuError::Internal(error.to_string())
    }
}

impl From<cdk::dhke::Error> for CashuError {
    fn from(error: cdk::dhke::Error) -> Self {
        CashuError::Internal(error.to_string())
    }
}

/// The rail: the listed mints, and the rate between sats and ledger tokens.
pub struct Cashu {
    mints: HashMap<MintUrl, Mint>,
    tokens_per_sat: i64,
    max_token_sats: u64,
}

/// One listed mint: its client and, once fetched, its keysets.
struct Mint {
    url: MintUrl,
    client: HttpClient,
    keysets: RwLock<Option<Arc<Keysets>>>,
}

/// A mint's sat keysets: every one's info (fees, for reading tokens) and the active one's keys.
struct Keysets {
    infos: Vec<KeySetInfo>,
    active: Id,
    keys: HashMap<Id, Keys>,
}

impl Keysets {
    fn fee_ppk(&self, id: &Id) -> u64 {
        self.infos
            .iter()
            .find(|info| info.id == *id)
            .map_or(0, |info| info.input_fee_ppk)
    }

    /// The mint's input fee for spending `proofs` (NUT-02: per input, rounded up).
    fn fee(&self, keyset_ids: impl Iterator<Item = Id>) -> u64 {
        let ppk: u64 = keyset_ids.map(|id| self.fee_ppk(&id)).sum();
        ppk.div_ceil(1000)
    }

    /// Fresh outputs worth `amount` at the active keyset.
    fn outputs(&self, amount: u64) -> Result<PreMintSecrets, CashuError> {
        let keys = self
            .keys
            .get(&self.active)
            .ok_or_else(|| CashuError::Internal("the mint's active keyset has no keys".into()))?;
        let denominations: Vec<u64> = keys
            .keys()
            .keys()
            .map(|amount| u64::from(*amount))
            .collect();
        let split = FeeAndAmounts::from((self.fee_ppk(&self.active), denominations));
        Ok(PreMintSecrets::random(
            self.active,
            Amount::from(amount),
            &SplitTarget::default(),
            &split,
        )?)
    }
}

impl Cashu {
    /// The rail for `mints` (URLs as wallets write them), or `None` when none is listed.
    pub fn new(config: &crate::config::CashuConfig) -> Result<Option<Self>, CashuError> {
        if config.mints.is_empty() {
            return Ok(None);
        }
        let mut mints = HashMap::new();
        for url in &config.mints {
            let url = MintUrl::from_str(url)
                .map_err(|e| CashuError::Malformed(format!("mint URL {url}: {e}")))?;
            mints.insert(
                url.clone(),
                Mint {
                    client: HttpClient::new(url.clone(), None),
                    url,
                    keysets: RwLock::new(None),
                },
            );
        }
        Ok(Some(Self {
            mints,
            tokens_per_sat: i64::try_from(config.tokens_per_sat.max(1)).unwrap_or(i64::MAX),
            max_token_sats: config.max_token_sats,
        }))
    }

    /// Ledger tokens one sat buys.
    pub fn tokens_per_sat(&self) -> i64 {
        self.tokens_per_sat
    }

    /// The accepted mints, as published.
    pub fn mint_urls(&self) -> Vec<String> {
        let mut urls: Vec<String> = self.mints.keys().map(ToString::to_string).collect();
        urls.sort();
        urls
    }

    /// Sats needed to pay `tokens` ledger tokens (rounded up: a sat is the smallest coin).
    pub fn sats_for(&self, tokens: i64) -> u64 {
        u64::try_from(tokens.max(0))
            .unwrap_or(0)
            .div_ceil(self.tokens_per_sat as u64)
    }

    /// Reads an `X-Cashu` value: a token in sat from a listed mint.
    pub fn parse(&self, value: &str) -> Result<Token, CashuError> {
        if value.len() > MAX_TOKEN_BYTES {
            return Err(CashuError::Malformed("the token is too long".into()));
        }
        let token =
            Token::from_str(value.trim()).map_err(|e| CashuError::Malformed(e.to_string()))?;
        let mint = token
            .mint_url()
            .map_err(|_| CashuError::Malformed("a token must come from one mint".into()))?;
        if !self.mints.contains_key(&mint) {
            return Err(CashuError::UnlistedMint(mint.to_string()));
        }
        match token.unit() {
            None | Some(CurrencyUnit::Sat) => Ok(token),
            Some(unit) => Err(CashuError::Unit(unit.to_string())),
        }
    }

    /// What `token` is worth to the gateway once received (its value less the mint's fee).
    pub async fn net_value(&self, token: &Token) -> Result<u64, CashuError> {
        let (_, keysets, proofs, value) = self.read(token).await?;
        let fee = keysets.fee(proofs.iter().map(|proof| proof.keyset_id));
        Ok(value.saturating_sub(fee))
    }

    fn mint(&self, url: &str) -> Result<&Mint, CashuError> {
        let url = MintUrl::from_str(url).map_err(|e| CashuError::Malformed(e.to_string()))?;
        self.mints
            .get(&url)
            .ok_or_else(|| CashuError::UnlistedMint(url.to_string()))
    }

    /// A token's mint, that mint's keysets, and the token's proofs and value. A keyset not
    /// yet seen (the mint rotated its keys) fetches the mint's keysets again, once.
    async fn read(
        &self,
        token: &Token,
    ) -> Result<(&Mint, Arc<Keysets>, cdk::nuts::Proofs, u64), CashuError> {
        let (mint, keysets) = self.mint_of(token).await?;
        match read_proofs(token, &keysets) {
            Ok((proofs, value)) => Ok((mint, keysets, proofs, value)),
            Err(_) => {
                mint.forget_keysets().await;
                let keysets = mint.keysets().await?;
                let (proofs, value) = read_proofs(token, &keysets)?;
                Ok((mint, keysets, proofs, value))
            }
        }
    }

    async fn mint_of(&self, token: &Token) -> Result<(&Mint, Arc<Keysets>), CashuError> {
        let url = token
            .mint_url()
            .map_err(|_| CashuError::Malformed("a token must come from one mint".into()))?;
        let mint = self
            .mints
            .get(&url)
            .ok_or_else(|| CashuError::UnlistedMint(url.to_string()))?;
        Ok((mint, mint.keysets().await?))
    }

    /// Receives `token` for `user`, or (`None`) for the request `request_id` (the receipt
    /// itself pays, for one request).
    pub async fn receive(
        &self,
        ledger: &Ledger,
        token: &Token,
        user: Option<&str>,
        request_id: Option<&str>,
    ) -> Result<Received, CashuError> {
        let (mint, keysets, proofs, value) = self.read(token).await?;
        if value > self.max_token_sats {
            return Err(CashuError::TooMuch(self.max_token_sats));
        }
        let fee = keysets.fee(proofs.iter().map(|proof| proof.keyset_id));
        let net = value.saturating_sub(fee);
        if net == 0 {
            return Err(CashuError::TooLittle {
                offered: 0,
                needed: 1,
            });
        }
        let id = receipt_id(token);
        swap::receive(
            self,
            ledger,
            mint,
            &keysets,
            swap::Incoming {
                receipt_id: &id,
                user: user.unwrap_or(&id),
                request_id,
                proofs,
                net,
                fee,
            },
        )
        .await
    }

    /// The change owed for a receipt, as a token (`None`: nothing is left to give back). Safe
    /// to call again: the amount is fixed once, and a token once issued is returned as it was.
    pub async fn change_for(
        &self,
        ledger: &Ledger,
        receipt_id: &str,
    ) -> Result<Option<String>, CashuError> {
        let receipt = ledger
            .cashu_receipt(receipt_id)
            .await?
            .ok_or(CashuError::UnknownReceipt)?;
        if let Some(token) = receipt.change_token {
            return Ok(Some(token).filter(|token| !token.is_empty()));
        }
        if !receipt.received {
            return Err(CashuError::InProgress);
        }
        let mint = self.mint(&receipt.mint)?;
        let sats = match ledger.cashu_claim_change(receipt_id).await? {
            ChangeClaim::Owed(sats) => sats,
            ChangeClaim::Nothing => return Ok(None),
            ChangeClaim::StillServing => return Err(CashuError::StillServing),
        };
        swap::pay_out(
            ledger,
            mint,
            &format!("change:{receipt_id}"),
            sats,
            Some(receipt_id),
        )
        .await
    }

    /// The operator's withdrawal: a token worth `sats` from the gateway's ecash at `mint`.
    pub async fn withdraw(
        &self,
        ledger: &Ledger,
        mint: &str,
        sats: u64,
    ) -> Result<String, CashuError> {
        let mint = self.mint(mint)?;
        let id = format!("withdraw:{}", uuid::Uuid::now_v7().simple());
        let sats = i64::try_from(sats).map_err(|_| CashuError::TooMuch(sats))?;
        swap::pay_out(ledger, mint, &id, sats, None)
            .await?
            .ok_or_else(|| CashuError::Internal("the withdrawal paid nothing".into()))
    }

    /// Finishes swaps a crash or an unreachable mint left pending (at start, then
    /// periodically), except those another caller is sending. Returns how many it finished.
    pub async fn recover(&self, ledger: &Ledger) -> Result<usize, CashuError> {
        let mut settled = 0;
        for pending in ledger.cashu_pending_swaps().await? {
            let Ok(mint) = self.mint(&pending.mint) else {
                tracing::warn!(swap = %pending.id, mint = %pending.mint,
                    "a pending ecash swap is at a mint no longer listed; list it to finish it");
                continue;
            };
            match swap::finish_pending(ledger, mint, &pending.id).await {
                Ok(true) => settled += 1,
                Ok(false) | Err(CashuError::InProgress) => {}
                Err(error) => {
                    tracing::warn!(swap = %pending.id, %error, "a pending ecash swap is still unfinished")
                }
            }
        }
        Ok(settled)
    }

    /// Finishes the swap that receives receipt `id`, if it was left unfinished, or waits a
    /// little for whoever is sending it (before answering for that token).
    pub async fn finish_receipt(&self, ledger: &Ledger, id: &str) -> Result<(), CashuError> {
        let Some(receipt) = ledger.cashu_receipt(id).await? else {
            return Ok(());
        };
        if !receipt.received {
            let mint = self.mint(&receipt.mint)?;
            swap::finish_or_wait(ledger, mint, &format!("receive:{id}")).await?;
        }
        Ok(())
    }
}

impl Mint {
    /// Drops the cached keysets: the next use fetches them (the mint rotated its keys).
    async fn forget_keysets(&self) {
        *self.keysets.write().await = None;
    }

    /// The mint's sat keysets, fetched once (and again when a token names one not yet seen).
    async fn keysets(&self) -> Result<Arc<Keysets>, CashuError> {
        if let Some(keysets) = self.keysets.read().await.clone() {
            return Ok(keysets);
        }
        let unreachable = |e: cdk::Error| CashuError::MintUnreachable(e.to_string());
        let infos: Vec<KeySetInfo> = self
            .client
            .get_mint_keysets()
            .await
            .map_err(unreachable)?
            .keysets
            .into_iter()
            .filter(|info| info.unit == CurrencyUnit::Sat)
            .collect();
        let active = infos
            .iter()
            .find(|info| info.active)
            .map(|info| info.id)
            .ok_or_else(|| CashuError::Refused(format!("{} has no active sat keyset", self.url)))?;
        let mut keys = HashMap::new();
        for keyset in self.client.get_mint_keys().await.map_err(unreachable)? {
            keys.insert(keyset.id, keyset.keys);
        }
        let keysets = Arc::new(Keysets {
            infos,
            active,
            keys,
        });
        *self.keysets.write().await = Some(keysets.clone());
        Ok(keysets)
    }
}

/// A token's proofs (its keyset ids resolved against the mint's) and their total.
fn read_proofs(token: &Token, keysets: &Keysets) -> Result<(cdk::nuts::Proofs, u64), CashuError> {
    let proofs = token
        .proofs(&keysets.infos)
        .map_err(|e| CashuError::Refused(format!("the mint does not know its keyset ({e})")))?;
    let value = proofs
        .iter()
        .try_fold(0u64, |total, proof| {
            total.checked_add(u64::from(proof.amount))
        })
        .ok_or_else(|| CashuError::Malformed("the token's amounts overflow".into()))?;
    Ok((proofs, value))
}

/// `cashu:` and the hash of the token's proofs' secrets, sorted: the same for the same proofs
/// however the token is written, and known only to whoever held them.
pub fn receipt_id(token: &Token) -> String {
    let mut secrets: Vec<String> = token
        .token_secrets()
        .into_iter()
        .map(ToString::to_string)
        .collect();
    secrets.sort();
    let mut hash = Sha256::new();
    for secret in &secrets {
        hash.update(secret.as_bytes());
        hash.update(b"\n");
    }
    let digest = hash.finalize();
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("cashu:{hex}")
}
