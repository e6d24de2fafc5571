//! Read-only database sessions: every read runs in a `READ ONLY` transaction with a
//! `statement_timeout` and fixed output settings, so every worker prints values alike.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

use crate::error::{Error, Result};

/// Opens a connection from a `postgres://` URL.
pub async fn connect(url: &str) -> Result<PgConnection> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|source| Error::Connect { source })?
        .application_name("reportjob")
        .log_statements(tracing::log::LevelFilter::Debug)
        .log_slow_statements(tracing::log::LevelFilter::Debug, Duration::from_secs(60));
    options
        .connect()
        .await
        .map_err(|source| Error::Connect { source })
}

/// A connection inside a `REPEATABLE READ, READ ONLY` transaction.
pub struct ReadSession {
    conn: PgConnection,
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
    /// Starts a read-only transaction on `conn` with the given statement timeout.
    pub async fn begin(mut conn: PgConnection, statement_timeout_seconds: i64) -> Result<Self> {
        sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut conn)
            .await
            .map_err(|e| Error::db("starting a read-only transaction", e))?;
        let mut sets = format!(
            "SET LOCAL statement_timeout = '{}s';",
            statement_timeout_seconds.max(1)
        );
        for (name, value) in OUTPUT_SETTINGS {
            sets.push_str(&format!(" SET LOCAL {name} = '{value}';"));
        }
        sqlx::raw_sql(AssertSqlSafe(sets))
            .execute(&mut conn)
            .await
            .map_err(|e| Error::db("configuring the session", e))?;
        Ok(ReadSession { conn })
    }

    /// The connection, for queries inside the transaction.
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    /// Ends the transaction and closes the connection.
    pub async fn finish(mut self) -> Result<()> {
        sqlx::raw_sql("COMMIT")
            .execute(&mut self.conn)
            .await
            .map_err(|e| Error::db("ending the read-only transaction", e))?;
        let _ = self.conn.close().await;
        Ok(())
    }
}
