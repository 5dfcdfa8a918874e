//! Relaying an upstream SSE stream: each complete event is forwarded the moment it arrives,
//! and read on the side for usage and delivered text. The meter lives inside the stream, so
//! when the client disconnects (axum drops the body) the upstream connection is dropped and
//! the request is settled for what was delivered.
use crate::meter::{Meter, Usage};
use bytes::{Bytes, BytesMut};
use futures_util::{future::BoxFuture, stream::BoxStream, Stream, StreamExt};
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How the relay behaves.
pub struct RelayOptions {
    /// The client did not ask for usage: drop the usage-only chunk we asked for on its behalf.
    pub hide_usage_chunk: bool,
    /// Longest wait for the next upstream chunk.
    pub idle_timeout: Duration,
    pub deadline: Instant,
    /// Fired at the end of the shutdown grace.
    pub cut: CancellationToken,
    /// Run once the upstream is done and the meter dropped (so the request settles first):
    /// what it yields is sent last, before `data: [DONE]` (the ecash rail's change).
    pub epilogue: Option<BoxFuture<'static, Option<Bytes>>>,
}

struct Relay {
    upstream: BoxStream<'static, reqwest::Result<Bytes>>,
    meter: Option<Meter>,
    buffer: BytesMut,
    options: RelayOptions,
    done: bool,
    /// The upstream's `data: [DONE]`, held back until the epilogue has been sent.
    held_done: bool,
}

/// The client-facing body stream.
pub fn relay(
    upstream: BoxStream<'static, reqwest::Result<Bytes>>,
    meter: Meter,
    options: RelayOptions,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let relay = Relay {
        upstream,
        meter: Some(meter),
        buffer: BytesMut::new(),
        options,
        done: false,
        held_done: false,
    };
    futures_util::stream::unfold(relay, |mut relay| async move {
        let chunk = relay.next_chunk().await?;
        Some((Ok(chunk), relay))
    })
}

impl Relay {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if self.done {
                return self.finish().await;
            }
            let wait = self.options.idle_timeout.min(
                self.options
                    .deadline
                    .saturating_duration_since(Instant::now()),
            );
            let next = tokio::select! {
                _ = self.options.cut.cancelled() => {
                    self.done = true;
                    return Some(error_event("the gateway is shutting down; the stream was cut"));
                }
                next = tokio::time::timeout(wait, self.upstream.next()) => next,
            };
            match next {
                Err(_) => {
                    self.done = true;
                    return Some(error_event("the upstream stream timed out"));
                }
                Ok(None) => {
                    self.done = true;
                    if self.buffer.is_empty() {
                        return self.finish().await;
                    }
                    let rest = self.buffer.split().freeze();
                    self.read_event(&rest);
                    return Some(rest);
                }
                Ok(Some(Err(error))) => {
                    self.done = true;
                    tracing::warn!(error = %error.without_url(), "upstream stream failed");
                    return Some(error_event("the upstream stream failed"));
                }
                Ok(Some(Ok(chunk))) => {
                    if let Some(meter) = &mut self.meter {
                        meter.started();
                    }
                    self.buffer.extend_from_slice(&chunk);
                    let out = self.complete_events();
                    if !out.is_empty() {
                        return Some(out);
                    }
                }
            }
        }
    }

    /// Settles (drops the meter), then sends the epilogue and the held-back `[DONE]`.
    async fn finish(&mut self) -> Option<Bytes> {
        let epilogue = self.options.epilogue.take()?;
        drop(self.meter.take());
        let mut out = BytesMut::new();
        if let Some(bytes) = epilogue.await {
            out.extend_from_slice(&bytes);
        }
        if self.held_done {
            out.extend_from_slice(b"data: [DONE]\n\n");
        }
        Some(out.freeze()).filter(|out| !out.is_empty())
    }

    /// Takes every complete event off the buffer; returns those to forward.
    fn complete_events(&mut self) -> Bytes {
        let mut out = BytesMut::new();
        while let Some(end) = event_end(&self.buffer) {
            let event = self.buffer.split_to(end).freeze();
            if self.read_event(&event) {
                out.extend_from_slice(&event);
            }
        }
        out.freeze()
    }

    /// Reads usage and delivered text from one event; false if it is to be dropped.
    fn read_event(&mut self, event: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(event) else {
            return true;
        };
        let mut forward = true;
        for line in text.lines() {
            let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                continue;
            };
            if data == "[DONE]" {
                if self.options.epilogue.is_some() {
                    self.held_done = true;
                    forward = false;
                }
                continue;
            }
            let Ok(chunk) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            let Some(meter) = self.meter.as_mut() else {
                continue;
            };
            if let Some(usage) = usage_of(&chunk) {
                meter.usage(usage);
                let no_choices = chunk
                    .get("choices")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty);
                if self.options.hide_usage_chunk && no_choices {
                    forward = false;
                }
            }
            for_each_delta_text(&chunk, |text| meter.delivered(text));
        }
        forward
    }
}

/// End (exclusive) of the first complete SSE event in `buffer`.
fn event_end(buffer: &[u8]) -> Option<usize> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `usage` of a chunk or a whole response.
pub fn usage_of(value: &Value) -> Option<Usage> {
    let usage = value.get("usage")?;
    Some(Usage {
        prompt_tokens: usage.get("prompt_tokens")?.as_u64()?,
        completion_tokens: usage.get("completion_tokens")?.as_u64()?,
    })
}

/// Every piece of generated text in a stream chunk: content, reasoning, tool calls.
fn for_each_delta_text(chunk: &Value, mut f: impl FnMut(&str)) {
    let Some(choices) = chunk.get("choices").and_then(Value::as_array) else {
        return;
    };
    for choice in choices {
        let Some(delta) = choice.get("delta") else {
            continue;
        };
        for field in ["content", "reasoning_content", "refusal"] {
            if let Some(text) = delta.get(field).and_then(Value::as_str) {
                f(text);
            }
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for call in calls {
                if let Some(function) = call.get("function") {
                    for field in ["name", "arguments"] {
                        if let Some(text) = function.get(field).and_then(Value::as_str) {
                            f(text);
                        }
                    }
                }
            }
        }
    }
}

/// Every piece of generated text in a complete (non-streamed) response.
pub fn response_text(response: &Value) -> String {
    let mut text = String::new();
    if let Some(choices) = response.get("choices").and_then(Value::as_array) {
        for choice in choices {
            let Some(message) = choice.get("message") else {
                continue;
            };
            for field in ["content", "reasoning_content", "refusal"] {
                if let Some(part) = message.get(field).and_then(Value::as_str) {
                    text.push_str(part);
                }
            }
            if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
                for call in calls {
                    if let Some(function) = call.get("function") {
                        text.push_str(&function.to_string());
                    }
                }
            }
        }
    }
    text
}

fn error_event(message: &str) -> Bytes {
    let body = serde_json::json!({
        "error": {"message": message, "type": "api_error", "param": null, "code": "upstream_error"}
    });
    Bytes::from(format!("data: {body}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_event_boundaries_in_both_line_endings() {
        assert_eq!(event_end(b"data: 1\n\ndata: 2"), Some(9));
        assert_eq!(event_end(b"data: 1\r\n\r\n"), Some(11));
        assert_eq!(event_end(b"data: 1\n"), None);
    }

    #[test]
    fn reads_usage_and_text() {
        let chunk: Value = serde_json::json!({
            "choices": [{"delta": {"content": "hi", "tool_calls": [{"function": {"arguments": "{}"}}]}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2}
        });
        let mut seen = String::new();
        for_each_delta_text(&chunk, |t| seen.push_str(t));
        assert_eq!(seen, "hi{}");
        assert_eq!(
            usage_of(&chunk),
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 2
            })
        );
    }
}
