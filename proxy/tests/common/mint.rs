//! A real Cashu mint for the ecash tests: `cdk-mintd` with its fake Lightning backend (every
//! invoice counts as paid) on 127.0.0.1, and a minimal wallet that mints tokens from it and
//! checks or spends the tokens the gateway gives back. The wallet speaks the mint's HTTP API
//! (NUT-03/04/07) directly; the blinding is the Cashu Dev Kit's.
use super::processes::{free_port, Proc};
use cdk::{
    amount::{FeeAndAmounts, SplitTarget},
    dhke::construct_proofs,
    mint_url::MintUrl,
    nuts::{CurrencyUnit, KeySet, PreMintSecrets, Proofs, Token},
    Amount,
};
use serde_json::{json, Value};
use std::{path::PathBuf, str::FromStr, time::Duration};

/// Where `cargo xtask test` installs `cdk-mintd`; `CDK_MINTD` overrides it.
fn mintd_binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("CDK_MINTD") {
        return Some(PathBuf::from(path));
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let installed = PathBuf::from(home).join(".cache/llm-gateway-tools/bin/cdk-mintd");
    if installed.exists() {
        return Some(installed);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("cdk-mintd"))
            .find(|path| path.exists())
    })
}

pub struct TestMint {
    pub url: String,
    pub proc: Proc,
    http: reqwest::Client,
    pub dir: PathBuf,
}

impl TestMint {
    /// A fresh mint, or `None` (the test is skipped) under a bare `cargo test` when `cdk-mintd`
    /// is not installed; under `cargo xtask test` or in CI a missing mint fails the test.
    pub async fn start() -> Option<Self> {
        Self::start_with(true).await
    }

    /// A fresh mint whose keyset ids are NUT-02 version 1 (`00…`) rather than version 2
    /// (`01…`), for wallets that know only the older ids.
    pub async fn start_with(keyset_v2: bool) -> Option<Self> {
        let Some(binary) = mintd_binary() else {
            localnet::prerequisite::missing(
                "cdk-mintd (a Cashu mint)",
                "cargo install --locked cdk-mintd@0.18.3 --no-default-features \
                 --features fakewallet,sqlite --root ~/.cache/llm-gateway-tools",
            );
            return None;
        };
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("mint-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let mnemonic = dir.join("mnemonic");
        std::fs::write(
            &mnemonic,
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon \
             abandon about",
        )
        .unwrap();
        std::fs::write(
            dir.join("config.toml"),
            format!(
                r#"[info]
url = "{url}/"
listen_host = "127.0.0.1"
listen_port = {port}
mnemonic = "file:{mnemonic}"
use_keyset_v2 = {keyset_v2}

[mint_info]
name = "test mint"

[[payment_backend]]
backend = "fakewallet"
unit = "sat"
min_mint = 1
max_mint = 1000000
min_melt = 1
max_melt = 1000000

[fake_wallet]
supported_units = ["sat"]
fee_percent = 0.0
reserve_fee_min = 0
min_delay_time = 0
max_delay_time = 0

[database]
engine = "sqlite"
"#,
                mnemonic = mnemonic.display()
            ),
        )
        .unwrap();
        let work_dir = dir.to_string_lossy().into_owned();
        let init = std::process::Command::new(&binary)
            .args([
                "--work-dir",
                &work_dir,
                "config",
                "init",
                "--new-mint",
                "--file",
            ])
            .arg(dir.join("config.toml"))
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "cdk-mintd config init: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let mut proc = Proc::new("cdk-mintd", &binary, &["--work-dir", &work_dir], &dir);
        proc.spawn();
        let http = reqwest::Client::new();
        proc.healthy(&http, &format!("{url}/v1/info")).await;
        Some(Self {
            url,
            proc,
            http,
            dir,
        })
    }

    /// Stops the mint (SIGKILL) until [`TestMint::restart`].
    pub async fn stop(&mut self) {
        self.proc.kill().await;
    }

    pub async fn restart(&mut self) {
        self.proc.spawn();
        self.proc
            .healthy(&self.http, &format!("{}/v1/info", self.url))
            .await;
    }

    async fn keyset(&self) -> KeySet {
        let keys: Value = self.get("/v1/keys").await;
        let sat = keys["keysets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|keyset| keyset["unit"] == "sat")
            .unwrap()
            .clone();
        serde_json::from_value(sat).unwrap()
    }

    /// Proofs worth `sats`, minted against a (fake-paid) Lightning invoice.
    pub async fn proofs(&self, sats: u64) -> Proofs {
        let quote: Value = self
            .post(
                "/v1/mint/quote/bolt11",
                json!({"amount": sats, "unit": "sat"}),
            )
            .await;
        let id = quote["quote"].as_str().unwrap().to_owned();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let state: Value = self.get(&format!("/v1/mint/quote/bolt11/{id}")).await;
            if state["state"] == "PAID" {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "quote never paid: {state}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let keyset = self.keyset().await;
        let outputs = self.outputs(&keyset, sats);
        let minted: Value = self
            .post(
                "/v1/mint/bolt11",
                json!({"quote": id, "outputs": outputs.blinded_messages()}),
            )
            .await;
        let signatures = serde_json::from_value(minted["signatures"].clone()).unwrap();
        construct_proofs(signatures, outputs.rs(), outputs.secrets(), &keyset.keys).unwrap()
    }

    fn outputs(&self, keyset: &KeySet, sats: u64) -> PreMintSecrets {
        let denominations = keyset.keys.keys().keys().map(|a| u64::from(*a)).collect();
        let split = FeeAndAmounts::from((0, denominations));
        PreMintSecrets::random(
            keyset.id,
            Amount::from(sats),
            &SplitTarget::default(),
            &split,
        )
        .unwrap()
    }

    /// A cashuB token worth `sats` from this mint.
    pub async fn token(&self, sats: u64) -> String {
        let proofs = self.proofs(sats).await;
        Token::new(self.mint_url(), proofs, None, CurrencyUnit::Sat).to_string()
    }

    pub fn mint_url(&self) -> MintUrl {
        MintUrl::from_str(&self.url).unwrap()
    }

    /// The proofs of a token from this mint.
    pub async fn token_proofs(&self, token: &str) -> Proofs {
        let token = Token::from_str(token).unwrap();
        let keysets: Value = self.get("/v1/keysets").await;
        let infos =
            serde_json::from_value::<Vec<cdk::nuts::KeySetInfo>>(keysets["keysets"].clone())
                .unwrap();
        token.proofs(&infos).unwrap()
    }

    /// The mint's NUT-07 state of each proof of `token`: "UNSPENT", "PENDING" or "SPENT".
    pub async fn states(&self, token: &str) -> Vec<String> {
        self.proof_states(&self.token_proofs(token).await).await
    }

    /// Asserts that every proof the gateway's ledger counts as its own is unspent at this mint:
    /// the books agree with the mint, and no proof the mint spent is ever offered again.
    pub async fn agrees_with(&self, ledger: &indexer::ledger::Ledger) {
        let held: Proofs = ledger
            .cashu_held_proofs()
            .await
            .unwrap()
            .into_iter()
            .map(|(_, proof)| {
                cdk::nuts::Proof::new(
                    Amount::from(proof.amount as u64),
                    proof.keyset_id.parse().unwrap(),
                    proof.secret.parse().unwrap(),
                    cdk::nuts::PublicKey::from_hex(&proof.c).unwrap(),
                )
            })
            .collect();
        if held.is_empty() {
            return;
        }
        let states = self.proof_states(&held).await;
        assert!(
            states.iter().all(|state| state == "UNSPENT"),
            "the ledger holds proofs the mint does not count as unspent: {states:?}"
        );
    }

    /// The mint's NUT-07 state of each of `proofs`.
    pub async fn proof_states(&self, proofs: &Proofs) -> Vec<String> {
        let ys: Vec<String> = proofs
            .iter()
            .map(|proof| proof.y().unwrap().to_hex())
            .collect();
        let states: Value = self.post("/v1/checkstate", json!({"Ys": ys})).await;
        states["states"]
            .as_array()
            .unwrap()
            .iter()
            .map(|state| state["state"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Spends `token` at the mint (swaps it for fresh proofs) and returns what it was worth:
    /// proof that the gateway's change is real ecash.
    pub async fn redeem(&self, token: &str) -> u64 {
        let proofs = self.token_proofs(token).await;
        let value: u64 = proofs.iter().map(|p| u64::from(p.amount)).sum();
        let keyset = self.keyset().await;
        let outputs = self.outputs(&keyset, value);
        let swapped: Value = self
            .post(
                "/v1/swap",
                json!({"inputs": proofs, "outputs": outputs.blinded_messages()}),
            )
            .await;
        let signatures: Vec<Value> = serde_json::from_value(swapped["signatures"].clone()).unwrap();
        assert_eq!(signatures.len(), outputs.len(), "swap refused: {swapped}");
        value
    }

    async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        response.json().await.unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }
}

/// The value of a token (sats), without asking its mint.
pub fn value(token: &str) -> u64 {
    u64::from(Token::from_str(token).unwrap().value().unwrap())
}
