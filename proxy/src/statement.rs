//! `GET /v1/statement`: a wallet's ledger entries, each with the signed event that announced
//! it, so the wallet (or anyone it shows them to) can check every row against the chain and
//! the relays (`indexer verify`, `proxy balance --verify`). Wallet sessions only: a delegated
//! key's holder sees its own usage, not the wallet's books.
use crate::{auth::extract::LiveAuth, error::ApiError, state::AppState};
use axum::{
    extract::{Query, State},
    Json,
};
use ledger::StatementEntry;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Deserialize)]
pub struct StatementQuery {
    /// The last entry id of the previous page.
    #[serde(default)]
    after: String,
    limit: Option<i64>,
}

/// One page of a wallet's statement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatementPage {
    pub user: String,
    pub data: Vec<StatementEntry>,
    /// Where the next page starts (`?after=`), when this one was full.
    pub next: Option<String>,
}

pub async fn statement(
    State(state): State<Arc<AppState>>,
    LiveAuth(caller): LiveAuth,
    Query(query): Query<StatementQuery>,
) -> Result<Json<StatementPage>, ApiError> {
    if caller.key.is_some() {
        return Err(ApiError::Forbidden(
            "a delegated key cannot read its wallet's statement: log in with the wallet".into(),
        ));
    }
    let limit = query.limit.unwrap_or(ledger::STATEMENT_PAGE);
    let data = state
        .ledger
        .statement(&caller.user, &query.after, limit)
        .await?;
    let full =
        i64::try_from(data.len()).unwrap_or(i64::MAX) >= limit.clamp(1, ledger::STATEMENT_PAGE);
    let next = full
        .then(|| data.last().map(|entry| entry.id.clone()))
        .flatten();
    Ok(Json(StatementPage {
        user: caller.user.clone(),
        data,
        next,
    }))
}
