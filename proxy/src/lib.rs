//! The gateway: an OpenAI-compatible proxy that lets a request through only while the caller's
//! balance covers it.
//!
//! - [`auth`]: wallet login (nonce → signature → bearer token) and delegated keys.
//! - [`cashu`]: the second rail, ecash (`X-Cashu`) per request or as a top-up.
//! - [`x402`]: the third, x402 v2 (`PAYMENT-REQUIRED` / `PAYMENT-SIGNATURE`): a token transfer
//!   per request, the gateway its own facilitator.
//! - [`chat`]: the chat completions handler; [`request`]: its typed body and output bound;
//!   [`stream`]: SSE relay; [`meter`]: settlement guard; [`callback`]: usage webhooks.
//! - [`pricing`]: costs and the kind-30078 catalog; [`tokens`]: prompt bounds and tiktoken counts.
//! - [`upstream`]: calling upstreams with fallback; [`ratelimit`]; [`metrics`].
//! - [`routes`]: the router and small endpoints; [`server`]: start and graceful shutdown.
//! - [`discovery`]: `/.well-known/llm-gateway`, what a client must know to pay this gateway;
//!   [`wallet`]: the wallet user's commands, built on it.
//! - [`payer`]: who pays a request (a credential, ecash, an x402 payment).
//! - [`config`], [`error`], [`state`]; [`cli`].
//!
//! The whole local stack in front of the indexer's sandbox is the crate `sandbox`
//! (`proxy/sandbox`), so this crate links neither the indexer nor any test machinery.
pub mod auth;
pub mod callback;
pub mod cashu;
pub mod chat;
pub mod cli;
pub mod config;
pub mod cors;
pub mod discovery;
pub mod error;
pub mod meter;
pub mod metrics;
pub mod payer;
pub mod pricing;
pub mod ratelimit;
pub mod request;
pub mod routes;
pub mod server;
pub mod state;
pub mod statement;
pub mod stream;
pub mod tokens;
pub mod upstream;
pub mod wallet;
pub mod web;
pub mod x402;
