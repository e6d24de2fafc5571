//! The ReportJob of one run: the template with the run's times substituted, its name, labels,
//! annotations and owner; and the checks of a template before any run.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use super::placeholders::{self, RunTimes};
use super::spec::ReportSchedule;
use crate::api::{ReportJob, ReportJobSpec};

/// Label on each run naming its schedule (as upstream's `batch.kubernetes.io/cronjob-name`).
pub const SCHEDULE_LABEL: &str = "reporting.dev/schedule";
/// Annotation on each run with its scheduled time, RFC 3339 (as upstream's
/// `batch.kubernetes.io/cronjob-scheduled-timestamp`).
pub const SCHEDULED_TIME_ANNOTATION: &str = "reporting.dev/scheduled-time";
/// Annotation on a run created by `reportjob schedule trigger` (as upstream's
/// `cronjob.kubernetes.io/instantiate: manual`).
pub const INSTANTIATE_ANNOTATION: &str = "reporting.dev/instantiate";
/// The longest schedule name: runs are `<name>-<8+ digits>` and their stage Jobs add
/// `-assemble`, within the 63 characters of a label value.
pub const MAX_NAME: usize = 40;

/// A field of the schedule and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    /// The field, e.g. `spec.reportJobTemplate.spec.source.query`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

const SPEC: &str = "spec.reportJobTemplate.spec";

/// Checks the placeholders of a template: known names and formats where they are
/// substituted, none in the SQL (a value belongs in `source.parameters`).
pub fn check(spec: &ReportJobSpec) -> Vec<TemplateError> {
    let mut errors = Vec::new();
    let source = &spec.source;
    let sql = [
        ("source.table", source.table.as_deref()),
        ("source.query", source.query.as_deref()),
        ("source.where", source.where_.as_deref()),
        ("source.keyColumn", Some(source.key_column.as_str())),
    ];
    for (field, text) in sql {
        if text.is_some_and(placeholders::has_placeholder) {
            errors.push(TemplateError {
                field: format!("{SPEC}.{field}"),
                message: "placeholders are never written into SQL; use $n here and put the placeholder in source.parameters[n-1].value".into(),
            });
        }
    }
    for (i, column) in source.columns.iter().flatten().enumerate() {
        if placeholders::has_placeholder(column) {
            errors.push(TemplateError {
                field: format!("{SPEC}.source.columns[{i}]"),
                message: "placeholders are never written into SQL".into(),
            });
        }
    }
    let mut substituted: Vec<(String, &str)> = source
        .parameters
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                format!("{SPEC}.source.parameters[{i}].value"),
                p.value.as_str(),
            )
        })
        .collect();
    if let Some(pvc) = &spec.output.destination.pvc {
        substituted.push((format!("{SPEC}.output.destination.pvc.path"), &pvc.path));
    }
    if let Some(bucket) = &spec.output.destination.bucket {
        substituted.push((format!("{SPEC}.output.destination.bucket.url"), &bucket.url));
    }
    for (field, text) in substituted {
        if let Err(message) = placeholders::check(text) {
            errors.push(TemplateError { field, message });
        }
    }
    errors
}

/// The name of the run scheduled at `scheduled`: `<schedule>-<minutes since the epoch>`,
/// as upstream's `getJobName`, so a restarted controller finds the run it created.
pub fn run_name(schedule: &str, scheduled: jiff::Timestamp) -> String {
    format!("{schedule}-{}", scheduled.as_second().div_euclid(60))
}

/// The template's spec with the run's times substituted.
pub fn run_spec(template: &ReportJobSpec, times: &RunTimes) -> Result<ReportJobSpec, String> {
    let mut spec = template.clone();
    for (i, p) in spec.source.parameters.iter_mut().enumerate() {
        p.value = placeholders::substitute(&p.value, times)
            .map_err(|e| format!("{SPEC}.source.parameters[{i}].value: {e}"))?;
    }
    if let Some(pvc) = &mut spec.output.destination.pvc {
        pvc.path = placeholders::substitute(&pvc.path, times)
            .map_err(|e| format!("{SPEC}.output.destination.pvc.path: {e}"))?;
    }
    if let Some(bucket) = &mut spec.output.destination.bucket {
        bucket.url = placeholders::substitute(&bucket.url, times)
            .map_err(|e| format!("{SPEC}.output.destination.bucket.url: {e}"))?;
    }
    Ok(spec)
}

/// The ReportJob `name` of the schedule for a run at `times`, owned by the schedule
/// (deleting the schedule deletes its runs; their reports stay unless the template's
/// `output.deleteWithReportJob` says otherwise).
pub fn run_report_job(
    rs: &ReportSchedule,
    name: &str,
    times: &RunTimes,
    manual: bool,
) -> Result<ReportJob, String> {
    let template = &rs.spec.report_job_template;
    let spec = run_spec(&template.spec, times)?;
    let mut labels: BTreeMap<String, String> = template.metadata.labels.clone();
    labels.insert(SCHEDULE_LABEL.into(), rs.name_any());
    let mut annotations = template.metadata.annotations.clone();
    annotations.insert(
        SCHEDULED_TIME_ANNOTATION.into(),
        times.scheduled.to_string(),
    );
    if manual {
        annotations.insert(INSTANTIATE_ANNOTATION.into(), "manual".into());
    }
    let owner = OwnerReference {
        api_version: ReportSchedule::api_version(&()).into_owned(),
        kind: ReportSchedule::kind(&()).into_owned(),
        name: rs.name_any(),
        uid: rs.metadata.uid.clone().ok_or("the schedule has no uid")?,
        controller: Some(true),
        // Unset, unlike upstream's: setting it would need update on reportschedules/finalizers.
        block_owner_deletion: None,
    };
    Ok(ReportJob {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: rs.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    })
}

/// The ReportJob `name` of a run started by hand at `now`: the window of the most recent
/// scheduled time (at or before `now`), annotated `reporting.dev/instantiate: manual`.
pub fn manual_run(
    rs: &ReportSchedule,
    cron: &super::cron::Cron,
    name: &str,
    now: jiff::Timestamp,
) -> Result<ReportJob, String> {
    let after = now
        .checked_add(jiff::SignedDuration::from_secs(1))
        .map_err(|e| e.to_string())?;
    let scheduled = cron
        .previous(after)
        .ok_or("the schedule has no time in the last five years")?;
    let window_start = cron.previous(scheduled).unwrap_or(scheduled);
    let times = RunTimes {
        scheduled,
        window_start,
        tz: cron.time_zone().clone(),
    };
    run_report_job(rs, name, &times, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(query: &str, param: &str, path: &str) -> ReportSchedule {
        let value = serde_json::json!({
            "apiVersion": "reporting.dev/v1alpha1", "kind": "ReportSchedule",
            "metadata": {"name": "sales", "namespace": "team", "uid": "u-1"},
            "spec": {"schedule": "@monthly", "timeZone": "Europe/Berlin",
              "reportJobTemplate": {"metadata": {"labels": {"team": "a"}}, "spec": {
                "source": {"connectionSecretRef": {"name": "db"}, "query": query,
                           "keyColumn": "id",
                           "parameters": [{"value": param, "type": "timestamptz"}]},
                "output": {"destination": {"pvc": {"claimName": "reports", "path": path}}}}}}
        });
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_run_gets_its_times_name_labels_and_owner() {
        let rs = schedule(
            "select * from orders where at >= $1",
            "${windowStart}",
            "sales/${windowStart:%Y-%m}.csv",
        );
        assert!(check(&rs.spec.report_job_template.spec).is_empty());
        let times = RunTimes {
            scheduled: "2026-02-01T00:00:00+01:00".parse().unwrap(),
            window_start: "2026-01-01T00:00:00+01:00".parse().unwrap(),
            tz: jiff::tz::TimeZone::get("Europe/Berlin").unwrap(),
        };
        let name = run_name("sales", times.scheduled);
        assert_eq!(name, "sales-29498340");
        let rj = run_report_job(&rs, &name, &times, false).unwrap();
        assert_eq!(
            rj.spec.source.parameters[0].value,
            "2026-01-01T00:00:00+01:00"
        );
        assert_eq!(
            rj.spec.output.destination.pvc.unwrap().path,
            "sales/2026-01.csv"
        );
        assert_eq!(
            rj.spec.source.query.as_deref(),
            Some("select * from orders where at >= $1")
        );
        assert_eq!(rj.metadata.labels.unwrap()[SCHEDULE_LABEL], "sales");
        assert_eq!(
            rj.metadata.annotations.unwrap()[SCHEDULED_TIME_ANNOTATION],
            "2026-01-31T23:00:00Z"
        );
        let owner = &rj.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("ReportSchedule", "u-1")
        );
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), None)
        );
    }

    #[test]
    fn placeholders_in_sql_and_unknown_ones_are_named() {
        let rs = schedule(
            "select * from orders where at >= '${windowStart}'",
            "${yesterday}",
            "sales/${windowStart:%Y-%m}.csv",
        );
        let errors: Vec<String> = check(&rs.spec.report_job_template.spec)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            [
                "spec.reportJobTemplate.spec.source.query: placeholders are never written into SQL; use $n here and put the placeholder in source.parameters[n-1].value",
                "spec.reportJobTemplate.spec.source.parameters[0].value: unknown placeholder ${yesterday} (known: ${scheduledTime}, ${windowStart}, ${windowEnd})"
            ]
        );
    }
}
