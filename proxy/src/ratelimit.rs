//! Per-caller requests-per-minute and tokens-per-minute limits, in one-minute windows kept in
//! memory (each replica limits what it serves). Tokens are counted as they are settled, so a
//! caller over its tokens for the minute is refused until the window turns.
use crate::error::ApiError;
use std::{collections::HashMap, sync::Mutex};

#[derive(Debug, Default, Clone, Copy)]
struct Window {
    minute: i64,
    requests: u32,
    tokens: u64,
}

/// A caller's own limits, when lower than the gateway's.
#[derive(Debug, Default, Clone, Copy)]
pub struct Limits {
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
}

pub struct RateLimiter {
    rpm: u32,
    tpm: u64,
    windows: Mutex<HashMap<String, Window>>,
}

/// Windows kept before stale ones are dropped.
const PRUNE_AT: usize = 100_000;

impl RateLimiter {
    pub fn new(rpm: u32, tpm: u64) -> Self {
        Self {
            rpm,
            tpm,
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn now() -> (i64, u64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        ((now / 60) as i64, 60 - now % 60)
    }

    /// Counts a request for `key`, or refuses it with the seconds until the window turns.
    pub fn admit(&self, key: &str, limits: Option<Limits>) -> Result<(), ApiError> {
        let limits = limits.unwrap_or_default();
        let rpm = limits.rpm.map_or(self.rpm, |rpm| rpm.min(self.rpm));
        let tpm = limits.tpm.map_or(self.tpm, |tpm| tpm.min(self.tpm));
        let (minute, retry_after) = Self::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= PRUNE_AT {
            windows.retain(|_, window| window.minute == minute);
        }
        let window = windows.entry(key.to_owned()).or_default();
        if window.minute != minute {
            *window = Window {
                minute,
                ..Window::default()
            };
        }
        if window.requests >= rpm {
            return Err(ApiError::RateLimited {
                message: format!("{rpm} requests per minute"),
                retry_after,
            });
        }
        if window.tokens >= tpm {
            return Err(ApiError::RateLimited {
                message: format!("{tpm} tokens per minute"),
                retry_after,
            });
        }
        window.requests += 1;
        Ok(())
    }

    /// Counts `tokens` served to `key` in the current window.
    pub fn record_tokens(&self, key: &str, tokens: u64) {
        let (minute, _) = Self::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let window = windows.entry(key.to_owned()).or_default();
        if window.minute != minute {
            *window = Window {
                minute,
                ..Window::default()
            };
        }
        window.tokens = window.tokens.saturating_add(tokens);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_request_and_token_limits() {
        let limiter = RateLimiter::new(2, 100);
        assert!(limiter.admit("a", None).is_ok());
        assert!(limiter.admit("a", None).is_ok());
        assert!(matches!(
            limiter.admit("a", None),
            Err(ApiError::RateLimited { .. })
        ));
        assert!(limiter.admit("b", None).is_ok(), "limits are per caller");
        limiter.record_tokens("c", 100);
        assert!(matches!(
            limiter.admit("c", None),
            Err(ApiError::RateLimited { .. })
        ));
        let own = Limits {
            rpm: Some(1),
            tpm: None,
        };
        assert!(limiter.admit("d", Some(own)).is_ok());
        assert!(
            limiter.admit("d", Some(own)).is_err(),
            "a key's own lower limit applies"
        );
    }
}
