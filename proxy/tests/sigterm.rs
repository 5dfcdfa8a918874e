//! `proxy run` is a service: it stops cleanly on SIGTERM (exit code 0, within a bound), as on
//! Ctrl-C, the way service managers stop it.
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
async fn proxy_run_stops_cleanly_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("proxy-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keys = nostr_sdk::prelude::Keys::generate();
    let key_file = dir.join("proxy.key");
    std::fs::write(&key_file, keys.secret_key().to_secret_hex()).unwrap();
    let port = free_port();
    let config = dir.join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            r#"listen = "127.0.0.1:{port}"
database_url = "sqlite:{db}"

[nostr]
secret_key_file = "{key}"
machine = "{machine}"

[[models]]
id = "echo"
prompt_price = 1
completion_price = 1
max_output_tokens = 16
upstreams = [{{ base_url = "http://127.0.0.1:{upstream}/v1" }}]
"#,
            db = dir.join("ledger.sqlite").display(),
            key = key_file.display(),
            machine = nostr_sdk::prelude::Keys::generate().public_key().to_hex(),
            upstream = free_port(),
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_proxy"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("proxy starts");

    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/health");
    let started = Instant::now();
    loop {
        if let Ok(response) = http.get(&url).send().await {
            if response.status() == 200 {
                break;
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "proxy exited before serving /health"
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
            panic!("proxy did not stop within 15 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
