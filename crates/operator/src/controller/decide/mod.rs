//! The reconciler's decisions, as pure functions: from what was observed (the ReportJob,
//! its Jobs and, when needed, their pods) to the one next action, the status to write and
//! the events to record. The stage progression (plan, chunks, assemble) is in
//! [`stages`]; the lifecycle around it (validation, retry, failure notification, TTL,
//! deletion) is here.

mod snapshot;
mod stages;
#[cfg(test)]
mod tests;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use super::database::Standing;
use super::events::{EventNote, action, notified_message, phase_notes};
use super::job_state::{JobOutcome, job_outcome};
use super::jobs::{self, JobContext, PodDefaults};
use super::names::{self, Stage};
use super::observe::{self, Observed, PlannedSpec, PodInfo, job_failed};
use super::run_queue::{QUEUED_RESYNC, RunSlot};
use reportjob_core::api::conditions::{self, reason, set_condition};
use reportjob_core::api::validate::{FieldError, validate};
use reportjob_core::api::{Phase, ReportJob, ReportJobStatus, ValidSpec};
use reportjob_core::stage_protocol::{ChunkSet, StageResult};

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
    /// Raise `spec.parallelism` of the chunks Job to this grant of the namespace's chunk
    /// pod budget.
    SetParallelism(u32),
    /// Delete these Jobs (and their pods) in the foreground.
    DeleteJobs(Vec<String>),
    /// Remove the finalizer: the ReportJob may go.
    RemoveFinalizer,
    /// Delete the ReportJob: `ttlSecondsAfterFinished` has passed.
    DeleteReportJob,
}

impl Action {
    /// A one-line description for logs.
    pub fn describe(&self) -> String {
        match self {
            Action::None => "none".into(),
            Action::AddFinalizer => "add finalizer".into(),
            Action::CreateJob(job) => format!("create Job {}", job.name_any()),
            Action::SuspendChunks(s) => format!("set suspend={s} on the chunks Job"),
            Action::SetParallelism(n) => format!("set parallelism={n} on the chunks Job"),
            Action::DeleteJobs(names) => format!("delete Jobs {}", names.join(", ")),
            Action::RemoveFinalizer => "remove finalizer".into(),
            Action::DeleteReportJob => "delete the ReportJob (ttl)".into(),
        }
    }
}

/// The outcome of one reconcile decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// What to do.
    pub action: Action,
    /// The status to write (written only when it differs from the current one).
    pub status: ReportJobStatus,
    /// Events to record.
    pub notes: Vec<EventNote>,
    /// When to look again if nothing else happens.
    pub requeue: Option<Duration>,
}

/// How often a running ReportJob is looked at even without changes (pods are not watched).
pub const RUNNING_RESYNC: Duration = Duration::from_secs(10);
/// How soon a ReportJob with a pod that cannot start is looked at again.
pub const PENDING_POD_RESYNC: Duration = Duration::from_secs(3);
/// How soon to look again while a Job of the same name is still going away.
pub const TERMINATING_RESYNC: Duration = Duration::from_secs(1);

/// Decides the next step. `defaults` are the controller's pod defaults.
pub fn decide(o: &Observed, defaults: &PodDefaults) -> Step {
    let rj = &o.rj;
    let old = rj.status.clone().unwrap_or_default();
    let mut st = old.clone();
    st.observed_generation = rj.metadata.generation;
    let mut d = Decision {
        o,
        defaults,
        st,
        notes: Vec::new(),
        requeue: None,
        snapshot_generation: None,
    };
    let mut action = d.next_action();
    // Throttling is about chunks starting: a run past exporting (or paused) is not throttled.
    if d.st.phase != Some(Phase::Running) && d.has_condition(conditions::THROTTLED) {
        d.condition(conditions::THROTTLED, false, reason::DATABASE_QUIET, "");
    }
    // Under one snapshot, the plan, chunks and assemble pods read the current generation's.
    if let (Some(generation), Action::CreateJob(job)) = (d.snapshot_generation, &mut action) {
        let stage = job
            .labels()
            .get(names::STAGE_LABEL)
            .and_then(|s| Stage::parse(s));
        if matches!(stage, Some(Stage::Plan | Stage::Chunks | Stage::Assemble)) {
            jobs::read_snapshot(job, generation);
        }
    }
    let Decision {
        mut st,
        mut notes,
        mut requeue,
        ..
    } = d;
    let active = !st.phase.is_some_and(Phase::is_terminal);
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

/// One decision in the making: what was observed, and the status, events and requeue
/// decided so far.
struct Decision<'a> {
    o: &'a Observed,
    defaults: &'a PodDefaults,
    st: ReportJobStatus,
    notes: Vec<EventNote>,
    requeue: Option<Duration>,
    /// The generation of the run's snapshot, when the run reads one.
    snapshot_generation: Option<u32>,
}

impl<'a> Decision<'a> {
    fn rj(&self) -> &'a ReportJob {
        &self.o.rj
    }

    fn job(&self, stage: Stage) -> Option<&'a Job> {
        self.o.jobs.get(&stage)
    }

    fn job_context<'b>(&'b self, spec: &'b ValidSpec) -> JobContext<'b> {
        JobContext {
            rj: &self.o.rj,
            spec,
            defaults: self.defaults,
        }
    }

    /// The spec to build Jobs from after planning: the planned one when it can be read,
    /// else the current one when it is valid.
    fn planned_or_current(&self) -> Option<ValidSpec> {
        self.o
            .planned()
            .cloned()
            .or_else(|| validate(&self.rj().spec).ok())
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

    fn has_condition_type(&self, type_: &str) -> bool {
        self.st.conditions.iter().any(|c| c.type_ == type_)
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
            self.requeue = Some(TERMINATING_RESYNC);
            return Action::None;
        }
        if rj.metadata.deletion_timestamp.is_some() {
            return self.deleting();
        }
        if !rj.finalizers().iter().any(|f| f == names::FINALIZER) {
            if self.st.phase.is_none() {
                self.set_phase(Phase::Pending, "accepted");
            }
            // Queued in the same status write as the acceptance.
            self.held_back();
            return Action::AddFinalizer;
        }
        let cancel_asked = rj.annotations().contains_key(names::CANCEL_ANNOTATION);
        if self.st.phase == Some(Phase::Cancelled)
            || (cancel_asked && !self.st.phase.is_some_and(Phase::is_terminal))
        {
            return self.cancelled();
        }
        let started = self.st.plan.is_some() || self.job(Stage::Plan).is_some();
        if !started && let Some(action) = self.invalid_spec() {
            return action;
        }
        if self.st.phase.is_some_and(Phase::is_terminal)
            && let Some(action) = self.release_snapshot()
        {
            return action;
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
            if self.held_back() {
                return Action::None;
            }
            if self.has_condition(conditions::QUEUED) {
                self.condition(conditions::QUEUED, false, reason::ADMITTED, "");
            }
            self.st.start_time = Some(Time(self.o.now));
        }
        let spec = match self.run_spec() {
            Ok(spec) => spec,
            Err(action) => return action,
        };
        let run_id = names::run_id(rj);
        if let Some(action) = self.snapshot_holder(&spec, &run_id) {
            return action;
        }
        match self.st.plan.clone() {
            None => self.planning(&spec, &run_id),
            Some(plan) => self.after_planning(&spec, &plan),
        }
    }

    /// Why the run caps hold this run back, if they do: the message and the reason.
    fn queued(&self) -> Option<(String, &'static str)> {
        if let Standing::Unavailable { name, why } = &self.o.database.standing {
            return Some((
                format!("queued: waiting for database {name}: {why}"),
                reason::DATABASE_UNAVAILABLE,
            ));
        }
        match &self.o.run_slot {
            RunSlot::Admitted => None,
            RunSlot::Queued { limit, .. } => Some((
                format!(
                    "queued: {limit} runs are in flight, as many as the controller runs at once \
                     (--max-concurrent-runs); this one starts when one of them ends (within a \
                     namespace in creation order; the namespaces with fewest runs in flight first)"
                ),
                reason::RUN_LIMIT_REACHED,
            )),
            RunSlot::NamespaceFull { limit } => Some((
                format!(
                    "queued: {limit} runs of this namespace are in flight, as many as one \
                     namespace runs at once (--max-concurrent-runs-per-namespace); this one \
                     starts when one of them ends"
                ),
                reason::NAMESPACE_RUN_LIMIT_REACHED,
            )),
            // Without its place in the queue: the text stays the same while it waits (a
            // queue of hundreds would otherwise write every status each time one starts).
            RunSlot::DatabaseSnapshots {
                database, limit, ..
            } => Some((
                format!(
                    "queued: waiting for database {database}: {limit}/{limit} snapshot sessions \
                     in use (maxSnapshots); this run starts when one of them ends (the \
                     namespaces with fewest such runs first)"
                ),
                reason::DATABASE_SNAPSHOTS,
            )),
        }
    }

    /// The reason of the `Queued` condition when it is true.
    fn queued_reason(&self) -> Option<&str> {
        self.st
            .conditions
            .iter()
            .find(|c| c.type_ == conditions::QUEUED && c.status == "True")
            .map(|c| c.reason.as_str())
    }

    /// Sets the `Queued` condition; the first time a run waits for its ReportDatabase (for
    /// this reason) is also an Event.
    fn queue(&mut self, why: &str, message: &str) {
        let database_reasons = [
            reason::DATABASE_BUDGET,
            reason::DATABASE_SNAPSHOTS,
            reason::DATABASE_UNAVAILABLE,
        ];
        if database_reasons.contains(&why) && self.queued_reason() != Some(why) {
            self.notes.push(EventNote::normal(
                reason::WAITING_FOR_DATABASE,
                action::EXPORT,
                message,
            ));
        }
        self.condition(conditions::QUEUED, true, why, message);
    }

    /// A run not started yet that the controller's run caps hold back: it waits in phase
    /// `Pending` with the condition `Queued` (the text stays the same while it waits, so
    /// waiting writes no status); `true` when held back.
    fn held_back(&mut self) -> bool {
        let Some((message, why)) = self.queued() else {
            return false;
        };
        self.set_phase(Phase::Pending, message.clone());
        self.queue(why, &message);
        self.requeue = Some(QUEUED_RESYNC);
        true
    }

    /// A suspended run asked to resume that the run caps hold back: it stays `Suspended`
    /// (its chunks Job too) with the condition `Queued`; `true` when held back.
    pub(super) fn resume_held_back(&mut self) -> bool {
        let Some((message, why)) = self.queued() else {
            return false;
        };
        let message = format!("resuming when a run slot frees: {message}");
        self.set_phase(Phase::Suspended, message.clone());
        self.queue(why, &message);
        self.requeue = Some(QUEUED_RESYNC);
        true
    }

    /// Before anything started: an invalid spec is Failed (until it is fixed) and creates
    /// nothing; a fixed one clears the failure.
    fn invalid_spec(&mut self) -> Option<Action> {
        let mut errors = match validate(&self.rj().spec) {
            Ok(spec) => super::policy::check(&spec, &self.defaults.policy),
            Err(errors) => errors,
        };
        // A name the CRD's rule would refuse (a ReportJob created before it existed): its
        // Jobs' names and labels would not fit.
        if let Err(m) = names::check_reportjob_name(&self.rj().name_any()) {
            errors.insert(
                0,
                reportjob_core::api::validate::FieldError::new("metadata.name", &m),
            );
        }
        // A ReportDatabase that does not select the namespace: failed until the platform
        // team selects it (or the spec names another).
        if let Standing::NotAllowed { why, .. } = &self.o.database.standing {
            errors.push(reportjob_core::api::validate::FieldError::new(
                "spec.source.database.name",
                why,
            ));
        }
        if errors.is_empty() {
            let was_invalid = self.st.conditions.iter().any(|c| {
                c.type_ == conditions::FAILED
                    && c.status == "True"
                    && c.reason == reason::INVALID_SPEC
            });
            if was_invalid {
                // It was invalid and has been fixed. (Only that failure: a run that failed
                // before its plan existed, e.g. StartTimeout, whose Jobs are gone, stays
                // failed.)
                self.condition(conditions::FAILED, false, reason::NO_FAILURE, "");
                self.st.phase = None;
            }
            return None;
        }
        let message = format!("invalid spec: {}", joined(&errors));
        if self.st.message.as_deref() != Some(&message) {
            self.notes.push(EventNote::warning(
                reason::INVALID_SPEC,
                action::VALIDATE,
                &message,
            ));
        }
        self.st.completion_time = None;
        self.set_phase(Phase::Failed, message.clone());
        self.condition(conditions::FAILED, true, reason::INVALID_SPEC, &message);
        self.condition(
            conditions::COMPLETE,
            false,
            reason::INVALID_SPEC,
            "the spec is invalid",
        );
        Some(Action::None)
    }

    /// The spec a run is planned with is the spec it finishes with: when the ReportJob's
    /// spec changed after planning, the planned one (recorded on the plan Job) is used.
    fn run_spec(&mut self) -> Result<ValidSpec, Action> {
        let rj = self.rj();
        let current = names::spec_hash(&rj.spec);
        let changed = self
            .st
            .plan
            .as_ref()
            .is_some_and(|plan| !plan.spec_hash.is_empty() && plan.spec_hash != current);
        if !changed {
            if self.has_condition_type(conditions::SPEC_CHANGE_IGNORED) {
                self.condition(
                    conditions::SPEC_CHANGE_IGNORED,
                    false,
                    reason::SPEC_UNCHANGED,
                    "",
                );
            }
            // Valid when planning started; a newer controller may have tightened the rules.
            return validate(&rj.spec).map_err(|errors| {
                self.fail(
                    reason::INVALID_SPEC,
                    format!("invalid spec: {}", joined(&errors)),
                )
            });
        }
        match self.o.planned_spec.clone() {
            PlannedSpec::Recorded(spec) => {
                self.condition(
                    conditions::SPEC_CHANGE_IGNORED,
                    true,
                    reason::SPEC_CHANGED,
                    "spec.source, chunking, output and worker cannot change once planning \
                     started; the run goes on with the planned spec (create a new ReportJob \
                     for the new spec)",
                );
                Ok(*spec)
            }
            PlannedSpec::NoPlanJob => Err(self.fail(
                reason::SPEC_CHANGED,
                "the spec changed after planning started and the planned spec is gone \
                 (the plan Job was deleted); create a new ReportJob"
                    .into(),
            )),
            PlannedSpec::Unreadable(why) => Err(self.fail(
                reason::PLANNED_SPEC_UNREADABLE,
                format!(
                    "the spec changed after planning started and the planned spec cannot be \
                     read: {why}; create a new ReportJob"
                ),
            )),
        }
    }

    /// A failed run that started (invalid specs create nothing): sends the failure
    /// notification through a `<name>-notify` Job when `spec.notify` asks for it, and
    /// records the outcome in the `Notified` condition.
    fn notify_failure(&mut self) -> Option<Action> {
        let notify = self.rj().spec.notify.as_ref()?;
        let started = self.st.plan.is_some() || self.job(Stage::Plan).is_some();
        if !started || !notify.when.wants(false) || self.has_condition_type(conditions::NOTIFIED) {
            return None;
        }
        let Some(job) = self.job(Stage::Notify) else {
            // Without a valid spec there is no Job to build; the failure stands un-notified.
            let spec = self.planned_or_current()?;
            let message = self.st.message.clone().unwrap_or_default();
            let job = jobs::notify_job(
                &self.job_context(&spec),
                &names::run_id(self.rj()),
                &message,
            );
            return Some(Action::CreateJob(Box::new(job)));
        };
        if job_outcome(job) == JobOutcome::Running {
            self.requeue = Some(RUNNING_RESYNC);
            return Some(Action::None);
        }
        let line = self
            .pod_message(Stage::Notify)
            .or_else(|| self.pod_failure(Stage::Notify))
            .unwrap_or_default();
        let (ok, why) = match StageResult::parse(&line) {
            Ok(StageResult::Notified(report)) => {
                (report.delivered, report.condition_reason().to_string())
            }
            _ => (false, reason::NOTIFY_FAILED.to_string()),
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
        // Damaged parts were deleted by the assembly: those chunks are exported again (a new
        // chunks Job for exactly them), then the report is assembled again.
        let damaged = if failed_stage == Some(Stage::Assemble) {
            self.damaged_chunks()
        } else {
            None
        };
        // Under one snapshot, the failed run's snapshot is gone (its holder was deleted): a
        // retry takes a new one, whatever stage failed. The plan too: its pod would otherwise
        // read the old generation's staged record, whose exporting session is gone, and fail
        // with the import error instead of its own cause. Every chunk is exported again
        // under the new snapshot, never joining parts of two.
        let new_snapshot = self
            .planned_or_current()
            .is_some_and(|s| s.source.consistency == reportjob_core::api::Consistency::Snapshot);
        let damaged = if new_snapshot { None } else { damaged };
        if new_snapshot {
            self.next_snapshot();
        }
        self.st.retry_token = token;
        self.st.failed_chunks = None;
        self.st.completion_time = None;
        if let Some(c) = self.st.chunks.as_mut() {
            c.failed = 0;
        }
        let message = match (failed_stage, &damaged) {
            _ if new_snapshot && self.st.plan.is_none() => {
                "retrying the plan under a new database snapshot".to_string()
            }
            _ if new_snapshot => {
                "retrying under a new database snapshot: every chunk is exported again".to_string()
            }
            (_, Some(damaged)) => {
                format!("re-exporting the damaged chunks {damaged}, then assembling again")
            }
            (Some(Stage::Chunks), _) => "retrying the chunks not exported yet".to_string(),
            (Some(stage), _) => format!("retrying the {} stage", stage.as_str()),
            (None, _) => "retrying".to_string(),
        };
        self.set_phase(Phase::Running, message.clone());
        self.condition(conditions::FAILED, false, reason::RETRYING, &message);
        // A new outcome gets a new notification.
        self.st
            .conditions
            .retain(|c| c.type_ != conditions::NOTIFIED);
        self.notes
            .push(EventNote::normal(reason::RETRYING, action::RETRY, &message));
        let name = self.rj().name_any();
        let mut doomed: Vec<String> = failed_stage.iter().map(|s| s.job_name(&name)).collect();
        if let Some(damaged) = &damaged {
            let total = self
                .st
                .plan
                .as_ref()
                .and_then(|p| usize::try_from(p.chunks).ok())
                .unwrap_or(0);
            let recorded = self.st.completed_chunks.as_deref().unwrap_or("");
            let completed = ChunkSet::parse(recorded, total).unwrap_or_default();
            self.st.completed_chunks = Some(completed.without(damaged).to_string());
            if let Some(c) = self.st.chunks.as_mut() {
                c.succeeded = i64::try_from(total - damaged.len().min(total)).unwrap_or(0);
            }
            doomed.push(Stage::Chunks.job_name(&name));
        }
        if new_snapshot && failed_stage != Some(Stage::Chunks) && self.job(Stage::Chunks).is_some()
        {
            doomed.push(Stage::Chunks.job_name(&name));
        }
        if self.job(Stage::Notify).is_some() {
            doomed.push(Stage::Notify.job_name(&name));
        }
        if doomed.is_empty() {
            Action::None
        } else {
            Action::DeleteJobs(doomed)
        }
    }

    /// `reportjob cancel` ended the run: phase `Cancelled` at once, then every stage Job
    /// stopped (the snapshot holder's too, which releases the snapshot), then the staging
    /// data removed by a cleanup Job (never the report: a cancelled run published none),
    /// recorded in the `StagingRemoved` condition. The ReportJob stays for the record until
    /// `ttlSecondsAfterFinished` or a delete.
    fn cancelled(&mut self) -> Action {
        if self.st.phase != Some(Phase::Cancelled) {
            let message = "cancelled by `reportjob cancel`: its pods are stopped, its snapshot \
                           released and its staging data removed";
            self.set_phase(Phase::Cancelled, message);
            self.condition(
                conditions::COMPLETE,
                false,
                reason::CANCELLED,
                "the ReportJob was cancelled",
            );
            if self.has_condition(conditions::QUEUED) {
                self.condition(conditions::QUEUED, false, reason::CANCELLED, "");
            }
            if self.st.completion_time.is_none() {
                self.st.completion_time = Some(Time(self.o.now));
            }
        }
        let running = self.stage_jobs();
        if !running.is_empty() {
            // Stop every writer before removing what they write.
            return Action::DeleteJobs(running);
        }
        if self.has_condition_type(conditions::STAGING_REMOVED) {
            return self.finished();
        }
        let ever_started = self.st.plan.is_some() || self.st.start_time.is_some();
        if !ever_started {
            self.condition(
                conditions::STAGING_REMOVED,
                true,
                reason::STAGING_REMOVED,
                "the run had not started: nothing was staged",
            );
            return self.finished();
        }
        match self.job(Stage::Cleanup) {
            None => match self.planned_or_current() {
                Some(spec) => {
                    let job =
                        jobs::cleanup_job(&self.job_context(&spec), &names::run_id(self.rj()));
                    self.notes.push(EventNote::cleaning_up());
                    Action::CreateJob(Box::new(job))
                }
                None => {
                    let why = "there is no valid spec to build the cleanup Job from";
                    self.condition(
                        conditions::STAGING_REMOVED,
                        false,
                        reason::CLEANUP_FAILED,
                        why,
                    );
                    self.notes.push(EventNote::cleanup_failed(why));
                    self.finished()
                }
            },
            Some(job) => match job_outcome(job) {
                JobOutcome::Running => {
                    let _ = self.watch_pods(Stage::Cleanup, None);
                    self.requeue = Some(RUNNING_RESYNC);
                    Action::None
                }
                JobOutcome::Complete => {
                    self.condition(
                        conditions::STAGING_REMOVED,
                        true,
                        reason::STAGING_REMOVED,
                        "the run's staging data was removed",
                    );
                    self.finished()
                }
                JobOutcome::Failed { message, .. } => {
                    let last = self.pod_failure(Stage::Cleanup).unwrap_or(message);
                    self.condition(
                        conditions::STAGING_REMOVED,
                        false,
                        reason::CLEANUP_FAILED,
                        &last,
                    );
                    self.notes.push(EventNote::cleanup_failed(&last));
                    self.finished()
                }
            },
        }
    }

    /// The names of the stage Jobs that exist (every stage but the cleanup): what a cancel or
    /// a delete stops before staging data is removed.
    fn stage_jobs(&self) -> Vec<String> {
        let name = self.rj().name_any();
        [
            Stage::Plan,
            Stage::Chunks,
            Stage::Assemble,
            Stage::Notify,
            Stage::Snapshot,
        ]
        .into_iter()
        .filter(|s| self.job(*s).is_some())
        .map(|s| s.job_name(&name))
        .collect()
    }

    /// The ReportJob is being deleted: stop every stage Job, then remove staging data with
    /// a cleanup Job, then release the finalizer.
    fn deleting(&mut self) -> Action {
        let rj = self.rj();
        if !rj.finalizers().iter().any(|f| f == names::FINALIZER) {
            return Action::None;
        }
        let stages = self.stage_jobs();
        if !stages.is_empty() {
            // Stop every writer before removing what they write.
            return Action::DeleteJobs(stages);
        }
        let ever_started = self.st.plan.is_some() || self.st.start_time.is_some();
        match self.job(Stage::Cleanup) {
            None if ever_started => match self.planned_or_current() {
                Some(spec) => {
                    let job = jobs::cleanup_job(&self.job_context(&spec), &names::run_id(rj));
                    self.notes.push(EventNote::cleaning_up());
                    Action::CreateJob(Box::new(job))
                }
                None => {
                    self.notes.push(EventNote::cleanup_failed(
                        "there is no valid spec to build the cleanup Job from (the current \
                         spec is invalid and the planned one cannot be read)",
                    ));
                    Action::RemoveFinalizer
                }
            },
            None => Action::RemoveFinalizer,
            Some(job) => match job_outcome(job) {
                JobOutcome::Running => {
                    // No start timeout: the finalizer waits for the cleanup (deleting the
                    // ReportJob again is how a user gives up on it).
                    let _ = self.watch_pods(Stage::Cleanup, None);
                    Action::None
                }
                JobOutcome::Complete => Action::RemoveFinalizer,
                JobOutcome::Failed { message, .. } => {
                    let last = self.pod_failure(Stage::Cleanup).unwrap_or(message);
                    self.notes.push(EventNote::cleanup_failed(&last));
                    Action::RemoveFinalizer
                }
            },
        }
    }

    /// Notes why a stage's pods do not run (a Job that cannot create them, e.g. for a
    /// ResourceQuota; a pod that cannot start, e.g. a missing Secret or an image that cannot
    /// be pulled) in the message and as a warning, and looks again soon. With a
    /// `start_timeout`, a stage that has had no running pod for that long fails the run with
    /// `StartTimeout`, and its Job is deleted so that its pods stop retrying.
    fn watch_pods(&mut self, stage: Stage, start_timeout: Option<Duration>) -> Option<Action> {
        let job = self.job(stage)?;
        let pods = self.o.pods.get(&stage).map_or(&[][..], Vec::as_slice);
        let created = self.o.create_failures.get(&stage).map(|why| {
            (
                reason::CANNOT_CREATE_PODS,
                format!("the {} Job cannot create pods: {why}", stage.as_str()),
            )
        });
        let waiting = pods.iter().find_map(|p| {
            p.waiting
                .clone()
                .filter(|(r, _)| r != "ContainerCreating")
                .map(|(why, text)| {
                    (
                        reason::POD_CANNOT_START,
                        format!("pod {} cannot start: {why}: {text}", p.name),
                    )
                })
        });
        let why = created.or(waiting);
        if let Some((reason, message)) = &why {
            if self.st.message.as_deref() != Some(message) {
                self.notes
                    .push(EventNote::warning(reason, action::RECONCILE, message));
            }
            self.st.message = Some(message.clone());
            self.requeue = Some(PENDING_POD_RESYNC);
        }
        let since = not_running_since(job, pods)?;
        if observe::lacks_pods(job) {
            // Pods may simply not be created yet; their events are read again soon.
            self.requeue = Some(PENDING_POD_RESYNC);
        }
        let limit = start_timeout?;
        let waited = self.o.now.duration_since(since);
        let limit_signed =
            jiff::SignedDuration::try_from(limit).unwrap_or(jiff::SignedDuration::MAX);
        if waited < limit_signed {
            let left = limit_signed - waited;
            let left = Duration::try_from(left).unwrap_or(limit);
            self.requeue = Some(self.requeue.unwrap_or(RUNNING_RESYNC).min(left));
            return None;
        }
        let last = why.map_or_else(
            || "no pod was created and no reason was reported".to_string(),
            |(_, message)| message,
        );
        // The run failed: every stage Job still running stops (their pods would go on
        // retrying, or holding a snapshot).
        let running: Vec<String> = self
            .o
            .jobs
            .values()
            .filter(|j| job_outcome(j) == JobOutcome::Running)
            .map(ResourceExt::name_any)
            .collect();
        let action = Action::DeleteJobs(running);
        self.fail(
            reason::START_TIMEOUT,
            format!(
                "no pod of the {} Job ran for {}s (spec.worker.startTimeoutSeconds): {last}",
                stage.as_str(),
                limit.as_secs()
            ),
        );
        Some(action)
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

    /// The chunks the failed assemble pod deleted as damaged (its typed result), bounded by
    /// the plan.
    fn damaged_chunks(&self) -> Option<ChunkSet> {
        let total = usize::try_from(self.st.plan.as_ref()?.chunks).ok()?;
        if !self.job(Stage::Assemble).is_some_and(job_failed) {
            return None;
        }
        self.last_failed_pod(Stage::Assemble)
            .and_then(|p| p.message.as_deref())
            .and_then(|m| StageResult::damaged_chunks(m, total))
    }

    /// A stage's most recently failed pod.
    fn last_failed_pod(&self, stage: Stage) -> Option<&'a PodInfo> {
        self.o
            .pods
            .get(&stage)?
            .iter()
            .filter(|p| p.phase == "Failed")
            .max_by_key(|p| p.finished_at)
    }

    /// The exit code of a stage's most recently failed pod.
    fn last_exit_code(&self, stage: Stage) -> Option<i32> {
        self.last_failed_pod(stage).and_then(|p| p.exit_code)
    }

    /// What a stage's most recently failed pod said: the message of its `Failed` result,
    /// the text the kubelet kept (a crash), or its exit code.
    fn pod_failure(&self, stage: Stage) -> Option<String> {
        self.last_failed_pod(stage)
            .and_then(|p| {
                p.message
                    .as_deref()
                    .map(StageResult::failure_text)
                    .or_else(|| p.exit_code.map(|c| format!("exit code {c}")))
            })
            .map(|m| m.trim().to_string())
    }
}

/// Since when a running stage Job has had no running pod, or `None` while one runs (or
/// the Job is suspended or finished): the later of the Job's creation and the end of its
/// last finished pod. A Job whose every active pod is ready has running pods (its pods were
/// not read).
fn not_running_since(job: &Job, pods: &[PodInfo]) -> Option<jiff::Timestamp> {
    if job_outcome(job) != JobOutcome::Running
        || job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false)
    {
        return None;
    }
    let status = job.status.clone().unwrap_or_default();
    let active = status.active.unwrap_or(0);
    if active > 0 && status.ready.unwrap_or(0) >= active {
        return None;
    }
    if pods.iter().any(|p| p.phase == "Running") {
        return None;
    }
    let created = job.metadata.creation_timestamp.as_ref()?.0;
    Some(
        pods.iter()
            .filter_map(|p| p.finished_at)
            .fold(created, std::cmp::max),
    )
}

/// Validation errors as one line.
fn joined(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
