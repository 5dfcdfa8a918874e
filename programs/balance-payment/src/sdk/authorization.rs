//! Signing a spending authorisation the way a wallet's `signMessage` does, and the Ed25519
//! precompile instruction that must sit right before `pay` / `lock`.
use crate::authorization::{authorization_message, Asset, AuthorizationTerms, RecoverInfo};
use anchor_lang::solana_program::instruction::Instruction;
use ed25519_dalek::{Signer, SigningKey};

/// Signs `terms` with the user's wallet key: what a browser wallet does with the message bytes.
pub fn sign_authorization(wallet: &SigningKey, terms: &AuthorizationTerms) -> RecoverInfo {
    let signature = wallet.sign(&authorization_message(terms));
    RecoverInfo {
        nonce: terms.nonce,
        max_amount: terms.max_amount,
        deadline: terms.deadline,
        extra_data: terms.extra_data,
        signature: signature.to_bytes(),
    }
}

/// The Ed25519 precompile instruction proving `info` was signed by `terms.user` over `terms`.
/// Place it immediately before the `pay` or `lock` instruction.
pub fn verify_instruction(terms: &AuthorizationTerms, info: &RecoverInfo) -> Instruction {
    solana_ed25519_program::new_ed25519_instruction_with_signature(
        &authorization_message(terms),
        &info.signature,
        &terms.user.to_bytes(),
    )
}

/// The Ed25519 check like [`verify_instruction`], but reading the signature from `redeemer`
/// (the `pay_token`/`lock_token` instruction that follows it, at `redeemer_index` in the
/// transaction), whose `recover_info` carries it anyway: 64 bytes smaller, which keeps a token
/// redemption under the 1,232-byte transaction limit. `None` when `redeemer`'s data does not
/// hold the signature.
pub fn verify_instruction_in_redeemer(
    terms: &AuthorizationTerms,
    info: &RecoverInfo,
    redeemer: &Instruction,
    redeemer_index: u16,
) -> Option<Instruction> {
    const THIS_INSTRUCTION: u16 = u16::MAX;
    const KEY_AT: u16 = 16;
    const MESSAGE_AT: u16 = KEY_AT + 32;
    let signature_at = redeemer
        .data
        .windows(64)
        .position(|bytes| bytes == info.signature)?;
    let message = authorization_message(terms);
    let mut data = Vec::with_capacity(usize::from(MESSAGE_AT) + message.len());
    data.extend_from_slice(&[1, 0]);
    for field in [
        u16::try_from(signature_at).ok()?,
        redeemer_index,
        KEY_AT,
        THIS_INSTRUCTION,
        MESSAGE_AT,
        u16::try_from(message.len()).ok()?,
        THIS_INSTRUCTION,
    ] {
        data.extend_from_slice(&field.to_le_bytes());
    }
    data.extend_from_slice(&terms.user.to_bytes());
    data.extend_from_slice(&message);
    Some(Instruction {
        program_id: crate::authorization::ED25519_PROGRAM_ID,
        accounts: vec![],
        data,
    })
}

/// The terms `info` claims for `user` in `namespace_id` of this program's deployment on
/// `cluster` (its genesis hash, `Global::cluster`), for re-checking a received authorisation
/// off-chain and for building the Ed25519 check.
pub fn terms_of(
    cluster: [u8; 32],
    namespace_id: u64,
    user: anchor_lang::prelude::Pubkey,
    info: &RecoverInfo,
) -> AuthorizationTerms {
    terms_in(cluster, namespace_id, user, Asset::Lamports, info)
}

/// [`terms_of`] for an authorisation to spend `asset` (a token authorisation names its mint).
pub fn terms_in(
    cluster: [u8; 32],
    namespace_id: u64,
    user: anchor_lang::prelude::Pubkey,
    asset: Asset,
    info: &RecoverInfo,
) -> AuthorizationTerms {
    AuthorizationTerms {
        program_id: crate::ID,
        cluster,
        namespace_id,
        user,
        nonce: info.nonce,
        max_amount: info.max_amount,
        asset,
        deadline: info.deadline,
        extra_data: info.extra_data,
    }
}

/// Checks `info`'s signature off-chain, as the program will (including canonical form and the
/// cluster tag), so a controller can refuse a bad authorisation before paying fees for it.
pub fn verify_signature(
    cluster: [u8; 32],
    namespace_id: u64,
    user: anchor_lang::prelude::Pubkey,
    info: &RecoverInfo,
) -> bool {
    verify_signature_in(cluster, namespace_id, user, Asset::Lamports, info)
}

/// [`verify_signature`] for an authorisation to spend `asset`: a signature over SOL terms
/// does not spend a token, nor one mint's another's.
pub fn verify_signature_in(
    cluster: [u8; 32],
    namespace_id: u64,
    user: anchor_lang::prelude::Pubkey,
    asset: Asset,
    info: &RecoverInfo,
) -> bool {
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&user.to_bytes()) else {
        return false;
    };
    let signature = ed25519_dalek::Signature::from_bytes(&info.signature);
    crate::authorization::is_canonical_signature(&info.signature)
        && key
            .verify_strict(
                &authorization_message(&terms_in(cluster, namespace_id, user, asset, info)),
                &signature,
            )
            .is_ok()
}
