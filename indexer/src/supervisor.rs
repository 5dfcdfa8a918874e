//! Keeps each service running. A service that fails (a ledger, relay or chain error, or a
//! panic) is restarted after a back-off that doubles up to a maximum; it has "recovered" as soon
//! as it reports progress. A service that fails [`RestartPolicy::max_failures`] times within
//! [`RestartPolicy::failure_window`] without any progress in between cannot recover: the
//! supervisor gives up and returns the error, and the `indexer` process exits non-zero so that
//! its own supervisor (systemd, Kubernetes) restarts it.
use crate::{chain::ChainError, ledger::LedgerError, metrics::Metrics};
use std::{
    collections::VecDeque,
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::{sync::watch, time::Instant};

/// How failed services are restarted, and when they are given up.
#[derive(Debug, Clone, Copy)]
pub struct RestartPolicy {
    /// Wait before the first restart; doubled after each further failure.
    pub initial_backoff: Duration,
    /// The longest wait between restarts.
    pub max_backoff: Duration,
    /// Failures without progress in between (within `failure_window`) that mean "cannot recover".
    pub max_failures: u32,
    /// Failures older than this are forgotten.
    pub failure_window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_failures: 10,
            failure_window: Duration::from_secs(300),
        }
    }
}

/// Why a service run ended badly.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The ledger did not answer or refused a statement.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// A relay subscription or back-fill failed.
    #[error("relay: {0}")]
    Relay(String),
    /// The chain could not be read.
    #[error("chain: {0}")]
    Chain(String),
    /// The controller failed to handle or resume a request.
    #[error("controller: {0}")]
    Controller(String),
    /// The health/metrics server stopped.
    #[error("health server: {0}")]
    Server(String),
    /// The service returned while nobody asked it to stop.
    #[error("stopped without being asked to")]
    Stopped,
    /// The service panicked.
    #[error("panicked: {0}")]
    Panicked(String),
}

impl From<ChainError> for ServiceError {
    fn from(error: ChainError) -> Self {
        ServiceError::Chain(error.to_string())
    }
}

/// A service that could not recover.
#[derive(Debug, thiserror::Error)]
#[error("service {service} failed {failures} times without recovering; last error: {last}")]
pub struct ServiceFailed {
    /// Which service.
    pub service: &'static str,
    /// Failures in a row without progress.
    pub failures: u32,
    /// The last failure's cause.
    pub last: ServiceError,
}

/// What a service calls after each unit of useful work (an event applied, a batch synced), so
/// the supervisor knows a restart worked.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    /// Records one unit of work.
    pub fn tick(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `service` until it returns `Ok` after `stop` turned true, restarting it on failure per
/// `policy`; returns the failure when it cannot recover. Each run is its own task, so a panic
/// is a failure like any other.
pub async fn supervise<F, Fut>(
    name: &'static str,
    policy: RestartPolicy,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
    mut service: F,
) -> Result<(), ServiceFailed>
where
    F: FnMut(Progress) -> Fut,
    Fut: Future<Output = Result<(), ServiceError>> + Send + 'static,
{
    let progress = Progress::default();
    let mut failures: VecDeque<Instant> = VecDeque::new();
    let mut backoff = policy.initial_backoff;
    loop {
        let before = progress.count();
        let run = tokio::spawn(service(progress.clone()));
        // If the supervisor itself is aborted (a shutdown that ran out of time), so is the run.
        let _abort = AbortOnDrop(run.abort_handle());
        let error = match run.await {
            Ok(Ok(())) if *stop.borrow() => return Ok(()),
            Ok(Ok(())) => ServiceError::Stopped,
            Ok(Err(error)) => error,
            Err(join) => ServiceError::Panicked(join.to_string()),
        };
        if *stop.borrow() {
            return Ok(());
        }
        let now = Instant::now();
        if progress.count() != before {
            failures.clear();
            backoff = policy.initial_backoff;
        }
        failures.push_back(now);
        while failures
            .front()
            .is_some_and(|first| now.duration_since(*first) > policy.failure_window)
        {
            failures.pop_front();
        }
        let count = failures.len() as u32;
        if count >= policy.max_failures.max(1) {
            tracing::error!(service = name, failures = count, %error, "service cannot recover; giving up");
            return Err(ServiceFailed {
                service: name,
                failures: count,
                last: error,
            });
        }
        tracing::warn!(service = name, failures = count, ?backoff, %error, "service failed; restarting");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return Ok(()),
        }
        metrics.restarted(name);
        backoff = (backoff * 2).min(policy.max_backoff);
    }
}
