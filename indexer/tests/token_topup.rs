//! Buying credit with a token (the sandbox's USDC stand-in) on the local validator: the wallet
//! signs an authorisation that names the mint, the controller redeems it with `pay_token`
//! from the wallet's token vault, the chain watcher records the `TokenPaid` with its mint, and
//! the credit is what the payment is worth at the operator's USDC rate. Then what must be
//! refused before it costs a transaction: a mint the gateway does not price, a signature over
//! other terms than the request claims, more than the vault holds.
use balance_payment::sdk::spl;
use indexer::{
    chain::Chain,
    controller::Outcome,
    ledger::{testing::TempDatabase, PaidIn},
    sandbox::{Sandbox, SandboxConfig, SOL, TOKENS_PER_USDC, USDC},
    wire::RequestPayload,
};
use nostr_sdk::prelude::Event;
use solana_sdk::{
    pubkey::Pubkey,
    signature::{Keypair, Signer},
};
use std::time::Duration;

/// 2.5 USDC: 25,000 ledger tokens at the sandbox's 10,000 per USDC.
const PAY: u64 = 5 * USDC / 2;
const WORTH: i64 = (PAY * TOKENS_PER_USDC / USDC) as i64;

async fn sandbox(db: &TempDatabase) -> Sandbox {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    Sandbox::start(SandboxConfig::new(&db.url))
        .await
        .expect("sandbox starts")
}

/// The wallet's token authorisation for its next nonce, as the event a wallet publishes.
async fn usdc_request(s: &Sandbox, user: &Keypair, units: u64) -> Event {
    let payload = usdc_payload(s, user, units).await;
    s.request_event(&payload).unwrap()
}

async fn usdc_payload(s: &Sandbox, user: &Keypair, units: u64) -> RequestPayload {
    let nonce = s.next_nonce(&user.pubkey()).await.unwrap();
    s.usdc_authorization_payload(user, nonce, units).unwrap()
}

/// Base units of the USDC stand-in in the token account `account`.
async fn usdc_in(s: &Sandbox, account: &Pubkey) -> u64 {
    s.chain
        .account_data(account)
        .await
        .unwrap()
        .and_then(|data| spl::decode_token_amount(&data))
        .unwrap_or(0)
}

fn treasury_usdc(s: &Sandbox) -> Pubkey {
    spl::associated_token_address(&s.treasury, &s.usdc, &spl::TOKEN_PROGRAM_ID)
}

async fn wait_for_credited(s: &Sandbox, user: &str, expected: i64) {
    for _ in 0..200 {
        if s.ledger.balance(user).await.unwrap().credited == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "credit of {user} never reached {expected}: {:?}",
        s.ledger.balance(user).await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_usdc_top_up_is_paid_from_the_token_vault_and_credited_at_the_usdc_rate() {
    let db = TempDatabase::sqlite();
    let mut s = sandbox(&db).await;
    let user = s.usdc_user(4 * USDC).await.unwrap();
    let wallet = user.pubkey().to_string();
    let treasury_before = usdc_in(&s, &treasury_usdc(&s)).await;
    let sol_before = s.chain.lamports(&s.treasury).await.unwrap();

    let event = usdc_request(&s, &user, PAY).await;
    s.publish(&event).await.unwrap();
    wait_for_credited(&s, &wallet, WORTH).await;

    assert_eq!(
        usdc_in(&s, &treasury_usdc(&s)).await,
        treasury_before + PAY,
        "exactly the signed amount reached the treasury's USDC account"
    );
    let vault = balance_payment::sdk::pda::token_vault(&user.pubkey(), &s.usdc);
    assert_eq!(usdc_in(&s, &vault).await, 4 * USDC - PAY);
    assert_eq!(
        s.chain.lamports(&s.treasury).await.unwrap(),
        sol_before,
        "no SOL moved"
    );
    assert_eq!(
        s.ledger.paid_in(&wallet).await.unwrap(),
        vec![PaidIn {
            mint: Some(s.usdc.to_string()),
            amount: PAY,
            tokens: WORTH,
        }],
        "the payment is kept with its mint"
    );
    assert_eq!(s.next_nonce(&user.pubkey()).await.unwrap(), 1);
    let audit = s.ledger.audit().await.unwrap();
    assert!(audit.is_clean(), "{audit:?}");
    s.stop().await;
    db.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_requests_the_gateway_must_not_pay_are_refused_before_any_transaction() {
    let db = TempDatabase::sqlite();
    let mut s = sandbox(&db).await;
    s.stop_services().await;
    let controller = s.controller();
    let user = s.usdc_user(4 * USDC).await.unwrap();
    let treasury_before = usdc_in(&s, &treasury_usdc(&s)).await;
    let refused = |outcome: Outcome, expected: &str| match outcome {
        Outcome::Ignored(reason) => assert!(reason.contains(expected), "{reason}"),
        other => panic!("expected a refusal ({expected}), got {other:?}"),
    };

    // A mint the operator does not price.
    let mut other_mint = usdc_payload(&s, &user, PAY).await;
    other_mint.mint = Some(Pubkey::new_unique().to_string());
    let event = s.request_event(&other_mint).unwrap();
    refused(
        controller.handle(&event).await.unwrap(),
        "is not taken by this gateway",
    );

    // A SOL authorisation relabelled as a USDC one, and the other way round: the signed
    // message names what it spends, so neither signature holds.
    let nonce = s.next_nonce(&user.pubkey()).await.unwrap();
    let mut sol_as_usdc = s.authorization_payload(&user, nonce, PAY).unwrap();
    sol_as_usdc.mint = Some(s.usdc.to_string());
    refused(
        controller
            .handle(&s.request_event(&sol_as_usdc).unwrap())
            .await
            .unwrap(),
        "signature does not match",
    );
    let mut usdc_as_sol = usdc_payload(&s, &user, PAY).await;
    usdc_as_sol.mint = None;
    refused(
        controller
            .handle(&s.request_event(&usdc_as_sol).unwrap())
            .await
            .unwrap(),
        "signature does not match",
    );

    // More than the vault holds: refused by the chain read, not by a failed transaction.
    let too_much = usdc_request(&s, &user, 4 * USDC + 1).await;
    refused(
        controller.handle(&too_much).await.unwrap(),
        "token vault holds 4000000 free base units",
    );

    // A wallet with no USDC vault at all.
    let sol_only = s.user(SOL).await.unwrap();
    let no_vault = usdc_request(&s, &sol_only, PAY).await;
    refused(
        controller.handle(&no_vault).await.unwrap(),
        "wallet has no vault for mint",
    );

    assert_eq!(usdc_in(&s, &treasury_usdc(&s)).await, treasury_before);
    assert_eq!(
        s.next_nonce(&user.pubkey()).await.unwrap(),
        0,
        "no nonce burnt"
    );

    // The wallet's real request still pays, exactly what it signed.
    let real = usdc_request(&s, &user, PAY).await;
    match controller.handle(&real).await.unwrap() {
        Outcome::Paid { tokens, .. } => assert_eq!(tokens, WORTH),
        other => panic!("the real request must be paid, got {other:?}"),
    }
    assert_eq!(usdc_in(&s, &treasury_usdc(&s)).await, treasury_before + PAY);
    s.restart_services().await.unwrap();
    wait_for_credited(&s, &user.pubkey().to_string(), WORTH).await;
    let audit = s.ledger.audit().await.unwrap();
    assert!(audit.is_clean(), "{audit:?}");
    s.stop().await;
    db.remove().await;
}

/// Bytes of a legacy transaction carrying `instructions`, paid and signed by `payer` alone.
fn transaction_size(
    instructions: &[solana_sdk::instruction::Instruction],
    payer: &Pubkey,
) -> usize {
    let message = solana_sdk::message::Message::new(instructions, Some(payer));
    let signatures = usize::from(message.header.num_required_signatures);
    // A compact-u16 count of signatures (one byte below 128), the signatures, the message.
    1 + 64 * signatures + message.serialize().len()
}

// The signed message grows with the numbers it spells out. Amounts and deadlines take any
// value; a nonce counts the wallet's authorisations and a namespace id the deployment's
// operators, so a billion of either is past any real use.
#[test]
fn a_token_redemption_fits_a_transaction_at_the_largest_numbers_it_can_carry() {
    use balance_payment::{
        authorization::{Asset, AuthorizationTerms},
        sdk::{authorization::sign_authorization, token_instructions as tix},
    };
    const LIMIT: usize = 1_232;
    let wallet = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let user = Pubkey::new_from_array(wallet.verifying_key().to_bytes());
    let (bot, mint) = (Pubkey::new_unique(), Pubkey::new_unique());
    let redeemer = tix::TokenRedeemer {
        bot,
        namespace_id: 999_999_999,
        mint,
        token_program: spl::TOKEN_2022_PROGRAM_ID,
        treasury_tokens: Pubkey::new_unique(),
    };
    let terms = AuthorizationTerms {
        program_id: balance_payment::ID,
        cluster: [9; 32],
        namespace_id: 999_999_999,
        user,
        nonce: 999_999_999,
        max_amount: u64::MAX,
        asset: Asset::Token(mint),
        deadline: i64::MAX,
        extra_data: [0xff; 32],
    };
    let info = sign_authorization(&wallet, &terms);
    let pay = tix::pay_token_authorized([9; 32], &redeemer, user, info, u64::MAX);
    let lock = tix::lock_token_authorized([9; 32], &redeemer, user, info, u64::MAX);
    let (pay, lock) = (transaction_size(&pay, &bot), transaction_size(&lock, &bot));
    assert!(pay <= LIMIT, "pay_token: {pay} bytes");
    assert!(lock <= LIMIT, "lock_token: {lock} bytes");
    eprintln!("largest pay_token {pay} bytes, lock_token {lock} bytes (limit {LIMIT})");
}
