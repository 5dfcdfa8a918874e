//! The operator's commands, run as the `indexer` binary against a local validator's RPC:
//! `initialize`, `namespace create | update | show`, `keygen` and `doctor`, and the errors that
//! name their cause (not deployed, not initialised, not the authority, no SOL, no node).
use indexer::ledger::{testing::TempDatabase, Ledger};
use localnet::{EmbeddedRelay, Validator, ValidatorConfig};
use serde_json::Value;
use solana_commitment_config::CommitmentConfig;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_sdk::signature::{read_keypair_file, Signer};
use std::path::{Path, PathBuf};

const SOL: u64 = 1_000_000_000;

/// A folder of key and config files, removed at the end.
struct Files(PathBuf);

impl Files {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{name}-{}", uuid_like()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// One run of the binary: exit code and what it printed.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
    fn fails_with(self, cause: &str) -> Self {
        assert_ne!(self.code, 0, "expected a failure: {}", self.stdout);
        assert!(
            self.stderr.contains(cause) || self.stdout.contains(cause),
            "expected {cause:?} in\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

/// Runs `indexer args…` with a home of its own (no Solana CLI config of the machine's).
async fn indexer(home: &Files, args: &[&str]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_indexer"))
        .args(args)
        .env("HOME", &home.0)
        .env_remove("SOLANA_URL")
        .env_remove("SOLANA_KEYPAIR")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("the indexer binary runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn funded_keypair(rpc: &RpcClient, files: &Files, home: &Files, name: &str) -> String {
    let path = files.path(name);
    let out = indexer(home, &["keygen", "--solana", "--out", &path])
        .await
        .ok();
    let pubkey = read_keypair_file(&path).unwrap().pubkey();
    assert_eq!(out.stdout.trim(), pubkey.to_string());
    let signature = rpc.request_airdrop(&pubkey, 10 * SOL).await.unwrap();
    rpc.poll_for_signature_with_commitment(&signature, CommitmentConfig::confirmed())
        .await
        .unwrap();
    path
}

/// A local validator with the program, its URL, an RPC client, and folders for keys and home.
async fn cluster(name: &str) -> (Validator, String, RpcClient, Files, Files) {
    let validator = Validator::start(ValidatorConfig::free_ports().unwrap())
        .await
        .unwrap();
    let url = validator.rpc_url().to_owned();
    let rpc = RpcClient::new_with_commitment(url.clone(), CommitmentConfig::confirmed());
    let files = Files::new(&format!("{name}-keys"));
    let home = Files::new(&format!("{name}-home"));
    (validator, url, rpc, files, home)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_initializes_creates_updates_and_shows_a_namespace() {
    let (mut validator, url, rpc, files, home) = cluster("operator").await;
    let authority = funded_keypair(&rpc, &files, &home, "authority.json").await;
    let other = funded_keypair(&rpc, &files, &home, "other.json").await;
    let bot = files.path("bot.json");
    indexer(&home, &["keygen", "--solana", "--out", &bot])
        .await
        .ok();
    indexer(&home, &["keygen", "--solana", "--out", &bot])
        .await
        .fails_with("not overwriting");
    let bot_pubkey = read_keypair_file(&bot).unwrap().pubkey().to_string();
    let broke = files.path("broke.json");
    indexer(&home, &["keygen", "--solana", "--out", &broke])
        .await
        .ok();

    indexer(&home, &["namespace", "show", "--url", &url])
        .await
        .fails_with("not initialised on this cluster: run `indexer initialize`");
    indexer(&home, &["initialize", "--url", &url, "--keypair", &broke])
        .await
        .fails_with("insufficient funds");
    let init = indexer(
        &home,
        &["initialize", "--url", &url, "--keypair", &authority],
    )
    .await
    .ok();
    let genesis = rpc.get_genesis_hash().await.unwrap().to_string();
    assert_eq!(init.json()["cluster"], genesis.as_str());
    indexer(
        &home,
        &["initialize", "--url", &url, "--keypair", &authority],
    )
    .await
    .fails_with(&format!(
        "already initialised on this cluster (cluster tag {genesis})"
    ));

    let create = |name: String| {
        let (home, url, authority, bot) = (&home, &url, &authority, &bot);
        async move {
            indexer(
                home,
                &[
                    "namespace",
                    "create",
                    "--name",
                    &name,
                    "--bot",
                    bot,
                    "--url",
                    url,
                    "--keypair",
                    authority,
                ],
            )
            .await
        }
    };
    create("x".repeat(51)).await.fails_with("NameTooLong");
    let created = create("acme".into()).await.ok().json();
    assert_eq!(created["id"], 0);
    assert_eq!(created["name"], "acme");
    assert_eq!(created["bot"], bot_pubkey.as_str());
    let authority_pubkey = read_keypair_file(&authority).unwrap().pubkey().to_string();
    assert_eq!(
        created["treasury"],
        authority_pubkey.as_str(),
        "default treasury"
    );

    let treasury = files.path("treasury.json");
    indexer(&home, &["keygen", "--solana", "--out", &treasury])
        .await
        .ok();
    let treasury_pubkey = read_keypair_file(&treasury).unwrap().pubkey().to_string();
    indexer(
        &home,
        &[
            "namespace",
            "update",
            "--id",
            "0",
            "--treasury",
            &treasury,
            "--url",
            &url,
            "--keypair",
            &other,
        ],
    )
    .await
    .fails_with(&format!("namespace 0's authority is {authority_pubkey}"));
    indexer(
        &home,
        &[
            "namespace",
            "update",
            "--id",
            "0",
            "--url",
            &url,
            "--keypair",
            &authority,
        ],
    )
    .await
    .fails_with("nothing to change");
    indexer(
        &home,
        &[
            "namespace",
            "update",
            "--id",
            "7",
            "--name",
            "x",
            "--url",
            &url,
            "--keypair",
            &authority,
        ],
    )
    .await
    .fails_with("namespace 7 does not exist");
    let updated = indexer(
        &home,
        &[
            "namespace",
            "update",
            "--id",
            "0",
            "--name",
            "acme llm",
            "--treasury",
            &treasury_pubkey,
            "--url",
            &url,
            "--keypair",
            &authority,
        ],
    )
    .await
    .ok()
    .json();
    assert_eq!(updated["name"], "acme llm");
    assert_eq!(updated["treasury"], treasury_pubkey.as_str());

    let shown = indexer(&home, &["namespace", "show", "--id", "0", "--url", &url])
        .await
        .ok()
        .json();
    assert_eq!(shown["name"], "acme llm");
    assert_eq!(shown["bot"], bot_pubkey.as_str());
    let all = indexer(&home, &["namespace", "show", "-u", &url])
        .await
        .ok()
        .json();
    assert_eq!(all.as_array().unwrap().len(), 1);

    // The Solana CLI's config names the cluster and the keypair when the flags do not.
    let config = files.path("cli.yml");
    std::fs::write(
        &config,
        format!(
            "json_rpc_url: {url}\nwebsocket_url: ''\nkeypair_path: {authority}\n\
             address_labels: {{}}\ncommitment: confirmed\n"
        ),
    )
    .unwrap();
    let by_config = indexer(
        &home,
        &[
            "namespace",
            "create",
            "--name",
            "second",
            "--bot",
            &bot_pubkey,
            "-C",
            &config,
        ],
    )
    .await
    .ok()
    .json();
    assert_eq!(by_config["id"], 1);
    assert_eq!(by_config["authority"], authority_pubkey.as_str());

    validator.shutdown();
    indexer(&home, &["namespace", "show", "--url", &url])
        .await
        .fails_with(&format!("cannot reach the Solana RPC at {url}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_the_program_is_named_as_such() {
    let mut validator = Validator::start(ValidatorConfig {
        with_program: false,
        ..ValidatorConfig::free_ports().unwrap()
    })
    .await
    .unwrap();
    let home = Files::new("operator-home");
    indexer(&home, &["initialize", "--url", validator.rpc_url()])
        .await
        .fails_with(&format!(
            "the program {} is not deployed on {}",
            balance_payment::ID,
            validator.rpc_url()
        ));
    validator.shutdown();
}

/// Writes an indexer config for the doctor.
fn write_config(files: &Files, name: &str, body: &str) -> String {
    let path = files.path(name);
    std::fs::write(&path, body).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_doctor_passes_a_ready_config_and_names_each_fault() {
    let (mut validator, url, rpc, files, home) = cluster("doctor").await;
    let authority = funded_keypair(&rpc, &files, &home, "authority.json").await;
    let bot = funded_keypair(&rpc, &files, &home, "bot.json").await;
    let stranger = funded_keypair(&rpc, &files, &home, "stranger.json").await;
    indexer(&home, &["initialize", "-u", &url, "-k", &authority])
        .await
        .ok();
    let namespace = indexer(
        &home,
        &[
            "namespace",
            "create",
            "--name",
            "doc",
            "--bot",
            &bot,
            "-u",
            &url,
            "-k",
            &authority,
        ],
    )
    .await
    .ok()
    .json();
    let nostr_key = files.path("controller.key");
    let printed = indexer(&home, &["keygen", "--out", &nostr_key])
        .await
        .ok()
        .stdout;
    let controller_hex = printed.split_whitespace().next().unwrap().to_owned();
    let machine = nostr_sdk::Keys::generate().public_key().to_hex();
    let relay = EmbeddedRelay::start(0).await.unwrap();
    let db = TempDatabase::sqlite();
    Ledger::connect(&db.url).await.unwrap().close().await;

    let config = |bot: &str, relay: &str, database: &str| {
        format!(
            "database_url = \"{database}\"\nhealth_listen = \"127.0.0.1:0\"\n\
             [nostr]\nrelays = [\"{relay}\"]\nmachine = \"{machine}\"\n\
             controller_pubkeys = [\"{controller_hex}\"]\nproxy_pubkeys = []\n\
             [chain]\nrpc_url = \"{url}\"\nnamespace_id = 0\n\
             [controller]\nbot_keypair = \"{bot}\"\nnostr_secret_key_file = \"{nostr_key}\"\n\
             treasury = \"{}\"\nmax_lamports_per_request = 1000000000\n",
            namespace["treasury"].as_str().unwrap()
        )
    };
    let good = write_config(&files, "good.toml", &config(&bot, relay.url(), &db.url));
    let report = indexer(&home, &["doctor", "--config", &good])
        .await
        .ok()
        .stdout;
    for check in [
        "rpc",
        "program",
        "cluster",
        "namespace",
        "bot",
        "treasury",
        "nostr key",
        "relay",
        "ledger",
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with("ok") && l[6..].starts_with(check)),
            "{check} not ok in\n{report}"
        );
    }

    let fresh = files.path("fresh.sqlite");
    std::fs::File::create(&fresh).unwrap();
    let bad = write_config(
        &files,
        "bad.toml",
        &config(&stranger, "ws://127.0.0.1:9", &format!("sqlite:{fresh}")),
    );
    let report = indexer(&home, &["doctor", "--config", &bad])
        .await
        .fails_with("FAIL")
        .stdout;
    let stranger_pubkey = read_keypair_file(&stranger).unwrap().pubkey();
    for cause in [
        format!("holds {stranger_pubkey}, but namespace 0's bot is"),
        "ws://127.0.0.1:9 does not answer".to_owned(),
        "lacks migrations".to_owned(),
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with("FAIL") && l.contains(&cause)),
            "{cause:?} not reported in\n{report}"
        );
    }
    let missing_db = write_config(
        &files,
        "missing.toml",
        &config(
            &bot,
            relay.url(),
            &format!("sqlite:{}", files.path("absent.sqlite")),
        ),
    );
    indexer(&home, &["doctor", "--config", &missing_db])
        .await
        .fails_with("cannot open sqlite:");
    assert!(
        !Path::new(&files.path("absent.sqlite")).exists(),
        "the doctor creates nothing"
    );

    relay.shutdown().await;
    validator.shutdown();
    indexer(&home, &["doctor", "--config", &good])
        .await
        .fails_with("cannot reach the Solana RPC");
    db.remove().await;
}

/// A new mint of the classic SPL Token program with `decimals`, paid for by `payer`.
async fn create_mint(rpc: &RpcClient, payer: &str, decimals: u8) -> solana_sdk::pubkey::Pubkey {
    use balance_payment::sdk::spl;
    let payer = read_keypair_file(payer).unwrap();
    let mint = solana_sdk::signature::Keypair::new();
    let rent = rpc
        .get_minimum_balance_for_rent_exemption(spl::MINT_LEN)
        .await
        .unwrap();
    let create = spl::create_mint(
        &payer.pubkey(),
        &mint.pubkey(),
        &payer.pubkey(),
        decimals,
        &spl::TOKEN_PROGRAM_ID,
        rent,
    )
    .unwrap();
    let blockhash = rpc.get_latest_blockhash().await.unwrap();
    let transaction = solana_sdk::transaction::Transaction::new_signed_with_payer(
        &create,
        Some(&payer.pubkey()),
        &[&payer, &mint],
        blockhash,
    );
    rpc.send_and_confirm_transaction(&transaction)
        .await
        .unwrap();
    mint.pubkey()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_lists_a_token_and_the_config_must_agree_with_its_mint() {
    use balance_payment::sdk::spl;
    let (mut validator, url, rpc, files, home) = cluster("tokens").await;
    let authority = funded_keypair(&rpc, &files, &home, "authority.json").await;
    let stranger = funded_keypair(&rpc, &files, &home, "stranger.json").await;
    let bot = funded_keypair(&rpc, &files, &home, "bot.json").await;
    indexer(&home, &["initialize", "-u", &url, "-k", &authority])
        .await
        .ok();
    let namespace = indexer(
        &home,
        &[
            "namespace",
            "create",
            "--name",
            "usd",
            "--bot",
            &bot,
            "-u",
            &url,
            "-k",
            &authority,
        ],
    )
    .await
    .ok()
    .json();
    let treasury: solana_sdk::pubkey::Pubkey =
        namespace["treasury"].as_str().unwrap().parse().unwrap();
    let mint = create_mint(&rpc, &authority, 6).await;
    let mint_text = mint.to_string();
    let namespace_cmd = |verb: &'static str, mint: String, keypair: String| {
        let (home, url) = (&home, url.clone());
        async move {
            let args = [
                "namespace",
                verb,
                "--id",
                "0",
                "--mint",
                &mint,
                "-u",
                &url,
                "-k",
                &keypair,
            ];
            indexer(home, &args).await
        }
    };

    namespace_cmd("accept-mint", mint_text.clone(), stranger.clone())
        .await
        .fails_with("namespace 0's authority is");
    let not_a_mint = solana_sdk::pubkey::Pubkey::new_unique().to_string();
    namespace_cmd("accept-mint", not_a_mint, authority.clone())
        .await
        .fails_with("is not a mint of the SPL Token or Token-2022 program");
    let listed = namespace_cmd("accept-mint", mint_text.clone(), authority.clone())
        .await
        .ok()
        .json();
    assert_eq!(listed["newly_accepted"], true);
    assert_eq!(listed["decimals"], 6);
    let treasury_account = spl::associated_token_address(&treasury, &mint, &spl::TOKEN_PROGRAM_ID);
    assert_eq!(listed["treasury_account"], treasury_account.to_string());
    assert!(
        rpc.get_account(&treasury_account).await.is_ok(),
        "the treasury can be paid"
    );
    let again = namespace_cmd("accept-mint", mint_text.clone(), authority.clone())
        .await
        .ok()
        .json();
    assert_eq!(again["newly_accepted"], false);

    // The config's `[[tokens]]` entry is checked against the mint by the doctor and by `run`.
    let nostr_key = files.path("controller.key");
    let printed = indexer(&home, &["keygen", "--out", &nostr_key])
        .await
        .ok()
        .stdout;
    let controller_hex = printed.split_whitespace().next().unwrap().to_owned();
    let machine = nostr_sdk::Keys::generate().public_key().to_hex();
    let config = |decimals: u8| {
        format!(
            "database_url = \"sqlite::memory:\"\nhealth_listen = \"127.0.0.1:0\"\n\
             [nostr]\nrelays = [\"ws://127.0.0.1:9\"]\nmachine = \"{machine}\"\n\
             controller_pubkeys = [\"{controller_hex}\"]\nproxy_pubkeys = []\n\
             [chain]\nrpc_url = \"{url}\"\nnamespace_id = 0\n\
             [controller]\nbot_keypair = \"{bot}\"\nnostr_secret_key_file = \"{nostr_key}\"\n\
             treasury = \"{treasury}\"\nmax_lamports_per_request = 1000000000\n\
             [[tokens]]\nmint = \"{mint}\"\nsymbol = \"USDC\"\ndecimals = {decimals}\n\
             tokens_per_unit = 10000\n"
        )
    };
    let token_line = |report: &str, verdict: &str| {
        report
            .lines()
            .find(|l| l.starts_with(verdict) && l[6..].starts_with("token"))
            .map(str::to_owned)
    };
    let right = write_config(&files, "right.toml", &config(6));
    let report = indexer(&home, &["doctor", "--config", &right]).await.stdout;
    assert!(
        token_line(&report, "ok").is_some_and(|l| l.contains("is accepted")),
        "{report}"
    );
    let wrong = write_config(&files, "wrong.toml", &config(9));
    let report = indexer(&home, &["doctor", "--config", &wrong]).await.stdout;
    assert!(
        token_line(&report, "FAIL").is_some_and(|l| l.contains("decimals 9 but the mint has 6")),
        "{report}"
    );
    indexer(&home, &["run", "--config", &wrong])
        .await
        .fails_with("decimals 9 but the mint has 6: every credit would be off");

    namespace_cmd("delist-mint", mint_text.clone(), authority.clone())
        .await
        .ok();
    let report = indexer(&home, &["doctor", "--config", &right]).await.stdout;
    assert!(
        token_line(&report, "FAIL").is_some_and(|l| l.contains("does not accept")),
        "{report}"
    );
    namespace_cmd("delist-mint", mint_text, authority)
        .await
        .fails_with("does not accept the token");
    validator.shutdown();
}
