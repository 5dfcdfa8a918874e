//! Cross-origin access, for browser clients on other origins: a web app calling the API with a
//! delegated key, a browser agent paying with x402 (which must read `PAYMENT-REQUIRED` and
//! `PAYMENT-RESPONSE`). The API authenticates by header only — bearer tokens, ecash, x402
//! payments, never cookies — so answering any origin lends a page nothing it did not bring.
use axum::http::{HeaderName, HeaderValue, Method};
use common::config::ConfigError;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Headers a browser client sends besides the simple ones.
const REQUEST_HEADERS: [&str; 5] = [
    "authorization",
    "content-type",
    "payment-signature",
    "x-cashu",
    "x-request-id",
];
/// Headers a browser client must be able to read from an answer.
const RESPONSE_HEADERS: [&str; 5] = [
    "payment-required",
    "payment-response",
    "x-cashu",
    "x-request-id",
    "retry-after",
];
/// How long a browser may reuse a preflight's answer.
const PREFLIGHT_CACHE: Duration = Duration::from_secs(3600);

/// The layer for `origins` (`["*"]`: any; empty: no cross-origin access), or why an origin is
/// not one.
pub fn layer(origins: &[String]) -> Result<Option<CorsLayer>, ConfigError> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = match origins.iter().any(|origin| origin == "*") {
        true => AllowOrigin::any(),
        false => AllowOrigin::list(
            origins
                .iter()
                .map(|origin| parse_origin(origin))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers(REQUEST_HEADERS.map(HeaderName::from_static))
            .expose_headers(RESPONSE_HEADERS.map(HeaderName::from_static))
            .max_age(PREFLIGHT_CACHE),
    ))
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing after.
fn parse_origin(origin: &str) -> Result<HeaderValue, ConfigError> {
    let invalid = || {
        ConfigError::Invalid(format!(
            "cors_origins: {origin:?} is not an origin (https://app.example, or \"*\")"
        ))
    };
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(invalid)?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return Err(invalid());
    }
    HeaderValue::from_str(origin).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_once_at_start() {
        assert!(layer(&[]).unwrap().is_none());
        assert!(layer(&["*".into()]).unwrap().is_some());
        assert!(
            layer(&["https://app.example".into(), "http://127.0.0.1:3000".into()])
                .unwrap()
                .is_some()
        );
        for bad in [
            "app.example",
            "https://app.example/path",
            "ftp://x",
            "https://",
        ] {
            let error = layer(&[bad.into()]).err().unwrap();
            assert!(
                error.to_string().contains("is not an origin"),
                "{bad}: {error}"
            );
        }
    }
}
