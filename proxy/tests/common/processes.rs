//! The stack as separate processes, for tests that kill them: each [`Proc`] can be killed
//! (SIGKILL) and started again with the same arguments, its output appended to `<name>.log`.
use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};
use tokio::process::{Child, Command};

/// A binary built next to `proxy` (`cargo test --workspace` builds `indexer` and `localnet`).
pub fn sibling_binary(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_proxy")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: `cargo test --workspace` builds it (or `cargo build -p indexer -p localnet`)",
        path.display()
    );
    path
}

/// A port nothing listens on, for a process the test starts (and may restart on it).
pub fn free_port() -> u16 {
    free_ports(1)
}

/// A free port whose next port is free too: a validator serves its websocket on `--rpc-port` + 1.
pub fn free_port_pair() -> u16 {
    free_ports(2)
}

/// The first of `count` consecutive free ports. They lie below the kernel's ephemeral range
/// (32768 and up), which outgoing connections draw their source ports from, so a port handed
/// out here is not taken by a client's connection while its process restarts. Each test binary
/// starts at its own offset and counts up, so no two calls in one binary get the same port.
fn free_ports(count: u16) -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 10_000;
    const SPAN: u16 = 22_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        (std::process::id() % u32::from(SPAN)) as u16 + 1,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    loop {
        let first = FIRST + NEXT.fetch_add(count, Ordering::Relaxed) % (SPAN - count);
        if (first..first + count).all(|port| TcpListener::bind(("127.0.0.1", port)).is_ok()) {
            return first;
        }
    }
}

/// One process of the stack.
pub struct Proc {
    pub name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
    child: Option<Child>,
    /// How many times it was started.
    pub starts: u32,
}

impl Proc {
    /// Not started yet: [`Proc::spawn`] starts it.
    pub fn new(name: &'static str, program: &Path, args: &[&str], dir: &Path) -> Self {
        Self {
            name,
            program: program.to_owned(),
            args: args.iter().map(|a| a.to_string()).collect(),
            dir: dir.to_owned(),
            child: None,
            starts: 0,
        }
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.name))
    }

    /// Starts it in its folder.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let child = Command::new(&self.program)
            .args(&self.args)
            .current_dir(&self.dir)
            .env("RUST_LOG", "info,sqlx=warn,nostr_relay_pool=warn")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.name));
        self.child = Some(child);
        self.starts += 1;
    }

    /// SIGKILL, and wait until it is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().unwrap();
            child.wait().await.unwrap();
        }
    }

    /// SIGTERM, and wait (20 s at most) for it to exit.
    pub async fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
        }
    }

    /// Fails the test, with its log, if it exited by itself.
    pub fn assert_running(&mut self) {
        if let Some(child) = &mut self.child {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{} exited by itself ({status}); its log:\n{}",
                    self.name,
                    std::fs::read_to_string(self.log()).unwrap_or_default()
                );
            }
        }
    }

    /// Waits until `url` answers 200 (a service's `/health`).
    pub async fn healthy(&mut self, http: &reqwest::Client, url: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.assert_running();
            if let Ok(response) = http.get(url).send().await {
                if response.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} never became healthy at {url}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until this start printed `ready` (the `localnet` stand-ins).
    pub async fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.assert_running();
            let log = std::fs::read_to_string(self.log()).unwrap_or_default();
            if log.lines().filter(|l| l.starts_with("ready ")).count() >= self.starts as usize {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} never became ready",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Runs a command to completion in `dir` (with `dir` as its home, so no Solana CLI config of
/// the machine's applies); returns its stdout, or fails with its output.
pub async fn run_ok(program: &Path, args: &[&str], dir: &Path) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("SOLANA_URL")
        .env_remove("SOLANA_KEYPAIR")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Another replica of `config` (its own port and token secret, the deployment's proxy key
/// `keys`, written in `dir`), as a `proxy run` process that tests may SIGKILL: the process,
/// once healthy, and its chat URL.
pub async fn replica_process(
    config: &proxy::config::Config,
    keys: &nostr_sdk::Keys,
    dir: &Path,
    http: &reqwest::Client,
) -> (Proc, String) {
    let port = free_port();
    let mut config = config.clone();
    config.listen = format!("127.0.0.1:{port}");
    let key = dir.join("proxy.key");
    std::fs::write(&key, keys.secret_key().to_secret_hex()).unwrap();
    config.nostr.secret_key_file = Some(key);
    let secret = dir.join("token.secret");
    std::fs::write(&secret, super::rand_bytes()).unwrap();
    config.auth.token_secret_file = Some(secret);
    let file = dir.join("replica.toml");
    std::fs::write(&file, toml::to_string(&config).unwrap()).unwrap();
    let mut replica = Proc::new(
        "replica",
        Path::new(env!("CARGO_BIN_EXE_proxy")),
        &["run", "--config", &file.to_string_lossy()],
        dir,
    );
    replica.spawn();
    let base = format!("http://127.0.0.1:{port}");
    replica.healthy(http, &format!("{base}/health")).await;
    (replica, format!("{base}/v1/chat/completions"))
}
