//! The gridmesh central service as a library: the `gridmesh` binary is a thin wrapper around
//! [`cli::run`], and tests start the real server with [`serve::start`] on port 0.
//!
//! Background work lives in [`jobs`] (one shape: `run(ctx, shutdown)`, a span per round, a
//! lease per job) and is started by [`serve::start`]; the HTTP surface is [`http::router`] with
//! the `/v1` handlers in [`api`].

pub mod api;
pub mod auth;
pub mod broker;
pub mod cli;
pub mod config;
pub mod error;
pub mod forecast;
pub mod http;
pub mod jobs;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod proof;
pub mod serve;

pub use error::ApiError;
pub use serve::AppState;
