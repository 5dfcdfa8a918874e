//! `pay`: a bot redeems a user's signed authorisation. Every rule an attacker could try to
//! bend is violated here once, and each rejection must leave all state untouched.
mod common;

use balance_payment::{
    authorization::{authorization_message, AuthorizationTerms},
    errors::BalancePaymentError as E,
    events::Paid,
    sdk::{
        authorization::{sign_authorization, verify_instruction},
        events::ProgramEvent,
        instructions as ix,
    },
};
use common::*;
use solana_sdk::{
    instruction::{AccountMeta, InstructionError},
    pubkey::Pubkey,
    signature::{Keypair, Signer},
    transaction::TransactionError,
};

const DEPOSIT: u64 = 2 * SOL;

#[tokio::test]
async fn pay_moves_amount_to_treasury_bumps_nonce_and_emits_paid() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let info = h.authorize(&user, 5_000_000).await;
    let treasury_before = h.lamports(&h.treasury.clone()).await;

    let events = h.pay(&user.pubkey(), info, 3_000_000).await.unwrap();

    assert_eq!(h.vault_balance(&user.pubkey()).await, DEPOSIT - 3_000_000);
    assert_eq!(
        h.lamports(&h.treasury.clone()).await,
        treasury_before + 3_000_000
    );
    assert_eq!(h.user_account(&user.pubkey()).await.nonce, 1);
    assert_eq!(
        events,
        vec![ProgramEvent::Paid(Paid {
            namespace_id: 0,
            user: user.pubkey(),
            treasury: h.treasury,
            nonce: 0,
            amount: 3_000_000,
            max_amount: 5_000_000,
            extra_data: [7; 32],
            vault_balance: DEPOSIT - 3_000_000,
        })]
    );
}

#[tokio::test]
async fn pay_accepts_exactly_the_signed_max_and_each_fresh_nonce() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    for nonce in 0..3 {
        let info = h.authorize(&user, 1_000).await;
        assert_eq!(info.nonce, nonce);
        h.pay(&user.pubkey(), info, 1_000).await.unwrap();
    }
    assert_eq!(h.vault_balance(&user.pubkey()).await, DEPOSIT - 3_000);
    assert_eq!(h.user_account(&user.pubkey()).await.nonce, 3);
}

#[tokio::test]
async fn pay_rejects_replayed_signature() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let info = h.authorize(&user, 5_000).await;
    h.pay(&user.pubkey(), info, 1_000).await.unwrap();
    let before = h.snapshot(&user.pubkey()).await;

    assert_program_error(
        h.pay(&user.pubkey(), info, 1_000).await,
        1,
        E::NonceMismatch,
    );
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
}

#[tokio::test]
async fn pay_rejects_authorisation_for_a_future_nonce() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let mut terms = h.terms(&user.pubkey(), 5_000).await;
    terms.nonce += 1;
    let info = sign_authorization(&user.signing_key, &terms);
    let before = h.snapshot(&user.pubkey()).await;

    assert_program_error(
        h.pay(&user.pubkey(), info, 1_000).await,
        1,
        E::NonceMismatch,
    );
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
}

#[tokio::test]
async fn pay_rejects_expired_deadline() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let info = h.authorize(&user, 5_000).await;
    h.set_time(info.deadline + 1).await;
    let before = h.snapshot(&user.pubkey()).await;

    assert_program_error(
        h.pay(&user.pubkey(), info, 1_000).await,
        1,
        E::AuthorizationExpired,
    );
    assert_eq!(h.snapshot(&user.pubkey()).await, before);

    // At the deadline itself the authorisation is still live.
    h.set_time(info.deadline).await;
    h.pay(&user.pubkey(), info, 1_000).await.unwrap();
}

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
                ix::pay(bot.pubkey(), 0, h.treasury, user.pubkey(), forged, 1_000),
            ],
            &[&bot],
        )
        .await;
    assert_program_error(result, 1, E::SignerMismatch);

    // The user's key claimed for the attacker's signature: the precompile refuses it.
    let result = h.pay(&user.pubkey(), forged, 1_000).await;
    assert!(
        matches!(
            result,
            Err(TransactionError::InstructionError(
                0,
                InstructionError::Custom(_)
            ))
        ),
        "precompile must reject, got {result:?}"
    );
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
        submit_signed(&mut h, &user, terms, 1_000).await,
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
        submit_signed(&mut h, &user, terms, 1_000).await,
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
                ix::pay(bot.pubkey(), 0, h.treasury, user.pubkey(), info, 1_000),
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
                ix::pay(bot.pubkey(), 0, h.treasury, user.pubkey(), info, 500_000),
            ],
            &[&bot],
        )
        .await;
    assert_program_error(result, 1, E::SignedMessageMismatch);
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
}

#[tokio::test]
async fn pay_rejects_amount_above_signed_max() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let info = h.authorize(&user, 1_000).await;
    let before = h.snapshot(&user.pubkey()).await;
    assert_program_error(
        h.pay(&user.pubkey(), info, 1_001).await,
        1,
        E::AmountExceedsSignedMax,
    );
    assert_program_error(
        h.pay(&user.pubkey(), info, u64::MAX).await,
        1,
        E::AmountExceedsSignedMax,
    );
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
}

#[tokio::test]
async fn pay_rejects_zero_amount() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let info = h.authorize(&user, 1_000).await;
    let before = h.snapshot(&user.pubkey()).await;
    assert_program_error(h.pay(&user.pubkey(), info, 0).await, 1, E::ZeroAmount);
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
}

#[tokio::test]
async fn pay_rejects_a_signer_that_is_not_the_bot() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let info = h.authorize(&user, 5_000).await;
    let intruder = Keypair::new();
    let before = h.snapshot(&user.pubkey()).await;
    let instructions =
        ix::pay_authorized(intruder.pubkey(), 0, h.treasury, user.pubkey(), info, 1_000);
    assert_program_error(
        h.send(&instructions, &[&intruder]).await,
        1,
        E::UnauthorizedBot,
    );
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
}

#[tokio::test]
async fn pay_rejects_the_bot_of_another_namespace() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let other_bot = Keypair::new();
    let other_treasury = Pubkey::new_unique();
    let other = h.another_namespace(&other_bot, other_treasury).await;
    let info = h.authorize(&user, 5_000).await;
    let before = h.snapshot(&user.pubkey()).await;

    // Against namespace 0 (what the user signed): not that namespace's bot.
    let instructions = ix::pay_authorized(
        other_bot.pubkey(),
        0,
        h.treasury,
        user.pubkey(),
        info,
        1_000,
    );
    assert_program_error(
        h.send(&instructions, &[&other_bot]).await,
        1,
        E::UnauthorizedBot,
    );
    // Against its own namespace: the signature names namespace 0.
    let pay = ix::pay(
        other_bot.pubkey(),
        other,
        other_treasury,
        user.pubkey(),
        info,
        1_000,
    );
    let terms = balance_payment::sdk::authorization::terms_of(0, user.pubkey(), &info);
    let result = h
        .send(&[verify_instruction(&terms, &info), pay], &[&other_bot])
        .await;
    assert_program_error(result, 1, E::SignedMessageMismatch);
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
}

#[tokio::test]
async fn pay_rejects_wrong_treasury() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let info = h.authorize(&user, 5_000).await;
    let thief = Pubkey::new_unique();
    h.airdrop(&thief, h.rent_minimum).await;
    let bot = h.bot.insecure_clone();
    let before = h.snapshot(&user.pubkey()).await;
    let instructions = ix::pay_authorized(bot.pubkey(), 0, thief, user.pubkey(), info, 1_000);
    assert_program_error(h.send(&instructions, &[&bot]).await, 1, E::WrongTreasury);
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
    assert_eq!(h.lamports(&thief).await, h.rent_minimum);
}

#[tokio::test]
async fn pay_rejects_missing_or_misplaced_signature_check() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let info = h.authorize(&user, 5_000).await;
    let bot = h.bot.insecure_clone();
    let before = h.snapshot(&user.pubkey()).await;
    let [verify, pay] = ix::pay_authorized(bot.pubkey(), 0, h.treasury, user.pubkey(), info, 1_000);

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
    let [mut verify, pay] =
        ix::pay_authorized(bot.pubkey(), 0, h.treasury, user.pubkey(), info, 1_000);
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
    // S + L verifies under a lax check; it must be refused (by the precompile or the program).
    add_group_order(&mut info.signature);
    assert!(!balance_payment::authorization::is_canonical_signature(
        &info.signature
    ));
    let before = h.snapshot(&user.pubkey()).await;
    let result = h.pay(&user.pubkey(), info, 1_000).await;
    match result {
        Err(TransactionError::InstructionError(0, InstructionError::Custom(_))) => {
            eprintln!("malleated signature refused by the precompile")
        }
        other => assert_program_error(other, 1, E::NonCanonicalSignature),
    }
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
}

#[tokio::test]
async fn pay_never_touches_locked_funds_or_the_rent_minimum() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let info = h.authorize(&user, SOL).await;
    h.lock_funds(&user.pubkey(), info, SOL).await.unwrap();
    let free = DEPOSIT - SOL - h.rent_minimum;

    let info = h.authorize(&user, u64::MAX).await;
    let before = h.snapshot(&user.pubkey()).await;
    assert_program_error(
        h.pay(&user.pubkey(), info, free + 1).await,
        1,
        E::InsufficientFunds,
    );
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
    h.pay(&user.pubkey(), info, free).await.unwrap();
    assert_eq!(h.vault_balance(&user.pubkey()).await, SOL + h.rent_minimum);
}

#[tokio::test]
async fn pay_rejects_unregistered_user() {
    let mut h = Harness::new().await;
    let stranger = Wallet::new();
    let terms = h_terms_for_unregistered(&mut h, &stranger).await;
    let info = sign_authorization(&stranger.signing_key, &terms);
    let result = h.pay(&stranger.pubkey(), info, 1_000).await;
    assert_error(
        result,
        1,
        anchor_lang::error::ErrorCode::AccountNotInitialized,
    );
}

#[tokio::test]
async fn pay_rejects_a_spoofed_instructions_sysvar() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let info = h.authorize(&user, 5_000).await;
    let bot = h.bot.insecure_clone();
    let [verify, mut pay] =
        ix::pay_authorized(bot.pubkey(), 0, h.treasury, user.pubkey(), info, 1_000);
    let sysvar_at = pay
        .accounts
        .iter()
        .position(|meta| meta.pubkey == solana_sdk::sysvar::instructions::ID)
        .unwrap();
    pay.accounts[sysvar_at] = AccountMeta::new_readonly(Pubkey::new_unique(), false);
    let result = h.send(&[verify, pay], &[&bot]).await;
    assert_error(result, 1, anchor_lang::error::ErrorCode::ConstraintAddress);
}

async fn h_terms_for_unregistered(h: &mut Harness, wallet: &Wallet) -> AuthorizationTerms {
    AuthorizationTerms {
        program_id: balance_payment::ID,
        namespace_id: 0,
        user: wallet.pubkey(),
        nonce: 0,
        max_amount: 5_000,
        deadline: h.now().await + 60,
        extra_data: [0; 32],
    }
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
