//! Five-field cron expressions (as upstream CronJob's robfig/cron standard parser) and the
//! next scheduled instant in an IANA time zone.
//!
//! Fields: minute (0-59), hour (0-23), day of month (1-31), month (1-12 or JAN-DEC), day of
//! week (0-6 or SUN-SAT). Each field is `*`, `?` (as `*`), a value, a range `a-b`, a step
//! `*/n`, `a/n` (from a to the maximum) or `a-b/n`, or a comma-separated list of these.
//! Descriptors: `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`),
//! `@hourly`. As robfig/cron, when both day fields are restricted (neither is `*` or `?`) a
//! day matches either; otherwise both must match.
//!
//! [`Cron::next`] walks real instants in the zone, as robfig/cron's `Next` does: a wall-clock
//! time that does not exist on a day (skipped by a DST change) is not run that day; a time in
//! a repeated hour exists twice and matches at both instants (an hourly schedule stays hourly
//! in real time; a daily one at 02:30 in a repeated 02:00-03:00 runs at both 02:30s).

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};

/// A parsed schedule in a time zone.
#[derive(Clone, Debug)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    dom: u64,
    months: u64,
    dow: u64,
    /// Either day field was `*` or `?` (then both must match).
    day_star: bool,
    tz: TimeZone,
}

/// The years [`Cron::next`] looks ahead before giving up (robfig/cron looks 5 years ahead).
const LOOKAHEAD_YEARS: i16 = 5;

/// Why a schedule or time zone is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// The expression does not parse.
    #[error("invalid schedule {expr:?}: {reason}")]
    Schedule {
        /// The expression.
        expr: String,
        /// What is wrong.
        reason: String,
    },
    /// The time zone is not in the tz database.
    #[error("unknown time zone {0:?} (an IANA name such as Europe/Berlin)")]
    TimeZone(String),
}

impl Cron {
    /// Parses `expr` (five fields or a descriptor) for the IANA time zone `tz`.
    pub fn parse(expr: &str, tz: &str) -> Result<Cron, CronError> {
        let zone = time_zone(tz)?;
        let fail = |reason: String| CronError::Schedule {
            expr: expr.to_string(),
            reason,
        };
        let trimmed = expr.trim();
        if trimmed.starts_with("TZ=") || trimmed.starts_with("CRON_TZ=") {
            return Err(fail(
                "a time zone in the schedule is not supported; set timeZone".into(),
            ));
        }
        let expanded = match trimmed {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(fail(
                    "unknown descriptor (use @yearly, @monthly, @weekly, @daily or @hourly)".into(),
                ));
            }
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(fail(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                fields.len()
            )));
        }
        let (minutes, _) =
            field(fields[0], 0, 59, &[]).map_err(|r| fail(format!("minute: {r}")))?;
        let (hours, _) = field(fields[1], 0, 23, &[]).map_err(|r| fail(format!("hour: {r}")))?;
        let (dom, dom_star) =
            field(fields[2], 1, 31, &[]).map_err(|r| fail(format!("day of month: {r}")))?;
        let (months, _) =
            field(fields[3], 1, 12, &MONTHS).map_err(|r| fail(format!("month: {r}")))?;
        let (dow, dow_star) =
            field(fields[4], 0, 6, &DAYS).map_err(|r| fail(format!("day of week: {r}")))?;
        Ok(Cron {
            minutes,
            hours,
            dom,
            months,
            dow,
            day_star: dom_star || dow_star,
            tz: zone,
        })
    }

    /// The schedule's time zone.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The first scheduled instant strictly after `after`, or `None` when none comes within
    /// five years (e.g. `0 0 30 2 *`).
    pub fn next(&self, after: Timestamp) -> Option<Timestamp> {
        let start = after.to_zoned(self.tz.clone());
        // The next whole minute after `after`.
        let mut t = start
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let limit = start.year().saturating_add(LOOKAHEAD_YEARS);
        loop {
            if t.year() > limit {
                return None;
            }
            if !bit(self.months, t.month()) {
                t = t
                    .first_of_month()
                    .ok()?
                    .checked_add(1.month())
                    .ok()?
                    .start_of_day()
                    .ok()?;
                continue;
            }
            if !self.day_matches(&t) {
                t = t.tomorrow().ok()?.start_of_day().ok()?;
                continue;
            }
            if !bit(self.hours, t.hour()) {
                let hour = t
                    .with()
                    .minute(0)
                    .second(0)
                    .subsec_nanosecond(0)
                    .build()
                    .ok()?;
                // Real time: a skipped hour is never seen, a repeated one is seen twice.
                let next = hour.checked_add(1.hour()).ok()?;
                t = if next.timestamp() <= t.timestamp() {
                    t.checked_add(1.hour()).ok()?
                } else {
                    next
                };
                continue;
            }
            if !bit(self.minutes, t.minute()) {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            return Some(t.timestamp());
        }
    }

    /// The last scheduled instant strictly before `before` (searching back as far as
    /// [`Cron::next`] looks ahead).
    pub fn previous(&self, before: Timestamp) -> Option<Timestamp> {
        let mut window = jiff::SignedDuration::from_hours(1);
        let max = jiff::SignedDuration::from_hours(24 * 366 * i64::from(LOOKAHEAD_YEARS));
        loop {
            let from = before.checked_sub(window).ok()?;
            if let Some(first) = self.next(from).filter(|t| *t < before) {
                let mut last = first;
                while let Some(t) = self.next(last).filter(|t| *t < before) {
                    last = t;
                }
                return Some(last);
            }
            if window >= max {
                return None;
            }
            window = window.checked_mul(2)?.min(max);
        }
    }

    fn day_matches(&self, t: &Zoned) -> bool {
        let dom = bit(self.dom, t.day());
        let dow = bit(self.dow, t.weekday().to_sunday_zero_offset());
        if self.day_star {
            dom && dow
        } else {
            dom || dow
        }
    }
}

/// The IANA time zone named `name` (from the tz database compiled into the binary).
pub fn time_zone(name: &str) -> Result<TimeZone, CronError> {
    if name.is_empty() || name.starts_with('/') || name.contains("..") {
        return Err(CronError::TimeZone(name.to_string()));
    }
    TimeZone::get(name).map_err(|_| CronError::TimeZone(name.to_string()))
}

fn bit(set: u64, value: impl Into<i64>) -> bool {
    let v = value.into();
    (0..64).contains(&v) && set & (1u64 << v) != 0
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Parses one field into a bit set; the flag says it was `*` or `?` (robfig's star bit,
/// which `*/1` keeps and `*/n` with n > 1 drops).
fn field(text: &str, min: u32, max: u32, names: &[&str]) -> Result<(u64, bool), String> {
    let mut set = 0u64;
    let mut star = false;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(number(s, names, 0)?)),
            None => (part, None),
        };
        let (lo, hi, is_star) = if range == "*" || range == "?" {
            (min, max, true)
        } else if let Some((a, b)) = range.split_once('-') {
            (number(a, names, min)?, number(b, names, min)?, false)
        } else {
            let v = number(range, names, min)?;
            // `a/n` means from a to the maximum.
            (v, if step.is_some() { max } else { v }, false)
        };
        if lo < min || hi > max {
            return Err(format!("{part:?} is out of range {min}-{max}"));
        }
        if lo > hi {
            return Err(format!("{part:?}: the range's start is after its end"));
        }
        let step = step.unwrap_or(1);
        if step == 0 {
            return Err(format!("{part:?}: the step must be at least 1"));
        }
        star |= is_star && step == 1;
        let mut v = lo;
        while v <= hi {
            set |= 1u64 << v;
            v += step;
        }
    }
    Ok((set, star))
}

/// A number, or a name (case-insensitive) whose position plus `offset` is its value.
fn number(text: &str, names: &[&str], offset: u32) -> Result<u32, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(u32::try_from(i).unwrap_or(0) + offset);
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) || text.len() > 4 {
        return Err(format!("{text:?} is not a number"));
    }
    text.parse()
        .map_err(|_| format!("{text:?} is not a number"))
}

#[cfg(test)]
#[path = "cron_tests.rs"]
mod tests;
