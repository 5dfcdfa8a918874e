//! The chat request as the gateway reads it, parsed once into a typed model, and the body each
//! upstream is sent. Every field that bounds the output is read here and normalised into one
//! bound, which is what is reserved for and the only bound the upstream is sent, so an upstream
//! can never be asked for more than was reserved, whichever field the client used.
use crate::{config::BoundField, tokens};
use serde_json::{Map, Value};

/// Fields through which OpenAI-compatible servers bound the completion tokens of one choice:
/// OpenAI's `max_tokens` (legacy) and `max_completion_tokens`, the Responses-style
/// `max_output_tokens` and TGI's `max_new_tokens`. The client's smallest one counts; all are
/// removed from the forwarded body and the upstream's own field carries the bound.
pub const BOUND_FIELDS: [&str; 4] = [
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "max_new_tokens",
];

/// Most sequences (`n`, `best_of`) one request may ask for.
pub const MAX_CHOICES: u64 = 16;

/// Why a chat request was refused before anything was reserved (a 400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("`model` is required and must be a string")]
    Model,
    #[error("`messages` must be a non-empty array")]
    Messages,
    #[error("`stream` must be a boolean")]
    Stream,
    #[error("`{0}` must be a positive integer")]
    Bound(&'static str),
    #[error("`{0}` must be 1 to {max}", max = MAX_CHOICES)]
    Choices(&'static str),
    #[error("`best_of` must be at least `n`")]
    BestOf,
}

/// A parsed `POST /v1/chat/completions` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The gateway's model id.
    pub model: String,
    pub stream: bool,
    /// The client asked for a stream's usage chunk itself (else the gateway hides it).
    pub include_usage: bool,
    /// The smallest output bound the client gave, in any of [`BOUND_FIELDS`].
    pub max_output: Option<u64>,
    /// Choices returned.
    pub n: Option<u64>,
    /// Sequences generated to pick the best `n` from (vLLM's `best_of`).
    pub best_of: Option<u64>,
    /// Everything else, forwarded as given (`messages` included).
    pub rest: Map<String, Value>,
}

impl ChatRequest {
    /// Reads and checks the fields the gateway prices and bounds.
    pub fn parse(mut body: Map<String, Value>) -> Result<Self, RequestError> {
        let model = match body.remove("model") {
            Some(Value::String(model)) => model,
            _ => return Err(RequestError::Model),
        };
        match body.get("messages") {
            Some(Value::Array(messages)) if !messages.is_empty() => {}
            _ => return Err(RequestError::Messages),
        }
        let stream = match body.remove("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(stream)) => stream,
            Some(_) => return Err(RequestError::Stream),
        };
        let include_usage = body
            .get("stream_options")
            .and_then(|options| options.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut max_output: Option<u64> = None;
        for field in BOUND_FIELDS {
            if let Some(tokens) = positive(body.remove(field), RequestError::Bound(field))? {
                max_output = Some(max_output.map_or(tokens, |bound| bound.min(tokens)));
            }
        }
        let choices =
            |field: &'static str, value| match positive(value, RequestError::Choices(field)) {
                Ok(Some(count)) if count > MAX_CHOICES => Err(RequestError::Choices(field)),
                other => other,
            };
        let n = choices("n", body.remove("n"))?;
        let best_of = choices("best_of", body.remove("best_of"))?;
        if best_of.is_some_and(|best_of| best_of < n.unwrap_or(1)) {
            return Err(RequestError::BestOf);
        }
        Ok(Self {
            model,
            stream,
            include_usage,
            max_output,
            n,
            best_of,
            rest: body,
        })
    }

    /// Sequences the upstream generates, each up to the bound: what the reservation multiplies.
    pub fn sequences(&self) -> u64 {
        let n = self.n.unwrap_or(1);
        self.best_of.map_or(n, |best_of| best_of.max(n))
    }

    /// The prompt tokens to reserve for: the bound from its bytes, or, when `exact` (an
    /// upstream of the model reports no usage), its count. A long prompt is counted on the
    /// blocking pool (the request moves there and back, nothing is copied) so it never stalls
    /// an async worker. Fails only if the runtime is shutting down.
    pub async fn prompt_tokens(self, exact: bool) -> Result<(Self, u64), tokio::task::JoinError> {
        if !exact {
            let bound = tokens::prompt_bound(&self.rest);
            return Ok((self, bound));
        }
        if tokens::prompt_text_bytes(&self.rest) <= tokens::INLINE_PROMPT_BYTES {
            let prompt = tokens::count_prompt(&self.rest);
            return Ok((self, prompt));
        }
        tokio::task::spawn_blocking(move || {
            let prompt = tokens::count_prompt(&self.rest);
            (self, prompt)
        })
        .await
    }

    /// The body for an upstream serving it as `upstream_model`, bounded to `bound` completion
    /// tokens per sequence in the one field that upstream reads. A stream always asks for usage.
    pub fn upstream_body(
        &self,
        upstream_model: &str,
        field: BoundField,
        bound: u64,
    ) -> Map<String, Value> {
        let mut body = self.rest.clone();
        body.insert("model".into(), Value::from(upstream_model));
        body.insert(field.name().into(), Value::from(bound));
        if let Some(n) = self.n {
            body.insert("n".into(), Value::from(n));
        }
        if let Some(best_of) = self.best_of {
            body.insert("best_of".into(), Value::from(best_of));
        }
        if self.stream {
            body.insert("stream".into(), Value::Bool(true));
            let options = body
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if !options.is_object() {
                *options = Value::Object(Map::new());
            }
            if let Some(options) = options.as_object_mut() {
                options.insert("include_usage".into(), Value::Bool(true));
            }
        }
        body
    }
}

/// A positive integer field; absent and `null` are `None`.
fn positive(value: Option<Value>, error: RequestError) -> Result<Option<u64>, RequestError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .filter(|count| *count > 0)
            .map(Some)
            .ok_or(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: Value) -> Result<ChatRequest, RequestError> {
        ChatRequest::parse(body.as_object().cloned().unwrap_or_default())
    }

    fn ask(extra: Value) -> Value {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        for (key, value) in extra.as_object().cloned().unwrap_or_default() {
            body[key] = value;
        }
        body
    }

    #[test]
    fn the_smallest_bound_in_any_field_counts_and_only_the_upstreams_field_is_sent() {
        for extra in [
            json!({"max_tokens": 5, "max_completion_tokens": 50}),
            json!({"max_completion_tokens": 5, "max_tokens": 50}),
            json!({"max_new_tokens": 5, "max_output_tokens": 9}),
        ] {
            let request = parse(ask(extra.clone())).unwrap();
            assert_eq!(request.max_output, Some(5), "{extra}");
            for field in [BoundField::MaxTokens, BoundField::MaxCompletionTokens] {
                let body = request.upstream_body("up", field, 4);
                let bounds: Vec<_> = BOUND_FIELDS.iter().filter_map(|f| body.get(*f)).collect();
                assert_eq!(bounds, vec![&json!(4)], "one bound, the reserved one");
                assert_eq!(body[field.name()], 4);
                assert_eq!(body["model"], "up");
            }
        }
    }

    #[test]
    fn sequences_multiply_by_n_or_best_of() {
        assert_eq!(parse(ask(json!({}))).unwrap().sequences(), 1);
        assert_eq!(parse(ask(json!({"n": 3}))).unwrap().sequences(), 3);
        let best = parse(ask(json!({"n": 2, "best_of": 5}))).unwrap();
        assert_eq!(best.sequences(), 5);
        let body = best.upstream_body("up", BoundField::MaxTokens, 7);
        assert_eq!((&body["n"], &body["best_of"]), (&json!(2), &json!(5)));
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (json!({"messages": []}), RequestError::Model),
            (
                json!({"model": "m", "messages": []}),
                RequestError::Messages,
            ),
            (ask(json!({"stream": "yes"})), RequestError::Stream),
            (
                ask(json!({"max_tokens": 0})),
                RequestError::Bound("max_tokens"),
            ),
            (
                ask(json!({"max_completion_tokens": -1})),
                RequestError::Bound("max_completion_tokens"),
            ),
            (ask(json!({"n": 17})), RequestError::Choices("n")),
            (ask(json!({"n": 3, "best_of": 2})), RequestError::BestOf),
        ];
        for (body, error) in cases {
            assert_eq!(parse(body.clone()), Err(error), "{body}");
        }
    }

    #[test]
    fn a_stream_asks_for_usage_and_keeps_the_clients_other_options() {
        let request = parse(ask(json!({"stream": true, "stream_options": {"x": 1}}))).unwrap();
        assert!(!request.include_usage);
        let body = request.upstream_body("up", BoundField::MaxTokens, 1);
        assert_eq!(
            body["stream_options"],
            json!({"x": 1, "include_usage": true})
        );
    }

    #[tokio::test]
    async fn a_long_prompt_is_counted_on_the_blocking_pool_to_the_same_total() {
        for content in ["a short question".to_string(), "lorem ipsum ".repeat(1_000)] {
            let request = parse(json!({
                "model": "m",
                "messages": [{"role": "user", "content": content}],
            }))
            .unwrap();
            let expected = tokens::count_prompt(&request.rest);
            let (back, counted) = request.clone().prompt_tokens(true).await.unwrap();
            assert_eq!(counted, expected);
            assert_eq!(back, request, "the request comes back as it went");
            let (back, bound) = request.clone().prompt_tokens(false).await.unwrap();
            assert_eq!(bound, tokens::prompt_bound(&request.rest));
            assert!(bound >= counted);
            assert_eq!(back, request);
        }
        let long = "lorem ipsum ".repeat(1_000);
        assert!(
            long.len() > tokens::INLINE_PROMPT_BYTES,
            "one of them is long"
        );
    }
}
