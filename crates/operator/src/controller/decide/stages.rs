//! The stage progression of a run: the plan Job, the chunks Job (with suspend, resume
//! and retried chunks) and the assemble Job, each read back through its pod's
//! [`StageResult`].

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::{Action, Decision, RUNNING_RESYNC};
use crate::controller::database::Standing;
use crate::controller::events::{EventNote, action, notified_message, plan_summary};
use crate::controller::job_state::{JobOutcome, job_outcome};
use crate::controller::jobs::{self, PlanRef};
use crate::controller::names::{self, Stage};
use crate::controller::results;
use reportjob_core::api::conditions::{self, reason};
use reportjob_core::api::{ChunkCounts, Consistency, Phase, PlanStatus, ValidSpec};
use reportjob_core::stage_protocol::{ChunkSet, EXIT_THROTTLED, MAX_CHUNKS, StageResult};

/// A Job controller's failure reason, for people.
fn job_failure_in_words(reason: &str) -> &'static str {
    match reason {
        "DeadlineExceeded" => "it ran past its deadline",
        "BackoffLimitExceeded" | "MaxFailedIndexesExceeded" => "its pods failed too often",
        "PodFailurePolicy" => "its pod failed",
        _ => "its Job failed",
    }
}

/// How many times a stage runs again after its Job counted a pod it did not build.
pub const MAX_FOREIGN_RERUNS: u32 = 3;

impl Decision<'_> {
    /// The status of a run that is planning (its snapshot holder, then its plan Job).
    pub(super) fn planning_status(&mut self) {
        self.condition(
            conditions::PLANNED,
            false,
            reason::PLANNING,
            "the plan Job is running",
        );
        self.condition(conditions::COMPLETE, false, reason::PLANNING, "");
        self.condition(conditions::FAILED, false, reason::NO_FAILURE, "");
        self.set_phase(Phase::Planning, "planning chunks");
    }

    pub(super) fn planning(&mut self, spec: &ValidSpec, run_id: &str) -> Action {
        self.planning_status();
        let line = match self.single_pod_stage(
            Stage::Plan,
            (Phase::Planning, "planning chunks"),
            (reason::PLAN_FAILED, "planning"),
            spec.worker.start_timeout,
            |d| jobs::plan_job(&d.job_context(spec), run_id),
        ) {
            Ok(line) => line,
            Err(action) => return action,
        };
        let (checked, warnings) = match StageResult::parse(&line) {
            Ok(StageResult::Planned {
                run_id: planned_run,
                chunks,
                digest,
                warnings,
                ..
            }) => match results::planned(&planned_run, chunks, &digest, run_id) {
                Ok(checked) => (checked, warnings),
                Err(why) => return self.refused_result("plan", &why),
            },
            other => return self.bad_result("plan", &line, other),
        };
        let chunks = checked.chunks;
        let plan = PlanStatus {
            run_id: checked.run_id,
            chunks,
            spec_hash: names::spec_hash(spec.written()),
            digest: checked.digest,
        };
        let mut message = plan_summary(chunks, &plan.digest);
        if let Some(warning) = privilege_warning(&warnings) {
            self.notes.push(EventNote::warning(
                reason::EXCESS_PRIVILEGES,
                action::PLAN,
                &warning,
            ));
            message = format!("{message}; warning: {warning}");
        }
        self.condition(conditions::PLANNED, true, reason::PLAN_STAGED, &message);
        self.st.chunks = Some(ChunkCounts {
            total: chunks,
            ..Default::default()
        });
        self.st.plan = Some(plan.clone());
        self.after_planning(spec, &plan)
    }

    /// Fails the ReportJob for a stage whose Job succeeded with a result that is not the
    /// one expected.
    fn bad_result(
        &mut self,
        stage: &str,
        line: &str,
        parsed: Result<StageResult, reportjob_core::stage_protocol::ProtocolError>,
    ) -> Action {
        let why = match parsed {
            Ok(other) => format!("a {} result", other.kind()),
            Err(e) => e.to_string(),
        };
        let shown: String = line.chars().take(500).collect();
        self.fail(
            reason::BAD_RESULT,
            format!("the {stage} Job succeeded but its result is unreadable ({why}): {shown:?}"),
        )
    }

    /// A result that parsed but does not fit this run (another run id, a report somewhere
    /// else, a link to another host): refused, and nothing of it reaches the status.
    fn refused_result(&mut self, stage: &str, why: &str) -> Action {
        self.fail(
            reason::BAD_RESULT,
            format!("the {stage} Job succeeded but its result was refused: {why}"),
        )
    }

    /// A stage run by one pod (plan, assemble): creates its Job when missing, keeps the
    /// phase while it runs, fails the ReportJob with the pod's last error when it failed,
    /// and returns the pod's result line once it completed.
    fn single_pod_stage(
        &mut self,
        stage: Stage,
        (phase, doing): (Phase, &str),
        (failed_reason, what): (&str, &str),
        start_timeout: std::time::Duration,
        job: impl FnOnce(&Self) -> Job,
    ) -> Result<String, Action> {
        let Some(existing) = self.job(stage) else {
            self.set_phase(phase, doing);
            self.requeue = Some(RUNNING_RESYNC);
            return Err(Action::CreateJob(Box::new(job(self))));
        };
        match job_outcome(existing) {
            JobOutcome::Running => {
                self.set_phase(phase, doing);
                Err(self
                    .watch_pods(stage, Some(start_timeout))
                    .unwrap_or(Action::None))
            }
            JobOutcome::Failed { reason: r, message } => {
                // The pod's own message when it left one; else the Job's, in plain words
                // (not the Job controller's reason, such as PodFailurePolicy).
                let last = self
                    .pod_failure(stage)
                    .unwrap_or_else(|| format!("{} ({message})", job_failure_in_words(&r)));
                if last.contains(super::snapshot::LOST_MARK)
                    && let Some(spec) = self.planned_or_current()
                {
                    return Err(self.snapshot_lost(&spec, format!("{what} failed: {last}")));
                }
                let message = format!("{what} failed: {last}");
                if stage == Stage::Plan {
                    self.condition(conditions::PLANNED, false, reason::PLAN_FAILED, &message);
                }
                Err(self.fail(failed_reason, message))
            }
            JobOutcome::Complete => match self.pod_message(stage) {
                Some(line) => Ok(line),
                None => match self.o.refused_pods.get(&stage) {
                    Some(foreign) if !foreign.is_empty() => {
                        Err(self.foreign_result(stage, foreign))
                    }
                    _ => Ok(String::new()),
                },
            },
        }
    }

    /// A stage Job that completed on the success of a pod it did not build (its spec is not
    /// the Job's template: someone who may create pods named the Job as its owner): the
    /// result is never read, and the stage runs again under a new Job, at most
    /// [`MAX_FOREIGN_RERUNS`] times before the ReportJob fails.
    fn foreign_result(&mut self, stage: Stage, pods: &[String]) -> Action {
        let before = self
            .st
            .conditions
            .iter()
            .find(|c| c.type_ == conditions::RESULT_REFUSED)
            .and_then(|c| c.message.split(':').next()?.trim().parse::<u32>().ok())
            .unwrap_or(0);
        let shown: Vec<&str> = pods.iter().take(3).map(String::as_str).collect();
        let what = format!(
            "the {} Job counted the success of pod {} whose spec is not the Job's template \
             (created by someone else, naming the Job as its owner); its result is refused",
            stage.as_str(),
            shown.join(", ")
        );
        if before >= MAX_FOREIGN_RERUNS {
            return self.fail(
                reason::BAD_RESULT,
                format!("{what}, and the stage already ran again {before} times"),
            );
        }
        let count = before + 1;
        let message = format!("{count}: {what}; the stage runs again");
        self.condition(
            conditions::RESULT_REFUSED,
            true,
            reason::FOREIGN_POD,
            &message,
        );
        self.notes.push(EventNote::warning(
            reason::FOREIGN_POD,
            action::RECONCILE,
            &message,
        ));
        self.requeue = Some(RUNNING_RESYNC);
        Action::DeleteJobs(vec![stage.job_name(&self.rj().name_any())])
    }

    pub(super) fn after_planning(&mut self, spec: &ValidSpec, plan: &PlanStatus) -> Action {
        let total = usize::try_from(plan.chunks).unwrap_or(0);
        let plan_ref = PlanRef {
            run_id: plan.run_id.clone(),
            digest: plan.digest.clone(),
        };
        let recorded = self.st.completed_chunks.as_deref().unwrap_or("");
        let mut completed = ChunkSet::parse(recorded, total).unwrap_or_default();
        let chunks_job = self.job(Stage::Chunks);
        // Completion indexes of the chunks Job map to plan chunks through its chunk list.
        let listed = chunks_job
            .map(|job| {
                job.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(names::CHUNKS_ANNOTATION))
                    .and_then(|l| ChunkSet::parse(l, total).ok())
                    .unwrap_or_else(|| ChunkSet::all(total))
            })
            .unwrap_or_default();
        let to_plan = |indexes: Option<&String>| -> ChunkSet {
            // Indexes past the list are dropped by the mapping, not refused here.
            let indexes =
                ChunkSet::parse(indexes.map_or("", String::as_str), MAX_CHUNKS).unwrap_or_default();
            listed.chunks_of_completion_indexes(&indexes)
        };
        let job_status = chunks_job
            .and_then(|j| j.status.clone())
            .unwrap_or_default();
        completed = completed
            .union(&to_plan(job_status.completed_indexes.as_ref()))
            .below(total);
        let failed = to_plan(job_status.failed_indexes.as_ref());
        self.st.completed_chunks = Some(completed.to_string());
        self.st.chunks = Some(ChunkCounts {
            total: plan.chunks,
            succeeded: i64::try_from(completed.len()).unwrap_or(i64::MAX),
            failed: i64::try_from(failed.len()).unwrap_or(i64::MAX),
            active: i64::from(job_status.active.unwrap_or(0)),
        });
        self.st.failed_chunks = (!failed.is_empty()).then(|| failed.to_string());

        if let Some(rows) = self.exported_rows(total) {
            // Never fewer than shown: a retry's Job has only the pods of the chunks it redoes.
            self.st.rows = Some(self.st.rows.unwrap_or(0).max(rows));
        }
        if completed.len() < total {
            let remaining = completed.missing_from(total);
            return self.exporting(spec, &plan_ref, chunks_job, &remaining, &failed);
        }
        if self.has_condition(conditions::SUSPENDED) {
            self.condition(conditions::SUSPENDED, false, reason::RESUMED, "");
        }
        self.assembling(spec, &plan_ref)
    }

    /// The rows exported so far: the sum over the chunks whose pods reported `Exported`
    /// (each chunk once; results of pods the Job did not build never reach here). `None`
    /// before the first chunk is done.
    fn exported_rows(&self, total: usize) -> Option<i64> {
        let mut rows_of = std::collections::BTreeMap::new();
        for pod in self.o.pods.get(&Stage::Chunks).into_iter().flatten() {
            if pod.phase != "Succeeded" {
                continue;
            }
            let Some(Ok(StageResult::Exported { chunk, rows, .. })) =
                pod.message.as_deref().map(StageResult::parse)
            else {
                continue;
            };
            if usize::try_from(chunk).is_ok_and(|c| c < total) {
                rows_of.insert(chunk, rows);
            }
        }
        (!rows_of.is_empty())
            .then(|| i64::try_from(rows_of.values().sum::<u64>()).unwrap_or(i64::MAX))
    }

    fn exporting(
        &mut self,
        spec: &ValidSpec,
        plan: &PlanRef,
        job: Option<&Job>,
        remaining: &ChunkSet,
        failed: &ChunkSet,
    ) -> Action {
        self.condition(conditions::COMPLETE, false, reason::EXPORTING, "");
        let suspend = self.rj().spec.suspend;
        let snapshot = spec.source.consistency == Consistency::Snapshot;
        let Some(job) = job else {
            self.suspended_or_running(suspend, snapshot, remaining);
            self.requeue = Some(RUNNING_RESYNC);
            let mut spec = spec.clone();
            spec.suspend = suspend;
            let mut job = jobs::chunks_job(&self.job_context(&spec), plan, remaining);
            jobs::with_throttle(&mut job, &self.o.database.throttle());
            if let Some(grant) = self.chunk_grant(0).filter(|_| !suspend) {
                let grant = match grant {
                    Grant::Pods(n) => n,
                    Grant::Wait { message, why } => return self.waiting_for_pods(why, message),
                };
                if let Some(s) = job.spec.as_mut() {
                    let p = s.parallelism.unwrap_or(1).unsigned_abs().min(grant);
                    s.parallelism = Some(i32::try_from(p).unwrap_or(1));
                }
                if self.has_condition(conditions::QUEUED) {
                    self.condition(conditions::QUEUED, false, reason::ADMITTED, "");
                }
            }
            return Action::CreateJob(Box::new(job));
        };
        let outcome = job_outcome(job);
        if !failed.is_empty() || matches!(outcome, JobOutcome::Failed { .. }) {
            let last = self.pod_failure(Stage::Chunks);
            if let Some(lost) = last
                .as_deref()
                .filter(|m| m.contains(super::snapshot::LOST_MARK))
            {
                return self.snapshot_lost(spec, format!("chunks {failed} failed: {lost}"));
            }
            let message = match (&outcome, failed.is_empty()) {
                (JobOutcome::Failed { reason: r, message }, true) => {
                    format!(
                        "the chunks Job failed: {} ({message})",
                        job_failure_in_words(r)
                    )
                }
                _ => format!(
                    "chunks {failed} failed: {}",
                    last.unwrap_or_else(|| "no error message".into())
                ),
            };
            let why = match &outcome {
                JobOutcome::Failed { reason: r, .. } if r == reason::DEADLINE_EXCEEDED => {
                    reason::DEADLINE_EXCEEDED
                }
                _ => reason::CHUNKS_FAILED,
            };
            return self.fail(why, message);
        }
        let job_suspended = job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);
        // Resuming takes a run slot, as a start does: a suspended run held none.
        if job_suspended
            && !suspend
            && self.st.phase == Some(Phase::Suspended)
            && self.resume_held_back()
        {
            return Action::None;
        }
        self.suspended_or_running(suspend, snapshot, remaining);
        if job_suspended != suspend {
            if !suspend && self.has_condition(conditions::QUEUED) {
                self.condition(conditions::QUEUED, false, reason::ADMITTED, "");
            }
            return Action::SuspendChunks(suspend);
        }
        if !suspend {
            self.throttle_condition();
        }
        let current = job
            .spec
            .as_ref()
            .and_then(|s| s.parallelism)
            .unwrap_or(1)
            .unsigned_abs();
        if let Some(Grant::Pods(grant)) = self.chunk_grant(current).filter(|_| !suspend)
            && grant > current
        {
            return Action::SetParallelism(grant);
        }
        if let Some(action) = self.watch_pods(Stage::Chunks, Some(spec.worker.start_timeout)) {
            return action;
        }
        if self.requeue.is_none() {
            self.requeue = Some(RUNNING_RESYNC);
        }
        Action::None
    }

    /// No chunk pod of a budget is free for this run: its chunks Job waits.
    fn waiting_for_pods(&mut self, why: &'static str, message: String) -> Action {
        self.set_phase(Phase::Running, message.clone());
        self.queue(why, &message);
        self.requeue = Some(RUNNING_RESYNC);
        Action::None
    }

    /// The chunk pods this run may have now under its budgets (the namespace's
    /// `--max-stage-pods-per-namespace`, its ReportDatabase's `maxConcurrentChunks`), never
    /// fewer than the `current` ones; `None` when no budget applies.
    fn chunk_grant(&self, current: u32) -> Option<Grant> {
        let mut grant: Option<u32> = None;
        let mut wait = None;
        let mut take = |g: u32| grant = Some(grant.map_or(g, |x: u32| x.min(g)));
        if let Some(budget) = &self.o.budget {
            let g = budget.grant(current);
            take(g);
            if g == 0 {
                let limit = budget.limit;
                wait = Some((
                    reason::STAGE_POD_BUDGET,
                    format!(
                        "waiting for chunk pods: the namespace's {limit} \
                         (--max-stage-pods-per-namespace) are in use; this run gets its share \
                         as other runs' chunks finish"
                    ),
                ));
            }
        }
        let database = &self.o.database;
        match (&database.standing, &database.budget) {
            (Standing::Unavailable { name, why }, _) => {
                // No budget to read: nothing grows, nothing starts.
                take(current);
                if current == 0 {
                    wait = Some((
                        reason::DATABASE_UNAVAILABLE,
                        format!("waiting for database {name}: {why}"),
                    ));
                }
            }
            (Standing::Member { name, spec }, Some(budget)) => {
                let g = budget.grant(current);
                take(g);
                if g == 0 {
                    wait = Some((
                        reason::DATABASE_BUDGET,
                        format!(
                            "waiting for database {name}: {}/{} chunks in use, {} runs ahead",
                            database.in_use,
                            spec.chunk_limit(),
                            database.ahead
                        ),
                    ));
                }
            }
            _ => {}
        }
        match (grant, wait) {
            (Some(0), Some((why, message))) => Some(Grant::Wait { message, why }),
            (Some(n), _) => Some(Grant::Pods(n)),
            (None, _) => None,
        }
    }

    /// The `Throttled` condition from the chunk pods: true while the newest one that ended
    /// did so because the database was too busy (and did so lately), false once not.
    fn throttle_condition(&mut self) {
        let newest = self
            .o
            .pods
            .get(&Stage::Chunks)
            .into_iter()
            .flatten()
            .filter(|p| p.finished_at.is_some())
            .max_by_key(|p| p.finished_at);
        let busy = newest
            .filter(|p| p.exit_code == Some(EXIT_THROTTLED))
            .filter(|p| {
                p.finished_at
                    .is_some_and(|at| self.o.now.duration_since(at) < THROTTLE_FRESH)
            })
            .map(|p| StageResult::failure_text(p.message.as_deref().unwrap_or_default()));
        match busy {
            Some(why) => {
                let name = self.o.database.name().unwrap_or("the database");
                let message = format!(
                    "throttled by ReportDatabase {name}: {why}; no new chunk starts until it is \
                     quieter (chunks exporting finish)"
                );
                self.st.message = Some(message.clone());
                self.condition(conditions::THROTTLED, true, reason::DATABASE_BUSY, &message);
                self.requeue = Some(RUNNING_RESYNC);
            }
            None if self.has_condition(conditions::THROTTLED) => {
                self.condition(conditions::THROTTLED, false, reason::DATABASE_QUIET, "");
            }
            None => {}
        }
    }

    fn suspended_or_running(&mut self, suspend: bool, snapshot: bool, remaining: &ChunkSet) {
        if suspend {
            self.set_phase(
                Phase::Suspended,
                if snapshot {
                    super::snapshot::SUSPENDED_RELEASED
                } else {
                    "suspended by spec.suspend; clear it to resume"
                },
            );
            self.condition(
                conditions::SUSPENDED,
                true,
                reason::SUSPENDED_BY_SPEC,
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
            if self.has_condition_type(conditions::SUSPENDED) {
                self.condition(conditions::SUSPENDED, false, reason::RESUMED, "");
            }
        }
    }

    fn assembling(&mut self, spec: &ValidSpec, plan: &PlanRef) -> Action {
        self.condition(conditions::COMPLETE, false, reason::ASSEMBLING, "");
        if let Some(damaged) = self.damaged_chunks() {
            // Shown as the failed chunks: a retry exports exactly these again.
            self.st.failed_chunks = Some(damaged.to_string());
        }
        let line = match self.single_pod_stage(
            Stage::Assemble,
            (Phase::Assembling, "assembling the report"),
            (reason::ASSEMBLE_FAILED, "assembly"),
            spec.worker.start_timeout,
            |d| jobs::assemble_job(&d.job_context(spec), plan),
        ) {
            Ok(line) => line,
            Err(action) => return action,
        };
        let (output, notified) = match StageResult::parse(&line) {
            Ok(StageResult::Assembled {
                rows,
                bytes,
                sha256,
                location,
                url,
                url_expires_at,
                notified,
                snapshot,
                file_count,
                files,
            }) => {
                let claimed = results::Assembled {
                    rows,
                    bytes,
                    sha256: &sha256,
                    location: &location,
                    url: url.as_deref(),
                    url_expires_at,
                    snapshot: snapshot.as_ref(),
                    file_count,
                    files: &files,
                };
                // The pod sees a claim at its mount point; the status names the claim.
                match results::assembled(spec, &claimed) {
                    Ok(output) => (output, notified),
                    Err(why) => return self.refused_result("assemble", &why),
                }
            }
            other => return self.bad_result("assemble", &line, other),
        };
        if let Some(report) = notified {
            let why = report.condition_reason();
            self.condition(
                conditions::NOTIFIED,
                report.delivered,
                why,
                &notified_message(report.delivered, why),
            );
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
}

/// Most privilege warnings shown (the pod's line is bounded anyway; this keeps the
/// condition and the Event readable).
const MAX_WARNINGS: usize = 4;

/// The plan pod's privilege warnings as one line, or `None` when there are none. They come
/// from a pod, so they are bounded in count and stripped of line breaks.
fn privilege_warning(warnings: &[String]) -> Option<String> {
    let shown: Vec<String> = warnings
        .iter()
        .map(|w| w.replace(['\n', '\r'], " ").trim().to_string())
        .filter(|w| !w.is_empty())
        .take(MAX_WARNINGS)
        .collect();
    if shown.is_empty() {
        return None;
    }
    let more = warnings.len().saturating_sub(MAX_WARNINGS);
    let mut line = shown.join("; ");
    if more > 0 {
        line.push_str(&format!(" (and {more} more)"));
    }
    Some(line)
}

/// What a run's chunk budgets allow it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Grant {
    /// This many chunk pods (at least the current ones).
    Pods(u32),
    /// None: why, and the status text.
    Wait {
        /// The status text.
        message: String,
        /// The `Queued` condition's reason.
        why: &'static str,
    },
}

/// How long after a throttled chunk pod ended the run still shows `Throttled` (its
/// replacement checks again within the Job controller's backoff).
const THROTTLE_FRESH: jiff::SignedDuration = jiff::SignedDuration::from_secs(120);
