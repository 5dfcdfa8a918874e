//! `lock`, `settle` and `release`: holds that an operator settles for at most what was locked,
//! and that the user can always take back once the signed deadline has passed.
mod common;

use balance_payment::{
    errors::BalancePaymentError as E,
    events::{Locked, Released, Settled},
    sdk::{events::ProgramEvent, instructions as ix},
};
use common::*;
use solana_sdk::{
    pubkey::Pubkey,
    signature::{Keypair, Signer},
};

const DEPOSIT: u64 = 2 * SOL;
const LOCKED: u64 = SOL;

/// A user with a deposit and one lock of `LOCKED` at nonce 0; returns the lock's expiry.
async fn locked_user(h: &mut Harness) -> (Wallet, i64) {
    let user = h.user_with_deposit(DEPOSIT).await;
    let info = h.authorize(&user, LOCKED).await;
    h.lock_funds(&user.pubkey(), info, LOCKED).await.unwrap();
    (user, info.deadline)
}

#[tokio::test]
async fn lock_holds_funds_in_the_vault_and_emits_locked() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let info = h.authorize(&user, 2 * LOCKED).await;
    let events = h.lock_funds(&user.pubkey(), info, LOCKED).await.unwrap();

    assert_eq!(h.vault_balance(&user.pubkey()).await, DEPOSIT);
    let account = h.user_account(&user.pubkey()).await;
    assert_eq!((account.nonce, account.locked_amount), (1, LOCKED));
    let lock = h.lock(&user.pubkey(), 0).await.expect("lock account");
    assert_eq!(
        (lock.amount, lock.expires_at, lock.namespace_id),
        (LOCKED, info.deadline, 0)
    );
    assert_eq!(lock.rent_payer, h.bot.pubkey());
    assert_eq!(
        events,
        vec![ProgramEvent::Locked(Locked {
            namespace_id: 0,
            user: user.pubkey(),
            nonce: 0,
            amount: LOCKED,
            max_amount: 2 * LOCKED,
            expires_at: info.deadline,
            extra_data: [7; 32],
            locked_amount: LOCKED,
        })]
    );
}

#[tokio::test]
async fn lock_checks_the_authorisation_like_pay() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let info = h.authorize(&user, LOCKED).await;
    let before = h.snapshot(&user.pubkey()).await;

    assert_program_error(
        h.lock_funds(&user.pubkey(), info, LOCKED + 1).await,
        1,
        E::AmountExceedsSignedMax,
    );
    let intruder = Keypair::new();
    let instructions =
        ix::lock_authorized(h.cluster, intruder.pubkey(), 0, user.pubkey(), info, LOCKED);
    h.airdrop(&intruder.pubkey(), SOL).await;
    assert_program_error(
        h.send(&instructions, &[&intruder]).await,
        1,
        E::UnauthorizedBot,
    );
    h.set_time(info.deadline + 1).await;
    assert_program_error(
        h.lock_funds(&user.pubkey(), info, LOCKED).await,
        1,
        E::AuthorizationExpired,
    );
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
    assert!(h.lock(&user.pubkey(), 0).await.is_none());
}

#[tokio::test]
async fn lock_rejects_replay_and_more_than_the_free_balance() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(DEPOSIT).await;
    let first = h.authorize(&user, LOCKED).await;
    h.lock_funds(&user.pubkey(), first, LOCKED).await.unwrap();
    let before = h.snapshot(&user.pubkey()).await;
    // Replaying the nonce-0 authorisation: its lock account (addressed by the nonce) already
    // exists, so creating it again fails before the program even looks at the nonce.
    assert_instruction_error(
        h.lock_funds(&user.pubkey(), first, LOCKED).await,
        1,
        ACCOUNT_EXISTS,
    );

    let info = h.authorize(&user, u64::MAX).await;
    let free = DEPOSIT - LOCKED - h.rent_minimum;
    assert_program_error(
        h.lock_funds(&user.pubkey(), info, free + 1).await,
        1,
        E::InsufficientFunds,
    );
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
    h.lock_funds(&user.pubkey(), info, free).await.unwrap();
    assert_eq!(
        h.user_account(&user.pubkey()).await.locked_amount,
        LOCKED + free
    );
}

#[tokio::test]
async fn settle_pays_part_releases_the_rest_and_closes_the_lock() {
    let mut h = Harness::new().await;
    let (user, _) = locked_user(&mut h).await;
    let treasury = h.treasury;
    let treasury_before = h.lamports(&treasury).await;
    let bot_before = h.lamports(&h.bot.pubkey()).await;

    let events = h.settle(&user.pubkey(), 0, 400_000).await.unwrap();

    assert_eq!(h.lamports(&treasury).await, treasury_before + 400_000);
    assert_eq!(h.vault_balance(&user.pubkey()).await, DEPOSIT - 400_000);
    assert_eq!(h.user_account(&user.pubkey()).await.locked_amount, 0);
    assert!(h.lock(&user.pubkey(), 0).await.is_none(), "lock closed");
    assert!(
        h.lamports(&h.bot.pubkey()).await > bot_before,
        "rent back to the bot"
    );
    assert_eq!(
        events,
        vec![ProgramEvent::Settled(Settled {
            namespace_id: 0,
            user: user.pubkey(),
            nonce: 0,
            amount: 400_000,
            released: LOCKED - 400_000,
            locked_amount: 0,
            vault_balance: DEPOSIT - 400_000,
        })]
    );
    // The released part is free again.
    h.send(
        &[ix::withdraw(
            user.pubkey(),
            DEPOSIT - 400_000 - h.rent_minimum,
        )],
        &[&user.keypair],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn settle_rejects_more_than_was_locked() {
    let mut h = Harness::new().await;
    let (user, _) = locked_user(&mut h).await;
    let before = h.snapshot(&user.pubkey()).await;
    assert_program_error(
        h.settle(&user.pubkey(), 0, LOCKED + 1).await,
        0,
        E::SettleExceedsLock,
    );
    assert_program_error(
        h.settle(&user.pubkey(), 0, u64::MAX).await,
        0,
        E::SettleExceedsLock,
    );
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
    h.settle(&user.pubkey(), 0, LOCKED).await.unwrap();
}

#[tokio::test]
async fn settle_rejects_an_expired_lock() {
    let mut h = Harness::new().await;
    let (user, expires_at) = locked_user(&mut h).await;
    h.set_time(expires_at + 1).await;
    let before = h.snapshot(&user.pubkey()).await;
    assert_program_error(h.settle(&user.pubkey(), 0, 1).await, 0, E::LockExpired);
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
}

#[tokio::test]
async fn settle_rejects_other_signers_namespaces_treasuries_and_rent_payers() {
    let mut h = Harness::new().await;
    let (user, _) = locked_user(&mut h).await;
    let other_bot = Keypair::new();
    h.airdrop(&other_bot.pubkey(), SOL).await;
    let other_treasury = Pubkey::new_unique();
    let other = h.another_namespace(&other_bot, other_treasury).await;
    let bot = h.bot.insecure_clone();
    let (u, t) = (user.pubkey(), h.treasury);
    let before = h.snapshot(&u).await;

    let by_intruder = ix::settle(other_bot.pubkey(), 0, t, u, 0, bot.pubkey(), 1);
    assert_program_error(
        h.send(&[by_intruder], &[&other_bot]).await,
        0,
        E::UnauthorizedBot,
    );
    let via_other_namespace = ix::settle(
        other_bot.pubkey(),
        other,
        other_treasury,
        u,
        0,
        bot.pubkey(),
        1,
    );
    assert_program_error(
        h.send(&[via_other_namespace], &[&other_bot]).await,
        0,
        E::NamespaceMismatch,
    );
    let to_thief = ix::settle(bot.pubkey(), 0, Pubkey::new_unique(), u, 0, bot.pubkey(), 1);
    assert_program_error(h.send(&[to_thief], &[&bot]).await, 0, E::WrongTreasury);
    let rent_to_thief = ix::settle(bot.pubkey(), 0, t, u, 0, Pubkey::new_unique(), 1);
    assert_error(
        h.send(&[rent_to_thief], &[&bot]).await,
        0,
        anchor_lang::error::ErrorCode::ConstraintAddress,
    );
    assert_eq!(h.snapshot(&u).await, before);
}

#[tokio::test]
async fn release_returns_an_expired_lock_to_the_user() {
    let mut h = Harness::new().await;
    let (user, expires_at) = locked_user(&mut h).await;
    h.set_time(expires_at + 1).await;
    let bot = h.bot.pubkey();
    let events = h
        .send(&[ix::release(user.pubkey(), 0, bot)], &[&user.keypair])
        .await
        .unwrap();
    assert_eq!(h.user_account(&user.pubkey()).await.locked_amount, 0);
    assert!(h.lock(&user.pubkey(), 0).await.is_none());
    assert_eq!(h.vault_balance(&user.pubkey()).await, DEPOSIT);
    assert_eq!(
        events,
        vec![ProgramEvent::Released(Released {
            namespace_id: 0,
            user: user.pubkey(),
            nonce: 0,
            amount: LOCKED,
            locked_amount: 0,
        })]
    );
    // Everything can be withdrawn, closing the vault.
    h.send(&[ix::withdraw(user.pubkey(), DEPOSIT)], &[&user.keypair])
        .await
        .unwrap();
    assert_eq!(h.vault_balance(&user.pubkey()).await, 0);
}

#[tokio::test]
async fn release_rejects_before_expiry() {
    let mut h = Harness::new().await;
    let (user, expires_at) = locked_user(&mut h).await;
    h.set_time(expires_at).await;
    let before = h.snapshot(&user.pubkey()).await;
    let bot = h.bot.pubkey();
    let result = h
        .send(&[ix::release(user.pubkey(), 0, bot)], &[&user.keypair])
        .await;
    assert_program_error(result, 0, E::LockNotExpired);
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
}

#[tokio::test]
async fn release_rejects_someone_else() {
    let mut h = Harness::new().await;
    let (user, expires_at) = locked_user(&mut h).await;
    h.set_time(expires_at + 1).await;
    let stranger = h.user_with_deposit(0).await;
    let bot = h.bot.pubkey();
    // The stranger signs, naming the user's lock and their own user account.
    let mut release = ix::release(stranger.pubkey(), 0, bot);
    release.accounts[2].pubkey = balance_payment::sdk::pda::lock(&user.pubkey(), 0);
    let before = h.snapshot(&user.pubkey()).await;
    let result = h.send(&[release], &[&stranger.keypair]).await;
    assert_error(result, 0, anchor_lang::error::ErrorCode::ConstraintSeeds);
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
    assert!(h.lock(&user.pubkey(), 0).await.is_some());
}

#[tokio::test]
async fn withdraw_cannot_take_locked_funds() {
    let mut h = Harness::new().await;
    let (user, _) = locked_user(&mut h).await;
    let before = h.snapshot(&user.pubkey()).await;
    let free = DEPOSIT - LOCKED - h.rent_minimum;
    let result = h
        .send(
            &[ix::withdraw(user.pubkey(), DEPOSIT - LOCKED + 1)],
            &[&user.keypair],
        )
        .await;
    assert_program_error(result, 0, E::FundsLocked);
    // Keeping exactly the locked amount would leave the vault without its rent minimum.
    let result = h
        .send(
            &[ix::withdraw(user.pubkey(), DEPOSIT - LOCKED)],
            &[&user.keypair],
        )
        .await;
    assert_program_error(result, 0, E::VaultBelowRentExempt);
    assert_eq!(h.snapshot(&user.pubkey()).await, before);
    h.send(&[ix::withdraw(user.pubkey(), free)], &[&user.keypair])
        .await
        .unwrap();
}
