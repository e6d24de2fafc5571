use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().expect("a test timestamp")
}

fn schedule(extra: serde_json::Value) -> ReportSchedule {
    let mut spec = serde_json::json!({
        "schedule": "*/10 * * * *",
        "reportJobTemplate": {"spec": {
            "source": {"connectionSecretRef": {"name": "db"}, "table": "orders", "keyColumn": "id"},
            "output": {"destination": {"pvc": {"claimName": "reports",
                                                "path": "o/${windowStart:%H%M}.csv"}}}}}
    });
    for (k, v) in extra.as_object().expect("an object") {
        spec[k] = v.clone();
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "reporting.dev/v1alpha1", "kind": "ReportSchedule",
        "metadata": {"name": "s", "namespace": "n", "uid": "u",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": spec,
    }))
    .expect("a schedule")
}

fn run(name: &str, phase: Option<&str>, created: &str) -> ReportJob {
    let mut value = serde_json::json!({
        "apiVersion": "reporting.dev/v1alpha1", "kind": "ReportJob",
        "metadata": {"name": name, "namespace": "n", "creationTimestamp": created},
        "spec": {"source": {"connectionSecretRef": {"name": "db"}, "table": "t", "keyColumn": "id"},
                 "output": {"destination": {"pvc": {"claimName": "r", "path": "x.csv"}}}}
    });
    if let Some(p) = phase {
        value["status"] = serde_json::json!({"phase": p, "completionTime": created});
    }
    serde_json::from_value(value).expect("a run")
}

fn created(sync: &Sync) -> Vec<String> {
    sync.actions
        .iter()
        .filter_map(|a| match a {
            Action::Create(rj) => Some(rj.name_any()),
            Action::Delete(_) => None,
        })
        .collect()
}

fn deleted(sync: &Sync) -> Vec<String> {
    sync.actions
        .iter()
        .filter_map(|a| match a {
            Action::Delete(n) => Some(n.clone()),
            Action::Create(_) => None,
        })
        .collect()
}

#[test]
fn the_due_run_is_created_once_with_its_window() {
    let rs = schedule(serde_json::json!({}));
    let s = sync(&rs, &[], ts("2026-01-01T00:10:05Z"));
    assert_eq!(created(&s), ["s-29453770"]);
    let Some(Action::Create(rj)) = s.actions.first() else {
        panic!("a create")
    };
    assert_eq!(
        rj.spec.output.destination.pvc.as_ref().unwrap().path,
        "o/0000.csv"
    );
    assert_eq!(
        s.status.last_schedule_time.as_ref().unwrap().0,
        ts("2026-01-01T00:10:00Z")
    );
    assert_eq!(
        s.status.next_schedule_time.as_ref().unwrap().0,
        ts("2026-01-01T00:20:00Z")
    );
    assert_eq!(s.requeue, Some(Duration::from_secs(595)));
    assert_eq!(s.notes[0].reason, "SuccessfulCreate");
    // Once the status says so, nothing again.
    let mut rs = rs;
    rs.status = Some(s.status.clone());
    let again = sync(
        &rs,
        &[run("s-29453770", None, "2026-01-01T00:10:05Z")],
        ts("2026-01-01T00:15:00Z"),
    );
    assert!(again.actions.is_empty());
    assert_eq!(again.status.active.len(), 1);
}

#[test]
fn forbid_skips_and_replace_deletes_the_active_run() {
    let active = [run("s-29453770", None, "2026-01-01T00:10:00Z")];
    let mut rs = schedule(serde_json::json!({"concurrencyPolicy": "Forbid"}));
    rs.status = Some(ReportScheduleStatus {
        last_schedule_time: Some(Time(ts("2026-01-01T00:10:00Z"))),
        ..Default::default()
    });
    let s = sync(&rs, &active, ts("2026-01-01T00:20:00Z"));
    assert!(s.actions.is_empty());
    assert_eq!(s.notes[0].reason, "JobAlreadyActive");
    rs.spec.concurrency_policy = ConcurrencyPolicy::Replace;
    let s = sync(&rs, &active, ts("2026-01-01T00:20:00Z"));
    assert_eq!(deleted(&s), ["s-29453770"]);
    assert_eq!(created(&s), ["s-29453780"]);
}

#[test]
fn a_schedule_never_has_more_active_runs_than_the_bound() {
    // Ten runs that never end (their template is suspended): the eleventh is not started.
    let active: Vec<ReportJob> = (0..MAX_ACTIVE_RUNS)
        .map(|i| {
            run(
                &format!("s-{}", 29450000 + i),
                Some("Suspended"),
                "2026-01-01T00:00:00Z",
            )
        })
        .collect();
    let mut rs = schedule(serde_json::json!({}));
    rs.status = Some(ReportScheduleStatus {
        last_schedule_time: Some(Time(ts("2026-01-01T00:10:00Z"))),
        ..Default::default()
    });
    let s = sync(&rs, &active, ts("2026-01-01T00:20:00Z"));
    assert!(created(&s).is_empty());
    assert_eq!(s.notes[0].reason, "TooManyActiveRuns");
    assert_eq!(s.status.active.len(), MAX_ACTIVE_RUNS);
    // One fewer: the due run starts.
    let s = sync(&rs, &active[1..], ts("2026-01-01T00:20:00Z"));
    assert_eq!(created(&s), ["s-29453780"]);
}

#[test]
fn history_limits_delete_the_oldest_finished_runs() {
    let mut rs =
        schedule(serde_json::json!({"successfulRunsHistoryLimit": 2, "failedRunsHistoryLimit": 1}));
    rs.status = Some(ReportScheduleStatus {
        last_schedule_time: Some(Time(ts("2026-01-01T00:50:00Z"))),
        ..Default::default()
    });
    let runs = [
        run("a", Some("Succeeded"), "2026-01-01T00:10:00Z"),
        run("b", Some("Failed"), "2026-01-01T00:20:00Z"),
        run("c", Some("Succeeded"), "2026-01-01T00:30:00Z"),
        run("d", Some("Failed"), "2026-01-01T00:40:00Z"),
        run("e", Some("Succeeded"), "2026-01-01T00:50:00Z"),
    ];
    let s = sync(&rs, &runs, ts("2026-01-01T00:55:00Z"));
    assert_eq!(deleted(&s), ["a", "b"]);
    assert_eq!(
        s.status.last_successful_time.unwrap().0,
        ts("2026-01-01T00:50:00Z")
    );
}

#[test]
fn every_problem_of_a_bad_schedule_is_named_at_once() {
    let rs = schedule(serde_json::json!({"schedule": "0 25 * * *", "timeZone": "Mars/Olympus"}));
    let s = sync(&rs, &[], ts("2026-01-01T00:10:00Z"));
    let c = &s.status.conditions[0];
    assert_eq!(c.reason, "InvalidSchedule");
    assert!(c.message.contains("spec.schedule: "), "{}", c.message);
    assert!(c.message.contains("hour"), "{}", c.message);
    assert!(c.message.contains("spec.timeZone: "), "{}", c.message);
    assert!(s.actions.is_empty());
}

#[test]
fn bad_input_is_a_condition_and_one_warning_and_no_run() {
    for (extra, reason, message) in [
        (
            serde_json::json!({"schedule": "61 * * * *"}),
            "InvalidSchedule",
            "spec.schedule: invalid schedule \"61 * * * *\": minute: \"61\" is out of range 0-59",
        ),
        (
            serde_json::json!({"timeZone": "Europe/Nowhere"}),
            "UnknownTimeZone",
            "spec.timeZone: unknown time zone \"Europe/Nowhere\" (an IANA name such as Europe/Berlin)",
        ),
    ] {
        let mut rs = schedule(extra);
        let s = sync(&rs, &[], ts("2026-01-01T00:10:00Z"));
        assert!(s.actions.is_empty());
        let c = &s.status.conditions[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
            ("False", reason, message)
        );
        assert_eq!(s.notes.len(), 1);
        // The same problem again: no second Event.
        rs.status = Some(s.status);
        assert!(sync(&rs, &[], ts("2026-01-01T00:20:00Z")).notes.is_empty());
    }
}

#[test]
fn suspended_schedules_create_nothing() {
    let rs = schedule(serde_json::json!({"suspend": true}));
    let s = sync(&rs, &[], ts("2026-01-01T00:10:00Z"));
    assert!(s.actions.is_empty());
    assert_eq!(s.status.next_schedule_time, None);
}

#[test]
fn the_template_must_pass_the_reportjob_rules_with_its_times_filled_in() {
    let mut rs = schedule(serde_json::json!({}));
    rs.spec.report_job_template.spec.source.table = Some("orders;drop".into());
    let s = sync(&rs, &[], ts("2026-01-01T00:10:00Z"));
    assert!(s.actions.is_empty());
    let c = &s.status.conditions[0];
    assert_eq!(c.reason, "InvalidTemplate");
    assert_eq!(
        c.message,
        "spec.reportJobTemplate.spec.source.table: \"orders;drop\" is not a valid name: unexpected ';' (double-quote names with special characters)"
    );
}
