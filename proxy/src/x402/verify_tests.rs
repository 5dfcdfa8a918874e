//! Each rule of [`super::check`], broken once, on a transaction built as the official clients
//! build theirs.
use super::*;
use balance_payment::sdk::spl::{self, spl_token};
use solana_sdk::{
    instruction::{AccountMeta, Instruction},
    message::v0,
    signature::{Keypair, Signature},
    signer::Signer,
};

struct Setup {
    fee_payer: Keypair,
    payer: Keypair,
    expected: Expected,
    blockhash: Hash,
}

fn setup() -> Setup {
    let fee_payer = Keypair::new();
    let mint = Pubkey::new_unique();
    let treasury = Pubkey::new_unique();
    let token_program = spl::TOKEN_PROGRAM_ID;
    Setup {
        expected: Expected {
            fee_payer: fee_payer.pubkey(),
            mint,
            token_program,
            decimals: 6,
            destination: spl::associated_token_address(&treasury, &mint, &token_program),
            amount: 1_500,
        },
        fee_payer,
        payer: Keypair::new(),
        blockhash: Hash::new_unique(),
    }
}

/// The four instructions `@x402/svm` and Python `x402` send.
fn instructions(setup: &Setup, amount: u64) -> Vec<Instruction> {
    let expected = &setup.expected;
    let source = spl::associated_token_address(
        &setup.payer.pubkey(),
        &expected.mint,
        &expected.token_program,
    );
    vec![
        Instruction::new_with_bytes(
            COMPUTE_BUDGET,
            &[&[2u8][..], &20_000u32.to_le_bytes()].concat(),
            vec![],
        ),
        Instruction::new_with_bytes(
            COMPUTE_BUDGET,
            &[&[3u8][..], &1u64.to_le_bytes()].concat(),
            vec![],
        ),
        spl_token::instruction::transfer_checked(
            &expected.token_program,
            &source,
            &expected.mint,
            &expected.destination,
            &setup.payer.pubkey(),
            &[],
            amount,
            expected.decimals,
        )
        .unwrap(),
        Instruction::new_with_bytes(MEMO, b"0123456789abcdef", vec![]),
    ]
}

/// Compiled with `fee_payer` first and signed by the payer only, as a client leaves it.
fn signed(setup: &Setup, fee_payer: &Pubkey, instructions: &[Instruction]) -> VersionedTransaction {
    let message = VersionedMessage::V0(
        v0::Message::try_compile(fee_payer, instructions, &[], setup.blockhash).unwrap(),
    );
    let signers = usize::from(message.header().num_required_signatures);
    let mut signatures = vec![Signature::default(); signers];
    if let Some(position) = message
        .static_account_keys()
        .iter()
        .position(|key| *key == setup.payer.pubkey())
        .filter(|position| *position < signers)
    {
        signatures[position] = setup.payer.sign_message(&message.serialize());
    }
    VersionedTransaction {
        signatures,
        message,
    }
}

fn checked(setup: &Setup, instructions: &[Instruction]) -> Result<Transfer, Invalid> {
    let tx = signed(setup, &setup.fee_payer.pubkey(), instructions);
    check(&decode(&bincode::serialize(&tx).unwrap())?, &setup.expected)
}

#[test]
fn the_official_clients_payment_passes_and_names_its_payer() {
    let setup = setup();
    let transfer = checked(&setup, &instructions(&setup, 1_500)).unwrap();
    assert_eq!(
        transfer,
        Transfer {
            payer: setup.payer.pubkey(),
            source: spl::associated_token_address(
                &setup.payer.pubkey(),
                &setup.expected.mint,
                &setup.expected.token_program,
            ),
            amount: 1_500,
            blockhash: setup.blockhash,
        }
    );
    // Memos are optional.
    assert!(checked(&setup, &instructions(&setup, 1_500)[..3]).is_ok());
}

#[test]
fn a_payment_that_is_not_the_offer_is_refused_by_name() {
    let setup = setup();
    assert_eq!(
        checked(&setup, &instructions(&setup, 1_499)),
        Err(Invalid::Amount)
    );
    assert_eq!(
        checked(&setup, &instructions(&setup, 1_501)),
        Err(Invalid::Amount)
    );

    let mut to_self = instructions(&setup, 1_500);
    to_self[2].accounts[2].pubkey = to_self[2].accounts[0].pubkey;
    assert_eq!(checked(&setup, &to_self), Err(Invalid::Recipient));

    let mut other_mint = instructions(&setup, 1_500);
    other_mint[2].accounts[1].pubkey = Pubkey::new_unique();
    assert_eq!(checked(&setup, &other_mint), Err(Invalid::Mint));

    let mut other_decimals = instructions(&setup, 1_500);
    other_decimals[2].data[9] = 9;
    assert_eq!(checked(&setup, &other_decimals), Err(Invalid::Mint));

    let mut plain_transfer = instructions(&setup, 1_500);
    plain_transfer[2].data = [&[3u8][..], &1_500u64.to_le_bytes()].concat();
    assert_eq!(checked(&setup, &plain_transfer), Err(Invalid::NoTransfer));

    let mut other_program = instructions(&setup, 1_500);
    other_program[2].program_id = spl::TOKEN_2022_PROGRAM_ID;
    assert_eq!(checked(&setup, &other_program), Err(Invalid::NoTransfer));
}

#[test]
fn a_transaction_that_could_cost_the_fee_payer_more_than_its_fee_is_refused() {
    let setup = setup();
    // Another fee payer: the gateway would not be the one signing for the fee.
    let tx = signed(&setup, &Pubkey::new_unique(), &instructions(&setup, 1_500));
    assert_eq!(check(&tx, &setup.expected), Err(Invalid::FeePayer));

    // The fee payer named in an instruction (here a memo it would "sign").
    let mut naming = instructions(&setup, 1_500);
    naming[3]
        .accounts
        .push(AccountMeta::new_readonly(setup.fee_payer.pubkey(), true));
    assert_eq!(
        checked(&setup, &naming),
        Err(Invalid::FeePayerInInstruction)
    );

    // Any instruction but a memo after the transfer.
    let mut extra = instructions(&setup, 1_500);
    extra[3] = Instruction::new_with_bytes(spl::TOKEN_PROGRAM_ID, &[1], vec![]);
    assert_eq!(checked(&setup, &extra), Err(Invalid::UnknownInstruction));

    // A third signer.
    let mut third = instructions(&setup, 1_500);
    third[3]
        .accounts
        .push(AccountMeta::new_readonly(Pubkey::new_unique(), true));
    assert_eq!(checked(&setup, &third), Err(Invalid::Signers));

    // Compute budget beyond what the gateway pays for, or missing.
    let mut units = instructions(&setup, 1_500);
    units[0].data = [&[2u8][..], &(MAX_COMPUTE_UNITS + 1).to_le_bytes()].concat();
    assert_eq!(checked(&setup, &units), Err(Invalid::ComputeLimit));
    let mut price = instructions(&setup, 1_500);
    price[1].data = [&[3u8][..], &(MAX_MICRO_LAMPORTS + 1).to_le_bytes()].concat();
    assert_eq!(checked(&setup, &price), Err(Invalid::ComputePrice));
    let without_budget = instructions(&setup, 1_500)[2..].to_vec();
    assert_eq!(
        checked(&setup, &without_budget),
        Err(Invalid::InstructionCount)
    );
}

#[test]
fn a_payment_the_payer_did_not_sign_is_refused() {
    let setup = setup();
    let mut tx = signed(
        &setup,
        &setup.fee_payer.pubkey(),
        &instructions(&setup, 1_500),
    );
    tx.signatures[1] = Keypair::new().sign_message(&tx.message.serialize());
    assert_eq!(check(&tx, &setup.expected), Err(Invalid::Signature));
    assert_eq!(
        decode(b"not a transaction").unwrap_err(),
        Invalid::Undecodable
    );
}
