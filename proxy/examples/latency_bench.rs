//! The gateway's added latency and its throughput, in one run, against the in-repo mock.
//!
//! 1. Fixed rate: requests go out at `RATE`/s for `SECONDS`, alternating between the mock
//!    directly and the gateway in front of it (same client, keep-alive, TCP_NODELAY); the
//!    added latency is the gateway's percentile minus the mock's.
//! 2. Max throughput: `WORKERS` closed-loop clients through the gateway for `SECONDS`.
//!
//! Every request is authenticated, reserved, relayed and settled on a SQLite ledger (or the
//! `DATABASE_URL` given). Run: `cargo run --release -p proxy --example latency_bench`.
use ledger::{testing::TempDatabase, Ledger, NewEntry, Payment};
use localnet::MockUpstream;
use nostr_sdk::prelude::Keys;
use proxy::{
    config::{Config, ModelConfig, UpstreamConfig},
    server::{Gateway, Parts},
    state::NostrIdentity,
};
use std::time::{Duration, Instant};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rate = env("RATE", 500);
    let seconds = env("SECONDS", 10);
    let workers = env("WORKERS", 32);
    let temp = TempDatabase::sqlite();
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| temp.url.clone());
    let ledger = Ledger::connect(&url).await?;
    let mock = MockUpstream::start(0).await?;
    let mut config = Config {
        database_url: url.clone(),
        models: vec![ModelConfig {
            id: "echo".into(),
            prompt_price: 1_000_000,
            completion_price: 1_000_000,
            max_output_tokens: 64,
            upstreams: vec![UpstreamConfig {
                base_url: mock.base_url(),
                model: Some("echo".into()),
                api_key_env: None,
                api_key_file: None,
                bound_field: Default::default(),
                reports_usage: true,
            }],
        }],
        ..Config::default()
    };
    config.nostr.machine = Keys::generate().public_key().to_hex();
    config.limits.rpm = u32::MAX;
    config.limits.tpm = u64::MAX;
    let keys = Keys::generate();
    let gateway = Gateway::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        Parts {
            config,
            ledger: ledger.clone(),
            nostr: NostrIdentity {
                keys: keys.clone(),
                session: indexer::wire::DEFAULT_SESSION.into(),
                machine: keys.public_key(),
            },
            token_secret: b"benchmark secret, thirty-two bytes!".to_vec(),
            relay: None,
        },
    )
    .await?;
    let user = "BenchWallet111111111111111111111111111111111";
    ledger
        .record_payment(&Payment {
            signature: "bench".into(),
            index: 0,
            user: user.into(),
            namespace_id: 0,
            nonce: 0,
            amount: 1,
            mint: None,
            tokens: i64::MAX / 4,
            slot: 1,
        })
        .await?;
    ledger
        .apply(&NewEntry::credit(
            user,
            i64::MAX / 4,
            Some("bench"),
            "bench",
            "controller",
        ))
        .await?;
    let token = gateway
        .state
        .auth
        .tokens()
        .issue(user, ledger::now() + 3_600);

    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1_024)
        .build()?;
    let body = serde_json::json!({
        "model": "echo",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "how fast is the gateway?"}],
    });
    let direct = format!("{}/chat/completions", mock.base_url());
    let proxied = format!("http://{}/v1/chat/completions", gateway.addr);
    let call = move |url: String| {
        let (http, token, body) = (http.clone(), token.clone(), body.clone());
        async move {
            let started = Instant::now();
            let response = http.post(url).bearer_auth(token).json(&body).send().await?;
            let ok = response.status().is_success();
            response.bytes().await?;
            anyhow::ensure!(ok, "request failed");
            anyhow::Ok(started.elapsed())
        }
    };
    // Warm up connections and caches.
    for _ in 0..200 {
        call(direct.clone()).await?;
        call(proxied.clone()).await?;
    }

    // 1. Fixed rate, interleaved.
    let total = rate * seconds;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        ticker.tick().await;
        let url = if i % 2 == 0 {
            direct.clone()
        } else {
            proxied.clone()
        };
        tasks.push((i % 2 == 0, tokio::spawn(call(url))));
    }
    let (mut to_mock, mut through) = (Vec::new(), Vec::new());
    for (is_direct, task) in tasks {
        let latency = task.await??;
        if is_direct {
            to_mock.push(latency)
        } else {
            through.push(latency)
        }
    }
    to_mock.sort();
    through.sort();
    let (d50, d90, d99) = (
        percentile(&to_mock, 0.50),
        percentile(&to_mock, 0.90),
        percentile(&to_mock, 0.99),
    );
    let (g50, g90, g99) = (
        percentile(&through, 0.50),
        percentile(&through, 0.90),
        percentile(&through, 0.99),
    );
    println!(
        "fixed rate {rate}/s for {seconds}s ({} direct, {} through the gateway)",
        to_mock.len(),
        through.len()
    );
    let line = |name: &str, p50: Duration, p90: Duration, p99: Duration| {
        println!(
            "  {name:<17} p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms",
            ms(p50),
            ms(p90),
            ms(p99)
        )
    };
    line("mock directly:", d50, d90, d99);
    line("through gateway:", g50, g90, g99);
    line(
        "added by gateway:",
        g50.saturating_sub(d50),
        g90.saturating_sub(d90),
        g99.saturating_sub(d99),
    );

    // 2. Max throughput, closed loop.
    for (name, url) in [
        ("mock directly", direct.clone()),
        ("through gateway", proxied.clone()),
    ] {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let runners: Vec<_> = (0..workers)
            .map(|_| {
                let (url, call) = (url.clone(), call.clone());
                tokio::spawn(async move {
                    let mut done = 0u64;
                    while Instant::now() < deadline {
                        call(url.clone()).await?;
                        done += 1;
                    }
                    anyhow::Ok(done)
                })
            })
            .collect();
        let mut done = 0;
        for runner in runners {
            done += runner.await??;
        }
        println!(
            "max throughput {name}: {:.0} requests/s ({workers} concurrent clients)",
            done as f64 / started.elapsed().as_secs_f64()
        );
    }
    gateway.shutdown().await;
    let balance = ledger.balance(user).await?;
    println!(
        "settled: reserved {} (must be 0), debited {}",
        balance.reserved, balance.debited
    );
    ledger.close().await;
    temp.remove().await;
    Ok(())
}
