//! The one retry policy: exponential backoff, a first pause doubling after each further
//! failure up to a ceiling, as a pure function of the attempt (so every retry loop backs off
//! alike and its pauses are unit-tested) and as backon's builder for the loops written on
//! backon. Each loop that retries names its own [`Backoff`] below.

use std::time::Duration;

/// Pauses that start at `first` and double after each failure, up to `ceiling`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The pause after the first failure.
    pub first: Duration,
    /// The longest pause.
    pub ceiling: Duration,
}

/// A chunk's export after a transient error (`worker.retriesPerChunk`): 0.5 s to 10 s.
pub const CHUNK_EXPORT: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));

/// A connect refused for want of a connection slot (SQLSTATE 53300): 250 ms to 8 s,
/// jittered so that many waiting pods do not retry in step.
pub const CONNECTION_SLOT: Backoff =
    Backoff::new(Duration::from_millis(250), Duration::from_secs(8));

/// A failed reconcile of the controller: 0.5 s to 5 minutes.
pub const RECONCILE: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(300));

/// A completion webhook: 0.5 s to 5 s (over 4 attempts by default).
pub const WEBHOOK: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));

impl Backoff {
    /// Pauses from `first` doubling up to `ceiling`.
    pub const fn new(first: Duration, ceiling: Duration) -> Backoff {
        Backoff { first, ceiling }
    }

    /// The pause before retry `attempt` (1-based): `first` × 2^(attempt-1), at most
    /// `ceiling`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        self.first
            .saturating_mul(1u32 << doublings)
            .min(self.ceiling)
    }

    /// [`Backoff::delay`] scaled by `jitter`, kept within 0.5..=1.5.
    pub fn jittered(&self, attempt: u32, jitter: f64) -> Duration {
        self.delay(attempt).mul_f64(jitter.clamp(0.5, 1.5))
    }

    /// The same pauses as backon's builder (no jitter), for at most `retries` retries.
    pub fn builder(&self, retries: usize) -> backon::ExponentialBuilder {
        backon::ExponentialBuilder::default()
            .with_min_delay(self.first)
            .with_max_delay(self.ceiling)
            .with_factor(2.0)
            .with_max_times(retries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backon::BackoffBuilder;

    #[test]
    fn pauses_double_from_the_first_up_to_the_ceiling() {
        let ms = |a| CHUNK_EXPORT.delay(a).as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(5), ms(6), ms(60)],
            [500, 1000, 2000, 8000, 10_000, 10_000]
        );
        assert_eq!(RECONCILE.delay(10), Duration::from_secs(256));
        assert_eq!(RECONCILE.delay(11), Duration::from_secs(300));
        assert_eq!(CONNECTION_SLOT.delay(u32::MAX), Duration::from_secs(8));
    }

    #[test]
    fn jitter_scales_within_half_and_one_and_a_half() {
        assert_eq!(CONNECTION_SLOT.jittered(1, 1.0), Duration::from_millis(250));
        assert_eq!(CONNECTION_SLOT.jittered(1, 0.0), Duration::from_millis(125));
        assert_eq!(CONNECTION_SLOT.jittered(2, 9.0), Duration::from_millis(750));
    }

    #[test]
    fn backons_builder_gives_the_same_pauses() {
        let from_backon: Vec<Duration> = WEBHOOK.builder(5).build().collect();
        let ours: Vec<Duration> = (1..=5).map(|a| WEBHOOK.delay(a)).collect();
        assert_eq!(from_backon, ours);
    }
}
