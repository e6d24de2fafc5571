//! Waiting for a connection slot: a server (or role) with no free connection (SQLSTATE
//! 53300, "too many connections") is a queue to wait in, not a failure. Every stage's
//! connect (the snapshot holder's, the plan's, each chunk's) retries it with a capped,
//! jittered backoff for up to [`SLOT_WAIT`], so a burst of runs against one database
//! (`max_connections` 100) waits for connections instead of failing ReportJobs.

use std::time::Duration;

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

/// The pause before connect attempt `attempt` (1-based) after a refusal: 250 ms doubling up
/// to 8 s, scaled by `jitter` (in 0.5..=1.5, so many waiting pods do not retry in step).
pub fn slot_backoff(attempt: u32, jitter: f64) -> Duration {
    let ms = 250u64.saturating_mul(1u64 << attempt.saturating_sub(1).min(5));
    let base = Duration::from_millis(ms.min(8_000));
    base.mul_f64(jitter.clamp(0.5, 1.5))
}

/// Runs `connect` until it succeeds, fails otherwise than for want of a slot, or
/// [`SLOT_WAIT`] has passed; logs once when it starts waiting and once when it got a slot.
pub async fn with_slot_wait<T, F, Fut>(what: &str, mut connect: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let started = tokio::time::Instant::now();
    let mut attempt = 0u32;
    loop {
        match connect().await {
            Ok(value) => {
                if attempt > 0 {
                    tracing::warn!(
                        what,
                        attempts = attempt + 1,
                        waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(0),
                        "got a connection slot"
                    );
                }
                return Ok(value);
            }
            Err(e) if waits_for_slot(&e) && started.elapsed() < SLOT_WAIT => {
                attempt = attempt.saturating_add(1);
                if attempt == 1 {
                    tracing::warn!(what, error = %e, "waiting for a connection slot (SQLSTATE 53300, too many connections); retrying");
                }
                let pause = slot_backoff(attempt, rand::random_range(0.5..1.5));
                tokio::time::sleep(pause).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_backoff_doubles_up_to_a_cap_and_stays_jittered_within_bounds() {
        assert_eq!(slot_backoff(1, 1.0), Duration::from_millis(250));
        assert_eq!(slot_backoff(2, 1.0), Duration::from_millis(500));
        assert_eq!(slot_backoff(6, 1.0), Duration::from_millis(8_000));
        assert_eq!(slot_backoff(60, 1.0), Duration::from_millis(8_000));
        assert_eq!(slot_backoff(1, 0.0), Duration::from_millis(125));
        assert_eq!(slot_backoff(6, 9.0), Duration::from_millis(12_000));
    }

    #[test]
    fn only_a_connect_refused_for_want_of_a_slot_is_waited_for() {
        assert!(!waits_for_slot(&Error::Staging("x".into())));
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
