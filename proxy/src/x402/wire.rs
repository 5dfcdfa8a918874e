//! x402 v2's messages as they travel: JSON, base64-encoded in the `PAYMENT-REQUIRED`,
//! `PAYMENT-SIGNATURE` and `PAYMENT-RESPONSE` headers. Field names are the specification's
//! (camelCase), so the official clients read and write them unchanged.
use base64::{engine::general_purpose::STANDARD, Engine};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;

/// The protocol version spoken here.
pub const VERSION: u8 = 2;
/// The one scheme the official clients pay on Solana.
pub const SCHEME: &str = "exact";
/// Our scheme for wallets registered with the program: a signed spending authorisation the
/// gateway locks for the worst case and settles for the actual cost.
pub const ESCROW_SCHEME: &str = "escrow";
/// The server's offer (402).
pub const PAYMENT_REQUIRED: &str = "payment-required";
/// The client's payment (the retried request).
pub const PAYMENT_SIGNATURE: &str = "payment-signature";
/// The settlement (the paid answer).
pub const PAYMENT_RESPONSE: &str = "payment-response";
/// The longest `PAYMENT-SIGNATURE` read: a Solana transaction is at most 1,232 bytes, which
/// base64 and the JSON around it keep well under this.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// One way to pay (an entry of `accepts`, and the `accepted` a payment names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Requirements {
    pub scheme: String,
    /// CAIP-2 (`solana:<genesis hash prefix>`).
    pub network: String,
    /// Base units of `asset`, as a decimal string.
    pub amount: String,
    /// The mint.
    pub asset: String,
    /// The owner of the receiving token account.
    pub pay_to: String,
    pub max_timeout_seconds: u64,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub extra: Value,
}

/// What is being paid for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    pub url: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub mime_type: String,
}

/// The `PAYMENT-REQUIRED` header: the offers, and why the last payment (if any) was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    pub x402_version: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub resource: Resource,
    pub accepts: Vec<Requirements>,
}

/// The `PAYMENT-SIGNATURE` header: the offer the client took, and its payment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayload {
    pub x402_version: u8,
    pub accepted: Requirements,
    /// The scheme's payment: [`ExactPayload`] or [`EscrowPayload`], as `accepted` says.
    pub payload: Value,
}

impl PaymentPayload {
    /// The payment, read as the scheme's payload; `None` when it is not one.
    pub fn payment<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_value(self.payload.clone()).ok()
    }
}

/// The `exact` scheme's payment on Solana: a transaction signed by the payer, waiting for the
/// fee payer's signature (base64 of its wire bytes).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ExactPayload {
    pub transaction: String,
}

/// The `extra data` every `escrow` authorisation signs (32 bytes of ASCII, shown in hex in the
/// signed message). Top-up authorisations, which wallets publish on the relays, carry other
/// extra data (zeros), so one copied from a relay can never pay a request of someone else's.
pub const ESCROW_EXTRA_DATA: &[u8; 32] = b"llm-gateway x402 escrow payments";

/// [`ESCROW_EXTRA_DATA`] as the offers and payloads write it: lowercase hex.
pub fn escrow_extra_data_hex() -> String {
    ESCROW_EXTRA_DATA
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The `escrow` scheme's payment: the program's spending authorisation of `maxAmount` base
/// units of the offer's asset, signed by the registered wallet `user` for its current `nonce`
/// (the message is `balance_payment::authorization::authorization_message`'s). Amounts are
/// decimal strings, as x402 writes them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EscrowPayload {
    /// The wallet (base58).
    pub user: String,
    pub nonce: String,
    pub max_amount: String,
    /// Unix seconds; at least `extra.minLockSeconds` from now.
    pub deadline: i64,
    /// 32 bytes, lowercase hex: [`ESCROW_EXTRA_DATA`], as the offer's `extra.extraData` says.
    #[serde(default)]
    pub extra_data: Option<String>,
    /// The wallet's ed25519 signature of the message (base58).
    pub signature: String,
}

/// The `PAYMENT-RESPONSE` header: how the payment settled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettleResponse {
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
    pub payer: String,
    /// The transaction's id.
    pub transaction: String,
    pub network: String,
    /// Ledger tokens the payment credited to the payer's balance: what this request does not
    /// use stays there, for later requests with a login or a delegated key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credited: Option<i64>,
}

/// How to pay with x402 v2: the network, the endpoints that answer 402, and the offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct X402Info {
    pub version: u8,
    /// CAIP-2 (`solana:<genesis hash prefix>`).
    pub network: String,
    pub endpoints: Vec<String>,
    pub accepts: Vec<X402Offer>,
}

/// One offer, as the 402s make it (the amount is each request's worst case).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct X402Offer {
    pub scheme: String,
    /// The mint.
    pub asset: String,
    pub decimals: u8,
    pub pay_to: String,
    /// Co-signs each payment and pays its fee.
    pub fee_payer: String,
    pub max_timeout_seconds: u64,
}

/// A header's value: base64 of the JSON.
pub fn encode(value: &impl Serialize) -> String {
    STANDARD.encode(serde_json::to_vec(value).unwrap_or_default())
}

/// Whether a `PAYMENT-SIGNATURE` pays with the `escrow` scheme (anything else is read as
/// `exact`, and refused there if it is not one).
pub fn is_escrow(header: &str) -> bool {
    decode::<PaymentPayload>(header).is_some_and(|payment| payment.accepted.scheme == ESCROW_SCHEME)
}

/// Reads a header's value; `None` when it is not base64 of the expected JSON.
pub fn decode<T: DeserializeOwned>(header: &str) -> Option<T> {
    let bytes = STANDARD.decode(header.trim()).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payment_in_the_official_clients_shape_is_read() {
        // As @x402/fetch sends it: the offer taken, resource and extensions beside it.
        let json = serde_json::json!({
            "x402Version": 2,
            "resource": {"url": "http://gw/v1/chat/completions"},
            "accepted": {
                "scheme": "exact", "network": "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1",
                "amount": "1500", "asset": "Mint", "payTo": "Treasury",
                "maxTimeoutSeconds": 60, "extra": {"feePayer": "Payer"}
            },
            "payload": {"transaction": "AQID"},
            "extensions": {}
        });
        let header = STANDARD.encode(json.to_string());
        let payment: PaymentPayload = decode(&header).unwrap();
        assert_eq!(payment.accepted.amount, "1500");
        assert_eq!(payment.accepted.pay_to, "Treasury");
        let exact: ExactPayload = payment.payment().unwrap();
        assert_eq!(exact.transaction, "AQID");
        assert!(payment.payment::<EscrowPayload>().is_none());
        assert!(decode::<PaymentPayload>("not base64!").is_none());
        assert!(decode::<PaymentPayload>(&STANDARD.encode("{}")).is_none());
    }

    #[test]
    fn an_offer_is_written_in_camel_case() {
        let offer = PaymentRequired {
            x402_version: VERSION,
            error: None,
            resource: Resource {
                url: "u".into(),
                description: String::new(),
                mime_type: "application/json".into(),
            },
            accepts: vec![Requirements {
                scheme: "exact".into(),
                network: "solana:x".into(),
                amount: "1".into(),
                asset: "a".into(),
                pay_to: "p".into(),
                max_timeout_seconds: 60,
                extra: serde_json::json!({"feePayer": "f"}),
            }],
        };
        let json: Value =
            serde_json::from_slice(&STANDARD.decode(encode(&offer)).unwrap()).unwrap();
        assert_eq!(json["x402Version"], 2);
        assert_eq!(json["accepts"][0]["payTo"], "p");
        assert_eq!(json["accepts"][0]["maxTimeoutSeconds"], 60);
        assert_eq!(json["resource"]["mimeType"], "application/json");
        assert!(json.get("error").is_none());
    }
}
