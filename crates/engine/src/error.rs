//! One error type for the engine; tells permanent failures from transient ones.

use std::time::Duration;

pub use reportjob_core::stage_protocol::{
    EXIT_DAMAGED, EXIT_OK, EXIT_PERMANENT, EXIT_SNAPSHOT_LOST, EXIT_THROTTLED, EXIT_TRANSIENT,
    EXIT_USAGE,
};

/// Errors of the export engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec is invalid.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// The database is busier than its ReportDatabase's throttle allows: the chunk was not
    /// started (the pod is started again, without spending a retry).
    #[error("{0}")]
    Throttled(String),
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
    #[error("cannot connect to the database{}: {}", describe_target(.target), describe_connect(.source))]
    Connect {
        /// Where, for people: host, port, database and user (never the password); empty
        /// when the URL could not be read.
        target: String,
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
    /// The staged plan does not fit this spec or this run: made for another spec, asked
    /// for a chunk it does not have, or holding column types the format cannot encode.
    #[error("{0}")]
    PlanMismatch(String),
    /// A staged document (plan, part manifest, snapshot record) cannot be read or fails its
    /// own checks.
    #[error("{0}")]
    InvalidStaged(String),
    /// Staged data the stage needs is not there: no plan, a chunk without its part, no
    /// snapshot record.
    #[error("{0}")]
    NotStaged(String),
    /// Encoding or writing the report failed: a part's rows, a document, the report's file.
    #[error("{0}")]
    Encoding(String),
    /// A stored object's content does not match the sha256 its manifest recorded.
    #[error("{key} is damaged: its sha256 is {found}, its manifest says {expected}")]
    Damaged {
        /// The object's key.
        key: String,
        /// The sha256 of what is stored.
        found: String,
        /// The sha256 the manifest recorded.
        expected: String,
    },
    /// Assembly found parts whose bytes do not match their manifests and removed them:
    /// exporting `chunks` again (the next `reportjob run` does) repairs the run.
    #[error(
        "damaged_chunks={}: the parts of these chunks were damaged and are removed; export them \
         again, then assemble: {detail}",
        reportjob_core::stage_protocol::ChunkSet::from_indexes(.chunks.iter().copied())
    )]
    DamagedParts {
        /// The chunks to export again, sorted.
        chunks: Vec<usize>,
        /// What was wrong, for people.
        detail: String,
    },
    /// The run's snapshot can no longer be imported: the export must start again under a
    /// new one (see [`EXIT_SNAPSHOT_LOST`]).
    #[error(
        "snapshot_lost: the run's database snapshot {id} is gone ({detail}); the export must start again under a new snapshot"
    )]
    SnapshotLost {
        /// The lost snapshot's identifier.
        id: String,
        /// What the server said.
        detail: String,
    },
    /// A value over `output.maxValueBytes`, refused by the server before it was sent.
    #[error(
        "column {column:?} holds a value of {bytes} bytes at key {key}, over \
         spec.output.maxValueBytes ({limit}): raise the limit (and the worker's memory limit \
         with it), or leave the column out of the report"
    )]
    ValueTooLarge {
        /// The column's name.
        column: String,
        /// The row's key, as text (escaped, cut).
        key: String,
        /// The value's size as measured.
        bytes: u64,
        /// The spec's limit.
        limit: u64,
    },
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
    if let Some(note) = encoding_changed_note(db.code().as_deref(), db.message()) {
        text.push_str(&note);
    }
    if let Some(note) = transaction_pooling_note(db.code().as_deref(), db.message()) {
        text.push_str(note);
    }
    text
}

/// The driver names its prepared statements `sqlx_s_<n>` per connection. The server saying
/// one is missing (26000) or already there (42P05) means the client's statements do not keep
/// one server session: a pooler in transaction mode hands each transaction another one.
fn transaction_pooling_note(code: Option<&str>, message: &str) -> Option<&'static str> {
    (matches!(code, Some("26000" | "42P05")) && message.contains("\"sqlx_s_")).then_some(
        "; the connection goes through a pooler in transaction mode (such as PgBouncer with \
         pool_mode=transaction), which gives each transaction another server session: \
         reportjob needs a session of its own, in either consistency mode, so connect directly \
         to Postgres or through a pooler with pool_mode=session",
    )
}

/// Every session reads and writes UTF8; an encoding error that names another encoding
/// means the spec's SQL switched the session (a function it calls ran `set_config`), and
/// the server's own message would not say so.
fn encoding_changed_note(code: Option<&str>, message: &str) -> Option<String> {
    // 22021: invalid byte sequence; 22P05: character not representable.
    if !matches!(code, Some("22021" | "22P05")) {
        return None;
    }
    let encoding = message
        .split("encoding \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|name| !name.eq_ignore_ascii_case("UTF8"))?;
    Some(format!(
        "; the session's client_encoding was changed to {encoding} while the spec's SQL ran \
         (a function it calls, such as one using set_config?): a report's SQL must not change \
         session settings, so the run is refused"
    ))
}

/// `" at host:port, database \"db\" as user \"u\""` for a connect error's message.
fn describe_target(target: &str) -> String {
    if target.is_empty() {
        String::new()
    } else {
        format!(" {target}")
    }
}

/// Where a connection goes, for people: host, port, database and user, never the password.
pub fn connect_target(options: &sqlx::postgres::PgConnectOptions) -> String {
    let database = options.get_database().unwrap_or(options.get_username());
    format!(
        "at {}:{}, database {database:?} as user {:?}",
        options.get_host(),
        options.get_port(),
        options.get_username()
    )
}

/// A connect failure named by its root cause: connection refused, authentication failed,
/// too many connections, database does not exist; the driver's text otherwise.
pub fn describe_connect(e: &sqlx::Error) -> String {
    if let sqlx::Error::Io(io) = e {
        return match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                "connection refused: nothing accepts connections at that address (is the \
                 server running, are host and port right?)"
                    .to_string()
            }
            _ => format!("network error: {io}"),
        };
    }
    if matches!(e, sqlx::Error::PoolTimedOut) {
        return "timed out waiting for a connection".to_string();
    }
    let cause = match e.as_database_error().and_then(|d| d.code()).as_deref() {
        Some("28P01") => "authentication failed",
        Some("28000") => "authentication failed: the server does not accept this user from here",
        Some("53300") => {
            "too many connections: the server (or the role) has no free connection slot"
        }
        Some("3D000") => "the database does not exist",
        Some("57P03") => "the server is starting up or shutting down",
        // Any other refusal while connecting: the server's text may repeat what the client
        // sent at startup (`invalid value for parameter "work_mem": "<value>"` for a server
        // option), and those values may come from a Secret, so only the code is shown.
        Some(code) => {
            return format!(
                "the server refused the connection (SQLSTATE {code}; its message is not shown, \
                 as it may repeat connection settings: check the options and parameters of the \
                 connection URL)"
            );
        }
        None => return describe_sqlx(e),
    };
    format!("{cause} ({})", describe_sqlx(e))
}

/// The error of a failed `acquire` from a pool, with its root cause. sqlx retries a refused
/// connection and a full server (53300) silently until the pool's acquire timeout and then
/// says only "pool timed out"; one more connection attempt is made here to learn why.
pub async fn connect_error(options: &sqlx::postgres::PgConnectOptions, e: sqlx::Error) -> Error {
    use sqlx::{ConnectOptions, Connection};
    let target = connect_target(options);
    if matches!(e, sqlx::Error::PoolTimedOut) {
        match tokio::time::timeout(Duration::from_secs(10), options.connect()).await {
            Ok(Err(cause)) => {
                return Error::Connect {
                    target,
                    source: cause,
                };
            }
            // A slot is free again: the pool's wait was the problem.
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
            }
            // Connecting itself takes too long: the timeout is the cause.
            Err(_) => {}
        }
    }
    Error::Connect { target, source: e }
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
            Error::InvalidSpec(_)
            | Error::Source { .. }
            | Error::PlanMismatch(_)
            | Error::InvalidStaged(_)
            | Error::NotStaged(_)
            | Error::Encoding(_)
            | Error::Damaged { .. }
            | Error::DamagedParts { .. }
            | Error::ValueTooLarge { .. }
            | Error::SnapshotLost { .. } => true,
            Error::Database { source, .. } | Error::Connect { source, .. } => {
                sqlx_is_permanent(source)
            }
            Error::Storage { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::InvalidInput
            ),
            Error::Chunk { source, .. } => source.is_permanent(),
            Error::Cancelled | Error::Throttled(_) => false,
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        if matches!(self, Error::Throttled(_)) {
            EXIT_THROTTLED
        } else if self.damaged_chunks().is_some() {
            EXIT_DAMAGED
        } else if self.is_snapshot_lost() {
            EXIT_SNAPSHOT_LOST
        } else if self.is_permanent() {
            EXIT_PERMANENT
        } else {
            EXIT_TRANSIENT
        }
    }

    /// The chunks whose damaged parts were removed and must be exported again, when this
    /// is (or wraps) [`Error::DamagedParts`].
    pub fn damaged_chunks(&self) -> Option<&[usize]> {
        match self {
            Error::DamagedParts { chunks, .. } => Some(chunks),
            Error::Chunk { source, .. } => source.damaged_chunks(),
            _ => None,
        }
    }

    /// Whether this is (or wraps) [`Error::SnapshotLost`].
    pub fn is_snapshot_lost(&self) -> bool {
        match self {
            Error::SnapshotLost { .. } => true,
            Error::Chunk { source, .. } => source.is_snapshot_lost(),
            _ => false,
        }
    }

    /// The SQLSTATE of a database error, if any.
    pub fn sqlstate(&self) -> Option<String> {
        match self {
            Error::Database { source, .. } | Error::Connect { source, .. } => source
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
            Error::PlanMismatch(_) => "plan_mismatch",
            Error::InvalidStaged(_) => "invalid_staged",
            Error::NotStaged(_) => "not_staged",
            Error::Encoding(_) => "encoding",
            Error::Damaged { .. } | Error::DamagedParts { .. } => "damaged",
            Error::SnapshotLost { .. } => "snapshot_lost",
            Error::ValueTooLarge { .. } => "value_too_large",
            Error::Chunk { source, .. } => source.label(),
            Error::Cancelled => "cancelled",
            Error::Throttled(_) => "throttled",
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

pub use reportjob_core::error_text::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoding_error_naming_another_encoding_says_the_session_was_switched() {
        let note = encoding_changed_note(
            Some("22021"),
            "invalid byte sequence for encoding \"SJIS\": 0x95 0x27",
        )
        .expect("a note");
        assert!(
            note.contains("client_encoding was changed to SJIS"),
            "{note}"
        );
        // UTF8's own errors (bad data) and other codes are left as the server says them.
        assert_eq!(
            encoding_changed_note(
                Some("22021"),
                "invalid byte sequence for encoding \"UTF8\": 0x00"
            ),
            None
        );
        assert_eq!(
            encoding_changed_note(Some("42501"), "encoding \"SJIS\""),
            None
        );
        assert_eq!(encoding_changed_note(None, "encoding \"SJIS\""), None);
    }

    /// A server error with a SQLSTATE, as the driver reports one.
    #[derive(Debug)]
    struct ServerError(&'static str, &'static str);

    impl std::fmt::Display for ServerError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.1)
        }
    }

    impl std::error::Error for ServerError {}

    impl sqlx::error::DatabaseError for ServerError {
        fn message(&self) -> &str {
            self.1
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn connect(source: sqlx::Error) -> Error {
        Error::Connect {
            target: "at db.example:5432, database \"sales\" as user \"ro\"".into(),
            source,
        }
    }

    #[test]
    fn connect_errors_name_their_root_cause_and_class() {
        let cases = [
            (
                sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into()),
                "connection refused",
                false,
            ),
            (
                sqlx::Error::Database(Box::new(ServerError(
                    "53300",
                    "sorry, too many clients already",
                ))),
                "too many connections",
                false,
            ),
            (
                sqlx::Error::Database(Box::new(ServerError(
                    "28P01",
                    "password authentication failed for user \"ro\"",
                ))),
                "authentication failed",
                true,
            ),
            (
                sqlx::Error::Database(Box::new(ServerError(
                    "28000",
                    "no pg_hba.conf entry for host",
                ))),
                "authentication failed",
                true,
            ),
            (
                sqlx::Error::Database(Box::new(ServerError(
                    "3D000",
                    "database \"sales\" does not exist",
                ))),
                "the database does not exist",
                true,
            ),
            (sqlx::Error::PoolTimedOut, "timed out", false),
        ];
        for (source, cause, permanent) in cases {
            let e = connect(source);
            let text = e.to_string();
            assert!(
                text.starts_with(
                    "cannot connect to the database at db.example:5432, database \"sales\""
                ),
                "{text}"
            );
            assert!(text.contains(cause), "{text}");
            assert_eq!(e.is_permanent(), permanent, "{text}");
        }
    }

    #[test]
    fn damaged_parts_have_their_own_exit_code_and_name_the_chunks() {
        let e = Error::DamagedParts {
            chunks: vec![1, 2, 3, 7],
            detail: "x".into(),
        };
        assert_eq!(e.exit_code(), EXIT_DAMAGED);
        assert!(e.to_string().starts_with("damaged_chunks=1-3,7: "), "{e}");
        let wrapped = Error::Chunk {
            index: 1,
            range: "[1, 2)".into(),
            source: Box::new(e),
        };
        assert_eq!(wrapped.damaged_chunks(), Some(&[1, 2, 3, 7][..]));
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
