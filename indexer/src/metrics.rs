//! The indexer's Prometheus metrics, so an operator sees ingestion, the controller and the
//! services' health without reading logs. Served as text by [`crate::health`].
use crate::{controller::Outcome, ledger::Applied, nostr::ingest::Ingested};
use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

/// Labels of a Nostr event: what it was and what happened to it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// credit, debit, request, forged, other.
    pub kind: &'static str,
    /// applied, duplicate, pending, rejected, ignored, queued, queue_full, author_limit, …
    pub outcome: &'static str,
}

/// A single label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// credit or debit.
    pub kind: &'static str,
}

/// A single label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// paid, refused, pending, already_handled, error.
    pub outcome: &'static str,
}

/// A service's name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    /// publisher, chain_watcher, nostr_watcher, controller, housekeeping, health_server.
    pub service: &'static str,
}

/// Every metric the indexer exports; shared by the services through an `Arc`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Nostr events by kind and outcome (applied, duplicate, ignored, queued, dropped, …).
    pub events: Family<EventLabels, Counter>,
    /// Credits and debits that changed a balance.
    pub entries_applied: Family<KindLabel, Counter>,
    /// What the controller did with each request.
    pub controller: Family<OutcomeLabel, Counter>,
    /// Restarts of a failed service by its supervisor.
    pub restarts: Family<ServiceLabel, Counter>,
    /// The Nostr cursor (Unix seconds).
    pub nostr_cursor: Gauge,
    /// Events waiting in the outbox (refreshed on each scrape).
    pub outbox_depth: Gauge,
    /// Requests waiting for the controller (refreshed on each scrape).
    pub request_queue_depth: Gauge,
    /// Relays the watcher is connected to (refreshed on each scrape).
    pub relays_connected: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("indexer");
        let metrics = Self {
            events: Family::default(),
            entries_applied: Family::default(),
            controller: Family::default(),
            restarts: Family::default(),
            nostr_cursor: Gauge::default(),
            outbox_depth: Gauge::default(),
            request_queue_depth: Gauge::default(),
            relays_connected: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "nostr_events",
            "Nostr events by kind and outcome",
            metrics.events.clone(),
        );
        registry.register(
            "entries_applied",
            "Credits and debits applied to balances",
            metrics.entries_applied.clone(),
        );
        registry.register(
            "controller_outcomes",
            "Requests handled by the controller, by outcome",
            metrics.controller.clone(),
        );
        registry.register(
            "service_restarts",
            "Restarts of a failed service",
            metrics.restarts.clone(),
        );
        registry.register(
            "nostr_cursor_seconds",
            "Where the Nostr watcher resumes from",
            metrics.nostr_cursor.clone(),
        );
        registry.register(
            "outbox_depth",
            "Events waiting for a relay",
            metrics.outbox_depth.clone(),
        );
        registry.register(
            "request_queue_depth",
            "Requests waiting for the controller",
            metrics.request_queue_depth.clone(),
        );
        registry.register(
            "relays_connected",
            "Relays the watcher is connected to",
            metrics.relays_connected.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    /// Counts one event of `kind` with `outcome`.
    pub fn event(&self, kind: &'static str, outcome: &'static str) {
        self.events
            .get_or_create(&EventLabels { kind, outcome })
            .inc();
    }

    /// Counts what [`crate::nostr::ingest::ingest`] did with an event.
    pub fn ingested(&self, outcome: &Ingested) {
        let (kind, applied) = match outcome {
            Ingested::Credit(applied) => ("credit", applied),
            Ingested::Debit(applied) => ("debit", applied),
            Ingested::Request => return,
            Ingested::Ignored(_) => return self.event("other", "ignored"),
        };
        let label = match applied {
            Applied::Applied => {
                self.entries_applied
                    .get_or_create(&KindLabel { kind })
                    .inc();
                "applied"
            }
            Applied::Duplicate => "duplicate",
            Applied::Pending => "pending",
            Applied::Rejected(_) => "rejected",
        };
        self.event(kind, label);
    }

    /// Counts a controller outcome (`None`: it failed).
    pub fn controller_outcome(&self, outcome: Option<&Outcome>) {
        let outcome = match outcome {
            Some(Outcome::Paid { .. }) => "paid",
            Some(Outcome::Refused(_)) => "refused",
            Some(Outcome::Ignored(_)) => "ignored",
            Some(Outcome::Pending) => "pending",
            Some(Outcome::AlreadyHandled) => "already_handled",
            None => "error",
        };
        self.controller
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// Counts a restart of `service`.
    pub fn restarted(&self, service: &'static str) {
        self.restarts.get_or_create(&ServiceLabel { service }).inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
