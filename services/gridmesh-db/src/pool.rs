use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};

use crate::{DbError, Pool};

/// The schema, embedded from `migrations/` at the repository root.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// How to open the pool.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Most connections held open.
    pub max_connections: u32,
    /// How long a caller waits for a free connection before failing.
    pub acquire_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self { max_connections: 16, acquire_timeout: Duration::from_secs(5) }
    }
}

/// Opens a pool after checking that one connection can be made, so that a failure carries
/// the real reason (refused, authentication, unknown database) rather than a pool timeout.
///
/// # Errors
/// [`DbError::Invalid`] for a malformed URL, [`DbError::Unavailable`] when the server cannot be
/// reached within the acquire timeout, or the server's own error.
pub async fn connect(url: &str, options: &ConnectOptions) -> Result<Pool, DbError> {
    let connect: PgConnectOptions = url
        .parse()
        .map_err(|e: sqlx::Error| DbError::Invalid { field: "database URL", reason: e.to_string() })?;
    let probe = tokio::time::timeout(options.acquire_timeout, PgConnection::connect_with(&connect))
        .await
        .map_err(|_| DbError::Unavailable(sqlx::Error::PoolTimedOut))??;
    // Closing is best effort; the connection is dropped either way.
    let _ = probe.close().await;
    Ok(PgPoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(options.acquire_timeout)
        .connect_lazy_with(connect))
}

/// [`connect`], retried with exponential backoff (0.25 s doubling to 5 s) until `give_up_after`
/// has passed. Each failure is logged with its reason. Errors that retrying cannot fix (a
/// malformed URL, an unknown role or database, a wrong password) fail at once.
///
/// # Errors
/// The last error once the time is up.
pub async fn connect_with_retry(
    url: &str,
    options: &ConnectOptions,
    give_up_after: Duration,
) -> Result<Pool, DbError> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(250);
    let mut attempt = 1_u32;
    loop {
        match connect(url, options).await {
            Ok(pool) => return Ok(pool),
            Err(e) if !e.is_unavailable() => return Err(e),
            Err(e) if started.elapsed() + delay >= give_up_after => return Err(e),
            Err(e) => {
                tracing::warn!(attempt, error = %e, retry_in_ms = delay.as_millis() as u64,
                    "database not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
        }
    }
}

/// Applies every pending migration.
///
/// # Errors
/// [`DbError::Migration`] when one fails; the schema is left at the last migration that
/// succeeded (each runs in its own transaction).
pub async fn migrate(pool: &Pool) -> Result<(), DbError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}
