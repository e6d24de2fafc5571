//! One error type for the engine; tells permanent failures from transient ones.

use std::time::Duration;

/// Exit code of a stage that succeeded.
pub const EXIT_OK: i32 = 0;
/// Exit code of a transient failure: running the same stage again may succeed.
pub const EXIT_TRANSIENT: i32 = 1;
/// Exit code of a usage error (bad command-line arguments), as clap uses.
pub const EXIT_USAGE: i32 = 2;
/// Exit code of a permanent failure: bad spec, bad SQL, missing table or column,
/// permission denied, corrupt staging data. Retrying cannot help; the chunk Job's
/// `podFailurePolicy` fails the index at once on this code.
pub const EXIT_PERMANENT: i32 = 3;

/// Errors of the export engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec is invalid.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// A field refers to something in the database that does not exist or cannot be used.
    #[error("{field}: {message}")]
    Source {
        /// The spec field at fault, e.g. `spec.source.keyColumn`.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A database error, with the SQLSTATE when the server sent one.
    #[error("{context}: {}", describe_sqlx(.source))]
    Database {
        /// What was being done.
        context: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The connection to the database could not be made.
    #[error("cannot connect to the database: {}", describe_sqlx(.source))]
    Connect {
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A storage operation failed.
    #[error("{context}: {source}")]
    Storage {
        /// What was being done, naming the object.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Staged data does not fit together (wrong digest, missing or overlapping parts).
    #[error("{0}")]
    Staging(String),
    /// The work was stopped because another part of the run failed.
    #[error("cancelled")]
    Cancelled,
    /// An export of one chunk failed.
    #[error("chunk {index} {range}: {source}")]
    Chunk {
        /// Index of the chunk.
        index: usize,
        /// Its key range, for people.
        range: String,
        /// The cause.
        #[source]
        source: Box<Error>,
    },
}

/// A driver error for people: `SQLSTATE 42703: column "x" does not exist (hint: ...)`
/// for server errors, the driver's own text otherwise.
pub fn describe_sqlx(e: &sqlx::Error) -> String {
    let Some(db) = e.as_database_error() else {
        return e.to_string();
    };
    let mut text = match db.code() {
        Some(code) => format!("SQLSTATE {code}: {}", db.message()),
        None => db.message().to_string(),
    };
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        if let Some(detail) = pg.detail() {
            text.push_str(&format!(" (detail: {detail})"));
        }
        if let Some(hint) = pg.hint() {
            text.push_str(&format!(" (hint: {hint})"));
        }
    }
    text
}

/// Shorthand for results of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A database error with context.
    pub fn db(context: impl Into<String>, source: sqlx::Error) -> Error {
        Error::Database {
            context: context.into(),
            source,
        }
    }

    /// A storage error with context.
    pub fn storage(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Storage {
            context: context.into(),
            source,
        }
    }

    /// True when this is (or wraps) [`Error::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        match self {
            Error::Cancelled => true,
            Error::Chunk { source, .. } => source.is_cancelled(),
            _ => false,
        }
    }

    /// True when retrying cannot help.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::InvalidSpec(_) | Error::Source { .. } | Error::Staging(_) => true,
            Error::Database { source, .. } | Error::Connect { source } => sqlx_is_permanent(source),
            Error::Storage { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::InvalidInput
            ),
            Error::Chunk { source, .. } => source.is_permanent(),
            Error::Cancelled => false,
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        if self.is_permanent() {
            EXIT_PERMANENT
        } else {
            EXIT_TRANSIENT
        }
    }

    /// The SQLSTATE of a database error, if any.
    pub fn sqlstate(&self) -> Option<String> {
        match self {
            Error::Database { source, .. } | Error::Connect { source } => source
                .as_database_error()
                .and_then(|d| d.code())
                .map(|c| c.into_owned()),
            Error::Chunk { source, .. } => source.sqlstate(),
            _ => None,
        }
    }

    /// A short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "invalid_spec",
            Error::Source { .. } => "source",
            Error::Database { .. } => "database",
            Error::Connect { .. } => "connect",
            Error::Storage { .. } => "storage",
            Error::Staging(_) => "staging",
            Error::Chunk { source, .. } => source.label(),
            Error::Cancelled => "cancelled",
        }
    }
}

/// Classifies a driver error. Server errors are permanent by SQLSTATE class, except the
/// classes that mean "try again": connection exceptions (08), transaction rollbacks such as
/// serialization failures and deadlocks (40), insufficient resources (53), operator
/// intervention such as `pg_terminate_backend` or a shutdown (57, but not 57014 from our own
/// statement timeout, which would time out again) and system errors (58).
fn sqlx_is_permanent(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let class = code.get(..2).unwrap_or("");
            match class {
                "08" | "40" | "53" | "58" => false,
                "57" => code == "57014",
                _ => true,
            }
        }
        sqlx::Error::Configuration(_) | sqlx::Error::Tls(_) => true,
        _ => false,
    }
}

/// Backoff before retry `attempt` (1-based): 0.5 s doubling, capped at 10 s.
pub fn backoff(attempt: u32) -> Duration {
    let ms = 500u64.saturating_mul(1u64 << attempt.saturating_sub(1).min(5));
    Duration::from_millis(ms.min(10_000))
}

/// An error and its causes on one line (`a: b: c`), skipping a cause whose text the
/// message already holds (many errors repeat their source's text).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let shown = cause.to_string();
        if !text.contains(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_millis(1000));
        assert_eq!(backoff(10), Duration::from_millis(10_000));
    }

    #[test]
    fn spec_errors_are_permanent() {
        let e = Error::Source {
            field: "spec.source.keyColumn",
            message: "missing".into(),
        };
        assert!(e.is_permanent());
        assert_eq!(e.exit_code(), EXIT_PERMANENT);
        let io = Error::storage("x", std::io::Error::other("disk"));
        assert!(!io.is_permanent());
        assert_eq!(io.exit_code(), EXIT_TRANSIENT);
    }
}
