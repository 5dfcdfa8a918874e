//! Load clients for `tests/bench/compare.sh`, for the two questions `wrk` cannot answer:
//!
//! - [`pace`]: what the gateway adds at a given request rate (not at saturation). Requests go
//!   out on a fixed schedule, alternating between the model directly and the gateway (or its
//!   replicas, in turn), each in a task of its own, so a slow answer never holds back the
//!   requests behind it (open loop: no coordinated omission).
//! - [`streams`]: the gateway's memory with many slow streams open at once, sampled from
//!   `/proc/<pid>/status` while they run.
use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{client::conn::http1::SendRequest, header, Request, Uri};
use hyper_util::rt::TokioIo;
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};
use tokio::net::TcpStream;

/// One HTTP/1.1 endpoint and its idle keep-alive connections.
struct Target {
    uri: Uri,
    authority: String,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl Target {
    fn new(url: &str) -> anyhow::Result<Arc<Self>> {
        let uri: Uri = url.parse().with_context(|| format!("not a URL: {url}"))?;
        let authority = uri
            .authority()
            .with_context(|| format!("no host in {url}"))?
            .to_string();
        Ok(Arc::new(Self {
            uri,
            authority,
            idle: Mutex::new(Vec::new()),
        }))
    }

    async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let tcp = TcpStream::connect(&self.authority).await?;
        tcp.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(connection);
        Ok(sender)
    }

    fn request(&self, token: &str, body: &Bytes) -> anyhow::Result<Request<Full<Bytes>>> {
        Ok(Request::post(self.uri.path())
            .header(header::HOST, &self.authority)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Full::new(body.clone()))?)
    }

    /// One request on an idle connection (or a new one); the body read to its end.
    async fn call(&self, token: &str, body: &Bytes) -> anyhow::Result<()> {
        let idle = self
            .idle
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .pop();
        let mut sender = match idle {
            Some(sender) => sender,
            None => self.connect().await?,
        };
        sender.ready().await?;
        let response = sender.send_request(self.request(token, body)?).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("{status}: {}", String::from_utf8_lossy(&bytes));
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(sender);
        }
        Ok(())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len().max(1) - 1) as f64 * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// `rate` requests/s for `seconds`, every other one to `direct`, the rest to `through` in
/// turn, each with the next of `tokens` (several wallets); prints each side's p50/p90/p99 and
/// the difference.
pub async fn pace(
    rate: u32,
    seconds: u32,
    direct: &str,
    through: &[String],
    tokens: &[String],
    body: String,
) -> anyhow::Result<()> {
    if rate == 0 || through.is_empty() || tokens.is_empty() {
        bail!("give a rate above 0, at least one --through URL and a token");
    }
    let direct = Target::new(direct)?;
    let through = through
        .iter()
        .map(|url| Target::new(url))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let body = Bytes::from(body);
    let tokens: Vec<Arc<str>> = tokens.iter().map(|token| token.as_str().into()).collect();
    for i in 0..200 {
        let token = &tokens[i % tokens.len()];
        direct.call(token, &body).await?;
        for target in &through {
            target.call(token, &body).await?;
        }
    }
    let total = rate as usize * seconds as usize;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        ticker.tick().await;
        // Timed from here, not from when the tick was due: the timer's lateness (up to a
        // millisecond) is the client's, not the gateway's.
        let sent = Instant::now();
        let is_direct = i % 2 == 0;
        let target = if is_direct {
            direct.clone()
        } else {
            through[(i / 2) % through.len()].clone()
        };
        let (token, body) = (tokens[(i / 2) % tokens.len()].clone(), body.clone());
        tasks.push((
            is_direct,
            tokio::spawn(async move {
                target.call(&token, &body).await?;
                anyhow::Ok(sent.elapsed())
            }),
        ));
    }
    let (mut to_model, mut to_gateway, mut failed) = (Vec::new(), Vec::new(), 0);
    for (is_direct, task) in tasks {
        match task.await? {
            Ok(latency) if is_direct => to_model.push(latency),
            Ok(latency) => to_gateway.push(latency),
            Err(error) => {
                failed += 1;
                if failed == 1 {
                    eprintln!("first failure: {error:#}");
                }
            }
        }
    }
    to_model.sort();
    to_gateway.sort();
    let at = |sorted: &[Duration]| [0.5, 0.9, 0.99].map(|p| percentile(sorted, p));
    let (model, gateway) = (at(&to_model), at(&to_gateway));
    println!(
        "{rate} requests/s for {seconds} s: {} to the model, {} through {} gateway(s), {failed} failed",
        to_model.len(),
        to_gateway.len(),
        through.len()
    );
    let line = |name: &str, [p50, p90, p99]: [Duration; 3]| {
        println!(
            "  {name:<18} p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms",
            ms(p50),
            ms(p90),
            ms(p99)
        );
    };
    line("model directly:", model);
    line("through gateway:", gateway);
    line(
        "added by gateway:",
        [0, 1, 2].map(|i| gateway[i].saturating_sub(model[i])),
    );
    if failed > 0 {
        bail!("{failed} requests failed");
    }
    Ok(())
}

/// Resident memory of process `pid` in KiB, from `/proc`.
fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `count` streamed requests to `url` at once, each read to its end; samples the resident
/// memory of `pid` (the gateway) every 100 ms meanwhile and prints its peak.
pub async fn streams(
    count: usize,
    url: &str,
    token: &str,
    body: String,
    pid: Option<u32>,
) -> anyhow::Result<()> {
    let target = Target::new(url)?;
    let body = Bytes::from(body);
    let before = pid.and_then(resident_kib);
    let open = Arc::new(AtomicUsize::new(0));
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let sampler = tokio::spawn({
        let open = open.clone();
        async move {
            let (mut peak_rss, mut peak_open) = (0, 0);
            loop {
                peak_open = peak_open.max(open.load(Ordering::Relaxed));
                if let Some(kib) = pid.and_then(resident_kib) {
                    peak_rss = peak_rss.max(kib);
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = &mut stopped => return (peak_rss, peak_open),
                }
            }
        }
    });
    let started = Instant::now();
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let (target, body, open) = (target.clone(), body.clone(), open.clone());
            let token = token.to_owned();
            tokio::spawn(async move {
                let mut sender = target.connect().await?;
                let response = sender.send_request(target.request(&token, &body)?).await?;
                if !response.status().is_success() {
                    bail!("{}", response.status());
                }
                let mut body = response.into_body();
                let (mut chunks, mut last) = (0usize, Bytes::new());
                open.fetch_add(1, Ordering::Relaxed);
                while let Some(frame) = body.frame().await {
                    if let Ok(data) = frame?.into_data() {
                        chunks += 1;
                        last = data;
                    }
                }
                open.fetch_sub(1, Ordering::Relaxed);
                if !String::from_utf8_lossy(&last).contains("[DONE]") {
                    bail!("the stream ended without [DONE]");
                }
                anyhow::Ok((chunks, started.elapsed()))
            })
        })
        .collect();
    let (mut done, mut failed, mut chunks) = (Vec::new(), 0, 0);
    for task in tasks {
        match task.await? {
            Ok((n, took)) => {
                chunks += n;
                done.push(took);
            }
            Err(error) => {
                failed += 1;
                if failed == 1 {
                    eprintln!("first failure: {error:#}");
                }
            }
        }
    }
    let _ = stop.send(());
    let (peak_rss, peak_open) = sampler.await?;
    done.sort();
    println!(
        "{count} streams at once: {} complete, {failed} failed, {} chunks each on average, \
         all done in {:.1} s; at most {peak_open} streaming together",
        done.len(),
        chunks / done.len().max(1),
        done.last().copied().unwrap_or_default().as_secs_f64()
    );
    if let Some(pid) = pid {
        println!(
            "  gateway (pid {pid}) resident memory: {:.1} MiB before, {:.1} MiB at the peak",
            before.unwrap_or_default() as f64 / 1024.0,
            peak_rss as f64 / 1024.0
        );
    }
    if failed > 0 {
        bail!("{failed} streams failed");
    }
    Ok(())
}
