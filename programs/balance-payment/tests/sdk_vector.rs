//! The Rust SDK's `pay` instruction for fixed inputs, pinned in `tests/idl/pay_vector.json`.
//! The Node check (`tests/idl/check.mjs`) encodes the same call from the committed IDL with
//! `@coral-xyz/anchor` and must produce these exact bytes and accounts, so wallets that
//! integrate through the IDL and services that use this SDK agree byte for byte.
//! The vector also carries the signed message, which the Node check rebuilds from the fields and
//! verifies the signature over, so a wallet app written in JavaScript signs the same bytes.
//! `payToken` pins `pay_token` the same way, with its message naming the mint.
//! `UPDATE_VECTORS=1` rewrites the file after an intended change.
use balance_payment::{
    authorization::{authorization_message, Asset, AuthorizationTerms},
    sdk::{
        authorization::sign_authorization, instructions as ix, token_instructions as tix,
        Instruction,
    },
};
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};
use solana_sdk::pubkey::Pubkey;
use std::str::FromStr;

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
    // Devnet's genesis hash, as in the test vector of programs/balance-payment/README.md.
    let cluster = Pubkey::from_str("EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG").expect("base58");
    let terms = AuthorizationTerms {
        program_id: balance_payment::ID,
        cluster: cluster.to_bytes(),
        namespace_id: 7,
        user,
        nonce: 3,
        max_amount: 5_000_000,
        asset: Asset::Lamports,
        deadline: 1_767_225_600,
        extra_data: [0xab; 32],
    };
    let info = sign_authorization(&key, &terms);
    // `pay` redeems exactly the signed amount.
    let pay = ix::pay(bot, 7, treasury, user, info, 5_000_000);

    let (mint, treasury_tokens) = (
        Pubkey::new_from_array([4; 32]),
        Pubkey::new_from_array([5; 32]),
    );
    let token_terms = AuthorizationTerms {
        asset: Asset::Token(mint),
        max_amount: 2_500_000,
        ..terms
    };
    let token_info = sign_authorization(&key, &token_terms);
    let redeemer = tix::TokenRedeemer {
        bot,
        namespace_id: 7,
        mint,
        token_program: anchor_spl::token::ID,
        treasury_tokens,
    };
    let pay_token = tix::pay_token(&redeemer, user, token_info, 2_500_000);
    json!({
        "programId": pay.program_id.to_string(),
        "cluster": cluster.to_string(),
        "namespaceId": 7,
        "amount": 5_000_000,
        "message": String::from_utf8(authorization_message(&terms)).expect("UTF-8"),
        "recoverInfo": {
            "nonce": info.nonce,
            "maxAmount": info.max_amount,
            "deadline": info.deadline,
            "extraData": info.extra_data.to_vec(),
            "signature": info.signature.to_vec(),
        },
        "accounts": { "bot": bot.to_string(), "user": user.to_string(), "treasury": treasury.to_string() },
        "instruction": encoded(&pay),
        "payToken": {
            "amount": 2_500_000,
            "message": String::from_utf8(authorization_message(&token_terms)).expect("UTF-8"),
            "recoverInfo": {
                "nonce": token_info.nonce,
                "maxAmount": token_info.max_amount,
                "deadline": token_info.deadline,
                "extraData": token_info.extra_data.to_vec(),
                "signature": token_info.signature.to_vec(),
            },
            "accounts": {
                "mint": mint.to_string(),
                "tokenProgram": anchor_spl::token::ID.to_string(),
                "treasury": treasury_tokens.to_string(),
            },
            "instruction": encoded(&pay_token),
        },
    })
}

fn encoded(instruction: &Instruction) -> Value {
    json!({
        "keys": instruction.accounts.iter().map(|meta| json!({
            "pubkey": meta.pubkey.to_string(),
            "isSigner": meta.is_signer,
            "isWritable": meta.is_writable,
        })).collect::<Vec<_>>(),
        "data": instruction.data.iter().map(|b| format!("{b:02x}")).collect::<String>(),
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
