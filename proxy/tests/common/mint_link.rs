//! A link between the gateways and a test mint that can hold swaps, answer duplicates in
//! flight as cdk-mintd does, and lose answers: the mint's side of the races and crashes the
//! Cashu tests stage.
use axum::{body::Bytes, extract::Request, http::StatusCode, response::IntoResponse};
use serde_json::{json, Value};
use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

/// Stands between the gateways and the mint: holds each swap for `hold`, answers a swap whose
/// inputs are already in flight with cdk-mintd's "Token pending", and, while `lose` is set,
/// lets the mint do a swap but loses its answer (a crash or a cut connection right after the
/// mint signed).
pub struct MintLink {
    pub url: String,
    lose: Arc<AtomicBool>,
    swaps: Arc<AtomicUsize>,
}

/// Takes a swap's input secrets out of the in-flight set when it ends, however it ends.
struct InFlight {
    set: Arc<Mutex<HashSet<String>>>,
    secrets: Vec<String>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut set = self.set.lock().unwrap();
        for secret in &self.secrets {
            set.remove(secret);
        }
    }
}

impl MintLink {
    pub async fn start(mint: &str, hold: Duration) -> Self {
        let lose = Arc::new(AtomicBool::new(false));
        let swaps = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(Mutex::new(HashSet::<String>::new()));
        let (flag, count, mint, http) = (
            lose.clone(),
            swaps.clone(),
            mint.to_owned(),
            reqwest::Client::new(),
        );
        let forward = move |request: Request| {
            let (flag, count, mint, http, in_flight) = (
                flag.clone(),
                count.clone(),
                mint.clone(),
                http.clone(),
                in_flight.clone(),
            );
            // A task of its own: a gateway that stops waiting does not stop the mint.
            let task = tokio::spawn(async move {
                let (parts, body) = request.into_parts();
                let body: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
                let swap = parts.uri.path() == "/v1/swap";
                let mut _held = None;
                if swap {
                    let parsed: Value = serde_json::from_slice(&body).unwrap();
                    let secrets: Vec<String> = parsed["inputs"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|input| input["secret"].as_str().unwrap().to_owned())
                        .collect();
                    {
                        let mut set = in_flight.lock().unwrap();
                        if secrets.iter().any(|secret| set.contains(secret)) {
                            let pending = json!({"detail": "Token is pending", "code": 11002});
                            return (StatusCode::BAD_REQUEST, axum::Json(pending)).into_response();
                        }
                        set.extend(secrets.iter().cloned());
                    }
                    _held = Some(InFlight {
                        set: in_flight.clone(),
                        secrets,
                    });
                    count.fetch_add(1, Ordering::SeqCst);
                    // The sleep is the staged behaviour itself: a mint slow to answer a swap,
                    // while duplicates arrive.
                    tokio::time::sleep(hold).await;
                }
                let answer = http
                    .request(parts.method, format!("{mint}{}", parts.uri))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
                let bytes = answer.bytes().await.unwrap();
                if swap && flag.load(Ordering::SeqCst) {
                    return (StatusCode::BAD_GATEWAY, "connection lost").into_response();
                }
                (status, [("content-type", "application/json")], bytes).into_response()
            });
            async move { task.await.unwrap() }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(forward);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, lose, swaps }
    }

    pub fn lose_answers(&self, lose: bool) {
        self.lose.store(lose, Ordering::SeqCst);
    }

    /// Swaps passed to the mint so far.
    pub fn swaps(&self) -> usize {
        self.swaps.load(Ordering::SeqCst)
    }

    /// A token of `proofs` naming the mint by the link's address (where the gateways reach it).
    pub fn token(&self, proofs: cdk::nuts::Proofs) -> String {
        cdk::nuts::Token::new(
            self.url.parse().unwrap(),
            proofs,
            None,
            cdk::nuts::CurrencyUnit::Sat,
        )
        .to_string()
    }
}
