//! How often one event may be recorded: the same reason and message about the same
//! ReportJob at most once per [`EVENT_INTERVAL`]. A stage pod that cannot start is looked at
//! again every few seconds, and each look would otherwise update its Warning event (one API
//! write a second for as long as the pod waits).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The least time between two recordings of the same event.
pub const EVENT_INTERVAL: Duration = Duration::from_secs(60);

/// The events recorded lately, to tell whether one may be recorded again.
#[derive(Default)]
pub struct EventLimiter {
    last: HashMap<(String, String, String), Instant>,
}

impl EventLimiter {
    /// Whether the event (`object`, `reason`, `message`) may be recorded `now`; when it may,
    /// it counts as recorded.
    pub fn allow(&mut self, object: &str, reason: &str, message: &str, now: Instant) -> bool {
        let key = (object.to_string(), reason.to_string(), message.to_string());
        if self
            .last
            .get(&key)
            .is_some_and(|at| now.saturating_duration_since(*at) < EVENT_INTERVAL)
        {
            return false;
        }
        // Forget what can no longer hold anything back, so the map stays small.
        if self.last.len() >= 1024 {
            self.last
                .retain(|_, at| now.saturating_duration_since(*at) < EVENT_INTERVAL);
        }
        self.last.insert(key, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_event_is_recorded_once_a_minute_and_others_at_once() {
        let mut limiter = EventLimiter::default();
        let t0 = Instant::now();
        assert!(limiter.allow("ns/a", "PodCannotStart", "secret x missing", t0));
        assert!(!limiter.allow(
            "ns/a",
            "PodCannotStart",
            "secret x missing",
            t0 + Duration::from_secs(1)
        ));
        assert!(!limiter.allow(
            "ns/a",
            "PodCannotStart",
            "secret x missing",
            t0 + Duration::from_secs(59)
        ));
        // Another message, reason or ReportJob is another event.
        assert!(limiter.allow(
            "ns/a",
            "PodCannotStart",
            "secret y missing",
            t0 + Duration::from_secs(1)
        ));
        assert!(limiter.allow(
            "ns/b",
            "PodCannotStart",
            "secret x missing",
            t0 + Duration::from_secs(1)
        ));
        assert!(limiter.allow(
            "ns/a",
            "StartTimeout",
            "secret x missing",
            t0 + Duration::from_secs(1)
        ));
        assert!(limiter.allow(
            "ns/a",
            "PodCannotStart",
            "secret x missing",
            t0 + EVENT_INTERVAL
        ));
    }

    #[test]
    fn old_entries_are_forgotten_when_the_map_grows() {
        let mut limiter = EventLimiter::default();
        let t0 = Instant::now();
        for i in 0..1024 {
            assert!(limiter.allow(&format!("ns/{i}"), "R", "m", t0));
        }
        assert!(limiter.allow("ns/new", "R", "m", t0 + EVENT_INTERVAL));
        assert_eq!(limiter.last.len(), 1);
    }
}
