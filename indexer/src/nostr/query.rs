//! One back-fill query to one relay, read to its end or failed: never a part of the answer
//! taken for the whole.
//!
//! nostr-sdk's `fetch_events` ends a query early, without an error, when the connection drops
//! or when its reader falls behind the connection's notification channel (the channel lags and
//! the reader takes that for the end). Under load a back-fill lost credits that way (9,976 of
//! 20,000 events read, no warning). So a query here subscribes and reads the pool's own
//! notifications: it ends at the relay's end of stored events (`EOSE`), and a lagging channel,
//! a `CLOSED` answer or a relay quiet for the fetch timeout fail it; a query that lagged is
//! asked again.
use nostr_sdk::prelude::*;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// Notification slots of a back-fill connection. nostr-sdk sends each event twice into it (as
/// an event and as a relay message), so a reader may fall half as many events behind the
/// connection before its query lags.
const CHANNEL: usize = 16_384;

/// Times a query that lagged is asked again before the back-fill fails.
const LAGGED_RETRIES: usize = 3;

/// Why a query's answer is not whole.
#[derive(Debug, thiserror::Error)]
pub enum Incomplete {
    #[error("the reader fell {0} notifications behind the connection")]
    Lagged(u64),
    #[error("{0}")]
    Failed(String),
}

/// A connection for back-fill queries to `url` alone (so that an end of stored events is the
/// whole answer), with room for busy seconds in its notification channel.
pub async fn connect(url: &RelayUrl) -> Result<Client, Incomplete> {
    let pool = RelayPoolOptions::new().notification_channel_size(CHANNEL);
    let client = Client::builder()
        .opts(ClientOptions::new().pool(pool))
        .build();
    client
        .add_relay(url.as_str())
        .await
        .map_err(|e| Incomplete::Failed(e.to_string()))?;
    client.connect().await;
    Ok(client)
}

/// Every event the relay of `client` holds for `filter`, asked again while the reader lags;
/// fails if the relay is silent for `quiet` before it ends its answer.
pub async fn fetch_whole(
    client: &Client,
    filter: Filter,
    quiet: Duration,
) -> Result<Vec<Event>, Incomplete> {
    let mut attempt = 0;
    loop {
        match fetch_once(client, filter.clone(), quiet).await {
            Err(Incomplete::Lagged(missed)) if attempt < LAGGED_RETRIES => {
                attempt += 1;
                tracing::warn!(
                    missed,
                    attempt,
                    "nostr: a back-fill query fell behind; asking again"
                );
            }
            answer => return answer,
        }
    }
}

/// One asking: the answer up to the relay's end of stored events. `quiet` bounds the wait for
/// each next message, not the whole answer (a busy second may take a slow relay longer).
async fn fetch_once(
    client: &Client,
    filter: Filter,
    quiet: Duration,
) -> Result<Vec<Event>, Incomplete> {
    // A relay may send a little more than asked (the newest are kept, as `fetch_events`
    // would), but not without end.
    let most = filter.limit.unwrap_or(usize::MAX);
    // Listening before asking: nothing of the answer can come before it.
    let mut notifications = client.notifications();
    let id = SubscriptionId::generate();
    client
        .subscribe_with_id(id.clone(), filter, None)
        .await
        .map_err(|e| Incomplete::Failed(format!("subscribe: {e}")))?;
    let mut events = Vec::new();
    let answer = loop {
        let Ok(received) = tokio::time::timeout(quiet, notifications.recv()).await else {
            break Err(Incomplete::Failed(
                "the relay went quiet before ending its answer".into(),
            ));
        };
        match received {
            // Every event of the answer comes as a relay message (the pool's `Event`
            // notification comes only for an id this connection had not seen before).
            Ok(RelayPoolNotification::Message { message, .. }) => match message {
                RelayMessage::Event {
                    subscription_id,
                    event,
                } if *subscription_id == id => {
                    if events.len() >= most.saturating_mul(2) {
                        break Err(Incomplete::Failed(format!(
                            "the relay sent far more than the {most} events asked"
                        )));
                    }
                    events.push(event.into_owned());
                }
                RelayMessage::EndOfStoredEvents(ended) if *ended == id => {
                    if events.len() > most {
                        events.sort_by_key(|event| std::cmp::Reverse((event.created_at, event.id)));
                        events.truncate(most);
                    }
                    break Ok(events);
                }
                RelayMessage::Closed {
                    subscription_id,
                    message,
                } if *subscription_id == id => {
                    break Err(Incomplete::Failed(format!(
                        "the relay closed the query: {message}"
                    )))
                }
                _ => {}
            },
            Ok(RelayPoolNotification::Shutdown) | Err(RecvError::Closed) => {
                break Err(Incomplete::Failed("the connection shut down".into()))
            }
            Ok(_) => {}
            Err(RecvError::Lagged(missed)) => break Err(Incomplete::Lagged(missed)),
        }
    };
    client.unsubscribe(&id).await;
    answer
}
