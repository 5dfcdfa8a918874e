//! Back-fill: every stored event of a time window, from a relay that may cap how many events
//! one query returns (public relays often stop at 500).
//!
//! It pages backwards: ask for the window up to `until` with a `limit`; the relay answers with
//! the newest events; the next page ends at the oldest `created_at` seen (inclusive, because
//! the same second may hold more events than fit in the page), and events are de-duplicated by
//! id. It ends when a page brings nothing new and nothing older remains, or comes back empty. A
//! relay whose cap is lower than `limit` is handled too: a page shorter than the longest page
//! seen so far is the last one. A full page within one second (a busy controller credits
//! thousands a second) means that second may hold more: it is read alone, in one query with a
//! large limit, as far as the relay allows.
//!
//! Trusted authors' events are read in a pass of their own (see the watcher): a stranger who
//! publishes more events in one second than a page holds cannot push a credit or a debit of
//! that second out of the back-fill.
//!
//! It reads through connections of its own ([`fetch_window_from`]): a relay pool broadcasts
//! every event it receives to its notification channel, so back-filling through the watcher's
//! live connection would flood (and overflow) the channel the live events come through. Busy
//! seconds are read while the paging goes on, each through whichever connection is free: the
//! pool checks signatures on each connection's own task, so two connections use two cores.
use super::query;
use nostr_sdk::prelude::*;
use std::{collections::HashSet, time::Duration};
use tokio::sync::{mpsc, Mutex};

/// Why a back-fill failed.
#[derive(Debug, thiserror::Error)]
#[error("back-fill from the relays failed: {0}")]
pub struct BackfillError(pub String);

/// Connections a back-fill reads through. The relay pool checks every event's signature on the
/// task of the connection it came through, so one connection verifies on one core: a second
/// one reads busy seconds alongside, on the other.
pub const CONNECTIONS: usize = 2;

/// [`fetch_window`] for each of `filters` from each of the relays `live` knows, through
/// [`CONNECTIONS`] fresh connections to each; the union, de-duplicated by id, oldest first. A
/// relay that cannot be reached now, by the live connection either, is left out (logged): when
/// it connects, it answers the live subscription on a new connection, and that starts a
/// back-fill of its own.
pub async fn fetch_window_from(
    live: &Client,
    filters: &[Filter],
    since: Timestamp,
    until: Timestamp,
    page: usize,
    timeout: Duration,
) -> Result<Vec<Event>, BackfillError> {
    let mut events = Vec::new();
    for url in live.relays().await.into_keys() {
        let mut clients = Vec::with_capacity(CONNECTIONS);
        let fetched = fetch_relay(
            live,
            &url,
            &mut clients,
            filters,
            (since, until),
            page,
            timeout,
        )
        .await;
        shutdown(&clients).await;
        events.extend(fetched?);
    }
    Ok(oldest_first(events))
}

/// [`fetch_window_from`] for one relay, through connections it opens into `clients` (closed by
/// the caller whatever this returns).
async fn fetch_relay(
    live: &Client,
    url: &RelayUrl,
    clients: &mut Vec<Client>,
    filters: &[Filter],
    (since, until): (Timestamp, Timestamp),
    page: usize,
    timeout: Duration,
) -> Result<Vec<Event>, BackfillError> {
    for _ in 0..CONNECTIONS {
        clients.push(
            query::connect(url)
                .await
                .map_err(|error| BackfillError(error.to_string()))?,
        );
    }
    for client in clients.iter() {
        client.wait_for_connection(timeout).await;
    }
    let mut reachable = Vec::new();
    for client in clients.iter() {
        if let Ok(relay) = client.relay(url).await {
            if relay.is_connected() {
                reachable.push(client.clone());
            }
        }
    }
    if reachable.is_empty() {
        // Listened to live but not readable: its stored events would be missed for good.
        let live_connected = match live.relay(url).await {
            Ok(relay) => relay.is_connected(),
            Err(_) => false,
        };
        if live_connected {
            return Err(BackfillError(format!("{url}: no back-fill connection")));
        }
        tracing::warn!(%url, "nostr: relay unreachable; back-filling it when it connects");
        return Ok(Vec::new());
    }
    let mut events = Vec::new();
    for filter in filters {
        events.extend(fetch_window(&reachable, filter, since, until, page, timeout).await?);
    }
    Ok(events)
}

async fn shutdown(clients: &[Client]) {
    for client in clients {
        client.shutdown().await;
    }
}

/// `events` without repeats, by `created_at` then id.
fn oldest_first(mut events: Vec<Event>) -> Vec<Event> {
    let mut seen = HashSet::new();
    events.retain(|event| seen.insert(event.id));
    events.sort_by_key(|event| (event.created_at, event.id));
    events
}

/// The most events of one second [`whole_second`] asks a relay for.
const MOST_IN_ONE_SECOND: usize = 1 << 16;

/// Every event matching `filter` created in `second`, in one query for as many as a second may
/// hold. A relay that returns no more than the page it answered before caps its queries: what
/// it does not return of that second is lost, and said in the log (Nostr filters cannot page
/// within one second). (A relay whose cap lies between the page and that many is taken at its
/// word, as it would be by any larger limit.)
async fn whole_second(
    client: &Client,
    filter: &Filter,
    second: Timestamp,
    page: usize,
    timeout: Duration,
) -> Result<Vec<Event>, BackfillError> {
    let query = filter
        .clone()
        .since(second)
        .until(second)
        .limit(MOST_IN_ONE_SECOND);
    let events = query::fetch_whole(client, query, timeout)
        .await
        .map_err(|e| BackfillError(e.to_string()))?;
    let returned = events.len();
    if returned <= page || returned == MOST_IN_ONE_SECOND {
        tracing::warn!(%second, returned, "nostr: a larger query brought no more events of one \
            second: the relay caps its queries (the rest of that second is lost) or the second \
            holds exactly that many");
    }
    Ok(events)
}

/// Every event matching `filter` with `since <= created_at <= until` (possibly repeated, in no
/// order: [`fetch_window_from`] orders the union once): pages through the window on the first
/// of `clients`, while busy seconds are read whole through all of them, one second per
/// connection at a time.
async fn fetch_window(
    clients: &[Client],
    filter: &Filter,
    since: Timestamp,
    until: Timestamp,
    page: usize,
    timeout: Duration,
) -> Result<Vec<Event>, BackfillError> {
    let Some(first) = clients.first() else {
        return Err(BackfillError("no connection to read through".into()));
    };
    let (busy, seconds) = mpsc::unbounded_channel();
    let seconds = Mutex::new(seconds);
    let readers = clients.iter().map(|client| async {
        let mut events = Vec::new();
        // One second at a time per connection; the next is taken when this one is read.
        while let Some(second) = next(&seconds).await {
            events.extend(whole_second(client, filter, second, page, timeout).await?);
        }
        Ok::<_, BackfillError>(events)
    });
    let (paged, read) = tokio::try_join!(
        pages(first, filter, since, until, page, timeout, busy),
        futures_util::future::try_join_all(readers),
    )?;
    Ok(paged
        .into_iter()
        .chain(read.into_iter().flatten())
        .collect())
}

async fn next(seconds: &Mutex<mpsc::UnboundedReceiver<Timestamp>>) -> Option<Timestamp> {
    seconds.lock().await.recv().await
}

/// Pages backwards through the window; sends each second a full page lay within to `busy`, to
/// be read whole. Returns the events of the pages.
async fn pages(
    client: &Client,
    filter: &Filter,
    since: Timestamp,
    until: Timestamp,
    page: usize,
    timeout: Duration,
    busy: mpsc::UnboundedSender<Timestamp>,
) -> Result<Vec<Event>, BackfillError> {
    let page = page.max(1);
    let mut seen: HashSet<EventId> = HashSet::new();
    let mut events: Vec<Event> = Vec::new();
    let mut until = until;
    let mut longest = 0;
    loop {
        let query = filter.clone().since(since).until(until).limit(page);
        let batch = query::fetch_whole(client, query, timeout)
            .await
            .map_err(|e| BackfillError(e.to_string()))?;
        let returned = batch.len();
        if returned == 0 {
            break;
        }
        let (mut oldest, mut newest) = (Timestamp::from(u64::MAX), Timestamp::from(0));
        let mut new = 0;
        for event in batch {
            oldest = oldest.min(event.created_at);
            newest = newest.max(event.created_at);
            if seen.insert(event.id) {
                events.push(event);
                new += 1;
            }
        }
        tracing::debug!(returned, new, %oldest, %newest, "nostr: back-fill page");
        if returned < longest {
            break;
        }
        longest = longest.max(returned);
        if new > 0 && newest > oldest {
            until = oldest.min(until);
        } else if oldest >= since && oldest <= until {
            // A whole page of one second: more events may share that second than a page
            // holds. That second is read alone (by a reader); paging steps past it.
            if returned >= page && busy.send(oldest).is_err() {
                // The readers are gone: one of them failed, and says why.
                break;
            }
            // Nothing is older than second 0 (where a stranger may date events).
            if oldest.as_secs() == 0 {
                break;
            }
            until = Timestamp::from(oldest.as_secs() - 1);
        } else {
            break;
        }
    }
    Ok(events)
}
