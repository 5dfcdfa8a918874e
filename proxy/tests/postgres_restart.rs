//! The ledger's Postgres server crashes and comes back under load. Two gateway replicas share a
//! private Postgres cluster (started by this test, so that it can be killed); while callers
//! keep sending paid requests, the server is stopped with `pg_ctl stop -m immediate` (a crash:
//! no checkpoint, recovery from the WAL) and started again. The gateways, never restarted,
//! serve again; every request a client got a 200 for is debited with its usage record (no
//! committed spend is lost), nothing stays reserved and the books reconcile.
mod common;

use common::{ask, config, fund, gateway, init_tracing, rand_bytes, settled};
use indexer::ledger::Ledger;
use localnet::MockUpstream;
use nostr_sdk::prelude::Keys;
use proxy::auth::session::TokenSigner;
use std::{
    collections::HashSet,
    net::TcpListener,
    path::PathBuf,
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

/// The server refuses to run as root: then its tools run as the `postgres` user.
fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout == b"0\n")
}

/// A Postgres cluster of this test's own, run as the `postgres` user when the test is root.
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    home: PathBuf,
    port: u16,
}

impl Cluster {
    fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("Postgres server binaries (/usr/lib/postgresql): cargo xtask install")
            .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
            .filter(|bin| bin.join("initdb").exists())
            .max()
            .expect("initdb under /usr/lib/postgresql/*/bin");
        let home = std::env::temp_dir().join(format!("pg-restart-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&home).unwrap();
        if running_as_root() {
            let owned = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&home)
                .status()
                .unwrap();
            assert!(owned.success());
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Self {
            bin,
            data: home.join("data"),
            home,
            port,
        };
        cluster.run(
            "initdb",
            &[
                "--username",
                "postgres",
                "--auth",
                "trust",
                "-D",
                &cluster.data.to_string_lossy(),
            ],
        );
        cluster.up();
        cluster
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let mut command = if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        let output = command.args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn up(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=100",
            self.port,
            self.home.display()
        );
        let (data, log) = (self.data.to_string_lossy(), self.home.join("server.log"));
        self.run(
            "pg_ctl",
            &[
                "start",
                "--wait",
                "-D",
                &data,
                "-l",
                &log.to_string_lossy(),
                "-o",
                &options,
            ],
        );
    }

    /// A crash: the server stops without a checkpoint and recovers from its WAL at start.
    fn crash(&self) {
        let data = self.data.to_string_lossy();
        self.run(
            "pg_ctl",
            &["stop", "-m", "immediate", "--wait", "-D", &data],
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data.to_string_lossy().into_owned();
        let _ = std::panic::catch_unwind(|| {
            self.run("pg_ctl", &["stop", "-m", "immediate", "-D", &data])
        });
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// What the callers saw.
#[derive(Default)]
struct Seen {
    /// Request ids of every 200.
    served: Mutex<HashSet<String>>,
    served_after_restart: AtomicUsize,
    failed: AtomicUsize,
    /// The status of each refusal (0: no answer).
    refusals: Mutex<Vec<u16>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_crash_under_load_loses_no_committed_spend() {
    init_tracing();
    let cluster = Cluster::start();
    let url = cluster.url();
    let mock = MockUpstream::start(0).await.unwrap();
    let keys = Keys::generate();
    let secret = b"a test secret of at least thirty-two bytes".to_vec();
    let mut ledgers = Vec::new();
    let mut gateways = Vec::new();
    for _ in 0..2 {
        let ledger = Ledger::connect(&url).await.unwrap();
        let mut config = config(&mock, &url);
        (config.limits.rpm, config.limits.tpm) = (1_000_000, 1_000_000_000_000);
        (
            config.reservation_ttl_seconds,
            config.limits.request_timeout_seconds,
        ) = (5, 5);
        gateways.push(gateway(config, ledger.clone(), &keys).await);
        ledgers.push(ledger);
    }
    let user = bs58::encode(rand_bytes()).into_string();
    fund(&ledgers[0], &user, 10_000_000).await;
    let token = TokenSigner::new(secret).issue(&user, indexer::ledger::now() + 600);
    let urls: Arc<Vec<String>> = Arc::new(
        gateways
            .iter()
            .map(|gateway| format!("http://{}/v1/chat/completions", gateway.addr))
            .collect(),
    );

    let (seen, stop, restarted) = (
        Arc::new(Seen::default()),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let callers: Vec<_> = (0..8)
        .map(|caller| {
            let (http, urls, token) = (http.clone(), urls.clone(), token.clone());
            let (seen, stop, restarted) = (seen.clone(), stop.clone(), restarted.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let after = restarted.load(Ordering::SeqCst);
                    let sent = http
                        .post(&urls[caller % urls.len()])
                        .bearer_auth(&token)
                        .json(&ask("echo", "still there?"))
                        .send()
                        .await;
                    match sent {
                        Ok(response) if response.status() == 200 => {
                            let id = response.headers()["x-request-id"]
                                .to_str()
                                .unwrap()
                                .to_owned();
                            seen.served.lock().unwrap().insert(id);
                            if after {
                                seen.served_after_restart.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        refused => {
                            let status = refused.map_or(0, |response| response.status().as_u16());
                            seen.refusals.lock().unwrap().push(status);
                            seen.failed.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            })
        })
        .collect();

    let wait_for = |what: &str, check: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !check() {
            assert!(Instant::now() < deadline, "never happened: {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let served = || seen.served.lock().unwrap().len();
    tokio::task::block_in_place(|| {
        wait_for("requests served before the crash", &|| served() >= 200);
        cluster.crash();
        let before = served();
        let down = Instant::now();
        wait_for("a request refused while the server is down", &|| {
            seen.failed.load(Ordering::SeqCst) > 0
        });
        eprintln!("first refusal {:?} after the crash", down.elapsed());
        cluster.up();
        restarted.store(true, Ordering::SeqCst);
        wait_for("requests served after the restart", &|| {
            seen.served_after_restart.load(Ordering::SeqCst) >= 200
        });
        eprintln!("served {before} before the crash");
    });
    stop.store(true, Ordering::SeqCst);
    for caller in callers {
        caller.await.unwrap();
    }

    // Settlements that failed during the outage are retried, or charged by the sweep.
    let deadline = Instant::now() + Duration::from_secs(30);
    let balance = loop {
        let balance = ledgers[0].balance(&user).await.unwrap();
        if balance.reserved == 0 {
            break balance;
        }
        assert!(Instant::now() < deadline, "still reserved: {balance:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let usage = ledgers[0].usage(&user, None, 100_000).await.unwrap();
    let recorded: HashSet<&str> = usage.iter().map(|row| row.request_id.as_str()).collect();
    let served = seen.served.lock().unwrap().clone();
    let lost: Vec<&String> = served
        .iter()
        .filter(|id| !recorded.contains(id.as_str()))
        .collect();
    assert!(lost.is_empty(), "200s without their debit: {lost:?}");
    let charged: i64 = usage.iter().map(|row| row.cost).sum();
    assert!(charged <= balance.debited, "usage {charged}, {balance:?}");
    let audit = ledgers[0].audit().await.unwrap();
    assert!(audit.is_clean(), "{audit:?}");
    let refusals = seen.refusals.lock().unwrap().clone();
    assert!(
        refusals.iter().all(|status| *status == 503),
        "while the ledger is down, 503 (retry) and nothing else: {refusals:?}"
    );
    eprintln!(
        "postgres crash: {} served ({} after the restart), {} failed during the outage; \
         debited {}",
        served.len(),
        seen.served_after_restart.load(Ordering::SeqCst),
        seen.failed.load(Ordering::SeqCst),
        balance.debited
    );
    for gateway in gateways {
        gateway.shutdown().await;
    }
    for ledger in ledgers {
        ledger.close().await;
    }
    drop(cluster);
}

/// The server closes every connection of a gateway (an administrator's `pg_terminate_backend`,
/// a proxy's idle timeout) while it is up: the next requests are served on new connections,
/// none refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_the_server_closed_are_replaced_without_refusing_anyone() {
    init_tracing();
    let db = indexer::ledger::testing::TempDatabase::postgres()
        .await
        .expect("Postgres test database");
    let mock = MockUpstream::start(0).await.unwrap();
    let ledger = Ledger::connect(&db.url).await.unwrap();
    let gateway = gateway(config(&mock, &db.url), ledger.clone(), &Keys::generate()).await;
    let user = bs58::encode(rand_bytes()).into_string();
    fund(&ledger, &user, 1_000_000).await;
    let secret = b"a test secret of at least thirty-two bytes".to_vec();
    let token = TokenSigner::new(secret).issue(&user, indexer::ledger::now() + 600);
    let http = reqwest::Client::new();
    let chat = || {
        http.post(format!("http://{}/v1/chat/completions", gateway.addr))
            .bearer_auth(&token)
            .json(&ask("echo", "hello"))
            .send()
    };
    assert_eq!(chat().await.unwrap().status(), 200);
    let database = db.url.rsplit('/').next().unwrap().to_owned();
    let admin = sqlx::PgPool::connect(&indexer::ledger::testing::postgres_admin_url())
        .await
        .unwrap();
    let cut: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = $1 AND pid <> pg_backend_pid()) AS cut",
    )
    .bind(&database)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!(cut > 0, "no connection of the gateway was cut");
    admin.close().await;
    for _ in 0..5 {
        let response = chat().await.unwrap();
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }
    // Settlements run after the response: wait for the last one before comparing.
    assert_eq!(
        settled(&ledger, &user).await.debited,
        ledger
            .usage(&user, None, 100)
            .await
            .unwrap()
            .iter()
            .map(|row| row.cost)
            .sum::<i64>()
    );
    gateway.shutdown().await;
    ledger.close().await;
    db.remove().await;
}
