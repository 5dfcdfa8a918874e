//! Turns kind-1573 events into ledger entries: credits only from controller keys, debits only
//! from proxy keys, each applied once; `Request`s are offered to the controller's queue.
//!
//! The watcher applies `Transaction`s itself and never waits for the controller: requests go
//! through a bounded [`RequestQueue`] that drops rather than blocks, so a slow chain or a flood
//! of requests cannot delay a credit or a debit.
//!
//! Resuming: on start (and whenever it fell behind) it back-fills from [`OVERLAP`] before the
//! cursor up to now + the clock skew, paging through relays that cap queries
//! ([`super::backfill`]); duplicates are dropped by id. Only trusted, sanely dated events move
//! the cursor ([`super::cursor`]). (DePHY resumed at `latest + 1` and lost events published in
//! the same second.) The live subscription asks for no stored events: it starts before the
//! back-fill, which waits until the relays have answered it, so every event is in one or the
//! other, and the relay does not send the window twice.
pub use super::cursor::{CURSOR, OVERLAP};
use super::ingest::ingest_verified;
pub use super::ingest::{ingest, Ingested, Trust};
use super::{
    answers::Answers,
    backfill::fetch_window_from,
    cursor::NostrCursor,
    events::session_filter,
    queue::{Offer, RequestQueue},
};
use crate::{
    clock::Clock,
    ledger::Ledger,
    metrics::Metrics,
    supervisor::{Progress, ServiceError},
};
use nostr_sdk::prelude::*;
use std::{
    collections::{HashSet, VecDeque},
    sync::Arc,
    time::Duration,
};
use tokio::sync::{
    broadcast::{
        self,
        error::{RecvError, TryRecvError},
    },
    watch,
};

/// How the watcher resumes, pages and queues; defaults suit public relays.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// How far in the future an event may be dated and still move the cursor (seconds).
    pub max_clock_skew: u64,
    /// Events asked per back-fill query (relays commonly cap at 500).
    pub backfill_page: usize,
    /// How long one back-fill query may take.
    pub fetch_timeout: Duration,
    /// Requests waiting for the controller at most.
    pub request_queue: usize,
    /// Requests of one Nostr key waiting or being handled at most.
    pub requests_per_author: usize,
    /// "Now", for the cursor's clock-skew bound.
    pub clock: Clock,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            max_clock_skew: 60,
            backfill_page: 500,
            fetch_timeout: Duration::from_secs(10),
            request_queue: 1_024,
            requests_per_author: 4,
            clock: Clock::system(),
        }
    }
}

/// The Nostr watcher: what it reads, whom it trusts, where requests go.
#[derive(Clone)]
pub struct Watcher {
    /// The live connection to the relays (back-fills open their own).
    pub client: Client,
    /// Where credits, debits and the cursor are written.
    pub ledger: Ledger,
    /// Whose credits and debits count, and whose events move the cursor.
    pub trust: Trust,
    /// The `s` tag listened for.
    pub session: String,
    /// The `p` tags to listen for (the gateway's machine address).
    pub recipients: Vec<PublicKey>,
    /// The controller's queue; `None` on a read-only indexer (requests are ignored).
    pub requests: Option<RequestQueue>,
    /// Skew, paging, queue limits and the clock.
    pub settings: IngestSettings,
    /// Counts what happens to each event.
    pub metrics: Arc<Metrics>,
}

/// Ids recently handled, so an event delivered by both the back-fill and the live
/// subscription is handled once (applying twice would be a no-op anyway). Bounded: the oldest
/// ids are forgotten first.
struct RecentIds {
    set: HashSet<EventId>,
    order: VecDeque<EventId>,
}

const RECENT_IDS: usize = 100_000;

/// Most events applied in one ledger transaction: enough that a transaction's fixed cost
/// (round trips, planning each statement, a durable commit) is spread thin (on Postgres a batch
/// of 1,024 costs half as much per entry as one of 256), few enough that it holds balance locks
/// a gateway's writer may be waiting for only briefly (about 10 ms).
const BATCH: usize = 1_024;

impl RecentIds {
    fn new() -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Whether `id` is new (and remembers it).
    fn insert(&mut self, id: EventId) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > RECENT_IDS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

impl Watcher {
    /// Back-fills from the cursor, then ingests live events until `stop`. Returns an error on a
    /// ledger or relay failure (the supervisor restarts it; the restart back-fills again).
    pub async fn run(
        &self,
        progress: Progress,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), ServiceError> {
        let clock = self.settings.clock.clone();
        let mut cursor =
            NostrCursor::load(&self.ledger, self.settings.max_clock_skew, clock.clone()).await?;
        self.metrics.nostr_cursor.set(gauge(cursor.newest()));
        let mut notifications = self.client.notifications();
        // Live events from now on (dated a little before, for events stored late), and none of
        // the stored ones (`limit 0`): the back-fill below reads those, and a relay replaying
        // them here too would flood the notification channel it shares with the live events.
        let live_from = Timestamp::from(clock.now().saturating_sub(OVERLAP));
        // The last pass is the widest.
        let live = (self.filters(live_from).pop())
            .unwrap_or_else(|| session_filter(&self.session, &self.recipients, live_from))
            .limit(0);
        let id = SubscriptionId::new("indexer-watcher");
        // Subscribed on open connections, the relays answer before the back-fill starts (one
        // that is down answers when it connects, and is back-filled then).
        self.client
            .wait_for_connection(self.settings.fetch_timeout)
            .await;
        self.client
            .subscribe_with_id(id.clone(), live, None)
            .await
            .map_err(|e| ServiceError::Relay(format!("subscribe: {e}")))?;
        // Once a relay has answered the subscription, whatever it stores reaches us live; the
        // back-fill must not start before that, or an event stored in between would be in
        // neither.
        let (early, ended) = self.subscribed(&mut notifications, &id).await;
        let mut answered = Answers::default();
        for url in ended {
            answered.is_new(&self.client, &url).await;
        }
        let mut seen = RecentIds::new();
        self.backfill(&mut cursor, &mut seen, &progress).await?;
        for events in early.chunks(BATCH) {
            self.handle(events, &mut cursor, &mut seen).await?;
        }
        let mut batch = Vec::new();
        loop {
            // Whether events a relay stored may have passed us by: the channel overflowed, or a
            // relay answered the subscription on a new connection (it reconnected; the live
            // subscription asks for no stored events, so what it stored meanwhile comes with a
            // back-fill).
            let (mut refill, mut answers) = (false, Vec::new());
            tokio::select! {
                _ = stop.changed() => return Ok(()),
                received = notifications.recv() => match received {
                    Ok(notification) => answers.extend(take(notification, &id, &mut batch)),
                    Err(RecvError::Lagged(missed)) => refill |= fell_behind(missed),
                    Err(RecvError::Closed) => return Err(ServiceError::Relay("relay pool closed".into())),
                },
            }
            // Whatever else has arrived meanwhile is applied with it, in one transaction.
            while batch.len() < BATCH {
                match notifications.try_recv() {
                    Ok(notification) => answers.extend(take(notification, &id, &mut batch)),
                    Err(TryRecvError::Lagged(missed)) => refill |= fell_behind(missed),
                    Err(_) => break,
                }
            }
            for url in answers {
                if answered.is_new(&self.client, &url).await {
                    tracing::info!(%url, "nostr: a relay answered the subscription on a new \
                        connection (it reconnected); back-filling what it stored meanwhile");
                    refill = true;
                }
            }
            if !batch.is_empty() {
                self.handle(&batch, &mut cursor, &mut seen).await?;
                for _ in 0..batch.len() {
                    progress.tick();
                }
                batch.clear();
            }
            if refill {
                self.backfill(&mut cursor, &mut seen, &progress).await?;
            }
        }
    }

    /// Waits until every connected relay has ended the stored events of subscription `id` (or
    /// the fetch timeout passes: a relay that never says so is back-filled anyway); returns the
    /// live events that arrived meanwhile, and the relays that answered.
    async fn subscribed(
        &self,
        notifications: &mut broadcast::Receiver<RelayPoolNotification>,
        id: &SubscriptionId,
    ) -> (Vec<Event>, HashSet<RelayUrl>) {
        // A relay that is down answers nothing; its events come with the back-fill (if it is
        // back by then) or the next one.
        let relays = (self.client.relays().await.values())
            .filter(|relay| relay.is_connected())
            .count();
        let (mut ended, mut early) = (HashSet::new(), Vec::new());
        let deadline = tokio::time::Instant::now() + self.settings.fetch_timeout;
        while ended.len() < relays {
            let received = tokio::time::timeout_at(deadline, notifications.recv()).await;
            match received {
                Ok(Ok(RelayPoolNotification::Event { event, .. })) => early.push(*event),
                Ok(Ok(RelayPoolNotification::Message { relay_url, message })) => {
                    if ends_stored_events(&message, id) {
                        ended.insert(relay_url);
                    }
                }
                Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => continue,
                Ok(Err(RecvError::Closed)) | Err(_) => {
                    tracing::warn!(
                        answered = ended.len(),
                        relays,
                        "nostr: not every relay \
                        answered the live subscription; back-filling anyway"
                    );
                    break;
                }
            }
        }
        (early, ended)
    }

    /// Ingests every stored event from the cursor's overlap up to now + the skew.
    async fn backfill(
        &self,
        cursor: &mut NostrCursor,
        seen: &mut RecentIds,
        progress: &Progress,
    ) -> Result<(), ServiceError> {
        let started = std::time::Instant::now();
        let filters = self.filters(cursor.resume_from());
        let events = fetch_window_from(
            &self.client,
            &filters,
            cursor.resume_from(),
            cursor.horizon(),
            self.settings.backfill_page,
            self.settings.fetch_timeout,
        )
        .await
        .map_err(|e| ServiceError::Relay(e.to_string()))?;
        let fetched = started.elapsed();
        for events in events.chunks(BATCH) {
            self.handle(events, cursor, seen).await?;
            for _ in events {
                progress.tick();
            }
        }
        tracing::info!(events = events.len(), since = %cursor.resume_from(), ?fetched,
            applied = ?started.elapsed() - fetched, "nostr: back-filled");
        Ok(())
    }

    /// What to read from `since`, pass by pass: trusted authors' events in a pass of their own,
    /// so strangers cannot crowd them out of a back-fill's page; then everyone's, for the
    /// controller's requests. A watcher without a controller (`requests` is `None`) reads
    /// trusted authors only: it would ignore everything else.
    fn filters(&self, since: Timestamp) -> Vec<Filter> {
        let all = session_filter(&self.session, &self.recipients, since);
        let trusted = self.trust.controllers.iter().chain(&self.trust.proxies);
        if trusted.clone().next().is_none() {
            return vec![all];
        }
        let trusted = all.clone().authors(trusted.copied());
        match self.requests {
            Some(_) => vec![trusted, all],
            None => vec![trusted],
        }
    }

    /// Applies a batch of events in one ledger transaction, then moves the cursor past them.
    async fn handle(
        &self,
        events: &[Event],
        cursor: &mut NostrCursor,
        seen: &mut RecentIds,
    ) -> Result<(), ServiceError> {
        let mut verified = Vec::with_capacity(events.len());
        for event in events {
            tracing::debug!(id = %event.id, author = %event.pubkey, "nostr: received");
            if event.kind != Kind::Custom(crate::wire::KIND_DS_PROXY) || !seen.insert(event.id) {
                continue;
            }
            // The relay pool (nostr-sdk) checked the signature of every event it hands out,
            // remembering the ids it checked; checking here that the id is the hash of what
            // the event says makes that memory safe to rely on (a relay cannot pair a checked
            // id with other content), at a hash's cost rather than a second Schnorr check,
            // which was most of the watcher's time.
            if !event.verify_id() {
                tracing::debug!(id = %event.id, "nostr: id does not match the event; ignored");
                self.metrics.event("forged", "ignored");
                continue;
            }
            verified.push(event);
        }
        let outcomes = ingest_verified(&self.ledger, &self.trust, &verified).await?;
        let mut entries = 0;
        for (event, outcome) in verified.iter().zip(&outcomes) {
            self.metrics.ingested(outcome);
            match outcome {
                Ingested::Request => self.offer(event),
                Ingested::Ignored(reason) => {
                    tracing::debug!(id = %event.id, %reason, "nostr: ignored")
                }
                applied => {
                    entries += 1;
                    tracing::debug!(id = %event.id, ?applied, "nostr: ingested")
                }
            }
        }
        // One line per batch (the metrics count each outcome): a busy controller credits
        // thousands a second.
        if entries > 0 {
            tracing::info!(entries, events = events.len(), "nostr: ingested a batch");
        }
        // Once, to the newest event of the batch that may move it (the cursor's rule).
        let newest = verified
            .iter()
            .filter(|event| cursor.may_advance(&self.trust, event))
            .max_by_key(|event| event.created_at);
        if let Some(newest) = newest {
            if cursor.advance(&self.ledger, &self.trust, newest).await? {
                self.metrics.nostr_cursor.set(gauge(cursor.newest()));
            }
        }
        Ok(())
    }

    /// Hands a request to the controller's queue without waiting.
    fn offer(&self, event: &Event) {
        let Some(queue) = &self.requests else {
            self.metrics.event("request", "ignored");
            return;
        };
        let offer = queue.offer(event.clone());
        self.metrics.event("request", offer.label());
        if offer != Offer::Queued {
            tracing::warn!(id = %event.id, author = %event.pubkey, reason = offer.label(), "nostr: request dropped");
        }
    }
}

/// Whether `message` ends the stored events of subscription `id`: the relay has answered it.
fn ends_stored_events(message: &RelayMessage, id: &SubscriptionId) -> bool {
    matches!(message, RelayMessage::EndOfStoredEvents(sub) if sub.as_ref() == id)
}

/// Adds a live event to `batch`; returns the relay that answered the subscription, if the
/// notification says one did.
fn take(
    notification: RelayPoolNotification,
    id: &SubscriptionId,
    batch: &mut Vec<Event>,
) -> Option<RelayUrl> {
    match notification {
        RelayPoolNotification::Event { event, .. } => {
            batch.push(*event);
            None
        }
        RelayPoolNotification::Message { relay_url, message }
            if ends_stored_events(&message, id) =>
        {
            Some(relay_url)
        }
        other => {
            tracing::trace!(?other, "nostr: notification");
            None
        }
    }
}

/// Logs a live channel that overflowed; it calls for a back-fill.
fn fell_behind(missed: u64) -> bool {
    tracing::warn!(missed, "nostr: fell behind; back-filling");
    true
}

fn gauge(seconds: u64) -> i64 {
    i64::try_from(seconds).unwrap_or(i64::MAX)
}
