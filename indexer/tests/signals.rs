//! `indexer run` is a service: it stops cleanly on SIGTERM (exit code 0, within a bound), as
//! service managers stop it, and serves `/health` while it runs.
#![cfg(unix)]
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexer_run_stops_cleanly_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("indexer-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let health_port = free_port();
    let relay = localnet::EmbeddedRelay::start(0).await.expect("relay");
    let machine = nostr_sdk::Keys::generate().public_key().to_hex();
    let config = dir.join("indexer.toml");
    std::fs::write(
        &config,
        format!(
            r#"database_url = "sqlite:{db}"
health_listen = "127.0.0.1:{health_port}"

[nostr]
relays = ["{relay}"]
machine = "{machine}"
controller_pubkeys = []
proxy_pubkeys = []

[chain]
rpc_url = "http://127.0.0.1:{rpc_port}"
program_id = "{program}"
namespace_id = 0
poll_seconds = 1
"#,
            db = dir.join("ledger.sqlite").display(),
            relay = relay.url(),
            rpc_port = free_port(),
            program = balance_payment::ID,
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_indexer"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("indexer starts");

    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{health_port}/health");
    let started = Instant::now();
    loop {
        // 503 until the watcher's relay connection is up.
        if let Ok(response) = http.get(&url).send().await {
            if response.status() == 200 {
                break;
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "indexer exited before serving /health"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "/health never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let stopping = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if stopping.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("indexer did not stop within 15 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
