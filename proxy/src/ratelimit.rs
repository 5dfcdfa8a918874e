//! Per-caller requests-per-minute and tokens-per-minute limits, in one-minute windows kept in
//! memory (each replica limits what it serves), for callers the ledger does not know yet:
//! ecash payers by address, before their token is touched, and the auth and Cashu endpoints.
//! A wallet's or key's limits are counted in the ledger over every replica (`ledger::rates`).
//! Tokens are counted as they are settled, so a caller over its tokens for the minute is
//! refused until the window turns.
//!
//! Memory is bounded: at most `capacity` callers are tracked by name. When a new caller finds
//! the map full, stale windows go first, then the callers that used the smallest share of the
//! gateway's limits this minute (half the map at once, so the sweep costs O(1) per caller on average). An evicted caller's
//! counts are not forgotten: they are folded, as a maximum, into a fixed array of buckets (by a
//! keyed hash of the name), and a caller entering the map starts from its bucket's counts. A
//! caller is therefore never counted below what it used, however many others flood the map.
use crate::error::ApiError;
use axum::{extract::ConnectInfo, http::request::Parts};
use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    net::SocketAddr,
    sync::Mutex,
};

/// The name an anonymous caller (paying per request: ecash, x402) is rate limited under: its
/// address, so a flood of payments from one client is refused before any of them reaches a
/// mint or the chain.
pub fn client_key(parts: &Parts) -> String {
    match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(peer)) => format!("ecash:{}", peer.ip()),
        None => "ecash".into(),
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Window {
    minute: i64,
    requests: u32,
    tokens: u64,
}

/// Callers tracked by name by default (about 100 bytes each).
pub const DEFAULT_CAPACITY: usize = 50_000;

/// Counts requests and tokens per caller and refuses what is over the limits.
pub struct RateLimiter {
    rpm: u32,
    tpm: u64,
    capacity: usize,
    windows: Mutex<Windows>,
}

struct Windows {
    by_caller: HashMap<String, Window>,
    /// The most any evicted caller hashing here used in `minute`.
    evicted: Vec<Window>,
    hasher: RandomState,
}

impl Windows {
    fn bucket(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) % self.evicted.len() as u64) as usize
    }

    /// The caller's window for `minute`, entering it in the map (full: after an eviction).
    fn window(&mut self, key: &str, minute: i64, limiter: &RateLimiter) -> &mut Window {
        let start = if self.by_caller.contains_key(key) {
            Window::default()
        } else {
            if self.by_caller.len() >= limiter.capacity {
                self.evict(minute, limiter.capacity / 2, |w| limiter.load(w));
            }
            let floor = self.evicted[self.bucket(key)];
            if floor.minute == minute {
                floor
            } else {
                Window::default()
            }
        };
        let window = self.by_caller.entry(key.to_owned()).or_insert(start);
        if window.minute != minute {
            *window = Window {
                minute,
                ..Window::default()
            };
        }
        window
    }

    /// Shrinks the map to `target` callers: stale windows, then the least loaded ones.
    fn evict(&mut self, minute: i64, target: usize, load: impl Fn(&Window) -> u128) {
        self.by_caller.retain(|_, window| window.minute == minute);
        let excess = self.by_caller.len().saturating_sub(target);
        if excess == 0 {
            return;
        }
        let mut activity: Vec<u128> = self.by_caller.values().map(&load).collect();
        let (_, threshold, _) = activity.select_nth_unstable(excess - 1);
        let threshold = *threshold;
        let Windows {
            by_caller,
            evicted,
            hasher,
        } = self;
        let buckets = evicted.len() as u64;
        let mut removed = 0;
        by_caller.retain(|key, window| {
            if removed >= excess || load(window) > threshold {
                return true;
            }
            removed += 1;
            let bucket = &mut evicted[(hasher.hash_one(key.as_str()) % buckets) as usize];
            if bucket.minute != minute {
                *bucket = *window;
            } else {
                bucket.requests = bucket.requests.max(window.requests);
                bucket.tokens = bucket.tokens.max(window.tokens);
            }
            false
        });
    }
}

/// The current minute and the seconds until the next one, at unix second `now`.
fn minute_of(now: u64) -> (i64, u64) {
    ((now / 60) as i64, 60 - now % 60)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl RateLimiter {
    /// A limiter of `rpm` requests and `tpm` tokens per caller and minute.
    pub fn new(rpm: u32, tpm: u64) -> Self {
        Self::with_capacity(rpm, tpm, DEFAULT_CAPACITY)
    }

    /// A limiter tracking at most `capacity` callers by name.
    pub fn with_capacity(rpm: u32, tpm: u64, capacity: usize) -> Self {
        let capacity = capacity.max(16);
        Self {
            rpm,
            tpm,
            capacity,
            windows: Mutex::new(Windows {
                by_caller: HashMap::new(),
                evicted: vec![Window::default(); (capacity / 8).max(1_024)],
                hasher: RandomState::new(),
            }),
        }
    }

    /// The share of the gateway's limits a window used, scaled by `rpm × tpm`.
    fn load(&self, window: &Window) -> u128 {
        let requests = u128::from(window.requests) * u128::from(self.tpm);
        let tokens = u128::from(window.tokens) * u128::from(self.rpm);
        requests.max(tokens)
    }

    /// How many callers are tracked by name (never more than the capacity).
    pub fn tracked(&self) -> usize {
        self.lock().by_caller.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Windows> {
        self.windows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a request for `key`, or refuses it with the seconds until the window turns.
    pub fn admit(&self, key: &str) -> Result<(), ApiError> {
        self.admit_at(key, unix_now())
    }

    /// [`Self::admit`] at unix second `now`.
    pub fn admit_at(&self, key: &str, now: u64) -> Result<(), ApiError> {
        let (rpm, tpm) = (self.rpm, self.tpm);
        let (minute, retry_after) = minute_of(now);
        let mut windows = self.lock();
        let window = windows.window(key, minute, self);
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
        self.record_tokens_at(key, tokens, unix_now())
    }

    /// [`Self::record_tokens`] at unix second `now`.
    pub fn record_tokens_at(&self, key: &str, tokens: u64, now: u64) {
        let (minute, _) = minute_of(now);
        let mut windows = self.lock();
        let window = windows.window(key, minute, self);
        window.tokens = window.tokens.saturating_add(tokens);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited(result: Result<(), ApiError>) -> bool {
        matches!(result, Err(ApiError::RateLimited { .. }))
    }

    #[test]
    fn refuses_past_the_request_and_token_limits() {
        let limiter = RateLimiter::new(2, 100);
        assert!(limiter.admit("a").is_ok());
        assert!(limiter.admit("a").is_ok());
        assert!(limited(limiter.admit("a")));
        assert!(limiter.admit("b").is_ok(), "limits are per caller");
        limiter.record_tokens("c", 100);
        assert!(limited(limiter.admit("c")));
    }

    #[test]
    fn a_window_turns_with_the_minute() {
        let limiter = RateLimiter::new(1, 100);
        let t = 60 * 1_000 + 59;
        assert!(limiter.admit_at("a", t).is_ok());
        assert!(limited(limiter.admit_at("a", t)));
        assert!(limiter.admit_at("a", t + 1).is_ok(), "next minute");
    }

    #[test]
    fn a_flood_of_distinct_callers_stays_bounded_and_limits_still_hold() {
        let limiter = RateLimiter::new(5, 1_000);
        let t = 60 * 1_000;
        for _ in 0..5 {
            assert!(limiter.admit_at("real-caller", t).is_ok());
        }
        assert!(limited(limiter.admit_at("real-caller", t)));
        limiter.record_tokens_at("heavy-reader", 1_000, t);
        assert!(limited(limiter.admit_at("heavy-reader", t)));

        for i in 0..100_000 {
            // Each flooder is within its own limit; together they are many.
            let _ = limiter.admit_at(&format!("flooder-{i}"), t + 1);
            assert!(limiter.tracked() <= DEFAULT_CAPACITY);
        }
        assert!(limiter.tracked() <= DEFAULT_CAPACITY);

        assert!(
            limited(limiter.admit_at("real-caller", t + 2)),
            "the flood did not reset the real caller's window"
        );
        assert!(limited(limiter.admit_at("heavy-reader", t + 2)));
        assert!(
            limiter.admit_at("newcomer", t + 2).is_ok(),
            "a new caller is still served"
        );
        assert!(
            limiter.admit_at("real-caller", t + 60).is_ok(),
            "the next minute serves it again"
        );
    }

    #[test]
    fn an_evicted_caller_resumes_from_its_counts() {
        let limiter = RateLimiter::with_capacity(3, 1_000, 16);
        let t = 60 * 1_000;
        for _ in 0..2 {
            assert!(limiter.admit_at("caller", t).is_ok());
        }
        // More than the map holds, each busier than `caller`: it is evicted first.
        for i in 0..64 {
            for _ in 0..3 {
                let _ = limiter.admit_at(&format!("busy-{i}"), t);
            }
        }
        assert!(limiter.tracked() <= 16);
        // It re-enters with at least its own two requests (more when a busier evicted caller
        // shares its bucket), so at most its third is served: a fresh window would serve three.
        let _third = limiter.admit_at("caller", t);
        assert!(limited(limiter.admit_at("caller", t)), "not a fresh window");
    }
}
