//! A job's lease: a session-level PostgreSQL advisory lock held on a connection of its own.
//!
//! Advisory locks live as long as the session that took them, so a process that dies (or
//! loses its database connection) gives its leases up by itself: no expiry to tune, no clock to
//! trust. The connection is opened outside the pool, because a pooled connection returned with
//! a lock still held would hand the lease to whichever request borrowed it next.

use std::time::Duration;

use sqlx::{Connection, PgConnection};

use super::{Job, Shutdown};
use gridmesh_db::Pool;

/// First key of every gridmesh lease (the two-key form of the advisory lock functions keeps
/// ours apart from any other application's locks on a shared database): "gm".
const LEASE_CLASS: i32 = 0x676d;

/// How often a standby process tries for the lease, and the holder checks it still holds it.
const LEASE_CHECK: Duration = Duration::from_secs(2);

fn lease_key(job: Job) -> i32 {
    match job {
        Job::Dispatch => 1,
        Job::Market => 2,
        Job::Settlement => 3,
        Job::Anchor => 4,
        Job::Partitions => 5,
        Job::Retention => 6,
    }
}

/// A held lease.
#[derive(Debug)]
pub struct Lease {
    job: Job,
    conn: PgConnection,
}

impl Lease {
    /// Waits until this process holds `job`'s lease; `None` when `shutdown` fires first.
    pub async fn acquire(pool: &Pool, job: Job, shutdown: &mut Shutdown) -> Option<Self> {
        let options = pool.connect_options();
        let mut conn: Option<PgConnection> = None;
        let mut said_standby = false;
        loop {
            if shutdown.fired() {
                return None;
            }
            if conn.is_none() {
                match PgConnection::connect_with(&options).await {
                    Ok(c) => conn = Some(c),
                    Err(e) => tracing::debug!(error = %e, "lease: cannot reach the database; retrying"),
                }
            }
            if let Some(c) = conn.as_mut() {
                match try_lock(c, job).await {
                    Ok(true) => {
                        let conn = conn.take()?;
                        return Some(Self { job, conn });
                    }
                    Ok(false) => {
                        if !said_standby {
                            tracing::info!("another process holds the lease; standing by");
                            said_standby = true;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "lease: lock query failed; reconnecting");
                        conn = None;
                    }
                }
            }
            if shutdown.sleep(LEASE_CHECK).await {
                return None;
            }
        }
    }

    /// Completes when the lease may be gone: the connection holding it failed, or did not
    /// answer a check within [`LEASE_CHECK`] (a half-open connection after a database failover
    /// must not let two processes run the job). A session-level lock is only ever lost with its
    /// session, so a live connection means a held lease. Returns why.
    pub async fn lost(&mut self) -> String {
        loop {
            tokio::time::sleep(LEASE_CHECK).await;
            let check = sqlx::query("SELECT 1").execute(&mut self.conn);
            match tokio::time::timeout(LEASE_CHECK, check).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return format!("the connection holding the lease failed: {e}"),
                Err(_) => {
                    return format!(
                        "the connection holding the lease did not answer within {} s",
                        LEASE_CHECK.as_secs()
                    );
                }
            }
        }
    }

    /// Gives the lease up (and closes its connection) so a standby takes over at once.
    pub async fn release(mut self) {
        let _ = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
            .bind(LEASE_CLASS)
            .bind(lease_key(self.job))
            .execute(&mut self.conn)
            .await;
        let _ = self.conn.close().await;
    }
}

async fn try_lock(conn: &mut PgConnection, job: Job) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
        .bind(LEASE_CLASS)
        .bind(lease_key(job))
        .fetch_one(conn)
        .await
}
