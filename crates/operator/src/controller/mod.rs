//! `reportjob controller`: reconciles ReportJobs into plan, chunks and assemble Jobs.
//!
//! The decisions are pure ([`decide::decide`], [`jobs`]); this module only reads what
//! exists ([`observe`]), carries out the one action decided, writes the status when it
//! changed and records the [`events`].

pub mod budget;
pub mod cache;
pub mod database;
pub mod decide;
pub mod event_cache;
pub mod event_limit;
pub mod events;
pub mod job_state;
pub mod jobs;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod observe;
pub mod pod_cache;
pub mod pod_identity;
pub mod pod_settings;
pub mod policy;
pub mod results;
pub mod run_queue;
pub mod schedule;
pub mod status_writes;
pub mod trim;
pub mod watches;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action as Requeue, Config as RuntimeConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use self::cache::JobCache;
use self::decide::{Action, Step};
use self::events::EventNote;
use self::jobs::PodDefaults;
use self::leader::LeaseConfig;
use self::metrics::{Health, Metrics, ReasonLabel, ResultLabel};
use self::names::Stage;
use self::pod_cache::PodCache;
use reportjob_core::api::ReportJob;

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Namespaces to watch; empty: all.
    pub namespaces: Vec<String>,
    /// What stage pods get unless their spec says otherwise.
    pub defaults: PodDefaults,
    /// Where to serve metrics and health checks.
    pub metrics_addr: Option<SocketAddr>,
    /// Leader election settings; `None`: reconcile without a lease (one replica only).
    pub lease: Option<LeaseConfig>,
    /// Tests only: the file the ReportSchedule loop reads the time from (see [`schedule`]).
    pub clock_file: Option<std::path::PathBuf>,
    /// At most this many runs in flight at once, all namespaces together, and in one
    /// namespace (see [`run_queue`]).
    pub run_limits: run_queue::Limits,
    /// At most this many chunk pods running per namespace (see [`budget`]); `None`: no
    /// budget.
    pub max_stage_pods_per_namespace: Option<u32>,
}

/// A failed reconcile.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A Kubernetes API call failed.
    #[error("{action}: {source}")]
    Kube {
        /// What the controller was doing.
        action: String,
        /// The API error.
        source: kube::Error,
    },
    /// A cache a reconcile reads has not listed yet (its watch fails).
    #[error("cannot read {what}: {message}")]
    Cache {
        /// What the reconcile needed.
        what: String,
        /// The watch's error.
        message: String,
    },
}

impl ReconcileError {
    fn reason(&self) -> String {
        match self {
            ReconcileError::Kube {
                source: kube::Error::Api(e),
                ..
            } => {
                if e.reason.is_empty() {
                    format!("Http{}", e.code)
                } else {
                    e.reason.clone()
                }
            }
            ReconcileError::Kube { .. } => "Transport".into(),
            ReconcileError::Cache { .. } => "WatchNotListed".into(),
        }
    }
}

fn kube_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> ReconcileError {
    let action = action.into();
    move |source| ReconcileError::Kube { action, source }
}

/// What every reconcile shares.
pub struct Context {
    client: Client,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    defaults: PodDefaults,
    failures: Mutex<HashMap<String, u32>>,
    /// The stage Jobs, from the watches that also trigger reconciles (never listed per
    /// reconcile).
    jobs: JobCache,
    /// The stage pods, from a watch of their own (they trigger nothing).
    pods: PodCache,
    /// The stage Jobs' `FailedCreate` events, from a watch of their own.
    events: event_cache::EventCache,
    /// When each ReportJob's status was last written (progress is written at most every
    /// few seconds).
    status_writes: status_writes::StatusWrites,
    /// The cap on runs in flight.
    gate: run_queue::RunGate,
    /// The per-namespace budget of chunk pods.
    budget: budget::PodBudget,
    /// The ReportDatabases' shared budgets.
    databases: database::Databases,
    /// The events recorded lately: the same one at most once a minute.
    recorded: Mutex<event_limit::EventLimiter>,
}

/// Most reconciles of one scope in flight at once. Unbounded (kube-runtime's default), a
/// thousand ReportJobs applied at once are a thousand reconciles and their requests in
/// memory together; each takes milliseconds, so a few at a time keep up.
pub const MAX_CONCURRENT_RECONCILES: u16 = 8;

/// Runs the controller until SIGTERM/SIGINT (or until leadership is lost, which is an
/// error: the process exits and its replacement stands for election again).
pub async fn run(client: Client, config: ControllerConfig) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Some(addr) = config.metrics_addr {
        metrics::spawn(addr, metrics.clone(), health.clone(), stop_rx);
    }

    // A standby replica is healthy and ready: it is doing its job by waiting.
    health.ready.store(true, Ordering::Relaxed);
    let mut leadership = None;
    if let Some(lease) = &config.lease {
        tokio::select! {
            held = leader::acquire(client.clone(), lease) => leadership = Some(held),
            () = shutdown_signal() => {
                let _ = stop_tx.send(true);
                return Ok(());
            }
        }
        metrics.leader.set(1);
    }

    let scopes: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    let mut watched = watches::watch_scopes(&client, &scopes);
    let (databases, database_tasks) = database::Databases::watch(&client);
    watched.tasks.extend(database_tasks);
    // The ReportJob controllers (one per scope) are built first: the run cap reads their
    // stores and wakes queued ReportJobs through them.
    let mut wakers = Vec::new();
    let mut rj_stores = Vec::new();
    let mut built = Vec::new();
    for (ns, jobs) in scopes.iter().cloned().zip(watched.job_changes) {
        let rjs: Api<ReportJob> = watches::scoped_api(&client, ns.as_deref());
        let (tx, rx) = futures::channel::mpsc::unbounded();
        // As `Controller::new` watches, but the store keeps trimmed ReportJobs.
        let (reader, writer) = reflector::store::<ReportJob>();
        let reportjobs = watcher(rjs, watcher::Config::default())
            .modify(trim::reportjob)
            .reflect(writer)
            .applied_objects();
        let controller = Controller::for_stream(reportjobs, reader)
            .with_config(RuntimeConfig::default().concurrency(MAX_CONCURRENT_RECONCILES))
            .owns_stream(jobs)
            .reconcile_on(rx)
            .shutdown_on_signal();
        rj_stores.push(controller.store());
        wakers.push((ns, tx));
        built.push(controller);
    }
    let ctx = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: names::FIELD_MANAGER.into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        ),
        client: client.clone(),
        metrics: metrics.clone(),
        defaults: config.defaults.clone(),
        failures: Mutex::new(HashMap::new()),
        jobs: watched.jobs,
        pods: watched.pods,
        events: watched.events,
        status_writes: status_writes::StatusWrites::default(),
        recorded: Mutex::new(event_limit::EventLimiter::default()),
        gate: run_queue::RunGate::new(config.run_limits, rj_stores, wakers),
        budget: budget::PodBudget::new(config.max_stage_pods_per_namespace),
        databases,
    });
    let database_status = tokio::spawn(database::status::run(ctx.clone()));
    let schedules = schedule::run(
        client.clone(),
        ctx.recorder.clone(),
        scopes.clone(),
        config.clock_file.clone(),
    );
    let controllers = futures::future::join_all(built.into_iter().map(|controller| {
        controller
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|result| async move {
                use kube::runtime::controller::Error as RunError;
                match result {
                    Ok((obj, _)) => tracing::debug!(reportjob = %obj, "reconciled"),
                    // Logged with its ReportJob by `reconcile`.
                    Err(RunError::ReconcilerFailed(..)) => {}
                    // Watch errors (a 403 on list/watch, a lost connection) stop nothing
                    // but must not go unseen.
                    Err(e) => {
                        tracing::warn!(error = %reportjob_core::error_text::error_chain(&e), "watching failed")
                    }
                }
            })
    }));
    // ReportSchedules create ReportJobs beside the loop that runs them.
    let both = futures::future::join(controllers, schedules);
    // Both loops stop on SIGTERM themselves (`shutdown_on_signal`), after their reconciles in
    // flight; a loop still retrying a watch (say, of a CRD not installed) must not keep the
    // process alive past the pod's grace period, so it gets ten seconds.
    let controllers = async move {
        futures::pin_mut!(both);
        tokio::select! {
            _ = &mut both => {}
            () = shutdown_signal() => {
                if tokio::time::timeout(Duration::from_secs(10), &mut both).await.is_err() {
                    tracing::warn!("the loops did not stop within 10 s of the signal; exiting");
                }
            }
        }
    };
    tracing::info!("controller started");
    let outcome = match (leadership, &config.lease) {
        (Some(mut held), Some(lease)) => tokio::select! {
            _ = controllers => {
                held.release(&lease.name).await;
                Ok(())
            }
            () = held.lost() => Err(anyhow::anyhow!("lost the leader lease; exiting")),
        },
        _ => {
            controllers.await;
            Ok(())
        }
    };
    database_status.abort();
    for task in watched.tasks {
        task.abort();
    }
    let _ = stop_tx.send(true);
    tracing::info!("controller stopped");
    outcome
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

fn key(rj: &ReportJob) -> String {
    format!("{}/{}", rj.namespace().unwrap_or_default(), rj.name_any())
}

async fn reconcile(rj: Arc<ReportJob>, ctx: Arc<Context>) -> Result<Requeue, ReconcileError> {
    let started = Instant::now();
    let result = reconcile_inner(&rj, &ctx).await;
    ctx.metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    let label = |r: &str| ResultLabel { result: r.into() };
    match &result {
        Ok(_) => {
            ctx.metrics.reconciles.get_or_create(&label("ok")).inc();
            if let Ok(mut f) = ctx.failures.lock() {
                f.remove(&key(&rj));
            }
        }
        Err(e) => {
            ctx.metrics.reconciles.get_or_create(&label("error")).inc();
            ctx.metrics
                .errors
                .get_or_create(&ReasonLabel { reason: e.reason() })
                .inc();
            tracing::warn!(reportjob = %key(&rj), error = %e, "reconcile failed");
            // Make the failure visible on the object, not only in the log (best effort: the
            // failing permission may be the one needed here too).
            publish(&ctx, &rj, &EventNote::reconcile_error(e.to_string())).await;
        }
    }
    result
}

fn error_policy(rj: Arc<ReportJob>, _error: &ReconcileError, ctx: Arc<Context>) -> Requeue {
    let attempts = ctx
        .failures
        .lock()
        .map(|mut f| {
            let n = f.entry(key(&rj)).or_insert(0);
            *n = n.saturating_add(1);
            *n
        })
        .unwrap_or(1);
    Requeue::requeue(reportjob_core::retry::RECONCILE.delay(attempts))
}

async fn reconcile_inner(rj: &ReportJob, ctx: &Context) -> Result<Requeue, ReconcileError> {
    let finished = rj
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(reportjob_core::api::Phase::is_terminal);
    // Under a chunk pod budget, the namespace's runs decide one at a time, from what they
    // observe to what they write, so that two never take the same free pods.
    let ns = rj.namespace().unwrap_or_default();
    let _budget = if finished {
        None
    } else {
        ctx.budget.lock(&ns).await
    };
    // Likewise the runs of one ReportDatabase, across namespaces (always after the
    // namespace's lock: one order, no deadlock).
    let _database = match rj.spec.source.database.as_ref().filter(|_| !finished) {
        Some(db) => ctx.databases.lock(&db.name).await,
        None => None,
    };
    let observed = observe::observe(ctx, rj).await?;
    let step = decide::decide(&observed, &ctx.defaults);
    tracing::debug!(reportjob = %key(rj), action = %step.action.describe(), phase = ?step.status.phase, "decided");
    let requeue = carry_out(ctx, rj, &step).await?;
    wake_starved(ctx, &observed, &step);
    count_admitted(ctx, &observed, &step);
    let old = rj.status.clone().unwrap_or_default();
    let gone = matches!(
        step.action,
        Action::RemoveFinalizer | Action::DeleteReportJob
    );
    // The finalizer's own patch brings the next reconcile, which writes the status (a
    // queued run's too: writing it here as well wrote it twice, a second apart).
    let accepting = step.action == Action::AddFinalizer;
    let mut later = None;
    // The active pod count alone is carried by the next write.
    let active_only = status_writes::active_only(&old, &step.status);
    let repeat =
        ctx.status_writes
            .repeats(&key(rj), rj.resource_version().as_deref(), &step.status);
    if step.status != old && !gone && !accepting && !active_only && !repeat {
        let progress = status_writes::progress_only(&old, &step.status);
        let waits = progress.then(|| ctx.status_writes.wait(&key(rj))).flatten();
        match waits {
            // Progress only, written a moment ago: it is written when the wait is over.
            Some(wait) => later = Some(wait),
            None => {
                write_status(ctx, rj, &step).await?;
                // Any write starts the interval: progress moving just after a phase
                // change waits for the next write (a short run's often is its last).
                ctx.status_writes
                    .wrote(&key(rj), rj.resource_version(), &step.status);
                count_progress(ctx, rj, &old, &step);
            }
        }
    }
    let ended = |s: &reportjob_core::api::ReportJobStatus| {
        s.phase.is_some_and(reportjob_core::api::Phase::is_terminal)
    };
    let paused = |s: &reportjob_core::api::ReportJobStatus| {
        s.phase == Some(reportjob_core::api::Phase::Suspended)
    };
    if gone || (ended(&step.status) && !ended(&old)) || (paused(&step.status) && !paused(&old)) {
        // Its run slot is free (a suspended run holds none): the next queued runs are woken.
        let snapshot_limit = match &observed.database.standing {
            database::Standing::Member { spec, .. } => spec.snapshot_limit(),
            _ => None,
        };
        ctx.gate.ended(rj, snapshot_limit);
    }
    for note in &step.notes {
        publish(ctx, rj, note).await;
    }
    ctx.metrics
        .set_phase(&key(rj), if gone { None } else { step.status.phase });
    let requeue = match (requeue.or(step.requeue), later) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(match requeue {
        Some(after) => Requeue::requeue(after),
        None => Requeue::await_change(),
    })
}

/// Under a chunk pod budget (the namespace's, the ReportDatabase's): when pods are left
/// free after this run's step, the runs below their share are woken to take them.
fn wake_starved(ctx: &Context, observed: &observe::Observed, step: &Step) {
    let budgets = [observed.budget.as_ref(), observed.database.budget.as_ref()];
    if budgets.iter().all(Option::is_none) {
        return;
    }
    let job = observed.jobs.get(&Stage::Chunks);
    let mine = match &step.action {
        Action::SetParallelism(n) => *n,
        Action::CreateJob(job) => job
            .spec
            .as_ref()
            .filter(|_| job.labels().get(names::STAGE_LABEL).map(String::as_str) == Some("chunks"))
            .and_then(|s| s.parallelism)
            .unwrap_or(0)
            .unsigned_abs(),
        _ => job.map_or(0, budget::charge),
    };
    for budget in budgets.into_iter().flatten() {
        if budget.free_after(mine) {
            for key in &budget.starved {
                ctx.gate.wake_key(key);
            }
        }
    }
}

/// Chunk pods a ReportDatabase granted by this step (a chunks Job created, or its
/// parallelism raised), counted per database and namespace.
fn count_admitted(ctx: &Context, observed: &observe::Observed, step: &Step) {
    let database::Standing::Member { name, .. } = &observed.database.standing else {
        return;
    };
    let current = observed
        .jobs
        .get(&Stage::Chunks)
        .and_then(|j| j.spec.as_ref())
        .and_then(|s| s.parallelism)
        .unwrap_or(0)
        .unsigned_abs();
    let granted = match &step.action {
        Action::SetParallelism(n) => n.saturating_sub(current),
        Action::CreateJob(job)
            if job.labels().get(names::STAGE_LABEL).map(String::as_str) == Some("chunks") =>
        {
            job.spec
                .as_ref()
                .filter(|s| s.suspend != Some(true))
                .and_then(|s| s.parallelism)
                .unwrap_or(0)
                .unsigned_abs()
        }
        _ => 0,
    };
    if granted > 0 {
        let label = metrics::DatabaseNamespaceLabel {
            database: name.clone(),
            report_namespace: observed.rj.namespace().unwrap_or_default(),
        };
        ctx.metrics
            .databases
            .chunks_admitted
            .get_or_create(&label)
            .inc_by(u64::from(granted));
    }
}

fn count_progress(
    ctx: &Context,
    rj: &ReportJob,
    old: &reportjob_core::api::ReportJobStatus,
    step: &Step,
) {
    // A run that ends in this step (the stored status was not terminal): counted once, also
    // across controller restarts, since `old` is what the API server holds.
    let terminal = |s: &reportjob_core::api::ReportJobStatus| s.phase.filter(|p| p.is_terminal());
    if terminal(old).is_none()
        && let Some(ended) = terminal(&step.status)
    {
        let reason = step
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == reportjob_core::api::conditions::FAILED && c.status == "True")
            .map(|c| c.reason.as_str());
        // From the ReportJob's creation to its end: what the person who applied it waited,
        // queueing included.
        let end = step
            .status
            .completion_time
            .as_ref()
            .map_or_else(jiff::Timestamp::now, |t| t.0);
        let seconds = rj
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|created| end.duration_since(created.0).as_secs_f64().max(0.0));
        ctx.metrics
            .run_ended(&rj.namespace().unwrap_or_default(), ended, reason, seconds);
    }
    let done =
        |s: &reportjob_core::api::ReportJobStatus| s.chunks.as_ref().map_or(0, |c| c.succeeded);
    let delta = done(&step.status) - done(old);
    if delta > 0 {
        ctx.metrics
            .chunks_finished
            .inc_by(u64::try_from(delta).unwrap_or(0));
    }
    if old.output.is_none()
        && let Some(output) = &step.status.output
    {
        ctx.metrics
            .rows_exported
            .inc_by(u64::try_from(output.rows).unwrap_or(0));
    }
}

/// Carries out the decided action; returns an earlier requeue when the action's effect
/// will not come back as a watch event.
async fn carry_out(
    ctx: &Context,
    rj: &ReportJob,
    step: &Step,
) -> Result<Option<Duration>, ReconcileError> {
    let ns = rj.namespace().unwrap_or_default();
    let name = rj.name_any();
    let rj_api: Api<ReportJob> = Api::namespaced(ctx.client.clone(), &ns);
    let job_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    if step.action != Action::None {
        ctx.metrics.api_requests.inc();
    }
    match &step.action {
        Action::None => Ok(None),
        // The finalizer is added and removed here rather than by
        // `kube::runtime::finalizer`: that helper removes the finalizer as soon as its
        // cleanup closure returns Ok, but our cleanup spans many reconciles (stop every
        // stage Job, then run a cleanup Job and wait for it), so "still cleaning up" would
        // have to be returned as an error, counted and logged as a reconcile failure and
        // retried on the error backoff. Both patches carry the resourceVersion read, as the
        // helper's JSON patch tests it, so a concurrent change is a conflict, not a loss.
        Action::AddFinalizer => {
            let mut finalizers = rj.finalizers().to_vec();
            finalizers.push(names::FINALIZER.to_string());
            let patch = json!({"metadata": {
                "finalizers": finalizers,
                "resourceVersion": rj.resource_version(),
            }});
            rj_api
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(kube_err("adding the finalizer"))?;
            Ok(None)
        }
        Action::RemoveFinalizer => {
            let finalizers: Vec<String> = rj
                .finalizers()
                .iter()
                .filter(|f| *f != names::FINALIZER)
                .cloned()
                .collect();
            let patch = json!({"metadata": {
                "finalizers": finalizers,
                "resourceVersion": rj.resource_version(),
            }});
            match rj_api
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => Ok(None),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
                Err(e) => Err(kube_err("removing the finalizer")(e)),
            }
        }
        Action::CreateJob(job) => {
            let job_name = job.name_any();
            match job_api.create(&PostParams::default(), job).await {
                Ok(created) => {
                    ctx.jobs.wrote(&name, &created);
                    tracing::info!(reportjob = %key(rj), job = %job_name, "created Job");
                    Ok(None)
                }
                // Created by an earlier reconcile whose result the cache has not shown yet.
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Some(Duration::from_secs(1))),
                Err(e) => Err(kube_err(format!("creating Job {job_name}"))(e)),
            }
        }
        Action::SetParallelism(parallelism) => {
            let job_name = Stage::Chunks.job_name(&name);
            let patched = job_api
                .patch(
                    &job_name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"parallelism": parallelism}})),
                )
                .await
                .map_err(kube_err(format!("setting parallelism on Job {job_name}")))?;
            ctx.jobs.wrote(&name, &patched);
            Ok(None)
        }
        Action::SuspendChunks(suspend) => {
            let job_name = Stage::Chunks.job_name(&name);
            let patched = job_api
                .patch(
                    &job_name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"suspend": suspend}})),
                )
                .await
                .map_err(kube_err(format!("setting suspend on Job {job_name}")))?;
            ctx.jobs.wrote(&name, &patched);
            Ok(None)
        }
        Action::DeleteJobs(names) => {
            for job_name in names {
                match job_api.delete(job_name, &DeleteParams::foreground()).await {
                    Ok(deleted) => {
                        match deleted.left() {
                            // Still there, being deleted (its pods go first).
                            Some(job) => ctx.jobs.wrote(&name, &job),
                            None => {
                                if let Some(uid) = ctx.jobs.uid_of(&ns, &name, job_name) {
                                    ctx.jobs.deleted(&ns, &name, job_name, &uid);
                                }
                            }
                        }
                        tracing::info!(reportjob = %key(rj), job = %job_name, "deleting Job")
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(kube_err(format!("deleting Job {job_name}"))(e)),
                }
            }
            Ok(Some(Duration::from_secs(1)))
        }
        Action::DeleteReportJob => {
            tracing::info!(reportjob = %key(rj), "ttlSecondsAfterFinished passed; deleting");
            match rj_api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => Ok(None),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
                Err(e) => Err(kube_err("deleting the finished ReportJob")(e)),
            }
        }
    }
}

async fn write_status(ctx: &Context, rj: &ReportJob, step: &Step) -> Result<(), ReconcileError> {
    let ns = rj.namespace().unwrap_or_default();
    let api: Api<ReportJob> = Api::namespaced(ctx.client.clone(), &ns);
    let body = json!({
        "apiVersion": ReportJob::api_version(&()),
        "kind": ReportJob::kind(&()),
        "status": step.status,
    });
    ctx.metrics.api_requests.inc();
    api.patch_status(
        &rj.name_any(),
        &PatchParams::apply(names::FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map_err(kube_err("writing the status"))
    .map(|written| {
        let phase = written.status.and_then(|s| s.phase);
        tracing::debug!(reportjob = %key(rj), ?phase, "wrote status");
    })
}

async fn publish(ctx: &Context, rj: &ReportJob, note: &EventNote) {
    let allowed = ctx.recorded.lock().map_or(true, |mut limiter| {
        limiter.allow(
            &key(rj),
            &note.reason,
            &note.message,
            std::time::Instant::now(),
        )
    });
    if !allowed {
        return;
    }
    let event = Event {
        type_: if note.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: note.reason.clone(),
        note: Some(note.message.chars().take(1000).collect()),
        action: note.action.into(),
        secondary: None,
    };
    ctx.metrics.api_requests.inc();
    if let Err(e) = ctx.recorder.publish(&event, &rj.object_ref(&())).await {
        tracing::warn!(reportjob = %key(rj), error = %e, reason = %note.reason, "cannot record event");
    }
}
