//! The signed message's exact bytes (the documented test vector) and the off-chain checks a
//! controller runs before spending fees on a `pay`.
use balance_payment::{
    authorization::{authorization_message, is_canonical_signature, Asset, AuthorizationTerms},
    sdk::authorization::{sign_authorization, verify_signature},
};
use ed25519_dalek::SigningKey;
use solana_sdk::pubkey::Pubkey;
use std::str::FromStr;

/// Devnet's genesis hash (`solana genesis-hash -u devnet`): the vector's cluster tag.
const DEVNET: &str = "EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG";

/// The test vector of programs/balance-payment/README.md: wallet secret key = 32 bytes of 0x01.
fn vector_terms() -> (SigningKey, AuthorizationTerms) {
    let key = SigningKey::from_bytes(&[1; 32]);
    let terms = AuthorizationTerms {
        program_id: balance_payment::ID,
        cluster: Pubkey::from_str(DEVNET).expect("base58").to_bytes(),
        namespace_id: 7,
        user: Pubkey::new_from_array(key.verifying_key().to_bytes()),
        nonce: 3,
        max_amount: 5_000_000,
        asset: Asset::Lamports,
        deadline: 1_767_225_600,
        extra_data: [0xab; 32],
    };
    (key, terms)
}

const VECTOR_MESSAGE: &str = "LLM gateway spending authorization
program: BrupoAJZ6RfKk5SrdABrLDbZgLJ4fhcv6ChY6ZrryLgA
cluster: EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG
namespace: 7
user: AKnL4NNf3DGWZJS6cPknBuEGnVsV4A4m5tgebLHaRSZ9
nonce: 3
max amount: 5000000 lamports
deadline: 1767225600
extra data: abababababababababababababababababababababababababababababababab";

/// Checked against Python's `cryptography` (Ed25519PrivateKey.from_private_bytes).
const VECTOR_SIGNATURE: &str = "410c71c6e77047c0575d468be3a3e01427c422c6e6c55915db22dc8a76fda6ce27b105d580cd76a4d5e448564849cbacb30590bc6a2d101cb73a2234dcf27d09";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn message_bytes_match_the_documented_vector() {
    let (_, terms) = vector_terms();
    let message = String::from_utf8(authorization_message(&terms)).expect("UTF-8 text");
    assert_eq!(message, VECTOR_MESSAGE, "\n{message}");
}

#[test]
fn signature_matches_the_documented_vector() {
    let (key, terms) = vector_terms();
    let info = sign_authorization(&key, &terms);
    assert_eq!(hex(&info.signature), VECTOR_SIGNATURE);
    assert_eq!(
        (info.nonce, info.max_amount, info.deadline),
        (3, 5_000_000, 1_767_225_600)
    );
}

#[test]
fn every_field_changes_the_message() {
    let (_, terms) = vector_terms();
    let base = authorization_message(&terms);
    let variants = [
        AuthorizationTerms {
            program_id: Pubkey::new_unique(),
            ..terms
        },
        AuthorizationTerms {
            cluster: [0; 32],
            ..terms
        },
        AuthorizationTerms {
            namespace_id: 8,
            ..terms
        },
        AuthorizationTerms {
            user: Pubkey::new_unique(),
            ..terms
        },
        AuthorizationTerms { nonce: 4, ..terms },
        AuthorizationTerms {
            max_amount: 5_000_001,
            ..terms
        },
        AuthorizationTerms {
            asset: Asset::Token(Pubkey::new_unique()),
            ..terms
        },
        AuthorizationTerms {
            deadline: 1_767_225_601,
            ..terms
        },
        AuthorizationTerms {
            extra_data: [0xac; 32],
            ..terms
        },
    ];
    for variant in variants {
        assert_ne!(authorization_message(&variant), base, "{variant:?}");
    }
}

#[test]
fn off_chain_verification_accepts_the_wallet_and_nothing_else() {
    let (key, terms) = vector_terms();
    let info = sign_authorization(&key, &terms);
    let cluster = terms.cluster;
    assert!(verify_signature(cluster, 7, terms.user, &info));
    assert!(
        !verify_signature([0; 32], 7, terms.user, &info),
        "another cluster"
    );
    assert!(
        !verify_signature(cluster, 8, terms.user, &info),
        "another namespace"
    );
    assert!(
        !verify_signature(cluster, 7, Pubkey::new_unique(), &info),
        "another user"
    );
    let mut larger = info;
    larger.max_amount += 1;
    assert!(
        !verify_signature(cluster, 7, terms.user, &larger),
        "a larger maximum"
    );
    let mut flipped = info;
    flipped.signature[0] ^= 1;
    assert!(
        !verify_signature(cluster, 7, terms.user, &flipped),
        "a flipped bit"
    );
}

#[test]
fn canonical_form_is_required() {
    let (key, terms) = vector_terms();
    let info = sign_authorization(&key, &terms);
    assert!(is_canonical_signature(&info.signature));
    let mut high = info.signature;
    high[63] |= 0xf0;
    assert!(!is_canonical_signature(&high));
    let mut order = [0u8; 64];
    order[32..].copy_from_slice(&[
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ]);
    assert!(!is_canonical_signature(&order), "S = L is not reduced");
    order[32] -= 1;
    assert!(is_canonical_signature(&order), "S = L - 1 is");
}
