use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().expect("a test timestamp")
}

fn next(expr: &str, tz: &str, after: &str) -> Option<String> {
    Cron::parse(expr, tz)
        .expect("a valid schedule")
        .next(ts(after))
        .map(|t| t.to_string())
}

/// The next `n` instants after `after`, as UTC strings.
fn series(expr: &str, tz: &str, after: &str, n: usize) -> Vec<String> {
    let cron = Cron::parse(expr, tz).expect("a valid schedule");
    let mut t = ts(after);
    let mut out = Vec::new();
    for _ in 0..n {
        t = cron.next(t).expect("a next time");
        out.push(t.to_string());
    }
    out
}

#[test]
fn fields_steps_lists_and_names() {
    assert_eq!(
        series("*/20 * * * *", "UTC", "2026-01-01T00:00:00Z", 3),
        [
            "2026-01-01T00:20:00Z",
            "2026-01-01T00:40:00Z",
            "2026-01-01T01:00:00Z"
        ]
    );
    assert_eq!(
        series("5 9-17/4 * * MON-FRI", "UTC", "2026-01-02T10:00:00Z", 4),
        [
            "2026-01-02T13:05:00Z",
            "2026-01-02T17:05:00Z",
            "2026-01-05T09:05:00Z",
            "2026-01-05T13:05:00Z"
        ]
    );
    assert_eq!(
        series("0 0 1,15 jan,Jul *", "UTC", "2026-01-01T00:00:00Z", 3),
        [
            "2026-01-15T00:00:00Z",
            "2026-07-01T00:00:00Z",
            "2026-07-15T00:00:00Z"
        ]
    );
    // `a/n` runs from a to the maximum.
    assert_eq!(
        series("50/5 * * * *", "UTC", "2026-01-01T00:00:00Z", 3),
        [
            "2026-01-01T00:50:00Z",
            "2026-01-01T00:55:00Z",
            "2026-01-01T01:50:00Z"
        ]
    );
}

#[test]
fn descriptors_expand_as_robfig_cron() {
    let after = "2026-01-31T12:00:00Z";
    assert_eq!(
        next("@hourly", "UTC", after).unwrap(),
        "2026-01-31T13:00:00Z"
    );
    assert_eq!(
        next("@daily", "UTC", after).unwrap(),
        "2026-02-01T00:00:00Z"
    );
    assert_eq!(
        next("@midnight", "UTC", after).unwrap(),
        "2026-02-01T00:00:00Z"
    );
    // 2026-01-31 is a Saturday.
    assert_eq!(
        next("@weekly", "UTC", after).unwrap(),
        "2026-02-01T00:00:00Z"
    );
    assert_eq!(
        next("@monthly", "UTC", after).unwrap(),
        "2026-02-01T00:00:00Z"
    );
    assert_eq!(
        next("@yearly", "UTC", after).unwrap(),
        "2027-01-01T00:00:00Z"
    );
    assert_eq!(
        next("@annually", "UTC", after).unwrap(),
        "2027-01-01T00:00:00Z"
    );
}

#[test]
fn both_day_fields_restricted_match_either_as_robfig() {
    // The 1st of each month or any Monday (2026-06-01 is a Monday; 2026-07-01 a Wednesday).
    assert_eq!(
        series("0 0 1 * MON", "UTC", "2026-06-01T00:00:00Z", 5),
        [
            "2026-06-08T00:00:00Z",
            "2026-06-15T00:00:00Z",
            "2026-06-22T00:00:00Z",
            "2026-06-29T00:00:00Z",
            "2026-07-01T00:00:00Z"
        ]
    );
    // `*` in one day field: both must match (Mondays only).
    assert_eq!(
        series("0 0 * * 1", "UTC", "2026-06-29T00:00:00Z", 2),
        ["2026-07-06T00:00:00Z", "2026-07-13T00:00:00Z"]
    );
    // `*/2` is not a star: the 1st or any odd day... here odd days of month OR Sundays.
    assert_eq!(
        series("0 0 */2 * 0", "UTC", "2026-02-27T00:00:00Z", 3),
        [
            "2026-03-01T00:00:00Z",
            "2026-03-03T00:00:00Z",
            "2026-03-05T00:00:00Z"
        ]
    );
}

#[test]
fn month_ends_skip_months_without_the_day() {
    assert_eq!(
        series("0 0 31 * *", "UTC", "2026-01-31T00:00:00Z", 3),
        [
            "2026-03-31T00:00:00Z",
            "2026-05-31T00:00:00Z",
            "2026-07-31T00:00:00Z"
        ]
    );
    assert_eq!(
        series("0 6 30 * *", "UTC", "2026-01-30T06:00:00Z", 2),
        ["2026-03-30T06:00:00Z", "2026-04-30T06:00:00Z"]
    );
    // @monthly created on the 31st runs on the 1st of every following month.
    assert_eq!(
        series("@monthly", "Europe/Berlin", "2026-01-31T10:00:00Z", 3),
        [
            "2026-01-31T23:00:00Z",
            "2026-02-28T23:00:00Z",
            "2026-03-31T22:00:00Z"
        ]
    );
}

#[test]
fn leap_days_run_only_in_leap_years() {
    assert_eq!(
        series("0 0 29 2 *", "UTC", "2025-03-01T00:00:00Z", 2),
        ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]
    );
    assert_eq!(
        next("0 12 28 2 *", "UTC", "2028-02-28T12:00:00Z").unwrap(),
        "2029-02-28T12:00:00Z"
    );
    // Never: looked for five years, then none.
    assert_eq!(next("0 0 30 2 *", "UTC", "2026-01-01T00:00:00Z"), None);
    assert_eq!(next("0 0 31 4 *", "UTC", "2026-01-01T00:00:00Z"), None);
}

#[test]
fn berlin_spring_forward_skips_the_missing_hour() {
    // 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC); 02:30 does not exist that day.
    assert_eq!(
        series("30 2 * * *", "Europe/Berlin", "2026-03-28T00:00:00Z", 2),
        ["2026-03-28T01:30:00Z", "2026-03-30T00:30:00Z"]
    );
    // Hourly stays hourly in real time: 01:00 CET, then 03:00 CEST an hour later.
    assert_eq!(
        series("0 * * * *", "Europe/Berlin", "2026-03-28T23:30:00Z", 3),
        [
            "2026-03-29T00:00:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-29T02:00:00Z"
        ]
    );
    // 03:00 exists (it is the first instant of CEST).
    assert_eq!(
        next("0 3 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z").unwrap(),
        "2026-03-29T01:00:00Z"
    );
}

#[test]
fn berlin_fall_back_runs_at_each_instant_of_the_repeated_hour() {
    // 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:00-02:59 happens twice.
    assert_eq!(
        series("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 3),
        [
            "2026-10-25T00:30:00Z",
            "2026-10-25T01:30:00Z",
            "2026-10-26T01:30:00Z"
        ]
    );
    assert_eq!(
        series("0 * * * *", "Europe/Berlin", "2026-10-24T23:30:00Z", 4),
        [
            "2026-10-25T00:00:00Z",
            "2026-10-25T01:00:00Z",
            "2026-10-25T02:00:00Z",
            "2026-10-25T03:00:00Z"
        ]
    );
    // Daily at midnight: once.
    assert_eq!(
        series("@daily", "Europe/Berlin", "2026-10-24T12:00:00Z", 2),
        ["2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z"]
    );
}

#[test]
fn sao_paulo_historical_dst_at_midnight() {
    // 2018-11-04: midnight (-03) became 01:00 (-02); there was no midnight that day.
    assert_eq!(
        series("@daily", "America/Sao_Paulo", "2018-11-02T12:00:00Z", 3),
        [
            "2018-11-03T03:00:00Z",
            "2018-11-05T02:00:00Z",
            "2018-11-06T02:00:00Z"
        ]
    );
    // 01:00 existed: the day's first instant.
    assert_eq!(
        next("0 1 * * *", "America/Sao_Paulo", "2018-11-03T12:00:00Z").unwrap(),
        "2018-11-04T03:00:00Z"
    );
    // 2019-02-17: midnight (-02) went back to 23:00 (-03) on the 16th: 23:30 happened twice.
    assert_eq!(
        series(
            "30 23 * * *",
            "America/Sao_Paulo",
            "2019-02-16T12:00:00Z",
            3
        ),
        [
            "2019-02-17T01:30:00Z",
            "2019-02-17T02:30:00Z",
            "2019-02-18T02:30:00Z"
        ]
    );
    assert_eq!(
        series("@daily", "America/Sao_Paulo", "2019-02-16T12:00:00Z", 2),
        ["2019-02-17T03:00:00Z", "2019-02-18T03:00:00Z"]
    );
    // Since 2019 there is no DST: -03 all year.
    assert_eq!(
        next("@daily", "America/Sao_Paulo", "2025-11-02T12:00:00Z").unwrap(),
        "2025-11-03T03:00:00Z"
    );
}

#[test]
fn previous_is_the_last_time_before() {
    let cron = Cron::parse("@monthly", "UTC").unwrap();
    assert_eq!(
        cron.previous(ts("2026-03-01T00:00:00Z"))
            .unwrap()
            .to_string(),
        "2026-02-01T00:00:00Z"
    );
    assert_eq!(
        cron.previous(ts("2026-03-01T00:00:01Z"))
            .unwrap()
            .to_string(),
        "2026-03-01T00:00:00Z"
    );
    let leap = Cron::parse("0 0 29 2 *", "UTC").unwrap();
    assert_eq!(
        leap.previous(ts("2028-02-29T00:00:00Z"))
            .unwrap()
            .to_string(),
        "2024-02-29T00:00:00Z"
    );
    let berlin = Cron::parse("30 2 * * *", "Europe/Berlin").unwrap();
    assert_eq!(
        berlin
            .previous(ts("2026-10-25T01:30:00Z"))
            .unwrap()
            .to_string(),
        "2026-10-25T00:30:00Z"
    );
}

#[test]
fn bad_schedules_and_zones_are_named() {
    let err = |expr: &str| Cron::parse(expr, "UTC").unwrap_err().to_string();
    assert_eq!(
        err("60 * * * *"),
        "invalid schedule \"60 * * * *\": minute: \"60\" is out of range 0-59"
    );
    assert_eq!(
        err("* * *"),
        "invalid schedule \"* * *\": expected 5 fields (minute hour day-of-month month day-of-week), found 3"
    );
    assert_eq!(
        err("0 0 * * 7"),
        "invalid schedule \"0 0 * * 7\": day of week: \"7\" is out of range 0-6"
    );
    assert_eq!(
        err("0 0 * FOO *"),
        "invalid schedule \"0 0 * FOO *\": month: \"FOO\" is not a number"
    );
    assert_eq!(
        err("*/0 * * * *"),
        "invalid schedule \"*/0 * * * *\": minute: \"*/0\": the step must be at least 1"
    );
    assert_eq!(
        err("5-1 * * * *"),
        "invalid schedule \"5-1 * * * *\": minute: \"5-1\": the range's start is after its end"
    );
    assert_eq!(
        err("@every 5m"),
        "invalid schedule \"@every 5m\": unknown descriptor (use @yearly, @monthly, @weekly, @daily or @hourly)"
    );
    assert_eq!(
        err("TZ=UTC 0 0 * * *"),
        "invalid schedule \"TZ=UTC 0 0 * * *\": a time zone in the schedule is not supported; set timeZone"
    );
    assert_eq!(
        Cron::parse("@daily", "Mars/Olympus")
            .unwrap_err()
            .to_string(),
        "unknown time zone \"Mars/Olympus\" (an IANA name such as Europe/Berlin)"
    );
    assert!(Cron::parse("@daily", "../etc/passwd").is_err());
}
