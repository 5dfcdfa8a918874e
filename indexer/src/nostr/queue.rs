//! The bounded queue between the Nostr watcher and the controller.
//!
//! The watcher never waits on it: [`RequestQueue::offer`] either queues a `Request` or drops it
//! at once, so a slow or stuck controller (a chain round trip per request) never delays the
//! `Transaction`s the watcher applies. Two bounds:
//! - the queue's capacity: when it is full, new requests are dropped (logged and counted); a
//!   user's app publishes its request again, and a restart's back-fill re-delivers it if it is
//!   inside the resumed window. Requests are never kept anywhere else, so a flood costs memory
//!   bounded by the capacity;
//! - per author: at most `per_author` requests of one Nostr key waiting or being handled, so one
//!   key cannot fill the queue. The per-author map only holds authors with a request in the
//!   queue or in the controller's hands, so it is bounded by the capacity plus what is being
//!   handled; an author's entry disappears with its last request.
use nostr_sdk::prelude::{Event, PublicKey};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};
use tokio::sync::mpsc;

/// What [`RequestQueue::offer`] did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queued for the controller.
    Queued,
    /// Dropped: the queue is full.
    QueueFull,
    /// Dropped: this author already has `per_author` requests waiting or being handled.
    AuthorLimit,
    /// Dropped: nobody consumes the queue any more.
    Closed,
}

impl Offer {
    /// A short label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Offer::Queued => "queued",
            Offer::QueueFull => "queue_full",
            Offer::AuthorLimit => "author_limit",
            Offer::Closed => "closed",
        }
    }
}

type Counts = Arc<Mutex<HashMap<PublicKey, usize>>>;

fn lock(counts: &Counts) -> MutexGuard<'_, HashMap<PublicKey, usize>> {
    // The map holds plain counters; a panic elsewhere cannot leave it half-updated.
    counts
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The watcher's end: offers requests without ever waiting.
#[derive(Clone, Debug)]
pub struct RequestQueue {
    tx: mpsc::Sender<QueuedRequest>,
    counts: Counts,
    per_author: usize,
}

/// The controller's end.
#[derive(Debug)]
pub struct RequestReceiver {
    rx: mpsc::Receiver<QueuedRequest>,
}

/// A queued request; its author's slot is freed when this is dropped (after handling).
#[derive(Debug)]
pub struct QueuedRequest {
    /// The `Request` event, signature verified.
    pub event: Event,
    _slot: AuthorSlot,
}

#[derive(Debug)]
struct AuthorSlot {
    author: PublicKey,
    counts: Counts,
}

impl Drop for AuthorSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        if let Some(count) = counts.get_mut(&self.author) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.author);
            }
        }
    }
}

/// A queue of `capacity` requests, at most `per_author` per Nostr key (both at least 1).
pub fn request_queue(capacity: usize, per_author: usize) -> (RequestQueue, RequestReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let queue = RequestQueue {
        tx,
        counts: Arc::default(),
        per_author: per_author.max(1),
    };
    (queue, RequestReceiver { rx })
}

impl RequestQueue {
    /// Queues `event` for the controller, or drops it; never waits.
    pub fn offer(&self, event: Event) -> Offer {
        let author = event.pubkey;
        {
            let mut counts = lock(&self.counts);
            let count = counts.entry(author).or_insert(0);
            if *count >= self.per_author {
                return Offer::AuthorLimit;
            }
            *count += 1;
        }
        let slot = AuthorSlot {
            author,
            counts: self.counts.clone(),
        };
        // On failure the request comes back and is dropped here, freeing its slot.
        match self.tx.try_send(QueuedRequest { event, _slot: slot }) {
            Ok(()) => Offer::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => Offer::QueueFull,
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Closed,
        }
    }

    /// Requests waiting (not yet taken by the controller).
    pub fn depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Authors with a request waiting or being handled (the per-author map's size).
    pub fn authors(&self) -> usize {
        lock(&self.counts).len()
    }
}

impl RequestReceiver {
    /// The next request; `None` once every [`RequestQueue`] is gone.
    pub async fn recv(&mut self) -> Option<QueuedRequest> {
        self.rx.recv().await
    }
}
