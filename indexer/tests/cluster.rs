//! One signature, one cluster, off-chain: the controller reads the deployment's cluster tag
//! from the program's `Global` account and refuses authorisations signed for another cluster
//! before paying fees for them; the right signature for the same nonce is still paid.
use balance_payment::{
    authorization::{Asset, AuthorizationTerms},
    sdk::authorization::sign_authorization,
};
use indexer::{
    chain::{
        cluster::{cluster_tag, ClusterTagError},
        rpc::RpcChain,
        Chain,
    },
    ledger::{testing::TempDatabase, RequestState},
    sandbox::{Sandbox, SandboxConfig, SOL},
    wire::{RecoverInfoJson, RequestPayload},
};
use solana_sdk::signature::{Keypair, Signer};
use std::time::Duration;

const PAY: u64 = SOL / 100;

async fn sandbox(db: &TempDatabase) -> Sandbox {
    Sandbox::start(SandboxConfig::new(&db.url))
        .await
        .expect("sandbox starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cluster_tag_is_read_from_the_programs_global_account() {
    let mut validator =
        localnet::Validator::start(localnet::ValidatorConfig::free_ports().unwrap())
            .await
            .expect("validator starts");
    let bare = RpcChain::new(
        validator.rpc_url(),
        None,
        balance_payment::ID,
        solana_commitment_config::CommitmentConfig::finalized(),
    );
    match cluster_tag(&bare).await {
        Err(ClusterTagError::NotInitialized(address)) => {
            assert_eq!(address, balance_payment::sdk::pda::global())
        }
        other => panic!("expected NotInitialized, got {other:?}"),
    }
    validator.shutdown();

    let db = TempDatabase::sqlite();
    let mut s = sandbox(&db).await;
    let tag = cluster_tag(s.chain.as_ref()).await.expect("cluster tag");
    let genesis = s.rpc.get_genesis_hash().await.expect("genesis hash");
    assert_eq!(tag, genesis.to_bytes());
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
        asset: Asset::Lamports,
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
        mint: None,
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
