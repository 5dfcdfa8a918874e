//! One signature, one cluster, off-chain: the controller reads the deployment's cluster tag
//! from the program's `Global` account and refuses authorisations signed for another cluster
//! before paying fees for them; the right signature for the same nonce is still paid.
use anchor_lang::AccountSerialize;
use balance_payment::{
    authorization::AuthorizationTerms,
    sdk::{authorization::sign_authorization, pda},
    state::Global,
};
use base64::Engine;
use indexer::{
    chain::{
        bank::BankChain,
        cluster::{cluster_tag, ClusterTagError},
        rpc::RpcChain,
        Chain, ChainError,
    },
    ledger::{testing::TempDatabase, RequestState},
    sandbox::{Sandbox, SandboxConfig, SOL},
    wire::{RecoverInfoJson, RequestPayload},
};
use serde_json::{json, Value};
use solana_sdk::{
    pubkey::Pubkey,
    signature::{Keypair, Signer},
};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PAY: u64 = SOL / 100;

async fn sandbox(db: &TempDatabase) -> Sandbox {
    Sandbox::start(SandboxConfig {
        database_url: db.url.clone(),
        relay_port: 0,
        tokens_per_sol: 1_000_000,
        proxy_keys: vec![],
    })
    .await
    .expect("sandbox starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cluster_tag_is_read_from_the_programs_global_account() {
    let bare = BankChain::start().await;
    match cluster_tag(&bare).await {
        Err(ClusterTagError::NotInitialized(address)) => {
            assert_eq!(address, balance_payment::sdk::pda::global())
        }
        other => panic!("expected NotInitialized, got {other:?}"),
    }

    let db = TempDatabase::sqlite();
    let mut s = sandbox(&db).await;
    let tag = cluster_tag(s.chain.as_ref()).await.expect("cluster tag");
    assert_eq!(tag, s.chain.genesis_hash());
    assert_eq!(s.cluster, tag);
    s.stop().await;
    db.remove().await;
}

/// `user`'s request for `PAY` at nonce 0, signed for `cluster`.
fn request_for_cluster(s: &Sandbox, user: &Keypair, cluster: [u8; 32]) -> nostr_sdk::Event {
    let terms = AuthorizationTerms {
        program_id: balance_payment::ID,
        cluster,
        namespace_id: s.namespace_id,
        user: user.pubkey(),
        nonce: 0,
        max_amount: PAY,
        deadline: indexer::ledger::now() + 600,
        extra_data: [0; 32],
    };
    let wallet = ed25519_dalek::SigningKey::from_bytes(user.secret_bytes());
    let info = sign_authorization(&wallet, &terms);
    let payload = RequestPayload {
        user: user.pubkey().to_string(),
        nonce: 0,
        recover_info: serde_json::to_string(&RecoverInfoJson::from_recover_info(&info))
            .expect("json"),
        amount: Some(PAY),
        namespace_id: Some(s.namespace_id),
    };
    s.request_event(&payload).expect("request event")
}

async fn wait_for_state(s: &Sandbox, id: &str) -> indexer::ledger::RequestRecord {
    for _ in 0..200 {
        if let Some(record) = s.ledger.request(id).await.expect("ledger") {
            if record.state != RequestState::Paying {
                return record;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("request {id} never finished");
}

async fn another_clusters_signature_is_refused(db: TempDatabase) {
    let mut s = sandbox(&db).await;
    let user = s.user(SOL).await.expect("user");
    let u = user.pubkey().to_string();
    let treasury_before = s.chain.lamports(&s.treasury).await.expect("lamports");

    let mut elsewhere = s.cluster;
    elsewhere[0] ^= 1;
    let foreign = request_for_cluster(&s, &user, elsewhere);
    match s.controller().handle(&foreign).await.expect("handled") {
        indexer::controller::Outcome::Ignored(reason) => assert!(reason.contains("signature")),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        s.ledger
            .request(&foreign.id.to_hex())
            .await
            .expect("ledger"),
        None,
        "refused before any write"
    );
    assert_eq!(
        s.chain.lamports(&s.treasury).await.expect("lamports"),
        treasury_before
    );
    assert_eq!(s.ledger.balance(&u).await.expect("balance").credited, 0);

    // The same nonce signed for this cluster is paid: nothing was consumed.
    let own = request_for_cluster(&s, &user, s.cluster);
    s.publish(&own).await.expect("publish");
    let record = wait_for_state(&s, &own.id.to_hex()).await;
    assert_eq!(record.state, RequestState::Paid);
    assert_eq!(
        s.chain.lamports(&s.treasury).await.expect("lamports"),
        treasury_before + PAY
    );
    s.stop().await;
    db.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_signed_for_another_cluster_is_refused_on_sqlite() {
    another_clusters_signature_is_refused(TempDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_signed_for_another_cluster_is_refused_on_postgres() {
    let db = TempDatabase::postgres()
        .await
        .expect("Postgres test database");
    another_clusters_signature_is_refused(db).await;
}

/// A JSON-RPC node on 127.0.0.1 whose every answer is `result`; returns its URL.
async fn fake_rpc(result: Value) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let result = result.clone();
            tokio::spawn(async move {
                let Some(request) = read_request(&mut socket).await else {
                    return;
                };
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
    url
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
        solana_commitment_config::CommitmentConfig::finalized(),
    );
    assert_eq!(cluster_tag(&chain).await.expect("cluster tag"), [7; 32]);

    let empty = json!({"context": {"slot": 1}, "value": null});
    let chain = RpcChain::new(
        &fake_rpc(empty).await,
        None,
        balance_payment::ID,
        solana_commitment_config::CommitmentConfig::finalized(),
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
        solana_commitment_config::CommitmentConfig::finalized(),
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
        solana_commitment_config::CommitmentConfig::finalized(),
    );
    assert!(matches!(
        cluster_tag(&chain).await,
        Err(ClusterTagError::Chain(ChainError::Unavailable(_)))
    ));
}
