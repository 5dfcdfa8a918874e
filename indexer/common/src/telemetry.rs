//! Where the services' spans and logs go: logs to stderr (filtered by `RUST_LOG`), and traces
//! over OTLP/HTTP (protobuf) when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set — off otherwise. `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_BSP_*` are honoured as the OpenTelemetry SDK reads them.
//! Each gateway request and each top-up is one trace whose root span carries its request id.
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{trace::SdkTracerProvider, Resource};
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, EnvFilter};

/// `info` for our crates; dependencies (the sandbox's validator and relay among them) only warn.
pub const QUIET_DEPENDENCIES: &str = "info,tarpc=error,solana_runtime=warn,\
solana_program_test=warn,solana_metrics=warn,solana_accounts_db=warn,parity_ws=warn,\
jsonrpc_http_server=warn,surfpool_core=warn,nostr_lmdb=warn,nostr_relay_builder=warn,\
nostr_relay_pool=warn,opentelemetry_sdk=warn";

/// Installed telemetry; [`Telemetry::shutdown`] flushes the spans still queued.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Whether an OTLP endpoint is configured in the environment.
fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|var| std::env::var(var).is_ok_and(|v| !v.trim().is_empty()))
}

/// Installs the global subscriber for `service` (its default `service.name`), with
/// `default_filter` when `RUST_LOG` is unset. Call it outside any async runtime: the exporter's
/// HTTP client blocks on a thread of its own.
pub fn init(service: &str, default_filter: &str) -> Telemetry {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let (provider, problem) = match otlp_configured() {
        false => (None, None),
        true => match provider(service) {
            Ok(provider) => (Some(provider), None),
            Err(error) => (None, Some(error)),
        },
    };
    let traces = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service.to_owned())));
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(traces)
        .init();
    if let Some(error) = problem {
        tracing::warn!(%error, "OTLP traces are configured but cannot be exported; running without");
    }
    Telemetry { provider }
}

/// A batch-exporting tracer provider for the endpoint the environment names.
fn provider(service: &str) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    let resource = match std::env::var("OTEL_SERVICE_NAME") {
        Ok(_) => Resource::builder().build(),
        Err(_) => Resource::builder()
            .with_service_name(service.to_owned())
            .build(),
    };
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

impl Telemetry {
    /// Exports what is still queued (call it outside any async runtime, before exiting).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(error) = provider.shutdown() {
                eprintln!("flushing traces: {error}");
            }
        }
    }
}
