//! `register`, `deposit` and `withdraw`: the user's own funds, which only the user can take back.
mod common;

use balance_payment::{
    errors::BalancePaymentError as E,
    events::{Deposited, UserRegistered, Withdrawn},
    sdk::{events::ProgramEvent, instructions as ix, pda},
};
use common::*;

#[tokio::test]
async fn register_creates_the_user_account_once() {
    let mut h = Harness::new().await;
    let wallet = Wallet::new();
    h.airdrop(&wallet.pubkey(), SOL).await;
    let events = h
        .send(&[ix::register(wallet.pubkey())], &[&wallet.keypair])
        .await
        .unwrap();
    let account = h.user_account(&wallet.pubkey()).await;
    assert_eq!(
        (account.owner, account.nonce, account.locked_amount),
        (wallet.pubkey(), 0, 0)
    );
    assert_eq!(
        events,
        vec![ProgramEvent::UserRegistered(UserRegistered {
            user: wallet.pubkey(),
            vault: pda::vault(&wallet.pubkey()),
        })]
    );
    let before = h.snapshot(&wallet.pubkey()).await;
    assert_instruction_error(
        h.send(&[ix::register(wallet.pubkey())], &[&wallet.keypair])
            .await,
        0,
        ACCOUNT_EXISTS,
    );
    assert_eq!(h.snapshot(&wallet.pubkey()).await, before);
}

#[tokio::test]
async fn deposit_moves_sol_into_the_vault_and_emits_deposited() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(SOL).await;
    let events = h
        .send(
            &[ix::deposit(user.pubkey(), user.pubkey(), 500)],
            &[&user.keypair],
        )
        .await
        .unwrap();
    assert_eq!(h.vault_balance(&user.pubkey()).await, SOL + 500);
    assert_eq!(
        events,
        vec![ProgramEvent::Deposited(Deposited {
            user: user.pubkey(),
            depositor: user.pubkey(),
            amount: 500,
            vault_balance: SOL + 500,
        })]
    );
}

#[tokio::test]
async fn deposit_from_another_wallet_credits_the_named_user() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(0).await;
    let friend = h.user_with_deposit(0).await;
    h.send(
        &[ix::deposit(friend.pubkey(), user.pubkey(), SOL)],
        &[&friend.keypair],
    )
    .await
    .unwrap();
    assert_eq!(h.vault_balance(&user.pubkey()).await, SOL);
    assert_eq!(h.vault_balance(&friend.pubkey()).await, 0);
}

#[tokio::test]
async fn deposit_rejects_zero_dust_overflow_and_unregistered_users() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(0).await;
    let u = user.pubkey();
    let before = h.snapshot(&u).await;
    let result = h.send(&[ix::deposit(u, u, 0)], &[&user.keypair]).await;
    assert_program_error(result, 0, E::ZeroAmount);
    let dust = h.rent_minimum - 1;
    let result = h.send(&[ix::deposit(u, u, dust)], &[&user.keypair]).await;
    assert_program_error(result, 0, E::VaultBelowRentExempt);
    assert_eq!(h.snapshot(&u).await, before);

    h.send(&[ix::deposit(u, u, SOL)], &[&user.keypair])
        .await
        .unwrap();
    let before = h.snapshot(&u).await;
    let result = h
        .send(&[ix::deposit(u, u, u64::MAX)], &[&user.keypair])
        .await;
    assert_program_error(result, 0, E::ArithmeticOverflow);
    assert_eq!(h.snapshot(&u).await, before);

    let stranger = Wallet::new();
    let result = h
        .send(&[ix::deposit(u, stranger.pubkey(), SOL)], &[&user.keypair])
        .await;
    assert_error(
        result,
        0,
        anchor_lang::error::ErrorCode::AccountNotInitialized,
    );
    assert_eq!(h.snapshot(&u).await, before);
}

#[tokio::test]
async fn withdraw_returns_free_funds_and_emits_withdrawn() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(2 * SOL).await;
    let wallet_before = h.lamports(&user.pubkey()).await;
    let events = h
        .send(&[ix::withdraw(user.pubkey(), SOL)], &[&user.keypair])
        .await
        .unwrap();
    assert_eq!(h.vault_balance(&user.pubkey()).await, SOL);
    // The bank's payer pays fees, so the wallet gains exactly the amount.
    assert_eq!(h.lamports(&user.pubkey()).await, wallet_before + SOL);
    assert_eq!(
        events,
        vec![ProgramEvent::Withdrawn(Withdrawn {
            user: user.pubkey(),
            amount: SOL,
            vault_balance: SOL,
        })]
    );
}

#[tokio::test]
async fn withdraw_of_everything_empties_the_vault() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(SOL).await;
    h.send(&[ix::withdraw(user.pubkey(), SOL)], &[&user.keypair])
        .await
        .unwrap();
    assert_eq!(h.vault_balance(&user.pubkey()).await, 0);
    // And the user can come back.
    h.send(
        &[ix::deposit(user.pubkey(), user.pubkey(), SOL)],
        &[&user.keypair],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn withdraw_rejects_leaving_the_vault_below_rent_exempt() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(SOL).await;
    let before = h.snapshot(&user.pubkey()).await;
    let result = h
        .send(&[ix::withdraw(user.pubkey(), SOL - 1)], &[&user.keypair])
        .await;
    assert_program_error(result, 0, E::VaultBelowRentExempt);
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
}

#[tokio::test]
async fn withdraw_rejects_zero_and_more_than_the_balance() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(SOL).await;
    let before = h.snapshot(&user.pubkey()).await;
    for (amount, error) in [
        (0, E::ZeroAmount),
        (SOL + 1, E::InsufficientFunds),
        (u64::MAX, E::InsufficientFunds),
    ] {
        let result = h
            .send(&[ix::withdraw(user.pubkey(), amount)], &[&user.keypair])
            .await;
        assert_program_error(result, 0, error);
    }
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
}

#[tokio::test]
async fn withdraw_rejects_anyone_but_the_owner() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(SOL).await;
    let thief = h.user_with_deposit(0).await;
    // The thief signs, pointing at the user's account and vault.
    let mut withdraw = ix::withdraw(user.pubkey(), SOL);
    withdraw.accounts[0] = solana_sdk::instruction::AccountMeta::new(thief.pubkey(), true);
    let before = h.snapshot(&user.pubkey()).await;
    let result = h.send(&[withdraw], &[&thief.keypair]).await;
    assert_error(result, 0, anchor_lang::error::ErrorCode::ConstraintSeeds);
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
}
