//! The `exact` scheme's transaction, checked before the gateway signs anything as its fee
//! payer: the shape the official clients build (compute-unit limit, compute-unit price, one
//! `TransferChecked` of the offered token to the treasury's account, memos), the amount, the
//! payer's signature, and a fee payer that appears in no instruction — so co-signing can cost
//! the gateway a transaction fee and nothing else.
use solana_sdk::{
    hash::Hash, message::VersionedMessage, pubkey::Pubkey, transaction::VersionedTransaction,
};

const COMPUTE_BUDGET: Pubkey =
    Pubkey::from_str_const("ComputeBudget111111111111111111111111111111");
const MEMO: Pubkey = Pubkey::from_str_const("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr");
const MEMO_V1: Pubkey = Pubkey::from_str_const("Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo");
/// The most compute units a payment may ask for (the clients ask 20,000): the priority fee
/// the gateway pays is the price times this.
const MAX_COMPUTE_UNITS: u32 = 100_000;
/// The highest compute-unit price (micro-lamports) the gateway pays, as the reference
/// facilitator: at most 0.0005 SOL in priority fee per payment with the limit above.
const MAX_MICRO_LAMPORTS: u64 = 5_000_000;
/// SPL Token's `TransferChecked`.
const TRANSFER_CHECKED: u8 = 12;

/// What the transaction must do.
#[derive(Debug, Clone, Copy)]
pub struct Expected {
    pub fee_payer: Pubkey,
    pub mint: Pubkey,
    pub token_program: Pubkey,
    pub decimals: u8,
    /// The treasury's token account of `mint`.
    pub destination: Pubkey,
    /// Base units, exactly.
    pub amount: u64,
}

/// What a checked transaction pays, and by whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    /// The token owner (or delegate) that signed the transfer: whose balance it credits.
    pub payer: Pubkey,
    /// The token account the tokens leave.
    pub source: Pubkey,
    pub amount: u64,
    pub blockhash: Hash,
}

/// Why a payment's transaction is refused, each with the reason code the official
/// facilitator gives for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("the transaction could not be decoded")]
    Undecodable,
    #[error("the transaction uses address lookup tables; list every account in it")]
    LookupTables,
    #[error("the transaction's fee payer is not this gateway's")]
    FeePayer,
    #[error("the transaction must be signed by the fee payer and the payer only")]
    Signers,
    #[error("the transaction must have 3 to 7 instructions")]
    InstructionCount,
    #[error("the first instruction must set a compute-unit limit of at most {MAX_COMPUTE_UNITS}")]
    ComputeLimit,
    #[error(
        "the second instruction must set a compute-unit price of at most {MAX_MICRO_LAMPORTS} \
         micro-lamports"
    )]
    ComputePrice,
    #[error("the third instruction must be a TransferChecked of the offered token")]
    NoTransfer,
    #[error("the fee payer may appear in no instruction")]
    FeePayerInInstruction,
    #[error("the transfer is of another token")]
    Mint,
    #[error("the transfer does not go to the offer's recipient")]
    Recipient,
    #[error("the transfer's amount is not the offer's")]
    Amount,
    #[error("only memo instructions may follow the transfer")]
    UnknownInstruction,
    #[error("the payer's signature does not verify")]
    Signature,
}

impl Invalid {
    /// The x402 reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            Invalid::Undecodable => "invalid_exact_svm_payload_transaction_could_not_be_decoded",
            Invalid::LookupTables => "invalid_exact_svm_payload_transaction",
            Invalid::FeePayer => "invalid_exact_svm_fee_payer_not_managed_by_facilitator",
            Invalid::Signers => "invalid_exact_svm_payload_excessive_signers",
            Invalid::InstructionCount => {
                "invalid_exact_svm_payload_transaction_instructions_length"
            }
            Invalid::ComputeLimit => {
                "invalid_exact_svm_payload_transaction_instructions_compute_limit_instruction"
            }
            Invalid::ComputePrice => {
                "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction"
            }
            Invalid::NoTransfer => "invalid_exact_svm_payload_no_transfer_instruction",
            Invalid::FeePayerInInstruction => {
                "invalid_exact_svm_payload_transaction_fee_payer_transferring_funds"
            }
            Invalid::Mint => "invalid_exact_svm_payload_mint_mismatch",
            Invalid::Recipient => "invalid_exact_svm_payload_recipient_mismatch",
            Invalid::Amount => "invalid_exact_svm_payload_amount_mismatch",
            Invalid::UnknownInstruction => "invalid_exact_svm_payload_unknown_optional_instruction",
            Invalid::Signature => "invalid_exact_svm_payload_signature_invalid",
        }
    }
}

/// Decodes a payment's transaction (its wire bytes).
pub fn decode(bytes: &[u8]) -> Result<VersionedTransaction, Invalid> {
    bincode::deserialize(bytes).map_err(|_| Invalid::Undecodable)
}

/// Checks `tx` against `expected`; on success, what it pays and who signed the transfer.
pub fn check(tx: &VersionedTransaction, expected: &Expected) -> Result<Transfer, Invalid> {
    let message = &tx.message;
    if message
        .address_table_lookups()
        .is_some_and(|lookups| !lookups.is_empty())
    {
        return Err(Invalid::LookupTables);
    }
    let keys = message.static_account_keys();
    if keys.first() != Some(&expected.fee_payer) {
        return Err(Invalid::FeePayer);
    }
    let signers = usize::from(message.header().num_required_signatures);
    if signers != 2 || tx.signatures.len() != signers {
        return Err(Invalid::Signers);
    }
    let instructions = message.instructions();
    if !(3..=7).contains(&instructions.len()) {
        return Err(Invalid::InstructionCount);
    }
    let program = |index: u8| keys.get(usize::from(index)).copied();
    // The fee payer (key 0) signs for the fee only: no instruction may name it.
    if instructions.iter().any(|ix| ix.accounts.contains(&0)) {
        return Err(Invalid::FeePayerInInstruction);
    }
    let [limit, price, transfer, rest @ ..] = instructions else {
        return Err(Invalid::InstructionCount);
    };
    let units = (program(limit.program_id_index) == Some(COMPUTE_BUDGET))
        .then_some(&limit.data[..])
        .and_then(|data| match data {
            [2, units @ ..] => units.try_into().ok().map(u32::from_le_bytes),
            _ => None,
        });
    if units.is_none_or(|units| units > MAX_COMPUTE_UNITS) {
        return Err(Invalid::ComputeLimit);
    }
    let micro_lamports = (program(price.program_id_index) == Some(COMPUTE_BUDGET))
        .then_some(&price.data[..])
        .and_then(|data| match data {
            [3, price @ ..] => price.try_into().ok().map(u64::from_le_bytes),
            _ => None,
        });
    if micro_lamports.is_none_or(|price| price > MAX_MICRO_LAMPORTS) {
        return Err(Invalid::ComputePrice);
    }
    if program(transfer.program_id_index) != Some(expected.token_program) {
        return Err(Invalid::NoTransfer);
    }
    let (amount, decimals) = match &transfer.data[..] {
        [TRANSFER_CHECKED, amount @ .., decimals] if amount.len() == 8 => (
            u64::from_le_bytes(amount.try_into().map_err(|_| Invalid::NoTransfer)?),
            *decimals,
        ),
        _ => return Err(Invalid::NoTransfer),
    };
    let account = |position: usize| {
        transfer
            .accounts
            .get(position)
            .and_then(|index| keys.get(usize::from(*index)))
            .copied()
    };
    let (Some(source), Some(mint), Some(destination), Some(authority), 4) = (
        account(0),
        account(1),
        account(2),
        account(3),
        transfer.accounts.len(),
    ) else {
        return Err(Invalid::NoTransfer);
    };
    if mint != expected.mint || decimals != expected.decimals {
        return Err(Invalid::Mint);
    }
    if destination != expected.destination {
        return Err(Invalid::Recipient);
    }
    if amount != expected.amount {
        return Err(Invalid::Amount);
    }
    if rest
        .iter()
        .any(|ix| !matches!(program(ix.program_id_index), Some(p) if p == MEMO || p == MEMO_V1))
    {
        return Err(Invalid::UnknownInstruction);
    }
    // The transfer's authority is the one signer besides the fee payer, and signed this.
    if keys.get(1) != Some(&authority) {
        return Err(Invalid::Signers);
    }
    let bytes = message.serialize();
    if !tx.signatures[1].verify(authority.as_ref(), &bytes) {
        return Err(Invalid::Signature);
    }
    Ok(Transfer {
        payer: authority,
        source,
        amount,
        blockhash: *recent_blockhash(message),
    })
}

fn recent_blockhash(message: &VersionedMessage) -> &Hash {
    message.recent_blockhash()
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
