//! Counting tokens where the upstream does not: the prompt estimate that sizes a reservation,
//! and what a stream delivered when its usage never came (o200k_base via tiktoken-rs).
use serde_json::{Map, Value};
use std::sync::LazyLock;
use tiktoken_rs::CoreBPE;

/// Tokens added per message and per reply by chat templates (OpenAI's published rule).
const PER_MESSAGE: u64 = 4;
const PER_REPLY: u64 = 3;
/// What an image part is reserved at (a high-detail 512×512 tile in OpenAI's accounting).
const PER_IMAGE: u64 = 765;

static BPE: LazyLock<Option<CoreBPE>> = LazyLock::new(|| tiktoken_rs::o200k_base().ok());

/// Tokens in `text`. Without the tokenizer (it is embedded, so only in theory), the byte count,
/// which no BPE tokenizer exceeds.
pub fn count(text: &str) -> u64 {
    match BPE.as_ref() {
        Some(bpe) => bpe.encode_ordinary(text).len() as u64,
        None => text.len() as u64,
    }
}

/// Loads the tokenizer now, so the first request does not pay for it.
pub fn warm_up() {
    let _ = count("warm up");
}

/// The prompt tokens of a chat request: messages (text and images), tool definitions and the
/// template overhead.
pub fn estimate_prompt(body: &Map<String, Value>) -> u64 {
    let mut tokens = PER_REPLY;
    if let Some(Value::Array(messages)) = body.get("messages") {
        for message in messages {
            tokens += PER_MESSAGE + count_value(message);
        }
    }
    for field in ["tools", "functions", "response_format"] {
        if let Some(value) = body.get(field) {
            tokens += count(&value.to_string());
        }
    }
    tokens
}

/// Tokens in a message: every string in it, images at a flat rate.
fn count_value(value: &Value) -> u64 {
    match value {
        Value::String(text) => count(text),
        Value::Array(items) => items.iter().map(count_value).sum(),
        Value::Object(fields) => {
            if fields.get("type").and_then(Value::as_str) == Some("image_url") {
                return PER_IMAGE;
            }
            fields.values().map(count_value).sum()
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_text_and_messages() {
        assert_eq!(count(""), 0);
        assert!(count("hello world") >= 2);
        let body = serde_json::json!({
            "model": "m",
            "messages": [{"role": "user", "content": "hello world"}]
        });
        let estimate = estimate_prompt(body.as_object().unwrap());
        assert_eq!(
            estimate,
            PER_REPLY + PER_MESSAGE + count("user") + count("hello world")
        );
    }
}
