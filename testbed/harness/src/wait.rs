//! Waiting on conditions, for every test binary of the repository: one loop that looks at
//! a condition at a fixed interval until it holds or a ceiling passes. Tests wait on
//! conditions, never on time; the ceiling only bounds a hang, and the caller says what it
//! waited for and what it saw.

use std::time::{Duration, Instant};

/// How often a condition is looked at again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How long a test waits for a condition before it fails: long enough for a loaded
/// two-core machine running a second build beside the tests.
pub const PATIENCE: Duration = Duration::from_secs(180);

/// Waits for `check` to yield a value; panics naming `what` after [`PATIENCE`].
pub async fn eventually<T>(what: &str, check: impl AsyncFnMut() -> Option<T>) -> T {
    poll(PATIENCE, check)
        .await
        .unwrap_or_else(|| panic!("timed out after {PATIENCE:?} waiting for {what}"))
}

/// [`eventually`] for code outside a runtime.
pub fn eventually_blocking<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    poll_blocking(PATIENCE, check)
        .unwrap_or_else(|| panic!("timed out after {PATIENCE:?} waiting for {what}"))
}

/// Looks at `check` every [`POLL_INTERVAL`] until it yields a value, or `ceiling` has passed
/// (then `None`).
pub async fn poll<T>(ceiling: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + ceiling;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// [`poll`] for code outside a runtime (it sleeps the thread between checks).
pub fn poll_blocking<T>(ceiling: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + ceiling;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_condition_that_holds_ends_the_wait_with_its_value() {
        let mut n = 0;
        let found = poll(Duration::from_secs(5), async || {
            n += 1;
            (n == 3).then_some(n)
        })
        .await;
        assert_eq!(found, Some(3));
    }

    #[test]
    fn a_condition_that_never_holds_gives_none_after_the_ceiling() {
        assert_eq!(
            poll_blocking(Duration::from_millis(50), || None::<()>),
            None
        );
    }
}
