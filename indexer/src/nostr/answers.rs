//! Which relay answers to the live subscription call for a back-fill.
//!
//! The live subscription asks for no stored events, so a relay that answers it on a new
//! connection (it reconnected) may hold events stored while we were not listening: those come
//! with a back-fill. But nostr-sdk sends a subscription made while the connection is opening
//! twice (once queued, once when it re-subscribes on connecting), and the relay answers both:
//! the second answer, on the same connection, calls for nothing.
use nostr_sdk::prelude::*;
use std::collections::HashMap;

/// Each relay's count of connections made when it last answered.
#[derive(Default)]
pub struct Answers {
    connections: HashMap<RelayUrl, usize>,
}

impl Answers {
    /// Whether `url`'s answer came on a connection that had not answered before (remembering
    /// it). A relay the pool no longer knows counts as new: back-filling is the safe side.
    pub async fn is_new(&mut self, client: &Client, url: &RelayUrl) -> bool {
        let Ok(relay) = client.relay(url).await else {
            return true;
        };
        let connections = relay.stats().success();
        self.connections
            .insert(url.clone(), connections)
            .is_none_or(|before| connections > before)
    }
}
