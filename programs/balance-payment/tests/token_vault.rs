//! The token escrow's listing and vault instructions: `accept_mint`, `delist_mint`,
//! `open_token_vault`, `deposit_token` and `withdraw_token`, on SPL Token and Token-2022.
mod common;

use anchor_lang::error::ErrorCode as Anchor;
use balance_payment::{
    errors::BalancePaymentError as E,
    events::{MintAccepted, TokenDeposited, TokenVaultOpened, TokenWithdrawn},
    sdk::{events::ProgramEvent, pda, token_instructions as tix},
};
use common::*;
use solana_sdk::signature::{Keypair, Signer};

const PROGRAMS: [TokenProgram; 2] = [TokenProgram::Classic, TokenProgram::Token2022];

#[tokio::test]
async fn a_namespace_accepts_classic_and_token_2022_mints() {
    let mut h = Harness::new().await;
    for program in PROGRAMS {
        let mint = h.create_mint(program, None).await;
        let authority = h.authority.insecure_clone();
        let events = h.accept_mint(&authority, 0, &mint.address).await.unwrap();
        assert_eq!(
            events,
            vec![ProgramEvent::MintAccepted(MintAccepted {
                namespace_id: 0,
                mint: mint.address,
                token_program: program.id(),
                decimals: DECIMALS,
            })]
        );
        let listing = h.listing(0, &mint.address).await.expect("listing");
        assert_eq!(
            (listing.mint, listing.token_program, listing.decimals),
            (mint.address, program.id(), DECIMALS)
        );
    }
}

#[tokio::test]
async fn mints_with_a_fee_a_hook_or_a_permanent_delegate_are_refused_by_name() {
    let mut h = Harness::new().await;
    let authority = h.authority.insecure_clone();
    for (refused, error) in [
        (Refused::TransferFee, E::MintHasTransferFee),
        (Refused::TransferHook, E::MintHasTransferHook),
        (Refused::PermanentDelegate, E::MintHasPermanentDelegate),
    ] {
        let mint = h.create_mint(TokenProgram::Token2022, Some(refused)).await;
        assert_program_error(h.accept_mint(&authority, 0, &mint.address).await, 0, error);
        assert!(h.listing(0, &mint.address).await.is_none());
    }
}

#[tokio::test]
async fn only_the_namespace_authority_lists_and_delists() {
    let mut h = Harness::new().await;
    let mint = h.create_mint(TokenProgram::Classic, None).await;
    let stranger = Keypair::new();
    h.airdrop(&stranger.pubkey(), SOL).await;
    assert_program_error(
        h.accept_mint(&stranger, 0, &mint.address).await,
        0,
        E::UnauthorizedAuthority,
    );
    let authority = h.authority.insecure_clone();
    h.accept_mint(&authority, 0, &mint.address).await.unwrap();
    let delist = tix::delist_mint(stranger.pubkey(), 0, mint.address);
    assert_program_error(
        h.send(&[delist], &[&stranger]).await,
        0,
        E::UnauthorizedAuthority,
    );
    let delist = tix::delist_mint(authority.pubkey(), 0, mint.address);
    h.send(&[delist], &[&authority]).await.unwrap();
    assert!(h.listing(0, &mint.address).await.is_none());
}

#[tokio::test]
async fn a_vault_opens_only_for_a_mint_some_namespace_accepts() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(0).await;
    let unlisted = h.create_mint(TokenProgram::Classic, None).await;
    let open = |mint: &TestMint| {
        tix::open_token_vault(
            user.pubkey(),
            user.pubkey(),
            mint.address,
            0,
            mint.program.id(),
        )
    };
    assert_error(
        h.send(&[open(&unlisted)], &[&user.keypair]).await,
        0,
        Anchor::AccountNotInitialized,
    );
    // Another mint's listing does not stand in for this one's.
    let (listed, _) = h.accepted_mint(TokenProgram::Classic).await;
    let mut borrowed = open(&unlisted);
    borrowed.accounts[4].pubkey = pda::accepted_mint(0, &listed.address);
    assert_error(
        h.send(&[borrowed], &[&user.keypair]).await,
        0,
        Anchor::ConstraintSeeds,
    );

    let events = h.send(&[open(&listed)], &[&user.keypair]).await.unwrap();
    let vault = pda::token_vault(&user.pubkey(), &listed.address);
    assert_eq!(
        events,
        vec![ProgramEvent::TokenVaultOpened(TokenVaultOpened {
            user: user.pubkey(),
            mint: listed.address,
            vault,
        })]
    );
    let balance = h
        .token_balance(&user.pubkey(), &listed.address)
        .await
        .expect("balance account");
    assert_eq!((balance.owner, balance.locked_amount), (user.pubkey(), 0));
}

#[tokio::test]
async fn deposits_and_withdrawals_move_tokens_on_both_token_programs() {
    let mut h = Harness::new().await;
    for program in PROGRAMS {
        let (mint, _) = h.accepted_mint(program).await;
        let (user, own) = h.user_with_tokens(&mint, 1_000).await;
        assert_eq!(h.vault_tokens(&user.pubkey(), &mint.address).await, 1_000);
        assert_eq!(h.tokens(&own).await, 0);

        // Anyone may top a user up.
        let friend = Keypair::new();
        h.airdrop(&friend.pubkey(), SOL).await;
        let friends = h.token_account(&mint, &friend.pubkey()).await;
        h.mint_to(&mint, &friends, 50).await;
        let deposit = tix::deposit_token(
            friend.pubkey(),
            friends,
            user.pubkey(),
            mint.address,
            program.id(),
            50,
        );
        let events = h.send(&[deposit], &[&friend]).await.unwrap();
        assert_eq!(
            events,
            vec![ProgramEvent::TokenDeposited(TokenDeposited {
                user: user.pubkey(),
                mint: mint.address,
                depositor: friend.pubkey(),
                amount: 50,
                vault_balance: 1_050,
            })]
        );

        let withdraw = tix::withdraw_token(user.pubkey(), own, mint.address, program.id(), 1_050);
        let events = h.send(&[withdraw], &[&user.keypair]).await.unwrap();
        assert_eq!(
            events,
            vec![ProgramEvent::TokenWithdrawn(TokenWithdrawn {
                user: user.pubkey(),
                mint: mint.address,
                amount: 1_050,
                vault_balance: 0,
            })]
        );
        assert_eq!(h.tokens(&own).await, 1_050);
        assert_eq!(h.vault_tokens(&user.pubkey(), &mint.address).await, 0);
    }
}

#[tokio::test]
async fn token_accounts_of_another_mint_are_refused() {
    let mut h = Harness::new().await;
    let (mint, _) = h.accepted_mint(TokenProgram::Classic).await;
    let other = h.create_mint(TokenProgram::Classic, None).await;
    let (user, _) = h.user_with_tokens(&mint, 100).await;
    let others = h.token_account(&other, &user.pubkey()).await;
    h.mint_to(&other, &others, 100).await;
    let program = mint.program.id();

    let deposit = tix::deposit_token(
        user.pubkey(),
        others,
        user.pubkey(),
        mint.address,
        program,
        10,
    );
    assert_program_error(h.send(&[deposit], &[&user.keypair]).await, 0, E::WrongMint);
    let withdraw = tix::withdraw_token(user.pubkey(), others, mint.address, program, 10);
    assert_program_error(h.send(&[withdraw], &[&user.keypair]).await, 0, E::WrongMint);
    assert_eq!(h.vault_tokens(&user.pubkey(), &mint.address).await, 100);
}

#[tokio::test]
async fn nobody_withdraws_from_another_users_vault() {
    let mut h = Harness::new().await;
    let (mint, _) = h.accepted_mint(TokenProgram::Token2022).await;
    let (victim, _) = h.user_with_tokens(&mint, 100).await;
    let (thief, thiefs) = h.user_with_tokens(&mint, 1).await;
    let mut withdraw =
        tix::withdraw_token(thief.pubkey(), thiefs, mint.address, mint.program.id(), 100);
    withdraw.accounts[2].pubkey = pda::token_vault(&victim.pubkey(), &mint.address);
    assert_error(
        h.send(std::slice::from_ref(&withdraw), &[&thief.keypair])
            .await,
        0,
        Anchor::ConstraintSeeds,
    );
    // Naming the victim's balance account too: its address is derived from the signer.
    withdraw.accounts[1].pubkey = pda::token_balance(&victim.pubkey(), &mint.address);
    assert_error(
        h.send(&[withdraw], &[&thief.keypair]).await,
        0,
        Anchor::ConstraintSeeds,
    );
    assert_eq!(h.vault_tokens(&victim.pubkey(), &mint.address).await, 100);
}

#[tokio::test]
async fn withdrawals_leave_locked_tokens_and_stop_at_the_balance() {
    let mut h = Harness::new().await;
    let (mint, _) = h.accepted_mint(TokenProgram::Classic).await;
    let (user, own) = h.user_with_tokens(&mint, 100).await;
    let info = h
        .authorize_in(
            &user,
            balance_payment::authorization::Asset::Token(mint.address),
            60,
        )
        .await;
    let redeemer = h.redeemer(&mint, own);
    let lock = tix::lock_token_authorized(h.cluster, &redeemer, user.pubkey(), info, 60);
    h.as_bot(&lock).await.unwrap();

    let program = mint.program.id();
    let withdraw = |amount| tix::withdraw_token(user.pubkey(), own, mint.address, program, amount);
    assert_program_error(
        h.send(&[withdraw(41)], &[&user.keypair]).await,
        0,
        E::FundsLocked,
    );
    assert_program_error(
        h.send(&[withdraw(101)], &[&user.keypair]).await,
        0,
        E::InsufficientFunds,
    );
    assert_program_error(
        h.send(&[withdraw(0)], &[&user.keypair]).await,
        0,
        E::ZeroAmount,
    );
    h.send(&[withdraw(40)], &[&user.keypair]).await.unwrap();
    assert_eq!(h.vault_tokens(&user.pubkey(), &mint.address).await, 60);
}

#[tokio::test]
async fn deposits_refuse_zero_and_a_source_the_depositor_does_not_own() {
    let mut h = Harness::new().await;
    let (mint, _) = h.accepted_mint(TokenProgram::Classic).await;
    let (user, _) = h.user_with_tokens(&mint, 100).await;
    let (_, victims) = h.user_with_tokens(&mint, 1).await;
    h.mint_to(&mint, &victims, 10).await;
    let program = mint.program.id();
    let zero = tix::deposit_token(
        user.pubkey(),
        victims,
        user.pubkey(),
        mint.address,
        program,
        0,
    );
    assert_program_error(h.send(&[zero], &[&user.keypair]).await, 0, E::ZeroAmount);
    // The token program refuses a transfer its owner did not sign (SPL Token's OwnerMismatch).
    let steal = tix::deposit_token(
        user.pubkey(),
        victims,
        user.pubkey(),
        mint.address,
        program,
        10,
    );
    assert_error(h.send(&[steal], &[&user.keypair]).await, 0, 4u32);
    assert_eq!(h.tokens(&victims).await, 10);
}
