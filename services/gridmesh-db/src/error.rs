use thiserror::Error;

/// What went wrong in the data layer.
///
/// The sqlx error is part of the message and deliberately not a `source`: sqlx repeats its own
/// cause in its message, and a chain would print it three times.
#[derive(Debug, Error)]
pub enum DbError {
    /// The database could not be reached or the connection broke.
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    /// A migration failed; the service must not start on a half-migrated schema.
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A row broke a constraint (unique, foreign key, check). `constraint` is its name.
    #[error("constraint {constraint} violated: {message}")]
    Constraint {
        /// The constraint's name, as in `migrations/`.
        constraint: String,
        /// PostgreSQL's message.
        message: String,
    },
    /// A value cannot be stored as given (for example a sequence number beyond `i64::MAX`).
    #[error("invalid value for {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A configured limit would be exceeded (the message says which and what to do).
    #[error("{0}")]
    Limit(String),
    /// A stored row that does not map back to a domain value (a schema/code mismatch).
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// The operating system's random source failed (token generation).
    #[error("no randomness available: {0}")]
    NoRandomness(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Other(sqlx::Error),
}

impl DbError {
    /// The violated constraint's name, when this is a constraint violation.
    #[must_use]
    pub fn constraint(&self) -> Option<&str> {
        match self {
            DbError::Constraint { constraint, .. } => Some(constraint),
            _ => None,
        }
    }

    /// True when the same statement may succeed later: the database is unreachable, shutting
    /// down, overloaded, read-only after a failover, or the transaction lost a deadlock or a
    /// serialisation conflict. Not for bad data, which fails the same way every time.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            DbError::Unavailable(_) => true,
            DbError::Other(sqlx::Error::Database(db)) => db.code().is_some_and(|code| {
                let code: &str = &code;
                code.starts_with("08")       // connection exceptions
                    || code.starts_with("53") // insufficient resources
                    || code.starts_with("57P") // admin/crash shutdown, cannot connect now
                    || matches!(code, "40001" | "40P01" | "57014" | "25006" | "55P03")
            }),
            DbError::Other(sqlx::Error::Protocol(_) | sqlx::Error::Io(_)) => true,
            _ => false,
        }
    }

    /// True when the database could not be reached (worth retrying later).
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DbError::Unavailable(_))
    }
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Database(ref db) => match db.constraint() {
                Some(c) => DbError::Constraint { constraint: c.to_owned(), message: db.message().to_owned() },
                // 57P03 cannot_connect_now: the server is starting up or shutting down.
                None if db.code().as_deref() == Some("57P03") => DbError::Unavailable(e),
                None => DbError::Other(e),
            },
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => DbError::Unavailable(e),
            other => DbError::Other(other),
        }
    }
}
