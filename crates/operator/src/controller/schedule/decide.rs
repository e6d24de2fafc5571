//! What one sync of a ReportSchedule does, as upstream's `syncCronJob`
//! (`pkg/controller/cronjob/cronjob_controllerv2.go`): keep `status.active` true, delete
//! finished runs beyond the history limits, then create the run due now (if any), as the
//! concurrency policy allows. Pure: the caller lists the runs and carries out the actions.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{Resource, ResourceExt};

use reportjob_core::api::{Phase, ReportJob};
use reportjob_core::schedule::cron::{Cron, CronError};
use reportjob_core::schedule::missed::{self, MANY_MISSED};

/// The most runs one schedule has active at once (running, queued or suspended), whatever its
/// concurrency policy: the next due run is skipped while as many are active.
pub const MAX_ACTIVE_RUNS: usize = 10;
use reportjob_core::schedule::placeholders::RunTimes;
use reportjob_core::schedule::template::{self, MAX_NAME};
use reportjob_core::schedule::{ConcurrencyPolicy, ReportSchedule, ReportScheduleStatus};

/// The condition a schedule carries: whether it can run.
pub const READY: &str = "Ready";

/// One API call.
#[derive(Clone, Debug)]
pub enum Action {
    /// Delete a run (history limit, or `Replace`).
    Delete(String),
    /// Create a run.
    Create(Box<ReportJob>),
}

/// An Event to record on the schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Warning or Normal.
    pub warning: bool,
    /// CamelCase reason (upstream's where there is one).
    pub reason: &'static str,
    /// The message.
    pub message: String,
}

/// The outcome of one sync.
#[derive(Clone, Debug)]
pub struct Sync {
    /// Calls to make, in order.
    pub actions: Vec<Action>,
    /// The status to write.
    pub status: ReportScheduleStatus,
    /// Events to record.
    pub notes: Vec<Note>,
    /// When to look again (the next scheduled time); `None`: on a change only.
    pub requeue: Option<Duration>,
}

/// Decides one sync of `rs`, whose runs (ReportJobs it controls) are `runs`, at `now`.
pub fn sync(rs: &ReportSchedule, runs: &[ReportJob], now: Timestamp) -> Sync {
    let old = rs.status.clone().unwrap_or_default();
    let mut status = ReportScheduleStatus {
        observed_generation: rs.metadata.generation,
        ..old.clone()
    };
    let mut out = Sync {
        actions: Vec::new(),
        status: ReportScheduleStatus::default(),
        notes: Vec::new(),
        requeue: None,
    };
    let live: Vec<&ReportJob> = runs
        .iter()
        .filter(|r| r.metadata.deletion_timestamp.is_none())
        .collect();
    status.active = live
        .iter()
        .filter(|r| finished(r).is_none())
        .map(|r| reference(r))
        .collect();
    status.active.sort_by(|a, b| a.name.cmp(&b.name));
    for r in &live {
        if finished(r) == Some(Phase::Succeeded)
            && let Some(done) = r.status.as_ref().and_then(|s| s.completion_time.clone())
            && status
                .last_successful_time
                .as_ref()
                .is_none_or(|t| t.0 < done.0)
        {
            status.last_successful_time = Some(done);
        }
    }
    history(rs, &live, &mut out.actions);

    let cron = match check(rs) {
        Ok(cron) => cron,
        Err((reason, message)) => {
            status.next_schedule_time = None;
            set_ready(&mut status, &old, false, reason, &message, now);
            if !has_condition(&old, reason, &message) {
                out.notes.push(Note {
                    warning: true,
                    reason,
                    message,
                });
            }
            out.status = status;
            return out;
        }
    };
    set_ready(
        &mut status,
        &old,
        true,
        "Scheduled",
        "the schedule is valid",
        now,
    );
    let created = rs.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let last = old.last_schedule_time.as_ref().map(|t| t.0);
    let due = missed::due(&cron, created, last, rs.spec.starting_deadline_seconds, now);
    status.next_schedule_time = if rs.spec.suspend {
        None
    } else {
        due.next.map(Time)
    };
    out.requeue = due
        .next
        .and_then(|n| Duration::try_from(n.duration_since(now)).ok())
        .map(|d| d.max(Duration::from_secs(1)));
    if rs.spec.suspend || rs.metadata.deletion_timestamp.is_some() {
        out.status = status;
        return out;
    }
    let Some(scheduled) = due.time else {
        out.status = status;
        return out;
    };
    if due.missed > MANY_MISSED {
        out.notes.push(Note {
            warning: true,
            reason: "TooManyMissedTimes",
            message: "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
        });
    }
    let name = template::run_name(&rs.name_any(), scheduled);
    if runs.iter().any(|r| r.name_any() == name) || last.is_some_and(|l| l >= scheduled) {
        out.status = status;
        return out;
    }
    // Under Allow, runs that do not end (a template with `suspend: true`, runs queued behind
    // the run cap) would pile up one per period without bound.
    if rs.spec.concurrency_policy == ConcurrencyPolicy::Allow
        && status.active.len() >= MAX_ACTIVE_RUNS
    {
        out.notes.push(Note {
            warning: true,
            reason: "TooManyActiveRuns",
            message: format!(
                "Not starting ReportJob: {MAX_ACTIVE_RUNS} runs of this schedule are active \
                 (running, queued or suspended), as many as a schedule may have"
            ),
        });
        out.status = status;
        return out;
    }
    match rs.spec.concurrency_policy {
        ConcurrencyPolicy::Forbid if !status.active.is_empty() => {
            out.notes.push(Note {
                warning: false,
                reason: "JobAlreadyActive",
                message: "Not starting ReportJob because prior execution is running and concurrency policy is Forbid".into(),
            });
            out.status = status;
            return out;
        }
        ConcurrencyPolicy::Replace => {
            for active in &status.active {
                out.actions
                    .push(Action::Delete(active.name.clone().unwrap_or_default()));
                out.notes.push(Note {
                    warning: false,
                    reason: "SuccessfulDelete",
                    message: format!(
                        "Deleted ReportJob {} (concurrency policy Replace)",
                        active.name.as_deref().unwrap_or("")
                    ),
                });
            }
            status.active.clear();
        }
        _ => {}
    }
    let times = RunTimes {
        scheduled,
        window_start: cron.previous(scheduled).unwrap_or(created),
        tz: cron.time_zone().clone(),
    };
    match template::run_report_job(rs, &name, &times, false) {
        Ok(rj) => {
            status.active.push(reference(&rj));
            status.last_schedule_time = Some(Time(scheduled));
            out.notes.push(Note {
                warning: false,
                reason: "SuccessfulCreate",
                message: format!("Created ReportJob {name}"),
            });
            out.actions.push(Action::Create(Box::new(rj)));
        }
        Err(message) => {
            set_ready(&mut status, &old, false, "InvalidTemplate", &message, now);
            out.notes.push(Note {
                warning: true,
                reason: "InvalidTemplate",
                message,
            });
        }
    }
    out.status = status;
    out
}

/// The schedule, time zone, name and template checked: the parsed schedule, or the reason
/// and message of the first problem.
pub fn check(rs: &ReportSchedule) -> Result<Cron, (&'static str, String)> {
    // Every problem at once, the first one's reason for the condition: a bad hour and a bad
    // time zone are both named, not one per fix.
    let mut problems: Vec<(&'static str, String)> = Vec::new();
    let name = rs.name_any();
    if name.len() > MAX_NAME {
        problems.push((
            "InvalidName",
            format!(
                "metadata.name: at most {MAX_NAME} characters (runs are named <name>-<minutes>)"
            ),
        ));
    }
    if let Err(e @ CronError::Schedule { .. }) = Cron::parse(&rs.spec.schedule, "UTC") {
        problems.push(("InvalidSchedule", format!("spec.schedule: {e}")));
    }
    let zone_ok = match Cron::parse("0 0 * * *", &rs.spec.time_zone) {
        Err(e @ CronError::TimeZone(_)) => {
            problems.push(("UnknownTimeZone", format!("spec.timeZone: {e}")));
            false
        }
        _ => true,
    };
    let errors = template::check(&rs.spec.report_job_template.spec);
    if !errors.is_empty() {
        let message = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        problems.push(("InvalidTemplate", message));
    } else {
        // The spec rules of any ReportJob, on the template with its placeholders filled in.
        let tz = if zone_ok {
            rs.spec.time_zone.as_str()
        } else {
            "UTC"
        };
        let zone = Cron::parse("0 0 * * *", tz)
            .map(|c| c.time_zone().clone())
            .unwrap_or(jiff::tz::TimeZone::UTC);
        let sample = RunTimes {
            scheduled: Timestamp::UNIX_EPOCH,
            window_start: Timestamp::UNIX_EPOCH,
            tz: zone,
        };
        match template::run_spec(&rs.spec.report_job_template.spec, &sample) {
            Err(message) => problems.push(("InvalidTemplate", message)),
            Ok(spec) => {
                if let Err(errors) = reportjob_core::api::validate::validate(&spec) {
                    let message = errors
                        .iter()
                        .map(|e| format!("spec.reportJobTemplate.{e}"))
                        .collect::<Vec<_>>()
                        .join("; ");
                    problems.push(("InvalidTemplate", message));
                }
            }
        }
    }
    if let Some((reason, _)) = problems.first() {
        let message = problems
            .iter()
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        return Err((reason, message));
    }
    Cron::parse(&rs.spec.schedule, &rs.spec.time_zone)
        .map_err(|e| ("InvalidSchedule", e.to_string()))
}

/// Deletes the oldest finished runs beyond the limits, as upstream's
/// `cleanupFinishedJobs` (oldest by creation first).
fn history(rs: &ReportSchedule, live: &[&ReportJob], actions: &mut Vec<Action>) {
    for (phase, limit) in [
        (Phase::Succeeded, rs.spec.successful_runs_history_limit),
        (Phase::Failed, rs.spec.failed_runs_history_limit),
    ] {
        // A cancelled run counts with the failed ones: it did not produce its report.
        let mut done: Vec<&&ReportJob> = live
            .iter()
            .filter(|r| {
                finished(r).map(|p| {
                    if p == Phase::Cancelled {
                        Phase::Failed
                    } else {
                        p
                    }
                }) == Some(phase)
            })
            .collect();
        done.sort_by_key(|r| {
            (
                r.metadata.creation_timestamp.clone().map(|t| t.0),
                r.name_any(),
            )
        });
        let keep = usize::try_from(limit.max(0)).unwrap_or(0);
        let excess = done.len().saturating_sub(keep);
        for r in done.into_iter().take(excess) {
            actions.push(Action::Delete(r.name_any()));
        }
    }
}

/// The final phase of a run, if it finished.
fn finished(rj: &ReportJob) -> Option<Phase> {
    match rj.status.as_ref().and_then(|s| s.phase) {
        Some(p @ (Phase::Succeeded | Phase::Failed | Phase::Cancelled)) => Some(p),
        _ => None,
    }
}

fn reference(rj: &ReportJob) -> ObjectReference {
    ObjectReference {
        api_version: Some(ReportJob::api_version(&()).into_owned()),
        kind: Some(ReportJob::kind(&()).into_owned()),
        name: rj.metadata.name.clone(),
        namespace: rj.metadata.namespace.clone(),
        uid: rj.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

fn has_condition(old: &ReportScheduleStatus, reason: &str, message: &str) -> bool {
    old.conditions
        .iter()
        .any(|c| c.type_ == READY && c.reason == reason && c.message == message)
}

fn set_ready(
    status: &mut ReportScheduleStatus,
    old: &ReportScheduleStatus,
    ok: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let value = if ok { "True" } else { "False" };
    let previous = old.conditions.iter().find(|c| c.type_ == READY);
    let since = match previous {
        Some(c) if c.status == value => c.last_transition_time.clone(),
        _ => Time(now),
    };
    status.conditions.retain(|c| c.type_ != READY);
    status.conditions.push(Condition {
        type_: READY.into(),
        status: value.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: since,
        observed_generation: status.observed_generation,
    });
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
