//! The database's own load, read before a chunk starts when its ReportDatabase sets a
//! throttle: client sessions running a statement, and a standby's replay lag.

use std::time::{Duration, Instant};

use reportjob_core::database::throttle::{Load, Throttle};

use super::session::Database;
use crate::error::{Error, Result};

/// How often a busy database is looked at again.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Active client sessions other than this one (a role without `pg_read_all_stats` sees the
/// state of its own role's sessions only), and the replay lag on a standby.
const LOAD_SQL: &str = "SELECT \
     (SELECT count(*) FROM pg_stat_activity \
       WHERE state = 'active' AND backend_type = 'client backend' \
         AND pid <> pg_backend_pid())::int8, \
     CASE WHEN pg_is_in_recovery() \
       THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END";

impl Database {
    /// The server's load as [`LOAD_SQL`] reads it, on one of the pool's connections (the
    /// one the chunk then exports on).
    pub async fn load(&self) -> Result<Load> {
        let (active, lag): (i64, Option<f64>) = sqlx::query_as(LOAD_SQL)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| Error::db("reading the database's load (pg_stat_activity)", e))?;
        Ok(Load {
            active_sessions: u64::try_from(active).unwrap_or(0),
            replay_lag_seconds: lag,
        })
    }

    /// Waits while the load exceeds `throttle`, looking again every two seconds, for at
    /// most `patience`; then [`Error::Throttled`] says why. Returns at once without a
    /// threshold.
    pub async fn wait_while_busy(&self, throttle: &Throttle, patience: Duration) -> Result<()> {
        if throttle.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + patience;
        loop {
            let Some(why) = throttle.verdict(&self.load().await?) else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                return Err(Error::Throttled(why));
            }
            tracing::info!(%why, "waiting for the database");
            tokio::time::sleep(CHECK_EVERY).await;
        }
    }
}
