//! What the controller observes before deciding: the ReportJob, its stage Jobs, the pods
//! of the stages whose results are needed, and the spec the run was planned with; and the
//! reduction of Jobs and pods to what the decisions look at.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::names::{self, Stage};
use super::results::created_by;
use super::{Context, Error, kube_err};
use crate::api::conditions;
use crate::api::validate::validate;
use crate::api::{ReportJob, ReportJobSpec, ValidSpec};

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

/// The spec a run was planned with, as recorded on its plan Job
/// ([`names::SPEC_ANNOTATION`]).
#[derive(Clone, Debug, PartialEq)]
pub enum PlannedSpec {
    /// There is no plan Job (never created, or deleted).
    NoPlanJob,
    /// The recorded spec, validated again as it is read.
    Recorded(Box<ValidSpec>),
    /// The plan Job exists but its record cannot be read: why.
    Unreadable(String),
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
    /// Why a stage Job that has no pod cannot create one: the message of its newest
    /// `FailedCreate` event (a ResourceQuota, a LimitRange, an admission webhook), bounded.
    pub create_failures: BTreeMap<Stage, String>,
    /// The spec the run was planned with (when it differs from the ReportJob's current
    /// spec, the planned one is used).
    pub planned_spec: PlannedSpec,
    /// Now.
    pub now: Timestamp,
}

impl Observed {
    /// The planned spec when it could be read.
    pub fn planned(&self) -> Option<&ValidSpec> {
        match &self.planned_spec {
            PlannedSpec::Recorded(spec) => Some(spec),
            _ => None,
        }
    }
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
pub fn job_failed(job: &Job) -> bool {
    matches!(job_outcome(job), JobOutcome::Failed { .. })
        || job
            .status
            .as_ref()
            .and_then(|s| s.failed_indexes.as_deref())
            .is_some_and(|f| !f.is_empty())
}

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
            Stage::Cleanup | Stage::Snapshot => matches!(outcome, JobOutcome::Failed { .. }),
            Stage::Notify => {
                finished
                    && !status
                        .conditions
                        .iter()
                        .any(|c| c.type_ == conditions::NOTIFIED)
            }
        };
        let not_ready = s.active.unwrap_or(0) > s.ready.unwrap_or(0);
        if needed || not_ready || lacks_pods(job) {
            out.push(*stage);
        }
    }
    out
}

/// Whether a running, unsuspended stage Job has no pod at all: its pods cannot be created
/// (quota, admission) or were not created yet. Its pods (those that finished) and its
/// `FailedCreate` events are then read, to say why and to time how long it has been so.
pub fn lacks_pods(job: &Job) -> bool {
    let suspended = job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);
    let active = job.status.as_ref().and_then(|s| s.active).unwrap_or(0);
    !suspended && active == 0 && job_outcome(job) == JobOutcome::Running
}

/// The longest `FailedCreate` message kept: quota messages name the quota, the resources
/// and the amounts within a few hundred characters.
const MAX_CREATE_FAILURE: usize = 600;

/// The newest of a Job's `FailedCreate` events, as the message the status shows.
pub fn newest_create_failure(events: &[Event]) -> Option<String> {
    events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("FailedCreate"))
        .max_by_key(|e| {
            e.last_timestamp
                .as_ref()
                .map(|t| t.0)
                .or_else(|| e.event_time.as_ref().map(|t| t.0))
        })
        .and_then(|e| e.message.as_deref())
        .map(|m| m.trim().chars().take(MAX_CREATE_FAILURE).collect())
}

/// The spec recorded on a plan Job.
pub fn planned_spec(plan_job: Option<&Job>) -> PlannedSpec {
    let Some(job) = plan_job else {
        return PlannedSpec::NoPlanJob;
    };
    let Some(text) = job.annotations().get(names::SPEC_ANNOTATION) else {
        return PlannedSpec::Unreadable(format!(
            "the plan Job {} has no {} annotation (was it created by an older controller?)",
            job.name_any(),
            names::SPEC_ANNOTATION
        ));
    };
    let spec = match serde_json::from_str::<ReportJobSpec>(text) {
        Ok(spec) => spec,
        Err(e) => {
            return PlannedSpec::Unreadable(format!(
                "the {} annotation of the plan Job {} is not a ReportJob spec: {e}",
                names::SPEC_ANNOTATION,
                job.name_any()
            ));
        }
    };
    match validate(&spec) {
        Ok(valid) => PlannedSpec::Recorded(Box::new(valid)),
        Err(errors) => PlannedSpec::Unreadable(format!(
            "the spec recorded on the plan Job {} is not valid: {}",
            job.name_any(),
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )),
    }
}

/// A pod as the decisions see it.
pub fn pod_info(pod: &Pod) -> PodInfo {
    let status = pod.status.clone().unwrap_or_default();
    let container = status
        .container_statuses
        .unwrap_or_default()
        .into_iter()
        .next();
    let state = container.and_then(|c| c.state);
    let terminated = state.as_ref().and_then(|s| s.terminated.clone());
    let waiting = state
        .as_ref()
        .and_then(|s| s.waiting.clone())
        .map(|w| (w.reason.unwrap_or_default(), w.message.unwrap_or_default()));
    PodInfo {
        name: pod.name_any(),
        completion_index: pod
            .annotations()
            .get("batch.kubernetes.io/job-completion-index")
            .and_then(|i| i.parse().ok()),
        phase: status.phase.unwrap_or_default(),
        exit_code: terminated.as_ref().map(|t| t.exit_code),
        message: terminated.as_ref().and_then(|t| t.message.clone()),
        waiting,
        finished_at: terminated.and_then(|t| t.finished_at).map(|t| t.0),
    }
}

/// Reads the ReportJob's Jobs and, when the decisions need them, their pods.
pub async fn observe(ctx: &Context, rj: &ReportJob) -> Result<Observed, Error> {
    let ns = rj.namespace().unwrap_or_default();
    let name = rj.name_any();
    let uid = rj.uid().unwrap_or_default();
    let job_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let selector = format!("{}={}", names::REPORTJOB_LABEL, name);
    ctx.metrics.api_requests.inc();
    let listed = job_api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(kube_err(format!("listing the Jobs of {ns}/{name}")))?;
    let mut jobs = BTreeMap::new();
    let mut terminating = Vec::new();
    for job in listed.items {
        let ours = job
            .owner_references()
            .iter()
            .any(|o| o.uid == uid && o.controller == Some(true));
        let stage = job
            .labels()
            .get(names::STAGE_LABEL)
            .and_then(|s| Stage::parse(s));
        let (true, Some(stage)) = (ours, stage) else {
            continue;
        };
        if job.metadata.deletion_timestamp.is_some() {
            terminating.push(stage);
        } else {
            jobs.insert(stage, job);
        }
    }
    let mut pods = BTreeMap::new();
    for stage in pods_needed(rj, &jobs) {
        let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        let selector = format!("{selector},{}={}", names::STAGE_LABEL, stage.as_str());
        ctx.metrics.api_requests.inc();
        let listed = pod_api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(kube_err(format!(
                "listing the {} pods of {ns}/{name}",
                stage.as_str()
            )))?;
        // Only pods the stage Job itself created report results (not any pod with its labels).
        let ours = listed
            .items
            .iter()
            .filter(|p| jobs.get(&stage).is_some_and(|job| created_by(p, job)));
        pods.insert(stage, ours.map(pod_info).collect());
    }
    let mut create_failures = BTreeMap::new();
    for (stage, job) in jobs.iter().filter(|(_, job)| lacks_pods(job)) {
        let event_api: Api<Event> = Api::namespaced(ctx.client.clone(), &ns);
        let fields = format!(
            "involvedObject.uid={},reason=FailedCreate",
            job.uid().unwrap_or_default()
        );
        ctx.metrics.api_requests.inc();
        let listed = event_api
            .list(&ListParams::default().fields(&fields))
            .await
            .map_err(kube_err(format!(
                "listing the events of the {} Job of {ns}/{name}",
                stage.as_str()
            )))?;
        if let Some(why) = newest_create_failure(&listed.items) {
            create_failures.insert(*stage, why);
        }
    }
    let planned_spec = planned_spec(jobs.get(&Stage::Plan));
    Ok(Observed {
        rj: rj.clone(),
        jobs,
        terminating,
        pods,
        create_failures,
        planned_spec,
        now: Timestamp::now(),
    })
}
