//! The ledger's notion of "now", injectable so that time-dependent rules (outbox back-off,
//! overdue credits) are tested by moving a clock, not by racing the wall clock.
use std::sync::{
    atomic::{AtomicI64, Ordering},
    Arc,
};

/// Unix seconds, from the system or from a hand-moved source.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// Wall time: what every service uses.
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// A clock that reads `seconds` and moves only when a test stores into it.
    pub fn manual(seconds: Arc<AtomicI64>) -> Self {
        Self {
            manual: Some(seconds),
        }
    }

    /// Unix seconds now, by this clock.
    pub fn now(&self) -> i64 {
        match &self.manual {
            Some(seconds) => seconds.load(Ordering::SeqCst),
            None => super::now(),
        }
    }
}
