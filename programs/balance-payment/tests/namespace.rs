//! `initialize`, `create_namespace` and `update_namespace`: operators and their keys.
mod common;

use balance_payment::{
    errors::BalancePaymentError as E,
    events::{NamespaceCreated, NamespaceUpdated},
    sdk::{events::ProgramEvent, instructions as ix},
    CreateNamespaceArgs, UpdateNamespaceArgs,
};
use common::*;
use solana_sdk::{
    pubkey::Pubkey,
    signature::{Keypair, Signer},
};

#[tokio::test]
async fn initialize_records_the_cluster_tag() {
    let mut h = Harness::new().await;
    let genesis = h.ctx.genesis_config().hash().to_bytes();
    assert_eq!(h.global().await.cluster, genesis);
    let mut other = Harness::with_cluster([9; 32]).await;
    assert_eq!(other.global().await.cluster, [9; 32]);
}

/// A second `initialize` can neither reset the namespace counter nor move the deployment to
/// another cluster.
#[tokio::test]
async fn initialize_runs_once() {
    let mut h = Harness::new().await;
    let payer = h.ctx.payer.pubkey();
    let before = h.global().await;
    let result = h.send(&[ix::initialize(payer, [9; 32])], &[]).await;
    assert_instruction_error(result, 0, ACCOUNT_EXISTS);
    assert_eq!(h.global().await, before);
    assert_eq!(h.global_namespace_count().await, 1);
}

#[tokio::test]
async fn create_namespace_takes_the_next_id_and_emits_namespace_created() {
    let mut h = Harness::new().await;
    let authority = Keypair::new();
    h.airdrop(&authority.pubkey(), SOL).await;
    let (bot, treasury) = (Pubkey::new_unique(), Pubkey::new_unique());
    let args = CreateNamespaceArgs {
        name: "x".repeat(50),
        bot,
        treasury,
    };
    let events = h
        .send(
            &[ix::create_namespace(authority.pubkey(), 1, args)],
            &[&authority],
        )
        .await
        .unwrap();
    let namespace = h.namespace(1).await;
    assert_eq!(
        (
            namespace.id,
            namespace.authority,
            namespace.bot,
            namespace.treasury
        ),
        (1, authority.pubkey(), bot, treasury)
    );
    assert_eq!(namespace.created_at, namespace.updated_at);
    assert_eq!(h.global_namespace_count().await, 2);
    assert_eq!(
        events,
        vec![ProgramEvent::NamespaceCreated(NamespaceCreated {
            namespace_id: 1,
            name: "x".repeat(50),
            authority: authority.pubkey(),
            bot,
            treasury,
        })]
    );
}

#[tokio::test]
async fn create_namespace_rejects_a_stale_id_and_a_long_name() {
    let mut h = Harness::new().await;
    let authority = Keypair::new();
    h.airdrop(&authority.pubkey(), SOL).await;
    let args = |name: String| CreateNamespaceArgs {
        name,
        bot: Pubkey::new_unique(),
        treasury: Pubkey::new_unique(),
    };
    let result = h
        .send(
            &[ix::create_namespace(
                authority.pubkey(),
                1,
                args("y".repeat(51)),
            )],
            &[&authority],
        )
        .await;
    assert_program_error(result, 0, E::NameTooLong);
    let result = h
        .send(
            &[ix::create_namespace(
                authority.pubkey(),
                0,
                args("taken".into()),
            )],
            &[&authority],
        )
        .await;
    assert_error(result, 0, anchor_lang::error::ErrorCode::ConstraintSeeds);
    assert_eq!(h.global_namespace_count().await, 1);
}

#[tokio::test]
async fn update_namespace_rotates_keys_and_emits_namespace_updated() {
    let mut h = Harness::new().await;
    let authority = h.authority.insecure_clone();
    let (bot, treasury, new_authority) = (
        Pubkey::new_unique(),
        Pubkey::new_unique(),
        Pubkey::new_unique(),
    );
    let args = UpdateNamespaceArgs {
        name: Some("renamed".into()),
        authority: Some(new_authority),
        bot: Some(bot),
        treasury: Some(treasury),
    };
    let events = h
        .send(
            &[ix::update_namespace(authority.pubkey(), 0, args)],
            &[&authority],
        )
        .await
        .unwrap();
    let namespace = h.namespace(0).await;
    assert_eq!(
        (
            namespace.name.as_str(),
            namespace.authority,
            namespace.bot,
            namespace.treasury
        ),
        ("renamed", new_authority, bot, treasury)
    );
    assert_eq!(
        events,
        vec![ProgramEvent::NamespaceUpdated(NamespaceUpdated {
            namespace_id: 0,
            name: "renamed".into(),
            authority: new_authority,
            bot,
            treasury,
        })]
    );
    // The old authority has lost control.
    let result = h
        .send(
            &[ix::update_namespace(
                authority.pubkey(),
                0,
                UpdateNamespaceArgs::default(),
            )],
            &[&authority],
        )
        .await;
    assert_program_error(result, 0, E::UnauthorizedAuthority);
}

#[tokio::test]
async fn update_namespace_rejects_non_authority_and_long_names() {
    let mut h = Harness::new().await;
    let before = h.namespace(0).await;
    let bot = h.bot.insecure_clone();
    let hijack = UpdateNamespaceArgs {
        treasury: Some(Pubkey::new_unique()),
        ..Default::default()
    };
    let result = h
        .send(&[ix::update_namespace(bot.pubkey(), 0, hijack)], &[&bot])
        .await;
    assert_program_error(result, 0, E::UnauthorizedAuthority);

    let authority = h.authority.insecure_clone();
    let long = UpdateNamespaceArgs {
        name: Some("z".repeat(51)),
        ..Default::default()
    };
    let result = h
        .send(
            &[ix::update_namespace(authority.pubkey(), 0, long)],
            &[&authority],
        )
        .await;
    assert_program_error(result, 0, E::NameTooLong);
    assert_eq!(h.namespace(0).await, before);
}

#[tokio::test]
async fn renaming_a_namespace_keeps_outstanding_authorisations_valid() {
    let mut h = Harness::new().await;
    let user = h.user_with_deposit(SOL).await;
    let info = h.authorize(&user, 1_000).await;
    let authority = h.authority.insecure_clone();
    let rename = UpdateNamespaceArgs {
        name: Some("new name".into()),
        ..Default::default()
    };
    h.send(
        &[ix::update_namespace(authority.pubkey(), 0, rename)],
        &[&authority],
    )
    .await
    .unwrap();
    h.pay(&user.pubkey(), info, 1_000).await.unwrap();
}
