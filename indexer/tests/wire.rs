//! Kind-1573 contents round-trip byte for byte with DePHY's JSON, and our additions are
//! optional in both directions.
use indexer::wire::{
    DsProxyMessage, DsProxyStatus, DsProxyStatusReason, RecoverInfoJson, RequestPayload,
    StatusPayload,
};

/// A request exactly as DePHY's web app publishes it (`JSON.stringify` nesting included).
const DEPHY_REQUEST: &str = r#"{"Request":{"to_status":"Working","reason":"UserRequest","initial_request":"0000000000000000000000000000000000000000000000000000000000000000","payload":"{\"recover_info\":\"{\\\"signature\\\":[1,2,3],\\\"payload\\\":[9,9],\\\"deadline\\\":1740000000}\",\"nonce\":4,\"user\":\"5ZWj7a1f8tWkjBESHKgrLmXshuXxqeY9SYcfbshpAqPG\"}"}}"#;

const DEPHY_STATUS: &str = r#"{"Status":{"status":"Available","reason":"UserBehaviour","initial_request":"8f2c3e3f2b1b4a9e8f2c3e3f2b1b4a9e8f2c3e3f2b1b4a9e8f2c3e3f2b1b4a9e","payload":"{\"user\":\"5ZWj7a1f8tWkjBESHKgrLmXshuXxqeY9SYcfbshpAqPG\",\"nonce\":4,\"recover_info\":\"{}\"}"}}"#;

const DEPHY_CREDIT: &str =
    r#"{"Transaction":{"user":"5ZWj7a1f8tWkjBESHKgrLmXshuXxqeY9SYcfbshpAqPG","tokens":5000000}}"#;
const DEPHY_DEBIT: &str =
    r#"{"Transaction":{"user":"5ZWj7a1f8tWkjBESHKgrLmXshuXxqeY9SYcfbshpAqPG","tokens":-1234}}"#;

#[test]
fn dephy_request_parses_and_reserialises_identically() {
    let message: DsProxyMessage = serde_json::from_str(DEPHY_REQUEST).unwrap();
    let DsProxyMessage::Request {
        to_status,
        reason,
        initial_request,
        payload,
    } = &message
    else {
        panic!("not a request: {message:?}");
    };
    assert_eq!(
        (*to_status, *reason),
        (DsProxyStatus::Working, DsProxyStatusReason::UserRequest)
    );
    assert_eq!(initial_request, &"0".repeat(64));
    let payload: RequestPayload = serde_json::from_str(payload).unwrap();
    assert_eq!(
        (payload.nonce, payload.amount, payload.namespace_id),
        (4, None, None)
    );
    let recover: RecoverInfoJson = serde_json::from_str(&payload.recover_info).unwrap();
    assert_eq!(
        (recover.signature, recover.extra_data, recover.deadline),
        (vec![1, 2, 3], vec![9, 9], 1_740_000_000)
    );
    assert_eq!(serde_json::to_string(&message).unwrap(), DEPHY_REQUEST);
}

#[test]
fn dephy_status_and_transactions_round_trip_byte_for_byte() {
    for literal in [DEPHY_STATUS, DEPHY_CREDIT, DEPHY_DEBIT] {
        let message: DsProxyMessage = serde_json::from_str(literal).unwrap();
        assert_eq!(serde_json::to_string(&message).unwrap(), literal);
    }
    let DsProxyMessage::Status { payload, .. } = serde_json::from_str(DEPHY_STATUS).unwrap() else {
        panic!("not a status");
    };
    let payload: StatusPayload = serde_json::from_str(&payload).unwrap();
    assert_eq!(
        (payload.nonce, payload.signature, payload.error),
        (4, None, None)
    );
}

#[test]
fn our_additions_are_optional_fields_dephy_ignores() {
    let ours = DsProxyMessage::Transaction {
        user: "U".into(),
        tokens: 10,
        reference: Some("5sig".into()),
        model: None,
        rail: None,
    };
    let json = serde_json::to_string(&ours).unwrap();
    assert_eq!(
        json,
        r#"{"Transaction":{"user":"U","tokens":10,"reference":"5sig"}}"#
    );
    // What DePHY's Go backend reads from it: user and tokens.
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["Transaction"]["tokens"], 10);
    assert_eq!(serde_json::from_str::<DsProxyMessage>(&json).unwrap(), ours);
}

#[test]
fn unknown_variants_and_bad_json_are_errors_not_panics() {
    for bad in [
        r#"{"Mint":{"user":"U","tokens":1}}"#,
        "{",
        "",
        r#"{"Transaction":{"user":"U","tokens":"many"}}"#,
    ] {
        assert!(
            serde_json::from_str::<DsProxyMessage>(bad).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn recover_info_lengths_are_checked() {
    let good = RecoverInfoJson {
        signature: vec![7; 64],
        max_amount: 5,
        deadline: 9,
        extra_data: vec![],
    };
    let info = good.to_recover_info(3).unwrap();
    assert_eq!((info.nonce, info.extra_data), (3, [0; 32]));
    assert_eq!(
        RecoverInfoJson::from_recover_info(&info).signature,
        vec![7; 64]
    );
    let short = RecoverInfoJson {
        signature: vec![7; 63],
        ..good.clone()
    };
    assert!(short.to_recover_info(3).is_err());
    let odd_extra = RecoverInfoJson {
        extra_data: vec![1; 31],
        ..good
    };
    assert!(odd_extra.to_recover_info(3).is_err());
}
