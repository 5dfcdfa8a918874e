//! The user's spending authorisation ("recover info"): the exact message a wallet signs, and
//! the check that a transaction's Ed25519 precompile instruction verified that message.
//!
//! # The signed message
//! UTF-8 text, lines joined by `\n`, no trailing newline, so that any wallet's `signMessage`
//! shows the user what they authorise:
//!
//! ```text
//! LLM gateway spending authorization
//! program: <program id, base58>
//! cluster: <cluster genesis hash, base58>
//! namespace: <namespace id, decimal>
//! user: <user wallet, base58>
//! nonce: <user nonce, decimal>
//! max amount: <lamports, decimal> lamports
//! deadline: <unix seconds, decimal>
//! extra data: <32 bytes, lowercase hex>
//! ```
//!
//! An authorisation to spend an SPL token (`pay_token`, `lock_token`) names the mint on the
//! amount's line instead: `max amount: <base units, decimal> of mint <mint, base58>`. A
//! signature for lamports therefore never redeems tokens, nor one mint's signature another's.
//!
//! Binding the program id, cluster, namespace, user and nonce makes a signature valid for
//! exactly one redemption by one operator of one deployment on one cluster (the program id
//! alone is the same on every cluster; the cluster tag, the genesis hash stored in `Global` by
//! `initialize`, is not). Binding the amount means the operator can never take more than the
//! user agreed to: `pay` moves exactly the signed amount, `lock` holds at most it (see
//! [`AmountRule`]); the deadline bounds how long it is live. The
//! namespace's name and treasury are deliberately not part of it: its authority controls
//! both, and renaming must not invalidate signatures.
//!
//! # How it is verified
//! The instruction immediately before `pay`/`lock` must be an Ed25519 precompile instruction
//! carrying one signature whose public key and message live in its own data, and whose
//! signature lives either there too (what `new_ed25519_instruction_with_signature` builds) or
//! in the redeeming instruction's own data — the `recover_info` it carries anyway. The second
//! layout saves the 64-byte copy, which keeps a token redemption (more accounts, a longer
//! message) under the 1,232-byte transaction limit. The runtime verifies the signature; this
//! module checks that what was verified is this user's signature over this message, and that
//! the signature's `S` is canonical (`S < L`), so a malleated copy is refused even where the
//! precompile would accept it.
use crate::errors::BalancePaymentError;
use anchor_lang::prelude::*;
use solana_instructions_sysvar::{load_current_index_checked, load_instruction_at_checked};

/// First line of every authorisation message: says what is being signed.
pub const AUTHORIZATION_HEADER: &str = "LLM gateway spending authorization";

/// The Ed25519 signature-verification precompile.
pub const ED25519_PROGRAM_ID: Pubkey = pubkey!("Ed25519SigVerify111111111111111111111111111");

/// What a user's wallet signed, as passed to `pay` and `lock`.
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoverInfo {
    /// The user nonce the authorisation is for; it must be the current one.
    pub nonce: u64,
    /// Most the operator may move with this authorisation, in lamports.
    pub max_amount: u64,
    /// Unix seconds after which the authorisation is dead (and a lock taken with it expires).
    pub deadline: i64,
    /// Free for the operator and user to bind anything else (e.g. a session or request hash).
    pub extra_data: [u8; 32],
    /// The wallet's ed25519 signature over [`authorization_message`].
    pub signature: [u8; 64],
}

/// What an authorisation lets the operator move: the vault's SOL, or one SPL token's escrow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asset {
    /// Lamports from the user's SOL vault (`pay`, `lock`).
    Lamports,
    /// Base units of this mint from the user's token vault (`pay_token`, `lock_token`).
    Token(Pubkey),
}

/// The fields an authorisation binds besides the signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthorizationTerms {
    pub program_id: Pubkey,
    /// The cluster's genesis hash, as stored in `Global::cluster` of the deployment.
    pub cluster: [u8; 32],
    pub namespace_id: u64,
    pub user: Pubkey,
    pub nonce: u64,
    pub max_amount: u64,
    /// What `max_amount` counts: lamports, or one mint's base units.
    pub asset: Asset,
    pub deadline: i64,
    pub extra_data: [u8; 32],
}

/// The bytes the user's wallet signs for `terms` (layout in the module docs).
pub fn authorization_message(terms: &AuthorizationTerms) -> Vec<u8> {
    let amount = match terms.asset {
        Asset::Lamports => format!("{} lamports", terms.max_amount),
        Asset::Token(mint) => format!("{} of mint {mint}", terms.max_amount),
    };
    format!(
        "{AUTHORIZATION_HEADER}\nprogram: {}\ncluster: {}\nnamespace: {}\nuser: {}\nnonce: {}\nmax amount: {amount}\ndeadline: {}\nextra data: {}",
        terms.program_id,
        Pubkey::new_from_array(terms.cluster),
        terms.namespace_id,
        terms.user,
        terms.nonce,
        terms.deadline,
        to_hex(&terms.extra_data),
    )
    .into_bytes()
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 0x0f) as usize] as char);
    }
    out
}

/// The group order `L` of ed25519, little-endian. A signature's `S` must be below it.
const ED25519_ORDER: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// True when the signature's scalar half is reduced (`S < L`), i.e. not a malleated copy.
pub fn is_canonical_signature(signature: &[u8; 64]) -> bool {
    for i in (0..32).rev() {
        let s = signature[32 + i];
        if s != ED25519_ORDER[i] {
            return s < ED25519_ORDER[i];
        }
    }
    false
}

/// Checks that the preceding instruction verified `info.signature` by `terms.user` over the
/// message for `terms`. Freshness (nonce, deadline, amount) is the caller's job.
pub fn verify_authorization(
    instructions_sysvar: &AccountInfo,
    terms: &AuthorizationTerms,
    info: &RecoverInfo,
) -> Result<()> {
    let current = load_current_index_checked(instructions_sysvar)?;
    let previous = current
        .checked_sub(1)
        .ok_or(BalancePaymentError::MissingSignatureVerification)?;
    let ix = load_instruction_at_checked(previous as usize, instructions_sysvar)?;
    require_keys_eq!(
        ix.program_id,
        ED25519_PROGRAM_ID,
        BalancePaymentError::MissingSignatureVerification
    );
    let verified = VerifiedSignature::parse(&ix.data, current)
        .ok_or(BalancePaymentError::MalformedSignatureVerification)?;
    let signature_matches = match verified.signature {
        SignatureAt::Here(signature) => signature == info.signature.as_slice(),
        SignatureAt::InRedeemer { offset } => {
            let own = load_instruction_at_checked(current as usize, instructions_sysvar)?;
            let at = offset as usize;
            own.data.get(at..at + 64) == Some(info.signature.as_slice())
        }
    };

    require!(
        verified.public_key == terms.user.as_ref(),
        BalancePaymentError::SignerMismatch
    );
    require!(signature_matches, BalancePaymentError::SignatureMismatch);
    require!(
        is_canonical_signature(&info.signature),
        BalancePaymentError::NonCanonicalSignature
    );
    require!(
        verified.message == authorization_message(terms).as_slice(),
        BalancePaymentError::SignedMessageMismatch
    );
    Ok(())
}

/// The one signature an Ed25519 precompile instruction verified, borrowed from its data.
struct VerifiedSignature<'a> {
    public_key: &'a [u8],
    signature: SignatureAt<'a>,
    message: &'a [u8],
}

/// Where the precompile read the signature it verified.
enum SignatureAt<'a> {
    /// In the precompile instruction's own data.
    Here(&'a [u8]),
    /// At `offset` in the data of the redeeming instruction (the one running now).
    InRedeemer { offset: u16 },
}

impl<'a> VerifiedSignature<'a> {
    /// Accepts only a single signature whose key and message are in the precompile
    /// instruction's own data, and whose signature is there or in the redeeming instruction
    /// (`current`); anything pointing into any other instruction is refused rather than
    /// followed.
    fn parse(data: &'a [u8], current: u16) -> Option<Self> {
        const THIS_INSTRUCTION: u16 = u16::MAX;
        if data.first() != Some(&1) {
            return None;
        }
        let field = |i: usize| -> Option<u16> {
            let at = 2 + 2 * i;
            Some(u16::from_le_bytes([*data.get(at)?, *data.get(at + 1)?]))
        };
        let (sig_offset, sig_ix) = (field(0)?, field(1)?);
        let (key_offset, key_ix) = (field(2)?, field(3)?);
        let (msg_offset, msg_size, msg_ix) = (field(4)?, field(5)?, field(6)?);
        if key_ix != THIS_INSTRUCTION || msg_ix != THIS_INSTRUCTION {
            return None;
        }
        let slice = |offset: u16, len: usize| data.get(offset as usize..offset as usize + len);
        let signature = match sig_ix {
            THIS_INSTRUCTION => SignatureAt::Here(slice(sig_offset, 64)?),
            ix if ix == current => SignatureAt::InRedeemer { offset: sig_offset },
            _ => return None,
        };
        Some(Self {
            public_key: slice(key_offset, 32)?,
            signature,
            message: slice(msg_offset, msg_size as usize)?,
        })
    }
}

/// How the amount an operator redeems must relate to the amount the user signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AmountRule {
    /// `pay`: exactly the signed amount. Requests travel on public relays, so anyone can copy
    /// an authorisation into a request for another amount; only the user's figure is paid.
    Exact,
    /// `lock`: at most the signed maximum; `settle` later takes what was really used.
    AtMost,
}

impl AmountRule {
    /// Refuses `amount` when this rule does not allow it for a signed `max_amount`.
    pub fn check(self, amount: u64, max_amount: u64) -> Result<()> {
        match self {
            AmountRule::Exact => {
                require!(amount == max_amount, BalancePaymentError::AmountNotSigned)
            }
            AmountRule::AtMost => require!(
                amount <= max_amount,
                BalancePaymentError::AmountExceedsSignedMax
            ),
        }
        Ok(())
    }
}

/// What a `pay` or `lock` asks to redeem, besides the authorisation itself.
pub struct Redemption<'a> {
    /// The deployment's settings: the cluster the signature must name.
    pub global: &'a crate::state::Global,
    /// The namespace whose bot redeems; the signature must name it.
    pub namespace_id: u64,
    /// Lamports or base units to pay or lock.
    pub amount: u64,
    /// What `amount` counts; the signature must name it.
    pub asset: Asset,
    /// How `amount` must relate to the signed amount: `Exact` for `pay`, `AtMost` for `lock`.
    pub rule: AmountRule,
}

/// Checks that `info`, verified in the preceding instruction, lets the namespace's bot move
/// the redemption's amount out of `user`'s vault now, on this cluster; then consumes it by
/// bumping the user's nonce. Shared by `pay`, `lock` and their token twins, so all refuse the
/// same things (and SOL and tokens draw on one nonce sequence).
pub fn redeem_authorization(
    instructions_sysvar: &AccountInfo,
    redemption: Redemption<'_>,
    user: &mut crate::state::UserAccount,
    info: &RecoverInfo,
) -> Result<()> {
    let Redemption {
        global,
        namespace_id,
        amount,
        asset,
        rule,
    } = redemption;
    require!(amount > 0, BalancePaymentError::ZeroAmount);
    rule.check(amount, info.max_amount)?;
    require!(
        Clock::get()?.unix_timestamp <= info.deadline,
        BalancePaymentError::AuthorizationExpired
    );
    require!(info.nonce == user.nonce, BalancePaymentError::NonceMismatch);
    let terms = AuthorizationTerms {
        program_id: crate::ID,
        cluster: global.cluster,
        namespace_id,
        user: user.owner,
        nonce: info.nonce,
        max_amount: info.max_amount,
        asset,
        deadline: info.deadline,
        extra_data: info.extra_data,
    };
    verify_authorization(instructions_sysvar, &terms, info)?;
    user.nonce = user
        .nonce
        .checked_add(1)
        .ok_or(BalancePaymentError::ArithmeticOverflow)?;
    Ok(())
}

/// The program's own checks on what the Ed25519 precompile verified, run directly against a
/// hand-built instructions sysvar. This reaches the checks that the test bank's precompile
/// never lets through (it refuses a malleated signature before the program runs), so they
/// are proven to hold on a runtime whose precompile is laxer.
#[cfg(test)]
mod tests {
    use super::*;
    use anchor_lang::solana_program::program_error::ProgramError;
    use ed25519_dalek::{Signer, SigningKey};
    use solana_instruction::BorrowedInstruction;
    use solana_instructions_sysvar::{construct_instructions_data, store_current_index_checked};

    fn signed(key: &SigningKey) -> (AuthorizationTerms, RecoverInfo) {
        let terms = AuthorizationTerms {
            program_id: crate::ID,
            cluster: [5; 32],
            namespace_id: 0,
            user: Pubkey::new_from_array(key.verifying_key().to_bytes()),
            nonce: 0,
            max_amount: 1_000,
            asset: Asset::Lamports,
            deadline: 0,
            extra_data: [0; 32],
        };
        let info = RecoverInfo {
            nonce: terms.nonce,
            max_amount: terms.max_amount,
            deadline: terms.deadline,
            extra_data: terms.extra_data,
            signature: key.sign(&authorization_message(&terms)).to_bytes(),
        };
        (terms, info)
    }

    /// `verify_authorization` as instruction 1, after an Ed25519 check of `signature` by the
    /// user over the message for `terms`; the error it returns, if any.
    fn verify_after_check(
        terms: &AuthorizationTerms,
        info: &RecoverInfo,
        signature: &[u8; 64],
    ) -> Option<ProgramError> {
        let check = solana_ed25519_program::new_ed25519_instruction_with_signature(
            &authorization_message(terms),
            signature,
            &terms.user.to_bytes(),
        );
        verify_in(&check.data, &[], terms, info)
    }

    /// `verify_authorization` as instruction 1 (whose data is `redeemer_data`), after an Ed25519
    /// check whose data is `check_data`.
    fn verify_in(
        check_data: &[u8],
        redeemer_data: &[u8],
        terms: &AuthorizationTerms,
        info: &RecoverInfo,
    ) -> Option<ProgramError> {
        let (ed25519, program) = (ED25519_PROGRAM_ID, crate::ID);
        let instructions = [
            BorrowedInstruction {
                program_id: &ed25519,
                accounts: vec![],
                data: check_data,
            },
            BorrowedInstruction {
                program_id: &program,
                accounts: vec![],
                data: redeemer_data,
            },
        ];
        let mut data = construct_instructions_data(&instructions);
        store_current_index_checked(&mut data, 1).expect("room for the index");
        let (key, owner, mut lamports) = (solana_instructions_sysvar::ID, Pubkey::default(), 0);
        let sysvar = AccountInfo::new(&key, false, false, &mut lamports, &mut data, &owner, false);
        verify_authorization(&sysvar, terms, info)
            .err()
            .map(ProgramError::from)
    }

    fn code(error: BalancePaymentError) -> Option<ProgramError> {
        Some(ProgramError::Custom(u32::from(error)))
    }

    #[test]
    fn the_users_signature_over_the_terms_passes() {
        let (terms, info) = signed(&SigningKey::from_bytes(&[3; 32]));
        assert_eq!(verify_after_check(&terms, &info, &info.signature), None);
    }

    #[test]
    fn a_malleated_signature_is_refused_by_the_program_itself() {
        let (terms, mut info) = signed(&SigningKey::from_bytes(&[3; 32]));
        // S + L: the same signature to a lax verifier, another byte string to everyone.
        let mut carry = 0u16;
        for (s, l) in info.signature[32..].iter_mut().zip(ED25519_ORDER) {
            let sum = u16::from(*s) + u16::from(l) + carry;
            *s = sum as u8;
            carry = sum >> 8;
        }
        assert!(!is_canonical_signature(&info.signature));
        assert_eq!(
            verify_after_check(&terms, &info, &info.signature),
            code(BalancePaymentError::NonCanonicalSignature)
        );
    }

    #[test]
    fn a_check_of_another_signature_is_refused() {
        let (terms, info) = signed(&SigningKey::from_bytes(&[3; 32]));
        let mut other = info.signature;
        other[0] ^= 1;
        assert_eq!(
            verify_after_check(&terms, &info, &other),
            code(BalancePaymentError::SignatureMismatch)
        );
    }

    /// A check whose signature the precompile reads from instruction `sig_ix` at `sig_offset`.
    fn compact_check(terms: &AuthorizationTerms, sig_ix: u16, sig_offset: u16) -> Vec<u8> {
        let message = authorization_message(terms);
        let mut data = vec![1, 0];
        for field in [
            sig_offset,
            sig_ix,
            16,
            u16::MAX,
            48,
            message.len() as u16,
            u16::MAX,
        ] {
            data.extend_from_slice(&field.to_le_bytes());
        }
        data.extend_from_slice(&terms.user.to_bytes());
        data.extend_from_slice(&message);
        data
    }

    #[test]
    fn a_signature_read_from_the_redeeming_instruction_passes_only_there_and_only_if_it_is_the_users(
    ) {
        let (terms, info) = signed(&SigningKey::from_bytes(&[3; 32]));
        let mut redeemer = vec![9; 10];
        redeemer.extend_from_slice(&info.signature);
        assert_eq!(
            verify_in(&compact_check(&terms, 1, 10), &redeemer, &terms, &info),
            None
        );
        assert_eq!(
            verify_in(&compact_check(&terms, 1, 9), &redeemer, &terms, &info),
            code(BalancePaymentError::SignatureMismatch),
            "another 64 bytes of the redeeming instruction"
        );
        assert_eq!(
            verify_in(&compact_check(&terms, 1, 11), &redeemer, &terms, &info),
            code(BalancePaymentError::SignatureMismatch),
            "past the end of the redeeming instruction"
        );
        for elsewhere in [0, 2] {
            assert_eq!(
                verify_in(
                    &compact_check(&terms, elsewhere, 10),
                    &redeemer,
                    &terms,
                    &info
                ),
                code(BalancePaymentError::MalformedSignatureVerification),
                "a signature in instruction {elsewhere} is not followed"
            );
        }
    }
}
