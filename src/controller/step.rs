//! The reconciler's decisions, as pure functions: from what exists (the ReportJob, its
//! Jobs and, when needed, their pods) to the one next action and the status to write.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use super::jobs::{self, PlanRef, PodDefaults, Target};
use super::names::{self, Stage};
use crate::api::conditions::{self, set_condition};
use crate::api::validate::validation_errors;
use crate::api::{
    ChunkCounts, OutputStatus, Phase, PlanStatus, ReportJob, ReportJobSpec, ReportJobStatus,
};
use crate::staging::{compact_ranges, parse_ranges};

/// Condition type: the spec changed after planning started and the change is ignored.
pub const SPEC_CHANGE_IGNORED: &str = "SpecChangeIgnored";

/// Reasons, as they appear in conditions and events.
pub mod reason {
    /// The spec is valid and nothing has started yet.
    pub const PENDING: &str = "Pending";
    /// The plan Job is running.
    pub const PLANNING: &str = "Planning";
    /// The plan is staged.
    pub const PLAN_STAGED: &str = "PlanStaged";
    /// Chunks are being exported.
    pub const EXPORTING: &str = "Exporting";
    /// The parts are being assembled.
    pub const ASSEMBLING: &str = "Assembling";
    /// The report is published.
    pub const PUBLISHED: &str = "ReportPublished";
    /// The spec sets `suspend`.
    pub const SUSPENDED: &str = "SuspendedBySpec";
    /// `suspend` was cleared.
    pub const RESUMED: &str = "Resumed";
    /// Not failed.
    pub const NO_FAILURE: &str = "NoFailure";
    /// The plan Job failed.
    pub const PLAN_FAILED: &str = "PlanFailed";
    /// A chunk failed after its retries (or at once, permanently).
    pub const CHUNKS_FAILED: &str = "ChunksFailed";
    /// The assemble Job failed.
    pub const ASSEMBLE_FAILED: &str = "AssembleFailed";
    /// The chunks Job ran past `activeDeadlineSeconds`.
    pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
    /// The stage Job's result could not be read.
    pub const BAD_RESULT: &str = "BadStageResult";
    /// A retry was requested with the retry annotation.
    pub const RETRYING: &str = "Retrying";
    /// A stage pod cannot start (e.g. its Secret is missing).
    pub const POD_CANNOT_START: &str = "PodCannotStart";
    /// The spec changed after planning started.
    pub const SPEC_CHANGED: &str = "SpecChangedAfterPlanning";
    /// The spec did not change after planning started.
    pub const SPEC_UNCHANGED: &str = "SpecUnchanged";
}

/// A stage pod, reduced to what the decisions need.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodInfo {
    /// The pod's name.
    pub name: String,
    /// The pod's completion index (chunks Job), i.e. the position in the Job's chunk list.
    pub completion_index: Option<usize>,
    /// `status.phase`.
    pub phase: String,
    /// Exit code of the terminated container.
    pub exit_code: Option<i32>,
    /// The termination message of the terminated container.
    pub message: Option<String>,
    /// Why a container is waiting (`CreateContainerConfigError`, `ErrImagePull`...), and the
    /// kubelet's message.
    pub waiting: Option<(String, String)>,
    /// When the container terminated.
    pub finished_at: Option<Timestamp>,
}

/// Everything the decisions look at.
#[derive(Clone, Debug)]
pub struct Observed {
    /// The ReportJob as read.
    pub rj: ReportJob,
    /// Its stage Jobs (those it controls).
    pub jobs: BTreeMap<Stage, Job>,
    /// Stage Jobs being deleted (nothing of that stage is created until they are gone).
    pub terminating: Vec<Stage>,
    /// Pods of the stages listed by [`pods_needed`].
    pub pods: BTreeMap<Stage, Vec<PodInfo>>,
    /// The spec the run was planned with, from the plan Job (when it differs from the
    /// ReportJob's current spec, the planned one is used).
    pub planned_spec: Option<ReportJobSpec>,
    /// Now.
    pub now: Timestamp,
}

impl Action {
    /// A one-line description for logs.
    pub fn describe(&self) -> String {
        match self {
            Action::None => "none".into(),
            Action::AddFinalizer => "add finalizer".into(),
            Action::CreateJob(job) => format!("create Job {}", job.name_any()),
            Action::SuspendChunks(s) => format!("set suspend={s} on the chunks Job"),
            Action::DeleteJobs(names) => format!("delete Jobs {}", names.join(", ")),
            Action::RemoveFinalizer => "remove finalizer".into(),
            Action::DeleteReportJob => "delete the ReportJob (ttl)".into(),
        }
    }
}

/// The one thing the reconciler does next.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Nothing to change (the status may still be written).
    None,
    /// Add the cleanup finalizer.
    AddFinalizer,
    /// Create a stage Job.
    CreateJob(Box<Job>),
    /// Set `spec.suspend` of the chunks Job.
    SuspendChunks(bool),
    /// Delete these Jobs (and their pods) in the foreground.
    DeleteJobs(Vec<String>),
    /// Remove the finalizer: the ReportJob may go.
    RemoveFinalizer,
    /// Delete the ReportJob: `ttlSecondsAfterFinished` has passed.
    DeleteReportJob,
}

/// An event to record about the ReportJob.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    /// Warning rather than Normal.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: String,
    /// What the controller did (`Plan`, `Export`, `Assemble`, `Cleanup`, `Reconcile`).
    pub action: &'static str,
    /// Human-readable note.
    pub message: String,
}

/// The outcome of one reconcile decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// What to do.
    pub action: Action,
    /// The status to write (written only when it differs from the current one).
    pub status: ReportJobStatus,
    /// Events to record.
    pub notes: Vec<Note>,
    /// When to look again if nothing else happens.
    pub requeue: Option<Duration>,
}

/// How often a running ReportJob is looked at even without changes (pods are not watched).
pub const RUNNING_RESYNC: Duration = Duration::from_secs(10);
/// How soon a ReportJob with a pod that cannot start is looked at again.
pub const PENDING_POD_RESYNC: Duration = Duration::from_secs(3);

/// The stages whose pods the decisions need: a finished stage whose result is not yet in
/// the status, a chunks Job with failures, and any stage with pods that are not ready.
pub fn pods_needed(rj: &ReportJob, jobs: &BTreeMap<Stage, Job>) -> Vec<Stage> {
    let status = rj.status.clone().unwrap_or_default();
    let mut out = Vec::new();
    for (stage, job) in jobs {
        let s = job.status.clone().unwrap_or_default();
        let outcome = job_outcome(job);
        let finished = outcome != JobOutcome::Running;
        let needed = match stage {
            Stage::Plan => finished && status.plan.is_none(),
            Stage::Assemble => finished && status.output.is_none(),
            Stage::Chunks => {
                s.failed.unwrap_or(0) > 0
                    || s.failed_indexes.as_deref().is_some_and(|f| !f.is_empty())
            }
            Stage::Cleanup => matches!(outcome, JobOutcome::Failed { .. }),
            Stage::Notify => {
                finished
                    && !status
                        .conditions
                        .iter()
                        .any(|c| c.type_ == conditions::NOTIFIED)
            }
        };
        let not_ready = s.active.unwrap_or(0) > s.ready.unwrap_or(0);
        if needed || not_ready {
            out.push(*stage);
        }
    }
    out
}

/// Where a Job is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// Not finished.
    Running,
    /// `Complete`.
    Complete,
    /// `Failed` (or `FailureTarget`), with the Job's reason and message.
    Failed { reason: String, message: String },
}

/// A Job's outcome from its conditions.
pub fn job_outcome(job: &Job) -> JobOutcome {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let active = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t && c.status == "True")
    };
    if active("Complete").is_some() {
        return JobOutcome::Complete;
    }
    match active("Failed").or_else(|| active("FailureTarget")) {
        Some(c) => JobOutcome::Failed {
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
        },
        None => JobOutcome::Running,
    }
}

/// Whether a stage Job failed: its `Failed` condition, or (chunks) a failed index.
fn job_failed(job: &Job) -> bool {
    matches!(job_outcome(job), JobOutcome::Failed { .. })
        || job
            .status
            .as_ref()
            .and_then(|s| s.failed_indexes.as_deref())
            .is_some_and(|f| !f.is_empty())
}

/// Parses a stage's one-line result (`key=value` pairs separated by spaces; a value may
/// contain spaces when the next word is not `key=`).
pub fn parse_fields(line: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut last: Option<String> = None;
    for word in line.trim().split(' ') {
        match word.split_once('=') {
            Some((k, v))
                if !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') =>
            {
                out.insert(k.to_string(), v.to_string());
                last = Some(k.to_string());
            }
            _ => {
                if let Some(value) = last.as_ref().and_then(|k| out.get_mut(k)) {
                    value.push(' ');
                    value.push_str(word);
                }
            }
        }
    }
    out
}

/// Decides the next step. `defaults` are the controller's pod defaults.
pub fn decide(o: &Observed, defaults: &PodDefaults) -> Step {
    let rj = &o.rj;
    let old = rj.status.clone().unwrap_or_default();
    let mut st = old.clone();
    let generation = rj.metadata.generation;
    st.observed_generation = generation;
    let mut d = Decision {
        o,
        defaults,
        st,
        notes: Vec::new(),
        requeue: None,
    };
    let action = d.next_action();
    let Decision {
        mut st,
        mut notes,
        mut requeue,
        ..
    } = d;
    let active = !matches!(st.phase, Some(Phase::Succeeded | Phase::Failed));
    if requeue.is_none() && active && action == Action::None {
        requeue = Some(RUNNING_RESYNC);
    }
    st.progress = st
        .chunks
        .as_ref()
        .map(|c| format!("{}/{}", c.succeeded, c.total));
    notes.extend(phase_notes(&old, &st));
    Step {
        action,
        status: st,
        notes,
        requeue,
    }
}

struct Decision<'a> {
    o: &'a Observed,
    defaults: &'a PodDefaults,
    st: ReportJobStatus,
    notes: Vec<Note>,
    requeue: Option<Duration>,
}

impl<'a> Decision<'a> {
    fn rj(&self) -> &'a ReportJob {
        &self.o.rj
    }

    fn job(&self, stage: Stage) -> Option<&'a Job> {
        self.o.jobs.get(&stage)
    }

    fn condition(&mut self, type_: &str, status: bool, reason: &str, message: &str) {
        let c = Condition {
            type_: type_.to_string(),
            status: if status { "True" } else { "False" }.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
            observed_generation: self.rj().metadata.generation,
            last_transition_time: Time(self.o.now),
        };
        set_condition(&mut self.st.conditions, c);
    }

    fn has_condition(&self, type_: &str) -> bool {
        self.st
            .conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    }

    fn set_phase(&mut self, phase: Phase, message: impl Into<String>) {
        self.st.phase = Some(phase);
        self.st.message = Some(message.into());
    }

    fn fail(&mut self, reason: &str, message: String) -> Action {
        self.set_phase(Phase::Failed, message.clone());
        self.condition(conditions::FAILED, true, reason, &message);
        self.condition(conditions::COMPLETE, false, reason, "the ReportJob failed");
        if self.st.completion_time.is_none() {
            self.st.completion_time = Some(Time(self.o.now));
        }
        Action::None
    }

    fn next_action(&mut self) -> Action {
        let rj = self.rj();
        if !self.o.terminating.is_empty() {
            // A Job of the same name is still going away; its replacement must wait.
            self.requeue = Some(Duration::from_secs(1));
            return Action::None;
        }
        if rj.metadata.deletion_timestamp.is_some() {
            return self.deleting();
        }
        if !rj.finalizers().iter().any(|f| f == names::FINALIZER) {
            if self.st.phase.is_none() {
                self.set_phase(Phase::Pending, "accepted");
            }
            return Action::AddFinalizer;
        }
        let started = self.st.plan.is_some() || self.job(Stage::Plan).is_some();
        if !started {
            let errors = validation_errors(&rj.spec);
            if !errors.is_empty() {
                let message = errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                let message = format!("invalid spec: {message}");
                if self.st.message.as_deref() != Some(&message) {
                    self.notes.push(warning(
                        conditions::REASON_INVALID_SPEC,
                        "Validate",
                        &message,
                    ));
                }
                // An invalid spec is Failed until it is fixed; no Job is created.
                self.st.completion_time = None;
                self.set_phase(Phase::Failed, message.clone());
                self.condition(
                    conditions::FAILED,
                    true,
                    conditions::REASON_INVALID_SPEC,
                    &message,
                );
                self.condition(
                    conditions::COMPLETE,
                    false,
                    conditions::REASON_INVALID_SPEC,
                    "the spec is invalid",
                );
                return Action::None;
            }
            if self.has_condition(conditions::FAILED) {
                // It was invalid and has been fixed.
                self.condition(conditions::FAILED, false, reason::NO_FAILURE, "");
                self.st.phase = None;
            }
        }
        match self.st.phase {
            Some(Phase::Succeeded) => return self.finished(),
            Some(Phase::Failed) => {
                let token = rj.annotations().get(names::RETRY_ANNOTATION).cloned();
                if token.is_some() && token != self.st.retry_token {
                    return self.retry(token);
                }
                if let Some(action) = self.notify_failure() {
                    return action;
                }
                return self.finished();
            }
            _ => {}
        }
        if self.st.start_time.is_none() {
            self.st.start_time = Some(Time(self.o.now));
        }
        // The spec a run is planned with is the spec it finishes with.
        let current = names::spec_hash(&rj.spec);
        let spec = match &self.st.plan {
            Some(plan) if !plan.spec_hash.is_empty() && plan.spec_hash != current => {
                match self.o.planned_spec.clone() {
                    Some(spec) => {
                        self.condition(
                            SPEC_CHANGE_IGNORED,
                            true,
                            reason::SPEC_CHANGED,
                            "spec.source, chunking, output and worker cannot change once planning \
                             started; the run goes on with the planned spec (create a new ReportJob \
                             for the new spec)",
                        );
                        spec
                    }
                    None => {
                        return self.fail(
                            reason::SPEC_CHANGED,
                            "the spec changed after planning started and the planned spec is gone \
                             (the plan Job was deleted); create a new ReportJob"
                                .into(),
                        );
                    }
                }
            }
            _ => {
                if self
                    .st
                    .conditions
                    .iter()
                    .any(|c| c.type_ == SPEC_CHANGE_IGNORED)
                {
                    self.condition(SPEC_CHANGE_IGNORED, false, reason::SPEC_UNCHANGED, "");
                }
                rj.spec.clone()
            }
        };
        let run_id = names::run_id(rj);
        match self.st.plan.clone() {
            None => self.planning(&spec, &run_id),
            Some(plan) => self.after_planning(&spec, &plan),
        }
    }

    fn target<'b>(&'b self, spec: &'b ReportJobSpec) -> Target<'b> {
        Target {
            rj: &self.o.rj,
            spec,
            defaults: self.defaults,
        }
    }

    fn planning(&mut self, spec: &ReportJobSpec, run_id: &str) -> Action {
        self.condition(
            conditions::PLANNED,
            false,
            reason::PLANNING,
            "the plan Job is running",
        );
        self.condition(conditions::COMPLETE, false, reason::PLANNING, "");
        self.condition(conditions::FAILED, false, reason::NO_FAILURE, "");
        let line = match self.single_pod_stage(
            Stage::Plan,
            (Phase::Planning, "planning chunks"),
            (reason::PLAN_FAILED, "planning"),
            |d| jobs::plan_job(&d.target(spec), run_id),
        ) {
            Ok(line) => line,
            Err(action) => return action,
        };
        let f = parse_fields(&line);
        let chunks = f.get("chunks").and_then(|c| c.parse::<i64>().ok());
        let (Some(chunks), Some(digest)) = (chunks, f.get("digest")) else {
            return self.fail(
                reason::BAD_RESULT,
                format!("the plan Job succeeded but its result is unreadable: {line:?}"),
            );
        };
        let plan = PlanStatus {
            run_id: f.get("run").cloned().unwrap_or_else(|| run_id.to_string()),
            digest: digest.clone(),
            chunks,
            spec_hash: names::spec_hash(spec),
        };
        let message = format!("{chunks} chunks, plan digest {}", short(digest));
        self.condition(conditions::PLANNED, true, reason::PLAN_STAGED, &message);
        self.st.chunks = Some(ChunkCounts {
            total: chunks,
            ..Default::default()
        });
        self.st.plan = Some(plan.clone());
        self.after_planning(spec, &plan)
    }

    /// A stage run by one pod (plan, assemble): creates its Job when missing, keeps the
    /// phase while it runs, fails the ReportJob with the pod's last error when it failed,
    /// and returns the pod's result line once it completed.
    fn single_pod_stage(
        &mut self,
        stage: Stage,
        (phase, doing): (Phase, &str),
        (failed_reason, what): (&str, &str),
        job: impl FnOnce(&Self) -> Job,
    ) -> Result<String, Action> {
        let Some(existing) = self.job(stage).cloned() else {
            self.set_phase(phase, doing);
            self.requeue = Some(RUNNING_RESYNC);
            return Err(Action::CreateJob(Box::new(job(self))));
        };
        match job_outcome(&existing) {
            JobOutcome::Running => {
                self.set_phase(phase, doing);
                self.watch_pods(stage);
                Err(Action::None)
            }
            JobOutcome::Failed { reason: r, message } => {
                let last = self.last_error(stage).unwrap_or(message);
                Err(self.fail(failed_reason, format!("{what} failed ({r}): {last}")))
            }
            JobOutcome::Complete => Ok(self.pod_message(stage).unwrap_or_default()),
        }
    }

    fn after_planning(&mut self, spec: &ReportJobSpec, plan: &PlanStatus) -> Action {
        let total = usize::try_from(plan.chunks).unwrap_or(0);
        let plan_ref = PlanRef {
            run_id: plan.run_id.clone(),
            digest: plan.digest.clone(),
        };
        let mut completed =
            parse_ranges(self.st.completed_chunks.as_deref().unwrap_or("")).unwrap_or_default();
        let chunks_job = self.job(Stage::Chunks).cloned();
        // Indexes of the chunks Job map to plan chunks through its chunk list.
        let listed = chunks_job
            .as_ref()
            .map(|job| {
                job.annotations()
                    .get(names::CHUNKS_ANNOTATION)
                    .and_then(|l| parse_ranges(l).ok())
                    .unwrap_or_else(|| (0..total).collect())
            })
            .unwrap_or_default();
        let to_plan = |ranges: Option<&String>| -> Vec<usize> {
            parse_ranges(ranges.map(String::as_str).unwrap_or(""))
                .unwrap_or_default()
                .into_iter()
                .filter_map(|i| listed.get(i).copied())
                .collect()
        };
        let job_status = chunks_job
            .as_ref()
            .and_then(|j| j.status.clone())
            .unwrap_or_default();
        completed.extend(to_plan(job_status.completed_indexes.as_ref()));
        completed.sort_unstable();
        completed.dedup();
        completed.retain(|&i| i < total);
        let failed = to_plan(job_status.failed_indexes.as_ref());
        self.st.completed_chunks = Some(compact_ranges(&completed));
        self.st.chunks = Some(ChunkCounts {
            total: plan.chunks,
            succeeded: i64::try_from(completed.len()).unwrap_or(i64::MAX),
            failed: i64::try_from(failed.len()).unwrap_or(i64::MAX),
            active: i64::from(job_status.active.unwrap_or(0)),
        });
        self.st.failed_chunks = (!failed.is_empty()).then(|| compact_ranges(&failed));

        if completed.len() < total {
            return self.exporting(spec, &plan_ref, chunks_job, &completed, &failed, total);
        }
        if self.has_condition(conditions::SUSPENDED) {
            self.condition(conditions::SUSPENDED, false, reason::RESUMED, "");
        }
        self.assembling(spec, &plan_ref)
    }

    fn exporting(
        &mut self,
        spec: &ReportJobSpec,
        plan: &PlanRef,
        job: Option<Job>,
        completed: &[usize],
        failed: &[usize],
        total: usize,
    ) -> Action {
        self.condition(conditions::COMPLETE, false, reason::EXPORTING, "");
        let suspend = self.rj().spec.suspend;
        let Some(job) = job else {
            let remaining: Vec<usize> = (0..total)
                .filter(|i| completed.binary_search(i).is_err())
                .collect();
            self.suspended_or_running(suspend, &remaining);
            self.requeue = Some(RUNNING_RESYNC);
            let mut spec = spec.clone();
            spec.suspend = suspend;
            return Action::CreateJob(Box::new(jobs::chunks_job(
                &self.target(&spec),
                plan,
                &remaining,
            )));
        };
        let outcome = job_outcome(&job);
        if !failed.is_empty() || matches!(outcome, JobOutcome::Failed { .. }) {
            let last = self.last_error(Stage::Chunks);
            let message = match (&outcome, failed.is_empty()) {
                (JobOutcome::Failed { reason: r, message }, true) => {
                    format!("the chunks Job failed ({r}): {message}")
                }
                _ => format!(
                    "chunks {} failed: {}",
                    compact_ranges(failed),
                    last.unwrap_or_else(|| "no error message".into())
                ),
            };
            let why = match &outcome {
                JobOutcome::Failed { reason: r, .. } if r == "DeadlineExceeded" => {
                    reason::DEADLINE_EXCEEDED
                }
                _ => reason::CHUNKS_FAILED,
            };
            return self.fail(why, message);
        }
        let job_suspended = job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);
        let remaining: Vec<usize> = (0..total)
            .filter(|i| completed.binary_search(i).is_err())
            .collect();
        self.suspended_or_running(suspend, &remaining);
        if job_suspended != suspend {
            return Action::SuspendChunks(suspend);
        }
        self.watch_pods(Stage::Chunks);
        if self.requeue.is_none() {
            self.requeue = Some(RUNNING_RESYNC);
        }
        Action::None
    }

    fn suspended_or_running(&mut self, suspend: bool, remaining: &[usize]) {
        if suspend {
            self.set_phase(
                Phase::Suspended,
                "suspended by spec.suspend; clear it to resume",
            );
            self.condition(
                conditions::SUSPENDED,
                true,
                reason::SUSPENDED,
                "spec.suspend is set",
            );
        } else {
            let c = self.st.chunks.clone().unwrap_or_default();
            self.set_phase(
                Phase::Running,
                format!(
                    "exporting chunks: {}/{} done, {} to go",
                    c.succeeded,
                    c.total,
                    remaining.len()
                ),
            );
            if self
                .st
                .conditions
                .iter()
                .any(|c| c.type_ == conditions::SUSPENDED)
            {
                self.condition(conditions::SUSPENDED, false, reason::RESUMED, "");
            }
        }
    }

    fn assembling(&mut self, spec: &ReportJobSpec, plan: &PlanRef) -> Action {
        self.condition(conditions::COMPLETE, false, reason::ASSEMBLING, "");
        let line = match self.single_pod_stage(
            Stage::Assemble,
            (Phase::Assembling, "assembling the report"),
            (reason::ASSEMBLE_FAILED, "assembly"),
            |d| jobs::assemble_job(&d.target(spec), plan),
        ) {
            Ok(line) => line,
            Err(action) => return action,
        };
        let Some(mut output) = parse_output(&line) else {
            return self.fail(
                reason::BAD_RESULT,
                format!("the assemble Job succeeded but its result is unreadable: {line:?}"),
            );
        };
        // The pod sees the claim at its mount point; users know it by its claim name.
        if let Some(pvc) = &spec.output.destination.pvc
            && let Some(rest) = output.location.strip_prefix(jobs::OUTPUT_MOUNT)
        {
            output.location = format!("pvc://{}/{}", pvc.claim_name, rest.trim_start_matches('/'));
        }
        let f = parse_fields(&line);
        if let Some(notified) = f.get("notified") {
            let ok = notified == "true";
            let why = f
                .get("notify_reason")
                .map_or("WebhookDelivered", String::as_str);
            self.condition(conditions::NOTIFIED, ok, why, &notified_message(ok, why));
        }
        self.st.rows = Some(output.rows);
        self.st.bytes = Some(output.bytes);
        let message = format!(
            "{} rows, {} bytes at {}",
            output.rows, output.bytes, output.location
        );
        self.st.output = Some(output);
        self.st.completion_time = Some(Time(self.o.now));
        self.set_phase(Phase::Succeeded, message.clone());
        self.condition(conditions::COMPLETE, true, reason::PUBLISHED, &message);
        self.condition(conditions::FAILED, false, reason::NO_FAILURE, "");
        self.finished()
    }

    /// A failed run that started (invalid specs create nothing): sends the failure
    /// notification through a `<name>-notify` Job when `spec.notify` asks for it, and
    /// records the outcome in the `Notified` condition.
    fn notify_failure(&mut self) -> Option<Action> {
        let notify = self.rj().spec.notify.as_ref()?;
        let started = self.st.plan.is_some() || self.job(Stage::Plan).is_some();
        if !started
            || !crate::notify::wants(notify.on, false)
            || self
                .st
                .conditions
                .iter()
                .any(|c| c.type_ == conditions::NOTIFIED)
        {
            return None;
        }
        let Some(job) = self.job(Stage::Notify).cloned() else {
            let spec = self
                .o
                .planned_spec
                .clone()
                .unwrap_or_else(|| self.rj().spec.clone());
            let message = self.st.message.clone().unwrap_or_default();
            let job = jobs::notify_job(&self.target(&spec), &names::run_id(self.rj()), &message);
            return Some(Action::CreateJob(Box::new(job)));
        };
        if job_outcome(&job) == JobOutcome::Running {
            self.requeue = Some(RUNNING_RESYNC);
            return Some(Action::None);
        }
        let line = self
            .pod_message(Stage::Notify)
            .or_else(|| self.last_error(Stage::Notify))
            .unwrap_or_default();
        let f = parse_fields(&line);
        let ok = f.get("notified").is_some_and(|n| n == "true");
        let why = if ok {
            "WebhookDelivered".to_string()
        } else {
            f.get("reason")
                .cloned()
                .unwrap_or_else(|| "NotifyFailed".into())
        };
        self.condition(conditions::NOTIFIED, ok, &why, &notified_message(ok, &why));
        None
    }

    /// A terminal ReportJob: delete it once `ttlSecondsAfterFinished` has passed.
    fn finished(&mut self) -> Action {
        let (Some(ttl), Some(done)) = (
            self.rj().spec.ttl_seconds_after_finished,
            self.st.completion_time.clone(),
        ) else {
            return Action::None;
        };
        let due = done.0.as_second().saturating_add(ttl);
        let left = due.saturating_sub(self.o.now.as_second());
        if left <= 0 {
            Action::DeleteReportJob
        } else {
            self.requeue = Some(Duration::from_secs(u64::try_from(left).unwrap_or(1)));
            Action::None
        }
    }

    /// The retry annotation changed on a failed ReportJob: delete the failed stage's Job so
    /// that it is created again (for chunks: only those not yet exported).
    fn retry(&mut self, token: Option<String>) -> Action {
        let failed_stage = [Stage::Plan, Stage::Chunks, Stage::Assemble]
            .into_iter()
            .find(|s| self.job(*s).is_some_and(job_failed));
        self.st.retry_token = token;
        self.st.failed_chunks = None;
        self.st.completion_time = None;
        if let Some(c) = self.st.chunks.as_mut() {
            c.failed = 0;
        }
        let message = match failed_stage {
            Some(Stage::Chunks) => "retrying the chunks not exported yet".to_string(),
            Some(stage) => format!("retrying the {} stage", stage.as_str()),
            None => "retrying".to_string(),
        };
        self.set_phase(Phase::Running, message.clone());
        self.condition(conditions::FAILED, false, reason::RETRYING, &message);
        // A new outcome gets a new notification.
        self.st
            .conditions
            .retain(|c| c.type_ != conditions::NOTIFIED);
        self.notes.push(normal(reason::RETRYING, "Retry", &message));
        let name = self.rj().name_any();
        let mut doomed: Vec<String> = failed_stage.iter().map(|s| s.job_name(&name)).collect();
        if self.job(Stage::Notify).is_some() {
            doomed.push(Stage::Notify.job_name(&name));
        }
        if doomed.is_empty() {
            Action::None
        } else {
            Action::DeleteJobs(doomed)
        }
    }

    fn deleting(&mut self) -> Action {
        let rj = self.rj();
        if !rj.finalizers().iter().any(|f| f == names::FINALIZER) {
            return Action::None;
        }
        let name = rj.name_any();
        let stages: Vec<String> = [Stage::Plan, Stage::Chunks, Stage::Assemble, Stage::Notify]
            .into_iter()
            .filter(|s| self.job(*s).is_some())
            .map(|s| s.job_name(&name))
            .collect();
        if !stages.is_empty() {
            // Stop every writer before removing what they write.
            return Action::DeleteJobs(stages);
        }
        let ever_started = self.st.plan.is_some() || self.st.start_time.is_some();
        match self.job(Stage::Cleanup).cloned() {
            None if ever_started => {
                let spec = self
                    .o
                    .planned_spec
                    .clone()
                    .unwrap_or_else(|| rj.spec.clone());
                let job = jobs::cleanup_job(&self.target(&spec), &names::run_id(rj));
                self.notes
                    .push(normal("CleaningUp", "Cleanup", "removing staging data"));
                Action::CreateJob(Box::new(job))
            }
            None => Action::RemoveFinalizer,
            Some(job) => match job_outcome(&job) {
                JobOutcome::Running => {
                    self.watch_pods(Stage::Cleanup);
                    Action::None
                }
                JobOutcome::Complete => Action::RemoveFinalizer,
                JobOutcome::Failed { message, .. } => {
                    let last = self.last_error(Stage::Cleanup).unwrap_or(message);
                    self.notes.push(warning(
                        "CleanupFailed",
                        "Cleanup",
                        &format!("staging data may be left behind: {last}"),
                    ));
                    Action::RemoveFinalizer
                }
            },
        }
    }

    /// Notes pods that cannot start (a missing Secret, an unknown image) in the message
    /// and as a warning, and looks again soon.
    fn watch_pods(&mut self, stage: Stage) {
        let stuck = self.o.pods.get(&stage).into_iter().flatten().find_map(|p| {
            p.waiting
                .clone()
                .filter(|(r, _)| r != "ContainerCreating")
                .map(|w| (p.name.clone(), w))
        });
        if let Some((pod, (why, text))) = stuck {
            let message = format!("pod {pod} cannot start: {why}: {text}");
            if self.st.message.as_deref() != Some(&message) {
                self.notes
                    .push(warning(reason::POD_CANNOT_START, "Reconcile", &message));
            }
            self.st.message = Some(message);
            self.requeue = Some(PENDING_POD_RESYNC);
        }
    }

    /// The termination message of a stage's succeeded pod.
    fn pod_message(&self, stage: Stage) -> Option<String> {
        self.o
            .pods
            .get(&stage)?
            .iter()
            .find(|p| p.phase == "Succeeded")
            .and_then(|p| p.message.clone())
    }

    /// The termination message of a stage's most recently failed pod.
    fn last_error(&self, stage: Stage) -> Option<String> {
        self.o
            .pods
            .get(&stage)?
            .iter()
            .filter(|p| p.phase == "Failed")
            .max_by_key(|p| p.finished_at)
            .and_then(|p| {
                p.message
                    .clone()
                    .or_else(|| p.exit_code.map(|c| format!("exit code {c}")))
            })
            .map(|m| m.trim().to_string())
    }
}

/// The assembler's result line as the status' output.
pub fn parse_output(line: &str) -> Option<OutputStatus> {
    let f = parse_fields(line);
    Some(OutputStatus {
        location: f.get("location")?.clone(),
        url: f.get("url").cloned(),
        url_expires_at: f
            .get("url_expires_at")
            .and_then(|t| t.parse::<Timestamp>().ok())
            .map(Time),
        rows: f.get("rows")?.parse().ok()?,
        bytes: f.get("bytes")?.parse().ok()?,
        sha256: f.get("sha256")?.clone(),
    })
}

/// Events for phase transitions.
fn phase_notes(old: &ReportJobStatus, new: &ReportJobStatus) -> Vec<Note> {
    if old.phase == new.phase {
        return Vec::new();
    }
    let message = new.message.clone().unwrap_or_default();
    match new.phase {
        Some(Phase::Planning) => vec![normal("Planning", "Plan", "created the plan Job")],
        Some(Phase::Running) => {
            let mut notes = Vec::new();
            if let Some(plan) = &new.plan
                && old.plan.is_none()
            {
                notes.push(normal(
                    reason::PLAN_STAGED,
                    "Plan",
                    &format!(
                        "{} chunks, plan digest {}",
                        plan.chunks,
                        short(&plan.digest)
                    ),
                ));
            }
            if old.phase == Some(Phase::Suspended) {
                notes.push(normal(reason::RESUMED, "Export", "resumed"));
            } else if old.phase != Some(Phase::Failed) {
                notes.push(normal("Exporting", "Export", "exporting chunks"));
            }
            notes
        }
        Some(Phase::Suspended) => vec![normal("Suspended", "Export", &message)],
        Some(Phase::Assembling) => vec![normal(
            "Assembling",
            "Assemble",
            "all chunks exported; assembling",
        )],
        Some(Phase::Succeeded) => vec![normal("Completed", "Assemble", &message)],
        Some(Phase::Failed) => {
            let reason = new
                .conditions
                .iter()
                .find(|c| c.type_ == conditions::FAILED)
                .map(|c| c.reason.clone())
                .unwrap_or_else(|| "Failed".into());
            if reason == conditions::REASON_INVALID_SPEC {
                Vec::new() // noted once by the validation
            } else {
                vec![Note {
                    warning: true,
                    reason,
                    action: "Reconcile",
                    message,
                }]
            }
        }
        Some(Phase::Pending) | None => Vec::new(),
    }
}

fn normal(reason: &str, action: &'static str, message: &str) -> Note {
    Note {
        warning: false,
        reason: reason.to_string(),
        action,
        message: message.to_string(),
    }
}

fn warning(reason: &str, action: &'static str, message: &str) -> Note {
    Note {
        warning: true,
        reason: reason.to_string(),
        action,
        message: message.to_string(),
    }
}

fn notified_message(ok: bool, why: &str) -> String {
    if ok {
        "the webhook accepted the notification".to_string()
    } else {
        format!("the notification was not delivered ({why}); the report itself is unaffected")
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}
