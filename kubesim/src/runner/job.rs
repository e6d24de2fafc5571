//! The Job controller's pure decision step: given a Job, its pods and the time, what to create, delete and report.
//!
//! Over 600 lines because of its unit tests (one per rule of upstream's Job controller it mirrors) at its end, in `mod tests`;
//! the code itself is under 600 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Annotation (and label) carrying an Indexed Job pod's completion index.
pub const INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";

/// Tunables of the controller that upstream hard-codes (shortened for tests).
#[derive(Clone, Copy, Debug)]
pub struct JobTiming {
    /// Delay before re-creating a pod after the first failure; doubles per failure.
    pub backoff_base: Duration,
    /// Upper bound of the retry delay.
    pub backoff_max: Duration,
}

impl Default for JobTiming {
    fn default() -> Self {
        Self {
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(1),
        }
    }
}

/// What one reconcile of a Job decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobStep {
    /// Pods to create: `Some(index)` for Indexed Jobs, `None` otherwise.
    pub pods_to_create: Vec<Option<i32>>,
    /// Names of pods to delete.
    pub pods_to_delete: Vec<String>,
    /// The status the Job should have.
    pub new_status: JobStatus,
    /// Delete the Job itself (ttlSecondsAfterFinished elapsed).
    pub delete_job: bool,
    /// Reconcile again after this long even without events.
    pub requeue_after: Option<Duration>,
}

/// The outcome of one pod as the controller sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PodState {
    Active,
    Terminating,
    Succeeded,
    Failed,
    Deleted,
}

/// What a matching podFailurePolicy rule says about a failed pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureAction {
    FailJob,
    FailIndex,
    Ignore,
    Count,
}

fn pod_state(pod: &Pod) -> PodState {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    let deleting = pod.metadata.deletion_timestamp.is_some();
    match phase {
        Some("Succeeded") => PodState::Succeeded,
        // A pod the controller deleted (suspend, deadline, job end) that then failed is not a failure.
        Some("Failed") if deleting => PodState::Deleted,
        Some("Failed") => PodState::Failed,
        _ if pod.metadata.deletion_timestamp.is_some() => PodState::Terminating,
        _ => PodState::Active,
    }
}

/// The completion index of a pod, from its annotation (or label).
pub fn pod_index(pod: &Pod) -> Option<i32> {
    let meta = &pod.metadata;
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(INDEX_ANNOTATION))
        .or_else(|| meta.labels.as_ref().and_then(|l| l.get(INDEX_ANNOTATION)))
        .and_then(|v| v.parse().ok())
}

fn pod_finished_at(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max()
}

/// Evaluate the Job's podFailurePolicy against a failed pod (first matching rule wins, as upstream).
pub fn failure_action(job: &Job, pod: &Pod) -> FailureAction {
    let Some(policy) = job
        .spec
        .as_ref()
        .and_then(|s| s.pod_failure_policy.as_ref())
    else {
        return FailureAction::Count;
    };
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    for rule in &policy.rules {
        let Some(req) = rule.on_exit_codes.as_ref() else {
            continue;
        };
        let matched = statuses.iter().any(|cs| {
            if req.container_name.as_ref().is_some_and(|n| *n != cs.name) {
                return false;
            }
            let Some(code) = cs
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| t.exit_code)
            else {
                return false;
            };
            // Upstream only considers containers that exited with a non-zero code.
            if code == 0 {
                return false;
            }
            match req.operator.as_str() {
                "In" => req.values.contains(&code),
                "NotIn" => !req.values.contains(&code),
                _ => false,
            }
        });
        if matched {
            return match rule.action.as_str() {
                "FailJob" => FailureAction::FailJob,
                "FailIndex" => FailureAction::FailIndex,
                "Ignore" => FailureAction::Ignore,
                _ => FailureAction::Count,
            };
        }
    }
    FailureAction::Count
}

/// Render a set of indexes as upstream does: "0-3,5,7-8".
pub fn compact_ranges(set: &BTreeSet<i32>) -> Option<String> {
    let mut parts = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

/// Parse "0-3,5" back into a set (ignores malformed pieces).
pub fn parse_ranges(s: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(v) = part.parse() {
                    out.insert(v);
                }
            }
        }
    }
    out
}

fn has_condition(status: &JobStatus, type_: &str) -> bool {
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// Set a condition, keeping its lastTransitionTime when its status does not change.
fn set_condition(
    status: &mut JobStatus,
    type_: &str,
    value: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let conds = status.conditions.get_or_insert_with(Vec::new);
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        if c.status != value {
            c.last_transition_time = Some(Time(now));
        }
        c.status = value.to_string();
        c.reason = Some(reason.to_string());
        c.message = Some(message.to_string());
        c.last_probe_time = Some(Time(now));
        return;
    }
    conds.push(JobCondition {
        type_: type_.to_string(),
        status: value.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    });
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn opt_count(n: usize) -> Option<i32> {
    (n > 0).then_some(i32::try_from(n).unwrap_or(i32::MAX))
}

/// One reconcile of a Job: pure, so every rule can be unit-tested.
pub fn job_step(job: &Job, pods: &[Pod], now: Timestamp, timing: &JobTiming) -> JobStep {
    let spec = job.spec.clone().unwrap_or_default();
    let old = job.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let mut step = JobStep::default();

    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let completions = spec.completions;
    let per_index = spec.backoff_limit_per_index.filter(|_| indexed);
    let backoff_limit =
        spec.backoff_limit
            .unwrap_or(if per_index.is_some() { i32::MAX } else { 6 });

    // Classify pods.
    let mut active: Vec<&Pod> = Vec::new();
    let mut terminating = 0usize;
    let mut succeeded_pods = 0usize;
    let mut failed_pods = 0usize;
    let mut succeeded_idx = BTreeSet::new();
    let mut failed_idx: BTreeSet<i32> = old
        .failed_indexes
        .as_deref()
        .map(parse_ranges)
        .unwrap_or_default();
    let mut failures_per_index: BTreeMap<i32, i32> = BTreeMap::new();
    let mut fail_job_reason: Option<(String, String)> = None;
    let mut last_failure: Option<Timestamp> = None;
    let mut last_failure_per_index: BTreeMap<i32, Timestamp> = BTreeMap::new();
    for pod in pods {
        match pod_state(pod) {
            PodState::Active => active.push(pod),
            PodState::Terminating => terminating += 1,
            PodState::Deleted => {}
            PodState::Succeeded => {
                if let Some(i) = pod_index(pod).filter(|_| indexed) {
                    if completions.is_some_and(|c| i < c) && succeeded_idx.insert(i) {
                        succeeded_pods += 1;
                    }
                } else {
                    succeeded_pods += 1;
                }
            }
            PodState::Failed => {
                let action = failure_action(job, pod);
                if action == FailureAction::Ignore {
                    continue;
                }
                failed_pods += 1;
                if let Some(t) = pod_finished_at(pod) {
                    last_failure = Some(last_failure.map_or(t, |l: Timestamp| l.max(t)));
                }
                let idx = pod_index(pod).filter(|_| indexed);
                match action {
                    FailureAction::FailJob if fail_job_reason.is_none() => {
                        fail_job_reason = Some((
                            "PodFailurePolicy".into(),
                            format!(
                                "Container of pod {} failed with an exit code matching a FailJob rule of the podFailurePolicy",
                                pod.metadata.name.as_deref().unwrap_or_default()
                            ),
                        ));
                    }
                    FailureAction::FailIndex => {
                        if let (Some(i), Some(_)) = (idx, per_index) {
                            failed_idx.insert(i);
                        }
                    }
                    _ => {}
                }
                if let Some(i) = idx {
                    *failures_per_index.entry(i).or_default() += 1;
                    if let Some(t) = pod_finished_at(pod) {
                        let e = last_failure_per_index.entry(i).or_insert(t);
                        *e = (*e).max(t);
                    }
                }
            }
        }
    }
    if let Some(limit) = per_index {
        for (&i, &n) in &failures_per_index {
            if n > limit {
                failed_idx.insert(i);
            }
        }
    }
    // An index that succeeded is not failed.
    failed_idx.retain(|i| !succeeded_idx.contains(i));

    let active_names: Vec<String> = active
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let ready = active
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .count();

    // Go's omitempty: zero counts and an empty completedIndexes are omitted; failedIndexes is a pointer.
    status.succeeded = opt_count(succeeded_pods);
    status.failed = opt_count(failed_pods);
    if indexed {
        status.completed_indexes = compact_ranges(&succeeded_idx);
        if per_index.is_some() {
            status.failed_indexes = compact_ranges(&failed_idx).or(Some(String::new()));
        }
    }

    let finished = has_condition(&old, "Complete") || has_condition(&old, "Failed");
    if finished {
        // Nothing runs after the end; only the TTL remains.
        step.pods_to_delete = active_names;
        status.active = opt_count(active.len());
        status.ready = Some(i32::try_from(ready).unwrap_or(0));
        status.terminating = Some(count(terminating + step.pods_to_delete.len()));
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            let end = finish_time(&old).unwrap_or(now);
            let due = end + jiff::SignedDuration::from_secs(i64::from(ttl));
            if now >= due {
                step.delete_job = true;
            } else {
                step.requeue_after = Some(Duration::from_millis(until(due, now) + 10));
            }
        }
        step.new_status = status;
        return step;
    }

    // Suspend: delete running pods, uncounted, clear startTime as upstream.
    if spec.suspend == Some(true) {
        step.pods_to_delete = active_names;
        status.active = None;
        status.ready = Some(0);
        status.terminating = Some(count(terminating + step.pods_to_delete.len()));
        status.start_time = None;
        if !has_condition(&old, "Suspended") {
            set_condition(
                &mut status,
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
                now,
            );
        }
        step.new_status = status;
        return step;
    }
    if has_condition(&old, "Suspended") {
        set_condition(
            &mut status,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            now,
        );
    }
    let start = old.start_time.as_ref().map(|t| t.0).unwrap_or(now);
    status.start_time = Some(Time(start));

    // Decide whether the Job reached a terminal outcome.
    let mut failure: Option<(String, String)> = None;
    if has_condition(&old, "FailureTarget") {
        let c = old
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "FailureTarget");
        failure = Some((
            c.and_then(|c| c.reason.clone()).unwrap_or_default(),
            c.and_then(|c| c.message.clone()).unwrap_or_default(),
        ));
    } else if let Some(f) = fail_job_reason {
        failure = Some(f);
    } else if per_index.is_some()
        && spec
            .max_failed_indexes
            .is_some_and(|m| failed_idx.len() > usize::try_from(m).unwrap_or(0))
    {
        failure = Some((
            "MaxFailedIndexesExceeded".into(),
            "Job has exceeded the specified maximal number of failed indexes".into(),
        ));
    } else if per_index.is_none() && failed_pods > usize::try_from(backoff_limit).unwrap_or(0) {
        failure = Some((
            "BackoffLimitExceeded".into(),
            "Job has reached the specified backoff limit".into(),
        ));
    } else if let Some(deadline) = spec.active_deadline_seconds {
        let due = start + jiff::SignedDuration::from_secs(deadline);
        if now >= due {
            failure = Some((
                "DeadlineExceeded".into(),
                "Job was active longer than specified deadline".into(),
            ));
        } else {
            step.requeue_after = Some(Duration::from_millis(until(due, now) + 10));
        }
    }
    let success = failure.is_none()
        && (has_condition(&old, "SuccessCriteriaMet")
            || match completions {
                Some(c) if indexed => succeeded_idx.len() >= usize::try_from(c).unwrap_or(0),
                Some(c) => succeeded_pods >= usize::try_from(c).unwrap_or(0),
                None => succeeded_pods > 0 && active.is_empty(),
            });
    // Indexed with per-index limits: all indexes settled and some failed.
    if failure.is_none()
        && !success
        && indexed
        && per_index.is_some()
        && !failed_idx.is_empty()
        && let Some(c) = completions
        && succeeded_idx.len() + failed_idx.len() >= usize::try_from(c).unwrap_or(0)
    {
        failure = Some(("FailedIndexes".into(), "Job has failed indexes".into()));
    }

    if let Some((reason, message)) = failure {
        set_condition(&mut status, "FailureTarget", "True", &reason, &message, now);
        step.pods_to_delete = active_names;
        if active.is_empty() && terminating == 0 {
            set_condition(&mut status, "Failed", "True", &reason, &message, now);
        } else {
            step.requeue_after = Some(Duration::from_millis(200));
        }
        status.active = None;
        status.ready = Some(0);
        status.terminating = Some(count(terminating + step.pods_to_delete.len()));
        step.new_status = status;
        return step;
    }
    if success {
        set_condition(
            &mut status,
            "SuccessCriteriaMet",
            "True",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
            now,
        );
        step.pods_to_delete = active_names;
        if active.is_empty() && terminating == 0 {
            set_condition(
                &mut status,
                "Complete",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            );
            status.completion_time = Some(Time(now));
        } else {
            step.requeue_after = Some(Duration::from_millis(200));
        }
        status.active = None;
        status.ready = Some(0);
        status.terminating = Some(count(terminating + step.pods_to_delete.len()));
        step.new_status = status;
        return step;
    }

    // Still running: create what is missing, after the failure backoff.
    status.active = opt_count(active.len());
    status.ready = Some(i32::try_from(ready).unwrap_or(0));
    status.terminating = Some(count(terminating));
    // Exponential retry backoff, per index with backoffLimitPerIndex (as upstream), else per Job.
    let backoff_left = |failures: i32, last: Option<Timestamp>| -> Duration {
        let Some(last) = last.filter(|_| failures > 0) else {
            return Duration::ZERO;
        };
        let exp = u32::try_from((failures - 1).clamp(0, 6)).unwrap_or(6);
        let wait = (timing.backoff_base * 2u32.pow(exp)).min(timing.backoff_max);
        let ready_at =
            last + jiff::SignedDuration::from_millis(i64::try_from(wait.as_millis()).unwrap_or(0));
        if now < ready_at {
            Duration::from_millis(until(ready_at, now) + 5)
        } else {
            Duration::ZERO
        }
    };
    let job_delay = if per_index.is_some() {
        Duration::ZERO
    } else {
        backoff_left(i32::try_from(failed_pods).unwrap_or(i32::MAX), last_failure)
    };
    let mut wait = Duration::MAX;
    let room = usize::try_from(parallelism)
        .unwrap_or(0)
        .saturating_sub(active.len() + terminating);
    let wanted: Vec<Option<i32>> = if indexed {
        let running: BTreeSet<i32> = active.iter().filter_map(|p| pod_index(p)).collect();
        (0..completions.unwrap_or(0))
            .filter(|i| {
                !succeeded_idx.contains(i) && !failed_idx.contains(i) && !running.contains(i)
            })
            .filter(|i| {
                let d = if per_index.is_some() {
                    backoff_left(
                        failures_per_index.get(i).copied().unwrap_or(0),
                        last_failure_per_index.get(i).copied(),
                    )
                } else {
                    job_delay
                };
                if !d.is_zero() {
                    wait = wait.min(d);
                }
                d.is_zero()
            })
            .take(room)
            .map(Some)
            .collect()
    } else {
        let remaining = match completions {
            Some(c) => usize::try_from(c)
                .unwrap_or(0)
                .saturating_sub(succeeded_pods + active.len()),
            // Work queue: no new pods once one succeeded.
            None if succeeded_pods > 0 => 0,
            None => usize::MAX,
        };
        let n = room.min(remaining);
        if n > 0 && !job_delay.is_zero() {
            wait = job_delay;
            Vec::new()
        } else {
            vec![None; n]
        }
    };
    step.pods_to_create = wanted;
    if wait != Duration::MAX {
        step.requeue_after = Some(step.requeue_after.map_or(wait, |r| r.min(wait)));
    }
    step.new_status = status;
    step
}

/// Whole milliseconds from `now` until `due` (0 when past).
fn until(due: Timestamp, now: Timestamp) -> u64 {
    u64::try_from(due.duration_since(now).as_millis()).unwrap_or(0)
}

fn finish_time(status: &JobStatus) -> Option<Timestamp> {
    status
        .conditions
        .iter()
        .flatten()
        .filter(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus,
    };

    fn job(spec: serde_json::Value) -> Job {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "j", "namespace": "default", "uid": "u1"},
            "spec": spec,
        }))
        .expect("job")
    }

    fn pod(
        name: &str,
        index: Option<i32>,
        phase: &str,
        exit: Option<i32>,
        finished: Timestamp,
    ) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        if let Some(i) = index {
            p.metadata.annotations = Some([(INDEX_ANNOTATION.to_string(), i.to_string())].into());
        }
        p.status = Some(PodStatus {
            phase: Some(phase.into()),
            container_statuses: exit.map(|code| {
                vec![ContainerStatus {
                    name: "main".into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: code,
                            finished_at: Some(Time(finished)),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        });
        p
    }

    fn indexed(extra: serde_json::Value) -> Job {
        let mut spec = serde_json::json!({
            "completions": 4, "parallelism": 2, "completionMode": "Indexed",
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "x"}]}}
        });
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        job(spec)
    }

    fn cond(status: &JobStatus, t: &str) -> Option<String> {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == t && c.status == "True")
            .and_then(|c| c.reason.clone())
    }

    fn types(status: &JobStatus) -> Vec<String> {
        status
            .conditions
            .iter()
            .flatten()
            .map(|c| c.type_.clone())
            .collect()
    }

    fn with_status(mut j: Job, s: JobStatus) -> Job {
        j.status = Some(s);
        j
    }

    #[test]
    fn ranges_round_trip_in_upstream_form() {
        let s: BTreeSet<i32> = [0, 1, 2, 3, 5, 7, 8].into();
        assert_eq!(compact_ranges(&s).as_deref(), Some("0-3,5,7-8"));
        assert_eq!(parse_ranges("0-3,5,7-8"), s);
        assert_eq!(compact_ranges(&BTreeSet::new()), None);
    }

    #[test]
    fn indexed_job_starts_lowest_indexes_up_to_parallelism() {
        let now = Timestamp::now();
        let step = job_step(
            &indexed(serde_json::json!({})),
            &[],
            now,
            &JobTiming::default(),
        );
        assert_eq!(step.pods_to_create, vec![Some(0), Some(1)]);
        let pods = [
            pod("a", Some(0), "Succeeded", Some(0), now),
            pod("b", Some(1), "Running", None, now),
        ];
        let step = job_step(
            &indexed(serde_json::json!({})),
            &pods,
            now,
            &JobTiming::default(),
        );
        assert_eq!(step.pods_to_create, vec![Some(2)]);
        assert_eq!(step.new_status.completed_indexes.as_deref(), Some("0"));
        assert_eq!(step.new_status.active, Some(1));
        assert!(step.new_status.start_time.is_some());
    }

    #[test]
    fn indexed_job_completes_with_success_criteria_then_complete() {
        let now = Timestamp::now();
        let pods: Vec<Pod> = (0..4)
            .map(|i| pod(&format!("p{i}"), Some(i), "Succeeded", Some(0), now))
            .collect();
        let step = job_step(
            &indexed(serde_json::json!({})),
            &pods,
            now,
            &JobTiming::default(),
        );
        assert!(step.pods_to_create.is_empty());
        assert_eq!(step.new_status.completed_indexes.as_deref(), Some("0-3"));
        assert_eq!(types(&step.new_status), ["SuccessCriteriaMet", "Complete"]);
        assert!(step.new_status.completion_time.is_some());
        assert_eq!(step.new_status.succeeded, Some(4));
    }

    #[test]
    fn failed_index_is_retried_until_backoff_limit_per_index() {
        let now = Timestamp::now();
        let long_ago = now - jiff::SignedDuration::from_secs(10);
        let j = indexed(serde_json::json!({"backoffLimitPerIndex": 1, "completions": 2}));
        let pods = [
            pod("a", Some(0), "Failed", Some(3), long_ago),
            pod("b", Some(1), "Succeeded", Some(0), now),
        ];
        let step = job_step(&j, &pods, now, &JobTiming::default());
        assert_eq!(step.pods_to_create, vec![Some(0)], "one retry allowed");
        let pods = [
            pod("a", Some(0), "Failed", Some(3), long_ago),
            pod("c", Some(0), "Failed", Some(3), long_ago),
            pod("b", Some(1), "Succeeded", Some(0), now),
        ];
        let step = job_step(&j, &pods, now, &JobTiming::default());
        assert!(step.pods_to_create.is_empty());
        assert_eq!(step.new_status.failed_indexes.as_deref(), Some("0"));
        assert_eq!(
            cond(&step.new_status, "Failed").as_deref(),
            Some("FailedIndexes")
        );
        assert_eq!(types(&step.new_status), ["FailureTarget", "Failed"]);
    }

    #[test]
    fn fail_index_rule_stops_retries_at_once() {
        let now = Timestamp::now();
        let j = indexed(serde_json::json!({
            "backoffLimitPerIndex": 5, "completions": 2,
            "podFailurePolicy": {"rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [42]}}]}
        }));
        let pods = [
            pod("a", Some(0), "Failed", Some(42), now),
            pod("b", Some(1), "Running", None, now),
        ];
        let step = job_step(&j, &pods, now, &JobTiming::default());
        assert!(step.pods_to_create.is_empty());
        assert_eq!(step.new_status.failed_indexes.as_deref(), Some("0"));
        assert!(
            cond(&step.new_status, "Failed").is_none(),
            "index 1 still runs"
        );
    }

    #[test]
    fn max_failed_indexes_exceeded_fails_job_and_deletes_pods() {
        let now = Timestamp::now();
        let j = indexed(serde_json::json!({"backoffLimitPerIndex": 0, "maxFailedIndexes": 0}));
        let pods = [
            pod("a", Some(0), "Failed", Some(1), now),
            pod("b", Some(1), "Running", None, now),
        ];
        let step = job_step(&j, &pods, now, &JobTiming::default());
        assert_eq!(step.pods_to_delete, vec!["b".to_string()]);
        assert_eq!(
            cond(&step.new_status, "FailureTarget").as_deref(),
            Some("MaxFailedIndexesExceeded")
        );
        assert!(
            cond(&step.new_status, "Failed").is_none(),
            "Failed only once pods are gone"
        );
    }

    #[test]
    fn backoff_limit_exceeded_fails_non_indexed_job() {
        let now = Timestamp::now();
        let j = job(serde_json::json!({"backoffLimit": 1, "template": {}}));
        let pods = [
            pod("a", None, "Failed", Some(1), now),
            pod("b", None, "Failed", Some(1), now),
        ];
        let step = job_step(&j, &pods, now, &JobTiming::default());
        assert_eq!(
            cond(&step.new_status, "Failed").as_deref(),
            Some("BackoffLimitExceeded")
        );
        assert_eq!(step.new_status.failed, Some(2));
    }

    #[test]
    fn retry_waits_for_backoff() {
        let now = Timestamp::now();
        let j = job(serde_json::json!({"backoffLimit": 3, "template": {}}));
        let pods = [pod("a", None, "Failed", Some(1), now)];
        let step = job_step(&j, &pods, now, &JobTiming::default());
        assert!(step.pods_to_create.is_empty());
        assert!(step.requeue_after.is_some());
        let later = now + jiff::SignedDuration::from_secs(2);
        let step = job_step(&j, &pods, later, &JobTiming::default());
        assert_eq!(step.pods_to_create, vec![None]);
    }

    #[test]
    fn per_index_backoff_delays_only_the_failed_index() {
        let now = Timestamp::now();
        let j = indexed(serde_json::json!({"backoffLimitPerIndex": 2, "parallelism": 4}));
        let pods = [pod("a", Some(0), "Failed", Some(1), now)];
        let step = job_step(&j, &pods, now, &JobTiming::default());
        assert_eq!(step.pods_to_create, vec![Some(1), Some(2), Some(3)]);
        assert!(
            step.requeue_after
                .is_some_and(|d| d <= Duration::from_millis(300))
        );
        let later = now + jiff::SignedDuration::from_secs(1);
        let step = job_step(&j, &pods, later, &JobTiming::default());
        assert_eq!(
            step.pods_to_create,
            vec![Some(0), Some(1), Some(2), Some(3)]
        );
    }

    #[test]
    fn ignore_rule_does_not_count_and_fail_job_rule_fails() {
        let now = Timestamp::now() - jiff::SignedDuration::from_secs(5);
        let j = job(serde_json::json!({"backoffLimit": 0, "template": {},
        "podFailurePolicy": {"rules": [
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [137]}},
            {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [1, 137]}}
        ]}}));
        let step = job_step(
            &j,
            &[pod("a", None, "Failed", Some(137), now)],
            Timestamp::now(),
            &JobTiming::default(),
        );
        assert_eq!(step.new_status.failed, None);
        assert_eq!(step.pods_to_create, vec![None]);
        let step = job_step(
            &j,
            &[pod("a", None, "Failed", Some(9), now)],
            Timestamp::now(),
            &JobTiming::default(),
        );
        assert_eq!(
            cond(&step.new_status, "Failed").as_deref(),
            Some("PodFailurePolicy")
        );
    }

    #[test]
    fn suspend_deletes_pods_uncounted_and_resume_recreates() {
        let now = Timestamp::now();
        let j = indexed(serde_json::json!({"suspend": true}));
        let pods = [
            pod("a", Some(0), "Running", None, now),
            pod("b", Some(1), "Running", None, now),
        ];
        let step = job_step(&j, &pods, now, &JobTiming::default());
        assert_eq!(step.pods_to_delete.len(), 2);
        assert_eq!(
            cond(&step.new_status, "Suspended").as_deref(),
            Some("JobSuspended")
        );
        assert_eq!(step.new_status.failed, None);
        assert!(step.new_status.start_time.is_none());
        let resumed = with_status(
            indexed(serde_json::json!({"suspend": false})),
            step.new_status,
        );
        let step = job_step(&resumed, &[], now, &JobTiming::default());
        assert_eq!(step.pods_to_create, vec![Some(0), Some(1)]);
        assert!(cond(&step.new_status, "Suspended").is_none());
    }

    #[test]
    fn pod_failing_while_deleted_is_not_counted() {
        let now = Timestamp::now();
        let mut p = pod("a", Some(0), "Failed", Some(143), now);
        p.metadata.deletion_timestamp = Some(Time(now));
        let step = job_step(
            &indexed(serde_json::json!({})),
            &[p],
            now,
            &JobTiming::default(),
        );
        assert_eq!(step.new_status.failed, None);
        assert_eq!(step.pods_to_create, vec![Some(0), Some(1)]);
    }

    #[test]
    fn active_deadline_fails_job() {
        let now = Timestamp::now();
        let j = with_status(
            indexed(serde_json::json!({"activeDeadlineSeconds": 1})),
            JobStatus {
                start_time: Some(Time(now - jiff::SignedDuration::from_secs(2))),
                ..Default::default()
            },
        );
        let pods = [pod("a", Some(0), "Running", None, now)];
        let step = job_step(&j, &pods, now, &JobTiming::default());
        assert_eq!(
            cond(&step.new_status, "FailureTarget").as_deref(),
            Some("DeadlineExceeded")
        );
        assert_eq!(step.pods_to_delete, vec!["a".to_string()]);
    }

    #[test]
    fn ttl_deletes_finished_job() {
        let now = Timestamp::now();
        let mut status = JobStatus::default();
        set_condition(
            &mut status,
            "Complete",
            "True",
            "CompletionsReached",
            "",
            now - jiff::SignedDuration::from_secs(3),
        );
        let j = with_status(
            indexed(serde_json::json!({"ttlSecondsAfterFinished": 2})),
            status.clone(),
        );
        assert!(job_step(&j, &[], now, &JobTiming::default()).delete_job);
        let j = with_status(
            indexed(serde_json::json!({"ttlSecondsAfterFinished": 10})),
            status,
        );
        let step = job_step(&j, &[], now, &JobTiming::default());
        assert!(!step.delete_job);
        assert!(step.requeue_after.is_some());
    }
}
