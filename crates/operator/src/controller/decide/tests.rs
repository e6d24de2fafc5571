//! Unit tests of the decisions, from fixture builders: every phase transition, every
//! [`Action`], invalid specs, retry, suspend and resume, deletion, TTL and bad stage results.
//!
//! Over 600 lines on purpose: one test per transition of the state machine reads best in
//! one file, beside the fixture builder they share.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::*;
use crate::controller::jobs::PlanRef;
use crate::controller::observe::{PodInfo, planned_spec};
use reportjob_core::api::load::load_str;
use reportjob_core::api::{ChunkCounts, PlanStatus, ReportJobSpec};
use reportjob_core::stage_protocol::{ChunkSet, NotifyReport};

const NOW: i64 = 1_700_000_000;

/// A ReportJob and what exists around it, built step by step.
struct ReportJobFixture {
    rj: ReportJob,
    jobs: BTreeMap<Stage, Job>,
    terminating: Vec<Stage>,
    pods: BTreeMap<Stage, Vec<PodInfo>>,
    refused_pods: BTreeMap<Stage, Vec<String>>,
    create_failures: BTreeMap<Stage, String>,
    run_slot: RunSlot,
    budget: Option<crate::controller::budget::View>,
    database: crate::controller::observe::DatabaseObserved,
    now: Timestamp,
}

fn defaults() -> PodDefaults {
    PodDefaults {
        worker_image: "ghcr.io/reportjob/reportjob:test".into(),
        ..PodDefaults::default()
    }
}

impl ReportJobFixture {
    /// A valid ReportJob (3 chunks' worth of spec, a PVC destination) that carries the
    /// finalizer and has no status yet.
    fn new() -> Self {
        let mut rj = load_str(
            r#"
apiVersion: reporting.dev/v1alpha1
kind: ReportJob
metadata: {name: orders, namespace: analytics}
spec:
  source:
    connectionSecretRef: {name: db, key: url}
    table: public.orders
    keyColumn: id
    consistency: PerChunk
  chunking: {chunkSize: 1000, parallelism: 2}
  output:
    destination:
      pvc: {claimName: reports, path: orders.csv}
  worker: {retriesPerChunk: 2}
"#,
            "test",
        )
        .expect("valid spec");
        rj.metadata.uid = Some("0123-4567-89ab-cdef".into());
        rj.metadata.generation = Some(1);
        rj.metadata.finalizers = Some(vec![names::FINALIZER.to_string()]);
        ReportJobFixture {
            rj,
            jobs: BTreeMap::new(),
            terminating: Vec::new(),
            pods: BTreeMap::new(),
            refused_pods: BTreeMap::new(),
            create_failures: BTreeMap::new(),
            run_slot: RunSlot::Admitted,
            budget: None,
            database: crate::controller::observe::DatabaseObserved::unbudgeted(),
            now: Timestamp::from_second(NOW).expect("time"),
        }
    }

    /// The controller's run cap holds the ReportJob back.
    fn queued(mut self) -> Self {
        self.run_slot = RunSlot::Queued { limit: 2, ahead: 0 };
        self
    }

    fn without_finalizer(mut self) -> Self {
        self.rj.metadata.finalizers = None;
        self
    }

    fn spec(mut self, f: impl FnOnce(&mut ReportJobSpec)) -> Self {
        f(&mut self.rj.spec);
        self
    }

    fn status(mut self, f: impl FnOnce(&mut ReportJobStatus)) -> Self {
        f(self.rj.status.get_or_insert_with(Default::default));
        self
    }

    fn annotate(mut self, key: &str, value: &str) -> Self {
        self.rj
            .annotations_mut()
            .insert(key.to_string(), value.to_string());
        self
    }

    fn deleting(mut self) -> Self {
        self.rj.metadata.deletion_timestamp = Some(Time(self.now));
        self
    }

    fn later(mut self, seconds: i64) -> Self {
        self.now = Timestamp::from_second(NOW + seconds).expect("time");
        self
    }

    /// The plan Job exists (built by the real builder from the current spec).
    fn plan_job(mut self, state: JobState) -> Self {
        let d = defaults();
        let job = jobs::plan_job(&context(&self.rj, &valid(&self.rj), &d), "rj-0123456789ab");
        self.jobs.insert(Stage::Plan, state.apply(job));
        self
    }

    /// The plan is in the status: `chunks` chunks, planned with the current spec, and
    /// its completed plan Job.
    fn planned(self, chunks: i64) -> Self {
        let hash = names::spec_hash(&self.rj.spec);
        self.plan_job(JobState::Complete).status(|s| {
            s.phase = Some(Phase::Running);
            s.start_time = Some(Time(Timestamp::from_second(NOW - 60).expect("time")));
            s.plan = Some(PlanStatus {
                run_id: "rj-0123456789ab".into(),
                digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                    .into(),
                chunks,
                spec_hash: hash,
            });
            s.chunks = Some(ChunkCounts {
                total: chunks,
                ..Default::default()
            });
        })
    }

    /// A chunks Job over `listed` (compact ranges of plan chunks) whose completion
    /// indexes `completed` and `failed` are done.
    fn chunks_job(mut self, listed: &str, completed: &str, failed: &str) -> Self {
        let d = defaults();
        let plan = PlanRef {
            run_id: "rj-0123456789ab".into(),
            digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                .into(),
        };
        let set = ChunkSet::parse(listed, 1000).expect("listed");
        let mut job = jobs::chunks_job(&context(&self.rj, &valid(&self.rj), &d), &plan, &set);
        let status = job.status.get_or_insert_with(Default::default);
        status.completed_indexes = (!completed.is_empty()).then(|| completed.to_string());
        status.failed_indexes = (!failed.is_empty()).then(|| failed.to_string());
        status.failed = (!failed.is_empty()).then_some(1);
        status.active = Some(1);
        status.ready = Some(1);
        self.jobs.insert(Stage::Chunks, job);
        self
    }

    fn job_state(mut self, stage: Stage, state: JobState) -> Self {
        let job = self.jobs.remove(&stage).expect("job exists");
        self.jobs.insert(stage, state.apply(job));
        self
    }

    /// Any other stage Job, built by the real builders.
    fn job(mut self, stage: Stage, state: JobState) -> Self {
        let d = defaults();
        let spec = valid(&self.rj);
        let t = context(&self.rj, &spec, &d);
        let job = match stage {
            Stage::Assemble => jobs::assemble_job(
                &t,
                &PlanRef {
                    run_id: "rj-0123456789ab".into(),
                    digest:
                        "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                            .into(),
                },
            ),
            Stage::Notify => jobs::notify_job(&t, "rj-0123456789ab", "failed"),
            Stage::Cleanup => jobs::cleanup_job(&t, "rj-0123456789ab"),
            Stage::Plan => jobs::plan_job(&t, "rj-0123456789ab"),
            Stage::Chunks => panic!("use chunks_job"),
            Stage::Snapshot => jobs::snapshot_job(&t, "rj-0123456789ab", 0),
        };
        self.jobs.insert(stage, state.apply(job));
        self
    }

    /// The stage's Job was created `seconds` ago and has no pod (none created yet, or
    /// none can be).
    fn without_pods_for(mut self, stage: Stage, seconds: i64) -> Self {
        let job = self.jobs.get_mut(&stage).expect("job exists");
        job.metadata.creation_timestamp =
            Some(Time(Timestamp::from_second(NOW - seconds).expect("time")));
        let status = job.status.get_or_insert_with(Default::default);
        status.active = Some(0);
        status.ready = Some(0);
        self
    }

    /// The stage's Job has a `FailedCreate` event saying `why`.
    fn create_failure(mut self, stage: Stage, why: &str) -> Self {
        self.create_failures.insert(stage, why.into());
        self
    }

    fn terminating(mut self, stage: Stage) -> Self {
        self.terminating.push(stage);
        self
    }

    /// A succeeded pod of `stage` whose termination message is `result`.
    fn result(self, stage: Stage, result: &StageResult) -> Self {
        self.raw_result(stage, &result.to_line())
    }

    /// A succeeded pod of `stage` with a termination message that is not a result.
    fn raw_result(self, stage: Stage, text: &str) -> Self {
        self.pod(
            stage,
            PodInfo {
                name: format!("orders-{}-abcde", stage.as_str()),
                phase: "Succeeded".into(),
                exit_code: Some(0),
                message: Some(text.into()),
                ..Default::default()
            },
        )
    }

    /// A failed pod of `stage` that wrote a `Failed` result with a permanent error.
    fn failed_pod(self, stage: Stage, message: &str) -> Self {
        self.failed_with(stage, 3, "source", message)
    }

    /// A failed pod of `stage` that exited `code` with a `Failed` result.
    fn failed_with(self, stage: Stage, code: i32, reason: &str, message: &str) -> Self {
        let failed = StageResult::Failed {
            reason: reason.into(),
            message: message.into(),
        };
        self.pod(
            stage,
            PodInfo {
                name: format!("orders-{}-fghij", stage.as_str()),
                phase: "Failed".into(),
                exit_code: Some(code),
                message: Some(failed.to_line()),
                finished_at: Some(Timestamp::from_second(NOW - 5).expect("time")),
                ..Default::default()
            },
        )
    }

    fn pod(mut self, stage: Stage, pod: PodInfo) -> Self {
        self.pods.entry(stage).or_default().push(pod);
        self
    }

    fn observed(&self) -> Observed {
        Observed {
            rj: self.rj.clone(),
            jobs: self.jobs.clone(),
            terminating: self.terminating.clone(),
            pods: self.pods.clone(),
            refused_pods: self.refused_pods.clone(),
            create_failures: self.create_failures.clone(),
            planned_spec: planned_spec(self.jobs.get(&Stage::Plan)),
            run_slot: self.run_slot.clone(),
            budget: self.budget.clone(),
            database: self.database.clone(),
            now: self.now,
        }
    }

    fn decide(&self) -> Step {
        decide(&self.observed(), &defaults())
    }
}

fn context<'a>(rj: &'a ReportJob, spec: &'a ValidSpec, d: &'a PodDefaults) -> JobContext<'a> {
    JobContext {
        rj,
        spec,
        defaults: d,
    }
}

fn valid(rj: &ReportJob) -> ValidSpec {
    validate(&rj.spec).expect("the fixture's spec is valid")
}

/// Where a fixture's Job is.
#[derive(Clone)]
enum JobState {
    Running,
    Complete,
    Failed(&'static str, &'static str),
}

impl JobState {
    fn apply(self, mut job: Job) -> Job {
        let condition = |type_: &str, reason: &str, message: &str| JobCondition {
            type_: type_.into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            ..Default::default()
        };
        let status = job.status.get_or_insert_with(JobStatus::default);
        match self {
            JobState::Running => {}
            JobState::Complete => {
                status.conditions = Some(vec![condition("Complete", "", "")]);
            }
            JobState::Failed(reason, message) => {
                status.conditions = Some(vec![condition("Failed", reason, message)]);
            }
        }
        job
    }
}

fn created(step: &Step) -> &Job {
    match &step.action {
        Action::CreateJob(job) => job,
        other => panic!("expected a Job to be created, got {}", other.describe()),
    }
}

fn condition<'a>(step: &'a Step, type_: &str) -> &'a Condition {
    step.status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {:?}", step.status.conditions))
}

fn reasons(step: &Step) -> Vec<&str> {
    step.notes.iter().map(|n| n.reason.as_str()).collect()
}

fn assembled(notified: Option<NotifyReport>) -> StageResult {
    StageResult::Assembled {
        rows: 2500,
        bytes: 40_000,
        sha256: "beef".repeat(16),
        location: "/reportjob/output/orders.csv".into(),
        url: None,
        url_expires_at: None,
        notified,
        snapshot: None,
        file_count: None,
        files: Vec::new(),
    }
}

// --- accepting and validating ---

#[test]
fn a_new_reportjob_gets_the_finalizer_first() {
    let step = ReportJobFixture::new().without_finalizer().decide();
    assert_eq!(step.action, Action::AddFinalizer);
    assert_eq!(step.status.phase, Some(Phase::Pending));
    assert_eq!(step.status.message.as_deref(), Some("accepted"));
    assert_eq!(step.status.observed_generation, Some(1));
}

#[test]
fn a_reportjob_beyond_the_run_cap_waits_queued_and_starts_once_admitted() {
    // Accepted and queued in one status write.
    let step = ReportJobFixture::new()
        .without_finalizer()
        .queued()
        .decide();
    assert_eq!(step.action, Action::AddFinalizer);
    assert_eq!(step.status.phase, Some(Phase::Pending));
    let queued = condition(&step, conditions::QUEUED);
    assert_eq!(
        (queued.status.as_str(), queued.reason.as_str()),
        ("True", reason::RUN_LIMIT_REACHED)
    );
    // Waiting creates nothing, does not start the clock and writes the same status again.
    let status = step.status.clone();
    let waiting = ReportJobFixture::new()
        .queued()
        .status(|s| *s = status.clone())
        .decide();
    assert_eq!(waiting.action, Action::None);
    assert_eq!(waiting.status, status);
    assert_eq!(waiting.status.start_time, None);
    assert_eq!(waiting.requeue, Some(QUEUED_RESYNC));
    // Admitted: planning starts and the condition says so.
    let admitted = ReportJobFixture::new().status(|s| *s = status).decide();
    assert_eq!(created(&admitted).name_any(), "orders-plan");
    assert_eq!(admitted.status.phase, Some(Phase::Planning));
    assert!(admitted.status.start_time.is_some());
    let queued = condition(&admitted, conditions::QUEUED);
    assert_eq!(
        (queued.status.as_str(), queued.reason.as_str()),
        ("False", reason::ADMITTED)
    );
}

#[test]
fn an_invalid_spec_fails_without_creating_anything_and_is_noted_once() {
    let fixture = ReportJobFixture::new().spec(|s| s.chunking.chunk_size = 0);
    let step = fixture.decide();
    assert_eq!(step.action, Action::None);
    assert_eq!(step.status.phase, Some(Phase::Failed));
    let message = step.status.message.clone().expect("message");
    assert!(message.starts_with("invalid spec: "), "{message}");
    assert!(message.contains("chunkSize"), "{message}");
    let failed = condition(&step, conditions::FAILED);
    assert_eq!(
        (failed.status.as_str(), failed.reason.as_str()),
        ("True", reason::INVALID_SPEC)
    );
    assert_eq!(condition(&step, conditions::COMPLETE).status, "False");
    assert_eq!(reasons(&step), vec![reason::INVALID_SPEC]);
    assert!(step.notes[0].warning);
    assert_eq!(step.status.completion_time, None);
    // Not requeued: a spec change wakes it up.
    assert_eq!(step.requeue, None);

    // The same invalid spec again: no second event.
    let status = step.status.clone();
    let again = fixture.status(|s| *s = status).decide();
    assert!(again.notes.is_empty(), "{:?}", again.notes);
}

#[test]
fn a_fixed_spec_clears_the_failure_and_starts_planning() {
    let step = ReportJobFixture::new()
        .status(|s| {
            s.phase = Some(Phase::Failed);
            s.message = Some("invalid spec: x".into());
            s.conditions.push(Condition {
                type_: conditions::FAILED.into(),
                status: "True".into(),
                reason: reason::INVALID_SPEC.into(),
                message: "invalid spec: x".into(),
                observed_generation: Some(1),
                last_transition_time: Time(Timestamp::UNIX_EPOCH),
            });
        })
        .decide();
    assert_eq!(created(&step).name_any(), "orders-plan");
    assert_eq!(step.status.phase, Some(Phase::Planning));
    let failed = condition(&step, conditions::FAILED);
    assert_eq!(
        (failed.status.as_str(), failed.reason.as_str()),
        ("False", reason::NO_FAILURE)
    );
}

// --- planning ---

#[test]
fn a_valid_reportjob_creates_its_plan_job() {
    let step = ReportJobFixture::new().decide();
    let job = created(&step);
    assert_eq!(job.name_any(), "orders-plan");
    assert!(job.annotations().contains_key(names::SPEC_ANNOTATION));
    assert_eq!(step.status.phase, Some(Phase::Planning));
    assert_eq!(
        step.status.start_time,
        Some(Time(Timestamp::from_second(NOW).expect("t")))
    );
    assert_eq!(condition(&step, conditions::PLANNED).status, "False");
    assert!(reasons(&step).is_empty(), "{:?}", reasons(&step));
    assert_eq!(step.requeue, Some(RUNNING_RESYNC));
}

#[test]
fn a_running_plan_job_keeps_planning() {
    let step = ReportJobFixture::new()
        .status(|s| s.phase = Some(Phase::Planning))
        .plan_job(JobState::Running)
        .decide();
    assert_eq!(step.action, Action::None);
    assert_eq!(step.status.phase, Some(Phase::Planning));
    assert!(step.notes.is_empty());
    assert_eq!(step.requeue, Some(RUNNING_RESYNC));
}

#[test]
fn a_pod_that_cannot_start_is_shown_and_looked_at_soon() {
    let step = ReportJobFixture::new()
        .status(|s| s.phase = Some(Phase::Planning))
        .plan_job(JobState::Running)
        .pod(
            Stage::Plan,
            PodInfo {
                name: "orders-plan-x".into(),
                phase: "Pending".into(),
                waiting: Some((
                    "CreateContainerConfigError".into(),
                    "secret \"db\" not found".into(),
                )),
                ..Default::default()
            },
        )
        .decide();
    assert_eq!(step.action, Action::None);
    assert_eq!(
        step.status.message.as_deref(),
        Some("pod orders-plan-x cannot start: CreateContainerConfigError: secret \"db\" not found")
    );
    assert_eq!(reasons(&step), vec![reason::POD_CANNOT_START]);
    assert_eq!(step.requeue, Some(PENDING_POD_RESYNC));
}

const QUOTA: &str = "Error creating: pods \"orders-plan-x\" is forbidden: failed quota: \
                     limits: must specify limits.memory for: worker";

#[test]
fn a_job_that_cannot_create_pods_says_why_and_fails_after_the_start_timeout() {
    let stuck = |after: i64| {
        ReportJobFixture::new()
            .status(|s| s.phase = Some(Phase::Planning))
            .plan_job(JobState::Running)
            .without_pods_for(Stage::Plan, after)
            .create_failure(Stage::Plan, QUOTA)
            .decide()
    };
    // Within the timeout: the quota is named in the message and an event, looked at soon.
    let step = stuck(30);
    assert_eq!(step.action, Action::None);
    assert_eq!(step.status.phase, Some(Phase::Planning));
    let message = format!("the plan Job cannot create pods: {QUOTA}");
    assert_eq!(step.status.message.as_deref(), Some(message.as_str()));
    assert_eq!(reasons(&step), vec![reason::CANNOT_CREATE_PODS]);
    assert_eq!(step.requeue, Some(PENDING_POD_RESYNC));

    // Past the default 600 s: Failed with StartTimeout, and the stuck Job is deleted.
    let step = stuck(600);
    assert_eq!(step.action, Action::DeleteJobs(vec!["orders-plan".into()]));
    assert_eq!(step.status.phase, Some(Phase::Failed));
    let failed = condition(&step, conditions::FAILED);
    assert_eq!(failed.reason, reason::START_TIMEOUT);
    assert_eq!(
        failed.message,
        format!("no pod of the plan Job ran for 600s (spec.worker.startTimeoutSeconds): {message}")
    );
}

#[test]
fn a_run_that_timed_out_before_planning_stays_failed_once_its_jobs_are_gone() {
    let step = ReportJobFixture::new()
        .status(|s| {
            s.phase = Some(Phase::Failed);
            s.conditions = vec![Condition {
                type_: conditions::FAILED.into(),
                status: "True".into(),
                reason: reason::START_TIMEOUT.into(),
                message: "no pod of the plan Job ran for 600s".into(),
                observed_generation: Some(1),
                last_transition_time: Time(Timestamp::from_second(NOW - 5).expect("time")),
            }];
        })
        .decide();
    assert_eq!(step.action, Action::None);
    assert_eq!(step.status.phase, Some(Phase::Failed));
    assert_eq!(
        condition(&step, conditions::FAILED).reason,
        reason::START_TIMEOUT
    );
}

#[test]
fn the_start_timeout_is_the_specs_and_counts_from_the_last_pod_that_ran() {
    let pulling = PodInfo {
        name: "orders-chunks-1-x".into(),
        phase: "Pending".into(),
        waiting: Some(("ImagePullBackOff".into(), "Back-off pulling image".into())),
        ..Default::default()
    };
    let finished = PodInfo {
        name: "orders-chunks-0-y".into(),
        phase: "Succeeded".into(),
        exit_code: Some(0),
        finished_at: Some(Timestamp::from_second(NOW - 20).expect("time")),
        ..Default::default()
    };
    let fixture = |timeout: i64, pods: Vec<PodInfo>| {
        let mut f = ReportJobFixture::new()
            .spec(|s| s.worker.start_timeout_seconds = Some(timeout))
            .planned(3)
            .chunks_job("0-2", "0", "")
            .without_pods_for(Stage::Chunks, 100);
        f.jobs
            .get_mut(&Stage::Chunks)
            .and_then(|j| j.status.as_mut())
            .expect("status")
            .active = Some(1);
        for p in pods {
            f = f.pod(Stage::Chunks, p);
        }
        f.decide()
    };
    // The Job is 100 s old, but a chunk pod finished 20 s ago: 30 s have not passed.
    let step = fixture(30, vec![finished.clone(), pulling.clone()]);
    assert_eq!(step.action, Action::None);
    assert_eq!(
        step.status.message.as_deref(),
        Some("pod orders-chunks-1-x cannot start: ImagePullBackOff: Back-off pulling image")
    );
    assert_eq!(step.requeue, Some(PENDING_POD_RESYNC));
    // 15 s: the pull has been failing for longer than that.
    let step = fixture(15, vec![finished.clone(), pulling.clone()]);
    assert_eq!(
        step.action,
        Action::DeleteJobs(vec!["orders-chunks".into()])
    );
    let failed = condition(&step, conditions::FAILED);
    assert_eq!(failed.reason, reason::START_TIMEOUT);
    assert!(
        failed.message.contains("ImagePullBackOff"),
        "{}",
        failed.message
    );
    // A running pod: nothing is stuck, however old the Job.
    let running = PodInfo {
        name: "orders-chunks-2-z".into(),
        phase: "Running".into(),
        ..Default::default()
    };
    let step = fixture(15, vec![finished, pulling, running]);
    assert_eq!(step.action, Action::None);
    assert_eq!(step.status.phase, Some(Phase::Running));
}

#[test]
fn a_planned_result_records_the_plan_and_creates_the_chunks_job() {
    let planned = StageResult::Planned {
        run_id: "rj-0123456789ab".into(),
        chunks: 3,
        digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
        estimated_rows: 3000,
        strategy: "keyRange".into(),
        warnings: vec![],
    };
    let step = ReportJobFixture::new()
        .status(|s| s.phase = Some(Phase::Planning))
        .plan_job(JobState::Complete)
        .result(Stage::Plan, &planned)
        .decide();
    let job = created(&step);
    assert_eq!(job.name_any(), "orders-chunks");
    assert_eq!(job.annotations()[names::CHUNKS_ANNOTATION], "0-2");
    assert_eq!(job.spec.as_ref().and_then(|s| s.completions), Some(3));
    let plan = step.status.plan.clone().expect("plan");
    assert_eq!(plan.chunks, 3);
    assert_eq!(
        plan.digest,
        "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    );
    assert_eq!(
        plan.spec_hash,
        names::spec_hash(&ReportJobFixture::new().rj.spec)
    );
    assert_eq!(step.status.phase, Some(Phase::Running));
    assert_eq!(step.status.progress.as_deref(), Some("0/3"));
    let planned = condition(&step, conditions::PLANNED);
    assert_eq!(planned.status, "True");
    assert_eq!(planned.message, "3 chunks, plan digest 0123456789ab");
    assert_eq!(reasons(&step), vec![reason::PLAN_STAGED]);
}

#[test]
fn privilege_warnings_of_the_plan_show_in_the_condition_and_as_one_event() {
    let mut warnings: Vec<String> = (0..6)
        .map(|i| {
            format!("the database role \"rj\" may INSERT on t{i}; a report job needs only SELECT")
        })
        .collect();
    warnings[0] = "the database role \"rj\" is a superuser;\nsee the README".into();
    let planned = StageResult::Planned {
        run_id: "rj-0123456789ab".into(),
        chunks: 3,
        digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
        estimated_rows: 3000,
        strategy: "keyRange".into(),
        warnings,
    };
    let step = ReportJobFixture::new()
        .status(|s| s.phase = Some(Phase::Planning))
        .plan_job(JobState::Complete)
        .result(Stage::Plan, &planned)
        .decide();
    // The run goes on: a warning, not a failure.
    assert_eq!(created(&step).name_any(), "orders-chunks");
    let message = condition(&step, conditions::PLANNED).message.clone();
    assert!(
        message.starts_with("3 chunks, plan digest 0123456789ab; warning: the database role \"rj\" is a superuser; see the README"),
        "{message}"
    );
    assert!(message.contains("t3"), "{message}");
    assert!(!message.contains("t4"), "at most four are shown: {message}");
    assert!(message.ends_with("(and 2 more)"), "{message}");
    assert!(!message.contains('\n'), "{message}");
    assert_eq!(
        reasons(&step),
        vec![reason::EXCESS_PRIVILEGES, reason::PLAN_STAGED]
    );
}

#[test]
fn an_unreadable_plan_result_fails_the_reportjob() {
    for (text, why) in [
        ("chunks=3 digest=sha256:abc run=rj-1", "malformed"),
        ("", "empty"),
    ] {
        let step = ReportJobFixture::new()
            .status(|s| s.phase = Some(Phase::Planning))
            .plan_job(JobState::Complete)
            .raw_result(Stage::Plan, text)
            .decide();
        assert_eq!(step.action, Action::None);
        assert_eq!(step.status.phase, Some(Phase::Failed));
        assert_eq!(
            condition(&step, conditions::FAILED).reason,
            reason::BAD_RESULT
        );
        let message = step.status.message.clone().expect("message");
        assert!(
            message.contains("plan Job succeeded but its result is unreadable"),
            "{message}"
        );
        assert!(message.contains(why), "{message}");
        assert_eq!(reasons(&step), vec![reason::BAD_RESULT]);
        assert!(step.status.completion_time.is_some());
    }
    // A result of the wrong kind is refused too.
    let step = ReportJobFixture::new()
        .status(|s| s.phase = Some(Phase::Planning))
        .plan_job(JobState::Complete)
        .result(Stage::Plan, &assembled(None))
        .decide();
    let message = step.status.message.expect("message");
    assert!(
        message.contains("an Assembled result") || message.contains("a Assembled result"),
        "{message}"
    );
}

#[test]
fn a_failed_plan_job_fails_with_the_pods_error() {
    let step = ReportJobFixture::new()
        .status(|s| s.phase = Some(Phase::Planning))
        .plan_job(JobState::Failed("PodFailurePolicy", "exit code 3"))
        .failed_pod(
            Stage::Plan,
            "spec.source.keyColumn: column \"id\" does not exist",
        )
        .decide();
    assert_eq!(step.status.phase, Some(Phase::Failed));
    assert_eq!(
        step.status.message.as_deref(),
        Some("planning failed: spec.source.keyColumn: column \"id\" does not exist")
    );
    // The Planned condition says so too, not that the plan Job still runs.
    let planned = condition(&step, conditions::PLANNED);
    assert_eq!(
        (planned.status.as_str(), planned.reason.as_str()),
        ("False", reason::PLAN_FAILED)
    );
    assert_eq!(
        condition(&step, conditions::FAILED).reason,
        reason::PLAN_FAILED
    );
    assert_eq!(reasons(&step), vec![reason::PLAN_FAILED]);
    assert!(step.notes[0].warning);
}

// --- exporting ---

#[test]
fn running_chunks_count_progress_through_the_chunk_list() {
    // A retry Job over plan chunks 1 and 2 (chunk 0 was exported before).
    let step = ReportJobFixture::new()
        .planned(3)
        .status(|s| s.completed_chunks = Some("0".into()))
        .chunks_job("1-2", "0", "")
        .decide();
    assert_eq!(step.action, Action::None);
    assert_eq!(step.status.completed_chunks.as_deref(), Some("0-1"));
    assert_eq!(step.status.progress.as_deref(), Some("2/3"));
    assert_eq!(
        step.status.message.as_deref(),
        Some("exporting chunks: 2/3 done, 1 to go")
    );
    assert_eq!(step.status.phase, Some(Phase::Running));
    assert_eq!(step.requeue, Some(RUNNING_RESYNC));
}

#[test]
fn rows_are_shown_as_chunks_finish_and_never_go_down() {
    let exported = |chunk: u64, rows: u64| StageResult::Exported {
        chunk,
        rows,
        bytes: 10,
        crc32: Some(0xab),
    };
    let chunk_pod = |chunk: u64, rows: u64, phase: &str| PodInfo {
        name: format!("orders-chunks-{chunk}"),
        phase: phase.into(),
        exit_code: Some(0),
        message: Some(exported(chunk, rows).to_line()),
        ..Default::default()
    };
    let step = ReportJobFixture::new()
        .planned(3)
        .chunks_job("0-2", "0-1", "")
        .pod(Stage::Chunks, chunk_pod(0, 1000, "Succeeded"))
        .pod(Stage::Chunks, chunk_pod(1, 999, "Succeeded"))
        // A second pod of chunk 1 (a retried index) counts once; a chunk beyond the plan
        // and a pod that did not succeed not at all.
        .pod(Stage::Chunks, chunk_pod(1, 999, "Succeeded"))
        .pod(Stage::Chunks, chunk_pod(7, 5, "Succeeded"))
        .pod(Stage::Chunks, chunk_pod(2, 50, "Running"))
        .decide();
    assert_eq!(step.status.rows, Some(1999));
    // A retry's Job holds only the pods of what it redoes: the rows shown stay.
    let step = ReportJobFixture::new()
        .planned(3)
        .status(|s| {
            s.completed_chunks = Some("0-1".into());
            s.rows = Some(1999);
        })
        .chunks_job("2", "", "")
        .decide();
    assert_eq!(step.status.rows, Some(1999));
}

fn budget(limit: u32, others: u32, share: u32) -> Option<crate::controller::budget::View> {
    Some(crate::controller::budget::View {
        limit,
        others,
        share,
        starved: Vec::new(),
    })
}

#[test]
fn under_a_pod_budget_the_chunks_job_waits_for_free_pods_then_gets_its_share_and_grows() {
    // Every pod of the namespace's budget is taken: no Job, the run says it waits.
    let mut fixture = ReportJobFixture::new().planned(3);
    fixture.budget = budget(2, 2, 1);
    let step = fixture.decide();
    assert_eq!(step.action, Action::None);
    assert_eq!(step.status.phase, Some(Phase::Running));
    let queued = condition(&step, conditions::QUEUED);
    assert_eq!(
        (queued.status.as_str(), queued.reason.as_str()),
        ("True", reason::STAGE_POD_BUDGET)
    );
    // One pod free: the Job is created with that grant (its spec asks for 2).
    let status = step.status.clone();
    let mut fixture = ReportJobFixture::new()
        .planned(3)
        .status(|s| *s = status.clone());
    fixture.budget = budget(2, 1, 1);
    let step = fixture.decide();
    assert_eq!(
        created(&step).spec.as_ref().and_then(|s| s.parallelism),
        Some(1)
    );
    assert_eq!(condition(&step, conditions::QUEUED).status, "False");
    // More pods free and a larger share: the running Job's parallelism is raised.
    let mut fixture = ReportJobFixture::new().planned(3).chunks_job("0-2", "", "");
    if let Some(spec) = fixture
        .jobs
        .get_mut(&Stage::Chunks)
        .and_then(|j| j.spec.as_mut())
    {
        spec.parallelism = Some(1);
    }
    fixture.budget = budget(4, 0, 2);
    assert_eq!(fixture.decide().action, Action::SetParallelism(2));
    // Never lowered: a Job above its share keeps its pods.
    fixture.budget = budget(4, 4, 0);
    assert_eq!(fixture.decide().action, Action::None);
}

fn member(limit: i32, throttle: bool) -> crate::controller::database::Standing {
    crate::controller::database::Standing::Member {
        name: "orders-primary".into(),
        spec: Box::new(reportjob_core::database::ReportDatabaseSpec {
            namespace_selector: Default::default(),
            max_concurrent_chunks: limit,
            max_snapshots: None,
            weights: Default::default(),
            throttle: throttle.then_some(reportjob_core::database::ThrottleSpec {
                max_active_sessions: Some(4),
                max_replay_lag_seconds: None,
            }),
        }),
    }
}

#[test]
fn a_run_waits_for_its_databases_chunk_budget_says_where_it_stands_and_then_grows() {
    use crate::controller::observe::DatabaseObserved;
    let mut fixture = ReportJobFixture::new().planned(3);
    fixture.database = DatabaseObserved {
        standing: member(8, false),
        budget: budget(8, 8, 0),
        in_use: 8,
        ahead: 3,
    };
    let step = fixture.decide();
    assert_eq!(step.action, Action::None);
    let queued = condition(&step, conditions::QUEUED);
    assert_eq!(
        (queued.status.as_str(), queued.reason.as_str()),
        ("True", reason::DATABASE_BUDGET)
    );
    assert_eq!(
        step.status.message.as_deref(),
        Some("waiting for database orders-primary: 8/8 chunks in use, 3 runs ahead")
    );
    // The first wait is an Event; waiting on is not another.
    assert_eq!(reasons(&step), vec![reason::WAITING_FOR_DATABASE]);
    let status = step.status.clone();
    let mut again = ReportJobFixture::new().planned(3).status(|s| *s = status);
    again.database = fixture.database.clone();
    assert!(again.decide().notes.is_empty());
    // The namespace's budget and the database's both apply: the smaller grant wins.
    fixture.database.budget = budget(8, 7, 2);
    fixture.budget = budget(10, 0, 2);
    assert_eq!(
        created(&fixture.decide())
            .spec
            .as_ref()
            .and_then(|s| s.parallelism),
        Some(1)
    );
    // No threshold: the chunks Job's pods get no throttle.
    let step = fixture.decide();
    let job = created(&step);
    let env = &job
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .env;
    assert!(!env.iter().flatten().any(|e| e.name == "REPORTJOB_THROTTLE"));
}

#[test]
fn a_throttle_reaches_the_workers_and_a_throttled_pod_shows_in_the_status() {
    use crate::controller::observe::{DatabaseObserved, PodInfo};
    let mut fixture = ReportJobFixture::new().planned(3);
    fixture.database = DatabaseObserved {
        standing: member(8, true),
        budget: budget(8, 0, 2),
        in_use: 0,
        ahead: 0,
    };
    let step = fixture.decide();
    let job = created(&step);
    let spec = job.spec.as_ref().unwrap();
    let env = spec.template.spec.as_ref().unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    assert!(env.iter().any(
        |e| e.name == "REPORTJOB_THROTTLE" && e.value.as_deref() == Some("maxActiveSessions=4")
    ));
    let ignore = spec
        .pod_failure_policy
        .as_ref()
        .unwrap()
        .rules
        .iter()
        .find(|r| r.action == "Ignore");
    assert_eq!(
        ignore
            .and_then(|r| r.on_exit_codes.as_ref())
            .map(|c| c.values.clone()),
        Some(vec![reportjob_core::stage_protocol::EXIT_THROTTLED])
    );
    // A pod that ended throttled a moment ago: the run says so.
    let busy = PodInfo {
        name: "orders-chunks-0-x".into(),
        completion_index: Some(0),
        phase: "Failed".into(),
        exit_code: Some(reportjob_core::stage_protocol::EXIT_THROTTLED),
        message: Some(r#"{"result":"Failed","reason":"throttled","message":"database busy: 6 active sessions, more than maxActiveSessions 4"}"#.into()),
        finished_at: Some(Timestamp::from_second(NOW - 10).expect("time")),
        ..Default::default()
    };
    let mut running = ReportJobFixture::new()
        .planned(3)
        .chunks_job("0-2", "", "")
        .pod(Stage::Chunks, busy.clone());
    running.database = fixture.database.clone();
    let step = running.decide();
    let throttled = condition(&step, conditions::THROTTLED);
    assert_eq!(
        (throttled.status.as_str(), throttled.reason.as_str()),
        ("True", reason::DATABASE_BUSY)
    );
    assert!(
        throttled.message.contains("6 active sessions"),
        "{}",
        throttled.message
    );
    assert!(
        step.status
            .message
            .as_deref()
            .unwrap_or("")
            .starts_with("throttled by ReportDatabase orders-primary")
    );
    // A chunk that succeeded since: no longer throttled.
    let status = step.status.clone();
    let done = PodInfo {
        name: "orders-chunks-0-y".into(),
        completion_index: Some(0),
        phase: "Succeeded".into(),
        exit_code: Some(0),
        finished_at: Some(Timestamp::from_second(NOW - 2).expect("time")),
        ..Default::default()
    };
    let mut later = ReportJobFixture::new()
        .planned(3)
        .chunks_job("0-2", "", "")
        .pod(Stage::Chunks, busy)
        .pod(Stage::Chunks, done)
        .status(|s| *s = status);
    later.database = fixture.database.clone();
    let throttled = condition(&later.decide(), conditions::THROTTLED).clone();
    assert_eq!(
        (throttled.status.as_str(), throttled.reason.as_str()),
        ("False", reason::DATABASE_QUIET)
    );
}

#[test]
fn a_database_that_does_not_select_the_namespace_fails_the_run_and_a_missing_one_queues_it() {
    use crate::controller::database::Standing;
    use crate::controller::observe::DatabaseObserved;
    let mut fixture = ReportJobFixture::new();
    fixture.database = DatabaseObserved {
        standing: Standing::NotAllowed {
            name: "orders-primary".into(),
            why: "ReportDatabase orders-primary does not select namespace analytics".into(),
        },
        ..DatabaseObserved::unbudgeted()
    };
    let step = fixture.decide();
    assert_eq!(step.status.phase, Some(Phase::Failed));
    assert!(
        step.status.message.as_deref().unwrap_or("").contains(
            "spec.source.database.name: ReportDatabase orders-primary does not select namespace analytics"
        ),
        "{:?}",
        step.status.message
    );
    assert_eq!(step.action, Action::None);
    fixture.database.standing = Standing::Unavailable {
        name: "orders-primary".into(),
        why: "ReportDatabase orders-primary does not exist".into(),
    };
    let step = fixture.decide();
    assert_eq!(step.status.phase, Some(Phase::Pending));
    assert_eq!(
        condition(&step, conditions::QUEUED).reason,
        reason::DATABASE_UNAVAILABLE
    );
    assert_eq!(step.action, Action::None);
}

#[test]
fn suspend_and_resume_patch_the_chunks_job() {
    let step = ReportJobFixture::new()
        .planned(3)
        .chunks_job("0-2", "", "")
        .spec(|s| s.suspend = true)
        .decide();
    assert_eq!(step.action, Action::SuspendChunks(true));
    assert_eq!(step.status.phase, Some(Phase::Suspended));
    let suspended = condition(&step, conditions::SUSPENDED);
    assert_eq!(
        (suspended.status.as_str(), suspended.reason.as_str()),
        ("True", reason::SUSPENDED_BY_SPEC)
    );
    assert_eq!(reasons(&step), vec![reason::SUSPENDED]);

    // Cleared again while the Job is suspended: resume.
    let status = step.status.clone();
    let mut fixture = ReportJobFixture::new()
        .planned(3)
        .chunks_job("0-2", "", "")
        .status(|s| *s = status);
    if let Some(spec) = fixture
        .jobs
        .get_mut(&Stage::Chunks)
        .and_then(|j| j.spec.as_mut())
    {
        spec.suspend = Some(true);
    }
    let step = fixture.decide();
    assert_eq!(step.action, Action::SuspendChunks(false));
    assert_eq!(step.status.phase, Some(Phase::Running));
    let resumed = condition(&step, conditions::SUSPENDED);
    assert_eq!(
        (resumed.status.as_str(), resumed.reason.as_str()),
        ("False", reason::RESUMED)
    );
    assert_eq!(reasons(&step), vec![reason::RESUMED]);
}

#[test]
fn a_resume_waits_for_a_run_slot_and_a_namespace_at_its_cap_waits_too() {
    let suspended = ReportJobFixture::new()
        .planned(3)
        .chunks_job("0-2", "", "")
        .spec(|s| s.suspend = true)
        .decide()
        .status;
    let fixture = |run_slot: RunSlot| {
        let mut f = ReportJobFixture::new()
            .planned(3)
            .chunks_job("0-2", "", "")
            .status(|s| *s = suspended.clone());
        if let Some(spec) = f.jobs.get_mut(&Stage::Chunks).and_then(|j| j.spec.as_mut()) {
            spec.suspend = Some(true);
        }
        f.run_slot = run_slot;
        f
    };
    // Every slot is taken: the run stays suspended, its chunks Job too, and says why.
    let step = fixture(RunSlot::Queued { limit: 2, ahead: 0 }).decide();
    assert_eq!(step.action, Action::None);
    assert_eq!(step.status.phase, Some(Phase::Suspended));
    let queued = condition(&step, conditions::QUEUED);
    assert_eq!(
        (queued.status.as_str(), queued.reason.as_str()),
        ("True", reason::RUN_LIMIT_REACHED)
    );
    assert!(
        step.status
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("resuming when a run slot frees: queued: 2 runs")),
        "{:?}",
        step.status.message
    );
    // Its namespace is at its own cap: the same, naming that cap.
    let step = fixture(RunSlot::NamespaceFull { limit: 1 }).decide();
    assert_eq!(step.action, Action::None);
    let queued = condition(&step, conditions::QUEUED);
    assert_eq!(queued.reason, reason::NAMESPACE_RUN_LIMIT_REACHED);
    assert!(
        queued
            .message
            .contains("--max-concurrent-runs-per-namespace")
    );
    // A slot frees: it resumes, and the queue condition says it was admitted.
    let waited = step.status.clone();
    let mut f = fixture(RunSlot::Admitted).status(|s| *s = waited);
    f.run_slot = RunSlot::Admitted;
    let step = f.decide();
    assert_eq!(step.action, Action::SuspendChunks(false));
    assert_eq!(step.status.phase, Some(Phase::Running));
    let admitted = condition(&step, conditions::QUEUED);
    assert_eq!(
        (admitted.status.as_str(), admitted.reason.as_str()),
        ("False", reason::ADMITTED)
    );
}

#[test]
fn a_suspended_reportjob_creates_its_chunks_job_suspended() {
    let step = ReportJobFixture::new()
        .planned(2)
        .spec(|s| s.suspend = true)
        .decide();
    let job = created(&step);
    assert_eq!(job.spec.as_ref().and_then(|s| s.suspend), Some(true));
    assert_eq!(step.status.phase, Some(Phase::Suspended));
}

#[test]
fn a_failed_index_fails_the_run_naming_the_plan_chunk() {
    // A retry Job over chunks 7 and 9: completion index 1 is chunk 9.
    let step = ReportJobFixture::new()
        .planned(10)
        .status(|s| s.completed_chunks = Some("0-6,8".into()))
        .chunks_job("7,9", "0", "1")
        .failed_pod(
            Stage::Chunks,
            "chunk 9 [900, 1000): SQLSTATE 42501: permission denied",
        )
        .decide();
    assert_eq!(step.status.phase, Some(Phase::Failed));
    assert_eq!(step.status.failed_chunks.as_deref(), Some("9"));
    assert_eq!(step.status.completed_chunks.as_deref(), Some("0-8"));
    assert_eq!(
        step.status.message.as_deref(),
        Some("chunks 9 failed: chunk 9 [900, 1000): SQLSTATE 42501: permission denied")
    );
    assert_eq!(
        condition(&step, conditions::FAILED).reason,
        reason::CHUNKS_FAILED
    );
    let counts = step.status.chunks.clone().expect("counts");
    assert_eq!((counts.succeeded, counts.failed), (9, 1));
    assert_eq!(step.requeue, None);
}

#[test]
fn a_chunks_job_past_its_deadline_fails_with_deadline_exceeded() {
    let step = ReportJobFixture::new()
        .planned(3)
        .chunks_job("0-2", "0", "")
        .job_state(
            Stage::Chunks,
            JobState::Failed(
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ),
        )
        .decide();
    assert_eq!(step.status.phase, Some(Phase::Failed));
    assert_eq!(
        condition(&step, conditions::FAILED).reason,
        reason::DEADLINE_EXCEEDED
    );
    assert_eq!(
        step.status.message.as_deref(),
        Some(
            "the chunks Job failed: it ran past its deadline (Job was active longer than specified deadline)"
        )
    );
}

// --- assembling and finishing ---

#[test]
fn all_chunks_exported_creates_the_assemble_job() {
    let step = ReportJobFixture::new()
        .planned(3)
        .chunks_job("0-2", "0-2", "")
        .job_state(Stage::Chunks, JobState::Complete)
        .decide();
    assert_eq!(created(&step).name_any(), "orders-assemble");
    assert_eq!(step.status.phase, Some(Phase::Assembling));
    assert_eq!(step.status.progress.as_deref(), Some("3/3"));
    assert!(reasons(&step).is_empty(), "{:?}", reasons(&step));
}

#[test]
fn an_assembled_result_completes_the_reportjob() {
    let step = ReportJobFixture::new()
        .planned(3)
        .status(|s| {
            s.phase = Some(Phase::Assembling);
            s.completed_chunks = Some("0-2".into());
        })
        .chunks_job("0-2", "0-2", "")
        .job_state(Stage::Chunks, JobState::Complete)
        .job(Stage::Assemble, JobState::Complete)
        .result(
            Stage::Assemble,
            &assembled(Some(NotifyReport {
                delivered: false,
                reason: Some("WebhookTimeout".into()),
                attempts: 4,
                status: None,
                message: Some("timed out".into()),
            })),
        )
        .decide();
    assert_eq!(step.action, Action::None);
    assert_eq!(step.status.phase, Some(Phase::Succeeded));
    let output = step.status.output.clone().expect("output");
    // The mount point is shown as the claim.
    assert_eq!(output.location, "pvc://reports/orders.csv");
    assert_eq!((output.rows, output.bytes), (2500, 40_000));
    assert_eq!(
        (step.status.rows, step.status.bytes),
        (Some(2500), Some(40_000))
    );
    assert_eq!(
        step.status.message.as_deref(),
        Some("2500 rows, 40000 bytes at pvc://reports/orders.csv")
    );
    let complete = condition(&step, conditions::COMPLETE);
    assert_eq!(
        (complete.status.as_str(), complete.reason.as_str()),
        ("True", reason::PUBLISHED)
    );
    let notified = condition(&step, conditions::NOTIFIED);
    assert_eq!(
        (notified.status.as_str(), notified.reason.as_str()),
        ("False", "WebhookTimeout")
    );
    assert_eq!(reasons(&step), vec![reason::COMPLETED]);
    assert!(step.status.completion_time.is_some());
    assert_eq!(step.requeue, None);
}

#[test]
fn a_success_counted_from_a_pod_the_job_did_not_build_runs_the_stage_again() {
    let forged = || {
        let mut f = ReportJobFixture::new()
            .planned(1)
            .chunks_job("0", "0", "")
            .job(Stage::Assemble, JobState::Complete);
        f.refused_pods
            .insert(Stage::Assemble, vec!["orders-assemble-forged".into()]);
        f
    };
    let step = forged().decide();
    assert_eq!(
        step.action,
        Action::DeleteJobs(vec!["orders-assemble".to_string()])
    );
    assert_ne!(step.status.phase, Some(Phase::Succeeded));
    assert!(step.status.output.is_none(), "nothing of the forged result");
    let refused = condition(&step, conditions::RESULT_REFUSED);
    assert!(
        refused
            .message
            .starts_with("1: the assemble Job counted the success of pod orders-assemble-forged"),
        "{}",
        refused.message
    );
    assert!(reasons(&step).contains(&reason::FOREIGN_POD));
    // After three reruns the ReportJob fails rather than loop.
    let step = forged()
        .status(|s| {
            s.conditions
                .push(k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                    type_: conditions::RESULT_REFUSED.into(),
                    status: "True".into(),
                    reason: reason::FOREIGN_POD.into(),
                    message: "3: earlier".into(),
                    observed_generation: Some(1),
                    last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        Timestamp::from_second(NOW).expect("time"),
                    ),
                })
        })
        .decide();
    assert_eq!(step.status.phase, Some(Phase::Failed));
    assert!(step.status.output.is_none());
}

#[test]
fn a_bad_assemble_result_fails_the_reportjob() {
    let step = ReportJobFixture::new()
        .planned(1)
        .chunks_job("0", "0", "")
        .job(Stage::Assemble, JobState::Complete)
        .raw_result(Stage::Assemble, r#"{"result":"Assembled","rows":1}"#)
        .decide();
    assert_eq!(step.status.phase, Some(Phase::Failed));
    assert_eq!(
        condition(&step, conditions::FAILED).reason,
        reason::BAD_RESULT
    );
    assert!(
        step.status.message.as_deref().is_some_and(
            |m| m.starts_with("the assemble Job succeeded but its result is unreadable")
        ),
        "{:?}",
        step.status.message
    );
}

#[test]
fn a_failed_assemble_job_fails_with_the_pods_error() {
    let step = ReportJobFixture::new()
        .planned(1)
        .chunks_job("0", "0", "")
        .job(
            Stage::Assemble,
            JobState::Failed("BackoffLimitExceeded", "too many failures"),
        )
        .failed_pod(Stage::Assemble, "part 0 has the wrong digest")
        .decide();
    assert_eq!(
        condition(&step, conditions::FAILED).reason,
        reason::ASSEMBLE_FAILED
    );
    assert_eq!(
        step.status.message.as_deref(),
        Some("assembly failed: part 0 has the wrong digest")
    );
}

/// An assemble pod that found parts 1 and 3 damaged, deleted them and exited 4.
fn damaged_assembly(f: ReportJobFixture) -> ReportJobFixture {
    f.planned(4)
        .chunks_job("0-3", "0-3", "")
        .job(
            Stage::Assemble,
            JobState::Failed("PodFailurePolicy", "exit 4"),
        )
        .failed_with(
            Stage::Assemble,
            4,
            "damaged",
            "damaged_chunks=1,3: the parts of these chunks were damaged and are removed",
        )
}

#[test]
fn damaged_parts_are_shown_as_failed_chunks_and_a_retry_exports_exactly_them() {
    let step = damaged_assembly(ReportJobFixture::new()).decide();
    assert_eq!(
        condition(&step, conditions::FAILED).reason,
        reason::ASSEMBLE_FAILED
    );
    assert_eq!(step.status.failed_chunks.as_deref(), Some("1,3"));

    let step = damaged_assembly(ReportJobFixture::new())
        .status(|s| {
            s.phase = Some(Phase::Failed);
            s.completed_chunks = Some("0-3".into());
            s.retry_token = Some("1".into());
        })
        .annotate(names::RETRY_ANNOTATION, "2")
        .decide();
    // Both Jobs go: the chunks Job is created again for the damaged chunks only.
    assert_eq!(
        step.action,
        Action::DeleteJobs(vec!["orders-assemble".into(), "orders-chunks".into()])
    );
    assert_eq!(step.status.completed_chunks.as_deref(), Some("0,2"));
    assert_eq!(
        step.status.message.as_deref(),
        Some("re-exporting the damaged chunks 1,3, then assembling again")
    );

    // Next round, with the Jobs gone: a chunks Job listing exactly chunks 1 and 3.
    let mut next = ReportJobFixture::new().planned(4).status(|s| {
        s.completed_chunks = Some("0,2".into());
        s.retry_token = Some("2".into());
    });
    next.jobs.remove(&Stage::Chunks);
    let step = next.decide();
    let job = created(&step);
    assert_eq!(
        job.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(names::CHUNKS_ANNOTATION))
            .map(String::as_str),
        Some("1,3")
    );
    assert_eq!(job.spec.as_ref().and_then(|s| s.completions), Some(2));
}

#[test]
fn a_finished_reportjob_is_deleted_once_its_ttl_passed() {
    let finished = |f: ReportJobFixture| {
        f.planned(1)
            .spec(|s| s.ttl_seconds_after_finished = Some(60))
            .status(|s| {
                s.phase = Some(Phase::Succeeded);
                s.completion_time = Some(Time(Timestamp::from_second(NOW).expect("t")));
            })
    };
    let step = finished(ReportJobFixture::new().later(20)).decide();
    assert_eq!(step.action, Action::None);
    assert_eq!(step.requeue, Some(Duration::from_secs(40)));
    let step = finished(ReportJobFixture::new().later(60)).decide();
    assert_eq!(step.action, Action::DeleteReportJob);
    // Without a TTL, a finished ReportJob stays and is not looked at again.
    let step = ReportJobFixture::new()
        .planned(1)
        .status(|s| s.phase = Some(Phase::Succeeded))
        .decide();
    assert_eq!((step.action, step.requeue), (Action::None, None));
}

// --- failure: retry and notification ---

fn failed_chunks(f: ReportJobFixture) -> ReportJobFixture {
    f.planned(3)
        .status(|s| {
            s.phase = Some(Phase::Failed);
            s.failed_chunks = Some("2".into());
            s.completion_time = Some(Time(Timestamp::from_second(NOW - 10).expect("t")));
            s.retry_token = Some("1".into());
        })
        .chunks_job("0-2", "0-1", "2")
}

#[test]
fn a_new_retry_token_deletes_the_failed_stage_job() {
    let step = failed_chunks(ReportJobFixture::new())
        .annotate(names::RETRY_ANNOTATION, "2")
        .decide();
    assert_eq!(
        step.action,
        Action::DeleteJobs(vec!["orders-chunks".into()])
    );
    assert_eq!(step.status.retry_token.as_deref(), Some("2"));
    assert_eq!(step.status.phase, Some(Phase::Running));
    assert_eq!(step.status.failed_chunks, None);
    assert_eq!(step.status.completion_time, None);
    let failed = condition(&step, conditions::FAILED);
    assert_eq!(
        (failed.status.as_str(), failed.reason.as_str()),
        ("False", reason::RETRYING)
    );
    assert_eq!(
        step.status.message.as_deref(),
        Some("retrying the chunks not exported yet")
    );
    assert_eq!(reasons(&step), vec![reason::RETRYING]);

    // The token already handled: nothing happens.
    let step = failed_chunks(ReportJobFixture::new())
        .annotate(names::RETRY_ANNOTATION, "1")
        .decide();
    assert_eq!((step.action, step.requeue), (Action::None, None));
}

#[test]
fn a_failed_run_sends_its_failure_notification_from_a_notify_job() {
    let with_notify = |f: ReportJobFixture| {
        failed_chunks(f).spec(|s| {
            s.notify = Some(
                serde_json::from_value(serde_json::json!({
                    "webhookSecretRef": {"name": "hook", "key": "url"}
                }))
                .expect("notify"),
            );
        })
    };
    let step = with_notify(ReportJobFixture::new()).decide();
    let job = created(&step);
    assert_eq!(job.name_any(), "orders-notify");

    let step = with_notify(ReportJobFixture::new())
        .job(Stage::Notify, JobState::Running)
        .decide();
    assert_eq!(
        (step.action.clone(), step.requeue),
        (Action::None, Some(RUNNING_RESYNC))
    );

    let delivered = StageResult::Notified(NotifyReport {
        delivered: true,
        reason: None,
        attempts: 1,
        status: Some(200),
        message: None,
    });
    let step = with_notify(ReportJobFixture::new())
        .job(Stage::Notify, JobState::Complete)
        .result(Stage::Notify, &delivered)
        .decide();
    assert_eq!(step.action, Action::None);
    let notified = condition(&step, conditions::NOTIFIED);
    assert_eq!(
        (notified.status.as_str(), notified.reason.as_str()),
        ("True", reason::WEBHOOK_DELIVERED)
    );

    // A notify pod that failed (a usage error) counts as not delivered.
    let step = with_notify(ReportJobFixture::new())
        .job(Stage::Notify, JobState::Failed("BackoffLimitExceeded", ""))
        .failed_pod(Stage::Notify, "REPORTJOB_WEBHOOK_URL is not set")
        .decide();
    let notified = condition(&step, conditions::NOTIFIED);
    assert_eq!(
        (notified.status.as_str(), notified.reason.as_str()),
        ("False", reason::NOTIFY_FAILED)
    );

    // A retry deletes the notify Job too, and forgets the outcome.
    let step = with_notify(ReportJobFixture::new())
        .job(Stage::Notify, JobState::Complete)
        .status(|s| {
            s.conditions.push(Condition {
                type_: conditions::NOTIFIED.into(),
                status: "True".into(),
                reason: reason::WEBHOOK_DELIVERED.into(),
                message: String::new(),
                observed_generation: Some(1),
                last_transition_time: Time(Timestamp::UNIX_EPOCH),
            })
        })
        .annotate(names::RETRY_ANNOTATION, "2")
        .decide();
    assert_eq!(
        step.action,
        Action::DeleteJobs(vec!["orders-chunks".into(), "orders-notify".into()])
    );
    assert!(
        !step
            .status
            .conditions
            .iter()
            .any(|c| c.type_ == conditions::NOTIFIED)
    );
}

// --- a spec changed after planning ---

#[test]
fn a_spec_changed_after_planning_runs_on_with_the_recorded_spec() {
    let step = ReportJobFixture::new()
        .planned(3)
        .spec(|s| s.chunking.parallelism = 7)
        .decide();
    let job = created(&step);
    // The chunks Job is built from the planned spec (parallelism 2, not 7).
    assert_eq!(job.spec.as_ref().and_then(|s| s.parallelism), Some(2));
    let ignored = condition(&step, conditions::SPEC_CHANGE_IGNORED);
    assert_eq!(
        (ignored.status.as_str(), ignored.reason.as_str()),
        ("True", reason::SPEC_CHANGED)
    );
}

#[test]
fn a_spec_changed_after_planning_without_a_readable_record_fails_saying_why() {
    // The plan Job is gone.
    let mut fixture = ReportJobFixture::new()
        .planned(3)
        .spec(|s| s.chunking.parallelism = 7);
    fixture.jobs.clear();
    let step = fixture.decide();
    assert_eq!(
        condition(&step, conditions::FAILED).reason,
        reason::SPEC_CHANGED
    );
    assert!(
        step.status
            .message
            .as_deref()
            .is_some_and(|m| m.contains("the plan Job was deleted"))
    );

    // The plan Job is there but its record is not.
    let mut fixture = ReportJobFixture::new()
        .planned(3)
        .spec(|s| s.chunking.parallelism = 7);
    if let Some(job) = fixture.jobs.get_mut(&Stage::Plan) {
        job.annotations_mut().remove(names::SPEC_ANNOTATION);
    }
    let step = fixture.decide();
    assert_eq!(
        condition(&step, conditions::FAILED).reason,
        reason::PLANNED_SPEC_UNREADABLE
    );
    let message = step.status.message.expect("message");
    assert!(
        message.contains("has no reporting.dev/spec annotation"),
        "{message}"
    );
    assert!(!message.contains("deleted"), "{message}");

    let mut fixture = ReportJobFixture::new()
        .planned(3)
        .spec(|s| s.chunking.parallelism = 7);
    if let Some(job) = fixture.jobs.get_mut(&Stage::Plan) {
        job.annotations_mut()
            .insert(names::SPEC_ANNOTATION.into(), "{not json".into());
    }
    let message = fixture.decide().status.message.expect("message");
    assert!(message.contains("is not a ReportJob spec"), "{message}");

    // A record that parses but is not a valid spec (edited by hand, say) is not trusted.
    let mut fixture = ReportJobFixture::new()
        .planned(3)
        .spec(|s| s.chunking.parallelism = 7);
    if let Some(job) = fixture.jobs.get_mut(&Stage::Plan) {
        let mut recorded = fixture.rj.spec.clone();
        recorded.source.where_ = Some("true) OR (true".into());
        let text = serde_json::to_string(&recorded).expect("json");
        job.annotations_mut()
            .insert(names::SPEC_ANNOTATION.into(), text);
    }
    let step = fixture.decide();
    assert_eq!(
        condition(&step, conditions::FAILED).reason,
        reason::PLANNED_SPEC_UNREADABLE
    );
    let message = step.status.message.expect("message");
    assert!(
        message.contains("is not valid: spec.source.where"),
        "{message}"
    );
}

// --- deletion ---

#[test]
fn deleting_stops_every_stage_job_first() {
    let step = ReportJobFixture::new()
        .planned(3)
        .chunks_job("0-2", "0", "")
        .deleting()
        .decide();
    assert_eq!(
        step.action,
        Action::DeleteJobs(vec!["orders-plan".into(), "orders-chunks".into()])
    );
}

#[test]
fn deleting_then_cleans_up_and_releases_the_finalizer() {
    let gone = |f: ReportJobFixture| {
        let mut f = f.planned(3).deleting();
        f.jobs.clear();
        f
    };
    let step = gone(ReportJobFixture::new()).decide();
    assert_eq!(created(&step).name_any(), "orders-cleanup");
    assert_eq!(reasons(&step), vec![reason::CLEANING_UP]);

    let step = gone(ReportJobFixture::new())
        .job(Stage::Cleanup, JobState::Running)
        .decide();
    assert_eq!(step.action, Action::None);

    let step = gone(ReportJobFixture::new())
        .job(Stage::Cleanup, JobState::Complete)
        .decide();
    assert_eq!(step.action, Action::RemoveFinalizer);

    let step = gone(ReportJobFixture::new())
        .job(
            Stage::Cleanup,
            JobState::Failed("BackoffLimitExceeded", "failed"),
        )
        .failed_pod(Stage::Cleanup, "access denied")
        .decide();
    assert_eq!(step.action, Action::RemoveFinalizer);
    assert_eq!(reasons(&step), vec![reason::CLEANUP_FAILED]);
    assert_eq!(
        step.notes[0].message,
        "staging data may be left behind: access denied"
    );
}

// --- cancel ---

#[test]
fn cancel_ends_a_running_snapshot_run_and_stops_every_stage_job_the_holder_included() {
    let step = under_snapshot()
        .planned(3)
        .chunks_job("0-2", "0", "")
        .job(Stage::Snapshot, JobState::Running)
        .annotate(names::CANCEL_ANNOTATION, "2026-12-07T05:00:00Z")
        .decide();
    assert_eq!(step.status.phase, Some(Phase::Cancelled));
    assert!(
        step.status
            .message
            .as_deref()
            .unwrap_or("")
            .contains("cancelled by `reportjob cancel`"),
        "{:?}",
        step.status.message
    );
    assert!(step.status.completion_time.is_some());
    let complete = condition(&step, conditions::COMPLETE);
    assert_eq!(
        (complete.status.as_str(), complete.reason.as_str()),
        ("False", reason::CANCELLED)
    );
    assert_eq!(
        step.action,
        Action::DeleteJobs(vec![
            "orders-plan".into(),
            "orders-chunks".into(),
            "orders-snapshot".into()
        ])
    );
    assert_eq!(reasons(&step), vec![reason::CANCELLED]);
    assert_eq!(
        step.requeue, None,
        "a cancelled run is not resynced as a running one"
    );
}

#[test]
fn a_cancelled_run_removes_its_staging_once_and_never_the_report() {
    let cancelled = || {
        let mut f = ReportJobFixture::new()
            .spec(|s| s.output.delete_with_report_job = true)
            .planned(3)
            .annotate(names::CANCEL_ANNOTATION, "now")
            .status(|s| s.phase = Some(Phase::Cancelled));
        f.jobs.clear();
        f
    };
    let step = cancelled().decide();
    let job = created(&step);
    assert_eq!(job.name_any(), "orders-cleanup");
    let args = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod")
        .containers[0]
        .args
        .clone()
        .unwrap_or_default();
    assert!(!args.contains(&"--delete-output".to_string()), "{args:?}");

    let step = cancelled().job(Stage::Cleanup, JobState::Running).decide();
    assert_eq!(step.action, Action::None);
    assert!(
        step.status
            .conditions
            .iter()
            .all(|c| c.type_ != conditions::STAGING_REMOVED)
    );

    let step = cancelled().job(Stage::Cleanup, JobState::Complete).decide();
    assert_eq!(step.action, Action::None);
    assert_eq!(condition(&step, conditions::STAGING_REMOVED).status, "True");
    assert_eq!(step.status.phase, Some(Phase::Cancelled));

    // Once recorded, a cleanup Job removed by its TTL is not created again.
    let step = cancelled()
        .status(|s| {
            s.conditions.push(Condition {
                type_: conditions::STAGING_REMOVED.into(),
                status: "True".into(),
                reason: reason::STAGING_REMOVED.into(),
                message: String::new(),
                observed_generation: Some(1),
                last_transition_time: Time(Timestamp::UNIX_EPOCH),
            })
        })
        .decide();
    assert_eq!(step.action, Action::None);

    let step = cancelled()
        .job(
            Stage::Cleanup,
            JobState::Failed("BackoffLimitExceeded", "failed"),
        )
        .failed_pod(Stage::Cleanup, "access denied")
        .decide();
    let removed = condition(&step, conditions::STAGING_REMOVED);
    assert_eq!(
        (removed.status.as_str(), removed.message.as_str()),
        ("False", "access denied")
    );
}

#[test]
fn a_queued_run_cancelled_before_it_started_has_nothing_to_remove() {
    let step = ReportJobFixture::new()
        .queued()
        .annotate(names::CANCEL_ANNOTATION, "now")
        .decide();
    assert_eq!(step.status.phase, Some(Phase::Cancelled));
    assert_eq!(step.action, Action::None);
    assert_eq!(condition(&step, conditions::STAGING_REMOVED).status, "True");
}

#[test]
fn cancel_leaves_a_finished_run_alone_and_retry_does_not_revive_a_cancelled_one() {
    let succeeded = ReportJobFixture::new()
        .planned(1)
        .status(|s| s.phase = Some(Phase::Succeeded))
        .annotate(names::CANCEL_ANNOTATION, "now")
        .decide();
    assert_eq!(succeeded.status.phase, Some(Phase::Succeeded));

    let mut cancelled = ReportJobFixture::new()
        .planned(1)
        .status(|s| s.phase = Some(Phase::Cancelled))
        .annotate(names::RETRY_ANNOTATION, "1");
    cancelled.jobs.clear();
    let step = cancelled.decide();
    assert_eq!(step.status.phase, Some(Phase::Cancelled));
    assert_ne!(step.status.retry_token.as_deref(), Some("1"));
}

#[test]
fn deleting_a_reportjob_that_never_started_releases_it_at_once() {
    let step = ReportJobFixture::new().deleting().decide();
    assert_eq!(step.action, Action::RemoveFinalizer);
    let step = ReportJobFixture::new()
        .without_finalizer()
        .deleting()
        .decide();
    assert_eq!(step.action, Action::None);
}

#[test]
fn nothing_is_created_while_a_job_of_the_same_name_goes_away() {
    let step = ReportJobFixture::new()
        .planned(3)
        .terminating(Stage::Chunks)
        .decide();
    assert_eq!(step.action, Action::None);
    assert_eq!(step.requeue, Some(TERMINATING_RESYNC));
}

#[test]
fn every_action_describes_itself() {
    let job = jobs::cleanup_job(
        &context(
            &ReportJobFixture::new().rj,
            &valid(&ReportJobFixture::new().rj),
            &defaults(),
        ),
        "rj-0123456789ab",
    );
    for (action, text) in [
        (Action::None, "none"),
        (Action::AddFinalizer, "add finalizer"),
        (
            Action::CreateJob(Box::new(job)),
            "create Job orders-cleanup",
        ),
        (
            Action::SuspendChunks(true),
            "set suspend=true on the chunks Job",
        ),
        (
            Action::DeleteJobs(vec!["a".into(), "b".into()]),
            "delete Jobs a, b",
        ),
        (Action::RemoveFinalizer, "remove finalizer"),
        (Action::DeleteReportJob, "delete the ReportJob (ttl)"),
    ] {
        assert_eq!(action.describe(), text);
    }
}

/// The fixture under one snapshot (`consistency: Snapshot`, the default).
fn under_snapshot() -> ReportJobFixture {
    ReportJobFixture::new()
        .spec(|s| s.source.consistency = reportjob_core::api::Consistency::Snapshot)
}

fn generation_env(job: &Job) -> Option<String> {
    job.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == reportjob_core::snapshot::GENERATION_ENV)
        .and_then(|e| e.value.clone())
}

#[test]
fn under_one_snapshot_the_holder_comes_first_and_stages_read_its_generation() {
    let step = under_snapshot().decide();
    let Action::CreateJob(holder) = &step.action else {
        panic!("{:?}", step.action);
    };
    assert_eq!(holder.name_any(), "orders-snapshot");
    assert_eq!(generation_env(holder).as_deref(), Some("0"));
    assert_eq!(holder.spec.as_ref().unwrap().backoff_limit, Some(0));

    let step = under_snapshot()
        .job(Stage::Snapshot, JobState::Running)
        .decide();
    let Action::CreateJob(plan) = &step.action else {
        panic!("{:?}", step.action);
    };
    assert_eq!(plan.name_any(), "orders-plan");
    assert_eq!(generation_env(plan).as_deref(), Some("0"));
    let codes = &plan
        .spec
        .as_ref()
        .unwrap()
        .pod_failure_policy
        .as_ref()
        .unwrap()
        .rules[0]
        .on_exit_codes
        .as_ref()
        .unwrap()
        .values;
    assert!(
        codes.contains(&reportjob_core::stage_protocol::EXIT_SNAPSHOT_LOST),
        "{codes:?}"
    );
}

#[test]
fn a_lost_snapshot_restarts_the_export_then_fails_as_snapshot_lost() {
    let step = under_snapshot()
        .planned(3)
        .job(
            Stage::Snapshot,
            JobState::Failed("BackoffLimitExceeded", "pod failed"),
        )
        .chunks_job("0-2", "0", "")
        .status(|s| s.completed_chunks = Some("0".into()))
        .decide();
    assert_eq!(
        step.action,
        Action::DeleteJobs(vec!["orders-chunks".into(), "orders-snapshot".into()])
    );
    assert_eq!(step.status.snapshot_restarts, Some(1));
    assert_eq!(step.status.snapshot_generation, Some(1));
    assert_eq!(step.status.completed_chunks, None);
    assert_eq!(step.status.chunks.as_ref().unwrap().succeeded, 0);
    assert!(
        step.status
            .message
            .as_deref()
            .unwrap()
            .contains("(restart 1 of 2)"),
        "{:?}",
        step.status.message
    );

    // The next holder and chunks Job read generation 1.
    let step = under_snapshot()
        .planned(3)
        .status(|s| {
            s.snapshot_restarts = Some(1);
            s.snapshot_generation = Some(1);
        })
        .decide();
    let Action::CreateJob(holder) = &step.action else {
        panic!("{:?}", step.action);
    };
    assert_eq!(generation_env(holder).as_deref(), Some("1"));

    let step = under_snapshot()
        .planned(3)
        .status(|s| s.snapshot_restarts = Some(2))
        .job(
            Stage::Snapshot,
            JobState::Failed("BackoffLimitExceeded", "pod failed"),
        )
        .decide();
    assert_eq!(step.status.phase, Some(Phase::Failed));
    let failed = step
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::FAILED)
        .unwrap();
    assert_eq!(failed.reason, reason::SNAPSHOT_LOST);
}

#[test]
fn a_holder_that_fails_permanently_fails_the_run_without_a_new_snapshot() {
    let step = under_snapshot()
        .job(
            Stage::Snapshot,
            JobState::Failed("BackoffLimitExceeded", "pod failed"),
        )
        .failed_with(
            Stage::Snapshot,
            reportjob_core::stage_protocol::EXIT_PERMANENT,
            "storage",
            "cannot create orders.csv.parts: Permission denied (os error 13)",
        )
        .decide();
    assert_eq!(step.status.phase, Some(Phase::Failed));
    assert_eq!(step.status.snapshot_restarts, None);
    let failed = condition(&step, conditions::FAILED);
    assert_eq!(failed.reason, reason::SNAPSHOT_FAILED);
    assert!(
        failed
            .message
            .starts_with("the snapshot holder pod failed: ")
            && failed.message.contains("Permission denied"),
        "{}",
        failed.message
    );
}

#[test]
fn a_finished_run_releases_its_snapshot() {
    let step = under_snapshot()
        .planned(3)
        .job(Stage::Snapshot, JobState::Running)
        .status(|s| s.phase = Some(Phase::Succeeded))
        .decide();
    assert_eq!(
        step.action,
        Action::DeleteJobs(vec!["orders-snapshot".into()])
    );
}

#[test]
fn a_retry_under_one_snapshot_exports_every_chunk_again_under_a_new_one() {
    let step = under_snapshot()
        .planned(3)
        .chunks_job("0-2", "0-1", "2")
        .status(|s| {
            s.phase = Some(Phase::Failed);
            s.completed_chunks = Some("0-1".into());
        })
        .annotate(names::RETRY_ANNOTATION, "1")
        .decide();
    assert_eq!(
        step.action,
        Action::DeleteJobs(vec!["orders-chunks".into()])
    );
    assert_eq!(step.status.snapshot_generation, Some(1));
    assert_eq!(step.status.snapshot_restarts, None);
    assert_eq!(step.status.completed_chunks, None);
}

#[test]
fn a_suspended_export_releases_its_snapshot_and_resumes_under_a_new_one_once_admitted() {
    // Suspended while exporting: the holder and the chunks Job read under it are deleted.
    let step = under_snapshot()
        .planned(3)
        .job(Stage::Snapshot, JobState::Running)
        .chunks_job("0-2", "0", "")
        .status(|s| s.completed_chunks = Some("0".into()))
        .spec(|s| s.suspend = true)
        .decide();
    assert_eq!(
        step.action,
        Action::DeleteJobs(vec!["orders-chunks".into(), "orders-snapshot".into()])
    );
    assert_eq!(step.status.phase, Some(Phase::Suspended));
    assert_eq!(step.status.snapshot_generation, Some(1));
    assert_eq!(step.status.snapshot_restarts, None, "not a lost snapshot");
    assert_eq!(step.status.completed_chunks, None);
    assert!(
        step.status
            .message
            .as_deref()
            .is_some_and(|m| m.contains("snapshot is released")),
        "{:?}",
        step.status.message
    );
    assert_eq!(
        reasons(&step),
        vec![reason::SNAPSHOT_RELEASED, reason::SUSPENDED]
    );

    // Still suspended, nothing held: no holder is taken; the chunks Job waits suspended.
    let released = step.status.clone();
    let step = under_snapshot()
        .planned(3)
        .spec(|s| s.suspend = true)
        .status(|s| *s = released.clone())
        .decide();
    let job = created(&step);
    assert_eq!(job.name_any(), "orders-chunks");
    assert_eq!(job.spec.as_ref().and_then(|s| s.suspend), Some(true));
    assert_eq!(generation_env(job).as_deref(), Some("1"));
    assert_eq!(step.status.phase, Some(Phase::Suspended));

    // Resumed while every run slot is taken: no snapshot is taken while it waits.
    let waiting = step.status.clone();
    let mut fixture = under_snapshot()
        .planned(3)
        .chunks_job("0-2", "", "")
        .status(|s| *s = waiting.clone())
        .queued();
    if let Some(spec) = fixture
        .jobs
        .get_mut(&Stage::Chunks)
        .and_then(|j| j.spec.as_mut())
    {
        spec.suspend = Some(true);
    }
    let step = fixture.decide();
    assert_eq!(step.action, Action::None);
    assert_eq!(step.status.phase, Some(Phase::Suspended));
    assert_eq!(
        condition(&step, conditions::QUEUED).reason,
        reason::RUN_LIMIT_REACHED
    );

    // Admitted: the next generation's holder comes first.
    fixture.run_slot = RunSlot::Admitted;
    let step = fixture.decide();
    let Action::CreateJob(holder) = &step.action else {
        panic!("{:?}", step.action);
    };
    assert_eq!(holder.name_any(), "orders-snapshot");
    assert_eq!(generation_env(holder).as_deref(), Some("1"));
}

#[test]
fn a_suspended_per_chunk_run_keeps_its_chunks_job() {
    let step = ReportJobFixture::new()
        .planned(3)
        .chunks_job("0-2", "0", "")
        .spec(|s| s.suspend = true)
        .decide();
    assert_eq!(step.action, Action::SuspendChunks(true));
    assert_eq!(
        step.status.message.as_deref(),
        Some("suspended by spec.suspend; clear it to resume")
    );
}

#[test]
fn a_retried_plan_failure_under_one_snapshot_takes_a_new_snapshot() {
    // The plan failed (the holder of generation 0 then goes with the failed run).
    let failed = under_snapshot()
        .status(|s| s.phase = Some(Phase::Planning))
        .job(Stage::Snapshot, JobState::Running)
        .plan_job(JobState::Failed("PodFailurePolicy", "exit code 3"))
        .failed_pod(
            Stage::Plan,
            "spec.source.keyColumn: column \"nope\" does not exist",
        )
        .decide()
        .status;
    assert_eq!(failed.phase, Some(Phase::Failed));
    let step = under_snapshot()
        .plan_job(JobState::Failed("PodFailurePolicy", "exit code 3"))
        .status(|s| *s = failed.clone())
        .annotate(names::RETRY_ANNOTATION, "1")
        .decide();
    assert_eq!(step.action, Action::DeleteJobs(vec!["orders-plan".into()]));
    // The new holder and plan pod read generation 1: never the old record.
    assert_eq!(step.status.snapshot_generation, Some(1));
    assert_eq!(step.status.snapshot_restarts, None, "not a lost snapshot");
    assert_eq!(
        step.status.message.as_deref(),
        Some("retrying the plan under a new database snapshot")
    );
    let retried = step.status.clone();
    let step = under_snapshot()
        .status(|s| *s = retried.clone())
        .annotate(names::RETRY_ANNOTATION, "1")
        .decide();
    let Action::CreateJob(holder) = &step.action else {
        panic!("{:?}", step.action);
    };
    assert_eq!(holder.name_any(), "orders-snapshot");
    assert_eq!(generation_env(holder).as_deref(), Some("1"));
}
