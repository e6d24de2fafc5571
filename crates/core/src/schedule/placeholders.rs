//! Per-run values: `${scheduledTime}`, `${windowStart}` and `${windowEnd}`, optionally with
//! a strftime format (`${windowStart:%Y-%m-%d}`), substituted in parameter values and output
//! paths/keys. The default format is RFC 3339 with the zone's offset
//! (`2026-01-31T00:00:00+01:00`); times are shown in the schedule's time zone.

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// The placeholder names.
pub const NAMES: [&str; 3] = ["scheduledTime", "windowStart", "windowEnd"];
/// The format of a placeholder without one.
pub const DEFAULT_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%:z";
/// The longest format accepted.
const MAX_FORMAT: usize = 64;

/// The times of one run.
#[derive(Clone, Debug)]
pub struct RunTimes {
    /// The scheduled time of the run (`${scheduledTime}`, also `${windowEnd}`).
    pub scheduled: Timestamp,
    /// The previous scheduled time (`${windowStart}`).
    pub window_start: Timestamp,
    /// The zone the times are written in.
    pub tz: TimeZone,
}

/// Whether `text` holds any `${`.
pub fn has_placeholder(text: &str) -> bool {
    text.contains("${")
}

/// Checks every placeholder of `text` (name and format) without substituting.
pub fn check(text: &str) -> Result<(), String> {
    let sample = RunTimes {
        scheduled: Timestamp::UNIX_EPOCH,
        window_start: Timestamp::UNIX_EPOCH,
        tz: TimeZone::UTC,
    };
    substitute(text, &sample).map(|_| ())
}

/// `text` with its placeholders replaced by the run's times.
pub fn substitute(text: &str, times: &RunTimes) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("unclosed placeholder {:?}", &rest[start..]));
        };
        let inner = &after[..end];
        let (name, format) = match inner.split_once(':') {
            Some((n, f)) => (n, f),
            None => (inner, DEFAULT_FORMAT),
        };
        let time = match name {
            "scheduledTime" | "windowEnd" => times.scheduled,
            "windowStart" => times.window_start,
            other => {
                return Err(format!(
                    "unknown placeholder ${{{other}}} (known: ${{scheduledTime}}, ${{windowStart}}, ${{windowEnd}})"
                ));
            }
        };
        if format.is_empty() || format.len() > MAX_FORMAT {
            return Err(format!(
                "the format of ${{{name}}} must be 1 to {MAX_FORMAT} characters"
            ));
        }
        let zoned = time.to_zoned(times.tz.clone());
        let written = jiff::fmt::strtime::format(format, &zoned)
            .map_err(|e| format!("the format {format:?} of ${{{name}}}: {e}"))?;
        out.push_str(&written);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times() -> RunTimes {
        RunTimes {
            scheduled: "2026-02-01T00:00:00+01:00".parse().unwrap(),
            window_start: "2026-01-01T00:00:00+01:00".parse().unwrap(),
            tz: TimeZone::get("Europe/Berlin").unwrap(),
        }
    }

    #[test]
    fn names_and_formats_are_substituted_in_the_zone() {
        assert_eq!(
            substitute("sales/${windowStart:%Y-%m}.csv", &times()).unwrap(),
            "sales/2026-01.csv"
        );
        assert_eq!(
            substitute("${windowStart}", &times()).unwrap(),
            "2026-01-01T00:00:00+01:00"
        );
        assert_eq!(
            substitute("${windowEnd:%Y/%m/%d}-${scheduledTime:%H%M}", &times()).unwrap(),
            "2026/02/01-0000"
        );
        assert_eq!(
            substitute("no placeholder $1", &times()).unwrap(),
            "no placeholder $1"
        );
    }

    #[test]
    fn unknown_names_bad_formats_and_unclosed_are_refused() {
        assert_eq!(
            check("a/${today}.csv").unwrap_err(),
            "unknown placeholder ${today} (known: ${scheduledTime}, ${windowStart}, ${windowEnd})"
        );
        assert_eq!(
            check("a/${windowStart.csv").unwrap_err(),
            "unclosed placeholder \"${windowStart.csv\""
        );
        assert!(
            check("${windowStart:%K}")
                .unwrap_err()
                .starts_with("the format \"%K\" of ${windowStart}: "),
        );
        assert_eq!(
            check("${windowStart:}").unwrap_err(),
            "the format of ${windowStart} must be 1 to 64 characters"
        );
    }
}
