//! One signature, one cluster: the program id is the same on every cluster, so the signed
//! message names the cluster (its genesis hash) and `pay` / `lock` compare it with the tag the
//! deployment was initialised with, read from `Global` at its fixed address.
mod common;

use balance_payment::{
    errors::BalancePaymentError as E,
    sdk::{authorization::verify_instruction, instructions as ix, pda},
    state::Global,
};
use common::*;
use solana_sdk::{
    instruction::Instruction,
    pubkey::Pubkey,
    signature::{Keypair, Signer},
};

const DEPOSIT: u64 = 2 * SOL;
/// Two clusters' genesis hashes (stand-ins: devnet's and mainnet's would do the same).
const CLUSTER_A: [u8; 32] = [0xa1; 32];
const CLUSTER_B: [u8; 32] = [0xb2; 32];

/// The same program on two clusters, and one wallet registered with a deposit on both.
async fn two_deployments() -> (Harness, Harness, Wallet) {
    let mut a = Harness::with_cluster(CLUSTER_A).await;
    let mut b = Harness::with_cluster(CLUSTER_B).await;
    let user = Wallet::new();
    a.register_with_deposit(&user, DEPOSIT).await;
    b.register_with_deposit(&user, DEPOSIT).await;
    (a, b, user)
}

#[tokio::test]
async fn pay_refuses_a_signature_made_for_another_cluster() {
    let (mut a, mut b, user) = two_deployments().await;
    // Signed for cluster A: namespace 0, nonce 0 exist on both deployments.
    let terms = a.terms(&user.pubkey(), 5_000).await;
    let info = balance_payment::sdk::authorization::sign_authorization(&user.signing_key, &terms);
    let before = b.snapshot(&user.pubkey()).await;

    // B's bot carries the exact message the user signed: the program rebuilds it with B's tag.
    let bot = b.bot.insecure_clone();
    let pay = ix::pay(bot.pubkey(), 0, b.treasury, user.pubkey(), info, 5_000);
    let result = b
        .send(&[verify_instruction(&terms, &info), pay], &[&bot])
        .await;
    assert_program_error(result, 1, E::SignedMessageMismatch);
    // With B's message instead, the signature does not verify at all.
    assert_error(
        b.pay(&user.pubkey(), info, 5_000).await,
        0,
        INVALID_SIGNATURE,
    );
    assert_eq!(b.snapshot(&user.pubkey()).await, before);

    // Where it was meant to go, the same signature pays.
    a.pay(&user.pubkey(), info, 5_000).await.unwrap();
    assert_eq!(a.vault_balance(&user.pubkey()).await, DEPOSIT - 5_000);
}

#[tokio::test]
async fn lock_refuses_a_signature_made_for_another_cluster() {
    let (mut a, mut b, user) = two_deployments().await;
    let terms = a.terms(&user.pubkey(), 5_000).await;
    let info = balance_payment::sdk::authorization::sign_authorization(&user.signing_key, &terms);
    let before = b.snapshot(&user.pubkey()).await;

    let bot = b.bot.insecure_clone();
    let lock = ix::lock(bot.pubkey(), 0, user.pubkey(), info, 5_000);
    let result = b
        .send(&[verify_instruction(&terms, &info), lock], &[&bot])
        .await;
    assert_program_error(result, 1, E::SignedMessageMismatch);
    assert_eq!(b.snapshot(&user.pubkey()).await, before);
    assert!(b.lock(&user.pubkey(), 0).await.is_none());

    a.lock_funds(&user.pubkey(), info, 5_000).await.unwrap();
    assert_eq!(a.user_account(&user.pubkey()).await.locked_amount, 5_000);
}

/// Replaces the `global` account of a `pay` or `lock` instruction with `fake`.
fn with_global(mut instruction: Instruction, fake: Pubkey) -> Instruction {
    let at = instruction
        .accounts
        .iter()
        .position(|meta| meta.pubkey == pda::global())
        .expect("the instruction names Global");
    instruction.accounts[at].pubkey = fake;
    instruction
}

/// A bot that could pass any `Global` would forge one naming the cluster the signature was
/// made for. `Global` is read only at its seeds' address, so a forged copy is refused, and so
/// is any other account of the program.
#[tokio::test]
async fn pay_and_lock_read_global_only_at_its_address() {
    let (_, mut b, user) = two_deployments().await;
    let mut a_terms = b.terms(&user.pubkey(), 5_000).await;
    a_terms.cluster = CLUSTER_A;
    let info = balance_payment::sdk::authorization::sign_authorization(&user.signing_key, &a_terms);
    let forged = Pubkey::new_unique();
    let genuine = b.global().await;
    b.forge_global(
        &forged,
        &Global {
            cluster: CLUSTER_A,
            ..genuine
        },
    );
    let bot: Keypair = b.bot.insecure_clone();
    let before = b.snapshot(&user.pubkey()).await;
    let verify = verify_instruction(&a_terms, &info);

    let pay = ix::pay(bot.pubkey(), 0, b.treasury, user.pubkey(), info, 5_000);
    let lock = ix::lock(bot.pubkey(), 0, user.pubkey(), info, 5_000);
    for redeem in [pay, lock] {
        let result = b
            .send(
                &[verify.clone(), with_global(redeem.clone(), forged)],
                &[&bot],
            )
            .await;
        assert_error(result, 1, anchor_lang::error::ErrorCode::ConstraintSeeds);
        let namespace = pda::namespace(0);
        let result = b
            .send(
                &[verify.clone(), with_global(redeem.clone(), namespace)],
                &[&bot],
            )
            .await;
        assert_error(
            result,
            1,
            anchor_lang::error::ErrorCode::AccountDiscriminatorMismatch,
        );
        let missing = Pubkey::new_unique();
        let result = b
            .send(&[verify.clone(), with_global(redeem, missing)], &[&bot])
            .await;
        assert_error(
            result,
            1,
            anchor_lang::error::ErrorCode::AccountNotInitialized,
        );
    }
    assert_eq!(b.snapshot(&user.pubkey()).await, before);
    assert!(b.lock(&user.pubkey(), 0).await.is_none());
}
