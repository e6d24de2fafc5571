//! Waiting for a connection slot: a server (or role) with no free connection (SQLSTATE
//! 53300, "too many connections") is a queue to wait in, not a failure. Every stage's
//! connect (the snapshot holder's, the plan's, each chunk's) retries it with a capped,
//! jittered backoff for up to [`SLOT_WAIT`], so a burst of runs against one database
//! (`max_connections` 100) waits for connections instead of failing ReportJobs.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::Retryable;

use crate::error::Error;

/// How long a stage waits for a free connection slot before it gives up (with a
/// transient error, so its Job may still retry it). Stage pods are bounded by
/// `spec.worker.activeDeadlineSeconds` anyway.
pub const SLOT_WAIT: Duration = Duration::from_secs(30 * 60);

/// The SQLSTATE of "too many connections" (the server's `max_connections`, a role's or a
/// database's `CONNECTION LIMIT`).
pub const TOO_MANY_CONNECTIONS: &str = "53300";

/// Whether a driver error is the server refusing a connection for want of a slot.
pub fn is_too_many_connections(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == TOO_MANY_CONNECTIONS)
}

/// Whether an engine error is a connect refused for want of a slot (worth waiting for).
pub fn waits_for_slot(e: &Error) -> bool {
    match e {
        Error::Connect { source, .. } | Error::Database { source, .. } => {
            is_too_many_connections(source)
        }
        _ => false,
    }
}

/// Runs `connect` until it succeeds, fails otherwise than for want of a slot, or its pauses
/// add up to [`SLOT_WAIT`]; logs once when it starts waiting and once when it got a slot.
pub async fn with_slot_wait<T, F, Fut>(what: &str, connect: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let started = tokio::time::Instant::now();
    let waits = AtomicU32::new(0);
    let result = connect
        .retry(reportjob_core::retry::CONNECTION_SLOT.for_at_most(SLOT_WAIT))
        .sleep(tokio::time::sleep)
        .when(waits_for_slot)
        .notify(|e: &Error, _| {
            if waits.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(what, error = %e, "waiting for a connection slot (SQLSTATE 53300, too many connections); retrying");
            }
        })
        .await;
    let waits = waits.load(Ordering::Relaxed);
    if result.is_ok() && waits > 0 {
        tracing::warn!(
            what,
            attempts = waits + 1,
            waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(0),
            "got a connection slot"
        );
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_connect_refused_for_want_of_a_slot_is_waited_for() {
        assert!(!waits_for_slot(&Error::Encoding("x".into())));
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(!waits_for_slot(&Error::Connect {
            target: String::new(),
            source: io,
        }));
        assert!(!waits_for_slot(&Error::Connect {
            target: String::new(),
            source: sqlx::Error::PoolTimedOut,
        }));
    }
}
