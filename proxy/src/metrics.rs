//! Prometheus metrics: requests, latency, tokens, reservations, upstream errors, and the
//! gateway's own added latency (time spent in the proxy, upstream wait excluded).
use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub model: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabel {
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub model: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub upstream: String,
    pub kind: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<ModelLabel, Histogram>,
    pub overhead: Histogram,
    pub tokens: Family<TokenLabels, Counter>,
    pub reservations: Family<OutcomeLabel, Counter>,
    pub upstream_errors: Family<UpstreamLabels, Counter>,
    /// Usage callbacks by outcome, so an operator sees refused or failing webhooks.
    pub callbacks: Family<OutcomeLabel, Counter>,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.000_05, 2.0, 20)
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("gateway");
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::<ModelLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        let overhead = Histogram::new(latency_buckets());
        let tokens = Family::<TokenLabels, Counter>::default();
        let reservations = Family::<OutcomeLabel, Counter>::default();
        let upstream_errors = Family::<UpstreamLabels, Counter>::default();
        let callbacks = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "requests",
            "Chat requests by model and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to the response headers, by model",
            duration.clone(),
        );
        registry.register(
            "added_latency_seconds",
            "Time spent in the gateway itself, upstream wait excluded",
            overhead.clone(),
        );
        registry.register(
            "tokens",
            "Tokens charged, by model and kind",
            tokens.clone(),
        );
        registry.register(
            "reservations",
            "Reservations by outcome (held, refused, settled, released)",
            reservations.clone(),
        );
        registry.register(
            "callbacks",
            "Usage callbacks by outcome (disabled, refused, delivered, failed)",
            callbacks.clone(),
        );
        registry.register(
            "upstream_errors",
            "Upstream failures by upstream and kind",
            upstream_errors.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            overhead,
            tokens,
            reservations,
            upstream_errors,
            callbacks,
        }
    }
}

impl Metrics {
    pub fn reservation(&self, outcome: &'static str) {
        self.reservations
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// Counts one usage callback's outcome.
    pub fn callback(&self, outcome: &'static str) {
        self.callbacks
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// How many reservations ended with `outcome` (for tests; operators read `/metrics`).
    pub fn reservations_with(&self, outcome: &'static str) -> u64 {
        self.reservations
            .get_or_create(&OutcomeLabel { outcome })
            .get()
    }

    /// How many usage callbacks ended with `outcome` (for tests and the doctor).
    pub fn callbacks_with(&self, outcome: &'static str) -> u64 {
        self.callbacks
            .get_or_create(&OutcomeLabel { outcome })
            .get()
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
