//! OpenTelemetry traces from the `proxy` and `indexer` processes, received over OTLP/HTTP by a
//! collector this test runs: each gateway request is one trace whose `chat` span carries its
//! request id (the `x-request-id` the client got), and each top-up is one trace whose `topup`
//! span carries the request's event id. Without `OTEL_EXPORTER_OTLP_ENDPOINT` nothing is sent.
mod common;

use axum::{body::Bytes, extract::State, routing::post, Router};
use indexer::{
    ledger::{testing::TempDatabase, Ledger},
    sandbox::{Sandbox, SandboxConfig, SOL},
};
use localnet::MockUpstream;
use nostr_sdk::prelude::Keys;
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, common::v1::any_value::Value as AnyValue,
};
use prost::Message;
use solana_sdk::signature::{write_keypair_file, Keypair, Signer};
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::process::{Child, Command};

/// One span as the collector received it.
#[derive(Debug, Clone)]
struct Seen {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    parent: Vec<u8>,
    attributes: HashMap<String, String>,
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Seen>>>,
    requests: Arc<Mutex<u64>>,
}

async fn receive(State(collector): State<Collector>, body: Bytes) -> Vec<u8> {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return vec![];
    };
    *collector.requests.lock().unwrap() += 1;
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| match &v.value {
                Some(AnyValue::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            let attributes = span
                .attributes
                .iter()
                .filter_map(
                    |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                        Some(AnyValue::StringValue(s)) => Some((kv.key.clone(), s.clone())),
                        Some(other) => Some((kv.key.clone(), format!("{other:?}"))),
                        None => None,
                    },
                )
                .collect();
            collector.spans.lock().unwrap().push(Seen {
                service: service.clone(),
                name: span.name,
                trace_id: span.trace_id,
                parent: span.parent_span_id,
                attributes,
            });
        }
    }
    vec![]
}

impl Collector {
    async fn start() -> (Self, String) {
        let collector = Collector::default();
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(collector.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (collector, url)
    }

    /// Waits for the span of `service` named `name` whose `request_id` is `id`.
    async fn span(&self, service: &str, name: &str, id: &str) -> Seen {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(span) = self.spans.lock().unwrap().iter().find(|s| {
                s.service == service
                    && s.name == name
                    && s.attributes.get("request_id").map(String::as_str) == Some(id)
            }) {
                return span.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {name} span of {service} for {id}; received {:#?}",
                self.spans.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn trace(&self, trace_id: &[u8]) -> Vec<Seen> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

/// A service process exporting its traces to `collector`.
fn spawn(binary: &Path, args: &[&str], collector: Option<&str>, dir: &Path, log: &str) -> Child {
    let log = std::fs::File::create(dir.join(log)).unwrap();
    let mut command = Command::new(binary);
    command
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_SERVICE_NAME")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    if let Some(endpoint) = collector {
        command
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
            .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    }
    command.spawn().unwrap()
}

async fn terminate(mut child: Child) {
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("it stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}

async fn wait_healthy(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::get(url)
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "{url} never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `proxy run` on `db` in front of `mock`; returns it and its base URL.
async fn gateway(
    dir: &Path,
    db: &TempDatabase,
    mock: &MockUpstream,
    collector: Option<&str>,
) -> (Child, String) {
    let port = free_port();
    std::fs::write(
        dir.join("proxy.key"),
        Keys::generate().secret_key().to_secret_hex(),
    )
    .unwrap();
    std::fs::write(dir.join("token.secret"), common::rand_bytes()).unwrap();
    std::fs::write(
        dir.join("proxy.toml"),
        format!(
            "listen = \"127.0.0.1:{port}\"\ndatabase_url = \"{}\"\n\
             [nostr]\nrelays = []\nsecret_key_file = \"proxy.key\"\nmachine = \"{}\"\n\
             [auth]\naudience = \"https://otel.test\"\ntoken_secret_file = \"token.secret\"\n\
             [[models]]\nid = \"echo\"\nprompt_price = 1000000\ncompletion_price = 1000000\n\
             max_output_tokens = 32\n[[models.upstreams]]\nbase_url = \"{}\"\n",
            db.url,
            Keys::generate().public_key().to_hex(),
            mock.base_url()
        ),
    )
    .unwrap();
    let child = spawn(
        Path::new(env!("CARGO_BIN_EXE_proxy")),
        &["run", "--config", "proxy.toml"],
        collector,
        dir,
        "proxy.log",
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&format!("{base}/health")).await;
    (child, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_gateway_request_is_one_trace_carrying_its_request_id() {
    let (collector, endpoint) = Collector::start().await;
    let dir = temp_dir("otel-gateway");
    let db = TempDatabase::sqlite();
    let ledger = Ledger::connect(&db.url).await.unwrap();
    let mock = MockUpstream::start(0).await.unwrap();
    let (proxy, base) = gateway(&dir, &db, &mock, Some(&endpoint)).await;
    let wallet = Keypair::new();
    common::fund(&ledger, &wallet.pubkey().to_string(), 10_000).await;
    let http = reqwest::Client::new();
    let token = proxy::wallet::login::login(&http, &base, &wallet, None)
        .await
        .unwrap();

    let mut ids = vec![];
    for text in ["first", "second"] {
        let response = http
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(&token)
            .json(&common::ask("echo", text))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        ids.push(
            response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mut traces = vec![];
    for id in &ids {
        let chat = collector.span("llm-gateway-proxy", "chat", id).await;
        assert_eq!(chat.attributes["model"], "echo");
        assert_eq!(chat.attributes["user"], wallet.pubkey().to_string());
        let trace = collector.trace(&chat.trace_id);
        let roots: Vec<_> = trace.iter().filter(|s| s.parent.is_empty()).collect();
        assert_eq!(roots.len(), 1, "one root span per request: {trace:#?}");
        traces.push(chat.trace_id);
    }
    assert_ne!(traces[0], traces[1], "one trace per request");
    terminate(proxy).await;

    // Without the endpoint, nothing is exported.
    let before = *collector.requests.lock().unwrap();
    let (quiet, base) = gateway(&dir, &db, &mock, None).await;
    let token = proxy::wallet::login::login(&http, &base, &wallet, None)
        .await
        .unwrap();
    let response = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(&token)
        .json(&common::ask("echo", "unobserved"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    terminate(quiet).await;
    assert_eq!(*collector.requests.lock().unwrap(), before);

    ledger.close().await;
    db.remove().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_top_up_is_one_trace_carrying_its_request_id() {
    let (collector, endpoint) = Collector::start().await;
    let dir = temp_dir("otel-indexer");
    let db = TempDatabase::sqlite();
    let mut stack = Sandbox::start(SandboxConfig::new(&db.url)).await.unwrap();
    stack.stop_services().await; // the indexer process below answers instead
    write_keypair_file(&stack.bot, dir.join("bot.json")).unwrap();
    std::fs::write(
        dir.join("controller.key"),
        stack.controller_keys.secret_key().to_secret_hex(),
    )
    .unwrap();
    let health = free_port();
    std::fs::write(
        dir.join("indexer.toml"),
        format!(
            "database_url = \"{}\"\nhealth_listen = \"127.0.0.1:{health}\"\n\
             [nostr]\nrelays = [\"{}\"]\nmachine = \"{}\"\ncontroller_pubkeys = [\"{}\"]\n\
             proxy_pubkeys = []\n\
             [chain]\nrpc_url = \"{}\"\nws_url = \"{}\"\nnamespace_id = {}\npoll_seconds = 1\n\
             [controller]\nbot_keypair = \"bot.json\"\nnostr_secret_key_file = \"controller.key\"\n\
             treasury = \"{}\"\nmax_lamports_per_request = {SOL}\n",
            db.url,
            stack.relay.url(),
            stack.machine.to_hex(),
            stack.controller_keys.public_key().to_hex(),
            stack.validator.rpc_url(),
            stack.validator.ws_url(),
            stack.namespace_id,
            stack.treasury,
        ),
    )
    .unwrap();
    let indexer = spawn(
        &Path::new(env!("CARGO_BIN_EXE_proxy")).with_file_name("indexer"),
        &["run", "--config", "indexer.toml"],
        Some(&endpoint),
        &dir,
        "indexer.log",
    );
    wait_healthy(&format!("http://127.0.0.1:{health}/health")).await;

    let user = stack.user(SOL).await.unwrap();
    let request = stack.authorization_request(&user, 0, SOL / 100).unwrap();
    stack.publish(&request).await.unwrap();
    let topup = collector
        .span("llm-gateway-indexer", "topup", &request.id.to_hex())
        .await;
    let trace = collector.trace(&topup.trace_id);
    assert!(
        trace.iter().all(|s| s.service == "llm-gateway-indexer"),
        "{trace:#?}"
    );
    assert_eq!(
        trace.iter().filter(|s| s.parent.is_empty()).count(),
        1,
        "the top-up is one trace: {trace:#?}"
    );
    common::eventually("the top-up is credited", || async {
        stack
            .ledger
            .balance(&user.pubkey().to_string())
            .await
            .unwrap()
            .credited
            == 10_000
    })
    .await;
    terminate(indexer).await;
    stack.stop().await;
    db.remove().await;
    let _ = std::fs::remove_dir_all(&dir);
}
