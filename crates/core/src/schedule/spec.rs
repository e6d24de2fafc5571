//! The ReportSchedule custom resource: a schedule, its time zone and policies, and the
//! template of the ReportJobs it creates (as a CronJob's jobTemplate).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::ReportJobSpec;

/// A ReportSchedule creates a ReportJob from its template at each time of its cron
/// schedule, as a CronJob creates Jobs.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[allow(clippy::duplicated_attributes)] // several printcolumn(type_ = "string") entries
#[kube(
    group = "reporting.dev",
    version = "v1alpha1",
    kind = "ReportSchedule",
    namespaced,
    status = "ReportScheduleStatus",
    shortname = "rsched",
    category = "reports",
    doc = "A ReportSchedule creates a ReportJob from its template at each time of its cron schedule (in its time zone), as a CronJob creates Jobs. ${scheduledTime}, ${windowStart} and ${windowEnd} in the template's source.parameters values and output path or URL are replaced by the run's times.",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "TimeZone", type_ = "string", json_path = ".spec.timeZone"),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(
        name = "Active",
        type_ = "string",
        json_path = ".status.active[*].name",
        description = "The ReportJobs running"
    ),
    printcolumn(
        name = "Last Schedule",
        type_ = "date",
        json_path = ".status.lastScheduleTime"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Next",
        type_ = "string",
        json_path = ".status.nextScheduleTime",
        description = "When the next run is due (a date column would show a future time as 0s)"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ReportScheduleSpec {
    /// Five-field cron expression (minute hour day-of-month month day-of-week) or
    /// `@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`.
    #[schemars(length(min = 1, max = 256))]
    pub schedule: String,
    /// The IANA time zone the schedule is read in (e.g. `Europe/Berlin`). Default UTC.
    #[serde(default = "default_time_zone")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,
    /// What to do when a run is due while an earlier one is still running: `Allow` runs
    /// both, `Forbid` skips the new one, `Replace` deletes the running one first.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// A run missed by more than this many seconds (controller down, Forbid) is not started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub starting_deadline_seconds: Option<i64>,
    /// Start no new runs (running ones go on).
    #[serde(default)]
    pub suspend: bool,
    /// Succeeded ReportJobs kept; older ones are deleted (their reports stay).
    #[serde(default = "default_successful")]
    #[schemars(range(min = 0, max = 100))]
    pub successful_runs_history_limit: i32,
    /// Failed ReportJobs kept; older ones are deleted.
    #[serde(default = "default_failed")]
    #[schemars(range(min = 0, max = 100))]
    pub failed_runs_history_limit: i32,
    /// The ReportJob each run creates.
    pub report_job_template: ReportJobTemplate,
}

fn default_time_zone() -> String {
    "UTC".into()
}
fn default_successful() -> i32 {
    3
}
fn default_failed() -> i32 {
    1
}

/// What a run does when the previous one still runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Runs may overlap.
    #[default]
    Allow,
    /// A run due while another is active is skipped.
    Forbid,
    /// A run due while another is active deletes the active one first.
    Replace,
}

/// The ReportJob a run creates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportJobTemplate {
    /// Labels and annotations of the ReportJobs.
    #[serde(default)]
    pub metadata: TemplateMetadata,
    /// The ReportJob's spec. `${scheduledTime}`, `${windowStart}` and `${windowEnd}` (with an
    /// optional strftime format, `${windowStart:%Y-%m-%d}`) are replaced in
    /// `source.parameters[*].value`, `output.destination.pvc.path` and
    /// `output.destination.bucket.url`, and refused anywhere in the SQL.
    pub spec: ReportJobSpec,
}

/// Labels and annotations.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct TemplateMetadata {
    /// Labels of each ReportJob.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations of each ReportJob.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The observed state of a ReportSchedule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportScheduleStatus {
    /// The ReportJobs of this schedule that are running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<ObjectReference>,
    /// The scheduled time of the last run created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When the last run that succeeded completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// The next scheduled time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the schedule, time zone and template are valid (else why not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
