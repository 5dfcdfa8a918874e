//! `pay_token`, `lock_token`, `settle_token` and `release_token`: the SOL rules, in a mint the
//! namespace accepts, with an authorisation that names that mint.
mod common;

use anchor_lang::error::ErrorCode as Anchor;
use balance_payment::{
    authorization::Asset,
    errors::BalancePaymentError as E,
    events::{TokenLocked, TokenPaid, TokenReleased, TokenSettled},
    sdk::{events::ProgramEvent, pda, token_instructions as tix},
};
use common::*;
use solana_sdk::signature::{Keypair, Signer};

const DEPOSIT: u64 = 1_000;

/// A namespace accepting a new mint of `program`, and a user with `DEPOSIT` of it in escrow.
async fn funded(h: &mut Harness, program: TokenProgram) -> (TestMint, Pubkey, Wallet) {
    let (mint, treasury_tokens) = h.accepted_mint(program).await;
    let (user, _) = h.user_with_tokens(&mint, DEPOSIT).await;
    (mint, treasury_tokens, user)
}

use solana_sdk::pubkey::Pubkey;

#[tokio::test]
async fn pay_token_moves_exactly_the_signed_amount_to_the_treasury() {
    let mut h = Harness::new().await;
    for program in [TokenProgram::Classic, TokenProgram::Token2022] {
        let (mint, treasury_tokens, user) = funded(&mut h, program).await;
        let info = h.authorize_in(&user, Asset::Token(mint.address), 300).await;
        let redeemer = h.redeemer(&mint, treasury_tokens);
        let pay =
            |amount| tix::pay_token_authorized(h.cluster, &redeemer, user.pubkey(), info, amount);
        let (over, under, exact) = (pay(301), pay(299), pay(300));
        assert_program_error(h.as_bot(&over).await, 1, E::AmountNotSigned);
        assert_program_error(h.as_bot(&under).await, 1, E::AmountNotSigned);
        let events = h.as_bot(&exact).await.unwrap();
        assert_eq!(
            events,
            vec![ProgramEvent::TokenPaid(TokenPaid {
                namespace_id: 0,
                user: user.pubkey(),
                mint: mint.address,
                treasury: treasury_tokens,
                nonce: info.nonce,
                amount: 300,
                max_amount: 300,
                extra_data: [7; 32],
                vault_balance: DEPOSIT - 300,
            })]
        );
        assert_eq!(h.tokens(&treasury_tokens).await, 300);
        assert_eq!(
            h.vault_tokens(&user.pubkey(), &mint.address).await,
            DEPOSIT - 300
        );
        // Redeemed once: the nonce moved on.
        assert_program_error(h.as_bot(&exact).await, 1, E::NonceMismatch);
    }
}

#[tokio::test]
async fn a_signature_for_lamports_or_another_mint_redeems_nothing() {
    let mut h = Harness::new().await;
    let (mint, treasury_tokens, user) = funded(&mut h, TokenProgram::Classic).await;
    let other = h.create_mint(TokenProgram::Classic, None).await;
    let redeemer = h.redeemer(&mint, treasury_tokens);
    for asset in [Asset::Lamports, Asset::Token(other.address)] {
        let info = h.authorize_in(&user, asset, 100).await;
        // The Ed25519 check is over the message the user signed; the program rebuilds it with
        // this mint, and the two differ.
        let mut pay = tix::pay_token_authorized(h.cluster, &redeemer, user.pubkey(), info, 100);
        let terms = balance_payment::sdk::authorization::terms_in(
            h.cluster,
            0,
            user.pubkey(),
            asset,
            &info,
        );
        pay[0] = balance_payment::sdk::authorization::verify_instruction(&terms, &info);
        assert_program_error(h.as_bot(&pay).await, 1, E::SignedMessageMismatch);
    }
    assert_eq!(h.vault_tokens(&user.pubkey(), &mint.address).await, DEPOSIT);
}

#[tokio::test]
async fn pay_token_goes_only_to_the_namespace_treasury_in_the_same_mint() {
    let mut h = Harness::new().await;
    let (mint, treasury_tokens, user) = funded(&mut h, TokenProgram::Token2022).await;
    let info = h.authorize_in(&user, Asset::Token(mint.address), 100).await;
    let bots_tokens = {
        let bot = h.bot.pubkey();
        h.token_account(&mint, &bot).await
    };
    let redeemer = h.redeemer(&mint, bots_tokens);
    let pay = tix::pay_token_authorized(h.cluster, &redeemer, user.pubkey(), info, 100);
    assert_program_error(h.as_bot(&pay).await, 1, E::WrongTreasury);

    let other = h.create_mint(TokenProgram::Token2022, None).await;
    let treasury = h.treasury;
    let treasurys_other = h.token_account(&other, &treasury).await;
    let redeemer = h.redeemer(&mint, treasurys_other);
    let pay = tix::pay_token_authorized(h.cluster, &redeemer, user.pubkey(), info, 100);
    assert_program_error(h.as_bot(&pay).await, 1, E::WrongMint);

    let redeemer = h.redeemer(&mint, treasury_tokens);
    let pay = tix::pay_token_authorized(h.cluster, &redeemer, user.pubkey(), info, 100);
    h.as_bot(&pay).await.unwrap();
}

#[tokio::test]
async fn pay_token_draws_only_on_the_signers_own_vault() {
    let mut h = Harness::new().await;
    let (mint, treasury_tokens, user) = funded(&mut h, TokenProgram::Classic).await;
    let (rich, _) = h.user_with_tokens(&mint, DEPOSIT).await;
    let info = h.authorize_in(&user, Asset::Token(mint.address), 100).await;
    let redeemer = h.redeemer(&mint, treasury_tokens);
    let mut pay = tix::pay_token_authorized(h.cluster, &redeemer, user.pubkey(), info, 100);
    // accounts: bot, namespace, accepted_mint, global, user, user_account, token_balance, vault
    pay[1].accounts[7].pubkey = pda::token_vault(&rich.pubkey(), &mint.address);
    assert_error(h.as_bot(&pay).await, 1, Anchor::ConstraintSeeds);
    pay[1].accounts[6].pubkey = pda::token_balance(&rich.pubkey(), &mint.address);
    assert_error(h.as_bot(&pay).await, 1, Anchor::ConstraintSeeds);
    assert_eq!(h.vault_tokens(&rich.pubkey(), &mint.address).await, DEPOSIT);
}

#[tokio::test]
async fn a_mint_the_namespace_does_not_accept_cannot_be_redeemed() {
    let mut h = Harness::new().await;
    let (mint, treasury_tokens, user) = funded(&mut h, TokenProgram::Classic).await;
    let authority = h.authority.insecure_clone();
    let delist = tix::delist_mint(authority.pubkey(), 0, mint.address);
    h.send(&[delist], &[&authority]).await.unwrap();

    let info = h.authorize_in(&user, Asset::Token(mint.address), 100).await;
    let redeemer = h.redeemer(&mint, treasury_tokens);
    let pay = tix::pay_token_authorized(h.cluster, &redeemer, user.pubkey(), info, 100);
    assert_error(h.as_bot(&pay).await, 1, Anchor::AccountNotInitialized);
    let lock = tix::lock_token_authorized(h.cluster, &redeemer, user.pubkey(), info, 100);
    assert_error(h.as_bot(&lock).await, 1, Anchor::AccountNotInitialized);

    // The user keeps their tokens: withdrawing does not need the listing.
    let own = h.token_account(&mint, &user.pubkey()).await;
    let withdraw =
        tix::withdraw_token(user.pubkey(), own, mint.address, mint.program.id(), DEPOSIT);
    h.send(&[withdraw], &[&user.keypair]).await.unwrap();
    assert_eq!(h.tokens(&own).await, DEPOSIT);
}

#[tokio::test]
async fn only_the_bot_redeems_and_never_more_than_is_free() {
    let mut h = Harness::new().await;
    let (mint, treasury_tokens, user) = funded(&mut h, TokenProgram::Classic).await;
    let info = h
        .authorize_in(&user, Asset::Token(mint.address), DEPOSIT + 1)
        .await;
    let intruder = Keypair::new();
    h.airdrop(&intruder.pubkey(), SOL).await;
    let redeemer = tix::TokenRedeemer {
        bot: intruder.pubkey(),
        ..h.redeemer(&mint, treasury_tokens)
    };
    let pay = tix::pay_token_authorized(h.cluster, &redeemer, user.pubkey(), info, DEPOSIT + 1);
    assert_program_error(h.send(&pay, &[&intruder]).await, 1, E::UnauthorizedBot);

    let redeemer = h.redeemer(&mint, treasury_tokens);
    let pay = tix::pay_token_authorized(h.cluster, &redeemer, user.pubkey(), info, DEPOSIT + 1);
    assert_program_error(h.as_bot(&pay).await, 1, E::InsufficientFunds);
    let lock = tix::lock_token_authorized(h.cluster, &redeemer, user.pubkey(), info, DEPOSIT + 1);
    assert_program_error(h.as_bot(&lock).await, 1, E::InsufficientFunds);
    h.set_time(info.deadline + 1).await;
    let lock = tix::lock_token_authorized(h.cluster, &redeemer, user.pubkey(), info, 1);
    assert_program_error(h.as_bot(&lock).await, 1, E::AuthorizationExpired);
}

#[tokio::test]
async fn lock_then_settle_pays_part_and_frees_the_rest() {
    let mut h = Harness::new().await;
    let (mint, treasury_tokens, user) = funded(&mut h, TokenProgram::Token2022).await;
    let info = h.authorize_in(&user, Asset::Token(mint.address), 400).await;
    let redeemer = h.redeemer(&mint, treasury_tokens);
    let lock = tix::lock_token_authorized(h.cluster, &redeemer, user.pubkey(), info, 300);
    assert_program_error(
        h.as_bot(&tix::lock_token_authorized(
            h.cluster,
            &redeemer,
            user.pubkey(),
            info,
            401,
        ))
        .await,
        1,
        E::AmountExceedsSignedMax,
    );
    let events = h.as_bot(&lock).await.unwrap();
    assert_eq!(
        events,
        vec![ProgramEvent::TokenLocked(TokenLocked {
            namespace_id: 0,
            user: user.pubkey(),
            mint: mint.address,
            nonce: info.nonce,
            amount: 300,
            max_amount: 400,
            expires_at: info.deadline,
            extra_data: [7; 32],
            locked_amount: 300,
        })]
    );
    let balance = h
        .token_balance(&user.pubkey(), &mint.address)
        .await
        .unwrap();
    assert_eq!(balance.locked_amount, 300);
    assert_eq!(h.vault_tokens(&user.pubkey(), &mint.address).await, DEPOSIT);

    let bot = h.bot.pubkey();
    let settle = |amount| tix::settle_token(&redeemer, user.pubkey(), info.nonce, bot, amount);
    assert_program_error(h.as_bot(&[settle(301)]).await, 0, E::SettleExceedsLock);
    let events = h.as_bot(&[settle(120)]).await.unwrap();
    assert_eq!(
        events,
        vec![ProgramEvent::TokenSettled(TokenSettled {
            namespace_id: 0,
            user: user.pubkey(),
            mint: mint.address,
            nonce: info.nonce,
            amount: 120,
            released: 180,
            locked_amount: 0,
            vault_balance: DEPOSIT - 120,
        })]
    );
    assert_eq!(h.tokens(&treasury_tokens).await, 120);
    assert!(h.token_lock(&user.pubkey(), info.nonce).await.is_none());
    assert_eq!(
        h.token_balance(&user.pubkey(), &mint.address)
            .await
            .unwrap()
            .locked_amount,
        0
    );
}

#[tokio::test]
async fn settle_token_refuses_another_mint_another_namespace_and_an_expired_lock() {
    let mut h = Harness::new().await;
    let (mint, treasury_tokens, user) = funded(&mut h, TokenProgram::Classic).await;
    let info = h.authorize_in(&user, Asset::Token(mint.address), 100).await;
    let redeemer = h.redeemer(&mint, treasury_tokens);
    h.as_bot(&tix::lock_token_authorized(
        h.cluster,
        &redeemer,
        user.pubkey(),
        info,
        100,
    ))
    .await
    .unwrap();
    let bot = h.bot.pubkey();

    let other = h.create_mint(TokenProgram::Classic, None).await;
    let mut wrong_mint = tix::settle_token(&redeemer, user.pubkey(), info.nonce, bot, 50);
    // accounts: bot, namespace, user, token_balance, vault, mint
    wrong_mint.accounts[5].pubkey = other.address;
    assert_program_error(h.as_bot(&[wrong_mint]).await, 0, E::WrongMint);

    let other_bot = Keypair::new();
    h.airdrop(&other_bot.pubkey(), SOL).await;
    let other_namespace = h.another_namespace(&other_bot, Pubkey::new_unique()).await;
    let elsewhere = tix::TokenRedeemer {
        bot: other_bot.pubkey(),
        namespace_id: other_namespace,
        ..redeemer
    };
    let settle = tix::settle_token(&elsewhere, user.pubkey(), info.nonce, bot, 50);
    assert_program_error(
        h.send(&[settle], &[&other_bot]).await,
        0,
        E::NamespaceMismatch,
    );

    h.set_time(info.deadline + 1).await;
    let settle = tix::settle_token(&redeemer, user.pubkey(), info.nonce, bot, 50);
    assert_program_error(h.as_bot(&[settle]).await, 0, E::LockExpired);
    assert_eq!(h.tokens(&treasury_tokens).await, 0);
}

#[tokio::test]
async fn the_user_releases_an_unsettled_token_lock_after_its_deadline() {
    let mut h = Harness::new().await;
    let (mint, treasury_tokens, user) = funded(&mut h, TokenProgram::Classic).await;
    let info = h.authorize_in(&user, Asset::Token(mint.address), 100).await;
    let redeemer = h.redeemer(&mint, treasury_tokens);
    h.as_bot(&tix::lock_token_authorized(
        h.cluster,
        &redeemer,
        user.pubkey(),
        info,
        100,
    ))
    .await
    .unwrap();
    let bot = h.bot.pubkey();
    let release = tix::release_token(user.pubkey(), mint.address, info.nonce, bot);
    assert_program_error(
        h.send(std::slice::from_ref(&release), &[&user.keypair])
            .await,
        0,
        E::LockNotExpired,
    );
    h.set_time(info.deadline + 1).await;
    let events = h.send(&[release], &[&user.keypair]).await.unwrap();
    assert_eq!(
        events,
        vec![ProgramEvent::TokenReleased(TokenReleased {
            namespace_id: 0,
            user: user.pubkey(),
            mint: mint.address,
            nonce: info.nonce,
            amount: 100,
            locked_amount: 0,
        })]
    );
    let own = h.token_account(&mint, &user.pubkey()).await;
    let withdraw =
        tix::withdraw_token(user.pubkey(), own, mint.address, mint.program.id(), DEPOSIT);
    h.send(&[withdraw], &[&user.keypair]).await.unwrap();
    assert_eq!(h.tokens(&own).await, DEPOSIT);
}

#[tokio::test]
async fn sol_and_token_authorisations_draw_on_one_nonce() {
    let mut h = Harness::new().await;
    let (mint, treasury_tokens, user) = funded(&mut h, TokenProgram::Classic).await;
    let deposit = balance_payment::sdk::instructions::deposit(user.pubkey(), user.pubkey(), SOL);
    h.send(&[deposit], &[&user.keypair]).await.unwrap();

    let sol = h.authorize(&user, 1_000).await;
    let tokens = h.authorize_in(&user, Asset::Token(mint.address), 100).await;
    assert_eq!(sol.nonce, tokens.nonce);
    h.pay(&user.pubkey(), sol, 1_000).await.unwrap();
    let redeemer = h.redeemer(&mint, treasury_tokens);
    let pay = tix::pay_token_authorized(h.cluster, &redeemer, user.pubkey(), tokens, 100);
    assert_program_error(h.as_bot(&pay).await, 1, E::NonceMismatch);
    assert_eq!(h.user_account(&user.pubkey()).await.nonce, sol.nonce + 1);
}
