//! What the Cashu books hold and what their callers pass in: the gateway's proofs, the swaps
//! it makes at mints, and the lease that lets one caller at a time send a swap.
use crate::{LedgerError, Result};
use serde::{Deserialize, Serialize};

/// A proof the gateway holds: bearer ecash, as the mint signed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CashuProof {
    pub secret: String,
    pub keyset_id: String,
    pub amount: i64,
    /// The mint's unblinded signature (hex).
    pub c: String,
}

/// Why a swap is made: receiving a customer's token, paying change, or the operator's
/// withdrawal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapKind {
    Receive,
    Change,
    Withdraw,
}

impl SwapKind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Receive => "receive",
            Self::Change => "change",
            Self::Withdraw => "withdraw",
        }
    }

    pub(super) fn parse(kind: &str) -> Result<Self> {
        match kind {
            "receive" => Ok(Self::Receive),
            "change" => Ok(Self::Change),
            "withdraw" => Ok(Self::Withdraw),
            _ => Err(LedgerError::Column(1, "an unknown swap kind")),
        }
    }
}

/// A swap at a mint, written down before it is sent. `inputs` and `outputs` are the caller's
/// JSON (the outputs' secrets and blinding factors), enough to replay the swap or restore its
/// signatures after a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CashuSwap {
    pub id: String,
    pub kind: SwapKind,
    pub mint: String,
    pub inputs: String,
    pub outputs: Option<String>,
    /// The mint's input fee.
    pub fee: i64,
    /// What the swap pays out (change or withdrawal), in sats.
    pub paid_sats: i64,
}

/// Who asks to send a swap (a name of its own per call), and for how long.
#[derive(Debug, Clone, Copy)]
pub struct SwapLease<'a> {
    pub owner: &'a str,
    /// Longer than any one exchange with the mint may take.
    pub seconds: i64,
}

impl<'a> SwapLease<'a> {
    /// The owner and the unix second the lease lapses, taken at `now`.
    pub(super) fn until(&self, now: i64) -> (&'a str, i64) {
        (self.owner, now.saturating_add(self.seconds))
    }
}
