//! A local OpenAI-compatible server for tests, benchmarks and the offline sandbox. It is a
//! test double, not a model: it echoes. Its behaviour is picked by the upstream model name:
//!
//! - `echo`: replies `echo: <last user message>`, with usage (and the usage chunk when a
//!   stream asks for it); the reply is cut to `max_tokens` words.
//! - `echo-no-usage`: the same, never reporting usage.
//! - `fail-500`: answers 500 before any byte. `fail-400`: answers an OpenAI-shaped 400.
//! - `fail-midstream`: streams two chunks, then breaks the connection.
//! - `hang`: never answers.
//!
//! A `+slow` suffix waits 50 ms between streamed chunks; `+delay=<ms>` waits before answering.
//! Its "tokens" are words: usage counts whitespace-separated words.
use axum::{
    body::Body,
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde_json::{json, Value};
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};
use tokio::net::TcpListener;

/// What the mock has seen.
#[derive(Default)]
pub struct MockStats {
    pub requests: AtomicU64,
    /// Streams that ended because the client went away.
    pub streams_abandoned: AtomicU64,
    pub last_request: Mutex<Option<Value>>,
}

/// A running mock.
pub struct MockUpstream {
    pub addr: SocketAddr,
    pub stats: Arc<MockStats>,
    task: tokio::task::JoinHandle<()>,
}

impl MockUpstream {
    /// Starts on `127.0.0.1:port` (0: any free port).
    pub async fn start(port: u16) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(MockStats::default());
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .route(
                "/v1/models",
                get(|| async { Json(json!({"object": "list", "data": []})) }),
            )
            .with_state(stats.clone());
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, stats, task })
    }

    /// The base URL to configure as an upstream.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

async fn completions(State(stats): State<Arc<MockStats>>, Json(body): Json<Value>) -> Response {
    stats.requests.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut last) = stats.last_request.lock() {
        *last = Some(body.clone());
    }
    let model = body["model"].as_str().unwrap_or("echo").to_owned();
    let mut parts = model.split('+');
    let behaviour = parts.next().unwrap_or("echo").to_owned();
    let mut chunk_delay = Duration::ZERO;
    for option in parts {
        if option == "slow" {
            chunk_delay = Duration::from_millis(50);
        } else if let Some(ms) = option.strip_prefix("delay=").and_then(|ms| ms.parse().ok()) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
    match behaviour.as_str() {
        "fail-500" => return (StatusCode::INTERNAL_SERVER_ERROR, "mock failure").into_response(),
        "fail-400" => {
            let error = json!({"error": {"message": "mock refuses", "type": "invalid_request_error", "param": null, "code": null}});
            return (StatusCode::BAD_REQUEST, Json(error)).into_response();
        }
        "hang" => {
            tokio::time::sleep(Duration::from_secs(3_600)).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        _ => {}
    }
    let prompt: u64 = body["messages"]
        .as_array()
        .map(|messages| {
            messages
                .iter()
                .map(|m| m["content"].as_str().map_or(0, words))
                .sum()
        })
        .unwrap_or(0);
    let last = body["messages"]
        .as_array()
        .and_then(|messages| messages.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_owned();
    let limit = body["max_tokens"]
        .as_u64()
        .or(body["max_completion_tokens"].as_u64())
        .unwrap_or(u64::MAX);
    let reply: Vec<String> = format!("echo: {last}")
        .split_whitespace()
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .map(str::to_owned)
        .collect();
    let usage = (behaviour != "echo-no-usage").then(|| {
        json!({"prompt_tokens": prompt, "completion_tokens": reply.len(), "total_tokens": prompt + reply.len() as u64})
    });
    if body["stream"].as_bool() != Some(true) {
        let mut response = json!({
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.join(" ")}, "finish_reason": "stop"}],
        });
        if let Some(usage) = usage {
            response["usage"] = usage;
        }
        return Json(response).into_response();
    }
    let include_usage = body["stream_options"]["include_usage"].as_bool() == Some(true);
    let fail_midway = behaviour == "fail-midstream";
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(4);
    tokio::spawn(async move {
        let chunk = |delta: Value, finish: Value| {
            let chunk = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0,
                "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
            format!("data: {chunk}\n\n")
        };
        let mut events = vec![chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        )];
        for (i, word) in reply.iter().enumerate() {
            let text = if i == 0 {
                word.clone()
            } else {
                format!(" {word}")
            };
            events.push(chunk(json!({"content": text}), Value::Null));
        }
        events.push(chunk(json!({}), json!("stop")));
        if let (true, Some(usage)) = (include_usage, usage) {
            let chunk = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0,
                "model": model, "choices": [], "usage": usage});
            events.push(format!("data: {chunk}\n\n"));
        }
        events.push("data: [DONE]\n\n".into());
        for (i, event) in events.into_iter().enumerate() {
            if fail_midway && i == 2 {
                // Let what was sent reach the client before the connection breaks.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = tx
                    .send(Err(std::io::Error::other("mock breaks the stream")))
                    .await;
                return;
            }
            if i > 0 && !chunk_delay.is_zero() {
                tokio::time::sleep(chunk_delay).await;
            }
            if tx.send(Ok(event)).await.is_err() {
                stats.streams_abandoned.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    });
    let stream = tokio_stream_from(rx);
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn tokio_stream_from(
    rx: tokio::sync::mpsc::Receiver<Result<String, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<String, std::io::Error>> {
    futures_util::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        Some((item, rx))
    })
}
