//! The gridmesh central service as a library: the `gridmesh` binary is a thin wrapper around
//! [`cli::run`], and tests start the real server with [`serve::start`] on port 0.
//!
//! Later parts (ingest, optimizer, market, settlement, anchoring) plug in as jobs started by
//! [`serve::start`] and as routers merged in [`http::router`].

pub mod api;
pub mod auth;
pub mod broker;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod forecast;
pub mod http;
pub mod keys;
pub mod logging;
pub mod market;
pub mod metrics;
pub mod proof;
pub mod serve;
pub mod settlement;

pub use error::ApiError;
pub use serve::AppState;
