//! What the controller observes before deciding: the ReportJob, its stage Jobs, the pods
//! of the stages whose results are needed, and the spec the run was planned with; and the
//! reduction of Jobs and pods to what the decisions look at.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::cache::Seen;
use super::database::Standing;
use super::job_state::{JobOutcome, job_outcome};
use super::names::{self, Stage};
use super::pod_cache;
use super::pod_identity::{built_by, pod_fingerprint};
use super::results::created_by;
use super::run_queue::RunSlot;
use super::{Context, ReconcileError, kube_err};
use reportjob_core::api::conditions;
use reportjob_core::api::validate::validate;
use reportjob_core::api::{ReportJob, ReportJobSpec, ValidSpec};

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
    /// Succeeded pods of those stages that name the stage Job as their controller but whose
    /// spec is not the Job's template (someone else created them): their names. The Job
    /// may have counted their success; their results never count.
    pub refused_pods: BTreeMap<Stage, Vec<String>>,
    /// Why a stage Job that has no pod cannot create one: the message of its newest
    /// `FailedCreate` event (a ResourceQuota, a LimitRange, an admission webhook), bounded.
    pub create_failures: BTreeMap<Stage, String>,
    /// The spec the run was planned with (when it differs from the ReportJob's current
    /// spec, the planned one is used).
    pub planned_spec: PlannedSpec,
    /// Whether a run that has not started may start (`--max-concurrent-runs`).
    pub run_slot: RunSlot,
    /// The namespace's chunk pod budget as this run sees it
    /// (`--max-stage-pods-per-namespace`); `None`: unlimited.
    pub budget: Option<super::budget::View>,
    /// The ReportDatabase the run names, and its chunk budget as this run sees it.
    pub database: DatabaseObserved,
    /// Now.
    pub now: Timestamp,
}

/// What a run's ReportDatabase says about it.
#[derive(Clone, Debug, PartialEq)]
pub struct DatabaseObserved {
    /// Whether it names one, and whether its budget applies.
    pub standing: Standing,
    /// Its chunk budget as this run sees it (a member that has not finished).
    pub budget: Option<super::budget::View>,
    /// Chunk pods the database's runs may run now, this one's included.
    pub in_use: u32,
    /// Runs waiting for their first chunk pod before this one.
    pub ahead: usize,
}

impl DatabaseObserved {
    /// A run that names no ReportDatabase.
    pub fn unbudgeted() -> DatabaseObserved {
        DatabaseObserved {
            standing: Standing::Unbudgeted,
            budget: None,
            in_use: 0,
            ahead: 0,
        }
    }

    /// The name of the ReportDatabase, when the run names one.
    pub fn name(&self) -> Option<&str> {
        match &self.standing {
            Standing::Unbudgeted => None,
            Standing::Unavailable { name, .. }
            | Standing::NotAllowed { name, .. }
            | Standing::Member { name, .. } => Some(name),
        }
    }

    /// The throttle its chunk workers check.
    pub fn throttle(&self) -> reportjob_core::database::throttle::Throttle {
        match &self.standing {
            Standing::Member { spec, .. } => spec
                .throttle
                .as_ref()
                .map(reportjob_core::database::throttle::Throttle::of)
                .unwrap_or_default(),
            _ => Default::default(),
        }
    }
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
/// the status, a chunks Job with failures (these two for their results: `true`), and any
/// stage with pods that are not ready and the chunks Job for its progress (`false`).
pub fn pods_needed(rj: &ReportJob, jobs: &BTreeMap<Stage, Job>) -> Vec<(Stage, bool)> {
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
        // The chunk pods' cached results also give the rows exported so far (live
        // progress); read from the cache alone unless a failure needs its result.
        let progress = *stage == Stage::Chunks;
        if needed || not_ready || progress || lacks_pods(job) {
            out.push((*stage, needed));
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

/// How long a stage Job has had no pod before its `FailedCreate` events are read: a Job just
/// created has none yet because its controller has not created them (the reconcile its
/// creation triggers would otherwise read events every time). The decisions look again
/// within [`super::decide::PENDING_POD_RESYNC`] while a Job lacks pods.
pub const EVENTS_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether to read a Job's `FailedCreate` events now: it lacks pods (see [`lacks_pods`]) and
/// has for [`EVENTS_AFTER`] (its creation time, as the API server wrote it, is that old).
pub fn create_failures_worth_reading(job: &Job, now: Timestamp) -> bool {
    let created = job.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let old_enough = created.is_none_or(|c| {
        now.duration_since(c) >= jiff::SignedDuration::try_from(EVENTS_AFTER).unwrap_or_default()
    });
    lacks_pods(job) && old_enough
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
            .get(reportjob_core::names::COMPLETION_INDEX_ANNOTATION)
            .and_then(|i| i.parse().ok()),
        phase: status.phase.unwrap_or_default(),
        exit_code: terminated.as_ref().map(|t| t.exit_code),
        message: terminated.as_ref().and_then(|t| t.message.clone()),
        waiting,
        finished_at: terminated.and_then(|t| t.finished_at).map(|t| t.0),
    }
}

/// Reads the ReportJob's Jobs (from the cache the Job watch keeps) and, when the decisions
/// need them, their pods.
pub async fn observe(ctx: &Context, rj: &ReportJob) -> Result<Observed, ReconcileError> {
    let ns = rj.namespace().unwrap_or_default();
    let name = rj.name_any();
    let uid = rj.uid().unwrap_or_default();
    let selector = format!("{}={}", names::REPORTJOB_LABEL, name);
    let mut jobs = BTreeMap::new();
    let mut terminating = Vec::new();
    ctx.jobs
        .ready()
        .await
        .map_err(|message| ReconcileError::Cache {
            what: format!("the Jobs of {ns}/{name}"),
            message,
        })?;
    for seen in ctx.jobs.jobs_of(&ns, &name) {
        let (job, going) = match seen {
            Seen::Live(job) => (job, false),
            Seen::Terminating(job) => (job, true),
        };
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
        if going {
            terminating.push(stage);
        } else {
            jobs.insert(stage, job);
        }
    }
    let mut pods = BTreeMap::new();
    let mut refused_pods = BTreeMap::new();
    ctx.pods
        .ready()
        .await
        .map_err(|message| ReconcileError::Cache {
            what: format!("the pods of {ns}/{name}"),
            message,
        })?;
    for (stage, for_result) in pods_needed(rj, &jobs) {
        let Some(job) = jobs.get(&stage) else {
            continue;
        };
        // The pod watch's cache, unless a result is needed that it does not show yet.
        let (cached, refused) = ctx.pods.members(&ns, &name, stage, job);
        let succeeded = |pods: &[Pod]| -> Vec<String> {
            pods.iter()
                .map(pod_info)
                .filter(|p| p.phase == "Succeeded")
                .map(|p| p.name)
                .collect()
        };
        if !for_result || pod_cache::tells_results(job, &cached) {
            pods.insert(stage, cached.iter().map(pod_info).collect());
            continue;
        }
        drop(refused);
        tracing::debug!(reportjob = %format!("{ns}/{name}"), stage = stage.as_str(), cached = cached.len(), "listing pods: the cache lacks a finished pod");
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
        // Only pods the stage Job itself built report results: not any pod with its labels,
        // nor a pod naming it as owner with a spec other than its template.
        let (ours, foreign): (Vec<Pod>, Vec<Pod>) = listed
            .items
            .into_iter()
            .filter(|p| created_by(p, job))
            .partition(|p| {
                built_by(
                    pod_fingerprint(p).as_deref(),
                    p.metadata.creation_timestamp.as_ref(),
                    job,
                )
            });
        let foreign = succeeded(&foreign);
        if !foreign.is_empty() {
            tracing::warn!(reportjob = %format!("{ns}/{name}"), stage = stage.as_str(), pods = ?foreign, "pods owned by a stage Job but not built from its template: their results are refused");
            refused_pods.insert(stage, foreign);
        }
        pods.insert(stage, ours.iter().map(pod_info).collect());
    }
    let mut create_failures = BTreeMap::new();
    let now = Timestamp::now();
    for (stage, job) in jobs
        .iter()
        .filter(|(_, job)| create_failures_worth_reading(job, now))
    {
        // The Job's status lags its pods (a loaded cluster): pods it made say it can.
        if pod_cache::pods_show_progress(job, &ctx.pods.pods_of(&ns, &name, *stage, job)) {
            continue;
        }
        // From the watch of FailedCreate events: no list per reconcile.
        ctx.events
            .ready()
            .await
            .map_err(|message| ReconcileError::Cache {
                what: format!("the FailedCreate events of {ns}/{name}"),
                message,
            })?;
        let events = ctx
            .events
            .failed_creates(&ns, &job.uid().unwrap_or_default());
        if let Some(why) = newest_create_failure(&events) {
            create_failures.insert(*stage, why);
        }
    }
    let planned_spec = planned_spec(jobs.get(&Stage::Plan));
    let standing = ctx
        .databases
        .standing(
            &ns,
            rj.spec.source.database.as_ref().map(|d| d.name.as_str()),
        )
        .await;
    let snapshot_limit = match &standing {
        Standing::Member { spec, .. } => spec.snapshot_limit(),
        _ => None,
    };
    let run_slot = ctx.gate.admit(rj, snapshot_limit).await;
    let budget = budget_view(ctx, rj);
    let database = database_view(ctx, rj, standing);
    Ok(Observed {
        rj: rj.clone(),
        jobs,
        terminating,
        pods,
        refused_pods,
        create_failures,
        planned_spec,
        run_slot,
        budget,
        database,
        now,
    })
}

/// The pods a run can use: its parallelism, at most its chunks not yet exported.
fn wanted_pods(rj: &ReportJob) -> u32 {
    let parallelism = u32::try_from(rj.spec.chunking.parallelism).unwrap_or(0);
    let left = rj
        .status
        .as_ref()
        .and_then(|s| s.chunks.as_ref())
        .filter(|c| c.total > 0)
        .map(|c| u32::try_from(c.total - c.succeeded).unwrap_or(0));
    left.map_or(parallelism, |l| parallelism.min(l))
}

/// This run's view of its namespace's chunk pod budget: the namespace's exporting runs
/// (itself included), the grants of their chunks Jobs and what the others' Jobs may run.
fn budget_view(ctx: &Context, rj: &ReportJob) -> Option<super::budget::View> {
    use super::budget::{Contender, claim, view};
    let limit = ctx.budget.limit()?;
    if finished(rj) {
        return None;
    }
    let ns = rj.namespace().unwrap_or_default();
    let me = rj.name_any();
    let mut others = 0u32;
    let mut granted: HashMap<String, u32> = HashMap::new();
    for (owner, seen) in ctx.jobs.stage_jobs_in(&ns, Stage::Chunks) {
        let (claimed, parallelism) = claim(&seen);
        if owner != me {
            others = others.saturating_add(claimed);
        }
        granted.insert(owner, parallelism);
    }
    let exporting = |r: &ReportJob| {
        r.status.as_ref().is_some_and(|s| s.plan.is_some()) && !finished(r) && !r.spec.suspend
    };
    let contender = |r: &ReportJob| Contender {
        key: super::run_queue::key_of(r),
        order: (
            r.metadata.creation_timestamp.as_ref().map(|t| t.0),
            r.name_any(),
        ),
        want: wanted_pods(r),
        granted: granted.get(&r.name_any()).copied().unwrap_or(0),
    };
    let mut contenders: Vec<Contender> = ctx
        .gate
        .reportjobs_in(&ns)
        .iter()
        .filter(|r| r.name_any() != me && exporting(r))
        .map(|r| contender(r))
        .collect();
    contenders.push(contender(rj));
    Some(view(
        limit,
        &super::run_queue::key_of(rj),
        &mut contenders,
        others,
    ))
}

/// Whether a ReportJob's run has ended.
fn finished(rj: &ReportJob) -> bool {
    rj.status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(reportjob_core::api::Phase::is_terminal)
}

/// This run's view of its ReportDatabase's chunk budget: every exporting run that names
/// the database (in any namespace), the grants of their chunks Jobs and what the others'
/// Jobs may run, dealt fairly between namespaces ([`super::database::fair`]).
fn database_view(ctx: &Context, rj: &ReportJob, standing: Standing) -> DatabaseObserved {
    use super::budget::{Contender, claim};
    use super::database::fair::view;
    use super::run_queue::key_of;
    let Standing::Member { name, spec } = &standing else {
        return DatabaseObserved {
            standing,
            ..DatabaseObserved::unbudgeted()
        };
    };
    let names_it = |r: &ReportJob| {
        r.spec.source.database.as_ref().map(|d| d.name.as_str()) == Some(name.as_str())
    };
    let me = key_of(rj);
    let members: Vec<std::sync::Arc<ReportJob>> = ctx
        .gate
        .all_reportjobs()
        .into_iter()
        .filter(|r| names_it(r) && key_of(r) != me)
        .collect();
    // The chunks Jobs of every namespace with a member: charges and grants by run.
    let mut namespaces: Vec<String> = members
        .iter()
        .map(|r| r.namespace().unwrap_or_default())
        .collect();
    namespaces.push(rj.namespace().unwrap_or_default());
    namespaces.sort();
    namespaces.dedup();
    let member_keys: std::collections::HashSet<String> =
        members.iter().map(|r| key_of(r)).collect();
    let (mut others, mut mine) = (0u32, 0u32);
    let mut granted: HashMap<String, u32> = HashMap::new();
    for ns in &namespaces {
        for (owner, seen) in ctx.jobs.stage_jobs_in(ns, Stage::Chunks) {
            let key = format!("{ns}/{owner}");
            let (claimed, parallelism) = claim(&seen);
            if key == me {
                mine = claimed;
            } else if member_keys.contains(&key) {
                others = others.saturating_add(claimed);
            } else {
                continue;
            }
            granted.insert(key, parallelism);
        }
    }
    let in_use = others.saturating_add(mine);
    if finished(rj) {
        return DatabaseObserved {
            in_use,
            ..DatabaseObserved::unbudgeted()
        };
    }
    let exporting = |r: &ReportJob| {
        r.status.as_ref().is_some_and(|s| s.plan.is_some()) && !finished(r) && !r.spec.suspend
    };
    let claimant = |r: &ReportJob| Contender {
        key: key_of(r),
        order: (
            r.metadata.creation_timestamp.as_ref().map(|t| t.0),
            key_of(r),
        ),
        want: wanted_pods(r),
        granted: granted.get(&key_of(r)).copied().unwrap_or(0),
    };
    let mut claimants: Vec<Contender> = members
        .iter()
        .filter(|r| exporting(r))
        .map(|r| claimant(r))
        .collect();
    claimants.push(claimant(rj));
    let (budget, ahead) = view(spec.chunk_limit(), &me, &mut claimants, others, |ns| {
        spec.weight(ns)
    });
    DatabaseObserved {
        standing,
        budget: Some(budget),
        in_use,
        ahead,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn job_created(at: Timestamp) -> Job {
        let mut job = Job::default();
        job.metadata.creation_timestamp = Some(Time(at));
        job
    }

    #[test]
    fn events_of_a_job_without_pods_are_read_once_it_is_not_new() {
        let created = Timestamp::from_second(1_000).unwrap_or_default();
        let job = job_created(created);
        assert!(lacks_pods(&job));
        assert!(!create_failures_worth_reading(&job, created));
        let later = Timestamp::from_second(1_001).unwrap_or_default();
        assert!(!create_failures_worth_reading(&job, later));
        let later = Timestamp::from_second(1_002).unwrap_or_default();
        assert!(create_failures_worth_reading(&job, later));
        let mut running = job_created(created);
        running.status = Some(k8s_openapi::api::batch::v1::JobStatus {
            active: Some(1),
            ..Default::default()
        });
        assert!(!create_failures_worth_reading(&running, later));
    }
}
