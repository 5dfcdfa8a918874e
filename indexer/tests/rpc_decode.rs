//! Reading events from transactions exactly as the Solana RPC returns them (`getTransaction`,
//! `json` encoding): `emit_cpi!` inner instructions, `Program data:` logs, lookup tables, and
//! the fakes an attacker could plant.
use anchor_lang::{event::EVENT_IX_TAG_LE, Event as _};
use balance_payment::{events::Paid, sdk::events::ProgramEvent};
use base64::Engine;
use indexer::chain::decode::events_in_transaction;
use serde_json::{json, Value};
use solana_sdk::pubkey::Pubkey;
use solana_transaction_status_client_types::EncodedConfirmedTransactionWithStatusMeta;

const PROGRAM: &str = "BrupoAJZ6RfKk5SrdABrLDbZgLJ4fhcv6ChY6ZrryLgA";
const OTHER_PROGRAM: &str = "Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo";

fn paid() -> Paid {
    Paid {
        namespace_id: 0,
        user: Pubkey::new_from_array([9; 32]),
        treasury: Pubkey::new_from_array([8; 32]),
        nonce: 4,
        amount: 10_000_000,
        max_amount: 20_000_000,
        extra_data: [0; 32],
        vault_balance: 990_000_000,
    }
}

fn cpi_data() -> String {
    bs58::encode([EVENT_IX_TAG_LE, paid().data().as_slice()].concat()).into_string()
}

/// A `getTransaction` result: bot, user, ... then the programs; instruction 1 is `pay`, whose
/// inner instruction at `inner_program_index` carries the event.
fn rpc_transaction(
    inner_program_index: u8,
    err: Value,
    logs: Vec<String>,
    loaded_readonly: Vec<&str>,
) -> Value {
    json!({
        "slot": 341_234_567,
        "blockTime": 1_767_225_000,
        "transaction": {
            "signatures": ["5h6xBEauJ3PK6SWCZ1PGjBvj8vDdWG3KpwATGy1ARAXFSDwt8GFXM7W5Ncn16wmqokgpiKRLuS83KUxyZyv2sUYv"],
            "message": {
                "header": {"numRequiredSignatures": 1, "numReadonlySignedAccounts": 0, "numReadonlyUnsignedAccounts": 5},
                "accountKeys": [
                    "7Y2EMQVq3wkV3kZzRQnGrGpd8xwSQtjD4VuVzrPxB5BA",
                    "GDDMwNyyx8uB6zrqwBFHjLLG3TBYk2F8Az4yrQC5RzMp",
                    "Ed25519SigVerify111111111111111111111111111",
                    "11111111111111111111111111111111",
                    "Sysvar1nstructions1111111111111111111111111",
                    OTHER_PROGRAM,
                    PROGRAM
                ],
                "recentBlockhash": "9zb4o7tKqSYvAkrk7hKQi8SYMULg1cPDR9Z1ntG9vGX6",
                "instructions": [
                    {"programIdIndex": 2, "accounts": [], "data": "3b", "stackHeight": null},
                    {"programIdIndex": 6, "accounts": [0, 1, 3, 4], "data": "6gxHv", "stackHeight": null}
                ]
            }
        },
        "meta": {
            "err": err,
            "status": if err.is_null() { json!({"Ok": null}) } else { json!({"Err": err}) },
            "fee": 10_000,
            "preBalances": [1_000_000_000u64, 0, 1, 1, 1, 1, 1],
            "postBalances": [999_990_000u64, 0, 1, 1, 1, 1, 1],
            "innerInstructions": [{
                "index": 1,
                "instructions": [
                    {"programIdIndex": 3, "accounts": [1, 0], "data": "3Bxs4Bc3VYuGVB19", "stackHeight": 2},
                    {"programIdIndex": inner_program_index, "accounts": [1], "data": cpi_data(), "stackHeight": 2}
                ]
            }],
            "logMessages": logs,
            "preTokenBalances": [],
            "postTokenBalances": [],
            "rewards": [],
            "loadedAddresses": {"writable": [], "readonly": loaded_readonly},
            "computeUnitsConsumed": 41_234
        },
        "version": 0
    })
}

fn parse(value: Value) -> EncodedConfirmedTransactionWithStatusMeta {
    serde_json::from_value(value).expect("the RPC's getTransaction shape")
}

#[test]
fn emit_cpi_events_are_read_from_inner_instructions() {
    let tx = parse(rpc_transaction(6, Value::Null, vec![], vec![]));
    assert_eq!(
        events_in_transaction(&tx, PROGRAM),
        vec![ProgramEvent::Paid(paid())]
    );
}

#[test]
fn the_same_bytes_sent_to_another_program_are_not_events() {
    let tx = parse(rpc_transaction(5, Value::Null, vec![], vec![]));
    assert!(events_in_transaction(&tx, PROGRAM).is_empty());
}

#[test]
fn failed_transactions_have_no_events() {
    let err = json!({"InstructionError": [1, {"Custom": 6004}]});
    let tx = parse(rpc_transaction(6, err, vec![], vec![]));
    assert!(events_in_transaction(&tx, PROGRAM).is_empty());
}

#[test]
fn events_are_found_through_address_lookup_tables() {
    // Index 7 is past the static keys: the first address loaded from a lookup table.
    let tx = parse(rpc_transaction(7, Value::Null, vec![], vec![PROGRAM]));
    assert_eq!(
        events_in_transaction(&tx, PROGRAM),
        vec![ProgramEvent::Paid(paid())]
    );
}

#[test]
fn program_data_logs_count_only_inside_this_program() {
    let data = base64::engine::general_purpose::STANDARD.encode(paid().data());
    let logs = |program: &str| {
        vec![
            format!("Program {program} invoke [1]"),
            "Program log: Instruction: Pay".to_string(),
            format!("Program data: {data}"),
            format!("Program {program} consumed 41234 of 200000 compute units"),
            format!("Program {program} success"),
        ]
    };
    // No inner event (sent to the other program), so the logs are consulted.
    let ours = parse(rpc_transaction(5, Value::Null, logs(PROGRAM), vec![]));
    assert_eq!(
        events_in_transaction(&ours, PROGRAM),
        vec![ProgramEvent::Paid(paid())]
    );
    let theirs = parse(rpc_transaction(5, Value::Null, logs(OTHER_PROGRAM), vec![]));
    assert!(events_in_transaction(&theirs, PROGRAM).is_empty());
}

#[test]
fn malformed_event_data_is_skipped_not_a_panic() {
    let mut value = rpc_transaction(6, Value::Null, vec!["Program data: !!!".into()], vec![]);
    value["meta"]["innerInstructions"][0]["instructions"][1]["data"] = json!("not-base58-0OIl");
    let tx = parse(value);
    assert!(events_in_transaction(&tx, PROGRAM).is_empty());
}
