//! `pay`: a bot redeems a user's signed authorisation. Every rule an attacker could try to
//! bend is violated here once, and each rejection must leave all state untouched.
mod common;

use balance_payment::{
    authorization::{Asset, AuthorizationTerms},
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
    pubkey::Pubkey,
    signature::{Keypair, Signer},
};

const DEPOSIT: u64 = 2 * SOL;

#[tokio::test]
async fn pay_moves_the_signed_amount_to_treasury_bumps_nonce_and_emits_paid() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let info = h.authorize(&user, 5_000_000).await;
    let treasury_before = h.lamports(&h.treasury.clone()).await;

    let events = h.pay(&user.pubkey(), info, 5_000_000).await.unwrap();

    assert_eq!(h.vault_balance(&user.pubkey()).await, DEPOSIT - 5_000_000);
    assert_eq!(
        h.lamports(&h.treasury.clone()).await,
        treasury_before + 5_000_000
    );
    assert_eq!(h.user_account(&user.pubkey()).await.nonce, 1);
    assert_eq!(
        events,
        vec![ProgramEvent::Paid(Paid {
            namespace_id: 0,
            user: user.pubkey(),
            treasury: h.treasury,
            nonce: 0,
            amount: 5_000_000,
            max_amount: 5_000_000,
            extra_data: [7; 32],
            vault_balance: DEPOSIT - 5_000_000,
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
    h.pay(&user.pubkey(), info, 5_000).await.unwrap();
    let before = h.snapshot(&user.pubkey()).await;

    assert_program_error(
        h.pay(&user.pubkey(), info, 5_000).await,
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
        h.pay(&user.pubkey(), info, 5_000).await,
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
        h.pay(&user.pubkey(), info, 5_000).await,
        1,
        E::AuthorizationExpired,
    );
    assert_eq!(h.snapshot(&user.pubkey()).await, before);

    // At the deadline itself the authorisation is still live.
    h.set_time(info.deadline).await;
    h.pay(&user.pubkey(), info, 5_000).await.unwrap();
}

/// Request events are public: anyone can copy an authorisation into a request for another
/// amount. `pay` moves exactly what the user signed, never less nor more, and a refused
/// amount leaves the authorisation (its nonce) usable for the right one.
#[tokio::test]
async fn pay_redeems_exactly_the_signed_amount() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let info = h.authorize(&user, 1_000).await;
    let before = h.snapshot(&user.pubkey()).await;
    for amount in [1, 999, 1_001, u64::MAX] {
        assert_program_error(
            h.pay(&user.pubkey(), info, amount).await,
            1,
            E::AmountNotSigned,
        );
    }
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
    assert_eq!(h.user_account(&user.pubkey()).await.nonce, 0, "nonce kept");

    h.pay(&user.pubkey(), info, 1_000).await.unwrap();
    assert_eq!(h.vault_balance(&user.pubkey()).await, DEPOSIT - 1_000);
    assert_eq!(h.user_account(&user.pubkey()).await.nonce, 1);
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
    let instructions = ix::pay_authorized(
        h.cluster,
        intruder.pubkey(),
        0,
        h.treasury,
        user.pubkey(),
        info,
        5_000,
    );
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
        h.cluster,
        other_bot.pubkey(),
        0,
        h.treasury,
        user.pubkey(),
        info,
        5_000,
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
        5_000,
    );
    let terms = balance_payment::sdk::authorization::terms_of(h.cluster, 0, user.pubkey(), &info);
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
    let instructions = ix::pay_authorized(
        h.cluster,
        bot.pubkey(),
        0,
        thief,
        user.pubkey(),
        info,
        5_000,
    );
    assert_program_error(h.send(&instructions, &[&bot]).await, 1, E::WrongTreasury);
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
    assert_eq!(h.lamports(&thief).await, h.rent_minimum);
}

#[tokio::test]
async fn pay_never_touches_locked_funds_or_the_rent_minimum() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let info = h.authorize(&user, SOL).await;
    h.lock_funds(&user.pubkey(), info, SOL).await.unwrap();
    let free = DEPOSIT - SOL - h.rent_minimum;

    let info = h.authorize(&user, free + 1).await;
    let before = h.snapshot(&user.pubkey()).await;
    assert_program_error(
        h.pay(&user.pubkey(), info, free + 1).await,
        1,
        E::InsufficientFunds,
    );
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
    let info = h.authorize(&user, free).await;
    h.pay(&user.pubkey(), info, free).await.unwrap();
    assert_eq!(h.vault_balance(&user.pubkey()).await, SOL + h.rent_minimum);
}

#[tokio::test]
async fn pay_rejects_unregistered_user() {
    let mut h = Harness::new().await;
    let stranger = Wallet::new();
    let terms = h_terms_for_unregistered(&mut h, &stranger).await;
    let info = sign_authorization(&stranger.signing_key, &terms);
    let result = h.pay(&stranger.pubkey(), info, 5_000).await;
    assert_error(
        result,
        1,
        anchor_lang::error::ErrorCode::AccountNotInitialized,
    );
}

async fn h_terms_for_unregistered(h: &mut Harness, wallet: &Wallet) -> AuthorizationTerms {
    AuthorizationTerms {
        program_id: balance_payment::ID,
        cluster: h.cluster,
        namespace_id: 0,
        user: wallet.pubkey(),
        nonce: 0,
        max_amount: 5_000,
        asset: Asset::Lamports,
        deadline: h.now().await + 60,
        extra_data: [0; 32],
    }
}
