//! Durations on the command line, parsed and printed with `jiff`'s friendly format:
//! `--timeout 1h30m` in, `3m12s` out.

use std::time::Duration;

use jiff::fmt::friendly::{Designator, Spacing, SpanPrinter};
use jiff::{RoundMode, Span, SpanRelativeTo, SpanRound, Unit};

/// Parses `90` (seconds), `500ms`, `30s`, `30m`, `2h`, `1d` or sums such as `1h30m` (any
/// of `jiff`'s friendly durations, e.g. `1h 30m`, `2 hours`, with days of 24 hours).
/// Negative durations and calendar units (weeks and longer) are refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let bad = || format!("invalid duration {text:?}: use e.g. 90 (seconds), 30s, 30m, 2h or 1h30m");
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u64>().map(Duration::from_secs).map_err(|_| bad());
    }
    let span: Span = s.parse().map_err(|_| bad())?;
    if span.get_years() != 0 || span.get_months() != 0 || span.get_weeks() != 0 {
        return Err(bad());
    }
    let signed = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|_| bad())?;
    Duration::try_from(signed).map_err(|_| bad())
}

/// `5s`, `3m12s`, `2h5m`, `3d4h`: the two largest units, truncated.
pub fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let smallest = match secs {
        0..3600 => Unit::Second,
        3600..86400 => Unit::Minute,
        _ => Unit::Hour,
    };
    let rounding = SpanRound::new()
        .largest(Unit::Day)
        .smallest(smallest)
        .mode(RoundMode::Trunc)
        .days_are_24_hours();
    let span = Span::new()
        .try_seconds(secs)
        .and_then(|s| s.round(rounding));
    match span {
        Ok(span) => SpanPrinter::new()
            .designator(Designator::Compact)
            .spacing(Spacing::None)
            .span_to_string(&span),
        // Beyond jiff's range (thousands of years): plain seconds.
        Err(_) => format!("{secs}s"),
    }
}

/// Whole seconds from `t` until now (negative when `t` is in the future).
pub fn since(t: jiff::Timestamp) -> i64 {
    jiff::Timestamp::now().duration_since(t).as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(" 1d "), Ok(Duration::from_secs(86400)));
        for bad in [
            "",
            "m",
            "10x",
            "-5",
            "-5s",
            "h1",
            "2w",
            "1mo",
            "99999999999999999999d",
            "99999999999999999999",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(human_duration(-3), "0s");
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(120), "2m");
        assert_eq!(human_duration(192), "3m12s");
        assert_eq!(human_duration(7500), "2h5m");
        assert_eq!(human_duration(7200), "2h");
        assert_eq!(human_duration(7259), "2h");
        assert_eq!(human_duration(86400), "1d");
        assert_eq!(human_duration(3 * 86400 + 4 * 3600 + 59), "3d4h");
    }
}
