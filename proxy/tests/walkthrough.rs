//! The walk-through of proxy/OPERATING.md runs as written: the block between
//! `<!-- walkthrough:begin -->` and `<!-- walkthrough:end -->` is taken from proxy/OPERATING.md
//! and run by bash, with the built
//! binaries (`proxy`, `indexer`, `localnet`) first on PATH, in a folder of its own. It starts
//! the local stand-ins, initialises the program, creates a namespace, runs the indexer and the
//! gateway as processes, tops up from a wallet, calls the gateway with the `openai` client and
//! checks the books with `indexer verify`.
use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const GUIDE: &str = include_str!("../OPERATING.md");

/// The walk-through's script: the bash block between the markers.
fn script() -> String {
    let (_, rest) = GUIDE
        .split_once("<!-- walkthrough:begin -->")
        .expect("the operating guide marks its walk-through");
    let (block, _) = rest
        .split_once("<!-- walkthrough:end -->")
        .expect("the walk-through ends");
    let block = block.trim();
    block
        .strip_prefix("```bash")
        .and_then(|b| b.strip_suffix("```"))
        .expect("the walk-through is one bash block")
        .to_owned()
}

#[test]
fn the_readme_walk_through_runs_as_written() {
    let has_openai = Command::new("python3")
        .args(["-c", "import openai"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_openai {
        return localnet::prerequisite::missing(
            "the `openai` Python package",
            "pip install -r tests/openai/requirements.txt",
        );
    }
    let binaries = Path::new(env!("CARGO_BIN_EXE_proxy")).parent().unwrap();
    for name in ["indexer", "localnet"] {
        assert!(
            binaries.join(name).exists(),
            "{name} is missing next to proxy: `cargo test --workspace` builds it"
        );
    }
    let dir = std::env::temp_dir().join(format!("walkthrough-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = format!(
        "{}:{}",
        binaries.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let started = Instant::now();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(script())
        .current_dir(&dir)
        .env("PATH", path)
        .env("HOME", &dir)
        .env_remove("GATEWAY_URL")
        .env_remove("SOLANA_URL")
        .env_remove("SOLANA_KEYPAIR")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The script stops what it started on exit; a hang still must not hang CI.
    let deadline = Instant::now() + Duration::from_secs(300);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the walk-through did not finish in 5 minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    let logs = |name: &str| {
        std::fs::read_to_string(dir.join("walkthrough").join(name)).unwrap_or_default()
    };
    assert!(
        output.status.success(),
        "the walk-through failed:\n{stdout}\n{stderr}\nindexer.log:\n{}\nproxy.log:\n{}",
        logs("indexer.log"),
        logs("proxy.log")
    );
    assert!(
        stdout.contains("\"tokens\": 10000"),
        "the top-up is credited:\n{stdout}"
    );
    assert!(
        stdout.contains("echo: hello from the walk-through |"),
        "the openai client got its answer:\n{stdout}"
    );
    assert!(
        stdout.contains("everything reconciles: verified from chain and relays"),
        "indexer verify found the books in order:\n{stdout}"
    );
    eprintln!("walk-through: {:.1} s", started.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&dir);
}
