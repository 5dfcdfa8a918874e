//! Kind-1573 message contents, byte-compatible with DePHY's `DephyDsProxyMessage` JSON.
//!
//! The content of every kind-1573 event is serde's externally tagged JSON of
//! [`DsProxyMessage`]: `{"Request":{…}}`, `{"Status":{…}}` or `{"Transaction":{…}}`. Fields we
//! add are optional and omitted when empty, so DePHY's services read our events and we read
//! theirs.
use serde::{Deserialize, Serialize};

/// Nostr kind of every gateway message.
pub const KIND_DS_PROXY: u16 = 1573;
/// Nostr kind of the model catalog (parameterised replaceable, `d` = catalog name).
pub const KIND_CATALOG: u16 = 30078;
/// DePHY's default session tag.
pub const DEFAULT_SESSION: &str = "dephy-dsproxy-controller";

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum DsProxyStatus {
    Available = 1,
    Working = 2,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum DsProxyStatusReason {
    UserRequest = 1,
    AdminRequest = 2,
    UserBehaviour = 3,
    Reset = 4,
    LockFailed = 5,
}

/// One gateway message. Field names and shapes are DePHY's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum DsProxyMessage {
    /// A user asks the controller to redeem an authorisation; `payload` is JSON of
    /// [`RequestPayload`].
    Request {
        to_status: DsProxyStatus,
        reason: DsProxyStatusReason,
        /// Hex event id (all zeros for a first request).
        initial_request: String,
        payload: String,
    },
    /// The controller's answer to a request; `initial_request` is the request's event id.
    Status {
        status: DsProxyStatus,
        reason: DsProxyStatusReason,
        initial_request: String,
        payload: String,
    },
    /// A balance change in tokens: positive from a controller (credit), negative from a
    /// proxy (debit).
    Transaction {
        user: String,
        tokens: i64,
        /// Credit: the on-chain `pay` signature. Debit: the proxy's request id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        /// Debit: the model that was served.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        /// An entry the gateway wrote on its own word and attests with its proxy key: how it
        /// was paid (`cashu`, `x402`, `escrow`; see `ledger::Rail`). The reference is then the
        /// chain transaction (x402, escrow) or the ecash receipt (Cashu). Ingesting it changes
        /// nothing: the entry is already in the ledger that announced it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rail: Option<String>,
    },
}

/// The payload of a `Request`: DePHY's `{user, nonce, recover_info}` plus the amount to pay.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RequestPayload {
    /// The user's wallet, base58.
    pub user: String,
    pub nonce: u64,
    /// JSON of [`RecoverInfoJson`], as a string (DePHY nests it that way).
    pub recover_info: String,
    /// Lamports (or base units of `mint`) to pay: exactly the signed maximum. Absent: the
    /// signed maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<u64>,
    /// The namespace the authorisation is for. Absent: the controller's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_id: Option<u64>,
    /// The token the authorisation spends (its mint, base58), which the signed message names.
    /// Absent: SOL. (Additive: DePHY's controllers never see it.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mint: Option<String>,
}

/// The signed authorisation inside a request, as a browser app builds it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecoverInfoJson {
    /// 64 signature bytes.
    pub signature: Vec<u8>,
    /// Absent in DePHY's format (it signed no amount); such an authorisation pays nothing.
    #[serde(default)]
    pub max_amount: u64,
    pub deadline: i64,
    /// 32 bytes; DePHY calls its extra data `payload`.
    #[serde(alias = "payload", default)]
    pub extra_data: Vec<u8>,
}

/// What the controller says in a `Status` payload: DePHY's fields plus the outcome.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatusPayload {
    pub user: String,
    pub nonce: u64,
    pub recover_info: String,
    /// The `pay` transaction signature, when paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Tokens credited, when paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<i64>,
    /// Why the request was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RecoverInfoJson {
    /// The program's argument, refusing wrong lengths.
    pub fn to_recover_info(&self, nonce: u64) -> Result<balance_payment::RecoverInfo, String> {
        let signature: [u8; 64] = self
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| format!("signature must be 64 bytes, got {}", self.signature.len()))?;
        let extra_data: [u8; 32] = if self.extra_data.is_empty() {
            [0; 32]
        } else {
            self.extra_data.as_slice().try_into().map_err(|_| {
                format!("extra_data must be 32 bytes, got {}", self.extra_data.len())
            })?
        };
        Ok(balance_payment::RecoverInfo {
            nonce,
            max_amount: self.max_amount,
            deadline: self.deadline,
            extra_data,
            signature,
        })
    }

    pub fn from_recover_info(info: &balance_payment::RecoverInfo) -> Self {
        Self {
            signature: info.signature.to_vec(),
            max_amount: info.max_amount,
            deadline: info.deadline,
            extra_data: info.extra_data.to_vec(),
        }
    }
}
