//! The one retry policy: exponential backoff, a first pause doubling after each further
//! failure up to a ceiling. Every retry loop runs on backon with a builder made here
//! ([`Backoff::retries`], [`Backoff::for_at_most`]); the controller's requeue, which is not
//! a loop, asks [`Backoff::delay`] for the same pauses. Each caller names its own
//! [`Backoff`] below.

use std::time::Duration;

/// Pauses that start at `first` and double after each failure, up to `ceiling`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The pause after the first failure.
    pub first: Duration,
    /// The longest pause.
    pub ceiling: Duration,
    /// Whether each pause is lengthened by a random part of itself (up to twice as long),
    /// so that many waiting clients do not retry in step.
    pub jitter: bool,
}

/// A chunk's export after a transient error (`worker.retriesPerChunk`): 0.5 s to 10 s.
pub const CHUNK_EXPORT: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));

/// A connect refused for want of a connection slot (SQLSTATE 53300): 250 ms to 8 s,
/// jittered so that many waiting pods do not retry in step.
pub const CONNECTION_SLOT: Backoff =
    Backoff::new(Duration::from_millis(250), Duration::from_secs(8)).jittered();

/// A failed reconcile of the controller: 0.5 s to 5 minutes.
pub const RECONCILE: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(300));

/// A completion webhook: 0.5 s to 5 s (over 4 attempts by default).
pub const WEBHOOK: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));

impl Backoff {
    /// Pauses from `first` doubling up to `ceiling`, without jitter.
    pub const fn new(first: Duration, ceiling: Duration) -> Backoff {
        Backoff {
            first,
            ceiling,
            jitter: false,
        }
    }

    /// The same pauses, each lengthened by a random part of itself.
    pub const fn jittered(self) -> Backoff {
        Backoff {
            jitter: true,
            ..self
        }
    }

    /// The pause before retry `attempt` (1-based), without jitter: `first` × 2^(attempt-1),
    /// at most `ceiling`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        self.first
            .saturating_mul(1u32 << doublings)
            .min(self.ceiling)
    }

    /// backon's builder for at most `retries` retries.
    pub fn retries(&self, retries: usize) -> backon::ExponentialBuilder {
        self.exponential().with_max_times(retries)
    }

    /// backon's builder for retries until the pauses would add up to more than `total`.
    pub fn for_at_most(&self, total: Duration) -> backon::ExponentialBuilder {
        self.exponential()
            .without_max_times()
            .with_total_delay(Some(total))
    }

    fn exponential(&self) -> backon::ExponentialBuilder {
        let builder = backon::ExponentialBuilder::default()
            .with_min_delay(self.first)
            .with_max_delay(self.ceiling)
            .with_factor(2.0);
        if self.jitter {
            builder.with_jitter()
        } else {
            builder
        }
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
    fn backons_builder_gives_the_same_pauses_and_stops_after_the_retries() {
        let from_backon: Vec<Duration> = WEBHOOK.retries(5).build().collect();
        let ours: Vec<Duration> = (1..=5).map(|a| WEBHOOK.delay(a)).collect();
        assert_eq!(from_backon, ours);
    }

    #[test]
    fn jitter_lengthens_each_pause_by_at_most_itself() {
        let pauses: Vec<Duration> = CONNECTION_SLOT.retries(40).build().collect();
        assert_eq!(pauses.len(), 40);
        for (i, pause) in pauses.iter().enumerate() {
            let base = CONNECTION_SLOT.delay(i as u32 + 1);
            assert!(*pause >= base && *pause <= base * 2, "{i}: {pause:?}");
        }
    }

    #[test]
    fn a_bounded_wait_stops_before_its_pauses_pass_the_total() {
        let total = Duration::from_secs(60);
        let pauses: Vec<Duration> = CHUNK_EXPORT.for_at_most(total).build().collect();
        let sum: Duration = pauses.iter().sum();
        assert!(sum <= total, "{sum:?}");
        // 0.5 + 1 + 2 + 4 + 8 + 10 × 4 = 55.5 s; one more pause of 10 s would pass 60 s.
        assert_eq!(pauses.len(), 9);
        assert_eq!(sum, Duration::from_millis(55_500));
    }
}
