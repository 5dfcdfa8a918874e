//! Wallet signatures bound to one deployment, over real HTTP: a login or a delegated key made
//! for one gateway is refused by another; a login signature cannot be replayed at any replica;
//! a revoked key or a logged-out session is refused by every replica sharing the ledger, at
//! once; issuing a nonce touches no database. Each ledger-backed rule runs on SQLite (two
//! gateways on one file) and Postgres.
mod common;

use common::{
    ask, rand_bytes,
    replicas::{Replicas, Setup},
    Harness, AUDIENCE,
};
use ed25519_dalek::{Signer, SigningKey};
use indexer::ledger::testing::TempDatabase;
use proxy::auth::delegated::{self, Claims};
use serde_json::{json, Value};
use std::ops::Deref;

/// Two gateways on one ledger, with the given audiences, and a funded wallet.
struct Pair(Replicas);

impl Deref for Pair {
    type Target = Replicas;

    fn deref(&self) -> &Replicas {
        &self.0
    }
}

impl Pair {
    async fn start(db: TempDatabase, audiences: [&'static str; 2]) -> Self {
        let setup = Setup {
            audiences: audiences.map(Some),
            clock: None,
            funds: 100_000,
        };
        Self(Replicas::start(db, setup).await)
    }

    async fn nonce(&self, gateway: usize) -> Value {
        let response = self
            .http
            .post(self.url(gateway, "/v1/auth/nonce"))
            .json(&json!({"wallet": self.user}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// `POST /v1/auth/login` at `gateway` with `nonce` and `signature`; the status.
    async fn login(&self, gateway: usize, nonce: &Value, signature: &str) -> u16 {
        self.http
            .post(self.url(gateway, "/v1/auth/login"))
            .json(&json!({"wallet": self.user, "nonce": nonce["nonce"], "signature": signature}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn get(&self, gateway: usize, path: &str, credential: &str) -> u16 {
        self.http
            .get(self.url(gateway, path))
            .bearer_auth(credential)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn revoke(&self, gateway: usize, key: &str, signer: &SigningKey) -> (u16, Value) {
        let verified = delegated::peek(key).unwrap();
        let response = self
            .http
            .post(self.url(gateway, "/v1/auth/revoke"))
            .json(&json!({"key": key, "signature": delegated::sign_revocation(&verified, signer)}))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    fn claims(&self, audience: &str) -> Claims {
        self.0.claims(audience, 10_000)
    }

    /// The status of a one-word chat completion at `gateway`.
    async fn chat(&self, gateway: usize, credential: &str) -> u16 {
        self.0.chat(gateway, credential).await.status().as_u16()
    }

    async fn stop(self) {
        self.0.stop().await
    }
}

fn sign(key: &SigningKey, text: &Value) -> String {
    bs58::encode(key.sign(text.as_str().unwrap().as_bytes()).to_bytes()).into_string()
}

const OTHER: &str = "https://gateway-b.test";

async fn signatures_for_one_gateway_are_refused_by_another(db: TempDatabase) {
    let pair = Pair::start(db, [AUDIENCE, OTHER]).await;
    let nonce = pair.nonce(0).await;
    assert_eq!(nonce["audience"], AUDIENCE);
    assert!(
        nonce["message"].as_str().unwrap().contains(AUDIENCE),
        "the signed text names the gateway: {nonce}"
    );
    let signature = sign(&pair.wallet, &nonce["message"]);
    assert_eq!(
        pair.login(1, &nonce, &signature).await,
        401,
        "gateway B refuses a login signed for A, though they share the ledger"
    );
    assert_eq!(pair.login(0, &nonce, &signature).await, 200, "A accepts it");

    let for_a = delegated::sign(&pair.claims(AUDIENCE), &pair.wallet).unwrap();
    assert_eq!(pair.chat(1, &for_a).await, 401, "B refuses A's key");
    assert_eq!(pair.chat(0, &for_a).await, 200, "A serves it");
    let for_b = delegated::sign(&pair.claims(OTHER), &pair.wallet).unwrap();
    assert_eq!(pair.chat(0, &for_b).await, 401, "A refuses B's key");
    assert_eq!(pair.chat(1, &for_b).await, 200, "B serves it");
    pair.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_signatures_for_one_gateway_are_refused_by_another() {
    signatures_for_one_gateway_are_refused_by_another(TempDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_signatures_for_one_gateway_are_refused_by_another() {
    let db = TempDatabase::postgres()
        .await
        .expect("Postgres test database");
    signatures_for_one_gateway_are_refused_by_another(db).await;
}

async fn a_login_signature_cannot_be_replayed_or_forged(db: TempDatabase) {
    // Two replicas of one deployment on one ledger.
    let pair = Pair::start(db, [AUDIENCE, AUDIENCE]).await;
    let nonce = pair.nonce(0).await;
    let other = SigningKey::from_bytes(&rand_bytes());
    assert_eq!(
        pair.login(0, &nonce, &sign(&other, &nonce["message"]))
            .await,
        401,
        "another key's signature"
    );
    let signature = sign(&pair.wallet, &nonce["message"]);
    assert_eq!(
        pair.login(1, &nonce, &signature).await,
        200,
        "any replica accepts a nonce another issued"
    );
    assert_eq!(pair.login(1, &nonce, &signature).await, 401, "replayed");
    assert_eq!(
        pair.login(0, &nonce, &signature).await,
        401,
        "replayed at the other replica"
    );

    // A nonce the gateway never issued, properly signed, is refused.
    let mut forged = pair.nonce(0).await;
    let invented = format!("{}.AAAA.AAAA", indexer::ledger::now() + 300);
    forged["message"] = Value::from(
        forged["message"]
            .as_str()
            .unwrap()
            .replace(forged["nonce"].as_str().unwrap(), &invented),
    );
    forged["nonce"] = Value::from(invented);
    assert_eq!(
        pair.login(0, &forged, &sign(&pair.wallet, &forged["message"]))
            .await,
        401
    );

    let bad_wallet = pair
        .http
        .post(pair.url(0, "/v1/auth/nonce"))
        .json(&json!({"wallet": "not-a-wallet"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_wallet.status(), 400);
    pair.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_login_signature_cannot_be_replayed_or_forged() {
    a_login_signature_cannot_be_replayed_or_forged(TempDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_login_signature_cannot_be_replayed_or_forged() {
    let db = TempDatabase::postgres()
        .await
        .expect("Postgres test database");
    a_login_signature_cannot_be_replayed_or_forged(db).await;
}

async fn a_revoked_key_is_refused_by_every_replica(db: TempDatabase) {
    let pair = Pair::start(db, [AUDIENCE, AUDIENCE]).await;
    let key = delegated::sign(&pair.claims(AUDIENCE), &pair.wallet).unwrap();
    // Both replicas have verified (and cached) the key.
    assert_eq!(pair.chat(0, &key).await, 200);
    assert_eq!(pair.chat(1, &key).await, 200);

    let thief = SigningKey::from_bytes(&rand_bytes());
    let (status, body) = pair.revoke(0, &key, &thief).await;
    assert_eq!(status, 401, "a revocation signed by another wallet: {body}");
    assert_eq!(pair.chat(1, &key).await, 200, "still working");

    let (status, body) = pair.revoke(0, &key, &pair.wallet).await;
    assert_eq!((status, &body["revoked"]), (200, &json!(true)), "{body}");
    assert_eq!(pair.chat(0, &key).await, 401, "refused where revoked");
    assert_eq!(pair.chat(1, &key).await, 401, "and by the other replica");
    assert_eq!(pair.get(1, "/v1/balance", &key).await, 401);
    assert_eq!(pair.get(1, "/v1/usage", &key).await, 401);

    let (status, body) = pair.revoke(1, &key, &pair.wallet).await;
    assert_eq!((status, &body["newly_revoked"]), (200, &json!(false)));
    let other = delegated::sign(&pair.claims(AUDIENCE), &pair.wallet).unwrap();
    assert_eq!(
        pair.chat(1, &other).await,
        200,
        "the wallet's other keys work"
    );
    pair.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_revoked_key_is_refused_by_every_replica() {
    a_revoked_key_is_refused_by_every_replica(TempDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_revoked_key_is_refused_by_every_replica() {
    let db = TempDatabase::postgres()
        .await
        .expect("Postgres test database");
    a_revoked_key_is_refused_by_every_replica(db).await;
}

async fn a_logged_out_session_is_refused_by_every_replica(db: TempDatabase) {
    let started = Pair::start(db, [AUDIENCE, AUDIENCE]).await;
    let pair = &started;
    let login = |gateway| async move {
        let nonce = pair.nonce(gateway).await;
        let signature = sign(&pair.wallet, &nonce["message"]);
        let response = pair
            .http
            .post(pair.url(gateway, "/v1/auth/login"))
            .json(&json!({"wallet": pair.user, "nonce": nonce["nonce"], "signature": signature}))
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        body["token"].as_str().unwrap().to_owned()
    };
    let (session, other) = (login(0).await, login(0).await);
    // Both replicas have verified (and cached) the session.
    assert_eq!(pair.chat(0, &session).await, 200);
    assert_eq!(pair.chat(1, &session).await, 200);

    let logout = |gateway, credential: String| async move {
        let response = pair
            .http
            .post(pair.url(gateway, "/v1/auth/logout"))
            .bearer_auth(credential)
            .send()
            .await
            .unwrap();
        response.status().as_u16()
    };
    assert_eq!(logout(0, session.clone()).await, 200);
    assert_eq!(
        pair.chat(1, &session).await,
        401,
        "the other replica refuses it"
    );
    assert_eq!(pair.chat(0, &session).await, 401);
    assert_eq!(pair.get(1, "/v1/balance", &session).await, 401);
    assert_eq!(pair.get(1, "/v1/usage", &session).await, 401);
    assert_eq!(
        pair.chat(1, &other).await,
        200,
        "the wallet's other session works"
    );
    let key = delegated::sign(&pair.claims(AUDIENCE), &pair.wallet).unwrap();
    assert_eq!(
        logout(1, key).await,
        400,
        "a key is revoked, not logged out"
    );
    started.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_logged_out_session_is_refused_by_every_replica() {
    a_logged_out_session_is_refused_by_every_replica(TempDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_logged_out_session_is_refused_by_every_replica() {
    let db = TempDatabase::postgres()
        .await
        .expect("Postgres test database");
    a_logged_out_session_is_refused_by_every_replica(db).await;
}

#[tokio::test]
async fn issuing_a_login_nonce_touches_no_database() {
    let h = Harness::start(TempDatabase::sqlite()).await;
    // The gateway's ledger pool is gone: anything that needs the database fails.
    h.ledger.close().await;
    for _ in 0..50 {
        let wallet = SigningKey::from_bytes(&rand_bytes());
        let response = h
            .http
            .post(format!("{}/v1/auth/nonce", h.base))
            .json(&json!({"wallet": bs58::encode(wallet.verifying_key().as_bytes()).into_string()}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }
    h.stop().await;
}

#[tokio::test]
async fn a_stranger_cannot_lock_a_wallet_out_of_login_or_revocation() {
    let h = Harness::start_with(TempDatabase::sqlite(), |config| config.limits.rpm = 2).await;
    h.fund(1_000).await;
    // Anyone may ask nonces for any wallet: more than the per-caller limit, no 429.
    for _ in 0..5 {
        let response = h
            .http
            .post(format!("{}/v1/auth/nonce", h.base))
            .json(&json!({"wallet": h.user}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let token = h.login().await;
    assert_eq!(h.chat(&token, ask("echo", "hi")).await.status(), 200);

    // Someone holding the key but not the wallet fails to revoke it, however often...
    let key = h.key(&h.claims());
    let verified = delegated::peek(&key).unwrap();
    let thief = SigningKey::from_bytes(&rand_bytes());
    let revoke = |signer: &SigningKey| {
        h.http
            .post(format!("{}/v1/auth/revoke", h.base))
            .json(&json!({"key": key, "signature": delegated::sign_revocation(&verified, signer)}))
            .send()
    };
    for _ in 0..5 {
        assert_eq!(revoke(&thief).await.unwrap().status(), 401);
    }
    // ...and the owner's revocation still goes through.
    assert_eq!(revoke(&h.wallet).await.unwrap().status(), 200);
    assert_eq!(h.chat(&key, ask("echo", "hi")).await.status(), 401);
    h.stop().await;
}
