//! The Nostr cursor: the newest `created_at` the watcher may resume from after a restart.
//!
//! Anyone can publish an event with any `created_at`. If any event could move the cursor, an
//! event dated a year ahead would make the next restart subscribe from next year and lose every
//! real credit, debit and request in between. So only events that are
//! - signed (verified) by a trusted key (a configured controller or proxy key), and
//! - dated no later than now + the allowed clock skew
//!
//! move it. User `Request`s come from any key and never move it: they are re-delivered by the
//! overlap of the next resume or published again by the user, and the controller's replies to
//! them (trusted) move it. A stored cursor later than the moment it was written (plus the skew)
//! cannot come from this rule (it was written by an older version); it is clamped to that moment.
use super::ingest::Trust;
use crate::{clock::Clock, ledger::Ledger};
use nostr_sdk::prelude::{Event, Timestamp};

/// Cursor name in the ledger.
pub const CURSOR: &str = "nostr";
/// How far before the cursor a resumed subscription starts (events of one second may arrive
/// out of order, and relays may store an event a little after its `created_at`).
pub const OVERLAP: u64 = 120;

/// The watcher's cursor and the rule that moves it.
#[derive(Debug, Clone)]
pub struct NostrCursor {
    newest: u64,
    max_skew: u64,
    clock: Clock,
}

impl NostrCursor {
    /// The persisted cursor, clamped to when it was written (+ `max_skew`).
    pub async fn load(ledger: &Ledger, max_skew: u64, clock: Clock) -> crate::ledger::Result<Self> {
        let newest = match ledger.cursor_with_time(CURSOR).await? {
            None => 0,
            Some((value, written_at)) => {
                let value = value.parse::<u64>().unwrap_or(0);
                let limit = (written_at.max(0) as u64).saturating_add(max_skew);
                if value > limit {
                    tracing::warn!(
                        value,
                        written_at,
                        "nostr: stored cursor is later than when it was written; resuming from then"
                    );
                    written_at.max(0) as u64
                } else {
                    value
                }
            }
        };
        Ok(Self {
            newest,
            max_skew,
            clock,
        })
    }

    /// The newest `created_at` applied (0: never).
    pub fn newest(&self) -> u64 {
        self.newest
    }

    /// Where a resumed subscription or back-fill starts.
    pub fn resume_from(&self) -> Timestamp {
        Timestamp::from(self.newest.saturating_sub(OVERLAP))
    }

    /// The latest `created_at` an event may have and still be believed: now + the skew.
    pub fn horizon(&self) -> Timestamp {
        Timestamp::from(self.clock.now().saturating_add(self.max_skew))
    }

    /// Whether `event` (already verified) may move the cursor.
    pub fn may_advance(&self, trust: &Trust, event: &Event) -> bool {
        let trusted =
            trust.controllers.contains(&event.pubkey) || trust.proxies.contains(&event.pubkey);
        trusted && event.created_at <= self.horizon()
    }

    /// Moves the cursor to `event`'s time if the rule allows and it is newer; persists it.
    /// Returns whether it moved.
    pub async fn advance(
        &mut self,
        ledger: &Ledger,
        trust: &Trust,
        event: &Event,
    ) -> crate::ledger::Result<bool> {
        let created = event.created_at.as_secs();
        if created <= self.newest || !self.may_advance(trust, event) {
            return Ok(false);
        }
        let now = i64::try_from(self.clock.now()).unwrap_or(i64::MAX);
        ledger
            .set_cursor_at(CURSOR, &created.to_string(), now)
            .await?;
        self.newest = created;
        Ok(true)
    }
}
