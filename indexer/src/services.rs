//! Runs the indexer's pieces as tasks: chain watcher, Nostr watcher, controller, outbox
//! publisher and housekeeping (reservation expiry, overdue credits, resumed requests), with
//! one shutdown signal for all.
use crate::{
    chain::{self, Chain},
    controller::Controller,
    ledger::Ledger,
    nostr::{publisher, watcher},
};
use nostr_sdk::prelude::{Client, PublicKey};
use std::{sync::Arc, time::Duration};
use tokio::{
    sync::{mpsc, watch, Notify},
    task::JoinHandle,
};

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
}

/// Running services; `shutdown` stops them and waits.
pub struct Services {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Ring to have the outbox published right away.
    pub outbox_wake: Arc<Notify>,
}

impl Services {
    pub fn spawn(c: Components) -> Self {
        let (stop, stopped) = watch::channel(false);
        let outbox_wake = Arc::new(Notify::new());
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(publisher::run(
            c.publisher.clone(),
            c.ledger.clone(),
            outbox_wake.clone(),
            stopped.clone(),
        )));
        tasks.push(tokio::spawn(chain::watcher::run(
            c.chain.clone(),
            c.ledger.clone(),
            c.payments,
            c.chain_poll,
            stopped.clone(),
        )));
        let (requests_tx, requests_rx) = mpsc::channel(1_024);
        let requests = c.controller.is_some().then_some(requests_tx);
        let (ledger, client, trust, session, recipients) = (
            c.ledger.clone(),
            c.listener.clone(),
            c.trust,
            c.session,
            c.recipients,
        );
        let watcher_stop = stopped.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(error) = watcher::run(
                client,
                ledger,
                trust,
                session,
                recipients,
                requests,
                watcher_stop,
            )
            .await
            {
                tracing::error!(%error, "nostr watcher stopped");
            }
        }));
        if let Some(controller) = c.controller {
            tasks.push(tokio::spawn(run_controller(
                Arc::new(controller),
                requests_rx,
                outbox_wake.clone(),
                stopped.clone(),
            )));
        }
        tasks.push(tokio::spawn(housekeeping(
            c.ledger,
            c.credit_grace,
            stopped,
        )));
        Self {
            stop,
            tasks,
            outbox_wake,
        }
    }

    /// Signals every task to stop and waits for them.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

async fn run_controller(
    controller: Arc<Controller>,
    mut requests: mpsc::Receiver<nostr_sdk::Event>,
    outbox_wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut retry = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            Some(event) = requests.recv() => {
                match controller.handle(&event).await {
                    Ok(outcome) => tracing::info!(request = %event.id, ?outcome, "controller: request handled"),
                    Err(error) => tracing::error!(request = %event.id, %error, "controller: request failed"),
                }
                outbox_wake.notify_one();
            }
            _ = retry.tick() => {
                match controller.resume().await {
                    Ok(outcomes) if !outcomes.is_empty() => tracing::info!(?outcomes, "controller: resumed requests"),
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "controller: resume failed"),
                }
                outbox_wake.notify_one();
            }
            _ = stop.changed() => return,
        }
    }
}

async fn housekeeping(
    ledger: Ledger,
    credit_grace: Option<Duration>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        // Served reservations are left to a proxy's sweep, which signs their debits.
        match ledger.release_expired_unserved(crate::ledger::now()).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "ledger: expired reservations released"),
            Err(error) => tracing::warn!(%error, "ledger: expiring reservations failed"),
        }
        if let Some(grace) = credit_grace {
            if let Err(error) = ledger.apply_overdue_credits(grace.as_secs() as i64).await {
                tracing::warn!(%error, "ledger: applying overdue credits failed");
            }
        }
    }
}
