//! A Nostr relay on 127.0.0.1 (nostr-relay-builder): the sandbox's relay, kept on disk (LMDB) so
//! that a restart loses no event, and the tests' relay, in memory.
use nostr_lmdb::NostrLMDB;
use nostr_relay_builder::prelude::*;
use std::{
    net::{IpAddr, Ipv4Addr},
    path::Path,
    time::{Duration, Instant},
};

/// Events the relay returns at most per query unless capped.
pub const MAX_EVENTS: usize = 1_000_000;

/// A running relay on 127.0.0.1; stops when dropped.
pub struct EmbeddedRelay {
    relay: LocalRelay,
    url: String,
    /// The in-memory store, for [`EmbeddedRelay::store_unchecked`] (`None` on LMDB).
    memory: Option<MemoryDatabase>,
}

/// Why the relay did not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("opening the relay's store at {path}: {source}")]
    Store {
        path: String,
        source: nostr_relay_builder::prelude::DatabaseError,
    },
    #[error(transparent)]
    Serve(#[from] nostr_relay_builder::Error),
}

impl EmbeddedRelay {
    /// Starts on `port` (0 picks a free one), keeping events in memory.
    pub async fn start(port: u16) -> Result<Self, RelayError> {
        Self::start_capped(port, None).await
    }

    /// Starts on `port`, keeping events in the LMDB store in `dir` (created if missing): a
    /// relay started again on the same `dir` serves everything it had.
    pub async fn open(port: u16, dir: &Path) -> Result<Self, RelayError> {
        let store = NostrLMDB::open(dir).map_err(|source| RelayError::Store {
            path: dir.display().to_string(),
            source,
        })?;
        Self::serve(builder(port, None).database(store), None).await
    }

    /// Starts on `port` in memory, answering each query with at most `max_filter_limit`
    /// events, as public relays do (tests of paged back-fill use it).
    pub async fn start_capped(
        port: u16,
        max_filter_limit: Option<usize>,
    ) -> Result<Self, RelayError> {
        // As the builder's own default store, kept at hand for `store_unchecked`.
        let memory = MemoryDatabase::with_opts(MemoryDatabaseOptions {
            events: true,
            max_events: Some(75_000),
        });
        let builder = builder(port, max_filter_limit).database(memory.clone());
        Self::serve(builder, Some(memory)).await
    }

    async fn serve(
        builder: RelayBuilder,
        memory: Option<MemoryDatabase>,
    ) -> Result<Self, RelayError> {
        let relay = LocalRelay::new(builder);
        relay.run().await?;
        let url = relay.url().await.to_string();
        Ok(Self { relay, url, memory })
    }

    /// Stores `event` as it is, without the checks a publish goes through (its id and
    /// signature): what a hostile or broken relay serves. Tests use it to show that such an
    /// event is never counted. Returns whether it was stored (an in-memory relay only).
    pub async fn store_unchecked(&self, event: &Event) -> bool {
        match &self.memory {
            Some(memory) => memory.save_event(event).await.is_ok(),
            None => false,
        }
    }

    /// The relay's `ws://` URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops serving; returns once the port refuses connections, so a relay can start again
    /// on it at once.
    pub async fn shutdown(&self) {
        self.relay.shutdown();
        let port = self
            .url
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|port| port.parse::<u16>().ok());
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Some(port) = port {
            let open = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await;
            if open.is_err() || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The relay serves this machine's own services: no 60-events-a-minute cap, and a back-fill
/// returns everything stored rather than the newest 500.
fn builder(port: u16, max_filter_limit: Option<usize>) -> RelayBuilder {
    // The builder reports the port it was given, so pick a free one here.
    let port = match port {
        0 => std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .unwrap_or(0),
        port => port,
    };
    let builder = RelayBuilder::default()
        .addr(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .port(port)
        .rate_limit(RateLimit {
            max_reqs: 500,
            notes_per_minute: 1_000_000,
        })
        .default_filter_limit(max_filter_limit.unwrap_or(MAX_EVENTS));
    match max_filter_limit {
        Some(max) => builder.max_filter_limit(max),
        None => builder,
    }
}
