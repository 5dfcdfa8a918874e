//! Starting and stopping the gateway: the HTTP server (TCP_NODELAY on every connection), the
//! catalog announcement, the outbox publisher and the expiry sweep; and a shutdown that
//! stops accepting, lets in-flight requests finish for a grace period, cuts what is left, and
//! waits until every reservation is settled or released.
use crate::{
    config::Config, discovery::GatewayInfo, meter, pricing, routes, state::AppState,
    state::NostrIdentity, tokens, x402::X402,
};
use axum::serve::ListenerExt;
use common::publisher;
use ledger::{Attestor, Expiry, Ledger, LedgerError};
use nostr_sdk::{prelude::Client, JsonUtil};
use std::{net::SocketAddr, sync::atomic::Ordering, sync::Arc, time::Duration};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// What the gateway is built from.
pub struct Parts {
    pub config: Config,
    pub ledger: Ledger,
    pub nostr: NostrIdentity,
    /// Signs session tokens; replicas must share it.
    pub token_secret: Vec<u8>,
    /// Connected to the relays (publishes the outbox when `nostr.publish`).
    pub relay: Option<Client>,
}

/// A running gateway.
pub struct Gateway {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    stop_accepting: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    stop_background: watch::Sender<bool>,
    background: Vec<JoinHandle<()>>,
}

impl Gateway {
    /// Serves on `listener` until [`Gateway::shutdown`].
    pub async fn start(listener: TcpListener, parts: Parts) -> anyhow::Result<Self> {
        // Loaded now only if some model's prompts are counted before the hold.
        if parts
            .config
            .models
            .iter()
            .flat_map(|m| &m.upstreams)
            .any(|u| !u.reports_usage)
        {
            tokens::warm_up();
        }
        let addr = listener.local_addr()?;
        // Ecash and x402 credits (and ecash change) are announced, signed, like debits.
        let attestor = {
            let nostr = parts.nostr.clone();
            Attestor::new(move |attested| meter::attested_event(&nostr, attested))
        };
        let mut state = AppState::new(
            parts.config,
            parts.ledger.with_attestor(attestor),
            parts.nostr,
            parts.token_secret,
            parts.relay.clone(),
        )?;
        state.x402 = X402::connect(&state.config).await?.map(Arc::new);
        let rates = serde_json::to_value(GatewayInfo::current_rates(&state.config))?;
        state
            .ledger
            .record_rates(&rates, state.ledger.now())
            .await?;
        let state = Arc::new(state);
        announce_catalog(&state).await?;

        let (stop_background, stopped) = watch::channel(false);
        let mut background = vec![tokio::spawn(housekeeping(state.clone(), stopped.clone()))];
        if let (Some(client), true) = (parts.relay, state.config.nostr.publish) {
            background.push(tokio::spawn(publisher::run(
                client,
                state.ledger.clone(),
                state.outbox_wake.clone(),
                stopped,
            )));
        }

        let stop_accepting = CancellationToken::new();
        let listener = listener.tap_io(|tcp| {
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "cannot set TCP_NODELAY");
            }
        });
        let app = routes::router(state.clone());
        // The peer's address reaches the handlers: anonymous callers (ecash) are rate limited
        // by it.
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let server = axum::serve(listener, app)
            .with_graceful_shutdown(stop_accepting.clone().cancelled_owned());
        let server = tokio::spawn(async move { server.await });
        tracing::info!(%addr, models = state.models.len(), "gateway listening");
        Ok(Self {
            addr,
            state,
            stop_accepting,
            server,
            stop_background,
            background,
        })
    }

    /// Graceful shutdown; returns once every in-flight reservation is settled or released.
    pub async fn shutdown(self) {
        let state = self.state;
        state.draining.store(true, Ordering::Relaxed);
        self.stop_accepting.cancel();
        let grace = Duration::from_secs(state.config.limits.shutdown_grace_seconds);
        let cut = state.cut_streams.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            cut.cancel();
        });
        match self.server.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "server stopped with an error"),
            Err(error) => tracing::error!(%error, "server task failed"),
        }
        timer.abort();
        state.cut_streams.cancel();
        state.settlements.close();
        state.settlements.wait().await;
        // One last pass so the debits just queued go out now rather than at the next start.
        if let (Some(client), true) = (&state.relay, state.config.nostr.publish) {
            if let Err(error) = publisher::publish_due(client, &state.ledger).await {
                tracing::warn!(%error, "final outbox pass failed");
            }
        }
        let _ = self.stop_background.send(true);
        for task in self.background {
            let _ = task.await;
        }
        tracing::info!("gateway stopped; all reservations settled");
    }
}

/// Queues the signed kind-30078 catalog (models, prices, the rate history) for the relays.
async fn announce_catalog(state: &AppState) -> anyhow::Result<()> {
    let nostr = &state.config.nostr;
    let mut content = pricing::catalog_content(
        &state.config.models,
        nostr.tokens_per_sol,
        &state.config.cashu,
        &state.config.tokens,
    );
    // The whole rate history, signed: what anyone checks credits against.
    content["rates"] = serde_json::to_value(crate::discovery::rate_history(&state.ledger).await?)?;
    let event = pricing::catalog_event(&state.nostr.keys, &nostr.catalog, &content)?;
    state
        .ledger
        .enqueue(&format!("catalog:{}", event.id), &event.as_json())
        .await?;
    state.outbox_wake.notify_one();
    Ok(())
}

/// Sweeps expired reservations (see [`sweep_expired`]) every quarter of their lifetime, at
/// most every 30 s, so a dead replica's hold outlives its TTL by a quarter at most; and
/// finishes ecash swaps a crash or an unanswering mint left pending (at once on start, then
/// on every tick), and x402 payments whose request was lost.
async fn housekeeping(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let quarter = (state.config.reservation_ttl_seconds / 4).clamp(1, 30);
    let mut tick = tokio::time::interval(Duration::from_secs(quarter.unsigned_abs()));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if let Err(error) = sweep_expired(&state, ledger::now()).await {
            tracing::warn!(%error, "expiring reservations failed");
        }
        if let Some(cashu) = &state.cashu {
            match cashu.recover(&state.ledger).await {
                Ok(0) => {}
                Ok(settled) => tracing::info!(settled, "pending ecash swaps finished"),
                Err(error) => tracing::warn!(%error, "finishing pending ecash swaps failed"),
            }
        }
        if let Some(x402) = &state.x402 {
            if let Err(error) = x402.sweep(&state.ledger, state.ledger.now()).await {
                tracing::warn!(%error, "settling lost x402 payments failed");
            }
            if let Err(error) = x402.escrow_sweep(&state, state.ledger.now()).await {
                tracing::warn!(%error, "finishing lost x402 escrow locks failed");
            }
        }
    }
}

/// Settles the reservations expired at `now` whose proxy died or whose settlement kept
/// failing: an unserved one is released; a served one (the upstream answered) is charged its
/// reserved amount, and its signed debit queued for the relays like any settlement's.
pub async fn sweep_expired(state: &AppState, now: i64) -> Result<Expiry, LedgerError> {
    let expiry = state
        .ledger
        .expire_reservations(now, |charge| {
            meter::debit_event(&state.nostr, &charge.user, &charge.id, None, charge.charged)
        })
        .await?;
    if expiry.released > 0 {
        tracing::info!(count = expiry.released, "expired reservations released");
        for _ in 0..expiry.released {
            state.metrics.reservation("expired");
        }
    }
    for charge in &expiry.charged {
        tracing::warn!(request_id = %charge.id, charged = charge.charged,
            "an expired, served reservation was charged (its settlement never came)");
        state.metrics.reservation("charged_at_expiry");
    }
    if !expiry.charged.is_empty() {
        state.outbox_wake.notify_one();
    }
    Ok(expiry)
}
