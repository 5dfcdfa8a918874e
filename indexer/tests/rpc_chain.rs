//! `RpcChain` against a JSON-RPC node on 127.0.0.1 that answers what the test says and keeps
//! what it was asked: the production chain path, without a validator.
use anchor_lang::AccountSerialize;
use balance_payment::{sdk::pda, state::Global};
use base64::Engine;
use indexer::chain::{
    cluster::{cluster_tag, ClusterTagError},
    rpc::RpcChain,
    Chain, ChainError,
};
use serde_json::{json, Value};
use solana_commitment_config::CommitmentConfig;
use solana_sdk::pubkey::Pubkey;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// Point 5 of the money path: a payment counts once finalized unless the operator chooses
// `confirmed`; the chain watcher asks the node at exactly that commitment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_are_read_at_the_configured_commitment_finalized_by_default() {
    let default = indexer::config::Config::default().chain.commitment;
    assert_eq!(default, indexer::config::Commitment::Finalized);
    for (level, expected) in [
        (default, "finalized"),
        (indexer::config::Commitment::Confirmed, "confirmed"),
    ] {
        let (url, requests) = recording_rpc(json!([])).await;
        let chain = RpcChain::new(&url, None, balance_payment::ID, level.into());
        let batch = chain.events_after(None).await.expect("an empty history");
        assert!(batch.events.is_empty());
        let requests = requests.lock().expect("not poisoned").clone();
        let asked = requests
            .iter()
            .find(|r| r["method"] == "getSignaturesForAddress")
            .expect("the watcher lists the program's signatures");
        assert_eq!(asked["params"][1]["commitment"], expected, "{asked}");
    }
}

/// A JSON-RPC node on 127.0.0.1 whose every answer is `result`; returns its URL.
async fn fake_rpc(result: Value) -> String {
    recording_rpc(result).await.0
}

/// [`fake_rpc`], also keeping every request it was sent.
async fn recording_rpc(result: Value) -> (String, Arc<Mutex<Vec<Value>>>) {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (result, seen) = (result.clone(), seen.clone());
            tokio::spawn(async move {
                let Some(request) = read_request(&mut socket).await else {
                    return;
                };
                seen.lock().expect("not poisoned").push(request.clone());
                let body =
                    json!({"jsonrpc": "2.0", "id": request["id"], "result": result}).to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    (url, requests)
}

/// The JSON body of one HTTP request.
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Value> {
    let mut buffer = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let read = socket.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let headers = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
        let length = headers
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|value| value.trim().parse::<usize>().ok())?;
        if buffer.len() >= end + 4 + length {
            return serde_json::from_slice(&buffer[end + 4..end + 4 + length]).ok();
        }
    }
}

fn account_info(data: &[u8]) -> Value {
    json!({
        "context": {"slot": 1},
        "value": {
            "data": [base64::engine::general_purpose::STANDARD.encode(data), "base64"],
            "executable": false,
            "lamports": 1_000_000,
            "owner": balance_payment::ID.to_string(),
            "rentEpoch": 0,
            "space": data.len(),
        }
    })
}

/// What `indexer run` does at start: read `Global` through `getAccountInfo`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rpc_chain_reads_the_cluster_tag_with_get_account_info() {
    let mut data = Vec::new();
    Global {
        namespace_count: 3,
        cluster: [7; 32],
        bump: 254,
    }
    .try_serialize(&mut data)
    .expect("serialize");
    let chain = RpcChain::new(
        &fake_rpc(account_info(&data)).await,
        None,
        balance_payment::ID,
        CommitmentConfig::finalized(),
    );
    assert_eq!(cluster_tag(&chain).await.expect("cluster tag"), [7; 32]);

    let empty = json!({"context": {"slot": 1}, "value": null});
    let chain = RpcChain::new(
        &fake_rpc(empty).await,
        None,
        balance_payment::ID,
        CommitmentConfig::finalized(),
    );
    assert_eq!(
        chain
            .account_data(&Pubkey::new_unique())
            .await
            .expect("answer"),
        None
    );
    match cluster_tag(&chain).await {
        Err(ClusterTagError::NotInitialized(address)) => assert_eq!(address, pda::global()),
        other => panic!("expected NotInitialized, got {other:?}"),
    }
}

/// A node's answer is input: data that is not `Global`, or not base64 at all, is an error
/// the operator can read, never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_get_account_info_answer_is_an_error_not_a_panic() {
    let chain = RpcChain::new(
        &fake_rpc(account_info(&[1; 10])).await,
        None,
        balance_payment::ID,
        CommitmentConfig::finalized(),
    );
    assert!(matches!(
        cluster_tag(&chain).await,
        Err(ClusterTagError::Malformed(address)) if address == pda::global()
    ));

    let parsed = json!({
        "context": {"slot": 1},
        "value": {"data": {"parsed": {}}, "executable": false, "lamports": 1,
                  "owner": balance_payment::ID.to_string(), "rentEpoch": 0, "space": 0}
    });
    let chain = RpcChain::new(
        &fake_rpc(parsed).await,
        None,
        balance_payment::ID,
        CommitmentConfig::finalized(),
    );
    assert!(matches!(
        cluster_tag(&chain).await,
        Err(ClusterTagError::Chain(ChainError::Unavailable(_)))
    ));
}
