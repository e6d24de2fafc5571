//! Read-only database sessions: every read runs in a `READ ONLY` transaction with a
//! `statement_timeout` and fixed output settings, so every worker prints values alike.
//! Connections come from a small pool, so a runner exporting many chunks pays for the
//! connection (and TLS) setup once per slot, not once per chunk.

use std::str::FromStr;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Postgres};

use crate::error::{Error, Result};

/// Where sessions come from: a lazily connecting pool of at most `size` connections.
#[derive(Clone, Debug)]
pub struct Database {
    pool: PgPool,
}

impl Database {
    /// A pool for the `postgres://` URL; nothing connects until the first session.
    pub fn new(url: &str, size: usize) -> Result<Database> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|source| Error::Connect {
                target: String::new(),
                source,
            })?
            .application_name("reportjob")
            .log_statements(tracing::log::LevelFilter::Debug)
            .log_slow_statements(tracing::log::LevelFilter::Debug, Duration::from_secs(60));
        let pool = PgPoolOptions::new()
            .max_connections(u32::try_from(size.max(1)).unwrap_or(u32::MAX))
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(30))
            .test_before_acquire(false)
            .connect_lazy_with(options);
        Ok(Database { pool })
    }

    /// Starts a read-only session with the given statement timeout.
    pub async fn session(&self, statement_timeout_seconds: i64) -> Result<ReadSession> {
        let conn = match self.pool.acquire().await {
            Ok(conn) => conn,
            Err(e) => {
                return Err(crate::error::connect_error(&self.pool.connect_options(), e).await);
            }
        };
        ReadSession::begin(conn, statement_timeout_seconds).await
    }
}

/// A connection inside a `REPEATABLE READ, READ ONLY` transaction. Dropped without
/// [`ReadSession::finish`] (an error or a cancelled export), its connection is closed
/// rather than returned to the pool mid-transaction.
pub struct ReadSession {
    conn: Option<PoolConnection<Postgres>>,
}

/// Session settings that make the text form of values the same for every worker:
/// ISO dates, UTC, shortest exact floats, hex bytea, standard string literals.
const OUTPUT_SETTINGS: &[(&str, &str)] = &[
    ("DateStyle", "ISO, YMD"),
    ("TimeZone", "UTC"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "1"),
    ("bytea_output", "hex"),
    ("standard_conforming_strings", "on"),
];

impl ReadSession {
    async fn begin(conn: PoolConnection<Postgres>, statement_timeout_seconds: i64) -> Result<Self> {
        let mut session = ReadSession { conn: Some(conn) };
        let mut sql = format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL statement_timeout = '{}s';",
            statement_timeout_seconds.max(1)
        );
        for (name, value) in OUTPUT_SETTINGS {
            sql.push_str(&format!(" SET LOCAL {name} = '{value}';"));
        }
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(session.conn())
            .await
            .map_err(|e| Error::db("starting a read-only transaction", e))?;
        Ok(session)
    }

    /// The connection, for queries inside the transaction.
    pub fn conn(&mut self) -> &mut PgConnection {
        match self.conn.as_mut() {
            Some(conn) => conn,
            None => unreachable_session(),
        }
    }

    /// Ends the transaction and returns the connection to the pool.
    pub async fn finish(mut self) -> Result<()> {
        sqlx::raw_sql("COMMIT")
            .execute(self.conn())
            .await
            .map_err(|e| Error::db("ending the read-only transaction", e))?;
        drop(self.conn.take());
        Ok(())
    }
}

impl Drop for ReadSession {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}

#[cold]
fn unreachable_session() -> ! {
    // `conn` is only taken by `finish` and `drop`, which consume the session.
    panic!("read session used after it ended")
}
