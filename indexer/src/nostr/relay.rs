//! The embedded relay (nostr-relay-builder, in memory): the default when no relay URL is
//! configured, so the local stack needs nothing else running.
use nostr_relay_builder::prelude::*;
use std::net::{IpAddr, Ipv4Addr};

/// Events the embedded relay keeps (in memory) and returns at most per query.
pub const MAX_EVENTS: usize = 1_000_000;

/// A running in-process relay on 127.0.0.1; stops when dropped.
pub struct EmbeddedRelay {
    relay: LocalRelay,
    url: String,
}

impl EmbeddedRelay {
    /// Starts on `port` (0 picks a free one).
    pub async fn start(port: u16) -> Result<Self, nostr_relay_builder::Error> {
        Self::start_capped(port, None).await
    }

    /// Starts on `port`, answering each query with at most `max_filter_limit` events when set,
    /// as public relays do (tests of paged back-fill use it).
    pub async fn start_capped(
        port: u16,
        max_filter_limit: Option<usize>,
    ) -> Result<Self, nostr_relay_builder::Error> {
        // The builder reports the port it was given, so pick a free one here.
        let port = match port {
            0 => std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|listener| listener.local_addr())
                .map(|addr| addr.port())
                .unwrap_or(0),
            port => port,
        };
        // It serves this machine's own services: no 60-events-a-minute cap, and a back-fill
        // returns everything stored rather than the newest 500.
        let builder = RelayBuilder::default()
            .addr(IpAddr::V4(Ipv4Addr::LOCALHOST))
            .port(port)
            .rate_limit(RateLimit {
                max_reqs: 500,
                notes_per_minute: 1_000_000,
            })
            .default_filter_limit(max_filter_limit.unwrap_or(MAX_EVENTS));
        let builder = match max_filter_limit {
            Some(max) => builder.max_filter_limit(max),
            None => builder,
        };
        let relay = LocalRelay::new(builder);
        relay.run().await?;
        let url = relay.url().await.to_string();
        Ok(Self { relay, url })
    }

    /// The relay's `ws://` URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops serving.
    pub fn shutdown(&self) {
        self.relay.shutdown()
    }
}
