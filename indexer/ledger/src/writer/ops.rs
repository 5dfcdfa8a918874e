//! What a request asks of the ledger's writer (hold, mark served, charge, release), owning its
//! data because it crosses to the writer's thread or task, and what the writer answers.
use crate::{
    keys::KeyLimit,
    rates::{RateLimit, RateWindow},
    spend::{Charge, Hold, Reservation, Settlement},
    usage::UsageRecord,
    LedgerError, Result,
};
use tokio::sync::{mpsc, oneshot};

/// The most writes one transaction commits; more wait for the next one.
pub(crate) const MAX_BATCH: usize = 512;
/// Writes waiting beyond this make their callers wait to queue (backpressure).
pub(crate) const QUEUE: usize = 8192;

/// Signs the debit event of a charge, given what was charged (see `Ledger::charge`).
pub(crate) type Announce = Box<dyn Fn(i64) -> Option<crate::Announcement> + Send + Sync>;

/// A write to apply.
pub(crate) enum Op {
    Hold(OwnedHold),
    Served { id: String, at: i64 },
    Charge(OwnedCharge, Announce),
    Release(String),
}

/// What a write did.
#[derive(Debug)]
pub(crate) enum Done {
    Held(Reservation),
    Served(bool),
    Charged(Settlement),
    Released(bool),
}

/// The writer answered a write with another write's kind of answer (a bug, not input).
pub(crate) fn unexpected() -> LedgerError {
    LedgerError::WriterStopped("answered with another write's result")
}

/// A queued write and where its answer goes.
pub(crate) struct Job {
    pub(crate) op: Op,
    pub(crate) reply: oneshot::Sender<Result<Done>>,
}

/// Waits for the next write, then takes every write already waiting behind it (up to
/// [`MAX_BATCH`]); `None` once every sender is gone.
pub(crate) async fn next_batch(queue: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>) -> bool {
    let Some(first) = queue.recv().await else {
        return false;
    };
    batch.push(first);
    while batch.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    true
}

/// A [`Hold`] that owns its strings.
pub(crate) struct OwnedHold {
    pub(crate) id: String,
    pub(crate) user: String,
    pub(crate) amount: i64,
    pub(crate) minimum: Option<i64>,
    pub(crate) ttl_seconds: i64,
    pub(crate) key: Option<(String, i64, Option<i64>)>,
    pub(crate) rate: Option<OwnedRateLimit>,
    pub(crate) session: Option<String>,
}

/// A [`RateLimit`] that owns its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnedRateLimit {
    pub(crate) caller: String,
    pub(crate) minute: i64,
    pub(crate) rpm: i64,
    pub(crate) tpm: i64,
}

impl OwnedRateLimit {
    pub(crate) fn borrowed(&self) -> RateLimit<'_> {
        RateLimit {
            caller: &self.caller,
            minute: self.minute,
            rpm: self.rpm,
            tpm: self.tpm,
        }
    }
}

impl From<&Hold<'_>> for OwnedHold {
    fn from(hold: &Hold<'_>) -> Self {
        Self {
            id: hold.id.to_owned(),
            user: hold.user.to_owned(),
            amount: hold.amount,
            minimum: hold.minimum,
            ttl_seconds: hold.ttl_seconds,
            key: hold
                .key
                .as_ref()
                .map(|key| (key.key_id.to_owned(), key.budget, key.max_uses)),
            rate: hold.rate.map(|rate| OwnedRateLimit {
                caller: rate.caller.to_owned(),
                minute: rate.minute,
                rpm: rate.rpm,
                tpm: rate.tpm,
            }),
            session: hold.session.map(str::to_owned),
        }
    }
}

impl OwnedHold {
    pub(crate) fn borrowed(&self) -> Hold<'_> {
        Hold {
            id: &self.id,
            user: &self.user,
            amount: self.amount,
            minimum: self.minimum,
            ttl_seconds: self.ttl_seconds,
            key: self
                .key
                .as_ref()
                .map(|(key_id, budget, max_uses)| KeyLimit {
                    key_id,
                    budget: *budget,
                    max_uses: *max_uses,
                }),
            rate: self.rate.as_ref().map(OwnedRateLimit::borrowed),
            session: self.session.as_deref(),
        }
    }
}

/// A [`Charge`] that owns its strings.
pub(crate) struct OwnedCharge {
    pub(crate) id: String,
    pub(crate) user: String,
    pub(crate) cost: i64,
    pub(crate) key_id: Option<String>,
    pub(crate) usage: Option<UsageRecord>,
    /// The rate window's caller and minute.
    pub(crate) rate: Option<(String, i64)>,
}

impl From<&Charge<'_>> for OwnedCharge {
    fn from(charge: &Charge<'_>) -> Self {
        Self {
            id: charge.id.to_owned(),
            user: charge.user.to_owned(),
            cost: charge.cost,
            key_id: charge.key_id.map(str::to_owned),
            usage: charge.usage.clone(),
            rate: charge
                .rate
                .map(|window| (window.caller.to_owned(), window.minute)),
        }
    }
}

impl OwnedCharge {
    pub(crate) fn borrowed(&self) -> Charge<'_> {
        Charge {
            id: &self.id,
            user: &self.user,
            cost: self.cost,
            key_id: self.key_id.as_deref(),
            usage: self.usage.clone(),
            rate: self.rate.as_ref().map(|(caller, minute)| RateWindow {
                caller,
                minute: *minute,
            }),
        }
    }
}
