//! The `localnet` binary, which process-level tests (proxy/tests/faults.rs) start and kill:
//! each stand-in says `ready <url>` once it serves, serves there, and stops on SIGTERM.
use serde_json::{json, Value};
use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    process::{Child, Command, Stdio},
};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free port whose next port is free too: a validator serves its websocket on `--rpc-port` + 1.
fn free_port_pair() -> u16 {
    loop {
        let port = free_port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// Starts `localnet args…` and returns it with the words after `ready`.
fn start(args: &[&str]) -> (Child, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_localnet"))
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let ready = loop {
        let line = lines.next().expect("it says ready").unwrap();
        if let Some(rest) = line.strip_prefix("ready ") {
            break rest.split_whitespace().map(str::to_owned).collect();
        }
    };
    // Keep reading so the child never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, ready)
}

fn terminate(mut child: Child) {
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(
        child.wait().unwrap().success(),
        "it stops cleanly on SIGTERM"
    );
}

#[tokio::test]
async fn each_stand_in_serves_where_it_says_and_stops_on_sigterm() {
    let http = reqwest::Client::new();

    let (validator, urls) = start(&["validator", "--rpc-port", &free_port_pair().to_string()]);
    let health: Value = http
        .post(&urls[0])
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "getAccountInfo",
            "params": [balance_payment::ID.to_string(), {"encoding": "base64"}]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["result"]["value"]["executable"], true, "{health}");
    assert!(urls[1].starts_with("ws://127.0.0.1:"));
    terminate(validator);

    let dir = std::env::temp_dir().join(format!("localnet-relay-{}", std::process::id()));
    let (relay, urls) = start(&[
        "relay",
        "--port",
        &free_port().to_string(),
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert!(urls[0].starts_with("ws://127.0.0.1:"));
    assert!(dir.exists(), "the store is on disk");
    terminate(relay);
    let _ = std::fs::remove_dir_all(&dir);

    let (echo, urls) = start(&["echo", "--port", &free_port().to_string()]);
    let reply: Value = http
        .post(format!("{}/chat/completions", urls[0]))
        .json(&json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["choices"][0]["message"]["content"], "echo: hi");
    terminate(echo);
}
