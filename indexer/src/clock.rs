//! Where "now" comes from. Time-dependent rules (which Nostr events may move the cursor) take
//! a [`Clock`] instead of reading the wall clock, so tests set the time rather than race it.
use std::{fmt, sync::Arc};

/// Unix seconds: the wall clock in production, whatever a test says in tests.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    /// The wall clock.
    pub fn system() -> Self {
        Self(Arc::new(|| crate::ledger::now().max(0) as u64))
    }

    /// A clock that reads `now` from a closure (tests: a fixed or hand-moved time).
    pub fn from_fn(now: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    /// Unix seconds now.
    pub fn now(&self) -> u64 {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}
