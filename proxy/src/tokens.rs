//! Tokens without the upstream's word: the prompt bound that sizes a reservation, and exact
//! counts (o200k_base via tiktoken-rs) for what is charged when the usage never came.
//!
//! The tokenizer costs 46 MiB of resident memory, so it is loaded only when something must be
//! counted exactly: at start when a model has an upstream that reports no usage (its prompts
//! are then counted to reserve, as they will be charged), otherwise the first time a request
//! ends without the upstream's usage. A reservation is sized from the prompt's bytes instead:
//! no o200k token is shorter than one byte, so the bytes bound the count from above.
use serde_json::{Map, Value};
use std::sync::LazyLock;
use tiktoken_rs::CoreBPE;

/// Tokens added per message and per reply by chat templates (OpenAI's published rule).
const PER_MESSAGE: u64 = 4;
const PER_REPLY: u64 = 3;
/// What an image part is reserved at (a high-detail 512×512 tile in OpenAI's accounting).
const PER_IMAGE: u64 = 765;

static BPE: LazyLock<Option<CoreBPE>> = LazyLock::new(|| tiktoken_rs::o200k_base().ok());

/// Tokens in `text` (loads the tokenizer). Without the tokenizer (it is embedded, so only in
/// theory), the byte count, which no BPE tokenizer exceeds.
pub fn count(text: &str) -> u64 {
    match BPE.as_ref() {
        Some(bpe) => bpe.encode_ordinary(text).len() as u64,
        None => text.len() as u64,
    }
}

/// Prompts with more text than this are counted on the blocking pool: a BPE pass costs about
/// a microsecond per few bytes, so a long prompt counted inline would stall every request
/// sharing its async worker.
pub const INLINE_PROMPT_BYTES: usize = 4 * 1024;

/// Delivered text is kept uncounted up to about this size (the upstream's usage usually comes
/// at the stream's end and makes counting needless), then counted in pieces of it, so a long
/// stream neither keeps its whole text nor pays for counting it all at once when it ends.
const DELIVERED_PIECE_BYTES: usize = 32 * 1024;

/// Text without such a cut (some scripts, minified code) is counted anyway past this size; the
/// count may then differ by a token at that seam.
const LONGEST_PIECE_BYTES: usize = 64 * 1024;

/// The tokens of a stream's text, counted only if its usage never comes: kept as text while
/// short, counted in pieces as it grows. Pieces are cut just before a space that follows a
/// word, where o200k's pre-tokenizer splits anyway, so the sum matches counting the whole text.
#[derive(Debug, Default)]
pub struct DeliveredTokens {
    counted: u64,
    pending: String,
    /// The bytes of `pending` already searched for a cut, without one.
    searched: usize,
}

impl DeliveredTokens {
    pub fn push(&mut self, text: &str) {
        self.pending.push_str(text);
        if self.pending.len() < DELIVERED_PIECE_BYTES {
            return;
        }
        let bytes = self.pending.as_bytes();
        let cut = (self.searched.max(1)..bytes.len())
            .rev()
            .find(|&i| bytes[i] == b' ' && !bytes[i - 1].is_ascii_whitespace())
            .or((bytes.len() >= LONGEST_PIECE_BYTES).then_some(bytes.len()));
        if let Some(cut) = cut {
            self.counted += count(&self.pending[..cut]);
            self.pending.drain(..cut);
        }
        // What is left after the last cut holds no other.
        self.searched = self.pending.len();
    }

    pub fn total(&self) -> u64 {
        self.counted + count(&self.pending)
    }
}

/// Loads the tokenizer now, so the first request that counts does not pay for it.
pub fn warm_up() {
    let _ = count("warm up");
}

/// How much text [`count_prompt`] would count, without counting it (a walk, no allocation):
/// what decides whether it is counted inline.
pub fn prompt_text_bytes(body: &Map<String, Value>) -> usize {
    fn text_bytes(value: &Value) -> usize {
        match value {
            Value::String(text) => text.len(),
            Value::Array(items) => items.iter().map(text_bytes).sum(),
            Value::Object(fields) => fields.values().map(text_bytes).sum(),
            _ => 8,
        }
    }
    ["messages", "tools", "functions", "response_format"]
        .iter()
        .filter_map(|field| body.get(*field))
        .map(text_bytes)
        .sum()
}

/// The prompt tokens of a chat request, exactly (loads the tokenizer): messages (text and
/// images), tool definitions and the template overhead.
pub fn count_prompt(body: &Map<String, Value>) -> u64 {
    prompt_tokens(body, count)
}

/// At least [`count_prompt`], from the prompt's bytes, without the tokenizer: what a
/// reservation holds when the upstream will report the exact usage.
pub fn prompt_bound(body: &Map<String, Value>) -> u64 {
    prompt_tokens(body, |text| text.len() as u64)
}

/// The prompt's tokens with every piece of text measured by `measure`.
fn prompt_tokens(body: &Map<String, Value>, measure: fn(&str) -> u64) -> u64 {
    let mut tokens = PER_REPLY;
    if let Some(Value::Array(messages)) = body.get("messages") {
        for message in messages {
            tokens += PER_MESSAGE + message_tokens(message, measure);
        }
    }
    for field in ["tools", "functions", "response_format"] {
        if let Some(value) = body.get(field) {
            tokens += measure(&value.to_string());
        }
    }
    tokens
}

/// Tokens in a message: every string in it, images at a flat rate.
fn message_tokens(value: &Value, measure: fn(&str) -> u64) -> u64 {
    match value {
        Value::String(text) => measure(text),
        Value::Array(items) => items.iter().map(|item| message_tokens(item, measure)).sum(),
        Value::Object(fields) => {
            if fields.get("type").and_then(Value::as_str) == Some("image_url") {
                return PER_IMAGE;
            }
            fields
                .values()
                .map(|field| message_tokens(field, measure))
                .sum()
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
        let counted = count_prompt(body.as_object().unwrap());
        assert_eq!(
            counted,
            PER_REPLY + PER_MESSAGE + count("user") + count("hello world")
        );
        let bound = prompt_bound(body.as_object().unwrap());
        assert_eq!(
            bound,
            PER_REPLY + PER_MESSAGE + "user".len() as u64 + "hello world".len() as u64
        );
        assert_eq!(
            prompt_text_bytes(body.as_object().unwrap()),
            "user".len() + "hello world".len()
        );
    }

    #[test]
    fn the_byte_bound_is_never_below_the_count() {
        let texts = [
            "plain English, with punctuation; and numbers 12345.",
            "文字と絵文字 🦀🦀 mixed with ASCII",
            "fn main() { println!(\"{}\", 1 + 2); }\n\t\t  ",
            "a",
            "",
        ];
        for text in texts {
            let body = serde_json::json!({
                "messages": [
                    {"role": "system", "content": text},
                    {"role": "user", "content": [
                        {"type": "text", "text": text},
                        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}
                    ]}
                ],
                "tools": [{"type": "function", "function": {"name": "f", "description": text}}]
            });
            let body = body.as_object().unwrap();
            assert!(
                prompt_bound(body) >= count_prompt(body),
                "{text:?}: bound {} < count {}",
                prompt_bound(body),
                count_prompt(body)
            );
        }
    }

    #[test]
    fn delivered_text_counted_in_pieces_matches_counting_it_whole() {
        // Words of mixed lengths, punctuation, a double space and a newline, streamed in
        // uneven chunks, long enough for several pieces.
        let text: String = (0..12_000)
            .map(|i| match i % 7 {
                0 => "Tokenisation,".to_string(),
                3 => format!("{i}  spaced\n"),
                _ => format!("w{}", "x".repeat(i % 11)),
            })
            .collect::<Vec<_>>()
            .join(" ");
        let mut delivered = DeliveredTokens::default();
        let mut rest = text.as_str();
        let mut step = 1;
        while !rest.is_empty() {
            let mut end = (step * 37).min(rest.len());
            while !rest.is_char_boundary(end) {
                end += 1;
            }
            delivered.push(&rest[..end]);
            rest = &rest[end..];
            step = step % 9 + 1;
        }
        assert!(delivered.pending.len() < DELIVERED_PIECE_BYTES + 37 * 9);
        assert!(delivered.counted > 0, "pieces were counted on the way");
        assert_eq!(delivered.total(), count(&text));

        // Text with no space at all is still counted on the way, not kept whole.
        let mut delivered = DeliveredTokens::default();
        for _ in 0..20_000 {
            delivered.push("文字");
        }
        assert!(delivered.pending.len() < LONGEST_PIECE_BYTES);
        let whole = count(&"文字".repeat(20_000));
        assert!(
            delivered.total().abs_diff(whole) <= 2,
            "{} vs {whole}",
            delivered.total()
        );
    }
}
