//! The Rust SDK's `pay` instruction for fixed inputs, pinned in `tests/idl/pay_vector.json`.
//! The Node check (`tests/idl/check.mjs`) encodes the same call from the committed IDL with
//! `@coral-xyz/anchor` and must produce these exact bytes and accounts, so wallets that
//! integrate through the IDL and services that use this SDK agree byte for byte.
//! `UPDATE_VECTORS=1` rewrites the file after an intended change.
use balance_payment::{
    authorization::AuthorizationTerms,
    sdk::{authorization::sign_authorization, instructions as ix},
};
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};
use solana_sdk::pubkey::Pubkey;

const VECTOR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/idl/pay_vector.json"
);

fn vector() -> Value {
    let key = SigningKey::from_bytes(&[1; 32]);
    let user = Pubkey::new_from_array(key.verifying_key().to_bytes());
    let (bot, treasury) = (
        Pubkey::new_from_array([2; 32]),
        Pubkey::new_from_array([3; 32]),
    );
    let terms = AuthorizationTerms {
        program_id: balance_payment::ID,
        namespace_id: 7,
        user,
        nonce: 3,
        max_amount: 5_000_000,
        deadline: 1_767_225_600,
        extra_data: [0xab; 32],
    };
    let info = sign_authorization(&key, &terms);
    let pay = ix::pay(bot, 7, treasury, user, info, 4_000_000);
    json!({
        "programId": pay.program_id.to_string(),
        "namespaceId": 7,
        "amount": 4_000_000,
        "recoverInfo": {
            "nonce": info.nonce,
            "maxAmount": info.max_amount,
            "deadline": info.deadline,
            "extraData": info.extra_data.to_vec(),
            "signature": info.signature.to_vec(),
        },
        "accounts": { "bot": bot.to_string(), "user": user.to_string(), "treasury": treasury.to_string() },
        "instruction": {
            "keys": pay.accounts.iter().map(|meta| json!({
                "pubkey": meta.pubkey.to_string(),
                "isSigner": meta.is_signer,
                "isWritable": meta.is_writable,
            })).collect::<Vec<_>>(),
            "data": pay.data.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        },
    })
}

#[test]
fn sdk_pay_instruction_matches_the_pinned_vector() {
    let fresh = vector();
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&fresh).expect("json") + "\n";
        std::fs::write(VECTOR, text).expect("write vector");
    }
    let pinned: Value = std::fs::read_to_string(VECTOR)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null);
    assert_eq!(
        pinned, fresh,
        "SDK output changed; if intended, run with UPDATE_VECTORS=1"
    );
}
