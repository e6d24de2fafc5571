//! Which scheduled time is due now, as upstream CronJob's `mostRecentScheduleTime`
//! (`pkg/controller/cronjob/utils.go`): after downtime only the most recent missed time runs,
//! `startingDeadlineSeconds` bounds how far back the controller looks, and more than 100
//! missed times are reported.

use jiff::{SignedDuration, Timestamp};

use super::cron::Cron;

/// How many missed times upstream counts before it reports `TooManyMissedTimes`.
pub const MANY_MISSED: u32 = 100;

/// What is due at `now`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    /// The most recent scheduled time at or before `now` not yet run, if any.
    pub time: Option<Timestamp>,
    /// How many scheduled times passed since the last one run (or creation), within the
    /// deadline; more than [`MANY_MISSED`] is reported as [`MANY_MISSED`] + 1.
    pub missed: u32,
    /// The first scheduled time after `now`.
    pub next: Option<Timestamp>,
}

/// The most recent scheduled time in `(earliest, now]`, where `earliest` is the last
/// scheduled time run (else the schedule's creation), moved up to `now - deadline` when a
/// `startingDeadlineSeconds` is set, as upstream.
pub fn due(
    cron: &Cron,
    created: Timestamp,
    last_scheduled: Option<Timestamp>,
    starting_deadline_seconds: Option<i64>,
    now: Timestamp,
) -> Due {
    let mut earliest = last_scheduled.unwrap_or(created);
    if let Some(seconds) = starting_deadline_seconds
        && let Ok(deadline) = now.checked_sub(SignedDuration::from_secs(seconds.max(0)))
        && deadline > earliest
    {
        earliest = deadline;
    }
    let next_after_now = cron.next(now);
    let Some(first) = cron.next(earliest).filter(|t| *t <= now) else {
        return Due {
            time: None,
            missed: 0,
            next: next_after_now,
        };
    };
    let mut last = first;
    let mut missed = 1u32;
    while let Some(t) = cron.next(last).filter(|t| *t <= now) {
        last = t;
        missed += 1;
        if missed > MANY_MISSED {
            // Too many to walk: the most recent one is the last before the next after now.
            last = next_after_now
                .and_then(|n| cron.previous(n))
                .filter(|t| *t <= now)
                .unwrap_or(last);
            break;
        }
    }
    Due {
        time: Some(last),
        missed,
        next: next_after_now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("a test timestamp")
    }

    fn show(d: &Due) -> (Option<String>, u32, Option<String>) {
        (
            d.time.map(|t| t.to_string()),
            d.missed,
            d.next.map(|t| t.to_string()),
        )
    }

    #[test]
    fn nothing_due_before_the_first_time() {
        let cron = Cron::parse("0 * * * *", "UTC").unwrap();
        let d = due(
            &cron,
            ts("2026-01-01T00:10:00Z"),
            None,
            None,
            ts("2026-01-01T00:59:59Z"),
        );
        assert_eq!(show(&d), (None, 0, Some("2026-01-01T01:00:00Z".into())));
    }

    #[test]
    fn one_due_at_its_time_then_not_again() {
        let cron = Cron::parse("0 * * * *", "UTC").unwrap();
        let created = ts("2026-01-01T00:10:00Z");
        let d = due(&cron, created, None, None, ts("2026-01-01T01:00:00Z"));
        assert_eq!(
            show(&d),
            (
                Some("2026-01-01T01:00:00Z".into()),
                1,
                Some("2026-01-01T02:00:00Z".into())
            )
        );
        let again = due(&cron, created, d.time, None, ts("2026-01-01T01:30:00Z"));
        assert_eq!(again.time, None);
    }

    #[test]
    fn after_six_missed_periods_only_the_most_recent_runs() {
        let cron = Cron::parse("*/10 * * * *", "UTC").unwrap();
        let d = due(
            &cron,
            ts("2026-01-01T00:00:00Z"),
            Some(ts("2026-01-01T00:10:00Z")),
            None,
            ts("2026-01-01T01:15:00Z"),
        );
        assert_eq!(
            show(&d),
            (
                Some("2026-01-01T01:10:00Z".into()),
                6,
                Some("2026-01-01T01:20:00Z".into())
            )
        );
    }

    #[test]
    fn the_starting_deadline_bounds_the_look_back() {
        let cron = Cron::parse("0 * * * *", "UTC").unwrap();
        let last = Some(ts("2026-01-01T00:00:00Z"));
        // 01:00 was missed; at 01:20 with a 10-minute deadline it is too late.
        let d = due(
            &cron,
            ts("2025-12-31T00:00:00Z"),
            last,
            Some(600),
            ts("2026-01-01T01:20:00Z"),
        );
        assert_eq!(d.time, None);
        // With a 30-minute deadline it still runs.
        let d = due(
            &cron,
            ts("2025-12-31T00:00:00Z"),
            last,
            Some(1800),
            ts("2026-01-01T01:20:00Z"),
        );
        assert_eq!(
            d.time.map(|t| t.to_string()).as_deref(),
            Some("2026-01-01T01:00:00Z")
        );
        assert_eq!(d.missed, 1);
    }

    #[test]
    fn more_than_a_hundred_missed_are_counted_as_many_and_the_latest_runs() {
        let cron = Cron::parse("* * * * *", "UTC").unwrap();
        let d = due(
            &cron,
            ts("2026-01-01T00:00:00Z"),
            None,
            None,
            ts("2026-01-03T07:42:30Z"),
        );
        assert_eq!(
            show(&d),
            (
                Some("2026-01-03T07:42:00Z".into()),
                MANY_MISSED + 1,
                Some("2026-01-03T07:43:00Z".into())
            )
        );
        // Irregular schedule (weekdays at 09:00), many missed.
        let cron = Cron::parse("0 9 * * MON-FRI", "Europe/Berlin").unwrap();
        let d = due(
            &cron,
            ts("2020-01-01T00:00:00Z"),
            None,
            None,
            ts("2026-01-04T12:00:00Z"),
        );
        // 2026-01-04 is a Sunday: the latest was Friday 2026-01-02 09:00 CET.
        assert_eq!(
            d.time.map(|t| t.to_string()).as_deref(),
            Some("2026-01-02T08:00:00Z")
        );
        assert_eq!(d.missed, MANY_MISSED + 1);
    }
}
