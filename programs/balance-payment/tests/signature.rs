//! `pay`'s signature check: the Ed25519 instruction before it must prove that this user signed
//! exactly these terms. Every way to bend that is tried once, each rejection leaving all state
//! untouched.
mod common;

use balance_payment::{
    authorization::{authorization_message, AuthorizationTerms},
    errors::BalancePaymentError as E,
    sdk::{
        authorization::{sign_authorization, verify_instruction},
        events::ProgramEvent,
        instructions as ix,
    },
};
use common::*;
use solana_sdk::{
    instruction::AccountMeta, pubkey::Pubkey, signature::Signer, transaction::TransactionError,
};

const DEPOSIT: u64 = 2 * SOL;

#[tokio::test]
async fn pay_rejects_signature_by_another_key() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let attacker = Wallet::new();
    let terms = h.terms(&user.pubkey(), 5_000).await;
    let forged = sign_authorization(&attacker.signing_key, &terms);
    let before = h.snapshot(&user.pubkey()).await;

    // The attacker's key in the Ed25519 check over the user's terms: the precompile accepts
    // it, the program sees the key is not the user's.
    let verify = solana_ed25519_program_instruction(
        &authorization_message(&terms),
        &forged.signature,
        &attacker.pubkey(),
    );
    let bot = h.bot.insecure_clone();
    let result = h
        .send(
            &[
                verify,
                ix::pay(bot.pubkey(), 0, h.treasury, user.pubkey(), forged, 5_000),
            ],
            &[&bot],
        )
        .await;
    assert_program_error(result, 1, E::SignerMismatch);

    // The user's key claimed for the attacker's signature: the precompile refuses it.
    let result = h.pay(&user.pubkey(), forged, 5_000).await;
    assert_error(result, 0, INVALID_SIGNATURE);
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
}

/// Signs `terms` as the user and submits it for namespace 0 with the honest bot, the
/// Ed25519 check carrying exactly what was signed.
async fn submit_signed(
    h: &mut Harness,
    user: &Wallet,
    terms: AuthorizationTerms,
    amount: u64,
) -> Result<Vec<ProgramEvent>, TransactionError> {
    let info = sign_authorization(&user.signing_key, &terms);
    let bot = h.bot.insecure_clone();
    h.send(
        &[
            verify_instruction(&terms, &info),
            ix::pay(bot.pubkey(), 0, h.treasury, user.pubkey(), info, amount),
        ],
        &[&bot],
    )
    .await
}

#[tokio::test]
async fn pay_rejects_signature_made_for_another_namespace() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let mut terms = h.terms(&user.pubkey(), 5_000).await;
    terms.namespace_id = 1;
    let before = h.snapshot(&user.pubkey()).await;
    assert_program_error(
        submit_signed(&mut h, &user, terms, 5_000).await,
        1,
        E::SignedMessageMismatch,
    );
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
}

#[tokio::test]
async fn pay_rejects_signature_made_for_another_program() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let mut terms = h.terms(&user.pubkey(), 5_000).await;
    terms.program_id = Pubkey::new_unique();
    let before = h.snapshot(&user.pubkey()).await;
    assert_program_error(
        submit_signed(&mut h, &user, terms, 5_000).await,
        1,
        E::SignedMessageMismatch,
    );
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
}

#[tokio::test]
async fn pay_rejects_signature_made_for_another_user() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let mut terms = h.terms(&user.pubkey(), 5_000).await;
    terms.user = Pubkey::new_unique();
    let info = sign_authorization(&user.signing_key, &terms);
    // The user's key really signed, but a message naming someone else.
    let message = authorization_message(&terms);
    let verify = solana_ed25519_program_instruction(&message, &info.signature, &user.pubkey());
    let bot = h.bot.insecure_clone();
    let before = h.snapshot(&user.pubkey()).await;
    let result = h
        .send(
            &[
                verify,
                ix::pay(bot.pubkey(), 0, h.treasury, user.pubkey(), info, 5_000),
            ],
            &[&bot],
        )
        .await;
    assert_program_error(result, 1, E::SignedMessageMismatch);
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
}

#[tokio::test]
async fn pay_rejects_a_larger_max_than_was_signed() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let terms = h.terms(&user.pubkey(), 1_000).await;
    let mut info = sign_authorization(&user.signing_key, &terms);
    // The check verifies what the user signed (max 1 000); the bot claims a max of 1 000 000.
    let verify = verify_instruction(&terms, &info);
    info.max_amount = 1_000_000;
    let bot = h.bot.insecure_clone();
    let before = h.snapshot(&user.pubkey()).await;
    let result = h
        .send(
            &[
                verify,
                ix::pay(bot.pubkey(), 0, h.treasury, user.pubkey(), info, 1_000_000),
            ],
            &[&bot],
        )
        .await;
    assert_program_error(result, 1, E::SignedMessageMismatch);
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
}

#[tokio::test]
async fn pay_rejects_missing_or_misplaced_signature_check() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let info = h.authorize(&user, 5_000).await;
    let bot = h.bot.insecure_clone();
    let before = h.snapshot(&user.pubkey()).await;
    let [verify, pay] = ix::pay_authorized(
        h.cluster,
        bot.pubkey(),
        0,
        h.treasury,
        user.pubkey(),
        info,
        5_000,
    );

    assert_program_error(
        h.send(std::slice::from_ref(&pay), &[&bot]).await,
        0,
        E::MissingSignatureVerification,
    );
    let unrelated =
        anchor_lang::solana_program::system_instruction::transfer(&bot.pubkey(), &bot.pubkey(), 1);
    let result = h.send(&[verify, unrelated, pay], &[&bot]).await;
    assert_program_error(result, 2, E::MissingSignatureVerification);
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
}

#[tokio::test]
async fn pay_rejects_signature_check_that_points_at_other_instructions() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let info = h.authorize(&user, 5_000).await;
    let bot = h.bot.insecure_clone();
    let [mut verify, pay] = ix::pay_authorized(
        h.cluster,
        bot.pubkey(),
        0,
        h.treasury,
        user.pubkey(),
        info,
        5_000,
    );
    // Point every offset at instruction 0 (the check itself): the precompile still verifies,
    // but the program only accepts the self-contained layout.
    for field in [1usize, 3, 6] {
        let at = 2 + 2 * field;
        verify.data[at..at + 2].copy_from_slice(&0u16.to_le_bytes());
    }
    let before = h.snapshot(&user.pubkey()).await;
    assert_program_error(
        h.send(&[verify, pay], &[&bot]).await,
        1,
        E::MalformedSignatureVerification,
    );
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
}

#[tokio::test]
async fn pay_rejects_malleated_signature() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let mut info = h.authorize(&user, 5_000).await;
    // S + L verifies under a lax check. The test bank's precompile refuses it already; the
    // program's own `NonCanonicalSignature` check keeps that true on any runtime that does not.
    add_group_order(&mut info.signature);
    assert!(!balance_payment::authorization::is_canonical_signature(
        &info.signature
    ));
    let before = h.snapshot(&user.pubkey()).await;
    let result = h.pay(&user.pubkey(), info, 5_000).await;
    assert_error(result, 0, INVALID_SIGNATURE);
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
}

#[tokio::test]
async fn pay_rejects_a_spoofed_instructions_sysvar() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let info = h.authorize(&user, 5_000).await;
    let bot = h.bot.insecure_clone();
    let [verify, mut pay] = ix::pay_authorized(
        h.cluster,
        bot.pubkey(),
        0,
        h.treasury,
        user.pubkey(),
        info,
        5_000,
    );
    let sysvar_at = pay
        .accounts
        .iter()
        .position(|meta| meta.pubkey == solana_sdk::sysvar::instructions::ID)
        .unwrap();
    pay.accounts[sysvar_at] = AccountMeta::new_readonly(Pubkey::new_unique(), false);
    let result = h.send(&[verify, pay], &[&bot]).await;
    assert_error(result, 1, anchor_lang::error::ErrorCode::ConstraintAddress);
}

fn solana_ed25519_program_instruction(
    message: &[u8],
    signature: &[u8; 64],
    key: &Pubkey,
) -> solana_sdk::instruction::Instruction {
    solana_ed25519_program::new_ed25519_instruction_with_signature(
        message,
        signature,
        &key.to_bytes(),
    )
}

/// Adds the ed25519 group order L to the signature's S half (little-endian), keeping it valid
/// under a non-strict verifier.
fn add_group_order(signature: &mut [u8; 64]) {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = signature[32 + i] as u16 + L[i] as u16 + carry;
        signature[32 + i] = sum as u8;
        carry = sum >> 8;
    }
}
