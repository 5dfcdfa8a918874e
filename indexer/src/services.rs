//! Runs the indexer's pieces as supervised tasks: chain watcher, Nostr watcher, controller,
//! outbox publisher, housekeeping (reservation expiry, overdue credits, resumed requests) and
//! the health/metrics server, with one shutdown signal for all. Each is restarted with back-off
//! when it fails ([`crate::supervisor`]); [`Services::failed`] reports one that cannot recover.
use crate::{
    chain::{self, Chain},
    controller::Controller,
    health::{self, HealthState},
    ledger::Ledger,
    metrics::Metrics,
    nostr::{
        publisher,
        queue::{request_queue, RequestQueue, RequestReceiver},
        watcher::{self, IngestSettings, Watcher},
    },
    supervisor::{supervise, Progress, RestartPolicy, ServiceError, ServiceFailed},
};
use nostr_sdk::prelude::{Client, PublicKey};
use std::{future::Future, sync::Arc, time::Duration};
use tokio::{
    net::TcpListener,
    sync::{mpsc, watch, Mutex, Notify},
    task::JoinHandle,
};

/// How long [`Services::shutdown`] waits for the services to stop.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Everything the services need.
pub struct Components {
    pub ledger: Ledger,
    pub chain: Arc<dyn Chain>,
    /// Connected to the relays; publishes the outbox.
    pub publisher: Client,
    /// Connected to the relays; receives the session's events. A separate connection, because
    /// a relay pool does not report back the events it published itself.
    pub listener: Client,
    pub trust: watcher::Trust,
    pub session: String,
    pub recipients: Vec<PublicKey>,
    /// Which on-chain payments count, and what they are worth.
    pub payments: chain::watcher::PaymentRule,
    pub chain_poll: Duration,
    /// Apply credits whose payment is still unseen after this long (default: never).
    pub credit_grace: Option<Duration>,
    pub controller: Option<Controller>,
    /// How services restart and the watcher ingests.
    pub settings: ServiceSettings,
    /// Where to serve `/health` and `/metrics` (none: not served).
    pub health_listener: Option<TcpListener>,
}

/// How services restart and the watcher ingests.
#[derive(Debug, Clone, Default)]
pub struct ServiceSettings {
    /// Back-off and when a service is given up.
    pub restart: RestartPolicy,
    /// The Nostr watcher's skew, paging, queue limits and clock.
    pub ingest: IngestSettings,
    /// How often the controller retries requests whose payment outcome is unknown.
    pub controller_retry: Option<Duration>,
}

/// Running services; `shutdown` stops them and waits.
pub struct Services {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    failed: mpsc::UnboundedReceiver<ServiceFailed>,
    /// Ring to have the outbox published right away.
    pub outbox_wake: Arc<Notify>,
    /// What the services count; served on `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The controller's request queue (when there is a controller).
    pub requests: Option<RequestQueue>,
}

/// Spawns supervised tasks and collects the failures of those that cannot recover.
struct Spawner {
    policy: RestartPolicy,
    metrics: Arc<Metrics>,
    stopped: watch::Receiver<bool>,
    failed: mpsc::UnboundedSender<ServiceFailed>,
    tasks: Vec<JoinHandle<()>>,
}

impl Spawner {
    fn spawn<F, Fut>(&mut self, name: &'static str, service: F)
    where
        F: FnMut(Progress) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), ServiceError>> + Send + 'static,
    {
        let supervised = supervise(
            name,
            self.policy,
            self.metrics.clone(),
            self.stopped.clone(),
            service,
        );
        let failed = self.failed.clone();
        self.tasks.push(tokio::spawn(async move {
            if let Err(failure) = supervised.await {
                let _ = failed.send(failure);
            }
        }));
    }
}

impl Services {
    /// Starts every service.
    pub fn spawn(c: Components) -> Self {
        let (stop, stopped) = watch::channel(false);
        let (failed_tx, failed) = mpsc::unbounded_channel();
        let metrics = Arc::new(Metrics::default());
        let outbox_wake = Arc::new(Notify::new());
        let mut spawner = Spawner {
            policy: c.settings.restart,
            metrics: metrics.clone(),
            stopped: stopped.clone(),
            failed: failed_tx,
            tasks: Vec::new(),
        };

        let (client, ledger, wake, stop_rx) = (
            c.publisher.clone(),
            c.ledger.clone(),
            outbox_wake.clone(),
            stopped.clone(),
        );
        spawner.spawn("publisher", move |_| {
            let (client, ledger, wake, stop) = (
                client.clone(),
                ledger.clone(),
                wake.clone(),
                stop_rx.clone(),
            );
            async move { Ok(publisher::serve(&client, &ledger, &wake, stop).await?) }
        });

        let (chain, ledger, stop_rx) = (c.chain.clone(), c.ledger.clone(), stopped.clone());
        let (rule, poll) = (c.payments.clone(), c.chain_poll);
        spawner.spawn("chain_watcher", move |progress| {
            let (chain, ledger, stop) = (chain.clone(), ledger.clone(), stop_rx.clone());
            watch_chain(chain, ledger, rule.clone(), poll, progress, stop)
        });

        let (queue, receiver) = request_queue(
            c.settings.ingest.request_queue,
            c.settings.ingest.requests_per_author,
        );
        let requests = c.controller.is_some().then_some(queue);
        let nostr_watcher = Arc::new(Watcher {
            client: c.listener.clone(),
            ledger: c.ledger.clone(),
            trust: c.trust,
            session: c.session,
            recipients: c.recipients,
            requests: requests.clone(),
            settings: c.settings.ingest.clone(),
            metrics: metrics.clone(),
        });
        let stop_rx = stopped.clone();
        spawner.spawn("nostr_watcher", move |progress| {
            let (nostr_watcher, stop) = (nostr_watcher.clone(), stop_rx.clone());
            async move { nostr_watcher.run(progress, stop).await }
        });

        if let Some(controller) = c.controller {
            let controller = Arc::new(controller);
            let receiver = Arc::new(Mutex::new(receiver));
            let retry = c
                .settings
                .controller_retry
                .unwrap_or(Duration::from_secs(10));
            let (wake, metrics, stop_rx) = (outbox_wake.clone(), metrics.clone(), stopped.clone());
            spawner.spawn("controller", move |progress| {
                run_controller(
                    controller.clone(),
                    receiver.clone(),
                    retry,
                    wake.clone(),
                    metrics.clone(),
                    progress,
                    stop_rx.clone(),
                )
            });
        }

        let (ledger, grace, stop_rx) = (c.ledger.clone(), c.credit_grace, stopped.clone());
        spawner.spawn("housekeeping", move |progress| {
            housekeeping(ledger.clone(), grace, progress, stop_rx.clone())
        });

        if let Some(listener) = c.health_listener {
            let state = HealthState {
                metrics: metrics.clone(),
                ledger: c.ledger.clone(),
                relays: c.listener.clone(),
                requests: requests.clone(),
            };
            // The listener cannot be bound twice: the server runs once and its end is fatal.
            let mut listener = Some(listener);
            let stop_rx = stopped.clone();
            spawner.spawn("health_server", move |_| {
                let (listener, state, stop) = (listener.take(), state.clone(), stop_rx.clone());
                async move {
                    let listener = listener
                        .ok_or_else(|| ServiceError::Server("listener already used".into()))?;
                    health::serve(listener, state, stop)
                        .await
                        .map_err(|e| ServiceError::Server(e.to_string()))
                }
            });
        }

        Self {
            stop,
            tasks: spawner.tasks,
            failed,
            outbox_wake,
            metrics,
            requests,
        }
    }

    /// Resolves when a service has failed beyond recovery (never, while all recover).
    pub async fn failed(&mut self) -> ServiceFailed {
        match self.failed.recv().await {
            Some(failure) => failure,
            // Every supervisor ended without failing: they were stopped; wait forever.
            None => std::future::pending().await,
        }
    }

    /// Signals every task to stop and waits for them, at most [`SHUTDOWN_GRACE`] in all; what
    /// is still running then is aborted (as a crash would: the ledger keeps it resumable).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        for mut task in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                tracing::warn!("a service did not stop in time; aborting it");
                task.abort();
            }
        }
    }
}

/// Syncs chain events until `stop`, waking on chain activity or every `poll`.
async fn watch_chain(
    chain: Arc<dyn Chain>,
    ledger: Ledger,
    rule: chain::watcher::PaymentRule,
    poll: Duration,
    progress: Progress,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ServiceError> {
    loop {
        let count = chain::watcher::sync_once(chain.as_ref(), &ledger, &rule)
            .await
            .map_err(|e| ServiceError::Chain(e.to_string()))?;
        if count > 0 {
            tracing::info!(count, "chain: payments recorded");
        }
        progress.tick();
        tokio::select! {
            _ = chain.wait_for_activity(poll) => {}
            _ = stop.changed() => return Ok(()),
        }
    }
}

/// Hands queued requests to the controller one at a time, and retries unfinished ones every
/// `retry`. A failed request (a ledger error) fails the run; a claimed request is resumed
/// after the restart.
async fn run_controller(
    controller: Arc<Controller>,
    requests: Arc<Mutex<RequestReceiver>>,
    retry: Duration,
    outbox_wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    progress: Progress,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ServiceError> {
    let mut requests = requests.lock().await;
    let mut retry = tokio::time::interval(retry);
    loop {
        tokio::select! {
            request = requests.recv() => {
                let Some(request) = request else { return Ok(()) };
                let event = &request.event;
                // A stop does not wait for the chain: the request is claimed in the ledger and
                // resumed at the next start, as after a crash.
                let handled = tokio::select! {
                    handled = controller.handle(event) => handled,
                    _ = stop.changed() => return Ok(()),
                };
                metrics.controller_outcome(handled.as_ref().ok());
                outbox_wake.notify_one();
                match handled {
                    Ok(outcome) => tracing::info!(request = %event.id, ?outcome, "controller: request handled"),
                    Err(error) => return Err(ServiceError::Controller(format!("request {}: {error}", event.id))),
                }
            }
            _ = retry.tick() => {
                let outcomes = tokio::select! {
                    outcomes = controller.resume() => outcomes,
                    _ = stop.changed() => return Ok(()),
                };
                let outcomes = outcomes.map_err(|e| ServiceError::Controller(format!("resume: {e}")))?;
                for outcome in &outcomes {
                    metrics.controller_outcome(Some(outcome));
                }
                if !outcomes.is_empty() {
                    tracing::info!(?outcomes, "controller: resumed requests");
                }
                outbox_wake.notify_one();
            }
            _ = stop.changed() => return Ok(()),
        }
        progress.tick();
    }
}

/// Releases expired reservations and applies overdue credits every few seconds.
async fn housekeeping(
    ledger: Ledger,
    credit_grace: Option<Duration>,
    progress: Progress,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ServiceError> {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return Ok(()),
        }
        // Served reservations are left to a proxy's sweep, which signs their debits.
        let count = ledger.release_expired_unserved(ledger.now()).await?;
        if count > 0 {
            tracing::info!(count, "ledger: expired reservations released");
        }
        if let Some(grace) = credit_grace {
            ledger.apply_overdue_credits(grace.as_secs() as i64).await?;
        }
        progress.tick();
    }
}
